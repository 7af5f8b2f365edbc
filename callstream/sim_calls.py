"""Realistic Huawei push bodies for the platform simulator (``callstream simulate``) and the chaos tests.

``generate_calls(seed, count, mix)`` builds calls with their status/event sequences and CDRs;
``build_pushes(calls, ...)`` turns them into the pushes the platform would send: one per event, CDRs
merged (equal callEndTime, same app, at most 50 per push), X-number status pushes, duplicates (same body
twice; a CDR re-merged into another push) and a fraction of bad inputs. Each push carries the platform's
re-push schedule (:func:`event_retry_delays`). The same seed gives the same bodies.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

VOICE_PATH = "/notify/voice"
PRIVACY_PATH = "/notify/privacy"
MAX_CDRS_PER_PUSH = 50
PRIVACY_RETRY_MIN = (1, 4, 9, 106, 203, 300)
VOICE_CDR_RETRY_MIN = (60, 60, 60, 60, 60, 60)
BASE_TIME = datetime(2024, 3, 12, 0, 0, 0)
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

# (stateCode, Q.850 cause, SIP status, ulFailReason) of failed calls; codes from schemas/codes/*.csv.
VOICE_FAILURES = {
    "busy": (8102, 17, 486, 518),
    "no_answer": (8101, 19, 480, 514),
    "rejected": (8004, 21, 603, 518),
}
PRIVACY_FAILURES = {
    "busy": (8102, 17, 486, 8102),
    "no_answer": (8101, 19, 480, 8035),
    "rejected": (7504, 21, 603, 7504),
}
STATE_DESC = {
    0: "The user releases the call.",
    8102: "The callee is busy.",
    8101: "The callee does not answer.",
    8004: "The user hung up while ringing.",
    7504: "The call is rejected.",
}
VOICE_KINDS = ("notify", "verifycode", "callback")
PRIVACY_MODES = ("AXB", "AX", "AXE", "AXYB", "X")


@dataclass
class SimCall:
    """One simulated call: its status/event bodies (in push order) and its CDR (FeeInfo)."""

    service: str  # voice | privacy
    kind: str  # notify, verifycode, callback | AXB, AX, AXE, AXYB, X
    app_key: str
    session_id: str
    icid: str
    outcome: str  # answered, busy, no_answer, rejected
    events: list[dict[str, Any]]
    cdr: dict[str, Any]

    @property
    def path(self) -> str:
        return VOICE_PATH if self.service == "voice" else PRIVACY_PATH


@dataclass
class Push:
    """One HTTP push as the platform sends it."""

    path: str
    service: str
    kind: str  # event, cdr, numstatus, bad
    app_key: str
    body: bytes
    retry_delays_min: tuple[float, ...] = ()
    expect_ok: bool = True
    bad: str = ""  # not_json, unknown_event, bad_signature
    duplicate_of: int | None = None
    session_ids: tuple[str, ...] = ()
    numbers: tuple[str, ...] = ()
    call_index: int = -1  # events of one call are sent in order
    seq: int = 0


@dataclass
class SimPlan:
    calls: list[SimCall]
    pushes: list[Push]
    numbers: list[str] = field(default_factory=list)

    def expected(self) -> dict[str, int]:
        return {
            "calls": len(self.calls),
            "cdrs": len(self.calls),
            "call_events": sum(len(c.events) for c in self.calls),
            "number_status": len(self.numbers),
        }


def parse_mix(text: str | None) -> dict[str, float]:
    """``"voice=0.5,privacy=0.5"`` -> weights; default half and half."""
    if not text:
        return {"voice": 0.5, "privacy": 0.5}
    mix: dict[str, float] = {}
    for item in text.split(","):
        name, _, weight = item.partition("=")
        name = name.strip()
        if name not in ("voice", "privacy"):
            raise ValueError(f"unknown service {name!r} in --mix: use voice=W,privacy=W")
        mix[name] = float(weight or 1)
    if sum(mix.values()) <= 0:
        raise ValueError("--mix weights must add up to more than 0")
    return mix


def _fmt(rng: random.Random, t: datetime, odd: bool) -> str:
    text = t.strftime(TIME_FORMAT)
    if odd and rng.random() < 0.15:
        text = text.replace(" ", "  ")  # the platform's Java demo has two spaces here
    return text


def _number(rng: random.Random, prefix: str) -> str:
    return prefix + "".join(rng.choice("0123456789") for _ in range(8))


def _outcome(rng: random.Random) -> str:
    return rng.choices(("answered", "busy", "no_answer", "rejected"), weights=(70, 10, 12, 8))[0]


def _event(event_type: str, info: dict[str, Any]) -> dict[str, Any]:
    return {"eventType": event_type, "statusInfo": info}


def _voice_call(rng: random.Random, i: int, seed: int, app_key: str, end: datetime, odd: bool) -> SimCall:
    kind = rng.choices(VOICE_KINDS, weights=(50, 25, 25))[0]
    outcome = _outcome(rng)
    host = f"callenabler{rng.choice((245, 246))}.huaweicaas.com"
    bind = "+86755280000" + str(rng.randint(10, 99))
    callee = _number(rng, "+86138")
    fwd_dst = _number(rng, "+86139")
    talk = rng.randint(5, 240) if outcome == "answered" else 0
    ring = rng.randint(1, 20)
    start = end - timedelta(seconds=talk + ring + 2)
    alert, answer = start + timedelta(seconds=2), start + timedelta(seconds=2 + ring)
    stamp = start.strftime("%Y%m%d%H%M%S")
    session = f"{1200 + seed % 100}_{seed % 997}{i:06d}_4294967295_{stamp}@{host}"
    icid = f"{hashlib.md5(session.encode()).hexdigest()}.{3757285700 + i}.{338666600 + seed % 1000}.{rng.randint(1, 9)}"
    user_data = f"order-{seed}-{i:06d}"
    t = lambda x: _fmt(rng, x, odd)  # noqa: E731
    base = {"sessionId": session, "caller": bind, "userData": user_data}
    events: list[dict[str, Any]] = []
    legs = [callee, fwd_dst] if kind == "callback" else [callee]
    failed_leg = len(legs) - 1 if outcome != "answered" else -1
    leg_start = start
    for n, called in enumerate(legs):
        events.append(_event("callout", {**base, "called": called, "timestamp": t(leg_start)}))
        failed = n == failed_leg
        if failed and outcome == "busy":
            break
        events.append(_event("alerting", {**base, "called": called, "timestamp": t(leg_start + timedelta(seconds=2))}))
        if failed:
            break
        events.append(_event("answer", {**base, "called": called, "timestamp": t(leg_start + timedelta(seconds=2 + ring))}))
        leg_start = leg_start + timedelta(seconds=3 + ring)
    if kind != "callback" and outcome == "answered" and rng.random() < 0.4:
        events.append(_event("collectInfo", {"sessionId": session, "timestamp": t(end - timedelta(seconds=1)),
                                             "digitInfo": str(rng.randint(0, 9)), "userData": user_data}))
    state = 0 if outcome == "answered" else VOICE_FAILURES[outcome][0]
    disconnect = {**base, "called": legs[-1] if outcome == "answered" else legs[failed_leg],
                  "timestamp": t(end), "stateCode": state, "stateDesc": STATE_DESC[state]}
    if odd and rng.random() < 0.1:
        disconnect["stateCode"] = str(state)  # numbers as strings
    events.append(_event("disconnect", disconnect))

    cdr: dict[str, Any] = {
        "direction": 0, "spId": "CaaS_Sim_01", "appKey": app_key, "icid": icid, "bindNum": bind,
        "sessionId": session, "callerNum": bind, "calleeNum": callee,
        "callOutStartTime": t(start), "callEndTime": end.strftime(TIME_FORMAT),
        "callOutUnaswRsn": 0, "fwdUnaswRsn": 0, "ulFailReason": 0, "sipStatusCode": 0, "recordFlag": 0,
        "ttsPlayTimes": 1 if kind != "callback" else 0, "ttsTransDuration": 1 if kind != "callback" else 0,
        "serviceType": {"notify": "001", "callback": "002", "verifycode": "003"}[kind],
        "hostName": host, "userData": user_data,
    }
    if kind == "callback":  # leg A (Initcall) is answered; leg B is the one that may fail
        cdr.update({"fwdDisplayNum": bind, "fwdDstNum": fwd_dst, "callOutAlertingTime": t(alert),
                    "callOutAnswerTime": t(answer), "fwdStartTime": t(answer + timedelta(seconds=1))})
        if outcome == "answered":
            cdr["fwdAlertingTime"] = t(answer + timedelta(seconds=3))
            cdr["fwdAnswerTime"] = t(answer + timedelta(seconds=3 + ring))
    else:
        if outcome != "busy":
            cdr["callOutAlertingTime"] = t(alert)
        if outcome == "answered":
            cdr["callOutAnswerTime"] = t(answer)
    if outcome != "answered":
        _, q850, sip, teardown = VOICE_FAILURES[outcome]
        cdr["fwdUnaswRsn" if kind == "callback" else "callOutUnaswRsn"] = q850
        cdr.update({"ulFailReason": teardown, "sipStatusCode": sip, "failTime": end.strftime(TIME_FORMAT)})
        if odd and rng.random() < 0.2:
            cdr["fwdAlertingTime"] = ""  # "" times
    _odd_cdr(rng, cdr, odd)
    return SimCall("voice", kind, app_key, session, icid, outcome, events, cdr)


def _privacy_call(rng: random.Random, i: int, seed: int, app_key: str, end: datetime, odd: bool) -> SimCall:
    mode = rng.choices(PRIVACY_MODES, weights=(40, 20, 15, 15, 10))[0]
    outcome = _outcome(rng)
    a, x, b = _number(rng, "+86138"), "+861700000" + str(rng.randint(1000, 1999)), _number(rng, "+86139")
    sub = f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-4{rng.getrandbits(12):03x}-8{rng.getrandbits(12):03x}-{rng.getrandbits(48):012x}"
    talk = rng.randint(5, 300) if outcome == "answered" else 0
    ring = rng.randint(1, 25)
    start = end - timedelta(seconds=talk + ring + 1)
    alert, answer = start + timedelta(seconds=1), start + timedelta(seconds=1 + ring)
    if rng.random() < 0.5:
        session = f"{a}_{x}_4_{seed % 4096:03x}{i:05x}_963036_669_1_0"
    else:
        session = f"1200_{seed % 997}{i:06d}_4294967295_{start.strftime('%Y%m%d%H%M%S')}@callenabler246.huaweicaas.com"
    icid = f"{hashlib.md5(session.encode()).hexdigest()}.{3861408200 + i}.{24986500 + seed % 1000}.29"
    t = lambda v: _fmt(rng, v, odd)  # noqa: E731
    events = [_event("callin", {"timestamp": t(start), "sessionId": session, "caller": a, "called": x,
                                "subscriptionId": sub})]
    if mode == "AXE":
        events.append(_event("collectInfo", {"timestamp": t(start), "sessionId": session, "caller": a,
                                             "called": x, "digitInfo": f"{rng.randint(1, 9999):04d}",
                                             "subscriptionId": sub}))
    leg = {"sessionId": session, "caller": x, "called": b, "subscriptionId": sub}
    events.append(_event("callout", {**leg, "timestamp": t(start + timedelta(seconds=0))}))
    if outcome != "busy":
        events.append(_event("alerting", {**leg, "timestamp": t(alert)}))
    if outcome == "answered":
        events.append(_event("answer", {**leg, "timestamp": t(answer)}))
    state = 0 if outcome == "answered" else PRIVACY_FAILURES[outcome][0]
    disconnect = {**leg, "timestamp": t(end), "stateCode": state, "stateDesc": STATE_DESC[state]}
    if odd and rng.random() < 0.1:
        disconnect["stateCode"] = str(state)
    events.append(_event("disconnect", disconnect))
    cdr: dict[str, Any] = {
        "direction": 1, "spId": "CaaS_Sim_01", "appKey": app_key, "icid": icid, "bindNum": x,
        "sessionId": session, "subscriptionId": sub, "callerNum": a, "calleeNum": x,
        "fwdDisplayNum": x, "fwdDstNum": b, "callInTime": t(start), "fwdStartTime": t(start),
        "callEndTime": end.strftime(TIME_FORMAT), "fwdUnaswRsn": 0, "ulFailReason": 0, "sipStatusCode": 0,
        "callOutUnaswRsn": 0, "recordFlag": 0, "ttsPlayTimes": 0, "ttsTransDuration": 0, "mptyId": sub,
        "serviceType": rng.choice(("003", "004")), "hostName": "qhats01.huaweicaas.com",
    }
    if outcome != "busy":
        cdr["fwdAlertingTime"] = t(alert)
    if outcome == "answered":
        cdr["fwdAnswerTime"] = t(answer)
        if rng.random() < 0.5:
            cdr.update({"recordFlag": 1, "recordStartTime": t(answer), "recordDomain": "ostorQH2.huawei.com",
                        "recordBucketName": "sp-sim", "recordObjectName": f"{icid[:12]}.wav"})
    else:
        _, q850, sip, teardown = PRIVACY_FAILURES[outcome]
        cdr.update({"fwdUnaswRsn": q850, "ulFailReason": teardown, "sipStatusCode": sip,
                    "failTime": end.strftime(TIME_FORMAT)})
    if mode == "AXE":
        cdr["extendNum"] = events[1]["statusInfo"]["digitInfo"]
    _odd_cdr(rng, cdr, odd)
    return SimCall("privacy", mode, app_key, session, icid, outcome, events, cdr)


def _odd_cdr(rng: random.Random, cdr: dict[str, Any], odd: bool) -> None:
    if not odd:
        return
    if rng.random() < 0.1:
        cdr["direction"] = str(cdr["direction"])  # numbers as strings
    if rng.random() < 0.1:
        cdr["recordFlag"] = str(cdr["recordFlag"])
    if rng.random() < 0.1:
        cdr["voiceCheckType"] = rng.randint(0, 2)  # unknown extra field seen in a real push
    if rng.random() < 0.05:
        cdr["simulatorNote"] = {"nested": [1, 2, 3]}


def generate_calls(
    seed: int,
    count: int,
    mix: dict[str, float] | str | None = None,
    *,
    voice_app: str = "sim-voice-app",
    privacy_app: str = "sim-privacy-app",
    odd: bool = True,
) -> list[SimCall]:
    """``count`` calls; calls are grouped on equal callEndTime so their CDRs get merged."""
    weights = parse_mix(mix) if isinstance(mix, str) or mix is None else mix
    rng = random.Random(seed)
    services = list(weights)
    clock = BASE_TIME + timedelta(seconds=rng.randint(0, 20 * 3600))
    calls: list[SimCall] = []
    while len(calls) < count:
        clock += timedelta(seconds=rng.randint(1, 30))
        group = min(count - len(calls), rng.choices((1, 2, 3, 5, 60), weights=(60, 15, 10, 10, 5))[0])
        for _ in range(group):
            service = rng.choices(services, weights=[weights[s] for s in services])[0]
            if service == "voice":
                calls.append(_voice_call(rng, len(calls), seed, voice_app, clock, odd))
            else:
                calls.append(_privacy_call(rng, len(calls), seed, privacy_app, clock, odd))
    return calls


def event_retry_delays(call: SimCall, event_type: str) -> tuple[float, ...]:
    """Re-push delays of a failed event push: voice never, privacy 1…300 min, X-mode callin never."""
    if call.service == "voice" or (call.kind == "X" and event_type == "callin"):
        return ()
    return PRIVACY_RETRY_MIN


def _dumps(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _cdr_push(service: str, app_key: str, cdrs: list[dict[str, Any]]) -> Push:
    return Push(
        path=VOICE_PATH if service == "voice" else PRIVACY_PATH,
        service=service,
        kind="cdr",
        app_key=app_key,
        body=_dumps({"eventType": "fee", "feeLst": cdrs}),
        retry_delays_min=VOICE_CDR_RETRY_MIN if service == "voice" else PRIVACY_RETRY_MIN,
        session_ids=tuple(c["sessionId"] for c in cdrs),
    )


def build_pushes(
    calls: list[SimCall],
    seed: int,
    *,
    bad_fraction: float = 0.02,
    duplicate_fraction: float = 0.05,
    numstatus_every: int = 40,
) -> SimPlan:
    """The pushes the platform sends for ``calls`` (events in call order, merged CDRs, extras)."""
    rng = random.Random(seed * 7919 + 1)
    pushes: list[Push] = []
    for index, call in enumerate(calls):
        for seq, event in enumerate(call.events):
            pushes.append(Push(
                path=call.path, service=call.service, kind="event", app_key=call.app_key, body=_dumps(event),
                retry_delays_min=event_retry_delays(call, event["eventType"]),
                session_ids=(call.session_id,), call_index=index, seq=seq,
            ))
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for call in calls:
        groups[(call.service, call.app_key, call.cdr["callEndTime"])].append(call.cdr)
    cdr_pushes: list[Push] = []
    for (service, app_key, _), cdrs in groups.items():
        for start in range(0, len(cdrs), MAX_CDRS_PER_PUSH):
            cdr_pushes.append(_cdr_push(service, app_key, cdrs[start : start + MAX_CDRS_PER_PUSH]))
    pushes.extend(cdr_pushes)

    numbers: list[str] = []
    privacy_app = next((c.app_key for c in calls if c.service == "privacy"), "")
    if privacy_app:
        for _ in range(max(1, len(calls) // numstatus_every)):
            entries = []
            for _ in range(rng.randint(1, 3)):
                number = f"+86170{seed % 1000:03d}{len(numbers):05d}"
                numbers.append(number)
                status = rng.choice(("5", "9", "10", "11"))
                entry = {"number": number, "status": status}
                if status == "10":
                    entry["cause"] = rng.choice(("1", "2", "3", "5"))
                entries.append(entry)
            pushes.append(Push(PRIVACY_PATH, "privacy", "numstatus", privacy_app,
                               _dumps({"eventType": "numStatus", "numInfo": entries}),
                               retry_delays_min=PRIVACY_RETRY_MIN, numbers=tuple(e["number"] for e in entries)))

    originals = list(range(len(pushes)))
    for i in originals:
        if rng.random() < duplicate_fraction:
            src = pushes[i]
            pushes.append(Push(src.path, src.service, src.kind, src.app_key, src.body, src.retry_delays_min,
                               duplicate_of=i, session_ids=src.session_ids, numbers=src.numbers))
    # the same CDR re-merged into a different push (with a CDR of another call of the same app)
    by_app: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for call in calls:
        by_app[(call.service, call.app_key)].append(call.cdr)
    for (service, app_key), cdrs in by_app.items():
        for _ in range(int(len(cdrs) * duplicate_fraction / 2) + (1 if len(cdrs) >= 2 else 0)):
            picked = rng.sample(cdrs, k=min(2, len(cdrs)))
            push = _cdr_push(service, app_key, picked)
            push.duplicate_of = -1
            pushes.append(push)

    n_bad = int(round(len(calls) * bad_fraction))
    for n in range(n_bad):
        kind = ("not_json", "unknown_event", "bad_signature")[n % 3]
        call = calls[rng.randrange(len(calls))]
        if kind == "not_json":
            body = b'{"eventType":"fee","feeLst":[{"sessionId": truncated'
        elif kind == "unknown_event":
            body = _dumps({"eventType": "transferred", "statusInfo": {"sessionId": call.session_id}})
        else:
            body = _dumps(call.events[0])
        pushes.append(Push(call.path, call.service, "bad", call.app_key, body, (), expect_ok=False, bad=kind))
    return SimPlan(calls=calls, pushes=pushes, numbers=numbers)

"""``callstream simulate``: drive an edge the way the Huawei platform does, and optionally verify the store.

    calls = generate_calls(seed=7, count=200, mix="voice=0.5,privacy=0.5")
    plan = build_pushes(calls, seed=7)
    report = asyncio.run(drive("http://127.0.0.1:8080", plan, apps))

Each push is signed (``ingest.auth.sign_headers``; the voice digest covers the URL), events of one call
go out in order, different calls concurrently; a non-200 is re-pushed on the platform's schedule
(privacy 1, 4, 9, 106, 203, 300 min; voice CDRs hourly x6; voice status events and X-mode ``callin``
never) compressed by ``retry_scale``. Bad inputs must be answered 4xx.

``verify`` compares the store with the plan; the ids are bound query parameters (sent in the request
body, never in the SQL text), so it works for any ``--count``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from callstream.sim_calls import Push, SimCall, SimPlan, build_pushes, generate_calls, parse_mix
from callstream.sql import run_sql
from consumers.numbers import policy_from_settings
from consumers.protect import protect_session_id
from core.credentials import load_app_secrets, read_stack_file
from core.settings import Settings
from ingest.auth import sign_headers

__all__ = ["SimCall", "SimPlan", "SimReport", "build_pushes", "drive", "generate_calls", "verify", "main"]

DEFAULT_URL = "http://127.0.0.1:8080"


@dataclass
class SimReport:
    calls: int = 0
    pushes: int = 0
    requests: int = 0
    ok: int = 0
    rejected_4xx: int = 0
    server_errors: int = 0
    transport_errors: int = 0
    retries: int = 0
    duplicates: int = 0
    bad_sent: int = 0
    bad_answered_4xx: int = 0
    undelivered: int = 0  # valid pushes that never got a 200 (platform gave up)
    bad_accepted: int = 0  # bad inputs answered 200
    status_counts: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    elapsed_s: float = 0.0

    @property
    def success(self) -> bool:
        return self.undelivered == 0 and self.bad_accepted == 0 and self.bad_answered_4xx == self.bad_sent

    def summary(self) -> str:
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(self.status_counts.items()))
        return (
            f"calls {self.calls}, pushes {self.pushes} (duplicates {self.duplicates}, bad {self.bad_sent}), "
            f"requests {self.requests}, 200s {self.ok}, 4xx {self.rejected_4xx}, 5xx {self.server_errors}, "
            f"transport errors {self.transport_errors}, retries {self.retries}, undelivered {self.undelivered}, "
            f"bad answered 4xx {self.bad_answered_4xx}/{self.bad_sent}, bad accepted {self.bad_accepted} "
            f"[{codes}] in {self.elapsed_s:.1f}s"
        )


def _headers(push: Push, url: str, apps: dict[str, str], rng: random.Random) -> dict[str, str]:
    headers = {"Content-Type": "application/json;charset=UTF-8"}
    secret = apps.get(push.app_key, "")
    if push.bad == "bad_signature":
        secret = secret + "-wrong"
    if not apps:
        return headers
    scheme = "aksk-voice" if push.service == "voice" else "aksk"
    headers.update(sign_headers(push.app_key, secret, scheme=scheme, url=url, nonce=f"{rng.getrandbits(64):016x}"))
    return headers


async def _send(
    http: httpx.AsyncClient, base: str, push: Push, apps: dict[str, str], report: SimReport,
    retry_scale: float, rng: random.Random,
) -> None:
    url = base.rstrip("/") + push.path
    delays = list(push.retry_delays_min) if push.expect_ok else []
    attempt = 0
    while True:
        if attempt:
            report.retries += 1
        report.requests += 1
        status = 0
        try:
            response = await http.post(url, content=push.body, headers=_headers(push, url, apps, rng))
            status = response.status_code
        except httpx.HTTPError:
            report.transport_errors += 1
        report.status_counts[status] += 1
        if status == 200:
            report.ok += 1
        elif 400 <= status < 500:
            report.rejected_4xx += 1
        elif status >= 500:
            report.server_errors += 1
        if not push.expect_ok:
            if 400 <= status < 500:
                report.bad_answered_4xx += 1
            elif status == 200:
                report.bad_accepted += 1
            return
        if status == 200:
            return
        if not delays:
            report.undelivered += 1
            return
        await asyncio.sleep(delays.pop(0) * 60 * retry_scale)
        attempt += 1


async def drive(
    url: str,
    plan: SimPlan,
    apps: dict[str, str],
    *,
    rate: float | None = None,
    concurrency: int = 32,
    retry_scale: float = 0.0005,
    seed: int = 0,
    timeout_s: float = 10.0,
) -> SimReport:
    """Send the plan's pushes to ``url``; ``rate`` paces calls per second (None = as fast as allowed)."""
    report = SimReport(calls=len(plan.calls), pushes=len(plan.pushes))
    report.duplicates = sum(1 for p in plan.pushes if p.duplicate_of is not None)
    report.bad_sent = sum(1 for p in plan.pushes if not p.expect_ok)
    rng = random.Random(seed ^ 0x5EED)
    gate = asyncio.Semaphore(concurrency)
    per_call: dict[int, list[Push]] = defaultdict(list)
    others: list[Push] = []
    for push in plan.pushes:
        (per_call[push.call_index] if push.call_index >= 0 else others).append(push)
    started = time.monotonic()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)  # short connections
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as http:

        async def one(push: Push) -> None:
            async with gate:
                await _send(http, url, push, apps, report, retry_scale, rng)

        async def call_sequence(index: int, pushes: list[Push]) -> None:
            if rate:
                await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
            for push in sorted(pushes, key=lambda p: p.seq):
                await one(push)

        await asyncio.gather(*(call_sequence(i, p) for i, p in sorted(per_call.items())))
        random.Random(seed).shuffle(others)  # CDRs, number status, duplicates and bad inputs interleaved
        await asyncio.gather(*(one(p) for p in others))
    report.elapsed_s = time.monotonic() - started
    return report


@dataclass
class VerifyResult:
    ok: bool
    lines: list[str]


def verify_once(settings: Settings, plan: SimPlan) -> VerifyResult:
    """Compare the store with what was sent: exact distinct counts, no duplicate keys."""
    db = settings.clickhouse_database
    policy = policy_from_settings(settings)  # session ids may embed numbers, stored protected
    sessions = [protect_session_id(c.session_id, policy) for c in plan.calls]
    bound = {"sessions": sessions, "numbers": list(plan.numbers)}
    expected = plan.expected()
    checks = {
        "cdrs": f"SELECT count(), uniqExact(dedup_key) FROM {db}.cdrs WHERE has({{sessions:Array(String)}}, session_id)",
        "call_events": f"SELECT count(), uniqExact(dedup_key) FROM {db}.call_events "
        "WHERE has({sessions:Array(String)}, session_id)",
        "number_status": f"SELECT uniqExact(number), count(), uniqExact(dedup_key) FROM {db}.number_status "
        "WHERE has({numbers:Array(String)}, number)",
    }
    lines: list[str] = []
    ok = True
    for table, sql in checks.items():
        row = json.loads(run_sql(settings, sql, "JSONCompactEachRow", parameters=bound).decode().splitlines()[0])
        values = [int(v) for v in row]
        if table == "number_status":
            distinct, count, keys = values
            good = distinct == expected[table] and count == keys
        else:
            count, keys = values
            good = count == expected[table] and count == keys
        ok = ok and good
        lines.append(f"{table}: expected {expected[table]}, stored {values[0]}, rows {values[-2]} / keys "
                     f"{values[-1]} {'OK' if good else 'MISMATCH'}")
    try:
        row = run_sql(settings, f"SELECT count() FROM {db}.failed_events", "TabSeparated").decode().strip()
        lines.append(f"failed_events (quarantined inputs, all runs): {row}")
    except Exception as exc:  # a bonus figure only
        lines.append(f"failed_events: not readable ({exc})")
    return VerifyResult(ok, lines)


def verify(settings: Settings, plan: SimPlan, timeout_s: float = 60.0) -> VerifyResult:
    """Poll :func:`verify_once` until it holds or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = verify_once(settings, plan)
        except Exception as exc:  # tables may not exist yet while the stack starts
            result = VerifyResult(False, [f"store not readable yet: {exc}"])
        if result.ok or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def _apps_by_service(apps: dict[str, str]) -> tuple[str, str]:
    keys = sorted(apps)
    if not keys:
        return "sim-voice-app", "sim-privacy-app"
    return keys[0], keys[1] if len(keys) > 1 else keys[0]


def main(args: argparse.Namespace, settings: Settings) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per push is noise here
    data_dir = Path(args.data_dir) if args.data_dir else settings.data_dir
    stack = read_stack_file(data_dir)
    if stack and stack.get("clickhouse_database"):
        settings = settings.model_copy(update={"clickhouse_database": stack["clickhouse_database"]})
    url = args.url or (stack or {}).get("edge_url") or DEFAULT_URL
    apps = load_app_secrets(settings, data_dir)
    if not apps:
        print("callstream simulate: no credentials: set CALLSTREAM_APPS or run `callstream up` "
              f"(it writes {data_dir / 'credentials'}); sending unsigned pushes", file=sys.stderr)
    seed = args.seed if args.seed is not None else 1
    rate = args.rate
    count = args.count
    if count is None:
        count = int((args.duration or 10) * (rate or 20)) if args.duration else 100
    voice_app, privacy_app = _apps_by_service(apps)
    calls = generate_calls(seed, count, parse_mix(args.mix), voice_app=voice_app, privacy_app=privacy_app)
    plan = build_pushes(
        calls, seed,
        bad_fraction=0.02 if args.bad_fraction is None else args.bad_fraction,
        duplicate_fraction=0.05 if args.duplicate_fraction is None else args.duplicate_fraction,
    )
    print(f"simulating {len(calls)} calls ({len(plan.pushes)} pushes) against {url} (seed {seed})", flush=True)
    report = asyncio.run(drive(
        url, plan, apps, rate=rate, seed=seed,
        retry_scale=0.0005 if args.retry_scale is None else args.retry_scale,
    ))
    print(report.summary(), flush=True)
    code = 0 if report.success else 1
    if not report.success:
        print("simulate: some valid pushes were never accepted or bad inputs were not answered 4xx", file=sys.stderr)
    if args.verify:
        result = verify(settings, plan, 60.0 if args.verify_timeout is None else args.verify_timeout)
        print("verify: " + ("OK" if result.ok else "FAILED"))
        for line in result.lines:
            print("  " + line)
        if not result.ok:
            code = 1
    return code

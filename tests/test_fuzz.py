"""Fuzz the edge and the normaliser with bad and odd inputs (hypothesis + mutation of tests/samples).

Oracle for the edge (the real app on the real broker): every request is answered within its bound, with
200 or a 4xx and never a 5xx (the broker is up); every 4xx has exactly one dead-letter record and every
200 exactly one raw record carrying the same bytes. For the consumer's CPU step (``consumers.prepare``, as
the consumer runs it): any envelope becomes rows or failures, never an exception.

The default run sends >= 10,000 inputs; ``pytest --long`` sends 60,000 (and more hypothesis examples).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from callstream.reconcile import scan_topic
from consumers.decode import Notification
from consumers.prepare import prepare_notifications
from consumers.republish import to_message
from core.kafka import ensure_topics
from core.settings import Settings
from ingest.auth import sign_headers
from schemas.avro_codec import decode
from tests.chaos.harness import APPS, ASGI_BASE, asgi_edge, start_edge
from tests.conftest import TEST_APP_KEY, TEST_PRIVACY_APP_KEY, sample_paths

pytestmark = pytest.mark.timeout(600)

REQUEST_TIMEOUT_S = 15.0
EVENT_TYPES = ["callout", "alerting", "answer", "collectInfo", "disconnect", "callin", "fee", "numStatus",
               "transferred", "", "FEE", "fee ", "null", "\u0000", "callout\u200b"]


@dataclass
class Case:
    """One request: path, body, headers (None = sign properly), a label for the tally."""

    service: str
    body: bytes
    label: str
    headers: dict[str, str] | None = None
    content_type: str = "application/json;charset=UTF-8"


# --- the corpus ----------------------------------------------------------------------------------
def samples() -> list[tuple[str, bytes]]:
    return [("privacy" if p.name.startswith("privacy") else "voice", p.read_bytes()) for p in sample_paths()]


ODD_VALUES: list[Any] = [
    None, True, False, 0, -1, 2**63, -(2**63) - 1, 10**40, 1.5, -0.0, 1e308, "", " ", "0", "-1",
    "9" * 400, "2024-02-30 25:61:61", "2024-03-12  10:00:00", "2024-03-12T10:00:00Z", "\u202e\u0000\ud7ff",
    [], {}, [None], {"a": {"b": [1, {"c": None}]}}, "x" * 10_000, "emoji \U0001f4de", "1e400",
]
RAW_NUMBERS = [b"1e400", b"-1e400", b"NaN", b"Infinity", b"-Infinity", b"123456789012345678901234567890",
               b"1E-400", b"-0", b"0x10", b"01", b"1.", b".5", b"+1"]


def _walk_set(doc: Any, rng: random.Random, value: Any) -> Any:
    """Replace one randomly chosen value somewhere in ``doc``."""
    if isinstance(doc, dict) and doc:
        key = rng.choice(list(doc))
        if rng.random() < 0.5 or not isinstance(doc[key], (dict, list)):
            doc[key] = value
        else:
            _walk_set(doc[key], rng, value)
    elif isinstance(doc, list) and doc:
        i = rng.randrange(len(doc))
        if rng.random() < 0.5 or not isinstance(doc[i], (dict, list)):
            doc[i] = value
        else:
            _walk_set(doc[i], rng, value)
    return doc


def _drop_key(doc: Any, rng: random.Random) -> Any:
    if isinstance(doc, dict) and doc:
        key = rng.choice(list(doc))
        if isinstance(doc[key], (dict, list)) and rng.random() < 0.6:
            _drop_key(doc[key], rng)
        else:
            del doc[key]
    elif isinstance(doc, list) and doc:
        _drop_key(doc[rng.randrange(len(doc))], rng)
    return doc


def mutate(rng: random.Random, service: str, body: bytes, max_body: int) -> Case:  # noqa: PLR0911, PLR0912
    kind = rng.randrange(22)
    doc = json.loads(body)
    if kind == 0:
        return Case(service, body[: rng.randrange(len(body))], "truncated")
    if kind == 1:
        return Case(service, json.dumps(_walk_set(doc, rng, rng.choice(ODD_VALUES))).encode(), "wrong_type")
    if kind == 2:  # a raw number literal JSON libraries disagree about
        text = json.dumps(_walk_set(doc, rng, "@@N@@"))
        return Case(service, text.replace('"@@N@@"', rng.choice(RAW_NUMBERS).decode()).encode(), "huge_or_nan")
    if kind == 3:
        depth = rng.choice((1_000, 5_000, 100_000))
        opener = rng.choice(("[", '{"a":', '{"eventType":"fee","feeLst":['))
        return Case(service, (opener * depth).encode(), "deep_nesting")
    if kind == 4:
        data = bytearray(body)
        for _ in range(rng.randint(1, 4)):
            data.insert(rng.randrange(len(data)), rng.choice((0xFF, 0xC0, 0x80, 0xED, 0xF8)))
        return Case(service, bytes(data), "invalid_utf8")
    if kind == 5:
        return Case(service, b"", "empty")
    if kind == 6:
        return Case(service, json.dumps(_drop_key(doc, rng)).encode(), "missing_field")
    if kind == 7:
        doc["eventType"] = rng.choice(EVENT_TYPES)
        return Case(service, json.dumps(doc).encode(), "event_type")
    if kind == 8:  # duplicated keys: the first and the last disagree
        inner = body.strip()[1:]
        return Case(service, b'{"eventType":"' + rng.choice(EVENT_TYPES).encode() + b'",' + inner, "duplicate_keys")
    if kind == 9:
        return Case(service, body, "no_auth", headers={})
    if kind == 10:
        garbled = dict(sign_headers(TEST_APP_KEY, "wrong", scheme="aksk"))
        choice = rng.randrange(5)
        key = "X-AKSK" if "X-AKSK" in garbled else "X-WSSE"
        if choice == 0:
            garbled[key] = garbled[key][: rng.randrange(len(garbled[key]))]
        elif choice == 1:
            garbled[key] = garbled[key].replace("Username=", "User=")
        elif choice == 2:
            garbled["Authorization"] = "Basic Zm9vOmJhcg=="
        elif choice == 3:
            garbled[key] = "UsernameToken " + "A" * rng.randint(0, 5000)
        else:
            garbled[key] = garbled[key].replace('Created="', 'Created="1999')
        return Case(service, body, "bad_auth", headers=garbled)
    if kind == 11:
        return Case(service, body, "content_type", content_type=rng.choice(
            ("text/plain", "application/xml", "", "multipart/form-data; boundary=x", "application/json;charset=latin-1")))
    if kind == 12:
        return Case(service, b"x" * (max_body + 1), "too_large")
    if kind == 13:
        other = "privacy" if service == "voice" else "voice"
        return Case(other, body, "wrong_service")
    if kind == 14:
        data = bytearray(body)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return Case(service, bytes(data), "byte_flip")
    if kind == 15:
        return Case(service, rng.choice((b"null", b"[]", b"1", b'"fee"', b"true", b"{}", b"  ", b"\xef\xbb\xbf{}")),
                    "not_object")
    if kind == 16:  # odd but readable: extra fields, unicode, numbers as strings
        doc["extraField" + str(rng.randrange(100))] = rng.choice(ODD_VALUES)
        return Case(service, json.dumps(doc, ensure_ascii=rng.random() < 0.5).encode(), "odd_valid")
    if kind == 17:
        return Case(service, json.dumps(_walk_set(doc, rng, "9" * rng.randint(20, 5000))).encode(), "huge_string_number")
    if kind == 18:  # a list where an object belongs and vice versa
        for key in ("feeLst", "numInfo", "statusInfo"):
            if key in doc:
                doc[key] = rng.choice(([], {}, [1, "a", None], [[]], {"0": doc[key]}, "x"))
        return Case(service, json.dumps(doc).encode(), "shape")
    if kind == 19:
        return Case(service, body + rng.choice((b"garbage", b",", b"}", b"\x00", b"\n{}")), "trailing")
    if kind == 20:
        return Case(service, max_body_filler(body, max_body), "exactly_limit")
    return Case(service, bytes(rng.randrange(256) for _ in range(rng.randint(1, 300))), "random_bytes")


def max_body_filler(body: bytes, max_body: int) -> bytes:
    """A valid-looking push padded with whitespace to exactly ``max_body`` bytes (accepted)."""
    return body + b" " * (max_body - len(body))


@st.composite
def json_bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                     st.text(max_size=20))
    value = st.recursive(leaf, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                                                            max_size=4), max_leaves=12)
    event = draw(st.sampled_from(EVENT_TYPES))
    record = draw(st.dictionaries(st.sampled_from(["sessionId", "timestamp", "caller", "called", "stateCode", "icid",
                                                   "callEndTime", "number", "status", "cause", "appKey", "x"]),
                                  value, max_size=6))
    shape = draw(st.sampled_from(["statusInfo", "feeLst", "numInfo", "none"]))
    doc: dict[str, Any] = {"eventType": event}
    if shape == "statusInfo":
        doc["statusInfo"] = record
    elif shape != "none":
        doc[shape] = draw(st.lists(st.one_of(st.just(record), value), max_size=3))
    service = draw(st.sampled_from(["voice", "privacy"]))
    return service, json.dumps(doc).encode()


def hypothesis_corpus(examples: int) -> list[Case]:
    found: list[Case] = []

    @hsettings(max_examples=examples, deadline=None, database=None, derandomize=True,
               suppress_health_check=list(HealthCheck))
    @given(json_bodies())
    def collect(item: tuple[str, bytes]) -> None:
        found.append(Case(item[0], item[1], "hypothesis"))

    collect()
    return found


def corpus(count: int, seed: int, max_body: int, hypothesis_examples: int) -> list[Case]:
    rng = random.Random(seed)
    base = samples()
    cases = hypothesis_corpus(hypothesis_examples)
    while len(cases) < count:
        service, body = rng.choice(base)
        cases.append(mutate(rng, service, body, max_body))
    large = [c for c in cases if len(c.body) > 64 * 1024]
    for c in large[40:]:  # keep the megabyte bodies to a few dozen per run (they are all alike)
        c.body, c.label = c.body[:70_000], c.label + "_cut"
    return cases


# --- the edge ------------------------------------------------------------------------------------
def _headers(case: Case, url: str, rng: random.Random) -> dict[str, str]:
    if case.headers is not None:
        headers = dict(case.headers)
    else:
        app_key = TEST_APP_KEY if case.service == "voice" else TEST_PRIVACY_APP_KEY
        headers = sign_headers(app_key, APPS[app_key], scheme="aksk-voice" if case.service == "voice" else "aksk",
                               url=url, nonce=uuid.UUID(int=rng.getrandbits(128)).hex)
    if case.content_type:
        headers["Content-Type"] = case.content_type
    return headers


async def send_all(client: httpx.AsyncClient, base: str, cases: list[Case], concurrency: int) -> list[int]:
    rng = random.Random(99)
    gate = asyncio.Semaphore(concurrency)
    statuses = [0] * len(cases)

    async def one(i: int, case: Case) -> None:
        url = f"{base}/notify/{case.service}"
        async with gate:
            try:
                response = await asyncio.wait_for(
                    client.post(url, content=case.body, headers=_headers(case, url, rng)), REQUEST_TIMEOUT_S)
                statuses[i] = response.status_code
            except (TimeoutError, httpx.TimeoutException):
                statuses[i] = -1  # hang

    await asyncio.gather(*(one(i, c) for i, c in enumerate(cases)))
    return statuses


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


async def topic_bodies(settings: Settings, topic: str) -> list[dict[str, Any]]:
    records = await scan_topic(settings, topic, datetime.now(UTC) - timedelta(hours=1),
                               datetime.now(UTC) + timedelta(hours=1))
    return [decode(value or b"")[1] for _, _, _, value in records]


def check_accounting(cases: list[Case], statuses: list[int], raw: list[dict[str, Any]],
                     dead: list[dict[str, Any]], max_body: int) -> Counter[str]:
    tally: Counter[str] = Counter()
    for case, status in zip(cases, statuses, strict=True):
        tally[f"{case.label}:{status}"] += 1
    hangs = [c.label for c, s in zip(cases, statuses, strict=True) if s == -1]
    assert not hangs, f"requests not answered within {REQUEST_TIMEOUT_S}s: {Counter(hangs)}"
    server_errors = Counter(f"{c.label}:{s}" for c, s in zip(cases, statuses, strict=True) if s >= 500)
    assert not server_errors, f"5xx answers with the broker up: {server_errors}"
    odd = Counter(f"{c.label}:{s}" for c, s in zip(cases, statuses, strict=True) if s != 200 and not 400 <= s < 500)
    assert not odd, f"answers other than 200/4xx: {odd}"

    ok_bodies = Counter(digest(c.body) for c, s in zip(cases, statuses, strict=True) if s == 200)
    refused = [c for c, s in zip(cases, statuses, strict=True) if 400 <= s < 500]
    assert len(raw) == sum(ok_bodies.values()), f"{sum(ok_bodies.values())} answers were 200, raw topic has {len(raw)}"
    assert Counter(digest(r["body"]) for r in raw) == ok_bodies, "raw records do not carry the accepted bytes"
    edge_dead = [d for d in dead if d["stage"] == "edge"]
    assert len(edge_dead) == len(refused) == len(dead), (
        f"{len(refused)} answers were 4xx, dead topic has {len(edge_dead)} edge records of {len(dead)}")
    expected_dead = Counter(digest(c.body[:max_body]) for c in refused)
    assert Counter(digest(d["body"]) for d in edge_dead) == expected_dead, "dead letters do not carry the refused bytes"
    assert sum(1 for d in edge_dead if d["body_truncated"]) == sum(1 for c in refused if len(c.body) > max_body)
    return tally


def test_fuzz_edge_in_process(make_settings: Callable[..., Settings], long_run: bool) -> None:
    settings = make_settings()
    count, examples = (60_000, 5_000) if long_run else (10_500, 600)
    cases = corpus(count, seed=2024, max_body=settings.max_body_bytes, hypothesis_examples=examples)
    assert len(cases) >= 10_000

    async def run() -> tuple[list[int], list[dict[str, Any]], list[dict[str, Any]], float]:
        await ensure_topics(settings)
        started = time.monotonic()
        async with asgi_edge(settings, timeout_s=REQUEST_TIMEOUT_S) as client:
            statuses = await send_all(client, ASGI_BASE, cases, concurrency=64)
        elapsed = time.monotonic() - started
        return statuses, await topic_bodies(settings, settings.raw_topic), \
            await topic_bodies(settings, settings.dead_topic), elapsed

    statuses, raw, dead, elapsed = asyncio.run(run())
    tally = check_accounting(cases, statuses, raw, dead, settings.max_body_bytes)
    print(f"\nfuzz (in-process edge): {len(cases)} inputs in {elapsed:.1f}s, "
          f"200: {statuses.count(200)}, 4xx: {sum(1 for s in statuses if 400 <= s < 500)}, "
          f"raw records {len(raw)}, dead letters {len(dead)}")
    print("  " + ", ".join(f"{k} {v}" for k, v in sorted(tally.items())))
    # the corpus really exercises both answers and the interesting refusals
    assert statuses.count(200) > 500
    for label, status in (("too_large", 413), ("no_auth", 401), ("bad_auth", 401), ("deep_nesting", 400),
                          ("invalid_utf8", 400), ("empty", 400), ("exactly_limit", 200)):
        assert tally[f"{label}:{status}"] > 0, (label, status)


def test_fuzz_edge_over_http(make_settings: Callable[..., Settings], tmp_path: Any, long_run: bool) -> None:
    """A smaller batch over real HTTP to `callstream edge` (uvicorn), plus broken HTTP on a raw socket."""
    settings = make_settings()
    cases = corpus(3000 if long_run else 600, seed=77, max_body=settings.max_body_bytes,
                   hypothesis_examples=100)
    asyncio.run(ensure_topics(settings))
    edge, port = start_edge(settings, tmp_path / "edge.log")
    try:
        base = f"http://127.0.0.1:{port}"

        async def run() -> list[int]:
            async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S) as client:
                return await send_all(client, base, cases, concurrency=16)

        statuses = asyncio.run(run())
        broken = [
            b"GARBAGE\r\n\r\n",
            b"POST /notify/voice HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",  # short body, then close
            b"POST /notify/voice HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            b"POST /notify/voice HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"POST /notify/voice HTTP/1.1\r\n" + b"X-Long: " + b"a" * 100_000 + b"\r\n\r\n",
        ]
        for raw_request in broken:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(raw_request)
                sock.shutdown(socket.SHUT_WR)
                try:
                    answer = sock.recv(100)
                except (TimeoutError, ConnectionResetError):
                    answer = b""
                assert not answer.startswith(b"HTTP/1.1 5"), (raw_request[:40], answer)
        assert edge.alive(), edge.log()
        assert httpx.get(f"{base}/health/live", timeout=5).status_code == 200
    finally:
        edge.stop()

    async def topics() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return await topic_bodies(settings, settings.raw_topic), await topic_bodies(settings, settings.dead_topic)

    raw, dead = asyncio.run(topics())
    # the broken requests carry no complete body: the edge answers 4xx for a short body it could read,
    # so dead letters may exceed the httpx 4xx count by those; account for them separately
    extra = [d for d in dead if d["headers"].get("host") != f"127.0.0.1:{port}"]
    main_dead = [d for d in dead if d not in extra]
    check_accounting(cases, statuses, raw, main_dead, settings.max_body_bytes)
    print(f"\nfuzz (uvicorn edge): {len(cases)} inputs, 200: {statuses.count(200)}, "
          f"4xx: {sum(1 for s in statuses if 400 <= s < 500)}, broken-HTTP dead letters {len(extra)}")


# --- the normaliser -------------------------------------------------------------------------------
def run_consumer_stages(n: Notification, settings: Settings) -> None:
    """The consumer's own CPU step (``consumers.prepare``) on one push: it raises nothing (a bad push or
    record becomes a failure), every row has a 64-bit key and one downstream record."""
    prepared = prepare_notifications([n], settings, encode=True)
    for table, rows in prepared.tables.items():
        assert all(0 <= r["dedup_key"] < 2**64 for r in rows)
        if table == "number_status":  # encoded on delivery (its key depends on the stored history)
            assert all(to_message(table, r) for r in rows)
            continue
        assert set(prepared.messages[table]) == {r["dedup_key"] for r in rows}
    assert all(f.notification is n and f.reason for f in prepared.failures)


def notification(service: str, body: bytes, event_type: str, rng: random.Random) -> Notification:
    return Notification(
        id=uuid.UUID(int=rng.getrandbits(128)).hex,
        received_at_us=rng.choice((0, 1, int(time.time() * 1e6), 253402300799 * 10**6)),  # the edge clock
        service=service, path=f"/notify/{service}", event_type=event_type,
        app_key=rng.choice((TEST_APP_KEY, TEST_PRIVACY_APP_KEY, "", "\u0000")), body=body,
    )


def test_fuzz_normaliser_mutations(settings: Settings, long_run: bool) -> None:
    rng = random.Random(5)
    base = samples()
    count = 100_000 if long_run else 15_000
    for _ in range(count):
        service, body = rng.choice(base)
        case = mutate(rng, service, body, 4096)
        if case.label in ("too_large", "exactly_limit"):
            continue
        run_consumer_stages(notification(case.service, case.body, rng.choice(EVENT_TYPES), rng), settings)


@hsettings(max_examples=600, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(json_bodies(), st.sampled_from(EVENT_TYPES), st.randoms(use_true_random=False))
def test_fuzz_normaliser_hypothesis(item: tuple[str, bytes], envelope_type: str, rng: random.Random) -> None:
    run_consumer_stages(notification(item[0], item[1], envelope_type, rng), Settings(apps="k:s", number_pepper="fuzz-pepper-0123456789abcdef"))

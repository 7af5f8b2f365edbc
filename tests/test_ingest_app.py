"""The edge app against the real broker: what goes in comes out of Kafka byte-identical, every refusal is
quarantined on the dead-letter topic, 503 fast when Kafka is gone, bounded in-flight requests."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from core.broker import EmbeddedBroker
from core.settings import Settings
from ingest.app import create_app
from ingest.auth import sign_headers
from schemas.avro_codec import decode
from tests.helpers import read_records, run_async
from tests.conftest import (
    TEST_APP_KEY,
    TEST_APP_SECRET,
    TEST_PRIVACY_APP_KEY,
    TEST_PRIVACY_APP_SECRET,
    sample_paths,
)

BASE = "http://edge.test"


@asynccontextmanager
async def running_edge(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 5555))
        async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=30) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


def creds(service: str) -> tuple[str, str]:
    return (TEST_APP_KEY, TEST_APP_SECRET) if service == "voice" else (TEST_PRIVACY_APP_KEY, TEST_PRIVACY_APP_SECRET)


def signed(service: str, scheme: str = "aksk", **kw: Any) -> dict[str, str]:
    app_key, secret = creds(service)
    headers = sign_headers(app_key, secret, scheme=scheme, url=f"{BASE}/notify/{service}", **kw)
    headers["Content-Type"] = "application/json;charset=UTF-8"
    return headers


def expected_key(body: bytes) -> str:
    doc = json.loads(body)
    if "statusInfo" in doc:
        return str(doc["statusInfo"]["sessionId"])
    if "feeLst" in doc:
        return str(doc["feeLst"][0]["sessionId"])
    return str(doc["numInfo"][0]["number"])


@run_async
async def test_every_sample_comes_out_byte_identical(settings: Settings) -> None:
    sent: dict[str, tuple[bytes, str, str]] = {}
    schemes = {"voice": ["aksk-voice", "aksk", "wsse"], "privacy": ["aksk", "wsse"]}
    async with running_edge(settings) as client:
        for i, path in enumerate(sample_paths()):
            service = path.name.split("_", 1)[0]
            scheme = schemes[service][i % len(schemes[service])]
            body = path.read_bytes()
            response = await client.post(f"/notify/{service}", content=body, headers=signed(service, scheme))
            assert response.status_code == 200, response.text
            assert response.content == b"{}"
            assert response.headers["content-type"] == "application/json;charset=UTF-8"
            sent[path.name] = (body, service, scheme)
        metrics = (await client.get("/metrics")).text
    assert 'callstream_edge_sent_events_total{service="voice"}' in metrics
    assert 'callstream_edge_received_events_total{event_type="fee",service="privacy"}' in metrics

    records = await read_records(settings, settings.raw_topic, len(sent))
    assert len(records) == len(sent)
    by_body = {body: (name, service, scheme) for name, (body, service, scheme) in sent.items()}
    for record in records:
        name, envelope = decode(record.value)
        assert name == "raw_envelope"
        _name, service, scheme = by_body[envelope["body"]]  # byte-identical
        body = envelope["body"]
        doc = json.loads(body)
        app_key = creds(service)[0]
        assert envelope["service"] == service and envelope["path"] == f"/notify/{service}"
        assert envelope["event_type"] == doc["eventType"]
        assert (envelope["app_key"], envelope["auth_scheme"]) == (app_key, scheme)
        assert envelope["remote_addr"] == "10.1.2.3"
        assert envelope["content_type"] == "application/json;charset=UTF-8"
        assert len(envelope["id"]) == 32
        assert abs(envelope["received_at"] - datetime.now(UTC)) < timedelta(minutes=1)
        assert record.key == expected_key(body).encode()
        headers = dict(record.headers)
        assert headers["ce_specversion"] == b"1.0"
        assert headers["ce_id"] == envelope["id"].encode()
        assert headers["ce_source"] == f"huawei/{service}/{app_key}".encode()
        assert headers["ce_type"] == f"com.huaweicloud.{service}.{doc['eventType']}".encode()
        assert headers["ce_subject"] == record.key
        assert headers["content-type"] == b"application/avro"
        assert datetime.fromisoformat(headers["ce_time"].decode()) == envelope["received_at"]


def _created(minutes: int) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


AUTH_FAILURES: list[tuple[str, Callable[[], dict[str, str]]]] = [
    ("missing_header", lambda: {"Content-Type": "application/json"}),
    ("unknown_app", lambda: sign_headers("no-such-app", TEST_PRIVACY_APP_SECRET)),
    ("bad_digest", lambda: sign_headers(TEST_PRIVACY_APP_KEY, "wrong")),
    ("skewed_created", lambda: signed("privacy", created=_created(-30))),
    ("malformed_header", lambda: {"Authorization": "AKSK x", "X-AKSK": "UsernameToken nonsense"}),
]


@run_async
async def test_auth_failures_are_401_and_quarantined(settings: Settings) -> None:
    body = (sample_paths()[0]).read_bytes()
    async with running_edge(settings) as client:
        for reason, make in AUTH_FAILURES:
            response = await client.post("/notify/privacy", content=body, headers=make())
            assert response.status_code == 401, reason
            assert response.json()["error"] == reason
        metrics = (await client.get("/metrics")).text
    assert 'callstream_edge_discarded_events_total{reason="bad_digest"} 1.0' in metrics
    assert await read_records(settings, settings.raw_topic, 1, timeout_s=1.0) == []
    dead = await read_records(settings, settings.dead_topic, len(AUTH_FAILURES))
    decoded = [decode(r.value)[1] for r in dead]
    assert sorted(d["reason"] for d in decoded) == sorted(r for r, _ in AUTH_FAILURES)
    for letter in decoded:
        assert letter["body"] == body and letter["http_status"] == 401 and letter["stage"] == "edge"
        aksk = letter["headers"].get("x-aksk", "")
        assert "PasswordDigest=\"[redacted]\"" in aksk or 'PasswordDigest' not in aksk
    bad = next(d for d in decoded if d["reason"] == "bad_digest")
    assert bad["app_key"] == TEST_PRIVACY_APP_KEY


@run_async
async def test_replayed_nonce_after_200_is_refused(settings: Settings) -> None:
    body = sample_paths()[0].read_bytes()
    headers = signed("privacy")
    async with running_edge(settings) as client:
        assert (await client.post("/notify/privacy", content=body, headers=headers)).status_code == 200
        replay = await client.post("/notify/privacy", content=body, headers=headers)
        assert replay.status_code == 401 and replay.json()["error"] == "replayed_nonce"
    assert len(await read_records(settings, settings.raw_topic, 1)) == 1


@run_async
async def test_auth_off_accepts_unsigned(make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(auth="off", apps="")
    body = sample_paths()[-1].read_bytes()
    async with running_edge(settings) as client:
        assert (await client.post("/notify/voice", content=body)).status_code == 200
    assert any("AUTHENTICATION IS OFF" in r.message and r.levelname == "WARNING" for r in caplog.records)
    (record,) = await read_records(settings, settings.raw_topic, 1)
    assert decode(record.value)[1]["auth_scheme"] == "off"


BAD_INPUTS = [
    ("not_utf8", b'{"eventType": "fee", "x": "\xff"}', 400),
    ("not_json", b"<xml/>", 400),
    ("not_object", b"[]", 400),
    ("unknown_event_type", b'{"eventType": "ring", "statusInfo": {}}', 400),
    ("missing_field", b'{"eventType": "fee"}', 400),
    ("wrong_service", b'{"eventType": "numStatus", "numInfo": [{"number": "1"}]}', 400),
]


@run_async
async def test_bad_inputs_are_4xx_and_dead_lettered(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(max_body_bytes=4096)
    big = b'{"eventType": "fee", "feeLst": [' + b"1," * 4000 + b"1]}"
    cases = [*BAD_INPUTS, ("too_large", big, 413)]
    async with running_edge(settings) as client:
        for reason, body, status in cases:
            response = await client.post("/notify/voice", content=body, headers=signed("voice"))
            assert response.status_code == status, (reason, response.text)
            assert response.json()["error"] == reason
    dead = {d["reason"]: d for d in (decode(r.value)[1] for r in await read_records(settings, settings.dead_topic, len(cases)))}
    assert set(dead) == {reason for reason, _, _ in cases}
    for reason, body, status in cases:
        letter = dead[reason]
        assert letter["http_status"] == status and letter["app_key"] == TEST_APP_KEY
        assert letter["path"] == "/notify/voice"
        if reason == "too_large":
            assert letter["body_truncated"] and letter["body"] == body[:4096]
        else:
            assert letter["body"] == body and not letter["body_truncated"]
        assert "[redacted]" in letter["headers"]["x-aksk"]
        assert TEST_APP_SECRET not in json.dumps(letter["headers"])


@run_async
async def test_in_flight_limit_answers_503(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(max_in_flight_requests=1)
    release = asyncio.Event()
    body = sample_paths()[0].read_bytes()

    async def slow_body() -> AsyncIterator[bytes]:
        yield body[:10]
        await release.wait()
        yield body[10:]

    async with running_edge(settings) as client:
        first = asyncio.create_task(client.post("/notify/privacy", content=slow_body(), headers=signed("privacy")))
        deadline = time.monotonic() + 5
        while client.app.state.in_flight.count < 1:  # type: ignore[attr-defined]
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        refused = await client.post("/notify/privacy", content=body, headers=signed("privacy"))
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        release.set()
        assert (await first).status_code == 200
        assert (await client.post("/notify/privacy", content=body, headers=signed("privacy"))).status_code == 200
        assert 'callstream_edge_errors_total{stage="overload"} 1.0' in (await client.get("/metrics")).text


@run_async
async def test_broker_down_gives_503_within_deadline(make_settings: Callable[..., Settings]) -> None:
    own = EmbeddedBroker().start()
    try:
        settings = make_settings(kafka_bootstrap=own.bootstrap, ack_timeout_s=1.0)
        body = sample_paths()[0].read_bytes()
        async with running_edge(settings) as client:
            assert (await client.get("/health/ready")).status_code == 200
            assert (await client.post("/notify/privacy", content=body, headers=signed("privacy"))).status_code == 200
            own.kill()
            for content in (body, b"not json"):  # the dead-letter write cannot be acked either: 503, not 400
                started = time.monotonic()
                response = await client.post("/notify/privacy", content=content, headers=signed("privacy"))
                assert response.status_code == 503 and response.headers["retry-after"] == "1"
                assert time.monotonic() - started < settings.ack_timeout_s + 1
            assert (await client.get("/health/ready")).status_code == 503
            assert (await client.get("/health/live")).status_code == 200
    finally:
        own.stop()


@run_async
async def test_edge_starts_without_kafka_and_reports_not_ready(make_settings: Callable[..., Settings]) -> None:
    from core.broker import free_port

    settings = make_settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", ack_timeout_s=0.5)
    async with running_edge(settings) as client:
        assert (await client.get("/health/ready")).status_code == 503
        started = time.monotonic()
        response = await client.post("/notify/privacy", content=b"{}", headers=signed("privacy"))
        assert response.status_code == 503 and time.monotonic() - started < 1.5


@run_async
async def test_retry_after_503_is_not_a_replay(make_settings: Callable[..., Settings]) -> None:
    own = EmbeddedBroker().start()
    try:
        settings = make_settings(kafka_bootstrap=own.bootstrap, ack_timeout_s=1.0)
        body = sample_paths()[0].read_bytes()
        headers = signed("privacy")
        async with running_edge(settings) as client:
            own.kill()
            assert (await client.post("/notify/privacy", content=body, headers=headers)).status_code == 503
            own.start()
            deadline = time.monotonic() + 20
            while True:  # the platform re-pushes the same signed request until it gets a 200
                response = await client.post("/notify/privacy", content=body, headers=headers)
                if response.status_code == 200 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert response.status_code == 200
    finally:
        own.stop()


@run_async
async def test_methods_and_health(settings: Settings) -> None:
    async with running_edge(settings) as client:
        assert (await client.get("/notify/voice")).status_code == 405
        assert (await client.get("/health/live")).json() == {"status": "live"}
        assert (await client.get("/health/ready")).status_code == 200
        text = (await client.get("/metrics")).text
        assert "callstream_edge_in_flight_requests 0.0" in text


@run_async
async def test_edge_connects_once_kafka_comes_up(make_settings: Callable[..., Settings]) -> None:
    from core.broker import free_port

    port = free_port()
    settings = make_settings(kafka_bootstrap=f"127.0.0.1:{port}", ack_timeout_s=0.5)
    body = sample_paths()[0].read_bytes()
    async with running_edge(settings) as client:
        assert (await client.get("/health/ready")).status_code == 503
        late = EmbeddedBroker(port=port).start()
        try:
            deadline = time.monotonic() + 30
            while (await client.get("/health/ready")).status_code != 200:
                assert time.monotonic() < deadline, "edge did not connect after the broker came up"
                await asyncio.sleep(0.2)
            response = await client.post("/notify/privacy", content=body, headers=signed("privacy"))
            assert response.status_code == 200
            (record,) = await read_records(settings, settings.raw_topic, 1)
            assert decode(record.value)[1]["body"] == body
        finally:
            late.stop()

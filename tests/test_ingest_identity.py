"""Edge identity against the real broker: the signing app owns the push (403 otherwise, quarantined with
both keys), refused pushes are stored within a byte budget per source and in total, and a mis-set
secret still leaves the platform's re-pushed CDRs recoverable once it is fixed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from prometheus_client import CollectorRegistry

from consumers.load import ClickHouseSink
from consumers.metrics import ConsumerMetrics
from consumers.pipeline import Pipeline
from core import store
from core.settings import Settings
from ingest.app import create_app
from ingest.auth import sign_headers
from ingest.quarantine import RECORD_OVERHEAD_BYTES, QuarantineBudget, source_of
from schemas.avro_codec import decode
from schemas.migrate import apply_migrations
from tests.conftest import (
    TEST_APP_KEY,
    TEST_APP_SECRET,
    TEST_PRIVACY_APP_KEY,
    TEST_PRIVACY_APP_SECRET,
    sample_bytes,
)
from tests.test_ingest_app import read_records

pytestmark = pytest.mark.anyio
BASE = "http://edge.test"
PRIVACY_CDR = sample_bytes("privacy_axb_cdr_merged.json")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def edge(settings: Settings, *sources: str) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One edge app; one client per source address (the ASGI peer address each request carries)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        clients = [
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(host, 5555)), base_url=BASE, timeout=30)
            for host in sources or ("10.1.2.3",)
        ]
        try:
            yield clients
        finally:
            for client in clients:
                await client.aclose()


def privacy_headers(app_key: str = TEST_PRIVACY_APP_KEY, secret: str = TEST_PRIVACY_APP_SECRET) -> dict[str, str]:
    return {**sign_headers(app_key, secret), "Content-Type": "application/json;charset=UTF-8"}


def with_app_key(body: bytes, index: int, app_key: object) -> bytes:
    doc = json.loads(body)
    doc["feeLst"][index]["appKey"] = app_key
    return json.dumps(doc).encode()


async def test_body_naming_another_app_is_403_and_quarantined_with_both_keys(settings: Settings) -> None:
    one_foreign = with_app_key(PRIVACY_CDR, 1, TEST_APP_KEY)  # a merged push: one entry claims the voice app
    event = json.dumps({"eventType": "callin", "statusInfo": {"sessionId": "s-1", "appKey": TEST_APP_KEY}}).encode()
    numeric = with_app_key(PRIVACY_CDR, 0, 12345)
    async with edge(settings) as (client,):
        own = await client.post("/notify/privacy", content=PRIVACY_CDR, headers=privacy_headers())
        assert own.status_code == 200, own.text
        # the voice app's secret signs a body that says the privacy app: refused, not stored as the privacy app
        forged = await client.post("/notify/privacy", content=PRIVACY_CDR,
                                   headers=privacy_headers(TEST_APP_KEY, TEST_APP_SECRET))
        assert forged.status_code == 403 and forged.json()["error"] == "app_key_mismatch"
        assert forged.json()["quarantined"] is True
        for body in (one_foreign, event, numeric):
            answer = await client.post("/notify/privacy", content=body, headers=privacy_headers())
            assert answer.status_code == 403, body[:80]
    raw = await read_records(settings, settings.raw_topic, 2, timeout_s=3)
    assert [decode(r.value)[1]["body"] for r in raw] == [PRIVACY_CDR]
    dead = [decode(r.value)[1] for r in await read_records(settings, settings.dead_topic, 4)]
    assert len(dead) == 4 and {d["reason"] for d in dead} == {"app_key_mismatch"}
    by_body = {d["body"]: d for d in dead}
    letter = by_body[PRIVACY_CDR]
    assert letter["app_key"] == TEST_APP_KEY and letter["http_status"] == 403  # the signer …
    assert TEST_PRIVACY_APP_KEY in letter["detail"] and TEST_APP_KEY in letter["detail"]  # … and the claim
    assert by_body[one_foreign]["app_key"] == TEST_PRIVACY_APP_KEY and TEST_APP_KEY in by_body[one_foreign]["detail"]
    assert "12345" in by_body[numeric]["detail"]


async def test_auth_off_takes_the_body_key_as_it_is(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(auth="off", apps="")
    async with edge(settings) as (client,):
        assert (await client.post("/notify/privacy", content=PRIVACY_CDR)).status_code == 200
    (record,) = await read_records(settings, settings.raw_topic, 1)
    assert decode(record.value)[1]["app_key"] == ""  # nothing authenticated: the row's owner stays empty


def test_budget_per_source_and_total() -> None:
    now = [100.0]
    budget = QuarantineBudget(10.0, 5000, 1000.0, 9000, clock=lambda: now[0])
    cost = 1000 + RECORD_OVERHEAD_BYTES
    assert [budget.admit("198.51.100.7", 1000) for _ in range(3)] == ["stored", "stored", "source"]
    assert budget.admit("198.51.100.8", 1000) == "stored"  # another source has its own bucket
    assert budget.admit("198.51.100.9", 1000) == "stored"
    assert budget.admit("198.51.100.10", 1000) == "total"  # 4 x 2024 spent of 9000: the edge-wide bound
    now[0] += cost / 1000.0  # the total refills at 1000 B/s
    assert budget.admit("198.51.100.10", 1000) == "stored"
    assert budget.admit("198.51.100.7", 1000) == "source"  # 10 B/s: still empty
    now[0] += 3600
    assert budget.admit("198.51.100.7", 1000) == "stored"
    # one IPv6 host cannot rotate through its /64 to get fresh buckets
    assert source_of("2001:db8:1:2::1") == source_of("2001:db8:1:2:ffff::9") != source_of("2001:db8:1:3::1")
    assert source_of("::ffff:192.0.2.1") == "192.0.2.1"
    huge = QuarantineBudget(1.0, 100, 1.0, 100, clock=lambda: now[0])
    assert huge.admit("192.0.2.1", 10_000) == "stored"  # larger than the burst: passes once when full …
    assert huge.admit("192.0.2.1", 0) == "source"  # … and leaves a debt
    assert QuarantineBudget(1.0, 0, 1.0, 100).admit("192.0.2.1", 0) == "source"  # 0 stores nothing


async def test_refusals_beyond_the_budget_are_answered_and_counted_not_stored(
    make_settings: Callable[..., Settings],
) -> None:
    body = PRIVACY_CDR
    cost = len(body) + RECORD_OVERHEAD_BYTES
    settings = make_settings(quarantine_source_burst_bytes=3 * cost, quarantine_source_bytes_per_s=1,
                             quarantine_total_burst_bytes=5 * cost, quarantine_total_bytes_per_s=1)
    stranger = privacy_headers(TEST_PRIVACY_APP_KEY, "guessed")  # a known appKey, a wrong secret
    async with edge(settings, "203.0.113.5", "203.0.113.6", "198.51.100.1") as (flood, second, third):
        answers = [await flood.post("/notify/privacy", content=body, headers=stranger) for _ in range(20)]
        assert {a.status_code for a in answers} == {401}  # every refusal is still answered
        assert [a.json()["quarantined"] for a in answers] == [True] * 3 + [False] * 17
        assert all(a.json()["error"] == "bad_digest" for a in answers)
        unsigned = await flood.post("/notify/privacy", content=b"x" * 10_000)
        assert unsigned.status_code == 401 and unsigned.json()["quarantined"] is False
        # other sources keep their own share until the edge-wide bound is spent
        assert [(await second.post("/notify/privacy", content=body, headers=stranger)).json()["quarantined"]
                for _ in range(3)] == [True, True, False]
        assert (await third.post("/notify/privacy", content=body, headers=stranger)).json()["quarantined"] is False
        # the answer to a valid push does not depend on the budget
        assert (await flood.post("/notify/privacy", content=body, headers=privacy_headers())).status_code == 200
        metrics = (await flood.get("/metrics")).text
    assert 'callstream_edge_quarantine_skipped_events_total{bound="source",reason="bad_digest"} 17.0' in metrics
    assert 'callstream_edge_quarantine_skipped_events_total{bound="total",reason="bad_digest"} 2.0' in metrics
    assert 'callstream_edge_quarantine_skipped_events_total{bound="source",reason="missing_header"} 1.0' in metrics
    assert 'callstream_edge_discarded_events_total{reason="bad_digest"} 24.0' in metrics
    assert f'callstream_edge_quarantine_skipped_bytes_total{{bound="source"}} {17.0 * len(body) + 10_000}' in metrics
    dead = [decode(r.value)[1] for r in await read_records(settings, settings.dead_topic, 6, timeout_s=5)]
    assert len(dead) == 5 and all(d["body"] == body and d["reason"] == "bad_digest" for d in dead)


async def test_mis_set_secret_leaves_re_pushed_cdrs_recoverable(make_settings: Callable[..., Settings]) -> None:
    """The platform signs with the real secret; the edge was given a stale one. Every push is refused
    (a sample of the bodies is kept); after the fix, the platform's re-push of the same CDRs is accepted."""
    cost = len(PRIVACY_CDR) + RECORD_OVERHEAD_BYTES
    stale = make_settings(apps=f"{TEST_PRIVACY_APP_KEY}:stale-secret", quarantine_source_burst_bytes=2 * cost,
                          quarantine_source_bytes_per_s=1)
    platform = "100.64.0.10"
    cdrs = [with_app_key(PRIVACY_CDR, 0, TEST_PRIVACY_APP_KEY).replace(b"}]", f', "n": {i}}}]'.encode())
            for i in range(6)]
    async with edge(stale, platform) as (client,):
        refused = [await client.post("/notify/privacy", content=b, headers=privacy_headers()) for b in cdrs]
    assert {r.status_code for r in refused} == {401}
    assert [r.json()["quarantined"] for r in refused] == [True, True, False, False, False, False]
    fixed = make_settings(apps=f"{TEST_PRIVACY_APP_KEY}:{TEST_PRIVACY_APP_SECRET}")
    async with edge(fixed, platform) as (client,):  # the platform's re-push: same bodies, new nonce
        again = [await client.post("/notify/privacy", content=b, headers=privacy_headers()) for b in cdrs]
    assert {r.status_code for r in again} == {200}
    raw = [decode(r.value)[1] for r in await read_records(fixed, fixed.raw_topic, 6)]
    assert sorted(r["body"] for r in raw) == sorted(cdrs)
    assert {r["app_key"] for r in raw} == {TEST_PRIVACY_APP_KEY}
    dead = [decode(r.value)[1] for r in await read_records(stale, stale.dead_topic, 2)]
    assert [d["reason"] for d in dead] == ["bad_digest", "bad_digest"]
    assert sorted(d["body"] for d in dead) == sorted(cdrs[:2])  # the sample an operator inspects (any partition order)


async def test_every_stored_row_records_the_signing_app(settings: Settings) -> None:
    """Edge -> raw topic -> consumer pipeline -> ClickHouse: cdrs, call_events and number_status rows carry
    the authenticated appKey in ``auth_app_key`` (equal to the body's ``app_key`` the edge let through)."""
    pushes = [("privacy", "privacy_axb_cdr_merged.json"), ("privacy", "privacy_axb_event_callin.json"),
              ("privacy", "privacy_x_numstatus.json")]
    async with edge(settings) as (client,):
        for service, name in pushes:
            answer = await client.post(f"/notify/{service}", content=sample_bytes(name), headers=privacy_headers())
            assert answer.status_code == 200, answer.text
    records = await read_records(settings, settings.raw_topic, len(pushes))
    assert len(records) == len(pushes)
    apply_migrations(settings)
    sink = ClickHouseSink(store.connect(settings), settings.clickhouse_database)
    pipeline = Pipeline(settings, sink, None, ConsumerMetrics(CollectorRegistry()))
    await pipeline.deliver(pipeline.prepare(records))
    db = settings.clickhouse_database
    for table in ("cdrs", "call_events", "number_status"):
        rows = store.query_rows(sink.client, f"SELECT auth_app_key, app_key, count() FROM {db}.{table} "
                                "GROUP BY auth_app_key, app_key")
        assert rows == [(TEST_PRIVACY_APP_KEY, TEST_PRIVACY_APP_KEY, rows[0][2])] and rows[0][2] > 0, (table, rows)

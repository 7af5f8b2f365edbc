"""Two CDRs under one business key with different content: the first stored stays, the other is kept
in cdr_conflicts with the fields that differ and counted; an identical re-push is a plain duplicate."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from consumers.dedupe import content_digest
from consumers.load import ClickHouseSink
from consumers.metrics import ConsumerMetrics
from consumers.pipeline import Pipeline
from core import store
from core.settings import Settings
from schemas.avro_codec import encode
from schemas.migrate import apply_migrations, discover
from tests.conftest import TEST_APP_KEY, sample_bytes


def fee_push(fees: list[dict[str, Any]]) -> ConsumerRecord[bytes, bytes]:
    value = encode("raw_envelope", {
        "id": uuid.uuid4().hex, "received_at": 1_710_209_704_000_000, "service": "voice", "path": "/notify/voice",
        "event_type": "fee", "app_key": TEST_APP_KEY, "auth_scheme": "aksk", "content_type": "application/json",
        "remote_addr": "127.0.0.1", "body": orjson.dumps({"eventType": "fee", "feeLst": fees}),
    })
    return ConsumerRecord("raw", 0, 0, 0, 0, None, value, None, 0, len(value), [])


def deliver(settings: Settings, client: Any, record: ConsumerRecord[bytes, bytes]) -> ConsumerMetrics:
    metrics = ConsumerMetrics(CollectorRegistry())
    pipeline = Pipeline(settings, ClickHouseSink(client, settings.clickhouse_database), None, metrics)
    asyncio.run(pipeline.deliver(pipeline.prepare([record])))
    return metrics


def conflicts(metrics: ConsumerMetrics) -> float | None:
    return metrics.registry.get_sample_value("callstream_consumer_conflicting_records_total", {"table": "cdrs"})


def test_conflicting_cdrs_are_resolved_by_rule_counted_and_queryable(settings: Settings) -> None:
    client = store.connect(settings)
    apply_migrations(settings, client)
    db = settings.clickhouse_database
    first = orjson.loads(sample_bytes("voice_notify_cdr_single.json"))["feeLst"][0]
    later = {**first, "callEndTime": "2024-03-12 02:15:55", "ttsPlayTimes": 2}
    assert conflicts(deliver(settings, client, fee_push([first]))) is None
    assert conflicts(deliver(settings, client, fee_push([first]))) is None  # identical: a duplicate
    assert conflicts(deliver(settings, client, fee_push([later]))) == 1
    assert conflicts(deliver(settings, client, fee_push([later]))) is None  # the same conflict again
    assert store.query_rows(client, f"SELECT talk_seconds FROM {db}.cdrs") == [(28,)]  # the first stays
    got = store.query_rows(client, f"SELECT session_id, differing_fields FROM {db}.cdr_conflicts")
    assert got == [(first["sessionId"], ["callEndTime", "ttsPlayTimes"])]
    # inside one merged push too
    other = {**first, "icid": "icid-2"}
    metrics = deliver(settings, client, fee_push([other, {**other, "ulFailReason": 7001}, other]))
    assert conflicts(metrics) == 1
    assert store.query_rows(client, f"SELECT count() FROM {db}.cdrs") == [(2,)]
    assert store.query_rows(client, f"SELECT differing_fields FROM {db}.cdr_conflicts WHERE icid = 'icid-2'") == [
        (["ulFailReason"],)]


def test_stored_raw_digest_is_the_digest_the_loader_computes(settings: Settings) -> None:
    """cdrs.raw_digest (0016_raw_digest, computed by the engine at insert) equals consumers.dedupe.content_digest
    of the stored raw: the probe compares one with the other, so a mismatch would turn every identical
    re-push into a conflict."""
    client = store.connect(settings)
    apply_migrations(settings, client)
    db = settings.clickhouse_database
    first = orjson.loads(sample_bytes("voice_notify_cdr_single.json"))["feeLst"][0]
    deliver(settings, client, fee_push([first, {**first, "icid": "icid-3", "callerNum": "+8613800000999"}]))
    rows = store.query_rows(client, f"SELECT raw, toString(raw_digest) FROM {db}.cdrs")
    assert len(rows) == 2
    assert all(digest == content_digest(raw) for raw, digest in rows), rows


def test_a_store_without_raw_digest_still_tells_a_duplicate_from_a_conflict(settings: Settings) -> None:
    """A consumer against a store migrated only to a version before 0016_raw_digest (say, a rolling
    upgrade): the probe computes the same digest from `raw`, so an identical re-push stays a duplicate
    and other content is still a conflict."""
    client = store.connect(settings)
    digest_version = next(m.version for m in discover() if m.label.endswith("raw_digest"))
    apply_migrations(settings, client, upto=digest_version - 1)
    db = settings.clickhouse_database
    assert store.query_rows(client, f"SELECT count() FROM system.columns WHERE database = '{db}' "
                                    "AND table = 'cdrs' AND name = 'raw_digest'") == [(0,)]
    first = orjson.loads(sample_bytes("voice_notify_cdr_single.json"))["feeLst"][0]
    assert conflicts(deliver(settings, client, fee_push([first]))) is None
    assert conflicts(deliver(settings, client, fee_push([first]))) is None  # identical: a duplicate
    assert conflicts(deliver(settings, client, fee_push([{**first, "ttsPlayTimes": 3}]))) == 1
    assert store.query_rows(client, f"SELECT count() FROM {db}.cdrs") == [(1,)]

"""Store, then publish, then commit: a row the store refuses never reaches subscribers; poison rows (a
missing column, a wrong type) are quarantined with a reason and the stream goes on; a record redelivered
after its rows were stored but not published publishes them without storing them twice."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from consumers.downstream import DownstreamProducer
from consumers.load import ClickHouseSink
from consumers.metrics import ConsumerMetrics
from consumers.pipeline import Pipeline
from core import store
from core.errors import StoreRejected
from core.kafka import ensure_topics
from core.settings import Settings
from schemas.avro_codec import encode
from schemas.migrate import apply_migrations
from tests.conftest import TEST_APP_KEY, sample_bytes
from tests.helpers import read_records

pytestmark = pytest.mark.timeout(120)


def merged_push(nid: str) -> ConsumerRecord[bytes, bytes]:
    body = sample_bytes("voice_notify_cdr_merged.json")
    value = encode("raw_envelope", {
        "id": nid, "received_at": 1_710_209_704_000_000, "service": "voice", "path": "/notify/voice",
        "event_type": "fee", "app_key": TEST_APP_KEY, "auth_scheme": "aksk", "content_type": "application/json",
        "remote_addr": "127.0.0.1", "body": body,
    })
    return ConsumerRecord("raw", 0, 0, 0, 0, None, value, None, 0, len(value), [])


def rows(client: Any, sql: str) -> list[tuple[Any, ...]]:
    return store.query_rows(client, sql)


async def deliver(settings: Settings, client: Any, record: ConsumerRecord[bytes, bytes], *, publish: bool,
                  spoil: Any = None) -> Pipeline:
    producer = DownstreamProducer(settings) if publish else None
    pipeline = Pipeline(settings, ClickHouseSink(client, settings.clickhouse_database), producer,
                        ConsumerMetrics(CollectorRegistry()))
    if producer is not None:
        await ensure_topics(settings)
        await producer.start()
    try:
        batch = pipeline.prepare([record])
        if spoil is not None:
            spoil(batch.tables["cdrs"])
        await pipeline.deliver(batch)
    finally:
        if producer is not None:
            await producer.stop()
    return pipeline


def test_refused_rows_are_quarantined_and_never_published(settings: Settings) -> None:
    client = store.connect(settings)
    apply_migrations(settings, client)
    db = settings.clickhouse_database

    def spoil(cdrs: list[dict[str, Any]]) -> None:
        cdrs[1]["talk_seconds"] = "forty"  # a wrong type: ClickHouse cannot take it
        del cdrs[2]["raw"]  # a missing column

    asyncio.run(deliver(settings, client, merged_push(uuid.uuid4().hex), publish=True, spoil=spoil))
    stored = rows(client, f"SELECT record_index FROM {db}.cdrs ORDER BY record_index")
    assert stored == [(0,), (3,)]
    published = asyncio.run(read_records(settings, settings.cdrs_topic, 3, timeout_s=8))
    assert len(published) == 2  # only what the store holds
    failed = rows(client, f"SELECT record_index, stage, reason, detail FROM {db}.failed_events ORDER BY record_index")
    assert [(i, stage, reason) for i, stage, reason, _ in failed] == [(1, "load", "store_rejected"), (2, "load", "store_rejected")]
    assert "raw" in failed[1][3]


def test_missing_column_is_rejected_not_a_key_error(settings: Settings) -> None:
    client = store.connect(settings)
    apply_migrations(settings, client)
    sink = ClickHouseSink(client, settings.clickhouse_database)
    pipeline = Pipeline(settings, sink, None, ConsumerMetrics(CollectorRegistry()))
    cdrs = pipeline.prepare([merged_push("n-1")]).tables["cdrs"]
    del cdrs[0]["app_key"]  # the first row decides nothing: every row needs every stored column
    with pytest.raises(StoreRejected, match="app_key"):
        sink.insert("cdrs", cdrs)
    loaded, bad = sink.insert_isolating("cdrs", cdrs)
    assert loaded == 3 and [r["record_index"] for r, _ in bad] == [0]


def test_stored_but_unpublished_rows_are_published_on_redelivery(settings: Settings) -> None:
    client = store.connect(settings)
    apply_migrations(settings, client)
    db = settings.clickhouse_database
    record = merged_push(uuid.uuid4().hex)
    asyncio.run(deliver(settings, client, record, publish=False))  # stored, then the process dies
    asyncio.run(deliver(settings, client, record, publish=True))  # the same record, redelivered
    assert rows(client, f"SELECT count() FROM {db}.cdrs") == [(4,)]
    assert len(asyncio.run(read_records(settings, settings.cdrs_topic, 4, timeout_s=10))) == 4
    # a different push carrying the same CDRs is a duplicate: neither stored nor published again
    asyncio.run(deliver(settings, client, merged_push(uuid.uuid4().hex), publish=True))
    assert rows(client, f"SELECT count() FROM {db}.cdrs") == [(4,)]
    assert len(asyncio.run(read_records(settings, settings.cdrs_topic, 5, timeout_s=5))) == 4

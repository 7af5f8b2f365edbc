"""``callstream simulate --verify`` at a count whose id list no single ClickHouse query can hold: the plan's
pushes go through the real consumer pipeline into the real engine, and the verifier agrees with the plan."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from callstream.sim_calls import Push, build_pushes, generate_calls
from callstream.simulate import verify_once
from consumers.load import ClickHouseSink
from consumers.metrics import ConsumerMetrics
from consumers.pipeline import Pipeline
from core import store
from core.settings import Settings
from ingest.notification import classify
from schemas.avro_codec import encode
from schemas.migrate import apply_migrations

MAX_QUERY_SIZE = 256 * 1024  # ClickHouse's default max_query_size


def _records(settings: Settings, plan_pushes: list[Push]) -> list[ConsumerRecord]:
    out: list[ConsumerRecord] = []
    for push in plan_pushes:
        if not push.expect_ok:
            continue
        value = encode("raw_envelope", {
            "id": uuid.uuid4().hex, "received_at": 1_710_200_000_000_000 + len(out), "service": push.service,
            "path": push.path, "event_type": classify(push.service, push.body).event_type, "app_key": push.app_key,
            "auth_scheme": "aksk", "content_type": "application/json", "remote_addr": "10.0.0.1", "body": push.body,
        })
        out.append(ConsumerRecord(settings.raw_topic, len(out) % 3, len(out), 0, 0, b"k", value, None, 1,
                                  len(value), []))
    return out


def test_verify_at_4000_calls(settings: Settings) -> None:
    calls = generate_calls(5, 4000)
    plan = build_pushes(calls, 5)
    sessions_sql = ",".join(f"'{c.session_id}'" for c in calls)
    assert len(sessions_sql) > MAX_QUERY_SIZE  # one statement with every id in its text cannot run
    apply_migrations(settings)
    sink = ClickHouseSink(store.connect(settings), settings.clickhouse_database)
    pipeline = Pipeline(settings, sink, None, ConsumerMetrics(CollectorRegistry()))
    records = _records(settings, plan.pushes)
    for start in range(0, len(records), 5000):
        asyncio.run(pipeline.deliver(pipeline.prepare(records[start:start + 5000])))
    result = verify_once(settings, plan)
    assert result.ok, result.lines
    expected = plan.expected()
    assert f"cdrs: expected {expected['cdrs']}, stored {expected['cdrs']}" in result.lines[0]
    # and it notices what is missing
    db = settings.clickhouse_database
    session = store.query_rows(sink.client, f"SELECT session_id FROM {db}.call_events LIMIT 1")[0][0]
    with store.locked(sink.client):  # a mutation: call_events has a projection (schemas/projections.py)
        sink.client.command(f"ALTER TABLE {db}.call_events DELETE WHERE session_id = {{s:String}} "
                            "SETTINGS mutations_sync = 2", parameters={"s": session})
    missing = verify_once(settings, plan)
    assert not missing.ok and "call_events" in next(line for line in missing.lines if "MISMATCH" in line)

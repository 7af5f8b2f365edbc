"""End to end on the real broker and real chDB: raw envelopes in, rows and downstream records out."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import CollectorRegistry

from consumers.load import ClickHouseSink
from consumers.metrics import ConsumerMetrics
from consumers.pipeline import Pipeline
from consumers.runner import run_consumer
from core import store
from core.errors import StoreUnavailable
from core.kafka import consumer_kwargs, ensure_topics, producer_kwargs
from core.settings import Settings
from schemas.avro_codec import decode, encode
from schemas.migrate import apply_migrations
from tests.helpers import await_until, read_records, run_async
from tests.conftest import TEST_APP_KEY, TEST_PRIVACY_APP_KEY, sample_bytes, sample_paths

pytestmark = pytest.mark.timeout(120)


def envelope(body: bytes, service: str = "voice", *, nid: str | None = None) -> bytes:
    try:
        event_type = orjson.loads(body).get("eventType", "")
    except (orjson.JSONDecodeError, AttributeError):
        event_type = ""
    return encode("raw_envelope", {
        "id": nid or uuid.uuid4().hex, "received_at": int(time.time() * 1_000_000), "service": service,
        "path": f"/notify/{service}", "event_type": str(event_type),
        "app_key": TEST_PRIVACY_APP_KEY if service == "privacy" else TEST_APP_KEY,
        "auth_scheme": "aksk", "content_type": "application/json", "remote_addr": "127.0.0.1", "body": body,
    })


def all_samples() -> list[bytes]:
    return [envelope(p.read_bytes(), "privacy" if p.name.startswith("privacy") else "voice") for p in sample_paths()]


async def produce(settings: Settings, values: list[bytes]) -> None:
    await ensure_topics(settings)
    producer = AIOKafkaProducer(**producer_kwargs(settings))
    await producer.start()
    try:
        for i, value in enumerate(values):
            await producer.send_and_wait(settings.raw_topic, value, key=str(i % 7).encode())
    finally:
        await producer.stop()


def count(settings: Settings, sql: str) -> int:
    client = store.connect(settings)
    return int(store.query_rows(client, sql.format(db=settings.clickhouse_database))[0][0])


async def with_consumer(settings: Settings, body: Callable[[CollectorRegistry], Awaitable[None]],
                        **kwargs: Any) -> None:
    stop, ready, registry = asyncio.Event(), asyncio.Event(), CollectorRegistry()
    task = asyncio.create_task(run_consumer(settings, stop, registry=registry, ready=ready, **kwargs))
    try:
        done, _ = await asyncio.wait({task, asyncio.ensure_future(ready.wait())}, timeout=30,
                                     return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
        await body(registry)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


CDR_COUNT = "SELECT count() FROM {db}.cdrs"


@run_async
async def test_every_sample_lands_with_descriptions_and_downstream(settings: Settings) -> None:
    await produce(settings, all_samples())

    async def body(registry: CollectorRegistry) -> None:
        await await_until(lambda: count(settings, CDR_COUNT) == 8
                       and count(settings, "SELECT count() FROM {db}.call_events") == 17
                       and count(settings, "SELECT count() FROM {db}.number_status") == 2)
        assert registry.get_sample_value("callstream_consumer_received_events_total") == len(sample_paths())
        assert registry.get_sample_value("callstream_consumer_loaded_events_total", {"table": "cdrs"}) == 8
        assert registry.get_sample_value("callstream_consumer_discarded_events_total", {"reason": "duplicate"}) == 2
        # every code the samples use is in the tables
        assert registry.get_sample_value("callstream_consumer_unknown_codes_total", {"field": "ulFailReason"}) is None

    await with_consumer(settings, body)
    client = store.connect(settings)
    db = settings.clickhouse_database
    busy = store.query_rows(client, f"SELECT ul_fail_reason_desc, failure_reason, failure_category, answered "
                                    f"FROM {db}.cdrs WHERE ul_fail_reason = 518")
    assert busy == [("Remote user call failed - check the Q.850 cause: User busy", "User busy", "user_busy", 0)]
    callback = store.query_rows(client, f"SELECT service_type, talk_seconds, has_recording, "
                                        f"toUnixTimestamp(fwd_answer_time) FROM {db}.cdrs WHERE service_type_code='002'")
    assert callback == [("callback", 65, 1, 1710234936)]
    rejected = store.query_rows(client, f"SELECT state_code_desc, failure_category FROM {db}.call_events "
                                        f"WHERE state_code = 7504")
    assert rejected[0][1] == "user_rejected" and rejected[0][0].startswith("Call refused")
    assert store.query_rows(client, f"SELECT count() FROM {db}.failed_events")[0][0] == 0

    records = await read_records(settings, settings.cdrs_topic, 8)
    assert len(records) == 8
    name, cdr = decode(records[0].value)
    headers = dict(records[0].headers)
    assert name == "cdr" and headers["content-type"] == b"application/avro" and headers["ce_specversion"] == b"1.0"
    assert headers["ce_subject"] == records[0].key == cdr["session_id"].encode()
    assert headers["ce_type"] in (b"com.huaweicloud.voice.cdr", b"com.huaweicloud.privacy.cdr")
    assert headers["ce_id"].decode() == f"{cdr['notification_id']}:{cdr['record_index']}"
    statuses = await read_records(settings, settings.number_status_topic, 2)
    assert sorted(r.key for r in statuses) == [b"+8617000000001", b"+8617000000002"]


@run_async
async def test_same_cdr_seven_times_is_one_row(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    fee = orjson.loads(sample_bytes("voice_notify_cdr_single.json"))["feeLst"][0]
    merged = orjson.dumps({"eventType": "fee", "feeLst": [fee, fee, fee]})
    single = orjson.dumps({"eventType": "fee", "feeLst": [fee]})
    await produce(settings, [envelope(merged)] + [envelope(single) for _ in range(2)])

    async def first(registry: CollectorRegistry) -> None:
        await await_until(lambda: registry.get_sample_value("callstream_consumer_received_events_total") == 3)
        await await_until(lambda: count(settings, CDR_COUNT) == 1)

    await with_consumer(settings, first)
    await produce(settings, [envelope(single) for _ in range(2)])  # re-pushes hours later
    # a restarted loader in a new group re-reads all 5 pushes (7 copies) with an empty cache:
    # only the store lookup can recognise them
    again = make_settings(consumer_group=f"{settings.consumer_group}.again")

    async def second(registry: CollectorRegistry) -> None:
        # 7 copies: each is a duplicate, except a copy of the merged push met first in its batch: the
        # store holds it under that very notification, so it is re-published (stored, maybe never sent)
        await await_until(lambda: registry.get_sample_value("callstream_consumer_received_events_total") == 5)
        await await_until(lambda: (registry.get_sample_value("callstream_consumer_discarded_events_total",
                                                          {"reason": "duplicate"}) or 0) in (6, 7))

    await with_consumer(again, second)
    assert count(settings, CDR_COUNT) == 1


@run_async
async def test_crash_between_insert_and_commit_neither_duplicates_nor_loses(settings: Settings) -> None:
    await produce(settings, all_samples())
    apply_migrations(settings)
    client = store.connect(settings)
    consumer = AIOKafkaConsumer(settings.raw_topic, **consumer_kwargs(settings))
    await consumer.start()
    try:
        records: list[Any] = []
        deadline = time.monotonic() + 20
        while len(records) < len(sample_paths()) and time.monotonic() < deadline:
            polled = await consumer.getmany(timeout_ms=200)
            records.extend(r for recs in polled.values() for r in recs)
        pipeline = Pipeline(settings, ClickHouseSink(client, settings.clickhouse_database), None,
                            ConsumerMetrics(CollectorRegistry()))
        await pipeline.deliver(pipeline.prepare(records))  # loaded ... and the process "dies": no commit
    finally:
        await consumer.stop()
    assert count(settings, CDR_COUNT) == 8
    late = orjson.loads(sample_bytes("voice_callback_cdr_single.json"))
    late["feeLst"][0]["icid"] = "late-icid"
    await produce(settings, [envelope(orjson.dumps(late))])

    async def body(registry: CollectorRegistry) -> None:
        await await_until(lambda: registry.get_sample_value("callstream_consumer_received_events_total")
                       == len(sample_paths()) + 1)
        await await_until(lambda: count(settings, CDR_COUNT) == 9)

    await with_consumer(settings, body)
    assert count(settings, "SELECT count() FROM {db}.call_events") == 17
    assert count(settings, "SELECT uniqExact(dedup_key) FROM {db}.cdrs") == 9


class FlakySink(ClickHouseSink):
    """The real sink, failing its first ``failures`` inserts as an unavailable store would."""

    def __init__(self, settings: Settings, failures: int) -> None:
        super().__init__(store.connect(settings), settings.clickhouse_database)
        self.failures = failures

    def insert(self, table: str, rows: list[dict[str, Any]], token: str | None = None) -> int:
        if self.failures > 0:
            self.failures -= 1
            raise StoreUnavailable("injected: ClickHouse is down")
        return super().insert(table, rows, token)


@pytest.mark.parametrize("ahead", [1, 2])
@run_async
async def test_store_unavailable_pauses_then_loads_everything(make_settings: Callable[..., Settings],
                                                              ahead: int) -> None:
    # with batches prepared ahead of the failing delivery too: each is delivered once, in order
    settings = make_settings(load_retry_max_backoff_s=0.2, batch_max_events=5, prepare_ahead=ahead)
    await produce(settings, all_samples())
    apply_migrations(settings)
    sink = FlakySink(settings, failures=4)

    async def body(registry: CollectorRegistry) -> None:
        await await_until(lambda: count(settings, CDR_COUNT) == 8
                       and count(settings, "SELECT count() FROM {db}.call_events") == 17)
        assert registry.get_sample_value("callstream_consumer_errors_total", {"stage": "load"}) == 4

    await with_consumer(settings, body, sink=sink)
    assert sink.failures == 0
    assert count(settings, "SELECT count() FROM {db}.number_status") == 2


@run_async
async def test_poison_is_quarantined_and_the_stream_goes_on(settings: Settings) -> None:
    fee = orjson.loads(sample_bytes("voice_notify_cdr_single.json"))["feeLst"][0]
    mixed = orjson.dumps({"eventType": "fee", "feeLst": [fee, "not an object", {"appKey": "x"}]})
    values = [b"\x00garbage", envelope(b"{not json"), envelope(orjson.dumps({"eventType": "sms"})),
              envelope(mixed), envelope(sample_bytes("privacy_x_numstatus.json"), "privacy")]
    await produce(settings, values)

    async def body(registry: CollectorRegistry) -> None:
        await await_until(lambda: count(settings, "SELECT count() FROM {db}.failed_events") == 5
                       and count(settings, "SELECT count() FROM {db}.number_status") == 2)

    await with_consumer(settings, body)
    assert count(settings, CDR_COUNT) == 1
    client = store.connect(settings)
    rows = store.query_rows(client, f"SELECT stage, reason, record_index FROM {settings.clickhouse_database}"
                                    ".failed_events ORDER BY stage, reason, record_index")
    assert rows == [("decode", "bad_envelope", -1), ("normalise", "malformed", -1),
                    ("normalise", "missing_session_id", 2), ("normalise", "not_an_object", 1),
                    ("normalise", "unknown_event_type", -1)]
    dead = await read_records(settings, settings.dead_topic, 5)
    assert len(dead) == 5
    name, letter = decode(dead[0].value)
    assert name == "dead_letter" and letter["source_topic"] == settings.raw_topic and letter["source_offset"] >= 0


class GatedSink(ClickHouseSink):
    """The real sink, holding its second insert into ``cdrs`` until ``release`` is set."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(store.connect(settings), settings.clickhouse_database)
        self.cdr_inserts = 0
        self.release = threading.Event()

    def insert(self, table: str, rows: list[dict[str, Any]], token: str | None = None) -> int:
        if table == "cdrs":
            self.cdr_inserts += 1
            if self.cdr_inserts == 2:
                assert self.release.wait(60), "the test never released the held insert"
        return super().insert(table, rows, token)


def distinct_cdr_pushes(count: int) -> list[bytes]:
    body = orjson.loads(sample_bytes("voice_notify_cdr_single.json"))
    pushes = []
    for i in range(count):
        fee = {**body["feeLst"][0], "sessionId": f"ahead-{uuid.uuid4().hex}-{i}"}
        pushes.append(envelope(orjson.dumps({**body, "feeLst": [fee]})))
    return pushes


@pytest.mark.parametrize("ahead", [1, 2])
@run_async
async def test_batches_polled_ahead_of_a_delivery_are_bounded(make_settings: Callable[..., Settings],
                                                              ahead: int) -> None:
    # one push per batch; while the second batch's insert is held, the loop hands exactly `ahead` more
    # batches to the prepare step (the worker) and polls nothing else; released, every CDR lands once
    settings = make_settings(batch_max_events=1, prepare_ahead=ahead)
    pushes = distinct_cdr_pushes(8)
    await produce(settings, pushes)
    apply_migrations(settings)
    sink = GatedSink(settings)

    def received(registry: CollectorRegistry) -> float:
        return registry.get_sample_value("callstream_consumer_received_events_total") or 0

    async def body(registry: CollectorRegistry) -> None:
        await await_until(lambda: received(registry) == 2 + ahead)  # delivered, held, `ahead` prepared
        await asyncio.sleep(0.5)
        assert received(registry) == 2 + ahead and count(settings, CDR_COUNT) == 1
        sink.release.set()
        await await_until(lambda: count(settings, CDR_COUNT) == 8)
        assert received(registry) == 8
        # one record a batch, as CALLSTREAM_BATCH_MAX_EVENTS=1 bounds it
        assert registry.get_sample_value("callstream_consumer_batch_size_events_count") == 8
        assert registry.get_sample_value("callstream_consumer_batch_size_events_sum") == 8

    try:
        await with_consumer(settings, body, sink=sink)
    finally:
        sink.release.set()
    assert count(settings, "SELECT uniqExact(dedup_key) FROM {db}.cdrs") == 8


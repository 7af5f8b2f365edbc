"""callstream replay: dead letters, failed_events rows and raw ranges back into the raw topic."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from callstream.cli import build_parser
from callstream.replay import main, replay
from consumers import runner
from core.kafka import consumer_kwargs, ensure_topics, producer_kwargs
from core.settings import Settings
from core.store import connect, query_rows
from schemas.avro_codec import encode
from schemas.serde import decode
from tests.helpers import read_records
from tests.conftest import TEST_APP_KEY, TEST_PRIVACY_APP_KEY, sample_bytes

CDR = sample_bytes("voice_notify_cdr_single.json")
RECEIVED = datetime(2024, 3, 12, 2, 15, 41, 123456, tzinfo=UTC)


def dead_letter(nid: str, *, reason: str = "unauthenticated", body: bytes = CDR, app_key: str = TEST_APP_KEY,
                received_at: datetime = RECEIVED, service: str = "voice") -> bytes:
    return encode("dead_letter", {
        "id": nid, "received_at": received_at, "stage": "edge", "reason": reason, "detail": "first attempt refused",
        "service": service, "path": f"/notify/{service}", "app_key": app_key, "http_status": 401,
        "headers": {"content-type": "application/json"}, "body": body,
    })


def args(*argv: str) -> Any:
    return build_parser().parse_args(["replay", *argv])


async def produce(settings: Settings, topic: str, values: list[bytes], key: bytes | None = None) -> None:
    await ensure_topics(settings)
    producer = AIOKafkaProducer(**producer_kwargs(settings))
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=key, headers=[("ce_id", b"x")])
    finally:
        await producer.stop()


def run(argv: list[str], settings: Settings) -> str:
    out = io.StringIO()
    asyncio.run(replay(args(*argv), settings, out))
    return out.getvalue()


def test_dead_letter_replays_with_original_id_time_and_body(settings: Settings) -> None:
    refused = "a" * 32
    other_app = "b" * 32
    still_bad = "c" * 32
    asyncio.run(produce(settings, settings.dead_topic, [
        dead_letter(refused),
        dead_letter(other_app, app_key=TEST_PRIVACY_APP_KEY),
        dead_letter(still_bad, reason="not_json", body=b"{nope"),
    ]))

    listing = run(["dead", "--dry-run"], settings)
    assert "would replay 2 from dead" in listing and "skipped 1: still_refused:not_json" in listing
    assert asyncio.run(read_records(settings, settings.raw_topic, 0, timeout_s=1, settle_s=0.5)) == []

    report = run(["dead", "--app", TEST_APP_KEY, "--reason", "unauthenticated",
                  "--since", "2024-03-12T02:00:00Z", "--until", "2024-03-12T03:00:00"], settings)
    assert f"replaying {refused}" in report and "replayed 1 from dead" in report and "unauthenticated=1" in report

    (record,) = asyncio.run(read_records(settings, settings.raw_topic, 1, settle_s=0.5))
    name, envelope = decode(record.value)
    assert name == "raw_envelope"
    assert (envelope["id"], envelope["received_at"], envelope["body"]) == (refused, RECEIVED, CDR)
    assert (envelope["service"], envelope["event_type"], envelope["app_key"]) == ("voice", "fee", TEST_APP_KEY)
    headers = dict(record.headers)
    assert headers["ce_id"] == refused.encode()
    assert headers["ce_type"] == b"com.huaweicloud.voice.fee"
    assert headers["ce_source"] == f"huawei/voice/{TEST_APP_KEY}".encode()
    replayed_at = datetime.fromisoformat(headers["replayed_at"].decode().replace("Z", "+00:00"))
    assert abs(datetime.now(UTC) - replayed_at) < timedelta(minutes=1)
    assert record.key == headers["ce_subject"] and record.key.startswith(b"1201_601_")

    assert "nothing matched" in run(["dead", "--id", "f" * 32], settings)


def test_raw_range_replay_keeps_ids_and_stops_at_the_range(settings: Settings) -> None:
    envelopes = [
        encode("raw_envelope", {"id": f"{i:032x}", "received_at": RECEIVED + timedelta(seconds=i),
                                "service": "voice", "path": "/notify/voice", "event_type": "fee",
                                "app_key": TEST_APP_KEY, "body": CDR})
        for i in range(5)
    ]
    asyncio.run(ensure_topics(settings))
    asyncio.run(produce(settings, settings.raw_topic, envelopes, key=b"session-1"))
    before = asyncio.run(read_records(settings, settings.raw_topic, 5, settle_s=0.5))
    partition = before[0].partition
    assert {m.partition for m in before} == {partition}

    report = run(["raw", "--partition", str(partition), "--from-offset", "1", "--to-offset", "3"], settings)
    assert "replayed 3 from raw" in report

    after = asyncio.run(read_records(settings, settings.raw_topic, 8, settle_s=0.5))
    replayed = [m for m in after if dict(m.headers).get("replayed_at")]
    assert [decode(m.value)[1]["id"] for m in replayed] == [f"{i:032x}" for i in (1, 2, 3)]
    assert all(m.value == envelopes[int(decode(m.value)[1]["id"], 16)] for m in replayed)
    assert all(m.key == b"session-1" and dict(m.headers)["ce_id"] == b"x" for m in replayed)

    by_time = run(["raw", "--dry-run", "--since", (RECEIVED + timedelta(seconds=3)).isoformat()], settings)
    # offsets_for_times uses the Kafka timestamp (now); the received_at filter narrows it to 2 + 1 replayed
    assert "would replay 3 from raw" in by_time


def test_replay_failed_rows_from_clickhouse(settings: Settings) -> None:
    from schemas.migrate import apply_migrations

    apply_migrations(settings)
    client = connect(settings)
    nid = "d" * 32
    rows = [[i + 1, nid, i, RECEIVED, "normalise", "bad_time", "", "voice", "/notify/voice", TEST_APP_KEY, "fee",
             settings.raw_topic, 0, 7, CDR.decode()] for i in range(2)]
    columns = ["dedup_key", "notification_id", "record_index", "received_at", "stage", "reason", "detail",
               "service", "path", "app_key", "event_type", "source_topic", "source_partition", "source_offset",
               "body"]
    client.insert(f"{settings.clickhouse_database}.failed_events", rows, column_names=columns)
    assert query_rows(client, f"SELECT count() FROM {settings.clickhouse_database}.failed_events")[0][0] == 2

    assert "replayed 1 from failed" in run(["failed", "--reason", "bad_time"], settings)
    (record,) = asyncio.run(read_records(settings, settings.raw_topic, 1, settle_s=0.5))
    envelope = decode(record.value)[1]
    assert (envelope["id"], envelope["received_at"], envelope["body"]) == (nid, RECEIVED, CDR)
    assert dict(record.headers)["replay_source"] == b"failed"


def test_main_exits_zero(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(produce(settings, settings.dead_topic, [dead_letter("e" * 32)]))
    assert main(args("dead", "--dry-run"), settings) == 0
    assert "would replay 1 from dead" in capsys.readouterr().out


def test_replayed_twice_lands_in_clickhouse_once(make_settings: Callable[..., Settings]) -> None:
    """The consumer dedups by business keys: two replays of one refused CDR give one cdrs row."""
    settings = make_settings()
    nid = "f" * 32
    asyncio.run(produce(settings, settings.dead_topic, [dead_letter(nid)]))
    assert "replayed 1" in run(["dead"], settings)
    assert "replayed 1" in run(["dead", "--id", nid], settings)

    stop = threading.Event()
    worker = threading.Thread(target=lambda: asyncio.run(_consume(runner, settings, stop)), daemon=True)
    worker.start()
    client = connect(settings)
    db = settings.clickhouse_database
    try:
        deadline = time.monotonic() + 60
        count = 0
        while time.monotonic() < deadline:
            try:
                count = query_rows(client, f"SELECT count() FROM {db}.cdrs WHERE notification_id = '{nid}'")[0][0]
            except Exception:  # table not created yet by the consumer's migration
                count = 0
            if count:
                break
            time.sleep(0.1)
        assert count >= 1, "the replayed CDR never reached ClickHouse"
        # both raw records consumed (the committed offsets cover both) before judging duplicates
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _lag(settings) > 0:
            time.sleep(0.1)
        assert _lag(settings) == 0
        final = query_rows(client, f"SELECT count() FROM {db}.cdrs FINAL WHERE notification_id = '{nid}'")[0][0]
        raw_rows = query_rows(client, f"SELECT count() FROM {db}.cdrs WHERE notification_id = '{nid}'")[0][0]
        assert final == 1 and raw_rows == 1
    finally:
        stop.set()
        worker.join(timeout=30)


async def _consume(runner: Any, settings: Settings, stop: threading.Event) -> None:
    flag = asyncio.Event()

    async def watch() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.05)
        flag.set()

    watcher = asyncio.create_task(watch())
    try:
        await runner.run_consumer(settings, flag)
    finally:
        watcher.cancel()


def _lag(settings: Settings) -> int:
    """Records of the raw topic not yet committed by the loader group."""

    async def measure() -> int:
        consumer = AIOKafkaConsumer(**consumer_kwargs(settings))
        await consumer.start()
        try:
            parts = consumer.partitions_for_topic(settings.raw_topic) or set()
            tps = [TopicPartition(settings.raw_topic, p) for p in parts]
            ends = await consumer.end_offsets(tps)
            lag = 0
            for tp in tps:
                committed = await consumer.committed(tp)
                lag += ends[tp] - (committed or 0)
            return lag
        finally:
            await consumer.stop()

    return asyncio.run(measure())


def test_flags_that_do_not_apply_are_refused(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    from callstream.cli import main as cli

    env = {"CALLSTREAM_KAFKA_BOOTSTRAP": settings.kafka_bootstrap}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        assert cli(["replay", "raw", "--reason", "bad_time"]) == 2
        assert "raw records have no reason" in capsys.readouterr().err
        assert cli(["replay", "dead", "--partition", "0"]) == 2
        assert "use `replay raw`" in capsys.readouterr().err
        assert cli(["replay", "raw", "--from-offset", "3"]) == 2
        assert "need --partition" in capsys.readouterr().err
        assert cli(["replay", "dead", "--since", "yesterday"]) == 2
        assert "ISO 8601" in capsys.readouterr().err

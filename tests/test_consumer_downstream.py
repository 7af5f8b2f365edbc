"""consumers.downstream: the settings -> librdkafka mapping, and delivery against the real broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import murmur2

from consumers.downstream import DownstreamProducer
from core.broker import free_port
from core.errors import BrokerUnavailable
from core.kafka import consumer_kwargs, ensure_topics
from core.settings import Settings

pytestmark = pytest.mark.timeout(120)


def test_records_are_acknowledged_and_partitioned_like_the_java_client(settings: Settings) -> None:
    keys = [f"session-{i}@callenabler.example".encode() for i in range(60)]

    async def scenario() -> dict[bytes, tuple[int, bytes, list[tuple[str, bytes]]]]:
        await ensure_topics(settings)
        producer = DownstreamProducer(settings)
        await producer.start()
        for i, key in enumerate(keys):
            producer.send(settings.cdrs_topic, f"value-{i}".encode(), key, [("ce_id", str(i).encode())])
        await producer.flush()
        await producer.stop()
        consumer = AIOKafkaConsumer(**consumer_kwargs(settings, group_id=None))
        await consumer.start()
        got: dict[bytes, tuple[int, bytes, list[tuple[str, bytes]]]] = {}
        try:
            consumer.assign([TopicPartition(settings.cdrs_topic, p) for p in range(settings.topic_partitions)])
            await consumer.seek_to_beginning()
            deadline = time.monotonic() + 20
            while len(got) < len(keys) and time.monotonic() < deadline:
                for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                    for r in records:
                        got[r.key] = (tp.partition, r.value, list(r.headers))
        finally:
            await consumer.stop()
        return got

    got = asyncio.run(scenario())
    assert len(got) == len(keys)
    for i, key in enumerate(keys):
        partition, value, headers = got[key]
        assert partition == (murmur2(key) & 0x7FFFFFFF) % settings.topic_partitions
        assert value == f"value-{i}".encode() and headers == [("ce_id", str(i).encode())]


def test_unacknowledged_records_raise_broker_unavailable(make_settings: Callable[..., Settings]) -> None:
    """Nothing listens on the port: the records time out and flush says so (retriable)."""
    settings = make_settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", ack_timeout_s=0.5)

    async def scenario() -> None:
        producer = DownstreamProducer(settings)
        with pytest.raises(BrokerUnavailable, match="did not answer"):
            await producer.start()
        producer.send(settings.cdrs_topic, b"v", b"k", [])
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable, match="not delivered|did not acknowledge") as caught:
            await producer.flush()
        assert caught.value.retriable and time.monotonic() - started < 30
        await producer.stop()

    asyncio.run(scenario())

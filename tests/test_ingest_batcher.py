"""The edge's batched writes against the real broker: every concurrent record lands once, on its key's
murmur2 partition, with its headers; one timer settles late waiters in order."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from aiokafka import AIOKafkaConsumer, TopicPartition

from core.kafka import consumer_kwargs
from core.settings import Settings
from ingest.deadlines import Deadlines
from ingest.partitioner import murmur2
from ingest.publisher import Publisher
from tests.helpers import run_async



@run_async
async def test_concurrent_publishes_land_once_on_their_key_partition(settings: Settings) -> None:
    publisher = Publisher(settings)
    await publisher.start()
    try:
        keys = [f"session-{n % 37}" for n in range(600)]
        await asyncio.gather(*(
            publisher.publish(settings.raw_topic, f"value-{n}".encode(), key.encode(), [("ce_id", str(n).encode())])
            for n, key in enumerate(keys)
        ))
    finally:
        await publisher.stop()

    consumer = AIOKafkaConsumer(**consumer_kwargs(settings, group_id=None))
    await consumer.start()
    try:
        partitions = [TopicPartition(settings.raw_topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen: Counter[bytes] = Counter()
        deadline = time.monotonic() + 15
        while sum(seen.values()) < len(keys) and time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                for record in records:
                    assert record.key is not None
                    assert tp.partition == (murmur2(record.key) & 0x7FFFFFFF) % settings.topic_partitions
                    n = int(record.value.decode().removeprefix("value-"))
                    assert record.key == keys[n].encode() and dict(record.headers)["ce_id"] == str(n).encode()
                    seen[record.value] += 1
    finally:
        await consumer.stop()
    assert len(seen) == len(keys) and set(seen.values()) == {1}


@run_async
async def test_deadlines_settle_pending_waiters_in_order_and_skip_settled_ones() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop, 0.05, "late")
    settled, pending, later = loop.create_future(), loop.create_future(), loop.create_future()
    deadlines.watch(settled)
    deadlines.watch(pending)
    settled.set_result(None)
    await asyncio.sleep(0.03)
    deadlines.watch(later)
    started = time.monotonic()
    assert await pending == "late"
    assert await settled is None and not later.done()
    assert await later == "late" and time.monotonic() - started >= 0.02
    assert len(deadlines) == 0
    deadlines.close()

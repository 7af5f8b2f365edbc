"""Records of concurrent requests, written to Kafka as one aiokafka batch per partition.

Each request appends its record to the open batch of its partition (``producer.create_batch()``) and
gets a future that settles when Kafka acknowledged that batch (the producer's acks, ``all`` for the
edge). The open batches of all partitions are handed to the producer together (``send_batch``, on
the next turn of the event loop), so they leave in one produce request. One shipment is
unacknowledged at a time; records arriving meanwhile join new open batches and leave together once
the broker answered. That is the batching ``producer.send`` does, without its per-record coroutine,
future and metadata.

A waiter's result is ``None`` once the record is acknowledged, else the text of the error.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from functools import partial

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder

from ingest.partitioner import CachedMurmur2Partitioner

KafkaHeaders = Sequence[tuple[str, bytes]]
Waiter = asyncio.Future[str | None]


def _settle(waiters: list[Waiter], outcome: str | None) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(outcome)


class _Shipment:
    """Batches handed to the producer together, counted until every one of them is acknowledged."""

    __slots__ = ("remaining",)

    def __init__(self) -> None:
        self.remaining = 1  # held by the shipping task until every batch is handed over


class PartitionBatcher:
    """Collects records per topic partition and ships all partitions' batches through ``producer``.

    At most ``max_shipments`` shipments wait for their acknowledgement at a time; records arriving
    meanwhile join the open batches and go out together with the next shipment (few, full produce
    requests under load; one record at once when idle). One costs the least CPU per record; keep it
    at 2 or less: a third shipment would queue behind a partition's pending batch twice, and
    aiokafka's ``send_batch`` shortens its own timeout on every such wait.
    """

    def __init__(
        self,
        producer: AIOKafkaProducer,
        partitioner: CachedMurmur2Partitioner | None = None,
        *,
        max_shipments: int = 1,
    ) -> None:
        self.producer = producer
        self.loop = asyncio.get_running_loop()
        self.partitioner = partitioner if partitioner is not None else CachedMurmur2Partitioner()
        self.max_shipments = max_shipments
        self._partitions: dict[str, list[int]] = {}
        self._open: dict[tuple[str, int], list[tuple[BatchBuilder, list[Waiter]]]] = {}
        self._shipments = 0
        self._starting = False
        self._tasks: set[asyncio.Task[None]] = set()

    def partitions(self, topic: str) -> list[int] | None:
        """The known partitions of ``topic`` (``None`` until the producer has its metadata)."""
        known = self._partitions.get(topic)
        if known is None:
            found = self.producer.client.cluster.partitions_for_topic(topic)
            if not found:
                return None
            known = self._partitions[topic] = sorted(found)
        return known

    async def learn(self, topic: str) -> None:
        """Wait for the producer's metadata of ``topic`` (used once per topic)."""
        self._partitions[topic] = sorted(await self.producer.partitions_for(topic))

    def add(self, topic: str, partitions: list[int], value: bytes, key: bytes | None, headers: KafkaHeaders) -> Waiter:
        """Append one record to its partition's open batch; the future settles on the batch's ack."""
        if key is None:
            partition = random.choice(partitions)
        else:
            partition = self.partitioner(key, partitions, partitions)
        waiter: Waiter = self.loop.create_future()
        batches = self._open.get((topic, partition))
        if batches is None:
            batches = self._open[(topic, partition)] = []
        elif batches[-1][0].append(timestamp=None, key=key, value=value, headers=headers) is not None:
            batches[-1][1].append(waiter)
            return waiter
        builder = self.producer.create_batch()
        if builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
            waiter.set_result("record is larger than the producer's max_batch_size")
            return waiter
        batches.append((builder, [waiter]))
        self._maybe_ship()
        return waiter

    def _maybe_ship(self) -> None:
        if self._starting or self._shipments >= self.max_shipments or not self._open:
            return
        self._starting = True
        task = asyncio.create_task(self._ship())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ship(self) -> None:
        """Hand every open batch to the producer (one produce request per broker when it is idle)."""
        self._starting = False
        taken, self._open = self._open, {}
        self._shipments += 1
        shipment = _Shipment()
        left = [(topic, partition, builder, waiters)
                for (topic, partition), batches in taken.items() for builder, waiters in batches]
        try:
            while left:
                topic, partition, builder, waiters = left.pop(0)
                builder.close()
                try:
                    ack = await self.producer.send_batch(builder, topic, partition=partition)
                except asyncio.CancelledError:
                    _settle(waiters, "Kafka write was cancelled")
                    raise
                except Exception as exc:  # KafkaError, timeouts, a closed producer: each waiter gets a 503
                    _settle(waiters, f"Kafka refused the write: {exc!r}")
                    continue
                shipment.remaining += 1
                ack.add_done_callback(partial(self._acknowledged, shipment, waiters))
        finally:
            for _, _, _, waiters in left:  # cancelled: nobody will ship these
                _settle(waiters, "Kafka write was cancelled")
            for topic in {topic for topic, _ in taken}:
                self._refresh(topic)
            self._landed(shipment)

    def _acknowledged(self, shipment: _Shipment, waiters: list[Waiter], ack: asyncio.Future[object]) -> None:
        if ack.cancelled():
            _settle(waiters, "Kafka write was cancelled")
        else:
            error = ack.exception()
            _settle(waiters, None if error is None else f"Kafka refused the write: {error!r}")
        self._landed(shipment)

    def _landed(self, shipment: _Shipment) -> None:
        shipment.remaining -= 1
        if shipment.remaining == 0:
            self._shipments -= 1
            self._maybe_ship()

    def _refresh(self, topic: str) -> None:
        """Pick up a changed partition count from the producer's metadata (checked once per shipment)."""
        found = self.producer.client.cluster.partitions_for_topic(topic)
        if found and len(found) != len(self._partitions.get(topic, ())):
            self._partitions[topic] = sorted(found)

    async def drain(self) -> None:
        """Wait until every collected record is acknowledged or failed (before ``producer.stop()``)."""
        while self._open or self._shipments or self._tasks:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            else:
                await asyncio.sleep(0.005)

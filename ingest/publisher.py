"""The edge's Kafka producer: every write has a deadline, and "not acknowledged in time" is an error.

The producer connects in the background (and keeps retrying), so the edge starts even when Kafka is
down; until then ``publish`` raises :class:`BrokerUnavailable` at once and the edge answers 503.
Records of concurrent requests go out as one batch per partition (:mod:`ingest.batcher`): the edge
forms its batches itself, so ``producer_linger_ms`` does not delay its writes (``producer_max_batch_bytes``
and ``producer_compression`` apply as usual).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from core.errors import BrokerUnavailable
from core.kafka import ensure_topics, kafka_error, producer_kwargs
from core.settings import Settings
from ingest.batcher import PartitionBatcher, Waiter
from ingest.deadlines import Deadlines
from ingest.partitioner import CachedMurmur2Partitioner
from schemas.serde import Serializer

log = logging.getLogger(__name__)

KafkaHeaders = list[tuple[str, bytes]]


class Publisher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.timeout_s = settings.ack_timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._batcher: PartitionBatcher | None = None
        self._deadlines: Deadlines | None = None
        self._late = f"Kafka did not acknowledge within {self.timeout_s:g} s"
        self._connector: asyncio.Task[None] | None = None
        self._stopping = False
        self.serializer = Serializer(settings)

    @property
    def connected(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        """Try to connect now (bounded); keep trying in the background if that fails."""
        if await self._connect_once():
            return
        self._connector = asyncio.create_task(self._connect_loop(), name="callstream-edge-connect")

    async def _connect_once(self) -> bool:
        settings = self.settings
        budget = max(self.timeout_s * 2, 3.0)
        try:
            await asyncio.wait_for(ensure_topics(settings), budget)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning("cannot create topics on %s yet: %r", settings.kafka_bootstrap, exc)
            return False
        partitioner = CachedMurmur2Partitioner()
        producer = AIOKafkaProducer(**producer_kwargs(settings, client_id="callstream-edge"), partitioner=partitioner)
        try:
            await asyncio.wait_for(producer.start(), budget)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning("cannot connect the producer to %s yet: %r", settings.kafka_bootstrap, exc)
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                await asyncio.wait_for(producer.stop(), budget)
            return False
        if self.serializer.registry is not None:
            try:
                await asyncio.to_thread(
                    self.serializer.prepare,
                    [("raw_envelope", settings.raw_topic), ("dead_letter", settings.dead_topic)],
                )
            except Exception as exc:  # registry client errors vary; retry like a broker outage
                log.warning("cannot register schemas at %s yet: %r", settings.schema_registry_url, exc)
                with contextlib.suppress(KafkaError, OSError, TimeoutError):
                    await asyncio.wait_for(producer.stop(), budget)
                return False
        batcher = PartitionBatcher(producer, partitioner)
        try:
            for topic in (settings.raw_topic, settings.dead_topic):
                await asyncio.wait_for(batcher.learn(topic), budget)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning("no partition metadata from %s yet: %r", settings.kafka_bootstrap, exc)
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                await asyncio.wait_for(producer.stop(), budget)
            return False
        self._deadlines = Deadlines(asyncio.get_running_loop(), self.timeout_s, self._late)
        self._batcher = batcher
        self._producer = producer
        log.info("edge producer connected to %s", settings.kafka_bootstrap)
        return True

    async def _connect_loop(self) -> None:
        delay = 0.5
        while not self._stopping:
            await asyncio.sleep(delay)
            if await self._connect_once():
                return
            delay = min(delay * 2, 5.0)

    def submit(self, topic: str, value: bytes, key: bytes | None, headers: KafkaHeaders) -> Waiter | None:
        """Queue one record; the returned future gives ``None`` once acknowledged, else why not (at most
        ``ack_timeout_s`` later). ``None`` instead of a future: the topic's metadata is not known yet,
        use :meth:`publish`. Raises :class:`BrokerUnavailable` while the producer is not connected.
        """
        batcher, deadlines = self._batcher, self._deadlines
        if batcher is None or deadlines is None:
            raise BrokerUnavailable("Kafka producer is not connected yet")
        partitions = batcher.partitions(topic)
        if partitions is None:
            return None
        waiter = batcher.add(topic, partitions, self.serializer.reframe(value, topic), key, headers)
        deadlines.watch(waiter)
        return waiter

    async def publish(self, topic: str, value: bytes, key: bytes | None, headers: KafkaHeaders) -> None:
        """Write one record and wait for the acks=all acknowledgement, at most ``ack_timeout_s``.

        ``value`` is single-object encoded; with a schema registry configured it is re-framed in the
        Confluent wire format (schemas registered at connect time, so no HTTP call happens here).
        """
        waiter = self.submit(topic, value, key, headers)
        if waiter is None:  # a topic the producer has no metadata for yet
            batcher = self._batcher
            try:
                async with asyncio.timeout(self.timeout_s):
                    if batcher is not None:
                        await batcher.learn(topic)
            except TimeoutError:
                raise BrokerUnavailable(self._late) from None
            except KafkaError as exc:
                raise kafka_error(exc, f"write to {topic}") from exc
            waiter = self.submit(topic, value, key, headers)
            if waiter is None:
                raise BrokerUnavailable(f"Kafka has no partitions for {topic}")
        error = await waiter
        if error is not None:
            raise BrokerUnavailable(error)

    async def ready(self) -> bool:
        """Connected, and the cluster answers a metadata request within the deadline."""
        producer = self._producer
        if producer is None:
            return False
        client = producer.client
        try:
            async with asyncio.timeout(self.timeout_s):
                node_id = client.get_random_node()
                if node_id is None:
                    return False
                return bool(await client.ready(node_id))
        except (TimeoutError, KafkaError, OSError):
            return False

    async def stop(self) -> None:
        """Flush what is pending and close (bounded by the shutdown grace period)."""
        self._stopping = True
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
        producer, self._producer = self._producer, None
        batcher, self._batcher = self._batcher, None
        deadlines, self._deadlines = self._deadlines, None
        if batcher is not None:
            try:
                await asyncio.wait_for(batcher.drain(), self.settings.shutdown_grace_s)
            except TimeoutError:
                log.warning("records still unacknowledged after %g s at shutdown", self.settings.shutdown_grace_s)
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), self.settings.shutdown_grace_s)
            except (TimeoutError, KafkaError, OSError) as exc:
                log.warning("producer did not flush cleanly on shutdown: %r", exc)
        if deadlines is not None:
            deadlines.close()
        self.serializer.close()  # the schema registry client's connections

"""The consumer's producer for its downstream topics (cdrs, call_events, number_status, dead letters).

Built on librdkafka (``confluent_kafka.Producer``): batching, compression and the network run on
librdkafka's own threads, so re-publishing a batch costs the event loop one ``produce`` call per record.

At least once: ``send`` only enqueues; ``await flush()`` returns when the broker has acknowledged
(``acks=all``) every record sent since the previous flush and raises ``BrokerUnavailable`` when any
record was not delivered. The runner commits offsets only after ``flush`` returned.

    producer = DownstreamProducer(settings)
    await producer.start()
    producer.send(topic, value, key, headers)
    await producer.flush()
    await producer.stop()

Partitions follow Kafka's default partitioner (murmur2 of the key, as the Java client and aiokafka),
so a call's events and its CDR land in the same partition as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from core.errors import BrokerUnavailable
from core.kafka import delivery_timeout_ms, librdkafka_config
from core.settings import Settings

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]


class DownstreamProducer:
    """Enqueue records; ``flush`` waits for every acknowledgement or raises ``BrokerUnavailable``."""

    def __init__(self, settings: Settings, *, client_id: str = "callstream-consumer") -> None:
        self.settings = settings
        self.timeout_s = delivery_timeout_ms(settings) / 1000
        self._failed: list[str] = []
        config = librdkafka_config(settings, client_id=client_id)
        config["on_delivery"] = self._on_delivery
        config["error_cb"] = self._on_error
        config["logger"] = log
        self._producer: Producer | None = Producer(config)

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:  # only errors are reported (delivery.report.only.error)
            self._failed.append(f"{msg.topic()}: {err.str()}")

    def _on_error(self, err: KafkaError) -> None:
        log.warning("downstream producer: %s", err.str())

    def _require(self) -> Producer:
        if self._producer is None:
            raise BrokerUnavailable("the downstream producer is stopped")
        return self._producer

    async def start(self) -> None:
        """Fetch the cluster metadata once: ``BrokerUnavailable`` when Kafka does not answer in time."""
        producer = self._require()
        try:
            await asyncio.to_thread(producer.list_topics, None, self.timeout_s)
        except KafkaException as exc:
            raise BrokerUnavailable(
                f"Kafka at {self.settings.kafka_bootstrap} did not answer the downstream producer: {exc}. "
                "Check CALLSTREAM_KAFKA_BOOTSTRAP and that the broker is up"
            ) from exc

    def send(self, topic: str, value: bytes, key: bytes | None, headers: Headers) -> None:
        """Enqueue one record (waits only while librdkafka's local queue is full)."""
        producer = self._require()
        deadline = 0.0
        while True:
            try:
                producer.produce(topic, value, key, headers=headers)  # type: ignore[arg-type]  # stub: list is invariant
                return
            except BufferError:
                now = time.monotonic()
                deadline = deadline or now + self.timeout_s
                if now > deadline:
                    raise BrokerUnavailable(
                        f"the downstream producer's queue stayed full for {self.timeout_s:g} s: is Kafka slow?"
                    ) from None
                producer.poll(0.05)  # serves delivery reports, which frees queue space
            except KafkaException as exc:
                raise BrokerUnavailable(f"downstream publish to {topic} failed: {exc}") from exc

    async def flush(self) -> None:
        """Wait until every record sent so far is acknowledged; ``BrokerUnavailable`` if any was not.

        Polls librdkafka's queue length from the event loop (the batch being prepared meanwhile keeps
        running): a thread blocked in ``Producer.flush`` takes hundreds of milliseconds to get the GIL
        back while the event loop thread is busy."""
        producer = self._require()
        deadline = time.monotonic() + self.timeout_s + 5  # librdkafka fails records after timeout_s
        pause = 0.0005
        while len(producer):  # records queued or in flight, and delivery reports not yet served
            producer.poll(0)  # serves delivery reports: only failures have a callback
            if time.monotonic() > deadline:
                raise BrokerUnavailable(
                    f"Kafka did not acknowledge the downstream records within {self.timeout_s:g} s")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.02)
        failed, self._failed = self._failed, []
        if failed:
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            raise BrokerUnavailable(f"downstream records were not delivered: {failed[0]}{more}")

    async def stop(self) -> None:
        """Deliver what is queued (at most the shutdown grace period), then drop the connection."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        left = await asyncio.to_thread(producer.flush, self.settings.shutdown_grace_s)
        if left:
            log.warning("downstream producer stopped with %d records unacknowledged (dropped)", left)
            producer.purge()  # close() would wait for them without a deadline
        close = getattr(producer, "close", None)  # confluent-kafka >= 2.10; older ones close when collected
        if close is not None:
            await asyncio.to_thread(close)

"""The consumer process: poll the raw topic, run each batch through the pipeline, commit after load.

Offsets are committed only when the batch's rows are in ClickHouse and its downstream records are
acknowledged. While ClickHouse (or Kafka for the downstream topics) is unavailable, the assigned
partitions are paused, the loop keeps polling (so the group session stays alive) and the same batch
is retried with capped exponential backoff; nothing is committed until it succeeds.

    callstream consume [--group G] [--metrics-port P] [--no-migrate]
    await run_consumer(settings, stop, registry=..., ready=...)     # in-process (callstream up)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import CollectorRegistry, start_http_server

from consumers.downstream import DownstreamProducer
from consumers.load import ClickHouseSink, without_dataframes
from consumers.metrics import ConsumerMetrics, update_lag
from consumers.pipeline import Batch, Pipeline
from consumers.worker import PrepareWorker
from core import memory, store
from core.errors import CallstreamError, StoreError
from core.kafka import consumer_kwargs, ensure_topics
from core.settings import Settings
from schemas.migrate import apply_migrations

log = logging.getLogger(__name__)


async def _wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def retry_paused(
    attempt: Callable[[], Awaitable[object]], stage: Callable[[CallstreamError], str], metrics: ConsumerMetrics,
    consumer: AIOKafkaConsumer | None, stop: asyncio.Event, max_backoff_s: float,
) -> bool:
    """Run ``attempt`` until it succeeds; on a retriable error count it under ``stage(error)``, pause
    consumption, keep polling (with ``consumer``; without it, only wait: someone else polls) and back
    off. Poison errors propagate, and so does an error that has failed its ``max_retries`` times in a row.
    False if stopped first."""
    backoff = 0.05
    paused: set[TopicPartition] = set()
    failures = 0
    try:
        while True:
            try:
                await attempt()
                return True
            except CallstreamError as exc:
                failures += 1
                if not exc.retriable or (exc.max_retries is not None and failures > exc.max_retries):
                    raise
                metrics.errors.labels(stage(exc)).inc()
                metrics.paused.set(1)
                log.warning("%s failed, retrying in %.2fs: %s", stage(exc), backoff, exc)
                if consumer is not None:
                    assigned = consumer.assignment()
                    consumer.pause(*assigned)
                    paused |= set(assigned)
                    deadline = time.monotonic() + backoff
                    while time.monotonic() < deadline and not stop.is_set():
                        # paused partitions return nothing; polling keeps the member alive
                        await consumer.getmany(timeout_ms=int(min(200, backoff * 1000)))
                else:
                    await _wait_or_stop(stop, backoff)
                if stop.is_set():
                    return False
                backoff = min(backoff * 2, max_backoff_s)
    finally:
        metrics.paused.set(0)
        if consumer is not None and paused:
            with contextlib.suppress(IllegalStateError):
                consumer.resume(*(tp for tp in paused if tp in consumer.assignment()))


async def fetch_schemas_with_retry(
    pipeline: Pipeline, records: list[Any], consumer: AIOKafkaConsumer | None, stop: asyncio.Event,
    max_backoff_s: float,
) -> bool:
    """Fetch the registry writer schemas ``records`` name, pausing while the registry is unavailable.
    False if stopped first (the records are then neither prepared nor committed)."""
    return await retry_paused(lambda: pipeline.fetch_writer_schemas(records), lambda _: "schema_registry",
                              pipeline.metrics, consumer, stop, max_backoff_s)


async def deliver_with_retry(
    pipeline: Pipeline, batch: Batch, consumer: AIOKafkaConsumer | None, stop: asyncio.Event,
    max_backoff_s: float,
) -> bool:
    """Deliver ``batch``, pausing while ClickHouse or the downstream Kafka is unavailable. False if
    stopped first."""
    return await retry_paused(lambda: pipeline.deliver(batch),
                              lambda exc: "load" if isinstance(exc, StoreError) else "publish",
                              pipeline.metrics, consumer, stop, max_backoff_s)


async def commit(consumer: AIOKafkaConsumer, batch: Batch) -> bool:
    """Commit the batch's offsets; False when the group rebalanced (the new owner redelivers).

    An offset beyond the partition's known end or beyond our position is not committed: the batch was
    read from a log the broker has since lost, or before the partition was re-read from the beginning
    (see :class:`LogResetGuard`); that offset would skip records of the new log."""
    offsets = {TopicPartition(t, p): OffsetAndMetadata(o, "") for (t, p), o in batch.offsets.items()}
    assigned = consumer.assignment()
    for tp, meta in list(offsets.items()):
        if tp not in assigned:
            continue  # revoked: the commit is refused below
        limit = consumer.highwater(tp)
        with contextlib.suppress(TimeoutError, IllegalStateError):  # no position while it is being reset
            position = await asyncio.wait_for(consumer.position(tp), 0.2)
            limit = position if limit is None else min(limit, position)
        if limit is not None and meta.offset > limit:
            log.warning("partition %s: not committing offset %d, beyond the log end or our position %d "
                        "(broker lost its data?)", _tp_name(tp), meta.offset, limit)
            del offsets[tp]
    if not offsets:
        return True
    try:
        await consumer.commit(offsets)
        return True
    except (CommitFailedError, IllegalStateError) as exc:
        log.warning("offset commit refused after a rebalance; the batch will be redelivered: %s", exc)
        return False
    except KafkaError as exc:  # e.g. a durable broker whose object store is restarting answers UNKNOWN
        log.warning("offset commit failed (%r); the next batch's commit covers these offsets, a restart "
                    "before it redelivers the batch (deduplicated)", exc)
        return False


def _tp_name(tp: TopicPartition) -> str:
    return f"{tp.topic}[{tp.partition}]"


class LogResetGuard(ConsumerRebalanceListener):
    """Notices that the broker lost a partition's log and re-reads it from the beginning.

    A memory-only broker (the embedded Tansu) that restarts starts its logs again at offset 0 and does
    not answer OFFSET_OUT_OF_RANGE to a consumer that fetches at its old position: without this check the
    consumer would skip the new log's first records until the log grows past that position. A position
    beyond the high watermark of the latest fetch response cannot happen otherwise. Re-reading is
    harmless (rows are deduplicated by business key). The group's committed offset of a reset partition
    is set back to 0 as soon as the group accepts a commit (the restarted broker forgot our membership);
    until then every re-join seeks that partition to 0 again instead of trusting a stale committed offset.

    The position check misses a new log that outgrew the old position before the consumer's first fetch
    from the restarted broker. Whoever restarts the broker (``callstream up``) therefore sets
    ``broker_lost``: every partition is then re-read from the beginning.
    """

    def __init__(self, metrics: ConsumerMetrics, interval_s: float = 1.0,
                 broker_lost: asyncio.Event | None = None) -> None:
        self.metrics = metrics
        self.interval_s = interval_s
        self.broker_lost = broker_lost
        self.consumer: AIOKafkaConsumer | None = None
        self.uncommitted: set[TopicPartition] = set()  # reset, but the group still holds the old offset
        self._reset_all = False  # the broker lost everything: reset whatever is (or gets) assigned
        self._next_check = 0.0

    def on_partitions_revoked(self, revoked: Any) -> None:
        return None

    def on_partitions_assigned(self, assigned: Any) -> None:
        if self.consumer is None:
            return
        if self._reset_all and assigned:
            self._reset_all = False
            self._reset(self.consumer, list(assigned))
        for tp in self.uncommitted & set(assigned):
            self.consumer.seek(tp, 0)

    def _reset(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            consumer.seek(tp, 0)  # below the log start of a real cluster: its out-of-range reset applies
        self.metrics.errors.labels("log_truncated").inc(len(partitions))
        self.uncommitted |= set(partitions)

    async def check(self, consumer: AIOKafkaConsumer, polled_nothing: bool) -> list[TopicPartition]:
        """Compare position and high watermark of each assigned partition (when the poll returned
        nothing, else at most every ``interval_s``); re-read the partitions whose log is shorter."""
        if self.broker_lost is not None and self.broker_lost.is_set():
            self.broker_lost.clear()
            self._reset_all = True
            log.warning("the broker lost its data: re-reading every partition from the beginning")
        if self._reset_all and consumer.assignment():
            self._reset_all = False
            self._reset(consumer, list(consumer.assignment()))
        now = time.monotonic()
        if not polled_nothing and now < self._next_check:
            return []
        self._next_check = now + self.interval_s
        truncated: list[TopicPartition] = []
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is None:
                continue
            try:
                position = await asyncio.wait_for(consumer.position(tp), 0.2)
            except (TimeoutError, IllegalStateError):
                continue  # being reset or revoked right now: look again next time
            if position > high:
                log.warning("partition %s: log is shorter than our position (%d > end %d; broker lost its data?); "
                            "re-reading from the beginning", _tp_name(tp), position, high)
                truncated.append(tp)
        if truncated:
            self._reset(consumer, truncated)
        await self._commit_starts(consumer)
        return truncated

    async def _commit_starts(self, consumer: AIOKafkaConsumer) -> None:
        starts = {tp: OffsetAndMetadata(0, "") for tp in self.uncommitted & consumer.assignment()}
        if not starts:
            return
        try:
            await consumer.commit(starts)
        except (KafkaError, IllegalStateError) as exc:
            log.info("the group does not take the reset offsets yet (retrying): %r", exc)
            return
        self.uncommitted -= set(starts)


async def _stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """``consumer.stop()``; aiokafka re-raises the cancellation of a fetch that was backing off (the broker
    is gone), which must not look like a cancellation of this task."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.warning("the Kafka consumer stopped while a fetch was retrying (is the broker gone?)")
        with contextlib.suppress(KafkaError, OSError):
            await consumer._client.close()  # stop() skipped it after that cancellation


async def run_consumer(
    settings: Settings,
    stop: asyncio.Event,
    *,
    registry: CollectorRegistry | None = None,
    ready: asyncio.Event | None = None,
    migrate: bool = True,
    sink: ClickHouseSink | None = None,
    broker_lost: asyncio.Event | None = None,
) -> None:
    """Consume ``settings.raw_topic`` until ``stop`` is set. ``sink`` replaces the ClickHouse sink
    (tests wrap it to inject failures at this seam). Set ``broker_lost`` when the broker restarted
    without its data: every partition is re-read from the beginning."""
    registry = registry if registry is not None else CollectorRegistry()
    metrics = ConsumerMetrics(registry)
    http_server = None
    if settings.consumer_metrics_port > 0:
        http_server, _ = start_http_server(settings.consumer_metrics_port, registry=registry)
    without_dataframes()
    client = await asyncio.to_thread(store.connect, settings)
    if migrate:
        await asyncio.to_thread(apply_migrations, settings, client)
    sink = sink or ClickHouseSink(client, settings.clickhouse_database)
    await ensure_topics(settings)
    producer = DownstreamProducer(settings, client_id="callstream-consumer")
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings, client_id="callstream-consumer"))
    log_reset = LogResetGuard(metrics, broker_lost=broker_lost)
    log_reset.consumer = consumer
    consumer.subscribe([settings.raw_topic], listener=log_reset)
    worker = PrepareWorker(settings) if settings.prepare_worker else None
    pipeline = Pipeline(settings, sink, producer, metrics, worker=worker)
    try:
        if worker is not None:
            await worker.start()
        await producer.start()
        try:
            await pipeline.register_schemas()
        except CallstreamError as exc:  # registered again before the first publish, with backoff
            if not exc.retriable:
                raise
            log.warning("cannot register the downstream schemas yet: %s", exc)
        await consumer.start()
        memory.collect_less()  # the start-up objects stay; the batches' short-lived rows are not cyclic
        try:
            await _loop(settings, stop, consumer, pipeline, ready, log_reset)
        finally:
            await _stop_consumer(consumer)
    finally:
        await producer.stop()
        pipeline.serializer.close()
        if worker is not None:
            await asyncio.to_thread(worker.close)
        if http_server is not None:
            http_server.shutdown()


async def _loop(
    settings: Settings, stop: asyncio.Event, consumer: AIOKafkaConsumer, pipeline: Pipeline,
    ready: asyncio.Event | None, log_reset: LogResetGuard | None = None,
) -> None:
    """Poll, prepare, deliver, commit, batch after batch in poll order. While one batch is delivered
    (Kafka acks, the ClickHouse insert in a thread) and committed, the ``settings.prepare_ahead``
    batches polled after it are with the prepare step, which takes them one after another. With 1 (the
    default) the worker prepares the next batch, then waits for the delivery, the commit and the next
    poll; with 2 it goes on with the batch after, so it does not wait on the consumer, and the transfer
    of a prepared batch back to the consumer overlaps the worker's next one, for one more batch in
    memory (it pays where the worker is the slower half: large batches, bench/consumer.py). A batch is
    delivered only after the one before it is loaded and committed. The consumer is never polled while
    a delivery is in flight (the delivery itself polls it while it backs off)."""
    lags: dict[Any, int] = {}
    metrics = pipeline.metrics
    ahead: deque[tuple[asyncio.Task[Batch], float]] = deque()  # handed to prepare, not yet delivered
    fill = settings.prepare_ahead + 1  # the next one to deliver and those behind it
    log_reset = log_reset or LogResetGuard(metrics)
    try:
        while not stop.is_set() or ahead:
            if not stop.is_set() and len(ahead) < fill:  # stopping: poll nothing new
                # with a batch on its way, take only what is already fetched: do not delay its delivery
                timeout_ms = 0 if ahead else settings.flush_interval_ms
                fetched = time.perf_counter()
                polled = await consumer.getmany(timeout_ms=timeout_ms, max_records=settings.batch_max_events)
                metrics.add_stage_seconds({"fetch": time.perf_counter() - fetched} if polled else {})  # not idling
                if ready is not None and not ready.is_set() and consumer.assignment():
                    ready.set()
                records = [rec for recs in polled.values() for rec in recs]
                await log_reset.check(consumer, polled_nothing=not records)
                if records and await fetch_schemas_with_retry(
                        pipeline, records, consumer, stop, settings.load_retry_max_backoff_s):
                    ahead.append((asyncio.create_task(pipeline.prepare_async(records)), time.perf_counter()))
                    if len(ahead) < fill:
                        continue  # more may be fetched already: hand it over before delivering
            if not ahead:
                continue
            task, started = ahead[0]
            waited = time.perf_counter()
            batch = await task
            ahead.popleft()
            metrics.add_stage_seconds({"wait": time.perf_counter() - waited})  # the worker had not finished it
            if not await deliver_with_retry(pipeline, batch, consumer, stop, settings.load_retry_max_backoff_s):
                return  # stopped while the store was down: nothing committed, the batches are redelivered
            committing = time.perf_counter()
            if not await commit(consumer, batch):
                continue
            metrics.add_stage_seconds({"commit": time.perf_counter() - committing})
            metrics.batch_seconds.observe(time.perf_counter() - started)
            update_lag(consumer, batch.offsets, lags, metrics)
    finally:
        for task, _ in ahead:  # stopped or failed: what is not delivered is not committed (redelivered)
            task.cancel()
        for task, _ in ahead:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task


def main(args: argparse.Namespace, settings: Settings) -> int:
    """``callstream consume``."""
    given = {"consumer_group": getattr(args, "group", None) or None,
             "consumer_metrics_port": getattr(args, "metrics_port", None)}
    if updates := {name: value for name, value in given.items() if value is not None}:
        settings = settings.model_copy(update=updates)
    settings.require_kafka()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_consumer(settings, stop, migrate=not getattr(args, "no_migrate", False))

    try:
        asyncio.run(run())
    except KafkaError as exc:
        log.error("Kafka failed: %s", exc)
        return 1
    finally:
        store.close_all()
    return 0

"""One batch through the consumer: ``consumers.prepare`` (decode -> parse -> normalise -> enrich -> keys ->
dedupe -> protect -> encode), then ``deliver`` (look up stored keys -> insert -> publish -> quarantine).

``prepare`` is pure CPU work on the polled records; ``deliver`` talks to ClickHouse and Kafka and may
raise ``StoreUnavailable`` / ``BrokerUnavailable`` (retriable: call it again with the same batch).
Order inside ``deliver``: look up keys already stored, insert the new rows with deterministic tokens
(a row the store refuses is quarantined with its reason), publish the stored rows downstream (once per
batch), remember their keys; the runner commits the offsets after that. A crash after the insert and
before the publish or the commit loses nothing: the redelivered record finds its own rows in the store
(same notification id) and publishes them; rows stored by another notification are duplicates.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from dataclasses import dataclass, field, fields
from typing import Any

from aiokafka.structs import ConsumerRecord

from consumers.dedupe import conflict_row, content_digest, failure_key, status_transition_keys, unique_in_batch
from consumers.enrich import assign_legs
from consumers.downstream import DownstreamProducer
from consumers.load import ClickHouseSink
from consumers.metrics import ConsumerMetrics
from consumers.normalise import Failure
from consumers.prepare import Prepared, State, drop_recent, prepare_steps
from consumers.republish import Message, republish, schema_topics, to_message
from consumers.worker import PrepareWorker
from core.settings import Settings
from schemas.cloudevents import KafkaHeaders
from schemas.dead_letter import dead_letter
from schemas import ROW_TABLES
from schemas.serde import Serializer

__all__ = ["ROW_TABLES", "Batch", "Pipeline", "dead_letter_of", "failure_row"]


@dataclass
class Batch(Prepared):
    """A prepared batch being delivered; ``stored``, ``delivered`` (the stored rows, to publish) and
    ``published`` survive retries of ``deliver``."""

    resolved: bool = False
    stored: bool = False
    published: bool = False
    delivered: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def of(cls, prepared: Prepared) -> Batch:
        return cls(**{f.name: getattr(prepared, f.name) for f in fields(Prepared)})


def failure_row(f: Failure) -> dict[str, Any]:
    n = f.notification
    return {
        "dedup_key": failure_key(n.id, f.record_index, f.stage, f.reason),
        "notification_id": n.id,
        "record_index": f.record_index,
        "received_at": n.received_at_us,
        "stage": f.stage,
        "reason": f.reason,
        "detail": f.detail[:2000],
        "service": n.service,
        "path": n.path,
        "app_key": n.app_key,
        "event_type": n.event_type,
        "source_topic": n.topic,
        "source_partition": n.partition,
        "source_offset": n.offset,
        "body": n.body,
    }


def dead_letter_of(f: Failure) -> tuple[bytes, KafkaHeaders]:
    n = f.notification
    return dead_letter(
        id=n.id, received_at=n.received_at_us, stage=f.stage, reason=f.reason, detail=f.detail,
        service=n.service, path=n.path, app_key=n.app_key, body=n.body, source=(n.topic, n.partition, n.offset),
        record_index=f.record_index,
    )


class Pipeline:
    """Holds what outlives one batch: the sink, the producer, the serializer (framing of what is read and
    published), the recent-key LRU and the metrics."""

    def __init__(
        self, settings: Settings, sink: ClickHouseSink, producer: DownstreamProducer | None,
        metrics: ConsumerMetrics, serializer: Serializer | None = None, worker: PrepareWorker | None = None,
    ) -> None:
        self.settings = settings
        self.worker = worker  # prepare_async runs prepare there (without a schema registry to read from)
        self.sink = sink
        self.producer = producer
        self.metrics = metrics
        self.serializer = serializer if serializer is not None else Serializer(settings)
        self._schemas_registered = self.serializer.registry is None
        self.state = State.for_settings(settings)

    async def register_schemas(self) -> None:
        """Register the downstream and dead-letter schemas under their topics' subjects (once; a no-op
        without a schema registry). ``BrokerUnavailable`` while the registry is unreachable."""
        if not self._schemas_registered:
            await asyncio.to_thread(self.serializer.prepare, schema_topics(self.settings))
            self._schemas_registered = True

    async def fetch_writer_schemas(self, records: list[ConsumerRecord]) -> None:
        """Fetch the registry schemas the records name before ``prepare`` (which makes no HTTP call);
        ``BrokerUnavailable`` while the registry is unreachable: retry, nothing was changed."""
        if self.serializer.registry is not None:
            await asyncio.to_thread(self.serializer.fetch_writers, [rec.value for rec in records])

    # --- CPU part ---------------------------------------------------------------------------
    @property
    def recent(self) -> Any:
        return self.state.recent

    def prepare(self, records: list[ConsumerRecord]) -> Batch:
        steps = self._prepare(records)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    async def prepare_async(self, records: list[ConsumerRecord]) -> Batch:
        """``prepare``, while the previous batch's delivery (Kafka acks, the ClickHouse insert thread)
        proceeds: in the worker process when there is one, else here, giving the event loop a turn every
        few hundred records."""
        if self.worker is not None and self.serializer.registry is None:
            prepared = await self.worker.prepare(records, encode=self._encode)
            drop_recent(prepared, self.state)
            return self._noted(records, prepared)
        steps = self._prepare(records)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            await asyncio.sleep(0)

    @property
    def _encode(self) -> bool:
        return self.producer is not None and self.settings.republish

    def _prepare(self, records: list[ConsumerRecord]) -> Generator[None, None, Batch]:
        prepared = yield from prepare_steps(records, self.settings, self.state, serializer=self.serializer,
                                            encode=self._encode)
        return self._noted(records, prepared)

    def _noted(self, records: list[ConsumerRecord], prepared: Prepared) -> Batch:
        """Count what the batch noticed; the batch to deliver."""
        m = self.metrics
        m.received.inc(len(records))
        m.batch_events.observe(len(records))
        notes = prepared.notes
        for name in notes.invalid_values:
            m.invalid_values.labels(name).inc()
        for name in notes.unknown_codes:
            m.unknown_codes.labels(name).inc()
        if notes.inconsistent_timestamps:
            m.inconsistent_timestamps.inc(notes.inconsistent_timestamps)
        if notes.duplicates:
            m.discarded.labels("duplicate").inc(notes.duplicates)
        m.add_stage_seconds(prepared.seconds)
        return Batch.of(prepared)

    # --- I/O part ---------------------------------------------------------------------------
    async def deliver(self, batch: Batch) -> None:
        """Store, then publish (the runner commits after this returns); raises retriable errors
        (``StoreUnavailable``, ``BrokerUnavailable``) without losing anything: each step records its
        progress on the batch, so calling it again repeats only what did not happen."""
        clock = time.perf_counter
        if not batch.stored:
            await self._store(batch)
        if not batch.published:
            began = clock()
            await self._publish(batch)
            self.metrics.add_stage_seconds({"publish": clock() - began})
        if batch.failures:
            began = clock()
            await self._quarantine(batch.failures)
            batch.failures = []
            self.metrics.add_stage_seconds({"quarantine": clock() - began})
        now_us = time.time() * 1_000_000
        observe = self.metrics.receipt_to_load.observe
        for n in batch.notifications:
            observe(max(0.0, (now_us - n.received_at_us) / 1_000_000))

    async def _store(self, batch: Batch) -> None:
        """Insert the rows not stored yet. A key stored by another notification is a duplicate and
        dropped; a key stored by this very notification (redelivered after a crash or a failed publish
        between store and publish) is not inserted again but still published. A row the store refuses
        becomes a failure (quarantined, never published)."""
        sink = self.sink
        began = time.perf_counter()
        await self._resolve(batch)
        wanted = {t: [r["dedup_key"] for r in batch.tables[t]] for t in ROW_TABLES if batch.tables[t]}
        stored = await asyncio.to_thread(sink.stored_notifications, wanted)  # a retriable error: nothing done
        self.metrics.add_stage_seconds({"lookup": time.perf_counter() - began})
        new: dict[str, list[dict[str, Any]]] = {}
        again: dict[str, list[dict[str, Any]]] = {}
        differing: list[tuple[dict[str, Any], str]] = []
        for table in ROW_TABLES:
            rows = batch.tables[table]
            known = stored.get(table) or {}
            new[table], again[table] = [], []
            for row in rows:
                owner = known.get(row["dedup_key"])
                if owner is None:
                    new[table].append(row)
                elif owner[0] == row["notification_id"]:
                    again[table].append(row)
                elif table == "cdrs" and owner[1] and owner[1] != content_digest(row["raw"]):
                    differing.append((row, owner[0]))
            dropped = len(rows) - len(new[table]) - len(again[table])
            if dropped:
                self.metrics.discarded.labels("duplicate").inc(dropped)

        def load_all() -> dict[str, tuple[int, list[Any]]]:
            return {t: sink.insert_isolating(t, new[t]) for t in ROW_TABLES if new[t]}

        if differing:
            raws = await asyncio.to_thread(sink.stored_raw, "cdrs", [r["dedup_key"] for r, _ in differing])
            batch.conflicts += [conflict_row(r, owner, raws.get(r["dedup_key"], "")) for r, owner in differing]
        if batch.conflicts:
            await asyncio.to_thread(self._record_conflicts, batch.conflicts)
            batch.conflicts = []
        began = time.perf_counter()
        results = await asyncio.to_thread(load_all)  # one thread hop; a retriable error aborts the rest
        self.metrics.add_stage_seconds({"insert": time.perf_counter() - began})
        by_id = {n.id: n for n in batch.notifications}
        for table in ROW_TABLES:
            loaded, bad = results.get(table, (0, []))
            refused = {id(row) for row, _ in bad}
            for row, exc in bad:
                n = by_id.get(row.get("notification_id", "")) if isinstance(row, dict) else None
                if n is not None:
                    batch.failures.append(Failure(n, row.get("record_index", -1), "load", exc.reason, str(exc)))
            self.metrics.loaded.labels(table).inc(loaded)
            batch.delivered[table] = again[table] + [r for r in new[table] if id(r) not in refused]
            batch.tables[table] = []
        batch.stored = True

    def _record_conflicts(self, rows: list[dict[str, Any]]) -> None:
        """Store conflicting CDRs in ``cdr_conflicts`` once each, and count them."""
        rows, _ = unique_in_batch(rows)
        known = self.sink.existing_keys("cdr_conflicts", [r["dedup_key"] for r in rows])
        rows = [r for r in rows if r["dedup_key"] not in known]
        if rows:
            self.sink.insert("cdr_conflicts", rows)
            self.metrics.conflicts.labels("cdrs").inc(len(rows))

    async def _resolve(self, batch: Batch) -> None:
        """What needs the stored history: status keys (a repeat of the number's latest state is a
        duplicate, a change is a new row) and callback legs (the session's earliest callout is leg 1).
        The same records give the same result on a retry, after a restart and in a replay."""
        sink = self.sink
        statuses = batch.tables["number_status"]
        if statuses and not batch.resolved:
            # as if this batch had not been stored before: only its pushes with status rows can have stored some
            exclude = sorted({r["notification_id"] for r in statuses})
            latest = await asyncio.to_thread(sink.latest_number_states, [r["number"] for r in statuses], exclude)
            kept = status_transition_keys(statuses, latest)
            if len(kept) < len(statuses):
                self.metrics.discarded.labels("duplicate").inc(len(statuses) - len(kept))
            batch.tables["number_status"] = kept
            batch.messages.pop("number_status", None)  # encoded with the state keys
        batch.resolved = True
        events = batch.tables["call_events"]
        sessions = {r["session_id"] for r in events
                    if r["service"] == "voice" and r["event_type"] != "collectInfo" and r["session_id"]}
        if sessions:
            first = await asyncio.to_thread(sink.first_callouts, sessions)
            encoded = batch.messages.get("call_events", {})
            for row in assign_legs(events, first):
                encoded.pop(row["dedup_key"], None)

    async def _publish(self, batch: Batch) -> None:
        """Publish the stored rows downstream (once per batch), then remember their keys."""
        if self.producer is not None and self.settings.republish:
            await self.register_schemas()
            outgoing = {t: self._messages(batch, t, rows) for t, rows in batch.delivered.items()}
            counts = await republish(self.producer, self.settings, outgoing, self.serializer)
            for topic, count in counts.items():
                self.metrics.sent.labels(topic).inc(count)
        for table, rows in batch.delivered.items():
            if table != "number_status":  # a status key may come back legitimately (see _resolve)
                self.recent.add(table, [r["dedup_key"] for r in rows])
        batch.published = True
        batch.messages = {}
        batch.delivered = {}

    @staticmethod
    def _messages(batch: Batch, table: str, rows: list[dict[str, Any]]) -> list[Message]:
        encoded = batch.messages.get(table, {})
        return [encoded.get(r["dedup_key"]) or to_message(table, r) for r in rows]

    async def _quarantine(self, failures: list[Failure]) -> None:
        rows = [failure_row(f) for f in failures]
        rows, _ = unique_in_batch(rows)
        stored = await asyncio.to_thread(self.sink.existing_keys, "failed_events", [r["dedup_key"] for r in rows])
        rows = [r for r in rows if r["dedup_key"] not in stored]
        producer = self.producer
        if producer is not None:
            topic = self.settings.dead_topic
            letters = [f for f in failures if failure_key(f.notification.id, f.record_index, f.stage, f.reason)
                       not in stored]
            if letters:
                await self.register_schemas()
                for f in letters:
                    value, headers = dead_letter_of(f)
                    producer.send(topic, self.serializer.reframe(value, topic), f.notification.id.encode(), headers)
                await producer.flush()  # BrokerUnavailable when any was not acknowledged
        if rows:
            await asyncio.to_thread(self.sink.insert, "failed_events", rows)
        for f in failures:
            self.metrics.errors.labels(f.stage).inc()
        self.metrics.discarded.labels("failed").inc(len(rows))

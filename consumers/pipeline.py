"""One batch through the consumer: decode -> normalise -> enrich -> dedupe -> protect -> load -> republish.

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
from dataclasses import dataclass, field
from typing import Any

from aiokafka.structs import ConsumerRecord

from consumers.decode import Notification, decode_envelope
from consumers.dedupe import (
    RecentKeys,
    assign_keys,
    conflict_row,
    content_digest,
    failure_key,
    status_transition_keys,
    unique_cdrs,
    unique_in_batch,
)
from consumers.downstream import DownstreamProducer
from consumers.enrich import Enriched, assign_legs, enrich_cdr, enrich_event, enrich_status
from consumers.load import ClickHouseSink
from consumers.metrics import ConsumerMetrics
from consumers.normalise import Failure, Normalised, normalise
from consumers.protect import protect_numbers
from consumers.republish import Message, messages, republish, schema_topics, to_message
from core.errors import NormaliseError
from core.settings import Settings
from schemas.avro_codec import encode
from schemas.serde import Serializer

ROW_TABLES = ("cdrs", "call_events", "number_status")
_STEP = 500  # records or rows between two turns of the event loop in prepare_async


@dataclass
class Batch:
    """The rows of one poll, ready to deliver; ``stored``, ``delivered`` (the stored rows, to publish) and
    ``published`` survive retries of ``deliver``."""

    notifications: list[Notification]
    tables: dict[str, list[dict[str, Any]]]
    failures: list[Failure]
    offsets: dict[Any, int]  # TopicPartition -> next offset to commit
    received: int
    resolved: bool = False
    stored: bool = False
    published: bool = False
    messages: dict[str, dict[int, Message]] = field(default_factory=dict)  # table -> dedup_key -> record
    conflicts: list[dict[str, Any]] = field(default_factory=list)  # cdr_conflicts rows
    delivered: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


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


def dead_letter(f: Failure) -> bytes:
    n = f.notification
    return encode("dead_letter", {
        "id": n.id, "received_at": n.received_at_us, "stage": f.stage, "reason": f.reason,
        "detail": f.detail[:2000], "service": n.service, "path": n.path, "app_key": n.app_key,
        "http_status": 0, "source_topic": n.topic, "source_partition": n.partition, "source_offset": n.offset,
        "headers": {"record_index": str(f.record_index)}, "body": n.body, "body_truncated": False,
    })


class Pipeline:
    """Holds what outlives one batch: the sink, the producer, the serializer (framing of what is read and
    published), the recent-key LRU and the metrics."""

    def __init__(
        self, settings: Settings, sink: ClickHouseSink, producer: DownstreamProducer | None,
        metrics: ConsumerMetrics, serializer: Serializer | None = None,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.producer = producer
        self.metrics = metrics
        self.serializer = serializer if serializer is not None else Serializer(settings)
        self._schemas_registered = self.serializer.registry is None
        self.recent = RecentKeys(settings.dedup_cache_keys)

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
    def prepare(self, records: list[ConsumerRecord]) -> Batch:
        steps = self._prepare(records)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    async def prepare_async(self, records: list[ConsumerRecord]) -> Batch:
        """``prepare``, giving the event loop a turn every few hundred records so that the previous
        batch's delivery (Kafka acks, the ClickHouse insert thread) proceeds meanwhile."""
        steps = self._prepare(records)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            await asyncio.sleep(0)

    def _prepare(self, records: list[ConsumerRecord]) -> Generator[None, None, Batch]:
        notifications: list[Notification] = []
        out = Normalised()
        offsets: dict[Any, int] = {}
        serializer = self.serializer
        for start in range(0, len(records), _STEP):
            for rec in records[start:start + _STEP]:
                tp = (rec.topic, rec.partition)
                offsets[tp] = max(offsets.get(tp, -1), rec.offset + 1)
                try:
                    notifications.append(decode_envelope(rec.value, rec.topic, rec.partition, rec.offset, serializer))
                except NormaliseError as exc:
                    bad = Notification(f"{rec.topic}:{rec.partition}:{rec.offset}", int(time.time() * 1_000_000),
                                       "", "", "", "", rec.value or b"", rec.topic, rec.partition, rec.offset)
                    out.failures.append(Failure(bad, -1, "decode", exc.reason, str(exc)))
            yield
        for start in range(0, len(notifications), _STEP):
            normalise(notifications[start:start + _STEP], out)
            yield
        settings = self.settings
        note = Enriched()
        cdrs, events, statuses = out.cdrs, out.events, out.statuses
        for row in cdrs:
            enrich_cdr(row, note)
        for row in events:
            enrich_event(row, note)
        for row in statuses:
            enrich_status(row, note)
        yield
        m = self.metrics
        m.received.inc(len(records))
        for name in out.invalid:
            m.invalid_values.labels(name).inc()
        for name in note.unknown_codes:
            m.unknown_codes.labels(name).inc()
        if note.inconsistent_timestamps:
            m.inconsistent_timestamps.inc(note.inconsistent_timestamps)
        tables = {"cdrs": cdrs, "call_events": events, "number_status": statuses}
        encoded: dict[str, dict[int, Message]] = {}
        conflicts: list[dict[str, Any]] = []
        encode = self.producer is not None and settings.republish
        for table, rows in tables.items():
            assign_keys(table, rows)  # keys use the numbers as received ...
            in_batch = recent = 0
            if table == "cdrs":
                rows, in_batch, twins = unique_cdrs(rows)
                for row, kept in twins:  # one key, other content: the first stays, the other is recorded
                    conflicts.append(conflict_row(protect_numbers(row, settings), kept["notification_id"],
                                                  protect_numbers(kept, settings)["raw"]))
            if table != "number_status":  # a status repeats a state legitimately: see _resolve
                if table != "cdrs":
                    rows, in_batch = unique_in_batch(rows)
                rows, recent = self.recent.split(table, rows)
            protected: list[dict[str, Any]] = []
            for start in range(0, len(rows), _STEP):
                protected += [protect_numbers(r, settings) for r in rows[start:start + _STEP]]  # ... stored/
                yield  # published protected
            tables[table] = protected
            if in_batch + recent:
                m.discarded.labels("duplicate").inc(in_batch + recent)
            if encode:  # the downstream records, off the delivery's path
                encoded[table] = {}
                for start in range(0, len(protected), _STEP):
                    encoded[table].update(messages(table, protected[start:start + _STEP]))
                    yield
        return Batch(notifications, tables, out.failures, offsets, len(records), messages=encoded, conflicts=conflicts)

    # --- I/O part ---------------------------------------------------------------------------
    async def deliver(self, batch: Batch) -> None:
        """Store, then publish (the runner commits after this returns); raises retriable errors
        (``StoreUnavailable``, ``BrokerUnavailable``) without losing anything: each step records its
        progress on the batch, so calling it again repeats only what did not happen."""
        if not batch.stored:
            await self._store(batch)
        if not batch.published:
            await self._publish(batch)
        if batch.failures:
            await self._quarantine(batch.failures)
            batch.failures = []
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
        await self._resolve(batch)
        wanted = {t: [r["dedup_key"] for r in batch.tables[t]] for t in ROW_TABLES if batch.tables[t]}
        stored = await asyncio.to_thread(sink.stored_notifications, wanted)  # a retriable error: nothing done
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
        results = await asyncio.to_thread(load_all)  # one thread hop; a retriable error aborts the rest
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
            exclude = [n.id for n in batch.notifications]  # as if this batch had not been stored before
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
            if table != "number_status":
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
                    producer.send(topic, self.serializer.reframe(dead_letter(f), topic), f.notification.id.encode(), [])
                await producer.flush()  # BrokerUnavailable when any was not acknowledged
        if rows:
            await asyncio.to_thread(self.sink.insert, "failed_events", rows)
        for f in failures:
            self.metrics.errors.labels(f.stage).inc()
        self.metrics.discarded.labels("failed").inc(len(rows))

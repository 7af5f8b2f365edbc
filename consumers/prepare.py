"""The consumer's CPU step: raw Kafka records in, typed rows and failures out. No I/O, no metrics.

    decode -> parse -> normalise -> enrich -> keys -> dedupe (batch, recent keys) -> protect -> encode

The consumer (``consumers.pipeline``), ``callstream reconcile`` and the tests all call ``prepare``;
delivering the result (look up stored keys, publish, insert, commit) is the pipeline's business.
What outlives one batch (the recent-key cache) is passed in as ``State``; legs and status keys need the
stored history and are the deliverer's (``Pipeline._resolve``);
what a batch noticed (unknown codes, invalid values, duplicates) comes back in ``Prepared.notes`` for
the caller to count, and the time each stage took in ``Prepared.seconds``.

    state = State.for_settings(settings)
    prepared = prepare(records, settings, state)      # or: steps = prepare_steps(...), next(steps) ...
    prepared.tables["cdrs"], prepared.failures
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from consumers.decode import Notification, decode_envelope
from consumers.dedupe import RecentKeys, assign_keys, conflict_row, unique_cdrs, unique_in_batch
from consumers.enrich import Enriched, enrich_rows
from consumers.normalise import Failure, Normalised, normalise_body, parse_body
from consumers.protect import protect_numbers
from consumers.republish import Message, messages
from core.errors import NormaliseError
from core.settings import Settings
from schemas import ROW_TABLES
from schemas.serde import Serializer

STAGES = ("decode", "parse", "normalise", "enrich", "keys", "dedupe", "protect", "encode")
_STEP = 500  # records or rows between two yields of prepare_steps


class RawRecord(Protocol):
    """What ``prepare`` reads of a Kafka record (aiokafka's ``ConsumerRecord`` has it)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass
class State:
    """What outlives one batch: keys loaded recently (``recent.add`` is the deliverer's, once stored)."""

    recent: RecentKeys = field(default_factory=lambda: RecentKeys(0))

    @classmethod
    def for_settings(cls, settings: Settings) -> State:
        return cls(RecentKeys(settings.dedup_cache_keys, settings.dedup_cache_bytes))


@dataclass
class Notes:
    """What a batch noticed, for the caller's counters."""

    invalid_values: list[str] = field(default_factory=list)  # field names, one per bad value
    unknown_codes: list[str] = field(default_factory=list)  # field names, one per unknown code
    inconsistent_timestamps: int = 0
    duplicates: int = 0  # rows dropped as seen in this batch or recently


@dataclass
class Prepared:
    """The rows of one poll ready to deliver: per table, with ``dedup_key``, protected; the failures;
    the offsets to commit once delivered; the downstream records when asked for (``encode``)."""

    notifications: list[Notification]
    tables: dict[str, list[dict[str, Any]]]
    failures: list[Failure]
    offsets: dict[Any, int]  # (topic, partition) -> next offset to commit
    received: int
    messages: dict[str, dict[int, Message]] = field(default_factory=dict)  # table -> dedup_key -> record
    conflicts: list[dict[str, Any]] = field(default_factory=list)  # cdr_conflicts rows (same key, other content)
    notes: Notes = field(default_factory=Notes)
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> CPU-bound wall time


def decode_failure(rec: RawRecord, exc: NormaliseError) -> Failure:
    """The failure of a record that is not a raw envelope (quarantined under its Kafka position)."""
    bad = Notification(f"{rec.topic}:{rec.partition}:{rec.offset}", int(time.time() * 1_000_000),
                       "", "", "", "", rec.value or b"", rec.topic, rec.partition, rec.offset)
    return Failure(bad, -1, "decode", exc.reason, str(exc))


def prepare(
    records: Sequence[RawRecord], settings: Settings, state: State | None = None, *,
    serializer: Serializer | None = None, encode: bool = False,
) -> Prepared:
    """Prepare a batch in one go (see ``prepare_steps``)."""
    steps = prepare_steps(records, settings, state, serializer=serializer, encode=encode)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


def prepare_notifications(
    notifications: list[Notification], settings: Settings, state: State | None = None, *, encode: bool = False,
) -> Prepared:
    """``prepare`` from decoded envelopes (no offsets to commit)."""
    prepared = Prepared([], {}, [], {}, 0)
    steps = _rows(notifications, settings, state or State(), encode, prepared, time.perf_counter)
    while True:
        try:
            next(steps)
        except StopIteration:
            return prepared


def prepare_steps(
    records: Sequence[RawRecord], settings: Settings, state: State | None = None, *,
    serializer: Serializer | None = None, encode: bool = False,
) -> Generator[None, None, Prepared]:
    """``prepare`` as a generator that yields every few hundred records or rows (so that an event loop
    can run the previous batch's delivery meanwhile); its return value is the ``Prepared`` batch.
    ``serializer`` reads Confluent-framed envelopes (its writer schemas fetched beforehand)."""
    clock = time.perf_counter
    state = state if state is not None else State()
    notifications: list[Notification] = []
    prepared = Prepared(notifications, {}, [], {}, len(records))
    offsets = prepared.offsets
    started = clock()
    for start in range(0, len(records), _STEP):
        for rec in records[start:start + _STEP]:
            tp = (rec.topic, rec.partition)
            offsets[tp] = max(offsets.get(tp, -1), rec.offset + 1)
            try:
                notifications.append(decode_envelope(rec.value, rec.topic, rec.partition, rec.offset, serializer))
            except NormaliseError as exc:
                prepared.failures.append(decode_failure(rec, exc))
        now = clock()
        prepared.seconds["decode"] = prepared.seconds.get("decode", 0.0) + now - started
        yield
        started = clock()
    yield from _rows(notifications, settings, state, encode, prepared, clock)
    return prepared


def _rows(
    notifications: list[Notification], settings: Settings, state: State, encode: bool, prepared: Prepared,
    clock: Any,
) -> Generator[None, None, None]:
    seconds = prepared.seconds
    notes = prepared.notes

    def lap(stage: str, since: float) -> float:
        now = clock()
        seconds[stage] = seconds.get(stage, 0.0) + now - since
        return now

    out = Normalised(failures=prepared.failures, invalid=notes.invalid_values)
    for start in range(0, len(notifications), _STEP):
        began = clock()
        parsed: list[tuple[Notification, Any]] = []
        for n in notifications[start:start + _STEP]:
            try:
                parsed.append((n, parse_body(n)))
            except NormaliseError as exc:
                out.failures.append(Failure(n, -1, "normalise", exc.reason, str(exc)))
        began = lap("parse", began)
        for n, body in parsed:
            try:
                normalise_body(n, body, out)
            except NormaliseError as exc:
                out.failures.append(Failure(n, -1, "normalise", exc.reason, str(exc)))
        lap("normalise", began)
        yield
    began = clock()
    note = Enriched(unknown_codes=notes.unknown_codes)
    enrich_rows(out.cdrs, out.events, out.statuses, note)
    notes.inconsistent_timestamps += note.inconsistent_timestamps
    lap("enrich", began)
    yield
    tables = prepared.tables
    by_table = {"cdrs": out.cdrs, "call_events": out.events, "number_status": out.statuses}
    out.cdrs, out.events, out.statuses = [], [], []  # one copy of the rows at a time: the table's list
    for table in ROW_TABLES:
        rows = by_table.pop(table)
        began = clock()
        assign_keys(table, rows)  # keys use the numbers as received ...
        began = lap("keys", began)
        in_batch = recent = 0
        if table == "cdrs":
            rows, in_batch, twins = unique_cdrs(rows)
            for row, kept in twins:  # one key, other content: the first stays, the other is recorded
                prepared.conflicts.append(conflict_row(protect_numbers(row, settings), kept["notification_id"],
                                                       protect_numbers(kept, settings)["raw"]))
        elif table == "call_events":
            rows, in_batch = unique_in_batch(rows)
        if table != "number_status":  # a status repeats a state legitimately: see Pipeline._resolve
            rows, recent = state.recent.split(table, rows)
        notes.duplicates += in_batch + recent
        lap("dedupe", began)
        for start in range(0, len(rows), _STEP):
            began = clock()
            for i in range(start, min(start + _STEP, len(rows))):
                protect_numbers(rows[i], settings, copy=False)  # ... stored/published protected
            lap("protect", began)
            yield
        tables[table] = rows
        if encode and table != "number_status":  # the downstream records, off the delivery's path (a
            # status key is final only once the deliverer saw the number's stored history)
            encoded: dict[int, Message] = {}
            for start in range(0, len(rows), _STEP):
                began = clock()
                encoded.update(messages(table, rows[start:start + _STEP]))
                lap("encode", began)
                yield
            prepared.messages[table] = encoded


def drop_recent(prepared: Prepared, state: State) -> None:
    """The recent-key step of a batch prepared without this process's ``State`` (by a
    ``consumers.worker.PrepareWorker``): drop the rows whose key this process loaded recently."""
    for table in ("cdrs", "call_events"):  # a status repeats a state legitimately: see Pipeline._resolve
        rows, known = state.recent.split(table, prepared.tables.get(table, []))
        if not known:
            continue
        prepared.tables[table] = rows
        encoded = prepared.messages.get(table)
        if encoded:
            kept = {row["dedup_key"] for row in rows}
            prepared.messages[table] = {key: message for key, message in encoded.items() if key in kept}
        prepared.notes.duplicates += known

"""``callstream reconcile``: show, per hour and app, that every accepted push reached the warehouse.

For a time window it compares three things:

- accepted: the raw topic, scanned with a throwaway consumer (no group: assign + ``offsets_for_times``);
  each envelope goes through the consumer's own CPU step (``consumers.prepare``: normalise, enrich,
  dedup keys), so *expected* is the number of distinct business records, not of pushes;
- loaded: those dedup keys present in ``cdrs`` / ``call_events`` / ``number_status``;
- quarantined: records of those pushes in ``failed_events`` (and the dead-letter topic's count).

A record that is accepted but neither loaded nor quarantined is *missing*; ``count() -
uniqExact(dedup_key)`` of a table is its *duplicates*. Pushes newer than ``grace_s`` are still in
flight and are left out. Exit code 1 when anything is missing or duplicated.

    report = asyncio.run(reconcile(settings, since, until, grace_s=10))
    print(report.table()); assert report.ok
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from callstream.sql import run_sql
from consumers.decode import decode_envelope
from consumers.dedupe import status_key
from consumers.prepare import State, prepare_notifications
from core.credentials import read_stack_file
from core.errors import NormaliseError
from core.kafka import consumer_kwargs
from core.settings import Settings
from schemas.avro_codec import decode

log = logging.getLogger(__name__)

TABLES = ("cdrs", "call_events", "number_status")
KEY_CHUNK = 5_000
COLUMNS = ("hour", "app_key", "table", "accepted_notifications", "expected_records", "loaded", "quarantined",
           "missing", "duplicates")


def table_of(event_type: str) -> str:
    """The good table a push of ``event_type`` feeds."""
    return {"fee": "cdrs", "numStatus": "number_status"}.get(event_type, "call_events")


@dataclass
class ReconcileRow:
    hour: datetime
    app_key: str
    table: str
    accepted_notifications: int = 0
    expected_records: int = 0
    loaded: int = 0
    quarantined: int = 0
    missing: int = 0
    duplicates: int = 0


@dataclass
class ReconcileReport:
    since: datetime
    until: datetime
    rows: list[ReconcileRow] = field(default_factory=list)
    raw_records: int = 0
    dead_letters: int = 0
    dead_letters_edge: int = 0
    missing_keys: dict[str, list[int]] = field(default_factory=dict)

    def total(self, column: str, table: str | None = None) -> int:
        return sum(getattr(r, column) for r in self.rows if table is None or r.table == table)

    @property
    def ok(self) -> bool:
        return self.total("missing") == 0 and self.total("duplicates") == 0

    def table(self) -> str:
        """The report as an aligned text table with a totals line."""
        lines = [[r.hour.strftime("%Y-%m-%d %H:00"), r.app_key or "-", r.table]
                 + [str(getattr(r, c)) for c in COLUMNS[3:]] for r in self.rows]
        lines.append(["total", "", ""] + [str(self.total(c)) for c in COLUMNS[3:]])
        header = list(COLUMNS)
        widths = [max(len(x) for x in col) for col in zip(header, *lines, strict=False)]
        out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
        out += ["  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)) for line in lines]
        out.append(f"window {self.since.isoformat()} .. {self.until.isoformat()}: raw records {self.raw_records}, "
                   f"dead letters {self.dead_letters} (edge refusals {self.dead_letters_edge})")
        out.append("OK: every accepted record is loaded or quarantined, once" if self.ok
                   else "GAP: records accepted but neither loaded nor quarantined, or duplicated rows")
        return "\n".join(out)


# --- Kafka scan --------------------------------------------------------------------------------
async def scan_topic(settings: Settings, topic: str, since: datetime, until: datetime,
                     timeout_s: float = 120.0) -> list[tuple[int, int, int, bytes | None]]:
    """``(partition, offset, timestamp_ms, value)`` of the records of ``topic`` produced in ``[since, until)``.

    The end of each partition is the high watermark of the fetch responses (ListOffsets "latest" is not
    trusted: the embedded broker answers the last batch's base offset there).
    """
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings, group_id=None, client_id="callstream-reconcile"))
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()  # what consumer.topics() does, keeping partitions
        partitions = cluster.partitions_for_topic(topic)
        if not partitions:
            return []
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        starts = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in tps})
        until_ms = int(until.timestamp() * 1000)
        pending: set[TopicPartition] = set()
        for tp in tps:
            found = starts.get(tp)
            if found is not None:  # None: nothing was produced to this partition since ``since``
                consumer.seek(tp, found.offset)
                pending.add(tp)
        out: list[tuple[int, int, int, bytes | None]] = []
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} took longer than {timeout_s:.0f}s")
            batch = await consumer.getmany(*pending, timeout_ms=300)
            for tp, records in batch.items():
                for rec in records:
                    if rec.timestamp < until_ms:
                        out.append((tp.partition, rec.offset, rec.timestamp, rec.value))
            for tp in list(pending):
                high = consumer.highwater(tp)
                if high is not None and await consumer.position(tp) >= high:
                    pending.discard(tp)
        return out
    finally:
        await consumer.stop()


# --- expected records --------------------------------------------------------------------------
@dataclass
class _Expected:
    notifications: dict[tuple[datetime, str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    keys: dict[tuple[datetime, str, str], set[int]] = field(default_factory=lambda: defaultdict(set))
    # dedup key -> the (notification id, record index) pairs that carry it
    carriers: dict[int, list[tuple[str, int]]] = field(default_factory=lambda: defaultdict(list))
    failures: dict[tuple[datetime, str, str], set[tuple[str, int]]] = field(default_factory=lambda: defaultdict(set))


def _hour(received_at_us: int) -> datetime:
    moment = datetime.fromtimestamp(received_at_us / 1_000_000, UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


def expected_records(settings: Settings, values: Iterable[bytes | None]) -> _Expected:
    """Run each raw record through the consumer's own CPU step (``consumers.prepare``: decode,
    normalise, enrich, dedup keys, protection) and collect its dedup keys per hour/app/table.
    One push at a time, so that a record repeated in several pushes counts for each of them."""
    state = State()  # no recent keys; voice legs as the consumer sees them, in topic order
    exp = _Expected()
    for value in values:
        try:
            n = decode_envelope(value)
        except NormaliseError:
            continue  # not an envelope: the consumer quarantines it under its own id
        batch = prepare_notifications([n], settings, state)
        group = (_hour(n.received_at_us), n.app_key, table_of(n.event_type))
        exp.notifications[group].add(n.id)
        for table, rows in batch.tables.items():
            for row in rows:
                exp.keys[group[:2] + (table,)].add(row["dedup_key"])
                exp.carriers[row["dedup_key"]].append((n.id, int(row["record_index"])))
        for failure in batch.failures:
            exp.failures[group].add((n.id, failure.record_index))
    return exp


# --- store queries -----------------------------------------------------------------------------
def _rows(settings: Settings, sql: str, parameters: dict[str, Any] | None = None) -> list[list[Any]]:
    text = run_sql(settings, sql, "JSONCompactEachRow", parameters=parameters).decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _chunks(values: list[Any], size: int = KEY_CHUNK) -> Iterable[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def stored_keys(settings: Settings, table: str, keys: Iterable[int]) -> set[int]:
    """The ``keys`` found in ``table``. An X-number status is expected under its state key and is
    accounted for when that state is stored for the number (as its own row or as a later change)."""
    db = settings.clickhouse_database
    found: set[int] = set()
    for part in _chunks(sorted(set(keys))):
        sql = f"SELECT DISTINCT dedup_key FROM {db}.{table} WHERE dedup_key IN {{keys:Array(UInt64)}}"
        found.update(int(r[0]) for r in _rows(settings, sql, {"keys": part}))
    if table == "number_status":
        states = _rows(settings, f"SELECT DISTINCT number, status, cause FROM {db}.number_status")
        found |= {status_key({"number": n, "status": s, "cause": c}) for n, s, c in states} & set(keys)
    return found


def failed_records(settings: Settings, ids: Iterable[str]) -> set[tuple[str, int]]:
    """``(notification_id, record_index)`` of the quarantined records of these pushes."""
    db = settings.clickhouse_database
    found: set[tuple[str, int]] = set()
    for part in _chunks(sorted(set(ids))):
        sql = (f"SELECT DISTINCT notification_id, record_index FROM {db}.failed_events "
               "WHERE notification_id IN {ids:Array(String)}")
        found.update((str(r[0]), int(r[1])) for r in _rows(settings, sql, {"ids": part}))
    return found


def duplicate_counts(settings: Settings, since: datetime, until: datetime) -> dict[tuple[datetime, str, str], int]:
    """``count() - uniqExact(dedup_key)`` per hour of receipt, app and table, for rows received in the window."""
    db = settings.clickhouse_database
    out: dict[tuple[datetime, str, str], int] = {}
    lo, hi = since.strftime("%Y-%m-%d %H:%M:%S.%f"), until.strftime("%Y-%m-%d %H:%M:%S.%f")
    for table in TABLES:
        sql = (f"SELECT toUnixTimestamp(toStartOfHour(received_at)), app_key, count() - uniqExact(dedup_key) "
               f"FROM {db}.{table} WHERE received_at >= {{lo:DateTime64(6, 'UTC')}} "
               "AND received_at < {hi:DateTime64(6, 'UTC')} GROUP BY 1, 2")
        for hour, app, dups in _rows(settings, sql, {"lo": lo, "hi": hi}):
            if int(dups):
                out[(datetime.fromtimestamp(int(hour), UTC), str(app), table)] = int(dups)
    return out


# --- the reconciliation ------------------------------------------------------------------------
def _in_window(records: list[tuple[int, int, int, bytes | None]], since_us: int, until_us: int) -> list[bytes | None]:
    out = []
    for _, _, _, value in records:
        try:
            n = decode_envelope(value)
        except NormaliseError:
            continue
        if since_us <= n.received_at_us < until_us:
            out.append(value)
    return out


def _dead_counts(records: list[tuple[int, int, int, bytes | None]]) -> tuple[int, int]:
    edge = 0
    for _, _, _, value in records:
        try:
            name, record = decode(value or b"")
        except Exception:  # noqa: BLE001 - a foreign record on the dead topic still counts
            continue
        if name == "dead_letter" and record.get("stage") == "edge":
            edge += 1
    return len(records), edge


async def reconcile(settings: Settings, since: datetime, until: datetime, grace_s: float = 10.0) -> ReconcileReport:
    """Compare accepted, loaded and quarantined records for pushes received in ``[since, until)``.

    ``until`` is clamped to ``now - grace_s`` so records still on their way are not reported missing.
    """
    until = min(until, datetime.now(UTC) - timedelta(seconds=grace_s))
    report = ReconcileReport(since, until)
    if until <= since:
        return report
    raw = await scan_topic(settings, settings.raw_topic, since - timedelta(seconds=5), until + timedelta(seconds=5))
    dead = await scan_topic(settings, settings.dead_topic, since, until)
    report.raw_records = len(raw)
    report.dead_letters, report.dead_letters_edge = _dead_counts(dead)
    values = _in_window(raw, int(since.timestamp() * 1e6), int(until.timestamp() * 1e6))
    exp = await asyncio.to_thread(expected_records, settings, values)

    all_keys: dict[str, set[int]] = defaultdict(set)
    for (_, _, table), keys in exp.keys.items():
        all_keys[table] |= keys
    loaded = {t: await asyncio.to_thread(stored_keys, settings, t, keys) for t, keys in all_keys.items()}
    ids = {i for group in exp.notifications.values() for i in group}
    failed = await asyncio.to_thread(failed_records, settings, ids)
    dups = await asyncio.to_thread(duplicate_counts, settings, since, until)

    groups = set(exp.notifications) | set(exp.keys) | set(dups)
    for group in sorted(groups, key=lambda g: (g[0], g[1], g[2])):
        hour, app, table = group
        row = ReconcileRow(hour, app, table, accepted_notifications=len(exp.notifications.get(group, ())),
                           duplicates=dups.get(group, 0))
        keys = exp.keys.get(group, set())
        fails = exp.failures.get(group, set())
        row.expected_records = len(keys) + len(fails)
        table_loaded = loaded.get(table, set())
        missing: list[int] = []
        for key in keys:
            if key in table_loaded:
                row.loaded += 1
            elif any(carrier in failed or (carrier[0], -1) in failed for carrier in exp.carriers[key]):
                row.quarantined += 1
            else:
                missing.append(key)
        fails_found = sum(1 for f in fails if f in failed or (f[0], -1) in failed)
        row.quarantined += fails_found
        row.missing = len(missing) + len(fails) - fails_found
        if missing:
            report.missing_keys.setdefault(table, []).extend(missing)
        report.rows.append(row)
    return report


class ReconcileMetrics:
    """``callstream_reconcile_missing_records{table}`` and ``..._duplicate_records{table}`` gauges."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.missing = Gauge("callstream_reconcile_missing_records", "Records accepted by the edge but neither "
                             "loaded nor quarantined (last reconciliation)", ["table"], registry=registry)
        self.duplicates = Gauge("callstream_reconcile_duplicate_records", "Rows beyond one per dedup key "
                                "(last reconciliation)", ["table"], registry=registry)
        self.last_run = Gauge("callstream_reconcile_last_run_timestamp_seconds", "End of the last reconciliation",
                              registry=registry)

    def update(self, report: ReconcileReport) -> None:
        for table in TABLES:
            self.missing.labels(table).set(report.total("missing", table))
            self.duplicates.labels(table).set(report.total("duplicates", table))
        self.last_run.set(time.time())


def stack_settings(settings: Settings) -> Settings:
    """Settings completed from a running ``callstream up`` on the data dir (broker address, database)."""
    info = read_stack_file(settings.data_dir) or {}
    update: dict[str, Any] = {}
    if not settings.kafka_bootstrap and info.get("kafka_bootstrap"):
        update["kafka_bootstrap"] = info["kafka_bootstrap"]
    if info.get("clickhouse_database"):
        update["clickhouse_database"] = info["clickhouse_database"]
    return settings.model_copy(update=update) if update else settings


def main(args: argparse.Namespace, settings: Settings) -> int:
    settings = stack_settings(settings)
    settings.require_kafka()
    grace = getattr(args, "grace_s", None)
    grace_s = 10.0 if grace is None else float(grace)
    port = getattr(args, "metrics_port", None)
    metrics = ReconcileMetrics(CollectorRegistry()) if port else None
    if metrics is not None and port:
        start_http_server(int(port), addr="127.0.0.1", registry=metrics.registry)
    every_s = float(getattr(args, "every_s", None) or 60.0)
    while True:
        until = datetime.now(UTC)
        report = asyncio.run(reconcile(settings, until - timedelta(hours=args.hours), until, grace_s))
        print(report.table(), flush=True)
        if metrics is None:
            return 0 if report.ok else 1
        metrics.update(report)
        time.sleep(every_s)

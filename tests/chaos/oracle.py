"""The one oracle of the chaos matrix.

Given every push and the answers it got:
- every record of a push that got a 200 is in ClickHouse exactly once
  (rows with those keys: count() = uniqExact(dedup_key) = expected distinct records);
- no table has a duplicate key at all (the test's database holds only this run's rows);
- nothing that only ever got a 4xx is in the good tables;
- every 4xx answer has its dead-letter record (edge-stage records on the dead topic = 4xx answers).

Expected keys come from the consumers' own normalise/dedup-key functions (via ``callstream.reconcile``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from callstream.reconcile import expected_records, scan_topic
from core import store
from core.kafka import consumer_kwargs
from core.settings import Settings
from ingest.envelope import Receipt, raw_record
from ingest.notification import classify
from schemas import ROW_TABLES
from schemas.avro_codec import decode
from tests.chaos.harness import DriveResult, Outcome


def expected_keys(settings: Settings, outcomes: list[Outcome]) -> dict[str, set[int]]:
    """Dedup keys per table of the records carried by these pushes (as the edge would envelope them)."""
    now = datetime.now(UTC)
    values = []
    for o in outcomes:
        push = o.push
        receipt = Receipt(uuid.uuid4().hex, now, push.service, push.path, "application/json", "127.0.0.1")
        values.append(raw_record(receipt, push.body, classify(push.service, push.body).event_type, push.app_key,
                                 "aksk"))
    exp = expected_records(settings, values)
    out: dict[str, set[int]] = {t: set() for t in ROW_TABLES}
    for (_, _, table), keys in exp.keys.items():
        out[table] |= keys
    return out


def _key_counts(settings: Settings, table: str, keys: set[int]) -> tuple[int, int]:
    """(rows, distinct keys) of ``table`` among ``keys``."""
    client = store.connect(settings)
    rows = distinct = 0
    ordered = sorted(keys)
    for start in range(0, len(ordered), 5000):
        part = ",".join(map(str, ordered[start:start + 5000]))
        got = store.query_rows(client, f"SELECT count(), uniqExact(dedup_key) FROM "
                                       f"{settings.clickhouse_database}.{table} WHERE dedup_key IN ({part})")
        rows += int(got[0][0])
        distinct += int(got[0][1])
    return rows, distinct


def _table_duplicates(settings: Settings, table: str) -> int:
    client = store.connect(settings)
    got = store.query_rows(client, f"SELECT count() - uniqExact(dedup_key) FROM {settings.clickhouse_database}.{table}")
    return int(got[0][0])


async def edge_dead_letters(settings: Settings) -> int:
    since = datetime.now(UTC) - timedelta(hours=2)
    records = await scan_topic(settings, settings.dead_topic, since, datetime.now(UTC) + timedelta(minutes=5))
    count = 0
    for _, _, _, value in records:
        name, record = decode(value or b"")
        if name == "dead_letter" and record["stage"] == "edge":
            count += 1
    return count


async def consumer_drained(settings: Settings) -> bool:
    """The consumer group has committed every record of the raw topic."""
    records = await scan_topic(settings, settings.raw_topic, datetime(2000, 1, 1, tzinfo=UTC),
                               datetime.now(UTC) + timedelta(days=1))
    ends: dict[int, int] = {}
    for partition, offset, _, _ in records:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings, client_id="proof-lag"))
    await consumer.start()
    try:
        for partition, end in ends.items():
            committed = await consumer.committed(TopicPartition(settings.raw_topic, partition))
            if committed is None or committed < end:
                return False
        return True
    finally:
        await consumer.stop()


async def wait_drained(settings: Settings, timeout_s: float) -> float:
    """Wait until the consumer group caught up; returns the seconds it took."""
    started = time.monotonic()
    while not await consumer_drained(settings):
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"the consumer did not catch up within {timeout_s:.0f}s")
        await asyncio.sleep(0.2)
    return time.monotonic() - started


@dataclass
class Verdict:
    expected: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    distinct: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    leaked_refused: dict[str, int] = field(default_factory=dict)
    refused_answers: int = 0
    edge_dead_letters: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def figures(self) -> dict[str, Any]:
        return {"expected_records": self.expected, "stored_rows": self.rows, "duplicates": self.duplicates,
                "refused_answers": self.refused_answers, "edge_dead_letters": self.edge_dead_letters}


def judge(settings: Settings, result: DriveResult, edge_dead: int, *, dead_letters_exact: bool = True) -> Verdict:
    """Apply the oracle to the store as it is now (call after the consumer caught up)."""
    accepted = [o for o in result.outcomes if o.accepted]
    refused_only = [o for o in result.outcomes if o.refused and not o.accepted and not o.push.expect_ok]
    good = expected_keys(settings, accepted)
    maybe_good = expected_keys(settings, [o for o in result.outcomes if o.push.expect_ok])
    refused = expected_keys(settings, [o for o in refused_only if _parses(o)])
    v = Verdict()
    for table in ROW_TABLES:
        keys = good[table]
        v.expected[table] = len(keys)
        rows, distinct = _key_counts(settings, table, keys)
        v.rows[table], v.distinct[table] = rows, distinct
        if rows != len(keys) or distinct != len(keys):
            v.problems.append(f"{table}: {len(keys)} records got a 200, stored rows {rows}, distinct keys {distinct}")
        v.duplicates[table] = _table_duplicates(settings, table)
        if v.duplicates[table]:
            v.problems.append(f"{table}: {v.duplicates[table]} duplicate rows")
        leaked = refused[table] - maybe_good[table]
        leaked_rows = _key_counts(settings, table, leaked)[0] if leaked else 0
        v.leaked_refused[table] = leaked_rows
        if leaked_rows:
            v.problems.append(f"{table}: {leaked_rows} rows of pushes that were refused with a 4xx")
    v.refused_answers = sum(1 for o in result.outcomes for s in o.statuses if 400 <= s < 500)
    v.edge_dead_letters = edge_dead
    if dead_letters_exact and edge_dead != v.refused_answers:
        v.problems.append(f"{v.refused_answers} answers were 4xx but the dead topic holds {edge_dead} edge records")
    if not dead_letters_exact and edge_dead < v.refused_answers:
        v.problems.append(f"{v.refused_answers} answers were 4xx but only {edge_dead} edge dead letters")
    return v


def _parses(o: Outcome) -> bool:
    try:
        classify(o.push.service, o.push.body)
        return True
    except Exception:  # noqa: BLE001 - a body the edge cannot read carries no records
        return False

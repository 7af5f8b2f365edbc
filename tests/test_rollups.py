"""KPI rollups (schemas/clickhouse/0011_rollups.sql) on the real engine: exact, and never counted twice.

* Every public view read from the rollups equals, column by column and type by type, the same view
  computed from ``cdrs FINAL`` (the definitions of 0004_kpi_standards.sql), quantiles included.
* A retried insert (same ``insert_deduplication_token``), a re-push and a replay through the loader
  reach every rollup once; the engine setting that carries the token into the views is checked, and
  turning it off shows what it protects.
* ``migrate`` fills new rollups from the rows already stored; ``--rebuild-rollups`` is idempotent.
"""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from prometheus_client import CollectorRegistry

from bench.analytics import ROLLUPS, VIEWS, create_before_views, generate
from consumers.load import ClickHouseSink
from consumers.metrics import ConsumerMetrics
from consumers.pipeline import Pipeline
from core import store
from core.settings import Settings
from schemas.migrate import apply_migrations, discover, rebuild_rollups
from tests.test_views import CALLS, record

# rollup -> (how many CDRs it counted, how many the CDRs say it should have counted)
_COUNTED = {
    "rollup_hourly": ("sum(attempts)", "count()"),
    "rollup_by_number": ("sum(attempts)", "count()"),
    "rollup_by_binding": ("sum(attempts)", "countIf(subscription_id != '')"),
    "rollup_failures": ("sum(calls)", "countIf(answered = 0)"),
}


def counts(client: Any, db: str) -> dict[str, tuple[int, int]]:
    out = {}
    for rollup, (counted, expected) in _COUNTED.items():
        got = store.query_rows(client, f"SELECT {counted} FROM {db}.{rollup}")[0][0]
        want = store.query_rows(client, f"SELECT {expected} FROM {db}.cdrs FINAL")[0][0]
        out[rollup] = (int(got), int(want))
    return out


def pipeline(settings: Settings, client: Any) -> Pipeline:
    return Pipeline(settings, ClickHouseSink(client, settings.clickhouse_database), None,
                    ConsumerMetrics(CollectorRegistry()))


def view_rows(client: Any, db: str, view: str) -> tuple[list[tuple[str, str]], list[tuple[Any, ...]]]:
    columns = store.query_rows(client, f"DESCRIBE TABLE {db}.{view}")
    rows = store.query_rows(client, f"SELECT * FROM {db}.{view} ORDER BY ALL")
    return [(str(c[0]), str(c[1])) for c in columns], rows


def same_row(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    for x, y in zip(a, b, strict=True):
        if isinstance(x, float) and isinstance(y, float):
            if not (math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9) or (math.isnan(x) and math.isnan(y))):
                return False
        elif x != y:
            return False
    return True


def test_rollup_views_equal_the_views_over_cdrs_final(settings: Settings) -> None:
    client = store.connect(settings)
    apply_migrations(settings, client)
    db = settings.clickhouse_database
    generate(client, db, 30_000, days=3, apps=3, chunk=10_000)  # three inserts, unmerged rollup parts
    before = create_before_views(client, db)
    for view in VIEWS:
        columns, rows = view_rows(client, db, view)
        columns_before, rows_before = view_rows(client, before, view)
        assert columns == columns_before, view
        assert len(rows) == len(rows_before) > 0, view
        wrong = [(a, b) for a, b in zip(rows, rows_before, strict=True) if not same_row(a, b)]
        assert not wrong, f"{view}: {len(wrong)} rows differ, first {wrong[0]}"
    # the quantiles were compared above; make sure they were there to compare
    p95 = store.query_rows(client, f"SELECT count() FROM {db}.kpi_daily WHERE pdd_p95_seconds > 0")[0][0]
    assert p95 > 0


def test_retried_insert_reaches_every_rollup_once(settings: Settings) -> None:
    client = store.connect(settings)
    apply_migrations(settings, client)
    db = settings.clickhouse_database
    engine_default = store.query_rows(
        client, "SELECT value FROM system.settings WHERE name = 'deduplicate_blocks_in_dependent_materialized_views'"
    )
    assert engine_default == [("1",)]  # what carries the token into the views (set it on a server profile)
    batch = pipeline(settings, client).prepare([record(c, i, datetime(2024, 3, 13, tzinfo=UTC))
                                                for i, c in enumerate(CALLS)])
    sink = ClickHouseSink(client, db)
    rows = batch.tables["cdrs"]
    for _ in range(3):  # the first insert and two retries of it (same rows -> same token)
        sink.insert("cdrs", rows)
    assert store.query_rows(client, f"SELECT count() FROM {db}.cdrs")[0][0] == len(CALLS)
    assert all(got == want for got, want in counts(client, db).values()), counts(client, db)


def test_server_profile_keeps_view_deduplication_on() -> None:
    users = Path(__file__).resolve().parent.parent / "deploy" / "compose" / "clickhouse" / "users.xml"
    writer = ElementTree.parse(users).getroot().find("profiles/callstream_writer")
    assert writer is not None
    assert writer.findtext("deduplicate_blocks_in_dependent_materialized_views") == "1"


def test_without_view_deduplication_a_retry_counts_twice(settings: Settings) -> None:
    """The control experiment: the same retry with the setting off double-counts in the rollups."""
    client = store.connect(settings)
    apply_migrations(settings, client)
    db = settings.clickhouse_database
    batch = pipeline(settings, client).prepare([record(CALLS[0], 0, datetime(2024, 3, 13, tzinfo=UTC))])
    sink = ClickHouseSink(client, db)
    columns = [c for c in sink.columns("cdrs") if c in batch.tables["cdrs"][0]]
    data = [[row[c] for c in columns] for row in batch.tables["cdrs"]]
    off = {"insert_deduplication_token": "retry-1", "deduplicate_blocks_in_dependent_materialized_views": 0}
    with store.locked(client):
        for _ in range(2):
            client.insert(f"{db}.cdrs", data, column_names=columns, settings=off)
    assert store.query_rows(client, f"SELECT count() FROM {db}.cdrs")[0][0] == 1  # cdrs dropped the retry
    assert counts(client, db)["rollup_hourly"] == (2, 1)  # the rollup did not


def test_repush_and_replay_never_reach_a_rollup(settings: Settings) -> None:
    client = store.connect(settings)
    apply_migrations(settings, client)
    db = settings.clickhouse_database
    received = datetime(2024, 3, 13, tzinfo=UTC)
    records = [record(c, i, received) for i, c in enumerate(CALLS)]
    first = pipeline(settings, client)
    asyncio.run(first.deliver(first.prepare(records)))
    asyncio.run(first.deliver(first.prepare(records[:5])))  # the platform pushes again (same process)
    replay = pipeline(settings, client)  # a replay after a restart: only the store knows what is loaded
    asyncio.run(replay.deliver(replay.prepare([record(c, 100 + i, received) for i, c in enumerate(CALLS)])))
    assert store.query_rows(client, f"SELECT count() FROM {db}.cdrs")[0][0] == len(CALLS)
    assert all(got == want for got, want in counts(client, db).values()), counts(client, db)


def test_migrate_fills_rollups_from_stored_rows_and_rebuild_is_idempotent(settings: Settings) -> None:
    client = store.connect(settings)
    db = settings.clickhouse_database
    rollups = next(m for m in discover() if m.name == "rollups")
    assert rollups.label not in apply_migrations(settings, client, upto=rollups.version - 1)
    loader = pipeline(settings, client)
    asyncio.run(loader.deliver(loader.prepare([record(c, i, datetime(2024, 3, 13, tzinfo=UTC))
                                               for i, c in enumerate(CALLS)])))
    assert rollups.label in apply_migrations(settings, client)
    assert all(got == want > 0 for got, want in counts(client, db).values()), counts(client, db)
    daily = view_rows(client, db, "kpi_daily")
    for _ in range(2):
        # the KPI rollups, and the callouts by session (fed from call_events: tests/test_session_callouts.py)
        assert sorted(rebuild_rollups(settings, client)) == sorted(f"{db}.{r}" for r in (*ROLLUPS, "session_callouts"))
        assert view_rows(client, db, "kpi_daily") == daily
    assert all(got == want for got, want in counts(client, db).values())

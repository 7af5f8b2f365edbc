"""Background merges of the wide tables use the vertical algorithm (schemas/clickhouse/0013_merge_memory.sql)
and keep every row and value, on the real engine."""

from __future__ import annotations

from typing import Any

from bench.storage import raw_records
from core import store
from schemas.migrate import apply_migrations, discover
from tests.test_storage import load

TABLES = ("cdrs", "call_events", "failed_events")


def settings_of(client: Any, db: str, table: str) -> str:
    rows = store.query_rows(client, "SELECT create_table_query FROM system.tables "
                            "WHERE database = {db:String} AND name = {t:String}", {"db": db, "t": table})
    return str(rows[0][0])


def snapshot(client: Any, db: str, table: str) -> list[tuple[Any, ...]]:
    return store.query_rows(client, f"SELECT * EXCEPT (loaded_at) FROM {db}.{table} FINAL ORDER BY dedup_key")


def test_merges_are_vertical_and_keep_every_value(make_settings: Any) -> None:
    settings = make_settings(auth="off")
    client = store.connect(settings)
    db = settings.clickhouse_database
    merge_memory = next(m for m in discover() if m.name == "merge_memory")
    apply_migrations(settings, client, upto=merge_memory.version - 1)
    for table in TABLES:
        assert "vertical_merge_algorithm_min_rows_to_activate" not in settings_of(client, db, table)
    records, _ = raw_records(400, seed=11)
    with store.locked(client):
        for table in ("cdrs", "call_events"):
            client.command(f"SYSTEM STOP MERGES {db}.{table}")  # a part per batch, merged below
    load(settings, client, records[0::3])
    # up to 0013 only: a later migration's mutation (0019 materializes an index) waits for the merges stopped here
    assert merge_memory.label in apply_migrations(settings, client, upto=merge_memory.version)
    for table in TABLES:
        query = settings_of(client, db, table)
        assert "vertical_merge_algorithm_min_rows_to_activate = 1" in query, query
        assert "merge_max_block_size = 1024" in query, query
    load(settings, client, records[1::3])
    load(settings, client, records[2::3])
    before = {t: snapshot(client, db, t) for t in ("cdrs", "call_events")}
    assert all(before.values())
    parts = dict(store.query_rows(client, "SELECT table, count() FROM system.parts WHERE database = {db:String} "
                                  "AND active AND table IN ('cdrs', 'call_events') GROUP BY table", {"db": db}))
    assert min(parts.values()) > 1, parts  # something to merge
    with store.locked(client):
        for table in ("cdrs", "call_events"):
            client.command(f"SYSTEM START MERGES {db}.{table}")
            client.command(f"OPTIMIZE TABLE {db}.{table} FINAL")
    parts = dict(store.query_rows(client, "SELECT table, count() FROM system.parts WHERE database = {db:String} "
                                  "AND active AND table IN ('cdrs', 'call_events') GROUP BY table", {"db": db}))
    assert max(parts.values()) <= 2, parts  # one per partition (the records span at most two months)
    assert {t: snapshot(client, db, t) for t in before} == before

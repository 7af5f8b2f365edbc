"""Migrations: applied once, recorded, idempotent; templated for single node and ON CLUSTER."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from core import store
from core.settings import Settings
from schemas.migrate import BLOCKS_FILE, apply_migrations, blocks, discover, expand, main, placeholders, plan, render


def test_migrations_numbered_and_0003_left_for_views() -> None:
    migrations = discover()
    assert migrations[0].label == "0001_tables"
    assert len({m.version for m in migrations}) == len(migrations)


def test_apply_is_idempotent_and_recorded(settings: Settings) -> None:
    first = apply_migrations(settings)
    assert "0001_tables" in first
    assert apply_migrations(settings) == []
    client = store.connect(settings)
    db = settings.clickhouse_database
    tables = {r[0] for r in store.query_rows(client, f"SHOW TABLES FROM {db}")}
    assert {"cdrs", "call_events", "number_status", "failed_events", "schema_migrations"} <= tables
    versions = store.query_rows(client, f"SELECT version FROM {db}.schema_migrations FINAL ORDER BY version")
    assert versions[0][0] == 1
    sorting = store.query_rows(
        client, f"SELECT sorting_key FROM system.tables WHERE database = '{db}' AND name = 'cdrs'"
    )[0][0]
    assert sorting.replace(" ", "").endswith("dedup_key")


def test_retried_insert_with_same_token_is_a_noop(settings: Settings) -> None:
    apply_migrations(settings)
    client = store.connect(settings)
    db = settings.clickhouse_database
    cols = ["dedup_key", "notification_id", "record_index", "service", "received_at", "app_key", "call_time", "raw"]
    row = [7, "n1", 0, "voice", 1_700_000_000_000_000, "app", 1_700_000_000_000, "{}"]
    with store.locked(client):
        for _ in range(2):
            client.insert(f"{db}.cdrs", [row], column_names=cols, settings={"insert_deduplication_token": "t-1"})
    assert store.query_rows(client, f"SELECT count() FROM {db}.cdrs")[0][0] == 1


def test_cluster_rendering_keeps_macros() -> None:
    values = placeholders("callstream", "main")
    stmts = render(
        "-- comment\nCREATE TABLE {db}.x{on_cluster} (a UInt8) "
        "ENGINE = {engine_prefix}ReplacingMergeTree({engine_args}a) ORDER BY a;",
        values,
    )
    assert stmts == [
        "CREATE TABLE callstream.x ON CLUSTER main (a UInt8) ENGINE = ReplicatedReplacingMergeTree("
        "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}', a) ORDER BY a"
    ]
    with pytest.raises(ValueError, match="identifier"):
        placeholders("bad-name; DROP", "")


def test_dry_run_prints_statements(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(clickhouse_database="cs")
    args = argparse.Namespace(dry_run=True, cluster="prod")
    assert main(args, settings) == 0
    out = capsys.readouterr().out
    assert "CREATE TABLE IF NOT EXISTS cs.cdrs ON CLUSTER prod" in out
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', loaded_at)" in out
    assert all("{db}" not in s for _, stmts in plan(settings) for s in stmts)


def test_shared_blocks_expand_to_the_applied_text() -> None:
    """0011_rollups names its repeated KPI blocks once (blocks.sql); the expanded text is the one stores
    applied before, so its checksum is unchanged and no store sees a changed migration."""
    rollups = next(m for m in discover() if m.name == "rollups")
    assert rollups.checksum() == "3cfffdfc94c5959c"
    raw = rollups.path.read_text(encoding="utf-8")
    used = set(re.findall(r"^@([a-z0-9_]+)$", "\n".join(m.path.read_text(encoding="utf-8") for m in discover()),
                          re.MULTILINE))
    assert used == set(blocks()) and len(raw) < len(rollups.text()) / 2  # every block used, none left over
    assert "@" not in "".join(line for line in rollups.text().splitlines() if not line.startswith("--"))


def test_an_unknown_block_is_an_error_that_names_the_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "blocks.sql"
    path.write_text("-- @block a\n    x,\n    y\n\n-- @block b\nz\n", encoding="utf-8")
    assert blocks(path) == {"a": "    x,\n    y", "b": "z"}
    assert expand("SELECT\n@a\nFROM t", path) == "SELECT\n    x,\n    y\nFROM t"
    with pytest.raises(ValueError, match="@c: no such block in blocks.sql .blocks: a, b."):
        expand("@c", path)
    path.write_text("-- @block a\n1\n-- @block a\n2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="defined twice"):
        blocks(path)
    assert BLOCKS_FILE.exists()

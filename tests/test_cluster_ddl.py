"""Cluster DDL (schemas/cluster.py, `callstream migrate --cluster`): every statement goes through the real
ClickHouse parser (chDB ``formatQuery``), and a de-clustered copy is applied to chDB so the table/view
wiring (``*_local`` + the read/insert table over it) is checked against the real engine."""

from __future__ import annotations

import re

import pytest

from callstream.cli import main as cli_main
from core import store
from core.settings import Settings
from schemas import migrate
from schemas.cluster import REPLICA_PATH, cluster_statements, sharding_key


def _single_node(db: str) -> list[str]:
    statements: list[str] = []
    for migration in migrate.discover():
        statements += migrate.render(migration.text(), migrate.placeholders(db))
    return statements


def _format(settings: Settings, statement: str) -> str:
    client = store.connect(settings)
    rows = store.query_rows(client, "SELECT formatQuery({q:String})", {"q": statement})
    return str(rows[0][0])


def _merge_tree_tables(statements: list[str]) -> list[str]:
    names = []
    for stmt in statements:
        m = re.match(r"CREATE TABLE IF NOT EXISTS \w+\.(\w+)\s*\(.*ENGINE\s*=\s*\w*MergeTree", stmt, re.S)
        if m:
            names.append(m.group(1))
    return names


def test_every_cluster_statement_parses(settings: Settings) -> None:
    db = settings.clickhouse_database
    single = _single_node(db)
    clustered = cluster_statements(single, "prod", db)
    assert len(clustered) > len(single)
    for stmt in clustered:
        formatted = _format(settings, stmt)  # raises on a syntax error
        if re.match(r"(CREATE|ALTER|DROP|TRUNCATE|OPTIMIZE)\b", stmt):
            assert "ON CLUSTER prod" in formatted, stmt[:120]


def test_merge_tree_tables_become_replicated_local_plus_distributed(settings: Settings) -> None:
    db = settings.clickhouse_database
    single = _single_node(db)
    tables = _merge_tree_tables(single)
    assert {"cdrs", "call_events", "number_status", "failed_events"} <= set(tables)
    clustered = "\n;\n".join(cluster_statements(single, "prod", db))
    for table in tables:
        assert re.search(rf"CREATE TABLE IF NOT EXISTS {db}\.{table}_local ON CLUSTER prod\s*\(", clustered)
        key = ("cityHash64(session_id)" if table in ("cdrs", "call_events", "cdr_conflicts", "session_callouts")
               else "cityHash64(dedup_key)")
        if table.startswith("rollup_"):  # filled on each shard by its materialized views, never through it
            key = "rand()"
        assert (
            f"CREATE TABLE IF NOT EXISTS {db}.{table} ON CLUSTER prod AS {db}.{table}_local "
            f"ENGINE = Distributed(prod, {db}, {table}_local, {key})"
        ) in clustered
    assert clustered.count("ENGINE = Replicated") == len(tables)
    assert clustered.count(REPLICA_PATH) == len(tables)
    assert "non_replicated_deduplication_window" not in clustered
    assert "replicated_deduplication_window = 10000" in clustered


def test_alter_drop_and_materialized_views_target_the_right_tables() -> None:
    out = cluster_statements(
        [
            "CREATE TABLE IF NOT EXISTS d.t (session_id String, n UInt8) ENGINE = MergeTree ORDER BY n",
            "CREATE TABLE d.agg (n UInt8, c UInt64) ENGINE = SummingMergeTree(c) ORDER BY n",
            "ALTER TABLE d.t ADD COLUMN IF NOT EXISTS x String",
            "ALTER TABLE d.t DELETE WHERE n = 0",
            "CREATE MATERIALIZED VIEW IF NOT EXISTS d.mv TO d.agg AS SELECT n, count() AS c FROM d.t GROUP BY n",
            "CREATE VIEW d.v AS SELECT n FROM d.t FINAL",
            "DROP TABLE IF EXISTS d.t",
            "INSERT INTO d.t (session_id, n) VALUES ('a', 1)",
        ],
        "c1",
        "d",
    )
    assert out[0].startswith("CREATE TABLE IF NOT EXISTS d.t_local ON CLUSTER c1 (")
    assert f"ENGINE = ReplicatedMergeTree({REPLICA_PATH})" in out[0]
    assert f"ENGINE = ReplicatedSummingMergeTree({REPLICA_PATH}, c)" in out[2]
    assert out[4:7] == [
        "ALTER TABLE d.t_local ON CLUSTER c1 ADD COLUMN IF NOT EXISTS x String",
        "ALTER TABLE d.t ON CLUSTER c1 ADD COLUMN IF NOT EXISTS x String",
        "ALTER TABLE d.t_local ON CLUSTER c1 DELETE WHERE n = 0",
    ]
    assert out[7] == (
        "CREATE MATERIALIZED VIEW IF NOT EXISTS d.mv ON CLUSTER c1 TO d.agg_local "
        "AS SELECT n, count() AS c FROM d.t_local GROUP BY n"
    )
    assert out[8] == "CREATE VIEW d.v ON CLUSTER c1 AS SELECT n FROM d.t FINAL"
    assert out[9:11] == ["DROP TABLE IF EXISTS d.t ON CLUSTER c1", "DROP TABLE IF EXISTS d.t_local ON CLUSTER c1"]
    assert out[11] == "INSERT INTO d.t (session_id, n) VALUES ('a', 1)"
    assert cluster_statements(out, "c1", "d") == out  # already cluster DDL: unchanged


def test_sharding_key_and_bad_cluster_name() -> None:
    assert sharding_key({"session_id", "dedup_key"}) == "cityHash64(session_id)"
    assert sharding_key({"dedup_key"}) == "cityHash64(dedup_key)"
    assert sharding_key({"x"}) == "rand()"
    with pytest.raises(ValueError, match="plain identifier"):
        cluster_statements(["SELECT 1"], "prod; DROP", "d")


def test_a_single_node_only_migration_keeps_the_sharding_column_stored_on_a_cluster(settings: Settings) -> None:
    """0019 reads session_id of a CDR from raw on one node; a cluster's Distributed cdrs shards by
    cityHash64(session_id), computed from stored columns only, so there the migration runs nothing."""
    alias = next(m for m in migrate.discover() if m.name == "cdr_session_alias")
    single = migrate.rendered(alias.text(), "d")
    assert any("session_id String ALIAS" in s for s in single)
    assert migrate.rendered(alias.text(), "d", "prod") == []
    others = [m for m in migrate.discover() if m.version != alias.version]
    assert all(migrate.rendered(m.text(), "d", "prod") for m in others)  # the marker is that file's alone
    db = settings.clickhouse_database
    client = store.connect(settings)
    with store.locked(client):
        for stmt in (s for m in migrate.discover() for s in migrate.rendered(m.text(), db, "prod")):
            client.command(_declustered(stmt))
    kinds = dict(store.query_rows(client, "SELECT table, default_kind FROM system.columns WHERE database = "
                                  f"'{db}' AND name = 'session_id' AND table IN ('cdrs', 'cdrs_local')"))
    assert kinds == {"cdrs": "", "cdrs_local": ""}


def _declustered(statement: str) -> str:
    """The cluster statement as one chDB node can run it: no ON CLUSTER, no Keeper, Merge for Distributed."""
    stmt = re.sub(r" ON CLUSTER \w+", "", statement)
    stmt = stmt.replace(f"{REPLICA_PATH}, ", "").replace(REPLICA_PATH, "")
    stmt = re.sub(r"ENGINE = Replicated(\w*)MergeTree", r"ENGINE = \1MergeTree", stmt)
    stmt = stmt.replace("replicated_deduplication_window", "non_replicated_deduplication_window")
    return re.sub(r"ENGINE = Distributed\(\w+, (\w+), (\w+), .*\)$", r"ENGINE = Merge(\1, '^\2$')", stmt)


def test_declustered_schema_applies_and_views_read_through_the_outer_tables(settings: Settings) -> None:
    db = settings.clickhouse_database
    client = store.connect(settings)
    clustered = [s for m in migrate.discover() for s in migrate.rendered(m.text(), db, "prod")]
    with store.locked(client):
        for stmt in clustered:
            client.command(_declustered(stmt))
    local = store.query_rows(client, f"SELECT name FROM system.tables WHERE database = '{db}' AND name LIKE '%_local'")
    assert {"cdrs_local", "call_events_local", "number_status_local", "failed_events_local"} <= {r[0] for r in local}
    # columns of the outer table equal the local table's (AS db.t_local)
    for table in ("cdrs", "call_events", "number_status", "failed_events"):
        cols = [
            store.query_rows(client, "SELECT name, type, default_kind, default_expression FROM system.columns "
                             f"WHERE database = '{db}' AND table = '{t}' ORDER BY position")
            for t in (table, f"{table}_local")
        ]
        assert cols[0] == cols[1] and cols[0]
    views = store.query_rows(client, f"SELECT name FROM system.tables WHERE database = '{db}' AND engine = 'View'")
    if any(m.name == "views" for m in migrate.discover()):
        assert {"call_facts", "kpi_hourly"} <= {v for (v,) in views}
    for (view,) in views:
        store.query_rows(client, f"SELECT * FROM {db}.{view} LIMIT 1")
    # plain views read the Distributed tables (every shard answers), never one node's *_local table
    view_sql = " ".join(s for s in clustered if s.startswith("CREATE VIEW"))
    assert "_local" not in view_sql


def test_migrate_cli_dry_run_prints_cluster_ddl(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CALLSTREAM_CLICKHOUSE_DATABASE", "callstream")
    assert cli_main(["migrate", "--cluster", "prod", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "CREATE TABLE IF NOT EXISTS callstream.cdrs_local ON CLUSTER prod" in out
    assert "ENGINE = Distributed(prod, callstream, cdrs_local, cityHash64(session_id))" in out

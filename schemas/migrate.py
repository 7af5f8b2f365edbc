"""Versioned, idempotent ClickHouse DDL from ``schemas/clickhouse/NNNN_name.sql``.

Each file is one migration; its number is its version. Applied versions are recorded in
``<db>.schema_migrations`` (version, name, checksum), so re-running applies only what is new.
A line ``@name`` in a file stands for the block ``name`` of ``schemas/clickhouse/blocks.sql`` (SQL that
several migrations share, e.g. the KPI sums of every rollup, defined once); it is expanded first, and the
checksum is that of the expanded text. Files are templates with these placeholders (plain text
replacement, so ClickHouse macros such as ``{shard}`` in replicated paths stay intact):

    {db}             the database (settings.clickhouse_database)
    {on_cluster}     "" or " ON CLUSTER <name>"
    {engine_prefix}  "" or "Replicated"            e.g. {engine_prefix}ReplacingMergeTree(...)
    {engine_args}    "" or "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}', "

A migration with a line ``-- single node only: <why>`` renders to no statement on a cluster (it is
recorded as applied there): e.g. 0019 turns a column that the cluster's sharding key reads into an ALIAS.

    callstream migrate [--dry-run] [--cluster NAME] [--rebuild-rollups]
    apply_migrations(settings)  -> list of versions applied, e.g. ["0001_tables"]
    rebuild_rollups(settings)   -> the rollup tables refilled from their source tables

Rollups: a migration that creates a ``MATERIALIZED VIEW ... TO target AS SELECT ... FROM source`` is
followed, in the same step, by a backfill of ``target`` from ``source FINAL`` (the rows that were there
before the view existed). ``rebuild_rollups`` does the same for every rollup at any time: it truncates
the target and re-inserts the view's SELECT over ``source FINAL``, so running it twice gives the same
rows (idempotent). Run it with the loaders stopped: rows inserted while it runs may be counted twice or
not at all. On a cluster it refuses: run it on each shard's node.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from clickhouse_connect.driver.client import Client

from core import store
from core.errors import ConfigError
from core.settings import Settings
from schemas.cluster import cluster_statements, merge_tree_tables
from schemas.projections import MIN_VERSION, TABLES, ensure_key_projection
from schemas.projections import statements as key_projection_statements
from schemas.retention import apply_retention, retention_statements

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).parent / "clickhouse"
BLOCKS_FILE = SQL_DIR / "blocks.sql"
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_BLOCK_RE = re.compile(r"^-- @block ([a-z0-9_]+)$")
_USE_RE = re.compile(r"^@([a-z0-9_]+)$", re.MULTILINE)
_SINGLE_NODE_RE = re.compile(r"^-- single node only:", re.MULTILINE)
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MV_RE = re.compile(
    r"^CREATE\s+MATERIALIZED\s+VIEW\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<view>[\w.`]+)\s+TO\s+(?P<target>[\w.`]+)\s+"
    r"AS\s+(?P<select>SELECT\b.*)$",
    re.IGNORECASE | re.DOTALL,
)
_DROP_RE = re.compile(r"^DROP\s+(?:VIEW|TABLE)\s+(?:IF\s+EXISTS\s+)?(?P<name>[\w.`]+)", re.IGNORECASE)
_FROM_RE = re.compile(r"\bFROM\s+(?P<table>[\w.`]+)", re.IGNORECASE)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"

    def text(self) -> str:
        """The file with its ``@name`` lines expanded."""
        return expand(self.path.read_text(encoding="utf-8"), self.path.parent / BLOCKS_FILE.name)

    def checksum(self) -> str:
        return hashlib.sha256(self.text().encode()).hexdigest()[:16]


def blocks(path: Path = BLOCKS_FILE) -> dict[str, str]:
    """The shared blocks: each from its ``-- @block name`` line to the next (trailing blank lines dropped)."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        match = _BLOCK_RE.match(line)
        if match:
            if match.group(1) in found:
                raise ValueError(f"{path.name}: block {match.group(1)!r} is defined twice")
            current = found[match.group(1)] = []
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines).rstrip("\n") for name, lines in found.items()}


def expand(text: str, blocks_path: Path = BLOCKS_FILE) -> str:
    """``text`` with every ``@name`` line replaced by the block ``name``."""
    if not _USE_RE.search(text):
        return text
    known = blocks(blocks_path)

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in known:
            raise ValueError(f"@{name}: no such block in {blocks_path.name} (blocks: {', '.join(sorted(known))})")
        return known[name]

    return _USE_RE.sub(one, text)


def discover(sql_dir: Path = SQL_DIR) -> list[Migration]:
    """Migration files in version order; two files with one number is an error."""
    found: dict[int, Migration] = {}
    for path in sorted(sql_dir.glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if not match:
            continue
        version = int(match.group(1))
        if version in found:
            raise ValueError(f"two migrations numbered {version:04d}: {found[version].path.name}, {path.name}")
        found[version] = Migration(version, match.group(2), path)
    return [found[v] for v in sorted(found)]


def placeholders(database: str, cluster: str = "") -> dict[str, str]:
    """The template values for a single node (cluster="") or an ON CLUSTER deployment."""
    if not _IDENT_RE.match(database):
        raise ValueError(f"database name {database!r} must be a plain identifier (letters, digits, _)")
    if cluster and not _IDENT_RE.match(cluster):
        raise ValueError(f"cluster name {cluster!r} must be a plain identifier")
    if not cluster:
        return {"{db}": database, "{on_cluster}": "", "{engine_prefix}": "", "{engine_args}": ""}
    return {
        "{db}": database,
        "{on_cluster}": f" ON CLUSTER {cluster}",
        "{engine_prefix}": "Replicated",
        "{engine_args}": "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}', ",
    }


def render(text: str, values: dict[str, str]) -> list[str]:
    """Fill placeholders and split into statements (``--`` comments dropped)."""
    lines = [line for line in text.splitlines() if not line.strip().startswith("--")]
    body = "\n".join(lines)
    for key, value in values.items():
        body = body.replace(key, value)
    return [stmt.strip() for stmt in body.split(";") if stmt.strip()]


def rendered(text: str, database: str, cluster: str = "") -> list[str]:
    """Single-node statements, or with ``cluster`` their Replicated ``*_local`` + Distributed form (an
    ALTER of a table that any migration creates goes to its ``*_local`` table too)."""
    values = placeholders(database)
    statements = render(text, values)
    if not cluster:
        return statements
    if _SINGLE_NODE_RE.search(text):
        return []  # a line "-- single node only: <why>": recorded as applied, nothing to run on a cluster
    tables = merge_tree_tables([s for m in discover() for s in render(m.text(), values)])
    return cluster_statements(statements, cluster, database, tables)


@dataclass(frozen=True)
class Rollup:
    """A materialized view and its target table; ``backfill`` is its SELECT over ``source FINAL``."""

    view: str
    target: str
    backfill: str


def rollups(statements: list[str]) -> dict[str, Rollup]:
    """The rollups that single-node ``statements`` define (a later definition or DROP wins)."""
    found: dict[str, Rollup] = {}
    for stmt in statements:
        drop = _DROP_RE.match(stmt)
        if drop:
            found.pop(drop.group("name"), None)
            continue
        match = _MV_RE.match(stmt)
        if match:
            backfill = _FROM_RE.sub(r"FROM \g<table> FINAL", match.group("select"), count=1)
            found[match.group("view")] = Rollup(match.group("view"), match.group("target"), backfill)
    return found


def defined_rollups(database: str, upto: int | None = None) -> list[Rollup]:
    """Every rollup of the migrations (up to version ``upto``), in definition order."""
    statements = [s for m in discover() if upto is None or m.version <= upto
                  for s in render(m.text(), placeholders(database))]
    return list(rollups(statements).values())


def _refill(client: Client, rollup: Rollup) -> None:
    # insert_deduplicate=0: a rebuild inserts the very blocks an earlier rebuild did, which the target's
    # deduplication window would otherwise drop as retries
    client.command(f"TRUNCATE TABLE {rollup.target}")
    client.command(f"INSERT INTO {rollup.target} {rollup.backfill}", settings={"insert_deduplicate": 0})


def rebuild_rollups(settings: Settings, client: Client | None = None) -> list[str]:
    """Refill every rollup table from its source table (``FINAL``); returns the targets rebuilt."""
    if settings.clickhouse_cluster:
        raise ConfigError(
            f"CALLSTREAM_CLICKHOUSE_CLUSTER={settings.clickhouse_cluster}: rebuild the rollups on each shard's "
            "node (run `callstream migrate --rebuild-rollups` there without the cluster setting)"
        )
    client = client or store.connect(settings)
    applied = applied_versions(client, settings.clickhouse_database)
    rebuilt: list[str] = []
    for rollup in defined_rollups(settings.clickhouse_database, max(applied, default=0)):
        with store.locked(client):
            _refill(client, rollup)
        log.info("rebuilt rollup %s from its source", rollup.target)
        rebuilt.append(rollup.target)
    return rebuilt


def _ledger_ddl(values: dict[str, str]) -> list[str]:
    engine = f"{values['{engine_prefix}']}ReplacingMergeTree({values['{engine_args}']}applied_at)"
    return [
        f"CREATE DATABASE IF NOT EXISTS {values['{db}']}{values['{on_cluster}']}",
        f"CREATE TABLE IF NOT EXISTS {values['{db}']}.schema_migrations{values['{on_cluster}']} "
        "(version UInt32, name String, checksum String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        f"ENGINE = {engine} ORDER BY version",
    ]


def plan(settings: Settings, cluster: str = "") -> list[tuple[Migration, list[str]]]:
    """Every migration with its rendered statements (nothing is applied)."""
    values = placeholders(settings.clickhouse_database, cluster or settings.clickhouse_cluster)
    return [(m, rendered(m.text(), values["{db}"], cluster or settings.clickhouse_cluster)) for m in discover()]


def applied_versions(client: Client, database: str) -> dict[int, str]:
    with store.locked(client):
        rows = client.query(f"SELECT version, any(checksum) FROM {database}.schema_migrations GROUP BY version")
    return {int(v): str(c) for v, c in rows.result_rows}


def apply_migrations(
    settings: Settings, client: Client | None = None, *, cluster: str = "", upto: int | None = None
) -> list[str]:
    """Apply pending migrations (those numbered ``<= upto`` if given); returns their labels
    (``[]`` when the schema is current)."""
    client = client or store.connect(settings)
    cluster = cluster or settings.clickhouse_cluster
    values = placeholders(settings.clickhouse_database, cluster)
    db = settings.clickhouse_database
    with store.locked(client):
        for stmt in _ledger_ddl(values):
            client.command(stmt)
    done = applied_versions(client, db)
    applied: list[str] = []
    for migration in discover():
        if upto is not None and migration.version > upto:
            break
        statements = rendered(migration.text(), db, cluster)
        if migration.version in done:
            if done[migration.version] != migration.checksum():
                log.warning("migration %s changed after it was applied; not re-applied", migration.label)
            continue
        with store.locked(client):
            for stmt in statements:
                client.command(stmt)
            if not cluster:  # the rows stored before these views existed (on a cluster: per shard)
                for rollup in rollups(render(migration.text(), values)).values():
                    _refill(client, rollup)
            client.insert(
                f"{db}.schema_migrations",
                [[migration.version, migration.name, migration.checksum()]],
                column_names=["version", "name", "checksum"],
            )
        log.info("applied migration %s to %s", migration.label, db)
        applied.append(migration.label)
    apply_retention(settings, client, cluster=cluster)  # table TTLs from the settings (idempotent)
    ensure_key_projection(settings, client, cluster=cluster)  # where the engine can hold it (idempotent)
    return applied


def main(args: argparse.Namespace, settings: Settings) -> int:
    """``callstream migrate``: apply (or with --dry-run print) the DDL."""
    cluster = getattr(args, "cluster", None) or ""
    if getattr(args, "dry_run", False):
        values = placeholders(settings.clickhouse_database, cluster or settings.clickhouse_cluster)
        for stmt in _ledger_ddl(values):
            print(stmt + ";\n")
        for migration, statements in plan(settings, cluster):
            print(f"-- {migration.label}")
            for stmt in statements:
                print(stmt + ";\n")
            if not (cluster or settings.clickhouse_cluster):
                for rollup in rollups(render(migration.text(), values)).values():
                    print(f"-- backfill of {rollup.target}\nTRUNCATE TABLE {rollup.target};\n"
                          f"INSERT INTO {rollup.target} {rollup.backfill};\n")
        if not (cluster or settings.clickhouse_cluster):
            for table in TABLES:
                print(f"-- {table}' key projection (ClickHouse {MIN_VERSION[0]}.{MIN_VERSION[1]} or later, when "
                      "missing: schemas/projections.py)")
                for stmt in key_projection_statements(settings.clickhouse_database, table):
                    print(stmt + ";\n")
        print("-- retention (applied when it differs from the tables' current TTL)")
        for stmt in retention_statements(settings, cluster):
            print(stmt + ";\n")
        return 0
    applied = apply_migrations(settings, cluster=cluster)
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'schema is current'}")
    if getattr(args, "rebuild_rollups", False):
        rebuilt = rebuild_rollups(settings)
        print(f"rebuilt {len(rebuilt)} rollup(s) from the stored rows: {', '.join(rebuilt) or 'none defined'}")
    return 0

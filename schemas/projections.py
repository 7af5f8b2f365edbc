"""The key projection (``by_key``) of ``call_events`` and ``cdrs``, added by ``callstream migrate`` where the
engine can hold it.

Before a batch is inserted the loader asks which of its keys are stored (``ClickHouseSink.stored_notifications``).
Both tables are ordered by (app_key, hour, dedup_key) and their bloom filters cannot exclude a granule for
thousands of keys at once, so that lookup reads the whole table: on 10 M events 9.97 M rows and 285 ms for
a batch's 6,000 new keys, growing with the table (bench/key_lookup.py). This projection holds each part's
keys sorted (index granularity 256, 4 KB compressed blocks, so a key reads one small block); the lookup
first finds which keys the projection has (108 ms, 2.0 M rows read; 500 keys 32 ms against 184), then
reads those keys' owners only. It costs 8.1 compressed B a stored row; its CPU (built at every insert and
rebuilt at every merge) was below the run-to-run noise of bench/consumer.py, and on 400 k events the lookup
through it was 18 ms slower per 6,000 keys than the plain one, on 10 M events 177 ms faster.
``cdrs`` gets it once its ``session_id`` is no longer stored (0019_cdr_session_alias.sql: 15 B a CDR less,
so that the projection fits its 200 B budget); a store migrated to an earlier version keeps the plain lookup.
The loader asks a table's projection once the table holds a million rows (``consumers/load.py``,
``PROJECTION_MIN_ROWS``); below that the plain read is faster (both are exact).

It is not a numbered migration, because it needs projection-level settings (``WITH SETTINGS``, ClickHouse
25.12 and later; the embedded engine has them) and the cluster in deploy/ runs 25.8. ``ensure_key_projection``
runs at every migrate, as the retention TTLs do: on a single node whose engine has them it adds the
projection and materializes it for the rows already stored (a mutation that reads the key column once:
4 s for 10 M events); on an older server it logs why not and changes nothing (the first migrate after an
upgrade adds it); on a cluster it changes nothing (the loader reads the Distributed table, which cannot be
asked through a shard's projection).

ReplacingMergeTree keeps a projection only when told what merges do with it: rebuild it. Lightweight deletes
stay refused on the table (the engine's default with a projection): a lightweight delete only masks rows in
the part, and a query answered from the projection (``SELECT dedup_key FROM call_events``) still returned a
deleted row; ``callstream erase`` uses an ``ALTER TABLE ... DELETE`` mutation on these tables.
"""

from __future__ import annotations

import logging
import re

from clickhouse_connect.driver.client import Client

from core import store
from core.settings import Settings

log = logging.getLogger(__name__)

KEY_PROJECTION = "by_key"
TABLES = ("call_events", "cdrs")
# what a table's DDL shows once it may hold the projection (cdrs: session_id not stored, 0019)
_READY = {"cdrs": re.compile(r"\bsession_id\b[^,]*\bALIAS\b")}
MIN_VERSION = (25, 12)  # projection-level settings (ClickHouse PR 90158)


def statements(database: str, table_name: str = "call_events", *, materialize: bool = True) -> list[str]:
    """What adds the projection to ``<database>.<table_name>`` and, with ``materialize``, writes it for the
    stored rows (a table without parts has none to write)."""
    table = f"{database}.{table_name}"
    added = [
        f"ALTER TABLE {table} MODIFY SETTING deduplicate_merge_projection_mode = 'rebuild'",
        f"ALTER TABLE {table} ADD PROJECTION IF NOT EXISTS {KEY_PROJECTION} (SELECT dedup_key ORDER BY dedup_key) "
        "WITH SETTINGS (index_granularity = 256, min_compress_block_size = 4096, max_compress_block_size = 4096)",
    ]
    if materialize:
        added.append(f"ALTER TABLE {table} MATERIALIZE PROJECTION {KEY_PROJECTION} SETTINGS mutations_sync = 2")
    return added


def engine_version(client: Client) -> tuple[int, int]:
    """(major, minor) of the engine, from ``version()`` (e.g. 26.9.2.1 -> (26, 9))."""
    text = str(store.query_rows(client, "SELECT version()")[0][0])
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


def defines_projection(ddl: str, name: str = KEY_PROJECTION) -> bool:
    return re.search(rf"\bPROJECTION\s+`?{re.escape(name)}\b", ddl) is not None


def has_projection(client: Client, database: str, table: str, name: str = KEY_PROJECTION) -> bool:
    """Whether ``database.table`` defines the projection ``name`` (read from its DDL: every version has it)."""
    ddl = store.create_query(client, database, table)
    return ddl is not None and defines_projection(ddl, name)


def projected_tables(client: Client, database: str) -> set[str]:
    """The tables of ``database`` with any projection."""
    rows = store.query_rows(client, "SELECT name, create_table_query FROM system.tables WHERE database = {db:String}",
                            {"db": database})
    return {str(name) for name, ddl in rows if _ANY_PROJECTION.search(str(ddl))}


_ANY_PROJECTION = re.compile(r"\bPROJECTION\s")


def ready(table: str, ddl: str) -> bool:
    """Whether ``table`` (its DDL ``ddl``) is at the schema version that gives it the projection."""
    marker = _READY.get(table)
    return marker is None or marker.search(ddl) is not None


def ensure_key_projection(settings: Settings, client: Client | None = None, *, cluster: str = "") -> list[str]:
    """Add and materialize the key projection of each table in ``TABLES`` where it belongs (see the
    module's text); returns the statements run (``[]`` when they are there already, or do not belong)."""
    client = client or store.connect(settings)
    if cluster or settings.clickhouse_cluster:
        return []
    db = settings.clickhouse_database
    missing = []
    for table in TABLES:
        ddl = store.create_query(client, db, table)
        # no such table at this schema version, not at the version that makes room for it, or done already
        if ddl is not None and ready(table, ddl) and not defines_projection(ddl):
            missing.append(table)
    if not missing:
        return []
    version = engine_version(client)
    if version < MIN_VERSION:
        log.info("%s keeps its key lookups without the %s projection: ClickHouse %d.%d has no projection "
                 "settings (%d.%d and later do); the first migrate after an upgrade adds it",
                 ", ".join(f"{db}.{t}" for t in missing), KEY_PROJECTION, *version, *MIN_VERSION)
        return []
    ran = []
    with store.locked(client):
        for table in missing:
            stored = store.query_rows(client, "SELECT count() FROM system.parts WHERE database = {db:String} "
                                      "AND table = {t:String} AND active", {"db": db, "t": table})[0][0]
            for stmt in statements(db, table, materialize=bool(stored)):
                client.command(stmt)
                ran.append(stmt)
            log.info("added the %s projection to %s.%s (key lookups read it)", KEY_PROJECTION, db, table)
    return ran

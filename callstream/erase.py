"""``callstream erase --number N``: delete one subscriber's rows from every table (right to erasure).

A row is erased when a number column holds the number in clear or in its keyed-hash form (computed with
the configured pepper), or when its ``raw``/``extra``/``body``/``session_id`` text contains either form
(e.g. inside a ``sessionId``). Deletes are lightweight ``DELETE FROM … WHERE …`` on every MergeTree
table of the database that has such columns (``*_local`` tables ``ON CLUSTER`` on a cluster), and
``ALTER TABLE … DELETE`` mutations on a table with a projection (``call_events``).

Not erasable here, and reported as such:

* masked values (``+86138****0021``): other numbers share the mask, so rows are counted, not deleted;
* hashes made with an earlier pepper (rotate the pepper only together with an erase of old data);
* Kafka: records are immutable; the raw topic expires after ``raw_retention_hours``, the others after
  their topic retention (``callstream topics``).

The embedded store belongs to one process. While ``callstream up`` runs on the data dir its query
endpoint is read-only, so erase refuses with instructions (stop ``up``, erase, start ``up``); it holds
``up.lock`` while it works, so ``up`` cannot start in between. With a ClickHouse server it runs directly.
"""

from __future__ import annotations

import argparse
import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from clickhouse_connect.driver.client import Client

from consumers.numbers import NUMBER_COLUMNS, mask, policy_from_settings
from core import store
from core.data_lock import hold_data_dir
from core.errors import ConfigError
from core.settings import Settings
from schemas.projections import projected_tables

TEXT_COLUMNS = ("raw", "extra", "body", "session_id")
_NUMBER_RE = re.compile(r"^\+?[0-9]{3,20}$")


@dataclass
class EraseReport:
    deleted: dict[str, int] = field(default_factory=dict)
    masked_not_deleted: dict[str, int] = field(default_factory=dict)
    forms: int = 0


def check_number(number: str) -> str:
    number = number.strip()
    if not _NUMBER_RE.match(number):
        raise ConfigError(
            f"--number {mask(number)!r} is not a phone number: give it as it arrives, e.g. +8613800000021"
        )
    return number


def _tables(client: Client, database: str, cluster: str) -> dict[str, dict[str, str]]:
    """``{table: {column: type}}`` of the MergeTree tables that hold numbers or text."""
    rows = store.query_rows(
        client,
        "SELECT c.table, c.name, c.type FROM system.columns AS c "
        "INNER JOIN system.tables AS t ON t.database = c.database AND t.name = c.table "
        "WHERE c.database = {db:String} AND t.engine LIKE '%MergeTree%' AND c.type LIKE '%String%'",
        {"db": database},
    )
    wanted = set(NUMBER_COLUMNS) | set(TEXT_COLUMNS)
    tables: dict[str, dict[str, str]] = {}
    for table, column, ctype in rows:
        if column in wanted and table != "schema_migrations" and (not cluster or table.endswith("_local")):
            tables.setdefault(str(table), {})[str(column)] = str(ctype)
    return tables


def _condition(columns: dict[str, str]) -> str:
    parts = [f"`{c}` IN {{forms:Array(String)}}" for c in columns if c in NUMBER_COLUMNS]
    for column in columns:
        if column in TEXT_COLUMNS:
            parts.append(f"match(`{column}`, {{clear_re:String}})")
            parts.append(f"multiSearchAny(`{column}`, {{hashes:Array(String)}})")
    return " OR ".join(parts)


def erase_number(settings: Settings, number: str, client: Client | None = None) -> EraseReport:
    """Delete every row that carries ``number`` (clear or hashed); count masked look-alikes."""
    number = check_number(number)
    policy = policy_from_settings(settings)
    forms = sorted(policy.protected_forms(number))
    hashes = [f for f in forms if f != number] or [number]
    params = {
        "forms": forms,
        "hashes": hashes,
        # a number is delimited by non-digits, so +861380000002 does not match +8613800000021
        "clear_re": r"(^|[^0-9])" + re.escape(number) + r"([^0-9]|$)",
        "masked": [mask(number)],
    }
    client = client or store.connect(settings)
    db, cluster = settings.clickhouse_database, settings.clickhouse_cluster
    on_cluster = f" ON CLUSTER {cluster}" if cluster else ""
    report = EraseReport(forms=len(forms))
    projected = projected_tables(client, db)
    for table, columns in sorted(_tables(client, db, cluster).items()):
        condition = _condition(columns)
        if not condition:
            continue
        count = store.query_rows(client, f"SELECT count() FROM {db}.`{table}` WHERE {condition}", params)[0][
            0
        ]
        if count:
            with store.locked(client):
                client.command(_delete(db, table, on_cluster, condition, table in projected), parameters=params)
        report.deleted[table] = int(count)
        masked_cols = [c for c in columns if c in NUMBER_COLUMNS and policy.mode(c) == "mask"]
        if masked_cols:
            where = " OR ".join(f"`{c}` IN {{masked:Array(String)}}" for c in masked_cols)
            masked = store.query_rows(client, f"SELECT count() FROM {db}.`{table}` WHERE {where}", params)[0][
                0
            ]
            if masked:
                report.masked_not_deleted[table] = int(masked)
    return report


def _delete(db: str, table: str, on_cluster: str, condition: str, projected: bool) -> str:
    """A lightweight ``DELETE FROM``, or for a table with a projection a mutation that rewrites the parts
    and their projections: a lightweight delete only masks rows in the part, and a query the engine
    answers from the projection would still see them (the table keeps lightweight deletes refused)."""
    if projected:
        return f"ALTER TABLE {db}.`{table}`{on_cluster} DELETE WHERE {condition} SETTINGS mutations_sync = 2"
    return f"DELETE FROM {db}.`{table}`{on_cluster} WHERE {condition}"


@contextlib.contextmanager
def store_exclusive(settings: Settings) -> Iterator[None]:
    """Hold ``<data-dir>/up.lock`` for an embedded store; refuse while ``callstream up`` runs."""
    if not settings.clickhouse_is_embedded:
        yield
        return
    with hold_data_dir(
        settings.data_dir,
        refusal="callstream up runs on {data_dir} (pid {owner}) and owns the embedded store; its query endpoint "
        "is read-only. Stop it, run `callstream erase` again, then start `callstream up`",
    ):
        yield


def main(args: argparse.Namespace, settings: Settings) -> int:
    number = check_number(args.number)
    with store_exclusive(settings):
        report = erase_number(settings, number)
    print(f"erased {mask(number)} (clear and keyed-hash forms) from {settings.clickhouse_database}:")
    for table, count in report.deleted.items():
        print(f"  {table:<24} {count} row(s) deleted")
    for table, count in report.masked_not_deleted.items():
        print(
            f"  {table:<24} {count} row(s) hold the masked form {mask(number)}, shared with other numbers: "
            "not deleted (review them by hand)"
        )
    print(
        "not erased: Kafka records (the raw topic keeps original bodies for "
        f"{settings.raw_retention_hours} h, dead letters and downstream topics until their topic retention) "
        "and hashes made with an earlier pepper"
    )
    return 0

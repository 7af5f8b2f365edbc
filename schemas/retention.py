"""Warehouse retention: one table TTL per table, from the settings, applied after the migrations.

    cdrs, call_events          cdr_retention_days / event_retention_days   (default 400)
    session_callouts           event_retention_days (its rows are call_events' callouts)
    number_status              number_status_retention_days                (default 400)
    failed_events              failed_retention_days                       (default 30)

Rows expire ``N`` days after ``received_at`` (when the edge accepted the push). ``0`` removes the TTL
(keep forever). Applying is idempotent: a table whose TTL already matches is left alone, because
``MODIFY TTL`` rewrites every part. On a cluster the TTL goes on the ``*_local`` tables ``ON CLUSTER``.
The raw Kafka topic, which keeps unprotected bodies, has its own shorter retention
(``raw_retention_hours``, see ``core.kafka.topic_configs``).
"""

from __future__ import annotations

import logging
import re

from clickhouse_connect.driver.client import Client

from core import store
from core.errors import ConfigError
from core.settings import Settings

log = logging.getLogger(__name__)

#: table -> the settings field holding its retention in days
RETENTION_FIELDS: dict[str, str] = {
    "cdrs": "cdr_retention_days",
    "call_events": "event_retention_days",
    "session_callouts": "event_retention_days",  # the callouts of call_events, by session (0018)
    "number_status": "number_status_retention_days",
    "failed_events": "failed_retention_days",
}
_TTL_RE = re.compile(r"\bTTL\s+toDateTime\(received_at\)\s*\+\s*toIntervalDay\((\d+)\)")


def retention_days(settings: Settings) -> dict[str, int]:
    """``{table: days}`` from the settings (``0`` = no TTL)."""
    days = {table: int(getattr(settings, field)) for table, field in RETENTION_FIELDS.items()}
    for table, value in days.items():
        if value < 0:
            raise ConfigError(
                f"CALLSTREAM_{RETENTION_FIELDS[table].upper()}={value}: use 0 (keep) or a number of days"
            )
    return days


def _target(settings: Settings, table: str, cluster: str) -> str:
    db = settings.clickhouse_database
    if cluster:
        return f"{db}.{table}_local ON CLUSTER {cluster}"
    return f"{db}.{table}"


def ttl_statement(settings: Settings, table: str, days: int, cluster: str = "") -> str:
    target = _target(settings, table, cluster)
    if days == 0:
        return f"ALTER TABLE {target} REMOVE TTL"
    return f"ALTER TABLE {target} MODIFY TTL toDateTime(received_at) + INTERVAL {days} DAY"


def retention_statements(settings: Settings, cluster: str = "") -> list[str]:
    """The TTL statements for every table (what ``--dry-run`` prints)."""
    cluster = cluster or settings.clickhouse_cluster
    return [ttl_statement(settings, t, d, cluster) for t, d in retention_days(settings).items() if d > 0]


def current_ttl_days(client: Client, database: str, table: str) -> int | None:
    """The table's current TTL in days (``None``: no such TTL or no such table; ``-1``: a TTL of another
    shape)."""
    ddl = store.create_query(client, database, table)
    return None if ddl is None else _ttl_days(ddl)


def _ttl_days(text: str) -> int | None:
    match = _TTL_RE.search(text)
    if match:
        return int(match.group(1))
    return -1 if re.search(r"\)\s*TTL\s", text) else None


def apply_retention(settings: Settings, client: Client | None = None, *, cluster: str = "") -> list[str]:
    """Apply the TTLs that differ from the tables' current ones; returns the statements run."""
    client = client or store.connect(settings)
    cluster = cluster or settings.clickhouse_cluster
    db = settings.clickhouse_database
    ran: list[str] = []
    for table, days in retention_days(settings).items():
        ddl = store.create_query(client, db, f"{table}_local" if cluster else table)
        if ddl is None:
            continue  # table not created by this schema version
        current = _ttl_days(ddl)
        if current == days or (days == 0 and current is None):
            continue
        stmt = ttl_statement(settings, table, days, cluster)
        with store.locked(client):
            client.command(stmt)
        log.info("retention of %s.%s set to %s", db, table, f"{days} days" if days else "forever")
        ran.append(stmt)
    return ran


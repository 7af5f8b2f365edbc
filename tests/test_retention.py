"""Retention: TTLs from the settings land in the tables after migrate; the raw topic keeps less."""

from __future__ import annotations

from collections.abc import Callable

from core import store
from core.kafka import topic_configs
from core.settings import Settings
from schemas.migrate import apply_migrations
from schemas.retention import apply_retention, current_ttl_days, retention_statements


def _create_sql(settings: Settings, table: str) -> str:
    client = store.connect(settings)
    return str(store.query_rows(client, f"SHOW CREATE TABLE {settings.clickhouse_database}.{table}")[0][0])


def test_statements_follow_the_settings(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(cdr_retention_days=90, event_retention_days=400, failed_retention_days=7)
    stmts = retention_statements(settings)
    db = settings.clickhouse_database
    assert f"ALTER TABLE {db}.cdrs MODIFY TTL toDateTime(received_at) + INTERVAL 90 DAY" in stmts
    assert f"ALTER TABLE {db}.failed_events MODIFY TTL toDateTime(received_at) + INTERVAL 7 DAY" in stmts
    assert f"ALTER TABLE {db}.call_events MODIFY TTL toDateTime(received_at) + INTERVAL 400 DAY" in stmts
    clustered = retention_statements(settings, cluster="main")
    assert f"ALTER TABLE {db}.cdrs_local ON CLUSTER main MODIFY TTL" in clustered[0]


PRODUCT_DEFAULTS = {
    field: Settings.model_fields[field].default
    for field in (
        "cdr_retention_days",
        "event_retention_days",
        "number_status_retention_days",
        "failed_retention_days",
    )
}


def test_product_defaults() -> None:
    assert PRODUCT_DEFAULTS == {
        "cdr_retention_days": 400,
        "event_retention_days": 400,
        "number_status_retention_days": 400,
        "failed_retention_days": 30,
    }
    assert Settings.model_fields["raw_retention_hours"].default == 72


def test_migrate_applies_ttls_idempotently_and_follows_changes(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(**PRODUCT_DEFAULTS)
    apply_migrations(settings)
    for table, days in {"cdrs": 400, "call_events": 400, "number_status": 400, "failed_events": 30}.items():
        sql = _create_sql(settings, table)
        assert f"TTL toDateTime(received_at) + toIntervalDay({days})" in sql, sql
    client = store.connect(settings)
    assert apply_retention(settings, client) == []  # already current: nothing rewritten

    shorter = make_settings(**{**PRODUCT_DEFAULTS, "cdr_retention_days": 180, "failed_retention_days": 0})
    ran = apply_retention(shorter, client)
    assert len(ran) == 2
    assert "toIntervalDay(180)" in _create_sql(settings, "cdrs")
    assert current_ttl_days(client, settings.clickhouse_database, "failed_events") is None
    assert apply_retention(shorter, client) == []


def test_ttl_expires_old_rows(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(failed_retention_days=30)
    apply_migrations(settings)
    client = store.connect(settings)
    db = settings.clickhouse_database
    cols = ["dedup_key", "notification_id", "record_index", "received_at", "stage", "reason", "body"]
    old = [1, "old", 0, 1_600_000_000_000_000, "decode", "malformed", "x"]
    with store.locked(client):
        client.insert(f"{db}.failed_events", [old], column_names=cols)
        client.command(
            f"INSERT INTO {db}.failed_events (dedup_key, notification_id, received_at) "
            "VALUES (2, 'new', now64(6))"
        )
        client.command(f"OPTIMIZE TABLE {db}.failed_events FINAL")
    rows = store.query_rows(
        client, f"SELECT notification_id FROM {db}.failed_events ORDER BY notification_id"
    )
    assert rows == [("new",)]


def test_raw_topic_retention_is_configurable_and_shorter_than_the_warehouse(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(raw_retention_hours=24)
    configs = topic_configs(settings)
    assert configs[settings.raw_topic]["retention.ms"] == str(24 * 3600 * 1000)
    default = make_settings(**PRODUCT_DEFAULTS)
    raw_ms = int(topic_configs(default)[default.raw_topic]["retention.ms"])
    assert raw_ms == 72 * 3600 * 1000
    assert raw_ms < default.cdr_retention_days * 24 * 3600 * 1000

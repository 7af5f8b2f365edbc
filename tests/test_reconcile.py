"""``callstream reconcile`` against the real broker and chDB: a clean load reconciles to zero gaps, a
deleted row is reported missing, a duplicated row is reported as a duplicate."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from callstream.reconcile import ReconcileMetrics, main, reconcile
from callstream.sim_calls import build_pushes, generate_calls
from core import store
from core.kafka import ensure_topics
from core.settings import Settings
from schemas import ROW_TABLES
from tests.chaos.harness import ASGI_BASE, asgi_edge, await_until, consumer_running, drive_recorded
from tests.conftest import TEST_APP_KEY, TEST_PRIVACY_APP_KEY

pytestmark = pytest.mark.timeout(180)


async def load_simulated(settings: Settings, calls: int = 30) -> tuple[datetime, int]:
    """Push a simulated day through the in-process edge and consumer; returns (start, 200 answers)."""
    await ensure_topics(settings)
    started = datetime.now(UTC) - timedelta(seconds=1)
    plan = build_pushes(generate_calls(11, calls, voice_app=TEST_APP_KEY, privacy_app=TEST_PRIVACY_APP_KEY), 11,
                        bad_fraction=0.1, duplicate_fraction=0.2)
    async with consumer_running(settings):  # migrated and assigned before the first push
        async with asgi_edge(settings) as client:
            result = await drive_recorded(client, ASGI_BASE, plan.pushes)
        assert all(o.accepted for o in result.outcomes if o.push.expect_ok)

        def loaded() -> bool:
            report = asyncio.run(reconcile(settings, started, datetime.now(UTC) + timedelta(minutes=1), 0))
            return report.ok and report.total("loaded") > 0

        await await_until(loaded, 60, "everything loaded", interval_s=0.5)
    return started, result.count(200)


def run(settings: Settings, started: datetime) -> object:
    return asyncio.run(reconcile(settings, started, datetime.now(UTC) + timedelta(minutes=1), grace_s=0))


def execute(settings: Settings, sql: str) -> None:
    client = store.connect(settings)
    with store.locked(client):
        client.command(sql.format(db=settings.clickhouse_database))


def test_clean_load_then_deleted_and_duplicated_rows(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    started, oks = asyncio.run(load_simulated(settings))
    report = asyncio.run(reconcile(settings, started, datetime.now(UTC) + timedelta(minutes=1), grace_s=0))
    print(report.table())
    assert report.ok
    assert report.total("accepted_notifications") == oks
    assert report.total("missing") == 0 and report.total("duplicates") == 0
    assert report.total("loaded") + report.total("quarantined") == report.total("expected_records")
    for table in ROW_TABLES:
        assert report.total("loaded", table) > 0, table
    assert report.dead_letters_edge > 0  # the simulator's bad inputs

    # a row that vanished from the warehouse is reported missing, with its key
    client = store.connect(settings)
    victim = int(store.query_rows(client, f"SELECT dedup_key FROM {settings.clickhouse_database}.call_events "
                                          "ORDER BY dedup_key LIMIT 1")[0][0])
    execute(settings, f"ALTER TABLE {{db}}.call_events DELETE WHERE dedup_key = {victim} SETTINGS mutations_sync = 2")
    report = asyncio.run(reconcile(settings, started, datetime.now(UTC) + timedelta(minutes=1), grace_s=0))
    assert not report.ok
    assert report.total("missing", "call_events") == 1
    assert report.total("missing") == 1
    assert report.missing_keys == {"call_events": [victim]}
    metrics = ReconcileMetrics(CollectorRegistry())
    metrics.update(report)
    assert metrics.registry.get_sample_value("callstream_reconcile_missing_records", {"table": "call_events"}) == 1
    assert metrics.registry.get_sample_value("callstream_reconcile_missing_records", {"table": "cdrs"}) == 0

    # a row stored twice is reported as a duplicate of its hour and app
    execute(settings, "INSERT INTO {db}.cdrs SELECT * FROM {db}.cdrs ORDER BY dedup_key LIMIT 1 "
                      "SETTINGS insert_deduplicate = 0")
    report = asyncio.run(reconcile(settings, started, datetime.now(UTC) + timedelta(minutes=1), grace_s=0))
    assert report.total("duplicates", "cdrs") == 1
    assert report.total("duplicates") == 1
    assert report.total("missing") == 1

    # the command prints the table and exits 1 on a gap
    code = main(argparse.Namespace(hours=1, grace_s=0.0, metrics_port=None, every_s=60.0), settings)
    out = capsys.readouterr().out
    assert code == 1
    assert "GAP" in out and "missing" in out and "call_events" in out


def test_grace_leaves_in_flight_pushes_out(settings: Settings) -> None:
    asyncio.run(ensure_topics(settings))
    now = datetime.now(UTC)
    report = asyncio.run(reconcile(settings, now - timedelta(seconds=5), now, grace_s=30))
    assert report.rows == [] and report.ok

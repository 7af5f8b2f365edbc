"""Chaos (c): ClickHouse unavailable while loading. No ClickHouse server can run here (PyPI has clients
only; Debian's clickhouse-server is 18.16, which lacks DateTime64 and insert_deduplication_token), so the
table the loader writes is renamed away and back under load: inserts and key lookups fail with a retriable
error, the consumer pauses and retries the same batch, and after recovery nothing is lost or doubled.
(The frozen-loader variant, SIGSTOP/SIGCONT of a ``callstream consume`` process, is in
test_consumer_crash.py.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from core import store
from core.kafka import ensure_topics
from core.settings import Settings
from tests.chaos.harness import (
    ASGI_BASE,
    Outcome,
    asgi_edge,
    consumer_running,
    drive_recorded,
    figures_line,
    make_plan,
)
from tests.chaos.oracle import edge_dead_letters, judge, wait_drained

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]


def command(settings: Settings, sql: str) -> None:
    client = store.connect(settings)
    with store.locked(client):
        client.command(sql.format(db=settings.clickhouse_database))


def row_count(settings: Settings, table: str) -> int:
    client = store.connect(settings)
    return int(store.query_rows(client, f"SELECT count() FROM {settings.clickhouse_database}.{table}")[0][0])


@pytest.mark.parametrize(("calls", "outage_s"), [pytest.param(80, 2.0, id="short"),
                                                 pytest.param(2000, 20.0, id="long", marks=pytest.mark.slow)])
def test_tables_unavailable_while_loading(make_settings: Callable[..., Settings], calls: int, outage_s: float) -> None:
    settings = make_settings(batch_max_events=100, load_retry_max_backoff_s=1.0)
    plan = make_plan(81, calls, bad_fraction=0.05, duplicate_fraction=0.1)
    outcomes = [Outcome(p) for p in plan.pushes]
    figures: dict = {}

    async def run() -> None:
        await ensure_topics(settings)
        async with consumer_running(settings), asgi_edge(settings) as client:
            drive = asyncio.create_task(drive_recorded(client, ASGI_BASE, plan.pushes, rate=calls / 3,
                                                       outcomes=outcomes))
            while sum(len(o.statuses) for o in outcomes) < len(outcomes) / 3:
                await asyncio.sleep(0.01)
            for table in ("call_events", "cdrs"):
                await asyncio.to_thread(command, settings, f"RENAME TABLE {{db}}.{table} TO {{db}}.{table}_away")
            down_at = time.monotonic()
            result = await asyncio.wait_for(drive, 120)  # the edge keeps answering 200 meanwhile
            await asyncio.sleep(max(0.0, outage_s - (time.monotonic() - down_at)))
            stuck = await asyncio.to_thread(row_count, settings, "call_events_away")
            for table in ("call_events", "cdrs"):
                await asyncio.to_thread(command, settings, f"RENAME TABLE {{db}}.{table}_away TO {{db}}.{table}")
            back_at = time.monotonic()
            figures["caught_up_after_recovery_s"] = round(await wait_drained(settings, 120), 2)
            figures.update(result.figures())
            figures["rows_when_store_came_back"] = stuck
            figures["outage_s"] = round(back_at - down_at, 2)
        verdict = judge(settings, result, await edge_dead_letters(settings))
        assert verdict.ok, verdict.problems
        figures.update(verdict.figures())
        assert result.count(503) == 0 and figures["never_accepted"] == 0
        assert stuck < verdict.expected["call_events"]  # the outage really held rows back

    asyncio.run(run())
    figures_line(f"store_unavailable[{calls}]", figures)

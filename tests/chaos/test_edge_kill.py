"""Chaos (a): the edge (``callstream edge``) is SIGKILLed under load and restarted; the simulator re-pushes
after non-200 answers and connection errors on the platform's schedule (compressed). Every push that got
a 200 is stored exactly once. Voice status events are never re-pushed by the platform, so a push cut
off by the kill may be lost: the oracle counts only 200s."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from core.broker import free_port, wait_for_port
from core.kafka import ensure_topics
from core.settings import Settings
from tests.chaos.harness import Outcome, consumer_running, drive_recorded, figures_line, make_plan, start_edge
from tests.chaos.oracle import edge_dead_letters, judge, wait_drained

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]


@pytest.mark.parametrize(("calls", "kills", "rate", "down_s"), [
    pytest.param(80, 1, 40.0, 0.5, id="short"),
    pytest.param(2000, 4, 100.0, 1.0, id="long", marks=pytest.mark.slow),
])
def test_edge_sigkill_under_load(make_settings: Callable[..., Settings], tmp_path: Path, calls: int, kills: int,
                                 rate: float, down_s: float) -> None:
    settings = make_settings(ack_timeout_s=1.0)
    plan = make_plan(41, calls, bad_fraction=0.05, duplicate_fraction=0.05)
    outcomes = [Outcome(p) for p in plan.pushes]
    total = len(outcomes)
    port = free_port()
    downtimes: list[float] = []

    async def run() -> dict:
        await ensure_topics(settings)
        edge, _ = start_edge(settings, tmp_path / "edge-0.log", port)
        edges = [edge]
        try:
            async with consumer_running(settings):
                limits = httpx.Limits(max_connections=32, max_keepalive_connections=0)
                async with httpx.AsyncClient(timeout=5, limits=limits) as http:
                    drive = asyncio.create_task(drive_recorded(
                        http, f"http://127.0.0.1:{port}", plan.pushes, retry_scale=0.0005, rate=rate,
                        outcomes=outcomes, stop_after_s=240))
                    for k in range(kills):
                        target = total * (k + 1) / (kills + 2)
                        while sum(len(o.statuses) for o in outcomes) < target and not drive.done():
                            await asyncio.sleep(0.02)
                        killed_at = time.monotonic()
                        edges[-1].signal(signal.SIGKILL)
                        edges[-1].process.wait(10)  # type: ignore[union-attr]
                        await asyncio.sleep(down_s)  # the fault: the edge stays down this long under traffic
                        edges.append(start_edge(settings, tmp_path / f"edge-{k + 1}.log", port)[0])
                        await asyncio.to_thread(wait_for_port, "127.0.0.1", port, 30)
                        downtimes.append(time.monotonic() - killed_at)
                    result = await asyncio.wait_for(drive, 300)
                drain_s = await wait_drained(settings, 120)
        finally:
            for e in edges:
                e.stop()
        verdict = judge(settings, result, await edge_dead_letters(settings), dead_letters_exact=False)
        assert verdict.ok, verdict.problems
        return {**result.figures(), **verdict.figures(), "kills": kills,
                "edge_down_s": [round(d, 2) for d in downtimes], "drain_after_last_push_s": round(drain_s, 2),
                "lost_voice_events_never_200": sum(1 for o in outcomes if o.push.expect_ok and not o.accepted)}

    figures = asyncio.run(run())
    # the kill really hit traffic, and re-pushable pushes (privacy, CDRs) all got their 200 in the end
    assert figures["connection_errors"] > 0
    repushable_lost = [o for o in outcomes if o.push.expect_ok and not o.accepted and o.push.retry_delays_min]
    assert not repushable_lost, [o.statuses for o in repushable_lost]
    figures_line(f"edge_sigkill[{calls}]", figures)

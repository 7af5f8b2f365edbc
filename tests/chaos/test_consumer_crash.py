"""Chaos (b) and (c, stalled loader): ``callstream consume`` as a subprocess on its own chDB store.

(b) the consumer exits like SIGKILL right after a batch is inserted and before its offsets are committed
    (``tests.chaos.crashing_consumer`` wraps its delivery), several times; each successor reopens the store, gets the
    batch again and must not store it twice.
(c) the consumer is frozen (SIGSTOP) for longer than its group session, then thawed (SIGCONT) while
    pushes keep arriving; nothing is lost and nothing doubled after recovery.

chDB allows one process per store path, so this test process opens the store only after the consumer
subprocess has stopped (and closes it again).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core import store
from core.kafka import ensure_topics
from core.settings import Settings
from tests.chaos.harness import (
    ASGI_BASE,
    DriveResult,
    Outcome,
    Proc,
    asgi_edge,
    cli_env,
    drive_recorded,
    figures_line,
    make_plan,
    wait_until,
)
from tests.chaos.oracle import Verdict, edge_dead_letters, judge, wait_drained

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]


@pytest.fixture
def own_store(make_settings: Callable[..., Settings], tmp_path: Path) -> Iterator[Callable[..., Settings]]:
    """Settings on a store path of this test only; the session store is closed meanwhile."""
    store.close_all()

    def factory(**kw: object) -> Settings:
        return make_settings(clickhouse_url=f"chdb://{tmp_path / 'clickhouse'}", **kw)

    try:
        yield factory
    finally:
        store.close_all()


def consumer_proc(settings: Settings, log: Path, crash_after: int = 0) -> Proc:
    """``callstream consume``; with ``crash_after`` N, it exits 137 after its Nth insert, before the commit."""
    if crash_after:
        return Proc([str(crash_after), "consume"], cli_env(settings), log, module="tests.chaos.crashing_consumer").start()
    return Proc(["consume"], cli_env(settings), log).start()


def verdict_after(settings: Settings, result: DriveResult) -> Verdict:
    dead = asyncio.run(edge_dead_letters(settings))
    try:
        return judge(settings, result, dead)
    finally:
        store.close_all()


async def push_all(settings: Settings, pushes: list, outcomes: list[Outcome] | None = None) -> DriveResult:
    async with asgi_edge(settings) as client:
        return await drive_recorded(client, ASGI_BASE, pushes, outcomes=outcomes)


@pytest.mark.parametrize(("calls", "crashes"), [pytest.param(60, 2, id="short"),
                                                pytest.param(1500, 10, id="long", marks=pytest.mark.slow)])
def test_consumer_killed_between_insert_and_commit(own_store: Callable[..., Settings], tmp_path: Path,
                                                   calls: int, crashes: int) -> None:
    settings = own_store(batch_max_events=25, flush_interval_ms=50)
    plan = make_plan(51, calls, bad_fraction=0.05, duplicate_fraction=0.1)
    asyncio.run(ensure_topics(settings))
    result = asyncio.run(push_all(settings, plan.pushes))
    codes = []
    started = time.monotonic()
    for n in range(crashes):
        proc = consumer_proc(settings, tmp_path / f"consumer-{n}.log", crash_after=n % 3 + 1)
        try:
            wait_until(lambda p=proc: not p.alive(), 90, f"crash {n} of the consumer")
        finally:
            proc.stop()
        codes.append(proc.process.returncode)  # type: ignore[union-attr]
        assert codes[-1] == 137, proc.log()
    final = consumer_proc(settings, tmp_path / "consumer-final.log")
    try:
        drain_s = asyncio.run(wait_drained(settings, 180))
    finally:
        assert final.stop() == 0, final.log()
    recovery_s = time.monotonic() - started
    verdict = verdict_after(settings, result)
    assert verdict.ok, verdict.problems
    figures_line(f"consumer_crash_after_insert[{calls}]", {
        **result.figures(), **verdict.figures(), "crashes": len(codes), "exit_codes": sorted(set(codes)),
        "final_drain_s": round(drain_s, 2), "crashes_to_drained_s": round(recovery_s, 1)})


@pytest.mark.parametrize(("calls", "stall_s"), [pytest.param(60, 3.0, id="short"),
                                                pytest.param(1000, 15.0, id="long", marks=pytest.mark.slow)])
def test_loader_frozen_then_thawed(own_store: Callable[..., Settings], tmp_path: Path, calls: int,
                                   stall_s: float) -> None:
    settings = own_store(batch_max_events=100)
    first, second = make_plan(61, calls, bad_fraction=0.05), make_plan(62, calls, bad_fraction=0.05)
    asyncio.run(ensure_topics(settings))
    proc = consumer_proc(settings, tmp_path / "consumer.log")
    try:
        r1 = asyncio.run(push_all(settings, first.pushes))
        asyncio.run(wait_drained(settings, 90))
        proc.signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        r2 = asyncio.run(push_all(settings, second.pushes))  # the edge keeps answering 200: Kafka buffers
        remaining = stall_s - (time.monotonic() - frozen_at)
        if remaining > 0:
            time.sleep(remaining)  # the fault itself: the loader stays frozen this long
        proc.signal(signal.SIGCONT)
        thawed_at = time.monotonic()
        asyncio.run(wait_drained(settings, 120))
        recovery_s = time.monotonic() - thawed_at
    finally:
        assert proc.stop() == 0, proc.log()
    result = DriveResult(r1.outcomes + r2.outcomes, r1.elapsed_s + r2.elapsed_s)
    verdict = verdict_after(settings, result)
    assert verdict.ok, verdict.problems
    assert r2.count(200) > 0 and r2.count(503) == 0
    figures_line(f"loader_frozen[{calls}]", {**result.figures(), **verdict.figures(), "frozen_s": stall_s,
                                             "caught_up_after_thaw_s": round(recovery_s, 2)})

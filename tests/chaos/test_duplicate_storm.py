"""Chaos (e): every push sent 7 times, CDRs also re-merged differently -> every record stored exactly once."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import pytest

from callstream.sim_calls import Push, _cdr_push
from core.kafka import ensure_topics
from core.settings import Settings
from tests.chaos.harness import (
    ASGI_BASE,
    asgi_edge,
    consumer_running,
    drive_recorded,
    figures_line,
    make_plan,
)
from tests.chaos.oracle import edge_dead_letters, judge, wait_drained

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(400)]


def storm(pushes: list[Push], seed: int, copies: int = 7) -> list[Push]:
    """``copies`` of every push, plus each CDR re-merged into other pushes of the same app."""
    rng = random.Random(seed)
    out = [p for p in pushes for _ in range(copies)]
    cdr_bodies: dict[tuple[str, str], list[dict]] = {}
    import json

    for p in pushes:
        if p.kind == "cdr" and p.duplicate_of is None:
            cdr_bodies.setdefault((p.service, p.app_key), []).extend(json.loads(p.body)["feeLst"])
    for (service, app_key), cdrs in cdr_bodies.items():
        for _ in range(len(cdrs)):
            out.append(_cdr_push(service, app_key, rng.sample(cdrs, k=min(len(cdrs), rng.randint(1, 5)))))
    for p in out:  # the copies race each other: no per-call ordering
        p.call_index = -1
    rng.shuffle(out)
    return out


@pytest.mark.parametrize("calls", [pytest.param(40, id="short"),
                                   pytest.param(1500, id="long", marks=pytest.mark.slow)])
def test_duplicate_storm_lands_once(make_settings: Callable[..., Settings], calls: int) -> None:
    settings = make_settings(batch_max_events=200)
    plan = make_plan(31, calls, bad_fraction=0.05, duplicate_fraction=0.1)
    pushes = storm(plan.pushes, 31)

    async def run() -> dict:
        await ensure_topics(settings)
        async with consumer_running(settings):
            async with asgi_edge(settings) as client:
                result = await drive_recorded(client, ASGI_BASE, pushes, concurrency=64)
            drain_s = await wait_drained(settings, 120)
        verdict = judge(settings, result, await edge_dead_letters(settings))
        assert verdict.ok, verdict.problems
        return {**result.figures(), **verdict.figures(), "drain_after_last_push_s": round(drain_s, 2),
                "distinct_calls": calls, "copies": 7}

    started = time.monotonic()
    figures = asyncio.run(run())
    figures["wall_s"] = round(time.monotonic() - started, 1)
    assert figures["never_accepted"] == 0
    figures_line("duplicate_storm", figures)

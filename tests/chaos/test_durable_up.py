"""Chaos on the durable `callstream up` (Tansu on its S3 engine over the local SeaweedFS store), real
processes, signed pushes under load:

1. ``kill -9`` of the broker mid-load: `up` restarts it; nothing acknowledged is lost;
2. ``kill -9`` of the object store mid-load: `up` restarts it; the edge answers 503 meanwhile, never 200;
3. power loss: ``kill -9`` of every process of the stack at once mid-load, then `up` again on the same dir.

Then the oracle over every push of all three phases: each record of a push answered 200 is in ClickHouse
exactly once (count() = uniqExact(dedup_key) = distinct records acked); every 4xx has its dead letter;
the raw topic still holds every acknowledged push (from the first one on); the consumer group's
committed offsets did not go back; `replay raw` of a range adds no row; `reconcile` is OK.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from core.kafka import consumer_kwargs
from core.settings import Settings
from tests.chaos.harness import DriveResult, Outcome, drive_recorded, figures_line, make_plan, topic_count
from tests.chaos.oracle import edge_dead_letters, judge, wait_drained
from tests.chaos.up_process import REPO, UpProcess, alive

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]


async def committed_offsets(settings: Settings) -> dict[int, int]:
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings, client_id="proof-offsets"))
    await consumer.start()
    try:
        out = {}
        for partition in range(settings.topic_partitions):
            value = await consumer.committed(TopicPartition(settings.raw_topic, partition))
            out[partition] = value if value is not None else -1
        return out
    finally:
        await consumer.stop()


async def load_with_fault(up: UpProcess, pushes: list[Outcome], rate: float, at_fraction: float,
                          fault: Callable[[], Any]) -> tuple[DriveResult, float]:
    """Drive ``pushes`` at ``rate`` calls/s; call ``fault`` once ``at_fraction`` of them got an answer."""
    async with httpx.AsyncClient(timeout=10) as client:
        drive = asyncio.create_task(drive_recorded(client, up.edge_url, [o.push for o in pushes], rate=rate,
                                                   retry_scale=0.002, outcomes=pushes, stop_after_s=90))
        while sum(1 for o in pushes if o.statuses) < len(pushes) * at_fraction and not drive.done():
            await asyncio.sleep(0.01)
        fault_at = time.monotonic()
        await asyncio.to_thread(fault)
        return await asyncio.wait_for(drive, 240), fault_at


def answers_between(outcomes: list[Outcome], start: float, end: float) -> list[int]:
    return [s for o in outcomes for s, t in zip(o.statuses, o.answered_at, strict=True) if start < t < end]


def run_cli(up: UpProcess, settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(up.env, CALLSTREAM_KAFKA_BOOTSTRAP=settings.kafka_bootstrap, CALLSTREAM_DATA_DIR=str(up.data_dir))
    return subprocess.run([sys.executable, "-m", "callstream.cli", *args],
                          capture_output=True, text=True, timeout=180, env=env, cwd=REPO)


@pytest.mark.parametrize("calls", [pytest.param(60, id="short"), pytest.param(600, id="long", marks=pytest.mark.slow)])
def test_durable_up_survives_broker_store_and_power_loss(tmp_path: Path, calls: int) -> None:
    up = UpProcess(tmp_path / "data")
    figures: dict[str, Any] = {}
    plans = [make_plan(seed, calls, bad_fraction=0.05) for seed in (501, 502, 503)]
    outcomes = [[Outcome(p) for p in plan.pushes] for plan in plans]
    rate = calls / 4
    try:
        up.start()
        settings = up.settings()

        # 1. the broker, mid-load
        def kill_broker() -> None:
            os.kill(up.info()["broker_pid"], signal.SIGKILL)  # type: ignore[index]

        result_1, broker_killed = asyncio.run(load_with_fault(up, outcomes[0], rate, 0.4, kill_broker))
        up.wait_info(lambda i: i["broker_restarts"] >= 1, 30, "up restarted the broker")
        assert 200 in answers_between(outcomes[0], broker_killed + 1, time.monotonic())
        figures["phase1"] = result_1.figures()

        # 2. the object store, mid-load
        def kill_store() -> None:
            os.kill(up.info()["object_store_pid"], signal.SIGKILL)  # type: ignore[index]

        result_2, store_killed = asyncio.run(load_with_fault(up, outcomes[1], rate, 0.4, kill_store))
        up.wait_info(lambda i: i["object_store_restarts"] >= 1, 60, "up restarted the object store")
        while_down = answers_between(outcomes[1], store_killed + 0.2, store_killed + 1.5)
        assert 200 not in while_down, while_down  # nothing is acknowledged that the store did not take
        figures["phase2"] = result_2.figures()
        figures["answers_while_store_down"] = {str(s): while_down.count(s) for s in set(while_down)}
        asyncio.run(wait_drained(settings, 120))
        offsets_before = asyncio.run(committed_offsets(settings))
        raw_before = asyncio.run(topic_count(settings, settings.raw_topic))

        # 3. power loss: every process at once, mid-load; `up` again while the platform keeps pushing
        killed: list[int] = []

        def power_loss() -> None:
            killed.extend(up.power_loss())

        async def power_phase() -> DriveResult:
            load = asyncio.create_task(load_with_fault(up, outcomes[2], rate, 0.3, power_loss))
            while not killed:
                await asyncio.sleep(0.05)
            assert not [pid for pid in killed if alive(pid)], "a process of the stack survived SIGKILL"
            await asyncio.to_thread(up.start)
            result, _ = await load
            return result

        restart_began = time.monotonic()
        result_3 = asyncio.run(power_phase())
        figures["phase3"] = result_3.figures()
        figures["restart_after_power_loss_s"] = round(time.monotonic() - restart_began, 1)
        assert len(killed) == 4, killed  # up, edge, broker, object store

        drain_s = asyncio.run(wait_drained(settings, 180))
        figures["drain_s"] = round(drain_s, 2)
        offsets_after = asyncio.run(committed_offsets(settings))
        assert all(offsets_after[p] >= offsets_before[p] for p in offsets_before), (offsets_before, offsets_after)
        raw_after = asyncio.run(topic_count(settings, settings.raw_topic))
        acked_requests = sum(r.count(200) for r in (result_1, result_2, result_3))
        assert raw_before <= raw_after and raw_after >= acked_requests, (raw_before, raw_after, acked_requests)

        everything = DriveResult([o for group in outcomes for o in group])
        verdict = judge(settings, everything, asyncio.run(edge_dead_letters(settings)), dead_letters_exact=False)
        assert verdict.ok, verdict.problems
        assert sum(verdict.expected.values()) > 0
        figures["oracle"] = verdict.figures()

        # the recovery tools across restarts: a raw range replayed adds no row, reconcile agrees
        replay = run_cli(up, settings, "replay", "raw", "--partition", "0", "--from-offset", "0", "--to-offset", "20")
        assert replay.returncode == 0 and "replayed" in replay.stdout, replay.stdout + replay.stderr
        asyncio.run(wait_drained(settings, 120))
        again = judge(settings, everything, asyncio.run(edge_dead_letters(settings)), dead_letters_exact=False)
        assert again.ok and again.rows == verdict.rows, again.problems
        reconcile = run_cli(up, settings, "reconcile", "--grace-s", "0")
        assert reconcile.returncode == 0 and "OK" in reconcile.stdout, reconcile.stdout + reconcile.stderr
        figures_line("durable_up", {**figures, "raw_records": raw_after, "acked_requests": acked_requests})
        assert up.stop() == 0, up.log()
        assert not (up.data_dir / "children.json").exists()
    finally:
        if up.process is not None and up.process.poll() is None:
            up.power_loss()


def test_second_up_on_taken_metrics_port_is_one_line(tmp_path: Path) -> None:
    """A port in use is refused before anything starts, in one line naming the flag."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        up = UpProcess(tmp_path / "data")
        up.ports["metrics-port"] = taken.getsockname()[1]
        done = subprocess.run(up.args(), capture_output=True, text=True, timeout=60, env=up.env, cwd=REPO)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--metrics-port" in lines[0] and "already in use" in lines[0], done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_orphans_of_a_killed_up_are_stopped(tmp_path: Path) -> None:
    """Children listed by an `up` that is gone are stopped by the next start (pid + start time checked)."""
    from core.processes import record_children, spawn, stop_orphans

    (tmp_path / "data").mkdir()
    child = spawn([sys.executable, "-c", "import time; time.sleep(120)"])
    innocent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        record_children(tmp_path / "data", {"broker": child.pid})
        entries = json.loads((tmp_path / "data" / "children.json").read_text())
        entries.append({"name": "edge", "pid": innocent.pid, "start_ticks": 1})  # a reused pid: not ours
        (tmp_path / "data" / "children.json").write_text(json.dumps(entries))
        assert stop_orphans(tmp_path / "data") == [f"broker (pid {child.pid})"]
        assert child.wait(10) < 0 and innocent.poll() is None
        assert not (tmp_path / "data" / "children.json").exists()
    finally:
        for process in (child, innocent):
            if process.poll() is None:
                process.kill()
                process.wait(5)


def test_full_data_dir_answers_503_never_200(tmp_path: Path) -> None:
    """Below the free-space floor `up` says so in its log and pauses the broker: pushes get 503, not 200."""
    up = UpProcess(tmp_path / "data", env={"CALLSTREAM_DATA_DIR_MIN_FREE_MB": str(10**12),
                                           "CALLSTREAM_ACK_TIMEOUT_S": "0.5"})
    try:
        up.start()
        deadline = time.monotonic() + 30
        while "CALLSTREAM_DATA_DIR_MIN_FREE_MB" not in up.log():
            assert time.monotonic() < deadline, up.log()
            time.sleep(0.1)
        line = next(x for x in up.log().splitlines() if "CALLSTREAM_DATA_DIR_MIN_FREE_MB" in x)
        assert "MB free" in line and "answers 503" in line and str(up.data_dir) in line
        plan = make_plan(601, 4, bad_fraction=0)
        pushes = [Outcome(p) for p in plan.pushes[:6]]

        async def send() -> DriveResult:
            async with httpx.AsyncClient(timeout=10) as client:
                return await drive_recorded(client, up.edge_url, [o.push for o in pushes], outcomes=pushes,
                                            retry_scale=0.0, stop_after_s=5)

        result = asyncio.run(send())
        statuses = [s for o in result.outcomes for s in o.statuses]
        assert statuses and set(statuses) == {503}, statuses
        assert up.stop() == 0, up.log()
    finally:
        if up.process is not None and up.process.poll() is None:
            up.power_loss()

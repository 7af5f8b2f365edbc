"""The prepare worker (``consumers.worker``): a batch prepared in the child is the batch prepared in the
consumer (rows, Avro records, failures, offsets), the recent keys the consumer holds apply to it, a dead
child costs no batch, and the child dies with its parent."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from consumers.decode import Notification
from consumers.prepare import State, drop_recent, prepare
from consumers.worker import PrepareWorker, Raw
from core.settings import Settings
from schemas.avro_envelope import encode_raw_envelope
from tests.helpers import wait_until
from tests.test_consumer_prepare import corpus

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def settings() -> Settings:
    return Settings(number_pepper="worker-pepper-0123456789abcdef", kafka_bootstrap="127.0.0.1:1")


def raw_records(pushes: list[Notification], seed: int) -> list[Raw]:
    """The pushes as the edge publishes them (Avro envelopes), plus records that are not envelopes."""
    rng = random.Random(seed)
    records = []
    for offset, n in enumerate(pushes):
        received = datetime.fromtimestamp(max(n.received_at_us, 0) / 1e6, UTC)
        value = encode_raw_envelope(n.id, received, n.service, n.path, n.event_type, n.app_key, "aksk",
                                    "application/json", "10.0.0.1", n.body)
        records.append(Raw("callstream.raw", offset % 3, offset, value))
    for offset in range(len(records), len(records) + 5):
        records.append(Raw("callstream.raw", 0, offset, rng.choice((None, b"", b"\x00garbage"))))
    return records


def test_the_child_prepares_exactly_what_the_consumer_would(settings: Settings) -> None:
    records = raw_records(corpus(1200, seed=8), seed=8)
    state = State.for_settings(settings)
    here = prepare(records, settings, state, encode=True)
    worker = PrepareWorker(settings)

    async def run() -> tuple[object, int | None]:
        await worker.start()
        return await worker.prepare(records, encode=True), worker.pid

    try:
        there, child = asyncio.run(run())
    finally:
        worker.close()
    assert child is not None and child != os.getpid()
    drop_recent(there, state)  # type: ignore[arg-type]
    assert there.tables == here.tables and sum(map(len, here.tables.values())) > 100  # type: ignore[attr-defined]
    assert there.messages == here.messages  # type: ignore[attr-defined]  # same Avro bytes and headers
    assert there.offsets == here.offsets and there.received == here.received  # type: ignore[attr-defined]
    assert [(f.notification.id, f.record_index, f.stage, f.reason) for f in there.failures] == [  # type: ignore[attr-defined]
        (f.notification.id, f.record_index, f.stage, f.reason) for f in here.failures]
    assert there.notes == here.notes  # type: ignore[attr-defined]
    assert there.notifications == here.notifications  # type: ignore[attr-defined]  # every field, bodies too


def test_a_notification_pickles_with_every_field() -> None:
    """Notification.__reduce__ lists the fields by hand (faster than the slots default): a field added to
    the class and not to it would be lost on the way from the worker."""
    n = Notification("id-1", 1_710_000_000_000_001, "privacy", "/notify/privacy", "fee", "app", b"{}",
                     "callstream.raw", 2, 77, "aksk", "application/json", "10.0.0.9")
    assert len(n.__reduce__()[1]) == len(dataclasses.fields(Notification))
    assert pickle.loads(pickle.dumps(n, pickle.HIGHEST_PROTOCOL)) == n


def test_recent_keys_are_the_consumers(settings: Settings) -> None:
    records = raw_records(corpus(300, seed=3), seed=3)
    state = State.for_settings(settings)
    first = prepare(records, settings, state, encode=True)
    for table in ("cdrs", "call_events"):
        state.recent.add(table, [r["dedup_key"] for r in first.tables[table]])
    worker = PrepareWorker(settings)
    try:
        again = asyncio.run(worker.prepare(records, encode=True))
    finally:
        worker.close()
    assert again.tables["cdrs"] and again.tables["call_events"]  # the child does not know them ...
    drop_recent(again, state)
    assert not again.tables["cdrs"] and not again.tables["call_events"]  # ... the consumer does
    assert not again.messages["cdrs"] and not again.messages["call_events"]
    assert again.tables["number_status"] == first.tables["number_status"]  # judged against the store
    assert again.notes.duplicates == first.notes.duplicates + len(first.tables["cdrs"]) + len(
        first.tables["call_events"])


def test_a_dead_child_costs_no_batch(settings: Settings) -> None:
    records = raw_records(corpus(200, seed=5), seed=5)
    expected = prepare(records, settings, State(), encode=True)
    worker = PrepareWorker(settings)

    async def run() -> list[object]:
        await worker.start()
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGKILL)  # e.g. the kernel's OOM killer
        await asyncio.sleep(0.2)
        lost_child = await worker.prepare(records, encode=True)  # prepared in the consumer instead
        new_child = await worker.prepare(records, encode=True)  # and a new child takes the next one
        return [lost_child, new_child]

    try:
        batches = asyncio.run(run())
    finally:
        worker.close()
    for batch in batches:
        assert batch.tables == expected.tables and batch.messages == expected.messages  # type: ignore[attr-defined]


def test_the_child_dies_with_its_parent(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import asyncio, sys
        sys.path.insert(0, {str(ROOT)!r})
        from consumers.worker import PrepareWorker
        from core.settings import Settings

        async def main():
            worker = PrepareWorker(Settings(number_pepper="worker-pepper-0123456789abcdef"))
            await worker.start()
            print(worker.pid, flush=True)
            await asyncio.sleep(60)

        if __name__ == "__main__":
            asyncio.run(main())
    """))
    # (its resource tracker, killed with it, warns of leaked semaphores on stderr: not what is tested)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        os.kill(child, 0)  # running
        parent.kill()  # kill -9: no clean-up runs in the parent
        parent.wait(10)
        started = time.monotonic()
        wait_until(lambda: not _alive(child), timeout_s=10)
        assert time.monotonic() - started < 10
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        if parent.stdout is not None:
            parent.stdout.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"

"""Shared pieces of the proof suite: an in-process edge (ASGI), an in-process consumer, a platform driver
that records every push's answers, subprocess helpers (``callstream edge`` / ``callstream consume``) and
polling with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from callstream.sim_calls import Push
from callstream.stack import child_env
from core.broker import free_port, stop_process, wait_for_port
from core.settings import Settings
from ingest.app import create_app
from ingest.auth import sign_headers
from tests.conftest import TEST_APP_KEY, TEST_APP_SECRET, TEST_PRIVACY_APP_KEY, TEST_PRIVACY_APP_SECRET
from tests.helpers import await_until, wait_until  # noqa: F401 - the chaos tests import them from here

ASGI_BASE = "http://edge.test"
APPS = {TEST_APP_KEY: TEST_APP_SECRET, TEST_PRIVACY_APP_KEY: TEST_PRIVACY_APP_SECRET}


# --- in-process edge -------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def asgi_edge(settings: Settings, timeout_s: float = 10.0) -> AsyncIterator[httpx.AsyncClient]:
    """The real edge app (real broker) behind ``httpx.ASGITransport``."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5555))
        async with httpx.AsyncClient(transport=transport, base_url=ASGI_BASE, timeout=timeout_s) as client:
            yield client


def signed_headers(push: Push, url: str, rng: random.Random) -> dict[str, str]:
    secret = APPS.get(push.app_key, "")
    if push.bad == "bad_signature":
        secret += "-wrong"
    scheme = "aksk-voice" if push.service == "voice" else "aksk"
    headers = sign_headers(push.app_key, secret, scheme=scheme, url=url, nonce=uuid.uuid4().hex)  # never replayed
    headers["Content-Type"] = "application/json;charset=UTF-8"
    return headers


# --- the platform, with every answer recorded -------------------------------------------------
@dataclass
class Outcome:
    push: Push
    statuses: list[int] = field(default_factory=list)  # 0 = connection error / timeout
    answered_at: list[float] = field(default_factory=list)  # time.monotonic() of each answer
    sent_at: list[float] = field(default_factory=list)  # time.monotonic() when each request was sent

    @property
    def accepted(self) -> bool:
        return 200 in self.statuses

    @property
    def refused(self) -> bool:
        return any(400 <= s < 500 for s in self.statuses)

    def answers(self) -> list[tuple[int, float, float]]:
        """Each request of this push as (status, sent_at, answered_at)."""
        return list(zip(self.statuses, self.sent_at, self.answered_at, strict=True))

    def since(self, moment: float) -> Outcome:
        """This push with only the answers given after ``moment``."""
        kept = [a for a in self.answers() if a[2] > moment]
        return Outcome(self.push, [s for s, _, _ in kept], [t for _, _, t in kept], [b for _, b, _ in kept])


@dataclass
class DriveResult:
    outcomes: list[Outcome]
    elapsed_s: float = 0.0

    def count(self, status: int) -> int:
        return sum(o.statuses.count(status) for o in self.outcomes)

    @property
    def requests(self) -> int:
        return sum(len(o.statuses) for o in self.outcomes)

    def figures(self) -> dict[str, Any]:
        return {
            "pushes": len(self.outcomes), "requests": self.requests, "ok_200": self.count(200),
            "refused_4xx": sum(1 for o in self.outcomes for s in o.statuses if 400 <= s < 500),
            "unavailable_503": self.count(503), "connection_errors": self.count(0),
            "accepted_pushes": sum(1 for o in self.outcomes if o.accepted),
            "never_accepted": sum(1 for o in self.outcomes if o.push.expect_ok and not o.accepted),
            "elapsed_s": round(self.elapsed_s, 2),
        }


async def drive_recorded(
    client: httpx.AsyncClient, base: str, pushes: list[Push], *, retry_scale: float = 0.0002,
    concurrency: int = 32, seed: int = 0, rate: float | None = None, stop_after_s: float = 120.0,
    outcomes: list[Outcome] | None = None,
) -> DriveResult:
    """Send ``pushes`` like the platform (events of a call in order, re-push non-200 on the platform's
    schedule compressed by ``retry_scale``) and record every answer of every push."""
    rng = random.Random(seed)
    outcomes = outcomes if outcomes is not None else [Outcome(p) for p in pushes]
    gate = asyncio.Semaphore(concurrency)
    started = time.monotonic()

    async def send(outcome: Outcome) -> None:
        push = outcome.push
        url = base.rstrip("/") + push.path
        delays = list(push.retry_delays_min) if push.expect_ok else []
        while True:
            async with gate:
                sent_at = time.monotonic()
                try:
                    response = await client.post(url, content=push.body, headers=signed_headers(push, url, rng))
                    status = response.status_code
                except httpx.HTTPError:
                    status = 0
            outcome.statuses.append(status)
            outcome.answered_at.append(time.monotonic())
            outcome.sent_at.append(sent_at)
            if status == 200 or (400 <= status < 500) or not delays:
                return
            if time.monotonic() - started > stop_after_s:
                return
            await asyncio.sleep(delays.pop(0) * 60 * retry_scale)

    by_call: dict[int, list[Outcome]] = {}
    others: list[Outcome] = []
    for o in outcomes:
        (by_call.setdefault(o.push.call_index, []) if o.push.call_index >= 0 else others).append(o)

    async def call_sequence(index: int, items: list[Outcome]) -> None:
        if rate:
            await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
        for o in sorted(items, key=lambda x: x.push.seq):
            await send(o)

    async def loose(i: int, o: Outcome) -> None:
        if rate:
            await asyncio.sleep(max(0.0, started + (i % max(1, len(by_call))) / rate - time.monotonic()))
        await send(o)

    random.Random(seed).shuffle(others)
    await asyncio.gather(*(call_sequence(i, items) for i, items in sorted(by_call.items())),
                         *(loose(i, o) for i, o in enumerate(others)))
    return DriveResult(outcomes, time.monotonic() - started)


def make_plan(seed: int, calls: int, **kw: Any) -> Any:
    """A simulated set of distinct calls for the test apps (see ``callstream.sim_calls``)."""
    from callstream.sim_calls import build_pushes, generate_calls

    return build_pushes(generate_calls(seed, calls, voice_app=TEST_APP_KEY, privacy_app=TEST_PRIVACY_APP_KEY),
                        seed, **kw)


@contextlib.asynccontextmanager
async def consumer_running(settings: Settings, start_timeout_s: float = 30.0, stop_timeout_s: float = 40.0
                           ) -> AsyncIterator[asyncio.Task[None]]:
    """``run_consumer`` as a task of this process; stopped (flush + commit) on exit."""
    from prometheus_client import CollectorRegistry

    from consumers.runner import run_consumer

    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_consumer(settings, stop, registry=CollectorRegistry(), ready=ready))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiter}, timeout=start_timeout_s, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()
    try:
        yield task
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, stop_timeout_s)
        except TimeoutError:
            task.cancel()  # wait_for already cancelled it; kept explicit for readers


def figures_line(case: str, figures: dict[str, Any]) -> str:
    """One greppable line per chaos case: ``CHAOS <case> {json}``."""
    import json

    line = f"CHAOS {case} {json.dumps(figures, sort_keys=True)}"
    print("\n" + line, flush=True)
    return line


# --- Kafka ----------------------------------------------------------------------------------
async def topic_count(settings: Settings, topic: str) -> int:
    """Records on ``topic`` (read through: the embedded broker's ListOffsets "latest" is not exact)."""
    from datetime import UTC, datetime, timedelta

    from callstream.reconcile import scan_topic

    records = await scan_topic(settings, topic, datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(days=1))
    return len(records)


# --- subprocesses -----------------------------------------------------------------------------
def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = child_env(settings)
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Proc:
    """A ``python -m callstream.cli ...`` child (or another ``module``'s) with its log in a file; ``stop()``
    always ends it."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path, module: str = "callstream.cli") -> None:
        self.args, self.env, self.log_path, self.module = args, env, log_path, module
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.args], env=self.env, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=str(Path(__file__).parents[2]),
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.process is not None
            os.kill(self.process.pid, sig)

    def kill(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.kill()
            self.process.wait(10)

    def stop(self, timeout_s: float = 20.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGCONT)
            stop_process(self.process, timeout_s, reap_s=10)
        return self.process.returncode

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


def start_edge(settings: Settings, log_path: Path, port: int | None = None, workers: int = 1) -> tuple[Proc, int]:
    """``callstream edge`` on a free 127.0.0.1 port; waits until it listens."""
    port = port or free_port()
    proc = Proc(["edge", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
                cli_env(settings), log_path).start()
    try:
        wait_for_port("127.0.0.1", port, 30)
    except TimeoutError:
        proc.stop()
        raise AssertionError(f"edge did not listen: {proc.log()}") from None
    return proc, port


@contextlib.contextmanager
def running(*procs: Proc) -> Iterator[None]:
    try:
        yield
    finally:
        for proc in procs:
            proc.stop()

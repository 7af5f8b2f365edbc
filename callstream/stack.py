"""``callstream up``: the whole embedded stack in one command.

Owning process: embedded broker (unless ``--kafka-bootstrap``), migrations, the consumer and the
read-only SQL endpoint over the embedded store (this process holds chDB). Child process: the edge
(``python -m callstream.cli edge``) with the same settings passed as ``CALLSTREAM_*``.

Stop (Ctrl-C / SIGTERM): edge first (graceful drain), then the consumer (flush + commit), then the SQL
endpoint and the broker. ClickHouse data under ``<data-dir>/clickhouse`` survives restarts; the embedded
broker is memory-only, so pushes accepted but not yet loaded when it stops are lost unless the platform
re-pushes them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from callstream import dashboard, query_server
from consumers.numbers import PEPPER_FILE, ensure_pepper_file
from consumers.runner import run_consumer
from core import store
from core.broker import EmbeddedBroker, stop_process, wait_for_port
from core.credentials import (
    credentials_path,
    ensure_dev_credentials,
    remove_stack_file,
    write_stack_file,
)
from core.data_lock import hold_data_dir
from core.errors import ConfigError
from core.kafka import ensure_topics
from core.settings import Settings
from schemas.migrate import apply_migrations

log = logging.getLogger("callstream.stack")


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the stack decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def apply_flags(args: argparse.Namespace, settings: Settings) -> Settings:
    """Settings with the ``up`` flags applied."""
    update: dict[str, Any] = {}
    for flag, field in (
        ("host", "edge_host"),
        ("port", "edge_port"),
        ("query_port", "query_port"),
        ("kafka_bootstrap", "kafka_bootstrap"),
        ("clickhouse_url", "clickhouse_url"),
        ("metrics_port", "consumer_metrics_port"),
    ):
        value = getattr(args, flag, None)
        if value not in (None, ""):
            update[field] = value
    update["data_dir"] = Path(getattr(args, "data_dir", None) or settings.data_dir).resolve()
    return settings.model_copy(update=update)


def child_env(settings: Settings) -> dict[str, str]:
    """The environment of the edge child: every setting spelled out as ``CALLSTREAM_*``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSTREAM_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        env[f"CALLSTREAM_{name.upper()}"] = str(value)
    return env


def data_dir_lock(data_dir: Path) -> contextlib.AbstractContextManager[None]:
    """Hold ``<data-dir>/up.lock`` while running; a second ``up`` on the same dir is refused."""
    return hold_data_dir(
        data_dir,
        refusal="callstream up already runs on {data_dir} (pid {owner}): stop it first, or pass another --data-dir",
    )


def console_text(settings: Settings, info: dict[str, Any], dev_key: tuple[str, str] | None, creds_note: str) -> str:
    edge = info["edge_url"]
    public = settings.public_base_url.rstrip("/") or edge
    lines = [
        "callstream is up.",
        "",
        "Configure these URLs in the Huawei Cloud console (replace the host with the address the platform reaches):",
        f"  Voice Call      status URL (statusUrl) : {public}/notify/voice",
        f"                  CDR URL (feeUrl)       : {public}/notify/voice",
        f"  Privacy Call    call event URL         : {public}/notify/privacy",
        f"                  CDR (fee) URL          : {public}/notify/privacy",
        f"                  X-number status URL    : {public}/notify/privacy",
        "",
        f"App key/secret   : {creds_note}",
    ]
    if dev_key:
        lines.append(f"                   appKey={dev_key[0]} secret={dev_key[1]}")
    lines += [
        f"SQL endpoint     : {info['query_url']}  (ClickHouse HTTP, read-only; `callstream sql \"SELECT ...\"`)",
        f"Dashboard        : {info['dashboard_url'] or 'off (served with the embedded store only)'}",
        f"Metrics          : edge {edge}/metrics, consumer {info['metrics_url'] or 'off'}",
        f"Kafka            : {info['kafka_bootstrap']}{' (embedded, memory-only)' if info['embedded_broker'] else ''}",
        f"Data dir         : {settings.data_dir}",
    ]
    if info["embedded_broker"]:
        lines.append(
            "Note: the embedded broker keeps messages in memory only. Pushes acknowledged but not yet loaded "
            "when it stops are lost unless the platform re-pushes them (privacy events and CDRs are re-pushed, "
            "voice status events are not). Loaded data stays in the ClickHouse store across restarts."
        )
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


def _start_edge(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "callstream.cli", "edge",
        "--host", settings.edge_host, "--port", str(settings.edge_port),
    ]
    out = open(log_path, "ab")  # noqa: SIM115
    try:
        return subprocess.Popen(cmd, env=child_env(settings), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    finally:
        out.close()


def _stop_edge(process: subprocess.Popen[bytes], grace_s: float) -> None:
    if not stop_process(process, grace_s + 5):
        log.warning("edge did not stop within %.0fs; killed it", grace_s + 5)


def _loopback(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


BROKER_RESTART_ATTEMPTS = 5


async def restart_broker(broker: EmbeddedBroker, settings: Settings, consumer_registry: CollectorRegistry,
                         stop: asyncio.Event) -> bool:
    """The embedded broker's process ended on its own: say what was lost, start a new one on the same
    port and re-create the topics. The edge's producer and the consumer reconnect by themselves (the
    consumer re-reads the new, shorter logs from the beginning). False if it cannot be brought back."""
    lag = consumer_registry.get_sample_value("callstream_consumer_lag_events")
    log.error(
        "the embedded broker (pid %s) exited with code %s. It kept messages in memory only, so these are lost: "
        "pushes acknowledged (200) but not yet loaded into ClickHouse (the consumer's last measured lag: %s "
        "records), the dead-letter and downstream topics and the consumer group's offsets. Loaded rows are "
        "safe. Restarting it on %s", broker.pid, broker.returncode, "?" if lag is None else int(lag), broker.bootstrap,
    )
    for attempt in range(1, BROKER_RESTART_ATTEMPTS + 1):
        if stop.is_set():
            return False
        try:
            await asyncio.to_thread(broker.start)
            await asyncio.wait_for(ensure_topics(settings), 30)
            log.warning("the embedded broker is back on %s (pid %s); the edge answers 503 until its producer "
                        "has reconnected, the consumer re-reads the new logs", broker.bootstrap, broker.pid)
            return True
        except (OSError, TimeoutError, KafkaError, ConfigError) as exc:
            log.error("restarting the embedded broker failed (attempt %d of %d): %r", attempt,
                      BROKER_RESTART_ATTEMPTS, exc)
            await asyncio.to_thread(broker.stop)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), attempt)
    return False


async def run_stack(settings: Settings, *, dev_key: tuple[str, str] | None, creds_note: str) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    broker: EmbeddedBroker | None = None
    edge: subprocess.Popen[bytes] | None = None
    consumer_task: asyncio.Task[Any] | None = None
    consumer_stop = asyncio.Event()
    query: _EmbeddedServer | None = None
    query_task: asyncio.Task[Any] | None = None
    data_dir = settings.data_dir
    try:
        if not settings.kafka_bootstrap:
            broker = EmbeddedBroker(log_path=data_dir / "broker.log")
            await asyncio.to_thread(broker.start)
            settings = settings.model_copy(update={"kafka_bootstrap": broker.bootstrap})
        await ensure_topics(settings)
        client = await asyncio.to_thread(store.connect, settings)
        await asyncio.to_thread(apply_migrations, settings, client)

        query_url = dashboard_url = ""
        consumer_registry = CollectorRegistry()
        if settings.clickhouse_is_embedded:
            config = uvicorn.Config(
                query_server.create_app(settings, client, dashboard.routes(settings, client, consumer_registry)),
                host=settings.query_host, port=settings.query_port, log_level="warning", lifespan="off",
            )
            query = _EmbeddedServer(config)
            query_task = asyncio.create_task(query.serve())
            await asyncio.to_thread(wait_for_port, _loopback(settings.query_host), settings.query_port, 15)
            query_url = f"http://{_loopback(settings.query_host)}:{settings.query_port}/"
            dashboard_url = f"{query_url}dashboard/"

        ready = asyncio.Event()
        broker_lost = asyncio.Event()
        consumer_task = asyncio.create_task(run_consumer(settings, consumer_stop, ready=ready,
                                                         registry=consumer_registry, broker_lost=broker_lost))
        edge = _start_edge(settings, data_dir / "edge.log")
        edge_host = _loopback(settings.edge_host)
        deadline = time.monotonic() + 30
        while True:
            if edge.poll() is not None:
                raise ConfigError(f"the edge exited with code {edge.returncode}; see {data_dir / 'edge.log'}")
            if consumer_task.done():
                consumer_task.result()
                raise ConfigError("the consumer stopped during start-up")
            try:
                await asyncio.to_thread(wait_for_port, edge_host, settings.edge_port, 0.5)
                break
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise ConfigError(f"the edge did not listen on port {settings.edge_port} within 30s") from None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), 30)

        metrics = settings.consumer_metrics_port
        info: dict[str, Any] = {
            "pid": os.getpid(),
            "edge_url": f"http://{edge_host}:{settings.edge_port}",
            "query_url": query_url,
            "dashboard_url": dashboard_url,
            "metrics_url": f"http://127.0.0.1:{metrics}/metrics" if metrics else "",
            "edge_metrics_url": f"http://{edge_host}:{settings.edge_port}/metrics",
            "kafka_bootstrap": settings.kafka_bootstrap,
            "embedded_broker": broker is not None,
            "broker_pid": broker.pid if broker is not None else None,
            "broker_restarts": 0,
            "clickhouse_database": settings.clickhouse_database,
            "credentials": str(credentials_path(data_dir)) if dev_key else "",
            "started_at": time.time(),
        }
        write_stack_file(data_dir, info)
        print(console_text(settings, info, dev_key, creds_note), flush=True)

        stop_wait = asyncio.create_task(stop.wait())
        watched: set[asyncio.Future[Any]] = {stop_wait, consumer_task}
        while not stop.is_set():
            done, _ = await asyncio.wait(watched, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
            if consumer_task in done:
                log.error("the consumer stopped: %r; stopping the stack", consumer_task.exception())
                break
            if edge.poll() is not None:
                log.error("the edge exited with code %s; stopping the stack (see %s)", edge.returncode,
                          data_dir / "edge.log")
                break
            if broker is not None and not broker.running and not stop.is_set():
                broker_lost.set()  # the consumer re-reads every partition of the new, empty broker
                if not await restart_broker(broker, settings, consumer_registry, stop):
                    if not stop.is_set():
                        log.error("the embedded broker could not be restarted; stopping the stack (see %s)",
                                  data_dir / "broker.log")
                    break
                info["broker_pid"] = broker.pid
                info["broker_restarts"] += 1
                write_stack_file(data_dir, info)
        stop_wait.cancel()
        failed = not stop.is_set()
        print("callstream: stopping (edge, then consumer, then broker) ...", flush=True)
        return 1 if failed else 0
    finally:
        remove_stack_file(data_dir)
        if edge is not None:
            await asyncio.to_thread(_stop_edge, edge, settings.shutdown_grace_s)
        if consumer_task is not None:
            consumer_stop.set()
            # with the embedded broker dead the consumer cannot leave its group: do not wait for that long
            consumer_wait_s = settings.shutdown_grace_s + 20 if broker is None or broker.running else 5
            try:
                await asyncio.wait_for(asyncio.shield(consumer_task), consumer_wait_s)
            except TimeoutError:
                log.warning("the consumer did not stop in time; cancelling it")
                consumer_task.cancel()
                with contextlib.suppress(BaseException):
                    await consumer_task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
                log.warning("the consumer ended cancelled while stopping (its broker connection was gone)")
            except Exception:
                log.exception("the consumer failed")
        if query is not None and query_task is not None:
            query.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(query_task, 10)
        if broker is not None:
            await asyncio.to_thread(broker.stop)
        store.close_all()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def main(args: argparse.Namespace, settings: Settings) -> int:
    settings = apply_flags(args, settings)
    data_dir = settings.data_dir
    with data_dir_lock(data_dir):
        dev_key: tuple[str, str] | None = None
        if settings.auth == "on" and not settings.app_secrets():
            key, secret, created = ensure_dev_credentials(data_dir)
            dev_key = (key, secret)
            settings = settings.model_copy(update={"apps_file": credentials_path(data_dir)})
            state = "created" if created else "reused"
            creds_note = f"development pair {state} in {credentials_path(data_dir)} (set CALLSTREAM_APPS for real apps)"
        elif settings.auth == "off":
            creds_note = "auth is OFF (CALLSTREAM_AUTH=off): pushes are not verified"
        else:
            creds_note = f"{len(settings.app_secrets())} app(s) from CALLSTREAM_APPS / CALLSTREAM_APPS_FILE"
        if not settings.number_pepper and settings.number_pepper_file is None:
            settings = settings.model_copy(update={"number_pepper_file": ensure_pepper_file(data_dir / PEPPER_FILE)})
        return asyncio.run(run_stack(settings, dev_key=dev_key, creds_note=creds_note))

"""``callstream up``: the whole embedded stack in one command.

Owning process: migrations, the consumer and the read-only SQL endpoint over the embedded store (this
process holds chDB). Child processes: the embedded broker and its object store (unless
``--kafka-bootstrap``; supervised by :mod:`callstream.supervise`) and the edge
(``python -m callstream.cli edge``) with the same settings passed as ``CALLSTREAM_*``. Every child dies
with ``up`` (even a ``kill -9`` of it); the next ``up`` stops any child of a killed one that is still alive.

Stop (Ctrl-C / SIGTERM): edge first (graceful drain), then the consumer (flush + commit), then the SQL
endpoint and the broker. Data lives under ``<data-dir>/``: ClickHouse in ``clickhouse/``, the durable
broker's topics, dead letters and consumer offsets in ``objectstore/``; both survive restarts and crashes.
With ``--broker memory`` the broker keeps everything in memory, so pushes accepted but not yet loaded
when it stops are lost unless the platform re-pushes them.
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
from prometheus_client import CollectorRegistry

from callstream import dashboard, query_server
from callstream.supervise import DataDirGuard, EmbeddedKafka, refuse_taken_ports
from consumers.pepper import PEPPER_FILE, ensure_pepper_file
from consumers.runner import run_consumer
from core import store
from core.credentials import (
    credentials_path,
    ensure_dev_credentials,
    remove_stack_file,
    write_stack_file,
)
from core.data_lock import hold_data_dir
from core.errors import ConfigError
from core.kafka import ensure_topics
from core.processes import spawn, stop_orphans, stop_process, wait_for_port
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
        ("broker", "broker"),
        ("broker_port", "broker_port"),
        ("object_store_port", "object_store_port"),
    ):
        value = getattr(args, flag, None)
        if value not in (None, ""):
            update[field] = value
    update["data_dir"] = Path(getattr(args, "data_dir", None) or settings.data_dir).resolve()
    return settings.model_copy(update=update)


def child_env(settings: Settings) -> dict[str, str]:
    """The environment of the edge child: every setting spelled out as ``CALLSTREAM_*``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSTREAM_")}
    env.update(settings.environment())
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
        f"Kafka            : {info['kafka_bootstrap']} ({info['broker_description']})",
        f"Data dir         : {settings.data_dir}",
    ]
    if settings.clickhouse_is_embedded:
        lines.append(f"  ClickHouse     : {settings.data_dir / 'clickhouse'}")
    if info["broker_mode"] == "durable":
        lines.append(f"  broker (topics, dead letters, consumer offsets): {settings.data_dir / 'objectstore'}")
    lines.append(f"  logs           : {settings.data_dir}/{{edge,broker,objectstore}}.log")
    if info["broker_mode"] == "memory":
        lines += [
            "",
            "!!! WARNING: --broker memory: the embedded broker keeps messages IN MEMORY ONLY. Pushes answered 200 "
            "but not yet loaded are LOST when it stops or crashes, with the raw topic, the dead letters and the "
            "consumer offsets (privacy events and CDRs are re-pushed by the platform, voice status events are "
            "not). Loaded rows stay in ClickHouse. Drop --broker memory for the durable broker. !!!",
            "",
        ]
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


def _start_edge(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "callstream.cli", "edge",
        "--host", settings.edge_host, "--port", str(settings.edge_port),
    ]
    return spawn(cmd, log_path=log_path, env=child_env(settings), new_session=False)


def _stop_edge(process: subprocess.Popen[bytes], grace_s: float) -> None:
    if not stop_process(process, grace_s + 5):
        log.warning("edge did not stop within %.0fs; killed it", grace_s + 5)


def _loopback(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


async def run_stack(settings: Settings, *, dev_key: tuple[str, str] | None, creds_note: str) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    broker: EmbeddedKafka | None = None
    edge: subprocess.Popen[bytes] | None = None
    consumer_task: asyncio.Task[Any] | None = None
    consumer_stop = asyncio.Event()
    query: _EmbeddedServer | None = None
    query_task: asyncio.Task[Any] | None = None
    data_dir = settings.data_dir
    try:
        if not settings.kafka_bootstrap:
            broker = EmbeddedKafka(settings)
            await broker.start()  # returns once the broker serves, its topics created
            settings = broker.settings  # with the embedded broker's address
        else:
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
        if broker is not None:
            broker.record(edge.pid)
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
            "broker_mode": settings.broker if broker is not None else "external",
            "broker_description": broker.describe() if broker is not None else "external Kafka",
            "broker_pid": broker.pids()["broker"] if broker is not None else None,
            "broker_restarts": 0,
            "object_store_pid": broker.pids()["object_store"] if broker is not None else None,
            "object_store_url": broker.store.endpoint if broker is not None and broker.store else "",
            "object_store_restarts": 0,
            "edge_pid": edge.pid,
            "clickhouse_database": settings.clickhouse_database,
            "credentials": str(credentials_path(data_dir)) if dev_key else "",
            "started_at": time.time(),
        }
        write_stack_file(data_dir, info)
        print(console_text(settings, info, dev_key, creds_note), flush=True)

        stop_wait = asyncio.create_task(stop.wait())
        watched: set[asyncio.Future[Any]] = {stop_wait, consumer_task}
        guard = DataDirGuard(data_dir, settings.data_dir_min_free_mb)
        while not stop.is_set():
            done, _ = await asyncio.wait(watched, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
            if consumer_task in done:
                log.error("the consumer stopped: %r; stopping the stack", consumer_task.exception())
                break
            if edge.poll() is not None:
                log.error("the edge exited with code %s; stopping the stack (see %s)", edge.returncode,
                          data_dir / "edge.log")
                break
            problem = await asyncio.to_thread(guard.check)
            if broker is not None:
                broker.hold(bool(problem))
            if broker is not None and not stop.is_set():
                restarted = await broker.watch(consumer_registry, stop, broker_lost)
                if restarted is False:
                    if not stop.is_set():
                        log.error("the embedded broker could not be restarted; stopping the stack (see %s)",
                                  data_dir / "broker.log")
                    break
                if restarted:
                    pids = broker.pids()
                    info.update(broker_pid=pids["broker"], object_store_pid=pids["object_store"],
                                broker_restarts=broker.restarts["broker"],
                                object_store_restarts=broker.restarts["object_store"])
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
            consumer_wait_s = settings.shutdown_grace_s + 20 if broker is None or broker.broker.running else 5
            try:
                await asyncio.wait_for(asyncio.shield(consumer_task), consumer_wait_s)
            except TimeoutError:
                log.warning("the consumer did not stop in time; cancelling it")
                consumer_task.cancel()
                try:
                    await consumer_task
                except asyncio.CancelledError:
                    pass  # what cancel() asked for
                except Exception:
                    log.exception("the consumer failed while it was cancelled")
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
                log.warning("the consumer ended cancelled while stopping (its broker connection was gone)")
            except Exception:
                log.exception("the consumer failed")
        if query is not None and query_task is not None:
            query.should_exit = True
            try:
                await asyncio.wait_for(query_task, 10)
            except TimeoutError:
                log.warning("the query endpoint did not stop within 10s")
            except Exception:
                log.exception("the query endpoint failed while stopping")
        if broker is not None:
            await broker.stop()
        (data_dir / "children.json").unlink(missing_ok=True)
        store.close_all()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def main(args: argparse.Namespace, settings: Settings) -> int:
    settings = apply_flags(args, settings)
    data_dir = settings.data_dir
    with data_dir_lock(data_dir):
        for orphan in stop_orphans(data_dir):
            log.warning("stopped %s left running by an `up` on %s that was killed", orphan, data_dir)
        refuse_taken_ports(settings, embedded_broker=not settings.kafka_bootstrap)
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
        if not settings.number_pepper.get_secret_value() and settings.number_pepper_file is None:
            settings = settings.model_copy(update={"number_pepper_file": ensure_pepper_file(data_dir / PEPPER_FILE)})
        return asyncio.run(run_stack(settings, dev_key=dev_key, creds_note=creds_note))

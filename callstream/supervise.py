"""The embedded broker of ``callstream up`` under supervision: start, watch, restart, stop.

Durable mode (the default): a SeaweedFS object store (:mod:`core.objectstore`) under
``<data-dir>/objectstore`` and Tansu on its S3 engine. Either process that dies is started again on the
same ports; nothing acknowledged is lost, the consumer resumes from its committed offsets. Memory mode
(``--broker memory``): Tansu alone; a restart starts empty, which the log says, and the consumer re-reads
the new logs from the beginning.

Before anything starts, :func:`refuse_taken_ports` turns a port in use into one line naming its flag.
:class:`DataDirGuard` logs, once per change, when the data dir runs low on space or turns read-only; while
it does, the durable broker is paused (SIGSTOP), so the edge's writes time out and it answers 503: no
``200`` is given for a push the disk may not keep. The broker resumes (SIGCONT) once the dir is fine.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import time
from pathlib import Path

from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from core.broker import DurableStorage, EmbeddedBroker
from core.errors import BrokerError, ConfigError
from core.kafka import ensure_topics, kafka_error
from core.objectstore import ObjectStore
from core.processes import port_free, record_children
from core.settings import Settings

log = logging.getLogger("callstream.stack")

RESTART_ATTEMPTS = 5
BROKER_SERVES_S = 30.0


async def topics_when_served(settings: Settings, timeout_s: float) -> None:
    """Create the topics once the broker serves requests. A durable broker listens before its object
    store serves it, so a retriable broker error is retried until ``timeout_s``; then it is raised."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await asyncio.wait_for(ensure_topics(settings), max(deadline - time.monotonic(), 0.1))
            return
        except (KafkaError, OSError, TimeoutError) as exc:
            error = kafka_error(exc, f"create the topics on {settings.kafka_bootstrap}")
            if not error.retriable or time.monotonic() >= deadline:
                raise error from exc
            log.info("the broker does not serve yet (%r); retrying", exc)
            await asyncio.sleep(0.5)


def refuse_taken_ports(settings: Settings, *, embedded_broker: bool) -> None:
    """Raise ``ConfigError`` naming the flag of the first port ``up`` would open that is already taken."""
    wanted = [("--port", settings.edge_host or "0.0.0.0", settings.edge_port),
              ("--metrics-port", "127.0.0.1", settings.consumer_metrics_port)]
    if settings.clickhouse_is_embedded:
        wanted.append(("--query-port", settings.query_host, settings.query_port))
    if embedded_broker:
        wanted.append(("--broker-port", "127.0.0.1", settings.broker_port))
        if settings.broker == "durable":
            wanted.append(("--object-store-port", "127.0.0.1", settings.object_store_port))
    for flag, host, port in wanted:
        if port and not port_free(host, port):
            raise ConfigError(f"port {port} is already in use ({flag}): stop what listens there or pass "
                              f"another {flag} (two stacks on one host need their own ports and --data-dir)")


class DataDirGuard:
    """Checks free space and writability of the data dir every ``interval_s``; logs each change once."""

    def __init__(self, data_dir: Path, min_free_mb: int, interval_s: float = 5.0) -> None:
        self.data_dir, self.min_free_mb, self.interval_s = data_dir, min_free_mb, interval_s
        self.problem = ""
        self._next = 0.0

    def check(self) -> str:
        """The current problem ("" when fine); logs when it appears or goes away."""
        now = time.monotonic()
        if now < self._next:
            return self.problem
        self._next = now + self.interval_s
        problem = ""
        try:
            stat = os.statvfs(self.data_dir)
            free_mb = stat.f_bavail * stat.f_frsize // (1024 * 1024)
            if free_mb < self.min_free_mb:
                problem = (f"the data dir {self.data_dir} has {free_mb} MB free (< CALLSTREAM_DATA_DIR_MIN_FREE_MB="
                           f"{self.min_free_mb})")
            probe = self.data_dir / ".write-probe"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT):
                problem = f"the data dir {self.data_dir} cannot be written ({exc.strerror})"
            else:
                raise
        if problem and not self.problem:
            log.error("%s: the broker is paused, so the edge answers 503 and nothing is acknowledged until space "
                      "is freed / the dir is writable again", problem)
        elif self.problem and not problem:
            log.warning("the data dir %s is writable again with enough free space", self.data_dir)
        self.problem = problem
        return problem


class EmbeddedKafka:
    """The embedded broker (and, durable, its object store) of one ``up`` on ``settings.data_dir``."""

    def __init__(self, settings: Settings) -> None:
        data_dir = settings.data_dir
        self.store: ObjectStore | None = None
        storage = None
        if settings.broker == "durable":
            self.store = ObjectStore(data_dir / "objectstore", settings.object_store_port or None,
                                     log_path=data_dir / "objectstore.log", die_with_parent=True)
            storage = DurableStorage(self.store)
        self.broker = EmbeddedBroker(settings.broker_port or None, log_path=data_dir / "broker.log", storage=storage,
                                     die_with_parent=True)
        self.settings = settings.model_copy(update={"kafka_bootstrap": self.broker.bootstrap})
        self.restarts = {"broker": 0, "object_store": 0}
        self.edge_pid: int | None = None
        self.paused = False

    @property
    def durable(self) -> bool:
        return self.store is not None

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def pids(self) -> dict[str, int | None]:
        return {"broker": self.broker.pid, "object_store": self.store.pid if self.store else None}

    def describe(self) -> str:
        if self.store is None:
            return "embedded Tansu, MEMORY ONLY (--broker memory): nothing it holds survives a restart"
        return f"embedded Tansu, durable: S3 store on {self.store.endpoint}, data in {self.store.root}"

    async def start(self) -> None:
        # spawned from the event loop's thread: the children's death signal follows the forking thread
        if self.store is not None:
            self.store.spawn()
            self._record()
            await asyncio.to_thread(self.store.wait_ready, 60)
        self.broker.spawn()
        self._record()
        try:
            await asyncio.to_thread(self.broker.wait_ready, 15)
        except TimeoutError:
            raise ConfigError(f"the embedded broker did not listen on {self.bootstrap} within 15s; "
                              f"see {self.settings.data_dir / 'broker.log'}") from None
        await topics_when_served(self.settings, BROKER_SERVES_S)

    def _record(self) -> None:
        record_children(self.settings.data_dir, {**self.pids(), "edge": self.edge_pid})

    def record(self, edge_pid: int | None) -> None:
        """List ``up``'s children (this broker, its store, the edge) for the next start's orphan check."""
        self.edge_pid = edge_pid
        self._record()

    def hold(self, paused: bool) -> None:
        """Pause (SIGSTOP) or resume (SIGCONT) the durable broker; a memory broker keeps nothing on disk."""
        pid = self.broker.pid
        if self.store is None or paused == self.paused or pid is None or not self.broker.running:
            return
        os.killpg(pid, signal.SIGSTOP if paused else signal.SIGCONT)
        self.paused = paused

    async def stop(self) -> None:
        self.hold(False)
        await asyncio.to_thread(self.broker.stop)
        if self.store is not None:  # crash-safe: a store that does not stop in 3 s is killed
            await asyncio.to_thread(self.store.stop, 3.0)

    async def watch(self, consumer_registry: CollectorRegistry, stop: asyncio.Event,
                    broker_lost: asyncio.Event) -> bool | None:
        """Restart whatever died. None: all was running; True: restarted; False: could not be brought back."""
        if self.store is not None and not self.store.running:
            log.error("the object store (pid %s) exited with code %s. Acknowledged pushes are on disk under %s; "
                      "until it is back the broker cannot store, so the edge answers 503. Restarting it on %s",
                      self.store.pid, self.store.returncode, self.store.root, self.store.endpoint)
            if not await self._restart("object_store", stop):
                return False
            self.restarts["object_store"] += 1
            if self.broker.running:
                return True
        if self.broker.running:
            return None
        self.paused = False
        if self.store is None:
            lag = consumer_registry.get_sample_value("callstream_consumer_lag_events")
            log.error(
                "the embedded broker (pid %s) exited with code %s. It kept messages in memory only (--broker memory), "
                "so these are lost: pushes acknowledged (200) but not yet loaded into ClickHouse (the consumer's "
                "last measured lag: %s records), the dead-letter and downstream topics and the consumer group's "
                "offsets. Loaded rows are safe. Restarting it on %s",
                self.broker.pid, self.broker.returncode, "?" if lag is None else int(lag), self.bootstrap)
            broker_lost.set()  # the consumer re-reads every partition of the new, empty broker
        else:
            log.error("the embedded broker (pid %s) exited with code %s. It is durable: acknowledged pushes, "
                      "topics and committed offsets are in the object store. Restarting it on %s",
                      self.broker.pid, self.broker.returncode, self.bootstrap)
        if not await self._restart("broker", stop):
            return False
        self.restarts["broker"] += 1
        return True

    async def _restart(self, name: str, stop: asyncio.Event) -> bool:
        for attempt in range(1, RESTART_ATTEMPTS + 1):
            if stop.is_set():
                return False
            try:
                if name == "object_store" and self.store is not None:
                    self.store.spawn()
                    self._record()
                    await asyncio.to_thread(self.store.wait_ready, 60)
                else:
                    self.broker.spawn()
                    self._record()
                    await asyncio.to_thread(self.broker.wait_ready, 15)
                    await topics_when_served(self.settings, BROKER_SERVES_S)
                log.warning("the %s is back (pid %s); the edge answers 503 until its producer has reconnected",
                            name.replace("_", " "), self.pids()[name])
                return True
            except (OSError, TimeoutError, KafkaError, BrokerError, ConfigError) as exc:
                log.error("restarting the %s failed (attempt %d of %d): %r", name.replace("_", " "), attempt,
                          RESTART_ATTEMPTS, exc)
                if name == "object_store" and self.store is not None:
                    await asyncio.to_thread(self.store.stop)
                else:
                    await asyncio.to_thread(self.broker.stop)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), attempt)
        return False

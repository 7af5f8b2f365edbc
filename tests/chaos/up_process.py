"""`callstream up` as a real subprocess for the chaos cases: fixed free ports (so a restarted stack answers
where the platform keeps pushing), the test apps' credentials, every child's pid from ``stack.json`` and
``children.json``, and a power-loss kill (SIGKILL of every process of the stack at once).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from core.processes import free_port
from core.settings import Settings
from tests.conftest import TEST_APP_KEY, TEST_APP_SECRET, TEST_PRIVACY_APP_KEY, TEST_PRIVACY_APP_SECRET

REPO = Path(__file__).parents[2]


class UpProcess:
    def __init__(self, data_dir: Path, *, broker: str = "durable", env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.broker = broker
        self.ports = {name: free_port() for name in ("port", "query-port", "metrics-port", "broker-port",
                                                     "object-store-port")}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSTREAM_")}
        self.env.update({"CALLSTREAM_SHUTDOWN_GRACE_S": "3", "PYTHONUNBUFFERED": "1",
                         "CALLSTREAM_APPS": f"{TEST_APP_KEY}:{TEST_APP_SECRET},"
                                            f"{TEST_PRIVACY_APP_KEY}:{TEST_PRIVACY_APP_SECRET}"})
        self.env.update(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / "up.log"
        self.starts = 0

    @property
    def edge_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['port']}"

    def args(self) -> list[str]:
        args = [sys.executable, "-m", "callstream.cli", "up", "--data-dir", str(self.data_dir), "--host", "127.0.0.1",
                "--broker", self.broker]
        for flag, port in self.ports.items():
            if flag != "object-store-port" or self.broker == "durable":
                args += [f"--{flag}", str(port)]
        return args

    def start(self, timeout_s: float = 120.0) -> dict[str, Any]:
        self.starts += 1
        with open(self.log_path, "ab") as out:
            out.write(f"\n===== start {self.starts} =====\n".encode())
            out.flush()
            self.process = subprocess.Popen(self.args(), stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=self.env, cwd=REPO)
        return self.wait_info(lambda info: True, timeout_s, "up started")

    def info(self) -> dict[str, Any] | None:
        try:
            info = json.loads((self.data_dir / "stack.json").read_text())
        except (OSError, ValueError):
            return None
        if self.process is None or info.get("pid") != self.process.pid:
            return None  # the file of an earlier, killed `up`
        return dict(info)

    def wait_info(self, check: Any, timeout_s: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            info = self.info()
            if info is not None and check(info):
                return info
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"up exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout_s:.0f}s\n{self.log()}")
            time.sleep(0.1)

    def settings(self) -> Settings:
        """What a test needs to read this stack: its broker, and its SQL endpoint as the ClickHouse URL."""
        return Settings(
            data_dir=self.data_dir, kafka_bootstrap=f"127.0.0.1:{self.ports['broker-port']}",
            clickhouse_url=f"http://127.0.0.1:{self.ports['query-port']}/",
            number_pepper_file=self.data_dir / "number_pepper", apps=self.env["CALLSTREAM_APPS"],
        )

    def pids(self) -> list[int]:
        """Every process of the stack: `up` and the children it listed."""
        pids = [self.process.pid] if self.process is not None and self.process.poll() is None else []
        try:
            pids += [int(e["pid"]) for e in json.loads((self.data_dir / "children.json").read_text())]
        except (OSError, ValueError):
            pass
        return pids

    def power_loss(self) -> list[int]:
        """SIGKILL every process of the stack at once; returns their pids."""
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.process is not None:
            self.process.wait(10)
        # a killed process needs a moment to exit (a big one frees its memory first): wait, bounded
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.02)
        return pids

    def stop(self, timeout_s: float = 60.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.power_loss()
        return self.process.returncode

    def log(self) -> str:
        """The end of `up`'s log, its own lines first (the Kafka clients' retries can fill the tail)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        own = [line for line in text.splitlines() if "callstream" in line and "aiokafka" not in line]
        return "\n".join(own[-40:]) + "\n----- last lines -----\n" + text[-3000:]


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"

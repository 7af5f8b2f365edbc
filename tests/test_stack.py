"""`callstream up` as a subprocess on free ports and a temporary data dir, driven by `callstream simulate`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import httpx
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from core.broker import free_port

CLI = [sys.executable, "-m", "callstream.cli"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSTREAM_")}
    env["CALLSTREAM_SHUTDOWN_GRACE_S"] = "3"
    return env


class Stack:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.edge_port, self.query_port, self.metrics_port = free_port(), free_port(), free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"up-{time.monotonic_ns()}.log"

    def start(self, timeout_s: float = 90) -> dict[str, object]:
        out = open(self.log, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [*CLI, "up", "--data-dir", str(self.data_dir), "--host", "127.0.0.1", "--port", str(self.edge_port),
             "--query-port", str(self.query_port), "--metrics-port", str(self.metrics_port)],
            stdout=out, stderr=subprocess.STDOUT, env=_env(),
        )
        out.close()
        deadline = time.monotonic() + timeout_s
        stack_file = self.data_dir / "stack.json"
        while not stack_file.exists():
            assert self.process.poll() is None, f"up exited: {self.log.read_text()}"
            assert time.monotonic() < deadline, f"up did not start: {self.log.read_text()}"
            time.sleep(0.1)
        return json.loads(stack_file.read_text())

    def stop(self, timeout_s: float = 60) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def _run(args: list[str], timeout_s: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout_s, env=_env())


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    running = Stack(tmp_path / "data")
    try:
        yield running
    finally:
        running.kill()


def test_up_simulate_verify_sql_restart(stack: Stack) -> None:
    info = stack.start()
    data = str(stack.data_dir)
    creds = stack.data_dir / "credentials"
    assert creds.stat().st_mode & 0o777 == 0o600 and ":" in creds.read_text()
    assert info["edge_url"] == f"http://127.0.0.1:{stack.edge_port}"
    assert info["query_url"] == f"http://127.0.0.1:{stack.query_port}/"
    banner = stack.log.read_text()
    assert "/notify/voice" in banner and "/notify/privacy" in banner
    assert "durable" in banner and str(stack.data_dir / "objectstore") in banner and "MEMORY ONLY" not in banner

    second = _run(["up", "--data-dir", data, "--port", str(free_port()), "--query-port", str(free_port())], 60)
    assert second.returncode != 0 and "already runs" in second.stderr

    sim = _run(["simulate", "--data-dir", data, "--verify", "--count", "200", "--seed", "7", "--verify-timeout", "90"])
    assert sim.returncode == 0, sim.stdout + sim.stderr
    assert "verify: OK" in sim.stdout

    out = _run(["sql", "--data-dir", data, "--format", "TSV", "SELECT count() FROM callstream.cdrs"], 60)
    assert out.returncode == 0, out.stderr
    cdrs = int(out.stdout)
    assert cdrs == 200
    client = clickhouse_connect.get_client(host="127.0.0.1", port=stack.query_port, database="callstream")
    try:
        assert client.command("SELECT count() FROM cdrs") == cdrs
        assert client.query("SELECT count() FROM call_events WHERE session_id != {s:String}",
                            parameters={"s": ""}).result_rows[0][0] > cdrs
        with pytest.raises(DatabaseError, match="read-only"):
            client.command("TRUNCATE TABLE cdrs")
    finally:
        client.close()
    assert httpx.get(f"http://127.0.0.1:{stack.query_port}/ping").text == "Ok.\n"

    assert stack.stop() == 0
    assert not (stack.data_dir / "stack.json").exists()
    direct = _run(["sql", "--data-dir", data, "--format", "TSV", "SELECT count() FROM callstream.cdrs"], 60)
    assert direct.returncode == 0 and int(direct.stdout) == cdrs, direct.stderr

    stack.start()
    again = _run(["sql", "--data-dir", data, "--format", "TSV", "SELECT count() FROM callstream.cdrs"], 60)
    assert again.returncode == 0 and int(again.stdout) == cdrs, again.stderr
    assert "reused" in stack.log.read_text()
    assert stack.stop() == 0

"""`callstream edge` as a real uvicorn process on a free port: it serves, publishes and stops cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from core.broker import free_port, stop_process, wait_for_port
from core.settings import Settings
from ingest.auth import sign_headers
from schemas.avro_codec import decode
from tests.conftest import TEST_APP_KEY, TEST_APP_SECRET, sample_bytes
from tests.helpers import read_records


def test_edge_command_serves_and_shuts_down(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSTREAM_")}
    env.update(
        CALLSTREAM_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        CALLSTREAM_APPS=f"{TEST_APP_KEY}:{TEST_APP_SECRET}",
        CALLSTREAM_RAW_TOPIC=settings.raw_topic,
        CALLSTREAM_DEAD_TOPIC=settings.dead_topic,
        CALLSTREAM_TOPIC_PARTITIONS=str(settings.topic_partitions),
        CALLSTREAM_PUBLIC_BASE_URL="https://calls.example.com/hooks",
        CALLSTREAM_SHUTDOWN_GRACE_S="3",
    )
    log = tmp_path / "edge.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "callstream.cli", "edge", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port("127.0.0.1", port, 20)
        base = f"http://127.0.0.1:{port}"
        body = sample_bytes("voice_notify_status_answer.json")
        headers = sign_headers(
            TEST_APP_KEY, TEST_APP_SECRET, scheme="aksk-voice", url="https://calls.example.com/hooks/notify/voice"
        )
        with httpx.Client(base_url=base, timeout=10) as client:
            deadline = time.monotonic() + 15
            while client.get("/health/ready").status_code != 200:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            response = client.post("/notify/voice", content=body, headers=headers)
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == "application/json;charset=UTF-8"
            assert "callstream_edge_sent_events_total" in client.get("/metrics").text
        (record,) = asyncio.run(read_records(settings, settings.raw_topic, 1))
        envelope = decode(record.value)[1]
        assert envelope["body"] == body and envelope["auth_scheme"] == "aksk-voice"
        assert envelope["remote_addr"] == "127.0.0.1"
    finally:
        if not stop_process(process, 15):
            pytest.fail("edge did not stop within 15 s of SIGTERM")
    code = process.returncode
    # uvicorn re-raises the captured SIGTERM after its graceful shutdown (exit by signal, like any daemon)
    assert code in (0, -signal.SIGTERM), log.read_text()
    assert "Application shutdown complete" in log.read_text()

"""Pipeline.prepare_async (used while the previous batch is delivered) gives exactly prepare's batch."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from consumers import pipeline, prepare
from consumers.metrics import ConsumerMetrics
from consumers.pipeline import Pipeline
from core.settings import Settings
from schemas.avro_codec import encode
from tests.conftest import sample_paths


def _records(copies: int) -> list[ConsumerRecord]:
    out = []
    for n in range(copies):
        for path in sample_paths():
            body = Path(path).read_bytes()
            service = "privacy" if Path(path).name.startswith("privacy") else "voice"
            value = encode("raw_envelope", {
                "id": uuid.UUID(int=len(out)).hex, "received_at": 1_710_200_000_000_000 + n, "service": service,
                "path": f"/notify/{service}", "event_type": "", "app_key": "app", "auth_scheme": "aksk",
                "content_type": "application/json", "remote_addr": "10.0.0.1", "body": body,
            })
            out.append(ConsumerRecord("raw", n % 3, len(out), 0, 0, b"k", value, None, 1, len(value), []))
    out.append(ConsumerRecord("raw", 0, len(out), 0, 0, b"k", b"not avro", None, 1, 8, []))
    return out


def _pipeline() -> Pipeline:
    settings = Settings(number_pepper="p" * 32, kafka_bootstrap="127.0.0.1:1")
    return Pipeline(settings, None, None, ConsumerMetrics(CollectorRegistry()))  # type: ignore[arg-type]


def test_prepare_async_matches_prepare_and_yields_between_steps(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(prepare, "_STEP", 7)  # several turns of the loop for a small batch
    records = _records(3)
    expected = _pipeline().prepare(records)
    turns = 0

    async def run() -> pipeline.Batch:
        nonlocal turns

        async def count() -> None:
            nonlocal turns
            while True:
                await asyncio.sleep(0)
                turns += 1

        counter = asyncio.create_task(count())
        try:
            return await _pipeline().prepare_async(records)
        finally:
            counter.cancel()

    got = asyncio.run(run())
    assert got.tables == expected.tables and sum(map(len, got.tables.values())) > 0
    assert got.offsets == expected.offsets and got.received == expected.received == len(records)
    assert [(f.notification.id, f.stage, f.reason) for f in got.failures] == [
        (f.notification.id, f.stage, f.reason) for f in expected.failures] != []
    assert turns >= len(records) // 7  # other tasks (the previous delivery) ran meanwhile

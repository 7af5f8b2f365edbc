"""docs/subscribers.md stays true: its consumer example runs against the real broker, and the topics,
headers and framing it names are the ones callstream uses."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
from aiokafka import AIOKafkaProducer
from fastavro.utils import generate_one

from core.kafka import ensure_topics, producer_kwargs
from core.settings import Settings
from schemas.avro_codec import encode, schema_json, schema_names

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "subscribers.md"


def example_code() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert len(blocks) == 1, "docs/subscribers.md should hold exactly one runnable python block"
    return str(blocks[0])


def cdr(dedup_key: int, session: str, talk: int) -> dict[str, Any]:
    record = dict(generate_one(fastavro.parse_schema(schema_json("cdr"))))
    record.update(dedup_key=str(dedup_key), session_id=session, talk_seconds=talk)
    return record


async def publish(settings: Settings, records: list[dict[str, Any]]) -> None:
    await ensure_topics(settings)
    producer = AIOKafkaProducer(**producer_kwargs(settings))
    await producer.start()
    try:
        for i, record in enumerate(records):
            headers = [("ce_specversion", b"1.0"), ("ce_id", f"{i:032x}:0".encode()),
                       ("ce_type", b"com.huaweicloud.voice.cdr"), ("content-type", b"application/avro")]
            await producer.send_and_wait(settings.cdrs_topic, encode("cdr", record),
                                         key=record["session_id"].encode(), headers=headers)
    finally:
        await producer.stop()


def test_consumer_example_runs_and_skips_redeliveries(settings: Settings) -> None:
    records = [cdr(11, "s-1", 30), cdr(22, "s-2", 0), cdr(11, "s-1", 30), cdr(33, "s-3", 7)]
    asyncio.run(publish(settings, records))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TOPIC": settings.cdrs_topic,
        "GROUP": f"{settings.consumer_group}.doc",
        "STOP_AFTER": "3",
        "PYTHONUNBUFFERED": "1",
    }
    done = subprocess.run([sys.executable, "-c", example_code()], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    lines = sorted(done.stdout.splitlines())
    assert lines == [
        "com.huaweicloud.voice.cdr s-1 11 30",
        "com.huaweicloud.voice.cdr s-2 22 0",
        "com.huaweicloud.voice.cdr s-3 33 7",
    ]


def test_doc_names_every_topic_setting_and_schema() -> None:
    text = DOC.read_text(encoding="utf-8")
    defaults = Settings()
    for topic in defaults.topics():
        assert f"`{topic}`" in text, f"docs/subscribers.md does not describe topic {topic}"
    for name in schema_names():
        assert f"`{name}`" in text, f"docs/subscribers.md does not describe schema {name}"
    for field in ("raw_topic", "dead_topic", "cdrs_topic", "call_events_topic", "number_status_topic",
                  "schema_registry_url"):
        assert f"CALLSTREAM_{field.upper()}" in text


def test_doc_headers_match_what_the_edge_sends() -> None:
    from ingest.envelope import Receipt, cloudevent_headers

    receipt = Receipt("0" * 32, datetime.now(UTC), "voice", "/notify/voice", "application/json", "")
    text = DOC.read_text(encoding="utf-8")
    for name, _ in cloudevent_headers(receipt, "fee", "app", "session"):
        assert f"`{name}`" in text, f"header {name} is not documented"


def test_readme_shows_the_same_tested_consumer_example() -> None:
    """The README's subscriber example is the one this file runs, so it cannot drift."""
    readme = (DOC.parents[1] / "README.md").read_text(encoding="utf-8")
    doc_blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    readme_blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    assert doc_blocks[0] in readme_blocks

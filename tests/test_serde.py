"""schemas.serde: single-object and Confluent framing, against a served registry API and the real broker.

No registry server installs here, so ``registry_server`` serves the documented Confluent REST endpoints
(POST /subjects/{subject}/versions, GET /schemas/ids/{id}) from a small Starlette app under uvicorn on a
free 127.0.0.1 port, and records each request.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from core.broker import free_port
from core.errors import RegistryError, UnknownSchema
from core.kafka import consumer_kwargs, ensure_topics, producer_kwargs
from core.settings import Settings
from tests.helpers import await_until, read_records, serve_in_thread
from schemas.avro_codec import MARKER, schema_fingerprint, schema_json
from schemas.serde import Serializer, decode, framing


@dataclass
class FakeRegistry:
    """State of the served registry: schemas by id, subjects, and the requests it answered."""

    url: str = ""
    schemas: dict[int, str] = field(default_factory=dict)
    subjects: dict[str, list[int]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    failing: bool = False  # answer 503 to everything, as a registry whose backend is down

    def _unavailable(self) -> JSONResponse:
        return JSONResponse({"error_code": 50003, "message": "backend unavailable"}, status_code=503)

    def app(self) -> Starlette:
        async def register(request: Request) -> JSONResponse:
            subject = request.path_params["subject"]
            self.requests.append(f"POST {request.url.path}")
            if self.failing:
                return self._unavailable()
            body = await request.json()
            if body.get("schemaType", "AVRO") != "AVRO":
                return JSONResponse({"error_code": 42201, "message": "only AVRO here"}, status_code=422)
            canonical = json.dumps(json.loads(body["schema"]), sort_keys=True)
            ids = [i for i, text in self.schemas.items() if text == canonical]
            schema_id = ids[0] if ids else len(self.schemas) + 1
            self.schemas[schema_id] = canonical
            versions = self.subjects.setdefault(subject, [])
            if schema_id not in versions:
                versions.append(schema_id)
            return JSONResponse({"id": schema_id})

        async def by_id(request: Request) -> JSONResponse:
            self.requests.append(f"GET {request.url.path}")
            if self.failing:
                return self._unavailable()
            schema_id = int(request.path_params["schema_id"])
            if schema_id not in self.schemas:
                return JSONResponse({"error_code": 40403, "message": "Schema not found"}, status_code=404)
            return JSONResponse({"schema": self.schemas[schema_id]})

        return Starlette(
            routes=[
                Route("/subjects/{subject}/versions", register, methods=["POST"]),
                Route("/schemas/ids/{schema_id:int}", by_id, methods=["GET"]),
            ]
        )


@pytest.fixture
def registry_server() -> Iterator[FakeRegistry]:
    registry = FakeRegistry()
    with serve_in_thread(registry.app()) as url:
        registry.url = url
        yield registry


def envelope(i: int = 0) -> dict[str, Any]:
    return {
        "id": f"{i:032x}",
        "received_at": datetime(2024, 3, 12, 2, 15, 40, i, tzinfo=UTC),
        "service": "voice",
        "path": "/notify/voice",
        "event_type": "fee",
        "app_key": "app",
        "auth_scheme": "aksk",
        "content_type": "application/json",
        "remote_addr": "127.0.0.1",
        "body": b'{"eventType":"fee"}',
    }


def test_default_is_single_object_with_the_shipped_fingerprint(settings: Settings) -> None:
    serializer = Serializer(settings)
    payload = serializer.encode("raw_envelope", envelope(), settings.raw_topic)
    assert payload[:2] == MARKER and payload[2:10] == schema_fingerprint("raw_envelope")
    assert framing(payload) == "single-object"
    assert serializer.decode(payload) == decode(payload) == ("raw_envelope", envelope())


def test_registry_mode_uses_the_confluent_wire_format(
    make_settings: Callable[..., Settings], registry_server: FakeRegistry
) -> None:
    settings = make_settings(schema_registry_url=registry_server.url)
    serializer = Serializer(settings)
    payloads = [serializer.encode("raw_envelope", envelope(i), settings.raw_topic) for i in range(20)]
    schema_id = struct.unpack(">I", payloads[0][1:5])[0]
    assert payloads[0][:1] == b"\x00" and framing(payloads[0]) == "confluent"
    assert registry_server.subjects == {f"{settings.raw_topic}-value": [schema_id]}
    assert json.loads(registry_server.schemas[schema_id]) == schema_json("raw_envelope")
    assert registry_server.requests == [f"POST /subjects/{settings.raw_topic}-value/versions"]  # cached after

    reader = Serializer(settings)  # a fresh process: fetches the writer by id once
    assert [reader.decode(p) for p in payloads] == [("raw_envelope", envelope(i)) for i in range(20)]
    assert registry_server.requests.count(f"GET /schemas/ids/{schema_id}") == 1
    with pytest.raises(UnknownSchema, match="CALLSTREAM_SCHEMA_REGISTRY_URL"):
        decode(payloads[0])
    serializer.close()
    reader.close()


def test_registry_reader_resolves_a_newer_writer(
    make_settings: Callable[..., Settings], registry_server: FakeRegistry
) -> None:
    """A producer already on a newer schema (extra field with default) is read into the shipped one."""
    newer = schema_json("raw_envelope")
    newer = dict(newer, fields=[*newer["fields"], {"name": "tenant", "type": "string", "default": ""}])
    answer = httpx.post(
        f"{registry_server.url}/subjects/x-value/versions", json={"schema": json.dumps(newer)}, timeout=5
    )
    schema_id = answer.json()["id"]
    out = io.BytesIO()
    out.write(b"\x00" + struct.pack(">I", schema_id))
    fastavro.schemaless_writer(out, fastavro.parse_schema(newer), dict(envelope(3), tenant="t1"))
    reader = Serializer(make_settings(schema_registry_url=registry_server.url))
    assert reader.decode(out.getvalue()) == ("raw_envelope", envelope(3))
    reader.close()


def test_unreachable_registry_is_retriable(make_settings: Callable[..., Settings]) -> None:
    serializer = Serializer(make_settings(schema_registry_url=f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(RegistryError, match="unreachable") as caught:
        serializer.encode("raw_envelope", envelope(), "t")
    assert caught.value.retriable


def test_failing_registry_is_retriable_and_fetched_writers_spare_the_hot_path(
    make_settings: Callable[..., Settings], registry_server: FakeRegistry
) -> None:
    settings = make_settings(schema_registry_url=registry_server.url)
    writer = Serializer(settings)
    payload = writer.encode("raw_envelope", envelope(7), settings.raw_topic)
    unknown_id = b"\x00" + struct.pack(">I", 999) + payload[5:]
    reader = Serializer(settings)

    registry_server.failing = True
    with pytest.raises(RegistryError, match="failing") as caught:
        reader.fetch_writers([payload])
    assert caught.value.retriable
    with pytest.raises(RegistryError) as caught:
        writer.encode("raw_envelope", envelope(8), "another-topic")  # registering is retriable too
    assert caught.value.retriable

    registry_server.failing = False
    assert reader.fetch_writers([payload, unknown_id, b"garbage", None]) == 1  # 999 is left for decode
    assert reader.fetch_writers([payload]) == 0
    gets = registry_server.requests.count(f"GET /schemas/ids/{struct.unpack('>I', payload[1:5])[0]}")
    assert reader.decode(payload) == ("raw_envelope", envelope(7))
    assert registry_server.requests.count(f"GET /schemas/ids/{struct.unpack('>I', payload[1:5])[0]}") == gets
    with pytest.raises(UnknownSchema, match="no schema id 999"):
        reader.decode(unknown_id)
    writer.close()
    reader.close()


def test_switching_framing_on_a_live_topic(
    make_settings: Callable[..., Settings], registry_server: FakeRegistry
) -> None:
    """Records of both framings on one topic, through the real broker, all decode."""
    plain = make_settings()
    registry = make_settings(schema_registry_url=registry_server.url)
    before, after = Serializer(plain), Serializer(registry)

    async def scenario() -> list[tuple[str, dict[str, Any]]]:
        await ensure_topics(plain)
        producer = AIOKafkaProducer(**producer_kwargs(plain))
        await producer.start()
        try:
            for i in range(4):
                chosen = before if i < 2 else after
                value = chosen.encode("raw_envelope", envelope(i), plain.raw_topic)
                await producer.send_and_wait(plain.raw_topic, value, key=b"k")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(plain.raw_topic, **consumer_kwargs(plain))
        await consumer.start()
        got: list[tuple[str, dict[str, Any]]] = []
        try:
            deadline = time.monotonic() + 20
            while len(got) < 4 and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                got += [after.decode(m.value) for msgs in batches.values() for m in msgs]
        finally:
            await consumer.stop()
        return got

    got = asyncio.run(scenario())
    assert got == [("raw_envelope", envelope(i)) for i in range(4)]
    before.close()
    after.close()


def test_schemas_command_prints_fingerprints(capsys: pytest.CaptureFixture[str]) -> None:
    from callstream.cli import main as cli
    from schemas.avro_codec import fingerprint_int, schema_names

    assert cli(["schemas", "raw_envelope"]) == 0
    out = capsys.readouterr().out
    fp = schema_fingerprint("raw_envelope")
    assert f"hex (little-endian bytes after C3 01): {fp.hex()}" in out
    assert f"signed 64-bit int: {fingerprint_int('raw_envelope')}" in out
    assert fingerprint_int("raw_envelope") == struct.unpack("<q", fp)[0]
    assert json.loads(out[out.index("{"):]) == schema_json("raw_envelope")

    assert cli(["schemas"]) == 0
    assert capsys.readouterr().out.count("# fingerprint CRC-64-AVRO") == len(schema_names())
    assert cli(["schemas", "no_such"]) == 2
    assert "known: " in capsys.readouterr().err


def test_edge_publishes_confluent_framing_when_a_registry_is_set(
    make_settings: Callable[..., Settings], registry_server: FakeRegistry
) -> None:
    """The edge's raw and dead-letter records switch framing with the setting; readers decode both."""
    from ingest.app import create_app
    from ingest.auth import sign_headers
    from tests.conftest import TEST_APP_KEY, TEST_APP_SECRET, sample_bytes

    settings = make_settings(schema_registry_url=registry_server.url)

    async def scenario() -> tuple[list[bytes], list[bytes]]:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://edge.test") as client:
                headers = sign_headers(TEST_APP_KEY, TEST_APP_SECRET, scheme="aksk")
                ok = await client.post("/notify/voice", content=sample_bytes("voice_notify_cdr_single.json"),
                                       headers=headers)
                assert ok.status_code == 200, ok.text
                refused = await client.post("/notify/voice", content=b"not json",
                                            headers=sign_headers(TEST_APP_KEY, TEST_APP_SECRET, scheme="aksk"))
                assert refused.status_code == 400, refused.text
        values: dict[str, list[bytes]] = {settings.raw_topic: [], settings.dead_topic: []}
        consumer = AIOKafkaConsumer(settings.raw_topic, settings.dead_topic,
                                    **consumer_kwargs(settings, group_id=None))
        await consumer.start()
        try:
            deadline = time.monotonic() + 15
            while sum(map(len, values.values())) < 2 and time.monotonic() < deadline:
                for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                    values[tp.topic].extend(r.value for r in records)
        finally:
            await consumer.stop()
        return values[settings.raw_topic], values[settings.dead_topic]

    raw, dead = asyncio.run(scenario())
    assert len(raw) == 1 and len(dead) == 1
    assert framing(raw[0]) == framing(dead[0]) == "confluent"
    assert set(registry_server.subjects) == {f"{settings.raw_topic}-value", f"{settings.dead_topic}-value"}
    reader = Serializer(settings)
    try:
        name, record = reader.decode(raw[0])
        assert name == "raw_envelope" and record["body"] == sample_bytes("voice_notify_cdr_single.json")
        name, record = reader.decode(dead[0])
        assert name == "dead_letter" and record["reason"] == "not_json" and record["body"] == b"not json"
    finally:
        reader.close()


def test_consumer_reads_both_framings_and_publishes_confluent_framing(
    make_settings: Callable[..., Settings], registry_server: FakeRegistry
) -> None:
    """With a registry set, the consumer decodes raw envelopes of both framings, and its downstream
    records and dead letters are in the Confluent wire format under topic-name subjects."""
    from tests.test_consumer_runner import all_samples, count, produce, with_consumer
    from tests.test_consumer_runner import envelope as raw_envelope

    settings = make_settings(schema_registry_url=registry_server.url)
    edge = Serializer(settings)
    samples = all_samples()
    # the first half as the edge writes them with a registry, the rest (and a poison push) single-object
    values = [edge.reframe(v, settings.raw_topic) if i % 2 == 0 else v for i, v in enumerate(samples)]
    values.append(raw_envelope(b"{not json"))
    assert {framing(v) for v in values} == {"confluent", "single-object"}

    async def scenario() -> dict[str, list[Any]]:
        await produce(settings, values)

        async def body(_: Any) -> None:
            await await_until(lambda: count(settings, "SELECT count() FROM {db}.cdrs") == 8
                           and count(settings, "SELECT count() FROM {db}.call_events") == 17
                           and count(settings, "SELECT count() FROM {db}.number_status") == 2
                           and count(settings, "SELECT count() FROM {db}.failed_events") == 1)

        await with_consumer(settings, body)
        wanted = {settings.cdrs_topic: 8, settings.call_events_topic: 17, settings.number_status_topic: 2,
                  settings.dead_topic: 1}
        return {topic: await read_records(settings, topic, n) for topic, n in wanted.items()}

    published = asyncio.run(scenario())
    reader = Serializer(settings)  # a downstream reader: fetches each writer schema by id
    expected = {settings.cdrs_topic: "cdr", settings.call_events_topic: "call_event",
                settings.number_status_topic: "number_status", settings.dead_topic: "dead_letter"}
    for topic, name in expected.items():
        records = published[topic]
        assert records and {framing(r.value) for r in records} == {"confluent"}, topic
        decoded = [reader.decode(r.value) for r in records]
        assert {n for n, _ in decoded} == {name}
        schema_id = struct.unpack(">I", records[0].value[1:5])[0]
        assert registry_server.subjects[f"{topic}-value"] == [schema_id]
        assert json.loads(registry_server.schemas[schema_id]) == schema_json(name)
    assert len(published[settings.cdrs_topic]) == 8 and len(published[settings.call_events_topic]) == 17
    cdr = reader.decode(published[settings.cdrs_topic][0].value)[1]
    assert published[settings.cdrs_topic][0].key == cdr["session_id"].encode()
    letter = reader.decode(published[settings.dead_topic][0].value)[1]
    assert letter["reason"] == "malformed" and letter["body"] == b"{not json"
    with pytest.raises(UnknownSchema, match="CALLSTREAM_SCHEMA_REGISTRY_URL"):
        decode(published[settings.cdrs_topic][0].value)  # not readable without the registry
    edge.close()
    reader.close()


def test_consumer_waits_out_a_failing_registry_and_loads_everything_once(
    make_settings: Callable[..., Settings], registry_server: FakeRegistry
) -> None:
    """Raw records whose writer schema the consumer has not fetched yet arrive while the registry
    answers 503: the consumer backs off (nothing loaded, nothing committed, still running) and loads
    every record once when the registry is back."""
    from tests.test_consumer_runner import all_samples, count, produce, with_consumer

    settings = make_settings(schema_registry_url=registry_server.url)
    edge = Serializer(settings)
    values = [edge.reframe(v, settings.raw_topic) for v in all_samples()]
    assert {framing(v) for v in values} == {"confluent"}
    registry_server.failing = True

    async def scenario() -> float:
        await produce(settings, values)

        async def body(metrics: Any) -> None:
            await await_until(lambda: (metrics.get_sample_value(
                "callstream_consumer_errors_total", {"stage": "schema_registry"}) or 0) >= 2)
            assert count(settings, "SELECT count() FROM {db}.cdrs") == 0
            registry_server.failing = False
            await await_until(lambda: count(settings, "SELECT count() FROM {db}.cdrs") == 8
                           and count(settings, "SELECT count() FROM {db}.call_events") == 17
                           and count(settings, "SELECT count() FROM {db}.number_status") == 2)

        await with_consumer(settings, body)
        return count(settings, "SELECT count() FROM {db}.failed_events")

    assert asyncio.run(scenario()) == 0
    edge.close()


def test_registry_client_is_imported_only_when_a_registry_is_configured() -> None:
    """Without CALLSTREAM_SCHEMA_REGISTRY_URL no process loads confluent_kafka's registry client (httpx,
    authlib, cryptography: ~14 MB of RSS each in the consumer, its prepare worker and the edge); with it
    set, the Serializer loads it."""
    probe = (
        "import sys\n"
        "import consumers.runner, consumers.worker, ingest.app, ingest.server\n"
        "from core.settings import Settings\n"
        "from schemas.serde import Serializer\n"
        "Serializer(Settings(schema_registry_url=sys.argv[1]))\n"
        "print('confluent_kafka.schema_registry' in sys.modules)\n"
    )
    seen = {}
    for url in ("", "http://127.0.0.1:9"):  # never contacted: the client connects on first use
        out = subprocess.run([sys.executable, "-c", probe, url], capture_output=True, text=True, timeout=120,
                             cwd=Path(__file__).resolve().parent.parent,
                             env={k: v for k, v in os.environ.items() if not k.startswith("CALLSTREAM_")})
        assert out.returncode == 0, out.stderr[-2000:]
        seen[url] = out.stdout.strip().splitlines()[-1]
    assert seen == {"": "False", "http://127.0.0.1:9": "True"}

"""The CloudEvents binary-mode headers of what callstream publishes, read back with the `cloudevents` SDK.

Pushes go through the real edge (``ingest.app.create_app``) into the real broker; the consumed records
are parsed by ``cloudevents.core.bindings.kafka.from_binary`` with an Avro data format.
"""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary

from callstream.cli import build_parser
from callstream.replay import replay
from core.settings import Settings
from ingest.app import create_app
from ingest.auth import sign_headers
from schemas.avro_codec import encode
from schemas.serde import decode
from tests.helpers import read_records
from tests.conftest import (
    TEST_APP_KEY,
    TEST_APP_SECRET,
    TEST_PRIVACY_APP_KEY,
    TEST_PRIVACY_APP_SECRET,
    sample_bytes,
)

BASE = "http://edge.test"


class AvroFormat:
    """Event data format for ``application/avro`` values (callstream's serde)."""

    def read_data(self, body: bytes, content_type: str | None) -> Any:
        assert content_type == "application/avro"
        return decode(body)

    def write_data(self, data: Any, datacontenttype: str | None) -> bytes:  # pragma: no cover - unused
        raise NotImplementedError

    def read(self, event_klass: Any, data: bytes) -> Any:  # pragma: no cover - structured mode unused
        raise NotImplementedError

    def write(self, event: Any) -> bytes:  # pragma: no cover
        raise NotImplementedError

    def get_content_type(self) -> str:
        return "application/avro"


def as_event(record: Any) -> Any:
    return from_binary(KafkaMessage(dict(record.headers), record.key, record.value), AvroFormat())


PUSHES = [
    ("voice", "voice_notify_cdr_single.json", TEST_APP_KEY, TEST_APP_SECRET, "aksk-voice"),
    ("privacy", "privacy_axb_event_callin.json", TEST_PRIVACY_APP_KEY, TEST_PRIVACY_APP_SECRET, "aksk"),
    ("privacy", "privacy_x_numstatus.json", TEST_PRIVACY_APP_KEY, TEST_PRIVACY_APP_SECRET, "wsse"),
]


def expected_subject(body: dict[str, Any]) -> str:
    if "feeLst" in body:
        return str(body["feeLst"][0]["sessionId"])
    if "numInfo" in body:
        return str(body["numInfo"][0]["number"])
    return str(body["statusInfo"]["sessionId"])


async def push_through_edge(settings: Settings) -> tuple[list[Any], list[Any], str]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 5555))
        async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=30) as client:
            for service, sample, key, secret, scheme in PUSHES:
                headers = sign_headers(key, secret, scheme=scheme, url=f"{BASE}/notify/{service}")
                headers["Content-Type"] = "application/json;charset=UTF-8"
                answer = await client.post(f"/notify/{service}", content=sample_bytes(sample), headers=headers)
                assert answer.status_code == 200, answer.text
            refused = await client.post("/notify/voice", content=sample_bytes(PUSHES[0][1]),
                                        headers={"Content-Type": "application/json"})
            assert refused.status_code == 401
    raw = await read_records(settings, settings.raw_topic, len(PUSHES))
    dead = await read_records(settings, settings.dead_topic, 1)
    return raw, dead, refused.json()["id"]


def test_edge_records_are_cloudevents(settings: Settings) -> None:
    started = datetime.now(UTC)
    raw, dead, refused_id = asyncio.run(push_through_edge(settings))
    assert len(raw) == len(PUSHES) and len(dead) == 1
    by_body = {record_body: (service, key) for service, sample, key, _, _ in PUSHES
               for record_body in [sample_bytes(sample)]}
    for record in raw:
        event = as_event(record)
        name, envelope = event.get_data()
        service, app_key = by_body[envelope["body"]]
        body = json.loads(envelope["body"])
        assert name == "raw_envelope"
        assert event.get_specversion() == "1.0"
        assert event.get_id() == envelope["id"] and len(envelope["id"]) == 32
        assert event.get_source() == f"huawei/{service}/{app_key}"
        assert event.get_type() == f"com.huaweicloud.{service}.{body['eventType']}"
        assert event.get_subject() == expected_subject(body)
        assert event.get_extension("partitionkey") == expected_subject(body)
        assert event.get_datacontenttype() == "application/avro"
        assert abs(event.get_time() - envelope["received_at"]) < timedelta(milliseconds=1)
        assert started - timedelta(seconds=1) <= event.get_time() <= datetime.now(UTC)

    refused = as_event(dead[0])
    name, letter = refused.get_data()
    assert name == "dead_letter" and refused.get_id() == letter["id"] == refused_id
    assert letter["http_status"] == 401 and refused.get_subject() == letter["reason"]
    assert refused.get_type() == "io.callstream.dead_letter"


def test_replayed_records_are_cloudevents(settings: Settings) -> None:
    from tests.test_replay import produce

    received = datetime(2024, 3, 12, 2, 15, 41, tzinfo=UTC)
    letter = encode("dead_letter", {
        "id": "9" * 32, "received_at": received, "stage": "edge", "reason": "unauthenticated",
        "service": "voice", "path": "/notify/voice", "app_key": TEST_APP_KEY,
        "body": sample_bytes("voice_notify_cdr_single.json"),
    })
    asyncio.run(produce(settings, settings.dead_topic, [letter]))
    asyncio.run(replay(build_parser().parse_args(["replay", "dead"]), settings, io.StringIO()))
    (record,) = asyncio.run(read_records(settings, settings.raw_topic, 1))
    event = as_event(record)
    assert event.get_id() == "9" * 32 and event.get_time() == received
    assert event.get_source() == f"huawei/voice/{TEST_APP_KEY}" and event.get_type() == "com.huaweicloud.voice.fee"
    assert event.get_subject().startswith("1201_601_")
    assert dict(record.headers)["replayed_at"] and dict(record.headers)["replay_source"] == b"dead"

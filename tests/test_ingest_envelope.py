"""Records the edge writes: the hand-written raw envelope equals the generic Avro writer byte for byte,
the partitioner equals Kafka's murmur2, secrets never reach the dead-letter headers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from ingest.auth import sign_headers
from ingest.envelope import Receipt, cloudevent_headers, raw_record, redact_headers
from ingest.partitioner import CachedMurmur2Partitioner, murmur2
from schemas.avro_codec import decode, encode

moments = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))


@given(moments, st.text(max_size=30), st.text(max_size=30), st.text(max_size=200), st.binary(max_size=2000))
def test_raw_record_equals_the_generic_writer(moment: datetime, app_key: str, addr: str, ctype: str, body: bytes) -> None:
    receipt = Receipt(uuid.uuid4().hex, moment, "privacy", "/notify/privacy", ctype, addr)
    fast = raw_record(receipt, body, "fee", app_key, "aksk")
    generic = encode("raw_envelope", {
        "id": receipt.id, "received_at": moment, "service": "privacy", "path": "/notify/privacy",
        "event_type": "fee", "app_key": app_key, "auth_scheme": "aksk", "content_type": ctype,
        "remote_addr": addr, "body": body,
    })
    assert fast == generic
    assert decode(fast)[1]["received_at"] == moment


@given(st.binary(max_size=300))
def test_murmur2_equals_kafkas(key: bytes) -> None:
    assert murmur2(key) == aiokafka_murmur2(key) & 0xFFFFFFFF


def test_partitioner_places_keys_like_the_java_client() -> None:
    partitioner = CachedMurmur2Partitioner(max_keys=2)
    parts = list(range(6))
    # org.apache.kafka Utils.toPositive(murmur2(key)) % n, checked against aiokafka's DefaultPartitioner
    for key in (b"a", b"session-1", b"+8613800000021_+8617000000001_4_65efbd01_963036_669_1_0"):
        assert partitioner(key, parts, parts) == parts[(aiokafka_murmur2(key) & 0x7FFFFFFF) % 6]
    assert partitioner(None, parts, []) in parts


def test_cloudevent_time_is_rfc3339_and_subject_optional() -> None:
    moment = datetime(2024, 3, 12, 2, 30, 4, 123456, tzinfo=UTC)
    receipt = Receipt("ab" * 16, moment, "voice", "/notify/voice", "", "")
    headers = dict(cloudevent_headers(receipt, "answer", "app", None))
    assert headers["ce_time"] == b"2024-03-12T02:30:04.123456+00:00"
    assert "ce_subject" not in headers
    assert datetime.fromisoformat(headers["ce_time"].decode()) - moment == timedelta(0)


def test_redaction_masks_digests_and_drops_cookies() -> None:
    signed = sign_headers("app", "secret", scheme="wsse")
    raw = [(b"X-WSSE", signed["X-WSSE"].encode()), (b"Cookie", b"sid=1"), (b"x-aksk", b'PasswordDigest="abc"')]
    out = redact_headers(raw)
    assert 'PasswordDigest="[redacted]"' in out["x-wsse"] and out["x-aksk"] == 'PasswordDigest="[redacted]"'
    assert "cookie" not in out
    assert signed["X-WSSE"].split('PasswordDigest="')[1].split('"')[0] not in str(out)

"""The hand-written raw envelope writer and reader agree with fastavro byte for byte and field for field,
and serve only the writer schema whose fingerprint they know."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import avro_envelope
from schemas.avro_codec import MARKER, decode, encode, schema_fingerprint
from schemas.avro_envelope import FAST_FINGERPRINT, encode_raw_envelope, read_raw_envelope, read_raw_envelope_py

moments = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))
texts = st.text(max_size=40)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _fields(moment: datetime, app_key: str, addr: str, ctype: str, body: bytes) -> dict[str, object]:
    return {"id": uuid.uuid4().hex, "received_at": moment, "service": "privacy", "path": "/notify/privacy",
            "event_type": "fee", "app_key": app_key, "auth_scheme": "aksk", "content_type": ctype,
            "remote_addr": addr, "body": body}


def test_the_shipped_schema_is_the_one_the_hand_written_code_knows() -> None:
    # a changed raw_envelope.avsc turns the fast paths off: update them, FAST_FINGERPRINT, bench/avro.py
    assert schema_fingerprint("raw_envelope") == FAST_FINGERPRINT


@given(moments, texts, texts, st.text(max_size=200), st.binary(max_size=2000))
def test_written_bytes_equal_fastavro_and_read_back_equal_fastavro(
    moment: datetime, app_key: str, addr: str, ctype: str, body: bytes,
) -> None:
    record = _fields(moment, app_key, addr, ctype, body)
    payload = encode_raw_envelope(**record)  # type: ignore[arg-type]
    assert payload == encode("raw_envelope", record)
    fields = read_raw_envelope(payload)
    assert fields is not None
    _, generic = decode(payload)
    micros = (generic["received_at"] - _EPOCH) // timedelta(microseconds=1)
    assert fields == tuple(micros if name == "received_at" else value for name, value in generic.items())
    assert micros == (moment - _EPOCH) // timedelta(microseconds=1)


def test_other_writer_schemas_are_left_to_fastavro() -> None:
    cdr_like = MARKER + schema_fingerprint("dead_letter") + b"\x00" * 40
    assert read_raw_envelope(cdr_like) is None
    assert read_raw_envelope(b"\x00\x00\x00\x00\x01" + b"\x00" * 40) is None  # Confluent framing


def test_writer_falls_back_to_fastavro_for_another_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    record = _fields(datetime(2024, 3, 12, 2, 30, tzinfo=UTC), "app", "10.0.0.1", "application/json", b"{}")
    fast = encode_raw_envelope(**record)  # type: ignore[arg-type]
    monkeypatch.setattr(avro_envelope, "_FAST_WRITE", False)
    assert encode_raw_envelope(**record) == fast  # type: ignore[arg-type]


def test_truncated_and_corrupt_bodies_raise() -> None:
    record = _fields(datetime(2024, 3, 12, 2, 30, tzinfo=UTC), "app", "10.0.0.1", "application/json", b"{}" * 20)
    payload = encode_raw_envelope(**record)  # type: ignore[arg-type]
    for cut in (11, 20, len(payload) - 5):
        with pytest.raises((EOFError, IndexError)):
            read_raw_envelope(payload[:cut])
    with pytest.raises(ValueError):
        read_raw_envelope(payload[:10] + b"\xff" * 12)
    with pytest.raises(UnicodeDecodeError):
        read_raw_envelope(payload[:10] + b"\x04\xff\xfe" + payload[13:])


def _outcome(read: Callable[[bytes], object], payload: bytes) -> object:
    try:
        return read(payload)
    except (ValueError, EOFError, IndexError) as exc:
        return type(exc)


@pytest.mark.skipif(avro_envelope._read_envelope_c is None, reason="the C extension is not built")
@given(moments, texts, texts, st.text(max_size=200), st.binary(max_size=300), st.data())
def test_the_c_reader_agrees_with_the_python_reader_on_whole_cut_and_corrupted_records(
    moment: datetime, app_key: str, addr: str, ctype: str, body: bytes, data: st.DataObject,
) -> None:
    """read_raw_envelope uses the C reader and falls back to read_raw_envelope_py where the C one cannot
    read a record whole: together they give the Python reader's fields, or its exception, for any input."""
    payload = encode_raw_envelope(**_fields(moment, app_key, addr, ctype, body))  # type: ignore[arg-type]
    assert avro_envelope._read_envelope_c(payload, MARKER + FAST_FINGERPRINT) == read_raw_envelope_py(payload)
    cut = payload[:data.draw(st.integers(0, len(payload)))]
    at = data.draw(st.integers(10, len(payload) - 1))
    flipped = payload[:at] + bytes([data.draw(st.integers(0, 255))]) + payload[at + 1:]
    for variant in (cut, flipped, payload + data.draw(st.binary(max_size=12))):
        assert _outcome(read_raw_envelope, variant) == _outcome(read_raw_envelope_py, variant)


def test_the_c_reader_leaves_records_it_cannot_read_to_python() -> None:
    if avro_envelope._read_envelope_c is None:
        pytest.skip("the C extension is not built")
    record = _fields(datetime(2024, 3, 12, 2, 30, tzinfo=UTC), "app", "10.0.0.1", "application/json", b"{}")
    payload = encode_raw_envelope(**record)  # type: ignore[arg-type]
    prefix = MARKER + FAST_FINGERPRINT
    assert avro_envelope._read_envelope_c(payload, prefix) is not None
    for unreadable in (payload[:-1], payload[:10] + b"\xff" * 12, payload[:10] + b"\x04\xff\xfe" + payload[13:],
                       MARKER + schema_fingerprint("dead_letter") + payload[10:]):
        assert avro_envelope._read_envelope_c(unreadable, prefix) is None

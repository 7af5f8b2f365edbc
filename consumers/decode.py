"""Raw Kafka record -> ``Notification`` (the envelope the edge published, plus where it came from).

Reads both framings the edge writes: Avro single-object encoding and, with a schema registry, the
Confluent wire format."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.errors import ConfigError, NormaliseError
from schemas.avro_codec import MARKER, schema_fingerprint
from schemas.serde import Serializer, UnknownSchema, decode  # also reads history versions

_RAW = "raw_envelope"


@dataclass(slots=True)
class Notification:
    """One push as received by the edge; ``received_at_us`` is epoch microseconds UTC."""

    id: str
    received_at_us: int
    service: str
    path: str
    event_type: str
    app_key: str
    body: bytes
    topic: str = ""
    partition: int = -1
    offset: int = -1
    auth_scheme: str = ""
    content_type: str = ""
    remote_addr: str = ""


def _to_us(value: object) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp()) * 1_000_000 + value.microsecond
    if isinstance(value, int):
        return value
    raise NormaliseError(f"envelope received_at has type {type(value).__name__}", reason="bad_envelope")


def _long(buf: bytes, pos: int) -> tuple[int, int]:
    """Avro ``long`` at ``pos``: (value, next position)."""
    byte = buf[pos]
    pos += 1
    n = byte & 0x7F
    shift = 7
    while byte & 0x80:
        byte = buf[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if shift > 70:
            raise ValueError("Avro long longer than 10 bytes")
    return (n >> 1) ^ -(n & 1), pos


def _bytes(buf: bytes, pos: int) -> tuple[bytes, int]:
    size, pos = _long(buf, pos)
    end = pos + size
    if size < 0 or end > len(buf):
        raise EOFError(f"Avro string or bytes of {size} bytes at {pos} runs past the record ({len(buf)} bytes)")
    return buf[pos:end], end


def _read_shipped_envelope(body: bytes) -> list[object]:
    """The fields of a ``raw_envelope`` body written with the shipped schema, in schema order:
    id, received_at (epoch microseconds), service, path, event_type, app_key, auth_scheme, content_type,
    remote_addr (str) and body (bytes). Several times faster than fastavro's generic reader."""
    values: list[object] = []
    raw, pos = _bytes(body, 0)
    values.append(raw.decode())
    received_at, pos = _long(body, pos)
    values.append(received_at)
    for _ in range(7):
        raw, pos = _bytes(body, pos)
        values.append(raw.decode())
    raw, pos = _bytes(body, pos)
    values.append(raw)
    return values


_SHIPPED_FINGERPRINT = schema_fingerprint(_RAW)


def decode_envelope(
    payload: bytes | None, topic: str = "", partition: int = -1, offset: int = -1,
    serializer: Serializer | None = None,
) -> Notification:
    """Decode a ``raw_envelope`` record in either framing; ``NormaliseError(reason="bad_envelope")`` when it
    is not one. Confluent-framed records (the edge with a schema registry) need ``serializer`` with that
    registry; ``BrokerUnavailable`` while it is unreachable."""
    if not payload:
        raise NormaliseError("empty Kafka record value", reason="bad_envelope")
    try:
        if payload[:2] == MARKER and payload[2:10] == _SHIPPED_FINGERPRINT:
            # fast path: written with the shipped schema, read field by field
            nid, received_at, service, path, event_type, app_key, auth_scheme, content_type, remote_addr, body = (
                _read_shipped_envelope(payload[10:]))
            return Notification(nid, received_at, service, path, event_type, app_key, body, topic,  # type: ignore
                                partition, offset, auth_scheme, content_type, remote_addr)  # type: ignore
        if serializer is not None:
            name, record = serializer.decode(payload)
        else:
            name, record = decode(payload)
    except (UnknownSchema, ConfigError, ValueError, EOFError, IndexError, TypeError) as exc:  # UnicodeError too
        raise NormaliseError(f"not a raw_envelope Avro record: {exc}", reason="bad_envelope") from exc
    if name != "raw_envelope":
        raise NormaliseError(f"expected raw_envelope, got {name}", reason="bad_envelope")
    return Notification(
        id=record["id"],
        received_at_us=_to_us(record["received_at"]),
        service=record["service"],
        path=record["path"],
        event_type=record["event_type"],
        app_key=record.get("app_key", "") or "",
        body=record["body"],
        topic=topic,
        partition=partition,
        offset=offset,
        auth_scheme=record.get("auth_scheme", "") or "",
        content_type=record.get("content_type", "") or "",
        remote_addr=record.get("remote_addr", "") or "",
    )

"""The Kafka records the edge writes: the raw envelope (with CloudEvents binary-mode headers) and the
dead-letter record for refused pushes. Both carry the exact bytes received.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from typing import NamedTuple

from schemas.avro_codec import MARKER, encode, encode_long, schema_fingerprint, schema_json

KafkaHeaders = list[tuple[str, bytes]]

_SPECVERSION = ("ce_specversion", b"1.0")
_CONTENT_TYPE = ("content-type", b"application/avro")
_DIGEST = re.compile(r'(PasswordDigest\s*=\s*")[^"]*(")', re.IGNORECASE)
_SECRET_HEADERS = frozenset({"x-aksk", "x-wsse"})
_DROPPED_HEADERS = frozenset({"cookie", "proxy-authorization"})


class Receipt(NamedTuple):
    """Facts about one request that every record repeats."""

    id: str
    received_at: datetime
    service: str
    path: str
    content_type: str
    remote_addr: str


_IDS_PER_READ = 256
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}  # RFC 4122 variant, 2 random bits
_ids: list[str] = []


def _random_ids() -> list[str]:
    """256 version 4 UUIDs as 32 hex digits, from one ``os.urandom`` read."""
    h = os.urandom(16 * _IDS_PER_READ).hex()
    return [f"{h[i:i + 12]}4{h[i + 13:i + 16]}{_VARIANT[h[i + 16]]}{h[i + 17:i + 32]}" for i in range(0, len(h), 32)]


def _forget_ids() -> None:
    _ids.clear()  # a forked child must not repeat its parent's buffered ids


os.register_at_fork(after_in_child=_forget_ids)


def new_id() -> str:
    """A random (version 4) UUID as 32 hex digits, like ``uuid.uuid4().hex`` at a fraction of the cost."""
    if not _ids:
        _ids.extend(_random_ids())
    return _ids.pop()


def rfc3339(moment: datetime) -> str:
    """RFC 3339 with microseconds and a numeric offset (``+00:00`` for the UTC receipt time)."""
    return moment.isoformat(timespec="microseconds")


@lru_cache(maxsize=4096)
def _source(service: str, app_key: str) -> tuple[str, bytes]:
    return ("ce_source", f"huawei/{service}/{app_key}".encode())


@lru_cache(maxsize=256)
def _type(service: str, event_type: str) -> tuple[str, bytes]:
    return ("ce_type", f"com.huaweicloud.{service}.{event_type}".encode())


def cloudevent_headers(receipt: Receipt, event_type: str, app_key: str, key: str | None) -> KafkaHeaders:
    """CloudEvents Kafka binary-mode headers (``ce_*``; values as bytes)."""
    headers = [
        _SPECVERSION,
        ("ce_id", receipt.id.encode()),
        _source(receipt.service, app_key),
        _type(receipt.service, event_type),
        ("ce_time", rfc3339(receipt.received_at).encode()),
    ]
    if key is not None:
        headers.append(("ce_subject", key.encode()))
    headers.append(_CONTENT_TYPE)
    return headers


RAW_FIELDS = ("id", "received_at", "service", "path", "event_type", "app_key", "auth_scheme", "content_type",
              "remote_addr", "body")
_RAW_PREFIX = MARKER + schema_fingerprint("raw_envelope")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


_TEXT_CACHE: dict[str, bytes] = {}


def _text(value: str) -> bytes:
    data = value.encode()
    return encode_long(len(data)) + data


def _long8(value: int) -> bytes:
    """``encode_long`` unrolled for the 8-byte range (microsecond timestamps from 1987 to 2541)."""
    n = value << 1
    if (1 << 49) <= n < (1 << 56):
        return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14 & 0x7F | 0x80, n >> 21 & 0x7F | 0x80,
                      n >> 28 & 0x7F | 0x80, n >> 35 & 0x7F | 0x80, n >> 42 & 0x7F | 0x80, n >> 49))
    return encode_long(value)


def _known_text(value: str) -> bytes:
    """``_text`` for the few values that repeat (service, path, event type, app key, client address)."""
    encoded = _TEXT_CACHE.get(value)
    if encoded is None:
        if len(_TEXT_CACHE) > 4096:
            _TEXT_CACHE.clear()
        encoded = _TEXT_CACHE[value] = _text(value)
    return encoded


def _matches_shipped_schema() -> bool:
    fields = tuple(f["name"] for f in schema_json("raw_envelope")["fields"])
    return fields == RAW_FIELDS


_FAST_RAW = _matches_shipped_schema()


def raw_record(receipt: Receipt, body: bytes, event_type: str, app_key: str, auth_scheme: str) -> bytes:
    """The Avro ``raw_envelope`` record of an accepted push (single-object encoding).

    Written by hand on the hot path (about 4x cheaper than the generic writer); byte-identical to
    ``schemas.avro_codec.encode`` (tested), and falls back to it if the shipped schema's fields change.
    """
    if _FAST_RAW:
        moment = receipt.received_at - _EPOCH
        micros = (moment.days * 86_400 + moment.seconds) * 1_000_000 + moment.microseconds
        return b"".join((
            _RAW_PREFIX,
            _text(receipt.id),
            _long8(micros),
            _known_text(receipt.service),
            _known_text(receipt.path),
            _known_text(event_type),
            _known_text(app_key),
            _known_text(auth_scheme),
            _known_text(receipt.content_type),
            _known_text(receipt.remote_addr),
            encode_long(len(body)),
            body,
        ))
    return encode(
        "raw_envelope",
        {
            "id": receipt.id,
            "received_at": receipt.received_at,
            "service": receipt.service,
            "path": receipt.path,
            "event_type": event_type,
            "app_key": app_key,
            "auth_scheme": auth_scheme,
            "content_type": receipt.content_type,
            "remote_addr": receipt.remote_addr,
            "body": body,
        },
    )


def redact_headers(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Request headers for storage: PasswordDigest values masked, cookies dropped."""
    out: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        if name in _DROPPED_HEADERS:
            continue
        value = raw_value.decode("latin-1")
        if name in _SECRET_HEADERS:
            value = _DIGEST.sub(r"\1[redacted]\2", value)
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def dead_letter_record(
    receipt: Receipt,
    body: bytes,
    *,
    reason: str,
    detail: str,
    http_status: int,
    app_key: str,
    headers: dict[str, str],
    truncated: bool = False,
) -> bytes:
    """The Avro ``dead_letter`` record of a refused push (stage ``edge``)."""
    return encode(
        "dead_letter",
        {
            "id": receipt.id,
            "received_at": receipt.received_at,
            "stage": "edge",
            "reason": reason,
            "detail": detail,
            "service": receipt.service,
            "path": receipt.path,
            "app_key": app_key,
            "http_status": http_status,
            "headers": headers,
            "body": body,
            "body_truncated": truncated,
        },
    )


def dead_letter_headers(receipt: Receipt, reason: str) -> KafkaHeaders:
    return [
        _SPECVERSION,
        ("ce_id", receipt.id.encode()),
        ("ce_source", f"callstream/edge/{receipt.service}".encode()),
        ("ce_type", b"io.callstream.dead_letter"),
        ("ce_time", rfc3339(receipt.received_at).encode()),
        ("ce_subject", reason.encode()),
        _CONTENT_TYPE,
    ]

"""The Kafka records the edge writes: the raw envelope (with CloudEvents binary-mode headers) and the
dead-letter record for refused pushes. Both carry the exact bytes received.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from schemas.avro_codec import encode

KafkaHeaders = list[tuple[str, bytes]]

_SPECVERSION = ("ce_specversion", b"1.0")
_CONTENT_TYPE = ("content-type", b"application/avro")
_DIGEST = re.compile(r'(PasswordDigest\s*=\s*")[^"]*(")', re.IGNORECASE)
_SECRET_HEADERS = frozenset({"x-aksk", "x-wsse"})
_DROPPED_HEADERS = frozenset({"cookie", "proxy-authorization"})


@dataclass(frozen=True, slots=True)
class Receipt:
    """Facts about one request that every record repeats."""

    id: str
    received_at: datetime
    service: str
    path: str
    content_type: str
    remote_addr: str


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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


def raw_record(receipt: Receipt, body: bytes, event_type: str, app_key: str, auth_scheme: str) -> bytes:
    """The Avro ``raw_envelope`` record of an accepted push."""
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

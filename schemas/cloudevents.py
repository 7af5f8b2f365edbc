"""CloudEvents headers (Kafka protocol binding, binary content mode) of every record callstream publishes.

One builder, ``headers``, lays them out in one order: ``ce_specversion``, ``ce_id``, ``ce_source``,
``ce_type``, ``ce_time``, ``ce_subject`` (when there is one), ``content-type``. The values:

    raw envelope         ce_source huawei/<service>/<appKey>  ce_type com.huaweicloud.<service>.<eventType>
    downstream row       ce_source huawei/<service>/<appKey>  ce_type com.huaweicloud.<service>.<kind>
    dead letter          ce_source callstream/<stage>/<service>  ce_type io.callstream.dead_letter

The few distinct ``ce_source``/``ce_type`` headers are remembered; the edge and the consumer call this
on their hot paths.
"""

from __future__ import annotations

import time
from datetime import datetime
from functools import lru_cache

Header = tuple[str, bytes]
KafkaHeaders = list[Header]

SPECVERSION: Header = ("ce_specversion", b"1.0")
CONTENT_TYPE: Header = ("content-type", b"application/avro")
DEAD_LETTER_TYPE: Header = ("ce_type", b"io.callstream.dead_letter")


def headers(ce_id: bytes, source: Header, ce_type: Header, ce_time: bytes, subject: bytes | None) -> KafkaHeaders:
    """The CloudEvents headers of one record, in the one order callstream writes them."""
    if subject is None:
        return [SPECVERSION, ("ce_id", ce_id), source, ce_type, ("ce_time", ce_time), CONTENT_TYPE]
    return [SPECVERSION, ("ce_id", ce_id), source, ce_type, ("ce_time", ce_time), ("ce_subject", subject),
            CONTENT_TYPE]


@lru_cache(maxsize=4096)
def platform_source(service: str, app_key: str) -> Header:
    """``ce_source`` of what the platform sent: ``huawei/<service>/<appKey>``."""
    return ("ce_source", f"huawei/{service}/{app_key}".encode())


@lru_cache(maxsize=1024)
def platform_type(service: str, kind: str) -> Header:
    """``ce_type`` of what the platform sent: ``com.huaweicloud.<service>.<eventType or record kind>``."""
    return ("ce_type", f"com.huaweicloud.{service}.{kind}".encode())


@lru_cache(maxsize=64)
def stage_source(stage: str, service: str) -> Header:
    """``ce_source`` of a dead letter: ``callstream/<stage>/<service>`` (stage edge, decode, normalise…)."""
    return ("ce_source", f"callstream/{stage}/{service}".encode())


def rfc3339(moment: datetime) -> str:
    """RFC 3339 with microseconds and a numeric offset (``+00:00`` for the UTC receipt time)."""
    return moment.isoformat(timespec="microseconds")


_minutes: dict[int, bytes] = {}
_SECONDS = [f"{n:02d}.".encode() for n in range(60)]
_MILLIS = [f"{n:03d}Z".encode() for n in range(1000)]


def rfc3339_millis(value: int, per_second: int) -> bytes:
    """``2024-03-12T02:15:40.123Z`` (milliseconds, UTC) of ``value`` units of 1/``per_second`` s."""
    second, milli = divmod(value * 1000 // per_second, 1000)
    minute, sec = divmod(second, 60)
    prefix = _minutes.get(minute)
    if prefix is None:
        if len(_minutes) >= 50_000:
            _minutes.clear()
        prefix = _minutes[minute] = time.strftime("%Y-%m-%dT%H:%M:", time.gmtime(minute * 60)).encode()
    return prefix + _SECONDS[sec] + _MILLIS[milli]


def raw_headers(
    id: str, received_at: datetime, service: str, event_type: str, app_key: str, subject: str | None,
) -> KafkaHeaders:
    """The headers of a raw envelope (the edge, and ``callstream replay``)."""
    return headers(id.encode(), platform_source(service, app_key), platform_type(service, event_type),
                   rfc3339(received_at).encode(), None if subject is None else subject.encode())

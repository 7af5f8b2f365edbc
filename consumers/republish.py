"""Re-publish enriched rows downstream as Avro with CloudEvents headers: single-object encoding, or the
Confluent wire format when a schema registry is configured (``schemas.serde.Serializer.reframe``).

    cdrs          -> settings.cdrs_topic           (schemas/avro/cdr.avsc),        key sessionId
    call_events   -> settings.call_events_topic    (schemas/avro/call_event.avsc), key sessionId
    number_status -> settings.number_status_topic  (schemas/avro/number_status.avsc), key number

Headers (CloudEvents Kafka binding, binary mode): ce_specversion, ce_id=<notification id>:<index>,
ce_source=huawei/<service>/<appKey>, ce_type=com.huaweicloud.<service>.<kind>, ce_time, ce_subject,
content-type=application/avro.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from consumers.downstream import DownstreamProducer
from core.settings import Settings
from schemas.avro_rows import row_encoder
from schemas.cloudevents import platform_source, platform_type, rfc3339_millis
from schemas.cloudevents import headers as cloudevent_headers
from schemas.serde import Serializer

# table -> (schema name, CloudEvents kind, key column, time column, time unit per second)
ROUTES: dict[str, tuple[str, str, str, str, int]] = {
    "cdrs": ("cdr", "cdr", "session_id", "call_time", 1000),
    "call_events": ("call_event", "call_event", "session_id", "event_time", 1000),
    "number_status": ("number_status", "number_status", "number", "received_at", 1_000_000),
}
Message = tuple[bytes, bytes, list[tuple[str, bytes]]]  # key, value, headers


def topic_for(table: str, settings: Settings) -> str:
    return {"cdrs": settings.cdrs_topic, "call_events": settings.call_events_topic,
            "number_status": settings.number_status_topic}[table]


def schema_topics(settings: Settings) -> list[tuple[str, str]]:
    """``(schema name, topic)`` of every record the consumer publishes (dead letters included)."""
    return [(schema, topic_for(table, settings)) for table, (schema, *_) in ROUTES.items()] + [
        ("dead_letter", settings.dead_topic)]


@cache
def _writers() -> dict[str, Callable[[dict[str, Any]], bytes]]:
    return {table: row_encoder(schema, as_text=("dedup_key",)) for table, (schema, *_) in ROUTES.items()}


def to_message(table: str, row: dict[str, Any]) -> Message:
    """(key, Avro value, headers) for one row."""
    _, kind, key_column, time_column, per_second = ROUTES[table]
    value = _writers()[table](row)
    subject = row[key_column].encode()
    headers = cloudevent_headers(
        f"{row['notification_id']}:{row['record_index']}".encode(), platform_source(row["service"], row["app_key"]),
        platform_type(row["service"], kind), rfc3339_millis(row[time_column], per_second), subject)
    return subject, value, headers


def messages(table: str, rows: list[dict[str, Any]]) -> dict[int, Message]:
    """The downstream record of each row, by the row's ``dedup_key`` (encoded while the batch is prepared)."""
    return {row["dedup_key"]: to_message(table, row) for row in rows}


async def republish(
    producer: DownstreamProducer, settings: Settings, tables: dict[str, list[Message]],
    serializer: Serializer | None = None,
) -> dict[str, int]:
    """Send the records of every table and wait for the broker's acks; returns counts per topic.

    ``serializer`` re-frames the values for a schema registry (Confluent wire format) when one is set.
    Raises ``BrokerUnavailable`` when any record was not acknowledged.
    """
    counts: dict[str, int] = {}
    send = producer.send
    reframe = serializer.reframe if serializer is not None and serializer.registry is not None else None
    for table, records in tables.items():
        if not records:
            continue
        topic = topic_for(table, settings)
        if reframe is None:
            for key, value, headers in records:
                send(topic, value, key, headers)
        else:
            for key, value, headers in records:
                send(topic, reframe(value, topic), key, headers)
        counts[topic] = len(records)
    await producer.flush()
    return counts

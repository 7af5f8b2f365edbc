"""Re-publish enriched rows downstream as Avro (single-object encoding) with CloudEvents headers.

    cdrs          -> settings.cdrs_topic           (schemas/avro/cdr.avsc),        key sessionId
    call_events   -> settings.call_events_topic    (schemas/avro/call_event.avsc), key sessionId
    number_status -> settings.number_status_topic  (schemas/avro/number_status.avsc), key number

Headers (CloudEvents Kafka binding, binary mode): ce_specversion, ce_id=<notification id>:<index>,
ce_source=huawei/<service>/<appKey>, ce_type=com.huaweicloud.<service>.<kind>, ce_time, ce_subject,
content-type=application/avro.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from callstream.errors import BrokerUnavailable
from callstream.settings import Settings
from consumers.avro_rows import encode_row

# table -> (schema name, CloudEvents kind, key column, time column, time unit per second)
ROUTES: dict[str, tuple[str, str, str, str, int]] = {
    "cdrs": ("cdr", "cdr", "session_id", "call_time", 1000),
    "call_events": ("call_event", "call_event", "session_id", "event_time", 1000),
    "number_status": ("number_status", "number_status", "number", "received_at", 1_000_000),
}
_SPEC = b"1.0"
_CONTENT_TYPE = b"application/avro"


def topic_for(table: str, settings: Settings) -> str:
    return {"cdrs": settings.cdrs_topic, "call_events": settings.call_events_topic,
            "number_status": settings.number_status_topic}[table]


def _rfc3339(value: int, per_second: int) -> bytes:
    moment = datetime.fromtimestamp(value / per_second, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z").encode()


def to_message(table: str, row: dict[str, Any]) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, Avro value, headers) for one row."""
    schema, kind, key_column, time_column, per_second = ROUTES[table]
    value = encode_row(schema, {**row, "dedup_key": str(row["dedup_key"])})
    service = row["service"]
    subject = row[key_column].encode()
    headers = [
        ("ce_specversion", _SPEC),
        ("ce_id", f"{row['notification_id']}:{row['record_index']}".encode()),
        ("ce_source", f"huawei/{service}/{row['app_key']}".encode()),
        ("ce_type", f"com.huaweicloud.{service}.{kind}".encode()),
        ("ce_time", _rfc3339(row[time_column], per_second)),
        ("ce_subject", subject),
        ("content-type", _CONTENT_TYPE),
    ]
    return subject, value, headers


_hashes: dict[bytes, int] = {}


def partition_for(key: bytes, partitions: list[int]) -> int:
    """The partition Kafka's default partitioner picks for ``key`` (murmur2, as the Java client).

    aiokafka's murmur2 is pure Python; a call's events and CDR share the key, so results are cached.
    """
    hashed = _hashes.get(key)
    if hashed is None:
        if len(_hashes) > 200_000:
            _hashes.clear()
        hashed = _hashes[key] = murmur2(key) & 0x7FFFFFFF
    return partitions[hashed % len(partitions)]


async def republish(
    producer: AIOKafkaProducer, settings: Settings, tables: dict[str, list[dict[str, Any]]]
) -> dict[str, int]:
    """Send every row in per-partition batches and wait for the broker's acks; returns counts per topic.

    Batches (``create_batch``/``send_batch``) instead of one ``send`` per row: the per-message future
    and bookkeeping of ``send`` cost more than encoding the record.
    """
    futures = []
    counts: dict[str, int] = {}
    try:
        for table, rows in tables.items():
            if not rows:
                continue
            topic = topic_for(table, settings)
            partitions = sorted(await producer.partitions_for(topic))
            by_partition: dict[int, list[tuple[bytes, bytes, list[tuple[str, bytes]]]]] = {}
            for row in rows:
                message = to_message(table, row)
                by_partition.setdefault(partition_for(message[0], partitions), []).append(message)
            for partition, messages in by_partition.items():
                batch = producer.create_batch()
                for key, value, headers in messages:
                    if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                        futures.append(await producer.send_batch(batch, topic, partition=partition))
                        batch = producer.create_batch()
                        if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                            raise BrokerUnavailable(f"a {table} record is larger than the producer batch size")
                if batch.record_count():
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
            counts[topic] = len(rows)
        if futures:
            await asyncio.gather(*futures)
    except BrokerUnavailable:
        raise
    except Exception as exc:  # aiokafka raises KafkaError subclasses and asyncio timeouts
        raise BrokerUnavailable(f"downstream publish failed: {type(exc).__name__}: {exc}") from exc
    return counts

"""Kafka client configuration built from the settings (aiokafka arguments and the librdkafka
configuration, from one set of decisions), and topic creation.

One place decides how callstream talks to Kafka, so the edge, the consumers and the tools agree:
``acks="all"`` always; idempotence only where the cluster supports it (Tansu refuses it).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.structs import ConsumerRecord
from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException as RdKafkaException

from core.errors import BrokerError, BrokerRejected, BrokerUnavailable, ConfigError
from core.settings import Settings

# librdkafka's local errors that mean "the cluster is not there (yet)", besides those it marks retriable
_RDKAFKA_UNAVAILABLE = frozenset({
    RdKafkaError._TRANSPORT, RdKafkaError._ALL_BROKERS_DOWN, RdKafkaError._TIMED_OUT,
    RdKafkaError._MSG_TIMED_OUT, RdKafkaError._RESOLVE, RdKafkaError._DESTROY,
})


def kafka_error(exc: BaseException, doing: str) -> BrokerError:
    """The one translation of a Kafka client's exception (aiokafka, librdkafka, the socket) into the tree:
    ``BrokerUnavailable`` where the client marks it retriable or the network failed, ``BrokerRejected``
    (poison) where the cluster refused for good. ``doing`` says what was attempted ("write to raw")."""
    if isinstance(exc, BrokerError):
        return exc
    if isinstance(exc, KafkaError):
        retriable = bool(exc.retriable) or type(exc).__name__ == "KafkaTimeoutError"
    elif isinstance(exc, RdKafkaException) and exc.args and isinstance(exc.args[0], RdKafkaError):
        err = exc.args[0]
        retriable = bool(err.retriable()) or err.code() in _RDKAFKA_UNAVAILABLE
    else:
        retriable = isinstance(exc, (OSError, TimeoutError))
    if retriable:
        return BrokerUnavailable(f"Kafka did not answer ({doing}): {exc!r}")
    return BrokerRejected(f"Kafka refused ({doing}): {exc!r}")


def delivery_timeout_ms(settings: Settings) -> int:
    """How long a produced record may wait for its acknowledgement."""
    return max(int(settings.ack_timeout_s * 1000) * 5, 10_000)


def security_config(settings: Settings) -> dict[str, Any]:
    """TLS and SASL in Kafka's own configuration names (librdkafka's); ``_aiokafka_security`` renders them
    for aiokafka. No CA file: the system's CAs (librdkafka ``probe``, ``ssl.create_default_context()``)."""
    protocol = settings.kafka_security_protocol
    config: dict[str, Any] = {"security.protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        config["ssl.ca.location"] = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else "probe"
        if settings.kafka_ssl_certfile:
            config["ssl.certificate.location"] = str(settings.kafka_ssl_certfile)
            if settings.kafka_ssl_keyfile:
                config["ssl.key.location"] = str(settings.kafka_ssl_keyfile)
    if protocol.startswith("SASL"):
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username
        config["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    return config


def _aiokafka_security(settings: Settings) -> dict[str, Any]:
    config = security_config(settings)
    kwargs: dict[str, Any] = {"security_protocol": config["security.protocol"]}
    if "ssl.ca.location" in config:
        cafile = config["ssl.ca.location"]
        context = ssl.create_default_context(cafile=None if cafile == "probe" else cafile)
        if "ssl.certificate.location" in config:
            context.load_cert_chain(config["ssl.certificate.location"], config.get("ssl.key.location"))
        kwargs["ssl_context"] = context
    if "sasl.mechanism" in config:
        kwargs["sasl_mechanism"] = config["sasl.mechanism"]
        kwargs["sasl_plain_username"] = config["sasl.username"]
        kwargs["sasl_plain_password"] = config["sasl.password"]
    return kwargs


def _producer_config(settings: Settings, client_id: str) -> dict[str, Any]:
    """What every producer of callstream is told, in Kafka's configuration names: durable by default."""
    return {
        "bootstrap.servers": settings.require_kafka(),
        "client.id": client_id,
        "acks": "all",
        "enable.idempotence": settings.producer_idempotence,
        "linger.ms": settings.producer_linger_ms,
        "batch.size": settings.producer_max_batch_bytes,
        "message.max.bytes": max(settings.max_body_bytes * 2, 2 * 1024 * 1024),
        "compression.type": settings.producer_compression,
        "request.timeout.ms": delivery_timeout_ms(settings),
    }


_AIOKAFKA_PRODUCER_NAMES = {
    "bootstrap.servers": "bootstrap_servers", "client.id": "client_id", "acks": "acks",
    "enable.idempotence": "enable_idempotence", "linger.ms": "linger_ms", "batch.size": "max_batch_size",
    "message.max.bytes": "max_request_size", "compression.type": "compression_type",
    "request.timeout.ms": "request_timeout_ms",
}


def producer_kwargs(settings: Settings, *, client_id: str = "callstream") -> dict[str, Any]:
    """Arguments for ``AIOKafkaProducer`` (the edge, replay, the tools)."""
    config = _producer_config(settings, client_id)
    if config["compression.type"] == "none":
        del config["compression.type"]  # aiokafka spells no compression as None
    kwargs = {_AIOKAFKA_PRODUCER_NAMES[name]: value for name, value in config.items()}
    kwargs.update(_aiokafka_security(settings))
    return kwargs


def librdkafka_config(settings: Settings, *, client_id: str = "callstream-consumer") -> dict[str, Any]:
    """The ``confluent_kafka.Producer`` configuration (the consumer's downstream producer): the same
    durability, batching and security as ``producer_kwargs``."""
    config = _producer_config(settings, client_id)
    config.update({
        "message.timeout.ms": config["request.timeout.ms"],
        "partitioner": "murmur2_random",  # Java-compatible murmur2 for keyed records
        "delivery.report.only.error": True,  # successes need no Python callback
    })
    config.update(security_config(settings))
    return config


def consumer_kwargs(settings: Settings, *, group_id: str | None = None, client_id: str = "callstream") -> dict[str, Any]:
    """Arguments for ``AIOKafkaConsumer``: manual commits, start from the earliest unread record."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.require_kafka(),
        "client_id": client_id,
        "group_id": group_id if group_id is not None else settings.consumer_group,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": settings.batch_max_events,
        # what aiokafka prefetches is held in memory: a few batches' worth, not 16 MB a partition (a broker
        # still returns a record batch larger than these limits whole)
        "fetch_max_bytes": 16 * 1024 * 1024,
        "max_partition_fetch_bytes": 4 * 1024 * 1024,
        "isolation_level": "read_uncommitted",
    }
    kwargs.update(_aiokafka_security(settings))
    return kwargs


def admin_kwargs(settings: Settings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"bootstrap_servers": settings.require_kafka(), "client_id": "callstream-admin"}
    kwargs.update(_aiokafka_security(settings))
    return kwargs


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Per-topic Kafka configs for real clusters (retention in ms)."""
    day_ms = 24 * 3600 * 1000
    return {
        # The raw topic holds unprotected bodies (the recovery copy): shorter than the warehouse.
        settings.raw_topic: {
            "retention.ms": str(settings.raw_retention_hours * 3600 * 1000),
            "min.insync.replicas": "2",
        },
        settings.dead_topic: {"retention.ms": str(30 * day_ms), "min.insync.replicas": "2"},
        settings.cdrs_topic: {"retention.ms": str(14 * day_ms), "min.insync.replicas": "2"},
        settings.call_events_topic: {"retention.ms": str(14 * day_ms), "min.insync.replicas": "2"},
        settings.number_status_topic: {
            "cleanup.policy": "compact,delete",
            "retention.ms": str(90 * day_ms),
            "min.insync.replicas": "2",
        },
    }


async def ensure_topics(settings: Settings, *, with_configs: bool = False) -> list[str]:
    """Create callstream's topics when missing; returns the names it created."""
    admin = AIOKafkaAdminClient(**admin_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        configs = topic_configs(settings) if with_configs else {}
        wanted = [
            NewTopic(
                name,
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication_factor,
                topic_configs=configs.get(name, {}),
            )
            for name in settings.topics()
            if name not in existing
        ]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass
        return [topic.name for topic in wanted]
    finally:
        await admin.close()


async def read_topic(
    settings: Settings,
    topic: str,
    *,
    partitions: Collection[int] | None = None,
    start: Mapping[int, int] | None = None,
    stop: Mapping[int, int] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    missing_ok: bool = False,
    client_id: str = "callstream-reader",
    timeout_s: float = 120.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """The records of ``topic`` (all its ``partitions`` unless named), each partition read from offset
    ``start[p]``, else from the first record produced at or after ``since``, else from the beginning, up to
    offset ``stop[p]`` (inclusive), records produced before ``until``, and the end of the partition.

    The end is the high watermark of the fetch responses (ListOffsets "latest" is not trusted: the embedded
    broker answers the last batch's base offset there). A topic that does not exist is ``ConfigError``, or
    no records with ``missing_ok``; ``TimeoutError`` past ``timeout_s``.
    """
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings, group_id=None, client_id=client_id))
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()  # what consumer.topics() does, keeping partitions
        known = cluster.partitions_for_topic(topic) or set()
        if not known:
            if missing_ok:
                return []
            raise ConfigError(f"topic {topic} does not exist on {settings.kafka_bootstrap}")
        tps = [TopicPartition(topic, p) for p in sorted(known) if partitions is None or p in partitions]
        if not tps:
            raise ConfigError(f"topic {topic} has no partition {sorted(partitions or ())}: it has {sorted(known)}")
        consumer.assign(tps)
        by_time = {}
        if since is not None:
            by_time = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in tps})
        last = {tp: stop[tp.partition] + 1 for tp in tps if stop is not None and tp.partition in stop}
        pending: set[TopicPartition] = set()
        for tp in tps:
            if start is not None and tp.partition in start:
                consumer.seek(tp, start[tp.partition])
            elif since is not None:
                found = by_time.get(tp)
                if found is None:  # nothing was produced to this partition since ``since``
                    continue
                consumer.seek(tp, found.offset)
            else:
                await consumer.seek_to_beginning(tp)
            pending.add(tp)
        until_ms = int(until.timestamp() * 1000) if until is not None else None
        out: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} took longer than {timeout_s:.0f}s")
            batches = await consumer.getmany(*pending, timeout_ms=300, max_records=5000)
            for tp, records in batches.items():
                cut = last.get(tp)
                out += [r for r in records if (cut is None or r.offset < cut)
                        and (until_ms is None or r.timestamp < until_ms)]
            for tp in list(pending):
                position, high = await consumer.position(tp), consumer.highwater(tp)
                if (high is not None and position >= high) or (tp in last and position >= last[tp]):
                    pending.discard(tp)
        return out
    finally:
        await consumer.stop()

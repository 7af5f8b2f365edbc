"""aiokafka arguments built from the settings, and topic creation.

One place decides how callstream talks to Kafka, so the edge, the consumers and the tools agree:
``acks="all"`` always; idempotence only where the cluster supports it (Tansu refuses it).
"""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from core.settings import Settings


def _security_kwargs(settings: Settings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        )
        if settings.kafka_ssl_certfile:
            context.load_cert_chain(
                str(settings.kafka_ssl_certfile),
                str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
            )
        kwargs["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL"):
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        kwargs["sasl_plain_password"] = settings.kafka_sasl_password
    return kwargs


def producer_kwargs(settings: Settings, *, client_id: str = "callstream") -> dict[str, Any]:
    """Arguments for ``AIOKafkaProducer``: durable by default."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.require_kafka(),
        "client_id": client_id,
        "acks": "all",
        "enable_idempotence": settings.producer_idempotence,
        "linger_ms": settings.producer_linger_ms,
        "max_batch_size": settings.producer_max_batch_bytes,
        "max_request_size": max(settings.max_body_bytes * 2, 2 * 1024 * 1024),
        "request_timeout_ms": max(int(settings.ack_timeout_s * 1000) * 5, 10_000),
    }
    if settings.producer_compression != "none":
        kwargs["compression_type"] = settings.producer_compression
    kwargs.update(_security_kwargs(settings))
    return kwargs


def consumer_kwargs(settings: Settings, *, group_id: str | None = None, client_id: str = "callstream") -> dict[str, Any]:
    """Arguments for ``AIOKafkaConsumer``: manual commits, start from the earliest unread record."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.require_kafka(),
        "client_id": client_id,
        "group_id": group_id if group_id is not None else settings.consumer_group,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": settings.batch_max_events,
        "fetch_max_bytes": 64 * 1024 * 1024,
        "max_partition_fetch_bytes": 16 * 1024 * 1024,
        "isolation_level": "read_uncommitted",
    }
    kwargs.update(_security_kwargs(settings))
    return kwargs


def admin_kwargs(settings: Settings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"bootstrap_servers": settings.require_kafka(), "client_id": "callstream-admin"}
    kwargs.update(_security_kwargs(settings))
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

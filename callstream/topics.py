"""``callstream topics [--create]``: create missing topics with production configs, or describe them.

    callstream topics             # partitions, replication and configs of each callstream topic
    callstream topics --create    # create the missing ones (partitions, replication, retention, compaction)

Creation reads ``CALLSTREAM_TOPIC_PARTITIONS`` / ``CALLSTREAM_TOPIC_REPLICATION_FACTOR`` and the per-topic
configs of :func:`core.kafka.topic_configs`. Existing topics are never altered: the command reports
where they differ from the settings so an operator can act (partitions can only grow, and growing them
moves keys to other partitions).
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from core.errors import BrokerUnavailable, ConfigError
from core.kafka import admin_kwargs, ensure_topics, kafka_error, topic_configs
from core.settings import Settings


@dataclass(frozen=True)
class TopicInfo:
    """What the cluster says about one topic (``exists=False`` when it is missing)."""

    name: str
    exists: bool
    partitions: int = 0
    replication_factor: int = 0
    configs: dict[str, str] = field(default_factory=dict)


async def describe_topics(settings: Settings) -> list[TopicInfo]:
    """Partitions, replication factor and non-default configs of callstream's topics."""
    admin = AIOKafkaAdminClient(**admin_kwargs(settings))
    try:
        await admin.start()
    except (KafkaError, OSError, TimeoutError) as exc:
        raise kafka_error(exc, f"connect to {settings.kafka_bootstrap}; check CALLSTREAM_KAFKA_BOOTSTRAP "
                               "and the CALLSTREAM_KAFKA_SECURITY_PROTOCOL / SASL settings") from exc
    try:
        existing = set(await admin.list_topics())
        names = settings.topics()
        present = [name for name in names if name in existing]
        metadata = {t["topic"]: t for t in await admin.describe_topics(present)} if present else {}
        configs: dict[str, dict[str, str]] = {}
        if present:
            responses = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name) for name in present]
            )
            for response in responses:
                for resource in response.resources:
                    _code, _msg, _type, name, entries = resource[:5]
                    configs[name] = {entry[0]: entry[1] for entry in entries if entry[1] is not None}
        infos = []
        for name in names:
            if name not in metadata:
                infos.append(TopicInfo(name, exists=False))
                continue
            partitions = metadata[name]["partitions"]
            replication = max((len(p["replicas"]) for p in partitions), default=0)
            infos.append(TopicInfo(name, True, len(partitions), replication, configs.get(name, {})))
        return infos
    finally:
        await admin.close()


def differences(settings: Settings, info: TopicInfo) -> list[str]:
    """Ways an existing topic differs from what ``--create`` would have made."""
    if not info.exists:
        return ["missing: run `callstream topics --create`"]
    notes = []
    if info.partitions < settings.topic_partitions:
        notes.append(f"partitions {info.partitions} < CALLSTREAM_TOPIC_PARTITIONS={settings.topic_partitions}")
    if info.replication_factor < settings.topic_replication_factor:
        notes.append(
            f"replication {info.replication_factor} < "
            f"CALLSTREAM_TOPIC_REPLICATION_FACTOR={settings.topic_replication_factor}"
        )
    for key, wanted in topic_configs(settings).get(info.name, {}).items():
        have = info.configs.get(key)
        if have is not None and have != wanted:
            notes.append(f"{key}={have} (wanted {wanted})")
    return notes


async def create_topics(settings: Settings) -> tuple[list[str], list[TopicInfo]]:
    """Create the missing topics with their configs; returns (created names, description after)."""
    try:
        created = await ensure_topics(settings, with_configs=True)
    except Exception as exc:  # connection and protocol errors from aiokafka
        raise BrokerUnavailable(
            f"cannot create topics on {settings.kafka_bootstrap}: {exc}; check the bootstrap address, "
            "credentials and that the cluster has at least CALLSTREAM_TOPIC_REPLICATION_FACTOR brokers"
        ) from exc
    infos = await describe_topics(settings)
    missing = [info.name for info in infos if not info.exists]
    if missing:
        raise ConfigError(
            f"Kafka refused to create {', '.join(missing)}: the cluster needs at least "
            f"CALLSTREAM_TOPIC_REPLICATION_FACTOR={settings.topic_replication_factor} brokers and must "
            "accept the configs of core.kafka.topic_configs (see the broker log)"
        )
    return created, infos


def format_table(settings: Settings, infos: list[TopicInfo], created: list[str] | None = None) -> str:
    lines = [f"{'topic':<36} {'partitions':>10} {'replicas':>8}  configs / notes"]
    for info in infos:
        mark = " (created)" if created and info.name in created else ""
        config_text = ",".join(f"{k}={v}" for k, v in sorted(info.configs.items()))
        notes = differences(settings, info)
        tail = config_text + ("; " if config_text and notes else "") + "; ".join(notes)
        lines.append(f"{info.name + mark:<36} {info.partitions:>10} {info.replication_factor:>8}  {tail}")
    return "\n".join(lines)


def main(args: argparse.Namespace, settings: Settings) -> int:
    settings.require_kafka()
    if getattr(args, "create", False):
        created, infos = asyncio.run(create_topics(settings))
        print(format_table(settings, infos, created))
        return 0
    infos = asyncio.run(describe_topics(settings))
    print(format_table(settings, infos))
    return 0 if all(info.exists for info in infos) else 1

"""`callstream topics` against the real embedded broker, and the aiokafka arguments built from settings."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from callstream.cli import main as cli_main
from callstream.topics import describe_topics
from core.broker import EmbeddedBroker
from core.kafka import admin_kwargs, consumer_kwargs, producer_kwargs, topic_configs
from core.settings import Settings


def test_plaintext_kwargs_are_durable_and_carry_no_credentials() -> None:
    settings = Settings(kafka_bootstrap="k1:9092,k2:9092")
    producer = producer_kwargs(settings)
    assert producer["bootstrap_servers"] == "k1:9092,k2:9092"
    assert producer["acks"] == "all"
    assert producer["enable_idempotence"] is False
    assert producer["security_protocol"] == "PLAINTEXT"
    assert "sasl_mechanism" not in producer and "ssl_context" not in producer
    consumer = consumer_kwargs(settings)
    assert consumer["enable_auto_commit"] is False
    assert consumer["group_id"] == "callstream-loader"
    assert consumer["security_protocol"] == "PLAINTEXT"


def test_sasl_ssl_scram_with_idempotence_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "CALLSTREAM_KAFKA_BOOTSTRAP": "kafka.example:9094",
        "CALLSTREAM_PRODUCER_IDEMPOTENCE": "true",
        "CALLSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CALLSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "CALLSTREAM_KAFKA_SASL_USERNAME": "callstream",
        "CALLSTREAM_KAFKA_SASL_PASSWORD": "s3cret",
        "CALLSTREAM_CONSUMER_GROUP": "loader-prod",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert "s3cret" not in repr(settings)
    for kwargs in (producer_kwargs(settings), consumer_kwargs(settings), admin_kwargs(settings)):
        assert kwargs["bootstrap_servers"] == "kafka.example:9094"
        assert kwargs["security_protocol"] == "SASL_SSL"
        assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
        assert kwargs["sasl_plain_username"] == "callstream"
        assert kwargs["sasl_plain_password"] == "s3cret"
        assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
        assert kwargs["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    producer = producer_kwargs(settings)
    assert producer["enable_idempotence"] is True
    assert producer["acks"] == "all"
    assert consumer_kwargs(settings)["group_id"] == "loader-prod"


def test_production_topic_configs_cover_every_topic() -> None:
    settings = Settings()
    configs = topic_configs(settings)
    assert set(configs) == set(settings.topics())
    assert all(c["min.insync.replicas"] == "2" for c in configs.values())
    assert "compact" in configs[settings.number_status_topic]["cleanup.policy"]


async def _partitions(broker: EmbeddedBroker, topics: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(topics)}
    finally:
        await admin.close()


def _env_for(monkeypatch: pytest.MonkeyPatch, settings: Settings, partitions: int) -> None:
    monkeypatch.setenv("CALLSTREAM_KAFKA_BOOTSTRAP", settings.kafka_bootstrap)
    monkeypatch.setenv("CALLSTREAM_TOPIC_PARTITIONS", str(partitions))
    for name in ("raw_topic", "dead_topic", "cdrs_topic", "call_events_topic", "number_status_topic"):
        monkeypatch.setenv(f"CALLSTREAM_{name.upper()}", getattr(settings, name))


def test_topics_create_then_describe(
    broker: EmbeddedBroker,
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings(topic_partitions=5)
    _env_for(monkeypatch, settings, 5)

    assert cli_main(["topics"]) == 1  # nothing there yet: describe says so and fails
    assert "missing" in capsys.readouterr().out

    assert cli_main(["topics", "--create"]) == 0
    out = capsys.readouterr().out
    assert out.count("(created)") == 5
    assert asyncio.run(_partitions(broker, settings.topics())) == {name: 5 for name in settings.topics()}

    infos = {info.name: info for info in asyncio.run(describe_topics(settings))}
    assert infos[settings.number_status_topic].configs.get("cleanup.policy") == "compact,delete"
    assert infos[settings.raw_topic].configs.get("retention.ms") == str(settings.raw_retention_hours * 3600 * 1000)

    # idempotent: a second run creates nothing and leaves the partitions alone
    assert cli_main(["topics", "--create"]) == 0
    assert "(created)" not in capsys.readouterr().out
    assert cli_main(["topics"]) == 0
    assert asyncio.run(_partitions(broker, settings.topics())) == {name: 5 for name in settings.topics()}


def test_describe_reports_too_few_partitions(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(topic_partitions=2)
    _env_for(monkeypatch, settings, 2)
    assert cli_main(["topics", "--create"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("CALLSTREAM_TOPIC_PARTITIONS", "8")
    assert cli_main(["topics"]) == 0
    assert "partitions 2 < CALLSTREAM_TOPIC_PARTITIONS=8" in capsys.readouterr().out


def test_unreachable_broker_names_the_setting(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from core.broker import free_port

    monkeypatch.setenv("CALLSTREAM_KAFKA_BOOTSTRAP", f"127.0.0.1:{free_port()}")
    assert cli_main(["topics"]) == 2
    assert "CALLSTREAM_KAFKA_BOOTSTRAP" in capsys.readouterr().err

"""One set of Kafka client decisions (core.kafka), rendered for aiokafka and for librdkafka."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import Producer

from core.kafka import _AIOKAFKA_PRODUCER_NAMES, librdkafka_config, producer_kwargs
from core.settings import Settings


def test_plaintext_mapping_keeps_durability_and_the_java_partitioner() -> None:
    config = librdkafka_config(Settings(kafka_bootstrap="k1:9092,k2:9092", ack_timeout_s=3.0), client_id="c")
    assert config == {
        "bootstrap.servers": "k1:9092,k2:9092",
        "client.id": "c",
        "acks": "all",
        "enable.idempotence": False,
        "linger.ms": 2,
        "batch.size": 1024 * 1024,
        "message.max.bytes": 2 * 1024 * 1024,
        "compression.type": "lz4",
        "request.timeout.ms": 15_000,
        "message.timeout.ms": 15_000,
        "partitioner": "murmur2_random",
        "delivery.report.only.error": True,
        "security.protocol": "PLAINTEXT",
    }
    Producer(config)  # librdkafka accepts every key and value


def test_production_mapping_idempotence_sasl_and_tls(tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / name for name in ("ca.pem", "client.pem", "client.key"))
    settings = Settings(
        kafka_bootstrap="kafka.internal:9093", producer_idempotence=True, producer_compression="zstd",
        producer_linger_ms=5, producer_max_batch_bytes=512 * 1024, max_body_bytes=4 * 1024 * 1024,
        kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="loader",
        kafka_sasl_password="s3cret", kafka_ssl_cafile=ca, kafka_ssl_certfile=cert, kafka_ssl_keyfile=key,
    )
    config = librdkafka_config(settings)
    assert config["enable.idempotence"] is True and config["acks"] == "all"
    assert config["compression.type"] == "zstd" and config["linger.ms"] == 5
    assert config["batch.size"] == 512 * 1024 and config["message.max.bytes"] == 8 * 1024 * 1024
    assert config["client.id"] == "callstream-consumer"
    assert {k: v for k, v in config.items() if k.startswith(("security", "sasl", "ssl"))} == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "loader",
        "sasl.password": "s3cret",
        "ssl.ca.location": str(ca),
        "ssl.certificate.location": str(cert),
        "ssl.key.location": str(key),
    }


def test_tls_without_a_ca_file_uses_the_system_cas_and_plain_sasl_has_no_tls() -> None:
    tls = librdkafka_config(Settings(kafka_bootstrap="k:9093", kafka_security_protocol="SSL"))
    assert tls["ssl.ca.location"] == "probe" and not any(k.startswith("sasl") for k in tls)
    sasl = librdkafka_config(Settings(kafka_bootstrap="k:9092", kafka_security_protocol="SASL_PLAINTEXT",
                                      kafka_sasl_username="u", kafka_sasl_password="p"))
    assert sasl["sasl.mechanism"] == "PLAIN" and not any(k.startswith("ssl") for k in sasl)
    Producer(sasl)


def test_aiokafka_and_librdkafka_producers_are_told_the_same() -> None:
    for compression in ("lz4", "none"):
        settings = Settings(kafka_bootstrap="k:9092", producer_compression=compression, producer_idempotence=True,
                            producer_linger_ms=7, max_body_bytes=3 * 1024 * 1024, ack_timeout_s=4.0)
        aiokafka = producer_kwargs(settings, client_id="edge")
        librdkafka = librdkafka_config(settings, client_id="edge")
        for name, aiokafka_name in _AIOKAFKA_PRODUCER_NAMES.items():
            if name == "compression.type" and compression == "none":
                assert aiokafka_name not in aiokafka and librdkafka[name] == "none"
                continue
            assert aiokafka[aiokafka_name] == librdkafka[name], name
        assert aiokafka["security_protocol"] == librdkafka["security.protocol"] == "PLAINTEXT"


async def _build(kwargs: dict[str, object]) -> None:
    producer = AIOKafkaProducer(**kwargs)  # aiokafka accepts every argument (not started: no broker needed)
    await producer.stop()


def test_aiokafka_tls_and_sasl_come_from_the_same_security_settings() -> None:
    settings = Settings(kafka_bootstrap="k:9093", kafka_security_protocol="SASL_SSL",
                        kafka_sasl_mechanism="SCRAM-SHA-256", kafka_sasl_username="u", kafka_sasl_password="p")
    kwargs = producer_kwargs(settings)
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert kwargs["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert (kwargs["sasl_mechanism"], kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == (
        "SCRAM-SHA-256", "u", "p")
    asyncio.run(_build(kwargs))
    plain = producer_kwargs(Settings(kafka_bootstrap="k:9092"))
    assert "ssl_context" not in plain and "sasl_mechanism" not in plain


def test_a_missing_ca_file_is_reported_when_the_client_is_configured(tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap="k:9093", kafka_security_protocol="SSL", kafka_ssl_cafile=tmp_path / "no.pem")
    with pytest.raises((FileNotFoundError, ssl.SSLError)):
        producer_kwargs(settings)

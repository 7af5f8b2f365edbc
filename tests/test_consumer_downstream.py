"""consumers.downstream: the settings -> librdkafka mapping, and delivery against the real broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import murmur2
from confluent_kafka import Producer

from consumers.downstream import DownstreamProducer, librdkafka_config
from core.broker import free_port
from core.errors import BrokerUnavailable
from core.kafka import consumer_kwargs, ensure_topics
from core.settings import Settings

pytestmark = pytest.mark.timeout(120)


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


def test_records_are_acknowledged_and_partitioned_like_the_java_client(settings: Settings) -> None:
    keys = [f"session-{i}@callenabler.example".encode() for i in range(60)]

    async def scenario() -> dict[bytes, tuple[int, bytes, list[tuple[str, bytes]]]]:
        await ensure_topics(settings)
        producer = DownstreamProducer(settings)
        await producer.start()
        for i, key in enumerate(keys):
            producer.send(settings.cdrs_topic, f"value-{i}".encode(), key, [("ce_id", str(i).encode())])
        await producer.flush()
        await producer.stop()
        consumer = AIOKafkaConsumer(**consumer_kwargs(settings, group_id=None))
        await consumer.start()
        got: dict[bytes, tuple[int, bytes, list[tuple[str, bytes]]]] = {}
        try:
            consumer.assign([TopicPartition(settings.cdrs_topic, p) for p in range(settings.topic_partitions)])
            await consumer.seek_to_beginning()
            deadline = time.monotonic() + 20
            while len(got) < len(keys) and time.monotonic() < deadline:
                for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                    for r in records:
                        got[r.key] = (tp.partition, r.value, list(r.headers))
        finally:
            await consumer.stop()
        return got

    got = asyncio.run(scenario())
    assert len(got) == len(keys)
    for i, key in enumerate(keys):
        partition, value, headers = got[key]
        assert partition == (murmur2(key) & 0x7FFFFFFF) % settings.topic_partitions
        assert value == f"value-{i}".encode() and headers == [("ce_id", str(i).encode())]


def test_unacknowledged_records_raise_broker_unavailable(make_settings: Callable[..., Settings]) -> None:
    """Nothing listens on the port: the records time out and flush says so (retriable)."""
    settings = make_settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", ack_timeout_s=0.5)

    async def scenario() -> None:
        producer = DownstreamProducer(settings)
        with pytest.raises(BrokerUnavailable, match="did not answer"):
            await producer.start()
        producer.send(settings.cdrs_topic, b"v", b"k", [])
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable, match="not delivered|did not acknowledge") as caught:
            await producer.flush()
        assert caught.value.retriable and time.monotonic() - started < 30
        await producer.stop()

    asyncio.run(scenario())

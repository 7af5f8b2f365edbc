"""callstream.supervise: `up` treats its embedded broker as started once it serves requests."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from callstream.supervise import topics_when_served
from core.broker import EmbeddedBroker, free_port
from core.errors import BrokerUnavailable
from core.kafka import admin_kwargs
from core.settings import Settings


async def _topics(settings: Settings) -> set[str]:
    admin = AIOKafkaAdminClient(**admin_kwargs(settings))
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


def test_topics_are_created_once_a_late_broker_serves(make_settings: Callable[..., Settings]) -> None:
    port = free_port()
    settings = make_settings(kafka_bootstrap=f"127.0.0.1:{port}")
    late = EmbeddedBroker(port=port)
    starter = threading.Timer(1.5, late.start)  # nothing listens when the wait begins
    starter.start()
    try:
        began = time.monotonic()
        asyncio.run(topics_when_served(settings, 30))
        assert time.monotonic() - began >= 1.0
        assert set(settings.topics()) <= asyncio.run(_topics(settings))
    finally:
        starter.join()
        late.stop()


def test_a_broker_that_never_serves_is_reported_unavailable(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(kafka_bootstrap=f"127.0.0.1:{free_port()}")
    began = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="create the topics"):
        asyncio.run(topics_when_served(settings, 2))
    assert time.monotonic() - began < 20

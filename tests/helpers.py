"""What many tests need: an async test body on its own event loop, waiting for a condition with a
deadline, reading a topic from the beginning, and an ASGI app served by uvicorn in a thread.

One async style: a test is a plain function; an async body runs through ``asyncio.run`` (directly, or
with the ``run_async`` decorator), so no asyncio plugin decides about event loops.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from aiokafka import AIOKafkaConsumer, TopicPartition

from core.broker import free_port
from core.kafka import consumer_kwargs
from core.settings import Settings


def run_async(func: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test body on a fresh event loop."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(func(*args, **kwargs))

    return wrapper


def wait_until(
    check: Callable[[], object], timeout_s: float = 30.0, what: str = "the condition", interval_s: float = 0.05,
) -> None:
    """Poll ``check`` until it is true; ``AssertionError`` naming ``what`` past the deadline."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout_s:.0f}s")
        time.sleep(interval_s)


async def await_until(
    check: Callable[[], object], timeout_s: float = 30.0, what: str = "the condition", interval_s: float = 0.05,
) -> None:
    """``wait_until`` from async code (``check`` runs in a thread: it may block, e.g. on the store)."""
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout_s:.0f}s")
        await asyncio.sleep(interval_s)


async def read_records(
    settings: Settings, topic: str, count: int, timeout_s: float = 15.0, *, settle_s: float = 0.0,
) -> list[Any]:
    """The records of ``topic`` from the beginning, once ``count`` have arrived (or what arrived by
    ``timeout_s``); ``settle_s`` keeps reading a little longer to catch any record too many."""
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings, group_id=None, client_id="callstream-test-reader"))
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        partitions = [TopicPartition(topic, p) for p in sorted(cluster.partitions_for_topic(topic) or ())]
        if not partitions:  # not created yet: the edge or the consumer creates it
            partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(records) < count and time.monotonic() < deadline:
            for items in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(items)
        if settle_s and len(records) >= count:
            for items in (await consumer.getmany(timeout_ms=int(settle_s * 1000))).values():
                records.extend(items)
        return records
    finally:
        await consumer.stop()


@contextmanager
def serve_in_thread(app: Any, timeout_s: float = 10.0) -> Iterator[str]:
    """Serve an ASGI ``app`` with uvicorn on a free 127.0.0.1 port in a thread; yields its base URL and
    stops it on exit."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True, name=f"uvicorn-{port}")
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), timeout_s, "the test server started")
        assert server.started, "the test server stopped while starting"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)

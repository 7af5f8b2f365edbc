"""The edge's bounds: a body is read only up to its limit (+1 byte to know it was larger), a client
that leaves mid-body is reported, and the in-flight counter has a hard ceiling."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from core.errors import ClientDisconnected
from ingest.limits import InFlight, read_body


def _receive(messages: list[dict[str, Any]]) -> Any:
    queue = list(messages)
    taken: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        taken.append(queue.pop(0))
        return taken[-1]

    receive.taken = taken  # type: ignore[attr-defined]
    return receive


def _chunks(*parts: bytes) -> list[dict[str, Any]]:
    return [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)]


def test_bodies_within_and_beyond_the_limit() -> None:
    assert asyncio.run(read_body(_receive(_chunks(b"abc")), 3)) == (b"abc", False)
    assert asyncio.run(read_body(_receive(_chunks(b"ab", b"c", b"")), 3)) == (b"abc", False)
    assert asyncio.run(read_body(_receive(_chunks(b"abcd")), 3)) == (b"abc", True)
    receive = _receive(_chunks(b"ab", b"cd", b"never read", b"nor this"))
    assert asyncio.run(read_body(receive, 3)) == (b"abc", True)
    assert len(receive.taken) == 2  # stopped as soon as the limit was passed


def test_a_client_that_leaves_is_reported() -> None:
    for messages in ([{"type": "http.disconnect"}], [*_chunks(b"ab", b"c")[:1], {"type": "http.disconnect"}]):
        with pytest.raises(ClientDisconnected):
            asyncio.run(read_body(_receive(messages), 10))


def test_in_flight_has_a_hard_ceiling() -> None:
    gate = InFlight(2)
    assert gate.try_enter() and gate.try_enter() and not gate.try_enter()
    gate.leave()
    assert gate.try_enter() and gate.count == 2
    with pytest.raises(ValueError, match="CALLSTREAM_MAX_IN_FLIGHT_REQUESTS"):
        InFlight(0)

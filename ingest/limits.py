"""Bounds of the edge: the request body size (read as a stream, stopped at limit + 1) and the number of
requests in flight (beyond it the edge answers 503 at once instead of queueing in memory).
"""

from __future__ import annotations

from typing import NamedTuple

from starlette.types import Receive

from core.errors import ClientDisconnected

__all__ = ["Body", "ClientDisconnected", "InFlight", "read_body"]


class Body(NamedTuple):
    """The bytes read; ``too_large`` means the sender had more than ``limit`` bytes (body holds ``limit``)."""

    data: bytes
    too_large: bool


async def read_body(receive: Receive, limit: int) -> Body:
    """Read an ASGI request body; stop as soon as more than ``limit`` bytes arrived."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnected
    chunk: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(chunk) > limit:
            return Body(chunk[:limit], True)
        return Body(chunk, False)
    parts = [chunk]
    size = len(chunk)
    while size <= limit:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        parts.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            break
    data = b"".join(parts)
    if size > limit:
        return Body(data[:limit], True)
    return Body(data, False)


class InFlight:
    """A counter of requests being handled, with a hard ceiling."""

    __slots__ = ("count", "limit")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("max_in_flight_requests must be >= 1 (CALLSTREAM_MAX_IN_FLIGHT_REQUESTS)")
        self.limit = limit
        self.count = 0

    def try_enter(self) -> bool:
        if self.count >= self.limit:
            return False
        self.count += 1
        return True

    def leave(self) -> None:
        self.count -= 1

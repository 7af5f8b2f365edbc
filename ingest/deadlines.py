"""One timer for many waiters that share a timeout.

Every request waits at most the same ``timeout_s``, so deadlines arrive in the order the waiters were
added: a FIFO queue and a single loop timer (set for the oldest waiter still pending) replace a timer
per request. A waiter still pending at its deadline gets ``reason`` as its result.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Deadlines:
    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float, reason: str) -> None:
        self.loop = loop
        self.timeout_s = timeout_s
        self.reason = reason
        self._queue: deque[tuple[float, asyncio.Future[str | None]]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def watch(self, waiter: asyncio.Future[str | None]) -> None:
        """Settle ``waiter`` with ``reason`` if it is still pending ``timeout_s`` from now."""
        deadline = self.loop.time() + self.timeout_s
        self._queue.append((deadline, waiter))
        if self._timer is None:
            self._timer = self.loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        self._timer = None
        queue = self._queue
        now = self.loop.time()
        while queue:
            deadline, waiter = queue[0]
            if waiter.done():
                queue.popleft()
            elif deadline <= now:
                queue.popleft()
                waiter.set_result(self.reason)
            else:
                self._timer = self.loop.call_at(deadline, self._expire)
                return

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()

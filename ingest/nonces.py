"""A bounded, expiring set of nonces that already got a 200 (replay protection for the edge).

Entries live ``ttl_s`` (twice the allowed ``Created`` skew). The set holds at most ``max_entries``;
when full, the oldest entries go first, which only shortens the replay window for the oldest nonces.
"""

from __future__ import annotations

from collections import OrderedDict


class NonceCache:
    def __init__(self, ttl_s: float, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1 (CALLSTREAM_AUTH_NONCE_CACHE_ENTRIES)")
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._expiry: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._expiry)

    def seen(self, key: str, now: float) -> bool:
        """True when ``key`` was added less than ``ttl_s`` ago."""
        expires = self._expiry.get(key)
        return expires is not None and expires > now

    def add(self, key: str, now: float) -> None:
        self._expiry[key] = now + self.ttl_s
        self._expiry.move_to_end(key)
        self._evict(now)

    def _evict(self, now: float) -> None:
        expiry = self._expiry
        while expiry:
            key, expires = next(iter(expiry.items()))
            if expires > now and len(expiry) <= self.max_entries:
                return
            del expiry[key]

"""Replay protection: a nonce is remembered for its time to live, and a full cache forgets the oldest."""

from __future__ import annotations

import pytest

from ingest.nonces import NonceCache


def test_a_nonce_is_seen_until_it_expires() -> None:
    cache = NonceCache(ttl_s=10, max_entries=100)
    cache.add("n1", now=100)
    assert cache.seen("n1", now=105) and not cache.seen("n2", now=105)
    assert not cache.seen("n1", now=110)
    cache.add("n3", now=111)  # adding evicts what has expired
    assert len(cache) == 1


def test_a_full_cache_forgets_the_oldest_first() -> None:
    cache = NonceCache(ttl_s=1000, max_entries=3)
    for n, key in enumerate(("a", "b", "c", "d")):
        cache.add(key, now=n)
    assert len(cache) == 3 and not cache.seen("a", now=5) and cache.seen("d", now=5)
    cache.add("b", now=6)  # seen again: now the newest
    cache.add("e", now=7)
    assert not cache.seen("c", now=8) and cache.seen("b", now=8)
    with pytest.raises(ValueError, match="CALLSTREAM_AUTH_NONCE_CACHE_ENTRIES"):
        NonceCache(1, 0)

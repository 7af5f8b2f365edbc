"""Kafka's default key partitioner (murmur2, as the Java client computes it), faster than aiokafka's.

Records with the same key land on the partition a Java or librdkafka (``murmur2_random``) producer would
pick, so callstream topics co-partition with others. The hash of recent keys is cached: one call yields
several notifications with the same sessionId (callout, alerting, answer, disconnect, CDR).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """MurmurHash2 of ``data`` exactly as ``org.apache.kafka.common.utils.Utils.murmur2`` (unsigned)."""
    length = len(data)
    h = _SEED ^ length
    words = length // 4
    if words:
        for k in struct.unpack_from(f"<{words}I", data):
            k = (k * _M) & _MASK
            k ^= k >> 24
            k = (k * _M) & _MASK
            h = ((h * _M) & _MASK) ^ k
    tail = length & 3
    if tail:
        base = length & ~3
        if tail >= 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h ^= data[base]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


class CachedMurmur2Partitioner:
    """``partitioner=`` for ``AIOKafkaProducer``: murmur2 of the key, random partition for no key."""

    def __init__(self, max_keys: int = 8192) -> None:
        self.max_keys = max_keys
        self._hashes: dict[bytes, int] = {}

    def __call__(self, key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]) -> int:
        if key is None:
            return random.choice(available or all_partitions)
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self.max_keys:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[hashed % len(all_partitions)]

"""How many refused bytes the edge stores: token buckets of bytes per source address and in total.

Every refused push (401, 403, 413, 429, 400 …) used to be written to the dead-letter topic with up to
``max_body_bytes`` of body, so anyone who can reach the port could fill that topic. Now a refusal is
stored only while two buckets hold its cost (body bytes plus ``RECORD_OVERHEAD_BYTES``):

* one bucket per source (an IPv4 address, or the /64 of an IPv6 address, so one host cannot rotate
  through its own prefix): ``quarantine_source_burst_bytes`` at once, refilled at
  ``quarantine_source_bytes_per_s``;
* one bucket for the whole edge process: ``quarantine_total_burst_bytes`` refilled at
  ``quarantine_total_bytes_per_s``.

Beyond either bound the refusal is still answered (same status, same reason) but its body is not stored;
the edge counts it in ``callstream_edge_quarantine_skipped_events_total{reason,bound}``. Because the
buckets refill, each source keeps leaving a steady sample of its refused bodies on the topic: a
platform whose pushes all fail (a mis-set secret) is sampled, not silenced, while its re-pushes
(CDRs and privacy events, see docs/guarantees.md) are what recover the data once the secret is fixed.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Literal

from core.errors import ConfigError
from core.settings import Settings

RECORD_OVERHEAD_BYTES = 1024  # headers, reason, detail and framing of one dead-letter record
MAX_SOURCES = 10_000

Verdict = Literal["stored", "source", "total"]


def source_of(host: str) -> str:
    """The bucket key of a peer address: the IPv4 address, the /64 of an IPv6 address, else the text."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
    return host


class _Bucket:
    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.stamp = rate, burst, burst, now

    def refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def holds(self, cost: float) -> bool:
        # a record larger than the whole burst still passes when the bucket is full; the debt it
        # leaves keeps the long-run rate bounded
        return self.tokens >= min(cost, self.burst)


class QuarantineBudget:
    """Decides, per refused push, whether its bytes are stored (see the module docstring)."""

    def __init__(
        self,
        source_bytes_per_s: float,
        source_burst_bytes: float,
        total_bytes_per_s: float,
        total_burst_bytes: float,
        *,
        max_sources: int = MAX_SOURCES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (
            ("CALLSTREAM_QUARANTINE_SOURCE_BYTES_PER_S", source_bytes_per_s),
            ("CALLSTREAM_QUARANTINE_SOURCE_BURST_BYTES", source_burst_bytes),
            ("CALLSTREAM_QUARANTINE_TOTAL_BYTES_PER_S", total_bytes_per_s),
            ("CALLSTREAM_QUARANTINE_TOTAL_BURST_BYTES", total_burst_bytes),
        ):
            if value < 0:
                raise ConfigError(f"{name}={value:g} must be >= 0 (0 stores no refused bodies)")
        self.source_rate, self.source_burst = float(source_bytes_per_s), float(source_burst_bytes)
        self.max_sources = max_sources
        self.clock = clock
        self._total = _Bucket(float(total_bytes_per_s), float(total_burst_bytes), clock())
        self._sources: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> QuarantineBudget:
        return cls(
            settings.quarantine_source_bytes_per_s,
            settings.quarantine_source_burst_bytes,
            settings.quarantine_total_bytes_per_s,
            settings.quarantine_total_burst_bytes,
        )

    def admit(self, host: str, body_bytes: int) -> Verdict:
        """``"stored"`` and the cost taken from both buckets, or the bound that refused (nothing taken)."""
        cost = body_bytes + RECORD_OVERHEAD_BYTES
        now = self.clock()
        key = source_of(host)
        with self._lock:
            bucket = self._sources.pop(key, None)
            if bucket is None:
                bucket = _Bucket(self.source_rate, self.source_burst, now)
            self._sources[key] = bucket
            while len(self._sources) > self.max_sources:
                self._sources.popitem(last=False)
            bucket.refill(now)
            self._total.refill(now)
            if self.source_burst <= 0 or not bucket.holds(cost):
                return "source"
            if self._total.burst <= 0 or not self._total.holds(cost):
                return "total"
            bucket.tokens -= cost
            self._total.tokens -= cost
        return "stored"

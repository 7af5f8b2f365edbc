"""Edge guards: source-IP allowlist, per-app rate limit, quarantine budget, loopback-only metrics.

Small pieces the notify endpoint calls in order: ``IPAllowlist.check(host)`` before anything else
(403 ``ip_not_allowed``), ``AppRateLimiter.check(app_key)`` after the signature is verified (429
``rate_limited`` with ``Retry-After``) — so a forged header cannot spend a genuine app's budget — and
``QuarantineBudget.admit(host, size)`` (ingest/quarantine.py) before a refusal is stored, and
``metrics_allowed(host, settings)`` for ``/metrics`` (404 to non-loopback clients unless
``metrics_public``). Refusals are ``RejectedNotification``s, quarantined and counted like the others.

Behind a reverse proxy the client address is the proxy's unless uvicorn trusts it
(``--forwarded-allow-ips``), in which case ``X-Forwarded-For`` gives the real source.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from core.errors import IpNotAllowed, RateLimited
from core.settings import Network, Settings, parse_cidrs
from ingest.quarantine import QuarantineBudget

__all__ = ["AppRateLimiter", "EdgeGuard", "IPAllowlist", "IpNotAllowed", "QuarantineBudget", "RateLimited",
           "is_loopback", "parse_cidrs"]


class IPAllowlist:
    """Source addresses allowed to push; an empty list allows every address."""

    def __init__(self, networks: list[Network]) -> None:
        self.networks = networks

    @classmethod
    def from_settings(cls, settings: Settings) -> IPAllowlist | None:
        networks = list(settings.edge_allow_cidrs)
        return cls(networks) if networks else None

    def allows(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False  # unix socket or unknown peer: not provably inside the list
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def check(self, host: str) -> None:
        if not self.allows(host):
            raise IpNotAllowed(f"source address {host or 'unknown'} is not in CALLSTREAM_EDGE_ALLOW_CIDRS")


class AppRateLimiter:
    """Token bucket per app key: ``rate_per_s`` sustained, ``burst`` at once (default one second's worth)."""

    def __init__(
        self,
        rate_per_s: float,
        burst: float | None = None,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be > 0 (0 means no limiter: do not build one)")
        self.rate = float(rate_per_s)
        self.burst = float(burst) if burst is not None else max(1.0, self.rate)
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> AppRateLimiter | None:
        rate = settings.rate_limit_per_app_per_s
        return cls(rate) if rate > 0 else None

    def acquire(self, app_key: str) -> float:
        """Take one token: ``0.0`` when allowed, else the seconds until a token is available."""
        now = self.clock()
        with self._lock:
            tokens, stamp = self._buckets.pop(app_key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - stamp) * self.rate)
            if tokens >= 1.0:
                tokens -= 1.0
                wait = 0.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[app_key] = (tokens, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        return wait

    def check(self, app_key: str) -> None:
        wait = self.acquire(app_key)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise RateLimited(
                f"app {app_key} is above CALLSTREAM_RATE_LIMIT_PER_APP_PER_S={self.rate:g}; "
                f"retry in {seconds}s",
                retry_after_s=seconds,
            )


def is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def metrics_allowed(host: str, settings: Settings) -> bool:
    """``/metrics`` on the public port answers only loopback clients unless ``metrics_public``."""
    return settings.metrics_public or is_loopback(host)


class EdgeGuard:
    """The guards one edge app shares across its endpoints (``None`` where the setting is off)."""

    def __init__(
        self,
        allowlist: IPAllowlist | None,
        limiter: AppRateLimiter | None,
        quarantine: QuarantineBudget | None = None,
    ) -> None:
        self.allowlist = allowlist
        self.limiter = limiter
        self.quarantine = quarantine  # None: every refusal is stored

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgeGuard:
        return cls(
            IPAllowlist.from_settings(settings),
            AppRateLimiter.from_settings(settings),
            QuarantineBudget.from_settings(settings),
        )


def receipt_host(client: tuple[str, int] | list[object] | None) -> str:
    """The peer address of an ASGI ``scope["client"]`` ("" when unknown)."""
    return str(client[0]) if client else ""

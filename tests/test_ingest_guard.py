"""Edge guards: IP allowlist (403), per-app token bucket (429 + Retry-After), loopback-only /metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from core.errors import ConfigError
from core.settings import Settings
from ingest.app import create_app
from ingest.auth import sign_headers
from ingest.guard import AppRateLimiter, IPAllowlist, IpNotAllowed, RateLimited, is_loopback, parse_cidrs
from tests.conftest import TEST_PRIVACY_APP_KEY, TEST_PRIVACY_APP_SECRET, sample_bytes
from tests.helpers import run_async


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_allowlist_matches_v4_v6_and_mapped_addresses() -> None:
    allow = IPAllowlist(parse_cidrs("203.0.113.0/24, 2001:db8::/32,192.0.2.7"))
    assert allow.allows("203.0.113.200") and allow.allows("192.0.2.7") and allow.allows("2001:db8::1")
    assert allow.allows("::ffff:203.0.113.9")
    assert not allow.allows("198.51.100.1") and not allow.allows("192.0.2.8") and not allow.allows("")
    with pytest.raises(IpNotAllowed) as refused:
        allow.check("198.51.100.1")
    assert refused.value.status == 403 and refused.value.reason == "ip_not_allowed"


def test_bad_cidr_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="CALLSTREAM_EDGE_ALLOW_CIDRS"):
        parse_cidrs("10.0.0.0/8,not-a-net")
    assert IPAllowlist.from_settings(Settings()) is None


def test_token_bucket_bursts_then_refills_per_app() -> None:
    clock = FakeClock()
    limiter = AppRateLimiter(2.0, burst=3, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(0.5)
    assert limiter.acquire("b") == 0.0  # another app has its own bucket
    clock.now += 0.5
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0
    clock.now += 100
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]  # capped at the burst
    assert limiter.acquire("a") > 0


def test_slow_rate_gives_whole_second_retry_after() -> None:
    clock = FakeClock()
    limiter = AppRateLimiter(0.2, clock=clock)
    limiter.check("a")
    with pytest.raises(RateLimited) as limited:
        limiter.check("a")
    assert limited.value.status == 429 and limited.value.retry_after_s == 5


def test_limiter_forgets_old_keys_beyond_its_bound() -> None:
    limiter = AppRateLimiter(1.0, max_keys=10, clock=FakeClock())
    for n in range(100):
        limiter.acquire(f"k{n}")
    assert len(limiter._buckets) == 10  # noqa: SLF001


def test_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("10.1.2.3") and not is_loopback("testclient")


# --- through the real app and broker -------------------------------------------------------------


@asynccontextmanager
async def edge(settings: Settings, client_ip: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(client_ip, 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://edge.test", timeout=30) as client:
            yield client


def _push(client: httpx.AsyncClient) -> httpx.Response:
    headers = sign_headers(TEST_PRIVACY_APP_KEY, TEST_PRIVACY_APP_SECRET)
    headers["Content-Type"] = "application/json;charset=UTF-8"
    return client.post(
        "/notify/privacy", content=sample_bytes("privacy_axb_cdr_single.json"), headers=headers
    )


@run_async
async def test_edge_refuses_outside_addresses_and_counts_them(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(edge_allow_cidrs="10.0.0.0/8", metrics_public=False)
    async with edge(settings, "198.51.100.7") as outside:
        answer = await _push(outside)
        assert answer.status_code == 403 and answer.json()["error"] == "ip_not_allowed"
        assert (await outside.get("/metrics")).status_code == 404  # not loopback, not public
    async with edge(settings, "10.9.8.7") as inside:
        assert (await _push(inside)).status_code == 200
    async with edge(settings, "127.0.0.1") as local:
        answer = await _push(local)
        assert answer.status_code == 403
        text = (await local.get("/metrics")).text
        assert 'callstream_edge_discarded_events_total{reason="ip_not_allowed"} 1.0' in text


@run_async
async def test_edge_rate_limits_per_app_with_retry_after(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(rate_limit_per_app_per_s=0.5)
    async with edge(settings, "127.0.0.1") as client:
        assert (await _push(client)).status_code == 200
        limited = await _push(client)
        assert limited.status_code == 429 and limited.json()["error"] == "rate_limited"
        assert limited.headers["retry-after"] == "2"
        forged = sign_headers(TEST_PRIVACY_APP_KEY, "wrong-secret")
        bad = await client.post("/notify/privacy", content=b"{}", headers=forged)
        assert bad.status_code == 401  # refused on the signature, not charged to the app's bucket
        text = (await client.get("/metrics")).text
        assert 'callstream_edge_discarded_events_total{reason="rate_limited"} 1.0' in text

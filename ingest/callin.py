"""X-mode ``callin`` in Block mode: ask the customer's call-control app what to do with the call.

In X mode the platform pushes ``callin`` and waits for the answer: its body carries the call-control
action (``{"operation": "connect", "connectInfo": {...}}`` or ``{"operation": "close", ...}``). The platform
does not re-push a callin, so the answer has to come back in time, the first time. With
``CALLSTREAM_CALLIN_UPSTREAM_URL`` set, the edge relays every ``callin`` on ``/notify/privacy``:

1. the push is published to the raw topic (like any other) while, at the same time, its exact bytes are
   POSTed to the upstream with the platform's ``Content-Type``/``Authorization``/``X-AKSK``/``X-WSSE``
   headers plus ``X-Callstream-Id`` (the notification id) and ``X-Callstream-App-Key`` (the signer);
2. the upstream's 2xx JSON-object answer goes back to the platform verbatim with a 200, once Kafka has
   the push and no later than ``CALLSTREAM_CALLIN_DEADLINE_S`` after the request arrived.

When the upstream misses the deadline (``timeout``), cannot be reached or answers non-2xx
(``unavailable``), or answers something that is not a JSON object (``bad_answer``), the edge answers
``CALLSTREAM_CALLIN_FALLBACK`` with a 200 if it is set (e.g. ``{"operation":"close"}``), else 504/502
with the reason. Either way the callin is already in Kafka. When Kafka does not acknowledge it within
the deadline the answer is 503, as for any push (the platform will not retry it; the call's CDR,
which is re-pushed, still arrives).
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple

import httpx
import orjson

from core.errors import ConfigError
from core.settings import Settings

MAX_ANSWER_BYTES = 64 * 1024
ANSWER_MARGIN_S = 0.05  # kept back from the deadline to write the answer
_FORWARDED = (b"content-type", b"authorization", b"x-aksk", b"x-wsse")


class RelayAnswer(NamedTuple):
    """What the edge answers the platform: ``outcome`` (answered, timeout, unavailable, bad_answer) is the
    upstream's result; ``status``/``body`` the HTTP answer (the fallback replaces a failed one)."""

    outcome: str
    status: int
    body: bytes


def _fallback_bytes(text: str) -> bytes | None:
    if not text.strip():
        return None
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict):
        raise ConfigError(
            f"CALLSTREAM_CALLIN_FALLBACK={text[:60]!r} is not a JSON object: write the call-control answer, "
            'e.g. {"operation":"close"}'
        )
    return orjson.dumps(doc)


class CallinRelay:
    """Relays callin pushes to one upstream URL with one pooled httpx client."""

    def __init__(self, url: str, deadline_s: float, fallback: bytes | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(
                f"CALLSTREAM_CALLIN_UPSTREAM_URL={url[:80]!r} must be the http:// or https:// URL of the "
                "call-control app"
            )
        if not 0 < deadline_s <= 60:
            raise ConfigError(f"CALLSTREAM_CALLIN_DEADLINE_S={deadline_s:g} must be between 0 and 60 seconds")
        self.url = url
        parsed = httpx.URL(url)
        port = f":{parsed.port}" if parsed.port else ""
        self.shown_url = f"{parsed.scheme}://{parsed.host}{port}{parsed.path}"  # for logs: no userinfo, no query
        self.deadline_s = deadline_s
        self.fallback = fallback
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> CallinRelay | None:
        if not settings.callin_upstream_url:
            if settings.callin_fallback:
                raise ConfigError("CALLSTREAM_CALLIN_FALLBACK is set without CALLSTREAM_CALLIN_UPSTREAM_URL: set both")
            return None
        return cls(settings.callin_upstream_url, settings.callin_deadline_s, _fallback_bytes(settings.callin_fallback))

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.deadline_s, limits=httpx.Limits(max_connections=200, max_keepalive_connections=50)
            )

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def budget(self, started: float, now: float) -> float:
        """Seconds left for the upstream of a request that arrived at loop time ``started``."""
        return max(0.0, self.deadline_s - (now - started) - ANSWER_MARGIN_S)

    async def ask(self, body: bytes, headers: list[tuple[bytes, bytes]], extra: dict[str, str],
                  timeout_s: float) -> RelayAnswer:
        """POST ``body`` upstream; the answer to give the platform (never raises for upstream trouble)."""
        await self.start()
        assert self._client is not None
        forward = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers if name in _FORWARDED}
        forward.update(extra)
        try:
            async with asyncio.timeout(timeout_s):
                response = await self._client.post(self.url, content=body, headers=forward)
                answer = await response.aread()
        except TimeoutError:
            return self._failed("timeout", 504, f"the call-control app did not answer within {self.deadline_s:g} s")
        except httpx.HTTPError as exc:
            return self._failed("unavailable", 502, f"the call-control app is unreachable: {type(exc).__name__}")
        if not 200 <= response.status_code < 300:
            return self._failed("unavailable", 502, f"the call-control app answered HTTP {response.status_code}")
        if len(answer) > MAX_ANSWER_BYTES or not answer.lstrip().startswith(b"{"):
            return self._failed("bad_answer", 502, "the call-control app did not answer a JSON object")
        try:
            orjson.loads(answer)
        except orjson.JSONDecodeError:
            return self._failed("bad_answer", 502, "the call-control app did not answer a JSON object")
        return RelayAnswer("answered", 200, answer)

    def _failed(self, outcome: str, status: int, detail: str) -> RelayAnswer:
        if self.fallback is not None:
            return RelayAnswer(outcome, 200, self.fallback)
        return RelayAnswer(outcome, status, orjson.dumps({"error": f"callin_upstream_{outcome}", "detail": detail}))

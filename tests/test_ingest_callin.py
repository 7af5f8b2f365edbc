"""X-mode callin relay: the edge asks a real call-control app (Starlette on uvicorn, a free 127.0.0.1
port) and gives its answer to the platform within the deadline; slow, failing and absent upstreams get
the fallback or a 504/502, and the callin is in Kafka in every case."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.broker import EmbeddedBroker, free_port
from core.errors import ConfigError
from core.settings import Settings
from ingest.app import create_app
from ingest.auth import sign_headers
from ingest.callin import CallinRelay
from schemas.avro_codec import decode
from tests.conftest import TEST_PRIVACY_APP_KEY, TEST_PRIVACY_APP_SECRET, sample_bytes
from tests.test_ingest_app import read_records

pytestmark = pytest.mark.anyio
CALLIN = sample_bytes("privacy_axb_event_callin.json")
CONNECT = {"operation": "connect", "connectInfo": {"calleeNum": "+8613900000001", "maxDuration": 30}}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Upstream:
    """A call-control app: /connect answers an action, /slow takes 3 s, /error 500, /garbage plain text."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes, dict[str, str]]] = []
        self.port = free_port()

        async def record(request: Request) -> bytes:
            body = await request.body()
            self.seen.append((request.url.path, body, dict(request.headers)))
            return body

        async def connect(request: Request) -> Response:
            await record(request)
            return JSONResponse(CONNECT)

        async def slow(request: Request) -> Response:
            await record(request)
            await asyncio.sleep(3)
            return JSONResponse(CONNECT)

        async def error(request: Request) -> Response:
            await record(request)
            return JSONResponse({"error": "boom"}, status_code=500)

        async def garbage(request: Request) -> Response:
            await record(request)
            return Response(b"connect please", media_type="text/plain")

        app = Starlette(routes=[Route(f"/{f.__name__}", f, methods=["POST"]) for f in (connect, slow, error, garbage)])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def start(self) -> Upstream:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "upstream did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    running = Upstream().start()
    try:
        yield running
    finally:
        running.stop()


@asynccontextmanager
async def edge(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://edge.test", timeout=30) as client:
            yield client


def signed() -> dict[str, str]:
    return {**sign_headers(TEST_PRIVACY_APP_KEY, TEST_PRIVACY_APP_SECRET),
            "Content-Type": "application/json;charset=UTF-8"}


async def timed_post(client: httpx.AsyncClient, body: bytes) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await client.post("/notify/privacy", content=body, headers=signed())
    return response, time.monotonic() - started


async def test_callin_gets_the_call_control_answer_and_is_published(
    make_settings: Callable[..., Settings], upstream: Upstream,
) -> None:
    settings = make_settings(callin_upstream_url=upstream.url("connect"), callin_deadline_s=2.0)
    disconnect = sample_bytes("privacy_axb_event_disconnect.json")
    async with edge(settings) as client:
        answer, _ = await timed_post(client, CALLIN)
        other = await client.post("/notify/privacy", content=disconnect, headers=signed())
        metrics = (await client.get("/metrics")).text
    assert answer.status_code == 200 and answer.json() == CONNECT
    assert answer.headers["content-type"] == "application/json;charset=UTF-8"
    assert other.status_code == 200 and other.content == b"{}"  # only callin is relayed
    ((path, body, headers),) = upstream.seen
    assert path == "/connect" and body == CALLIN  # the exact bytes
    assert headers["x-callstream-app-key"] == TEST_PRIVACY_APP_KEY and len(headers["x-callstream-id"]) == 32
    assert headers["x-aksk"].startswith("UsernameToken") and headers["content-type"].startswith("application/json")
    raw = [decode(r.value)[1] for r in await read_records(settings, settings.raw_topic, 2)]
    assert sorted(r["event_type"] for r in raw) == ["callin", "disconnect"]
    assert next(r for r in raw if r["event_type"] == "callin")["id"] == headers["x-callstream-id"]
    assert 'callstream_edge_callin_relay_total{outcome="answered"} 1.0' in metrics


@pytest.mark.parametrize(
    ("path", "fallback", "status", "error", "outcome"),
    [
        ("slow", "", 504, "callin_upstream_timeout", "timeout"),
        ("slow", '{"operation": "close"}', 200, None, "timeout"),
        ("error", "", 502, "callin_upstream_unavailable", "unavailable"),
        ("garbage", "", 502, "callin_upstream_bad_answer", "bad_answer"),
        ("garbage", '{"operation":"close"}', 200, None, "bad_answer"),
        ("down", "", 502, "callin_upstream_unavailable", "unavailable"),
    ],
)
async def test_slow_failing_or_absent_upstream(
    make_settings: Callable[..., Settings], upstream: Upstream,
    path: str, fallback: str, status: int, error: str | None, outcome: str,
) -> None:
    url = f"http://127.0.0.1:{free_port()}/x" if path == "down" else upstream.url(path)
    settings = make_settings(callin_upstream_url=url, callin_deadline_s=0.8, callin_fallback=fallback)
    async with edge(settings) as client:
        answer, elapsed = await timed_post(client, CALLIN)
        metrics = (await client.get("/metrics")).text
    assert answer.status_code == status, answer.text
    assert elapsed < 0.8 + 0.3, elapsed  # within the platform's deadline, however slow the upstream
    if error is None:
        assert answer.json() == json.loads(fallback)
    else:
        assert answer.json()["error"] == error
    assert f'callstream_edge_callin_relay_total{{outcome="{outcome}"}} 1.0' in metrics
    (record,) = await read_records(settings, settings.raw_topic, 1)
    assert decode(record.value)[1]["body"] == CALLIN  # published like any other push


async def test_kafka_down_is_503_within_the_deadline(make_settings: Callable[..., Settings], upstream: Upstream) -> None:
    own = EmbeddedBroker().start()
    try:
        settings = make_settings(kafka_bootstrap=own.bootstrap, callin_upstream_url=upstream.url("connect"),
                                 callin_deadline_s=1.0, ack_timeout_s=5.0)
        async with edge(settings) as client:
            assert (await timed_post(client, CALLIN))[0].status_code == 200
            own.kill()
            answer, elapsed = await timed_post(client, CALLIN)
        assert answer.status_code == 503 and elapsed < 1.0 + 0.3, (answer.text, elapsed)
    finally:
        own.stop()


def test_settings_errors_name_the_setting(make_settings: Callable[..., Settings]) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"callin_upstream_url": "ftp://x"}, "CALLSTREAM_CALLIN_UPSTREAM_URL"),
        ({"callin_upstream_url": "http://x", "callin_fallback": "[1]"}, "CALLSTREAM_CALLIN_FALLBACK"),
        ({"callin_upstream_url": "http://x", "callin_fallback": "{nope"}, "CALLSTREAM_CALLIN_FALLBACK"),
        ({"callin_fallback": '{"operation":"close"}'}, "CALLSTREAM_CALLIN_UPSTREAM_URL"),
        ({"callin_upstream_url": "http://x", "callin_deadline_s": 0}, "CALLSTREAM_CALLIN_DEADLINE_S"),
    ]
    for overrides, name in cases:
        with pytest.raises(ConfigError, match=name):
            create_app(make_settings(**overrides))
    assert CallinRelay.from_settings(make_settings()) is None
    relay = CallinRelay.from_settings(make_settings(callin_upstream_url="https://user:pw@cc.example:8443/callin?k=s"))
    assert relay is not None and relay.shown_url == "https://cc.example:8443/callin"

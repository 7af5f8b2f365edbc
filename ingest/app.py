"""The edge's ASGI app: ``POST /notify/voice`` and ``POST /notify/privacy``, health and metrics.

Every answer other than 503 means the bytes are in Kafka: a 200 after the raw record was acknowledged
(acks=all), a 4xx after the refused bytes were acknowledged on the dead-letter topic. When Kafka does not
acknowledge within ``ack_timeout_s`` the answer is 503 with ``Retry-After``, so the platform re-pushes.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from core.errors import AuthError, BodyTooLarge, BrokerUnavailable, RejectedNotification
from core.settings import Settings
from ingest.auth import Authenticator, Identity, parse_token
from ingest.envelope import (
    Receipt,
    cloudevent_headers,
    dead_letter_message,
    new_id,
    raw_record,
    redact_headers,
)
from ingest.guard import EdgeGuard, metrics_allowed, receipt_host
from ingest.limits import ClientDisconnected, InFlight, read_body
from ingest.metrics import EdgeMetrics
from ingest.notification import classify
from ingest.publisher import Publisher

log = logging.getLogger(__name__)

JSON_UTF8 = b"application/json;charset=UTF-8"
RETRY_AFTER_S = b"1"
_OK_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", JSON_UTF8), (b"content-length", b"2")],
}
_OK_BODY = {"type": "http.response.body", "body": b"{}"}
_AUTH_OFF = Identity("", "off")


async def _answer(send: Send, status: int, payload: dict[str, str], retry_after: bool | int = False) -> None:
    body = orjson.dumps(payload)
    headers = [(b"content-type", JSON_UTF8), (b"content-length", str(len(body)).encode())]
    if retry_after:
        headers.append((b"retry-after", RETRY_AFTER_S if retry_after is True else str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class NotifyEndpoint:
    """The ASGI endpoint of one service path (raw ASGI: this is the hot path)."""

    def __init__(
        self,
        service: str,
        settings: Settings,
        authenticator: Authenticator | None,
        publisher: Publisher,
        metrics: EdgeMetrics,
        in_flight: InFlight,
        guard: EdgeGuard | None = None,
    ) -> None:
        self.service = service
        self.guard = guard if guard is not None else EdgeGuard.from_settings(settings)
        self.path = f"/notify/{service}"
        self.settings = settings
        self.raw_topic = settings.raw_topic
        self.dead_topic = settings.dead_topic
        self.max_body_bytes = settings.max_body_bytes
        self.authenticator = authenticator
        self.publisher = publisher
        self.metrics = metrics
        self.in_flight = in_flight
        self.public_url = settings.public_base_url.rstrip("/") + self.path if settings.public_base_url else ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        if not self.in_flight.try_enter():
            self.metrics.error("overload")
            await _answer(send, 503, {"error": "overloaded", "detail": "too many requests in flight"}, True)
            self.metrics.observe(self.path, 503, time.perf_counter() - started)
            return
        try:
            status = await self._handle(scope, receive, send)
        finally:
            self.in_flight.leave()
        self.metrics.observe(self.path, status, time.perf_counter() - started)

    def _url(self, scope: Scope) -> str:
        return self.public_url or str(URL(scope=scope))

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> int:
        received_at = datetime.now(UTC)
        now = received_at.timestamp()
        authorization = aksk = wsse = content_type = ""
        for name, value in scope["headers"]:
            if name == b"x-aksk":
                aksk = value.decode("latin-1")
            elif name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"x-wsse":
                wsse = value.decode("latin-1")
        client = scope.get("client")
        receipt = Receipt(
            new_id(), received_at, self.service, self.path, content_type, client[0] if client else ""
        )
        try:
            body = await read_body(receive, self.max_body_bytes)
        except ClientDisconnected:
            return 499
        identity = _AUTH_OFF
        try:
            if self.guard.allowlist is not None:
                self.guard.allowlist.check(receipt_host(client))
            if self.authenticator is not None:
                url = self._url(scope) if self.service == "voice" else ""
                identity = self.authenticator.verify(self.service, authorization, aksk, wsse, url, now)
            if self.guard.limiter is not None:
                self.guard.limiter.check(identity.app_key)  # after the signature: forgeries spend nothing
            if body.too_large:
                raise BodyTooLarge(f"body is larger than {self.max_body_bytes} bytes")
            classified = classify(self.service, body.data)
        except RejectedNotification as exc:
            return await self._refuse(scope, send, receipt, body.data, body.too_large, identity, exc, aksk or wsse)

        value = raw_record(receipt, body.data, classified.event_type, identity.app_key, identity.scheme)
        key = classified.key
        headers = cloudevent_headers(receipt, classified.event_type, identity.app_key, key)
        key_bytes = key.encode() if key else None
        try:
            waiter = self.publisher.submit(self.raw_topic, value, key_bytes, headers)
            if waiter is None:  # no partition metadata for the topic yet: the slower, waiting path
                await self.publisher.publish(self.raw_topic, value, key_bytes, headers)
            else:
                error = await waiter
                if error is not None:
                    raise BrokerUnavailable(error)
        except BrokerUnavailable as exc:
            self.metrics.error("publish")
            await _answer(send, 503, {"error": exc.reason, "detail": str(exc)}, True)
            return 503
        if self.authenticator is not None:
            self.authenticator.accepted(identity, now)
        self.metrics.accepted(self.service, classified.event_type)
        await send(_OK_START)
        await send(_OK_BODY)
        return 200

    async def _refuse(
        self,
        scope: Scope,
        send: Send,
        receipt: Receipt,
        body: bytes,
        truncated: bool,
        identity: Identity,
        error: RejectedNotification,
        token: str,
    ) -> int:
        """Quarantine the refused bytes, then answer the 4xx (or 503 if the quarantine was not acked)."""
        app_key = identity.app_key
        if not app_key and token and isinstance(error, AuthError):
            try:
                app_key = parse_token(token).username  # claimed, not verified; the reason says so
            except AuthError:
                app_key = ""
        record, headers = dead_letter_message(
            receipt,
            body,
            reason=error.reason,
            detail=str(error),
            http_status=error.status,
            app_key=app_key,
            headers=redact_headers(scope["headers"]),
            truncated=truncated,
        )
        try:
            await self.publisher.publish(self.dead_topic, record, None, headers)
        except BrokerUnavailable as exc:
            self.metrics.error("dead_letter")
            await _answer(send, 503, {"error": exc.reason, "detail": str(exc)}, True)
            return 503
        self.metrics.refused(error.reason)
        await _answer(send, error.status, {"error": error.reason, "detail": str(error), "id": receipt.id},
                      getattr(error, "retry_after_s", False))
        return error.status


class EdgeApp(Starlette):
    """The edge's Starlette app: ``POST /notify/*`` goes straight to its endpoint (the hot path skips the
    middleware stack and the router); every other request takes the usual Starlette way."""

    def __init__(self, notify: dict[str, ASGIApp], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.notify = notify

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self.notify.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings, *, registry: CollectorRegistry | None = None) -> Starlette:
    """The edge app; its lifespan starts (and on shutdown flushes) its own Kafka producer."""
    apps = settings.require_apps()
    authenticator = (
        Authenticator(
            apps,
            schemes=settings.auth_schemes,
            max_skew_s=settings.auth_max_skew_s,
            nonce_cache_entries=settings.auth_nonce_cache_entries,
        )
        if settings.auth == "on"
        else None
    )
    metrics = EdgeMetrics(registry if registry is not None else CollectorRegistry())
    publisher = Publisher(settings)
    in_flight = InFlight(settings.max_in_flight_requests)
    metrics.in_flight.set_function(lambda: in_flight.count)
    guard = EdgeGuard.from_settings(settings)

    async def live(request: Request) -> Response:
        return JSONResponse({"status": "live"})

    async def ready(request: Request) -> Response:
        if await publisher.ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse(
            {"status": "not_ready", "detail": f"Kafka {settings.kafka_bootstrap} is not reachable"},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    async def metrics_endpoint(request: Request) -> Response:
        if not metrics_allowed(request.client.host if request.client else "", settings):
            return Response(status_code=404)  # CALLSTREAM_METRICS_PUBLIC=true serves non-loopback clients
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if authenticator is None:
            log.warning(
                "AUTHENTICATION IS OFF (CALLSTREAM_AUTH=off): any caller can push notifications; "
                "use this for local development only"
            )
        await publisher.start()
        gc.freeze()  # modules, settings, producer: long-lived; keep them out of every later GC pass
        try:
            yield
        finally:
            await publisher.stop()

    routes = [
        Route(f"/notify/{service}",
              NotifyEndpoint(service, settings, authenticator, publisher, metrics, in_flight, guard),
              methods=["POST"])
        for service in ("voice", "privacy")
    ]
    routes += [
        Route("/health/live", live, methods=["GET"]),
        Route("/health/ready", ready, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    app = EdgeApp({route.path: route.app for route in routes[:2]}, routes=routes, lifespan=lifespan)
    app.state.settings = settings
    app.state.publisher = publisher
    app.state.metrics = metrics
    app.state.authenticator = authenticator
    app.state.in_flight = in_flight
    return app

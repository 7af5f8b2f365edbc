"""The live dashboard that ``callstream up`` serves under ``/dashboard/`` of its query endpoint.

One static page (``callstream/static/dashboard/``, shipped in the package: no CDN) polls three JSON
endpoints:

- ``/dashboard/api/live``: pushes per second by service and kind, answers 200 / 4xx / 503, ack latency,
  consumer lag and receipt-to-row latency, dead letters by reason (``live_metrics``);
- ``/dashboard/api/calls?day=YYYY-MM-DD``: per app and service the day's KPIs (``kpi_daily``), the same
  per hour (``kpi_hourly``), the top failure causes (``failure_causes``), failed events by stage and
  reason over the last 24 h and the latest calls (``call_facts``). Without ``day``: the latest day with
  calls. Each section carries the SQL it ran, so ``callstream sql "<that SQL>"`` prints the same figures;
  the queries run through the same engine path as the SQL endpoint;
- ``/dashboard/api/timeline?session_id=…``: one call in time order (``call_timeline``). The session id
  may be given as the platform sent it: its numbers are protected the way the store keeps them
  (``consumers.numbers``), so a hashed store is searched by its hash.

Numbers are shown as stored: the consumer already masked or hashed them under the protection policy.
"""

from __future__ import annotations

import asyncio
import re
from datetime import date
from importlib.resources import files
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from callstream.live_metrics import LiveSampler, edge_metrics_url
from callstream.query_server import QueryEngine, QueryRefused
from consumers.numbers import policy_from_settings
from consumers.protect import protect_session_id
from core.errors import ConfigError, DashboardError, StoreError
from core.settings import Settings

PREFIX = "/dashboard"
STATIC_DIR = files("callstream") / "static" / "dashboard"
RECENT_CALLS = 25
TOP_CAUSES = 10
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


ANSWERED_ERRORS = (DashboardError, QueryRefused, StoreError, ClickHouseError)


def calls_sql(db: str, day: date) -> dict[str, str]:
    """The SQL of every section of ``/dashboard/api/calls`` for one UTC day."""
    start = f"toDateTime('{day.isoformat()} 00:00:00', 'UTC')"
    return {
        "daily": f"SELECT * FROM {db}.kpi_daily WHERE day = '{day.isoformat()}' ORDER BY app_key, service",
        "hourly": (
            f"SELECT * FROM {db}.kpi_hourly WHERE hour >= {start} AND hour < {start} + INTERVAL 1 DAY "
            "ORDER BY hour, app_key, service"
        ),
        "causes": (
            "SELECT failure_category, failure_reason, sum(calls) AS calls, max(user_caused) AS user_caused "
            f"FROM {db}.failure_causes WHERE day = '{day.isoformat()}' GROUP BY failure_category, failure_reason "
            f"ORDER BY calls DESC, failure_reason LIMIT {TOP_CAUSES}"
        ),
        "failed": (
            "SELECT stage, reason, count() AS events, max(failed_at) AS last_failed_at "
            f"FROM {db}.failed_events FINAL WHERE received_at >= now() - INTERVAL 24 HOUR "
            "GROUP BY stage, reason ORDER BY events DESC, stage, reason"
        ),
        "calls": (
            "SELECT session_id, call_time, app_key, service, service_type, is_answered, talk_seconds, "
            f"failure_reason FROM {db}.call_facts WHERE hour >= {start} AND hour < {start} + INTERVAL 1 DAY "
            f"ORDER BY call_time DESC, session_id LIMIT {RECENT_CALLS}"
        ),
    }


def latest_day_sql(db: str) -> str:
    return f"SELECT toDate(max(call_time)) AS day, count() AS cdrs FROM {db}.cdrs"


def timeline_sql(db: str) -> str:
    return (
        "SELECT time, seq, source, kind, leg, caller, called, code, detail, failure_category, app_key, service "
        f"FROM {db}.call_timeline WHERE session_id = {{session_id:String}} ORDER BY time, seq"
    )


class Dashboard:
    """Runs the dashboard's queries on the store ``up`` owns and samples the live metrics."""

    def __init__(self, settings: Settings, client: Client, consumer_registry: CollectorRegistry | None) -> None:
        if not _IDENTIFIER.match(settings.clickhouse_database):
            raise ConfigError(
                f"CALLSTREAM_CLICKHOUSE_DATABASE={settings.clickhouse_database!r} is not a plain identifier: "
                "use letters, digits and underscores"
            )
        self.settings = settings
        self.db = settings.clickhouse_database
        self.engine = QueryEngine(settings, client)
        self.policy = policy_from_settings(settings)
        self.sampler = LiveSampler(edge_metrics_url(settings), consumer_registry)

    def rows(self, sql: str, bind: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """The ``data`` rows of ``sql`` in ClickHouse's JSON format, exactly as ``callstream sql`` renders them."""
        body, _, _ = self.engine.run(sql, default_format="JSON", database=self.db, bind=bind)
        data = orjson.loads(body).get("data", [])
        return list(data)

    def calls(self, day_text: str | None) -> dict[str, Any]:
        latest = self.rows(latest_day_sql(self.db))
        has_calls = bool(latest) and int(latest[0]["cdrs"]) > 0
        latest_day = str(latest[0]["day"]) if has_calls else None
        if day_text:
            try:
                day = date.fromisoformat(day_text)
            except ValueError:
                raise DashboardError(f"day={day_text!r} is not a date: write YYYY-MM-DD") from None
        elif latest_day is not None:
            day = date.fromisoformat(latest_day)
        else:
            day = date.today()
        queries = calls_sql(self.db, day)
        out: dict[str, Any] = {"day": day.isoformat(), "latest_day": latest_day, "database": self.db, "sql": queries}
        for name, sql in queries.items():
            out[name] = self.rows(sql)
        return out

    def timeline(self, session_id: str) -> dict[str, Any]:
        session_id = session_id.strip()
        if not session_id:
            raise DashboardError("session_id is empty: give a sessionId as the platform sent it, or as stored")
        stored = protect_session_id(session_id, self.policy)
        sql = timeline_sql(self.db)
        return {"session_id": stored, "sql": sql, "rows": self.rows(sql, {"session_id": stored})}


async def _page(request: Request) -> Response:
    return Response((STATIC_DIR / "index.html").read_bytes(), media_type="text/html; charset=utf-8")


def _error(exc: DashboardError | QueryRefused | StoreError | ClickHouseError) -> JSONResponse:
    if isinstance(exc, DashboardError):
        return JSONResponse({"error": str(exc)}, status_code=exc.status)
    if isinstance(exc, QueryRefused):
        return JSONResponse({"error": exc.text}, status_code=exc.status)
    return JSONResponse({"error": f"the store did not answer: {exc}"}, status_code=503)


def routes(settings: Settings, client: Client, consumer_registry: CollectorRegistry | None = None) -> list[BaseRoute]:
    """The dashboard's routes, to mount next to the query endpoint's (``query_server.create_app``)."""
    dashboard = Dashboard(settings, client, consumer_registry)

    async def live(request: Request) -> Response:
        return JSONResponse(await dashboard.sampler.figures())

    async def calls(request: Request) -> Response:
        try:
            return JSONResponse(await asyncio.to_thread(dashboard.calls, request.query_params.get("day")))
        except ANSWERED_ERRORS as exc:  # answered as JSON: the page shows the message
            return _error(exc)

    async def timeline(request: Request) -> Response:
        try:
            return JSONResponse(
                await asyncio.to_thread(dashboard.timeline, request.query_params.get("session_id", ""))
            )
        except ANSWERED_ERRORS as exc:
            return _error(exc)

    async def to_page(request: Request) -> Response:
        return RedirectResponse(f"{PREFIX}/")

    return [
        Route(PREFIX, to_page, methods=["GET"]),
        Mount(
            PREFIX,
            routes=[
                Route("/", _page, methods=["GET"]),
                Route("/api/live", live, methods=["GET"]),
                Route("/api/calls", calls, methods=["GET"]),
                Route("/api/timeline", timeline, methods=["GET"]),
                Mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="dashboard-static"),
            ],
        ),
    ]

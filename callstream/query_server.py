"""A read-only ClickHouse-compatible HTTP query endpoint over the embedded store (chDB).

The process that owns the chDB store (``callstream up``) serves it here, so ``callstream sql``,
clickhouse-connect, Grafana's ClickHouse data source and ``curl '…/?query=SELECT 1'`` work as against a
real server. The subset of the ClickHouse HTTP interface implemented:

- ``GET|POST /`` with ``query`` in the URL and/or the body (concatenated as ClickHouse does),
  ``database``, ``default_format``, ``query_id``, ``param_<name>`` bind values and settings as URL
  parameters (unknown and session/transport ones are ignored);
- the ``FORMAT`` clause of the query wins over ``default_format``; the engine renders the format and the
  bytes reach the caller unchanged;
- response headers ``X-ClickHouse-Format``, ``-Timezone`` (UTC), ``-Server-Display-Name``,
  ``-Query-Id``, ``-Summary``; errors as ``Code: N. DB::Exception: …`` with HTTP 400/403/500;
- ``GET /ping`` -> ``Ok.``.

Only SELECT, WITH, SHOW, DESCRIBE/DESC, EXISTS and EXPLAIN run, and every query also carries
``readonly=1`` so the engine itself refuses writes.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import uuid
from typing import Any
from urllib.parse import parse_qsl

from clickhouse_connect.driver.binding import format_query_value
from clickhouse_connect.driver.client import Client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from core import store
from core.settings import Settings

SERVER_NAME = "callstream"
READ_ONLY_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN"})
READONLY_CODE = 164
# URL parameters that steer the HTTP session or transport, never engine settings.
IGNORED_PARAMS = frozenset(
    {
        "session_id", "session_timeout", "session_check", "compress", "decompress", "user", "password",
        "quota_key", "buffer_size", "wait_end_of_query", "enable_http_compression", "http_zlib_compression_level",
        "send_progress_in_http_headers", "http_headers_progress_interval_ms", "client_protocol_version",
        "cancel_http_readonly_queries_on_client_close", "readonly", "add_http_cors_header", "role",
        "http_native_compression_disable_checksumming_on_decompress", "max_execution_time_leaf",
    }
)
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.IGNORECASE)
_LEADING_NOISE = re.compile(r"^(?:\s+|--[^\n]*\n?|/\*.*?\*/|\()+", re.DOTALL)
_CODE = re.compile(r"Code:\s*(\d+)")
_BAD_REQUEST_CODES = frozenset({36, 43, 46, 47, 53, 60, 62, 81, 386, 456, 457})


class QueryRefused(Exception):
    """A query this endpoint does not run; ``text`` is ClickHouse-style, ``status`` the HTTP answer."""

    def __init__(self, text: str, status: int, code: int) -> None:
        super().__init__(text)
        self.text, self.status, self.code = text, status, code


def first_keyword(sql: str) -> str:
    """The first SQL keyword of ``sql``, skipping whitespace, comments and opening parentheses."""
    rest = _LEADING_NOISE.sub("", sql, count=1)
    match = re.match(r"[A-Za-z]+", rest)
    return match.group(0).upper() if match else ""


def split_format(sql: str) -> tuple[str, str | None]:
    """``("SELECT 1", "JSON")`` for ``"SELECT 1 FORMAT JSON;"``; the format is None when absent."""
    sql = sql.strip().rstrip(";").rstrip()
    match = _TRAILING_FORMAT.search(sql)
    if match is None:
        return sql, None
    return sql[: match.start()].rstrip(), match.group(1)


def check_read_only(sql: str) -> None:
    keyword = first_keyword(sql)
    if keyword not in READ_ONLY_KEYWORDS:
        raise QueryRefused(
            f"Code: {READONLY_CODE}. DB::Exception: callstream query endpoint is read-only: "
            f"{keyword or 'empty query'} is not allowed; use SELECT, WITH, SHOW, DESCRIBE, EXISTS or EXPLAIN "
            "(write through the pipeline, or run `callstream sql` after stopping `up`). (READONLY)",
            403,
            READONLY_CODE,
        )


class QueryEngine:
    """Runs read-only SQL on the shared embedded client and returns the engine's bytes."""

    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self.settings = settings
        self.client = client if client is not None else store.connect(settings)
        self._known_settings: frozenset[str] | None = None
        self._init_lock = threading.Lock()

    def _backend(self) -> Any:
        backend = getattr(self.client, "_backend", None)
        if backend is None or not hasattr(backend, "_run"):
            raise QueryRefused(
                "Code: 48. DB::Exception: the query endpoint serves the embedded store only; "
                "query your ClickHouse server directly. (NOT_IMPLEMENTED)",
                501,
                48,
            )
        return backend

    def known_settings(self) -> frozenset[str]:
        with self._init_lock:
            if self._known_settings is None:
                rows = store.query_rows(self.client, "SELECT name FROM system.settings")
                self._known_settings = frozenset(str(row[0]) for row in rows)
            return self._known_settings

    def engine_settings(self, params: dict[str, str]) -> dict[str, str]:
        known = self.known_settings()
        return {
            k: v
            for k, v in params.items()
            if k not in IGNORED_PARAMS and _SETTING_NAME.match(k) and k in known
        }

    def run(
        self,
        query: str,
        *,
        default_format: str = "TabSeparated",
        database: str | None = None,
        bind: dict[str, str] | None = None,
        settings: dict[str, str] | None = None,
    ) -> tuple[bytes, str, dict[str, str]]:
        """Run one statement; returns (body, format, summary). Raises QueryRefused or DatabaseError."""
        sql, fmt = split_format(query)
        if not sql:
            raise QueryRefused("Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)", 400, 62)
        check_read_only(sql)
        fmt = fmt or default_format
        clauses = {"readonly": "1", "session_timezone": "UTC"}
        for key, value in (settings or {}).items():
            clauses.setdefault(key, value)
        settings_sql = ", ".join(f"{k} = {_setting_value(v)}" for k, v in clauses.items())
        final = f"{sql}\nSETTINGS {settings_sql}\nFORMAT {fmt}"
        backend = self._backend()
        with store.locked(self.client):
            handle = backend._handle
            previous = handle.active_database
            try:
                result = backend._run(final, fmt, params=bind or {}, database=database or None)
            finally:
                if handle.active_database != previous:
                    # USE is state of the shared handle: give the owner its database back.
                    backend._run("SELECT 1", "TabSeparated", database=previous or "default")
            body = result.bytes() or b""
            summary = backend._summary(result)
        return body, fmt, summary


def _setting_value(value: str) -> str:
    """A SETTINGS clause value (settings cannot be bound): numbers bare, anything else a string literal
    quoted by clickhouse-connect."""
    return value if re.fullmatch(r"-?\d+(\.\d+)?", value) else str(format_query_value(value))


def _headers(query_id: str, fmt: str | None, summary: dict[str, str] | None = None) -> dict[str, str]:
    headers = {
        "X-ClickHouse-Server-Display-Name": SERVER_NAME,
        "X-ClickHouse-Query-Id": query_id,
        "X-ClickHouse-Timezone": "UTC",
        "X-ClickHouse-Summary": json.dumps(summary or {}, separators=(",", ":")),
    }
    if fmt:
        headers["X-ClickHouse-Format"] = fmt
    return headers


def _error_response(text: str, status: int, code: int, query_id: str) -> PlainTextResponse:
    headers = _headers(query_id, None)
    headers["X-ClickHouse-Exception-Code"] = str(code)
    return PlainTextResponse(text.rstrip() + "\n", status_code=status, headers=headers)


async def _read_request(request: Request) -> tuple[dict[str, str], str]:
    params = dict(request.query_params)
    body = (await request.body()).decode("utf-8", errors="replace")
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        params.update(dict(parse_qsl(body, keep_blank_values=True)))
        body = ""
    query = params.pop("query", "")
    if body.strip():
        query = f"{query}\n{body}" if query else body
    return params, query


def create_app(settings: Settings, client: Client | None = None) -> Starlette:
    """The Starlette app of the query endpoint (served by uvicorn in the owning process)."""
    engine = QueryEngine(settings, client)

    async def ping(request: Request) -> Response:
        return PlainTextResponse("Ok.\n")

    async def query(request: Request) -> Response:
        params, sql = await _read_request(request)
        query_id = params.pop("query_id", "") or str(uuid.uuid4())
        if not sql.strip():
            if request.method == "GET":
                return PlainTextResponse("Ok.\n")
            return _error_response("Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)", 400, 62, query_id)
        database = params.pop("database", "") or settings.clickhouse_database
        default_format = params.pop("default_format", "") or "TabSeparated"
        bind = {k[len("param_"):]: v for k, v in params.items() if k.startswith("param_")}
        rest = {k: v for k, v in params.items() if not k.startswith("param_")}
        try:
            engine_settings = await asyncio.to_thread(engine.engine_settings, rest)
            body, fmt, summary = await asyncio.to_thread(
                engine.run,
                sql,
                default_format=default_format,
                database=database,
                bind=bind,
                settings=engine_settings,
            )
        except QueryRefused as exc:
            return _error_response(exc.text, exc.status, exc.code, query_id)
        except Exception as exc:  # the engine's DatabaseError carries the ClickHouse text
            text = str(exc)
            match = _CODE.search(text)
            code = int(match.group(1)) if match else 1002
            if not match:
                text = f"Code: {code}. DB::Exception: {text}"
            status = 400 if code in _BAD_REQUEST_CODES else 500
            return _error_response(text, status, code, query_id)
        return Response(body, headers=_headers(query_id, fmt, summary), media_type=_media_type(fmt))

    return Starlette(
        routes=[
            Route("/ping", ping, methods=["GET", "HEAD"]),
            Route("/", query, methods=["GET", "POST"]),
        ]
    )


def _media_type(fmt: str) -> str:
    lowered = fmt.lower()
    if lowered.startswith("json"):
        return "application/json; charset=UTF-8"
    if lowered in {"native", "rowbinary", "rowbinarywithnamesandtypes", "parquet", "arrow", "arrowstream"}:
        return "application/octet-stream"
    return "text/plain; charset=UTF-8"

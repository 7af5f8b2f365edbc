"""``callstream sql``: run SQL on the store — through the query endpoint of a running ``callstream up``
on the data dir (found in ``stack.json``), else by opening the store directly.

    callstream sql "SELECT service, count() FROM callstream.cdrs GROUP BY service"
    callstream sql --format JSONEachRow "SELECT * FROM callstream.call_events LIMIT 3"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import httpx
from clickhouse_connect.driver.binding import format_bind_value

from callstream.query_server import split_format
from core import store
from core.credentials import read_stack_file
from core.errors import StoreError, StoreUnavailable
from core.settings import Settings


class SqlError(StoreError):
    """The store refused the query; the message is ClickHouse's text."""

    reason = "sql"


def query_url(data_dir: Path) -> str | None:
    """The query endpoint of a running stack on ``data_dir``, if any."""
    info = read_stack_file(data_dir)
    return str(info["query_url"]) if info and info.get("query_url") else None


def run_sql(
    settings: Settings, sql: str, fmt: str = "TabSeparated", *, parameters: dict[str, Any] | None = None,
    timeout_s: float = 60.0,
) -> bytes:
    """The engine-rendered bytes of ``sql`` in ``fmt`` (a FORMAT clause in ``sql`` wins). Values go in
    ``parameters``, bound by the server to ``{name:Type}`` placeholders, never into the SQL text."""
    url = query_url(settings.data_dir) if settings.clickhouse_is_embedded else None
    if url:
        form = {"query": sql, "default_format": fmt, "database": settings.clickhouse_database}
        form.update({f"param_{name}": format_bind_value(value) for name, value in (parameters or {}).items()})
        try:  # a form body: bound values of any size (a URL is limited)
            response = httpx.post(url, data=form, timeout=timeout_s)
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"the query endpoint {url} did not answer: {exc}") from exc
        if response.status_code != 200:
            raise SqlError(response.text.strip())
        return response.content
    body, embedded_fmt = split_format(sql)
    client = store.connect(settings)
    try:
        with store.locked(client):
            return client.raw_query(body, parameters=parameters, fmt=embedded_fmt or fmt)
    except StoreError:
        raise
    except Exception as exc:  # clickhouse-connect DatabaseError carries the ClickHouse text
        raise SqlError(str(exc)) from exc


def main(args: argparse.Namespace, settings: Settings) -> int:
    try:
        out = run_sql(settings, args.query, args.format or "PrettyCompact")
    except SqlError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    sys.stdout.buffer.write(out)
    sys.stdout.buffer.flush()
    return 0

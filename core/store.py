"""The ClickHouse client: one clickhouse-connect API for the embedded engine (chDB) and a server.

chDB allows one store path per process. ``connect()`` therefore returns one shared client per DSN in
this process, guarded by a lock, and the owning process serves queries to the others (see
``callstream.query_server``). A server DSN (``http(s)://…``) gets a fresh client each call.

    client = connect(settings)
    with locked(client):
        client.query("SELECT 1")
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from core.errors import ConfigError, StoreUnavailable
from core.settings import Settings

_clients: dict[str, Client] = {}
_registry_lock = threading.Lock()
_client_locks: dict[int, threading.RLock] = {}


def connect(settings: Settings, *, dsn: str | None = None) -> Client:
    """A client for ``settings.clickhouse_dsn`` (shared per process for chDB)."""
    dsn = dsn or settings.clickhouse_dsn
    if dsn.startswith("chdb:"):
        with _registry_lock:
            client = _clients.get(dsn)
            if client is None:
                path = urlparse(dsn).path
                if path:
                    Path(path).mkdir(parents=True, exist_ok=True)
                try:
                    client = clickhouse_connect.get_client(dsn=dsn)
                except Exception as exc:  # clickhouse-connect raises ProgrammingError here
                    raise StoreUnavailable(
                        f"cannot open the embedded store at {path}: {exc}. Another process may own it; "
                        "query it through that process (`callstream sql`) or stop it first"
                    ) from exc
                _clients[dsn] = client
                _client_locks[id(client)] = threading.RLock()
            return client
    if not dsn.startswith(("http://", "https://")):
        raise ConfigError(
            f"CALLSTREAM_CLICKHOUSE_URL={dsn!r} is not understood: use chdb:///path or http(s)://host:port"
        )
    try:
        client = clickhouse_connect.get_client(dsn=dsn, connect_timeout=5, send_receive_timeout=60)
    except Exception as exc:
        raise StoreUnavailable(f"ClickHouse at {urlparse(dsn).hostname} is unreachable: {exc}") from exc
    with _registry_lock:
        _client_locks[id(client)] = threading.RLock()
    return client


@contextmanager
def locked(client: Client) -> Iterator[Client]:
    """Serialise use of a client (the chDB engine is shared by every thread of the process)."""
    lock = _client_locks.get(id(client))
    if lock is None:
        yield client
        return
    with lock:
        yield client


def close_all() -> None:
    """Close the shared embedded clients (lets another chDB path open in this process)."""
    with _registry_lock:
        for client in _clients.values():
            _client_locks.pop(id(client), None)
            client.close()
        _clients.clear()


class BoundArray:
    """An array bind value formatted once, for ``{name:Array(...)}`` placeholders: the server parses and
    type-checks it. clickhouse-connect sends ``str()`` of a value of a type it does not know as it is;
    a ``str`` value it escapes character by character and a list it formats value by value, which cost
    the consumer's Python thread 14 ms for the 6,000 keys of a batch and 11 ms for its 1,300 session ids."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


_ESCAPES = str.maketrans({ch: "\\" + ch for ch in ("\\", "'", "`", "\t", "\n")})
_NEEDS_ESCAPE = re.compile("[\\\\'`\t\n]")


def uint64_array(values: Iterable[int]) -> BoundArray:
    """The bind value of ``values`` (ints) for an ``{name:Array(UInt64)}`` placeholder (digits and commas
    need no escaping)."""
    return BoundArray("[" + ",".join(map(str, values)) + "]")


def string_array(values: Iterable[str]) -> BoundArray:
    """The bind value of ``values`` (str) for an ``{name:Array(String)}`` placeholder: the text
    clickhouse-connect writes for a list of str (each quoted; backslash, quote, backtick, tab and newline
    escaped). Values without any of those characters (session ids, numbers: nearly always) are joined
    as they are, one scan for all of them; otherwise each is escaped by ``str.translate`` (about 5 us a
    session id, 8 ms for a batch's 1,500)."""
    values = list(values)
    if _NEEDS_ESCAPE.search("".join(values)) is None:
        return BoundArray("['" + "', '".join(values) + "']" if values else "[]")
    return BoundArray("[" + ", ".join("'" + value.translate(_ESCAPES) + "'" for value in values) + "]")


def query_rows(client: Client, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    with locked(client):
        return [tuple(row) for row in client.query(sql, parameters=parameters).result_rows]


def create_query(client: Client, database: str, table: str) -> str | None:
    """The DDL of ``database.table`` (``None`` when there is no such table)."""
    rows = query_rows(client, "SELECT create_table_query FROM system.tables WHERE database = {db:String} "
                              "AND name = {t:String}", {"db": database, "t": table})
    return str(rows[0][0]) if rows else None

"""The ClickHouse client: one clickhouse-connect API for the embedded engine (chDB) and a server.

chDB allows one store path per process. ``connect()`` therefore returns one shared client per DSN in
this process, guarded by a lock, and the owning process serves queries to the others (see
``callstream.query_server``). A server DSN (``http(s)://…``) gets a fresh client each call.

    client = connect(settings)
    with locked(client):
        client.query("SELECT 1")
"""

from __future__ import annotations

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


class UInt64Array:
    """An ``Array(UInt64)`` bind value for ``{keys:Array(UInt64)}`` placeholders, formatted once: the server
    parses and type-checks it (anything but numbers is refused). clickhouse-connect sends ``str()`` of a
    value of a type it does not know as it is, while a ``str`` value is escaped character by character
    (14 ms for the 6,000 keys of a batch, in the consumer's Python thread) though digits and commas need
    no escaping; its generic list formatter costs more still."""

    __slots__ = ("text",)

    def __init__(self, values: Iterable[int]) -> None:
        self.text = "[" + ",".join(map(str, values)) + "]"

    def __str__(self) -> str:
        return self.text


def uint64_array(values: Iterable[int]) -> UInt64Array:
    """The bind value of ``values`` (ints) for an ``{name:Array(UInt64)}`` placeholder."""
    return UInt64Array(values)


def query_rows(client: Client, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    with locked(client):
        return [tuple(row) for row in client.query(sql, parameters=parameters).result_rows]

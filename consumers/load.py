"""The ClickHouse sink: which keys are already stored, columnar inserts with a deterministic
``insert_deduplication_token``, and the ONE place that maps driver exceptions to callstream errors.

All calls are blocking; the runner calls them through ``asyncio.to_thread``. Every client call runs
inside ``store.locked(client)`` because the embedded engine is shared by the whole process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from operator import itemgetter
from typing import Any

from clickhouse_connect.driver import options
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, DataError, Error, OperationalError

from consumers.dedupe import NumberState, insert_token
from core import store
from core.errors import StoreError, StoreRejected, StoreUnavailable

log = logging.getLogger(__name__)

TABLES = ("cdrs", "call_events", "number_status", "failed_events")

# ClickHouse error codes that mean "try again later": the data is fine, the store is not.
RETRIABLE_CODES = frozenset({
    3, 32, 60, 81, 159, 164, 202, 203, 209, 210, 236, 241, 242, 252, 285, 286, 319, 394, 425, 439, 999,
})
# Errors raised while serialising rows in Python: the batch itself is bad.
_DATA_ERRORS = (TypeError, ValueError, OverflowError, KeyError, AttributeError, UnicodeError)


def classify_store_error(exc: BaseException) -> StoreError:
    """Map any exception from a ClickHouse call to ``StoreUnavailable`` (retry) or ``StoreRejected``."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, OperationalError):
        return StoreUnavailable(f"ClickHouse is unreachable: {exc}")
    if isinstance(exc, DataError):  # the client could not serialise a value: the rows are bad
        return StoreRejected(f"rows could not be encoded for ClickHouse: {exc}")
    if isinstance(exc, DatabaseError):
        code = getattr(exc, "code", None)
        if code is None or code in RETRIABLE_CODES:
            return StoreUnavailable(f"ClickHouse failed (code {code}), will retry: {str(exc)[:300]}")
        return StoreRejected(f"ClickHouse rejected the batch (code {code}): {str(exc)[:300]}")
    if isinstance(exc, Error):
        return StoreUnavailable(f"ClickHouse client error, will retry: {exc}")
    if isinstance(exc, _DATA_ERRORS):
        return StoreRejected(f"rows could not be encoded for ClickHouse: {type(exc).__name__}: {exc}")
    if isinstance(exc, (OSError, TimeoutError, ConnectionError)):
        return StoreUnavailable(f"ClickHouse connection failed: {exc}")
    return StoreUnavailable(f"unexpected ClickHouse failure, will retry: {type(exc).__name__}: {exc}")


def _guard(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception as exc:
        raise classify_store_error(exc) from exc


def without_dataframes() -> None:
    """clickhouse-connect imports pandas on the first insert only to ask whether the data is a DataFrame
    (0.5 s and ~90 MB of RSS); callstream inserts lists. Answer "no pandas" unless it was resolved already.
    The consumer calls it before its first insert (migrations included)."""
    if "pd" not in vars(options):
        options.pd = None
        options.pd_time_test = None


class ClickHouseSink:
    """Writes row dicts to ``<db>.<table>``; the table's own columns decide what is sent."""

    def __init__(self, client: Client, database: str) -> None:
        without_dataframes()
        self.client = client
        self.database = database
        self._columns: dict[str, list[str]] = {}

    def columns(self, table: str) -> list[str]:
        """Columns without a DEFAULT expression (those are filled by ClickHouse, e.g. loaded_at)."""
        cols = self._columns.get(table)
        if cols is None:
            def describe() -> list[str]:
                with store.locked(self.client):
                    result = self.client.query(
                        "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String} "
                        "AND default_kind = '' ORDER BY position",
                        parameters={"db": self.database, "t": table},
                    )
                return [str(r[0]) for r in result.result_rows]
            cols = _guard(describe)
            if not cols:
                raise StoreUnavailable(
                    f"table {self.database}.{table} does not exist: run `callstream migrate` (or start the "
                    "consumer without --no-migrate)"
                )
            self._columns[table] = cols
        return cols

    def existing_keys(self, table: str, keys: Iterable[int], chunk: int = 20_000) -> set[int]:
        """The subset of ``keys`` already stored in ``table``."""
        wanted = sorted(set(keys))
        found: set[int] = set()
        for start in range(0, len(wanted), chunk):
            part = wanted[start:start + chunk]
            sql = f"SELECT dedup_key FROM {self.database}.{table} WHERE dedup_key IN {{keys:Array(UInt64)}}"
            bound = {"keys": store.uint64_array(part)}

            def run(sql: str = sql, bound: dict[str, Any] = bound) -> list[Any]:
                with store.locked(self.client):
                    return [r[0] for r in self.client.query(sql, parameters=bound).result_rows]
            found.update(_guard(run))
        return found

    def existing_keys_by_table(self, wanted: Mapping[str, Iterable[int]], chunk: int = 20_000) -> dict[str, set[int]]:
        """``existing_keys`` of several tables in one query (each query has a fixed cost in the engine)."""
        parts: list[str] = []
        bound: dict[str, Any] = {}
        for table, keys in wanted.items():
            keys = sorted(set(keys))
            if len(keys) > chunk:
                return {t: self.existing_keys(t, k, chunk) for t, k in wanted.items()}
            if not keys:
                continue
            n = len(parts)
            bound[f"t{n}"], bound[f"k{n}"] = table, store.uint64_array(keys)
            parts.append(f"SELECT {{t{n}:String}}, dedup_key FROM {self.database}.{table} "
                         f"WHERE dedup_key IN {{k{n}:Array(UInt64)}}")
        found: dict[str, set[int]] = {table: set() for table in wanted}
        if not parts:
            return found
        sql = " UNION ALL ".join(parts)

        def run() -> list[Any]:
            with store.locked(self.client):
                return list(self.client.query(sql, parameters=bound).result_rows)
        for table, key in _guard(run):
            found[table].add(key)
        return found

    def stored_notifications(self, wanted: Mapping[str, Iterable[int]]) -> dict[str, dict[int, tuple[str, str]]]:
        """For each table, the keys of ``wanted`` already stored, with the notification that stored them
        (a redelivered record finds its own rows: stored, maybe not yet published) and, for ``cdrs``, the
        MD5 of the stored ``raw`` (``content_digest``: a CDR under a stored key with other content). One
        query for every table (each query has a fixed cost in the engine); the keys are bound values."""
        found: dict[str, dict[int, tuple[str, str]]] = {table: {} for table in wanted}
        parts: list[str] = []
        bound: dict[str, Any] = {}
        for table, keys in wanted.items():
            ordered = sorted(set(keys))
            if not ordered:
                continue
            n = len(parts)
            bound[f"t{n}"], bound[f"k{n}"] = table, store.uint64_array(ordered)
            digest = "any(hex(MD5(raw)))" if table == "cdrs" else "''"
            parts.append(f"SELECT {{t{n}:String}}, dedup_key, any(notification_id), {digest} "
                         f"FROM {self.database}.{table} WHERE dedup_key IN {{k{n}:Array(UInt64)}} GROUP BY dedup_key")
        if not parts:
            return found
        sql = " UNION ALL ".join(parts)

        def run() -> list[Any]:
            with store.locked(self.client):
                return list(self.client.query(sql, parameters=bound).result_rows)
        for table, key, notification_id, content in _guard(run):
            found[table][int(key)] = (str(notification_id), str(content))
        return found

    def stored_raw(self, table: str, keys: Iterable[int]) -> dict[int, str]:
        """The stored ``raw`` of each key (few keys: the conflicting ones)."""
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        sql = (f"SELECT dedup_key, any(raw) FROM {self.database}.{table} "
               "WHERE dedup_key IN {keys:Array(UInt64)} GROUP BY dedup_key")
        return {int(key): str(raw) for key, raw in self._rows(sql, {"keys": store.uint64_array(wanted)})}

    def _rows(self, sql: str, parameters: dict[str, Any]) -> list[Any]:
        def run() -> list[Any]:
            with store.locked(self.client):
                return list(self.client.query(sql, parameters=parameters).result_rows)
        return _guard(run)  # type: ignore[no-any-return]

    def latest_number_states(self, numbers: Iterable[str], exclude: Iterable[str] = ()) -> dict[str, NumberState]:
        """Each number's latest stored status row (by receipt) and its count of state changes, leaving
        out the rows of the notifications in ``exclude`` (the batch being delivered, if it was before)."""
        wanted = sorted(set(numbers))
        if not wanted:
            return {}
        sql = (f"SELECT number, argMax(tuple(status, cause, dedup_key), tuple(received_at, loaded_at)), "
               f"uniqExact(dedup_key) FROM {self.database}.number_status "
               "WHERE number IN {numbers:Array(String)} AND notification_id NOT IN {exclude:Array(String)} "
               "GROUP BY number")
        rows = self._rows(sql, {"numbers": wanted, "exclude": sorted(set(exclude)) or [""]})
        return {str(number): NumberState(latest[0], latest[1], int(latest[2]), int(changes))
                for number, latest, changes in rows}

    def first_callouts(self, session_ids: Iterable[str]) -> dict[str, tuple[tuple[int, int], str]]:
        """Per session, the earliest stored ``callout`` event: ((event time ms, receipt us), called)."""
        wanted = sorted(set(session_ids))
        if not wanted:
            return {}
        sql = ("SELECT session_id, min(tuple(toUnixTimestamp64Milli(event_time), toUnixTimestamp64Micro(received_at), "
               f"called)) FROM {self.database}.call_events "
               "WHERE session_id IN {sessions:Array(String)} AND event_type = 'callout' GROUP BY session_id")
        return {str(session): ((int(first[0]), int(first[1])), str(first[2]))
                for session, first in self._rows(sql, {"sessions": wanted})}

    def insert(self, table: str, rows: list[dict[str, Any]], token: str | None = None) -> int:
        """Insert ``rows`` column-wise; a retry with the same rows is deduplicated by ClickHouse.

        Every row must carry every column of the table that has no DEFAULT: a row without one, or with
        a value of the wrong type, makes the batch ``StoreRejected`` (``insert_isolating`` finds it)."""
        if not rows:
            return 0
        cols = self.columns(table)
        try:
            # rows -> columns in C (itemgetter + zip); a row without a column raises KeyError here
            data = list(zip(*map(itemgetter(*cols), rows), strict=True)) if len(cols) > 1 else [
                [row[cols[0]] for row in rows]]
        except KeyError as exc:
            raise StoreRejected(f"row without column {exc} for {table}") from exc
        except TypeError as exc:  # a row that is not a mapping
            raise StoreRejected(f"row for {table} is not a mapping of columns: {exc}") from exc
        token = token or insert_token(table, rows)

        def run() -> None:
            with store.locked(self.client):
                self.client.insert(
                    f"{self.database}.{table}", data, column_names=cols, column_oriented=True,
                    settings={"insert_deduplication_token": token},
                )
        _guard(run)
        return len(rows)

    def insert_isolating(
        self, table: str, rows: list[dict[str, Any]]
    ) -> tuple[int, list[tuple[dict[str, Any], StoreRejected]]]:
        """Insert; when ClickHouse rejects the batch, bisect to load the good rows and return the bad."""
        try:
            return self.insert(table, rows), []
        except StoreRejected as exc:
            if len(rows) == 1:
                return 0, [(rows[0], exc)]
        middle = len(rows) // 2
        loaded_a, bad_a = self.insert_isolating(table, rows[:middle])
        loaded_b, bad_b = self.insert_isolating(table, rows[middle:])
        return loaded_a + loaded_b, bad_a + bad_b

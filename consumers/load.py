"""The ClickHouse sink: which keys are already stored, columnar inserts (Arrow blocks, see
``consumers.arrow_block``) with a deterministic ``insert_deduplication_token``, and the ONE place that
maps driver exceptions to callstream errors.

All calls are blocking; the runner calls them through ``asyncio.to_thread``. Every client call runs
inside ``store.locked(client)`` because the embedded engine is shared by the whole process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from operator import itemgetter
from typing import Any

import pyarrow as pa
from clickhouse_connect.driver import options
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, DataError, Error, OperationalError

from consumers.arrow_block import arrow_schema, arrow_stream
from consumers.dedupe import NumberState, insert_token
from core import store
from core.errors import StoreError, StoreFailed, StoreRejected, StoreUnavailable
from schemas import CALLOUTS_TABLE
from schemas.projections import KEY_PROJECTION, has_projection

log = logging.getLogger(__name__)


# ClickHouse error codes that mean "try again later": the data is fine, the store is not.
RETRIABLE_CODES = frozenset({
    3, 32, 60, 81, 159, 164, 202, 203, 209, 210, 236, 241, 242, 252, 285, 286, 319, 394, 425, 439, 999,
})
# The key projection pays from about a million rows: bench/key_lookup.py, same runs, 200 k CDRs plain 11.5
# against 21.8 ms through it, 5 M CDRs 87.0 against 31.6 ms; call_events 400 k events 31 against 49 ms,
# 10 M 285 against 108 ms. Below it the plain read of a small table costs less than asking the projection
# of each part first. The tables' sizes are read again every SIZE_REFRESH_S (one system.parts query).
PROJECTION_MIN_ROWS = 1_000_000
SIZE_REFRESH_S = 60.0
_UNCOVERED = "uncovered:"  # before a table's name: the lookup row that counts its parts without the projection
# Errors raised while serialising rows in Python: the batch itself is bad.
_DATA_ERRORS = (TypeError, ValueError, OverflowError, KeyError, AttributeError, UnicodeError)


def classify_store_error(exc: BaseException) -> StoreError:
    """Map any exception from a ClickHouse call to ``StoreUnavailable`` (retry), ``StoreRejected`` (the
    batch is bad) or ``StoreFailed`` (nobody knows: a few retries, then the consumer stops)."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, OperationalError):
        return StoreUnavailable(f"ClickHouse is unreachable: {exc}")
    if isinstance(exc, DataError):  # the client could not serialise a value: the rows are bad
        return StoreRejected(f"rows could not be encoded for ClickHouse: {exc}")
    if isinstance(exc, DatabaseError):
        code = getattr(exc, "code", None)
        if code is None:
            return StoreFailed(f"ClickHouse failed without an error code: {str(exc)[:300]}")
        if code in RETRIABLE_CODES:
            return StoreUnavailable(f"ClickHouse failed (code {code}), will retry: {str(exc)[:300]}")
        return StoreRejected(f"ClickHouse rejected the batch (code {code}): {str(exc)[:300]}")
    if isinstance(exc, Error):
        return StoreFailed(f"ClickHouse client error: {type(exc).__name__}: {exc}")
    if isinstance(exc, _DATA_ERRORS):
        return StoreRejected(f"rows could not be encoded for ClickHouse: {type(exc).__name__}: {exc}")
    if isinstance(exc, (OSError, TimeoutError, ConnectionError)):
        return StoreUnavailable(f"ClickHouse connection failed: {exc}")
    return StoreFailed(f"unexpected ClickHouse failure: {type(exc).__name__}: {exc}")


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

    def __init__(self, client: Client, database: str, *, arrow: bool = True,
                 projection_min_rows: int = PROJECTION_MIN_ROWS) -> None:
        without_dataframes()
        self.client = client
        self.database = database
        self.arrow = arrow  # insert Arrow blocks where every column type maps (else clickhouse-connect's Native)
        self._columns: dict[str, list[str]] = {}
        self._schemas: dict[str, pa.Schema | None] = {}
        self._every_column: dict[str, frozenset[str]] = {}  # with the ones filled by ClickHouse
        self._key_projection: dict[str, bool] = {}
        self._tables: dict[str, bool] = {}  # has_table's answers
        self._warned: set[str] = set()  # tables whose parts without the projection were logged
        self.projection_min_rows = projection_min_rows
        self._sizes: dict[str, int] = {}  # table -> rows stored, read at most every SIZE_REFRESH_S
        self._sized_at = -float("inf")

    def columns(self, table: str) -> list[str]:
        """Columns without a DEFAULT expression (those are filled by ClickHouse, e.g. loaded_at)."""
        cols = self._columns.get(table)
        if cols is None:
            def describe() -> list[tuple[str, str, str]]:
                with store.locked(self.client):
                    result = self.client.query(
                        "SELECT name, type, default_kind FROM system.columns WHERE database = {db:String} "
                        "AND table = {t:String} ORDER BY position",
                        parameters={"db": self.database, "t": table},
                    )
                return [(str(r[0]), str(r[1]), str(r[2])) for r in result.result_rows]
            described = _guard(describe)
            if not described:
                raise StoreUnavailable(
                    f"table {self.database}.{table} does not exist: run `callstream migrate` (or start the "
                    "consumer without --no-migrate)"
                )
            typed = [(name, type_) for name, type_, kind in described if kind == ""]
            cols = self._columns[table] = [name for name, _ in typed]
            self._schemas[table] = arrow_schema(typed)
            self._every_column[table] = frozenset(name for name, _, _ in described)
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

    def stored_notifications(self, wanted: Mapping[str, Iterable[int]]) -> dict[str, dict[int, tuple[str, str]]]:
        """For each table, the keys of ``wanted`` already stored, with the notification that stored them
        (a redelivered record finds its own rows: stored, maybe not yet published) and, for ``cdrs``, the
        digest of the stored ``raw`` (``raw_digest``, stored at insert; ``content_digest`` computes it for
        an incoming CDR: a CDR under a stored key with other content). One query for every table (each
        query has a fixed cost in the engine); the keys are bound values.

        A table with a key projection (schemas/projections.py) that holds at least ``projection_min_rows``
        rows is asked through it first: which keys the projection holds, then those keys' rows. The same
        query counts the table's parts without the projection; if there are any, that table is asked
        again the plain way. Both ways give the same answer; which is faster depends on the table's size."""
        found: dict[str, dict[int, tuple[str, str]]] = {table: {} for table in wanted}
        keys = {table: sorted(set(ks)) for table, ks in wanted.items()}
        rows = self._lookup({table: ks for table, ks in keys.items() if ks},
                            projections={t for t in keys if self.reads_through_projection(t)})
        uncovered = {table.removeprefix(_UNCOVERED) for table, _, _, _ in rows if table.startswith(_UNCOVERED)}
        if uncovered - self._warned:
            self._warned |= uncovered
            log.warning("%s has parts without its %s projection: its key lookups read the whole table until "
                        "`ALTER TABLE %s MATERIALIZE PROJECTION %s` has run", ", ".join(sorted(uncovered)),
                        KEY_PROJECTION, ", ".join(f"{self.database}.{t}" for t in sorted(uncovered)), KEY_PROJECTION)
        if uncovered:
            rows = [row for row in rows if row[0] not in uncovered] + self._lookup(
                {table: keys[table] for table in uncovered}, projections=set())
        for table, key, notification_id, content in rows:
            if not table.startswith(_UNCOVERED):
                found[table][key] = (notification_id, content)
        return found

    def reads_through_projection(self, table: str) -> bool:
        """Whether key lookups of ``table`` ask its key projection: it has one, and holds enough rows
        for the projection to be the faster way (its table size read at most every ``SIZE_REFRESH_S``)."""
        if not self.has_key_projection(table):
            return False
        if self.projection_min_rows <= 0:
            return True
        now = time.monotonic()
        if now - self._sized_at >= SIZE_REFRESH_S:
            self._sized_at = now
            self._sizes = {str(t): int(n) for t, n in _guard(lambda: store.query_rows(
                self.client, "SELECT table, sum(rows) FROM system.parts WHERE database = {db:String} AND active "
                "GROUP BY table", {"db": self.database}))}
        return self._sizes.get(table, 0) >= self.projection_min_rows

    def _lookup(self, keys: Mapping[str, list[int]], *, projections: set[str] | frozenset[str] = frozenset(),
                ) -> list[tuple[str, int, str, str]]:
        """``(table, key, notification id, digest)`` of every stored key, plus ``("uncovered:<table>", 0,
        <count>, "")`` for a table read through its projection while some of its parts lack it."""
        parts: list[str] = []
        bound: dict[str, Any] = {}
        for table, ordered in keys.items():
            n = len(parts)
            bound[f"t{n}"], bound[f"k{n}"] = table, store.uint64_array(ordered)
            digest = self._cdr_digest_sql() if table == "cdrs" else "''"
            where = f"dedup_key IN {{k{n}:Array(UInt64)}}"
            if table in projections:
                where = (f"dedup_key IN (SELECT dedup_key FROM mergeTreeProjection({self.database}, {table}, "
                         f"{KEY_PROJECTION}) WHERE {where})")
                parts.append(  # a part's own list of its projections (system.parts.projections)
                    f"SELECT concat('{_UNCOVERED}', {{t{n}:String}}), toUInt64(0), toString(count()), '' FROM system.parts "
                    f"WHERE database = {{db:String}} AND table = {{t{n}:String}} AND active "
                    f"AND NOT has(projections, '{KEY_PROJECTION}') HAVING count() > 0")
                bound["db"] = self.database
            parts.append(f"SELECT {{t{n}:String}}, dedup_key, any(notification_id), {digest} "
                         f"FROM {self.database}.{table} WHERE {where} GROUP BY dedup_key")
        if not parts:
            return []
        sql = " UNION ALL ".join(parts)

        def run() -> list[Any]:
            with store.locked(self.client):
                return list(self.client.query(sql, parameters=bound).result_rows)
        return [(str(table), int(key), str(notification_id), str(content))
                for table, key, notification_id, content in _guard(run)]

    def has_key_projection(self, table: str) -> bool:
        """Whether ``table`` has the key projection (read once: a MergeTree table on a single node with
        ClickHouse 25.12 or later, or the embedded engine; on a cluster the loader writes to a Distributed
        table, which the lookup reads the plain way)."""
        known = self._key_projection.get(table)
        if known is None:
            known = self._key_projection[table] = bool(_guard(lambda: has_projection(self.client, self.database,
                                                                                       table)))
        return known

    def _cdr_digest_sql(self) -> str:
        """The probe's digest of a stored CDR: the stored ``raw_digest`` (0016_raw_digest), or, on a store
        migrated only to an earlier version, the same value computed from ``raw`` (slower: it reads raw)."""
        self.columns("cdrs")  # the table's columns, read once
        if "raw_digest" in self._every_column["cdrs"]:
            return "toString(any(raw_digest))"
        return "toString(any(reinterpretAsUInt64(MD5(raw))))"

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
        rows = self._rows(sql, {"numbers": store.string_array(wanted),
                                "exclude": store.string_array(sorted(set(exclude)) or [""])})
        return {str(number): NumberState(latest[0], latest[1], int(latest[2]), int(changes))
                for number, latest, changes in rows}

    def first_callouts(self, session_ids: Iterable[str]) -> dict[str, tuple[tuple[int, int], str]]:
        """Per session, the earliest stored ``callout`` event: ((event time ms, receipt us), called).

        Read from ``session_callouts`` (0018_session_callouts.sql: every stored callout, sorted by
        session, so only the asked sessions' granules are read); on a store migrated only to an earlier
        version, from ``call_events`` (every stored event's session is read)."""
        wanted = sorted(set(session_ids))
        if not wanted:
            return {}
        if self.has_table(CALLOUTS_TABLE):
            source, callouts_only = CALLOUTS_TABLE, ""
        else:
            source, callouts_only = "call_events", " AND event_type = 'callout'"
        sql = ("SELECT session_id, min(tuple(toUnixTimestamp64Milli(event_time), toUnixTimestamp64Micro(received_at), "
               f"called)) FROM {self.database}.{source} "
               f"WHERE session_id IN {{sessions:Array(String)}}{callouts_only} GROUP BY session_id")
        return {str(session): ((int(first[0]), int(first[1])), str(first[2]))
                for session, first in self._rows(sql, {"sessions": store.string_array(wanted)})}

    def has_table(self, table: str) -> bool:
        """Whether ``<db>.<table>`` exists (asked once; a table the migrations add is there from then on)."""
        known = self._tables.get(table)
        if known is None:
            ddl = _guard(lambda: store.create_query(self.client, self.database, table))
            known = self._tables[table] = ddl is not None
        return known

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
        # optimize_on_insert collapses rows of one block that share a sorting key (ReplacingMergeTree); the
        # loader's blocks hold each dedup_key once, so it would only cost (~20 % of a CDR insert in chDB)
        settings = {"insert_deduplication_token": token, "optimize_on_insert": 0}
        schema = self._schemas.get(table) if self.arrow else None
        if schema is not None:
            try:
                block = arrow_stream(schema, data)  # the values converted in C++, not one by one in Python
            except (pa.ArrowException, *_DATA_ERRORS) as exc:
                raise StoreRejected(f"rows could not be encoded for ClickHouse ({table}): {exc}") from exc

            def run() -> None:
                with store.locked(self.client):
                    self.client.raw_insert(f"{self.database}.{table}", cols, block, settings=settings,
                                           fmt="ArrowStream")
        else:
            def run() -> None:
                with store.locked(self.client):
                    self.client.insert(f"{self.database}.{table}", data, column_names=cols, column_oriented=True,
                                       settings=settings)
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

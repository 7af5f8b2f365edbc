"""The consumer's per-batch key lookup against a large ``call_events``: what it reads, and what a lookup
that names each row's hour would read.

    python bench/key_lookup.py [--rows 10000000] [--repeat 3]

Migrates a store in a temporary directory and fills ``call_events`` SQL-side with ``--rows`` events
(20 apps, the last month, random 64-bit keys, a notification id per event, four events per session id; the other columns empty). For a batch of 500 and of 6,000 new
keys (keys that are not stored, the common case) it times, min of ``--repeat`` (new keys each time), and
reads from ``system.events`` how many rows the engine read:

* ``ClickHouseSink.stored_notifications``, the lookup the consumer runs once per batch (``dedup_key IN``);
* the baseline, the same keys against a table ordered by ``dedup_key`` alone (index granularity 1,024);
* ``first_callouts`` for 100 and 1,500 of the newest sessions and 1,500 of any (the legs' per-batch read), which reads
  ``session_callouts`` (0018: the callouts sorted by session, filled by its view as the events are
  inserted), beside the same question asked of ``call_events`` the way it was before 0018 (the baseline,
  same run), and the bytes ``session_callouts`` takes per stored event;
* the same keys as ``(app_key, toStartOfHour(event_time), dedup_key)`` tuples, the table's sorting key,
  each given one of the month's last two hours and an app (a live batch's rows are recent);
* then, with the key projection added as ``callstream migrate`` adds it (schemas/projections.py; the
  store is measured first without it), the consumer's lookup again, which now asks the ``by_key``
  projection which keys it holds, the projection's part of it alone, and its compressed bytes per row;
* the same for ``cdrs`` (``--cdrs`` CDRs, a quarter of ``--rows`` by default, filled SQL-side through the
  table and its rollup views): the consumer's lookup of a batch's 1,000 and 6,000 new CDR keys and of
  1,000 stored ones, without the key projection (the baseline, same run) and with it (0019 made room).

Prints the figures; writes nothing.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from clickhouse_connect.driver.client import Client  # noqa: E402

from bench._memory import engine_events  # noqa: E402
from consumers.load import ClickHouseSink  # noqa: E402
from core import store  # noqa: E402
from core.settings import Settings  # noqa: E402
from schemas import CALLOUTS_TABLE  # noqa: E402
from schemas.migrate import apply_migrations  # noqa: E402
from schemas.projections import KEY_PROJECTION, ensure_key_projection  # noqa: E402

DB = "key_lookup"
APPS = 20
MONTH_S = 30 * 86_400
# the month before today: rows received longer ago than the retention period go at the OPTIMIZE below (TTL)
START_S = int((datetime.now(UTC) - timedelta(days=31)).replace(hour=0, minute=0, second=0, microsecond=0).timestamp())
START = datetime.fromtimestamp(START_S, UTC).strftime("%Y-%m-%d %H:%M:%S")
LAST_HOUR_S = START_S + MONTH_S - 3600
# four events per call (callout, alerting, answer, disconnect), one session id per call
SESSION_SQL = "concat('1201_', toString(intDiv(number, 4)), '_4294967295_20240312@callenabler245.huaweicaas.com')"


def session_id(call: int) -> str:
    return f"1201_{call}_4294967295_20240312@callenabler245.huaweicaas.com"


def selected_rows(client: Client) -> int:
    return engine_events(client)["SelectedRows"]


def timed(client: Client, repeat: int, call: Callable[[list[int]], object], size: int,
          rng: random.Random) -> tuple[float, int]:
    """(min ms of ``repeat`` calls, each with ``size`` new random keys, and the rows the engine read in the
    last one). New keys each time: the engine's query-condition cache remembers a condition it has seen."""
    best, rows = float("inf"), 0
    for _ in range(repeat):
        keys = sorted(rng.getrandbits(64) for _ in range(size))
        before = selected_rows(client)
        began = time.perf_counter()
        call(keys)
        best = min(best, time.perf_counter() - began)
        rows = selected_rows(client) - before
    return best * 1000, rows


def fill(client: Client, rows: int) -> None:
    with store.locked(client):
        client.command(
            f"INSERT INTO {DB}.call_events (dedup_key, notification_id, app_key, event_time, received_at, raw, "
            "session_id, event_type, called) "
            f"SELECT sipHash64(number), lower(hex(MD5(toString(number)))), concat('app', toString(number % {APPS})), "
            f"toDateTime64('{START}', 3, 'UTC') + toIntervalSecond(intDiv(number * {MONTH_S}, {rows})) AS t, t, '', "
            f"{SESSION_SQL}, ['callout', 'alerting', 'answer', 'disconnect'][number % 4 + 1], "
            "concat('+86138', toString(number % 100000000)) "
            f"FROM numbers({rows})")
        client.command(f"CREATE TABLE {DB}.keys_by_key (dedup_key UInt64) ENGINE = MergeTree ORDER BY dedup_key "
                       "SETTINGS index_granularity = 1024")
        client.command(f"INSERT INTO {DB}.keys_by_key SELECT dedup_key FROM {DB}.call_events")
        client.command(f"OPTIMIZE TABLE {DB}.call_events FINAL")
        client.command(f"OPTIMIZE TABLE {DB}.{CALLOUTS_TABLE} FINAL")
        client.command(f"OPTIMIZE TABLE {DB}.keys_by_key FINAL")


def table_bytes_per_row(client: Client, table: str, rows: int) -> float:
    found = store.query_rows(client, "SELECT sum(data_compressed_bytes) FROM system.parts "
                                     f"WHERE database = '{DB}' AND table = '{table}' AND active")
    return float(found[0][0] or 0) / rows


def projection_bytes_per_row(client: Client, rows: int, table: str = "call_events") -> float:
    found = store.query_rows(client, "SELECT sum(data_compressed_bytes) FROM system.projection_parts "
                                     f"WHERE database = '{DB}' AND table = '{table}' AND active")
    return float(found[0][0] or 0) / rows


def fill_cdrs(client: Client, rows: int) -> None:
    """``rows`` CDRs over the month (their keys ``sipHash64(-1 - n)``), merged as a settled store is."""
    with store.locked(client):
        client.command(
            f"INSERT INTO {DB}.cdrs (dedup_key, notification_id, app_key, call_time, received_at, raw) "
            f"SELECT sipHash64(-1 - number), lower(hex(MD5(toString(number)))), concat('app', toString(number % {APPS})), "
            f"toDateTime64('{START}', 3, 'UTC') + toIntervalSecond(intDiv(number * {MONTH_S}, {rows})) AS t, t, "
            "concat('{\"sessionId\":\"', " + SESSION_SQL.replace("intDiv(number, 4)", "number") + ", '\"}') "
            f"FROM numbers({rows})", settings={"max_insert_block_size": 1_000_000})
        client.command(f"OPTIMIZE TABLE {DB}.cdrs FINAL")


def cdr_lookups(settings: Settings, client: Client, rows: int, repeat: int, rng: random.Random) -> None:
    """The consumer's cdrs lookup without the key projection (the baseline) and with it, same store."""
    with store.locked(client):
        client.command(f"ALTER TABLE {DB}.cdrs DROP PROJECTION IF EXISTS {KEY_PROJECTION}")
    began = time.perf_counter()
    fill_cdrs(client, rows)
    print(f"{rows:,} CDRs stored in {time.perf_counter() - began:.0f} s", flush=True)

    def stored_keys(size: int) -> list[int]:  # a redelivered batch: keys of CDRs that are stored
        return sorted(int(r[0]) for r in store.query_rows(
            client, f"SELECT sipHash64(-1 - number) FROM numbers({rows}) ORDER BY rand() LIMIT {size}"))

    figures: dict[str, dict[int, tuple[float, int]]] = {}
    for label in ("plain", "projection"):
        if label == "projection":
            began = time.perf_counter()
            ensure_key_projection(settings, client)
            print(f"cdrs key projection added and materialized in {time.perf_counter() - began:.0f} s: "
                  f"{projection_bytes_per_row(client, rows, 'cdrs'):.1f} compressed B per stored CDR", flush=True)
        sink = ClickHouseSink(client, DB, projection_min_rows=0)  # the projection at any size, when there is one
        assert sink.reads_through_projection("cdrs") == (label == "projection")

        def lookup(keys: list[int], sink: ClickHouseSink = sink) -> object:
            return sink.stored_notifications({"cdrs": keys})

        figures[label] = {size: timed(client, repeat, lookup, size, rng) for size in (1_000, 6_000)}
        best, read = float("inf"), 0
        for _ in range(repeat):
            keys = stored_keys(1_000)
            before = selected_rows(client)
            began = time.perf_counter()
            found = lookup(keys)
            best = min(best, time.perf_counter() - began)
            read = selected_rows(client) - before
            assert len(found["cdrs"]) == len(keys)  # type: ignore[index]
        figures[label][-1_000] = (best * 1000, read)
    for size, name in ((1_000, "1,000 new CDR keys"), (6_000, "6,000 new CDR keys"), (-1_000, "1,000 stored CDR keys")):
        plain, proj = figures["plain"][size], figures["projection"][size]
        print(f"cdrs {name:<22} plain {plain[0]:7.1f} ms {plain[1]:>11,} rows read   "
              f"projection {proj[0]:7.1f} ms {proj[1]:>11,} rows read   x{plain[0] / proj[0]:.1f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cdrs", type=int, default=None, help="CDRs for the cdrs lookup (default: rows / 4)")
    parser.add_argument("--only-cdrs", action="store_true", help="measure the cdrs lookup only")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="callstream-key-lookup-") as tmp:
        settings = Settings(data_dir=Path(tmp), clickhouse_database=DB, auth="off", republish=False)
        client = store.connect(settings)
        apply_migrations(settings, client)
        if args.only_cdrs:
            try:
                cdr_lookups(settings, client, args.cdrs or args.rows // 4, args.repeat, rng)
            finally:
                store.close_all()
            return 0
        with store.locked(client):  # measured first without the key projection, then with it
            client.command(f"ALTER TABLE {DB}.call_events DROP PROJECTION IF EXISTS {KEY_PROJECTION}")
        began = time.perf_counter()
        fill(client, args.rows)
        print(f"{args.rows:,} events stored in {time.perf_counter() - began:.0f} s")
        sink = ClickHouseSink(client, DB)
        try:
            def lookup(keys: list[int]) -> object:
                return sink.stored_notifications({"call_events": keys})

            def by_key(keys: list[int]) -> object:
                return store.query_rows(client, f"SELECT dedup_key FROM {DB}.keys_by_key "
                                                "WHERE dedup_key IN {keys:Array(UInt64)}",
                                        {"keys": store.uint64_array(keys)})

            def by_hour(keys: list[int]) -> object:
                # a live batch's rows are recent: each key gets one of the month's last two hours and an
                # app, both from the key itself (no random draws inside the timed call)
                sql = (f"SELECT dedup_key, any(notification_id) FROM {DB}.call_events "
                       "WHERE (app_key, toStartOfHour(event_time), dedup_key) IN (SELECT a, toDateTime(h, 'UTC'), k "
                       "FROM (SELECT arrayJoin(arrayZip({a:Array(String)}, {h:Array(UInt32)}, {k:Array(UInt64)})) "
                       "AS x, x.1 AS a, x.2 AS h, x.3 AS k)) GROUP BY dedup_key")
                return store.query_rows(client, sql, {
                    "a": store.string_array(f"app{key % APPS}" for key in keys),
                    "h": store.uint64_array(LAST_HOUR_S - 3600 * (key & 1) for key in keys),
                    "k": store.uint64_array(keys)})

            def by_projection(keys: list[int]) -> object:
                return store.query_rows(client, "SELECT DISTINCT dedup_key FROM "
                                                f"mergeTreeProjection({DB}, call_events, {KEY_PROJECTION}) "
                                                "WHERE dedup_key IN {keys:Array(UInt64)}",
                                        {"keys": store.uint64_array(keys)})

            def callouts_from_events(sessions: list[str]) -> object:  # first_callouts before 0018
                return store.query_rows(
                    client, "SELECT session_id, min(tuple(toUnixTimestamp64Milli(event_time), "
                    f"toUnixTimestamp64Micro(received_at), called)) FROM {DB}.call_events "
                    "WHERE session_id IN {sessions:Array(String)} AND event_type = 'callout' GROUP BY session_id",
                    {"sessions": store.string_array(sorted(set(sessions)))})

            calls = args.rows // 4
            print(f"{CALLOUTS_TABLE}: {table_bytes_per_row(client, CALLOUTS_TABLE, args.rows):.1f} compressed B "
                  "per stored event", flush=True)
            # a batch's sessions: the newest calls (a live batch's are recent), and, as if session ids sorted
            # in no relation to time, calls drawn from the whole month
            for size, span, label in ((100, 20_000, "newest"), (1_500, 20_000, "newest"), (1_500, calls, "any")):
                figures = {}
                for name, ask in (("first_callouts", sink.first_callouts), ("from call_events", callouts_from_events)):
                    best, rows_read = float("inf"), 0
                    for _ in range(args.repeat):
                        sessions = [session_id(calls - 1 - rng.randrange(span)) for _ in range(size)]
                        read = selected_rows(client)
                        began = time.perf_counter()
                        ask(sessions)
                        best = min(best, time.perf_counter() - began)
                        rows_read = selected_rows(client) - read
                    figures[name] = best
                    print(f"{size:>6,} {label:<6} sessions  {name:<16} {best * 1000:7.1f} ms {rows_read:>11,} rows read",
                          flush=True)
                print(f"{size:>6,} {label:<6} sessions  first_callouts / from call_events "
                      f"x{figures['first_callouts'] / figures['from call_events']:.3f}", flush=True)
            for size in (500, 6_000):
                found = timed(client, args.repeat, lookup, size, rng)
                base = timed(client, args.repeat, by_key, size, rng)
                hour = timed(client, args.repeat, by_hour, size, rng)
                print(f"{size:>6,} new keys   lookup {found[0]:7.1f} ms {found[1]:>11,} rows read   "
                      f"ordered by dedup_key {base[0]:7.1f} ms {base[1]:>11,} rows   "
                      f"by (app, hour, key) {hour[0]:7.1f} ms {hour[1]:>11,} rows   "
                      f"lookup / ordered x{found[0] / base[0]:.1f}", flush=True)
            began = time.perf_counter()
            ensure_key_projection(settings, client)  # what migrate does: add it, materialize it for the rows
            sink = ClickHouseSink(client, DB, projection_min_rows=0)  # (reads whether it has the projection once)
            print(f"key projection added and materialized in {time.perf_counter() - began:.0f} s: "
                  f"{projection_bytes_per_row(client, args.rows):.1f} compressed B per stored row")
            for size in (500, 6_000):
                found = timed(client, args.repeat, lookup, size, rng)
                proj = timed(client, args.repeat, by_projection, size, rng)
                print(f"{size:>6,} new keys   lookup {found[0]:7.1f} ms {found[1]:>11,} rows read   "
                      f"(the projection alone {proj[0]:7.1f} ms {proj[1]:>11,} rows)", flush=True)
            cdr_lookups(settings, client, args.cdrs or args.rows // 4, args.repeat, rng)
        finally:
            store.close_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""KPI views at scale: N generated CDRs through the real tables, every view timed before and after the rollups.

    python bench/analytics.py [--calls 10000000] [--days 30] [--apps 8] [--data-dir DIR]
    python bench/analytics.py --long            # 100 M CDRs (about 30 GB of store, a long run)

Generation is SQL-side: one ``INSERT INTO cdrs SELECT ... FROM numbers(N)`` per million rows, with the
columns the consumer writes (hashed numbers, Huawei-shaped icid/session ids, times, Q.850 outcomes, a raw
JSON document per CDR), so the materialized views of 0011_rollups.sql fill the rollups exactly as the
loader's inserts do. Then ``OPTIMIZE ... FINAL`` on every table (as the parts settle on a server).

Each KPI view is timed (min of ``--repeat`` runs) for one app and one day and for the whole range:

* after  = the views of the migrations (rollups),
* before = the views of the migrations before 0011_rollups (``cdrs FINAL``, exact quantiles) created in
  a second database over the same ``cdrs``: the baseline measured in the same run, on the same data,
* engine = the after query with ``FORMAT Null``: every row computed, none decoded by the client (a panel
  with 20,000 rows spends longer in clickhouse-connect's Python decoding than in the engine).

It also compares every PDD/ring quantile of ``kpi_daily`` with ``quantileExactInclusive`` over the CDRs
(the estimator's error) and prints bytes per CDR of ``cdrs`` and of the rollups. Writes
bench/results/analytics.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from clickhouse_connect.driver.client import Client  # noqa: E402

from core import store  # noqa: E402
from core.settings import Settings  # noqa: E402
from schemas.migrate import Migration, apply_migrations, discover, placeholders, render  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "analytics.json"
CHUNK = 1_000_000
VIEWS = ("kpi_hourly", "kpi_daily", "kpi_by_service_type", "kpi_by_number", "kpi_by_binding", "failure_causes")
ROLLUPS = ("rollup_hourly", "rollup_by_number", "rollup_by_binding", "rollup_failures")

# One row per generated CDR. {n0}: first number of the chunk, {seed}, {days}, {apps}. Outcomes follow a
# production-like mix: 62 % answered, then busy / no answer / rejected / unreachable / network failure.
# Every column the generator writes, as (column, expression over the inner SELECT below). Only the
# stored columns of cdrs are sent: the ALIAS columns of 0012_storage (icid, numbers, binding ids) are
# read from raw, which carries them.
_COLUMNS: list[tuple[str, str]] = [
    ("dedup_key", "dedup_key"), ("notification_id", "notification_id"), ("record_index", "record_index"),
    ("service", "service"), ("received_at", "received_at"), ("app_key", "app_key"), ("sp_id", "'CaaS_Sim_01'"),
    ("icid", "icid"), ("session_id", "session_id"), ("direction", "if(privacy, 1, 0)"), ("bind_num", "bind_num"),
    ("subscription_id", "subscription_id"), ("caller_num", "caller_num"), ("callee_num", "callee_num"),
    ("fwd_display_num", "bind_num"), ("fwd_dst_num", "fwd_dst_num"), ("call_in_time", "if(privacy, start, NULL)"),
    ("fwd_start_time", "start"), ("fwd_alerting_time", "if(no_alert, NULL, alerting)"),
    ("fwd_answer_time", "answer"), ("call_end_time", "end_time"), ("fail_time", "if(answered, NULL, end_time)"),
    ("fwd_unasw_rsn", "q850"), ("fwd_unasw_rsn_desc", "q850_desc"), ("fwd_unasw_rsn_class", "category"),
    ("ul_fail_reason", "if(answered, 0, 8000 + q850)"), ("ul_fail_reason_desc", "q850_desc"),
    ("sip_status_code", "if(answered, 0, sip)"), ("sip_status_code_desc", "''"), ("failure_category", "category"),
    ("failure_reason", "if(answered, '', q850_desc)"), ("failure_source", "if(answered, '', 'q850')"),
    ("refused", "toUInt8(NOT answered AND cityHash64(n, 'refused') % 20 = 0)"),
    ("pdd_ms", "if(no_alert, toUInt32(4000), toUInt32(setup * 1000))"), ("record_flag", "toUInt8(recorded)"),
    ("service_type_code", "if(privacy, '003', '002')"), ("service_type", "if(privacy, 'privacy', 'callback')"),
    ("host_name", "'callenabler246.huaweicaas.com'"), ("mpty_id", "subscription_id"),
    ("answered", "toUInt8(answered)"), ("talk_seconds", "talk"), ("ring_seconds", "ring"),
    ("setup_seconds", "setup"), ("call_start_time", "start"), ("call_time", "start"),
    ("has_recording", "toUInt8(recorded)"), ("extra", "'{{}}'"),
    ("raw", """concat('{{', arrayStringConcat(arrayFilter(x -> x != '', [
        concat('"appKey":"', app_key, '"'), concat('"bindNum":"', bind_num, '"'),
        concat('"callEndTime":"', formatDateTime(end_time, '%F %T'), '"'),
        if(privacy, concat('"callInTime":"', formatDateTime(start, '%F %T'), '"'), ''),
        concat('"calleeNum":"', callee_num, '"'), concat('"callerNum":"', caller_num, '"'),
        concat('"direction":', if(privacy, '1', '0')),
        if(answered, '', concat('"failTime":"', formatDateTime(end_time, '%F %T'), '"')),
        if(no_alert, '', concat('"fwdAlertingTime":"', formatDateTime(alerting, '%F %T'), '"')),
        if(answered, concat('"fwdAnswerTime":"', formatDateTime(assumeNotNull(answer), '%F %T'), '"'), ''),
        concat('"fwdDstNum":"', fwd_dst_num, '"'), concat('"fwdStartTime":"', formatDateTime(start, '%F %T'), '"'),
        concat('"fwdUnaswRsn":', toString(q850)), '"hostName":"callenabler246.huaweicaas.com"',
        concat('"icid":"', icid, '"'), if(privacy, concat('"mptyId":"', subscription_id, '"'), ''),
        concat('"recordFlag":', toString(toUInt8(recorded))), concat('"serviceType":"', if(privacy, '003', '002'), '"'),
        concat('"sessionId":"', session_id, '"'), concat('"sipStatusCode":', toString(if(answered, 0, sip))),
        '"spId":"CaaS_Sim_01"', if(privacy, concat('"subscriptionId":"', subscription_id, '"'), ''),
        concat('"ulFailReason":', toString(if(answered, 0, 8000 + q850)))]), ','), '}}')"""),
]

# One row per generated CDR. {n0}: first number of the chunk, {seed}, {days}, {apps}. Outcomes follow a
# production-like mix: 62 % answered, then busy / no answer / rejected / unreachable / network failure.
_GENERATE = """
INSERT INTO {db}.cdrs ({columns})
SELECT
    {expressions}
FROM
(
    SELECT
        number AS n,
        cityHash64({seed}, n) AS dedup_key,
        hex(MD5(toString(intDiv(n, 10) + {seed}))) AS notification_id,
        toUInt16(n % 10) AS record_index,
        cityHash64(n, 'service') % 2 = 1 AS privacy,
        if(privacy, 'privacy', 'voice') AS service,
        -- a binding (subscription) belongs to one app: its calls share the app of their binding
        concat('bench-app-', toString(cityHash64(if(privacy, intDiv(n, 20), n), 'app') % {apps})) AS app_key,
        toDateTime64('{start} 00:00:00', 3, 'UTC')
            + toIntervalMillisecond(intDiv(n * {days} * 86400000, {calls}) + cityHash64(n, 'jitter') % 1000)
            AS start0,
        toDateTime64(toStartOfSecond(start0), 3, 'UTC') AS start,
        cityHash64(n, 'outcome') % 100 AS o,
        o < 62 AS answered,
        multiIf(answered, 0, o < 74, 17, o < 86, 19, o < 91, 21, o < 95, 1, 38) AS q850,
        multiIf(answered, 'normal', q850 = 17, 'user_busy', q850 = 19, 'no_answer', q850 = 21, 'user_rejected',
                q850 = 1, 'unreachable', 'network_failure') AS category,
        multiIf(answered, '', q850 = 17, 'User busy', q850 = 19, 'No answer from user (user alerted)',
                q850 = 21, 'Call rejected', q850 = 1, 'Unallocated (unassigned) number',
                'Network out of order') AS q850_desc,
        multiIf(q850 = 17, 486, q850 = 19, 480, q850 = 21, 603, q850 = 1, 404, 503) AS sip,
        q850 IN (1, 38) AS no_alert,
        if(no_alert, NULL, toUInt32(1 + cityHash64(n, 'setup') % 3 + (cityHash64(n, 'slow') % 50 = 0) * 6)) AS setup,
        if(no_alert, NULL, toUInt32(1 + cityHash64(n, 'ring') % if(answered, 20, 45))) AS ring,
        toUInt32(if(answered, 5 + cityHash64(n, 'talk') % 240, 0)) AS talk,
        start + toIntervalSecond(ifNull(setup, 0)) AS alerting,
        if(answered, alerting + toIntervalSecond(ifNull(ring, 0)), NULL) AS answer,
        if(answered, assumeNotNull(answer) + toIntervalSecond(talk), alerting + toIntervalSecond(ifNull(ring, 4)))
            AS end_time,
        fromUnixTimestamp64Micro(toInt64(toUnixTimestamp64Micro(end_time) + 2000000 + cityHash64(n, 'recv') % 5000000), 'UTC')
            AS received_at,
        if(privacy, concat('+8617000', leftPad(toString(cityHash64(intDiv(n, 20), 'x') % 2000), 4, '0')),
           concat('+86755280000', leftPad(toString(cityHash64(n, 'x') % 20), 2, '0'))) AS bind_num,
        if(privacy, lower(concat(substring(hex(MD5(toString(intDiv(n, 20) + {seed}))), 1, 8), '-',
                                 substring(hex(MD5(toString(intDiv(n, 20) + {seed}))), 9, 4), '-4',
                                 substring(hex(MD5(toString(intDiv(n, 20) + {seed}))), 14, 3), '-8',
                                 substring(hex(MD5(toString(intDiv(n, 20) + {seed}))), 18, 3), '-',
                                 substring(hex(MD5(toString(intDiv(n, 20) + {seed}))), 21, 12))), '')
            AS subscription_id,
        concat('h:', lower(hex(MD5(concat('a', toString(cityHash64(n, 'a') % 5000000)))))) AS caller_num,
        if(privacy, bind_num, concat('h:', lower(hex(MD5(concat('c', toString(n))))))) AS callee_num,
        concat('h:', lower(hex(MD5(concat('b', toString(cityHash64(n, 'b') % 5000000)))))) AS fwd_dst_num,
        concat(lower(hex(MD5(toString(n + {seed})))), '.', toString(3757285700 + n), '.338666607.', toString(n % 9 + 1))
            AS icid,
        concat('1200_', toString(n + {seed}), '_4294967295_', formatDateTime(start, '%Y%m%d%H%i%S'),
               '@callenabler246.huaweicaas.com') AS session_id,
        cityHash64(n, 'rec') % 10 = 0 AND answered AS recorded
    FROM numbers({n0}, {count})
)
"""


def first_day(days: int) -> date:
    """The generated range ends yesterday (UTC): recent enough for the tables' retention TTL."""
    return datetime.now(UTC).date() - timedelta(days=days + 1)


def generate_sql(client: Client, db: str) -> str:
    """The INSERT ... SELECT template for the stored columns of ``db.cdrs`` (placeholders: db, n0, count,
    calls, days, apps, seed, start)."""
    stored = {str(r[0]) for r in store.query_rows(
        client, "SELECT name FROM system.columns WHERE database = {db:String} AND table = 'cdrs' "
        "AND default_kind IN ('', 'DEFAULT')", {"db": db})}
    chosen = [(column, expression) for column, expression in _COLUMNS if column in stored]
    return (_GENERATE.replace("{columns}", ", ".join(c for c, _ in chosen))
            .replace("{expressions}", ",\n    ".join(e for _, e in chosen)))


def generate(client: Client, db: str, calls: int, *, days: int = 30, apps: int = 8, seed: int = 7,
             chunk: int = CHUNK, progress: bool = False) -> float:
    """Insert ``calls`` generated CDRs into ``db.cdrs`` over ``days`` days ending yesterday (rollups fill
    through their views); returns seconds."""
    began = time.perf_counter()
    start = first_day(days)
    template = generate_sql(client, db)
    for n0 in range(0, calls, chunk):
        count = min(chunk, calls - n0)
        sql = template.format(db=db, n0=n0, count=count, calls=calls, days=days, apps=apps, seed=seed,
                              start=start.isoformat())
        with store.locked(client):
            client.command(sql, settings={"max_insert_block_size": chunk, "min_insert_block_size_rows": chunk})
        if progress:
            print(f"  generated {n0 + count:>11,} CDRs  {time.perf_counter() - began:6.1f} s", flush=True)
    return time.perf_counter() - began


def create_before_views(client: Client, db: str) -> str:
    """The views the migrations before the rollups define (over ``cdrs FINAL``), created in
    ``<db>_before`` over ``<db>.cdrs``; returns that database."""
    rollup_version = next(m.version for m in discover() if m.name == "rollups")
    before = f"{db}_before"
    create_views(client, db, [m for m in discover() if m.version < rollup_version], before)
    return before


def create_views(client: Client, db: str, migrations: list[Migration], target: str) -> int:
    """The views ``migrations`` define, created in database ``target`` (a view they read is the one in
    ``target``, a table the one in ``db``); returns how many."""
    statements = [s for m in migrations for s in render(m.text(), placeholders(db))]
    views = [s for s in statements if re.match(r"CREATE (OR REPLACE )?VIEW ", s)]
    names = [re.match(r"CREATE (?:OR REPLACE )?VIEW (?:IF NOT EXISTS )?[\w]+\.(\w+)", s).group(1) for s in views]  # type: ignore[union-attr]
    with store.locked(client):
        client.command(f"CREATE DATABASE IF NOT EXISTS {target}")
        for stmt in views:
            for name in names:
                stmt = re.sub(rf"\b{db}\.{name}\b", f"{target}.{name}", stmt)
            client.command(stmt)
    return len(views)


def queries(db: str, app: str, day: date) -> dict[str, dict[str, str]]:
    """Per view: the one-app-one-day query and the whole-range query a dashboard panel would send."""
    next_day = day + timedelta(days=1)
    out: dict[str, dict[str, str]] = {}
    for view in VIEWS:
        if view == "kpi_hourly":
            one = f"hour >= '{day} 00:00:00' AND hour < '{next_day} 00:00:00'"
        else:
            one = f"day = '{day}'"
        whole = f"SELECT * FROM {db}.{view}"
        if view in ("kpi_by_number", "kpi_by_binding", "failure_causes"):
            order = "calls" if view == "failure_causes" else "attempts"
            whole += f" ORDER BY {order} DESC LIMIT 20"
        out[view] = {"one_app_one_day": f"SELECT * FROM {db}.{view} WHERE app_key = '{app}' AND {one}",
                     "whole_range": whole}
    return out


def best_of(repeat: int, call: Callable[[], object]) -> float:
    """Min wall time (s) of ``repeat`` calls."""
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - began)
    return best


def timed(client: Client, sql: str, repeat: int) -> tuple[float, int]:
    """Min wall time of ``repeat`` runs (s), the rows fetched into Python, and the rows returned."""
    rows = [0]

    def fetch() -> None:
        with store.locked(client):
            rows[0] = len(client.query(sql).result_rows)
    return best_of(repeat, fetch), rows[0]


def engine_timed(client: Client, sql: str, repeat: int) -> float:
    """Min wall time of ``repeat`` runs (s) of the query alone: the engine computes every row and column and
    discards them (FORMAT Null), so no client decodes them. What a view costs, apart from its reader."""
    def run() -> None:
        with store.locked(client):
            client.raw_query(sql, fmt="Null")
    return best_of(repeat, run)


def quantile_error(client: Client, db: str) -> dict[str, Any]:
    """Every daily PDD/ring quantile of the rollups against quantileExactInclusive over the CDRs."""
    sql = f"""
        SELECT count(), max(abs(r.p50 - e.p50)), max(abs(r.p95 - e.p95)), max(abs(r.r95 - e.r95))
        FROM (SELECT day, app_key, service, pdd_p50_seconds AS p50, pdd_p95_seconds AS p95, ring_p95_seconds AS r95
              FROM {db}.kpi_daily) AS r
        INNER JOIN (SELECT toDate(call_time) AS day, app_key, service,
                           quantileExactInclusive(0.5)(pdd_ms) / 1000 AS p50,
                           quantileExactInclusive(0.95)(pdd_ms) / 1000 AS p95,
                           quantileExactInclusive(0.95)(ring_seconds) AS r95
                    FROM {db}.cdrs FINAL GROUP BY day, app_key, service) AS e
        USING (day, app_key, service)
    """
    groups, p50, p95, r95 = store.query_rows(client, sql)[0]
    return {"groups": int(groups), "max_abs_error_pdd_p50_s": float(p50), "max_abs_error_pdd_p95_s": float(p95),
            "max_abs_error_ring_p95_s": float(r95),
            "estimator": "value -> calls histograms (sumMap), R-7 in the views; vs quantileExactInclusive"}


def storage(client: Client, db: str, calls: int) -> dict[str, Any]:
    rows = store.query_rows(
        client,
        "SELECT table, sum(rows), sum(data_compressed_bytes), sum(bytes_on_disk) FROM system.parts "
        "WHERE database = {db:String} AND active GROUP BY table",
        {"db": db},
    )
    tables = {str(t): {"rows": int(r), "compressed_bytes": int(c), "bytes_on_disk": int(d)} for t, r, c, d in rows}
    cdrs = tables["cdrs"]
    rollup_bytes = sum(tables[t]["bytes_on_disk"] for t in ROLLUPS if t in tables)
    return {
        "cdr_compressed_bytes": round(cdrs["compressed_bytes"] / max(1, cdrs["rows"]), 1),
        "cdr_bytes_on_disk": round(cdrs["bytes_on_disk"] / max(1, cdrs["rows"]), 1),
        "rollup_bytes_on_disk_per_cdr": round(rollup_bytes / max(1, calls), 2),
        "rollup_rows": {t: tables[t]["rows"] for t in ROLLUPS if t in tables},
        "tables": tables,
    }


def run(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    client = store.connect(settings)
    db = settings.clickhouse_database
    apply_migrations(settings, client)
    generated_s = None if args.existing else generate(client, db, args.calls, days=args.days, apps=args.apps,
                                                      seed=args.seed, progress=True)
    began = time.perf_counter()
    with store.locked(client):
        for table in (*(("cdrs",) if args.optimize == "all" else ()), *ROLLUPS):
            client.command(f"OPTIMIZE TABLE {db}.{table} FINAL")
            print(f"  OPTIMIZE TABLE {table} FINAL done at {time.perf_counter() - began:6.1f} s", flush=True)
    optimized_s = time.perf_counter() - began
    before_db = create_before_views(client, db)
    app, day = "bench-app-0", first_day(args.days) + timedelta(days=args.days // 2)
    after_q, before_q = queries(db, app, day), queries(before_db, app, day)
    views: dict[str, Any] = {}
    for view in VIEWS:
        views[view] = {}
        for scope in ("one_app_one_day", "whole_range"):
            after_s, after_rows = timed(client, after_q[view][scope], args.repeat)
            engine_s = engine_timed(client, after_q[view][scope], args.repeat)
            entry: dict[str, Any] = {"after_s": round(after_s, 4), "engine_s": round(engine_s, 4), "rows": after_rows}
            line = f"  {view:<20} {scope:<16} after {after_s:8.4f} s (engine {engine_s:7.4f} s)  ({after_rows} rows)"
            if not args.skip_before:
                before_s, before_rows = timed(client, before_q[view][scope], args.repeat)
                entry = {"before_s": round(before_s, 4), **entry, "speedup": round(before_s / max(after_s, 1e-9), 1),
                         "rows_before": before_rows}
                line += f"  before {before_s:8.4f} s  x{before_s / max(after_s, 1e-9):8.1f}"
            views[view][scope] = entry
            print(line, flush=True)
    return {
        "calls": args.calls,
        "days": args.days,
        "apps": args.apps,
        "generate_s": None if generated_s is None else round(generated_s, 1),
        "optimize_final_s": round(optimized_s, 1),
        "optimized": "cdrs and the rollups" if args.optimize == "all" else "the rollups only (cdrs parts unmerged)",
        "views": views,
        "quantiles": None if args.skip_exact else quantile_error(client, db),
        "storage": storage(client, db, args.calls),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=None, help="CDRs to generate (default 10 M, 100 M with --long)")
    parser.add_argument("--long", action="store_true", help="the 100 M CDR run")
    parser.add_argument("--quick", action="store_true", help="200 k CDRs (smoke run)")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--apps", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3, help="runs per query; the minimum is reported")
    parser.add_argument("--existing", action="store_true",
                        help="the --data-dir store already holds the --calls generated CDRs: do not generate")
    parser.add_argument("--optimize", choices=("all", "rollups"), default="all",
                        help="OPTIMIZE FINAL cdrs and the rollups (default), or the rollups only (the views read them)")
    parser.add_argument("--skip-exact", action="store_true",
                        help="leave out the quantile comparison with the CDRs (it reads cdrs FINAL)")
    parser.add_argument("--skip-before", action="store_true",
                        help="time the views only, not the baseline over cdrs FINAL (the long run: minutes per query)")
    parser.add_argument("--data-dir", default=None, help="store directory (default: a temporary one)")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args(argv)
    args.calls = args.calls or (100_000_000 if args.long else 200_000 if args.quick else 10_000_000)

    with tempfile.TemporaryDirectory(prefix="callstream-analytics-") as tmp:
        settings = Settings(data_dir=Path(args.data_dir or tmp), clickhouse_database="analytics_bench", auth="off",
                            republish=False)
        began, load_at_start = time.perf_counter(), os.getloadavg()[0]
        result = run(settings, args)
        store.close_all()
    views = result["views"]
    if not args.skip_before:
        result["ratio"] = round(min(v[s]["speedup"] for v in views.values() for s in v), 2)  # the worst view
    result["targets_met"] = {
        "whole_range_le_0_5_s": all(v["whole_range"]["after_s"] <= 0.5 for v in views.values()),
        "one_app_one_day_le_50_ms": all(v["one_app_one_day"]["after_s"] <= 0.05 for v in views.values()),
        "cdr_compressed_le_200_b": result["storage"]["cdr_compressed_bytes"] <= 200,
        # the same two targets for the engine's time alone (rows computed, not decoded into Python)
        "engine_whole_range_le_0_5_s": all(v["whole_range"]["engine_s"] <= 0.5 for v in views.values()),
        "engine_one_app_one_day_le_50_ms": all(v["one_app_one_day"]["engine_s"] <= 0.05 for v in views.values()),
    }
    result["setup"] = {
        "engine": "chDB (embedded ClickHouse) " + platform.python_version(),
        "elapsed_s": round(time.perf_counter() - began, 1),
        "timing": f"min of {args.repeat} runs, wall clock, after OPTIMIZE FINAL of {result['optimized']}; after_s "
                  "includes clickhouse-connect decoding the rows into Python, engine_s is the query with FORMAT Null",
        "load_average_1m_at_start": round(load_at_start, 2),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "before": "not measured (--skip-before)" if args.skip_before else
                  "the views of the migrations before the rollups, over cdrs FINAL, exact quantiles, same data, same run",
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    q, s = result["quantiles"], result["storage"]
    if q is not None:
        print(f"quantiles: {q['groups']} daily groups, max |error| p50 {q['max_abs_error_pdd_p50_s']} s, "
              f"p95 {q['max_abs_error_pdd_p95_s']} s, ring p95 {q['max_abs_error_ring_p95_s']} s")
    print(f"storage: {s['cdr_compressed_bytes']} B per CDR compressed ({s['cdr_bytes_on_disk']} on disk), "
          f"rollups {s['rollup_bytes_on_disk_per_cdr']} B per CDR, rollup rows {s['rollup_rows']}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

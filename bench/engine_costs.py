"""What each statement the consumer sends the embedded engine costs: a fixed part and a part per row.

    python bench/engine_costs.py [--quick] [--repeat 9]

Migrates a store in a temporary directory and prepares one batch of bench/consumer.py's backlog
(``--events`` raw events, the consumer's ``batch_max_events``). With merges stopped (each figure is the
statement's own CPU, not the background merges it causes), it measures the process CPU (every thread:
the engine runs in this process) of:

* the per-batch lookups on an empty store (the constant part: binding and analysing the keys), with the
  batch's keys and sessions: ``stored_notifications`` (cdrs + call_events keys) and ``first_callouts``;
* ``ClickHouseSink.insert`` of one row and of the batch's rows into ``cdrs`` (with its four rollup
  views), ``call_events`` and ``number_status``, and into ``cdrs`` with the views dropped.

The baseline is what any insert costs the engine: a one-row insert into a one-column table, measured
right before every figure (the machine's speed drifts with its neighbours: the same statement took
twice as long from one run to the next). Each figure is the median of ``--repeat``, with its ratio to
the baseline beside it, and the engine's planning time of the statement (analysis, query plan,
pipeline), which the engine counts per statement and which does not drift.

From one row and the batch's rows it derives each insert's fixed ms and its us per further row, then
what the statements cost per row of a batch of ``--events`` and of four times that. Writes
bench/results/engine_costs.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiokafka.structs import ConsumerRecord  # noqa: E402
from clickhouse_connect.driver.client import Client  # noqa: E402

from bench.consumer import generate  # noqa: E402
from consumers.load import ClickHouseSink  # noqa: E402
from consumers.prepare import State, prepare  # noqa: E402
from core import store  # noqa: E402
from core.settings import Settings  # noqa: E402
from schemas.migrate import apply_migrations  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "engine_costs.json"
DB = "engine_costs"


def cpu_ms() -> float:
    """The process's CPU so far (every thread: the engine's run in this process), in ms."""
    return time.process_time() * 1000


_PLANNING = ("QueryAnalysisMicroseconds", "QueryPlanBuildMicroseconds", "QueryPlanOptimizeMicroseconds",
             "QueryPipelineBuildMicroseconds")
_PLANNING_SQL = f"SELECT sum(value) FROM system.events WHERE event IN {_PLANNING!r}"


class Paired:
    """Each statement measured alternately with the baseline statement, ``repeat`` times: the machine's
    speed drifts (its neighbours), so a figure is kept with the baseline measured next to it. Also the
    engine's planning time (analysis, plan, pipeline: counted per statement by the engine itself, so it
    does not drift with the machine's load)."""

    def __init__(self, client: Client, baseline: Callable[[], object], repeat: int) -> None:
        self.client = client
        self.baseline = baseline
        self.repeat = repeat

    def planning_ms(self) -> float:
        return float(store.query_rows(self.client, _PLANNING_SQL)[0][0]) / 1000

    def __call__(self, call: Callable[[], object]) -> dict[str, float]:
        call()
        self.baseline()
        reading = min(-self.planning_ms() + self.planning_ms() for _ in range(3))
        pairs, planning = [], []
        for _ in range(self.repeat):
            began = cpu_ms()
            self.baseline()
            middle = cpu_ms()
            call()
            pairs.append((middle - began, cpu_ms() - middle))
            planned = self.planning_ms()
            call()
            planning.append(self.planning_ms() - planned - reading)
        base = statistics.median(b for b, _ in pairs)
        own = statistics.median(c for _, c in pairs)
        return {"ms": round(own, 2), "baseline_ms": round(base, 2),
                "x_baseline": round(statistics.median(c / b for b, c in pairs if b > 0), 2),
                "planning_ms": round(max(0.0, statistics.median(planning)), 2)}


def batch_of(events: int, settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """The prepared rows of the first ``events`` raw events of the consumer bench's backlog."""
    messages, _ = generate(events // 3 + 10)
    records = [ConsumerRecord("raw", 0, i, 0, 0, key, value, None, 0, len(value), [])
               for i, (key, value) in enumerate(messages[:events])]
    return prepare(records, settings, State()).tables


def run(events: int, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="callstream-engine-costs-") as tmp:
        settings = Settings(data_dir=Path(tmp), clickhouse_database=DB, auth="off", republish=False,
                            number_pepper="bench-pepper-0123456789abcdef")
        client = store.connect(settings)
        try:
            apply_migrations(settings, client)
            tables = batch_of(events, settings)
            sink = ClickHouseSink(client, DB)
            with store.locked(client):
                client.command("SYSTEM STOP MERGES")
                client.command(f"CREATE TABLE {DB}.one_column (x UInt64) ENGINE = MergeTree ORDER BY x")
            tokens = iter(range(10**9))

            def insert(table: str, rows: list[dict[str, Any]]) -> Callable[[], object]:
                return lambda: sink.insert(table, rows, token=f"{table}-{next(tokens)}")

            measure = Paired(client, lambda: store.query_rows(client, f"INSERT INTO {DB}.one_column VALUES (1)"), repeat)
            baseline = {"select_1": measure(lambda: store.query_rows(client, "SELECT 1"))}
            keys = {t: [r["dedup_key"] for r in tables[t]] for t in ("cdrs", "call_events")}
            sessions = sorted({r["session_id"] for r in tables["call_events"] if r["session_id"]})
            lookups = {"stored_notifications": measure(lambda: sink.stored_notifications(keys)),
                       "first_callouts": measure(lambda: sink.first_callouts(sessions))}
            inserts: dict[str, dict[str, float]] = {}
            for table in ("cdrs", "call_events", "number_status"):
                rows = tables[table]
                if rows:
                    inserts[table] = _fixed_and_marginal(measure(insert(table, rows[:1])), measure(insert(table, rows)),
                                                         len(rows))
            with store.locked(client):
                views = [str(r[0]) for r in client.query(
                    "SELECT name FROM system.tables WHERE database = {db:String} AND engine = 'MaterializedView'",
                    parameters={"db": DB}).result_rows]
                for view in views:
                    client.command(f"DROP VIEW {DB}.{view}")
            rows = tables["cdrs"]
            inserts["cdrs_without_views"] = _fixed_and_marginal(measure(insert("cdrs", rows[:1])),
                                                                measure(insert("cdrs", rows)), len(rows))
        finally:
            store.close_all()
    counts = {table: len(rows) for table, rows in tables.items()}
    return {
        "benchmark": "engine_costs", "python": platform.python_version(), "cpus": len(os.sched_getaffinity(0)),
        "events_per_batch": events, "rows_per_batch": counts, "repeat": repeat, "baseline": baseline,
        "lookups_empty_store": lookups, "inserts": inserts, "per_row": _per_row(inserts, lookups, counts),
        "note": "process CPU per statement (median of repeat, each beside the baseline), merges stopped; fixed = "
                "one row, per_row_us = the rest of the batch's insert divided by its further rows",
    }


def _fixed_and_marginal(one: dict[str, float], batch: dict[str, float], rows: int) -> dict[str, float]:
    per_row_us = max(0.0, batch["ms"] - one["ms"]) * 1000 / max(1, rows - 1)
    return {"fixed_ms": one["ms"], "fixed_x_baseline": one["x_baseline"], "planning_ms": one["planning_ms"],
            "per_row_us": round(per_row_us, 2),
            "rows": rows, "batch_ms": batch["ms"], "baseline_ms": round((one["baseline_ms"] + batch["baseline_ms"]) / 2, 2)}


def _per_row(inserts: dict[str, dict[str, float]], lookups: dict[str, float],
             counts: dict[str, int]) -> dict[str, dict[str, float]]:
    """The statements' CPU per row of a batch like the one measured, and of one four times as large
    (fixed parts once per batch; lookups counted as fixed, measured on an empty store)."""
    out = {}
    for scale in (1, 4):
        rows = sum(counts.values()) * scale
        fixed = sum(lookup["ms"] for lookup in lookups.values()) + sum(inserts[t]["fixed_ms"] for t in counts if t in inserts)
        marginal = sum(inserts[t]["per_row_us"] * counts[t] * scale / 1000 for t in counts if t in inserts)
        out[f"batch_x{scale}"] = {"rows": rows, "fixed_ms": round(fixed, 1), "per_row_ms": round(marginal, 1),
                                  "us_per_row": round((fixed + marginal) * 1000 / rows, 1),
                                  "fixed_share": round(fixed / (fixed + marginal), 2)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (smoke)")
    parser.add_argument("--events", type=int, default=Settings().batch_max_events,
                        help="raw events in the batch (default: the consumer's batch_max_events)")
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    report = run(args.events, 3 if args.quick else args.repeat)
    report["elapsed_s"] = round(time.perf_counter() - began, 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    select = report["baseline"]["select_1"]
    print(f"baseline (measured beside every figure): a one-row insert into a one-column table "
          f"{select['baseline_ms']:.2f} ms of process CPU; SELECT 1 {select['ms']:.2f} ms")
    print(f"batch of {args.events:,} raw events: {report['rows_per_batch']}")
    for name, cost in report["lookups_empty_store"].items():
        print(f"  lookup {name:<22} {cost['ms']:8.2f} ms  x{cost['x_baseline']:.1f} the baseline, planning "
              f"{cost['planning_ms']:.1f} ms  (empty store)")
    for table, cost in report["inserts"].items():
        print(f"  insert {table:<22} {cost['fixed_ms']:8.2f} ms fixed (x{cost['fixed_x_baseline']:.1f} the baseline, "
              f"planning {cost['planning_ms']:.1f} ms)  "
              f"{cost['per_row_us']:6.2f} us per further row  ({cost['rows']:,} rows: {cost['batch_ms']:.1f} ms)")
    for scale, cost in report["per_row"].items():
        print(f"  {scale}: {cost['rows']:,} rows, the statements {cost['us_per_row']} us per row "
              f"({cost['fixed_ms']} ms fixed per batch = {cost['fixed_share']:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

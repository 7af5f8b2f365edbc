"""Scaling benchmark: the two knobs of the capacity model.

    python bench/scaling.py [--quick]

1. Edge workers: ``callstream edge --workers 1`` then ``--workers 2`` against the embedded broker, driven by
   the same closed-loop load generator (bench/_load.py, its own process, 128 keep-alive connections).
   Throughput in pushes/s and latency percentiles; the baseline is one worker.
2. Consumer batch size: one backlog of raw envelopes (bench/consumer.py's generator: realistic calls,
   merged CDRs, number status) drained by ``run_consumer`` with ``batch_max_events`` 500, 2000 and 5000,
   each into its own database of one chDB store. Rows/s from the store's own ``loaded_at`` stamps.

Writes bench/results/scaling.json (baseline_per_s = 1 edge worker, callstream_per_s = 2 workers).
The machine has 2 cores shared by generator, edge workers and broker: state that with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._load import PUBLIC_BASE_URL, bench_apps_env  # noqa: E402
from bench.consumer import generate, produce  # noqa: E402
from core import store  # noqa: E402
from core.broker import EmbeddedBroker, free_port, wait_for_port  # noqa: E402
from core.kafka import ensure_topics  # noqa: E402
from schemas import ROW_TABLES  # noqa: E402
from core.settings import Settings  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "scaling.json"
BATCH_SIZES = (500, 2000, 5000)


def edge_env(bootstrap: str, run_id: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSTREAM_")}
    env.update(CALLSTREAM_KAFKA_BOOTSTRAP=bootstrap, CALLSTREAM_APPS=bench_apps_env(),
               CALLSTREAM_PUBLIC_BASE_URL=PUBLIC_BASE_URL, CALLSTREAM_RAW_TOPIC=f"scale.{run_id}.raw",
               CALLSTREAM_DEAD_TOPIC=f"scale.{run_id}.dead", CALLSTREAM_TOPIC_PARTITIONS="6")
    return env


def _rss_tree_mb(pid: int) -> float:
    """Peak RSS of a process and its direct children (uvicorn workers)."""
    pids = [pid]
    try:
        pids += [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    total = 0.0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return round(total, 1)


def edge_run(bootstrap: str, workers: int, duration: float, run_id: str) -> dict[str, Any]:
    import httpx

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "callstream.cli", "--log-level", "WARNING", "edge", "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(workers)],
        env=edge_env(bootstrap, run_id), cwd=ROOT, stdin=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", port, 30)
        deadline = time.monotonic() + 30
        while httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=5).status_code != 200:
            if time.monotonic() > deadline:
                raise TimeoutError("edge did not become ready")
            time.sleep(0.1)

        def load(seconds: float) -> dict[str, Any]:
            out = subprocess.run([sys.executable, str(ROOT / "bench" / "_load.py"), "--port", str(port),
                                  "--duration", str(seconds), "--connections", "128"],
                                 check=True, capture_output=True, cwd=ROOT, timeout=seconds * 4 + 120)
            return dict(json.loads(out.stdout))

        load(1.0)  # warm up every worker
        result = load(duration)
        result["rss_mb"] = _rss_tree_mb(process.pid)
        return {k: result[k] for k in ("per_s", "p50_ms", "p99_ms", "statuses", "rss_mb")}
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


async def consumer_run(base: Settings, batch: int, rows: int, timeout_s: float, run: int = 0) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry

    from consumers.runner import run_consumer

    settings = base.model_copy(update={"batch_max_events": batch, "clickhouse_database": f"scale_{batch}_{run}",
                                       "consumer_group": f"scale-{batch}-{time.time_ns()}"})
    stop = asyncio.Event()
    task = asyncio.create_task(run_consumer(settings, stop, registry=CollectorRegistry()))
    client = await asyncio.to_thread(store.connect, settings)
    db = settings.clickhouse_database
    count_sql = (f"SELECT (SELECT count() FROM {db}.cdrs) + (SELECT count() FROM {db}.call_events) + "
                 f"(SELECT count() FROM {db}.number_status)")
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if task.done():
                task.result()
            try:
                loaded = int((await asyncio.to_thread(store.query_rows, client, count_sql))[0][0])
            except Exception:  # noqa: BLE001 - tables appear once the consumer migrated
                loaded = 0
            if loaded >= rows or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        span = await asyncio.to_thread(store.query_rows, client, (
            "SELECT dateDiff('millisecond', min(loaded_at), max(loaded_at)), count() FROM ("
            + " UNION ALL ".join(f"SELECT loaded_at FROM {db}.{t}" for t in ROW_TABLES)
            + ")"))
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    span_ms, stored = int(span[0][0]), int(span[0][1])
    return {"batch_max_events": batch, "rows": stored, "complete": stored == rows,
            "rows_per_s": round(stored / max(span_ms / 1000, 1e-3), 1), "load_span_s": round(span_ms / 1000, 2)}


async def consumer_runs(bootstrap: str, calls: int, run_id: str, data_dir: Path,
                        batches: tuple[int, ...] = BATCH_SIZES) -> list[dict[str, Any]]:
    base = Settings(kafka_bootstrap=bootstrap, raw_topic=f"scale.{run_id}.backlog", dead_topic=f"scale.{run_id}.d",
                    cdrs_topic=f"scale.{run_id}.cdrs", call_events_topic=f"scale.{run_id}.events",
                    number_status_topic=f"scale.{run_id}.status", topic_partitions=6,
                    clickhouse_url=f"chdb://{data_dir / 'clickhouse'}", consumer_metrics_port=0,
                    number_pepper="bench-number-pepper-0123456789", apps="bench:bench")
    await ensure_topics(base)
    messages, rows = generate(calls, prefix=f"s{run_id}-")
    await produce(base, messages)
    out = []
    for run, batch in enumerate(batches):  # a database per run: a batch size may come twice
        out.append(await consumer_run(base, batch, rows, timeout_s=600, run=run))
    store.close_all()
    return out


def run(quick: bool, calls: int | None = None, batches: tuple[int, ...] = BATCH_SIZES) -> dict[str, Any]:
    duration = 5.0 if quick else 15.0
    calls = calls or (3000 if quick else 20000)
    run_id = f"{int(time.time())}"
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory(prefix="callstream-scaling-") as tmp:
        edges = {w: edge_run(broker.bootstrap, w, duration, f"{run_id}w{w}") for w in (1, 2)}
        consumers = asyncio.run(consumer_runs(broker.bootstrap, calls, run_id, Path(tmp), batches))
    one, two = edges[1], edges[2]
    best = max(consumers, key=lambda c: c["rows_per_s"])
    return {
        "baseline_per_s": one["per_s"],
        "callstream_per_s": two["per_s"],
        "ratio": round(two["per_s"] / one["per_s"], 3) if one["per_s"] else 0.0,
        "p50_ms": two["p50_ms"], "p99_ms": two["p99_ms"], "rss_mb": two["rss_mb"],
        "edge_workers": {str(w): r for w, r in edges.items()},
        "consumer_batches": consumers,
        "consumer_best": {"batch_max_events": best["batch_max_events"], "rows_per_s": best["rows_per_s"]},
        "setup": {"quick": quick, "edge_duration_s": duration, "consumer_calls": calls, "cpus": os.cpu_count(),
                  "python": platform.python_version(), "loadavg_before": load_before,
                  "loadavg_after": Path("/proc/loadavg").read_text().split()[:3],
                  "notes": "2 cores shared by the load generator, the edge worker(s) and the embedded broker; "
                           "edge: auth on, acks=all; consumer: one run_consumer, 6 partitions, chDB, republish on"},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs (CI smoke)")
    parser.add_argument("--calls", type=int, help="calls in the consumer's backlog (default 20,000; 3,000 quick)")
    parser.add_argument("--batches", type=lambda text: tuple(int(b) for b in text.split(",")), default=BATCH_SIZES,
                        help="comma-separated batch_max_events values to drain the backlog with")
    args = parser.parse_args()
    report = run(args.quick, args.calls, args.batches)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"edge_workers": report["edge_workers"], "consumer_batches": report["consumer_batches"]},
                     indent=2))
    return 0 if all(c["complete"] for c in report["consumer_batches"]) else 1


if __name__ == "__main__":
    sys.exit(main())

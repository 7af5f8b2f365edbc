"""End-to-end benchmark: receipt-to-row latency through the whole stack at a fixed offered rate.

    python bench/e2e.py [--quick] [--rate 1000] [--duration 60] [--broker memory|durable|both]

Starts ``callstream up`` (embedded broker, edge subprocess, consumer, chDB, SQL endpoint) on a temp data
dir, then a load generator in its own process sends signed pushes at a fixed rate over keep-alive
connections (every push a distinct business record: the samples with unique sessionId/icid/number, so
deduplication drops nothing). When every row is loaded, the latency of each row is read from the store:
``loaded_at - received_at`` (ClickHouse's insert time minus the edge's receipt time).

Figures (bench/results/e2e.json): baseline_per_s = the offered rate, callstream_per_s = rows loaded per
second over the run, ratio, p50_ms / p99_ms of receipt-to-row, rss_mb of the edge and of the `up`
process (consumer + embedded store + SQL endpoint). Target: p99 <= 2 s at 1,000/s. ``--broker`` picks the
embedded broker of `up` (memory: the default here; durable: Tansu on the local S3 store, `up`'s own default;
both: one run each, durable figures under ``"durable"`` beside the memory ones).
"""

from __future__ import annotations

import argparse
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

from bench._load import BENCH_APPS, PUBLIC_BASE_URL, SAMPLES, bench_apps_env, send_at_rate  # noqa: E402
from core.broker import free_port, stop_process  # noqa: E402
from core.credentials import read_stack_file  # noqa: E402
from schemas import ROW_TABLES  # noqa: E402
from ingest.auth import sign_headers  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "e2e.json"
TARGET_P99_MS = 2000.0
UNIQUE_FIELDS = ("sessionId", "icid", "number")


def _unique(doc: Any, suffix: str) -> Any:
    if isinstance(doc, dict):
        return {k: (f"{v}-{suffix}" if k in UNIQUE_FIELDS and isinstance(v, str) else _unique(v, suffix))
                for k, v in doc.items()}
    if isinstance(doc, list):
        return [_unique(v, suffix) for v in doc]
    return doc


def _rows_of(doc: dict[str, Any]) -> int:
    for key in ("feeLst", "numInfo"):
        if isinstance(doc.get(key), list):
            return len(doc[key])
    return 1


def unique_requests(host: str, port: int, total: int, run_id: str) -> tuple[list[bytes], int]:
    """``total`` signed HTTP/1.1 requests, each a distinct business record set; returns (requests, rows)."""
    samples = [(p.name.split("_", 1)[0], json.loads(p.read_bytes())) for p in sorted(SAMPLES.glob("*.json"))]
    out, rows = [], 0
    for n in range(total):
        service, doc = samples[n % len(samples)]
        body = json.dumps(_unique(doc, f"{run_id}-{n}"), separators=(",", ":")).encode()
        rows += _rows_of(doc)
        app_key, secret = BENCH_APPS[service]
        headers = sign_headers(app_key, secret, scheme="aksk-voice" if service == "voice" else "aksk",
                               url=f"{PUBLIC_BASE_URL}/notify/{service}", nonce=f"{run_id}n{n:x}")
        head = (f"POST /notify/{service} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Content-Type: application/json;charset=UTF-8\r\nContent-Length: {len(body)}\r\n"
                f"Authorization: {headers['Authorization']}\r\nX-AKSK: {headers['X-AKSK']}\r\n\r\n")
        out.append(head.encode() + body)
    return out, rows


def generate_main(port: int, rate: float, duration: float, run_id: str) -> int:
    import uvloop

    requests, rows = unique_requests("127.0.0.1", port, int(rate * duration), run_id)
    result = uvloop.run(send_at_rate("127.0.0.1", port, requests, rate, connections=64))
    result["rows"] = rows
    print(json.dumps(result))
    return 0


# --- the stack ----------------------------------------------------------------------------------
def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def start_up(data_dir: Path, edge_port: int, query_port: int, extra_env: dict[str, str] | None = None,
             broker: str = "memory") -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSTREAM_")}
    env.update(CALLSTREAM_APPS=bench_apps_env(), CALLSTREAM_PUBLIC_BASE_URL=PUBLIC_BASE_URL,
               CALLSTREAM_NUMBER_PEPPER="bench-number-pepper-0123456789", CALLSTREAM_TOPIC_PARTITIONS="6",
               **(extra_env or {}))
    log = open(data_dir.parent / "up.log", "ab")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "callstream.cli", "--log-level", "WARNING", "up", "--data-dir", str(data_dir),
         "--host", "127.0.0.1", "--port", str(edge_port), "--query-port", str(query_port), "--metrics-port", "0",
         "--broker", broker],
        env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    deadline = time.monotonic() + 90
    while (info := read_stack_file(data_dir)) is None:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"callstream up did not start; see {data_dir.parent / 'up.log'}")
        time.sleep(0.2)
    return process, info


def stop_up(process: subprocess.Popen[bytes]) -> None:
    stop_process(process, 60, reap_s=10)


def sql(query_url: str, text: str) -> list[list[Any]]:
    import httpx

    response = httpx.post(query_url, params={"default_format": "JSONCompactEachRow"}, content=text.encode(),
                          timeout=60)
    response.raise_for_status()
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


ALL_ROWS = " UNION ALL ".join(f"SELECT notification_id, received_at, loaded_at FROM callstream.{t}"
                              for t in ROW_TABLES)


def run(rate: float, duration: float, broker: str = "memory") -> dict[str, Any]:
    run_id = f"{int(time.time())}"
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    with tempfile.TemporaryDirectory(prefix="callstream-e2e-") as tmp:
        edge_port, query_port = free_port(), free_port()
        up, info = start_up(Path(tmp) / "data", edge_port, query_port, broker=broker)
        try:
            query_url = info["query_url"]
            edge_pid = next((p for p in children(up.pid) if " edge" in cmdline(p)), 0)
            out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--generate", str(edge_port),
                                  str(rate), str(duration), run_id],
                                 check=True, capture_output=True, cwd=ROOT, timeout=duration * 4 + 120)
            gen = json.loads(out.stdout)
            deadline = time.monotonic() + 120
            while True:
                loaded = int(sql(query_url, f"SELECT count() FROM ({ALL_ROWS})")[0][0])
                if loaded >= gen["rows"] or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            stats = sql(query_url, (
                "SELECT quantilesExact(0.5, 0.99, 0.999)(ms), max(ms), count(), uniqExact(notification_id), "
                "dateDiff('millisecond', min(received_at), max(loaded_at)) "
                "FROM (SELECT dateDiff('millisecond', received_at, loaded_at) AS ms, notification_id, received_at, "
                f"loaded_at FROM ({ALL_ROWS}))"))[0]
            rss = {"edge": peak_rss_mb(edge_pid), "up_consumer_store": peak_rss_mb(up.pid),
                   "broker": peak_rss_mb(int(info.get("broker_pid") or 0))}
            if info.get("object_store_pid"):
                rss["object_store"] = peak_rss_mb(int(info["object_store_pid"]))
            disk_mb = _du_mb(Path(tmp) / "data" / "objectstore")
        finally:
            stop_up(up)
    (p50, p99, p999), max_ms, rows, pushes_loaded, span_ms = stats
    span_s = max(span_ms / 1000, 1e-9)
    loaded_per_s = round(pushes_loaded / span_s, 1)  # pushes (notifications) per second, like the offered rate
    return {
        "baseline_per_s": rate,
        "callstream_per_s": loaded_per_s,
        "ratio": round(loaded_per_s / rate, 3),
        "p50_ms": float(p50), "p99_ms": float(p99), "p999_ms": float(p999), "max_ms": float(max_ms),
        "rss_mb": round(rss["edge"] + rss["up_consumer_store"], 1),
        "rss_mb_by_process": rss,
        "broker": broker,
        "object_store_disk_mb": disk_mb,
        "rows_expected": gen["rows"], "rows_loaded": int(rows), "rows_per_s": round(rows / span_s, 1),
        "pushes_loaded": int(pushes_loaded),
        "pushes": gen["requests"], "statuses": gen["statuses"], "offered_per_s": gen["per_s"],
        "http_p50_ms": gen["p50_ms"], "http_p99_ms": gen["p99_ms"],
        "targets_met": bool(float(p99) <= TARGET_P99_MS and int(rows) == gen["rows"]),
        "targets": {"p99_ms_max": TARGET_P99_MS, "all_rows_loaded": True},
        "setup": {"rate": rate, "duration_s": duration, "cpus": os.cpu_count(), "python": platform.python_version(),
                  "loadavg_before": load_before, "loadavg_after": Path("/proc/loadavg").read_text().split()[:3],
                  "notes": "callstream up (embedded Tansu, one edge worker, in-process consumer, chDB); "
                           "generator in its own process, 64 keep-alive connections, auth on, acks=all; "
                           "latency = loaded_at (ClickHouse insert time, ms) - received_at (edge receipt)"},
    }


def _du_mb(path: Path) -> float:
    if not path.exists():
        return 0.0
    return round(sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file()) / 2**20, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 s instead of 60 s")
    parser.add_argument("--rate", type=float, default=1000.0, help="offered pushes per second (default 1000)")
    parser.add_argument("--duration", type=float, default=None, help="seconds of load (default 60, quick 10)")
    parser.add_argument("--broker", choices=["memory", "durable", "both"], default="memory",
                        help="embedded broker of `up` (both: memory then durable, same run)")
    parser.add_argument("--generate", nargs=4, metavar=("PORT", "RATE", "DURATION", "RUN_ID"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        port, rate, duration, run_id = args.generate
        return generate_main(int(port), float(rate), float(duration), run_id)
    duration = args.duration or (10.0 if args.quick else 60.0)
    modes = ["memory", "durable"] if args.broker == "both" else [args.broker]
    report = run(args.rate, duration, modes[0])
    report["setup"]["quick"] = args.quick
    if len(modes) > 1:
        durable = run(args.rate, duration, "durable")
        report["durable"] = {k: durable[k] for k in ("callstream_per_s", "ratio", "p50_ms", "p99_ms", "p999_ms",
                                                     "max_ms", "rows_expected", "rows_loaded", "rss_mb_by_process",
                                                     "object_store_disk_mb", "http_p50_ms", "http_p99_ms",
                                                     "statuses", "targets_met")}
        report["durable"]["p99_vs_memory"] = round(durable["p99_ms"] / max(report["p99_ms"], 1e-9), 2)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: report[k] for k in ("baseline_per_s", "callstream_per_s", "ratio", "p50_ms", "p99_ms",
                                             "rss_mb", "rows_expected", "rows_loaded", "targets_met", "broker")},
                     indent=2))
    if "durable" in report:
        print("durable:", json.dumps(report["durable"], indent=2))
    durable = report.get("durable")
    ok = report["rows_loaded"] == report["rows_expected"] and (
        durable is None or durable["rows_loaded"] == durable["rows_expected"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

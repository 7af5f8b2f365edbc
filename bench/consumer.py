"""Consumer benchmark with its same-run baseline.

    python bench/consumer.py [--quick] [--before-ref GIT_REF]

Starts an EmbeddedBroker and produces N realistic raw envelopes (per 10 calls: 40 status/event pushes
and one merged CDR push of 10 FeeInfo; every 100 calls one numStatus push of 5 entries). Then:
  (a) baseline: a plain aiokafka consumer reads the same messages, decodes the Avro envelope and
      orjson-parses the body (the least any consumer must do to see the rows);
  (b) callstream: `run_consumer` (normalise, dedupe, enrich, load into chDB in a temp dir, republish
      to the downstream topics, commit) drains the same backlog, in its own process so its peak RSS
      (VmHWM) is its own; then a fixed-rate phase measures receipt-to-row latency from the stored
      received_at vs loaded_at.
The figures of an earlier run (``--before-ref``) are kept in the results as ``before``.
Rates count rows (CDRs + call events + number-status entries) per second. Writes
bench/results/consumer.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
import pyarrow  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from bench._memory import RssSampler, engine_events, python_side_mb, top_sites  # noqa: E402
from core.broker import EmbeddedBroker  # noqa: E402
from core.kafka import consumer_kwargs, ensure_topics, producer_kwargs  # noqa: E402
from core.settings import Settings  # noqa: E402
from schemas import ROW_TABLES  # noqa: E402
from schemas.avro_codec import decode, encode  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "consumer.json"
APP = "a1B2c3D4e5F6g7H8i9J0k1L2m3N4"
BASE_S = 1_710_200_000


def _ts(seconds: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


def _envelope(body: dict[str, Any], service: str, nid: str | None = None) -> bytes:
    return encode("raw_envelope", {
        "id": nid or uuid.uuid4().hex, "received_at": int(time.time() * 1_000_000), "service": service,
        "path": f"/notify/{service}", "event_type": body["eventType"], "app_key": APP, "auth_scheme": "aksk",
        "content_type": "application/json;charset=UTF-8", "remote_addr": "10.0.0.1", "body": orjson.dumps(body),
    })


def generate(calls: int, seed: int = 7, prefix: str = "") -> tuple[list[tuple[bytes, bytes]], int]:
    """(key, envelope) pairs for ``calls`` calls and the number of rows they carry."""
    rng = random.Random(seed)
    out: list[tuple[bytes, bytes]] = []
    rows = 0
    fees: list[dict[str, Any]] = []
    for i in range(calls):
        start = BASE_S + i
        session = f"{prefix}1201_{i}_4294967295_20240312@callenabler245.huaweicaas.com"
        callee = f"+86138{rng.randrange(10**8):08d}"
        answered = rng.random() < 0.7
        for offset, event in enumerate(("callout", "alerting", "answer", "disconnect")):
            if event == "answer" and not answered:
                continue
            info: dict[str, Any] = {"sessionId": session, "timestamp": _ts(start + offset * 3),
                                    "caller": "+8675528000001", "called": callee, "userData": f"order-{i}"}
            if event == "disconnect":
                info.update(stateCode=0 if answered else rng.choice([8101, 8102, 8100]), stateDesc="x")
            out.append((session.encode(), _envelope({"eventType": event, "statusInfo": info}, "voice")))
            rows += 1
        fee: dict[str, Any] = {
            "direction": 0, "spId": "CaaS_Test_01", "appKey": APP, "icid": f"{prefix}icid.{i}",
            "bindNum": "+8675528000001", "sessionId": session, "callerNum": "+8675528000001",
            "calleeNum": callee, "callOutStartTime": _ts(start), "callOutAlertingTime": _ts(start + 3),
            "callEndTime": _ts(start + 60), "fwdUnaswRsn": 0, "recordFlag": 0, "ttsPlayTimes": 1,
            "ttsTransDuration": 1, "serviceType": "001", "hostName": "callenabler245.huaweicaas.com",
            "userData": f"order-{i}",
        }
        if answered:
            fee.update(callOutAnswerTime=_ts(start + 6), callOutUnaswRsn=0, ulFailReason=0, sipStatusCode=0)
        else:
            fee.update(callOutUnaswRsn=rng.choice([17, 19, 0]), ulFailReason=rng.choice([518, 514, 404]),
                       sipStatusCode=rng.choice([486, 480, 404]), failTime=_ts(start + 60))
        fees.append(fee)
        if len(fees) == 10:
            out.append((fees[0]["sessionId"].encode(), _envelope({"eventType": "fee", "feeLst": fees}, "voice")))
            rows += len(fees)
            fees = []
        if i % 100 == 99:
            info_list = [{"number": f"+8617{prefix and 9 or 0}{i:07d}{k}", "status": rng.choice(["5", "10"]),
                          "cause": "2"} for k in range(5)]
            out.append((info_list[0]["number"].encode(),
                        _envelope({"eventType": "numStatus", "numInfo": info_list}, "privacy")))
            rows += 5
    if fees:
        out.append((fees[0]["sessionId"].encode(), _envelope({"eventType": "fee", "feeLst": fees}, "voice")))
        rows += len(fees)
    return out, rows


async def produce(settings: Settings, messages: list[tuple[bytes, bytes]], rate: float = 0.0) -> None:
    producer = AIOKafkaProducer(**producer_kwargs(settings, client_id="bench"))
    await producer.start()
    try:
        started = time.monotonic()
        pending = []
        for n, (key, value) in enumerate(messages):
            if rate:
                delay = started + n / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                # stamp receipt at send time so latency is measured from "arrival"
                name, record = decode(value)
                record["received_at"] = int(time.time() * 1_000_000)
                value = encode(name, record)
            pending.append(await producer.send(settings.raw_topic, value, key=key))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def baseline(settings: Settings, messages: int) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(**{**consumer_kwargs(settings), "group_id": None})
    await consumer.start()
    try:
        meta = await consumer._client.fetch_all_metadata()
        consumer.assign([TopicPartition(settings.raw_topic, p)
                         for p in meta.partitions_for_topic(settings.raw_topic) or ()])
        seen = rows = 0
        clock = time.perf_counter
        spent = {"fetch": 0.0, "decode": 0.0, "parse": 0.0}
        started = clock()
        while seen < messages:
            began = clock()
            polled = await consumer.getmany(timeout_ms=500, max_records=settings.batch_max_events)
            fetched = clock()
            spent["fetch"] += fetched - began
            envelopes = [decode(rec.value)[1] for recs in polled.values() for rec in recs]
            decoded = clock()
            spent["decode"] += decoded - fetched
            for env in envelopes:
                body = orjson.loads(env["body"])
                rows += len(body.get("feeLst") or body.get("numInfo") or [1])
                seen += 1
            spent["parse"] += clock() - decoded
        elapsed = clock() - started
    finally:
        await consumer.stop()
    return {"messages": seen, "rows": rows, "seconds": round(elapsed, 3), "per_s": round(rows / elapsed),
            "stages_us_per_row": {k: round(v / rows * 1e6, 2) for k, v in spent.items()}}


# --- the callstream side, in its own process ------------------------------------------------------
async def child(settings: Settings, expected_rows: int, latency_calls: int, latency_rate: float) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry

    from consumers.runner import run_consumer
    from core import store

    def loaded() -> float:
        return sum(registry.get_sample_value("callstream_consumer_loaded_events_total", {"table": t}) or 0
                   for t in ROW_TABLES)

    from schemas.migrate import apply_migrations

    def vm(field: str) -> float:
        return _status_mb("self", field)

    python_only_mb = vm("VmRSS:")  # interpreter + callstream + aiokafka imported, chDB not opened yet
    tracing = tracemalloc.is_tracing()
    if tracing:  # Python's heap from here on: what the RSS above does not hold yet
        heap_at_start = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
    from consumers.load import without_dataframes

    without_dataframes()  # as run_consumer does before its migrations
    apply_migrations(settings, store.connect(settings))
    engine_floor_mb = vm("VmRSS:")  # plus the embedded chDB engine, before any consuming
    registry, stop, ready = CollectorRegistry(), asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_consumer(settings, stop, registry=registry, ready=ready))
    await asyncio.wait_for(ready.wait(), 60)
    started = time.perf_counter()
    cpu_before, threads_before = _cpu_seconds(), _thread_cpu_seconds()
    probe = store.connect(settings)  # the process's one client of the store (engine counters, RSS samples)
    events_before = engine_events(probe)
    sampler = RssSampler(probe)  # its own thread: it waits for the store, not the loop
    sampler.start()
    peak_sites: list[str] = []
    heap_high = 0
    while loaded() < expected_rows:
        if task.done():
            task.result()
        await asyncio.sleep(0.05)  # reading the registry costs the measured process CPU: not too often
        if tracing and (now := tracemalloc.get_traced_memory()[0]) > heap_high * 1.05:
            heap_high = now  # near the heap's peak: where the memory was allocated
            peak_sites = top_sites(tracemalloc.take_snapshot())
    elapsed = time.perf_counter() - started
    cpu_after, threads_after = _cpu_seconds(), _thread_cpu_seconds()
    split = sampler.finish()
    drained = loaded()
    events_after = engine_events(probe)
    heap = {}
    if tracing:  # what Python itself allocated (objects, buffers, numpy arrays), not the engine's heap
        heap = {"python_heap_at_start_mb": round(heap_at_start / 2**20, 1),
                "python_heap_peak_mb": round(tracemalloc.get_traced_memory()[1] / 2**20, 1),
                "arrow_pool_peak_mb": round(pyarrow.default_memory_pool().max_memory() / 2**20, 1),
                "python_heap_top_sites": peak_sites}
    worker_hwm = max((_status_mb(pid, "VmHWM:") for pid in _children()), default=0.0)
    stages = {}
    for metric in registry.collect():
        if metric.name == "callstream_consumer_stage_seconds":
            stages = {s.labels["stage"]: round(s.value / drained * 1e6, 2) for s in metric.samples
                      if s.name.endswith("_total")}

    batches = registry.get_sample_value("callstream_consumer_batch_size_events_count") or 0
    batch_events = round((registry.get_sample_value("callstream_consumer_batch_size_events_sum") or 0)
                         / max(batches, 1), 1)  # records per polled batch while draining

    prefix = f"lat{settings.consumer_group}-"  # apart from the latency calls of the other runs on this topic
    lat_messages, lat_rows = generate(latency_calls, seed=11, prefix=prefix)
    await produce(settings, lat_messages, rate=latency_rate)
    deadline = time.monotonic() + 60
    while loaded() < drained + lat_rows and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # reading the registry costs the measured process CPU: not too often
    stop.set()
    await task
    db = settings.clickhouse_database
    client = store.connect(settings)
    union = " UNION ALL ".join(
        f"SELECT received_at, loaded_at FROM {db}.{t} WHERE startsWith(session_id, '{prefix}')"
        for t in ("cdrs", "call_events"))
    q = store.query_rows(client, "SELECT quantiles(0.5, 0.99)(dateDiff('millisecond', received_at, loaded_at)), "
                                 f"count() FROM ({union})")[0]
    rss = vm("VmHWM:")
    return {
        "stages_us_per_row": dict(sorted(stages.items(), key=lambda kv: STAGE_ORDER.index(kv[0])
                                         if kv[0] in STAGE_ORDER else 99)),
        "rss_engine_peak_mb": round(split["engine"], 1), "rss_python_peak_mb": round(split["python"], 1),
        "rows": int(drained), "seconds": round(elapsed, 3), "per_s": round(drained / elapsed),
        "batches": int(batches), "mean_batch_events": batch_events,
        "latency_rows": int(q[1]), "latency_rate_msgs_per_s": latency_rate,
        "p50_ms": float(q[0][0]), "p99_ms": float(q[0][1]), "rss_mb": round(rss, 1),
        "engine_floor_rss_mb": round(engine_floor_mb, 1), "rss_above_engine_mb": round(rss - engine_floor_mb, 1),
        "rss_before_engine_mb": round(python_only_mb, 1),
        "engine_open_mb": round(engine_floor_mb - python_only_mb, 1),
        "cdrs": store.query_rows(client, f"SELECT count() FROM {db}.cdrs")[0][0],
        "cpu_us_per_row": {name: round((cpu_after[name] - cpu_before[name]) / drained * 1e6, 1) for name in cpu_after},
        "prepare_worker_rss_peak_mb": round(worker_hwm, 1),
        "consumer_threads_cpu_us_per_row": dict(sorted(
            ((name, round((cpu - threads_before.get(name, 0.0)) / drained * 1e6, 1))
             for name, cpu in threads_after.items() if cpu - threads_before.get(name, 0.0) > 0.01),
            key=lambda kv: -kv[1])),
        **heap,
        "engine_events_per_row": {name: round(per_row, 2) for name, value in events_after.items()
                                  if (per_row := (value - events_before.get(name, 0)) / drained) >= 0.01},
    }


def _stat_fields(path: Path) -> list[str]:
    """The fields of a /proc ``stat`` file after the command name (field 3 on: state, ppid, ...)."""
    return path.read_text().rsplit(")", 1)[1].split()


def _cpu_of(fields: list[str]) -> float:
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _children() -> list[int]:
    """This process's child processes (the prepare worker, multiprocessing's resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat_fields(entry / "stat")[1]) == os.getpid():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by this process (chDB's threads included) and by its children."""
    children = 0.0
    for pid in _children():
        try:
            children += _cpu_of(_stat_fields(Path(f"/proc/{pid}/stat")))
        except OSError:
            continue
    own = os.times()
    return {"consumer_process": own.user + own.system, "prepare_worker": children}


def _thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds of this process's threads by thread name (chDB names its pools; Python threads show
    as the interpreter's name unless named)."""
    found: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        found[name] = found.get(name, 0.0) + _cpu_of(stat.rsplit(")", 1)[1].split())
    return found


def _status_mb(pid: int | str, field: str) -> float:
    """A ``/proc/<pid>/status`` memory field (``VmRSS:``, ``VmHWM:``) in MB; 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


TRACE_ENV = "BENCH_CONSUMER_TRACE_HEAP"  # a child with it set runs under tracemalloc

STAGE_ORDER = ("fetch", "decode", "parse", "normalise", "enrich", "keys", "dedupe", "protect", "encode",
               "lookup", "publish", "insert", "quarantine", "commit", "wait")


def run(quick: bool, before_tree: Path | None = None) -> dict[str, Any]:
    calls = 4_000 if quick else 40_000
    messages, rows = generate(calls)
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        tag = uuid.uuid4().hex[:8]
        settings = Settings(kafka_bootstrap=broker.bootstrap, clickhouse_url=f"chdb://{tmp}/clickhouse",
                            clickhouse_database="bench", raw_topic=f"bench{tag}.raw",
                            dead_topic=f"bench{tag}.dead", cdrs_topic=f"bench{tag}.cdrs",
                            call_events_topic=f"bench{tag}.call_events",
                            number_status_topic=f"bench{tag}.number_status",
                            consumer_group=f"bench{tag}", consumer_metrics_port=0, topic_partitions=3,
                            number_pepper="bench-pepper-0123456789abcdef")
        asyncio.run(ensure_topics(settings))
        asyncio.run(produce(settings, messages))
        base = asyncio.run(baseline(settings, len(messages)))
        old = None
        if before_tree is not None:  # the code we started from, on the same backlog in the same run (first:
            old = _child(settings.model_copy(update={  # it reads the latency calls of the runs before it)
                "clickhouse_database": "bench_before", "consumer_group": f"bench{tag}.before",
                "cdrs_topic": f"bench{tag}.b.cdrs", "call_events_topic": f"bench{tag}.b.call_events",
                "number_status_topic": f"bench{tag}.b.number_status"}), rows, quick, before_tree)
        ours = _child(settings, rows, quick)
        # the same drain without the downstream topics, to show what re-publishing costs
        no_pub = _child(settings.model_copy(update={
            "republish": False, "clickhouse_database": "bench_nopub", "consumer_group": f"bench{tag}.nopub"}),
            rows, quick)
        # the same drain again with tracemalloc on (slower: its rate is not reported): Python's own heap
        traced = _child(settings.model_copy(update={
            "clickhouse_database": "bench_traced", "consumer_group": f"bench{tag}.traced",
            "cdrs_topic": f"bench{tag}.t.cdrs", "call_events_topic": f"bench{tag}.t.call_events",
            "number_status_topic": f"bench{tag}.t.number_status"}), rows, quick, trace_heap=True)
    ratio = ours["per_s"] / base["per_s"]
    python_side = python_side_mb(ours, traced)
    report = {
        "benchmark": "consumer", "quick": quick, "python": platform.python_version(), "cpus": _cpus(),
        "messages": len(messages), "rows": rows,
        "baseline_per_s": base["per_s"], "callstream_per_s": ours["per_s"], "ratio": round(ratio, 3),
        "p50_ms": ours["p50_ms"], "p99_ms": ours["p99_ms"], "rss_mb": ours["rss_mb"],
        "rss_embedded_engine_floor_mb": ours["engine_floor_rss_mb"],
        "rss_breakdown_mb": {
            "python_before_engine": ours["rss_before_engine_mb"],
            "opening_embedded_chdb": ours["engine_open_mb"],
            "growth_while_consuming": ours["rss_above_engine_mb"],
            "python_side_estimate": round(ours["rss_mb"] - ours["engine_open_mb"], 1),
        },
        "latency_phase": {"rate_msgs_per_s": ours["latency_rate_msgs_per_s"], "rows": ours["latency_rows"]},
        "targets": {"ratio_ge_0_5": ratio >= 0.5, "per_s_ge_50000": ours["per_s"] >= 50_000,
                    "rss_le_450_mb": ours["rss_mb"] <= 450,
                    "python_rss_le_150_mb": python_side["python"] <= 150,
                    "p99_le_2000_ms": ours["p99_ms"] <= 2000},
        "rss_split_peak_mb": python_side,
        # the split sampled from /proc/self/smaps (engine = chdb's mapping + MemoryTracking): it counts the
        # engine's untracked glibc heap (chDB allocates through glibc malloc) as Python's
        "rss_split_sampled_peak_mb": {"embedded_engine": ours.get("rss_engine_peak_mb"),
                                      "python": ours.get("rss_python_peak_mb")},
        "traced_heap_run": {k: traced.get(k) for k in ("python_heap_at_start_mb", "python_heap_peak_mb",
                                                       "arrow_pool_peak_mb", "rss_mb", "python_heap_top_sites")},
        "callstream_without_republish_per_s": no_pub["per_s"],
        "stages_us_per_row": ours.get("stages_us_per_row", {}),
        "baseline": base, "callstream": ours, "callstream_without_republish": no_pub,
    }
    if old is not None:
        report["before_same_run"] = {
            "git_ref": _git_ref(before_tree), "callstream_per_s": old["per_s"],
            "ratio": round(old["per_s"] / base["per_s"], 3),
            "speedup": round(ours["per_s"] / old["per_s"], 2), "p50_ms": old["p50_ms"], "p99_ms": old["p99_ms"],
            "rss_mb": old["rss_mb"], "detail": old}
    return report


def _git_ref(tree: Path | None) -> str:
    stamp = (tree / "GIT_REF") if tree is not None else None
    return stamp.read_text().strip() if stamp is not None and stamp.exists() else str(tree)


def _settings_json(settings: Settings) -> str:
    """The settings for a child process, secrets in clear (``model_dump_json`` writes them masked)."""
    data = settings.model_dump(mode="json")
    data.update({name: value.get_secret_value() for name in data
                 if isinstance(value := getattr(settings, name), SecretStr)})
    return json.dumps(data)


def _child(settings: Settings, rows: int, quick: bool, tree: Path | None = None,
           trace_heap: bool = False) -> dict[str, Any]:
    script = str(tree / "bench" / "consumer.py") if tree is not None else __file__
    cmd = [sys.executable, script, "--child", _settings_json(settings), str(rows),
           str(200 if quick else 1000), "500"]
    env = {**os.environ, TRACE_ENV: "1"} if trace_heap else None
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=tree or ROOT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"callstream run failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


_BEFORE_FIELDS = ("baseline_per_s", "callstream_per_s", "ratio", "callstream_without_republish_per_s", "p50_ms",
                  "p99_ms", "rss_mb", "messages", "rows", "quick")


def _before(ref: str | None) -> dict[str, Any] | None:
    """The figures to compare with: those committed at ``ref`` (default: keep the ``before`` of the current
    results file, else the figures of the commit that last changed it)."""
    if ref is None and RESULTS.exists():
        kept = json.loads(RESULTS.read_text()).get("before")
        if kept:
            return dict(kept)
    if ref is None:
        found = subprocess.run(["git", "log", "-1", "--format=%h", "--", str(RESULTS.relative_to(ROOT))],
                               cwd=ROOT, capture_output=True, text=True)
        ref = found.stdout.strip()
        if not ref:
            return None
    shown = subprocess.run(["git", "show", f"{ref}:{RESULTS.relative_to(ROOT)}"], cwd=ROOT, capture_output=True,
                           text=True)
    if shown.returncode != 0:
        raise SystemExit(f"no {RESULTS.relative_to(ROOT)} at git ref {ref}: {shown.stderr.strip()}")
    old = json.loads(shown.stdout)
    return {"git_ref": ref, **{k: old[k] for k in _BEFORE_FIELDS if k in old}}


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short run (CI smoke)")
    parser.add_argument("--before-ref", help="git ref whose results are recorded as the 'before' figures "
                        "(default: keep the current file's, else the commit that last changed it)")
    parser.add_argument("--before-tree", type=Path, help="a checkout of the code to compare with (e.g. `git archive "
                        "REF | tar -x -C DIR`, REF in DIR/GIT_REF): its consumer drains the same backlog in this run")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if os.environ.get(TRACE_ENV):
            tracemalloc.start()
        settings = Settings.model_validate_json(args.child[0])
        result = asyncio.run(child(settings, int(args.child[1]), int(args.child[2]), float(args.child[3])))
        print(json.dumps(result))
        return 0
    before = _before(args.before_ref)
    report = run(args.quick, args.before_tree)
    if before is not None:
        report["before"] = before
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"baseline   {report['baseline_per_s']:>9,} rows/s (consume + envelope decode + orjson)")
    print(f"callstream {report['callstream_per_s']:>9,} rows/s  ratio {report['ratio']:.2f}"
          f"  (without republish {report['callstream_without_republish_per_s']:,} rows/s)")
    print(f"receipt->row p50 {report['p50_ms']:.0f} ms  p99 {report['p99_ms']:.0f} ms   peak RSS {report['rss_mb']} MB"
          f" (embedded chDB alone {report['rss_embedded_engine_floor_mb']} MB)")
    base_stages = report["baseline"]["stages_us_per_row"]
    print("us per row  " + "  ".join(f"{k} {v:g}" for k, v in report["stages_us_per_row"].items())
          + f"   ({report['callstream'].get('batches', 0)} batches, {report['callstream'].get('mean_batch_events', 0)}"
          " records each on average)")
    print("  baseline  " + "  ".join(f"{k} {v:g}" for k, v in base_stages.items()))
    heap = report["traced_heap_run"]
    print(f"peak RSS split: embedded engine {report['rss_split_peak_mb']['embedded_engine']} MB, "
          f"Python {report['rss_split_peak_mb']['python']} MB (before the engine {report['callstream']['rss_before_engine_mb']}"
          f" + traced heap growth {heap['python_heap_peak_mb'] - heap['python_heap_at_start_mb']:.1f}"
          f" + Arrow pool {heap['arrow_pool_peak_mb']});  sampled from smaps: engine "
          f"{report['rss_split_sampled_peak_mb']['embedded_engine']}, rest {report['rss_split_sampled_peak_mb']['python']} MB")
    cpu = report["callstream"].get("cpu_us_per_row", {})
    print("CPU us per row  " + "  ".join(f"{k} {v:g}" for k, v in cpu.items())
          + f"   prepare worker peak RSS {report['callstream'].get('prepare_worker_rss_peak_mb', 0)} MB")
    threads = report["callstream"].get("consumer_threads_cpu_us_per_row", {})
    print("  consumer threads  " + "  ".join(f"{k} {v:g}" for k, v in threads.items()))
    print(f"targets: {report['targets']}")
    same = report.get("before_same_run")
    if same:
        print(f"before, same run ({same['git_ref']}): callstream {same['callstream_per_s']:,} rows/s, ratio "
              f"{same['ratio']}, p99 {same['p99_ms']:.0f} ms, peak RSS {same['rss_mb']} MB; speed-up {same['speedup']}x")
    if before is not None:
        print(f"before ({before.get('git_ref')}): baseline {before.get('baseline_per_s'):,} rows/s, callstream "
              f"{before.get('callstream_per_s'):,} rows/s, ratio {before.get('ratio')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

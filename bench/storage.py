"""ClickHouse storage per call, measured on the real DDL (the capacity model's storage figures).

    python bench/storage.py [--calls 20000] [--seed 7] [--data-dir DIR]

Generates realistic platform pushes (callstream.sim_calls: events, merged CDRs, number status), turns
them into raw envelopes exactly as the edge does (ingest.envelope.raw_record), runs them through the
consumer's CPU path (consumers.pipeline.Pipeline.prepare: normalise, protect, enrich, dedupe keys) and
inserts the rows into a fresh embedded store migrated with schemas/migrate.py. After OPTIMIZE FINAL
(merged parts, as they settle on a server) it reads compressed/uncompressed bytes per table from
system.parts and the largest columns from system.columns. Baselines in the same run: the raw JSON bodies
as received, and the same rows in a second database migrated only up to ``--before-version`` (default: every migration
before 0012_storage; ``--before-version 9`` is the schema before 0010_codecs, LZ4 everywhere), so the
"before" column of the storage table is measured, not remembered. Writes bench/results/storage.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiokafka.structs import ConsumerRecord  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from schemas import ROW_TABLES  # noqa: E402
from callstream.sim_calls import build_pushes, generate_calls  # noqa: E402
from consumers.load import ClickHouseSink  # noqa: E402
from consumers.metrics import ConsumerMetrics  # noqa: E402
from consumers.pipeline import Pipeline  # noqa: E402
from core import store  # noqa: E402
from core.settings import Settings  # noqa: E402
from ingest.envelope import Receipt, raw_record  # noqa: E402
from ingest.notification import classify  # noqa: E402
from schemas.migrate import apply_migrations, discover  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "storage.json"
BATCH = 5000


def raw_records(calls: int, seed: int) -> tuple[list[ConsumerRecord], int]:
    """Envelopes of every push for ``calls`` simulated calls (no duplicates, no bad inputs)."""
    plan = build_pushes(generate_calls(seed, calls), seed, bad_fraction=0.0, duplicate_fraction=0.0)
    start = datetime.now(UTC) - timedelta(hours=1)
    records: list[ConsumerRecord] = []
    body_bytes = 0
    for offset, push in enumerate(plan.pushes):
        if not push.expect_ok:
            continue
        event_type = classify(push.service, push.body).event_type
        receipt = Receipt(uuid.uuid4().hex, start + timedelta(milliseconds=offset), push.service, push.path,
                          "application/json", "10.0.0.1")
        value = raw_record(receipt, push.body, event_type, push.app_key, "aksk")
        body_bytes += len(push.body)
        records.append(ConsumerRecord("bench.raw", 0, offset, 0, 0, None, value, None, 0, len(value), ()))
    return records, body_bytes


def load(
    settings: Settings, records: list[ConsumerRecord], timings: dict[str, float] | None = None,
    upto: int | None = None,
) -> dict[str, int]:
    """Migrate (up to version ``upto``), then prepare and insert ``records`` in consumer-sized batches;
    ``timings`` gets CPU seconds."""
    client = store.connect(settings)
    apply_migrations(settings, client, upto=upto)
    sink = ClickHouseSink(client, settings.clickhouse_database)
    pipeline = Pipeline(settings, sink, None, ConsumerMetrics(CollectorRegistry()))
    loaded = dict.fromkeys(ROW_TABLES, 0)
    timings = timings if timings is not None else {}
    timings.setdefault("prepare_s", 0.0)
    timings.setdefault("insert_s", 0.0)
    for start in range(0, len(records), BATCH):
        began = time.process_time()
        batch = pipeline.prepare(records[start:start + BATCH])
        middle = time.process_time()
        for table in ROW_TABLES:
            loaded[table] += sink.insert(table, batch.tables[table])
        timings["prepare_s"] += middle - began
        timings["insert_s"] += time.process_time() - middle
    with store.locked(client):
        for table in ROW_TABLES:
            client.command(f"OPTIMIZE TABLE {settings.clickhouse_database}.{table} FINAL")
    return loaded


def measure(settings: Settings) -> dict[str, Any]:
    client = store.connect(settings)
    db = settings.clickhouse_database
    tables: dict[str, Any] = {}
    projected = dict(store.query_rows(  # a projection's bytes are not in its parent part's data_compressed_bytes
        client, "SELECT table, sum(data_compressed_bytes) FROM system.projection_parts "
        "WHERE database = {db:String} AND active GROUP BY table", {"db": db}))
    for table, rows, compressed, uncompressed, on_disk in store.query_rows(
        client,
        "SELECT table, sum(rows), sum(data_compressed_bytes), sum(data_uncompressed_bytes), sum(bytes_on_disk) "
        "FROM system.parts WHERE database = {db:String} AND active GROUP BY table",
        {"db": db},
    ):
        if table not in ROW_TABLES:
            continue
        top = store.query_rows(
            client,
            "SELECT name, data_compressed_bytes FROM system.columns WHERE database = {db:String} "
            "AND table = {t:String} ORDER BY data_compressed_bytes DESC LIMIT 6",
            {"db": db, "t": table},
        )
        projection = int(projected.get(table, 0))
        tables[table] = {
            "rows": int(rows),
            "compressed_bytes_per_row": round(int(compressed) / max(1, int(rows)), 1),
            "projection_compressed_bytes_per_row": round(projection / max(1, int(rows)), 1),
            "compressed_bytes_per_row_with_projections": round((int(compressed) + projection) / max(1, int(rows)), 1),
            "compressed_bytes": int(compressed),
            "uncompressed_bytes": int(uncompressed),
            "bytes_on_disk": int(on_disk),
            "bytes_per_row": round(int(on_disk) / max(1, int(rows)), 1),
            "compression_ratio": round(int(uncompressed) / max(1, int(compressed)), 2),
            "largest_columns_bytes": {str(name): int(size) for name, size in top},
        }
    return tables


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="2 000 calls (smoke run)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data-dir", default=None, help="store directory (default: a temporary one)")
    latest = next(m.version for m in discover() if m.name == "storage")
    parser.add_argument("--before-version", type=int, default=latest - 1,
                        help=f"baseline schema: apply migrations up to this number only (default {latest - 1}: "
                             "every migration before 0012_storage)")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args(argv)
    if args.quick:
        args.calls = 2_000

    with tempfile.TemporaryDirectory(prefix="callstream-storage-") as tmp:
        data_dir = Path(args.data_dir or tmp)
        common = {"data_dir": data_dir, "auth": "off", "number_pepper": "storage-bench-pepper", "republish": False}
        settings = Settings(clickhouse_database="storage_bench", **common)
        before_settings = Settings(clickhouse_database="storage_before", **common)
        began = time.perf_counter()
        records, body_bytes = raw_records(args.calls, args.seed)
        before_timings: dict[str, float] = {}
        load(before_settings, records, before_timings, upto=args.before_version)
        before = measure(before_settings)
        timings: dict[str, float] = {}
        loaded = load(settings, records, timings)
        tables = measure(settings)
        store.close_all()
        elapsed = time.perf_counter() - began

    calls = args.calls
    per_call = {t: round(tables[t]["rows"] / calls, 3) for t in tables}
    bytes_per_call = sum(tables[t]["bytes_on_disk"] for t in tables) / calls
    result = {
        "calls": calls,
        "pushes": len(records),
        "rows_loaded": loaded,
        "rows_per_call": per_call,
        "tables": tables,
        "bytes_on_disk_per_call": round(bytes_per_call, 1),
        "gb_per_million_calls": round(bytes_per_call * 1e6 / 1e9, 3),
        "consumer_prepare_cpu_s": round(timings["prepare_s"], 2),
        "consumer_prepare_pushes_per_cpu_s": round(len(records) / max(timings["prepare_s"], 1e-9)),
        "embedded_insert_cpu_s": round(timings["insert_s"], 2),
        "embedded_insert_cpu_ratio_vs_before": round(timings["insert_s"] / max(before_timings["insert_s"], 1e-9), 2),
        "cdr_compressed_bytes": tables["cdrs"]["compressed_bytes_per_row"],
        "cdr_compressed_bytes_with_projections": tables["cdrs"]["compressed_bytes_per_row_with_projections"],
        "before": {
            "schema": f"migrations up to {args.before_version:04d}",
            "cdr_compressed_bytes": before["cdrs"]["compressed_bytes_per_row"],
            "cdr_compressed_bytes_with_projections": before["cdrs"]["compressed_bytes_per_row_with_projections"],
            "cdr_bytes_on_disk": before["cdrs"]["bytes_per_row"],
            "bytes_on_disk_per_call": round(sum(before[t]["bytes_on_disk"] for t in before) / calls, 1),
            "embedded_insert_cpu_s": round(before_timings["insert_s"], 2),
            "tables": before,
        },
        "baseline_raw_json_bytes_per_call": round(body_bytes / calls, 1),
        "baseline_raw_json_gb_per_million_calls": round(body_bytes / calls * 1e6 / 1e9, 3),
        "setup": {
            "seed": args.seed,
            "engine": "chDB (embedded ClickHouse), every migration (codecs of 0010_codecs, ALIAS ids of 0012_storage), after OPTIMIZE FINAL",
            "python": platform.python_version(),
            "elapsed_s": round(elapsed, 1),
            "notes": "one replica; multiply by the replica count for cluster storage. Rows keep the raw "
                     "JSON column (numbers hashed by the default protection policy).",
        },
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{calls} calls, {len(records)} pushes -> rows {loaded}")
    for table, info in tables.items():
        old = before.get(table, {})
        print(f"  {table:<14} {info['rows']:>8} rows  {info['compressed_bytes_per_row']:>7} B/row compressed "
              f"(before {old.get('compressed_bytes_per_row')}), "
              f"{info['compressed_bytes_per_row_with_projections']} with its projections "
              f"(before {old.get('compressed_bytes_per_row_with_projections')})  {info['bytes_per_row']:>7} B/row on disk "
              f"(before {old.get('bytes_per_row')})  x{info['compression_ratio']} compression")
    print(f"  {bytes_per_call:.0f} B per call on disk = {result['gb_per_million_calls']} GB per million calls "
          f"(raw JSON as received: {result['baseline_raw_json_gb_per_million_calls']} GB)")
    print(f"  consumer CPU path (decode..dedupe keys): {result['consumer_prepare_pushes_per_cpu_s']} pushes per CPU-s")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

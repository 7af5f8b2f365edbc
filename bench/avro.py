"""Avro micro-benchmark: each hand-written fast path in schemas/ against fastavro, in the same run.

    python bench/avro.py [--records 20000] [--repeats 7]

Paths measured (the baseline is what the code does without its fast path, i.e. fastavro through
``schemas.avro_codec``):
  raw_envelope write  schemas.avro_envelope.encode_raw_envelope  vs  avro_codec.encode("raw_envelope")
  raw_envelope read   schemas.avro_envelope.read_raw_envelope    vs  fastavro.schemaless_reader into the same
                      tuple (received_at read as a plain long, so fastavro builds no datetime either): the
                      C reader when it is built, and ``_python`` the Python reader (read_raw_envelope_py)
  <schema> rows       schemas.avro_rows.row_encoder(<schema>, as_text=("dedup_key",))  vs  avro_codec.encode
                      with the int dedup_key turned to text first (cdr, call_event, number_status): the C
                      writer (schemas/_avro_rows.c) when it is built, and ``_python`` its Python writer
Inputs are realistic: envelopes of the shipped sample pushes, rows whose coded fields repeat and whose keys
do not. Each figure is the best of ``--repeats`` interleaved rounds (fast, then baseline), in ns per record;
``speedup`` = baseline / fast. Every fast result is checked byte for byte (or field for field) against
fastavro before timing. Writes bench/results/avro.json; exits 1 if any fast path is not faster.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import fastavro  # noqa: E402

from schemas.avro_codec import decode, encode, schema_json  # noqa: E402
from schemas.avro_envelope import encode_raw_envelope, read_raw_envelope, read_raw_envelope_py  # noqa: E402
from schemas import avro_envelope, avro_rows  # noqa: E402
from schemas.avro_rows import row_encoder  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "avro.json"
SAMPLES = ROOT / "tests" / "samples"
ROW_SCHEMAS = ("cdr", "call_event", "number_status")
CODED = ["", "voice", "privacy", "answer", "Normal call clearing", "16", "CALLER", "+8675528000001"]


def _bodies() -> list[bytes]:
    found = sorted(SAMPLES.rglob("*.json"))
    return [path.read_bytes() for path in found] or [b'{"eventType":"answer","statusInfo":{}}']


def envelope_fields(count: int, rng: random.Random) -> list[dict[str, Any]]:
    bodies = _bodies()
    start = datetime(2024, 3, 12, 2, 30, tzinfo=UTC)
    out = []
    for n in range(count):
        service = "privacy" if n % 3 else "voice"
        out.append({
            "id": f"{rng.getrandbits(128):032x}", "received_at": start + timedelta(microseconds=n * 137),
            "service": service, "path": f"/notify/{service}",
            "event_type": rng.choice(["answer", "fee", "disconnect"]),
            "app_key": f"app{n % 4}", "auth_scheme": "aksk", "content_type": "application/json;charset=UTF-8",
            "remote_addr": f"10.0.0.{n % 8}", "body": bodies[n % len(bodies)],
        })
    return out


def _value(field: dict[str, Any], n: int, rng: random.Random) -> Any:
    kind, name = field["type"], field["name"]
    if isinstance(kind, list):
        return None if rng.random() < 0.3 else rng.randrange(0, 4000)
    if isinstance(kind, dict) and kind.get("logicalType") == "date":
        return 19_794 + n // 5000
    if isinstance(kind, dict):
        millis = 1_710_200_000_000 + n * 250
        return millis if kind.get("logicalType") == "timestamp-millis" else millis * 1000 + n % 1000
    if kind == "string":
        if name == "dedup_key":
            return rng.getrandbits(64)
        if name == "raw":
            return f'{{"sessionId":"{n}","fee":{rng.randrange(1000)}}}'
        if "id" in name or "session" in name or "number" in name:
            return f"{name}-{n}-{rng.getrandbits(40):x}"
        return rng.choice(CODED)
    if kind == "int":
        return rng.randrange(0, 600)
    return rng.randrange(0, 2**40)


def rows(schema: str, count: int, rng: random.Random) -> list[dict[str, Any]]:
    fields = schema_json(schema)["fields"]
    return [{f["name"]: _value(f, n, rng) for f in fields} for n in range(count)]


def _time(call: Callable[[Any], Any], items: list[Any]) -> float:
    started = time.perf_counter_ns()
    for item in items:
        call(item)
    return (time.perf_counter_ns() - started) / len(items)


def compare(
    fast: Callable[[Any], Any], baseline: Callable[[Any], Any], items: list[Any], repeats: int,
) -> dict[str, float]:
    fast_ns, base_ns = [], []
    for _ in range(repeats):
        fast_ns.append(_time(fast, items))
        base_ns.append(_time(baseline, items))
    best_fast, best_base = min(fast_ns), min(base_ns)
    return {"fast_ns": round(best_fast, 1), "fastavro_ns": round(best_base, 1),
            "speedup": round(best_base / best_fast, 2)}


def fastavro_envelope_reader() -> Callable[[bytes], tuple[Any, ...]]:
    """fastavro reading a raw envelope into ``read_raw_envelope``'s tuple, at its fastest."""
    schema = copy.deepcopy(schema_json("raw_envelope"))
    for field in schema["fields"]:
        if field["name"] == "received_at":
            field["type"] = "long"  # same bytes; no datetime built
    parsed = fastavro.parse_schema(schema)
    reader, buffer = fastavro.schemaless_reader, io.BytesIO

    def read(payload: bytes) -> tuple[Any, ...]:
        return tuple(reader(buffer(payload[10:]), parsed, None).values())  # type: ignore[union-attr]

    return read


def run(records: int, repeats: int, seed: int = 7) -> dict[str, Any]:
    rng = random.Random(seed)
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    results: dict[str, dict[str, float]] = {}

    envelopes = envelope_fields(records, rng)
    payloads = [encode_raw_envelope(**e) for e in envelopes]
    assert payloads == [encode("raw_envelope", e) for e in envelopes], "raw_envelope bytes differ from fastavro"
    results["raw_envelope_write"] = compare(lambda e: encode_raw_envelope(**e),
                                            lambda e: encode("raw_envelope", e), envelopes, repeats)
    generic_read = fastavro_envelope_reader()
    assert [read_raw_envelope(p) for p in payloads] == [generic_read(p) for p in payloads], "fields differ"
    assert decode(payloads[0])[1]["id"] == envelopes[0]["id"]
    assert [read_raw_envelope_py(p) for p in payloads] == [generic_read(p) for p in payloads], "Python reader differs"
    results["raw_envelope_read"] = compare(read_raw_envelope, generic_read, payloads, repeats)  # C when built
    results["raw_envelope_read_python"] = compare(read_raw_envelope_py, generic_read, payloads, repeats)

    for schema in ROW_SCHEMAS:
        batch = rows(schema, records, rng)
        fast = row_encoder(schema, as_text=("dedup_key",))

        def baseline(row: dict[str, Any], schema: str = schema) -> bytes:
            return encode(schema, {**row, "dedup_key": str(row["dedup_key"])})

        python_writer = row_encoder(schema, as_text=("dedup_key",), compiled=False)
        assert [fast(r) for r in batch] == [baseline(r) for r in batch], f"{schema} bytes differ from fastavro"
        assert [python_writer(r) for r in batch] == [baseline(r) for r in batch], f"{schema} Python writer differs"
        results[f"{schema}_rows_write"] = compare(fast, baseline, batch, repeats)  # the C writer when built
        results[f"{schema}_rows_write_python"] = compare(python_writer, baseline, batch, repeats)

    return {
        "paths": results,
        "all_faster": all(r["speedup"] > 1.0 for r in results.values()),
        "setup": {
            "records": records, "repeats": repeats, "fastavro": fastavro.__version__,
            "c_writer_built": avro_rows.write_row is not None,
            "c_reader_built": avro_envelope._read_envelope_c is not None,
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "loadavg_before": load_before, "loadavg_after": Path("/proc/loadavg").read_text().split()[:3],
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    report = run(args.records, args.repeats)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    for path, figures in report["paths"].items():
        print(f"{path:22s} fast {figures['fast_ns']:8.0f} ns   fastavro {figures['fastavro_ns']:8.0f} ns   "
              f"x{figures['speedup']:.2f}")
    setup = report["setup"]
    print(f"machine load           {' '.join(setup['loadavg_before'])} before, "
          f"{' '.join(setup['loadavg_after'])} after ({setup['cpus']} cpus)")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0 if report["all_faster"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

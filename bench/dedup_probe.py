"""The loader's "already stored?" probe against a large ``cdrs``: its time per batch as the table grows.

    python bench/dedup_probe.py --data-dir DIR [--repeat 3]

DIR is a store that ``bench/analytics.py --data-dir DIR`` filled (database ``analytics_bench``, 10 M CDRs
by default). For a batch of 5,000 keys of which 0, 50, 500 or 2,500 are stored CDRs (a fresh batch, a few
re-pushes, many, a redelivered batch), it times ``ClickHouseSink.stored_notifications`` (the query the
consumer runs once per batch before it inserts) and reads from EXPLAIN how many granules the
bloom-filter index on ``dedup_key`` left to read. The baseline is the same probe against a copy of the
first 200,000 CDRs (about the table bench/consumer.py loads into), in the same run, and the probe as it
was before 0016_raw_digest (the digest computed from the stored ``raw``), on the same keys. Prints the
figures; writes nothing. Run ``ALTER TABLE analytics_bench.cdrs MATERIALIZE COLUMN raw_digest`` on a
store generated before 0016 (its parts compute the digest from ``raw`` until then).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.analytics import best_of  # noqa: E402
from consumers.load import ClickHouseSink  # noqa: E402
from core import store  # noqa: E402
from core.settings import Settings  # noqa: E402

DB = "analytics_bench"
SMALL = "dedup_probe_small"
BATCH = 5_000
STORED = (0, 50, 500, 2_500)  # keys of the batch that are stored CDRs


def granules_left(sink: ClickHouseSink, database: str, keys: list[int]) -> str:
    """``read/total`` granules after the skip index, for the probe of ``keys``."""
    listed = ",".join(map(str, keys))
    plan = store.query_rows(sink.client, f"EXPLAIN indexes = 1 SELECT dedup_key FROM {database}.cdrs "
                                         f"WHERE dedup_key IN [{listed}]")
    lines = [str(row[0]).strip() for row in plan if "Granules:" in str(row[0])]
    return lines[-1].removeprefix("Granules: ") if lines else "?"


def probe_ms(sink: ClickHouseSink, keys: list[int], repeat: int) -> float:
    return best_of(repeat, lambda: sink.stored_notifications({"cdrs": keys})) * 1000


def probe_from_raw_ms(sink: ClickHouseSink, database: str, keys: list[int], repeat: int) -> float:
    """The probe as it was before 0016_raw_digest: the digest computed from the stored ``raw``."""
    sql = (f"SELECT dedup_key, any(notification_id), any(hex(MD5(raw))) FROM {database}.cdrs "
           "WHERE dedup_key IN {keys:Array(UInt64)} GROUP BY dedup_key")
    return best_of(repeat, lambda: store.query_rows(sink.client, sql, {"keys": store.uint64_array(keys)})) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="a store bench/analytics.py filled")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if not (Path(args.data_dir) / "clickhouse").is_dir():
        raise SystemExit(f"{args.data_dir} holds no store: run bench/analytics.py --data-dir {args.data_dir} first")
    settings = Settings(data_dir=Path(args.data_dir), clickhouse_database=DB, auth="off", republish=False)
    client = store.connect(settings)
    with store.locked(client):
        total = int(client.command(f"SELECT count() FROM {DB}.cdrs"))
        client.command(f"DROP DATABASE IF EXISTS {SMALL}")
        client.command(f"CREATE DATABASE {SMALL}")
        client.command(f"CREATE TABLE {SMALL}.cdrs AS {DB}.cdrs")
        client.command(f"INSERT INTO {SMALL}.cdrs SELECT * FROM {DB}.cdrs LIMIT 200000")
        client.command(f"OPTIMIZE TABLE {SMALL}.cdrs FINAL")
    big, small = ClickHouseSink(client, DB), ClickHouseSink(client, SMALL)
    rng = random.Random(args.seed)
    try:
        for stored in STORED:
            stored_big = [int(r[0]) for r in store.query_rows(
                client, f"SELECT dedup_key FROM {DB}.cdrs ORDER BY rand({args.seed}) LIMIT {stored}")]
            stored_small = [int(r[0]) for r in store.query_rows(
                client, f"SELECT dedup_key FROM {SMALL}.cdrs ORDER BY rand({args.seed}) LIMIT {stored}")]
            fresh = [rng.getrandbits(64) for _ in range(BATCH - stored)]
            keys_big, keys_small = sorted(stored_big + fresh), sorted(stored_small + fresh)
            small_ms, big_ms = probe_ms(small, keys_small, args.repeat), probe_ms(big, keys_big, args.repeat)
            before_ms = probe_from_raw_ms(big, DB, keys_big, args.repeat)
            print(f"  {BATCH} keys, {stored:>5} stored   200 k CDRs {small_ms:8.1f} ms "
                  f"({granules_left(small, SMALL, keys_small)} granules)   {total / 1e6:.0f} M CDRs {big_ms:8.1f} ms "
                  f"({granules_left(big, DB, keys_big)} granules)   x{big_ms / small_ms:6.1f}   "
                  f"digest from raw (before 0016) {before_ms:8.1f} ms  x{before_ms / big_ms:5.1f}", flush=True)
    finally:
        with store.locked(client):
            client.command(f"DROP DATABASE IF EXISTS {SMALL}")
        store.close_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())

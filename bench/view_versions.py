"""Two migrations' definitions of the KPI views over the same rollups, timed side by side.

    python bench/view_versions.py --data-dir DIR [--old 14] [--new 15] [--repeat 7]

DIR is a store that ``bench/analytics.py --data-dir DIR`` filled (database ``analytics_bench``). The
CREATE OR REPLACE VIEW statements of migration ``--old`` and of ``--new`` are created in the databases
``views_<old>`` and ``views_<new>``, both reading the rollups of ``analytics_bench``; each view is then
timed for one app and one day and for the whole range (the queries of bench/analytics.py), the two
versions alternating so that load affects both alike. Engine time: FORMAT Null, min of ``--repeat``.
Writes nothing; prints one line per query with both times and their ratio.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from clickhouse_connect.driver.client import Client  # noqa: E402
from clickhouse_connect.driver.exceptions import DatabaseError  # noqa: E402

from bench.analytics import VIEWS, create_views, engine_timed, first_day, queries  # noqa: E402
from core import store  # noqa: E402
from core.settings import Settings  # noqa: E402
from schemas.migrate import discover  # noqa: E402

DB = "analytics_bench"


def create_version(client: Client, version: int) -> str:
    """The views of migration ``version`` in database ``views_<version>``; its name."""
    target = f"views_{version}"
    migration = next((m for m in discover() if m.version == version), None)
    if migration is None:
        raise SystemExit(f"no migration {version} in schemas/clickhouse")
    if not create_views(client, DB, [migration], target):
        raise SystemExit(f"migration {version} defines no view (CREATE OR REPLACE VIEW)")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="a store bench/analytics.py filled")
    parser.add_argument("--old", type=int, default=14)
    parser.add_argument("--new", type=int, default=15)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--days", type=int, default=30, help="as given to bench/analytics.py")
    args = parser.parse_args(argv)
    path = Path(args.data_dir) / "clickhouse"
    if not path.is_dir():
        raise SystemExit(f"{path} is not a store: run bench/analytics.py --data-dir {args.data_dir} first")
    client = store.connect(Settings(data_dir=Path(args.data_dir), clickhouse_database=DB, auth="off", republish=False))
    old, new = create_version(client, args.old), create_version(client, args.new)
    day = first_day(args.days) + timedelta(days=args.days // 2)
    sql = queries("{db}", "bench-app-0", day)
    for view in VIEWS:
        for scope, text in sql[view].items():
            try:
                times = {old: float("inf"), new: float("inf")}
                for _ in range(args.repeat):
                    for db, best in times.items():
                        times[db] = min(best, engine_timed(client, text.replace("{db}", db), 1))
            except DatabaseError as exc:  # a view one of the migrations does not define
                print(f"  {view:<20} {scope:<16} skipped: {str(exc).splitlines()[0][:100]}")
                continue
            print(f"  {view:<20} {scope:<16} {args.old:04d} {times[old] * 1000:8.1f} ms   "
                  f"{args.new:04d} {times[new] * 1000:8.1f} ms   x{times[old] / times[new]:5.2f}", flush=True)
    store.close_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())

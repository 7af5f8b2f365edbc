"""The ``callstream`` command line. Each subcommand parses its flags here and calls one function
``main(args, settings) -> int`` in the module that does the work (imported lazily, so ``--help`` is fast).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from core.errors import CallstreamError
from core.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]


def _lazy(target: str) -> Handler:
    module_name, _, func_name = target.partition(":")

    def handler(args: argparse.Namespace, settings: Settings) -> int:
        func: Handler = getattr(importlib.import_module(module_name), func_name)
        return func(args, settings)

    return handler


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callstream",
        description="Huawei Cloud telephony notifications -> Kafka -> ClickHouse. "
        "Settings come from CALLSTREAM_* environment variables; flags override them.",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, target: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=_lazy(target))
        return p

    # --- up: the whole embedded stack --------------------------------------------------------
    p = command("up", "callstream.stack:main", "Start broker, edge, consumer, embedded ClickHouse and SQL endpoint.")
    p.epilog = ("Data lives under --data-dir: clickhouse/ (loaded rows), objectstore/ (the durable broker: raw and "
                "dead-letter topics, consumer offsets), credentials, *.log. Every port is a flag; a port in use is "
                "refused at start naming its flag. Two stacks on one host: give each its own --data-dir and ports. "
                "A full or read-only data dir makes the edge answer 503 (never a 200 it cannot keep) and is logged.")
    p.add_argument("--data-dir", help="where the embedded store, the broker's data and local credentials live "
                   "(default ./callstream-data)")
    p.add_argument("--host", default=None, help="edge bind address (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=None, help="edge port (default 8080)")
    p.add_argument("--query-port", type=int, default=None, help="ClickHouse-compatible SQL endpoint port (default 8123)")
    p.add_argument("--metrics-port", type=int, default=None, help="consumer metrics port (default 9108; 0 = off)")
    p.add_argument("--broker", choices=["durable", "memory"], default=None,
                   help="embedded broker: durable (default; Tansu on a local S3 store under DATA_DIR/objectstore, "
                   "survives kill -9 and restarts) or memory (faster; everything not yet loaded is lost on a stop)")
    p.add_argument("--broker-port", type=int, default=None, help="embedded broker (Kafka) port, 127.0.0.1 "
                   "(default: a free one)")
    p.add_argument("--object-store-port", type=int, default=None, help="S3 port of the durable broker's object "
                   "store, 127.0.0.1 (default: a free one; its internal ports are picked free and kept)")
    p.add_argument("--kafka-bootstrap", help="use this Kafka cluster instead of the embedded broker")
    p.add_argument("--clickhouse-url", help="use this ClickHouse server instead of the embedded engine")

    # --- edge ----------------------------------------------------------------------------------
    p = command("edge", "ingest.server:main", "Run the HTTP edge that receives Huawei pushes.")
    p.add_argument("--host", default=None, help="bind address (default CALLSTREAM_EDGE_HOST or 0.0.0.0)")
    p.add_argument("--port", type=int, default=None, help="port (default CALLSTREAM_EDGE_PORT or 8080)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1)")
    p.add_argument("--tls-cert", default=None, help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--tls-key", default=None, help="private key for --tls-cert (PEM)")

    # --- consume -------------------------------------------------------------------------------
    p = command("consume", "consumers.runner:main", "Consume the raw topic and load ClickHouse (and downstream topics).")
    p.add_argument("--group", default=None, help="consumer group (default callstream-loader)")
    p.add_argument("--metrics-port", type=int, default=None, help="Prometheus port (default 9108; 0 = off)")
    p.add_argument("--no-migrate", action="store_true", help="do not apply pending migrations at start")

    # --- migrate -------------------------------------------------------------------------------
    p = command("migrate", "schemas.migrate:main", "Apply the versioned ClickHouse DDL in schemas/clickhouse.")
    p.add_argument("--cluster", default=None, help="emit Replicated/Distributed DDL ON CLUSTER NAME")
    p.add_argument("--dry-run", action="store_true", help="print the statements instead of applying them")
    p.add_argument("--rebuild-rollups", action="store_true",
                   help="refill the KPI rollups from the stored CDRs (idempotent; stop the loaders first)")

    # --- simulate ------------------------------------------------------------------------------
    p = command("simulate", "callstream.simulate:main", "Drive an edge the way the Huawei platform does.")
    p.add_argument("--url", default=None, help="edge base URL (default http://127.0.0.1:8080)")
    p.add_argument("--count", type=int, default=None, help="number of calls to simulate")
    p.add_argument("--rate", type=float, default=None, help="calls per second (default as fast as allowed)")
    p.add_argument("--duration", type=float, default=None, help="seconds to run (instead of --count)")
    p.add_argument("--seed", type=int, default=None, help="random seed (reproducible runs)")
    p.add_argument("--mix", default=None, help="service mix, e.g. voice=0.5,privacy=0.5")
    p.add_argument("--bad-fraction", type=float, default=None, help="fraction of bad inputs")
    p.add_argument("--duplicate-fraction", type=float, default=None, help="fraction of pushes sent twice")
    p.add_argument("--retry-scale", type=float, default=None, help="compress the re-push schedule (e.g. 0.001)")
    p.add_argument("--data-dir", default=None, help="read local credentials / store from this data dir")
    p.add_argument("--verify", action="store_true", help="check the store holds exactly what was sent")
    p.add_argument("--verify-timeout", type=float, default=None, help="seconds to wait for loading (default 60)")

    # --- sql -----------------------------------------------------------------------------------
    p = command("sql", "callstream.sql:main", "Run SQL on the store (through a running `up`, else directly).")
    p.add_argument("query", help="SQL text, e.g. \"SELECT count() FROM callstream.cdrs\"")
    p.add_argument("--data-dir", default=None, help="data dir of the embedded store")
    p.add_argument("--format", default="PrettyCompact", help="ClickHouse output format (default PrettyCompact)")

    # --- top: the dashboard in the terminal ----------------------------------------------------
    p = command("top", "callstream.top:main", "Show the dashboard's live figures and KPIs of a running `up`.")
    p.add_argument("--data-dir", default=None, help="data dir of the running `up` (default ./callstream-data)")
    p.add_argument("--day", default=None, help="UTC day of the KPIs, YYYY-MM-DD (default: the latest with calls)")
    p.add_argument("--every-s", type=float, default=2.0, help="seconds between refreshes (default 2)")
    p.add_argument("--once", action="store_true", help="print one screen and exit")

    # --- bench ---------------------------------------------------------------------------------
    p = command("bench", "callstream.bench_cmd:main", "Run the benchmarks and print figures against their baselines.")
    p.add_argument("names", nargs="*", help="edge, consumer, e2e, scaling, storage (default: all)")
    p.add_argument("--quick", action="store_true", help="short runs (CI smoke)")

    # --- reconcile -----------------------------------------------------------------------------
    p = command("reconcile", "callstream.reconcile:main", "Compare accepted, loaded and quarantined per hour and app.")
    p.add_argument("--hours", type=int, default=24, help="look back this many hours (default 24)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--grace-s", type=float, default=10.0, help="ignore pushes newer than this (in flight; default 10)")
    p.add_argument("--metrics-port", type=int, default=None, help="serve the reconcile gauges here and repeat")
    p.add_argument("--every-s", type=float, default=60.0, help="with --metrics-port: seconds between runs")

    # --- replay --------------------------------------------------------------------------------
    p = command("replay", "callstream.replay:main", "Re-drive dead letters or raw-topic ranges through the pipeline.")
    p.add_argument("source", choices=["dead", "failed", "raw"], help="what to replay")
    p.add_argument("--since", default=None, help="ISO time lower bound")
    p.add_argument("--until", default=None, help="ISO time upper bound")
    p.add_argument("--app", default=None, help="only this appKey")
    p.add_argument("--reason", default=None, help="only this reason")
    p.add_argument("--id", default=None, help="only this notification id")
    p.add_argument("--partition", type=int, default=None, help="raw: partition")
    p.add_argument("--from-offset", type=int, default=None, help="raw: first offset")
    p.add_argument("--to-offset", type=int, default=None, help="raw: last offset (inclusive)")
    p.add_argument("--dry-run", action="store_true", help="list what would be replayed")

    # --- schemas / topics / erase ------------------------------------------------------------
    p = command("schemas", "callstream.schemas_cmd:main", "Print the Avro schemas with their fingerprints.")
    p.add_argument("name", nargs="?", default=None, help="one schema name (default: all)")

    p = command("topics", "callstream.topics:main", "Create or describe callstream's Kafka topics.")
    p.add_argument("--create", action="store_true", help="create missing topics with production configs")

    p = command("erase", "callstream.erase:main", "Delete a subscriber's rows from every table (right to erasure).")
    p.add_argument("--number", required=True, help="phone number as it arrives, e.g. +8613800000021")
    p.add_argument("--data-dir", default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request is noise here
    overrides = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    try:
        settings = Settings(**overrides)
        handler: Handler = args.handler
        return handler(args, settings)
    except CallstreamError as exc:
        print(f"callstream {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

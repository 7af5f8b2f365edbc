"""``callstream edge``: serve the edge app with uvicorn (uvloop + httptools).

Graceful shutdown on SIGTERM/SIGINT: uvicorn stops accepting, lets in-flight requests finish (at most
``shutdown_grace_s``), then the app's lifespan flushes and closes the producer.

With ``--workers N`` each worker has its own producer and its own replay (nonce) cache, so a replay that
lands on another worker is not caught there; run one worker per container and scale out instead when
replay protection matters (the digest never covers the body, dedup downstream still holds).
"""

from __future__ import annotations

import argparse
import gc
import logging

import uvicorn

from core.errors import ConfigError
from core.settings import Settings
from ingest.app import create_app

log = logging.getLogger(__name__)

GC_GEN0_THRESHOLD = 20_000


def app_factory() -> object:
    """Entry point for uvicorn workers (``--workers N``): settings from the environment."""
    return create_app(Settings())


def main(args: argparse.Namespace, settings: Settings) -> int:
    host = args.host or settings.edge_host
    port = args.port if args.port is not None else settings.edge_port
    workers = max(1, int(getattr(args, "workers", 1) or 1))
    tls_cert = getattr(args, "tls_cert", None) or settings.edge_tls_certfile
    tls_key = getattr(args, "tls_key", None) or settings.edge_tls_keyfile
    if bool(tls_cert) != bool(tls_key):
        raise ConfigError("--tls-cert and --tls-key go together: give both to serve HTTPS, or neither")
    settings.require_kafka()
    settings.require_apps()
    # A dedicated edge process allocates many short-lived objects per request: collect the young
    # generation less often (fewer pauses on the request path); the lifespan freezes start-up objects.
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)
    common: dict[str, object] = {
        "host": host,
        "port": port,
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "on",
        "access_log": False,
        "timeout_graceful_shutdown": max(1, round(settings.shutdown_grace_s)),
        "ssl_certfile": str(tls_cert) if tls_cert else None,
        "ssl_keyfile": str(tls_key) if tls_key else None,
        "log_level": logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower(),
    }
    if workers > 1:
        # Each worker builds its app from CALLSTREAM_* in its own process.
        uvicorn.run("ingest.server:app_factory", factory=True, workers=workers, **common)  # type: ignore[arg-type]
    else:
        uvicorn.run(create_app(settings), **common)  # type: ignore[arg-type]
    return 0

"""HTTP/1.1 load generator for the benchmarks: raw asyncio streams, keep-alive connections, pre-built
requests (each push signed with its own nonce). Run it in its own process, apart from the server:

    python bench/_load.py --port 8080 --duration 10 --connections 64            # closed loop, max rate
    python bench/_load.py --port 8080 --duration 10 --rate 2000                 # open loop, fixed rate

Prints one JSON object: requests, by status, throughput per second, latency percentiles in ms.
Fixed-rate latency is measured from the scheduled send time, so a stalled server cannot hide its
queueing (no coordinated omission).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ingest.auth import sign_headers

SAMPLES = ROOT / "tests" / "samples"
# the appKeys the sample bodies name (tests/samples): the edge refuses a body naming another app (403)
BENCH_APPS = {"voice": ("a1B2c3D4e5F6g7H8i9J0k1L2m3N4", "bench-voice-secret"),
              "privacy": ("Z9y8X7w6V5u4T3s2R1q0P9o8N7m6", "bench-privacy-secret")}
PUBLIC_BASE_URL = "http://bench.local"


def bench_apps_env() -> str:
    """``CALLSTREAM_APPS`` value matching the keys the generator signs with."""
    return ",".join(f"{key}:{secret}" for key, secret in BENCH_APPS.values())


def request_stream(host: str, port: int) -> Iterator[bytes]:
    """Endless signed requests over all samples (voice signed aksk-voice, privacy aksk), unique nonces."""
    samples = []
    for path in sorted(SAMPLES.glob("*.json")):
        service = path.name.split("_", 1)[0]
        samples.append((service, path.read_bytes()))
    for n in itertools.count():
        service, body = samples[n % len(samples)]
        app_key, secret = BENCH_APPS[service]
        scheme = "aksk-voice" if service == "voice" else "aksk"
        headers = sign_headers(
            app_key, secret, scheme=scheme, url=f"{PUBLIC_BASE_URL}/notify/{service}", nonce=f"{n:x}n{time.time_ns():x}"
        )
        head = (
            f"POST /notify/{service} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json;charset=UTF-8\r\nContent-Length: {len(body)}\r\n"
            f"Authorization: {headers['Authorization']}\r\nX-AKSK: {headers['X-AKSK']}\r\n\r\n"
        )
        yield head.encode() + body


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def roundtrip(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
                break
        if length:
            await self.reader.readexactly(length)
        return status


async def _connect(host: str, port: int, count: int) -> list[Connection]:
    pairs = await asyncio.gather(*(asyncio.open_connection(host, port) for _ in range(count)))
    return [Connection(r, w) for r, w in pairs]


def _percentiles(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {"p50_ms": 0.0, "p99_ms": 0.0, "p999_ms": 0.0, "max_ms": 0.0}
    ordered = sorted(latencies)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {"p50_ms": at(0.50), "p99_ms": at(0.99), "p999_ms": at(0.999), "max_ms": round(ordered[-1] * 1000, 3)}


async def closed_loop(host: str, port: int, connections: int, duration_s: float, warmup_s: float) -> dict[str, object]:
    requests = request_stream(host, port)
    conns = await _connect(host, port, connections)
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    start = time.perf_counter()
    measure_from = start + warmup_s
    stop_at = measure_from + duration_s

    async def worker(conn: Connection) -> None:
        while True:
            sent = time.perf_counter()
            if sent >= stop_at:
                return
            status = await conn.roundtrip(next(requests))
            if sent >= measure_from:
                latencies.append(time.perf_counter() - sent)
                statuses[status] += 1

    await asyncio.gather(*(worker(c) for c in conns))
    for conn in conns:
        conn.writer.close()
    total = sum(statuses.values())
    return {"mode": "closed", "connections": connections, "duration_s": duration_s, "requests": total,
            "statuses": {str(k): v for k, v in statuses.items()}, "per_s": round(total / duration_s, 1),
            **_percentiles(latencies)}


async def send_at_rate(host: str, port: int, requests: list[bytes], rate: float, connections: int) -> dict[str, Any]:
    """Send prebuilt ``requests`` at ``rate``/s over keep-alive connections.

    Latency is measured from each request's scheduled time, so a stalled server cannot hide its
    queueing (no coordinated omission).
    """
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for conn in await _connect(host, port, connections):
        idle.put_nowait(conn)
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    tasks: set[asyncio.Task[None]] = set()

    async def one(request: bytes, scheduled: float) -> None:
        conn = await idle.get()
        status = await conn.roundtrip(request)
        latencies.append(time.perf_counter() - scheduled)
        statuses[status] += 1
        idle.put_nowait(conn)

    start = time.perf_counter()
    for i, request in enumerate(requests):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0.001:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(request, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    while not idle.empty():
        idle.get_nowait().writer.close()
    done = sum(statuses.values())
    return {"requests": done, "statuses": {str(k): v for k, v in statuses.items()},
            "per_s": round(done / elapsed, 1), **_percentiles(latencies)}


async def fixed_rate(host: str, port: int, rate: float, duration_s: float, connections: int) -> dict[str, object]:
    total = int(rate * duration_s)
    requests = [r for r, _ in zip(request_stream(host, port), range(total), strict=False)]
    result = await send_at_rate(host, port, requests, rate, connections)
    return {"mode": "fixed", "rate": rate, "duration_s": duration_s, **result}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=float, default=0.0, help="fixed rate per second (0 = closed loop, max rate)")
    args = parser.parse_args()
    import uvloop  # ships with uvicorn[standard]

    if args.rate > 0:
        result = uvloop.run(fixed_rate(args.host, args.port, args.rate, args.duration, args.connections))
    else:
        result = uvloop.run(closed_loop(args.host, args.port, args.connections, args.duration, args.warmup))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The edge's publish path on aiokafka (ingest.publisher, what the edge runs) vs librdkafka
(confluent-kafka), both acks=all, each awaited per record as a request handler awaits it.

    python bench/edge_producers.py [--records N] [--concurrency C] [--rounds R]

Against one EmbeddedBroker, in this process, alternating the two clients for R rounds: C tasks each
publish and await one raw envelope at a time (the shape of C concurrent pushes to the edge). Reports
records per second and CPU microseconds per acknowledged record (process time, every thread: librdkafka
does its network work on its own threads) for each client, and their ratios. librdkafka's delivery
reports are served by ``poll(0)`` from the event loop, which completes each record's future there.
Writes bench/results/edge_producers.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from confluent_kafka import Producer  # noqa: E402

from core.broker import EmbeddedBroker  # noqa: E402
from core.kafka import ensure_topics, librdkafka_config  # noqa: E402
from core.settings import Settings  # noqa: E402
from ingest.publisher import Publisher  # noqa: E402
from schemas.avro_codec import encode  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "edge_producers.json"


def envelopes(count: int) -> list[bytes]:
    body = (ROOT / "tests" / "samples" / "voice_notify_cdr_single.json").read_bytes()
    return [encode("raw_envelope", {
        "id": uuid.uuid4().hex, "received_at": int(time.time() * 1e6), "service": "voice", "path": "/notify/voice",
        "event_type": "fee", "app_key": "app", "auth_scheme": "aksk", "content_type": "application/json",
        "remote_addr": "10.0.0.1", "body": body}) for _ in range(count)]


class LibrdkafkaPublisher:
    """A per-record awaitable publish on confluent-kafka: produce, then poll(0) from the loop."""

    def __init__(self, settings: Settings) -> None:
        config = librdkafka_config(settings, client_id="bench-edge-rdkafka")
        config["delivery.report.only.error"] = False  # every record's ack completes its future
        config["linger.ms"] = 1
        self.producer = Producer(config)
        self.loop = asyncio.get_running_loop()
        self.pending = 0
        self.wake = asyncio.Event()
        self.poller = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        producer = self.producer
        while True:
            if not self.pending:
                self.wake.clear()
                await self.wake.wait()
            producer.poll(0)
            await asyncio.sleep(0.0005)

    async def publish(self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]) -> None:
        future = self.loop.create_future()

        def done(err: Any, _msg: Any) -> None:
            self.pending -= 1
            if err is None:
                future.set_result(None)
            else:
                future.set_exception(RuntimeError(err.str()))

        self.producer.produce(topic, value, key, headers=headers, on_delivery=done)
        self.pending += 1
        self.wake.set()
        await future

    async def stop(self) -> None:
        self.poller.cancel()
        self.producer.flush(5)


async def drive(publish: Any, topic: str, values: list[bytes], concurrency: int) -> tuple[float, float]:
    """(records per second, CPU microseconds per record) of publishing ``values``."""
    queue = iter(values)
    headers = [("ce_specversion", b"1.0")]

    async def worker() -> None:
        for value in queue:
            await publish(topic, value, value[12:28], headers)

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return len(values) / wall, cpu / len(values) * 1e6


async def run(records: int, concurrency: int, rounds: int) -> dict[str, Any]:
    with EmbeddedBroker() as broker:
        tag = uuid.uuid4().hex[:8]
        settings = Settings(kafka_bootstrap=broker.bootstrap, raw_topic=f"bp{tag}.raw", dead_topic=f"bp{tag}.dead",
                            topic_partitions=3)
        await ensure_topics(settings)
        values = envelopes(records)
        aio = Publisher(settings)
        await aio.start()
        rd = LibrdkafkaPublisher(settings)
        await drive(aio.publish, settings.raw_topic, values[:500], concurrency)  # warm both
        await drive(rd.publish, settings.raw_topic, values[:500], concurrency)
        figures: dict[str, list[tuple[float, float]]] = {"aiokafka": [], "librdkafka": []}
        for _ in range(rounds):
            figures["aiokafka"].append(await drive(aio.publish, settings.raw_topic, values, concurrency))
            figures["librdkafka"].append(await drive(rd.publish, settings.raw_topic, values, concurrency))
        await aio.stop()
        await rd.stop()
    out: dict[str, Any] = {"benchmark": "edge_producers", "python": platform.python_version(),
                           "records": records, "concurrency": concurrency, "rounds": rounds}
    for name, runs in figures.items():
        out[name] = {"per_s_median": round(statistics.median(r[0] for r in runs)),
                     "cpu_us_per_record_median": round(statistics.median(r[1] for r in runs), 1),
                     "runs": [{"per_s": round(r[0]), "cpu_us_per_record": round(r[1], 1)} for r in runs]}
    out["librdkafka_vs_aiokafka"] = {
        "per_s": round(out["librdkafka"]["per_s_median"] / out["aiokafka"]["per_s_median"], 2),
        "cpu_per_record": round(out["librdkafka"]["cpu_us_per_record_median"]
                                / out["aiokafka"]["cpu_us_per_record_median"], 2)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    report = asyncio.run(run(args.records, args.concurrency, args.rounds))
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    for name in ("aiokafka", "librdkafka"):
        print(f"{name:<11} {report[name]['per_s_median']:>7,} records/s  "
              f"{report[name]['cpu_us_per_record_median']:>6} CPU-us per acknowledged record")
    print(f"librdkafka / aiokafka: throughput {report['librdkafka_vs_aiokafka']['per_s']}x, "
          f"CPU per record {report['librdkafka_vs_aiokafka']['cpu_per_record']}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

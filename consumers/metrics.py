"""The consumer's Prometheus metrics, on a registry passed in (tests and the stack build several)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class ConsumerMetrics:
    """Vector-style names: ``callstream_consumer_*``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.received = Counter(
            "callstream_consumer_received_events_total", "Raw Kafka records received", registry=registry
        )
        self.loaded = Counter(
            "callstream_consumer_loaded_events_total", "Rows written to ClickHouse", ["table"], registry=registry
        )
        self.sent = Counter(
            "callstream_consumer_sent_events_total", "Records re-published downstream", ["topic"], registry=registry
        )
        self.discarded = Counter(
            "callstream_consumer_discarded_events_total",
            "Rows not loaded (duplicate) or records quarantined (failed)",
            ["reason"],
            registry=registry,
        )
        self.errors = Counter(
            "callstream_consumer_errors_total", "Errors by pipeline stage", ["stage"], registry=registry
        )
        self.unknown_codes = Counter(
            "callstream_consumer_unknown_codes_total", "Codes not found in the code tables", ["field"],
            registry=registry,
        )
        self.invalid_values = Counter(
            "callstream_consumer_invalid_values_total", "Field values stored as NULL because unparseable",
            ["field"], registry=registry,
        )
        self.inconsistent_timestamps = Counter(
            "callstream_consumer_inconsistent_timestamps_total",
            "Derived durations left empty (no sample) because the times contradict each other",
            registry=registry,
        )
        self.conflicts = Counter(
            "callstream_consumer_conflicting_records_total",
            "Records under a stored business key with other content (the stored one stays; see cdr_conflicts)",
            ["table"], registry=registry,
        )
        self.batch_seconds = Histogram(
            "callstream_consumer_batch_duration_seconds", "Poll-to-commit time of one batch",
            buckets=_LATENCY_BUCKETS, registry=registry,
        )
        self.batch_events = Histogram(
            "callstream_consumer_batch_size_events",
            "Raw records per polled batch (at most CALLSTREAM_BATCH_MAX_EVENTS; fewer when the poll finds fewer)",
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10_000, 20_000, 50_000), registry=registry,
        )
        self.receipt_to_load = Histogram(
            "callstream_consumer_receipt_to_load_seconds", "Edge receipt to ClickHouse insert, per push",
            buckets=_LATENCY_BUCKETS, registry=registry,
        )
        self.lag = Gauge(
            "callstream_consumer_lag_events", "Records behind the high watermark (assigned partitions)",
            registry=registry,
        )
        self.paused = Gauge(
            "callstream_consumer_paused",
            "1 while consumption is paused: ClickHouse, the downstream Kafka or the schema registry is unavailable",
            registry=registry,
        )
        self.stage_seconds = Counter(
            "callstream_consumer_stage_seconds_total",
            "Wall time spent per consumer stage (fetch, decode, parse, normalise, enrich, keys, dedupe, protect, "
            "encode, lookup, publish, insert, quarantine, commit; wait: the loop waiting for the prepare step)",
            ["stage"], registry=registry,
        )

    def add_stage_seconds(self, seconds: Mapping[str, float]) -> None:
        for stage, value in seconds.items():
            self.stage_seconds.labels(stage).inc(value)


def update_lag(consumer: AIOKafkaConsumer, offsets: Mapping[tuple[str, int], int], lags: dict[Any, int],
               metrics: ConsumerMetrics) -> None:
    """Set the lag gauge from the next offsets of a committed batch and the partitions' high watermarks
    (``lags`` remembers the other partitions' last figures; revoked partitions are dropped)."""
    assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
    for (topic, partition), next_offset in offsets.items():
        if (topic, partition) not in assigned:  # revoked by a rebalance since the poll
            continue
        high = consumer.highwater(TopicPartition(topic, partition))
        if high is not None:
            lags[(topic, partition)] = max(0, high - next_offset)
    for key in list(lags):
        if key not in assigned:
            del lags[key]
    metrics.lag.set(sum(lags.values()))

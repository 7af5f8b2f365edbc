"""Prometheus metrics of the edge, on a registry passed in (one per app, so tests can build several).

The hot path only bumps plain integers in dicts (a few tens of nanoseconds); a collector turns them
into metric families when ``/metrics`` is scraped. Names follow the component spec:
``callstream_edge_received_events_total{service,event_type}``, ``..._sent_events_total{service}``,
``..._discarded_events_total{reason}``, ``..._errors_total{stage}``,
``..._quarantine_skipped_events_total{reason,bound}`` (refusals answered but not stored: the quarantine
budget of the source or of the edge was spent) with ``..._quarantine_skipped_bytes_total{bound}``,
``..._callin_relay_total{outcome}`` (X-mode callin answers: upstream, fallback, timeout, unavailable …),
``callstream_edge_request_duration_seconds{route,status}`` and ``callstream_edge_in_flight_requests``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _Histogram:
    """Counts per bucket (not cumulative) plus the sum; the last slot is +Inf."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(BUCKETS, value)] += 1
        self.total += value


class EdgeMetrics(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.received: dict[tuple[str, str], int] = {}
        self.sent: dict[str, int] = {}
        self.discarded: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.skipped: dict[tuple[str, str], int] = {}
        self.skipped_bytes: dict[str, int] = {}
        self.callin: dict[str, int] = {}
        self.duration: dict[tuple[str, int], _Histogram] = {}
        registry.register(self)
        self.in_flight = Gauge(
            "callstream_edge_in_flight_requests", "Notification requests being handled now.", registry=registry
        )

    # --- hot path ----------------------------------------------------------------------------
    def accepted(self, service: str, event_type: str) -> None:
        key = (service, event_type)
        self.received[key] = self.received.get(key, 0) + 1
        self.sent[service] = self.sent.get(service, 0) + 1

    def refused(self, reason: str) -> None:
        self.discarded[reason] = self.discarded.get(reason, 0) + 1

    def not_quarantined(self, reason: str, bound: str, body_bytes: int) -> None:
        key = (reason, bound)
        self.skipped[key] = self.skipped.get(key, 0) + 1
        self.skipped_bytes[bound] = self.skipped_bytes.get(bound, 0) + body_bytes

    def callin_relayed(self, outcome: str) -> None:
        self.callin[outcome] = self.callin.get(outcome, 0) + 1

    def error(self, stage: str) -> None:
        self.errors[stage] = self.errors.get(stage, 0) + 1

    def observe(self, route: str, status: int, seconds: float) -> None:
        histogram = self.duration.get((route, status))
        if histogram is None:
            histogram = self.duration[(route, status)] = _Histogram()
        histogram.observe(seconds)

    # --- scrape ------------------------------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        received = CounterMetricFamily(
            "callstream_edge_received_events",
            "Pushes accepted and published to the raw topic, by service and eventType.",
            labels=["service", "event_type"],
        )
        for (service, event_type), value in list(self.received.items()):
            received.add_metric([service, event_type], value)
        yield received
        for name, doc, label, values in (
            ("callstream_edge_sent_events", "Records acknowledged by Kafka (raw topic), by service.",
             "service", self.sent),
            ("callstream_edge_discarded_events",
             "Pushes refused with a 4xx, by reason (stored on the dead-letter topic unless counted as skipped).",
             "reason", self.discarded),
            ("callstream_edge_errors", "Failures answered with 503, by stage (publish, dead_letter, overload).",
             "stage", self.errors),
            ("callstream_edge_quarantine_skipped_bytes",
             "Body bytes of refused pushes not stored, by the quarantine bound that was spent (source, total).",
             "bound", self.skipped_bytes),
            ("callstream_edge_callin_relay",
             "X-mode callin pushes relayed to the call-control app, by the answer given (upstream, fallback, "
             "timeout, unavailable, bad_answer).", "outcome", self.callin),
        ):
            family = CounterMetricFamily(name, doc, labels=[label])
            for key, value in list(values.items()):
                family.add_metric([key], value)
            yield family
        skipped = CounterMetricFamily(
            "callstream_edge_quarantine_skipped_events",
            "Refused pushes answered but not stored on the dead-letter topic (quarantine budget spent), "
            "by reason and bound (source, total).",
            labels=["reason", "bound"],
        )
        for (reason, spent), value in list(self.skipped.items()):
            skipped.add_metric([reason, spent], value)
        yield skipped
        duration = HistogramMetricFamily(
            "callstream_edge_request_duration_seconds",
            "Time from request start to response, by route and status.",
            labels=["route", "status"],
        )
        for (route, status), histogram in list(self.duration.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*BUCKETS, float("inf")), histogram.counts, strict=True):
                cumulative += count
                buckets.append((floatToGoString(bound), cumulative))
            duration.add_metric([route, str(status)], buckets, histogram.total)
        yield duration

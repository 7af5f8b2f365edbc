"""Prometheus metrics of the edge, on a registry passed in (one per app, so tests can build several).

Label children are cached, so the hot path costs a dict lookup and an increment.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class EdgeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.received = Counter(
            "callstream_edge_received_events",
            "Pushes accepted and published to the raw topic, by service and eventType.",
            ["service", "event_type"],
            registry=registry,
        )
        self.sent = Counter(
            "callstream_edge_sent_events",
            "Records acknowledged by Kafka (raw topic), by service.",
            ["service"],
            registry=registry,
        )
        self.discarded = Counter(
            "callstream_edge_discarded_events",
            "Pushes refused with a 4xx (quarantined to the dead-letter topic), by reason.",
            ["reason"],
            registry=registry,
        )
        self.errors = Counter(
            "callstream_edge_errors",
            "Failures answered with 503, by stage (publish, dead_letter, overload).",
            ["stage"],
            registry=registry,
        )
        self.duration = Histogram(
            "callstream_edge_request_duration_seconds",
            "Time from request start to response, by route and status.",
            ["route", "status"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "callstream_edge_in_flight_requests", "Notification requests being handled now.", registry=registry
        )
        self._children: dict[tuple[str, ...], object] = {}

    def _child(self, metric: Counter | Histogram, *labels: str) -> object:
        key = (metric._name, *labels)  # noqa: SLF001 - stable attribute, used as a cache key
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def accepted(self, service: str, event_type: str) -> None:
        self._child(self.received, service, event_type).inc()  # type: ignore[attr-defined]
        self._child(self.sent, service).inc()  # type: ignore[attr-defined]

    def refused(self, reason: str) -> None:
        self._child(self.discarded, reason).inc()  # type: ignore[attr-defined]

    def error(self, stage: str) -> None:
        self._child(self.errors, stage).inc()  # type: ignore[attr-defined]

    def observe(self, route: str, status: int, seconds: float) -> None:
        self._child(self.duration, route, str(status)).observe(seconds)  # type: ignore[attr-defined]

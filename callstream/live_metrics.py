"""The live figures of the dashboard: the edge's and the consumer's Prometheus metrics, sampled on demand.

The edge runs in its own process, so its ``/metrics`` is scraped over loopback; the consumer runs inside
``callstream up``, so its registry is read in-process. A sample keeps the raw counters, gauges and
histogram buckets; rates and windowed quantiles are differences between two samples, computed the way
Prometheus' ``rate()`` and ``histogram_quantile()`` do (linear interpolation inside the bucket).

    sampler = LiveSampler(edge_metrics_url(settings), consumer_registry)
    figures = await sampler.figures()      # JSON-ready dict, see LiveSampler.figures
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from core.settings import Settings

#: Seconds of history kept for the charts (one point per sample) and the latency window.
HISTORY_S = 300.0
LATENCY_WINDOW_S = 60.0
MIN_SAMPLE_INTERVAL_S = 1.0
NOTIFY_ROUTES = ("/notify/voice", "/notify/privacy")

Labels = tuple[tuple[str, str], ...]


@dataclass
class Sample:
    """One scrape: every sample value by (name, labels), plus whether each side answered."""

    at: float
    edge_up: bool
    consumer_up: bool
    values: dict[tuple[str, Labels], float] = field(default_factory=dict)
    point: dict[str, Any] | None = None  # the chart point against the sample before (see ``point``)

    def select(self, name: str, **match: str) -> list[tuple[dict[str, str], float]]:
        """The series of ``name`` whose labels include ``match``."""
        out = []
        for (sample_name, labels), value in self.values.items():
            if sample_name != name:
                continue
            found = dict(labels)
            if all(found.get(k) == v for k, v in match.items()):
                out.append((found, value))
        return out

    def total(self, name: str, **match: str) -> float:
        return sum(value for _, value in self.select(name, **match))

    def by(self, name: str, label: str, **match: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for labels, value in self.select(name, **match):
            key = labels.get(label, "")
            out[key] = out.get(key, 0.0) + value
        return out

    def buckets(self, name: str, keep: Any = None) -> dict[float, float]:
        """Cumulative counts per upper bound of histogram ``name`` summed over the series ``keep`` accepts."""
        out: dict[float, float] = {}
        for labels, value in self.select(f"{name}_bucket"):
            if keep is not None and not keep(labels):
                continue
            bound = float(labels["le"])
            out[bound] = out.get(bound, 0.0) + value
        return out


def edge_metrics_url(settings: Settings) -> str:
    """The edge's ``/metrics`` on loopback (the edge answers loopback scrapes whatever ``metrics_public``)."""
    host = settings.edge_host
    host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    scheme = "https" if settings.edge_tls_certfile else "http"
    return f"{scheme}://{host}:{settings.edge_port}/metrics"


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The ``q`` quantile estimated from cumulative bucket counts; None without observations."""
    bounds = sorted(buckets)
    if not bounds:
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # in the +Inf bucket: the highest finite bound is all we know
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = bound, count
    return lower


def _delta(new: dict[float, float], old: dict[float, float]) -> dict[float, float]:
    return {bound: max(0.0, value - old.get(bound, 0.0)) for bound, value in new.items()}


def _read(families: Iterable[Metric], values: dict[tuple[str, Labels], float]) -> None:
    for family in families:
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _answer_class(status: str) -> str:
    if status == "200":
        return "200"
    if status.startswith("4"):
        return "4xx"
    if status.startswith("5"):
        return "503"
    return "other"


def _is_ack(labels: dict[str, str]) -> bool:
    return labels.get("route") in NOTIFY_ROUTES and labels.get("status") == "200"


class LiveSampler:
    """Scrapes on demand (at most once per ``MIN_SAMPLE_INTERVAL_S``) and keeps ``HISTORY_S`` of samples."""

    def __init__(self, edge_url: str, consumer_registry: CollectorRegistry | None) -> None:
        self.edge_url = edge_url
        self.consumer_registry = consumer_registry
        self.samples: deque[Sample] = deque()
        self._lock = asyncio.Lock()
        self._client: httpx.AsyncClient | None = None  # one connection pool (and TLS context) for every scrape

    async def scrape(self) -> Sample:
        values: dict[tuple[str, Labels], float] = {}
        edge_up = False
        try:
            if self._client is None:
                self._client = httpx.AsyncClient(timeout=2.0, verify=False)  # loopback, the edge's own certificate
            response = await self._client.get(self.edge_url)
            if response.status_code == 200:
                _read(text_string_to_metric_families(response.text), values)
                edge_up = True
        except (httpx.HTTPError, ValueError):
            edge_up = False
        consumer_up = self.consumer_registry is not None
        if self.consumer_registry is not None:
            _read(self.consumer_registry.collect(), values)
        return Sample(time.time(), edge_up, consumer_up, values)

    async def sample(self) -> Sample:
        async with self._lock:
            if self.samples and time.time() - self.samples[-1].at < MIN_SAMPLE_INTERVAL_S:
                return self.samples[-1]
            current = await self.scrape()
            if self.samples:
                current.point = point(self.samples[-1], current)
            self.samples.append(current)
            while self.samples and current.at - self.samples[0].at > HISTORY_S:
                self.samples.popleft()
            return current

    def _older(self, current: Sample, seconds: float) -> Sample | None:
        """The newest sample at least ``seconds`` older than ``current``, else the oldest one kept."""
        older = [s for s in self.samples if s is not current and current.at - s.at >= seconds]
        if older:
            return older[-1]
        rest = [s for s in self.samples if s is not current]
        return rest[0] if rest else None

    async def figures(self) -> dict[str, Any]:
        """Totals since start, rates over the last sample interval, latency quantiles over the last minute
        (``*_window``) and since start, and the chart history."""
        current = await self.sample()
        window = self._older(current, LATENCY_WINDOW_S)
        ack = current.buckets("callstream_edge_request_duration_seconds", _is_ack)
        row = current.buckets("callstream_consumer_receipt_to_load_seconds")
        ack_window = _delta(ack, window.buckets("callstream_edge_request_duration_seconds", _is_ack)) if window else {}
        row_window = _delta(row, window.buckets("callstream_consumer_receipt_to_load_seconds")) if window else {}
        return {
            "time": current.at,
            "edge": {
                "up": current.edge_up,
                "url": self.edge_url,
                "pushes": _pushes(current),
                "answers": _answers(current),
                "refused": current.by("callstream_edge_discarded_events_total", "reason"),
                "errors": current.by("callstream_edge_errors_total", "stage"),
                "in_flight": current.total("callstream_edge_in_flight_requests"),
                "ack_ms": {
                    "p50": _ms(histogram_quantile(0.5, ack)), "p99": _ms(histogram_quantile(0.99, ack)),
                    "p50_window": _ms(histogram_quantile(0.5, ack_window)),
                    "p99_window": _ms(histogram_quantile(0.99, ack_window)),
                    "window_s": round(current.at - window.at, 1) if window else 0.0,
                },
            },
            "consumer": {
                "up": current.consumer_up,
                "lag": current.total("callstream_consumer_lag_events"),
                "paused": current.total("callstream_consumer_paused"),
                "received": current.total("callstream_consumer_received_events_total"),
                "loaded": current.by("callstream_consumer_loaded_events_total", "table"),
                "discarded": current.by("callstream_consumer_discarded_events_total", "reason"),
                "errors": current.by("callstream_consumer_errors_total", "stage"),
                "receipt_to_row_ms": {
                    "p50": _ms(histogram_quantile(0.5, row)), "p99": _ms(histogram_quantile(0.99, row)),
                    "p50_window": _ms(histogram_quantile(0.5, row_window)),
                    "p99_window": _ms(histogram_quantile(0.99, row_window)),
                },
            },
            "history": self.history(),
        }

    def history(self) -> list[dict[str, Any]]:
        """One point per pair of consecutive samples kept (computed once, when the newer one was taken)."""
        return [s.point for s in self.samples if s.point is not None]


def point(old: Sample, new: Sample) -> dict[str, Any] | None:
    """Per-second rates between two samples, the latency quantiles of the answers in between, and the lag."""
    span = new.at - old.at
    if span <= 0:
        return None
    before, after = _pushes(old), _pushes(new)
    answers_old, answers_new = _answers(old), _answers(new)
    ack = _delta(new.buckets("callstream_edge_request_duration_seconds", _is_ack),
                 old.buckets("callstream_edge_request_duration_seconds", _is_ack))
    loaded = new.total("callstream_consumer_loaded_events_total") - old.total("callstream_consumer_loaded_events_total")
    return {
        "t": round(new.at, 3),
        "pushes_per_s": {k: round(max(0.0, v - before.get(k, 0.0)) / span, 3) for k, v in after.items()},
        "answers_per_s": {k: round(max(0.0, v - answers_old.get(k, 0.0)) / span, 3) for k, v in answers_new.items()},
        "ack_p50_ms": _ms(histogram_quantile(0.5, ack)),
        "ack_p99_ms": _ms(histogram_quantile(0.99, ack)),
        "lag": new.total("callstream_consumer_lag_events"),
        "rows_per_s": round(max(0.0, loaded) / span, 3),
    }


def _pushes(sample: Sample) -> dict[str, float]:
    """Accepted pushes since the edge started, keyed ``service/event_type``."""
    out: dict[str, float] = {}
    for labels, value in sample.select("callstream_edge_received_events_total"):
        key = f"{labels.get('service', '')}/{labels.get('event_type', '') or 'other'}"
        out[key] = out.get(key, 0.0) + value
    return out


def _answers(sample: Sample) -> dict[str, float]:
    """Answers of the notify routes since the edge started, by class: 200, 4xx, 503."""
    out = {"200": 0.0, "4xx": 0.0, "503": 0.0}
    for labels, value in sample.select("callstream_edge_request_duration_seconds_count"):
        if labels.get("route") in NOTIFY_ROUTES:
            key = _answer_class(labels.get("status", ""))
            out[key] = out.get(key, 0.0) + value
    return out

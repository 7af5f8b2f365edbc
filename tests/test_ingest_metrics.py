"""Edge metrics: plain counters on the hot path, exposed with the spec names at scrape time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from ingest.metrics import EdgeMetrics


def test_exposition_has_spec_names_and_cumulative_buckets() -> None:
    registry = CollectorRegistry()
    metrics = EdgeMetrics(registry)
    metrics.accepted("voice", "fee")
    metrics.accepted("voice", "fee")
    metrics.refused("bad_digest")
    metrics.error("publish")
    for seconds in (0.0005, 0.005, 0.3, 9.0):
        metrics.observe("/notify/voice", 200, seconds)
    text = generate_latest(registry).decode()
    assert 'callstream_edge_received_events_total{event_type="fee",service="voice"} 2.0' in text
    assert 'callstream_edge_sent_events_total{service="voice"} 2.0' in text
    assert 'callstream_edge_discarded_events_total{reason="bad_digest"} 1.0' in text
    assert 'callstream_edge_errors_total{stage="publish"} 1.0' in text
    assert 'callstream_edge_request_duration_seconds_bucket{le="0.001",route="/notify/voice",status="200"} 1.0' in text
    assert 'callstream_edge_request_duration_seconds_bucket{le="0.005",route="/notify/voice",status="200"} 2.0' in text
    assert 'callstream_edge_request_duration_seconds_bucket{le="5.0",route="/notify/voice",status="200"} 3.0' in text
    assert 'callstream_edge_request_duration_seconds_bucket{le="+Inf",route="/notify/voice",status="200"} 4.0' in text
    assert 'callstream_edge_request_duration_seconds_count{route="/notify/voice",status="200"} 4.0' in text
    assert "callstream_edge_in_flight_requests 0.0" in text


def test_registries_are_independent() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    EdgeMetrics(first).refused("x")
    EdgeMetrics(second)
    assert 'reason="x"' in generate_latest(first).decode()
    assert 'reason="x"' not in generate_latest(second).decode()

"""Golden KPI figures: eight voice calls in one hour, their ASR, NER, ACD and PDD worked out by hand.

The calls go through the real pipeline into chDB; the expected numbers below are written out, not
computed by the test. Definitions (docs/analytics.md): ASR = answered / seizures (ITU-T E.411), NER =
(answered + user busy + ring no answer + user rejected) / seizures (ITU-T E.425, cause class before the
teardown point), seizures = attempts - platform refusals, PDD = RFC 6076 session request delay.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from consumers.load import ClickHouseSink
from consumers.metrics import ConsumerMetrics
from consumers.pipeline import Pipeline
from core import store
from core.settings import Settings
from schemas.avro_codec import encode
from schemas.migrate import apply_migrations
from tests.conftest import TEST_APP_KEY


def t(second: int) -> str:
    """A time on 2024-03-12, ``second`` seconds after 10:00:00 UTC (negative: before)."""
    total = 10 * 3600 + second
    return f"2024-03-12 {total // 3600:02d}:{total // 60 % 60:02d}:{total % 60:02d}"


# call: (start, alerting, answer, end, failTime, callOutUnaswRsn, ulFailReason), seconds after 10:00:00
CALLS: list[tuple[int | None, int | None, int | None, int | None, int | None, int, int]] = [
    (0, 2, 5, 65, None, 0, 0),  # 1 answered, talk 60 s, PDD 2 s
    (100, 104, 106, 136, None, 0, 0),  # 2 answered, talk 30 s, PDD 4 s
    (200, None, None, 203, 203, 17, 0),  # 3 user busy before alerting: PDD 3 s (failed setup)
    (300, 301, None, 331, 331, 19, 513),  # 4 Q.850 19 ring no answer under teardown 513: effective, PDD 1 s
    (400, None, None, 406, 406, 31, 0),  # 5 normal unspecified, never alerted: not effective, PDD 6 s
    (None, None, None, 500, 500, 0, 7001),  # 6 frequency control: refused by the platform, no seizure
    (600, None, None, 608, 608, 38, 0),  # 7 network out of order: not effective, PDD 8 s
    (700, 698, 703, 723, None, 0, 0),  # 8 answered, talk 20 s, alerting before start: no PDD sample
]

# worked by hand:
#   attempts 8, refused 1 (call 6), seizures 8 - 1 = 7
#   answered 3 (calls 1, 2, 8)                      ASR = 3 / 7 = 0.428571...
#   effective 3 + busy (3) + ring no answer (4) = 5  NER = 5 / 7 = 0.714285...
#   talk 60 + 30 + 20 = 110 s over 3 answered        ACD = 36.666... s
#   PDD samples (calls 1, 2, 3, 4, 5, 7) 2, 4, 3, 1, 6, 8 s -> sorted 1 2 3 4 6 8, sum 24 s
#     average 24 / 6 = 4.0 s; p50 = (3 + 4) / 2 = 3.5 s; p95: rank 5 * 0.95 = 4.75 -> 6 + 0.75 * (8 - 6) = 7.5 s
GOLDEN = {
    "attempts": 8, "refused": 1, "seizures": 7, "answered": 3, "ner_numerator": 5, "failed": 4,
    "asr": 3 / 7, "ner": 5 / 7, "talk_seconds_sum": 110, "acd_seconds": 110 / 3,
    "pdd_samples": 6, "pdd_ms_sum": 24_000, "pdd_avg_seconds": 4.0, "pdd_p50_seconds": 3.5, "pdd_p95_seconds": 7.5,
    "user_busy": 1, "no_answer": 1, "user_rejected": 0,
}
RATIO_COLUMNS = {"attempts", "seizures", "refused", "answered", "ner_numerator", "asr", "ner", "talk_seconds_sum",
                 "acd_seconds", "pdd_samples", "pdd_ms_sum", "pdd_avg_seconds", "setup_samples", "setup_seconds_sum",
                 "ring_samples", "ring_seconds_sum", "ring_avg_seconds"}


def fee(n: int, call: tuple[int | None, int | None, int | None, int | None, int | None, int, int]) -> dict[str, Any]:
    start, alerting, answer, end, failed, q850, teardown = call
    info: dict[str, Any] = {
        "appKey": TEST_APP_KEY, "icid": f"golden-{n}", "sessionId": f"golden-session-{n}", "serviceType": "001",
        "bindNum": "+8675528000001", "callerNum": "+8675528000001", "calleeNum": "+8613800000001",
        "callOutUnaswRsn": q850, "fwdUnaswRsn": 0, "ulFailReason": teardown, "sipStatusCode": 0,
    }
    for key, second in (("callOutStartTime", start), ("callOutAlertingTime", alerting),
                        ("callOutAnswerTime", answer), ("callEndTime", end), ("failTime", failed)):
        if second is not None:
            info[key] = t(second)
    return info


def records() -> list[ConsumerRecord[bytes, bytes]]:
    body = orjson.dumps({"eventType": "fee", "feeLst": [fee(n, c) for n, c in enumerate(CALLS, 1)]})
    value = encode("raw_envelope", {
        "id": uuid.uuid4().hex, "received_at": 1_710_241_200_000_000, "service": "voice", "path": "/notify/voice",
        "event_type": "fee", "app_key": TEST_APP_KEY, "auth_scheme": "aksk", "content_type": "application/json",
        "remote_addr": "127.0.0.1", "body": body,
    })
    return [ConsumerRecord("raw", 0, 0, 0, 0, None, value, None, 0, len(value), [])]


def query(client: Any, sql: str) -> list[dict[str, Any]]:
    with store.locked(client):
        result = client.query(sql)
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


@pytest.fixture
def golden(settings: Settings) -> tuple[Any, str]:
    client = store.connect(settings)
    apply_migrations(settings, client)
    pipeline = Pipeline(settings, ClickHouseSink(client, settings.clickhouse_database), None,
                        ConsumerMetrics(CollectorRegistry()))
    asyncio.run(pipeline.deliver(pipeline.prepare(records())))
    return client, settings.clickhouse_database


@pytest.mark.parametrize("view", ["kpi_hourly", "kpi_daily", "kpi_by_service_type", "kpi_by_number"])
def test_golden_kpis(golden: tuple[Any, str], view: str) -> None:
    client, db = golden
    (row,) = query(client, f"SELECT * FROM {db}.{view}")
    wrong = {k: (row[k], v) for k, v in GOLDEN.items() if row[k] != pytest.approx(v, rel=1e-12)}
    assert not wrong, f"{view}: column -> (view, by hand) {wrong}"


def test_every_kpi_view_carries_numerators_and_denominators(golden: tuple[Any, str]) -> None:
    client, db = golden
    for view in ("kpi_hourly", "kpi_daily", "kpi_by_service_type", "kpi_by_number", "kpi_by_binding"):
        columns = {r["name"] for r in query(client, f"SELECT name FROM system.columns WHERE database = '{db}' "
                                                     f"AND table = '{view}'")}
        assert RATIO_COLUMNS <= columns, f"{view} lacks {sorted(RATIO_COLUMNS - columns)}"


def test_refusal_and_precedence_are_queryable(golden: tuple[Any, str]) -> None:
    client, db = golden
    causes = {(r["failure_category"], r["failure_reason"]): (r["calls"], r["refused"], r["user_caused"])
              for r in query(client, f"SELECT * FROM {db}.failure_causes")}
    assert causes[("no_answer", "No answer from user (user alerted)")] == (1, 0, 1)
    assert causes[("control", "Developer call frequency control")] == (1, 1, 0)
    assert causes[("unknown", "Normal, unspecified (released before alerting)")] == (1, 0, 0)

"""Analytics views (schemas/clickhouse/0003_views.sql) against KPIs computed by hand.

A fixed set of Huawei-shaped CDRs (answered, busy, no answer, rejected, network failure; two hours,
two apps, two services) goes through the real consumer pipeline into chDB in two batches: the second
holds a late CDR and a re-pushed one. A last-line duplicate row (as two racing loaders would write)
is then inserted past the loader's checks. Every column of kpi_hourly, and kpi_daily, failure_causes,
kpi_by_number and kpi_by_binding, must equal the figures computed here in Python. Every ```sql
example of docs/analytics.md is run too.
"""

from __future__ import annotations

import asyncio
import math
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from callstream.sql import run_sql
from consumers.load import ClickHouseSink
from consumers.metrics import ConsumerMetrics
from consumers.pipeline import Pipeline
from core import store
from core.settings import Settings
from schemas.avro_codec import encode
from schemas.migrate import apply_migrations, rebuild_rollups
from tests.conftest import TEST_APP_KEY, TEST_PRIVACY_APP_KEY, sample_bytes

DOC = Path(__file__).resolve().parent.parent / "docs" / "analytics.md"
APP_A, APP_B = TEST_APP_KEY, TEST_PRIVACY_APP_KEY
DAY = date(2024, 3, 12)
USER_CAUSED = {"user_busy", "no_answer", "user_rejected"}
# failure category and Q.850 name (schemas/codes/q850_causes.csv) of the fwdUnaswRsn codes used below
Q850 = {
    17: ("user_busy", "User busy"),
    19: ("no_answer", "No answer from user (user alerted)"),
    21: ("user_rejected", "Call rejected"),
    34: ("network_failure", "No circuit/channel available"),
    38: ("network_failure", "Network out of order"),
}


@dataclass(frozen=True)
class Call:
    """One call attempt; setup/ring/talk in whole seconds, None where the leg never got there."""

    n: int
    app: str
    service: str
    start: str  # HH:MM:SS on DAY, UTC
    setup: int | None  # leg start -> alerting
    ring: int | None  # alerting -> answer (answered) or -> end (not answered)
    talk: int | None  # answer -> end; None = not answered
    q850: int = 0  # fwdUnaswRsn of a failed call
    recorded: bool = False
    bind: str = ""
    sub: str = ""

    @property
    def t0(self) -> datetime:
        return datetime.combine(DAY, datetime.strptime(self.start, "%H:%M:%S").time(), UTC)

    @property
    def answered(self) -> bool:
        return self.talk is not None

    @property
    def pdd(self) -> int:
        """RFC 6076 SRD: to alerting, or for a setup that failed before alerting to its end (5 s below)."""
        return self.setup if self.setup is not None else 5

    @property
    def category(self) -> str:
        return "normal" if self.answered else Q850[self.q850][0]


CALLS = [
    Call(1, APP_A, "voice", "09:05:00", 3, 5, 60, recorded=True, bind="+8675528000001"),
    Call(2, APP_A, "voice", "09:10:00", None, None, None, q850=17, bind="+8675528000001"),
    Call(3, APP_A, "voice", "09:20:00", 2, 30, None, q850=19, bind="+8675528000002"),
    Call(4, APP_A, "voice", "09:30:00", 4, 6, 125, bind="+8675528000002"),
    Call(5, APP_A, "voice", "09:40:00", None, None, None, q850=38, bind="+8675528000001"),  # late
    Call(6, APP_A, "privacy", "09:15:00", 1, 2, 16, recorded=True, bind="+8617000000003", sub="sub-1"),
    Call(7, APP_A, "privacy", "09:25:00", 1, 4, None, q850=21, bind="+8617000000003", sub="sub-1"),
    Call(8, APP_B, "voice", "09:45:00", 7, 3, 30, bind="+8675528000004"),
    Call(9, APP_A, "voice", "10:05:00", 5, 10, 300, recorded=True, bind="+8675528000001"),
    Call(10, APP_A, "voice", "10:15:00", 9, 1, None, q850=34, bind="+8675528000001"),
    Call(11, APP_B, "privacy", "10:20:00", None, None, None, q850=17, bind="+8617000000005", sub="sub-2"),
    Call(12, APP_B, "privacy", "10:30:00", 2, 8, 45, recorded=True, bind="+8617000000005", sub="sub-2"),
    Call(13, APP_B, "privacy", "10:40:00", 3, 40, None, q850=19, bind="+8617000000005", sub="sub-2"),
    Call(14, APP_B, "voice", "10:50:00", 6, 2, None, q850=21, bind="+8675528000004"),
]
LATE = {5}


def _ts(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else None


def fee_info(call: Call) -> dict[str, Any]:
    """The FeeInfo Huawei pushes for ``call`` (voice callback: A leg then the forwarded B leg)."""
    t0 = call.t0
    leg_start = t0 + timedelta(seconds=3) if call.service == "voice" else t0
    alerting = leg_start + timedelta(seconds=call.setup) if call.setup is not None else None
    answer = end = None
    if call.answered:
        assert alerting is not None and call.ring is not None and call.talk is not None
        answer = alerting + timedelta(seconds=call.ring)
        end = answer + timedelta(seconds=call.talk)
    elif alerting is not None:
        end = alerting + timedelta(seconds=call.ring or 0)
    else:
        end = leg_start + timedelta(seconds=5)
    info: dict[str, Any] = {
        "direction": 0 if call.service == "voice" else 1,
        "spId": "CaaS_Test_01",
        "appKey": call.app,
        "icid": f"icid-{call.n:04d}.3757223714.337238282.9",
        "bindNum": call.bind,
        "sessionId": f"session-{call.n:04d}@callenabler246.huaweicaas.com",
        "callerNum": "+8613800000021",
        "calleeNum": call.bind,
        "fwdDstNum": "+8613866000021",
        "fwdStartTime": _ts(leg_start),
        "fwdAlertingTime": _ts(alerting),
        "fwdAnswerTime": _ts(answer),
        "callEndTime": _ts(end),
        "fwdUnaswRsn": 0 if call.answered else call.q850,
        "callOutUnaswRsn": 0,
        "sipStatusCode": 0,
        "recordFlag": 1 if call.recorded else 0,
        "ttsPlayTimes": 0,
        "ttsTransDuration": 0,
        "hostName": "callenabler246.huaweicaas.com",
    }
    if call.recorded:
        info["recordObjectName"] = f"rec-{call.n:04d}.wav"
    if call.service == "voice":
        info.update({
            "serviceType": "002",
            "callOutStartTime": _ts(t0),
            "callOutAlertingTime": _ts(t0 + timedelta(seconds=1)),
            "callOutAnswerTime": _ts(t0 + timedelta(seconds=2)),
        })
        if call.n == 2:
            info["ulFailReason"] = 518  # "see the Q.850 cause": failure_reason must still be "User busy"
    else:
        info.update({"serviceType": "004", "callInTime": _ts(t0), "subscriptionId": call.sub})
    return {key: value for key, value in info.items() if value is not None}


def record(call: Call, offset: int, received: datetime) -> ConsumerRecord[bytes, bytes]:
    """The raw-topic Kafka record the edge would publish for one fee push of ``call``."""
    body = orjson.dumps({"eventType": "fee", "feeLst": [fee_info(call)]})
    value = encode("raw_envelope", {
        "id": uuid.uuid4().hex, "received_at": int(received.timestamp() * 1_000_000),
        "service": call.service, "path": f"/notify/{call.service}", "event_type": "fee", "app_key": call.app,
        "auth_scheme": "aksk", "content_type": "application/json", "remote_addr": "127.0.0.1", "body": body,
    })
    return ConsumerRecord("raw", 0, offset, 0, 0, None, value, None, 0, len(value), [])


def load(settings: Settings, client: Any, records: list[ConsumerRecord[bytes, bytes]]) -> Pipeline:
    """One batch through a fresh pipeline (as after a restart: only the store knows what is loaded)."""
    pipeline = Pipeline(settings, ClickHouseSink(client, settings.clickhouse_database), None,
                        ConsumerMetrics(CollectorRegistry()))
    asyncio.run(pipeline.deliver(pipeline.prepare(records)))
    return pipeline


# --- KPIs by hand --------------------------------------------------------------------------------

def quantile(values: list[int], level: float) -> float | None:
    """Linear interpolation between order statistics (R-7, as quantileExactInclusive)."""
    if not values:
        return None
    ordered = sorted(values)
    h = (len(ordered) - 1) * level
    low = math.floor(h)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (h - low) * (ordered[high] - ordered[low])


def ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def kpis(calls: list[Call]) -> dict[str, Any]:
    attempts = len(calls)
    answered = sum(c.answered for c in calls)
    effective = sum(c.answered or c.category in USER_CAUSED for c in calls)
    talk = sum(c.talk or 0 for c in calls)
    setups = [c.setup for c in calls if c.setup is not None]
    pdds = [c.pdd for c in calls]
    rings = [c.ring for c in calls if c.ring is not None]
    return {
        "attempts": attempts, "answered": answered,
        "asr": ratio(answered, attempts), "ner": ratio(effective, attempts),
        "acd_seconds": ratio(talk, answered),
        "pdd_p50_seconds": quantile(pdds, 0.5), "pdd_p95_seconds": quantile(pdds, 0.95),
        "pdd_avg_seconds": ratio(sum(pdds), len(pdds)), "pdd_samples": len(pdds), "pdd_ms_sum": 1000 * sum(pdds),
        "seizures": attempts, "refused": 0,
        "ner_numerator": effective, "failed": attempts - answered,
        "user_busy": sum(c.category == "user_busy" for c in calls),
        "no_answer": sum(c.category == "no_answer" for c in calls),
        "user_rejected": sum(c.category == "user_rejected" for c in calls),
        "talk_seconds_sum": talk, "setup_samples": len(setups), "setup_seconds_sum": sum(setups),
        "ring_samples": len(rings), "ring_seconds_sum": sum(rings), "ring_avg_seconds": ratio(sum(rings), len(rings)),
        "ring_p95_seconds": quantile(rings, 0.95), "recordings": sum(c.recorded for c in calls),
    }


def grouped(calls: list[Call], key: Any) -> dict[tuple[Any, ...], dict[str, Any]]:
    groups: dict[tuple[Any, ...], list[Call]] = defaultdict(list)
    for call in calls:
        groups[key(call)].append(call)
    return {k: kpis(v) for k, v in groups.items()}


def hour_of(call: Call) -> datetime:
    return call.t0.replace(minute=0, second=0)


def rows(client: Any, sql: str) -> list[dict[str, Any]]:
    with store.locked(client):
        result = client.query(sql)
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def same(actual: Any, expected: Any) -> bool:
    if expected is None or actual is None:
        return actual is expected
    if isinstance(expected, float) or isinstance(actual, float):
        return actual == pytest.approx(expected, rel=1e-9, abs=1e-9)
    return bool(actual == expected)


def assert_view(got: dict[tuple[Any, ...], dict[str, Any]], want: dict[tuple[Any, ...], dict[str, Any]]) -> None:
    assert set(got) == set(want)
    for key, expected in want.items():
        actual = got[key]
        wrong = {c: (actual.get(c), v) for c, v in expected.items() if not same(actual.get(c), v)}
        assert not wrong, f"{key}: column -> (view, by hand) {wrong}"


KPI_HOURLY_HEAD = ["hour", "app_key", "service", "attempts", "answered", "asr", "ner", "acd_seconds",
                   "pdd_p50_seconds", "pdd_p95_seconds"]


@pytest.fixture
def loaded(settings: Settings) -> tuple[Any, str]:
    """The call set loaded in two batches, plus one last-line duplicate row; returns (client, db)."""
    client = store.connect(settings)
    apply_migrations(settings, client)
    db = settings.clickhouse_database
    first_receipt = datetime(2024, 3, 12, 11, 0, tzinfo=UTC)
    on_time = [c for c in CALLS if c.n not in LATE]
    load(settings, client, [record(c, i, first_receipt) for i, c in enumerate(on_time)])

    before = rows(client, f"SELECT attempts FROM {db}.kpi_hourly WHERE hour = '2024-03-12 09:00:00' "
                          f"AND app_key = '{APP_A}' AND service = 'voice'")
    assert before == [{"attempts": 4}]

    later = datetime(2024, 3, 13, 8, 0, tzinfo=UTC)  # the late CDR, and call 1 pushed a second time
    late = [c for c in CALLS if c.n in LATE] + [CALLS[0]]
    load(settings, client, [record(c, 100 + i, later) for i, c in enumerate(late)])

    # two loaders racing on one CDR: both miss each other's row and insert it (different tokens)
    with store.locked(client):
        client.command(f"SYSTEM STOP MERGES {db}.cdrs")
    racer = Pipeline(settings, ClickHouseSink(client, db), None, ConsumerMetrics(CollectorRegistry()))
    batch = racer.prepare([record(CALLS[3], 200, later)])
    racer.sink.insert("cdrs", batch.tables["cdrs"], token="racing-loader")
    physical = rows(client, f"SELECT count() AS n, uniqExact(dedup_key) AS keys FROM {db}.cdrs")
    assert physical == [{"n": len(CALLS) + 1, "keys": len(CALLS)}]
    # the rollups saw that insert (5 calls at 09:00 plus the racer's copy of call 4) until they are
    # rebuilt from cdrs FINAL, which is what `callstream migrate --rebuild-rollups` does
    nine = f"SELECT attempts FROM {db}.kpi_hourly WHERE hour = '2024-03-12 09:00:00' AND app_key = '{APP_A}' " \
           "AND service = 'voice'"
    assert rows(client, nine) == [{"attempts": 6}]
    assert "rollup_hourly" in ",".join(rebuild_rollups(settings, client))
    assert rows(client, nine) == [{"attempts": 5}]
    return client, db


def test_kpi_hourly_matches_hand_computation(loaded: tuple[Any, str]) -> None:
    client, db = loaded
    result = rows(client, f"SELECT * FROM {db}.kpi_hourly ORDER BY hour, app_key, service")
    assert list(result[0])[:10] == KPI_HOURLY_HEAD
    got = {(r["hour"].replace(tzinfo=UTC), r["app_key"], r["service"]): r for r in result}
    want = grouped(CALLS, lambda c: (hour_of(c), c.app, c.service))
    assert_view(got, want)
    assert {k: set(v) - set(want[k]) for k, v in got.items()} == {k: set(KPI_HOURLY_HEAD[:3]) for k in got}
    # the one row that had the late CDR, the re-pushed one and the racing duplicate
    nine = got[(datetime(2024, 3, 12, 9, tzinfo=UTC), APP_A, "voice")]
    assert (nine["attempts"], nine["answered"], nine["ner_numerator"]) == (5, 2, 4)
    assert nine["acd_seconds"] == pytest.approx((60 + 125) / 2)


def test_kpi_daily_and_rollup_of_hourly_sums(loaded: tuple[Any, str]) -> None:
    client, db = loaded
    got = {(r["day"], r["app_key"], r["service"]): r for r in rows(client, f"SELECT * FROM {db}.kpi_daily")}
    assert_view(got, grouped(CALLS, lambda c: (DAY, c.app, c.service)))
    rolled = rows(client, f"""
        SELECT app_key, service, sum(attempts) AS n_attempts, sum(answered) AS n_answered,
               n_answered / nullIf(n_attempts, 0) AS asr, sum(ner_numerator) / nullIf(n_attempts, 0) AS ner,
               sum(talk_seconds_sum) / nullIf(n_answered, 0) AS acd_seconds
        FROM {db}.kpi_hourly GROUP BY app_key, service""")
    for r in rolled:
        daily = got[(DAY, r["app_key"], r["service"])]
        assert (r["n_attempts"], r["n_answered"]) == (daily["attempts"], daily["answered"])
        for column in ("asr", "ner", "acd_seconds"):
            assert same(r[column], daily[column]), column
    # averaging the hourly ratios would be wrong here: app A voice has 5 attempts at 09h, 2 at 10h
    hourly_asr = [r["asr"] for r in rows(client, f"SELECT asr FROM {db}.kpi_hourly WHERE app_key = '{APP_A}' "
                                                 "AND service = 'voice'")]
    assert sum(hourly_asr) / len(hourly_asr) != pytest.approx(got[(DAY, APP_A, "voice")]["asr"])


def test_failure_causes_in_words(loaded: tuple[Any, str]) -> None:
    client, db = loaded
    result = rows(client, f"SELECT * FROM {db}.failure_causes")
    got = {(r["app_key"], r["service"], r["failure_category"], r["failure_reason"]): (r["calls"], r["user_caused"])
           for r in result}
    want: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for c in CALLS:
        if not c.answered:
            category, reason = Q850[c.q850]
            want[(c.app, c.service, category, reason)][0] += 1
            want[(c.app, c.service, category, reason)][1] = int(category in USER_CAUSED)
    assert got == {k: tuple(v) for k, v in want.items()}
    assert {r["day"] for r in result} == {DAY}


def test_kpi_by_number_and_binding(loaded: tuple[Any, str]) -> None:
    client, db = loaded
    got = {(r["day"], r["app_key"], r["service"], r["bind_num"]): r
           for r in rows(client, f"SELECT * FROM {db}.kpi_by_number")}
    want = grouped(CALLS, lambda c: (DAY, c.app, c.service, c.bind))
    columns = ["attempts", "answered", "asr", "ner", "acd_seconds", "pdd_p50_seconds", "pdd_p95_seconds",
               "ring_avg_seconds", "ner_numerator", "failed", "talk_seconds_sum", "setup_samples", "ring_samples",
               "ring_seconds_sum", "recordings"]
    assert_view(got, {k: {c: v[c] for c in columns} for k, v in want.items()})
    got_b = {(r["app_key"], r["subscription_id"], r["bind_num"]): r
             for r in rows(client, f"SELECT * FROM {db}.kpi_by_binding")}
    want_b = grouped([c for c in CALLS if c.sub], lambda c: (c.app, c.sub, c.bind))
    assert_view(got_b, {k: {c: v[c] for c in ("attempts", "answered", "asr", "ner", "acd_seconds", "recordings")}
                        for k, v in want_b.items()})


def test_ratios_are_null_without_a_denominator(loaded: tuple[Any, str]) -> None:
    client, db = loaded
    # app B voice at 10h: one rejected call that alerted after 6 s
    unanswered = rows(client, f"SELECT attempts, answered, asr, acd_seconds, pdd_p50_seconds FROM {db}.kpi_hourly "
                              f"WHERE hour = '2024-03-12 10:00:00' AND app_key = '{APP_B}' AND service = 'voice'")
    assert unanswered == [{"attempts": 1, "answered": 0, "asr": 0.0, "acd_seconds": None, "pdd_p50_seconds": 6.0}]
    empty = rows(client, f"SELECT sum(answered) / nullIf(sum(attempts), 0) AS asr FROM {db}.kpi_hourly "
                         "WHERE hour < '2000-01-01 00:00:00'")
    assert empty == [{"asr": None}]


def doc_queries() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_doc_examples_run(loaded: tuple[Any, str], settings: Settings) -> None:
    _, db = loaded
    queries = doc_queries()
    assert 6 <= len(queries) <= 12
    for query in queries:
        assert "callstream." in query
        sql = query.replace("callstream.", f"{db}.")
        out = run_sql(settings, sql, "TabSeparatedWithNames").decode()
        assert len(out.splitlines()) >= 2, f"no rows from the example:\n{query}"


def test_call_timeline_orders_events_and_cdr(settings: Settings) -> None:
    client = store.connect(settings)
    apply_migrations(settings, client)
    received = datetime(2024, 3, 12, 9, 17, tzinfo=UTC)
    records = []
    for offset, name in enumerate(["voice_callback_status_answer.json", "voice_callback_cdr_single.json",
                                   "voice_callback_status_callout.json", "voice_callback_status_disconnect.json",
                                   "voice_callback_status_alerting.json"]):
        body = sample_bytes(name)
        value = encode("raw_envelope", {
            "id": uuid.uuid4().hex, "received_at": int(received.timestamp() * 1_000_000), "service": "voice",
            "path": "/notify/voice", "event_type": orjson.loads(body)["eventType"], "app_key": TEST_APP_KEY,
            "auth_scheme": "aksk", "content_type": "application/json", "remote_addr": "127.0.0.1", "body": body,
        })
        records.append(ConsumerRecord("raw", 0, offset, 0, 0, None, value, None, 0, len(value), []))
    load(settings, client, records)
    session = orjson.loads(sample_bytes("voice_callback_cdr_single.json"))["feeLst"][0]["sessionId"]
    timeline = rows(client, f"SELECT source, kind, detail FROM {settings.clickhouse_database}.call_timeline "
                            f"WHERE session_id = '{session}' ORDER BY time, seq")
    assert [(r["source"], r["kind"]) for r in timeline] == [
        ("event", "callout"), ("event", "alerting"), ("event", "answer"), ("event", "disconnect"),
        ("cdr", "answered"),
    ]
    assert timeline[-1]["detail"] == "talk 65 s"

"""What depends on the stored history, on the real engine: X-number status transitions (a repeat of the
latest state is a duplicate, a change back is kept, midnight changes nothing), event keys that tell
different events apart, and callback legs derived from the records (the same after a restart)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from callstream.reconcile import expected_records, stored_keys
from consumers.load import ClickHouseSink
from consumers.metrics import ConsumerMetrics
from consumers.pipeline import Pipeline
from core import store
from core.settings import Settings
from schemas.avro_codec import encode
from schemas.migrate import apply_migrations
from tests.conftest import TEST_APP_KEY, TEST_PRIVACY_APP_KEY, sample_bytes

pytestmark = pytest.mark.timeout(120)
NUMBER = "+8617000000009"


def push(body: dict[str, Any], service: str, at: datetime, nid: str | None = None) -> ConsumerRecord[bytes, bytes]:
    value = encode("raw_envelope", {
        "id": nid or uuid.uuid4().hex, "received_at": int(at.timestamp() * 1_000_000), "service": service,
        "path": f"/notify/{service}", "event_type": str(body.get("eventType", "")),
        "app_key": TEST_PRIVACY_APP_KEY if service == "privacy" else TEST_APP_KEY, "auth_scheme": "aksk",
        "content_type": "application/json", "remote_addr": "127.0.0.1", "body": orjson.dumps(body),
    })
    return ConsumerRecord("raw", 0, 0, 0, 0, None, value, None, 0, len(value), [])


def status(code: str, at: datetime, cause: str | None = None) -> ConsumerRecord[bytes, bytes]:
    info = {"number": NUMBER, "status": code, **({"cause": cause} if cause else {})}
    return push({"eventType": "numStatus", "numInfo": [info]}, "privacy", at)


def deliver(settings: Settings, client: Any, records: list[ConsumerRecord[bytes, bytes]]) -> None:
    """One batch through a fresh pipeline: nothing is remembered between two calls but the store."""
    pipeline = Pipeline(settings, ClickHouseSink(client, settings.clickhouse_database), None,
                        ConsumerMetrics(CollectorRegistry()))
    asyncio.run(pipeline.deliver(pipeline.prepare(records)))


@pytest.fixture
def client(settings: Settings) -> Any:
    client = store.connect(settings)
    apply_migrations(settings, client)
    return client


def states(client: Any, db: str) -> list[tuple[Any, ...]]:
    return store.query_rows(client, f"SELECT status, cause FROM {db}.number_status FINAL ORDER BY received_at")


def at(hour: int, minute: int, second: int, day: int = 12) -> datetime:
    return datetime(2024, 3, day, hour, minute, second, tzinfo=UTC)


def test_a_number_flapping_keeps_every_change(settings: Settings, client: Any) -> None:
    db = settings.clickhouse_database
    deliver(settings, client, [status("10", at(8, 0, 0), "2")])
    deliver(settings, client, [status("5", at(9, 0, 0))])
    deliver(settings, client, [status("10", at(10, 0, 0), "2")])  # unavailable again, same UTC day
    assert states(client, db) == [(10, 2), (5, None), (10, 2)]
    deliver(settings, client, [status("10", at(10, 0, 5), "2")])  # a re-push of the latest state
    assert len(states(client, db)) == 3
    # within one batch too, in receipt order, whatever order the records come in
    deliver(settings, client, [status("10", at(11, 0, 3), "2"), status("5", at(11, 0, 1)),
                               status("5", at(11, 0, 2))])
    assert states(client, db) == [(10, 2), (5, None), (10, 2), (5, None), (10, 2)]


def test_a_repush_across_midnight_is_one_row(settings: Settings, client: Any) -> None:
    deliver(settings, client, [status("9", at(23, 59, 58))])
    deliver(settings, client, [status("9", at(0, 0, 3, day=13))])
    assert states(client, settings.clickhouse_database) == [(9, None)]


def test_events_that_differ_are_kept_and_a_repush_is_not(settings: Settings, client: Any) -> None:
    db = settings.clickhouse_database
    base = orjson.loads(sample_bytes("voice_notify_status_collectInfo.json"))
    other = orjson.loads(orjson.dumps(base))
    other["statusInfo"]["digitInfo"] = "2"  # same second, a different key pressed
    untimed = {"eventType": "disconnect", "statusInfo": {"sessionId": "s-untimed", "stateCode": 0, "userData": "a"}}
    untimed_b = {"eventType": "disconnect", "statusInfo": {"sessionId": "s-untimed", "stateCode": 0, "userData": "b"}}
    now = at(9, 0, 0)
    deliver(settings, client, [push(b, "voice", now) for b in (base, other, untimed, untimed_b)])
    deliver(settings, client, [push(base, "voice", at(9, 0, 1))])  # the same body again
    got = store.query_rows(client, f"SELECT event_type, digit_info, user_data FROM {db}.call_events FINAL "
                                   "ORDER BY event_type, digit_info, user_data")
    assert [(e, d) for e, d, _ in got if e == "collectInfo"] == [("collectInfo", base["statusInfo"]["digitInfo"]),
                                                                 ("collectInfo", "2")]
    assert [u for e, _, u in got if e == "disconnect"] == ["a", "b"]


def test_callback_legs_come_from_the_records_not_the_process(settings: Settings, client: Any) -> None:
    db = settings.clickhouse_database
    names = ["voice_callback_status_callout.json", "voice_callback_status_alerting.json",
             "voice_callback_status_answer.json", "voice_callback_status_disconnect.json"]
    bodies = [orjson.loads(sample_bytes(n)) for n in names]
    deliver(settings, client, [push(bodies[0], "voice", at(9, 15, 14))])
    deliver(settings, client, [push(b, "voice", at(9, 16, 41)) for b in bodies[1:]])  # after a restart
    session = bodies[0]["statusInfo"]["sessionId"]
    legs = store.query_rows(client, f"SELECT event_type, leg FROM {db}.call_events WHERE session_id = '{session}' "
                                    "ORDER BY event_seq")
    assert legs == [("callout", 1), ("alerting", 1), ("answer", 1), ("disconnect", 2)]
    # a replay in another order into another store gives the same legs
    settings_b = settings.model_copy(update={"clickhouse_database": db + "_replay"})
    apply_migrations(settings_b, client)
    deliver(settings_b, client, [push(b, "voice", at(9, 16, 41)) for b in reversed(bodies)])
    replayed = store.query_rows(client, f"SELECT event_type, leg FROM {db}_replay.call_events "
                                        f"WHERE session_id = '{session}' ORDER BY event_seq")
    assert replayed == legs


def test_reconcile_accounts_every_status_of_a_flapping_number(settings: Settings, client: Any) -> None:
    records = [status("10", at(8, 0, 0), "2"), status("5", at(9, 0, 0)), status("10", at(10, 0, 0), "2"),
               status("10", at(10, 0, 5), "2")]
    for record in records:
        deliver(settings, client, [record])
    expected = expected_records(settings, [r.value for r in records])
    keys = set().union(*(k for (_, _, table), k in expected.keys.items() if table == "number_status"))
    assert len(keys) == 2  # two states; the stored rows are three changes
    assert stored_keys(settings, "number_status", keys) == keys

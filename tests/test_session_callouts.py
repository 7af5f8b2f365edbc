"""session_callouts (0018_session_callouts.sql) on real chDB: every callout stored in call_events is in it,
once, the legs' lookup read from it gives what reading call_events gives, `migrate` fills it for the
events stored before it existed, and retention and erasure reach it."""

from __future__ import annotations

import random

import pytest

from callstream.erase import erase_number
from consumers.load import ClickHouseSink
from consumers.numbers import policy_from_settings
from core import store
from core.settings import Settings
from schemas import CALLOUTS_TABLE
from schemas.migrate import apply_migrations
from schemas.retention import current_ttl_days

EVENT_TYPES = ("callout", "alerting", "answer", "disconnect", "callout")
#: the legs' lookup as it read call_events before 0018 (consumers/load.py keeps it for older stores)
FROM_EVENTS = ("SELECT session_id, min(tuple(toUnixTimestamp64Milli(event_time), toUnixTimestamp64Micro(received_at), "
               "called)) FROM {db}.call_events WHERE session_id IN {{sessions:Array(String)}} "
               "AND event_type = 'callout' GROUP BY session_id")


def _events(rng: random.Random, sessions: int, start_key: int) -> list[tuple[int, str, str, int, str]]:
    """(dedup_key, session_id, event_type, event second, called): five events a session, two of them
    callouts to two numbers, times drawn so that a later event may carry an earlier time."""
    out = []
    for s in range(sessions):
        session = f"1201_{start_key + s}_4294967295_20240312@callenabler245.huaweicaas.com"
        for i, event_type in enumerate(EVENT_TYPES):
            called = f"+86138{rng.randrange(10**8):08d}" if event_type == "callout" else ""
            out.append((start_key * 10 + s * 10 + i, session, event_type, rng.randrange(600), called))
    return out


def _store(settings: Settings, rows: list[tuple[int, str, str, int, str]], token: str | None = None) -> None:
    """One insert into call_events (one part), received now (inside the retention TTL)."""
    db = settings.clickhouse_database
    values = ", ".join(
        f"({key}, 'n', 'app', '{session}', '{event_type}', toDateTime64('2024-03-12 10:00:00', 3, 'UTC') + {second}, "
        f"now64(6), '{called}', '')" for key, session, event_type, second, called in rows)
    client = store.connect(settings)
    with store.locked(client):
        client.command(
            f"INSERT INTO {db}.call_events (dedup_key, notification_id, app_key, session_id, event_type, event_time, "
            f"received_at, called, raw) VALUES {values}",
            settings={"insert_deduplication_token": token} if token else None)


def _from_events(settings: Settings, sessions: list[str]) -> dict[str, tuple[tuple[int, int], str]]:
    rows = store.query_rows(store.connect(settings), FROM_EVENTS.format(db=settings.clickhouse_database),
                            {"sessions": store.string_array(sorted(sessions))})
    return {str(s): ((int(first[0]), int(first[1])), str(first[2])) for s, first in rows}


def _count(settings: Settings, table: str) -> int:
    return int(store.query_rows(store.connect(settings),
                                f"SELECT count() FROM {settings.clickhouse_database}.{table}")[0][0])


def test_first_callouts_from_the_session_table_equal_reading_call_events(settings: Settings) -> None:
    apply_migrations(settings)
    sink = ClickHouseSink(store.connect(settings), settings.clickhouse_database)
    assert sink.has_table(CALLOUTS_TABLE)
    rng = random.Random(18)
    batches = [_events(rng, 40, 1000 * (b + 1)) for b in range(4)]
    for rows in batches:  # four parts
        _store(settings, rows)
    _store(settings, batches[0][:10])  # keys stored twice (a loader race): no minimum changes
    stored = [row for rows in batches for row in rows]
    assert _count(settings, CALLOUTS_TABLE) == sum(1 for r in stored if r[2] == "callout") + 4
    sessions = sorted({r[1] for r in stored})
    asked = rng.sample(sessions, 100) + ["1201_none_4294967295_20240312@callenabler245.huaweicaas.com"]
    found = sink.first_callouts(asked)
    assert found == _from_events(settings, asked)
    assert len(found) == 100  # the session without a stored callout is absent, as before
    # the earliest callout by event time, then receipt (a later insert is received later), then number
    inserts = [*batches, batches[0][:10]]
    expected = {}
    for order, rows in enumerate(inserts):
        for _, session, event_type, second, called in rows:
            if event_type == "callout" and session in found:
                expected[session] = min(expected.get(session, (second, order, called)), (second, order, called))
    assert {session: first[1] for session, first in found.items()} == {s: e[2] for s, e in expected.items()}

def test_a_retried_insert_reaches_the_session_table_once(settings: Settings) -> None:
    apply_migrations(settings)
    rows = _events(random.Random(3), 10, 7000)
    _store(settings, rows, token="batch-1")
    _store(settings, rows, token="batch-1")  # the loader's retry of the same block: dropped by both tables
    assert _count(settings, "call_events") == len(rows)
    assert _count(settings, CALLOUTS_TABLE) == sum(1 for r in rows if r[2] == "callout")


def test_migrate_fills_it_from_the_events_stored_before(settings: Settings) -> None:
    apply_migrations(settings, upto=17)
    rows = _events(random.Random(5), 30, 9000)
    _store(settings, rows)
    older = ClickHouseSink(store.connect(settings), settings.clickhouse_database)
    sessions = sorted({r[1] for r in rows})
    assert not older.has_table(CALLOUTS_TABLE)
    before = older.first_callouts(sessions)  # a store before 0018: read from call_events
    assert len(before) == 30
    apply_migrations(settings)
    assert _count(settings, CALLOUTS_TABLE) == sum(1 for r in rows if r[2] == "callout")
    assert ClickHouseSink(store.connect(settings), settings.clickhouse_database).first_callouts(sessions) == before


def test_retention_and_erasure_reach_the_session_table(make_settings) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(event_retention_days=30, number_pepper="test-pepper-0123456789abcdef")
    apply_migrations(settings)
    assert current_ttl_days(store.connect(settings), settings.clickhouse_database, CALLOUTS_TABLE) == 30
    rows = _events(random.Random(9), 5, 4000)
    policy = policy_from_settings(settings)
    hashed = [(k, s, t, sec, policy.apply("hash", called) if called else "") for k, s, t, sec, called in rows]
    _store(settings, hashed)  # stored as the loader stores them: called hashed
    number = next(r[4] for r in rows if r[4])
    report = erase_number(settings, number)
    assert report.deleted[CALLOUTS_TABLE] == 1 and report.deleted["call_events"] == 1
    assert _count(settings, CALLOUTS_TABLE) == sum(1 for r in rows if r[2] == "callout") - 1


@pytest.mark.parametrize("cluster", ["c1"])
def test_on_a_cluster_the_view_feeds_the_local_table(settings: Settings, cluster: str) -> None:
    from schemas.migrate import discover, rendered

    migration = next(m for m in discover() if m.name == "session_callouts")
    statements = rendered(migration.text(), settings.clickhouse_database, cluster)
    db = settings.clickhouse_database
    assert any(f"CREATE TABLE IF NOT EXISTS {db}.session_callouts_local ON CLUSTER {cluster}" in s
               and "ReplicatedReplacingMergeTree" in s for s in statements)
    assert any("ENGINE = Distributed" in s and "cityHash64(session_id)" in s for s in statements)
    view = next(s for s in statements if "MATERIALIZED VIEW" in s)
    assert f"TO {db}.session_callouts_local" in view and f"FROM {db}.call_events_local" in view

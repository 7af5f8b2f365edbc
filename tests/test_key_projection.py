"""The by_key projection of call_events and cdrs (schemas/projections.py) on real chDB: migrate adds it where
the engine can hold it (cdrs from 0019 on), and the key lookup through it gives the same answer as reading
the table, in every part, with keys stored twice, and when some parts lack the projection. The sinks here
ask the projection at any table size (``projection_min_rows=0``); the last test shows the default choice."""

from __future__ import annotations

import logging
import random

import pytest

from consumers import load
from consumers.load import ClickHouseSink
from core import store
from core.settings import Settings
from schemas import projections
from schemas.migrate import apply_migrations, discover
from schemas.projections import KEY_PROJECTION, ensure_key_projection

MARCH = "2024-03-12 10:00:00"
APRIL = "2024-04-02 08:00:00"


def _store_events(settings: Settings, keys: list[int], notification: str, at: str) -> None:
    """Rows of ``keys`` in call_events, one insert (one part), received now (inside the retention TTL)."""
    db = settings.clickhouse_database
    values = ", ".join(f"({key}, '{notification}', 'app', toDateTime64('{at}', 3, 'UTC'), now64(6), '')" for key in keys)
    store.query_rows(store.connect(settings),
                     f"INSERT INTO {db}.call_events (dedup_key, notification_id, app_key, event_time, received_at, raw) "
                     f"VALUES {values}")


def _store_cdrs(settings: Settings, keys: list[int], notification: str, at: str) -> None:
    """Rows of ``keys`` in cdrs (one part); the table computes each ``raw_digest`` (MATERIALIZED)."""
    db = settings.clickhouse_database
    values = ", ".join(f"({key}, '{notification}', 'app', toDateTime64('{at}', 3, 'UTC'), now64(6), "
                       f"'{{\"sessionId\":\"s{key}\"}}')" for key in keys)
    store.query_rows(store.connect(settings),
                     f"INSERT INTO {db}.cdrs (dedup_key, notification_id, app_key, call_time, received_at, raw) "
                     f"VALUES {values}")


@pytest.fixture
def sink(settings: Settings) -> ClickHouseSink:
    apply_migrations(settings)
    return ClickHouseSink(store.connect(settings), settings.clickhouse_database, projection_min_rows=0)


def test_migrate_gives_call_events_and_cdrs_the_projection(settings: Settings, sink: ClickHouseSink) -> None:
    assert sink.has_key_projection("call_events")
    assert sink.has_key_projection("cdrs")
    assert ensure_key_projection(settings) == []  # there already: nothing to do
    assert ensure_key_projection(settings, cluster="c1") == []  # a cluster's loader reads the Distributed table


def test_an_engine_without_projection_settings_keeps_the_plain_lookup(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On ClickHouse before 25.12 migrate leaves call_events alone, and the lookup reads the table."""
    monkeypatch.setattr(projections, "engine_version", lambda client: (25, 8))
    apply_migrations(settings)
    sink = ClickHouseSink(store.connect(settings), settings.clickhouse_database, projection_min_rows=0)
    assert not sink.has_key_projection("call_events")
    _store_events(settings, [5, 6], "n", MARCH)
    assert sink.stored_notifications({"call_events": [4, 5, 6, 7]})["call_events"] == {5: ("n", ""), 6: ("n", "")}
    monkeypatch.undo()  # the engine upgraded: the next migrate adds it, for the rows already stored too
    assert ensure_key_projection(settings)
    assert ClickHouseSink(store.connect(settings), settings.clickhouse_database, projection_min_rows=0).stored_notifications(
        {"call_events": [4, 5, 6, 7]})["call_events"] == {5: ("n", ""), 6: ("n", "")}


def test_lookup_through_the_projection_equals_reading_the_table(settings: Settings, sink: ClickHouseSink) -> None:
    rng = random.Random(18)
    batches = [[rng.getrandbits(64) for _ in range(300)] for _ in range(4)]
    for i, keys in enumerate(batches):  # four parts, two months
        _store_events(settings, keys, f"n{i}", MARCH if i % 2 else APRIL)
    again = batches[0][:20]
    _store_events(settings, again, "n-again", MARCH)  # keys stored twice, by two notifications
    cdr_keys = [rng.getrandbits(64) for _ in range(5)]
    wanted_events = sorted({*rng.sample([k for b in batches for k in b], 400), *again,
                            *(rng.getrandbits(64) for _ in range(3000))})
    found = sink.stored_notifications({"call_events": wanted_events, "cdrs": cdr_keys})
    plain = {key: owner for _, key, owner, _ in sink._lookup({"call_events": wanted_events})}
    stored = {k for b in batches for k in b}
    assert set(found["call_events"]) == set(plain) == stored.intersection(wanted_events)
    twice = set(again)  # any() of two owners: either answer is one of them, in both ways of asking
    assert all(found["call_events"][k][0] == owner for k, owner in plain.items() if k not in twice)
    assert all({found["call_events"][k][0], plain[k]} <= {"n0", "n-again"} for k in twice)
    assert found["cdrs"] == {}


def test_parts_without_the_projection_are_read_the_plain_way(
    settings: Settings, sink: ClickHouseSink, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(7)
    march, april = [rng.getrandbits(64) for _ in range(50)], [rng.getrandbits(64) for _ in range(50)]
    _store_events(settings, march, "march", MARCH)
    _store_events(settings, april, "april", APRIL)
    db = settings.clickhouse_database
    store.query_rows(store.connect(settings), f"ALTER TABLE {db}.call_events CLEAR PROJECTION {KEY_PROJECTION} "
                                              "IN PARTITION 202403 SETTINGS mutations_sync = 2")
    lacking = store.query_rows(store.connect(settings), (
        "SELECT count() FROM system.parts WHERE database = {db:String} AND table = 'call_events' AND active AND name "
        "NOT IN (SELECT parent_name FROM system.projection_parts WHERE database = {db:String} AND active)"),
        {"db": db})
    assert lacking[0][0] >= 1  # the March part has no projection now
    wanted = sorted([*march[:10], *april[:10], *(rng.getrandbits(64) for _ in range(100))])
    with caplog.at_level(logging.WARNING, logger="consumers.load"):
        found = sink.stored_notifications({"call_events": wanted})
    assert set(found["call_events"]) == {*march[:10], *april[:10]}
    assert {owner for owner, _ in found["call_events"].values()} == {"march", "april"}
    assert any("without its by_key projection" in record.getMessage() for record in caplog.records)


def test_a_lightweight_delete_on_call_events_is_refused(settings: Settings, sink: ClickHouseSink) -> None:
    """A lightweight delete would only mask the row, and a query answered from the projection would still
    return it: the table refuses it (erase uses ALTER TABLE ... DELETE, tests/test_erase.py)."""
    _store_events(settings, [11, 12], "n", MARCH)
    db = settings.clickhouse_database
    with pytest.raises(Exception, match="(?i)projection"):
        store.query_rows(store.connect(settings), f"DELETE FROM {db}.call_events WHERE dedup_key = 11")
    assert sorted(r[0] for r in store.query_rows(store.connect(settings), f"SELECT dedup_key FROM {db}.call_events")) == [11, 12]


def test_cdrs_get_the_projection_with_0019_and_not_before(settings: Settings) -> None:
    """A CDR has room for the projection once its session_id is read from raw (its 200 B budget)."""
    session_alias = next(m for m in discover() if m.name == "cdr_session_alias")
    apply_migrations(settings, upto=session_alias.version - 1)
    sink = ClickHouseSink(store.connect(settings), settings.clickhouse_database, projection_min_rows=0)
    assert sink.has_key_projection("call_events") and not sink.has_key_projection("cdrs")
    _store_cdrs(settings, [11, 12], "n-before", MARCH)
    assert session_alias.label in apply_migrations(settings)
    sink = ClickHouseSink(store.connect(settings), settings.clickhouse_database, projection_min_rows=0)
    assert sink.has_key_projection("cdrs")
    found = sink.stored_notifications({"cdrs": [10, 11, 12, 13]})["cdrs"]
    assert {key: owner for key, (owner, _) in found.items()} == {11: "n-before", 12: "n-before"}


def test_cdr_lookup_through_the_projection_equals_reading_the_table(settings: Settings, sink: ClickHouseSink) -> None:
    rng = random.Random(19)
    batches = [[rng.getrandbits(64) for _ in range(200)] for _ in range(4)]
    for i, keys in enumerate(batches):  # four parts, two months
        _store_cdrs(settings, keys, f"n{i}", MARCH if i % 2 else APRIL)
    wanted = sorted({*rng.sample([k for b in batches for k in b], 300), *(rng.getrandbits(64) for _ in range(2000))})
    found = sink.stored_notifications({"cdrs": wanted})["cdrs"]
    plain = {key: (owner, digest) for _, key, owner, digest in sink._lookup({"cdrs": wanted})}
    assert found == plain
    assert set(found) == {k for b in batches for k in b}.intersection(wanted)
    assert all(digest not in ("", "0") for _, digest in found.values())  # the stored raw digest came back


def test_a_small_table_is_read_the_plain_way_and_a_large_one_through_its_projection(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both ways give one answer; the projection is asked once the table holds ``projection_min_rows``."""
    apply_migrations(settings)
    monkeypatch.setattr(load, "SIZE_REFRESH_S", 0.0)  # read the sizes at every lookup
    sink = ClickHouseSink(store.connect(settings), settings.clickhouse_database, projection_min_rows=500)
    assert load.PROJECTION_MIN_ROWS >= 100_000  # the default, measured (consumers/load.py)
    rng = random.Random(20)
    first = [rng.getrandbits(64) for _ in range(300)]
    _store_events(settings, first, "n1", MARCH)
    assert not sink.reads_through_projection("call_events")
    small = sink.stored_notifications({"call_events": first[:50] + [1, 2, 3]})["call_events"]
    second = [rng.getrandbits(64) for _ in range(300)]
    _store_events(settings, second, "n2", APRIL)
    assert sink.reads_through_projection("call_events") and not sink.reads_through_projection("cdrs")
    large = sink.stored_notifications({"call_events": first[:50] + [1, 2, 3] + second[:10]})["call_events"]
    assert small == {k: ("n1", "") for k in first[:50]}
    assert large == {**small, **{k: ("n2", "") for k in second[:10]}}
    assert not ClickHouseSink(store.connect(settings), settings.clickhouse_database,
                              projection_min_rows=10_000).reads_through_projection("call_events")

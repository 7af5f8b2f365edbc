"""The ClickHouse sink on real chDB: error classification, key lookup, poison isolation."""

from __future__ import annotations

from typing import Any

import pytest
from clickhouse_connect.driver.binding import format_bind_value
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from consumers.load import ClickHouseSink, classify_store_error
from core import store
from core.errors import StoreFailed, StoreRejected, StoreUnavailable
from core.settings import Settings
from schemas.migrate import apply_migrations


def _row(key: int, **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"dedup_key": key, "notification_id": "n", "record_index": 0, "service": "privacy",
                           "received_at": 1_710_209_704_000_000, "app_key": "a", "auth_app_key": "a", "number": "+86170",
                           "status": 5, "cause": None, "status_desc": "Normal", "cause_desc": "",
                           "available": 1, "receipt_day": __import__("datetime").date(2024, 3, 12),
                           "extra": "{}", "raw": "{}"}
    row.update(over)
    return row


def test_classification_of_real_errors(settings: Settings) -> None:
    client = store.connect(settings)
    with pytest.raises(Exception) as missing:
        with store.locked(client):
            client.query(f"SELECT 1 FROM {settings.clickhouse_database}.nope")
    assert isinstance(classify_store_error(missing.value), StoreUnavailable)  # schema missing: retry, do not drop
    with pytest.raises(Exception) as syntax:
        with store.locked(client):
            client.query("SELEC 1")
    assert isinstance(classify_store_error(syntax.value), StoreRejected)
    assert isinstance(classify_store_error(OperationalError("connection refused")), StoreUnavailable)
    assert isinstance(classify_store_error(TypeError("bad value")), StoreRejected)
    assert StoreUnavailable.retriable and not StoreRejected.retriable
    unknown = classify_store_error(RuntimeError("a bug in the loader"))
    assert isinstance(unknown, StoreFailed) and unknown.retriable and unknown.max_retries == 5
    assert isinstance(classify_store_error(DatabaseError("no code in this text")), StoreFailed)


def test_lookup_token_and_poison_isolation(settings: Settings) -> None:
    apply_migrations(settings)
    sink = ClickHouseSink(store.connect(settings), settings.clickhouse_database)
    rows = [_row(1), _row(2), _row(3, status="not a number"), _row(2**64 - 1)]
    loaded, bad = sink.insert_isolating("number_status", rows)
    assert loaded == 3 and [r["dedup_key"] for r, _ in bad] == [3]
    assert isinstance(bad[0][1], StoreRejected)
    assert sink.existing_keys("number_status", [1, 2, 3, 4, 2**64 - 1]) == {1, 2, 2**64 - 1}
    assert sink.existing_keys("number_status", [4, 2, 1], chunk=1) == {1, 2}  # one query per chunk
    assert sink.insert("number_status", [_row(1), _row(2)]) == 2  # same rows, same token: no-op
    assert store.query_rows(sink.client, f"SELECT count() FROM {settings.clickhouse_database}.number_status")[0][0] == 3


def test_missing_table_says_what_to_do(settings: Settings) -> None:
    sink = ClickHouseSink(store.connect(settings), settings.clickhouse_database)
    with pytest.raises(StoreUnavailable, match="callstream migrate"):
        sink.insert("cdrs", [{"dedup_key": 1}])


def test_key_arrays_bind_unescaped_and_exactly(settings: Settings) -> None:
    """store.uint64_array is sent as formatted (clickhouse-connect would escape a str character by
    character): the engine reads every key back, the extremes of UInt64 included."""
    client = store.connect(settings)
    keys = [0, 1, 2**63, 2**64 - 1, *range(10_000, 16_000)]
    got = store.query_rows(client, "SELECT {keys:Array(UInt64)}", {"keys": store.uint64_array(keys)})
    assert got == [(keys,)]


def test_string_arrays_bind_as_clickhouse_connect_would_write_them(settings: Settings) -> None:
    """store.string_array writes the text clickhouse-connect's own formatter writes for a list of str,
    and the engine reads back every value, the ones that need escaping included."""
    values = ["plain", "a'b", "back\\slash", "tab\there", "line\nbreak", "tick`", "ünïcode", "", "\\'", "'"]
    assert str(store.string_array(values)) == format_bind_value(values, None, True)
    client = store.connect(settings)
    assert store.query_rows(client, "SELECT {v:Array(String)}", {"v": store.string_array(values)}) == [(values,)]


def test_string_arrays_without_escapes_take_the_joined_path(settings: Settings) -> None:
    """Values that need no escaping (session ids, numbers) are joined in one go: the same text as
    clickhouse-connect's formatter, for one value, many, none, and beside a value that needs escaping."""
    sessions = [f"1201_{i}_4294967295_20240312@callenabler245.huaweicaas.com" for i in range(300)]
    for values in (sessions, ["+8613800000000"], [], [""], ["ünïcode", "\r is not escaped\r"], [*sessions, "it's"]):
        assert str(store.string_array(values)) == format_bind_value(values, None, True), values
    client = store.connect(settings)
    assert store.query_rows(client, "SELECT {v:Array(String)}", {"v": store.string_array(sessions)}) == [(sessions,)]

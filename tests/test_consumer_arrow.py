"""The loader's Arrow insert blocks (``consumers.arrow_block``) store exactly the rows clickhouse-connect's
Native insert stores: every column of every table, compared in the real engine, on the samples and a
mutation corpus of them; a column type it does not map, and a bad value, behave as before."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pyarrow as pa
import pytest

from consumers.arrow_block import arrow_schema, arrow_type
from consumers.dedupe import unique_in_batch
from consumers.load import ClickHouseSink
from consumers.prepare import prepare_notifications
from core import store
from core.errors import StoreRejected
from core.settings import Settings
from schemas import ROW_TABLES
from schemas.migrate import apply_migrations
from tests.test_consumer_prepare import corpus


def test_column_types_map_to_arrow() -> None:
    assert arrow_type("UInt64") == (pa.uint64(), False)
    assert arrow_type("LowCardinality(String)") == (pa.binary(), False)
    assert arrow_type("Nullable(DateTime64(3, 'UTC'))") == (pa.timestamp("ms", "UTC"), True)
    assert arrow_type("DateTime64(6, 'UTC')") == (pa.timestamp("us", "UTC"), False)
    assert arrow_type("DateTime('UTC')") == (pa.timestamp("s", "UTC"), False)
    assert arrow_type("LowCardinality(Nullable(String))") == (pa.binary(), True)
    assert arrow_type("Array(String)") == (pa.list_(pa.binary()), False)
    assert arrow_type("Date") == (pa.date32(), False)
    for unmapped in ("UUID", "Decimal(10, 2)", "Map(String, String)", "Array(Nullable(String))", "DateTime64(2)"):
        assert arrow_type(unmapped) is None, unmapped
    assert arrow_schema([("a", "UInt8"), ("b", "UUID")]) is None  # one unmapped column: the Native insert


def _stored(sink: ClickHouseSink, table: str) -> list[tuple[Any, ...]]:
    columns = ", ".join(f"`{c}`" for c in sink.columns(table))
    return store.query_rows(sink.client, f"SELECT {columns} FROM {sink.database}.{table} FINAL ORDER BY dedup_key")


def test_arrow_and_native_inserts_store_the_same_rows(make_settings: Callable[..., Settings]) -> None:
    arrow_settings = make_settings()
    native_settings = make_settings(clickhouse_database=arrow_settings.clickhouse_database + "_native")
    client = store.connect(arrow_settings)
    sinks = {}
    for name, settings in (("arrow", arrow_settings), ("native", native_settings)):
        apply_migrations(settings, client)
        sinks[name] = ClickHouseSink(client, settings.clickhouse_database, arrow=name == "arrow")
    prepared = prepare_notifications(corpus(3000, seed=21), arrow_settings)
    assert all(prepared.tables[table] for table in ROW_TABLES)
    for table in ROW_TABLES:
        # one row a key, as the deliverer inserts them (statuses get their final keys on delivery)
        rows, _ = unique_in_batch(prepared.tables[table])
        refused = {}
        for name, sink in sinks.items():  # as the pipeline loads: a batch the store refuses is bisected
            loaded, bad = sink.insert_isolating(table, rows)
            refused[name] = sorted(row["dedup_key"] for row, _ in bad)
            assert loaded + len(bad) == len(rows)
        assert sinks["arrow"]._schemas[table] is not None, f"{table}: every column type maps to Arrow"
        assert refused["arrow"] == refused["native"], table  # e.g. a receipt day past ClickHouse's Date range
        arrow_rows, native_rows = _stored(sinks["arrow"], table), _stored(sinks["native"], table)
        assert len(arrow_rows) == len(rows) - len(refused["arrow"]) > 0
        assert arrow_rows == native_rows, table


def test_a_bad_value_is_rejected_and_isolated_as_before(settings: Settings) -> None:
    apply_migrations(settings)
    sink = ClickHouseSink(store.connect(settings), settings.clickhouse_database)
    good = {"dedup_key": 1, "notification_id": "n", "record_index": 0, "service": "privacy",
            "received_at": 1_710_209_704_000_000, "app_key": "a", "auth_app_key": "a", "number": "+86170",
            "status": 5, "cause": None, "status_desc": "Normal", "cause_desc": "", "available": 1,
            "receipt_day": date(2024, 3, 12), "extra": "{}", "raw": "{}"}
    not_nullable = {**good, "dedup_key": 2, "status_desc": None}  # a String column: no NULL in Arrow either
    out_of_range = {**good, "dedup_key": 3, "available": 300}  # UInt8
    with pytest.raises(StoreRejected):
        sink.insert("number_status", [not_nullable])
    loaded, bad = sink.insert_isolating("number_status", [good, not_nullable, out_of_range])
    assert loaded == 1 and sorted(row["dedup_key"] for row, _ in bad) == [2, 3]

"""schemas.avro_rows writes exactly the bytes fastavro writes, and falls back for anything unusual; its
C writer (when built) writes exactly the Python writer's bytes, on generated rows and on the consumer's
rows of the samples and a mutation corpus."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest

from consumers.prepare import prepare_notifications
from core.settings import Settings
from schemas import avro_rows
from schemas.avro_rows import encode_row, row_encoder
from schemas.avro_codec import MARKER, encode, schema_fingerprint, schema_json
from tests.test_consumer_prepare import corpus

SCHEMAS = {"cdrs": "cdr", "call_events": "call_event", "number_status": "number_status"}


def _row(name: str, seed: int) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for n, field in enumerate(schema_json(name)["fields"]):
        kind = field["type"]
        value: Any
        if kind == "string":
            value = ["", "voice", "+8613800000021", "h:" + "ab" * 16, "ü€😀" * seed, "x" * (60 + seed * 40)][(n + seed) % 6]
        elif isinstance(kind, list):
            value = None if (n + seed) % 3 == 0 else [0, -1, 1, 63, 64, -65, 2**31 - 1, -(2**31)][(n + seed) % 8]
        elif isinstance(kind, dict) and kind.get("logicalType") == "date":
            value = date(2024, 3, 12) if seed % 2 else 19_794
        elif isinstance(kind, dict):
            value = [0, 1_710_200_000_123, 1_710_200_000_123_456, -1][(n + seed) % 4]
        else:
            value = [0, 1, -1, 127, 128, 2**31 - 1, -(2**31)][(n + seed) % 7]
        row[field["name"]] = value
    return row


@pytest.mark.parametrize("name", ["cdr", "call_event", "number_status"])
@pytest.mark.parametrize("seed", range(6))
def test_bytes_equal_fastavro(name: str, seed: int) -> None:
    row = _row(name, seed)
    payload = encode_row(name, row)
    assert payload == encode(name, row)
    assert payload[:10] == MARKER + schema_fingerprint(name)


@pytest.mark.parametrize("name", ["cdr", "call_event", "number_status"])
def test_unusual_values_take_fastavro_path_with_its_result_or_error(name: str) -> None:
    fields = schema_json(name)["fields"]
    first_int = next(f["name"] for f in fields if f["type"] == "int")
    first_str = next(f["name"] for f in fields if f["type"] == "string")
    row = _row(name, 1)
    for bad in ({first_int: True}, {first_int: 2**40}, {first_str: 5}):
        changed = {**row, **bad}
        try:
            expected: bytes | type[BaseException] = encode(name, changed)
        except Exception as exc:  # noqa: BLE001 - whatever fastavro raises, encode_row must raise too
            expected = type(exc)
        if isinstance(expected, bytes):
            assert encode_row(name, changed) == expected
        else:
            with pytest.raises(expected):
                encode_row(name, changed)
    missing = dict(row)
    del missing[first_str]
    with pytest.raises(ValueError):
        encode(name, missing)
    with pytest.raises(ValueError):
        encode_row(name, missing)


def test_datetime_time_values_are_converted_like_fastavro() -> None:
    row = _row("cdr", 2)
    row["call_time"] = datetime(2024, 3, 12, 10, 0, 0, 123000).astimezone()
    assert encode_row("cdr", row) == encode("cdr", row)


@pytest.mark.parametrize("name", ["cdr", "call_event", "number_status"])
def test_as_text_fields_write_the_decimal_text_of_an_int(name: str) -> None:
    write = row_encoder(name, as_text=("dedup_key",))
    for key in (0, 7, 2**63 + 5, 2**64 - 1):
        row = {**_row(name, 3), "dedup_key": key}
        assert write(row) == encode(name, {**row, "dedup_key": str(key)})
    row = {**_row(name, 3), "dedup_key": "already text"}
    assert write(row) == encode(name, row)
    odd = {**_row(name, 3), "dedup_key": 1.5}  # neither int nor str: whatever fastavro says
    try:
        expected: bytes | type[BaseException] = encode(name, odd)
    except Exception as exc:  # noqa: BLE001
        expected = type(exc)
    if isinstance(expected, bytes):
        assert write(odd) == expected
    else:
        with pytest.raises(expected):
            write(odd)


def test_the_c_writer_is_built_here() -> None:
    # setup.py builds it wherever a C compiler is (CI included); without it the Python writer runs alone
    assert avro_rows.write_row is not None


@pytest.mark.parametrize("name", ["cdr", "call_event", "number_status"])
def test_c_writer_bytes_equal_the_python_writer(name: str) -> None:
    c_writer = row_encoder(name, ("dedup_key",))
    python_writer = row_encoder(name, ("dedup_key",), compiled=False)
    assert c_writer is not python_writer
    fields = schema_json(name)["fields"]
    odd_values: list[Any] = [None, True, 2**31, -(2**31) - 1, 2**63, -(2**63) - 1, 1.5, "5", b"x", "\ud800",
                             "ü€😀", "", date(1, 1, 1), date(9999, 12, 31), 2**64 - 1, -1]
    for seed in range(6):
        row = {**_row(name, seed), "dedup_key": 2**64 - 1 - seed}
        assert c_writer(row) == python_writer(row) == encode(name, {**row, "dedup_key": str(row["dedup_key"])})
        for field in fields:
            for value in odd_values:
                changed = {**row, field["name"]: value}
                outcomes = []
                for write in (c_writer, python_writer):
                    try:
                        outcomes.append(write(changed))
                    except Exception as exc:  # noqa: BLE001 - both must fail alike
                        outcomes.append(type(exc))
                assert outcomes[0] == outcomes[1], (field["name"], value)


def test_c_writer_on_the_consumers_rows() -> None:
    settings = Settings(apps="k:s", number_pepper="avro-rows-pepper-0123456789")
    prepared = prepare_notifications(corpus(3000, seed=31), settings)
    assert all(prepared.tables[table] for table in SCHEMAS)
    written = 0
    for table, rows in prepared.tables.items():
        c_writer = row_encoder(SCHEMAS[table], ("dedup_key",))
        python_writer = row_encoder(SCHEMAS[table], ("dedup_key",), compiled=False)
        for row in rows:
            assert c_writer(row) == python_writer(row)
            written += 1
    assert written > 300  # distinct rows: most mutations are refused or repeat a sample's key

"""Rows to one Arrow IPC stream, the block the loader inserts (``INSERT ... FORMAT ArrowStream``).

clickhouse-connect's ``insert`` serialises every value in Python (Native format); pyarrow converts a
column of Python values in C++, and ClickHouse (server or chDB) reads Arrow natively. The column types
come from the table (``system.columns``); a type this module does not map makes ``schema`` return None
and the caller insert through clickhouse-connect instead. The rows stored are the same either way
(tests/test_consumer_arrow.py compares both paths column by column); bench/consumer.py measures it.

    schema = arrow_schema([("dedup_key", "UInt64"), ("raw", "String")])
    body = arrow_stream(schema, [[1, 2], ["{}", "{}"]])     # bytes for raw_insert(fmt="ArrowStream")

Values are what the loader's rows hold: ints for times (epoch milliseconds for ``DateTime64(3)``,
microseconds for ``DateTime64(6)``, seconds for ``DateTime``), ``date`` for ``Date``, str or bytes
for strings, None for NULL. A value of another type raises ``TypeError``/``ValueError`` (pyarrow's
``ArrowTypeError``/``ArrowInvalid`` are those), which the loader turns into ``StoreRejected``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

_SCALARS: dict[str, pa.DataType] = {
    "UInt8": pa.uint8(), "UInt16": pa.uint16(), "UInt32": pa.uint32(), "UInt64": pa.uint64(),
    "Int8": pa.int8(), "Int16": pa.int16(), "Int32": pa.int32(), "Int64": pa.int64(),
    "Float32": pa.float32(), "Float64": pa.float64(),
    "String": pa.binary(),  # str values are written as their UTF-8, bytes as they are (ClickHouse String)
    "Date": pa.date32(),
}
_WRAPPER = re.compile(r"^(Nullable|LowCardinality)\((.*)\)$")
_ARRAY = re.compile(r"^Array\((.*)\)$")
_DATETIME64 = re.compile(r"^DateTime64\((\d)(?:,\s*'([^']*)')?\)$")
_DATETIME = re.compile(r"^DateTime(?:\('([^']*)'\))?$")
_UNITS = {0: "s", 3: "ms", 6: "us", 9: "ns"}


def arrow_type(ch_type: str) -> tuple[pa.DataType, bool] | None:
    """(Arrow type, nullable) for a ClickHouse column type; None when it is not mapped here."""
    nullable = False
    while (wrapped := _WRAPPER.match(ch_type)) is not None:
        nullable = nullable or wrapped.group(1) == "Nullable"
        ch_type = wrapped.group(2)
    if ch_type in _SCALARS:
        return _SCALARS[ch_type], nullable
    if (array := _ARRAY.match(ch_type)) is not None:
        inner = arrow_type(array.group(1))
        return (pa.list_(inner[0]), nullable) if inner is not None and not inner[1] else None
    if (dt64 := _DATETIME64.match(ch_type)) is not None:
        unit = _UNITS.get(int(dt64.group(1)))
        return (pa.timestamp(unit, dt64.group(2) or "UTC"), nullable) if unit else None
    if (dt := _DATETIME.match(ch_type)) is not None:
        return pa.timestamp("s", dt.group(1) or "UTC"), nullable
    return None


def arrow_schema(columns: Sequence[tuple[str, str]]) -> pa.Schema | None:
    """The Arrow schema of ``(name, ClickHouse type)`` columns; None when any type is not mapped."""
    fields = []
    for name, ch_type in columns:
        mapped = arrow_type(ch_type)
        if mapped is None:
            return None
        fields.append(pa.field(name, mapped[0], nullable=mapped[1]))
    return pa.schema(fields)


def arrow_stream(schema: pa.Schema, columns: Sequence[Sequence[Any]]) -> bytes:
    """One record batch of ``columns`` (in schema order) as an Arrow IPC stream. A None in a column
    that is not nullable raises ``ValueError`` (ClickHouse would store a default in its place)."""
    arrays = []
    for field, values in zip(schema, columns, strict=True):
        array = pa.array(values, type=field.type)
        if array.null_count and not field.nullable:
            raise ValueError(f"column {field.name} is not Nullable but holds None")
        arrays.append(array)
    batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()

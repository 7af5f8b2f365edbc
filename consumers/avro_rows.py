"""Avro single-object encoding of the flat downstream rows, without fastavro's per-field union search.

The downstream schemas (``cdr``, ``call_event``, ``number_status``) are flat records of strings,
ints, longs (timestamps), ``date`` and ``["null", int|long]`` unions. For those, the Avro binary body is
a concatenation of zig-zag varints and length-prefixed UTF-8, which this module writes directly
(repeated short strings and small numbers come from small caches). Anything else — a missing
field, a value of an unexpected type or range — goes to ``schemas.avro_codec.encode`` (fastavro),
so the bytes and the errors are exactly fastavro's.

    payload = encode_row("cdr", row)   # == schemas.avro_codec.encode("cdr", row)
"""

from __future__ import annotations

from datetime import date
from functools import cache
from typing import Any

from schemas.avro_codec import MARKER, encode, encode_long, schema_fingerprint, schema_json

_STR, _INT, _LONG, _NULL_INT, _NULL_LONG, _DATE = range(6)
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_EPOCH = date(1970, 1, 1)
_CACHE_MAX = 50_000
_strings: dict[str, bytes] = {}


class _Unsupported(Exception):
    """The row needs fastavro's general path."""


def _kind(field_type: Any) -> int:
    if isinstance(field_type, list):
        if len(field_type) != 2 or field_type[0] != "null":
            raise _Unsupported
        inner = _kind(field_type[1])
        if inner == _INT:
            return _NULL_INT
        if inner == _LONG:
            return _NULL_LONG
        raise _Unsupported
    if isinstance(field_type, dict):
        logical, base = field_type.get("logicalType"), field_type.get("type")
        if base == "long" and logical in ("timestamp-millis", "timestamp-micros"):
            return _LONG
        if base == "int" and logical == "date":
            return _DATE
        raise _Unsupported
    kinds = {"string": _STR, "int": _INT, "long": _LONG}
    if field_type not in kinds:
        raise _Unsupported
    return kinds[field_type]


@cache
def _plan(name: str) -> tuple[bytes, tuple[tuple[str, int], ...]] | None:
    """(header, (field, kind) ...) for a flat schema; None when the schema needs fastavro."""
    schema = schema_json(name)
    try:
        fields = tuple((f["name"], _kind(f["type"])) for f in schema["fields"])
    except _Unsupported:
        return None
    return MARKER + schema_fingerprint(name), fields


_varints: dict[int, bytes] = {}


def _varint(n: int) -> bytes:
    """Zig-zag varint, remembered: a call's times recur in its events and its CDR."""
    encoded = _varints.get(n)
    if encoded is None:
        encoded = encode_long(n)
        if len(_varints) >= _CACHE_MAX:
            _varints.clear()
        _varints[n] = encoded
    return encoded


def _string(value: str) -> bytes:
    encoded = _strings.get(value)
    if encoded is None:
        raw = value.encode("utf-8")
        encoded = encode_long(len(raw)) + raw
        if len(value) <= 64:  # short values repeat (codes, descriptions, app keys, numbers)
            if len(_strings) >= _CACHE_MAX:
                _strings.clear()
            _strings[value] = encoded
    return encoded


def _body(fields: tuple[tuple[str, int], ...], row: dict[str, Any]) -> list[bytes]:
    parts: list[bytes] = []
    append = parts.append
    strings = _strings
    for name, kind in fields:
        try:
            value = row[name]
        except KeyError:
            raise _Unsupported from None
        kind_of = type(value)
        if kind == _STR:
            if kind_of is not str:
                raise _Unsupported
            encoded = strings.get(value)
            append(encoded if encoded is not None else _string(value))
        elif value is None:
            if kind != _NULL_INT and kind != _NULL_LONG:
                raise _Unsupported
            append(b"\x00")
        elif kind == _DATE:
            if kind_of is int:
                days = value
            elif kind_of is date:
                days = (value - _EPOCH).days
            else:
                raise _Unsupported
            if not _INT_MIN <= days <= _INT_MAX:
                raise _Unsupported
            append(_varint(days))
        else:
            if kind_of is not int:
                raise _Unsupported
            if kind == _INT or kind == _NULL_INT:
                if not _INT_MIN <= value <= _INT_MAX:
                    raise _Unsupported
            elif not _LONG_MIN <= value <= _LONG_MAX:
                raise _Unsupported
            if kind == _NULL_INT or kind == _NULL_LONG:
                append(b"\x02")  # union branch 1
            append(_varint(value))
    return parts


def encode_row(name: str, row: dict[str, Any]) -> bytes:
    """``schemas.avro_codec.encode(name, row)``, faster for the flat downstream schemas."""
    plan = _plan(name)
    if plan is not None:
        header, fields = plan
        try:
            parts = _body(fields, row)
        except _Unsupported:
            pass
        else:
            return header + b"".join(parts)
    return encode(name, row)

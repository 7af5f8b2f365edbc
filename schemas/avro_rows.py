"""Avro single-object encoding of the flat downstream rows, without fastavro's per-field union search.

The downstream schemas (``cdr``, ``call_event``, ``number_status``) are flat records of strings,
ints, longs (timestamps), ``date`` and ``["null", int|long]`` unions. For those, the Avro binary body is
a concatenation of zig-zag varints and length-prefixed UTF-8, which this module writes directly
(repeated short strings and small numbers come from small caches), in straight-line code generated once
per schema from its fields. Anything else — a missing
field, a value of an unexpected type or range — goes to ``schemas.avro_codec.encode`` (fastavro),
so the bytes and the errors are exactly fastavro's.

    payload = encode_row("cdr", row)   # == schemas.avro_codec.encode("cdr", row)
    write = row_encoder("cdr", as_text=("dedup_key",))   # the same, with an int dedup_key written as text

The same plan is also written in C (``schemas/_avro_rows.c``, built by setup.py when a compiler is
there): one call per row, no Python per field. ``row_encoder`` uses it when it is built; the Python
writer stays the reference (tests compare the bytes of both and fastavro's; bench/avro.py times them).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from functools import cache
from typing import Any

from schemas.avro_codec import MARKER, encode, encode_long, schema_fingerprint, schema_json

try:
    from schemas._avro_rows import make_plan, write_row  # built by setup.py when a C compiler is there
except ImportError:  # pragma: no cover - exercised where the extension is not built
    make_plan = write_row = None  # type: ignore[assignment]

_STR, _INT, _LONG, _NULL_INT, _NULL_LONG, _DATE, _TEXT = range(7)
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


_TEMPLATES = {
    _STR: """    v = row[{name!r}]
    if type(v) is not str:
        raise _Unsupported
    p{i} = sget(v) or string(v)
""",
    _TEXT: """    v = row[{name!r}]
    if type(v) is int:
        v = str(v).encode()
    elif type(v) is str:
        v = v.encode()
    else:
        raise _Unsupported
    p{i} = varint(len(v)) + v
""",
    _INT: """    v = row[{name!r}]
    if type(v) is not int or not {lo} <= v <= {hi}:
        raise _Unsupported
    p{i} = vget(v) or varint(v)
""",
    _DATE: """    v = row[{name!r}]
    if type(v) is date:
        v = (v - epoch).days
    elif type(v) is not int:
        raise _Unsupported
    if not {lo} <= v <= {hi}:
        raise _Unsupported
    p{i} = vget(v) or varint(v)
""",
    _NULL_INT: """    v = row[{name!r}]
    if v is None:
        p{i} = b"\\x00"
    elif type(v) is not int or not {lo} <= v <= {hi}:
        raise _Unsupported
    else:
        p{i} = b"\\x02" + (vget(v) or varint(v))
""",
}
_TEMPLATES[_LONG] = _TEMPLATES[_INT]
_TEMPLATES[_NULL_LONG] = _TEMPLATES[_NULL_INT]


@cache
def _compiled(name: str, as_text: frozenset[str]) -> Callable[[dict[str, Any]], bytes] | None:
    """A function writing one row of the flat schema ``name`` (straight-line code, one block per field);
    it raises ``_Unsupported`` for anything it does not handle. None when the schema is not flat."""
    plan = _plan(name)
    if plan is None:
        return None
    header, fields = plan
    lines = ["def write(row):", "    try:"]
    for i, (field, kind) in enumerate(fields):
        lo, hi = (_INT_MIN, _INT_MAX) if kind in (_INT, _NULL_INT, _DATE) else (_LONG_MIN, _LONG_MAX)
        if field in as_text and kind == _STR:
            kind = _TEXT  # unique values (keys): not worth the string cache
        block = _TEMPLATES[kind].format(name=field, i=i, lo=lo, hi=hi)
        lines += ["    " + line for line in block.splitlines()]
    lines += ["    except KeyError:", "        raise _Unsupported from None",
              f"    return header + b''.join(({''.join(f'p{i}, ' for i in range(len(fields)))}))"]
    scope: dict[str, Any] = {
        "_Unsupported": _Unsupported, "date": date, "epoch": _EPOCH, "header": header,
        "sget": _strings.get, "string": _string, "vget": _varints.get, "varint": _varint,
    }
    exec(compile("\n".join(lines), f"<avro writer for {name}>", "exec"), scope)  # noqa: S102 - our own schema
    return scope["write"]  # type: ignore[no-any-return]


def _c_plan(name: str, as_text: frozenset[str]) -> tuple[bytes, tuple[tuple[str, int, int, int], ...]] | None:
    """(header, (field, kind, lo, hi) ...) for the C writer; None when the schema is not flat."""
    plan = _plan(name)
    if plan is None:
        return None
    header, fields = plan
    specs = []
    for field, kind in fields:
        lo, hi = (_INT_MIN, _INT_MAX) if kind in (_INT, _NULL_INT, _DATE) else (_LONG_MIN, _LONG_MAX)
        specs.append((field, _TEXT if field in as_text and kind == _STR else kind, lo, hi))
    return header, tuple(specs)


@cache
def row_encoder(
    name: str, as_text: tuple[str, ...] = (), *, compiled: bool = True
) -> Callable[[dict[str, Any]], bytes]:
    """``row -> encode(name, row)`` for a flat downstream schema; the ``as_text`` fields are written as
    the decimal text of an int value (e.g. ``dedup_key``, a UInt64 in ClickHouse, a string in Avro).
    Uses the C writer (``schemas/_avro_rows.c``) when it is built and ``compiled``, else the Python one;
    a row either cannot write goes through fastavro."""
    write = _compiled(name, frozenset(as_text))

    def slow(row: dict[str, Any]) -> bytes:
        converted = {f: str(row[f]) for f in as_text if type(row.get(f)) is int}
        return encode(name, {**row, **converted} if converted else row)

    if write is None:
        return slow

    def fast(row: dict[str, Any]) -> bytes:
        try:
            return write(row)
        except _Unsupported:
            return slow(row)

    c_plan = _c_plan(name, frozenset(as_text)) if compiled and write_row is not None else None
    if c_plan is None:
        return fast
    plan_c = make_plan(*c_plan)
    write_c = write_row

    def fastest(row: dict[str, Any]) -> bytes:
        if type(row) is dict:
            payload = write_c(plan_c, row)
            if payload is not None:
                return payload  # type: ignore[no-any-return]
        return fast(row)

    return fastest


def encode_row(name: str, row: dict[str, Any]) -> bytes:
    """``schemas.avro_codec.encode(name, row)``, faster for the flat downstream schemas."""
    return row_encoder(name)(row)

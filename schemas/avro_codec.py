"""Avro encoding of every record callstream publishes, from the ``.avsc`` files beside this module.

Records use Avro *single-object encoding* (Avro spec): ``C3 01`` marker, the 8-byte little-endian
CRC-64-AVRO fingerprint of the writer schema's canonical form, then the Avro binary body. A reader
resolves the fingerprint against the shipped schemas, so every record names its writer schema.

    from schemas.avro_codec import encode, decode
    payload = encode("raw_envelope", {"id": ..., ...})
    name, record = decode(payload)
"""

from __future__ import annotations

import io
import json
import struct
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

AVRO_DIR = Path(__file__).parent / "avro"
MARKER = b"\xc3\x01"


class UnknownSchema(ValueError):
    """The bytes name a writer schema that is not shipped in schemas/avro."""


@lru_cache(maxsize=None)
def schema_json(name: str) -> dict[str, Any]:
    """The raw JSON of ``schemas/avro/<name>.avsc``."""
    path = AVRO_DIR / f"{name}.avsc"
    if not path.exists():
        raise UnknownSchema(f"no Avro schema {name!r}: expected {path}")
    return dict(json.loads(path.read_text(encoding="utf-8")))


@lru_cache(maxsize=None)
def parsed_schema(name: str) -> Any:
    return fastavro.parse_schema(schema_json(name))


@lru_cache(maxsize=None)
def schema_fingerprint(name: str) -> bytes:
    """CRC-64-AVRO fingerprint of the canonical form, as the 8 little-endian bytes of the spec."""
    hex_le = fingerprint(to_parsing_canonical_form(parsed_schema(name)), "CRC-64-AVRO")
    return bytes.fromhex(hex_le)


def schema_names() -> list[str]:
    return sorted(p.stem for p in AVRO_DIR.glob("*.avsc"))


@lru_cache(maxsize=None)
def _by_fingerprint() -> dict[bytes, str]:
    return {schema_fingerprint(name): name for name in schema_names()}


def encode(name: str, record: dict[str, Any]) -> bytes:
    """Single-object-encode ``record`` with the schema ``name``."""
    out = io.BytesIO()
    out.write(MARKER)
    out.write(schema_fingerprint(name))
    fastavro.schemaless_writer(out, parsed_schema(name), record)
    return out.getvalue()


def decode(payload: bytes, reader: str | None = None) -> tuple[str, dict[str, Any]]:
    """Decode a single-object-encoded record; returns ``(writer schema name, record)``.

    ``reader`` resolves the data into another (compatible) schema version.
    """
    if payload[:2] != MARKER or len(payload) < 10:
        raise UnknownSchema("not Avro single-object encoding (missing C3 01 marker)")
    fp = payload[2:10]
    name = _by_fingerprint().get(fp)
    if name is None:
        raise UnknownSchema(f"unknown writer schema fingerprint {fp.hex()}: is schemas/avro up to date?")
    reader_schema = parsed_schema(reader) if reader else None
    record = fastavro.schemaless_reader(io.BytesIO(payload[10:]), parsed_schema(name), reader_schema)
    return name, dict(record)  # type: ignore[arg-type]


def fingerprint_int(name: str) -> int:
    """The fingerprint as the signed 64-bit integer Java's SchemaNormalization prints."""
    return int(struct.unpack("<q", schema_fingerprint(name))[0])


_SMALL_LONGS = tuple(bytes([n]) for n in range(128))


def encode_long(value: int) -> bytes:
    """Avro binary ``long`` (also lengths of strings and bytes): zig-zag, then base-128 little-endian groups.

    The hand-written encoders (schemas/avro_envelope.py, schemas/avro_rows.py) share it.
    """
    n = (value << 1) ^ (value >> 63)
    if n < 128:
        return _SMALL_LONGS[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


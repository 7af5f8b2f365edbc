"""One entry point for the bytes of every record callstream publishes, in either framing.

* default: Avro single-object encoding (``C3 01`` + 8-byte CRC-64-AVRO fingerprint + body), resolvable
  against the shipped ``schemas/avro/*.avsc`` (and their ``history/`` versions);
* ``CALLSTREAM_SCHEMA_REGISTRY_URL`` set: the Confluent wire format (``00`` + 4-byte big-endian schema
  id + body), the schema registered under the topic-name subject ``<topic>-value``.

``decode`` reads both framings, so switching a running deployment from one to the other is safe.

    serializer = Serializer(settings)
    value = serializer.encode("raw_envelope", record, settings.raw_topic)
    name, record = serializer.decode(value)
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

from core.errors import RegistryError
from core.settings import Settings
from schemas.avro_codec import (
    AVRO_DIR,
    MARKER,
    UnknownSchema,
    parsed_schema,
    schema_fingerprint,
    schema_json,
    schema_names,
)
from schemas.avro_codec import encode as encode_single_object

HISTORY_DIR = AVRO_DIR / "history"
CONFLUENT_MAGIC = b"\x00"

__all__ = [
    "Serializer",
    "UnknownSchema",
    "decode",
    "framing",
    "history_paths",
]


def _parse(schema: dict[str, Any]) -> Any:
    return fastavro.parse_schema(schema, _write_hint=False, _force=True)


def _fingerprint_of(schema: dict[str, Any]) -> bytes:
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(_parse(schema)), "CRC-64-AVRO"))


def history_paths(name: str) -> list[Path]:
    """``schemas/avro/history/<name>.v*.avsc``, oldest first."""
    def version(path: Path) -> int:
        return int(path.name.split(".v")[-1].split(".")[0])

    return sorted(HISTORY_DIR.glob(f"{name}.v*.avsc"), key=version)


@lru_cache(maxsize=None)
def _known_writers() -> dict[bytes, tuple[str, str]]:
    """fingerprint -> (schema name, schema JSON text) for every current and historical schema."""
    known: dict[bytes, tuple[str, str]] = {}
    for name in schema_names():
        for path in history_paths(name):
            text = path.read_text(encoding="utf-8")
            known[_fingerprint_of(json.loads(text))] = (name, text)
        current = schema_json(name)
        known[_fingerprint_of(current)] = (name, json.dumps(current))
    return known


@lru_cache(maxsize=None)
def _names_by_full_name() -> dict[str, str]:
    out = {}
    for name in schema_names():
        schema = schema_json(name)
        namespace = schema.get("namespace", "")
        out[f"{namespace}.{schema['name']}" if namespace else schema["name"]] = name
    return out


def _read(body: bytes, writer: Any, name: str | None) -> dict[str, Any]:
    reader = parsed_schema(name) if name else None
    return dict(fastavro.schemaless_reader(io.BytesIO(body), writer, reader))  # type: ignore[arg-type]


def framing(payload: bytes) -> str:
    """``"single-object"``, ``"confluent"`` or raise ``UnknownSchema``."""
    if payload[:2] == MARKER and len(payload) >= 10:
        return "single-object"
    if payload[:1] == CONFLUENT_MAGIC and len(payload) >= 5:
        return "confluent"
    raise UnknownSchema(
        "not a callstream Avro record: expected C3 01 (single-object) or 00 (Confluent wire format)"
    )


def _decode_single_object(payload: bytes) -> tuple[str, dict[str, Any]]:
    fp = payload[2:10]
    found = _known_writers().get(fp)
    if found is None:
        raise UnknownSchema(
            f"unknown writer schema fingerprint {fp.hex()}: "
            "update schemas/avro (`callstream schemas` lists the known ones)"
        )
    name, text = found
    return name, _read(payload[10:], _parse(json.loads(text)), name)


def _confluent_writer(schema_id: int, registry: Any) -> tuple[str, Any, bool]:
    """(schema name, parsed writer schema, whether the writer is the shipped schema) for ``schema_id``."""
    writer = registry.schema(schema_id)
    known = _known_writers().get(_fingerprint_of(writer))
    if known is not None:
        name = known[0]
    else:  # a newer writer than we ship: resolve by its full name when we know it
        namespace = writer.get("namespace", "")
        by_name = _names_by_full_name().get(f"{namespace}.{writer['name']}" if namespace else writer["name"])
        if by_name is None:
            raise UnknownSchema(f"schema id {schema_id} ({writer.get('name')}) is not a callstream schema")
        name = by_name
    return name, _parse(writer), _fingerprint_of(writer) == schema_fingerprint(name)


def _read_confluent(body: bytes, found: tuple[str, Any, bool]) -> tuple[str, dict[str, Any]]:
    name, writer, current = found
    if current:  # written with the shipped schema: nothing to resolve
        return name, dict(fastavro.schemaless_reader(io.BytesIO(body), parsed_schema(name), None))  # type: ignore[arg-type]
    return name, _read(body, writer, name)


def decode(payload: bytes, *, registry: Any = None) -> tuple[str, dict[str, Any]]:
    """Decode either framing into ``(schema name, record)``, resolved into the current shipped schema.

    Confluent-framed records need ``registry`` (a ``schemas.registry.Registry``) to fetch the writer.
    """
    if framing(payload) == "single-object":
        return _decode_single_object(payload)
    if registry is None:
        raise UnknownSchema(
            "record uses the Confluent wire format: "
            "set CALLSTREAM_SCHEMA_REGISTRY_URL (or pass registry=) to read it"
        )
    (schema_id,) = struct.unpack(">I", payload[1:5])
    return _read_confluent(payload[5:], _confluent_writer(schema_id, registry))


class Serializer:
    """Encode records in the framing the settings choose; decode both framings."""

    def __init__(self, settings: Settings) -> None:
        self.registry_url = settings.schema_registry_url
        self.registry: Any = None
        self._writers: dict[int, tuple[str, Any, bool]] = {}  # schema id -> _confluent_writer(id)
        if self.registry_url:
            # imported here: confluent_kafka's registry client (httpx, authlib, cryptography) costs every
            # process that loads it ~14 MB of RSS, and without a registry URL nothing uses it
            from schemas.registry import Registry

            self.registry = Registry(self.registry_url)

    @property
    def framing(self) -> str:
        return "confluent" if self.registry is not None else "single-object"

    def prepare(self, pairs: list[tuple[str, str]]) -> None:
        """Register ``(name, topic)`` pairs up front, so no HTTP call happens on the hot path."""
        if self.registry is not None:
            for name, topic in pairs:
                self.registry.register(topic, name)

    def encode(self, name: str, record: dict[str, Any], topic: str) -> bytes:
        """The value bytes of ``record`` (schema ``name``) for ``topic``."""
        if self.registry is None:
            return encode_single_object(name, record)
        schema_id = self.registry.register(topic, name)
        out = io.BytesIO()
        out.write(CONFLUENT_MAGIC)
        out.write(struct.pack(">I", schema_id))
        fastavro.schemaless_writer(out, parsed_schema(name), record)
        return out.getvalue()

    def reframe(self, payload: bytes, topic: str) -> bytes:
        """``payload`` (single-object encoded) in this serializer's framing for ``topic``.

        Publishers encode once with single-object framing (the fast, registry-free path); with a
        registry configured this swaps the 10-byte single-object header for the 5-byte Confluent one.
        The Avro body is the same in both framings, so nothing is re-encoded.
        """
        if self.registry is None:
            return payload
        if framing(payload) != "single-object":
            return payload
        found = _known_writers().get(payload[2:10])
        if found is None:
            raise UnknownSchema(f"unknown writer schema fingerprint {payload[2:10].hex()}")
        schema_id = self.registry.register(topic, found[0])
        return CONFLUENT_MAGIC + struct.pack(">I", schema_id) + payload[10:]

    def decode(self, payload: bytes) -> tuple[str, dict[str, Any]]:
        """``decode`` with the writer schemas of this registry remembered by id."""
        if self.registry is None or framing(payload) != "confluent":
            return decode(payload, registry=self.registry)
        (schema_id,) = struct.unpack(">I", payload[1:5])
        return _read_confluent(payload[5:], self._writer(schema_id))

    def _writer(self, schema_id: int) -> tuple[str, Any, bool]:
        """``_confluent_writer(schema_id)``, fetched from the registry once."""
        found = self._writers.get(schema_id)
        if found is None:
            found = self._writers[schema_id] = _confluent_writer(schema_id, self.registry)
        return found

    def fetch_writers(self, payloads: list[bytes | None]) -> int:
        """Fetch the writer schemas of the Confluent-framed ``payloads`` not seen yet, so ``decode`` needs
        no HTTP call. Raises a retriable ``RegistryError`` while the registry is unreachable; a
        schema the registry does not have is left for ``decode`` to report for its record. Returns how
        many schemas were fetched."""
        if self.registry is None:
            return 0
        named = {struct.unpack(">I", payload[1:5])[0] for payload in payloads
                 if payload and payload[:1] == CONFLUENT_MAGIC and len(payload) >= 5}
        fetched = 0
        for schema_id in sorted(named - self._writers.keys()):  # each id asked once per batch
            try:
                self._writer(schema_id)
            except RegistryError as exc:
                if exc.retriable:
                    raise
                continue  # refused for good: decode raises it again and quarantines the record
            except UnknownSchema:
                continue  # poison for that record only: decode raises it again and quarantines the record
            fetched += 1
        return fetched

    def close(self) -> None:
        if self.registry is not None:
            self.registry.close()

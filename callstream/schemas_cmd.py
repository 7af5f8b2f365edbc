"""``callstream schemas [NAME]``: print the shipped Avro schemas with their fingerprints.

A subscriber matches the 8 bytes after ``C3 01`` in a record (single-object encoding) against the
fingerprint printed here; Java's ``SchemaNormalization.parsingFingerprint64`` prints the signed int.
"""

from __future__ import annotations

import argparse
import json
import sys

from core.settings import Settings
from schemas.avro_codec import UnknownSchema, fingerprint_int, schema_fingerprint, schema_json, schema_names
from schemas.serde import history_paths


def describe(name: str) -> str:
    """Header lines with the fingerprints, then the schema JSON."""
    history = ", ".join(p.name for p in history_paths(name)) or "none"
    lines = [
        f"# {name}  (schemas/avro/{name}.avsc)",
        f"# fingerprint CRC-64-AVRO hex (little-endian bytes after C3 01): {schema_fingerprint(name).hex()}",
        f"# fingerprint signed 64-bit int: {fingerprint_int(name)}",
        f"# history: {history}",
        json.dumps(schema_json(name), indent=2),
    ]
    return "\n".join(lines)


def main(args: argparse.Namespace, settings: Settings) -> int:
    names = [args.name] if getattr(args, "name", None) else schema_names()
    try:
        blocks = [describe(name) for name in names]
    except UnknownSchema as exc:
        print(f"callstream schemas: {exc}; known: {', '.join(schema_names())}", file=sys.stderr)
        return 2
    if settings.schema_registry_url:
        url = settings.schema_registry_url
        print(f"# registry mode: Confluent wire format, subjects <topic>-value at {url}")
    print("\n\n".join(blocks))
    return 0

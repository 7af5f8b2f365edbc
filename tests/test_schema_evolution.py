"""Every shipped schema stays FULL-compatible with each of its history versions (fastavro resolution)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.utils import generate_many

from schemas.avro_codec import AVRO_DIR, schema_json, schema_names
from schemas.serde import HISTORY_DIR, history_paths

PAIRS = [(name, path) for name in schema_names() for path in history_paths(name)]


def _parse(schema: dict[str, Any]) -> Any:
    return fastavro.parse_schema(schema, _write_hint=False, _force=True)


def _roundtrip(writer: dict[str, Any], reader: dict[str, Any], count: int = 25) -> list[dict[str, Any]]:
    """Write ``count`` random records with ``writer`` and read them back through ``reader``."""
    out = []
    for record in generate_many(_parse(writer), count):
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, _parse(writer), record)
        buffer.seek(0)
        out.append(fastavro.schemaless_reader(buffer, _parse(writer), _parse(reader)))
        assert buffer.read() == b"", "reader left bytes unread"
    return out


def test_every_schema_has_a_history_entry() -> None:
    missing = [name for name in schema_names() if not history_paths(name)]
    assert not missing, (
        f"no history version for {missing}: copy schemas/avro/<name>.avsc to "
        f"schemas/avro/history/<name>.v1.avsc when you add a schema"
    )


def test_history_files_name_a_shipped_schema() -> None:
    orphans = [p.name for p in HISTORY_DIR.glob("*.avsc") if p.name.split(".v")[0] not in schema_names()]
    assert not orphans, f"history files without a current schema in {AVRO_DIR}: {orphans}"


@pytest.mark.parametrize(("name", "history"), PAIRS, ids=[p.name for _, p in PAIRS])
def test_current_reads_history_data(name: str, history: Path) -> None:
    """Backward: a consumer on the current schema reads records written with the old one."""
    old = json.loads(history.read_text(encoding="utf-8"))
    records = _roundtrip(old, schema_json(name))
    assert len(records) == 25
    current_fields = {f["name"] for f in schema_json(name)["fields"]}
    assert all(set(r) == current_fields for r in records)


@pytest.mark.parametrize(("name", "history"), PAIRS, ids=[p.name for _, p in PAIRS])
def test_history_reads_current_data(name: str, history: Path) -> None:
    """Forward: a subscriber still on the old schema reads records written with the current one."""
    old = json.loads(history.read_text(encoding="utf-8"))
    records = _roundtrip(schema_json(name), old)
    old_fields = {f["name"] for f in old["fields"]}
    assert all(set(r) == old_fields for r in records)


def test_an_incompatible_change_is_caught() -> None:
    """The check is real: a new field without a default cannot read old data."""
    old = schema_json("raw_envelope")
    broken = dict(old, fields=[*old["fields"], {"name": "tenant", "type": "string"}])
    with pytest.raises(fastavro.read.SchemaResolutionError):
        _roundtrip(old, broken, count=1)
    compatible = dict(old, fields=[*old["fields"], {"name": "tenant", "type": "string", "default": ""}])
    assert _roundtrip(old, compatible, count=1)[0]["tenant"] == ""


@pytest.mark.parametrize(("name", "history"), PAIRS, ids=[p.name for _, p in PAIRS])
def test_serde_decodes_records_framed_with_a_history_fingerprint(name: str, history: Path) -> None:
    """A record still on the topic from before an upgrade names its old fingerprint and still decodes."""
    from fastavro.schema import fingerprint, to_parsing_canonical_form

    from schemas.avro_codec import MARKER
    from schemas.serde import decode

    old = _parse(json.loads(history.read_text(encoding="utf-8")))
    record = generate_many(old, 1).__next__()
    buffer = io.BytesIO()
    buffer.write(MARKER + bytes.fromhex(fingerprint(to_parsing_canonical_form(old), "CRC-64-AVRO")))
    fastavro.schemaless_writer(buffer, old, record)
    decoded_name, decoded = decode(buffer.getvalue())
    assert decoded_name == name
    assert set(decoded) == {f["name"] for f in schema_json(name)["fields"]}

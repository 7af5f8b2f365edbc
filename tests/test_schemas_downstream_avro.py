"""Downstream Avro schemas: records round-trip, and each schema stays compatible with its history."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest

from consumers.decode import Notification
from consumers.dedupe import assign_keys
from consumers.enrich import Enriched, enrich_rows
from consumers.normalise import normalise
from consumers.republish import ROUTES, to_message
from schemas.avro_codec import AVRO_DIR, decode
from tests.conftest import sample_paths

HISTORY = AVRO_DIR / "history"


def enriched_rows() -> dict[str, list[dict[str, Any]]]:
    ns = [Notification(p.stem, 1_710_209_704_000_000, "privacy" if p.name.startswith("privacy") else "voice",
                       "/", "", "k", p.read_bytes()) for p in sample_paths()]
    out = normalise(ns)
    note = Enriched()
    enrich_rows(out.cdrs, out.events, out.statuses, note)
    tables = {"cdrs": out.cdrs, "call_events": out.events, "number_status": out.statuses}
    for table, rows in tables.items():
        assign_keys(table, rows)
    return tables


def _load(path: Path) -> Any:
    return fastavro.parse_schema(json.loads(path.read_text(encoding="utf-8")))


@pytest.mark.parametrize("table", sorted(ROUTES))
def test_rows_roundtrip_and_history_compatibility(table: str) -> None:
    schema_name = ROUTES[table][0]
    current = _load(AVRO_DIR / f"{schema_name}.avsc")
    history = sorted(HISTORY.glob(f"{schema_name}.v*.avsc"))
    assert history, f"schemas/avro/history/{schema_name}.v1.avsc is missing"
    rows = enriched_rows()[table]
    assert rows
    for row in rows:
        _key, value, _headers = to_message(table, row)
        name, record = decode(value)
        assert name == schema_name and record["dedup_key"] == str(row["dedup_key"])
        assert record["session_id" if table != "number_status" else "number"]
    for old_path in history:
        old = _load(old_path)
        for row in rows:
            record = {**row, "dedup_key": str(row["dedup_key"])}
            # current reader reads data written with the history schema ...
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, old, record)
            buf.seek(0)
            fastavro.schemaless_reader(buf, old, current)
            # ... and the history reader reads data written with the current schema
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, current, record)
            buf.seek(0)
            fastavro.schemaless_reader(buf, current, old)

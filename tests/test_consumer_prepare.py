"""``consumers.prepare`` gives exactly the rows and the Avro bytes of the semantic functions applied one
push at a time (normalise, enrich, keys, first occurrence, protect, encode), on the samples and on the
fuzz corpus; a batch is the same whether prepared in one go or push by push; the state it is given
(recent keys) is all it remembers; X-number statuses are not deduplicated here (a repeated state may be
a change back: the deliverer decides against the stored history)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from consumers.decode import Notification
from consumers.dedupe import assign_keys
from consumers.enrich import Enriched, enrich_rows
from consumers.normalise import Normalised, normalise_one
from consumers.prepare import ROW_TABLES, State, prepare_notifications
from consumers.protect import protect_numbers
from consumers.republish import ROUTES, to_message
from core.errors import NormaliseError
from core.settings import Settings
from schemas.avro_codec import encode
from tests.test_fuzz import EVENT_TYPES, mutate, notification, samples


def reference(notifications: list[Notification], settings: Settings) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """The rows (and their downstream records) the semantic functions give, applied push by push."""
    out = Normalised()
    for n in notifications:
        try:
            normalise_one(n, out)
        except NormaliseError:
            pass
    note = Enriched()
    enrich_rows(out.cdrs, out.events, out.statuses, note)
    tables: dict[str, list[Any]] = {}
    records: dict[str, Any] = {}
    for table, rows in zip(ROW_TABLES, (out.cdrs, out.events, out.statuses), strict=True):
        assign_keys(table, rows)
        seen: set[int] = set()
        kept = []
        for row in rows:
            if table == "number_status" or row["dedup_key"] not in seen:
                seen.add(row["dedup_key"])
                kept.append(protect_numbers(row, settings))
        tables[table] = kept
        records[table] = {row["dedup_key"]: to_message(table, row) for row in kept}
    return tables, records


def corpus(count: int, seed: int) -> list[Notification]:
    rng = random.Random(seed)
    base = samples()
    found = [notification(service, body, rng.choice(EVENT_TYPES), rng) for service, body in base]
    while len(found) < count:
        service, body = rng.choice(base)
        case = mutate(rng, service, body, 4096)
        if case.label not in ("too_large", "exactly_limit"):
            found.append(notification(case.service, case.body, rng.choice(EVENT_TYPES), rng))
    return found


@pytest.fixture
def settings() -> Settings:
    return Settings(number_pepper="prepare-pepper-0123456789abcdef", kafka_bootstrap="127.0.0.1:1")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_prepare_equals_the_semantic_functions_push_by_push(settings: Settings, seed: int) -> None:
    pushes = corpus(1500, seed)
    tables, records = reference(pushes, settings)
    prepared = prepare_notifications(pushes, settings, encode=True)
    assert all(tables.values()) and sum(map(len, tables.values())) > 100  # the corpus reaches every table
    for table in ROW_TABLES:
        assert prepared.tables[table] == tables[table], table
        if table == "number_status":  # encoded on delivery, with the keys the stored history gives
            assert table not in prepared.messages
            continue
        assert prepared.messages[table] == records[table], table  # the same Avro bytes and headers
        schema = ROUTES[table][0]
        for row in prepared.tables[table]:  # and those bytes are fastavro's
            expected = encode(schema, {**row, "dedup_key": str(row["dedup_key"])})
            assert prepared.messages[table][row["dedup_key"]][1] == expected


def test_samples_prepared_alike_in_one_batch_or_one_push_at_a_time(settings: Settings) -> None:
    rng = random.Random(9)
    pushes = [notification(service, body, "", rng) for service, body in samples()]
    together = prepare_notifications(pushes, settings)
    state = State()
    alone: dict[str, list[Any]] = {table: [] for table in ROW_TABLES}
    for n in pushes:
        for table, rows in prepare_notifications([n], settings, state).tables.items():
            seen = set() if table == "number_status" else {r["dedup_key"] for r in alone[table]}
            alone[table] += [r for r in rows if r["dedup_key"] not in seen]
    assert together.tables == alone and sum(map(len, alone.values())) > 0


def test_recent_keys_in_the_state_drop_rows_seen_before(settings: Settings) -> None:
    rng = random.Random(4)
    pushes = [notification(service, body, "", rng) for service, body in samples()]
    state = State.for_settings(settings)
    first = prepare_notifications(pushes, settings, state)
    for table, rows in first.tables.items():
        state.recent.add(table, [r["dedup_key"] for r in rows])
    again = prepare_notifications(pushes, settings, state)
    assert all(not rows for table, rows in again.tables.items() if table != "number_status")
    assert again.tables["number_status"] == first.tables["number_status"]  # judged against the store
    repeated = sum(len(rows) for table, rows in first.tables.items() if table != "number_status")
    assert again.notes.duplicates == repeated + first.notes.duplicates
    assert {"parse", "normalise", "enrich", "keys", "dedupe", "protect"} <= set(first.seconds)  # no decoding here

"""Business-key deduplication.

Keys (64-bit, stored as ``dedup_key UInt64``):
  CDR     (appKey, sessionId, icid) when icid is present, else the canonical JSON of the FeeInfo
  event   (app_key of the envelope, eventType, canonical JSON of statusInfo): a re-push re-sends the
          same body; two events that differ in any field (digitInfo, a missing timestamp ...) differ
  status  (number, status, cause) for the number's first stored state, then the same with the count of
          its state changes: a status that repeats the number's latest state is a duplicate, the same
          status after another one is a new row (``status_transition_keys``, once the number's latest
          stored state is known)
  failure (notification id, record index, stage, reason)

Three layers drop duplicates before ClickHouse sees them: within the batch, a bounded LRU of keys
loaded recently by this process (``RecentKeys``), and a lookup of the remaining keys in the table
(done by the sink, so it survives restarts). A retried insert carries ``insert_token`` of its keys.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

_SEP = "\x1f"


def hash64(*parts: object) -> int:
    """A stable unsigned 64-bit hash of the parts (blake2b, not Python's per-process hash)."""
    text = _SEP.join("" if p is None else str(p) for p in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def cdr_key(row: dict[str, Any]) -> int:
    if row["icid"]:
        return hash64("cdr", row["app_key"], row["session_id"], row["icid"])
    return hash64("cdr-json", row["raw"])


def event_key(row: dict[str, Any]) -> int:
    return hash64("event", row["app_key"], row["event_type"], row["raw"])


def status_key(row: dict[str, Any]) -> int:
    """The key of a state (number as received, status, cause): a status row's key when it is the number's
    first stored state; ``status_transition_keys`` derives the key of a later change from it."""
    return hash64("status", row["number"], row["status"], row["cause"])


@dataclass(frozen=True, slots=True)
class NumberState:
    """An X number's latest stored status row, and how many state changes are stored for it."""

    status: int | None
    cause: int | None
    key: int
    changes: int


def receipt_order(row: dict[str, Any]) -> tuple[int, str, int]:
    return row["received_at"], row["notification_id"], row["record_index"]


def status_transition_keys(rows: list[dict[str, Any]], latest: dict[str, NumberState]) -> list[dict[str, Any]]:
    """Give each status row (in receipt order, carrying its ``status_key``) its final key: a repeat of the
    number's latest state is dropped (a duplicate), another state is the number's next change: its key is
    the state key for the first change, else derived from it and the change count. Returns the rows
    kept. ``latest`` (number -> state stored before this batch) is updated as the rows are walked.
    Call it once per batch: it replaces the keys it reads."""
    kept = []
    for row in sorted(rows, key=receipt_order):
        number, status, cause = row["number"], row["status"], row["cause"]
        state = latest.get(number)
        if state is not None and state.status == status and state.cause == cause:
            row["dedup_key"] = state.key
            continue  # the row itself is dropped here; a stored twin decides whether it is published
        changes = state.changes + 1 if state is not None else 1
        key = row["dedup_key"] if changes == 1 else hash64("status-change", row["dedup_key"], changes)
        row["dedup_key"] = key
        latest[number] = NumberState(status, cause, key, changes)
        kept.append(row)
    return kept


def failure_key(notification_id: str, record_index: int, stage: str, reason: str) -> int:
    return hash64("failure", notification_id, record_index, stage, reason)


KEY_FUNCTIONS: dict[str, Callable[[dict[str, Any]], int]] = {
    "cdrs": cdr_key,
    "call_events": event_key,
    "number_status": status_key,
}


def assign_keys(table: str, rows: list[dict[str, Any]]) -> None:
    key = KEY_FUNCTIONS[table]
    for row in rows:
        row["dedup_key"] = key(row)


def unique_in_batch(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """First occurrence of every dedup_key; returns (rows, number dropped)."""
    seen: set[int] = set()
    kept = []
    for row in rows:
        key = row["dedup_key"]
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept, len(rows) - len(kept)


def unique_cdrs(
    rows: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], int, list[tuple[dict[str, Any], dict[str, Any]]]]:
    """``unique_in_batch`` for CDRs, also returning each dropped row whose content differs from the
    kept one with its key: (rows, number dropped, [(conflicting row, kept row)])."""
    first: dict[int, dict[str, Any]] = {}
    kept, twins = [], []
    for row in rows:
        key = row["dedup_key"]
        seen = first.get(key)
        if seen is None:
            first[key] = row
            kept.append(row)
        elif seen["raw"] != row["raw"]:
            twins.append((row, seen))
    return kept, len(rows) - len(kept), twins


def insert_token(table: str, rows: Iterable[dict[str, Any]]) -> str:
    """Deterministic insert_deduplication_token: the same rows give the same token on retry."""
    digest = hashlib.blake2b(table.encode(), digest_size=16)
    for key in sorted(row["dedup_key"] for row in rows):
        digest.update(key.to_bytes(8, "little"))
    return f"{table}-{digest.hexdigest()}"


class RecentKeys:
    """A bounded LRU of dedup keys this process loaded (per table); ``capacity`` keys in total."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(0, capacity)
        self._keys: OrderedDict[tuple[str, int], None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def split(self, table: str, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
        """Rows whose key is not known here; returns (rows, number known and dropped)."""
        keys = self._keys
        kept = []
        for row in rows:
            item = (table, row["dedup_key"])
            if item in keys:
                keys.move_to_end(item)
            else:
                kept.append(row)
        return kept, len(rows) - len(kept)

    def add(self, table: str, keys: Iterable[int]) -> None:
        if not self.capacity:
            return
        store = self._keys
        for key in keys:
            store[(table, key)] = None
            store.move_to_end((table, key))
        excess = len(store) - self.capacity
        for _ in range(max(0, excess)):
            store.popitem(last=False)


# --- conflicting CDRs: one business key, other content ------------------------------------------
def content_digest(raw: str) -> str:
    """The MD5 of a stored ``raw`` as ClickHouse's ``hex(MD5(raw))`` writes it."""
    return hashlib.md5(raw.encode(), usedforsecurity=False).hexdigest().upper()


def differing_fields(stored_raw: str, raw: str) -> list[str]:
    """The FeeInfo fields whose values differ between two CDR bodies (sorted)."""
    try:
        old, new = orjson.loads(stored_raw), orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ["raw"]
    if not isinstance(old, dict) or not isinstance(new, dict):
        return ["raw"]
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))


def conflict_row(row: dict[str, Any], kept_notification_id: str, stored_raw: str) -> dict[str, Any]:
    """The ``cdr_conflicts`` row of a CDR whose key is stored with other content (the stored one stays)."""
    return {
        "dedup_key": hash64("conflict", row["dedup_key"], row["raw"]),
        "cdr_key": row["dedup_key"],
        "received_at": row["received_at"],
        "app_key": row["app_key"],
        "session_id": row["session_id"],
        "icid": row["icid"],
        "kept_notification_id": kept_notification_id,
        "notification_id": row["notification_id"],
        "record_index": row["record_index"],
        "differing_fields": differing_fields(stored_raw, row["raw"]),
        "raw": row["raw"],
    }

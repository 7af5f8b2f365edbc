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

Three layers drop duplicates before ClickHouse sees them: within the batch, a cache of the keys this
process loaded recently (``RecentKeys``, bounded in bytes), and a lookup of the remaining keys in the
table (done by the sink, so it survives restarts). A retried insert carries ``insert_token`` of its keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
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
    """Dedup keys this process loaded recently, per table, bounded by ``capacity`` keys and ``max_bytes``
    (16 bytes a key: generations of uint64 arrays in the order loaded and sorted, one per ``add``); the
    oldest keys are forgotten first. A batch is looked up with one binary search per generation in numpy.
    """

    BYTES_PER_KEY = 16
    GENERATIONS = 8  # per table; beyond, the oldest small neighbours are merged

    def __init__(self, capacity: int, max_bytes: int | None = None) -> None:
        limit = max(0, capacity)
        if max_bytes is not None:
            limit = min(limit, max(0, max_bytes) // self.BYTES_PER_KEY)
        self.capacity = limit
        self._gens: dict[str, list[_Generation]] = {}  # per table, oldest first
        self._size = 0
        self._added = 0

    def __len__(self) -> int:
        return self._size

    @property
    def nbytes(self) -> int:
        return sum(g.by_age.nbytes + g.by_key.nbytes for gens in self._gens.values() for g in gens)

    def split(self, table: str, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
        """Rows whose key is not known here; returns (rows, number known and dropped)."""
        gens = self._gens.get(table)
        if not gens or not rows:
            return rows, 0
        keys = np.fromiter((row["dedup_key"] for row in rows), dtype=np.uint64, count=len(rows))
        order = np.argsort(keys)
        keys = keys[order]  # sorted probes: the binary searches walk each generation in order
        found = np.zeros(len(keys), dtype=bool)
        for gen in gens:
            at = np.searchsorted(gen.by_key, keys)
            at[at == len(gen.by_key)] = 0
            found |= gen.by_key[at] == keys
        if not found.any():
            return rows, 0
        known = np.empty_like(found)
        known[order] = found
        kept = [row for row, seen in zip(rows, known.tolist(), strict=True) if not seen]
        return kept, len(rows) - len(kept)

    def add(self, table: str, keys: Iterable[int]) -> None:
        if not self.capacity:
            return
        by_age = np.fromiter(keys, dtype=np.uint64)
        if not len(by_age):
            return
        gens = self._gens.setdefault(table, [])
        self._added += 1
        gens.append(_Generation(self._added, by_age))
        self._size += len(by_age)
        if len(gens) > self.GENERATIONS:
            small = self.capacity // 4
            for i in range(len(gens) - 1):
                if len(gens[i].by_age) + len(gens[i + 1].by_age) <= small or i == len(gens) - 2:
                    gens[i:i + 2] = [_Generation(gens[i].seq, np.concatenate((gens[i].by_age, gens[i + 1].by_age)))]
                    break
        while self._size > self.capacity:  # forget the oldest generation of any table (or its oldest keys)
            gens = min((g for g in self._gens.values() if g), key=lambda g: g[0].seq)
            oldest, excess = gens[0], self._size - self.capacity
            if excess >= len(oldest.by_age):
                gens.pop(0)
                self._size -= len(oldest.by_age)
            else:
                gens[0] = _Generation(oldest.seq, oldest.by_age[excess:].copy())
                self._size -= excess


class _Generation:
    __slots__ = ("seq", "by_age", "by_key")

    def __init__(self, seq: int, by_age: np.ndarray) -> None:
        self.seq = seq
        self.by_age = by_age
        self.by_key = np.sort(by_age)


# --- conflicting CDRs: one business key, other content ------------------------------------------
def content_digest(raw: str) -> str:
    """The digest of ``raw`` as ``cdrs.raw_digest`` stores it (``reinterpretAsUInt64(MD5(raw))``: the
    first 8 bytes of the MD5, little-endian), in decimal."""
    return str(int.from_bytes(hashlib.md5(raw.encode(), usedforsecurity=False).digest()[:8], "little"))


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

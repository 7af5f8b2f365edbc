"""Describe every coded column from the code tables and derive the per-call figures.

CDR: ``<column>_desc`` for fwdUnaswRsn / callOutUnaswRsn (+ Q.850 class), ulFailReason, sipStatusCode;
``failure_category`` / ``failure_reason`` / ``failure_source`` / ``refused`` (``consumers.outcome``: the
cause that explains the outcome, by a fixed precedence); answered, talk_seconds, ring_seconds,
setup_seconds, pdd_ms (RFC 6076), service_type, call_start_time, call_time, has_recording.
Event: state_code_desc, failure_category (disconnect only), event_seq, leg (``assign_legs``). Status: status/cause
descriptions, available, receipt_day. Unknown codes are kept, described, and reported in ``Enriched``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from consumers.outcome import call_outcome, session_request_delay_ms
from schemas.codes import Q850_DEFERRING_TEARDOWNS, Code, describe

VOICE_SERVICE_TYPES = {"001": "notification", "002": "callback", "003": "verifycode"}
EVENT_SEQ = {"callin": 0, "callout": 1, "alerting": 2, "answer": 3, "collectInfo": 4, "disconnect": 5}


@dataclass(slots=True)
class Enriched:
    """What enrichment noticed: unknown codes per field and clamped (inconsistent) durations."""

    unknown_codes: list[str] = field(default_factory=list)
    inconsistent_timestamps: int = 0


_cache: dict[tuple[str, str, int], Code] = {}


def lookup(field_name: str, service: str, code: int, note: Enriched) -> Code:
    key = (field_name, service, code)
    entry = _cache.get(key)
    if entry is None:
        entry = describe(field_name, service, code)
        if len(_cache) < 100_000:
            _cache[key] = entry
    if not entry.known:
        note.unknown_codes.append(field_name)
    return entry


def _seconds(start: int | None, end: int | None, note: Enriched) -> int | None:
    """Whole seconds from ``start`` to ``end``; ``None`` when either is missing or they contradict each
    other (counted in ``note``): a contradiction is not a zero-second sample."""
    if start is None or end is None:
        return None
    if end < start:
        note.inconsistent_timestamps += 1
        return None
    return (end - start) // 1000


MIN_RECORDED_TALK_SECONDS = 3  # the platform records no call shorter than this


def service_type_of(row: dict[str, Any]) -> tuple[str, str]:
    """(service_type, how it was decided) from the fields the CDR carries: the serviceType code; else a
    forward leg (fwd times or numbers, a non-zero fwdUnaswRsn) means a callback; else TTS or IVR
    figures mean a notification; else ``unknown``."""
    if row["service"] == "privacy":
        return "privacy", "privacy"
    code = row["service_type_code"]
    if code in VOICE_SERVICE_TYPES:
        return VOICE_SERVICE_TYPES[code], "serviceType"
    if (row["fwd_start_time"] is not None or row["fwd_alerting_time"] is not None
            or row["fwd_answer_time"] is not None or row["fwd_dst_num"] or row["fwd_display_num"]
            or row["fwd_unasw_rsn"]):
        return "callback", "fwd_fields"
    if row["tts_play_times"] or row["tts_trans_duration"] or row["dyn_ivr_path"] or row["dyn_ivr_start_time"]:
        return "notification", "notification_fields"
    return "unknown", "none" if not code else "serviceType"


def has_recording(row: dict[str, Any]) -> int:
    """1 when the CDR says a recording exists and the call talked long enough to be recorded."""
    if row["talk_seconds"] < MIN_RECORDED_TALK_SECONDS:
        return 0
    recorded = row["record_flag"] == 1 or row["record_object_name"] or row["record_file_download_url"]
    return 1 if recorded else 0


def _q850(row: dict[str, Any], column: str, source: str, service: str, note: Enriched) -> tuple[int, Code] | None:
    code = row[column]
    if code is None:
        row[column + "_desc"] = ""
        row[column + "_class"] = ""
        return None
    entry = lookup(source, service, code, note)
    row[column + "_desc"] = entry.description
    row[column + "_class"] = entry.cause_class
    return (code, entry) if entry.known else None


def enrich_cdr(row: dict[str, Any], note: Enriched) -> None:
    service = row["service"]
    service_type, row["service_type_source"] = service_type_of(row)
    row["service_type"] = service_type
    fwd_leg = service_type in ("callback", "privacy")
    fwd = _q850(row, "fwd_unasw_rsn", "fwdUnaswRsn", service, note)
    out = _q850(row, "call_out_unasw_rsn", "callOutUnaswRsn", service, note)
    legs = [c for c in ((fwd, out) if fwd_leg else (out, fwd)) if c is not None]

    sip_code = row["sip_status_code"]
    sip: tuple[int, Code] | None = None
    if sip_code is None:
        row["sip_status_code_desc"] = ""
    else:
        sip = (sip_code, lookup("sipStatusCode", "", sip_code, note))
        row["sip_status_code_desc"] = sip[1].description

    ul = row["ul_fail_reason"]
    teardown: tuple[int, Code] | None = None
    if ul is None:
        row["ul_fail_reason_desc"] = ""
    else:
        entry = lookup("ulFailReason", service, ul, note)
        teardown = (ul, entry)
        deferred = next((c[1] for c in legs if c[0] != 0), None) or (sip[1] if sip and sip[0] else None)
        if ul in Q850_DEFERRING_TEARDOWNS and deferred is not None:
            row["ul_fail_reason_desc"] = f"{entry.description}: {deferred.description}"
        else:
            row["ul_fail_reason_desc"] = entry.description

    if fwd_leg:
        start, alerting, answer = row["fwd_start_time"], row["fwd_alerting_time"], row["fwd_answer_time"]
    else:
        start, alerting, answer = row["call_out_start_time"], row["call_out_alerting_time"], row["call_out_answer_time"]
    end = row["call_end_time"]
    failed_at = row["fail_time"] if row["fail_time"] is not None else end
    if end is None:
        end = row["fail_time"]
    answered = answer is not None
    row["answered"] = 1 if answered else 0
    row["talk_seconds"] = (_seconds(answer, end, note) or 0) if answered else 0
    row["ring_seconds"] = _seconds(alerting, answer if answered else end, note)
    row["setup_seconds"] = _seconds(start, alerting, note)

    starts = [t for t in (row["call_in_time"], row["call_out_start_time"], row["fwd_start_time"]) if t is not None]
    call_start = min(starts) if starts else None
    row["call_start_time"] = call_start
    row["call_time"] = call_start or end or row["received_at"] // 1000
    row["has_recording"] = has_recording(row)

    outcome = call_outcome(answered, alerting is not None, legs, teardown, sip)
    row["failure_category"] = outcome.category
    row["failure_reason"] = outcome.reason
    row["failure_source"] = outcome.source
    row["refused"] = 1 if outcome.refused else 0
    pdd = session_request_delay_ms(start, alerting, answer, failed_at if not answered else None, outcome)
    if pdd is None and alerting is None and start is not None and not outcome.refused:
        first = answer if answer is not None else failed_at
        if first is not None and first < start:  # (alerting before start is counted by setup_seconds)
            note.inconsistent_timestamps += 1
    row["pdd_ms"] = pdd


LegOrder = tuple[int, int]  # (event time ms, receipt us): which callout came first


def event_order(row: dict[str, Any]) -> LegOrder:
    return row["event_time"], row["received_at"]


def assign_legs(rows: list[dict[str, Any]], first: dict[str, tuple[LegOrder, str]]) -> list[dict[str, Any]]:
    """Voice callback legs from the records: the number called by the session's earliest ``callout``
    (by event time, then receipt; stored ones in ``first``, updated here) is leg 1, any other number
    leg 2. Returns the rows whose leg changed. The same events give the same legs in any process."""
    for row in rows:
        if row["event_type"] == "callout" and row["service"] == "voice" and row["session_id"]:
            order = event_order(row)
            known = first.get(row["session_id"])
            if known is None or order < known[0]:
                first[row["session_id"]] = (order, row["called"])
    changed = []
    for row in rows:
        if row["service"] != "voice" or row["event_type"] == "collectInfo" or not row["session_id"]:
            continue
        known = first.get(row["session_id"])
        leg = 1 if known is None or not row["called"] or known[1] == row["called"] else 2
        if leg != row["leg"]:
            row["leg"] = leg
            changed.append(row)
    return changed


def enrich_event(row: dict[str, Any], note: Enriched) -> None:
    """Describe one event; ``leg`` starts at 1 (``assign_legs`` sets the callback legs)."""
    event_type = row["event_type"]
    row["event_seq"] = EVENT_SEQ.get(event_type, 255)
    ts = row["timestamp"]
    row["event_time"] = ts if ts is not None else row["received_at"] // 1000
    code = row["state_code"]
    if code is None:
        row["state_code_desc"] = ""
        row["failure_category"] = ""
    else:
        entry = lookup("stateCode", row["service"], code, note)
        row["state_code_desc"] = entry.description
        row["failure_category"] = entry.category
    row["leg"] = 1


_days: dict[int, date] = {}


def receipt_day(received_at_us: int) -> date:
    day_number = received_at_us // 86_400_000_000
    day = _days.get(day_number)
    if day is None:
        day = datetime.fromtimestamp(day_number * 86_400, UTC).date()
        _days[day_number] = day
    return day


def enrich_status(row: dict[str, Any], note: Enriched) -> None:
    status = row["status"]
    cause = row["cause"]
    row["status_desc"] = lookup("status", "", status, note).description if status is not None else ""
    row["cause_desc"] = lookup("cause", "", cause, note).description if cause is not None else ""
    row["available"] = 1 if status == 5 else 0
    row["receipt_day"] = receipt_day(row["received_at"])


def enrich_rows(
    cdrs: list[dict[str, Any]], events: list[dict[str, Any]], statuses: list[dict[str, Any]], note: Enriched
) -> None:
    """The enrich step of a batch: every CDR, call event and number status row, in place."""
    for row in cdrs:
        enrich_cdr(row, note)
    for row in events:
        enrich_event(row, note)
    for row in statuses:
        enrich_status(row, note)

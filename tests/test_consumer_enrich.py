"""Enrichment: every code of every table is described; derived call figures; dedup keys."""

from __future__ import annotations

import csv
from typing import Any

import pytest

from consumers.decode import Notification
from consumers.dedupe import RecentKeys, assign_keys, insert_token, unique_in_batch
from consumers.enrich import Enriched, assign_legs, enrich_cdr, enrich_event, enrich_status
from consumers.normalise import normalise
from schemas.codes import CATEGORIES, CODES_DIR, describe
from tests.conftest import sample_bytes


def _rows(name: str) -> list[dict[str, str]]:
    with (CODES_DIR / name).open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _expand(code: str) -> list[int]:
    low, _, high = code.partition("-")
    return list(range(int(low), int(high or low) + 1))


CASES = (
    [("stateCode", r["service"], c, r["description_en"]) for r in _rows("hangup_reasons.csv") for c in _expand(r["code"])]
    + [("ulFailReason", r["service"], c, "SIP" if r["code"] == "400-699" else r["description_en"])
       for r in _rows("teardown_points.csv")
       for c in ([404, 486, 603] if r["code"] == "400-699" else _expand(r["code"]))]
    + [(f, "voice", int(r["code"]), r["name"]) for r in _rows("q850_causes.csv") for f in ("fwdUnaswRsn", "callOutUnaswRsn")]
    + [("sipStatusCode", "", int(r["code"]), r["reason_phrase"]) for r in _rows("sip_status.csv")]
    + [(r["field"], "", int(r["code"]), r["description_en"]) for r in _rows("x_number_status.csv")]
)


@pytest.mark.parametrize(("field", "service", "code", "text"), CASES, ids=lambda v: str(v)[:20])
def test_every_code_is_described(field: str, service: str, code: int, text: str) -> None:
    entry = describe(field, service, code)
    assert entry.known and entry.category in CATEGORIES and entry.category != "unknown"
    # explicit rows win over ranges; ranges (400-699) are described as SIP statuses
    if text == "SIP":
        assert entry.description.startswith(f"SIP {code} ")
    else:
        assert text in entry.description


def _enriched(name: str, service: str = "voice") -> tuple[list[dict[str, Any]], Enriched]:
    n = Notification("n", 1_710_209_704_000_000, service, "/", "", "appk", sample_bytes(name))
    out = normalise([n])
    note = Enriched()
    for row in out.cdrs:
        enrich_cdr(row, note)
    return out.cdrs, note


def test_merged_voice_cdrs_explain_each_outcome() -> None:
    rows, note = _enriched("voice_notify_cdr_merged.json")
    ok, no_answer, busy, ok2 = rows
    assert (ok["answered"], ok["talk_seconds"], ok["ring_seconds"], ok["setup_seconds"]) == (1, 53, 5, 3)
    assert ok["failure_category"] == "normal" and ok["service_type"] == "notification"
    assert no_answer["answered"] == 0 and no_answer["talk_seconds"] == 0 and no_answer["ring_seconds"] == 58
    assert no_answer["ul_fail_reason_desc"] == "Ringing timed out" and no_answer["failure_category"] == "no_answer"
    assert busy["ul_fail_reason"] == 518 and busy["failure_reason"] == "User busy"
    assert "User busy" in busy["ul_fail_reason_desc"] and busy["failure_category"] == "user_busy"
    assert busy["setup_seconds"] is None and busy["call_out_unasw_rsn_class"] == "normal event"
    assert note.unknown_codes == [] and note.inconsistent_timestamps == 0


def test_privacy_cdrs_use_forward_leg_and_unknown_codes_are_kept() -> None:
    rows, note = _enriched("privacy_axb_cdr_merged.json", "privacy")
    assert [r["service_type"] for r in rows] == ["privacy"] * 3
    assert rows[0]["talk_seconds"] == 94 and rows[0]["has_recording"] == 1
    assert rows[1]["failure_category"] == "no_answer"
    assert rows[2]["ul_fail_reason_desc"] == "Callee busy"
    assert rows[2]["failure_category"] == "user_busy"  # Q.850 17
    assert note.unknown_codes == []


def test_failure_only_in_teardown_and_sip_with_q850_zero() -> None:
    row = {"sessionId": "s", "appKey": "a", "callOutStartTime": "2024-03-12 02:15:04",
           "callEndTime": "2024-03-12 02:15:20", "callOutUnaswRsn": 0, "fwdUnaswRsn": 0, "ulFailReason": 404,
           "sipStatusCode": 404, "serviceType": "001"}
    n = Notification("n", 0, "voice", "/", "", "a", __import__("json").dumps({"eventType": "fee", "feeLst": [row]}).encode())
    cdr = normalise([n]).cdrs[0]
    enrich_cdr(cdr, Enriched())
    assert cdr["answered"] == 0 and cdr["failure_category"] == "unreachable"
    assert cdr["ul_fail_reason_desc"].startswith("SIP 404 Not Found")


def test_inconsistent_timestamps_are_no_samples_and_count() -> None:
    row = {"sessionId": "s", "callOutStartTime": "2024-03-12 02:15:10", "callOutAlertingTime": "2024-03-12 02:15:04",
           "callOutAnswerTime": "2024-03-12 02:15:20", "callEndTime": "2024-03-12 02:15:00"}
    n = Notification("n", 0, "voice", "/", "", "a", __import__("json").dumps({"eventType": "fee", "feeLst": [row]}).encode())
    cdr = normalise([n]).cdrs[0]
    note = Enriched()
    enrich_cdr(cdr, note)
    # alerting before the leg start and an end before the answer: no setup sample, no PDD sample
    assert cdr["talk_seconds"] == 0 and cdr["setup_seconds"] is None and cdr["ring_seconds"] == 16
    assert cdr["pdd_ms"] is None
    assert note.inconsistent_timestamps == 2


def test_events_statuses_and_callback_legs() -> None:
    names = ["voice_callback_status_callout.json", "voice_callback_status_answer.json",
             "voice_callback_status_disconnect.json", "privacy_axb_event_disconnect_rejected.json"]
    ns = [Notification(str(i), 0, "privacy" if n.startswith("privacy") else "voice", "/", "", "a", sample_bytes(n))
          for i, n in enumerate(names)]
    ns.append(Notification("s", 1_710_209_704_000_000, "privacy", "/", "", "a", sample_bytes("privacy_x_numstatus.json")))
    out = normalise(ns)
    note = Enriched()
    for row in out.events:
        enrich_event(row, note)
    assign_legs(out.events, {})
    for row in out.statuses:
        enrich_status(row, note)
    assert [(r["event_seq"], r["leg"]) for r in out.events] == [(1, 1), (3, 1), (5, 2), (5, 1)]
    assert out.events[3]["failure_category"] == "user_rejected"
    assert out.statuses[0]["status_desc"].startswith("Unavailable") and out.statuses[0]["cause_desc"] == "Arrears (unpaid)"
    assert out.statuses[1]["available"] == 1 and str(out.statuses[1]["receipt_day"]) == "2024-03-12"


def test_dedup_keys_batch_lru_and_token() -> None:
    merged = Notification("a", 0, "voice", "/", "", "k", sample_bytes("voice_notify_cdr_merged.json"))
    single = Notification("b", 5, "voice", "/", "", "k", sample_bytes("voice_notify_cdr_single.json"))
    out = normalise([merged, single, merged])
    assign_keys("cdrs", out.cdrs)
    rows, dropped = unique_in_batch(out.cdrs)
    assert len(rows) == 4 and dropped == 5  # the single CDR shares icid/sessionId with merged[0]
    recent = RecentKeys(capacity=3)
    recent.add("cdrs", [r["dedup_key"] for r in rows])
    assert len(recent) == 3
    kept, known = recent.split("cdrs", rows)
    assert (len(kept), known) == (1, 3)
    assert insert_token("cdrs", rows) == insert_token("cdrs", list(reversed(rows)))
    assert insert_token("cdrs", rows) != insert_token("cdrs", rows[:2])

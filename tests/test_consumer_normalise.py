"""Splitting and normalising pushes (pure functions, no broker or store)."""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.decode import Notification
from consumers.enrich import Enriched, enrich_cdr
from consumers.normalise import CDR_FIELDS, normalise
from tests.conftest import sample_bytes, sample_paths


def note(body: bytes | dict[str, Any], service: str = "voice") -> Notification:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Notification("n1", 1_710_209_704_000_000, service, "/notify", "", "appk", raw)


def test_every_sample_splits_without_failures() -> None:
    out = normalise([note(p.read_bytes(), "privacy" if p.name.startswith("privacy") else "voice")
                     for p in sample_paths()])
    assert out.failures == [] and out.invalid == []
    assert len(out.cdrs) == 3 + 1 + 1 + 4 + 1 and len(out.statuses) == 2 and len(out.events) == 17


def test_cdr_columns_times_and_raw() -> None:
    out = normalise([note(sample_bytes("voice_callback_cdr_single.json"))])
    row = out.cdrs[0]
    assert row["call_out_start_time"] == 1710234914000 and row["fwd_answer_time"] == 1710234936000
    assert row["fwd_unasw_rsn"] == 0 and row["record_flag"] == 1 and row["service_type_code"] == "002"
    assert row["call_in_time"] is None and row["extra"] == "{}"
    assert orjson.loads(row["raw"])["icid"] == row["icid"]


def test_strings_for_integers_garbage_and_unknown_keys() -> None:
    body = {"eventType": "fee", "feeLst": [{"sessionId": "s1", "appKey": "a", "fwdUnaswRsn": "19",
                                            "ulFailReason": "oops", "callEndTime": "soon", "callType": "3"}]}
    out = normalise([note(body, "privacy")])
    row = out.cdrs[0]
    assert row["fwd_unasw_rsn"] == 19 and row["ul_fail_reason"] is None and row["call_end_time"] is None
    assert sorted(out.invalid) == ["callEndTime", "ulFailReason"]
    extra = orjson.loads(row["extra"])
    assert extra["callType"] == "3" and extra["_invalid"] == {"ulFailReason": "oops", "callEndTime": "soon"}


def test_axe_voice_check_and_multi_party_fields_are_typed_columns() -> None:
    body = {"eventType": "fee", "feeLst": [{"sessionId": "s1", "appKey": "a", "extendNum": "8001",
                                            "voiceCheckType": "2", "createMptyTime": "2024-03-12  02:30:03",
                                            "joinMptyTime": "2024-03-12T02:30:05Z", "recordPushURL": "x"}]}
    row = normalise([note(body, "privacy")]).cdrs[0]
    assert (row["extend_num"], row["voice_check_type"]) == ("8001", 2)
    assert (row["create_mpty_time"], row["join_mpty_time"]) == (1_710_210_603_000, 1_710_210_605_000)
    assert orjson.loads(row["extra"]) == {"recordPushURL": "x"}  # not a documented field: stays in extra


def test_bad_records_fail_alone_and_bad_pushes_fail_whole() -> None:
    body = {"eventType": "fee", "feeLst": [{"sessionId": "ok", "appKey": "a"}, "str", {"appKey": "a"},
                                           {"sessionId": "x", "callerNum": {"nested": 1}}]}
    out = normalise([note(body), note(b"not json"), note({"eventType": "sms"}), note({"eventType": "fee"}),
                     note(b"[1]"), note({"eventType": "answer", "statusInfo": []})])
    assert [r["session_id"] for r in out.cdrs] == ["ok"]
    assert [(f.record_index, f.reason) for f in out.failures] == [
        (1, "not_an_object"), (2, "missing_session_id"), (3, "bad_field"), (-1, "malformed"),
        (-1, "unknown_event_type"), (-1, "missing_feeLst"), (-1, "malformed"), (-1, "missing_statusInfo")]


def test_event_takes_envelope_app_key_and_cdr_falls_back_to_it() -> None:
    out = normalise([note(sample_bytes("voice_notify_status_answer.json")),
                     note({"eventType": "fee", "feeLst": [{"sessionId": "s"}]})])
    assert out.events[0]["app_key"] == "appk" and out.events[0]["event_type"] == "answer"
    assert out.cdrs[0]["app_key"] == "appk"


_time_values = st.one_of(st.none(), st.text(max_size=25), st.integers(), st.floats(allow_nan=True),
                         st.just("2024-03-12 02:15:04"), st.just("2024-03-12 02:14:04"), st.booleans())
_any_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                           max_leaves=6)


@given(st.dictionaries(st.sampled_from(sorted(CDR_FIELDS)), st.one_of(_time_values, _any_values), max_size=20),
       st.sampled_from(["voice", "privacy"]))
@settings(max_examples=300, deadline=None)
def test_normalise_and_enrich_never_raise_and_durations_never_negative(fee: dict[str, Any], service: str) -> None:
    out = normalise([note({"eventType": "fee", "feeLst": [fee]}, service)])
    assert len(out.cdrs) + len(out.failures) == 1
    for row in out.cdrs:
        enrich_cdr(row, Enriched())
        assert row["talk_seconds"] >= 0
        assert row["ring_seconds"] is None or row["ring_seconds"] >= 0
        assert row["setup_seconds"] is None or row["setup_seconds"] >= 0
        assert row["failure_category"]

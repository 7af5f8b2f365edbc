"""Call outcome precedence (E.411/E.425) and the RFC 6076 session request delay, per CDR."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from consumers.decode import Notification
from consumers.enrich import Enriched, enrich_cdr
from consumers.normalise import normalise


def _cdr(service: str = "voice", **fields: Any) -> dict[str, Any]:
    record = {"sessionId": "s-1", "appKey": "app", "serviceType": "001" if service == "voice" else "004",
              "callOutUnaswRsn": 0, "fwdUnaswRsn": 0, "ulFailReason": 0, "sipStatusCode": 0}
    record.update(fields)
    body = orjson.dumps({"eventType": "fee", "feeLst": [{k: v for k, v in record.items() if v is not None}]})
    row = normalise([Notification("n", 0, service, "/", "", "app", body)]).cdrs[0]
    enrich_cdr(row, Enriched())
    return row


START, ALERT, END = "2024-03-12 02:15:04", "2024-03-12 02:15:07", "2024-03-12 02:15:40"


def test_q850_cause_class_wins_over_a_known_teardown_point() -> None:
    # teardown 513 (a network-side point) with Q.850 19 on the leg: the user did not answer
    row = _cdr(callOutStartTime=START, callOutAlertingTime=ALERT, callEndTime=END, callOutUnaswRsn=19,
               ulFailReason=513, sipStatusCode=480)
    assert (row["failure_category"], row["failure_source"], row["refused"]) == ("no_answer", "q850", 0)
    assert row["failure_reason"] == "No answer from user (user alerted)"


def test_normal_unspecified_without_alerting_is_not_a_no_answer() -> None:
    row = _cdr(callOutStartTime=START, callEndTime=END, callOutUnaswRsn=31)
    assert row["failure_category"] == "unknown" and row["failure_source"] == "q850"
    assert "released before alerting" in row["failure_reason"]
    rang = _cdr(callOutStartTime=START, callOutAlertingTime=ALERT, callEndTime=END, callOutUnaswRsn=31)
    assert rang["failure_category"] == "no_answer"


def test_frequency_control_is_a_platform_refusal() -> None:
    row = _cdr(callEndTime=END, ulFailReason=7001)
    assert (row["refused"], row["failure_category"], row["failure_source"]) == (1, "control", "teardown")
    assert row["pdd_ms"] is None
    # a specific Q.850 cause means the network saw the call: a failed seizure, not a refusal
    seized = _cdr(callOutStartTime=START, callEndTime=END, callOutUnaswRsn=34, ulFailReason=7001)
    assert (seized["refused"], seized["failure_category"]) == (0, "network_failure")


@pytest.mark.parametrize(("fields", "expected"), [
    ({"callOutAlertingTime": ALERT, "callOutAnswerTime": "2024-03-12 02:15:12"}, 3000),  # start -> 180
    ({"callOutAnswerTime": "2024-03-12 02:15:06"}, 2000),  # no 18x: start -> 200
    ({"callOutUnaswRsn": 17, "failTime": "2024-03-12 02:15:05"}, 1000),  # failed setup: start -> failure
    ({"callOutUnaswRsn": 1}, 36000),  # failed setup, failure time = end of the call
    ({"ulFailReason": 530}, None),  # the caller gave up before any answer from the far end
    ({"callOutUnaswRsn": 17, "failTime": "2024-03-12 02:15:00"}, None),  # failure before the start: no sample
])
def test_session_request_delay_per_rfc_6076(fields: dict[str, Any], expected: int | None) -> None:
    row = _cdr(callOutStartTime=START, callEndTime=END, **fields)
    assert row["pdd_ms"] == expected


def test_codes_seen_in_the_samples_and_the_iana_sip_registry_are_known() -> None:
    from schemas.codes import describe

    assert describe("ulFailReason", "privacy", 8102).known  # merged privacy CDR sample
    assert describe("ulFailReason", "privacy", 8102).category == "user_busy"
    for code in (181, 199, 422, 424, 428, 433, 489, 494, 555, 607, 608):
        entry = describe("sipStatusCode", "", code)
        assert entry.known, code
    assert describe("sipStatusCode", "", 422).description == "Session Interval Too Small"
    assert describe("sipStatusCode", "", 607).category == "user_rejected"
    assert describe("sipStatusCode", "", 180).category == "normal"
    assert not describe("sipStatusCode", "", 499).known  # not registered


def test_callback_is_told_by_its_fields_and_unknown_is_said() -> None:
    # a callback CDR without serviceType whose only forward field is the busy B leg's cause
    row = _cdr(serviceType=None, callOutStartTime=START, callOutAlertingTime=ALERT,
               callOutAnswerTime="2024-03-12 02:15:10", callEndTime=END, fwdUnaswRsn=17)
    assert (row["service_type"], row["service_type_source"]) == ("callback", "fwd_fields")
    assert row["answered"] == 0 and row["failure_category"] == "user_busy"
    bare = _cdr(serviceType=None, callOutStartTime=START, callEndTime=END)
    assert (bare["service_type"], bare["service_type_source"]) == ("unknown", "none")
    tts = _cdr(serviceType=None, callOutStartTime=START, callEndTime=END, ttsPlayTimes=1)
    assert (tts["service_type"], tts["service_type_source"]) == ("notification", "notification_fields")
    coded = _cdr(callOutStartTime=START, callEndTime=END)
    assert (coded["service_type"], coded["service_type_source"]) == ("notification", "serviceType")


@pytest.mark.parametrize(("end", "recorded"), [("2024-03-12 02:15:12", 0), ("2024-03-12 02:15:13", 1)])
def test_no_recording_under_three_seconds(end: str, recorded: int) -> None:
    row = _cdr(callOutStartTime=START, callOutAlertingTime=ALERT, callOutAnswerTime="2024-03-12 02:15:10",
               callEndTime=end, recordFlag=1, recordObjectName="r.wav")
    assert row["has_recording"] == recorded

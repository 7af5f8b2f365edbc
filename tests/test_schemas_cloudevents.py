"""One CloudEvents header builder and one dead-letter builder serve the edge, the consumer and replay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from schemas.avro_codec import decode
from schemas.cloudevents import (
    CONTENT_TYPE,
    SPECVERSION,
    headers,
    platform_source,
    platform_type,
    raw_headers,
    rfc3339,
    rfc3339_millis,
)
from schemas.dead_letter import DETAIL_MAX_CHARS, dead_letter

MOMENT = datetime(2024, 3, 12, 2, 30, 4, 123456, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def test_headers_keep_one_order_and_leave_out_an_absent_subject() -> None:
    with_subject = headers(b"id", platform_source("voice", "app"), platform_type("voice", "fee"), b"t", b"key")
    assert [name for name, _ in with_subject] == [
        "ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_subject", "content-type"]
    assert with_subject[0] == SPECVERSION and with_subject[-1] == CONTENT_TYPE
    without = headers(b"id", platform_source("voice", "app"), platform_type("voice", "fee"), b"t", None)
    assert [name for name, _ in without] == [n for n, _ in with_subject if n != "ce_subject"]


def test_raw_headers_name_the_platform_source_and_event_type() -> None:
    found = dict(raw_headers("ab" * 16, MOMENT, "privacy", "fee", "app1", "session-1"))
    assert found["ce_source"] == b"huawei/privacy/app1"
    assert found["ce_type"] == b"com.huaweicloud.privacy.fee"
    assert found["ce_time"] == b"2024-03-12T02:30:04.123456+00:00"
    assert found["ce_subject"] == b"session-1"
    assert datetime.fromisoformat(rfc3339(MOMENT)) == MOMENT


@given(st.integers(min_value=0, max_value=2**41), st.sampled_from([1000, 1_000_000]))
def test_millisecond_time_equals_the_library_formatting(value: int, per_second: int) -> None:
    moment = EPOCH + timedelta(microseconds=value * 1_000_000 // per_second)
    expected = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    assert rfc3339_millis(value, per_second).decode() == expected


def test_an_edge_dead_letter_carries_the_request_and_says_its_stage() -> None:
    value, found = dead_letter(
        id="n1", received_at=MOMENT, stage="edge", reason="unauthenticated", detail="bad digest",
        service="voice", path="/notify/voice", app_key="app", body=b"{}", http_status=401,
        request_headers={"content-type": "application/json"}, body_truncated=True,
    )
    name, record = decode(value)
    assert name == "dead_letter"
    assert record["received_at"] == MOMENT and record["http_status"] == 401 and record["body_truncated"]
    assert record["headers"] == {"content-type": "application/json"} and record["source_partition"] == -1
    ce = dict(found)
    assert ce["ce_id"] == b"n1" and ce["ce_source"] == b"callstream/edge/voice"
    assert ce["ce_type"] == b"io.callstream.dead_letter" and ce["ce_subject"] == b"unauthenticated"
    assert ce["ce_time"] == b"2024-03-12T02:30:04.123456+00:00"


def test_a_consumer_dead_letter_names_its_record_and_where_it_was_read() -> None:
    micros = (MOMENT - EPOCH) // timedelta(microseconds=1)
    value, found = dead_letter(
        id="n2", received_at=micros, stage="normalise", reason="bad_time", detail="x" * 5000,
        service="privacy", path="/notify/privacy", app_key="app", body=b"[]", source=("callstream.raw", 2, 41),
        record_index=3,
    )
    _, record = decode(value)
    assert record["received_at"] == MOMENT and len(record["detail"]) == DETAIL_MAX_CHARS
    assert (record["source_topic"], record["source_partition"], record["source_offset"]) == ("callstream.raw", 2, 41)
    assert record["headers"] == {"record_index": "3"}
    ce = dict(found)
    assert ce["ce_id"] == b"n2:3" and ce["ce_source"] == b"callstream/normalise/privacy"
    assert ce["ce_time"] == b"2024-03-12T02:30:04.123456+00:00"
    whole_push = dict(dead_letter(id="n3", received_at=micros, stage="decode", reason="bad_envelope", detail="",
                                  service="", path="", app_key="", body=b"", record_index=-1)[1])
    assert whole_push["ce_id"] == b"n3"

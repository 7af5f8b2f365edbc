"""The body classifier: event type and Kafka key of every sample, and one reason word per bad input."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import BadNotification
from ingest.notification import classify
from tests.conftest import sample_paths


def _service(name: str) -> str:
    return name.split("_", 1)[0]


@pytest.mark.parametrize("path", sample_paths(), ids=lambda p: p.stem)
def test_every_sample_classifies_with_its_key(path) -> None:  # type: ignore[no-untyped-def]
    body = path.read_bytes()
    doc = json.loads(body)
    result = classify(_service(path.name), body)
    assert result.event_type == doc["eventType"]
    if "statusInfo" in doc:
        assert result.key == doc["statusInfo"]["sessionId"]
    elif "feeLst" in doc:
        assert result.key == doc["feeLst"][0]["sessionId"]
    else:
        assert result.key == doc["numInfo"][0]["number"]


@pytest.mark.parametrize(
    ("service", "body", "reason"),
    [
        ("voice", b"\xff\xfe{}", "not_utf8"),
        ("voice", b"eventType=fee", "not_json"),
        ("voice", b"", "not_json"),
        ("voice", b'{"eventType": "fee", "feeLst": [' * 3000, "not_json"),
        ("voice", b"[1, 2]", "not_object"),
        ("voice", b'"fee"', "not_object"),
        ("voice", b'{"eventType": "hangup", "statusInfo": {}}', "unknown_event_type"),
        ("voice", b'{"statusInfo": {}}', "unknown_event_type"),
        ("voice", b'{"eventType": 3}', "unknown_event_type"),
        ("voice", b'{"eventType": "answer"}', "missing_field"),
        ("voice", b'{"eventType": "answer", "statusInfo": []}', "missing_field"),
        ("privacy", b'{"eventType": "fee", "feeLst": {}}', "missing_field"),
        ("privacy", b'{"eventType": "fee", "feeLst": []}', "missing_field"),
        ("privacy", b'{"eventType": "numStatus", "numInfo": "x"}', "missing_field"),
        ("voice", b'{"eventType": "numStatus", "numInfo": [{"number": "1"}]}', "wrong_service"),
        ("sms", b'{"eventType": "fee", "feeLst": [{}]}', "wrong_service"),
    ],
)
def test_bad_bodies_have_reason_words(service: str, body: bytes, reason: str) -> None:
    with pytest.raises(BadNotification) as caught:
        classify(service, body)
    assert caught.value.reason == reason
    assert 400 <= caught.value.status < 500


def test_callin_is_accepted_on_voice_and_extra_fields_are_kept() -> None:
    body = b'{"eventType": "callin", "statusInfo": {"sessionId": "s1", "newField": 1}, "extra": true}'
    result = classify("voice", body)
    assert (result.event_type, result.key) == ("callin", "s1")


def test_missing_session_gives_no_key() -> None:
    assert classify("privacy", b'{"eventType": "answer", "statusInfo": {}}').key is None
    assert classify("voice", b'{"eventType": "fee", "feeLst": [1, {"sessionId": "s2"}]}').key == "s2"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
event_types = st.sampled_from(["callout", "alerting", "answer", "collectInfo", "disconnect", "callin", "fee",
                               "numStatus", "other"])


@given(st.binary(max_size=400), st.sampled_from(["voice", "privacy"]))
def test_arbitrary_bytes_raise_only_bad_notification(body: bytes, service: str) -> None:
    try:
        classify(service, body)
    except BadNotification as exc:
        assert exc.reason in {"not_json", "not_utf8", "not_object", "unknown_event_type", "missing_field",
                              "wrong_service"}


@given(event_types, st.dictionaries(st.sampled_from(["statusInfo", "feeLst", "numInfo", "x"]), json_values),
       st.sampled_from(["voice", "privacy"]))
def test_shaped_documents_raise_only_bad_notification(event: str, fields: dict, service: str) -> None:  # type: ignore[type-arg]
    body = json.dumps({"eventType": event, **fields}).encode()
    try:
        result = classify(service, body)
    except BadNotification:
        return
    assert result.event_type == event
    assert result.key is None or isinstance(result.key, str)

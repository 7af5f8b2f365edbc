"""Number protection: policy parsing, mask, keyed hash, and rewriting of rows and their raw JSON."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.numbers import (
    DEFAULT_POLICY,
    RAW_DOC,
    Policy,
    keyed_hash,
    mask,
    policy_from_settings,
)
from consumers.pepper import ensure_pepper_file
from consumers.protect import protect_record, protect_session_id
from core.errors import ConfigError
from core.settings import Settings
from tests.conftest import sample_bytes

PEPPER = b"pepper-for-tests-0123456789"
A, B, X = "+8613800000021", "+8613866000021", "+8617000000001"

numbers = st.from_regex(r"\+?[0-9]{1,16}", fullmatch=True)
e164 = st.from_regex(r"\+[1-9][0-9]{7,14}", fullmatch=True)


def default_policy(**kwargs: object) -> Policy:
    return Policy.parse(DEFAULT_POLICY, pepper=PEPPER, **kwargs)  # type: ignore[arg-type]


def test_mask_matches_the_documented_shape() -> None:
    assert mask("+8613800000021") == "+86138****0021"
    assert mask("+12025550123") == "+120****0123"
    assert mask("") == ""
    assert mask("anonymous") == "anonymous"


@given(numbers)
def test_mask_never_reveals_more_than_the_kept_digits(value: str) -> None:
    masked = mask(value)
    assert len(masked) == len(value)
    digits = [c for c in value if c.isdigit()]
    shown = [c for c in masked if c.isdigit()]
    cc = 3 if value.startswith("+") else 0
    assert len(shown) <= cc + 3 + 4
    hidden = masked.count("*")
    assert hidden >= min(4, len(digits) - cc)  # at least 4 national digits hidden (all if fewer)
    # every shown digit is the original digit at that position (nothing invented, nothing moved)
    assert all(m == o for m, o in zip(masked, value, strict=True) if m != "*")
    assert mask(masked) == masked


@given(e164, st.binary(min_size=16, max_size=40), st.binary(min_size=16, max_size=40))
def test_hash_is_stable_and_depends_on_the_pepper(value: str, pepper: bytes, other: bytes) -> None:
    first = keyed_hash(value, pepper)
    assert first == keyed_hash(value, pepper)
    assert first.startswith("h:") and len(first) == 34
    assert value not in first
    if other != pepper:
        assert keyed_hash(value, other) != first
    assert keyed_hash(first, pepper) == first  # idempotent: replays do not double-hash


def test_policy_parse_rejects_bad_entries_and_missing_pepper() -> None:
    with pytest.raises(ConfigError, match="column=keep"):
        Policy.parse("caller_num=encrypt", pepper=PEPPER)
    with pytest.raises(ConfigError, match="column=keep"):
        Policy.parse("phone=hash", pepper=PEPPER)
    with pytest.raises(ConfigError, match="CALLSTREAM_NUMBER_PEPPER"):
        Policy.parse("caller_num=hash", pepper=b"")
    assert Policy.parse("caller_num=mask").mode("caller_num") == "mask"  # no pepper needed
    assert Policy.parse("").mode("caller_num") == "keep"


def test_default_settings_without_pepper_fail_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CALLSTREAM_NUMBER_PEPPER_FILE"):
        policy_from_settings(Settings(data_dir=tmp_path))


def test_pepper_from_file_and_generated_file_is_private(tmp_path: Path) -> None:
    path = ensure_pepper_file(tmp_path / "number_pepper")
    assert path.stat().st_mode & 0o077 == 0
    secret = path.read_text().strip()
    assert len(secret) == 64
    assert ensure_pepper_file(path).read_text().strip() == secret  # not regenerated
    policy = policy_from_settings(Settings(number_pepper_file=path))
    assert policy.pepper == secret.encode()
    assert secret not in repr(Settings(number_pepper=secret))


def _cdr_row(name: str) -> dict[str, object]:
    fee = orjson.loads(sample_bytes(name))["feeLst"][0]
    return {
        "caller_num": fee["callerNum"],
        "callee_num": fee["calleeNum"],
        "bind_num": fee["bindNum"],
        "fwd_display_num": fee.get("fwdDisplayNum", ""),
        "fwd_dst_num": fee.get("fwdDstNum", ""),
        "session_id": fee["sessionId"],
        "record_file_download_url": "https://obs.example/rec.wav?X-Signature=s3cr3t",
        "raw": orjson.dumps(
            {**fee, "recordFileDownloadUrl": "https://obs.example/rec.wav?X-Signature=s3cr3t"}
        ).decode(),
        "talk_seconds": 16,
    }


def test_privacy_cdr_hashes_a_and_b_keeps_x_and_drops_the_url() -> None:
    policy = default_policy()
    out = protect_record("cdrs", _cdr_row("privacy_axb_cdr_single.json"), policy)
    assert out["caller_num"] == keyed_hash(A, PEPPER)
    assert out["fwd_dst_num"] == keyed_hash(B, PEPPER)
    assert out["bind_num"] == out["fwd_display_num"] == out["callee_num"] == X  # X numbers stay readable
    assert out["record_file_download_url"] == ""
    assert out["talk_seconds"] == 16
    raw = str(out["raw"])
    assert A not in raw and B not in raw and "s3cr3t" not in raw
    assert keyed_hash(A, PEPPER) in raw  # also inside the sessionId
    assert json.loads(raw)["bindNum"] == X


def test_urls_kept_when_enabled_and_input_not_mutated() -> None:
    row = _cdr_row("privacy_axb_cdr_single.json")
    before = dict(row)
    out = protect_record("cdrs", row, default_policy(publish_recording_urls=True))
    assert row == before
    assert "s3cr3t" in str(out["record_file_download_url"]) and "s3cr3t" in str(out["raw"])


def test_voice_cdr_keeps_the_sp_number_and_hashes_the_subscriber() -> None:
    out = protect_record("cdrs", _cdr_row("voice_notify_cdr_single.json"), default_policy())
    assert out["caller_num"] == "+8675528000001"  # bindNum: the SP's own number
    assert out["callee_num"] == keyed_hash(A, PEPPER)


@pytest.mark.parametrize(
    ("sample", "x_side"),
    [
        ("privacy_axb_event_callin.json", "called"),
        ("privacy_axb_event_callout.json", "caller"),
        ("privacy_axb_event_disconnect.json", "caller"),
        ("voice_callback_status_callout.json", "caller"),
    ],
)
def test_events_keep_the_x_side_and_hash_the_subscriber(sample: str, x_side: str) -> None:
    body = orjson.loads(sample_bytes(sample))
    info = body["statusInfo"]
    row = {
        "event_type": body["eventType"],
        "caller": info["caller"],
        "called": info["called"],
        "raw": orjson.dumps(body).decode(),
    }
    out = protect_record("call_events", row, default_policy())
    subscriber_side = "called" if x_side == "caller" else "caller"
    assert out[x_side] == info[x_side]
    assert out[subscriber_side] == keyed_hash(info[subscriber_side], PEPPER)
    assert info[subscriber_side] not in str(out["raw"])
    assert json.loads(str(out["raw"]))["statusInfo"][x_side] == info[x_side]


def test_unknown_event_type_hashes_both_sides() -> None:
    row = {"event_type": "collectInfo", "caller": A, "called": X}
    out = protect_record("call_events", row, default_policy())
    assert out["caller"] == keyed_hash(A, PEPPER) and out["called"] == keyed_hash(X, PEPPER)


def test_number_status_keeps_x_by_default_and_mask_policy_applies() -> None:
    body = sample_bytes("privacy_x_numstatus.json")
    row = {"number": X, "raw": body}
    assert protect_record("number_status", row, default_policy()) == row
    masked = protect_record("number_status", row, Policy.parse("number=mask"))
    assert masked["number"] == "+86170****0001"
    assert isinstance(masked["raw"], bytes) and X.encode() not in masked["raw"]


def test_unparseable_body_gets_embedded_numbers_protected() -> None:
    row = {"body": b"not json " + A.encode() + b" trailing"}
    out = protect_record("failed_events", row, default_policy())
    assert A.encode() not in out["body"] and keyed_hash(A, PEPPER).encode() in out["body"]


def test_protection_is_idempotent() -> None:
    policy = default_policy()
    once = protect_record("cdrs", _cdr_row("privacy_axb_cdr_single.json"), policy)
    assert protect_record("cdrs", once, policy) == once
    masked_policy = Policy.parse("caller_num=mask,embedded=mask")
    once = protect_record("cdrs", _cdr_row("privacy_axb_cdr_single.json"), masked_policy)
    assert protect_record("cdrs", once, masked_policy) == once


def test_session_id_lookup_form_matches_the_stored_row() -> None:
    policy = default_policy()
    row = protect_record("cdrs", _cdr_row("privacy_axb_cdr_single.json"), policy)
    fee = orjson.loads(sample_bytes("privacy_axb_cdr_single.json"))["feeLst"][0]
    assert protect_session_id(fee["sessionId"], policy) == row["session_id"] != fee["sessionId"]


def test_inert_policy_returns_the_row_untouched() -> None:
    row = _cdr_row("privacy_axb_cdr_single.json")
    assert protect_record("cdrs", row, Policy.parse("", publish_recording_urls=True)) is row
    stripped = protect_record("cdrs", row, Policy.parse(""))
    assert stripped["record_file_download_url"] == "" and stripped["caller_num"] == A


@pytest.mark.parametrize("policy_text", [DEFAULT_POLICY, "caller_num=mask,callee_num=mask,embedded=mask,bind_num=hash",
                                         "embedded=keep"])
def test_the_parsed_raw_gives_the_same_row_as_parsing_raw_again(policy_text: str) -> None:
    """The normaliser leaves each row's parsed record beside ``raw`` (RAW_DOC); protecting with it (the
    flat-record path included) gives exactly the row that parsing ``raw`` again gives, on the samples and
    a mutation corpus of them."""
    from consumers.enrich import Enriched, enrich_rows
    from consumers.normalise import Normalised, normalise_one
    from core.errors import NormaliseError
    from tests.test_consumer_prepare import corpus

    policy = Policy.parse(policy_text, pepper=PEPPER)
    out = Normalised()
    for n in corpus(2500, seed=12):
        try:
            normalise_one(n, out)
        except NormaliseError:
            pass
    enrich_rows(out.cdrs, out.events, out.statuses, Enriched())
    compared = changed = 0
    for kind, rows in (("cdrs", out.cdrs), ("call_events", out.events), ("number_status", out.statuses)):
        for row in rows:
            assert RAW_DOC in row
            without_doc = {k: v for k, v in row.items() if k != RAW_DOC}
            with_doc = protect_record(kind, row, policy)
            assert RAW_DOC not in with_doc and RAW_DOC in row  # a copy: the row keeps its document
            assert with_doc == protect_record(kind, without_doc, policy)
            compared += 1
            changed += with_doc["raw"] != row["raw"]
    assert compared > 500 and changed > 0

"""Split one push into typed rows: one CDR per ``feeLst`` entry, one call event per ``statusInfo``,
one X-number status row per ``numInfo`` entry.

Rows are plain dicts keyed by ClickHouse column names (snake_case of the Huawei field names). Times
become epoch milliseconds UTC, integers that arrive as strings are accepted, a bad value becomes
NULL and is noted (``Normalised.invalid``), unknown keys are kept in ``extra`` and the record's own
JSON object in ``raw``. A record that cannot be turned into a row becomes a ``Failure``; the other
records of the push go on. Only ``NormaliseError`` escapes, for a push that has no records at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from consumers.decode import Notification
from consumers.numbers import RAW_DOC
from consumers.times import parse_int, parse_time_ms
from core.errors import NormaliseError

STR, TIME, INT, SMALL, FLAG = "str", "time", "int", "small", "flag"

CDR_FIELDS: dict[str, tuple[str, str]] = {
    "direction": ("direction", SMALL),
    "spId": ("sp_id", STR),
    "appKey": ("app_key", STR),
    "icid": ("icid", STR),
    "bindNum": ("bind_num", STR),
    "sessionId": ("session_id", STR),
    "subscriptionId": ("subscription_id", STR),
    "callerNum": ("caller_num", STR),
    "calleeNum": ("callee_num", STR),
    "fwdDisplayNum": ("fwd_display_num", STR),
    "fwdDstNum": ("fwd_dst_num", STR),
    "callInTime": ("call_in_time", TIME),
    "callOutStartTime": ("call_out_start_time", TIME),
    "callOutAlertingTime": ("call_out_alerting_time", TIME),
    "callOutAnswerTime": ("call_out_answer_time", TIME),
    "fwdStartTime": ("fwd_start_time", TIME),
    "fwdAlertingTime": ("fwd_alerting_time", TIME),
    "fwdAnswerTime": ("fwd_answer_time", TIME),
    "callEndTime": ("call_end_time", TIME),
    "failTime": ("fail_time", TIME),
    "dynIVRStartTime": ("dyn_ivr_start_time", TIME),
    "recordStartTime": ("record_start_time", TIME),
    "fwdUnaswRsn": ("fwd_unasw_rsn", INT),
    "callOutUnaswRsn": ("call_out_unasw_rsn", INT),
    "ulFailReason": ("ul_fail_reason", INT),
    "sipStatusCode": ("sip_status_code", INT),
    "dynIVRPath": ("dyn_ivr_path", STR),
    "recordFlag": ("record_flag", FLAG),
    "recordObjectName": ("record_object_name", STR),
    "recordBucketName": ("record_bucket_name", STR),
    "recordDomain": ("record_domain", STR),
    "recordFileDownloadUrl": ("record_file_download_url", STR),
    "ttsPlayTimes": ("tts_play_times", INT),
    "ttsTransDuration": ("tts_trans_duration", INT),
    "serviceType": ("service_type_code", STR),
    "hostName": ("host_name", STR),
    "userData": ("user_data", STR),
    "mptyId": ("mpty_id", STR),
    "createMptyTime": ("create_mpty_time", TIME),
    "joinMptyTime": ("join_mpty_time", TIME),
    "extendNum": ("extend_num", STR),
    "voiceCheckType": ("voice_check_type", INT),
}

EVENT_FIELDS: dict[str, tuple[str, str]] = {
    "sessionId": ("session_id", STR),
    "timestamp": ("timestamp", TIME),
    "caller": ("caller", STR),
    "called": ("called", STR),
    "stateCode": ("state_code", INT),
    "stateDesc": ("state_desc", STR),
    "digitInfo": ("digit_info", STR),
    "userData": ("user_data", STR),
    "subscriptionId": ("subscription_id", STR),
    "partyType": ("party_type", STR),
    "displayCallerNum": ("display_caller_num", STR),
}

STATUS_FIELDS: dict[str, tuple[str, str]] = {
    "number": ("number", STR),
    "status": ("status", INT),
    "cause": ("cause", INT),
}

EVENT_TYPES = frozenset({"callin", "callout", "alerting", "answer", "collectInfo", "disconnect"})

_DEFAULTS: dict[str, Any] = {STR: "", TIME: None, INT: None, SMALL: None, FLAG: None}
_CDR_EMPTY = {column: _DEFAULTS[kind] for column, kind in CDR_FIELDS.values()}
_EVENT_EMPTY = {column: _DEFAULTS[kind] for column, kind in EVENT_FIELDS.values()}
_STATUS_EMPTY = {column: _DEFAULTS[kind] for column, kind in STATUS_FIELDS.values()}


@dataclass(slots=True)
class Failure:
    """A push (``record_index`` -1) or one record of it that could not be normalised or loaded."""

    notification: Notification
    record_index: int
    stage: str
    reason: str
    detail: str


@dataclass(slots=True)
class Normalised:
    """The typed rows of a batch of pushes, the failures, and what was noted on the way."""

    cdrs: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)

    @property
    def row_count(self) -> int:
        return len(self.cdrs) + len(self.events) + len(self.statuses)


class _BadRecord(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _convert(
    record: dict[str, Any], spec: dict[str, tuple[str, str]], row: dict[str, Any], invalid: list[str]
) -> dict[str, Any]:
    """Fill ``row`` from ``record`` following ``spec``; returns the unknown keys (``extra``)."""
    extra: dict[str, Any] = {}
    bad: dict[str, Any] = {}
    get = spec.get
    for key, value in record.items():
        target = get(key)
        if target is None:
            extra[key] = value
            continue
        column, kind = target
        if value is None:
            continue
        if kind is STR:
            if type(value) is str or isinstance(value, str):
                row[column] = value
            elif isinstance(value, (int, float)):
                row[column] = str(value)
            else:
                raise _BadRecord("bad_field", f"{key} must be a string, got {type(value).__name__}")
            continue
        try:
            if kind is TIME:
                row[column] = parse_time_ms(value)
            elif kind is INT:
                row[column] = parse_int(value)
            elif kind is SMALL:
                row[column] = parse_int(value, -128, 127)
            else:
                row[column] = parse_int(value, 0, 255)
        except ValueError:
            bad[key] = value
            invalid.append(key)
    if bad:
        extra["_invalid"] = bad
    return extra


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _base(n: Notification, index: int) -> dict[str, Any]:
    return {
        "notification_id": n.id,
        "record_index": index,
        "service": n.service,
        "received_at": n.received_at_us,
        "auth_app_key": n.app_key,  # the signer (ingest/auth.py); the edge refused any other body appKey
    }


def _cdr(n: Notification, index: int, record: dict[str, Any], invalid: list[str]) -> dict[str, Any]:
    row = _base(n, index)
    row.update(_CDR_EMPTY)
    extra = _convert(record, CDR_FIELDS, row, invalid)
    if not row["session_id"]:
        raise _BadRecord("missing_session_id", "FeeInfo has no sessionId")
    if not row["app_key"]:
        row["app_key"] = n.app_key
    row["extra"] = _dumps(extra) if extra else "{}"
    row["raw"] = _dumps(record)
    row[RAW_DOC] = record  # protect_record uses it instead of parsing raw again
    return row


def _event(n: Notification, event_type: str, info: dict[str, Any], invalid: list[str]) -> dict[str, Any]:
    row = _base(n, 0)
    row.update(_EVENT_EMPTY)
    extra = _convert(info, EVENT_FIELDS, row, invalid)
    row["app_key"] = n.app_key
    row["event_type"] = event_type
    row["extra"] = _dumps(extra) if extra else "{}"
    row["raw"] = _dumps(info)
    row[RAW_DOC] = info
    return row


def _status(n: Notification, index: int, record: dict[str, Any], invalid: list[str]) -> dict[str, Any]:
    row = _base(n, index)
    row.update(_STATUS_EMPTY)
    extra = _convert(record, STATUS_FIELDS, row, invalid)
    if not row["number"]:
        raise _BadRecord("missing_number", "numInfo entry has no number")
    row["app_key"] = n.app_key
    row["extra"] = _dumps(extra) if extra else "{}"
    row["raw"] = _dumps(record)
    row[RAW_DOC] = record  # protect_record uses it instead of parsing raw again
    return row


def _records(body: dict[str, Any], key: str) -> list[Any]:
    records = body.get(key)
    if not isinstance(records, list):
        raise NormaliseError(f"{key} must be a list, got {type(records).__name__}", reason=f"missing_{key}")
    return records


def normalise_one(n: Notification, out: Normalised) -> None:
    """Append the rows (and record-level failures) of one push to ``out``.

    Raises ``NormaliseError`` when the push as a whole is unusable (not JSON, unknown eventType …).
    """
    normalise_body(n, parse_body(n), out)


def parse_body(n: Notification) -> Any:
    """The push's JSON document; ``NormaliseError`` when the body is not JSON."""
    try:
        return orjson.loads(n.body)
    except orjson.JSONDecodeError as exc:
        raise NormaliseError(f"body is not JSON: {exc}", reason="malformed") from exc


def normalise_body(n: Notification, body: Any, out: Normalised) -> None:
    """``normalise_one`` of the push's parsed JSON document ``body``."""
    if not isinstance(body, dict):
        raise NormaliseError(f"body is a JSON {type(body).__name__}, not an object", reason="malformed")
    event_type = body.get("eventType") or n.event_type
    if not isinstance(event_type, str):
        raise NormaliseError("eventType is not a string", reason="unknown_event_type")
    invalid = out.invalid
    if event_type == "fee":
        builder, rows, records = _cdr, out.cdrs, _records(body, "feeLst")
    elif event_type == "numStatus":
        builder, rows, records = _status, out.statuses, _records(body, "numInfo")
    elif event_type in EVENT_TYPES:
        info = body.get("statusInfo")
        if not isinstance(info, dict):
            raise NormaliseError("statusInfo must be an object", reason="missing_statusInfo")
        try:
            out.events.append(_event(n, event_type, info, invalid))
        except _BadRecord as exc:
            out.failures.append(Failure(n, 0, "normalise", exc.reason, str(exc)))
        return
    else:
        raise NormaliseError(f"unknown eventType {event_type[:64]!r}", reason="unknown_event_type")
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            out.failures.append(
                Failure(n, index, "normalise", "not_an_object", f"entry {index} is a JSON {type(record).__name__}")
            )
            continue
        try:
            rows.append(builder(n, index, record, invalid))
        except _BadRecord as exc:
            out.failures.append(Failure(n, index, "normalise", exc.reason, str(exc)))


def normalise(notifications: list[Notification], out: Normalised | None = None) -> Normalised:
    """Normalise a batch; pushes that fail as a whole become ``Failure`` rows (record_index -1)."""
    out = out if out is not None else Normalised()
    for n in notifications:
        try:
            normalise_one(n, out)
        except NormaliseError as exc:
            out.failures.append(Failure(n, -1, "normalise", exc.reason, str(exc)))
    return out

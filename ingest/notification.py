"""Classify a push body: which ``eventType`` it is, which Kafka key it gets and which appKeys it names.

The body is only inspected, never rewritten: unknown extra fields are kept as they are. Anything that
is not a notification raises :class:`BadNotification` with one reason word:
``not_utf8``, ``not_json``, ``not_object``, ``unknown_event_type``, ``missing_field``, ``wrong_service``.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import orjson

from core.errors import BadNotification

STATUS_EVENTS = frozenset({"callout", "alerting", "answer", "collectInfo", "disconnect", "callin"})
SERVICE_EVENTS: dict[str, frozenset[str]] = {
    # callin is a privacy event; voice accepts and records it too.
    "voice": STATUS_EVENTS | {"fee"},
    "privacy": STATUS_EVENTS | {"fee", "numStatus"},
}
ALL_EVENTS = frozenset().union(*SERVICE_EVENTS.values())


class Classified(NamedTuple):
    """What the edge needs from a body: its ``event_type``, the Kafka ``key`` (None when absent) and the
    distinct ``appKey`` values the body names (top level, ``statusInfo``, every ``feeLst`` entry)."""

    event_type: str
    key: str | None
    app_keys: tuple[str, ...] = ()


def _parse(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadNotification("body is not UTF-8 text", reason="not_utf8") from None
    try:  # the slow path also takes what orjson refuses but Python reads (e.g. 1e400)
        return json.loads(text)
    except (ValueError, RecursionError):
        raise BadNotification("body is not valid JSON", reason="not_json") from None


def _first_str(items: list[Any], field: str) -> str | None:
    for item in items:
        if isinstance(item, dict):
            value = item.get(field)
            if isinstance(value, str) and value:
                return value
    return None


def _app_keys(doc: dict[str, Any], records: list[Any] | tuple[Any, ...]) -> tuple[str, ...]:
    """Distinct appKeys named in ``doc`` and its records; a non-string value is shown as JSON."""
    try:  # the common case: every record names the same string (or none)
        keys = {r.get("appKey") for r in records if isinstance(r, dict)}
        keys.add(doc.get("appKey"))
    except TypeError:  # an unhashable value (object, list): the slow path
        keys = set()
        for value in (doc.get("appKey"), *(r.get("appKey") for r in records if isinstance(r, dict))):
            keys.add(value if value is None or isinstance(value, str) else orjson.dumps(value).decode())
    keys.discard(None)
    keys.discard("")
    if not keys:
        return ()
    return tuple(sorted(k if isinstance(k, str) else orjson.dumps(k).decode() for k in keys))


def classify(service: str, body: bytes) -> Classified:
    """Event type and key of ``body`` pushed to the ``service`` path (``voice`` or ``privacy``)."""
    allowed = SERVICE_EVENTS.get(service)
    if allowed is None:
        raise BadNotification(f"unknown service {service!r}", reason="wrong_service")
    doc = _parse(body)
    if not isinstance(doc, dict):
        raise BadNotification("body must be a JSON object", reason="not_object")
    event_type = doc.get("eventType")
    if not isinstance(event_type, str) or event_type not in ALL_EVENTS:
        shown = repr(event_type)[:60]
        raise BadNotification(f"unknown eventType {shown}", reason="unknown_event_type")
    if event_type not in allowed:
        raise BadNotification(f"eventType {event_type} does not belong to /notify/{service}", reason="wrong_service")
    if event_type == "fee":
        fees = doc.get("feeLst")
        if not isinstance(fees, list) or not fees:
            raise BadNotification("fee notification needs a non-empty feeLst list", reason="missing_field")
        return Classified(event_type, _first_str(fees, "sessionId"), _app_keys(doc, fees))
    if event_type == "numStatus":
        numbers = doc.get("numInfo")
        if not isinstance(numbers, list) or not numbers:
            raise BadNotification("numStatus notification needs a non-empty numInfo list", reason="missing_field")
        return Classified(event_type, _first_str(numbers, "number"), _app_keys(doc, numbers))
    info = doc.get("statusInfo")
    if not isinstance(info, dict):
        raise BadNotification(f"{event_type} notification needs a statusInfo object", reason="missing_field")
    session = info.get("sessionId")
    named = _app_keys(doc, (info,)) if "appKey" in info or "appKey" in doc else ()  # events rarely name one
    return Classified(event_type, session if isinstance(session, str) and session else None, named)

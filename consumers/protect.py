"""One place where phone numbers pass before they are stored or re-published: the rules of
``consumers/numbers.py`` applied to a row.

Numbers are kept, masked or keyed-hashed per column, the ``raw`` JSON likewise, recording URLs dropped.
Every number-bearing row goes through ``protect_numbers`` before load and republish.

    row = protect_record("cdrs", row, policy)          # or protect_numbers(row, settings)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from consumers.numbers import (
    JSON_COLUMNS,
    JSON_KEYS,
    RAW_DOC,
    SESSION_COLUMNS,
    SESSION_JSON_KEYS,
    URL_COLUMNS,
    URL_JSON_KEYS,
    Policy,
    policy_from_settings,
)
from core.settings import Settings

_JSON_NEEDLES = tuple(key for key in (*JSON_KEYS, *URL_JSON_KEYS, *SESSION_JSON_KEYS))
_EMBEDDED_RE = re.compile(r"\+\d{6,15}")
# Events whose X (or display) number is on a known side: callin is A -> X; the others X/display -> B.
_X_SIDE_BY_EVENT = {
    "callin": "called",
    "callout": "caller",
    "alerting": "caller",
    "answer": "caller",
    "disconnect": "caller",
}


# --- applying the policy to one record -----------------------------------------------------------


def x_numbers(kind: str, record: dict[str, Any]) -> set[str]:
    """The record's X / display numbers (kept by default): bind and display numbers, the X side of events."""
    found = {str(record.get(c) or "") for c in ("bind_num", "fwd_display_num")}
    if kind in ("call_events", ""):
        side = _X_SIDE_BY_EVENT.get(str(record.get("event_type") or ""))
        if side:
            found.add(str(record.get(side) or ""))
    found.discard("")
    return found


def _json_x_numbers(node: Any, found: set[str]) -> None:
    stack = [node]
    pop, push = stack.pop, stack.append
    while stack:
        node = pop()
        if isinstance(node, dict):
            for key in ("bindNum", "fwdDisplayNum"):
                value = node.get(key)
                if isinstance(value, str) and value:
                    found.add(value)
            event_type = node.get("eventType")
            info = node.get("statusInfo")
            if isinstance(event_type, str) and isinstance(info, dict):
                side = _X_SIDE_BY_EVENT.get(event_type)
                if side and isinstance(info.get(side), str) and info[side]:
                    found.add(info[side])
            for child in node.values():
                if isinstance(child, (dict, list)):
                    push(child)
        elif isinstance(node, list):
            for child in node:
                if isinstance(child, (dict, list)):
                    push(child)


_UNPARSED: Any = object()

# Text this policy could touch: a known JSON key or an embedded number (one scan instead of fifteen).
_TOUCHABLE_RE = re.compile("|".join([*(re.escape(key) for key in _JSON_NEEDLES), _EMBEDDED_RE.pattern]))


class _Protector:
    def __init__(self, policy: Policy, xs: set[str]) -> None:
        self.policy = policy
        self.xs = xs
        self.apply = policy.apply
        self.x_mode = policy.mode("bind_num")
        self.embedded_mode = policy.mode("embedded")
        self.drop_urls = not policy.publish_recording_urls

    def number(self, column: str, value: str) -> str:
        if value in self.xs:
            return self.apply(self.x_mode, value)
        return self.apply(self.policy.modes.get(column, "keep"), value)

    def embedded(self, text: str) -> str:
        if "+" not in text:
            return text  # every embedded number starts with "+"
        apply, mode = self.apply, self.embedded_mode

        def one(match: re.Match[str]) -> str:  # context-free, so one sessionId is stored alike everywhere
            return apply(mode, match.group(0))

        return _EMBEDDED_RE.sub(one, text)

    def scalar(self, key: str, value: Any) -> Any:
        """The value a JSON object holds under ``key`` (not a dict or list), protected."""
        if isinstance(value, str):
            column = JSON_KEYS.get(key)
            if column is not None:
                return self.number(column, value)
            return self.embedded(value) if key in SESSION_JSON_KEYS else value
        if isinstance(value, (int, float)) and key in JSON_KEYS:
            # a number sent as a JSON number: the normaliser stores str(value), protected; so is it here
            text = str(value)
            protected = self.number(JSON_KEYS[key], text)
            return protected if protected != text else value
        return value

    def json_node(self, node: Any) -> Any:
        if isinstance(node, dict):
            out: dict[str, Any] = {}
            drop_urls = self.drop_urls
            for key, value in node.items():
                if drop_urls and key in URL_JSON_KEYS:
                    continue
                if isinstance(value, (dict, list)):
                    value = self.json_node(value)
                else:
                    value = self.scalar(key, value)
                out[key] = value
            return out
        if isinstance(node, list):
            return [self.json_node(child) for child in node]
        return node

    def text(self, text: str, doc: Any = _UNPARSED) -> str:
        """Rewrite a JSON document; text that is not JSON gets its embedded numbers protected. ``doc`` is
        the document ``text`` is the key-sorted JSON of, when the caller has it (saves parsing it again)."""
        if type(doc) is dict and text.count("{") == 1 and "[" not in text:
            return self._flat(text, doc)  # a record without nested values: only its touchable keys
        if not text or not _TOUCHABLE_RE.search(text):
            return text  # e.g. extra == "{}": nothing this policy could touch
        option = orjson.OPT_SORT_KEYS
        if doc is _UNPARSED:
            try:
                doc = orjson.loads(text)
            except orjson.JSONDecodeError:
                return self.embedded(text)
            option = 0  # keep the text's own key order
        _json_x_numbers(doc, self.xs)
        new = self.json_node(doc)
        return text if new == doc else orjson.dumps(new, option=option).decode("utf-8")  # untouched: same bytes


    def _flat(self, text: str, doc: dict[str, Any]) -> str:
        """``text`` for a ``doc`` without nested values: what ``_json_x_numbers`` and ``json_node`` give,
        visiting only the keys this policy could touch (tests compare both paths on the fuzz corpus)."""
        for key in ("bindNum", "fwdDisplayNum"):
            value = doc.get(key)
            if isinstance(value, str) and value:
                self.xs.add(value)
        changes: dict[str, Any] = {}
        dropped = []
        for key in _TOUCH_KEYS.intersection(doc):
            value = doc[key]
            if key in URL_JSON_KEYS:
                if self.drop_urls:
                    dropped.append(key)
                continue
            new = self.scalar(key, value)
            if new is not value and new != value:
                changes[key] = new
        if not changes and not dropped:
            return text
        new_doc = {**doc, **changes}
        for key in dropped:
            del new_doc[key]
        return orjson.dumps(new_doc, option=orjson.OPT_SORT_KEYS).decode("utf-8")


_TOUCH_KEYS = frozenset({*JSON_KEYS, *URL_JSON_KEYS, *SESSION_JSON_KEYS})


def protect_session_id(session_id: str, policy: Policy) -> str:
    """``session_id`` as stored (numbers inside it protected): use it to look a platform sessionId up."""
    return _Protector(policy, set()).embedded(session_id)


def protect_record(kind: str, record: dict[str, Any], policy: Policy, *, copy: bool = True) -> dict[str, Any]:
    """A copy of ``record`` (one row of table ``kind``; the row itself when not ``copy``) with numbers,
    raw JSON and URLs protected. A row may carry the parsed document of its ``raw`` under ``RAW_DOC``
    (the normaliser leaves it there): it is used instead of parsing ``raw``, and removed.

    The JSON columns go first (raw, extra, body): the X numbers found in them count for every number
    column of the row."""
    if policy.inert and RAW_DOC not in record:
        return record
    out = dict(record) if copy else record
    raw_doc = out.pop(RAW_DOC, _UNPARSED)
    if policy.inert:
        return out
    protector = _Protector(policy, x_numbers(kind, out))
    get = out.get
    for column in _JSON_ORDER:
        value = get(column)
        if value is None:
            continue
        if isinstance(value, str):
            out[column] = protector.text(value, raw_doc) if column == "raw" else protector.text(value)
        else:
            out[column] = _rewrite(value, protector.text)
    for column in SESSION_COLUMNS:
        value = get(column)
        if isinstance(value, str):
            out[column] = protector.embedded(value)
    xs, x_mode, apply = protector.xs, protector.x_mode, policy.apply
    for column, mode in policy.changing_columns:
        value = get(column)
        if isinstance(value, str) and value:
            out[column] = apply(x_mode if value in xs else mode, value)
    if not policy.publish_recording_urls:
        for column in URL_COLUMNS:
            if get(column):
                out[column] = ""
    return out


_JSON_ORDER = ("raw", "extra", "body")
assert frozenset(_JSON_ORDER) == JSON_COLUMNS


def _rewrite(value: Any, func: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return func(value)
    if isinstance(value, (bytes, bytearray)):
        try:
            text = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return value
        return func(text).encode("utf-8")
    return value


def protect_numbers(record: dict[str, Any], settings: Settings, kind: str = "", *, copy: bool = True) -> dict[str, Any]:
    """A copy of ``record`` (a row of table ``kind``; the row itself when not ``copy``) with numbers, raw
    JSON and recording URLs protected per ``settings.number_protection`` (rules in ``consumers/numbers.py``)."""
    cached = _last_policy
    if cached is not None and cached[0] is settings:
        policy = cached[1]
    else:
        policy = policy_from_settings(settings)
        _remember(settings, policy)
    return protect_record(kind, record, policy, copy=copy)


_last_policy: tuple[Settings, Policy] | None = None  # settings objects are frozen: one lookup per object


def _remember(settings: Settings, policy: Policy) -> None:
    global _last_policy
    _last_policy = (settings, policy)

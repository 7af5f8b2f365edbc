"""One place where phone numbers pass before they are stored or re-published.

Numbers are kept, masked or keyed-hashed per column, the ``raw`` JSON likewise, recording URLs dropped.
Every number-bearing row goes through ``protect_numbers`` before load and republish.
"""

from __future__ import annotations

from typing import Any

from consumers.numbers import Policy, policy_from_settings, protect_record
from core.settings import Settings

NUMBER_COLUMNS = (
    "caller_num", "callee_num", "fwd_display_num", "fwd_dst_num", "bind_num",
    "caller", "called", "display_caller_num", "number",
)


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

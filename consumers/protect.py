"""One place where phone numbers pass before they are stored or re-published.

Today it returns the record unchanged; a data-protection feature (masking, tokenising) fills it in.
Every number-bearing row goes through ``protect_numbers`` before load and republish.
"""

from __future__ import annotations

from typing import Any

from callstream.settings import Settings

NUMBER_COLUMNS = (
    "caller_num", "callee_num", "fwd_display_num", "fwd_dst_num", "bind_num",
    "caller", "called", "display_caller_num", "number",
)


def protect_numbers(record: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Return ``record`` with its number columns protected (currently: unchanged)."""
    return record

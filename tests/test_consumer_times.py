"""Body time and integer parsing: every documented shape, and properties over arbitrary input."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.times import parse_int, parse_time_ms

T = 1710209704000  # 2024-03-12 02:15:04 UTC


@pytest.mark.parametrize(
    "value",
    ["2024-03-12 02:15:04", "2024-03-12  02:15:04", " 2024-03-12T02:15:04Z ", "2024-03-12 02:15:04Z",
     "2024-03-12 02:15:04.000", "1710209704", "1710209704000", 1710209704, 1710209704000, 1710209704.0],
)
def test_accepted_forms(value: object) -> None:
    assert parse_time_ms(value) == T


def test_fraction_offset_and_absent() -> None:
    assert parse_time_ms("2024-03-12 02:15:04.250") == T + 250
    assert parse_time_ms("2024-03-12 10:15:04+08:00") == T
    assert parse_time_ms("") is None and parse_time_ms(None) is None and parse_time_ms("   ") is None


@pytest.mark.parametrize("value", ["yesterday", "2024-13-01 00:00:00", "2024-02-30 00:00:00",
                                   "2024-03-12 25:00:00", True, [1], {"a": 1}, float("nan"), "99999999999999999"])
def test_garbage_raises_value_error(value: object) -> None:
    with pytest.raises(ValueError):
        parse_time_ms(value)


def test_integers_as_strings() -> None:
    assert parse_int("19") == 19 and parse_int(" 7 ") == 7 and parse_int(3.0) == 3 and parse_int("4.0") == 4
    assert parse_int("") is None and parse_int(None) is None
    for bad in ("x19", "1.5", True, [1], 2**40):
        with pytest.raises(ValueError):
            parse_int(bad)


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)),
       st.sampled_from([" ", "  ", "T"]), st.sampled_from(["", "Z"]))
@settings(max_examples=200, deadline=None)
def test_roundtrip_of_formatted_times(moment: datetime, sep: str, suffix: str) -> None:
    moment = moment.replace(microsecond=0, tzinfo=UTC)
    text = moment.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + suffix
    assert parse_time_ms(text) == int(moment.timestamp()) * 1000
    assert parse_time_ms(int(moment.timestamp())) == int(moment.timestamp()) * 1000


@given(st.one_of(st.text(max_size=40), st.integers(), st.floats(), st.none(), st.booleans()))
@settings(max_examples=300, deadline=None)
def test_never_raises_anything_but_value_error(value: object) -> None:
    try:
        result = parse_time_ms(value)
    except ValueError:
        return
    assert result is None or -2208988800000 <= result <= 10413791999999

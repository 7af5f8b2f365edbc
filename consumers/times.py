"""Huawei body times -> epoch milliseconds (UTC), the value stored in DateTime64(3, 'UTC').

Accepted: ``yyyy-MM-dd HH:mm:ss`` (UTC) with runs of spaces or a ``T`` between date and time, a
trailing ``Z`` or ``+00:00``-style offset, fractional seconds, and numeric epochs in seconds or
milliseconds (numbers or digit strings). Absent, ``None`` or ``""`` is ``None``. Anything else
raises ``ValueError`` so the caller can note the bad value and store NULL.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache

# DateTime64(3) covers 1900-01-01 .. 2299-12-31; refuse what ClickHouse would wrap around.
MIN_MS = -2208988800000
MAX_MS = 10413791999999
_EPOCH_MS_THRESHOLD = 100_000_000_000  # below: seconds (until year 5138), above: milliseconds
_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=4096)
def _day_ms(date_text: str) -> int:
    """Epoch ms of midnight UTC of ``yyyy-MM-dd`` (cached: pushes share few dates)."""
    year, month, day = int(date_text[0:4]), int(date_text[5:7]), int(date_text[8:10])
    return int(datetime(year, month, day, tzinfo=UTC).timestamp()) * 1000


def _fast(text: str) -> int | None:
    """The common exact ``yyyy-MM-dd HH:mm:ss`` form, or None to fall through."""
    if len(text) != 19 or text[4] != "-" or text[7] != "-" or text[10] not in " T" or text[13] != ":" or text[16] != ":":
        return None
    hms = text[11:13], text[14:16], text[17:19]
    if not (hms[0].isdigit() and hms[1].isdigit() and hms[2].isdigit() and text[0:4].isdigit()):
        return None
    hour, minute, second = int(hms[0]), int(hms[1]), int(hms[2])
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"time out of range: {text!r}")
    return _day_ms(text[0:10]) + ((hour * 60 + minute) * 60 + second) * 1000


def _from_epoch(number: float) -> int:
    if number != number or number in (float("inf"), float("-inf")):  # "1e400", "nan" as text
        raise ValueError(f"not a time: {number!r}")
    ms = int(number) if abs(number) >= _EPOCH_MS_THRESHOLD else int(round(number * 1000))
    if not MIN_MS <= ms <= MAX_MS:
        raise ValueError(f"epoch {number!r} is outside 1900..2299")
    return ms


_parsed: dict[str, int | None] = {}  # body text -> result; calls share their seconds across pushes


def parse_time_ms(value: object) -> int | None:
    """Epoch milliseconds UTC for a body time; ``None`` when absent; ``ValueError`` when garbage."""
    if type(value) is str:
        try:
            return _parsed[value]
        except KeyError:
            pass
        result = _parse_time_ms(value)  # garbage raises and is not remembered
        if len(_parsed) >= 50_000:
            _parsed.clear()
        _parsed[value] = result
        return result
    return _parse_time_ms(value)


def _parse_time_ms(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, (int, float)):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"not a time: {value!r}")
        return _from_epoch(value)
    if not isinstance(value, str):
        raise ValueError(f"not a time: {type(value).__name__}")
    text = value.strip()
    if not text:
        return None
    try:
        fast = _fast(text)
    except ValueError:
        raise
    except Exception as exc:  # int()/datetime() on odd digits, e.g. month 13
        raise ValueError(f"not a time: {text!r}") from exc
    if fast is not None:
        return fast
    if text.isdigit() or (text[0] in "+-" and text[1:].isdigit()):
        return _from_epoch(int(text))
    return _parse_general(text)


def _parse_general(text: str) -> int:
    norm = _SPACES.sub(" ", text).replace(" T ", "T").replace("T", " ", 1)
    if norm.endswith(("Z", "z")):
        norm = norm[:-1].rstrip()
    try:
        parsed = datetime.fromisoformat(norm)
    except ValueError as exc:
        try:
            return _from_epoch(float(text))
        except ValueError:
            raise ValueError(f"not a time: {text!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    ms = int(parsed.timestamp() * 1000) if parsed.microsecond == 0 else (
        int(parsed.replace(microsecond=0).timestamp()) * 1000 + parsed.microsecond // 1000
    )
    if not MIN_MS <= ms <= MAX_MS:
        raise ValueError(f"time {text!r} is outside 1900..2299")
    return ms


def parse_int(value: object, low: int = -(2**31), high: int = 2**31 - 1) -> int | None:
    """An integer field that may arrive as a number or a string ("19"); ``ValueError`` when garbage."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"not an integer: {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")) or not value.is_integer():
            raise ValueError(f"not an integer: {value!r}")
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            number = int(text)
        except ValueError:
            try:
                as_float = float(text)
            except ValueError:
                raise ValueError(f"not an integer: {text!r}") from None
            if as_float != as_float or not as_float.is_integer():
                raise ValueError(f"not an integer: {text!r}") from None
            number = int(as_float)
    else:
        raise ValueError(f"not an integer: {type(value).__name__}")
    if not low <= number <= high:
        raise ValueError(f"integer {number} outside {low}..{high}")
    return number

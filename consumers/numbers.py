"""Phone-number protection: keep, mask or keyed-hash each number column before it leaves the consumer.

The policy is ``column=mode`` pairs (``settings.number_protection``); modes are ``keep``, ``mask``
(``+86138****0021``: country code, up to 3 leading and 4 trailing digits shown) and ``hash``
(``h:`` + 32 hex of HMAC-SHA256 keyed by a secret pepper: stable, so joins and per-number KPIs work).
Unlisted columns are kept. ``embedded`` governs every number found inside other text, X or not
(``sessionId`` tokens such as ``+8613800000021_+8617000000001_4_…``, unparseable bodies), so one
session id is stored the same way in every table. A number-column
value equal to one of the record's X numbers (``bind_num``, ``fwd_display_num``, the X side of a call
event) follows the ``bind_num`` mode wherever it appears, so X numbers stay readable by default.

The ``raw``/``extra`` JSON and ``failed_events.body`` are rewritten with the same rules; recording
download URLs are dropped unless ``publish_recording_urls``. Protection is idempotent: an already
hashed (``h:…``) or masked (``*``) value is left as it is, so replaying a protected record is safe.

    policy = Policy.parse("caller_num=hash,callee_num=mask", pepper=b"…")
    policy.apply("hash", "+8613800000021")     # -> "h:…"

Applying the policy to a row (its columns and its JSON) is ``consumers/protect.py``'s.
"""

from __future__ import annotations

import functools
import hmac
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from consumers.pepper import PEPPER_FILE, read_pepper
from core.errors import ConfigError
from core.settings import PROTECTION_MODES, Settings, parse_number_protection

Mode = Literal["keep", "mask", "hash"]
MODES: tuple[str, ...] = PROTECTION_MODES

#: Number columns of the warehouse tables (plus the virtual ``embedded``).
NUMBER_COLUMNS: frozenset[str] = frozenset(
    {
        "caller_num",
        "callee_num",
        "fwd_display_num",
        "fwd_dst_num",
        "bind_num",
        "caller",
        "called",
        "display_caller_num",
        "number",
        "embedded",
    }
)
#: Huawei JSON field -> the column whose mode applies to it.
JSON_KEYS: dict[str, str] = {
    "callerNum": "caller_num",
    "calleeNum": "callee_num",
    "origCalleeNum": "callee_num",
    "fwdDisplayNum": "fwd_display_num",
    "fwdDstNum": "fwd_dst_num",
    "bindNum": "bind_num",
    "caller": "caller",
    "called": "called",
    "displayCallerNum": "display_caller_num",
    "displayCalleeNum": "display_caller_num",
    "number": "number",
}
URL_COLUMNS: frozenset[str] = frozenset({"record_file_download_url"})
URL_JSON_KEYS: frozenset[str] = frozenset({"recordFileDownloadUrl", "recordPushURL"})
JSON_COLUMNS: frozenset[str] = frozenset({"raw", "extra", "body"})
SESSION_COLUMNS: frozenset[str] = frozenset({"session_id"})
SESSION_JSON_KEYS: frozenset[str] = frozenset({"sessionId"})

DEFAULT_POLICY = "caller_num=hash,callee_num=hash,fwd_dst_num=hash,caller=hash,called=hash,embedded=hash"
HASH_PREFIX = "h:"
_HASH_RE = re.compile(r"^h:[0-9a-f]{32}$")
_MEMO_MAX = 200_000  # protected forms remembered per policy (about 30 MB at most)

# E.164 country codes: 1 and 7 are one digit, these are two digits, every other code has three.
_CC2 = frozenset(
    "20 27 30 31 32 33 34 36 39 40 41 43 44 45 46 47 48 49 51 52 53 54 55 56 57 58 "
    "60 61 62 63 64 65 66 81 82 84 86 90 91 92 93 94 95 98".split()
)


def country_code(digits: str) -> str:
    """The E.164 country code at the start of ``digits`` (no ``+``)."""
    if digits[:1] in ("1", "7"):
        return digits[:1]
    if digits[:2] in _CC2:
        return digits[:2]
    return digits[:3]


def mask(value: str) -> str:
    """``+8613800000021`` -> ``+86138****0021``: at most country code + 3 leading + 4 trailing digits.

    At least 4 national digits are always hidden, and never more than 7 are shown, so a short
    number is masked harder (tail first, then head). Non-digit characters are kept.
    """
    if not value or "*" in value or _HASH_RE.match(value):
        return value
    positions = [i for i, ch in enumerate(value) if ch.isdigit()]
    if not positions:
        return value
    digits = "".join(value[i] for i in positions)
    cc_len = len(country_code(digits)) if value.lstrip().startswith("+") else 0
    if cc_len >= len(digits):
        cc_len = 0
    national = len(digits) - cc_len
    shown = max(0, min(7, national - 4))
    tail = min(4, shown)
    head = shown - tail
    keep = set(range(cc_len + head)) | set(range(len(digits) - tail, len(digits)))
    out = list(value)
    for n, pos in enumerate(positions):
        if n not in keep:
            out[pos] = "*"
    return "".join(out)


def keyed_hash(value: str, pepper: bytes) -> str:
    """``h:`` + first 16 bytes (hex) of HMAC-SHA256(pepper, value); stable for one pepper."""
    if not value or _HASH_RE.match(value):
        return value
    if not pepper:
        raise ConfigError(
            "number hashing needs a pepper: set CALLSTREAM_NUMBER_PEPPER or CALLSTREAM_NUMBER_PEPPER_FILE"
        )
    return HASH_PREFIX + hmac.digest(pepper, value.strip().encode("utf-8"), "sha256")[:16].hex()


@dataclass(frozen=True)
class Policy:
    """Per-column modes plus the pepper; build with :meth:`parse` or :func:`policy_from_settings`."""

    modes: dict[str, Mode] = field(default_factory=dict)
    pepper: bytes = field(default=b"", repr=False)
    publish_recording_urls: bool = False
    #: (mode, value) -> protected value; numbers repeat across rows (callers, X numbers), HMAC does not
    _memo: dict[tuple[str, str], str] = field(default_factory=dict, init=False, repr=False, compare=False)
    _inert: bool = field(default=False, init=False, repr=False, compare=False)
    _changing: tuple[tuple[str, Mode], ...] = field(default=(), init=False, repr=False, compare=False)

    @classmethod
    def parse(
        cls, text: str | tuple[tuple[str, Mode], ...], *, pepper: bytes = b"", publish_recording_urls: bool = False,
    ) -> Policy:
        """The policy of ``CALLSTREAM_NUMBER_PROTECTION`` (as text, or as ``Settings`` parsed it)."""
        modes: dict[str, Mode] = {}
        for column, mode in parse_number_protection(text) if isinstance(text, str) else text:
            if column not in NUMBER_COLUMNS:
                raise ConfigError(
                    f"bad CALLSTREAM_NUMBER_PROTECTION entry '{column}={mode}': "
                    f"write column=keep|mask|hash with a column among {', '.join(sorted(NUMBER_COLUMNS))}"
                )
            modes[column] = mode
        if "hash" in modes.values() and len(pepper) < 16:
            raise ConfigError(
                "number hashing is on but no pepper (>= 16 characters) is configured: "
                "set CALLSTREAM_NUMBER_PEPPER or CALLSTREAM_NUMBER_PEPPER_FILE "
                "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`), "
                "or choose keep/mask in CALLSTREAM_NUMBER_PROTECTION. Keep the pepper: a new one breaks joins"
            )
        return cls(modes=modes, pepper=pepper, publish_recording_urls=publish_recording_urls)

    def __post_init__(self) -> None:
        inert = self.publish_recording_urls and all(mode == "keep" for mode in self.modes.values())
        object.__setattr__(self, "_inert", inert)  # the modes never change: decide once
        x_mode = self.mode("bind_num")
        changing = tuple((column, self.mode(column)) for column in sorted(NUMBER_COLUMNS - {"embedded"})
                         if self.mode(column) != "keep" or x_mode != "keep")
        object.__setattr__(self, "_changing", changing)

    @property
    def changing_columns(self) -> tuple[tuple[str, Mode], ...]:
        """The number columns whose values this policy can change, with their modes (a column kept, in
        a policy that keeps X numbers too, is left alone)."""
        return self._changing

    @property
    def inert(self) -> bool:
        """Nothing to do: every number kept and recording URLs published."""
        return self._inert

    def mode(self, column: str) -> Mode:
        return self.modes.get(column, "keep")

    def apply(self, mode: Mode, value: str) -> str:
        if mode == "keep" or not value:
            return value
        memo = self._memo
        key = (mode, value)
        out = memo.get(key)
        if out is None:
            if "*" in value or _HASH_RE.match(value):
                out = value  # already protected (replays stay stable)
            elif mode == "hash":
                out = keyed_hash(value, self.pepper)
            elif mode == "mask":
                out = mask(value)
            else:
                out = value
            if len(memo) >= _MEMO_MAX:
                memo.clear()
            memo[key] = out
        return out

    def protected_forms(self, number: str) -> set[str]:
        """Every form ``number`` can take in the store under this policy (the clear form included)."""
        forms = {number}
        if "hash" in self.modes.values():
            forms.add(keyed_hash(number, self.pepper))
        return forms


def policy_from_settings(settings: Settings) -> Policy:
    """The policy configured in ``settings`` (read and parsed once per distinct configuration;
    a new pepper or policy takes effect on restart)."""
    return _cached_policy(
        settings.number_protection,
        settings.number_pepper.get_secret_value(),
        settings.number_pepper_file,
        settings.data_dir,
        settings.publish_recording_urls,
    )


@functools.lru_cache(maxsize=16)
def _cached_policy(
    text: str | tuple[tuple[str, Mode], ...], pepper_value: str, path: Path | None, data_dir: Path,
    publish_urls: bool,
) -> Policy:
    if path is None and not pepper_value and (data_dir / PEPPER_FILE).exists():
        path = data_dir / PEPPER_FILE  # generated by `callstream up` (ensure_pepper_file)
    pepper = read_pepper(pepper_value, path)
    return Policy.parse(text, pepper=pepper, publish_recording_urls=publish_urls)


RAW_DOC = "_raw_doc"  # a row's parsed ``raw`` document, while it is being prepared (never stored)

"""The Huawei code tables (``schemas/codes/*.csv``) as fast lookups, and the failure categories.

Lookups are keyed by (field, service, code) because the same number means different things in
different fields (8101 is a hang-up cause and a teardown point). Ranges in the CSV (``400-699``,
``2901-2914``) are expanded when the table is loaded.

``failure_category`` — one small, closed vocabulary for "why did this call not connect", usable as
a named-entity label across fields and services:

    normal            connected and released normally (or no failure recorded)
    user_busy         the called party was busy (Q.850 17, SIP 486/600, 8102 ...)
    no_answer         rang but nobody answered, or answer timer expired (Q.850 18/19, 8101, 514 ...)
    user_rejected     the called party declined / hung up while ringing (Q.850 21, SIP 603, 7504 ...)
    unreachable       number does not exist, powered off, absent, out of service (Q.850 1/20, 8100 ...)
    caller_abandoned  the calling side gave up before the call connected (7501, 8009, 530 ...)
    network_failure   carrier / signalling / routing / resource problems (Q.850 34-127, SIP 5xx ...)
    platform          Huawei platform faults: recording, TTS, announcements, ports, internal errors
    control           policy stopped the call: frequency control, blacklists, restrictions, limits
    configuration     the customer's setup: bindings, app key, permissions, tenant resources
    unknown           a code that is not in the tables (kept and described as "unknown <field> code N")
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CODES_DIR = Path(__file__).parent / "codes"

CATEGORIES: tuple[str, ...] = (
    "normal",
    "user_busy",
    "no_answer",
    "user_rejected",
    "unreachable",
    "caller_abandoned",
    "network_failure",
    "platform",
    "control",
    "configuration",
    "unknown",
)

# Teardown points 518-520 say "look at the Q.850 cause"; 400-699 are raw SIP statuses.
Q850_DEFERRING_TEARDOWNS = frozenset({518, 519, 520})


@dataclass(frozen=True, slots=True)
class Code:
    """One described code: English text, failure category and (Q.850 only) the ITU-T class."""

    description: str
    category: str
    cause_class: str = ""
    known: bool = True


# --- category rules (explicit lists; everything not listed falls back per table) -----------------
_Q850_CATEGORY = {
    0: "normal", 16: "normal", 31: "normal", 26: "normal",
    17: "user_busy",
    18: "no_answer", 19: "no_answer",
    21: "user_rejected", 24: "user_rejected",
    1: "unreachable", 2: "unreachable", 3: "unreachable", 4: "unreachable", 5: "unreachable",
    14: "unreachable", 20: "unreachable", 22: "unreachable", 27: "unreachable", 28: "unreachable",
    50: "control", 53: "control", 55: "control", 57: "control", 87: "control",
}
_SIP_CATEGORY = {
    0: "normal",
    486: "user_busy", 600: "user_busy",
    408: "no_answer",
    603: "user_rejected", 607: "user_rejected",
    487: "caller_abandoned",
    404: "unreachable", 410: "unreachable", 480: "unreachable", 484: "unreachable", 485: "unreachable",
    604: "unreachable",
    401: "control", 402: "control", 403: "control", 407: "control", 433: "control", 470: "control",
    608: "control",
}
_VOICE_HANGUP = {
    0: "normal", 8017: "normal",
    7001: "control", 7002: "control", 7003: "control", 7004: "control", 8010: "control",
    7108: "configuration", 8012: "configuration", 8018: "configuration",
    7109: "platform", 8000: "platform", 8005: "platform", 8006: "platform", 8007: "platform",
    8008: "platform", 8015: "platform", 8020: "platform",
    8001: "unreachable", 8002: "unreachable", 8100: "unreachable", 8103: "unreachable",
    8104: "unreachable", 8105: "unreachable", 8106: "unreachable", 8109: "unreachable",
    8110: "unreachable", 8111: "unreachable",
    8003: "no_answer", 8101: "no_answer", 8107: "no_answer",
    8004: "user_rejected",
    8009: "caller_abandoned",
    8102: "user_busy", 8108: "user_busy",
}
_PRIVACY_HANGUP_GROUP = {
    "-": "normal", "binding": "configuration", "caller": "caller_abandoned", "number": "unreachable",
    "tenant": "configuration", "control": "control", "platform": "platform", "callee": "unreachable",
}
_PRIVACY_HANGUP = {
    7503: "user_rejected", 7504: "user_rejected", 8035: "no_answer", 8101: "no_answer",
    8102: "user_busy", 8032: "configuration", 8010: "control",
}
_VOICE_TEARDOWN = {
    0: "normal", 100: "normal", 1001: "normal", 1002: "normal", 1003: "normal", 1004: "normal",
    2803: "normal", 2825: "normal", 540: "normal",
    513: "network_failure", 541: "network_failure", 550: "network_failure", 551: "network_failure",
    2838: "network_failure",
    514: "no_answer", 2829: "no_answer",
    515: "user_rejected",
    516: "caller_abandoned", 530: "caller_abandoned", 539: "caller_abandoned", 552: "caller_abandoned",
    553: "caller_abandoned",
    521: "unreachable",
    528: "control", 2805: "control", 2806: "control", 2831: "control",
    7001: "control", 7002: "control", 7003: "control", 7004: "control",
    529: "configuration", 2868: "configuration",
    518: "network_failure", 519: "network_failure", 520: "network_failure",
}
_PRIVACY_TEARDOWN = {
    0: "normal",
    7001: "control", 7002: "control", 7003: "control", 7004: "control", 7005: "control", 7500: "control",
    8010: "control", 8023: "control", 8024: "control",
    7100: "configuration", 7101: "configuration", 7103: "configuration", 7104: "configuration",
    7105: "configuration", 7106: "configuration", 7108: "configuration", 7507: "configuration",
    8012: "configuration", 8013: "configuration", 8014: "configuration", 8016: "configuration",
    8018: "configuration", 8019: "configuration", 8022: "configuration", 8025: "configuration",
    7501: "caller_abandoned", 7502: "caller_abandoned", 7516: "caller_abandoned", 8009: "caller_abandoned",
    8033: "caller_abandoned",
    7503: "user_rejected", 7504: "user_rejected", 8004: "user_rejected",
    7505: "network_failure", 7506: "network_failure", 7508: "network_failure",
    8002: "unreachable", 8100: "unreachable",
    8003: "no_answer", 8035: "no_answer", 8101: "no_answer",
    8102: "user_busy",
}


def _q850_category(code: int, cause_class: str) -> str:
    if code in _Q850_CATEGORY:
        return _Q850_CATEGORY[code]
    return "network_failure" if cause_class != "none" else "normal"


def _sip_category(code: int) -> str:
    if code in _SIP_CATEGORY:
        return _SIP_CATEGORY[code]
    return "normal" if 100 <= code < 300 else "network_failure"  # 1xx/2xx are no failure; 3xx, 4xx-6xx


def _read(name: str) -> list[dict[str, str]]:
    with (CODES_DIR / name).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _codes(text: str) -> range:
    low, sep, high = text.strip().partition("-")
    return range(int(low), int(high if sep else low) + 1)


@dataclass(frozen=True)
class CodeTables:
    """Every table as ``{(field, service, code): Code}``; service is "" for service-free tables."""

    entries: dict[tuple[str, str, int], Code]

    def get(self, field: str, service: str, code: int) -> Code | None:
        return self.entries.get((field, service, code)) or self.entries.get((field, "", code))


def _build() -> CodeTables:
    entries: dict[tuple[str, str, int], Code] = {}
    q850: dict[int, Code] = {}
    for row in _read("q850_causes.csv"):
        code = int(row["code"])
        q850[code] = Code(row["name"], _q850_category(code, row["class"]), row["class"])
    sip: dict[int, Code] = {}
    for row in _read("sip_status.csv"):
        code = int(row["code"])
        sip[code] = Code(row["reason_phrase"], _sip_category(code))
    for field in ("fwdUnaswRsn", "callOutUnaswRsn"):
        for code, entry in q850.items():
            entries[(field, "", code)] = entry
    for code, entry in sip.items():
        entries[("sipStatusCode", "", code)] = entry
    for row in _read("hangup_reasons.csv"):
        code, service = int(row["code"]), row["service"]
        if service == "voice":
            category = _VOICE_HANGUP.get(code, "platform")
        else:
            category = _PRIVACY_HANGUP.get(code) or _PRIVACY_HANGUP_GROUP.get(row["category"], "platform")
        entries[("stateCode", service, code)] = Code(row["description_en"], category)
    teardown_rows = _read("teardown_points.csv")
    # single codes first, ranges after, so "514" is not hidden by "400-699"
    teardown_rows.sort(key=lambda r: "-" in r["code"])
    for row in teardown_rows:
        service = row["service"]
        table = _VOICE_TEARDOWN if service == "voice" else _PRIVACY_TEARDOWN
        for code in _codes(row["code"]):
            if 400 <= code <= 699 and "-" in row["code"]:
                sip_entry = sip.get(code)
                phrase = f" {sip_entry.description}" if sip_entry else ""
                text = f"SIP {code}{phrase} (far end gave no Q.850 cause)"
                entries.setdefault(("ulFailReason", service, code), Code(text, _sip_category(code)))
            else:
                entries.setdefault(("ulFailReason", service, code), Code(row["description_en"], table.get(code, "platform")))
    for row in _read("x_number_status.csv"):
        field = row["field"]
        code = int(row["code"])
        category = "normal" if (field == "status" and code == 5) or (field == "cause" and code == 6) else "control"
        entries[(field, "", code)] = Code(row["description_en"], category)
    return CodeTables(entries)


@lru_cache(maxsize=1)
def tables() -> CodeTables:
    """The code tables, loaded once per process."""
    return _build()


def describe(field: str, service: str, code: int) -> Code:
    """The description of ``code`` in ``field``; unknown codes get a placeholder (``known=False``)."""
    entry = tables().get(field, service, code)
    if entry is not None:
        return entry
    return Code(f"unknown {field} code {code}", "unknown", "", known=False)

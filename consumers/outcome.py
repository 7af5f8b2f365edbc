"""The outcome of one call attempt, by the standards the KPI views follow (docs/analytics.md).

Pure functions of one CDR's codes and times, so a batch step can call them per record:

``call_outcome``  failure category, reason and the code that decided it, with this precedence:
                  1. answered on the measured leg: ``normal``
                  2. a specific Q.850 cause (not 0, 16 or 31) of the measured leg, then of the other leg:
                     ITU-T E.425 judges effectiveness by the cause class the network reported
                  3. the Huawei teardown point (``ulFailReason``); a control/configuration point with no
                     specific Q.850 cause means the platform refused the call itself: no seizure (E.411)
                  4. the SIP status (``sipStatusCode``)
                  5. a non-specific Q.850 cause (16 normal clearing, 31 normal unspecified): ``no_answer``
                     when the measured leg alerted (ring, no answer), ``unknown`` when it did not
``session_request_delay_ms``  RFC 6076 SRD: leg start (the INVITE) to the first response that ends
                  the wait: alerting (18x), else answer (200), else for a failed setup the failure time.
                  ``None`` when there was no request (refused, never started), when the caller gave up
                  before any response, or when the times contradict each other (never a clamped zero).
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.codes import Q850_DEFERRING_TEARDOWNS, Code

USER_CAUSED = frozenset({"user_busy", "no_answer", "user_rejected"})  # E.425 effective, besides answered
REFUSAL_CATEGORIES = frozenset({"control", "configuration"})
NON_SPECIFIC_Q850 = frozenset({0, 16, 31})


@dataclass(frozen=True, slots=True)
class Outcome:
    category: str  # failure_category ("normal" when answered)
    reason: str  # failure_reason: the English description of the deciding code
    source: str  # failure_source: "q850", "teardown", "sip" or "" (answered, or nothing recorded)
    refused: bool = False  # refused by the platform before any seizure

    @property
    def effective(self) -> bool:
        """E.425: answered, or the call reached the user and the user ended it."""
        return self.category == "normal" or self.category in USER_CAUSED


ANSWERED = Outcome("normal", "", "")


def call_outcome(
    answered: bool,
    alerted: bool,
    q850: list[tuple[int, Code]],
    teardown: tuple[int, Code] | None,
    sip: tuple[int, Code] | None,
) -> Outcome:
    """The outcome of one call; ``q850`` lists (code, entry) of the measured leg first, then the other leg."""
    if answered:
        return ANSWERED
    for code, entry in q850:
        if code not in NON_SPECIFIC_Q850:
            return Outcome(entry.category, entry.description, "q850")
    if teardown is not None:
        code, entry = teardown
        if code != 0 and entry.known and code not in Q850_DEFERRING_TEARDOWNS:
            return Outcome(entry.category, entry.description, "teardown", entry.category in REFUSAL_CATEGORIES)
    if sip is not None and sip[0] != 0 and sip[1].known:
        return Outcome(sip[1].category, sip[1].description, "sip")
    for code, entry in q850:
        if code != 0:
            if alerted:
                return Outcome("no_answer", f"{entry.description} (released while ringing)", "q850")
            return Outcome("unknown", f"{entry.description} (released before alerting)", "q850")
    if teardown is not None and teardown[0] != 0:  # a code the tables do not know yet
        return Outcome("unknown", teardown[1].description, "teardown")
    return Outcome("unknown", "no failure cause recorded", "")


def session_request_delay_ms(
    start: int | None, alerting: int | None, answer: int | None, failed_at: int | None, outcome: Outcome
) -> int | None:
    """RFC 6076 session request delay in milliseconds, or ``None`` (see the module docstring)."""
    if start is None or outcome.refused:
        return None
    response: int | None
    if alerting is not None:
        response = alerting
    elif answer is not None:
        response = answer
    elif outcome.category == "caller_abandoned":
        return None
    else:
        response = failed_at
    if response is None or response < start:
        return None
    return response - start

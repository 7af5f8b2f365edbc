"""The exception tree. Retry policy is data on the class (``retriable``), never a string match.

    CallstreamError
    ├── ConfigError                 settings are wrong; the message names the fix       (poison)
    ├── RejectedNotification        a push we refuse; carries an HTTP status + reason   (poison)
    │   ├── AuthError               401: missing/invalid signature, skew, replayed nonce
    │   ├── BodyTooLarge            413
    │   └── BadNotification         400/422: not JSON, not an object, unknown eventType …
    ├── NormaliseError              a record the consumer cannot turn into rows          (poison)
    ├── BrokerUnavailable           Kafka did not acknowledge in time                     (retriable)
    └── StoreError                  ClickHouse failed
        ├── StoreUnavailable        connection refused, timeout, too many parts …       (retriable)
        └── StoreRejected           bad data / schema mismatch for that batch            (poison)

A loader asks ``error.retriable``: retriable errors pause and back off without committing offsets;
poison records are quarantined (``failed_events`` + dead-letter topic) and the stream goes on.
"""

from __future__ import annotations


class CallstreamError(Exception):
    """Base of every error callstream raises on purpose."""

    retriable: bool = False
    reason: str = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class ConfigError(CallstreamError):
    reason = "config"


class RejectedNotification(CallstreamError):
    """A push the edge refuses. ``status`` is the HTTP answer, ``reason`` a short machine word."""

    status: int = 400
    reason = "bad_request"


class AuthError(RejectedNotification):
    status = 401
    reason = "unauthenticated"


class BodyTooLarge(RejectedNotification):
    status = 413
    reason = "too_large"


class BadNotification(RejectedNotification):
    status = 400
    reason = "malformed"


class NormaliseError(CallstreamError):
    """A record that cannot be normalised; it is quarantined, the batch goes on."""

    reason = "normalise"


class BrokerUnavailable(CallstreamError):
    retriable = True
    reason = "broker_unavailable"


class StoreError(CallstreamError):
    reason = "store"


class StoreUnavailable(StoreError):
    retriable = True
    reason = "store_unavailable"


class StoreRejected(StoreError):
    retriable = False
    reason = "store_rejected"

"""The exception tree: every error callstream raises on purpose. Retry policy is data on the class
(``retriable``, ``max_retries``), never a string match.

    CallstreamError
    ├── ConfigError                 settings are wrong; the message names the fix         (poison)
    ├── RejectedNotification        a push we refuse; carries an HTTP status + reason     (poison)
    │   ├── AuthError               401: missing/invalid signature, skew, replayed nonce
    │   ├── BodyTooLarge            413
    │   ├── BadNotification         400/422: not JSON, not an object, unknown eventType …
    │   ├── AppKeyMismatch          403: the body names an appKey other than the signer's
    │   ├── IpNotAllowed            403: the client address is outside CALLSTREAM_EDGE_ALLOW_CIDRS
    │   └── RateLimited             429: the app sent more than its rate; ``retry_after_s``
    ├── ClientDisconnected          the HTTP client went away before sending the whole body
    ├── NormaliseError              a record the consumer cannot turn into rows            (poison)
    ├── UnknownSchema               bytes that name no writer schema we know (also a ValueError) (poison)
    ├── BrokerError                 Kafka failed
    │   ├── BrokerUnavailable       unreachable, or did not acknowledge in time            (retriable)
    │   └── BrokerRejected          refused the request for good (too large, not allowed …) (poison)
    ├── RegistryError               the schema registry failed: ``retriable`` on each error
    │                               (unreachable, 5xx, 408, 429: retriable; a refused registration: not)
    ├── StoreError                  ClickHouse failed
    │   ├── StoreUnavailable        connection refused, timeout, too many parts …         (retriable)
    │   ├── StoreRejected           bad data / schema mismatch for that batch              (poison)
    │   ├── StoreFailed             a failure nobody recognised: a few retries, then it stops the consumer
    │   └── SqlError                the store refused a query of ``callstream sql``
    ├── QueryRefused                a query the read-only endpoint does not run (HTTP status + code)
    └── DashboardError              a dashboard request that cannot be answered (HTTP status)

A loader asks ``error.retriable``: retriable errors pause and back off without committing offsets,
``max_retries`` times in a row at most when it is set (then the error propagates and the process stops
with it); poison records are quarantined (``failed_events`` + dead-letter topic) and the stream goes on.
"""

from __future__ import annotations


class CallstreamError(Exception):
    """Base of every error callstream raises on purpose."""

    retriable: bool = False
    max_retries: int | None = None  # retriable errors: how many attempts in a row before giving up (None: no end)
    reason: str = "error"

    def __init__(self, message: str = "", *, reason: str | None = None, retriable: bool | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        if retriable is not None:
            self.retriable = retriable


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


class IpNotAllowed(RejectedNotification):
    status = 403
    reason = "ip_not_allowed"


class AppKeyMismatch(RejectedNotification):
    """The body names an appKey other than the one whose secret signed the push."""

    status = 403
    reason = "app_key_mismatch"


class RateLimited(RejectedNotification):
    status = 429
    reason = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ClientDisconnected(CallstreamError):
    """The client went away before sending the whole body (nothing to answer, nothing published)."""

    reason = "client_disconnected"


class NormaliseError(CallstreamError):
    """A record that cannot be normalised; it is quarantined, the batch goes on."""

    reason = "normalise"


class UnknownSchema(CallstreamError, ValueError):
    """The bytes name a writer schema that is neither shipped in schemas/avro nor in the registry."""

    reason = "unknown_schema"


class BrokerError(CallstreamError):
    """Kafka failed; ``core.kafka.kafka_error`` turns a client's exception into one of the two below."""

    reason = "broker"


class BrokerUnavailable(BrokerError):
    retriable = True
    reason = "broker_unavailable"


class BrokerRejected(BrokerError):
    reason = "broker_rejected"


class RegistryError(CallstreamError):
    """The schema registry failed; ``retriable`` says whether asking again later can succeed."""

    reason = "schema_registry"


class StoreError(CallstreamError):
    reason = "store"


class StoreUnavailable(StoreError):
    retriable = True
    reason = "store_unavailable"


class StoreRejected(StoreError):
    retriable = False
    reason = "store_rejected"


class StoreFailed(StoreError):
    """A store failure of a kind nobody mapped (most likely a bug, not an outage): retried a few times,
    then it stops the consumer loudly instead of pausing consumption forever."""

    retriable = True
    max_retries = 5
    reason = "store_failed"


class SqlError(StoreError):
    """The store refused a query; the message is ClickHouse's text."""

    reason = "sql"


class QueryRefused(CallstreamError):
    """A query the read-only endpoint does not run; ``text`` is ClickHouse-style, ``status`` the HTTP
    answer, ``code`` ClickHouse's error code."""

    reason = "query_refused"

    def __init__(self, text: str, status: int, code: int) -> None:
        super().__init__(text)
        self.text, self.status, self.code = text, status, code


class DashboardError(CallstreamError):
    """A request the dashboard cannot answer; ``status`` is the HTTP status to send."""

    reason = "dashboard"

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status

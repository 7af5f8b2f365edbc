"""callstream: Huawei Cloud telephony notifications, from the platform's push to ClickHouse rows."""

from core.errors import (
    AuthError,
    BadNotification,
    BodyTooLarge,
    BrokerUnavailable,
    CallstreamError,
    ConfigError,
    NormaliseError,
    RejectedNotification,
    StoreError,
    StoreRejected,
    StoreUnavailable,
)
from core.settings import Settings

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "BadNotification",
    "BodyTooLarge",
    "BrokerUnavailable",
    "CallstreamError",
    "ConfigError",
    "NormaliseError",
    "RejectedNotification",
    "Settings",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
    "__version__",
]

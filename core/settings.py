"""One typed, frozen settings object read from ``CALLSTREAM_*`` environment variables.

Every duration and size carries its unit in the name (``ack_timeout_s``, ``max_body_bytes``).
Durable defaults are written out (``acks="all"``); anything that trades safety for speed is opt-in.

    settings = Settings()                      # from the environment
    settings = Settings(kafka_bootstrap="h:9092", auth="off")   # explicit, e.g. in tests
"""

from __future__ import annotations

import difflib
import ipaddress
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.errors import ConfigError

log = logging.getLogger(__name__)
ENV_PREFIX = "CALLSTREAM_"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
ProtectionMode = Literal["keep", "mask", "hash"]
AuthScheme = Literal["aksk", "aksk-voice", "wsse"]
PROTECTION_MODES: tuple[str, ...] = ("keep", "mask", "hash")


def _items(text: str) -> list[str]:
    """The entries of a comma- (or newline-) separated list, stripped, empty ones left out."""
    return [item.strip() for item in text.replace("\n", ",").split(",") if item.strip()]


def parse_cidrs(text: str) -> list[Network]:
    """``"10.0.0.0/8, 2001:db8::/32, 192.0.2.7"`` -> networks; a bad entry is a ``ConfigError``."""
    networks: list[Network] = []
    for item in _items(text):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise ConfigError(
                f"bad CALLSTREAM_EDGE_ALLOW_CIDRS entry {item!r}: "
                "write CIDRs such as 203.0.113.0/24, comma-separated"
            ) from exc
    return networks


def parse_number_protection(text: str) -> tuple[tuple[str, ProtectionMode], ...]:
    """``"caller_num=hash,callee_num=mask"`` -> ``(("caller_num", "hash"), ("callee_num", "mask"))``.
    The column names are checked against the number columns by ``consumers.numbers.Policy``."""
    pairs: list[tuple[str, ProtectionMode]] = []
    for item in _items(text):
        column, sep, mode = (part.strip() for part in item.partition("="))
        if not sep or not column or mode not in PROTECTION_MODES:
            raise ConfigError(
                f"bad CALLSTREAM_NUMBER_PROTECTION entry {item!r}: write column=keep|mask|hash, comma-separated"
            )
        pairs.append((column, mode))  # type: ignore[arg-type]
    return tuple(pairs)


def parse_app_credentials(text: str) -> dict[str, str]:
    """Parse ``"appKey1:secret1,appKey2:secret2"`` (commas or newlines) into ``{appKey: secret}``."""
    apps: dict[str, str] = {}
    for item in text.replace("\n", ",").split(","):
        item = item.strip()
        if not item or item.startswith("#"):
            continue
        key, sep, secret = item.partition(":")
        if not sep or not key.strip() or not secret.strip():
            raise ConfigError(
                f"bad app credential entry {item.split(':')[0]!r}: write appKey:secret pairs separated by commas"
            )
        apps[key.strip()] = secret.strip()
    return apps


_LIST_PARSERS: dict[str, Callable[[str], tuple[Any, ...]]] = {
    "edge_allow_cidrs": lambda text: tuple(parse_cidrs(text)),
    "number_protection": parse_number_protection,
    "auth_schemes": lambda text: tuple(_items(text)),
}
DEFAULT_NUMBER_PROTECTION = "caller_num=hash,callee_num=hash,fwd_dst_num=hash,caller=hash,called=hash,embedded=hash"


class Settings(BaseSettings):
    """Every setting of callstream, validated when built: a bad value is a one-line ``ConfigError`` that
    names its ``CALLSTREAM_*`` variable; an unknown ``CALLSTREAM_*`` variable is logged as a warning."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(describe_invalid(exc)) from None
        warn_unknown_variables(os.environ)

    # --- where things live -------------------------------------------------------------------
    data_dir: Path = Path("./callstream-data")
    kafka_bootstrap: str = Field(
        default="",
        description="host:port[,host:port]; empty means the embedded broker started by `callstream up`",
    )
    clickhouse_url: str = Field(
        default="", description="chdb:///path (embedded) or http(s)://user:pass@host:port; empty = embedded"
    )
    clickhouse_database: str = "callstream"
    clickhouse_cluster: str = ""

    # --- authentication of pushes --------------------------------------------------------------
    apps: SecretStr = Field(default=SecretStr(""), description="appKey:secret,appKey:secret")
    apps_file: Path | None = None
    auth: Literal["on", "off"] = "on"
    auth_max_skew_s: int = 900
    auth_schemes: Annotated[tuple[AuthScheme, ...], NoDecode] = ("aksk", "aksk-voice", "wsse")
    auth_nonce_cache_entries: int = 100_000
    public_base_url: str = Field(
        default="", description="URL the platform posts to, as configured in the console (voice digest signs it)"
    )

    # --- edge ----------------------------------------------------------------------------------
    edge_host: str = "0.0.0.0"
    edge_port: int = 8080
    max_body_bytes: int = 1024 * 1024
    ack_timeout_s: float = 2.0
    max_in_flight_requests: int = 1000
    shutdown_grace_s: float = 10.0

    # --- Kafka ---------------------------------------------------------------------------------
    raw_topic: str = "callstream.raw"
    dead_topic: str = "callstream.dead"
    cdrs_topic: str = "callstream.cdrs"
    call_events_topic: str = "callstream.call_events"
    number_status_topic: str = "callstream.number_status"
    schema_registry_url: str = Field(
        default="", description="Confluent-compatible schema registry; empty = Avro single-object encoding"
    )
    topic_partitions: int = 6
    topic_replication_factor: int = 1
    producer_acks: Literal["all"] = "all"
    producer_compression: Literal["none", "gzip", "lz4", "zstd", "snappy"] = "lz4"
    producer_linger_ms: int = 2
    producer_max_batch_bytes: int = 1024 * 1024
    producer_idempotence: bool = False
    broker: Literal["durable", "memory"] = Field(
        default="durable",
        description="embedded broker of `callstream up`: durable (Tansu on a local S3 store under data_dir) "
        "or memory (nothing survives a restart)",
    )
    broker_port: int = Field(default=0, description="embedded broker port; 0 = pick a free one")
    object_store_port: int = Field(default=0, description="S3 port of the embedded object store; 0 = pick a free one")
    data_dir_min_free_mb: int = Field(
        default=256, description="below this free space in data_dir `up` pauses its durable broker: the edge answers 503"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None

    # --- consumers -----------------------------------------------------------------------------
    consumer_group: str = "callstream-loader"
    batch_max_events: int = 5000
    flush_interval_ms: int = 200
    load_retry_max_backoff_s: float = 30.0
    dedup_cache_keys: int = 500_000
    dedup_cache_bytes: int = 8 * 1024 * 1024  # the recent-key cache's memory (16 bytes a key)
    republish: bool = True
    consumer_metrics_port: int = 9108
    prepare_worker: bool = True  # prepare batches in a child process (consumers/worker.py), on a core of its own
    prepare_ahead: int = Field(default=1, ge=1, le=8, description="polled batches with the prepare step while one is delivered")

    # --- query endpoint (embedded store) ------------------------------------------------------
    query_host: str = "127.0.0.1"
    query_port: int = 8123

    # --- data protection and retention (docs/threat-model.md) ----------------------------------
    number_protection: Annotated[tuple[tuple[str, ProtectionMode], ...], NoDecode] = Field(
        default=parse_number_protection(DEFAULT_NUMBER_PROTECTION),
        description="column=keep|mask|hash, comma-separated; unlisted number columns are kept (X numbers)",
    )
    number_pepper: SecretStr = Field(default=SecretStr(""), description="secret key of the number hash")
    number_pepper_file: Path | None = None
    publish_recording_urls: bool = False
    cdr_retention_days: int = 400
    event_retention_days: int = 400
    number_status_retention_days: int = 400
    failed_retention_days: int = 30
    raw_retention_hours: int = 72

    # --- edge hardening ------------------------------------------------------------------------
    edge_tls_certfile: Path | None = None
    edge_tls_keyfile: Path | None = None
    edge_allow_cidrs: Annotated[tuple[Network, ...], NoDecode] = Field(
        default=(), description="comma-separated CIDRs allowed to push; empty = all")
    rate_limit_per_app_per_s: float = 0.0
    metrics_public: bool = False
    # refused pushes stored on the dead-letter topic: token buckets of bytes per source address and in total
    quarantine_source_bytes_per_s: float = 16 * 1024
    quarantine_source_burst_bytes: int = 4 * 1024 * 1024
    quarantine_total_bytes_per_s: float = 256 * 1024
    quarantine_total_burst_bytes: int = 32 * 1024 * 1024

    # --- X-mode callin (Block mode): relay to the customer's call-control app ----------------------
    callin_upstream_url: str = Field(
        default="", description="http(s) URL of the call-control app; empty = answer callin like any push"
    )
    callin_deadline_s: float = 2.0
    callin_fallback: str = Field(
        default="", description="JSON object answered (200) when the upstream misses the deadline or fails"
    )

    @field_validator("edge_allow_cidrs", "number_protection", "auth_schemes", mode="before")
    @classmethod
    def _parse_list(cls, value: object, info: ValidationInfo) -> object:
        """A comma-separated variable becomes its typed tuple here, so a bad entry fails when built."""
        return _LIST_PARSERS[str(info.field_name)](value) if isinstance(value, str) else value

    @field_validator("auth", mode="before")
    @classmethod
    def _auth_words(cls, value: object) -> object:
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in {"on", "true", "1", "yes"}:
                return "on"
            if lowered in {"off", "false", "0", "no"}:
                return "off"
        return value

    # --- derived values ------------------------------------------------------------------------
    @property
    def clickhouse_dsn(self) -> str:
        """The ClickHouse DSN: the explicit URL or the embedded engine under ``data_dir``."""
        if self.clickhouse_url:
            return self.clickhouse_url
        return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    @property
    def clickhouse_is_embedded(self) -> bool:
        return self.clickhouse_dsn.startswith("chdb:")

    def app_secrets(self) -> dict[str, str]:
        """``{appKey: secret}`` from ``CALLSTREAM_APPS`` and ``CALLSTREAM_APPS_FILE`` merged."""
        apps = parse_app_credentials(self.apps.get_secret_value())
        if self.apps_file is not None:
            try:
                apps.update(parse_app_credentials(self.apps_file.read_text(encoding="utf-8")))
            except OSError as exc:
                raise ConfigError(f"cannot read CALLSTREAM_APPS_FILE={self.apps_file}: {exc.strerror}") from exc
        return apps

    def require_kafka(self) -> str:
        if not self.kafka_bootstrap:
            raise ConfigError(
                "CALLSTREAM_KAFKA_BOOTSTRAP is empty: set host:port of your Kafka cluster, "
                "or run `callstream up` to start the embedded broker"
            )
        return self.kafka_bootstrap

    def require_apps(self) -> dict[str, str]:
        """Credentials for the edge; an empty set with auth on is a configuration error."""
        apps = self.app_secrets()
        if self.auth == "on" and not apps:
            raise ConfigError(
                "CALLSTREAM_APPS is empty: set appKey:secret pairs (or CALLSTREAM_APPS_FILE), "
                "or CALLSTREAM_AUTH=off for local development"
            )
        return apps

    def environment(self) -> dict[str, str]:
        """Every set value as the ``CALLSTREAM_*`` variable that gives it back (secrets in clear: for a
        child process's environment only)."""
        env: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, tuple):
                value = ",".join("=".join(item) if isinstance(item, tuple) else str(item) for item in value)
            env[f"{ENV_PREFIX}{name.upper()}"] = str(value)
        return env

    def topics(self) -> list[str]:
        return [self.raw_topic, self.dead_topic, self.cdrs_topic, self.call_events_topic, self.number_status_topic]


_SECRETS = frozenset(name for name, field in Settings.model_fields.items() if field.annotation is SecretStr)
_warned: set[str] = set()


def describe_invalid(exc: ValidationError) -> str:
    """One line naming each invalid variable, its value (secrets withheld) and what is wrong with it."""
    parts = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else ""
        value = "(secret)" if name in _SECRETS else repr(error.get("input"))
        parts.append(f"{ENV_PREFIX}{name.upper()}={value} is not valid: {error['msg']}")
    return "; ".join(parts)


def unknown_variables(environ: Mapping[str, str]) -> dict[str, str | None]:
    """``{CALLSTREAM_* variable that is no setting: the setting it most likely means, or None}``."""
    known = [f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields]
    return {name: next(iter(difflib.get_close_matches(name, known, n=1)), None)
            for name in sorted(environ) if name.startswith(ENV_PREFIX) and name not in known}


def warn_unknown_variables(environ: Mapping[str, str]) -> None:
    """Log each unknown ``CALLSTREAM_*`` variable once per process (a misspelling would pass silently)."""
    for name, guess in unknown_variables(environ).items():
        if name not in _warned:
            _warned.add(name)
            hint = f": did you mean {guess}?" if guess else ""
            log.warning("%s is not a callstream setting and is ignored%s", name, hint)

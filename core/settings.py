"""One typed, frozen settings object read from ``CALLSTREAM_*`` environment variables.

Every duration and size carries its unit in the name (``ack_timeout_s``, ``max_body_bytes``).
Durable defaults are written out (``acks="all"``); anything that trades safety for speed is opt-in.

    settings = Settings()                      # from the environment
    settings = Settings(kafka_bootstrap="h:9092", auth="off")   # explicit, e.g. in tests
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigError


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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CALLSTREAM_", frozen=True, extra="ignore")

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
    apps: str = Field(default="", repr=False, description="appKey:secret,appKey:secret")
    apps_file: Path | None = None
    auth: Literal["on", "off"] = "on"
    auth_max_skew_s: int = 900
    auth_schemes: str = "aksk,aksk-voice,wsse"
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
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = Field(default="", repr=False)
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

    # --- query endpoint (embedded store) ------------------------------------------------------
    query_host: str = "127.0.0.1"
    query_port: int = 8123

    # --- data protection and retention (docs/threat-model.md) ----------------------------------
    number_protection: str = Field(
        default="caller_num=hash,callee_num=hash,fwd_dst_num=hash,caller=hash,called=hash,embedded=hash",
        description="column=keep|mask|hash; unlisted number columns are kept (X numbers)",
    )
    number_pepper: str = Field(default="", repr=False, description="secret key of the number hash")
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
    edge_allow_cidrs: str = Field(default="", description="comma-separated CIDRs allowed to push; empty = all")
    rate_limit_per_app_per_s: float = 0.0
    metrics_public: bool = False

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
        apps = parse_app_credentials(self.apps)
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

    def topics(self) -> list[str]:
        return [self.raw_topic, self.dead_topic, self.cdrs_topic, self.call_events_topic, self.number_status_topic]

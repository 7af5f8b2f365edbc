"""Fixtures that start real servers: the Tansu broker on a free 127.0.0.1 port and the chDB engine.

chDB allows one store path per process, so the whole test session shares one embedded store and each
test gets its own database (``settings.clickhouse_database``) and its own topic names. Everything a
fixture starts it also stops.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.broker import EmbeddedBroker
from core.settings import Settings

SAMPLES_DIR = Path(__file__).parent / "samples"

TEST_APP_KEY = "a1B2c3D4e5F6g7H8i9J0k1L2m3N4"
TEST_APP_SECRET = "test-secret-voice-0001"
TEST_PRIVACY_APP_KEY = "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6"
TEST_PRIVACY_APP_SECRET = "test-secret-privacy-0002"
TEST_NUMBER_PEPPER = "test-number-pepper-0003-abcdef"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", help="run the long chaos and bench variants")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--long"):
        return
    skip = pytest.mark.skip(reason="long variant: run with --long")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def long_run(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--long"))


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One Tansu broker for the session (tests isolate themselves with unique topic names)."""
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log) as running:
        yield running


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's embedded ClickHouse store directory (one chDB path per process)."""
    return tmp_path_factory.mktemp("chdb") / "clickhouse"


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def make_settings(
    broker: EmbeddedBroker, chdb_dir: Path, tmp_path: Path, unique: str
) -> Callable[..., Settings]:
    """Settings for one test: the session broker and store, this test's own topics and database."""

    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "kafka_bootstrap": broker.bootstrap,
            "clickhouse_url": f"chdb://{chdb_dir}",
            "clickhouse_database": f"t_{unique}",
            "apps": f"{TEST_APP_KEY}:{TEST_APP_SECRET},{TEST_PRIVACY_APP_KEY}:{TEST_PRIVACY_APP_SECRET}",
            "raw_topic": f"{unique}.raw",
            "dead_topic": f"{unique}.dead",
            "cdrs_topic": f"{unique}.cdrs",
            "call_events_topic": f"{unique}.call_events",
            "number_status_topic": f"{unique}.number_status",
            "topic_partitions": 3,
            "consumer_group": f"{unique}.loader",
            "consumer_metrics_port": 0,
            # tests insert fixed historic received_at values that a table TTL would drop on insert;
            # tests/test_retention.py sets the TTLs explicitly. Edge tests read /metrics from a 10.x client.
            "cdr_retention_days": 0,
            "event_retention_days": 0,
            "number_status_retention_days": 0,
            "failed_retention_days": 0,
            "metrics_public": True,
            "number_pepper": TEST_NUMBER_PEPPER,
        }
        values.update(overrides)
        return Settings(**values)

    return factory


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


def sample_paths() -> list[Path]:
    return sorted(SAMPLES_DIR.glob("*.json"))


def sample_bytes(name: str) -> bytes:
    return (SAMPLES_DIR / name).read_bytes()


@pytest.fixture(autouse=True)
def _no_ambient_callstream_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests build their settings explicitly; a developer's CALLSTREAM_* variables must not leak in."""
    for name in list(os.environ):
        if name.startswith("CALLSTREAM_"):
            monkeypatch.delenv(name, raising=False)

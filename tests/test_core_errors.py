"""The exception tree: every error the project defines is in it and in its docstring, retry policy is
data on the classes, and the consumer gives up on an unrecognised failure after its bounded retries."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil
import re

import pytest
from prometheus_client import CollectorRegistry

import callstream
import consumers
import core
import ingest
import schemas
from consumers.metrics import ConsumerMetrics
from consumers.runner import retry_paused
from core import errors
from core.errors import CallstreamError, StoreFailed, StoreUnavailable

PRIVATE_SIGNALS = {"_Unsupported", "_BadRecord"}  # control flow inside one module, never raised out of it


def _project_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for package in (core, schemas, ingest, consumers, callstream):
        for info in pkgutil.iter_modules(package.__path__, f"{package.__name__}."):
            module = importlib.import_module(info.name)
            for name, value in vars(module).items():
                if (inspect.isclass(value) and issubclass(value, BaseException)
                        and value.__module__.split(".")[0] in {"core", "schemas", "ingest", "consumers", "callstream"}):
                    found[name] = value
    return found


def test_every_project_exception_is_in_the_tree_and_drawn_in_its_docstring() -> None:
    found = _project_exceptions()
    assert {"UnknownSchema", "QueryRefused", "ClientDisconnected", "SqlError", "RegistryError"} <= set(found)
    for name, cls in found.items():
        if name in PRIVATE_SIGNALS:
            continue
        assert issubclass(cls, CallstreamError), f"{cls.__module__}.{name} is outside core.errors' tree"
        assert cls.__module__ == "core.errors", f"{name} is defined in {cls.__module__}, not core/errors.py"
        assert re.search(rf"[─ ]{name}\b", errors.__doc__ or ""), f"{name} is missing from the tree in the docstring"


def test_retriable_is_data_on_the_class_and_on_an_instance() -> None:
    assert errors.BrokerUnavailable.retriable and not errors.BrokerRejected.retriable
    assert not errors.RegistryError("refused").retriable
    assert errors.RegistryError("unreachable", retriable=True).retriable
    assert isinstance(errors.UnknownSchema("x"), ValueError)  # codecs raise it where fastavro raises ValueError


def test_an_unrecognised_failure_stops_after_its_bounded_retries() -> None:
    attempts: list[int] = []

    async def failing() -> None:
        attempts.append(1)
        raise StoreFailed("a bug")

    async def flaky() -> None:
        attempts.append(1)
        if len(attempts) < 9:
            raise StoreUnavailable("down for a while")

    async def scenario() -> bool:
        metrics = ConsumerMetrics(CollectorRegistry())
        with pytest.raises(StoreFailed):
            await retry_paused(failing, lambda _: "load", metrics, None, asyncio.Event(), max_backoff_s=0.001)
        assert len(attempts) == StoreFailed.max_retries + 1
        attempts.clear()
        return await retry_paused(flaky, lambda _: "load", metrics, None, asyncio.Event(), max_backoff_s=0.001)

    assert asyncio.run(scenario()) is True
    assert len(attempts) == 9  # an outage is waited out however long it lasts

"""Prepare batches in a child process, so that ``consumers.prepare`` (pure Python, GIL-bound) runs on a
core of its own while the consumer process drives the store and Kafka.

The embedded store (chDB) runs its queries in the calling thread and takes the GIL back often: with
``prepare`` in a thread of the same process, the two halves of the pipeline wait on each other's GIL
and the consumer uses one core in all (bench/consumer.py shows it). The child gets the raw records
(topic, partition, offset, value) and returns the ``Prepared`` batch; the recent-key step stays in the
consumer (``drop_recent``), which owns the keys it loaded. The child dies with its parent
(``PR_SET_PDEATHSIG``); if it dies on its own, the batch is prepared in the consumer and a new child
is started for the next one.

    worker = PrepareWorker(settings)
    await worker.start()
    prepared = await worker.prepare(records, encode=True)
    worker.close()
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import NamedTuple

from consumers.prepare import Prepared, RawRecord, State, prepare
from core import memory
from core.processes import die_with_parent
from core.settings import Settings

log = logging.getLogger(__name__)


class Raw(NamedTuple):
    """A raw Kafka record as the child gets it (what ``prepare`` reads of aiokafka's records)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None


# --- in the child ------------------------------------------------------------------------------
_settings: Settings | None = None
_state = State()  # no recent keys here: the consumer applies its own (drop_recent)


def _start_child(settings: Settings, parent_pid: int) -> None:
    global _settings
    die_with_parent(parent_pid)
    _settings = settings
    memory.collect_less()


def _ready() -> int:
    return os.getpid()


def _prepare_in_child(records: list[Raw], encode: bool) -> Prepared:
    assert _settings is not None, "the worker was started without settings"
    return prepare(records, _settings, _state, encode=encode)


# --- in the consumer ---------------------------------------------------------------------------
class PrepareWorker:
    """One child process preparing one batch at a time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pid: int | None = None  # the child's, once ``start`` has seen it run
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn: the consumer process has the store's threads running, a fork would copy them mid-flight
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_start_child, initargs=(self.settings, os.getpid()))
        return self._pool

    async def start(self) -> None:
        """Start the child now (importing the pipeline takes a moment) rather than on the first batch."""
        self.pid = await asyncio.get_running_loop().run_in_executor(self._executor(), _ready)

    async def prepare(self, records: list[RawRecord], *, encode: bool) -> Prepared:
        """``prepare(records)`` in the child (without the recent-key step). If the child died, the batch
        is prepared here and the next one gets a new child."""
        raw = records_of(records)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor(), _prepare_in_child, raw, encode)
        except BrokenProcessPool:
            log.warning("the prepare worker process died; preparing this batch in the consumer, a new worker "
                        "takes the next one")
            self.close()
            return prepare(raw, self.settings, State(), encode=encode)

    def close(self) -> None:
        pool, self._pool, self.pid = self._pool, None, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def records_of(records: list[RawRecord]) -> list[Raw]:
    """``Raw`` copies of records (what the child is sent: aiokafka's records carry more)."""
    return [Raw(r.topic, r.partition, r.offset, r.value) for r in records]

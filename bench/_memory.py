"""Where a benchmark process's resident memory is (the embedded ClickHouse engine or Python's side), and
the engine's own counters of where its time goes."""

from __future__ import annotations

import os
import threading
import tracemalloc
from pathlib import Path
from typing import Any

from core import store


def library_rss_kb(smaps: bytes, name: bytes = b"chdb") -> int:
    """Resident kB of the mappings whose path holds ``name``, from /proc/<pid>/smaps (~12,000 lines with
    the engine loaded: found with bytes.find rather than split into lines)."""
    total = 0
    found = smaps.find(name)
    while found != -1:
        start, end = smaps.rfind(b"\n", 0, found) + 1, smaps.find(b"\n", found)
        if b"-" in smaps[start:smaps.find(b" ", start)]:  # a mapping's header line: "lo-hi perms ... path"
            rss = smaps.find(b"\nRss:", end)
            total += int(smaps[rss + 5:smaps.find(b"\n", rss + 1)].split()[0])
        found = smaps.find(name, end if end != -1 else len(smaps))
    return total


def rss_split(client: Any) -> dict[str, float]:
    """Resident MB of the embedded engine (its library's resident pages plus the memory ClickHouse tracks
    for itself) and of the rest of the process (the interpreter, callstream, the Kafka clients)."""
    library_kb = library_rss_kb(Path("/proc/self/smaps").read_bytes())
    tracked = store.query_rows(client, "SELECT value FROM system.metrics WHERE metric = 'MemoryTracking'")
    engine_mb = library_kb / 1024 + (int(tracked[0][0]) if tracked else 0) / 2**20
    total_mb = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total_mb = int(line.split()[1]) / 1024
    return {"engine": engine_mb, "python": total_mb - engine_mb}


class RssSampler(threading.Thread):
    """``rss_split`` every ``interval_s`` in a thread of its own (it waits for the store's lock, never
    the event loop's); ``finish`` stops it and gives the split of the sample with the most RSS. A sample
    costs the measured process ~20 ms (the kernel writing /proc/self/smaps): every 2 s, not every second."""

    def __init__(self, client: Any, interval_s: float = 2.0) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.client = client
        self.interval_s = interval_s
        self.worst = {"engine": 0.0, "python": 0.0}
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            split = rss_split(self.client)
            if split["engine"] + split["python"] > self.worst["engine"] + self.worst["python"]:
                self.worst = split

    def finish(self) -> dict[str, float]:
        self._stop_event.set()
        self.join()
        return self.worst


def python_side_mb(ours: dict[str, Any], traced: dict[str, Any]) -> dict[str, float]:
    """Peak RSS of the measured run split into Python's side and the embedded engine's. Python's side:
    what the process held before the engine opened (interpreter, modules, libraries), plus the peak of
    what Python allocated after that (tracemalloc, in the traced run of the same drain) and the peak of
    pyarrow's pool; the engine's: the rest (its library's pages and its heap). librdkafka's own buffers
    count as the engine's here (native, untraced; bounded by its queue settings)."""
    grown = max(0.0, traced["python_heap_peak_mb"] - traced["python_heap_at_start_mb"])
    python = ours["rss_before_engine_mb"] + grown + traced["arrow_pool_peak_mb"]
    return {"python": round(python, 1), "embedded_engine": round(ours["rss_mb"] - python, 1)}


ENGINE_EVENTS = (  # the embedded engine's own counters (system.events) that say where its time goes
    "InsertedRows", "InsertedBytes", "MergedRows", "MergedUncompressedBytes", "MergesTimeMilliseconds",
    "SelectedRows", "SelectedMarks", "SelectedParts", "Query", "InsertQuery", "SelectQuery",
    "UserTimeMicroseconds", "SystemTimeMicroseconds", "InsertQueryTimeMicroseconds",
    "SelectQueryTimeMicroseconds", "QueryAnalysisMicroseconds", "QueryPlanBuildMicroseconds",
    "MergeTreeDataWriterSortingBlocksMicroseconds", "MergeTreeDataWriterSkipIndicesCalculationMicroseconds",
    "MergeTreeDataWriterStatisticsCalculationMicroseconds", "MergeTreeDataWriterMergingBlocksMicroseconds",
    "MergeTreeDataWriterCompressedBytes", "MergeTreeDataWriterUncompressedBytes",
    "MergeHorizontalStageTotalMilliseconds", "MergeVerticalStageTotalMilliseconds",
    "CompressedReadBufferBytes", "FilteringMarksWithPrimaryKeyMicroseconds",
    "FilteringMarksWithSecondaryKeysMicroseconds", "FileOpen",
)


def top_sites(snapshot: tracemalloc.Snapshot, n: int = 12) -> list[str]:
    """The lines that allocated most of the Python heap in ``snapshot``, as "MB file:line"."""
    stats = snapshot.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)]).statistics("lineno")
    root = str(Path(__file__).resolve().parent.parent) + os.sep
    return [f"{s.size / 2**20:.1f} MB {s.traceback[0].filename.replace(root, '')}:{s.traceback[0].lineno}"
            for s in stats[:n]]


def engine_events(client: Any) -> dict[str, int]:
    names = ", ".join(f"'{n}'" for n in ENGINE_EVENTS)
    return {str(name): int(value) for name, value in
            store.query_rows(client, f"SELECT event, value FROM system.events WHERE event IN ({names})")}

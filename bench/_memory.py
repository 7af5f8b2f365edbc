"""Where a benchmark process's resident memory is: the embedded ClickHouse engine or everything else."""

from __future__ import annotations

import threading
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

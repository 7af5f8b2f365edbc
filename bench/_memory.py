"""Where a benchmark process's resident memory is: the embedded ClickHouse engine or everything else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core import store


def rss_split(client: Any) -> dict[str, float]:
    """Resident MB of the embedded engine (its library's resident pages plus the memory ClickHouse tracks
    for itself) and of the rest of the process (the interpreter, callstream, the Kafka clients)."""
    library_kb = 0
    current = ""
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if not line[:1].isupper() or ":" not in line.split()[0]:  # a mapping's header line
            parts = line.split()
            current = parts[5] if len(parts) > 5 else ""
        elif line.startswith("Rss:") and "chdb" in current:
            library_kb += int(line.split()[1])
    tracked = store.query_rows(client, "SELECT value FROM system.metrics WHERE metric = 'MemoryTracking'")
    engine_mb = library_kb / 1024 + (int(tracked[0][0]) if tracked else 0) / 2**20
    total_mb = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total_mb = int(line.split()[1]) / 1024
    return {"engine": engine_mb, "python": total_mb - engine_mb}

"""How the consumer lets Python's garbage collector work (the edge sets its own, measured thresholds
in ingest/server.py and freezes its start-up objects in its lifespan).

The consumer allocates many short-lived objects that form no cycles (row dicts); CPython's default
collects the young generation every 700 allocations and, now and then, walks every object alive
(modules, settings, caches). ``collect_less`` moves what is alive at start-up into the permanent
generation (``gc.freeze``) and collects the young generation less often. The consumer's prepare step
alone, measured on bench/consumer.py's backlog: 64 us a row with the default collector, 51 frozen, 47
with the collector off.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 50_000


def collect_less(gen0: int = GEN0_THRESHOLD) -> None:
    """Freeze the objects alive now and collect the young generation every ``gen0`` allocations."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, gc.get_threshold()[0]), gen1, gen2)

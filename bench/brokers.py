"""The embedded broker in either mode for the benchmarks: ``memory`` (Tansu alone) and ``durable`` (Tansu
on its S3 engine over the local SeaweedFS store, as ``callstream up`` runs it by default).

    with embedded_brokers(["memory", "durable"]) as brokers:
        brokers["durable"].bootstrap
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from core.broker import DurableStorage, EmbeddedBroker
from core.objectstore import ObjectStore

MODES = ("memory", "durable")


def broker_modes(option: str) -> list[str]:
    """``--broker memory|durable|both`` as a list of modes."""
    return list(MODES) if option == "both" else [option]


@contextlib.contextmanager
def embedded_brokers(modes: Sequence[str]) -> Iterator[dict[str, EmbeddedBroker]]:
    """One running broker per mode; the durable one's store lives in a temporary dir removed afterwards."""
    with contextlib.ExitStack() as stack:
        brokers: dict[str, EmbeddedBroker] = {}
        for mode in modes:
            if mode == "durable":
                root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="callstream-bench-store-")))
                store = stack.enter_context(ObjectStore(root / "objectstore", log_path=root / "objectstore.log"))
                brokers[mode] = stack.enter_context(EmbeddedBroker(log_path=root / "broker.log",
                                                                   storage=DurableStorage(store)))
                brokers[mode].store_pid = store.pid  # type: ignore[attr-defined]
            else:
                brokers[mode] = stack.enter_context(EmbeddedBroker())
        yield brokers

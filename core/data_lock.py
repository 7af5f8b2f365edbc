"""The data-dir lock: one process at a time may own an embedded data dir (its chDB store).

``callstream up`` holds it for its whole run; ``callstream erase`` holds it while it deletes rows from the
embedded store. The file holds the owner's pid so the refusal can name it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import ConfigError

LOCK_FILE = "up.lock"


@contextmanager
def hold_data_dir(data_dir: Path, *, refusal: str) -> Iterator[None]:
    """Hold ``<data_dir>/up.lock`` exclusively, or raise ``ConfigError`` saying ``refusal``.

    ``refusal`` may use ``{data_dir}`` and ``{owner}`` (the holder's pid).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / LOCK_FILE, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            raise ConfigError(refusal.format(data_dir=data_dir, owner=owner)) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

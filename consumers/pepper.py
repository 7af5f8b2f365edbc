"""The secret key of the number hash (the pepper): read from ``CALLSTREAM_NUMBER_PEPPER`` or the file
``CALLSTREAM_NUMBER_PEPPER_FILE``, or generated once into the data dir by ``callstream up``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from core.errors import ConfigError

PEPPER_FILE = "number_pepper"  # under the data dir when `callstream up` generates one


def read_pepper(value: str, path: Path | None) -> bytes:
    """The pepper from ``CALLSTREAM_NUMBER_PEPPER`` or the file ``CALLSTREAM_NUMBER_PEPPER_FILE``."""
    if path is not None:
        try:
            return path.read_text(encoding="utf-8").strip().encode("utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read CALLSTREAM_NUMBER_PEPPER_FILE={path}: {exc.strerror}") from exc
    return value.strip().encode("utf-8")


def ensure_pepper_file(path: Path) -> Path:
    """Create a random pepper file (mode 0600) if missing, e.g. on the first ``callstream up``."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x", encoding="utf-8", opener=lambda p, f: _open_private(p, f)) as handle:
            handle.write(secrets.token_hex(32) + "\n")
    return path


def _open_private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)

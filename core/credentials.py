"""Local development credentials and the ``<data-dir>/stack.json`` file of a running ``callstream up``.

``callstream up`` with auth on and no ``CALLSTREAM_APPS`` creates one development app key/secret in
``<data-dir>/credentials`` (mode 0600, ``appKey:secret``) and reuses it on later starts. The simulator
and ``callstream sql`` find the running stack (edge, query endpoint, metrics) through ``stack.json``.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from core.settings import Settings, parse_app_credentials

CREDENTIALS_FILE = "credentials"
STACK_FILE = "stack.json"


def credentials_path(data_dir: Path) -> Path:
    return Path(data_dir) / CREDENTIALS_FILE


def ensure_dev_credentials(data_dir: Path) -> tuple[str, str, bool]:
    """``(app_key, secret, created)``: the development pair in ``<data-dir>/credentials``."""
    path = credentials_path(data_dir)
    if path.exists():
        apps = parse_app_credentials(path.read_text(encoding="utf-8"))
        if apps:
            key, secret = next(iter(apps.items()))
            return key, secret, False
    path.parent.mkdir(parents=True, exist_ok=True)
    key = "dev" + secrets.token_hex(12)
    secret = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(f"{key}:{secret}\n")
    os.chmod(path, 0o600)
    return key, secret, True


def load_app_secrets(settings: Settings, data_dir: Path | None = None) -> dict[str, str]:
    """``{appKey: secret}`` from ``CALLSTREAM_APPS``/``_APPS_FILE``, else ``<data-dir>/credentials``."""
    apps = settings.app_secrets()
    if apps:
        return apps
    path = credentials_path(data_dir or settings.data_dir)
    if path.exists():
        return parse_app_credentials(path.read_text(encoding="utf-8"))
    return {}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_stack_file(data_dir: Path) -> dict[str, Any] | None:
    """The running stack's description, or None when no live ``up`` owns ``data_dir``."""
    path = Path(data_dir) / STACK_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not _pid_alive(int(info.get("pid", 0) or 0)):
        return None
    return info


def write_stack_file(data_dir: Path, info: dict[str, Any]) -> Path:
    path = Path(data_dir) / STACK_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def remove_stack_file(data_dir: Path) -> None:
    try:
        (Path(data_dir) / STACK_FILE).unlink()
    except FileNotFoundError:
        pass

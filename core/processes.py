"""Child processes of ``callstream up``: free ports, start, stop, and no orphans.

Every server child (broker, object store, edge) is started by :func:`spawn`: in its own session (a
Ctrl-C in the terminal reaches only ``up``, which stops the children in order) and with
``PR_SET_PDEATHSIG`` = SIGKILL, so the kernel kills it when ``up`` dies, even by ``kill -9``. The
children's pids are also written to ``<data-dir>/children.json``; the next ``up`` on that dir stops any
that are still alive (:func:`stop_orphans`) before it starts its own.
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("callstream.processes")

CHILDREN_FILE = "children.json"
_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_free(host: str, port: int) -> bool:
    """True when ``host:port`` can be bound now (nothing else listens there)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def wait_for_port(host: str, port: int, timeout_s: float) -> None:
    """Block until ``host:port`` accepts TCP connections, or raise ``TimeoutError``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s:.1f}s") from None
            time.sleep(0.02)


def stop_process(
    process: subprocess.Popen[Any], grace_s: float, *, reap_s: float = 5.0, kill_group: bool = False
) -> bool:
    """SIGTERM ``process`` and wait ``grace_s`` for it; past that, SIGKILL it (its whole process group with
    ``kill_group``) and reap it within ``reap_s``. True when it exited on its own (or had already)."""
    if process.poll() is not None:
        return True
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace_s)
        return True
    except subprocess.TimeoutExpired:
        if kill_group:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.wait(reap_s)
        return False


def die_with_parent(parent_pid: int) -> None:
    """Make the kernel kill this process (SIGKILL) when its parent dies, even by ``kill -9``; exit now if
    the parent ``parent_pid`` is already gone (it died before prctl took effect). Children started by
    ``spawn`` run it between fork and exec; children started by ``multiprocessing`` at their start."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)


def _die_with(parent_pid: int) -> Callable[[], None]:
    def preexec() -> None:  # runs in the child between fork and exec
        die_with_parent(parent_pid)

    return preexec


def spawn(cmd: Sequence[str], *, log_path: Path | None = None, env: dict[str, str] | None = None,
          new_session: bool = True, die_with_parent: bool = True) -> subprocess.Popen[bytes]:
    """Start ``cmd`` as a server child of this process: output appended to ``log_path``; with
    ``die_with_parent`` killed by the kernel when this process dies. The death signal follows the thread
    that forked the child, so spawn from a thread that lives as long as the child should (the event
    loop's thread), never from a worker thread."""
    out: IO[bytes] | int = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            list(cmd), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=new_session, preexec_fn=_die_with(os.getpid()) if die_with_parent else None,
        )
    finally:
        if not isinstance(out, int):
            out.close()


# --- the children file: orphans of a killed `up` --------------------------------------------------
def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (tells a reused pid from the original)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def record_children(data_dir: Path, children: dict[str, int | None]) -> None:
    """Write ``{name: pid}`` of the running children (with their start times) to ``children.json``."""
    entries = [{"name": name, "pid": pid, "start_ticks": _start_ticks(pid)}
               for name, pid in children.items() if pid]
    path = data_dir / CHILDREN_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entries), encoding="utf-8")
    tmp.replace(path)


def stop_orphans(data_dir: Path, timeout_s: float = 10.0) -> list[str]:
    """SIGKILL the process group of every child listed in ``children.json`` that is still alive (a killed
    ``up`` on a kernel without the death signal, or a child that had not set it yet). Returns what was
    stopped, e.g. ``["broker (pid 123)"]``; removes the file."""
    path = data_dir / CHILDREN_FILE
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    stopped: list[str] = []
    for entry in entries:
        pid, ticks = int(entry.get("pid") or 0), entry.get("start_ticks")
        if pid <= 0 or ticks is None or _start_ticks(pid) != ticks or _zombie(pid):
            continue  # gone (or dead, not yet reaped), or the pid now belongs to another process
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
                break
            except (ProcessLookupError, PermissionError):
                continue
        deadline = time.monotonic() + timeout_s
        while _start_ticks(pid) == ticks and time.monotonic() < deadline:
            if _zombie(pid):
                break
            time.sleep(0.05)
        stopped.append(f"{entry.get('name', 'child')} (pid {pid})")
    path.unlink(missing_ok=True)
    return stopped


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class ChildProcess:
    """What a supervisor asks of a child it started: alive, its pid, and how it ended."""

    _process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        """The exit code once the process ended on its own (negative: killed by that signal)."""
        return self._process.poll() if self._process is not None else None

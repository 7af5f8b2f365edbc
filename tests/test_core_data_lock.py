"""One process at a time owns a data dir: the second holder is refused with the owner's pid."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.data_lock import LOCK_FILE, hold_data_dir
from core.errors import ConfigError

HOLD_IN_CHILD = """
import sys
from pathlib import Path
from core.data_lock import hold_data_dir
with hold_data_dir(Path(sys.argv[1]), refusal="busy"):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_a_second_holder_is_refused_naming_the_owner(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    child = subprocess.Popen([sys.executable, "-c", HOLD_IN_CHILD, str(data_dir)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, cwd=str(Path(__file__).parents[1]))
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=f"{data_dir} is owned by {child.pid}"):
            with hold_data_dir(data_dir, refusal="{data_dir} is owned by {owner}"):
                pass
    finally:
        child.communicate("\n", timeout=30)
    assert child.returncode == 0
    with hold_data_dir(data_dir, refusal="unused"):  # released by the child: ours now
        assert (data_dir / LOCK_FILE).read_text() == str(os.getpid())

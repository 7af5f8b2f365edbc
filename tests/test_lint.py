"""The code base passes ruff's correctness rules (pyflakes, syntax errors, bugbear): no unused imports,
undefined names or mutable default arguments slip in between reviews."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_correctness_rules_pass() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed: pip install -e '.[test]'")
    result = subprocess.run(
        [ruff, "check", "--no-cache", "--select", "F,E9,B", "core", "callstream", "ingest", "consumers", "schemas", "bench",
         "tests"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr

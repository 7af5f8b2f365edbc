"""README promises: the test command is what CI runs, and every setting is documented."""

from __future__ import annotations

import re
from pathlib import Path

from core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _shell_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, flags=re.S)


def test_ci_runs_exactly_the_readme_test_command() -> None:
    test_section = README.split("## Test it", 1)[1].split("\n## ", 1)[0]
    command = _shell_blocks(test_section)[0].strip()
    ci_lines = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    assert ci_lines == command.splitlines()


def test_run_command_installs_and_starts_the_stack() -> None:
    run_section = README.split("## Run it", 1)[1].split("\n## ", 1)[0]
    command = _shell_blocks(run_section)[0].strip()
    assert "pip install" in command and command.endswith("callstream up")


def test_every_setting_is_in_the_configuration_table() -> None:
    missing = [
        f"CALLSTREAM_{name.upper()}"
        for name in Settings.model_fields
        if f"CALLSTREAM_{name.upper()}" not in README
    ]
    assert missing == [], f"document these settings in README.md: {missing}"


def test_every_linked_document_exists() -> None:
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), f"README links to missing {target}"

"""The public command line: every contract command exists, answers --help, and an error is one line."""

from __future__ import annotations

import pytest

from callstream.cli import build_parser, main

COMMANDS = ("up", "edge", "consume", "migrate", "simulate", "sql", "bench", "replay", "reconcile", "erase",
            "topics", "schemas")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_answers_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert f"usage: callstream {command}" in capsys.readouterr().out


def test_the_parser_names_every_contract_command() -> None:
    parser = build_parser()
    subcommands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert set(COMMANDS) <= set(subcommands.choices)  # type: ignore[attr-defined]


def test_a_callstream_error_is_one_line_and_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "raw", "--from-offset", "3"]) == 2  # offsets need --partition
    err = capsys.readouterr().err.strip()
    assert err.startswith("callstream replay: ") and "--partition" in err and "\n" not in err

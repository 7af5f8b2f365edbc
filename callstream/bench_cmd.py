"""``callstream bench``: run the benchmarks in bench/ and print one table of figures against baselines.

Each benchmark is a script ``bench/<name>.py`` that measures callstream and its same-run baseline and
writes ``bench/results/<name>.json`` (keys: baseline_per_s, callstream_per_s, ratio, p50_ms, p99_ms,
rss_mb). This command runs them one after another (never concurrently: they share two cores) and
prints the summary.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from core.errors import ConfigError
from core.settings import Settings

BENCHMARKS = ("edge", "consumer", "e2e", "scaling", "storage")
COLUMNS = ("baseline_per_s", "callstream_per_s", "ratio", "p50_ms", "p99_ms", "rss_mb")


def bench_dir() -> Path:
    """bench/ of the source checkout (the package is installed from it), else of the working dir."""
    for candidate in (Path(__file__).resolve().parent.parent / "bench", Path.cwd() / "bench"):
        if candidate.is_dir():
            return candidate
    raise ConfigError("bench/ not found: run `callstream bench` from a callstream source checkout")


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "-" if value is None else str(value)


def summary_table(results: dict[str, dict[str, object]]) -> str:
    header = ["benchmark", *COLUMNS, "targets met"]
    rows = [header]
    for name, data in results.items():
        targets = data.get("targets_met")
        met = "-" if targets is None else ("yes" if targets is True else str(targets))
        rows.append([name, *(_fmt(data.get(col)) for col in COLUMNS), met])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


def main(args: argparse.Namespace, settings: Settings) -> int:
    root = bench_dir()
    names = list(args.names) or [n for n in BENCHMARKS if (root / f"{n}.py").exists()]
    failed = []
    results: dict[str, dict[str, object]] = {}
    for name in names:
        script = root / f"{name}.py"
        if not script.exists():
            raise ConfigError(f"no benchmark {name!r}: expected {script}")
        command = [sys.executable, str(script), *(["--quick"] if args.quick else [])]
        print(f"== {name}: {' '.join(command)}", flush=True)
        if subprocess.run(command, cwd=root.parent).returncode != 0:
            failed.append(name)
            continue
        result_file = root / "results" / f"{name}.json"
        if result_file.exists():
            results[name] = json.loads(result_file.read_text(encoding="utf-8"))
    if results:
        print()
        print(summary_table(results))
    if failed:
        print(f"benchmarks that failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0

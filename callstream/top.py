"""``callstream top``: the dashboard's figures in the terminal, refreshed in place (like ``vector top``).

Reads the JSON of the dashboard of the ``callstream up`` running on the data dir (``dashboard_url`` in
``stack.json``), so the figures are the page's: the same views, the same formatting.

    callstream top                    # refresh every 2 s until Ctrl-C
    callstream top --once --day 2024-03-12
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from core.credentials import read_stack_file
from core.errors import StoreUnavailable
from core.settings import Settings

CLEAR = "\x1b[H\x1b[2J"


def pct(value: Any) -> str:
    return "–" if value is None else f"{float(value) * 100:.1f}%"


def secs(value: Any) -> str:
    return "–" if value is None else f"{float(value):.1f} s"


def ms(value: Any) -> str:
    return "–" if value is None else f"{float(value):.1f} ms"


def count(value: Any) -> str:
    return "–" if value is None else str(round(float(value)))


def _table(header: list[str], rows: list[list[str]], right_from: int) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i >= right_from else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return [line(header), *(line(r) for r in rows)]


def render(live: dict[str, Any], calls: dict[str, Any], url: str) -> str:
    """One screen of figures from the dashboard's ``api/live`` and ``api/calls`` answers."""
    edge, consumer = live["edge"], live["consumer"]
    last = live["history"][-1] if live["history"] else None
    when = datetime.fromtimestamp(live["time"], UTC).strftime("%H:%M:%S UTC")
    state = "paused" if consumer["paused"] else "running"
    out = [
        f"callstream top  {url}  {when}  edge {'up' if edge['up'] else 'NOT ANSWERING'}, consumer {state}",
        "",
        "INGEST (since the edge started)",
    ]
    pushes = edge["pushes"]
    out += ["  " + line for line in _table(
        ["service/kind", "accepted", "per s"],
        [[k, count(v), f"{last['pushes_per_s'].get(k, 0):.1f}" if last else "–"] for k, v in sorted(pushes.items())],
        1,
    )]
    answers = edge["answers"]
    out += [
        f"  answers: 200 {count(answers['200'])}   4xx {count(answers['4xx'])}   503 {count(answers['503'])}",
        (f"  ack p50/p99 {ms(edge['ack_ms']['p50'])} / {ms(edge['ack_ms']['p99'])}   "
         f"consumer lag {count(consumer['lag'])} records   receipt->row p50/p99 "
         f"{ms(consumer['receipt_to_row_ms']['p50'])} / {ms(consumer['receipt_to_row_ms']['p99'])}"),
    ]
    dead = [f"edge 4xx {k} {count(v)}" for k, v in sorted(edge["refused"].items())]
    dead += [f"edge 503 {k} {count(v)}" for k, v in sorted(edge["errors"].items())]
    dead += [f"consumer {k} {count(v)}" for k, v in sorted(consumer["discarded"].items())]
    out.append("  dead letters and errors: " + (", ".join(dead) if dead else "none"))
    out += ["", f"CALLS ON {calls['day']} (kpi_daily; latest day with calls: {calls['latest_day'] or 'none'})"]
    rows = [[r["app_key"], r["service"], count(r["attempts"]), count(r["answered"]), pct(r["asr"]), pct(r["ner"]),
             secs(r["acd_seconds"]), secs(r["pdd_p50_seconds"]), secs(r["pdd_p95_seconds"])] for r in calls["daily"]]
    header = ["app", "service", "attempts", "answered", "ASR", "NER", "ACD", "PDD p50", "PDD p95"]
    out += ["  " + line for line in _table(header, rows, 2)] if rows else ["  no calls on this day"]
    out += ["", "TOP FAILURE CAUSES"]
    out += [f"  {count(c['calls']):>6}  {c['failure_reason']} ({c['failure_category']})" for c in calls["causes"]]
    if not calls["causes"]:
        out.append("  none")
    failed = [f"{r['stage']}/{r['reason']} {count(r['events'])}" for r in calls["failed"]]
    out += ["", "FAILED EVENTS, LAST 24 H: " + (", ".join(failed) if failed else "none")]
    return "\n".join(out)


def dashboard_url(settings: Settings) -> str:
    info = read_stack_file(settings.data_dir)
    url = str((info or {}).get("dashboard_url") or "")
    if not url:
        raise StoreUnavailable(
            f"no running `callstream up` with a dashboard on {settings.data_dir}: start it, or pass --data-dir"
        )
    return url


def fetch(client: httpx.Client, url: str, day: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        live = client.get(url + "api/live").raise_for_status().json()
        calls = client.get(url + "api/calls", params={"day": day} if day else None).raise_for_status().json()
    except httpx.HTTPError as exc:
        raise StoreUnavailable(f"the dashboard at {url} did not answer: {exc}") from exc
    return live, calls


def main(args: argparse.Namespace, settings: Settings) -> int:
    url = dashboard_url(settings)
    with httpx.Client(timeout=30) as client:
        if args.once:
            print(render(*fetch(client, url, args.day), url), flush=True)
            return 0
        tty = sys.stdout.isatty()
        while True:
            screen = render(*fetch(client, url, args.day), url)
            sys.stdout.write((CLEAR if tty else "") + screen + "\n\n")
            sys.stdout.flush()
            time.sleep(max(0.5, args.every_s))

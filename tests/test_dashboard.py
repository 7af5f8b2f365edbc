"""The dashboard `callstream up` serves: its JSON equals what `callstream sql` returns for the same window,
its live figures equal the edge's own counters, and the page renders those values in headless Chromium.

One `up` (free ports, temporary data dir) is driven by `callstream simulate` once for the module.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from callstream.dashboard import STATIC_DIR
from callstream.live_metrics import histogram_quantile
from callstream.sim_calls import generate_calls
from consumers.numbers import PEPPER_FILE, keyed_hash, read_pepper
from core.broker import free_port
from tests.browser import Chromium, chromium_binary

CLI = [sys.executable, "-m", "callstream.cli"]
SEED, CALLS = 11, 120


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSTREAM_")}
    env["CALLSTREAM_SHUTDOWN_GRACE_S"] = "3"
    return env


def _cli(args: list[str], timeout_s: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout_s, env=_env())


@dataclass
class Running:
    data_dir: Path
    info: dict[str, Any]
    banner: str
    simulate_out: str

    @property
    def url(self) -> str:
        return str(self.info["dashboard_url"])

    def sql(self, query: str) -> list[dict[str, Any]]:
        """`callstream sql --format JSON` of ``query``: the rows an analyst gets."""
        out = _cli(["sql", "--data-dir", str(self.data_dir), "--format", "JSON", query], 60)
        assert out.returncode == 0, out.stderr
        return list(json.loads(out.stdout)["data"])

    def get(self, path: str, **params: str) -> Any:
        response = httpx.get(self.url + path, params=params, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    base = tmp_path_factory.mktemp("dashboard")
    data_dir, log = base / "data", base / "up.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [*CLI, "up", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(free_port()),
             "--query-port", str(free_port()), "--metrics-port", str(free_port())],
            stdout=out, stderr=subprocess.STDOUT, env=_env(),
        )
    try:
        deadline = time.monotonic() + 90
        while not (data_dir / "stack.json").exists():
            assert process.poll() is None, f"up exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"up did not start: {log.read_text()}"
            time.sleep(0.1)
        info = json.loads((data_dir / "stack.json").read_text())
        sim = _cli(["simulate", "--data-dir", str(data_dir), "--verify", "--count", str(CALLS), "--seed", str(SEED),
                    "--bad-fraction", "0.05", "--verify-timeout", "90"])
        assert sim.returncode == 0 and "verify: OK" in sim.stdout, sim.stdout + sim.stderr
        yield Running(data_dir, info, log.read_text(), sim.stdout)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def test_url_in_banner_and_stack_file(stack: Running) -> None:
    assert stack.url == f"{stack.info['query_url']}dashboard/"
    assert f"Dashboard        : {stack.url}" in stack.banner
    page = httpx.get(stack.url, timeout=10)
    assert page.status_code == 200 and "<svg" in page.text
    assert httpx.get(stack.url.rstrip("/"), timeout=10, follow_redirects=True).url == stack.url


def test_page_needs_nothing_from_the_network() -> None:
    for asset in STATIC_DIR.iterdir():
        text = asset.read_text(encoding="utf-8").replace("http://www.w3.org/2000/svg", "")  # a name, not a fetch
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.IGNORECASE), asset.name
        assert "@import" not in text and "<script src=\"http" not in text


def test_calls_sections_equal_callstream_sql(stack: Running) -> None:
    latest = stack.get("api/calls")
    day = latest["day"]
    assert latest["latest_day"] == day
    data = stack.get("api/calls", day=day)
    assert sum(int(r["attempts"]) for r in data["daily"]) == CALLS
    daily = stack.sql(f"SELECT * FROM callstream.kpi_daily WHERE day = toDate('{day}') ORDER BY app_key, service")
    assert data["daily"] == daily and {"asr", "ner", "acd_seconds", "pdd_p50_seconds", "pdd_p95_seconds"} <= set(daily[0])
    assert data["hourly"] == stack.sql(
        f"SELECT * FROM callstream.kpi_hourly WHERE toDate(hour) = '{day}' ORDER BY hour, app_key, service"
    )
    causes = stack.sql(
        "SELECT failure_category, failure_reason, sum(calls) AS calls, max(user_caused) AS user_caused "
        f"FROM callstream.failure_causes WHERE day = '{day}' GROUP BY failure_category, failure_reason "
        "ORDER BY calls DESC, failure_reason LIMIT 10"
    )
    assert causes and data["causes"] == causes
    assert all(c["failure_reason"] and not c["failure_reason"].isdigit() for c in causes)  # words, not codes
    assert data["failed"] == stack.sql(
        "SELECT stage, reason, count() AS events, max(failed_at) AS last_failed_at FROM callstream.failed_events "
        "FINAL WHERE received_at >= now() - INTERVAL 1 DAY GROUP BY stage, reason ORDER BY events DESC, stage, reason"
    )
    assert data["calls"] == stack.sql(
        "SELECT session_id, call_time, app_key, service, service_type, is_answered, talk_seconds, failure_reason "
        f"FROM callstream.call_facts WHERE day = '{day}' ORDER BY call_time DESC, session_id LIMIT 25"
    )
    empty = stack.get("api/calls", day="1999-01-01")
    assert empty["daily"] == [] and empty["causes"] == [] and empty["latest_day"] == day
    bad = httpx.get(stack.url + "api/calls", params={"day": "yesterday"}, timeout=10)
    assert bad.status_code == 400 and "YYYY-MM-DD" in bad.json()["error"]


def test_timeline_found_by_the_platforms_session_id_and_numbers_stay_hashed(stack: Running) -> None:
    call = next(c for c in generate_calls(SEED, CALLS) if c.session_id.startswith("+") and c.cdr.get("callerNum"))
    pepper = read_pepper("", stack.data_dir / PEPPER_FILE)
    data = stack.get("api/timeline", session_id=call.session_id)
    assert data["session_id"] != call.session_id and "h:" in data["session_id"]
    rows = stack.sql(
        "SELECT time, seq, source, kind, leg, caller, called, code, detail, failure_category, app_key, service "
        f"FROM callstream.call_timeline WHERE session_id = '{data['session_id']}' ORDER BY time, seq"
    )
    assert len(rows) == len(call.events) + 1 and data["rows"] == rows
    text = json.dumps(data)
    caller = call.cdr["callerNum"]
    assert caller not in text and keyed_hash(caller, pepper) in text
    assert stack.get("api/timeline", session_id=data["session_id"])["rows"] == rows  # the stored form works too


def _edge_counters(url: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(url, timeout=10).text):
        for sample in family.samples:
            if sample.name == "callstream_edge_received_events_total":
                out["pushes"] = out.get("pushes", 0) + sample.value
            elif sample.name == "callstream_edge_discarded_events_total":
                out["refused"] = out.get("refused", 0) + sample.value
    return out


def test_live_figures_equal_the_edges_counters_and_what_simulate_saw(stack: Running) -> None:
    live = stack.get("api/live")
    edge = _edge_counters(str(stack.info["edge_metrics_url"]))
    assert live["edge"]["up"] and live["consumer"]["up"]
    assert sum(live["edge"]["pushes"].values()) == edge["pushes"]
    assert sum(live["edge"]["refused"].values()) == edge["refused"] > 0
    ok = int(re.search(r"200s (\d+)", stack.simulate_out).group(1))  # type: ignore[union-attr]
    rejected = int(re.search(r"4xx (\d+)", stack.simulate_out).group(1))  # type: ignore[union-attr]
    assert live["edge"]["answers"]["200"] == ok and live["edge"]["answers"]["4xx"] == rejected
    assert live["edge"]["ack_ms"]["p50"] is not None and live["edge"]["ack_ms"]["p50"] <= live["edge"]["ack_ms"]["p99"]
    assert live["consumer"]["lag"] == 0 and sum(live["consumer"]["loaded"].values()) > CALLS
    time.sleep(1.1)
    again = stack.get("api/live")
    assert len(again["history"]) >= 1 and again["history"][-1]["answers_per_s"]["200"] == 0  # no traffic now


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    buckets = {0.1: 50.0, 0.5: 90.0, 1.0: 100.0, float("inf"): 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.3)
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.75)
    assert histogram_quantile(0.99, {0.1: 1.0, float("inf"): 10.0}) == 0.1  # in +Inf: the last finite bound
    assert histogram_quantile(0.5, {0.1: 0.0, float("inf"): 0.0}) is None


def _pct(value: Any) -> str:
    return "–" if value is None else f"{float(value) * 100:.1f}%"


def _secs(value: Any) -> str:
    return "–" if value is None else f"{float(value):.1f} s"


def test_page_in_headless_chromium_shows_the_kpis_sql_returns(stack: Running, tmp_path: Path) -> None:
    binary = chromium_binary()
    if binary is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    day = stack.get("api/calls")["day"]
    expected = stack.sql(f"SELECT * FROM callstream.kpi_daily WHERE day = '{day}' ORDER BY app_key, service")

    async def drive() -> tuple[Any, Any, Any, list[str]]:
        async with Chromium(binary, tmp_path / "profile") as browser:
            await browser.open(stack.url)
            await browser.wait_for(f"document.body.dataset.calls === '{day}' && document.body.dataset.live", 60)
            cells = await browser.evaluate(
                "[...document.querySelectorAll('#kpi-daily tbody tr')].map((tr) => Object.fromEntries("
                "[...tr.cells].map((td) => [td.dataset.field, [td.dataset.value, td.textContent]])))"
            )
            page = await browser.evaluate(
                "({causes: document.querySelector('#causes').innerText, total: "
                "document.querySelector('#push-total').textContent, ok: document.querySelector('#answers-200')"
                ".textContent, bars: document.querySelectorAll('#chart-hourly rect').length})"
            )
            await browser.evaluate("document.querySelector('#recent tbody tr').click()")
            timeline = await browser.wait_for("Number(document.body.dataset.timeline)", 30)
            await browser.screenshot(tmp_path / "dashboard.png")
            fetched = [u for u in browser.requests if not u.startswith("data:")]  # data: = the browser's own icons
            assert fetched and all(u.startswith(stack.url) for u in fetched), [u for u in fetched if not u.startswith(stack.url)]
            return cells, page, timeline, browser.console

    cells, page, timeline, console = asyncio.run(drive())
    assert not [line for line in console if line.startswith("exception")], console
    assert len(cells) == len(expected) > 0
    for shown, row in zip(cells, expected, strict=True):
        assert shown["app_key"][0] == row["app_key"] and shown["service"][0] == row["service"]
        assert shown["attempts"] == [str(row["attempts"]), str(row["attempts"])]
        assert shown["answered"][1] == str(row["answered"])
        for field, render in (("asr", _pct), ("ner", _pct), ("acd_seconds", _secs), ("pdd_p50_seconds", _secs),
                              ("pdd_p95_seconds", _secs)):
            value = row[field]
            assert shown[field] == ["" if value is None else str(value), render(value)], field
    causes = stack.sql(f"SELECT failure_reason FROM callstream.failure_causes WHERE day = '{day}'")
    assert all(c["failure_reason"] in page["causes"] for c in causes)
    live = stack.get("api/live")
    assert page["total"] == f"{int(sum(live['edge']['pushes'].values()))} accepted"
    assert page["ok"] == str(int(live["edge"]["answers"]["200"]))
    assert page["bars"] >= 24  # one bar per hour of the day plus the legend
    assert timeline >= 2
    shot = tmp_path / "dashboard.png"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_top_prints_the_same_kpis_in_the_terminal(stack: Running) -> None:
    day = stack.get("api/calls")["day"]
    out = _cli(["top", "--once", "--data-dir", str(stack.data_dir), "--day", day], 60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for row in stack.sql(f"SELECT * FROM callstream.kpi_daily WHERE day = '{day}'"):
        cells = [row["app_key"], row["service"], str(row["attempts"]), str(row["answered"]), _pct(row["asr"]),
                 _pct(row["ner"]), _secs(row["acd_seconds"]), _secs(row["pdd_p50_seconds"]),
                 _secs(row["pdd_p95_seconds"])]
        assert any(re.split(r"\s{2,}", line.strip()) == cells for line in lines), cells
    live = stack.get("api/live")
    assert f"answers: 200 {int(live['edge']['answers']['200'])}" in out.stdout
    gone = _cli(["top", "--once", "--data-dir", str(stack.data_dir / "elsewhere")], 60)
    assert gone.returncode == 2 and "no running `callstream up`" in gone.stderr

// The callstream dashboard: polls api/live (edge and consumer metrics) and api/calls (the KPI views),
// renders tables and SVG charts, and shows one call's timeline on click or search.
// Every KPI cell keeps the value the view returned in data-value; the text is that value formatted.
"use strict";

const LIVE_EVERY_MS = 2000;
const CALLS_EVERY_MS = 10000;
const state = { day: null, session: null };
const $ = (id) => document.getElementById(id);

const fmt = {
  count: (v) => (v === null || v === undefined ? "–" : String(Math.round(Number(v)))),
  pct: (v) => (v === null || v === undefined ? "–" : (Number(v) * 100).toFixed(1) + "%"),
  secs: (v) => (v === null || v === undefined ? "–" : Number(v).toFixed(1) + " s"),
  ms: (v) => (v === null || v === undefined ? "–" : Number(v).toFixed(1) + " ms"),
  rate: (v) => (v === null || v === undefined ? "–" : Number(v).toFixed(1)),
  text: (v) => (v === null || v === undefined || v === "" ? "–" : String(v)),
  // a keyed hash (h: + 32 hex) shown by its first 8 hex digits; the cell's title keeps the whole value
  hashed: (v) => (v === null || v === undefined || v === "" ? "–" : String(v).replace(/h:([0-9a-f]{8})[0-9a-f]{24}/g, "h:$1…")),
};

async function getJSON(path) {
  const response = await fetch(path, { cache: "no-store" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

// columns: [{key, title, format, num}]; rows: objects. Cells carry data-field and data-value.
function fillTable(table, columns, rows, options = {}) {
  table.replaceChildren();
  const head = table.createTHead().insertRow();
  for (const col of columns) {
    const th = document.createElement("th");
    th.textContent = col.title;
    if (col.num) th.className = "num";
    head.appendChild(th);
  }
  const body = table.createTBody();
  if (!rows.length) {
    const cell = body.insertRow().insertCell();
    cell.colSpan = columns.length;
    cell.className = "empty";
    cell.textContent = options.empty || "nothing yet";
    return;
  }
  for (const row of rows) {
    const tr = body.insertRow();
    for (const [k, v] of Object.entries(options.rowData ? options.rowData(row) : {})) tr.dataset[k] = v;
    for (const col of columns) {
      const td = tr.insertCell();
      const value = row[col.key];
      td.dataset.field = col.key;
      td.dataset.value = value === null || value === undefined ? "" : String(value);
      td.textContent = (col.format || fmt.text)(value, row);
      if (col.num) td.className = "num";
      if (col.title_attr) td.title = String(value);
    }
    if (options.onClick) {
      tr.className = "click";
      tr.addEventListener("click", () => options.onClick(row, tr));
    }
  }
}

function sum(values) {
  return Object.values(values || {}).reduce((a, b) => a + b, 0);
}

function renderLive(live) {
  const edge = live.edge, consumer = live.consumer;
  const last = live.history.length ? live.history[live.history.length - 1] : null;
  $("edge-status").textContent = edge.up ? "edge up" : "edge not answering";
  $("edge-status").className = "badge " + (edge.up ? "up" : "down");
  const paused = consumer.paused > 0;
  $("consumer-status").textContent = !consumer.up ? "consumer ?" : paused ? "consumer paused" : "consumer running";
  $("consumer-status").className = "badge " + (consumer.up && !paused ? "up" : "down");
  $("updated").textContent = "updated " + new Date(live.time * 1000).toLocaleTimeString();

  $("push-rate").textContent = last ? fmt.rate(sum(last.pushes_per_s)) : "–";
  $("push-total").textContent = fmt.count(sum(edge.pushes)) + " accepted";
  for (const cls of ["200", "4xx", "503"]) {
    $("answers-" + cls).textContent = fmt.count(edge.answers[cls]);
    $("answers-" + cls + "-rate").textContent = last ? fmt.rate(last.answers_per_s[cls] || 0) + " / s" : "";
  }
  $("ack").textContent = `${fmt.ms(edge.ack_ms.p50)} / ${fmt.ms(edge.ack_ms.p99)}`;
  $("ack-window").textContent = `last ${Math.round(edge.ack_ms.window_s)} s: ` +
    `${fmt.ms(edge.ack_ms.p50_window)} / ${fmt.ms(edge.ack_ms.p99_window)}`;
  $("lag").textContent = fmt.count(consumer.lag) + " records";
  $("loaded").textContent = fmt.count(sum(consumer.loaded)) + " rows loaded";
  const row = consumer.receipt_to_row_ms;
  $("row-latency").textContent = `${fmt.ms(row.p50)} / ${fmt.ms(row.p99)}`;
  $("row-window").textContent = `last minute: ${fmt.ms(row.p50_window)} / ${fmt.ms(row.p99_window)}`;

  const kinds = Object.keys(edge.pushes).sort();
  const services = [...new Set(kinds.map((k) => k.split("/")[0]))];
  const byService = (p, service) => kinds.filter((k) => k.startsWith(service + "/"))
    .reduce((total, k) => total + (p.pushes_per_s[k] || 0), 0);
  const rate = (k) => (last ? last.pushes_per_s[k] || 0 : null);
  fillTable($("pushes"), [
    { key: "kind", title: "service / kind" },
    { key: "total", title: "accepted", num: true, format: fmt.count },
    { key: "per_s", title: "per s", num: true, format: fmt.rate },
  ], kinds.map((k) => ({ kind: k, total: edge.pushes[k], per_s: rate(k) })), { empty: "no pushes yet" });

  const dead = [
    ...Object.entries(edge.refused).map(([k, v]) => ({ where: "edge 4xx → dead letter", reason: k, count: v })),
    ...Object.entries(edge.errors).map(([k, v]) => ({ where: "edge 503", reason: k, count: v })),
    ...Object.entries(consumer.discarded).map(([k, v]) => ({ where: "consumer, not loaded", reason: k, count: v })),
    ...Object.entries(consumer.errors).map(([k, v]) => ({ where: "consumer error", reason: k, count: v })),
  ].sort((a, b) => b.count - a.count);
  fillTable($("dead"), [
    { key: "where", title: "where" }, { key: "reason", title: "reason" },
    { key: "count", title: "count", num: true, format: fmt.count },
  ], dead, { empty: "none" });

  const history = live.history;
  const series = (pick) => history.map((p) => [p.t, pick(p)]);
  Charts.lines($("chart-pushes"), services.map((svc) => ({ name: svc, points: series((p) => byService(p, svc)) })), "/s");
  Charts.lines($("chart-answers"), ["200", "4xx", "503"].map((c) => ({
    name: c, points: series((p) => p.answers_per_s[c] || 0) })), "/s");
  Charts.lines($("chart-ack"), [
    { name: "p50", points: series((p) => p.ack_p50_ms) }, { name: "p99", points: series((p) => p.ack_p99_ms) },
  ], " ms");
  Charts.lines($("chart-lag"), [
    { name: "lag", points: series((p) => p.lag) }, { name: "rows/s", points: series((p) => p.rows_per_s) },
  ], "");
  document.body.dataset.live = "1";
}

const KPI_COLUMNS = [
  { key: "attempts", title: "attempts", num: true, format: fmt.count },
  { key: "answered", title: "answered", num: true, format: fmt.count },
  { key: "asr", title: "ASR", num: true, format: fmt.pct },
  { key: "ner", title: "NER", num: true, format: fmt.pct },
  { key: "acd_seconds", title: "ACD", num: true, format: fmt.secs },
  { key: "pdd_p50_seconds", title: "PDD p50", num: true, format: fmt.secs },
  { key: "pdd_p95_seconds", title: "PDD p95", num: true, format: fmt.secs },
];
const APP_COLUMNS = [{ key: "app_key", title: "app" }, { key: "service", title: "service" }];

function renderCalls(data) {
  state.day = data.day;
  $("day").value = data.day;
  $("day-note").textContent = data.latest_day ? `latest day with calls: ${data.latest_day}` : "no calls stored yet";
  const appData = (r) => ({ app: r.app_key, service: r.service });
  // platform refusals (frequency control, blacklist) sit outside ASR/NER where the views count them apart
  const refused = data.daily.some((r) => "refused" in r) ?
    [{ key: "refused", title: "refused", num: true, format: fmt.count }] : [];
  fillTable($("kpi-daily"), [...APP_COLUMNS, ...KPI_COLUMNS.slice(0, 1), ...refused, ...KPI_COLUMNS.slice(1)], data.daily,
    { empty: "no calls on this day", rowData: appData });
  fillTable($("kpi-hourly"), [{ key: "hour", title: "hour (UTC)", format: (v) => String(v).slice(11, 16) },
    ...APP_COLUMNS, ...KPI_COLUMNS], data.hourly,
  { empty: "no calls on this day", rowData: (r) => ({ ...appData(r), hour: r.hour }) });

  const hours = new Map();
  for (const r of data.hourly) {
    const h = hours.get(r.hour) || { attempts: 0, answered: 0 };
    h.attempts += Number(r.attempts);
    h.answered += Number(r.answered);
    hours.set(r.hour, h);
  }
  const day = [...Array(24).keys()].map((h) => hours.get(`${data.day} ${String(h).padStart(2, "0")}:00:00`));
  Charts.barsWithRatio($("chart-hourly"),
    data.hourly.length ? day.map((h, i) => ({ label: String(i).padStart(2, "0"), value: h ? h.attempts : 0 })) : [],
    day.map((h) => (h && h.attempts ? h.answered / h.attempts : null)), ["attempts", "ASR"]);

  const most = Math.max(1, ...data.causes.map((c) => Number(c.calls)));
  fillTable($("causes"), [
    { key: "failure_reason", title: "cause" }, { key: "failure_category", title: "category" },
    { key: "calls", title: "calls", num: true, format: fmt.count },
    { key: "bar", title: "", format: (v, r) => "" },
  ], data.causes, { empty: "no failed calls on this day" });
  $("causes").querySelectorAll("td[data-field=bar]").forEach((td, i) => {
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = Math.round((100 * Number(data.causes[i].calls)) / most) + "px";
    td.appendChild(bar);
  });
  fillTable($("failed"), [
    { key: "stage", title: "stage" }, { key: "reason", title: "reason" },
    { key: "events", title: "events", num: true, format: fmt.count },
    { key: "last_failed_at", title: "last" },
  ], data.failed, { empty: "no failed events in the last 24 h" });
  fillTable($("recent"), [
    { key: "call_time", title: "time (UTC)", format: (v) => String(v).slice(11, 19) },
    { key: "service_type", title: "type" },
    { key: "is_answered", title: "outcome", format: (v, r) => (Number(v) ? `answered ${r.talk_seconds} s` : r.failure_reason) },
    { key: "session_id", title: "session", format: fmt.hashed, title_attr: true },
  ], data.calls, { empty: "no calls on this day", onClick: (r) => showTimeline(r.session_id) });
  $("sql").textContent = Object.entries(data.sql).map(([k, v]) => `-- ${k}\n${v}`).join("\n\n");
  $("calls-error").hidden = true;
  document.body.dataset.calls = data.day;
}

async function showTimeline(sessionId) {
  state.session = sessionId;
  try {
    const data = await getJSON("api/timeline?session_id=" + encodeURIComponent(sessionId));
    $("timeline-title").textContent = `Timeline of ${fmt.hashed(data.session_id)}`;
    $("timeline-title").title = data.session_id;
    fillTable($("timeline"), [
      { key: "time", title: "time (UTC)", format: (v) => String(v).slice(11, 23) },
      { key: "source", title: "source" }, { key: "kind", title: "kind" }, { key: "leg", title: "leg" },
      { key: "caller", title: "caller", format: fmt.hashed, title_attr: true },
      { key: "called", title: "called", format: fmt.hashed, title_attr: true },
      { key: "code", title: "code" }, { key: "detail", title: "detail" },
    ], data.rows, { empty: "no such call in the store" });
    document.body.dataset.timeline = String(data.rows.length);
  } catch (error) {
    $("timeline-title").textContent = "Timeline: " + error.message;
  }
}

async function pollLive() {
  try {
    renderLive(await getJSON("api/live"));
  } catch (error) {
    $("edge-status").textContent = "dashboard: " + error.message;
    $("edge-status").className = "badge down";
  }
  setTimeout(pollLive, LIVE_EVERY_MS);
}

async function loadCalls() {
  try {
    renderCalls(await getJSON("api/calls" + (state.day ? "?day=" + state.day : "")));
  } catch (error) {
    $("calls-error").textContent = error.message;
    $("calls-error").hidden = false;
  }
}

async function pollCalls() {
  if (!document.hidden || !document.body.dataset.calls) await loadCalls();  // a hidden tab costs the store nothing
  setTimeout(pollCalls, CALLS_EVERY_MS);
}

$("day").addEventListener("change", () => { state.day = $("day").value || null; loadCalls(); });
$("search").addEventListener("submit", (event) => {
  event.preventDefault();
  if ($("session").value.trim()) showTimeline($("session").value.trim());
});
const initial = new URLSearchParams(location.search);
if (initial.get("day")) state.day = initial.get("day");
if (initial.get("session_id")) showTimeline(initial.get("session_id"));
pollLive();
pollCalls();

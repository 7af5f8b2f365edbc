// Small hand-made SVG charts for the dashboard: a multi-line time chart and a bar chart with a ratio line.
// No library: each chart's viewBox is the element's own size in pixels, so text is never stretched.
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const H = 170, LEFT = 44, RIGHT = 44, TOP = 8, BOTTOM = 40;
  let W = 600;
  const PALETTE = ["#4a78c2", "#2e8b57", "#d68910", "#c0392b", "#8e44ad", "#16a085", "#7f8c8d", "#d35400"];

  function node(name, attrs, parent, text) {
    const el = document.createElementNS(NS, name);
    for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, value);
    if (text !== undefined) el.textContent = text;
    if (parent) parent.appendChild(el);
    return el;
  }

  function reset(svg) {
    W = Math.max(300, Math.round(svg.getBoundingClientRect().width) || 600);
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    while (svg.firstChild) svg.removeChild(svg.firstChild);
  }

  function niceMax(value) {
    if (!(value > 0)) return 1;
    const step = Math.pow(10, Math.floor(Math.log10(value)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= value) return m * step;
    return 10 * step;
  }

  function short(value) {
    if (value >= 1e6) return (value / 1e6).toFixed(1) + "M";
    if (value >= 1e3) return (value / 1e3).toFixed(1) + "k";
    return Number.isInteger(value) ? String(value) : value.toFixed(2);
  }

  function frame(svg, yMax, unit) {
    const bottom = H - BOTTOM;
    node("line", { x1: LEFT, y1: bottom, x2: W - RIGHT, y2: bottom, class: "axis" }, svg);
    node("line", { x1: LEFT, y1: TOP, x2: W - RIGHT, y2: TOP, class: "axis", "stroke-dasharray": "2 3" }, svg);
    node("text", { x: LEFT - 4, y: TOP + 8, "text-anchor": "end" }, svg, short(yMax) + (unit || ""));
    node("text", { x: LEFT - 4, y: bottom, "text-anchor": "end" }, svg, "0");
  }

  function legend(svg, names) {
    let x = LEFT, y = H - 14;
    names.forEach((name, i) => {
      const width = 22 + 6 * name.length;
      if (x + width > W && x > LEFT) { x = LEFT; y += 11; }  // wrap onto a second line
      node("rect", { x, y: y - 7, width: 10, height: 8, fill: PALETTE[i % PALETTE.length] }, svg);
      node("text", { x: x + 13, y }, svg, name);
      x += width;
    });
  }

  // consecutive points further apart than GAP_S seconds are not joined: nobody sampled in between
  const GAP_S = 10;
  function segments(points) {
    const out = [];
    for (const p of points) {
      if (!out.length || p[0] - out[out.length - 1].at(-1)[0] > GAP_S) out.push([]);
      out[out.length - 1].push(p);
    }
    return out;
  }

  function empty(svg, message) {
    node("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, svg, message);
  }

  // series: [{name, points: [[t, value], ...]}] with t in seconds; null values break nothing (skipped).
  function lines(svg, series, unit) {
    reset(svg);
    const all = series.flatMap((s) => s.points.filter((p) => p[1] !== null && p[1] !== undefined));
    if (all.length < 2) { empty(svg, "collecting samples…"); return; }
    const t0 = Math.min(...all.map((p) => p[0])), t1 = Math.max(...all.map((p) => p[0]));
    const yMax = niceMax(Math.max(...all.map((p) => p[1])));
    const x = (t) => LEFT + ((t - t0) / Math.max(1, t1 - t0)) * (W - LEFT - RIGHT);
    const y = (v) => H - BOTTOM - (v / yMax) * (H - BOTTOM - TOP);
    frame(svg, yMax, unit);
    node("text", { x: LEFT, y: H - BOTTOM + 12 }, svg, new Date(t0 * 1000).toLocaleTimeString());
    node("text", { x: W - RIGHT, y: H - BOTTOM + 12, "text-anchor": "end" }, svg, new Date(t1 * 1000).toLocaleTimeString());
    series.forEach((s, i) => {
      const pts = s.points.filter((p) => p[1] !== null && p[1] !== undefined);
      for (const part of segments(pts)) {
        node("polyline", {
          points: part.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" "),
          fill: "none", stroke: PALETTE[i % PALETTE.length], "stroke-width": 1.6,
        }, svg);
      }
    });
    legend(svg, series.map((s) => s.name));
  }

  // bars: [{label, value}]; ratio: same length, values 0..1 or null (drawn against the right axis).
  function barsWithRatio(svg, bars, ratio, names) {
    reset(svg);
    if (!bars.length) { empty(svg, "no calls on this day"); return; }
    const yMax = niceMax(Math.max(...bars.map((b) => b.value)));
    const slot = (W - LEFT - RIGHT) / bars.length;
    const y = (v) => H - BOTTOM - (v / yMax) * (H - BOTTOM - TOP);
    const yr = (v) => H - BOTTOM - v * (H - BOTTOM - TOP);
    frame(svg, yMax, "");
    node("text", { x: W - RIGHT + 4, y: TOP + 8 }, svg, "100%");
    node("text", { x: W - RIGHT + 4, y: H - BOTTOM }, svg, "0%");
    bars.forEach((b, i) => {
      const bx = LEFT + i * slot + slot * 0.15;
      const rect = node("rect", { x: bx, y: y(b.value), width: slot * 0.7, height: H - BOTTOM - y(b.value),
        fill: PALETTE[0], opacity: 0.75 }, svg);
      node("title", {}, rect, `${b.label}: ${b.value}`);
      if (bars.length <= 24 || i % 2 === 0) {
        node("text", { x: bx + slot * 0.35, y: H - BOTTOM + 12, "text-anchor": "middle" }, svg, b.label);
      }
    });
    // the ratio line joins neighbouring slots only: an hour without calls breaks it
    const pts = ratio.map((v, i) => (v === null ? null : [i, LEFT + (i + 0.5) * slot, yr(v)])).filter(Boolean);
    const runs = [];
    for (const p of pts) {
      if (!runs.length || p[0] !== runs[runs.length - 1].at(-1)[0] + 1) runs.push([]);
      runs[runs.length - 1].push(p);
    }
    for (const run of runs) {
      node("polyline", { points: run.map((p) => `${p[1].toFixed(1)},${p[2].toFixed(1)}`).join(" "),
        fill: "none", stroke: PALETTE[1], "stroke-width": 2 }, svg);
    }
    pts.forEach((p) => node("circle", { cx: p[1], cy: p[2], r: 2.5, fill: PALETTE[1] }, svg));
    legend(svg, names);
  }

  return { lines, barsWithRatio };
})();

// Charts over time for the Analytics and Capacity pages, drawn as inline SVG with
// svg() (no HTML parsed from strings, no style attributes: the CSP allows neither):
// lineChart() draws lines of {t, v} points (a null v breaks the line) on a linear or log
// axis, with horizontal and vertical marks; rangeBars() draws one p50/p99 bar pair per
// row. Each line carries its values in data-values (and its count of points in
// data-points) so a test can read what was drawn. The views fetch; these only draw.

import { svg } from "./dom.js";

const WIDTH = 640;
const HEIGHT = 200;
const PAD = { left: 58, right: 16, top: 12, bottom: 24 };

function niceCeiling(n) {
  const magnitude = 10 ** Math.floor(Math.log10(n));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * magnitude >= n) return step * magnitude;
  return 10 * magnitude;
}

/** The y axis: a scale function and its ticks, linear from 0 or log10 by decades. */
function yAxis(values, log, plotH) {
  const positive = values.filter((v) => v !== null && v > 0);
  if (log && positive.length) {
    const lo = 10 ** Math.floor(Math.log10(Math.min(...positive)));
    const hi = 10 ** Math.max(Math.ceil(Math.log10(Math.max(...positive))), Math.log10(lo) + 1);
    const span = Math.log10(hi) - Math.log10(lo);
    const scale = (v) => PAD.top + plotH - ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / span) * plotH;
    const ticks = [];
    for (let t = lo; t <= hi * 1.0001; t *= 10) ticks.push(t);
    return { scale, ticks };
  }
  const top = niceCeiling(Math.max(1e-9, ...values.filter((v) => v !== null)));
  const scale = (v) => PAD.top + plotH - (v / top) * plotH;
  return { scale, ticks: [0, top / 2, top] };
}

function clock(ms, span) {
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return span > 86_400_000 ? `${d.getMonth() + 1}/${d.getDate()} ${time}` : time;
}

/**
 * lines: [{key, label, cls, points: [{t (ms), v}]}]; from/to: the x range in ms;
 * fmt: a value → axis text; marks: [{v, label, cls}] horizontal, [{t, label, cls}] vertical.
 */
export function lineChart({ lines, from, to, log = false, fmt = String, label, marks = [], name }) {
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const x = (t) => PAD.left + ((t - from) / Math.max(1, to - from)) * plotW;
  const all = lines.flatMap((l) => l.points.map((p) => p.v)).concat(marks.filter((m) => "v" in m).map((m) => m.v));
  const { scale: y, ticks } = yAxis(all, log, plotH);
  const parts = [];
  for (const tick of ticks) {
    parts.push(svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(tick), y2: y(tick), class: "gridline" }));
    parts.push(svg("text", { x: PAD.left - 6, y: y(tick) + 4, class: "axis", "text-anchor": "end" }, fmt(tick)));
  }
  for (const [t, anchor] of [[from, "start"], [(from + to) / 2, "middle"], [to, "end"]]) {
    parts.push(svg("text", { x: x(t), y: HEIGHT - 6, class: "axis", "text-anchor": anchor }, clock(t, to - from)));
  }
  for (const m of marks) {
    if ("v" in m && m.v !== null) {
      parts.push(svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(m.v), y2: y(m.v), class: `mark ${m.cls ?? ""}`, "data-mark": m.key ?? "" },
        svg("title", {}, m.label)));
      parts.push(svg("text", { x: WIDTH - PAD.right - 2, y: y(m.v) - 4, class: `axis ${m.cls ?? ""}`, "text-anchor": "end" }, m.label));
    } else if ("t" in m && m.t >= from && m.t <= to) {
      parts.push(svg("line", { x1: x(m.t), x2: x(m.t), y1: PAD.top, y2: PAD.top + plotH, class: `mark ${m.cls ?? ""}`, "data-mark": m.key ?? "" },
        svg("title", {}, m.label)));
      parts.push(svg("text", { x: x(m.t) - 3, y: PAD.top + 10, class: `axis ${m.cls ?? ""}`, "text-anchor": "end" }, m.label));
    }
  }
  for (const line of lines) {
    const drawn = line.points.filter((p) => p.v !== null && p.v !== undefined);
    const group = [];
    let run = [];
    const flush = () => {
      if (run.length > 1) group.push(svg("polyline", { points: run.join(" "), class: `series ${line.cls}` }));
      else if (run.length === 1) {
        const [cx, cy] = run[0].split(",");
        group.push(svg("circle", { cx, cy, r: 2, class: `dot ${line.cls}` }));
      }
      run = [];
    };
    for (const p of line.points) {
      if (p.v === null || p.v === undefined) flush();
      else run.push(`${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`);
    }
    flush();
    parts.push(svg("g", { "data-line": line.key, "data-points": drawn.length, "data-values": drawn.map((p) => p.v).join(",") },
      svg("title", {}, line.label), group));
  }
  const legend = lines.map((l, i) => svg("text", { x: PAD.left + 8 + i * 90, y: PAD.top + 10, class: `legend ${l.cls}` }, l.label));
  return svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "timechart", role: "img", "aria-label": label, "data-chart": name ?? "" },
    parts, legend);
}

/** rows: [{name, p50, p99}] (ms): a p99 bar with the p50 bar inside it, on one linear axis. */
export function rangeBars(rows, fmt, label) {
  const rowH = 22;
  const height = PAD.top + rows.length * rowH + PAD.bottom;
  const left = 170;
  const plotW = WIDTH - left - PAD.right - 60;
  const top = niceCeiling(Math.max(1, ...rows.map((r) => r.p99 ?? 0)));
  const x = (v) => left + (v / top) * plotW;
  const parts = [];
  for (const tick of [0, top / 2, top]) {
    parts.push(svg("line", { x1: x(tick), x2: x(tick), y1: PAD.top, y2: height - PAD.bottom, class: "gridline" }));
    parts.push(svg("text", { x: x(tick), y: height - 6, class: "axis", "text-anchor": "middle" }, fmt(tick)));
  }
  rows.forEach((r, i) => {
    const y0 = PAD.top + i * rowH + 3;
    parts.push(svg("g", { "data-bar": r.name, "data-p50": r.p50, "data-p99": r.p99 },
      svg("text", { x: left - 8, y: y0 + 12, class: "axis", "text-anchor": "end" }, r.name.length > 24 ? `${r.name.slice(0, 23)}…` : r.name),
      svg("rect", { x: left, y: y0, width: Math.max(1, x(r.p99) - left), height: rowH - 6, class: "bar p99" },
        svg("title", {}, `p99 ${fmt(r.p99)}`)),
      svg("rect", { x: left, y: y0 + 4, width: Math.max(1, x(r.p50) - left), height: rowH - 14, class: "bar p50" },
        svg("title", {}, `p50 ${fmt(r.p50)}`)),
      svg("text", { x: x(r.p99) + 6, y: y0 + 12, class: "axis" }, `${fmt(r.p50)} / ${fmt(r.p99)}`)));
  });
  return svg("svg", { viewBox: `0 0 ${WIDTH} ${height}`, class: "timechart bars", role: "img", "aria-label": label }, parts);
}

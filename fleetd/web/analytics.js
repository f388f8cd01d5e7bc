// Analytics and Capacity pages. Analytics: per job type over the last hour, day or week
// (GET analytics?window=…&by=type), run and wait p50 / p95 / p99, throughput, failure
// rate and a sparkline of finished jobs per bucket; for the type picked (its row or the
// select), its run and wait p50/p95/p99 per bucket as charts (log axis, from the same
// answer's series); and the lateness p50/p99 of the schedules that fired (every page
// of GET scheduled), the 20 latest by p99. A company admin's token sees its own company's
// figures only (the API binds it). Capacity (GET capacity, platform admins): utilisation
// as a gauge, the concurrency the planner recommends, the backlog's drain time, each job
// type's share of the load, and the week's hourly arrivals with the trend line, the
// projection from now, the capacity (arrivals at 100 % utilisation) and the day it runs
// out.

import { api } from "./api.js";
import { $, fill, fmtNumber, fmtSpan, h, svg } from "./dom.js";
import { describe } from "./jobs.js";
import { lineChart, rangeBars } from "./timeseries.js";

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
// The trend chart looks this far ahead when capacity does not run out sooner.
const AHEAD_DAYS = 2;
// ...and at most this far when it does (a run-out date further away is only written).
const MAX_AHEAD_DAYS = 14;
// The trend chart's axis is logarithmic when the capacity is this many times the peak.
const LOG_ABOVE = 5;

const WINDOWS = ["hour", "day", "week"];
// Schedules the lateness chart draws: the latest by p99 (the rest are counted below it).
const MAX_LATENESS_BARS = 20;

/** Every schedule the token sees: the lateness ranking needs all of them, so every page
 * of GET scheduled (500 a request, the most it serves), following next_cursor. */
async function everySchedule() {
  let list = [];
  let cursor = null;
  do {
    const page = await api("GET", "scheduled", { query: { limit: 500, cursor } });
    list = list.concat(page.scheduled_jobs);
    cursor = page.next_cursor;
  } while (cursor);
  return list;
}

function ms(v) {
  if (v === null || v === undefined) return "—";
  return v < 1000 ? `${v < 10 ? v.toFixed(1) : v.toFixed(0)} ms` : `${(v / 1000).toFixed(2)} s`;
}

function pcts(t) {
  return [h("td", { class: "num" }, ms(t.p50)), h("td", { class: "num" }, ms(t.p95)), h("td", { class: "num" }, ms(t.p99))];
}

/** Finished jobs (completed + failed) per bucket as a small line; failures in red. */
function sparkline(series) {
  const w = 120, hgt = 24;
  const done = series.map((p) => p.completed + p.failed);
  const top = Math.max(1, ...done);
  const x = (i) => (series.length > 1 ? (i * w) / (series.length - 1) : 0);
  const y = (v) => hgt - 1 - (v * (hgt - 2)) / top;
  const line = (values) => values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  return svg("svg", { class: "spark", width: w, height: hgt, viewBox: `0 0 ${w} ${hgt}`, role: "img",
    "aria-label": `finished per bucket, peak ${top}` },
    svg("polyline", { points: line(done), fill: "none", stroke: "currentColor", "stroke-width": 1.5 }),
    svg("polyline", { points: line(series.map((p) => p.failed)), fill: "none", stroke: "#c0392b", "stroke-width": 1 }));
}

export class AnalyticsView {
  constructor() {
    this.window = "hour";
    this.type = null;
    this.data = null;
    fill($("#analytics-windows"), WINDOWS.map((name) =>
      h("button", { type: "button", class: "small", "data-window": name, onclick: () => { this.window = name; this.load(); } }, name)));
    $("#analytics-type").addEventListener("change", (event) => this.pick(event.target.value));
  }

  pick(type) {
    this.type = type;
    $("#analytics-type").value = type;
    for (const row of document.querySelectorAll("#analytics-body tr")) {
      row.classList.toggle("picked", row.dataset.type === type);
    }
    this.charts();
  }

  /** The picked type's run and wait percentiles per bucket. */
  charts() {
    const a = this.data;
    const g = a?.groups.find((x) => x.type === this.type);
    $("#analytics-charts").hidden = !g;
    if (!g) return;
    const from = Date.parse(a.since);
    const to = Date.parse(a.until);
    for (const kind of ["run", "wait"]) {
      const lines = ["p50", "p95", "p99"].map((p) => ({
        key: p, label: p, cls: p, points: g.series.map((pt) => ({ t: Date.parse(pt.t), v: pt[`${kind}_${p}`] })),
      }));
      fill($(`#analytics-${kind}-chart`), lineChart({
        name: kind, lines, from, to, log: true, fmt: ms,
        label: `${kind} time p50, p95 and p99 of ${g.type} per ${a.step} over the last ${a.window}`,
      }));
    }
    $("#analytics-chart-title").textContent = `${g.type}: run and wait time per ${a.step === "1m" ? "minute" : "hour"}`;
  }

  async loadLateness() {
    const box = $("#analytics-lateness");
    try {
      const list = await everySchedule();
      const rows = list.filter((s) => s.lateness && s.lateness.count)
        .map((s) => ({ name: s.name, p50: s.lateness.p50_ms, p99: s.lateness.p99_ms }))
        .sort((a, b) => b.p99 - a.p99 || b.p50 - a.p50);
      // The latest few: thousands of bars would be a page-long chart that says less.
      const shown = rows.slice(0, MAX_LATENESS_BARS);
      const more = rows.length > shown.length
        ? h("p", { class: "muted small", "data-lateness-shown": `${shown.length}/${rows.length}` },
          `The ${shown.length} latest of ${rows.length} schedules that fired, by p99.`)
        : null;
      fill(box, rows.length ? [rangeBars(shown, ms, "lateness of each schedule's firings, p50 and p99"), more]
        : h("p", { class: "muted empty" }, "No schedule has fired yet."));
    } catch (exc) {
      fill(box, h("p", { class: "error" }, `Schedule lateness: ${describe(exc)}`));
    }
  }

  async load() {
    $("#analytics-error").textContent = "";
    for (const b of document.querySelectorAll("#analytics-windows button")) {
      b.setAttribute("aria-pressed", String(b.dataset.window === this.window));
    }
    try {
      const { analytics } = await api("GET", `analytics?window=${this.window}&by=type`);
      this.render(analytics);
    } catch (exc) {
      $("#analytics-error").textContent = `Analytics: ${describe(exc)}`;
    }
    await this.loadLateness();
  }

  render(a) {
    $("#analytics-note").textContent = `Last ${a.window} in ${a.step} buckets; percentiles within ±${(a.error_bound * 100).toFixed(1)} %.`;
    this.data = a;
    const types = a.groups.map((g) => g.type);
    if (!types.includes(this.type)) this.type = types[0] ?? null;
    fill($("#analytics-type"), types.map((t) => h("option", { value: t }, t)));
    fill($("#analytics-body"), a.groups.map((g) => h("tr", { "data-type": g.type, class: "pickable", onclick: () => this.pick(g.type) },
      h("td", { class: "mono" }, g.type),
      ...pcts(g.run),
      ...pcts(g.wait),
      h("td", { class: "num" }, `${g.throughput_per_min.toFixed(1)}/min`),
      h("td", { class: "num", "data-failure-rate": "" }, `${(g.failure_rate * 100).toFixed(1)} %`),
      h("td", { class: "num" }, fmtNumber(g.completed)),
      h("td", { class: "num" }, fmtNumber(g.failed)),
      h("td", {}, sparkline(g.series)))));
    $("#analytics-empty").hidden = a.groups.length > 0;
    if (this.type !== null) this.pick(this.type);
    else this.charts();
  }
}

/** Utilisation ρ as a half-ring gauge: green below 70 %, amber below 90 %, red above. */
function gauge(rho) {
  const r = 40, cx = 50, cy = 48;
  const v = rho === null ? 0 : Math.min(rho, 1);
  const angle = Math.PI * (1 - v);
  const end = [cx + r * Math.cos(angle), cy - r * Math.sin(angle)];
  const colour = rho === null ? "#999" : rho < 0.7 ? "#2e8b57" : rho < 0.9 ? "#d68910" : "#c0392b";
  return svg("svg", { class: "gauge", width: 120, height: 64, viewBox: "0 0 100 56", role: "img",
    "aria-label": `utilisation ${rho === null ? "unknown" : `${(rho * 100).toFixed(0)} %`}` },
    svg("path", { d: `M ${cx - r} ${cy} A ${r} ${r} 0 0 1 ${cx + r} ${cy}`, fill: "none", stroke: "#ddd", "stroke-width": 8 }),
    v > 0 ? svg("path", { d: `M ${cx - r} ${cy} A ${r} ${r} 0 0 1 ${end[0].toFixed(2)} ${end[1].toFixed(2)}`,
      fill: "none", stroke: colour, "stroke-width": 8 }) : null,
    svg("text", { x: cx, y: cy - 4, "text-anchor": "middle", "font-size": 14 }, rho === null ? "—" : `${(rho * 100).toFixed(0)}%`));
}

function fullIn(days) {
  if (days === null) return "not growing";
  return days > 3650 ? "over 10 years" : `${days.toFixed(days < 10 ? 1 : 0)} days`;
}

function stat(label, value, attrs = {}) {
  return h("div", { class: "stat", ...attrs }, h("span", { class: "label" }, label), h("span", { class: "value" }, value ?? "—"));
}

export class CapacityView {
  async load() {
    $("#capacity-error").textContent = "";
    try {
      const { capacity } = await api("GET", "capacity");
      this.render(capacity);
    } catch (exc) {
      $("#capacity-error").textContent = `Capacity: ${describe(exc)}`;
    }
  }

  render(c) {
    const needed = c.concurrency_needed;
    fill($("#capacity-plan"),
      h("div", { class: "capacity-head" }, gauge(c.utilisation),
        h("div", { class: "stat-row" },
          stat("Concurrency now", fmtNumber(c.concurrency)),
          stat("Recommended", fmtNumber(needed), { "data-recommended": "" }),
          stat("Arrivals", `${(c.arrival_rate * 60).toFixed(1)}/min`),
          stat("Job time", `${c.service_time.toFixed(3)} s`),
          stat("Wait p95 (predicted)", c.wait_p95 === null ? "unbounded" : `${c.wait_p95.toFixed(2)} s`),
          stat("Target", `${c.wait_p95_target} s`),
          stat("Backlog", fmtNumber(c.backlog)),
          stat("Drains in", !c.backlog ? "no backlog" : c.drain_eta === null ? "never at this load" : fmtSpan(c.drain_eta), { "data-drain": "" }),
          stat("Trend", `${c.trend_per_day >= 0 ? "+" : ""}${(c.trend_per_day * 60).toFixed(2)}/min per day`),
          stat("Full in", fullIn(c.full_in_days)))));
    $("#capacity-note").textContent = `Measured over the last ${fmtSpan(c.window_s)}; M/M/c (Erlang C) prediction.`;
    fill($("#capacity-body"), c.types.map((t) => h("tr", { "data-type": t.type },
      h("td", { class: "mono" }, t.type),
      h("td", { class: "num" }, `${(t.arrival_rate * 60).toFixed(1)}/min`),
      h("td", { class: "num" }, t.service_time === null ? "—" : `${t.service_time.toFixed(3)} s`),
      h("td", { class: "num" }, t.load.toFixed(2)))));
    $("#capacity-empty").hidden = c.types.length > 0;
    fill($("#capacity-trend"), trendChart(c));
  }
}

/** The week's arrivals per hour (jobs/min), the least-squares trend through them, the
 * projection from the current rate at that trend, and the capacity it meets. */
function trendChart(c) {
  const perMin = (v) => v * 60;
  const arrivals = c.hourly.map((p) => ({ t: Date.parse(p.t), v: perMin(p.arrival_rate) }));
  const first = arrivals[0].t;
  const now = arrivals.at(-1).t + HOUR_MS / 2;
  const slope = perMin(c.trend_per_day) / DAY_MS; // jobs/min per ms
  const full = c.full_in_days;
  const ahead = full !== null && full <= MAX_AHEAD_DAYS ? full * 1.15 : AHEAD_DAYS;
  const to = now + ahead * DAY_MS;
  const last = arrivals.at(-1).t;
  const fitted = [first, last].map((t) => ({ t, v: Math.max(0, perMin(c.trend_now) + slope * (t - last)) }));
  const projected = [now, to].map((t) => ({ t, v: Math.max(0, perMin(c.arrival_rate) + slope * (t - now)) }));
  const marks = [{ t: now, label: "now", cls: "now", key: "now" }];
  if (c.capacity_rate !== null) {
    marks.push({ v: perMin(c.capacity_rate), label: `capacity ${perMin(c.capacity_rate).toFixed(1)}/min`, cls: "limit", key: "capacity" });
  }
  if (full !== null && full <= MAX_AHEAD_DAYS) {
    const day = new Date(now + full * DAY_MS);
    marks.push({ t: now + full * DAY_MS, label: `full ${day.toISOString().slice(0, 10)}`, cls: "limit", key: "full" });
  }
  // A capacity far above the arrivals would flatten them against the axis: log scale.
  const peak = Math.max(...arrivals.map((p) => p.v), ...projected.map((p) => p.v));
  const log = c.capacity_rate !== null && perMin(c.capacity_rate) > LOG_ABOVE * Math.max(peak, 1e-9);
  return lineChart({
    name: "trend", from: first, to, marks, log,
    fmt: (v) => `${v === 0 ? "0" : v < 0.1 ? v.toPrecision(1) : v < 10 ? v.toFixed(1) : v.toFixed(0)}/min`,
    label: "jobs enqueued per minute, hourly over the last week, with the trend and the capacity",
    lines: [
      { key: "arrivals", label: "arrivals", cls: "p50", points: arrivals },
      { key: "trend", label: "trend", cls: "trend", points: fitted },
      { key: "projection", label: "projection", cls: "p99", points: projected },
    ],
  });
}

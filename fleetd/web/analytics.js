// Analytics and Capacity pages. Analytics: per job type over the last hour, day or week
// (GET analytics?window=…&by=type), run and wait p50 / p95 / p99, throughput, failure
// rate and a sparkline of finished jobs per bucket; a company admin's token sees its own
// company's figures only (the API binds it). Capacity (GET capacity, platform admins):
// utilisation as a gauge, the concurrency the planner recommends, the backlog's drain
// time and the arrivals' trend, with each job type's share of the load.

import { api } from "./api.js";
import { $, fill, fmtNumber, fmtSpan, h, svg } from "./dom.js";
import { describe } from "./jobs.js";

const WINDOWS = ["hour", "day", "week"];

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
    fill($("#analytics-windows"), WINDOWS.map((name) =>
      h("button", { type: "button", class: "small", "data-window": name, onclick: () => { this.window = name; this.load(); } }, name)));
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
  }

  render(a) {
    $("#analytics-note").textContent = `Last ${a.window} in ${a.step} buckets; percentiles within ±${(a.error_bound * 100).toFixed(1)} %.`;
    fill($("#analytics-body"), a.groups.map((g) => h("tr", { "data-type": g.type },
      h("td", { class: "mono" }, g.type),
      ...pcts(g.run),
      ...pcts(g.wait),
      h("td", { class: "num" }, `${g.throughput_per_min.toFixed(1)}/min`),
      h("td", { class: "num", "data-failure-rate": "" }, `${(g.failure_rate * 100).toFixed(1)} %`),
      h("td", { class: "num" }, fmtNumber(g.completed)),
      h("td", { class: "num" }, fmtNumber(g.failed)),
      h("td", {}, sparkline(g.series)))));
    $("#analytics-empty").hidden = a.groups.length > 0;
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
  }
}

// Throughput and failure rate of the last ten minutes: finished jobs (job.completed,
// job.failed) counted in 10 s buckets and drawn as stacked bars in an inline SVG, with the
// failure rate of each bucket as a line on its own 0–100 % axis.
//
// History (platform admins): the overview fetches GET throughput for HISTORY_QUERY and
// hands the answer to seed(); live events are counted on top. No finished job is counted
// twice: the answer's `until` is the server's clock when it counted (exclusive), and the
// finish `ts` of every event comes from the same clock, so a live event is counted only
// if `ts >= until`. Between expectHistory() and seed() live events are held, then
// replayed through that rule. (The fetch is made once the feed is live, so a job
// finishing in between is in one of the two.) A company admin's chart, or one whose
// history failed, is liveOnly(): counting starts when the page opens.

import { fill, svg } from "./dom.js";

const BUCKET_MS = 10_000;
const BUCKETS = 60; // 60 × 10 s = the last ten minutes
const WIDTH = 640;
const HEIGHT = 180;
const PAD = { left: 34, right: 40, top: 12, bottom: 22 };
// The chart's window and step in the API's duration syntax (GET throughput).
export const HISTORY_QUERY = { window: `${(BUCKETS * BUCKET_MS) / 60_000}m`, step: `${BUCKET_MS / 1000}s` };
// Finished-job events held while the history is on its way (a second or so; a queue
// finishing thousands of jobs a second would otherwise hold without bound): past this,
// the oldest are dropped: the history is about to count them anyway, or they are old.
const HOLD_LIMIT = 100_000;

export class ThroughputChart {
  constructor(container, summary) {
    this.container = container;
    this.summary = summary;
    this.buckets = new Map(); // bucket number → {completed, failed}
    // Live events count when ts >= cutoff; null: a history is awaited, events are held.
    this.cutoff = -Infinity;
    this.held = [];
  }

  /** A history is on its way: hold live events until seed() or liveOnly(). */
  expectHistory() {
    this.cutoff = null;
  }

  /** Replace the buckets with a GET throughput answer ({until, buckets: [{t, completed,
   * failed}]}), then count the held events that finished at or after `until`. */
  seed({ until, buckets }) {
    this.buckets = new Map();
    for (const b of buckets) {
      this.buckets.set(Math.floor(Date.parse(b.t) / BUCKET_MS), { completed: b.completed, failed: b.failed });
    }
    this._release(Date.parse(until));
  }

  /** No history: count every live event (held ones too) from now on. */
  liveOnly() {
    this._release(-Infinity);
  }

  _release(cutoff) {
    this.cutoff = cutoff;
    const held = this.held;
    this.held = [];
    for (const event of held) this.record(event);
  }

  /** Count one event (others are ignored). */
  record(event) {
    if (event.type !== "job.completed" && event.type !== "job.failed") return;
    const ts = typeof event.ts === "number" ? event.ts : Date.now();
    if (this.cutoff === null) {
      if (this.held.length >= HOLD_LIMIT) this.held.shift();
      this.held.push({ type: event.type, ts });
      return;
    }
    if (ts < this.cutoff) return; // in the history already
    const key = Math.floor(ts / BUCKET_MS);
    const bucket = this.buckets.get(key) ?? { completed: 0, failed: 0 };
    if (event.type === "job.completed") bucket.completed += 1;
    else bucket.failed += 1;
    this.buckets.set(key, bucket);
  }

  _series() {
    const last = Math.floor(Date.now() / BUCKET_MS);
    for (const key of this.buckets.keys()) if (key <= last - BUCKETS) this.buckets.delete(key);
    const out = [];
    for (let key = last - BUCKETS + 1; key <= last; key += 1) {
      out.push(this.buckets.get(key) ?? { completed: 0, failed: 0 });
    }
    return out;
  }

  render() {
    const series = this._series();
    const peak = Math.max(...series.map((b) => b.completed + b.failed));
    const top = niceCeiling(Math.max(peak, 4));
    const plotW = WIDTH - PAD.left - PAD.right;
    const plotH = HEIGHT - PAD.top - PAD.bottom;
    const slot = plotW / BUCKETS;
    const y = (n) => PAD.top + plotH - (n / top) * plotH;
    const parts = [];
    for (const tick of [0, top / 2, top]) {
      parts.push(svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(tick), y2: y(tick), class: "gridline" }));
      parts.push(svg("text", { x: PAD.left - 6, y: y(tick) + 4, class: "axis", "text-anchor": "end" }, fmtTick(tick)));
    }
    for (const pct of [0, 50, 100]) {
      const yy = PAD.top + plotH - (pct / 100) * plotH;
      parts.push(svg("text", { x: WIDTH - PAD.right + 6, y: yy + 4, class: "axis rate" }, `${pct}%`));
    }
    const points = [];
    series.forEach((b, i) => {
      const x = PAD.left + i * slot + 1;
      const w = Math.max(1, slot - 2);
      if (b.completed) {
        parts.push(svg("rect", { x, y: y(b.completed), width: w, height: plotH + PAD.top - y(b.completed), class: "bar ok" },
          svg("title", {}, `${b.completed} completed`)));
      }
      if (b.failed) {
        const base = y(b.completed);
        parts.push(svg("rect", { x, y: y(b.completed + b.failed), width: w, height: base - y(b.completed + b.failed), class: "bar bad" },
          svg("title", {}, `${b.failed} failed`)));
      }
      const total = b.completed + b.failed;
      if (total) points.push(`${x + w / 2},${PAD.top + plotH - (b.failed / total) * plotH}`);
    });
    if (points.length > 1) parts.push(svg("polyline", { points: points.join(" "), class: "rate-line" }));
    for (const point of points) {
      const [cx, cy] = point.split(",");
      parts.push(svg("circle", { cx, cy, r: 2.2, class: "rate-dot" }));
    }
    const labels = [[0, "−10 min"], [BUCKETS / 2, "−5 min"], [BUCKETS, "now"]];
    for (const [i, text] of labels) {
      const anchor = i === 0 ? "start" : i === BUCKETS ? "end" : "middle";
      parts.push(svg("text", { x: PAD.left + i * slot, y: HEIGHT - 6, class: "axis", "text-anchor": anchor }, text));
    }
    const chart = svg("svg", {
      viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
      role: "img",
      "aria-label": "Jobs finished per 10 seconds over the last ten minutes, and the failure rate",
    }, parts);
    fill(this.container, chart);
    this._summarise(series);
  }

  _summarise(series) {
    const lastMinute = series.slice(-6);
    const perMinute = lastMinute.reduce((n, b) => n + b.completed + b.failed, 0);
    const done = series.reduce((n, b) => n + b.completed, 0);
    const failed = series.reduce((n, b) => n + b.failed, 0);
    const rate = done + failed ? ((100 * failed) / (done + failed)).toFixed(1) : "0.0";
    this.summary.throughput.textContent = perMinute.toLocaleString("en-US");
    this.summary.finished.textContent = (done + failed).toLocaleString("en-US");
    this.summary.rate.textContent = `${rate}%`;
    this.summary.rate.classList.toggle("bad", failed > 0);
  }
}

function niceCeiling(n) {
  const magnitude = 10 ** Math.floor(Math.log10(n));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * magnitude >= n) return step * magnitude;
  return 10 * magnitude;
}

function fmtTick(n) {
  return n >= 1000 ? `${(n / 1000).toFixed(n % 1000 ? 1 : 0)}k` : String(Math.round(n * 10) / 10);
}

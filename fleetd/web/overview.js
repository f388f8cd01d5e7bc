// The overview: a counter per status, the throughput chart, the health of the workers
// and the live event feed (the last FEED_LIMIT events, newest first).
//
// Counters come from GET stats (queue-wide, platform admins). A company-bound token is
// refused there (403), so for it each status is counted from its listing, capped at
// COMPANY_COUNT_CAP ("100+"): that is the company's own view, through the API's scoping.
// They refresh after events (debounced) and on a slow poll.
//
// The chart starts with the last ten minutes from GET throughput (platform admins only:
// the API's status indexes hold no company). It is fetched once the live feed is first
// live, so every job finishing around the fetch is either in the answer or in the feed,
// and again after a gap in the feed; see chart.js for the rule against counting twice.
// A company admin's chart counts live events only, and says so.

import { ApiError, api } from "./api.js";
import { HISTORY_QUERY, ThroughputChart } from "./chart.js";
import { $, debounce, fill, fmtInline, fmtNumber, fmtTime, h, pill } from "./dom.js";

export const STATUSES = ["pending", "processing", "retrying", "completed", "failed", "cancelled"];
const FEED_LIMIT = 200;
const COMPANY_COUNT_CAP = 100;
// A burst of events costs one stats call per second at most; the poll catches what the
// feed cannot show (a reconnect gap, another daemon's clean-up).
const REFRESH_DEBOUNCE_MS = 1000;
const POLL_MS = 15000;
const HEALTH_POLL_MS = 10000;
// The feed is usually live within a second; one that is not after this (a proxy that
// drops WebSocket upgrades) should not keep the history from showing.
const HISTORY_FALLBACK_MS = 5000;
const FILTERS = {
  all: () => true,
  jobs: (e) => String(e.type).startsWith("job."),
  problems: (e) => ["job.failed", "job.retrying", "job.stalled"].includes(e.type) || String(e.type).startsWith("alert."),
};

export class Overview {
  constructor({ openJob, platform }) {
    this.openJob = openJob;
    this.platform = platform;
    this.historyAsked = false;
    this.historyTimer = null;
    this.historyCalls = 0; // only the latest call's answer seeds the chart
    this.companyMode = false;
    this.values = {};
    this.feed = [];
    this.paused = false;
    this.missed = 0;
    this.filter = "all";
    this.timers = [];
    this.chart = new ThroughputChart($("#chart"), {
      throughput: $("#chart-throughput"),
      finished: $("#chart-finished"),
      rate: $("#chart-rate"),
    });
    this.refreshSoon = debounce(() => {
      this.refreshCounters();
      this.refreshHealth();
    }, REFRESH_DEBOUNCE_MS);
    this._buildCounters();
    $("#feed-pause").addEventListener("click", () => this.togglePause());
    $("#feed-clear").addEventListener("click", () => {
      this.feed = [];
      this.renderFeed();
    });
    $("#feed-filter").addEventListener("change", (e) => {
      this.filter = e.target.value;
      this.renderFeed();
    });
  }

  start() {
    this.refreshCounters();
    this.refreshHealth();
    if (this.platform()) {
      this.chart.expectHistory();
      this.historyTimer = setTimeout(() => this.loadHistory(), HISTORY_FALLBACK_MS);
    } else {
      this._chartNote("Counted live since this page opened: history needs a platform admin token.");
    }
    this.chart.render();
    this.renderFeed();
    this.timers.push(setInterval(() => this.refreshCounters(), POLL_MS));
    this.timers.push(setInterval(() => this.refreshHealth(), HEALTH_POLL_MS));
    this.timers.push(setInterval(() => this.chart.render(), 1000));
  }

  /** The live feed is subscribed (called on every (re)connect): time for the history. */
  onLive() {
    if (!this.historyAsked && this.platform()) this.loadHistory();
  }

  /** Seed the chart with GET throughput; live events wait meanwhile (chart.js). */
  async loadHistory() {
    clearTimeout(this.historyTimer);
    this.historyAsked = true;
    const call = ++this.historyCalls;
    this.chart.expectHistory();
    try {
      const body = await api("GET", "throughput", { query: HISTORY_QUERY });
      if (call !== this.historyCalls) return;
      this.chart.seed(body.throughput);
      this._chartNote("");
    } catch (exc) {
      if (call !== this.historyCalls) return;
      this.chart.liveOnly();
      this._chartNote(exc.status === 403
        ? "Counted live since this page opened: history needs a platform admin token."
        : `Counted live since this page opened: no history (${exc.message}).`);
    }
    this.chart.render();
  }

  _chartNote(text) {
    const note = $("#chart-note");
    note.textContent = text;
    note.hidden = !text;
  }

  /** A batch of frames from the live feed. */
  onEvents(batch) {
    let jobEvents = false;
    for (const event of batch) {
      if (event.type === "gap") {
        this.feed.unshift({ type: "gap", ts: Date.now(), data: event });
        jobEvents = true;
        // Events were lost: the history has them; it replaces the buckets.
        if (this.historyAsked) this.loadHistory();
        continue;
      }
      this.chart.record(event);
      if (String(event.type).startsWith("job")) jobEvents = true;
      if (this.paused) this.missed += 1;
      else this.feed.unshift(event);
    }
    if (this.feed.length > FEED_LIMIT) this.feed.length = FEED_LIMIT;
    if (jobEvents) this.refreshSoon();
    if (!this.paused) this.renderFeed();
    else $("#feed-pause").textContent = `Resume (${fmtNumber(this.missed)} new)`;
  }

  togglePause() {
    this.paused = !this.paused;
    this.missed = 0;
    const button = $("#feed-pause");
    button.textContent = this.paused ? "Resume" : "Pause";
    button.setAttribute("aria-pressed", String(this.paused));
    if (!this.paused) this.renderFeed();
  }

  _buildCounters() {
    const box = $("#counters");
    for (const status of [...STATUSES, "total"]) {
      const value = h("span", { class: "value", "data-status": status }, "–");
      const card = h(status === "total" ? "div" : "a", {
        class: `counter s-${status}`,
        href: status === "total" ? undefined : `#/jobs/${status}`,
        title: status === "total" ? "All jobs" : `Show ${status} jobs`,
      }, h("span", { class: "label" }, status), value);
      box.append(card);
    }
  }

  async refreshCounters() {
    let counts;
    try {
      counts = this.companyMode ? await this._companyCounts() : (await api("GET", "stats")).stats;
    } catch (exc) {
      if (exc instanceof ApiError && exc.status === 403 && !this.companyMode) {
        this.companyMode = true;
        $("#counters-note").hidden = false;
        return this.refreshCounters();
      }
      $("#counters-error").textContent = exc.status === 401 ? "" : `Counters: ${exc.message}`;
      return;
    }
    $("#counters-error").textContent = "";
    for (const [status, value] of Object.entries(counts)) {
      const el = $(`#counters .value[data-status="${status}"]`);
      if (!el) continue;
      const text = typeof value === "string" ? value : fmtNumber(value);
      if (el.textContent !== text && el.textContent !== "–") {
        el.classList.remove("bump");
        void el.offsetWidth; // restart the animation
        el.classList.add("bump");
      }
      el.textContent = text;
    }
    this.values = counts;
    // The jobs view shows these on its status tabs.
    window.dispatchEvent(new CustomEvent("fleetd:counts", { detail: counts }));
  }

  async _companyCounts() {
    const pages = await Promise.all(
      STATUSES.map((s) => api("GET", `status/${s}`, { query: { limit: COMPANY_COUNT_CAP } })),
    );
    const out = {};
    let total = 0;
    let capped = false;
    STATUSES.forEach((status, i) => {
      const page = pages[i];
      total += page.count;
      capped ||= Boolean(page.next_cursor);
      out[status] = page.next_cursor ? `${page.count}+` : page.count;
    });
    out.total = capped ? `${fmtNumber(total)}+` : total;
    return out;
  }

  async refreshHealth() {
    // Worker health counts every company's jobs: platform admins only (the card is hidden).
    if (!document.body.classList.contains("platform")) return;
    const box = $("#health-summary");
    try {
      const health = await api("GET", "worker/health");
      fill(box,
        h("div", { class: "health-head" }, pill(health.status),
          h("span", { class: "muted" }, `${health.workers} worker daemon${health.workers === 1 ? "" : "s"}`)),
        h("dl", { class: "facts" },
          fact("Concurrency", fmtNumber(health.concurrency)),
          fact("Backlog", fmtNumber(health.backlog)),
          // Jobs this daemon acknowledged while Redis was away, not yet in Redis.
          health.spool ? fact("Spooled", fmtNumber(health.spool.jobs)) : null,
          fact("Success rate", `${health.success_rate}%`),
          fact("Average job", health.average_job_time),
          fact("Processed", fmtNumber(health.jobs_processed)),
          fact("Uptime", health.uptime)),
        health.reasons.length ? h("ul", { class: "reasons" }, health.reasons.map((r) => h("li", {}, r))) : null);
    } catch (exc) {
      fill(box, h("p", { class: "error" }, `Health: ${exc.message}`));
    }
  }

  renderFeed() {
    const list = $("#feed");
    const shown = this.feed.filter(FILTERS[this.filter] ?? FILTERS.all);
    $("#feed-empty").hidden = shown.length > 0;
    fill(list, shown.map((e) => this._feedRow(e)));
  }

  _feedRow(event) {
    if (event.type === "gap") {
      return h("li", { class: "feed-row gap" }, h("time", {}, fmtTime(event.ts)),
        h("span", { class: "kind" }, "gap"),
        h("span", { class: "detail" }, "Some events were not delivered (the stream was trimmed); counters, lists and the chart were refreshed."));
    }
    const kind = String(event.type);
    const jobLink = event.job_id
      ? h("button", { type: "button", class: "link mono", title: "Show this job", onclick: () => this.openJob(event.job_id) }, event.job_id)
      : h("span", { class: "mono muted" }, "—");
    return h("li", { class: `feed-row k-${kind.replace(/[^a-z]/g, "-")}`, "data-job-id": event.job_id || undefined, "data-type": kind },
      h("time", { datetime: new Date(event.ts ?? Date.now()).toISOString() }, fmtTime(event.ts)),
      h("span", { class: "kind" }, kind),
      h("span", { class: "jtype" }, event.job_type || ""),
      jobLink,
      h("span", { class: "company muted" }, event.company_id || ""),
      h("span", { class: "detail" }, describe(event)));
  }
}

function fact(label, value) {
  return [h("dt", {}, label), h("dd", {}, value ?? "—")];
}

/** The interesting part of an event's data, in one line. */
export function describe(event) {
  const d = event.data ?? {};
  switch (event.type) {
    case "job.progress":
      return [d.percent !== undefined ? `${d.percent}%` : "", d.message ?? ""].filter(Boolean).join(" · ");
    case "job.failed":
    case "job.retrying":
      return fmtInline(d.error ?? d);
    case "job.completed":
      return d.duration_ms !== undefined ? `done in ${(d.duration_ms / 1000).toFixed(2)} s${d.attempt > 1 ? ` (attempt ${d.attempt})` : ""}` : fmtInline(d);
    case "job.cancelled":
      return d.running ? "stopped while running" : "";
    case "job.reset":
      return d.from ? `back to pending from ${d.from}` : "";
    case "job.started":
      return d.attempt ? `attempt ${d.attempt}${d.worker ? ` on ${d.worker}` : ""}` : fmtInline(d);
    case "job.enqueued":
      return d.run_at ? `priority ${d.priority}, runs ${fmtTime(d.run_at)}` : d.priority ? `priority ${d.priority}` : "";
    case "schedule.fired":
    case "schedule.run_now":
    case "schedule.missed":
    case "schedule.error":
      return describeSchedule(event.type, d);
    default:
      return Object.keys(d).length ? fmtInline(d) : "";
  }
}

/** A schedule event (fleetd.schedules.firing's data: schedule_id, due, occurrence,
 * missed, error) as a sentence, not its JSON. */
function describeSchedule(type, d) {
  const name = d.schedule_id ? `schedule ${d.schedule_id}` : "schedule";
  const missed = d.missed ? `, ${d.missed} run${d.missed === 1 ? "" : "s"} missed` : "";
  switch (type) {
    case "schedule.fired":
      return `${name} fired${d.occurrence ? ` for ${fmtTime(d.occurrence)}` : ""}${missed}`;
    case "schedule.run_now":
      return `${name} run now`;
    case "schedule.missed":
      return `${name}: run${d.occurrence ? ` of ${fmtTime(d.occurrence)}` : ""} skipped${missed}`;
    default:
      return `${name}: ${d.error ?? "error"}`;
  }
}

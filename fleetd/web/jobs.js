// Jobs by status: a tab per status with its count, the listing newest first with cursor
// pages ("Load more"), a search box (a job id opens that job; other text is searched
// server-side, `?q=` on every status: the listing shows the matches of this status and
// each tab how many of its jobs match), and the actions a job's status allows: cancel (pending, retrying, processing),
// retry (a failed job: reset puts it back to pending) and reset (a cancelled job).
// The listing reloads after events that touch it, keeping as many rows as were loaded.
// An e-mail job that completed in outbox mode (written to a folder, never sent) is
// marked "not sent" in its row and its detail, so it cannot pass for a delivered one.

import { ApiError, api, download } from "./api.js";
import { $, confirmButton, debounce, fill, fmtInline, fmtJson, fmtTime, h, pill, toast } from "./dom.js";
import { STATUSES } from "./overview.js";

const PAGE = 50;
const MAX_PAGE = 500; // the API's cap on ?limit=
const JOB_ID = /^job_[0-9A-Za-z]{26}$/;
const RELOAD_DEBOUNCE_MS = 600;
// Typing waits this long before the search goes to the server (one query per status).
const SEARCH_DEBOUNCE_MS = 300;

/** The buttons a job's status allows; `done` runs after a successful action. */
export function jobActions(job, done) {
  const buttons = [];
  const id = job.id;
  if (["pending", "retrying", "processing"].includes(job.status)) {
    buttons.push(confirmButton("Cancel", "Confirm cancel", async () => {
      try {
        const r = await api("DELETE", encodeURIComponent(id));
        toast(r.cancelled ? `Cancelled ${id}` : `Cancel requested: ${id} stops on its daemon`);
        done();
      } catch (exc) {
        toast(`Cancel ${id}: ${describe(exc)}`, "error");
      }
    }, { class: "danger small", "data-action": "cancel" }));
  }
  if (job.status === "failed" || job.status === "cancelled") {
    const label = job.status === "failed" ? "Retry" : "Reset";
    buttons.push(h("button", {
      type: "button",
      class: "small",
      "data-action": label.toLowerCase(),
      title: "Put the job back to pending (its attempts start again)",
      onclick: async (event) => {
        event.stopPropagation();
        try {
          await api("POST", `${encodeURIComponent(id)}/reset`);
          toast(`${label === "Retry" ? "Retrying" : "Reset"} ${id}: pending again`);
          done();
        } catch (exc) {
          toast(`${label} ${id}: ${describe(exc)}`, "error");
        }
      },
    }, label));
  }
  return buttons;
}

export function describe(exc) {
  return exc instanceof ApiError ? exc.describe() : exc.message;
}

export class JobsView {
  constructor({ openJob, platform }) {
    this.openJob = openJob;
    this.platform = platform;
    this.status = "pending";
    this.rows = [];
    this.cursor = null;
    this.filter = "";
    this.counts = {}; // the overview's counters, shown on the tabs while not searching
    this.loading = false;
    this.reloadSoon = debounce(() => this.load({ keep: true }), RELOAD_DEBOUNCE_MS);
    this.searchSoon = debounce(() => this.load(), SEARCH_DEBOUNCE_MS);
    this._buildTabs();
    $("#job-search").addEventListener("input", (e) => {
      const text = e.target.value.trim();
      if (JOB_ID.test(text) || text === this.filter) return;
      this.filter = text;
      this.searchSoon();
    });
    window.addEventListener("fleetd:counts", (e) => {
      this.counts = e.detail;
      if (!this.filter) this.renderTabCounts(this.counts);
    });
    $("#job-search-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.search($("#job-search").value.trim());
    });
    $("#jobs-more").addEventListener("click", () => this.load({ more: true }));
    $("#jobs-refresh").addEventListener("click", () => this.load({ keep: true }));
  }

  _buildTabs() {
    fill($("#job-tabs"), STATUSES.map((s) => h("a", {
      href: `#/jobs/${s}`,
      role: "tab",
      class: `tab s-${s}`,
      "data-status": s,
    }, s, h("span", { class: "tab-count", "data-count": s }, ""))));
  }

  /** counts: status → number or text ("100+"); a status left out shows no count. */
  renderTabCounts(counts) {
    for (const el of document.querySelectorAll("#job-tabs .tab-count")) {
      const value = counts[el.dataset.count];
      el.textContent = value === undefined ? "" : String(value);
    }
  }

  /** Matches of the search on every status: one bounded page each (the server scans a
   * window per page; "+" when it has more to look at). */
  async searchCounts(text) {
    const pages = await Promise.all(STATUSES.map((s) =>
      api("GET", `status/${s}`, { query: { limit: PAGE, q: text } }).catch(() => null)));
    if (text !== this.filter) return;
    const counts = {};
    STATUSES.forEach((s, i) => {
      const page = pages[i];
      if (page) counts[s] = `${page.count}${page.next_cursor ? "+" : ""}`;
    });
    this.renderTabCounts(counts);
  }

  show(status) {
    if (!STATUSES.includes(status)) status = "pending";
    const changed = status !== this.status || !this.rows.length;
    this.status = status;
    for (const tab of document.querySelectorAll("#job-tabs .tab")) {
      tab.setAttribute("aria-selected", String(tab.dataset.status === status));
    }
    if (changed) {
      this.rows = [];
      this.renderRows();
    }
    this.load({ keep: !changed });
  }

  /** Live events: reload when one touches this listing (a job entering or leaving it). */
  onEvents(batch) {
    if ($("#view-jobs").hidden) return;
    const ids = new Set(this.rows.map((r) => r.id));
    if (batch.some((e) => e.status === this.status || ids.has(e.job_id))) this.reloadSoon();
  }

  async load({ more = false, keep = false } = {}) {
    if (this.loading && !more) {
      this.again = true; // a search or tab changed mid-load: load once more after it
      return;
    }
    this.loading = true;
    this.again = false;
    const limit = keep ? Math.min(MAX_PAGE, Math.max(PAGE, this.rows.length)) : PAGE;
    const status = this.status;
    const q = this.filter || undefined;
    $("#jobs-error").textContent = "";
    if (!more) {
      if (q) this.searchCounts(q);
      else this.renderTabCounts(this.counts);
    }
    try {
      const page = await api("GET", `status/${status}`, { query: { limit, q, cursor: more ? this.cursor : undefined } });
      if (status !== this.status || (q ?? "") !== this.filter) return;
      this.rows = more ? [...this.rows, ...page.jobs] : page.jobs;
      this.cursor = page.next_cursor;
      this.renderRows();
    } catch (exc) {
      $("#jobs-error").textContent = `Jobs: ${describe(exc)}`;
    } finally {
      this.loading = false;
      if (this.again) this.load({ keep: true });
    }
  }

  async search(text) {
    if (!text) return;
    if (JOB_ID.test(text)) {
      this.openJob(text);
      return;
    }
    if (text !== this.filter) {
      this.filter = text;
      await this.load();
    }
  }

  renderRows() {
    const body = $("#jobs-body");
    const rows = this.rows;
    fill(body, rows.map((job) => this._row(job)));
    $("#jobs-empty").hidden = rows.length > 0;
    $("#jobs-empty").textContent = this.filter
      ? `No ${this.status} job matches “${this.filter}”${this.cursor ? " in the jobs looked at so far (Load more looks further)" : ""}.`
      : `No ${this.status} jobs.`;
    $("#jobs-more").hidden = !this.cursor;
    $("#jobs-count").textContent = `${this.rows.length} loaded${this.cursor ? ", more available" : ""}`;
    document.body.classList.toggle("platform", this.platform());
  }

  _row(job) {
    return h("tr", { "data-job-id": job.id, onclick: () => this.openJob(job.id) },
      h("td", {}, h("button", { type: "button", class: "link mono", onclick: (e) => {
        e.stopPropagation();
        this.openJob(job.id);
      } }, job.id)),
      h("td", {}, job.type),
      h("td", { class: "platform-only muted" }, job.company_id ?? "—"),
      h("td", { class: "num" }, job.priority),
      h("td", { title: job.created_at }, fmtTime(job.created_at)),
      h("td", { class: "num" }, `${job.attempts}/${job.max_retries + 1}`),
      h("td", { class: "info" }, info(job)),
      h("td", { class: "actions" }, jobActions(job, () => this.load({ keep: true }))));
  }
}

function info(job) {
  if (job.error) return h("span", { class: "error-text", title: job.error }, fmtInline(job.error, 90));
  if (job.progress?.percent !== undefined) {
    return [h("progress", { max: 100, value: job.progress.percent }), ` ${job.progress.message ?? ""}`];
  }
  if (job.run_at && job.status === "pending") return `runs ${fmtTime(job.run_at)}`;
  if (job.cancel_requested) return pill("cancelling");
  if (job.worker && job.status === "processing") return `on ${job.worker}`;
  const outbox = outboxDelivery(job);
  if (outbox) return h("span", { class: "tag warn", "data-delivery": "outbox", title: outbox }, "e-mail not sent: outbox");
  return "";
}

/** For a job whose e-mail went to the outbox folder instead of a mail server: where it
 * went, as a sentence; otherwise null. */
export function outboxDelivery(job) {
  const r = job.result;
  if (!r || typeof r !== "object" || r.delivery !== "outbox") return null;
  return `Not sent: [email] mode is outbox, the message was written to ${r.path ?? "the outbox folder"}`;
}

/** The job detail dialog: every field, data, result, error, artifacts; live while open. */
export class JobDetail {
  constructor() {
    this.dialog = $("#job-dialog");
    this.jobId = null;
    this.refreshSoon = debounce(() => this.refresh(), 300);
    $("#job-dialog-close").addEventListener("click", () => this.dialog.close());
    this.dialog.addEventListener("close", () => {
      this.jobId = null;
    });
  }

  async open(id) {
    this.jobId = id;
    fill($("#job-detail"), h("p", { class: "muted" }, "Loading…"));
    $("#job-dialog-title").textContent = id;
    if (!this.dialog.open) this.dialog.showModal();
    await this.refresh();
  }

  onEvents(batch) {
    if (this.jobId && batch.some((e) => e.job_id === this.jobId)) this.refreshSoon();
  }

  async refresh() {
    const id = this.jobId;
    if (!id) return;
    try {
      const { job, waiting } = await api("GET", encodeURIComponent(id));
      if (id === this.jobId) this.render(job, waiting);
    } catch (exc) {
      if (id === this.jobId) fill($("#job-detail"), h("p", { class: "error" }, describe(exc)));
    }
  }

  render(job, waiting) {
    const facts = [
      ["Status", pill(job.status)],
      ["Waiting", waiting ?? null],
      ["Type", job.type],
      ["Company", job.company_id ?? "—"],
      ["User", job.user_id ?? "—"],
      ["Priority", job.priority],
      ["Attempts", `${job.attempts} (retries ${job.retry_count} of ${job.max_retries})`],
      ["Created", fmtTime(job.created_at)],
      ["Run at", job.run_at ? fmtTime(job.run_at) : null],
      ["Started", fmtTime(job.started_at)],
      ["Finished", fmtTime(job.completed_at)],
      ["Updated", job.updated_at ? fmtTime(job.updated_at) : null],
      ["Worker", job.worker ?? null],
      ["Timeout", job.timeout ? `${job.timeout} s` : null],
      ["Stalls", job.stalls ?? null],
      ["Tags", job.tags?.length ? job.tags.join(", ") : null],
      ["Idempotency key", job.idempotency_key ?? null],
      ["Progress", job.progress ? `${job.progress.percent}% ${job.progress.message ?? ""}` : null],
      ["Delivery", outboxDelivery(job) ? h("span", { class: "tag warn", "data-delivery": "outbox" }, outboxDelivery(job)) : null],
    ].filter(([, v]) => v !== null && v !== undefined);
    const artifacts = (job.result?.artifacts ?? []).filter((a) => a && typeof a.name === "string");
    fill($("#job-detail"),
      h("div", { class: "detail-actions" }, jobActions(job, () => this.refresh())),
      h("dl", { class: "facts wide" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
      artifacts.length ? h("section", {}, h("h3", {}, "Artifacts"),
        h("ul", { class: "artifacts" }, artifacts.map((a) => h("li", {},
          h("button", { type: "button", class: "small", onclick: () => this.download(job.id, a.name) }, `Download ${a.name}`),
          a.size !== undefined ? h("span", { class: "muted" }, ` ${formatBytes(a.size)}`) : null)))) : null,
      block("Data", job.data),
      job.result !== undefined ? block("Result", job.result) : null,
      job.error ? h("section", {}, h("h3", {}, "Error"), h("pre", { class: "error-text" }, job.error)) : null,
      job.traceback ? h("details", {}, h("summary", {}, "Traceback"), h("pre", {}, job.traceback)) : null);
  }

  async download(id, name) {
    try {
      await download(`${encodeURIComponent(id)}/artifact?name=${encodeURIComponent(name)}`, name);
    } catch (exc) {
      toast(`Download ${name}: ${describe(exc)}`, "error");
    }
  }
}

function block(title, value) {
  return h("section", {}, h("h3", {}, title), h("pre", {}, fmtJson(value ?? null)));
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 ** 2).toFixed(1)} MiB`;
}

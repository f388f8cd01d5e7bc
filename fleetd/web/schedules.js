// Scheduled jobs: the list with the scheduler's statistics, and create, edit, pause /
// resume (is_active) and delete. A company-bound token sees and changes its company's
// schedules only (the API scopes them). The form shows the API's field errors as given.
// An edit sends `data` only when its text was changed: the API shows sealed values as
// "***" (or the whole data as {"encrypted": true}), and sending those back would
// replace the secrets with the placeholders (the API refuses it with a 422).
// The list comes in pages (GET scheduled?limit=&cursor=, oldest first): the first 100,
// then "Load more" for the next 100 while the API gives a next_cursor; a reload (after
// a change or a schedule event) reads again as many as were shown.

import { api } from "./api.js";
import { $, confirmButton, debounce, fill, fmtNumber, fmtRelative, fmtTime, h, pill, toast } from "./dom.js";
import { describe } from "./jobs.js";

// Schedules a page shows, and the most one request asks for (the API's maximum).
const PAGE = 100;
const MAX_PAGE = 500;

export class SchedulesView {
  constructor() {
    this.dialog = $("#schedule-dialog");
    this.form = $("#schedule-form");
    this.editing = null;
    this.dataShown = "";
    this.typesLoaded = false;
    this.rows = [];
    this.cursor = null;
    this.loading = false;
    this.again = false;
    this.reloadSoon = debounce(() => this.load({ keep: true }), 500);
    // Below the table: how many are shown, and the next page (index.html has no place).
    this.count = h("span", { id: "schedules-count", class: "muted small" });
    this.more = h("button", { id: "schedules-more", type: "button", class: "small", hidden: true,
      onclick: () => this.load({ more: true }) }, "Load more");
    $("#schedules-empty").after(h("div", { class: "table-foot" }, this.count, this.more));
    $("#schedule-new").addEventListener("click", () => this.edit(null));
    $("#schedule-cancel").addEventListener("click", () => this.dialog.close());
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.save();
    });
  }

  onEvents(batch) {
    if (batch.some((e) => String(e.type).startsWith("schedule."))) this.reloadSoon();
  }

  /** The first page with the statistics; `keep`: as many rows as are shown (a reload);
   * `more`: the next page, added below. */
  async load({ more = false, keep = false } = {}) {
    if (this.loading) {
      if (!more) this.again = true; // a change came mid-load: read again after it
      return;
    }
    this.loading = true;
    this.again = false;
    $("#schedules-error").textContent = "";
    try {
      if (more && this.cursor) {
        const page = await api("GET", "scheduled", { query: { limit: PAGE, cursor: this.cursor } });
        this.rows = [...this.rows, ...page.scheduled_jobs];
        this.cursor = page.next_cursor;
        this.renderRows();
      } else if (!more) {
        const stats = api("GET", "scheduled/stats");
        const want = keep ? Math.max(PAGE, this.rows.length) : PAGE;
        let rows = [];
        let cursor = null;
        do {
          const limit = Math.min(MAX_PAGE, want - rows.length);
          const page = await api("GET", "scheduled", { query: { limit, cursor } });
          rows = rows.concat(page.scheduled_jobs);
          cursor = page.next_cursor;
        } while (cursor && rows.length < want);
        this.render(rows, cursor, (await stats).scheduler_stats);
      }
    } catch (exc) {
      $("#schedules-error").textContent = `Scheduled jobs: ${describe(exc)}`;
    } finally {
      this.loading = false;
      if (this.again) this.load({ keep: true });
    }
  }

  render(schedules, cursor, stats) {
    fill($("#schedule-stats"),
      stat("Schedules", fmtNumber(stats.total_scheduled_jobs)),
      stat("Active", fmtNumber(stats.active_jobs)),
      stat("Paused", fmtNumber(stats.inactive_jobs)),
      stat("Missed runs", fmtNumber(stats.missed_executions)),
      stat("Next run", stats.next_run ? `${fmtTime(stats.next_run)} (${fmtRelative(stats.next_run)})` : "—"));
    this.rows = schedules;
    this.cursor = cursor;
    this.renderRows();
  }

  renderRows() {
    fill($("#schedules-body"), this.rows.map((s) => this._row(s)));
    $("#schedules-empty").hidden = this.rows.length > 0;
    this.more.hidden = !this.cursor;
    this.count.textContent = this.cursor
      ? `${fmtNumber(this.rows.length)} loaded, more available`
      : `${fmtNumber(this.rows.length)} schedule${this.rows.length === 1 ? "" : "s"}`;
  }

  _row(s) {
    const fmtLate = (ms) => (ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`);
    return h("tr", { "data-schedule-id": s.id },
      h("td", {}, h("div", {}, s.name), h("div", { class: "mono muted small" }, s.id)),
      h("td", {}, s.job_type),
      h("td", {}, h("span", { class: "mono" }, s.schedule), h("div", { class: "muted small" }, s.timezone)),
      h("td", { title: s.next_run ?? "" }, s.next_run ? [fmtTime(s.next_run), h("div", { class: "muted small" }, fmtRelative(s.next_run))] : "—"),
      h("td", { title: s.last_run ?? "" }, fmtTime(s.last_run),
        s.last_error ? h("div", { class: "error-text small", title: s.last_error }, s.last_error) : null),
      h("td", { class: "num" }, `${s.runs}${s.missed ? ` / ${s.missed} missed` : ""}`,
        s.lateness ? h("div", { class: "muted small", "data-lateness": "", title: "lateness of its firings (fire − due), p50 / p99" },
          `late ${fmtLate(s.lateness.p50_ms)} / ${fmtLate(s.lateness.p99_ms)}`) : null),
      h("td", { class: "platform-only muted" }, s.company_id ?? "—"),
      h("td", {}, pill(s.is_active ? "active" : "paused")),
      h("td", { class: "actions" },
        h("button", { type: "button", class: "small", "data-action": s.is_active ? "pause" : "resume", onclick: () => this.toggle(s) },
          s.is_active ? "Pause" : "Resume"),
        h("button", { type: "button", class: "small", "data-action": "edit", onclick: () => this.edit(s) }, "Edit"),
        confirmButton("Delete", "Confirm delete", () => this.remove(s), { class: "small danger", "data-action": "delete" })));
  }

  async toggle(s) {
    try {
      await api("PUT", `scheduled/${encodeURIComponent(s.id)}`, { body: { is_active: !s.is_active } });
      toast(`${s.name}: ${s.is_active ? "paused" : "resumed"}`);
      this.load({ keep: true });
    } catch (exc) {
      toast(`${s.name}: ${describe(exc)}`, "error");
    }
  }

  async remove(s) {
    try {
      await api("DELETE", `scheduled/${encodeURIComponent(s.id)}`);
      toast(`Deleted schedule ${s.name}`);
      this.load({ keep: true });
    } catch (exc) {
      toast(`Delete ${s.name}: ${describe(exc)}`, "error");
    }
  }

  async _loadTypes() {
    if (this.typesLoaded) return;
    try {
      const { job_types: types } = await api("GET", "types");
      fill($("#job-type-options"), types.map((t) => h("option", { value: t.type }, t.description || t.type)));
      this.typesLoaded = true;
    } catch {
      // the field stays free text; the API validates the type on save
    }
  }

  edit(s) {
    this.editing = s;
    this._loadTypes();
    const f = this.form.elements;
    $("#schedule-dialog-title").textContent = s ? `Edit ${s.name}` : "New scheduled job";
    f.name.value = s?.name ?? "";
    f.job_type.value = s?.job_type ?? "";
    f.schedule.value = s?.schedule ?? "";
    f.timezone.value = s?.timezone ?? "UTC";
    f.priority.value = s?.priority ?? 5;
    f.misfire_policy.value = s?.misfire_policy ?? "run_once";
    f.is_active.checked = s?.is_active ?? true;
    f.data.value = JSON.stringify(s?.data ?? {}, null, 2);
    this.dataShown = f.data.value;
    $("#schedule-sealed-hint").hidden = !s?.encrypted;
    $("#schedule-error").textContent = "";
    this.dialog.showModal();
    f.name.focus();
  }

  async save() {
    const f = this.form.elements;
    const s = this.editing;
    let data;
    if (!s || f.data.value !== this.dataShown) {
      try {
        data = JSON.parse(f.data.value || "{}");
      } catch (exc) {
        $("#schedule-error").textContent = `data: not valid JSON (${exc.message})`;
        return;
      }
    }
    const body = {
      name: f.name.value.trim(),
      job_type: f.job_type.value.trim(),
      schedule: f.schedule.value.trim(),
      timezone: f.timezone.value.trim() || "UTC",
      priority: Number(f.priority.value),
      misfire_policy: f.misfire_policy.value,
      is_active: f.is_active.checked,
    };
    if (data !== undefined) body.data = data;
    try {
      if (s) await api("PUT", `scheduled/${encodeURIComponent(s.id)}`, { body });
      else await api("POST", "scheduled", { body });
      this.dialog.close();
      toast(s ? `Saved ${body.name}` : `Created ${body.name}`);
      this.load({ keep: true });
    } catch (exc) {
      $("#schedule-error").textContent = describe(exc);
    }
  }
}

function stat(label, value) {
  return h("div", { class: "stat" }, h("span", { class: "label" }, label), h("span", { class: "value" }, value));
}

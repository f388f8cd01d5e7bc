// Daemons and their health: the spec's worker health (healthy / degraded / unhealthy and
// why), the WorkerMetrics summed over the live daemons, and one row per daemon from its
// heartbeat (roles, concurrency, jobs running, readiness, active alerts). They count
// every company's jobs: platform admins only (a company admin's token gets 403).

import { api } from "./api.js";
import { $, fill, fmtNumber, fmtRelative, h, pill, toast } from "./dom.js";
import { describe } from "./jobs.js";

export class DaemonsView {
  async load() {
    $("#daemons-error").textContent = "";
    try {
      const [health, metrics, queues] = await Promise.all([
        api("GET", "worker/health"), api("GET", "worker/metrics"), api("GET", "../queues")]);
      this.render(health, metrics);
      this.renderQueues(queues.queues);
    } catch (exc) {
      $("#daemons-error").textContent = `Daemons: ${describe(exc)}`;
    }
  }

  render(health, { metrics, daemons }) {
    fill($("#daemons-health"),
      h("div", { class: "health-head" }, pill(health.status),
        health.reasons.length ? h("span", {}, health.reasons.join("; ")) : h("span", { class: "muted" }, "no problems")),
      h("div", { class: "stat-row" },
        stat("Worker daemons", fmtNumber(health.workers)),
        stat("Concurrency", fmtNumber(health.concurrency)),
        stat("Backlog", fmtNumber(health.backlog)),
        health.spool ? stat("Spooled", fmtNumber(health.spool.jobs)) : null,
        stat("Success rate", `${health.success_rate}%`),
        stat("Failure rate", `${health.failure_rate}%`),
        stat("Processed", fmtNumber(metrics.jobs_processed)),
        stat("Succeeded", fmtNumber(metrics.jobs_succeeded)),
        stat("Failed", fmtNumber(metrics.jobs_failed)),
        stat("Retried", fmtNumber(metrics.jobs_retried)),
        stat("Average job", metrics.average_job_time),
        stat("Last job", metrics.last_job_time ? fmtRelative(metrics.last_job_time) : "—"),
        stat("Uptime", metrics.uptime)));
    fill($("#daemons-body"), daemons.map((d) => {
      const m = d.metrics ?? {};
      const alerts = Array.isArray(d.alerts) ? d.alerts : [];
      return h("tr", { "data-daemon-id": d.daemon_id },
        h("td", {}, h("div", { class: "mono" }, d.daemon_id), h("div", { class: "muted small" }, `${d.host} · pid ${d.pid}`)),
        h("td", {}, (d.roles ?? []).map((r) => h("span", { class: "tag" }, r))),
        h("td", {}, pill(d.ready ? "ready" : "starting")),
        h("td", { class: "num" }, `${fmtNumber(d.running)} / ${fmtNumber(d.concurrency)}`),
        h("td", { class: "num" }, fmtNumber(m.jobs_processed)),
        h("td", { class: "num" }, fmtNumber(m.jobs_failed)),
        h("td", {}, m.average_job_time ?? "—"),
        h("td", {}, m.uptime ?? "—"),
        h("td", { class: "num", "data-resources": "" }, resources(d.resources)),
        h("td", { title: d.heartbeat_at }, fmtRelative(d.heartbeat_at)),
        h("td", {}, alerts.length ? alerts.map((a) => h("span", { class: "tag bad" }, typeof a === "string" ? a : JSON.stringify(a))) : h("span", { class: "muted" }, "—")));
    }));
    $("#daemons-empty").hidden = daemons.length > 0;
  }
}

// Named queues: paused or active, the live worker daemons serving each (none: its jobs
// wait, the unserved_queue alert), their jobs, those completed and failed in the last
// hour, the throughput (finished per minute over 5 minutes), the queue's own limit under
// its processing count ([limits] queues), and a button to pause or
// resume one on every daemon (POST /api/v1/admin/queues/{name}/pause|resume, audited).
DaemonsView.prototype.renderQueues = function renderQueues(queues) {
  fill($("#queues-body"), queues.map((q) => {
    const verb = q.paused ? "resume" : "pause";
    const button = h("button", { type: "button", class: "small", "data-queue-action": verb }, q.paused ? "Resume" : "Pause");
    button.addEventListener("click", async () => {
      try {
        await api("POST", `../queues/${encodeURIComponent(q.name)}/${verb}`);
        toast(`Queue ${q.name} ${q.paused ? "resumed" : "paused"}`);
      } catch (exc) {
        toast(`Queue ${q.name}: ${describe(exc)}`, "error");
      }
      this.load();
    });
    const daemons = q.daemons ?? [];
    // Scaled from a sample when more than 10,000 jobs are delayed or running.
    const approx = q.estimated ? "≈" : "";
    const about = q.estimated ? "estimated from a sample of 10,000 jobs" : undefined;
    return h("tr", { "data-queue": q.name },
      h("td", { class: "mono" }, q.name),
      h("td", {}, pill(q.paused ? "paused" : "active")),
      h("td", { "data-daemons": daemons.length, title: daemons.join("\n") },
        daemons.length ? fmtNumber(daemons.length) : h("span", { class: "tag bad" }, "none")),
      h("td", { class: "num" }, fmtNumber(q.ready)),
      h("td", { class: "num", "data-waiting": "", title: about }, approx + fmtNumber(q.waiting)),
      h("td", { class: "num", "data-processing": "", title: about }, approx + fmtNumber(q.processing),
        q.limit ? h("div", { class: "muted small", "data-limit": "" }, `limit ${q.limit}`) : null),
      h("td", { class: "num", "data-completed": "" }, fmtNumber(q.completed)),
      h("td", { class: "num", "data-failed": "" }, fmtNumber(q.failed)),
      h("td", { class: "num", "data-throughput": "" }, `${q.throughput}/min`),
      h("td", {}, button));
  }));
};

// CPU %, RSS, open fds and loop lag from the heartbeat (fleetd.runtime.resources).
function resources(r) {
  if (!r) return h("span", { class: "muted" }, "—");
  const mib = (r.rss_bytes / 1048576).toFixed(0);
  return [h("div", {}, `${r.cpu_percent}% · ${mib} MiB`),
    h("div", { class: "muted small" }, `${r.open_fds ?? "?"} fds · lag ${r.loop_lag_ms} ms`)];
}

function stat(label, value) {
  return h("div", { class: "stat" }, h("span", { class: "label" }, label), h("span", { class: "value" }, value ?? "—"));
}

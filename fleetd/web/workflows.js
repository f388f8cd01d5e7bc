// The workflow view (#/workflows/<id>): a workflow's graph, nodes coloured by state.
//
// The graph is laid out in layers (a node one layer below its deepest parent), drawn as
// SVG; each node is a button: a click opens its job. The view reads the workflow once
// (GET /workflows/{id}) and then follows the live feed: `workflow.node` events recolour
// a node (released → pending, completed, failed, cancelled, skipped), `job.started`
// marks it processing, and `workflow.completed|failed|cancelled` update the status.
// Wide layers are drawn up to MAX_PER_LAYER nodes, the rest counted (a 10,000-way
// fan-out is one row of boxes and "+9,900 more").

import { ApiError, api } from "./api.js";
import { $, fill, svg } from "./dom.js";

const NODE_W = 132;
const NODE_H = 34;
const GAP_X = 16;
const GAP_Y = 46;
const MAX_PER_LAYER = 40;
const WORKFLOWS = new URL("../api/v1/admin/workflows/", document.baseURI);
const NODE_STATES = { released: "pending", completed: "completed", failed: "failed", cancelled: "cancelled", skipped: "skipped" };

/** Each node's layer: 0 for nodes without parents, else one below its deepest parent. */
function layers(nodes) {
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const depth = new Map();
  const visit = (n) => {
    if (depth.has(n.name)) return depth.get(n.name);
    depth.set(n.name, 0);  // the graph is acyclic; this only guards a bad answer
    const d = n.depends_on.reduce((m, e) => Math.max(m, byName.has(e.node) ? visit(byName.get(e.node)) + 1 : 0), 0);
    depth.set(n.name, d);
    return d;
  };
  const rows = [];
  for (const n of nodes) (rows[visit(n)] ??= []).push(n);
  return rows;
}

export class WorkflowView {
  constructor({ openJob }) {
    this.openJob = openJob;
    this.id = null;
    this.boxes = new Map();  // job id → the node's <g>
    $("#workflow-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const id = $("#workflow-id").value.trim();
      if (id) location.hash = `#/workflows/${encodeURIComponent(id)}`;
    });
  }

  async show(id) {
    if (!id) return;
    this.id = id;
    $("#workflow-id").value = id;
    $("#workflow-error").textContent = "";
    try {
      const url = new URL(encodeURIComponent(id), WORKFLOWS);
      const body = await api("GET", url.href);
      if (this.id === id) this.draw(body.workflow);
    } catch (exc) {
      fill($("#workflow-graph"));
      $("#workflow-error").textContent = exc instanceof ApiError ? exc.message : String(exc);
    }
  }

  draw(wf) {
    this.boxes.clear();
    $("#workflow-status").textContent = wf.status;
    $("#workflow-status").className = `pill s-${wf.status}`;
    $("#workflow-name").textContent = `${wf.name} · ${wf.total} nodes`;
    const rows = layers(wf.nodes);
    const widest = Math.min(MAX_PER_LAYER, Math.max(...rows.map((r) => r.length)));
    const width = widest * (NODE_W + GAP_X) + GAP_X;
    const height = rows.length * (NODE_H + GAP_Y) + GAP_Y;
    const pos = new Map();
    const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "wf-graph" });
    const edges = svg("g", { class: "wf-edges" });
    const nodes = svg("g", { class: "wf-nodes" });
    rows.forEach((row, y) => {
      const shown = row.slice(0, MAX_PER_LAYER);
      const offset = (width - shown.length * (NODE_W + GAP_X) - GAP_X) / 2;
      shown.forEach((n, x) => {
        const px = offset + GAP_X + x * (NODE_W + GAP_X);
        const py = GAP_Y / 2 + y * (NODE_H + GAP_Y);
        pos.set(n.name, [px, py]);
        const g = svg("g", { class: `wf-node s-${n.state}`, transform: `translate(${px},${py})`, tabindex: 0,
          role: "button", "data-name": n.name, "data-job": n.job_id, "data-state": n.state },
        svg("title", {}, `${n.name} (${n.type}): ${n.state}${n.error ? ` — ${n.error}` : ""}`),
        svg("rect", { width: NODE_W, height: NODE_H, rx: 7 }),
        svg("text", { x: NODE_W / 2, y: NODE_H / 2 + 4, "text-anchor": "middle" }, n.name.length > 18 ? `${n.name.slice(0, 17)}…` : n.name));
        g.addEventListener("click", () => this.openJob(n.job_id));
        g.addEventListener("keydown", (e) => { if (e.key === "Enter") this.openJob(n.job_id); });
        nodes.append(g);
        this.boxes.set(n.job_id, g);
      });
      if (row.length > shown.length) {
        nodes.append(svg("text", { x: width - GAP_X, y: GAP_Y / 2 + y * (NODE_H + GAP_Y) - 6, "text-anchor": "end", class: "wf-more" },
          `+${(row.length - shown.length).toLocaleString()} more`));
      }
    });
    for (const n of wf.nodes) {
      const to = pos.get(n.name);
      if (!to) continue;
      for (const e of n.depends_on) {
        const from = pos.get(e.node);
        if (!from) continue;
        edges.append(svg("line", { x1: from[0] + NODE_W / 2, y1: from[1] + NODE_H, x2: to[0] + NODE_W / 2, y2: to[1],
          class: `wf-edge on-${e.on}` }));
      }
    }
    root.append(edges, nodes);
    fill($("#workflow-graph"), root);
  }

  /** Live events: recolour the nodes of the workflow shown. */
  onEvents(events) {
    if (!this.id) return;
    for (const e of events) {
      const box = this.boxes.get(e.job_id);
      if (e.type === "workflow.node" && box && e.data?.workflow === this.id) {
        this.paint(box, NODE_STATES[e.status] ?? e.status);
      } else if (e.type === "job.started" && box) {
        this.paint(box, "processing");
      } else if (e.type.startsWith("workflow.") && e.job_id === this.id) {
        $("#workflow-status").textContent = e.status;
        $("#workflow-status").className = `pill s-${e.status}`;
      }
    }
  }

  paint(box, state) {
    box.setAttribute("class", `wf-node s-${state}`);
    box.dataset.state = state;
  }
}


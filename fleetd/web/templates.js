// Templates (#/templates): the latest version of each template the token sees — a
// company admin its company's and the platform's (the API scopes the list), a platform
// admin every one — with its kind, version, owner, description and parameters. The list
// reloads when a `template.saved` event arrives on the live feed.

import { api } from "./api.js";
import { $, debounce, fill, fmtTime, h, pill } from "./dom.js";
import { describe } from "./jobs.js";

const TEMPLATES = new URL("../api/v1/admin/templates", document.baseURI);

/** "company (string, required), month (string, required), rows = 10". */
function paramsText(schema) {
  const props = schema?.properties ?? {};
  const required = new Set(schema?.required ?? []);
  const parts = Object.entries(props).map(([name, p]) => {
    const type = p && typeof p === "object" && p.type ? ` (${p.type}${required.has(name) ? ", required" : ""})` : "";
    const dflt = p && typeof p === "object" && "default" in p ? ` = ${JSON.stringify(p.default)}` : "";
    return `${name}${type}${dflt}`;
  });
  return parts.length ? parts.join(", ") : "—";
}

export class TemplatesView {
  constructor() {
    this.reloadSoon = debounce(() => this.load(), 500);
  }

  onEvents(batch) {
    if (batch.some((e) => String(e.type).startsWith("template."))) this.reloadSoon();
  }

  async load() {
    $("#templates-error").textContent = "";
    try {
      const body = await api("GET", TEMPLATES.href);
      this.render(body.templates);
    } catch (exc) {
      $("#templates-error").textContent = `Templates: ${describe(exc)}`;
    }
  }

  render(templates) {
    fill($("#templates-body"), templates.map((t) => h("tr", { "data-template": t.name, "data-company": t.company_id ?? "" },
      h("td", {}, h("div", { class: "mono" }, t.name), t.description ? h("div", { class: "muted small" }, t.description) : null),
      h("td", {}, pill(t.kind)),
      h("td", { class: "num" }, `v${t.latest}`),
      h("td", { class: "muted" }, t.company_id ?? "platform"),
      h("td", { class: "small" }, paramsText(t.params)),
      h("td", { title: t.created_at ?? "" }, fmtTime(t.created_at)))));
    $("#templates-empty").hidden = templates.length > 0;
  }
}

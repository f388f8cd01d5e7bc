// DOM and formatting helpers of the dashboard. Every string from the API (job data,
// errors, names) reaches the page through textContent or an attribute, never as HTML:
// job data and error messages are attacker-controlled.

/** Build an element: h("td", {class: "id", title: x}, "text", childNode, ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

/** The same for SVG elements (the chart). */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace every child of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** Call `fn` at most once per `ms`, trailing: a burst of events costs one refresh. */
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

const pad = (n) => String(n).padStart(2, "0");

/** "14:03:09" for today, "2024-01-15 14:03" otherwise; "—" for nothing. */
export function fmtTime(value) {
  if (value === undefined || value === null || value === "") return "—";
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  const now = new Date();
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  if (d.toDateString() === now.toDateString()) return time;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time.slice(0, 5)}`;
}

/** "3 s ago", "in 5 min", from a timestamp. */
export function fmtRelative(value) {
  if (!value) return "—";
  const ms = new Date(value).getTime() - Date.now();
  if (Number.isNaN(ms)) return String(value);
  const text = fmtSpan(Math.abs(ms) / 1000);
  return ms < 0 ? `${text} ago` : `in ${text}`;
}

export function fmtSpan(seconds) {
  if (seconds < 1) return "now";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

export function fmtNumber(n) {
  return typeof n === "number" ? n.toLocaleString("en-US") : "—";
}

/** Pretty JSON for a <pre>; long bodies are cut so that a huge result cannot stall the page. */
export function fmtJson(value, limit = 20000) {
  const text = JSON.stringify(value, null, 2) ?? "";
  return text.length > limit ? `${text.slice(0, limit)}\n… (${text.length - limit} more characters)` : text;
}

/** A one-line summary of an object, for table cells and feed rows. */
export function fmtInline(value, limit = 120) {
  if (value === undefined || value === null) return "";
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > limit ? `${text.slice(0, limit - 1)}…` : text;
}

/** A coloured pill for a job status (or any short state word). */
export function pill(status) {
  return h("span", { class: `pill s-${String(status).replace(/[^a-z_]/g, "")}` }, status);
}

/** A button that acts only on a second click within 4 s ("Cancel" → "Confirm cancel?"). */
export function confirmButton(label, confirmLabel, action, attrs = {}) {
  let armed = null;
  const button = h("button", { type: "button", ...attrs }, label);
  button.addEventListener("click", async (event) => {
    event.stopPropagation();
    if (!armed) {
      button.textContent = confirmLabel;
      button.classList.add("armed");
      armed = setTimeout(() => {
        armed = null;
        button.textContent = label;
        button.classList.remove("armed");
      }, 4000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    button.disabled = true;
    button.textContent = "…";
    try {
      await action();
    } finally {
      button.disabled = false;
      button.textContent = label;
      button.classList.remove("armed");
    }
  });
  return button;
}

/** A short notice at the bottom of the page; errors stay longer. */
export function toast(message, kind = "info") {
  // A modal dialog sits in the top layer, above the page's toasts: show them inside it.
  const dialog = document.querySelector("dialog[open]");
  let box = $("#toasts");
  if (dialog) {
    box = $(".toasts", dialog) ?? dialog.appendChild(h("div", { class: "toasts", "aria-live": "polite" }));
  }
  const item = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" }, message);
  box.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 8000 : 3500);
}

// The fleetd dashboard: login, navigation and the wiring of the views.
//
// Log in with an admin bearer token (`fleetd token`, or one the platform issues). The
// token is kept in sessionStorage (this tab only) and sent as `Authorization: Bearer`
// on every API call; its claims are decoded here for display only — the API verifies
// it. A 401 from any call, a refused live feed (close 1008) or the token's `exp`
// passing brings the login form back with the reason. Log out forgets the token.

import { AnalyticsView, CapacityView } from "./analytics.js";
import { api, claims, session } from "./api.js";
import { DaemonsView } from "./daemons.js";
import { $, fill, fmtSpan, h } from "./dom.js";
import { JobDetail, JobsView, describe } from "./jobs.js";
import { LiveFeed } from "./live.js";
import { Overview } from "./overview.js";
import { SchedulesView } from "./schedules.js";
import { TemplatesView } from "./templates.js";
import { WorkflowView } from "./workflows.js";

const VIEWS = ["overview", "jobs", "scheduled", "workflows", "templates", "analytics", "capacity", "daemons"];
// Why the login form is back (shown once after the reload of a log out).
const NOTICE_KEY = "fleetd.notice";
const DAEMONS_POLL_MS = 10000;
const LIVE_TEXT = {
  connecting: "connecting…",
  live: "live",
  reconnecting: "reconnecting…",
  stopped: "offline",
};

let identity = null;
let expiryTimer = null;
let expiryLabel = null;
let daemonsTimer = null;

const live = new LiveFeed();
const detail = new JobDetail();
const openJob = (id) => detail.open(id);
const overview = new Overview({ openJob, platform: () => identity?.platform ?? false });
const jobs = new JobsView({ openJob, platform: () => identity?.platform ?? false });
const schedules = new SchedulesView();
const daemons = new DaemonsView();
const analytics = new AnalyticsView();
const capacity = new CapacityView();
const workflows = new WorkflowView({ openJob });
const templates = new TemplatesView();

live.addEventListener("events", (e) => {
  overview.onEvents(e.detail);
  jobs.onEvents(e.detail);
  detail.onEvents(e.detail);
  schedules.onEvents(e.detail);
  workflows.onEvents(e.detail);
  templates.onEvents(e.detail);
});
live.addEventListener("state", (e) => {
  const { state, reason } = e.detail;
  if (state === "live") overview.onLive();
  const box = $("#live");
  box.dataset.state = state;
  $("#live-text").textContent = LIVE_TEXT[state] ?? state;
  box.title = reason ? `Live feed: ${reason}` : "Live feed of job events";
  $("#feed-state").textContent = state === "live" ? "" : reason ? `Live feed ${LIVE_TEXT[state]} (${reason})` : `Live feed ${LIVE_TEXT[state]}`;
});

/** Who the token says the caller is; throws with a readable reason when it cannot be. */
function identify(token) {
  const c = claims(token);
  const now = Date.now() / 1000;
  if (typeof c.exp === "number" && c.exp <= now) throw new Error("this token has expired");
  return {
    subject: String(c.sub ?? "unknown"),
    company: c.company_id === undefined || c.company_id === null ? null : String(c.company_id),
    platform: c.company_id === undefined || c.company_id === null,
    exp: typeof c.exp === "number" ? c.exp : null,
  };
}

function showLogin(message = "") {
  $("#shell").hidden = true;
  $("#login").hidden = false;
  const error = $("#login-error");
  error.textContent = message;
  error.hidden = !message;
  $("#token").value = "";
  $("#token").focus();
}

async function login(event) {
  event.preventDefault();
  const token = $("#token").value.trim().replace(/^Bearer\s+/i, "");
  const button = $("#login-submit");
  try {
    identify(token);
  } catch (exc) {
    showLogin(`Not a usable token: ${exc.message}`);
    return;
  }
  session.set(token);
  button.disabled = true;
  try {
    // Any admin may read the job types (worker health is for platform admins only): a
    // cheap check that the API accepts the token.
    await api("GET", "types");
  } catch (exc) {
    session.clear();
    showLogin(exc.status === 401 || exc.status === 403 ? `Refused: ${exc.message}` : describe(exc));
    return;
  } finally {
    button.disabled = false;
  }
  enter();
}

function enter() {
  identity = identify(session.token);
  $("#login").hidden = true;
  $("#shell").hidden = false;
  document.body.classList.toggle("platform", identity.platform);
  fill($("#who"),
    h("span", { class: "subject", title: "Token subject (sub)" }, identity.subject),
    identity.platform
      ? h("span", { class: "scope platform", title: "A token without company_id sees every company" }, "platform admin")
      : h("span", { class: "scope company", title: "This token sees only this company's jobs and schedules" }, `company ${identity.company}`));
  clearTimeout(expiryTimer);
  clearInterval(expiryLabel);
  if (identity.exp !== null) {
    const ms = identity.exp * 1000 - Date.now();
    const label = () => {
      $("#expiry").textContent = `token expires in ${fmtSpan(identity ? identity.exp - Date.now() / 1000 : 0)}`;
    };
    label();
    expiryLabel = setInterval(label, 30000);
    // setTimeout's limit is ~24.8 days; a longer-lived token is checked by the API anyway.
    if (ms < 2 ** 31 - 1) expiryTimer = setTimeout(() => logout("Your token expired: log in with a new one."), ms);
  } else {
    $("#expiry").textContent = "";
  }
  live.start();
  overview.start();
  route();
}

/** Forget the token and everything this session saw (the next token may see less): the
 * page reloads, so no counter, row, chart bucket or request in flight outlives it. */
function logout(message = "") {
  live.stop();
  identity = null;
  session.clear();
  sessionStorage.setItem(NOTICE_KEY, message);
  location.replace(location.pathname);
}

function route() {
  if (!identity) return;
  const [, name = "overview", arg] = location.hash.split("/");
  const view = VIEWS.includes(name) ? name : "overview";
  for (const v of VIEWS) $(`#view-${v}`).hidden = v !== view;
  for (const link of document.querySelectorAll("nav.views a")) {
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  clearInterval(daemonsTimer);
  if (view === "jobs") jobs.show(arg ?? jobs.status);
  if (view === "scheduled") schedules.load();
  if (view === "workflows") workflows.show(arg ? decodeURIComponent(arg) : null);
  if (view === "templates") templates.load();
  if (view === "analytics") analytics.load();
  if (view === "capacity") capacity.load();
  if (view === "daemons") {
    daemons.load();
    daemonsTimer = setInterval(() => daemons.load(), DAEMONS_POLL_MS);
  }
}

$("#login-form").addEventListener("submit", login);
$("#logout").addEventListener("click", () => logout("Logged out."));
window.addEventListener("hashchange", route);
window.addEventListener("fleetd:unauthorized", (e) => {
  if (identity) logout(`Signed out: ${e.detail}`);
});

const notice = sessionStorage.getItem(NOTICE_KEY) ?? "";
sessionStorage.removeItem(NOTICE_KEY);
if (session.token) {
  try {
    enter();
  } catch (exc) {
    logout(`Log in again: ${exc.message}`);
  }
} else {
  showLogin(notice);
}

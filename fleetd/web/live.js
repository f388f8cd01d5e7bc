// The live event feed: one WebSocket to GET /api/v1/admin/jobs/events, opened with a
// single-use ticket (browsers cannot set an Authorization header on a WebSocket).
//
// Lifecycle: start() → "connecting" (POST events/ticket, open the socket) → "live"
// (after the server's {"type":"subscribed"} frame) → on close:
//   1013 "subscriber fell behind…" → reconnect at once, resuming after the last event
//                        seen (the replay catches up);
//   1013 otherwise      → ("too many subscribers", "redis unavailable": the daemon is
//                        short of something) reconnect with backoff;
//   1008 token refused  → the session is over ("fleetd:unauthorized", back to login);
//   1001 daemon leaving → reconnect with backoff (another daemon, or this one restarted);
//   anything else       → reconnect with backoff.
// The backoff starts over once an event arrives, not at the handshake: a daemon that
// accepts and then closes at once (full, Redis down) must not be retried in a loop.
// Every reconnect asks for a fresh ticket and passes ?last_event_id=, so the server
// replays what was missed. stop() closes it for good (log out).
//
// The socket asks for batch frames (?batch=1): an event frame is a JSON array of events
// (control frames — subscribed, gap, error — stay objects), so a busy stream costs the
// daemon one frame per send instead of one per event. Events are handed to the page in
// batches, at most every FLUSH_MS: a busy queue sends thousands a second and the page
// must not re-render for each. (A timer, not requestAnimationFrame: frames stop in a
// background tab and the batch would grow.)

import { API_BASE, ApiError, api } from "./api.js";

// Backoff between reconnects: 0.5 s doubling to 15 s, with ±20 % jitter so that many
// open dashboards do not hit a restarted daemon in step.
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15000;
const CLOSE_TRY_AGAIN = 1013;
const REASON_BEHIND = "subscriber fell behind"; // see fleetd/api/ws_session.py
const CLOSE_POLICY = 1008;
const CLOSE_GOING_AWAY = 1001;
const FLUSH_MS = 100;

export class LiveFeed extends EventTarget {
  constructor() {
    super();
    this.state = "stopped";
    this.reason = "";
    this.lastEventId = null;
    this.socket = null;
    this._failures = 0;
    this._timer = null;
    this._pending = [];
    this._frame = null;
    this._generation = 0;
  }

  start() {
    this.stop();
    this.lastEventId = null; // a new session starts from now; it replays nothing
    this._failures = 0;
    this._generation += 1;
    this._connect(this._generation);
  }

  stop() {
    this._generation += 1;
    clearTimeout(this._timer);
    // Events received but not yet delivered belong to this session: drop them.
    clearTimeout(this._frame);
    this._frame = null;
    this._pending = [];
    if (this.socket) {
      this.socket.onclose = null;
      this.socket.close(1000, "logged out");
      this.socket = null;
    }
    this._setState("stopped", "");
  }

  _setState(state, reason) {
    this.state = state;
    this.reason = reason;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, reason } }));
  }

  async _connect(generation) {
    this._setState(this._failures ? "reconnecting" : "connecting", this.reason);
    let ticket;
    try {
      ticket = (await api("POST", "events/ticket")).ticket;
    } catch (exc) {
      if (generation !== this._generation) return;
      if (exc instanceof ApiError && exc.status === 401) return; // the session ends
      this._retry(generation, `no ticket: ${exc.message}`);
      return;
    }
    if (generation !== this._generation) return;
    const url = new URL("events", API_BASE);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("ticket", ticket);
    url.searchParams.set("batch", "1");
    if (this.lastEventId) url.searchParams.set("last_event_id", this.lastEventId);
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.onmessage = (message) => this._receive(message);
    socket.onclose = (close) => {
      if (generation !== this._generation) return;
      this.socket = null;
      this._closed(generation, close);
    };
  }

  _receive(message) {
    let frame;
    try {
      frame = JSON.parse(message.data);
    } catch {
      return; // not ours to interpret
    }
    if (frame.type === "subscribed") {
      if (frame.last_event_id && !this.lastEventId) this.lastEventId = frame.last_event_id;
      this._setState("live", "");
      return;
    }
    if (frame.type === "error") {
      console.warn("live feed:", frame.error?.message ?? frame);
      return;
    }
    const events = Array.isArray(frame) ? frame : [frame];
    if (!events.length) return;
    const last = events[events.length - 1];
    if (last.id) this.lastEventId = last.id;
    this._failures = 0; // the connection works: the next failure backs off from the start
    for (const event of events) this._pending.push(event);
    if (this._frame === null) {
      this._frame = setTimeout(() => this._flush(), FLUSH_MS);
    }
  }

  _flush() {
    this._frame = null;
    const batch = this._pending;
    this._pending = [];
    if (batch.length) this.dispatchEvent(new CustomEvent("events", { detail: batch }));
  }

  _closed(generation, close) {
    const why = close.reason || `closed (${close.code})`;
    if (close.code === CLOSE_POLICY) {
      this._setState("stopped", why);
      window.dispatchEvent(new CustomEvent("fleetd:unauthorized", { detail: `live feed: ${why}` }));
      return;
    }
    if (close.code === CLOSE_TRY_AGAIN && close.reason.startsWith(REASON_BEHIND)) {
      // Fell behind: resume at once from the last event seen; the server replays.
      this._failures = 0;
      this._connect(generation);
      return;
    }
    const reason = close.code === CLOSE_GOING_AWAY ? "daemon stopping" : why;
    this._retry(generation, reason);
  }

  _retry(generation, reason) {
    this._failures += 1;
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (this._failures - 1));
    const delay = base * (0.8 + Math.random() * 0.4);
    this._setState("reconnecting", reason);
    clearTimeout(this._timer);
    this._timer = setTimeout(() => {
      if (generation === this._generation) this._connect(generation);
    }, delay);
  }
}

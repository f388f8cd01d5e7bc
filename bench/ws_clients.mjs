// Events-feed subscribers for bench/ws_fanout.py, in Node.js: cheap enough per frame that
// the clients, not the daemon, stop being the limit of the measurement.
//
// Opens `--count` WebSocket connections to `--url` (the feed, `?batch=1` for batch
// frames), `--parallel` handshakes at a time, authenticated with `--token`:
// - with the npm `ws` package (`npm install --prefix bench/.node ws`, git-ignored): the
//   Authorization header, permessage-deflate off unless `--deflate` (the Python clients
//   do not offer it either);
// - otherwise Node's built-in WebSocket (Node 20.10+ with --experimental-websocket; 22+
//   by default): it cannot set headers, so each connection first gets a ticket
//   (POST …/events/ticket); it always offers permessage-deflate, which the daemon
//   accepts — every frame is then compressed once per subscriber (what browsers cost).
//
// Protocol with the driver: when every subscriber got its `subscribed` frame, prints one
// line `{"up": n}`; then reads one line from stdin, the wall time (ms since the epoch) to
// stop at; at that time closes everything and prints one JSON line: events and frames per
// subscriber, the delivery latencies of the first `--sample` subscribers (every event of
// theirs is parsed: receive time − the event's `ts`, both this host's clock, in ms), and
// the sessions closed before the stop, by close code. The other subscribers count events
// with a byte scan (`{"id":` opens each event) instead of parsing.
//
// Run by ws_fanout.py (`--client node`); alone:
//   node bench/ws_clients.mjs --url ws://127.0.0.1:8080/api/v1/admin/jobs/events?batch=1 \
//     --token JWT --count 100 --sample 10

import { createRequire } from "node:module";
import { createInterface } from "node:readline";
import { performance } from "node:perf_hooks";

function parseArgs(argv) {
  const opts = { count: 100, sample: 20, parallel: 50, deflate: false, builtin: false };
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i].replace(/^--/, "");
    if (name === "deflate" || name === "builtin") {
      opts[name] = true;
    } else {
      const value = argv[++i];
      opts[name] = ["count", "sample", "parallel"].includes(name) ? Number(value) : value;
    }
  }
  if (!opts.url || !opts.token) {
    throw new Error("--url and --token are required");
  }
  return opts;
}

function loadWs() {
  const here = new URL(".", import.meta.url).pathname;
  try {
    return createRequire(here + ".node/package.json")("ws");
  } catch {
    return null;
  }
}

const opts = parseArgs(process.argv.slice(2));
const WsLib = opts.builtin ? null : loadWs();
if (!WsLib && typeof WebSocket === "undefined") {
  throw new Error("no WebSocket client: npm install --prefix bench/.node ws, or node 22+");
}
const now = () => performance.timeOrigin + performance.now();
const MARK = Buffer.from('{"id":');

const events = new Array(opts.count).fill(0);
const frames = new Array(opts.count).fill(0);
const latencies = [];
const closes = {}; // close code → sessions closed before the stop
const sockets = [];
let stopping = false;
let up = 0;

function countEvents(buf) {
  if (buf[0] !== 0x5b) return 1; // "[": a batch; otherwise one event (or a control frame)
  let n = 0;
  for (let at = buf.indexOf(MARK); at !== -1; at = buf.indexOf(MARK, at + 6)) n++;
  return n;
}

function onFrame(i, data) {
  const t = now();
  frames[i]++;
  if (i >= opts.sample) {
    events[i] += countEvents(typeof data === "string" ? Buffer.from(data) : data);
    return;
  }
  const body = JSON.parse(data.toString());
  const batch = Array.isArray(body) ? body : [body];
  events[i] += batch.length;
  for (const ev of batch) latencies.push(t - ev.ts);
}

async function ticketUrl() {
  const base = opts.url.replace(/^ws/, "http").replace(/\?.*$/, "");
  const res = await fetch(base + "/ticket", {
    method: "POST",
    headers: { Authorization: `Bearer ${opts.token}` },
  });
  if (res.status !== 201) throw new Error(`ticket: HTTP ${res.status}`);
  const { ticket } = await res.json();
  return opts.url + (opts.url.includes("?") ? "&" : "?") + "ticket=" + ticket;
}

async function open(i) {
  let ws;
  if (WsLib) {
    ws = new WsLib(opts.url, {
      headers: { Authorization: `Bearer ${opts.token}` },
      perMessageDeflate: opts.deflate,
      skipUTF8Validation: true,
    });
  } else {
    ws = new WebSocket(await ticketUrl());
    ws.binaryType = "nodebuffer";
  }
  sockets.push(ws);
  await new Promise((resolve, reject) => {
    let subscribed = false;
    const onMessage = (data) => {
      if (!subscribed) {
        subscribed = true; // the `subscribed` control frame
        up++;
        resolve();
        return;
      }
      onFrame(i, data);
    };
    const onClose = (code) => {
      if (!subscribed) reject(new Error(`closed (${code}) before subscribed`));
      if (!stopping) closes[code] = (closes[code] ?? 0) + 1;
    };
    if (WsLib) {
      ws.on("message", onMessage);
      ws.on("close", onClose);
      ws.on("error", (err) => subscribed || reject(err));
    } else {
      ws.onmessage = (e) => onMessage(e.data);
      ws.onclose = (e) => onClose(e.code);
      ws.onerror = () => subscribed || reject(new Error("handshake failed"));
    }
  });
}

async function connectAll() {
  let next = 0;
  const worker = async () => {
    while (next < opts.count) await open(next++);
  };
  await Promise.all(Array.from({ length: Math.min(opts.parallel, opts.count) }, worker));
}

function report() {
  const out = { client: WsLib ? "ws" : "builtin", events, frames, latencies, closes };
  process.stdout.write(JSON.stringify(out) + "\n", () => process.exit(0));
}

await connectAll();
process.stdout.write(JSON.stringify({ up }) + "\n");
const lines = createInterface({ input: process.stdin });
lines.once("line", (line) => {
  const stopAt = Number(line);
  setTimeout(() => {
    stopping = true;
    for (const ws of sockets) {
      if (WsLib) ws.terminate();
      else ws.close();
    }
    report();
  }, Math.max(0, stopAt - Date.now()));
});

// BullMQ's side of bench/drain_blocking.py: the same job as fleetd's, one INCR on the
// worker's own Redis connection (ioredis), so the two systems are compared on equal work.
//
//   node bench/drain_blocking.mjs produce --modules DIR --url URL --queue Q --jobs N --key K
//     adds N jobs {key: K} with addBulk (1,000 per call), prints {"produced": N}, exits;
//   node bench/drain_blocking.mjs work --modules DIR --url URL --queue Q --concurrency C
//     one Worker at concurrency C; prints {"ready": true} once connected, runs until
//     SIGTERM, then closes (finishing its running jobs) and exits 0.
//
// DIR is a node_modules folder holding bullmq and ioredis (drain_blocking.py installs
// them into a scratch folder outside the repository, or takes --node-modules).

import { createRequire } from "node:module";
import { join } from "node:path";

// addBulk chunk: one MULTI per chunk; 1,000 keeps each under ~1 MB of commands.
const BULK = 1000;

function parseArgs(argv) {
  const opts = { mode: argv[0], concurrency: 50, jobs: 0 };
  for (let i = 1; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, "");
    const value = argv[i + 1];
    opts[name] = ["concurrency", "jobs"].includes(name) ? Number(value) : value;
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const require = createRequire(join(opts.modules, "noop.js"));
const { Queue, Worker } = require("bullmq");
const IORedis = require("ioredis");

function connection() {
  // BullMQ requires maxRetriesPerRequest null on a worker's blocking connection.
  return new IORedis(opts.url, { maxRetriesPerRequest: null });
}

if (opts.mode === "produce") {
  const queue = new Queue(opts.queue, { connection: connection() });
  for (let done = 0; done < opts.jobs; done += BULK) {
    const n = Math.min(BULK, opts.jobs - done);
    await queue.addBulk(Array.from({ length: n }, () => ({ name: "incr", data: { key: opts.key } })));
  }
  await queue.close();
  console.log(JSON.stringify({ produced: opts.jobs }));
  process.exit(0);
} else if (opts.mode === "work") {
  // The handler's own connection, as a real handler would have (not BullMQ's).
  const own = new IORedis(opts.url);
  const worker = new Worker(
    opts.queue,
    async (job) => {
      await own.incr(job.data.key);
      return {};
    },
    { connection: connection(), concurrency: opts.concurrency },
  );
  await worker.waitUntilReady();
  console.log(JSON.stringify({ ready: true }));
  process.on("SIGTERM", async () => {
    await worker.close();
    own.disconnect();
    process.exit(0);
  });
} else {
  console.error(`unknown mode ${opts.mode}: use produce or work`);
  process.exit(2);
}

// One peer's job queue, measured as Steward's `queue` bench measures its own:
// JOBS no-op jobs enqueued one at a time, then one worker process at the given
// concurrency runs them all; run jobs/s is jobs over the time from the
// worker's start to the last handler call. With `batch-enqueue` instead of a
// concurrency, the same number of jobs go in 1,000 per call.
//
//   node queue.mjs <graphile-worker|pg-boss|pg-boss-batch|bullmq> <concurrency|batch-enqueue>
//
// DATABASE_URL: a PostgreSQL server (each run makes and drops a database of
// its own); REDIS_URL for BullMQ; JOBS (default 3000); STEWARD_BENCH_RESULTS:
// the file the figures are appended to as JSON lines.

import { randomUUID } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { freshDatabase } from './database.mjs';

const [peer, how] = process.argv.slice(2);
const jobs = Number(process.env.JOBS ?? 3000);
const batchEnqueue = how === 'batch-enqueue';
const concurrency = batchEnqueue ? 0 : Number(how);

const PEERS = {
  'graphile-worker': { system: 'graphile-worker 0.18', store: 'PostgreSQL', open: graphileWorker },
  'pg-boss': { system: 'pg-boss 12 (one job per handler call)', store: 'PostgreSQL', open: pgBoss(false) },
  'pg-boss-batch': { system: 'pg-boss 12 (batches of jobs per handler call)', store: 'PostgreSQL', open: pgBoss(true) },
  bullmq: { system: 'BullMQ 6', store: 'Redis', open: bullmq },
};

// Each peer: enqueue(n), enqueueMany(ns), ready() before the clock starts,
// work(concurrency, onJobs) → stop, close().
async function graphileWorker(url) {
  const { makeWorkerUtils, run, Logger } = await import('graphile-worker');
  const { default: pg } = await import('pg');
  const quiet = new Logger(() => () => {});
  const utils = await makeWorkerUtils({ connectionString: url, logger: quiet });
  await utils.migrate();
  return {
    enqueue: (n) => utils.addJob('noop', { n }),
    enqueueMany: (ns) => utils.addJobs(ns.map((n) => ({ identifier: 'noop', payload: { n } }))),
    async work(concurrency, onJobs) {
      // The runner's pool is ours (10 connections, as graphile-worker makes
      // its own), so that it is ended before the database is dropped: a
      // session the drop ends otherwise crashed the run with an unhandled
      // pool error.
      const pool = new pg.Pool({ connectionString: url, max: 10 });
      pool.on('error', () => {});
      pool.on('connect', (client) => client.on('error', () => {}));
      const runner = await run({
        pgPool: pool,
        concurrency,
        noHandleSignals: true,
        logger: quiet,
        taskList: { noop: async () => onJobs(1) },
      });
      return async () => {
        await runner.stop();
        await pool.end();
      };
    },
    ready: async () => {},
    close: () => utils.release(),
  };
}

function pgBoss(batches) {
  return async (url) => {
    const { PgBoss } = await import('pg-boss');
    // The queue's cached backlog (what lets a worker fetch without pausing)
    // is refreshed every second, the least pg-boss allows.
    const boss = new PgBoss({ connectionString: url, queueCacheIntervalSeconds: 1, monitorIntervalSeconds: 1, superviseIntervalSeconds: 1, max: 40 });
    boss.on('error', (e) => console.error(e));
    await boss.start();
    await boss.createQueue('bench');
    return {
      enqueue: (n) => boss.send('bench', { n }),
      enqueueMany: (ns) => boss.insert('bench', ns.map((n) => ({ data: { n } }))),
      // Lets the cache see the backlog, as it would in a long-running process.
      ready: () => sleep(1500),
      async work(concurrency, onJobs) {
        const options = batches
          ? { batchSize: concurrency, burstWhenBatchFull: true, pollingIntervalSeconds: 0.5 }
          : { localConcurrency: concurrency, burstWhenReadyExceeds: 1, pollingIntervalSeconds: 0.5 };
        await boss.work('bench', options, async (batch) => onJobs(batch.length));
        return () => boss.offWork('bench', { wait: true });
      },
      close: () => boss.stop({ graceful: true }),
    };
  };
}

async function bullmq() {
  const { Queue, Worker } = await import('bullmq');
  const { Redis } = await import('ioredis');
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  // A worker's connection blocks; BullMQ asks for no per-command retry limit.
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const name = `bench-${randomUUID()}`;
  const queue = new Queue(name, { connection });
  return {
    enqueue: (n) => queue.add('noop', { n }),
    enqueueMany: (ns) => queue.addBulk(ns.map((n) => ({ name: 'noop', data: { n } }))),
    ready: async () => {},
    async work(concurrency, onJobs) {
      // BullMQ closes only the connections it made itself.
      const blocking = new Redis(redisUrl, { maxRetriesPerRequest: null });
      const worker = new Worker(name, async () => onJobs(1), { connection: blocking, concurrency });
      return async () => {
        await worker.close();
        blocking.disconnect();
      };
    },
    async close() {
      await queue.obliterate({ force: true });
      await queue.close();
      connection.disconnect();
    },
  };
}

function record(figure) {
  const file = process.env.STEWARD_BENCH_RESULTS;
  if (file) appendFileSync(file, `${JSON.stringify(figure)}\n`);
}

if (!PEERS[peer] || !(batchEnqueue || concurrency > 0)) {
  console.error('usage: node queue.mjs <graphile-worker|pg-boss|pg-boss-batch|bullmq> <concurrency|batch-enqueue>');
  process.exit(2);
}
const { system, store, open } = PEERS[peer];
const database = store === 'PostgreSQL' ? await freshDatabase() : null;
const queue = await open(database?.url);
const numbers = [...Array(jobs).keys()];
if (batchEnqueue) {
  const started = performance.now();
  for (let i = 0; i < jobs; i += 1000) await queue.enqueueMany(numbers.slice(i, i + 1000));
  const rate = jobs / ((performance.now() - started) / 1000);
  console.log(`| ${system} | ${jobs} | ${rate.toFixed(0)} |`);
  record({ bench: 'batch-enqueue', system, store, jobs, rate });
} else {
  let started = performance.now();
  for (const n of numbers) await queue.enqueue(n);
  const enqueue = jobs / ((performance.now() - started) / 1000);
  let done = 0;
  let finished;
  const allDone = new Promise((resolve) => (finished = resolve));
  const onJobs = (count) => {
    done += count;
    if (done >= jobs) finished(performance.now());
  };
  await queue.ready();
  started = performance.now();
  const stop = await queue.work(concurrency, onJobs);
  const run = jobs / ((await allDone) - started) * 1000;
  await stop();
  console.log(`| ${system} | ${concurrency} | ${jobs} | ${enqueue.toFixed(0)} | ${run.toFixed(0)} |`);
  record({ bench: 'queue', system, store, batches: peer === 'pg-boss-batch', concurrency, jobs, enqueue, run });
}
await queue.close();
await database?.drop();

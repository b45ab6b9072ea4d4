// Prints the peer benchmark's tables from its JSON lines: each figure the
// median of its repetitions, and Steward on PostgreSQL divided by each peer.
//
//   node report.mjs results.jsonl

import { readFileSync } from 'node:fs';

const figures = readFileSync(process.argv[2], 'utf8')
  .split('\n')
  .filter(Boolean)
  .map((line) => JSON.parse(line));

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const whole = (n) => (n === undefined ? '—' : Math.round(n).toLocaleString('en-US'));
const ms = (n) => (n === undefined ? '—' : n.toFixed(1));
const ratio = (ours, theirs) => (ours && theirs ? ` (${(ours / theirs).toFixed(2)}×)` : '');
const unique = (values) => [...new Set(values)];

/// The median of `field` over the figures that match `where`, or undefined.
function med(where, field) {
  const values = figures
    .filter((f) => Object.entries(where).every(([k, v]) => f[k] === v))
    .map((f) => f[field])
    .filter((v) => typeof v === 'number');
  return values.length ? median(values) : undefined;
}
const repeats = (where) =>
  figures.filter((f) => Object.entries(where).every(([k, v]) => f[k] === v)).length;

const stewardName = (f) =>
  f.system === 'Steward' ? `Steward, ${f.store}${f.batches ? ', batches of jobs per handler call' : ''}` : f.system;
/// The [system, store, batches] rows of a bench: Steward on PostgreSQL first,
/// the peers in the order they ran, Steward on SQLite last.
function queueSystems(bench) {
  const rows = unique(
    figures.filter((f) => f.bench === bench).map((f) => JSON.stringify([f.system, f.store, f.batches ?? false])),
  );
  const rank = ([system, store]) => (system !== 'Steward' ? 1 : store === 'PostgreSQL' ? 0 : 2);
  return rows.map((row) => JSON.parse(row)).sort((a, b) => rank(a) - rank(b));
}

for (const jobs of unique(figures.filter((f) => f.bench === 'queue').map((f) => f.jobs))) {
  const concurrencies = unique(figures.filter((f) => f.bench === 'queue').map((f) => f.concurrency)).sort(
    (a, b) => a - b,
  );
  // Handlers that take batches are compared with Steward's that do.
  const ours = (c, batches) =>
    med({ bench: 'queue', system: 'Steward', store: 'PostgreSQL', batches, jobs, concurrency: c }, 'run');
  console.log(
    `\nRun jobs/s, ${whole(jobs)} no-op jobs queued, one worker process; (×) is Steward on PostgreSQL, in the same mode (one job or batches per handler call), ÷ that row`,
  );
  console.log(`\n| system | ${concurrencies.map((c) => `concurrency ${c}`).join(' | ')} | enqueue one at a time (jobs/s) |`);
  console.log(`|---|${concurrencies.map(() => '---:').join('|')}|---:|`);
  for (const [system, store, batches] of queueSystems('queue')) {
    const where = { bench: 'queue', system, store, batches, jobs };
    const cells = concurrencies.map((c) => {
      const theirs = med({ ...where, concurrency: c }, 'run');
      const peer = system !== 'Steward';
      return `${whole(theirs)}${peer ? ratio(ours(c, batches), theirs) : ''}`;
    });
    const enqueue = med(where, 'enqueue');
    const n = Math.max(...concurrencies.map((c) => repeats({ ...where, concurrency: c })));
    console.log(`| ${stewardName({ system, store, batches })} (${n}×) | ${cells.join(' | ')} | ${whole(enqueue)} |`);
  }
}

const batches = figures.filter((f) => f.bench === 'batch-enqueue');
if (batches.length) {
  console.log('\nBatch enqueue, 1,000 jobs per call');
  console.log('\n| system | jobs/s |');
  console.log('|---|---:|');
  for (const [system, store] of queueSystems('batch-enqueue')) {
    console.log(`| ${stewardName({ system, store })} | ${whole(med({ bench: 'batch-enqueue', system, store }, 'rate'))} |`);
  }
}

const hooks = figures.filter((f) => f.bench === 'webhook');
for (const rate of unique(hooks.map((f) => f.rate ?? null))) {
  const at = rate === null ? 'as fast as answered (saturation)' : `offered at ${rate}/s`;
  const ours = med({ bench: 'webhook', system: 'Steward + PostgreSQL', rate }, 'acknowledged');
  console.log(`\nWebhook intake, signed WhatsApp webhooks (one in ten a repeat), 64 connections, ${at}; (×) is Steward + PostgreSQL ÷ that row`);
  console.log('\n| system | acknowledged/s | p50 (ms) | p99 (ms) | idle RSS (MB) | of it private (MB) | one message and job per distinct id |');
  console.log('|---|---:|---:|---:|---:|---:|---|');
  for (const system of unique(hooks.filter((f) => (f.rate ?? null) === rate).map((f) => f.system))) {
    const runs = hooks.filter((f) => f.system === system && (f.rate ?? null) === rate);
    const where = { bench: 'webhook', system, rate };
    const acknowledged = med(where, 'acknowledged');
    const mb = (field) => {
      const kb = med({ bench: 'idle', system }, field);
      return kb === undefined ? '—' : (kb / 1024).toFixed(0);
    };
    const exact = runs.every((f) => f.stored === f.distinct && f.jobs === f.distinct) ? `yes, ${runs.length} of ${runs.length} runs` : 'NO';
    const peer = !system.startsWith('Steward');
    console.log(
      `| ${system} | ${whole(acknowledged)}${peer && rate === null ? ratio(ours, acknowledged) : ''} | ${ms(med(where, 'p50'))} | ${ms(med(where, 'p99'))} | ${mb('rss_kb')} | ${mb('anon_kb')} | ${exact} |`,
    );
  }
}

// The reference webhook intake Steward's is compared with: Express and
// node-postgres doing what Steward's design asks of an intake, written as such
// a service usually is. For each WhatsApp message in a signed webhook, in one
// transaction: record the message id in `webhook_events` (a repeat stops
// there), store the message, queue a job to answer it; then answer 200.
//
//   DATABASE_URL=postgres://... PORT=3100 WORKERS=1 node webhook.mjs
//
// WORKERS > 1 runs a Node cluster of that many processes on one port.
// GET /counts answers {"messages": n, "jobs": n}, which the load generator
// (Steward's `ingest` bench with STEWARD_BENCH_PEER_URL) checks.

import cluster from 'node:cluster';
import { createHmac, timingSafeEqual } from 'node:crypto';
import express from 'express';
import pg from 'pg';

const { DATABASE_URL, PORT = '3100', WORKERS = '1', APP_SECRET = 'bench-app-secret' } = process.env;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS webhook_events (
  id text PRIMARY KEY,
  received_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS messages (
  id bigserial PRIMARY KEY,
  external_id text NOT NULL UNIQUE,
  sender text NOT NULL,
  body text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS jobs (
  id bigserial PRIMARY KEY,
  kind text NOT NULL,
  payload jsonb NOT NULL,
  state text NOT NULL DEFAULT 'queued',
  run_at timestamptz NOT NULL DEFAULT now()
);`;

function signedBy(secret, body, header) {
  const expected = Buffer.from(`sha256=${createHmac('sha256', secret).update(body).digest('hex')}`);
  const given = Buffer.from(header ?? '');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function serve() {
  const pool = new pg.Pool({ connectionString: DATABASE_URL });
  const app = express();

  app.post('/webhook', express.raw({ type: 'application/json', limit: '1mb' }), async (req, res) => {
    if (!signedBy(APP_SECRET, req.body, req.get('x-hub-signature-256'))) {
      return res.status(401).json({ error: 'bad signature' });
    }
    let payload;
    try {
      payload = JSON.parse(req.body);
    } catch {
      return res.status(400).json({ error: 'not JSON' });
    }
    const messages = (payload.entry ?? []).flatMap((entry) =>
      (entry.changes ?? []).flatMap((change) => change.value?.messages ?? []),
    );
    const client = await pool.connect();
    try {
      for (const message of messages) {
        await client.query('BEGIN');
        const fresh = await client.query(
          'INSERT INTO webhook_events (id) VALUES ($1) ON CONFLICT DO NOTHING',
          [message.id],
        );
        if (fresh.rowCount === 1) {
          const stored = await client.query(
            'INSERT INTO messages (external_id, sender, body) VALUES ($1, $2, $3) RETURNING id',
            [message.id, message.from, message.text?.body ?? ''],
          );
          await client.query("INSERT INTO jobs (kind, payload) VALUES ('respond', $1)", [
            { message_id: stored.rows[0].id },
          ]);
        }
        await client.query('COMMIT');
      }
      res.sendStatus(200);
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      console.error(error);
      res.status(500).json({ error: 'not stored' });
    } finally {
      client.release();
    }
  });

  app.get('/counts', async (_req, res) => {
    const { rows } = await pool.query(
      'SELECT (SELECT count(*) FROM messages)::int AS messages, (SELECT count(*) FROM jobs)::int AS jobs',
    );
    res.json(rows[0]);
  });

  app.listen(Number(PORT), '127.0.0.1');
}

if (cluster.isPrimary) {
  const admin = new pg.Client({ connectionString: DATABASE_URL });
  await admin.connect();
  await admin.query(SCHEMA);
  await admin.end();
  const workers = Number(WORKERS);
  if (workers > 1) {
    for (let i = 0; i < workers; i++) cluster.fork();
  } else {
    serve();
  }
} else {
  serve();
}

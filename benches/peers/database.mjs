// A PostgreSQL database of one run's own on the server DATABASE_URL names.
//
//   node database.mjs create       prints the new database's URL
//   node database.mjs drop URL

import { randomUUID } from 'node:crypto';
import pg from 'pg';

/// Makes a database; `drop()` removes it (and ends its sessions).
export async function freshDatabase(serverUrl = process.env.DATABASE_URL) {
  const name = `peers_${randomUUID().replaceAll('-', '')}`;
  await admin(serverUrl, `CREATE DATABASE ${name}`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => dropDatabase(url.toString()) };
}

export async function dropDatabase(databaseUrl) {
  const url = new URL(databaseUrl);
  const name = url.pathname.slice(1);
  if (!/^peers_[0-9a-f]{32}$/.test(name)) throw new Error(`not a benchmark database: ${name}`);
  url.pathname = '/postgres';
  await admin(url.toString(), `DROP DATABASE ${name} WITH (FORCE)`);
}

async function admin(url, statement) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [command, url] = process.argv.slice(2);
  if (command === 'create') console.log((await freshDatabase()).url);
  else if (command === 'drop') await dropDatabase(url);
  else {
    console.error('usage: node database.mjs create | drop URL');
    process.exit(2);
  }
}

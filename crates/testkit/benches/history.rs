//! History pages through the HTTP API over large conversations.
//!
//!   cargo bench -p steward-testkit --bench history
//!
//! For each backend (SQLite always; PostgreSQL when STEWARD_TEST_POSTGRES_URL is
//! set) and each size (STEWARD_BENCH_SIZES, default "10000,1000000"), one
//! conversation of that many messages is seeded with bulk SQL, then the first,
//! middle and last pages of 50 are each fetched STEWARD_BENCH_REQUESTS times
//! (default 300) over one keep-alive connection. Middle and last pages are
//! reached with `to=` (the same single index range as a cursor); "cursor" is the
//! page after the middle one, fetched with the cursor the middle page returned.
//! Prints a Markdown table of client-observed latency.

mod support;

use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::Connection;
use steward_testkit::app::spawn_app_on;
use support::{Backend, Seedable, env_list, latency_cells, measure};
use uuid::Uuid;

const PAGE: usize = 50;

struct Seeded {
    org: Uuid,
    chatbot: Uuid,
    conversation: Uuid,
    /// created_at of the oldest seeded message; message k is `base + k ms`.
    base: DateTime<Utc>,
}

#[tokio::main]
async fn main() {
    let sizes = env_list("STEWARD_BENCH_SIZES", "10000,1000000");
    let requests = env_list("STEWARD_BENCH_REQUESTS", "300")[0] as usize;
    println!("| backend | messages | page | p50 (ms) | p99 (ms) | mean (ms) |");
    println!("|---|---:|---|---:|---:|---:|");
    for size in &sizes {
        for backend in Backend::available() {
            run(*size, requests, backend).await;
        }
    }
}

async fn run(size: u64, requests: usize, backend: Backend) {
    let name = backend.name();
    let (store, guard, seedable) = support::database(backend).await;
    let app = spawn_app_on(store, guard, |c| c.log.level = "warn".into()).await;
    let owner = app.register("bench@example.org", "Bench").await;
    let chatbot = app.chatbot(&owner, "Bench").await;
    let first = app
        .post(
            &format!("/api/v1/chatbots/{chatbot}/messages"),
            &owner.token,
            json!({"text": "start"}),
        )
        .await;
    let seeded = Seeded {
        org: owner.org_id.parse().unwrap(),
        chatbot: chatbot.parse().unwrap(),
        conversation: first.body["conversation_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
        base: DateTime::from_timestamp_micros(
            (Utc::now().timestamp_micros() / 1000 - size as i64 - 1000) * 1000,
        )
        .unwrap(),
    };
    let started = Instant::now();
    match &seedable {
        Seedable::Sqlite(path) => seed_sqlite(path, &seeded, size).await,
        Seedable::Postgres(url) => seed_postgres(url, &seeded, size).await,
    }
    eprintln!(
        "{name}: seeded {size} messages in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let history = format!("/api/v1/chatbots/{chatbot}/history?limit={PAGE}");
    let at = |k: u64| {
        (seeded.base + chrono::Duration::milliseconds(k as i64))
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    };
    let middle = format!("{history}&to={}", urlencode(&at(size / 2)));
    let last = format!("{history}&to={}", urlencode(&at(PAGE as u64)));
    let cursor = app.get(&middle, &owner.token).await.body["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let after_middle = format!("{history}&cursor={cursor}");

    for (label, path) in [
        ("first", &history),
        ("middle", &middle),
        ("cursor", &after_middle),
        ("last", &last),
    ] {
        let page = app.get(path, &owner.token).await;
        assert_eq!(
            page.body["messages"].as_array().unwrap().len(),
            PAGE,
            "{label} page is full"
        );
        let url = app.url(path);
        let timings = measure(|| app.client.get(&url).bearer_auth(&owner.token), requests).await;
        println!(
            "| {name} | {size} | {label} | {} |",
            latency_cells(&timings)
        );
    }
    app.stop().await;
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

async fn seed_sqlite(path: &std::path::Path, seeded: &Seeded, size: u64) {
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query(
        "WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < ? - 1)
         INSERT INTO messages (id, org_id, chatbot_id, conversation_id, role, text, channel, external_id, created_at)
         SELECT randomblob(16), ?, ?, ?, CASE WHEN i % 2 = 0 THEN 'user' ELSE 'assistant' END,
                'message number ' || i || ' of a long conversation, about as long as a real one', 'api', NULL, ? + i * 1000
         FROM seq",
    )
    .bind(size as i64)
    .bind(seeded.org)
    .bind(seeded.chatbot)
    .bind(seeded.conversation)
    .bind(seeded.base.timestamp_micros())
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(&mut conn).await.unwrap();
}

async fn seed_postgres(url: &str, seeded: &Seeded, size: u64) {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(
        "INSERT INTO messages (id, org_id, chatbot_id, conversation_id, role, text, channel, external_id, created_at)
         SELECT gen_random_uuid(), $1, $2, $3, CASE WHEN i % 2 = 0 THEN 'user' ELSE 'assistant' END,
                'message number ' || i || ' of a long conversation, about as long as a real one', 'api', NULL,
                $4 + i * interval '1 millisecond'
         FROM generate_series(0, $5 - 1) AS i",
    )
    .bind(seeded.org)
    .bind(seeded.chatbot)
    .bind(seeded.conversation)
    .bind(seeded.base)
    .bind(size as i64)
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query("VACUUM ANALYZE messages")
        .execute(&mut conn)
        .await
        .unwrap();
}

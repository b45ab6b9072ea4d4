//! Server time of the console's busiest pages over a large organization.
//!
//!   cargo bench -p steward-testkit --bench console
//!
//! For each backend (SQLite always; PostgreSQL when STEWARD_TEST_POSTGRES_URL
//! is set), one organization with three chatbots gets STEWARD_BENCH_MESSAGES
//! messages (default 1,000,000) in conversations of 20, spread evenly over the
//! last 30 days; half the conversations come through a web channel. Each
//! conversation is one of STEWARD_BENCH_PEOPLE people's (default 10,000),
//! a tenth of people's messages are forwarded and a tenth of replies rated.
//! Rows are seeded with bulk SQL (and indexed, and counted, as the store
//! indexes and counts them). Each page is then
//! fetched STEWARD_BENCH_REQUESTS times (default 200) over one keep-alive
//! connection with the owner's session cookie, as a browser would: the
//! overview, the conversation list unfiltered and with each filter, and one
//! thread; and the usage insights over 30 days with the owner's token, as the
//! API's clients call it. Prints a Markdown table of client-observed latency.

mod support;

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use sqlx::Connection;
use steward_testkit::app::spawn_app_on;
use support::{Backend, Seedable, env_list, latency_cells, measure};
use uuid::Uuid;

/// Messages per conversation.
const TURNS: u64 = 20;
struct Seed {
    org: Uuid,
    chatbots: [Uuid; 3],
    channels: [Uuid; 3],
    /// The oldest conversation's start; the others follow evenly to now.
    base: DateTime<Utc>,
    conversations: u64,
    people: u64,
}

impl Seed {
    /// Microseconds between one conversation's start and the next.
    fn step_micros(&self) -> i64 {
        Duration::days(30).num_microseconds().unwrap() / self.conversations as i64
    }
}

#[tokio::main]
async fn main() {
    let messages = env_list("STEWARD_BENCH_MESSAGES", "1000000")[0];
    let people = env_list("STEWARD_BENCH_PEOPLE", "10000")[0];
    let requests = env_list("STEWARD_BENCH_REQUESTS", "200")[0] as usize;
    println!("| backend | messages | page | p50 (ms) | p99 (ms) | mean (ms) |");
    println!("|---|---:|---|---:|---:|---:|");
    for backend in Backend::available() {
        run(messages, people, requests, backend).await;
    }
}

async fn run(messages: u64, people: u64, requests: usize, backend: Backend) {
    let name = backend.name();
    let (store, guard, seedable) = support::database(backend).await;
    let app = spawn_app_on(store, guard, |c| c.log.level = "warn".into()).await;
    let owner = app.register("bench@example.org", "Bench").await;
    let mut chatbots = [Uuid::nil(); 3];
    let mut channels = [Uuid::nil(); 3];
    for (i, (chatbot, channel)) in chatbots.iter_mut().zip(&mut channels).enumerate() {
        let id = app.chatbot(&owner, &format!("Bench {i}")).await;
        let connected = app
            .post(
                &format!("/api/v1/chatbots/{id}/channels"),
                &owner.token,
                json!({"kind": "web", "name": "Site", "config": {"allowed_origins": ["https://shop.example.org"]}}),
            )
            .await;
        assert!(connected.status.is_success(), "{}", connected.text);
        *chatbot = id.parse().unwrap();
        *channel = connected.body["id"].as_str().unwrap().parse().unwrap();
    }
    let seed = Seed {
        org: owner.org_id.parse().unwrap(),
        chatbots,
        channels,
        base: Utc::now() - Duration::days(30) - Duration::hours(1),
        conversations: messages / TURNS,
        people,
    };
    let started = Instant::now();
    match &seedable {
        Seedable::Sqlite(path) => seed_sqlite(path, &seed).await,
        Seedable::Postgres(url) => seed_postgres(url, &seed).await,
    }
    eprintln!(
        "{name}: seeded {messages} messages in {} conversations in {:.1} s",
        seed.conversations,
        started.elapsed().as_secs_f64()
    );

    let middle_day = (seed.base + Duration::days(15)).format("%Y-%m-%d");
    let newest = conversation_id(seed.conversations - 1);
    let pages = [
        ("overview", "/".to_owned()),
        ("conversations", "/conversations".to_owned()),
        (
            "conversations of one chatbot",
            format!("/conversations?chatbot_id={}", seed.chatbots[1]),
        ),
        (
            "conversations of one channel",
            "/conversations?channel=web".to_owned(),
        ),
        (
            "conversations of one day",
            format!("/conversations?from={middle_day}&to={middle_day}"),
        ),
        (
            "conversations with a common word",
            "/conversations?q=payments".to_owned(),
        ),
        (
            "conversations with a rare word",
            "/conversations?q=zebra".to_owned(),
        ),
        (
            "conversations with a word only the oldest hold",
            "/conversations?q=walrus".to_owned(),
        ),
        (
            "one conversation's thread",
            format!("/conversations/{newest}"),
        ),
    ];
    let cookie = format!("steward_session={}", owner.token);
    for (label, path) in pages {
        let url = app.url(&path);
        let page = app
            .client
            .get(&url)
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert!(page.status().is_success(), "{label}: {}", page.status());
        let timings = measure(|| app.client.get(&url).header("cookie", &cookie), requests).await;
        println!(
            "| {name} | {messages} | {label} | {} |",
            latency_cells(&timings)
        );
    }
    let url = app.url("/api/v1/insights/usage?days=30");
    let insights = app
        .get("/api/v1/insights/usage?days=30", &owner.token)
        .await;
    assert!(insights.status.is_success(), "{}", insights.text);
    let week = &insights.body["weeks"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    eprintln!(
        "{name}: insights: {} people this week, {} forwarded, score {}, activation rate {}, {} skills",
        week["people"],
        week["forwarded"],
        insights.body["feedback"]["score"],
        insights.body["activation_rate"],
        insights.body["skills"].as_array().map_or(0, Vec::len)
    );
    let timings = measure(|| app.client.get(&url).bearer_auth(&owner.token), requests).await;
    println!(
        "| {name} | {messages} | usage insights, 30 days (API) | {} |",
        latency_cells(&timings)
    );
    app.stop().await;
}

/// The id of seeded conversation `i`, as both seeds make it.
fn conversation_id(i: u64) -> Uuid {
    format!("c0{i:030x}").parse().unwrap()
}

async fn seed_sqlite(path: &std::path::Path, seed: &Seed) {
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query(
        "WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < ?1 - 1)
         INSERT INTO people (id, org_id, name, created_at)
         SELECT unhex('b0' || printf('%030x', i)), ?2, 'Person ' || i, ?3 FROM seq",
    )
    .bind(seed.people as i64)
    .bind(seed.org)
    .bind(seed.base.timestamp_micros())
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query(
        "WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < ?1 - 1)
         INSERT INTO conversations (id, org_id, chatbot_id, channel, channel_id, external_key, created_at,
                                    person_id)
         SELECT unhex('c0' || printf('%030x', i)), ?2,
                CASE i % 3 WHEN 0 THEN ?3 WHEN 1 THEN ?4 ELSE ?5 END,
                CASE WHEN i % 2 = 0 THEN 'web' ELSE 'api' END,
                CASE WHEN i % 2 = 0 THEN (CASE i % 3 WHEN 0 THEN ?6 WHEN 1 THEN ?7 ELSE ?8 END) END,
                CASE WHEN i % 2 = 0 THEN 'visitor-' || i END,
                ?9 + i * ?10,
                unhex('b0' || printf('%030x', i % ?11))
         FROM seq",
    )
    .bind(seed.conversations as i64)
    .bind(seed.org)
    .bind(seed.chatbots[0])
    .bind(seed.chatbots[1])
    .bind(seed.chatbots[2])
    .bind(seed.channels[0])
    .bind(seed.channels[1])
    .bind(seed.channels[2])
    .bind(seed.base.timestamp_micros())
    .bind(seed.step_micros())
    .bind(seed.people as i64)
    .execute(&mut conn)
    .await
    .unwrap();
    // Each conversation is about one of five topics; the first mentions a
    // zebra, the next 99 a walrus (a word too many messages hold to be read
    // from the index, all in the oldest conversations).
    sqlx::query(
        "WITH RECURSIVE seq(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM seq WHERE j < ?1 - 1)
         INSERT INTO messages (id, org_id, chatbot_id, conversation_id, role, text, channel, channel_id,
                               answers, created_at, person_id, forwarded)
         SELECT unhex('a0' || printf('%030x', j)), c.org_id, c.chatbot_id, c.id,
                CASE WHEN j % 2 = 0 THEN 'user' ELSE 'assistant' END,
                'message ' || j || ' about ' || CASE (j / 20) % 5 WHEN 0 THEN 'invoices and payments' WHEN 1 THEN 'a delivery that is late'
                     WHEN 2 THEN 'opening hours' WHEN 3 THEN 'a password reset' ELSE 'the return policy' END || CASE WHEN j < 20 THEN ' and a zebra' WHEN j < 2000 THEN ' and a walrus' ELSE '' END,
                c.channel, c.channel_id,
                CASE WHEN j % 2 = 1 THEN unhex('a0' || printf('%030x', j - 1)) END,
                c.created_at + (j % 20) * 30000000,
                CASE WHEN j % 2 = 0 THEN c.person_id END,
                j % 20 = 0
         FROM seq JOIN conversations c ON c.id = unhex('c0' || printf('%030x', j / 20))",
    )
    .bind((seed.conversations * TURNS) as i64)
    .execute(&mut conn)
    .await
    .unwrap();
    // The counters the store keeps as each message is stored, filled at once.
    sqlx::query(
        "INSERT INTO activity_days (org_id, chatbot_id, day, received, replied, started)
         SELECT org_id, chatbot_id, day, SUM(received), SUM(replied), SUM(started) FROM (
             SELECT org_id, chatbot_id, created_at / 86400000000 AS day,
                    SUM(role = 'user') AS received, SUM(role = 'assistant') AS replied, 0 AS started
             FROM messages GROUP BY org_id, chatbot_id, created_at / 86400000000
             UNION ALL
             SELECT org_id, chatbot_id, created_at / 86400000000, 0, 0, COUNT(*)
             FROM conversations GROUP BY org_id, chatbot_id, created_at / 86400000000
         ) GROUP BY org_id, chatbot_id, day
         ON CONFLICT DO NOTHING",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    for counted in [
        "INSERT INTO person_days (org_id, day, person_id)
         SELECT DISTINCT org_id, created_at / 86400000000, person_id FROM messages
         WHERE person_id IS NOT NULL",
        "INSERT INTO person_weeks (org_id, week, person_id)
         SELECT DISTINCT org_id, (day + 3) / 7, person_id FROM person_days",
        "INSERT INTO people_counts (org_id, span, number, people)
         SELECT org_id, 'day', day, COUNT(*) FROM person_days GROUP BY org_id, day",
        "INSERT INTO people_counts (org_id, span, number, people)
         SELECT org_id, 'week', week, COUNT(*) FROM person_weeks GROUP BY org_id, week",
        "INSERT INTO channel_days (org_id, day, channel, direct, forwarded)
         SELECT org_id, created_at / 86400000000, channel, SUM(NOT forwarded), SUM(forwarded)
         FROM messages WHERE role = 'user' GROUP BY 1, 2, 3
         ON CONFLICT DO NOTHING",
        "UPDATE people SET last_seen_at =
             (SELECT MAX(created_at) FROM messages m WHERE m.person_id = people.id)",
        // A tenth of replies (each conversation's first) rated by its person.
        "INSERT INTO feedback (message_id, person_id, org_id, chatbot_id, rating, created_at, updated_at)
         SELECT r.id, c.person_id, r.org_id, r.chatbot_id,
                CASE WHEN c.channel = 'web' THEN 'up' ELSE 'down' END, r.created_at, r.created_at
         FROM messages r JOIN conversations c ON c.id = r.conversation_id
         WHERE r.role = 'assistant' AND r.created_at = c.created_at + 30000000",
        "UPDATE activity_days SET rated_up = c.up, rated_down = c.down FROM (
             SELECT org_id, chatbot_id, created_at / 86400000000 AS day,
                    SUM(rating = 'up') AS up, SUM(rating = 'down') AS down
             FROM feedback GROUP BY 1, 2, 3) c
         WHERE activity_days.org_id = c.org_id AND activity_days.chatbot_id = c.chatbot_id
           AND activity_days.day = c.day",
        // Three in ten replies loaded a skill, spread over eight skills.
        "UPDATE activity_days SET with_skills = replied * 3 / 10",
        "INSERT INTO skill_days (org_id, day, skill, activations, rated_up, rated_down)
         SELECT a.org_id, a.day, 'skill-' || n.n, SUM(a.replied) * 3 / 80,
                SUM(a.rated_up) * 3 / 80, SUM(a.rated_down) * 3 / 80
         FROM activity_days a,
              (SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4
               UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8) n
         GROUP BY a.org_id, a.day, n.n",
    ] {
        sqlx::query(counted).execute(&mut conn).await.unwrap();
    }
    sqlx::query(
        "UPDATE conversations SET last_active_at = created_at + 540000000 WHERE org_id = ?",
    )
    .bind(seed.org)
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(&mut conn).await.unwrap();
}

async fn seed_postgres(url: &str, seed: &Seed) {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(
        "INSERT INTO people (id, org_id, name, created_at)
         SELECT ('b0' || lpad(to_hex(i), 30, '0'))::uuid, $2, 'Person ' || i, $3
         FROM generate_series(0, $1 - 1) AS i",
    )
    .bind(seed.people as i64)
    .bind(seed.org)
    .bind(seed.base)
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO conversations (id, org_id, chatbot_id, channel, channel_id, external_key, created_at,
                                    person_id)
         SELECT ('c0' || lpad(to_hex(i), 30, '0'))::uuid, $2,
                (ARRAY[$3, $4, $5]::uuid[])[i % 3 + 1],
                CASE WHEN i % 2 = 0 THEN 'web' ELSE 'api' END,
                CASE WHEN i % 2 = 0 THEN (ARRAY[$6, $7, $8]::uuid[])[i % 3 + 1] END,
                CASE WHEN i % 2 = 0 THEN 'visitor-' || i END,
                $9 + i * ($10 * interval '1 microsecond'),
                ('b0' || lpad(to_hex(i % $11), 30, '0'))::uuid
         FROM generate_series(0, $1 - 1) AS i",
    )
    .bind(seed.conversations as i64)
    .bind(seed.org)
    .bind(seed.chatbots[0])
    .bind(seed.chatbots[1])
    .bind(seed.chatbots[2])
    .bind(seed.channels[0])
    .bind(seed.channels[1])
    .bind(seed.channels[2])
    .bind(seed.base)
    .bind(seed.step_micros())
    .bind(seed.people as i64)
    .execute(&mut conn)
    .await
    .unwrap();
    // Each conversation is about one of five topics; the first mentions a
    // zebra, the next 99 a walrus (a word too many messages hold to be read
    // from the index, all in the oldest conversations).
    sqlx::query(
        "INSERT INTO messages (id, org_id, chatbot_id, conversation_id, role, text, channel, channel_id,
                               answers, created_at, person_id, forwarded)
         SELECT ('a0' || lpad(to_hex(j), 30, '0'))::uuid, c.org_id, c.chatbot_id, c.id,
                CASE WHEN j % 2 = 0 THEN 'user' ELSE 'assistant' END,
                'message ' || j || ' about ' || CASE (j / 20) % 5 WHEN 0 THEN 'invoices and payments' WHEN 1 THEN 'a delivery that is late'
                     WHEN 2 THEN 'opening hours' WHEN 3 THEN 'a password reset' ELSE 'the return policy' END || CASE WHEN j < 20 THEN ' and a zebra' WHEN j < 2000 THEN ' and a walrus' ELSE '' END,
                c.channel, c.channel_id,
                CASE WHEN j % 2 = 1 THEN ('a0' || lpad(to_hex(j - 1), 30, '0'))::uuid END,
                c.created_at + (j % 20) * interval '30 seconds',
                CASE WHEN j % 2 = 0 THEN c.person_id END,
                j % 20 = 0
         FROM generate_series(0, $1 - 1) AS j
         JOIN conversations c ON c.id = ('c0' || lpad(to_hex(j / 20), 30, '0'))::uuid",
    )
    .bind((seed.conversations * TURNS) as i64)
    .execute(&mut conn)
    .await
    .unwrap();
    // The counters the store keeps as each message is stored, filled at once.
    sqlx::query(
        "INSERT INTO activity_days (org_id, chatbot_id, day, received, replied, started)
         SELECT org_id, chatbot_id, day, SUM(received), SUM(replied), SUM(started) FROM (
             SELECT org_id, chatbot_id, FLOOR(EXTRACT(EPOCH FROM created_at) / 86400)::bigint AS day,
                    COUNT(*) FILTER (WHERE role = 'user') AS received,
                    COUNT(*) FILTER (WHERE role = 'assistant') AS replied, 0 AS started
             FROM messages GROUP BY 1, 2, 3
             UNION ALL
             SELECT org_id, chatbot_id, FLOOR(EXTRACT(EPOCH FROM created_at) / 86400)::bigint, 0, 0, COUNT(*)
             FROM conversations GROUP BY 1, 2, 3
         ) counted GROUP BY org_id, chatbot_id, day
         ON CONFLICT DO NOTHING",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    for counted in [
        "INSERT INTO person_days (org_id, day, person_id)
         SELECT DISTINCT org_id, FLOOR(EXTRACT(EPOCH FROM created_at) / 86400)::bigint, person_id
         FROM messages WHERE person_id IS NOT NULL",
        "INSERT INTO person_weeks (org_id, week, person_id)
         SELECT DISTINCT org_id, (day + 3) / 7, person_id FROM person_days",
        "INSERT INTO people_counts (org_id, span, number, people)
         SELECT org_id, 'day', day, COUNT(*) FROM person_days GROUP BY org_id, day",
        "INSERT INTO people_counts (org_id, span, number, people)
         SELECT org_id, 'week', week, COUNT(*) FROM person_weeks GROUP BY org_id, week",
        "INSERT INTO channel_days (org_id, day, channel, direct, forwarded)
         SELECT org_id, FLOOR(EXTRACT(EPOCH FROM created_at) / 86400)::bigint, channel,
                COUNT(*) FILTER (WHERE NOT forwarded), COUNT(*) FILTER (WHERE forwarded)
         FROM messages WHERE role = 'user' GROUP BY 1, 2, 3
         ON CONFLICT DO NOTHING",
        "UPDATE people SET last_seen_at =
             (SELECT MAX(created_at) FROM messages m WHERE m.person_id = people.id)",
        // A tenth of replies (each conversation's first) rated by its person.
        "INSERT INTO feedback (message_id, person_id, org_id, chatbot_id, rating, created_at, updated_at)
         SELECT r.id, c.person_id, r.org_id, r.chatbot_id,
                CASE WHEN c.channel = 'web' THEN 'up' ELSE 'down' END, r.created_at, r.created_at
         FROM messages r JOIN conversations c ON c.id = r.conversation_id
         WHERE r.role = 'assistant' AND r.created_at = c.created_at + interval '30 seconds'",
        "UPDATE activity_days a SET rated_up = c.up, rated_down = c.down FROM (
             SELECT org_id, chatbot_id, FLOOR(EXTRACT(EPOCH FROM created_at) / 86400)::bigint AS day,
                    COUNT(*) FILTER (WHERE rating = 'up') AS up,
                    COUNT(*) FILTER (WHERE rating = 'down') AS down
             FROM feedback GROUP BY 1, 2, 3) c
         WHERE a.org_id = c.org_id AND a.chatbot_id = c.chatbot_id AND a.day = c.day",
        // Three in ten replies loaded a skill, spread over eight skills.
        "UPDATE activity_days SET with_skills = replied * 3 / 10",
        "INSERT INTO skill_days (org_id, day, skill, activations, rated_up, rated_down)
         SELECT a.org_id, a.day, 'skill-' || n.n, SUM(a.replied) * 3 / 80,
                SUM(a.rated_up) * 3 / 80, SUM(a.rated_down) * 3 / 80
         FROM activity_days a,
              (SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4
               UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8) n
         GROUP BY a.org_id, a.day, n.n",
    ] {
        sqlx::query(counted).execute(&mut conn).await.unwrap();
    }
    sqlx::query(
        "UPDATE conversations SET last_active_at = created_at + interval '540 seconds' WHERE org_id = $1",
    )
    .bind(seed.org)
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query("VACUUM ANALYZE")
        .execute(&mut conn)
        .await
        .unwrap();
}

//! Pipeline overhead: from a message's intake to its reply stored, with a
//! local model that answers at once, so everything measured is Steward's own.
//!
//!   STEWARD_TEST_POSTGRES_URL=$(scripts/postgres16) cargo bench -p steward-pipeline --bench overhead
//!
//! For each backend and each rate (STEWARD_BENCH_RATES, default "50,500"
//! messages/s), messages are POSTed at that steady rate for
//! STEWARD_BENCH_SECONDS (default 10), each opening a conversation of its own,
//! to `steward_api` with a worker in the same process (concurrency 32, woken on
//! enqueue, as `steward serve` runs). Reported: the POST's latency as the
//! client sees it, and intake-to-reply: the reply's created_at minus the
//! message's, both stored times.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use steward_domain::JobKind;
use steward_jobs::{Worker, WorkerSettings};
use steward_llm::OpenAiCompatible;
use steward_pipeline::{Respond, Responder};
use steward_store::{Store, TenantScope};
use steward_testkit::app::spawn_app_on;
use steward_testkit::model::FakeModel;
use steward_testkit::{DbGuard, postgres_store, sqlite_store};

fn percentile(sorted: &[f64], p: usize) -> f64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn env_list(name: &str, default: &str) -> Vec<u64> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect()
}

#[tokio::main]
async fn main() {
    let rates = env_list("STEWARD_BENCH_RATES", "50,500");
    let seconds = env_list("STEWARD_BENCH_SECONDS", "10")[0];
    let mut backends = vec!["SQLite"];
    if std::env::var(steward_testkit::POSTGRES_URL_ENV).is_ok_and(|u| !u.is_empty()) {
        backends.push("PostgreSQL");
    }
    println!(
        "| backend | target (msg/s) | sent | achieved (msg/s) | POST p50 (ms) | POST p99 (ms) | intake→reply p50 (ms) | intake→reply p99 (ms) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for backend in &backends {
        for &rate in &rates {
            let (store, db): (Arc<dyn Store>, DbGuard) = match *backend {
                "PostgreSQL" => postgres_store().await.unwrap(),
                _ => sqlite_store().await.unwrap(),
            };
            run(backend, store, db, rate, seconds).await;
        }
    }
}

async fn run(backend: &str, store: Arc<dyn Store>, db: DbGuard, rate: u64, seconds: u64) {
    let app = spawn_app_on(store.clone(), db, |c| {
        c.log.level = "warn".into();
        c.tiers.free.messages_per_month = i64::MAX / 2;
        c.tiers.free.tokens_per_month = i64::MAX / 2;
    })
    .await;
    let fake = FakeModel::start().await;
    let provider = OpenAiCompatible::new(
        reqwest::Client::new(),
        &fake.base_url,
        None,
        "fake",
        Duration::from_secs(10),
    );
    let respond = Respond {
        store: store.clone(),
        responder: Responder::Model(Arc::new(provider)),
        tiers: app.state.config.tiers.clone(),
        history_turns: 20,
        max_tokens: 256,
        deliver_attempts: 3,
        retriever: steward_knowledge::Retriever::new(store.clone(), None),
        passages: 5,
        toolbox: None,
        tool_limits: Default::default(),
        memory: None,
        classify_attempts: None,
    };
    let settings = WorkerSettings {
        concurrency: 32,
        kind_concurrency: HashMap::new(),
        // The queue alone is measured: no fair-share limits.
        org_share: usize::MAX,
        reply_reserve: 0,
        lease: Duration::from_secs(60),
        backoff_base: Duration::from_millis(50),
        poll_interval: Duration::from_millis(1000),
        shutdown_grace: Duration::from_secs(10),
    };
    let worker = Worker::new(store.clone(), settings)
        .handle(JobKind::Respond, respond)
        .wake_on(app.state.jobs_enqueued.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));

    let owner = app.register("bench@example.org", "Bench").await;
    let bot = app.chatbot(&owner, "Bench").await;
    let url = app.url(&format!("/api/v1/chatbots/{bot}/messages"));
    let total = rate * seconds;
    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    let started = Instant::now();
    let mut posts = Vec::with_capacity(total as usize);
    for n in 0..total {
        ticker.tick().await;
        let (client, url, token) = (app.client.clone(), url.clone(), owner.token.clone());
        posts.push(tokio::spawn(async move {
            let sent = Instant::now();
            let response = client
                .post(&url)
                .bearer_auth(&token)
                .json(&json!({ "text": format!("message {n}") }))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
            let body: serde_json::Value = response.json().await.unwrap();
            (
                sent.elapsed().as_secs_f64() * 1000.0,
                body["conversation_id"].as_str().unwrap().to_owned(),
            )
        }));
    }
    let mut post_ms = Vec::new();
    let mut conversations = Vec::new();
    for post in posts {
        let (ms, conversation) = post.await.unwrap();
        post_ms.push(ms);
        conversations.push(conversation);
    }
    let achieved = total as f64 / started.elapsed().as_secs_f64();

    // Every message answered, then measured from the stored times.
    let deadline = Instant::now() + Duration::from_secs(300);
    while !store.queue_stats().await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "replies did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let scope = TenantScope::for_operator(owner.org_id.parse().unwrap());
    let mut reply_ms = Vec::new();
    for conversation in &conversations {
        let turns = store
            .conversation_messages(&scope, conversation.parse().unwrap(), 2)
            .await
            .unwrap();
        assert_eq!(turns.len(), 2, "one message, one reply");
        reply_ms.push(
            (turns[1].created_at - turns[0].created_at)
                .num_microseconds()
                .unwrap() as f64
                / 1000.0,
        );
    }
    let _ = stop.send(());
    worker.await.unwrap();
    post_ms.sort_by(f64::total_cmp);
    reply_ms.sort_by(f64::total_cmp);
    println!(
        "| {backend} | {rate} | {total} | {achieved:.0} | {:.1} | {:.1} | {:.1} | {:.1} |",
        percentile(&post_ms, 50),
        percentile(&post_ms, 99),
        percentile(&reply_ms, 50),
        percentile(&reply_ms, 99)
    );
}

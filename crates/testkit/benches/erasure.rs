//! Erasing a person with many messages, while another organization writes.
//!
//!   STEWARD_TEST_POSTGRES_URL=$(scripts/postgres16) cargo bench -p steward-testkit --bench erasure
//!
//! For each backend, one person of one organization writes
//! STEWARD_BENCH_MESSAGES messages (default 100,000) in conversations of 20,
//! through the store's own write path; then `erase_person` runs while a
//! second organization stores a message every 5 ms. Reported: the erasure's
//! time, and the latency of the other organization's writes meanwhile (a
//! lock the erasure held would show there as its longest write).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use steward_domain::*;
use steward_store::*;
use steward_testkit::seed::telegram_message;
use steward_testkit::{DbGuard, postgres_store, sqlite_store};

/// Messages per conversation.
const TURNS: usize = 20;

#[tokio::main]
async fn main() {
    let messages: usize = std::env::var("STEWARD_BENCH_MESSAGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    println!(
        "| backend | messages erased | erasure (s) | other org's writes meanwhile | their p50 (ms) | p99 (ms) | longest (ms) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut backends = vec!["SQLite"];
    if std::env::var(steward_testkit::POSTGRES_URL_ENV).is_ok_and(|u| !u.is_empty()) {
        backends.push("PostgreSQL");
    }
    for backend in backends {
        let (store, _guard): (Arc<dyn Store>, DbGuard) = match backend {
            "PostgreSQL" => postgres_store().await.unwrap(),
            _ => sqlite_store().await.unwrap(),
        };
        run(backend, store, messages).await;
    }
}

async fn run(backend: &str, store: Arc<dyn Store>, messages: usize) {
    let (scope, bot) =
        steward_testkit::seed::organization_with_chatbot(store.as_ref(), "Acme", Tier::Enterprise)
            .await;
    let (other, other_bot) = steward_testkit::seed::organization_with_chatbot(
        store.as_ref(),
        "Globex",
        Tier::Enterprise,
    )
    .await;
    // Four writers, each its own conversations, as four channels would.
    let writers = 4;
    let seeded = futures::future::join_all((0..writers).map(|w| {
        let store = store.clone();
        async move {
            let mut conversation = None;
            for n in (w..messages).step_by(writers) {
                let into = conversation.filter(|_| n / writers % TURNS != 0);
                let text = format!("message {n} about invoices and travel");
                let stored =
                    telegram_message(store.as_ref(), &scope, bot.id, into, "1", &text).await;
                conversation = Some(stored.conversation_id);
            }
            conversation
        }
    }))
    .await;
    let first = store
        .conversation_messages(&scope, seeded[0].unwrap(), 1)
        .await
        .unwrap();
    let person = first[0].person_id.unwrap();

    let erasing = Arc::new(AtomicBool::new(true));
    let meanwhile = tokio::spawn({
        let (store, erasing) = (store.clone(), erasing.clone());
        async move {
            let mut latencies = Vec::new();
            let mut n = 0;
            while erasing.load(Ordering::SeqCst) {
                let started = Instant::now();
                let text = format!("message {n}");
                telegram_message(store.as_ref(), &other, other_bot.id, None, "2", &text).await;
                latencies.push(started.elapsed());
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            latencies
        }
    });
    let started = Instant::now();
    let erased = store.erase_person(&scope, person).await.unwrap();
    let took = started.elapsed();
    erasing.store(false, Ordering::SeqCst);
    let mut latencies = meanwhile.await.unwrap();
    assert_eq!(erased.messages as usize, messages);
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    println!(
        "| {backend} | {messages} | {:.1} | {} | {:.1} | {:.1} | {:.1} |",
        took.as_secs_f64(),
        latencies.len(),
        ms(at(50)),
        ms(at(99)),
        ms(*latencies.last().unwrap()),
    );
}

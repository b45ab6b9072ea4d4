//! Personal memory's cost per reply, the model's time left out: a person
//! holding 200 facts (the default `memory.max_facts`).
//!
//!   STEWARD_TEST_POSTGRES_URL=$(scripts/postgres16) cargo bench -p steward-pipeline --bench memory
//!
//! For each backend, STEWARD_BENCH_REPLIES (default 500) times each:
//! - recall: what a reply does before asking the model (read the person's
//!   keys and sealed facts, open them, pick those nearest the question,
//!   write the prompt's block);
//! - learn: a `memory` job for a new message, with a model in process that
//!   answers at once with one new fact (read the message and the facts,
//!   compare, seal, keep it and drop the oldest past 200, in one transaction);
//! - both: the n-th recall and the n-th learning added, one reply's whole
//!   cost, whose p99 the budget (5 ms) is for.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use steward_domain::*;
use steward_jobs::JobHandler;
use steward_llm::{ChatRequest, ChatResponse, LlmError, Provider};
use steward_pipeline::Learn;
use steward_store::*;
use steward_testkit::{DbGuard, postgres_store, sqlite_store};
use steward_tools::memory::{Memory, prompt_block, relevant};

const FACTS: usize = 200;

/// A model that answers at once: each extraction notes one new fact.
struct AtOnce;

#[async_trait]
impl Provider for AtOnce {
    fn name(&self) -> &str {
        "in-process"
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        Ok(ChatResponse {
            text: format!("- Said {}", request.messages[0].content),
            tool_calls: Vec::new(),
            input_tokens: 0,
            output_tokens: 0,
            provider: "in-process".into(),
            model: "none".into(),
        })
    }
}

/// Limits no benchmark reaches.
fn unlimited() -> steward_config::TiersConfig {
    let mut tiers = steward_config::TiersConfig::default();
    tiers.free.messages_per_month = i64::MAX / 2;
    tiers.free.tokens_per_month = i64::MAX / 2;
    tiers
}

fn percentile(sorted: &[f64], p: usize) -> f64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn summary(times: &mut [f64]) -> (f64, f64) {
    times.sort_by(f64::total_cmp);
    (percentile(times, 50), percentile(times, 99))
}

#[tokio::main]
async fn main() {
    let replies: usize = std::env::var("STEWARD_BENCH_REPLIES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(500);
    let mut backends = vec!["SQLite"];
    if std::env::var(steward_testkit::POSTGRES_URL_ENV).is_ok_and(|u| !u.is_empty()) {
        backends.push("PostgreSQL");
    }
    println!(
        "| backend | facts | recall p50 (ms) | recall p99 (ms) | learn p50 (ms) | learn p99 (ms) | both, per reply, p99 (ms) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for backend in backends {
        let (store, _db): (Arc<dyn Store>, DbGuard) = match backend {
            "PostgreSQL" => postgres_store().await.unwrap(),
            _ => sqlite_store().await.unwrap(),
        };
        run(backend, store, replies).await;
    }
}

/// A message of the person's (Telegram user 4242).
async fn said(store: &dyn Store, scope: &TenantScope, bot: ChatbotId, text: &str) -> Message {
    steward_testkit::seed::telegram_message(store, scope, bot, None, "4242", text).await
}

async fn run(backend: &str, store: Arc<dyn Store>, replies: usize) {
    let (scope, bot) =
        steward_testkit::seed::organization_with_chatbot(store.as_ref(), "Acme", Tier::Free).await;
    let sealer = Arc::new(steward_auth::Sealer::new(&[7; 32]));
    let memory = Memory::new(store.clone(), sealer);
    let first = said(store.as_ref(), &scope, bot.id, "hello").await;
    let person = first.person_id.unwrap();
    // 200 facts, learnt from as many messages, as replies would keep them.
    let topics = [
        "finance",
        "travel",
        "Lisbon",
        "SAP",
        "invoices",
        "the sales team",
        "Spanish",
        "Mondays",
    ];
    for n in 0..FACTS {
        let source = said(store.as_ref(), &scope, bot.id, "about me").await;
        let known = memory.known(&scope, person).await.unwrap();
        let fact = format!(
            "Fact {n}: works with {} on project {n}",
            topics[n % topics.len()]
        );
        memory
            .remember(&scope, person, source.id, known, &[fact], FACTS as u32)
            .await
            .unwrap();
    }
    assert_eq!(memory.facts(&scope, person).await.unwrap().len(), FACTS);

    let mut recall = Vec::with_capacity(replies);
    for n in 0..replies {
        let question = format!("Who approves travel to Lisbon for the finance team? ({n})");
        let started = Instant::now();
        let facts = memory.facts(&scope, person).await.unwrap();
        let block = prompt_block(&relevant(&facts, &question, 20));
        recall.push(started.elapsed().as_secs_f64() * 1000.0);
        assert!(block.contains("Lisbon"));
    }

    let learn = Learn {
        store: store.clone(),
        provider: Arc::new(AtOnce),
        memory: memory.clone(),
        tiers: unlimited(),
        max_facts: FACTS as u32,
    };
    let mut learning = Vec::with_capacity(replies);
    for n in 0..replies {
        let message = said(
            store.as_ref(),
            &scope,
            bot.id,
            &format!("I moved to office {n}."),
        )
        .await;
        let args = steward_domain::jobs::MemoryArgs {
            person_id: person,
            messages: vec![message.id],
        };
        let job = store
            .enqueue(NewJob::of(&args, 3).for_org(scope.org_id()))
            .await
            .unwrap()
            .unwrap();
        let started = Instant::now();
        learn.run(&job).await.unwrap();
        learning.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let facts = memory.facts(&scope, person).await.unwrap();
    assert_eq!(facts.len(), FACTS, "kept at the bound");
    assert!(
        facts
            .last()
            .unwrap()
            .text
            .contains(&format!("office {}", replies - 1))
    );

    // Each reply recalls once and learns once: the n-th of each, added.
    let mut per_reply: Vec<f64> = recall.iter().zip(&learning).map(|(r, l)| r + l).collect();
    let (recall_p50, recall_p99) = summary(&mut recall);
    let (learn_p50, learn_p99) = summary(&mut learning);
    let (_, reply_p99) = summary(&mut per_reply);
    println!(
        "| {backend} | {FACTS} | {recall_p50:.2} | {recall_p99:.2} | {learn_p50:.2} | {learn_p99:.2} | {reply_p99:.2} |"
    );
}

//! Ingestion end to end: Markdown files uploaded through the HTTP API, read,
//! cut into passages and indexed by a real worker, timed from the first
//! upload until every document is `ready`. Reports documents/s and
//! passages (chunks)/s.
//!
//!   cargo bench -p steward-knowledge --bench ingestion
//!
//! SQLite, or PostgreSQL when STEWARD_TEST_POSTGRES_URL is set; with
//! STEWARD_EMBEDDINGS_URL (scripts/embedder) passages are embedded too.
//! STEWARD_BENCH_DOCUMENTS (default 200) sets how many files; each is about
//! 40 KB of text under headings.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use steward_domain::JobKind;
use steward_jobs::{Worker, WorkerSettings};
use steward_knowledge::{Blobs, FetchPolicy, Fetcher, Ingest, PdfLimits, PdfReader};
use steward_testkit::app::spawn_app_with;

/// A deterministic Markdown document of about 40 KB: 20 sections of 5
/// paragraphs of 60 words.
fn document(n: usize) -> String {
    let mut x = (n as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut word = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        format!("w{}", (x % 5000) * (x % 5000) / 5000)
    };
    let mut text = format!("# Document {n}\n\n");
    for section in 0..20 {
        text.push_str(&format!("## Section {section}\n\n"));
        for _ in 0..5 {
            let paragraph: Vec<String> = (0..60).map(|_| word()).collect();
            text.push_str(&paragraph.join(" "));
            text.push_str(".\n\n");
        }
    }
    text
}

#[tokio::main]
async fn main() {
    let documents: usize = std::env::var("STEWARD_BENCH_DOCUMENTS")
        .ok()
        .map_or(200, |n| n.parse().expect("a count"));
    let embeddings = std::env::var("STEWARD_EMBEDDINGS_URL").ok();
    let app = spawn_app_with(|c| {
        if let Some(url) = embeddings.clone() {
            c.embeddings.base_url = Some(url);
            c.embeddings.dimensions = 384;
        }
    })
    .await;
    let config = &app.state.config;
    let ingest = Ingest {
        store: app.store.clone(),
        blobs: Blobs::from_config(&config.storage, &config.data_dir).unwrap(),
        fetcher: Fetcher::new(
            FetchPolicy::from_config(&config.knowledge),
            steward_outbound::Guard::new(config.outbound.allow_private_networks),
        ),
        embedder: steward_knowledge::embedder_from_config(&config.embeddings),
        // No PDFs here.
        pdf: PdfReader::new(
            "/nonexistent",
            [""; 0],
            PdfLimits::from_config(&config.knowledge),
        ),
        limits: config.knowledge.clone(),
    };
    let settings = WorkerSettings {
        concurrency: 4,
        kind_concurrency: HashMap::new(),
        // The queue alone is measured: no fair-share limits.
        org_share: usize::MAX,
        reply_reserve: 0,
        lease: Duration::from_secs(60),
        backoff_base: Duration::from_millis(50),
        poll_interval: Duration::from_millis(10),
        shutdown_grace: Duration::from_secs(5),
    };
    let worker = Worker::new(app.store.clone(), settings).handle(JobKind::Ingest, ingest);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));

    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;
    let files: Vec<(String, String)> = (0..documents)
        .map(|n| (format!("doc-{n}.md"), document(n)))
        .collect();
    let bytes: usize = files.iter().map(|(_, text)| text.len()).sum();

    let started = Instant::now();
    for batch in files.chunks(10) {
        let parts: Vec<(&str, &[u8])> = batch
            .iter()
            .map(|(name, text)| (name.as_str(), text.as_bytes()))
            .collect();
        let uploaded = app.upload(&owner, &bot, &parts).await;
        assert_eq!(uploaded.status, 201, "{}", uploaded.text);
    }
    let chunks = loop {
        let listed = app
            .get(&format!("/api/v1/chatbots/{bot}/knowledge"), &owner.token)
            .await;
        let listed = listed.body["documents"].as_array().unwrap().clone();
        assert!(listed.iter().all(|d| d["status"] != "failed"), "{listed:?}");
        if listed.iter().all(|d| d["status"] == "ready") {
            break listed
                .iter()
                .map(|d| d["chunk_count"].as_i64().unwrap())
                .sum::<i64>();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let elapsed = started.elapsed().as_secs_f64();
    let _ = stop.send(());
    running.await.unwrap();

    let backend = if std::env::var("STEWARD_TEST_POSTGRES_URL").is_ok() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let vectors = if embeddings.is_some() {
        "all-MiniLM-L6-v2 (numpy)"
    } else {
        "none"
    };
    println!(
        "| backend | embeddings | documents | MB | passages | seconds | documents/s | passages/s |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {backend} | {vectors} | {documents} | {:.1} | {chunks} | {elapsed:.1} | {:.1} | {:.0} |",
        bytes as f64 / 1e6,
        documents as f64 / elapsed,
        chunks as f64 / elapsed
    );
}

//! Retrieval over many passages: full-text search, vector search and both
//! fused (what every answer runs), on an organization whose chatbot holds
//! N passages beside another organization holding as many again. Also
//! measures how fast passages are written (chunks/s through finish_ingest,
//! vectors included; the first organization's N, then the other's N
//! beside them) and, where vectors wait for an index (PostgreSQL's
//! HNSW), how fast `index_vectors` puts both organizations' vectors into it,
//! as the `index_vectors` job does, and how long a vector search takes while
//! they all wait.
//!
//!   cargo bench -p steward-knowledge --bench retrieval
//!
//! SQLite always; PostgreSQL too when STEWARD_TEST_POSTGRES_URL is set (it
//! needs pgvector); STEWARD_BENCH_BACKENDS=sqlite or =postgres for one. STEWARD_BENCH_CHUNKS (default "10000,100000") sets the
//! sizes, STEWARD_BENCH_QUERIES (default 200) the searches per measure.
//! Passages are synthetic: sentences drawn from a 5,000-word vocabulary, and
//! 384-dimension vectors (all-MiniLM-L6-v2's length) made from their words.

use std::sync::Arc;
use std::time::{Duration, Instant};

use steward_domain::{
    ChatbotName, ChatbotStatus, DocumentId, DocumentSource, Email, OrganizationName, Role,
    SystemPrompt, Temperature, Tier,
};
use steward_knowledge::retrieve::fuse;
use steward_store::{
    Ingested, NewChatbot, NewChunk, NewDocument, NewOrganization, NewUser, Store, TenantScope,
    search_terms,
};
use steward_testkit::DbGuard;
use steward_testkit::bench::Backend;

const DIMENSIONS: usize = 384;
const PER_DOCUMENT: usize = 500;

#[tokio::main]
async fn main() {
    let env = |name: &str| std::env::var(name).ok();
    let sizes: Vec<usize> = env("STEWARD_BENCH_CHUNKS")
        .unwrap_or_else(|| "10000,100000".into())
        .split(',')
        .map(|n| n.trim().parse().expect("a count"))
        .collect();
    let queries: usize = env("STEWARD_BENCH_QUERIES").map_or(200, |n| n.parse().expect("a count"));
    println!(
        "| backend | passages (this org) | write chunks/s (first N / next N) | vectors indexed/s | vector p50 / p95 while waiting (ms) | full text p50 / p95 (ms) | first vector search (ms) | vector p50 / p95 (ms) | fused p50 / p95 (ms) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for size in sizes {
        for backend in Backend::available() {
            run(backend.name(), backend.store().await, size, queries).await;
        }
    }
}

/// A small deterministic generator, so that every run searches the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A word from a Zipf-like vocabulary: a few common, most rare.
    fn word(&mut self) -> String {
        let rank = (self.next() % 5000) as f64;
        let skewed = (rank * rank / 5000.0) as u64;
        format!("w{skewed}")
    }

    fn sentence(&mut self, words: usize) -> String {
        (0..words)
            .map(|_| self.word())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn embed(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; DIMENSIONS];
    for word in text.split_whitespace() {
        let h = word.bytes().fold(1469598103934665603u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(1099511628211)
        });
        v[(h % DIMENSIONS as u64) as usize] += 1.0;
        v[((h >> 20) % DIMENSIONS as u64) as usize] += 0.5;
    }
    v
}

async fn fill(
    store: &Arc<dyn Store>,
    scope: &TenantScope,
    chatbot: steward_domain::ChatbotId,
    size: usize,
    rng: &mut Rng,
) -> (Duration, Vec<DocumentId>) {
    let mut spent = Duration::ZERO;
    let mut documents = Vec::new();
    for _ in 0..size.div_ceil(PER_DOCUMENT) {
        let id = DocumentId::new();
        let document = NewDocument {
            id,
            chatbot_id: Some(chatbot),
            source: DocumentSource::Upload,
            label: format!("doc-{id}.md"),
            url: None,
            blob_key: None,
            bytes: 0,
        };
        store.add_document(scope, document, 1).await.unwrap();
        let chunks: Vec<NewChunk> = (0..PER_DOCUMENT)
            .map(|_| {
                let text = rng.sentence(120);
                NewChunk {
                    heading: rng.sentence(3),
                    embedding: Some(embed(&text)),
                    text,
                }
            })
            .collect();
        let ingested = Ingested {
            bytes: 0,
            content_type: "text/plain".into(),
            content_hash: String::new(),
            chunks,
        };
        let started = Instant::now();
        store.finish_ingest(scope, id, ingested).await.unwrap();
        spent += started.elapsed();
        documents.push(id);
    }
    (spent, documents)
}

fn percentiles(mut times: Vec<Duration>) -> String {
    times.sort();
    let at = |p: f64| {
        times[((times.len() as f64 * p) as usize).min(times.len() - 1)].as_secs_f64() * 1000.0
    };
    format!("{:.1} / {:.1}", at(0.5), at(0.95))
}

async fn run(name: &str, (store, _guard): (Arc<dyn Store>, DbGuard), size: usize, queries: usize) {
    store.prepare_vectors(DIMENSIONS).await.unwrap();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut scopes = Vec::new();
    for name in ["Ours", "Theirs"] {
        let (organization, _) = store
            .create_organization(
                NewOrganization {
                    name: OrganizationName::parse("name", name).unwrap(),
                    tier: Tier::Enterprise,
                },
                NewUser {
                    email: Email::parse(
                        "email",
                        &format!("owner@{}.example.org", name.to_lowercase()),
                    )
                    .unwrap(),
                    name: None,
                    role: Role::Owner,
                    password_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
                    must_change_password: false,
                },
            )
            .await
            .unwrap();
        let scope = TenantScope::for_operator(organization.id);
        let chatbot = NewChatbot {
            name: ChatbotName::parse("name", "Desk").unwrap(),
            system_prompt: SystemPrompt::parse("p", "").unwrap(),
            temperature: Temperature::parse("t", 0.5).unwrap(),
            model: None,
            status: ChatbotStatus::Active,
        };
        let chatbot = store.create_chatbot(&scope, chatbot).await.unwrap().id;
        scopes.push((scope, chatbot));
    }
    let (written, ours) = fill(&store, &scopes[0].0, scopes[0].1, size, &mut rng).await;
    let (written_next, theirs) = fill(&store, &scopes[1].0, scopes[1].1, size, &mut rng).await;
    // As the maintenance job does (PostgreSQL's full-text ranking reads the
    // word statistics ANALYZE keeps).
    store.analyze().await.unwrap();
    let (scope, chatbot) = scopes[0];
    let questions: Vec<String> = (0..queries).map(|_| rng.sentence(8)).collect();
    // The first vector search after passages change pays for what the store
    // prepares (SQLite builds its in-memory codes).
    let started = Instant::now();
    store
        .search_vector(&scope, chatbot, &embed(&questions[0]), 20)
        .await
        .unwrap();
    let first_vector = started.elapsed();
    // Searches while every vector waits for the index (where one does).
    let mut waiting_times = Vec::new();
    for question in questions.iter().skip(1).take(20) {
        let started = Instant::now();
        store
            .search_vector(&scope, chatbot, &embed(question), 20)
            .await
            .unwrap();
        waiting_times.push(started.elapsed());
    }
    let started = Instant::now();
    let mut indexed = 0;
    for (documents, (scope, _)) in [ours, theirs].iter().zip(&scopes) {
        for document in documents {
            loop {
                let moved = store.index_vectors(scope, *document, 100).await.unwrap();
                if moved == 0 {
                    break;
                }
                indexed += moved;
            }
        }
    }
    let indexing = started.elapsed();
    let (index_rate, while_waiting) = if indexed == 0 {
        ("–".to_owned(), "–".to_owned())
    } else {
        store.analyze().await.unwrap();
        (
            format!("{:.0}", indexed as f64 / indexing.as_secs_f64()),
            percentiles(waiting_times),
        )
    };
    let (mut text_times, mut vector_times, mut fused_times) = (Vec::new(), Vec::new(), Vec::new());
    for question in &questions {
        let started = Instant::now();
        let text = store
            .search_text(&scope, chatbot, &search_terms(question), 20)
            .await
            .unwrap();
        text_times.push(started.elapsed());
        let vector = embed(question);
        let started = Instant::now();
        let near = store
            .search_vector(&scope, chatbot, &vector, 20)
            .await
            .unwrap();
        vector_times.push(started.elapsed());
        let started = Instant::now();
        let text2 = store
            .search_text(&scope, chatbot, &search_terms(question), 20)
            .await
            .unwrap();
        let near2 = store
            .search_vector(&scope, chatbot, &vector, 20)
            .await
            .unwrap();
        let _ = fuse(&[text2, near2], 5);
        fused_times.push(started.elapsed());
        assert!(!text.is_empty() || !near.is_empty());
    }
    println!(
        "| {name} | {size} | {:.0} / {:.0} | {index_rate} | {while_waiting} | {} | {:.0} | {} | {} |",
        size as f64 / written.as_secs_f64(),
        size as f64 / written_next.as_secs_f64(),
        percentiles(text_times),
        first_vector.as_secs_f64() * 1000.0,
        percentiles(vector_times),
        percentiles(fused_times)
    );
}

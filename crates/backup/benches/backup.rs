//! Backups and the SQLite → PostgreSQL copy at a size worth timing: a SQLite
//! database of STEWARD_BENCH_MESSAGES messages (default 100,000, in
//! conversations of 10) and STEWARD_BENCH_BLOBS originals of 256 KB (default
//! 100). Times `backup create`, `backup verify` and `backup restore` into a
//! new file, and, when STEWARD_TEST_POSTGRES_URL is set, `db copy` into a new
//! PostgreSQL database. Reports seconds, sizes and rows/s; and the backup
//! encryption alone (sealing and opening 256 MB in memory), in MB/s.
//!
//!   cargo bench -p steward-backup --bench backup

use std::time::Instant;

use steward_backup::{Backups, Pick};
use steward_config::Config;
use steward_domain::*;
use steward_knowledge::Blobs;
use steward_store::*;
use steward_store_sqlite::SqliteStore;

fn count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map_or(default, |n| n.parse().expect("a count"))
}

/// Seals and opens 256 MB in memory: what encryption adds per byte.
fn encryption_alone() {
    use std::io::{Read, Write};
    use steward_backup::crypt::{BackupKey, BackupKeys, Opening, Sealing};
    let plain = steward_testkit::seed::incompressible(256 << 20, 1);
    let keys = BackupKeys::new(BackupKey::new([1; 32]), Vec::new());
    let started = Instant::now();
    let mut sealing = Sealing::new(
        Vec::with_capacity(plain.len() + (8 << 20)),
        keys.current(),
        "b/f",
    )
    .unwrap();
    for piece in plain.chunks(32 * 1024) {
        sealing.write_all(piece).unwrap();
    }
    let sealed = sealing.finish().unwrap();
    let sealing_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut opened = Vec::with_capacity(plain.len());
    Opening::new(sealed.as_slice(), &keys, "b/f")
        .unwrap()
        .read_to_end(&mut opened)
        .unwrap();
    let opening_secs = started.elapsed().as_secs_f64();
    assert!(opened == plain);
    let mb = plain.len() as f64 / 1e6;
    println!(
        "encryption alone: sealing {:.0} MB/s, opening {:.0} MB/s",
        mb / sealing_secs,
        mb / opening_secs
    );
}

#[tokio::main]
async fn main() {
    encryption_alone();
    let messages = count("STEWARD_BENCH_MESSAGES", 100_000);
    let originals = count("STEWARD_BENCH_BLOBS", 100);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("steward.db").display());
    let store = SqliteStore::connect(&url, 2).await.unwrap();
    store.migrate().await.unwrap();
    let blobs = Blobs::local(&dir.path().join("blobs")).unwrap();

    let filling = Instant::now();
    let (scope, bot) =
        steward_testkit::seed::organization_with_chatbot(&store, "Bench", Tier::Enterprise).await;
    let mut conversation = ConversationId::new();
    for n in 0..messages {
        let start = n % 10 == 0;
        if start {
            conversation = ConversationId::new();
        }
        store
            .add_message(
                &scope,
                NewMessage {
                    id: MessageId::new(),
                    chatbot_id: bot.id,
                    conversation: if start {
                        ConversationChoice::Start(conversation)
                    } else {
                        ConversationChoice::Existing(conversation)
                    },
                    role: if n % 2 == 0 {
                        MessageRole::User
                    } else {
                        MessageRole::Assistant
                    },
                    text: MessageText::parse(
                        "text",
                        format!(
                            "Message {n}: how long do refunds take for order {}?",
                            n * 7919
                        ),
                    )
                    .unwrap(),
                    channel: "api".into(),
                    external_id: None,
                    answers: None,
                    channel_id: None,
                    channel_secrets: None,
                    meta: None,
                    tokens: 25,
                    then: Vec::new(),
                    sender: None,
                    forwarded: false,
                    conversation_key: None,
                },
            )
            .await
            .unwrap();
    }
    for n in 0..originals {
        let key = Blobs::document_key(scope.org_id(), DocumentId::new());
        blobs
            .put(
                &key,
                steward_testkit::seed::incompressible(256 * 1024, n as u64).into(),
            )
            .await
            .unwrap();
    }
    let database_bytes = std::fs::metadata(dir.path().join("steward.db"))
        .unwrap()
        .len();
    println!(
        "filled: {messages} messages, {originals} blobs of 256 KB, database {:.1} MB, in {:.1} s",
        database_bytes as f64 / 1e6,
        filling.elapsed().as_secs_f64()
    );

    let mut config = Config {
        data_dir: dir.path().to_owned(),
        ..Config::default()
    };
    config.backup.encryption_key = Some(steward_config::Secret::new(
        "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
    ));
    let backups = Backups::from_config(&config).unwrap();
    let started = Instant::now();
    let manifest = backups.create(&store, &url, &blobs).await.unwrap();
    // Throughput over what is backed up: the database and the blobs.
    let input_mb = (database_bytes + originals as u64 * 256 * 1024) as f64 / 1e6;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "backup create: {seconds:.2} s ({:.0} MB/s), {:.1} MB written",
        input_mb / seconds,
        manifest.total_bytes() as f64 / 1e6
    );
    let started = Instant::now();
    backups.verify(&Pick::Latest, &url, None).await.unwrap();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "backup verify: {seconds:.2} s ({:.0} MB/s)",
        input_mb / seconds
    );
    let target = format!("sqlite://{}", dir.path().join("restored.db").display());
    let restored_blobs = Blobs::local(&dir.path().join("restored-blobs")).unwrap();
    let started = Instant::now();
    backups
        .restore(&Pick::Latest, &target, Some(&restored_blobs), false, |_| {
            true
        })
        .await
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "backup restore: {seconds:.2} s ({:.0} MB/s)",
        input_mb / seconds
    );
    store.close().await;

    let Some(postgres) = steward_testkit::PostgresDatabase::create().await else {
        println!("db copy: skipped (set STEWARD_TEST_POSTGRES_URL)");
        return;
    };
    let started = Instant::now();
    let tables = steward_backup::copy::copy(&url, &postgres.url, 1000)
        .await
        .unwrap();
    let rows: u64 = tables.iter().map(|t| t.rows).sum();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "db copy: {rows} rows in {seconds:.2} s ({:.0} rows/s), counted and checksummed",
        rows as f64 / seconds
    );
}

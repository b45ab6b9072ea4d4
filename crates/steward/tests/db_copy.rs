//! `steward db copy` from SQLite to PostgreSQL, as an operator runs it:
//! everything arrives and reads back the same through the store, an
//! interrupted copy resumes, a source changed between runs is caught by the
//! checksums, and a target holding data is refused. Needs
//! `STEWARD_TEST_POSTGRES_URL` (PostgreSQL with pgvector); skipped without.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use steward_knowledge::Blobs;
use steward_store::{BackupRun, HistoryQuery, OpsStore, Store, TenantScope, now, search_terms};
use steward_store_postgres::PostgresStore;
use steward_store_sqlite::SqliteStore;
use steward_testkit::PostgresDatabase;
use steward_testkit::seed::seed;

fn copy(from: &str, to: &str, batch: usize) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_steward"));
    command
        .args(["db", "copy", "--from", from, "--to", to, "--batch"])
        .arg(batch.to_string())
        .env_remove("STEWARD_DATABASE__URL")
        .env("RUST_LOG", "warn");
    command
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A SQLite database seeded with `messages` extra messages.
async fn source(dir: &Path, messages: usize) -> String {
    let url = format!("sqlite://{}", dir.join("steward.db").display());
    let store = SqliteStore::connect(&url, 2).await.unwrap();
    store.migrate().await.unwrap();
    let blobs = Blobs::local(&dir.join("blobs")).unwrap();
    seed(&store, &blobs, messages).await;
    store
        .record_backup_run(&backup_run("before the copy"))
        .await
        .unwrap();
    store.close().await;
    url
}

fn backup_run(id: &str) -> BackupRun {
    BackupRun {
        backup_id: id.into(),
        started_at: now(),
        finished_at: now(),
        succeeded: true,
        bytes: 1,
        error: None,
    }
}

/// What the store answers about every organization, as text to compare.
async fn everything(store: &dyn Store) -> Vec<String> {
    let mut out = Vec::new();
    for org in store.find_organizations("Acme Ünïcode").await.unwrap() {
        let scope = TenantScope::for_operator(org.id);
        out.push(format!("{org:?}"));
        out.push(format!("{:?}", store.list_members(&scope).await.unwrap()));
        out.push(format!(
            "{:?}",
            store
                .usage(&scope, &org.created_at.format("%Y-%m").to_string())
                .await
                .unwrap()
        ));
        let (bots, _) = store.list_chatbots(&scope, 100, 0).await.unwrap();
        for bot in bots {
            out.push(format!("{bot:?}"));
            let history = store
                .history(
                    &scope,
                    &HistoryQuery {
                        chatbot_id: bot.id,
                        limit: 100_000,
                        before: None,
                        from: None,
                        to: None,
                    },
                )
                .await
                .unwrap();
            out.extend(history.iter().map(|m| format!("{m:?}")));
            for document in store.documents(&scope, Some(bot.id)).await.unwrap() {
                out.push(format!("{document:?}"));
            }
            let hits = store
                .search_text(&scope, bot.id, &search_terms("refunded gift cards"), 10)
                .await
                .unwrap();
            out.extend(
                hits.iter()
                    .map(|h| format!("{} {} {}", h.document_id, h.heading, h.text)),
            );
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_holds_what_sqlite_held_and_resumes_after_being_killed() {
    let Some(target) = PostgresDatabase::create().await else {
        eprintln!("skipped: backend not configured");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let from = source(dir.path(), 3000).await;
    let sqlite = SqliteStore::connect(&from, 2).await.unwrap();
    let expected = everything(&sqlite).await;
    assert!(expected.len() > 3000, "the seed is there");

    // Killed in the middle: some batches of messages are in, not all.
    let mut first = copy(&from, &target.url, 20)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut progress = sqlx::PgPool::connect(&target.url).await.unwrap();
    let started = Instant::now();
    loop {
        let copied: Option<i64> = sqlx::query_scalar(
            "SELECT after_rowid FROM steward_db_copy WHERE table_name = 'messages'",
        )
        .fetch_optional(&progress)
        .await
        .unwrap_or(None);
        if copied.is_some_and(|rowid| rowid > 100) {
            break;
        }
        assert!(
            first.try_wait().unwrap().is_none(),
            "the copy ended before it was killed"
        );
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let partial: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&progress)
        .await
        .unwrap();
    assert!(
        partial > 100 && partial < 3002,
        "{partial} messages copied before the kill"
    );

    let resumed = copy(&from, &target.url, 500).output().unwrap();
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert!(
        text(&resumed).contains("every row count and checksum matches"),
        "{}",
        text(&resumed)
    );
    assert!(
        text(&resumed)
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["messages", "3002"])),
        "{}",
        text(&resumed)
    );

    let postgres = PostgresStore::connect(&target.url, 2).await.unwrap();
    assert_eq!(everything(&postgres).await, expected);
    let left: bool = sqlx::query_scalar("SELECT to_regclass('steward_db_copy') IS NOT NULL")
        .fetch_one(&progress)
        .await
        .unwrap();
    assert!(!left, "the progress table is dropped when done");

    // New rows take ids after the copied ones (identity sequences moved on).
    postgres
        .record_backup_run(&backup_run("after the copy"))
        .await
        .unwrap();

    // Done: the target now holds data, and a second copy is refused.
    let again = copy(&from, &target.url, 500).output().unwrap();
    assert!(!again.status.success());
    assert!(text(&again).contains("holds data"), "{}", text(&again));
    progress.close().await;
    progress = sqlx::PgPool::connect(&target.url).await.unwrap();
    let messages: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&progress)
        .await
        .unwrap();
    assert_eq!(messages, 3002, "the refused copy wrote nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_changed_between_runs_fails_the_checksums() {
    let Some(target) = PostgresDatabase::create().await else {
        eprintln!("skipped: backend not configured");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let from = source(dir.path(), 500).await;
    let mut first = copy(&from, &target.url, 2)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let progress = sqlx::PgPool::connect(&target.url).await.unwrap();
    let started = Instant::now();
    while sqlx::query_scalar::<_, i64>(
        "SELECT after_rowid FROM steward_db_copy WHERE table_name = 'messages'",
    )
    .fetch_optional(&progress)
    .await
    .unwrap_or(None)
    .is_none_or(|rowid| rowid < 50)
    {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the copy ended before it was killed"
        );
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();

    // Steward kept running on the source: an already copied message changed.
    let sqlite = sqlx::SqlitePool::connect(&from).await.unwrap();
    sqlx::query("UPDATE messages SET text = 'edited after the copy began' WHERE rowid = 1")
        .execute(&sqlite)
        .await
        .unwrap();
    sqlite.close().await;

    let resumed = copy(&from, &target.url, 500).output().unwrap();
    assert!(!resumed.status.success());
    assert!(
        text(&resumed).contains(
            "messages: 502 rows in SQLite and 502 in PostgreSQL, with different contents"
        ),
        "{}",
        text(&resumed)
    );
}

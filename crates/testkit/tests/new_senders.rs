//! PostgreSQL makes the senders a batch of messages does not know yet in one
//! statement (`write_messages`, migration `add_messages_fewer_statements`).
//! A sender whose handle another transaction adds meanwhile is still one
//! person: the message waits for that transaction, is written by the person
//! it made, and the person made in vain is deleted. Runs when
//! STEWARD_TEST_POSTGRES_URL is set.

use std::time::{Duration, Instant};

use steward_domain::{Identity, IdentityKind, Tier};
use steward_store::Store;
use steward_store_postgres::PostgresStore;
use steward_testkit::PostgresDatabase;
use steward_testkit::seed::{organization_with_chatbot, telegram_message};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_added_meanwhile_by_another_transaction_is_one_person() {
    let Some(database) = PostgresDatabase::create().await else {
        eprintln!("skipped: backend not configured");
        return;
    };
    let store = PostgresStore::connect(&database.url, 4).await.unwrap();
    store.migrate().await.unwrap();
    let (scope, bot) = organization_with_chatbot(&store, "Acme", Tier::Free).await;
    let org = scope.org_id().as_uuid();
    let db = sqlx::PgPool::connect(&database.url).await.unwrap();
    let handle = Identity::parse("sender", IdentityKind::Telegram, "4711")
        .unwrap()
        .handle;

    // Another transaction makes the sender's person, and holds on.
    let theirs = Uuid::now_v7();
    let mut other = db.begin().await.unwrap();
    sqlx::query("INSERT INTO people (id, org_id, created_at) VALUES ($1, $2, now())")
        .bind(theirs)
        .bind(org)
        .execute(&mut *other)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO person_identities (org_id, kind, handle, person_id, created_at)
         VALUES ($1, 'telegram', $2, $3, now())",
    )
    .bind(org)
    .bind(&handle)
    .bind(theirs)
    .execute(&mut *other)
    .await
    .unwrap();

    // A message of theirs, whose batch does not find them yet.
    let adding = tokio::spawn(async move {
        telegram_message(&store, &scope, bot.id, None, "4711", "Open on Sunday?").await
    });

    // Once its batch waits on the handle, the other transaction commits.
    let started = Instant::now();
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10) && !adding.is_finished(),
            "the message did not wait for the handle's transaction"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    other.commit().await.unwrap();
    let stored = adding.await.unwrap();

    let author: Option<Uuid> = sqlx::query_scalar("SELECT person_id FROM messages WHERE id = $1")
        .bind(stored.id.as_uuid())
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(author, Some(theirs));
    let people: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM people WHERE org_id = $1")
        .bind(org)
        .fetch_all(&db)
        .await
        .unwrap();
    let owner: Vec<Uuid> = sqlx::query_scalar(
        "SELECT person_id FROM person_identities WHERE org_id = $1 AND kind = 'member'",
    )
    .bind(org)
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(people.len(), 1 + owner.len(), "{people:?}");
    assert!(people.contains(&theirs));
}

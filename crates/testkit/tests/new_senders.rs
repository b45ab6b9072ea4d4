//! PostgreSQL makes the senders a batch of messages does not know yet in one
//! statement (`write_messages`, migration `add_messages_fewer_statements`).
//! A sender whose handle another transaction adds meanwhile is still one
//! person: the message waits for that transaction, is written by the person
//! it made, and the person made in vain is deleted. Runs when
//! STEWARD_TEST_POSTGRES_URL is set.

use std::time::{Duration, Instant};

use steward_domain::{
    ConversationId, Identity, IdentityKind, MessageId, MessageRole, MessageText, Tier,
};
use steward_store::{ConversationChoice, MessageStore, NewMessage, Sender, Store};
use steward_store_postgres::PostgresStore;
use steward_testkit::PostgresDatabase;
use steward_testkit::seed::organization_with_chatbot;
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
    let phone = Identity::parse("phone", IdentityKind::Whatsapp, "+15550001").unwrap();

    // Another transaction makes the number's person, and holds on.
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
         VALUES ($1, 'whatsapp', $2, $3, now())",
    )
    .bind(org)
    .bind(&phone.handle)
    .bind(theirs)
    .execute(&mut *other)
    .await
    .unwrap();

    // A message from that number, which its batch does not find yet.
    let message = NewMessage {
        id: MessageId::new(),
        chatbot_id: bot.id,
        conversation: ConversationChoice::Start(ConversationId::new()),
        role: MessageRole::User,
        text: MessageText::parse("text", "Is the shop open on Sunday?").unwrap(),
        channel: "api".into(),
        external_id: None,
        answers: None,
        channel_id: None,
        channel_secrets: None,
        meta: None,
        tokens: 0,
        then: Vec::new(),
        sender: Some(Sender::new(phone)),
        forwarded: false,
        conversation_key: None,
    };
    let adding = tokio::spawn(async move { store.add_message(&scope, message).await });

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
    let stored = adding.await.unwrap().unwrap();

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

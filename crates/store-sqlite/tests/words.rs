//! The word index of messages' text follows every change to the messages,
//! so that a changed or deleted message leaves none of its words behind,
//! and survives VACUUM (which may renumber the messages table's rowids).

use sqlx::{Connection, Row, SqliteConnection};
use steward_store::{ErasureStore, Store};
use steward_store_sqlite::SqliteStore;

async fn matches(db: &mut SqliteConnection, words: &str) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM messages_fts WHERE messages_fts MATCH ?")
        .bind(words)
        .fetch_one(db)
        .await
        .unwrap()
        .get("n")
}

/// An organization, a chatbot, a conversation and two messages in it: a
/// person's (`x'04'`, written second) and a reply (`x'05'`, written first).
async fn seed(db: &mut SqliteConnection, asked: &str, answered: &str) {
    for statement in [
        "INSERT INTO organizations (id, name, tier, created_at) VALUES (x'01', 'Acme', 'free', 0)",
        "INSERT INTO chatbots (id, org_id, name, system_prompt, temperature, status, created_at, updated_at)
         VALUES (x'02', x'01', 'Helper', '', 0.2, 'active', 0, 0)",
        "INSERT INTO conversations (id, org_id, chatbot_id, channel, created_at) VALUES (x'03', x'01', x'02', 'api', 0)",
    ] {
        sqlx::query(statement).execute(&mut *db).await.unwrap();
    }
    sqlx::query(
        "INSERT INTO messages (id, org_id, chatbot_id, conversation_id, role, text, channel, created_at)
         VALUES (x'04', x'01', x'02', x'03', 'user', ?, 'api', 2),
                (x'05', x'01', x'02', x'03', 'assistant', ?, 'api', 1)",
    )
    .bind(asked)
    .bind(answered)
    .execute(&mut *db)
    .await
    .unwrap();
}

#[tokio::test]
async fn changed_and_deleted_messages_leave_no_words_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steward.db");
    let store = SqliteStore::open_file(&path, 1).await.unwrap();
    store.migrate().await.unwrap();
    let mut db = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("PRAGMA foreign_keys = ON")
        .execute(&mut db)
        .await
        .unwrap();
    seed(&mut db, "my secret parcel", "hello there").await;
    assert_eq!(matches(&mut db, "secret parcel").await, 1);
    assert_eq!(matches(&mut db, "scope : c03 AND hello").await, 1);

    sqlx::query("UPDATE messages SET text = 'redacted' WHERE id = x'04'")
        .execute(&mut db)
        .await
        .unwrap();
    assert_eq!(
        matches(&mut db, "secret").await,
        0,
        "the old words are gone"
    );
    assert_eq!(matches(&mut db, "redacted").await, 1);

    // VACUUM keeps each message tied to its own entry.
    sqlx::query("VACUUM").execute(&mut db).await.unwrap();
    sqlx::query("DELETE FROM messages WHERE id = x'05'")
        .execute(&mut db)
        .await
        .unwrap();
    assert_eq!(matches(&mut db, "hello").await, 0);
    assert_eq!(matches(&mut db, "redacted").await, 1);

    // Deleting the chatbot deletes its messages, and their words.
    sqlx::query("DELETE FROM chatbots WHERE id = x'02'")
        .execute(&mut db)
        .await
        .unwrap();
    assert_eq!(matches(&mut db, "redacted").await, 0);
    assert_eq!(matches(&mut db, "scope : o01").await, 0);
}

#[tokio::test]
async fn messages_stored_before_the_index_existed_are_indexed_by_its_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steward.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    // The schema as it was before the word index.
    let mut before = sqlx::migrate!("./migrations");
    let earlier: Vec<_> = before
        .migrations
        .iter()
        .filter(|m| m.version < 14)
        .cloned()
        .collect();
    before.migrations = earlier.into();
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    before.run(&pool).await.unwrap();
    let mut connection = pool.acquire().await.unwrap();
    seed(&mut connection, "an older parcel", "the oldest answer").await;
    drop(connection);
    pool.close().await;

    let store = SqliteStore::open_file(&path, 1).await.unwrap();
    store.migrate().await.unwrap();
    let mut db = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("PRAGMA foreign_keys = ON")
        .execute(&mut db)
        .await
        .unwrap();
    assert_eq!(matches(&mut db, "scope : c03 AND older parcel").await, 1);
    assert_eq!(matches(&mut db, "oldest").await, 1);
    // Numbered oldest first, and tied to their messages.
    let seqs: Vec<(Vec<u8>, i64)> =
        sqlx::query_as("SELECT id, search_seq FROM messages ORDER BY search_seq")
            .fetch_all(&mut db)
            .await
            .unwrap();
    assert_eq!(seqs, vec![(vec![5], 1), (vec![4], 2)]);
    sqlx::query("DELETE FROM messages WHERE id = x'04'")
        .execute(&mut db)
        .await
        .unwrap();
    assert_eq!(matches(&mut db, "parcel").await, 0);
    assert_eq!(matches(&mut db, "oldest").await, 1);
}

/// Index pages holding `word` (its bytes, which an index page stores whole
/// when no term before it on the page shares its first letters).
async fn pages_holding(db: &mut SqliteConnection, word: &str) -> i64 {
    sqlx::query(
        "SELECT COUNT(*) AS n FROM messages_fts_data WHERE instr(block, CAST(? AS BLOB)) > 0",
    )
    .bind(word)
    .fetch_one(db)
    .await
    .unwrap()
    .get("n")
}

/// Deleting a message only marks its entries in the index deleted; the
/// erasure rewrites the index after, so the person's words are in none of
/// its pages, while everyone else's are still found.
#[tokio::test]
async fn an_erased_persons_words_are_in_no_page_of_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steward.db");
    let store = SqliteStore::open_file(&path, 1).await.unwrap();
    store.migrate().await.unwrap();
    let mut db = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let (org, bot, person) = (
        uuid::Uuid::now_v7(),
        uuid::Uuid::now_v7(),
        uuid::Uuid::now_v7(),
    );
    let (theirs, others) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    sqlx::query(
        "INSERT INTO organizations (id, name, tier, created_at) VALUES (?, 'Acme', 'free', 0)",
    )
    .bind(org)
    .execute(&mut db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO chatbots (id, org_id, name, system_prompt, temperature, status, created_at, updated_at)
         VALUES (?, ?, 'Helper', '', 0.2, 'active', 0, 0)",
    )
    .bind(bot)
    .bind(org)
    .execute(&mut db)
    .await
    .unwrap();
    sqlx::query("INSERT INTO people (id, org_id, created_at) VALUES (?, ?, 0)")
        .bind(person)
        .bind(org)
        .execute(&mut db)
        .await
        .unwrap();
    for (conversation, who) in [(theirs, Some(person)), (others, None)] {
        sqlx::query(
            "INSERT INTO conversations (id, org_id, chatbot_id, channel, person_id, created_at)
             VALUES (?, ?, ?, 'api', ?, 0)",
        )
        .bind(conversation)
        .bind(org)
        .bind(bot)
        .bind(who)
        .execute(&mut db)
        .await
        .unwrap();
    }
    // One message per transaction, as they come: many parts of the index,
    // merged as FTS5 merges them.
    for n in 0..600 {
        let (conversation, who, text) = match n % 3 {
            0 => (others, None, format!("hello there number {n}")),
            _ => (theirs, Some(person), format!("my zebracorn parcel {n}")),
        };
        sqlx::query(
            "INSERT INTO messages (id, org_id, chatbot_id, conversation_id, person_id, role, text, channel, created_at)
             VALUES (?, ?, ?, ?, ?, 'user', ?, 'api', ?)",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(org)
        .bind(bot)
        .bind(conversation)
        .bind(who)
        .bind(text)
        .bind(n)
        .execute(&mut db)
        .await
        .unwrap();
    }
    assert_eq!(matches(&mut db, "zebracorn").await, 400);
    assert!(pages_holding(&mut db, "zebracorn").await > 0);

    let scope = steward_store::TenantScope::for_operator(org.into());
    let erased = store.erase_person(&scope, person.into()).await.unwrap();
    assert_eq!(erased.messages, 400);
    assert_eq!(matches(&mut db, "zebracorn").await, 0);
    assert_eq!(
        pages_holding(&mut db, "zebracorn").await,
        0,
        "no page keeps the word"
    );
    assert_eq!(
        matches(&mut db, "hello").await,
        200,
        "everyone else's words are found"
    );
}

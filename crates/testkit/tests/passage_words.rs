//! PostgreSQL's word counts for full-text ranking (`passage_words`,
//! `passage_scopes`, kept by triggers on `chunks`) always equal a count made
//! afresh from the passages, however passages come and go, and writers of
//! one chatbot's passages side by side neither deadlock nor lose a count.
//! Runs when STEWARD_TEST_POSTGRES_URL is set.

use std::sync::Arc;

use steward_domain::{
    ChatbotId, ChatbotName, ChatbotStatus, DocumentId, DocumentSource, SystemPrompt, Temperature,
    Tier,
};
use steward_store::{
    Ingested, NewChatbot, NewChunk, NewDocument, Store, TenantScope, search_terms,
};
use steward_testkit::PostgresDatabase;
use steward_testkit::seed::organization_with_chatbot;

async fn chatbot(store: &Arc<dyn Store>, scope: &TenantScope, name: &str) -> ChatbotId {
    let chatbot = NewChatbot {
        name: ChatbotName::parse("name", name).unwrap(),
        system_prompt: SystemPrompt::parse("p", "").unwrap(),
        temperature: Temperature::parse("t", 0.5).unwrap(),
        model: None,
        status: ChatbotStatus::Active,
    };
    store.create_chatbot(scope, chatbot).await.unwrap().id
}

async fn document(
    store: &Arc<dyn Store>,
    scope: &TenantScope,
    chatbot: Option<ChatbotId>,
) -> DocumentId {
    let id = DocumentId::new();
    let new = NewDocument {
        id,
        chatbot_id: chatbot,
        source: if chatbot.is_some() {
            DocumentSource::Upload
        } else {
            DocumentSource::Context
        },
        label: format!("{id}.md"),
        url: None,
        blob_key: None,
        bytes: 1,
    };
    store.add_document(scope, new, 3).await.unwrap();
    id
}

async fn ingest(store: &Arc<dyn Store>, scope: &TenantScope, id: DocumentId, texts: &[String]) {
    let ingested = Ingested {
        bytes: 1,
        content_type: "text/plain".into(),
        content_hash: String::new(),
        chunks: texts
            .iter()
            .map(|text| NewChunk {
                heading: "Help".into(),
                text: text.clone(),
                embedding: None,
            })
            .collect(),
    };
    store.finish_ingest(scope, id, ingested).await.unwrap();
}

fn passages(seed: usize, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!("refund parcel word{} word{} shared", seed * 7 + i, i % 3))
        .collect()
}

/// Rows of the kept counts that a fresh count disagrees with, both ways.
async fn disagreements(db: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "WITH fresh AS (
             SELECT c.org_id, c.chatbot_id, l.lexeme, count(*) AS passages
             FROM chunks c, unnest(c.search) l GROUP BY 1, 2, 3
         ), kept AS (
             SELECT org_id, chatbot_id, lexeme, passages::int8 FROM passage_words
         ), fresh_scopes AS (
             SELECT org_id, chatbot_id, count(*) AS passages FROM chunks GROUP BY 1, 2
         ), kept_scopes AS (
             SELECT org_id, chatbot_id, passages::int8 FROM passage_scopes
         )
         SELECT (SELECT count(*) FROM ((SELECT * FROM fresh EXCEPT SELECT * FROM kept)
                                       UNION ALL (SELECT * FROM kept EXCEPT SELECT * FROM fresh)) w)
              + (SELECT count(*) FROM ((SELECT * FROM fresh_scopes EXCEPT SELECT * FROM kept_scopes)
                                       UNION ALL (SELECT * FROM kept_scopes EXCEPT SELECT * FROM fresh_scopes)) s)",
    )
    .fetch_one(db)
    .await
    .unwrap()
}

async fn rows(db: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM passage_words) + (SELECT count(*) FROM passage_scopes)",
    )
    .fetch_one(db)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn word_counts_follow_passages_through_every_change() {
    let Some(database) = PostgresDatabase::create().await else {
        eprintln!("skipped: backend not configured");
        return;
    };
    let postgres = steward_store_postgres::PostgresStore::connect(&database.url, 8)
        .await
        .unwrap();
    postgres.migrate().await.unwrap();
    let store: Arc<dyn Store> = Arc::new(postgres);
    let db = sqlx::PgPool::connect(&database.url).await.unwrap();

    let (acme, desk) = organization_with_chatbot(&*store, "Acme", Tier::Free).await;
    let (other, theirs) = organization_with_chatbot(&*store, "Other", Tier::Free).await;
    let (desk, theirs) = (desk.id, theirs.id);
    let sales = chatbot(&store, &acme, "Sales").await;
    let shared = document(&store, &acme, None).await;
    ingest(&store, &acme, shared, &passages(1, 4)).await;
    let kept = document(&store, &acme, Some(desk)).await;
    ingest(&store, &acme, kept, &passages(2, 5)).await;
    let doomed = document(&store, &acme, Some(sales)).await;
    ingest(&store, &acme, doomed, &passages(3, 6)).await;
    let elsewhere = document(&store, &other, Some(theirs)).await;
    ingest(&store, &other, elsewhere, &passages(4, 3)).await;
    assert!(rows(&db).await > 0);
    assert_eq!(disagreements(&db).await, 0, "after ingestion");

    // Eight documents of one chatbot written side by side, then written
    // again side by side (each replacing its passages): every write lands.
    let many: Vec<DocumentId> =
        futures::future::join_all((0..8).map(|_| document(&store, &acme, Some(desk)))).await;
    for round in 0..2 {
        let writes = many.iter().enumerate().map(|(i, &id)| {
            let (store, acme, texts) = (store.clone(), acme, passages(10 * round + i, 40));
            tokio::spawn(async move { ingest(&store, &acme, id, &texts).await })
        });
        for write in futures::future::join_all(writes).await {
            write.unwrap();
        }
        assert_eq!(
            disagreements(&db).await,
            0,
            "after concurrent round {round}"
        );
    }

    ingest(&store, &acme, kept, &passages(9, 2)).await;
    assert_eq!(
        disagreements(&db).await,
        0,
        "after a document's passages were replaced"
    );
    store.delete_document(&acme, kept).await.unwrap();
    assert_eq!(disagreements(&db).await, 0, "after a document was deleted");
    store.delete_chatbot(&acme, sales).await.unwrap();
    assert_eq!(
        disagreements(&db).await,
        0,
        "after a chatbot and its documents were deleted"
    );

    // The organization's shared passages are searched with the chatbot's.
    let hits = store
        .search_text(&acme, desk, &search_terms("word7"), 10)
        .await
        .unwrap();
    assert!(hits.iter().any(|h| h.document_id == shared), "{hits:?}");

    for id in many.iter().chain([&shared]) {
        store.delete_document(&acme, *id).await.unwrap();
    }
    store.delete_document(&other, elsewhere).await.unwrap();
    assert_eq!(rows(&db).await, 0, "no passages, no counts");
}

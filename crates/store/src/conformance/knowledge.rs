//! Documents, their chunks and full-text search.

use steward_domain::*;

use super::*;

fn upload(chatbot: Option<ChatbotId>, label: &str) -> NewDocument {
    let id = DocumentId::new();
    NewDocument {
        id,
        chatbot_id: chatbot,
        source: if chatbot.is_some() {
            DocumentSource::Upload
        } else {
            DocumentSource::Context
        },
        label: label.into(),
        url: None,
        blob_key: Some(format!("documents/{id}")),
        bytes: 42,
    }
}

fn chunks(texts: &[&str]) -> Ingested {
    Ingested {
        bytes: 42,
        content_type: "text/plain".into(),
        content_hash: "ab".repeat(32),
        chunks: texts
            .iter()
            .map(|t| NewChunk {
                heading: "Policies".into(),
                text: (*t).into(),
                embedding: None,
            })
            .collect(),
    }
}

async fn search(store: &S, scope: &TenantScope, chatbot: ChatbotId, query: &str) -> Vec<ChunkHit> {
    store
        .search_text(scope, chatbot, &search_terms(query), 10)
        .await
        .unwrap()
}

pub async fn documents_are_queued_ingested_listed_and_deleted(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Desk"))
        .await
        .unwrap();
    let added = store
        .add_document(&scope, upload(Some(bot.id), "refunds.md"), 3)
        .await
        .unwrap();
    assert_eq!(added.status, DocumentStatus::Queued);
    assert_eq!(added.label, "refunds.md");
    assert_eq!(added.chunk_count, 0);

    // The ingest job was stored with the document.
    let jobs = store
        .claim("w", &[JobKind::Ingest], 10, chrono::Duration::seconds(30))
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].org_id, Some(scope.org_id()));
    assert_eq!(jobs[0].payload["document_id"], added.id.to_string());

    store.start_ingest(&scope, added.id).await.unwrap();
    assert_eq!(
        store.document(&scope, added.id).await.unwrap().status,
        DocumentStatus::Processing
    );
    store
        .finish_ingest(
            &scope,
            added.id,
            chunks(&["Refunds take five days.", "Returns are free."]),
        )
        .await
        .unwrap();
    let ready = store.document(&scope, added.id).await.unwrap();
    assert_eq!(ready.status, DocumentStatus::Ready);
    assert_eq!(ready.chunk_count, 2);
    assert_eq!(ready.content_type.as_deref(), Some("text/plain"));
    assert_eq!(ready.error, None);

    let second = store
        .add_document(&scope, upload(Some(bot.id), "b.txt"), 3)
        .await
        .unwrap();
    let listed = store.documents(&scope, Some(bot.id)).await.unwrap();
    assert_eq!(
        listed.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![second.id, added.id],
        "newest first"
    );
    assert!(
        store.documents(&scope, None).await.unwrap().is_empty(),
        "no context yet"
    );

    store
        .fail_ingest(&scope, second.id, &"x".repeat(2000))
        .await
        .unwrap();
    let failed = store.document(&scope, second.id).await.unwrap();
    assert_eq!(failed.status, DocumentStatus::Failed);
    assert_eq!(
        failed.error.unwrap().chars().count(),
        500,
        "long reasons are cut"
    );

    let deleted = store.delete_document(&scope, added.id).await.unwrap();
    assert_eq!(
        deleted.blob_key, added.blob_key,
        "the caller learns which blob to delete"
    );
    assert!(matches!(
        store.document(&scope, added.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(
        search(&store, &scope, bot.id, "refunds").await.is_empty(),
        "chunks went too"
    );
    assert!(matches!(
        store.delete_document(&scope, added.id).await,
        Err(StoreError::NotFound)
    ));
    let actions: Vec<String> = store
        .list_audit(&scope, None, 50)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(actions.contains(&"document.create".to_string()));
    assert!(actions.contains(&"document.delete".to_string()));
}

pub async fn documents_added_together_are_all_stored_or_none(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Helper"))
        .await
        .unwrap();
    let (other, _) = org(&store, "Other").await;
    let theirs = store
        .create_chatbot(&other, new_chatbot("Theirs"))
        .await
        .unwrap();

    let added = store
        .add_documents(
            &scope,
            vec![upload(Some(bot.id), "a.md"), upload(Some(bot.id), "b.md")],
            3,
        )
        .await
        .unwrap();
    assert_eq!(added.len(), 2);
    // One of them names another organization's chatbot: none is stored.
    let refused = store
        .add_documents(
            &scope,
            vec![
                upload(Some(bot.id), "c.md"),
                upload(Some(theirs.id), "d.md"),
            ],
            3,
        )
        .await;
    assert!(matches!(refused, Err(StoreError::NotFound)), "{refused:?}");
    let listed = store.documents(&scope, Some(bot.id)).await.unwrap();
    let mut labels: Vec<_> = listed.iter().map(|d| d.label.as_str()).collect();
    labels.sort();
    assert_eq!(labels, ["a.md", "b.md"]);
    let jobs = store.queue_stats().await.unwrap();
    let ingests: i64 = jobs
        .iter()
        .filter(|s| s.kind == JobKind::Ingest)
        .map(|s| s.count)
        .sum();
    assert_eq!(ingests, 2, "an ingest job per stored document only");
}

pub async fn search_finds_stemmed_words_ranks_and_cites(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Desk"))
        .await
        .unwrap();
    let doc = store
        .add_document(&scope, upload(Some(bot.id), "policies.md"), 3)
        .await
        .unwrap();
    store
        .finish_ingest(
            &scope,
            doc.id,
            chunks(&[
                "Shipping is free above fifty euros.",
                "A refund is paid within five days of the returned parcel arriving. Refunds go to the original card.",
                "Our office dog is called Biscuit.",
            ]),
        )
        .await
        .unwrap();

    let hits = search(&store, &scope, bot.id, "How long do REFUNDS take?").await;
    assert!(!hits.is_empty());
    assert_eq!(hits[0].ordinal, 1, "the refund passage first: {hits:?}");
    assert_eq!(hits[0].label, "policies.md");
    assert_eq!(hits[0].document_id, doc.id);
    assert_eq!(hits[0].heading, "Policies");
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(
        hits.iter().all(|h| h.ordinal != 2),
        "the dog does not match"
    );

    // Syntax in a query is only words.
    for hostile in [
        "refund\" OR \"",
        "NEAR(refund dog)",
        "*",
        "' OR 1=1 --",
        "refund & !dog | (",
        "",
    ] {
        let _ = search(&store, &scope, bot.id, hostile).await;
    }
    assert!(search(&store, &scope, bot.id, "").await.is_empty());
    assert!(search(&store, &scope, bot.id, "zebra").await.is_empty());
}

pub async fn search_ranks_a_rare_word_above_a_common_one_among_many_passages(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Desk"))
        .await
        .unwrap();
    let common = store
        .add_document(&scope, upload(Some(bot.id), "orders.md"), 3)
        .await
        .unwrap();
    let many: Vec<String> = (0..2_500)
        .map(|i| format!("Order number {i} was shipped by parcel."))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    store
        .finish_ingest(&scope, common.id, chunks(&many))
        .await
        .unwrap();
    let rare = store
        .add_document(&scope, upload(Some(bot.id), "customs.md"), 3)
        .await
        .unwrap();
    store
        .finish_ingest(
            &scope,
            rare.id,
            chunks(&[
                "Customs duties are charged on arrival.",
                "A parcel held at customs is released once its duties are paid.",
            ]),
        )
        .await
        .unwrap();

    // Shared with thousands of passages, "parcel" weighs little; "customs"
    // decides, and both customs passages come before any order.
    let hits = search(&store, &scope, bot.id, "parcel customs").await;
    assert_eq!(hits.len(), 10, "{hits:?}");
    assert!(
        hits[..2].iter().all(|h| h.document_id == rare.id),
        "{hits:?}"
    );
    assert!(hits[2..].iter().all(|h| h.document_id == common.id));
    // A question of common words alone still finds passages.
    assert_eq!(
        search(&store, &scope, bot.id, "shipped parcel").await.len(),
        10
    );

    // Once the orders are gone, "parcel" is rare too.
    store.delete_document(&scope, common.id).await.unwrap();
    let hits = search(&store, &scope, bot.id, "parcel").await;
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].document_id, rare.id);
}

pub async fn reingesting_replaces_chunks_atomically(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Desk"))
        .await
        .unwrap();
    let page = NewDocument {
        source: DocumentSource::Url,
        url: Some("https://example.org/faq".into()),
        blob_key: None,
        ..upload(Some(bot.id), "https://example.org/faq")
    };
    let first = store.add_document(&scope, page.clone(), 3).await.unwrap();
    store
        .finish_ingest(
            &scope,
            first.id,
            chunks(&["The old opening hours are nine to five."]),
        )
        .await
        .unwrap();

    // The same URL again: the same document, queued again, its chunks still
    // found; an original written for the new one becomes the document's.
    let again = store
        .add_document(
            &scope,
            NewDocument {
                id: DocumentId::new(),
                blob_key: Some("pages/faq".into()),
                ..page.clone()
            },
            3,
        )
        .await
        .unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(again.status, DocumentStatus::Queued);
    assert_eq!(again.blob_key.as_deref(), Some("pages/faq"));
    let unchanged = store
        .add_document(
            &scope,
            NewDocument {
                id: DocumentId::new(),
                ..page
            },
            3,
        )
        .await
        .unwrap();
    assert_eq!(
        unchanged.blob_key.as_deref(),
        Some("pages/faq"),
        "no key given: kept"
    );
    assert_eq!(
        store.documents(&scope, Some(bot.id)).await.unwrap().len(),
        1
    );
    assert_eq!(search(&store, &scope, bot.id, "opening").await.len(), 1);
    let jobs = store
        .claim("w", &[JobKind::Ingest], 10, chrono::Duration::seconds(30))
        .await
        .unwrap();
    assert_eq!(
        jobs.len(),
        1,
        "one at a time: the two runs share an ordering key"
    );

    store.start_ingest(&scope, first.id).await.unwrap();
    assert_eq!(
        search(&store, &scope, bot.id, "opening").await.len(),
        1,
        "still found while processing"
    );
    store
        .finish_ingest(
            &scope,
            first.id,
            chunks(&["New opening hours: eight to six.", "Closed on Sundays."]),
        )
        .await
        .unwrap();
    let hits = search(&store, &scope, bot.id, "opening hours sundays").await;
    assert_eq!(hits.len(), 2);
    assert!(
        hits.iter().all(|h| !h.text.contains("nine")),
        "the old chunks are gone"
    );
    assert_eq!(
        store.document(&scope, first.id).await.unwrap().chunk_count,
        2
    );
}

pub async fn knowledge_stays_within_its_org_and_chatbot(store: S) {
    let (acme, _) = org(&store, "Acme").await;
    let (other, _) = org(&store, "Other").await;
    let desk = store
        .create_chatbot(&acme, new_chatbot("Desk"))
        .await
        .unwrap();
    let sales = store
        .create_chatbot(&acme, new_chatbot("Sales"))
        .await
        .unwrap();
    let theirs = store
        .create_chatbot(&other, new_chatbot("Theirs"))
        .await
        .unwrap();

    let ingest = |scope: TenantScope, doc: NewDocument, text: &'static str| {
        let store = store.clone();
        async move {
            let added = store.add_document(&scope, doc, 3).await.unwrap();
            store
                .finish_ingest(&scope, added.id, chunks(&[text]))
                .await
                .unwrap();
            added
        }
    };
    let desk_doc = ingest(
        acme,
        upload(Some(desk.id), "desk.txt"),
        "The secret launch codeword is marmalade.",
    )
    .await;
    ingest(
        acme,
        upload(None, "strategy.md"),
        "Our strategy: marmalade for everyone by 2030.",
    )
    .await;
    ingest(
        other,
        upload(Some(theirs.id), "theirs.txt"),
        "Their marmalade recipe is private.",
    )
    .await;

    let labels = |hits: Vec<ChunkHit>| {
        let mut labels: Vec<String> = hits.into_iter().map(|h| h.label).collect();
        labels.sort();
        labels
    };
    assert_eq!(
        labels(search(&store, &acme, desk.id, "marmalade").await),
        vec!["desk.txt", "strategy.md"],
        "the chatbot's own documents and its organization's context"
    );
    assert_eq!(
        labels(search(&store, &acme, sales.id, "marmalade").await),
        vec!["strategy.md"],
        "another chatbot sees the context only"
    );
    assert_eq!(
        labels(search(&store, &other, theirs.id, "marmalade").await),
        vec!["theirs.txt"]
    );
    // Another organization's chatbot id, under this org's scope, finds only
    // this org's context, never that chatbot's documents.
    assert_eq!(
        labels(search(&store, &acme, theirs.id, "marmalade").await),
        vec!["strategy.md"]
    );
    assert_eq!(
        store.documents(&acme, None).await.unwrap().len(),
        1,
        "context is listed apart"
    );

    // Another org cannot read, ingest into, or delete this org's document.
    assert!(matches!(
        store.document(&other, desk_doc.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.delete_document(&other, desk_doc.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.start_ingest(&other, desk_doc.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .finish_ingest(&other, desk_doc.id, chunks(&["overwritten"]))
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .add_document(&other, upload(Some(desk.id), "x.txt"), 3)
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(
        store
            .documents(&other, Some(desk.id))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .document(&acme, desk_doc.id)
            .await
            .unwrap()
            .chunk_count,
        1
    );

    // Deleting a chatbot deletes its documents and their chunks.
    store.delete_chatbot(&acme, desk.id).await.unwrap();
    assert!(matches!(
        store.document(&acme, desk_doc.id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        labels(search(&store, &acme, desk.id, "marmalade").await),
        vec!["strategy.md"]
    );
}

pub async fn crawls_keep_their_progress_and_state_and_chain_their_steps(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let (other, _) = org(&store, "Other").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Desk"))
        .await
        .unwrap();
    let new = NewCrawl {
        id: CrawlId::new(),
        chatbot_id: bot.id,
        root_url: "https://example.org/".into(),
        max_pages: 20,
        max_depth: 2,
    };
    let crawl = store.add_crawl(&scope, new.clone(), 3).await.unwrap();
    assert_eq!(crawl.status, CrawlStatus::Queued);
    assert_eq!(crawl.progress, CrawlProgress::default());
    assert!(matches!(
        store
            .add_crawl(
                &other,
                NewCrawl {
                    id: CrawlId::new(),
                    ..new.clone()
                },
                3
            )
            .await,
        Err(StoreError::NotFound)
    ));
    let lease = chrono::Duration::seconds(30);
    let first = store
        .claim("w", &[JobKind::Crawl], 10, lease)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].payload["crawl_id"], crawl.id.to_string());

    let progress = CrawlProgress {
        pages_done: 3,
        pages_failed: 1,
        pages_queued: 7,
        bytes: 12_345,
        note: None,
    };
    let state = serde_json::json!({"frontier": [["https://example.org/a", 1]], "seen": ["https://example.org/"]});
    let later = now() + chrono::Duration::milliseconds(200);
    store
        .save_crawl(
            &scope,
            crawl.id,
            CrawlStatus::Running,
            &progress,
            &state,
            Some(
                NewJob::of(&jobs::CrawlArgs { crawl_id: crawl.id }, 3)
                    .for_org(scope.org_id())
                    .at(later),
            ),
        )
        .await
        .unwrap();
    let read = store.crawl(&scope, crawl.id).await.unwrap();
    assert_eq!(
        (read.status, &read.progress, &read.state),
        (CrawlStatus::Running, &progress, &state)
    );
    assert!(
        store
            .claim("w", &[JobKind::Crawl], 10, lease)
            .await
            .unwrap()
            .is_empty(),
        "the next step waits for this one (same ordering key) and for its time"
    );
    assert!(store.complete(first[0].id, "w").await.unwrap());
    assert!(matches!(
        store
            .save_crawl(&other, crawl.id, CrawlStatus::Done, &progress, &state, None)
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.crawl(&other, crawl.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(store.crawls(&other, bot.id).await.unwrap().is_empty());
    assert_eq!(store.crawls(&scope, bot.id).await.unwrap().len(), 1);

    // A crawled page with the URL of a document already added is that document.
    let page = |source| NewDocument {
        source,
        url: Some("https://example.org/a".into()),
        ..upload(Some(bot.id), "https://example.org/a")
    };
    let by_url = store
        .add_document(&scope, page(DocumentSource::Url), 3)
        .await
        .unwrap();
    let crawled = store
        .add_document(&scope, page(DocumentSource::Crawl), 3)
        .await
        .unwrap();
    assert_eq!(crawled.id, by_url.id);
}

pub async fn vector_search_finds_the_nearest_passages_of_its_scope_only(store: S) {
    store.prepare_vectors(3).await.unwrap();
    store.prepare_vectors(3).await.unwrap(); // idempotent
    let (scope, _) = org(&store, "Acme").await;
    let (other, _) = org(&store, "Other").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Desk"))
        .await
        .unwrap();
    let sales = store
        .create_chatbot(&scope, new_chatbot("Sales"))
        .await
        .unwrap();
    let theirs = store
        .create_chatbot(&other, new_chatbot("Theirs"))
        .await
        .unwrap();
    let with_vectors = |items: &[(&str, Option<Vec<f32>>)]| Ingested {
        bytes: 1,
        content_type: "text/plain".into(),
        content_hash: "00".repeat(32),
        chunks: items
            .iter()
            .map(|(text, embedding)| NewChunk {
                heading: String::new(),
                text: (*text).into(),
                embedding: embedding.clone(),
            })
            .collect(),
    };
    let add = |scope: TenantScope, chatbot: Option<ChatbotId>, ingested: Ingested| {
        let store = store.clone();
        async move {
            let doc = store
                .add_document(&scope, upload(chatbot, "v.txt"), 3)
                .await
                .unwrap();
            store.finish_ingest(&scope, doc.id, ingested).await.unwrap();
            doc
        }
    };
    add(
        scope,
        Some(bot.id),
        with_vectors(&[
            ("east", Some(vec![1.0, 0.0, 0.0])),
            ("north", Some(vec![0.0, 1.0, 0.0])),
            ("north-east", Some(vec![0.7, 0.7, 0.0])),
            ("no vector", None),
            ("other length", Some(vec![1.0, 0.0])),
        ]),
    )
    .await;
    add(
        scope,
        Some(sales.id),
        with_vectors(&[("sales east", Some(vec![1.0, 0.0, 0.0]))]),
    )
    .await;
    add(
        scope,
        None,
        with_vectors(&[("context up", Some(vec![0.0, 0.0, 1.0]))]),
    )
    .await;
    add(
        other,
        Some(theirs.id),
        with_vectors(&[("their east", Some(vec![1.0, 0.0, 0.0]))]),
    )
    .await;

    let hits = store
        .search_vector(&scope, bot.id, &[0.9, 0.1, 0.0], 10)
        .await
        .unwrap();
    let texts: Vec<&str> = hits.iter().map(|h| h.text.as_str()).collect();
    assert_eq!(texts, vec!["east", "north-east", "north", "context up"]);
    assert!(
        (hits[0].score - 0.9939).abs() < 0.001,
        "cosine similarity: {}",
        hits[0].score
    );
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    assert_eq!(
        store
            .search_vector(&scope, bot.id, &[0.9, 0.1, 0.0], 1)
            .await
            .unwrap()
            .len(),
        1
    );
    let theirs_hits = store
        .search_vector(&other, theirs.id, &[1.0, 0.0, 0.0], 10)
        .await
        .unwrap();
    assert_eq!(
        theirs_hits
            .iter()
            .map(|h| h.text.as_str())
            .collect::<Vec<_>>(),
        vec!["their east"]
    );
    let cross = store
        .search_vector(&scope, theirs.id, &[1.0, 0.0, 0.0], 10)
        .await
        .unwrap();
    assert_eq!(
        cross.iter().map(|h| h.text.as_str()).collect::<Vec<_>>(),
        vec!["context up"]
    );

    // What a search saw is never served after the passages change: a
    // re-ingested document answers with its new vectors, a deleted one not at all.
    let search = |vector: [f32; 3]| {
        let store = store.clone();
        async move {
            store
                .search_vector(&scope, sales.id, &vector, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|h| h.text)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(search([1.0, 0.0, 0.0]).await, ["sales east", "context up"]);
    let doc = add(
        scope,
        Some(sales.id),
        with_vectors(&[("sales west", Some(vec![-1.0, 0.0, 0.0]))]),
    )
    .await;
    assert_eq!(
        search([-1.0, 0.0, 0.0]).await,
        ["sales west", "context up", "sales east"]
    );
    store
        .finish_ingest(
            &scope,
            doc.id,
            with_vectors(&[("sales down", Some(vec![0.0, 0.0, -1.0]))]),
        )
        .await
        .unwrap();
    assert_eq!(
        search([0.0, 0.0, -1.0]).await,
        ["sales down", "sales east", "context up"]
    );
    store.delete_document(&scope, doc.id).await.unwrap();
    assert_eq!(search([0.0, 0.0, -1.0]).await, ["sales east", "context up"]);
}

/// PostgreSQL stores vectors beside its HNSW index and puts them into it in
/// batches (`index_vectors`, queued with the passages); a search finds the
/// same passages in the same order before, during and after.
pub async fn vectors_are_found_the_same_before_while_and_after_they_are_indexed(store: S) {
    store.prepare_vectors(3).await.unwrap();
    let (scope, _) = org(&store, "Acme").await;
    let (other, _) = org(&store, "Other").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Desk"))
        .await
        .unwrap();
    let with_vectors = |items: &[(&str, Option<[f32; 3]>)]| Ingested {
        chunks: items
            .iter()
            .map(|(text, embedding)| NewChunk {
                heading: String::new(),
                text: (*text).into(),
                embedding: embedding.map(|e| e.to_vec()),
            })
            .collect(),
        ..chunks(&[])
    };
    let doc = store
        .add_document(&scope, upload(Some(bot.id), "v.txt"), 3)
        .await
        .unwrap();
    let passages = [
        ("east", Some([1.0, 0.0, 0.0])),
        ("north", Some([0.0, 1.0, 0.0])),
        ("north-east", Some([0.7, 0.7, 0.0])),
        ("up", Some([0.0, 0.0, 1.0])),
        ("no vector", None),
    ];
    store
        .finish_ingest(&scope, doc.id, with_vectors(&passages))
        .await
        .unwrap();
    let search = |limit: u32| {
        let store = store.clone();
        async move {
            store
                .search_vector(&scope, bot.id, &[0.9, 0.1, 0.0], limit)
                .await
                .unwrap()
                .into_iter()
                .map(|h| h.text)
                .collect::<Vec<_>>()
        }
    };
    let nearest = ["east", "north-east", "north", "up"];
    assert_eq!(search(10).await, nearest);
    assert_eq!(search(2).await, nearest[..2]);

    // An index_vectors job is queued with the passages exactly when their
    // vectors wait (PostgreSQL), in line with the document's ingests: it
    // runs once the ingest job is done.
    let lease = chrono::Duration::seconds(30);
    let kinds = [JobKind::Ingest, JobKind::IndexVectors];
    let ingest = store.claim("w", &kinds, 10, lease).await.unwrap();
    assert_eq!(ingest.len(), 1, "{ingest:?}");
    assert_eq!(ingest[0].kind, JobKind::Ingest);
    assert!(store.complete(ingest[0].id, "w").await.unwrap());
    let queued = store.claim("w", &kinds, 10, lease).await.unwrap();
    let waits = !queued.is_empty();
    if waits {
        assert_eq!(queued.len(), 1, "{queued:?}");
        assert_eq!(queued[0].org_id, Some(scope.org_id()));
        assert_eq!(queued[0].payload["document_id"], doc.id.to_string());
        assert_eq!(
            queued[0].ordering_key.as_deref(),
            Some(format!("document:{}", doc.id).as_str())
        );
    }

    // Another organization cannot index this one's document.
    assert_eq!(store.index_vectors(&other, doc.id, 10).await.unwrap(), 0);
    // A batch at a time; a search in between sees every passage once.
    assert_eq!(
        store.index_vectors(&scope, doc.id, 1).await.unwrap(),
        u64::from(waits)
    );
    assert_eq!(search(10).await, nearest);
    assert_eq!(search(2).await, nearest[..2]);
    assert_eq!(
        store.index_vectors(&scope, doc.id, 10).await.unwrap(),
        if waits { 3 } else { 0 }
    );
    assert_eq!(store.index_vectors(&scope, doc.id, 10).await.unwrap(), 0);
    assert_eq!(search(10).await, nearest);
    assert_eq!(search(2).await, nearest[..2]);

    // Ingested again, the new vectors wait and the old ones are gone; a
    // document deleted while its vectors wait leaves nothing to index.
    store
        .finish_ingest(
            &scope,
            doc.id,
            with_vectors(&[
                ("west", Some([-1.0, 0.0, 0.0])),
                ("east again", Some([1.0, 0.0, 0.0])),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(search(10).await, ["east again", "west"]);
    assert_eq!(
        store.index_vectors(&scope, doc.id, 1).await.unwrap(),
        u64::from(waits)
    );
    assert_eq!(search(10).await, ["east again", "west"]);
    store.delete_document(&scope, doc.id).await.unwrap();
    assert!(search(10).await.is_empty());
    assert_eq!(store.index_vectors(&scope, doc.id, 10).await.unwrap(), 0);
}

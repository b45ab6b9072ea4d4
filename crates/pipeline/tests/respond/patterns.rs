//! Patterns end to end: each answered message is labelled by a `classify`
//! job, through the model (both provider formats) when there is one and by
//! the taxonomy's keywords when there is none, and counted once however
//! often its job runs.

use std::time::Duration;

use steward_domain::JobState;
use steward_domain::jobs::ClassifyArgs;
use steward_domain::taxonomy::{Category, Subcategory, Taxonomy};
use steward_pipeline::Responder;
use steward_store::{NewJob, PatternCount, Span, TenantScope};
use steward_testkit::app::{Session, TestApp, spawn_app_with};
use steward_testkit::model::FakeModel;

use super::{Running, answered, model, send, start_worker_with};

fn labelling_worker(app: &TestApp, responder: Responder) -> Running {
    start_worker_with(app, responder, |respond| {
        respond.classify_attempts = Some(3);
    })
}

/// One category whose keyword is "passport" and whose name is "Visas".
fn travel() -> Taxonomy {
    Taxonomy {
        categories: vec![Category {
            name: "Travel".into(),
            subcategories: vec![Subcategory {
                name: "Visas".into(),
                keywords: vec!["passport".into()],
            }],
        }],
    }
}

fn scope(session: &Session) -> TenantScope {
    TenantScope::for_job(session.org_id.parse().unwrap())
}

/// This week's cells as (l1, l2, interactions, people), once the period
/// counts `interactions`.
async fn this_week(app: &TestApp, session: &Session, interactions: i64) -> Vec<PatternCount> {
    let week = Span::Week.period_of(steward_store::now().date_naive());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let counts = app
            .store
            .pattern_counts(&scope(session), Span::Week, week, week)
            .await
            .unwrap();
        let total = counts
            .iter()
            .find(|c| c.category_l1.is_empty())
            .map_or(0, |c| c.interactions);
        if total == interactions {
            return counts;
        }
        assert!(
            total < interactions && tokio::time::Instant::now() < deadline,
            "waiting for {interactions} interactions: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn cell(counts: &[PatternCount], l1: &str, l2: &str) -> Option<(i64, i64)> {
    counts
        .iter()
        .find(|c| c.category_l1 == l1 && c.category_l2 == l2)
        .map(|c| (c.interactions, c.people))
}

async fn labelled_by(fake: &FakeModel, responder: Responder, through_model: bool) {
    let app = spawn_app_with(|_| {}).await;
    let worker = labelling_worker(&app, responder);
    let owner = app.register("ada@example.org", "Acme").await;
    app.store
        .set_taxonomy(&scope(&owner), Some(&travel()))
        .await
        .unwrap();
    let bot = app.chatbot(&owner, "Helper").await;
    // Names the subcategory, holds no keyword: only a model labels it.
    let (_, named) = send(&app, &owner, &bot, "Who handles visas here?", None).await;
    answered(&app, &owner, &bot, &named).await;
    // Holds the keyword.
    let (_, keyword) = send(&app, &owner, &bot, "My passport expires soon", None).await;
    answered(&app, &owner, &bot, &keyword).await;
    let counts = this_week(&app, &owner, 2).await;
    let (visas, other) = if through_model {
        (2, None)
    } else {
        (1, Some((1, 1)))
    };
    assert_eq!(
        cell(&counts, "Travel", "Visas"),
        Some((visas, 1)),
        "{counts:?}"
    );
    assert_eq!(cell(&counts, "Other", "Other"), other, "{counts:?}");
    assert_eq!(cell(&counts, "", ""), Some((2, 1)));

    // The job run again for a message counted already counts nothing.
    let rerun = app
        .store
        .enqueue(
            NewJob::of(
                &ClassifyArgs {
                    message_id: named.parse().unwrap(),
                },
                3,
            )
            .for_org(owner.org_id.parse().unwrap()),
        )
        .await
        .unwrap()
        .expect("a new job");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let job = app.store.job(&scope(&owner), rerun.id).await.unwrap();
        if job.state == JobState::Succeeded {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rerun never finished: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.stop().await;
    assert_eq!(this_week(&app, &owner, 2).await, counts);
    if through_model {
        assert_eq!(
            fake.classifications(),
            2,
            "one question each, none for the rerun"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_messages_are_labelled_by_the_model_in_both_formats_and_counted_once() {
    let fake = FakeModel::start().await;
    labelled_by(&fake, model(&fake), true).await;
    let fake = FakeModel::start().await;
    let anthropic = Responder::Model(std::sync::Arc::new(steward_llm::Anthropic::new(
        reqwest::Client::new(),
        &fake.anthropic_base_url(),
        "test-key".into(),
        "fake-model",
        Duration::from_secs(5),
    )));
    labelled_by(&fake, anthropic, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_model_the_taxonomys_keywords_label_them() {
    let fake = FakeModel::start().await;
    labelled_by(&fake, Responder::RetrievalOnly, false).await;
    assert_eq!(fake.calls(), 0);
}

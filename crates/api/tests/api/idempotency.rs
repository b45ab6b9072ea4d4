//! `Idempotency-Key`: one effect per key, whatever the repeats.

use reqwest::{Method, StatusCode};
use serde_json::json;
use steward_testkit::app::{Reply, Session, TestApp, spawn_app};

async fn post_with_key(
    app: &TestApp,
    session: &Session,
    path: &str,
    key: &str,
    body: serde_json::Value,
) -> Reply {
    let response = app
        .client
        .post(app.url(path))
        .bearer_auth(&session.token)
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    TestApp::read(response).await
}

#[tokio::test]
async fn a_repeat_replays_the_first_response_without_a_second_effect() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let first = post_with_key(
        &app,
        &owner,
        "/api/v1/chatbots",
        "create-helper",
        json!({"name": "Helper"}),
    )
    .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let again = post_with_key(
        &app,
        &owner,
        "/api/v1/chatbots",
        "create-helper",
        json!({"name": "Helper"}),
    )
    .await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.body, first.body, "the same chatbot, byte for byte");
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(
        app.get("/api/v1/chatbots", &owner.token).await.body["total"],
        1
    );
}

#[tokio::test]
async fn twenty_concurrent_repeats_have_one_effect() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;
    let path = format!("/api/v1/chatbots/{bot}/messages");
    let body = json!({"text": "exactly once, please"});
    let replies = futures::future::join_all(
        (0..20).map(|_| post_with_key(&app, &owner, &path, "msg-1", body.clone())),
    )
    .await;
    let first = &replies[0];
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        assert_eq!(reply.body, first.body, "every repeat sees the same message");
    }
    let history = app
        .get(&format!("/api/v1/chatbots/{bot}/history"), &owner.token)
        .await;
    assert_eq!(history.body["messages"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.get("/api/v1/organizations/usage", &owner.token)
            .await
            .body["messages_used"],
        1
    );
}

#[tokio::test]
async fn a_key_reused_for_another_request_is_422() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    post_with_key(
        &app,
        &owner,
        "/api/v1/chatbots",
        "k",
        json!({"name": "One"}),
    )
    .await;
    let other_body = post_with_key(
        &app,
        &owner,
        "/api/v1/chatbots",
        "k",
        json!({"name": "Two"}),
    )
    .await;
    assert_eq!(other_body.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other_body.code(), "idempotency_key_reused");
    let other_route = post_with_key(
        &app,
        &owner,
        "/api/v1/api-keys",
        "k",
        json!({"name": "One"}),
    )
    .await;
    assert_eq!(other_route.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        app.get("/api/v1/chatbots", &owner.token).await.body["total"],
        1
    );
}

#[tokio::test]
async fn keys_belong_to_their_caller_and_errors_are_replayed_too() {
    let app = spawn_app().await;
    let ada = app.register("ada@example.org", "Acme").await;
    let eve = app.register("eve@example.org", "Other").await;
    let a = post_with_key(
        &app,
        &ada,
        "/api/v1/chatbots",
        "shared",
        json!({"name": "Mine"}),
    )
    .await;
    let e = post_with_key(
        &app,
        &eve,
        "/api/v1/chatbots",
        "shared",
        json!({"name": "Mine"}),
    )
    .await;
    assert_eq!(e.status, StatusCode::CREATED);
    assert_ne!(
        a.body["id"], e.body["id"],
        "another caller's key does not replay"
    );

    let invalid = post_with_key(&app, &ada, "/api/v1/chatbots", "bad", json!({"name": ""})).await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    let replayed = post_with_key(&app, &ada, "/api/v1/chatbots", "bad", json!({"name": ""})).await;
    assert_eq!(replayed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(replayed.headers["idempotent-replayed"], "true");
}

#[tokio::test]
async fn unauthenticated_posts_are_idempotent_and_bad_keys_refused() {
    let app = spawn_app().await;
    let body = json!({"email": "ada@example.org", "password": "Correct-Horse-9", "organization_name": "Acme"});
    let register = |key: &'static str| {
        let app = &app;
        let body = body.clone();
        async move {
            let response = app
                .client
                .post(app.url("/api/v1/auth/register"))
                .header("idempotency-key", key)
                .json(&body)
                .send()
                .await
                .unwrap();
            TestApp::read(response).await
        }
    };
    let first = register("signup-1").await;
    let second = register("signup-1").await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(second.status, StatusCode::ACCEPTED);
    assert_eq!(second.body, first.body);
    assert_eq!(second.headers["idempotent-replayed"], "true");
    assert!(first.headers.get("idempotent-replayed").is_none());

    for bad in ["", &"k".repeat(256)] {
        let response = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .header("idempotency-key", bad)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let reply = TestApp::read(response).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert_eq!(reply.code(), "invalid_idempotency_key");
    }
    let get = app.call(Method::GET, "/health", None, None).await;
    assert_eq!(get.status, StatusCode::OK);
}

/// An upload larger than `http.body_limit_bytes` (but within the upload
/// limit) is idempotent too: its digest is taken as it streams in.
#[tokio::test]
async fn a_keyed_upload_above_the_body_limit_takes_effect_once() {
    let app = steward_testkit::app::spawn_app_with(|c| c.http.body_limit_bytes = 64 * 1024).await;
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;
    let big = "Steward keeps what it is given.\n".repeat(8 * 1024); // 256 KiB
    let (content_type, body) = steward_testkit::app::multipart(&[("notes.txt", big.as_bytes())]);
    let upload = |key: &'static str, body: Vec<u8>| {
        let (app, content_type, bot, token) =
            (&app, content_type.clone(), bot.clone(), owner.token.clone());
        async move {
            let response = app
                .client
                .post(app.url(&format!("/api/v1/chatbots/{bot}/knowledge/upload")))
                .bearer_auth(token)
                .header("idempotency-key", key)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            TestApp::read(response).await
        }
    };
    let first = upload("upload-1", body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let again = upload("upload-1", body.clone()).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body, first.body);
    let listed = app
        .get(&format!("/api/v1/chatbots/{bot}/knowledge"), &owner.token)
        .await;
    assert_eq!(
        listed.body["documents"].as_array().unwrap().len(),
        1,
        "{}",
        listed.text
    );

    // Another body under the same key is refused, however large.
    let mut other = body.clone();
    let at = other.len() / 2;
    other[at] = b'X';
    let refused = upload("upload-1", other).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.code(), "idempotency_key_reused");
}

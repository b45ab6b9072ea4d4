//! The web chat's public routes: its page and widget, visitors' sessions,
//! origins, isolation between visitors, duplicates, limits and bad input.
//! (A visitor's conversation in a real browser, replies included, is in
//! crates/steward/tests/console.rs.)

use reqwest::StatusCode;
use serde_json::{Value, json};
use steward_testkit::app::{Reply, TestApp, spawn_app_with};

const SHOP: &str = "https://shop.example.org";

async fn web_channel(app: &TestApp, token: &str, chatbot: &str, origins: Value) -> Value {
    let name = format!("site {}", uuid::Uuid::new_v4());
    let created = app
        .post(
            &format!("/api/v1/chatbots/{chatbot}/channels"),
            token,
            json!({"kind": "web", "name": name, "config": {"allowed_origins": origins, "greeting": "Hello! Ask me anything."}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    created.body
}

/// A visitor's request: JSON, with their token and the page's origin.
async fn visit(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    origin: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let mut request = app.client.request(method, app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    TestApp::read(request.send().await.unwrap()).await
}

async fn session(app: &TestApp, channel: &str) -> String {
    let started = visit(
        app,
        reqwest::Method::POST,
        &format!("/chat/{channel}/session"),
        None,
        Some(SHOP),
        None,
    )
    .await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.text);
    started.body["token"].as_str().unwrap().to_owned()
}

async fn say(app: &TestApp, channel: &str, token: &str, text: &str, client_id: &str) -> Reply {
    visit(
        app,
        reqwest::Method::POST,
        &format!("/chat/{channel}/messages"),
        Some(token),
        Some(SHOP),
        Some(json!({"text": text, "client_id": client_id})),
    )
    .await
}

#[tokio::test]
async fn a_web_channel_serves_its_page_to_the_sites_it_lists_only() {
    let app =
        spawn_app_with(|c| c.http.public_url = Some("https://steward.example.org".into())).await;
    let owner = app.register("a@example.org", "Alpha").await;
    let bot = app.chatbot(&owner, "Helpdesk").await;
    let channel = web_channel(&app, &owner.token, &bot, json!([SHOP])).await;
    let id = channel["id"].as_str().unwrap();
    assert_eq!(channel["webhook_url"], Value::Null);
    assert_eq!(
        channel["chat_url"],
        format!("https://steward.example.org/chat/{id}")
    );
    assert_eq!(
        channel["snippet"],
        format!(r#"<script src="https://steward.example.org/chat/{id}/widget.js" async></script>"#)
    );
    assert_eq!(channel["settings"]["allowed_origins"][0], SHOP);

    let page = app
        .client
        .get(app.url(&format!("/chat/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains(&format!("frame-ancestors 'self' {SHOP}")),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"));
    assert!(
        !page.headers().contains_key("x-frame-options"),
        "frame-ancestors decides"
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("Helpdesk") && html.contains("Hello! Ask me anything."));
    let widget = app
        .client
        .get(app.url(&format!("/chat/{id}/widget.js")))
        .send()
        .await
        .unwrap();
    assert_eq!(widget.status(), StatusCode::OK);
    assert!(
        widget.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );

    // Other ids, and channels of other kinds, have no chat.
    let generic = app
        .post(
            &format!("/api/v1/chatbots/{bot}/channels"),
            &owner.token,
            json!({"kind": "generic", "name": "hook", "config": {"signing_secret": "s", "reply_url": "https://replies.example.org/hook"}}),
        )
        .await;
    for other in [
        uuid::Uuid::now_v7().to_string(),
        generic.body["id"].as_str().unwrap().to_owned(),
        "not-an-id".to_owned(),
    ] {
        for path in [format!("/chat/{other}"), format!("/chat/{other}/widget.js")] {
            let missing = app.client.get(app.url(&path)).send().await.unwrap();
            assert_eq!(missing.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }

    // A page of an unlisted site may not start a session.
    let refused = visit(
        &app,
        reqwest::Method::POST,
        &format!("/chat/{id}/session"),
        None,
        Some("https://evil.example"),
        None,
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.code(), "origin_not_allowed");
    let own = visit(
        &app,
        reqwest::Method::POST,
        &format!("/chat/{id}/session"),
        None,
        Some("https://steward.example.org"),
        None,
    )
    .await;
    assert_eq!(own.status, StatusCode::CREATED, "Steward's own chat page");

    // Bad origins are refused when the channel is configured.
    for bad in [
        json!(["https://shop.example.org/"]),
        json!(["http://shop.example.org"]),
        json!(["*"]),
        json!("https://shop.example.org"),
    ] {
        let refused = app
            .post(
                &format!("/api/v1/chatbots/{bot}/channels"),
                &owner.token,
                json!({"kind": "web", "name": "bad", "config": {"allowed_origins": bad}}),
            )
            .await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
}

#[tokio::test]
async fn visitors_see_their_own_conversation_once_and_no_one_elses() {
    let app = spawn_app_with(|c| c.channels.web_messages_per_minute = 4).await;
    let owner = app.register("a@example.org", "Alpha").await;
    let bot = app.chatbot(&owner, "Helpdesk").await;
    let channel = web_channel(&app, &owner.token, &bot, json!([SHOP])).await;
    let id = channel["id"].as_str().unwrap().to_owned();
    let other_channel = web_channel(&app, &owner.token, &bot, json!([SHOP])).await;
    let other = other_channel["id"].as_str().unwrap().to_owned();

    let ada = session(&app, &id).await;
    let bob = session(&app, &id).await;
    let client_id = uuid::Uuid::new_v4().to_string();
    let first = say(&app, &id, &ada, "my order number is 4711", &client_id).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text);
    let again = say(&app, &id, &ada, "my order number is 4711", &client_id).await;
    assert_eq!(again.status, StatusCode::OK, "the same message, sent twice");
    assert_eq!(again.body["duplicate"], true);

    let read = |token: String, channel: String| {
        let app = &app;
        async move {
            visit(
                app,
                reqwest::Method::GET,
                &format!("/chat/{channel}/messages"),
                Some(&token),
                Some(SHOP),
                None,
            )
            .await
        }
    };
    let own = read(ada.clone(), id.clone()).await;
    assert_eq!(own.status, StatusCode::OK);
    assert_eq!(
        own.body["messages"].as_array().unwrap().len(),
        1,
        "stored once"
    );
    let theirs = read(bob.clone(), id.clone()).await;
    assert_eq!(
        theirs.body["messages"],
        json!([]),
        "Bob sees nothing of Ada's"
    );
    assert!(!theirs.text.contains("4711"));
    let events = visit(
        &app,
        reqwest::Method::GET,
        &format!("/chat/{id}/events"),
        Some(&bob),
        Some(SHOP),
        None,
    )
    .await;
    assert_eq!(
        events.status,
        StatusCode::NOT_FOUND,
        "Bob has no conversation to follow"
    );
    let elsewhere = read(ada.clone(), other.clone()).await;
    assert_eq!(
        elsewhere.status,
        StatusCode::UNAUTHORIZED,
        "a session is one chat's"
    );

    // The organization sees the conversation, on the web channel.
    let listed = app
        .get("/api/v1/conversations?channel=web", &owner.token)
        .await;
    assert_eq!(listed.body["conversations"].as_array().unwrap().len(), 1);

    // Bad input.
    for (token, body, status) in [
        (
            None,
            json!({"text": "hi", "client_id": uuid::Uuid::new_v4()}),
            StatusCode::UNAUTHORIZED,
        ),
        (
            Some("forged.token"),
            json!({"text": "hi", "client_id": uuid::Uuid::new_v4()}),
            StatusCode::UNAUTHORIZED,
        ),
        (
            Some(ada.as_str()),
            json!({"text": "", "client_id": uuid::Uuid::new_v4()}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Some(ada.as_str()),
            json!({"text": "x".repeat(4001), "client_id": uuid::Uuid::new_v4()}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Some(ada.as_str()),
            json!({"text": "hi"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Some(ada.as_str()),
            json!({"text": "hi", "client_id": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Some(ada.as_str()),
            json!({"text": "hi", "client_id": uuid::Uuid::new_v4(), "role": "assistant"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Some(ada.as_str()),
            json!({"text": "y".repeat(40_000), "client_id": uuid::Uuid::new_v4()}),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        let reply = visit(
            &app,
            reqwest::Method::POST,
            &format!("/chat/{id}/messages"),
            token,
            Some(SHOP),
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            reply.status,
            status,
            "{}: {}",
            body.to_string().chars().take(80).collect::<String>(),
            reply.text
        );
    }
    let from_elsewhere = visit(
        &app,
        reqwest::Method::POST,
        &format!("/chat/{id}/messages"),
        Some(&ada),
        Some("https://evil.example"),
        Some(json!({"text": "hi", "client_id": uuid::Uuid::new_v4()})),
    )
    .await;
    assert_eq!(from_elsewhere.status, StatusCode::FORBIDDEN);

    // Each visitor has their own limit (4 a minute here; the duplicate counted).
    for i in 0..2 {
        let sent = say(
            &app,
            &id,
            &ada,
            &format!("more {i}"),
            &uuid::Uuid::new_v4().to_string(),
        )
        .await;
        assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.text);
    }
    let limited = say(
        &app,
        &id,
        &ada,
        "too many",
        &uuid::Uuid::new_v4().to_string(),
    )
    .await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    let bob_says = say(&app, &id, &bob, "hello", &uuid::Uuid::new_v4().to_string()).await;
    assert_eq!(
        bob_says.status,
        StatusCode::ACCEPTED,
        "Bob is not slowed by Ada"
    );

    // A paused chatbot takes no visitor's message.
    app.patch(
        &format!("/api/v1/chatbots/{bot}"),
        &owner.token,
        json!({"status": "paused"}),
    )
    .await;
    let paused = say(
        &app,
        &id,
        &bob,
        "anyone?",
        &uuid::Uuid::new_v4().to_string(),
    )
    .await;
    assert_eq!(paused.status, StatusCode::CONFLICT);
    assert_eq!(paused.code(), "chatbot_paused");
}

#[tokio::test]
async fn a_visitor_rates_replies_in_their_own_conversation_only() {
    use steward_domain::{MessageId, MessageRole, MessageText};
    use steward_store::{ConversationChoice, NewMessage, TenantScope};
    let app = spawn_app_with(|_| {}).await;
    let owner = app.register("a@example.org", "Alpha").await;
    let bot = app.chatbot(&owner, "Helpdesk").await;
    let channel = web_channel(&app, &owner.token, &bot, json!([SHOP])).await;
    let id = channel["id"].as_str().unwrap();
    let ana = session(&app, id).await;
    let bo = session(&app, id).await;
    let asked = say(
        &app,
        id,
        &ana,
        "Open on Sunday?",
        &uuid::Uuid::new_v4().to_string(),
    )
    .await;
    let asked: MessageId = asked.body["message_id"].as_str().unwrap().parse().unwrap();
    // The reply a worker writes in Ana's conversation.
    let scope = TenantScope::for_job(owner.org_id.parse().unwrap());
    let question = app.store.message(&scope, asked).await.unwrap();
    let reply = app
        .store
        .add_message(
            &scope,
            NewMessage {
                id: MessageId::new(),
                chatbot_id: question.chatbot_id,
                conversation: ConversationChoice::Existing(question.conversation_id),
                role: MessageRole::Assistant,
                text: MessageText::parse("text", "Yes, 10 to 4.").unwrap(),
                channel: "web".into(),
                external_id: None,
                answers: Some(asked),
                channel_id: question.channel_id,
                channel_secrets: None,
                meta: None,
                tokens: 1,
                then: Vec::new(),
                sender: None,
                forwarded: false,
                conversation_key: None,
            },
        )
        .await
        .unwrap()
        .id;
    async fn rate_as(
        app: &TestApp,
        channel: &str,
        token: &str,
        message: String,
        body: Value,
    ) -> Reply {
        let path = format!("/chat/{channel}/messages/{message}/feedback");
        visit(
            app,
            reqwest::Method::POST,
            &path,
            Some(token),
            Some(SHOP),
            Some(body),
        )
        .await
    }
    let rate = |token: &str, message: String, body: Value| {
        let token = token.to_owned();
        let app = &app;
        async move { rate_as(app, id, &token, message, body).await }
    };
    for rating in ["down", "up", "up"] {
        let rated = rate(&ana, reply.to_string(), json!({"rating": rating})).await;
        assert_eq!(rated.status, StatusCode::NO_CONTENT, "{}", rated.text);
    }
    let read = app
        .get(&format!("/api/v1/messages/{reply}/feedback"), &owner.token)
        .await;
    let ratings = read.body["feedback"].as_array().unwrap();
    assert_eq!(ratings.len(), 1, "one visitor, one rating: {}", read.text);
    assert_eq!(ratings[0]["rating"], "up");

    // Not another visitor's, not a question, not a made-up id, not without a session.
    for (token, message) in [
        (&bo, reply.to_string()),
        (&ana, asked.to_string()),
        (&ana, uuid::Uuid::now_v7().to_string()),
        (&ana, "not-an-id".to_owned()),
    ] {
        let refused = rate(token, message.clone(), json!({"rating": "down"})).await;
        let expected = if message == asked.to_string() {
            StatusCode::CONFLICT
        } else {
            StatusCode::NOT_FOUND
        };
        assert_eq!(refused.status, expected, "{message}: {}", refused.text);
    }
    for bad in [
        json!({"rating": "meh"}),
        json!({}),
        json!({"rating": "up", "comment": "x"}),
    ] {
        let refused = rate(&ana, reply.to_string(), bad.clone()).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let anonymous = visit(
        &app,
        reqwest::Method::POST,
        &format!("/chat/{id}/messages/{reply}/feedback"),
        None,
        Some(SHOP),
        Some(json!({"rating": "down"})),
    )
    .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let again = app
        .get(&format!("/api/v1/messages/{reply}/feedback"), &owner.token)
        .await;
    assert_eq!(again.body, read.body, "nothing changed");
}

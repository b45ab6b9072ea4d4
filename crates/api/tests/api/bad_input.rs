//! Malformed, oversized and hostile input: a clear 4xx with the standard error
//! body, and nothing changed.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use steward_testkit::app::{Session, TestApp, spawn_app, spawn_app_with};

async fn chatbot_count(app: &TestApp, session: &Session) -> u64 {
    app.get("/api/v1/chatbots", &session.token).await.body["total"]
        .as_u64()
        .unwrap()
}

/// Sends raw bytes with a content type to create a chatbot.
async fn raw_post(
    app: &TestApp,
    session: &Session,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> steward_testkit::app::Reply {
    let mut request = app
        .client
        .post(app.url("/api/v1/chatbots"))
        .bearer_auth(&session.token)
        .body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    TestApp::read(request.send().await.unwrap()).await
}

#[tokio::test]
async fn malformed_bodies_get_clear_errors_and_create_nothing() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let cases: Vec<(Option<&str>, Vec<u8>, StatusCode, &str)> = vec![
        (
            Some("application/json"),
            b"{\"name\": ".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            Some("application/json"),
            b"not json at all".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            Some("application/json"),
            b"".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            Some("application/json"),
            b"{\"name\": \"\xff\xfe\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            Some("text/plain"),
            b"{\"name\": \"x\"}".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            None,
            b"{\"name\": \"x\"}".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            Some("application/json"),
            b"{}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Some("application/json"),
            b"[]".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Some("application/json"),
            b"{\"name\": 42}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Some("application/json"),
            b"{\"name\": \"x\", \"temperature\": \"hot\"}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Some("application/json"),
            b"{\"name\": \"x\", \"colour\": \"blue\"}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
    ];
    for (content_type, body, status, code) in cases {
        let shown = String::from_utf8_lossy(&body).into_owned();
        let reply = raw_post(&app, &owner, content_type, body).await;
        assert_eq!(
            reply.status, status,
            "{content_type:?} {shown}: {}",
            reply.text
        );
        assert_eq!(reply.code(), code, "{shown}");
        assert!(!reply.body["error"]["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(chatbot_count(&app, &owner).await, 0);
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let app = spawn_app_with(|c| c.http.body_limit_bytes = 64 * 1024).await;
    let owner = app.register("ada@example.org", "Acme").await;
    let huge = json!({"name": "x", "system_prompt": "p".repeat(100 * 1024)})
        .to_string()
        .into_bytes();
    let reply = raw_post(&app, &owner, Some("application/json"), huge.clone()).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.code(), "payload_too_large");

    // The same through the idempotency layer, which reads the body itself.
    let with_key = app
        .client
        .post(app.url("/api/v1/chatbots"))
        .bearer_auth(&owner.token)
        .header("content-type", "application/json")
        .header("idempotency-key", "big-1")
        .body(huge)
        .send()
        .await
        .unwrap();
    let reply = TestApp::read(with_key).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.code(), "payload_too_large");
    assert_eq!(chatbot_count(&app, &owner).await, 0);
}

#[tokio::test]
async fn invalid_values_name_the_field_and_valid_unicode_is_kept_intact() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    for (body, field) in [
        (json!({"name": "x", "temperature": -0.1}), "temperature"),
        (json!({"name": "x", "temperature": 2.1}), "temperature"),
        (json!({"name": ""}), "name"),
        (json!({"name": "   "}), "name"),
        (json!({"name": "n".repeat(101)}), "name"),
        (json!({"name": "nul\u{0}byte"}), "name"),
        (
            json!({"name": "x", "system_prompt": "a\u{0}b"}),
            "system_prompt",
        ),
        (
            json!({"name": "x", "system_prompt": "p".repeat(20_001)}),
            "system_prompt",
        ),
        (json!({"name": "x", "model": "two words"}), "model"),
    ] {
        let reply = app
            .post("/api/v1/chatbots", &owner.token, body.clone())
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            reply.text
        );
        assert_eq!(reply.code(), "validation_failed");
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(field),
            "{}",
            reply.text
        );
    }
    assert_eq!(chatbot_count(&app, &owner).await, 0);

    let name = "مساعد المبيعات 🤖👩‍👩‍👧";
    let prompt = "שלום! Réponds en français. 日本語もOK. \\u0000 is just text here.";
    let created = app
        .post(
            "/api/v1/chatbots",
            &owner.token,
            json!({"name": name, "system_prompt": prompt, "temperature": 2.0}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.body["id"].as_str().unwrap();
    let fetched = app
        .get(&format!("/api/v1/chatbots/{id}"), &owner.token)
        .await;
    assert_eq!(fetched.body["name"], name);
    assert_eq!(fetched.body["system_prompt"], prompt);
    assert_eq!(fetched.body["temperature"], 2.0);

    let escaped = raw_post(
        &app,
        &owner,
        Some("application/json"),
        br#"{"name": "\ud83e\udd16 escaped"}"#.to_vec(),
    )
    .await;
    assert_eq!(escaped.status, StatusCode::CREATED);
    assert_eq!(escaped.body["name"], "🤖 escaped");
}

#[tokio::test]
async fn smuggled_org_id_and_role_are_never_applied() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let other = app.register("eve@example.org", "Other").await;
    let smuggled = app
        .post(
            "/api/v1/chatbots",
            &owner.token,
            json!({"name": "x", "org_id": other.org_id}),
        )
        .await;
    assert_eq!(smuggled.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(chatbot_count(&app, &other).await, 0);

    let register = app
        .call(Method::POST, "/api/v1/auth/register", None, Some(json!({"email": "m@example.org", "password": "Correct-Horse-9", "organization_name": "M", "role": "platform_admin"})))
        .await;
    assert_eq!(register.status, StatusCode::UNPROCESSABLE_ENTITY);

    let member = app.member(&owner, "member@example.org", "member").await;
    let me = app
        .patch(
            &format!("/api/v1/organizations/members/{}", member.user_id),
            &member.token,
            json!({"role": "owner"}),
        )
        .await;
    assert_eq!(me.status, StatusCode::FORBIDDEN);
    let message = app
        .post(
            "/api/v1/chatbots/00000000-0000-0000-0000-000000000000/messages",
            &member.token,
            json!({"text": "x", "role": "assistant"}),
        )
        .await;
    assert_eq!(message.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn unknown_and_invalid_ids_are_404_and_400() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let unknown = app
        .get(
            "/api/v1/chatbots/01a201cd-5ba2-77d9-914a-364343b3f1b1",
            &owner.token,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.code(), "not_found");
    for bad in [
        "not-a-uuid",
        "1234",
        "01a201cd-5ba2-77d9-914a-364343b3f1b",
        "%00",
    ] {
        let reply = app
            .get(&format!("/api/v1/chatbots/{bad}"), &owner.token)
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(reply.code(), "invalid_id");
    }
    let nowhere = app.get("/api/v1/no-such-route", &owner.token).await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    assert_eq!(nowhere.code(), "not_found");
    let wrong_method = app
        .call(
            Method::PUT,
            "/api/v1/chatbots",
            Some(&owner.token),
            Some(json!({})),
        )
        .await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.code(), "method_not_allowed");
}

#[tokio::test]
async fn page_limits_and_cursors_are_checked() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;
    let other_bot = app.chatbot(&owner, "Other").await;
    for limit in ["0", "201", "-1", "ten", "1.5", ""] {
        for path in [
            format!("/api/v1/chatbots?limit={limit}"),
            format!("/api/v1/chatbots/{bot}/history?limit={limit}"),
        ] {
            let reply = app.get(&path, &owner.token).await;
            assert_eq!(
                reply.status,
                StatusCode::BAD_REQUEST,
                "{path}: {}",
                reply.text
            );
            assert_eq!(reply.code(), "invalid_query");
        }
    }
    assert_eq!(
        app.get("/api/v1/chatbots?offset=-3", &owner.token)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    for _ in 0..3 {
        app.post(
            &format!("/api/v1/chatbots/{other_bot}/messages"),
            &owner.token,
            json!({"text": "hi"}),
        )
        .await;
    }
    let page = app
        .get(
            &format!("/api/v1/chatbots/{other_bot}/history?limit=1"),
            &owner.token,
        )
        .await;
    let foreign_cursor = page.body["next_cursor"].as_str().unwrap().to_owned();
    let forged = {
        let mut chars: Vec<char> = foreign_cursor.chars().collect();
        chars[5] = if chars[5] == 'A' { 'B' } else { 'A' };
        chars.into_iter().collect::<String>()
    };
    for (cursor, status, code) in [
        (
            foreign_cursor.as_str(),
            StatusCode::CONFLICT,
            "unknown_cursor",
        ),
        (forged.as_str(), StatusCode::CONFLICT, "unknown_cursor"),
        ("garbage", StatusCode::BAD_REQUEST, "invalid_cursor"),
        (
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
        ),
    ] {
        let reply = app
            .get(
                &format!("/api/v1/chatbots/{bot}/history?cursor={cursor}"),
                &owner.token,
            )
            .await;
        assert_eq!(reply.status, status, "{cursor}");
        assert_eq!(reply.code(), code);
    }
    for (from, to) in [
        ("yesterday", ""),
        ("2026-11-02T00:00:00Z", "2026-11-01T00:00:00Z"),
    ] {
        let mut path = format!("/api/v1/chatbots/{bot}/history?from={from}");
        if !to.is_empty() {
            path.push_str(&format!("&to={to}"));
        }
        assert_eq!(
            app.get(&path, &owner.token).await.code(),
            "invalid_query",
            "{path}"
        );
    }
}

#[tokio::test]
async fn integration_configs_must_be_small_objects_and_ids_known() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let refused = |integration: &'static str, config: Value| {
        let app = &app;
        let token = owner.token.clone();
        async move {
            let reply = app
                .post(
                    "/api/v1/integrations/enable",
                    &token,
                    json!({"integration_id": integration, "config": config}),
                )
                .await;
            assert_eq!(
                reply.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{config}: {}",
                reply.text
            );
            reply.body["error"]["message"].as_str().unwrap().to_owned()
        }
    };
    for config in [
        json!("string"),
        json!([1, 2]),
        json!(7),
        json!({"nul": "a\u{0}b"}),
    ] {
        refused("lead-capture", config).await;
    }
    let item = json!({"name": "Basic", "unit_price": 10});
    for (config, why) in [
        (json!({}), "missing field"),
        (
            json!({"currency": "EUR", "items": {"../x": item}}),
            "item ids",
        ),
        (
            json!({"currency": "EUR", "items": {"x": {"name": "X", "unit_price": 1e12}}}),
            "unit_price",
        ),
        (
            json!({"currency": "EUR", "items": {"x": {"name": "X\u{7}", "unit_price": 1}}}),
            "control",
        ),
        (
            json!({"currency": "EUR", "items": {"x": item}, "tax_percent": -1}),
            "tax_percent",
        ),
        (
            json!({"currency": "EUR", "items": {"x": {"name": "X", "unit_price": 1, "min_quantity": 0.5}}}),
            "whole number",
        ),
    ] {
        let message = refused("pricing-calculator", config).await;
        assert!(message.contains(why), "{message}");
    }
    let many: serde_json::Map<String, Value> =
        (0..501).map(|i| (format!("i{i}"), item.clone())).collect();
    let message = refused(
        "pricing-calculator",
        json!({"currency": "EUR", "items": many}),
    )
    .await;
    assert!(message.contains("between 1 and 500 items"), "{message}");
    let unknown = app
        .post(
            "/api/v1/integrations/enable",
            &owner.token,
            json!({"integration_id": "../../etc/passwd"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let listed = app
        .get("/api/v1/integrations/available", &owner.token)
        .await;
    assert!(
        listed.body["integrations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["enabled"] == false)
    );
}

#[tokio::test]
async fn empty_or_invalid_messages_and_patches_are_refused() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;
    for text in ["", "   ", "a\u{0}b"] {
        let reply = app
            .post(
                &format!("/api/v1/chatbots/{bot}/messages"),
                &owner.token,
                json!({"text": text}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{text:?}");
    }
    let long = app
        .post(
            &format!("/api/v1/chatbots/{bot}/messages"),
            &owner.token,
            json!({"text": "x".repeat(32_001)}),
        )
        .await;
    assert_eq!(long.status, StatusCode::UNPROCESSABLE_ENTITY);
    let empty_patch = app
        .patch(&format!("/api/v1/chatbots/{bot}"), &owner.token, json!({}))
        .await;
    assert_eq!(
        empty_patch.status,
        StatusCode::OK,
        "an empty patch changes nothing"
    );
    assert_eq!(empty_patch.body["id"], bot.as_str());
    let unknown_conversation = app
        .post(
            &format!("/api/v1/chatbots/{bot}/messages"),
            &owner.token,
            json!({"text": "hi", "conversation_id": "01a234cb-49d5-7046-bfce-05703d88cbc5"}),
        )
        .await;
    assert_eq!(unknown_conversation.status, StatusCode::CONFLICT);
    assert_eq!(unknown_conversation.code(), "unknown_conversation");
    let history = app
        .get(&format!("/api/v1/chatbots/{bot}/history"), &owner.token)
        .await;
    assert_eq!(history.body["messages"].as_array().unwrap().len(), 0);
}

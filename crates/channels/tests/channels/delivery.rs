//! Outbound: every channel end to end, long replies, retries and failures.

use reqwest::StatusCode;
use serde_json::json;
use steward_domain::{JobKind, JobState};
use steward_testkit::providers::Failure;

use crate::*;

#[tokio::test]
async fn whatsapp_end_to_end() {
    let h = Harness::start().await;
    let path = h.whatsapp().await;
    let body = whatsapp_message("wamid.in1", "16505551234", "Does it come in another color?");
    let reply = h.post_raw(&path, &whatsapp_headers(&body), body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);

    let sent = h.providers.wait_for("whatsapp", 1).await;
    assert_eq!(sent[0].path, format!("/v21.0/{PHONE_NUMBER_ID}/messages"));
    assert_eq!(sent[0].headers["authorization"], "Bearer EAAG-access-token");
    assert_eq!(sent[0].body["messaging_product"], "whatsapp");
    assert_eq!(sent[0].body["to"], "16505551234");
    assert_eq!(sent[0].body["type"], "text");
    assert_eq!(
        sent[0].body["text"]["body"],
        "echo: Does it come in another color?"
    );
}

#[tokio::test]
async fn slack_end_to_end_replies_in_the_thread() {
    let h = Harness::start().await;
    let path = h.slack().await;
    let top = slack_message(
        "EvA",
        "C123ABC456",
        "1355517523.000005",
        None,
        "Who can help?",
    );
    h.post_raw(&path, &slack_headers(&top, &now_secs()), top)
        .await;
    let sent = h.providers.wait_for("slack", 1).await;
    assert_eq!(sent[0].headers["authorization"], "Bearer xoxb-test-token");
    assert_eq!(sent[0].body["channel"], "C123ABC456");
    assert_eq!(sent[0].body["thread_ts"], "1355517523.000005");
    assert_eq!(sent[0].body["text"], "echo: Who can help?");

    // A follow-up in that thread continues its conversation.
    let follow = slack_message(
        "EvB",
        "C123ABC456",
        "1355517600.000001",
        Some("1355517523.000005"),
        "Thanks!",
    );
    h.post_raw(&path, &slack_headers(&follow, &now_secs()), follow)
        .await;
    let sent = h.providers.wait_for("slack", 2).await;
    assert_eq!(sent[1].body["thread_ts"], "1355517523.000005");
    let users = h.user_messages().await;
    assert_eq!(users.len(), 2);
    assert_eq!(users[0].conversation_id, users[1].conversation_id);
}

#[tokio::test]
async fn telegram_end_to_end_answers_the_message() {
    let h = Harness::start().await;
    let path = h.telegram().await;
    let body = telegram_message(10000, 1111111, 1365, "/start");
    h.post_raw(&path, &telegram_headers(), body).await;
    let sent = h.providers.wait_for("telegram", 1).await;
    assert_eq!(sent[0].path, "/bot123456:ABC-DEF/sendMessage");
    assert_eq!(sent[0].body["chat_id"], 1111111);
    assert_eq!(sent[0].body["text"], "echo: /start");
    assert_eq!(sent[0].body["reply_parameters"]["message_id"], 1365);
}

#[tokio::test]
async fn generic_end_to_end_posts_a_signed_reply() {
    let h = Harness::start().await;
    let path = h.generic().await;
    let body = json!({ "id": "evt-1", "user": "customer-7", "conversation": "ticket-99", "text": "Status of ticket 99?" })
        .to_string()
        .into_bytes();
    h.post_raw(&path, &generic_headers(&body, &now_secs()), body)
        .await;
    let sent = h.providers.wait_for("generic", 1).await;
    let reply = &sent[0];
    assert_eq!(reply.body["type"], "reply");
    assert_eq!(reply.body["in_reply_to"], "evt-1");
    assert_eq!(reply.body["user"], "customer-7");
    assert_eq!(reply.body["conversation"], "ticket-99");
    assert_eq!(reply.body["text"], "echo: Status of ticket 99?");
    // Signed the same way Steward checks inbound webhooks.
    generic::check(
        GENERIC_SECRET,
        Some(&reply.headers["x-steward-timestamp"]),
        Some(&reply.headers["x-steward-signature"]),
        &reply.raw,
        Utc::now(),
    )
    .unwrap();
    assert_eq!(
        reply.headers["idempotency-key"],
        reply.body["id"].as_str().unwrap()
    );
}

#[tokio::test]
async fn each_person_has_one_conversation_per_channel() {
    let h = Harness::start().await;
    let path = h.telegram().await;
    for (update, chat, text) in [(1, 500, "a1"), (2, 600, "b1"), (3, 500, "a2")] {
        let body = telegram_message(update, chat, update * 10, text);
        h.post_raw(&path, &telegram_headers(), body).await;
    }
    h.providers.wait_for("telegram", 2).await;
    let users = h.user_messages().await;
    assert_eq!(users.len(), 3);
    assert_eq!(users[0].conversation_id, users[2].conversation_id);
    assert_ne!(users[0].conversation_id, users[1].conversation_id);
}

#[tokio::test]
async fn long_replies_are_split_at_sentences_and_sent_in_order() {
    let h = Harness::start().await;
    let path = h.telegram().await;
    let sentence = "This sentence is part of a long answer. ";
    let text = sentence.repeat(150); // ~6,000 characters: two Telegram messages.
    let body = telegram_message(1, 77, 5, &text);
    h.post_raw(&path, &telegram_headers(), body).await;
    let sent = h.providers.wait_for("telegram", 2).await;
    h.settled(JobKind::Deliver).await;
    assert_eq!(h.providers.sent("telegram").len(), 2);
    let parts: Vec<&str> = sent
        .iter()
        .map(|s| s.body["text"].as_str().unwrap())
        .collect();
    assert!(parts.iter().all(|p| p.chars().count() <= 4096));
    assert!(
        parts[0].ends_with("answer."),
        "cut at a sentence: …{}",
        &parts[0][parts[0].len() - 20..]
    );
    assert_eq!(
        format!("{} {}", parts[0], parts[1]),
        format!("echo: {}", text.trim())
    );
    // Only the first part quotes the question.
    assert!(sent[0].body.get("reply_parameters").is_some());
    assert!(sent[1].body.get("reply_parameters").is_none());
}

#[tokio::test]
async fn a_retried_delivery_sends_only_the_parts_not_yet_sent() {
    let h = Harness::start().await;
    let path = h.whatsapp().await;
    // Two parts; the second fails once with a 503.
    let unavailable = Failure {
        status: 503,
        body: json!({ "error": { "message": "Service temporarily unavailable", "code": 2 } }),
        retry_after: None,
    };
    h.providers.script("whatsapp", [None, Some(unavailable)]);
    let text = "Another sentence for a long reply. ".repeat(150);
    let body = whatsapp_message("wamid.long", "16505550000", &text);
    let reply = h.post_raw(&path, &whatsapp_headers(&body), body).await;
    assert_eq!(reply.status, StatusCode::OK);
    h.providers.wait_for("whatsapp", 3).await;
    let jobs = h.settled(JobKind::Deliver).await;
    assert_eq!(jobs[0].state, JobState::Succeeded);
    assert_eq!(jobs[0].attempts, 2);
    let bodies: Vec<String> = h
        .providers
        .sent("whatsapp")
        .iter()
        .map(|s| s.body["text"]["body"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(bodies.len(), 3, "part 1, part 2 refused, part 2 again");
    assert_ne!(bodies[0], bodies[1]);
    assert_eq!(bodies[1], bodies[2], "only the failed part was sent again");
}

#[tokio::test]
async fn a_rate_limited_send_waits_for_the_providers_hint_then_succeeds_once() {
    let h = Harness::start().await;
    let path = h.slack().await;
    h.providers.fail_next(
        "slack",
        [Failure {
            status: 429,
            body: json!({ "ok": false, "error": "ratelimited" }),
            retry_after: Some(1),
        }],
    );
    let body = slack_message("EvR", "C1", "5.5", None, "Busy?");
    h.post_raw(&path, &slack_headers(&body, &now_secs()), body)
        .await;
    let sent = h.providers.wait_for("slack", 2).await;
    let jobs = h.settled(JobKind::Deliver).await;
    assert_eq!(jobs[0].state, JobState::Succeeded);
    assert_eq!(jobs[0].attempts, 2);
    assert_eq!(
        h.providers.sent("slack").len(),
        2,
        "one refused, one delivered"
    );
    assert_eq!(sent[1].body["text"], "echo: Busy?");
}

#[tokio::test]
async fn a_permanently_failing_send_ends_in_the_dead_letter_list_and_the_channel_shows_it() {
    let h = Harness::start().await;
    let (channel, path) = h
        .channel(
            "slack",
            json!({ "bot_token": "xoxb-revoked", "signing_secret": SLACK_SECRET }),
        )
        .await;
    h.providers.fail_next(
        "slack",
        [Failure {
            status: 200,
            body: json!({ "ok": false, "error": "invalid_auth" }),
            retry_after: None,
        }],
    );
    let body = slack_message("EvD", "C1", "6.6", None, "Anyone?");
    h.post_raw(&path, &slack_headers(&body, &now_secs()), body)
        .await;
    let jobs = h.settled(JobKind::Deliver).await;
    assert_eq!(jobs[0].state, JobState::Dead);
    assert_eq!(jobs[0].attempts, 1, "a permanent error is not retried");
    assert!(
        jobs[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("invalid_auth")
    );

    let dead = h.app.get("/api/v1/jobs?state=dead", &h.owner.token).await;
    assert!(dead.text.contains(&jobs[0].id.to_string()), "{}", dead.text);

    let listed = h
        .app
        .get(
            &format!("/api/v1/chatbots/{}/channels", h.bot),
            &h.owner.token,
        )
        .await;
    let mine = listed.body["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == channel.as_str())
        .unwrap()
        .clone();
    assert_eq!(mine["health"]["status"], "failing", "{mine}");
    assert_eq!(mine["health"]["recent_errors"], 1);
    assert!(mine["health"]["last_inbound_at"].is_string());
    assert!(
        mine["health"]["last_error"]
            .as_str()
            .unwrap()
            .contains("invalid_auth")
    );
    assert!(
        !listed.text.contains("xoxb-revoked"),
        "secrets are never shown"
    );
    assert!(!listed.text.contains(SLACK_SECRET));
    let metrics = h
        .app
        .call(reqwest::Method::GET, "/metrics", None, None)
        .await
        .text;
    assert!(
        metrics.contains(r#"steward_channel_connection_status{channel="slack"} 0"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"steward_channels_failing{channel="slack"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn channels_are_listed_with_health_and_without_secrets_and_can_be_removed() {
    let h = Harness::start_with(|c| c.http.public_url = Some("https://steward.example.org".into()))
        .await;
    let (id, url) = h
        .channel(
            "telegram",
            json!({ "bot_token": "999:SECRET-BOT", "secret_token": "tg_secret" }),
        )
        .await;
    assert_eq!(
        url,
        format!("https://steward.example.org/webhooks/telegram/{id}")
    );
    let path = url
        .trim_start_matches("https://steward.example.org")
        .to_owned();
    let body = telegram_message(1, 5, 1, "hi");
    h.post_raw(
        &path,
        &[("x-telegram-bot-api-secret-token", "tg_secret".into())],
        body,
    )
    .await;
    h.providers.wait_for("telegram", 1).await;
    h.settled(JobKind::Deliver).await;

    let listed = h
        .app
        .get(
            &format!("/api/v1/chatbots/{}/channels", h.bot),
            &h.owner.token,
        )
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    let channel = &listed.body["channels"][0];
    assert_eq!(channel["health"]["status"], "ok");
    assert!(channel["health"]["last_outbound_at"].is_string());
    assert_eq!(channel["settings"], json!({}));
    assert_eq!(channel["secrets"], json!(["bot_token", "secret_token"]));
    assert!(!listed.text.contains("SECRET-BOT") && !listed.text.contains("tg_secret"));
    // The organization's list holds it too, the same; a member may not read it.
    let everywhere = h.app.get("/api/v1/channels", &h.owner.token).await;
    assert_eq!(everywhere.status, StatusCode::OK);
    assert_eq!(everywhere.body["channels"], listed.body["channels"]);
    let member = h.app.member(&h.owner, "m@example.org", "member").await;
    let refused = h.app.get("/api/v1/channels", &member.token).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    // The stored secrets are sealed, not plain.
    let stored = h
        .app
        .store
        .channel(&h.scope(), id.parse().unwrap())
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&stored.sealed_secrets).contains("SECRET-BOT"));

    let metrics = h
        .app
        .call(reqwest::Method::GET, "/metrics", None, None)
        .await
        .text;
    assert!(
        metrics
            .contains(r#"steward_channel_messages_total{channel="telegram",direction="inbound"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"steward_channel_connection_status{channel="telegram"} 1"#),
        "{metrics}"
    );
    assert!(!metrics.contains(&id), "no channel id in metrics");

    let removed = h
        .app
        .delete(
            &format!("/api/v1/chatbots/{}/channels/{id}", h.bot),
            &h.owner.token,
        )
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    let body = telegram_message(2, 5, 2, "still there?");
    let reply = h
        .post_raw(
            &path,
            &[("x-telegram-bot-api-secret-token", "tg_secret".into())],
            body,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    // The conversation stays in the history.
    assert_eq!(h.user_messages().await.len(), 1);
}

#[tokio::test]
async fn bad_channel_configurations_are_refused_and_members_cannot_manage_channels() {
    let h = Harness::start().await;
    let path = format!("/api/v1/chatbots/{}/channels", h.bot);
    for (body, code) in [
        (
            json!({ "kind": "fax", "name": "x", "config": {} }),
            "invalid_body",
        ),
        (
            json!({ "kind": "slack", "name": "x", "config": { "bot_token": "x" } }),
            "validation_failed",
        ),
        (
            json!({ "kind": "slack", "name": "", "config": { "bot_token": "x", "signing_secret": "y" } }),
            "validation_failed",
        ),
        (
            json!({ "kind": "email", "name": "x", "config": { "imap_host": "imap.example.org", "smtp_host": "smtp.example.org", "username": "u", "password": "p", "address": "help@example.org", "tls": false } }),
            "validation_failed",
        ),
    ] {
        let reply = h.app.post(&path, &h.owner.token, body.clone()).await;
        assert!(reply.status.is_client_error(), "{body}: {}", reply.text);
        assert_eq!(reply.code(), code, "{body}: {}", reply.text);
    }
    let generic = json!({ "kind": "generic", "name": "desk", "config": { "signing_secret": "s", "reply_url": "https://example.org/r" } });
    assert_eq!(
        h.app
            .post(&path, &h.owner.token, generic.clone())
            .await
            .status,
        StatusCode::CREATED
    );
    let again = h.app.post(&path, &h.owner.token, generic).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.code(), "channel_name_taken");

    let member = h.app.member(&h.owner, "m@example.org", "member").await;
    assert_eq!(
        h.app.get(&path, &member.token).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn a_channel_is_checked_with_its_provider_when_saved_unless_told_not_to() {
    let h = Harness::start().await;
    let path = format!("/api/v1/chatbots/{}/channels", h.bot);
    let cases = [
        (
            "slack",
            json!({ "bot_token": "xoxb-refused-1", "signing_secret": SLACK_SECRET }),
            "Slack refused the bot token: invalid_auth",
        ),
        (
            "telegram",
            json!({ "bot_token": "123:refused", "secret_token": TELEGRAM_SECRET }),
            "Telegram refused it: HTTP 401: Unauthorized",
        ),
        (
            "whatsapp",
            json!({ "phone_number_id": PHONE_NUMBER_ID, "access_token": "EAAG-refused",
                    "app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN }),
            "WhatsApp refused it: HTTP 401: Invalid OAuth access token",
        ),
    ];
    for (kind, config, said) in cases {
        let body = json!({ "kind": kind, "name": kind, "config": config });
        let refused = h.app.post(&path, &h.owner.token, body.clone()).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{kind}: {}",
            refused.text
        );
        assert_eq!(refused.code(), "channel_check_failed");
        assert!(refused.text.contains(said), "{kind}: {}", refused.text);
        for secret in ["xoxb-refused-1", "123:refused", "EAAG-refused"] {
            assert!(
                !refused.text.contains(secret),
                "{kind}: the secret is not shown"
            );
        }
        assert_eq!(h.providers.checks(kind), 1, "{kind}");
        // Not stored; saved without the check, it is.
        let listed = h.app.get(&path, &h.owner.token).await;
        assert!(!listed.text.contains(&format!("\"name\":\"{kind}\"")));
        let saved = h
            .app
            .post(&format!("{path}?check=false"), &h.owner.token, body)
            .await;
        assert_eq!(saved.status, StatusCode::CREATED, "{kind}: {}", saved.text);
        assert_eq!(h.providers.checks(kind), 1, "{kind}: not asked again");
    }
    // Good tokens pass, each asked once; nothing was sent.
    h.slack().await;
    h.telegram().await;
    h.whatsapp().await;
    for kind in ["slack", "telegram", "whatsapp"] {
        assert_eq!(h.providers.checks(kind), 2, "{kind}");
        assert!(h.providers.sent(kind).is_empty(), "{kind}");
    }
    // Another organization's chatbot is not found before any provider is asked.
    let other = h.app.register("other@example.org", "Other Co").await;
    let foreign = h
        .app
        .post(
            &path,
            &other.token,
            json!({ "kind": "slack", "name": "theirs", "config": { "bot_token": "xoxb-1", "signing_secret": "s" } }),
        )
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    assert_eq!(h.providers.checks("slack"), 2);
    let bad = h
        .app
        .post(&format!("{path}?check=maybe"), &h.owner.token, json!({}))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_operator_may_turn_the_provider_checks_off() {
    let h = Harness::start_with(|c| c.channels.check_on_save = false).await;
    let path = format!("/api/v1/chatbots/{}/channels", h.bot);
    let body = json!({ "kind": "slack", "name": "s", "config": {
        "bot_token": "xoxb-refused-1", "signing_secret": SLACK_SECRET } });
    let saved = h.app.post(&path, &h.owner.token, body).await;
    assert_eq!(saved.status, StatusCode::CREATED, "{}", saved.text);
    assert_eq!(h.providers.checks("slack"), 0);
}

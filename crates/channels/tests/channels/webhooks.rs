//! Inbound: authentication, deduplication and hostile input, per provider.

use reqwest::StatusCode;
use serde_json::json;
use steward_domain::JobKind;

use crate::*;

#[tokio::test]
async fn unsigned_wrong_and_stale_webhooks_are_refused_and_store_nothing() {
    let h = Harness::start().await;
    let whatsapp = h.whatsapp().await;
    let slack = h.slack().await;
    let telegram = h.telegram().await;
    let generic = h.generic().await;

    let wa = whatsapp_message("wamid.1", "16505551234", "hello");
    let sl = slack_message("Ev1", "C1", "1.1", None, "hello");
    let tg = telegram_message(1, 42, 7, "hello");
    let ge = generic_message("m1", "u1", "hello");
    let old = (Utc::now().timestamp() - 6 * 60).to_string();
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, String)>, &'a [u8]);
    let cases: Vec<Case> = vec![
        ("whatsapp: none", &whatsapp, vec![], &wa),
        (
            "whatsapp: another secret",
            &whatsapp,
            vec![("x-hub-signature-256", whatsapp::signature("nope", &wa))],
            &wa,
        ),
        (
            "whatsapp: another body",
            &whatsapp,
            whatsapp_headers(b"{}"),
            &wa,
        ),
        ("slack: none", &slack, vec![], &sl),
        ("slack: stale", &slack, slack_headers(&sl, &old), &sl),
        (
            "slack: signature without timestamp",
            &slack,
            vec![slack_headers(&sl, &now_secs())[1].clone()],
            &sl,
        ),
        ("telegram: none", &telegram, vec![], &tg),
        (
            "telegram: wrong token",
            &telegram,
            vec![("x-telegram-bot-api-secret-token", "guess".into())],
            &tg,
        ),
        ("generic: stale", &generic, generic_headers(&ge, &old), &ge),
        (
            "generic: future",
            &generic,
            generic_headers(&ge, &(Utc::now().timestamp() + 6 * 60).to_string()),
            &ge,
        ),
        (
            "generic: another channel's secret",
            &generic,
            vec![
                ("x-steward-timestamp", now_secs()),
                (
                    "x-steward-signature",
                    generic::signature("other", &now_secs(), &ge),
                ),
            ],
            &ge,
        ),
    ];
    for (what, path, headers, body) in cases {
        let reply = h.post_raw(path, &headers, body.to_vec()).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{what}: {}",
            reply.text
        );
        assert_eq!(reply.code(), "unauthorized", "{what}");
    }
    // A signature for one channel does not open another of the same kind.
    let (_, other_generic) = h
        .channel("generic", json!({ "signing_secret": "second-secret", "reply_url": h.providers.generic_reply_url() }))
        .await;
    let ts = now_secs();
    let reply = h
        .post_raw(&other_generic, &generic_headers(&ge, &ts), ge.clone())
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    assert!(h.messages().await.is_empty());
    assert!(h.jobs(JobKind::Respond).await.is_empty());
}

#[tokio::test]
async fn unknown_channels_and_kinds_are_not_found() {
    let h = Harness::start().await;
    let generic = h.generic().await;
    let body = generic_message("m1", "u1", "hi");
    let headers = generic_headers(&body, &now_secs());
    let id = generic.rsplit('/').next().unwrap();
    for path in [
        format!("/webhooks/slack/{id}"),
        format!("/webhooks/email/{id}"),
        format!("/webhooks/fax/{id}"),
        "/webhooks/generic/not-a-uuid".to_owned(),
        format!("/webhooks/generic/{}", uuid::Uuid::now_v7()),
    ] {
        let reply = h.post_raw(&path, &headers, body.clone()).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn a_webhook_sent_fifty_times_at_once_stores_one_message_one_job_one_reply() {
    let h = Harness::start().await;
    let path = h.whatsapp().await;
    let body = whatsapp_message(
        "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
        "16505551234",
        "Is it open today?",
    );
    let headers = whatsapp_headers(&body);
    let copies = (0..50).map(|_| h.post_raw(&path, &headers, body.clone()));
    for reply in futures::future::join_all(copies).await {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }
    // And once more later, as a provider's retry would.
    let again = h.post_raw(&path, &headers, body.clone()).await;
    assert_eq!(again.body["duplicates"], 1);

    h.providers.wait_for("whatsapp", 1).await;
    h.settled(JobKind::Deliver).await;
    assert_eq!(h.user_messages().await.len(), 1);
    assert_eq!(h.jobs(JobKind::Respond).await.len(), 1);
    assert_eq!(h.jobs(JobKind::Deliver).await.len(), 1);
    assert_eq!(h.providers.sent("whatsapp").len(), 1);
    assert_eq!(h.model.calls(), 1);
}

/// Replaces a channel's secrets in the store, as another process would
/// (nothing tells this one): `app_secret` becomes `secret`.
async fn replace_app_secret(h: &Harness, channel: steward_domain::ChannelId, secret: &str) {
    let stored = h.app.store.find_channel(channel).await.unwrap().unwrap();
    let sealer = &h.app.state.sealer;
    let aad = channel.to_string();
    let opened = sealer.open(&stored.sealed_secrets, aad.as_bytes()).unwrap();
    let mut secrets: serde_json::Value = serde_json::from_slice(&opened).unwrap();
    secrets["app_secret"] = json!(secret);
    let sealed = sealer.seal(secrets.to_string().as_bytes(), aad.as_bytes());
    assert!(
        h.app
            .store
            .replace_channel_secrets(channel, &stored.sealed_secrets, &sealed)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_channel_kept_between_webhooks_lets_nothing_in_once_its_secret_changed_or_it_was_deleted()
{
    let h = Harness::start().await;
    let path = h.whatsapp().await;
    let channel = path.rsplit('/').next().unwrap().parse().unwrap();
    let signed = |secret: &str, id: &str| {
        let body = whatsapp_message(id, "16505551234", "hello");
        let headers = vec![("x-hub-signature-256", whatsapp::signature(secret, &body))];
        (headers, body)
    };
    // The first webhook reads the channel; the process keeps it.
    let (headers, body) = signed(APP_SECRET, "wamid.1");
    assert_eq!(
        h.post_raw(&path, &headers, body).await.status,
        StatusCode::OK
    );

    replace_app_secret(&h, channel, "rotated-app-secret").await;
    let (headers, body) = signed(APP_SECRET, "wamid.2");
    let old = h.post_raw(&path, &headers, body).await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED, "{}", old.text);
    let (headers, body) = signed("rotated-app-secret", "wamid.3");
    let new = h.post_raw(&path, &headers, body).await;
    assert_eq!(new.status, StatusCode::OK, "{}", new.text);

    // Deleted by another process: the kept channel lets nothing in either.
    let stored = h.app.store.find_channel(channel).await.unwrap().unwrap();
    h.app
        .store
        .delete_channel(&h.scope(), stored.chatbot_id, channel)
        .await
        .unwrap();
    let (headers, body) = signed("rotated-app-secret", "wamid.4");
    let gone = h.post_raw(&path, &headers, body).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND, "{}", gone.text);

    let mut stored: Vec<_> = h
        .user_messages()
        .await
        .into_iter()
        .filter_map(|m| m.external_id)
        .collect();
    stored.sort();
    assert_eq!(stored, ["wamid.1", "wamid.3"]);
}

#[tokio::test]
async fn a_person_erased_who_writes_again_starts_a_new_conversation() {
    let h = Harness::start().await;
    let path = h.whatsapp().await;
    let send = async |id: &str| {
        let body = whatsapp_message(id, "16505551234", "hello");
        h.post_raw(&path, &whatsapp_headers(&body), body).await
    };
    assert_eq!(send("wamid.1").await.status, StatusCode::OK);
    let first = h.user_messages().await.remove(0);
    // This process keeps the conversation the sender writes in; erasure
    // deletes it.
    h.app
        .store
        .erase_person(&h.scope(), first.person_id.unwrap())
        .await
        .unwrap();

    let again = send("wamid.2").await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.body["stored"], 1);
    let now = h.user_messages().await;
    assert_eq!(now.len(), 1, "only the message after the erasure");
    assert_ne!(now[0].conversation_id, first.conversation_id);
}

#[tokio::test]
async fn slack_retries_are_deduplicated_by_event_id_not_dropped() {
    let h = Harness::start().await;
    let path = h.slack().await;
    let body = slack_message(
        "Ev0PV52K25",
        "C123ABC456",
        "1355517523.000005",
        None,
        "Where is my order?",
    );
    let first = h
        .post_raw(&path, &slack_headers(&body, &now_secs()), body.clone())
        .await;
    assert_eq!(first.body["stored"], 1, "{}", first.text);
    // Slack's retry of the same event, marked as such.
    let mut retry = slack_headers(&body, &now_secs());
    retry.push(("x-slack-retry-num", "1".into()));
    retry.push(("x-slack-retry-reason", "http_timeout".into()));
    let second = h.post_raw(&path, &retry, body.clone()).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.body["duplicates"], 1);
    // A retry of an event never seen (the first delivery was lost) is stored.
    let lost = slack_message("Ev0LOST", "C123ABC456", "1355517599.000001", None, "Hello?");
    let mut retry = slack_headers(&lost, &now_secs());
    retry.push(("x-slack-retry-num", "2".into()));
    let third = h.post_raw(&path, &retry, lost).await;
    assert_eq!(third.body["stored"], 1);
    assert_eq!(h.user_messages().await.len(), 2);
}

#[tokio::test]
async fn slack_url_verification_and_non_message_events_are_acknowledged() {
    let h = Harness::start().await;
    let path = h.slack().await;
    let challenge = br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let reply = h
        .post_raw(
            &path,
            &slack_headers(challenge, &now_secs()),
            challenge.to_vec(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.body["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );

    let reaction = |emoji: &str| {
        json!({
            "type": "event_callback", "event_id": "Ev2", "token": "t", "team_id": "T1",
            "event": { "type": "reaction_added", "user": "U1", "reaction": emoji, "item": { "type": "message", "channel": "C1", "ts": "1.1" } },
        }).to_string().into_bytes()
    };
    // A thumbs-up on a message that is no reply of Steward's rates nothing.
    let thumbs = reaction("thumbsup");
    let reply = h
        .post_raw(&path, &slack_headers(&thumbs, &now_secs()), thumbs.clone())
        .await;
    assert_eq!(
        (
            reply.body["stored"].as_i64(),
            reply.body["feedback"].as_i64()
        ),
        (Some(0), Some(0))
    );
    let reaction = reaction("heart");
    let edit = json!({
        "type": "event_callback", "event_id": "Ev3",
        "event": { "type": "message", "subtype": "message_changed", "channel": "C1", "ts": "1.2", "message": { "text": "edited" } },
    }).to_string().into_bytes();
    let own = slack_message("Ev4", "C1", "1.3", None, "my own reply")
        .into_iter()
        .collect::<Vec<u8>>();
    let own = String::from_utf8(own)
        .unwrap()
        .replace("U2147483697", "UBOTUSER")
        .into_bytes();
    for body in [reaction, edit, own] {
        let reply = h
            .post_raw(&path, &slack_headers(&body, &now_secs()), body.clone())
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert!(reply.body["ignored"].is_string(), "{}", reply.text);
    }
    assert!(h.messages().await.is_empty());
}

#[tokio::test]
async fn whatsapp_subscription_is_verified_only_with_the_right_token() {
    let h = Harness::start().await;
    let path = h.whatsapp().await;
    let reply = h
        .app
        .call(
            reqwest::Method::GET,
            &format!(
                "{path}?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444"
            ),
            None,
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text, "1158201444");
    for query in [
        "hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=8675309",
        "hub.mode=unsubscribe&hub.verify_token=wa-verify-token&hub.challenge=8675309",
        "hub.challenge=8675309",
    ] {
        let reply = h
            .app
            .call(reqwest::Method::GET, &format!("{path}?{query}"), None, None)
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{query}");
        assert_eq!(reply.code(), "verification_failed", "{query}");
        assert!(
            !reply.text.contains("8675309"),
            "{query}: the challenge was echoed"
        );
    }
}

#[tokio::test]
async fn status_callbacks_and_other_updates_are_acknowledged_and_ignored() {
    let h = Harness::start().await;
    let whatsapp = h.whatsapp().await;
    let telegram = h.telegram().await;
    let status = json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "1", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "1", "phone_number_id": PHONE_NUMBER_ID },
            "statuses": [{ "id": "wamid.x", "status": "read", "timestamp": "1", "recipient_id": "1" }],
        }}]}],
    }).to_string().into_bytes();
    let reply = h
        .post_raw(&whatsapp, &whatsapp_headers(&status), status.clone())
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body["ignored"].is_string());

    let edited = json!({ "update_id": 5, "edited_message": { "message_id": 1, "date": 1, "chat": { "id": 1, "type": "private" }, "from": { "id": 1, "is_bot": false, "first_name": "A" }, "text": "changed" } }).to_string().into_bytes();
    let joined =
        json!({ "update_id": 6, "my_chat_member": { "chat": { "id": 1, "type": "group" } } })
            .to_string()
            .into_bytes();
    for body in [edited, joined] {
        let reply = h.post_raw(&telegram, &telegram_headers(), body).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.body["ignored"].is_string(), "{}", reply.text);
    }
    assert!(h.messages().await.is_empty());
}

#[tokio::test]
async fn emoji_rtl_and_escaped_unicode_survive_the_signature_and_the_store() {
    let h = Harness::start().await;
    let path = h.generic().await;
    // The signature is over the raw bytes: escapes stay escaped on the wire.
    let body = br#"{"id":"m-uni","user":"u1","text":"\u05e9\u05dc\u05d5\u05dd \ud83d\udc4b \u0645\u0631\u062d\u0628\u0627 \"quoted\" \\ back"}"#.to_vec();
    let reply = h
        .post_raw(&path, &generic_headers(&body, &now_secs()), body)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let raw = "{\"id\":\"m-raw\",\"user\":\"u1\",\"text\":\"مرحبا 👋🏽 שלום\"}"
        .as_bytes()
        .to_vec();
    let reply = h
        .post_raw(&path, &generic_headers(&raw, &now_secs()), raw)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let texts: Vec<String> = h
        .user_messages()
        .await
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(
        texts,
        vec!["שלום 👋 مرحبا \"quoted\" \\ back", "مرحبا 👋🏽 שלום"]
    );
}

#[tokio::test]
async fn malformed_invalid_utf8_and_oversized_bodies_are_refused_cleanly() {
    let h = Harness::start_with(|c| c.channels.webhook_body_limit_bytes = 4096).await;
    let path = h.generic().await;
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "invalid UTF-8",
            b"{\"id\":\"m1\",\"user\":\"u\",\"text\":\"\xff\xfe\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_payload",
        ),
        (
            "not JSON",
            b"id=m1&text=hi".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_payload",
        ),
        (
            "truncated",
            b"{\"id\":\"m1\",\"user\":".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_payload",
        ),
        (
            "no text",
            br#"{"id":"m1","user":"u"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_payload",
        ),
        (
            "wrong types",
            br#"{"id":1,"user":"u","text":"x"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_payload",
        ),
        (
            "deep nesting",
            format!("{}{}", "[".repeat(2000), "]".repeat(2000)).into_bytes(),
            StatusCode::BAD_REQUEST,
            "malformed_payload",
        ),
        (
            "oversized",
            generic_message("m2", "u", &"x".repeat(8000)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for (what, body, status, code) in cases {
        let reply = h
            .post_raw(&path, &generic_headers(&body, &now_secs()), body)
            .await;
        assert_eq!(reply.status, status, "{what}: {}", reply.text);
        assert_eq!(reply.code(), code, "{what}");
    }
    assert!(h.messages().await.is_empty());
    // The server is fine afterwards.
    let body = generic_message("m3", "u", "still here?");
    let reply = h
        .post_raw(&path, &generic_headers(&body, &now_secs()), body)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn each_channel_is_rate_limited_on_its_own() {
    let h = Harness::start_with(|c| {
        c.channels.webhook_requests_per_second = 1;
        c.channels.webhook_burst = 3;
    })
    .await;
    let first = h.generic().await;
    let second = h.generic().await;
    let mut statuses = Vec::new();
    for i in 0..5 {
        let body = generic_message(&format!("r{i}"), "u", "hi");
        statuses.push(
            h.post_raw(&first, &generic_headers(&body, &now_secs()), body)
                .await,
        );
    }
    assert!(statuses[..3].iter().all(|r| r.status == StatusCode::OK));
    let limited = &statuses[4];
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        limited.text
    );
    assert!(limited.headers.contains_key("retry-after"));
    let body = generic_message("other", "u", "hi");
    let reply = h
        .post_raw(&second, &generic_headers(&body, &now_secs()), body)
        .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "another channel has its own budget"
    );
}

//! Whoever writes on a channel is a person of the organization, known by
//! the provider's handle, seen through `GET /api/v1/people`.

use super::*;

/// People as the API lists them, by their first handle.
async fn people_by_handle(h: &Harness) -> HashMap<String, Value> {
    let listed = h.app.get("/api/v1/people", &h.owner.token).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    listed.body["people"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let first = &p["identities"][0];
            (
                format!(
                    "{}:{}",
                    first["kind"].as_str().unwrap(),
                    first["handle"].as_str().unwrap()
                ),
                p.clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn each_channels_writer_is_one_person_however_often_they_write() {
    let h = Harness::start().await;
    let whatsapp = h.whatsapp().await;
    let slack = h.slack().await;
    let telegram = h.telegram().await;
    let generic = h.generic().await;
    let generic_id = generic.rsplit('/').next().unwrap().to_owned();

    for (id, text) in [("wamid.1", "hello"), ("wamid.2", "again")] {
        let body = whatsapp_message(id, "16505551234", text);
        let reply = h.post_raw(&whatsapp, &whatsapp_headers(&body), body).await;
        assert_eq!(reply.body["stored"], 1, "{}", reply.text);
    }
    // A thread of its own, and a retry: still the one Slack member.
    for (event, ts) in [("Ev1", "1.1"), ("Ev2", "2.2"), ("Ev2", "2.2")] {
        let body = slack_message(event, "C1", ts, None, "hi");
        h.post_raw(&slack, &slack_headers(&body, &now_secs()), body)
            .await;
    }
    // Forwarded to the assistant, as WhatsApp marks it.
    let mut forwarded: Value =
        serde_json::from_slice(&whatsapp_message("wamid.3", "16505551234", "see this")).unwrap();
    forwarded["entry"][0]["changes"][0]["value"]["messages"][0]["context"] =
        json!({"forwarded": true});
    let body = forwarded.to_string().into_bytes();
    h.post_raw(&whatsapp, &whatsapp_headers(&body), body).await;
    let mut telegram_forward: Value =
        serde_json::from_slice(&telegram_message(1, 42, 7, "hello")).unwrap();
    telegram_forward["message"]["forward_origin"] =
        json!({"type": "hidden_user", "date": 1, "sender_user_name": "A"});
    let body = telegram_forward.to_string().into_bytes();
    h.post_raw(&telegram, &telegram_headers(), body).await;
    let body = generic_message("m1", "user-7", "hello");
    h.post_raw(&generic, &generic_headers(&body, &now_secs()), body)
        .await;
    assert_eq!(h.user_messages().await.len(), 7);
    let insights = h
        .app
        .get("/api/v1/insights/usage?days=1", &h.owner.token)
        .await;
    let today = &insights.body["days"][0];
    assert_eq!(
        (today["messages"].as_i64(), today["forwarded"].as_i64()),
        (Some(7), Some(2)),
        "{}",
        insights.text
    );
    assert_eq!(today["people"], 4);

    let people = people_by_handle(&h).await;
    let mut handles: Vec<&String> = people.keys().collect();
    handles.sort();
    assert_eq!(
        handles,
        [
            &"email:owner@example.org".to_owned(),
            &format!("generic:{generic_id}:user-7"),
            &"slack:U2147483697".to_owned(),
            &"telegram:42".to_owned(),
            &"whatsapp:16505551234".to_owned(),
        ]
    );
    let phone = &people["whatsapp:16505551234"];
    assert_eq!(phone["name"], "Sheena Nelson");
    assert_eq!(people["telegram:42"]["name"], "Test");
    assert!(phone["last_seen_at"].is_string());
    let page = h
        .app
        .get(
            &format!("/api/v1/people/{}", phone["id"].as_str().unwrap()),
            &h.owner.token,
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let conversations = page.body["conversations"].as_array().unwrap();
    assert_eq!(
        conversations.len(),
        1,
        "one WhatsApp number, one conversation"
    );
    assert!(conversations[0]["messages"].as_i64().unwrap() >= 3);
    assert_eq!(conversations[0]["person_id"], phone["id"]);
    let slack_person = &people["slack:U2147483697"];
    let page = h
        .app
        .get(
            &format!("/api/v1/people/{}", slack_person["id"].as_str().unwrap()),
            &h.owner.token,
        )
        .await;
    assert_eq!(
        page.body["conversations"].as_array().unwrap().len(),
        2,
        "two threads"
    );

    // The owner knows the Slack member and the number are one person.
    let merged = h
        .app
        .post(
            &format!("/api/v1/people/{}/merge", phone["id"].as_str().unwrap()),
            &h.owner.token,
            json!({"person_id": slack_person["id"]}),
        )
        .await;
    assert_eq!(merged.status, StatusCode::OK, "{}", merged.text);
    assert_eq!(merged.body["identities"].as_array().unwrap().len(), 2);
    let body = slack_message("Ev3", "C1", "3.3", None, "me again");
    h.post_raw(&slack, &slack_headers(&body, &now_secs()), body)
        .await;
    let page = h
        .app
        .get(
            &format!("/api/v1/people/{}", phone["id"].as_str().unwrap()),
            &h.owner.token,
        )
        .await;
    assert_eq!(
        page.body["conversations"].as_array().unwrap().len(),
        4,
        "{}",
        page.text
    );
    assert_eq!(people_by_handle(&h).await.len(), 4);
}

/// Slack's documented `reaction_added` / `reaction_removed` event.
fn slack_reaction(event_id: &str, kind: &str, reaction: &str, ts: &str) -> Vec<u8> {
    json!({
        "token": "XXYYZZ", "team_id": "T123ABC456", "api_app_id": "A123ABC456",
        "type": "event_callback", "event_id": event_id, "event_time": 1355517523,
        "event": {
            "type": kind, "user": "U2147483697", "reaction": reaction, "item_user": "UBOTUSER",
            "item": { "type": "message", "channel": "C1", "ts": ts }, "event_ts": "1360782804.083113",
        },
    })
    .to_string()
    .into_bytes()
}

/// Meta's documented reaction message.
fn whatsapp_reaction(id: &str, on: &str, emoji: &str) -> Vec<u8> {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "102290129340398", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID },
            "contacts": [{ "profile": { "name": "Sheena Nelson" }, "wa_id": "16505551234" }],
            "messages": [{ "from": "16505551234", "id": id, "timestamp": "1749416383", "type": "reaction",
                           "reaction": { "message_id": on, "emoji": emoji } }],
        }}]}],
    })
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn thumbs_on_a_delivered_reply_are_its_writers_feedback_once() {
    let h = Harness::start().await;
    let slack = h.slack().await;
    let whatsapp = h.whatsapp().await;
    let body = slack_message("Ev1", "C1", "1.1", None, "Where is my order?");
    h.post_raw(&slack, &slack_headers(&body, &now_secs()), body)
        .await;
    let body = whatsapp_message("wamid.1", "16505551234", "Is it open?");
    h.post_raw(&whatsapp, &whatsapp_headers(&body), body).await;
    h.providers.wait_for("slack", 1).await;
    h.providers.wait_for("whatsapp", 1).await;
    h.settled(JobKind::Deliver).await;
    let replies: Vec<Message> = h
        .messages()
        .await
        .into_iter()
        .filter(|m| m.role == MessageRole::Assistant)
        .collect();
    let reply_on = |channel: &str| replies.iter().find(|m| m.channel == channel).unwrap().id;
    let feedback = |reply| {
        let app = &h.app;
        let token = h.owner.token.clone();
        async move {
            let read = app
                .get(&format!("/api/v1/messages/{reply}/feedback"), &token)
                .await;
            assert_eq!(read.status, StatusCode::OK, "{}", read.text);
            read.body["feedback"].as_array().unwrap().clone()
        }
    };
    // The fake Slack names its first post 1700000000.000001.
    let ts = "1700000000.000001";
    let thumbs_up = slack_reaction("EvR1", "reaction_added", "+1", ts);
    for _ in 0..2 {
        // Sent twice, as Slack retries: one rating.
        let reply = h
            .post_raw(
                &slack,
                &slack_headers(&thumbs_up, &now_secs()),
                thumbs_up.clone(),
            )
            .await;
        assert_eq!(reply.body["feedback"], 1, "{}", reply.text);
    }
    let found = feedback(reply_on("slack")).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["rating"], "up");
    let people = people_by_handle(&h).await;
    assert_eq!(found[0]["person_id"], people["slack:U2147483697"]["id"]);
    // A reaction on a message that is no reply of Steward's is no feedback.
    let elsewhere = slack_reaction("EvR2", "reaction_added", "+1", "1.1");
    let reply = h
        .post_raw(&slack, &slack_headers(&elsewhere, &now_secs()), elsewhere)
        .await;
    assert_eq!(reply.body["feedback"], 0);
    let removed = slack_reaction("EvR3", "reaction_removed", "+1", ts);
    h.post_raw(&slack, &slack_headers(&removed, &now_secs()), removed)
        .await;
    assert!(feedback(reply_on("slack")).await.is_empty());

    let down = whatsapp_reaction("wamid.r1", "wamid.fake1", "\u{1F44E}\u{1F3FD}");
    let reply = h.post_raw(&whatsapp, &whatsapp_headers(&down), down).await;
    assert_eq!(reply.body["feedback"], 1, "{}", reply.text);
    let found = feedback(reply_on("whatsapp")).await;
    assert_eq!(found[0]["rating"], "down");
    assert_eq!(found[0]["person_id"], people["whatsapp:16505551234"]["id"]);
    let taken_back = whatsapp_reaction("wamid.r2", "wamid.fake1", "");
    h.post_raw(&whatsapp, &whatsapp_headers(&taken_back), taken_back)
        .await;
    assert!(feedback(reply_on("whatsapp")).await.is_empty());
}

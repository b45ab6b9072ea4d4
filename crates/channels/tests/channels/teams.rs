//! Microsoft Teams against a local Bot Framework: an issuer that signs
//! tokens with its own keys (and can rotate them), a tenant's token
//! endpoint, and a connector speaking `/v3/conversations`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use steward_domain::MessageRole;

use crate::Harness;

const APP_ID: &str = "0b6c2c36-3a3e-4a65-9d9b-6f1c1b8f1d2e";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

async fn teams(harness: &Harness) -> String {
    let config = json!({ "app_id": APP_ID, "app_password": "app-secret~1", "tenant_id": TENANT });
    harness.channel("teams", config).await.1
}

/// A person's message in a personal chat with the bot, as Teams posts it.
fn activity(harness: &Harness, id: &str, text: &str) -> Value {
    json!({
        "type": "message", "id": id, "channelId": "msteams",
        "timestamp": "2026-12-05T10:00:00.000Z",
        "serviceUrl": harness.providers.teams_service_url(),
        "from": { "id": "29:1ana", "name": "Ana Lima", "aadObjectId": "8f1e-ana" },
        "recipient": { "id": format!("28:{APP_ID}"), "name": "Steward" },
        "conversation": { "id": "a:1personal-ana", "conversationType": "personal", "tenantId": TENANT },
        "channelData": { "tenant": { "id": TENANT } },
        "text": text, "textFormat": "plain", "locale": "en-GB"
    })
}

async fn post(harness: &Harness, path: &str, token: Option<String>, body: &Value) -> crate::Reply {
    let headers: Vec<(&str, String)> = token
        .map(|t| ("authorization", format!("Bearer {t}")))
        .into_iter()
        .collect();
    harness
        .post_raw(path, &headers, body.to_string().into_bytes())
        .await
}

#[tokio::test]
async fn a_teams_message_with_a_valid_token_is_answered_in_its_conversation_once() {
    let harness = Harness::start().await;
    let path = teams(&harness).await;
    assert_eq!(
        harness.providers.checks("teams"),
        1,
        "the app's credentials are checked when saved"
    );
    let fake = &harness.providers;
    let message = activity(&harness, "1733392800001", "What are the opening hours?");
    let token = fake.teams_token(&fake.teams_claims(APP_ID), 1);
    let stored = post(&harness, &path, Some(token), &message).await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.text);
    assert_eq!(stored.body["stored"], 1);

    let typing = fake.wait_for("teams-activity", 1).await;
    assert_eq!(
        typing[0].body,
        json!({ "type": "typing" }),
        "typing while the reply is written"
    );
    assert_eq!(
        typing[0].path,
        "/v3/conversations/a:1personal-ana/activities"
    );
    let sent = fake.wait_for("teams", 1).await;
    assert_eq!(
        sent[0].path,
        "/v3/conversations/a:1personal-ana/activities/1733392800001"
    );
    assert_eq!(sent[0].body["type"], "message");
    assert_eq!(sent[0].body["replyToId"], "1733392800001");
    assert!(!sent[0].body["text"].as_str().unwrap().is_empty());
    assert_eq!(
        sent[0].headers["authorization"],
        format!("Bearer teams-token-{TENANT}")
    );

    // Teams sends it again (its retry): stored once, answered once.
    let again = fake.teams_token(&fake.teams_claims(APP_ID), 1);
    let replayed = post(&harness, &path, Some(again), &message).await;
    assert_eq!(replayed.status, StatusCode::OK);
    assert_eq!(replayed.body["duplicates"], 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.sent("teams").len(), 1);
    let people: Vec<_> = harness
        .messages()
        .await
        .into_iter()
        .filter(|m| m.role == MessageRole::User)
        .collect();
    assert_eq!(people.len(), 1);
    assert_eq!(people[0].text, "What are the opening hours?");
}

#[tokio::test]
async fn tokens_not_signed_for_this_bot_and_this_activity_are_refused_and_store_nothing() {
    let harness = Harness::start().await;
    let path = teams(&harness).await;
    let fake = &harness.providers;
    let message = activity(&harness, "1733392800002", "hello");
    let valid = fake.teams_claims(APP_ID);
    let with = |field: &str, value: Value| {
        let mut claims = valid.clone();
        claims[field] = value;
        claims
    };
    let now = chrono::Utc::now().timestamp();
    let refused = [
        ("no token", None),
        ("not a JWT", Some("not-a-jwt".to_owned())),
        (
            "another bot's",
            Some(fake.teams_token(&with("aud", json!("another-app")), 1)),
        ),
        (
            "another issuer's",
            Some(fake.teams_token(&with("iss", json!("https://sts.example.org")), 1)),
        ),
        (
            "expired past the skew",
            Some(fake.teams_token(&with("exp", json!(now - 600)), 1)),
        ),
        (
            "not valid yet",
            Some(fake.teams_token(&with("nbf", json!(now + 600)), 1)),
        ),
        (
            "for another connector",
            Some(fake.teams_token(&with("serviceurl", json!("https://smba.example.org/")), 1)),
        ),
        (
            "signed by a key not published",
            Some(fake.teams_token(&valid, 2)),
        ),
        (
            "signed with a shared secret",
            Some(
                jsonwebtoken::encode(
                    &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                    &valid,
                    &jsonwebtoken::EncodingKey::from_secret(b"guess"),
                )
                .unwrap(),
            ),
        ),
    ];
    for (what, token) in refused {
        let answer = post(&harness, &path, token, &message).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{what}: {}",
            answer.text
        );
    }
    // The activity says another connector than the token does.
    let mut elsewhere = message.clone();
    elsewhere["serviceUrl"] = json!("http://127.0.0.1:9/teams/connector/");
    let token = fake.teams_token(&valid, 1);
    let answer = post(&harness, &path, Some(token), &elsewhere).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text);
    assert!(harness.messages().await.is_empty(), "nothing stored");

    // The issuer rotates its key: the new one is fetched when a token
    // names it (at most once a second), without a restart.
    fake.rotate_teams_keys();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let rotated = fake.teams_token(&valid, 2);
    let answer = post(&harness, &path, Some(rotated), &message).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.body["stored"], 1);
}

#[tokio::test]
async fn a_bot_added_to_a_conversation_greets_it_once_when_it_has_a_greeting() {
    let harness = Harness::start().await;
    let config = json!({ "app_id": APP_ID, "app_password": "app-secret~1", "tenant_id": TENANT,
                         "greeting": "Hello! Ask me about opening hours." });
    let path = harness.channel("teams", config).await.1;
    let fake = &harness.providers;
    let added = json!({
        "type": "conversationUpdate", "id": "f:added-1", "channelId": "msteams",
        "serviceUrl": fake.teams_service_url(),
        "from": { "id": "29:1ana", "aadObjectId": "8f1e-ana" },
        "recipient": { "id": format!("28:{APP_ID}"), "name": "Steward" },
        "conversation": { "id": "19:team-general@thread.tacv2", "conversationType": "channel", "tenantId": TENANT },
        "membersAdded": [{ "id": format!("28:{APP_ID}") }]
    });
    for _ in 0..2 {
        let token = fake.teams_token(&fake.teams_claims(APP_ID), 1);
        let answer = post(&harness, &path, Some(token), &added).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        assert_eq!(answer.body["greeting"], true);
    }
    let said = fake.wait_for("teams-activity", 1).await;
    assert_eq!(
        said[0].path,
        "/v3/conversations/19:team-general@thread.tacv2/activities"
    );
    assert_eq!(said[0].body["type"], "message");
    assert_eq!(said[0].body["text"], "Hello! Ask me about opening hours.");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        fake.sent("teams-activity").len(),
        1,
        "greeted once, sent twice"
    );

    // Someone else joining is not greeted.
    let mut joined = added.clone();
    joined["id"] = json!("f:added-2");
    joined["membersAdded"] = json!([{ "id": "29:1bruno" }]);
    let token = fake.teams_token(&fake.teams_claims(APP_ID), 1);
    let answer = post(&harness, &path, Some(token), &joined).await;
    assert!(answer.body["ignored"].is_string(), "{}", answer.text);
    assert!(harness.messages().await.is_empty());
}

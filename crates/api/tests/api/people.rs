//! People through the API: who reads them, who merges them, and what a
//! caller's own messages make of them.

use reqwest::StatusCode;
use serde_json::{Value, json};
use steward_testkit::app::spawn_app;

fn ids(list: &Value) -> Vec<String> {
    list["people"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn people_are_read_by_members_merged_by_admins_and_hidden_from_advisors() {
    let app = spawn_app().await;
    let owner = app.register("owner@example.org", "Acme").await;
    let other = app.register("other@example.org", "Globex").await;
    let member = app.member(&owner, "member@example.org", "member").await;
    let advisor = app.member(&owner, "advisor@example.org", "advisor").await;
    let admin = app.member(&owner, "admin@example.org", "admin").await;
    let bot = app.chatbot(&owner, "Help").await;

    // The owner's message, and one through a key the admin made, are
    // theirs: members are people from the start.
    let sent = app
        .post(
            &format!("/api/v1/chatbots/{bot}/messages"),
            &owner.token,
            json!({"text": "hi"}),
        )
        .await;
    assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.text);
    let key = app
        .post(
            "/api/v1/api-keys",
            &admin.token,
            json!({"name": "admin key"}),
        )
        .await;
    let key = key.body["key"].as_str().unwrap().to_owned();
    let by_key = app
        .post(
            &format!("/api/v1/chatbots/{bot}/messages"),
            &key,
            json!({"text": "from my script"}),
        )
        .await;
    assert_eq!(by_key.status, StatusCode::CREATED, "{}", by_key.text);

    let listed = app.get("/api/v1/people?limit=200", &member.token).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    assert_eq!(ids(&listed.body).len(), 4, "{}", listed.text);
    let person_of = |email: &str| {
        listed.body["people"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| {
                p["identities"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|i| i["handle"] == email)
            })
            .unwrap()
            .clone()
    };
    let owner_person = person_of("owner@example.org");
    let member_person = person_of("member@example.org");
    let admin_person = person_of("admin@example.org");
    assert!(owner_person["last_seen_at"].is_string());
    assert!(person_of("advisor@example.org")["last_seen_at"].is_null());
    let conversation = sent.body["conversation_id"].as_str().unwrap();
    let read = app
        .get(
            &format!("/api/v1/conversations/{conversation}/messages"),
            &owner.token,
        )
        .await;
    assert_eq!(read.body["conversation"]["person_id"], owner_person["id"]);
    let page = app
        .get(
            &format!("/api/v1/people/{}", admin_person["id"].as_str().unwrap()),
            &owner.token,
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(
        page.body["conversations"][0]["id"], by_key.body["conversation_id"],
        "a key's messages are its maker's"
    );

    // Searching, paging, and bad queries.
    let found = app.get("/api/v1/people?q=MEMBER@", &owner.token).await;
    assert_eq!(ids(&found.body), [member_person["id"].as_str().unwrap()]);
    let first = app.get("/api/v1/people?limit=3", &owner.token).await;
    let next = first.body["next_before"].as_str().unwrap();
    let rest = app
        .get(
            &format!("/api/v1/people?limit=3&before={next}"),
            &owner.token,
        )
        .await;
    assert_eq!(ids(&first.body).len() + ids(&rest.body).len(), 4);
    assert!(rest.body["next_before"].is_null());
    for bad in [
        "limit=0",
        "limit=201",
        "before=nope",
        &format!("q={}", "x".repeat(201)),
    ] {
        let reply = app
            .get(&format!("/api/v1/people?{bad}"), &owner.token)
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            reply.text
        );
    }

    // Advisors see aggregates only; members do not merge.
    let someone = owner_person["id"].as_str().unwrap();
    for path in [
        "/api/v1/people".to_owned(),
        format!("/api/v1/people/{someone}"),
        format!("/api/v1/people/{someone}/memory"),
    ] {
        let reply = app.get(&path, &advisor.token).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
    }
    // Someone's memory is theirs and the admins': not another member's.
    let fact = uuid::Uuid::now_v7();
    for path in [
        format!("/api/v1/people/{someone}/memory"),
        format!("/api/v1/people/{someone}/memory/{fact}"),
    ] {
        for session in [&advisor, &member] {
            let reply = app.delete(&path, &session.token).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
        }
    }
    // Only owners and admins erase anyone, their own person included.
    for session in [&advisor, &member] {
        for person in [someone, member_person["id"].as_str().unwrap()] {
            let reply = app
                .delete(&format!("/api/v1/people/{person}"), &session.token)
                .await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
        }
    }
    let mine = member_person["id"].as_str().unwrap();
    let own = app
        .delete(&format!("/api/v1/people/{mine}/memory"), &member.token)
        .await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text);
    let unknown = app
        .delete(
            &format!("/api/v1/people/{mine}/memory/{fact}"),
            &member.token,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let merge = |into: &str| format!("/api/v1/people/{into}/merge");
    let body = json!({"person_id": member_person["id"]});
    for session in [&advisor, &member] {
        let reply = app
            .post(&merge(someone), &session.token, body.clone())
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
    }
    let both = app.post(&merge(someone), &owner.token, body).await;
    assert_eq!(both.status, StatusCode::CONFLICT);
    assert_eq!(both.code(), "both_members");
    let same = app
        .post(&merge(someone), &owner.token, json!({"person_id": someone}))
        .await;
    assert_eq!(same.code(), "same_person");

    // Another organization's person, on either side, is not found.
    let theirs = app.get("/api/v1/people", &other.token).await;
    let theirs = ids(&theirs.body).remove(0);
    for (into, from) in [(someone, theirs.as_str()), (theirs.as_str(), someone)] {
        let reply = app
            .post(&merge(into), &owner.token, json!({"person_id": from}))
            .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    }
    let reply = app
        .get(&format!("/api/v1/people/{theirs}"), &owner.token)
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    for bad in [
        json!({}),
        json!({"person_id": "nope"}),
        json!({"person_id": someone, "extra": 1}),
    ] {
        let reply = app.post(&merge(someone), &owner.token, bad.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            reply.text
        );
    }
    let after = app.get("/api/v1/people?limit=200", &owner.token).await;
    assert_eq!(ids(&after.body), ids(&listed.body), "nothing was merged");
}

#[tokio::test]
async fn a_person_rates_a_reply_once_and_another_organization_cannot() {
    use steward_domain::{ConversationId, MessageId, MessageRole, MessageText};
    use steward_store::{ConversationChoice, NewMessage, TenantScope};
    let app = spawn_app().await;
    let owner = app.register("owner@example.org", "Acme").await;
    let other = app.register("other@example.org", "Globex").await;
    let advisor = app.member(&owner, "advisor@example.org", "advisor").await;
    let member = app.member(&owner, "member@example.org", "member").await;
    let bot = app.chatbot(&owner, "Help").await;
    let sent = app
        .post(
            &format!("/api/v1/chatbots/{bot}/messages"),
            &owner.token,
            json!({"text": "hi"}),
        )
        .await;
    let asked = sent.body["message_id"].as_str().unwrap().to_owned();
    // The reply the worker would write.
    let scope = TenantScope::for_job(owner.org_id.parse().unwrap());
    let reply = app
        .store
        .add_message(
            &scope,
            NewMessage {
                id: MessageId::new(),
                chatbot_id: bot.parse().unwrap(),
                conversation: ConversationChoice::Existing(
                    sent.body["conversation_id"]
                        .as_str()
                        .unwrap()
                        .parse::<ConversationId>()
                        .unwrap(),
                ),
                role: MessageRole::Assistant,
                text: MessageText::parse("text", "Hello!").unwrap(),
                channel: "api".into(),
                external_id: None,
                answers: Some(asked.parse().unwrap()),
                channel_id: None,
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
        .id
        .to_string();
    let rate = |message: &str| format!("/api/v1/messages/{message}/feedback");

    let first = app
        .post(
            &rate(&reply),
            &owner.token,
            json!({"rating": "up", "comment": "Just right.\nThanks"}),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let again = app
        .post(&rate(&reply), &owner.token, json!({"rating": "down"}))
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.body["comment"], Value::Null);
    let theirs = app
        .post(&rate(&reply), &member.token, json!({"rating": "up"}))
        .await;
    assert_eq!(theirs.status, StatusCode::CREATED);
    let read = app.get(&rate(&reply), &member.token).await;
    let ratings: Vec<&str> = read.body["feedback"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rating"].as_str().unwrap())
        .collect();
    assert_eq!(ratings, ["down", "up"], "{}", read.text);

    let person = app
        .post(&rate(&asked), &owner.token, json!({"rating": "up"}))
        .await;
    assert_eq!(person.status, StatusCode::CONFLICT);
    assert_eq!(person.code(), "not_a_reply");
    for path in [rate(&reply), rate(&uuid::Uuid::now_v7().to_string())] {
        let reply = app.post(&path, &other.token, json!({"rating": "up"})).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
        assert_eq!(
            app.get(&path, &other.token).await.status,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(
        app.post(&rate(&reply), &advisor.token, json!({"rating": "up"}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get(&rate(&reply), &advisor.token).await.status,
        StatusCode::FORBIDDEN
    );
    for bad in [
        json!({}),
        json!({"rating": "meh"}),
        json!({"rating": "up", "comment": ""}),
        json!({"rating": "up", "comment": "x".repeat(2_001)}),
        json!({"rating": "up", "comment": "a\u{0}b"}),
        json!({"rating": "up", "stars": 5}),
    ] {
        let reply = app.post(&rate(&reply), &owner.token, bad.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            reply.text
        );
    }
    let unchanged = app.get(&rate(&reply), &owner.token).await;
    assert_eq!(unchanged.body, read.body);
}

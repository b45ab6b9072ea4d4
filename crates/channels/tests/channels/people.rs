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
            (format!("{}:{}", first["kind"].as_str().unwrap(), first["handle"].as_str().unwrap()), p.clone())
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
        h.post_raw(&slack, &slack_headers(&body, &now_secs()), body).await;
    }
    let body = telegram_message(1, 42, 7, "hello");
    h.post_raw(&telegram, &telegram_headers(), body).await;
    let body = generic_message("m1", "user-7", "hello");
    h.post_raw(&generic, &generic_headers(&body, &now_secs()), body).await;
    assert_eq!(h.user_messages().await.len(), 6);

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
        .get(&format!("/api/v1/people/{}", phone["id"].as_str().unwrap()), &h.owner.token)
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let conversations = page.body["conversations"].as_array().unwrap();
    assert_eq!(conversations.len(), 1, "one WhatsApp number, one conversation");
    assert_eq!(conversations[0]["messages"].as_i64().unwrap() >= 2, true);
    assert_eq!(conversations[0]["person_id"], phone["id"]);
    let slack_person = &people["slack:U2147483697"];
    let page = h
        .app
        .get(&format!("/api/v1/people/{}", slack_person["id"].as_str().unwrap()), &h.owner.token)
        .await;
    assert_eq!(page.body["conversations"].as_array().unwrap().len(), 2, "two threads");

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
    h.post_raw(&slack, &slack_headers(&body, &now_secs()), body).await;
    let page = h
        .app
        .get(&format!("/api/v1/people/{}", phone["id"].as_str().unwrap()), &h.owner.token)
        .await;
    assert_eq!(page.body["conversations"].as_array().unwrap().len(), 4, "{}", page.text);
    assert_eq!(people_by_handle(&h).await.len(), 4);
}

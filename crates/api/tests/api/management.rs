//! Chatbots, history, chat intake, usage and billing, members, integrations
//! and the audit log, as an organization's admins use them.

use reqwest::StatusCode;
use serde_json::{Value, json};
use steward_domain::Tier;
use steward_store::TenantScope;
use steward_testkit::app::spawn_app;

#[tokio::test]
async fn chatbots_are_created_listed_tuned_and_deleted() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let created = app
        .post("/api/v1/chatbots", &owner.token, json!({"name": "Sales", "system_prompt": "Sell kindly.", "temperature": 0.3, "model": "claude-sonnet-4-5"}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    for field in [
        "id",
        "name",
        "system_prompt",
        "temperature",
        "model",
        "status",
        "created_at",
    ] {
        assert!(created.body.get(field).is_some(), "missing {field}");
    }
    assert_eq!(created.body["status"], "active");
    let id = created.body["id"].as_str().unwrap().to_owned();
    for i in 0..4 {
        app.chatbot(&owner, &format!("Bot {i}")).await;
    }

    let page = app
        .get("/api/v1/chatbots?limit=2&offset=1", &owner.token)
        .await;
    assert_eq!(page.body["total"], 5);
    let names: Vec<&str> = page.body["chatbots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Bot 0", "Bot 1"]);
    assert_eq!(
        app.get("/api/v1/chatbots", &owner.token).await.body["limit"],
        50
    );

    let patched = app
        .patch(
            &format!("/api/v1/chatbots/{id}"),
            &owner.token,
            json!({"temperature": 1.2, "status": "paused"}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    assert_eq!(patched.body["temperature"], 1.2);
    assert_eq!(patched.body["name"], "Sales");
    assert_eq!(patched.body["model"], "claude-sonnet-4-5");
    let cleared = app
        .patch(
            &format!("/api/v1/chatbots/{id}"),
            &owner.token,
            json!({"model": null}),
        )
        .await;
    assert_eq!(cleared.body["model"], Value::Null);
    assert_eq!(cleared.body["status"], "paused");

    let paused = app
        .post(
            &format!("/api/v1/chatbots/{id}/messages"),
            &owner.token,
            json!({"text": "anyone?"}),
        )
        .await;
    assert_eq!(paused.status, StatusCode::CONFLICT);
    assert_eq!(paused.code(), "chatbot_paused");

    assert_eq!(
        app.delete(&format!("/api/v1/chatbots/{id}"), &owner.token)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get(&format!("/api/v1/chatbots/{id}"), &owner.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/api/v1/chatbots", &owner.token).await.body["total"],
        4
    );
}

#[tokio::test]
async fn history_pages_walk_every_message_newest_first_and_end_with_a_null_cursor() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;
    let mut conversation: Option<String> = None;
    let mut sent = Vec::new();
    for i in 0..7 {
        let mut body = json!({"text": format!("message {i}")});
        if let Some(c) = &conversation {
            body["conversation_id"] = json!(c);
        }
        let reply = app
            .post(
                &format!("/api/v1/chatbots/{bot}/messages"),
                &owner.token,
                body,
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED);
        conversation = Some(reply.body["conversation_id"].as_str().unwrap().to_owned());
        sent.push(reply.body["message_id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/chatbots/{bot}/history?limit=3&cursor={c}"),
            None => format!("/api/v1/chatbots/{bot}/history?limit=3"),
        };
        let page = app.get(&path, &owner.token).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        seen.extend(
            page.body["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_owned()),
        );
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    sent.reverse();
    assert_eq!(seen, sent);

    let exact = app
        .get(
            &format!("/api/v1/chatbots/{bot}/history?limit=7"),
            &owner.token,
        )
        .await;
    assert_eq!(
        exact.body["next_cursor"],
        Value::Null,
        "no cursor when the page holds the rest"
    );

    let middle = &sent[3];
    let thread = app
        .get(
            &format!("/api/v1/chatbots/{bot}/history/{middle}"),
            &owner.token,
        )
        .await;
    assert_eq!(thread.status, StatusCode::OK);
    assert_eq!(thread.body["message"]["id"], middle.as_str());
    assert_eq!(
        thread.body["thread"].as_array().unwrap().len(),
        7,
        "the whole short conversation"
    );
    assert_eq!(
        thread.body["thread"][0]["text"], "message 0",
        "oldest first"
    );

    let future = app
        .get(
            &format!("/api/v1/chatbots/{bot}/history?from=2999-01-01T00:00:00Z"),
            &owner.token,
        )
        .await;
    assert_eq!(future.body["messages"].as_array().unwrap().len(), 0);
    let past = app
        .get(
            &format!("/api/v1/chatbots/{bot}/history?to=2000-01-01T00:00:00%2B01:00"),
            &owner.token,
        )
        .await;
    assert_eq!(past.body["messages"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn usage_counts_messages_against_the_tier_which_only_the_operator_changes() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;
    for _ in 0..3 {
        app.post(
            &format!("/api/v1/chatbots/{bot}/messages"),
            &owner.token,
            json!({"text": "hi"}),
        )
        .await;
    }
    let usage = app.get("/api/v1/organizations/usage", &owner.token).await;
    assert_eq!(usage.body["messages_used"], 3);
    assert_eq!(usage.body["messages_limit"], 1000);
    assert_eq!(usage.body["tokens_used"], 0);
    assert_eq!(usage.body["tokens_limit"], 1_000_000);
    assert_eq!(usage.body["current_tier"], "free");

    // An admin may only ask: the request is recorded, the tier stays.
    let requested = app
        .call(
            reqwest::Method::PUT,
            "/api/v1/organizations/billing",
            Some(&owner.token),
            Some(json!({"tier": "enterprise"})),
        )
        .await;
    assert_eq!(requested.status, StatusCode::ACCEPTED, "{}", requested.text);
    assert_eq!(requested.body["current_tier"], "free");
    assert_eq!(requested.body["requested_tier"], "enterprise");
    let usage = app.get("/api/v1/organizations/usage", &owner.token).await;
    assert_eq!(usage.body["current_tier"], "free");
    assert_eq!(usage.body["messages_limit"], 1000);
    let log = app
        .get("/api/v1/organizations/audit-log", &owner.token)
        .await;
    assert_eq!(log.body["entries"][0]["action"], "billing.change_requested");
    assert_eq!(
        log.body["entries"][0]["details"],
        json!({"from": "free", "to": "enterprise"})
    );

    // The operator sets it (`steward org set-tier`).
    let operator = TenantScope::for_operator(owner.org_id.parse().unwrap());
    app.store.set_tier(&operator, Tier::Pro).await.unwrap();
    let usage = app.get("/api/v1/organizations/usage", &owner.token).await;
    assert_eq!(usage.body["current_tier"], "pro");
    assert_eq!(usage.body["messages_limit"], 20_000);
    let unknown = app
        .call(
            reqwest::Method::PUT,
            "/api/v1/organizations/billing",
            Some(&owner.token),
            Some(json!({"tier": "platinum"})),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn integrations_are_listed_enabled_reconfigured_and_disabled() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let member = app.member(&owner, "m@example.org", "member").await;
    let listed = app
        .get("/api/v1/integrations/available", &owner.token)
        .await;
    let ids: Vec<&str> = listed.body["integrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["pricing-calculator", "lead-capture", "contact-owner"]);

    // Lead capture takes no settings yet; the calculator's are its price list.
    let unused = app
        .post(
            "/api/v1/integrations/enable",
            &owner.token,
            json!({"integration_id": "lead-capture", "config": {"notify": "sales@example.org"}}),
        )
        .await;
    assert_eq!(
        unused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        unused.text
    );
    let price_list =
        json!({"currency": "EUR", "items": {"basic": {"name": "Basic", "unit_price": 9.5}}});
    let enabled = app
        .post(
            "/api/v1/integrations/enable",
            &owner.token,
            json!({"integration_id": "pricing-calculator", "config": price_list}),
        )
        .await;
    assert_eq!(enabled.status, StatusCode::OK, "{}", enabled.text);
    assert_eq!(enabled.body["enabled"], true);
    assert_eq!(enabled.body["config"], price_list);
    app.post(
        "/api/v1/integrations/enable",
        &owner.token,
        json!({"integration_id": "lead-capture"}),
    )
    .await;

    let seen_by_member = app
        .get("/api/v1/integrations/available", &member.token)
        .await;
    let lead = &seen_by_member.body["integrations"][1];
    assert_eq!(lead["enabled"], true);
    assert_eq!(lead["config"], Value::Null, "members do not see settings");

    assert_eq!(
        app.delete("/api/v1/integrations/lead-capture", &owner.token)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete("/api/v1/integrations/lead-capture", &owner.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn admin_actions_are_written_to_the_audit_log() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    app.call(
        reqwest::Method::PUT,
        "/api/v1/organizations/billing",
        Some(&owner.token),
        Some(json!({"tier": "enterprise"})),
    )
    .await;
    let member = app.member(&owner, "m@example.org", "member").await;
    app.patch(
        &format!("/api/v1/organizations/members/{}", member.user_id),
        &owner.token,
        json!({"role": "admin"}),
    )
    .await;
    app.post("/api/v1/api-keys", &owner.token, json!({"name": "ci"}))
        .await;
    app.post(
        "/api/v1/integrations/enable",
        &owner.token,
        json!({"integration_id": "contact-owner"}),
    )
    .await;

    let log = app
        .get("/api/v1/organizations/audit-log", &owner.token)
        .await;
    let actions: Vec<&str> = log.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "billing.change_requested",
            "member.added",
            // The member changes the one-time password at first sign-in.
            "member.password_changed",
            "member.role_changed",
            "api_key.created",
            "integration.enabled"
        ]
    );
    let by = |e: &&serde_json::Value| {
        let who = match e["action"].as_str() {
            Some("member.password_changed") => &member.user_id,
            _ => &owner.user_id,
        };
        e["actor"] == format!("user:{who}")
    };
    assert!(
        log.body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| by(&e))
    );
    assert!(!log.text.contains("Correct-Horse"), "no secrets in the log");
    let limited = app
        .get("/api/v1/organizations/audit-log?limit=2", &owner.token)
        .await;
    assert_eq!(limited.body["entries"].as_array().unwrap().len(), 2);

    // Pages of four walk the whole log; the last says there is no next.
    let ids = |reply: &steward_testkit::app::Reply| -> Vec<String> {
        reply.body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let first = app
        .get("/api/v1/organizations/audit-log?limit=4", &owner.token)
        .await;
    let cursor = first.body["next_before"].as_str().unwrap();
    let second = app
        .get(
            &format!("/api/v1/organizations/audit-log?limit=4&before={cursor}"),
            &owner.token,
        )
        .await;
    assert_eq!(second.body["next_before"], serde_json::Value::Null);
    assert_eq!([ids(&first), ids(&second)].concat(), ids(&log));
    let stranger = app.register("eve@example.org", "Evil").await;
    let theirs = app
        .get(
            &format!("/api/v1/organizations/audit-log?before={cursor}"),
            &stranger.token,
        )
        .await;
    assert_eq!(theirs.status, 409);
    assert_eq!(theirs.code(), "unknown_cursor");
}

#[tokio::test]
async fn members_are_invited_with_a_one_time_password_and_listed() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let invited = app
        .post(
            "/api/v1/organizations/members",
            &owner.token,
            json!({"email": "Grace@Example.org", "role": "admin", "name": "Grace"}),
        )
        .await;
    assert_eq!(invited.status, StatusCode::CREATED);
    assert_eq!(invited.body["user"]["email"], "grace@example.org");
    assert!(invited.body["temporary_password"].as_str().unwrap().len() >= 20);
    let again = app
        .post(
            "/api/v1/organizations/members",
            &owner.token,
            json!({"email": "grace@example.org", "role": "member"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let members = app.get("/api/v1/organizations/members", &owner.token).await;
    let emails: Vec<&str> = members.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, ["ada@example.org", "grace@example.org"]);
    assert!(
        !members.text.contains("$argon2") && !members.text.contains("password_hash"),
        "hashes never leave the server"
    );
}

#[tokio::test]
async fn dead_jobs_are_listed_retried_and_discarded_by_admins() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let first = steward_testkit::app::dead_job(&app, &owner).await;
    let second = steward_testkit::app::dead_job(&app, &owner).await;
    let member = app.member(&owner, "m@example.org", "member").await;

    let dead = app.get("/api/v1/jobs?state=dead", &owner.token).await;
    assert_eq!(dead.status, StatusCode::OK, "{}", dead.text);
    let jobs = dead.body["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0]["state"], "dead");
    assert_eq!(jobs[0]["kind"], "deliver");
    assert_eq!(jobs[0]["last_error"], "410 Gone from the channel");
    assert_eq!(
        app.get("/api/v1/jobs?state=queued", &owner.token)
            .await
            .body["jobs"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        app.get("/api/v1/jobs?state=buried", &owner.token)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get("/api/v1/jobs", &member.token).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.post(
            &format!("/api/v1/jobs/{first}/retry"),
            &member.token,
            json!({})
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );

    let retried = app
        .post(
            &format!("/api/v1/jobs/{first}/retry"),
            &owner.token,
            json!({}),
        )
        .await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.text);
    assert_eq!(retried.body["state"], "queued");
    assert_eq!(retried.body["attempts"], 0);
    let again = app
        .post(
            &format!("/api/v1/jobs/{first}/retry"),
            &owner.token,
            json!({}),
        )
        .await;
    assert_eq!(
        again.status,
        StatusCode::NOT_FOUND,
        "only dead jobs are retried"
    );

    let discarded = app
        .post(
            &format!("/api/v1/jobs/{second}/discard"),
            &owner.token,
            json!({}),
        )
        .await;
    assert_eq!(discarded.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&format!("/api/v1/jobs/{second}"), &owner.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/api/v1/jobs/{first}"), &owner.token)
            .await
            .body["state"],
        "queued"
    );

    let log = app
        .get("/api/v1/organizations/audit-log", &owner.token)
        .await;
    let actions: Vec<&str> = log.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"job.retried") && actions.contains(&"job.discarded"));
}

#[tokio::test]
async fn conversations_are_listed_filtered_and_read_page_by_page() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;
    let other = app.chatbot(&owner, "Other").await;
    let send = |bot: String, text: String, conversation: Option<String>| {
        let (app, token) = (&app, owner.token.clone());
        async move {
            let mut body = json!({ "text": text });
            if let Some(c) = conversation {
                body["conversation_id"] = json!(c);
            }
            let reply = app
                .post(&format!("/api/v1/chatbots/{bot}/messages"), &token, body)
                .await;
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
            (
                reply.body["conversation_id"].as_str().unwrap().to_owned(),
                reply.body["message_id"].as_str().unwrap().to_owned(),
            )
        }
    };
    let (long, first) = send(bot.clone(), "refund please".into(), None).await;
    let mut ids = vec![first];
    for i in 1..5 {
        ids.push(
            send(bot.clone(), format!("turn {i}"), Some(long.clone()))
                .await
                .1,
        );
    }
    let (short, _) = send(bot.clone(), "opening hours?".into(), None).await;
    let (elsewhere, _) = send(other.clone(), "hello".into(), None).await;

    let all = app.get("/api/v1/conversations", &owner.token).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    let listed: Vec<&str> = all.body["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [elsewhere.as_str(), short.as_str(), long.as_str()]);
    let entry = &all.body["conversations"][2];
    assert_eq!(entry["messages"], 5);
    assert_eq!(entry["channel"], "api");
    assert_eq!(entry["last_message"]["text"], "turn 4");
    assert_eq!(all.body["next_before"], Value::Null);

    let of_bot = app
        .get(
            &format!("/api/v1/conversations?chatbot_id={bot}&limit=1"),
            &owner.token,
        )
        .await;
    assert_eq!(of_bot.body["conversations"][0]["id"], short.as_str());
    let next = of_bot.body["next_before"].as_str().unwrap();
    let page_two = app
        .get(
            &format!("/api/v1/conversations?chatbot_id={bot}&limit=1&before={next}"),
            &owner.token,
        )
        .await;
    assert_eq!(page_two.body["conversations"][0]["id"], long.as_str());
    assert_eq!(page_two.body["next_before"], Value::Null);

    let found = app
        .get("/api/v1/conversations?q=REFUND&channel=api", &owner.token)
        .await;
    assert_eq!(found.body["conversations"].as_array().unwrap().len(), 1);
    assert_eq!(found.body["conversations"][0]["id"], long.as_str());
    for bad in [
        "?channel=WhatsApp",
        "?from=yesterday",
        "?limit=0",
        "?before=not-a-uuid",
    ] {
        let refused = app
            .get(&format!("/api/v1/conversations{bad}"), &owner.token)
            .await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            refused.text
        );
    }
    let empty_range = app
        .get(
            "/api/v1/conversations?from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z",
            &owner.token,
        )
        .await;
    assert_eq!(empty_range.status, StatusCode::OK);
    assert_eq!(empty_range.body["conversations"], json!([]));
    let unknown = app
        .get(
            &format!("/api/v1/conversations?before={}", uuid::Uuid::now_v7()),
            &owner.token,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::CONFLICT);
    assert_eq!(unknown.code(), "unknown_cursor");

    // One conversation, page by page from its first message.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/api/v1/conversations/{long}/messages?limit=2&after={a}"),
            None => format!("/api/v1/conversations/{long}/messages?limit=2"),
        };
        let page = app.get(&path, &owner.token).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        assert_eq!(page.body["conversation"]["id"], long.as_str());
        seen.extend(
            page.body["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_owned()),
        );
        match page.body["next_after"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every message once, oldest first");
    let foreign_cursor = app
        .get(
            &format!("/api/v1/conversations/{short}/messages?after={}", ids[0]),
            &owner.token,
        )
        .await;
    assert_eq!(foreign_cursor.status, StatusCode::CONFLICT);
    let missing = app
        .get(
            &format!("/api/v1/conversations/{}/messages", uuid::Uuid::now_v7()),
            &owner.token,
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let advisor = app.member(&owner, "advisor@example.org", "advisor").await;
    for path in [
        "/api/v1/conversations".to_owned(),
        format!("/api/v1/conversations/{long}/messages"),
    ] {
        assert_eq!(
            app.get(&path, &advisor.token).await.status,
            StatusCode::FORBIDDEN,
            "{path}: advisors see aggregates only"
        );
    }
}

#[tokio::test]
async fn insights_count_messages_per_day_people_and_reply_times_for_every_role() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;
    for text in ["one", "two"] {
        let sent = app
            .post(
                &format!("/api/v1/chatbots/{bot}/messages"),
                &owner.token,
                json!({ "text": text }),
            )
            .await;
        assert_eq!(sent.status, StatusCode::CREATED);
    }
    let advisor = app.member(&owner, "advisor@example.org", "advisor").await;
    for token in [&owner.token, &advisor.token] {
        let insights = app.get("/api/v1/insights/usage", token).await;
        assert_eq!(insights.status, StatusCode::OK, "{}", insights.text);
        let days = insights.body["days"].as_array().unwrap();
        assert_eq!(days.len(), 30, "every day, empty ones too");
        let today = days.last().unwrap();
        assert_eq!(today["date"], chrono::Utc::now().date_naive().to_string());
        assert_eq!(today["messages"], 2);
        assert_eq!(
            (today["direct"].as_i64(), today["forwarded"].as_i64()),
            (Some(2), Some(0))
        );
        // One person wrote both: the owner.
        assert_eq!(today["people"], 1);
        assert_eq!(today["messages_per_person"], 2.0);
        assert_eq!(insights.body["active_people"]["today"], 1);
        let this_week = insights.body["weeks"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(
            (this_week["messages"].as_i64(), this_week["people"].as_i64()),
            (Some(2), Some(1))
        );
        assert_eq!(insights.body["feedback"]["score"], serde_json::Value::Null);
        assert_eq!(insights.body["chatbots"][0]["chatbot_id"], bot.as_str());
        assert_eq!(insights.body["chatbots"][0]["conversations"], 2);
        assert!(!insights.text.contains("ada@example.org"), "numbers only");
    }
    let week = app.get("/api/v1/insights/usage?days=7", &owner.token).await;
    assert_eq!(week.body["days"].as_array().unwrap().len(), 7);
    for bad in ["0", "91", "x"] {
        let refused = app
            .get(&format!("/api/v1/insights/usage?days={bad}"), &owner.token)
            .await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "days={bad}");
    }
}

#[tokio::test]
async fn organization_settings_are_read_by_members_and_changed_by_admins_within_bounds() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let advisor = app.member(&owner, "advisor@example.org", "advisor").await;
    let member = app.member(&owner, "member@example.org", "member").await;
    let path = "/api/v1/organizations/settings";
    let read = app.get(path, &member.token).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    // Advisors see aggregates only.
    assert_eq!(
        app.get(path, &advisor.token).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(read.body, json!({"memory": true, "retention_days": null}));
    for session in [&advisor, &member] {
        let refused = app
            .put(path, &session.token, json!({"retention_days": 30}))
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
    }
    for bad in [
        json!({"retention_days": 0}),
        json!({"retention_days": 3651}),
        json!({"retention_days": -1}),
        json!({"retention_days": "30"}),
        json!({"memory": "off"}),
        json!({"retention": 30}),
        json!([null, null]),
        json!([true]),
    ] {
        let refused = app.put(path, &owner.token, bad.clone()).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            refused.text
        );
    }
    let set = app
        .put(path, &owner.token, json!({"retention_days": 30}))
        .await;
    assert_eq!(
        set.body,
        json!({"memory": true, "retention_days": 30}),
        "{}",
        set.text
    );
    let unchanged = app.put(path, &owner.token, json!({"memory": true})).await;
    assert_eq!(
        unchanged.body["retention_days"], 30,
        "absent: left as it is"
    );
    let kept = app
        .put(path, &owner.token, json!({"retention_days": null}))
        .await;
    assert_eq!(kept.body["retention_days"], Value::Null);
    let log = app
        .get("/api/v1/organizations/audit-log", &owner.token)
        .await;
    let changes = log.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "organization.retention_changed")
        .count();
    assert_eq!(changes, 2, "{}", log.text);
}

//! The tools an organization may give its chatbots, choosing them per
//! chatbot, and the leads the lead-capture tool records.

use reqwest::StatusCode;
use serde_json::{Value, json};
use steward_domain::ToolCallId;
use steward_store::{NewLead, TenantScope};
use steward_testkit::app::spawn_app;

#[tokio::test]
async fn tools_come_with_enabled_integrations_and_are_given_to_chatbots_by_name() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let member = app.member(&owner, "m@example.org", "member").await;
    let bot = app.chatbot(&owner, "Helper").await;
    let names = |listed: &Value| -> Vec<String> {
        listed["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let tools = app.get("/api/v1/tools", &owner.token).await;
    assert_eq!(
        names(&tools.body),
        Vec::<String>::new(),
        "nothing enabled yet"
    );
    let give = |tools: Value| json!({ "tools": tools });
    let refused = app
        .patch(
            &format!("/api/v1/chatbots/{bot}"),
            &owner.token,
            give(json!(["lead-capture.record"])),
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
    assert_eq!(refused.code(), "unknown_tool");

    app.post(
        "/api/v1/integrations/enable",
        &owner.token,
        json!({"integration_id": "lead-capture"}),
    )
    .await;
    let tools = app.get("/api/v1/tools", &member.token).await;
    assert_eq!(names(&tools.body), ["lead-capture.record"]);
    assert_eq!(tools.body["tools"][0]["server"], "lead-capture");
    assert_eq!(
        tools.body["tools"][0]["input_schema"]["required"],
        json!(["name"])
    );

    let given = app
        .patch(
            &format!("/api/v1/chatbots/{bot}"),
            &owner.token,
            give(json!(["lead-capture.record", "lead-capture.record"])),
        )
        .await;
    assert_eq!(given.status, StatusCode::OK, "{}", given.text);
    assert_eq!(
        given.body["tools"],
        json!(["lead-capture.record"]),
        "once each"
    );
    let read = app
        .get(&format!("/api/v1/chatbots/{bot}"), &owner.token)
        .await;
    assert_eq!(read.body["tools"], json!(["lead-capture.record"]));

    for (tools, code) in [
        (json!(["lead-capture.nope"]), "unknown_tool"),
        (json!(["pricing-calculator.quote"]), "unknown_tool"),
        (json!(vec!["lead-capture.record"; 65]), "validation_failed"),
        (json!("lead-capture.record"), "invalid_body"),
    ] {
        let refused = app
            .patch(
                &format!("/api/v1/chatbots/{bot}"),
                &owner.token,
                give(tools.clone()),
            )
            .await;
        assert_eq!(refused.code(), code, "{tools}: {}", refused.text);
    }
    let by_member = app
        .patch(
            &format!("/api/v1/chatbots/{bot}"),
            &member.token,
            give(json!([])),
        )
        .await;
    assert_eq!(by_member.status, StatusCode::FORBIDDEN);
    let none = app
        .patch(
            &format!("/api/v1/chatbots/{bot}"),
            &owner.token,
            give(json!([])),
        )
        .await;
    assert_eq!(none.body["tools"], json!([]));
}

#[tokio::test]
async fn leads_are_listed_and_exported_to_owners_and_admins_only() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let member = app.member(&owner, "m@example.org", "member").await;
    let bot = app.chatbot(&owner, "Helper").await;
    let sent = app
        .post(
            &format!("/api/v1/chatbots/{bot}/messages"),
            &owner.token,
            json!({"text": "I'd like a demo"}),
        )
        .await;
    let conversation = sent.body["conversation_id"].as_str().unwrap();
    let scope = TenantScope::for_job(owner.org_id.parse().unwrap());
    for (name, email) in [
        ("Ada", "ada@lovelace.example"),
        ("=cmd|' /C calc'!A0", "x@example.org"),
    ] {
        app.store
            .record_lead(
                &scope,
                &NewLead {
                    tool_call_id: ToolCallId::new(),
                    chatbot_id: bot.parse().unwrap(),
                    conversation_id: conversation.parse().unwrap(),
                    name: name.into(),
                    email: Some(email.into()),
                    phone: None,
                    company: Some("Analytical Engines".into()),
                    note: None,
                },
            )
            .await
            .unwrap();
    }

    let leads = app.get("/api/v1/leads", &owner.token).await;
    assert_eq!(leads.status, StatusCode::OK, "{}", leads.text);
    assert_eq!(leads.body["total"], 2);
    assert_eq!(leads.body["leads"][1]["name"], "Ada", "newest first");
    assert_eq!(leads.body["leads"][1]["conversation_id"], conversation);
    let page = app
        .get("/api/v1/leads?limit=1&offset=1", &owner.token)
        .await;
    assert_eq!(page.body["leads"].as_array().unwrap().len(), 1);
    assert_eq!(page.body["leads"][0]["name"], "Ada");

    let csv = app.get("/api/v1/leads/export.csv", &owner.token).await;
    assert_eq!(csv.status, StatusCode::OK);
    let rows: Vec<&str> = csv.text.lines().collect();
    assert_eq!(
        rows[0],
        "created_at,name,email,phone,company,note,chatbot_id,conversation_id"
    );
    assert_eq!(rows.len(), 3);
    assert!(
        rows[1].contains("'=cmd|' /C calc'!A0"),
        "formula quoted: {}",
        rows[1]
    );
    assert!(
        rows[2].contains("Ada,ada@lovelace.example,,Analytical Engines,"),
        "{}",
        rows[2]
    );

    for path in ["/api/v1/leads", "/api/v1/leads/export.csv"] {
        assert_eq!(
            app.get(path, &member.token).await.status,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    assert_eq!(
        app.get("/api/v1/leads?limit=0", &owner.token).await.status,
        StatusCode::BAD_REQUEST
    );
}

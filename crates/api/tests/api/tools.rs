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
                &[],
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

#[tokio::test]
async fn an_organizations_mcp_servers_are_checked_kept_secret_and_removed() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let member = app.member(&owner, "m@example.org", "member").await;
    let connect = |body: Value| app.post("/api/v1/tools/servers", &owner.token, body);

    let created = connect(json!({
        "name": "crm",
        "url": "https://crm.example.org/mcp",
        "headers": {"authorization": "Bearer s3cret-key"},
        "allowed_tools": ["find_customer"],
    }))
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["header_names"], json!(["authorization"]));
    assert_eq!(created.body["health"]["status"], "waiting");
    assert!(
        !created.text.contains("s3cret-key"),
        "headers are never shown"
    );
    let id = created.body["id"].as_str().unwrap().to_owned();

    for (body, status, code) in [
        (
            json!({"name": "crm", "url": "https://other.example.org/mcp"}),
            409,
            "tool_server_name_taken",
        ),
        (
            json!({"name": "lead-capture", "url": "https://x.example.org/mcp"}),
            409,
            "tool_server_name_taken",
        ),
        (
            json!({"name": "CRM", "url": "https://x.example.org/mcp"}),
            422,
            "validation_failed",
        ),
        (
            json!({"name": "-crm", "url": "https://x.example.org/mcp"}),
            422,
            "validation_failed",
        ),
        (
            json!({"name": "local", "url": "http://127.0.0.1:8080/mcp"}),
            422,
            "url_refused",
        ),
        (
            json!({"name": "meta", "url": "http://169.254.169.254/latest"}),
            422,
            "url_refused",
        ),
        (
            json!({"name": "ftp", "url": "ftp://x.example.org/mcp"}),
            422,
            "url_refused",
        ),
        (
            json!({"name": "h", "url": "https://x.example.org/mcp", "headers": {"bad header": "x"}}),
            422,
            "validation_failed",
        ),
        (
            json!({"name": "h", "url": "https://x.example.org/mcp", "headers": {"x-key": "a\nb"}}),
            422,
            "validation_failed",
        ),
        (
            json!({"name": "t", "url": "https://x.example.org/mcp", "timeout_secs": 0}),
            422,
            "validation_failed",
        ),
        (
            json!({"name": "a", "url": "https://x.example.org/mcp", "allowed_tools": ["no spaces"]}),
            422,
            "validation_failed",
        ),
        (
            json!({"name": "x", "url": "https://x.example.org/mcp", "admin": true}),
            422,
            "invalid_body",
        ),
    ] {
        let refused = connect(body.clone()).await;
        assert_eq!(
            (refused.status.as_u16(), refused.code()),
            (status, code),
            "{body}: {}",
            refused.text
        );
    }
    assert_eq!(
        app.post(
            "/api/v1/tools/servers",
            &member.token,
            json!({"name": "m", "url": "https://m.example.org/mcp"})
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get("/api/v1/tools/servers", &member.token).await.status,
        StatusCode::FORBIDDEN
    );

    // A server that cannot be reached offers nothing, and its health says so.
    let refreshed = app
        .post(
            &format!("/api/v1/tools/servers/{id}/refresh"),
            &owner.token,
            json!({}),
        )
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text);
    assert_eq!(refreshed.body["tools"], json!([]));
    assert_eq!(refreshed.body["server"]["health"]["status"], "failing");
    assert!(
        refreshed.body["server"]["health"]["last_error"]
            .as_str()
            .unwrap()
            .contains("crm")
    );
    let listed = app.get("/api/v1/tools/servers", &owner.token).await;
    assert_eq!(listed.body["servers"][0]["name"], "crm");

    let audit = app
        .get("/api/v1/organizations/audit-log", &owner.token)
        .await;
    assert!(audit.text.contains("tool_server.create"), "{}", audit.text);
    assert!(
        !audit.text.contains("s3cret-key"),
        "headers stay out of the audit log"
    );
    assert_eq!(
        app.delete(&format!("/api/v1/tools/servers/{id}"), &owner.token)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete(&format!("/api/v1/tools/servers/{id}"), &owner.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_connected_mcp_servers_allowed_tools_are_offered_and_listed_on_demand() {
    let Ok(url) = std::env::var("STEWARD_TEST_MCP_SHOP") else {
        eprintln!(
            "skipped: backend not configured (STEWARD_TEST_MCP_SHOP: eval \"$(scripts/mcp-servers)\")"
        );
        return;
    };
    // The test server is on this machine: private networks allowed, as in development.
    let app =
        steward_testkit::app::spawn_app_with(|c| c.outbound.allow_private_networks = true).await;
    let owner = app.register("ada@example.org", "Acme").await;
    let created = app
        .post(
            "/api/v1/tools/servers",
            &owner.token,
            // Named by name, as an organization names its servers.
            json!({"name": "shop", "url": url.replace("127.0.0.1", "localhost"), "headers": {"x-api-key": "k"}, "allowed_tools": ["place_order", "slow"]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.body["id"].as_str().unwrap();
    let refreshed = app
        .post(
            &format!("/api/v1/tools/servers/{id}/refresh"),
            &owner.token,
            json!({}),
        )
        .await;
    let names: Vec<&str> = refreshed.body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["shop.place_order", "shop.slow"],
        "only the tools it allows"
    );
    assert_eq!(refreshed.body["server"]["health"]["status"], "ok");
    let tools = app.get("/api/v1/tools", &owner.token).await;
    assert!(tools.text.contains("shop.place_order") && !tools.text.contains("out_of_stock"));

    // A call through the catalogue reaches it with its headers and the call's key.
    let key = ToolCallId::new();
    let context = steward_tools::CallContext {
        scope: TenantScope::for_job(owner.org_id.parse().unwrap()),
        chatbot: steward_domain::ChatbotId::new(),
        conversation: steward_domain::ConversationId::new(),
        person: None,
        reply: None,
        key,
    };
    let tool = steward_tools::Tool {
        server: "shop".into(),
        name: "place_order".into(),
        description: String::new(),
        input_schema: json!({"type": "object"}),
    };
    let input = json!({"item": "lamp", "quantity": 3});
    let placed = steward_tools::Toolbox::call(
        &app.state.tools,
        &context,
        &tool,
        input.as_object().unwrap(),
    )
    .await
    .unwrap();
    let placed: Value = serde_json::from_str(&placed).unwrap();
    assert_eq!(placed["header_key"], key.to_string());
    assert_eq!(placed["quantity"], 3);
    let given = app
        .patch(
            &format!("/api/v1/chatbots/{}", app.chatbot(&owner, "Helper").await),
            &owner.token,
            json!({"tools": ["shop.place_order"]}),
        )
        .await;
    assert_eq!(given.status, StatusCode::OK, "{}", given.text);

    app.delete(&format!("/api/v1/tools/servers/{id}"), &owner.token)
        .await;
    let tools = app.get("/api/v1/tools", &owner.token).await;
    assert!(
        !tools.text.contains("shop."),
        "a removed server's tools are gone"
    );
}

#[tokio::test]
async fn a_servers_headers_are_sealed_again_when_the_master_key_rotates() {
    use steward_auth::Sealer;
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let created = app
        .post(
            "/api/v1/tools/servers",
            &owner.token,
            json!({"name": "crm", "url": "https://crm.example.org/mcp", "headers": {"x-api-key": "k1"}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let old = steward_config::master_key_bytes(&app.state.config).unwrap();
    let rotated = Sealer::new(&[7; 32]).with_previous(Some(&old));
    let done = steward_tools::reseal(app.store.as_ref(), &rotated)
        .await
        .unwrap();
    assert_eq!((done.resealed, done.current, done.changed), (1, 0, 0));
    let again = steward_tools::reseal(app.store.as_ref(), &rotated)
        .await
        .unwrap();
    assert_eq!((again.resealed, again.current), (0, 1));
    // The new key alone opens them now.
    let server = app.store.all_tool_servers().await.unwrap().remove(0);
    let headers = steward_tools::open_headers(&Sealer::new(&[7; 32]), &server).unwrap();
    assert_eq!(headers, [("x-api-key".to_owned(), "k1".to_owned())]);
    let stranger = Sealer::new(&[9; 32]);
    let lost = steward_tools::reseal(app.store.as_ref(), &stranger)
        .await
        .unwrap();
    assert_eq!(lost.unreadable, [server.id]);
}

//! `steward mcp`: Steward's own tools served over MCP on a listener of their
//! own, driven by a client Steward did not write (the official Python SDK's,
//! scripts/mcp/client.py) in both protocol revisions, beside `steward serve`
//! on the same database (SQLite, or PostgreSQL when STEWARD_TEST_POSTGRES_URL
//! is set).

mod support;

use std::process::Command;

use serde_json::{Value, json};
use support::*;

/// The SDK's Python, from scripts/mcp-servers.
fn python() -> Option<String> {
    let python = std::env::var("STEWARD_TEST_MCP_PYTHON").ok();
    if python.is_none() {
        eprintln!(
            "skipped: backend not configured (STEWARD_TEST_MCP_PYTHON: eval \"$(scripts/mcp-servers)\")"
        );
    }
    python
}

/// Runs scripts/mcp/client.py: what the client saw.
fn sdk_client(python: &str, url: &str, key: &str, mode: &str, calls: Value) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/mcp/client.py");
    let ran = Command::new(python)
        .args([script, url, key, mode, &calls.to_string()])
        .output()
        .expect("python runs");
    assert!(ran.status.success(), "{}", text(&ran.stderr));
    serde_json::from_slice(&ran.stdout).expect("the client prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_agents_quote_and_record_leads_once_through_steward_mcp() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let postgres = steward_testkit::PostgresDatabase::create().await;
    let database_url = match &postgres {
        Some(db) => db.url.clone(),
        None => format!("sqlite://{}", dir.path().join("steward.db").display()),
    };
    let role = || {
        let mut command = steward(dir.path());
        command
            .env("STEWARD_DATABASE__URL", &database_url)
            .env("RUST_LOG", "warn");
        command
    };
    let (_, password) = create_acme_with(role());
    let serve = Server::start(role());
    serve.wait_until_healthy().await;
    let mcp = Server::start_as(role(), "mcp", free_port());
    mcp.wait_until_healthy().await;
    let url = format!("{}/mcp", mcp.base);

    let owner = Api::sign_in(&serve.base, &password).await;
    let (status, key) = owner
        .post("/api/v1/api-keys", json!({"name": "agent"}))
        .await;
    assert_eq!(status, 201, "{key}");
    let key = key["key"].as_str().unwrap().to_owned();
    for (integration, config) in [
        (
            "pricing-calculator",
            json!({"currency": "EUR", "items": {"team": {"name": "Team plan", "unit_price": 12.5,
                                                         "volume": [{"from": 20, "percent_off": 10}]}}}),
        ),
        ("lead-capture", json!({})),
    ] {
        let (status, body) = owner
            .post(
                "/api/v1/integrations/enable",
                json!({"integration_id": integration, "config": config}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let bot = owner.chatbot().await;
    let conversation = owner.message(&bot, "I'd like a demo").await;
    // Another organization's conversation, which Acme's key must not reach.
    let (_, other_password) = create_org_with(role(), "Other", "other@example.org");
    let other = Api::sign_in_as(&serve.base, "other@example.org", &other_password).await;
    let theirs = other.message(&other.chatbot().await, "hello").await;

    let lead_key = steward_domain::ToolCallId::new().to_string();
    let record = json!({
        "name": "lead-capture.record",
        "arguments": {"name": "Grace", "email": "grace@example.org", "conversation_id": conversation},
        "key": lead_key,
    });
    for (mode, protocol) in [("auto", "2026-07-28"), ("legacy", "2025-11-25")] {
        let seen = sdk_client(
            &python,
            &url,
            &key,
            mode,
            json!([
                {"name": "pricing-calculator.quote", "arguments": {"lines": [{"sku": "team", "quantity": 24}]}},
                record,
                {"name": "lead-capture.record", "arguments": {"name": "Eve", "email": "eve@example.org",
                                                              "conversation_id": theirs}},
                {"name": "pricing-calculator.quote", "arguments": {"lines": [{"sku": "gold", "quantity": 1}]}},
            ]),
        );
        assert_eq!(seen["protocol"], protocol, "{seen}");
        let tools: Vec<&String> = seen["tools"].as_object().unwrap().keys().collect();
        assert_eq!(
            tools,
            [
                "lead-capture.record",
                "pricing-calculator.price_list",
                "pricing-calculator.quote"
            ]
        );
        assert_eq!(
            seen["tools"]["lead-capture.record"]["required"],
            json!(["name", "conversation_id"])
        );
        let results = seen["results"].as_array().unwrap();
        let quote: Value = serde_json::from_str(results[0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(quote["total"], "270.00", "24 × 12.50, 10% off");
        assert_eq!(results[1]["is_error"], false, "{}", results[1]);
        assert_eq!(
            (&results[2]["is_error"], &results[2]["text"]),
            (
                &json!(true),
                &json!("conversation_id: no such conversation")
            )
        );
        assert_eq!(results[3]["is_error"], true);
        assert!(
            results[3]["text"]
                .as_str()
                .unwrap()
                .contains("no item \"gold\""),
            "{}",
            results[3]
        );
    }
    let leads = owner.get("/api/v1/leads").await;
    assert_eq!(
        leads["total"], 1,
        "one lead for one key, in either revision: {leads}"
    );
    assert_eq!(leads["leads"][0]["conversation_id"], conversation);
    assert_eq!(
        other.get("/api/v1/leads").await["total"],
        0,
        "nothing recorded in the other organization's conversation"
    );

    // Who may call: an owner's or admin's key, through the Host names allowed.
    let http = reqwest::Client::new();
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}});
    let ask = |token: Option<&str>, host: Option<&str>| {
        let mut request = http
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .json(&list);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(host) = host {
            request = request.header("host", host);
        }
        request.send()
    };
    assert_eq!(ask(None, None).await.unwrap().status(), 401);
    assert_eq!(
        ask(Some("stw_not-a-key"), None).await.unwrap().status(),
        401
    );
    let (_, member) = owner
        .post(
            "/api/v1/organizations/members",
            json!({"email": "member@example.org", "role": "member"}),
        )
        .await;
    let password = member["temporary_password"].as_str().unwrap();
    let member = Api::sign_in_as(&serve.base, "member@example.org", password).await;
    assert_eq!(ask(Some(&member.token), None).await.unwrap().status(), 403);
    assert_eq!(
        ask(Some(&key), Some("evil.example.org"))
            .await
            .unwrap()
            .status(),
        403,
        "a Host not allowed (DNS rebinding)"
    );
    let listed = ask(Some(&key), None).await.unwrap();
    assert_eq!(listed.status(), 200);

    // The API's listener does not serve MCP, and steward mcp refuses it.
    let on_api = http
        .post(format!("{}/mcp", serve.base))
        .json(&list)
        .send()
        .await
        .unwrap();
    assert_eq!(on_api.status(), 404);
    let api_port = serve.base.rsplit(':').next().unwrap();
    let mut same = role();
    same.env("STEWARD_LISTEN", format!("127.0.0.1:{api_port}"));
    let refused = run(same.args(["mcp", "--listen", &format!("127.0.0.1:{api_port}")]));
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("never listens on the API's address"),
        "{}",
        text(&refused.stderr)
    );
}

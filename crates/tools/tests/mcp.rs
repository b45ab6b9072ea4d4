//! The MCP client against two servers Steward did not write, run for real by
//! `scripts/mcp-servers`: the reference server (npm
//! `@modelcontextprotocol/server-everything`, protocol 2025-11-25) and a shop
//! written with the official Python SDK (protocol 2026-07-28).

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use steward_domain::ToolCallId;
use steward_outbound::Guard;
use steward_tools::mcp::{McpClient, McpServer};

/// The server at the URL in `variable`, or None (and a note) when it is not running.
fn server(variable: &str, name: &str) -> Option<McpServer> {
    let Ok(url) = std::env::var(variable) else {
        eprintln!("skipped: backend not configured ({variable}: eval \"$(scripts/mcp-servers)\")");
        return None;
    };
    Some(McpServer {
        name: name.into(),
        url,
        headers: vec![("x-steward-test".into(), "1".into())],
        timeout: Duration::from_secs(20),
    })
}

fn input(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

#[tokio::test]
async fn the_reference_server_lists_and_answers_over_2025_11_25() {
    let Some(everything) = server("STEWARD_TEST_MCP_EVERYTHING", "everything") else {
        return;
    };
    let client = McpClient::internal();
    let listed = client.list(&everything).await.unwrap();
    assert_eq!(
        listed.protocol, "2025-11-25",
        "it does not know 2026-07-28: the client fell back"
    );
    let names: Vec<&str> = listed.tools.iter().map(|t| t.name.as_str()).collect();
    for expected in ["echo", "get-sum"] {
        assert!(names.contains(&expected), "{names:?}");
    }
    let echo = listed.tools.iter().find(|t| t.name == "echo").unwrap();
    assert_eq!(echo.server, "everything");
    assert_eq!(echo.input_schema["type"], "object");

    let said = client
        .call(
            &everything,
            "echo",
            &input(json!({"message": "héllo"})),
            ToolCallId::new(),
        )
        .await
        .unwrap();
    assert_eq!(said, "Echo: héllo");
    let sum = client
        .call(
            &everything,
            "get-sum",
            &input(json!({"a": 2, "b": 40})),
            ToolCallId::new(),
        )
        .await
        .unwrap();
    assert!(sum.contains("42"), "{sum}");
    // Input its schema refuses: the server's error, as an error.
    let refused = client
        .call(
            &everything,
            "get-sum",
            &input(json!({"a": "two"})),
            ToolCallId::new(),
        )
        .await
        .unwrap_err();
    assert!(!refused.0.is_empty());
}

#[tokio::test]
async fn the_python_sdk_server_speaks_2026_07_28_and_gets_each_calls_idempotency_key() {
    let Some(shop) = server("STEWARD_TEST_MCP_SHOP", "shop") else {
        return;
    };
    let client = McpClient::internal();
    let listed = client.list(&shop).await.unwrap();
    assert_eq!(listed.protocol, "2026-07-28");
    assert_eq!(
        listed.fresh_for,
        Some(Duration::ZERO),
        "its ttlMs (0) is read"
    );
    let place = listed
        .tools
        .iter()
        .find(|t| t.name == "place_order")
        .unwrap();
    assert_eq!(place.input_schema["required"], json!(["item", "quantity"]));

    let key = ToolCallId::new();
    let order = input(json!({"item": "lamp", "quantity": 2}));
    let first: Value = serde_json::from_str(
        &client
            .call(&shop, "place_order", &order, key)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        first["meta_key"],
        key.to_string(),
        "in _meta as io.steward/idempotency-key"
    );
    assert_eq!(
        first["header_key"],
        key.to_string(),
        "and as Idempotency-Key"
    );
    assert_eq!(first["protocol"], "2026-07-28");
    // The same call again (its result lost on Steward's side): the same order.
    let again: Value = serde_json::from_str(
        &client
            .call(&shop, "place_order", &order, key)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(again["order"], first["order"]);
    assert_eq!(again["orders_placed"], first["orders_placed"]);
    let other: Value = serde_json::from_str(
        &client
            .call(&shop, "place_order", &order, ToolCallId::new())
            .await
            .unwrap(),
    )
    .unwrap();
    assert_ne!(other["order"], first["order"], "another key, another order");

    let failed = client
        .call(
            &shop,
            "out_of_stock",
            &input(json!({"item": "lamp"})),
            ToolCallId::new(),
        )
        .await
        .unwrap_err();
    assert!(failed.0.contains("lamp is out of stock"), "{failed}");
    let unknown = client
        .call(&shop, "no_such_tool", &Map::new(), ToolCallId::new())
        .await
        .unwrap_err();
    assert!(unknown.0.contains("no_such_tool"), "{unknown}");

    // A call dropped at its timeout (as the reply loop drops it) is over at once.
    let started = Instant::now();
    let thirty_seconds = input(json!({"seconds": 30}));
    let slow = client.call(&shop, "slow", &thirty_seconds, ToolCallId::new());
    assert!(
        tokio::time::timeout(Duration::from_secs(1), slow)
            .await
            .is_err()
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn servers_an_organization_names_must_not_be_private_and_down_servers_fail_cleanly() {
    let Some(shop) = server("STEWARD_TEST_MCP_SHOP", "shop") else {
        return;
    };
    let guarded = McpClient::guarded(Guard::new(false));
    for url in [
        shop.url.clone(),
        shop.url.replace("127.0.0.1", "localhost"),
        "http://169.254.169.254/mcp".to_owned(),
        "http://[::1]:39126/mcp".to_owned(),
    ] {
        let private = McpServer {
            url: url.clone(),
            ..shop.clone()
        };
        let refused = guarded.list(&private).await.unwrap_err();
        assert!(
            refused.0.contains("refused") || refused.0.contains("not allowed"),
            "{url}: {refused}"
        );
    }
    let down = McpServer {
        url: "http://127.0.0.1:9/mcp".into(),
        ..shop
    };
    let failed = McpClient::internal().list(&down).await.unwrap_err();
    assert!(
        failed.0.starts_with("shop failed while connecting"),
        "{failed}"
    );
}

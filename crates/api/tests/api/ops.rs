//! Health, readiness, metrics, the OpenAPI document, HTTP hygiene and shutdown.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use steward_testkit::app::{TestApp, spawn_app, spawn_app_on, spawn_app_with};
use steward_testkit::sqlite_store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    let health = app.call(Method::GET, "/health", None, None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body, json!({"status": "ok"}));
    let ready = app.call(Method::GET, "/health/ready", None, None).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.body["checks"]["database"], "ok");
}

#[tokio::test]
async fn readiness_is_503_naming_the_database_when_it_is_down() {
    // Nothing listens on port 1: the store cannot reach its database.
    let store = steward_store_postgres::PostgresStore::connect_lazy(
        "postgres://steward@127.0.0.1:1/steward",
        1,
    )
    .unwrap();
    let (_, guard) = sqlite_store().await.unwrap();
    let app = spawn_app_on(Arc::new(store), guard, |_| {}).await;
    let ready = app.call(Method::GET, "/health/ready", None, None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["checks"]["database"], "failed");
    assert_eq!(ready.body["error"]["code"], "not_ready");
    assert!(
        ready.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("database")
    );
    assert_eq!(
        app.call(Method::GET, "/health", None, None).await.status,
        StatusCode::OK,
        "alive all the same"
    );

    let login = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "a@example.org", "password": "Correct-Horse-9"})),
        )
        .await;
    assert_eq!(login.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(login.code(), "unavailable");
    assert!(
        !login.text.contains("127.0.0.1"),
        "no internal detail in errors"
    );
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;
    app.get(&format!("/api/v1/chatbots/{bot}"), &owner.token)
        .await;
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.text().await.unwrap();
    assert!(text.contains(r#"steward_http_requests_total{method="GET",route="/api/v1/chatbots/{id}",status="200"}"#), "{text}");
    assert!(
        text.contains("steward_http_request_duration_seconds_bucket{"),
        "histograms have buckets"
    );
    assert!(text.contains("steward_db_connections_active"));
    assert!(
        text.lines()
            .any(|l| l.starts_with("steward_db_connections_max ") && !l.ends_with(" 0")),
        "{text}"
    );
    assert!(!text.contains(&bot), "ids never become labels");
    assert!(
        text.contains(r#"steward_queue_depth{kind="respond",state="queued"}"#),
        "queue depth for every kind"
    );
    assert!(text.contains(r#"steward_queue_oldest_age_seconds{kind="deliver"}"#));
    // Rows are PostgreSQL's estimate, 0 until it first analyzes a table.
    assert!(text.contains(r#"steward_table_rows{table="organizations"}"#));
    assert!(text.contains(r#"steward_table_bytes{table="messages"}"#));
    // Their values are checked by the unit tests of `metrics`: the recorder
    // is the process's, shared with tests running beside this one.
    for name in [
        "steward_backup_last_success_timestamp_seconds ",
        "steward_backup_last_failure_timestamp_seconds ",
        "steward_backup_last_size_bytes ",
        "steward_audit_entries_total ",
        "steward_key_operations_total{operation=\"rotate\"} ",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} in {text}"
        );
    }
    let ready = app.call(Method::GET, "/health/ready", None, None).await;
    assert!(
        ready.body["queue_backlog_seconds"].as_f64().is_some(),
        "{}",
        ready.text
    );
}

#[tokio::test]
async fn organization_metrics_open_only_to_the_operators_token() {
    let closed = spawn_app().await;
    let owner = closed.register("ada@example.org", "Acme").await;
    let reply = closed
        .call(
            Method::GET,
            "/metrics/organizations",
            Some(&owner.token),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "no token configured");

    let app = spawn_app_with(|c| {
        c.http.metrics_token = Some(steward_config::Secret::new("scrape-me-0123456789"))
    })
    .await;
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;
    app.post(
        &format!("/api/v1/chatbots/{bot}/messages"),
        &owner.token,
        serde_json::json!({"text": "hello"}),
    )
    .await;
    for token in [
        owner.token.as_str(),
        "scrape-me-012345678",
        "scrape-me-0123456789x",
    ] {
        let reply = app
            .call(Method::GET, "/metrics/organizations", Some(token), None)
            .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{token}");
    }
    let bare = app
        .call(Method::GET, "/metrics/organizations", None, None)
        .await;
    assert_eq!(bare.status, StatusCode::UNAUTHORIZED, "no token at all");
    let reply = app
        .call(
            Method::GET,
            "/metrics/organizations",
            Some("scrape-me-0123456789"),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let org = &owner.org_id;
    for line in [
        format!(r#"steward_org_members{{org_id="{org}",org="Acme"}} 1"#),
        format!(r#"steward_org_week_active_conversations{{org_id="{org}",org="Acme"}} 1"#),
        format!(r#"steward_org_week_messages{{org_id="{org}",org="Acme",role="user"}} 1"#),
    ] {
        assert!(
            reply.text.lines().any(|l| l == line),
            "{line} in {}",
            reply.text
        );
    }
    // The tenant-wide /metrics names no organization.
    let text = app.call(Method::GET, "/metrics", None, None).await.text;
    assert!(
        !text.contains(org.as_str()) && !text.contains("Acme"),
        "{text}"
    );
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_with_its_security() {
    let app = spawn_app().await;
    let doc = app
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(
        doc.body["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let paths = doc.body["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/api/v1/auth/register", vec!["post"]),
        ("/api/v1/auth/login", vec!["post"]),
        ("/api/v1/auth/me", vec!["get"]),
        ("/api/v1/organizations/usage", vec!["get"]),
        ("/api/v1/organizations/billing", vec!["put"]),
        ("/api/v1/organizations/members", vec!["get", "post"]),
        (
            "/api/v1/organizations/members/{user_id}",
            vec!["patch", "delete"],
        ),
        ("/api/v1/chatbots", vec!["get", "post"]),
        ("/api/v1/chatbots/{id}", vec!["get", "patch", "delete"]),
        ("/api/v1/chatbots/{id}/history", vec!["get"]),
        ("/api/v1/chatbots/{id}/history/{message_id}", vec!["get"]),
        ("/api/v1/chatbots/{id}/messages", vec!["post"]),
        ("/api/v1/integrations/available", vec!["get"]),
        ("/api/v1/integrations/enable", vec!["post"]),
        ("/api/v1/integrations/{id}", vec!["delete"]),
        ("/health", vec!["get"]),
        ("/health/ready", vec!["get"]),
        ("/metrics", vec!["get"]),
        ("/metrics/organizations", vec!["get"]),
        ("/api/v1/openapi.json", vec!["get"]),
    ] {
        for method in methods {
            assert!(
                paths.get(path).and_then(|p| p.get(method)).is_some(),
                "{method} {path} is not documented"
            );
        }
    }
    // Every documented route exists: the walk in tenancy.rs calls each one.
}

#[tokio::test]
async fn responses_carry_security_headers_and_hsts_only_behind_tls() {
    let app = spawn_app().await;
    let reply = app.call(Method::GET, "/health", None, None).await;
    assert_eq!(reply.headers["x-content-type-options"], "nosniff");
    assert_eq!(reply.headers["x-frame-options"], "DENY");
    assert_eq!(reply.headers["referrer-policy"], "no-referrer");
    assert!(reply.headers.get("strict-transport-security").is_none());
    let error = app.call(Method::GET, "/api/v1/auth/me", None, None).await;
    assert_eq!(
        error.headers["x-content-type-options"], "nosniff",
        "errors too"
    );

    let tls = spawn_app_with(|c| c.http.behind_tls = true).await;
    let reply = tls.call(Method::GET, "/health", None, None).await;
    assert!(
        reply.headers["strict-transport-security"]
            .to_str()
            .unwrap()
            .contains("max-age=")
    );
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let app =
        spawn_app_with(|c| c.http.cors_allowed_origins = vec!["https://app.example.org".into()])
            .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, app.url("/api/v1/chatbots"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let allowed = preflight("https://app.example.org").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.org"
    );
    let refused = preflight("https://evil.example.com").await.unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    let none = spawn_app().await;
    let reply = none
        .client
        .get(none.url("/health"))
        .header("origin", "https://app.example.org")
        .send()
        .await
        .unwrap();
    assert!(
        reply.headers().get("access-control-allow-origin").is_none(),
        "no origins configured: none allowed"
    );
}

/// Sends a request body in pieces, the last one only after `release` fires.
fn slow_body(
    first: &'static str,
    rest: &'static str,
) -> (reqwest::Body, tokio::sync::oneshot::Sender<()>) {
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let stream = futures::stream::unfold((0, Some(released)), move |(step, released)| async move {
        match step {
            0 => Some((
                Ok::<_, std::io::Error>(first.as_bytes().to_vec()),
                (1, released),
            )),
            1 => {
                let _ = released?.await;
                Some((Ok(rest.as_bytes().to_vec()), (2, None)))
            }
            _ => None,
        }
    });
    (reqwest::Body::wrap_stream(stream), release)
}

#[tokio::test]
async fn a_request_that_outlasts_the_timeout_gets_408_with_the_error_body() {
    let app = spawn_app_with(|c| c.http.request_timeout_secs = 1).await;
    let owner = app.register("ada@example.org", "Acme").await;
    let (body, _never_released) = slow_body("{\"name\": ", "\"late\"}");
    let response = app
        .client
        .post(app.url("/api/v1/chatbots"))
        .bearer_auth(&owner.token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let reply = TestApp::read(response).await;
    assert_eq!(reply.status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(reply.code(), "request_timeout");
    assert_eq!(
        app.get("/api/v1/chatbots", &owner.token).await.body["total"],
        0
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let app = spawn_app_with(|c| c.http.header_read_timeout_secs = 1).await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: steward\r\n")
        .await
        .unwrap();
    let mut buffer = Vec::new();
    // The server must end the connection; bounded so a regression fails instead of hanging.
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut buffer)).await;
    assert!(read.is_ok(), "the connection was still open after 20 s");
    assert!(!String::from_utf8_lossy(&buffer).contains("200 OK"));
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight_and_refuses_new_connections() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let (body, release) = slow_body("{\"name\": ", "\"finished during shutdown\"}");
    let in_flight = app
        .client
        .post(app.url("/api/v1/chatbots"))
        .bearer_auth(&owner.token)
        .header("content-type", "application/json")
        .body(body)
        .send();
    let in_flight = tokio::spawn(in_flight);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.state.requests_in_flight() < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow request never reached the server"
        );
        tokio::task::yield_now().await;
    }
    let addr = app.addr;
    let stopping = tokio::spawn(app.stop());
    // New connections are refused once the listener is closed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still accepting connections"
        );
        tokio::task::yield_now().await;
    }
    release.send(()).unwrap();
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "the request in flight was answered"
    );
    let created: serde_json::Value = response.json().await.unwrap();
    assert_eq!(created["name"], "finished during shutdown");
    stopping.await.unwrap();
}

//! A model provider that cannot run here, replaced by a local server speaking
//! the OpenAI Chat Completions wire format: it echoes the last user message,
//! or fails with a chosen status, counts the calls it gets and keeps the last
//! request (to check what a prompt held).

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

#[derive(Clone, Default)]
pub struct FakeModel {
    calls: Arc<AtomicUsize>,
    /// 0: answer; otherwise fail with this status.
    failing_with: Arc<AtomicU16>,
    /// This many next calls never answer (a provider that hangs).
    hanging: Arc<AtomicUsize>,
    last_request: Arc<std::sync::Mutex<Option<Value>>>,
    /// The base URL, e.g. `http://127.0.0.1:PORT/v1`.
    pub base_url: String,
}

impl FakeModel {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let fake = FakeModel {
            base_url: format!("http://{}/v1", listener.local_addr().unwrap()),
            ..Default::default()
        };
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(complete))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The body of the last request received.
    pub fn last_request(&self) -> Option<Value> {
        self.last_request.lock().unwrap().clone()
    }

    /// The next `calls` calls get no answer at all.
    pub fn hang_next(&self, calls: usize) {
        self.hanging.store(calls, Ordering::SeqCst);
    }

    /// From now on, answer every call with this HTTP status and an error body.
    pub fn fail_with(&self, status: u16) {
        self.failing_with.store(status, Ordering::SeqCst);
    }
}

async fn complete(
    State(fake): State<FakeModel>,
    axum::Json(body): axum::Json<Value>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    fake.calls.fetch_add(1, Ordering::SeqCst);
    *fake.last_request.lock().unwrap() = Some(body.clone());
    if fake
        .hanging
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        std::future::pending::<()>().await;
    }
    let failing = fake.failing_with.load(Ordering::SeqCst);
    if failing != 0 {
        let status = StatusCode::from_u16(failing).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let error = json!({"error": {"message": "scripted failure", "type": "server_error"}});
        return (status, axum::Json(error)).into_response();
    }
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or("");
    let prompt_tokens = messages
        .iter()
        .filter_map(|m| m["content"].as_str())
        .map(|c| c.split_whitespace().count())
        .sum::<usize>();
    let reply = format!("echo: {last_user}");
    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": reply.split_whitespace().count()});
    if body["stream"] == true {
        // The wire format of a streamed completion: one event per word, usage, then [DONE].
        let mut events: String = reply
            .split_inclusive(' ')
            .map(|word| {
                format!(
                    "data: {}\n\n",
                    json!({"choices": [{"index": 0, "delta": {"content": word}}]})
                )
            })
            .collect();
        events.push_str(&format!(
            "data: {}\n\ndata: [DONE]\n\n",
            json!({"choices": [], "usage": usage})
        ));
        return (
            [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
            events,
        )
            .into_response();
    }
    axum::Json(json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
        "usage": usage
    }))
    .into_response()
}

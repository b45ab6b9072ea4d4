//! An embeddings provider that cannot run here, replaced by a local server
//! speaking the OpenAI `/v1/embeddings` wire format. Its vectors are hashed
//! bags of words: texts sharing words point the same way, which is enough to
//! test that vectors are stored, searched and fused, but is no language
//! model (the retrieval quality figures use a real one; see
//! docs/PERFORMANCE.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

pub const DIMENSIONS: usize = 64;

#[derive(Clone, Default)]
pub struct FakeEmbedder {
    calls: Arc<AtomicUsize>,
    failing_with: Arc<AtomicU16>,
    /// e.g. `http://127.0.0.1:PORT/v1`.
    pub base_url: String,
}

impl FakeEmbedder {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let fake = FakeEmbedder {
            base_url: format!("http://{}/v1", listener.local_addr().unwrap()),
            ..Default::default()
        };
        let app = axum::Router::new()
            .route("/v1/embeddings", axum::routing::post(embed))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// From now on, answer with this status (0: answer again).
    pub fn fail_with(&self, status: u16) {
        self.failing_with.store(status, Ordering::SeqCst);
    }
}

/// The hashed bag of words of `text`.
pub fn vector(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; DIMENSIONS];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let hash = word
            .to_lowercase()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
        v[(hash % DIMENSIONS as u64) as usize] += 1.0;
    }
    v
}

async fn embed(
    State(fake): State<FakeEmbedder>,
    axum::Json(body): axum::Json<Value>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    fake.calls.fetch_add(1, Ordering::SeqCst);
    let failing = fake.failing_with.load(Ordering::SeqCst);
    if failing != 0 {
        let status = StatusCode::from_u16(failing).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (
            status,
            axum::Json(json!({"error": {"message": "scripted failure"}})),
        )
            .into_response();
    }
    let texts: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        _ => return (StatusCode::BAD_REQUEST, "input must be text").into_response(),
    };
    // Answered in reverse order, each with its index, as the format allows.
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .rev()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": vector(t)}))
        .collect();
    axum::Json(json!({"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 0, "total_tokens": 0}}))
        .into_response()
}

//! Model providers behind one [`Provider`] trait: Anthropic's Messages API and
//! the OpenAI-compatible Chat Completions API (OpenAI, Ollama, vLLM, llama.cpp
//! servers), and [`Fallback`], which moves to the next provider on transient
//! failures only. Calls are bounded by a timeout and recorded as metrics.
//!
//! Replies can be streamed (`Provider::stream`); the fallback then moves on only
//! before the first piece has been sent. A request may offer tools; a response
//! then may end in tool calls ([`ToolCall`]), whose results go back to the
//! model with the next request ([`ToolStep`]). A provider's `retry-after` is carried
//! in `LlmError::Transient` for the caller to wait on (the respond job does).

mod anthropic;
mod embeddings;
mod fallback;
mod openai;
mod sse;
mod tools;

use std::time::{Duration, Instant};

use async_trait::async_trait;

pub use anthropic::Anthropic;
pub use embeddings::Embeddings;
pub use fallback::Fallback;
pub use openai::OpenAiCompatible;
pub use tools::{ToolCall, ToolResult, ToolSpec, ToolStep};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

#[derive(Clone, Debug)]
pub struct ChatRequest {
    /// None: the provider's configured model.
    pub model: Option<String>,
    pub system: String,
    /// Oldest first; the last is the user's.
    pub messages: Vec<ChatMessage>,
    pub temperature: f64,
    pub max_tokens: u32,
    /// The tools the model may call; none, and it only writes.
    pub tools: Vec<ToolSpec>,
    /// The steps of this reply so far, after the last message: the calls the
    /// model made and their results.
    pub steps: Vec<ToolStep>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ChatResponse {
    /// What the model wrote; may be empty when it called tools.
    pub text: String,
    /// The tools it called: their results are for the next request.
    pub tool_calls: Vec<ToolCall>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub provider: String,
    pub model: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    /// Worth retrying, or trying another provider: connection errors, timeouts,
    /// 429, 5xx, 529, malformed or empty answers.
    #[error("{provider}: {message}")]
    Transient {
        provider: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// Another try would fail the same way: 400, 401, 403, a spending cap.
    #[error("{provider}: {message}")]
    Permanent { provider: String, message: String },
}

impl LlmError {
    pub fn is_transient(&self) -> bool {
        matches!(self, LlmError::Transient { .. })
    }
}

#[async_trait]
pub trait Provider: Send + Sync {
    /// A short name for logs and metrics, e.g. `anthropic`.
    fn name(&self) -> &str;

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError>;

    /// Sends the reply to `sink` piece by piece as the model writes it, then
    /// returns it whole. By default, in one piece once complete.
    async fn stream(
        &self,
        request: &ChatRequest,
        sink: &DeltaSink,
    ) -> Result<ChatResponse, LlmError> {
        let response = self.complete(request).await?;
        sink.send(&response.text);
        Ok(response)
    }
}

/// Where the pieces of a streamed reply go, and whether any has gone yet: a
/// reply that has started reaching the user cannot move to another provider.
pub struct DeltaSink {
    pieces: tokio::sync::mpsc::UnboundedSender<String>,
    started: std::sync::atomic::AtomicBool,
}

impl DeltaSink {
    pub fn new(pieces: tokio::sync::mpsc::UnboundedSender<String>) -> Self {
        Self {
            pieces,
            started: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn send(&self, piece: &str) {
        if !piece.is_empty() {
            self.started
                .store(true, std::sync::atomic::Ordering::SeqCst);
            // Nobody listening any more is fine: the whole reply is still returned.
            let _ = self.pieces.send(piece.to_owned());
        }
    }

    pub fn started(&self) -> bool {
        self.started.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Classifies an HTTP status the way every provider here is retried.
fn status_error(
    provider: &str,
    status: reqwest::StatusCode,
    body: &str,
    retry_after: Option<Duration>,
) -> LlmError {
    let message = format!(
        "HTTP {}: {}",
        status.as_u16(),
        body.chars().take(300).collect::<String>()
    );
    let spending_cap = body.contains("credit balance")
        || body.contains("insufficient_quota")
        || body.contains("billing");
    if (status.as_u16() == 429 && !spending_cap)
        || status.is_server_error()
        || status.as_u16() == 529
    {
        LlmError::Transient {
            provider: provider.to_owned(),
            message,
            retry_after,
        }
    } else {
        LlmError::Permanent {
            provider: provider.to_owned(),
            message,
        }
    }
}

/// Sends a call and returns the answer's JSON; every failure is classified.
/// `request_id_header` names the header the vendor puts its request id in.
async fn send(
    provider: &str,
    call: reqwest::RequestBuilder,
    request_id_header: &str,
) -> Result<serde_json::Value, LlmError> {
    let response = call
        .send()
        .await
        .map_err(|e| transport_error(provider, &e))?;
    let status = response.status();
    let request_id = response
        .headers()
        .get(request_id_header)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let hint = retry_after(response.headers());
    let text = response
        .text()
        .await
        .map_err(|e| transport_error(provider, &e))?;
    tracing::debug!(
        provider,
        ?request_id,
        status = status.as_u16(),
        "model call"
    );
    if !status.is_success() {
        return Err(status_error(provider, status, &text, hint));
    }
    serde_json::from_str(&text).map_err(|_| malformed(provider, "not JSON"))
}

/// Reads a streamed answer, handing each event to `on_event`, which returns
/// true on the provider's end-of-stream event. A stream that breaks, or ends
/// without that event, is a transient error.
async fn read_stream(
    provider: &str,
    call: reqwest::RequestBuilder,
    request_id_header: &str,
    mut on_event: impl FnMut(sse::Event) -> Result<bool, LlmError>,
) -> Result<(), LlmError> {
    use futures::StreamExt;
    let response = call
        .send()
        .await
        .map_err(|e| transport_error(provider, &e))?;
    let status = response.status();
    let request_id = response
        .headers()
        .get(request_id_header)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    tracing::debug!(
        provider,
        ?request_id,
        status = status.as_u16(),
        "model call (streaming)"
    );
    if !status.is_success() {
        let hint = retry_after(response.headers());
        let text = response
            .text()
            .await
            .map_err(|e| transport_error(provider, &e))?;
        return Err(status_error(provider, status, &text, hint));
    }
    let mut parser = sse::Parser::default();
    let mut bytes = response.bytes_stream();
    while let Some(chunk) = bytes.next().await {
        let chunk = chunk.map_err(|e| LlmError::Transient {
            provider: provider.to_owned(),
            message: format!("stream cut: {e}"),
            retry_after: None,
        })?;
        for event in parser.push(&chunk) {
            if on_event(event)? {
                return Ok(());
            }
        }
    }
    Err(LlmError::Transient {
        provider: provider.to_owned(),
        message: "stream ended before it was finished".into(),
        retry_after: None,
    })
}

fn malformed(provider: &str, what: &str) -> LlmError {
    LlmError::Transient {
        provider: provider.to_owned(),
        message: format!("malformed answer: {what}"),
        retry_after: None,
    }
}

/// An answer with neither text nor tool calls is no answer: worth another
/// try, or another provider.
fn answered(provider: &str, text: String, calls: &[ToolCall]) -> Result<String, LlmError> {
    if text.trim().is_empty() && calls.is_empty() {
        return Err(LlmError::Transient {
            provider: provider.to_owned(),
            message: "empty completion".into(),
            retry_after: None,
        });
    }
    Ok(text)
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

fn transport_error(provider: &str, error: &reqwest::Error) -> LlmError {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    LlmError::Transient {
        provider: provider.to_owned(),
        message: format!("{what}: {error}"),
        retry_after: None,
    }
}

/// Runs one call with the request's model (or the provider's default) and
/// records it in the metrics: the part every provider's methods share.
async fn instrumented<Call, Answer>(
    provider: &str,
    default_model: &str,
    request: &ChatRequest,
    call: Call,
) -> Result<ChatResponse, LlmError>
where
    Call: FnOnce(String) -> Answer,
    Answer: std::future::Future<Output = Result<ChatResponse, LlmError>>,
{
    let model = request
        .model
        .clone()
        .unwrap_or_else(|| default_model.to_owned());
    let started = Instant::now();
    let outcome = call(model.clone()).await;
    record(provider, &model, started, &outcome);
    outcome
}

/// Records one call in `steward_llm_*` metrics.
fn record(provider: &str, model: &str, started: Instant, outcome: &Result<ChatResponse, LlmError>) {
    let status = match outcome {
        Ok(_) => "ok",
        Err(LlmError::Transient { .. }) => "transient_error",
        Err(LlmError::Permanent { .. }) => "permanent_error",
    };
    let (provider, model) = (provider.to_owned(), model.to_owned());
    metrics::histogram!("steward_llm_request_duration_seconds", "provider" => provider.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("steward_llm_requests_total", "provider" => provider.clone(), "model" => model.clone(), "status" => status).increment(1);
    if let Ok(response) = outcome {
        metrics::counter!("steward_llm_tokens_total", "provider" => provider.clone(), "model" => model.clone(), "direction" => "input").increment(response.input_tokens);
        metrics::counter!("steward_llm_tokens_total", "provider" => provider, "model" => model, "direction" => "output").increment(response.output_tokens);
    }
}

//! A model provider that cannot run here, replaced by a local server speaking
//! the OpenAI Chat Completions wire format (`/v1/chat/completions`) and
//! Anthropic's Messages format (`/v1/messages`): it echoes the last user
//! message (and the results of the tools it called since), or calls the
//! tools a test scripts, or fails with a chosen status; it counts the calls
//! it gets and keeps the requests (to check what a prompt held).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

/// Tool calls a scripted answer makes: `(name, input JSON text)` each.
type Calls = Vec<(String, String)>;

#[derive(Clone, Default)]
pub struct FakeModel {
    calls: Arc<AtomicUsize>,
    /// 0: answer; otherwise fail with this status.
    failing_with: Arc<AtomicU16>,
    /// The calls (counted from 0) that fail with a 500, once each.
    failing_calls: Arc<std::sync::Mutex<Vec<usize>>>,
    /// The calls (counted from 0) that never get an answer.
    hanging_calls: Arc<std::sync::Mutex<Vec<usize>>>,
    /// This many next calls never answer (a provider that hangs).
    hanging: Arc<AtomicUsize>,
    requests: Arc<std::sync::Mutex<Vec<Value>>>,
    /// Tool calls to make, one answer each, while tools are offered.
    script: Arc<std::sync::Mutex<VecDeque<Calls>>>,
    /// Call this tool every time tools are offered (a model that never stops).
    always: Arc<std::sync::Mutex<Option<(String, String)>>>,
    /// How far apart the pieces of a streamed answer come; zero: all at once.
    pace_ms: Arc<AtomicU64>,
    /// Steward's classifications, answered on the side: not counted among
    /// the calls, nor scripted by them.
    classifications: Arc<std::sync::Mutex<Vec<Value>>>,
    /// This many next classifications never answer.
    hanging_classifications: Arc<AtomicUsize>,
    /// The base URL for OpenAI's format, e.g. `http://127.0.0.1:PORT/v1`.
    pub base_url: String,
}

/// The wire format a request came in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    OpenAi,
    Anthropic,
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
            .route("/v1/messages", axum::routing::post(messages))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }

    /// The base URL for Anthropic's format (its client adds `/v1/messages`).
    pub fn anthropic_base_url(&self) -> String {
        self.base_url.trim_end_matches("/v1").to_owned()
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The body of the last request received.
    pub fn last_request(&self) -> Option<Value> {
        self.requests.lock().unwrap().last().cloned()
    }

    /// The calls that were Steward's memory extractions, not replies.
    pub fn extractions(&self) -> usize {
        self.requests()
            .iter()
            .filter(|request| {
                let system = match &request["system"] {
                    Value::String(system) => system.as_str(),
                    _ => request["messages"][0]["content"].as_str().unwrap_or(""),
                };
                system.starts_with(EXTRACTION_TASK)
            })
            .count()
    }

    /// Steward's classifications received (answered on the side: they are
    /// not among [`calls`](Self::calls), and the call scripts leave them be).
    pub fn classifications(&self) -> usize {
        self.classifications.lock().unwrap().len()
    }

    /// The next `n` classifications get no answer at all.
    pub fn hang_classifications(&self, n: usize) {
        self.hanging_classifications.store(n, Ordering::SeqCst);
    }

    /// Every request received, oldest first.
    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }

    /// The next answers made while tools are offered call these tools, one
    /// list of `(name, input JSON text)` per answer, side by side.
    pub fn call_tools(&self, answers: Vec<Vec<(&str, &str)>>) {
        let owned = answers.into_iter().map(|calls| {
            let calls = calls.into_iter().map(|(n, i)| (n.to_owned(), i.to_owned()));
            calls.collect()
        });
        self.script.lock().unwrap().extend(owned);
    }

    /// From now on, the pieces of a streamed answer come `pace` apart, as a
    /// model writes them.
    pub fn pace(&self, pace: std::time::Duration) {
        self.pace_ms
            .store(pace.as_millis() as u64, Ordering::SeqCst);
    }

    /// From now on, every answer made while tools are offered calls this one.
    pub fn always_call(&self, name: &str, input: &str) {
        *self.always.lock().unwrap() = Some((name.to_owned(), input.to_owned()));
    }

    /// The next `calls` calls get no answer at all.
    pub fn hang_next(&self, calls: usize) {
        self.hanging.store(calls, Ordering::SeqCst);
    }

    /// The `n`-th call from the start (counted from 0) gets no answer at all.
    pub fn hang_call(&self, n: usize) {
        self.hanging_calls.lock().unwrap().push(n);
    }

    /// The `n`-th call from the start (counted from 0) fails with a 500.
    pub fn fail_call(&self, n: usize) {
        self.failing_calls.lock().unwrap().push(n);
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
    answer(fake, body, Format::OpenAi).await
}

async fn messages(
    State(fake): State<FakeModel>,
    axum::Json(body): axum::Json<Value>,
) -> axum::response::Response {
    answer(fake, body, Format::Anthropic).await
}

async fn answer(fake: FakeModel, body: Value, format: Format) -> axum::response::Response {
    use axum::response::IntoResponse;
    let system = match &body["system"] {
        Value::String(system) => system.clone(),
        _ => anthropic::text_of(&body["messages"][0]["content"]).unwrap_or_default(),
    };
    if system.starts_with(CLASSIFY_TASK) {
        return classification(&fake, &body, &system, format).await;
    }
    let call = fake.calls.fetch_add(1, Ordering::SeqCst);
    fake.requests.lock().unwrap().push(body.clone());
    let hangs = fake.hanging_calls.lock().unwrap().contains(&call);
    if hangs
        || fake
            .hanging
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        std::future::pending::<()>().await;
    }
    let mut failing = fake.failing_with.load(Ordering::SeqCst);
    if fake.failing_calls.lock().unwrap().contains(&call) {
        failing = 500;
    }
    if failing != 0 {
        let status = StatusCode::from_u16(failing).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let error = match format {
            Format::OpenAi => {
                json!({"error": {"message": "scripted failure", "type": "server_error"}})
            }
            Format::Anthropic => {
                json!({"type": "error", "error": {"type": "api_error", "message": "scripted failure"}})
            }
        };
        return (status, axum::Json(error)).into_response();
    }
    if format == Format::Anthropic {
        return anthropic::answer(&fake, call, &body);
    }
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let offered = body["tools"]
        .as_array()
        .is_some_and(|tools| !tools.is_empty());
    let calls = match offered {
        true => (fake.script.lock().unwrap().pop_front())
            .or_else(|| fake.always.lock().unwrap().clone().map(|call| vec![call])),
        false => None,
    };
    if let Some(calls) = calls {
        return tool_calls(call, &calls, body["stream"] == true);
    }
    let last_user_at = messages.iter().rposition(|m| m["role"] == "user");
    let last_user = last_user_at
        .and_then(|at| messages[at]["content"].as_str())
        .unwrap_or("");
    // The results of the tools called since, as the model read them.
    let results: Vec<&str> = messages
        .iter()
        .skip(last_user_at.map_or(0, |at| at + 1))
        .filter(|m| m["role"] == "tool")
        .filter_map(|m| m["content"].as_str())
        .collect();
    let prompt_tokens = messages
        .iter()
        .filter_map(|m| m["content"].as_str())
        .map(|c| c.split_whitespace().count())
        .sum::<usize>();
    let system = messages
        .iter()
        .find(|m| m["role"] == "system")
        .and_then(|m| m["content"].as_str())
        .unwrap_or("");
    let reply = match (noted(system, last_user), results.is_empty()) {
        (Some(noted), _) => noted,
        (None, true) => format!("echo: {last_user}"),
        (None, false) => format!("echo: {last_user} | tools: {}", results.join(" | ")),
    };
    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": reply.split_whitespace().count()});
    if body["stream"] == true {
        // The wire format of a streamed completion: one event per word, usage, then [DONE].
        let mut events: Vec<String> = reply
            .split_inclusive(' ')
            .map(|word| {
                format!(
                    "data: {}\n\n",
                    json!({"choices": [{"index": 0, "delta": {"content": word}}]})
                )
            })
            .collect();
        events.push(format!(
            "data: {}\n\ndata: [DONE]\n\n",
            json!({"choices": [], "usage": usage})
        ));
        let pace = std::time::Duration::from_millis(fake.pace_ms.load(Ordering::SeqCst));
        let paced =
            futures::StreamExt::then(futures::stream::iter(events), move |event| async move {
                if !pace.is_zero() {
                    tokio::time::sleep(pace).await;
                }
                Ok::<_, std::convert::Infallible>(event)
            });
        let mut response = axum::body::Body::from_stream(paced).into_response();
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("text/event-stream"),
        );
        return response;
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

/// An answer that calls `calls`, whole or as the stream brings it (each
/// call's input in two pieces, the calls' pieces interleaved).
fn tool_calls(call: usize, calls: &[(String, String)], stream: bool) -> axum::response::Response {
    use axum::response::IntoResponse;
    let id = |index: usize| format!("call_{call}_{index}");
    if !stream {
        let calls: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, (name, input))| json!({"id": id(i), "type": "function", "function": {"name": name, "arguments": input}}))
            .collect();
        return axum::Json(json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "model": "fake",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": calls}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5}
        }))
        .into_response();
    }
    let delta = |calls: Value| {
        format!(
            "data: {}\n\n",
            json!({"choices": [{"index": 0, "delta": {"tool_calls": calls}}]})
        )
    };
    let half = |input: &str| {
        input
            .char_indices()
            .nth(input.chars().count() / 2)
            .map_or(0, |(at, _)| at)
    };
    let mut events = String::new();
    for (i, (name, input)) in calls.iter().enumerate() {
        let start = &input[..half(input)];
        events.push_str(&delta(json!([{"index": i, "id": id(i), "type": "function", "function": {"name": name, "arguments": start}}])));
    }
    for (i, (_, input)) in calls.iter().enumerate() {
        events.push_str(&delta(
            json!([{"index": i, "function": {"arguments": &input[half(input)..]}}]),
        ));
    }
    events.push_str(&format!(
        "data: {}\n\ndata: [DONE]\n\n",
        json!({"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5}})
    ));
    (
        [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
        events,
    )
        .into_response()
}

/// How Steward's memory extraction begins (`steward_pipeline::EXTRACTION_TASK`).
const EXTRACTION_TASK: &str = "Task: note what this person told you about themselves.";

/// A classification's answer, in `format`, kept apart from the calls.
async fn classification(
    fake: &FakeModel,
    body: &Value,
    system: &str,
    format: Format,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    fake.classifications.lock().unwrap().push(body.clone());
    if fake
        .hanging_classifications
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        std::future::pending::<()>().await;
    }
    let said = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| anthropic::text_of(&m["content"]))
        .unwrap_or_default();
    let label = classified(system, &said);
    match format {
        Format::OpenAi => axum::Json(json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": label}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3}
        }))
        .into_response(),
        Format::Anthropic => axum::Json(json!({
            "id": "msg_fake", "type": "message", "role": "assistant", "model": body["model"],
            "content": [{"type": "text", "text": label}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 10, "output_tokens": 3}
        }))
        .into_response(),
    }
}

/// How Steward's classification begins (`steward_pipeline::CLASSIFY_TASK`).
const CLASSIFY_TASK: &str = "Task: name the category of this message.";

/// The answer to Steward's classification: the first `L1 > L2` line of the
/// prompt whose second-level name the message holds (ignoring case), else
/// "Other".
fn classified(system: &str, said: &str) -> String {
    let said = said.to_lowercase();
    system
        .lines()
        .filter_map(|line| line.split_once(" > ").map(|(_, l2)| (line, l2)))
        .find(|(_, l2)| said.contains(&l2.trim().to_lowercase()))
        .map_or_else(|| "Other".to_owned(), |(line, _)| line.to_owned())
}

/// The answer to Steward's memory extraction (its system prompt begins with
/// `steward_pipeline::EXTRACTION_TASK`): each sentence of the person's that
/// begins with "I " or "My ", as a fact; NONE when there is none. Any other
/// request: None.
fn noted(system: &str, said: &str) -> Option<String> {
    if !system.starts_with(EXTRACTION_TASK) {
        return None;
    }
    let facts: Vec<String> = said
        .split(['.', '!', '?', '\n'])
        .map(str::trim)
        .filter(|s| s.starts_with("I ") || s.starts_with("My "))
        .map(|s| format!("- {s}"))
        .collect();
    Some(match facts.is_empty() {
        true => "NONE".into(),
        false => facts.join("\n"),
    })
}

/// The same answers in Anthropic's Messages format.
mod anthropic {
    use axum::response::IntoResponse;
    use serde_json::{Value, json};

    use super::FakeModel;

    /// A content block's text, or a message's text when it is a string.
    pub(super) fn text_of(content: &Value) -> Option<String> {
        match content {
            Value::String(text) => Some(text.clone()),
            Value::Array(blocks) => {
                let texts: Vec<&str> = blocks
                    .iter()
                    .filter(|b| b["type"] == "text")
                    .filter_map(|b| b["text"].as_str())
                    .collect();
                (!texts.is_empty()).then(|| texts.concat())
            }
            _ => None,
        }
    }

    pub(super) fn answer(fake: &FakeModel, call: usize, body: &Value) -> axum::response::Response {
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        let offered = body["tools"]
            .as_array()
            .is_some_and(|tools| !tools.is_empty());
        let scripted = match offered {
            true => (fake.script.lock().unwrap().pop_front())
                .or_else(|| fake.always.lock().unwrap().clone().map(|call| vec![call])),
            false => None,
        };
        let stream = body["stream"] == true;
        let blocks: Vec<Value> = match scripted {
            Some(calls) => calls
                .iter()
                .enumerate()
                .map(|(i, (name, input))| {
                    let input: Value = serde_json::from_str(input).unwrap_or(json!({}));
                    json!({"type": "tool_use", "id": format!("toolu_{call}_{i}"), "name": name, "input": input})
                })
                .collect(),
            None => {
                // The last message a person wrote (not one carrying tool results).
                let asked_at = messages
                    .iter()
                    .rposition(|m| m["role"] == "user" && text_of(&m["content"]).is_some());
                let asked = asked_at
                    .and_then(|at| text_of(&messages[at]["content"]))
                    .unwrap_or_default();
                let results: Vec<String> = messages
                    .iter()
                    .skip(asked_at.map_or(0, |at| at + 1))
                    .filter_map(|m| m["content"].as_array())
                    .flatten()
                    .filter(|b| b["type"] == "tool_result")
                    .map(|b| text_of(&b["content"]).unwrap_or_default())
                    .collect();
                let system = text_of(&body["system"]).unwrap_or_default();
                let reply = match (super::noted(&system, &asked), results.is_empty()) {
                    (Some(noted), _) => noted,
                    (None, true) => format!("echo: {asked}"),
                    (None, false) => format!("echo: {asked} | tools: {}", results.join(" | ")),
                };
                vec![json!({"type": "text", "text": reply})]
            }
        };
        let stop = match blocks.iter().any(|b| b["type"] == "tool_use") {
            true => "tool_use",
            false => "end_turn",
        };
        let usage = json!({"input_tokens": 10, "output_tokens": 5});
        if !stream {
            return axum::Json(json!({
                "id": "msg_fake", "type": "message", "role": "assistant", "model": body["model"],
                "content": blocks, "stop_reason": stop, "usage": usage
            }))
            .into_response();
        }
        // The documented event stream: each block started, its pieces as
        // deltas (a tool's input in two halves), stopped; then the stop reason.
        let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
        let mut events = event(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message", "role": "assistant",
                   "content": [], "model": body["model"], "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        );
        for (index, block) in blocks.iter().enumerate() {
            let (start, deltas) = if block["type"] == "tool_use" {
                let input = block["input"].to_string();
                let half = input.len() / 2;
                let start = json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}});
                let pieces = [&input[..half], &input[half..]]
                    .map(|piece| json!({"type": "input_json_delta", "partial_json": piece}));
                (start, pieces.to_vec())
            } else {
                let text = block["text"].as_str().unwrap_or_default();
                let words = text
                    .split_inclusive(' ')
                    .map(|word| json!({"type": "text_delta", "text": word}));
                (json!({"type": "text", "text": ""}), words.collect())
            };
            events.push_str(&event(
                "content_block_start",
                json!({"type": "content_block_start", "index": index, "content_block": start}),
            ));
            for delta in deltas {
                events.push_str(&event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": index, "delta": delta}),
                ));
            }
            events.push_str(&event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": index}),
            ));
        }
        events.push_str(&event(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 5}}),
        ));
        events.push_str(&event("message_stop", json!({"type": "message_stop"})));
        (
            [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
            events,
        )
            .into_response()
    }
}

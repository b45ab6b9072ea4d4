//! The providers against a local server speaking each API's documented wire
//! format, scripted per test and recording what it receives.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use steward_llm::{
    Anthropic, ChatMessage, ChatRequest, Fallback, LlmError, OpenAiCompatible, Provider, Role,
};

/// One scripted answer: a status, a body, extra headers, or silence; or an
/// event stream in pieces, optionally broken off after them.
#[derive(Clone)]
enum Answer {
    Reply(u16, String, Vec<(&'static str, &'static str)>),
    Hang,
    Stream(Vec<&'static str>, bool),
}

#[derive(Clone, Default)]
struct Fake {
    script: Arc<Mutex<VecDeque<Answer>>>,
    received: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
}

async fn answer(State(fake): State<Fake>, headers: HeaderMap, body: String) -> Response {
    fake.received
        .lock()
        .unwrap()
        .push((headers, serde_json::from_str(&body).unwrap_or(Value::Null)));
    let next = fake
        .script
        .lock()
        .unwrap()
        .pop_front()
        .expect("the test scripted an answer");
    match next {
        Answer::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        Answer::Stream(pieces, cut) => {
            let mut chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                pieces.iter().map(|p| Ok(p.as_bytes().to_vec())).collect();
            if cut {
                chunks.push(Err(std::io::Error::other("connection lost")));
            }
            // The break comes a moment later, after the pieces before it are on the wire.
            let chunks =
                futures::StreamExt::then(futures::stream::iter(chunks), |chunk| async move {
                    if chunk.is_err() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    chunk
                });
            let mut response = axum::body::Body::from_stream(chunks).into_response();
            response
                .headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            response
        }
        Answer::Reply(status, body, headers) => {
            let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
            response
                .headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            for (name, value) in headers {
                response.headers_mut().insert(name, value.parse().unwrap());
            }
            response
        }
    }
}

/// Starts the fake on port 0; returns its base URL.
async fn serve(answers: Vec<Answer>) -> (String, Fake) {
    let fake = Fake {
        script: Arc::new(Mutex::new(answers.into())),
        ..Default::default()
    };
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(answer))
        .route("/v1/messages", axum::routing::post(answer))
        .route("/v1/embeddings", axum::routing::post(answer))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), fake)
}

fn openai_reply(text: &str) -> Answer {
    let body = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-test",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 21, "completion_tokens": 7, "total_tokens": 28}
    });
    Answer::Reply(
        200,
        body.to_string(),
        vec![("x-request-id", "req_openai_1")],
    )
}

fn anthropic_reply(text: &str) -> Answer {
    let body = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn", "usage": {"input_tokens": 30, "output_tokens": 9}
    });
    Answer::Reply(
        200,
        body.to_string(),
        vec![("request-id", "req_anthropic_1")],
    )
}

fn error(status: u16, body: Value) -> Answer {
    Answer::Reply(status, body.to_string(), vec![])
}

fn request() -> ChatRequest {
    ChatRequest {
        model: None,
        system: "Be brief.".into(),
        messages: vec![
            ChatMessage {
                role: Role::User,
                content: "Hi".into(),
            },
            ChatMessage {
                role: Role::Assistant,
                content: "Hello!".into(),
            },
            ChatMessage {
                role: Role::User,
                content: "Price?".into(),
            },
            ChatMessage {
                role: Role::User,
                content: "In euros.".into(),
            },
        ],
        temperature: 1.5,
        max_tokens: 512,
        tools: Vec::new(),
        steps: Vec::new(),
    }
}

fn openai(base: &str) -> OpenAiCompatible {
    OpenAiCompatible::new(
        reqwest::Client::new(),
        &format!("{base}/v1"),
        Some("sk-test".into()),
        "gpt-test",
        Duration::from_millis(500),
    )
}

fn anthropic(base: &str) -> Anthropic {
    Anthropic::new(
        reqwest::Client::new(),
        base,
        "sk-ant-test".into(),
        "claude-test",
        Duration::from_millis(500),
    )
}

#[tokio::test]
async fn openai_compatible_replies_with_usage_and_sends_the_documented_request() {
    let (base, fake) = serve(vec![openai_reply("Ten euros.")]).await;
    let response = openai(&base).complete(&request()).await.unwrap();
    assert_eq!(
        (
            response.text.as_str(),
            response.input_tokens,
            response.output_tokens
        ),
        ("Ten euros.", 21, 7)
    );
    assert_eq!(response.model, "gpt-test");
    let received = fake.received.lock().unwrap();
    let (headers, body) = &received[0];
    assert_eq!(headers["authorization"], "Bearer sk-test");
    assert_eq!(body["model"], "gpt-test");
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(body["messages"].as_array().unwrap().len(), 5);
    assert_eq!(body["temperature"], 1.5);
    assert_eq!(body["max_tokens"], 512);
}

#[tokio::test]
async fn anthropic_replies_with_usage_and_sends_the_documented_request() {
    let (base, fake) = serve(vec![anthropic_reply("Ten euros.")]).await;
    let response = anthropic(&base).complete(&request()).await.unwrap();
    assert_eq!(
        (
            response.text.as_str(),
            response.input_tokens,
            response.output_tokens
        ),
        ("Ten euros.", 30, 9)
    );
    let received = fake.received.lock().unwrap();
    let (headers, body) = &received[0];
    assert_eq!(headers["x-api-key"], "sk-ant-test");
    assert_eq!(headers["anthropic-version"], "2023-06-01");
    assert_eq!(body["system"], "Be brief.");
    assert_eq!(body["temperature"], 1.0, "clamped to Anthropic's range");
    assert_eq!(
        body["messages"].as_array().unwrap().len(),
        3,
        "consecutive user turns joined"
    );
    assert_eq!(body["messages"][2]["content"], "Price?\n\nIn euros.");
}

#[tokio::test]
async fn rate_limits_overload_and_server_errors_are_transient() {
    let (base, _) = serve(vec![
        Answer::Reply(
            429,
            json!({"error": {"type": "rate_limit_error"}}).to_string(),
            vec![("retry-after", "7")],
        ),
        error(500, json!({"error": "boom"})),
        error(
            529,
            json!({"type": "error", "error": {"type": "overloaded_error"}}),
        ),
    ])
    .await;
    let provider = anthropic(&base);
    match provider.complete(&request()).await {
        Err(LlmError::Transient { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)))
        }
        other => panic!("429: {other:?}"),
    }
    assert!(
        provider
            .complete(&request())
            .await
            .unwrap_err()
            .is_transient(),
        "500"
    );
    assert!(
        provider
            .complete(&request())
            .await
            .unwrap_err()
            .is_transient(),
        "529"
    );
}

#[tokio::test]
async fn bad_requests_refused_keys_and_spending_caps_are_permanent() {
    let (base, _) = serve(vec![
        error(400, json!({"error": {"message": "bad model"}})),
        error(401, json!({"error": {"message": "invalid api key"}})),
        error(429, json!({"error": {"code": "insufficient_quota", "message": "You exceeded your current quota"}})),
    ])
    .await;
    let provider = openai(&base);
    for what in ["400", "401", "spending cap"] {
        assert!(
            !provider
                .complete(&request())
                .await
                .unwrap_err()
                .is_transient(),
            "{what}"
        );
    }
}

#[tokio::test]
async fn silence_malformed_json_and_empty_completions_are_transient() {
    let (base, _) = serve(vec![
        Answer::Hang,
        Answer::Reply(200, "{not json".into(), vec![]),
        openai_reply("  "),
    ])
    .await;
    let provider = openai(&base);
    let timeout = provider.complete(&request()).await.unwrap_err();
    assert!(
        timeout.is_transient() && timeout.to_string().contains("timed out"),
        "{timeout}"
    );
    let malformed = provider.complete(&request()).await.unwrap_err();
    assert!(
        malformed.is_transient() && malformed.to_string().contains("malformed"),
        "{malformed}"
    );
    let empty = provider.complete(&request()).await.unwrap_err();
    assert!(
        empty.is_transient() && empty.to_string().contains("empty"),
        "{empty}"
    );
}

#[tokio::test]
async fn fallback_moves_on_for_transient_failures_only() {
    let (primary_base, primary_fake) =
        serve(vec![error(529, json!({})), error(401, json!({}))]).await;
    let (backup_base, backup_fake) = serve(vec![openai_reply("from the fallback")]).await;
    let chain = Fallback::new(vec![
        Arc::new(anthropic(&primary_base)),
        Arc::new(openai(&backup_base)),
    ]);
    let answer = chain.complete(&request()).await.unwrap();
    assert_eq!(
        (answer.text.as_str(), answer.provider.as_str()),
        ("from the fallback", "openai")
    );

    let refused = chain.complete(&request()).await.unwrap_err();
    assert!(!refused.is_transient(), "a 401 does not fall back");
    assert_eq!(primary_fake.received.lock().unwrap().len(), 2);
    assert_eq!(
        backup_fake.received.lock().unwrap().len(),
        1,
        "the fallback was not called for the 401"
    );

    // Nothing listening at all: connection refused is transient too.
    let unreachable = Fallback::new(vec![
        Arc::new(openai("http://127.0.0.1:1")),
        Arc::new(openai(&backup_base)),
    ]);
    backup_fake
        .script
        .lock()
        .unwrap()
        .push_back(openai_reply("still here"));
    assert_eq!(
        unreachable.complete(&request()).await.unwrap().text,
        "still here"
    );
}

// --- Streaming ---

use steward_llm::DeltaSink;

/// Streams through `provider`, returning its outcome and the pieces it sent.
async fn stream_through(
    provider: &dyn Provider,
) -> (Result<steward_llm::ChatResponse, LlmError>, Vec<String>) {
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let sink = DeltaSink::new(sender);
    let outcome = provider.stream(&request(), &sink).await;
    drop(sink);
    let mut pieces = Vec::new();
    while let Some(piece) = receiver.recv().await {
        pieces.push(piece);
    }
    (outcome, pieces)
}

#[tokio::test]
async fn openai_streams_its_pieces_in_order_with_usage() {
    let (base, fake) = serve(vec![Answer::Stream(
        vec![
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"Ten \"}}]}\n",
            "\ndata: {\"choices\":[{\"delta\":{\"content\":\"eur",
            "os.\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":21,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n",
        ],
        false,
    )])
    .await;
    let (outcome, pieces) = stream_through(&openai(&base)).await;
    let response = outcome.unwrap();
    assert_eq!(pieces, ["Ten ", "euros."]);
    assert_eq!(
        (
            response.text.as_str(),
            response.input_tokens,
            response.output_tokens
        ),
        ("Ten euros.", 21, 2)
    );
    let body = &fake.received.lock().unwrap()[0].1;
    assert_eq!(
        (
            body["stream"].clone(),
            body["stream_options"]["include_usage"].clone()
        ),
        (json!(true), json!(true))
    );
}

#[tokio::test]
async fn anthropic_streams_its_pieces_in_order_with_usage() {
    let (base, _) = serve(vec![Answer::Stream(
        vec![
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":30,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Ten \"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"euros.\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":9}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        ],
        false,
    )])
    .await;
    let (outcome, pieces) = stream_through(&anthropic(&base)).await;
    let response = outcome.unwrap();
    assert_eq!(pieces, ["Ten ", "euros."]);
    assert_eq!(
        (
            response.text.as_str(),
            response.input_tokens,
            response.output_tokens
        ),
        ("Ten euros.", 30, 9)
    );
}

#[tokio::test]
async fn a_stream_cut_mid_way_is_transient_and_does_not_move_to_the_fallback() {
    let (primary, _) = serve(vec![Answer::Stream(
        vec!["data: {\"choices\":[{\"delta\":{\"content\":\"Ten \"}}]}\n\n"],
        true,
    )])
    .await;
    let (backup, backup_fake) = serve(vec![]).await;
    let chain = Fallback::new(vec![Arc::new(openai(&primary)), Arc::new(openai(&backup))]);
    let (outcome, pieces) = stream_through(&chain).await;
    let error = outcome.unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert_eq!(pieces, ["Ten "], "the user saw the first piece");
    assert!(
        backup_fake.received.lock().unwrap().is_empty(),
        "no second provider after words reached the user"
    );

    // A stream that simply stops without its end is cut too.
    let (stops, _) = serve(vec![Answer::Stream(
        vec!["data: {\"choices\":[{\"delta\":{\"content\":\"Te\"}}]}\n\n"],
        false,
    )])
    .await;
    let (outcome, _) = stream_through(&openai(&stops)).await;
    assert!(outcome.unwrap_err().to_string().contains("ended before"));
}

#[tokio::test]
async fn a_stream_that_fails_before_its_first_piece_moves_to_the_fallback() {
    let (primary, _) = serve(vec![error(
        529,
        json!({"type": "error", "error": {"type": "overloaded_error"}}),
    )])
    .await;
    let (backup, _) = serve(vec![Answer::Stream(
        vec!["data: {\"choices\":[{\"delta\":{\"content\":\"from the fallback\"}}]}\n\ndata: [DONE]\n\n"],
        false,
    )])
    .await;
    let chain = Fallback::new(vec![
        Arc::new(anthropic(&primary)),
        Arc::new(openai(&backup)),
    ]);
    let (outcome, pieces) = stream_through(&chain).await;
    assert_eq!(outcome.unwrap().text, "from the fallback");
    assert_eq!(pieces, ["from the fallback"]);

    let (overloaded, _) = serve(vec![Answer::Stream(
        vec!["event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"],
        false,
    )])
    .await;
    let (outcome, _) = stream_through(&anthropic(&overloaded)).await;
    assert!(
        outcome.unwrap_err().is_transient(),
        "an overloaded event mid-stream is transient"
    );
}

fn embeddings(base: &str) -> steward_llm::Embeddings {
    steward_llm::Embeddings::new(
        reqwest::Client::new(),
        &format!("{base}/v1"),
        Some("key-e".into()),
        "embed-test",
        3,
        2,
        Duration::from_secs(5),
    )
}

fn vectors(items: Value) -> Answer {
    Answer::Reply(
        200,
        json!({"object": "list", "data": items}).to_string(),
        vec![],
    )
}

#[tokio::test]
async fn embeddings_come_back_in_order_in_batches_and_bad_answers_are_refused() {
    let (base, fake) = serve(vec![
        // Items answered out of order, named by index.
        vectors(
            json!([{"index": 1, "embedding": [0, 1, 0]}, {"index": 0, "embedding": [1, 0, 0]}]),
        ),
        vectors(json!([{"index": 0, "embedding": [0, 0, 1]}])),
    ])
    .await;
    let texts: Vec<String> = ["a", "b", "c"].iter().map(|t| t.to_string()).collect();
    let got = embeddings(&base).embed(&texts).await.unwrap();
    assert_eq!(
        got,
        vec![
            vec![1.0, 0.0, 0.0],
            vec![0.0, 1.0, 0.0],
            vec![0.0, 0.0, 1.0]
        ]
    );
    let received = fake.received.lock().unwrap().clone();
    assert_eq!(received.len(), 2, "batches of two");
    assert_eq!(
        received[0].1,
        json!({"model": "embed-test", "input": ["a", "b"]})
    );
    assert_eq!(received[0].0["authorization"], "Bearer key-e");

    for (answer, transient) in [
        (vectors(json!([{"index": 0, "embedding": [1, 0]}])), false), // wrong length: configuration
        (vectors(json!([])), true),                                   // too few
        (vectors(json!([{"index": 5, "embedding": [1, 0, 0]}])), true), // index out of range
        (
            vectors(json!([{"index": 0, "embedding": ["x", 0, 0]}])),
            true,
        ),
        (Answer::Reply(200, "not json".into(), vec![]), true),
        (error(429, json!({"error": {"message": "slow down"}})), true),
        (error(401, json!({"error": {"message": "bad key"}})), false),
    ] {
        let (base, _) = serve(vec![answer]).await;
        let failed = embeddings(&base)
            .embed(&["a".to_string()])
            .await
            .unwrap_err();
        assert_eq!(failed.is_transient(), transient, "{failed}");
    }
}

// --- Tool calls ---

use steward_llm::{ToolCall, ToolResult, ToolSpec, ToolStep};

/// The request of a reply's second step: one tool offered, and the first
/// step's call (with input that was not JSON) and its error result.
fn request_with_tools() -> ChatRequest {
    let schema =
        json!({"type": "object", "properties": {"sku": {"type": "string"}}, "required": ["sku"]});
    ChatRequest {
        tools: vec![ToolSpec {
            name: "quote".into(),
            description: "Quotes a price.".into(),
            input_schema: schema,
        }],
        steps: vec![ToolStep {
            text: "Let me check.".into(),
            calls: vec![
                ToolCall::from_json_text("call_1".into(), "quote".into(), r#"{"sku":"A1"}"#),
                ToolCall::from_json_text("call_2".into(), "quote".into(), r#"{"sku":"#),
            ],
            results: vec![
                ToolResult {
                    call_id: "call_1".into(),
                    content: "10 EUR".into(),
                    is_error: false,
                },
                ToolResult {
                    call_id: "call_2".into(),
                    content: "the input is not a JSON object".into(),
                    is_error: true,
                },
            ],
        }],
        ..request()
    }
}

fn inputs(calls: &[ToolCall]) -> Vec<(String, String, String)> {
    calls
        .iter()
        .map(|c| (c.id.clone(), c.name.clone(), c.input_text()))
        .collect()
}

#[tokio::test]
async fn openai_sends_tools_and_steps_and_reads_parallel_calls() {
    let body = json!({
        "id": "chatcmpl-2", "object": "chat.completion", "model": "gpt-test",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_3", "type": "function", "function": {"name": "quote", "arguments": "{\"sku\":\"B2\"}"}},
            {"id": "call_4", "type": "function", "function": {"name": "quote", "arguments": "{\"sku\":"}}
        ]}}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 12}
    });
    let (base, fake) = serve(vec![Answer::Reply(200, body.to_string(), vec![])]).await;
    let response = openai(&base).complete(&request_with_tools()).await.unwrap();
    assert_eq!(response.text, "");
    assert_eq!(
        inputs(&response.tool_calls),
        [
            ("call_3".into(), "quote".into(), r#"{"sku":"B2"}"#.into()),
            ("call_4".into(), "quote".into(), r#"{"sku":"#.into()),
        ]
    );
    assert!(
        response.tool_calls[1].input.is_err(),
        "malformed input is kept as written"
    );

    let sent = &fake.received.lock().unwrap()[0].1;
    assert_eq!(
        sent["tools"],
        json!([{"type": "function", "function": {"name": "quote", "description": "Quotes a price.",
            "parameters": {"type": "object", "properties": {"sku": {"type": "string"}}, "required": ["sku"]}}}])
    );
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(
        messages.len(),
        8,
        "system, four turns, the step's call and two results"
    );
    assert_eq!(
        messages[5],
        json!({"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "quote", "arguments": "{\"sku\":\"A1\"}"}},
            {"id": "call_2", "type": "function", "function": {"name": "quote", "arguments": "{\"sku\":"}}
        ]})
    );
    assert_eq!(
        messages[6],
        json!({"role": "tool", "tool_call_id": "call_1", "content": "10 EUR"})
    );
    assert_eq!(
        messages[7],
        json!({"role": "tool", "tool_call_id": "call_2", "content": "error: the input is not a JSON object"})
    );
}

#[tokio::test]
async fn anthropic_sends_tools_and_steps_and_reads_tool_use_blocks() {
    let body = json!({
        "id": "msg_2", "type": "message", "role": "assistant", "model": "claude-test",
        "content": [
            {"type": "text", "text": "Checking both."},
            {"type": "tool_use", "id": "toolu_1", "name": "quote", "input": {"sku": "B2"}},
            {"type": "tool_use", "id": "toolu_2", "name": "quote", "input": {}}
        ],
        "stop_reason": "tool_use", "usage": {"input_tokens": 50, "output_tokens": 20}
    });
    let (base, fake) = serve(vec![Answer::Reply(200, body.to_string(), vec![])]).await;
    let response = anthropic(&base)
        .complete(&request_with_tools())
        .await
        .unwrap();
    assert_eq!(response.text, "Checking both.");
    assert_eq!(
        inputs(&response.tool_calls),
        [
            ("toolu_1".into(), "quote".into(), r#"{"sku":"B2"}"#.into()),
            ("toolu_2".into(), "quote".into(), "{}".into()),
        ]
    );

    let sent = &fake.received.lock().unwrap()[0].1;
    assert_eq!(sent["tools"][0]["name"], "quote");
    assert_eq!(sent["tools"][0]["input_schema"]["required"], json!(["sku"]));
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(
        messages.len(),
        5,
        "three alternating turns, then the step's two"
    );
    assert_eq!(
        messages[3],
        json!({"role": "assistant", "content": [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "call_1", "name": "quote", "input": {"sku": "A1"}},
            {"type": "tool_use", "id": "call_2", "name": "quote", "input": {}}
        ]})
    );
    assert_eq!(
        messages[4],
        json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "10 EUR", "is_error": false},
            {"type": "tool_result", "tool_use_id": "call_2", "content": "the input is not a JSON object", "is_error": true}
        ]})
    );
}

#[tokio::test]
async fn openai_streams_tool_calls_by_index() {
    let (base, _) = serve(vec![Answer::Stream(
        vec![
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"One moment. \"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"quote\",\"arguments\":\"\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"lead\",\"arguments\":\"{\\\"na\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"sku\\\":\\\"A1\\\"}\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"me\\\":\\\"Ada\\\"}\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":15}}\n\ndata: [DONE]\n\n",
        ],
        false,
    )])
    .await;
    let (outcome, pieces) = stream_through(&openai(&base)).await;
    let response = outcome.unwrap();
    assert_eq!(pieces, ["One moment. "]);
    assert_eq!(
        inputs(&response.tool_calls),
        [
            ("call_a".into(), "quote".into(), r#"{"sku":"A1"}"#.into()),
            ("call_b".into(), "lead".into(), r#"{"name":"Ada"}"#.into()),
        ]
    );
    assert_eq!((response.input_tokens, response.output_tokens), (30, 15));
}

#[tokio::test]
async fn anthropic_streams_tool_use_with_input_json_deltas() {
    let (base, _) = serve(vec![Answer::Stream(
        vec![
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":60,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Checking.\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_a\",\"name\":\"quote\",\"input\":{}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"sku\\\": \\\"A\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"1\\\"}\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_b\",\"name\":\"ping\",\"input\":{}}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":25}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        ],
        false,
    )])
    .await;
    let (outcome, pieces) = stream_through(&anthropic(&base)).await;
    let response = outcome.unwrap();
    assert_eq!(pieces, ["Checking."]);
    assert_eq!(
        inputs(&response.tool_calls),
        [
            ("toolu_a".into(), "quote".into(), r#"{"sku":"A1"}"#.into()),
            ("toolu_b".into(), "ping".into(), "{}".into()),
        ]
    );
    assert_eq!((response.input_tokens, response.output_tokens), (60, 25));
}

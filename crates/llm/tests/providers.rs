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

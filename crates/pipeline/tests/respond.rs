//! A message sent through the API is answered by a worker, end to end, against
//! a local server speaking the OpenAI wire format. SQLite, or PostgreSQL when
//! STEWARD_TEST_POSTGRES_URL is set.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use steward_domain::JobKind;
use steward_jobs::{Worker, WorkerSettings};
use steward_llm::OpenAiCompatible;
use steward_pipeline::{APOLOGY_REPLY, NO_MODEL_REPLY, OVER_LIMIT_REPLY, Respond, Responder};
use steward_testkit::app::{Session, TestApp, spawn_app_with};
use steward_testkit::model::FakeModel;
use tokio::sync::oneshot;

#[path = "respond/export.rs"]
mod export;
#[path = "respond/memory.rs"]
mod memory;
#[path = "respond/patterns.rs"]
mod patterns;
#[path = "respond/tools.rs"]
mod tools;

struct Running {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// A worker answering `respond` jobs of `app` with `responder`.
fn start_worker(app: &TestApp, responder: Responder) -> Running {
    start_worker_with(app, responder, |_| {})
}

/// The same, with the `Respond` handler adjusted first (tools, limits).
fn start_worker_with(
    app: &TestApp,
    responder: Responder,
    adjust: impl FnOnce(&mut Respond),
) -> Running {
    let mut respond = Respond {
        store: app.store.clone(),
        responder,
        tiers: app.state.config.tiers.clone(),
        history_turns: 20,
        max_tokens: 256,
        deliver_attempts: 3,
        retriever: steward_knowledge::Retriever::new(app.store.clone(), None),
        passages: 5,
        toolbox: None,
        tool_limits: Default::default(),
        memory: None,
        classify_attempts: None,
    };
    adjust(&mut respond);
    // A reply that remembers has its `memory` jobs run by the same model.
    let learn = match (&respond.memory, &respond.responder) {
        (Some(remembering), Responder::Model(provider)) => Some(steward_pipeline::Learn {
            store: app.store.clone(),
            provider: provider.clone(),
            memory: remembering.memory.clone(),
            tiers: app.state.config.tiers.clone(),
            max_facts: 200,
        }),
        _ => None,
    };
    // A reply that labels its message has its `classify` jobs run too.
    let classify = respond
        .classify_attempts
        .map(|_| steward_pipeline::Classify {
            store: app.store.clone(),
            provider: match &respond.responder {
                Responder::Model(provider) => Some(provider.clone()),
                _ => None,
            },
            tiers: app.state.config.tiers.clone(),
        });
    let settings = WorkerSettings {
        concurrency: 4,
        kind_concurrency: HashMap::new(),
        org_share: WorkerSettings::fair_share(4).0,
        reply_reserve: WorkerSettings::fair_share(4).1,
        lease: Duration::from_secs(10),
        backoff_base: Duration::from_millis(5),
        poll_interval: Duration::from_millis(10),
        shutdown_grace: Duration::from_secs(5),
    };
    let mut worker = Worker::new(app.store.clone(), settings).handle(JobKind::Respond, respond);
    if let Some(learn) = learn {
        worker = worker.handle(JobKind::Memory, learn);
    }
    if let Some(classify) = classify {
        worker = worker.handle(JobKind::Classify, classify);
    }
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    Running { stop, task }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

fn model(fake: &FakeModel) -> Responder {
    Responder::Model(Arc::new(OpenAiCompatible::new(
        reqwest::Client::new(),
        &fake.base_url,
        None,
        "fake-model",
        Duration::from_secs(5),
    )))
}

async fn send(
    app: &TestApp,
    session: &Session,
    bot: &str,
    text: &str,
    conversation: Option<&str>,
) -> (String, String) {
    let mut body = json!({ "text": text });
    if let Some(conversation) = conversation {
        body["conversation_id"] = json!(conversation);
    }
    let reply = app
        .post(
            &format!("/api/v1/chatbots/{bot}/messages"),
            &session.token,
            body,
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    (
        reply.body["conversation_id"].as_str().unwrap().to_owned(),
        reply.body["message_id"].as_str().unwrap().to_owned(),
    )
}

/// The conversation's messages, oldest first, once its last user message is answered.
async fn answered(
    app: &TestApp,
    session: &Session,
    bot: &str,
    last_user_message: &str,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let page = app
            .get(
                &format!("/api/v1/chatbots/{bot}/history?limit=200"),
                &session.token,
            )
            .await;
        let mut messages = page.body["messages"].as_array().unwrap().clone();
        messages.reverse();
        if messages
            .iter()
            .any(|m| m["role"] == "assistant" && m["answers"] == last_user_message)
        {
            return messages;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reply to {last_user_message}: {messages:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_answered_and_its_tokens_counted() {
    let app = spawn_app_with(|_| {}).await;
    let fake = FakeModel::start().await;
    let worker = start_worker(&app, model(&fake));
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;

    let (_, message) = send(&app, &owner, &bot, "hello there", None).await;
    let messages = answered(&app, &owner, &bot, &message).await;
    worker.stop().await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1]["text"], "echo: hello there");
    assert_eq!(fake.calls(), 1);
    let usage = app.get("/api/v1/organizations/usage", &owner.token).await;
    assert!(
        usage.body["tokens_used"].as_i64().unwrap() > 0,
        "the reply's tokens are counted"
    );
    assert_eq!(usage.body["messages_used"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_answered_in_order_with_none_left_and_none_twice() {
    let app = spawn_app_with(|_| {}).await;
    let fake = FakeModel::start().await;
    let worker = start_worker(&app, model(&fake));
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;

    let (conversation, first) = send(&app, &owner, &bot, "message 0", None).await;
    let mut sent = vec![first];
    for i in 1..10 {
        sent.push(
            send(
                &app,
                &owner,
                &bot,
                &format!("message {i}"),
                Some(&conversation),
            )
            .await
            .1,
        );
    }
    let messages = answered(&app, &owner, &bot, sent.last().unwrap()).await;
    worker.stop().await;

    let position: HashMap<&str, usize> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| (m["id"].as_str().unwrap(), i))
        .collect();
    let replies: Vec<&Value> = messages
        .iter()
        .filter(|m| m["role"] == "assistant")
        .collect();
    let answered_ids: Vec<&str> = replies
        .iter()
        .map(|r| r["answers"].as_str().unwrap())
        .collect();
    assert_eq!(
        answered_ids.iter().collect::<HashSet<_>>().len(),
        answered_ids.len(),
        "no message answered twice"
    );
    let covered: Vec<usize> = answered_ids.iter().map(|id| position[id]).collect();
    assert!(
        covered.windows(2).all(|w| w[0] < w[1]),
        "replies answer later and later messages"
    );
    assert_eq!(
        *answered_ids.last().unwrap(),
        sent.last().unwrap().as_str(),
        "the last message is answered"
    );
    assert!(
        replies.len() <= 10 && fake.calls() == replies.len(),
        "one model call per reply"
    );
    for reply in &replies {
        let answered = reply["answers"].as_str().unwrap();
        let answered_text = messages[position[answered]]["text"].as_str().unwrap();
        assert_eq!(
            reply["text"],
            format!("echo: {answered_text}"),
            "each reply answers up to its message"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_model_the_reply_says_so_plainly() {
    let app = spawn_app_with(|_| {}).await;
    let worker = start_worker(&app, Responder::RetrievalOnly);
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;
    let (_, message) = send(&app, &owner, &bot, "are you there?", None).await;
    let messages = answered(&app, &owner, &bot, &message).await;
    worker.stop().await;
    assert_eq!(messages[1]["text"], NO_MODEL_REPLY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_plans_limit_the_reply_says_so_without_a_model_call() {
    let app = spawn_app_with(|c| c.tiers.free.messages_per_month = 1).await;
    let fake = FakeModel::start().await;
    let worker = start_worker(&app, model(&fake));
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;
    let (conversation, first) = send(&app, &owner, &bot, "first", None).await;
    answered(&app, &owner, &bot, &first).await;
    let (_, second) = send(&app, &owner, &bot, "second", Some(&conversation)).await;
    let messages = answered(&app, &owner, &bot, &second).await;
    worker.stop().await;
    assert_eq!(messages.last().unwrap()["text"], OVER_LIMIT_REPLY);
    assert_eq!(fake.calls(), 1, "no model call over the limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_attempt_fails_the_user_gets_an_apology_and_the_job_is_dead() {
    let app = spawn_app_with(|c| c.jobs.max_attempts = 2).await;
    let fake = FakeModel::start().await;
    fake.fail_with(500);
    let worker = start_worker(&app, model(&fake));
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;
    let (_, message) = send(&app, &owner, &bot, "hello?", None).await;
    let messages = answered(&app, &owner, &bot, &message).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let dead = loop {
        let dead = app.get("/api/v1/jobs?state=dead", &owner.token).await;
        if !dead.body["jobs"].as_array().unwrap().is_empty() {
            break dead;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job did not die"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    worker.stop().await;
    assert_eq!(
        messages.iter().filter(|m| m["role"] == "assistant").count(),
        1,
        "one apology, not one per attempt"
    );
    assert_eq!(messages[1]["text"], APOLOGY_REPLY);
    assert_eq!(fake.calls(), 2, "every attempt was made");
    assert_eq!(dead.body["jobs"][0]["kind"], "respond");
    assert!(
        dead.body["jobs"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("500")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_posts_with_one_idempotency_key_make_one_message_and_one_reply() {
    let app = spawn_app_with(|_| {}).await;
    let fake = FakeModel::start().await;
    let worker = start_worker(&app, model(&fake));
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;
    let url = app.url(&format!("/api/v1/chatbots/{bot}/messages"));
    let posts = (0..50).map(|_| {
        app.client
            .post(&url)
            .bearer_auth(&owner.token)
            .header("idempotency-key", "retry-storm")
            .json(&json!({"text": "once, please"}))
            .send()
    });
    let responses = futures::future::join_all(posts).await;
    let mut ids = HashSet::new();
    for response in responses {
        let response = response.unwrap();
        assert_eq!(response.status(), 201);
        ids.insert(
            response.json::<Value>().await.unwrap()["message_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(ids.len(), 1, "every answer names the same message");
    let message = ids.into_iter().next().unwrap();
    let messages = answered(&app, &owner, &bot, &message).await;
    // Give any stray second job the chance to run before counting.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !app.store.queue_stats().await.unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "jobs left in the queue"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.stop().await;
    let after = app
        .get(&format!("/api/v1/chatbots/{bot}/history"), &owner.token)
        .await;
    assert_eq!(
        after.body["messages"].as_array().unwrap().len(),
        2,
        "one message, one reply: {messages:?}"
    );
    assert_eq!(fake.calls(), 1);
}

// --- Following a conversation live ---

/// One Server-Sent Event as a client reads it.
#[derive(Debug)]
struct LiveEvent {
    name: String,
    id: Option<String>,
    data: Value,
}

/// Opens a conversation's event stream. The server subscribes before it
/// answers, so whatever happens after this returns reaches the stream.
async fn connect(
    app: &TestApp,
    session: &Session,
    conversation: &str,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .client
        .get(app.url(&format!("/api/v1/conversations/{conversation}/events")))
        .bearer_auth(&session.token);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    response
}

/// Reads events, handing each to `until` until it says stop.
async fn read_events(
    response: reqwest::Response,
    mut until: impl FnMut(&LiveEvent) -> bool,
) -> Vec<LiveEvent> {
    use futures::StreamExt;
    let mut bytes = response.bytes_stream();
    let (mut buffer, mut events) = (String::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let chunk = tokio::time::timeout_at(deadline, bytes.next())
            .await
            .expect("the events came in time")
            .unwrap()
            .unwrap();
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_owned())
            };
            let Some(data) = field("data:") else { continue }; // keep-alive comments
            let event = LiveEvent {
                name: field("event:").unwrap_or_default(),
                id: field("id:"),
                data: serde_json::from_str(&data).unwrap(),
            };
            let stop = until(&event);
            events.push(event);
            if stop {
                return events;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_sees_the_reply_written_piece_by_piece_then_stored() {
    let app = spawn_app_with(|_| {}).await;
    let fake = FakeModel::start().await;
    // Pieces come as a model writes them; pieces that come faster than they
    // are published go out together.
    fake.pace(Duration::from_millis(20));
    let worker = start_worker(&app, model(&fake));
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;
    let (conversation, first) = send(&app, &owner, &bot, "hello", None).await;
    answered(&app, &owner, &bot, &first).await;

    let stream = connect(&app, &owner, &conversation, None).await;
    let (_, second) = send(&app, &owner, &bot, "how are you today", Some(&conversation)).await;
    let events = read_events(stream, |e| {
        e.name == "message" && e.data["role"] == "assistant"
    })
    .await;
    worker.stop().await;

    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names.first(), Some(&"message"), "{names:?}");
    assert_eq!(
        events[0].data["id"],
        second.as_str(),
        "the user's message first, with its id"
    );
    assert_eq!(events[0].id.as_deref(), Some(second.as_str()));
    let started = names
        .iter()
        .position(|n| *n == "reply_started")
        .expect("the reply started");
    let pieces: String = events[started..]
        .iter()
        .filter(|e| e.name == "delta")
        .map(|e| e.data["text"].as_str().unwrap())
        .collect();
    let reply = events.last().unwrap();
    assert_eq!(reply.data["text"], "echo: how are you today");
    assert_eq!(
        pieces, "echo: how are you today",
        "the pieces make the stored reply"
    );
    assert!(
        names[started..].iter().filter(|n| **n == "delta").count() > 1,
        "it came in pieces"
    );
    assert_eq!(reply.data["answers"], second.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_with_last_event_id_gets_every_message_after_it() {
    let app = spawn_app_with(|_| {}).await;
    let fake = FakeModel::start().await;
    let worker = start_worker(&app, model(&fake));
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;
    let (conversation, first) = send(&app, &owner, &bot, "one", None).await;
    answered(&app, &owner, &bot, &first).await;
    let (_, second) = send(&app, &owner, &bot, "two", Some(&conversation)).await;
    answered(&app, &owner, &bot, &second).await;
    worker.stop().await;

    let stream = connect(&app, &owner, &conversation, Some(&first)).await;
    let events = read_events(stream, |e| e.data["answers"] == second.as_str()).await;
    let texts: Vec<&str> = events
        .iter()
        .map(|e| e.data["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["echo: one", "two", "echo: two"],
        "every message after the last one seen, in order, once"
    );
    assert!(events.iter().all(|e| e.name == "message" && e.id.is_some()));
    // `0`: from the start of the conversation.
    let stream = connect(&app, &owner, &conversation, Some("0")).await;
    let events = read_events(stream, |e| e.data["answers"] == second.as_str()).await;
    let texts: Vec<&str> = events
        .iter()
        .map(|e| e.data["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["one", "echo: one", "two", "echo: two"]);

    let bad = app
        .client
        .get(app.url(&format!("/api/v1/conversations/{conversation}/events")))
        .bearer_auth(&owner.token)
        .header("last-event-id", "not-an-id")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let unknown = app
        .client
        .get(app.url(&format!("/api/v1/conversations/{conversation}/events")))
        .bearer_auth(&owner.token)
        .header("last-event-id", uuid::Uuid::now_v7().to_string())
        .send()
        .await
        .unwrap();
    // An id the conversation does not know: the whole conversation follows.
    assert_eq!(unknown.status(), 200);
    drop(unknown);
    let advisor = app.member(&owner, "advisor@example.org", "advisor").await;
    let refused = app
        .client
        .get(app.url(&format!("/api/v1/conversations/{conversation}/events")))
        .bearer_auth(&advisor.token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403, "advisors do not read conversations");
    let nobody = app
        .client
        .get(app.url(&format!("/api/v1/conversations/{conversation}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(nobody.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_mid_reply_resumes_after_the_last_piece() {
    let app = spawn_app_with(|_| {}).await;
    let fake = FakeModel::start().await;
    fake.pace(Duration::from_millis(60));
    let worker = start_worker(&app, model(&fake));
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;
    let (conversation, first) = send(&app, &owner, &bot, "hi", None).await;
    answered(&app, &owner, &bot, &first).await;
    let words: Vec<String> = (0..30).map(|i| format!("word{i}")).collect();
    let question = words.join(" ");

    let stream = connect(&app, &owner, &conversation, None).await;
    let (_, asked) = send(&app, &owner, &bot, &question, Some(&conversation)).await;
    let mut deltas = 0;
    let before = read_events(stream, |e| {
        deltas += usize::from(e.name == "delta");
        deltas == 3
    })
    .await;
    let last = before
        .last()
        .unwrap()
        .id
        .clone()
        .expect("a piece has an id");
    // {last message}.{attempt}.{n}: the user's message was the last sent.
    let parts: Vec<&str> = last.split('.').collect();
    assert_eq!(parts.len(), 3, "{last}");
    assert_eq!(parts[0], asked);
    // Whole from the start, while the reply is still being written.
    let whole = connect(&app, &owner, &conversation, Some("0")).await;
    let resumed = connect(&app, &owner, &conversation, Some(&last)).await;
    let is_reply = |e: &LiveEvent| {
        e.name == "message" && e.data["role"] == "assistant" && e.data["answers"] == asked.as_str()
    };
    let after = read_events(resumed, is_reply).await;
    let from_start = read_events(whole, is_reply).await;
    worker.stop().await;

    let text = |events: &[LiveEvent]| -> String {
        events
            .iter()
            .filter(|e| e.name == "delta")
            .map(|e| e.data["text"].as_str().unwrap())
            .collect()
    };
    let reply = format!("echo: {question}");
    assert_eq!(after.last().unwrap().data["text"], reply.as_str());
    assert!(
        after.iter().all(|e| e.name == "delta" || is_reply(e)),
        "only the rest of the reply, then the reply: {:?}",
        after.iter().map(|e| &e.name).collect::<Vec<_>>()
    );
    assert_eq!(
        format!("{}{}", text(&before), text(&after)),
        reply,
        "the pieces before and after the reconnection make the reply, none twice"
    );
    // `0`: the conversation, then the reply in progress from its start.
    let names: Vec<&str> = from_start.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        &names[..4],
        ["message", "message", "message", "reply_started"],
        "{names:?}"
    );
    assert_eq!(text(&from_start), reply);
    // A piece id of an attempt no longer in progress: the messages after its
    // message, nothing of the reply twice.
    let late = connect(&app, &owner, &conversation, Some(&last)).await;
    let late = read_events(late, is_reply).await;
    assert_eq!(late.len(), 1, "the stored reply only");
    for bad in [
        format!("{asked}.{}", parts[1]),
        format!("{asked}.not-a-uuid.1"),
        format!("{asked}.{}.x", parts[1]),
        format!("{asked}.{}.1.2", parts[1]),
    ] {
        let refused = app
            .client
            .get(app.url(&format!("/api/v1/conversations/{conversation}/events")))
            .bearer_auth(&owner.token)
            .header("last-event-id", bad.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400, "{bad}");
    }
}

/// PostgreSQL only: a reply written through one replica reaches a follower
/// connected to another, through LISTEN/NOTIFY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_a_follower_on_another_replica() {
    let Some(database) = steward_testkit::PostgresDatabase::create().await else {
        eprintln!("skipped: backend not configured");
        return;
    };
    let replica = |store: steward_store_postgres::PostgresStore| async move {
        let guard = steward_testkit::DbGuard::Sqlite(tempfile_dir());
        steward_testkit::app::spawn_app_on(Arc::new(store), guard, |_| {}).await
    };
    let first_store = steward_store_postgres::PostgresStore::connect(&database.url, 4)
        .await
        .unwrap();
    steward_store::Store::migrate(&first_store).await.unwrap();
    let here = replica(first_store).await;
    let there = replica(
        steward_store_postgres::PostgresStore::connect(&database.url, 4)
            .await
            .unwrap(),
    )
    .await;
    let fake = FakeModel::start().await;
    let worker = start_worker(&here, model(&fake));
    let owner = here.register("ada@example.org", "Acme").await;
    let bot = here.chatbot(&owner, "Helper").await;
    let (conversation, first) = send(&here, &owner, &bot, "hello", None).await;
    answered(&here, &owner, &bot, &first).await;

    let stream = connect(&there, &owner, &conversation, None).await;
    send(
        &here,
        &owner,
        &bot,
        "from the other side",
        Some(&conversation),
    )
    .await;
    let events = read_events(stream, |e| {
        e.name == "message" && e.data["role"] == "assistant"
    })
    .await;
    worker.stop().await;
    assert!(
        events.iter().any(|e| e.name == "delta"),
        "pieces crossed replicas too: {:?}",
        events
            .iter()
            .map(|e| (&e.name, &e.data))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        events.last().unwrap().data["text"],
        "echo: from the other side"
    );
}

fn tempfile_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

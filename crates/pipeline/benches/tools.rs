//! Replies that call a tool: a local model that asks for one MCP call, then
//! answers; the tool is `place_order` on the server written with the official
//! Python SDK (`eval "$(scripts/mcp-servers)"` first).
//!
//!   eval "$(scripts/mcp-servers)"
//!   STEWARD_TEST_POSTGRES_URL=$(scripts/postgres16) cargo bench -p steward-pipeline --bench tools
//!
//! For each backend and each number of conversations at once
//! (STEWARD_BENCH_CONVERSATIONS, default "1,50,200"), that many messages are
//! posted together, each opening a conversation, to `steward_api` with a
//! worker in the same process (concurrency 32), after one reply not counted
//! (connections opened, statements prepared); "1" is 50 such replies, one
//! after another. Reported per reply:
//! - the loop's own time per step: intake-to-reply (stored times) minus the
//!   model's time and the tool call's time, halved (two model calls a reply);
//! - the tool call's time as the reply loop sees it (the MCP client's
//!   connection and the server's answer);
//! - replies per second: the messages over the time until the last reply.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use steward_domain::jobs::RespondArgs;
use steward_domain::{ConversationId, JobKind, PersonId};
use steward_jobs::{JobError, JobHandler, Worker, WorkerSettings};
use steward_llm::{ChatRequest, ChatResponse, DeltaSink, LlmError, OpenAiCompatible, Provider};
use steward_pipeline::{Respond, Responder};
use steward_store::{Chatbot, Job, Store, TenantScope};
use steward_testkit::app::spawn_app_on;
use steward_testkit::model::FakeModel;
use steward_testkit::{DbGuard, postgres_store, sqlite_store};
use steward_tools::{CallContext, Tool, ToolError, Toolbox};

/// Replies measured one after another for "1 conversation".
const ONE_AT_A_TIME: usize = 50;

fn percentile(sorted: &[f64], p: usize) -> f64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// Time spent by conversation: the whole respond job's, and outside Steward
/// the model's and the tool's.
#[derive(Default)]
struct Spent {
    job: Mutex<HashMap<ConversationId, Duration>>,
    model: Mutex<HashMap<ConversationId, Duration>>,
    tool: Mutex<HashMap<ConversationId, Duration>>,
}

/// The respond job, timed.
struct TimedRespond {
    inner: Respond,
    spent: Arc<Spent>,
}

#[async_trait]
impl JobHandler for TimedRespond {
    async fn run(&self, job: &Job) -> Result<(), JobError> {
        let started = Instant::now();
        let outcome = self.inner.run(job).await;
        let conversation = job.args::<RespondArgs>()?.conversation_id;
        *self
            .spent
            .job
            .lock()
            .unwrap()
            .entry(conversation)
            .or_default() += started.elapsed();
        outcome
    }
}

/// The model, timed. The conversation is found by the request's first message.
struct TimedModel {
    inner: OpenAiCompatible,
    spent: Arc<Spent>,
    conversations: Arc<Mutex<HashMap<String, ConversationId>>>,
}

#[async_trait]
impl Provider for TimedModel {
    fn name(&self) -> &str {
        "timed"
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        self.inner.complete(request).await
    }

    async fn stream(
        &self,
        request: &ChatRequest,
        sink: &DeltaSink,
    ) -> Result<ChatResponse, LlmError> {
        let started = Instant::now();
        let answer = self.inner.stream(request, sink).await;
        let text = request
            .messages
            .first()
            .map(|m| m.content.clone())
            .unwrap_or_default();
        if let Some(conversation) = self.conversations.lock().unwrap().get(&text) {
            *self
                .spent
                .model
                .lock()
                .unwrap()
                .entry(*conversation)
                .or_default() += started.elapsed();
        }
        answer
    }
}

/// The catalogue, its calls timed.
struct TimedTools {
    inner: steward_tools::Catalogue,
    spent: Arc<Spent>,
}

#[async_trait]
impl Toolbox for TimedTools {
    async fn tools(
        &self,
        scope: &TenantScope,
        chatbot: &Chatbot,
        person: Option<PersonId>,
    ) -> Result<Vec<Tool>, ToolError> {
        self.inner.tools(scope, chatbot, person).await
    }

    async fn call(
        &self,
        context: &CallContext,
        tool: &Tool,
        input: &Map<String, Value>,
    ) -> Result<String, ToolError> {
        let started = Instant::now();
        let result = self.inner.call(context, tool, input).await;
        *self
            .spent
            .tool
            .lock()
            .unwrap()
            .entry(context.conversation)
            .or_default() += started.elapsed();
        result
    }
}

#[tokio::main]
async fn main() {
    let Ok(shop) = std::env::var("STEWARD_TEST_MCP_SHOP") else {
        eprintln!("no MCP server: eval \"$(scripts/mcp-servers)\" first");
        std::process::exit(1);
    };
    let counts: Vec<usize> = std::env::var("STEWARD_BENCH_CONVERSATIONS")
        .unwrap_or_else(|_| "1,50,200".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let mut backends = vec!["SQLite"];
    if std::env::var(steward_testkit::POSTGRES_URL_ENV).is_ok_and(|u| !u.is_empty()) {
        backends.push("PostgreSQL");
    }
    println!(
        "| backend | conversations | replies/s | loop per step p50 (ms) | p99 (ms) | tool call p50 (ms) | p99 (ms) | model per call p50 (ms) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for backend in &backends {
        for &count in &counts {
            let (store, db): (Arc<dyn Store>, DbGuard) = match *backend {
                "PostgreSQL" => postgres_store().await.unwrap(),
                _ => sqlite_store().await.unwrap(),
            };
            run(backend, store, db, &shop, count).await;
        }
    }
}

async fn run(backend: &str, store: Arc<dyn Store>, db: DbGuard, shop: &str, count: usize) {
    let shop = shop.to_owned();
    let app = spawn_app_on(store.clone(), db, move |c| {
        c.log.level = "warn".into();
        c.tiers.free.messages_per_month = i64::MAX / 2;
        c.tiers.free.tokens_per_month = i64::MAX / 2;
        c.tools.servers = vec![steward_config::ToolServerConfig {
            name: "shop".into(),
            url: shop,
            headers: Default::default(),
            timeout_secs: 30,
        }];
        c.tools.max_steps = 2;
        c.tools.call_timeout_secs = 60;
        c.tools.turn_timeout_secs = 120;
    })
    .await;
    let fake = FakeModel::start().await;
    // Every reply: one call, then the answer (two steps at most, so the
    // second offers no tools).
    fake.always_call("shop__place_order", r#"{"item": "lamp", "quantity": 1}"#);
    let spent = Arc::new(Spent::default());
    let conversations = Arc::new(Mutex::new(HashMap::new()));
    let respond = || Respond {
        store: store.clone(),
        responder: Responder::Model(Arc::new(TimedModel {
            inner: OpenAiCompatible::new(
                reqwest::Client::new(),
                &fake.base_url,
                None,
                "fake",
                Duration::from_secs(30),
            ),
            spent: spent.clone(),
            conversations: conversations.clone(),
        })),
        tiers: app.state.config.tiers.clone(),
        history_turns: 20,
        max_tokens: 256,
        deliver_attempts: 3,
        retriever: steward_knowledge::Retriever::new(store.clone(), None),
        passages: 5,
        toolbox: Some(Arc::new(TimedTools {
            inner: app.state.tools.clone(),
            spent: spent.clone(),
        })),
        tool_limits: app.state.config.tools.clone(),
        memory: None,
        classify_attempts: None,
    };
    let owner = app.register("bench@example.org", "Bench").await;
    let bot = app.chatbot(&owner, "Bench").await;
    let given = app
        .patch(
            &format!("/api/v1/chatbots/{bot}"),
            &owner.token,
            json!({"tools": ["shop.place_order"]}),
        )
        .await;
    assert_eq!(given.status, 200, "{}", given.text);

    // `count` messages posted first, then answered by a worker started once
    // all are in: the conversations, and how long answering them took.
    let url = app.url(&format!("/api/v1/chatbots/{bot}/messages"));
    let round = async |count: usize, first: usize| {
        let mut sent = Vec::new();
        for n in first..first + count {
            let text = format!("order {n}");
            let response = app
                .client
                .post(&url)
                .bearer_auth(&owner.token)
                .json(&json!({ "text": text }))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
            let body: Value = response.json().await.unwrap();
            let conversation: ConversationId =
                body["conversation_id"].as_str().unwrap().parse().unwrap();
            conversations.lock().unwrap().insert(text, conversation);
            sent.push(conversation);
        }
        let settings = WorkerSettings {
            concurrency: 32,
            kind_concurrency: HashMap::new(),
            org_share: usize::MAX,
            reply_reserve: 0,
            lease: Duration::from_secs(120),
            backoff_base: Duration::from_millis(50),
            poll_interval: Duration::from_millis(1000),
            shutdown_grace: Duration::from_secs(10),
        };
        let timed = TimedRespond {
            inner: respond(),
            spent: spent.clone(),
        };
        let worker = Worker::new(store.clone(), settings)
            .handle(JobKind::Respond, timed)
            .wake_on(app.state.jobs_enqueued.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let started = Instant::now();
        let worker = tokio::spawn(worker.run(async {
            let _ = stopped.await;
        }));
        let deadline = Instant::now() + Duration::from_secs(600);
        while !store.queue_stats().await.unwrap().is_empty() {
            assert!(Instant::now() < deadline, "replies did not finish");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let elapsed = started.elapsed();
        let _ = stop.send(());
        worker.await.unwrap();
        (sent, elapsed)
    };
    // One reply first, not counted: connections opened, statements prepared.
    round(1, 0).await;
    // One conversation at a time is measured over many, one after another.
    let (rounds, per_round) = match count {
        1 => (ONE_AT_A_TIME, 1),
        _ => (1, count),
    };
    let (mut sent, mut elapsed) = (Vec::new(), Duration::ZERO);
    for r in 0..rounds {
        let (conversations, took) = round(per_round, 1 + r * per_round).await;
        sent.extend(conversations);
        elapsed += took;
    }

    let scope = TenantScope::for_operator(owner.org_id.parse().unwrap());
    let (mut per_step, mut tool_ms, mut model_ms) = (Vec::new(), Vec::new(), Vec::new());
    let job_spent = spent.job.lock().unwrap().clone();
    let model_spent = spent.model.lock().unwrap().clone();
    let tool_spent = spent.tool.lock().unwrap().clone();
    for conversation in &sent {
        let turns = store
            .conversation_messages(&scope, *conversation, 2)
            .await
            .unwrap();
        assert_eq!(turns.len(), 2, "one message, one reply");
        let calls = turns[1].meta.as_ref().unwrap()["tool_calls"]
            .as_array()
            .unwrap();
        assert_eq!(calls[0]["status"], "succeeded", "{calls:?}");
        let (job, model, tool) = (
            job_spent[conversation],
            model_spent[conversation],
            tool_spent[conversation],
        );
        per_step.push(job.saturating_sub(model + tool).as_secs_f64() * 1000.0 / 2.0);
        tool_ms.push(tool.as_secs_f64() * 1000.0);
        model_ms.push(model.as_secs_f64() * 1000.0 / 2.0);
    }
    per_step.sort_by(f64::total_cmp);
    tool_ms.sort_by(f64::total_cmp);
    model_ms.sort_by(f64::total_cmp);
    println!(
        "| {backend} | {count} | {:.0} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} |",
        sent.len() as f64 / elapsed.as_secs_f64(),
        percentile(&per_step, 50),
        percentile(&per_step, 99),
        percentile(&tool_ms, 50),
        percentile(&tool_ms, 99),
        percentile(&model_ms, 50),
    );
}

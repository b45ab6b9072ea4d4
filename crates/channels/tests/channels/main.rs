//! Channels end to end: a signed webhook as each provider sends it, through
//! the API, a worker writing the reply with a local model, and a `deliver`
//! job sending it to a local server that speaks the provider's API. SQLite, or
//! PostgreSQL when STEWARD_TEST_POSTGRES_URL is set.

mod delivery;
mod email;
mod notify;
mod outbound;
mod people;
mod rotation;
mod socket_mode;
mod teams;
mod webhooks;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{Value, json};
use steward_channels::{
    Deliver, PollMailboxes, Post, ProviderApis, SendNotices, Sender, SmtpServer, generic, slack,
    whatsapp,
};
use steward_config::Config;
use steward_domain::{ChatbotId, JobKind, JobState, MessageRole, OrgId};
use steward_jobs::{Worker, WorkerSettings};
use steward_llm::OpenAiCompatible;
use steward_outbound::Guard;
use steward_pipeline::{Respond, Responder};
use steward_store::{HistoryQuery, Job, Message, TenantScope};
use steward_testkit::app::{Reply, Session, TestApp, spawn_app_with};
use steward_testkit::model::FakeModel;
use steward_testkit::providers::FakeProviders;
use tokio::sync::oneshot;

pub const APP_SECRET: &str = "wa-app-secret";
pub const VERIFY_TOKEN: &str = "wa-verify-token";
pub const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
pub const TELEGRAM_SECRET: &str = "tg-secret_token-1";
pub const GENERIC_SECRET: &str = "generic-signing-secret";
pub const PHONE_NUMBER_ID: &str = "106540352242922";

pub struct Harness {
    pub app: TestApp,
    pub owner: Session,
    pub bot: String,
    pub providers: FakeProviders,
    pub model: FakeModel,
    worker: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Steward with a worker answering through a local model and delivering
    /// to local provider APIs.
    pub async fn start_with(configure: impl FnOnce(&mut Config)) -> Self {
        let providers = FakeProviders::start().await;
        let app = spawn_app_with(|config| {
            config.channels.webhook_requests_per_second = 10_000;
            config.channels.webhook_burst = 10_000;
            // Where a channel's configuration is checked when it is saved.
            config.channels.whatsapp_api_url = providers.whatsapp_api();
            config.channels.slack_api_url = providers.slack_api();
            config.channels.telegram_api_url = providers.telegram_api();
            config.channels.teams_openid_url = providers.teams_openid();
            config.channels.teams_login_url = providers.teams_login();
            configure(config);
        })
        .await;
        let owner = app.register("owner@example.org", "Channel Co").await;
        let bot = app.chatbot(&owner, "Front desk").await;
        let mut harness = Self {
            app,
            owner,
            bot,
            providers,
            model: FakeModel::start().await,
            worker: None,
        };
        harness.start_worker();
        harness
    }

    fn start_worker(&mut self) {
        let store = self.app.store.clone();
        let respond = Respond {
            store: store.clone(),
            responder: Responder::Model(Arc::new(OpenAiCompatible::new(
                reqwest::Client::new(),
                &self.model.base_url,
                None,
                "fake-model",
                Duration::from_secs(5),
            ))),
            tiers: self.app.state.config.tiers.clone(),
            history_turns: 20,
            max_tokens: 256,
            deliver_attempts: 3,
            retriever: steward_knowledge::Retriever::new(store.clone(), None),
            passages: 5,
            // Steward's own tools, for the chatbots given them.
            toolbox: Some(Arc::new(self.app.state.tools.clone())),
            tool_limits: Default::default(),
            memory: None,
            classify_attempts: None,
        };
        let sender = Sender::new(
            Duration::from_secs(5),
            ProviderApis {
                whatsapp: self.providers.whatsapp_api(),
                slack: self.providers.slack_api(),
                telegram: self.providers.telegram_api(),
                teams_login: self.providers.teams_login(),
            },
            // The fake providers and mail servers listen on loopback.
            Guard::new(true),
        );
        let deliver = Deliver {
            store: store.clone(),
            sealer: self.app.state.sealer.clone(),
            sender: sender.clone(),
        };
        let post = Post {
            store: store.clone(),
            sealer: self.app.state.sealer.clone(),
            sender,
        };
        let poll = PollMailboxes {
            store: store.clone(),
            sealer: self.app.state.sealer.clone(),
            guard: Guard::new(true),
            timeout: Duration::from_secs(5),
            max_attempts: 3,
        };
        let settings = WorkerSettings {
            concurrency: 8,
            kind_concurrency: HashMap::new(),
            org_share: WorkerSettings::fair_share(8).0,
            reply_reserve: WorkerSettings::fair_share(8).1,
            lease: Duration::from_secs(10),
            backoff_base: Duration::from_millis(5),
            poll_interval: Duration::from_millis(10),
            shutdown_grace: Duration::from_secs(5),
        };
        let mut worker = Worker::new(store, settings)
            .handle(JobKind::Respond, respond)
            .handle(JobKind::Deliver, deliver)
            .handle(JobKind::Post, post)
            .handle(JobKind::Poll, poll)
            .wake_on(self.app.state.jobs_enqueued.clone());
        let mail = &self.app.state.config.mail;
        if mail.is_configured() {
            let server = SmtpServer {
                host: mail.smtp_host.clone(),
                port: mail.smtp_port,
                username: String::new(),
                password: String::new(),
                from: mail.from.clone(),
                tls: mail.tls,
            };
            let timeout = Duration::from_secs(10);
            worker = worker.handle(JobKind::Notice, SendNotices { server, timeout });
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(worker.run(async {
            let _ = stopped.await;
        }));
        self.worker = Some((stop, task));
    }

    pub async fn stop_worker(&mut self) {
        if let Some((stop, task)) = self.worker.take() {
            let _ = stop.send(());
            task.await.unwrap();
        }
    }

    /// Connects the chatbot to a channel and returns (id, webhook path).
    pub async fn channel(&self, kind: &str, config: Value) -> (String, String) {
        self.save_channel(kind, config, "").await
    }

    /// The same without asking the provider first (`?check=false`).
    pub async fn channel_unchecked(&self, kind: &str, config: Value) -> (String, String) {
        self.save_channel(kind, config, "?check=false").await
    }

    async fn save_channel(&self, kind: &str, config: Value, query: &str) -> (String, String) {
        let reply = self
            .app
            .post(
                &format!("/api/v1/chatbots/{}/channels{query}", self.bot),
                &self.owner.token,
                json!({ "kind": kind, "name": format!("{kind} {}", uuid::Uuid::now_v7()), "config": config }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        let id = reply.body["id"].as_str().unwrap().to_owned();
        let url = reply.body["webhook_url"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        (id, url)
    }

    pub async fn whatsapp(&self) -> String {
        let config = json!({
            "phone_number_id": PHONE_NUMBER_ID,
            "access_token": "EAAG-access-token",
            "app_secret": APP_SECRET,
            "verify_token": VERIFY_TOKEN,
        });
        self.channel("whatsapp", config).await.1
    }

    pub async fn slack(&self) -> String {
        let config = json!({
            "bot_token": "xoxb-test-token",
            "signing_secret": SLACK_SECRET,
        });
        self.channel("slack", config).await.1
    }

    pub async fn telegram(&self) -> String {
        let config = json!({
            "bot_token": "123456:ABC-DEF",
            "secret_token": TELEGRAM_SECRET,
        });
        self.channel("telegram", config).await.1
    }

    pub async fn generic(&self) -> String {
        let config = json!({
            "signing_secret": GENERIC_SECRET,
            "reply_url": self.providers.generic_reply_url(),
        });
        self.channel("generic", config).await.1
    }

    /// POSTs raw bytes with the given headers.
    pub async fn post_raw(&self, path: &str, headers: &[(&str, String)], body: Vec<u8>) -> Reply {
        let mut request = self
            .app
            .client
            .post(self.app.url(path))
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        TestApp::read(request.send().await.unwrap()).await
    }

    pub fn scope(&self) -> TenantScope {
        let org: OrgId = self.owner.org_id.parse().unwrap();
        TenantScope::for_operator(org)
    }

    /// The chatbot's messages, oldest first.
    pub async fn messages(&self) -> Vec<Message> {
        let chatbot: ChatbotId = self.bot.parse().unwrap();
        let query = HistoryQuery {
            chatbot_id: chatbot,
            limit: 1000,
            before: None,
            from: None,
            to: None,
        };
        let mut messages = self.app.store.history(&self.scope(), &query).await.unwrap();
        messages.reverse();
        messages
    }

    pub async fn user_messages(&self) -> Vec<Message> {
        let mut all = self.messages().await;
        all.retain(|m| m.role == MessageRole::User);
        all
    }

    pub async fn jobs(&self, kind: JobKind) -> Vec<Job> {
        let mut jobs = self
            .app
            .store
            .list_jobs(&self.scope(), None, 1000)
            .await
            .unwrap();
        jobs.retain(|j| j.kind == kind);
        jobs
    }

    /// Waits (bounded) until `check` holds of the chatbot's messages.
    pub async fn wait_messages(
        &self,
        what: &str,
        check: impl Fn(&[Message]) -> bool,
    ) -> Vec<Message> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let messages = self.messages().await;
            if check(&messages) {
                return messages;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {messages:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (bounded) until there are jobs of `kind` and all are finished.
    pub async fn settled(&self, kind: JobKind) -> Vec<Job> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let jobs = self.jobs(kind).await;
            let finished = |j: &Job| matches!(j.state, JobState::Succeeded | JobState::Dead);
            if !jobs.is_empty() && jobs.iter().all(finished) {
                return jobs;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{kind} jobs did not settle: {jobs:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn now_secs() -> String {
    Utc::now().timestamp().to_string()
}

pub fn whatsapp_headers(body: &[u8]) -> Vec<(&'static str, String)> {
    vec![("x-hub-signature-256", whatsapp::signature(APP_SECRET, body))]
}

pub fn slack_headers(body: &[u8], timestamp: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-slack-request-timestamp", timestamp.to_owned()),
        (
            "x-slack-signature",
            slack::signature(SLACK_SECRET, timestamp, body),
        ),
    ]
}

pub fn telegram_headers() -> Vec<(&'static str, String)> {
    vec![(
        "x-telegram-bot-api-secret-token",
        TELEGRAM_SECRET.to_owned(),
    )]
}

pub fn generic_headers(body: &[u8], timestamp: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-steward-timestamp", timestamp.to_owned()),
        (
            "x-steward-signature",
            generic::signature(GENERIC_SECRET, timestamp, body),
        ),
    ]
}

/// Meta's documented text-message webhook, for one message.
pub fn whatsapp_message(id: &str, from: &str, text: &str) -> Vec<u8> {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "102290129340398",
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": { "display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID },
                    "contacts": [{ "profile": { "name": "Sheena Nelson" }, "wa_id": from }],
                    "messages": [{ "from": from, "id": id, "timestamp": "1749416383", "type": "text", "text": { "body": text } }],
                },
            }],
        }],
    })
    .to_string()
    .into_bytes()
}

/// Slack's documented `event_callback` for a message.
pub fn slack_message(
    event_id: &str,
    channel: &str,
    ts: &str,
    thread_ts: Option<&str>,
    text: &str,
) -> Vec<u8> {
    let mut event = json!({
        "type": "message", "channel": channel, "user": "U2147483697", "text": text,
        "ts": ts, "event_ts": ts, "channel_type": "channel",
    });
    if let Some(thread) = thread_ts {
        event["thread_ts"] = json!(thread);
    }
    json!({
        "token": "XXYYZZ", "team_id": "T123ABC456", "api_app_id": "A123ABC456",
        "event": event, "type": "event_callback", "event_id": event_id, "event_time": 1355517523,
        "authorizations": [{ "team_id": "T123ABC456", "user_id": "UBOTUSER", "is_bot": true }],
    })
    .to_string()
    .into_bytes()
}

/// Telegram's documented `Update` with a text message.
pub fn telegram_message(update_id: i64, chat: i64, message_id: i64, text: &str) -> Vec<u8> {
    json!({
        "update_id": update_id,
        "message": {
            "message_id": message_id, "date": 1441645532,
            "from": { "id": chat, "is_bot": false, "first_name": "Test", "username": "test" },
            "chat": { "id": chat, "first_name": "Test", "type": "private" },
            "text": text,
        },
    })
    .to_string()
    .into_bytes()
}

pub fn generic_message(id: &str, user: &str, text: &str) -> Vec<u8> {
    json!({ "id": id, "user": user, "text": text })
        .to_string()
        .into_bytes()
}

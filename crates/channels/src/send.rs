//! Sending one part of a reply through a provider's API, and reading its
//! answer: what was sent (the provider's id), what is worth retrying (when
//! the provider says), and what never will work.

use std::time::Duration;

use chrono::Utc;
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use steward_domain::{ChannelKind, MessageId};

use steward_outbound::Guard;

use crate::config::{ChannelConfig, GenericConfig, SlackConfig, TelegramConfig, WhatsappConfig};
use crate::verify::generic_signature;

/// The most characters one message may have on each channel.
pub fn part_limit(kind: ChannelKind) -> usize {
    match kind {
        ChannelKind::Whatsapp => 4096,
        ChannelKind::Telegram => 4096,
        // Slack truncates at 40,000 but advises keeping messages under 4,000.
        ChannelKind::Slack => 4000,
        // One email, one reply.
        ChannelKind::Email | ChannelKind::Generic => usize::MAX,
    }
}

/// The longest wait a provider's retry hint may impose.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth another attempt; not before `after` when the provider said so.
    #[error("{reason}")]
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Another attempt would fail the same way (a bad token, an unknown chat).
    #[error("{0}")]
    Permanent(String),
}

pub(crate) fn retry(reason: impl Into<String>) -> SendError {
    SendError::Retry {
        reason: reason.into(),
        after: None,
    }
}

/// One part of a reply to send.
#[derive(Clone, Copy, Debug)]
pub struct Part<'a> {
    pub message_id: MessageId,
    pub index: usize,
    pub count: usize,
    pub text: &'a str,
}

/// Where the reply goes: the meta of the message it answers.
pub type Route = Value;

/// The providers' API bases: operator configuration (`channels.*_api_url`).
#[derive(Clone, Debug)]
pub struct ProviderApis {
    pub whatsapp: String,
    pub slack: String,
    pub telegram: String,
}

#[derive(Clone)]
pub struct Sender {
    /// For the providers' APIs, which the operator configures.
    client: reqwest::Client,
    /// For destinations a tenant sets (reply URLs): through the outbound guard.
    guarded: reqwest::Client,
    guard: Guard,
    apis: ProviderApis,
    /// For each call to a provider (the HTTP client's, and SMTP's).
    timeout: Duration,
}

impl Sender {
    pub fn new(timeout: Duration, apis: ProviderApis, guard: Guard) -> Self {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client");
        let guarded = guard.http_client(reqwest::Client::builder().timeout(timeout));
        Self {
            client,
            guarded,
            guard,
            apis,
            timeout,
        }
    }

    /// Sends `part` and returns the provider's id for it, when it gives one.
    pub async fn send(
        &self,
        config: &ChannelConfig,
        route: &Route,
        part: Part<'_>,
    ) -> Result<Option<String>, SendError> {
        match config {
            ChannelConfig::Whatsapp(c) => self.whatsapp(c, route, part).await,
            ChannelConfig::Slack(c) => self.slack(c, route, part).await,
            ChannelConfig::Telegram(c) => self.telegram(c, route, part).await,
            ChannelConfig::Generic(c) => self.generic(c, route, part).await,
            ChannelConfig::Email(c) => {
                crate::email::send(c, route, part, &self.guard, self.timeout).await
            }
        }
    }

    async fn whatsapp(
        &self,
        c: &WhatsappConfig,
        route: &Route,
        part: Part<'_>,
    ) -> Result<Option<String>, SendError> {
        let to = field(route, "to")?;
        let url = format!(
            "{}/{}/messages",
            self.apis.whatsapp.trim_end_matches('/'),
            c.phone_number_id
        );
        let body = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "text",
            "text": { "preview_url": false, "body": part.text },
        });
        let answer = call(
            self.client
                .post(url)
                .bearer_auth(c.access_token.expose())
                .json(&body),
        )
        .await?;
        Ok(answer["messages"][0]["id"].as_str().map(str::to_owned))
    }

    async fn slack(
        &self,
        c: &SlackConfig,
        route: &Route,
        part: Part<'_>,
    ) -> Result<Option<String>, SendError> {
        let mut body = json!({ "channel": field(route, "channel")?, "text": part.text });
        if let Some(thread) = route["thread_ts"].as_str() {
            body["thread_ts"] = thread.into();
        }
        let url = format!("{}/chat.postMessage", self.apis.slack.trim_end_matches('/'));
        let answer = call(
            self.client
                .post(url)
                .bearer_auth(c.bot_token.expose())
                .json(&body),
        )
        .await?;
        // Slack answers 200 with {"ok": false, "error": "..."} for most failures.
        if answer["ok"] != true {
            let error = answer["error"].as_str().unwrap_or("unknown_error");
            return Err(match error {
                "ratelimited"
                | "internal_error"
                | "fatal_error"
                | "service_unavailable"
                | "request_timeout" => retry(format!("slack: {error}")),
                _ => SendError::Permanent(format!("slack: {error}")),
            });
        }
        Ok(answer["ts"].as_str().map(str::to_owned))
    }

    async fn telegram(
        &self,
        c: &TelegramConfig,
        route: &Route,
        part: Part<'_>,
    ) -> Result<Option<String>, SendError> {
        let chat_id = route["chat_id"]
            .as_i64()
            .ok_or_else(|| SendError::Permanent("no chat_id to reply to".into()))?;
        let mut body = json!({ "chat_id": chat_id, "text": part.text });
        // Only the first part quotes the message it answers.
        if let (0, Some(reply_to)) = (part.index, route["reply_to_message_id"].as_i64()) {
            body["reply_parameters"] =
                json!({ "message_id": reply_to, "allow_sending_without_reply": true });
        }
        if let Some(thread) = route["message_thread_id"].as_i64() {
            body["message_thread_id"] = thread.into();
        }
        let url = format!(
            "{}/bot{}/sendMessage",
            self.apis.telegram.trim_end_matches('/'),
            c.bot_token.expose()
        );
        let answer = call(self.client.post(url).json(&body)).await?;
        Ok(answer["result"]["message_id"]
            .as_i64()
            .map(|id| id.to_string()))
    }

    async fn generic(
        &self,
        c: &GenericConfig,
        route: &Route,
        part: Part<'_>,
    ) -> Result<Option<String>, SendError> {
        let id = format!("{}:{}", part.message_id, part.index);
        let body = json!({
            "type": "reply",
            "id": id,
            "message_id": part.message_id,
            "part": part.index,
            "parts": part.count,
            "in_reply_to": route["id"],
            "user": route["user"],
            "conversation": route["conversation"],
            "text": part.text,
        })
        .to_string();
        let timestamp = Utc::now().timestamp().to_string();
        let signature = generic_signature(c.signing_secret.expose(), &timestamp, body.as_bytes());
        let url = self
            .guard
            .check_url(&c.reply_url)
            .map_err(|refused| SendError::Permanent(refused.to_string()))?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let request = self
            .guarded
            .post(url)
            .header("content-type", "application/json")
            .header("x-steward-timestamp", timestamp)
            .header("x-steward-signature", signature)
            .header("idempotency-key", &id)
            .body(body);
        // The tenant's server may be anyone's: its answer is not read back,
        // only its status, and a failure is told in Steward's words.
        let response = request.send().await.map_err(|e| {
            let failure = Guard::describe(&host, &e);
            tracing::info!(error = %e, "generic reply failed");
            if failure.is_transient() {
                retry(failure.to_string())
            } else {
                SendError::Permanent(failure.to_string())
            }
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(Some(id));
        }
        let detail = format!("{host} answered HTTP {}", status.as_u16());
        if status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
        {
            Err(SendError::Retry {
                reason: detail,
                after: header_secs(&response).map(|d| d.min(MAX_RETRY_AFTER)),
            })
        } else {
            Err(SendError::Permanent(detail))
        }
    }
}

fn field<'a>(route: &'a Route, name: &str) -> Result<&'a str, SendError> {
    route[name].as_str().ok_or_else(|| {
        SendError::Permanent(format!("the message answered has no {name} to reply to"))
    })
}

/// Sends a request and reads a JSON answer, classifying failures. Errors never
/// carry the URL: Telegram's holds the bot token.
async fn call(request: RequestBuilder) -> Result<Value, SendError> {
    let response = request
        .send()
        .await
        .map_err(|e| retry(e.without_url().to_string()))?;
    let status = response.status();
    let retry_after = header_secs(&response);
    let text = response_text(response).await;
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(answer);
    }
    let detail = describe(status, &answer);
    if status == StatusCode::TOO_MANY_REQUESTS {
        // Telegram puts its hint in the body; others in Retry-After.
        let hinted = answer["parameters"]["retry_after"]
            .as_u64()
            .map(Duration::from_secs);
        return Err(SendError::Retry {
            reason: detail,
            after: hinted.or(retry_after).map(|d| d.min(MAX_RETRY_AFTER)),
        });
    }
    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        return Err(retry(detail));
    }
    Err(SendError::Permanent(detail))
}

fn header_secs(response: &Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
        .map(Duration::from_secs)
}

/// The body, read up to a bound: an error page is not worth megabytes.
async fn response_text(mut response: Response) -> String {
    const MAX: usize = 64 * 1024;
    let mut bytes = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX {
            bytes.truncate(MAX);
            break;
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A short account of a failed call: the status and the provider's own error
/// message when its API gives one in its documented form; never a raw body.
fn describe(status: StatusCode, answer: &Value) -> String {
    let message = answer["error"]["message"]
        .as_str()
        .or_else(|| answer["description"].as_str())
        .or_else(|| answer["error"].as_str());
    match message {
        Some(message) => format!(
            "HTTP {}: {}",
            status.as_u16(),
            message.chars().take(200).collect::<String>()
        ),
        None => format!("HTTP {}", status.as_u16()),
    }
}

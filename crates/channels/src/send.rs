//! Sending one part of a reply through a provider's API, and reading its
//! answer: what was sent (the provider's id), what is worth retrying (when
//! the provider says), and what never will work.

use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::Value;
use steward_domain::{ChannelKind, MessageId};
use steward_outbound::Guard;

use crate::config::ChannelConfig;
use crate::inbound::Route;
use crate::{email, generic, slack, teams, telegram, whatsapp};

/// The most characters one message may have on each channel.
pub fn part_limit(kind: ChannelKind) -> usize {
    match kind {
        ChannelKind::Whatsapp => whatsapp::PART_LIMIT,
        ChannelKind::Slack => slack::PART_LIMIT,
        ChannelKind::Telegram => telegram::PART_LIMIT,
        ChannelKind::Teams => teams::PART_LIMIT,
        // One email, one reply; one POST, one reply; the web chat shows it whole.
        ChannelKind::Email | ChannelKind::Generic | ChannelKind::Web => usize::MAX,
    }
}

/// The longest wait a provider's retry hint may impose.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

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

/// The providers' API bases: operator configuration (`channels.*_api_url`).
#[derive(Clone, Debug)]
pub struct ProviderApis {
    pub whatsapp: String,
    pub slack: String,
    pub telegram: String,
    /// Where a Teams bot gets its tokens: `{teams_login}/{tenant}/oauth2/v2.0/token`.
    pub teams_login: String,
}

#[derive(Clone)]
pub struct Sender {
    /// For the providers' APIs, which the operator configures.
    pub(crate) client: reqwest::Client,
    /// For destinations a tenant sets (reply URLs): through the outbound guard.
    pub(crate) guarded: reqwest::Client,
    pub(crate) guard: Guard,
    pub(crate) apis: ProviderApis,
    /// For each call to a provider (the HTTP client's, and SMTP's).
    pub(crate) timeout: Duration,
    /// Teams bots' tokens for the connector, until they expire.
    pub(crate) teams: teams::Tokens,
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
            teams: Default::default(),
        }
    }

    /// The HTTP client for the providers' own APIs (the operator's addresses).
    pub fn provider_client(&self) -> reqwest::Client {
        self.client.clone()
    }

    /// Whether `typing` shows anything on `config`'s provider: only Teams
    /// offers it to bots.
    pub fn shows_typing(config: &ChannelConfig) -> bool {
        matches!(config, ChannelConfig::Teams(_))
    }

    /// Shows the person that a reply is being written, where the provider
    /// offers it for bots (Teams); nothing elsewhere.
    pub async fn typing(&self, config: &ChannelConfig, route: &Route) -> Result<(), SendError> {
        match (config, route) {
            (ChannelConfig::Teams(c), Route::Teams(r)) => teams::typing(self, c, r).await,
            _ => Ok(()),
        }
    }

    /// Sends `part` and returns the provider's id for it, when it gives one.
    pub async fn send(
        &self,
        config: &ChannelConfig,
        route: &Route,
        part: Part<'_>,
    ) -> Result<Option<String>, SendError> {
        match (config, route) {
            (ChannelConfig::Whatsapp(c), Route::Whatsapp(r)) => {
                whatsapp::send(self, c, r, part).await
            }
            (ChannelConfig::Slack(c), Route::Slack(r)) => slack::send(self, c, r, part).await,
            (ChannelConfig::Telegram(c), Route::Telegram(r)) => {
                telegram::send(self, c, r, part).await
            }
            (ChannelConfig::Teams(c), Route::Teams(r)) => teams::send(self, c, r, part).await,
            (ChannelConfig::Email(c), Route::Email(r)) => email::send(self, c, r, part).await,
            (ChannelConfig::Generic(c), Route::Generic(r)) => generic::send(self, c, r, part).await,
            _ => Err(SendError::Permanent(format!(
                "the message answered did not come through a {} channel",
                config.kind()
            ))),
        }
    }
}

/// Sends a request and reads a JSON answer, classifying failures. Errors never
/// carry the URL: Telegram's holds the bot token.
pub(crate) async fn call(request: RequestBuilder) -> Result<Value, SendError> {
    let response = request.send().await.map_err(|e| {
        // Named by its cause (no such host, refused, timed out, TLS), with
        // the host alone.
        let host = e.url().and_then(|u| u.host_str()).unwrap_or("the provider");
        retry(Guard::describe(host, &e).to_string())
    })?;
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

pub(crate) fn header_secs(response: &Response) -> Option<Duration> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_provider_out_of_reach_is_named_by_its_cause_without_the_url() {
        // A port nothing listens on: the connection is refused.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let client = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{port}/bot123:SECRET/sendMessage");
        let Err(SendError::Retry { reason, .. }) = call(client.post(&url)).await else {
            panic!("a refused connection is worth another attempt");
        };
        assert_eq!(reason, "127.0.0.1 refused the connection");
        let nowhere = call(client.post("http://no-such-host.invalid/bot123:SECRET/x")).await;
        let Err(SendError::Retry { reason, .. }) = nowhere else {
            panic!("{nowhere:?}");
        };
        assert_eq!(reason, "no-such-host.invalid did not resolve");
        assert!(!reason.contains("SECRET"));
    }
}

//! A provider's webhook, as the API sees it: whether a kind takes webhooks,
//! one check of the request's signature and one reading of its payload,
//! whatever the provider. Which headers carry what, and how each provider
//! signs, is known here only.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use http::HeaderMap;
use steward_domain::ChannelKind;

use crate::config::ChannelConfig;
use crate::inbound::{self, Inbound, Malformed};
use crate::verify::{self, Unauthorized};

/// Whether channels of this kind receive webhooks (email is read by polling).
pub fn takes_webhooks(kind: ChannelKind) -> bool {
    kind != ChannelKind::Email
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Checks a webhook's signature over its raw body, before anything of it is read.
pub fn verify(
    config: &ChannelConfig,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), Unauthorized> {
    match config {
        ChannelConfig::Whatsapp(c) => verify::whatsapp(
            c.app_secret.expose(),
            header(headers, "x-hub-signature-256"),
            body,
        ),
        ChannelConfig::Slack(c) => verify::slack(
            c.signing_secret.expose(),
            header(headers, "x-slack-request-timestamp"),
            header(headers, "x-slack-signature"),
            body,
            now,
        ),
        ChannelConfig::Telegram(c) => verify::token(
            c.secret_token.expose(),
            header(headers, "x-telegram-bot-api-secret-token"),
        ),
        ChannelConfig::Generic(c) => verify::generic(
            c.signing_secret.expose(),
            header(headers, "x-steward-timestamp"),
            header(headers, "x-steward-signature"),
            body,
            now,
        ),
        ChannelConfig::Email(_) => Err(Unauthorized::Missing),
    }
}

/// Reads a verified webhook's payload.
pub fn parse(config: &ChannelConfig, body: &[u8]) -> Result<Inbound, Malformed> {
    match config {
        ChannelConfig::Whatsapp(c) => inbound::whatsapp(body, &c.phone_number_id),
        ChannelConfig::Slack(_) => inbound::slack(body),
        ChannelConfig::Telegram(_) => inbound::telegram(body),
        ChannelConfig::Generic(_) => inbound::generic(body),
        ChannelConfig::Email(_) => Ok(Inbound::Ignored("email is read from its mailbox")),
    }
}

/// A provider's check that a webhook URL is its own (`GET` on the URL).
#[derive(Debug, PartialEq, Eq)]
pub enum Subscription {
    /// Echo this back.
    Confirmed(String),
    /// The check's token is not the channel's.
    Refused,
    /// This kind of channel makes no such check.
    NotOffered,
}

/// WhatsApp's subscription handshake: `hub.challenge` is echoed only when
/// `hub.verify_token` is the channel's.
pub fn subscribe(config: &ChannelConfig, query: &HashMap<String, String>) -> Subscription {
    let ChannelConfig::Whatsapp(c) = config else {
        return Subscription::NotOffered;
    };
    let token = query.get("hub.verify_token").map(String::as_str);
    let matches = query.get("hub.mode").map(String::as_str) == Some("subscribe")
        && verify::token(c.verify_token.expose(), token).is_ok();
    match (matches, query.get("hub.challenge")) {
        (true, Some(challenge)) => Subscription::Confirmed(challenge.clone()),
        _ => Subscription::Refused,
    }
}

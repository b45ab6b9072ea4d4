//! A provider's webhook, as the API sees it: whether a kind takes webhooks,
//! one check of the request's signature and one reading of its payload,
//! whatever the provider. Each provider's module knows its own headers and
//! scheme; the API knows none of them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use http::HeaderMap;
use steward_domain::ChannelKind;

use crate::config::ChannelConfig;
use crate::inbound::{Inbound, Malformed};
use crate::signature::Unauthorized;
use crate::teams::auth::BotFrameworkKeys;
use crate::{generic, slack, teams, telegram, whatsapp};

/// Whether channels of this kind receive webhooks (email is read by
/// polling; the web chat's visitors post to Steward's own chat routes).
pub fn takes_webhooks(kind: ChannelKind) -> bool {
    !matches!(kind, ChannelKind::Email | ChannelKind::Web)
}

/// What checking webhooks needs beyond each channel's own secrets: the
/// keys a provider signs tokens with, kept between webhooks (Teams).
pub struct Verifier {
    pub teams: BotFrameworkKeys,
}

impl Verifier {
    /// Checks a webhook's signature over its raw body (or its bearer token,
    /// against the body), before anything of it is read.
    pub async fn verify(
        &self,
        config: &ChannelConfig,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), Unauthorized> {
        match config {
            ChannelConfig::Whatsapp(c) => whatsapp::verify(c, headers, body),
            ChannelConfig::Slack(c) => slack::verify(c, headers, body, now),
            ChannelConfig::Telegram(c) => telegram::verify(c, headers),
            ChannelConfig::Teams(c) => self.teams.verify(c, headers, body).await,
            ChannelConfig::Generic(c) => generic::verify(c, headers, body, now),
            ChannelConfig::Email(_) | ChannelConfig::Web(_) => Err(Unauthorized::Missing),
        }
    }
}

/// Reads a verified webhook's payload.
pub fn parse(config: &ChannelConfig, body: &[u8]) -> Result<Inbound, Malformed> {
    match config {
        ChannelConfig::Whatsapp(c) => whatsapp::parse(c, body),
        ChannelConfig::Slack(_) => slack::parse(body),
        ChannelConfig::Telegram(_) => telegram::parse(body),
        ChannelConfig::Teams(c) => teams::parse(c, body),
        ChannelConfig::Generic(_) => generic::parse(body),
        ChannelConfig::Email(_) => Ok(Inbound::Ignored("email is read from its mailbox")),
        ChannelConfig::Web(_) => Ok(Inbound::Ignored("the web chat takes no webhooks")),
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

/// Answers a provider's subscription check (only WhatsApp makes one).
pub fn subscribe(config: &ChannelConfig, query: &HashMap<String, String>) -> Subscription {
    match config {
        ChannelConfig::Whatsapp(c) => whatsapp::subscribe(c, query),
        _ => Subscription::NotOffered,
    }
}

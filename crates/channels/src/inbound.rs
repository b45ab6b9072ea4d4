//! What a provider's payload becomes once read: [`InboundMessage`]s from
//! people, each with the [`Route`] its reply takes back. Only text messages
//! from people become messages; status callbacks, reactions, edits, joins and
//! the bot's own messages are acknowledged and ignored.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use steward_domain::{ChannelKind, Rating};

use crate::{email, generic, slack, teams, telegram, web, whatsapp};

/// One message from a person, as every channel looks after parsing.
#[derive(Clone, Debug, PartialEq)]
pub struct InboundMessage {
    /// The provider's id for it: unique per channel, the key that makes a
    /// retried webhook a duplicate.
    pub external_id: String,
    /// The person or thread it belongs to: one conversation per key.
    pub conversation_key: String,
    /// Who wrote it, by the provider's handle for them (a phone number, a
    /// Slack member id, an email address…), and the name it gives, if any.
    pub sender: String,
    pub sender_name: Option<String>,
    /// Forwarded to the assistant rather than written to it (an email
    /// forwarded, a Slack message shared, a WhatsApp or Telegram message
    /// marked forwarded).
    pub forwarded: bool,
    pub text: String,
    pub route: Route,
}

/// Where a reply to a message goes, in its provider's terms. Stored as the
/// inbound message's metadata (the JSON of the provider's route), and read
/// back by the `deliver` job according to the channel's kind.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Route {
    Whatsapp(whatsapp::Route),
    Slack(slack::Route),
    Telegram(telegram::Route),
    Teams(teams::Route),
    Email(email::Route),
    Generic(generic::Route),
    Web(web::Route),
}

impl Route {
    /// The metadata stored with the inbound message.
    pub fn to_meta(&self) -> Value {
        serde_json::to_value(self).expect("a route serializes")
    }

    /// The route stored with a message of a `kind` channel.
    pub fn from_meta(kind: ChannelKind, meta: Value) -> Result<Self, serde_json::Error> {
        Ok(match kind {
            ChannelKind::Whatsapp => Self::Whatsapp(serde_json::from_value(meta)?),
            ChannelKind::Slack => Self::Slack(serde_json::from_value(meta)?),
            ChannelKind::Telegram => Self::Telegram(serde_json::from_value(meta)?),
            ChannelKind::Teams => Self::Teams(serde_json::from_value(meta)?),
            ChannelKind::Email => Self::Email(serde_json::from_value(meta)?),
            ChannelKind::Generic => Self::Generic(serde_json::from_value(meta)?),
            ChannelKind::Web => Self::Web(serde_json::from_value(meta)?),
        })
    }
}

/// A person's 👍 or 👎 on a reply Steward sent, or its removal: feedback.
#[derive(Clone, Debug, PartialEq)]
pub struct Reaction {
    /// Who reacted, by the provider's handle for them.
    pub sender: String,
    /// The provider's id of the message reacted to.
    pub target: String,
    pub change: ReactionChange,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReactionChange {
    Rate(Rating),
    /// Taken back: the rating this reaction gave, or whatever it gave
    /// (WhatsApp says only that the reaction is gone).
    Withdraw(Option<Rating>),
}

/// The rating an emoji gives, by its character or Slack's name, any skin
/// tone; None for every other emoji.
pub fn rating_of(emoji: &str) -> Option<Rating> {
    let base = emoji.split("::").next().unwrap_or(emoji);
    match base {
        "+1" | "thumbsup" => Some(Rating::Up),
        "-1" | "thumbsdown" => Some(Rating::Down),
        _ if emoji.starts_with('\u{1F44D}') => Some(Rating::Up),
        _ if emoji.starts_with('\u{1F44E}') => Some(Rating::Down),
        _ => None,
    }
}

#[derive(Debug, PartialEq)]
pub enum Inbound {
    Messages(Vec<InboundMessage>),
    /// Messages and reactions to replies, in one payload.
    Events {
        messages: Vec<InboundMessage>,
        reactions: Vec<Reaction>,
    },
    /// Slack's `url_verification`: answer with this challenge.
    Challenge(String),
    /// The bot was added to a conversation: greet it with `text` (the
    /// channel's greeting), once per `key` (the provider's id for the event).
    Greet {
        key: String,
        route: Route,
        text: String,
    },
    /// Acknowledged, and nothing stored.
    Ignored(&'static str),
}

#[derive(Debug, thiserror::Error)]
#[error("malformed payload: {0}")]
pub struct Malformed(pub String);

/// A JSON payload read into the provider's type.
pub(crate) fn json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Malformed> {
    serde_json::from_slice(body).map_err(|e| Malformed(e.to_string()))
}

/// The messages found, or why there were none.
pub(crate) fn messages(found: Vec<InboundMessage>, otherwise: &'static str) -> Inbound {
    if found.is_empty() {
        Inbound::Ignored(otherwise)
    } else {
        Inbound::Messages(found)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Metadata stored by earlier versions reads back as the same route, and
    /// writes back unchanged: a deployed database's messages stay answerable.
    #[test]
    fn stored_metadata_reads_back_as_its_route() {
        let stored = [
            (
                ChannelKind::Whatsapp,
                json!({ "to": "16505551234", "reply_to": "wamid.X" }),
            ),
            (
                ChannelKind::Slack,
                json!({ "channel": "C1", "thread_ts": null, "ts": "1.1", "user": "U1" }),
            ),
            (
                ChannelKind::Telegram,
                json!({ "chat_id": -100, "reply_to_message_id": 5, "message_thread_id": null }),
            ),
            (
                ChannelKind::Email,
                json!({ "from": "a@example.org", "subject": "Hi", "message_id": "m@x", "references": ["r@x"] }),
            ),
            (
                ChannelKind::Generic,
                json!({ "id": "m1", "user": "u1", "conversation": "c1" }),
            ),
        ];
        for (kind, meta) in stored {
            let route = Route::from_meta(kind, meta.clone()).unwrap();
            assert_eq!(route.to_meta(), meta, "{kind}");
        }
        assert!(Route::from_meta(ChannelKind::Telegram, json!({ "chat_id": "x" })).is_err());
        assert!(Route::from_meta(ChannelKind::Whatsapp, json!(null)).is_err());
    }
}

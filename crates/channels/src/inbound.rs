//! Webhook payloads, per provider, normalized into [`InboundMessage`]s. Only
//! text messages from people become messages; status callbacks, reactions,
//! edits, joins and the bot's own messages are acknowledged and ignored.

use serde::Deserialize;
use serde_json::{Value, json};

/// One message from a person, as every channel looks after parsing.
#[derive(Clone, Debug, PartialEq)]
pub struct InboundMessage {
    /// The provider's id for it: unique per channel, the key that makes a
    /// retried webhook a duplicate.
    pub external_id: String,
    /// The person or thread it belongs to: one conversation per key.
    pub conversation_key: String,
    pub text: String,
    /// What a reply needs to find its way back.
    pub meta: Value,
}

#[derive(Debug, PartialEq)]
pub enum Inbound {
    Messages(Vec<InboundMessage>),
    /// Slack's `url_verification`: answer with this challenge.
    Challenge(String),
    /// Acknowledged, and nothing stored.
    Ignored(&'static str),
}

#[derive(Debug, thiserror::Error)]
#[error("malformed payload: {0}")]
pub struct Malformed(pub String);

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Malformed> {
    serde_json::from_slice(body).map_err(|e| Malformed(e.to_string()))
}

fn messages(found: Vec<InboundMessage>, otherwise: &'static str) -> Inbound {
    if found.is_empty() {
        Inbound::Ignored(otherwise)
    } else {
        Inbound::Messages(found)
    }
}

// --- WhatsApp Cloud API ---

#[derive(Deserialize)]
struct WaPayload {
    object: String,
    #[serde(default)]
    entry: Vec<WaEntry>,
}

#[derive(Deserialize)]
struct WaEntry {
    #[serde(default)]
    changes: Vec<WaChange>,
}

#[derive(Deserialize)]
struct WaChange {
    field: String,
    value: WaValue,
}

#[derive(Deserialize)]
struct WaValue {
    metadata: Option<WaMetadata>,
    #[serde(default)]
    messages: Vec<WaMessage>,
}

#[derive(Deserialize)]
struct WaMetadata {
    phone_number_id: String,
}

#[derive(Deserialize)]
struct WaMessage {
    from: String,
    id: String,
    #[serde(rename = "type")]
    kind: String,
    text: Option<WaText>,
}

#[derive(Deserialize)]
struct WaText {
    body: String,
}

/// Messages sent to the configured number. A webhook may carry several, and
/// status updates (sent, delivered, read) that are ignored.
pub fn whatsapp(body: &[u8], phone_number_id: &str) -> Result<Inbound, Malformed> {
    let payload: WaPayload = parse(body)?;
    if payload.object != "whatsapp_business_account" {
        return Ok(Inbound::Ignored("not a WhatsApp Business Account event"));
    }
    let mut found = Vec::new();
    for change in payload.entry.iter().flat_map(|e| &e.changes) {
        if change.field != "messages" {
            continue;
        }
        let to_us = change
            .value
            .metadata
            .as_ref()
            .is_some_and(|m| m.phone_number_id == phone_number_id);
        if !to_us {
            continue;
        }
        for message in &change.value.messages {
            let Some(text) = message.text.as_ref().filter(|_| message.kind == "text") else {
                continue;
            };
            found.push(InboundMessage {
                external_id: message.id.clone(),
                conversation_key: message.from.clone(),
                text: text.body.clone(),
                meta: json!({ "to": message.from, "reply_to": message.id }),
            });
        }
    }
    Ok(messages(
        found,
        "no text message to this number (a status update or other event)",
    ))
}

// --- Slack Events API ---

#[derive(Deserialize)]
struct SlackEnvelope {
    #[serde(rename = "type")]
    kind: String,
    challenge: Option<String>,
    event_id: Option<String>,
    event: Option<SlackEvent>,
    #[serde(default)]
    authorizations: Vec<SlackAuthorization>,
}

#[derive(Deserialize)]
struct SlackAuthorization {
    user_id: Option<String>,
}

#[derive(Deserialize)]
struct SlackEvent {
    #[serde(rename = "type")]
    kind: String,
    subtype: Option<String>,
    user: Option<String>,
    bot_id: Option<String>,
    text: Option<String>,
    channel: Option<String>,
    channel_type: Option<String>,
    ts: Option<String>,
    thread_ts: Option<String>,
}

/// `url_verification`, and `message` / `app_mention` events from people.
/// A direct message outside a thread belongs to the person's one conversation;
/// anything else to its thread, where the reply goes too.
pub fn slack(body: &[u8]) -> Result<Inbound, Malformed> {
    let envelope: SlackEnvelope = parse(body)?;
    match envelope.kind.as_str() {
        "url_verification" => {
            let challenge = envelope
                .challenge
                .ok_or_else(|| Malformed("url_verification without a challenge".into()))?;
            return Ok(Inbound::Challenge(challenge));
        }
        "event_callback" => {}
        _ => return Ok(Inbound::Ignored("not an event callback")),
    }
    let event_id = envelope
        .event_id
        .ok_or_else(|| Malformed("event_callback without an event_id".into()))?;
    let Some(event) = envelope.event else {
        return Err(Malformed("event_callback without an event".into()));
    };
    if event.kind != "message" && event.kind != "app_mention" {
        return Ok(Inbound::Ignored("not a message event"));
    }
    // Edits, deletions, joins and bot posts all come as subtypes.
    if event.subtype.is_some() || event.bot_id.is_some() {
        return Ok(Inbound::Ignored("not a new message from a person"));
    }
    let (Some(user), Some(channel), Some(ts), Some(text)) =
        (event.user, event.channel, event.ts, event.text)
    else {
        return Ok(Inbound::Ignored(
            "message without a user, channel, ts or text",
        ));
    };
    let ours = envelope
        .authorizations
        .iter()
        .any(|a| a.user_id.as_deref() == Some(user.as_str()));
    if ours {
        return Ok(Inbound::Ignored("the bot's own message"));
    }
    let direct = event.channel_type.as_deref() == Some("im");
    let (conversation_key, thread_ts) = match (&event.thread_ts, direct) {
        (Some(thread), _) => (format!("{channel}:{thread}"), Some(thread.clone())),
        (None, true) => (channel.clone(), None),
        (None, false) => (format!("{channel}:{ts}"), Some(ts.clone())),
    };
    Ok(Inbound::Messages(vec![InboundMessage {
        external_id: event_id,
        conversation_key,
        text,
        meta: json!({ "channel": channel, "thread_ts": thread_ts, "ts": ts, "user": user }),
    }]))
}

// --- Telegram Bot API ---

#[derive(Deserialize)]
struct TgUpdate {
    update_id: i64,
    message: Option<TgMessage>,
}

#[derive(Deserialize)]
struct TgMessage {
    message_id: i64,
    from: Option<TgUser>,
    chat: TgChat,
    text: Option<String>,
    message_thread_id: Option<i64>,
}

#[derive(Deserialize)]
struct TgUser {
    id: i64,
    #[serde(default)]
    is_bot: bool,
}

#[derive(Deserialize)]
struct TgChat {
    id: i64,
}

/// New text messages from people; edits, channel posts, callbacks and
/// membership changes are other update fields, ignored.
pub fn telegram(body: &[u8]) -> Result<Inbound, Malformed> {
    let update: TgUpdate = parse(body)?;
    let Some(message) = update.message else {
        return Ok(Inbound::Ignored("not a new message"));
    };
    let Some(from) = message.from.filter(|f| !f.is_bot) else {
        return Ok(Inbound::Ignored("not from a person"));
    };
    let Some(text) = message.text else {
        return Ok(Inbound::Ignored("not a text message"));
    };
    Ok(Inbound::Messages(vec![InboundMessage {
        external_id: update.update_id.to_string(),
        conversation_key: format!("{}:{}", message.chat.id, from.id),
        text,
        meta: json!({
            "chat_id": message.chat.id,
            "reply_to_message_id": message.message_id,
            "message_thread_id": message.message_thread_id,
        }),
    }]))
}

// --- Generic signed webhook (Steward's own format) ---

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenericEvent {
    /// "message" (the default); anything else is acknowledged and ignored.
    #[serde(rename = "type", default)]
    kind: Option<String>,
    id: String,
    user: String,
    conversation: Option<String>,
    text: Option<String>,
}

/// `{"id", "user", "text", "conversation"?, "type"?}`: `id` is unique per
/// message; `conversation` (default: the user) groups messages.
pub fn generic(body: &[u8]) -> Result<Inbound, Malformed> {
    let event: GenericEvent = parse(body)?;
    if event.kind.as_deref().is_some_and(|k| k != "message") {
        return Ok(Inbound::Ignored("not a message event"));
    }
    if event.id.is_empty()
        || event.id.len() > 256
        || event.user.is_empty()
        || event.user.len() > 256
    {
        return Err(Malformed("id and user must be 1 to 256 characters".into()));
    }
    let Some(text) = event.text else {
        return Err(Malformed("a message event needs a text".into()));
    };
    let conversation = event.conversation.unwrap_or_else(|| event.user.clone());
    Ok(Inbound::Messages(vec![InboundMessage {
        external_id: event.id.clone(),
        conversation_key: conversation.clone(),
        text,
        meta: json!({ "id": event.id, "user": event.user, "conversation": conversation }),
    }]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whatsapp_text_messages_become_messages_and_statuses_are_ignored() {
        // The shape of Meta's documented "messages" webhook for a text message.
        let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Sheena Nelson"},"wa_id":"16505551234"}],"messages":[{"from":"16505551234","id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=","timestamp":"1749416383","text":{"body":"Does it come in another color?"},"type":"text"}]},"field":"messages"}]}]}"#;
        let Inbound::Messages(found) = whatsapp(body, "106540352242922").unwrap() else {
            panic!("a message")
        };
        assert_eq!(found[0].text, "Does it come in another color?");
        assert_eq!(found[0].conversation_key, "16505551234");
        assert_eq!(
            whatsapp(body, "999").unwrap(),
            Inbound::Ignored("no text message to this number (a status update or other event)")
        );
        let status = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"1","phone_number_id":"106540352242922"},"statuses":[{"id":"wamid.x","status":"delivered","timestamp":"1","recipient_id":"1"}]},"field":"messages"}]}]}"#;
        assert!(matches!(
            whatsapp(status, "106540352242922").unwrap(),
            Inbound::Ignored(_)
        ));
        assert!(whatsapp(b"{", "1").is_err());
    }

    #[test]
    fn slack_keeps_threads_and_ignores_bots_edits_and_itself() {
        let event = |extra: &str| {
            format!(
                r#"{{"type":"event_callback","event_id":"Ev1","authorizations":[{{"user_id":"UBOT","is_bot":true}}],"event":{{"type":"message","channel":"C1","user":"U1","text":"hi","ts":"1.1"{extra}}}}}"#
            )
        };
        let Inbound::Messages(found) = slack(event("").as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(found[0].conversation_key, "C1:1.1");
        assert_eq!(found[0].meta["thread_ts"], "1.1");
        let Inbound::Messages(found) = slack(event(r#","thread_ts":"0.5""#).as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(found[0].conversation_key, "C1:0.5");
        let Inbound::Messages(found) = slack(event(r#","channel_type":"im""#).as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(found[0].conversation_key, "C1");
        assert_eq!(found[0].meta["thread_ts"], Value::Null);
        for ignored in [r#","subtype":"message_changed""#, r#","bot_id":"B1""#] {
            assert!(matches!(
                slack(event(ignored).as_bytes()).unwrap(),
                Inbound::Ignored(_)
            ));
        }
        let own = event("").replace(r#""user":"U1""#, r#""user":"UBOT""#);
        assert_eq!(
            slack(own.as_bytes()).unwrap(),
            Inbound::Ignored("the bot's own message")
        );
        assert_eq!(
            slack(br#"{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#).unwrap(),
            Inbound::Challenge("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P".into())
        );
    }

    #[test]
    fn telegram_messages_from_people_only() {
        let body = br#"{"update_id":10000,"message":{"date":1441645532,"chat":{"last_name":"Test Lastname","id":1111111,"first_name":"Test","username":"Test","type":"private"},"message_id":1365,"from":{"last_name":"Test Lastname","id":1111111,"first_name":"Test","username":"Test","is_bot":false},"text":"/start"}}"#;
        let Inbound::Messages(found) = telegram(body).unwrap() else {
            panic!()
        };
        assert_eq!(found[0].external_id, "10000");
        assert_eq!(found[0].conversation_key, "1111111:1111111");
        let edited = br#"{"update_id":10001,"edited_message":{"date":1,"chat":{"id":1,"type":"private"},"message_id":1,"from":{"id":1,"is_bot":false,"first_name":"T"},"text":"x"}}"#;
        assert!(matches!(telegram(edited).unwrap(), Inbound::Ignored(_)));
        let sticker = br#"{"update_id":10002,"message":{"date":1,"chat":{"id":1,"type":"private"},"message_id":2,"from":{"id":1,"is_bot":false,"first_name":"T"},"sticker":{}}}"#;
        assert!(matches!(telegram(sticker).unwrap(), Inbound::Ignored(_)));
    }

    #[test]
    fn generic_requires_an_id_a_user_and_a_text() {
        let Inbound::Messages(found) =
            generic(br#"{"id":"m1","user":"u1","text":"hello"}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(found[0].conversation_key, "u1");
        assert!(generic(br#"{"id":"m1","user":"u1"}"#).is_err());
        assert!(generic(br#"{"id":"","user":"u1","text":"x"}"#).is_err());
        assert!(generic(br#"{"id":"m1","user":"u1","text":"x","admin":true}"#).is_err());
        assert!(matches!(
            generic(br#"{"type":"typing","id":"m1","user":"u1"}"#).unwrap(),
            Inbound::Ignored(_)
        ));
    }

    #[test]
    fn invalid_utf8_is_malformed_not_a_panic() {
        let body = b"{\"id\":\"m1\",\"user\":\"u\",\"text\":\"\xff\xfe\"}";
        assert!(generic(body).is_err());
        assert!(slack(body).is_err());
        assert!(telegram(body).is_err());
        assert!(whatsapp(body, "1").is_err());
    }
}

//! WhatsApp, through Meta's Cloud API: a phone number's webhook (signed
//! `X-Hub-Signature-256`, subscribed by the `hub.verify_token` handshake),
//! and replies sent to `/{phone_number_id}/messages`.

use std::collections::HashMap;

use http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::{Field, FieldRule, SecretText};
use crate::inbound::{self, Inbound, InboundMessage, Malformed, Reaction, ReactionChange};
use crate::send::{Part, SendError, Sender, call};
use crate::signature::{self, Unauthorized, header, hmac_hex};
use crate::webhook::Subscription;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub phone_number_id: String,
    pub access_token: SecretText,
    pub app_secret: SecretText,
    pub verify_token: SecretText,
}

pub(crate) const FIELDS: &[Field] = &[
    Field::setting("phone_number_id", FieldRule::Digits(32), true),
    Field::secret("access_token", FieldRule::Text),
    Field::secret("app_secret", FieldRule::Text),
    Field::secret("verify_token", FieldRule::Text),
];

/// The most characters one message may have.
pub(crate) const PART_LIMIT: usize = 4096;

/// Who a reply goes to, and the message it answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub to: String,
    pub reply_to: String,
}

// --- The webhook ---

/// `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, body)>`.
pub(crate) fn verify(c: &Config, headers: &HeaderMap, body: &[u8]) -> Result<(), Unauthorized> {
    let given = header(headers, "x-hub-signature-256").ok_or(Unauthorized::Missing)?;
    let given = given
        .strip_prefix("sha256=")
        .ok_or(Unauthorized::Mismatch)?;
    signature::matches(
        &given.to_ascii_lowercase(),
        &hmac_hex(c.app_secret.expose(), &[body]),
    )
}

/// The `X-Hub-Signature-256` value Meta would send: for tests and the load generator.
pub fn signature(app_secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hmac_hex(app_secret, &[body]))
}

/// Meta's subscription handshake: `hub.challenge` is echoed only when
/// `hub.mode` is `subscribe` and `hub.verify_token` is the channel's.
pub(crate) fn subscribe(c: &Config, query: &HashMap<String, String>) -> Subscription {
    let token = query.get("hub.verify_token").map(String::as_str);
    let matches = query.get("hub.mode").map(String::as_str) == Some("subscribe")
        && signature::token(c.verify_token.expose(), token).is_ok();
    match (matches, query.get("hub.challenge")) {
        (true, Some(challenge)) => Subscription::Confirmed(challenge.clone()),
        _ => Subscription::Refused,
    }
}

#[derive(Deserialize)]
struct Payload {
    object: String,
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct Change {
    field: String,
    value: ChangeValue,
}

#[derive(Deserialize)]
struct ChangeValue {
    metadata: Option<Metadata>,
    #[serde(default)]
    messages: Vec<Message>,
    #[serde(default)]
    contacts: Vec<Contact>,
}

/// The profile of the person who wrote, as WhatsApp sends it beside messages.
#[derive(Deserialize)]
struct Contact {
    wa_id: String,
    profile: Option<Profile>,
}

#[derive(Deserialize)]
struct Profile {
    name: Option<String>,
}

#[derive(Deserialize)]
struct Metadata {
    phone_number_id: String,
}

#[derive(Deserialize)]
struct Message {
    from: String,
    id: String,
    #[serde(rename = "type")]
    kind: String,
    text: Option<Text>,
    reaction: Option<WhatsappReaction>,
    context: Option<Context>,
}

/// What WhatsApp says of where a message came from.
#[derive(Deserialize)]
struct Context {
    #[serde(default)]
    forwarded: bool,
    #[serde(default)]
    frequently_forwarded: bool,
}

/// An emoji put on a message; an empty one takes the reaction back.
#[derive(Deserialize)]
struct WhatsappReaction {
    message_id: String,
    #[serde(default)]
    emoji: String,
}

#[derive(Deserialize)]
struct Text {
    body: String,
}

/// Messages sent to the configured number. A webhook may carry several, and
/// status updates (sent, delivered, read) that are ignored.
pub(crate) fn parse(c: &Config, body: &[u8]) -> Result<Inbound, Malformed> {
    let payload: Payload = inbound::json(body)?;
    if payload.object != "whatsapp_business_account" {
        return Ok(Inbound::Ignored("not a WhatsApp Business Account event"));
    }
    let mut found = Vec::new();
    let mut reactions = Vec::new();
    for change in payload.entry.iter().flat_map(|e| &e.changes) {
        let to_us = change
            .value
            .metadata
            .as_ref()
            .is_some_and(|m| m.phone_number_id == c.phone_number_id);
        if change.field != "messages" || !to_us {
            continue;
        }
        for message in &change.value.messages {
            if let Some(reaction) = message
                .reaction
                .as_ref()
                .filter(|_| message.kind == "reaction")
            {
                // An empty emoji takes the reaction back, and another emoji
                // replaces a 👍 or 👎 given before: both withdraw the rating.
                let change = match inbound::rating_of(&reaction.emoji) {
                    Some(rating) => ReactionChange::Rate(rating),
                    None => ReactionChange::Withdraw(None),
                };
                reactions.push(Reaction {
                    sender: message.from.clone(),
                    target: reaction.message_id.clone(),
                    change,
                });
                continue;
            }
            let Some(text) = message.text.as_ref().filter(|_| message.kind == "text") else {
                continue;
            };
            let name = change
                .value
                .contacts
                .iter()
                .find(|c| c.wa_id == message.from)
                .and_then(|c| c.profile.as_ref()?.name.clone());
            found.push(InboundMessage {
                external_id: message.id.clone(),
                conversation_key: message.from.clone(),
                sender: message.from.clone(),
                sender_name: name,
                forwarded: message
                    .context
                    .as_ref()
                    .is_some_and(|c| c.forwarded || c.frequently_forwarded),
                text: text.body.clone(),
                route: inbound::Route::Whatsapp(Route {
                    to: message.from.clone(),
                    reply_to: message.id.clone(),
                }),
            });
        }
    }
    if !reactions.is_empty() {
        return Ok(Inbound::Events {
            messages: found,
            reactions,
        });
    }
    Ok(inbound::messages(
        found,
        "no text message to this number (a status update or other event)",
    ))
}

// --- Sending ---

pub(crate) async fn send(
    sender: &Sender,
    c: &Config,
    route: &Route,
    part: Part<'_>,
) -> Result<Option<String>, SendError> {
    let url = format!(
        "{}/{}/messages",
        sender.apis.whatsapp.trim_end_matches('/'),
        c.phone_number_id
    );
    let body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": route.to,
        "type": "text",
        "text": { "preview_url": false, "body": part.text },
    });
    let request = sender.client.post(url).bearer_auth(c.access_token.expose());
    let answer = call(request.json(&body)).await?;
    Ok(answer["messages"][0]["id"].as_str().map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            phone_number_id: "106540352242922".into(),
            access_token: SecretText::from("t"),
            app_secret: SecretText::from("app"),
            verify_token: SecretText::from("v"),
        }
    }

    #[test]
    fn text_messages_become_messages_and_statuses_are_ignored() {
        // The shape of Meta's documented "messages" webhook for a text message.
        let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Sheena Nelson"},"wa_id":"16505551234"}],"messages":[{"from":"16505551234","id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=","timestamp":"1749416383","text":{"body":"Does it come in another color?"},"type":"text"}]},"field":"messages"}]}]}"#;
        let Inbound::Messages(found) = parse(&config(), body).unwrap() else {
            panic!("a message")
        };
        assert_eq!(found[0].text, "Does it come in another color?");
        assert_eq!(found[0].conversation_key, "16505551234");
        let other = Config {
            phone_number_id: "999".into(),
            ..config()
        };
        assert_eq!(
            parse(&other, body).unwrap(),
            Inbound::Ignored("no text message to this number (a status update or other event)")
        );
        let status = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"1","phone_number_id":"106540352242922"},"statuses":[{"id":"wamid.x","status":"delivered","timestamp":"1","recipient_id":"1"}]},"field":"messages"}]}]}"#;
        assert!(matches!(
            parse(&config(), status).unwrap(),
            Inbound::Ignored(_)
        ));
        assert!(parse(&config(), b"{").is_err());
        assert!(parse(&config(), b"{\"object\":\"\xff\xfe\"}").is_err());
    }

    #[test]
    fn reactions_to_messages_become_ratings_or_take_them_back() {
        // Meta's documented "reaction" message.
        let body = |emoji: &str| {
            format!(
                r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"1","phone_number_id":"106540352242922"}},"contacts":[{{"profile":{{"name":"Sheena Nelson"}},"wa_id":"16505551234"}}],"messages":[{{"from":"16505551234","id":"wamid.r1","timestamp":"1","type":"reaction","reaction":{{"message_id":"wamid.reply","emoji":"{emoji}"}}}}]}}}}]}}]}}"#
            )
        };
        let reaction = |emoji: &str| match parse(&config(), body(emoji).as_bytes()).unwrap() {
            Inbound::Events {
                messages,
                mut reactions,
            } => {
                assert!(messages.is_empty());
                let reaction = reactions.remove(0);
                assert_eq!(
                    (reaction.sender.as_str(), reaction.target.as_str()),
                    ("16505551234", "wamid.reply")
                );
                reaction.change
            }
            other => panic!("{other:?}"),
        };
        use steward_domain::Rating;
        // With a skin tone, too.
        assert_eq!(
            reaction("\u{1F44D}\u{1F3FD}"),
            ReactionChange::Rate(Rating::Up)
        );
        assert_eq!(reaction("\u{1F44E}"), ReactionChange::Rate(Rating::Down));
        assert_eq!(reaction(""), ReactionChange::Withdraw(None));
        assert_eq!(reaction("\u{2764}\u{FE0F}"), ReactionChange::Withdraw(None));
    }

    #[test]
    fn tampered_and_missing_signatures_are_refused() {
        let signed = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("x-hub-signature-256", value.parse().unwrap());
            headers
        };
        let good = signature("app", b"body");
        verify(&config(), &signed(&good), b"body").unwrap();
        let upper = good.to_uppercase().replace("SHA256=", "sha256=");
        verify(&config(), &signed(&upper), b"body").unwrap();
        assert_eq!(
            verify(&config(), &signed(&good), b"bodY"),
            Err(Unauthorized::Mismatch)
        );
        assert_eq!(
            verify(&config(), &signed("md5=00"), b"body"),
            Err(Unauthorized::Mismatch)
        );
        assert_eq!(
            verify(&config(), &HeaderMap::new(), b"body"),
            Err(Unauthorized::Missing)
        );
    }

    #[test]
    fn the_subscription_handshake_needs_the_channels_token() {
        let query = |mode: &str, token: &str| {
            HashMap::from([
                ("hub.mode".to_owned(), mode.to_owned()),
                ("hub.verify_token".to_owned(), token.to_owned()),
                ("hub.challenge".to_owned(), "1158201444".to_owned()),
            ])
        };
        assert_eq!(
            subscribe(&config(), &query("subscribe", "v")),
            Subscription::Confirmed("1158201444".into())
        );
        assert_eq!(
            subscribe(&config(), &query("subscribe", "w")),
            Subscription::Refused
        );
        assert_eq!(
            subscribe(&config(), &query("unsubscribe", "v")),
            Subscription::Refused
        );
    }
}

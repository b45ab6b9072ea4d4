//! Telegram, through the Bot API: the bot's webhook (authenticated by the
//! `secret_token` given to `setWebhook`, sent back as
//! `X-Telegram-Bot-Api-Secret-Token`), and replies sent with `sendMessage`.

use http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::{Field, FieldRule, SecretText};
use crate::inbound::{self, Inbound, InboundMessage, Malformed};
use crate::send::{Part, SendError, Sender, call};
use crate::signature::{self, Unauthorized, header};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub bot_token: SecretText,
    pub secret_token: SecretText,
}

pub(crate) const FIELDS: &[Field] = &[
    Field::secret("bot_token", FieldRule::Text),
    Field::secret("secret_token", FieldRule::Token(256)),
];

/// The most characters one message may have.
pub(crate) const PART_LIMIT: usize = 4096;

/// The chat a reply goes to, the message it quotes, and the forum topic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub chat_id: i64,
    #[serde(default)]
    pub reply_to_message_id: Option<i64>,
    #[serde(default)]
    pub message_thread_id: Option<i64>,
}

// --- The webhook ---

/// `X-Telegram-Bot-Api-Secret-Token`: the channel's `secret_token`, as it is.
pub(crate) fn verify(c: &Config, headers: &HeaderMap) -> Result<(), Unauthorized> {
    signature::token(
        c.secret_token.expose(),
        header(headers, "x-telegram-bot-api-secret-token"),
    )
}

#[derive(Deserialize)]
struct Update {
    update_id: i64,
    message: Option<Message>,
}

#[derive(Deserialize)]
struct Message {
    message_id: i64,
    from: Option<User>,
    chat: Chat,
    text: Option<String>,
    message_thread_id: Option<i64>,
    /// Where a forwarded message came from (`forward_date` before Bot API 7).
    forward_origin: Option<serde_json::Value>,
    forward_date: Option<i64>,
}

#[derive(Deserialize)]
struct User {
    id: i64,
    #[serde(default)]
    is_bot: bool,
    first_name: Option<String>,
    last_name: Option<String>,
}

#[derive(Deserialize)]
struct Chat {
    id: i64,
}

/// New text messages from people; edits, channel posts, callbacks and
/// membership changes are other update fields, ignored.
pub(crate) fn parse(body: &[u8]) -> Result<Inbound, Malformed> {
    let update: Update = inbound::json(body)?;
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
        sender: from.id.to_string(),
        sender_name: [from.first_name, from.last_name]
            .into_iter()
            .flatten()
            .reduce(|first, last| format!("{first} {last}")),
        forwarded: message.forward_origin.is_some() || message.forward_date.is_some(),
        text,
        route: inbound::Route::Telegram(Route {
            chat_id: message.chat.id,
            reply_to_message_id: Some(message.message_id),
            message_thread_id: message.message_thread_id,
        }),
    }]))
}

// --- Sending ---

pub(crate) async fn send(
    sender: &Sender,
    c: &Config,
    route: &Route,
    part: Part<'_>,
) -> Result<Option<String>, SendError> {
    let mut body = json!({ "chat_id": route.chat_id, "text": part.text });
    // Only the first part quotes the message it answers.
    if let (0, Some(reply_to)) = (part.index, route.reply_to_message_id) {
        body["reply_parameters"] =
            json!({ "message_id": reply_to, "allow_sending_without_reply": true });
    }
    if let Some(thread) = route.message_thread_id {
        body["message_thread_id"] = thread.into();
    }
    let url = format!(
        "{}/bot{}/sendMessage",
        sender.apis.telegram.trim_end_matches('/'),
        c.bot_token.expose()
    );
    let answer = call(sender.client.post(url).json(&body)).await?;
    Ok(answer["result"]["message_id"]
        .as_i64()
        .map(|id| id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_from_people_only() {
        let body = br#"{"update_id":10000,"message":{"date":1441645532,"chat":{"last_name":"Test Lastname","id":1111111,"first_name":"Test","username":"Test","type":"private"},"message_id":1365,"from":{"last_name":"Test Lastname","id":1111111,"first_name":"Test","username":"Test","is_bot":false},"text":"/start"}}"#;
        let Inbound::Messages(found) = parse(body).unwrap() else {
            panic!()
        };
        assert_eq!(found[0].external_id, "10000");
        assert_eq!(found[0].conversation_key, "1111111:1111111");
        let edited = br#"{"update_id":10001,"edited_message":{"date":1,"chat":{"id":1,"type":"private"},"message_id":1,"from":{"id":1,"is_bot":false,"first_name":"T"},"text":"x"}}"#;
        assert!(matches!(parse(edited).unwrap(), Inbound::Ignored(_)));
        let sticker = br#"{"update_id":10002,"message":{"date":1,"chat":{"id":1,"type":"private"},"message_id":2,"from":{"id":1,"is_bot":false,"first_name":"T"},"sticker":{}}}"#;
        assert!(matches!(parse(sticker).unwrap(), Inbound::Ignored(_)));
        assert!(parse(b"{\"update_id\":\"\xff\xfe\"}").is_err());
    }

    #[test]
    fn the_secret_token_must_be_the_channels() {
        let config = Config {
            bot_token: SecretText::from("1:x"),
            secret_token: SecretText::from("tok"),
        };
        let with = |token: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("x-telegram-bot-api-secret-token", token.parse().unwrap());
            headers
        };
        verify(&config, &with("tok")).unwrap();
        assert_eq!(verify(&config, &with("tok2")), Err(Unauthorized::Mismatch));
        assert_eq!(
            verify(&config, &HeaderMap::new()),
            Err(Unauthorized::Missing)
        );
    }
}

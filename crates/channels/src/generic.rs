//! The generic channel, in Steward's own signed format, for any system that
//! can POST JSON: its webhook and the replies Steward POSTs to the channel's
//! reply URL are signed alike, `X-Steward-Signature: sha256=<hex
//! HMAC-SHA256(secret, "{timestamp}.{body}")>` over
//! `X-Steward-Timestamp: {unix seconds}`.

use chrono::{DateTime, Utc};
use http::HeaderMap;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use steward_outbound::Guard;

use crate::config::{Field, FieldRule, SecretText};
use crate::inbound::{self, Inbound, InboundMessage, Malformed};
use crate::send::{MAX_RETRY_AFTER, Part, SendError, Sender, header_secs, retry};
use crate::signature::{Unauthorized, header, hmac_hex, timestamped};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub signing_secret: SecretText,
    /// Replies are POSTed here, signed like the webhooks Steward receives.
    pub reply_url: String,
}

pub(crate) const FIELDS: &[Field] = &[
    Field::secret("signing_secret", FieldRule::Text),
    Field::setting("reply_url", FieldRule::CallbackUrl, true),
];

/// The message a reply answers, as the sender named it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub id: String,
    pub user: String,
    pub conversation: String,
}

// --- The webhook ---

pub(crate) fn verify(
    c: &Config,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), Unauthorized> {
    check(
        c.signing_secret.expose(),
        header(headers, "x-steward-timestamp"),
        header(headers, "x-steward-signature"),
        body,
        now,
    )
}

/// Checks a body signed in Steward's scheme: what a receiver of Steward's
/// replies does (and what the tests do for it).
pub fn check(
    signing_secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), Unauthorized> {
    timestamped(timestamp, signature, now, |ts| {
        self::signature(signing_secret, ts, body)
    })
}

/// The `X-Steward-Signature` value for a body sent at `timestamp`.
pub fn signature(signing_secret: &str, timestamp: &str, body: &[u8]) -> String {
    let signed = hmac_hex(signing_secret, &[timestamp.as_bytes(), b".", body]);
    format!("sha256={signed}")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Event {
    /// "message" (the default); anything else is acknowledged and ignored.
    #[serde(rename = "type", default)]
    kind: Option<String>,
    id: String,
    user: String,
    conversation: Option<String>,
    text: Option<String>,
    /// Forwarded to the assistant rather than written to it.
    #[serde(default)]
    forwarded: bool,
}

/// `{"id", "user", "text", "conversation"?, "type"?, "forwarded"?}`: `id` is
/// unique per message; `conversation` (default: the user) groups messages.
pub(crate) fn parse(body: &[u8]) -> Result<Inbound, Malformed> {
    let event: Event = inbound::json(body)?;
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
        sender: event.user.clone(),
        sender_name: None,
        forwarded: event.forwarded,
        text,
        route: inbound::Route::Generic(Route {
            id: event.id,
            user: event.user,
            conversation,
        }),
    }]))
}

// --- Sending ---

/// POSTs one part to the reply URL, signed, with an `Idempotency-Key` the
/// same for every attempt at this part.
pub(crate) async fn send(
    sender: &Sender,
    c: &Config,
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
        "in_reply_to": route.id,
        "user": route.user,
        "conversation": route.conversation,
        "text": part.text,
    })
    .to_string();
    let timestamp = Utc::now().timestamp().to_string();
    let signature = signature(c.signing_secret.expose(), &timestamp, body.as_bytes());
    let url = sender
        .guard
        .check_url(&c.reply_url)
        .map_err(|refused| SendError::Permanent(refused.to_string()))?;
    let host = url.host_str().unwrap_or_default().to_owned();
    let request = sender
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_needs_an_id_a_user_and_a_text() {
        let Inbound::Messages(found) = parse(br#"{"id":"m1","user":"u1","text":"hello"}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(found[0].conversation_key, "u1");
        assert!(parse(br#"{"id":"m1","user":"u1"}"#).is_err());
        assert!(parse(br#"{"id":"","user":"u1","text":"x"}"#).is_err());
        assert!(parse(br#"{"id":"m1","user":"u1","text":"x","admin":true}"#).is_err());
        assert!(matches!(
            parse(br#"{"type":"typing","id":"m1","user":"u1"}"#).unwrap(),
            Inbound::Ignored(_)
        ));
        assert!(parse(b"{\"id\":\"m1\",\"user\":\"u\",\"text\":\"\xff\xfe\"}").is_err());
    }

    #[test]
    fn signatures_are_checked_over_the_timestamp_and_the_body() {
        let now = Utc::now();
        let ts = now.timestamp().to_string();
        let good = signature("s", &ts, b"x");
        check("s", Some(&ts), Some(&good), b"x", now).unwrap();
        assert_eq!(
            check("s", Some(&ts), Some(&good), b"y", now),
            Err(Unauthorized::Mismatch)
        );
        assert_eq!(
            check("s", None, Some(&good), b"x", now),
            Err(Unauthorized::Missing)
        );
        let future = (now.timestamp() + 301).to_string();
        let future_signature = signature("s", &future, b"x");
        assert_eq!(
            check("s", Some(&future), Some(&future_signature), b"x", now),
            Err(Unauthorized::Stale)
        );
    }
}

//! Slack: events arrive through the Events API (a Slack app's event
//! webhook, signed `X-Slack-Signature` over `X-Slack-Request-Timestamp`) or,
//! in Socket Mode, over a WebSocket Steward opens itself ([`socket`]);
//! replies are posted with `chat.postMessage` in the thread they answer.

pub mod connections;
pub mod socket;

use chrono::{DateTime, Utc};
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::{ConfigError, Field, FieldRule, SecretText, invalid};
use crate::inbound::{self, Inbound, InboundMessage, Malformed, Reaction, ReactionChange};
use crate::send::{Part, SendError, Sender, call, retry};
use crate::signature::{Unauthorized, header, hmac_hex, timestamped};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub bot_token: SecretText,
    /// Signs the Events API's requests; Socket Mode has none to sign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<SecretText>,
    #[serde(default)]
    pub mode: Mode,
    /// The app-level token (`xapp-…`) that opens Socket Mode connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_token: Option<SecretText>,
}

/// How events reach Steward.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Slack posts them to the channel's webhook URL.
    #[default]
    Events,
    /// Steward connects to Slack: no public URL needed.
    Socket,
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "events" => Ok(Self::Events),
            "socket" => Ok(Self::Socket),
            _ => Err(serde::de::Error::custom("mode must be events or socket")),
        }
    }
}

impl Config {
    /// What each mode needs: a signing secret for the Events API, an app
    /// token for Socket Mode (and an app token nowhere else).
    pub(crate) fn check_mode(&self) -> Result<(), ConfigError> {
        match (self.mode, &self.signing_secret, &self.app_token) {
            (Mode::Events, None, _) => Err(invalid(
                "config.signing_secret is required (or set config.mode to socket and give config.app_token)",
            )),
            (Mode::Events, _, Some(_)) => Err(invalid(
                "config.app_token is for Socket Mode only: set config.mode to socket, or leave it out",
            )),
            (Mode::Socket, _, None) => Err(invalid(
                "config.app_token is required in Socket Mode: the app-level token (xapp-…) from the app's Basic Information page",
            )),
            _ => Ok(()),
        }
    }
}

/// Whether a stored channel is a Slack channel in Socket Mode (its mode is
/// a setting: no secret need be opened to tell).
pub fn in_socket_mode(channel: &steward_store::Channel) -> bool {
    channel.kind == steward_domain::ChannelKind::Slack && channel.settings["mode"] == "socket"
}

/// Every field a Slack channel takes, in either mode.
pub(crate) const FIELDS: &[Field] = &[
    Field::secret("bot_token", FieldRule::Text),
    Field::optional_secret("signing_secret", FieldRule::Text),
    Field::setting("mode", FieldRule::OneOf(&["events", "socket"]), false),
    Field::optional_secret("app_token", FieldRule::Prefixed(APP_TOKEN_PREFIX)),
];

/// The fields of each mode, as [`Config::check_mode`] takes them.
pub(crate) const SHAPES: &[&[Field]] = &[
    &[
        Field::secret("bot_token", FieldRule::Text),
        Field::secret("signing_secret", FieldRule::Text),
        Field::setting("mode", FieldRule::OneOf(&["events"]), false),
    ],
    &[
        Field::secret("bot_token", FieldRule::Text),
        Field::optional_secret("signing_secret", FieldRule::Text),
        Field::setting("mode", FieldRule::OneOf(&["socket"]), true),
        Field::secret("app_token", FieldRule::Prefixed(APP_TOKEN_PREFIX)),
    ],
];

/// How every Slack app-level token begins.
const APP_TOKEN_PREFIX: &str = "xapp-";

/// Slack truncates at 40,000 characters but advises keeping messages under 4,000.
pub(crate) const PART_LIMIT: usize = 4000;

/// The conversation a reply goes to, and its thread when it has one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub channel: String,
    #[serde(default)]
    pub thread_ts: Option<String>,
    /// The message answered, and who wrote it.
    pub ts: String,
    pub user: String,
}

// --- The webhook ---

/// `X-Slack-Signature: v0=<hex HMAC-SHA256(signing secret, "v0:{ts}:{body}")>`
/// with `X-Slack-Request-Timestamp: {ts}` within five minutes.
pub(crate) fn verify(
    c: &Config,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), Unauthorized> {
    // A Socket Mode channel takes no webhooks: nothing could sign one.
    let secret = c.signing_secret.as_ref().ok_or(Unauthorized::Missing)?;
    timestamped(
        header(headers, "x-slack-request-timestamp"),
        header(headers, "x-slack-signature"),
        now,
        |ts| signature(secret.expose(), ts, body),
    )
}

/// The `X-Slack-Signature` value Slack would send: for tests.
pub fn signature(signing_secret: &str, timestamp: &str, body: &[u8]) -> String {
    let signed = hmac_hex(signing_secret, &[b"v0:", timestamp.as_bytes(), b":", body]);
    format!("v0={signed}")
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    challenge: Option<String>,
    event_id: Option<String>,
    event: Option<Event>,
    #[serde(default)]
    authorizations: Vec<Authorization>,
}

#[derive(Deserialize)]
struct Authorization {
    user_id: Option<String>,
}

#[derive(Deserialize)]
struct Event {
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
    /// A reaction's emoji name, and the message it is on.
    reaction: Option<String>,
    item: Option<ReactedItem>,
    /// A message shared into the conversation comes as an attachment.
    #[serde(default)]
    attachments: Vec<Attachment>,
}

#[derive(Deserialize)]
struct Attachment {
    #[serde(default)]
    is_share: bool,
}

#[derive(Deserialize)]
struct ReactedItem {
    #[serde(rename = "type")]
    kind: String,
    ts: Option<String>,
}

/// `url_verification`, and `message` / `app_mention` events from people.
/// A direct message outside a thread belongs to the person's one conversation;
/// anything else to its thread, where the reply goes too.
pub(crate) fn parse(body: &[u8]) -> Result<Inbound, Malformed> {
    let envelope: Envelope = inbound::json(body)?;
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
    if event.kind == "reaction_added" || event.kind == "reaction_removed" {
        return Ok(reaction(event));
    }
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
    let (conversation_key, thread_ts) = match (event.thread_ts, direct) {
        (Some(thread), _) => (format!("{channel}:{thread}"), Some(thread)),
        (None, true) => (channel.clone(), None),
        (None, false) => (format!("{channel}:{ts}"), Some(ts.clone())),
    };
    Ok(Inbound::Messages(vec![InboundMessage {
        external_id: event_id,
        conversation_key,
        sender: user.clone(),
        sender_name: None,
        forwarded: event.attachments.iter().any(|a| a.is_share),
        text,
        route: inbound::Route::Slack(Route {
            channel,
            thread_ts,
            ts,
            user,
        }),
    }]))
}

/// A 👍 or 👎 put on (or taken off) a message: feedback if the message is
/// one of Steward's replies, which the caller finds by its `ts`.
fn reaction(event: Event) -> Inbound {
    let rating = event.reaction.as_deref().and_then(inbound::rating_of);
    let target = event
        .item
        .filter(|i| i.kind == "message")
        .and_then(|i| i.ts);
    let (Some(rating), Some(target), Some(sender)) = (rating, target, event.user) else {
        return Inbound::Ignored("not a thumbs-up or thumbs-down on a message");
    };
    let change = if event.kind == "reaction_added" {
        ReactionChange::Rate(rating)
    } else {
        ReactionChange::Withdraw(Some(rating))
    };
    Inbound::Events {
        messages: Vec::new(),
        reactions: vec![Reaction {
            sender,
            target,
            change,
        }],
    }
}

// --- Sending ---

pub(crate) async fn send(
    sender: &Sender,
    c: &Config,
    route: &Route,
    part: Part<'_>,
) -> Result<Option<String>, SendError> {
    post_message(
        sender,
        c,
        &route.channel,
        route.thread_ts.as_deref(),
        part.text,
    )
    .await
}

/// `chat.postMessage`: `text` in the conversation `channel` (in the thread
/// `thread_ts`, when given); Slack's id for the message.
pub(crate) async fn post_message(
    sender: &Sender,
    c: &Config,
    channel: &str,
    thread_ts: Option<&str>,
    text: &str,
) -> Result<Option<String>, SendError> {
    let mut body = json!({ "channel": channel, "text": text });
    if let Some(thread) = thread_ts {
        body["thread_ts"] = thread.into();
    }
    let url = format!(
        "{}/chat.postMessage",
        sender.apis.slack.trim_end_matches('/')
    );
    let request = sender.client.post(url).bearer_auth(c.bot_token.expose());
    let answer = call(request.json(&body)).await?;
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

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn signed(secret: &str, timestamp: &str, body: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-slack-request-timestamp", timestamp.parse().unwrap());
        let value = signature(secret, timestamp, body);
        headers.insert("x-slack-signature", value.parse().unwrap());
        headers
    }

    fn config(signing_secret: &str) -> Config {
        Config {
            bot_token: SecretText::from("xoxb-1"),
            signing_secret: Some(SecretText::from(signing_secret)),
            mode: Mode::Events,
            app_token: None,
        }
    }

    #[test]
    fn the_signature_matches_the_documented_example() {
        // The worked example from Slack's "Verifying requests from Slack".
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let secret = "8f742231b10e8888abcd99yyyzzz85a5";
        assert_eq!(
            signature(secret, "1531420618", body),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
        let now = DateTime::from_timestamp(1531420618, 0).unwrap();
        verify(
            &config(secret),
            &signed(secret, "1531420618", body),
            body,
            now,
        )
        .unwrap();
    }

    #[test]
    fn tampered_missing_and_stale_signatures_are_refused() {
        let now = Utc::now();
        let ts = now.timestamp().to_string();
        let good = signed("secret", &ts, b"{}");
        verify(&config("secret"), &good, b"{}", now).unwrap();
        assert_eq!(
            verify(&config("secret"), &good, b"{} ", now),
            Err(Unauthorized::Mismatch)
        );
        assert_eq!(
            verify(&config("other"), &good, b"{}", now),
            Err(Unauthorized::Mismatch)
        );
        let mut unsigned = good.clone();
        unsigned.remove("x-slack-signature");
        assert_eq!(
            verify(&config("secret"), &unsigned, b"{}", now),
            Err(Unauthorized::Missing)
        );
        let old = (now.timestamp() - 301).to_string();
        assert_eq!(
            verify(
                &config("secret"),
                &signed("secret", &old, b"{}"),
                b"{}",
                now
            ),
            Err(Unauthorized::Stale)
        );
        let future = (now.timestamp() + 301).to_string();
        assert_eq!(
            verify(
                &config("secret"),
                &signed("secret", &future, b"{}"),
                b"{}",
                now
            ),
            Err(Unauthorized::Stale)
        );
        assert_eq!(
            verify(
                &config("secret"),
                &signed("secret", "soon", b"{}"),
                b"{}",
                now
            ),
            Err(Unauthorized::Stale)
        );
    }

    #[test]
    fn threads_are_kept_and_bots_edits_and_itself_ignored() {
        let event = |extra: &str| {
            format!(
                r#"{{"type":"event_callback","event_id":"Ev1","authorizations":[{{"user_id":"UBOT","is_bot":true}}],"event":{{"type":"message","channel":"C1","user":"U1","text":"hi","ts":"1.1"{extra}}}}}"#
            )
        };
        let route = |found: &InboundMessage| found.route.to_meta();
        let Inbound::Messages(found) = parse(event("").as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(found[0].conversation_key, "C1:1.1");
        assert_eq!(route(&found[0])["thread_ts"], "1.1");
        let Inbound::Messages(found) = parse(event(r#","thread_ts":"0.5""#).as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(found[0].conversation_key, "C1:0.5");
        let Inbound::Messages(found) = parse(event(r#","channel_type":"im""#).as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(found[0].conversation_key, "C1");
        assert_eq!(route(&found[0])["thread_ts"], Value::Null);
        for ignored in [r#","subtype":"message_changed""#, r#","bot_id":"B1""#] {
            assert!(matches!(
                parse(event(ignored).as_bytes()).unwrap(),
                Inbound::Ignored(_)
            ));
        }
        let own = event("").replace(r#""user":"U1""#, r#""user":"UBOT""#);
        assert_eq!(
            parse(own.as_bytes()).unwrap(),
            Inbound::Ignored("the bot's own message")
        );
        assert_eq!(
            parse(br#"{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#).unwrap(),
            Inbound::Challenge("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P".into())
        );
        assert!(parse(b"{\"type\":\"\xff\xfe\"}").is_err());
    }

    #[test]
    fn thumbs_reactions_on_messages_become_ratings_and_others_are_ignored() {
        // Slack's documented `reaction_added` event.
        let event = |kind: &str, reaction: &str, item: &str| {
            format!(
                r#"{{"type":"event_callback","event_id":"Ev2","event":{{"type":"{kind}","user":"U1","reaction":"{reaction}","item_user":"UBOT","item":{item},"event_ts":"2.2"}}}}"#
            )
        };
        let on_message = r#"{"type":"message","channel":"C1","ts":"1700000000.000001"}"#;
        let change =
            |kind: &str, reaction: &str| match parse(event(kind, reaction, on_message).as_bytes())
                .unwrap()
            {
                Inbound::Events { mut reactions, .. } => {
                    let reaction = reactions.remove(0);
                    assert_eq!(
                        (reaction.sender.as_str(), reaction.target.as_str()),
                        ("U1", "1700000000.000001")
                    );
                    Some(reaction.change)
                }
                Inbound::Ignored(_) => None,
                other => panic!("{other:?}"),
            };
        use steward_domain::Rating;
        assert_eq!(
            change("reaction_added", "+1"),
            Some(ReactionChange::Rate(Rating::Up))
        );
        assert_eq!(
            change("reaction_added", "thumbsup::skin-tone-3"),
            Some(ReactionChange::Rate(Rating::Up))
        );
        assert_eq!(
            change("reaction_added", "-1"),
            Some(ReactionChange::Rate(Rating::Down))
        );
        assert_eq!(
            change("reaction_removed", "thumbsdown"),
            Some(ReactionChange::Withdraw(Some(Rating::Down)))
        );
        assert_eq!(change("reaction_added", "heart"), None);
        let on_file = event("reaction_added", "+1", r#"{"type":"file","file":"F1"}"#);
        assert!(matches!(
            parse(on_file.as_bytes()).unwrap(),
            Inbound::Ignored(_)
        ));
    }
}

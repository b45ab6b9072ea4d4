//! Each kind's configuration: parsed and validated from what an admin sends,
//! split into settings (shown by the API) and secrets (sealed at rest, never
//! shown), and joined again when a webhook is verified or a reply sent.

use std::fmt;
use std::net::IpAddr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use steward_auth::Sealer;
use steward_domain::{ChannelId, ChannelKind, Email, ValidationError, WebUrl};
use steward_store::Channel;

use crate::{email, generic, slack, teams, telegram, web, whatsapp};

/// A token or password: redacted wherever it is printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretText(String);

impl SecretText {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for SecretText {
    fn from(text: &str) -> Self {
        Self(text.to_owned())
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A channel's whole configuration, of whichever kind.
#[derive(Clone, Debug)]
pub enum ChannelConfig {
    Whatsapp(whatsapp::Config),
    Slack(slack::Config),
    Telegram(telegram::Config),
    Teams(teams::Config),
    Email(email::Config),
    Generic(generic::Config),
    Web(web::Config),
}

/// What is wrong with a channel's configuration, for the admin to fix.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    pub message: String,
}

pub(crate) fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError {
        message: message.into(),
    }
}

/// Longest accepted value of any field.
const MAX_FIELD_CHARS: usize = 2048;

impl ChannelConfig {
    /// The fields a kind's configuration takes (see docs/channels.md).
    pub fn fields(kind: ChannelKind) -> &'static [Field] {
        match kind {
            ChannelKind::Whatsapp => whatsapp::FIELDS,
            ChannelKind::Slack => slack::FIELDS,
            ChannelKind::Telegram => telegram::FIELDS,
            ChannelKind::Teams => teams::FIELDS,
            ChannelKind::Email => email::FIELDS,
            ChannelKind::Generic => generic::FIELDS,
            ChannelKind::Web => web::FIELDS,
        }
    }

    /// The shapes a kind's configuration may take, each a set of fields
    /// with its own required ones (a Slack channel's two modes); one, the
    /// kind's fields, for every other kind. For the API's schema.
    pub fn shapes(kind: ChannelKind) -> &'static [&'static [Field]] {
        match kind {
            ChannelKind::Whatsapp => &[whatsapp::FIELDS],
            ChannelKind::Slack => slack::SHAPES,
            ChannelKind::Telegram => &[telegram::FIELDS],
            ChannelKind::Teams => &[teams::FIELDS],
            ChannelKind::Email => &[email::FIELDS],
            ChannelKind::Generic => &[generic::FIELDS],
            ChannelKind::Web => &[web::FIELDS],
        }
    }

    /// The fields that are sealed at rest and never shown.
    pub fn secret_fields(kind: ChannelKind) -> Vec<&'static str> {
        let fields = Self::fields(kind).iter();
        fields.filter(|f| f.sealed).map(|f| f.name).collect()
    }

    pub fn kind(&self) -> ChannelKind {
        match self {
            Self::Whatsapp(_) => ChannelKind::Whatsapp,
            Self::Slack(_) => ChannelKind::Slack,
            Self::Telegram(_) => ChannelKind::Telegram,
            Self::Teams(_) => ChannelKind::Teams,
            Self::Email(_) => ChannelKind::Email,
            Self::Generic(_) => ChannelKind::Generic,
            Self::Web(_) => ChannelKind::Web,
        }
    }

    /// Parses and validates what an admin sent for a channel of `kind`.
    pub fn parse(kind: ChannelKind, config: Value) -> Result<Self, ConfigError> {
        let Value::Object(mut fields) = config else {
            return Err(invalid("config must be a JSON object"));
        };
        // An optional field sent as null is one not sent.
        let optional = |name: &str| {
            Self::fields(kind)
                .iter()
                .any(|f| f.name == name && !f.required)
        };
        fields.retain(|name, value| !(value.is_null() && optional(name)));
        for (name, value) in &fields {
            if let Value::String(text) = value {
                if text.chars().count() > MAX_FIELD_CHARS {
                    return Err(invalid(format!(
                        "config.{name} is longer than {MAX_FIELD_CHARS} characters"
                    )));
                }
                if text.chars().any(char::is_control) {
                    return Err(invalid(format!(
                        "config.{name} contains control characters"
                    )));
                }
            }
        }
        for name in Self::secret_fields(kind) {
            if let Some(Value::String(text)) = fields.get(name)
                && is_placeholder(text)
            {
                return Err(invalid(format!(
                    "config.{name} looks like a placeholder, not a real value: paste the one the provider gave"
                )));
            }
        }
        let config = Self::from_fields(kind, fields)?;
        // Each field by its rule, defaults included; then what spans fields.
        let all = config.to_fields();
        for field in Self::fields(kind) {
            match all.get(field.name).unwrap_or(&Value::Null) {
                Value::Null if !field.required => {}
                value => field.check(value)?,
            }
        }
        match &config {
            Self::Email(c) => c.check_tls()?,
            Self::Slack(c) => c.check_mode()?,
            _ => {}
        }
        Ok(config)
    }

    /// Every field, as the typed configuration writes it.
    fn to_fields(&self) -> Map<String, Value> {
        let all = match self {
            Self::Whatsapp(c) => serde_json::to_value(c),
            Self::Slack(c) => serde_json::to_value(c),
            Self::Telegram(c) => serde_json::to_value(c),
            Self::Teams(c) => serde_json::to_value(c),
            Self::Email(c) => serde_json::to_value(c),
            Self::Generic(c) => serde_json::to_value(c),
            Self::Web(c) => serde_json::to_value(c),
        };
        let Ok(Value::Object(fields)) = all else {
            unreachable!("channel configurations serialize to objects")
        };
        fields
    }

    /// (settings, secrets): what may be shown, and what is sealed.
    pub fn split(&self) -> (Value, Value) {
        let mut settings = self.to_fields();
        let mut secrets = Map::new();
        for field in Self::secret_fields(self.kind()) {
            if let Some(value) = settings.remove(field) {
                secrets.insert(field.into(), value);
            }
        }
        (Value::Object(settings), Value::Object(secrets))
    }

    /// Seals the secrets of a channel with id `id`.
    pub fn seal(&self, sealer: &Sealer, id: ChannelId) -> (Value, Vec<u8>) {
        let (settings, secrets) = self.split();
        let sealed = sealer.seal(secrets.to_string().as_bytes(), id.to_string().as_bytes());
        (settings, sealed)
    }

    /// The whole configuration of a stored channel, its secrets opened.
    pub fn open(channel: &Channel, sealer: &Sealer) -> Result<Self, ConfigError> {
        let secrets = sealer
            .open(&channel.sealed_secrets, channel.id.to_string().as_bytes())
            .map_err(|e| invalid(e.to_string()))?;
        let secrets: Value =
            serde_json::from_slice(&secrets).map_err(|e| invalid(e.to_string()))?;
        let (Value::Object(mut all), Value::Object(secrets)) = (channel.settings.clone(), secrets)
        else {
            return Err(invalid("stored channel configuration is not an object"));
        };
        all.extend(secrets);
        Self::from_fields(channel.kind, all)
    }

    /// The kind's typed configuration from its fields, unvalidated.
    fn from_fields(kind: ChannelKind, fields: Map<String, Value>) -> Result<Self, ConfigError> {
        fn typed<T: DeserializeOwned>(fields: Map<String, Value>) -> Result<T, ConfigError> {
            // serde's messages name the field ("missing field `bot_token`")
            // and never echo a value.
            serde_json::from_value(Value::Object(fields))
                .map_err(|e| invalid(format!("config: {e}")))
        }
        Ok(match kind {
            ChannelKind::Whatsapp => Self::Whatsapp(typed(fields)?),
            ChannelKind::Slack => Self::Slack(typed(fields)?),
            ChannelKind::Telegram => Self::Telegram(typed(fields)?),
            ChannelKind::Teams => Self::Teams(typed(fields)?),
            ChannelKind::Email => Self::Email(typed(fields)?),
            ChannelKind::Generic => Self::Generic(typed(fields)?),
            ChannelKind::Web => Self::Web(typed(fields)?),
        })
    }
}

/// What a configuration field holds: the rule `ChannelConfig::parse` checks,
/// named so that the API's schema can state it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldRule {
    /// One line, not only spaces.
    Text,
    /// Digits only, at most this many.
    Digits(usize),
    /// Letters, digits, `_` and `-`, at most this many.
    Token(usize),
    /// A host name or address.
    Host,
    /// 1 to 65535.
    Port,
    /// An email address.
    Email,
    /// Encrypted connections: may only be turned on in the API (off is for
    /// servers on this machine, configured by the operator).
    TlsOn,
    /// A mailbox folder's name.
    Folder,
    /// A URL Steward calls back (`steward_domain::WebUrl::CALLBACK_PATTERN`).
    CallbackUrl,
    /// A list of web origins (`https://example.org`), at most
    /// [`web::MAX_ORIGINS`].
    Origins,
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// One word (no spaces) that begins with this.
    Prefixed(&'static str),
}

/// One field of a kind's configuration.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub name: &'static str,
    pub rule: FieldRule,
    pub required: bool,
    /// Sealed at rest and never shown.
    pub sealed: bool,
}

impl Field {
    /// A field that may be shown.
    pub(crate) const fn setting(name: &'static str, rule: FieldRule, required: bool) -> Self {
        Self {
            name,
            rule,
            required,
            sealed: false,
        }
    }

    /// A required field that is sealed at rest.
    pub(crate) const fn secret(name: &'static str, rule: FieldRule) -> Self {
        Self {
            name,
            rule,
            required: true,
            sealed: true,
        }
    }

    /// An optional field that is sealed at rest.
    pub(crate) const fn optional_secret(name: &'static str, rule: FieldRule) -> Self {
        Self {
            required: false,
            ..Self::secret(name, rule)
        }
    }
}

impl Field {
    /// Checks the field's value against its rule.
    fn check(&self, value: &Value) -> Result<(), ConfigError> {
        let name = self.name;
        let text = value.as_str().unwrap_or_default();
        let fits = |max: usize, allowed: fn(char) -> bool| {
            (1..=max).contains(&text.chars().count()) && text.chars().all(allowed)
        };
        let must = |what: String| Err(invalid(format!("config.{name} must be {what}")));
        let shown = |e: ValidationError| invalid(format!("config.{}: {}", e.field, e.message));
        match self.rule {
            FieldRule::Text if text.trim().is_empty() => {
                Err(invalid(format!("config.{name} is required")))
            }
            FieldRule::Digits(max) if !fits(max, |c| c.is_ascii_digit()) => {
                must(format!("1 to {max} digits"))
            }
            FieldRule::Token(max)
                if !fits(max, |c| c.is_ascii_alphanumeric() || "_-".contains(c)) =>
            {
                must(format!("1 to {max} characters: A-Z, a-z, 0-9, _ and -"))
            }
            FieldRule::Host if !fits(253, |c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)) => {
                must("a host name or address (at most 253 characters)".into())
            }
            FieldRule::Port if value.as_u64().is_none_or(|port| port == 0) => {
                must("1 to 65535".into())
            }
            FieldRule::Folder if !fits(200, |c| !c.is_control()) => {
                must("1 to 200 characters, without control characters".into())
            }
            FieldRule::Email => Email::parse(name, text).map(drop).map_err(shown),
            FieldRule::CallbackUrl => WebUrl::parse_callback(name, text).map(drop).map_err(shown),
            FieldRule::Origins => web::check_origins(name, value),
            FieldRule::OneOf(words) if !words.contains(&text) => {
                must(format!("one of: {}", words.join(", ")))
            }
            FieldRule::Prefixed(prefix)
                if !text.starts_with(prefix)
                    || text.len() == prefix.len()
                    || !fits(MAX_FIELD_CHARS, |c| !c.is_whitespace()) =>
            {
                must(format!("a token beginning {prefix}, without spaces"))
            }
            _ => Ok(()),
        }
    }
}

/// A value copied from an example rather than from the provider:
/// `xoxb-...`, `<token>`, `your-bot-token`, `changeme`, `xxxx`.
fn is_placeholder(text: &str) -> bool {
    let text = text.trim();
    let lower = text.to_lowercase();
    let wrapped = [('<', '>'), ('{', '}'), ('[', ']')]
        .iter()
        .any(|(open, close)| text.starts_with(*open) && text.ends_with(*close));
    let filler = text.chars().count() >= 3
        && text
            .chars()
            .all(|c| c == text.chars().next().unwrap_or('x') && "xX*.#".contains(c));
    text.contains("...")
        || text.contains('…')
        || wrapped
        || filler
        || lower.contains("your-")
        || lower.contains("your_")
        || [
            "changeme",
            "change-me",
            "change_me",
            "placeholder",
            "todo",
            "tbd",
            "redacted",
        ]
        .contains(&lower.as_str())
}

pub(crate) fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn slack() -> Value {
        json!({ "bot_token": "xoxb-1", "signing_secret": "s3cret" })
    }

    #[test]
    fn secrets_are_split_off_and_sealed_to_the_channel() {
        let config = ChannelConfig::parse(ChannelKind::Slack, slack()).unwrap();
        let (settings, secrets) = config.split();
        assert_eq!(settings, json!({ "mode": "events" }));
        assert_eq!(
            secrets,
            json!({ "bot_token": "xoxb-1", "signing_secret": "s3cret" })
        );
        assert!(!format!("{config:?}").contains("xoxb-1"));
    }

    #[test]
    fn placeholders_copied_from_examples_are_refused_with_the_field_named() {
        for token in [
            "xoxb-...",
            "...",
            "xoxb-…",
            "<bot token>",
            "{token}",
            "xoxb-your-bot-token",
            "YOUR_TOKEN",
            "changeme",
            "xxxxxxxx",
            "********",
        ] {
            let config = json!({ "bot_token": token, "signing_secret": "a1b2c3" });
            let refused = ChannelConfig::parse(ChannelKind::Slack, config).unwrap_err();
            assert!(
                refused
                    .message
                    .contains("config.bot_token looks like a placeholder"),
                "{token}: {refused}"
            );
            assert!(!refused.message.contains(token), "the value is not echoed");
        }
        for real in ["xoxb-1234-5678-abcdef", "s3cret", "x", "1:AAH-x_y", "xyz"] {
            let config = json!({ "bot_token": real, "signing_secret": "a1b2c3" });
            assert!(
                ChannelConfig::parse(ChannelKind::Slack, config).is_ok(),
                "{real}"
            );
        }
    }

    #[test]
    fn bad_configurations_are_refused_with_the_field_named() {
        let cases = [
            (
                ChannelKind::Slack,
                json!({ "bot_token": "x" }),
                "signing_secret",
            ),
            (ChannelKind::Slack, json!("x"), "object"),
            (
                ChannelKind::Slack,
                json!({ "bot_token": "x", "signing_secret": "y", "extra": 1 }),
                "extra",
            ),
            (
                ChannelKind::Slack,
                json!({ "bot_token": " ", "signing_secret": "y" }),
                "bot_token",
            ),
            // Provider API bases are the operator's configuration, not a tenant's.
            (
                ChannelKind::Slack,
                json!({ "bot_token": "x", "signing_secret": "y", "api_base_url": "http://10.0.0.1/" }),
                "api_base_url",
            ),
            (
                ChannelKind::Telegram,
                json!({ "bot_token": "1:x", "secret_token": "t", "api_base_url": "http://127.0.0.1/" }),
                "api_base_url",
            ),
            (
                ChannelKind::Slack,
                json!({ "bot_token": "x\u{0}", "signing_secret": "y" }),
                "control",
            ),
            (
                ChannelKind::Telegram,
                json!({ "bot_token": "1:x", "secret_token": "has space" }),
                "secret_token",
            ),
            (
                ChannelKind::Whatsapp,
                json!({ "phone_number_id": "12a", "access_token": "t", "app_secret": "s", "verify_token": "v" }),
                "phone_number_id",
            ),
            (
                ChannelKind::Email,
                json!({ "imap_host": "mail.example", "smtp_host": "mail.example", "username": "u", "password": "p", "address": "bot@example.org", "tls": false }),
                "tls",
            ),
            (
                ChannelKind::Email,
                json!({ "imap_host": "mail.example", "smtp_host": "mail.example", "username": "u", "password": "p", "address": "nope" }),
                "address",
            ),
            (
                ChannelKind::Generic,
                json!({ "signing_secret": "s", "reply_url": "ftp://x" }),
                "https",
            ),
            (
                ChannelKind::Email,
                json!({ "imap_host": "mail example", "smtp_host": "mail.example", "username": "u", "password": "p", "address": "bot@example.org" }),
                "imap_host",
            ),
            (
                ChannelKind::Email,
                json!({ "imap_host": "mail.example", "smtp_host": "mail.example", "smtp_port": 0, "username": "u", "password": "p", "address": "bot@example.org" }),
                "smtp_port",
            ),
            (
                ChannelKind::Email,
                json!({ "imap_host": "mail.example", "smtp_host": "mail.example", "username": "  ", "password": "p", "address": "bot@example.org" }),
                "username",
            ),
            (
                ChannelKind::Email,
                json!({ "imap_host": "mail.example", "smtp_host": "mail.example", "username": "u", "password": "p", "address": "bot@example.org", "folder": "" }),
                "folder",
            ),
        ];
        for (kind, config, expected) in cases {
            let error = ChannelConfig::parse(kind, config.clone())
                .unwrap_err()
                .message;
            assert!(error.contains(expected), "{config}: {error}");
        }
    }

    #[test]
    fn plain_mail_is_allowed_on_this_machine_only() {
        let config = json!({ "imap_host": "127.0.0.1", "imap_port": 1143, "smtp_host": "localhost", "smtp_port": 2525, "username": "u", "password": "p", "address": "bot@example.org", "tls": false });
        ChannelConfig::parse(ChannelKind::Email, config).unwrap();
    }

    #[test]
    fn the_fields_each_kind_lists_are_the_fields_it_takes() {
        let sample = |rule: FieldRule| match rule {
            FieldRule::Text => json!("s3cret"),
            FieldRule::Digits(_) => json!("106540352242922"),
            FieldRule::Token(_) => json!("tok_en-1"),
            FieldRule::Host => json!("mail.example.org"),
            FieldRule::Port => json!(993),
            FieldRule::Email => json!("bot@example.org"),
            FieldRule::TlsOn => json!(true),
            FieldRule::Folder => json!("INBOX"),
            FieldRule::CallbackUrl => json!("https://hooks.example.org/reply"),
            FieldRule::Origins => json!(["https://www.example.org"]),
            FieldRule::OneOf(words) => json!(words[0]),
            FieldRule::Prefixed(prefix) => json!(format!("{prefix}1-2-abc")),
        };
        for kind in ChannelKind::ALL {
            for fields in ChannelConfig::shapes(*kind) {
                let listed = |f: &Field| {
                    ChannelConfig::fields(*kind)
                        .iter()
                        .any(|l| l.name == f.name)
                };
                assert!(
                    fields.iter().all(listed),
                    "{kind}: a shape's field is not listed"
                );
                let all: Map<String, Value> = fields
                    .iter()
                    .map(|f| (f.name.to_owned(), sample(f.rule)))
                    .collect();
                ChannelConfig::parse(*kind, Value::Object(all.clone()))
                    .unwrap_or_else(|e| panic!("{kind}: {e}"));
                for field in fields.iter().filter(|f| f.required) {
                    let mut missing = all.clone();
                    missing.remove(field.name);
                    assert!(
                        ChannelConfig::parse(*kind, Value::Object(missing)).is_err(),
                        "{kind} without {}",
                        field.name
                    );
                }
                // Each shape takes only its own fields.
                for other in ChannelConfig::fields(*kind) {
                    if fields.iter().any(|f| f.name == other.name) {
                        continue;
                    }
                    let mut extra = all.clone();
                    extra.insert(other.name.into(), sample(other.rule));
                    assert!(
                        ChannelConfig::parse(*kind, Value::Object(extra)).is_err(),
                        "{kind} with {}",
                        other.name
                    );
                }
                let mut extra = all.clone();
                extra.insert("unlisted".into(), json!("x"));
                assert!(
                    ChannelConfig::parse(*kind, Value::Object(extra)).is_err(),
                    "{kind}"
                );
            }
        }
    }

    #[test]
    fn a_slack_channel_takes_a_signing_secret_for_webhooks_or_an_app_token_for_socket_mode() {
        let socket =
            json!({ "bot_token": "xoxb-1", "mode": "socket", "app_token": "xapp-1-A0-1-abc" });
        let ChannelConfig::Slack(c) =
            ChannelConfig::parse(ChannelKind::Slack, socket.clone()).unwrap()
        else {
            unreachable!()
        };
        assert_eq!(c.mode, slack::Mode::Socket);
        let (settings, secrets) = ChannelConfig::Slack(c).split();
        assert_eq!(settings, json!({ "mode": "socket" }));
        assert_eq!(
            secrets,
            json!({ "bot_token": "xoxb-1", "app_token": "xapp-1-A0-1-abc" })
        );
        let refused = [
            (
                json!({ "bot_token": "xoxb-1", "mode": "socket" }),
                "config.app_token is required",
            ),
            (
                json!({ "bot_token": "xoxb-1", "mode": "sockets", "app_token": "xapp-1" }),
                "mode must be events or socket",
            ),
            (
                json!({ "bot_token": "xoxb-1", "mode": "socket", "app_token": "xoxb-1" }),
                "config.app_token must be a token beginning xapp-",
            ),
            (
                json!({ "bot_token": "xoxb-1", "mode": "socket", "app_token": "xapp-" }),
                "config.app_token must be",
            ),
            (
                json!({ "bot_token": "xoxb-1", "mode": "socket", "app_token": "xapp-1 2" }),
                "config.app_token must be",
            ),
            (
                json!({ "bot_token": "xoxb-1", "signing_secret": "s", "app_token": "xapp-1" }),
                "Socket Mode only",
            ),
            (
                json!({ "bot_token": "xoxb-1", "mode": "events" }),
                "config.signing_secret is required",
            ),
        ];
        for (config, expected) in refused {
            let error = ChannelConfig::parse(ChannelKind::Slack, config.clone())
                .unwrap_err()
                .message;
            assert!(error.contains(expected), "{config}: {error}");
            assert!(!error.contains("xapp-1"), "no value is echoed: {error}");
        }
    }
}

//! Each kind's configuration: parsed and validated from what an admin sends,
//! split into settings (shown by the API) and secrets (sealed at rest, never
//! shown), and joined again when a webhook is verified or a reply sent.

use std::fmt;
use std::net::IpAddr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use steward_auth::Sealer;
use steward_domain::{ChannelId, ChannelKind, Email, WebUrl};
use steward_store::Channel;

/// A token or password: redacted wherever it is printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretText(String);

impl SecretText {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsappConfig {
    pub phone_number_id: String,
    pub access_token: SecretText,
    pub app_secret: SecretText,
    pub verify_token: SecretText,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    pub bot_token: SecretText,
    pub signing_secret: SecretText,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    pub bot_token: SecretText,
    pub secret_token: SecretText,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    pub imap_host: String,
    #[serde(
        default = "EmailConfig::default_imap_port",
        deserialize_with = "whole_port"
    )]
    pub imap_port: u16,
    pub smtp_host: String,
    /// 465: TLS from the first byte; any other port: STARTTLS, required.
    #[serde(
        default = "EmailConfig::default_smtp_port",
        deserialize_with = "whole_port"
    )]
    pub smtp_port: u16,
    pub username: String,
    pub password: SecretText,
    /// The mailbox's own address: replies come from it.
    pub address: String,
    /// Off is allowed only when both servers are on this machine.
    #[serde(default = "EmailConfig::default_tls")]
    pub tls: bool,
    /// The IMAP folder read for new mail.
    #[serde(default = "EmailConfig::default_folder")]
    pub folder: String,
}

/// A port, which JSON may also spell as a whole float (`993.0`).
fn whole_port<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u16, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    number
        .as_u64()
        .or_else(|| {
            number
                .as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                .map(|f| f as u64)
        })
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| serde::de::Error::custom(format!("{number} is not a port number")))
}

impl EmailConfig {
    fn default_imap_port() -> u16 {
        993
    }
    fn default_smtp_port() -> u16 {
        465
    }
    fn default_tls() -> bool {
        true
    }
    fn default_folder() -> String {
        "INBOX".into()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericConfig {
    pub signing_secret: SecretText,
    /// Replies are POSTed here, signed like the webhooks Steward receives.
    pub reply_url: String,
}

#[derive(Clone, Debug)]
pub enum ChannelConfig {
    Whatsapp(WhatsappConfig),
    Slack(SlackConfig),
    Telegram(TelegramConfig),
    Email(EmailConfig),
    Generic(GenericConfig),
}

/// What is wrong with a channel's configuration, for the admin to fix.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    pub message: String,
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError {
        message: message.into(),
    }
}

/// Longest accepted value of any field.
const MAX_FIELD_CHARS: usize = 2048;

impl ChannelConfig {
    /// The fields that are sealed at rest and never shown.
    pub fn secret_fields(kind: ChannelKind) -> &'static [&'static str] {
        match kind {
            ChannelKind::Whatsapp => &["access_token", "app_secret", "verify_token"],
            ChannelKind::Slack => &["bot_token", "signing_secret"],
            ChannelKind::Telegram => &["bot_token", "secret_token"],
            ChannelKind::Email => &["password"],
            ChannelKind::Generic => &["signing_secret"],
        }
    }

    pub fn kind(&self) -> ChannelKind {
        match self {
            Self::Whatsapp(_) => ChannelKind::Whatsapp,
            Self::Slack(_) => ChannelKind::Slack,
            Self::Telegram(_) => ChannelKind::Telegram,
            Self::Email(_) => ChannelKind::Email,
            Self::Generic(_) => ChannelKind::Generic,
        }
    }

    /// Parses and validates what an admin sent for a channel of `kind`.
    pub fn parse(kind: ChannelKind, config: Value) -> Result<Self, ConfigError> {
        let Value::Object(fields) = config else {
            return Err(invalid("config must be a JSON object"));
        };
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
        let config = Self::from_fields(kind, fields)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        match self {
            Self::Whatsapp(c) => {
                if c.phone_number_id.is_empty()
                    || c.phone_number_id.len() > 32
                    || !c.phone_number_id.chars().all(|ch| ch.is_ascii_digit())
                {
                    return Err(invalid(
                        "config.phone_number_id must be the number's id: digits only",
                    ));
                }
                required("access_token", &c.access_token)?;
                required("app_secret", &c.app_secret)?;
                required("verify_token", &c.verify_token)?;
                Ok(())
            }
            Self::Slack(c) => {
                required("bot_token", &c.bot_token)?;
                required("signing_secret", &c.signing_secret)?;
                Ok(())
            }
            Self::Telegram(c) => {
                required("bot_token", &c.bot_token)?;
                // Telegram's own rule for secret_token.
                let token = c.secret_token.expose();
                if token.is_empty()
                    || token.len() > 256
                    || !token
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
                {
                    return Err(invalid(
                        "config.secret_token must be 1 to 256 characters: A-Z, a-z, 0-9, _ and -",
                    ));
                }
                Ok(())
            }
            Self::Email(c) => {
                for (name, host) in [("imap_host", &c.imap_host), ("smtp_host", &c.smtp_host)] {
                    let host_chars = |ch: char| ch.is_ascii_alphanumeric() || ".-:[]".contains(ch);
                    if host.is_empty() || host.len() > 253 || !host.chars().all(host_chars) {
                        return Err(invalid(format!(
                            "config.{name} must be a host name or address (at most 253 characters)"
                        )));
                    }
                }
                if c.imap_port == 0 || c.smtp_port == 0 {
                    return Err(invalid(
                        "config.imap_port and config.smtp_port must be 1 to 65535",
                    ));
                }
                if c.username.is_empty() {
                    return Err(invalid("config.username is required"));
                }
                required("password", &c.password)?;
                Email::parse("config.address", &c.address).map_err(|e| invalid(e.to_string()))?;
                if c.folder.is_empty()
                    || c.folder.chars().count() > 200
                    || c.folder.chars().any(char::is_control)
                {
                    return Err(invalid(
                        "config.folder must be 1 to 200 characters, without control characters",
                    ));
                }
                let local = is_loopback_host(&c.imap_host) && is_loopback_host(&c.smtp_host);
                if !c.tls && !local {
                    return Err(invalid(
                        "config.tls may be off only when both mail servers are on this machine (localhost)",
                    ));
                }
                Ok(())
            }
            Self::Generic(c) => {
                required("signing_secret", &c.signing_secret)?;
                WebUrl::parse_callback("config.reply_url", &c.reply_url)
                    .map(drop)
                    .map_err(|e| invalid(e.to_string()))
            }
        }
    }

    /// (settings, secrets): what may be shown, and what is sealed.
    pub fn split(&self) -> (Value, Value) {
        let all = match self {
            Self::Whatsapp(c) => serde_json::to_value(c),
            Self::Slack(c) => serde_json::to_value(c),
            Self::Telegram(c) => serde_json::to_value(c),
            Self::Email(c) => serde_json::to_value(c),
            Self::Generic(c) => serde_json::to_value(c),
        };
        let Ok(Value::Object(mut settings)) = all else {
            unreachable!("channel configurations serialize to objects")
        };
        let mut secrets = Map::new();
        for field in Self::secret_fields(self.kind()) {
            if let Some(value) = settings.remove(*field) {
                secrets.insert((*field).into(), value);
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
            ChannelKind::Email => Self::Email(typed(fields)?),
            ChannelKind::Generic => Self::Generic(typed(fields)?),
        })
    }
}

/// What a configuration field holds: the rule `ChannelConfig::parse` applies
/// to it, named so that the API's schema can state it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldRule {
    /// A secret: one line, not only spaces.
    Secret,
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
}

/// One field of a kind's configuration.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub name: &'static str,
    pub rule: FieldRule,
    pub required: bool,
}

const fn field(name: &'static str, rule: FieldRule, required: bool) -> Field {
    Field {
        name,
        rule,
        required,
    }
}

use FieldRule::{CallbackUrl, Digits, Folder, Host, Port, Secret, TlsOn, Token};

const WHATSAPP: &[Field] = &[
    field("phone_number_id", Digits(32), true),
    field("access_token", Secret, true),
    field("app_secret", Secret, true),
    field("verify_token", Secret, true),
];
const SLACK: &[Field] = &[
    field("bot_token", Secret, true),
    field("signing_secret", Secret, true),
];
const TELEGRAM: &[Field] = &[
    field("bot_token", Secret, true),
    field("secret_token", Token(256), true),
];
const EMAIL: &[Field] = &[
    field("imap_host", Host, true),
    field("imap_port", Port, false),
    field("smtp_host", Host, true),
    field("smtp_port", Port, false),
    field("username", Secret, true),
    field("password", Secret, true),
    field("address", FieldRule::Email, true),
    field("tls", TlsOn, false),
    field("folder", Folder, false),
];
const GENERIC: &[Field] = &[
    field("signing_secret", Secret, true),
    field("reply_url", CallbackUrl, true),
];

impl ChannelConfig {
    /// The fields a kind's configuration takes (see docs/channels.md).
    pub fn fields(kind: ChannelKind) -> &'static [Field] {
        match kind {
            ChannelKind::Whatsapp => WHATSAPP,
            ChannelKind::Slack => SLACK,
            ChannelKind::Telegram => TELEGRAM,
            ChannelKind::Email => EMAIL,
            ChannelKind::Generic => GENERIC,
        }
    }
}

fn required(name: &str, value: &SecretText) -> Result<(), ConfigError> {
    if value.expose().trim().is_empty() {
        return Err(invalid(format!("config.{name} is required")));
    }
    Ok(())
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
        assert_eq!(settings, json!({}));
        assert_eq!(
            secrets,
            json!({ "bot_token": "xoxb-1", "signing_secret": "s3cret" })
        );
        assert!(!format!("{config:?}").contains("xoxb-1"));
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
            FieldRule::Secret => json!("s3cret"),
            FieldRule::Digits(_) => json!("106540352242922"),
            FieldRule::Token(_) => json!("tok_en-1"),
            FieldRule::Host => json!("mail.example.org"),
            FieldRule::Port => json!(993),
            FieldRule::Email => json!("bot@example.org"),
            FieldRule::TlsOn => json!(true),
            FieldRule::Folder => json!("INBOX"),
            FieldRule::CallbackUrl => json!("https://hooks.example.org/reply"),
        };
        for kind in ChannelKind::ALL {
            let fields = ChannelConfig::fields(*kind);
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
            let mut extra = all.clone();
            extra.insert("unlisted".into(), json!("x"));
            assert!(
                ChannelConfig::parse(*kind, Value::Object(extra)).is_err(),
                "{kind}"
            );
        }
    }
}

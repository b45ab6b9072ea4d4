//! The web chat: a chat page Steward serves itself at `/chat/{channel_id}`,
//! and a script that puts it on the organization's own site as a bubble.
//! Visitors are anonymous: each browser session is one conversation, keyed
//! by the session's visitor id. Nothing goes back through a provider: the
//! visitor's page reads each reply live as it is written, so replies on this
//! channel have no `deliver` job.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{ConfigError, Field, FieldRule, invalid};
use crate::inbound::{InboundMessage, Route as AnyRoute};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Sites that may show the chat in their pages (`https://example.org`);
    /// none: only Steward's own chat page.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Shown to a visitor before they write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greeting: Option<String>,
}

pub(crate) const FIELDS: &[Field] = &[
    Field::setting("allowed_origins", FieldRule::Origins, false),
    Field::setting("greeting", FieldRule::Text, false),
];

/// The most sites one chat may be embedded in.
pub const MAX_ORIGINS: usize = 20;

/// The visitor a message came from: their reply is read, not sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub visitor: String,
}

/// The longest origin accepted (a 253-character host, a scheme and a port).
pub const MAX_ORIGIN_CHARS: usize = 267;

/// An allowed origin, as the API's schema states it too.
pub const ORIGIN_PATTERN: &str = concat!(
    r"^(https://([a-z0-9-]+(\.[a-z0-9-]+)*|\[[0-9a-f:]+\])",
    r"|http://(localhost|127\.0\.0\.1|\[::1\]))",
    r"(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?$"
);

/// A web origin as a browser sends it in `Origin`: `https://host[:port]`
/// (`http://` only for localhost, 127.0.0.1 and [::1]), lowercase, nothing
/// after the host or port ([`ORIGIN_PATTERN`]).
pub fn normalize_origin(text: &str) -> Option<String> {
    let text = text.trim().to_ascii_lowercase();
    if text.len() > MAX_ORIGIN_CHARS {
        return None;
    }
    let (scheme, rest) = text.split_once("://")?;
    // An IPv6 host is bracketed: its colons are not the port's.
    let host_end = match rest.strip_prefix('[') {
        Some(inner) => inner.find(']')? + 2,
        None => rest.find(':').unwrap_or(rest.len()),
    };
    let (host, port) = rest.split_at(host_end);
    let port = match port.strip_prefix(':') {
        Some(digits) if digits.starts_with('0') => return None,
        Some(digits) => Some(digits.parse::<u16>().ok().filter(|p| *p > 0)?),
        None if port.is_empty() => None,
        None => return None,
    };
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => !v6.is_empty() && v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':'),
        None => host.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        }),
    };
    let scheme_ok = match scheme {
        "https" => true,
        "http" => matches!(host, "localhost" | "127.0.0.1" | "[::1]"),
        _ => false,
    };
    (host_ok && scheme_ok).then(|| match port {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    })
}

/// `allowed_origins`: a list of at most [`MAX_ORIGINS`] origins.
pub(crate) fn check_origins(name: &str, value: &Value) -> Result<(), ConfigError> {
    let Some(origins) = value.as_array() else {
        return Err(invalid(format!("config.{name} must be a list of origins")));
    };
    if origins.len() > MAX_ORIGINS {
        return Err(invalid(format!(
            "config.{name} holds at most {MAX_ORIGINS} origins"
        )));
    }
    for origin in origins {
        let text = origin.as_str().unwrap_or_default();
        if normalize_origin(text).as_deref() != Some(text) {
            return Err(invalid(format!(
                "config.{name}: '{}' is not an origin like https://www.example.org (scheme and host only, lowercase; http only for localhost)",
                text.chars().take(100).collect::<String>()
            )));
        }
    }
    Ok(())
}

/// What a visitor wrote, as every channel's inbound message looks. A message
/// is known by its visitor and the id their page gave it, so a page that
/// sends it again (a lost answer, a double click) stores it once.
pub fn inbound(visitor: &str, client_id: &str, text: String) -> InboundMessage {
    InboundMessage {
        external_id: format!("{visitor}:{client_id}"),
        conversation_key: visitor.to_owned(),
        sender: visitor.to_owned(),
        sender_name: None,
        forwarded: false,
        text,
        route: AnyRoute::Web(Route {
            visitor: visitor.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_and_host_only() {
        for good in [
            "https://example.org",
            "https://www.example.org:8443",
            "http://localhost:3000",
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
        ] {
            assert_eq!(normalize_origin(good).as_deref(), Some(good), "{good}");
        }
        assert_eq!(
            normalize_origin("HTTPS://Example.org").as_deref(),
            Some("https://example.org")
        );
        for bad in [
            "example.org",
            "http://example.org",
            "https://example.org/",
            "https://example.org/path",
            "https://*.example.org",
            "https://user@example.org",
            "https://example.org:0",
            "https://example.org:080",
            "https://a..b",
            "https://a[b",
            "http://127.0.0.2",
            "https://example.org:99999",
            "javascript://x",
            "https://",
            "ftp://example.org",
            "https://example.org?x",
        ] {
            assert_eq!(normalize_origin(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_configuration_takes_a_list_of_origins_and_a_greeting() {
        use crate::ChannelConfig;
        use serde_json::json;
        use steward_domain::ChannelKind;
        let ok = ChannelConfig::parse(
            ChannelKind::Web,
            json!({"allowed_origins": ["https://example.org"], "greeting": "Hello!"}),
        )
        .unwrap();
        let (settings, secrets) = ok.split();
        assert_eq!(settings["allowed_origins"][0], "https://example.org");
        assert_eq!(secrets, json!({}));
        assert!(ChannelConfig::parse(ChannelKind::Web, json!({})).is_ok());
        for bad in [
            json!({"allowed_origins": "https://example.org"}),
            json!({"allowed_origins": ["https://example.org/"]}),
            json!({"allowed_origins": [1]}),
            json!({"allowed_origins": vec!["https://example.org"; 21]}),
            json!({"greeting": ""}),
            json!({"greeting": "a\u{7}b"}),
            json!({"theme": "dark"}),
        ] {
            assert!(
                ChannelConfig::parse(ChannelKind::Web, bad.clone()).is_err(),
                "{bad}"
            );
        }
    }
}

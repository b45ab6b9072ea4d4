//! Values parsed once at the boundary. A value of one of these types is valid
//! by construction, so nothing past the API re-checks it.

use serde::Serialize;

/// Why a value was refused, named by the field it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// NUL cannot be stored by PostgreSQL and other control characters have no
/// place in names; newlines and tabs are fine in free text.
fn check_text(field: &'static str, raw: &str, multiline: bool) -> Result<(), ValidationError> {
    let bad = raw.chars().find(|c| {
        *c == '\0' || (c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')))
    });
    match bad {
        Some('\0') => Err(ValidationError::new(
            field,
            "must not contain NUL characters",
        )),
        Some(_) => Err(ValidationError::new(
            field,
            "must not contain control characters",
        )),
        None => Ok(()),
    }
}

fn check_len(
    field: &'static str,
    raw: &str,
    min: usize,
    max: usize,
) -> Result<(), ValidationError> {
    let len = raw.chars().count();
    if len < min || raw.trim().is_empty() && min > 0 {
        return Err(ValidationError::new(
            field,
            format!("must not be empty (1 to {max} characters)"),
        ));
    }
    if len > max {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max} characters, got {len}"),
        ));
    }
    Ok(())
}

macro_rules! text_value {
    ($(#[$doc:meta])* $name:ident, min = $min:expr, max = $max:expr, multiline = $ml:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const MAX_CHARS: usize = $max;

            pub fn parse(field: &'static str, raw: impl Into<String>) -> Result<Self, ValidationError> {
                let raw = raw.into();
                check_text(field, &raw, $ml)?;
                check_len(field, &raw, $min, $max)?;
                Ok(Self(raw))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_inner(self) -> String {
                self.0
            }
        }
    };
}

text_value!(
    /// A chatbot's display name: 1 to 100 characters.
    ChatbotName, min = 1, max = 100, multiline = false
);
text_value!(
    /// An organization's display name.
    OrganizationName, min = 1, max = 200, multiline = false
);
text_value!(
    /// A person's display name.
    PersonName, min = 1, max = 200, multiline = false
);
text_value!(
    /// The instructions a chatbot is given before every conversation; may be empty.
    SystemPrompt, min = 0, max = 20_000, multiline = true
);
text_value!(
    /// What a user wrote to a chatbot.
    MessageText, min = 1, max = 32_000, multiline = true
);
text_value!(
    /// Why a person rated a reply as they did.
    FeedbackComment, min = 1, max = 2_000, multiline = true
);

/// A model identifier as the provider spells it, e.g. `claude-sonnet-4-5`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ModelName(String);

impl ModelName {
    pub fn parse(field: &'static str, raw: impl Into<String>) -> Result<Self, ValidationError> {
        let raw = raw.into();
        check_text(field, &raw, false)?;
        check_len(field, &raw, 1, 200)?;
        if raw.chars().any(char::is_whitespace) {
            return Err(ValidationError::new(field, "must not contain spaces"));
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A web address a tenant gives Steward to fetch or to call: http(s), a host
/// named by its name, an optional port, path, query and fragment, in the
/// plain characters of RFC 3986. An address given as numbers is refused: a
/// site is reached by its name, and numeric spellings (`0x7f.1`,
/// `2130706433`, `[::ffff:7f00:1]`) are the usual way around an address
/// check. Names are still checked where they resolve, at every connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct WebUrl(String);

/// The parts of [`WebUrl::PATTERN`], shared with [`WebUrl::CALLBACK_PATTERN`].
macro_rules! web_url_rest {
    () => {
        concat!(
            // a port, 1 to 65535
            r"(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?",
            r"(/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?",
            r"(\?[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?",
            r"(#[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?$"
        )
    };
}
/// A host name whose last label starts with a letter, so never an address.
macro_rules! web_url_host {
    () => {
        r"([A-Za-z0-9-]+\.)*[A-Za-z][A-Za-z0-9-]*"
    };
}

impl WebUrl {
    pub const MAX_CHARS: usize = 2000;
    /// The whole rule, as a regular expression (the API's schema says the same).
    pub const PATTERN: &str = concat!(r"^https?://", web_url_host!(), web_url_rest!());
    /// A URL Steward calls back with a tenant's data: https, or http to this
    /// machine by the name `localhost` (local test servers).
    pub const CALLBACK_PATTERN: &str = concat!(
        r"^(https://",
        web_url_host!(),
        r"|http://localhost)",
        web_url_rest!()
    );

    pub fn parse(field: &'static str, raw: impl Into<String>) -> Result<Self, ValidationError> {
        static RULE: std::sync::LazyLock<regex::Regex> =
            std::sync::LazyLock::new(|| regex::Regex::new(WebUrl::PATTERN).unwrap());
        Self::matching(field, raw.into(), &RULE, "an http(s) URL")
    }

    /// A URL Steward calls back: see [`WebUrl::CALLBACK_PATTERN`].
    pub fn parse_callback(
        field: &'static str,
        raw: impl Into<String>,
    ) -> Result<Self, ValidationError> {
        static RULE: std::sync::LazyLock<regex::Regex> =
            std::sync::LazyLock::new(|| regex::Regex::new(WebUrl::CALLBACK_PATTERN).unwrap());
        Self::matching(
            field,
            raw.into(),
            &RULE,
            "an https URL (http only to localhost)",
        )
    }

    fn matching(
        field: &'static str,
        raw: String,
        rule: &regex::Regex,
        what: &str,
    ) -> Result<Self, ValidationError> {
        if raw.len() > Self::MAX_CHARS {
            return Err(ValidationError::new(
                field,
                format!("must be at most {} characters", Self::MAX_CHARS),
            ));
        }
        if !rule.is_match(&raw) {
            return Err(ValidationError::new(
                field,
                format!(
                    "must be {what} naming its host by name (not by address), \
                     without credentials, spaces or characters a URL must escape"
                ),
            ));
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Sampling temperature, 0.0 to 2.0 inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Temperature(f64);

impl Temperature {
    pub fn parse(field: &'static str, raw: f64) -> Result<Self, ValidationError> {
        if raw.is_finite() && (0.0..=2.0).contains(&raw) {
            Ok(Self(raw))
        } else {
            Err(ValidationError::new(field, "must be between 0.0 and 2.0"))
        }
    }

    pub fn value(&self) -> f64 {
        self.0
    }
}

/// An email address, lower-cased so that lookups are case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, ValidationError> {
        let email = raw.trim().to_lowercase();
        let invalid =
            || ValidationError::new(field, "must be an email address like name@example.org");
        if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
        // The plain form every mail system takes: ASCII, a dotted domain of
        // letters, digits and hyphens (international names in their xn-- form).
        let local_ok = local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".!#$%&'*+/=?^_`{|}~-".contains(c));
        let domain_ok = domain.contains('.')
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if local.is_empty() || local.len() > 64 || !local_ok || !domain_ok {
            return Err(invalid());
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password that meets the policy: 8 to 1024 characters, no NUL. Never
/// serialized.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_CHARS: usize = 1024;

    pub fn parse(field: &'static str, raw: impl Into<String>) -> Result<Self, ValidationError> {
        let raw = raw.into();
        let len = raw.chars().count();
        if len < Self::MIN_CHARS {
            return Err(ValidationError::new(field, "must be at least 8 characters"));
        }
        if len > Self::MAX_CHARS {
            return Err(ValidationError::new(
                field,
                "must be at most 1024 characters",
            ));
        }
        if raw.contains('\0') {
            return Err(ValidationError::new(
                field,
                "must not contain NUL characters",
            ));
        }
        // Length is the rule, not a mix of character classes: composition
        // rules make passwords no stronger and harder to remember (NIST SP
        // 800-63B, 5.1.1.2), and a client can see the whole rule in the schema.
        Ok(Self(raw))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatbot_names_are_one_to_a_hundred_characters() {
        assert!(ChatbotName::parse("name", "").is_err());
        assert!(ChatbotName::parse("name", "   ").is_err());
        assert!(ChatbotName::parse("name", "a".repeat(100)).is_ok());
        assert!(ChatbotName::parse("name", "a".repeat(101)).is_err());
        // Characters, not bytes: 100 emoji are fine.
        assert!(ChatbotName::parse("name", "🤖".repeat(100)).is_ok());
    }

    #[test]
    fn emoji_and_right_to_left_text_are_kept_intact() {
        let name = "مساعد المبيعات 🤖";
        assert_eq!(ChatbotName::parse("name", name).unwrap().as_str(), name);
    }

    #[test]
    fn nul_and_control_characters_are_refused_but_newlines_in_prompts_are_not() {
        let err = ChatbotName::parse("name", "a\0b").unwrap_err();
        assert_eq!(err.field, "name");
        assert!(err.message.contains("NUL"));
        assert!(ChatbotName::parse("name", "a\nb").is_err());
        assert!(SystemPrompt::parse("system_prompt", "line one\nline two\t.").is_ok());
        assert!(SystemPrompt::parse("system_prompt", "x\0").is_err());
        assert!(SystemPrompt::parse("system_prompt", "").is_ok());
        assert!(SystemPrompt::parse("system_prompt", "p".repeat(20_001)).is_err());
    }

    #[test]
    fn temperature_is_bounded_and_finite() {
        for ok in [0.0, 0.7, 2.0] {
            assert!(Temperature::parse("temperature", ok).is_ok(), "{ok}");
        }
        for bad in [-0.1, 2.1, f64::NAN, f64::INFINITY] {
            assert!(Temperature::parse("temperature", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("email", " Ada@Example.ORG ").unwrap().as_str(),
            "ada@example.org"
        );
        for bad in [
            "",
            "ada",
            "@example.org",
            "ada@",
            "ada@example",
            "a b@example.org",
            "ada@@example.org",
            "ada@example..org",
            "ada@exa*mple.org",
            "ad<a>@example.org",
            "zoë@example.org",
        ] {
            assert!(Email::parse("email", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_need_length_and_two_classes() {
        assert!(Password::parse("password", "short1").is_err());
        assert!(Password::parse("password", "with\0nul").is_err());
        assert!(
            Password::parse("password", "aaaaaaaaaa").is_ok(),
            "length is the rule"
        );
        assert!(Password::parse("password", "correct horse").is_ok());
        assert!(Password::parse("password", "Abcdefghij").is_ok());
        assert!(Password::parse("password", "x".repeat(1025) + "1").is_err());
        assert_eq!(
            format!("{:?}", Password::parse("p", "Secret-123").unwrap()),
            "Password(***)"
        );
    }

    #[test]
    fn model_names_have_no_spaces() {
        assert!(ModelName::parse("model", "claude-sonnet-4-5").is_ok());
        assert!(ModelName::parse("model", "gpt 4").is_err());
        assert!(ModelName::parse("model", "").is_err());
    }

    #[test]
    fn web_urls_name_their_host_and_escape_what_a_url_escapes() {
        for url in [
            "http://example.org",
            "https://docs.example.org:8443/guide/a_b-c.html?page=2&x=%20#top",
            "http://a",
            "https://x--y.example:65535/",
        ] {
            assert!(WebUrl::parse("url", url).is_ok(), "{url}");
        }
        for url in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://[::1]/",
            "http://example.org.123/",
            "http://user:pw@example.org/",
            "ftp://example.org/",
            "http://example.org:0/",
            "http://example.org:65536/",
            "http://example.org/a b",
            " http://example.org/",
            "http://example.org/\n",
            "http://exa_mple.org/",
            "http://example..org/",
            "HTTP://example.org/",
        ] {
            assert!(WebUrl::parse("url", url).is_err(), "{url}");
        }
        assert!(WebUrl::parse_callback("url", "https://hooks.example.org/x").is_ok());
        assert!(WebUrl::parse_callback("url", "http://localhost:8080/x").is_ok());
        assert!(WebUrl::parse_callback("url", "http://example.org/x").is_err());
        assert!(WebUrl::parse_callback("url", "http://localhost.example.org/").is_err());
        let long = format!("http://example.org/{}", "a".repeat(WebUrl::MAX_CHARS));
        assert!(WebUrl::parse("url", long).is_err());
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any string: a chatbot name is accepted exactly when it has 1 to 100
        /// characters, is not blank and holds no control character; accepted
        /// names come back unchanged.
        #[test]
        fn chatbot_names_follow_the_rule(raw in any::<String>()) {
            let expected = (1..=100).contains(&raw.chars().count())
                && !raw.trim().is_empty()
                && !raw.chars().any(char::is_control);
            match ChatbotName::parse("name", raw.clone()) {
                Ok(name) => {
                    prop_assert!(expected);
                    prop_assert_eq!(name.as_str(), raw.as_str());
                }
                Err(_) => prop_assert!(!expected),
            }
        }

        #[test]
        fn temperatures_are_accepted_exactly_in_range(raw in any::<f64>()) {
            prop_assert_eq!(Temperature::parse("t", raw).is_ok(), (0.0..=2.0).contains(&raw));
        }

        /// Parsing never panics, and an accepted email parses to itself again.
        #[test]
        fn emails_normalise_idempotently(raw in any::<String>()) {
            if let Ok(email) = Email::parse("email", &raw) {
                prop_assert_eq!(Email::parse("email", email.as_str()).unwrap(), email);
            }
        }

        #[test]
        fn passwords_never_panic_and_respect_the_length_rule(raw in any::<String>()) {
            if Password::parse("password", raw.clone()).is_ok() {
                prop_assert!((8..=1024).contains(&raw.chars().count()));
            }
        }
    }
}

//! How a person is known: an [`Identity`] is a kind and a handle, written
//! the one way it is stored, so that the same human found on a webhook and in
//! an imported CSV is the same row.

use serde::Serialize;

use crate::{ChannelId, ChannelKind, Email, IdentityKind, UserId, ValidationError};

/// A handle of a person, normalized: the same human gives the same identity
/// however it was written.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Identity {
    pub kind: IdentityKind,
    pub handle: String,
}

/// Longer handles are refused (a generic webhook's user ids may be 256).
const MAX_HANDLE_CHARS: usize = 256;

impl Identity {
    /// A member account of the organization.
    pub fn member(user: UserId) -> Self {
        Self {
            kind: IdentityKind::Member,
            handle: user.to_string(),
        }
    }

    /// An email address, lowercased.
    pub fn email(email: &Email) -> Self {
        Self {
            kind: IdentityKind::Email,
            handle: email.as_str().to_owned(),
        }
    }

    /// A handle as a person or an operator wrote it (a CSV column, an API
    /// field): WhatsApp numbers lose their `+`, spaces and dashes; Slack ids
    /// are uppercased; emails lowercased.
    pub fn parse(
        field: &'static str,
        kind: IdentityKind,
        raw: &str,
    ) -> Result<Self, ValidationError> {
        let raw = raw.trim();
        let invalid = |why: &str| ValidationError::new(field, why.to_owned());
        if raw.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if raw.chars().count() > MAX_HANDLE_CHARS {
            return Err(invalid("must be at most 256 characters"));
        }
        if raw.chars().any(char::is_control) {
            return Err(invalid("must not contain control characters"));
        }
        let handle = match kind {
            IdentityKind::Member => uuid::Uuid::parse_str(raw)
                .map_err(|_| invalid("must be a member's id"))?
                .to_string(),
            IdentityKind::Email => Email::parse(field, raw)?.as_str().to_owned(),
            IdentityKind::Whatsapp => {
                let digits: String = raw
                    .chars()
                    .filter(|c| !matches!(c, '+' | ' ' | '-' | '(' | ')' | '.'))
                    .collect();
                // E.164 numbers have at most 15 digits; WhatsApp ids are them.
                if !(6..=15).contains(&digits.len()) || !digits.chars().all(|c| c.is_ascii_digit())
                {
                    return Err(invalid(
                        "must be a phone number in international form, like +16505551234",
                    ));
                }
                digits
            }
            IdentityKind::Slack => {
                let id = raw.to_ascii_uppercase();
                let ok = id.len() >= 3
                    && id.starts_with(['U', 'W'])
                    && id.chars().all(|c| c.is_ascii_alphanumeric());
                if !ok {
                    return Err(invalid("must be a Slack member id, like U0123ABCD"));
                }
                id
            }
            IdentityKind::Telegram => {
                if !raw.chars().all(|c| c.is_ascii_digit()) {
                    return Err(invalid("must be a Telegram user id (digits)"));
                }
                raw.to_owned()
            }
            IdentityKind::Teams | IdentityKind::Web | IdentityKind::Generic => {
                if raw.chars().any(char::is_whitespace) {
                    return Err(invalid("must not contain spaces"));
                }
                raw.to_owned()
            }
        };
        Ok(Self { kind, handle })
    }

    /// The sender of a message that came in on a channel, as the provider
    /// names them. A web chat visitor's or a generic webhook's user ids are
    /// the channel's own, so they are kept apart per channel.
    pub fn on_channel(
        kind: ChannelKind,
        channel: ChannelId,
        raw: &str,
    ) -> Result<Self, ValidationError> {
        let identity_kind = match kind {
            ChannelKind::Whatsapp => IdentityKind::Whatsapp,
            ChannelKind::Slack => IdentityKind::Slack,
            ChannelKind::Telegram => IdentityKind::Telegram,
            ChannelKind::Teams => IdentityKind::Teams,
            ChannelKind::Email => IdentityKind::Email,
            ChannelKind::Web => IdentityKind::Web,
            ChannelKind::Generic => IdentityKind::Generic,
        };
        let mut identity = Self::parse("sender", identity_kind, raw)?;
        if matches!(identity_kind, IdentityKind::Web | IdentityKind::Generic) {
            identity.handle = format!("{channel}:{}", identity.handle);
        }
        Ok(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(kind: IdentityKind, raw: &str) -> Result<String, ValidationError> {
        Identity::parse("handle", kind, raw).map(|i| i.handle)
    }

    #[test]
    fn handles_are_written_one_way() {
        assert_eq!(
            parsed(IdentityKind::Whatsapp, "+1 (650) 555-1234").unwrap(),
            "16505551234"
        );
        assert_eq!(
            parsed(IdentityKind::Whatsapp, "16505551234").unwrap(),
            "16505551234"
        );
        assert_eq!(
            parsed(IdentityKind::Slack, " u0123abcd ").unwrap(),
            "U0123ABCD"
        );
        assert_eq!(
            parsed(IdentityKind::Email, "Ana@Example.ORG").unwrap(),
            "ana@example.org"
        );
        assert_eq!(
            parsed(IdentityKind::Telegram, "1111111").unwrap(),
            "1111111"
        );
    }

    #[test]
    fn malformed_handles_are_refused() {
        for (kind, raw) in [
            (IdentityKind::Whatsapp, "call me"),
            (IdentityKind::Whatsapp, "+1234"),
            (IdentityKind::Whatsapp, "1234567890123456"),
            (IdentityKind::Slack, "C0123ABCD"),
            (IdentityKind::Slack, "U01 23"),
            (IdentityKind::Email, "not-an-address"),
            (IdentityKind::Telegram, "@someone"),
            (IdentityKind::Member, "someone"),
            (IdentityKind::Teams, "two words"),
            (IdentityKind::Web, ""),
            (IdentityKind::Web, "a\u{0}b"),
        ] {
            assert!(parsed(kind, raw).is_err(), "{kind} {raw:?} was accepted");
        }
        assert!(parsed(IdentityKind::Generic, &"x".repeat(257)).is_err());
    }

    #[test]
    fn web_and_generic_senders_are_kept_apart_per_channel() {
        let (one, two) = (ChannelId::new(), ChannelId::new());
        let a = Identity::on_channel(ChannelKind::Web, one, "visitor-1").unwrap();
        let b = Identity::on_channel(ChannelKind::Web, two, "visitor-1").unwrap();
        assert_ne!(a, b);
        let phone = Identity::on_channel(ChannelKind::Whatsapp, one, "16505551234").unwrap();
        assert_eq!(
            phone,
            Identity::parse("x", IdentityKind::Whatsapp, "+16505551234").unwrap()
        );
    }
}

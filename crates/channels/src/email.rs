//! Email: new mail read from a mailbox over IMAP by the `poll` job
//! ([`mailbox`]), and replies sent over SMTP in the thread they answer. The
//! mail servers are the tenant's to name: every connection goes through the
//! outbound guard.

pub(crate) mod mailbox;

use lettre::address::Envelope;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use serde::{Deserialize, Serialize};

pub use mailbox::PollMailboxes;

use crate::config::{ConfigError, Field, FieldRule, SecretText, invalid, is_loopback_host};
use crate::inbound::{self, InboundMessage};
use crate::send::{Part, SendError, Sender, retry};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub imap_host: String,
    #[serde(default = "Config::default_imap_port", deserialize_with = "whole_port")]
    pub imap_port: u16,
    pub smtp_host: String,
    /// 465: TLS from the first byte; any other port: STARTTLS, required.
    #[serde(default = "Config::default_smtp_port", deserialize_with = "whole_port")]
    pub smtp_port: u16,
    pub username: String,
    pub password: SecretText,
    /// The mailbox's own address: replies come from it.
    pub address: String,
    /// Off is allowed only when both servers are on this machine.
    #[serde(default = "Config::default_tls")]
    pub tls: bool,
    /// The IMAP folder read for new mail.
    #[serde(default = "Config::default_folder")]
    pub folder: String,
}

pub(crate) const FIELDS: &[Field] = &[
    Field::setting("imap_host", FieldRule::Host, true),
    Field::setting("imap_port", FieldRule::Port, false),
    Field::setting("smtp_host", FieldRule::Host, true),
    Field::setting("smtp_port", FieldRule::Port, false),
    Field::setting("username", FieldRule::Text, true),
    Field::secret("password", FieldRule::Text),
    Field::setting("address", FieldRule::Email, true),
    Field::setting("tls", FieldRule::TlsOn, false),
    Field::setting("folder", FieldRule::Folder, false),
];

impl Config {
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

    /// Plain connections only to servers on this machine.
    pub(crate) fn check_tls(&self) -> Result<(), ConfigError> {
        let local = is_loopback_host(&self.imap_host) && is_loopback_host(&self.smtp_host);
        if !self.tls && !local {
            return Err(invalid(
                "config.tls may be off only when both mail servers are on this machine (localhost)",
            ));
        }
        Ok(())
    }
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

/// Who a reply goes to, and the thread it continues.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Route {
    /// The sender's address, lowercased.
    pub from: String,
    #[serde(default)]
    pub subject: String,
    /// The Message-ID answered, without angle brackets.
    pub message_id: String,
    /// The thread's earlier Message-IDs, first first.
    #[serde(default)]
    pub references: Vec<String>,
}

// --- Reading ---

/// A message from a person, as an inbound message; None for what must not be
/// answered: our own mail, auto-replies, bulk and list mail, empty bodies.
pub fn parse_mail(
    raw: &[u8],
    own_address: &str,
    validity: u32,
    uid: u32,
) -> Option<InboundMessage> {
    let message = mail_parser::MessageParser::default().parse(raw)?;
    let author = message.from()?.first()?;
    let from = author.address()?.to_lowercase();
    let from_name = author.name().map(str::to_owned);
    if from.eq_ignore_ascii_case(own_address) {
        return None;
    }
    let header = |name: &str| {
        message
            .header_raw(name)
            .map(|v| v.trim().to_ascii_lowercase())
    };
    if header("Auto-Submitted").is_some_and(|v| v != "no")
        || header("Precedence").is_some_and(|v| matches!(v.as_str(), "bulk" | "list" | "junk"))
        || !message.list_id().is_empty()
    {
        return None;
    }
    let body = message.body_text(0)?;
    let subject = message.subject().unwrap_or("");
    let forwarded = is_forwarded(subject, &body);
    let text = strip_quotes_and_signature(&body);
    if text.trim().is_empty() {
        return None;
    }
    let message_id = message
        .message_id()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("uid-{validity}-{uid}@steward.invalid"));
    let references: Vec<String> = message
        .references()
        .as_text_list()
        .map(|list| list.iter().map(|r| r.to_string()).collect())
        .unwrap_or_default();
    let in_reply_to = message.in_reply_to().as_text().map(str::to_owned);
    // The thread is named by its first message.
    let thread = references
        .first()
        .cloned()
        .or(in_reply_to)
        .unwrap_or_else(|| message_id.clone());
    Some(InboundMessage {
        external_id: message_id.clone(),
        conversation_key: thread,
        sender: from.clone(),
        sender_name: from_name,
        forwarded,
        text,
        route: inbound::Route::Email(Route {
            from,
            subject: subject.to_owned(),
            message_id,
            references,
        }),
    })
}

/// The new text of a reply: quoted history (`> …`, "On … wrote:", forwarded
/// and Outlook-style headers) and the signature (after `-- `) removed.
pub fn strip_quotes_and_signature(text: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        let history_starts = line.trim_end() == "--"
            || trimmed.starts_with("-----Original Message-----")
            || trimmed.starts_with("---------- Forwarded message")
            || trimmed.starts_with("________________________________")
            || (trimmed.starts_with("On ") && trimmed.ends_with("wrote:"))
            || (trimmed.starts_with("Le ") && trimmed.ends_with("a écrit :"))
            || (trimmed.starts_with("Am ") && trimmed.ends_with("schrieb:"))
            || trimmed.starts_with("Sent from my ");
        if history_starts {
            break;
        }
        if trimmed.starts_with('>') {
            continue;
        }
        kept.push(line);
    }
    kept.join("\n").trim().to_owned()
}

// --- Sending ---

/// Sends one reply by SMTP, in the thread of the message it answers. Its
/// Message-ID is derived from the reply's id, so a resent reply carries the
/// same one.
pub(crate) async fn send(
    sender: &Sender,
    c: &Config,
    route: &Route,
    part: Part<'_>,
) -> Result<Option<String>, SendError> {
    let (guard, timeout) = (&sender.guard, sender.timeout);
    let permanent = |e: String| SendError::Permanent(e);
    let to = &route.from;
    let answered = &route.message_id;
    let domain = c
        .address
        .rsplit_once('@')
        .map_or("steward.invalid", |(_, d)| d);
    let message_id = format!("<{}.{}@{domain}>", part.message_id, part.index);
    let subject = &route.subject;
    let subject = if subject.to_ascii_lowercase().starts_with("re:") {
        subject.to_owned()
    } else if subject.is_empty() {
        "Re: your message".to_owned()
    } else {
        format!("Re: {subject}")
    };
    let mut references: Vec<String> = route.references.iter().map(|r| format!("<{r}>")).collect();
    let mut email = lettre::Message::builder()
        .from(
            c.address
                .parse()
                .map_err(|e| permanent(format!("from address: {e}")))?,
        )
        .to(to
            .parse()
            .map_err(|e| permanent(format!("reply address {to}: {e}")))?)
        .subject(subject)
        .message_id(Some(message_id.clone()));
    if !answered.is_empty() {
        references.push(format!("<{answered}>"));
        email = email.in_reply_to(format!("<{answered}>"));
    }
    if !references.is_empty() {
        email = email.references(references.join(" "));
    }
    let email = email
        .header(ContentType::TEXT_PLAIN)
        .body(part.text.to_owned())
        .map_err(|e| permanent(format!("building the email: {e}")))?;
    let envelope: Envelope = email.envelope().clone();
    let bytes = email.formatted();

    let hello = ClientId::Domain(domain.to_owned());
    let implicit_tls = c.tls && c.smtp_port == 465;
    let tls = || {
        TlsParameters::new(c.smtp_host.clone()).map_err(|e| permanent(format!("TLS setup: {e}")))
    };
    // The connection goes to an address the guard checked; TLS still
    // verifies the host's name.
    let server = guard
        .resolve(&c.smtp_host, c.smtp_port)
        .await
        .map_err(|failure| match failure.is_transient() {
            true => retry(format!("SMTP: {failure}")),
            false => permanent(format!("SMTP: {failure}")),
        })?;
    let mut connection = AsyncSmtpConnection::connect_tokio1(
        server[0],
        Some(timeout),
        &hello,
        if implicit_tls { Some(tls()?) } else { None },
        None,
    )
    .await
    .map_err(|e| {
        tracing::info!(error = %e, "SMTP connect failed");
        retry(format!(
            "SMTP: {}:{} {}",
            c.smtp_host,
            c.smtp_port,
            connect_failure(&e)
        ))
    })?;
    if c.tls && !implicit_tls {
        connection
            .starttls(tls()?, &hello)
            .await
            .map_err(|e| retry(format!("SMTP STARTTLS: {e}")))?;
    }
    // Over TLS Steward always authenticates; on a loopback server without TLS
    // (allowed for local relays and tests) only when the server offers it.
    let offers_auth = [Mechanism::Plain, Mechanism::Login]
        .into_iter()
        .any(|m| connection.server_info().supports_auth_mechanism(m));
    if c.tls || offers_auth {
        let credentials = Credentials::new(c.username.clone(), c.password.expose().to_owned());
        connection
            .auth(&[Mechanism::Plain, Mechanism::Login], &credentials)
            .await
            .map_err(|e| classify_smtp(e, "SMTP login"))?;
    }
    connection
        .send(&envelope, &bytes)
        .await
        .map_err(|e| classify_smtp(e, "SMTP send"))?;
    let _ = connection.quit().await;
    Ok(Some(message_id))
}

/// 5xx answers are permanent; anything else (4xx, connection trouble) retried.
fn classify_smtp(error: lettre::transport::smtp::Error, what: &str) -> SendError {
    let reason = format!("{what}: {error}");
    if error.is_permanent() {
        SendError::Permanent(reason)
    } else {
        retry(reason)
    }
}

/// Why a connection to an SMTP server failed, in Steward's words.
fn connect_failure(error: &lettre::transport::smtp::Error) -> &'static str {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return "refused the connection",
                std::io::ErrorKind::TimedOut => return "did not answer in time",
                _ => {}
            }
        }
        source = e.source();
    }
    if error.is_timeout() {
        "did not answer in time"
    } else if error.is_tls() {
        "failed the TLS handshake"
    } else {
        "could not be reached"
    }
}

/// Whether a mail forwards another: a forwarding subject (`Fwd:`, `Fw:`,
/// and the German and French `WG:` and `TR:`), or the line mail programs
/// put above a forwarded message.
fn is_forwarded(subject: &str, body: &str) -> bool {
    let subject = subject.trim_start().to_ascii_lowercase();
    let by_subject = ["fwd:", "fw:", "wg:", "tr:"]
        .iter()
        .any(|prefix| subject.starts_with(prefix));
    by_subject
        || body.lines().any(|line| {
            let line = line.trim().trim_matches('-').trim();
            line.eq_ignore_ascii_case("forwarded message")
                || line.eq_ignore_ascii_case("begin forwarded message:")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_smtp_server_out_of_reach_is_named_by_its_cause() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = closed.local_addr().unwrap();
        drop(closed);
        let hello = ClientId::Domain("steward.test".into());
        let timeout = Some(std::time::Duration::from_secs(2));
        let Err(error) =
            AsyncSmtpConnection::connect_tokio1(address, timeout, &hello, None, None).await
        else {
            panic!("nothing listens there");
        };
        assert_eq!(connect_failure(&error), "refused the connection");
    }

    #[test]
    fn quoted_history_and_signatures_are_stripped() {
        let text = "Yes, Tuesday works.\n\nThanks,\nAlice\n-- \nAlice Example\nACME Corp\n";
        assert_eq!(
            strip_quotes_and_signature(text),
            "Yes, Tuesday works.\n\nThanks,\nAlice"
        );
        let gmail = "Sounds good\r\n\r\nOn Mon, 3 Nov 2026 at 10:00, Steward <bot@example.org> wrote:\r\n> Shall we meet?\r\n";
        assert_eq!(strip_quotes_and_signature(gmail), "Sounds good");
        let outlook = "Noted.\n________________________________\nFrom: Steward\nSent: Monday\n";
        assert_eq!(strip_quotes_and_signature(outlook), "Noted.");
        let inline = "> earlier\nmy answer\n> more earlier\nand more";
        assert_eq!(strip_quotes_and_signature(inline), "my answer\nand more");
        assert_eq!(
            strip_quotes_and_signature("Hi\n\nSent from my iPhone"),
            "Hi"
        );
    }

    #[test]
    fn mail_is_threaded_by_its_first_reference() {
        let raw = b"From: Alice <Alice@Example.test>\r\nTo: bot@example.test\r\nSubject: Re: Order 42\r\nMessage-ID: <c@example.test>\r\nIn-Reply-To: <b@example.test>\r\nReferences: <a@example.test> <b@example.test>\r\n\r\nWhere is it?\r\n\r\nOn Mon, Bot wrote:\r\n> It shipped.\r\n";
        let message = parse_mail(raw, "bot@example.test", 1, 7).unwrap();
        assert_eq!(message.external_id, "c@example.test");
        assert_eq!(message.conversation_key, "a@example.test");
        assert_eq!(message.text, "Where is it?");
        let inbound::Route::Email(route) = message.route else {
            panic!("an email route")
        };
        assert_eq!(route.from, "alice@example.test");
        assert_eq!(route.references, ["a@example.test", "b@example.test"]);
    }

    #[test]
    fn own_automatic_and_bulk_mail_is_not_answered() {
        let mail = |extra: &str, from: &str| {
            format!(
                "From: {from}\r\nTo: bot@example.test\r\nSubject: x\r\nMessage-ID: <x@example.test>\r\n{extra}\r\nHello\r\n"
            )
        };
        assert!(
            parse_mail(
                mail("", "a@example.test").as_bytes(),
                "bot@example.test",
                1,
                1
            )
            .is_some()
        );
        assert!(
            parse_mail(
                mail("", "bot@example.test").as_bytes(),
                "bot@example.test",
                1,
                1
            )
            .is_none()
        );
        assert!(
            parse_mail(
                mail("Auto-Submitted: auto-replied\r\n", "a@example.test").as_bytes(),
                "bot@example.test",
                1,
                1
            )
            .is_none()
        );
        assert!(
            parse_mail(
                mail("Precedence: bulk\r\n", "a@example.test").as_bytes(),
                "bot@example.test",
                1,
                1
            )
            .is_none()
        );
        assert!(parse_mail(b"\xff\xfe garbage", "bot@example.test", 1, 1).is_none());
    }

    #[test]
    fn forwarded_mail_is_told_by_its_subject_or_its_forwarding_line() {
        assert!(is_forwarded("Fwd: invoice", "see below"));
        assert!(is_forwarded("  WG: Rechnung", ""));
        assert!(is_forwarded(
            "invoice",
            "FYI\n\n---------- Forwarded message ---------\nFrom: a@b.example"
        ));
        assert!(is_forwarded(
            "invoice",
            "Begin forwarded message:\n\nFrom: a"
        ));
        assert!(!is_forwarded(
            "Re: invoice",
            "-----Original Message-----\nFrom: a"
        ));
        assert!(!is_forwarded("Forward planning", "We move forward."));
    }
}

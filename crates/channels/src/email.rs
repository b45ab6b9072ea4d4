//! Email: new mail read from the mailbox over IMAP by the `poll` job, replies
//! sent over SMTP in the same thread.
//!
//! A mailbox is read by UID: the channel's cursor keeps the folder's
//! UIDVALIDITY and the last UID stored, so each poll fetches only what is new
//! and leaves the mailbox's flags alone. Messages are unique per channel by
//! Message-ID, so a poll repeated after a crash, or two polls overlapping (one
//! slower than the schedule), store nothing twice.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use lettre::address::Envelope;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use serde_json::{Value, json};
use steward_auth::Sealer;
use steward_domain::ChannelKind;
use steward_jobs::{JobError, JobHandler};
use steward_outbound::Guard;
use steward_store::{Channel, ChannelEvent, Job, Store, TenantScope};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::{ChannelConfig, EmailConfig};
use crate::inbound::InboundMessage;
use crate::receive::{Received, receive};
use crate::send::{Part, Route, SendError, retry};

/// Larger messages are skipped (and reported), not fetched.
const MAX_MESSAGE_BYTES: u32 = 2 * 1024 * 1024;
/// At most this many new messages per mailbox per poll; the rest next time.
const MAX_PER_POLL: usize = 100;

// --- Reading: the `poll` job ---

/// Checks every email channel's mailbox once.
pub struct PollMailboxes {
    pub store: Arc<dyn Store>,
    pub sealer: Arc<Sealer>,
    /// Mail servers are the tenant's to name: connections go through the guard.
    pub guard: Guard,
    /// For each network step (connect, log in, fetch).
    pub timeout: Duration,
    pub max_attempts: i32,
}

#[async_trait]
impl JobHandler for PollMailboxes {
    async fn run(&self, _job: &Job) -> Result<(), JobError> {
        let channels = self.store.all_channels(Some(ChannelKind::Email)).await?;
        for channel in channels {
            // One mailbox failing does not hold up the others; its health shows it.
            let outcome = self.poll(&channel).await;
            let event = match outcome {
                Ok(stored) => {
                    if stored > 0 {
                        tracing::info!(channel = %channel.id, stored, "new mail stored");
                    }
                    ChannelEvent::Inbound
                }
                Err(error) => {
                    tracing::warn!(channel = %channel.id, %error, "mailbox check failed");
                    ChannelEvent::Error(error)
                }
            };
            let _ = self.store.record_channel_event(channel.id, event).await;
        }
        Ok(())
    }
}

impl PollMailboxes {
    /// Stores the mailbox's new messages; returns how many were new.
    async fn poll(&self, channel: &Channel) -> Result<usize, String> {
        let ChannelConfig::Email(config) =
            ChannelConfig::open(channel, &self.sealer).map_err(|e| e.to_string())?
        else {
            return Err("not an email channel".into());
        };
        let scope = TenantScope::for_channel(channel);
        let timeout = self.timeout;
        let stream = connect(
            &self.guard,
            &config.imap_host,
            config.imap_port,
            config.tls,
            timeout,
        )
        .await?;
        let mut client = async_imap::Client::new(stream);
        imap(timeout, "greeting", client.read_response()).await?;
        let login = async {
            client
                .login(&config.username, config.password.expose())
                .await
                .map_err(|(e, _)| e)
        };
        let mut session = imap(timeout, "login", login).await?;
        let mailbox = imap(timeout, "select", session.select(&config.folder)).await?;
        let validity = mailbox.uid_validity.unwrap_or(0);
        let cursor = channel.cursor.clone().unwrap_or_default();
        let last_uid = match cursor["uid_validity"].as_u64() {
            // A new UIDVALIDITY renumbers the folder: read it again (Message-IDs dedupe).
            Some(v) if v == u64::from(validity) => cursor["last_uid"].as_u64().unwrap_or(0) as u32,
            _ => 0,
        };

        // Sizes first, so that a huge message is skipped without downloading it.
        let new = format!("{}:*", last_uid + 1);
        let mut sizes: Vec<(u32, u32)> = imap(
            timeout,
            "fetch",
            fetch(&mut session, &new, "(UID RFC822.SIZE)"),
        )
        .await?
        .iter()
        .filter_map(|f| Some((f.uid?, f.size.unwrap_or(0))))
        // `n:*` always names the last message, even when it is older than n.
        .filter(|(uid, _)| *uid > last_uid)
        .collect();
        sizes.sort_unstable();
        sizes.truncate(MAX_PER_POLL);

        let mut stored = 0;
        for (uid, size) in sizes {
            if size > MAX_MESSAGE_BYTES {
                tracing::warn!(channel = %channel.id, uid, size, "message too large: skipped");
            } else {
                let one = uid.to_string();
                let fetched = imap(
                    timeout,
                    "fetch",
                    fetch(&mut session, &one, "(UID BODY.PEEK[])"),
                )
                .await?;
                let raw = fetched.iter().find_map(|f| f.body()).unwrap_or_default();
                if let Some(message) = parse_mail(raw, &config.address, validity, uid) {
                    match receive(self.store.as_ref(), channel, message, self.max_attempts).await {
                        Ok(Received::Stored(_)) => stored += 1,
                        Ok(_) => {}
                        // Stop here: the cursor stays before this message, so it is read again.
                        Err(e) => return Err(format!("storing mail: {e}")),
                    }
                }
            }
            self.store
                .set_channel_cursor(
                    &scope,
                    channel.id,
                    json!({ "uid_validity": validity, "last_uid": uid }),
                )
                .await
                .map_err(|e| format!("saving the mailbox position: {e}"))?;
        }
        let _ = imap(timeout, "logout", session.logout()).await;
        Ok(stored)
    }
}

/// One step of an IMAP session, failing as `IMAP {what}: …` on its own error
/// or after `timeout`.
async fn imap<T, E: std::fmt::Display>(
    timeout: Duration,
    what: &str,
    step: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, step).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("IMAP {what}: {e}")),
        Err(_) => Err(format!("IMAP {what}: timed out")),
    }
}

/// `UID FETCH {uids} {query}`, collected.
async fn fetch(
    session: &mut async_imap::Session<Box<dyn MailStream>>,
    uids: &str,
    query: &str,
) -> async_imap::error::Result<Vec<async_imap::types::Fetch>> {
    session.uid_fetch(uids, query).await?.try_collect().await
}

/// Either a plain or a TLS connection, for IMAP.
trait MailStream: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> MailStream for T {}

async fn connect(
    guard: &Guard,
    host: &str,
    port: u16,
    tls: bool,
    timeout: Duration,
) -> Result<Box<dyn MailStream>, String> {
    let tcp = guard
        .connect(host, port, timeout)
        .await
        .map_err(|failure| format!("IMAP: {failure}"))?;
    if !tls {
        return Ok(Box::new(tcp));
    }
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_platform_verifier())
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| format!("host {host}: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp);
    let stream = tokio::time::timeout(timeout, stream)
        .await
        .map_err(|_| format!("IMAP: {host}:{port} did not answer in time"))?
        .map_err(|_| format!("IMAP: the TLS handshake with {host}:{port} failed"))?;
    Ok(Box::new(stream))
}

/// A message from a person, as an inbound message; None for what must not be
/// answered: our own mail, auto-replies, bulk and list mail, empty bodies.
pub fn parse_mail(
    raw: &[u8],
    own_address: &str,
    validity: u32,
    uid: u32,
) -> Option<InboundMessage> {
    let message = mail_parser::MessageParser::default().parse(raw)?;
    let from = message.from()?.first()?.address()?.to_lowercase();
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
    let text = strip_quotes_and_signature(&message.body_text(0)?);
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
        text,
        meta: json!({
            "from": from,
            "subject": message.subject().unwrap_or(""),
            "message_id": message_id,
            "references": references,
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
pub async fn send(
    c: &EmailConfig,
    route: &Route,
    part: Part<'_>,
    guard: &Guard,
    timeout: Duration,
) -> Result<Option<String>, SendError> {
    let permanent = |e: String| SendError::Permanent(e);
    let to = route["from"]
        .as_str()
        .ok_or_else(|| permanent("the message answered has no sender to reply to".into()))?;
    let answered = route["message_id"].as_str().unwrap_or_default();
    let domain = c
        .address
        .rsplit_once('@')
        .map_or("steward.invalid", |(_, d)| d);
    let message_id = format!("<{}.{}@{domain}>", part.message_id, part.index);
    let subject = route["subject"].as_str().unwrap_or("");
    let subject = if subject.to_ascii_lowercase().starts_with("re:") {
        subject.to_owned()
    } else if subject.is_empty() {
        "Re: your message".to_owned()
    } else {
        format!("Re: {subject}")
    };
    let mut references: Vec<String> = route["references"]
        .as_array()
        .map(|refs| {
            refs.iter()
                .filter_map(Value::as_str)
                .map(|r| format!("<{r}>"))
                .collect()
        })
        .unwrap_or_default();
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
            "SMTP: {}:{} could not be reached",
            c.smtp_host, c.smtp_port
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(message.meta["from"], "alice@example.test");
        assert_eq!(
            message.meta["references"],
            json!(["a@example.test", "b@example.test"])
        );
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
}

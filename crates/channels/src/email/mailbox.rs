//! Reading a mailbox: the `poll` job, over IMAP.
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
use serde_json::json;
use steward_auth::Sealer;
use steward_domain::ChannelKind;
use steward_jobs::{JobError, JobHandler};
use steward_outbound::Guard;
use steward_store::{Channel, ChannelEvent, Job, Store, TenantScope};
use tokio::io::{AsyncRead, AsyncWrite};

use super::parse_mail;
use crate::config::ChannelConfig;
use crate::receive::{Received, receive};

/// Larger messages are skipped (and reported), not fetched.
const MAX_MESSAGE_BYTES: u32 = 2 * 1024 * 1024;
/// At most this many new messages per mailbox per poll; the rest next time.
const MAX_PER_POLL: usize = 100;

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
        let mut session = sign_in(&self.guard, &config, timeout).await?;
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

/// Signs in to the mailbox and opens its folder, as a poll would, then
/// signs out: whether the configuration works.
pub(crate) async fn check_login(
    guard: &Guard,
    config: &crate::email::Config,
    timeout: Duration,
) -> Result<(), String> {
    let mut session = sign_in(guard, config, timeout).await?;
    imap(timeout, "select", session.select(&config.folder)).await?;
    let _ = imap(timeout, "logout", session.logout()).await;
    Ok(())
}

/// A signed-in IMAP session with the mailbox of `config`.
async fn sign_in(
    guard: &Guard,
    config: &crate::email::Config,
    timeout: Duration,
) -> Result<async_imap::Session<Box<dyn MailStream>>, String> {
    let stream = connect(
        guard,
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
    imap(timeout, "login", login).await
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
    let stream = tokio::time::timeout(timeout, crate::tls::client(host, tcp))
        .await
        .map_err(|_| format!("IMAP: {host}:{port} did not answer in time"))?
        .map_err(|e| format!("IMAP: {e} (port {port})"))?;
    Ok(Box::new(stream))
}

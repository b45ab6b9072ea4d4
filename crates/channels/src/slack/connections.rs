//! Which process holds each Socket Mode channel's one connection: the one
//! that leads `slack-socket` (leadership in the store, as the scheduler's:
//! a lease on SQLite, a session lock on PostgreSQL). The leader looks for
//! Socket Mode channels every `rescan`, connects each new one, and closes
//! the connections of channels deleted or re-sealed; when it stops leading
//! or stops, it closes them all. When it dies, another api process takes
//! over once the lease lapses (PostgreSQL: at once, the lock going with its
//! connection), within `lease + rescan`.
//!
//! A leader that stalls past its lease may hold its connections a moment
//! beside its successor's: Slack spreads an app's events over its open
//! connections (up to ten), so each still arrives once, and an event sent
//! twice is stored once (its `event_id`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use steward_auth::Sealer;
use steward_domain::{ChannelId, ChannelKind};
use steward_store::{Channel, Leadership, Store};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

use super::Mode;
use super::socket::SocketMode;
use crate::config::ChannelConfig;
use crate::inbound::Inbound;
use crate::send::Sender;

/// The name api processes compete to lead.
const LEADERSHIP: &str = "slack-socket";

#[derive(Clone, Debug)]
pub struct SocketSettings {
    /// How long leadership outlives a leader that stops renewing it.
    pub lease: Duration,
    /// How often the leader renews it and looks for channels.
    pub rescan: Duration,
    /// How often each connection is pinged.
    pub keepalive: Duration,
}

impl Default for SocketSettings {
    /// Taken over within 25 s of its holder's death; Slack's own clients
    /// ping every 30 s.
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(20),
            rescan: Duration::from_secs(5),
            keepalive: Duration::from_secs(30),
        }
    }
}

/// The Socket Mode channels of every organization, run from an api process.
pub struct SocketChannels {
    pub store: Arc<dyn Store>,
    pub sealer: Arc<Sealer>,
    /// Its HTTP client and `channels.slack_api_url`.
    pub sender: Sender,
    pub max_attempts: i32,
    /// Woken when a message is stored, so a worker in this process starts at once.
    pub enqueued: Arc<Notify>,
    pub settings: SocketSettings,
}

/// One channel's connection, running.
struct Connection {
    /// What it was opened with: other secrets mean a new connection.
    sealed: Vec<u8>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Connection {
    async fn close(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

impl SocketChannels {
    /// Runs until `shutdown` completes; closes its connections and resigns
    /// on the way out.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let holder = steward_jobs::holder_id("api");
        let lease = chrono::Duration::from_std(self.settings.lease)
            .unwrap_or(chrono::Duration::seconds(20));
        let mut leading: Option<Box<dyn Leadership>> = None;
        let mut open: HashMap<ChannelId, Connection> = HashMap::new();
        loop {
            leading = match leading.take() {
                None => match self.store.try_lead(LEADERSHIP, &holder, lease).await {
                    Ok(Some(leadership)) => {
                        tracing::info!(holder = %holder, "holding the Slack Socket Mode connections");
                        Some(leadership)
                    }
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not ask to hold the Slack Socket Mode connections");
                        None
                    }
                },
                Some(mut leadership) => match leadership.still_leading().await {
                    Ok(true) => Some(leadership),
                    Ok(false) => {
                        tracing::warn!(holder = %holder, "no longer holding the Slack Socket Mode connections");
                        None
                    }
                    // Keep them through a passing error; the lease (or lock) decides.
                    Err(e) => {
                        tracing::warn!(error = %e, "could not renew the Slack Socket Mode lease");
                        Some(leadership)
                    }
                },
            };
            match leading {
                Some(_) => self.reconcile(&mut open).await,
                None => close_all(&mut open).await,
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(self.settings.rescan) => {}
            }
        }
        close_all(&mut open).await;
        if let Some(leadership) = leading {
            leadership.resign().await;
        }
    }

    /// Opens a connection for each Socket Mode channel without one, and
    /// closes those of channels gone or re-sealed. A failure to list
    /// channels leaves the connections as they are.
    async fn reconcile(&self, open: &mut HashMap<ChannelId, Connection>) {
        let channels = match self.store.all_channels(Some(ChannelKind::Slack)).await {
            Ok(channels) => channels,
            Err(e) => {
                tracing::warn!(error = %e, "could not list the Slack channels");
                return;
            }
        };
        let wanted: HashMap<ChannelId, Channel> = channels
            .into_iter()
            .filter(super::in_socket_mode)
            .map(|c| (c.id, c))
            .collect();
        let stale: Vec<ChannelId> = open
            .iter()
            .filter(|(id, c)| wanted.get(id).is_none_or(|w| w.sealed_secrets != c.sealed))
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some(connection) = open.remove(&id) {
                connection.close().await;
            }
        }
        for (id, channel) in wanted {
            if open.contains_key(&id) {
                continue;
            }
            let Some(socket) = self.socket_mode(&channel) else {
                continue;
            };
            let (stop, stopped) = oneshot::channel();
            let sealed = channel.sealed_secrets.clone();
            let task = tokio::spawn(self.connect(socket, channel, stopped));
            open.insert(id, Connection { sealed, stop, task });
        }
    }

    /// The channel's app, or None (logged) when its secrets do not open.
    fn socket_mode(&self, channel: &Channel) -> Option<SocketMode> {
        let config = match ChannelConfig::open(channel, &self.sealer) {
            Ok(ChannelConfig::Slack(c)) if c.mode == Mode::Socket => c,
            Ok(_) => return None,
            Err(e) => {
                tracing::warn!(channel = %channel.id, error = %e, "a Socket Mode channel's configuration does not open");
                return None;
            }
        };
        Some(SocketMode {
            http: self.sender.client.clone(),
            api_url: self.sender.apis.slack.clone(),
            app_token: config.app_token?.expose().to_owned(),
            timeout: self.sender.timeout,
            keepalive: self.settings.keepalive,
        })
    }

    /// Keeps one channel connected until `stopped`: each event stored as a
    /// webhook's would be, before Slack is told it arrived.
    fn connect(
        &self,
        socket: SocketMode,
        channel: Channel,
        stopped: oneshot::Receiver<()>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let (store, enqueued) = (self.store.clone(), self.enqueued.clone());
        let max_attempts = self.max_attempts;
        async move {
            tracing::info!(channel = %channel.id, "connecting to Slack in Socket Mode");
            let take = |payload: Vec<u8>| {
                let (store, channel, enqueued) = (store.clone(), channel.clone(), enqueued.clone());
                async move {
                    let events = match super::parse(&payload) {
                        Ok(Inbound::Messages(messages)) => (messages, Vec::new()),
                        Ok(Inbound::Events {
                            messages,
                            reactions,
                        }) => (messages, reactions),
                        Ok(Inbound::Challenge(_) | Inbound::Ignored(_) | Inbound::Greet { .. }) => {
                            return Ok(());
                        }
                        // Sent again it would be as malformed: acknowledged.
                        Err(e) => {
                            tracing::warn!(channel = %channel.id, error = %e, "a Socket Mode event was not understood");
                            return Ok(());
                        }
                    };
                    let taken = crate::take(store.as_ref(), &channel, events, max_attempts).await?;
                    if taken.stored > 0 {
                        enqueued.notify_one();
                    }
                    Ok::<_, steward_store::StoreError>(())
                }
            };
            socket
                .run(take, async {
                    let _ = stopped.await;
                })
                .await;
            tracing::info!(channel = %channel.id, "Socket Mode connection closed");
        }
    }
}

async fn close_all(open: &mut HashMap<ChannelId, Connection>) {
    futures::future::join_all(open.drain().map(|(_, c)| c.close())).await;
}

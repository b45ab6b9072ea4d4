//! Slack's Socket Mode: Steward opens a WebSocket to Slack instead of taking
//! webhooks, for a Steward with no public address. Each connection's URL
//! comes from `apps.connections.open`, called with the app-level token
//! (`xapp-…`). Slack then sends `hello`, envelopes, and `disconnect` when it
//! wants the connection replaced. An `events_api` envelope's payload is the
//! body the Events API would have posted, read by the same parser.
//!
//! Each envelope is acknowledged (`{"envelope_id": …}`) once its payload is
//! taken, which means stored: Slack sends an envelope it hears no
//! acknowledgement of again, so a message is lost neither when Steward
//! stops between the two nor when storing fails, and the message's event id
//! keeps the second delivery from storing it twice. Storing takes
//! milliseconds, well inside the three seconds Slack waits.
//!
//! Which process holds a channel's one connection is the caller's to decide.

use std::future::Future;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A connection that answers none of this many pings in a row is taken
/// for dead.
const UNANSWERED_PINGS: u32 = 4;

/// The longest wait between failed attempts to connect.
const MOST_BACKOFF: Duration = Duration::from_secs(60);

/// How one connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Slack asked for a new connection (`disconnect`, with its reason).
    Replaced(String),
    /// The connection closed, dropped or fell silent.
    Dropped(String),
    /// The caller asked to stop.
    Stopped,
}

/// A byte stream a WebSocket runs over: plain (a test's `ws://` on this
/// machine) or TLS.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// One Slack app's connections: where its Web API is, and its app token.
#[derive(Clone)]
pub struct SocketMode {
    pub http: reqwest::Client,
    /// `channels.slack_api_url` (`https://slack.com/api`).
    pub api_url: String,
    pub app_token: String,
    pub timeout: Duration,
    /// How often a ping is sent (30 s): what tells a dead connection from a
    /// quiet one.
    pub keepalive: Duration,
}

#[derive(Deserialize)]
struct Opened {
    ok: bool,
    url: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    envelope_id: Option<String>,
    payload: Option<serde_json::Value>,
    reason: Option<String>,
}

impl SocketMode {
    /// A fresh connection URL from `apps.connections.open`.
    pub async fn open_url(&self) -> Result<String, String> {
        let response = self
            .http
            .post(format!(
                "{}/apps.connections.open",
                self.api_url.trim_end_matches('/')
            ))
            .bearer_auth(&self.app_token)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| format!("apps.connections.open: {}", without_url(&e)))?;
        let status = response.status();
        let opened: Opened = response
            .json()
            .await
            .map_err(|_| format!("apps.connections.open answered {status} without JSON"))?;
        match (opened.ok, opened.url) {
            (true, Some(url)) => Ok(url),
            _ => Err(format!(
                "apps.connections.open: {}",
                opened.error.unwrap_or_else(|| status.to_string())
            )),
        }
    }

    /// Connects to `url`: `wss://` checked against the platform's roots,
    /// `ws://` only to this machine.
    pub async fn connect(&self, url: &str) -> Result<WebSocketStream<Box<dyn Transport>>, String> {
        let request = url
            .into_client_request()
            .map_err(|e| format!("Slack's connection URL: {e}"))?;
        let uri = request.uri().clone();
        let host = uri
            .host()
            .ok_or("Slack's connection URL names no host")?
            .trim_matches(|c| c == '[' || c == ']')
            .to_owned();
        let secure = match uri.scheme_str() {
            Some("wss") => true,
            Some("ws") if crate::config::is_loopback_host(&host) => false,
            _ => return Err("Slack's connection URL is not wss://".into()),
        };
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let connecting = async {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
            let transport: Box<dyn Transport> = if secure {
                Box::new(crate::tls::client(&host, tcp).await?)
            } else {
                Box::new(tcp)
            };
            let (ws, _) = tokio_tungstenite::client_async(request, transport)
                .await
                .map_err(|e| format!("the WebSocket handshake with {host} failed: {e}"))?;
            Ok(ws)
        };
        tokio::time::timeout(self.timeout, connecting)
            .await
            .map_err(|_| format!("{host}:{port} did not answer in time"))?
    }

    /// Keeps the app connected until `stop` resolves: a new connection
    /// whenever one ends, after a wait doubling from one second to a minute
    /// while connecting fails. `take` gets each `events_api` payload.
    pub async fn run<F, Fut, E>(&self, mut take: F, stop: impl Future<Output = ()>)
    where
        F: FnMut(Vec<u8>) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let mut stop = std::pin::pin!(stop);
        let mut backoff = Duration::from_secs(1);
        loop {
            let connected = async {
                let url = self.open_url().await?;
                self.connect(&url).await
            };
            let ws = tokio::select! {
                _ = &mut stop => return,
                connected = connected => connected,
            };
            match ws {
                Ok(ws) => {
                    backoff = Duration::from_secs(1);
                    match serve(ws, self.keepalive, &mut take, &mut stop).await {
                        Ended::Stopped => return,
                        Ended::Replaced(reason) => {
                            tracing::info!(%reason, "Slack asked for a new Socket Mode connection");
                        }
                        Ended::Dropped(reason) => {
                            tracing::warn!(%reason, "the Slack Socket Mode connection dropped");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, wait = ?backoff, "no Slack Socket Mode connection");
                    tokio::select! {
                        _ = &mut stop => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MOST_BACKOFF);
                }
            }
        }
    }
}

/// Reads one connection until it ends: each envelope acknowledged once
/// `take` has its payload (an `events_api` one) or at once (any other); a
/// ping every `keepalive`, and the connection taken for dead when nothing
/// comes back for `UNANSWERED_PINGS` of them.
pub async fn serve<S, F, Fut, E>(
    mut ws: WebSocketStream<S>,
    keepalive: Duration,
    take: &mut F,
    stop: &mut (impl Future<Output = ()> + Unpin),
) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnMut(Vec<u8>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut pings = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
    let mut heard = tokio::time::Instant::now();
    loop {
        let frame = tokio::select! {
            _ = &mut *stop => {
                let _ = ws.close(None).await;
                return Ended::Stopped;
            }
            _ = pings.tick() => {
                if heard.elapsed() > keepalive * UNANSWERED_PINGS {
                    return Ended::Dropped(format!("nothing heard for {:?}", heard.elapsed()));
                }
                if let Err(e) = ws.send(Message::Ping(Default::default())).await {
                    return Ended::Dropped(e.to_string());
                }
                continue;
            }
            // Cancel-safe: a frame half read stays in the stream's buffer.
            frame = ws.next() => frame,
        };
        heard = tokio::time::Instant::now();
        let text = match frame {
            None => return Ended::Dropped("closed".into()),
            Some(Err(e)) => return Ended::Dropped(e.to_string()),
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                return Ended::Dropped(
                    frame.map_or_else(|| "closed".into(), |f| format!("closed: {}", f.reason)),
                );
            }
            // Pongs, and Slack's pings (answered by the library as it reads).
            Some(Ok(_)) => continue,
        };
        let Ok(envelope) = serde_json::from_str::<Envelope>(&text) else {
            tracing::warn!("Slack sent a Socket Mode message that is not an envelope");
            continue;
        };
        match envelope.kind.as_str() {
            "hello" => continue,
            "disconnect" => {
                let _ = ws.close(None).await;
                return Ended::Replaced(envelope.reason.unwrap_or_default());
            }
            _ => {}
        }
        let Some(id) = envelope.envelope_id else {
            continue;
        };
        if envelope.kind == "events_api" {
            let payload = envelope.payload.unwrap_or_default();
            if let Err(e) = take(payload.to_string().into_bytes()).await {
                // Unacknowledged, Slack sends it again.
                tracing::warn!(error = %e, "a Slack event was not taken; Slack will send it again");
                continue;
            }
        }
        // Slash commands and interactions are not served: acknowledged so
        // that Slack stops resending them.
        let ack = json!({ "envelope_id": id }).to_string();
        if let Err(e) = ws.send(Message::text(ack)).await {
            return Ended::Dropped(e.to_string());
        }
    }
}

/// A request error without its URL (whose query could hold a ticket).
fn without_url(e: &reqwest::Error) -> String {
    let mut e = e.to_string();
    if let Some(at) = e.find(" for url") {
        e.truncate(at);
    }
    e
}

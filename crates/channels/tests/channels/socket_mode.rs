//! Slack's Socket Mode against a local server speaking its protocol:
//! `apps.connections.open` with the app-level token, then a WebSocket that
//! says `hello`, sends envelopes, and ends connections the ways Slack does
//! (asking with `disconnect`, or dropping them).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use reqwest::StatusCode;
use serde_json::{Value, json};
use steward_channels::slack::socket::{Ended, SocketMode};

const APP_TOKEN: &str = "xapp-1-A1-1-test";

#[derive(Clone, Default)]
struct Slack {
    port: u16,
    /// Connections opened so far.
    connections: Arc<Mutex<u32>>,
    /// Envelope ids acknowledged, in order.
    acks: Arc<Mutex<Vec<String>>>,
    /// Pings heard on the connection held open.
    pings: Arc<Mutex<u32>>,
    /// Every connection says hello and then neither reads nor writes.
    silent: bool,
}

async fn open(State(slack): State<Slack>, headers: HeaderMap) -> axum::Json<Value> {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {APP_TOKEN}"))
    {
        return axum::Json(json!({ "ok": false, "error": "invalid_auth" }));
    }
    let url = format!("ws://127.0.0.1:{}/link?ticket=secret", slack.port);
    axum::Json(json!({ "ok": true, "url": url }))
}

async fn link(State(slack): State<Slack>, upgrade: WebSocketUpgrade) -> impl IntoResponse {
    let n = {
        let mut connections = slack.connections.lock().unwrap();
        *connections += 1;
        *connections
    };
    upgrade.on_upgrade(move |socket| connection(slack, n, socket))
}

fn event(envelope: &str, event_id: &str) -> String {
    json!({
        "envelope_id": envelope,
        "type": "events_api",
        "accepts_response_payload": false,
        "retry_attempt": 0,
        "payload": {
            "type": "event_callback",
            "event_id": event_id,
            "event": { "type": "message", "user": "U1", "text": "hello", "channel": "D1",
                       "channel_type": "im", "ts": "1.1" }
        }
    })
    .to_string()
}

/// The next acknowledgement, if one comes within `wait`, recorded. The
/// test reads what was recorded: the server only plays its part.
async fn ack(slack: &Slack, socket: &mut WebSocket, wait: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + wait;
    let text = loop {
        match tokio::time::timeout_at(deadline, socket.recv()).await {
            Ok(Some(Ok(Message::Text(text)))) => break text,
            Ok(Some(Ok(Message::Ping(_)))) => continue,
            _ => return None,
        }
    };
    let id = serde_json::from_str::<Value>(&text).unwrap()["envelope_id"]
        .as_str()
        .unwrap()
        .to_owned();
    slack.acks.lock().unwrap().push(id.clone());
    Some(id)
}

/// What each connection does: the first delivers an event and a slash
/// command and then asks to be replaced; the second delivers one and drops;
/// the third delivers one the client fails to take, hears no
/// acknowledgement, and sends it again.
async fn connection(slack: Slack, n: u32, mut socket: WebSocket) {
    let hello = json!({ "type": "hello", "num_connections": 1 }).to_string();
    socket.send(Message::Text(hello.into())).await.unwrap();
    if slack.silent {
        tokio::time::sleep(Duration::from_secs(10)).await;
        return;
    }
    let long = Duration::from_secs(10);
    match n {
        1 => {
            socket
                .send(Message::Text(event("e1", "Ev1").into()))
                .await
                .unwrap();
            if ack(&slack, &mut socket, long).await.is_none() {
                return;
            }
            let command = json!({ "envelope_id": "e2", "type": "slash_commands", "payload": {} });
            socket
                .send(Message::Text(command.to_string().into()))
                .await
                .unwrap();
            if ack(&slack, &mut socket, long).await.is_none() {
                return;
            }
            let disconnect = json!({ "type": "disconnect", "reason": "refresh_requested" });
            socket
                .send(Message::Text(disconnect.to_string().into()))
                .await
                .unwrap();
            // The client closes.
            while let Some(Ok(message)) = socket.recv().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        }
        2 => {
            socket
                .send(Message::Text(event("e3", "Ev3").into()))
                .await
                .unwrap();
            ack(&slack, &mut socket, long).await;
            // Dropped without a close frame.
        }
        _ => {
            socket
                .send(Message::Text(event("e4", "Ev4").into()))
                .await
                .unwrap();
            // Not taken: no acknowledgement, so Slack sends it again.
            if ack(&slack, &mut socket, Duration::from_millis(500))
                .await
                .is_some()
            {
                return;
            }
            socket
                .send(Message::Text(event("e5", "Ev4").into()))
                .await
                .unwrap();
            ack(&slack, &mut socket, long).await;
            // Held open until the client stops, answering its pings.
            while let Some(Ok(message)) = socket.recv().await {
                if matches!(message, Message::Ping(_)) {
                    *slack.pings.lock().unwrap() += 1;
                }
            }
        }
    }
}

async fn start_slack() -> Slack {
    start_slack_with(false).await
}

async fn start_slack_with(silent: bool) -> Slack {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slack = Slack {
        port: listener.local_addr().unwrap().port(),
        silent,
        ..Default::default()
    };
    let app = Router::new()
        .route("/api/apps.connections.open", post(open))
        .route("/link", get(link))
        .with_state(slack.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    slack
}

fn socket_mode(slack: &Slack, token: &str) -> SocketMode {
    SocketMode {
        http: reqwest::Client::new(),
        api_url: format!("http://127.0.0.1:{}/api", slack.port),
        app_token: token.into(),
        timeout: Duration::from_secs(5),
        keepalive: Duration::from_millis(100),
    }
}

#[tokio::test]
async fn envelopes_are_acknowledged_once_taken_and_the_connection_comes_back_however_it_ends() {
    let slack = start_slack().await;
    let taken = Arc::new(Mutex::new(Vec::<String>::new()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn({
        let socket_mode = socket_mode(&slack, APP_TOKEN);
        let taken = taken.clone();
        async move {
            let take = |payload: Vec<u8>| {
                let taken = taken.clone();
                async move {
                    let payload: Value = serde_json::from_slice(&payload).unwrap();
                    let id = payload["event_id"].as_str().unwrap().to_owned();
                    let mut taken = taken.lock().unwrap();
                    let first_try = !taken.contains(&id);
                    taken.push(id.clone());
                    if id == "Ev4" && first_try {
                        return Err("the store is down");
                    }
                    Ok(())
                }
            };
            socket_mode
                .run(take, async {
                    let _ = stopped.await;
                })
                .await;
        }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while slack.acks.lock().unwrap().len() < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "acknowledged: {:?}",
            slack.acks.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(*slack.acks.lock().unwrap(), ["e1", "e2", "e3", "e5"]);
    assert_eq!(
        *taken.lock().unwrap(),
        ["Ev1", "Ev3", "Ev4", "Ev4"],
        "a slash command is acknowledged, not taken; the event not taken comes again"
    );
    // The third connection, quiet but answering pings, is kept.
    while *slack.pings.lock().unwrap() < 5 {
        assert!(tokio::time::Instant::now() < deadline, "pings stopped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        *slack.connections.lock().unwrap(),
        3,
        "after a disconnect and a drop"
    );
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("stops when asked")
        .unwrap();
}

#[tokio::test]
async fn a_refused_token_or_a_url_that_is_not_wss_opens_nothing() {
    let slack = start_slack().await;
    let refused = socket_mode(&slack, "xapp-wrong").open_url().await;
    assert_eq!(refused, Err("apps.connections.open: invalid_auth".into()));
    let client = socket_mode(&slack, APP_TOKEN);
    for url in [
        "ws://example.org/link",
        "http://127.0.0.1/link",
        "not a url",
    ] {
        let refused = client.connect(url).await;
        assert!(refused.is_err(), "{url}");
    }
    assert_eq!(*slack.connections.lock().unwrap(), 0);
}

#[tokio::test]
async fn a_connection_that_is_asked_to_stop_closes() {
    let slack = start_slack().await;
    let client = socket_mode(&slack, APP_TOKEN);
    let url = client.open_url().await.unwrap();
    let ws = client.connect(&url).await.unwrap();
    let mut take = |_: Vec<u8>| async { Ok::<(), String>(()) };
    let mut stop = std::pin::pin!(async {});
    let ended =
        steward_channels::slack::socket::serve(ws, client.keepalive, &mut take, &mut stop).await;
    assert_eq!(ended, Ended::Stopped);
}

#[tokio::test]
async fn a_connection_that_answers_no_pings_is_taken_for_dead() {
    let slack = start_slack_with(true).await;
    let client = socket_mode(&slack, APP_TOKEN);
    let ws = client
        .connect(&client.open_url().await.unwrap())
        .await
        .unwrap();
    let mut take = |_: Vec<u8>| async { Ok::<(), String>(()) };
    let mut stop = std::pin::pin!(std::future::pending::<()>());
    let ended = tokio::time::timeout(
        Duration::from_secs(5),
        steward_channels::slack::socket::serve(ws, client.keepalive, &mut take, &mut stop),
    )
    .await
    .expect("given up on within four pings");
    assert!(
        matches!(&ended, Ended::Dropped(reason) if reason.starts_with("nothing heard")),
        "{ended:?}"
    );
}

/// A `message` event from a person in a direct message, as Slack sends it.
fn direct_message(event_id: &str, ts: &str, text: &str) -> Value {
    json!({
        "type": "event_callback",
        "event_id": event_id,
        "authorizations": [{ "user_id": "UBOT" }],
        "event": { "type": "message", "user": "U1", "text": text, "channel": "D1",
                   "channel_type": "im", "ts": ts }
    })
}

/// Socket Mode channels run from an api process, until `stop`.
fn holder(
    harness: &crate::Harness,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let state = &harness.app.state;
    let sockets = steward_channels::SocketChannels {
        store: harness.app.store.clone(),
        sealer: state.sealer.clone(),
        sender: state.channels.clone(),
        max_attempts: 3,
        enqueued: state.jobs_enqueued.clone(),
        settings: steward_channels::SocketSettings {
            lease: Duration::from_millis(1500),
            rescan: Duration::from_millis(100),
            keepalive: Duration::from_secs(30),
        },
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(sockets.run(async {
        let _ = stopped.await;
    }));
    (stop, task)
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The Slack app of a channel in Socket Mode: no webhook; the events come
/// over the connection one api process holds, are answered in Slack, stored
/// once however often Slack sends them, and follow the connection to
/// another process when its holder goes.
#[tokio::test]
async fn a_socket_mode_channel_is_answered_through_the_one_connection_its_holders_share() {
    let harness = crate::Harness::start().await;
    let slack = &harness.providers;
    let config =
        json!({ "bot_token": "xoxb-test-token", "mode": "socket", "app_token": APP_TOKEN });
    let (channel, webhook) = harness.channel("slack", config).await;
    assert_eq!(
        slack.checks("slack-socket"),
        1,
        "the app token is checked when saved"
    );
    assert!(webhook.is_empty(), "no webhook URL to paste: {webhook}");
    // Slack never posts to it; whoever does is refused.
    let path = format!("/webhooks/slack/{channel}");
    let posted = harness
        .post_raw(
            &path,
            &[],
            direct_message("Ev0", "1.0", "hi").to_string().into_bytes(),
        )
        .await;
    assert_eq!(posted.status, StatusCode::UNAUTHORIZED);

    let (first_stop, first) = holder(&harness);
    until("a connection", || slack.slack_sockets() == (1, 1)).await;
    let (second_stop, second) = holder(&harness);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        slack.slack_sockets(),
        (1, 1),
        "one connection between two holders"
    );

    let envelope = slack.slack_socket_event(direct_message("Ev1", "1.1", "What are your hours?"));
    let sent = slack.wait_for("slack", 1).await;
    assert_eq!(sent[0].body["channel"], "D1");
    assert!(slack.slack_acknowledged().contains(&envelope));
    // Slack sends the same event again (a retry): stored once, answered once.
    slack.slack_socket_event(direct_message("Ev1", "1.1", "What are your hours?"));
    until("the retry acknowledged", || {
        slack.slack_acknowledged().len() == 2
    })
    .await;

    // The holder stops without a word (its lease left to lapse): the other
    // takes the channel over and the next event is answered through it.
    first.abort();
    drop(first_stop);
    until("the connection taken over", || {
        slack.slack_sockets() == (2, 1)
    })
    .await;
    slack.slack_socket_event(direct_message("Ev2", "1.2", "And on Sundays?"));
    slack.wait_for("slack", 2).await;
    let users = harness.user_messages().await;
    let texts: Vec<&str> = users.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["What are your hours?", "And on Sundays?"]);
    assert_eq!(slack.sent("slack").len(), 2, "each answered once");

    // A deleted channel's connection is closed.
    let deleted = harness
        .app
        .delete(
            &format!("/api/v1/chatbots/{}/channels/{channel}", harness.bot),
            &harness.owner.token,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    until("the connection closed", || slack.slack_sockets().1 == 0).await;
    second_stop.send(()).unwrap();
    second.await.unwrap();
}

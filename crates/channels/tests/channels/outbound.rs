//! Every destination a tenant sets on a channel (a generic channel's reply
//! URL, an email channel's SMTP and IMAP hosts), pointed at loopback, private,
//! link-local or metadata addresses by every spelling the guard knows and by a
//! name that resolves to one: refused, and no connection reaches a listener.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use steward_channels::{ChannelConfig, Part, Route, SendError};
use steward_domain::{ChannelKind, MessageId};
use steward_jobs::JobHandler;
use steward_outbound::FORBIDDEN_HOSTS;
use steward_store::NewJob;
use tokio::net::TcpListener;

use super::*;

/// A listener that counts the connections it is offered.
async fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, accepted)
}

fn closed_sender() -> Sender {
    Sender::new(
        Duration::from_secs(2),
        ProviderApis {
            whatsapp: "https://graph.facebook.com/v21.0".into(),
            slack: "https://slack.com/api".into(),
            telegram: "https://api.telegram.org".into(),
            teams_login: "https://login.microsoftonline.com".into(),
        },
        Guard::new(false),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_urls_and_mail_servers_at_forbidden_addresses_are_refused_before_connecting() {
    let (port, accepted) = counting_listener().await;
    let sender = closed_sender();
    let part = Part {
        message_id: MessageId::new(),
        index: 0,
        count: 1,
        text: "hello",
    };
    let route = json!({ "id": "m1", "user": "u1", "conversation": "u1",
                        "from": "alice@example.org", "subject": "Hi", "message_id": "m1@example.org" });
    for host in FORBIDDEN_HOSTS {
        let destinations = [
            (
                ChannelKind::Generic,
                json!({ "signing_secret": "s", "reply_url": format!("https://{host}:{port}/internal/admin") }),
            ),
            (
                ChannelKind::Email,
                json!({ "imap_host": "mail.example.org", "smtp_host": host, "smtp_port": port,
                        "username": "u", "password": "p", "address": "bot@example.org" }),
            ),
        ];
        for (kind, settings) in destinations {
            // Some spellings are refused as the channel is saved; the rest when it is used.
            let Ok(config) = ChannelConfig::parse(kind, settings.clone()) else {
                continue;
            };
            let route = Route::from_meta(kind, route.clone()).unwrap();
            match sender.send(&config, &route, part).await {
                Err(SendError::Permanent(why)) => {
                    assert!(why.contains("refused"), "{settings}: {why}")
                }
                other => panic!("{settings} was not refused: {other:?}"),
            }
        }
    }

    // IMAP: the check when the channel is saved refuses the host; saved
    // without it, the mailbox poll refuses it and the channel's health says so.
    let mut h = Harness::start().await;
    // Only this test's poll, with the guard closed, may read the mailbox.
    h.stop_worker().await;
    let mailbox = json!({ "imap_host": "127.0.0.1", "imap_port": port, "smtp_host": "localhost",
                          "smtp_port": port, "username": "u", "password": "p", "address": "bot@example.org" });
    let refused = h
        .app
        .post(
            &format!("/api/v1/chatbots/{}/channels", h.bot),
            &h.owner.token,
            json!({ "kind": "email", "name": "loopback", "config": mailbox.clone() }),
        )
        .await;
    assert_eq!(refused.code(), "channel_check_failed", "{}", refused.text);
    assert!(refused.text.contains("loopback"), "{}", refused.text);
    h.channel_unchecked("email", mailbox).await;
    let poll = PollMailboxes {
        store: h.app.store.clone(),
        sealer: h.app.state.sealer.clone(),
        guard: Guard::new(false),
        timeout: Duration::from_secs(2),
        max_attempts: 1,
    };
    let job = h
        .app
        .store
        .enqueue(NewJob::of(&steward_domain::jobs::PollArgs {}, 1))
        .await
        .unwrap()
        .unwrap();
    poll.run(&job).await.unwrap();
    let listed = h
        .app
        .get(
            &format!("/api/v1/chatbots/{}/channels", h.bot),
            &h.owner.token,
        )
        .await;
    let last_error = listed.body["channels"][0]["health"]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        last_error.contains("refused") && last_error.contains("loopback"),
        "{last_error}"
    );

    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "a connection reached the listener"
    );
}

/// A reply URL's server answering with an error: the tenant sees its status,
/// never its body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reply_shows_the_status_and_never_the_remote_body() {
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::FORBIDDEN,
            "internal-admin-secret: do not show",
        )
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let sender = Sender::new(
        Duration::from_secs(2),
        ProviderApis {
            whatsapp: String::new(),
            slack: String::new(),
            telegram: String::new(),
            teams_login: String::new(),
        },
        Guard::new(true),
    );
    let config = ChannelConfig::parse(
        ChannelKind::Generic,
        json!({ "signing_secret": "s", "reply_url": format!("http://localhost:{port}/hook") }),
    )
    .unwrap();
    let part = Part {
        message_id: MessageId::new(),
        index: 0,
        count: 1,
        text: "hello",
    };
    let route = json!({ "id": "m1", "user": "u1", "conversation": "u1" });
    let route = Route::from_meta(ChannelKind::Generic, route).unwrap();
    let error = sender.send(&config, &route, part).await.unwrap_err();
    let shown = error.to_string();
    assert!(shown.contains("HTTP 403"), "{shown}");
    assert!(!shown.contains("internal-admin-secret"), "{shown}");
}

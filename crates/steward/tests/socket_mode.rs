//! Slack in Socket Mode across api processes: two `steward api` and a
//! worker on one PostgreSQL, a local Slack speaking Socket Mode and the Web
//! API. One api holds the channel's one connection; it is killed with
//! SIGKILL just after an event reaches it, and the other takes the
//! connection over within 30 seconds. Slack sends the event again (as it
//! does when an acknowledgement may have been lost), and it is stored and
//! answered once. Needs `STEWARD_TEST_POSTGRES_URL`.

mod support;

use std::time::{Duration, Instant};

use sqlx::Connection;
use support::*;

async fn wait_for(what: &str, within: Duration, mut ready: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ready().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn direct_message(event_id: &str, ts: &str, text: &str) -> serde_json::Value {
    serde_json::json!({
        "type": "event_callback",
        "event_id": event_id,
        "event": { "type": "message", "user": "U1", "text": text, "channel": "D1",
                   "channel_type": "im", "ts": ts }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_api_holds_the_connection_and_another_takes_it_over_when_it_is_killed() {
    let Some(database) = steward_testkit::PostgresDatabase::create().await else {
        eprintln!("skipped: backend not configured");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = database.url.clone();
    let model = steward_testkit::model::FakeModel::start().await;
    let slack = steward_testkit::providers::FakeProviders::start().await;
    let role = |args: &[&str]| {
        let mut command = steward(dir.path());
        command
            .args(args)
            .env("STEWARD_DATABASE__URL", &url)
            .env(
                "STEWARD_AUTH__JWT_SECRET",
                "socket-mode-test-jwt-secret-at-least-32-characters",
            )
            .env(
                "STEWARD_SECRETS__MASTER_KEY",
                "c29ja2V0LW1vZGUtdGVzdC1tYXN0ZXIta2V5LTMyYnk=",
            )
            .env("STEWARD_LLM__PRIMARY__KIND", "openai")
            .env("STEWARD_LLM__PRIMARY__BASE_URL", &model.base_url)
            .env("STEWARD_LLM__PRIMARY__MODEL", "fake-model")
            .env("STEWARD_CHANNELS__SLACK_API_URL", slack.slack_api())
            .env("STEWARD_JOBS__POLL_INTERVAL_MS", "100");
        Server::spawn(command)
    };
    migrate(dir.path(), &url);
    let (_, password) = create_acme_with({
        let mut command = steward(dir.path());
        command.env("STEWARD_DATABASE__URL", &url);
        command
    });
    let healthy = async |port: u16| {
        reqwest::get(format!("http://127.0.0.1:{port}/health/ready"))
            .await
            .is_ok_and(|r| r.status().is_success())
    };

    let (first_port, second_port) = (free_port(), free_port());
    let listen = |port: u16| format!("127.0.0.1:{port}");
    let mut first = role(&["api", "--listen", &listen(first_port)]);
    let _worker = role(&["worker"]);
    wait_for("the first api", Duration::from_secs(30), async || {
        healthy(first_port).await
    })
    .await;
    let base = format!("http://127.0.0.1:{first_port}");
    let owner = Api::sign_in(&base, &password).await;
    let bot = owner.chatbot().await;
    let config = serde_json::json!({
        "bot_token": "xoxb-socket-test", "mode": "socket", "app_token": "xapp-1-A1-1-test"
    });
    let (status, channel) = owner
        .post(
            &format!("/api/v1/chatbots/{bot}/channels"),
            serde_json::json!({ "kind": "slack", "name": "Slack", "config": config }),
        )
        .await;
    assert_eq!(status, 201, "{channel}");
    assert_eq!(channel["webhook_url"], serde_json::Value::Null);
    wait_for("a connection", Duration::from_secs(15), async || {
        slack.slack_sockets() == (1, 1)
    })
    .await;

    let _second = role(&["api", "--listen", &listen(second_port)]);
    wait_for("the second api", Duration::from_secs(30), async || {
        healthy(second_port).await
    })
    .await;
    // Past the second's first look for channels (every 5 s).
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        slack.slack_sockets(),
        (1, 1),
        "one connection between two apis"
    );
    slack.slack_socket_event(direct_message("Ev1", "1.1", "What are your hours?"));
    slack.wait_for("slack", 1).await;

    // The worst moment: an event reaches the holder, which dies around
    // storing it. Slack sends it again, on the next connection.
    slack.slack_socket_event(direct_message("Ev2", "1.2", "And on Sundays?"));
    tokio::time::sleep(Duration::from_millis(5)).await;
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let killed = Instant::now();
    wait_for(
        "the connection taken over",
        Duration::from_secs(30),
        async || slack.slack_sockets() == (2, 1),
    )
    .await;
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(30), "taken over in {took:?}");
    slack.slack_socket_event(direct_message("Ev2", "1.2", "And on Sundays?"));
    slack.wait_for("slack", 2).await;
    // Time for a second answer, were one coming.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(slack.sent("slack").len(), 2, "each event answered once");
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT external_id FROM messages WHERE role = 'user' ORDER BY created_at",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(stored, ["Ev1", "Ev2"]);
}

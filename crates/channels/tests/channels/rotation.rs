//! Rotating the master key without downtime: processes restart with the new
//! key and the previous one, `reseal` seals every channel's secrets again
//! under the new key, and then the previous key can go.

use std::sync::Arc;

use reqwest::StatusCode;
use steward_auth::Sealer;
use steward_config::{Secret, master_key_bytes};
use steward_testkit::DbGuard;
use steward_testkit::app::{TestApp, spawn_app_on};

use crate::*;

const NEW_KEY: &str = "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=";

/// Another Steward on the harness's database, with these keys.
async fn restarted(h: &Harness, master: &str, previous: Option<&str>) -> TestApp {
    let (master, previous) = (master.to_owned(), previous.map(str::to_owned));
    spawn_app_on(
        Arc::clone(&h.app.store),
        DbGuard::Sqlite(tempfile::tempdir().unwrap()),
        move |c| {
            c.secrets.master_key = Some(Secret::new(master));
            c.secrets.previous_master_key = previous.map(Secret::new);
        },
    )
    .await
}

/// A signed Slack event posted to `app`: its status.
async fn slack_event(app: &TestApp, path: &str, event_id: &str) -> StatusCode {
    let body = slack_message(event_id, "C123ABC456", "1355517523.000005", None, "Hi");
    let mut request = app
        .client
        .post(app.url(path))
        .header("content-type", "application/json")
        .body(body.clone());
    for (name, value) in slack_headers(&body, &now_secs()) {
        request = request.header(name, value);
    }
    request.send().await.unwrap().status()
}

#[tokio::test]
async fn the_master_key_rotates_without_a_channel_going_dark() {
    let h = Harness::start().await;
    let path = h.slack().await;
    let old_key = h.app.state.config.secrets.master_key.clone().unwrap();
    let old = old_key.expose().to_owned();

    // Step 1: every process restarts with the new key and the old one.
    let rolling = restarted(&h, NEW_KEY, Some(&old)).await;
    assert_eq!(slack_event(&rolling, &path, "Ev1").await, StatusCode::OK);

    // Step 2: `steward secrets reseal`.
    let mut config = h.app.state.config.clone();
    config.secrets.master_key = Some(Secret::new(NEW_KEY));
    let new_bytes = master_key_bytes(&config).unwrap();
    let old_bytes = master_key_bytes(&h.app.state.config).unwrap();
    let sealer = Sealer::new(&new_bytes).with_previous(Some(&old_bytes));
    let done = steward_channels::reseal(h.app.store.as_ref(), &sealer)
        .await
        .unwrap();
    assert_eq!((done.resealed, done.current, done.changed), (1, 0, 0));
    assert!(done.unreadable.is_empty());

    // Step 3: the old key goes. The new key alone opens the secrets; a
    // process left on the old key alone cannot (a fault of the server's
    // configuration, not the sender's: 500, so the provider retries).
    let rotated = restarted(&h, NEW_KEY, None).await;
    assert_eq!(slack_event(&rotated, &path, "Ev2").await, StatusCode::OK);
    assert_eq!(
        slack_event(&h.app, &path, "Ev3").await,
        StatusCode::INTERNAL_SERVER_ERROR
    );

    // Running it again changes nothing; secrets no key opens are named.
    let again = steward_channels::reseal(h.app.store.as_ref(), &sealer)
        .await
        .unwrap();
    assert_eq!((again.resealed, again.current), (0, 1));
    let channel = h.app.store.all_channels(None).await.unwrap().remove(0);
    let stranger = Sealer::new(&[3; 32]).seal(b"{}", channel.id.to_string().as_bytes());
    assert!(
        h.app
            .store
            .replace_channel_secrets(channel.id, &channel.sealed_secrets, &stranger)
            .await
            .unwrap()
    );
    let lost = steward_channels::reseal(h.app.store.as_ref(), &sealer)
        .await
        .unwrap();
    assert_eq!(lost.unreadable, [channel.id]);
}

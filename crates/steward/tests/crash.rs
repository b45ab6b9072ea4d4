//! Exactly once through crashes: clients post messages with `Idempotency-Key`
//! while `steward serve` is killed with SIGKILL at random moments and started
//! again; every client retries until it has an answer. At the end each key has
//! one message and one reply, and every answer a client got names that message.
//! Runs on PostgreSQL when `STEWARD_TEST_POSTGRES_URL` is set, else on SQLite.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use support::*;

const CLIENTS: usize = 16;
const MESSAGES_PER_CLIENT: usize = 10;
const KILLS: usize = 8;

/// What the clients saw, for the test's report.
#[derive(Default)]
struct Seen {
    retries: AtomicUsize,
    replayed: AtomicUsize,
    response_lost: AtomicUsize,
}

/// The test's database: a new PostgreSQL one when the environment names a
/// server (dropped with the guard), else SQLite in `dir`.
async fn database(dir: &std::path::Path) -> (Option<steward_testkit::PostgresDatabase>, String) {
    let postgres = steward_testkit::PostgresDatabase::create().await;
    let url = match &postgres {
        Some(db) => db.url.clone(),
        None => format!("sqlite://{}", dir.join("steward.db").display()),
    };
    (postgres, url)
}

/// The message id a keyed post was answered with, or None when the server
/// said the request took effect but its response was lost in the crash.
async fn post_until_answered(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    bot: &str,
    key: &str,
    seen: &Seen,
) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        assert!(Instant::now() < deadline, "{key} never got an answer");
        let sent = client
            .post(format!("{base}/api/v1/chatbots/{bot}/messages"))
            .bearer_auth(token)
            .header("idempotency-key", key)
            .json(&serde_json::json!({"text": format!("message {key}")}))
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        if let Ok(response) = sent {
            let status = response.status().as_u16();
            let replayed = response.headers().contains_key("idempotent-replayed");
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            match (status, body["error"]["code"].as_str()) {
                (201, _) => {
                    if replayed {
                        seen.replayed.fetch_add(1, Ordering::Relaxed);
                    }
                    return Some(body["message_id"].as_str().unwrap().to_owned());
                }
                (409, Some("idempotency_response_lost")) => {
                    seen.response_lost.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                // Still claimed by a request the crash cut short, a request
                // timed out, or a server starting up: retry, as a client would.
                (409, Some("idempotency_in_progress" | "idempotency_claim_lost"))
                | (408 | 503, _) => {}
                other => panic!("{key}: unexpected answer {other:?}: {body}"),
            }
        }
        seen.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_messages_take_effect_once_while_steward_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let (_postgres, database_url) = database(dir.path()).await;
    let serve = || {
        let mut command = steward(dir.path());
        command
            .env("STEWARD_DATABASE__URL", &database_url)
            // A claim cut short by a kill is taken over once its request
            // could no longer be running: the timeout plus a margin.
            .env("STEWARD_HTTP__REQUEST_TIMEOUT_SECS", "2")
            .env("STEWARD_JOBS__LEASE_SECS", "3")
            .env("STEWARD_JOBS__POLL_INTERVAL_MS", "50")
            .env("RUST_LOG", "warn");
        command
    };
    let (_, password) = create_acme_with(serve());
    let port = free_port();
    let mut server = Server::start_on(serve(), port);
    server.wait_until_healthy().await;
    let owner = Api::sign_in(&server.base, &password).await;
    let bot = owner.chatbot().await;

    let seen = Arc::new(Seen::default());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (base, token, bot, seen) = (
                server.base.clone(),
                owner.token.clone(),
                bot.clone(),
                seen.clone(),
            );
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut answers = Vec::new();
                for n in 0..MESSAGES_PER_CLIENT {
                    let key = format!("c{client}-m{n}");
                    let answer = post_until_answered(&http, &base, &token, &bot, &key, &seen).await;
                    answers.push((key, answer));
                }
                answers
            })
        })
        .collect();

    for _ in 0..KILLS {
        let pause = rand::rng().random_range(100..600);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        server = Server::start_on(serve(), port);
        server.wait_until_healthy().await;
    }

    let mut answered = HashMap::new();
    for client in clients {
        for (key, answer) in client.await.unwrap() {
            answered.insert(format!("message {key}"), answer);
        }
    }
    assert_eq!(answered.len(), CLIENTS * MESSAGES_PER_CLIENT);

    // Wait until every message has its reply, then count.
    let deadline = Instant::now() + Duration::from_secs(120);
    let history = loop {
        let history = whole_history(&owner, &bot).await;
        let replies = history.iter().filter(|m| m["role"] == "assistant").count();
        if replies >= answered.len() {
            break history;
        }
        assert!(
            Instant::now() < deadline,
            "{replies} replies for {} messages",
            answered.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let stored = user_messages_by_text(&history);
    for (text, answer) in &answered {
        let ids = stored.get(text).cloned().unwrap_or_default();
        assert_eq!(ids.len(), 1, "{text} is stored {} times", ids.len());
        if let Some(answer) = answer {
            assert_eq!(answer, &ids[0], "{text}: the answer names another message");
        }
    }
    assert_eq!(stored.len(), answered.len());
    let replies_per_message = replies_per_message(&history);
    for ids in stored.values() {
        assert_eq!(
            replies_per_message.get(ids[0].as_str()),
            Some(&1),
            "message {} has not exactly one reply",
            ids[0]
        );
    }
    // The overview's counters are written in each message's transaction:
    // what was stored, counted once, through every kill.
    let usage = owner.get("/api/v1/insights/usage?days=2").await;
    let sum = |field: &str| {
        usage["days"]
            .as_array()
            .unwrap()
            .iter()
            .map(|day| day[field].as_u64().unwrap())
            .sum::<u64>()
    };
    let replies = history.iter().filter(|m| m["role"] == "assistant").count();
    assert_eq!(sum("messages") as usize, stored.len(), "{usage}");
    assert_eq!(sum("replies") as usize, replies, "{usage}");
    assert_eq!(sum("direct") as usize, stored.len(), "{usage}");
    // One person, the owner, wrote every message: counted once, whatever
    // was killed.
    assert_eq!(usage["active_people"]["week"], 1, "{usage}");
    let people = owner.get("/api/v1/people").await;
    assert_eq!(people["people"].as_array().unwrap().len(), 1, "{people}");
    let conversations: std::collections::HashSet<&str> = history
        .iter()
        .map(|m| m["conversation_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        usage["chatbots"][0]["conversations"].as_u64().unwrap() as usize,
        conversations.len(),
        "{usage}"
    );
    eprintln!(
        "{} keys, {KILLS} kills: {} retries, {} replayed, {} effects whose response was lost",
        answered.len(),
        seen.retries.load(Ordering::Relaxed),
        seen.replayed.load(Ordering::Relaxed),
        seen.response_lost.load(Ordering::Relaxed),
    );
}

/// Rates `reply` until Steward says it took the rating (201 first, 200
/// after: a retry of a rating whose response a kill lost is one of those).
async fn rate_until_taken(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    reply: &str,
    rating: &str,
    retries: &AtomicUsize,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "{reply} was never rated");
        let sent = client
            .post(format!("{base}/api/v1/messages/{reply}/feedback"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "rating": rating }))
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        if let Ok(response) = sent {
            match response.status().as_u16() {
                200 | 201 => return,
                408 | 503 => {}
                other => panic!("{reply}: unexpected {other}: {:?}", response.text().await),
            }
        }
        retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Replies rated up and down over and over by clients that retry while
/// Steward is killed, then a last time (a third of them down): each reply
/// keeps one rating, the last, and the counters the insights read (written
/// in the rating's transaction) count each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratings_count_once_while_steward_is_killed() {
    const REPLIES: usize = 48;
    let dir = tempfile::tempdir().unwrap();
    let (_postgres, database_url) = database(dir.path()).await;
    let serve = || {
        let mut command = steward(dir.path());
        command
            .env("STEWARD_DATABASE__URL", &database_url)
            .env("STEWARD_JOBS__POLL_INTERVAL_MS", "50")
            .env("RUST_LOG", "warn");
        command
    };
    let (_, password) = create_acme_with(serve());
    let port = free_port();
    let mut server = Server::start_on(serve(), port);
    server.wait_until_healthy().await;
    let owner = Api::sign_in(&server.base, &password).await;
    let bot = owner.chatbot().await;
    for n in 0..REPLIES {
        owner.message(&bot, &format!("question {n}")).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let replies: Vec<String> = loop {
        let history = whole_history(&owner, &bot).await;
        let replies: Vec<String> = history
            .iter()
            .filter(|m| m["role"] == "assistant")
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect();
        if replies.len() == REPLIES {
            break replies;
        }
        assert!(Instant::now() < deadline, "{} replies", replies.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let last_rating = |n: usize| if n.is_multiple_of(3) { "down" } else { "up" };

    let killing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let retries = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..8)
        .map(|client| {
            let (base, token) = (server.base.clone(), owner.token.clone());
            let (killing, retries) = (killing.clone(), retries.clone());
            let mine: Vec<(usize, String)> = replies
                .iter()
                .cloned()
                .enumerate()
                .filter(|(n, _)| n % 8 == client)
                .collect();
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let rate = async |reply: &str, rating: &str| {
                    rate_until_taken(&http, &base, &token, reply, rating, &retries).await
                };
                while killing.load(Ordering::Relaxed) {
                    for (_, reply) in &mine {
                        rate(reply, "up").await;
                        rate(reply, "down").await;
                    }
                }
                for (n, reply) in &mine {
                    rate(reply, last_rating(*n)).await;
                }
            })
        })
        .collect();
    for _ in 0..6 {
        let pause = rand::rng().random_range(20..200);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        server = Server::start_on(serve(), port);
        server.wait_until_healthy().await;
    }
    killing.store(false, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    assert!(
        retries.load(Ordering::Relaxed) > 0,
        "the kills cut no rating short"
    );

    for (n, reply) in replies.iter().enumerate() {
        let rated = owner
            .get(&format!("/api/v1/messages/{reply}/feedback"))
            .await;
        let ratings = rated["feedback"].as_array().unwrap();
        assert_eq!(ratings.len(), 1, "{reply}: {rated}");
        assert_eq!(ratings[0]["rating"], last_rating(n), "{reply}: {rated}");
    }
    let downs = (0..REPLIES).filter(|n| last_rating(*n) == "down").count();
    let usage = owner.get("/api/v1/insights/usage?days=2").await;
    assert_eq!(
        usage["feedback"]["up"].as_u64().unwrap() as usize,
        REPLIES - downs,
        "{usage}"
    );
    assert_eq!(
        usage["feedback"]["down"].as_u64().unwrap() as usize,
        downs,
        "{usage}"
    );
}

/// Every message of the chatbot, through the history's pages.
async fn whole_history(owner: &Api, bot: &str) -> Vec<serde_json::Value> {
    let mut messages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/api/v1/chatbots/{bot}/history?limit=200&cursor={cursor}"),
            None => format!("/api/v1/chatbots/{bot}/history?limit=200"),
        };
        let page = owner.get(&path).await;
        messages.extend(page["messages"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return messages,
        }
    }
}

/// The ids of the people's messages in `history`, by their text.
fn user_messages_by_text(history: &[serde_json::Value]) -> HashMap<String, Vec<String>> {
    let mut stored: HashMap<String, Vec<String>> = HashMap::new();
    for message in history.iter().filter(|m| m["role"] == "user") {
        stored
            .entry(message["text"].as_str().unwrap().to_owned())
            .or_default()
            .push(message["id"].as_str().unwrap().to_owned());
    }
    stored
}

/// How many replies in `history` answer each message.
fn replies_per_message(history: &[serde_json::Value]) -> HashMap<&str, usize> {
    let mut replies: HashMap<&str, usize> = HashMap::new();
    for reply in history.iter().filter(|m| m["role"] == "assistant") {
        *replies
            .entry(reply["answers"].as_str().unwrap())
            .or_default() += 1;
    }
    replies
}

/// A worker killed after `lead-capture` recorded a lead and before the reply
/// was stored: after recovery the conversation holds one reply and the
/// organization one lead, with one post to its Slack. With `lose_the_result`, the journal's record of the
/// call's result is lost too (undone while Steward is down): the call is made
/// again under its journal id, and the tool records nothing new.
async fn killed_between_a_tool_call_and_its_reply(lose_the_result: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (_postgres, database_url) = database(dir.path()).await;
    let fake = steward_testkit::model::FakeModel::start().await;
    fake.call_tools(vec![vec![(
        "lead-capture__record",
        r#"{"name": "Grace", "email": "grace@example.org"}"#,
    )]]);
    // The model call after the tool's never answers: the worker dies in it.
    fake.hang_call(1);
    let slack = steward_testkit::providers::FakeProviders::start().await;
    let serve = || {
        let mut command = steward(dir.path());
        command
            .env("STEWARD_DATABASE__URL", &database_url)
            .env("STEWARD_JOBS__LEASE_SECS", "3")
            .env("STEWARD_JOBS__POLL_INTERVAL_MS", "50")
            .env("STEWARD_LLM__PRIMARY__KIND", "openai")
            .env("STEWARD_LLM__PRIMARY__BASE_URL", &fake.base_url)
            .env("STEWARD_LLM__PRIMARY__MODEL", "fake-model")
            .env("STEWARD_CHANNELS__SLACK_API_URL", slack.slack_api())
            .env("RUST_LOG", "warn");
        command
    };
    let (_, password) = create_acme_with(serve());
    let port = free_port();
    let mut server = Server::start_on(serve(), port);
    server.wait_until_healthy().await;
    let owner = Api::sign_in(&server.base, &password).await;
    let bot = owner.chatbot().await;
    let (status, channel) = owner
        .post(
            &format!("/api/v1/chatbots/{bot}/channels"),
            serde_json::json!({"kind": "slack", "name": "sales", "config": {
                "bot_token": "xoxb-sales", "signing_secret": "slack-signing-secret"
            }}),
        )
        .await;
    assert_eq!(status, 201, "{channel}");
    let (status, body) = owner
        .post(
            "/api/v1/integrations/enable",
            serde_json::json!({"integration_id": "lead-capture", "config": {
                "slack": {"channel_id": channel["id"], "to": "C0SALES01"}
            }}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = owner
        .patch(
            &format!("/api/v1/chatbots/{bot}"),
            serde_json::json!({"tools": ["lead-capture.record"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, sent) = owner
        .post(
            &format!("/api/v1/chatbots/{bot}/messages"),
            serde_json::json!({"text": "please call me back"}),
        )
        .await;
    assert_eq!(status, 201, "{sent}");

    // The lead is recorded and the worker waits on the model: kill it there.
    let deadline = Instant::now() + Duration::from_secs(30);
    while owner.get("/api/v1/leads").await["total"] != 1 || fake.calls() < 2 {
        assert!(Instant::now() < deadline, "the tool was never called");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    if lose_the_result {
        undo_tool_results(&database_url).await;
    }
    server = Server::start_on(serve(), port);
    server.wait_until_healthy().await;

    let deadline = Instant::now() + Duration::from_secs(60);
    let replies = loop {
        let replies = owner.replies(&bot).await;
        if !replies.is_empty() {
            break replies;
        }
        assert!(Instant::now() < deadline, "no reply after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(owner.replies(&bot).await.len(), 1, "one reply");
    assert_eq!(replies[0]["tool_calls"][0]["status"], "succeeded");
    let leads = owner.get("/api/v1/leads").await;
    assert_eq!(leads["total"], 1, "one lead: {leads}");
    // One post job for the one lead. Slack takes no idempotency key: a post
    // it accepted just before the kill, whose job was not yet marked done,
    // is posted again (ARCHITECTURE.md says so), so Slack may see it twice.
    let jobs = owner.get("/api/v1/jobs?limit=200").await;
    let posts = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|job| job["kind"] == "post")
        .count();
    assert_eq!(posts, 1, "one post for one lead: {jobs}");
    let posted = slack.wait_for("slack", 1).await;
    assert!(posted[0].body["text"].as_str().unwrap().contains("Grace"));
    assert!(slack.sent("slack").len() <= 2);
    assert_eq!(
        fake.calls() - fake.extractions(),
        3,
        "the tool call, the hung call, and one after the restart"
    );
    drop(server);
}

/// Undoes what the journal recorded of every call's result, as if the write
/// after the call had been lost.
async fn undo_tool_results(database_url: &str) {
    let statement = "UPDATE tool_calls SET status = 'started', result = NULL, finished_at = NULL";
    assert_eq!(execute(database_url, statement).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_between_a_tool_call_and_its_reply_replies_once_with_one_lead() {
    killed_between_a_tool_call_and_its_reply(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_with_the_calls_result_lost_the_idempotency_key_keeps_one_lead() {
    killed_between_a_tool_call_and_its_reply(true).await;
}

const VISITORS: usize = 6;
const MESSAGES_PER_VISITOR: usize = 4;

/// Web chat visitors send messages while `steward serve` is killed with
/// SIGKILL and started again; a visitor's page sends a message again with the
/// same `client_id` until it has an answer, then waits for the reply. At the
/// end each message is stored once and answered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_chat_messages_are_stored_and_answered_once_while_steward_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let (_postgres, database_url) = database(dir.path()).await;
    let serve = || {
        let mut command = steward(dir.path());
        command
            .env("STEWARD_DATABASE__URL", &database_url)
            .env("STEWARD_JOBS__LEASE_SECS", "3")
            .env("STEWARD_JOBS__POLL_INTERVAL_MS", "50")
            .env("RUST_LOG", "warn");
        command
    };
    let (_, password) = create_acme_with(serve());
    let port = free_port();
    let mut server = Server::start_on(serve(), port);
    server.wait_until_healthy().await;
    let owner = Api::sign_in(&server.base, &password).await;
    let bot = owner.chatbot().await;
    let (status, channel) = owner
        .post(
            &format!("/api/v1/chatbots/{bot}/channels"),
            serde_json::json!({"kind": "web", "name": "site", "config": {}}),
        )
        .await;
    assert_eq!(status, 201, "{channel}");
    let chat = format!("{}/chat/{}", server.base, channel["id"].as_str().unwrap());

    let visitors: Vec<_> = (0..VISITORS)
        .map(|visitor| {
            let chat = chat.clone();
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let deadline = Instant::now() + Duration::from_secs(180);
                let token = loop {
                    assert!(Instant::now() < deadline, "visitor {visitor}: no session");
                    if let Ok(response) = http.post(format!("{chat}/session")).send().await
                        && response.status() == 201
                    {
                        let body: serde_json::Value = response.json().await.unwrap();
                        break body["token"].as_str().unwrap().to_owned();
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                };
                for n in 0..MESSAGES_PER_VISITOR {
                    let body = serde_json::json!({
                        "text": format!("visitor {visitor} message {n}"),
                        "client_id": uuid_for(visitor, n),
                    });
                    // Sent until answered, as the page does.
                    loop {
                        assert!(
                            Instant::now() < deadline,
                            "visitor {visitor}: never answered"
                        );
                        let sent = http
                            .post(format!("{chat}/messages"))
                            .bearer_auth(&token)
                            .json(&body)
                            .timeout(Duration::from_secs(10))
                            .send()
                            .await;
                        if let Ok(response) = sent
                            && matches!(response.status().as_u16(), 200 | 202)
                        {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    // Then the reply, before the next message.
                    loop {
                        assert!(
                            Instant::now() < deadline,
                            "visitor {visitor}: no reply to {n}"
                        );
                        if let Ok(response) = http
                            .get(format!("{chat}/messages"))
                            .bearer_auth(&token)
                            .send()
                            .await
                            && response.status() == 200
                        {
                            let page: serde_json::Value = response.json().await.unwrap_or_default();
                            let replies = page["messages"]
                                .as_array()
                                .map(|m| m.iter().filter(|m| m["role"] == "assistant").count())
                                .unwrap_or(0);
                            if replies > n {
                                break;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            })
        })
        .collect();

    for _ in 0..KILLS / 2 {
        let pause = rand::rng().random_range(200..800);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        server = Server::start_on(serve(), port);
        server.wait_until_healthy().await;
    }
    for visitor in visitors {
        visitor.await.unwrap();
    }

    let history = whole_history(&owner, &bot).await;
    let stored = user_messages_by_text(&history);
    assert_eq!(stored.len(), VISITORS * MESSAGES_PER_VISITOR);
    let replies_per_message = replies_per_message(&history);
    for (text, ids) in &stored {
        assert_eq!(ids.len(), 1, "{text} is stored {} times", ids.len());
        assert_eq!(
            replies_per_message.get(ids[0].as_str()),
            Some(&1),
            "{text} has not exactly one reply"
        );
    }
    // Replies on the web chat are read, not sent: no delivery ever failed.
    let dead = owner.get("/api/v1/jobs?state=dead").await;
    assert_eq!(dead["jobs"], serde_json::json!([]), "{dead}");
}

const SENDERS: usize = 24;
const WEBHOOKS_PER_SENDER: usize = 6;
const WHATSAPP_SECRET: &str = "whatsapp-app-secret";

/// `steward serve` on `database_url`, sending to `whatsapp`; leases are
/// short, as a killed server's worker may have taken a reply's job.
fn serving_whatsapp(
    dir: &std::path::Path,
    database_url: &str,
    whatsapp: &steward_testkit::providers::FakeProviders,
) -> std::process::Command {
    let mut command = steward(dir);
    command
        .env("STEWARD_DATABASE__URL", database_url)
        .env("STEWARD_JOBS__LEASE_SECS", "3")
        .env("STEWARD_JOBS__POLL_INTERVAL_MS", "50")
        .env(
            "STEWARD_CHANNELS__WHATSAPP_API_URL",
            whatsapp.whatsapp_api(),
        )
        .env("RUST_LOG", "warn");
    command
}

/// `steward serve` started on `port` for a new organization whose owner is
/// signed in, with a chatbot and a WhatsApp channel: the server, the owner,
/// the chatbot's id and the channel's webhook URL.
async fn whatsapp_chatbot(
    serve: impl Fn() -> std::process::Command,
    port: u16,
) -> (Server, Api, String, String) {
    let (_, password) = create_acme_with(serve());
    let server = Server::start_on(serve(), port);
    server.wait_until_healthy().await;
    let owner = Api::sign_in(&server.base, &password).await;
    let bot = owner.chatbot().await;
    let (status, channel) = owner
        .post(
            &format!("/api/v1/chatbots/{bot}/channels"),
            serde_json::json!({"kind": "whatsapp", "name": "support", "config": {
                "phone_number_id": "15550001", "access_token": "t",
                "app_secret": WHATSAPP_SECRET, "verify_token": "v",
            }}),
        )
        .await;
    assert_eq!(status, 201, "{channel}");
    let url = format!(
        "{}{}",
        server.base,
        channel["webhook_url"].as_str().unwrap()
    );
    (server, owner, bot, url)
}

/// Meta's text-message webhook for WhatsApp, signed as Meta signs it.
fn whatsapp_webhook(id: &str, from: &str, text: &str) -> (Vec<u8>, String) {
    let body = serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "102290129340398", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550783881", "phone_number_id": "15550001" },
            "contacts": [{ "profile": { "name": "Sender" }, "wa_id": from }],
            "messages": [{ "from": from, "id": id, "timestamp": "1749416383", "type": "text", "text": { "body": text } }],
        }}]}],
    })
    .to_string()
    .into_bytes();
    let signature = steward_channels::whatsapp::signature(WHATSAPP_SECRET, &body);
    (body, signature)
}

/// Signed WhatsApp webhooks from many senders at once (on PostgreSQL, their
/// messages stored together in batches) while `steward serve` is killed with
/// SIGKILL and started again. As Meta does, each webhook is sent again until
/// it is acknowledged, and some are sent again after. At the end each
/// message is stored once and counted once, none is answered twice, and
/// every conversation is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_webhooks_are_stored_once_and_answered_while_steward_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let (_postgres, database_url) = database(dir.path()).await;
    let whatsapp = steward_testkit::providers::FakeProviders::start().await;
    let serve = || serving_whatsapp(dir.path(), &database_url, &whatsapp);
    let port = free_port();
    let (mut server, owner, bot, url) = whatsapp_chatbot(serve, port).await;

    let sending = Arc::new(AtomicUsize::new(SENDERS));
    let retries = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let (url, sending, retries) = (url.clone(), sending.clone(), retries.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let deadline = Instant::now() + Duration::from_secs(180);
                for n in 0..WEBHOOKS_PER_SENDER {
                    let (body, signature) = whatsapp_webhook(
                        &format!("wamid.{sender}.{n}"),
                        &format!("1650555{sender:04}"),
                        &format!("sender {sender} message {n}"),
                    );
                    let times = if n % 3 == 0 { 2 } else { 1 };
                    for _ in 0..times {
                        loop {
                            assert!(
                                Instant::now() < deadline,
                                "sender {sender}: never acknowledged"
                            );
                            let sent = http
                                .post(&url)
                                .header("content-type", "application/json")
                                .header("x-hub-signature-256", &signature)
                                .body(body.clone())
                                .timeout(Duration::from_secs(10))
                                .send()
                                .await;
                            if let Ok(response) = sent
                                && response.status() == 200
                            {
                                break;
                            }
                            retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                    let pause = rand::rng().random_range(0..300);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                sending.fetch_sub(1, Ordering::Relaxed);
            })
        })
        .collect();

    let mut kills_while_sending = 0;
    for _ in 0..KILLS / 2 {
        let pause = rand::rng().random_range(100..500);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        if sending.load(Ordering::Relaxed) > 0 {
            kills_while_sending += 1;
        }
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        server = Server::start_on(serve(), port);
        server.wait_until_healthy().await;
    }
    for sender in senders {
        sender.await.unwrap();
    }
    assert!(
        kills_while_sending > 0,
        "every webhook was acknowledged before the first kill"
    );

    // A reply answers every message of its conversation waiting for one
    // (and names the last): wait until each conversation's last is answered.
    let expected = SENDERS * WEBHOOKS_PER_SENDER;
    let deadline = Instant::now() + Duration::from_secs(120);
    let history = loop {
        let history = whole_history(&owner, &bot).await;
        let answered: std::collections::HashSet<&str> = history
            .iter()
            .filter(|m| m["role"] == "assistant")
            .map(|m| m["answers"].as_str().unwrap())
            .collect();
        let mut last: HashMap<&str, &serde_json::Value> = HashMap::new();
        for message in history.iter().filter(|m| m["role"] == "user") {
            let at = |m: &serde_json::Value| {
                let created = m["created_at"].as_str().unwrap();
                chrono::DateTime::parse_from_rfc3339(created).unwrap()
            };
            let conversation = message["conversation_id"].as_str().unwrap();
            match last.get(conversation) {
                Some(later) if at(later) >= at(message) => {}
                _ => {
                    last.insert(conversation, message);
                }
            }
        }
        let waiting = last
            .values()
            .filter(|m| !answered.contains(m["id"].as_str().unwrap()))
            .count();
        if last.len() == SENDERS && waiting == 0 {
            break history;
        }
        assert!(
            Instant::now() < deadline,
            "{waiting} of {} conversations wait for a reply",
            last.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let stored = user_messages_by_text(&history);
    assert_eq!(stored.len(), expected);
    let replies_per_message = replies_per_message(&history);
    for (text, ids) in &stored {
        assert_eq!(ids.len(), 1, "{text} is stored {} times", ids.len());
        let replies = replies_per_message
            .get(ids[0].as_str())
            .copied()
            .unwrap_or(0);
        assert!(replies <= 1, "{text} has {replies} replies");
    }
    // Counted once each, whatever was killed: the messages, one person and
    // one conversation per sender.
    let usage = owner.get("/api/v1/insights/usage?days=2").await;
    let messages: u64 = usage["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|day| day["messages"].as_u64().unwrap())
        .sum();
    assert_eq!(messages as usize, expected, "{usage}");
    assert_eq!(usage["active_people"]["week"], SENDERS, "{usage}");
    assert_eq!(usage["chatbots"][0]["conversations"], SENDERS, "{usage}");
    eprintln!(
        "{expected} messages, {} kills while sending: {} webhooks sent again unacknowledged",
        kills_while_sending,
        retries.load(Ordering::Relaxed),
    );
}

/// A WhatsApp webhook whose message is committed, its answer never sent:
/// `steward serve` is killed at that moment, on PostgreSQL, where the
/// message's batch is one call (`add_messages`) that commits before it
/// answers. Meta sends the webhook again to the server started after, which
/// answers it as a repeat: one message, one job, one reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_killed_between_its_commit_and_its_answer_is_stored_and_answered_once() {
    let Some(postgres) = steward_testkit::PostgresDatabase::create().await else {
        eprintln!("skipped: backend not configured");
        return;
    };
    const MARKER: &str = "killed between the commit and the answer";
    let proxy = HoldingProxy::start(&postgres.url, MARKER).await;
    let dir = tempfile::tempdir().unwrap();
    let whatsapp = steward_testkit::providers::FakeProviders::start().await;
    let serve = || serving_whatsapp(dir.path(), &proxy.url, &whatsapp);
    let port = free_port();
    let (mut server, owner, _, url) = whatsapp_chatbot(serve, port).await;
    let (body, signature) = whatsapp_webhook("wamid.aimed", "16505550100", MARKER);
    let send = || {
        reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/json")
            .header("x-hub-signature-256", &signature)
            .body(body.clone())
            .timeout(Duration::from_secs(30))
            .send()
    };

    // The answer of the call that stores it is held; the message commits.
    let first = tokio::spawn(send());
    let stored = "SELECT COUNT(*) FROM messages WHERE external_id = 'wamid.aimed'";
    let deadline = Instant::now() + Duration::from_secs(30);
    while number(&postgres.url, stored).await == 0 {
        assert!(Instant::now() < deadline, "the message was never committed");
        assert!(
            !first.is_finished(),
            "the webhook was answered: {:?}",
            first.await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(proxy.held.load(Ordering::SeqCst) > 0, "no answer was held");
    assert!(
        !first.is_finished(),
        "the webhook was answered before the kill"
    );
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    let unanswered = first.await.unwrap();
    assert!(
        unanswered.is_err(),
        "the killed server answered: {unanswered:?}"
    );

    // Meta sends it again until it is acknowledged.
    proxy.armed.store(false, Ordering::SeqCst);
    let mut server = Server::start_on(serve(), port);
    server.wait_until_healthy().await;
    let again = send().await.unwrap();
    assert_eq!(again.status(), 200);
    let replies = whatsapp.wait_for("whatsapp", 1).await;
    // A second reply, had the message been stored or queued twice, would
    // come from a job still to finish: wait until none is left.
    let unfinished = "SELECT COUNT(*) FROM jobs WHERE kind IN ('respond', 'deliver')
                      AND state NOT IN ('succeeded', 'dead')";
    let deadline = Instant::now() + Duration::from_secs(30);
    while number(&postgres.url, unfinished).await > 0 {
        assert!(Instant::now() < deadline, "the reply's jobs never finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(whatsapp.sent("whatsapp").len(), 1, "{replies:?}");
    assert_eq!(number(&postgres.url, stored).await, 1);
    let jobs = "SELECT COUNT(*) FROM jobs WHERE kind = 'respond'";
    assert_eq!(number(&postgres.url, jobs).await, 1);
    let usage = owner.get("/api/v1/insights/usage?days=2").await;
    let counted: u64 = usage["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|day| day["messages"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 1, "{usage}");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

/// A TCP proxy in front of PostgreSQL that, while armed, holds every answer
/// on a connection once the client has sent `marker` on it: the statement
/// runs and commits, and the caller never hears so.
struct HoldingProxy {
    /// The database's URL through the proxy.
    url: String,
    armed: Arc<std::sync::atomic::AtomicBool>,
    /// Answers held, in reads.
    held: Arc<AtomicUsize>,
}

impl HoldingProxy {
    async fn start(database_url: &str, marker: &'static str) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (scheme, rest) = database_url.split_once("://").unwrap();
        let (user, rest) = rest.rsplit_once('@').map_or(("", rest), |(u, r)| (u, r));
        let (upstream, database) = rest.split_once('/').unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let at = if user.is_empty() {
            String::new()
        } else {
            format!("{user}@")
        };
        let proxy = Self {
            url: format!("{scheme}://{at}127.0.0.1:{port}/{database}"),
            armed: Arc::new(true.into()),
            held: Arc::new(AtomicUsize::new(0)),
        };
        let (upstream, armed, held) =
            (upstream.to_owned(), proxy.armed.clone(), proxy.held.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (armed, held) = (armed.clone(), held.clone());
                tokio::spawn(async move {
                    let (mut from_client, mut to_client) = client.into_split();
                    let (mut from_server, mut to_server) = server.into_split();
                    let marked = Arc::new(std::sync::atomic::AtomicBool::new(false));
                    let seen = marked.clone();
                    let up = async move {
                        let (mut buf, mut tail) = (vec![0; 64 * 1024], Vec::new());
                        while let Ok(n @ 1..) = from_client.read(&mut buf).await {
                            tail.extend_from_slice(&buf[..n]);
                            // Marked before it reaches the server: its answer is held.
                            if armed.load(Ordering::SeqCst)
                                && tail.windows(marker.len()).any(|w| w == marker.as_bytes())
                            {
                                seen.store(true, Ordering::SeqCst);
                            }
                            tail.drain(..tail.len().saturating_sub(marker.len()));
                            if to_server.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    };
                    let down = async move {
                        let mut buf = vec![0; 64 * 1024];
                        while let Ok(n @ 1..) = from_server.read(&mut buf).await {
                            if marked.load(Ordering::SeqCst) {
                                held.fetch_add(1, Ordering::SeqCst);
                            } else if to_client.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    };
                    tokio::join!(up, down);
                });
            }
        });
        proxy
    }
}

/// The page's id for message `n` of `visitor`: the same on every try.
fn uuid_for(visitor: usize, n: usize) -> String {
    format!("00000000-0000-4000-8000-{:06}{:06}", visitor, n)
}

/// Runs `statement` on the test's database.
async fn execute(database_url: &str, statement: &'static str) -> u64 {
    if database_url.starts_with("sqlite:") {
        let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(database_url)
            .await
            .unwrap();
        sqlx::query(statement)
            .execute(&mut db)
            .await
            .unwrap()
            .rows_affected()
    } else {
        let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(database_url)
            .await
            .unwrap();
        sqlx::query(statement)
            .execute(&mut db)
            .await
            .unwrap()
            .rows_affected()
    }
}

/// The owner's memory, once it holds `count` facts.
async fn owner_memory(owner: &Api, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let people = owner.get("/api/v1/people").await;
        let person = people["people"][0]["id"].as_str().unwrap().to_owned();
        let memory = owner.get(&format!("/api/v1/people/{person}/memory")).await;
        let facts: Vec<String> = memory["facts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["text"].as_str().unwrap().to_owned())
            .collect();
        if facts.len() >= count {
            return facts;
        }
        assert!(Instant::now() < deadline, "memory holds {facts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `command` on `database_url`, with `fake` as its model and short leases.
fn with_model(
    mut command: std::process::Command,
    database_url: &str,
    fake: &steward_testkit::model::FakeModel,
) -> std::process::Command {
    command
        .env("STEWARD_DATABASE__URL", database_url)
        .env("STEWARD_JOBS__LEASE_SECS", "3")
        .env("STEWARD_JOBS__POLL_INTERVAL_MS", "50")
        .env("STEWARD_LLM__PRIMARY__KIND", "openai")
        .env("STEWARD_LLM__PRIMARY__BASE_URL", &fake.base_url)
        .env("STEWARD_LLM__PRIMARY__MODEL", "fake-model")
        .env("RUST_LOG", "warn");
    command
}

/// Waits until the one job of `kind`, queued again, has run.
async fn requeued_job_succeeds(owner: &Api, kind: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let jobs = owner.get("/api/v1/jobs?limit=200").await;
        let job = jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|job| job["kind"] == kind)
            .cloned()
            .unwrap();
        if job["state"] == "succeeded" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the requeued job never ran: {job}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_while_learning_keeps_each_fact_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_postgres, database_url) = database(dir.path()).await;
    let fake = steward_testkit::model::FakeModel::start().await;
    // Call 0 writes the reply; call 1, the extraction, never answers: the
    // worker is killed in it.
    fake.hang_call(1);
    let serve = || with_model(steward(dir.path()), &database_url, &fake);
    let (_, password) = create_acme_with(serve());
    let port = free_port();
    let mut server = Server::start_on(serve(), port);
    server.wait_until_healthy().await;
    let owner = Api::sign_in(&server.base, &password).await;
    let bot = owner.chatbot().await;
    owner
        .message(&bot, "I work in the finance team. I use SAP every day.")
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.calls() < 2 {
        assert!(Instant::now() < deadline, "the extraction was never asked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.child.kill().unwrap(); // SIGKILL, mid-extraction
    server.child.wait().unwrap();
    server = Server::start_on(serve(), port);
    server.wait_until_healthy().await;
    let facts = owner_memory(&owner, 2).await;
    assert_eq!(facts, ["I work in the finance team", "I use SAP every day"]);
    assert_eq!(fake.calls(), 3, "the reply, the hung extraction, its retry");

    // Killed after the facts committed but before the job was marked done:
    // the job runs again, finds its message's facts, and asks nothing.
    let requeued = execute(
        &database_url,
        "UPDATE jobs SET state = 'queued', lease_until = NULL WHERE kind = 'memory'",
    )
    .await;
    assert_eq!(requeued, 1, "one memory job for the one reply");
    requeued_job_succeeds(&owner, "memory").await;
    assert_eq!(owner_memory(&owner, 2).await.len(), 2, "each fact once");
    assert_eq!(fake.calls(), 3, "nothing asked again");
    drop(server);
}

/// One number read from the database.
async fn number(database_url: &str, query: &'static str) -> i64 {
    if database_url.starts_with("sqlite:") {
        let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(database_url)
            .await
            .unwrap();
        sqlx::query_scalar(query).fetch_one(&mut db).await.unwrap()
    } else {
        let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(database_url)
            .await
            .unwrap();
        sqlx::query_scalar(query).fetch_one(&mut db).await.unwrap()
    }
}

/// Interactions counted, over the week's and the month's totals.
const COUNTED: &str = "SELECT CAST(COALESCE(SUM(interactions), 0) AS BIGINT) FROM pattern_counts WHERE category_l1 = ''";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_while_classifying_counts_each_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_postgres, database_url) = database(dir.path()).await;
    let fake = steward_testkit::model::FakeModel::start().await;
    // The first classification never answers: the worker is killed in it.
    fake.hang_classifications(1);
    let serve = || with_model(steward(dir.path()), &database_url, &fake);
    let (_, password) = create_acme_with(serve());
    let port = free_port();
    let mut server = Server::start_on(serve(), port);
    server.wait_until_healthy().await;
    let owner = Api::sign_in(&server.base, &password).await;
    let bot = owner.chatbot().await;
    owner
        .message(&bot, "A question about devices: my laptop screen broke.")
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.classifications() < 1 {
        assert!(
            Instant::now() < deadline,
            "the classification was never asked"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.child.kill().unwrap(); // SIGKILL, mid-classification
    server.child.wait().unwrap();
    assert_eq!(
        number(&database_url, COUNTED).await,
        0,
        "nothing counted yet"
    );
    server = Server::start_on(serve(), port);
    server.wait_until_healthy().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while number(&database_url, COUNTED).await < 2 {
        assert!(Instant::now() < deadline, "the retried job never counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        number(
            &database_url,
            "SELECT COUNT(*) FROM messages WHERE category_l1 = 'IT & tools' AND category_l2 = 'Devices'"
        )
        .await,
        1,
        "labelled by the model"
    );
    assert_eq!(fake.classifications(), 2, "the hung one and its retry");

    // Killed after the count committed but before the job was marked done:
    // the job runs again, finds the message labelled, and asks nothing.
    let requeued = execute(
        &database_url,
        "UPDATE jobs SET state = 'queued', lease_until = NULL WHERE kind = 'classify'",
    )
    .await;
    assert_eq!(requeued, 1, "one classify job for the one reply");
    requeued_job_succeeds(&owner, "classify").await;
    assert_eq!(number(&database_url, COUNTED).await, 2, "counted once");
    assert_eq!(fake.classifications(), 2, "nothing asked again");
    drop(server);
}

/// A document of `passages` paragraphs, each about one passage long and
/// with words of its own.
fn long_document(document: usize, passages: usize) -> Vec<u8> {
    (0..passages)
        .map(|p| {
            (0..150)
                .map(|w| format!("d{document}p{p}w{}", w % 37))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n\n")
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vectors_are_indexed_once_while_steward_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let (postgres, database_url) = database(dir.path()).await;
    if postgres.is_none() {
        eprintln!("SQLite has no vector index to wait for: run with STEWARD_TEST_POSTGRES_URL");
        return;
    }
    const DOCUMENTS: usize = 12;
    const PASSAGES: usize = 150;
    let embedder = steward_testkit::embedder::FakeEmbedder::start().await;
    let serve = || {
        let mut command = steward(dir.path());
        command
            .env("STEWARD_DATABASE__URL", &database_url)
            .env("STEWARD_EMBEDDINGS__BASE_URL", &embedder.base_url)
            .env(
                "STEWARD_EMBEDDINGS__DIMENSIONS",
                steward_testkit::embedder::DIMENSIONS.to_string(),
            )
            .env("STEWARD_JOBS__LEASE_SECS", "3")
            .env("STEWARD_JOBS__POLL_INTERVAL_MS", "50")
            .env("RUST_LOG", "warn");
        command
    };
    let (_, password) = create_acme_with(serve());
    let port = free_port();
    let mut server = Server::start_on(serve(), port);
    server.wait_until_healthy().await;
    let owner = Api::sign_in(&server.base, &password).await;
    let bot = owner.chatbot().await;
    let files: Vec<(String, Vec<u8>)> = (0..DOCUMENTS)
        .map(|d| (format!("manual-{d}.txt"), long_document(d, PASSAGES)))
        .collect();
    let files: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(name, bytes)| (name.as_str(), bytes.as_slice()))
        .collect();
    let (content_type, body) = steward_testkit::app::multipart(&files);
    let uploaded = owner
        .client
        .post(format!(
            "{}/api/v1/chatbots/{bot}/knowledge/upload",
            server.base
        ))
        .bearer_auth(&owner.token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(uploaded.status().is_success(), "{}", uploaded.status());

    // Killed while vectors are being put into the index: some are, some wait.
    const INDEXED: &str = "SELECT COUNT(*) FROM chunks WHERE embedding IS NOT NULL";
    const WAITING: &str = "SELECT COUNT(*) FROM waiting_vectors";
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (indexed, waiting) = (
            number(&database_url, INDEXED).await,
            number(&database_url, WAITING).await,
        );
        if indexed > 0 && waiting > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never caught indexing half way: {indexed} indexed, {waiting} waiting"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.child.kill().unwrap(); // SIGKILL, mid-indexing
    server.child.wait().unwrap();
    let waited = number(&database_url, WAITING).await;
    server = Server::start_on(serve(), port);
    server.wait_until_healthy().await;

    let passages = || number(&database_url, "SELECT COUNT(*) FROM chunks");
    let jobs_left = "SELECT COUNT(*) FROM jobs WHERE kind IN ('ingest', 'index_vectors') AND state <> 'succeeded'";
    let deadline = Instant::now() + Duration::from_secs(180);
    while number(&database_url, jobs_left).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the documents were never all indexed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stored = passages().await;
    assert!(stored >= (DOCUMENTS * PASSAGES) as i64, "{stored} passages");
    assert_eq!(number(&database_url, WAITING).await, 0, "none left waiting");
    assert_eq!(
        number(&database_url, INDEXED).await,
        stored,
        "every passage indexed, once ({waited} waited when killed)"
    );

    // Killed after a batch committed but before the job was marked done:
    // the job runs again and finds nothing waiting.
    let requeued = execute(
        &database_url,
        "UPDATE jobs SET state = 'queued', lease_until = NULL WHERE kind = 'index_vectors'",
    )
    .await;
    assert!(
        requeued >= DOCUMENTS as u64,
        "one job per ingest: {requeued}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while number(&database_url, jobs_left).await > 0 {
        assert!(Instant::now() < deadline, "the requeued jobs never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(number(&database_url, INDEXED).await, stored);
    let found = owner
        .get(&format!("/api/v1/chatbots/{bot}/knowledge/search?q=d3p7w5"))
        .await;
    assert_eq!(found["retrieval"], "hybrid", "{found}");
    let passages = found["passages"].as_array().unwrap();
    assert!(
        passages
            .iter()
            .any(|p| p["text"].as_str().unwrap().contains("d3p7w5 ")),
        "{found}"
    );
    drop(server);
}

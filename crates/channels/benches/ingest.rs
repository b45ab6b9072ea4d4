//! Webhook ingest: signed WhatsApp webhooks, one in ten a duplicate of an
//! earlier one, sent over 64 concurrent keep-alive connections to Steward on
//! this machine (client and server share its cores). Measures acknowledged
//! requests per second and the acknowledgement time, then checks that exactly
//! one message and one `respond` job were stored per distinct message id.
//!
//!   cargo bench -p steward-channels --bench ingest
//!
//! SQLite always; PostgreSQL too when STEWARD_TEST_POSTGRES_URL is set (to
//! measure one, STEWARD_BENCH_BACKENDS=sqlite or =postgres).
//! STEWARD_BENCH_WEBHOOKS (default 20000) sets how many are sent. By default
//! the connections send as fast as they are answered (the most the machine
//! takes); with STEWARD_BENCH_RATE=N they send N per second in all, on a fixed
//! schedule, and a request's time counts from when it was due, so a stall
//! shows in the figures instead of slowing the sender.
//!
//! With STEWARD_BENCH_PEER_URL=BASE the same webhooks, signed with the same
//! secret, go to a peer instead (`benches/peers/webhook.mjs`): `BASE/webhook`
//! takes them, `BASE/counts` answers `{"messages": n, "jobs": n}`, and
//! STEWARD_BENCH_PEER_NAME names it in the table. With
//! STEWARD_BENCH_RESULTS=FILE each row is also appended to FILE as a JSON line.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use steward_domain::{JobKind, JobState, OrgId};
use steward_store::{Store, TenantScope, usage_period};
use steward_testkit::DbGuard;
use steward_testkit::app::spawn_app_on;
use steward_testkit::bench::Backend;

const CONNECTIONS: usize = 64;
const APP_SECRET: &str = "bench-app-secret";
const PHONE: &str = "106540352242922";

#[tokio::main]
async fn main() {
    let env = |name: &str| std::env::var(name).ok();
    let total: usize =
        env("STEWARD_BENCH_WEBHOOKS").map_or(20_000, |n| n.parse().expect("a count"));
    let rate: Option<f64> = env("STEWARD_BENCH_RATE").map(|n| n.parse().expect("a rate"));
    println!(
        "| system | offered/s | webhooks | distinct | acknowledged/s | p50 (ms) | p99 (ms) | max (ms) | messages stored | respond jobs |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    if let Some(base) = env("STEWARD_BENCH_PEER_URL") {
        let name = env("STEWARD_BENCH_PEER_NAME").unwrap_or_else(|| base.clone());
        run_peer(&name, &base, total, rate).await;
        return;
    }
    for backend in Backend::available() {
        run(backend.name(), backend.store().await, total, rate).await;
    }
}

/// Meta's text-message webhook, signed as Meta signs it.
fn webhook(id: &str, from: &str) -> (Vec<u8>, String) {
    let body = json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "102290129340398", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550783881", "phone_number_id": PHONE },
            "contacts": [{ "profile": { "name": "Bench" }, "wa_id": from }],
            "messages": [{ "from": from, "id": id, "timestamp": "1749416383", "type": "text", "text": { "body": "Is the shop open on Sunday?" } }],
        }}]}],
    })
    .to_string()
    .into_bytes();
    let signature = steward_channels::whatsapp::signature(APP_SECRET, &body);
    (body, signature)
}

async fn run(
    name: &str,
    (store, guard): (Arc<dyn Store>, DbGuard),
    total: usize,
    rate: Option<f64>,
) {
    // WhatsApp's API, where the channel's credentials are checked when it
    // is saved, is a local one.
    let providers = steward_testkit::providers::FakeProviders::start().await;
    let app = spawn_app_on(store, guard, |config| {
        config.channels.webhook_requests_per_second = 1_000_000;
        config.channels.webhook_burst = 1_000_000;
        config.channels.whatsapp_api_url = providers.whatsapp_api();
    })
    .await;
    let owner = app.register("bench@example.org", "Bench").await;
    let bot = app.chatbot(&owner, "Bench bot").await;
    let channel = app
        .post(
            &format!("/api/v1/chatbots/{bot}/channels"),
            &owner.token,
            json!({ "kind": "whatsapp", "name": "bench", "config": {
                "phone_number_id": PHONE, "access_token": "t", "app_secret": APP_SECRET, "verify_token": "v",
            }}),
        )
        .await;
    let url = app.url(channel.body["webhook_url"].as_str().unwrap());
    let sent = send(&url, total, rate).await;

    let org: OrgId = owner.org_id.parse().unwrap();
    let scope = TenantScope::for_operator(org);
    let stored = app
        .store
        .usage(&scope, &usage_period(steward_store::now()))
        .await
        .unwrap()
        .messages;
    let jobs: i64 = app
        .store
        .queue_stats()
        .await
        .unwrap()
        .iter()
        .filter(|s| s.kind == JobKind::Respond && s.state == JobState::Queued)
        .map(|s| s.count)
        .sum();
    sent.report(&format!("Steward + {name}"), rate, stored, jobs);
    app.stop().await;
}

/// The same webhooks to a peer, which counts what it stored.
async fn run_peer(name: &str, base: &str, total: usize, rate: Option<f64>) {
    let sent = send(&format!("{base}/webhook"), total, rate).await;
    let counts: serde_json::Value = reqwest::get(format!("{base}/counts"))
        .await
        .expect("the peer answers")
        .json()
        .await
        .expect("counts as JSON");
    let count = |key: &str| counts[key].as_i64().expect("a count");
    sent.report(name, rate, count("messages"), count("jobs"));
}

/// What one run sent and how long each acknowledgement took.
struct Sent {
    total: usize,
    distinct: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

/// Sends `total` signed webhooks to `url`, every tenth a repeat of an earlier
/// one, over [`CONNECTIONS`] connections; each must be answered 200.
async fn send(url: &str, total: usize, rate: Option<f64>) -> Sent {
    // Signed before the clock starts; every tenth repeats an earlier one.
    let mut originals: Vec<(Vec<u8>, String)> = Vec::new();
    let requests: Vec<(Vec<u8>, String)> = (0..total)
        .map(|i| {
            if i % 10 == 9 {
                originals[(i * 7919) % originals.len()].clone()
            } else {
                let id = format!("wamid.bench.{i}");
                originals.push(webhook(&id, &format!("1650555{:04}", i % 5000)));
                originals.last().unwrap().clone()
            }
        })
        .collect();
    let distinct = originals.len();
    let requests = Arc::new(requests);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()
        .unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (client, url, requests, next) = (
                client.clone(),
                url.to_owned(),
                requests.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((body, signature)) = requests.get(i) else {
                        break;
                    };
                    let sent = match rate {
                        Some(rate) => {
                            let due = started + Duration::from_secs_f64(i as f64 / rate);
                            tokio::time::sleep_until(due.into()).await;
                            due
                        }
                        None => Instant::now(),
                    };
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("x-hub-signature-256", signature)
                        .body(body.clone())
                        .send()
                        .await
                        .expect("request sent");
                    assert_eq!(
                        response.status(),
                        200,
                        "{}",
                        response.text().await.unwrap_or_default()
                    );
                    let _ = response.bytes().await;
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Sent {
        total,
        distinct,
        elapsed,
        latencies,
    }
}

impl Sent {
    /// Prints the row (and records it), then insists on one message and one
    /// job per distinct id.
    fn report(&self, name: &str, rate: Option<f64>, stored: i64, jobs: i64) {
        let latencies = &self.latencies;
        let at =
            |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let (total, distinct) = (self.total, self.distinct);
        let acknowledged = total as f64 / self.elapsed.as_secs_f64();
        let (p50, p99, max) = (ms(at(0.50)), ms(at(0.99)), ms(*latencies.last().unwrap()));
        let offered = rate.map_or("as fast as answered".to_owned(), |r| format!("{r:.0}"));
        println!(
            "| {name} | {offered} | {total} | {distinct} | {acknowledged:.0} | {p50:.2} | {p99:.2} | {max:.2} | {stored} | {jobs} |"
        );
        steward_testkit::bench::record(json!({
            "bench": "webhook", "system": name, "rate": rate, "webhooks": total, "distinct": distinct,
            "acknowledged": acknowledged, "p50": p50, "p99": p99, "max": max, "stored": stored, "jobs": jobs,
        }));
        assert_eq!(stored, distinct as i64, "one message per distinct id");
        assert_eq!(jobs, distinct as i64, "one job per distinct id");
    }
}

//! Prometheus metrics: one recorder per process, histograms with explicit
//! buckets, HTTP metrics labelled by route template (bounded cardinality).

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use steward_domain::{JobKind, JobState};
use steward_store::QueueStat;

use crate::state::SharedState;

const HTTP_DURATION: &str = "steward_http_request_duration_seconds";
const HTTP_REQUESTS: &str = "steward_http_requests_total";
const DB_CONNECTIONS: &str = "steward_db_connections_active";
const DB_CONNECTIONS_MAX: &str = "steward_db_connections_max";
const IN_FLIGHT: &str = "steward_http_requests_in_flight";
const QUEUE_DEPTH: &str = "steward_queue_depth";
const QUEUE_OLDEST_AGE: &str = "steward_queue_oldest_age_seconds";
const BACKUP_LAST_SUCCESS: &str = "steward_backup_last_success_timestamp_seconds";
const BACKUP_LAST_FAILURE: &str = "steward_backup_last_failure_timestamp_seconds";
const BACKUP_LAST_SIZE: &str = "steward_backup_last_size_bytes";
const TABLE_ROWS: &str = "steward_table_rows";
const TABLE_BYTES: &str = "steward_table_bytes";
const AUDIT_DAY: &str = "steward_audit_events_day";
const AUDIT_ENTRIES: &str = "steward_audit_entries_total";
const KEY_OPERATIONS: &str = "steward_key_operations_total";
/// How often table sizes and audit volume are sampled: they read whole tables.
const SAMPLED_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// The process-wide recorder's handle, installing it on first use.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = |builder: PrometheusBuilder, name: &str, values: &[f64]| {
                builder
                    .set_buckets_for_metric(Matcher::Full(name.into()), values)
                    .expect("buckets are not empty")
            };
            let builder = buckets(
                PrometheusBuilder::new(),
                HTTP_DURATION,
                &[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0,
                ],
            );
            let builder = buckets(
                builder,
                "steward_message_processing_duration_seconds",
                &[5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 45.0, 60.0, 120.0],
            );
            let builder = buckets(
                builder,
                "steward_llm_request_duration_seconds",
                &[1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0],
            );
            let builder = buckets(
                builder,
                "steward_job_duration_seconds",
                &[0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0],
            );
            let builder = buckets(
                builder,
                "steward_tool_call_duration_seconds",
                &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0],
            );
            let builder = buckets(
                builder,
                "steward_tool_loop_steps",
                &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 12.0, 16.0],
            );
            let handle = match builder.install_recorder() {
                Ok(handle) => handle,
                // Another recorder is installed (an embedding program's): keep ours local.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            };
            metrics::describe_histogram!(
                HTTP_DURATION,
                metrics::Unit::Seconds,
                "HTTP request latency by method, route and status."
            );
            metrics::describe_counter!(HTTP_REQUESTS, "HTTP requests by method, route and status.");
            metrics::describe_gauge!(DB_CONNECTIONS, "Database connections in use.");
            metrics::describe_gauge!(
                DB_CONNECTIONS_MAX,
                "The most database connections this process may open."
            );
            metrics::describe_gauge!(IN_FLIGHT, "HTTP requests being handled.");
            metrics::describe_gauge!(QUEUE_DEPTH, "Jobs by kind and state.");
            metrics::describe_gauge!(
                QUEUE_OLDEST_AGE,
                metrics::Unit::Seconds,
                "How long the oldest runnable job of each kind has waited."
            );
            metrics::describe_gauge!(
                BACKUP_LAST_SUCCESS,
                metrics::Unit::Seconds,
                "When the latest successful backup finished (Unix time; 0 if none has)."
            );
            metrics::describe_gauge!(
                BACKUP_LAST_FAILURE,
                metrics::Unit::Seconds,
                "When the latest failed backup run finished (Unix time; 0 if none has)."
            );
            metrics::describe_gauge!(
                BACKUP_LAST_SIZE,
                metrics::Unit::Bytes,
                "The latest successful backup's size."
            );
            metrics::describe_gauge!(
                TABLE_ROWS,
                "Rows per table (PostgreSQL: the planner's estimate), sampled every 5 minutes."
            );
            metrics::describe_gauge!(
                TABLE_BYTES,
                metrics::Unit::Bytes,
                "Bytes on disk per table, indexes included, sampled every 5 minutes."
            );
            metrics::describe_gauge!(
                AUDIT_DAY,
                "Audit log entries in the last 24 hours, by action."
            );
            metrics::describe_counter!(
                AUDIT_ENTRIES,
                "Audit log entries ever written, read from the database every 5 minutes (the same on every replica)."
            );
            metrics::describe_counter!(
                KEY_OPERATIONS,
                "People's keys sealed, opened and destroyed by this process; operation=\"rotate\": keys sealed again under a new master key, read from the audit log every 5 minutes (the same on every replica)."
            );
            metrics::describe_counter!("steward_jobs_total", "Job attempts by kind and outcome.");
            metrics::describe_counter!(
                "steward_channel_messages_total",
                "Messages received (inbound) and reply parts sent (outbound), by channel kind."
            );
            metrics::describe_gauge!(
                "steward_channel_connection_status",
                "By channel kind: 1 while no channel of the kind is failing, else 0."
            );
            metrics::describe_gauge!(
                "steward_channels_failing",
                "By channel kind: channels whose latest exchange with the provider failed."
            );
            metrics::describe_counter!(
                "steward_webhook_rejected_total",
                "Webhooks refused, by channel kind and reason (signature, rate_limited)."
            );
            metrics::describe_counter!(
                "steward_tool_calls_total",
                "Tool calls made, by server, tool and status (succeeded, failed)."
            );
            metrics::describe_histogram!(
                "steward_tool_call_duration_seconds",
                metrics::Unit::Seconds,
                "How long tool calls took, by server."
            );
            metrics::describe_histogram!(
                "steward_tool_loop_steps",
                "Model calls per reply of a chatbot with tools (1: it called none)."
            );
            metrics::describe_counter!(
                "steward_channel_send_errors_total",
                "Failed attempts to send a reply part, by channel kind."
            );
            metrics::describe_counter!(
                "steward_rate_limit_errors_total",
                "Webhook rate checks that could not reach Redis (the request was let through)."
            );
            metrics::describe_histogram!(
                "steward_job_duration_seconds",
                metrics::Unit::Seconds,
                "Job attempt duration by kind."
            );
            handle
        })
        .clone()
}

/// Records every request under its route template, or `unmatched`.
pub async fn track_http(
    State(state): State<SharedState>,
    request: Request,
    next: Next,
) -> Response {
    let _in_flight = state.request_started();
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let labels = [
        ("method", method),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
    metrics::histogram!(HTTP_DURATION, &labels).record(started.elapsed().as_secs_f64());
    response
}

/// Queue depth per kind and state, and how long the oldest runnable job of each
/// kind has waited: the signals that scale the worker tier. Every kind and
/// state is set, to 0 when absent, so a drained queue reads 0, not stale.
fn record_queue(stats: &[QueueStat]) {
    let now = steward_store::now();
    for kind in JobKind::ALL {
        for queue_state in [
            JobState::Queued,
            JobState::Running,
            JobState::Failed,
            JobState::Dead,
        ] {
            let count = stats
                .iter()
                .find(|s| s.kind == *kind && s.state == queue_state)
                .map_or(0, |s| s.count);
            metrics::gauge!(QUEUE_DEPTH, "kind" => kind.as_str(), "state" => queue_state.as_str())
                .set(count as f64);
        }
        let oldest = stats
            .iter()
            .filter(|s| s.kind == *kind && matches!(s.state, JobState::Queued | JobState::Failed))
            .filter_map(|s| s.oldest_run_at)
            .min();
        let age = oldest.map_or(0.0, |at| {
            (now - at).num_milliseconds().max(0) as f64 / 1000.0
        });
        metrics::gauge!(QUEUE_OLDEST_AGE, "kind" => kind.as_str()).set(age);
    }
}

/// Per channel kind, from the store (so every API replica reports the same):
/// `steward_channel_connection_status{channel}` is 1 while no channel of that
/// kind is failing, else 0; `steward_channels_failing{channel}` counts the
/// failing ones. Channel ids stay out of metrics, which are not scoped to an
/// organization; the API shows each channel's own health.
fn record_channels(channels: &[steward_store::Channel]) {
    for kind in steward_domain::ChannelKind::ALL {
        let failing = channels
            .iter()
            .filter(|c| {
                c.kind == *kind && c.health.status() == steward_domain::ChannelStatus::Failing
            })
            .count();
        let up = if failing == 0 { 1.0 } else { 0.0 };
        metrics::gauge!("steward_channel_connection_status", "channel" => kind.as_str()).set(up);
        metrics::gauge!("steward_channels_failing", "channel" => kind.as_str()).set(failing as f64);
    }
}

/// The latest backup runs, from the store (whichever process made them).
fn record_backups(status: &steward_store::BackupStatus) {
    let at = |run: &Option<steward_store::BackupRun>| {
        run.as_ref()
            .map_or(0.0, |r| r.finished_at.timestamp_millis() as f64 / 1000.0)
    };
    metrics::gauge!(BACKUP_LAST_SUCCESS).set(at(&status.last_success));
    metrics::gauge!(BACKUP_LAST_FAILURE).set(at(&status.last_failure));
    let size = status.last_success.as_ref().map_or(0, |r| r.bytes);
    metrics::gauge!(BACKUP_LAST_SIZE).set(size as f64);
}

/// Table sizes and audit volume, unless sampled within `SAMPLED_EVERY`.
async fn record_sampled(state: &SharedState) {
    {
        let mut sampled = state.sampled_at.lock().expect("not poisoned");
        if sampled.is_some_and(|at| at.elapsed() < SAMPLED_EVERY) {
            return;
        }
        *sampled = Some(Instant::now());
    }
    match state.store.table_sizes().await {
        Ok(tables) => {
            for t in tables {
                metrics::gauge!(TABLE_ROWS, "table" => t.table.clone()).set(t.rows as f64);
                metrics::gauge!(TABLE_BYTES, "table" => t.table).set(t.bytes as f64);
            }
        }
        Err(e) => tracing::warn!(error = %e, "table size metrics unavailable"),
    }
    let since = steward_store::now() - chrono::Duration::days(1);
    match state.store.audit_actions(Some(since)).await {
        Ok(actions) => {
            for (action, count) in &actions {
                metrics::gauge!(AUDIT_DAY, "action" => action.clone()).set(*count as f64);
            }
        }
        Err(e) => tracing::warn!(error = %e, "audit metrics unavailable"),
    }
    // Read from the audit log rather than counted where they happen: the
    // CLI writes entries too (erasures, key rotations), and it is never scraped.
    match state.store.audit_actions(None).await {
        Ok(actions) => {
            metrics::counter!(AUDIT_ENTRIES).absolute(actions.iter().map(|(_, n)| n).sum());
            let rotated = actions
                .iter()
                .find(|(action, _)| action == steward_store::PERSON_KEY_RESEALED)
                .map_or(0, |(_, n)| *n);
            metrics::counter!(KEY_OPERATIONS, "operation" => "rotate").absolute(rotated);
        }
        Err(e) => tracing::warn!(error = %e, "audit metrics unavailable"),
    }
}

/// `GET /metrics/organizations`: per organization (labelled by id and name),
/// members, conversations and messages of the last 7 days, and this month's
/// usage against the tier's limits. Rendered here rather than by the
/// process's recorder, because it names tenants: `/metrics` never does.
pub async fn render_organizations(
    state: &SharedState,
) -> Result<String, steward_store::StoreError> {
    let now = steward_store::now();
    let orgs = state
        .store
        .org_activity(
            now - chrono::Duration::days(7),
            &steward_store::usage_period(now),
            now.date_naive(),
        )
        .await?;
    let queries = state
        .insights_queries
        .lock()
        .expect("the counter's lock")
        .clone();
    Ok(organizations_text(&orgs, &state.config.tiers, &queries))
}

fn organizations_text(
    orgs: &[steward_store::OrgActivity],
    tiers: &steward_config::TiersConfig,
    insights_queries: &std::collections::HashMap<steward_domain::OrgId, u64>,
) -> String {
    use std::fmt::Write;
    type Value = fn(&steward_store::OrgActivity, &steward_config::TiersConfig) -> u64;
    // (name, help, its TYPE, an extra label, the value)
    let series: [(&str, &str, &str, &str, Value); 14] = [
        (
            "steward_org_members",
            "Members per organization.",
            "gauge",
            "",
            |o, _| o.members,
        ),
        (
            "steward_org_week_active_conversations",
            "Conversations with a message from a person in the last 7 days (on a channel, one per person).",
            "gauge",
            "",
            |o, _| o.active_conversations,
        ),
        (
            "steward_org_week_messages",
            "Messages in the last 7 days, by role: user (people) or assistant (replies).",
            "gauge",
            r#"role="user""#,
            |o, _| o.user_messages,
        ),
        (
            "steward_org_week_messages",
            "",
            "",
            r#"role="assistant""#,
            |o, _| o.replies,
        ),
        (
            "steward_org_week_replies_with_skills",
            "Replies that loaded a skill (use_skill) today and in the six days before.",
            "gauge",
            "",
            |o, _| o.replies_with_skills,
        ),
        (
            "steward_org_month_messages",
            "This month's counted messages.",
            "gauge",
            "",
            |o, _| o.month_messages,
        ),
        (
            "steward_org_month_messages_limit",
            "The tier's monthly message limit.",
            "gauge",
            "",
            |o, t| t.limits(o.tier).messages_per_month.max(0) as u64,
        ),
        (
            "steward_org_month_tokens",
            "This month's model tokens.",
            "gauge",
            "",
            |o, _| o.month_tokens,
        ),
        (
            "steward_org_month_tokens_limit",
            "The tier's monthly token limit.",
            "gauge",
            "",
            |o, t| t.limits(o.tier).tokens_per_month.max(0) as u64,
        ),
        (
            "steward_active_people",
            "People who wrote to the organization's assistants today, in the last 7 days and in the last 30 (each person once).",
            "gauge",
            r#"window="day""#,
            |o, _| o.people_day,
        ),
        (
            "steward_active_people",
            "",
            "",
            r#"window="week""#,
            |o, _| o.people_week,
        ),
        (
            "steward_active_people",
            "",
            "",
            r#"window="month""#,
            |o, _| o.people_month,
        ),
        (
            "steward_feedback_total",
            "Ratings of replies held now, up or down (a rating changed or taken back moves between or leaves them).",
            "gauge",
            r#"rating="up""#,
            |o, _| o.rated_up,
        ),
        (
            "steward_feedback_total",
            "",
            "",
            r#"rating="down""#,
            |o, _| o.rated_down,
        ),
    ];
    let mut out = String::new();
    for (name, help, kind, label, value) in series {
        if !help.is_empty() {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        }
        let label = if label.is_empty() {
            String::new()
        } else {
            format!(",{label}")
        };
        for org in orgs {
            let _ = writeln!(
                out,
                "{name}{{org_id=\"{}\",org=\"{}\"{label}}} {}",
                org.org_id,
                label_value(&org.name),
                value(org, tiers)
            );
        }
    }
    counter_per_org(
        &mut out,
        "steward_messages_total",
        "Messages from people, per channel kind, written to the assistant (direct) or forwarded to it.",
        orgs,
        |org| {
            org.messages
                .iter()
                .flat_map(|(channel, direct, forwarded)| {
                    let channel = label_value(channel);
                    [("direct", *direct), ("forwarded", *forwarded)].map(|(kind, count)| {
                        (
                            format!(r#"channel="{channel}",message_type="{kind}""#),
                            count,
                        )
                    })
                })
                .collect()
        },
    );
    counter_per_org(
        &mut out,
        "steward_skill_activations_total",
        "Times replies loaded each skill (use_skill).",
        orgs,
        |org| {
            org.skill_activations
                .iter()
                .map(|(skill, count)| (format!(r#"skill="{}""#, label_value(skill)), *count))
                .collect()
        },
    );
    counter_per_org(
        &mut out,
        "steward_patterns_collected_total",
        "Answered messages labelled for insights, per first-level category.",
        orgs,
        |org| {
            org.patterns
                .iter()
                .map(|(category, count)| {
                    (
                        format!(r#"category_l1="{}""#, label_value(category)),
                        *count,
                    )
                })
                .collect()
        },
    );
    let name = "steward_insights_queries_total";
    let _ = writeln!(
        out,
        "# HELP {name} Insights-by-category queries this process answered.\n# TYPE {name} counter"
    );
    for org in orgs {
        let _ = writeln!(
            out,
            "{name}{{org_id=\"{}\",org=\"{}\"}} {}",
            org.org_id,
            label_value(&org.name),
            insights_queries.get(&org.org_id).copied().unwrap_or(0)
        );
    }
    out
}

/// A counter with any number of series per organization: `series` gives an
/// organization's, each as its labels beyond the organization's and its value.
fn counter_per_org(
    out: &mut String,
    name: &str,
    help: &str,
    orgs: &[steward_store::OrgActivity],
    series: impl Fn(&steward_store::OrgActivity) -> Vec<(String, u64)>,
) {
    use std::fmt::Write;
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for org in orgs {
        for (labels, count) in series(org) {
            let _ = writeln!(
                out,
                "{name}{{org_id=\"{}\",org=\"{}\",{labels}}} {count}",
                org.org_id,
                label_value(&org.name),
            );
        }
    }
}

/// A label value as the text format wants it: backslash, quote and newline escaped.
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text exposition, with gauges sampled now.
pub async fn render(
    State(state): State<SharedState>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    // Read first, then set every gauge and render at once: the recorder is
    // the process's, and this keeps the window for another render short.
    record_sampled(&state).await;
    let queue = state.store.queue_stats().await;
    let channels = state.store.all_channels(None).await;
    let backups = state.store.backup_status().await;
    metrics::gauge!(DB_CONNECTIONS).set(f64::from(state.store.connections_active()));
    metrics::gauge!(DB_CONNECTIONS_MAX).set(f64::from(state.store.connections_max()));
    metrics::gauge!(IN_FLIGHT).set(state.requests_in_flight() as f64);
    match queue {
        Ok(stats) => record_queue(&stats),
        Err(e) => tracing::warn!(error = %e, "queue metrics unavailable"),
    }
    match channels {
        Ok(channels) => record_channels(&channels),
        Err(e) => tracing::warn!(error = %e, "channel metrics unavailable"),
    }
    match backups {
        Ok(status) => record_backups(&status),
        Err(e) => tracing::warn!(error = %e, "backup metrics unavailable"),
    }
    state.metrics.run_upkeep();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders what `record` sets, on a recorder of its own.
    fn rendered(record: impl FnOnce()) -> String {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, record);
        handle.render()
    }

    #[test]
    fn backup_gauges_come_from_the_latest_runs_and_read_0_when_there_are_none() {
        let finished = chrono::DateTime::from_timestamp(1_795_000_000, 0).unwrap();
        let run = |succeeded: bool, finished_at| steward_store::BackupRun {
            backup_id: "20261122T024000.000Z".into(),
            started_at: finished_at - chrono::Duration::seconds(30),
            finished_at,
            succeeded,
            bytes: if succeeded { 123_456 } else { 0 },
            error: None,
        };
        let text = rendered(|| {
            record_backups(&steward_store::BackupStatus {
                last_success: Some(run(true, finished)),
                last_failure: Some(run(false, finished + chrono::Duration::hours(24))),
            })
        });
        for line in [
            "steward_backup_last_success_timestamp_seconds 1795000000",
            "steward_backup_last_failure_timestamp_seconds 1795086400",
            "steward_backup_last_size_bytes 123456",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        let none = rendered(|| record_backups(&Default::default()));
        assert!(
            none.lines()
                .any(|l| l == "steward_backup_last_success_timestamp_seconds 0"),
            "{none}"
        );
    }

    #[test]
    fn organizations_are_labelled_by_id_and_escaped_name_with_their_tier_limits() {
        let org_id = steward_domain::OrgId::new();
        let org = steward_store::OrgActivity {
            org_id,
            name: "Acme \"North\"\\".into(),
            tier: steward_domain::Tier::Pro,
            members: 3,
            active_conversations: 5,
            user_messages: 40,
            replies: 39,
            replies_with_skills: 12,
            month_messages: 120,
            month_tokens: 9000,
            people_day: 2,
            people_week: 7,
            people_month: 20,
            rated_up: 4,
            rated_down: 1,
            messages: vec![("slack".into(), 30, 10)],
            skill_activations: vec![("expense-report".into(), 6)],
            patterns: vec![("IT & tools".into(), 4)],
        };
        let tiers = steward_config::TiersConfig::default();
        let queries = std::collections::HashMap::from([(org_id, 2)]);
        let text = organizations_text(&[org], &tiers, &queries);
        let labels = format!(r#"org_id="{org_id}",org="Acme \"North\"\\""#);
        for line in [
            format!("steward_org_members{{{labels}}} 3"),
            format!("steward_org_week_active_conversations{{{labels}}} 5"),
            format!(r#"steward_org_week_messages{{{labels},role="user"}} 40"#),
            format!(r#"steward_org_week_messages{{{labels},role="assistant"}} 39"#),
            format!("steward_org_week_replies_with_skills{{{labels}}} 12"),
            format!("steward_org_month_messages{{{labels}}} 120"),
            format!(
                "steward_org_month_messages_limit{{{labels}}} {}",
                tiers.pro.messages_per_month
            ),
            format!("steward_org_month_tokens{{{labels}}} 9000"),
            format!(r#"steward_active_people{{{labels},window="week"}} 7"#),
            format!(r#"steward_feedback_total{{{labels},rating="down"}} 1"#),
            format!(
                r#"steward_messages_total{{{labels},channel="slack",message_type="forwarded"}} 10"#
            ),
            format!(r#"steward_skill_activations_total{{{labels},skill="expense-report"}} 6"#),
            format!(r#"steward_patterns_collected_total{{{labels},category_l1="IT & tools"}} 4"#),
            format!("steward_insights_queries_total{{{labels}}} 2"),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert_eq!(
            text.matches("# TYPE steward_org_week_messages gauge")
                .count(),
            1,
            "one TYPE line per metric"
        );
    }
}

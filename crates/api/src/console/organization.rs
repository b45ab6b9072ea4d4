//! The organization's pages: the overview, members, API keys, usage, the
//! audit log and the jobs (dead letters).

use askama::Template;
use axum::extract::{Form, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::channels::{Channel, ChannelList};
use super::session::Console;
use super::view::{self, Layout, Notice, PagePath, Time, url_encode};

#[derive(Deserialize)]
struct Usage {
    period: String,
    messages_used: i64,
    messages_limit: i64,
    tokens_used: i64,
    tokens_limit: i64,
    current_tier: String,
}

impl Usage {
    fn percent(used: i64, limit: i64) -> i64 {
        if limit <= 0 {
            0
        } else {
            (used.saturating_mul(100) / limit).min(100)
        }
    }

    fn messages_percent(&self) -> i64 {
        Self::percent(self.messages_used, self.messages_limit)
    }

    fn tokens_percent(&self) -> i64 {
        Self::percent(self.tokens_used, self.tokens_limit)
    }
}

#[derive(Deserialize)]
struct JobList {
    jobs: Vec<Job>,
}

#[derive(Deserialize)]
struct Job {
    id: String,
    kind: String,
    attempts: i32,
    max_attempts: i32,
    last_error: Option<String>,
    updated_at: Time,
}

#[derive(Deserialize)]
struct Insights {
    days: Vec<Day>,
    active_people: ActivePeople,
    reply_seconds: ReplyTimes,
    chatbots: Vec<ChatbotUsage>,
}

#[derive(Deserialize)]
struct Day {
    date: String,
    messages: i64,
    replies: i64,
}

#[derive(Deserialize)]
struct ActivePeople {
    today: i64,
    week: i64,
}

#[derive(Deserialize)]
struct ReplyTimes {
    p50: Option<f64>,
    p95: Option<f64>,
    replies: usize,
}

impl ReplyTimes {
    fn shown(seconds: Option<f64>) -> String {
        match seconds {
            None => "–".into(),
            Some(s) if s < 10.0 => format!("{s:.1} s"),
            Some(s) => format!("{s:.0} s"),
        }
    }

    fn p50_text(&self) -> String {
        Self::shown(self.p50)
    }

    fn p95_text(&self) -> String {
        Self::shown(self.p95)
    }
}

#[derive(Deserialize)]
struct ChatbotUsage {
    chatbot_id: String,
    messages: i64,
    conversations: i64,
}

/// Messages per day as bars, drawn by the server (SVG, no script).
struct Chart {
    bars: Vec<Bar>,
    peak: i64,
    first: String,
    last: String,
    total: i64,
}

struct Bar {
    x: u32,
    y: u32,
    height: u32,
    label: String,
}

/// The chart's drawing area, in SVG units.
const CHART_WIDTH: u32 = 600;
const CHART_HEIGHT: u32 = 120;

impl Chart {
    fn of(days: &[Day]) -> Self {
        let peak = days.iter().map(|d| d.messages).max().unwrap_or(0);
        let slot = CHART_WIDTH / u32::try_from(days.len().max(1)).unwrap_or(1);
        let bars = days
            .iter()
            .enumerate()
            .map(|(i, day)| {
                let height = if peak == 0 {
                    0
                } else {
                    ((day.messages as f64 / peak as f64) * f64::from(CHART_HEIGHT - 4)).round()
                        as u32
                };
                Bar {
                    x: u32::try_from(i).unwrap_or(0) * slot,
                    y: CHART_HEIGHT - height,
                    height,
                    label: format!(
                        "{}: {} messages, {} replies",
                        day.date, day.messages, day.replies
                    ),
                }
            })
            .collect();
        Self {
            bars,
            peak,
            first: days.first().map(|d| d.date.clone()).unwrap_or_default(),
            last: days.last().map(|d| d.date.clone()).unwrap_or_default(),
            total: days.iter().map(|d| d.messages).sum(),
        }
    }

    fn bar_width(&self) -> u32 {
        (CHART_WIDTH / u32::try_from(self.bars.len().max(1)).unwrap_or(1)).saturating_sub(2)
    }
}

/// A chatbot's line on the overview.
struct ChatbotLine {
    chatbot: super::chatbots::Chatbot,
    messages: i64,
    conversations: i64,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    layout: Layout,
    usage: Usage,
    people: ActivePeople,
    replies: ReplyTimes,
    chart: Chart,
    chatbots: Vec<ChatbotLine>,
    chatbot_total: u64,
    /// None when the role may not see jobs.
    dead_letters: Option<usize>,
    /// Every channel with its health; none when the role may not see them.
    channels: Option<Vec<ChannelLine>>,
}

struct ChannelLine {
    channel: Channel,
    /// The name of the chatbot it serves.
    chatbot: String,
}

/// The organization at a glance.
pub async fn overview(console: Console) -> Response {
    // Advisors read aggregates only: their console is the patterns page.
    if !console.principal.role().can_read_conversations() {
        return Redirect::to("/patterns").into_response();
    }
    let usage = console.api.get::<Usage>("/organizations/usage");
    let chatbots = console
        .api
        .get::<super::chatbots::ChatbotList>("/chatbots?limit=200");
    let insights = console.api.get::<Insights>("/insights/usage?days=30");
    let (usage, chatbots, insights) = match futures::join!(usage, chatbots, insights) {
        (Ok(usage), Ok(chatbots), Ok(insights)) => (usage, chatbots, insights),
        (Err(failure), _, _) | (_, Err(failure), _) | (_, _, Err(failure)) => {
            return view::api_failure(failure);
        }
    };
    // Dead letters and channels are for owners and admins.
    let (dead_letters, channels) = if console.is_admin() {
        let dead = console.api.get::<JobList>("/jobs?state=dead&limit=200");
        let channels = console.api.get::<ChannelList>("/channels");
        match futures::join!(dead, channels) {
            (Ok(dead), Ok(channels)) => (Some(dead.jobs.len()), Some(channels.channels)),
            (Err(failure), _) | (_, Err(failure)) => return view::api_failure(failure),
        }
    } else {
        (None, None)
    };
    let channels = channels.map(|channels| {
        channels
            .into_iter()
            .map(|channel| ChannelLine {
                chatbot: chatbots
                    .chatbots
                    .iter()
                    .find(|c| c.id == channel.chatbot_id)
                    .map_or_else(String::new, |c| c.name.clone()),
                channel,
            })
            .collect()
    });
    let lines = chatbots
        .chatbots
        .into_iter()
        .map(|chatbot| {
            let used = insights
                .chatbots
                .iter()
                .find(|c| c.chatbot_id == chatbot.id);
            ChatbotLine {
                messages: used.map_or(0, |c| c.messages),
                conversations: used.map_or(0, |c| c.conversations),
                chatbot,
            }
        })
        .collect();
    view::render(&OverviewPage {
        layout: console.layout("Overview", "overview"),
        usage,
        people: insights.active_people,
        replies: insights.reply_seconds,
        chart: Chart::of(&insights.days),
        chatbot_total: chatbots.total,
        chatbots: lines,
        dead_letters,
        channels,
    })
}

#[derive(Template)]
#[template(path = "usage.html")]
struct UsagePage {
    layout: Layout,
    usage: Usage,
}

pub async fn usage(console: Console) -> Response {
    match console.api.get::<Usage>("/organizations/usage").await {
        Ok(usage) => view::render(&UsagePage {
            layout: console.layout("Usage and plan", "usage"),
            usage,
        }),
        Err(failure) => view::api_failure(failure),
    }
}

#[derive(Deserialize)]
struct MemberList {
    members: Vec<Member>,
}

#[derive(Deserialize)]
struct Member {
    id: String,
    email: Option<String>,
    name: Option<String>,
    role: String,
    created_at: Time,
    must_change_password: bool,
}

#[derive(Template)]
#[template(path = "members.html")]
struct MembersPage {
    layout: Layout,
    members: Vec<Member>,
    notice: Option<Notice>,
}

const ROLES: [&str; 4] = ["owner", "admin", "member", "advisor"];

async fn members_page(console: &Console, status: StatusCode, notice: Option<Notice>) -> Response {
    match console
        .api
        .get::<MemberList>("/organizations/members")
        .await
    {
        Ok(list) => view::render_with(
            status,
            &MembersPage {
                layout: console.layout("Members", "members"),
                members: list.members,
                notice,
            },
        ),
        Err(failure) => view::api_failure(failure),
    }
}

pub async fn members(console: Console) -> Response {
    members_page(&console, StatusCode::OK, None).await
}

#[derive(Deserialize)]
pub struct Invite {
    email: String,
    role: String,
    name: Option<String>,
}

#[derive(Deserialize)]
struct Invited {
    user: Member,
    temporary_password: String,
}

pub async fn invite(console: Console, Form(form): Form<Invite>) -> Response {
    let name = form.name.filter(|n| !n.trim().is_empty());
    let body = json!({ "email": form.email.trim(), "role": form.role, "name": name });
    match console
        .api
        .post::<Invited>("/organizations/members", &body)
        .await
    {
        Ok(invited) => {
            let who = invited.user.email.unwrap_or_default();
            let notice = Notice {
                error: false,
                text: format!(
                    "{who} was added. Give them this one-time password; they choose their own at first sign-in:"
                ),
                secret: Some(invited.temporary_password),
            };
            members_page(&console, StatusCode::CREATED, Some(notice)).await
        }
        Err(failure) => view::refused(failure, |s, n| members_page(&console, s, n)).await,
    }
}

#[derive(Deserialize)]
pub struct RoleChange {
    role: String,
}

pub async fn change_role(
    console: Console,
    PagePath(id): PagePath<uuid::Uuid>,
    Form(form): Form<RoleChange>,
) -> Response {
    let path = format!("/organizations/members/{id}");
    match console
        .api
        .patch::<Value>(&path, &json!({ "role": form.role }))
        .await
    {
        Ok(_) => Redirect::to("/members").into_response(),
        Err(failure) => view::refused(failure, |s, n| members_page(&console, s, n)).await,
    }
}

pub async fn remove_member(console: Console, PagePath(id): PagePath<uuid::Uuid>) -> Response {
    match console
        .api
        .delete(&format!("/organizations/members/{id}"))
        .await
    {
        Ok(()) => Redirect::to("/members").into_response(),
        Err(failure) => view::refused(failure, |s, n| members_page(&console, s, n)).await,
    }
}

pub async fn reset_password(console: Console, PagePath(id): PagePath<uuid::Uuid>) -> Response {
    let path = format!("/organizations/members/{id}/password");
    match console.api.post::<Invited>(&path, &json!({})).await {
        Ok(reset) => {
            let who = reset.user.email.unwrap_or_default();
            let notice = Notice {
                error: false,
                text: format!("{who} has a new one-time password; their sessions are signed out:"),
                secret: Some(reset.temporary_password),
            };
            members_page(&console, StatusCode::OK, Some(notice)).await
        }
        Err(failure) => view::refused(failure, |s, n| members_page(&console, s, n)).await,
    }
}

#[derive(Deserialize)]
struct ApiKeyList {
    api_keys: Vec<ApiKey>,
}

#[derive(Deserialize)]
struct ApiKey {
    id: String,
    name: String,
    prefix: String,
    role: String,
    created_at: Time,
    revoked_at: Option<Time>,
}

#[derive(Deserialize)]
struct CreatedKey {
    key: String,
}

#[derive(Template)]
#[template(path = "api_keys.html")]
struct ApiKeysPage {
    layout: Layout,
    keys: Vec<ApiKey>,
    notice: Option<Notice>,
}

async fn keys_page(console: &Console, status: StatusCode, notice: Option<Notice>) -> Response {
    match console.api.get::<ApiKeyList>("/api-keys").await {
        Ok(list) => view::render_with(
            status,
            &ApiKeysPage {
                layout: console.layout("API keys", "api-keys"),
                keys: list.api_keys,
                notice,
            },
        ),
        Err(failure) => view::api_failure(failure),
    }
}

pub async fn api_keys(console: Console) -> Response {
    keys_page(&console, StatusCode::OK, None).await
}

#[derive(Deserialize)]
pub struct NewKey {
    name: String,
    role: String,
}

pub async fn create_key(console: Console, Form(form): Form<NewKey>) -> Response {
    let body = json!({ "name": form.name, "role": form.role });
    match console.api.post::<CreatedKey>("/api-keys", &body).await {
        Ok(created) => {
            let notice = Notice {
                error: false,
                text: "The new key, shown this once. Send it as Authorization: Bearer <key>:"
                    .into(),
                secret: Some(created.key),
            };
            keys_page(&console, StatusCode::CREATED, Some(notice)).await
        }
        Err(failure) => view::refused(failure, |s, n| keys_page(&console, s, n)).await,
    }
}

pub async fn revoke_key(console: Console, PagePath(id): PagePath<uuid::Uuid>) -> Response {
    match console.api.delete(&format!("/api-keys/{id}")).await {
        Ok(()) => Redirect::to("/api-keys").into_response(),
        Err(failure) => view::refused(failure, |s, n| keys_page(&console, s, n)).await,
    }
}

#[derive(Template)]
#[template(path = "jobs.html")]
struct JobsPage {
    layout: Layout,
    jobs: Vec<Job>,
    notice: Option<Notice>,
}

async fn jobs_page(console: &Console, status: StatusCode, notice: Option<Notice>) -> Response {
    match console
        .api
        .get::<JobList>("/jobs?state=dead&limit=200")
        .await
    {
        Ok(list) => view::render_with(
            status,
            &JobsPage {
                layout: console.layout("Jobs", "jobs"),
                jobs: list.jobs,
                notice,
            },
        ),
        Err(failure) => view::api_failure(failure),
    }
}

pub async fn jobs(console: Console) -> Response {
    jobs_page(&console, StatusCode::OK, None).await
}

pub async fn retry_job(console: Console, PagePath(id): PagePath<uuid::Uuid>) -> Response {
    job_action(console, id, "retry").await
}

pub async fn discard_job(console: Console, PagePath(id): PagePath<uuid::Uuid>) -> Response {
    job_action(console, id, "discard").await
}

async fn job_action(console: Console, id: uuid::Uuid, action: &str) -> Response {
    let path = format!("/jobs/{id}/{action}");
    match console.api.post::<Value>(&path, &json!({})).await {
        Ok(_) => Redirect::to("/jobs").into_response(),
        Err(failure) => view::refused(failure, |s, n| jobs_page(&console, s, n)).await,
    }
}

#[derive(Deserialize)]
struct AuditLog {
    entries: Vec<AuditEntry>,
    next_before: Option<String>,
}

#[derive(Deserialize)]
struct AuditEntry {
    actor: String,
    action: String,
    target: String,
    details: Value,
    created_at: Time,
}

impl AuditEntry {
    fn details_text(&self) -> String {
        if self.details.is_null() {
            String::new()
        } else {
            self.details.to_string()
        }
    }
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    layout: Layout,
    entries: Vec<AuditEntry>,
    /// The next page's URL, when this is not the last.
    older: Option<String>,
}

#[derive(Deserialize)]
pub struct AuditParams {
    before: Option<String>,
}

/// The audit log, 50 entries a page, newest first.
pub async fn audit(console: Console, Query(params): Query<AuditParams>) -> Response {
    let mut path = "/organizations/audit-log?limit=50".to_owned();
    if let Some(before) = params.before.filter(|b| !b.is_empty()) {
        path.push_str(&format!("&before={}", url_encode(&before)));
    }
    match console.api.get::<AuditLog>(&path).await {
        Ok(log) => view::render(&AuditPage {
            layout: console.layout("Audit log", "audit"),
            entries: log.entries,
            older: log
                .next_before
                .map(|before| format!("/audit?before={}", url_encode(&before))),
        }),
        Err(failure) => view::api_failure(failure),
    }
}

//! The web chat's public side: the chat page at `/chat/{channel_id}`, the
//! script that puts it on another site as a bubble (`widget.js`), and the
//! visitor's own routes. A visitor is anonymous: `POST .../session` gives
//! their browser a signed token naming the channel and a random visitor id,
//! and with it they read and write their own conversation and nothing else.
//! Requests from a page of a site the channel does not list are refused;
//! the page itself may only be framed by those sites.

use std::net::IpAddr;
use std::num::NonZeroU32;

use askama::Template;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use serde_json::json;
use steward_channels::{ChannelConfig, Received, web};
use steward_domain::{ChannelId, ChannelKind, Identity, MessageId};
use steward_store::{Channel, Sender, TenantScope};
use uuid::Uuid;

use crate::auth::ClientIp;
use crate::dto::MessageDto;
use crate::error::{ApiError, ApiResult};
use crate::routes::live::{Audience, Since, follow};
use crate::state::{AppState, SharedState};

/// How long a visitor's session lasts in their browser.
const SESSION_DAYS: i64 = 30;
/// The longest message a visitor may send.
const MAX_TEXT_CHARS: usize = 4000;
/// Messages of their conversation a visitor's page loads.
const HISTORY: u32 = 100;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/chat/{channel_id}", get(page))
        .route("/chat/{channel_id}/widget.js", get(widget))
        .route(
            "/chat/{channel_id}/session",
            axum::routing::post(start_session),
        )
        .route("/chat/{channel_id}/messages", get(history).post(send))
        .route("/chat/{channel_id}/events", get(events))
        .route(
            "/chat/{channel_id}/messages/{message_id}/feedback",
            axum::routing::post(rate),
        )
        .layer(DefaultBodyLimit::max(32 * 1024))
}

/// Visits per address and messages per visitor, in process.
pub struct VisitorLimiter {
    per_address: DefaultKeyedRateLimiter<IpAddr>,
    per_visitor: DefaultKeyedRateLimiter<Uuid>,
}

impl VisitorLimiter {
    pub fn new(per_visitor_per_minute: u32, per_address_per_minute: u32) -> Result<Self, String> {
        let quota = |n: u32| {
            NonZeroU32::new(n)
                .map(Quota::per_minute)
                .ok_or("web chat limits must be above 0")
        };
        Ok(Self {
            per_address: RateLimiter::keyed(quota(per_address_per_minute)?),
            per_visitor: RateLimiter::keyed(quota(per_visitor_per_minute)?),
        })
    }

    /// One request from `ip`, of `visitor` when one is known.
    fn check(&self, ip: IpAddr, visitor: Option<Uuid>) -> ApiResult<()> {
        if self.per_address.len() > 10_000 {
            self.per_address.retain_recent();
        }
        if self.per_visitor.len() > 10_000 {
            self.per_visitor.retain_recent();
        }
        let now = DefaultClock::default().now();
        let wait = |not_until: governor::NotUntil<_>| ApiError::RateLimited {
            retry_after_secs: not_until.wait_time_from(now).as_secs().max(1),
        };
        self.per_address.check_key(&ip).map_err(wait)?;
        if let Some(visitor) = visitor {
            self.per_visitor.check_key(&visitor).map_err(wait)?;
        }
        Ok(())
    }
}

/// A web channel, found by the id in the URL; anything else is not found.
async fn web_channel(state: &AppState, id: &str) -> ApiResult<(Channel, web::Config)> {
    let id: ChannelId = id.parse().map_err(|_| ApiError::NotFound)?;
    let channel = state
        .store
        .find_channel(id)
        .await?
        .filter(|c| c.kind == ChannelKind::Web)
        .ok_or(ApiError::NotFound)?;
    match ChannelConfig::open(&channel, &state.sealer) {
        Ok(ChannelConfig::Web(config)) => Ok((channel, config)),
        Ok(_) => Err(ApiError::NotFound),
        Err(e) => Err(ApiError::Internal(format!("channel {}: {e}", channel.id))),
    }
}

/// Steward's own origin, as a browser on its pages sends it.
fn own_origin(state: &AppState, headers: &HeaderMap) -> Option<String> {
    if let Some(public) = &state.config.http.public_url {
        return web::normalize_origin(public.trim_end_matches('/'));
    }
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let scheme = if state.config.http.behind_tls {
        "https"
    } else {
        "http"
    };
    Some(format!("{scheme}://{}", host.to_ascii_lowercase()))
}

/// A request from a page of another site is refused unless the channel lists
/// that site. (Programs send no `Origin`; they are only rate limited.)
fn check_origin(state: &AppState, headers: &HeaderMap, config: &web::Config) -> ApiResult<()> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let allowed = own_origin(state, headers).as_deref() == Some(origin)
        || config.allowed_origins.iter().any(|o| o == origin);
    if allowed {
        Ok(())
    } else {
        Err(ApiError::Forbidden {
            code: "origin_not_allowed",
            message: "this chat may not be used from that site",
        })
    }
}

/// A visitor's session, from the bearer token their page keeps.
struct Visitor {
    channel: ChannelId,
    id: Uuid,
}

impl Visitor {
    fn seal(&self, state: &AppState, expires: DateTime<Utc>) -> String {
        let mut payload = Vec::with_capacity(40);
        payload.extend_from_slice(self.channel.as_uuid().as_bytes());
        payload.extend_from_slice(self.id.as_bytes());
        payload.extend_from_slice(&expires.timestamp().to_be_bytes());
        state.visitors.seal(&payload)
    }

    fn open(state: &AppState, token: &str) -> Option<Self> {
        let payload = state.visitors.open(token).filter(|p| p.len() == 40)?;
        let expires = i64::from_be_bytes(payload[32..40].try_into().ok()?);
        if expires < Utc::now().timestamp() {
            return None;
        }
        Some(Self {
            channel: ChannelId::from_uuid(Uuid::from_slice(&payload[..16]).ok()?),
            id: Uuid::from_slice(&payload[16..32]).ok()?,
        })
    }

    /// The key of the visitor's conversation on the channel.
    fn key(&self) -> String {
        self.id.to_string()
    }
}

impl FromRequestParts<SharedState> for Visitor {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|token| Visitor::open(state, token.trim()))
            .ok_or(ApiError::Unauthorized {
                message: "start a chat session first: POST /chat/{channel_id}/session",
            })
    }
}

/// The visitor's session must be of the channel in the URL.
fn same_channel(visitor: &Visitor, channel: &Channel) -> ApiResult<()> {
    if visitor.channel == channel.id {
        Ok(())
    } else {
        Err(ApiError::Unauthorized {
            message: "this session belongs to another chat",
        })
    }
}

#[derive(Template)]
#[template(path = "chat.html")]
struct ChatPage {
    channel_id: String,
    title: String,
    greeting: Option<String>,
    embedded: bool,
}

#[derive(Deserialize)]
struct PageQuery {
    embedded: Option<String>,
}

/// The chat page: framed only by the sites the channel lists.
async fn page(
    State(state): State<SharedState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    query: axum::extract::Query<PageQuery>,
) -> Response {
    let (channel, config) = match web_channel(&state, &id).await {
        Ok(found) => found,
        Err(ApiError::NotFound) => return crate::console::not_found_response(),
        Err(e) => return e.into_response(),
    };
    let title = match state
        .store
        .chatbot(&TenantScope::for_channel(&channel), channel.chatbot_id)
        .await
    {
        Ok(chatbot) => chatbot.name,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let page = ChatPage {
        channel_id: channel.id.to_string(),
        title,
        greeting: config.greeting.clone(),
        embedded: query.embedded.is_some(),
    };
    let html = match page.render() {
        Ok(html) => html,
        Err(e) => return ApiError::Internal(format!("the chat page: {e}")).into_response(),
    };
    let ancestors = std::iter::once("'self'".to_owned())
        .chain(config.allowed_origins.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
         img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors {ancestors}"
    );
    let mut response = axum::response::Html(html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(&policy).expect("origins are header-safe"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // frame-ancestors decides who may frame it, not X-Frame-Options.
    response.extensions_mut().insert(Embeddable);
    response
}

/// Marks a response that the sites a channel lists may frame.
#[derive(Clone, Copy)]
pub struct Embeddable;

/// The script a site includes to show the chat as a bubble in its pages.
async fn widget(
    State(state): State<SharedState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> ApiResult<Response> {
    web_channel(&state, &id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
            (
                header::HeaderName::from_static("cross-origin-resource-policy"),
                "cross-origin",
            ),
        ],
        include_str!("../assets/widget.js"),
    )
        .into_response())
}

#[derive(Serialize)]
struct Session {
    token: String,
    expires_at: DateTime<Utc>,
}

/// A new visitor: a session token for this channel.
async fn start_session(
    State(state): State<SharedState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> ApiResult<(StatusCode, Json<Session>)> {
    let (channel, config) = web_channel(&state, &id).await?;
    check_origin(&state, &headers, &config)?;
    state.visitor_limiter.check(ip, None)?;
    let visitor = Visitor {
        channel: channel.id,
        id: Uuid::new_v4(),
    };
    let expires_at = Utc::now() + chrono::Duration::days(SESSION_DAYS);
    Ok((
        StatusCode::CREATED,
        Json(Session {
            token: visitor.seal(&state, expires_at),
            expires_at,
        }),
    ))
}

#[derive(Serialize)]
struct VisitorMessages {
    messages: Vec<MessageDto>,
}

/// The visitor's own conversation, its latest messages oldest first.
async fn history(
    State(state): State<SharedState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    visitor: Visitor,
    headers: HeaderMap,
) -> ApiResult<Json<VisitorMessages>> {
    let (channel, config) = web_channel(&state, &id).await?;
    check_origin(&state, &headers, &config)?;
    same_channel(&visitor, &channel)?;
    let scope = TenantScope::for_channel(&channel);
    let Some(conversation) = state
        .store
        .find_channel_conversation(&scope, channel.id, &visitor.key())
        .await?
    else {
        return Ok(Json(VisitorMessages {
            messages: Vec::new(),
        }));
    };
    let messages = state
        .store
        .conversation_messages(&scope, conversation, HISTORY)
        .await?;
    Ok(Json(VisitorMessages {
        messages: messages.into_iter().map(MessageDto::for_visitor).collect(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sent {
    text: String,
    /// The page's id for the message: sending it again stores it once.
    client_id: Uuid,
}

/// A visitor's message, stored and answered as any channel's.
async fn send(
    State(state): State<SharedState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    ClientIp(ip): ClientIp,
    visitor: Visitor,
    headers: HeaderMap,
    body: Result<Json<Sent>, JsonRejection>,
) -> ApiResult<Response> {
    let (channel, config) = web_channel(&state, &id).await?;
    check_origin(&state, &headers, &config)?;
    same_channel(&visitor, &channel)?;
    let Json(sent) = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
        _ => ApiError::unprocessable("invalid_body", e.body_text()),
    })?;
    let length = sent.text.trim().chars().count();
    if length == 0 || length > MAX_TEXT_CHARS {
        return Err(ApiError::unprocessable(
            "validation_failed",
            format!("text must be 1 to {MAX_TEXT_CHARS} characters"),
        ));
    }
    state.visitor_limiter.check(ip, Some(visitor.id))?;
    let message = web::inbound(&visitor.key(), &sent.client_id.to_string(), sent.text);
    match steward_channels::receive(
        state.store.as_ref(),
        &channel,
        message,
        state.config.jobs.max_attempts,
    )
    .await?
    {
        Received::Stored(id) => {
            state.jobs_enqueued.notify_one();
            Ok((StatusCode::ACCEPTED, Json(json!({ "message_id": id }))).into_response())
        }
        Received::Duplicate => {
            Ok((StatusCode::OK, Json(json!({ "duplicate": true }))).into_response())
        }
        Received::Skipped(_) => Err(ApiError::Conflict {
            code: "chatbot_paused",
            message: "the assistant is not answering right now".into(),
        }),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rating {
    rating: steward_domain::Rating,
}

/// A visitor's 👍 or 👎 on a reply in their own conversation: one per reply,
/// a second replaces the first.
async fn rate(
    State(state): State<SharedState>,
    axum::extract::Path((id, message_id)): axum::extract::Path<(String, String)>,
    visitor: Visitor,
    headers: HeaderMap,
    body: Result<Json<Rating>, JsonRejection>,
) -> ApiResult<StatusCode> {
    let (channel, config) = web_channel(&state, &id).await?;
    check_origin(&state, &headers, &config)?;
    same_channel(&visitor, &channel)?;
    let Json(Rating { rating }) = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
        _ => ApiError::unprocessable("invalid_body", e.body_text()),
    })?;
    let message_id: MessageId = message_id.parse().map_err(|_| ApiError::NotFound)?;
    let scope = TenantScope::for_channel(&channel);
    // Only a reply in the visitor's own conversation: any other is not theirs.
    let theirs = state
        .store
        .find_channel_conversation(&scope, channel.id, &visitor.key())
        .await?;
    let message = state.store.message(&scope, message_id).await?;
    if Some(message.conversation_id) != theirs {
        return Err(ApiError::NotFound);
    }
    let rater = Identity::on_channel(channel.kind, channel.id, &visitor.key())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    state
        .store
        .rate_reply(&scope, message_id, &Sender::new(rater), rating, None)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct Resume {
    after: Option<Uuid>,
}

/// The visitor's conversation live: new messages, and replies as they are
/// written (without the tools they called).
async fn events(
    State(state): State<SharedState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    visitor: Visitor,
    headers: HeaderMap,
    query: Result<axum::extract::Query<Resume>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let (channel, config) = web_channel(&state, &id).await?;
    check_origin(&state, &headers, &config)?;
    same_channel(&visitor, &channel)?;
    let after = query
        .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?
        .after
        .map_or(Since::Now, |id| Since::After(id.into(), None));
    // A browser's EventSource reconnects with the last event's id.
    let since = match headers.get("last-event-id").map(|v| v.to_str()) {
        None => after,
        Some(value) => value
            .ok()
            .and_then(crate::routes::live::parse_last_event_id)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_last_event_id",
                    "Last-Event-ID must be an event id this stream sent, or 0",
                )
            })?,
    };
    let scope = TenantScope::for_channel(&channel);
    let conversation = state
        .store
        .find_channel_conversation(&scope, channel.id, &visitor.key())
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(
        follow(&state, scope, conversation, since, Audience::Visitor)
            .await?
            .into_response(),
    )
}

//! `/webhooks/{kind}/{channel_id}`: where providers deliver events. Each is
//! authenticated with the channel's own secret over the raw body, parsed,
//! stored with its `respond` job in one transaction, and only then
//! acknowledged; the model's reply comes later, through a `deliver` job.
//!
//! These routes are for providers, not API clients: their formats are the
//! providers' (see docs/channels.md), so they are not in the OpenAPI document.

use std::collections::HashMap;

use axum::Router;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use chrono::Utc;
use serde_json::json;
use steward_channels::{ChannelConfig, Inbound, Received, Unauthorized, inbound, verify};
use steward_domain::{ChannelId, ChannelKind};
use steward_store::Channel;

use crate::error::{ApiError, ApiResult};
use crate::extract::Path;
use crate::state::SharedState;

pub fn router(state: &SharedState) -> Router<SharedState> {
    Router::new()
        .route(
            "/webhooks/{kind}/{channel_id}",
            post(receive).get(verify_subscription),
        )
        .layer(DefaultBodyLimit::max(
            state.config.channels.webhook_body_limit_bytes,
        ))
}

/// The channel the URL names, if it exists and is of that kind. Anything
/// else is 404, so a URL reveals nothing about other channels.
async fn channel_for(state: &SharedState, kind: &str, id: &str) -> ApiResult<Channel> {
    let kind: ChannelKind = kind.parse().map_err(|_| ApiError::NotFound)?;
    let id: ChannelId = id.parse().map_err(|_| ApiError::NotFound)?;
    match state.store.find_channel(id).await? {
        Some(channel) if channel.kind == kind && kind != ChannelKind::Email => Ok(channel),
        _ => Err(ApiError::NotFound),
    }
}

fn open(state: &SharedState, channel: &Channel) -> ApiResult<ChannelConfig> {
    ChannelConfig::open(channel, &state.sealer)
        .map_err(|e| ApiError::Internal(format!("channel {}: {e}", channel.id)))
}

fn refused(kind: ChannelKind, why: Unauthorized) -> ApiError {
    metrics::counter!("steward_webhook_rejected_total", "channel" => kind.as_str(), "reason" => "signature")
        .increment(1);
    tracing::info!(channel_kind = %kind, reason = %why, "webhook refused");
    ApiError::Unauthorized {
        message: "the webhook signature is missing, wrong or too old",
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// WhatsApp's subscription handshake: echo `hub.challenge` only when the
/// verify token matches.
async fn verify_subscription(
    State(state): State<SharedState>,
    Path((kind, id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let channel = channel_for(&state, &kind, &id).await?;
    let ChannelConfig::Whatsapp(config) = open(&state, &channel)? else {
        return Err(ApiError::NotFound);
    };
    let token = query.get("hub.verify_token").map(String::as_str);
    let matches = query.get("hub.mode").map(String::as_str) == Some("subscribe")
        && verify::token(config.verify_token.expose(), token).is_ok();
    match (matches, query.get("hub.challenge")) {
        (true, Some(challenge)) => Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            challenge.clone(),
        )
            .into_response()),
        _ => Err(ApiError::Forbidden {
            code: "verification_failed",
            message: "hub.mode must be subscribe and hub.verify_token must match the channel's",
        }),
    }
}

async fn receive(
    State(state): State<SharedState>,
    Path((kind, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let channel = channel_for(&state, &kind, &id).await?;
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        _ => ApiError::bad_request("unreadable_body", rejection.body_text()),
    })?;
    let config = open(&state, &channel)?;
    let now = Utc::now();
    let checked = match &config {
        ChannelConfig::Whatsapp(c) => verify::whatsapp(
            c.app_secret.expose(),
            header(&headers, "x-hub-signature-256"),
            &body,
        ),
        ChannelConfig::Slack(c) => verify::slack(
            c.signing_secret.expose(),
            header(&headers, "x-slack-request-timestamp"),
            header(&headers, "x-slack-signature"),
            &body,
            now,
        ),
        ChannelConfig::Telegram(c) => verify::token(
            c.secret_token.expose(),
            header(&headers, "x-telegram-bot-api-secret-token"),
        ),
        ChannelConfig::Generic(c) => verify::generic(
            c.signing_secret.expose(),
            header(&headers, "x-steward-timestamp"),
            header(&headers, "x-steward-signature"),
            &body,
            now,
        ),
        ChannelConfig::Email(_) => return Err(ApiError::NotFound),
    };
    checked.map_err(|why| refused(channel.kind, why))?;

    if let Err(wait) = state.webhook_limiter.check(channel.id).await {
        metrics::counter!("steward_webhook_rejected_total", "channel" => channel.kind.as_str(), "reason" => "rate_limited")
            .increment(1);
        return Err(ApiError::RateLimited {
            retry_after_secs: wait.as_secs().max(1),
        });
    }

    let parsed = match &config {
        ChannelConfig::Whatsapp(c) => inbound::whatsapp(&body, &c.phone_number_id),
        ChannelConfig::Slack(_) => inbound::slack(&body),
        ChannelConfig::Telegram(_) => inbound::telegram(&body),
        ChannelConfig::Generic(_) => inbound::generic(&body),
        ChannelConfig::Email(_) => unreachable!("refused above"),
    }
    .map_err(|e| ApiError::bad_request("malformed_payload", e.to_string()))?;

    let messages = match parsed {
        Inbound::Challenge(challenge) => {
            return Ok(axum::Json(json!({ "challenge": challenge })).into_response());
        }
        Inbound::Ignored(why) => {
            return Ok(axum::Json(json!({ "ok": true, "ignored": why })).into_response());
        }
        Inbound::Messages(messages) => messages,
    };
    let (mut stored, mut duplicates) = (0, 0);
    for message in messages {
        // A store failure answers 503, so the provider retries; what was
        // stored before it is found as a duplicate then.
        match steward_channels::receive(
            state.store.as_ref(),
            &channel,
            message,
            state.config.jobs.max_attempts,
        )
        .await?
        {
            Received::Stored(_) => stored += 1,
            Received::Duplicate => duplicates += 1,
            Received::Skipped(why) => {
                tracing::info!(channel = %channel.id, why, "inbound message skipped")
            }
        }
    }
    if stored > 0 {
        state.jobs_enqueued.notify_one();
    }
    Ok((
        StatusCode::OK,
        axum::Json(json!({ "ok": true, "stored": stored, "duplicates": duplicates })),
    )
        .into_response())
}

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
use steward_channels::webhook::{self, Subscription};
use steward_channels::{ChannelConfig, Inbound, Unauthorized};
use steward_domain::jobs::PostArgs;
use steward_domain::{ChannelId, ChannelKind};
use steward_store::{Channel, NewJob};

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

/// The channel the URL names, if it exists, is of that kind and takes
/// webhooks. Anything else is 404, so a URL reveals nothing about other
/// channels.
async fn channel_for(state: &SharedState, kind: &str, id: &str) -> ApiResult<Channel> {
    let kind: ChannelKind = kind.parse().map_err(|_| ApiError::NotFound)?;
    let id: ChannelId = id.parse().map_err(|_| ApiError::NotFound)?;
    match state.store.find_channel(id).await? {
        Some(channel) if channel.kind == kind && webhook::takes_webhooks(kind) => Ok(channel),
        _ => Err(ApiError::NotFound),
    }
}

fn open(state: &SharedState, channel: &Channel) -> ApiResult<ChannelConfig> {
    ChannelConfig::open(channel, &state.sealer)
        .map_err(|e| ApiError::Internal(format!("channel {}: {e}", channel.id)))
}

fn refused(kind: ChannelKind, why: Unauthorized) -> ApiError {
    if let Unauthorized::Unverifiable(detail) = why {
        // Not the caller's fault: answered 503, so the provider sends it again.
        return ApiError::Unavailable(detail);
    }
    metrics::counter!("steward_webhook_rejected_total", "channel" => kind.as_str(), "reason" => "signature")
        .increment(1);
    tracing::info!(channel_kind = %kind, reason = %why, "webhook refused");
    ApiError::Unauthorized {
        message: "the webhook signature is missing, wrong or too old",
    }
}

/// A provider's check that the URL is its channel's (a subscription handshake).
async fn verify_subscription(
    State(state): State<SharedState>,
    Path((kind, id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let channel = channel_for(&state, &kind, &id).await?;
    match webhook::subscribe(&open(&state, &channel)?, &query) {
        Subscription::Confirmed(challenge) => Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            challenge,
        )
            .into_response()),
        Subscription::Refused => Err(ApiError::Forbidden {
            code: "verification_failed",
            message: "the verification request's mode or token is not the channel's",
        }),
        Subscription::NotOffered => Err(ApiError::NotFound),
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
    state
        .webhooks
        .verify(&config, &headers, &body, Utc::now())
        .await
        .map_err(|why| refused(channel.kind, why))?;

    if let Err(wait) = state.webhook_limiter.check(channel.id).await {
        metrics::counter!("steward_webhook_rejected_total", "channel" => channel.kind.as_str(), "reason" => "rate_limited")
            .increment(1);
        return Err(ApiError::RateLimited {
            retry_after_secs: wait.as_secs().max(1),
        });
    }

    let parsed = webhook::parse(&config, &body)
        .map_err(|e| ApiError::bad_request("malformed_payload", e.to_string()))?;

    let events = match parsed {
        Inbound::Challenge(challenge) => {
            return Ok(axum::Json(json!({ "challenge": challenge })).into_response());
        }
        Inbound::Ignored(why) => {
            return Ok(axum::Json(json!({ "ok": true, "ignored": why })).into_response());
        }
        Inbound::Greet { key, route, text } => {
            // A job, once per event: the provider's retry finds it enqueued.
            let post = PostArgs {
                key: format!("greet:{}:{key}", channel.id),
                channel_id: channel.id,
                to: route.to_meta().to_string(),
                text,
            };
            let job = NewJob::of(&post, state.config.jobs.max_attempts).for_org(channel.org_id);
            state.store.enqueue(job).await?;
            state.jobs_enqueued.notify_one();
            return Ok(axum::Json(json!({ "ok": true, "greeting": true })).into_response());
        }
        Inbound::Messages(messages) => (messages, Vec::new()),
        Inbound::Events {
            messages,
            reactions,
        } => (messages, reactions),
    };
    let answering = events.0.last().map(|m| m.route.clone());
    // A store failure answers 503, so the provider retries.
    let max_attempts = state.config.jobs.max_attempts;
    let taken =
        steward_channels::take(state.store.as_ref(), &channel, events, max_attempts).await?;
    if taken.stored > 0 {
        state.jobs_enqueued.notify_one();
        if let Some(route) = answering {
            // Best effort, after the answer: "typing…" where the provider has it.
            let sender = state.channels.clone();
            tokio::spawn(async move {
                if let Err(e) = sender.typing(&config, &route).await {
                    tracing::debug!(error = %e, "no typing indicator");
                }
            });
        }
    }
    Ok((
        StatusCode::OK,
        axum::Json(json!({
            "ok": true,
            "stored": taken.stored,
            "duplicates": taken.duplicates,
            "feedback": taken.rated
        })),
    )
        .into_response())
}

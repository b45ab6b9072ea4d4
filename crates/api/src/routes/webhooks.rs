//! `/webhooks/{kind}/{channel_id}`: where providers deliver events. Each is
//! authenticated with the channel's own secret over the raw body, parsed,
//! stored with its `respond` job in one transaction, and only then
//! acknowledged; the model's reply comes later, through a `deliver` job.
//!
//! These routes are for providers, not API clients: their formats are the
//! providers' (see docs/channels.md), so they are not in the OpenAPI document.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
use steward_store::{Channel, Conflict, NewJob, StoreError};

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

/// A channel as read for webhooks, its secrets opened.
pub struct OpenChannel {
    channel: Channel,
    config: ChannelConfig,
}

/// Channels opened for webhooks, kept between requests, so that a webhook
/// neither reads its channel nor opens its secrets each time. A kept
/// channel may be stale (its secrets replaced, or it deleted, by any
/// process), so it is trusted only where staleness is caught: a message is
/// stored only while its channel still has the secrets it was checked with
/// (the storing transaction checks: `NewMessage::channel_secrets`), while a
/// signature it refuses, and any other effect (a greeting, a rating), are
/// checked again against the channel as stored.
#[derive(Default)]
pub struct OpenChannels(Mutex<HashMap<ChannelId, Arc<OpenChannel>>>);

impl OpenChannels {
    /// At most this many are kept; past it, all are dropped (each is one
    /// read to open again).
    const MOST: usize = 10_000;

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<ChannelId, Arc<OpenChannel>>> {
        self.0
            .lock()
            .expect("the kept channels' lock is never poisoned")
    }

    fn kept(&self, id: ChannelId, kind: ChannelKind) -> Option<Arc<OpenChannel>> {
        self.map()
            .get(&id)
            .filter(|open| open.channel.kind == kind)
            .cloned()
    }

    fn keep(&self, open: Arc<OpenChannel>) {
        let mut kept = self.map();
        if kept.len() >= Self::MOST {
            kept.clear();
        }
        kept.insert(open.channel.id, open);
    }

    fn forget(&self, id: ChannelId) {
        self.map().remove(&id);
    }
}

/// The kind and id a webhook URL names; anything unparseable is 404.
fn named(kind: &str, id: &str) -> ApiResult<(ChannelKind, ChannelId)> {
    let kind: ChannelKind = kind.parse().map_err(|_| ApiError::NotFound)?;
    let id: ChannelId = id.parse().map_err(|_| ApiError::NotFound)?;
    Ok((kind, id))
}

/// The channel the URL names as stored now, if it exists, is of that kind
/// and takes webhooks, opened and kept for the next webhooks. Anything else
/// is 404, so a URL reveals nothing about other channels.
async fn read_channel(
    state: &SharedState,
    kind: ChannelKind,
    id: ChannelId,
) -> ApiResult<Arc<OpenChannel>> {
    let channel = match state.store.find_channel(id).await? {
        Some(channel) if channel.kind == kind && webhook::takes_webhooks(kind) => channel,
        _ => {
            state.open_channels.forget(id);
            return Err(ApiError::NotFound);
        }
    };
    let config = ChannelConfig::open(&channel, &state.sealer)
        .map_err(|e| ApiError::Internal(format!("channel {}: {e}", channel.id)))?;
    let open = Arc::new(OpenChannel { channel, config });
    state.open_channels.keep(open.clone());
    Ok(open)
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
    let (kind, id) = named(&kind, &id)?;
    let open = read_channel(&state, kind, id).await?;
    match webhook::subscribe(&open.config, &query) {
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
    let (kind, id) = named(&kind, &id)?;
    // With the channel kept from an earlier webhook when there is one; read
    // as stored now otherwise, and again when the kept one may be stale.
    // An unknown channel is 404 before its body is looked at.
    let (mut open, mut fresh) = match state.open_channels.kept(id, kind) {
        Some(open) => (open, false),
        None => (read_channel(&state, kind, id).await?, true),
    };
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        _ => ApiError::bad_request("unreadable_body", rejection.body_text()),
    })?;
    let mut webhook = Webhook {
        state: &state,
        headers: &headers,
        body: &body,
        limited: false,
    };
    loop {
        if let Some(answer) = webhook.take(&open, fresh).await? {
            return Ok(answer);
        }
        if fresh {
            return Err(ApiError::Unavailable(format!(
                "channel {id} changed while a webhook was checked"
            )));
        }
        (open, fresh) = (read_channel(&state, kind, id).await?, true);
    }
}

/// One webhook request, checked and taken with one reading of its channel.
struct Webhook<'a> {
    state: &'a SharedState,
    headers: &'a HeaderMap,
    body: &'a Bytes,
    /// Counted against the channel's rate limit already.
    limited: bool,
}

impl Webhook<'_> {
    /// The answer, or None when the channel as read may be stale (not
    /// `fresh`) and decides something (a refused signature, an effect
    /// other than a message), or the store found it changed.
    async fn take(&mut self, open: &Arc<OpenChannel>, fresh: bool) -> ApiResult<Option<Response>> {
        let state = self.state;
        let (channel, config) = (&open.channel, &open.config);
        if let Err(why) = state
            .webhooks
            .verify(config, self.headers, self.body, Utc::now())
            .await
        {
            if !fresh && !matches!(why, Unauthorized::Unverifiable(_)) {
                return Ok(None);
            }
            return Err(refused(channel.kind, why));
        }

        if !self.limited {
            self.limited = true;
            if let Err(wait) = state.webhook_limiter.check(channel.id).await {
                metrics::counter!("steward_webhook_rejected_total", "channel" => channel.kind.as_str(), "reason" => "rate_limited")
                    .increment(1);
                return Err(ApiError::RateLimited {
                    retry_after_secs: wait.as_secs().max(1),
                });
            }
        }

        let parsed = webhook::parse(config, self.body)
            .map_err(|e| ApiError::bad_request("malformed_payload", e.to_string()))?;

        let events = match parsed {
            Inbound::Challenge(challenge) => {
                return Ok(Some(
                    axum::Json(json!({ "challenge": challenge })).into_response(),
                ));
            }
            Inbound::Ignored(why) => {
                return Ok(Some(
                    axum::Json(json!({ "ok": true, "ignored": why })).into_response(),
                ));
            }
            Inbound::Greet { .. } if !fresh => return Ok(None),
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
                return Ok(Some(
                    axum::Json(json!({ "ok": true, "greeting": true })).into_response(),
                ));
            }
            Inbound::Messages(messages) => (messages, Vec::new()),
            Inbound::Events { reactions, .. } if !fresh && !reactions.is_empty() => {
                return Ok(None);
            }
            Inbound::Events {
                messages,
                reactions,
            } => (messages, reactions),
        };
        let answering = events.0.last().map(|m| m.route.clone());
        // A store failure answers 503, so the provider retries.
        let max_attempts = state.config.jobs.max_attempts;
        let taken =
            match steward_channels::take(state.store.as_ref(), channel, events, max_attempts).await
            {
                Ok(taken) => taken,
                Err(StoreError::Conflict(Conflict::ChannelChanged)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
        if taken.stored > 0 {
            state.jobs_enqueued.notify_one();
            // Best effort, after the answer: "typing…" where the provider has
            // it. Elsewhere no task is spawned: one per webhook costs more
            // than nothing.
            if let Some(route) = answering
                && steward_channels::Sender::shows_typing(&open.config)
            {
                let (sender, open) = (state.channels.clone(), open.clone());
                tokio::spawn(async move {
                    if let Err(e) = sender.typing(&open.config, &route).await {
                        tracing::debug!(error = %e, "no typing indicator");
                    }
                });
            }
        }
        Ok(Some(
            (
                StatusCode::OK,
                axum::Json(json!({
                    "ok": true,
                    "stored": taken.stored,
                    "duplicates": taken.duplicates,
                    "feedback": taken.rated
                })),
            )
                .into_response(),
        ))
    }
}

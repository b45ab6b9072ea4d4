//! A chatbot's channels: connect, list with health, remove (owners and admins).
//! Secrets sent in `config` are sealed at rest and never shown again.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use steward_channels::{ChannelConfig, ConfigureError};
use steward_domain::{ChannelKind, ChannelStatus};
use steward_store::Channel;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::idempotency;
use crate::state::{AppState, SharedState};

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(list_channels, create_channel))
        .routes(routes!(list_all_channels))
        .routes(routes!(delete_channel))
}

#[derive(Serialize, ToSchema)]
pub struct ChannelHealthDto {
    status: ChannelStatus,
    last_inbound_at: Option<DateTime<Utc>>,
    last_outbound_at: Option<DateTime<Utc>>,
    /// Errors talking to the provider in the current hour-long window.
    recent_errors: i64,
    last_error: Option<String>,
    last_error_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct ChannelDto {
    id: uuid::Uuid,
    chatbot_id: uuid::Uuid,
    kind: ChannelKind,
    name: String,
    /// Paste this into the provider's console. Absolute when `http.public_url`
    /// is configured; none for email, whose mailbox Steward reads itself, and
    /// for Slack in Socket Mode, which Steward connects to itself.
    webhook_url: Option<String>,
    /// A web chat's page, for visitors (absolute when `http.public_url` is set).
    chat_url: Option<String>,
    /// A web chat's widget: this one line on a page of a listed site shows
    /// the chat as a bubble (needs `http.public_url`).
    snippet: Option<String>,
    /// The configuration without its secrets.
    #[schema(value_type = Object)]
    settings: Value,
    /// The names of the secrets stored (sealed; never shown).
    secrets: Vec<&'static str>,
    health: ChannelHealthDto,
    created_at: DateTime<Utc>,
}

impl ChannelDto {
    pub fn new(channel: Channel, state: &AppState) -> Self {
        let health = &channel.health;
        let public = state
            .config
            .http
            .public_url
            .as_deref()
            .map(|b| b.trim_end_matches('/'));
        let absolute = |path: String| match public {
            Some(base) => format!("{base}{path}"),
            None => path,
        };
        let webhook_url = steward_channels::webhook_path(&channel).map(absolute);
        let is_web = channel.kind == ChannelKind::Web;
        let chat_url = is_web.then(|| absolute(format!("/chat/{}", channel.id)));
        let snippet = (is_web && public.is_some()).then(|| {
            format!(
                r#"<script src="{}" async></script>"#,
                absolute(format!("/chat/{}/widget.js", channel.id))
            )
        });
        Self {
            id: channel.id.as_uuid(),
            chatbot_id: channel.chatbot_id.as_uuid(),
            kind: channel.kind,
            webhook_url,
            chat_url,
            snippet,
            secrets: ChannelConfig::secret_fields(channel.kind),
            health: ChannelHealthDto {
                status: health.status(),
                last_inbound_at: health.last_inbound_at,
                last_outbound_at: health.last_outbound_at,
                recent_errors: health.recent_errors(Utc::now()),
                last_error: health.last_error.clone(),
                last_error_at: health.last_error_at,
            },
            name: channel.name,
            settings: channel.settings,
            created_at: channel.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ChannelList {
    channels: Vec<ChannelDto>,
}

impl ChannelList {
    fn of(channels: Vec<Channel>, state: &AppState) -> Self {
        Self {
            channels: channels
                .into_iter()
                .map(|c| ChannelDto::new(c, state))
                .collect(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChannel {
    kind: ChannelKind,
    /// 1 to 100 characters, unique on the chatbot.
    #[schema(schema_with = crate::contract::chatbot_name)]
    name: String,
    /// The kind's settings and secrets; see docs/channels.md.
    #[schema(value_type = Object)]
    config: Value,
}

/// A chatbot's channels with their health, oldest first.
#[utoipa::path(get, path = "/chatbots/{id}/channels", tag = "channels", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = ChannelList), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_channels(
    State(state): State<SharedState>,
    auth: Auth,
    Path(id): Path<uuid::Uuid>,
) -> ApiResult<axum::Json<ChannelList>> {
    auth.require_admin()?;
    let scope = auth.0.scope();
    // An unknown chatbot is 404, not an empty list.
    state.store.chatbot(&scope, id.into()).await?;
    let channels = state.store.list_channels(&scope, Some(id.into())).await?;
    Ok(axum::Json(ChannelList::of(channels, &state)))
}

/// Every channel of the organization with its health, by chatbot (owners
/// and admins).
#[utoipa::path(get, path = "/channels", tag = "channels", security(("bearer" = [])),
    responses((status = 200, body = ChannelList), (status = 403, body = ErrorBody)))]
async fn list_all_channels(
    State(state): State<SharedState>,
    auth: Auth,
) -> ApiResult<axum::Json<ChannelList>> {
    auth.require_admin()?;
    let channels = state.store.list_channels(&auth.0.scope(), None).await?;
    Ok(axum::Json(ChannelList::of(channels, &state)))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CheckParams {
    /// Ask the provider whether the configuration works before saving it
    /// (Slack `auth.test`, Telegram `getMe`, the WhatsApp phone number, an
    /// IMAP sign-in); default true (nothing is asked when the operator
    /// turned `channels.check_on_save` off).
    check: Option<bool>,
}

/// Connect a chatbot to a channel (owners and admins). The provider is
/// asked first whether the configuration works, unless `check=false`.
#[utoipa::path(post, path = "/chatbots/{id}/channels", tag = "channels", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), CheckParams), request_body = CreateChannel,
    responses((status = 201, body = ChannelDto), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "the name is taken on this chatbot", body = ErrorBody),
        (status = 422, description = "not a valid configuration (`validation_failed`), or the provider did not accept it (`channel_check_failed`, saying what it said)", body = ErrorBody)))]
async fn create_channel(
    State(state): State<SharedState>,
    auth: Auth,
    Path(id): Path<uuid::Uuid>,
    Query(params): Query<CheckParams>,
    Json(body): Json<CreateChannel>,
) -> ApiResult<(StatusCode, axum::Json<ChannelDto>)> {
    auth.require_admin()?;
    let answering = state.clone();
    idempotency::answer_from(StatusCode::CREATED, move |c: &Channel| {
        ChannelDto::new(c.clone(), &answering)
    });
    let asked = state.config.channels.check_on_save && params.check.unwrap_or(true);
    let check = asked.then_some(&state.channels);
    let channel = steward_channels::configure(
        state.store.as_ref(),
        &state.sealer,
        check,
        &auth.0.scope(),
        id.into(),
        body.kind,
        &body.name,
        body.config,
    )
    .await
    .map_err(|e| match e {
        ConfigureError::Invalid(message) => ApiError::unprocessable("validation_failed", message),
        ConfigureError::Refused(message) => {
            ApiError::unprocessable("channel_check_failed", message)
        }
        ConfigureError::Store(e) => e.into(),
    })?;
    Ok((
        StatusCode::CREATED,
        axum::Json(ChannelDto::new(channel, &state)),
    ))
}

/// Remove a channel. Its conversations stay in the history.
#[utoipa::path(delete, path = "/chatbots/{id}/channels/{channel_id}", tag = "channels", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), ("channel_id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_channel(
    State(state): State<SharedState>,
    auth: Auth,
    Path((id, channel_id)): Path<(uuid::Uuid, uuid::Uuid)>,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    state
        .store
        .delete_channel(&auth.0.scope(), id.into(), channel_id.into())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

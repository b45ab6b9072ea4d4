//! The integration catalogue, and which integrations the organization enabled.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use steward_domain::ChannelKind;
use steward_store::{IntegrationState, StoreError};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Json, Path};
use crate::idempotency;
use crate::state::SharedState;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(available))
        .routes(routes!(enable))
        .routes(routes!(disable))
}

#[derive(Serialize, ToSchema)]
pub struct IntegrationDto {
    /// A stable slug, e.g. `lead-capture`.
    id: String,
    name: String,
    description: String,
    enabled: bool,
    /// The organization's settings; shown to owners and admins only.
    #[schema(value_type = Option<Object>)]
    config: Option<Value>,
    enabled_at: Option<DateTime<Utc>>,
}

impl IntegrationDto {
    fn new(state: IntegrationState, show_config: bool) -> Self {
        Self {
            id: state.integration.id,
            name: state.integration.name,
            description: state.integration.description,
            enabled: state.enabled,
            config: state.config.filter(|_| show_config),
            enabled_at: state.enabled_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct IntegrationList {
    integrations: Vec<IntegrationDto>,
}

/// Every integration Steward offers, with whether this organization enabled it.
#[utoipa::path(get, path = "/integrations/available", tag = "integrations", security(("bearer" = [])),
    responses((status = 200, body = IntegrationList)))]
async fn available(
    State(state): State<SharedState>,
    auth: Auth,
) -> ApiResult<axum::Json<IntegrationList>> {
    let show_config = auth.0.role().can_administer();
    let all = state.store.integrations(&auth.0.scope()).await?;
    Ok(axum::Json(IntegrationList {
        integrations: all
            .into_iter()
            .map(|i| IntegrationDto::new(i, show_config))
            .collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnableIntegration {
    #[schema(schema_with = crate::contract::integration_id)]
    integration_id: String,
    /// The integration's settings: `pricing-calculator`'s price list;
    /// `lead-capture`'s and `contact-owner`'s `mail_to` and `slack` (who is
    /// told); default `{}`.
    config: Option<Value>,
}

/// Enable an integration, or change its settings (owners and admins).
#[utoipa::path(post, path = "/integrations/enable", tag = "integrations", security(("bearer" = [])),
    request_body = EnableIntegration,
    responses((status = 200, body = IntegrationDto), (status = 403, body = ErrorBody), (status = 404, description = "no such integration", body = ErrorBody), (status = 409, description = "settings name a Slack channel the organization does not have (`unknown_channel`) or ask for mail without a mail server (`mail_not_configured`)", body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn enable(
    State(state): State<SharedState>,
    auth: Auth,
    Json(body): Json<EnableIntegration>,
) -> ApiResult<axum::Json<IntegrationDto>> {
    auth.require_admin()?;
    let config = body
        .config
        .unwrap_or_else(|| Value::Object(Default::default()));
    // The integration's own rules (an unknown integration is the store's
    // 404), then what they ask of the organization and the operator.
    if steward_tools::builtin::SERVERS.contains(&body.integration_id.as_str()) {
        let needs = steward_tools::builtin::check_settings(&body.integration_id, &config).map_err(
            |why| ApiError::unprocessable("validation_failed", format!("config: {why}")),
        )?;
        if needs.mail && !state.config.mail.is_configured() {
            return Err(ApiError::Conflict {
                code: "mail_not_configured",
                message: "config.mail_to: this Steward has no mail server (the operator sets mail.smtp_host)".into(),
            });
        }
        if let Some(channel) = needs.slack_channel {
            let slack = match state.store.channel(&auth.0.scope(), channel).await {
                Ok(channel) => channel.kind == ChannelKind::Slack,
                Err(StoreError::NotFound) => false,
                Err(error) => return Err(error.into()),
            };
            if !slack {
                return Err(ApiError::Conflict {
                    code: "unknown_channel",
                    message:
                        "config.slack.channel_id: not one of the organization's Slack channels"
                            .into(),
                });
            }
        }
    }
    idempotency::answer_from(StatusCode::OK, |s: &IntegrationState| {
        IntegrationDto::new(s.clone(), true)
    });
    let enabled = state
        .store
        .enable_integration(&auth.0.scope(), &body.integration_id, config)
        .await?;
    Ok(axum::Json(IntegrationDto::new(enabled, true)))
}

/// Disable an integration (owners and admins).
#[utoipa::path(delete, path = "/integrations/{id}", tag = "integrations", security(("bearer" = [])),
    params(("id" = String, Path, description = "the integration's slug")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn disable(
    State(state): State<SharedState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    state
        .store
        .disable_integration(&auth.0.scope(), &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

//! Health, readiness, metrics and the OpenAPI document: unauthenticated,
//! except the per-organization metrics (the operator's token).

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::state::SharedState;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics))
        .routes(routes!(organization_metrics))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/health", tag = "ops", responses((status = 200, body = Health)))]
async fn health() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    status: &'static str,
    /// Each dependency: `ok` or `failed`.
    checks: std::collections::BTreeMap<&'static str, &'static str>,
    /// How long the oldest runnable job has waited, in seconds: the worker
    /// tier's backlog. Informative; it does not make this instance unready.
    #[serde(skip_serializing_if = "Option::is_none")]
    queue_backlog_seconds: Option<f64>,
    /// Present when not ready: `{code: "not_ready", message}` naming the failed checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<crate::error::ErrorDetail>,
}

/// Whether this instance can serve: its dependencies answer.
#[utoipa::path(get, path = "/health/ready", tag = "ops",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
async fn ready(State(state): State<SharedState>) -> Response {
    let database =
        match tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping()).await {
            Ok(Ok(())) => "ok",
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: database check failed");
                "failed"
            }
            Err(_) => {
                tracing::warn!("readiness: database check timed out");
                "failed"
            }
        };
    let checks = std::collections::BTreeMap::from([("database", database)]);
    let failed: Vec<_> = checks
        .iter()
        .filter(|(_, v)| **v != "ok")
        .map(|(k, _)| *k)
        .collect();
    let queue_backlog_seconds = if database == "ok" {
        let now = steward_store::now();
        state.store.queue_stats().await.ok().map(|stats| {
            stats
                .iter()
                .filter(|s| {
                    matches!(
                        s.state,
                        steward_domain::JobState::Queued | steward_domain::JobState::Failed
                    )
                })
                .filter_map(|s| s.oldest_run_at)
                .min()
                .map_or(0.0, |oldest| {
                    (now - oldest).num_milliseconds().max(0) as f64 / 1000.0
                })
        })
    } else {
        None
    };
    if failed.is_empty() {
        return (
            StatusCode::OK,
            axum::Json(Readiness {
                status: "ready",
                checks,
                queue_backlog_seconds,
                error: None,
            }),
        )
            .into_response();
    }
    let error = crate::error::ErrorDetail {
        code: "not_ready".into(),
        message: format!("failed checks: {}", failed.join(", ")),
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(Readiness {
            status: "unavailable",
            checks,
            queue_backlog_seconds,
            error: Some(error),
        }),
    )
        .into_response()
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, content_type = "text/plain", body = String)))]
async fn metrics(state: State<SharedState>) -> impl IntoResponse {
    crate::metrics::render(state).await
}

/// Per-organization activity and usage in Prometheus text, for the
/// operator's Business dashboard: only to a scraper presenting
/// `http.metrics_token`. A request without a bearer token gets 401; anyone
/// presenting another (a tenant's token included), and everyone when no
/// token is configured, gets 404.
#[utoipa::path(get, path = "/metrics/organizations", tag = "ops", security(("metrics_token" = [])),
    responses((status = 200, content_type = "text/plain", body = String), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn organization_metrics(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    use subtle::ConstantTimeEq;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(presented) = presented else {
        return ApiError::Unauthorized {
            message: "expected Authorization: Bearer <http.metrics_token>",
        }
        .into_response();
    };
    let allowed = state
        .config
        .http
        .metrics_token
        .as_ref()
        .is_some_and(|token| bool::from(token.expose().as_bytes().ct_eq(presented.as_bytes())));
    if !allowed {
        return ApiError::NotFound.into_response();
    }
    match crate::metrics::render_organizations(&state).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The OpenAPI document, serialized once at start.
#[derive(Clone)]
pub struct OpenApiJson(pub Arc<String>);

/// This API's OpenAPI 3.1 description.
#[utoipa::path(get, path = "/openapi.json", tag = "ops",
    responses((status = 200, content_type = "application/json", body = Object)))]
pub async fn openapi_json(Extension(doc): Extension<OpenApiJson>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.0.as_str().to_owned(),
    )
}

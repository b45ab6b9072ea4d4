//! The router of `steward mcp`: Steward's own tools over MCP at `/mcp`, for
//! other agents on the private network, served on a listener of its own
//! (never the API's). Each request carries an API key (or a sign-in token)
//! of an organization's owner or admin; the tools act for that organization.

use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use steward_tools::serve::Caller;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::auth::authenticate;
use crate::error::ApiError;
use crate::state::SharedState;

pub fn router(state: SharedState) -> Router {
    let config = &state.config;
    let tools = steward_tools::serve::service(
        state.store.clone(),
        config.jobs.max_attempts,
        config.tools.mcp_allowed_hosts.clone(),
    );
    Router::new()
        .nest_service("/mcp", tools)
        .layer(middleware::from_fn_with_state(state.clone(), caller))
        // For the orchestrator's probes: says nothing of any organization.
        .route("/health", get(|| async { "ok" }))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(config.http.request_timeout_secs),
        ))
        .layer(TraceLayer::new_for_http())
}

/// Finds the organization a request acts for: an owner's or admin's key.
async fn caller(State(state): State<SharedState>, mut request: Request, next: Next) -> Response {
    let principal = match authenticate(&state, request.headers()).await {
        Ok(Some(principal)) => principal,
        Ok(None) => {
            return ApiError::Unauthorized {
                message: "send an organization's API key: Authorization: Bearer stw_...",
            }
            .into_response();
        }
        Err(error) => return error.into_response(),
    };
    if !principal.role().can_administer() || principal.password_change_required() {
        return ApiError::forbidden().into_response();
    }
    request.extensions_mut().insert(Caller(principal.scope()));
    next.run(request).await
}

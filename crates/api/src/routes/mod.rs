//! Routers per area. Each handler's `#[utoipa::path]` feeds the OpenAPI
//! document, so the document covers exactly the routes that exist.

mod api_keys;
pub(crate) mod auth;
mod channels;
mod chatbots;
mod conversations;
mod feedback;
mod insights;
mod integrations;
mod jobs;
mod knowledge;
pub(crate) mod live;
pub mod ops;
mod organizations;
mod people;
mod skills;
pub(crate) mod sso;
mod tools;
pub mod webhooks;

use utoipa_axum::router::OpenApiRouter;

use crate::error::{ApiError, ApiResult};
use crate::state::SharedState;

/// Everything under `/api/v1`.
pub fn api(state: &SharedState) -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .merge(auth::router())
        .merge(api_keys::router())
        .merge(organizations::router())
        .merge(sso::router())
        .merge(chatbots::router())
        .merge(channels::router())
        .merge(conversations::router())
        .merge(people::router())
        .merge(feedback::router())
        .merge(skills::router())
        .merge(insights::router())
        .merge(integrations::router())
        .merge(jobs::router())
        .merge(live::router())
        .merge(tools::router())
        .merge(knowledge::router(state))
}

pub const DEFAULT_PAGE: u32 = 50;
/// Far beyond any organization's rows, and within every integer type on the way.
pub const MAX_OFFSET: u64 = 1_000_000_000;
pub const MAX_PAGE: u32 = 200;

/// `limit` for list endpoints: 1 to 200, default 50.
pub fn page_limit(limit: Option<u32>) -> ApiResult<u32> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be between 1 and {MAX_PAGE}"),
        )),
    }
}

/// A page read as `limit + 1` items, newest first, cut to `limit`; and the
/// `before` cursor of the next page (its last item's id), none on the last.
/// A cursor the store could not find (`NotFound`) is `unknown_cursor`,
/// named by `what` ("a conversation").
pub fn page_before<T, Id>(
    read: Result<Vec<T>, steward_store::StoreError>,
    limit: u32,
    what: &str,
    id: impl Fn(&T) -> Id,
) -> ApiResult<(Vec<T>, Option<Id>)> {
    let mut items = match read {
        Err(steward_store::StoreError::NotFound) => {
            return Err(ApiError::Conflict {
                code: "unknown_cursor",
                message: format!("before is not {what} of this organization"),
            });
        }
        found => found?,
    };
    let next = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(id)
    } else {
        None
    };
    Ok((items, next))
}

/// `offset` for list endpoints: 0 to [`MAX_OFFSET`], default 0.
pub fn page_offset(offset: Option<u64>) -> ApiResult<u64> {
    match offset.unwrap_or(0) {
        n if n <= MAX_OFFSET => Ok(n),
        _ => Err(ApiError::bad_request(
            "invalid_query",
            format!("offset must be at most {MAX_OFFSET}"),
        )),
    }
}

//! API keys for machine access: shown once at creation, stored hashed.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use steward_domain::{ApiKeyId, Role, UserId};
use steward_store::{Actor, ApiKey, NewApiKey};
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
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyDto {
    id: ApiKeyId,
    name: String,
    /// The key's first characters, to tell keys apart.
    prefix: String,
    role: Role,
    /// The member the key belongs to: it never acts beyond their role, and
    /// is revoked when they leave.
    created_by: Option<UserId>,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiKey> for ApiKeyDto {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            role: k.role,
            created_by: k.created_by,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyList {
    api_keys: Vec<ApiKeyDto>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// 1 to 100 characters.
    #[schema(schema_with = crate::contract::chatbot_name)]
    name: String,
    /// admin (default when a person signed in makes it), member or advisor;
    /// never above the maker's own role. Keys never carry the owner role, and
    /// a key may make keys of member or advisor only (default: member).
    #[schema(schema_with = crate::contract::optional_key_role)]
    role: Option<Role>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedApiKey {
    api_key: ApiKeyDto,
    /// The secret, shown this once. Send as `Authorization: Bearer <key>`.
    key: String,
}

/// The organization's API keys, revoked ones included.
#[utoipa::path(get, path = "/api-keys", tag = "api keys", security(("bearer" = [])),
    responses((status = 200, body = ApiKeyList), (status = 403, body = ErrorBody)))]
async fn list_keys(
    State(state): State<SharedState>,
    auth: Auth,
) -> ApiResult<axum::Json<ApiKeyList>> {
    auth.require_admin()?;
    let keys = state.store.list_api_keys(&auth.0.scope()).await?;
    Ok(axum::Json(ApiKeyList {
        api_keys: keys.into_iter().map(Into::into).collect(),
    }))
}

/// Create a key; its secret is in this response only.
#[utoipa::path(post, path = "/api-keys", tag = "api keys", security(("bearer" = [])),
    request_body = CreateApiKey,
    responses((status = 201, body = CreatedApiKey), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_key(
    State(state): State<SharedState>,
    auth: Auth,
    Json(body): Json<CreateApiKey>,
) -> ApiResult<(StatusCode, axum::Json<CreatedApiKey>)> {
    auth.require_admin()?;
    let name = steward_domain::ChatbotName::parse("name", body.name)?.into_inner();
    // The key belongs to the person behind the caller: the signed-in member,
    // or the member who made the calling key.
    let (maker, made_by_key) = match auth.0.actor() {
        Actor::User(user) => (Some(user), false),
        Actor::ApiKey(key) => {
            let keys = state.store.list_api_keys(&auth.0.scope()).await?;
            let maker = keys
                .into_iter()
                .find(|k| k.id == key)
                .and_then(|k| k.created_by);
            (maker, true)
        }
        _ => (None, false),
    };
    let role = body.role.unwrap_or(if made_by_key {
        Role::Member
    } else {
        Role::Admin
    });
    if role == Role::Owner {
        return Err(ApiError::unprocessable(
            "validation_failed",
            "role: API keys may be admin, member or advisor",
        ));
    }
    if role.outranks(auth.0.role()) {
        return Err(ApiError::Forbidden {
            code: "forbidden",
            message: "a key cannot have a higher role than its maker",
        });
    }
    if made_by_key && role == Role::Admin {
        return Err(ApiError::Forbidden {
            code: "forbidden",
            message: "admin keys are made by a person signed in, not by another key",
        });
    }
    let material = steward_auth::generate_api_key();
    let secret = material.key.clone();
    idempotency::answer_from(StatusCode::CREATED, move |key: &ApiKey| CreatedApiKey {
        api_key: key.clone().into(),
        key: secret.clone(),
    });
    let key = state
        .store
        .create_api_key(
            &auth.0.scope(),
            NewApiKey {
                name,
                prefix: material.prefix,
                role,
                created_by: maker,
                key_hash: material.hash,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedApiKey {
            api_key: key.into(),
            key: material.key,
        }),
    ))
}

/// Revoke a key; it stops working at once.
#[utoipa::path(delete, path = "/api-keys/{id}", tag = "api keys", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_key(
    State(state): State<SharedState>,
    auth: Auth,
    Path(id): Path<uuid::Uuid>,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    state
        .store
        .revoke_api_key(&auth.0.scope(), id.into())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

//! The caller's organization: usage against its tier, billing, members, audit log.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use steward_domain::{AuditId, Email, Password, PersonName, Role, Tier, UserId};
use steward_store::{NewUser, User, usage_period};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Auth;
use crate::dto::UserDto;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::idempotency;
use crate::state::SharedState;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(usage))
        .routes(routes!(settings, change_settings))
        .routes(routes!(set_billing))
        .routes(routes!(list_members, add_member))
        .routes(routes!(change_member, remove_member))
        .routes(routes!(reset_password))
        .routes(routes!(audit_log))
}

#[derive(Serialize, ToSchema)]
pub struct SettingsDto {
    /// Whether assistants remember what people tell them about themselves
    /// (see `/people/{id}/memory`).
    memory: bool,
    /// Conversations whose last message from a person is older than this
    /// many days are deleted (hourly); null: kept until their chatbot is.
    retention_days: Option<i32>,
}

impl From<steward_store::Organization> for SettingsDto {
    fn from(o: steward_store::Organization) -> Self {
        Self {
            memory: o.memory,
            retention_days: o.retention_days,
        }
    }
}

/// The longest retention an organization may set: ten years.
const MAX_RETENTION_DAYS: i32 = 3650;

/// The organization's settings.
#[utoipa::path(get, path = "/organizations/settings", tag = "organization", security(("bearer" = [])),
    responses((status = 200, body = SettingsDto), (status = 401, body = ErrorBody)))]
async fn settings(
    State(state): State<SharedState>,
    auth: Auth,
) -> ApiResult<axum::Json<SettingsDto>> {
    let organization = state.store.organization(&auth.0.scope()).await?;
    Ok(axum::Json(organization.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    /// false: assistants stop learning about people, and everything they
    /// remember of everyone is deleted (audited). Absent: left as it is.
    memory: Option<bool>,
    /// 1 to 3650: conversations quiet for longer are deleted; null: kept.
    /// Absent: left as it is.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i32>, minimum = 1, maximum = 3650)]
    retention_days: Option<Option<i32>>,
}

/// A field that may be null: Some(None) when it is, None when it is absent.
fn present<'de, D, T>(value: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(value).map(Some)
}

/// Change the organization's settings (owners and admins); what is left
/// out stays as it is.
#[utoipa::path(put, path = "/organizations/settings", tag = "organization", security(("bearer" = [])),
    request_body = SettingsBody,
    responses((status = 200, body = SettingsDto), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn change_settings(
    State(state): State<SharedState>,
    auth: Auth,
    Json(body): Json<SettingsBody>,
) -> ApiResult<axum::Json<SettingsDto>> {
    auth.require_admin()?;
    if let Some(Some(days)) = body.retention_days
        && !(1..=MAX_RETENTION_DAYS).contains(&days)
    {
        return Err(ApiError::unprocessable(
            "invalid_retention",
            format!(
                "retention_days must be 1 to {MAX_RETENTION_DAYS}, or null to keep conversations"
            ),
        ));
    }
    let scope = auth.0.scope();
    let mut organization = match body.memory {
        Some(memory) => state.store.set_memory(&scope, memory).await?,
        None => state.store.organization(&scope).await?,
    };
    if let Some(days) = body.retention_days {
        organization = state.store.set_retention(&scope, days).await?;
    }
    Ok(axum::Json(organization.into()))
}

#[derive(Serialize, ToSchema)]
pub struct UsageResponse {
    /// The month counted, e.g. 2026-11 (UTC).
    period: String,
    messages_used: i64,
    messages_limit: i64,
    tokens_used: i64,
    tokens_limit: i64,
    current_tier: Tier,
}

/// This month's use against the tier's limits.
#[utoipa::path(get, path = "/organizations/usage", tag = "organization", security(("bearer" = [])),
    responses((status = 200, body = UsageResponse), (status = 401, body = ErrorBody)))]
async fn usage(
    State(state): State<SharedState>,
    auth: Auth,
) -> ApiResult<axum::Json<UsageResponse>> {
    let scope = auth.0.scope();
    let organization = state.store.organization(&scope).await?;
    let used = state
        .store
        .usage(&scope, &usage_period(steward_store::now()))
        .await?;
    let limits = state.config.tiers.limits(organization.tier);
    Ok(axum::Json(UsageResponse {
        period: used.period,
        messages_used: used.messages,
        messages_limit: limits.messages_per_month,
        tokens_used: used.tokens,
        tokens_limit: limits.tokens_per_month,
        current_tier: organization.tier,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BillingRequest {
    tier: Tier,
}

#[derive(Serialize, ToSchema)]
pub struct TierRequested {
    /// The tier in force, unchanged by the request.
    current_tier: Tier,
    requested_tier: Tier,
    message: String,
}

/// Ask for another tier (owners and admins). Plans are set by the operator
/// (`steward org set-tier`): the request is recorded in the audit log for
/// them, and the tier in force does not change.
#[utoipa::path(put, path = "/organizations/billing", tag = "organization", security(("bearer" = [])),
    request_body = BillingRequest,
    responses((status = 202, body = TierRequested), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn set_billing(
    State(state): State<SharedState>,
    auth: Auth,
    Json(body): Json<BillingRequest>,
) -> ApiResult<(StatusCode, axum::Json<TierRequested>)> {
    auth.require_admin()?;
    let organization = state.store.request_tier(&auth.0.scope(), body.tier).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(TierRequested {
            current_tier: organization.tier,
            requested_tier: body.tier,
            message: "plans are set by the operator: the request is recorded for them".into(),
        }),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct MemberList {
    members: Vec<UserDto>,
}

/// The organization's members.
#[utoipa::path(get, path = "/organizations/members", tag = "organization", security(("bearer" = [])),
    responses((status = 200, body = MemberList)))]
async fn list_members(
    State(state): State<SharedState>,
    auth: Auth,
) -> ApiResult<axum::Json<MemberList>> {
    let members = state.store.list_members(&auth.0.scope()).await?;
    let viewer = auth.0.role();
    Ok(axum::Json(MemberList {
        members: members
            .into_iter()
            .map(|m| UserDto::seen_by(m, viewer))
            .collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteMember {
    #[schema(schema_with = crate::contract::email)]
    email: String,
    role: Role,
    #[schema(schema_with = crate::contract::optional_display_name)]
    name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct InvitedMember {
    user: UserDto,
    /// Shown this once; give it to the person to sign in with.
    temporary_password: String,
}

/// Only an owner may make, change or remove an owner.
fn check_owner_rule(auth: &Auth, role_involved: Role) -> ApiResult<()> {
    if role_involved == Role::Owner && auth.0.role() != Role::Owner {
        return Err(ApiError::Forbidden {
            code: "forbidden",
            message: "only an owner may grant, change or remove the owner role",
        });
    }
    Ok(())
}

/// Add a member with a one-time password (owners and admins).
#[utoipa::path(post, path = "/organizations/members", tag = "organization", security(("bearer" = [])),
    request_body = InviteMember,
    responses((status = 201, body = InvitedMember), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn add_member(
    State(state): State<SharedState>,
    auth: Auth,
    Json(body): Json<InviteMember>,
) -> ApiResult<(StatusCode, axum::Json<InvitedMember>)> {
    auth.require_admin()?;
    check_owner_rule(&auth, body.role)?;
    let email = Email::parse("email", &body.email)?;
    let name = body
        .name
        .map(|n| PersonName::parse("name", n))
        .transpose()?;
    let (temporary_password, password_hash) = one_time_password(&state).await?;
    let password = temporary_password.clone();
    idempotency::answer_from(StatusCode::CREATED, move |user: &User| InvitedMember {
        user: user.clone().into(),
        temporary_password: password.clone(),
    });
    let user = state
        .store
        .add_member(
            &auth.0.scope(),
            NewUser {
                email,
                name,
                role: body.role,
                password_hash,
                // Its first password is handed over: changed at first sign-in.
                must_change_password: true,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(InvitedMember {
            user: user.into(),
            temporary_password,
        }),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeMember {
    role: Role,
}

/// Change a member's role (owners and admins; owners only for the owner role).
#[utoipa::path(patch, path = "/organizations/members/{user_id}", tag = "organization", security(("bearer" = [])),
    params(("user_id" = uuid::Uuid, Path)), request_body = ChangeMember,
    responses((status = 200, body = UserDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "the last owner", body = ErrorBody)))]
async fn change_member(
    State(state): State<SharedState>,
    auth: Auth,
    Path(user_id): Path<uuid::Uuid>,
    Json(body): Json<ChangeMember>,
) -> ApiResult<axum::Json<UserDto>> {
    auth.require_admin()?;
    let scope = auth.0.scope();
    let current = current_role(&state, &auth, user_id.into()).await?;
    check_owner_rule(&auth, current)?;
    check_owner_rule(&auth, body.role)?;
    let user = state
        .store
        .set_member_role(&scope, user_id.into(), body.role)
        .await?;
    Ok(axum::Json(user.into()))
}

/// Remove a member (owners and admins; owners only to remove an owner).
#[utoipa::path(delete, path = "/organizations/members/{user_id}", tag = "organization", security(("bearer" = [])),
    params(("user_id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "the last owner", body = ErrorBody)))]
async fn remove_member(
    State(state): State<SharedState>,
    auth: Auth,
    Path(user_id): Path<uuid::Uuid>,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    let current = current_role(&state, &auth, user_id.into()).await?;
    check_owner_rule(&auth, current)?;
    state
        .store
        .remove_member(&auth.0.scope(), user_id.into())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct PasswordReset {
    user: UserDto,
    /// Shown once; it must be changed at the next sign-in, and the member's
    /// sessions signed in before are signed out.
    temporary_password: String,
}

/// Give a member a new one-time password (owners and admins; owners only for
/// an owner). Their sessions stop working; they change it at next sign-in.
#[utoipa::path(post, path = "/organizations/members/{user_id}/password", tag = "organization", security(("bearer" = [])),
    params(("user_id" = uuid::Uuid, Path)),
    responses((status = 200, body = PasswordReset), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "the caller's own password (`own_password`): change it instead", body = ErrorBody)))]
async fn reset_password(
    State(state): State<SharedState>,
    auth: Auth,
    Path(user_id): Path<uuid::Uuid>,
) -> ApiResult<axum::Json<PasswordReset>> {
    auth.require_admin()?;
    let current = current_role(&state, &auth, user_id.into()).await?;
    check_owner_rule(&auth, current)?;
    if auth.0.user_id() == Some(user_id.into()) {
        return Err(ApiError::Conflict {
            code: "own_password",
            message: "your own password is changed with POST /api/v1/auth/password".into(),
        });
    }
    let (temporary_password, password_hash) = one_time_password(&state).await?;
    let password = temporary_password.clone();
    idempotency::answer_from(StatusCode::OK, move |user: &User| PasswordReset {
        user: user.clone().into(),
        temporary_password: password.clone(),
    });
    let user = state
        .store
        .set_password(&auth.0.scope(), user_id.into(), &password_hash, true)
        .await?;
    Ok(axum::Json(PasswordReset {
        user: user.into(),
        temporary_password,
    }))
}

/// A new one-time password, and its hash.
async fn one_time_password(state: &SharedState) -> ApiResult<(String, String)> {
    let password = steward_auth::generate_password();
    let hash = state
        .hasher
        .hash(&Password::parse("password", password.clone())?)
        .await
        .map_err(ApiError::Internal)?;
    Ok((password, hash))
}

/// A member's role in the caller's organization; another organization's user is not found.
async fn current_role(state: &SharedState, auth: &Auth, user: UserId) -> ApiResult<Role> {
    let found = state
        .store
        .find_user(user)
        .await?
        .filter(|u| u.org_id == auth.0.org_id());
    found.map(|u| u.role).ok_or(ApiError::NotFound)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// 1 to 200; default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// `next_before` of the previous page.
    before: Option<uuid::Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditEntryDto {
    id: uuid::Uuid,
    actor: String,
    action: String,
    target: String,
    /// What changed; null when nothing more is recorded.
    #[schema(value_type = Option<Object>)]
    details: Value,
    created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditLog {
    entries: Vec<AuditEntryDto>,
    /// Pass as `before` for the next page; null on the last page.
    next_before: Option<uuid::Uuid>,
}

/// Recent admin actions, newest first (owners and admins).
#[utoipa::path(get, path = "/organizations/audit-log", tag = "organization", security(("bearer" = [])),
    params(AuditQuery),
    responses((status = 200, body = AuditLog), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "`before` names no audit entry of this organization (`unknown_cursor`)", body = ErrorBody)))]
async fn audit_log(
    State(state): State<SharedState>,
    auth: Auth,
    Query(query): Query<AuditQuery>,
) -> ApiResult<axum::Json<AuditLog>> {
    auth.require_admin()?;
    let limit = crate::routes::page_limit(query.limit)?;
    // One more than asked tells whether another page follows.
    let read = state
        .store
        .list_audit(&auth.0.scope(), query.before.map(AuditId::from), limit + 1)
        .await;
    let (entries, next_before) =
        crate::routes::page_before(read, limit, "an audit entry", |e| e.id.as_uuid())?;
    Ok(axum::Json(AuditLog {
        next_before,
        entries: entries
            .into_iter()
            .map(|e| AuditEntryDto {
                id: e.id.as_uuid(),
                actor: e.actor,
                action: e.action,
                target: e.target,
                details: e.details,
                created_at: e.created_at,
            })
            .collect(),
    }))
}

//! Registration, login, password changes and the caller's identity.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use steward_config::Registration;
use steward_domain::jobs::NoticeArgs;
use steward_domain::{Email, OrganizationName, Password, PersonName, Role, Tier};
use steward_store::{Actor, Conflict, NewJob, NewOrganization, NewUser, StoreError, User};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{ClientIp, SignedIn, bearer};
use crate::dto::{OrganizationDto, UserDto};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Json;
use crate::idempotency;
use crate::state::SharedState;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(change_password))
        .routes(routes!(logout))
        .routes(routes!(me))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(schema_with = crate::contract::email)]
    email: String,
    /// 8 to 1024 characters.
    #[schema(schema_with = crate::contract::password)]
    password: String,
    #[schema(schema_with = crate::contract::display_name)]
    organization_name: String,
    #[schema(schema_with = crate::contract::optional_display_name)]
    name: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct SessionResponse {
    /// Send as `Authorization: Bearer <token>`.
    pub(crate) token: String,
    expires_at: DateTime<Utc>,
    user: UserDto,
    organization: OrganizationDto,
}

#[derive(Serialize, ToSchema)]
pub struct RegistrationAccepted {
    message: String,
}

const REGISTRATION_ACCEPTED: &str = "if this address can be registered, its organization and \
    account are ready: sign in with POST /api/v1/auth/login";

/// Tells an address's owner that someone tried to register it, when the
/// operator has a mail server: at most once an hour per address, so that
/// registration cannot be used to flood someone's inbox.
async fn tell_the_owner(state: &SharedState, email: &Email) -> ApiResult<()> {
    if !state.config.mail.is_configured() {
        return Ok(());
    }
    let now = chrono::Utc::now();
    let notice = NoticeArgs {
        key: format!(
            "registration:{}:{}",
            email.as_str(),
            now.format("%Y-%m-%dT%H")
        ),
        to: email.as_str().to_owned(),
        subject: "Someone tried to register your address".into(),
        text: format!(
            "Someone asked to create a Steward account for {address} at {at} UTC.\n\n\
             This address already has an account, so nothing was created or changed.\n\
             If it was you, sign in as usual. If it was not, you need not do anything.\n",
            address = email.as_str(),
            at = now.format("%Y-%m-%d %H:%M"),
        ),
    };
    state
        .store
        .enqueue(NewJob::of(&notice, state.config.jobs.max_attempts))
        .await?;
    state.jobs_enqueued.notify_one();
    Ok(())
}

/// Create an organization and its owner, then sign in with `POST /auth/login`.
/// The answer is the same whether or not the address already has an account,
/// so registration tells no one which addresses do.
#[utoipa::path(post, path = "/auth/register", tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 202, body = RegistrationAccepted),
        (status = 403, description = "registration is closed", body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody),
    ))]
async fn register(
    State(state): State<SharedState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<RegisterRequest>,
) -> ApiResult<(StatusCode, axum::Json<RegistrationAccepted>)> {
    if state.config.auth.registration == Registration::Closed {
        return Err(ApiError::Forbidden {
            code: "registration_closed",
            message: "registration is closed; ask the operator for an account",
        });
    }
    // The same answer whatever happens, so it commits with whichever write.
    let accepted = RegistrationAccepted {
        message: REGISTRATION_ACCEPTED.into(),
    };
    idempotency::answer_known(StatusCode::ACCEPTED, Some(&accepted));
    state.login_limiter.check(ip, None)?;
    let email = Email::parse("email", &body.email)?;
    let password = Password::parse("password", body.password)?;
    let org_name = OrganizationName::parse("organization_name", body.organization_name)?;
    let name = body
        .name
        .map(|n| PersonName::parse("name", n))
        .transpose()?;
    // Hashed whether or not the address is taken, so timing tells nothing either.
    let password_hash = state
        .hasher
        .hash(&password)
        .await
        .map_err(ApiError::Internal)?;
    let created = state
        .store
        .create_organization(
            NewOrganization {
                name: org_name,
                tier: Tier::Free,
            },
            NewUser {
                email: email.clone(),
                name,
                role: Role::Owner,
                password_hash,
                must_change_password: false,
            },
        )
        .await;
    match created {
        Ok((organization, user)) => {
            tracing::info!(org_id = %organization.id, user_id = %user.id, "organization registered");
        }
        Err(StoreError::Conflict(Conflict::EmailTaken)) => {
            tracing::info!(
                "registration for an address that already has an account: nothing created"
            );
            tell_the_owner(&state, &email).await?;
        }
        Err(e) => return Err(e.into()),
    }
    Ok((StatusCode::ACCEPTED, axum::Json(accepted)))
}

/// Exchange email and password for a session token.
#[utoipa::path(post, path = "/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, body = SessionResponse),
        (status = 401, description = "wrong email or password", body = ErrorBody),
        (status = 403, description = "the organization requires single sign-on of everyone but owners (`sso_required`)", body = ErrorBody),
        (status = 429, description = "too many attempts; see Retry-After", body = ErrorBody),
    ))]
async fn login(
    State(state): State<SharedState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<LoginRequest>,
) -> ApiResult<axum::Json<SessionResponse>> {
    let account = body.email.trim().to_lowercase();
    state.login_limiter.check(ip, Some(&account))?;
    let wrong = ApiError::Unauthorized {
        message: "wrong email or password",
    };
    let found = match Email::parse("email", &account) {
        Ok(email) => state.store.find_login(&email).await?,
        Err(_) => None,
    };
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    // Unknown accounts cost a hash too, so timing does not reveal which emails exist.
    if !state.hasher.verify(&body.password, hash.as_deref()).await {
        return Err(wrong);
    }
    let user = user.ok_or(wrong)?;
    if user.role != Role::Owner && crate::routes::sso::required(&state, user.org_id).await? {
        return Err(ApiError::Forbidden {
            code: "sso_required",
            message: "your organization signs in with single sign-on: use its sign-in link",
        });
    }
    session(&state, user).await
}

/// A new session for `user`: a token of their current session generation.
async fn session(state: &SharedState, user: User) -> ApiResult<axum::Json<SessionResponse>> {
    session_for(state, user).await.map(axum::Json)
}

/// [`session`], for a sign-in that answers in its own way.
pub(crate) async fn session_for(state: &SharedState, user: User) -> ApiResult<SessionResponse> {
    let organization = state
        .store
        .organization(&steward_store::TenantScope::for_operator(user.org_id))
        .await?;
    let (token, expires_at) = state
        .tokens
        .issue(user.id, organization.id, user.session_generation);
    Ok(SessionResponse {
        token,
        expires_at,
        user: user.into(),
        organization: organization.into(),
    })
}

#[derive(Serialize, ToSchema)]
pub struct MeResponse {
    /// Null when the caller is an API key.
    user: Option<UserDto>,
    /// Set when the caller is an API key.
    api_key_id: Option<uuid::Uuid>,
    role: Role,
    organization: OrganizationDto,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    current_password: String,
    /// 8 to 1024 characters, not the current one.
    #[schema(schema_with = crate::contract::password)]
    new_password: String,
}

/// Change the caller's password (one-time passwords included). Every token
/// issued before stops working; the answer carries a new one.
#[utoipa::path(post, path = "/auth/password", tag = "auth", security(("bearer" = [])),
    request_body = ChangePassword,
    responses(
        (status = 200, body = SessionResponse),
        (status = 401, body = ErrorBody),
        (status = 403, description = "the current password is wrong (`wrong_password`), or the caller is an API key", body = ErrorBody),
        (status = 409, description = "the new password is the current one (`same_password`)", body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody),
    ))]
async fn change_password(
    State(state): State<SharedState>,
    ClientIp(ip): ClientIp,
    SignedIn(principal): SignedIn,
    Json(body): Json<ChangePassword>,
) -> ApiResult<axum::Json<SessionResponse>> {
    let Some(user) = principal.user_id() else {
        return Err(ApiError::Forbidden {
            code: "forbidden",
            message: "API keys have no password",
        });
    };
    let user = state
        .store
        .find_user(user)
        .await?
        .ok_or(ApiError::NotFound)?;
    // Guessing the current password with a stolen token is a login attempt.
    state.login_limiter.check(ip, Some(&user.email))?;
    let new_password = Password::parse("new_password", body.new_password)?;
    let email = Email::parse("email", &user.email)?;
    let (_, hash) = state
        .store
        .find_login(&email)
        .await?
        .ok_or(ApiError::NotFound)?;
    if !state
        .hasher
        .verify(&body.current_password, Some(&hash))
        .await
    {
        return Err(ApiError::Forbidden {
            code: "wrong_password",
            message: "current_password: not your current password",
        });
    }
    if new_password.expose() == body.current_password {
        return Err(ApiError::Conflict {
            code: "same_password",
            message: "new_password: choose a password other than the current one".into(),
        });
    }
    let password_hash = state
        .hasher
        .hash(&new_password)
        .await
        .map_err(ApiError::Internal)?;
    let user = state
        .store
        .set_password(&principal.scope(), user.id, &password_hash, false)
        .await?;
    session(&state, user).await
}

/// Sign out: the caller's token stops working at once. The person's other
/// sessions are untouched; changing the password ends them all.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 204, description = "signed out"),
        (status = 401, body = ErrorBody),
        (status = 403, description = "the caller is an API key: revoke it instead", body = ErrorBody),
        (status = 409, description = "a token issued before sessions were named (`session_unnamed`): it ends when it expires or the password changes", body = ErrorBody),
    ))]
async fn logout(
    State(state): State<SharedState>,
    SignedIn(principal): SignedIn,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let Some(user) = principal.user_id() else {
        return Err(ApiError::Forbidden {
            code: "forbidden",
            message: "an API key is not a session: revoke it with DELETE /api/v1/api-keys/{id}",
        });
    };
    // SignedIn verified this token: reading its claims again cannot fail.
    let claims = bearer(&headers)?
        .and_then(|token| state.tokens.verify(token).ok())
        .ok_or(ApiError::Unauthorized {
            message: "invalid token",
        })?;
    let Some(session) = claims.sid else {
        return Err(ApiError::Conflict {
            code: "session_unnamed",
            message: "this token was issued before sessions could be signed out one by one: \
                      it ends when it expires, or at once when the password is changed"
                .into(),
        });
    };
    let expires = DateTime::from_timestamp(claims.exp, 0).unwrap_or_else(Utc::now);
    match state
        .store
        .sign_out_session(&principal.scope(), user, session, expires)
        .await
    {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        // Removed from the organization since this request was let in.
        Err(StoreError::NotFound) => Err(ApiError::Unauthorized {
            message: "invalid token",
        }),
        Err(e) => Err(e.into()),
    }
}

/// Who the caller is (also for a person who must still change a one-time
/// password).
#[utoipa::path(get, path = "/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = MeResponse), (status = 401, body = ErrorBody)))]
async fn me(
    State(state): State<SharedState>,
    SignedIn(principal): SignedIn,
) -> ApiResult<axum::Json<MeResponse>> {
    let organization = state.store.organization(&principal.scope()).await?;
    let (user, api_key_id) = match principal.actor() {
        Actor::User(id) => (state.store.find_user(id).await?.map(UserDto::from), None),
        Actor::ApiKey(id) => (None, Some(id.as_uuid())),
        Actor::Operator | Actor::Worker | Actor::Channel(_) => (None, None),
    };
    Ok(axum::Json(MeResponse {
        user,
        api_key_id,
        role: principal.role(),
        organization: organization.into(),
    }))
}

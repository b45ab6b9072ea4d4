//! Single sign-on through an organization's OpenID provider (or the
//! platform's): owners set it up under `/organizations/sso`; people start
//! at `/auth/sso/{slug}` and come back to `/auth/sso/callback`, where the
//! provider's answer is checked ([`crate::oidc`]) and they are signed in as
//! the member it names, made just in time when their domain allows it.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use steward_domain::{Email, OrgId, Password, PersonName, Role};
use steward_store::{
    Conflict, NewUser, SsoAttempt, SsoIdentity, SsoProvider, SsoSettings, StoreError, TenantScope,
};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Auth, ClientIp};
use crate::console::session::{cookie, set_cookie};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::oidc::{self, OidcError};
use crate::state::{AppState, SharedState};

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(settings, configure, remove))
        .routes(routes!(callback))
        .routes(routes!(start))
}

/// Identifies the browser that started a sign-in, so that a callback
/// carried to another browser (a sign-in forced on someone) is refused.
const BROWSER_COOKIE: &str = "steward_sso";
/// How long a person has at the provider.
const ATTEMPT_MINUTES: i64 = 10;
const MAX_DOMAINS: usize = 50;
const MAX_FIELD_CHARS: usize = 512;

#[derive(Serialize, ToSchema)]
pub struct SsoDto {
    /// Names the organization in its sign-in link.
    slug: String,
    /// `own`: the organization's provider; `platform`: the operator's.
    provider: &'static str,
    issuer: String,
    client_id: String,
    allowed_domains: Vec<String>,
    default_role: Role,
    /// Everyone but owners signs in through the provider.
    required: bool,
    /// Where people start signing in (add `?format=token` for an API token).
    sign_in_url: String,
    /// Register this at the provider as the redirect URI.
    redirect_uri: String,
    updated_at: DateTime<Utc>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoBody {
    /// Lowercase letters, digits and dashes, 2 to 63; absent: made from the
    /// organization's name.
    slug: Option<String>,
    /// The provider's issuer URL; absent: the platform's provider (with no
    /// client_id and client_secret).
    issuer: Option<String>,
    client_id: Option<String>,
    /// Sealed at rest, never shown again. Absent: the one stored for the
    /// same issuer and client is kept.
    client_secret: Option<String>,
    /// People whose verified address is at one of these domains become
    /// members at their first sign-in. Empty: only existing members.
    #[serde(default)]
    allowed_domains: Vec<String>,
    /// admin, member (the default) or advisor: the role of members made
    /// at their first sign-in.
    default_role: Option<Role>,
    /// Everyone but owners must sign in through the provider.
    #[serde(default)]
    required: bool,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StartQuery {
    /// `token`: end with an API token as JSON instead of a console session.
    format: Option<Format>,
    /// The console page to open afterwards.
    next: Option<String>,
    /// Passed to the provider to preselect an account.
    #[param(min_length = 1, max_length = 512)]
    login_hint: Option<String>,
}

#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Token,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    #[param(min_length = 1, max_length = 256)]
    state: String,
    code: Option<String>,
    /// The provider's refusal, when it refused.
    error: Option<String>,
    /// The provider that answered (RFC 9207), when it says.
    iss: Option<String>,
    #[allow(dead_code)] // Providers send it; a person sees Steward's words instead.
    error_description: Option<String>,
}

fn redirect_uri(state: &AppState) -> Option<String> {
    state
        .config
        .http
        .public_url
        .as_ref()
        .map(|base| format!("{}/api/v1/auth/sso/callback", base.trim_end_matches('/')))
}

fn sign_in_url(state: &AppState, slug: &str) -> String {
    let base = state.config.http.public_url.as_deref().unwrap_or("");
    format!("{}/api/v1/auth/sso/{slug}", base.trim_end_matches('/'))
}

/// What the secret is sealed to: its organization (as other secrets are
/// sealed to their row's id, which `steward secrets reseal` relies on).
fn seal_context(org: OrgId) -> String {
    org.to_string()
}

/// The second half of a master-key rotation for organizations' own
/// providers: every client secret sealed again under the current key.
pub async fn reseal(
    store: &dyn steward_store::Store,
    sealer: &steward_auth::Sealer,
) -> Result<steward_auth::Resealed<OrgId>, StoreError> {
    let sealed = store.sealed_sso_secrets().await?;
    steward_auth::Resealed::run(sealer, sealed, async |org, old, new| {
        store.replace_sso_secret(org, old, new).await
    })
    .await
}

fn platform(state: &AppState) -> Option<(String, String, String)> {
    let auth = &state.config.auth;
    Some((
        auth.sso_issuer.clone()?,
        auth.sso_client_id.clone()?,
        auth.sso_client_secret.as_ref()?.expose().to_owned(),
    ))
}

/// The provider `settings` sign in through, with Steward's client there.
fn client(state: &AppState, settings: &SsoSettings) -> ApiResult<oidc::Client> {
    match &settings.provider {
        Some(own) => {
            let secret = state
                .sealer
                .open(&own.sealed_secret, seal_context(settings.org_id).as_bytes())
                .map_err(|e| ApiError::Internal(format!("the SSO client secret: {e}")))?;
            Ok(oidc::Client {
                issuer: own.issuer.clone(),
                client_id: own.client_id.clone(),
                client_secret: String::from_utf8(secret)
                    .map_err(|_| ApiError::Internal("the SSO client secret is not text".into()))?,
                http: state.sso.tenant_http.clone(),
            })
        }
        None => {
            let (issuer, client_id, client_secret) = platform(state).ok_or_else(|| {
                ApiError::Unavailable(
                    "the platform's OpenID provider is no longer configured".into(),
                )
            })?;
            Ok(oidc::Client {
                issuer,
                client_id,
                client_secret,
                http: state.sso.platform_http.clone(),
            })
        }
    }
}

fn dto(state: &AppState, s: SsoSettings) -> SsoDto {
    let (provider, issuer, client_id) = match s.provider {
        Some(own) => ("own", own.issuer, own.client_id),
        None => {
            let (issuer, client_id, _) = platform(state).unwrap_or_default();
            ("platform", issuer, client_id)
        }
    };
    SsoDto {
        sign_in_url: sign_in_url(state, &s.slug),
        redirect_uri: redirect_uri(state).unwrap_or_default(),
        slug: s.slug,
        provider,
        issuer,
        client_id,
        allowed_domains: s.allowed_domains,
        default_role: s.default_role,
        required: s.required,
        updated_at: s.updated_at,
    }
}

fn owners_only(auth: &Auth) -> ApiResult<()> {
    if auth.0.role() == Role::Owner {
        Ok(())
    } else {
        Err(ApiError::Forbidden {
            code: "forbidden",
            message: "only owners set up single sign-on",
        })
    }
}

/// The organization's single sign-on (owners and admins).
#[utoipa::path(get, path = "/organizations/sso", tag = "organization", security(("bearer" = [])),
    responses(
        (status = 200, body = SsoDto),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, description = "single sign-on is off", body = ErrorBody),
    ))]
async fn settings(State(state): State<SharedState>, auth: Auth) -> ApiResult<axum::Json<SsoDto>> {
    auth.require_admin()?;
    let settings = state
        .store
        .sso_settings(&auth.0.scope())
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(axum::Json(dto(&state, settings)))
}

/// A slug made from the organization's name: `Acme Ltd.` → `acme-ltd`.
fn slug_of(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug: String = slug.trim_end_matches('-').chars().take(63).collect();
    slug.trim_end_matches('-').to_owned()
}

fn check_slug(slug: &str) -> ApiResult<()> {
    let shaped = (2..=63).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-');
    if !shaped || slug == "callback" {
        return Err(ApiError::unprocessable(
            "invalid_slug",
            "slug: 2 to 63 lowercase letters, digits and dashes, not starting or ending with a dash (and not 'callback')",
        ));
    }
    Ok(())
}

/// A domain as people write it after the `@`, lowercased.
fn domain(value: &str) -> ApiResult<String> {
    let domain = value.trim().trim_start_matches('@').to_lowercase();
    let shaped = domain.len() <= 253
        && domain.contains('.')
        && domain.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !shaped {
        return Err(ApiError::unprocessable(
            "invalid_domain",
            format!(
                "allowed_domains: '{}' is not a domain such as example.com",
                value.chars().take(100).collect::<String>()
            ),
        ));
    }
    Ok(domain)
}

fn text_field(field: &str, value: Option<String>) -> ApiResult<Option<String>> {
    match value.map(|v| v.trim().to_owned()) {
        Some(v)
            if v.is_empty()
                || v.chars().count() > MAX_FIELD_CHARS
                || v.chars().any(char::is_control) =>
        {
            Err(ApiError::unprocessable(
                "validation_failed",
                format!("{field}: 1 to {MAX_FIELD_CHARS} characters, no control characters"),
            ))
        }
        other => Ok(other),
    }
}

/// Set up single sign-on (owners). The provider's discovery document and
/// keys are fetched before anything is saved, so a wrong issuer is told at once.
#[utoipa::path(put, path = "/organizations/sso", tag = "organization", security(("bearer" = [])),
    request_body = SsoBody,
    responses(
        (status = 200, body = SsoDto),
        (status = 401, body = ErrorBody),
        (status = 403, description = "only owners set up single sign-on", body = ErrorBody),
        (status = 409, description = "`slug_taken`; `public_url_missing` (the operator has not set http.public_url, which the redirect URI needs); `no_platform_provider` (no issuer given and the operator has none)", body = ErrorBody),
        (status = 422, description = "invalid fields, or an issuer that cannot be used (`issuer_unusable`, with the reason)", body = ErrorBody),
    ))]
async fn configure(
    State(state): State<SharedState>,
    auth: Auth,
    Json(body): Json<SsoBody>,
) -> ApiResult<axum::Json<SsoDto>> {
    owners_only(&auth)?;
    let scope = auth.0.scope();
    if redirect_uri(&state).is_none() {
        return Err(ApiError::Conflict {
            code: "public_url_missing",
            message: "single sign-on needs http.public_url in Steward's configuration (the provider sends people back there): ask the operator".into(),
        });
    }
    let default_role = body.default_role.unwrap_or(Role::Member);
    if default_role == Role::Owner {
        return Err(ApiError::unprocessable(
            "invalid_role",
            "default_role: admin, member or advisor; owners are made by owners",
        ));
    }
    if body.allowed_domains.len() > MAX_DOMAINS {
        return Err(ApiError::unprocessable(
            "too_many_domains",
            format!("allowed_domains: at most {MAX_DOMAINS}"),
        ));
    }
    let mut allowed_domains = body
        .allowed_domains
        .iter()
        .map(|d| domain(d))
        .collect::<ApiResult<Vec<_>>>()?;
    allowed_domains.sort();
    allowed_domains.dedup();
    let slug = match text_field("slug", body.slug)? {
        Some(slug) => slug,
        None => slug_of(&state.store.organization(&scope).await?.name),
    };
    check_slug(&slug)?;
    let issuer = text_field("issuer", body.issuer)?;
    let client_id = text_field("client_id", body.client_id)?;
    let client_secret = text_field("client_secret", body.client_secret)?;
    let provider = match issuer {
        None => {
            if client_id.is_some() || client_secret.is_some() {
                return Err(ApiError::unprocessable(
                    "validation_failed",
                    "client_id and client_secret go with an issuer; without one the platform's provider is used",
                ));
            }
            if platform(&state).is_none() {
                return Err(ApiError::Conflict {
                    code: "no_platform_provider",
                    message: "give your provider's issuer, client_id and client_secret: this Steward has no platform provider".into(),
                });
            }
            None
        }
        Some(issuer) => {
            let issuer = issuer.trim_end_matches('/').to_owned();
            check_issuer(&state, &issuer)?;
            let client_id = client_id.ok_or_else(|| {
                ApiError::unprocessable("validation_failed", "client_id: required with an issuer")
            })?;
            let sealed_secret = match client_secret {
                Some(secret) => state
                    .sealer
                    .seal(secret.as_bytes(), seal_context(scope.org_id()).as_bytes()),
                None => state
                    .store
                    .sso_settings(&scope)
                    .await?
                    .and_then(|s| s.provider)
                    .filter(|p| p.issuer == issuer && p.client_id == client_id)
                    .map(|p| p.sealed_secret)
                    .ok_or_else(|| {
                        ApiError::unprocessable(
                            "validation_failed",
                            "client_secret: required for a new issuer or client",
                        )
                    })?,
            };
            Some(SsoProvider {
                issuer,
                client_id,
                sealed_secret,
            })
        }
    };
    let settings = SsoSettings {
        org_id: scope.org_id(),
        slug,
        provider,
        allowed_domains,
        default_role,
        required: body.required,
        updated_at: steward_store::now(),
    };
    // The provider must answer before anything is saved.
    let client = client(&state, &settings)?;
    if let Err(e) = state.sso.providers.metadata(&client).await {
        return Err(ApiError::unprocessable(
            "issuer_unusable",
            format!("issuer: {e}"),
        ));
    }
    let saved = state.store.set_sso_settings(&scope, settings).await?;
    Ok(axum::Json(dto(&state, saved)))
}

/// An issuer an organization may name: https (http only where private
/// networks are open, for local development), no query or fragment, and
/// not an address the outbound guard refuses.
fn check_issuer(state: &AppState, issuer: &str) -> ApiResult<()> {
    let unusable =
        |why: String| ApiError::unprocessable("issuer_unusable", format!("issuer: {why}"));
    let url = state
        .sso
        .guard
        .check_url(issuer)
        .map_err(|e| unusable(e.0))?;
    if url.scheme() != "https" && !state.config.outbound.allow_private_networks {
        return Err(unusable("an https URL is required".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(unusable("an issuer has no query or fragment".into()));
    }
    Ok(())
}

/// Turn single sign-on off (owners). Members it made keep their accounts
/// and may be given passwords by an admin.
#[utoipa::path(delete, path = "/organizations/sso", tag = "organization", security(("bearer" = [])),
    responses(
        (status = 204, description = "turned off"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, description = "it was off", body = ErrorBody),
    ))]
async fn remove(State(state): State<SharedState>, auth: Auth) -> ApiResult<StatusCode> {
    owners_only(&auth)?;
    state.store.remove_sso_settings(&auth.0.scope()).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn provider_failure(e: OidcError) -> ApiError {
    match e {
        OidcError::Unreachable(why) => ApiError::Upstream(why),
        OidcError::Refused(code) => ApiError::SignInFailed {
            code: "sso_refused",
            message: format!("the identity provider refused the sign-in ({code}): start again"),
        },
        OidcError::Invalid(why) => ApiError::SignInFailed {
            code: "sso_invalid",
            message: why,
        },
    }
}

/// Start signing in through the organization's provider: answers with a
/// redirect there. Steward keeps the sign-in's state, nonce and PKCE
/// verifier for ten minutes, bound to this browser by a cookie.
#[utoipa::path(get, path = "/auth/sso/{slug}", tag = "auth",
    params(("slug" = String, Path), StartQuery),
    responses(
        (status = 303, description = "to the provider's sign-in page"),
        (status = 400, description = "a query parameter out of its schema", body = ErrorBody),
        (status = 404, description = "no organization signs in with this slug", body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 502, description = "the provider could not be reached", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
async fn start(
    State(state): State<SharedState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Path(slug): Path<String>,
    Query(query): Query<StartQuery>,
) -> ApiResult<Response> {
    state.login_limiter.check(ip, None)?;
    let wants_token = matches!(query.format, Some(Format::Token));
    let login_hint = text_field("login_hint", query.login_hint)
        .map_err(|_| ApiError::bad_request("invalid_query", "login_hint: 1 to 512 characters"))?;
    let settings = state
        .store
        .find_sso_by_slug(&slug)
        .await?
        .ok_or(ApiError::NotFound)?;
    let redirect_uri = redirect_uri(&state)
        .ok_or_else(|| ApiError::Unavailable("http.public_url is not set".into()))?;
    let client = client(&state, &settings)?;
    let secrets = oidc::Secrets::new();
    let location = state
        .sso
        .providers
        .authorization_url(&client, &redirect_uri, &secrets, login_hint.as_deref())
        .await
        .map_err(provider_failure)?;
    // A browser with sign-ins under way in other tabs keeps its cookie.
    let browser = cookie(&headers, BROWSER_COOKIE)
        .filter(|b| {
            b.len() == 43
                && b.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        })
        .map(str::to_owned)
        .unwrap_or_else(|| oidc::Secrets::new().state);
    state
        .store
        .begin_sso_attempt(&SsoAttempt {
            state_hash: oidc::digest(&secrets.state),
            org_id: settings.org_id,
            browser_hash: oidc::digest(&browser),
            nonce: secrets.nonce,
            code_verifier: secrets.code_verifier,
            wants_token,
            next: Some(crate::console::safe_next(query.next.as_deref())),
            expires_at: steward_store::now() + chrono::Duration::minutes(ATTEMPT_MINUTES),
        })
        .await?;
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            &state,
            BROWSER_COOKIE,
            &browser,
            ATTEMPT_MINUTES as u64 * 60,
        ),
    );
    Ok(response)
}

/// Where the provider sends people back. The state is taken once; the ID
/// token is checked in full; the person must have a verified address, and
/// be a member already or have one at an allowed domain. Ends in the
/// console signed in, or with a session token as JSON (`format=token`).
#[utoipa::path(get, path = "/auth/sso/callback", tag = "auth",
    params(CallbackQuery),
    responses(
        (status = 200, description = "signed in (`format=token`)", body = crate::routes::auth::SessionResponse),
        (status = 303, description = "signed in: to the console"),
        (status = 400, description = "no state, or no code", body = ErrorBody),
        (status = 401, description = "a state unknown, used or expired (`unknown_state`), or another browser's (`other_browser`); the provider refused (`sso_refused`), or its answer does not hold (`sso_invalid`: audience, issuer, nonce, signature, expiry)", body = ErrorBody),
        (status = 403, description = "`email_unverified`, `no_email`, `domain_not_allowed`, `member_of_another_organization`, `other_identity`", body = ErrorBody),
        (status = 409, description = "single sign-on was turned off meanwhile (`sso_off`)", body = ErrorBody),
        (status = 502, description = "the provider could not be reached", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
async fn callback(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    if query.state.is_empty() || query.state.len() > 256 {
        return ApiError::bad_request("invalid_query", "state: 1 to 256 characters")
            .into_response();
    }
    let attempt = match state
        .store
        .take_sso_attempt(&oidc::digest(&query.state))
        .await
    {
        Ok(Some(a)) if a.expires_at > steward_store::now() => a,
        Ok(_) => {
            return ApiError::SignInFailed {
                code: "unknown_state",
                message: "this sign-in was used already or has expired: start again".into(),
            }
            .into_response();
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    let same_browser =
        cookie(&headers, BROWSER_COOKIE).is_some_and(|b| oidc::digest(b) == attempt.browser_hash);
    let signed_in = if same_browser {
        finish(&state, &attempt, &query).await
    } else {
        Err(ApiError::SignInFailed {
            code: "other_browser",
            message: "this sign-in was started in another browser: start again here".into(),
        })
    };
    match signed_in {
        Ok(session) if attempt.wants_token => axum::Json(session).into_response(),
        Ok(session) => {
            let next = attempt.next.as_deref().unwrap_or("/");
            let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, next)]).into_response();
            let ttl = state.config.auth.token_ttl_secs;
            let cookies = response.headers_mut();
            cookies.append(
                header::SET_COOKIE,
                set_cookie(
                    &state,
                    crate::console::session::SESSION_COOKIE,
                    &session.token,
                    ttl,
                ),
            );
            cookies.append(
                header::SET_COOKIE,
                set_cookie(&state, BROWSER_COOKIE, "", 0),
            );
            response
        }
        Err(e) if attempt.wants_token => e.into_response(),
        Err(e) => crate::console::sign_in_failed(e),
    }
}

async fn finish(
    state: &SharedState,
    attempt: &SsoAttempt,
    query: &CallbackQuery,
) -> ApiResult<crate::routes::auth::SessionResponse> {
    if let Some(error) = &query.error {
        return Err(ApiError::SignInFailed {
            code: "sso_refused",
            message: format!(
                "the identity provider did not sign you in ({})",
                oidc::safe_code(error)
            ),
        });
    }
    let code = query
        .code
        .as_deref()
        .filter(|c| !c.is_empty() && c.len() <= 2048)
        .ok_or_else(|| ApiError::bad_request("invalid_query", "code: missing"))?;
    let scope = TenantScope::for_operator(attempt.org_id);
    let settings = state
        .store
        .sso_settings(&scope)
        .await?
        .ok_or(ApiError::Conflict {
            code: "sso_off",
            message: "single sign-on was turned off for this organization".into(),
        })?;
    let client = client(state, &settings)?;
    // A provider that names itself must be this sign-in's (mix-up attacks).
    if query.iss.as_ref().is_some_and(|iss| *iss != client.issuer) {
        return Err(ApiError::SignInFailed {
            code: "sso_invalid",
            message: "the answer came from another identity provider".into(),
        });
    }
    let redirect_uri = redirect_uri(state)
        .ok_or_else(|| ApiError::Unavailable("http.public_url is not set".into()))?;
    let person = state
        .sso
        .providers
        .sign_in(
            &client,
            &redirect_uri,
            code,
            &attempt.code_verifier,
            &attempt.nonce,
        )
        .await
        .map_err(provider_failure)?;
    let refused = |code, message| ApiError::Forbidden { code, message };
    let address = person.email.ok_or(refused(
        "no_email",
        "the identity provider sent no email address: it must grant the email scope",
    ))?;
    if !person.email_verified {
        return Err(refused(
            "email_unverified",
            "the identity provider has not verified your email address",
        ));
    }
    let email = Email::parse("email", &address).map_err(|_| {
        refused(
            "no_email",
            "the identity provider's email address is not one",
        )
    })?;
    let at = email.as_str().rsplit('@').next().unwrap_or_default();
    let create = if settings.allowed_domains.iter().any(|d| d == at) {
        // A password no one knows: an admin may give one later.
        let password = Password::parse("password", steward_auth::generate_password())?;
        Some(NewUser {
            email: email.clone(),
            name: person.name.and_then(|n| PersonName::parse("name", n).ok()),
            role: settings.default_role,
            password_hash: state
                .hasher
                .hash(&password)
                .await
                .map_err(ApiError::Internal)?,
            must_change_password: false,
        })
    } else {
        None
    };
    let identity = SsoIdentity {
        issuer: client.issuer,
        subject: person.subject,
        email,
    };
    let mut found = state.store.sso_member(&scope, &identity, create).await;
    if let Err(StoreError::Conflict(Conflict::EmailTaken | Conflict::Duplicate)) = found {
        // The same person's sign-in in another tab made them a moment ago.
        found = state.store.sso_member(&scope, &identity, None).await;
    }
    let member = match found {
        Ok(member) => member,
        Err(StoreError::NotFound) => {
            return Err(refused(
                "domain_not_allowed",
                "your address is not at a domain this organization lets join: ask an admin to add you",
            ));
        }
        Err(StoreError::Conflict(Conflict::OtherOrganization)) => {
            return Err(refused(
                "member_of_another_organization",
                "your address belongs to a member of another organization",
            ));
        }
        Err(StoreError::Conflict(Conflict::OtherIdentity)) => {
            return Err(refused(
                "other_identity",
                "this member signs in as another account of this provider",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let user = member.user();
    tracing::info!(org_id = %user.org_id, user_id = %user.id, "signed in through single sign-on");
    crate::routes::auth::session_for(state, user).await
}

/// Whether `org` requires single sign-on of people who are not owners.
pub async fn required(state: &AppState, org: OrgId) -> ApiResult<bool> {
    Ok(state
        .store
        .sso_settings(&TenantScope::for_operator(org))
        .await?
        .is_some_and(|s| s.required))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_made_from_names_and_checked() {
        assert_eq!(slug_of("Acme Ltd."), "acme-ltd");
        assert_eq!(slug_of("  Ünïcode & Co  "), "n-code-co");
        assert!(check_slug(&slug_of("Acme Ltd.")).is_ok());
        assert!(check_slug("callback").is_err(), "the callback's own path");
        for bad in [
            "a",
            "-acme",
            "acme-",
            "Acme",
            "ac me",
            "acme/..",
            &"a".repeat(64),
        ] {
            assert!(check_slug(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn domains_are_lowercased_and_must_be_names() {
        assert_eq!(domain("@Acme.Example").unwrap(), "acme.example");
        for bad in [
            "acme",
            "acme..example",
            "-acme.example",
            "acme.example/x",
            "a b.example",
            "",
        ] {
            assert!(domain(bad).is_err(), "{bad}");
        }
    }
}

//! A Steward with no organization yet: the console offers to create the
//! first one and its owner, and signs them in. Once one exists the page is
//! gone (it redirects to the sign-in page), whatever `auth.registration` says.

use std::sync::atomic::Ordering;

use askama::Template;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use steward_domain::{Email, OrganizationName, Password, PersonName, Role, Tier};
use steward_store::{NewOrganization, NewUser};

use super::session::{SESSION_COOKIE, form_token, set_cookie};
use super::view;
use crate::auth::ClientIp;
use crate::error::ApiError;
use crate::state::{AppState, SharedState};

/// Whether any organization exists. Once one does, the answer is kept: an
/// organization is never the last to go without the operator's hand.
pub async fn has_organizations(state: &AppState) -> Result<bool, ApiError> {
    if state.has_organizations.load(Ordering::Relaxed) {
        return Ok(true);
    }
    let any = state.store.any_organization().await?;
    if any {
        state.has_organizations.store(true, Ordering::Relaxed);
    }
    Ok(any)
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    csrf: String,
    organization: String,
    name: String,
    email: String,
    error: Option<String>,
}

pub async fn form(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    match has_organizations(&state).await {
        Ok(true) => return Redirect::to("/login").into_response(),
        Ok(false) => {}
        Err(e) => return view::api_failure(e.into()),
    }
    let token = form_token(&state, &headers);
    let page = view::render(&SetupPage {
        csrf: token.csrf.clone(),
        organization: String::new(),
        name: String::new(),
        email: String::new(),
        error: None,
    });
    token.set_on(&state, page)
}

#[derive(Deserialize)]
pub struct FirstOrganization {
    organization: String,
    name: Option<String>,
    email: String,
    password: String,
}

pub async fn submit(
    State(state): State<SharedState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<FirstOrganization>,
) -> Response {
    match has_organizations(&state).await {
        Ok(true) => return Redirect::to("/login").into_response(),
        Ok(false) => {}
        Err(e) => return view::api_failure(e.into()),
    }
    let again = |error: ApiError| {
        let failure = super::bridge::Failure::from(error);
        view::render_with(
            failure.status,
            &SetupPage {
                csrf: form_token(&state, &headers).csrf,
                organization: form.organization.clone(),
                name: form.name.clone().unwrap_or_default(),
                email: form.email.clone(),
                error: Some(failure.message),
            },
        )
    };
    if let Err(e) = state.login_limiter.check(ip, None) {
        return again(e);
    }
    let parsed = (|| {
        Ok::<_, ApiError>((
            OrganizationName::parse("organization", form.organization.clone())?,
            form.name
                .clone()
                .filter(|n| !n.trim().is_empty())
                .map(|n| PersonName::parse("name", n))
                .transpose()?,
            Email::parse("email", form.email.trim())?,
            Password::parse("password", form.password.clone())?,
        ))
    })();
    let (organization, name, email, password) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return again(e),
    };
    let password_hash = match state.hasher.hash(&password).await {
        Ok(hash) => hash,
        Err(e) => return again(ApiError::Internal(e)),
    };
    let created = state
        .store
        .create_organization(
            NewOrganization {
                name: organization,
                tier: Tier::Free,
            },
            NewUser {
                email,
                name,
                role: Role::Owner,
                password_hash,
                must_change_password: false,
            },
        )
        .await;
    let (organization, owner) = match created {
        Ok(created) => created,
        Err(e) => return again(e.into()),
    };
    state.has_organizations.store(true, Ordering::Relaxed);
    tracing::info!(org_id = %organization.id, user_id = %owner.id, "the first organization was created in the console");
    let (token, _) = state
        .tokens
        .issue(owner.id, organization.id, owner.session_generation);
    let mut response = Redirect::to("/").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            &state,
            SESSION_COOKIE,
            &token,
            state.config.auth.token_ttl_secs,
        ),
    );
    response
}

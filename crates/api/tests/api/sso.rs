//! Single sign-on against a real OpenID provider (oidc-provider from npm,
//! started by `scripts/oidc-provider`): the tests play the browser, from
//! Steward's sign-in link through the provider and back to the callback.

use std::collections::HashMap;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use steward_testkit::app::{Reply, Session, TestApp, spawn_app_with};

/// Where Steward says it is; the tests carry the provider's redirects there.
const PUBLIC_URL: &str = "http://steward.test";

/// The provider's issuer, or None (the test passes without running, and
/// the `skipped` summary says so).
fn issuer() -> Option<String> {
    let issuer = std::env::var("STEWARD_TEST_OIDC_ISSUER")
        .ok()
        .filter(|v| !v.is_empty());
    if issuer.is_none() {
        eprintln!(
            "skipped: STEWARD_TEST_OIDC_ISSUER is not set (eval \"$(scripts/oidc-provider)\")"
        );
    }
    issuer
}

/// Registers a client of Steward's at the provider (dynamic registration).
async fn register_client(issuer: &str) -> (String, String) {
    let registered: Value = reqwest::Client::new()
        .post(format!("{issuer}/reg"))
        .json(&json!({
            "redirect_uris": [format!("{PUBLIC_URL}/api/v1/auth/sso/callback")],
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        registered["client_id"].as_str().unwrap().to_owned(),
        registered["client_secret"].as_str().unwrap().to_owned(),
    )
}

async fn app_with_sso(issuer: &str) -> (TestApp, Session) {
    let app = spawn_app_with(|c| {
        c.http.public_url = Some(PUBLIC_URL.into());
        // The provider runs on loopback.
        c.outbound.allow_private_networks = true;
    })
    .await;
    let owner = app.register("owner@acme.example", "Acme").await;
    let (client_id, client_secret) = register_client(issuer).await;
    let set = app
        .put(
            "/api/v1/organizations/sso",
            &owner.token,
            json!({
                "slug": "acme",
                "issuer": issuer,
                "client_id": client_id,
                "client_secret": client_secret,
                "allowed_domains": ["acme.example"],
            }),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    (app, owner)
}

/// A browser: its cookies for Steward and for the provider, by name (the
/// provider's paths are not told apart: its cookie names are unique).
#[derive(Default)]
struct Browser {
    cookies: HashMap<String, String>,
}

impl Browser {
    fn keep(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all(SET_COOKIE) {
            let pair = value.to_str().unwrap().split(';').next().unwrap();
            if let Some((name, value)) = pair.split_once('=') {
                self.cookies.insert(name.trim().into(), value.into());
            }
        }
    }

    fn header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn get(&mut self, url: &str) -> reqwest::Response {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let response = client
            .get(url)
            .header(COOKIE, self.header())
            .send()
            .await
            .unwrap();
        self.keep(&response);
        response
    }

    /// From Steward's sign-in link to the provider's redirect back: the
    /// callback URL on the test app. `change` may alter the request sent
    /// to the provider, as an attacker in the browser could.
    async fn through_provider(
        &mut self,
        app: &TestApp,
        start: &str,
        account: &str,
        change: impl Fn(url::Url) -> url::Url,
    ) -> String {
        let started = self.get(&app.url(start)).await;
        assert_eq!(started.status(), StatusCode::SEE_OTHER, "{start}");
        let mut at = url::Url::parse(location(&started)).unwrap();
        at.query_pairs_mut().append_pair("login_hint", account);
        let mut next = change(at).to_string();
        for _ in 0..8 {
            if let Some(back) = next.strip_prefix(PUBLIC_URL) {
                return app.url(back);
            }
            let hop = self.get(&next).await;
            assert!(hop.status().is_redirection(), "{next}: {}", hop.status());
            // The provider's redirects may be relative to where it is.
            next = url::Url::parse(&next)
                .unwrap()
                .join(location(&hop))
                .unwrap()
                .to_string();
        }
        panic!("the provider did not send the browser back");
    }

    /// A whole sign-in ending in an API token (or why not).
    async fn sign_in(&mut self, app: &TestApp, slug: &str, account: &str) -> Reply {
        let start = format!("/api/v1/auth/sso/{slug}?format=token");
        let callback = self.through_provider(app, &start, account, |u| u).await;
        self.finish(&callback).await
    }

    async fn finish(&mut self, callback: &str) -> Reply {
        TestApp::read(self.get(callback).await).await
    }
}

fn location(response: &reqwest::Response) -> &str {
    response.headers()[LOCATION].to_str().unwrap()
}

async fn members(app: &TestApp, owner: &Session) -> Vec<String> {
    let listed = app.get("/api/v1/organizations/members", &owner.token).await;
    listed.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["email"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn members_sign_in_and_people_of_allowed_domains_are_made_members() {
    let Some(issuer) = issuer() else { return };
    let (app, owner) = app_with_sso(&issuer).await;

    // The owner, an existing member, by address.
    let signed_in = Browser::default()
        .sign_in(&app, "acme", "owner@acme.example")
        .await;
    assert_eq!(signed_in.status, StatusCode::OK, "{}", signed_in.text);
    assert_eq!(signed_in.body["user"]["id"], owner.user_id.as_str());
    let me = app
        .get("/api/v1/auth/me", signed_in.body["token"].as_str().unwrap())
        .await;
    assert_eq!(me.body["role"], "owner", "{}", me.text);

    // Someone new at an allowed domain: a member just in time, once.
    let ada = Browser::default()
        .sign_in(&app, "acme", "ada@acme.example")
        .await;
    assert_eq!(ada.status, StatusCode::OK, "{}", ada.text);
    assert_eq!(ada.body["user"]["role"], "member");
    let again = Browser::default()
        .sign_in(&app, "acme", "ada@acme.example")
        .await;
    assert_eq!(again.body["user"]["id"], ada.body["user"]["id"]);
    assert_eq!(
        members(&app, &owner).await,
        ["owner@acme.example", "ada@acme.example"]
    );
    let audit = app
        .get("/api/v1/organizations/audit-log", &owner.token)
        .await;
    assert!(audit.text.contains("\"via\":\"sso\""), "{}", audit.text);

    // The console: a session cookie, and on to the page asked for.
    let mut browser = Browser::default();
    let callback = browser
        .through_provider(
            &app,
            "/api/v1/auth/sso/acme?next=/conversations",
            "ada@acme.example",
            |u| u,
        )
        .await;
    let landed = browser.get(&callback).await;
    assert_eq!(landed.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&landed), "/conversations");
    let page = browser.get(&app.url("/conversations")).await;
    assert_eq!(page.status(), StatusCode::OK, "signed in to the console");

    // The sign-in page's form leads to the organization's link.
    let form = browser.get(&app.url("/login/sso?organization=acme")).await;
    assert_eq!(location(&form), "/api/v1/auth/sso/acme?next=%2F");
}

#[tokio::test]
async fn a_sign_in_whose_answer_does_not_hold_is_refused_and_makes_no_one() {
    let Some(issuer) = issuer() else { return };
    let (app, owner) = app_with_sso(&issuer).await;
    let token_start = "/api/v1/auth/sso/acme?format=token";

    // The provider is asked for another nonce than the one Steward keeps.
    let mut browser = Browser::default();
    let callback = browser
        .through_provider(&app, token_start, "eve@acme.example", |mut u| {
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k == "nonce" {
                        "forged".into()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            u.query_pairs_mut().clear().extend_pairs(pairs);
            u
        })
        .await;
    let forged = browser.finish(&callback).await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED, "{}", forged.text);
    assert_eq!(forged.code(), "sso_invalid");
    assert!(forged.text.contains("nonce"), "{}", forged.text);

    // An ID token for another audience, signed by the provider's own key.
    let other = Browser::default()
        .sign_in(&app, "acme", "other-audience.eve@acme.example")
        .await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED, "{}", other.text);
    assert!(other.text.contains("another client"), "{}", other.text);

    // An address the provider has not verified; a domain not allowed.
    let unverified = Browser::default()
        .sign_in(&app, "acme", "unverified.dan@acme.example")
        .await;
    assert_eq!(
        unverified.status,
        StatusCode::FORBIDDEN,
        "{}",
        unverified.text
    );
    assert_eq!(unverified.code(), "email_unverified");
    let outsider = Browser::default()
        .sign_in(&app, "acme", "mallory@elsewhere.example")
        .await;
    assert_eq!(outsider.status, StatusCode::FORBIDDEN, "{}", outsider.text);
    assert_eq!(outsider.code(), "domain_not_allowed");

    // A code that expired before it came back.
    let mut browser = Browser::default();
    let callback = browser
        .through_provider(&app, token_start, "expiring.eve@acme.example", |u| u)
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let expired = browser.finish(&callback).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED, "{}", expired.text);
    assert_eq!(expired.code(), "sso_refused");
    assert!(expired.text.contains("invalid_grant"), "{}", expired.text);

    // A state used once already; a callback carried to another browser.
    let mut browser = Browser::default();
    let callback = browser
        .through_provider(&app, token_start, "owner@acme.example", |u| u)
        .await;
    assert_eq!(browser.finish(&callback).await.status, StatusCode::OK);
    let replayed = browser.finish(&callback).await;
    assert_eq!(
        replayed.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        replayed.text
    );
    assert_eq!(replayed.code(), "unknown_state");
    let callback = browser
        .through_provider(&app, token_start, "owner@acme.example", |u| u)
        .await;
    let elsewhere = Browser::default().finish(&callback).await;
    assert_eq!(
        elsewhere.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        elsewhere.text
    );
    assert_eq!(elsewhere.code(), "other_browser", "{}", elsewhere.text);
    assert_eq!(
        browser.finish(&callback).await.code(),
        "unknown_state",
        "the state is spent by the attempt from the other browser"
    );

    // The provider's refusal, and a callback with no state at all.
    let refused = browser
        .finish(&app.url("/api/v1/auth/sso/callback?error=access_denied&state=unknown"))
        .await;
    assert_eq!(refused.code(), "unknown_state");
    let bare = browser.finish(&app.url("/api/v1/auth/sso/callback")).await;
    assert_eq!(bare.status, StatusCode::BAD_REQUEST);

    assert_eq!(
        members(&app, &owner).await,
        ["owner@acme.example"],
        "no one was made a member"
    );
}

#[tokio::test]
async fn owners_set_up_single_sign_on_and_may_require_it_of_everyone_else() {
    let Some(issuer) = issuer() else { return };
    let (app, owner) = app_with_sso(&issuer).await;
    let admin = app.member(&owner, "admin@acme.example", "admin").await;
    let member = app.member(&owner, "member@acme.example", "member").await;

    let shown = app.get("/api/v1/organizations/sso", &admin.token).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
    assert_eq!(
        shown.body["sign_in_url"],
        "http://steward.test/api/v1/auth/sso/acme"
    );
    assert_eq!(
        shown.body["redirect_uri"],
        "http://steward.test/api/v1/auth/sso/callback"
    );
    assert_eq!(shown.body["provider"], "own");
    assert!(!shown.text.contains("client_secret"), "{}", shown.text);
    assert_eq!(
        app.get("/api/v1/organizations/sso", &member.token)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let by_admin = app
        .put(
            "/api/v1/organizations/sso",
            &admin.token,
            json!({"allowed_domains": []}),
        )
        .await;
    assert_eq!(by_admin.status, StatusCode::FORBIDDEN);

    let put = |body: Value| app.put("/api/v1/organizations/sso", &owner.token, body);
    let with = |extra: Value| {
        let mut body = json!({
            "slug": "acme", "issuer": issuer, "client_id": shown.body["client_id"],
            "allowed_domains": ["acme.example"],
        });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    for (extra, status, code) in [
        (json!({"default_role": "owner"}), 422, "invalid_role"),
        (json!({"slug": "Not A Slug"}), 422, "invalid_slug"),
        (json!({"slug": "callback"}), 422, "invalid_slug"),
        (
            json!({"allowed_domains": ["not a domain"]}),
            422,
            "invalid_domain",
        ),
        (
            json!({"issuer": "ftp://idp.example"}),
            422,
            "issuer_unusable",
        ),
        (
            json!({"issuer": "http://127.0.0.1:1", "client_secret": "s"}),
            422,
            "issuer_unusable",
        ),
        (
            json!({"client_id": "someone-else"}),
            422,
            "validation_failed",
        ),
        (
            json!({"issuer": null, "client_id": null}),
            409,
            "no_platform_provider",
        ),
        (json!({"unknown": 1}), 422, ""),
    ] {
        let reply = put(with(extra.clone())).await;
        assert_eq!(reply.status.as_u16(), status, "{extra}: {}", reply.text);
        if !code.is_empty() {
            assert_eq!(reply.code(), code, "{extra}: {}", reply.text);
        }
    }
    // The secret is kept when the issuer and client stay; now required.
    let required = put(with(json!({"required": true, "default_role": "advisor"}))).await;
    assert_eq!(required.status, StatusCode::OK, "{}", required.text);
    assert_eq!(required.body["required"], true);

    // Everyone but owners now signs in through the provider.
    let by_password = app.login("member@acme.example", "Correct-Horse-9").await;
    assert_eq!(
        by_password.status,
        StatusCode::FORBIDDEN,
        "{}",
        by_password.text
    );
    assert_eq!(by_password.code(), "sso_required");
    let wrong = app.login("member@acme.example", "not-the-password").await;
    assert_eq!(
        wrong.status,
        StatusCode::UNAUTHORIZED,
        "told only after the password holds"
    );
    let owner_login = app.login("owner@acme.example", "Correct-Horse-9").await;
    assert_eq!(owner_login.status, StatusCode::OK, "{}", owner_login.text);
    let through_sso = Browser::default()
        .sign_in(&app, "acme", "member@acme.example")
        .await;
    assert_eq!(through_sso.status, StatusCode::OK, "{}", through_sso.text);
    assert_eq!(
        through_sso.body["user"]["role"], "member",
        "their role stays theirs"
    );
    let new = Browser::default()
        .sign_in(&app, "acme", "new@acme.example")
        .await;
    assert_eq!(new.body["user"]["role"], "advisor", "the default role now");

    // Another organization cannot take the slug, nor sign in Acme's members.
    let other = app.register("owner@globex.example", "Globex").await;
    let taken = app
        .put(
            "/api/v1/organizations/sso",
            &other.token,
            json!({"slug": "acme", "issuer": issuer, "client_id": "x", "client_secret": "y"}),
        )
        .await;
    assert_eq!(taken.code(), "slug_taken", "{}", taken.text);
    let (client_id, client_secret) = register_client(&issuer).await;
    let globex = app
        .put(
            "/api/v1/organizations/sso",
            &other.token,
            json!({"slug": "globex", "issuer": issuer, "client_id": client_id,
                   "client_secret": client_secret, "allowed_domains": ["acme.example"]}),
        )
        .await;
    assert_eq!(globex.status, StatusCode::OK, "{}", globex.text);
    let poached = Browser::default()
        .sign_in(&app, "globex", "ada.new@acme.example")
        .await;
    assert_eq!(
        poached.status,
        StatusCode::OK,
        "a new person may join whichever they are sent to"
    );
    let member_elsewhere = Browser::default()
        .sign_in(&app, "globex", "member@acme.example")
        .await;
    assert_eq!(
        member_elsewhere.code(),
        "member_of_another_organization",
        "{}",
        member_elsewhere.text
    );

    // Turned off: the link is gone and passwords work again.
    assert_eq!(
        app.delete("/api/v1/organizations/sso", &owner.token)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete("/api/v1/organizations/sso", &owner.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/api/v1/organizations/sso", &owner.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let gone = Browser::default()
        .get(&app.url("/api/v1/auth/sso/acme"))
        .await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        app.login("member@acme.example", "Correct-Horse-9")
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_platform_provider_serves_organizations_without_their_own() {
    let Some(issuer) = issuer() else { return };
    let (client_id, client_secret) = register_client(&issuer).await;
    let app = spawn_app_with(|c| {
        c.http.public_url = Some(PUBLIC_URL.into());
        c.auth.sso_issuer = Some(issuer.clone());
        c.auth.sso_client_id = Some(client_id.clone());
        c.auth.sso_client_secret = Some(steward_config::Secret::new(&client_secret));
    })
    .await;
    let owner = app.register("owner@initech.example", "Initech Ltd.").await;
    let set = app
        .put(
            "/api/v1/organizations/sso",
            &owner.token,
            json!({"allowed_domains": ["initech.example"]}),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    assert_eq!(set.body["provider"], "platform");
    assert_eq!(set.body["slug"], "initech-ltd", "made from the name");
    assert_eq!(set.body["issuer"], issuer.as_str());
    let peter = Browser::default()
        .sign_in(&app, "initech-ltd", "peter@initech.example")
        .await;
    assert_eq!(peter.status, StatusCode::OK, "{}", peter.text);
}

#[tokio::test]
async fn single_sign_on_needs_a_public_url_and_refuses_private_issuers() {
    // No provider needed: both are refused before one is asked.
    let app = spawn_app_with(|_| {}).await;
    let owner = app.register("owner@acme.example", "Acme").await;
    let body = json!({"issuer": "https://idp.example", "client_id": "a", "client_secret": "b"});
    let refused = app
        .put("/api/v1/organizations/sso", &owner.token, body.clone())
        .await;
    assert_eq!(refused.code(), "public_url_missing", "{}", refused.text);

    let app = spawn_app_with(|c| c.http.public_url = Some(PUBLIC_URL.into())).await;
    let owner = app.register("owner@acme.example", "Acme").await;
    for issuer in [
        "http://idp.example",
        "https://127.0.0.1/",
        "https://10.0.0.7",
        "https://169.254.169.254/latest",
        "https://[::1]:8443",
        "https://idp.example/?tenant=x",
    ] {
        let reply = app
            .put(
                "/api/v1/organizations/sso",
                &owner.token,
                json!({"issuer": issuer, "client_id": "a", "client_secret": "b"}),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{issuer}: {}",
            reply.text
        );
        assert_eq!(reply.code(), "issuer_unusable", "{issuer}");
    }
    // A name that resolves to loopback is refused when it is looked up.
    let reply = app
        .put(
            "/api/v1/organizations/sso",
            &owner.token,
            json!({"issuer": "https://localhost:9", "client_id": "a", "client_secret": "b"}),
        )
        .await;
    assert_eq!(reply.code(), "issuer_unusable", "{}", reply.text);
    assert!(reply.text.contains("refused"), "{}", reply.text);
    assert_eq!(
        app.get("/api/v1/organizations/sso", &owner.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_master_key_rotation_reseals_single_sign_on_secrets() {
    let Some(issuer) = issuer() else { return };
    let (app, _) = app_with_sso(&issuer).await;
    // The test configuration's master key is 32 zero bytes.
    let rotated = steward_auth::Sealer::new(&[9; 32]).with_previous(Some(&[0; 32]));
    let done = steward_api::reseal_sso_secrets(app.store.as_ref(), &rotated)
        .await
        .unwrap();
    assert_eq!(
        (done.resealed, done.current, done.unreadable.len()),
        (1, 0, 0)
    );
    let again = steward_api::reseal_sso_secrets(app.store.as_ref(), &rotated)
        .await
        .unwrap();
    assert_eq!((again.resealed, again.current), (0, 1));
    // The old key alone no longer opens it, and says whose it is.
    let stale = steward_auth::Sealer::new(&[0; 32]);
    let stale = steward_api::reseal_sso_secrets(app.store.as_ref(), &stale)
        .await
        .unwrap();
    assert_eq!(stale.unreadable.len(), 1);
}

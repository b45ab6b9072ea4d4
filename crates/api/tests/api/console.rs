//! The console over plain HTTP: its session cookie and CSRF tokens, its
//! headers, its sign-in limits, and the tenancy walk of every page and form.
//! (What a browser does with the pages is tested in Chromium, in
//! crates/steward/tests/console.rs.)

use std::collections::BTreeSet;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::json;
use steward_testkit::app::{Session, TestApp, spawn_app, spawn_app_with};

/// A browser signed in to the console as `session` (the console's cookie
/// holds the same token the API issues).
pub(crate) struct Console<'a> {
    app: &'a TestApp,
    cookie: String,
    csrf: String,
}

pub(crate) struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub html: String,
}

fn csrf_of(html: &str) -> String {
    for marker in [r#"name="csrf-token" content=""#, r#"name="csrf" value=""#] {
        if let Some(at) = html.find(marker) {
            let rest = &html[at + marker.len()..];
            return rest[..rest.find('"').unwrap()].to_owned();
        }
    }
    panic!("no CSRF token in {html}");
}

impl<'a> Console<'a> {
    /// Signed in at the home page (for an advisor, where it sends them).
    pub(crate) async fn open(app: &'a TestApp, session: &Session) -> Self {
        let mut console = Console {
            app,
            cookie: format!("steward_session={}", session.token),
            csrf: String::new(),
        };
        let mut home = console.get("/").await;
        if home.status == StatusCode::SEE_OTHER {
            home = console.get(location(&home)).await;
        }
        assert_eq!(home.status, StatusCode::OK, "{}", home.html);
        console.csrf = csrf_of(&home.html);
        console
    }

    pub(crate) async fn get(&self, path: &str) -> Page {
        let response = self
            .app
            .client
            .get(self.app.url(path))
            .header("cookie", &self.cookie)
            .header("accept", "text/html,*/*")
            .send()
            .await
            .unwrap();
        read(response).await
    }

    /// A form sent with `fields` and the page's CSRF token.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut form: Vec<(&str, &str)> = vec![("csrf", &self.csrf)];
        form.extend_from_slice(fields);
        self.post_raw(path, &form).await
    }

    /// A form sent with exactly `fields`.
    async fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let response = self
            .app
            .client
            .post(self.app.url(path))
            .header("cookie", &self.cookie)
            .form(fields)
            .send()
            .await
            .unwrap();
        read(response).await
    }
}

async fn read(response: reqwest::Response) -> Page {
    Page {
        status: response.status(),
        headers: response.headers().clone(),
        html: response.text().await.unwrap(),
    }
}

pub(crate) fn location(page: &Page) -> &str {
    page.headers
        .get(LOCATION)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_default()
}

#[tokio::test]
async fn pages_need_a_session_and_forms_need_the_token_of_that_session() {
    let app = spawn_app().await;
    let a = app.register("a@example.org", "Alpha").await;
    let b = app.register("b@example.org", "Beta").await;

    let anonymous = app.client.get(app.url("/chatbots")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        anonymous.headers()[LOCATION],
        "/login?next=/chatbots",
        "sign in first, then back here"
    );

    let console = Console::open(&app, &a).await;
    let other = Console::open(&app, &b).await;
    assert_ne!(console.csrf, other.csrf, "each session has its own token");

    let without = console.post_raw("/chatbots", &[("name", "Forged")]).await;
    assert_eq!(without.status, StatusCode::FORBIDDEN);
    assert!(without.html.contains("Form refused"));
    let wrong = console
        .post_raw(
            "/chatbots",
            &[("csrf", other.csrf.as_str()), ("name", "Forged")],
        )
        .await;
    assert_eq!(
        wrong.status,
        StatusCode::FORBIDDEN,
        "another session's token"
    );
    let list = app.get("/api/v1/chatbots", &a.token).await;
    assert_eq!(list.body["total"], 0, "nothing was created");

    let made = console.post("/chatbots", &[("name", "Helpdesk")]).await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.html);
    assert!(location(&made).starts_with("/chatbots/"));
    let list = app.get("/api/v1/chatbots", &a.token).await;
    assert_eq!(list.body["chatbots"][0]["name"], "Helpdesk");

    // The script's way in: the API behind the session cookie, the token in
    // a header for anything but a read.
    let me = console.get("/console/api/auth/me").await;
    assert_eq!(me.status, StatusCode::OK);
    assert!(me.html.contains("a@example.org"));
    let forged = app
        .client
        .post(app.url("/console/api/chatbots"))
        .header("cookie", &console.cookie)
        .json(&json!({"name": "Forged"}))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let sent = app
        .client
        .post(app.url("/console/api/chatbots"))
        .header("cookie", &console.cookie)
        .header("x-csrf-token", &console.csrf)
        .json(&json!({"name": "From the script"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::CREATED);
    // The API's body limit holds through the bridge too.
    let oversized = app
        .client
        .post(app.url("/console/api/chatbots"))
        .header("cookie", &console.cookie)
        .header("x-csrf-token", &console.csrf)
        .json(&json!({"name": "Big", "system_prompt": "x".repeat(1_500_000)}))
        .send()
        .await
        .unwrap();
    assert_eq!(oversized.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let nobody = app
        .client
        .get(app.url("/console/api/auth/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(nobody.status(), StatusCode::UNAUTHORIZED);
    // A bearer token sent to the bridge is not used: only the cookie is.
    let bearer_only = app
        .client
        .get(app.url("/console/api/auth/me"))
        .bearer_auth(&a.token)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer_only.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn pages_are_not_framed_run_no_inline_script_and_are_not_cached() {
    let app = spawn_app_with(|c| c.http.behind_tls = true).await;
    let a = app.register("a@example.org", "Alpha").await;

    let login = app.client.get(app.url("/login")).send().await.unwrap();
    let cookie = login.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    let console = Console::open(&app, &a).await;
    for path in ["/login", "/", "/chatbots", "/no-such-page"] {
        let page = console.get(path).await;
        let csp = page.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(page.headers["x-frame-options"], "DENY");
        assert_eq!(page.headers["x-content-type-options"], "nosniff");
        assert!(page.headers.contains_key("strict-transport-security"));
        assert!(
            !page.html.contains("<script>") && !page.html.contains(" onclick="),
            "{path}: no inline script"
        );
    }
    let home = console.get("/").await;
    assert_eq!(home.headers["cache-control"], "no-store");
    let lost = console.get("/no-such-page").await;
    assert_eq!(lost.status, StatusCode::NOT_FOUND);
    assert!(lost.html.contains("Not found"), "a page for a browser");
    let api_client = app
        .client
        .get(app.url("/no-such-page"))
        .send()
        .await
        .unwrap();
    assert_eq!(api_client.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        api_client.headers()["content-type"],
        "application/json",
        "JSON for the rest"
    );

    // Signing in over the form sets a Secure session cookie.
    let login_page = app.client.get(app.url("/login")).send().await.unwrap();
    let browser = login_page.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = csrf_of(&login_page.text().await.unwrap());
    let signed_in = app
        .client
        .post(app.url("/login"))
        .header("cookie", &browser)
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", "a@example.org"),
            ("password", "Correct-Horse-9"),
            ("next", "//evil.example/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        signed_in.headers()[LOCATION],
        "/",
        "never sent to another site"
    );
    let session = signed_in.headers()[SET_COOKIE].to_str().unwrap();
    assert!(session.starts_with("steward_session=") && session.contains("Secure"));

    // Signing out clears it, and ends the session on the server: a copy of
    // the cookie kept elsewhere no longer opens a page.
    let out = console.post("/logout", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let cleared = out.headers[SET_COOKIE].to_str().unwrap();
    assert!(cleared.starts_with("steward_session=;") && cleared.contains("Max-Age=0"));
    let copy = console.get("/").await;
    assert_eq!(copy.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&copy), "/login");
    assert_eq!(
        app.get("/api/v1/auth/me", &a.token).await.status,
        StatusCode::UNAUTHORIZED
    );

    // The assets are ours, from the binary, revalidated by their digest.
    let script = app
        .client
        .get(app.url("/assets/console.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    let etag = script.headers()["etag"].clone();
    let again = app
        .client
        .get(app.url("/assets/console.js"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    let missing = app
        .client
        .get(app.url("/assets/../Cargo.toml"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn signing_in_through_the_console_is_limited_as_through_the_api() {
    let app = spawn_app_with(|c| c.auth.login_attempts_per_minute_per_account = 3).await;
    app.register("a@example.org", "Alpha").await;
    let login = app.client.get(app.url("/login")).send().await.unwrap();
    let browser = login.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = csrf_of(&login.text().await.unwrap());
    let attempt = |password: &'static str| {
        let (browser, csrf) = (browser.clone(), csrf.clone());
        let app = &app;
        async move {
            app.client
                .post(app.url("/login"))
                .header("cookie", browser)
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("email", "a@example.org"),
                    ("password", password),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    // (Registering signed in once already.)
    for _ in 0..2 {
        let wrong = attempt("wrong password").await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        assert!(
            wrong
                .text()
                .await
                .unwrap()
                .contains("wrong email or password")
        );
    }
    let limited = attempt("Correct-Horse-9").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.text().await.unwrap().contains("too many attempts"));
}

#[tokio::test]
async fn a_member_gets_the_pages_a_member_may_see() {
    let app = spawn_app().await;
    let owner = app.register("a@example.org", "Alpha").await;
    let member = app.member(&owner, "m@example.org", "member").await;
    let chatbot = app.chatbot(&owner, "Helpdesk").await;
    let connected = app
        .post(
            &format!("/api/v1/chatbots/{chatbot}/channels"),
            &owner.token,
            json!({"kind": "web", "name": "Shop chat", "config": {}}),
        )
        .await;
    assert_eq!(connected.status, StatusCode::CREATED, "{}", connected.text);
    // The overview shows an admin each channel's health, and a member none.
    let overview = Console::open(&app, &owner).await.get("/").await;
    assert!(overview.html.contains("Shop chat") && overview.html.contains("Helpdesk"));
    let console = Console::open(&app, &member).await;
    let overview = console.get("/").await;
    assert_eq!(overview.status, StatusCode::OK);
    assert!(!overview.html.contains("Shop chat"));
    for path in ["/api-keys", "/audit", "/jobs"] {
        let page = console.get(path).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
        assert!(page.html.contains("Not allowed"));
    }
    let page = console.get(&format!("/chatbots/{chatbot}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        !page
            .html
            .contains(&format!("action=\"/chatbots/{chatbot}\""))
    );
    let refused = console
        .post(&format!("/chatbots/{chatbot}/delete"), &[])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get(&format!("/api/v1/chatbots/{chatbot}"), &owner.token)
            .await
            .status,
        StatusCode::OK,
        "still there"
    );
}

/// Every link and form of A's console, followed as B: another
/// organization's ids are pages not found, and nothing of A changes.
#[tokio::test]
async fn every_console_page_and_form_answers_another_organizations_ids_with_not_found() {
    let app = spawn_app().await;
    let a = app.register("a@example.org", "Alpha").await;
    let b = app.register("b@example.org", "Beta").await;
    let chatbot = app.chatbot(&a, "Alpha bot").await;
    let member = app.member(&a, "m@example.org", "member").await;
    let key = app
        .post("/api/v1/api-keys", &a.token, json!({"name": "a key"}))
        .await;
    let api_key = key.body["api_key"]["id"].as_str().unwrap().to_owned();
    let job = steward_testkit::app::dead_job(&app, &a).await;
    let uploaded = app
        .upload(
            &a,
            &chatbot,
            &[("private.md", b"# Private\n\nAlpha's secret.")],
        )
        .await;
    let document = uploaded.body["documents"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = app
        .post(
            &format!("/api/v1/chatbots/{chatbot}/messages"),
            &a.token,
            json!({"text": "private"}),
        )
        .await;
    let conversation = sent.body["conversation_id"].as_str().unwrap().to_owned();
    let context = app
        .post(
            "/api/v1/organizations/context",
            &a.token,
            json!({"title": "Alpha's plans", "text": "Alpha's private priorities."}),
        )
        .await;
    assert_eq!(context.status, StatusCode::CREATED, "{}", context.text);
    let context = context.body["id"].as_str().unwrap().to_owned();
    let channel = app
        .post(
            &format!("/api/v1/chatbots/{chatbot}/channels"),
            &a.token,
            json!({"kind": "web", "name": "site", "config": {}}),
        )
        .await;
    assert_eq!(channel.status, StatusCode::CREATED, "{}", channel.text);
    let channel = channel.body["id"].as_str().unwrap().to_owned();
    let server = app
        .post(
            "/api/v1/tools/servers",
            &a.token,
            json!({"name": "a-crm", "url": "https://a-crm.example.org/mcp"}),
        )
        .await;
    assert_eq!(server.status, StatusCode::CREATED, "{}", server.text);
    let server = server.body["id"].as_str().unwrap().to_owned();
    // A tool to give, so that the chatbot's page has its tools form.
    app.post(
        "/api/v1/integrations/enable",
        &a.token,
        json!({"integration_id": "lead-capture"}),
    )
    .await;
    let a_ids = [
        &server,
        &channel,
        &chatbot,
        &member.user_id,
        &api_key,
        &job,
        &document,
        &conversation,
        &context,
    ];
    let snapshot = || async {
        let mut seen = Vec::new();
        for path in [
            format!("/api/v1/chatbots/{chatbot}"),
            format!("/api/v1/chatbots/{chatbot}/knowledge"),
            format!("/api/v1/chatbots/{chatbot}/channels"),
            "/api/v1/organizations/members".into(),
            "/api/v1/api-keys".into(),
            "/api/v1/tools/servers".into(),
            "/api/v1/organizations/context".into(),
            format!("/api/v1/jobs/{job}"),
        ] {
            seen.push(app.get(&path, &a.token).await.body);
        }
        seen
    };
    // A's console, as A sees it: its links and its forms.
    let as_a = Console::open(&app, &a).await;
    let mut pages: Vec<String> = [
        "/",
        "/chatbots",
        "/members",
        "/api-keys",
        "/jobs",
        "/audit",
        "/usage",
        "/conversations",
        "/tools",
        "/context",
    ]
    .map(String::from)
    .into();
    let mut seen = BTreeSet::new();
    let (mut links, mut forms) = (BTreeSet::new(), BTreeSet::new());
    while let Some(path) = pages.pop() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let page = as_a.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.html);
        let attribute = |piece: &str, name: &str| {
            let at = piece.find(name)? + name.len();
            let value = &piece[at..];
            Some(value[..value.find('"')?].to_owned())
        };
        for piece in page.html.split("<a ").skip(1) {
            // (A web channel's chat page is public: it is for its visitors.)
            if let Some(href) = attribute(piece, "href=\"")
                && href.starts_with('/')
                && !href.starts_with("/chat/")
            {
                links.insert(href);
            }
        }
        for piece in page.html.split("<form ").skip(1) {
            let tag = &piece[..piece.find('>').unwrap()];
            if let Some(action) = attribute(tag, "action=\"")
                && tag.contains("method=\"post\"")
            {
                forms.insert(action);
            }
        }
        for link in &links {
            if !seen.contains(link) && !link.contains('?') {
                pages.push(link.clone());
            }
        }
    }

    // The same, as B. (A's own visit may have changed what A sees: its
    // tool server's health, read when the tools page listed its tools.)
    let before = snapshot().await;
    let as_b = Console::open(&app, &b).await;
    let pattern = |path: &str| {
        a_ids
            .iter()
            .fold(path.to_owned(), |p, id| p.replace(id.as_str(), "{id}"))
    };
    let mut walked = BTreeSet::new();
    let bridge: Vec<String> = vec![
        format!("/console/api/chatbots/{chatbot}"),
        format!("/console/api/chatbots/{chatbot}/knowledge"),
        format!("/console/api/jobs/{job}"),
        format!("/console/api/conversations/{conversation}/messages"),
    ];
    for path in links.iter().chain(bridge.iter()) {
        let page = as_b.get(path).await;
        if pattern(path) != *path {
            assert_eq!(page.status, StatusCode::NOT_FOUND, "GET {path} as B");
        } else {
            assert!(
                page.status.is_success() || page.status == StatusCode::SEE_OTHER,
                "GET {path} as B: {}",
                page.status
            );
        }
        for id in a_ids {
            assert!(!page.html.contains(id.as_str()), "GET {path} leaked an id");
        }
        walked.insert(format!("GET {}", pattern(path)));
    }
    for path in &forms {
        if pattern(path) == *path {
            continue; // B's own organization: creating there is B's right.
        }
        let page = as_b
            .post(
                path,
                &[
                    ("role", "member"),
                    ("name", "x"),
                    ("status", "paused"),
                    ("url", "https://example.org/"),
                    ("kind", "web"),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "POST {path} as B");
        for id in a_ids {
            assert!(!page.html.contains(id.as_str()), "POST {path} leaked an id");
        }
        walked.insert(format!("POST {}", pattern(path)));
    }
    assert_eq!(snapshot().await, before, "nothing of A changed");

    // Every console route that takes an id was reached from a page; a new
    // one must be linked from a page, or added here.
    for route in [
        "GET /chatbots/{id}",
        "GET /chatbots/{id}/knowledge",
        "GET /conversations/{id}",
        "GET /chatbots/{id}/channels",
        "POST /chatbots/{id}/channels",
        "POST /chatbots/{id}/channels/{id}/delete",
        "POST /chatbots/{id}/tools",
        "POST /tools/servers/{id}/refresh",
        "POST /tools/servers/{id}/remove",
        "POST /chatbots/{id}",
        "POST /chatbots/{id}/delete",
        "POST /chatbots/{id}/knowledge/url",
        "POST /chatbots/{id}/knowledge/crawl",
        "POST /chatbots/{id}/knowledge/{id}/delete",
        "POST /context/{id}/delete",
        "POST /members/{id}/role",
        "POST /members/{id}/remove",
        "POST /members/{id}/password",
        "POST /api-keys/{id}/revoke",
        "POST /jobs/{id}/retry",
        "POST /jobs/{id}/discard",
        "GET /console/api/chatbots/{id}",
    ] {
        assert!(walked.contains(route), "{route} was not walked: {walked:?}");
    }
}

#[tokio::test]
async fn a_steward_without_organizations_offers_to_create_the_first_and_only_the_first() {
    let app = spawn_app_with(|c| c.auth.registration = steward_config::Registration::Closed).await;
    let login = app.client.get(app.url("/login")).send().await.unwrap();
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    assert_eq!(login.headers()[LOCATION], "/setup");
    let setup = app.client.get(app.url("/setup")).send().await.unwrap();
    let browser = setup.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = csrf_of(&setup.text().await.unwrap());
    let send = |fields: Vec<(&'static str, &'static str)>| {
        let (browser, csrf) = (browser.clone(), csrf.clone());
        let app = &app;
        async move {
            let mut form = vec![("csrf", csrf.as_str())];
            form.extend(fields);
            let response = app
                .client
                .post(app.url("/setup"))
                .header("cookie", browser)
                .form(&form)
                .send()
                .await
                .unwrap();
            read(response).await
        }
    };
    let short = send(vec![
        ("organization", "Acme"),
        ("email", "owner@acme.example"),
        ("password", "short"),
    ])
    .await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(short.html.contains("password"), "{}", short.html);
    assert!(
        short.html.contains("owner@acme.example"),
        "what was typed stays"
    );

    let created = send(vec![
        ("organization", "Acme"),
        ("name", "Ada"),
        ("email", "owner@acme.example"),
        ("password", "Correct-Horse-9"),
    ])
    .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.html);
    let session = created.headers[SET_COOKIE].to_str().unwrap();
    assert!(session.starts_with("steward_session="), "signed in at once");
    let signed_in = app.login("owner@acme.example", "Correct-Horse-9").await;
    assert_eq!(signed_in.body["user"]["role"], "owner");

    // Now that one exists, the page is gone.
    let again = send(vec![
        ("organization", "Intruder"),
        ("email", "intruder@example.org"),
        ("password", "Correct-Horse-9"),
    ])
    .await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&again), "/login");
    assert_eq!(
        app.login("intruder@example.org", "Correct-Horse-9")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn integrations_are_enabled_and_tools_given_to_a_chatbot_from_the_console() {
    let app = spawn_app().await;
    let owner = app.register("a@example.org", "Alpha").await;
    let chatbot = app.chatbot(&owner, "Helpdesk").await;
    let console = Console::open(&app, &owner).await;

    let bad = console
        .post(
            "/tools/integrations",
            &[
                ("integration_id", "lead-capture"),
                ("settings", "{not json"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.html.contains("not JSON"), "{}", bad.html);
    let enabled = console
        .post(
            "/tools/integrations",
            &[("integration_id", "lead-capture"), ("settings", "")],
        )
        .await;
    assert_eq!(enabled.status, StatusCode::SEE_OTHER, "{}", enabled.html);
    let page = console.get("/tools").await;
    assert!(
        page.html.contains("lead-capture.record"),
        "its tool is offered"
    );

    let page = console.get(&format!("/chatbots/{chatbot}")).await;
    assert!(
        page.html
            .contains("name=\"tools\" value=\"lead-capture.record\"")
    );
    let given = console
        .post(
            &format!("/chatbots/{chatbot}/tools"),
            &[("tools", "lead-capture.record")],
        )
        .await;
    assert_eq!(given.status, StatusCode::SEE_OTHER, "{}", given.html);
    let read = app
        .get(&format!("/api/v1/chatbots/{chatbot}"), &owner.token)
        .await;
    assert_eq!(read.body["tools"], json!(["lead-capture.record"]));
    let unknown = console
        .post(
            &format!("/chatbots/{chatbot}/tools"),
            &[("tools", "nope.nothing")],
        )
        .await;
    assert!(unknown.status.is_client_error(), "{}", unknown.status);
    let none = console
        .post(&format!("/chatbots/{chatbot}/tools"), &[])
        .await;
    assert_eq!(none.status, StatusCode::SEE_OTHER);
    let read = app
        .get(&format!("/api/v1/chatbots/{chatbot}"), &owner.token)
        .await;
    assert_eq!(
        read.body["tools"],
        json!([]),
        "every box unchecked: no tools"
    );

    let disabled = console
        .post("/tools/integrations/lead-capture/disable", &[])
        .await;
    assert_eq!(disabled.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_audit_log_is_read_page_by_page() {
    let app = spawn_app().await;
    let owner = app.register("a@example.org", "Alpha").await;
    // 55 entries: more than one page of 50.
    for n in 0..55 {
        let created = app
            .post(
                "/api/v1/api-keys",
                &owner.token,
                json!({"name": format!("key {n}")}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    }
    let console = Console::open(&app, &owner).await;
    let first = console.get("/audit").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.html.matches("api_key.created").count(), 50);
    let older = first
        .html
        .split("<a href=\"")
        .find(|rest| rest.contains(">Older entries<"))
        .and_then(|rest| rest.split('"').next())
        .expect("a link to older entries")
        .replace("&amp;", "&");
    let second = console.get(&older).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.html.matches("api_key.created").count(), 5);
    assert!(
        second.html.contains("key 0"),
        "the oldest entry is on the last page"
    );
    assert!(!second.html.contains("Older entries"));
}

#[tokio::test]
async fn strategic_context_is_added_shown_and_removed_by_admins_only() {
    let app = spawn_app().await;
    let owner = app.register("a@example.org", "Alpha").await;
    let member = app.member(&owner, "m@example.org", "member").await;
    let console = Console::open(&app, &owner).await;
    let page = console.get("/context").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("No context yet"));

    // An empty text is refused with the form kept, to be corrected.
    let refused = console
        .post("/context", &[("title", "Our mission"), ("text", "  ")])
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.html.contains("text is empty"));
    assert!(refused.html.contains("value=\"Our mission\""));

    let added = console
        .post(
            "/context",
            &[
                ("title", "Our mission"),
                ("text", "We repair bicycles & <scooters>."),
            ],
        )
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&added), "/context");
    let listed = app.get("/api/v1/organizations/context", &owner.token).await;
    let document = listed.body["documents"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let page = console.get("/context").await;
    assert!(page.html.contains("Our mission"));
    assert!(page.html.contains(&format!("/context/{document}/delete")));

    // A member neither sees it nor removes it.
    let as_member = Console::open(&app, &member).await;
    assert!(!as_member.get("/").await.html.contains("href=\"/context\""));
    assert_eq!(
        as_member.get("/context").await.status,
        StatusCode::FORBIDDEN
    );
    let refused = as_member
        .post(&format!("/context/{document}/delete"), &[])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let removed = console
        .post(&format!("/context/{document}/delete"), &[])
        .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER);
    let listed = app.get("/api/v1/organizations/context", &owner.token).await;
    assert_eq!(listed.body["documents"], json!([]));
}

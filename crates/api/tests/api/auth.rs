//! Registration, login, tokens, API keys and roles.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, StatusCode};
use serde_json::json;
use steward_testkit::app::{spawn_app, spawn_app_with};

#[tokio::test]
async fn registering_creates_an_owner_who_can_log_in_and_see_themselves() {
    let app = spawn_app().await;
    let owner = app.register("Ada@Example.org", "Analytical Engines").await;

    let me = app.get("/api/v1/auth/me", &owner.token).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    assert_eq!(me.body["user"]["email"], "ada@example.org");
    assert_eq!(me.body["role"], "owner");
    assert_eq!(me.body["organization"]["name"], "Analytical Engines");
    assert_eq!(me.body["organization"]["tier"], "free");

    let login = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "ADA@example.org", "password": "Correct-Horse-9"})),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    assert_eq!(login.body["user"]["id"], owner.user_id.as_str());
    assert_eq!(login.body["organization"]["id"], owner.org_id.as_str());
    assert!(login.body["token"].as_str().unwrap().len() > 20);
}

#[tokio::test]
async fn wrong_passwords_and_unknown_accounts_get_the_same_401() {
    let app = spawn_app().await;
    app.register("ada@example.org", "Acme").await;
    for body in [
        json!({"email": "ada@example.org", "password": "Wrong-Horse-9"}),
        json!({"email": "nobody@example.org", "password": "Correct-Horse-9"}),
        json!({"email": "not an email", "password": "Correct-Horse-9"}),
    ] {
        let reply = app
            .call(Method::POST, "/api/v1/auth/login", None, Some(body))
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.body["error"]["message"], "wrong email or password");
    }
}

/// Registration answers a taken address exactly as a new one, creates
/// nothing for it, and leaves the account as it was.
#[tokio::test]
async fn registration_does_not_tell_which_addresses_have_accounts_and_refuses_weak_passwords() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let register = |email: &'static str, organization: &'static str| {
        let app = &app;
        async move {
            app.call(
                Method::POST,
                "/api/v1/auth/register",
                None,
                Some(json!({"email": email, "password": "Other-Horse-77", "organization_name": organization})),
            )
            .await
        }
    };
    let taken = register("ADA@example.org", "Other").await;
    let fresh = register("new@example.org", "Fresh").await;
    assert_eq!(taken.status, StatusCode::ACCEPTED);
    assert_eq!(fresh.status, StatusCode::ACCEPTED);
    assert_eq!(taken.text, fresh.text, "the same answer for both");
    // Nothing changed for the taken address: its password and organization stand.
    let login = |email: &'static str, password: &'static str| {
        let app = &app;
        async move {
            app.call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"email": email, "password": password})),
            )
            .await
        }
    };
    let owner_login = login("ada@example.org", "Correct-Horse-9").await;
    assert_eq!(owner_login.status, StatusCode::OK);
    assert_eq!(
        owner_login.body["organization"]["id"],
        owner.org_id.as_str()
    );
    assert_eq!(
        login("ada@example.org", "Other-Horse-77").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login("new@example.org", "Other-Horse-77").await.status,
        StatusCode::OK
    );
    for password in ["short1A", "", "1234567"] {
        let weak = app
            .call(Method::POST, "/api/v1/auth/register", None, Some(json!({"email": "b@example.org", "password": password, "organization_name": "B"})))
            .await;
        assert_eq!(weak.status, StatusCode::UNPROCESSABLE_ENTITY, "{password}");
        assert!(
            weak.body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("password")
        );
    }
}

#[tokio::test]
async fn registration_can_be_closed_by_configuration() {
    let app = spawn_app_with(|c| c.auth.registration = steward_config::Registration::Closed).await;
    let reply = app
        .call(Method::POST, "/api/v1/auth/register", None, Some(json!({"email": "a@example.org", "password": "Correct-Horse-9", "organization_name": "A"})))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.code(), "registration_closed");
}

#[tokio::test]
async fn login_attempts_are_limited_per_account_with_retry_after() {
    // Four attempts: the registration helper's own sign-in is the first.
    let app = spawn_app_with(|c| c.auth.login_attempts_per_minute_per_account = 4).await;
    app.register("ada@example.org", "Acme").await;
    let attempt = || {
        app.call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "ada@example.org", "password": "Wrong-Horse-9"})),
        )
    };
    for _ in 0..3 {
        assert_eq!(attempt().await.status, StatusCode::UNAUTHORIZED);
    }
    let limited = attempt().await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.code(), "rate_limited");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    // Even the right password waits: the limit is on attempts.
    let right = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "ada@example.org", "password": "Correct-Horse-9"})),
        )
        .await;
    assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS);
}

/// Wrong passwords from one address slow that address only: the owner,
/// signing in from another, is not locked out.
#[tokio::test]
async fn an_attacker_guessing_from_one_address_does_not_lock_the_owner_out() {
    let app = spawn_app_with(|c| {
        c.auth.login_attempts_per_minute_per_account = 3;
        c.http.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    app.register("ada@example.org", "Acme").await;
    let attempt = |from: &'static str, password: &'static str| {
        let app = &app;
        async move {
            let response = app
                .client
                .post(app.url("/api/v1/auth/login"))
                .header("x-forwarded-for", from)
                .json(&json!({"email": "ada@example.org", "password": password}))
                .send()
                .await
                .unwrap();
            response.status()
        }
    };
    for _ in 0..3 {
        assert_eq!(
            attempt("203.0.113.9", "Wrong-Horse-9").await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        attempt("203.0.113.9", "Wrong-Horse-9").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        attempt("198.51.100.4", "Correct-Horse-9").await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn login_attempts_are_limited_per_address() {
    let app = spawn_app_with(|c| c.auth.login_attempts_per_minute_per_ip = 2).await;
    for i in 0..2 {
        let reply = app
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"email": format!("u{i}@example.org"), "password": "Whatever-1"})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let reply = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "u9@example.org", "password": "Whatever-1"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn missing_expired_tampered_and_unsigned_tokens_are_refused() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let me = |token: Option<String>| {
        let app = &app;
        async move {
            app.call(Method::GET, "/api/v1/auth/me", token.as_deref(), None)
                .await
        }
    };

    let none = me(None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.headers["www-authenticate"], "Bearer");

    let parts: Vec<&str> = owner.token.split('.').collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let encode = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());

    claims["exp"] = json!(1);
    let tampered = format!("{}.{}.{}", parts[0], encode(&claims), parts[2]);
    assert_eq!(me(Some(tampered)).await.status, StatusCode::UNAUTHORIZED);

    let none_alg = format!(
        "{}.{}.",
        encode(&json!({"alg": "none", "typ": "JWT"})),
        parts[1]
    );
    assert_eq!(me(Some(none_alg)).await.status, StatusCode::UNAUTHORIZED);

    let expired_signer = steward_auth::Tokens::new(
        b"test-secret-test-secret-test-secret-1234",
        chrono::Duration::seconds(-10),
    );
    let (expired, _) = expired_signer.issue(
        owner.user_id.parse().unwrap(),
        owner.org_id.parse().unwrap(),
        0,
    );
    let reply = me(Some(expired)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

    for garbage in ["garbage", "a.b.c", "stw_notakey"] {
        assert_eq!(
            me(Some(garbage.into())).await.status,
            StatusCode::UNAUTHORIZED,
            "{garbage}"
        );
    }
    let basic = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .header("authorization", "Basic YTpi")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(me(Some(owner.token.clone())).await.status, StatusCode::OK);
}

#[tokio::test]
async fn api_keys_work_until_revoked_and_are_shown_once() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let created = app
        .post(
            "/api/v1/api-keys",
            &owner.token,
            json!({"name": "deploy bot", "role": "member"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let key = created.body["key"].as_str().unwrap().to_owned();
    let id = created.body["api_key"]["id"].as_str().unwrap().to_owned();

    let me = app.get("/api/v1/auth/me", &key).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["role"], "member");
    assert_eq!(me.body["api_key_id"], id.as_str());
    assert_eq!(me.body["user"], serde_json::Value::Null);
    // A member key cannot do admin work.
    assert_eq!(
        app.post("/api/v1/chatbots", &key, json!({"name": "x"}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    let listed = app.get("/api/v1/api-keys", &owner.token).await;
    assert!(!listed.text.contains(&key), "the secret is never listed");
    assert_eq!(listed.body["api_keys"][0]["prefix"], &key[..12]);

    assert_eq!(
        app.delete(&format!("/api/v1/api-keys/{id}"), &owner.token)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let revoked = app.get("/api/v1/auth/me", &key).await;
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.delete(&format!("/api/v1/api-keys/{id}"), &owner.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let owner_key = app
        .post(
            "/api/v1/api-keys",
            &owner.token,
            json!({"name": "root", "role": "owner"}),
        )
        .await;
    assert_eq!(owner_key.status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// A key belongs to the member who made it: it never acts beyond their role
/// today, dies when they leave, and keys cannot breed admin keys.
#[tokio::test]
async fn api_keys_follow_the_member_who_made_them() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let admin = app.member(&owner, "admin@example.org", "admin").await;
    let mint = |token: String, role: &'static str| {
        let app = &app;
        async move {
            app.post(
                "/api/v1/api-keys",
                &token,
                json!({"name": format!("{role} key"), "role": role}),
            )
            .await
        }
    };
    let made = mint(admin.token.clone(), "admin").await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    assert_eq!(made.body["api_key"]["created_by"], admin.user_id.as_str());
    let admin_key = made.body["key"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get("/api/v1/api-keys", &admin_key).await.status,
        StatusCode::OK
    );

    // A key makes no admin key, and no key above its own role.
    assert_eq!(
        mint(admin_key.clone(), "admin").await.status,
        StatusCode::FORBIDDEN
    );
    let member_key = mint(admin_key.clone(), "member").await;
    assert_eq!(
        member_key.status,
        StatusCode::CREATED,
        "{}",
        member_key.text
    );
    assert_eq!(
        member_key.body["api_key"]["created_by"],
        admin.user_id.as_str()
    );
    let member_key = member_key.body["key"].as_str().unwrap().to_owned();
    assert_eq!(
        mint(member_key.clone(), "member").await.status,
        StatusCode::FORBIDDEN
    );
    // A person makes no key above their own role either.
    let member = app.member(&owner, "member@example.org", "member").await;
    assert_eq!(
        mint(member.token.clone(), "member").await.status,
        StatusCode::FORBIDDEN
    );

    // Demoted, the admin's key acts as a member.
    let demoted = app
        .patch(
            &format!("/api/v1/organizations/members/{}", admin.user_id),
            &owner.token,
            json!({"role": "member"}),
        )
        .await;
    assert_eq!(demoted.status, StatusCode::OK, "{}", demoted.text);
    let me = app.get("/api/v1/auth/me", &admin_key).await;
    assert_eq!(me.body["role"], "member");
    assert_eq!(
        app.get("/api/v1/api-keys", &admin_key).await.status,
        StatusCode::FORBIDDEN
    );

    // Removed, every key they made stops working and is listed as revoked.
    let removed = app
        .delete(
            &format!("/api/v1/organizations/members/{}", admin.user_id),
            &owner.token,
        )
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
    for key in [&admin_key, &member_key] {
        assert_eq!(
            app.get("/api/v1/auth/me", key).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let listed = app.get("/api/v1/api-keys", &owner.token).await;
    assert!(
        listed.body["api_keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| !k["revoked_at"].is_null())
    );
}

/// Advisors see aggregates: the member list without addresses, chatbots
/// without their system prompts.
#[tokio::test]
async fn advisors_reach_aggregates_only_and_see_neither_member_emails_nor_system_prompts() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app
        .post(
            "/api/v1/chatbots",
            &owner.token,
            json!({"name": "Helper", "system_prompt": "Internal pricing rules: never below cost."}),
        )
        .await;
    let bot = bot.body["id"].as_str().unwrap().to_owned();
    let advisor = app.member(&owner, "advisor@example.org", "advisor").await;
    let member = app.member(&owner, "member@example.org", "member").await;

    for path in [
        "/api/v1/organizations/members".to_owned(),
        "/api/v1/chatbots".to_owned(),
        format!("/api/v1/chatbots/{bot}"),
    ] {
        let seen = app.get(&path, &advisor.token).await;
        assert_eq!(seen.status, StatusCode::FORBIDDEN, "{path}");
        assert!(!seen.text.contains("@example.org") && !seen.text.contains("Internal pricing"));
    }
    for path in [
        "/api/v1/insights/usage",
        "/api/v1/insights/patterns",
        "/api/v1/insights/taxonomy",
        "/api/v1/organizations/usage",
        "/api/v1/auth/me",
    ] {
        let seen = app.get(path, &advisor.token).await;
        assert_eq!(seen.status, StatusCode::OK, "{path}: {}", seen.text);
    }
    // Members still see both.
    let members = app
        .get("/api/v1/organizations/members", &member.token)
        .await;
    assert!(members.text.contains("advisor@example.org"));
    let seen = app
        .get(&format!("/api/v1/chatbots/{bot}"), &member.token)
        .await;
    assert!(seen.text.contains("Internal pricing"));
}

#[tokio::test]
async fn members_cannot_administer_and_advisors_cannot_read_conversations() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;
    let member = app.member(&owner, "member@example.org", "member").await;
    let advisor = app.member(&owner, "advisor@example.org", "advisor").await;

    for (method, path, body) in [
        (
            Method::POST,
            "/api/v1/chatbots".to_owned(),
            Some(json!({"name": "x"})),
        ),
        (
            Method::PATCH,
            format!("/api/v1/chatbots/{bot}"),
            Some(json!({"name": "x"})),
        ),
        (Method::DELETE, format!("/api/v1/chatbots/{bot}"), None),
        (
            Method::PUT,
            "/api/v1/organizations/billing".to_owned(),
            Some(json!({"tier": "pro"})),
        ),
        (
            Method::POST,
            "/api/v1/organizations/members".to_owned(),
            Some(json!({"email": "x@example.org", "role": "member"})),
        ),
        (
            Method::POST,
            "/api/v1/integrations/enable".to_owned(),
            Some(json!({"integration_id": "lead-capture"})),
        ),
        (
            Method::POST,
            "/api/v1/api-keys".to_owned(),
            Some(json!({"name": "k"})),
        ),
        (
            Method::GET,
            "/api/v1/organizations/audit-log".to_owned(),
            None,
        ),
    ] {
        let reply = app
            .call(method.clone(), &path, Some(&member.token), body)
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(reply.code(), "forbidden");
    }
    assert_eq!(
        app.get(&format!("/api/v1/chatbots/{bot}"), &owner.token)
            .await
            .body["name"],
        "Helper",
        "nothing changed"
    );

    // Members talk to chatbots and read history; advisors do neither.
    let sent = app
        .post(
            &format!("/api/v1/chatbots/{bot}/messages"),
            &member.token,
            json!({"text": "hello"}),
        )
        .await;
    assert_eq!(sent.status, StatusCode::CREATED);
    assert_eq!(
        app.get(&format!("/api/v1/chatbots/{bot}/history"), &member.token)
            .await
            .status,
        StatusCode::OK
    );
    let message = sent.body["message_id"].as_str().unwrap();
    for path in [
        format!("/api/v1/chatbots/{bot}/history"),
        format!("/api/v1/chatbots/{bot}/history/{message}"),
    ] {
        assert_eq!(
            app.get(&path, &advisor.token).await.status,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    let advisor_post = app
        .post(
            &format!("/api/v1/chatbots/{bot}/messages"),
            &advisor.token,
            json!({"text": "hi"}),
        )
        .await;
    assert_eq!(advisor_post.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn role_changes_and_removals_apply_at_once() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let admin = app.member(&owner, "admin@example.org", "admin").await;
    assert_eq!(
        app.post("/api/v1/chatbots", &admin.token, json!({"name": "ok"}))
            .await
            .status,
        StatusCode::CREATED
    );

    let demoted = app
        .patch(
            &format!("/api/v1/organizations/members/{}", admin.user_id),
            &owner.token,
            json!({"role": "member"}),
        )
        .await;
    assert_eq!(demoted.status, StatusCode::OK);
    assert_eq!(
        app.post("/api/v1/chatbots", &admin.token, json!({"name": "no"}))
            .await
            .status,
        StatusCode::FORBIDDEN,
        "the old token carries the new role"
    );

    assert_eq!(
        app.delete(
            &format!("/api/v1/organizations/members/{}", admin.user_id),
            &owner.token
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get("/api/v1/auth/me", &admin.token).await.status,
        StatusCode::UNAUTHORIZED,
        "a removed member's token stops working"
    );
}

#[tokio::test]
async fn only_owners_touch_the_owner_role_and_the_last_owner_stays() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let admin = app.member(&owner, "admin@example.org", "admin").await;

    let grab = app
        .patch(
            &format!("/api/v1/organizations/members/{}", admin.user_id),
            &admin.token,
            json!({"role": "owner"}),
        )
        .await;
    assert_eq!(grab.status, StatusCode::FORBIDDEN);
    let demote_owner = app
        .patch(
            &format!("/api/v1/organizations/members/{}", owner.user_id),
            &admin.token,
            json!({"role": "member"}),
        )
        .await;
    assert_eq!(demote_owner.status, StatusCode::FORBIDDEN);
    let remove_owner = app
        .delete(
            &format!("/api/v1/organizations/members/{}", owner.user_id),
            &admin.token,
        )
        .await;
    assert_eq!(remove_owner.status, StatusCode::FORBIDDEN);

    let last = app
        .patch(
            &format!("/api/v1/organizations/members/{}", owner.user_id),
            &owner.token,
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(last.status, StatusCode::CONFLICT);
    assert_eq!(last.code(), "last_owner");
    let members = app.get("/api/v1/organizations/members", &owner.token).await;
    assert_eq!(members.body["members"].as_array().unwrap().len(), 2);
}

/// Signs in: the status and the answer.
async fn login(
    app: &steward_testkit::app::TestApp,
    email: &str,
    password: &str,
) -> (u16, serde_json::Value) {
    let reply = app.login(email, password).await;
    (reply.status.as_u16(), reply.body)
}

#[tokio::test]
async fn signing_out_ends_that_session_alone_at_once() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let (_, other) = login(&app, "ada@example.org", "Correct-Horse-9").await;
    let other = other["token"].as_str().unwrap().to_owned();

    let out = app
        .post("/api/v1/auth/logout", &owner.token, json!({}))
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.text);
    let refused = app.get("/api/v1/auth/me", &owner.token).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.text.contains("signed out"), "{}", refused.text);
    let again = app
        .post("/api/v1/auth/logout", &owner.token, json!({}))
        .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "already signed out");
    assert_eq!(
        app.get("/api/v1/auth/me", &other).await.status,
        StatusCode::OK,
        "the same person's other session goes on"
    );

    let key = app
        .post("/api/v1/api-keys", &other, json!({"name": "ci"}))
        .await;
    let key = key.body["key"].as_str().unwrap();
    let by_key = app.post("/api/v1/auth/logout", key, json!({})).await;
    assert_eq!(by_key.status, StatusCode::FORBIDDEN, "{}", by_key.text);
    assert_eq!(app.get("/api/v1/auth/me", key).await.status, StatusCode::OK);

    // A token from before sessions were named cannot be ended alone.
    let unnamed = {
        let payload = other.split('.').nth(1).unwrap();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        claims.as_object_mut().unwrap().remove("sid");
        let key =
            jsonwebtoken::EncodingKey::from_secret(b"test-secret-test-secret-test-secret-1234");
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
    };
    assert_eq!(
        app.get("/api/v1/auth/me", &unnamed).await.status,
        StatusCode::OK
    );
    let refused = app.post("/api/v1/auth/logout", &unnamed, json!({})).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
    assert_eq!(refused.code(), "session_unnamed");
}

#[tokio::test]
async fn a_password_change_needs_the_current_one_and_signs_out_every_older_token() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let (_, second) = login(&app, "ada@example.org", "Correct-Horse-9").await;
    let second = second["token"].as_str().unwrap().to_owned();
    let change =
        |current: &str, new: &str| json!({ "current_password": current, "new_password": new });
    for (body, status, code) in [
        (
            change("Wrong-Horse-9", "Brand-New-Horse-1"),
            403,
            "wrong_password",
        ),
        (
            change("Correct-Horse-9", "Correct-Horse-9"),
            409,
            "same_password",
        ),
        (change("Correct-Horse-9", "short"), 422, "validation_failed"),
        (
            json!({ "new_password": "Brand-New-Horse-1" }),
            422,
            "invalid_body",
        ),
    ] {
        let refused = app
            .post("/api/v1/auth/password", &owner.token, body.clone())
            .await;
        assert_eq!(refused.status.as_u16(), status, "{body}: {}", refused.text);
        assert_eq!(refused.code(), code, "{body}");
    }
    assert_eq!(
        app.get("/api/v1/auth/me", &owner.token).await.status,
        StatusCode::OK
    );

    let changed = app
        .post(
            "/api/v1/auth/password",
            &owner.token,
            change("Correct-Horse-9", "Brand-New-Horse-1"),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    let fresh = changed.body["token"].as_str().unwrap();
    for old in [&owner.token, &second] {
        let refused = app.get("/api/v1/auth/me", old).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert!(
            refused.text.contains("password was changed"),
            "{}",
            refused.text
        );
    }
    assert_eq!(
        app.get("/api/v1/auth/me", fresh).await.status,
        StatusCode::OK
    );
    assert_eq!(
        login(&app, "ada@example.org", "Correct-Horse-9").await.0,
        401
    );
    assert_eq!(
        login(&app, "ada@example.org", "Brand-New-Horse-1").await.0,
        200
    );

    let key = app
        .post("/api/v1/api-keys", fresh, json!({"name": "ci"}))
        .await;
    let key = key.body["key"].as_str().unwrap();
    let by_key = app
        .post(
            "/api/v1/auth/password",
            key,
            change("Brand-New-Horse-1", "Another-Horse-2"),
        )
        .await;
    assert_eq!(
        by_key.status,
        StatusCode::FORBIDDEN,
        "API keys have no password"
    );
    let log = app.get("/api/v1/organizations/audit-log", fresh).await;
    assert!(log.text.contains("member.password_changed"), "{}", log.text);
}

#[tokio::test]
async fn a_one_time_password_is_changed_before_anything_else_and_admins_reset_them() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let admin = app.member(&owner, "admin@example.org", "admin").await;
    let invited = app
        .post(
            "/api/v1/organizations/members",
            &admin.token,
            json!({ "email": "grace@example.org", "role": "member" }),
        )
        .await;
    assert_eq!(invited.body["user"]["must_change_password"], true);
    let grace = invited.body["user"]["id"].as_str().unwrap().to_owned();
    let one_time = invited.body["temporary_password"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, session) = login(&app, "grace@example.org", &one_time).await;
    assert_eq!(status, 200);
    assert_eq!(
        session["user"]["must_change_password"], true,
        "the login answer says so"
    );
    let token = session["token"].as_str().unwrap();
    let refused = app.get("/api/v1/chatbots", token).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.code(), "password_change_required");
    let me = app.get("/api/v1/auth/me", token).await;
    assert_eq!(me.status, StatusCode::OK, "who they are, still");
    let changed = app
        .post(
            "/api/v1/auth/password",
            token,
            json!({ "current_password": one_time, "new_password": "Graces-Own-1" }),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    assert_eq!(changed.body["user"]["must_change_password"], false);
    let token = changed.body["token"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get("/api/v1/chatbots", &token).await.status,
        StatusCode::OK
    );

    // Forgotten: an admin gives a new one-time password; the old sessions end.
    let reset = app
        .post(
            &format!("/api/v1/organizations/members/{grace}/password"),
            &admin.token,
            json!({}),
        )
        .await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.text);
    let again = reset.body["temporary_password"].as_str().unwrap();
    assert_eq!(
        app.get("/api/v1/auth/me", &token).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&app, "grace@example.org", "Graces-Own-1").await.0,
        401
    );
    let (_, session) = login(&app, "grace@example.org", again).await;
    assert_eq!(session["user"]["must_change_password"], true);

    // Who may reset whom: not a member; an owner's password only by an owner.
    let member = app.member(&owner, "m@example.org", "member").await;
    let by_member = app
        .post(
            &format!("/api/v1/organizations/members/{grace}/password"),
            &member.token,
            json!({}),
        )
        .await;
    assert_eq!(by_member.status, StatusCode::FORBIDDEN);
    let owners = app
        .post(
            &format!("/api/v1/organizations/members/{}/password", owner.user_id),
            &admin.token,
            json!({}),
        )
        .await;
    assert_eq!(owners.status, StatusCode::FORBIDDEN);
    let own = app
        .post(
            &format!("/api/v1/organizations/members/{}/password", admin.user_id),
            &admin.token,
            json!({}),
        )
        .await;
    assert_eq!(own.code(), "own_password", "{}", own.text);
    assert_eq!(
        app.get("/api/v1/auth/me", &owner.token).await.status,
        StatusCode::OK
    );
    let log = app
        .get("/api/v1/organizations/audit-log", &owner.token)
        .await;
    assert!(log.text.contains("member.password_reset"), "{}", log.text);
}

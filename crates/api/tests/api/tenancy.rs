//! The tenancy walk: every route of the OpenAPI document, called by another
//! organization with this organization's ids, answers 404 and changes nothing.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use steward_domain::ToolCallId;
use steward_store::{NewLead, TenantScope};
use steward_testkit::app::{Session, TestApp, spawn_app_with};
use steward_testkit::providers::FakeProviders;

/// What org A owns, by the path parameter that names it.
struct Owned {
    job: String,
    chatbot: String,
    message: String,
    member: String,
    api_key: String,
    channel: String,
    document: String,
    context: String,
    person: String,
    fact: String,
    export: String,
}

/// The state of A that B must not be able to change, read as A.
async fn snapshot(app: &TestApp, a: &Session, owned: &Owned) -> Vec<Value> {
    let mut seen = Vec::new();
    for path in [
        format!("/api/v1/chatbots/{}", owned.chatbot),
        format!("/api/v1/chatbots/{}/history", owned.chatbot),
        format!("/api/v1/chatbots/{}/channels", owned.chatbot),
        format!("/api/v1/chatbots/{}/knowledge", owned.chatbot),
        "/api/v1/organizations/context".into(),
        format!(
            "/api/v1/chatbots/{}/history/{}",
            owned.chatbot, owned.message
        ),
        "/api/v1/chatbots".into(),
        "/api/v1/organizations/members".into(),
        "/api/v1/organizations/usage".into(),
        "/api/v1/organizations/audit-log".into(),
        "/api/v1/api-keys".into(),
        "/api/v1/integrations/available".into(),
        "/api/v1/tools".into(),
        "/api/v1/leads".into(),
        "/api/v1/people".into(),
        "/api/v1/skills".into(),
        "/api/v1/skills/alpha-skill".into(),
        "/api/v1/skills/alpha-skill/assignees".into(),
        format!("/api/v1/people/{}", owned.person),
        format!("/api/v1/people/{}/memory", owned.person),
        format!("/api/v1/people/{}/exports/{}", owned.person, owned.export),
        "/api/v1/organizations/settings".into(),
        "/api/v1/organizations/sso".into(),
        "/api/v1/insights/taxonomy".into(),
        "/api/v1/insights/patterns?level=2".into(),
        format!("/api/v1/jobs/{}", owned.job),
        "/api/v1/jobs".into(),
    ] {
        let reply = app.get(&path, &a.token).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text);
        seen.push(reply.body);
    }
    seen
}

/// A valid body for each operation that takes one, so that only tenancy decides.
fn body_for(method: &Method, path: &str) -> Option<Value> {
    match (method.as_str(), path) {
        ("POST", "/api/v1/auth/register") => Some(
            json!({"email": "walker@example.org", "password": "Correct-Horse-9", "organization_name": "Walker"}),
        ),
        ("POST", "/api/v1/auth/login") => {
            Some(json!({"email": "b@example.org", "password": "Correct-Horse-9"}))
        }
        ("POST", "/api/v1/auth/password") => {
            Some(json!({"current_password": "Correct-Horse-9", "new_password": "Correct-Horse-10"}))
        }
        ("POST", "/api/v1/organizations/members/{user_id}/password") => None,
        ("POST", "/api/v1/chatbots") => Some(json!({"name": "B's bot"})),
        ("PATCH", "/api/v1/chatbots/{id}") => {
            Some(json!({"name": "hijacked", "temperature": 2.0, "tools": []}))
        }
        ("POST", "/api/v1/chatbots/{id}/messages") => Some(json!({"text": "injected"})),
        ("POST", "/api/v1/chatbots/{id}/channels") => Some(generic_channel("b-hook")),
        ("POST", "/api/v1/api-keys") => Some(json!({"name": "b key"})),
        // Not multipart: whose chatbot it is must decide before the body does.
        ("POST", "/api/v1/chatbots/{id}/knowledge/upload") => Some(json!({"file": "x"})),
        ("POST", "/api/v1/chatbots/{id}/knowledge/url") => {
            Some(json!({"url": "https://example.org/faq"}))
        }
        ("POST", "/api/v1/chatbots/{id}/knowledge/crawl") => {
            Some(json!({"url": "https://example.org/", "max_pages": 5}))
        }
        ("POST", "/api/v1/organizations/context") => {
            Some(json!({"title": "B's strategy", "text": "Grow."}))
        }
        ("POST", "/api/v1/organizations/members") => {
            Some(json!({"email": "b-member@example.org", "role": "member"}))
        }
        ("PATCH", "/api/v1/organizations/members/{user_id}") => Some(json!({"role": "advisor"})),
        ("PUT", "/api/v1/organizations/billing") => Some(json!({"tier": "enterprise"})),
        // B's own memory off: A's stays on, with what it remembers.
        ("PUT", "/api/v1/organizations/settings") => Some(json!({"memory": false})),
        // B's own single sign-on, through the platform's provider.
        ("PUT", "/api/v1/organizations/sso") => {
            Some(json!({"slug": "beta", "allowed_domains": ["beta.example.org"]}))
        }
        // B's own taxonomy: A's stays the shipped one.
        ("PUT", "/api/v1/insights/taxonomy") => Some(
            json!({"categories": [{"name": "B only", "subcategories": [{"name": "B things"}]}]}),
        ),
        ("POST", "/api/v1/integrations/enable") => {
            Some(json!({"integration_id": "pricing-calculator", "config": {
                "currency": "EUR", "items": {"basic": {"name": "Basic", "unit_price": 10}}
            }}))
        }
        ("POST", "/api/v1/tools/servers") => {
            Some(json!({"name": "b-crm", "url": "https://b-crm.example.org/mcp"}))
        }
        ("POST", "/api/v1/tools/servers/{id}/refresh") => Some(json!({})),
        ("POST", "/api/v1/conversations/{id}/release") => Some(json!({})),
        ("POST", "/api/v1/messages/{id}/feedback") => Some(json!({"rating": "down"})),
        ("PUT", "/api/v1/skills/{name}/assignees") => {
            Some(json!({"people": [], "roles": ["member"]}))
        }
        ("POST", "/api/v1/skills") => Some(
            json!({"name": "b-skill", "description": "B's own.", "instructions": "Do B's things."}),
        ),
        // Into A's person, from one that is no one's.
        ("POST", "/api/v1/people/{id}/merge") => {
            Some(json!({"person_id": "01a23c75-0000-7000-8000-000000000000"}))
        }
        ("POST", "/api/v1/jobs/{id}/retry" | "/api/v1/jobs/{id}/discard") => None,
        ("POST", "/api/v1/people/{id}/export") => None,
        ("POST", "/api/v1/auth/logout") => None,
        (_, _) if matches!(method.as_str(), "POST" | "PUT" | "PATCH") => {
            panic!("the tenancy walk has no body for {method} {path}: add one")
        }
        _ => None,
    }
}

fn generic_channel(name: &str) -> Value {
    json!({
        "kind": "generic",
        "name": name,
        "config": {"signing_secret": "s3cret", "reply_url": "https://replies.example.org/hook"},
    })
}

#[tokio::test]
async fn every_route_answers_another_organizations_ids_with_404_and_changes_nothing() {
    // A provider for single sign-on to exist: the platform's, a fake.
    let provider = FakeProviders::start().await;
    let app = spawn_app_with(|c| {
        c.http.public_url = Some("https://steward.example.org".into());
        c.auth.sso_issuer = Some(provider.oidc_issuer());
        c.auth.sso_client_id = Some("steward".into());
        c.auth.sso_client_secret = Some(steward_config::Secret::new("secret"));
    })
    .await;
    let a = app.register("a@example.org", "Alpha").await;
    let mut b = app.register("b@example.org", "Beta").await;
    let mut b_password = "Correct-Horse-9";

    let chatbot = app.chatbot(&a, "Alpha bot").await;
    let sent = app
        .post(
            &format!("/api/v1/chatbots/{chatbot}/messages"),
            &a.token,
            json!({"text": "private"}),
        )
        .await;
    let message = sent.body["message_id"].as_str().unwrap().to_owned();
    let conversation = sent.body["conversation_id"].as_str().unwrap().to_owned();
    let member = app
        .member(&a, "a-member@example.org", "member")
        .await
        .user_id;
    let key = app
        .post("/api/v1/api-keys", &a.token, json!({"name": "a key"}))
        .await;
    let api_key = key.body["api_key"]["id"].as_str().unwrap().to_owned();
    let a_key_secret = key.body["key"].as_str().unwrap().to_owned();
    app.post(
        "/api/v1/integrations/enable",
        &a.token,
        json!({"integration_id": "lead-capture"}),
    )
    .await;
    let channel = app
        .post(
            &format!("/api/v1/chatbots/{chatbot}/channels"),
            &a.token,
            generic_channel("a-hook"),
        )
        .await;
    assert_eq!(channel.status, StatusCode::CREATED, "{}", channel.text);
    let channel = channel.body["id"].as_str().unwrap().to_owned();
    let job = steward_testkit::app::dead_job(&app, &a).await;
    let uploaded = app
        .upload(
            &a,
            &chatbot,
            &[("private.md", b"# Private\n\nAlpha's secret.")],
        )
        .await;
    assert_eq!(uploaded.status, StatusCode::CREATED, "{}", uploaded.text);
    let document = uploaded.body["documents"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let context = app
        .post(
            "/api/v1/organizations/context",
            &a.token,
            json!({"title": "Alpha strategy", "text": "Alpha's plans."}),
        )
        .await;
    assert_eq!(context.status, StatusCode::CREATED, "{}", context.text);
    let context = context.body["id"].as_str().unwrap().to_owned();
    // A lead A's chatbot recorded, as the lead-capture tool records one.
    let lead = app
        .store
        .record_lead(
            &TenantScope::for_job(a.org_id.parse().unwrap()),
            &NewLead {
                tool_call_id: ToolCallId::new(),
                chatbot_id: chatbot.parse().unwrap(),
                conversation_id: conversation.parse().unwrap(),
                name: "Alpha Lead".into(),
                email: Some("lead@alpha.example.org".into()),
                phone: None,
                company: None,
                note: None,
            },
            &[],
        )
        .await
        .unwrap()
        .id
        .to_string();
    let tool_server = app
        .post(
            "/api/v1/tools/servers",
            &a.token,
            json!({"name": "a-crm", "url": "https://a-crm.example.org/mcp", "headers": {"authorization": "a-secret"}}),
        )
        .await;
    assert_eq!(
        tool_server.status,
        StatusCode::CREATED,
        "{}",
        tool_server.text
    );
    let tool_server = tool_server.body["id"].as_str().unwrap().to_owned();
    let skill = app
        .post(
            "/api/v1/skills",
            &a.token,
            json!({"name": "alpha-skill", "description": "Alpha's way.", "instructions": "Alpha's secret steps."}),
        )
        .await;
    assert_eq!(skill.status, StatusCode::CREATED, "{}", skill.text);
    // A's owner, who wrote the message above.
    let people = app.get("/api/v1/people", &a.token).await;
    let person = people.body["people"][0]["id"].as_str().unwrap().to_owned();
    let assigned = app
        .put(
            "/api/v1/skills/alpha-skill/assignees",
            &a.token,
            json!({"people": [person], "roles": ["admin"]}),
        )
        .await;
    assert_eq!(assigned.status, StatusCode::OK, "{}", assigned.text);
    // What A's assistant remembers of that person.
    let memory = steward_tools::memory::Memory::new(app.store.clone(), app.state.sealer.clone());
    let a_scope = TenantScope::for_job(a.org_id.parse().unwrap());
    let person_id = person.parse().unwrap();
    memory
        .remember(
            &a_scope,
            person_id,
            message.parse().unwrap(),
            Default::default(),
            &["Alpha's owner works in finance".to_owned()],
            10,
        )
        .await
        .unwrap();
    let fact = memory.facts(&a_scope, person_id).await.unwrap()[0]
        .id
        .to_string();
    let export = app
        .post(
            &format!("/api/v1/people/{person}/export"),
            &a.token,
            json!(null),
        )
        .await;
    assert_eq!(export.status, StatusCode::ACCEPTED, "{}", export.text);
    let export = export.body["id"].as_str().unwrap().to_owned();
    let sso = app
        .put(
            "/api/v1/organizations/sso",
            &a.token,
            json!({"slug": "alpha", "allowed_domains": ["alpha.example.org"]}),
        )
        .await;
    assert_eq!(sso.status, StatusCode::OK, "{}", sso.text);
    let owned = Owned {
        export,
        fact,
        person,
        document,
        context,
        channel,
        job,
        chatbot,
        message,
        member,
        api_key,
    };
    let before = snapshot(&app, &a, &owned).await;
    let a_ids = [
        &owned.job,
        &owned.chatbot,
        &owned.message,
        &owned.member,
        &owned.api_key,
        &owned.channel,
        &owned.document,
        &owned.context,
        &owned.person,
        &"Alpha's secret steps".to_owned(),
        &conversation,
        &a.org_id,
        &a.user_id,
        &lead,
        &"lead@alpha.example.org".to_owned(),
        &tool_server,
        &"a-secret".to_owned(),
        &owned.fact,
        &owned.export,
        &"works in finance".to_owned(),
    ];

    // A path of the document with A's ids in it.
    let concrete_of = |path: &str| -> String {
        path.replace(
            "{id}/history/{message_id}",
            &format!("{}/history/{}", owned.chatbot, owned.message),
        )
        .replace("/chatbots/{id}", &format!("/chatbots/{}", owned.chatbot))
        .replace(
            "/channels/{channel_id}",
            &format!("/channels/{}", owned.channel),
        )
        .replace(
            "/knowledge/{doc_id}",
            &format!("/knowledge/{}", owned.document),
        )
        .replace("/context/{doc_id}", &format!("/context/{}", owned.context))
        .replace("/api-keys/{id}", &format!("/api-keys/{}", owned.api_key))
        .replace("/members/{user_id}", &format!("/members/{}", owned.member))
        .replace("/integrations/{id}", "/integrations/lead-capture")
        .replace("/jobs/{id}", &format!("/jobs/{}", owned.job))
        .replace(
            "/tools/servers/{id}",
            &format!("/tools/servers/{tool_server}"),
        )
        .replace(
            "/conversations/{id}",
            &format!("/conversations/{conversation}"),
        )
        .replace("/people/{id}", &format!("/people/{}", owned.person))
        .replace("/memory/{fact_id}", &format!("/memory/{}", owned.fact))
        .replace(
            "/exports/{export_id}",
            &format!("/exports/{}", owned.export),
        )
        .replace("/messages/{id}", &format!("/messages/{}", owned.message))
        .replace("/skills/{name}", "/skills/alpha-skill")
    };
    let doc = app
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await
        .body;
    let mut walked = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let method: Method = method.to_uppercase().parse().unwrap();
            // Routes behind the operator's metrics token, not a tenant's.
            let operator_only = operation["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("metrics_token").is_some()));
            // A sign-in link and its callback belong to no caller: anyone
            // may follow one (their tests are in sso.rs).
            if path.starts_with("/api/v1/auth/sso/") {
                continue;
            }
            // B has no single sign-on until it sets one up.
            let b_has_none = matches!(
                (method.as_str(), path.as_str()),
                ("GET" | "DELETE", "/api/v1/organizations/sso")
            );
            let concrete = concrete_of(path);
            assert!(
                !concrete.contains('{'),
                "the tenancy walk does not know the parameters of {path}: add them"
            );
            let body = body_for(&method, path);
            let reply = app
                .call(method.clone(), &concrete, Some(&b.token), body)
                .await;
            if concrete != *path {
                assert_eq!(
                    reply.status,
                    StatusCode::NOT_FOUND,
                    "{method} {path} as another org: {}",
                    reply.text
                );
                assert_eq!(reply.code(), "not_found");
            } else if b_has_none && reply.status == StatusCode::NOT_FOUND {
                // Its own absence, whichever order the walk takes.
            } else if operator_only {
                // A tenant's token is not the operator's.
                assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} {path}");
            } else {
                assert!(reply.status.is_success(), "{method} {path}: {}", reply.text);
            }
            for id in a_ids {
                assert!(
                    !reply.text.contains(id.as_str()),
                    "{method} {path} leaked an id of another org"
                );
            }
            if path == "/api/v1/auth/password" {
                // B's own password changed: its earlier token is signed out.
                b.token = reply.body["token"].as_str().unwrap().to_owned();
                b_password = "Correct-Horse-10";
            }
            if path == "/api/v1/auth/logout" {
                // B signed its own session out: it signs in again.
                let again = app.login("b@example.org", b_password).await;
                assert_eq!(again.status, StatusCode::OK, "{}", again.text);
                b.token = again.body["token"].as_str().unwrap().to_owned();
            }
            walked.insert(format!("{method} {path}"));
        }
    }
    assert!(walked.len() >= 38, "walked only {walked:?}");

    assert_eq!(
        snapshot(&app, &a, &owned).await,
        before,
        "nothing of the other org changed"
    );
    assert_eq!(
        app.get("/api/v1/auth/me", &a_key_secret).await.status,
        StatusCode::OK,
        "its API key still works"
    );
    let servers = app.get("/api/v1/tools/servers", &a.token).await;
    assert_eq!(
        servers.body["servers"][0]["id"],
        tool_server.as_str(),
        "its MCP server is still there"
    );

    // An advisor of A is refused every route but the aggregates (and their
    // own session's), whatever the ids, and changes nothing.
    let advisor = app.member(&a, "a-advisor@example.org", "advisor").await;
    let before = snapshot(&app, &a, &owned).await;
    let aggregates = [
        "GET /api/v1/insights/usage",
        "GET /api/v1/insights/patterns",
        "GET /api/v1/insights/taxonomy",
        "GET /api/v1/organizations/usage",
    ];
    let mut refused = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let bearer = operation["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            if !bearer || path.starts_with("/api/v1/auth/") {
                continue;
            }
            let method: Method = method.to_uppercase().parse().unwrap();
            let concrete = concrete_of(path);
            let reply = app
                .call(
                    method.clone(),
                    &concrete,
                    Some(&advisor.token),
                    body_for(&method, path),
                )
                .await;
            if aggregates.contains(&format!("{method} {path}").as_str()) {
                assert_eq!(
                    reply.status,
                    StatusCode::OK,
                    "{method} {path}: {}",
                    reply.text
                );
            } else {
                assert_eq!(
                    reply.status,
                    StatusCode::FORBIDDEN,
                    "{method} {path} answered an advisor: {}",
                    reply.text
                );
                refused += 1;
            }
        }
    }
    assert!(refused >= 60, "refused only {refused}");
    assert_eq!(
        snapshot(&app, &a, &owned).await,
        before,
        "an advisor changed nothing"
    );

    // A conversation of A cannot be continued by B, even through B's own
    // chatbot: B is told what it would be told of an id that never existed.
    let b_bot = app.chatbot(&b, "Beta bot").await;
    let hijack = app
        .post(
            &format!("/api/v1/chatbots/{b_bot}/messages"),
            &b.token,
            json!({"text": "x", "conversation_id": conversation}),
        )
        .await;
    assert_eq!(hijack.status, StatusCode::CONFLICT);
    assert_eq!(hijack.code(), "unknown_conversation");
    let never = app
        .post(
            &format!("/api/v1/chatbots/{b_bot}/messages"),
            &b.token,
            json!({"text": "x", "conversation_id": uuid::Uuid::now_v7()}),
        )
        .await;
    assert_eq!(
        never.body, hijack.body,
        "indistinguishable from an unknown id"
    );
}

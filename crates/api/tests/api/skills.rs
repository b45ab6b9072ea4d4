//! Skills through the API: uploaded as a zip, as SKILL.md or as JSON,
//! versioned, given to chatbots, deleted; who may do what.

use reqwest::StatusCode;
use serde_json::json;
use steward_testkit::app::{Reply, TestApp, spawn_app};

const SKILL_MD: &str = "---\nname: expense-report\ndescription: Files an expense report from receipts.\n---\n# Expense reports\n\nAsk for the receipts first.\n";

fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    steward_testkit::docx::archive(entries)
}

async fn upload(app: &TestApp, token: &str, content_type: &str, body: Vec<u8>) -> Reply {
    let response = app
        .client
        .post(app.url("/api/v1/skills"))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    TestApp::read(response).await
}

#[tokio::test]
async fn skills_are_uploaded_versioned_given_to_chatbots_and_deleted() {
    let app = spawn_app().await;
    let owner = app.register("owner@example.org", "Acme").await;
    let other = app.register("other@example.org", "Globex").await;
    let member = app.member(&owner, "member@example.org", "member").await;
    let advisor = app.member(&owner, "advisor@example.org", "advisor").await;
    let bot = app.chatbot(&owner, "Help").await;

    let first = upload(&app, &owner.token, "text/markdown", SKILL_MD.into()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert_eq!(
        (first.body["name"].as_str(), first.body["version"].as_i64()),
        (Some("expense-report"), Some(1))
    );
    let folder = zip(&[
        ("expense-report/SKILL.md", SKILL_MD.as_bytes()),
        ("expense-report/reference/policy.md", b"50 EUR a day."),
    ]);
    let second = upload(&app, &owner.token, "application/zip", folder).await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.text);
    assert_eq!(second.body["version"], 2);
    assert_eq!(second.body["files"], json!(["reference/policy.md"]));
    let travel =
        json!({"name": "travel", "description": "Books trips.", "instructions": "Ask where to."});
    let third = app.post("/api/v1/skills", &owner.token, travel).await;
    assert_eq!(third.status, StatusCode::CREATED, "{}", third.text);

    let listed = app.get("/api/v1/skills", &member.token).await;
    assert_eq!(listed.status, StatusCode::OK);
    let names: Vec<(&str, i64)> = listed.body["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["version"].as_i64().unwrap()))
        .collect();
    assert_eq!(names, [("expense-report", 2), ("travel", 1)]);
    let versions = app
        .get("/api/v1/skills/expense-report", &member.token)
        .await;
    assert_eq!(versions.body["versions"][1]["skill_md"], SKILL_MD);

    // Given to a chatbot; an unknown skill is refused.
    let given = app
        .patch(
            &format!("/api/v1/chatbots/{bot}"),
            &owner.token,
            json!({"skills": ["travel", "expense-report", "travel"]}),
        )
        .await;
    assert_eq!(given.status, StatusCode::OK, "{}", given.text);
    assert_eq!(given.body["skills"], json!(["travel", "expense-report"]));
    let unknown = app
        .patch(
            &format!("/api/v1/chatbots/{bot}"),
            &owner.token,
            json!({"skills": ["nothing"]}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::CONFLICT);
    assert_eq!(unknown.code(), "unknown_skill");
    // Another organization's skill is no skill of this one.
    let theirs = json!({"name": "secret-sauce", "description": "Theirs.", "instructions": "x"});
    app.post("/api/v1/skills", &other.token, theirs).await;
    let borrowed = app
        .patch(
            &format!("/api/v1/chatbots/{bot}"),
            &owner.token,
            json!({"skills": ["secret-sauce"]}),
        )
        .await;
    assert_eq!(borrowed.code(), "unknown_skill");
    assert_eq!(
        app.get("/api/v1/skills/secret-sauce", &owner.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Who may do what.
    let refused = upload(&app, &member.token, "text/markdown", SKILL_MD.into()).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    for path in ["/api/v1/skills", "/api/v1/skills/travel"] {
        assert_eq!(
            app.get(path, &advisor.token).await.status,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    assert_eq!(
        app.delete("/api/v1/skills/travel", &member.token)
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    // Bad uploads say why and keep nothing.
    let bad: Vec<(&str, Vec<u8>, StatusCode)> = vec![
        (
            "text/markdown",
            b"# no front matter".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "text/markdown",
            b"---\nname: Capital\ndescription: x\n---\n".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "application/zip",
            b"not a zip".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "application/zip",
            zip(&[("SKILL.md", SKILL_MD.as_bytes()), ("../x", b"x")]),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "image/png",
            b"\x89PNG".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "application/zip",
            vec![0; 6 * 1024 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (content_type, body, status) in bad {
        let reply = upload(&app, &owner.token, content_type, body).await;
        assert_eq!(reply.status, status, "{content_type}: {}", reply.text);
    }
    let long = json!({"name": "long", "description": "Long.", "instructions": "x".repeat(60_001)});
    let refused = app.post("/api/v1/skills", &owner.token, long).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.code()
    );
    let again = app.get("/api/v1/skills", &owner.token).await;
    assert_eq!(again.body, listed.body, "nothing kept");

    // Deleted: off the chatbot, its versions kept; uploaded again, version 3.
    assert_eq!(
        app.delete("/api/v1/skills/expense-report", &owner.token)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete("/api/v1/skills/expense-report", &owner.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let chatbot = app
        .get(&format!("/api/v1/chatbots/{bot}"), &owner.token)
        .await;
    assert_eq!(chatbot.body["skills"], json!(["travel"]));
    let kept = app.get("/api/v1/skills/expense-report", &owner.token).await;
    assert!(kept.body["versions"][0]["deleted_at"].is_string());
    let back = upload(&app, &owner.token, "text/markdown", SKILL_MD.into()).await;
    assert_eq!(back.body["version"], 3);
}

#[tokio::test]
async fn a_skill_is_kept_to_people_and_roles_by_an_admin_only() {
    let app = spawn_app().await;
    let owner = app.register("owner@example.org", "Acme").await;
    let other = app.register("other@example.org", "Globex").await;
    let member = app.member(&owner, "member@example.org", "member").await;
    let advisor = app.member(&owner, "advisor@example.org", "advisor").await;
    let made = upload(&app, &owner.token, "text/markdown", SKILL_MD.into()).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    let path = "/api/v1/skills/expense-report/assignees";
    let people = app.get("/api/v1/people", &owner.token).await.body["people"].clone();
    let member_person = people
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["identities"].to_string().contains("member@example.org"))
        .unwrap()["id"]
        .clone();
    let theirs = app.get("/api/v1/people", &other.token).await.body["people"][0]["id"].clone();

    let everyone = app.get(path, &member.token).await;
    assert_eq!(everyone.status, StatusCode::OK, "{}", everyone.text);
    assert_eq!(everyone.body, json!({"people": [], "roles": []}));
    let kept = app
        .put(
            path,
            &owner.token,
            json!({"people": [member_person, member_person], "roles": ["admin"]}),
        )
        .await;
    assert_eq!(kept.status, StatusCode::OK, "{}", kept.text);
    assert_eq!(
        kept.body,
        json!({"people": [member_person], "roles": ["admin"]})
    );
    assert_eq!(app.get(path, &owner.token).await.body, kept.body);

    // Members read it; they and advisors do not change it; advisors see no one.
    let refused = app.put(path, &member.token, json!({"roles": []})).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.put(path, &advisor.token, json!({"roles": []}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get(path, &advisor.token).await.status,
        StatusCode::FORBIDDEN
    );

    // Another organization's person, too many people, an unknown role or
    // field, no such skill: refused, and what was kept stays.
    let foreign = app
        .put(path, &owner.token, json!({"people": [theirs]}))
        .await;
    assert_eq!(foreign.status, StatusCode::CONFLICT);
    assert_eq!(foreign.code(), "unknown_person");
    let many: Vec<String> = (0..1_001)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let crowd = app.put(path, &owner.token, json!({"people": many})).await;
    assert_eq!(
        crowd.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        crowd.text
    );
    for bad in [
        json!({"roles": ["king"]}),
        json!({"roles": ["admin", "admin", "admin", "admin", "admin"]}),
        json!({"roles": "admin"}),
        json!({"people": ["not-an-id"]}),
        json!({"everyone": true}),
    ] {
        let reply = app.put(path, &owner.token, bad.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            reply.text
        );
    }
    assert_eq!(app.get(path, &owner.token).await.body, kept.body);
    let missing = app
        .put(
            "/api/v1/skills/no-such-skill/assignees",
            &owner.token,
            json!({"roles": ["member"]}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.put(path, &other.token, json!({"roles": []}))
            .await
            .status,
        StatusCode::NOT_FOUND,
        "another organization's skill"
    );

    // Both empty: everyone again; deleting the skill forgets whom it was kept to.
    let open = app.put(path, &owner.token, json!({})).await;
    assert_eq!(open.body, json!({"people": [], "roles": []}));
    app.put(path, &owner.token, json!({"roles": ["member"]}))
        .await;
    app.delete("/api/v1/skills/expense-report", &owner.token)
        .await;
    assert_eq!(
        app.get(path, &owner.token).await.status,
        StatusCode::NOT_FOUND
    );
    upload(&app, &owner.token, "text/markdown", SKILL_MD.into()).await;
    assert_eq!(
        app.get(path, &owner.token).await.body,
        json!({"people": [], "roles": []})
    );
}

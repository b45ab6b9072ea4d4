//! Exports of a person's data: everything Steward holds about them (memory
//! in clear included) as a zip of JSON and a readable page, for the person
//! or an admin, gone with its zip once its day is over or the person is
//! erased.

use std::io::Read;

use serde_json::Value;
use steward_domain::JobKind;
use steward_jobs::JobHandler;
use steward_pipeline::export::Exports;
use steward_store::TenantScope;
use steward_testkit::app::{Session, TestApp, spawn_app_with};
use steward_testkit::model::FakeModel;

use super::memory::{facts, person, remembering_worker};
use super::{answered, model, send};

fn exports(app: &TestApp) -> Exports {
    Exports {
        store: app.store.clone(),
        blobs: app.state.blobs.clone(),
        memory: steward_tools::memory::Memory::new(app.store.clone(), app.state.sealer.clone()),
    }
}

/// Runs the queued `export` jobs, as a worker would.
async fn run_export_jobs(app: &TestApp) {
    let jobs = app
        .store
        .claim(
            "test",
            &[JobKind::Export],
            10,
            chrono::Duration::seconds(30),
        )
        .await
        .unwrap();
    assert!(!jobs.is_empty(), "an export job was queued");
    for job in jobs {
        exports(app).run(&job).await.unwrap();
    }
}

/// Files of a zip, by name.
fn unzipped(bytes: &[u8]) -> std::collections::BTreeMap<String, String> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut files = std::collections::BTreeMap::new();
    for i in 0..zip.len() {
        let mut file = zip.by_index(i).unwrap();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        files.insert(file.name().unwrap().to_string(), text);
    }
    files
}

async fn download(app: &TestApp, session: &Session, url: &str) -> reqwest::Response {
    app.client
        .get(app.url(url))
        .bearer_auth(&session.token)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_exports_everything_held_about_them_for_a_day() {
    let app = spawn_app_with(|_| {}).await;
    let fake = FakeModel::start().await;
    let worker = remembering_worker(&app, model(&fake));
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;
    let member = app.member(&owner, "bo@example.org", "member").await;
    let (_, asked) = send(&app, &member, &bot, "I work in the <finance> team.", None).await;
    answered(&app, &member, &bot, &asked).await;
    let bo = person(&app, &member).await;
    facts(&app, &member, bo, 1).await;
    worker.stop().await;
    let ada = person(&app, &owner).await;

    // Bo asks for his own; not for Ada's; an advisor for nobody's.
    let refused = app
        .post(
            &format!("/api/v1/people/{ada}/export"),
            &member.token,
            Value::Null,
        )
        .await;
    assert_eq!(refused.status, 403);
    let advisor = app.member(&owner, "cy@example.org", "advisor").await;
    let refused = app
        .post(
            &format!("/api/v1/people/{bo}/export"),
            &advisor.token,
            Value::Null,
        )
        .await;
    assert_eq!(refused.status, 403);
    let asked = app
        .post(
            &format!("/api/v1/people/{bo}/export"),
            &member.token,
            Value::Null,
        )
        .await;
    assert_eq!(asked.status, 202, "{}", asked.text);
    assert_eq!(asked.body["state"], "pending");
    let status_url = format!(
        "/api/v1/people/{bo}/exports/{}",
        asked.body["id"].as_str().unwrap()
    );
    let download_url = asked.body["download_url"].as_str().unwrap().to_owned();
    let early = download(&app, &member, &download_url).await;
    assert_eq!(early.status(), 409, "not written yet");

    run_export_jobs(&app).await;
    let ready = app.get(&status_url, &member.token).await;
    assert_eq!(ready.body["state"], "ready", "{}", ready.text);
    let zip = download(&app, &member, &download_url).await;
    assert_eq!(zip.status(), 200);
    assert_eq!(zip.headers()["content-type"], "application/zip");
    let files = unzipped(&zip.bytes().await.unwrap());
    let data: Value = serde_json::from_str(&files["person.json"]).unwrap();
    assert_eq!(data["person"]["id"], bo.to_string());
    assert_eq!(data["memory"][0]["fact"], "I work in the <finance> team");
    let said: Vec<&str> = data["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        said,
        [
            "I work in the <finance> team.",
            "echo: I work in the <finance> team."
        ]
    );
    assert_eq!(
        data["person"]["handles"].as_array().unwrap().len(),
        2,
        "member and email"
    );
    let page = &files["person.html"];
    assert!(
        page.contains("I work in the &lt;finance&gt; team"),
        "{page}"
    );
    assert!(!page.contains("<finance>"));
    // Ada's data is not in Bo's export, and another organization cannot see it.
    assert!(!files["person.json"].contains("ada@example.org"));
    let other = app.register("di@example.org", "Globex").await;
    assert_eq!(app.get(&status_url, &other.token).await.status, 404);
    assert_eq!(
        app.get(&status_url, &owner.token).await.status,
        200,
        "an admin may"
    );

    // A day later (the clock moved, not slept) the sweep deletes it with its zip.
    let key = app
        .store
        .export(
            &TenantScope::for_job(owner.org_id.parse().unwrap()),
            asked.body["id"].as_str().unwrap().parse().unwrap(),
        )
        .await
        .unwrap()
        .blob_key
        .unwrap();
    assert!(app.state.blobs.get(&key).await.is_ok());
    let sweep = steward_store::NewJob::of(&steward_domain::jobs::ExportArgs { export_id: None }, 3);
    let tomorrow =
        steward_store::now() + chrono::Duration::hours(24) + chrono::Duration::seconds(1);
    steward_store::as_of(tomorrow, async {
        app.store.enqueue(sweep).await.unwrap();
        run_export_jobs(&app).await;
    })
    .await;
    assert!(
        app.state.blobs.get(&key).await.is_err(),
        "the zip is deleted"
    );
    assert_eq!(app.get(&status_url, &member.token).await.status, 404);
    assert_eq!(download(&app, &member, &download_url).await.status(), 404);

    // Erasing a person ends their exports at once.
    let again = app
        .post(
            &format!("/api/v1/people/{bo}/export"),
            &owner.token,
            Value::Null,
        )
        .await;
    run_export_jobs(&app).await;
    let url = format!(
        "/api/v1/people/{bo}/exports/{}",
        again.body["id"].as_str().unwrap()
    );
    assert_eq!(app.get(&url, &owner.token).await.status, 200);
    app.store
        .erase_person(&TenantScope::for_job(owner.org_id.parse().unwrap()), bo)
        .await
        .unwrap();
    assert_eq!(app.get(&url, &owner.token).await.status, 404);
    app.store
        .enqueue(steward_store::NewJob::of(
            &steward_domain::jobs::ExportArgs { export_id: None },
            3,
        ))
        .await
        .unwrap();
    run_export_jobs(&app).await;
    let keys = app.state.blobs.keys("exports/").await.unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

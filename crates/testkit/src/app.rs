//! Steward on port 0 with a fresh database, and a client that talks HTTP to it.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use steward_config::{Config, Secret};
use steward_store::Store;
use tokio::sync::oneshot;

use crate::{DbGuard, any_store};

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub state: steward_api::SharedState,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    _db: DbGuard,
    _data_dir: tempfile::TempDir,
}

/// Configuration for tests: cheap password hashing, generous login limits.
pub fn test_config(data_dir: &std::path::Path) -> Config {
    let mut config = Config {
        data_dir: data_dir.to_owned(),
        listen: "127.0.0.1:0".into(),
        ..Config::default()
    };
    config.auth.jwt_secret = Some(Secret::new("test-secret-test-secret-test-secret-1234"));
    config.secrets.master_key = Some(Secret::new("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="));
    config.auth.argon2_memory_kib = 256;
    config.auth.argon2_iterations = 1;
    config.auth.login_attempts_per_minute_per_ip = 10_000;
    config.auth.login_attempts_per_minute_per_account = 10_000;
    config
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Steward on the store the environment selects (see [`any_store`]).
pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let (store, db) = any_store().await;
    spawn_app_on(store, db, configure).await
}

pub async fn spawn_app_on(
    store: Arc<dyn Store>,
    db: DbGuard,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temporary folder");
    let mut config = test_config(data_dir.path());
    configure(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let addr = listener.local_addr().expect("local address");
    let state = steward_api::AppState::new(config, store.clone()).expect("app state");
    let (shutdown, stop) = oneshot::channel::<()>();
    let server = tokio::spawn(steward_api::run(state.clone(), listener, async {
        let _ = stop.await;
    }));
    TestApp {
        addr,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        store,
        state,
        shutdown: Some(shutdown),
        server: Some(server),
        _db: db,
        _data_dir: data_dir,
    }
}

/// A signed-in owner of a new organization.
#[derive(Clone, Debug)]
pub struct Session {
    pub token: String,
    pub org_id: String,
    pub user_id: String,
    pub email: String,
}

/// A response with its body read.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// The stable error code of an error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends a request; `body` is JSON unless None.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        Self::read(request.send().await.expect("request sent")).await
    }

    pub async fn read(response: reqwest::Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body read");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(token), Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Uploads `files` (name, bytes) to a chatbot's knowledge as one
    /// multipart request.
    pub async fn upload(&self, session: &Session, chatbot: &str, files: &[(&str, &[u8])]) -> Reply {
        let (content_type, body) = multipart(files);
        let response = self
            .client
            .post(self.url(&format!("/api/v1/chatbots/{chatbot}/knowledge/upload")))
            .bearer_auth(&session.token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request sent");
        Self::read(response).await
    }

    /// Signs in: the whole answer (a session, or why not).
    pub async fn login(&self, email: &str, password: &str) -> Reply {
        self.call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({ "email": email, "password": password })),
        )
        .await
    }

    /// Registers a new organization and signs in as its owner.
    pub async fn register(&self, email: &str, organization: &str) -> Session {
        let body = json!({ "email": email, "password": "Correct-Horse-9", "organization_name": organization });
        let reply = self
            .call(Method::POST, "/api/v1/auth/register", None, Some(body))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::ACCEPTED,
            "register: {}",
            reply.text
        );
        let login = self.login(email, "Correct-Horse-9").await;
        assert_eq!(login.status, StatusCode::OK, "login: {}", login.text);
        Session {
            token: login.body["token"].as_str().unwrap().to_owned(),
            org_id: login.body["organization"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
            user_id: login.body["user"]["id"].as_str().unwrap().to_owned(),
            email: email.to_owned(),
        }
    }

    /// Adds a member with `role` to the session's organization and signs in
    /// as them, their one-time password changed to "Correct-Horse-9" as they
    /// would at first sign-in.
    pub async fn member(&self, owner: &Session, email: &str, role: &str) -> Session {
        let reply = self
            .post(
                "/api/v1/organizations/members",
                &owner.token,
                json!({ "email": email, "role": role }),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "add member: {}",
            reply.text
        );
        let password = reply.body["temporary_password"].as_str().unwrap();
        let login = self.login(email, password).await;
        assert_eq!(login.status, StatusCode::OK, "login: {}", login.text);
        assert_eq!(login.body["user"]["must_change_password"], true);
        let changed = self
            .post(
                "/api/v1/auth/password",
                login.body["token"].as_str().unwrap(),
                json!({ "current_password": password, "new_password": "Correct-Horse-9" }),
            )
            .await;
        assert_eq!(changed.status, StatusCode::OK, "password: {}", changed.text);
        Session {
            token: changed.body["token"].as_str().unwrap().to_owned(),
            org_id: owner.org_id.clone(),
            user_id: login.body["user"]["id"].as_str().unwrap().to_owned(),
            email: email.to_owned(),
        }
    }

    /// Creates a chatbot and returns its id.
    pub async fn chatbot(&self, session: &Session, name: &str) -> String {
        let reply = self
            .post("/api/v1/chatbots", &session.token, json!({ "name": name }))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "create chatbot: {}",
            reply.text
        );
        reply.body["id"].as_str().unwrap().to_owned()
    }

    /// Stops the server as SIGTERM would, waiting for in-flight requests.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// A `multipart/form-data` body with one `file` part per (name, bytes): its
/// content type and bytes.
pub fn multipart(files: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    const BOUNDARY: &str = "steward-test-boundary-7d1f";
    let mut body = Vec::new();
    for (name, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

/// A job of the session's organization that has failed for good: the
/// dead-letter list's content.
pub async fn dead_job(app: &TestApp, session: &Session) -> String {
    use steward_domain::JobKind;
    use steward_store::{JobFailure, NewJob};
    let org: steward_domain::OrgId = session.org_id.parse().unwrap();
    let job = NewJob {
        org_id: Some(org),
        ..NewJob::raw(JobKind::Deliver, json!({"message": "reply"}), 3)
    };
    let job = app.store.enqueue(job).await.unwrap().unwrap();
    let claimed = app
        .store
        .claim(
            "test-worker",
            &[JobKind::Deliver],
            10,
            chrono::Duration::seconds(30),
        )
        .await
        .unwrap();
    assert!(claimed.iter().any(|j| j.id == job.id));
    app.store
        .fail(
            job.id,
            "test-worker",
            "410 Gone from the channel",
            JobFailure::Permanent,
        )
        .await
        .unwrap();
    job.id.to_string()
}

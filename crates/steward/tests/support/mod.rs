//! What the process-level tests share: the binary with a clean
//! environment, a running role, and the owner signed in through the API.
#![allow(dead_code)] // each test file uses its own share of these

pub mod browser;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn steward(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_steward"));
    command
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("STEWARD_DATABASE__URL")
        .env_remove("STEWARD_ENV")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .env("STEWARD_AUTH__ARGON2_MEMORY_KIB", "1024")
        .env("RUST_LOG", "info");
    command
}

pub fn run(command: &mut Command) -> Output {
    command.output().expect("steward runs")
}

/// `steward migrate` on the database at `url`.
pub fn migrate(data_dir: &Path, url: &str) {
    let migrated = run(steward(data_dir)
        .arg("migrate")
        .env("STEWARD_DATABASE__URL", url));
    assert!(migrated.status.success(), "{}", text(&migrated.stderr));
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `steward org create` for "Acme": its id and its owner's password.
pub fn create_acme(data_dir: &Path) -> (steward_domain::OrgId, String) {
    create_acme_with(steward(data_dir))
}

/// The same, with `command` (`steward` with its environment) run for it.
pub fn create_acme_with(command: Command) -> (steward_domain::OrgId, String) {
    create_org_with(command, "Acme", "owner@example.org")
}

/// `steward org create` for `name`, owned by `owner`: its id and the
/// owner's password.
pub fn create_org_with(
    mut command: Command,
    name: &str,
    owner: &str,
) -> (steward_domain::OrgId, String) {
    let created = run(command.args(["org", "create", "--name", name, "--owner-email", owner]));
    assert!(created.status.success(), "{}", text(&created.stderr));
    let stdout = text(&created.stdout);
    let line = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no '{prefix}' in {stdout}"))
            .trim()
            .to_owned()
    };
    let id = line(&format!("organization: {name} ("))
        .trim_end_matches(')')
        .parse()
        .unwrap();
    (id, line("password:"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `steward serve`; killed if the test ends early.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    pub fn start(command: Command) -> Self {
        Self::start_on(command, free_port())
    }

    /// `command` as it is (a role with its arguments), its output
    /// discarded; killed when the test ends, however it ends.
    pub fn spawn(mut command: Command) -> Self {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("steward starts");
        Self {
            child,
            base: String::new(),
        }
    }

    pub fn start_on(command: Command, port: u16) -> Self {
        Self::start_as(command, "serve", port)
    }

    /// `steward ROLE --listen 127.0.0.1:PORT` (a role with a listener:
    /// serve, api or mcp).
    pub fn start_as(mut command: Command, role: &str, port: u16) -> Self {
        let child = command
            .arg(role)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("steward starts");
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    pub async fn wait_until_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = reqwest::get(format!("{}/health", self.base)).await
                && response.status().is_success()
            {
                return;
            }
            assert!(Instant::now() < deadline, "steward did not become healthy");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn terminate(&mut self) -> (std::process::ExitStatus, Duration, String) {
        let started = Instant::now();
        let killed = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut stderr = String::new();
                use std::io::Read;
                if let Some(mut pipe) = self.child.stderr.take() {
                    pipe.read_to_string(&mut stderr).unwrap();
                }
                return (status, started.elapsed(), stderr);
            }
            assert!(
                Instant::now() < deadline,
                "steward did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// The owner of the organization `org create` made, signed in to a running steward.
pub struct Api {
    pub client: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Api {
    pub async fn sign_in(base: &str, password: &str) -> Self {
        Self::sign_in_as(base, "owner@example.org", password).await
    }

    /// Signs in; a one-time password is changed to `{password}-own` first.
    pub async fn sign_in_as(base: &str, email: &str, password: &str) -> Self {
        let client = reqwest::Client::new();
        let login = client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&serde_json::json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 200);
        let session = login.json::<serde_json::Value>().await.unwrap();
        let mut api = Self {
            client,
            base: base.to_owned(),
            token: session["token"].as_str().unwrap().to_owned(),
        };
        if session["user"]["must_change_password"] == true {
            // A one-time password is changed at first sign-in, as a person would.
            let (status, changed) = api
                .post(
                    "/api/v1/auth/password",
                    serde_json::json!({"current_password": password, "new_password": format!("{password}-own")}),
                )
                .await;
            assert_eq!(status, 200, "{changed}");
            api.token = changed["token"].as_str().unwrap().to_owned();
        }
        api
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json().await.unwrap_or_default(),
        )
    }

    pub async fn patch(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let response = self
            .client
            .patch(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json().await.unwrap_or_default(),
        )
    }

    pub async fn delete(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self
            .client
            .delete(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json().await.unwrap_or_default(),
        )
    }

    pub async fn get(&self, path: &str) -> serde_json::Value {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A new chatbot's id.
    pub async fn chatbot(&self) -> String {
        let (status, bot) = self
            .post("/api/v1/chatbots", serde_json::json!({"name": "Helper"}))
            .await;
        assert_eq!(status, 201);
        bot["id"].as_str().unwrap().to_owned()
    }

    /// Sends `text` to the chatbot: the conversation it opened.
    pub async fn message(&self, bot: &str, text: &str) -> String {
        let (status, sent) = self
            .post(
                &format!("/api/v1/chatbots/{bot}/messages"),
                serde_json::json!({ "text": text }),
            )
            .await;
        assert_eq!(status, 201, "{sent}");
        sent["conversation_id"].as_str().unwrap().to_owned()
    }

    /// The chatbot's replies so far.
    pub async fn replies(&self, bot: &str) -> Vec<serde_json::Value> {
        let page = self.get(&format!("/api/v1/chatbots/{bot}/history")).await;
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "assistant")
            .cloned()
            .collect()
    }

    /// Polls until the chatbot has a reply, failing after `within`.
    pub async fn first_reply(&self, bot: &str, within: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + within;
        loop {
            let replies = self.replies(bot).await;
            if !replies.is_empty() {
                return replies;
            }
            assert!(Instant::now() < deadline, "no reply");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

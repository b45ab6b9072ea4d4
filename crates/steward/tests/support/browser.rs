//! A real browser for the console's tests: Debian's Chromium, headless,
//! driven through chromedriver over the W3C WebDriver protocol (a few JSON
//! requests; no client library needed).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// The key under which WebDriver names an element.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long a test waits for something to appear on a page.
const PATIENCE: Duration = Duration::from_secs(30);

/// The chromedriver binary, or `None` when this machine has no browser
/// (`.ci/run` installs Debian's chromium and chromium-driver, and fails if
/// the browser tests were skipped).
pub fn chromedriver() -> Option<PathBuf> {
    let chromium = Path::new("/usr/bin/chromium");
    let driver = Path::new("/usr/bin/chromedriver");
    (chromium.exists() && driver.exists()).then(|| driver.to_path_buf())
}

/// A running chromedriver; killed when dropped.
pub struct Driver {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Driver {
    pub async fn start(binary: &Path) -> Self {
        let port = super::free_port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(response) = driver
                .http
                .get(format!("{}/status", driver.url))
                .send()
                .await
                && response.status().is_success()
            {
                return driver;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A new browser with its own profile: its own cookies, as a second
    /// person at another computer would have.
    pub async fn browser(&self, profile: &Path) -> Browser {
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let answer = self
            .http
            .post(format!("{}/session", self.url))
            .json(&capabilities)
            .send()
            .await
            .expect("chromedriver answers")
            .json::<Value>()
            .await
            .expect("a JSON answer");
        let id = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {answer}"))
            .to_owned();
        Browser {
            session: format!("{}/session/{id}", self.url),
            http: self.http.clone(),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser window.
pub struct Browser {
    session: String,
    http: reqwest::Client,
}

impl Browser {
    /// A command's answer, or the WebDriver error it gave.
    async fn answer(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json::<Value>()
            .await
            .map_err(|e| e.to_string())?;
        match answer["value"]["error"].as_str() {
            Some(error) => Err(format!("{error}: {}", answer["value"]["message"])),
            None => Ok(answer["value"].clone()),
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.answer(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
    }

    pub async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    pub async fn url(&self) -> String {
        self.command(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The first element matching `css`, waiting for it to appear.
    pub async fn find(&self, css: &str) -> Element<'_> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(element) = self.try_find(css).await {
                return element;
            }
            assert!(
                Instant::now() < deadline,
                "no '{css}' on {}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn try_find(&self, css: &str) -> Option<Element<'_>> {
        let found = self
            .answer(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await
            .ok()?;
        found[ELEMENT].as_str().map(|id| Element {
            browser: self,
            id: id.to_owned(),
        })
    }

    /// The page's visible text ("" while a page is being replaced).
    pub async fn text(&self) -> String {
        let script = "return document.body ? document.body.innerText : '';";
        self.answer(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
    }

    /// Waits until the page's text contains `wanted`.
    pub async fn wait_for_text(&self, wanted: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = self.text().await;
            if text.contains(wanted) {
                return;
            }
            if Instant::now() >= deadline {
                self.screenshot("failed").await;
            }
            assert!(
                Instant::now() < deadline,
                "'{wanted}' never appeared on {}; the page says:\n{text}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `script` in the page; its return value.
    pub async fn run(&self, script: &str) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// Fills the field named `name` in the form matching `form` and submits it.
    pub async fn fill(&self, form: &str, fields: &[(&str, &str)]) {
        for (name, value) in fields {
            let field = self.find(&format!("{form} [name=\"{name}\"]")).await;
            field.clear().await;
            field.type_text(value).await;
        }
    }

    pub async fn submit(&self, form: &str) {
        self.find(&format!("{form} button[type=\"submit\"]"))
            .await
            .click()
            .await;
    }

    /// Saves what the window shows as `name`.png under the target folder's
    /// `screenshots`, and under `docs/images` when
    /// `STEWARD_SCREENSHOTS_TO_DOCS` is set.
    pub async fn screenshot(&self, name: &str) {
        let encoded = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .expect("a PNG in base64");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
        if std::env::var_os("STEWARD_SCREENSHOTS_TO_DOCS").is_some() {
            let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/images");
            std::fs::create_dir_all(&docs).unwrap();
            std::fs::write(docs.join(format!("console-{name}.png")), &png).unwrap();
        }
    }

    /// Commands go to the document of the frame `frame` from now on.
    pub async fn enter_frame(&self, frame: &Element<'_>) {
        self.command(
            reqwest::Method::POST,
            "/frame",
            Some(json!({ "id": { ELEMENT: frame.id } })),
        )
        .await;
    }

    /// Commands go to the page around the current frame again.
    pub async fn leave_frame(&self) {
        self.command(reqwest::Method::POST, "/frame/parent", Some(json!({})))
            .await;
    }

    pub async fn close(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

impl Element<'_> {
    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.browser
            .command(method, &format!("/element/{}{path}", self.id), body)
            .await
    }

    pub async fn click(&self) {
        self.command(reqwest::Method::POST, "/click", Some(json!({})))
            .await;
    }

    pub async fn clear(&self) {
        self.command(reqwest::Method::POST, "/clear", Some(json!({})))
            .await;
    }

    pub async fn type_text(&self, text: &str) {
        self.command(
            reqwest::Method::POST,
            "/value",
            Some(json!({ "text": text })),
        )
        .await;
    }

    pub async fn text(&self) -> String {
        self.command(reqwest::Method::GET, "/text", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

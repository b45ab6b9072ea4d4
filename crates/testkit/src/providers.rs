//! The channel providers that cannot run here (WhatsApp Cloud API, Slack Web
//! API, Telegram Bot API) and a generic reply endpoint, as one local server
//! speaking each one's wire format for sending a message and for the checks
//! Steward makes when a channel is saved (Slack `auth.test`, Telegram
//! `getMe`, a WhatsApp phone number's record: a token containing `refused`
//! is refused as each provider refuses a bad one). It records every message
//! sent, and can be told to answer the next ones with a failure. It also
//! plays Slack's Socket Mode: `apps.connections.open`, and WebSocket
//! connections that say `hello`, carry the events a test sends, and send
//! every event not acknowledged again on the next connection, as Slack does.
//! And the Bot Framework for Teams: OpenID metadata and signing keys (two
//! keys made for the test process, one published at a time, so that a test
//! can rotate them),
//! tokens for a bot from its tenant, and the connector replies are posted to.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// One request a provider received.
#[derive(Clone, Debug)]
pub struct Sent {
    /// `whatsapp`, `slack`, `telegram` or `generic`.
    pub provider: &'static str,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub raw: Bytes,
    pub body: Value,
}

/// A scripted answer instead of the normal one.
#[derive(Clone, Debug)]
pub struct Failure {
    pub status: u16,
    pub body: Value,
    pub retry_after: Option<u64>,
}

/// The answers due next: a failure, or None for the normal answer.
type Script = VecDeque<Option<Failure>>;

#[derive(Clone, Default)]
pub struct FakeProviders {
    sent: Arc<Mutex<Vec<Sent>>>,
    /// Per provider, what the next requests get.
    script: Arc<Mutex<HashMap<&'static str, Script>>>,
    /// The checks asked, as `provider` each.
    checked: Arc<Mutex<Vec<&'static str>>>,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    sockets: Arc<Mutex<Sockets>>,
    /// The Bot Framework's key published now: 1 or 2.
    teams_key: Arc<Mutex<u8>>,
}

/// The fake Bot Framework's two signing keys, made once per test process.
static TEAMS_KEYS: std::sync::LazyLock<[jsonwebtoken::EncodingKey; 2]> =
    std::sync::LazyLock::new(|| [rsa_key(), rsa_key()]);

/// A new RSA key.
fn rsa_key() -> jsonwebtoken::EncodingKey {
    use aws_lc_rs::encoding::AsDer;
    use base64::Engine;
    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("a key");
    let der = key.as_der().expect("PKCS#8");
    let text = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{text}\n-----END PRIVATE KEY-----\n");
    jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).expect("an RSA key")
}

/// The issuer of the Bot Framework's tokens, as its metadata gives it.
pub const TEAMS_ISSUER: &str = "https://api.botframework.com";

/// Slack's side of Socket Mode.
#[derive(Default)]
struct Sockets {
    /// Connections made so far.
    opened: usize,
    /// The open ones, by number: where to send envelopes.
    open: HashMap<usize, tokio::sync::mpsc::UnboundedSender<String>>,
    /// Envelopes sent and not acknowledged, by id, oldest first.
    unacknowledged: Vec<(String, String)>,
    acknowledged: Vec<String>,
}

impl FakeProviders {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let fake = FakeProviders {
            base_url: format!("http://{}", listener.local_addr().unwrap()),
            teams_key: Arc::new(Mutex::new(1)),
            ..Default::default()
        };
        let app = Router::new()
            .route("/whatsapp/{version}/{phone}/messages", post(whatsapp))
            .route("/slack/api/chat.postMessage", post(slack))
            .route("/telegram/{method_path}/sendMessage", post(telegram))
            .route("/generic/reply", post(generic))
            .route("/slack/api/auth.test", post(slack_auth_test))
            .route(
                "/slack/api/apps.connections.open",
                post(slack_connections_open),
            )
            .route("/slack/link", get(slack_link))
            .route("/teams/openid", get(teams_openid))
            .route(
                "/oidc/.well-known/openid-configuration",
                get(oidc_discovery),
            )
            .route("/teams/keys", get(teams_keys))
            .route("/teams/login/{tenant}/oauth2/v2.0/token", post(teams_login))
            .route(
                "/teams/connector/v3/conversations/{conversation}/activities/{activity}",
                post(teams_reply),
            )
            .route(
                "/teams/connector/v3/conversations/{conversation}/activities",
                post(teams_activity),
            )
            .route("/telegram/{method_path}/getMe", get(telegram_get_me))
            .route("/whatsapp/{version}/{phone}", get(whatsapp_phone_number))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }

    /// `channels.whatsapp_api_url` for a WhatsApp channel.
    pub fn whatsapp_api(&self) -> String {
        format!("{}/whatsapp/v21.0", self.base_url)
    }
    pub fn slack_api(&self) -> String {
        format!("{}/slack/api", self.base_url)
    }
    pub fn telegram_api(&self) -> String {
        format!("{}/telegram", self.base_url)
    }
    /// `reply_url` for a generic channel (a tenant names hosts by name).
    pub fn generic_reply_url(&self) -> String {
        let port = self.base_url.rsplit(':').next().unwrap_or_default();
        format!("http://localhost:{port}/generic/reply")
    }

    /// `channels.teams_openid_url`.
    pub fn teams_openid(&self) -> String {
        format!("{}/teams/openid", self.base_url)
    }

    /// The issuer of a provider that publishes discovery and keys only.
    pub fn oidc_issuer(&self) -> String {
        format!("{}/oidc", self.base_url)
    }
    /// `channels.teams_login_url`.
    pub fn teams_login(&self) -> String {
        format!("{}/teams/login", self.base_url)
    }
    /// The `serviceUrl` of the activities the fake Teams sends.
    pub fn teams_service_url(&self) -> String {
        format!("{}/teams/connector/", self.base_url)
    }

    /// Publishes the other signing key instead of the one published now.
    pub fn rotate_teams_keys(&self) {
        let mut key = self.teams_key.lock().unwrap();
        *key = 3 - *key;
    }

    /// The claims of a valid token for the bot `app_id`, for an activity
    /// from this fake's connector; a test changes what it means to break.
    pub fn teams_claims(&self, app_id: &str) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({
            "iss": TEAMS_ISSUER, "aud": app_id, "exp": now + 3600, "nbf": now - 60,
            "serviceurl": self.teams_service_url(),
        })
    }

    /// `claims` signed as the Bot Framework signs: with test key `key` (1
    /// or 2; published or not), named by its key id.
    pub fn teams_token(&self, claims: &Value, key: u8) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(format!("key-{key}"));
        let signing = &TEAMS_KEYS[usize::from(key) - 1];
        jsonwebtoken::encode(&header, claims, signing).expect("signed")
    }

    /// Sends a Slack event (the Events API's `event_callback` body) in an
    /// `events_api` envelope on the newest Socket Mode connection, or on the
    /// next one made; its envelope id.
    pub fn slack_socket_event(&self, payload: Value) -> String {
        let mut sockets = self.sockets.lock().unwrap();
        let id = format!(
            "envelope-{}",
            sockets.unacknowledged.len() + sockets.acknowledged.len()
        );
        let envelope = json!({
            "envelope_id": id, "type": "events_api", "payload": payload,
            "accepts_response_payload": false, "retry_attempt": 0
        })
        .to_string();
        sockets.unacknowledged.push((id.clone(), envelope.clone()));
        if let Some(newest) = sockets.open.keys().max().copied() {
            let _ = sockets.open[&newest].send(envelope);
        }
        id
    }

    /// Socket Mode connections (made so far, open now).
    pub fn slack_sockets(&self) -> (usize, usize) {
        let sockets = self.sockets.lock().unwrap();
        (sockets.opened, sockets.open.len())
    }

    /// Envelope ids acknowledged, in order.
    pub fn slack_acknowledged(&self) -> Vec<String> {
        self.sockets.lock().unwrap().acknowledged.clone()
    }

    /// How many checks `provider` was asked.
    pub fn checks(&self, provider: &str) -> usize {
        let checked = self.checked.lock().unwrap();
        checked.iter().filter(|p| **p == provider).count()
    }

    /// Everything received so far by one provider, in order.
    pub fn sent(&self, provider: &str) -> Vec<Sent> {
        let sent = self.sent.lock().unwrap();
        sent.iter()
            .filter(|s| s.provider == provider)
            .cloned()
            .collect()
    }

    /// The next requests to `provider` get these failures, one each, in order.
    pub fn fail_next(&self, provider: &'static str, failures: impl IntoIterator<Item = Failure>) {
        self.script(provider, failures.into_iter().map(Some));
    }

    /// The next requests to `provider` get these answers in order: a failure,
    /// or None for the normal answer.
    pub fn script(
        &self,
        provider: &'static str,
        answers: impl IntoIterator<Item = Option<Failure>>,
    ) {
        let mut all = self.script.lock().unwrap();
        all.entry(provider).or_default().extend(answers);
    }

    /// Waits until `provider` received `count` requests (or panics after 20 s).
    pub async fn wait_for(&self, provider: &str, count: usize) -> Vec<Sent> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let sent = self.sent(provider);
            if sent.len() >= count {
                return sent;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{provider} received {} of {count} requests: {sent:?}",
                sent.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Records the request; a scripted failure, if one is due, answers it.
    fn record(
        &self,
        provider: &'static str,
        path: String,
        headers: &HeaderMap,
        raw: Bytes,
    ) -> Option<Response> {
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        self.sent.lock().unwrap().push(Sent {
            provider,
            path,
            headers,
            raw,
            body,
        });
        let failure = self
            .script
            .lock()
            .unwrap()
            .get_mut(provider)
            .and_then(VecDeque::pop_front)??;
        let mut response = (
            StatusCode::from_u16(failure.status).unwrap(),
            axum::Json(failure.body),
        )
            .into_response();
        if let Some(secs) = failure.retry_after {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
        }
        Some(response)
    }

    fn count(&self, provider: &str) -> usize {
        self.sent(provider).len()
    }
}

async fn whatsapp(
    State(fake): State<FakeProviders>,
    Path((version, phone)): Path<(String, String)>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let path = format!("/{version}/{phone}/messages");
    if let Some(failure) = fake.record("whatsapp", path, &headers, raw.clone()) {
        return failure;
    }
    let body: Value = serde_json::from_slice(&raw).unwrap_or_default();
    // Meta's documented success answer for a sent message.
    axum::Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": body["to"], "wa_id": body["to"] }],
        "messages": [{ "id": format!("wamid.fake{}", fake.count("whatsapp")) }],
    }))
    .into_response()
}

async fn slack(State(fake): State<FakeProviders>, headers: HeaderMap, raw: Bytes) -> Response {
    if let Some(failure) = fake.record(
        "slack",
        "/api/chat.postMessage".into(),
        &headers,
        raw.clone(),
    ) {
        return failure;
    }
    let body: Value = serde_json::from_slice(&raw).unwrap_or_default();
    axum::Json(json!({
        "ok": true,
        "channel": body["channel"],
        "ts": format!("1700000000.{:06}", fake.count("slack")),
        "message": { "text": body["text"], "thread_ts": body["thread_ts"] },
    }))
    .into_response()
}

async fn telegram(
    State(fake): State<FakeProviders>,
    Path(method_path): Path<String>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let path = format!("/{method_path}/sendMessage");
    if let Some(failure) = fake.record("telegram", path, &headers, raw.clone()) {
        return failure;
    }
    let body: Value = serde_json::from_slice(&raw).unwrap_or_default();
    axum::Json(json!({
        "ok": true,
        "result": {
            "message_id": 1000 + fake.count("telegram"),
            "chat": { "id": body["chat_id"] },
            "text": body["text"],
        },
    }))
    .into_response()
}

async fn generic(State(fake): State<FakeProviders>, headers: HeaderMap, raw: Bytes) -> Response {
    if let Some(failure) = fake.record("generic", "/generic/reply".into(), &headers, raw) {
        return failure;
    }
    axum::Json(json!({ "received": true })).into_response()
}

/// The bearer token of a request, or "".
fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
}

/// Slack's `auth.test`: 200 either way, `ok` false with its error code.
async fn slack_auth_test(State(fake): State<FakeProviders>, headers: HeaderMap) -> Response {
    fake.checked.lock().unwrap().push("slack");
    if bearer(&headers).contains("refused") {
        return axum::Json(json!({ "ok": false, "error": "invalid_auth" })).into_response();
    }
    axum::Json(json!({ "ok": true, "team": "Acme", "user": "steward", "bot_id": "B01" }))
        .into_response()
}

/// `apps.connections.open`: a connection URL on this server.
async fn slack_connections_open(State(fake): State<FakeProviders>, headers: HeaderMap) -> Response {
    fake.checked.lock().unwrap().push("slack-socket");
    if !bearer(&headers).starts_with("xapp-") || bearer(&headers).contains("refused") {
        return axum::Json(json!({ "ok": false, "error": "invalid_auth" })).into_response();
    }
    let url = format!("{}/slack/link", fake.base_url.replace("http://", "ws://"));
    axum::Json(json!({ "ok": true, "url": url })).into_response()
}

async fn slack_link(
    State(fake): State<FakeProviders>,
    upgrade: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    upgrade.on_upgrade(move |socket| slack_connection(fake, socket))
}

/// One Socket Mode connection: `hello`, every envelope not yet
/// acknowledged, then the events sent while it is the newest; until the
/// client closes it or drops.
async fn slack_connection(fake: FakeProviders, mut socket: axum::extract::ws::WebSocket) {
    use axum::extract::ws::Message;
    let (outgoing, mut to_send) = tokio::sync::mpsc::unbounded_channel();
    let n = {
        let mut sockets = fake.sockets.lock().unwrap();
        sockets.opened += 1;
        let n = sockets.opened;
        let hello = json!({ "type": "hello", "num_connections": sockets.open.len() + 1 });
        let _ = outgoing.send(hello.to_string());
        for (_, envelope) in &sockets.unacknowledged {
            let _ = outgoing.send(envelope.clone());
        }
        sockets.open.insert(n, outgoing);
        n
    };
    loop {
        tokio::select! {
            Some(text) = to_send.recv() => {
                if socket.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            received = socket.recv() => match received {
                Some(Ok(Message::Text(text))) => {
                    let ack: Value = serde_json::from_str(&text).unwrap_or_default();
                    if let Some(id) = ack["envelope_id"].as_str() {
                        let mut sockets = fake.sockets.lock().unwrap();
                        sockets.unacknowledged.retain(|(pending, _)| pending != id);
                        sockets.acknowledged.push(id.to_owned());
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            }
        }
    }
    fake.sockets.lock().unwrap().open.remove(&n);
}

/// An OpenID provider's discovery document, for routes that only need one
/// to exist (its keys are the Teams issuer's); sign-ins are tested against
/// a real provider (`scripts/oidc-provider`).
async fn oidc_discovery(State(fake): State<FakeProviders>) -> Response {
    let issuer = format!("{}/oidc", fake.base_url);
    axum::Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/auth"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{}/teams/keys", fake.base_url),
    }))
    .into_response()
}

/// The Bot Framework's OpenID metadata.
async fn teams_openid(State(fake): State<FakeProviders>) -> Response {
    axum::Json(json!({
        "issuer": TEAMS_ISSUER,
        "jwks_uri": format!("{}/teams/keys", fake.base_url),
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
    .into_response()
}

/// The signing key published now, endorsed for Teams.
async fn teams_keys(State(fake): State<FakeProviders>) -> Response {
    let key = *fake.teams_key.lock().unwrap();
    let signing = &TEAMS_KEYS[usize::from(key) - 1];
    let mut jwk =
        jsonwebtoken::jwk::Jwk::from_encoding_key(signing, jsonwebtoken::Algorithm::RS256)
            .expect("a public key");
    jwk.common.key_id = Some(format!("key-{key}"));
    let mut published = serde_json::to_value(jwk).unwrap();
    published["endorsements"] = json!(["msteams", "skype"]);
    axum::Json(json!({ "keys": [published] })).into_response()
}

/// Microsoft Entra ID's token endpoint, for the client-credentials flow:
/// a secret containing `refused` is refused as Entra ID refuses one.
async fn teams_login(
    State(fake): State<FakeProviders>,
    Path(tenant): Path<String>,
    form: axum::extract::Form<HashMap<String, String>>,
) -> Response {
    fake.checked.lock().unwrap().push("teams");
    let secret = form.get("client_secret").map(String::as_str).unwrap_or("");
    let right = form.get("grant_type").map(String::as_str) == Some("client_credentials")
        && form.get("scope").map(String::as_str) == Some("https://api.botframework.com/.default");
    if secret.is_empty() || secret.contains("refused") || !right {
        let refused = json!({ "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided." });
        return (StatusCode::UNAUTHORIZED, axum::Json(refused)).into_response();
    }
    axum::Json(json!({
        "token_type": "Bearer", "expires_in": 3599,
        "access_token": format!("teams-token-{tenant}"),
    }))
    .into_response()
}

/// The connector's reply to an activity: 401 without a token from the login.
async fn teams_reply(
    State(fake): State<FakeProviders>,
    Path((conversation, activity)): Path<(String, String)>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    if !bearer(&headers).starts_with("teams-token-") {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({ "message": "Authorization has been denied" })),
        )
            .into_response();
    }
    let path = format!("/v3/conversations/{conversation}/activities/{activity}");
    if let Some(failure) = fake.record("teams", path, &headers, raw) {
        return failure;
    }
    axum::Json(json!({ "id": format!("reply-{}", fake.count("teams")) })).into_response()
}

/// An activity the bot starts in a conversation (`typing`), recorded as
/// `teams-activity`.
async fn teams_activity(
    State(fake): State<FakeProviders>,
    Path(conversation): Path<String>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    if !bearer(&headers).starts_with("teams-token-") {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let path = format!("/v3/conversations/{conversation}/activities");
    if let Some(failure) = fake.record("teams-activity", path, &headers, raw) {
        return failure;
    }
    axum::Json(json!({ "id": format!("activity-{}", fake.count("teams-activity")) }))
        .into_response()
}

/// Telegram's `getMe`: the bot, or 401 Unauthorized for a bad token.
async fn telegram_get_me(
    State(fake): State<FakeProviders>,
    Path(method_path): Path<String>,
) -> Response {
    fake.checked.lock().unwrap().push("telegram");
    if method_path.contains("refused") {
        let refused = json!({ "ok": false, "error_code": 401, "description": "Unauthorized" });
        return (StatusCode::UNAUTHORIZED, axum::Json(refused)).into_response();
    }
    axum::Json(
        json!({ "ok": true, "result": { "id": 1, "is_bot": true, "username": "steward_bot" } }),
    )
    .into_response()
}

/// The Graph API's record of a phone number, or its OAuth error.
async fn whatsapp_phone_number(
    State(fake): State<FakeProviders>,
    Path((_, phone)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    fake.checked.lock().unwrap().push("whatsapp");
    if bearer(&headers).contains("refused") {
        let refused = json!({ "error": {
            "message": "Invalid OAuth access token - Cannot parse access token",
            "type": "OAuthException", "code": 190
        }});
        return (StatusCode::UNAUTHORIZED, axum::Json(refused)).into_response();
    }
    axum::Json(json!({ "id": phone })).into_response()
}

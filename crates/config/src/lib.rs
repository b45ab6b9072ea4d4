//! Steward's configuration: defaults, then a TOML file, then `STEWARD_*`
//! environment variables (`STEWARD_SECTION__KEY`), then command-line flags.
//! Loaded and validated once at start and passed on as a value.
//!
//! [`KEYS`] documents every key; `steward config example` prints it.

mod docs;
mod secrets;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use steward_domain::Tier;

pub use docs::{KEYS, KeyDoc, example};
pub use secrets::{
    KeptSecrets, Secret, SecretsError, ensure_secrets, key_bytes, master_key_bytes,
    previous_master_key_bytes,
};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub env: Environment,
    pub listen: String,
    pub data_dir: PathBuf,
    pub database: DatabaseConfig,
    pub http: HttpConfig,
    pub auth: AuthConfig,
    pub secrets: SecretsConfig,
    pub tiers: TiersConfig,
    pub jobs: JobsConfig,
    pub scheduler: SchedulerConfig,
    pub llm: LlmConfig,
    pub channels: ChannelsConfig,
    pub storage: StorageConfig,
    pub backup: BackupConfig,
    pub knowledge: KnowledgeConfig,
    pub outbound: OutboundConfig,
    pub mail: MailConfig,
    pub tools: ToolsConfig,
    pub memory: MemoryConfig,
    pub insights: InsightsConfig,
    pub embeddings: EmbeddingsConfig,
    pub redis: RedisConfig,
    pub log: LogConfig,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Development,
    Production,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://…` or `postgres://…`; unset: `steward.db` in the data dir.
    pub url: Option<Secret>,
    pub max_connections: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub body_limit_bytes: usize,
    pub request_timeout_secs: u64,
    pub header_read_timeout_secs: u64,
    pub shutdown_grace_secs: u64,
    pub cors_allowed_origins: Vec<String>,
    pub trusted_proxies: Vec<IpAddr>,
    pub behind_tls: bool,
    /// Where people and providers reach Steward, e.g. `https://steward.example.org`:
    /// the base of the webhook URLs shown for channels.
    pub public_url: Option<String>,
    /// Opens `GET /metrics/organizations` (per-organization usage, for the
    /// Business dashboard) to a scraper presenting it as a bearer token.
    /// Unset: that endpoint answers 404.
    pub metrics_token: Option<Secret>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelsConfig {
    pub webhook_body_limit_bytes: usize,
    pub webhook_requests_per_second: u32,
    pub webhook_burst: u32,
    /// Messages one web chat visitor may send per minute.
    pub web_messages_per_minute: u32,
    /// Web chat requests (sessions and messages) one address may make per minute.
    pub web_requests_per_minute_per_address: u32,
    pub send_timeout_secs: u64,
    /// Ask a channel's provider whether its configuration works when it is
    /// saved (an admin may still skip it per channel).
    pub check_on_save: bool,
    /// The providers' API bases: the operator's to set (a test points them at
    /// a local stand-in), never a tenant's.
    pub whatsapp_api_url: String,
    pub slack_api_url: String,
    pub telegram_api_url: String,
    /// The Bot Framework's OpenID metadata: where Teams' signing keys are.
    pub teams_openid_url: String,
    /// Microsoft Entra ID, where a Teams bot gets its tokens.
    pub teams_login_url: String,
}

/// Destinations a tenant sets (knowledge URLs, reply URLs, mail servers).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundConfig {
    /// Let them reach loopback and private networks: tests and local
    /// development only; refused in production.
    pub allow_private_networks: bool,
}

/// The operator's SMTP server, for Steward's own notices to account holders
/// (not a channel's mail, which each channel configures).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    /// Empty: no notices are sent.
    pub smtp_host: String,
    pub smtp_port: u16,
    pub username: String,
    pub password: Option<Secret>,
    /// The notices' sender address.
    pub from: String,
    /// STARTTLS, or TLS from the start on port 465. Off only for a server on
    /// this machine.
    pub tls: bool,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            smtp_host: String::new(),
            smtp_port: 587,
            username: String::new(),
            password: None,
            from: String::new(),
            tls: true,
        }
    }
}

impl MailConfig {
    pub fn is_configured(&self) -> bool {
        !self.smtp_host.trim().is_empty()
    }
}

/// The bounds of a reply that calls tools.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolsConfig {
    /// Model calls in one reply; on the last, no tools are offered.
    pub max_steps: u32,
    pub call_timeout_secs: u64,
    /// All of a reply's tool calls together.
    pub turn_timeout_secs: u64,
    /// A longer result is cut, and the model told so.
    pub max_result_bytes: usize,
    /// MCP servers the operator runs, offered to every organization.
    pub servers: Vec<ToolServerConfig>,
    /// Where `steward mcp` serves Steward's own tools to other agents on the
    /// private network: never the API's address.
    pub mcp_listen: String,
    /// The `Host` names `steward mcp` answers to (against DNS rebinding):
    /// add the name other agents reach it by.
    pub mcp_allowed_hosts: Vec<String>,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        Self {
            max_steps: 8,
            call_timeout_secs: 15,
            turn_timeout_secs: 60,
            max_result_bytes: 16 * 1024,
            servers: Vec::new(),
            mcp_listen: "127.0.0.1:8091".into(),
            mcp_allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
        }
    }
}

/// What assistants remember of each person (see `steward_tools::memory`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// The most facts kept per person; the oldest go first.
    pub max_facts: u32,
    /// The most facts put before the model in one reply (those nearest
    /// the question).
    pub recall_facts: u32,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            max_facts: 200,
            recall_facts: 20,
        }
    }
}

/// Insights by category (`GET /api/v1/insights/patterns`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InsightsConfig {
    /// A cell counting fewer distinct people than this is suppressed; never
    /// below 3.
    pub min_people: u32,
}

impl Default for InsightsConfig {
    fn default() -> Self {
        Self { min_people: 5 }
    }
}

/// An MCP server the operator runs (`[[tools.servers]]`), on a private
/// network if need be: its tools are offered to every organization.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolServerConfig {
    /// Its tools are named `name.tool`: lowercase letters, digits and `-`.
    pub name: String,
    /// Its streamable HTTP endpoint.
    pub url: String,
    /// Sent with every request. A value `${NAME}` is read from the
    /// environment variable NAME when Steward starts.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// For connecting and listing its tools.
    #[serde(default = "ToolServerConfig::default_timeout_secs")]
    pub timeout_secs: u64,
}

impl ToolServerConfig {
    fn default_timeout_secs() -> u64 {
        15
    }

    /// The headers, with `${NAME}` values read from the environment.
    pub fn resolved_headers(&self) -> Result<Vec<(String, String)>, String> {
        self.headers
            .iter()
            .map(|(name, value)| {
                let value = match value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
                    Some(variable) => std::env::var(variable).map_err(|_| {
                        format!(
                            "tools.servers {}: header {name} names ${{{variable}}}, which is not set",
                            self.name
                        )
                    })?,
                    None => value.clone(),
                };
                Ok((name.clone(), value))
            })
            .collect()
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Where originals (uploads) are kept: `file:///PATH`, or
    /// `s3://BUCKET[/PREFIX]`. Unset: `blobs/` in the data dir.
    pub url: Option<String>,
    /// An S3-compatible endpoint (MinIO, Ceph, R2…). Unset: AWS, or `AWS_ENDPOINT`.
    pub s3_endpoint: Option<String>,
    /// Unset: `AWS_REGION`, else `us-east-1`.
    pub s3_region: Option<String>,
    /// Unset: `AWS_ACCESS_KEY_ID` (or the instance's or pod's role).
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key: Option<Secret>,
}

/// `steward backup` and the nightly `backup` job.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    /// The local folder backups are written to. Unset: `backups/` in the data dir.
    pub dir: Option<PathBuf>,
    /// A copy of each backup also goes to `s3://BUCKET[/PREFIX]`, with the
    /// `storage.s3_*` settings.
    pub s3_url: Option<String>,
    /// Keep at most this many backups (in each place) ...
    pub keep_count: u32,
    /// ... and none older than this, though never fewer than one.
    pub keep_days: u32,
    /// The `pg_dump` and `pg_restore` programs: a name found on PATH, or a path.
    /// Their major version must be at least the server's.
    pub pg_dump: String,
    pub pg_restore: String,
    /// Backups are sealed under this key (base64 of 32 bytes), never the
    /// master key. Generated into the data folder outside production.
    pub encryption_key: Option<Secret>,
    /// Keys a rotation replaced: they open older backups, never seal.
    pub previous_encryption_keys: Vec<Secret>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KnowledgeConfig {
    pub max_file_bytes: usize,
    pub max_files_per_upload: usize,
    /// Text extracted from one document, at most (after decompression).
    pub max_text_bytes: usize,
    pub chunk_chars: usize,
    pub chunk_overlap_chars: usize,
    /// Passages put into each answer's prompt.
    pub passages_per_answer: u32,
    pub ingest_attempts: i32,
    pub fetch_timeout_secs: u64,
    pub fetch_max_redirects: usize,
    /// Least time between two requests of a crawl (a site's Crawl-delay may ask for more).
    pub crawl_delay_ms: u64,
    /// The most a crawl request may ask for.
    pub crawl_max_pages: i32,
    pub crawl_max_depth: i32,
    pub crawl_max_secs: u64,
    pub crawl_max_bytes: usize,
    /// A PDF with more pages is refused.
    pub pdf_max_pages: usize,
    /// Address space of the child process that reads a PDF.
    pub pdf_memory_mb: u64,
    /// Longest a PDF may take to read.
    pub pdf_timeout_secs: u64,
    /// CPU time reading one document's text may take (after a PDF's reader).
    pub read_cpu_secs: u64,
}

impl KnowledgeConfig {
    /// The largest upload request: every file at its largest, plus the
    /// multipart framing.
    pub fn upload_limit_bytes(&self) -> usize {
        self.max_file_bytes
            .saturating_mul(self.max_files_per_upload)
            .saturating_add(64 * 1024)
    }
}

/// An OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, Ollama, vLLM,
/// llama.cpp, text-embeddings-inference…).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddingsConfig {
    /// The base URL, e.g. `https://api.openai.com/v1`. Unset: no embeddings,
    /// and retrieval is full text only.
    pub base_url: Option<String>,
    pub api_key: Option<Secret>,
    pub model: String,
    /// The length of the model's vectors; every vector is checked against it.
    pub dimensions: usize,
    /// Texts per request.
    pub batch_size: usize,
    pub timeout_secs: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://HOST:PORT/DB`; unset: limits are kept in each process.
    pub url: Option<Secret>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    Open,
    Closed,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub jwt_secret: Option<Secret>,
    pub token_ttl_secs: u64,
    pub registration: Registration,
    pub login_attempts_per_minute_per_ip: u32,
    pub login_attempts_per_minute_per_account: u32,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub hash_concurrency: usize,
    /// The platform's OpenID provider, which organizations may sign in
    /// through instead of their own: its issuer URL, and Steward's client
    /// there. All three or none.
    pub sso_issuer: Option<String>,
    pub sso_client_id: Option<String>,
    pub sso_client_secret: Option<Secret>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    pub master_key: Option<Secret>,
    /// During a rotation, the key being replaced: still opens what it
    /// sealed, never seals. Unset once `steward secrets reseal` has run.
    pub previous_master_key: Option<Secret>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierLimits {
    pub messages_per_month: i64,
    pub tokens_per_month: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TiersConfig {
    pub free: TierLimits,
    pub pro: TierLimits,
    pub enterprise: TierLimits,
}

impl TiersConfig {
    pub fn limits(&self, tier: Tier) -> TierLimits {
        match tier {
            Tier::Free => self.free,
            Tier::Pro => self.pro,
            Tier::Enterprise => self.enterprise,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    pub concurrency: usize,
    /// Per job kind, at most this many at once (within `concurrency`).
    pub kind_concurrency: std::collections::BTreeMap<String, usize>,
    /// Most of a worker's slots one organization may hold. Unset: half.
    pub org_share: Option<usize>,
    /// Slots only replies (respond, deliver) may take. Unset: a quarter.
    pub reply_reserve: Option<usize>,
    pub lease_secs: u64,
    pub max_attempts: i32,
    pub backoff_base_secs: f64,
    pub poll_interval_ms: u64,
    pub keep_finished_hours: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// When to run the `maintenance` job (cron, UTC; seconds optional).
    pub maintenance_cron: String,
    /// When to check email channels' mailboxes (a `poll` job).
    pub mailbox_poll_cron: String,
    /// When to run the `backup` job; empty turns the nightly backup off.
    pub backup_cron: String,
    /// When to delete the exports whose day is over (an `export` job).
    pub export_sweep_cron: String,
    /// How long leadership outlives a scheduler that stopped renewing it (SQLite).
    pub lease_secs: u64,
    /// After a hand-over, firings this far back are enqueued if missed.
    pub catch_up_secs: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// The kill switch: false answers without any model call.
    pub enabled: bool,
    pub max_tokens: u32,
    /// Turns of the conversation sent with each request.
    pub history_turns: u32,
    pub primary: Option<ProviderConfig>,
    pub fallback: Option<ProviderConfig>,
    /// A small model for background work (learning what people told the
    /// assistant); unset: the primary, then the fallback.
    pub background: Option<ProviderConfig>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Anthropic,
    /// Any OpenAI-compatible Chat Completions server.
    Openai,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// Default: the provider's public API.
    pub base_url: Option<String>,
    pub api_key: Option<Secret>,
    pub model: String,
    #[serde(default = "default_llm_timeout")]
    pub timeout_secs: u64,
}

fn default_llm_timeout() -> u64 {
    60
}

impl ProviderConfig {
    pub fn base_url(&self) -> &str {
        match (&self.base_url, self.kind) {
            (Some(url), _) => url,
            (None, ProviderKind::Anthropic) => "https://api.anthropic.com",
            (None, ProviderKind::Openai) => "https://api.openai.com/v1",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON in production, text otherwise.
    Auto,
    Json,
    Text,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            env: Environment::Development,
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./steward-data"),
            database: DatabaseConfig {
                url: None,
                max_connections: 16,
            },
            http: HttpConfig {
                body_limit_bytes: 1024 * 1024,
                request_timeout_secs: 30,
                header_read_timeout_secs: 10,
                shutdown_grace_secs: 10,
                cors_allowed_origins: Vec::new(),
                trusted_proxies: Vec::new(),
                behind_tls: false,
                public_url: None,
                metrics_token: None,
            },
            channels: ChannelsConfig {
                webhook_body_limit_bytes: 256 * 1024,
                webhook_requests_per_second: 50,
                webhook_burst: 100,
                web_messages_per_minute: 20,
                web_requests_per_minute_per_address: 120,
                send_timeout_secs: 15,
                check_on_save: true,
                whatsapp_api_url: "https://graph.facebook.com/v21.0".into(),
                slack_api_url: "https://slack.com/api".into(),
                telegram_api_url: "https://api.telegram.org".into(),
                teams_openid_url:
                    "https://login.botframework.com/v1/.well-known/openidconfiguration".into(),
                teams_login_url: "https://login.microsoftonline.com".into(),
            },
            outbound: OutboundConfig::default(),
            mail: MailConfig::default(),
            tools: ToolsConfig::default(),
            memory: MemoryConfig::default(),
            insights: InsightsConfig::default(),
            storage: StorageConfig::default(),
            backup: BackupConfig {
                dir: None,
                s3_url: None,
                keep_count: 7,
                keep_days: 30,
                pg_dump: "pg_dump".into(),
                pg_restore: "pg_restore".into(),
                encryption_key: None,
                previous_encryption_keys: Vec::new(),
            },
            knowledge: KnowledgeConfig {
                max_file_bytes: 20 * 1024 * 1024,
                max_files_per_upload: 20,
                max_text_bytes: 20 * 1024 * 1024,
                chunk_chars: 1200,
                chunk_overlap_chars: 200,
                passages_per_answer: 5,
                ingest_attempts: 3,
                fetch_timeout_secs: 30,
                fetch_max_redirects: 5,
                crawl_delay_ms: 1000,
                crawl_max_pages: 500,
                crawl_max_depth: 10,
                crawl_max_secs: 3600,
                crawl_max_bytes: 200 * 1024 * 1024,
                pdf_max_pages: 2000,
                pdf_memory_mb: 1024,
                pdf_timeout_secs: 60,
                read_cpu_secs: 10,
            },
            embeddings: EmbeddingsConfig {
                base_url: None,
                api_key: None,
                model: "text-embedding-3-small".into(),
                dimensions: 1536,
                batch_size: 64,
                timeout_secs: 30,
            },
            redis: RedisConfig::default(),
            auth: AuthConfig {
                jwt_secret: None,
                token_ttl_secs: 24 * 3600,
                registration: Registration::Open,
                login_attempts_per_minute_per_ip: 20,
                login_attempts_per_minute_per_account: 5,
                argon2_memory_kib: 19 * 1024,
                argon2_iterations: 2,
                hash_concurrency: 2,
                sso_issuer: None,
                sso_client_id: None,
                sso_client_secret: None,
            },
            secrets: SecretsConfig::default(),
            tiers: TiersConfig {
                free: TierLimits {
                    messages_per_month: 1_000,
                    tokens_per_month: 1_000_000,
                },
                pro: TierLimits {
                    messages_per_month: 20_000,
                    tokens_per_month: 20_000_000,
                },
                enterprise: TierLimits {
                    messages_per_month: 500_000,
                    tokens_per_month: 500_000_000,
                },
            },
            jobs: JobsConfig {
                concurrency: 8,
                kind_concurrency: Default::default(),
                org_share: None,
                reply_reserve: None,
                lease_secs: 60,
                max_attempts: 5,
                backoff_base_secs: 2.0,
                poll_interval_ms: 1000,
                keep_finished_hours: 168,
            },
            llm: LlmConfig {
                enabled: true,
                max_tokens: 1024,
                history_turns: 20,
                primary: None,
                fallback: None,
                background: None,
            },
            scheduler: SchedulerConfig {
                maintenance_cron: "17 * * * *".into(),
                mailbox_poll_cron: "*/30 * * * * *".into(),
                backup_cron: "40 2 * * *".into(),
                export_sweep_cron: "*/10 * * * *".into(),
                lease_secs: 15,
                catch_up_secs: 300,
            },
            log: LogConfig {
                level: "info".into(),
                format: LogFormat::Auto,
            },
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Config::default().database
    }
}
impl Default for HttpConfig {
    fn default() -> Self {
        Config::default().http
    }
}
impl Default for ChannelsConfig {
    fn default() -> Self {
        Config::default().channels
    }
}
impl Default for BackupConfig {
    fn default() -> Self {
        Config::default().backup
    }
}
impl Default for KnowledgeConfig {
    fn default() -> Self {
        Config::default().knowledge
    }
}
impl Default for EmbeddingsConfig {
    fn default() -> Self {
        Config::default().embeddings
    }
}
impl Default for AuthConfig {
    fn default() -> Self {
        Config::default().auth
    }
}
impl Default for TiersConfig {
    fn default() -> Self {
        Config::default().tiers
    }
}
impl Default for JobsConfig {
    fn default() -> Self {
        Config::default().jobs
    }
}
impl Default for SchedulerConfig {
    fn default() -> Self {
        Config::default().scheduler
    }
}
impl LlmConfig {
    /// With no provider configured, `ANTHROPIC_API_KEY` or else `OPENAI_API_KEY`
    /// configures one with that vendor's public API and a current model.
    fn pick_up_conventional_keys(&mut self, env: impl Fn(&str) -> Option<String>) {
        if self.primary.is_some() {
            return;
        }
        let (kind, key, model) = if let Some(key) = env("ANTHROPIC_API_KEY") {
            (ProviderKind::Anthropic, key, "claude-sonnet-4-5")
        } else if let Some(key) = env("OPENAI_API_KEY") {
            (ProviderKind::Openai, key, "gpt-4o-mini")
        } else {
            return;
        };
        self.primary = Some(ProviderConfig {
            kind,
            base_url: None,
            api_key: Some(Secret::new(key)),
            model: model.into(),
            timeout_secs: default_llm_timeout(),
        });
    }
}

impl Default for LlmConfig {
    fn default() -> Self {
        Config::default().llm
    }
}
impl Default for LogConfig {
    fn default() -> Self {
        Config::default().log
    }
}

/// Values given as command-line flags: the last word.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The top-level keys of the configuration: environment variables set these
/// only, so other `STEWARD_*` variables (the test suite's, say) are not read as
/// configuration. Derived from [`Config`] itself, so a new section is never missed.
fn sections() -> Vec<String> {
    match toml::Value::try_from(Config::default()) {
        Ok(toml::Value::Table(table)) => table.keys().cloned().collect(),
        _ => unreachable!("the default configuration serializes to a table"),
    }
}

impl Config {
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::load_from(file, overrides, Env::prefixed("STEWARD_"))
    }

    fn load_from(
        file: Option<&Path>,
        overrides: &Overrides,
        env: Env,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::MissingFile(path.to_owned()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        // The filter sees the raw name (`DATABASE__URL`), before it is split.
        let sections = sections();
        let env = env
            .filter(move |key| {
                let top = key
                    .as_str()
                    .split("__")
                    .next()
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                sections.contains(&top)
            })
            .split("__");
        let config: Config = figment
            .merge(env)
            .merge(Serialized::globals(overrides))
            .extract()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let mut config = config;
        config
            .llm
            .pick_up_conventional_keys(|name| std::env::var(name).ok().filter(|v| !v.is_empty()));
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        if self.listen.parse::<SocketAddr>().is_err() {
            return invalid(format!(
                "listen: '{}' is not an address like 127.0.0.1:8080",
                self.listen
            ));
        }
        if self.http.body_limit_bytes == 0 {
            return invalid("http.body_limit_bytes must be above 0".into());
        }
        if self.is_production() && self.outbound.allow_private_networks {
            return invalid(
                "outbound.allow_private_networks is for tests and local development: production refuses it"
                    .into(),
            );
        }
        let auth = &self.auth;
        let platform_sso = [
            auth.sso_issuer.is_some(),
            auth.sso_client_id.is_some(),
            auth.sso_client_secret.is_some(),
        ];
        if platform_sso.contains(&true) && platform_sso.contains(&false) {
            return invalid(
                "auth.sso_issuer, auth.sso_client_id and auth.sso_client_secret go together: set all three or none"
                    .into(),
            );
        }
        if let Some(issuer) = &auth.sso_issuer
            && !(issuer.starts_with("https://") || issuer.starts_with("http://"))
        {
            return invalid(format!("auth.sso_issuer: '{issuer}' is not an http(s) URL"));
        }
        let tools = &self.tools;
        if tools.max_steps == 0
            || tools.call_timeout_secs == 0
            || tools.turn_timeout_secs == 0
            || tools.max_result_bytes == 0
        {
            return invalid("tools: max_steps, call_timeout_secs, turn_timeout_secs and max_result_bytes must be above 0".into());
        }
        match tools.mcp_listen.parse::<SocketAddr>() {
            Ok(mcp) if mcp != self.listen_addr() => {}
            _ => {
                return invalid(format!(
                    "tools.mcp_listen: '{}' must be an address like 127.0.0.1:8091, not the API's",
                    tools.mcp_listen
                ));
            }
        }
        let mut names = std::collections::HashSet::new();
        for server in &tools.servers {
            let name_ok = (1..=40).contains(&server.name.len())
                && server
                    .name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !name_ok || !names.insert(server.name.as_str()) {
                return invalid(format!(
                    "tools.servers: '{}' must be a unique name of 1 to 40 lowercase letters, digits and -",
                    server.name
                ));
            }
            if !(server.url.starts_with("http://") || server.url.starts_with("https://"))
                || server.timeout_secs == 0
            {
                return invalid(format!(
                    "tools.servers {}: url must be http(s) and timeout_secs above 0",
                    server.name
                ));
            }
        }
        let mail = &self.mail;
        if mail.is_configured() {
            let local = matches!(mail.smtp_host.as_str(), "localhost" | "127.0.0.1" | "::1");
            if mail.smtp_port == 0 || !mail.from.contains('@') || (!mail.tls && !local) {
                return invalid(
                    "mail: smtp_port above 0, a from address, and tls on unless the server is on this machine".into(),
                );
            }
        }
        for (key, url) in [
            ("channels.whatsapp_api_url", &self.channels.whatsapp_api_url),
            ("channels.slack_api_url", &self.channels.slack_api_url),
            ("channels.telegram_api_url", &self.channels.telegram_api_url),
            ("channels.teams_openid_url", &self.channels.teams_openid_url),
            ("channels.teams_login_url", &self.channels.teams_login_url),
        ] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return invalid(format!("{key} must be an http(s) URL"));
            }
        }
        if self.http.request_timeout_secs == 0 || self.http.header_read_timeout_secs == 0 {
            return invalid("http timeouts must be above 0 seconds".into());
        }
        let knowledge = &self.knowledge;
        if knowledge.max_file_bytes == 0
            || knowledge.max_files_per_upload == 0
            || knowledge.max_text_bytes == 0
            || knowledge.ingest_attempts < 1
            || knowledge.fetch_timeout_secs == 0
            || knowledge.crawl_max_pages < 1
            || knowledge.crawl_max_depth < 0
            || knowledge.crawl_max_secs == 0
            || knowledge.crawl_max_bytes == 0
            || knowledge.pdf_max_pages == 0
            || knowledge.pdf_memory_mb < 64
            || knowledge.pdf_timeout_secs == 0
            || knowledge.read_cpu_secs == 0
        {
            return invalid("knowledge limits must be above 0".into());
        }
        if knowledge.chunk_chars < 200 || knowledge.chunk_overlap_chars * 2 > knowledge.chunk_chars
        {
            return invalid(
                "knowledge.chunk_chars must be at least 200, and chunk_overlap_chars at most half of it".into(),
            );
        }
        let embeddings = &self.embeddings;
        if embeddings.base_url.is_some()
            && (!(1..=4096).contains(&embeddings.dimensions)
                || embeddings.batch_size == 0
                || embeddings.timeout_secs == 0)
        {
            return invalid(
                "embeddings.dimensions must be 1 to 4096, and batch_size and timeout_secs above 0"
                    .into(),
            );
        }
        if let Some(url) = &self.storage.url {
            let bucket = url
                .strip_prefix("s3://")
                .map(|rest| rest.split('/').next().unwrap_or(""));
            if !url.starts_with("file:///") && bucket.is_none_or(str::is_empty) {
                return invalid(format!(
                    "storage.url: '{url}' is not supported; use file:///PATH or s3://BUCKET[/PREFIX]"
                ));
            }
        }
        if let Some(url) = &self.backup.s3_url
            && url
                .strip_prefix("s3://")
                .and_then(|rest| rest.split('/').next())
                .is_none_or(str::is_empty)
        {
            return invalid(format!(
                "backup.s3_url: '{url}' is not supported; use s3://BUCKET[/PREFIX]"
            ));
        }
        if self.backup.keep_count == 0 {
            return invalid("backup.keep_count must be at least 1".into());
        }
        if let Some(endpoint) = &self.storage.s3_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return invalid(format!(
                "storage.s3_endpoint: '{endpoint}' must start with http:// or https://"
            ));
        }
        if self.auth.token_ttl_secs == 0 {
            return invalid("auth.token_ttl_secs must be above 0".into());
        }
        if self.auth.login_attempts_per_minute_per_ip == 0
            || self.auth.login_attempts_per_minute_per_account == 0
        {
            return invalid("auth login attempt limits must be above 0".into());
        }
        for origin in &self.http.cors_allowed_origins {
            if !(origin.starts_with("https://") || origin.starts_with("http://"))
                || origin.ends_with('/')
            {
                return invalid(format!(
                    "http.cors_allowed_origins: '{origin}' must be an origin like https://app.example.org"
                ));
            }
        }
        if let Some(url) = &self.http.public_url
            && (!(url.starts_with("https://") || url.starts_with("http://")) || url.ends_with('/'))
        {
            return invalid(format!(
                "http.public_url: '{url}' must be an address like https://steward.example.org"
            ));
        }
        let channels = &self.channels;
        if channels.webhook_body_limit_bytes == 0
            || channels.webhook_requests_per_second == 0
            || channels.webhook_burst == 0
            || channels.web_messages_per_minute == 0
            || channels.web_requests_per_minute_per_address == 0
            || channels.send_timeout_secs == 0
        {
            return invalid("channels: limits and timeouts must be above 0".into());
        }
        for (name, limits) in [
            ("free", self.tiers.free),
            ("pro", self.tiers.pro),
            ("enterprise", self.tiers.enterprise),
        ] {
            if limits.messages_per_month < 0 || limits.tokens_per_month < 0 {
                return invalid(format!("tiers.{name}: limits must not be negative"));
            }
        }
        let jobs = &self.jobs;
        if jobs.concurrency == 0
            || jobs.lease_secs < 3
            || jobs.max_attempts < 1
            || jobs.poll_interval_ms == 0
        {
            return invalid("jobs: concurrency and max_attempts must be at least 1, lease_secs at least 3, poll_interval_ms above 0".into());
        }
        if jobs.org_share == Some(0) {
            return invalid("jobs.org_share must be at least 1".into());
        }
        if jobs.reply_reserve.is_some_and(|r| r >= jobs.concurrency) {
            return invalid(
                "jobs.reply_reserve must leave background work a slot: below jobs.concurrency"
                    .into(),
            );
        }
        if !(jobs.backoff_base_secs.is_finite() && jobs.backoff_base_secs > 0.0) {
            return invalid("jobs.backoff_base_secs must be above 0".into());
        }
        for kind in jobs.kind_concurrency.keys() {
            if kind.parse::<steward_domain::JobKind>().is_err() {
                return invalid(format!("jobs.kind_concurrency: unknown job kind '{kind}'"));
            }
        }
        for (name, provider) in [
            ("llm.primary", &self.llm.primary),
            ("llm.fallback", &self.llm.fallback),
            ("llm.background", &self.llm.background),
        ] {
            let Some(provider) = provider else { continue };
            if provider.model.trim().is_empty() || provider.timeout_secs == 0 {
                return invalid(format!(
                    "{name}: model must be named and timeout_secs above 0"
                ));
            }
            if provider.kind == ProviderKind::Anthropic && provider.api_key.is_none() {
                return invalid(format!("{name}: Anthropic needs api_key"));
            }
            let url = provider.base_url();
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return invalid(format!("{name}.base_url must be an http(s) URL"));
            }
        }
        if self.llm.fallback.is_some() && self.llm.primary.is_none() {
            return invalid("llm.fallback is set but llm.primary is not".into());
        }
        if self.llm.background.is_some() && self.llm.primary.is_none() {
            return invalid("llm.background is set but llm.primary is not".into());
        }
        let memory = &self.memory;
        if !(1..=10_000).contains(&memory.max_facts) || !(1..=200).contains(&memory.recall_facts) {
            return invalid(
                "memory.max_facts must be 1 to 10000 and memory.recall_facts 1 to 200".into(),
            );
        }
        if !(3..=1000).contains(&self.insights.min_people) {
            return invalid(
                "insights.min_people must be 3 to 1000: fewer would let an advisor single people out"
                    .into(),
            );
        }
        if self.llm.max_tokens == 0 || self.llm.history_turns == 0 {
            return invalid("llm.max_tokens and llm.history_turns must be above 0".into());
        }
        if self.scheduler.lease_secs < 2 {
            return invalid("scheduler.lease_secs must be at least 2".into());
        }
        if let Some(url) = &self.database.url {
            let url = url.expose();
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
            {
                return invalid(
                    "database.url must start with sqlite:, postgres:// or postgresql://".into(),
                );
            }
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen.parse().expect("validated at load")
    }

    pub fn is_production(&self) -> bool {
        self.env == Environment::Production
    }

    /// The database URL, defaulting to a SQLite file in the data dir.
    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(url) => url.expose().to_owned(),
            None => format!("sqlite://{}", self.data_dir.join("steward.db").display()),
        }
    }
}

#[cfg(test)]
mod tests;

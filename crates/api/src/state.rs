//! What every handler shares: the store, credentials, configuration, limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::Duration;
use metrics_exporter_prometheus::PrometheusHandle;
use steward_auth::{HashingParams, PasswordHasher, Sealer, Signer, Tokens};
use steward_config::Config;
use steward_knowledge::{Blobs, Fetcher, Retriever};
use steward_store::Store;

use crate::auth::LoginLimiter;
use crate::ratelimit::WebhookLimiter;

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Config,
    pub tokens: Tokens,
    pub hasher: PasswordHasher,
    /// Seals history cursors so clients cannot forge or move them.
    pub cursors: Signer,
    /// Makes the console's CSRF tokens.
    pub csrf: Signer,
    /// Seals web chat visitors' session tokens.
    pub visitors: Signer,
    pub visitor_limiter: crate::webchat::VisitorLimiter,
    pub login_limiter: LoginLimiter,
    pub webhook_limiter: WebhookLimiter,
    /// Checks webhooks' signatures and tokens (keeps Teams' signing keys).
    pub webhooks: steward_channels::webhook::Verifier,
    /// Channels opened for webhooks, kept between requests.
    pub(crate) open_channels: crate::routes::webhooks::OpenChannels,
    /// Opens and seals channel secrets (the master key).
    pub sealer: Arc<Sealer>,
    pub metrics: PrometheusHandle,
    /// Where uploaded originals are kept.
    pub blobs: Blobs,
    /// Checks URLs people give before they are queued for fetching.
    pub fetcher: Fetcher,
    pub retriever: Retriever,
    pub tools: steward_tools::Catalogue,
    /// Asks a channel's provider whether its configuration works.
    pub channels: steward_channels::Sender,
    /// Single sign-on's providers, kept between sign-ins.
    pub sso: crate::oidc::Sso,
    /// Requests being handled now: what a graceful shutdown waits for.
    in_flight: AtomicI64,
    /// Signalled after a request enqueues a job, so that a worker in this
    /// process starts it at once instead of at its next poll.
    pub jobs_enqueued: Arc<tokio::sync::Notify>,
    /// When table sizes and audit volume were last sampled for the metrics
    /// (counting rows costs a scan on SQLite, so at most every few minutes).
    pub(crate) sampled_at: std::sync::Mutex<Option<std::time::Instant>>,
    /// Some organization exists (the console's first-run page is gone).
    pub(crate) has_organizations: std::sync::atomic::AtomicBool,
    /// Insights-by-category queries answered by this process, per
    /// organization (`steward_insights_queries_total` at
    /// /metrics/organizations).
    pub(crate) insights_queries:
        std::sync::Mutex<std::collections::HashMap<steward_domain::OrgId, u64>>,
    /// The replies being written, for followers who reconnect mid-reply.
    pub(crate) live: Arc<crate::live_hub::LiveHub>,
}

impl AppState {
    /// `config` must have its secrets filled in (`steward_config::ensure_secrets`).
    pub fn new(config: Config, store: Arc<dyn Store>) -> Result<Arc<Self>, String> {
        let services = crate::Services::from_config(&config, store.clone())?;
        Self::with_services(config, store, services)
    }

    /// The same, with services built already (`serve` shares them with its worker).
    pub fn with_services(
        config: Config,
        store: Arc<dyn Store>,
        services: crate::Services,
    ) -> Result<Arc<Self>, String> {
        let jwt_secret = config
            .auth
            .jwt_secret
            .as_ref()
            .ok_or("auth.jwt_secret is not set")?
            .expose()
            .as_bytes()
            .to_vec();
        let ttl = Duration::seconds(
            i64::try_from(config.auth.token_ttl_secs).map_err(|e| e.to_string())?,
        );
        let hasher = PasswordHasher::new(HashingParams {
            memory_kib: config.auth.argon2_memory_kib,
            iterations: config.auth.argon2_iterations,
            concurrency: config.auth.hash_concurrency,
        })?;
        let login_limiter = LoginLimiter::new(
            config.auth.login_attempts_per_minute_per_ip,
            config.auth.login_attempts_per_minute_per_account,
        )?;
        let channels = &config.channels;
        let webhook_limiter = WebhookLimiter::new(
            channels.webhook_requests_per_second,
            channels.webhook_burst,
            config.redis.url.as_ref().map(|u| u.expose()),
        )?;
        let webhooks = steward_channels::webhook::Verifier {
            teams: steward_channels::teams::auth::BotFrameworkKeys::new(
                services.channels.provider_client(),
                channels.teams_openid_url.clone(),
            ),
        };
        Ok(Arc::new(Self {
            sso: crate::oidc::Sso::new(services.guard.clone()),
            webhook_limiter,
            webhooks,
            open_channels: Default::default(),
            blobs: services.blobs,
            fetcher: services.fetcher,
            retriever: services.retriever,
            tools: services.tools,
            channels: services.channels,
            sealer: services.sealer,
            tokens: Tokens::new(&jwt_secret, ttl),
            cursors: Signer::derive(&jwt_secret, "history-cursor"),
            csrf: Signer::derive(&jwt_secret, "console-csrf"),
            visitors: Signer::derive(&jwt_secret, "web-visitor"),
            visitor_limiter: crate::webchat::VisitorLimiter::new(
                config.channels.web_messages_per_minute,
                config.channels.web_requests_per_minute_per_address,
            )?,
            hasher,
            login_limiter,
            metrics: crate::metrics::handle(),
            in_flight: AtomicI64::new(0),
            jobs_enqueued: Arc::new(tokio::sync::Notify::new()),
            sampled_at: std::sync::Mutex::new(None),
            has_organizations: std::sync::atomic::AtomicBool::new(false),
            insights_queries: Default::default(),
            live: Default::default(),
            store,
            config,
        }))
    }
}

impl AppState {
    pub fn requests_in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request until the returned guard is dropped (also when the
    /// request is cancelled).
    pub(crate) fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

pub(crate) struct InFlight(Arc<AppState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pub type SharedState = Arc<AppState>;

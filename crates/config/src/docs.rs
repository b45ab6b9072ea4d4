//! One documented line per configuration key, in the order `config example`
//! prints them. A test checks that every key of [`Config`] is here.

use crate::Config;

pub struct KeyDoc {
    pub key: &'static str,
    pub doc: &'static str,
}

const fn k(key: &'static str, doc: &'static str) -> KeyDoc {
    KeyDoc { key, doc }
}

pub const KEYS: &[KeyDoc] = &[
    k(
        "env",
        "development or production. Production logs JSON and refuses to start without explicit secrets.",
    ),
    k(
        "listen",
        "Address the HTTP server listens on (flag --listen).",
    ),
    k(
        "data_dir",
        "Folder for the SQLite database, generated secrets and local blobs (flag --data-dir).",
    ),
    k(
        "database.url",
        "sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DB. Unset: steward.db in the data dir.",
    ),
    k(
        "database.max_connections",
        "Connection pool size (PostgreSQL) or reader connections (SQLite).",
    ),
    k(
        "http.body_limit_bytes",
        "Largest request body accepted; larger ones get 413.",
    ),
    k(
        "http.request_timeout_secs",
        "A request that takes longer is answered 408.",
    ),
    k(
        "http.header_read_timeout_secs",
        "A client that takes longer to send its headers is disconnected.",
    ),
    k(
        "http.shutdown_grace_secs",
        "On SIGTERM, how long in-flight requests and running jobs may finish before exit.",
    ),
    k(
        "http.cors_allowed_origins",
        "Browser origins allowed to call the API, e.g. [\"https://app.example.org\"]. Empty: none.",
    ),
    k(
        "http.trusted_proxies",
        "Proxy addresses whose X-Forwarded-For is believed, e.g. [\"127.0.0.1\"].",
    ),
    k(
        "http.behind_tls",
        "Whether clients reach Steward over HTTPS (a TLS proxy in front); enables HSTS.",
    ),
    k(
        "http.public_url",
        "Where providers and people reach Steward, e.g. https://steward.example.org: the base of channel webhook URLs.",
    ),
    k(
        "http.metrics_token",
        "A bearer token that opens GET /metrics/organizations (per-organization activity and usage, for the operator's Business dashboard). Unset: that endpoint answers 404.",
    ),
    k(
        "auth.jwt_secret",
        "Key that signs login tokens (32+ characters). Unset outside production: generated into the data dir.",
    ),
    k("auth.token_ttl_secs", "How long a login token stays valid."),
    k(
        "auth.registration",
        "open: anyone may register an organization; closed: only the operator creates them (steward org create).",
    ),
    k(
        "auth.login_attempts_per_minute_per_ip",
        "Login attempts allowed per client address per minute before 429.",
    ),
    k(
        "auth.login_attempts_per_minute_per_account",
        "Login attempts allowed per email from one address per minute before 429; from all addresses together, ten times as many. Someone guessing from one address is slowed without locking the owner out.",
    ),
    k(
        "auth.argon2_memory_kib",
        "Memory per password hash (argon2id).",
    ),
    k(
        "auth.argon2_iterations",
        "Passes per password hash (argon2id).",
    ),
    k(
        "auth.hash_concurrency",
        "Password hashes computed at once; each holds argon2_memory_kib.",
    ),
    k(
        "auth.sso_issuer",
        "The platform's OpenID provider (its issuer URL), which organizations may use for single sign-on instead of their own. Unset: each brings its own.",
    ),
    k(
        "auth.sso_client_id",
        "Steward's client id at the platform's OpenID provider.",
    ),
    k(
        "auth.sso_client_secret",
        "Steward's client secret at the platform's OpenID provider.",
    ),
    k(
        "secrets.master_key",
        "Base64 of 32 bytes that encrypts stored secrets (openssl rand -base64 32). Unset outside production: generated.",
    ),
    k(
        "secrets.previous_master_key",
        "During a rotation, the master key being replaced: it still opens what it sealed, never seals. Remove it once `steward secrets reseal` has run.",
    ),
    k(
        "tiers.free.messages_per_month",
        "Messages an organization on the free tier may receive per month.",
    ),
    k(
        "tiers.free.tokens_per_month",
        "Model tokens an organization on the free tier may use per month.",
    ),
    k(
        "tiers.pro.messages_per_month",
        "Messages per month on the pro tier.",
    ),
    k(
        "tiers.pro.tokens_per_month",
        "Model tokens per month on the pro tier.",
    ),
    k(
        "tiers.enterprise.messages_per_month",
        "Messages per month on the enterprise tier.",
    ),
    k(
        "tiers.enterprise.tokens_per_month",
        "Model tokens per month on the enterprise tier.",
    ),
    k("jobs.concurrency", "Jobs one worker process runs at once."),
    k(
        "jobs.kind_concurrency",
        "Per job kind, at most this many at once, e.g. { respond = 6, ingest = 2 }. Kinds: respond, deliver, ingest, index_vectors, crawl, classify, export, digest, backup, maintenance, poll, notice, post, memory, erase. Unset for ingest and index_vectors: one per CPU core but one (at least one), so extraction and PostgreSQL's vector indexing leave replies a core.",
    ),
    k(
        "jobs.org_share",
        "Most of a worker's slots one organization's jobs may hold at once, so that one tenant's flood cannot keep others waiting. Unset: half of jobs.concurrency.",
    ),
    k(
        "jobs.reply_reserve",
        "Slots only replies (respond, deliver) may take: ingestion, crawls and other background work never hold them. Unset: a quarter of jobs.concurrency.",
    ),
    k(
        "jobs.lease_secs",
        "How long a claimed job stays a worker's without a heartbeat; after that another worker takes it over.",
    ),
    k(
        "jobs.max_attempts",
        "Attempts before a failing job goes to the dead-letter list.",
    ),
    k(
        "jobs.backoff_base_secs",
        "Wait before the first retry; it doubles with each attempt, with jitter, up to an hour.",
    ),
    k(
        "jobs.poll_interval_ms",
        "How often an idle worker looks for jobs when nothing wakes it.",
    ),
    k(
        "jobs.keep_finished_hours",
        "Succeeded and dead jobs older than this are deleted by the maintenance job.",
    ),
    k(
        "scheduler.maintenance_cron",
        "When the maintenance job runs: a cron pattern in UTC (5 fields, or 6 with seconds first).",
    ),
    k(
        "scheduler.mailbox_poll_cron",
        "When email channels' mailboxes are checked for new mail: a cron pattern in UTC (6 fields: seconds first).",
    ),
    k(
        "scheduler.backup_cron",
        "When the backup job runs: a cron pattern in UTC. Empty: no scheduled backups (a Kubernetes CronJob may run them instead).",
    ),
    k(
        "scheduler.export_sweep_cron",
        "When to delete exports of people's data whose 24 hours are over, with their zips (cron, UTC).",
    ),
    k(
        "scheduler.lease_secs",
        "How long scheduler leadership outlives a leader that stopped (SQLite; PostgreSQL notices at once).",
    ),
    k(
        "scheduler.catch_up_secs",
        "A new leader enqueues firings it finds missed up to this far back; each firing is enqueued once.",
    ),
    k(
        "channels.webhook_body_limit_bytes",
        "Largest webhook body accepted; larger ones are refused with 413.",
    ),
    k(
        "channels.webhook_requests_per_second",
        "Webhook requests each channel may make per second, on average (429 above it).",
    ),
    k(
        "channels.webhook_burst",
        "Webhook requests a channel may make at once before the per-second limit applies.",
    ),
    k(
        "channels.web_messages_per_minute",
        "Messages one web chat visitor (one browser session) may send per minute (429 above it).",
    ),
    k(
        "channels.web_requests_per_minute_per_address",
        "Web chat sessions and messages one client address may start or send per minute, all visitors together.",
    ),
    k(
        "channels.send_timeout_secs",
        "A call to a provider's API (or SMTP/IMAP server) that takes longer fails and is retried.",
    ),
    k(
        "channels.check_on_save",
        "Ask a channel's provider whether its configuration works before saving it (Slack auth.test, Telegram getMe, the WhatsApp phone number, a Teams bot's token, an IMAP sign-in). Off where the API cannot reach the providers.",
    ),
    k(
        "channels.whatsapp_api_url",
        "WhatsApp Cloud API base. Provider API bases are the operator's, never a tenant's.",
    ),
    k("channels.slack_api_url", "Slack Web API base."),
    k("channels.telegram_api_url", "Telegram Bot API base."),
    k(
        "channels.teams_openid_url",
        "The Bot Framework's OpenID metadata, whose keys sign the tokens Teams sends with each activity.",
    ),
    k(
        "channels.teams_login_url",
        "Microsoft Entra ID's base: a Teams bot's tokens come from {this}/{tenant}/oauth2/v2.0/token.",
    ),
    k(
        "outbound.allow_private_networks",
        "Let destinations a tenant sets (knowledge URLs, reply URLs, mail servers) reach loopback and private networks: tests and local development only, refused in production. Link-local and metadata addresses stay refused.",
    ),
    k(
        "mail.smtp_host",
        "The operator's SMTP server for Steward's own notices (such as telling an address's owner that someone tried to register it). Empty: no notices are sent.",
    ),
    k(
        "mail.smtp_port",
        "Its port: 587 for STARTTLS, 465 for TLS from the start.",
    ),
    k("mail.username", "Its user name; empty: no login."),
    k("mail.password", "Its password."),
    k("mail.from", "The notices' sender address."),
    k(
        "mail.tls",
        "Encrypt the connection (STARTTLS, or TLS on port 465). Off only for a server on this machine.",
    ),
    k(
        "tools.max_steps",
        "Model calls in one reply that calls tools; on the last, no tools are offered, so the model must answer.",
    ),
    k(
        "tools.call_timeout_secs",
        "A tool call that takes longer is stopped; the model is told it timed out.",
    ),
    k(
        "tools.turn_timeout_secs",
        "All of one reply's tool calls together; past it, the model answers with what it has.",
    ),
    k(
        "tools.max_result_bytes",
        "A longer tool result is cut to this, and the model told it was cut.",
    ),
    k(
        "tools.servers",
        "MCP servers the operator runs (on a private network, say), their tools offered to every organization: [[tools.servers]] tables with name (its tools are name.tool), url (streamable HTTP), headers (a value ${VAR} is read from the environment) and timeout_secs (default 15). See docs/tools.md.",
    ),
    k(
        "tools.mcp_listen",
        "Where steward mcp serves Steward's own tools to other agents on the private network (never the API's address; keep it off the public network).",
    ),
    k(
        "tools.mcp_allowed_hosts",
        "The Host names steward mcp answers to, against DNS rebinding: add the name other agents reach it by (a Kubernetes service, say).",
    ),
    k(
        "memory.max_facts",
        "The most facts an assistant keeps about one person (what they said about themselves); past it, the oldest are forgotten.",
    ),
    k(
        "memory.recall_facts",
        "The most of a person's facts put before the model in one reply: all of them when there are no more, else those sharing most words with the question.",
    ),
    k(
        "insights.min_people",
        "Insights by category show a count only when at least this many distinct people make it (k-anonymity); smaller cells, and any a visible total would give away, are suppressed. 3 to 1000.",
    ),
    k(
        "storage.url",
        "Where uploaded originals are kept: file:///PATH or s3://BUCKET[/PREFIX]. Unset: blobs/ in the data dir.",
    ),
    k(
        "storage.s3_endpoint",
        "An S3-compatible endpoint such as http://minio:9000. Unset: AWS (or the AWS_ENDPOINT variable).",
    ),
    k(
        "storage.s3_region",
        "The bucket's region. Unset: AWS_REGION, else us-east-1.",
    ),
    k(
        "storage.s3_access_key_id",
        "S3 access key id. Unset: AWS_ACCESS_KEY_ID, else the instance's or pod's role.",
    ),
    k(
        "storage.s3_secret_access_key",
        "S3 secret access key. Unset: AWS_SECRET_ACCESS_KEY.",
    ),
    k(
        "backup.dir",
        "The local folder backups are written to. Unset: backups/ in the data dir.",
    ),
    k(
        "backup.s3_url",
        "Also copy each backup to s3://BUCKET[/PREFIX], using the storage.s3_* settings. Keep it apart from storage.url.",
    ),
    k(
        "backup.keep_count",
        "After a successful backup, keep at most this many (locally, and in S3).",
    ),
    k(
        "backup.keep_days",
        "After a successful backup, delete backups older than this many days; the newest is always kept.",
    ),
    k(
        "backup.pg_dump",
        "The pg_dump program that backs up PostgreSQL: a name on PATH or a path. Its major version must be at least the server's.",
    ),
    k(
        "backup.pg_restore",
        "The pg_restore program that restores and verifies PostgreSQL backups.",
    ),
    k(
        "backup.encryption_key",
        "Base64 of 32 bytes that encrypts backups (openssl rand -base64 32); not the master key. Keep a copy apart from the backups: none can be read without it. Unset outside production: generated.",
    ),
    k(
        "backup.previous_encryption_keys",
        "Backup keys a rotation replaced: they still open the backups they sealed, never seal. Drop one when no backup listed by `steward backup list` uses it.",
    ),
    k(
        "knowledge.max_file_bytes",
        "Largest file accepted by a knowledge upload; larger ones are refused with 413.",
    ),
    k(
        "knowledge.max_files_per_upload",
        "Most files in one upload request.",
    ),
    k(
        "knowledge.max_text_bytes",
        "Most text taken from one document after extraction and decompression; more fails the document.",
    ),
    k(
        "knowledge.chunk_chars",
        "Longest passage (in characters) documents are cut into for search.",
    ),
    k(
        "knowledge.chunk_overlap_chars",
        "Characters a passage repeats from the end of the one before it, so no sentence loses its context.",
    ),
    k(
        "knowledge.passages_per_answer",
        "Passages of knowledge put into each answer's prompt (and quoted by the retrieval-only responder).",
    ),
    k(
        "knowledge.ingest_attempts",
        "Attempts at ingesting a document when its original cannot be read (a malformed file fails at once).",
    ),
    k(
        "knowledge.fetch_timeout_secs",
        "Longest a URL fetch may take, redirects included.",
    ),
    k(
        "knowledge.fetch_max_redirects",
        "Most redirects a URL fetch follows; each hop's address is checked again.",
    ),
    k(
        "knowledge.crawl_delay_ms",
        "Least time between two requests of one crawl; a site's robots.txt Crawl-delay may ask for more (up to 60 s).",
    ),
    k(
        "knowledge.crawl_max_pages",
        "The most pages one crawl may ask for.",
    ),
    k(
        "knowledge.crawl_max_depth",
        "The deepest link depth one crawl may ask for (the root is depth 0).",
    ),
    k(
        "knowledge.crawl_max_secs",
        "A crawl stops after this long, whatever is left.",
    ),
    k(
        "knowledge.crawl_max_bytes",
        "A crawl stops after fetching this much.",
    ),
    k(
        "knowledge.pdf_max_pages",
        "A PDF with more pages fails with a reason rather than being read.",
    ),
    k(
        "knowledge.pdf_memory_mb",
        "Memory (address space, at least 64) the child process that reads one PDF may take beyond its own executable; a PDF needing more fails.",
    ),
    k(
        "knowledge.pdf_timeout_secs",
        "Longest the child process may take to read one PDF; a slower PDF fails.",
    ),
    k(
        "knowledge.read_cpu_secs",
        "CPU time reading one document's text may take (HTML, Markdown, DOCX, CSV, JSON, and a PDF's pages once its reader answers); a slower read fails the document, so that no upload holds a worker's slot for long.",
    ),
    k(
        "embeddings.base_url",
        "An OpenAI-compatible embeddings API (…/v1). Set it for hybrid retrieval (full text + vectors); unset, retrieval is full text only.",
    ),
    k(
        "embeddings.api_key",
        "The embeddings API's key, if it needs one.",
    ),
    k(
        "embeddings.model",
        "The embedding model's name, as the API knows it.",
    ),
    k(
        "embeddings.dimensions",
        "The length of the model's vectors (1536 for text-embedding-3-small, 384 for all-MiniLM-L6-v2).",
    ),
    k("embeddings.batch_size", "Passages embedded per request."),
    k(
        "embeddings.timeout_secs",
        "An embeddings request that takes longer fails and is retried.",
    ),
    k(
        "redis.url",
        "redis://HOST:PORT/DB. Set it to share webhook rate limits across API replicas; unset, each process keeps its own.",
    ),
    k(
        "llm.enabled",
        "The kill switch: false answers every message without calling any model, saying so.",
    ),
    k(
        "llm.max_tokens",
        "The longest reply a model may write, in tokens.",
    ),
    k(
        "llm.history_turns",
        "How many turns of the conversation are sent with each request.",
    ),
    k(
        "llm.primary.kind",
        "The model provider: anthropic, or openai for any OpenAI-compatible server (OpenAI, Ollama, vLLM, llama.cpp).",
    ),
    k(
        "llm.primary.base_url",
        "The API's address; default the vendor's public API (Ollama: http://localhost:11434/v1).",
    ),
    k(
        "llm.primary.api_key",
        "The provider's API key (optional for local OpenAI-compatible servers).",
    ),
    k(
        "llm.primary.model",
        "The model to use unless a chatbot names its own, e.g. claude-sonnet-4-5.",
    ),
    k(
        "llm.primary.timeout_secs",
        "A model call that takes longer fails (and falls back).",
    ),
    k(
        "llm.fallback.kind",
        "The provider used when the primary fails transiently (connection errors, timeouts, 429, 5xx): anthropic, or openai for any OpenAI-compatible server (OpenAI, Ollama, vLLM, llama.cpp).",
    ),
    k(
        "llm.fallback.base_url",
        "The API's address; default the vendor's public API (Ollama: http://localhost:11434/v1).",
    ),
    k(
        "llm.fallback.api_key",
        "The provider's API key (optional for local OpenAI-compatible servers).",
    ),
    k(
        "llm.fallback.model",
        "The model to use unless a chatbot names its own, e.g. claude-sonnet-4-5.",
    ),
    k(
        "llm.fallback.timeout_secs",
        "A model call that takes longer fails (and falls back).",
    ),
    k(
        "llm.background.kind",
        "A small model for background work (learning what people say about themselves): anthropic or openai. Unset: the primary, then the fallback.",
    ),
    k(
        "llm.background.base_url",
        "The API's address; default the vendor's public API (Ollama: http://localhost:11434/v1).",
    ),
    k(
        "llm.background.api_key",
        "The provider's API key (optional for local OpenAI-compatible servers).",
    ),
    k(
        "llm.background.model",
        "The model for background work, e.g. claude-haiku-4-5.",
    ),
    k(
        "llm.background.timeout_secs",
        "A background model call that takes longer fails (and falls back to the primary).",
    ),
    k(
        "log.level",
        "Log filter, e.g. info or steward_api=debug,info (RUST_LOG overrides).",
    ),
    k(
        "log.format",
        "auto (JSON in production, text otherwise), json or text.",
    ),
];

impl KeyDoc {
    /// `database.url` → `STEWARD_DATABASE__URL`.
    pub fn env_name(&self) -> String {
        format!("STEWARD_{}", self.key.to_uppercase().replace('.', "__"))
    }
}

/// A commented TOML file holding every key with its default.
pub fn example() -> String {
    let defaults = toml::Value::try_from(Config::default()).expect("the defaults serialize");
    let mut out = String::from(
        "# Steward configuration. Every key is optional; the values shown are the defaults.\n\
         # Precedence: defaults < this file (--config) < environment < command-line flags.\n\
         # Each key's environment variable is named beside it.\n",
    );
    let mut section = "";
    for doc in KEYS {
        let (table, name) = doc.key.rsplit_once('.').unwrap_or(("", doc.key));
        if table != section {
            // A table absent by default (an optional provider) is shown commented out.
            let shown = if lookup(&defaults, table).is_some() {
                ""
            } else {
                "# "
            };
            out.push_str(&format!("\n{shown}[{table}]\n"));
            section = table;
        }
        out.push_str(&format!("\n# {}\n# env: {}\n", doc.doc, doc.env_name()));
        match lookup(&defaults, doc.key) {
            Some(value) => out.push_str(&format!("{name} = {value}\n")),
            None => out.push_str(&format!("# {name} = \"\"\n")),
        }
    }
    out
}

pub(crate) fn lookup<'a>(value: &'a toml::Value, dotted: &str) -> Option<&'a toml::Value> {
    dotted.split('.').try_fold(value, |v, part| v.get(part))
}

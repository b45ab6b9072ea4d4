//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Steward: a self-hosted AI assistant platform in one binary.
///
/// Configuration comes from defaults, then --config FILE, then STEWARD_* environment
/// variables (STEWARD_SECTION__KEY), then flags. `steward config example` lists every key.
#[derive(Parser)]
#[command(name = "steward", version)]
pub struct Cli {
    /// A TOML configuration file.
    #[arg(long, global = true, env = "STEWARD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Folder for the SQLite database, generated secrets and local files [env: STEWARD_DATA_DIR] [default: ./steward-data]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run every role in one process: the HTTP API, a worker and the scheduler.
    /// Applies pending migrations first.
    Serve(ServeFlags),
    /// Run only the HTTP API (stateless; run several behind a load balancer).
    Api(ServeFlags),
    /// Run only a worker: claims background jobs and runs them (run as many as the
    /// queue needs). Stops claiming on SIGTERM and lets running jobs finish.
    Worker,
    /// Run only the scheduler: turns cron schedules into jobs. Run two or more for
    /// availability: one leads, and each firing is enqueued once.
    Scheduler,
    /// Serve Steward's own tools (pricing-calculator, lead-capture,
    /// contact-owner) over MCP to other agents on the private network, at
    /// /mcp on tools.mcp_listen, never on the API's address. Each request
    /// sends an owner's or admin's API key; its organization's enabled
    /// integrations are offered.
    Mcp(McpFlags),
    /// Apply pending database migrations, then exit.
    Migrate,
    /// Exit 0 if the Steward listening at the configured address answers
    /// /health, else 1 (for container health checks).
    Healthcheck,
    /// Configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Organizations.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// People in an organization.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// The people who talk to an organization's assistants.
    People {
        #[command(subcommand)]
        command: PeopleCommand,
    },
    /// An organization's skills (the Agent Skills format).
    Skills {
        #[command(subcommand)]
        command: SkillsCommand,
    },
    /// A chatbot's channels: WhatsApp, Slack, Telegram, email, signed webhooks.
    Channel {
        #[command(subcommand)]
        command: ChannelCommand,
    },
    /// An organization's background jobs and its dead-letter list.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// An organization's strategic context, which grounds every one of its chatbots.
    Context {
        #[command(subcommand)]
        command: ContextCommand,
    },
    /// Backups of the database and the blob store: make, list, verify, restore.
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// Stored secrets: the second half of a master-key rotation.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// The database itself: copy SQLite into PostgreSQL.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Internal: reads one PDF from stdin in a limited child process of a worker.
    #[command(hide = true)]
    PdfText {
        /// MAX_PAGES MEMORY_MB CPU_SECS
        limits: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Make a backup now: the database and the blob store, compressed, with a
    /// manifest of SHA-256 checksums, into backup.dir (and backup.s3_url).
    /// Then deletes backups beyond backup.keep_count or older than backup.keep_days.
    Create,
    /// List the backups here and in S3, oldest first.
    List,
    /// Check a backup's checksums, restore it into a scratch database and read
    /// every table, and read its blob archive to the end.
    Verify {
        #[command(flatten)]
        pick: PickBackup,
        /// A PostgreSQL backup: the database to restore into for the trial (its
        /// contents are replaced) [default: one created and dropped on the
        /// configured database's server]
        #[arg(long, value_name = "URL")]
        scratch: Option<String>,
    },
    /// Restore a backup: its database into --into, its blobs into the configured
    /// blob store. A damaged backup, or one of another backend or a newer
    /// schema, is refused before anything is written.
    Restore {
        #[command(flatten)]
        pick: PickBackup,
        /// The database to restore into: sqlite://PATH or postgres://…
        #[arg(long, value_name = "URL")]
        into: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// Replace a database that holds data (stop Steward first).
        #[arg(long)]
        force: bool,
        /// Restore the database only, leaving the blob store as it is.
        #[arg(long)]
        no_blobs: bool,
    },
}

#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Seal every channel's secrets, every MCP server's headers and every
    /// person's key (which seals their memory) again under
    /// secrets.master_key, opening them with it or with
    /// secrets.previous_master_key. Run it once every process has restarted
    /// with both keys; then remove the previous key. Exits 1 if any open with
    /// neither (configure the channel, or connect the server, again).
    Reseal,
}

#[derive(Subcommand)]
pub enum DbCommand {
    /// Copy every table of a SQLite database into an empty PostgreSQL database,
    /// then check each table's row count and checksum. Stop Steward first: a
    /// database a running Steward holds is refused. An interrupted copy
    /// resumes when run again. Blobs stay where storage.url points. See
    /// docs/operations.md, "From SQLite to PostgreSQL".
    Copy {
        /// The SQLite database: sqlite://PATH.
        #[arg(long, value_name = "URL")]
        from: String,
        /// The PostgreSQL database: postgres://… (migrated here if new).
        #[arg(long, value_name = "URL")]
        to: String,
        /// Rows per transaction.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Copy even though a running Steward holds the database (what it
        /// writes meanwhile may be missed).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct PickBackup {
    /// The backup's id, as `backup list` shows it.
    pub id: Option<String>,
    /// The newest backup.
    #[arg(long)]
    pub latest: bool,
}

#[derive(Subcommand)]
pub enum PeopleCommand {
    /// Erase a person for good, as `DELETE /api/v1/people/{id}` does: their
    /// memory's key is destroyed, their messages, their conversations and the
    /// leads in them, their handles and ratings deleted; counters stay as
    /// anonymous totals. Recorded in the erasure ledger beside the backups
    /// first, so restoring an older backup erases them again. Run again, it
    /// finishes an erasure that was cut short.
    Erase {
        /// The organization's id, or its name when no other organization has it.
        #[arg(long)]
        org: String,
        /// The person's id (`GET /api/v1/people`).
        #[arg(long)]
        person: String,
    },
}

#[derive(Subcommand)]
pub enum SkillsCommand {
    /// Add every skill in a folder: each folder in it that holds a SKILL.md
    /// (or DIR itself, when it holds one), and each zipped such folder. A
    /// skill stored just so already is left alone; a changed one gets its
    /// next version. Prints each skill's name and version; skills that are
    /// not valid are reported on stderr and skipped. Exits 1 if any failed.
    /// Give skills to chatbots with `PATCH /api/v1/chatbots/{id}`.
    Import {
        /// The organization's id, or its name when no other organization has it.
        #[arg(long)]
        org: String,
        /// The folder of skills.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum ContextCommand {
    /// Add a strategic context document (text or Markdown: mission, priorities,
    /// policies). A worker ingests it; `GET /api/v1/organizations/context` shows
    /// its status.
    Import {
        /// The organization's id, or its name when no other organization has it.
        #[arg(long)]
        org: String,
        /// The document.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// How answers cite it [default: the file's name].
        #[arg(long)]
        title: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest first; `--state dead` shows the dead-letter list.
    List {
        /// The organization's id, or its name when no other organization has it.
        #[arg(long)]
        org: String,
        /// queued, running, succeeded, failed or dead.
        #[arg(long)]
        state: Option<String>,
        /// At most this many (1 to 200).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Put a dead job back in the queue with fresh attempts.
    Retry {
        #[arg(long)]
        org: String,
        /// The job's id.
        id: String,
    },
    /// Delete a dead job.
    Discard {
        #[arg(long)]
        org: String,
        /// The job's id.
        id: String,
    },
}

#[derive(Subcommand)]
pub enum ChannelCommand {
    /// Connect a chatbot to a channel. Secrets in the configuration are sealed
    /// at rest and never printed; prints the channel's id and webhook path.
    Configure {
        /// The organization's id, or its name when no other organization has it.
        #[arg(long)]
        org: String,
        /// The chatbot's id.
        #[arg(long)]
        chatbot: String,
        /// whatsapp, slack, telegram, email or generic.
        #[arg(long)]
        kind: String,
        /// A name for the channel, unique on the chatbot.
        #[arg(long)]
        name: String,
        /// The configuration as a JSON object, or @FILE to read it from a file
        /// (keeps secrets out of the shell history). See docs/channels.md.
        /// (The global --config names Steward's own configuration file.)
        #[arg(long, value_name = "JSON|@FILE")]
        channel_config: String,
        /// Save it without asking the provider whether it works (Slack
        /// auth.test, Telegram getMe, the WhatsApp phone number, an IMAP
        /// sign-in).
        #[arg(long)]
        no_check: bool,
    },
    /// List a chatbot's channels with their health.
    List {
        #[arg(long)]
        org: String,
        /// The chatbot's id.
        #[arg(long)]
        chatbot: String,
    },
    /// Remove a channel; its conversations stay in the history.
    Remove {
        #[arg(long)]
        org: String,
        /// The chatbot's id.
        #[arg(long)]
        chatbot: String,
        /// The channel's id.
        id: String,
    },
}

#[derive(Args)]
pub struct McpFlags {
    /// Address to listen on [env: STEWARD_TOOLS__MCP_LISTEN] [default: 127.0.0.1:8091]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

#[derive(Args)]
pub struct ServeFlags {
    /// Address to listen on [env: STEWARD_LISTEN] [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Print every configuration key with its default, its environment variable and what it does.
    Example,
}

#[derive(Subcommand)]
pub enum OrgCommand {
    /// Every organization: id, plan, when created, name.
    List,
    /// Create an organization and its owner; prints the owner's one-time
    /// password. A name already taken (in any case) is refused.
    Create {
        /// The organization's name.
        #[arg(long)]
        name: String,
        /// The owner's email address.
        #[arg(long, value_name = "EMAIL")]
        owner_email: String,
    },
    /// Set an organization's plan (free, pro or enterprise). Plans are the
    /// operator's to set; an organization's admins can only request a change.
    SetTier {
        /// The organization's id, or its name when no other organization has it.
        #[arg(long)]
        org: String,
        #[arg(long)]
        tier: steward_domain::Tier,
    },
}

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Add people from a CSV file of `email,role[,name][,slack][,teams][,whatsapp]` (a
    /// header row is optional). The handles (a Slack member id, a Teams user id, a WhatsApp
    /// number) make the person's messages on those channels theirs; someone who wrote before
    /// under one becomes the same person. A row for a member who exists already adds their
    /// handles. Prints `email,role,temporary_password` for each row imported (no password for
    /// a member who existed); rows with errors are reported on stderr and skipped, the others
    /// imported. Exits 1 if any row failed.
    Import {
        /// The organization's id, or its name when no other organization has it.
        #[arg(long)]
        org: String,
        /// The CSV file.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Give a member a new one-time password (they forgot theirs) and print
    /// it. Their sessions stop working; they change it at the next sign-in.
    ResetPassword {
        /// The organization's id, or its name when no other organization has it.
        #[arg(long)]
        org: String,
        /// The member's email address.
        #[arg(long)]
        email: String,
    },
}

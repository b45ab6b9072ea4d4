//! `steward`: one binary, several roles. This file wires configuration, the
//! store and the API together; the logic lives in the library crates.

mod admin;
mod backup;
mod cli;
mod import;
mod roles;
mod skills;

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Parser;
use steward_config::{Config, LogFormat, Overrides};
use steward_store::Store;
use steward_store_postgres::PostgresStore;
use steward_store_sqlite::SqliteStore;

use cli::{
    Cli, Command, ConfigCommand, DbCommand, OrgCommand, PeopleCommand, SecretsCommand,
    SkillsCommand, UsersCommand,
};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Command::PdfText { limits } = &cli.command {
        // A worker's child: no runtime, no configuration, limits of its own.
        return steward_knowledge::pdf::child_main(limits);
    }
    return_large_allocations_to_the_os();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// glibc raises its mmap threshold whenever a large block is freed, and from
/// then on keeps large blocks in the heap for good. Each password hash holds
/// 19 MiB, so ten logins grew an idle server from 15 MB to 130 MB resident.
/// A fixed threshold hands such blocks back to the OS when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_large_allocations_to_the_os() {
    // SAFETY: mallopt only sets an allocator parameter; no other thread runs yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_allocations_to_the_os() {}

/// Start-up builds and drops far more than a server keeps (the API's
/// contract, while the router is made), and glibc keeps the freed pages of
/// its heap resident until told otherwise: handing them back took an idle
/// server's private memory from 13 to 8 MB (docs/PERFORMANCE.md).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn hand_back_start_up_memory() {
    // SAFETY: malloc_trim only releases free memory of the allocator's arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn hand_back_start_up_memory() {}

async fn run(cli: Cli) -> Result<std::process::ExitCode> {
    if let Command::Config {
        command: ConfigCommand::Example,
    } = cli.command
    {
        print!("{}", steward_config::example());
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let listen = match &cli.command {
        Command::Serve(flags) | Command::Api(flags) => flags.listen.clone(),
        _ => None,
    };
    let config = Config::load(
        cli.config.as_deref(),
        &Overrides {
            listen,
            data_dir: cli.data_dir.clone(),
        },
    )?;
    init_logging(&config);

    match cli.command {
        Command::Serve(_) => roles::serve(config, true).await?,
        Command::Api(_) => roles::serve(config, false).await?,
        Command::Healthcheck => return Ok(healthcheck(&config.listen).await),
        Command::Migrate => {
            let store = open_store(&config).await?;
            store.migrate().await.context("applying migrations")?;
            println!("migrations applied to {}", describe_database(&config));
        }
        Command::Org {
            command: OrgCommand::Create { name, owner_email },
        } => admin::create_org(&config, &name, &owner_email).await?,
        Command::Org {
            command: OrgCommand::SetTier { org, tier },
        } => admin::set_tier(&config, &org, tier).await?,
        Command::Org {
            command: OrgCommand::List,
        } => admin::list_orgs(&config).await?,
        Command::Users {
            command: UsersCommand::Import { org, file },
        } => {
            let store = open_store(&config).await?;
            store.migrate().await.context("applying migrations")?;
            let organization = admin::find_org(&*store, &org).await?;
            let report =
                import::users(&*store, &admin::hasher(&config)?, &organization, &file).await?;
            if report.failed > 0 {
                return Ok(std::process::ExitCode::FAILURE);
            }
        }
        Command::Users {
            command: UsersCommand::ResetPassword { org, email },
        } => admin::reset_password(&config, &org, &email).await?,
        Command::People {
            command: PeopleCommand::Erase { org, person },
        } => admin::erase_person(&config, &org, &person).await?,
        Command::Skills {
            command: SkillsCommand::Import { org, dir },
        } => {
            let store = open_store(&config).await?;
            store.migrate().await.context("applying migrations")?;
            let organization = admin::find_org(&*store, &org).await?;
            if skills::import(&*store, &organization, &dir).await?.failed > 0 {
                return Ok(std::process::ExitCode::FAILURE);
            }
        }
        Command::Jobs { command } => admin::jobs(&config, command).await?,
        Command::Channel { command } => admin::channels(config, command).await?,
        Command::Context { command } => admin::context(&config, command).await?,
        Command::Backup { command } => return backup::run(config, command).await,
        Command::Secrets {
            command: SecretsCommand::Reseal,
        } => return admin::reseal(config).await,
        Command::Db {
            command:
                DbCommand::Copy {
                    from,
                    to,
                    batch,
                    force,
                },
        } => {
            if !force {
                refuse_if_in_use(&from)?;
            }
            let tables = steward_backup::copy::copy(&from, &to, batch).await?;
            println!("{:<20}  {:>10}  checksum", "table", "rows");
            for t in &tables {
                println!("{:<20}  {:>10}  {}", t.table, t.rows, t.checksum);
            }
            println!(
                "copied {} tables; every row count and checksum matches",
                tables.len()
            );
        }
        Command::Worker => roles::run_worker(config).await?,
        Command::Mcp(flags) => roles::run_mcp(config, flags.listen).await?,
        Command::Scheduler => roles::run_scheduler(config).await?,
        Command::Config { .. } | Command::PdfText { .. } => unreachable!("handled above"),
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Asks this machine's Steward at `listen` (0.0.0.0 means this host) for /health.
async fn healthcheck(listen: &str) -> std::process::ExitCode {
    let address = listen
        .replacen("0.0.0.0:", "127.0.0.1:", 1)
        .replacen("[::]:", "[::1]:", 1);
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .no_proxy()
        .build()
        .expect("an HTTP client");
    match client.get(format!("http://{address}/health")).send().await {
        Ok(response) if response.status().is_success() => std::process::ExitCode::SUCCESS,
        Ok(response) => {
            eprintln!("unhealthy: /health answered {}", response.status());
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: {address}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Opens the store the database URL names: SQLite (the default) or PostgreSQL.
/// The file of a `sqlite:` database URL.
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next().unwrap_or(path);
    (!path.is_empty() && path != ":memory:").then(|| path.into())
}

/// For a role that serves (serve, api, worker, scheduler, mcp) on SQLite: a
/// shared lock on the database file, held while the process runs, so that
/// `db copy` can tell the database is in use. An `flock`, which SQLite's own
/// (fcntl) locks neither see nor disturb.
fn hold_database(config: &Config) -> Result<Option<std::fs::File>> {
    let Some(path) = sqlite_file(&config.database_url()) else {
        return Ok(None);
    };
    let file = std::fs::File::open(&path)
        .with_context(|| format!("opening {} to mark it in use", path.display()))?;
    file.lock_shared()
        .with_context(|| format!("marking {} in use", path.display()))?;
    Ok(Some(file))
}

/// Refuses to copy a SQLite database a running Steward holds.
fn refuse_if_in_use(from: &str) -> Result<()> {
    let Some(path) = sqlite_file(from) else {
        return Ok(());
    };
    let Ok(file) = std::fs::File::open(&path) else {
        return Ok(()); // the copy says what is wrong with it
    };
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "{} is in use by a running Steward (serve, api, worker, scheduler or mcp): stop it \
             first, so that nothing is written during the copy; --force copies anyway",
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("checking whether {} is in use", path.display()))
        }
    }
}

async fn open_store(config: &Config) -> Result<Arc<dyn Store>> {
    let url = config.database_url();
    if url.starts_with("sqlite:") {
        if config.database.url.is_none() && !config.data_dir.exists() {
            // It will hold password hashes and secrets: owner only.
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&config.data_dir)
                .with_context(|| format!("creating the data dir {}", config.data_dir.display()))?;
        }
        let store = SqliteStore::connect(&url, config.database.max_connections)
            .await
            .context("opening the SQLite database")?;
        Ok(Arc::new(store))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PostgresStore::connect(&url, config.database.max_connections)
            .await
            .context("connecting to PostgreSQL")?;
        Ok(Arc::new(store))
    } else {
        bail!("database.url must start with sqlite:, postgres:// or postgresql://")
    }
}

/// Seals and opens stored secrets (see `steward_api::Services::sealer`).
fn sealer(config: &Config) -> Result<steward_auth::Sealer> {
    steward_api::Services::sealer(config).map_err(anyhow::Error::msg)
}

/// The database, named without its password.
fn describe_database(config: &Config) -> String {
    let url = config.database_url();
    match url.split_once('@') {
        Some((scheme_user, host)) if url.starts_with("postgres") => {
            let scheme = scheme_user.split("://").next().unwrap_or("postgres");
            format!("{scheme}://…@{host}")
        }
        _ => url,
    }
}

fn init_logging(config: &Config) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    // PostgreSQL's notices ("relation … already exists, skipping" on every
    // start) are not Steward's news.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!("{},sqlx::postgres::notice=warn", config.log.level))
    });
    let json = match config.log.format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => config.is_production(),
    };
    // Colour only for a person at a terminal, never into a file or a pipe.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

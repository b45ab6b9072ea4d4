//! The long-running roles: `serve`, `api`, `worker`, `scheduler`, wired from
//! the configuration.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use steward_config::Config;
use steward_domain::JobKind;
use steward_domain::jobs::{BackupArgs, ExportArgs, MaintenanceArgs, PollArgs};
use steward_store::Store;
use tokio::sync::watch;

use crate::{describe_database, open_store};

/// What a newcomer needs to know once Steward is ready: where the console
/// is, and what is still missing (the worker says which model answers).
async fn announce(config: &Config, address: std::net::SocketAddr, store: &dyn Store) {
    let console = match &config.http.public_url {
        Some(url) => format!("{}/", url.trim_end_matches('/')),
        None if address.ip().is_unspecified() => format!("http://127.0.0.1:{}/", address.port()),
        None => format!("http://{address}/"),
    };
    tracing::info!(%console, "the console is ready: open it in a browser");
    if config.http.public_url.is_none() {
        tracing::info!(
            "http.public_url is not set: WhatsApp, Slack and Telegram cannot reach this Steward's webhooks until it is"
        );
    }
    match store.any_organization().await {
        Ok(false) => tracing::info!(
            "no organization yet: create the first one in the console, or with `steward org create`"
        ),
        Ok(true) => {}
        Err(e) => tracing::warn!(error = %e, "could not count the organizations"),
    }
}

/// Which secrets came from the data folder rather than the configuration:
/// losing that folder loses them, and the master key opens every sealed
/// channel secret.
fn announce_secrets(config: &Config, kept: &steward_config::KeptSecrets) {
    let folder = config.data_dir.join("secrets");
    if !kept.generated.is_empty() {
        tracing::warn!(
            secrets = %kept.generated.join(", "),
            folder = %folder.display(),
            "generated secrets into the data folder: keep a copy apart from the backups (channel secrets and memory do not open without secrets.master_key, nor backups without backup.encryption_key); in production, configure them instead"
        );
    }
    if !kept.read.is_empty() {
        tracing::info!(
            secrets = %kept.read.join(", "),
            folder = %folder.display(),
            "secrets read from the data folder, generated on an earlier start"
        );
    }
}

/// The API role, holding the Slack Socket Mode connections when no other
/// api process does; with `all_roles` (serve), a worker and the scheduler
/// beside it.
pub async fn serve(mut config: Config, all_roles: bool) -> Result<()> {
    let kept = steward_config::ensure_secrets(&mut config)?;
    let store = open_store(&config).await?;
    let _in_use = crate::hold_database(&config)?;
    store.migrate().await.context("applying migrations")?;
    prepare_vectors(&config, store.as_ref()).await?;
    let listener = steward_api::bind(config.listen_addr()).await?;
    // Before saying it listens: from then on, SIGTERM means a graceful stop.
    let shutdown = shutdown_channel();
    tracing::info!(
        address = %listener.local_addr()?,
        database = %describe_database(&config),
        data_dir = %config.data_dir.display(),
        env = ?config.env,
        "steward is listening"
    );
    announce_secrets(&config, &kept);
    let services = services(&config, store.clone())?;
    let background = if all_roles {
        Some((
            worker(&config, store.clone(), &services)?,
            scheduler(&config, store.clone())?,
        ))
    } else {
        None
    };
    announce(&config, listener.local_addr()?, store.as_ref()).await;
    let state = steward_api::AppState::with_services(config, store.clone(), services)
        .map_err(anyhow::Error::msg)?;
    let background = background
        .map(|(worker, scheduler)| (worker.wake_on(state.jobs_enqueued.clone()), scheduler));
    let sockets = steward_channels::SocketChannels {
        store: store.clone(),
        sealer: state.sealer.clone(),
        sender: state.channels.clone(),
        max_attempts: state.config.jobs.max_attempts,
        enqueued: state.jobs_enqueued.clone(),
        settings: Default::default(),
    };
    let sockets = sockets.run(stopped(shutdown.clone()));
    let api = steward_api::run(state, listener, stopped(shutdown.clone()));
    crate::hand_back_start_up_memory();
    match background {
        Some((worker, scheduler)) => {
            tokio::join!(
                api,
                sockets,
                worker.run(stopped(shutdown.clone())),
                scheduler.run(stopped(shutdown))
            );
        }
        None => {
            tokio::join!(api, sockets);
        }
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// With an embedder configured, makes its vectors quickly searchable.
async fn prepare_vectors(config: &Config, store: &dyn Store) -> Result<()> {
    if config.embeddings.base_url.is_some() {
        store
            .prepare_vectors(config.embeddings.dimensions)
            .await
            .context("preparing the vector index")?;
    }
    Ok(())
}

/// A worker with a handler for every job kind built so far.
fn worker(
    config: &Config,
    store: Arc<dyn Store>,
    services: &steward_api::Services,
) -> Result<steward_jobs::Worker> {
    let jobs = &config.jobs;
    let (org_share, reply_reserve) = steward_jobs::WorkerSettings::fair_share(jobs.concurrency);
    let mut kind_concurrency: std::collections::HashMap<JobKind, usize> = jobs
        .kind_concurrency
        .iter()
        .map(|(kind, limit)| (kind.parse().expect("validated at load"), *limit))
        .collect();
    // Extraction is CPU work: more of it at once than the cores but one
    // leaves replies waiting for a core (benches/fairness.rs).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Indexing vectors is the same for PostgreSQL's cores.
    for kind in [JobKind::Ingest, JobKind::IndexVectors] {
        kind_concurrency
            .entry(kind)
            .or_insert(cores.saturating_sub(1).max(1));
    }
    let settings = steward_jobs::WorkerSettings {
        concurrency: jobs.concurrency,
        org_share: jobs.org_share.unwrap_or(org_share),
        reply_reserve: jobs.reply_reserve.unwrap_or(reply_reserve),
        kind_concurrency,
        lease: Duration::from_secs(jobs.lease_secs),
        backoff_base: Duration::from_secs_f64(jobs.backoff_base_secs),
        poll_interval: Duration::from_millis(jobs.poll_interval_ms),
        shutdown_grace: Duration::from_secs(config.http.shutdown_grace_secs),
    };
    let maintenance = steward_jobs::Maintenance {
        store: store.clone(),
        keep_finished: Duration::from_secs(jobs.keep_finished_hours * 3600),
    };
    // Replies learn what people tell them only where a model can listen.
    let memory = steward_tools::memory::Memory::new(store.clone(), services.sealer.clone());
    let exports = steward_pipeline::export::Exports {
        store: store.clone(),
        blobs: services.blobs.clone(),
        memory: memory.clone(),
    };
    let learn = background_model(config).map(|provider| steward_pipeline::Learn {
        store: store.clone(),
        provider,
        memory: memory.clone(),
        tiers: config.tiers.clone(),
        max_facts: config.memory.max_facts,
    });
    let respond = steward_pipeline::Respond {
        store: store.clone(),
        responder: responder(config),
        tiers: config.tiers.clone(),
        history_turns: config.llm.history_turns,
        max_tokens: config.llm.max_tokens,
        deliver_attempts: config.jobs.max_attempts,
        retriever: services.retriever.clone(),
        passages: config.knowledge.passages_per_answer,
        toolbox: Some(Arc::new(services.tools.clone())),
        tool_limits: config.tools.clone(),
        memory: learn.is_some().then(|| steward_pipeline::Remembering {
            memory,
            recall_facts: config.memory.recall_facts,
            attempts: config.jobs.max_attempts,
        }),
        classify_attempts: Some(config.jobs.max_attempts),
    };
    let classify = steward_pipeline::Classify {
        store: store.clone(),
        provider: background_model(config),
        tiers: config.tiers.clone(),
    };
    let ingest = steward_knowledge::Ingest {
        store: store.clone(),
        blobs: services.blobs.clone(),
        fetcher: services.fetcher.clone(),
        embedder: services.embedder.clone(),
        pdf: steward_knowledge::PdfReader::this_executable(
            steward_knowledge::PdfLimits::from_config(&config.knowledge),
        )
        .context("finding this executable, which reads PDFs")?,
        limits: config.knowledge.clone(),
    };
    let index_vectors = steward_knowledge::IndexVectors {
        store: store.clone(),
    };
    let backups = Arc::new(steward_backup::Backups::from_config(config)?);
    let erase = steward_backup::EraseJob {
        store: store.clone(),
        backups: backups.clone(),
    };
    let backup = steward_backup::BackupJob {
        backups,
        store: store.clone(),
        database_url: config.database_url(),
        blobs: services.blobs.clone(),
    };
    let crawl = steward_knowledge::CrawlStep {
        store: store.clone(),
        blobs: services.blobs.clone(),
        fetcher: services.fetcher.clone(),
        limits: config.knowledge.clone(),
    };
    let sender = services.channels.clone();
    let send_timeout = Duration::from_secs(config.channels.send_timeout_secs);
    let deliver = steward_channels::Deliver {
        store: store.clone(),
        sealer: services.sealer.clone(),
        sender: sender.clone(),
    };
    let post = steward_channels::Post {
        store: store.clone(),
        sealer: services.sealer.clone(),
        sender,
    };
    let poll = steward_channels::PollMailboxes {
        store: store.clone(),
        sealer: services.sealer.clone(),
        guard: services.guard.clone(),
        timeout: send_timeout,
        max_attempts: config.jobs.max_attempts,
    };
    let worker = steward_jobs::Worker::new(store, settings)
        .handle(JobKind::Maintenance, maintenance)
        .handle(JobKind::Respond, respond)
        .handle(JobKind::Ingest, ingest)
        .handle(JobKind::IndexVectors, index_vectors)
        .handle(JobKind::Crawl, crawl)
        .handle(JobKind::Deliver, deliver)
        .handle(JobKind::Post, post)
        .handle(JobKind::Poll, poll)
        .handle(JobKind::Backup, backup)
        .handle(JobKind::Erase, erase)
        .handle(JobKind::Export, exports)
        .handle(JobKind::Classify, classify);
    let worker = match learn {
        Some(learn) => worker.handle(JobKind::Memory, learn),
        None => worker,
    };
    let mail = &config.mail;
    if !mail.is_configured() {
        return Ok(worker);
    }
    Ok(worker.handle(
        JobKind::Notice,
        steward_channels::SendNotices {
            server: steward_channels::SmtpServer {
                host: mail.smtp_host.clone(),
                port: mail.smtp_port,
                username: mail.username.clone(),
                password: mail
                    .password
                    .as_ref()
                    .map(|p| p.expose().to_owned())
                    .unwrap_or_default(),
                from: mail.from.clone(),
                tls: mail.tls,
            },
            timeout: send_timeout,
        },
    ))
}

/// The services the API and the worker share, built once per process.
fn services(config: &Config, store: Arc<dyn Store>) -> Result<steward_api::Services> {
    steward_api::Services::from_config(config, store).map_err(anyhow::Error::msg)
}

/// The configured model providers, primary first, or the honest no-model reply.
fn responder(config: &Config) -> steward_pipeline::Responder {
    let llm = &config.llm;
    if !llm.enabled || llm.primary.is_none() {
        tracing::warn!(
            enabled = llm.enabled,
            "no model in use: replies quote the matching knowledge, or say that no model is configured"
        );
        return steward_pipeline::Responder::RetrievalOnly;
    }
    steward_pipeline::Responder::Model(models(&[&llm.primary, &llm.fallback]))
}

/// The model for background work: `llm.background`, falling back to the
/// primary and its fallback; None when no model is in use.
fn background_model(config: &Config) -> Option<Arc<dyn steward_llm::Provider>> {
    let llm = &config.llm;
    (llm.enabled && llm.primary.is_some())
        .then(|| models(&[&llm.background, &llm.primary, &llm.fallback]))
}

/// The providers configured of `chain`, each falling back to the next.
fn models(chain: &[&Option<steward_config::ProviderConfig>]) -> Arc<dyn steward_llm::Provider> {
    use steward_config::ProviderKind;
    // One client for every provider: connection pools are shared, redirects are not followed.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client");
    let providers: Vec<Arc<dyn steward_llm::Provider>> = chain
        .iter()
        .copied()
        .flatten()
        .map(|p| {
            let key = p.api_key.as_ref().map(|k| k.expose().to_owned());
            let timeout = Duration::from_secs(p.timeout_secs);
            let provider: Arc<dyn steward_llm::Provider> = match p.kind {
                ProviderKind::Anthropic => Arc::new(steward_llm::Anthropic::new(
                    client.clone(),
                    p.base_url(),
                    key.unwrap_or_default(),
                    &p.model,
                    timeout,
                )),
                ProviderKind::Openai => Arc::new(steward_llm::OpenAiCompatible::new(
                    client.clone(),
                    p.base_url(),
                    key,
                    &p.model,
                    timeout,
                )),
            };
            provider
        })
        .collect();
    Arc::new(steward_llm::Fallback::new(providers))
}

/// The scheduler with the schedules configured so far.
fn scheduler(config: &Config, store: Arc<dyn Store>) -> Result<steward_jobs::Scheduler> {
    let maintenance = steward_jobs::Schedule::new(
        "maintenance",
        &config.scheduler.maintenance_cron,
        &MaintenanceArgs {},
    )
    .map_err(|e| anyhow::anyhow!("scheduler.maintenance_cron: {e}"))?;
    let mailboxes = steward_jobs::Schedule::new(
        "mailboxes",
        &config.scheduler.mailbox_poll_cron,
        &PollArgs {},
    )
    .map_err(|e| anyhow::anyhow!("scheduler.mailbox_poll_cron: {e}"))?;
    let exports = steward_jobs::Schedule::new(
        "exports",
        &config.scheduler.export_sweep_cron,
        &ExportArgs { export_id: None },
    )
    .map_err(|e| anyhow::anyhow!("scheduler.export_sweep_cron: {e}"))?;
    let mut schedules = vec![maintenance, mailboxes, exports];
    if !config.scheduler.backup_cron.trim().is_empty() {
        schedules.push(
            steward_jobs::Schedule::new("backup", &config.scheduler.backup_cron, &BackupArgs {})
                .map_err(|e| anyhow::anyhow!("scheduler.backup_cron: {e}"))?,
        );
    }
    let settings = steward_jobs::SchedulerSettings {
        lease: Duration::from_secs(config.scheduler.lease_secs),
        tick: Duration::from_secs(1),
        catch_up: Duration::from_secs(config.scheduler.catch_up_secs),
        max_attempts: config.jobs.max_attempts,
    };
    Ok(steward_jobs::Scheduler::new(store, schedules, settings))
}

/// Flips to true once, on SIGTERM or Ctrl-C; every role watches it.
fn shutdown_channel() -> watch::Receiver<bool> {
    use tokio::signal::unix::{SignalKind, signal};
    let (sender, receiver) = watch::channel(false);
    // Registered here, not when the task first runs: a SIGTERM that comes
    // right after start-up must not meet the default action (exit at once).
    let signals = [SignalKind::terminate(), SignalKind::interrupt()].map(|kind| signal(kind).ok());
    tokio::spawn(async move {
        shutdown_signal(signals).await;
        let _ = sender.send(true);
    });
    receiver
}

async fn stopped(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Completes on SIGTERM or Ctrl-C (SIGINT).
async fn shutdown_signal([term, interrupt]: [Option<tokio::signal::unix::Signal>; 2]) {
    async fn received(signal: Option<tokio::signal::unix::Signal>) {
        match signal {
            Some(mut signal) => {
                signal.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    }
    tokio::select! {
        () = received(term) => {},
        () = received(interrupt) => {},
    }
    tracing::info!("shutdown requested");
}

/// `steward worker`: only the worker, until SIGTERM.
pub async fn run_worker(mut config: Config) -> Result<()> {
    // The worker opens channel secrets with the master key.
    steward_config::ensure_secrets(&mut config)?;
    let store = open_store(&config).await?;
    let _in_use = crate::hold_database(&config)?;
    store.migrate().await.context("applying migrations")?;
    prepare_vectors(&config, store.as_ref()).await?;
    let services = services(&config, store.clone())?;
    worker(&config, store.clone(), &services)?
        .run(stopped(shutdown_channel()))
        .await;
    store.close().await;
    Ok(())
}

/// `steward mcp`: Steward's own tools over MCP for other agents on the
/// private network, on `listen` (else `tools.mcp_listen`), until SIGTERM.
pub async fn run_mcp(mut config: Config, listen: Option<String>) -> Result<()> {
    let listen = listen.unwrap_or_else(|| config.tools.mcp_listen.clone());
    let address: std::net::SocketAddr = listen
        .parse()
        .with_context(|| format!("--listen: '{listen}' is not an address like 127.0.0.1:8091"))?;
    anyhow::ensure!(
        address != config.listen_addr(),
        "steward mcp never listens on the API's address ({address}): give it its own"
    );
    // API keys are checked as the API checks them, sign-in tokens included.
    steward_config::ensure_secrets(&mut config)?;
    let store = open_store(&config).await?;
    let _in_use = crate::hold_database(&config)?;
    store.migrate().await.context("applying migrations")?;
    let listener = steward_api::bind(address).await?;
    let shutdown = shutdown_channel();
    tracing::info!(
        address = %listener.local_addr()?,
        database = %describe_database(&config),
        "steward mcp is listening: Steward's own tools at /mcp, for the private network only"
    );
    let services = services(&config, store.clone())?;
    let state = steward_api::AppState::with_services(config, store.clone(), services)
        .map_err(anyhow::Error::msg)?;
    steward_api::run_mcp(state, listener, stopped(shutdown)).await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// `steward scheduler`: only the scheduler, until SIGTERM.
pub async fn run_scheduler(config: Config) -> Result<()> {
    let store = open_store(&config).await?;
    let _in_use = crate::hold_database(&config)?;
    store.migrate().await.context("applying migrations")?;
    scheduler(&config, store.clone())?
        .run(stopped(shutdown_channel()))
        .await;
    store.close().await;
    Ok(())
}

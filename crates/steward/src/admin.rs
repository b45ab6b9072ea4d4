//! The operator's one-off commands: organizations, jobs, channels and context.

use anyhow::{Context, Result, bail};
use steward_auth::{HashingParams, PasswordHasher, generate_password};
use steward_config::Config;
use steward_domain::{
    ChannelId, ChannelKind, ChatbotId, Email, JobId, JobState, OrganizationName, Password, Role,
    Tier,
};
use steward_store::{NewOrganization, NewUser, Organization, Store, StoreError, TenantScope};

use crate::cli::{ChannelCommand, ContextCommand, JobsCommand};
use crate::open_store;

pub async fn jobs(config: &Config, command: JobsCommand) -> Result<()> {
    let store = open_store(config).await?;
    store.migrate().await.context("applying migrations")?;
    match command {
        JobsCommand::List { org, state, limit } => {
            let scope = TenantScope::for_operator(find_org(&*store, &org).await?.id);
            let state = state
                .map(|s| s.parse::<JobState>())
                .transpose()
                .map_err(anyhow::Error::msg)?;
            if !(1..=200).contains(&limit) {
                bail!("--limit must be between 1 and 200");
            }
            println!(
                "{:<36}  {:<11}  {:<9}  {:>8}  last error",
                "id", "kind", "state", "attempts"
            );
            for job in store.list_jobs(&scope, state, limit).await? {
                let error = job.last_error.unwrap_or_default().replace('\n', " ");
                let attempts = format!("{}/{}", job.attempts, job.max_attempts);
                println!(
                    "{:<36}  {:<11}  {:<9}  {attempts:>8}  {error}",
                    job.id, job.kind, job.state
                );
            }
        }
        JobsCommand::Retry { org, id } => {
            let scope = TenantScope::for_operator(find_org(&*store, &org).await?.id);
            let id: JobId = id.parse().context("the job id is not a UUID")?;
            match store.retry_dead_job(&scope, id).await {
                Ok(job) => println!("job {} is queued again", job.id),
                Err(StoreError::NotFound) => bail!("no dead job {id} in this organization"),
                Err(e) => return Err(e.into()),
            }
        }
        JobsCommand::Discard { org, id } => {
            let scope = TenantScope::for_operator(find_org(&*store, &org).await?.id);
            let id: JobId = id.parse().context("the job id is not a UUID")?;
            match store.discard_dead_job(&scope, id).await {
                Ok(()) => println!("job {id} discarded"),
                Err(StoreError::NotFound) => bail!("no dead job {id} in this organization"),
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// `steward secrets reseal`: every channel's secrets, every MCP server's
/// headers, every organization's single sign-on secret and every person's
/// key under the current master key.
pub async fn reseal(mut config: Config) -> Result<std::process::ExitCode> {
    steward_config::ensure_secrets(&mut config)?;
    if config.secrets.previous_master_key.is_none() {
        eprintln!(
            "note: secrets.previous_master_key is not set: only secrets already under the master key will open"
        );
    }
    let sealer = crate::sealer(&config)?;
    let store = open_store(&config).await?;
    store.migrate().await.context("applying migrations")?;
    let channels = steward_channels::reseal(store.as_ref(), &sealer).await;
    let servers = steward_tools::reseal(store.as_ref(), &sealer).await;
    let people = steward_tools::memory::reseal(store.as_ref(), &sealer).await;
    let sso = steward_api::reseal_sso_secrets(store.as_ref(), &sealer).await;
    store.close().await;
    let (channels, servers, people, sso) = (channels?, servers?, people?, sso?);
    println!(
        "channels: {} sealed again under the master key, {} already under it, {} reconfigured meanwhile (left as they are)",
        channels.resealed, channels.current, channels.changed
    );
    println!(
        "MCP servers' headers: {} sealed again under the master key, {} already under it, {} changed meanwhile (left as they are)",
        servers.resealed, servers.current, servers.changed
    );
    println!(
        "single sign-on secrets: {} sealed again under the master key, {} already under it, {} changed meanwhile (left as they are)",
        sso.resealed, sso.current, sso.changed
    );
    println!(
        "people's keys: {} sealed again under the master key, {} already under it",
        people.resealed, people.current
    );
    if channels.unreadable.is_empty()
        && servers.unreadable.is_empty()
        && people.unreadable.is_empty()
        && sso.unreadable.is_empty()
    {
        return Ok(std::process::ExitCode::SUCCESS);
    }
    for id in &channels.unreadable {
        eprintln!("channel {id}: its secrets open with neither key; configure it again");
    }
    for id in &servers.unreadable {
        eprintln!("MCP server {id}: its headers open with neither key; connect it again");
    }
    for org in &sso.unreadable {
        eprintln!(
            "organization {org}: its single sign-on secret opens with neither key; set it again"
        );
    }
    for id in &people.unreadable {
        eprintln!("person's key {id}: opens with neither key; the memory it seals is lost");
    }
    Ok(std::process::ExitCode::FAILURE)
}

pub async fn channels(mut config: Config, command: ChannelCommand) -> Result<()> {
    steward_config::ensure_secrets(&mut config)?;
    let sealer = crate::sealer(&config)?;
    let store = open_store(&config).await?;
    store.migrate().await.context("applying migrations")?;
    match command {
        ChannelCommand::Configure {
            org,
            chatbot,
            kind,
            name,
            channel_config: raw,
            no_check,
        } => {
            let scope = TenantScope::for_operator(find_org(&*store, &org).await?.id);
            let chatbot: ChatbotId = chatbot.parse().context("the chatbot id is not a UUID")?;
            let kind: ChannelKind = kind.parse().map_err(anyhow::Error::msg)?;
            let raw = match raw.strip_prefix('@') {
                Some(path) => {
                    std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?
                }
                None => raw,
            };
            let settings =
                serde_json::from_str(&raw).context("--channel-config is not valid JSON")?;
            let guard = steward_outbound::Guard::new(config.outbound.allow_private_networks);
            let sender = steward_api::Services::channel_sender(&config, guard);
            let check = (!no_check && config.channels.check_on_save).then_some(&sender);
            let channel = match steward_channels::configure(
                &*store, &sealer, check, &scope, chatbot, kind, &name, settings,
            )
            .await
            {
                Ok(channel) => channel,
                Err(steward_channels::ConfigureError::Store(StoreError::NotFound)) => {
                    bail!("no chatbot {chatbot} in this organization")
                }
                Err(e) => bail!("{e}"),
            };
            println!("channel {} ({}) configured", channel.id, channel.kind);
            match steward_channels::webhook_path(&channel) {
                Some(path) => match &config.http.public_url {
                    Some(base) => println!("webhook URL: {base}{path}"),
                    None => println!("webhook path: {path} (set http.public_url for the full URL)"),
                },
                None => println!("Steward connects to the provider itself; no webhook to set up"),
            }
        }
        ChannelCommand::List { org, chatbot } => {
            let scope = TenantScope::for_operator(find_org(&*store, &org).await?.id);
            let chatbot: ChatbotId = chatbot.parse().context("the chatbot id is not a UUID")?;
            store.chatbot(&scope, chatbot).await.map_err(|e| match e {
                StoreError::NotFound => {
                    anyhow::anyhow!("no chatbot {chatbot} in this organization")
                }
                other => other.into(),
            })?;
            println!(
                "{:<36}  {:<8}  {:<7}  {:>6}  name",
                "id", "kind", "status", "errors"
            );
            let now = steward_store::now();
            for channel in store.list_channels(&scope, Some(chatbot)).await? {
                println!(
                    "{:<36}  {:<8}  {:<7}  {:>6}  {}",
                    channel.id,
                    channel.kind,
                    channel.health.status(),
                    channel.health.recent_errors(now),
                    channel.name
                );
            }
        }
        ChannelCommand::Remove { org, chatbot, id } => {
            let scope = TenantScope::for_operator(find_org(&*store, &org).await?.id);
            let chatbot: ChatbotId = chatbot.parse().context("the chatbot id is not a UUID")?;
            let id: ChannelId = id.parse().context("the channel id is not a UUID")?;
            match store.delete_channel(&scope, chatbot, id).await {
                Ok(()) => println!("channel {id} removed"),
                Err(StoreError::NotFound) => {
                    bail!("no channel {id} on chatbot {chatbot} in this organization")
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    store.close().await;
    Ok(())
}

/// The one organization `id_or_name` names.
pub async fn context(config: &Config, command: ContextCommand) -> Result<()> {
    let ContextCommand::Import { org, file, title } = command;
    let store = open_store(config).await?;
    store.migrate().await.context("applying migrations")?;
    let scope = TenantScope::for_operator(find_org(&*store, &org).await?.id);
    let limits = &config.knowledge;
    let size = std::fs::metadata(&file)
        .with_context(|| format!("reading {}", file.display()))?
        .len();
    if size > limits.max_file_bytes as u64 {
        bail!(
            "{} is larger than knowledge.max_file_bytes ({} bytes)",
            file.display(),
            limits.max_file_bytes
        );
    }
    let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    if steward_knowledge::sniff::as_text(&bytes).is_none_or(|t| t.trim().is_empty()) {
        bail!(
            "{} is not text: context documents are text or Markdown",
            file.display()
        );
    }
    let label = match title {
        Some(title) if !title.trim().is_empty() && title.chars().count() <= 200 => {
            title.trim().to_owned()
        }
        Some(_) => bail!("--title must hold 1 to 200 characters"),
        None => steward_knowledge::label_from(file.file_name().and_then(|n| n.to_str())),
    };
    let blobs = steward_knowledge::Blobs::from_config(&config.storage, &config.data_dir)?;
    let original = steward_knowledge::Original {
        label,
        bytes: bytes.into(),
    };
    let document = steward_knowledge::add_original(
        &*store,
        &blobs,
        &scope,
        None,
        steward_domain::DocumentSource::Context,
        original,
        limits.ingest_attempts,
    )
    .await?;
    println!(
        "context document {} ('{}') queued: a worker ingests it",
        document.id, document.label
    );
    Ok(())
}

pub async fn find_org(store: &dyn Store, id_or_name: &str) -> Result<Organization> {
    match store.find_organizations(id_or_name).await?.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no organization has the id or name '{id_or_name}'"),
        _ => bail!("several organizations are named '{id_or_name}': use the id"),
    }
}

pub async fn set_tier(config: &Config, org: &str, tier: Tier) -> Result<()> {
    let store = open_store(config).await?;
    store.migrate().await.context("applying migrations")?;
    let scope = TenantScope::for_operator(find_org(&*store, org).await?.id);
    let organization = store.set_tier(&scope, tier).await?;
    println!(
        "organization: {} ({}) is now on the {} tier",
        organization.name, organization.id, organization.tier
    );
    Ok(())
}

/// `steward org list`.
pub async fn list_orgs(config: &Config) -> Result<()> {
    let store = open_store(config).await?;
    store.migrate().await.context("applying migrations")?;
    println!("{:<36}  {:<10}  {:<20}  name", "id", "tier", "created");
    for organization in store.list_organizations().await? {
        println!(
            "{:<36}  {:<10}  {:<20}  {}",
            organization.id,
            organization.tier,
            organization.created_at.format("%Y-%m-%d %H:%M:%S"),
            organization.name
        );
    }
    Ok(())
}

pub async fn create_org(config: &Config, name: &str, owner_email: &str) -> Result<()> {
    let store = open_store(config).await?;
    store.migrate().await.context("applying migrations")?;
    let name = OrganizationName::parse("--name", name)?;
    // The CLI names organizations by name: two of one name would need ids.
    let wanted = name.as_str().to_lowercase();
    if let Some(taken) = store
        .list_organizations()
        .await?
        .into_iter()
        .find(|o| o.name.to_lowercase() == wanted)
    {
        bail!(
            "an organization is already named '{}' ({}): choose another name",
            taken.name,
            taken.id
        );
    }
    let email = Email::parse("--owner-email", owner_email)?;
    let password = generate_password();
    let password_hash = hasher(config)?
        .hash(&Password::parse("password", password.clone())?)
        .await
        .map_err(anyhow::Error::msg)?;
    let (organization, owner) = store
        .create_organization(
            NewOrganization {
                name,
                tier: Tier::Free,
            },
            NewUser {
                email,
                name: None,
                role: Role::Owner,
                password_hash,
                must_change_password: true,
            },
        )
        .await
        .context("creating the organization")?;
    println!("organization: {} ({})", organization.name, organization.id);
    println!("owner:        {}", owner.email);
    println!("password:     {password}");
    println!(
        "This password is shown once. Sign in with it at POST /api/v1/auth/login, then choose \
         your own at POST /api/v1/auth/password."
    );
    Ok(())
}

/// `steward users reset-password`: a new one-time password for a member.
/// `steward people erase`: the person erased here and now, as the `erase`
/// job erases them.
pub async fn erase_person(config: &Config, org: &str, person: &str) -> Result<()> {
    let person: steward_domain::PersonId = person
        .parse()
        .context("--person: not a person's id (a UUID)")?;
    let store = open_store(config).await?;
    store.migrate().await.context("applying migrations")?;
    let organization = find_org(&*store, org).await?;
    let scope = TenantScope::for_operator(organization.id);
    match store.person(&scope, person).await {
        Ok(_) => {}
        // Erased before, perhaps only in part: finish it.
        Err(steward_store::StoreError::NotFound)
            if store
                .erasures()
                .await?
                .iter()
                .any(|e| e.person_id == person) => {}
        Err(steward_store::StoreError::NotFound) => {
            bail!("{} has no person {person}", organization.name)
        }
        Err(e) => return Err(e.into()),
    }
    let backups = steward_backup::Backups::from_config(config)?;
    let erased = steward_backup::erase(&*store, &backups, &scope, person).await;
    store.close().await;
    let erased = erased?;
    println!(
        "person {person} of {} erased: {} memory keys destroyed ({} facts), {} messages, {} conversations, {} leads deleted",
        organization.name,
        erased.keys,
        erased.facts,
        erased.messages,
        erased.conversations,
        erased.leads
    );
    Ok(())
}

pub async fn reset_password(config: &Config, org: &str, email: &str) -> Result<()> {
    let store = open_store(config).await?;
    store.migrate().await.context("applying migrations")?;
    let organization = find_org(&*store, org).await?;
    let email = Email::parse("--email", email)?;
    let member = store
        .find_login(&email)
        .await?
        .map(|(user, _)| user)
        .filter(|user| user.org_id == organization.id)
        .with_context(|| format!("{} has no member {}", organization.name, email.as_str()))?;
    let password = generate_password();
    let password_hash = hasher(config)?
        .hash(&Password::parse("password", password.clone())?)
        .await
        .map_err(anyhow::Error::msg)?;
    let scope = TenantScope::for_operator(organization.id);
    store
        .set_password(&scope, member.id, &password_hash, true)
        .await?;
    println!("member:       {} ({})", member.email, organization.name);
    println!("password:     {password}");
    println!(
        "This password is shown once; their sessions were signed out. They sign in with it at \
         POST /api/v1/auth/login and choose their own at POST /api/v1/auth/password."
    );
    Ok(())
}

pub fn hasher(config: &Config) -> Result<PasswordHasher> {
    PasswordHasher::new(HashingParams {
        memory_kib: config.auth.argon2_memory_kib,
        iterations: config.auth.argon2_iterations,
        concurrency: config.auth.hash_concurrency,
    })
    .map_err(anyhow::Error::msg)
}

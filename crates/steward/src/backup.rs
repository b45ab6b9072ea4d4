//! `steward backup`: the operator's side of `steward-backup`.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use anyhow::Result;
use steward_backup::{Backups, Pick, RestorePlan};
use steward_config::Config;
use steward_knowledge::Blobs;

use crate::cli::{BackupCommand, PickBackup};
use crate::open_store;

pub async fn run(mut config: Config, command: BackupCommand) -> Result<ExitCode> {
    // The backup key: generated into the data folder outside production.
    steward_config::ensure_secrets(&mut config)?;
    let config = &config;
    let backups = Backups::from_config(config)?;
    match command {
        BackupCommand::Create => {
            // No migrations: a backup copies the database as it is, even
            // while an older or newer Steward runs against it.
            let store = open_store(config).await?;
            let blobs = Blobs::from_config(&config.storage, &config.data_dir)?;
            let made = backups
                .create(store.as_ref(), &config.database_url(), &blobs)
                .await;
            store.close().await;
            let manifest = made?;
            println!(
                "backup {} made in {}: {} bytes, {} blobs",
                manifest.id,
                backups.dir().join(&manifest.id).display(),
                manifest.total_bytes(),
                manifest.blob_count
            );
        }
        BackupCommand::List => {
            println!(
                "{:<24}  {:<8}  {:>6}  {:>12}  {:>7}  {:<16}  where",
                "id", "backend", "schema", "bytes", "blobs", "key"
            );
            for listed in backups.list().await? {
                let place = match (listed.local, listed.remote) {
                    (true, true) => "local, s3",
                    (true, false) => "local",
                    _ => "s3",
                };
                match &listed.manifest {
                    Ok(m) => println!(
                        "{:<24}  {:<8}  {:>6}  {:>12}  {:>7}  {:<16}  {place}",
                        listed.id,
                        m.backend,
                        m.schema_version,
                        m.total_bytes(),
                        m.blob_count,
                        m.key_id
                    ),
                    Err(e) => println!("{:<24}  damaged: {e}  ({place})", listed.id),
                }
            }
        }
        BackupCommand::Verify { pick, scratch } => {
            let verified = backups
                .verify(&pick_of(pick), &config.database_url(), scratch.as_deref())
                .await?;
            let rows: u64 = verified.tables.iter().map(|t| t.rows).sum();
            println!(
                "backup {} is sound: checksums match; the trial restore read {} tables ({rows} rows); {} blobs ({} bytes)",
                verified.manifest.id,
                verified.tables.len(),
                verified.blobs.count,
                verified.blobs.bytes
            );
        }
        BackupCommand::Restore {
            pick,
            into,
            yes,
            force,
            no_blobs,
        } => {
            let blobs = if no_blobs {
                None
            } else {
                Some(Blobs::from_config(&config.storage, &config.data_dir)?)
            };
            let plan = backups
                .restore(&pick_of(pick), &into, blobs.as_ref(), force, |plan| {
                    yes || confirm(plan)
                })
                .await?;
            println!(
                "backup {} restored into {}{}",
                plan.manifest.id,
                plan.target,
                if plan.restores_blobs {
                    format!(" with its {} blobs", plan.manifest.blob_count)
                } else {
                    String::new()
                }
            );
            if plan.erased_again > 0 {
                println!(
                    "{} people it held had been erased since: erased again",
                    plan.erased_again
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn pick_of(pick: PickBackup) -> Pick {
    match pick.id {
        Some(id) if !pick.latest => Pick::Id(id),
        _ => Pick::Latest,
    }
}

/// Asks on the terminal; anything but "yes" declines.
fn confirm(plan: &RestorePlan) -> bool {
    let m = &plan.manifest;
    eprintln!(
        "Restore backup {} ({} database, made {}, {} blobs) into {}?",
        m.id, m.backend, m.created_at, m.blob_count, plan.target
    );
    if plan.target_holds_data {
        eprintln!("The data in {} will be replaced.", plan.target);
    }
    eprint!("Type yes to go on: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).is_ok() && answer.trim() == "yes"
}

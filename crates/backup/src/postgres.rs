//! PostgreSQL is copied with its own tools: `pg_dump` in custom format (a
//! consistent snapshot, compressed) and `pg_restore` in one transaction, so
//! that a restore which fails leaves the target as it was.

use std::path::Path;
use std::process::Stdio;

use crate::BackupError;

/// Dumps the database at `url` into `to`.
pub async fn dump(pg_dump: &str, url: &str, to: &Path) -> Result<(), BackupError> {
    let mut command = tokio::process::Command::new(pg_dump);
    command
        .arg("--format=custom")
        .arg("--no-owner")
        .arg("--no-privileges")
        .arg("--file")
        .arg(to)
        .arg("--dbname")
        .arg(url);
    run(pg_dump, command).await
}

/// Restores `from` into the database at `url` in one transaction, first
/// dropping the objects the dump holds.
pub async fn restore(pg_restore: &str, from: &Path, url: &str) -> Result<(), BackupError> {
    let mut command = tokio::process::Command::new(pg_restore);
    command
        .arg("--clean")
        .arg("--if-exists")
        .arg("--single-transaction")
        .arg("--exit-on-error")
        .arg("--no-owner")
        .arg("--no-privileges")
        .arg("--dbname")
        .arg(url)
        .arg(from);
    run(pg_restore, command).await
}

async fn run(program: &str, mut command: tokio::process::Command) -> Result<(), BackupError> {
    let output = command
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| {
            BackupError::Tool(format!(
                "cannot run {program}: {e} (set backup.pg_dump and backup.pg_restore, or put PostgreSQL's client tools on PATH)"
            ))
        })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let hint = if stderr.contains("server version mismatch") {
        " (its major version must be at least the server's: point backup.pg_dump and backup.pg_restore at newer ones)"
    } else {
        ""
    };
    Err(BackupError::Tool(format!(
        "{program} failed ({}): {}{hint}",
        output.status,
        stderr.trim()
    )))
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, database: &str) -> Result<String, BackupError> {
    let mut parsed = url::Url::parse(url)
        .map_err(|e| BackupError::Invalid(format!("not a PostgreSQL URL: {e}")))?;
    parsed.set_path(&format!("/{database}"));
    Ok(parsed.to_string())
}

/// A database created on the server at `url` for a trial restore, and
/// dropped afterwards.
pub struct ScratchDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl ScratchDatabase {
    pub async fn create(admin_url: &str) -> Result<Self, BackupError> {
        let name = format!("steward_verify_{}", uuid::Uuid::now_v7().simple());
        let url = with_database(admin_url, &name)?;
        execute(admin_url, &format!("CREATE DATABASE {name}"))
            .await
            .map_err(|e| {
                BackupError::Tool(format!(
                    "cannot create a scratch database for the trial restore ({e}); give the role CREATEDB, or pass --scratch URL"
                ))
            })?;
        Ok(Self {
            admin_url: admin_url.to_owned(),
            name,
            url,
        })
    }

    pub async fn drop(self) {
        if let Err(e) = execute(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )
        .await
        {
            tracing::warn!(database = %self.name, error = %e, "could not drop the scratch database");
        }
    }
}

/// One CREATE or DROP DATABASE on a connection of its own.
async fn execute(url: &str, statement: &str) -> Result<(), String> {
    let admin = steward_store_postgres::PostgresStore::connect(url, 1)
        .await
        .map_err(|e| e.to_string())?;
    let done = admin
        .execute_admin(statement)
        .await
        .map_err(|e| e.to_string());
    steward_store::Store::close(&admin).await;
    done
}

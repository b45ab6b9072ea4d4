//! `steward users import`: one person per CSV row; a bad row is reported and
//! skipped, never stops the rest.

use std::path::Path;

use anyhow::{Context, Result, bail};
use steward_auth::{PasswordHasher, generate_password};
use steward_domain::{Email, Password, PersonName, Role};
use steward_store::{NewUser, Organization, Store, StoreError, TenantScope};

/// Larger files are refused before reading: this is for people, not bulk data.
const MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;

pub struct Report {
    pub imported: usize,
    pub failed: usize,
}

pub async fn users(
    store: &dyn Store,
    hasher: &PasswordHasher,
    organization: &Organization,
    file: &Path,
) -> Result<Report> {
    let scope = TenantScope::for_operator(organization.id);
    let size = std::fs::metadata(file)
        .with_context(|| format!("reading {}", file.display()))?
        .len();
    if size > MAX_FILE_BYTES {
        bail!(
            "{} is {size} bytes; the limit is {MAX_FILE_BYTES}",
            file.display()
        );
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(file)?;

    let mut out = csv::Writer::from_writer(std::io::stdout());
    out.write_record(["email", "role", "temporary_password"])?;
    let mut report = Report {
        imported: 0,
        failed: 0,
    };
    for record in reader.records() {
        // The file's own line number (blank lines are skipped, not counted out).
        let line = match &record {
            Ok(record) => record.position().map_or(0, |p| p.line()),
            Err(e) => e.position().map_or(0, |p| p.line()),
        };
        let outcome = match record {
            Ok(record)
                if line == 1
                    && record
                        .get(0)
                        .is_some_and(|f| f.eq_ignore_ascii_case("email")) =>
            {
                continue;
            }
            Ok(record) if record.iter().all(str::is_empty) => continue,
            Ok(record) => import_row(store, hasher, &scope, &record).await,
            Err(e) => Err(format!("unreadable row: {e}")),
        };
        match outcome {
            Ok((email, role, password)) => {
                out.write_record([email.as_str(), role.as_str(), password.as_str()])?;
                report.imported += 1;
            }
            Err(reason) => {
                eprintln!("line {line}: {reason}");
                report.failed += 1;
            }
        }
    }
    out.flush()?;
    eprintln!(
        "imported {} into {}, {} failed",
        report.imported, organization.name, report.failed
    );
    Ok(report)
}

async fn import_row(
    store: &dyn Store,
    hasher: &PasswordHasher,
    scope: &TenantScope,
    record: &csv::StringRecord,
) -> Result<(String, Role, String), String> {
    if record.len() < 2 || record.len() > 3 {
        return Err(format!(
            "expected email,role[,name], got {} fields",
            record.len()
        ));
    }
    let email = Email::parse("email", &record[0]).map_err(|e| e.to_string())?;
    let role: Role = record[1].to_lowercase().parse()?;
    let name = record
        .get(2)
        .filter(|n| !n.is_empty())
        .map(|n| PersonName::parse("name", n))
        .transpose()
        .map_err(|e| e.to_string())?;
    let password = generate_password();
    let password_hash = hasher
        .hash(&Password::parse("password", password.clone()).map_err(|e| e.to_string())?)
        .await?;
    match store
        .add_member(
            scope,
            NewUser {
                email: email.clone(),
                name,
                role,
                password_hash,
                must_change_password: true,
            },
        )
        .await
    {
        Ok(user) => Ok((user.email, user.role, password)),
        Err(StoreError::Conflict(conflict)) => {
            Err(format!("{}: {}", email.as_str(), conflict.message()))
        }
        Err(e) => Err(format!("{}: {e}", email.as_str())),
    }
}

//! `steward users import`: one person per CSV row; a bad row is reported and
//! skipped, never stops the rest. A row may give the person's channel
//! handles, which make their messages on those channels theirs; a row for
//! someone who is a member already adds those handles.

use std::path::Path;

use anyhow::{Context, Result, bail};
use steward_auth::{PasswordHasher, generate_password};
use steward_domain::{Email, Identity, IdentityKind, Password, PersonName, Role};
use steward_store::{Conflict, NewUser, Organization, Store, StoreError, TenantScope};

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
            Err(e) => Err(RowError::from(format!("unreadable row: {e}"))),
        };
        match outcome {
            Ok((email, role, password)) => {
                out.write_record([
                    email.as_str(),
                    role.as_str(),
                    password.as_deref().unwrap_or(""),
                ])?;
                report.imported += 1;
            }
            Err(RowError { reason, made }) => {
                if let Some((email, role, Some(password))) = made {
                    out.write_record([email.as_str(), role.as_str(), password.as_str()])?;
                }
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

/// The channel handles a row may give after `name`, in this order.
const HANDLE_COLUMNS: [(&str, IdentityKind); 3] = [
    ("slack", IdentityKind::Slack),
    ("teams", IdentityKind::Teams),
    ("whatsapp", IdentityKind::Whatsapp),
];

/// What a row did: a new member and their one-time password, or handles
/// linked to a member who was there already (no password).
type Imported = (String, Role, Option<String>);

/// Why a row failed, and the member it made all the same (whose password
/// must still be printed).
struct RowError {
    reason: String,
    made: Option<Imported>,
}

impl From<String> for RowError {
    fn from(reason: String) -> Self {
        Self { reason, made: None }
    }
}

async fn import_row(
    store: &dyn Store,
    hasher: &PasswordHasher,
    scope: &TenantScope,
    record: &csv::StringRecord,
) -> Result<Imported, RowError> {
    if record.len() < 2 || record.len() > 3 + HANDLE_COLUMNS.len() {
        return Err(format!(
            "expected email,role[,name][,slack][,teams][,whatsapp], got {} fields",
            record.len()
        )
        .into());
    }
    let email = Email::parse("email", &record[0]).map_err(|e| e.to_string())?;
    let role: Role = record[1].to_lowercase().parse()?;
    let name = record
        .get(2)
        .filter(|n| !n.is_empty())
        .map(|n| PersonName::parse("name", n))
        .transpose()
        .map_err(|e| e.to_string())?;
    let mut handles = Vec::new();
    for (i, (column, kind)) in HANDLE_COLUMNS.iter().enumerate() {
        if let Some(raw) = record.get(3 + i).filter(|h| !h.is_empty()) {
            handles.push(Identity::parse(column, *kind, raw).map_err(|e| e.to_string())?);
        }
    }
    let password = generate_password();
    let password_hash = hasher
        .hash(&Password::parse("password", password.clone()).map_err(|e| e.to_string())?)
        .await?;
    let added = store
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
        .await;
    let (user, password) = match added {
        Ok(user) => (user, Some(password)),
        // A member already: the row adds their handles.
        Err(StoreError::Conflict(Conflict::EmailTaken)) => {
            let member = store
                .list_members(scope)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .find(|m| m.email == email.as_str());
            match member {
                Some(member) if !handles.is_empty() => (member, None),
                _ => {
                    return Err(
                        format!("{}: {}", email.as_str(), Conflict::EmailTaken.message()).into(),
                    );
                }
            }
        }
        Err(StoreError::Conflict(conflict)) => {
            return Err(format!("{}: {}", email.as_str(), conflict.message()).into());
        }
        Err(e) => return Err(format!("{}: {e}", email.as_str()).into()),
    };
    if !handles.is_empty() {
        let linked = match store.member_person(scope, user.id).await {
            Ok(person) => store.link_identities(scope, person.id, &handles).await,
            Err(e) => Err(e),
        };
        if let Err(e) = linked {
            // The account stands (its password is printed); its handles wait
            // for a corrected row.
            let why = match e {
                StoreError::Conflict(conflict) => conflict.message().to_owned(),
                other => other.to_string(),
            };
            return Err(RowError {
                reason: format!("{}: handles not linked: {why}", email.as_str()),
                made: password.map(|p| (user.email, user.role, Some(p))),
            });
        }
    }
    Ok((user.email, user.role, password))
}

//! `steward db copy`: moves a SQLite database into PostgreSQL, the path from
//! one machine to the scaled-out tiers.
//!
//! The target is migrated to the current schema, then every table is copied
//! in dependency order (foreign keys first), in SQLite's row order, in
//! batches. Each batch and the position it reached commit in one
//! transaction, into `steward_db_copy` on the target, so an interrupted copy
//! resumes where it stopped; rows are inserted with `ON CONFLICT DO NOTHING`.
//! At the end every table's row count and an order-independent checksum of
//! its rows (each value in one canonical form on both sides) must match, the
//! identity sequences are moved past the copied ids, and the progress table
//! is dropped.
//!
//! This is the one place where SQL spans both backends: it reads and writes
//! raw rows by the catalogues' column types, so it lives here rather than in
//! either store crate.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat};
use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, Row, SqliteConnection, ValueRef};
use steward_store::{OpsStore, Store, quote_identifier};
use steward_store_postgres::PostgresStore;

use crate::BackupError;

/// Records the copy's progress on the target; dropped when it is done.
const PROGRESS: &str = "steward_db_copy";
/// Tables of SQLite's own that PostgreSQL does without (leadership is an
/// advisory lock there), PostgreSQL's own that its triggers fill as passages
/// are copied (word counts for full-text ranking) or that stay empty
/// (vectors waiting for the index: copied passages carry theirs), and the
/// migrations' bookkeeping, which differs.
const NOT_COPIED: &[&str] = &[
    "_sqlx_migrations",
    "leader_leases",
    "passage_scopes",
    "passage_words",
    "waiting_vectors",
    PROGRESS,
];
/// Columns named differently: (table, PostgreSQL column, SQLite column).
const RENAMED: &[(&str, &str, &str)] = &[("chunks", "id", "seq")];
/// PostgreSQL takes at most 65,535 parameters in one statement.
const MAX_PARAMETERS: usize = 60_000;

/// One table as copied and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct CopiedTable {
    pub table: String,
    pub rows: u64,
    /// The order-independent checksum both sides agree on (hex).
    pub checksum: String,
}

#[derive(Debug, Clone)]
struct TargetColumn {
    name: String,
    /// PostgreSQL's type name (`uuid`, `timestamptz`, `jsonb`, `vector`…).
    udt: String,
    identity: bool,
}

#[derive(Debug, Clone)]
struct Table {
    name: String,
    columns: Vec<TargetColumn>,
    /// The SQLite column each target column reads.
    source_columns: Vec<String>,
}

fn err(e: impl std::fmt::Display) -> BackupError {
    BackupError::Invalid(e.to_string())
}

fn column_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| quote_identifier(n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Copies the SQLite database at `from` into the PostgreSQL database at
/// `to`; `batch` rows per transaction. Refuses a target that holds data,
/// unless it holds an unfinished copy of the same source.
pub async fn copy(from: &str, to: &str, batch: usize) -> Result<Vec<CopiedTable>, BackupError> {
    if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        return Err(err(format!("--to '{to}' must be a postgres:// URL")));
    }
    if !from.starts_with("sqlite:") {
        return Err(err(format!("--from '{from}' must be a sqlite:// URL")));
    }
    let source_options = SqliteConnectOptions::from_str(from)
        .map_err(|e| err(format!("--from: {e}")))?
        .read_only(true)
        .create_if_missing(false);
    let mut source = source_options
        .connect()
        .await
        .map_err(|e| err(format!("opening {from}: {e}")))?;
    let source_name = source_options.get_filename().display().to_string();

    let target_store = PostgresStore::connect(to, 2).await?;
    let mut target = PgConnection::connect_with(
        &PgConnectOptions::from_str(to).map_err(|e| err(format!("--to: {e}")))?,
    )
    .await
    .map_err(|e| err(format!("connecting to the target: {e}")))?;
    let resuming = progress_source(&mut target).await?;
    match &resuming {
        Some(previous) if *previous != source_name => {
            return Err(BackupError::Refused(format!(
                "the target holds an unfinished copy of {previous}, not of {source_name}"
            )));
        }
        Some(_) => tracing::info!("resuming an interrupted copy"),
        None if target_store.holds_data().await? => {
            return Err(BackupError::Refused(
                "the target database holds data: copy into an empty database".into(),
            ));
        }
        None => {}
    }
    target_store.migrate().await?;
    Store::close(&target_store).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {PROGRESS} (
             table_name text PRIMARY KEY,
             source text NOT NULL,
             after_rowid bigint NOT NULL,
             finished boolean NOT NULL
         )"
    )))
    .execute(&mut target)
    .await
    .map_err(err)?;

    // One read transaction: every table is read from the same snapshot.
    sqlx::raw_sql("BEGIN")
        .execute(&mut source)
        .await
        .map_err(err)?;
    let tables = plan(&mut source, &mut target).await?;
    for table in &tables {
        copy_table(&mut source, &mut target, table, &source_name, batch).await?;
    }
    let mut report = Vec::new();
    for table in &tables {
        report.push(check_table(&mut source, &mut target, table).await?);
    }
    sqlx::raw_sql("COMMIT")
        .execute(&mut source)
        .await
        .map_err(err)?;
    for table in &tables {
        for column in table.columns.iter().filter(|c| c.identity) {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT setval(pg_get_serial_sequence($1, $2), coalesce((SELECT max({}) FROM {}), 0) + 1, false)",
                quote_identifier(&column.name),
                quote_identifier(&table.name)
            )))
            .bind(&table.name)
            .bind(&column.name)
            .execute(&mut target)
            .await
            .map_err(err)?;
        }
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP TABLE {PROGRESS}; ANALYZE"
    )))
    .execute(&mut target)
    .await
    .map_err(err)?;
    Ok(report)
}

async fn progress_source(target: &mut PgConnection) -> Result<Option<String>, BackupError> {
    let exists: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT to_regclass('{PROGRESS}') IS NOT NULL"
    )))
    .fetch_one(&mut *target)
    .await
    .map_err(err)?;
    if !exists {
        return Ok(None);
    }
    let source: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT source FROM {PROGRESS} LIMIT 1"
    )))
    .fetch_optional(&mut *target)
    .await
    .map_err(err)?;
    // None also when the copy died before its first batch: nothing to resume.
    Ok(source)
}

/// The target's tables in foreign-key order, each mapped to its SQLite table.
async fn plan(
    source: &mut SqliteConnection,
    target: &mut PgConnection,
) -> Result<Vec<Table>, BackupError> {
    let rows = sqlx::query(
        "SELECT table_name::text, column_name::text, udt_name::text, is_identity = 'YES' AS identity
         FROM information_schema.columns
         WHERE table_schema = current_schema() AND is_generated = 'NEVER'
         ORDER BY table_name, ordinal_position",
    )
    .fetch_all(&mut *target)
    .await
    .map_err(err)?;
    let mut columns: BTreeMap<String, Vec<TargetColumn>> = BTreeMap::new();
    for row in rows {
        let table: String = row.get(0);
        if NOT_COPIED.contains(&table.as_str()) {
            continue;
        }
        columns.entry(table).or_default().push(TargetColumn {
            name: row.get(1),
            udt: row.get(2),
            identity: row.get(3),
        });
    }
    let source_tables: BTreeSet<String> = sqlx::query_scalar(
        "SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'table' AND name NOT LIKE 'sqlite_%'",
    )
    .fetch_all(&mut *source)
    .await
    .map_err(err)?
    .into_iter()
    .collect();
    let missing: Vec<_> = columns
        .keys()
        .filter(|t| !source_tables.contains(*t))
        .collect();
    let unknown: Vec<_> = source_tables
        .iter()
        .filter(|t| !columns.contains_key(*t) && !NOT_COPIED.contains(&t.as_str()))
        .collect();
    if !missing.is_empty() || !unknown.is_empty() {
        return Err(BackupError::Mismatch(format!(
            "the schemas differ (is the source from another Steward version? run `steward migrate` on it first): only in PostgreSQL: {missing:?}; only in SQLite: {unknown:?}"
        )));
    }
    let mut tables = Vec::new();
    for (name, columns) in columns {
        let present: BTreeSet<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?)")
            .bind(&name)
            .fetch_all(&mut *source)
            .await
            .map_err(err)?
            .into_iter()
            .collect();
        let mut source_columns = Vec::new();
        for column in &columns {
            let from = RENAMED
                .iter()
                .find(|(t, c, _)| *t == name && *c == column.name)
                .map_or(column.name.as_str(), |(_, _, s)| s);
            if !present.contains(from) {
                return Err(BackupError::Mismatch(format!(
                    "{name}.{from} is missing from the SQLite database"
                )));
            }
            source_columns.push(from.to_owned());
        }
        tables.push(Table {
            name,
            columns,
            source_columns,
        });
    }
    order_by_foreign_keys(target, tables).await
}

/// Referenced tables before the tables that reference them.
async fn order_by_foreign_keys(
    target: &mut PgConnection,
    tables: Vec<Table>,
) -> Result<Vec<Table>, BackupError> {
    let edges: Vec<(String, String)> = sqlx::query_as(
        "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint
         WHERE contype = 'f' AND connamespace = current_schema()::regnamespace",
    )
    .fetch_all(&mut *target)
    .await
    .map_err(err)?;
    let mut remaining: BTreeMap<String, Table> =
        tables.into_iter().map(|t| (t.name.clone(), t)).collect();
    let mut ordered = Vec::new();
    while !remaining.is_empty() {
        let ready: Vec<String> = remaining
            .keys()
            .filter(|name| {
                !edges
                    .iter()
                    .any(|(from, to)| from == *name && to != *name && remaining.contains_key(to))
            })
            .cloned()
            .collect();
        if ready.is_empty() {
            return Err(BackupError::Mismatch(format!(
                "foreign keys form a cycle among {:?}",
                remaining.keys().collect::<Vec<_>>()
            )));
        }
        for name in ready {
            ordered.push(remaining.remove(&name).expect("listed"));
        }
    }
    Ok(ordered)
}

async fn copy_table(
    source: &mut SqliteConnection,
    target: &mut PgConnection,
    table: &Table,
    source_name: &str,
    batch: usize,
) -> Result<(), BackupError> {
    let progress: Option<(i64, bool)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT after_rowid, finished FROM {PROGRESS} WHERE table_name = $1"
    )))
    .bind(&table.name)
    .fetch_optional(&mut *target)
    .await
    .map_err(err)?;
    let mut after = match progress {
        Some((_, true)) => return Ok(()),
        Some((after, false)) => after,
        None => i64::MIN,
    };
    let batch = batch.clamp(1, MAX_PARAMETERS / table.columns.len().max(1));
    let select = format!(
        "SELECT rowid AS steward_rowid, {} FROM {} WHERE rowid > ? ORDER BY rowid LIMIT ?",
        column_list(&table.source_columns),
        quote_identifier(&table.name)
    );
    let mut copied = 0u64;
    loop {
        let rows = sqlx::query(sqlx::AssertSqlSafe(select.clone()))
            .bind(after)
            .bind(batch as i64)
            .fetch_all(&mut *source)
            .await
            .map_err(err)?;
        let Some(last) = rows.last() else {
            break;
        };
        let last_rowid: i64 = last.get(0);
        let mut values = Vec::with_capacity(rows.len() * table.columns.len());
        for row in &rows {
            for (i, column) in table.columns.iter().enumerate() {
                values.push(literal(row, i + 1, &column.udt).map_err(|e| {
                    BackupError::Invalid(format!("{}.{}: {e}", table.name, column.name))
                })?);
            }
        }
        let mut tx = target.begin().await.map_err(err)?;
        let statement = insert_statement(table, rows.len());
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(statement));
        for value in values {
            insert = insert.bind(value);
        }
        insert.execute(&mut *tx).await.map_err(|e| {
            BackupError::Invalid(format!("copying {} into PostgreSQL: {e}", table.name))
        })?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {PROGRESS} (table_name, source, after_rowid, finished) VALUES ($1, $2, $3, false)
             ON CONFLICT (table_name) DO UPDATE SET after_rowid = excluded.after_rowid"
        )))
        .bind(&table.name)
        .bind(source_name)
        .bind(last_rowid)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)?;
        copied += rows.len() as u64;
        after = last_rowid;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {PROGRESS} (table_name, source, after_rowid, finished) VALUES ($1, $2, $3, true)
         ON CONFLICT (table_name) DO UPDATE SET finished = true"
    )))
    .bind(&table.name)
    .bind(source_name)
    .bind(after)
    .execute(&mut *target)
    .await
    .map_err(err)?;
    tracing::info!(table = %table.name, rows = copied, "copied");
    Ok(())
}

fn insert_statement(table: &Table, rows: usize) -> String {
    let names: Vec<String> = table
        .columns
        .iter()
        .map(|c| quote_identifier(&c.name))
        .collect();
    let mut n = 0;
    let tuples: Vec<String> = (0..rows)
        .map(|_| {
            let cells: Vec<String> = table
                .columns
                .iter()
                .map(|c| {
                    n += 1;
                    match c.udt.as_str() {
                        "bytea" => format!("decode(${n}, 'hex')"),
                        udt => format!("${n}::{}", quote_identifier(udt)),
                    }
                })
                .collect();
            format!("({})", cells.join(", "))
        })
        .collect();
    let overriding = if table.columns.iter().any(|c| c.identity) {
        " OVERRIDING SYSTEM VALUE"
    } else {
        ""
    };
    format!(
        "INSERT INTO {} ({}){overriding} VALUES {} ON CONFLICT DO NOTHING",
        quote_identifier(&table.name),
        names.join(", "),
        tuples.join(", ")
    )
}

/// A SQLite value as the text PostgreSQL reads for a column of type `udt`
/// (None: NULL). SQLite keeps ids as 16-byte blobs, times as microseconds,
/// booleans as integers and vectors as little-endian f32s.
fn literal(
    row: &sqlx::sqlite::SqliteRow,
    index: usize,
    udt: &str,
) -> Result<Option<String>, String> {
    let raw = row.try_get_raw(index).map_err(|e| e.to_string())?;
    if raw.is_null() {
        return Ok(None);
    }
    let storage = raw.type_info().to_string();
    let text = match (udt, storage.as_str()) {
        ("uuid", "BLOB") => {
            let bytes: Vec<u8> = row.get(index);
            uuid::Uuid::from_slice(&bytes)
                .map_err(|e| e.to_string())?
                .to_string()
        }
        ("timestamptz", "INTEGER") => {
            let micros: i64 = row.get(index);
            DateTime::from_timestamp_micros(micros)
                .ok_or("a time out of range")?
                .to_rfc3339_opts(SecondsFormat::Micros, true)
        }
        ("bool", "INTEGER") => (row.get::<i64, _>(index) != 0).to_string(),
        ("bytea", "BLOB") => hex::encode(row.get::<Vec<u8>, _>(index)),
        ("bytea", "TEXT") => hex::encode(row.get::<String, _>(index)),
        ("vector", "BLOB") => {
            let bytes: Vec<u8> = row.get(index);
            if !bytes.len().is_multiple_of(4) {
                return Err("a vector blob whose length is not a multiple of 4".into());
            }
            let values: Vec<String> = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]).to_string())
                .collect();
            format!("[{}]", values.join(","))
        }
        (_, "INTEGER") => row.get::<i64, _>(index).to_string(),
        (_, "REAL") => row.get::<f64, _>(index).to_string(),
        (_, "TEXT") => row.get::<String, _>(index),
        (udt, storage) => return Err(format!("cannot copy a SQLite {storage} into {udt}")),
    };
    Ok(Some(text))
}

/// One value in the form both sides agree on.
fn canonical(udt: &str, value: Option<&str>) -> String {
    let Some(value) = value else {
        return "\u{0}NULL".into();
    };
    match udt {
        "json" | "jsonb" => serde_json::from_str::<serde_json::Value>(value)
            .map(|v| sorted(&v).to_string())
            .unwrap_or_else(|_| value.to_owned()),
        "vector" => value
            .trim_matches(['[', ']'])
            .split(',')
            .map(|v| {
                v.trim()
                    .parse::<f32>()
                    .map_or(v.to_owned(), |f| f.to_string())
            })
            .collect::<Vec<_>>()
            .join(","),
        "float4" | "float8" | "numeric" => value
            .parse::<f64>()
            .map_or(value.to_owned(), |f| f.to_string()),
        _ => value.to_owned(),
    }
}

/// JSON with every object's keys in order (PostgreSQL's jsonb reorders them).
fn sorted(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let ordered: BTreeMap<&String, serde_json::Value> =
                map.iter().map(|(k, v)| (k, sorted(v))).collect();
            serde_json::Value::Object(ordered.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(sorted).collect())
        }
        other => other.clone(),
    }
}

/// Sums each row's hash: the same rows in any order give the same checksum.
#[derive(Default)]
struct Checksum(u128, u64);

impl Checksum {
    fn add(&mut self, cells: impl Iterator<Item = String>) {
        let mut hasher = Sha256::new();
        for cell in cells {
            hasher.update(cell.as_bytes());
            hasher.update([0x1f]);
        }
        let digest = hasher.finalize();
        let head = u128::from_be_bytes(digest[..16].try_into().expect("16 bytes"));
        self.0 = self.0.wrapping_add(head);
        self.1 += 1;
    }
}

/// Counts and checksums the table on both sides; they must agree.
async fn check_table(
    source: &mut SqliteConnection,
    target: &mut PgConnection,
    table: &Table,
) -> Result<CopiedTable, BackupError> {
    let mut from = Checksum::default();
    let select = format!(
        "SELECT {} FROM {}",
        column_list(&table.source_columns),
        quote_identifier(&table.name)
    );
    {
        use futures::StreamExt;
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(select)).fetch(&mut *source);
        while let Some(row) = rows.next().await {
            let row = row.map_err(err)?;
            let mut cells = Vec::with_capacity(table.columns.len());
            for (i, column) in table.columns.iter().enumerate() {
                let value = literal(&row, i, &column.udt).map_err(err)?;
                cells.push(canonical(&column.udt, value.as_deref()));
            }
            from.add(cells.into_iter());
        }
    }
    let mut to = Checksum::default();
    let select = format!(
        "SELECT {} FROM {}",
        table
            .columns
            .iter()
            .map(|c| {
                let name = quote_identifier(&c.name);
                match c.udt.as_str() {
                    "timestamptz" => format!(
                        "to_char({name} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
                    ),
                    "bytea" => format!("encode({name}, 'hex')"),
                    _ => format!("{name}::text"),
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
        quote_identifier(&table.name)
    );
    {
        use futures::StreamExt;
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(select)).fetch(&mut *target);
        while let Some(row) = rows.next().await {
            let row = row.map_err(err)?;
            let cells = table.columns.iter().enumerate().map(|(i, column)| {
                let value: Option<String> = row.get(i);
                canonical(&column.udt, value.as_deref())
            });
            to.add(cells);
        }
    }
    if from.1 != to.1 || from.0 != to.0 {
        return Err(BackupError::Corrupt(format!(
            "{}: {} rows in SQLite and {} in PostgreSQL{}; did Steward write to the source during the copy? Stop it, empty the target and copy again",
            table.name,
            from.1,
            to.1,
            if from.1 == to.1 {
                ", with different contents"
            } else {
                ""
            }
        )));
    }
    Ok(CopiedTable {
        table: table.name.clone(),
        rows: to.1,
        checksum: format!("{:032x}", to.0),
    })
}

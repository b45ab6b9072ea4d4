//! `OpsStore` for SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use steward_domain::OrgId;
use steward_store::{
    BackupRun, BackupStatus, OpsStore, OrgActivity, StoreError, StoreResult, TableSize,
    quote_identifier,
};

use crate::{SqliteStore, from_micros, map_err, to_micros};

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl SqliteStore {
    /// The newest migration this build knows, without a database to ask.
    pub fn schema_version_of_this_build() -> i64 {
        MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
    }

    /// Steward's tables (not SQLite's own, nor full-text shadow tables).
    async fn table_names(&self) -> StoreResult<Vec<String>> {
        sqlx::query_scalar(
            "SELECT name FROM pragma_table_list
             WHERE schema = 'main' AND type = 'table' AND name NOT LIKE 'sqlite_%'
             ORDER BY name",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)
    }

    async fn latest_run(&self, succeeded: bool) -> StoreResult<Option<BackupRun>> {
        let row = sqlx::query(
            "SELECT * FROM backup_runs WHERE succeeded = ? ORDER BY finished_at DESC, id DESC LIMIT 1",
        )
        .bind(succeeded)
        .fetch_optional(&self.reader)
        .await
        .map_err(map_err)?;
        row.map(|row| {
            Ok(BackupRun {
                backup_id: row.get("backup_id"),
                started_at: from_micros(row.get("started_at"))?,
                finished_at: from_micros(row.get("finished_at"))?,
                succeeded,
                bytes: row.get::<i64, _>("bytes").max(0) as u64,
                error: row.get("error"),
            })
        })
        .transpose()
    }
}

/// Per organization: members, and its people's messages and replies since
/// ?1 (each a range of `messages_history` per chatbot), and the usage of period ?2.
const ACTIVITY_SQLITE: &str = "
    SELECT o.id, o.name, o.tier,
        (SELECT count(*) FROM users u WHERE u.org_id = o.id) AS members,
        (SELECT count(DISTINCT m.conversation_id) FROM messages m
            WHERE m.org_id = o.id AND m.role = 'user' AND m.created_at >= ?1) AS active_conversations,
        (SELECT count(*) FROM messages m
            WHERE m.org_id = o.id AND m.role = 'user' AND m.created_at >= ?1) AS user_messages,
        (SELECT count(*) FROM messages m
            WHERE m.org_id = o.id AND m.role = 'assistant' AND m.created_at >= ?1) AS replies,
        coalesce((SELECT messages FROM usage_counters c WHERE c.org_id = o.id AND c.period = ?2), 0) AS month_messages,
        coalesce((SELECT tokens FROM usage_counters c WHERE c.org_id = o.id AND c.period = ?2), 0) AS month_tokens
    FROM organizations o ORDER BY o.name, o.id";

#[async_trait]
impl OpsStore for SqliteStore {
    async fn record_backup_run(&self, run: &BackupRun) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO backup_runs (backup_id, started_at, finished_at, succeeded, bytes, error)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&run.backup_id)
        .bind(to_micros(run.started_at))
        .bind(to_micros(run.finished_at))
        .bind(run.succeeded)
        .bind(i64::try_from(run.bytes).unwrap_or(i64::MAX))
        .bind(&run.error)
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn backup_status(&self) -> StoreResult<BackupStatus> {
        Ok(BackupStatus {
            last_success: self.latest_run(true).await?,
            last_failure: self.latest_run(false).await?,
        })
    }

    async fn prune_idempotency_keys(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?")
            .bind(to_micros(before))
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected())
    }

    async fn org_activity(
        &self,
        since: DateTime<Utc>,
        period: &str,
    ) -> StoreResult<Vec<OrgActivity>> {
        let rows = sqlx::query(ACTIVITY_SQLITE)
            .bind(to_micros(since))
            .bind(period)
            .fetch_all(&self.reader)
            .await
            .map_err(map_err)?;
        let mut orgs = Vec::new();
        for row in rows {
            let id: uuid::Uuid = row.get("id");
            let tier: String = row.get("tier");
            let count = |name: &str| row.get::<i64, _>(name).max(0) as u64;
            orgs.push(OrgActivity {
                org_id: OrgId::from(id),
                name: row.get("name"),
                tier: tier.parse().map_err(StoreError::Internal)?,
                members: count("members"),
                active_conversations: count("active_conversations"),
                user_messages: count("user_messages"),
                replies: count("replies"),
                month_messages: count("month_messages"),
                month_tokens: count("month_tokens"),
            });
        }
        Ok(orgs)
    }

    async fn audit_actions(&self, since: DateTime<Utc>) -> StoreResult<Vec<(String, u64)>> {
        let actions: Vec<(String, i64)> = sqlx::query_as(
            "SELECT action, count(*) FROM audit_log WHERE created_at >= ? GROUP BY action ORDER BY action",
        )
        .bind(to_micros(since))
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?;
        Ok(actions
            .into_iter()
            .map(|(action, n)| (action, n.max(0) as u64))
            .collect())
    }

    async fn table_sizes(&self) -> StoreResult<Vec<TableSize>> {
        let mut sizes = Vec::new();
        for table in self.table_names().await? {
            let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {}",
                quote_identifier(&table)
            )))
            .fetch_one(&self.reader)
            .await
            .map_err(map_err)?;
            // The table's pages and its indexes' pages (dbstat is built into
            // the bundled SQLite).
            let bytes: i64 = sqlx::query_scalar(
                "SELECT coalesce(sum(pgsize), 0) FROM dbstat
                 WHERE name = ?1 OR name IN (SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1)",
            )
            .bind(&table)
            .fetch_one(&self.reader)
            .await
            .map_err(map_err)?;
            sizes.push(TableSize {
                table,
                rows: rows.max(0) as u64,
                bytes: bytes.max(0) as u64,
            });
        }
        Ok(sizes)
    }

    async fn schema_version(&self) -> StoreResult<i64> {
        let exists: bool = sqlx::query_scalar(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_one(&self.reader)
        .await
        .map_err(map_err)?;
        if !exists {
            return Ok(0);
        }
        sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.reader)
            .await
            .map_err(map_err)
    }

    fn latest_schema_version(&self) -> i64 {
        Self::schema_version_of_this_build()
    }

    async fn holds_data(&self) -> StoreResult<bool> {
        if !self
            .table_names()
            .await?
            .iter()
            .any(|t| t == "organizations")
        {
            return Ok(false);
        }
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM organizations)")
            .fetch_one(&self.reader)
            .await
            .map_err(map_err)
    }

    async fn snapshot_to(&self, path: &std::path::Path) -> StoreResult<()> {
        let path = path
            .to_str()
            .ok_or_else(|| StoreError::Internal(format!("{} is not UTF-8", path.display())))?;
        // A read transaction: a consistent copy while writers carry on.
        sqlx::query("VACUUM INTO ?")
            .bind(path)
            .execute(&self.reader)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn check_integrity(&self) -> StoreResult<()> {
        let findings: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_all(&self.reader)
            .await
            .map_err(map_err)?;
        if findings == ["ok"] {
            Ok(())
        } else {
            Err(StoreError::Internal(format!(
                "the database is damaged: {}",
                findings.join("; ")
            )))
        }
    }
}

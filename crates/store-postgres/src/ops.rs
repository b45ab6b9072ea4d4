//! `OpsStore` for PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use steward_domain::OrgId;
use steward_store::{
    BackupRun, BackupStatus, OpsStore, OrgActivity, StoreError, StoreResult, TableSize,
    quote_identifier,
};

use crate::{PostgresStore, map_err};

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl PostgresStore {
    /// Runs one statement that cannot run in a transaction (`CREATE
    /// DATABASE`, `DROP DATABASE`), for the operator's tools. The statement is
    /// theirs, built from names they generate.
    pub async fn execute_admin(&self, statement: &str) -> StoreResult<()> {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    /// The tables of the schema Steward uses (the connection's current one).
    async fn table_names(&self) -> StoreResult<Vec<String>> {
        sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
             ORDER BY c.relname",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)
    }

    async fn latest_run(&self, succeeded: bool) -> StoreResult<Option<BackupRun>> {
        let row = sqlx::query(
            "SELECT * FROM backup_runs WHERE succeeded = $1 ORDER BY finished_at DESC, id DESC LIMIT 1",
        )
        .bind(succeeded)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(row.map(|row| BackupRun {
            backup_id: row.get("backup_id"),
            started_at: row.get("started_at"),
            finished_at: row.get("finished_at"),
            succeeded,
            bytes: row.get::<i64, _>("bytes").max(0) as u64,
            error: row.get("error"),
        }))
    }
}

/// Per organization: members, and its people's messages and replies since
/// $1, and the usage of period $2.
const ACTIVITY_POSTGRES: &str = "
    SELECT o.id, o.name, o.tier,
        (SELECT count(*) FROM users u WHERE u.org_id = o.id) AS members,
        (SELECT count(DISTINCT m.conversation_id) FROM messages m
            WHERE m.org_id = o.id AND m.role = 'user' AND m.created_at >= $1) AS active_conversations,
        (SELECT count(*) FROM messages m
            WHERE m.org_id = o.id AND m.role = 'user' AND m.created_at >= $1) AS user_messages,
        (SELECT count(*) FROM messages m
            WHERE m.org_id = o.id AND m.role = 'assistant' AND m.created_at >= $1) AS replies,
        coalesce((SELECT messages FROM usage_counters c WHERE c.org_id = o.id AND c.period = $2), 0)::bigint AS month_messages,
        coalesce((SELECT tokens FROM usage_counters c WHERE c.org_id = o.id AND c.period = $2), 0)::bigint AS month_tokens
    FROM organizations o ORDER BY o.name, o.id";

#[async_trait]
impl OpsStore for PostgresStore {
    async fn record_backup_run(&self, run: &BackupRun) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO backup_runs (backup_id, started_at, finished_at, succeeded, bytes, error)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&run.backup_id)
        .bind(run.started_at)
        .bind(run.finished_at)
        .bind(run.succeeded)
        .bind(i64::try_from(run.bytes).unwrap_or(i64::MAX))
        .bind(&run.error)
        .execute(&self.pool)
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
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected())
    }

    async fn org_activity(
        &self,
        since: DateTime<Utc>,
        period: &str,
    ) -> StoreResult<Vec<OrgActivity>> {
        let rows = sqlx::query(ACTIVITY_POSTGRES)
            .bind(since)
            .bind(period)
            .fetch_all(&self.pool)
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
            "SELECT action, count(*) FROM audit_log WHERE created_at >= $1 GROUP BY action ORDER BY action",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(actions
            .into_iter()
            .map(|(action, n)| (action, n.max(0) as u64))
            .collect())
    }

    async fn table_sizes(&self) -> StoreResult<Vec<TableSize>> {
        // reltuples is -1 until the table is first analyzed or vacuumed.
        let rows = sqlx::query(
            "SELECT c.relname::text AS name, greatest(c.reltuples, 0)::bigint AS rows,
                    pg_total_relation_size(c.oid) AS bytes
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
             ORDER BY c.relname",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(rows
            .iter()
            .map(|row| TableSize {
                table: row.get("name"),
                rows: row.get::<i64, _>("rows").max(0) as u64,
                bytes: row.get::<i64, _>("bytes").max(0) as u64,
            })
            .collect())
    }

    async fn schema_version(&self) -> StoreResult<i64> {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        if !exists {
            return Ok(0);
        }
        sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)
    }

    fn latest_schema_version(&self) -> i64 {
        MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
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
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)
    }

    async fn snapshot_to(&self, _path: &std::path::Path) -> StoreResult<()> {
        Err(StoreError::Internal(
            "a PostgreSQL database is copied with pg_dump, not by the store".into(),
        ))
    }

    async fn check_integrity(&self) -> StoreResult<()> {
        // Counting reads every heap page: a damaged one fails the count.
        for table in self.table_names().await? {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {}",
                quote_identifier(&table)
            )))
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        }
        Ok(())
    }
}

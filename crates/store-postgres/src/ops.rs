//! What PostgreSQL's catalogue knows (`CatalogueStore`), and its migrations.

use async_trait::async_trait;
use sqlx::Row;
use steward_store::{CatalogueStore, StoreError, StoreResult, TableSize, quote_identifier};

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
}

#[async_trait]
impl CatalogueStore for PostgresStore {
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

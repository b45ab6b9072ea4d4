//! What SQLite's catalogue knows (`CatalogueStore`), and its migrations.

use async_trait::async_trait;
use steward_store::{CatalogueStore, StoreError, StoreResult, TableSize, quote_identifier};

use crate::{SqliteStore, map_err};

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl SqliteStore {
    /// The newest migration this build knows, without a database to ask.
    pub fn schema_version_of_this_build() -> i64 {
        MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
    }
}

#[async_trait]
impl CatalogueStore for SqliteStore {
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

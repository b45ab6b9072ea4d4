//! `Store` for SQLite. Every tenant-owned query filters on `org_id`.

use async_trait::async_trait;

use sqlx::{Sqlite, Transaction};
use steward_store::*;

use crate::{SqliteStore, map_err};

pub(crate) type Tx = Transaction<'static, Sqlite>;

impl SqliteStore {
    pub(crate) async fn begin_write(&self) -> StoreResult<Tx> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(map_err)
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn migrate(&self) -> StoreResult<()> {
        crate::ops::MIGRATOR
            .run(&self.writer)
            .await
            .map_err(|e| StoreError::Internal(format!("migration failed: {e}")))
    }

    async fn close(&self) {
        self.checkpointing.0.abort();
        self.checkpointer.close().await;
        self.reader.close().await;
        self.writer.close().await;
    }

    async fn try_lead(
        &self,
        name: &str,
        holder: &str,
        ttl: chrono::Duration,
    ) -> StoreResult<Option<Box<dyn Leadership>>> {
        self.lease(name, holder, ttl).await
    }

    async fn watch_enqueued(&self, _wake: std::sync::Arc<tokio::sync::Notify>) {}

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    fn connections_active(&self) -> u32 {
        let busy = |pool: &sqlx::SqlitePool| pool.size().saturating_sub(pool.num_idle() as u32);
        busy(&self.writer) + busy(&self.reader)
    }

    fn connections_max(&self) -> u32 {
        self.writer.options().get_max_connections() + self.reader.options().get_max_connections()
    }

    async fn analyze(&self) -> StoreResult<()> {
        sqlx::query("PRAGMA optimize")
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn publish_live(&self, event: LiveEvent) -> StoreResult<()> {
        let _ = self.live.send(event);
        Ok(())
    }

    async fn subscribe_live(&self) -> tokio::sync::broadcast::Receiver<LiveEvent> {
        self.live.subscribe()
    }
}

//! `Store` for PostgreSQL. Every tenant-owned query filters on `org_id`.

use async_trait::async_trait;

use sqlx::{Postgres, Transaction};
use steward_store::*;

use crate::{PostgresStore, map_err};

pub(crate) type Tx = Transaction<'static, Postgres>;

impl PostgresStore {
    pub(crate) async fn begin_write(&self) -> StoreResult<Tx> {
        self.pool.begin().await.map_err(map_err)
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn migrate(&self) -> StoreResult<()> {
        crate::ops::MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Internal(format!("migration failed: {e}")))
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    /// The advisory lock lasts as long as its connection: no TTL, no holder name.
    async fn try_lead(
        &self,
        name: &str,
        _holder: &str,
        _ttl: chrono::Duration,
    ) -> StoreResult<Option<Box<dyn Leadership>>> {
        self.advisory_lock(name).await
    }

    async fn watch_enqueued(&self, wake: std::sync::Arc<tokio::sync::Notify>) {
        crate::queue::watch_enqueued(&self.pool, wake).await
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    fn connections_active(&self) -> u32 {
        self.pool.size().saturating_sub(self.pool.num_idle() as u32)
    }

    fn connections_max(&self) -> u32 {
        self.pool.options().get_max_connections()
    }

    async fn analyze(&self) -> StoreResult<()> {
        sqlx::query("ANALYZE")
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn publish_live(&self, event: LiveEvent) -> StoreResult<()> {
        crate::live::notify(&self.pool, &event).await
    }

    async fn subscribe_live(&self) -> tokio::sync::broadcast::Receiver<LiveEvent> {
        self.ensure_listening();
        let receiver = self.live.subscribe();
        self.wait_listening().await;
        receiver
    }
}

//! `Store` for SQLite. Every tenant-owned query filters on `org_id`.

use async_trait::async_trait;

use serde_json::Value;
use sqlx::{Sqlite, Transaction};
use steward_domain::*;
use steward_store::*;

use crate::{SqliteStore, map_err, to_micros};

pub(crate) type Tx = Transaction<'static, Sqlite>;

impl SqliteStore {
    pub(crate) async fn begin_write(&self) -> StoreResult<Tx> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(map_err)
    }
}

/// Every write transaction ends here, so a keyed request's writes are fenced
/// by its claim (see `steward_store::KeyedRequest`).
pub(crate) async fn commit(mut tx: Tx) -> StoreResult<()> {
    if let Some(fence) = keyed_request_fence() {
        pass_fence(&mut tx, &fence).await?;
    }
    tx.commit().await.map_err(map_err)
}

/// Marks the claim as having taken effect (with its response, when set), if
/// the claim still holds this request's token; otherwise the write is refused.
async fn pass_fence(tx: &mut Tx, fence: &Fence) -> StoreResult<()> {
    let held = match &fence.answer {
        Some(answer) => sqlx::query(
            "UPDATE idempotency_keys SET took_effect = 1, status = ?, content_type = ?, body = ?
             WHERE caller = ? AND key = ? AND token = ?",
        )
        .bind(i64::from(answer.status))
        .bind(&answer.content_type)
        .bind(&answer.body),
        None => sqlx::query(
            "UPDATE idempotency_keys SET took_effect = 1 WHERE caller = ? AND key = ? AND token = ?",
        ),
    }
    .bind(&fence.caller)
    .bind(&fence.key)
    .bind(&fence.token)
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    if held.rows_affected() == 0 {
        return Err(claim_lost());
    }
    Ok(())
}

pub(crate) async fn audit(
    tx: &mut Tx,
    scope: &TenantScope,
    action: &str,
    target: &str,
    details: Value,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO audit_log (id, org_id, actor, action, target, details, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(AuditId::new().as_uuid())
    .bind(scope.org_id().as_uuid())
    .bind(scope.actor().to_string())
    .bind(action)
    .bind(target)
    .bind(details.to_string())
    .bind(to_micros(now()))
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(())
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

//! `Store` for PostgreSQL. Every tenant-owned query filters on `org_id`.

use async_trait::async_trait;

use serde_json::Value;
use sqlx::{Postgres, Transaction};
use steward_domain::*;
use steward_store::*;

use crate::{PostgresStore, map_err};

pub(crate) type Tx = Transaction<'static, Postgres>;

impl PostgresStore {
    pub(crate) async fn begin_write(&self) -> StoreResult<Tx> {
        self.pool.begin().await.map_err(map_err)
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
/// The row lock it takes orders this commit against a takeover of the claim.
async fn pass_fence(tx: &mut Tx, fence: &Fence) -> StoreResult<()> {
    let held = match &fence.answer {
        Some(answer) => sqlx::query(
            "UPDATE idempotency_keys SET took_effect = true, status = $4, content_type = $5, body = $6
             WHERE caller = $1 AND key = $2 AND token = $3",
        )
        .bind(&fence.caller)
        .bind(&fence.key)
        .bind(&fence.token)
        .bind(i32::from(answer.status))
        .bind(&answer.content_type)
        .bind(&answer.body),
        None => sqlx::query(
            "UPDATE idempotency_keys SET took_effect = true WHERE caller = $1 AND key = $2 AND token = $3",
        )
        .bind(&fence.caller)
        .bind(&fence.key)
        .bind(&fence.token),
    }
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
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(AuditId::new().as_uuid())
    .bind(scope.org_id().as_uuid())
    .bind(scope.actor().to_string())
    .bind(action)
    .bind(target)
    .bind(details)
    .bind(now())
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(())
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

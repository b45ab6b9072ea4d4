//! [`IdempotencyStore`], for every backend.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::sql::{Db, SqlBackend, rows, sql};
use crate::*;

#[async_trait]
impl<B: SqlBackend> IdempotencyStore for B {
    async fn idempotency_start(
        &self,
        key: &IdempotencyKey,
        stale_before: DateTime<Utc>,
        expired_before: DateTime<Utc>,
    ) -> StoreResult<IdempotencyStart> {
        let token = Uuid::now_v7().to_string();
        let claim = |on_conflict: &'static str| {
            sql(format!(
                "INSERT INTO idempotency_keys (caller, key, org_id, request_hash, created_at, token)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (caller, key) {on_conflict}"
            ))
            .bind(key.caller.as_str())
            .bind(key.key.as_str())
            .bind(key.org_id)
            .bind(key.request_hash.as_str())
            .bind(now())
            .bind(token.as_str())
        };
        // The claim is not a keyed request's effect: it commits unfenced.
        let mut tx = self.begin().await?;
        if tx.execute(claim("DO NOTHING")).await? == 1 {
            B::commit_only(tx).await?;
            return Ok(IdempotencyStart::Started(token));
        }
        // Locked, so a fenced write of the claim's holder commits either
        // before this decision (and is seen) or after the takeover (and fails).
        let existing = tx
            .fetch_optional(
                sql(format!(
                    "SELECT * FROM idempotency_keys WHERE caller = $1 AND key = $2{}",
                    B::FOR_UPDATE
                ))
                .bind(key.caller.as_str())
                .bind(key.key.as_str()),
            )
            .await?;
        let outcome = existing
            .map(|row| rows::stored_claim(&row))
            .transpose()?
            .and_then(|claim| key.decide(claim, stale_before, expired_before));
        if let Some(outcome) = outcome {
            return Ok(outcome);
        }
        tx.execute(claim(
            "DO UPDATE SET
                org_id = excluded.org_id, request_hash = excluded.request_hash, status = NULL,
                content_type = NULL, body = NULL, created_at = excluded.created_at,
                token = excluded.token, took_effect = FALSE",
        ))
        .await?;
        B::commit_only(tx).await?;
        Ok(IdempotencyStart::Started(token))
    }

    async fn idempotency_complete(
        &self,
        key: &IdempotencyKey,
        token: &str,
        response: &StoredResponse,
    ) -> StoreResult<()> {
        self.write()
            .await?
            .execute(
                sql(
                    "UPDATE idempotency_keys SET status = $1, content_type = $2, body = $3
                     WHERE caller = $4 AND key = $5 AND token = $6 AND status IS NULL",
                )
                .bind(i64::from(response.status))
                .bind(response.content_type.as_deref())
                .bind(response.body.as_slice())
                .bind(key.caller.as_str())
                .bind(key.key.as_str())
                .bind(token),
            )
            .await?;
        Ok(())
    }

    async fn idempotency_abandon(&self, key: &IdempotencyKey, token: &str) -> StoreResult<()> {
        self.write()
            .await?
            .execute(
                sql("DELETE FROM idempotency_keys
                     WHERE caller = $1 AND key = $2 AND token = $3 AND status IS NULL
                       AND took_effect = FALSE")
                .bind(key.caller.as_str())
                .bind(key.key.as_str())
                .bind(token),
            )
            .await?;
        Ok(())
    }
}

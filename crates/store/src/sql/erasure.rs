//! [`ErasureStore`], for every backend.

use async_trait::async_trait;
use serde_json::json;
use steward_domain::*;

use crate::sql::queue::insert_job;
use crate::sql::{Db, Row, SqlBackend, audit, commit, delete_in_batches, sql};
use crate::*;

/// Rows deleted per transaction, so no erasure holds its locks for long.
const BATCH: u64 = 1000;

/// Runs `statement` (binding `$1` the organization, `$2` the person, `$3`
/// the batch size) in batches; how many rows it deleted.
async fn in_batches<B: SqlBackend>(
    store: &B,
    statement: &'static str,
    org: OrgId,
    person: PersonId,
) -> StoreResult<u64> {
    delete_in_batches(store, BATCH, || {
        sql(statement).bind(org).bind(person).bind(BATCH as i64)
    })
    .await
}

#[async_trait]
impl<B: SqlBackend> ErasureStore for B {
    async fn request_erasure(
        &self,
        scope: &TenantScope,
        person: PersonId,
        job: NewJob,
    ) -> StoreResult<Job> {
        let mut tx = self.begin().await?;
        tx.fetch_optional(
            sql("SELECT id FROM people WHERE id = $1 AND org_id = $2")
                .bind(person)
                .bind(scope.org_id()),
        )
        .await?
        .ok_or(StoreError::NotFound)?;
        audit(
            &mut tx,
            scope,
            "person.erasure_requested",
            &format!("person:{person}"),
            json!({}),
        )
        .await?;
        let job = insert_job::<B>(&mut tx, &job)
            .await?
            .ok_or_else(|| StoreError::Internal("the erasure job was not enqueued".into()))?;
        commit::<B>(tx).await?;
        Ok(job)
    }

    async fn erase_person(&self, scope: &TenantScope, person: PersonId) -> StoreResult<Erased> {
        let org = scope.org_id();
        let mut erased = Erased::default();
        let mut tx = self.begin().await?;
        let new = tx
            .execute(
                sql(
                    "INSERT INTO erasures (org_id, person_id, erased_at) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                )
                .bind(org)
                .bind(person)
                .bind(now()),
            )
            .await?;
        if new == 1 {
            audit(
                &mut tx,
                scope,
                "person.erased",
                &format!("person:{person}"),
                json!({ "erased": ["memory", "messages", "conversations", "leads", "ratings", "handles"] }),
            )
            .await?;
        }
        erased.facts = tx
            .execute(
                sql("DELETE FROM memory_facts WHERE org_id = $1 AND person_id = $2")
                    .bind(org)
                    .bind(person),
            )
            .await?;
        erased.keys = tx
            .execute(
                sql("DELETE FROM person_keys WHERE org_id = $1 AND person_id = $2")
                    .bind(org)
                    .bind(person),
            )
            .await?;
        // Insights keep their counts as anonymous totals; only the rows that
        // counted this person once per cell go.
        tx.execute(
            sql("DELETE FROM pattern_people WHERE org_id = $1 AND who = $2")
                .bind(org)
                .bind(person),
        )
        .await?;
        // Their exports end now; the sweep deletes them with their zips.
        tx.execute(
            sql("UPDATE exports SET expires_at = $3
                 WHERE org_id = $1 AND person_id = $2 AND expires_at > $3")
            .bind(org)
            .bind(person)
            .bind(now()),
        )
        .await?;
        commit::<B>(tx).await?;

        erased.leads = in_batches(
            self,
            "DELETE FROM leads WHERE id IN (
                SELECT id FROM leads WHERE org_id = $1 AND conversation_id IN (
                    SELECT id FROM conversations WHERE org_id = $1 AND person_id = $2)
                LIMIT $3)",
            org,
            person,
        )
        .await?;
        erased.messages = in_batches(
            self,
            "DELETE FROM messages WHERE id IN (
                SELECT id FROM messages WHERE org_id = $1 AND (person_id = $2 OR conversation_id IN (
                    SELECT id FROM conversations WHERE org_id = $1 AND person_id = $2))
                LIMIT $3)",
            org,
            person,
        )
        .await?;
        erased.conversations = in_batches(
            self,
            "DELETE FROM conversations WHERE id IN (
                SELECT id FROM conversations WHERE org_id = $1 AND person_id = $2 LIMIT $3)",
            org,
            person,
        )
        .await?;
        self.purge_deleted_words().await?;
        let mut tx = self.begin().await?;
        erased.person = tx
            .execute(
                sql("DELETE FROM people WHERE id = $1 AND org_id = $2")
                    .bind(person)
                    .bind(org),
            )
            .await?
            == 1;
        commit::<B>(tx).await?;
        Ok(erased)
    }

    async fn erasures(&self) -> StoreResult<Vec<Erasure>> {
        let found = self
            .read()
            .await?
            .fetch_all(sql(
                "SELECT org_id, person_id, erased_at FROM erasures ORDER BY erased_at, person_id",
            ))
            .await?;
        found
            .iter()
            .map(|row| {
                Ok(Erasure {
                    org_id: row.get("org_id")?,
                    person_id: row.get("person_id")?,
                    erased_at: row.get("erased_at")?,
                })
            })
            .collect()
    }
}

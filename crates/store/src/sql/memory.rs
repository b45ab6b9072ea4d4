//! [`MemoryStore`], for every backend.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use steward_domain::*;

use crate::sql::{Db, Row, SqlBackend, audit, commit, delete_in_batches, sql};
use crate::*;

/// Facts deleted per statement when an organization turns memory off, so
/// no statement holds its locks for long.
const FORGET_BATCH: u64 = 1000;
/// Conversations deleted per transaction (with all their messages).
const CONVERSATION_BATCH: u64 = 100;

/// Changes one of the organization's settings with `update` and writes the
/// audit entry `action` with `details`, unless `unchanged` says the setting
/// holds already; the organization as it is after.
async fn change_setting<B: SqlBackend>(
    store: &B,
    scope: &TenantScope,
    unchanged: impl Fn(&Organization) -> bool,
    update: crate::sql::Statement<'static>,
    (action, details): (&str, serde_json::Value),
) -> StoreResult<Organization> {
    let org = scope.org_id();
    let mut tx = store.begin().await?;
    let select = format!("SELECT * FROM organizations WHERE id = $1{}", B::FOR_UPDATE);
    let row = tx.fetch_one(sql(select).bind(org)).await?;
    let before = crate::sql::rows::organization(&row)?;
    if unchanged(&before) {
        return Ok(before);
    }
    tx.execute(update).await?;
    audit(
        &mut tx,
        scope,
        action,
        &format!("organization:{org}"),
        details,
    )
    .await?;
    let row = tx
        .fetch_one(sql("SELECT * FROM organizations WHERE id = $1").bind(org))
        .await?;
    commit::<B>(tx).await?;
    crate::sql::rows::organization(&row)
}

fn person_key(row: &impl Row) -> StoreResult<PersonKey> {
    Ok(PersonKey {
        id: row.get("id")?,
        sealed: row.get("sealed")?,
    })
}

fn fact(row: &impl Row) -> StoreResult<SealedFact> {
    Ok(SealedFact {
        id: row.get("id")?,
        key_id: row.get("key_id")?,
        sealed: row.get("sealed")?,
        source_message_id: row.get("source_message_id")?,
        created_at: row.get("created_at")?,
    })
}

#[async_trait]
impl<B: SqlBackend> MemoryStore for B {
    async fn person_keys(
        &self,
        scope: &TenantScope,
        person: PersonId,
    ) -> StoreResult<Vec<PersonKey>> {
        let found = self
            .read()
            .await?
            .fetch_all(
                sql("SELECT id, sealed FROM person_keys
                     WHERE person_id = $1 AND org_id = $2 ORDER BY created_at, id")
                .bind(person)
                .bind(scope.org_id()),
            )
            .await?;
        found.iter().map(person_key).collect()
    }

    async fn all_person_keys(&self) -> StoreResult<Vec<PersonKey>> {
        let found = self
            .read()
            .await?
            .fetch_all(sql(
                "SELECT id, sealed FROM person_keys ORDER BY created_at, id",
            ))
            .await?;
        found.iter().map(person_key).collect()
    }

    async fn replace_person_key(
        &self,
        id: PersonKeyId,
        expected: &[u8],
        sealed: &[u8],
    ) -> StoreResult<bool> {
        // The rotation goes into the audit log of the key's organization,
        // in the transaction that reseals it.
        let mut tx = self.begin().await?;
        let Some(row) = tx
            .fetch_optional(
                sql("UPDATE person_keys SET sealed = $1 WHERE id = $2 AND sealed = $3 RETURNING org_id")
                    .bind(sealed)
                    .bind(id)
                    .bind(expected),
            )
            .await?
        else {
            return Ok(false);
        };
        audit(
            &mut tx,
            &TenantScope::for_operator(row.get("org_id")?),
            PERSON_KEY_RESEALED,
            &format!("person_key:{id}"),
            json!({}),
        )
        .await?;
        commit::<B>(tx).await?;
        Ok(true)
    }

    async fn add_person_key(
        &self,
        scope: &TenantScope,
        person: PersonId,
        key: &PersonKey,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let added = tx
            .execute(
                sql(
                    "INSERT INTO person_keys (id, org_id, person_id, sealed, created_at)
                     SELECT $1, org_id, id, $3, $4 FROM people WHERE id = $2 AND org_id = $5",
                )
                .bind(key.id)
                .bind(person)
                .bind(key.sealed.as_slice())
                .bind(now())
                .bind(scope.org_id()),
            )
            .await?;
        if added == 0 {
            return Err(StoreError::NotFound);
        }
        commit::<B>(tx).await
    }

    async fn memory(&self, scope: &TenantScope, person: PersonId) -> StoreResult<Vec<SealedFact>> {
        let found = self
            .read()
            .await?
            .fetch_all(
                sql(
                    "SELECT id, key_id, sealed, source_message_id, created_at FROM memory_facts
                     WHERE person_id = $1 AND org_id = $2 ORDER BY created_at, id",
                )
                .bind(person)
                .bind(scope.org_id()),
            )
            .await?;
        found.iter().map(fact).collect()
    }

    async fn remember(
        &self,
        scope: &TenantScope,
        person: PersonId,
        source: MessageId,
        facts: &[SealedFact],
        keep: u32,
    ) -> StoreResult<bool> {
        let org = scope.org_id();
        let mut tx = self.begin().await?;
        // Shared with other extractions; turning memory off waits for them,
        // then deletes what they kept. One that starts after finds it off.
        let on: bool = tx
            .fetch_one(
                sql(format!(
                    "SELECT memory FROM organizations WHERE id = $1{}",
                    B::FOR_SHARE
                ))
                .bind(org),
            )
            .await?
            .get("memory")?;
        let done = tx
            .fetch_optional(
                sql("SELECT 1 AS one FROM memory_facts WHERE person_id = $1 AND source_message_id = $2")
                    .bind(person)
                    .bind(source),
            )
            .await?
            .is_some();
        if !on || done {
            return Ok(false);
        }
        for fact in facts {
            tx.execute(
                sql("INSERT INTO memory_facts
                        (id, org_id, person_id, key_id, sealed, source_message_id, created_at)
                     SELECT $1, org_id, person_id, id, $4, $5, $6 FROM person_keys
                     WHERE id = $2 AND person_id = $3 AND org_id = $7")
                .bind(fact.id)
                .bind(fact.key_id)
                .bind(person)
                .bind(fact.sealed.as_slice())
                .bind(source)
                .bind(fact.created_at)
                .bind(org),
            )
            .await?;
        }
        tx.execute(
            sql(
                "DELETE FROM memory_facts WHERE person_id = $1 AND id NOT IN (
                    SELECT id FROM memory_facts WHERE person_id = $1
                    ORDER BY created_at DESC, id DESC LIMIT $2)",
            )
            .bind(person)
            .bind(i64::from(keep)),
        )
        .await?;
        commit::<B>(tx).await?;
        Ok(true)
    }

    async fn forget_fact(
        &self,
        scope: &TenantScope,
        person: PersonId,
        fact: FactId,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let deleted = tx
            .execute(
                sql("DELETE FROM memory_facts WHERE id = $1 AND person_id = $2 AND org_id = $3")
                    .bind(fact)
                    .bind(person)
                    .bind(scope.org_id()),
            )
            .await?;
        if deleted == 0 {
            return Err(StoreError::NotFound);
        }
        commit::<B>(tx).await
    }

    async fn forget_memory(&self, scope: &TenantScope, person: PersonId) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let deleted = tx
            .execute(
                sql("DELETE FROM memory_facts WHERE person_id = $1 AND org_id = $2")
                    .bind(person)
                    .bind(scope.org_id()),
            )
            .await?;
        commit::<B>(tx).await?;
        Ok(deleted)
    }

    async fn set_memory(&self, scope: &TenantScope, on: bool) -> StoreResult<Organization> {
        let org = scope.org_id();
        let organization = change_setting::<B>(
            self,
            scope,
            |o| o.memory == on,
            sql("UPDATE organizations SET memory = $1 WHERE id = $2")
                .bind(on)
                .bind(org),
            ("organization.memory_changed", json!({ "memory": on })),
        )
        .await?;
        // Off: what is left is deleted, also what a call killed midway left.
        if !on {
            delete_in_batches(self, FORGET_BATCH, || {
                sql("DELETE FROM memory_facts WHERE id IN (
                        SELECT id FROM memory_facts WHERE org_id = $1 LIMIT $2)")
                .bind(org)
                .bind(FORGET_BATCH as i64)
            })
            .await?;
        }
        Ok(organization)
    }

    async fn set_retention(
        &self,
        scope: &TenantScope,
        days: Option<i32>,
    ) -> StoreResult<Organization> {
        let org = scope.org_id();
        change_setting::<B>(
            self,
            scope,
            |o| o.retention_days == days,
            sql("UPDATE organizations SET retention_days = $1 WHERE id = $2")
                .bind(days)
                .bind(org),
            (
                "organization.retention_changed",
                json!({ "retention_days": days }),
            ),
        )
        .await
    }

    async fn expire_conversations(&self, at: DateTime<Utc>) -> StoreResult<u64> {
        let keeping = self
            .read()
            .await?
            .fetch_all(sql(
                "SELECT id, retention_days FROM organizations WHERE retention_days IS NOT NULL",
            ))
            .await?;
        let mut deleted = 0;
        for row in keeping {
            let org: OrgId = row.get("id")?;
            let days: i32 = row.get("retention_days")?;
            let before = at - chrono::Duration::days(i64::from(days));
            // On PostgreSQL `last_active_at` is not indexed, so that each
            // message's rewrite of it is a HOT update (migration 0036):
            // this hourly sweep walks the organization's conversations in
            // creation order (`conversations_recent`), each batch going on
            // from where the last stopped, so that a long backlog is read
            // once, not once per batch.
            let mut after = (
                DateTime::<Utc>::UNIX_EPOCH,
                ConversationId::from_uuid(uuid::Uuid::nil()),
            );
            loop {
                let mut tx = self.begin().await?;
                let gone = tx
                    .fetch_all(
                        sql("DELETE FROM conversations WHERE id IN (
                                SELECT id FROM conversations
                                WHERE org_id = $1 AND (created_at, id) > ($3, $4)
                                  AND last_active_at < $2
                                ORDER BY created_at, id LIMIT $5)
                             RETURNING created_at, id")
                        .bind(org)
                        .bind(before)
                        .bind(after.0)
                        .bind(after.1)
                        .bind(CONVERSATION_BATCH as i64),
                    )
                    .await?;
                commit::<B>(tx).await?;
                for row in &gone {
                    after = after.max((row.get("created_at")?, row.get("id")?));
                }
                deleted += gone.len() as u64;
                if (gone.len() as u64) < CONVERSATION_BATCH {
                    break;
                }
            }
        }
        if deleted > 0 {
            self.purge_deleted_words().await?;
        }
        Ok(deleted)
    }
}

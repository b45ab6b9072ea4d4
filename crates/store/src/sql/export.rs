//! [`ExportStore`], for every backend.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use steward_domain::*;

use crate::sql::queue::insert_job;
use crate::sql::{Db, Row, SqlBackend, audit, commit, rows, sql};
use crate::*;

fn export(row: &impl Row) -> StoreResult<Export> {
    Ok(Export {
        id: row.get("id")?,
        org_id: row.get("org_id")?,
        person_id: row.get("person_id")?,
        requested_by: row.get("requested_by")?,
        state: row.get("state")?,
        blob_key: row.get("blob_key")?,
        bytes: row.get("bytes")?,
        reason: row.get("reason")?,
        created_at: row.get("created_at")?,
        expires_at: row.get("expires_at")?,
    })
}

#[async_trait]
impl<B: SqlBackend> ExportStore for B {
    async fn request_export(
        &self,
        scope: &TenantScope,
        person: PersonId,
        id: ExportId,
        expires_at: DateTime<Utc>,
        job: NewJob,
    ) -> StoreResult<(Export, Job)> {
        let org = scope.org_id();
        let mut tx = self.begin().await?;
        tx.fetch_optional(
            sql("SELECT id FROM people WHERE id = $1 AND org_id = $2")
                .bind(person)
                .bind(org),
        )
        .await?
        .ok_or(StoreError::NotFound)?;
        let row = tx
            .fetch_one(
                sql("INSERT INTO exports (id, org_id, person_id, requested_by, state, created_at, expires_at)
                     VALUES ($1, $2, $3, $4, 'pending', $5, $6) RETURNING *")
                .bind(id)
                .bind(org)
                .bind(person)
                .bind(scope.actor().to_string())
                .bind(now())
                .bind(expires_at),
            )
            .await?;
        audit(
            &mut tx,
            scope,
            "person.export_requested",
            &format!("person:{person}"),
            json!({ "export": id }),
        )
        .await?;
        let job = insert_job::<B>(&mut tx, &job)
            .await?
            .ok_or_else(|| StoreError::Internal("the export job was not enqueued".into()))?;
        commit::<B>(tx).await?;
        Ok((export(&row)?, job))
    }

    async fn export(&self, scope: &TenantScope, id: ExportId) -> StoreResult<Export> {
        let row = self
            .read()
            .await?
            .fetch_optional(
                sql("SELECT * FROM exports WHERE id = $1 AND org_id = $2")
                    .bind(id)
                    .bind(scope.org_id()),
            )
            .await?
            .ok_or(StoreError::NotFound)?;
        export(&row)
    }

    async fn finish_export(
        &self,
        scope: &TenantScope,
        id: ExportId,
        outcome: Result<(String, i64), String>,
    ) -> StoreResult<bool> {
        let (state, key, bytes, reason) = match outcome {
            Ok((key, bytes)) => (ExportState::Ready, Some(key), Some(bytes), None),
            Err(reason) => (ExportState::Failed, None, None, Some(reason)),
        };
        let updated = self
            .write()
            .await?
            .execute(
                sql(
                    "UPDATE exports SET state = $1, blob_key = $2, bytes = $3, reason = $4
                     WHERE id = $5 AND org_id = $6 AND state = 'pending'",
                )
                .bind(state)
                .bind(key.as_deref())
                .bind(bytes)
                .bind(reason.as_deref())
                .bind(id)
                .bind(scope.org_id()),
            )
            .await?;
        Ok(updated == 1)
    }

    async fn expired_exports(&self, at: DateTime<Utc>) -> StoreResult<Vec<Export>> {
        let found = self
            .read()
            .await?
            .fetch_all(
                sql("SELECT * FROM exports WHERE expires_at <= $1 ORDER BY expires_at LIMIT 1000")
                    .bind(at),
            )
            .await?;
        found.iter().map(export).collect()
    }

    async fn delete_export(&self, id: ExportId) -> StoreResult<()> {
        self.write()
            .await?
            .execute(sql("DELETE FROM exports WHERE id = $1").bind(id))
            .await?;
        Ok(())
    }

    async fn person_messages(
        &self,
        scope: &TenantScope,
        person: PersonId,
        after: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<Message>> {
        // The smallest id: every message comes after it.
        let after = after.unwrap_or_else(|| MessageId::from(uuid::Uuid::nil()));
        let found = self
            .read()
            .await?
            .fetch_all(
                sql(concat!(
                    select_message!(),
                    " FROM messages WHERE org_id = $1 AND id > $3
                       AND (person_id = $2 OR conversation_id IN (
                            SELECT id FROM conversations WHERE org_id = $1 AND person_id = $2))
                     ORDER BY id LIMIT $4"
                ))
                .bind(scope.org_id())
                .bind(person)
                .bind(after)
                .bind(i64::from(limit)),
            )
            .await?;
        found.iter().map(rows::message).collect()
    }

    async fn person_record(
        &self,
        scope: &TenantScope,
        person: PersonId,
    ) -> StoreResult<PersonRecord> {
        let org = scope.org_id();
        let mut db = self.read().await?;
        let ratings = db
            .fetch_all(
                sql(
                    "SELECT message_id, rating, comment, created_at FROM feedback
                     WHERE org_id = $1 AND person_id = $2 ORDER BY created_at, message_id",
                )
                .bind(org)
                .bind(person),
            )
            .await?
            .iter()
            .map(|row| {
                Ok(RatingGiven {
                    message_id: row.get("message_id")?,
                    rating: row.get("rating")?,
                    comment: row.get("comment")?,
                    created_at: row.get("created_at")?,
                })
            })
            .collect::<StoreResult<_>>()?;
        let leads = db
            .fetch_all(
                sql(
                    "SELECT * FROM leads WHERE org_id = $1 AND conversation_id IN (
                        SELECT id FROM conversations WHERE org_id = $1 AND person_id = $2)
                     ORDER BY created_at, id",
                )
                .bind(org)
                .bind(person),
            )
            .await?
            .iter()
            .map(rows::lead)
            .collect::<StoreResult<_>>()?;
        let skill_loads = db
            .fetch_all(
                sql("SELECT s.name, s.version, a.conversation_id, a.created_at
                     FROM skill_activations a JOIN skills s ON s.id = a.skill_id
                     WHERE a.org_id = $1 AND a.person_id = $2 ORDER BY a.created_at, a.tool_call_id")
                .bind(org)
                .bind(person),
            )
            .await?
            .iter()
            .map(|row| {
                Ok(SkillLoad {
                    skill: row.get("name")?,
                    version: row.get("version")?,
                    conversation_id: row.get("conversation_id")?,
                    created_at: row.get("created_at")?,
                })
            })
            .collect::<StoreResult<_>>()?;
        Ok(PersonRecord {
            ratings,
            leads,
            skill_loads,
        })
    }
}

//! [`ToolJournal`], [`LeadStore`], [`HandOffStore`] and [`ToolServerStore`],
//! for every backend.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use steward_domain::{ConversationId, JobId, LeadId, ToolCallId, ToolCallStatus, ToolServerId};

use crate::sql::{Db, Row, SqlBackend, audit, commit, commit_with, insert_job, rows, sql};
use crate::*;

#[async_trait]
impl<B: SqlBackend> ToolJournal for B {
    async fn journal_tool_call(
        &self,
        scope: &TenantScope,
        call: &NewToolCall,
    ) -> StoreResult<ToolCallRecord> {
        let mut db = self.write().await?;
        db.execute(
            sql("INSERT INTO tool_calls (id, org_id, conversation_id, job_id, reply_id, step, position,
                     step_text, call_id, server, tool, input, status, started_at)
                 SELECT $1, $2, id, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'started', $13
                 FROM conversations WHERE id = $3 AND org_id = $2
                 ON CONFLICT (job_id, step, position) DO NOTHING")
            .bind(call.id)
            .bind(scope.org_id())
            .bind(call.conversation_id)
            .bind(call.job_id)
            .bind(call.reply_id)
            .bind(call.step)
            .bind(call.position)
            .bind(call.step_text.as_str())
            .bind(call.call_id.as_str())
            .bind(call.server.as_str())
            .bind(call.tool.as_str())
            .bind(call.input.as_str())
            .bind(now()),
        )
        .await?;
        let row = db
            .fetch_optional(
                sql("SELECT * FROM tool_calls
                     WHERE job_id = $1 AND step = $2 AND position = $3 AND org_id = $4")
                .bind(call.job_id)
                .bind(call.step)
                .bind(call.position)
                .bind(scope.org_id()),
            )
            .await?
            .ok_or(StoreError::NotFound)?;
        rows::tool_call(&row)
    }

    async fn finish_tool_call(
        &self,
        scope: &TenantScope,
        id: ToolCallId,
        status: ToolCallStatus,
        result: &str,
    ) -> StoreResult<()> {
        self.write()
            .await?
            .execute(
                sql(
                    "UPDATE tool_calls SET status = $1, result = $2, finished_at = $3
                     WHERE id = $4 AND org_id = $5 AND status = 'started'",
                )
                .bind(status)
                .bind(result)
                .bind(now())
                .bind(id)
                .bind(scope.org_id()),
            )
            .await?;
        Ok(())
    }

    async fn job_tool_calls(
        &self,
        scope: &TenantScope,
        job: JobId,
    ) -> StoreResult<Vec<ToolCallRecord>> {
        self.read()
            .await?
            .fetch_all(
                sql("SELECT * FROM tool_calls WHERE job_id = $1 AND org_id = $2
                     ORDER BY step, position")
                .bind(job)
                .bind(scope.org_id()),
            )
            .await?
            .iter()
            .map(rows::tool_call)
            .collect()
    }
}

#[async_trait]
impl<B: SqlBackend> LeadStore for B {
    async fn record_lead(
        &self,
        scope: &TenantScope,
        lead: &NewLead,
        announce: &[NewJob],
    ) -> StoreResult<Lead> {
        let mut tx = self.begin().await?;
        let recorded = tx
            .execute(
                sql(
                    "INSERT INTO leads (id, org_id, chatbot_id, conversation_id, tool_call_id, name,
                         email, phone, company, note, created_at)
                     SELECT $1, $2, chatbot_id, id, $4, $5, $6, $7, $8, $9, $10
                     FROM conversations WHERE id = $3 AND org_id = $2 AND chatbot_id = $11
                     ON CONFLICT (tool_call_id) DO NOTHING",
                )
                .bind(LeadId::new())
                .bind(scope.org_id())
                .bind(lead.conversation_id)
                .bind(lead.tool_call_id)
                .bind(lead.name.as_str())
                .bind(lead.email.as_deref())
                .bind(lead.phone.as_deref())
                .bind(lead.company.as_deref())
                .bind(lead.note.as_deref())
                .bind(now())
                .bind(lead.chatbot_id),
            )
            .await?;
        let row = tx
            .fetch_optional(
                sql("SELECT * FROM leads WHERE tool_call_id = $1 AND org_id = $2")
                    .bind(lead.tool_call_id)
                    .bind(scope.org_id()),
            )
            .await?
            .ok_or(StoreError::NotFound)?;
        // Announced with the lead, once: a lead recorded before was then.
        if recorded == 1 {
            announce_in::<B>(&mut tx, scope, announce).await?;
        }
        let lead = rows::lead(&row)?;
        commit::<B>(tx).await?;
        Ok(lead)
    }

    async fn leads(
        &self,
        scope: &TenantScope,
        limit: u32,
        offset: u64,
    ) -> StoreResult<(Vec<Lead>, u64)> {
        let mut db = self.read().await?;
        let found = db
            .fetch_all(
                sql("SELECT * FROM leads WHERE org_id = $1
                     ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3")
                .bind(scope.org_id())
                .bind(i64::from(limit))
                .bind(i64::try_from(offset).unwrap_or(i64::MAX)),
            )
            .await?;
        let total: i64 = db
            .fetch_one(
                sql("SELECT count(*) AS total FROM leads WHERE org_id = $1").bind(scope.org_id()),
            )
            .await?
            .get("total")?;
        let leads = found.iter().map(rows::lead).collect::<StoreResult<_>>()?;
        Ok((leads, total as u64))
    }
}

/// A server's last error is kept for the admin to read, cut to this.
const MAX_ERROR_CHARS: usize = 500;

#[async_trait]
impl<B: SqlBackend> ToolServerStore for B {
    async fn create_tool_server(
        &self,
        scope: &TenantScope,
        server: NewToolServer,
    ) -> StoreResult<ToolServer> {
        let allowed = server
            .allowed_tools
            .as_ref()
            .map(|tools| serde_json::Value::from(tools.clone()));
        let mut tx = self.begin().await?;
        let row = tx
            .fetch_one(
                sql(
                    "INSERT INTO tool_servers (id, org_id, name, url, sealed_headers, timeout_secs,
                         allowed_tools, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
                )
                .bind(server.id)
                .bind(scope.org_id())
                .bind(server.name.as_str())
                .bind(server.url.as_str())
                .bind(server.sealed_headers.as_slice())
                .bind(server.timeout_secs)
                .bind(allowed.as_ref())
                .bind(now()),
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => StoreError::Conflict(Conflict::ToolServerNameTaken),
                other => other,
            })?;
        let created = rows::tool_server(&row)?;
        audit(
            &mut tx,
            scope,
            "tool_server.create",
            &format!("tool_server:{}", created.id),
            json!({ "name": created.name, "url": created.url }),
        )
        .await?;
        commit_with::<B>(tx, &created).await?;
        Ok(created)
    }

    async fn tool_servers(&self, scope: &TenantScope) -> StoreResult<Vec<ToolServer>> {
        let found = self
            .read()
            .await?
            .fetch_all(
                sql("SELECT * FROM tool_servers WHERE org_id = $1 ORDER BY name")
                    .bind(scope.org_id()),
            )
            .await?;
        found.iter().map(rows::tool_server).collect()
    }

    async fn tool_server(&self, scope: &TenantScope, id: ToolServerId) -> StoreResult<ToolServer> {
        let row = self
            .read()
            .await?
            .fetch_one(
                sql("SELECT * FROM tool_servers WHERE id = $1 AND org_id = $2")
                    .bind(id)
                    .bind(scope.org_id()),
            )
            .await?;
        rows::tool_server(&row)
    }

    async fn delete_tool_server(&self, scope: &TenantScope, id: ToolServerId) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let deleted = tx
            .execute(
                sql("DELETE FROM tool_servers WHERE id = $1 AND org_id = $2")
                    .bind(id)
                    .bind(scope.org_id()),
            )
            .await?;
        if deleted == 0 {
            return Err(StoreError::NotFound);
        }
        audit(
            &mut tx,
            scope,
            "tool_server.delete",
            &format!("tool_server:{id}"),
            json!({}),
        )
        .await?;
        commit::<B>(tx).await
    }

    async fn all_tool_servers(&self) -> StoreResult<Vec<ToolServer>> {
        let found = self
            .read()
            .await?
            .fetch_all(sql("SELECT * FROM tool_servers ORDER BY created_at, id"))
            .await?;
        found.iter().map(rows::tool_server).collect()
    }

    async fn replace_tool_server_headers(
        &self,
        id: ToolServerId,
        expected: &[u8],
        sealed: &[u8],
    ) -> StoreResult<bool> {
        crate::sql::replace_sealed(
            self,
            ("tool_servers", "id", "sealed_headers"),
            id.into(),
            expected,
            sealed,
        )
        .await
    }

    async fn record_tool_server_health(
        &self,
        scope: &TenantScope,
        id: ToolServerId,
        error: Option<&str>,
    ) -> StoreResult<()> {
        let statement = match error {
            None => sql("UPDATE tool_servers SET last_ok_at = $1 WHERE id = $2 AND org_id = $3")
                .bind(now())
                .bind(id)
                .bind(scope.org_id()),
            Some(error) => {
                let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
                sql("UPDATE tool_servers SET last_error = $1, last_error_at = $2
                     WHERE id = $3 AND org_id = $4")
                .bind(error)
                .bind(now())
                .bind(id)
                .bind(scope.org_id())
            }
        };
        self.write().await?.execute(statement).await?;
        Ok(())
    }
}

#[async_trait]
impl<B: SqlBackend> HandOffStore for B {
    async fn hand_off(
        &self,
        scope: &TenantScope,
        conversation: ConversationId,
        announce: &[NewJob],
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let handed = tx
            .execute(
                sql("UPDATE conversations SET handed_off_at = $1
                     WHERE id = $2 AND org_id = $3 AND handed_off_at IS NULL")
                .bind(now())
                .bind(conversation)
                .bind(scope.org_id()),
            )
            .await?;
        tx.fetch_one(
            sql("SELECT 1 AS one FROM conversations WHERE id = $1 AND org_id = $2")
                .bind(conversation)
                .bind(scope.org_id()),
        )
        .await?;
        // Announced as it is handed off: one already waiting was then.
        if handed == 1 {
            announce_in::<B>(&mut tx, scope, announce).await?;
        }
        commit::<B>(tx).await
    }

    async fn hand_back(
        &self,
        scope: &TenantScope,
        conversation: ConversationId,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let found = tx
            .execute(
                sql("UPDATE conversations SET handed_off_at = NULL WHERE id = $1 AND org_id = $2")
                    .bind(conversation)
                    .bind(scope.org_id()),
            )
            .await?;
        if found == 0 {
            return Err(StoreError::NotFound);
        }
        audit(
            &mut tx,
            scope,
            "conversation.release",
            &format!("conversation:{conversation}"),
            json!({}),
        )
        .await?;
        commit::<B>(tx).await
    }

    async fn handed_off_at(
        &self,
        scope: &TenantScope,
        conversation: ConversationId,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        self.read()
            .await?
            .fetch_one(
                sql("SELECT handed_off_at FROM conversations WHERE id = $1 AND org_id = $2")
                    .bind(conversation)
                    .bind(scope.org_id()),
            )
            .await?
            .get("handed_off_at")
    }
}

/// Enqueues the jobs that tell of an effect, in the effect's transaction, as
/// the organization's.
async fn announce_in<B: SqlBackend>(
    tx: &mut B::Tx,
    scope: &TenantScope,
    announce: &[NewJob],
) -> StoreResult<()> {
    for job in announce {
        insert_job::<B>(tx, &job.clone().for_org(scope.org_id())).await?;
    }
    Ok(())
}

//! Rows as records, for every backend.

use crate::sql::Row;
use crate::*;

pub fn channel(row: &impl Row) -> StoreResult<Channel> {
    Ok(Channel {
        id: row.get("id")?,
        org_id: row.get("org_id")?,
        chatbot_id: row.get("chatbot_id")?,
        kind: row.get("kind")?,
        name: row.get("name")?,
        settings: row.get("settings")?,
        sealed_secrets: row.get("secrets")?,
        cursor: row.get("cursor")?,
        created_at: row.get("created_at")?,
        health: ChannelHealth {
            last_inbound_at: row.get("last_inbound_at")?,
            last_outbound_at: row.get("last_outbound_at")?,
            last_error: row.get("last_error")?,
            last_error_at: row.get("last_error_at")?,
            error_window_at: row.get("error_window_at")?,
            error_window_count: row.get("error_window_count")?,
        },
    })
}

pub fn document(row: &impl Row) -> StoreResult<Document> {
    Ok(Document {
        id: row.get("id")?,
        org_id: row.get("org_id")?,
        chatbot_id: row.get("chatbot_id")?,
        source: row.get("source")?,
        label: row.get("label")?,
        url: row.get("url")?,
        blob_key: row.get("blob_key")?,
        bytes: row.get("bytes")?,
        content_type: row.get("content_type")?,
        content_hash: row.get("content_hash")?,
        status: row.get("status")?,
        error: row.get("error")?,
        chunk_count: row.get("chunk_count")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}

pub fn crawl(row: &impl Row) -> StoreResult<Crawl> {
    Ok(Crawl {
        id: row.get("id")?,
        org_id: row.get("org_id")?,
        chatbot_id: row.get("chatbot_id")?,
        root_url: row.get("root_url")?,
        max_pages: row.get("max_pages")?,
        max_depth: row.get("max_depth")?,
        status: row.get("status")?,
        progress: CrawlProgress {
            pages_done: row.get("pages_done")?,
            pages_failed: row.get("pages_failed")?,
            pages_queued: row.get("pages_queued")?,
            bytes: row.get("bytes")?,
            note: row.get("note")?,
        },
        state: row.get("state")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}

pub fn chunk_hit(row: &impl Row) -> StoreResult<ChunkHit> {
    Ok(ChunkHit {
        document_id: row.get("document_id")?,
        ordinal: row.get("ordinal")?,
        label: row.get("label")?,
        url: row.get("url")?,
        heading: row.get("heading")?,
        text: row.get("text")?,
        score: row.get("score")?,
    })
}

pub fn organization(row: &impl Row) -> StoreResult<Organization> {
    Ok(Organization {
        id: row.get("id")?,
        name: row.get("name")?,
        tier: row.get("tier")?,
        memory: row.get("memory")?,
        retention_days: row.get("retention_days")?,
        created_at: row.get("created_at")?,
    })
}

pub fn user(row: &impl Row) -> StoreResult<User> {
    Ok(User {
        id: row.get("id")?,
        org_id: row.get("org_id")?,
        email: row.get("email")?,
        name: row.get("name")?,
        role: row.get("role")?,
        created_at: row.get("created_at")?,
        must_change_password: row.get("must_change_password")?,
        session_generation: row.get("session_generation")?,
    })
}

pub fn api_key(row: &impl Row) -> StoreResult<ApiKey> {
    Ok(ApiKey {
        id: row.get("id")?,
        org_id: row.get("org_id")?,
        name: row.get("name")?,
        prefix: row.get("prefix")?,
        role: row.get("role")?,
        created_by: row.get("created_by")?,
        created_at: row.get("created_at")?,
        revoked_at: row.get("revoked_at")?,
    })
}

pub fn chatbot(row: &impl Row) -> StoreResult<Chatbot> {
    Ok(Chatbot {
        id: row.get("id")?,
        org_id: row.get("org_id")?,
        name: row.get("name")?,
        system_prompt: row.get("system_prompt")?,
        temperature: row.get("temperature")?,
        model: row.get("model")?,
        status: row.get("status")?,
        tools: serde_json::from_value(row.get("tools")?)
            .map_err(|e| StoreError::Internal(format!("chatbots.tools: {e}")))?,
        skills: serde_json::from_value(row.get("skills")?)
            .map_err(|e| StoreError::Internal(format!("chatbots.skills: {e}")))?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}

pub fn message(row: &impl Row) -> StoreResult<Message> {
    Ok(Message {
        id: row.get("id")?,
        org_id: row.get("org_id")?,
        chatbot_id: row.get("chatbot_id")?,
        conversation_id: row.get("conversation_id")?,
        role: row.get("role")?,
        text: row.get("text")?,
        channel: row.get("channel")?,
        external_id: row.get("external_id")?,
        answers: row.get("answers")?,
        channel_id: row.get("channel_id")?,
        meta: row.get("meta")?,
        forwarded: row.get("forwarded")?,
        person_id: row.get("person_id")?,
        created_at: row.get("created_at")?,
    })
}

pub fn person_identity(row: &impl Row) -> StoreResult<PersonIdentity> {
    Ok(PersonIdentity {
        identity: steward_domain::Identity {
            kind: row.get("kind")?,
            handle: row.get("handle")?,
        },
        created_at: row.get("created_at")?,
    })
}

pub fn conversation_summary(row: &impl Row) -> StoreResult<ConversationSummary> {
    Ok(ConversationSummary {
        id: row.get("id")?,
        chatbot_id: row.get("chatbot_id")?,
        channel: row.get("channel")?,
        person_id: row.get("person_id")?,
        created_at: row.get("created_at")?,
        handed_off_at: row.get("handed_off_at")?,
        messages: row.get("messages")?,
        last_at: row.get("last_at")?,
        last_role: row.get("last_role")?,
        last_text: row.get("last_text")?,
    })
}

pub fn integration_state(row: &impl Row) -> StoreResult<IntegrationState> {
    let config: Option<serde_json::Value> = row.get("config")?;
    Ok(IntegrationState {
        integration: Integration {
            id: row.get("id")?,
            name: row.get("name")?,
            description: row.get("description")?,
        },
        enabled: config.is_some(),
        config,
        enabled_at: row.get("enabled_at")?,
    })
}

pub fn audit(row: &impl Row) -> StoreResult<AuditEntry> {
    Ok(AuditEntry {
        id: row.get("id")?,
        org_id: row.get("org_id")?,
        actor: row.get("actor")?,
        action: row.get("action")?,
        target: row.get("target")?,
        details: row.get("details")?,
        created_at: row.get("created_at")?,
    })
}

pub fn stored_claim(row: &impl Row) -> StoreResult<StoredClaim> {
    let status: Option<i64> = row.get("status")?;
    let response = match status {
        None => None,
        Some(status) => Some(StoredResponse {
            status: u16::try_from(status).map_err(|e| StoreError::Internal(e.to_string()))?,
            content_type: row.get("content_type")?,
            body: row.get::<Option<Vec<u8>>>("body")?.unwrap_or_default(),
        }),
    };
    Ok(StoredClaim {
        request_hash: row.get("request_hash")?,
        response,
        took_effect: row.get("took_effect")?,
        created_at: row.get("created_at")?,
    })
}

pub fn job(row: &impl Row) -> StoreResult<Job> {
    Ok(Job {
        id: row.get("id")?,
        org_id: row.get("org_id")?,
        kind: row.get("kind")?,
        payload: row.get("payload")?,
        state: row.get("state")?,
        priority: row.get("priority")?,
        run_at: row.get("run_at")?,
        attempts: row.get("attempts")?,
        max_attempts: row.get("max_attempts")?,
        lease_until: row.get("lease_until")?,
        locked_by: row.get("locked_by")?,
        last_error: row.get("last_error")?,
        ordering_key: row.get("ordering_key")?,
        dedupe_key: row.get("dedupe_key")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}

pub fn tool_call(row: &impl Row) -> StoreResult<ToolCallRecord> {
    Ok(ToolCallRecord {
        id: row.get("id")?,
        org_id: row.get("org_id")?,
        conversation_id: row.get("conversation_id")?,
        job_id: row.get("job_id")?,
        reply_id: row.get("reply_id")?,
        step: row.get("step")?,
        position: row.get("position")?,
        step_text: row.get("step_text")?,
        call_id: row.get("call_id")?,
        server: row.get("server")?,
        tool: row.get("tool")?,
        input: row.get("input")?,
        status: row.get("status")?,
        result: row.get("result")?,
        started_at: row.get("started_at")?,
        finished_at: row.get("finished_at")?,
    })
}

pub fn lead(row: &impl Row) -> StoreResult<Lead> {
    Ok(Lead {
        id: row.get("id")?,
        org_id: row.get("org_id")?,
        chatbot_id: row.get("chatbot_id")?,
        conversation_id: row.get("conversation_id")?,
        name: row.get("name")?,
        email: row.get("email")?,
        phone: row.get("phone")?,
        company: row.get("company")?,
        note: row.get("note")?,
        created_at: row.get("created_at")?,
    })
}

pub fn tool_server(row: &impl Row) -> StoreResult<ToolServer> {
    let allowed: Option<serde_json::Value> = row.get("allowed_tools")?;
    Ok(ToolServer {
        id: row.get("id")?,
        org_id: row.get("org_id")?,
        name: row.get("name")?,
        url: row.get("url")?,
        sealed_headers: row.get("sealed_headers")?,
        timeout_secs: row.get("timeout_secs")?,
        allowed_tools: allowed
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| StoreError::Internal(format!("tool_servers.allowed_tools: {e}")))?,
        created_at: row.get("created_at")?,
        last_ok_at: row.get("last_ok_at")?,
        last_error: row.get("last_error")?,
        last_error_at: row.get("last_error_at")?,
    })
}

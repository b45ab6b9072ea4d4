//! Row → record mapping for SQLite.

use std::str::FromStr;

use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use steward_store::*;
use uuid::Uuid;

use crate::{from_micros, map_err};

fn get<'r, T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>>(
    row: &'r SqliteRow,
    col: &str,
) -> StoreResult<T> {
    row.try_get(col).map_err(map_err)
}

fn parsed<T: FromStr<Err = String>>(row: &SqliteRow, col: &str) -> StoreResult<T> {
    get::<String>(row, col)?
        .parse()
        .map_err(StoreError::Internal)
}

fn id<T: From<Uuid>>(row: &SqliteRow, col: &str) -> StoreResult<T> {
    Ok(get::<Uuid>(row, col)?.into())
}

fn time(row: &SqliteRow, col: &str) -> StoreResult<chrono::DateTime<chrono::Utc>> {
    from_micros(get(row, col)?)
}

fn json(row: &SqliteRow, col: &str) -> StoreResult<serde_json::Value> {
    serde_json::from_str(&get::<String>(row, col)?).map_err(|e| StoreError::Internal(e.to_string()))
}

fn json_opt(row: &SqliteRow, col: &str) -> StoreResult<Option<serde_json::Value>> {
    get::<Option<String>>(row, col)?
        .map(|text| serde_json::from_str(&text).map_err(|e| StoreError::Internal(e.to_string())))
        .transpose()
}

fn time_opt(row: &SqliteRow, col: &str) -> StoreResult<Option<chrono::DateTime<chrono::Utc>>> {
    get::<Option<i64>>(row, col)?.map(from_micros).transpose()
}

pub fn channel(row: &SqliteRow) -> StoreResult<Channel> {
    Ok(Channel {
        id: id(row, "id")?,
        org_id: id(row, "org_id")?,
        chatbot_id: id(row, "chatbot_id")?,
        kind: parsed(row, "kind")?,
        name: get(row, "name")?,
        settings: json(row, "settings")?,
        sealed_secrets: get(row, "secrets")?,
        cursor: json_opt(row, "cursor")?,
        created_at: time(row, "created_at")?,
        health: ChannelHealth {
            last_inbound_at: time_opt(row, "last_inbound_at")?,
            last_outbound_at: time_opt(row, "last_outbound_at")?,
            last_error: get(row, "last_error")?,
            last_error_at: time_opt(row, "last_error_at")?,
            error_window_at: time_opt(row, "error_window_at")?,
            error_window_count: get(row, "error_window_count")?,
        },
    })
}

pub fn document(row: &SqliteRow) -> StoreResult<Document> {
    Ok(Document {
        id: id(row, "id")?,
        org_id: id(row, "org_id")?,
        chatbot_id: get::<Option<Uuid>>(row, "chatbot_id")?.map(Into::into),
        source: parsed(row, "source")?,
        label: get(row, "label")?,
        url: get(row, "url")?,
        blob_key: get(row, "blob_key")?,
        bytes: get(row, "bytes")?,
        content_type: get(row, "content_type")?,
        content_hash: get(row, "content_hash")?,
        status: parsed(row, "status")?,
        error: get(row, "error")?,
        chunk_count: get(row, "chunk_count")?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

pub fn crawl(row: &SqliteRow) -> StoreResult<Crawl> {
    Ok(Crawl {
        id: id(row, "id")?,
        org_id: id(row, "org_id")?,
        chatbot_id: id(row, "chatbot_id")?,
        root_url: get(row, "root_url")?,
        max_pages: get(row, "max_pages")?,
        max_depth: get(row, "max_depth")?,
        status: parsed(row, "status")?,
        progress: CrawlProgress {
            pages_done: get(row, "pages_done")?,
            pages_failed: get(row, "pages_failed")?,
            pages_queued: get(row, "pages_queued")?,
            bytes: get(row, "bytes")?,
            note: get(row, "note")?,
        },
        state: json(row, "state")?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

pub fn chunk_hit(row: &SqliteRow) -> StoreResult<ChunkHit> {
    Ok(ChunkHit {
        document_id: id(row, "document_id")?,
        ordinal: get(row, "ordinal")?,
        label: get(row, "label")?,
        url: get(row, "url")?,
        heading: get(row, "heading")?,
        text: get(row, "text")?,
        score: get(row, "score")?,
    })
}

pub fn organization(row: &SqliteRow) -> StoreResult<Organization> {
    Ok(Organization {
        id: id(row, "id")?,
        name: get(row, "name")?,
        tier: parsed(row, "tier")?,
        created_at: time(row, "created_at")?,
    })
}

pub fn user(row: &SqliteRow) -> StoreResult<User> {
    Ok(User {
        id: id(row, "id")?,
        org_id: id(row, "org_id")?,
        email: get(row, "email")?,
        name: get(row, "name")?,
        role: parsed(row, "role")?,
        created_at: time(row, "created_at")?,
    })
}

pub fn api_key(row: &SqliteRow) -> StoreResult<ApiKey> {
    Ok(ApiKey {
        id: id(row, "id")?,
        org_id: id(row, "org_id")?,
        name: get(row, "name")?,
        prefix: get(row, "prefix")?,
        role: parsed(row, "role")?,
        created_by: get::<Option<Uuid>>(row, "created_by")?.map(Into::into),
        created_at: time(row, "created_at")?,
        revoked_at: get::<Option<i64>>(row, "revoked_at")?
            .map(from_micros)
            .transpose()?,
    })
}

pub fn chatbot(row: &SqliteRow) -> StoreResult<Chatbot> {
    Ok(Chatbot {
        id: id(row, "id")?,
        org_id: id(row, "org_id")?,
        name: get(row, "name")?,
        system_prompt: get(row, "system_prompt")?,
        temperature: get(row, "temperature")?,
        model: get(row, "model")?,
        status: parsed(row, "status")?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

pub fn message(row: &SqliteRow) -> StoreResult<Message> {
    Ok(Message {
        id: id(row, "id")?,
        org_id: id(row, "org_id")?,
        chatbot_id: id(row, "chatbot_id")?,
        conversation_id: id(row, "conversation_id")?,
        role: parsed(row, "role")?,
        text: get(row, "text")?,
        channel: get(row, "channel")?,
        external_id: get(row, "external_id")?,
        answers: get::<Option<Uuid>>(row, "answers")?.map(Into::into),
        channel_id: get::<Option<Uuid>>(row, "channel_id")?.map(Into::into),
        meta: json_opt(row, "meta")?,
        created_at: time(row, "created_at")?,
    })
}

pub fn integration_state(row: &SqliteRow) -> StoreResult<IntegrationState> {
    let config: Option<String> = get(row, "config")?;
    Ok(IntegrationState {
        integration: Integration {
            id: get(row, "id")?,
            name: get(row, "name")?,
            description: get(row, "description")?,
        },
        enabled: config.is_some(),
        config: config
            .map(|c| serde_json::from_str(&c))
            .transpose()
            .map_err(|e| StoreError::Internal(e.to_string()))?,
        enabled_at: get::<Option<i64>>(row, "enabled_at")?
            .map(from_micros)
            .transpose()?,
    })
}

pub fn audit(row: &SqliteRow) -> StoreResult<AuditEntry> {
    Ok(AuditEntry {
        id: id(row, "id")?,
        org_id: id(row, "org_id")?,
        actor: get(row, "actor")?,
        action: get(row, "action")?,
        target: get(row, "target")?,
        details: json(row, "details")?,
        created_at: time(row, "created_at")?,
    })
}

pub fn stored_claim(row: &SqliteRow) -> StoreResult<StoredClaim> {
    let status: Option<i64> = get(row, "status")?;
    let response = match status {
        None => None,
        Some(status) => Some(StoredResponse {
            status: u16::try_from(status).map_err(|e| StoreError::Internal(e.to_string()))?,
            content_type: get(row, "content_type")?,
            body: get::<Option<Vec<u8>>>(row, "body")?.unwrap_or_default(),
        }),
    };
    Ok(StoredClaim {
        request_hash: get(row, "request_hash")?,
        response,
        took_effect: get::<i64>(row, "took_effect")? != 0,
        created_at: time(row, "created_at")?,
    })
}

pub fn job(row: &SqliteRow) -> StoreResult<Job> {
    Ok(Job {
        id: id(row, "id")?,
        org_id: get::<Option<Uuid>>(row, "org_id")?.map(Into::into),
        kind: parsed(row, "kind")?,
        payload: json(row, "payload")?,
        state: parsed(row, "state")?,
        priority: get(row, "priority")?,
        run_at: time(row, "run_at")?,
        attempts: get(row, "attempts")?,
        max_attempts: get(row, "max_attempts")?,
        lease_until: get::<Option<i64>>(row, "lease_until")?
            .map(from_micros)
            .transpose()?,
        locked_by: get(row, "locked_by")?,
        last_error: get(row, "last_error")?,
        ordering_key: get(row, "ordering_key")?,
        dedupe_key: get(row, "dedupe_key")?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

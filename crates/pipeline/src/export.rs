//! The `export` job: everything Steward holds about a person, as a zip of
//! `person.json` and a readable `person.html`, kept in the blob store for a
//! day; and the sweep (an `export` job naming no export) that deletes every
//! export whose day is over, its zip first.
//!
//! Once: the zip is written under the export's own key, so a retried job
//! writes the same file again; the export is marked ready only while it is
//! still pending, and a job that finds it gone (swept, or its person
//! erased) deletes the zip it wrote.

use std::io::Write;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use steward_domain::ExportState;
use steward_domain::jobs::ExportArgs;
use steward_jobs::{JobError, JobHandler};
use steward_knowledge::Blobs;
use steward_store::{Export, Job, Store, StoreError, TenantScope};
use steward_tools::memory::Memory;

/// Messages read per query while an export is written.
const PAGE: u32 = 1000;

pub struct Exports {
    pub store: Arc<dyn Store>,
    pub blobs: Blobs,
    pub memory: Memory,
}

/// Where an export's zip is kept.
pub fn blob_key(export: &Export) -> String {
    format!(
        "{}{}/{}.zip",
        steward_knowledge::EXPORTS_PREFIX,
        export.org_id,
        export.id
    )
}

impl Exports {
    async fn write(
        &self,
        scope: &TenantScope,
        id: steward_domain::ExportId,
    ) -> Result<(), JobError> {
        let export = match self.store.export(scope, id).await {
            Ok(export) => export,
            Err(StoreError::NotFound) => return Ok(()), // swept already
            Err(e) => return Err(e.into()),
        };
        if export.state != ExportState::Pending || export.expires_at <= steward_store::now() {
            return Ok(());
        }
        let gathered = match self.gather(scope, &export).await {
            Ok(gathered) => gathered,
            Err(StoreError::NotFound) => {
                let reason = "the person is no longer there (erased, or merged into another)";
                self.store
                    .finish_export(scope, id, Err(reason.into()))
                    .await?;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let zip =
            zipped(&gathered).map_err(|e| JobError::Permanent(format!("writing the zip: {e}")))?;
        let key = blob_key(&export);
        let bytes = i64::try_from(zip.len()).unwrap_or(i64::MAX);
        self.blobs
            .put(&key, zip.into())
            .await
            .map_err(|e| JobError::Retryable(e.to_string()))?;
        if !self
            .store
            .finish_export(scope, id, Ok((key.clone(), bytes)))
            .await?
        {
            // Swept or ended meanwhile: the zip must not outlive it.
            self.blobs
                .delete(&key)
                .await
                .map_err(|e| JobError::Retryable(e.to_string()))?;
        }
        Ok(())
    }

    /// Everything about the export's person, as `person.json` holds it.
    async fn gather(&self, scope: &TenantScope, export: &Export) -> Result<Value, StoreError> {
        let person = self.store.person(scope, export.person_id).await?;
        let mut messages = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .person_messages(scope, person.id, after, PAGE)
                .await?;
            after = page.last().map(|m| m.id);
            let done = page.len() < PAGE as usize;
            messages.extend(page.into_iter().map(|m| {
                json!({
                    "id": m.id, "conversation_id": m.conversation_id, "chatbot_id": m.chatbot_id,
                    "from": if m.person_id == Some(person.id) { "person" } else if m.role == steward_domain::MessageRole::Assistant { "assistant" } else { "someone else" },
                    "channel": m.channel, "text": m.text, "created_at": m.created_at,
                })
            }));
            if done {
                break;
            }
        }
        let memory: Vec<Value> = self
            .memory
            .facts(scope, person.id)
            .await?
            .into_iter()
            .map(|f| json!({ "fact": f.text, "learnt_at": f.created_at }))
            .collect();
        let record = self.store.person_record(scope, person.id).await?;
        let leads: Vec<Value> = record
            .leads
            .iter()
            .map(|l| {
                json!({
                    "name": l.name, "email": l.email, "phone": l.phone, "company": l.company,
                    "note": l.note, "conversation_id": l.conversation_id, "created_at": l.created_at,
                })
            })
            .collect();
        Ok(json!({
            "export": { "id": export.id, "made_at": steward_store::now(), "expires_at": export.expires_at },
            "person": {
                "id": person.id, "name": person.name, "first_seen_at": person.created_at,
                "last_seen_at": person.last_seen_at,
                "handles": person.identities.iter().map(|i| json!({
                    "kind": i.identity.kind, "handle": i.identity.handle, "since": i.created_at,
                })).collect::<Vec<_>>(),
            },
            "messages": messages,
            "memory": memory,
            "ratings": record.ratings,
            "leads": leads,
            "skill_loads": record.skill_loads,
        }))
    }

    /// Deletes every export whose day is over, its zip first.
    async fn sweep(&self) -> Result<(), JobError> {
        let expired = self.store.expired_exports(steward_store::now()).await?;
        for export in &expired {
            if let Some(key) = &export.blob_key {
                self.blobs
                    .delete(key)
                    .await
                    .map_err(|e| JobError::Retryable(e.to_string()))?;
            }
            // A zip a job is writing now is deleted by that job.
            self.store.delete_export(export.id).await?;
        }
        if !expired.is_empty() {
            tracing::info!(deleted = expired.len(), "expired exports deleted");
        }
        Ok(())
    }
}

#[async_trait]
impl JobHandler for Exports {
    async fn run(&self, job: &Job) -> Result<(), JobError> {
        let ExportArgs { export_id } = job.args()?;
        match (export_id, job.org_id) {
            (None, _) => self.sweep().await,
            (Some(id), Some(org)) => self.write(&TenantScope::for_job(org), id).await,
            (Some(_), None) => Err(JobError::Permanent(
                "an export job names no organization".into(),
            )),
        }
    }
}

/// The zip: the data as JSON, and the same as a page a person can read.
fn zipped(data: &Value) -> std::io::Result<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("person.json", options)?;
    zip.write_all(&serde_json::to_vec_pretty(data).expect("JSON serializes"))?;
    zip.start_file("person.html", options)?;
    zip.write_all(html(data).as_bytes())?;
    Ok(zip.finish()?.into_inner())
}

/// `text` safe inside HTML.
fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn text_of(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => escaped(s),
        other => escaped(&other.to_string()),
    }
}

/// A section of the page: a table of `rows`, with `columns` as its head.
fn table(page: &mut String, title: &str, rows: &Value, columns: &[&str]) {
    page.push_str(&format!("<h2>{}</h2>\n", escaped(title)));
    let rows = rows.as_array().map(Vec::as_slice).unwrap_or_default();
    if rows.is_empty() {
        page.push_str("<p>None.</p>\n");
        return;
    }
    page.push_str("<table>\n<tr>");
    for column in columns {
        page.push_str(&format!("<th>{}</th>", escaped(column)));
    }
    page.push_str("</tr>\n");
    for row in rows {
        page.push_str("<tr>");
        for column in columns {
            page.push_str(&format!("<td>{}</td>", text_of(&row[*column])));
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</table>\n");
}

fn html(data: &Value) -> String {
    let person = &data["person"];
    let mut page = String::from(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>What Steward holds about you</title>\
<style>body{font-family:sans-serif;max-width:60rem;margin:2rem auto}table{border-collapse:collapse}\
td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}</style></head><body>\n",
    );
    page.push_str(&format!(
        "<h1>What Steward holds about {}</h1>\n<p>Person {} · first seen {} · exported {}</p>\n",
        match person["name"].as_str() {
            Some(name) => escaped(name),
            None => "you".into(),
        },
        text_of(&person["id"]),
        text_of(&person["first_seen_at"]),
        text_of(&data["export"]["made_at"]),
    ));
    table(
        &mut page,
        "Handles",
        &person["handles"],
        &["kind", "handle", "since"],
    );
    table(
        &mut page,
        "What the assistant remembers",
        &data["memory"],
        &["fact", "learnt_at"],
    );
    table(
        &mut page,
        "Messages",
        &data["messages"],
        &["created_at", "from", "channel", "text"],
    );
    table(
        &mut page,
        "Ratings",
        &data["ratings"],
        &["created_at", "rating", "comment"],
    );
    table(
        &mut page,
        "Leads",
        &data["leads"],
        &["created_at", "name", "email", "phone", "company", "note"],
    );
    table(
        &mut page,
        "Skills used",
        &data["skill_loads"],
        &["created_at", "skill", "version"],
    );
    page.push_str("</body></html>\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_escapes_what_people_wrote() {
        let data = json!({
            "person": {"name": "<b>Ada</b>", "handles": []},
            "messages": [{"text": "<script>alert(1)</script> & more", "from": "person"}],
            "memory": [],
        });
        let page = html(&data);
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; more"));
        assert!(page.contains("What Steward holds about &lt;b&gt;Ada&lt;/b&gt;"));
        assert!(page.contains("<h2>Leads</h2>\n<p>None.</p>"));
    }
}

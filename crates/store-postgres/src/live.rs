//! Live events across processes: published with NOTIFY, received by one
//! listener per process and handed to its subscribers.

use std::sync::atomic::Ordering;

use sqlx::PgPool;
use steward_store::{LiveEvent, LiveKind, StoreResult};

use crate::{PostgresStore, map_err};

pub(crate) const CHANNEL: &str = "steward_live";
/// NOTIFY payloads must stay under 8000 bytes; longer pieces are split.
const MAX_PIECE_BYTES: usize = 6000;

/// The payloads for an event, splitting a long piece of text.
pub(crate) fn payloads(event: &LiveEvent) -> Vec<String> {
    let LiveKind::Delta { text } = &event.kind else {
        return vec![serde_json::to_string(event).expect("live events serialize")];
    };
    let mut parts = Vec::new();
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let mut end = rest.len().min(MAX_PIECE_BYTES);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let piece = LiveEvent {
            kind: LiveKind::Delta {
                text: rest[..end].to_owned(),
            },
            ..event.clone()
        };
        parts.push(serde_json::to_string(&piece).expect("live events serialize"));
        rest = &rest[end..];
    }
    parts
}

/// Announces `event` at once, in no transaction: a reply's pieces and other
/// events that are not stored (stored messages are announced after their
/// transaction commits: `notices.rs`).
pub(crate) async fn notify(pool: &PgPool, event: &LiveEvent) -> StoreResult<()> {
    for payload in payloads(event) {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(pool)
            .await
            .map_err(map_err)?;
    }
    Ok(())
}

impl PostgresStore {
    /// Starts this process's listener once; it reconnects after errors (events
    /// sent meanwhile are missed: subscribers re-read stored messages).
    pub(crate) fn ensure_listening(&self) {
        if self.listening.swap(true, Ordering::SeqCst) {
            return;
        }
        let (pool, live) = (self.pool.clone(), self.live.clone());
        let ready = self.listener_ready.clone();
        tokio::spawn(async move {
            loop {
                let listened: Result<(), sqlx::Error> = async {
                    let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
                    listener.listen(CHANNEL).await?;
                    ready.send_replace(true);
                    loop {
                        let notification = listener.recv().await?;
                        match serde_json::from_str::<LiveEvent>(notification.payload()) {
                            Ok(event) => {
                                let _ = live.send(event);
                            }
                            Err(e) => tracing::warn!(error = %e, "ignored a malformed live event"),
                        }
                    }
                }
                .await;
                ready.send_replace(false);
                if let Err(e) = listened {
                    tracing::warn!(error = %e, "lost live events; reconnecting");
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        });
    }
}

impl PostgresStore {
    /// Waits until the listener is listening, for at most a few seconds: if
    /// the database is down, subscribers still get stored messages by
    /// re-reading, so waiting longer would only delay them.
    pub(crate) async fn wait_listening(&self) {
        let mut ready = self.listener_ready.subscribe();
        let wait = ready.wait_for(|listening| *listening);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), wait).await;
    }
}

#[cfg(test)]
mod tests {
    use steward_domain::{ConversationId, OrgId};

    use super::*;

    #[test]
    fn long_pieces_are_split_on_character_boundaries() {
        let event = LiveEvent {
            org_id: OrgId::new(),
            conversation_id: ConversationId::new(),
            kind: LiveKind::Delta {
                text: "é".repeat(5000),
            },
        };
        let parts = payloads(&event);
        assert_eq!(parts.len(), 2);
        let text: String = parts
            .iter()
            .map(
                |p| match serde_json::from_str::<LiveEvent>(p).unwrap().kind {
                    LiveKind::Delta { text } => text,
                    other => panic!("{other:?}"),
                },
            )
            .collect();
        assert_eq!(text, "é".repeat(5000));
        assert!(parts.iter().all(|p| p.len() < 7900));
    }
}

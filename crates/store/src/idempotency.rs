//! Requests sent with an `Idempotency-Key` take effect once, crashes included.
//!
//! A key is claimed before its request runs, under a fresh token. While the
//! request runs, its task carries a [`KeyedRequest`]: every write transaction
//! the task commits first checks, inside that transaction, that the claim still
//! holds its token, and marks the claim as having taken effect, with the
//! response when the handler set it beforehand ([`answer_keyed_request`]). So an
//! effect and its recorded response commit together or not at all, and a
//! request whose claim was taken over can commit nothing: the takeover of a
//! claim with no effect is safe at any time.

use std::any::Any;
use std::future::Future;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use steward_domain::OrgId;

use crate::{StoreError, StoreResult};

/// Where keyed requests' claims and responses are kept.
#[async_trait::async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims a key under a fresh token, or reports what became of it. A claim
    /// with no effect older than `stale_before` is taken over (its request died
    /// or timed out; it can no longer commit); a settled one older than
    /// `expired_before` is forgotten and claimed afresh.
    async fn idempotency_start(
        &self,
        key: &IdempotencyKey,
        stale_before: DateTime<Utc>,
        expired_before: DateTime<Utc>,
    ) -> StoreResult<IdempotencyStart>;

    /// Records the response of the request holding `token`, unless one was
    /// recorded with its effect.
    async fn idempotency_complete(
        &self,
        key: &IdempotencyKey,
        token: &str,
        response: &StoredResponse,
    ) -> StoreResult<()>;

    /// Releases a claim whose request failed unexpectedly before any effect,
    /// so a retry may run. A claim that took effect stays.
    async fn idempotency_abandon(&self, key: &IdempotencyKey, token: &str) -> StoreResult<()>;
}

/// How long a completed request's response is replayed for its key; the
/// maintenance job deletes keys older than this.
pub const IDEMPOTENCY_KEY_LIFETIME: chrono::Duration = chrono::Duration::hours(24);

/// Identifies one idempotent request: who sent it and under which key.
#[derive(Clone, Debug)]
pub struct IdempotencyKey {
    /// The caller: `user:<id>`, `api_key:<id>` or `anonymous`.
    pub caller: String,
    pub key: String,
    pub org_id: Option<OrgId>,
    /// SHA-256 over method, path and body: the same key with another request is refused.
    pub request_hash: String,
}

/// A response kept to be replayed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// A key's row as stored.
#[derive(Clone, Debug)]
pub struct StoredClaim {
    pub request_hash: String,
    /// None until the request's response is recorded.
    pub response: Option<StoredResponse>,
    /// Whether a write of the request has committed.
    pub took_effect: bool,
    pub created_at: DateTime<Utc>,
}

impl IdempotencyKey {
    /// What a request with this key gets, given the stored claim; `None` means
    /// the claim is free to take: its request died before any effect, or the
    /// key expired.
    pub fn decide(
        &self,
        claim: StoredClaim,
        stale_before: DateTime<Utc>,
        expired_before: DateTime<Utc>,
    ) -> Option<IdempotencyStart> {
        let settled = claim.response.is_some() || claim.took_effect;
        let reclaim = if settled {
            claim.created_at < expired_before
        } else {
            claim.created_at < stale_before
        };
        if reclaim {
            None
        } else if claim.request_hash != self.request_hash {
            Some(IdempotencyStart::Mismatch)
        } else {
            Some(match claim.response {
                Some(response) => IdempotencyStart::Replay(response),
                None if claim.took_effect => IdempotencyStart::ResponseLost,
                None => IdempotencyStart::InProgress,
            })
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdempotencyStart {
    /// Claimed under this token: run the request inside [`KeyedRequest::run`],
    /// then complete or abandon the claim.
    Started(String),
    /// Done before: replay this.
    Replay(StoredResponse),
    /// Another request with this key is still running.
    InProgress,
    /// The request took effect, but the process stopped before its response
    /// was recorded. It must not run again.
    ResponseLost,
    /// The key was used for a different request.
    Mismatch,
}

tokio::task_local! {
    static KEYED: KeyedRequest;
}

/// Builds a keyed request's response from the record its write commits
/// (`None` for a record of another type).
type AnswerFrom = Box<dyn Fn(&dyn Any) -> Option<StoredResponse> + Send + Sync>;

/// The keyed request a task is running (see the module's documentation).
pub struct KeyedRequest {
    caller: String,
    key: String,
    token: String,
    answer: Mutex<Option<StoredResponse>>,
    answer_from: Mutex<Option<AnswerFrom>>,
}

impl std::fmt::Debug for KeyedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedRequest")
            .field("caller", &self.caller)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// What a backend checks and records in a write transaction of a keyed request.
#[derive(Clone, Debug)]
pub struct Fence {
    pub caller: String,
    pub key: String,
    pub token: String,
    /// The response, when the handler set it before its write.
    pub answer: Option<StoredResponse>,
}

impl KeyedRequest {
    pub fn new(key: &IdempotencyKey, token: String) -> Self {
        KeyedRequest {
            caller: key.caller.clone(),
            key: key.key.clone(),
            token,
            answer: Mutex::new(None),
            answer_from: Mutex::new(None),
        }
    }

    /// Runs `request` with every write transaction it commits fenced by this claim.
    pub async fn run<F: Future>(self, request: F) -> F::Output {
        KEYED.scope(self, request).await
    }
}

/// Sets the response of the keyed request this task is running, so that it
/// commits with the request's next write. Does nothing outside a keyed request.
pub fn answer_keyed_request(response: StoredResponse) {
    let _ = KEYED.try_with(|keyed| {
        *keyed.answer.lock().unwrap_or_else(|e| e.into_inner()) = Some(response);
    });
}

/// Sets how the keyed request this task is running answers, from the record
/// of type `T` its write commits (a created chatbot, say), so that the
/// response commits with that write. Does nothing outside a keyed request.
pub fn answer_keyed_request_from<T: Any>(
    build: impl Fn(&T) -> StoredResponse + Send + Sync + 'static,
) {
    let _ = KEYED.try_with(|keyed| {
        let from: AnswerFrom = Box::new(move |record| record.downcast_ref::<T>().map(&build));
        *keyed.answer_from.lock().unwrap_or_else(|e| e.into_inner()) = Some(from);
    });
}

/// The fence a write transaction committed by this task must pass, if the
/// task runs a keyed request, with the response when it is known: set
/// before, or built from `record`, what the transaction writes.
/// `steward_store::sql::commit` is its one caller.
pub fn keyed_request_fence(record: &dyn Any) -> Option<Fence> {
    KEYED
        .try_with(|keyed| {
            let preset = keyed
                .answer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let answer = preset.or_else(|| {
                keyed
                    .answer_from
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .and_then(|from| from(record))
            });
            Fence {
                caller: keyed.caller.clone(),
                key: keyed.key.clone(),
                token: keyed.token.clone(),
                answer,
            }
        })
        .ok()
}

/// What a fenced write gets when its claim was taken over by a retry.
pub fn claim_lost() -> StoreError {
    StoreError::Conflict(crate::Conflict::IdempotencyClaimLost)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(hash: &str) -> IdempotencyKey {
        IdempotencyKey {
            caller: "user:1".into(),
            key: "k".into(),
            org_id: None,
            request_hash: hash.into(),
        }
    }

    fn claim(response: Option<StoredResponse>, took_effect: bool, age_secs: i64) -> StoredClaim {
        StoredClaim {
            request_hash: "h".into(),
            response,
            took_effect,
            created_at: Utc::now() - chrono::Duration::seconds(age_secs),
        }
    }

    #[test]
    fn a_claim_that_took_effect_is_never_run_again_before_it_expires() {
        let now = Utc::now();
        let stale = now - chrono::Duration::seconds(30);
        let expired = now - IDEMPOTENCY_KEY_LIFETIME;
        let answered = StoredResponse {
            status: 201,
            content_type: None,
            body: b"{}".to_vec(),
        };
        // Running, young: wait. Running, stale, no effect: take over.
        assert_eq!(
            key("h").decide(claim(None, false, 1), stale, expired),
            Some(IdempotencyStart::InProgress)
        );
        assert_eq!(
            key("h").decide(claim(None, false, 60), stale, expired),
            None
        );
        // Took effect without a recorded response: never again, however old.
        assert_eq!(
            key("h").decide(claim(None, true, 3600), stale, expired),
            Some(IdempotencyStart::ResponseLost)
        );
        assert_eq!(
            key("h").decide(claim(Some(answered.clone()), true, 3600), stale, expired),
            Some(IdempotencyStart::Replay(answered))
        );
        assert_eq!(
            key("other").decide(claim(None, true, 3600), stale, expired),
            Some(IdempotencyStart::Mismatch)
        );
        // Expired keys are claimed afresh.
        assert_eq!(
            key("h").decide(claim(None, true, 90_000), stale, expired),
            None
        );
    }

    #[tokio::test]
    async fn the_fence_is_seen_only_inside_the_keyed_request() {
        assert!(keyed_request_fence(&()).is_none());
        answer_keyed_request(StoredResponse {
            status: 200,
            content_type: None,
            body: vec![],
        });
        let keyed = KeyedRequest::new(&key("h"), "t1".into());
        let fence = keyed
            .run(async {
                answer_keyed_request(StoredResponse {
                    status: 201,
                    content_type: None,
                    body: b"x".to_vec(),
                });
                keyed_request_fence(&())
            })
            .await
            .unwrap();
        assert_eq!(fence.token, "t1");
        assert_eq!(fence.answer.unwrap().status, 201);
        assert!(keyed_request_fence(&()).is_none());

        // Built from the record the write commits, when it is of the type asked for.
        let keyed = KeyedRequest::new(&key("h"), "t2".into());
        let (of_a_number, of_text) = keyed
            .run(async {
                answer_keyed_request_from(|n: &u32| StoredResponse {
                    status: 201,
                    content_type: None,
                    body: n.to_string().into_bytes(),
                });
                (keyed_request_fence(&7u32), keyed_request_fence(&"seven"))
            })
            .await;
        assert_eq!(of_a_number.unwrap().answer.unwrap().body, b"7");
        assert!(of_text.unwrap().answer.is_none());
    }
}

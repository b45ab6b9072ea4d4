//! This process's view of the replies being written. Every live event of
//! the store passes through here: the pieces of each attempt at a reply
//! (`reply_started`, `delta`, `tool_call`) are numbered as they arrive, from
//! 0 at `reply_started`, and kept until the reply is stored, so that a
//! follower who reconnects resumes after the last piece it got, and one who
//! asks for the whole conversation gets the reply in progress from its start.
//!
//! Every process receives a conversation's events in the same order (one
//! worker writes a reply; PostgreSQL delivers notifications in commit
//! order), so the numbers agree between api replicas that saw the attempt
//! begin. A process that did not (it started since) keeps nothing of that
//! attempt: its followers get the reply whole once it is stored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use steward_domain::{ConversationId, MessageId, OrgId};
use steward_store::{LiveEvent, LiveKind, Store};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

/// A piece of a reply attempt: which attempt, and its number in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    pub attempt: Uuid,
    pub n: u32,
}

/// An event as followers get it; `event` None: events were lost (this
/// process fell behind), so followers re-read what is stored.
#[derive(Clone, Debug)]
pub struct Numbered {
    pub event: Option<LiveEvent>,
    /// For the pieces of an attempt this process saw begin.
    pub piece: Option<Piece>,
}

/// The attempt at a reply a conversation has in progress.
struct InProgress {
    attempt: Uuid,
    reply: MessageId,
    pieces: Vec<Numbered>,
    touched: Instant,
}

/// Pieces kept of one attempt; past this its pieces are no longer kept
/// (nor numbered), and followers resuming in it get the reply when stored.
const MAX_PIECES: usize = 10_000;
/// Conversations with a reply in progress kept at once.
const MAX_REPLIES: usize = 10_000;
/// An attempt that sent nothing for this long was abandoned (its worker died).
const IDLE: Duration = Duration::from_secs(600);
const BUFFER: usize = steward_store::LIVE_BUFFER;

pub struct LiveHub {
    replies: Mutex<HashMap<(OrgId, ConversationId), InProgress>>,
    sender: broadcast::Sender<Numbered>,
    started: AtomicBool,
}

impl Default for LiveHub {
    fn default() -> Self {
        Self {
            replies: Mutex::default(),
            sender: broadcast::channel(BUFFER).0,
            started: AtomicBool::new(false),
        }
    }
}

impl LiveHub {
    /// The pieces kept of `conversation`'s reply in progress after `after`
    /// (all of them when None; none when `after` is of another attempt), and
    /// a receiver of every event from then on: nothing between the two.
    pub async fn follow(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        org: OrgId,
        conversation: ConversationId,
        after: Option<Piece>,
    ) -> (
        Vec<Numbered>,
        Option<MessageId>,
        broadcast::Receiver<Numbered>,
    ) {
        self.ensure_started(store).await;
        let replies = self.replies.lock().expect("the hub's lock");
        let receiver = self.sender.subscribe();
        let Some(reply) = replies.get(&(org, conversation)) else {
            return (Vec::new(), None, receiver);
        };
        let kept = match after {
            None => reply.pieces.clone(),
            Some(piece) if piece.attempt == reply.attempt => reply
                .pieces
                .iter()
                .filter(|p| p.piece.is_some_and(|p| p.n > piece.n))
                .cloned()
                .collect(),
            Some(_) => Vec::new(),
        };
        (kept, Some(reply.reply), receiver)
    }

    /// Starts passing the store's events through, once per process.
    async fn ensure_started(self: &Arc<Self>, store: &Arc<dyn Store>) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut events = store.subscribe_live().await;
        let hub = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let received = events.recv().await;
                let Some(hub) = hub.upgrade() else { return };
                match received {
                    Ok(event) => hub.receive(event),
                    Err(RecvError::Lagged(_)) => hub.lost(),
                    Err(RecvError::Closed) => return,
                }
            }
        });
    }

    /// Numbers and keeps `event` and hands it on, under the lock that
    /// `follow` takes, so a follower's kept pieces and its receiver meet.
    fn receive(&self, event: LiveEvent) {
        let mut replies = self.replies.lock().expect("the hub's lock");
        let key = (event.org_id, event.conversation_id);
        let now = Instant::now();
        let piece = match &event.kind {
            LiveKind::ReplyStarted { attempt, reply } => {
                if replies.len() >= MAX_REPLIES {
                    replies.retain(|_, r| now.duration_since(r.touched) < IDLE);
                    if replies.len() >= MAX_REPLIES
                        && let Some(oldest) = replies
                            .iter()
                            .min_by_key(|(_, r)| r.touched)
                            .map(|(k, _)| *k)
                    {
                        replies.remove(&oldest);
                    }
                }
                replies.insert(
                    key,
                    InProgress {
                        attempt: *attempt,
                        reply: *reply,
                        pieces: Vec::new(),
                        touched: now,
                    },
                );
                Some(Piece {
                    attempt: *attempt,
                    n: 0,
                })
            }
            LiveKind::Delta { .. } | LiveKind::ToolCall { .. } => match replies.get(&key) {
                Some(reply) if reply.pieces.len() < MAX_PIECES => Some(Piece {
                    attempt: reply.attempt,
                    n: reply.pieces.len() as u32,
                }),
                Some(_) => {
                    replies.remove(&key);
                    None
                }
                None => None,
            },
            LiveKind::Message { message_id } => {
                if replies.get(&key).is_some_and(|r| r.reply == *message_id) {
                    replies.remove(&key);
                }
                None
            }
        };
        let numbered = Numbered {
            event: Some(event),
            piece,
        };
        if let Some(reply) = replies.get_mut(&key)
            && piece.is_some()
        {
            reply.pieces.push(numbered.clone());
            reply.touched = now;
        }
        let _ = self.sender.send(numbered);
    }

    /// Events were lost: what is kept can no longer be trusted.
    fn lost(&self) {
        let mut replies = self.replies.lock().expect("the hub's lock");
        replies.clear();
        let _ = self.sender.send(Numbered {
            event: None,
            piece: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(conversation: ConversationId, kind: LiveKind) -> LiveEvent {
        LiveEvent {
            org_id: OrgId::from(Uuid::nil()),
            conversation_id: conversation,
            kind,
        }
    }

    fn delta(text: &str) -> LiveKind {
        LiveKind::Delta { text: text.into() }
    }

    fn texts(pieces: &[Numbered]) -> Vec<String> {
        pieces
            .iter()
            .map(|p| match &p.event.as_ref().unwrap().kind {
                LiveKind::Delta { text } => text.clone(),
                LiveKind::ReplyStarted { .. } => "started".into(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn pieces_are_numbered_per_attempt_and_kept_until_the_reply_is_stored() {
        let hub = LiveHub::default();
        let conversation = ConversationId::new();
        let (first, second, reply) = (Uuid::now_v7(), Uuid::now_v7(), MessageId::new());
        let org = OrgId::from(Uuid::nil());
        // Pieces of an attempt this process did not see begin: not kept.
        hub.receive(event(conversation, delta("lost")));
        assert!(hub.replies.lock().unwrap().is_empty());
        hub.receive(event(
            conversation,
            LiveKind::ReplyStarted {
                attempt: first,
                reply,
            },
        ));
        hub.receive(event(conversation, delta("Hel")));
        // A retry starts again from 0.
        hub.receive(event(
            conversation,
            LiveKind::ReplyStarted {
                attempt: second,
                reply,
            },
        ));
        for text in ["Hel", "lo", " there"] {
            hub.receive(event(conversation, delta(text)));
        }
        let replies = hub.replies.lock().unwrap();
        let kept = &replies[&(org, conversation)];
        assert_eq!(kept.attempt, second);
        assert_eq!(texts(&kept.pieces), ["started", "Hel", "lo", " there"]);
        let numbers: Vec<u32> = kept.pieces.iter().map(|p| p.piece.unwrap().n).collect();
        assert_eq!(numbers, [0, 1, 2, 3]);
        drop(replies);
        // Another message of the conversation leaves it; the reply ends it.
        hub.receive(event(
            conversation,
            LiveKind::Message {
                message_id: MessageId::new(),
            },
        ));
        assert_eq!(hub.replies.lock().unwrap().len(), 1);
        hub.receive(event(conversation, LiveKind::Message { message_id: reply }));
        assert!(hub.replies.lock().unwrap().is_empty());
    }
}

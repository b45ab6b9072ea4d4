//! Channels: where a chatbot's people talk to it. Per provider: the
//! configuration (secrets sealed at rest), the webhook's signature and payload,
//! and the API that takes replies. Plus the `deliver` job, the mailbox
//! poller, and the operator's notices to account holders. HTTP routing lives in the API crate; this crate has no server.

pub mod config;
mod deliver;
pub mod email;
pub mod inbound;
mod manage;
mod notice;
mod receive;
pub mod send;
pub mod split;
pub mod verify;
pub mod webhook;

pub use config::{ChannelConfig, ConfigError, Field, FieldRule};
pub use deliver::Deliver;
pub use email::PollMailboxes;
pub use inbound::{Inbound, InboundMessage, Malformed};
pub use manage::{ConfigureError, MAX_NAME_CHARS, Resealed, configure, reseal, webhook_path};
pub use notice::{SendNotices, SmtpServer};
pub use receive::{Received, receive};
pub use send::{ProviderApis, SendError, Sender};
pub use verify::Unauthorized;

/// `steward_channel_messages_total{channel, direction}`: messages received
/// (`inbound`) and reply parts sent (`outbound`).
fn count_message(kind: steward_domain::ChannelKind, direction: &'static str) {
    metrics::counter!("steward_channel_messages_total", "channel" => kind.as_str(), "direction" => direction)
        .increment(1);
}

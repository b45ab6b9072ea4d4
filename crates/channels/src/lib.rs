//! Channels: where a chatbot's people talk to it. One module per provider
//! (`whatsapp`, `slack`, `telegram`, `teams`, `email`, `generic`, `web`) owns that provider's
//! configuration, webhook signature, payload, reply route and sending; the
//! rest is shared: sealing configurations, the webhook entry point the API
//! calls, storing what arrives, the `deliver` job, the `post` job (a tool
//! telling the organization's people through its channel), and the
//! operator's notices to account holders. HTTP routing lives in the API
//! crate; this crate has no server.

mod check;
pub mod config;
mod deliver;
pub mod email;
pub mod generic;
pub mod inbound;
mod manage;
mod notice;
mod post;
mod receive;
pub mod send;
mod signature;
pub mod slack;
pub mod split;
pub mod teams;
pub mod telegram;
mod tls;
pub mod web;
pub mod webhook;
pub mod whatsapp;

pub use config::{ChannelConfig, ConfigError, Field, FieldRule};
pub use deliver::Deliver;
pub use email::PollMailboxes;
pub use inbound::{Inbound, InboundMessage, Malformed, Reaction, ReactionChange, Route};
pub use manage::{ConfigureError, MAX_NAME_CHARS, Resealed, configure, reseal, webhook_path};
pub use notice::{SendNotices, SmtpServer};
pub use post::Post;
pub use receive::{Reacted, Received, Taken, react, receive, take};
pub use send::{Part, ProviderApis, SendError, Sender};
pub use signature::Unauthorized;
pub use slack::connections::{SocketChannels, SocketSettings};

/// `steward_channel_messages_total{channel, direction}`: messages received
/// (`inbound`) and reply parts sent (`outbound`).
fn count_message(kind: steward_domain::ChannelKind, direction: &'static str) {
    metrics::counter!("steward_channel_messages_total", "channel" => kind.as_str(), "direction" => direction)
        .increment(1);
}

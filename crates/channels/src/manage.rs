//! Adding a channel, shared by the API and the CLI.

use serde_json::Value;
use steward_auth::Sealer;
use steward_domain::{ChannelId, ChannelKind, ChatbotId};
use steward_store::{Channel, NewChannel, Store, StoreError, TenantScope};

use crate::config::ChannelConfig;
use crate::webhook::takes_webhooks;

#[derive(Debug, thiserror::Error)]
pub enum ConfigureError {
    /// The name or configuration is not acceptable; the message says why.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub const MAX_NAME_CHARS: usize = 100;

/// Validates the configuration, seals its secrets and stores the channel.
pub async fn configure(
    store: &dyn Store,
    sealer: &Sealer,
    scope: &TenantScope,
    chatbot: ChatbotId,
    kind: ChannelKind,
    name: &str,
    config: Value,
) -> Result<Channel, ConfigureError> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(ConfigureError::Invalid(format!(
            "name must be 1 to {MAX_NAME_CHARS} characters, without control characters"
        )));
    }
    let config =
        ChannelConfig::parse(kind, config).map_err(|e| ConfigureError::Invalid(e.message))?;
    let id = ChannelId::new();
    let (settings, sealed_secrets) = config.seal(sealer, id);
    let channel = NewChannel {
        id,
        chatbot_id: chatbot,
        kind,
        name: name.to_owned(),
        settings,
        sealed_secrets,
    };
    Ok(store.create_channel(scope, channel).await?)
}

/// Where the provider sends events for this channel, below the public URL.
/// Email has none: Steward reads the mailbox itself.
pub fn webhook_path(kind: ChannelKind, id: ChannelId) -> Option<String> {
    takes_webhooks(kind).then(|| format!("/webhooks/{kind}/{id}"))
}

/// What `reseal` did.
#[derive(Debug, Default, PartialEq)]
pub struct Resealed {
    /// Sealed again under the current master key.
    pub resealed: usize,
    /// Already under it.
    pub current: usize,
    /// Reconfigured while this ran: their new secrets are left as they are.
    pub changed: usize,
    /// Neither key opens them: these channels must be configured again.
    pub unreadable: Vec<ChannelId>,
}

/// The second half of a master-key rotation: seals every channel's secrets
/// again under the current key (`sealer`, which also holds the previous one),
/// so the previous key can then be dropped.
pub async fn reseal(store: &dyn Store, sealer: &Sealer) -> Result<Resealed, StoreError> {
    let mut done = Resealed::default();
    for channel in store.all_channels(None).await? {
        let context = channel.id.to_string();
        if sealer.is_current(&channel.sealed_secrets, context.as_bytes()) {
            done.current += 1;
            continue;
        }
        let Ok(plain) = sealer.open(&channel.sealed_secrets, context.as_bytes()) else {
            done.unreadable.push(channel.id);
            continue;
        };
        let sealed = sealer.seal(&plain, context.as_bytes());
        if store
            .replace_channel_secrets(channel.id, &channel.sealed_secrets, &sealed)
            .await?
        {
            done.resealed += 1;
        } else {
            done.changed += 1;
        }
    }
    Ok(done)
}

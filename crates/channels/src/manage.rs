//! Adding a channel, shared by the API and the CLI.

use serde_json::Value;
use steward_auth::Sealer;
use steward_domain::{ChannelId, ChannelKind, ChatbotId};
use steward_store::{Channel, NewChannel, Store, StoreError, TenantScope};

use crate::config::ChannelConfig;
use crate::send::Sender;
use crate::webhook::takes_webhooks;

#[derive(Debug, thiserror::Error)]
pub enum ConfigureError {
    /// The name or configuration is not acceptable; the message says why.
    #[error("{0}")]
    Invalid(String),
    /// The provider did not accept the configuration; the message says
    /// what it said.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub const MAX_NAME_CHARS: usize = 100;

/// Validates the configuration, asks the provider whether it works (unless
/// `check` is None), seals its secrets and stores the channel.
#[allow(clippy::too_many_arguments)]
pub async fn configure(
    store: &dyn Store,
    sealer: &Sealer,
    check: Option<&Sender>,
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
    if let Some(sender) = check {
        // Another organization's chatbot is not found before anyone is asked.
        store.chatbot(scope, chatbot).await?;
        sender
            .check(&config)
            .await
            .map_err(ConfigureError::Refused)?;
    }
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
/// Email has none (Steward reads the mailbox itself), nor a Slack channel
/// in Socket Mode (Steward connects to Slack).
pub fn webhook_path(channel: &Channel) -> Option<String> {
    let (kind, id) = (channel.kind, channel.id);
    let takes = takes_webhooks(kind) && !crate::slack::in_socket_mode(channel);
    takes.then(|| format!("/webhooks/{kind}/{id}"))
}

/// What `reseal` did, channel by channel.
pub type Resealed = steward_auth::Resealed<ChannelId>;

/// The second half of a master-key rotation: seals every channel's secrets
/// again under the current key (`sealer`, which also holds the previous one),
/// so the previous key can then be dropped.
pub async fn reseal(store: &dyn Store, sealer: &Sealer) -> Result<Resealed, StoreError> {
    let channels = store.all_channels(None).await?;
    let sealed = channels.into_iter().map(|c| (c.id, c.sealed_secrets));
    Resealed::run(sealer, sealed, async |id, old, new| {
        store.replace_channel_secrets(id, old, new).await
    })
    .await
}

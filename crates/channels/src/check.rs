//! Asking the provider, when a channel is saved, whether what the admin
//! pasted works, where it offers a cheap way to ask: Slack `auth.test` (and
//! `apps.connections.open` for a Socket Mode app token),
//! Telegram `getMe`, the WhatsApp phone number's own record, a Teams bot's
//! token from its tenant, and for email a
//! sign-in to the mailbox. A refusal says what the provider said, never the
//! secret; web chats and signed webhooks have nothing to ask.

use crate::config::ChannelConfig;
use crate::send::{SendError, Sender, call};

impl Sender {
    /// Whether the provider accepts `config`: Err says why not, in the
    /// provider's words where it gives them.
    pub async fn check(&self, config: &ChannelConfig) -> Result<(), String> {
        match config {
            ChannelConfig::Slack(c) => {
                let slack = |method: &str, token: &str| {
                    let url = format!("{}/{method}", self.apis.slack.trim_end_matches('/'));
                    call(self.client.post(url).bearer_auth(token))
                };
                // Slack answers 200 with {"ok": false, "error": "invalid_auth"}.
                let refused = |what: &str, answer: serde_json::Value| match answer["ok"] == true {
                    true => Ok(()),
                    false => Err(format!(
                        "Slack refused the {what}: {}",
                        answer["error"].as_str().unwrap_or("no reason given")
                    )),
                };
                let answer = slack("auth.test", c.bot_token.expose()).await;
                refused("bot token", answer.map_err(|e| said("Slack", e))?)?;
                // An app token's one cheap test is opening a connection URL,
                // which Slack forgets unused.
                if let Some(app_token) = &c.app_token {
                    let answer = slack("apps.connections.open", app_token.expose()).await;
                    refused("app-level token", answer.map_err(|e| said("Slack", e))?)?;
                }
                Ok(())
            }
            ChannelConfig::Telegram(c) => {
                let url = format!(
                    "{}/bot{}/getMe",
                    self.apis.telegram.trim_end_matches('/'),
                    c.bot_token.expose()
                );
                call(self.client.get(url))
                    .await
                    .map(drop)
                    .map_err(|e| said("Telegram", e))
            }
            ChannelConfig::Whatsapp(c) => {
                let url = format!(
                    "{}/{}?fields=id",
                    self.apis.whatsapp.trim_end_matches('/'),
                    c.phone_number_id
                );
                let request = self.client.get(url).bearer_auth(c.access_token.expose());
                call(request)
                    .await
                    .map(drop)
                    .map_err(|e| said("WhatsApp", e))
            }
            // Asking the tenant for a token proves the app id, secret and tenant.
            ChannelConfig::Teams(c) => self
                .teams
                .get(self, c)
                .await
                .map(drop)
                .map_err(|e| said("Microsoft Entra ID", e)),
            ChannelConfig::Email(c) => {
                crate::email::mailbox::check_login(&self.guard, c, self.timeout).await
            }
            ChannelConfig::Generic(_) | ChannelConfig::Web(_) => Ok(()),
        }
    }
}

/// A failed call to a provider, as the admin reads it.
fn said(provider: &str, error: SendError) -> String {
    match error {
        SendError::Permanent(why) => format!("{provider} refused it: {why}"),
        SendError::Retry { reason, .. } => format!("{provider} could not be asked: {reason}"),
    }
}

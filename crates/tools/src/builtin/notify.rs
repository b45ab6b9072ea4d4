//! Who `lead-capture` and `contact-owner` tell, and how: the integration's
//! settings. A mail goes from the operator's mail server (a `notice` job); a
//! Slack post goes through one of the organization's own Slack channels (a
//! `post` job). Both are enqueued with the lead or the hand-off they tell
//! of, in its transaction, keyed by the tool call: told once.

use serde::Deserialize;
use serde_json::Value;
use steward_domain::jobs::{NoticeArgs, PostArgs};
use steward_domain::{ChannelId, Email, ToolCallId};
use steward_store::NewJob;

/// What a Slack conversation id looks like: a channel (`C…`), a private
/// group (`G…`) or a direct message (`D…`).
pub const SLACK_CONVERSATION_PATTERN: &str = "^[CGD][A-Z0-9]{2,30}$";

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// An address mailed from the operator's mail server.
    #[serde(default)]
    pub mail_to: Option<String>,
    #[serde(default)]
    pub slack: Option<SlackPost>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackPost {
    /// One of the organization's Slack channels, whose bot posts.
    pub channel_id: ChannelId,
    /// The Slack conversation it posts in.
    pub to: String,
}

impl Notify {
    /// The settings an admin gave, checked as the API's schema states them.
    pub fn parse(settings: &Value) -> Result<Self, String> {
        // serde would also read the struct from an array of its fields.
        let slack = settings.get("slack").filter(|s| !s.is_null());
        if !settings.is_object() || slack.is_some_and(|s| !s.is_object()) {
            return Err("must be a JSON object, as must slack".into());
        }
        let notify: Self = serde_json::from_value(settings.clone()).map_err(|e| e.to_string())?;
        if let Some(to) = &notify.mail_to {
            Email::parse("mail_to", to).map_err(|e| e.to_string())?;
        }
        if let Some(slack) = &notify.slack {
            let to = slack.to.as_bytes();
            let fits = (3..=31).contains(&to.len())
                && b"CGD".contains(&to[0])
                && to[1..]
                    .iter()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
            if !fits {
                return Err(
                    "slack.to must be a Slack conversation id such as C0123ABCD (in Slack: the channel's details, at the bottom)"
                        .into(),
                );
            }
        }
        Ok(notify)
    }

    /// The jobs that tell of one call's effect, once per call `key`.
    pub fn jobs(&self, key: ToolCallId, subject: &str, text: &str, attempts: i32) -> Vec<NewJob> {
        let mut jobs = Vec::new();
        if let Some(to) = &self.mail_to {
            let notice = NoticeArgs {
                key: format!("tool-call:{key}"),
                to: to.clone(),
                subject: subject.to_owned(),
                text: text.to_owned(),
            };
            jobs.push(NewJob::of(&notice, attempts));
        }
        if let Some(slack) = &self.slack {
            let post = PostArgs {
                key: format!("tool-call:{key}"),
                channel_id: slack.channel_id,
                to: slack.to.clone(),
                text: format!("*{}*\n{}", slack_escaped(subject), slack_escaped(text)),
            };
            jobs.push(NewJob::of(&post, attempts));
        }
        jobs
    }
}

/// Text as Slack shows it literally: `&`, `<` and `>` escaped, so that words
/// a visitor wrote cannot become mentions or links.
fn slack_escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn settings_name_an_address_and_a_slack_conversation() {
        let channel = ChannelId::new();
        let notify = Notify::parse(&json!({
            "mail_to": "sales@example.org",
            "slack": { "channel_id": channel, "to": "C0123ABCD" }
        }))
        .unwrap();
        assert_eq!(notify.mail_to.as_deref(), Some("sales@example.org"));
        assert!(
            Notify::parse(&json!({}))
                .unwrap()
                .jobs(ToolCallId::new(), "s", "t", 3)
                .is_empty()
        );
        for (settings, why) in [
            (json!({ "mail_to": "nope" }), "mail_to"),
            (
                json!({ "slack": { "channel_id": channel, "to": "#sales" } }),
                "conversation id",
            ),
            (
                json!({ "slack": { "channel_id": "x", "to": "C0123ABCD" } }),
                "UUID",
            ),
            (json!({ "webhook": "https://example.org" }), "unknown field"),
            (json!([null, null]), "JSON object"),
            (json!({ "slack": [channel, "C0123ABCD"] }), "JSON object"),
        ] {
            let error = Notify::parse(&settings).unwrap_err();
            assert!(error.contains(why), "{settings}: {error}");
        }
    }

    #[test]
    fn each_call_tells_once_and_slack_shows_words_as_written() {
        let notify = Notify::parse(&json!({
            "mail_to": "sales@example.org",
            "slack": { "channel_id": ChannelId::new(), "to": "C0123ABCD" }
        }))
        .unwrap();
        let key = ToolCallId::new();
        let jobs = notify.jobs(key, "New lead: <!channel>", "Ada & co", 3);
        assert_eq!(jobs.len(), 2);
        let keys: Vec<_> = jobs.iter().map(|j| j.dedupe_key.clone().unwrap()).collect();
        assert_eq!(
            keys,
            [
                format!("notice:tool-call:{key}"),
                format!("post:tool-call:{key}")
            ]
        );
        let post: PostArgs = serde_json::from_value(jobs[1].payload.clone()).unwrap();
        assert_eq!(post.text, "*New lead: &lt;!channel&gt;*\nAda &amp; co");
    }
}

//! Closed sets of named states: roles, tiers, chatbot status, message role.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub const fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)*
                    other => Err(format!(
                        "unknown {} '{}': expected one of {}",
                        stringify!($name).to_lowercase(),
                        other,
                        [$($text),*].join(", ")
                    )),
                }
            }
        }
    };
}

named_enum!(
    /// What a member of an organization may do.
    Role { Owner = "owner", Admin = "admin", Member = "member", Advisor = "advisor" }
);

impl Role {
    /// Owner, admin, member, advisor: each may do less than the one before.
    const fn rank(&self) -> u8 {
        match self {
            Role::Owner => 3,
            Role::Admin => 2,
            Role::Member => 1,
            Role::Advisor => 0,
        }
    }

    /// Whether this role may do more than `other`.
    pub const fn outranks(&self, other: Role) -> bool {
        self.rank() > other.rank()
    }

    /// This role, narrowed to what `holder` may do: an API key never acts
    /// beyond the member who made it.
    pub const fn at_most(self, holder: Role) -> Role {
        if self.outranks(holder) { holder } else { self }
    }

    /// Owners and admins configure the organization; members and advisors do not.
    pub const fn can_administer(&self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }

    /// Advisors see aggregates only: no member's email, no system prompt.
    pub const fn sees_details(&self) -> bool {
        !matches!(self, Role::Advisor)
    }

    /// Advisors see aggregated patterns only, never a conversation.
    pub const fn can_read_conversations(&self) -> bool {
        !matches!(self, Role::Advisor)
    }

    /// Owners, admins and advisors read the organization's patterns and
    /// taxonomy; members read its usage only.
    pub const fn reads_patterns(&self) -> bool {
        !matches!(self, Role::Member)
    }
}

named_enum!(
    /// The billing tier; its limits come from configuration.
    Tier { Free = "free", Pro = "pro", Enterprise = "enterprise" }
);

named_enum!(
    /// Whether a chatbot answers.
    ChatbotStatus { Active = "active", Paused = "paused" }
);

named_enum!(
    /// Who wrote a message.
    MessageRole { User = "user", Assistant = "assistant" }
);

named_enum!(
    /// What a background job does.
    JobKind {
        Respond = "respond",
        Deliver = "deliver",
        Ingest = "ingest",
        IndexVectors = "index_vectors",
        Crawl = "crawl",
        Classify = "classify",
        Export = "export",
        Digest = "digest",
        Backup = "backup",
        Maintenance = "maintenance",
        Poll = "poll",
        Notice = "notice",
        Post = "post",
        Memory = "memory",
        Erase = "erase",
    }
);

named_enum!(
    /// Where a chatbot's people talk to it. `api` messages have no channel.
    ChannelKind {
        Whatsapp = "whatsapp",
        Slack = "slack",
        Telegram = "telegram",
        Teams = "teams",
        Email = "email",
        Generic = "generic",
        Web = "web",
    }
);

named_enum!(
    /// Where an export of a person's data is.
    ExportState { Pending = "pending", Ready = "ready", Failed = "failed" }
);

named_enum!(
    /// What a person thought of a reply.
    Rating { Up = "up", Down = "down" }
);

named_enum!(
    /// How a person is known: a member account of the organization, or a
    /// handle on a channel.
    IdentityKind {
        Member = "member",
        Email = "email",
        Whatsapp = "whatsapp",
        Slack = "slack",
        Teams = "teams",
        Telegram = "telegram",
        Web = "web",
        Generic = "generic",
    }
);

impl ChannelKind {
    /// Whether replies are sent through the provider (a `deliver` job). The
    /// web chat's visitors read theirs live from Steward instead.
    pub const fn sends_replies(&self) -> bool {
        !matches!(self, ChannelKind::Web)
    }
}

named_enum!(
    /// How a channel is doing: `waiting` (nothing received or sent yet), `ok`
    /// (the last exchange with the provider worked), `failing` (it did not).
    ChannelStatus { Waiting = "waiting", Ok = "ok", Failing = "failing" }
);

named_enum!(
    /// Where a document is in ingestion: `failed` carries a reason.
    DocumentStatus { Queued = "queued", Processing = "processing", Ready = "ready", Failed = "failed" }
);

named_enum!(
    /// Where a crawl is: `done` also when it stopped at one of its bounds.
    CrawlStatus { Queued = "queued", Running = "running", Done = "done", Failed = "failed" }
);

named_enum!(
    /// Where a document came from. `context` documents belong to the
    /// organization and ground every one of its chatbots.
    DocumentSource { Upload = "upload", Url = "url", Crawl = "crawl", Context = "context" }
);

named_enum!(
    /// Where a journaled tool call is: `started` until its result is recorded.
    ToolCallStatus { Started = "started", Succeeded = "succeeded", Failed = "failed" }
);

named_enum!(
    /// Where a job is in its life: queued → running → succeeded, or failed
    /// (to be retried) → … → dead (out of attempts, or a permanent error).
    JobState { Queued = "queued", Running = "running", Succeeded = "succeeded", Failed = "failed", Dead = "dead" }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), *role);
        }
        let err = "root".parse::<Role>().unwrap_err();
        assert!(err.contains("owner, admin, member, advisor"), "{err}");
        assert!("Free".parse::<Tier>().is_err(), "names are case-sensitive");
    }

    #[test]
    fn only_owners_and_admins_administer_and_advisors_never_read_conversations() {
        assert!(Role::Owner.can_administer() && Role::Admin.can_administer());
        assert!(!Role::Member.can_administer() && !Role::Advisor.can_administer());
        assert!(Role::Member.can_read_conversations());
        assert!(!Role::Advisor.can_read_conversations());
    }
}

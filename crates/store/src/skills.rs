//! [`SkillStore`]: an organization's skills, their versions and resource
//! files, and each time a reply loaded one.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use steward_domain::*;

use crate::{StoreResult, TenantScope};

/// One version of a skill.
#[derive(Clone, Debug, PartialEq)]
pub struct Skill {
    pub id: SkillId,
    pub org_id: OrgId,
    pub name: String,
    /// 1 for the first upload of the name, then one more for each.
    pub version: i64,
    pub description: String,
    /// The instructions: `SKILL.md` after its front matter.
    pub body: String,
    /// `SKILL.md` as uploaded.
    pub skill_md: String,
    pub bytes: i64,
    /// Its resource files' paths, sorted.
    pub files: Vec<String>,
    /// Who uploaded it (an actor, as the audit log names one).
    pub uploaded_by: String,
    pub created_at: DateTime<Utc>,
    /// The skill was deleted: offered no more.
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A skill to store, as uploaded and checked.
#[derive(Clone, Debug)]
pub struct NewSkill {
    pub name: String,
    pub description: String,
    pub body: String,
    pub skill_md: String,
    pub files: Vec<(String, Vec<u8>)>,
}

/// Who may use a skill: the people listed, and members with a role listed.
/// Both empty: everyone the chatbots offering it talk to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SkillAssignees {
    pub people: Vec<PersonId>,
    pub roles: Vec<Role>,
}

/// One time a reply loaded a skill.
#[derive(Clone, Debug, PartialEq)]
pub struct NewActivation {
    /// The `use_skill` call that loaded it: an activation is counted once per call.
    pub tool_call_id: ToolCallId,
    pub skill_id: SkillId,
    pub chatbot_id: ChatbotId,
    pub conversation_id: ConversationId,
    /// The reply it was for (stored after the call).
    pub reply_id: MessageId,
}

/// A skill's use over a period.
#[derive(Clone, Debug, PartialEq)]
pub struct SkillUse {
    pub name: String,
    /// Times replies loaded it.
    pub activations: i64,
    /// Ratings of the replies that loaded it.
    pub rated_up: i64,
    pub rated_down: i64,
}

#[async_trait]
pub trait SkillStore: Send + Sync {
    /// Stores a new version of the skill `skill.name` (audited): the first
    /// upload is version 1, each next one more, a deleted name included.
    async fn add_skill(&self, scope: &TenantScope, skill: NewSkill) -> StoreResult<Skill>;

    /// The latest version of each skill not deleted, by name.
    async fn skills(&self, scope: &TenantScope) -> StoreResult<Vec<Skill>>;

    /// Every version of a skill, newest first (deleted ones too); `NotFound`
    /// when the name was never uploaded.
    async fn skill_versions(&self, scope: &TenantScope, name: &str) -> StoreResult<Vec<Skill>>;

    /// The latest version of each of `names` not deleted that `person` may
    /// use (see [`SkillAssignees`]); without a person, only the skills
    /// assigned to no one in particular.
    async fn offered_skills(
        &self,
        scope: &TenantScope,
        names: &[String],
        person: Option<PersonId>,
    ) -> StoreResult<Vec<Skill>>;

    /// Replaces who may use the skill `name` (audited); `NotFound` when there
    /// is no such skill, `Conflict::UnknownPerson` when a person listed is
    /// not one of the organization's.
    async fn assign_skill(
        &self,
        scope: &TenantScope,
        name: &str,
        to: &SkillAssignees,
    ) -> StoreResult<()>;

    /// Who may use the skill `name`; `NotFound` when there is no such skill.
    async fn skill_assignees(&self, scope: &TenantScope, name: &str)
    -> StoreResult<SkillAssignees>;

    /// A resource file of one skill version, or `NotFound`.
    async fn skill_file(
        &self,
        scope: &TenantScope,
        skill: SkillId,
        path: &str,
    ) -> StoreResult<Vec<u8>>;

    /// Marks every version of the skill deleted (audited) and takes it off
    /// every chatbot and every assignee; `NotFound` when there is no skill of that name to delete.
    async fn delete_skill(&self, scope: &TenantScope, name: &str) -> StoreResult<()>;

    /// Records that a reply loaded a skill, counted on its day (and, for the
    /// reply's first load, among the day's replies that loaded one); a
    /// second record of the same call (a retried job) changes nothing.
    /// Whether it was new.
    async fn record_activation(
        &self,
        scope: &TenantScope,
        activation: &NewActivation,
    ) -> StoreResult<bool>;

    /// Each skill's activations from day `since` on, and the ratings of
    /// the replies that loaded it, by name (read from the day counters).
    async fn skill_use(
        &self,
        scope: &TenantScope,
        since: chrono::NaiveDate,
    ) -> StoreResult<Vec<SkillUse>>;
}

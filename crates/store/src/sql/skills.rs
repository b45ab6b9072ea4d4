//! [`SkillStore`], for every backend.

use async_trait::async_trait;
use serde_json::json;
use steward_domain::*;

use crate::sql::messages::{DayCounts, count_activity, count_skill, day_number};
use crate::sql::{Db, Row, SqlBackend, audit, commit, sql};
use crate::*;

const SKILL: &str = "SELECT s.id, s.org_id, s.name, s.version, s.description, s.body, s.skill_md,
        s.bytes, s.uploaded_by, s.created_at, s.deleted_at
     FROM skills s";

/// The latest version of each name, when it is not deleted.
const CURRENT: &str = "s.deleted_at IS NULL AND s.version =
        (SELECT MAX(v.version) FROM skills v WHERE v.org_id = s.org_id AND v.name = s.name)";

/// A skill's use over some days (`skill`, `activations`, `rated_up`, `rated_down`).
pub(crate) fn skill_use(row: &impl Row) -> StoreResult<SkillUse> {
    Ok(SkillUse {
        name: row.get("skill")?,
        activations: row.get("activations")?,
        rated_up: row.get("rated_up")?,
        rated_down: row.get("rated_down")?,
    })
}

/// The role of `person` when they are a member (their account's role).
async fn member_role(db: &mut impl Db, org: OrgId, person: PersonId) -> StoreResult<Option<Role>> {
    let member = db
        .fetch_optional(
            sql("SELECT handle FROM person_identities
                 WHERE person_id = $1 AND org_id = $2 AND kind = 'member'")
            .bind(person)
            .bind(org),
        )
        .await?;
    let Some(user) = member
        .map(|row| row.get::<String>("handle"))
        .transpose()?
        .and_then(|handle| handle.parse::<UserId>().ok())
    else {
        return Ok(None);
    };
    db.fetch_optional(
        sql("SELECT role FROM users WHERE id = $1 AND org_id = $2")
            .bind(user)
            .bind(org),
    )
    .await?
    .map(|row| row.get("role"))
    .transpose()
}

/// Skills with their files' paths (read in one statement).
async fn with_files(db: &mut impl Db, found: Vec<impl Row>) -> StoreResult<Vec<Skill>> {
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let ids = found
        .iter()
        .map(|row| row.get("id"))
        .collect::<StoreResult<Vec<SkillId>>>()?;
    let marks: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
    let mut statement = sql(format!(
        "SELECT skill_id, path FROM skill_files WHERE skill_id IN ({})",
        marks.join(", ")
    ));
    for id in &ids {
        statement = statement.bind(*id);
    }
    let mut files: std::collections::HashMap<SkillId, Vec<String>> = Default::default();
    for row in db.fetch_all(statement).await? {
        files
            .entry(row.get("skill_id")?)
            .or_default()
            .push(row.get("path")?);
    }
    // Sorted here, byte by byte, whatever the database's collation.
    files.values_mut().for_each(|paths| paths.sort());
    let mut skills = Vec::with_capacity(found.len());
    for (row, id) in found.iter().zip(ids) {
        skills.push(Skill {
            id,
            org_id: row.get("org_id")?,
            name: row.get("name")?,
            version: row.get("version")?,
            description: row.get("description")?,
            body: row.get("body")?,
            skill_md: row.get("skill_md")?,
            bytes: row.get("bytes")?,
            files: files.remove(&id).unwrap_or_default(),
            uploaded_by: row.get("uploaded_by")?,
            created_at: row.get("created_at")?,
            deleted_at: row.get("deleted_at")?,
        });
    }
    Ok(skills)
}

#[async_trait]
impl<B: SqlBackend> SkillStore for B {
    async fn add_skill(&self, scope: &TenantScope, skill: NewSkill) -> StoreResult<Skill> {
        let org = scope.org_id();
        let id = SkillId::new();
        let at = now();
        let bytes = skill.skill_md.len() + skill.files.iter().map(|(_, f)| f.len()).sum::<usize>();
        let mut tx = self.begin().await?;
        // The next version; two uploads of one name at once: the second
        // fails on the unique version and is retried by its caller.
        let inserted = tx
            .execute(
                sql("INSERT INTO skills (id, org_id, name, version, description, body, skill_md, bytes,
                                         uploaded_by, created_at)
                     SELECT $1, $2, $3, COALESCE(MAX(version), 0) + 1, $4, $5, $6, $7, $8, $9
                     FROM skills WHERE org_id = $2 AND name = $3")
                .bind(id)
                .bind(org)
                .bind(skill.name.as_str())
                .bind(skill.description.as_str())
                .bind(skill.body.as_str())
                .bind(skill.skill_md.as_str())
                .bind(bytes as i64)
                .bind(scope.actor().to_string())
                .bind(at),
            )
            .await?;
        if inserted != 1 {
            return Err(StoreError::Internal(
                "a skill version was not stored".into(),
            ));
        }
        for (path, content) in &skill.files {
            tx.execute(
                sql("INSERT INTO skill_files (skill_id, path, content) VALUES ($1, $2, $3)")
                    .bind(id)
                    .bind(path.as_str())
                    .bind(content.as_slice()),
            )
            .await?;
        }
        let row = tx
            .fetch_one(sql(format!("{SKILL} WHERE s.id = $1")).bind(id))
            .await?;
        let stored = with_files(&mut tx, vec![row]).await?.remove(0);
        audit(
            &mut tx,
            scope,
            "skill.uploaded",
            &format!("skill:{}", stored.name),
            json!({ "version": stored.version, "bytes": stored.bytes }),
        )
        .await?;
        commit::<B>(tx).await?;
        Ok(stored)
    }

    async fn skills(&self, scope: &TenantScope) -> StoreResult<Vec<Skill>> {
        let mut db = self.read().await?;
        let found = db
            .fetch_all(
                sql(format!(
                    "{SKILL} WHERE s.org_id = $1 AND {CURRENT} ORDER BY s.name"
                ))
                .bind(scope.org_id()),
            )
            .await?;
        with_files(&mut db, found).await
    }

    async fn skill_versions(&self, scope: &TenantScope, name: &str) -> StoreResult<Vec<Skill>> {
        let mut db = self.read().await?;
        let found = db
            .fetch_all(
                sql(format!(
                    "{SKILL} WHERE s.org_id = $1 AND s.name = $2 ORDER BY s.version DESC"
                ))
                .bind(scope.org_id())
                .bind(name),
            )
            .await?;
        if found.is_empty() {
            return Err(StoreError::NotFound);
        }
        with_files(&mut db, found).await
    }

    async fn offered_skills(
        &self,
        scope: &TenantScope,
        names: &[String],
        person: Option<PersonId>,
    ) -> StoreResult<Vec<Skill>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let org = scope.org_id();
        let mut db = self.read().await?;
        let role = match person {
            Some(person) => member_role(&mut db, org, person).await?,
            None => None,
        };
        let found = db
            .fetch_all(
                sql(format!(
                    "{SKILL} WHERE s.org_id = $1 AND {CURRENT} AND (
                        NOT EXISTS (SELECT 1 FROM skill_assignees a
                                    WHERE a.org_id = s.org_id AND a.skill = s.name)
                        OR EXISTS (SELECT 1 FROM skill_assignees a
                                   WHERE a.org_id = s.org_id AND a.skill = s.name
                                     AND (a.person_id = $2 OR a.role = $3)))
                     ORDER BY s.name"
                ))
                .bind(org)
                .bind(person)
                .bind(role.map(|r| r.as_str())),
            )
            .await?;
        let mut wanted = Vec::new();
        for row in found {
            if names.contains(&row.get::<String>("name")?) {
                wanted.push(row);
            }
        }
        with_files(&mut db, wanted).await
    }

    async fn assign_skill(
        &self,
        scope: &TenantScope,
        name: &str,
        to: &SkillAssignees,
    ) -> StoreResult<()> {
        let org = scope.org_id();
        let mut tx = self.begin().await?;
        tx.fetch_one(
            sql(format!(
                "SELECT s.id FROM skills s WHERE s.org_id = $1 AND s.name = $2 AND {CURRENT}"
            ))
            .bind(org)
            .bind(name),
        )
        .await?;
        tx.execute(
            sql("DELETE FROM skill_assignees WHERE org_id = $1 AND skill = $2")
                .bind(org)
                .bind(name),
        )
        .await?;
        let mut people = to.people.clone();
        people.sort();
        people.dedup();
        for person in &people {
            let added = tx
                .execute(
                    sql("INSERT INTO skill_assignees (org_id, skill, person_id)
                         SELECT org_id, $2, id FROM people WHERE id = $3 AND org_id = $1")
                    .bind(org)
                    .bind(name)
                    .bind(*person),
                )
                .await?;
            if added == 0 {
                return Err(StoreError::Conflict(Conflict::UnknownPerson));
            }
        }
        let mut roles: Vec<&str> = to.roles.iter().map(|r| r.as_str()).collect();
        roles.sort();
        roles.dedup();
        for role in &roles {
            tx.execute(
                sql("INSERT INTO skill_assignees (org_id, skill, role) VALUES ($1, $2, $3)")
                    .bind(org)
                    .bind(name)
                    .bind(*role),
            )
            .await?;
        }
        audit(
            &mut tx,
            scope,
            "skill.assigned",
            &format!("skill:{name}"),
            json!({ "people": people.len(), "roles": roles }),
        )
        .await?;
        commit::<B>(tx).await
    }

    async fn skill_assignees(
        &self,
        scope: &TenantScope,
        name: &str,
    ) -> StoreResult<SkillAssignees> {
        let org = scope.org_id();
        let mut db = self.read().await?;
        db.fetch_one(
            sql(format!(
                "SELECT s.id FROM skills s WHERE s.org_id = $1 AND s.name = $2 AND {CURRENT}"
            ))
            .bind(org)
            .bind(name),
        )
        .await?;
        let mut assignees = SkillAssignees::default();
        for row in db
            .fetch_all(
                sql("SELECT person_id, role FROM skill_assignees
                     WHERE org_id = $1 AND skill = $2
                     ORDER BY role, person_id")
                .bind(org)
                .bind(name),
            )
            .await?
        {
            if let Some(person) = row.get::<Option<PersonId>>("person_id")? {
                assignees.people.push(person);
            }
            if let Some(role) = row.get::<Option<Role>>("role")? {
                assignees.roles.push(role);
            }
        }
        Ok(assignees)
    }

    async fn skill_file(
        &self,
        scope: &TenantScope,
        skill: SkillId,
        path: &str,
    ) -> StoreResult<Vec<u8>> {
        self.read()
            .await?
            .fetch_one(
                sql(
                    "SELECT f.content FROM skill_files f JOIN skills s ON s.id = f.skill_id
                     WHERE f.skill_id = $1 AND f.path = $2 AND s.org_id = $3",
                )
                .bind(skill)
                .bind(path)
                .bind(scope.org_id()),
            )
            .await?
            .get("content")
    }

    async fn delete_skill(&self, scope: &TenantScope, name: &str) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let deleted = tx
            .execute(
                sql("UPDATE skills SET deleted_at = $1
                     WHERE org_id = $2 AND name = $3 AND deleted_at IS NULL")
                .bind(now())
                .bind(scope.org_id())
                .bind(name),
            )
            .await?;
        if deleted == 0 {
            return Err(StoreError::NotFound);
        }
        tx.execute(
            sql("DELETE FROM skill_assignees WHERE org_id = $1 AND skill = $2")
                .bind(scope.org_id())
                .bind(name),
        )
        .await?;
        // Off every chatbot of the organization that offered it.
        let offering = tx
            .fetch_all(
                sql("SELECT id, skills FROM chatbots WHERE org_id = $1").bind(scope.org_id()),
            )
            .await?;
        for row in offering {
            let skills: serde_json::Value = row.get("skills")?;
            let names: Vec<String> = serde_json::from_value(skills)
                .map_err(|e| StoreError::Internal(format!("chatbots.skills: {e}")))?;
            if names.iter().any(|n| n == name) {
                let kept: Vec<String> = names.into_iter().filter(|n| n != name).collect();
                tx.execute(
                    sql("UPDATE chatbots SET skills = $1 WHERE id = $2")
                        .bind(serde_json::Value::from(kept))
                        .bind(row.get::<ChatbotId>("id")?),
                )
                .await?;
            }
        }
        audit(
            &mut tx,
            scope,
            "skill.deleted",
            &format!("skill:{name}"),
            serde_json::Value::Null,
        )
        .await?;
        commit::<B>(tx).await
    }

    async fn record_activation(
        &self,
        scope: &TenantScope,
        activation: &NewActivation,
    ) -> StoreResult<bool> {
        let org = scope.org_id();
        let at = now();
        let mut tx = self.begin().await?;
        let recorded = tx
            .execute(
                sql("INSERT INTO skill_activations (tool_call_id, reply_id, person_id, org_id, skill_id,
                                                    chatbot_id, conversation_id, created_at)
                     SELECT $1, $2, c.person_id, c.org_id, s.id, $4, c.id, $6
                     FROM conversations c JOIN skills s ON s.id = $3 AND s.org_id = c.org_id
                     WHERE c.id = $5 AND c.org_id = $7
                     ON CONFLICT DO NOTHING")
                .bind(activation.tool_call_id)
                .bind(activation.reply_id)
                .bind(activation.skill_id)
                .bind(activation.chatbot_id)
                .bind(activation.conversation_id)
                .bind(at)
                .bind(org),
            )
            .await?;
        if recorded == 0 {
            return Ok(false);
        }
        // Counted with it: the skill's load, and the reply's first load.
        let name: String = tx
            .fetch_one(sql("SELECT name FROM skills WHERE id = $1").bind(activation.skill_id))
            .await?
            .get("name")?;
        count_skill(&mut tx, org, &name, at, 1, (0, 0)).await?;
        let loads: i64 = tx
            .fetch_one(
                sql("SELECT COUNT(*) AS loads FROM skill_activations WHERE reply_id = $1")
                    .bind(activation.reply_id),
            )
            .await?
            .get("loads")?;
        if loads == 1 {
            let counts = DayCounts {
                with_skills: 1,
                ..DayCounts::default()
            };
            count_activity::<B>(&mut tx, org, activation.chatbot_id, at, counts).await?;
        }
        commit::<B>(tx).await?;
        Ok(true)
    }

    async fn skill_use(
        &self,
        scope: &TenantScope,
        since: chrono::NaiveDate,
    ) -> StoreResult<Vec<SkillUse>> {
        // CAST: PostgreSQL sums bigints as numeric.
        self.read()
            .await?
            .fetch_all(
                sql(
                    "SELECT skill, CAST(SUM(activations) AS BIGINT) AS activations,
                            CAST(SUM(rated_up) AS BIGINT) AS rated_up,
                            CAST(SUM(rated_down) AS BIGINT) AS rated_down
                     FROM skill_days WHERE org_id = $1 AND day >= $2
                     GROUP BY skill ORDER BY skill",
                )
                .bind(scope.org_id())
                .bind(day_number(since)),
            )
            .await?
            .iter()
            .map(skill_use)
            .collect()
    }
}

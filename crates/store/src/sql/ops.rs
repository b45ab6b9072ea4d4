//! [`OpsStore`], for every backend.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use steward_domain::OrgId;

use crate::sql::{Db, Row, SqlBackend, sql};
use crate::*;

/// Per organization: members, and its people's messages and replies since
/// $1 (each a range of `messages_history` per chatbot), the usage of period
/// $2, the people who wrote in the day, week and month up to day $3, the
/// replies that loaded a skill in the week up to day $3, and its ratings.
const ACTIVITY: &str = "
    SELECT o.id, o.name, o.tier,
        (SELECT count(*) FROM users u WHERE u.org_id = o.id) AS members,
        (SELECT count(DISTINCT m.conversation_id) FROM messages m
            WHERE m.org_id = o.id AND m.role = 'user' AND m.created_at >= $1) AS active_conversations,
        (SELECT count(*) FROM messages m
            WHERE m.org_id = o.id AND m.role = 'user' AND m.created_at >= $1) AS user_messages,
        (SELECT count(*) FROM messages m
            WHERE m.org_id = o.id AND m.role = 'assistant' AND m.created_at >= $1) AS replies,
        CAST(coalesce((SELECT sum(a.with_skills) FROM activity_days a
            WHERE a.org_id = o.id AND a.day > $3 - 7 AND a.day <= $3), 0) AS BIGINT)
            AS replies_with_skills,
        CAST(coalesce((SELECT sum(messages) FROM usage_counters c
            WHERE c.org_id = o.id AND c.period = $2), 0) AS BIGINT) AS month_messages,
        CAST(coalesce((SELECT sum(tokens) FROM usage_counters c
            WHERE c.org_id = o.id AND c.period = $2), 0) AS BIGINT) AS month_tokens,
        (SELECT count(*) FROM person_days p WHERE p.org_id = o.id AND p.day = $3) AS people_day,
        (SELECT count(DISTINCT p.person_id) FROM person_days p
            WHERE p.org_id = o.id AND p.day > $3 - 7 AND p.day <= $3) AS people_week,
        (SELECT count(DISTINCT p.person_id) FROM person_days p
            WHERE p.org_id = o.id AND p.day > $3 - 30 AND p.day <= $3) AS people_month,
        (SELECT count(*) FROM feedback f WHERE f.org_id = o.id AND f.rating = 'up') AS rated_up,
        (SELECT count(*) FROM feedback f WHERE f.org_id = o.id AND f.rating = 'down') AS rated_down
    FROM organizations o ORDER BY o.name, o.id";

/// A count as stored (never negative).
fn count(row: &impl Row, column: &str) -> StoreResult<u64> {
    Ok(row.get::<i64>(column)?.max(0) as u64)
}

async fn latest_run(db: &mut impl Db, succeeded: bool) -> StoreResult<Option<BackupRun>> {
    let row = db
        .fetch_optional(
            sql("SELECT * FROM backup_runs WHERE succeeded = $1
                 ORDER BY finished_at DESC, id DESC LIMIT 1")
            .bind(succeeded),
        )
        .await?;
    row.map(|row| {
        Ok(BackupRun {
            backup_id: row.get("backup_id")?,
            started_at: row.get("started_at")?,
            finished_at: row.get("finished_at")?,
            succeeded,
            bytes: count(&row, "bytes")?,
            error: row.get("error")?,
        })
    })
    .transpose()
}

#[async_trait]
impl<B: SqlBackend + CatalogueStore> OpsStore for B {
    async fn record_backup_run(&self, run: &BackupRun) -> StoreResult<()> {
        self.write()
            .await?
            .execute(
                sql("INSERT INTO backup_runs (backup_id, started_at, finished_at, succeeded, bytes, error)
                     VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(run.backup_id.as_str())
                .bind(run.started_at)
                .bind(run.finished_at)
                .bind(run.succeeded)
                .bind(i64::try_from(run.bytes).unwrap_or(i64::MAX))
                .bind(run.error.as_deref()),
            )
            .await?;
        Ok(())
    }

    async fn backup_status(&self) -> StoreResult<BackupStatus> {
        let mut db = self.read().await?;
        Ok(BackupStatus {
            last_success: latest_run(&mut db, true).await?,
            last_failure: latest_run(&mut db, false).await?,
        })
    }

    async fn prune_idempotency_keys(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        self.write()
            .await?
            .execute(sql("DELETE FROM idempotency_keys WHERE created_at < $1").bind(before))
            .await
    }

    async fn prune_signed_out_sessions(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        self.write()
            .await?
            .execute(sql("DELETE FROM signed_out_sessions WHERE expires_at < $1").bind(before))
            .await
    }

    async fn org_activity(
        &self,
        since: DateTime<Utc>,
        period: &str,
        today: chrono::NaiveDate,
    ) -> StoreResult<Vec<OrgActivity>> {
        let mut db = self.read().await?;
        let today = crate::sql::messages::day_number(today);
        let found = db
            .fetch_all(sql(ACTIVITY).bind(since).bind(period).bind(today))
            .await?;
        let mut by_channel = std::collections::HashMap::<OrgId, Vec<(String, u64, u64)>>::new();
        // CAST: PostgreSQL sums bigints as numeric.
        for row in db
            .fetch_all(sql(
                "SELECT org_id, channel, CAST(SUM(direct) AS BIGINT) AS direct,
                        CAST(SUM(forwarded) AS BIGINT) AS forwarded
                 FROM channel_days GROUP BY org_id, channel ORDER BY channel",
            ))
            .await?
        {
            by_channel.entry(row.get("org_id")?).or_default().push((
                row.get("channel")?,
                count(&row, "direct")?,
                count(&row, "forwarded")?,
            ));
        }
        let mut patterns = std::collections::HashMap::<OrgId, Vec<(String, u64)>>::new();
        for row in db
            .fetch_all(sql(
                "SELECT org_id, category_l1, CAST(SUM(interactions) AS BIGINT) AS interactions
                 FROM pattern_counts
                 WHERE span = 'month' AND category_l1 <> '' AND category_l2 = ''
                 GROUP BY org_id, category_l1 ORDER BY category_l1",
            ))
            .await?
        {
            patterns
                .entry(row.get("org_id")?)
                .or_default()
                .push((row.get("category_l1")?, count(&row, "interactions")?));
        }
        let mut activations = std::collections::HashMap::<OrgId, Vec<(String, u64)>>::new();
        for row in db
            .fetch_all(sql(
                "SELECT org_id, skill AS name, CAST(SUM(activations) AS BIGINT) AS activations
                 FROM skill_days GROUP BY org_id, skill ORDER BY skill",
            ))
            .await?
        {
            activations
                .entry(row.get("org_id")?)
                .or_default()
                .push((row.get("name")?, count(&row, "activations")?));
        }
        found
            .iter()
            .map(|row| {
                let org_id: OrgId = row.get("id")?;
                Ok(OrgActivity {
                    people_day: count(row, "people_day")?,
                    people_week: count(row, "people_week")?,
                    people_month: count(row, "people_month")?,
                    rated_up: count(row, "rated_up")?,
                    rated_down: count(row, "rated_down")?,
                    messages: by_channel.remove(&org_id).unwrap_or_default(),
                    skill_activations: activations.remove(&org_id).unwrap_or_default(),
                    patterns: patterns.remove(&org_id).unwrap_or_default(),
                    org_id,
                    name: row.get("name")?,
                    tier: row.get("tier")?,
                    members: count(row, "members")?,
                    active_conversations: count(row, "active_conversations")?,
                    user_messages: count(row, "user_messages")?,
                    replies: count(row, "replies")?,
                    replies_with_skills: count(row, "replies_with_skills")?,
                    month_messages: count(row, "month_messages")?,
                    month_tokens: count(row, "month_tokens")?,
                })
            })
            .collect()
    }

    async fn audit_actions(&self, since: Option<DateTime<Utc>>) -> StoreResult<Vec<(String, u64)>> {
        let found = self
            .read()
            .await?
            .fetch_all(
                sql("SELECT action, count(*) AS n FROM audit_log
                     WHERE $1 IS NULL OR created_at >= $1
                     GROUP BY action ORDER BY action")
                .bind(since),
            )
            .await?;
        found
            .iter()
            .map(|row| Ok((row.get("action")?, count(row, "n")?)))
            .collect()
    }

    async fn holds_data(&self) -> StoreResult<bool> {
        if !self
            .table_names()
            .await?
            .iter()
            .any(|t| t == "organizations")
        {
            return Ok(false);
        }
        let found = self
            .read()
            .await?
            .fetch_optional(sql("SELECT 1 AS one FROM organizations LIMIT 1"))
            .await?;
        Ok(found.is_some())
    }
}

//! [`PatternStore`], for every backend.

use async_trait::async_trait;
use serde_json::json;
use steward_domain::taxonomy::{Label, Taxonomy};
use steward_domain::*;
use uuid::Uuid;

use crate::sql::{Db, Row, SqlBackend, audit, commit, sql};
use crate::*;

#[async_trait]
impl<B: SqlBackend> PatternStore for B {
    async fn taxonomy(&self, scope: &TenantScope) -> StoreResult<Option<Taxonomy>> {
        let row = self
            .read()
            .await?
            .fetch_one(sql("SELECT taxonomy FROM organizations WHERE id = $1").bind(scope.org_id()))
            .await?;
        let stored: Option<String> = row.get("taxonomy")?;
        stored
            .map(|json| {
                serde_json::from_str(&json)
                    .map_err(|e| StoreError::Internal(format!("a stored taxonomy: {e}")))
            })
            .transpose()
    }

    async fn set_taxonomy(
        &self,
        scope: &TenantScope,
        taxonomy: Option<&Taxonomy>,
    ) -> StoreResult<()> {
        let json = taxonomy.map(|t| serde_json::to_string(t).expect("a taxonomy serializes"));
        let org = scope.org_id();
        let mut tx = self.begin().await?;
        tx.execute(
            sql("UPDATE organizations SET taxonomy = $1 WHERE id = $2")
                .bind(json)
                .bind(org),
        )
        .await?;
        let details = match taxonomy {
            Some(t) => json!({
                "categories": t.categories.len(),
                "subcategories": t.categories.iter().map(|c| c.subcategories.len()).sum::<usize>(),
            }),
            None => json!({"shipped": true}),
        };
        audit(
            &mut tx,
            scope,
            "insights.taxonomy_changed",
            &format!("organization:{org}"),
            details,
        )
        .await?;
        commit::<B>(tx).await
    }

    async fn record_pattern(
        &self,
        scope: &TenantScope,
        message: MessageId,
        (l1, l2): &Label,
    ) -> StoreResult<bool> {
        let org = scope.org_id();
        let mut tx = self.begin().await?;
        let labelled = tx
            .fetch_optional(
                sql("UPDATE messages SET category_l1 = $1, category_l2 = $2
                     WHERE id = $3 AND org_id = $4 AND role = 'user' AND category_l1 IS NULL
                     RETURNING person_id, conversation_id, created_at")
                .bind(l1.as_str())
                .bind(l2.as_str())
                .bind(message)
                .bind(org),
            )
            .await?;
        let Some(labelled) = labelled else {
            return Ok(false);
        };
        let person: Option<PersonId> = labelled.get("person_id")?;
        let conversation: ConversationId = labelled.get("conversation_id")?;
        let who: Uuid = person.map_or(conversation.as_uuid(), |p| p.as_uuid());
        let day = labelled
            .get::<chrono::DateTime<chrono::Utc>>("created_at")?
            .date_naive();
        for span in [Span::Week, Span::Month] {
            let period = span.period_of(day);
            for (cell_l1, cell_l2) in [(l1.as_str(), l2.as_str()), (l1.as_str(), ""), ("", "")] {
                let first = tx
                    .execute(
                        sql("INSERT INTO pattern_people
                                (org_id, span, period, category_l1, category_l2, who)
                             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING")
                        .bind(org)
                        .bind(span.as_str())
                        .bind(period)
                        .bind(cell_l1)
                        .bind(cell_l2)
                        .bind(who),
                    )
                    .await?;
                tx.execute(
                    sql("INSERT INTO pattern_counts
                            (org_id, span, period, category_l1, category_l2, interactions, people)
                         VALUES ($1, $2, $3, $4, $5, 1, $6)
                         ON CONFLICT (org_id, span, period, category_l1, category_l2) DO UPDATE SET
                            interactions = pattern_counts.interactions + 1,
                            people = pattern_counts.people + excluded.people")
                    .bind(org)
                    .bind(span.as_str())
                    .bind(period)
                    .bind(cell_l1)
                    .bind(cell_l2)
                    .bind(i64::from(first > 0)),
                )
                .await?;
            }
        }
        commit::<B>(tx).await?;
        Ok(true)
    }

    async fn labelled(&self, scope: &TenantScope, message: MessageId) -> StoreResult<bool> {
        let found = self
            .read()
            .await?
            .fetch_optional(
                sql("SELECT 1 AS labelled FROM messages
                     WHERE id = $1 AND org_id = $2 AND category_l1 IS NOT NULL")
                .bind(message)
                .bind(scope.org_id()),
            )
            .await?;
        Ok(found.is_some())
    }

    async fn pattern_counts(
        &self,
        scope: &TenantScope,
        span: Span,
        from: i64,
        to: i64,
    ) -> StoreResult<Vec<PatternCount>> {
        let rows = self
            .read()
            .await?
            .fetch_all(
                sql(
                    "SELECT period, category_l1, category_l2, interactions, people
                     FROM pattern_counts
                     WHERE org_id = $1 AND span = $2 AND period BETWEEN $3 AND $4
                     ORDER BY period, category_l1, category_l2",
                )
                .bind(scope.org_id())
                .bind(span.as_str())
                .bind(from)
                .bind(to),
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(PatternCount {
                    period: row.get("period")?,
                    category_l1: row.get("category_l1")?,
                    category_l2: row.get("category_l2")?,
                    interactions: row.get("interactions")?,
                    people: row.get("people")?,
                })
            })
            .collect()
    }
}

/// When `from` is merged into `into`: cells both were counted in count one
/// person, no longer two, and `from`'s other rows become `into`'s.
pub(crate) async fn merge_people(
    tx: &mut impl Db,
    org: OrgId,
    from: PersonId,
    into: PersonId,
) -> StoreResult<()> {
    let shared = tx
        .fetch_all(
            sql("DELETE FROM pattern_people WHERE org_id = $1 AND who = $2
                   AND (span, period, category_l1, category_l2) IN (
                     SELECT span, period, category_l1, category_l2 FROM pattern_people
                     WHERE org_id = $1 AND who = $3)
                 RETURNING span, period, category_l1, category_l2")
            .bind(org)
            .bind(from)
            .bind(into),
        )
        .await?;
    for row in shared {
        tx.execute(
            sql("UPDATE pattern_counts SET people = people - 1
                 WHERE org_id = $1 AND span = $2 AND period = $3
                   AND category_l1 = $4 AND category_l2 = $5")
            .bind(org)
            .bind(row.get::<String>("span")?)
            .bind(row.get::<i64>("period")?)
            .bind(row.get::<String>("category_l1")?)
            .bind(row.get::<String>("category_l2")?),
        )
        .await?;
    }
    tx.execute(
        sql("UPDATE pattern_people SET who = $1 WHERE org_id = $2 AND who = $3")
            .bind(into)
            .bind(org)
            .bind(from),
    )
    .await?;
    Ok(())
}

//! [`FeedbackStore`], for every backend.

use async_trait::async_trait;
use steward_domain::*;

use crate::sql::messages::{DayCounts, count_activity, count_skill};
use crate::sql::people::person_of;
use crate::sql::{Db, Row, SqlBackend, commit, sql};
use crate::*;

fn feedback(row: &impl Row) -> StoreResult<Feedback> {
    Ok(Feedback {
        message_id: row.get("message_id")?,
        person_id: row.get("person_id")?,
        chatbot_id: row.get("chatbot_id")?,
        rating: row.get("rating")?,
        comment: row.get("comment")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}

/// Counts a rating of `reply` in (`by` 1) or out (`by` -1) of its chatbot's
/// counters, on the day it was first given, and of the counters of each
/// skill the reply loaded, on the day it first loaded one; in the
/// transaction that changes it.
pub(crate) async fn count_rating<B: SqlBackend>(
    tx: &mut B::Tx,
    org: OrgId,
    (chatbot, reply): (ChatbotId, MessageId),
    first_given: chrono::DateTime<chrono::Utc>,
    rating: Rating,
    by: i64,
) -> StoreResult<()> {
    let loaded = tx
        .fetch_all(
            sql("SELECT s.name, MIN(a.created_at) AS loaded_at
                 FROM skill_activations a JOIN skills s ON s.id = a.skill_id
                 WHERE a.reply_id = $1 AND a.org_id = $2
                 GROUP BY s.name")
            .bind(reply)
            .bind(org),
        )
        .await?;
    let mut first_load: Option<chrono::DateTime<chrono::Utc>> = None;
    for row in &loaded {
        let at = row.get("loaded_at")?;
        first_load = Some(first_load.map_or(at, |first| first.min(at)));
    }
    if let Some(first_load) = first_load {
        let votes = match rating {
            Rating::Up => (by, 0),
            Rating::Down => (0, by),
        };
        for row in &loaded {
            let name: String = row.get("name")?;
            count_skill(tx, org, &name, first_load, 0, votes).await?;
        }
    }
    let counts = match rating {
        Rating::Up => DayCounts {
            rated_up: by,
            ..DayCounts::default()
        },
        Rating::Down => DayCounts {
            rated_down: by,
            ..DayCounts::default()
        },
    };
    count_activity::<B>(tx, org, chatbot, first_given, counts).await
}

/// Counts out the ratings a statement deleted (`RETURNING message_id,
/// chatbot_id, rating, created_at`).
pub(crate) async fn count_out<B: SqlBackend>(
    tx: &mut B::Tx,
    org: OrgId,
    deleted: Vec<<B::Tx as Db>::Row>,
) -> StoreResult<()> {
    for row in deleted {
        let rating: Rating = row.get("rating")?;
        count_rating::<B>(
            tx,
            org,
            (row.get("chatbot_id")?, row.get("message_id")?),
            row.get("created_at")?,
            rating,
            -1,
        )
        .await?;
    }
    Ok(())
}

const FEEDBACK: &str =
    "SELECT message_id, person_id, chatbot_id, rating, comment, created_at, updated_at
     FROM feedback";

#[async_trait]
impl<B: SqlBackend> FeedbackStore for B {
    async fn rate_reply(
        &self,
        scope: &TenantScope,
        reply: MessageId,
        rater: &Sender,
        rating: Rating,
        comment: Option<String>,
    ) -> StoreResult<(Feedback, Rated)> {
        let org = scope.org_id();
        let mut tx = self.begin().await?;
        let message = tx
            .fetch_one(
                sql("SELECT role, chatbot_id FROM messages WHERE id = $1 AND org_id = $2")
                    .bind(reply)
                    .bind(org),
            )
            .await?;
        if message.get::<MessageRole>("role")? != MessageRole::Assistant {
            return Err(StoreError::Conflict(Conflict::NotAReply));
        }
        let chatbot: ChatbotId = message.get("chatbot_id")?;
        let person = person_of(&mut tx, org, rater, None).await?;
        let lookup = || {
            sql(format!(
                "{FEEDBACK} WHERE message_id = $1 AND person_id = $2"
            ))
            .bind(reply)
            .bind(person)
        };
        let before = tx.fetch_optional(lookup()).await?;
        let before: Option<Feedback> = before.as_ref().map(feedback).transpose()?;
        let at = now();
        // An upsert, so that two ratings at once leave one row (the later).
        tx.execute(
            sql(
                "INSERT INTO feedback (message_id, person_id, org_id, chatbot_id, rating, comment,
                                       created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
                 ON CONFLICT (message_id, person_id) DO UPDATE SET
                    rating = excluded.rating, comment = excluded.comment,
                    updated_at = excluded.updated_at",
            )
            .bind(reply)
            .bind(person)
            .bind(org)
            .bind(chatbot)
            .bind(rating)
            .bind(comment.as_deref())
            .bind(at),
        )
        .await?;
        let stored = feedback(&tx.fetch_one(lookup()).await?)?;
        let rated = match &before {
            None => Rated::New,
            Some(earlier) if earlier.rating == rating => Rated::Same,
            Some(_) => Rated::Changed,
        };
        let given = stored.created_at;
        let target = (chatbot, reply);
        if let (Rated::Changed, Some(earlier)) = (rated, &before) {
            count_rating::<B>(&mut tx, org, target, given, earlier.rating, -1).await?;
        }
        if rated != Rated::Same {
            count_rating::<B>(&mut tx, org, target, given, rating, 1).await?;
        }
        commit::<B>(tx).await?;
        Ok((stored, rated))
    }

    async fn withdraw_rating(
        &self,
        scope: &TenantScope,
        reply: MessageId,
        rater: &Sender,
        only: Option<Rating>,
    ) -> StoreResult<bool> {
        let identity = &rater.identity;
        let mut tx = self.begin().await?;
        let removed = tx
            .fetch_all(
                sql("DELETE FROM feedback
                     WHERE message_id = $1 AND org_id = $2 AND ($5 IS NULL OR rating = $5)
                       AND person_id = (SELECT person_id FROM person_identities
                                        WHERE org_id = $2 AND kind = $3 AND handle = $4)
                     RETURNING message_id, chatbot_id, rating, created_at")
                .bind(reply)
                .bind(scope.org_id())
                .bind(identity.kind)
                .bind(identity.handle.as_str())
                .bind(only.map(|r| r.as_str())),
            )
            .await?;
        let withdrawn = !removed.is_empty();
        count_out::<B>(&mut tx, scope.org_id(), removed).await?;
        commit::<B>(tx).await?;
        Ok(withdrawn)
    }

    async fn reply_feedback(
        &self,
        scope: &TenantScope,
        reply: MessageId,
    ) -> StoreResult<Vec<Feedback>> {
        let mut db = self.read().await?;
        db.fetch_one(
            sql("SELECT 1 AS one FROM messages WHERE id = $1 AND org_id = $2")
                .bind(reply)
                .bind(scope.org_id()),
        )
        .await?;
        db.fetch_all(
            sql(format!(
                "{FEEDBACK} WHERE message_id = $1 AND org_id = $2 ORDER BY created_at, person_id"
            ))
            .bind(reply)
            .bind(scope.org_id()),
        )
        .await?
        .iter()
        .map(feedback)
        .collect()
    }

    async fn delivered_reply(
        &self,
        scope: &TenantScope,
        channel: ChannelId,
        external_id: &str,
    ) -> StoreResult<Option<MessageId>> {
        self.read()
            .await?
            .fetch_optional(
                sql("SELECT d.message_id FROM deliveries d
                     JOIN messages m ON m.id = d.message_id
                     WHERE d.org_id = $1 AND d.external_id = $2 AND m.channel_id = $3")
                .bind(scope.org_id())
                .bind(external_id)
                .bind(channel),
            )
            .await?
            .map(|row| row.get("message_id"))
            .transpose()
    }
}

//! Insights: how an organization's assistants are used, as numbers only, so
//! that every role may read them (advisors included).

use axum::extract::State;
use chrono::{Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use steward_domain::ChatbotId;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Query;
use crate::state::SharedState;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new().routes(routes!(usage))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// Days counted back from today (UTC), today included: 1 to 90; default 30.
    #[param(minimum = 1, maximum = 90)]
    days: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct Day {
    date: NaiveDate,
    /// Messages from people.
    messages: i64,
    replies: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ActivePeople {
    /// Since midnight (UTC).
    today: i64,
    /// In the last seven days.
    week: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ReplyTimes {
    /// Seconds from a message to its reply; null without replies.
    p50: Option<f64>,
    p95: Option<f64>,
    /// How many replies the figures are taken from (the latest, at most 2,000).
    replies: usize,
}

#[derive(Serialize, ToSchema)]
pub struct ChatbotUsage {
    chatbot_id: ChatbotId,
    messages: i64,
    conversations: i64,
}

#[derive(Serialize, ToSchema)]
pub struct UsageInsights {
    /// Every day of the period, oldest first (days without messages too).
    days: Vec<Day>,
    /// People who wrote: a channel identity (a phone number, a Slack user, a
    /// web chat visitor) counts once; a conversation through the API counts
    /// as one person.
    active_people: ActivePeople,
    reply_seconds: ReplyTimes,
    /// Each chatbot's messages and conversations started in the period.
    chatbots: Vec<ChatbotUsage>,
}

/// The value below which `share` of `values` lie (nearest rank).
fn percentile(sorted: &[f64], share: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (share * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Messages per day, active people, reply times and each chatbot's use.
#[utoipa::path(get, path = "/insights/usage", tag = "insights", security(("bearer" = [])),
    params(UsageParams),
    responses((status = 200, body = UsageInsights), (status = 400, body = ErrorBody)))]
async fn usage(
    State(state): State<SharedState>,
    auth: Auth,
    Query(params): Query<UsageParams>,
) -> ApiResult<axum::Json<UsageInsights>> {
    let days = params.days.unwrap_or(30);
    if !(1..=90).contains(&days) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "days must be between 1 and 90",
        ));
    }
    let now = Utc::now();
    let first = now.date_naive() - Duration::days(i64::from(days) - 1);
    let activity = state.store.activity(&auth.0.scope(), first, now).await?;
    let mut sorted = activity.reply_seconds.clone();
    sorted.sort_by(f64::total_cmp);
    let counted = |date: NaiveDate| {
        activity
            .days
            .iter()
            .find(|(d, _, _)| *d == date)
            .map_or((0, 0), |(_, m, r)| (*m, *r))
    };
    Ok(axum::Json(UsageInsights {
        days: first
            .iter_days()
            .take(days as usize)
            .map(|date| {
                let (messages, replies) = counted(date);
                Day {
                    date,
                    messages,
                    replies,
                }
            })
            .collect(),
        active_people: ActivePeople {
            today: activity.people_today,
            week: activity.people_week,
        },
        reply_seconds: ReplyTimes {
            p50: percentile(&sorted, 0.5),
            p95: percentile(&sorted, 0.95),
            replies: sorted.len(),
        },
        chatbots: activity
            .chatbots
            .into_iter()
            .map(|(chatbot_id, messages, conversations)| ChatbotUsage {
                chatbot_id,
                messages,
                conversations,
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), Some(50.0));
        assert_eq!(percentile(&values, 0.95), Some(95.0));
        assert_eq!(percentile(&[7.0], 0.95), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}

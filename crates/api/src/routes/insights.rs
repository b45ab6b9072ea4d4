//! Insights: how an organization's assistants are used, as numbers only.
//! Usage is read by every role; patterns by category by owners, admins and
//! advisors, with k-anonymity ([`crate::patterns`]).

use axum::extract::State;
use chrono::{Datelike, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use steward_domain::ChatbotId;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Json, Query};
use crate::state::SharedState;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(usage))
        .routes(routes!(patterns))
        .routes(routes!(taxonomy, set_taxonomy, reset_taxonomy))
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
    /// Messages from people: written to the assistant (`direct`) or
    /// forwarded to it (an email forwarded, a Slack message shared, a
    /// WhatsApp or Telegram message marked forwarded).
    messages: i64,
    direct: i64,
    forwarded: i64,
    replies: i64,
    /// People who wrote that day.
    people: i64,
    /// Messages per person who wrote; null on a day nobody did.
    messages_per_person: Option<f64>,
    /// Skill loads (`use_skill`) that day.
    activations: i64,
    /// The share of the day's replies that loaded any skill (counted on
    /// the day of their first load); null without replies.
    activation_rate: Option<f64>,
    /// Ratings first given that day.
    feedback: Ratings,
    /// Each skill loaded that day, or whose replies' ratings count there.
    skills: Vec<SkillUsage>,
}

#[derive(Serialize, ToSchema)]
pub struct Week {
    /// Its Monday; the first and last weeks count only the period's days.
    starts: NaiveDate,
    messages: i64,
    direct: i64,
    forwarded: i64,
    replies: i64,
    /// People who wrote in the week (each once), its days outside the
    /// period included.
    people: i64,
    messages_per_person: Option<f64>,
    activations: i64,
    activation_rate: Option<f64>,
    feedback: Ratings,
    skills: Vec<SkillUsage>,
}

#[derive(Serialize, ToSchema)]
pub struct ActivePeople {
    /// Today (UTC).
    today: i64,
    /// In the last seven days, today included.
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

#[derive(Clone, Copy, Default, Serialize, ToSchema)]
pub struct Ratings {
    up: i64,
    down: i64,
    /// The share of ratings that are up; null without ratings.
    score: Option<f64>,
}

impl Ratings {
    fn add(self, more: Ratings) -> Self {
        Self::of(self.up + more.up, self.down + more.down)
    }

    fn of(up: i64, down: i64) -> Self {
        let rated = up + down;
        Self {
            up,
            down,
            score: (rated > 0).then(|| up as f64 / rated as f64),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ChatbotUsage {
    chatbot_id: ChatbotId,
    messages: i64,
    conversations: i64,
    /// Ratings of its replies first given in the period.
    feedback: Ratings,
}

#[derive(Clone, Serialize, ToSchema)]
pub struct SkillUsage {
    name: String,
    /// Times replies loaded it (`use_skill`).
    activations: i64,
    /// Ratings of the replies that loaded it.
    feedback: Ratings,
}

#[derive(Serialize, ToSchema)]
pub struct UsageInsights {
    /// Every day of the period, oldest first (days without messages too).
    days: Vec<Day>,
    /// Every week the period touches, oldest first.
    weeks: Vec<Week>,
    /// People who wrote: a person counts once whatever channels they use (a
    /// member's messages through the API, the console and channels linked
    /// to them are one person's); a message through an API key no member
    /// made counts no one.
    active_people: ActivePeople,
    reply_seconds: ReplyTimes,
    /// Each chatbot's messages, conversations started and ratings in the period.
    chatbots: Vec<ChatbotUsage>,
    /// Ratings of all replies, first given in the period.
    feedback: Ratings,
    /// Each skill replies loaded in the period, by name: its loads, and
    /// the ratings of the replies that loaded it.
    skills: Vec<SkillUsage>,
    /// The share of the period's replies that loaded any skill; null
    /// without replies.
    activation_rate: Option<f64>,
}

/// The value below which `share` of `values` lie (nearest rank).
fn percentile(sorted: &[f64], share: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (share * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn per_person(messages: i64, people: i64) -> Option<f64> {
    (people > 0).then(|| messages as f64 / people as f64)
}

fn rate(with_skills: i64, replies: i64) -> Option<f64> {
    (replies > 0).then(|| with_skills as f64 / replies as f64)
}

/// Each skill's use in `into` plus `more`, by name.
fn add_skills(into: &mut Vec<SkillUsage>, more: &[SkillUsage]) {
    for skill in more {
        match into.iter_mut().find(|s| s.name == skill.name) {
            Some(found) => {
                found.activations += skill.activations;
                found.feedback = found.feedback.add(skill.feedback);
            }
            None => into.push(skill.clone()),
        }
    }
    into.sort_by(|a, b| a.name.cmp(&b.name));
}

/// Per day and week: messages (direct and forwarded), replies, people,
/// skill loads, the activation rate, ratings and each skill's use; for the
/// period, each chatbot's and each skill's use and ratings; active people
/// and reply times. All read from counters kept as things happen.
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
    // Replies that loaded a skill, per day, for the rates of the weeks and
    // the period.
    let mut with_skills = std::collections::HashMap::new();
    let days: Vec<Day> = first
        .iter_days()
        .take(days as usize)
        .map(|date| {
            let counted = activity.days.iter().find(|d| d.day == date);
            let counted = counted.cloned().unwrap_or_default();
            with_skills.insert(date, counted.with_skills);
            let skills: Vec<SkillUsage> = counted
                .skills
                .iter()
                .map(|s| SkillUsage {
                    name: s.name.clone(),
                    activations: s.activations,
                    feedback: Ratings::of(s.rated_up, s.rated_down),
                })
                .collect();
            Day {
                date,
                messages: counted.received,
                direct: counted.received - counted.forwarded,
                forwarded: counted.forwarded,
                replies: counted.replied,
                people: counted.people,
                messages_per_person: per_person(counted.received, counted.people),
                activations: skills.iter().map(|s| s.activations).sum(),
                activation_rate: rate(counted.with_skills, counted.replied),
                feedback: Ratings::of(counted.rated_up, counted.rated_down),
                skills,
            }
        })
        .collect();
    let monday =
        |date: NaiveDate| date - Duration::days(i64::from(date.weekday().num_days_from_monday()));
    let mut weeks: Vec<Week> = Vec::new();
    let mut week_with_skills = 0;
    for day in &days {
        let starts = monday(day.date);
        if weeks.last().is_none_or(|w| w.starts != starts) {
            let people = activity
                .weeks
                .iter()
                .find(|(at, _)| *at == starts)
                .map_or(0, |(_, people)| *people);
            weeks.push(Week {
                starts,
                messages: 0,
                direct: 0,
                forwarded: 0,
                replies: 0,
                people,
                messages_per_person: None,
                activations: 0,
                activation_rate: None,
                feedback: Ratings::default(),
                skills: Vec::new(),
            });
            week_with_skills = 0;
        }
        let week = weeks.last_mut().expect("pushed above");
        week.messages += day.messages;
        week.direct += day.direct;
        week.forwarded += day.forwarded;
        week.replies += day.replies;
        week.messages_per_person = per_person(week.messages, week.people);
        week.activations += day.activations;
        week_with_skills += with_skills[&day.date];
        week.activation_rate = rate(week_with_skills, week.replies);
        week.feedback = week.feedback.add(day.feedback);
        add_skills(&mut week.skills, &day.skills);
    }
    let replies: i64 = days.iter().map(|d| d.replies).sum();
    let activation_rate = rate(with_skills.values().sum(), replies);
    let mut skills = Vec::new();
    for week in &weeks {
        add_skills(&mut skills, &week.skills);
    }
    let feedback = days
        .iter()
        .fold(Ratings::default(), |all, day| all.add(day.feedback));
    Ok(axum::Json(UsageInsights {
        days,
        weeks,
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
            .map(|c| ChatbotUsage {
                chatbot_id: c.chatbot_id,
                messages: c.received,
                conversations: c.started,
                feedback: Ratings::of(c.rated_up, c.rated_down),
            })
            .collect(),
        feedback,
        skills,
        activation_rate,
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PatternParams {
    /// The first day counted (its period included): YYYY-MM-DD. Default:
    /// 12 weeks, or 12 months, before `to`; at most 104 weeks, or 36
    /// months, are answered (the latest).
    from: Option<NaiveDate>,
    /// The last day counted (its period included); default today (UTC).
    to: Option<NaiveDate>,
    /// `week` (default; Monday to Sunday, UTC) or `month`.
    by: Option<By>,
    /// 1 (default): first-level categories; 2: second-level ones.
    #[param(minimum = 1, maximum = 2)]
    level: Option<u8>,
}

#[derive(Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum By {
    Week,
    Month,
}

#[derive(Serialize, ToSchema)]
pub struct PatternCell {
    category_l1: String,
    /// Null at level 1.
    category_l2: Option<String>,
    /// Null when suppressed.
    interactions: Option<i64>,
    /// Distinct people; null when suppressed.
    people: Option<i64>,
    /// Fewer than `min_people` people, or a value the numbers shown would
    /// give away.
    suppressed: bool,
}

#[derive(Serialize, ToSchema)]
pub struct PatternPeriod {
    /// Its first day: a Monday, or the 1st of a month.
    starts: NaiveDate,
    /// Answered interactions in the period; null when suppressed.
    interactions: Option<i64>,
    /// Distinct people; null when suppressed.
    people: Option<i64>,
    /// The whole period counts fewer than `min_people` people: nothing in
    /// it is shown.
    suppressed: bool,
    /// Categories with interactions in the period, shown or suppressed.
    categories: Vec<PatternCell>,
}

#[derive(Serialize, ToSchema)]
pub struct PatternInsights {
    by: String,
    level: u8,
    /// `insights.min_people`: the fewest people a number shown counts.
    min_people: u32,
    periods: Vec<PatternPeriod>,
}

/// Owners, admins and advisors; members read usage only.
fn require_insights(auth: &Auth) -> ApiResult<()> {
    if auth.0.role().reads_patterns() {
        Ok(())
    } else {
        Err(ApiError::forbidden())
    }
}

/// Answered interactions per category and period: counts only, with
/// k-anonymity. A cell counting fewer than `insights.min_people` distinct
/// people is suppressed, and so is any cell whose value the cells shown
/// (at either level) and the period's total would give away.
#[utoipa::path(get, path = "/insights/patterns", tag = "insights", security(("bearer" = [])),
    params(PatternParams),
    responses((status = 200, body = PatternInsights), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn patterns(
    State(state): State<SharedState>,
    auth: Auth,
    Query(params): Query<PatternParams>,
) -> ApiResult<axum::Json<PatternInsights>> {
    use steward_store::Span;
    require_insights(&auth)?;
    let invalid = |message: &str| ApiError::bad_request("invalid_query", message.to_owned());
    let span = match params.by.unwrap_or(By::Week) {
        By::Week => Span::Week,
        By::Month => Span::Month,
    };
    let level = params.level.unwrap_or(1);
    if !(1..=2).contains(&level) {
        return Err(invalid("level must be 1 or 2"));
    }
    let to = params.to.unwrap_or_else(|| Utc::now().date_naive());
    let last = span.period_of(to);
    let most = match span {
        Span::Week => 104,
        Span::Month => 36,
    };
    // From after to: no period at all.
    let first = match params.from {
        Some(from) => span.period_of(from).max(last - most + 1),
        None => last - 11,
    };
    let scope = auth.0.scope();
    let counts = state
        .store
        .pattern_counts(&scope, span, first, last)
        .await?;
    let k = i64::from(state.config.insights.min_people);
    let mut periods = Vec::new();
    for period in first..=last {
        let starts = span
            .first_day(period)
            .ok_or_else(|| invalid("the dates are out of range"))?;
        let here: Vec<&steward_store::PatternCount> =
            counts.iter().filter(|c| c.period == period).collect();
        let (total, total_people) = here
            .iter()
            .find(|c| c.category_l1.is_empty())
            .map_or((0, 0), |c| (c.interactions, c.people));
        let mut cells: Vec<crate::patterns::Cell> = here
            .iter()
            .filter(|c| !c.category_l1.is_empty())
            .map(|c| crate::patterns::Cell {
                l1: c.category_l1.clone(),
                l2: c.category_l2.clone(),
                interactions: c.interactions,
                people: c.people,
                suppressed: false,
            })
            .collect();
        // A period nobody wrote in has nobody to protect.
        let shown = total == 0 || crate::patterns::suppress(&mut cells, total, total_people, k);
        periods.push(PatternPeriod {
            starts,
            interactions: shown.then_some(total),
            people: shown.then_some(total_people),
            suppressed: !shown,
            categories: if shown {
                cells
                    .into_iter()
                    .filter(|c| c.l2.is_empty() == (level == 1))
                    .map(|c| PatternCell {
                        interactions: (!c.suppressed).then_some(c.interactions),
                        people: (!c.suppressed).then_some(c.people),
                        suppressed: c.suppressed,
                        category_l2: (level == 2).then_some(c.l2),
                        category_l1: c.l1,
                    })
                    .collect()
            } else {
                Vec::new()
            },
        });
    }
    *state
        .insights_queries
        .lock()
        .expect("the counter's lock")
        .entry(scope.org_id())
        .or_default() += 1;
    Ok(axum::Json(PatternInsights {
        by: span.as_str().to_owned(),
        level,
        min_people: state.config.insights.min_people,
        periods,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct TaxonomyDto {
    /// False while the organization uses the taxonomy Steward ships.
    custom: bool,
    taxonomy: steward_domain::Taxonomy,
}

/// The categories answered messages are counted under: the organization's
/// own, or the one Steward ships for workplace assistants.
#[utoipa::path(get, path = "/insights/taxonomy", tag = "insights", security(("bearer" = [])),
    responses((status = 200, body = TaxonomyDto), (status = 403, body = ErrorBody)))]
async fn taxonomy(
    State(state): State<SharedState>,
    auth: Auth,
) -> ApiResult<axum::Json<TaxonomyDto>> {
    require_insights(&auth)?;
    let own = state.store.taxonomy(&auth.0.scope()).await?;
    Ok(axum::Json(TaxonomyDto {
        custom: own.is_some(),
        taxonomy: own.unwrap_or_else(steward_domain::Taxonomy::workplace),
    }))
}

/// Replaces the organization's taxonomy (owners and admins): names are
/// trimmed and categories of one name merged, and the taxonomy as kept is
/// answered. Messages counted already keep their labels; new ones are
/// labelled with these.
#[utoipa::path(put, path = "/insights/taxonomy", tag = "insights", security(("bearer" = [])),
    request_body = steward_domain::Taxonomy,
    responses((status = 200, body = TaxonomyDto), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn set_taxonomy(
    State(state): State<SharedState>,
    auth: Auth,
    Json(taxonomy): Json<steward_domain::Taxonomy>,
) -> ApiResult<axum::Json<TaxonomyDto>> {
    auth.require_admin()?;
    let taxonomy = taxonomy
        .normalized()
        .map_err(|why| ApiError::unprocessable("invalid_taxonomy", why))?;
    state
        .store
        .set_taxonomy(&auth.0.scope(), Some(&taxonomy))
        .await?;
    Ok(axum::Json(TaxonomyDto {
        custom: true,
        taxonomy,
    }))
}

/// Goes back to the taxonomy Steward ships (owners and admins).
#[utoipa::path(delete, path = "/insights/taxonomy", tag = "insights", security(("bearer" = [])),
    responses((status = 200, body = TaxonomyDto), (status = 403, body = ErrorBody)))]
async fn reset_taxonomy(
    State(state): State<SharedState>,
    auth: Auth,
) -> ApiResult<axum::Json<TaxonomyDto>> {
    auth.require_admin()?;
    state.store.set_taxonomy(&auth.0.scope(), None).await?;
    Ok(axum::Json(TaxonomyDto {
        custom: false,
        taxonomy: steward_domain::Taxonomy::workplace(),
    }))
}

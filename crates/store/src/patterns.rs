//! [`PatternStore`]: answered messages labelled with a category of the
//! organization's taxonomy, and counts per category and period for
//! insights. Numbers only: which person asked what is never read back.

use async_trait::async_trait;
use steward_domain::MessageId;
use steward_domain::taxonomy::{Label, Taxonomy};

use crate::{StoreResult, TenantScope};

/// The periods patterns are counted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    /// Monday to Sunday (UTC), numbered as `week_of` numbers them.
    Week,
    /// A calendar month (UTC), numbered year * 12 + month - 1.
    Month,
}

impl Span {
    pub fn as_str(self) -> &'static str {
        match self {
            Span::Week => "week",
            Span::Month => "month",
        }
    }

    /// The number of the period holding `day`.
    pub fn period_of(self, day: chrono::NaiveDate) -> i64 {
        use chrono::Datelike;
        match self {
            Span::Week => crate::sql::messages::week_of(crate::sql::messages::day_number(day)),
            Span::Month => i64::from(day.year()) * 12 + i64::from(day.month0()),
        }
    }

    /// The first day of period `period`.
    pub fn first_day(self, period: i64) -> Option<chrono::NaiveDate> {
        match self {
            Span::Week => chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?
                .checked_add_signed(chrono::Duration::days(period * 7 - 3)),
            Span::Month => chrono::NaiveDate::from_ymd_opt(
                i32::try_from(period.div_euclid(12)).ok()?,
                u32::try_from(period.rem_euclid(12)).ok()? + 1,
                1,
            ),
        }
    }
}

/// One cell: interactions and distinct people in a period and category.
/// `category_l2` is empty for a whole first-level category, and both are
/// empty for the whole period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternCount {
    pub period: i64,
    pub category_l1: String,
    pub category_l2: String,
    pub interactions: i64,
    pub people: i64,
}

#[async_trait]
pub trait PatternStore: Send + Sync {
    /// The organization's own taxonomy; None when it uses the shipped one.
    async fn taxonomy(&self, scope: &TenantScope) -> StoreResult<Option<Taxonomy>>;

    /// Replaces the organization's taxonomy (None: back to the shipped
    /// one); audited. Counts already made keep their labels.
    async fn set_taxonomy(
        &self,
        scope: &TenantScope,
        taxonomy: Option<&Taxonomy>,
    ) -> StoreResult<()>;

    /// Labels the person's message `message` and counts it in its week and
    /// month, at both levels, in one transaction; false (nothing counted)
    /// when it is labelled already or gone.
    async fn record_pattern(
        &self,
        scope: &TenantScope,
        message: MessageId,
        label: &Label,
    ) -> StoreResult<bool>;

    /// Whether the message is labelled (counted) already.
    async fn labelled(&self, scope: &TenantScope, message: MessageId) -> StoreResult<bool>;

    /// Every cell of the periods `from..=to` of `span`.
    async fn pattern_counts(
        &self,
        scope: &TenantScope,
        span: Span,
        from: i64,
        to: i64,
    ) -> StoreResult<Vec<PatternCount>>;
}

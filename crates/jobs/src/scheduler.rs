//! The scheduler: turns cron schedules into jobs. Any number may run; one leads
//! (see `Store::try_lead`) and enqueues. Every firing is enqueued under the
//! dedupe key `schedule:{name}:{fire time}`, so two leaders overlapping during
//! a hand-over cannot enqueue a firing twice, and a new leader safely enqueues
//! the firings it finds missed within the catch-up window.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use steward_domain::JobArgs;
use steward_store::{Leadership, NewJob, Store, now};

/// The name scheduler processes compete to lead.
const LEADERSHIP: &str = "scheduler";
/// Never enqueue more than this many firings of one schedule in one tick.
const MAX_FIRINGS_PER_TICK: usize = 1000;

/// A cron pattern and the job it enqueues.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub name: String,
    pub cron: Cron,
    /// The job of every firing, less its dedupe key and attempts.
    job: NewJob,
}

impl Schedule {
    /// Parses `pattern` (UTC; five fields, or six with seconds first).
    pub fn new<A: JobArgs>(name: &str, pattern: &str, args: &A) -> Result<Self, String> {
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(pattern)
            .map_err(|e| format!("schedule '{name}': '{pattern}' is not a cron pattern: {e}"))?;
        Ok(Self {
            name: name.to_owned(),
            cron,
            job: NewJob::of(args, 1),
        })
    }

    /// Firing times in (after, until], oldest first.
    fn firings(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut cursor = after;
        while out.len() < MAX_FIRINGS_PER_TICK {
            match self.cron.find_next_occurrence(&cursor, false) {
                Ok(next) if next <= until => {
                    out.push(next);
                    cursor = next;
                }
                _ => break,
            }
        }
        out
    }
}

#[derive(Clone, Debug)]
pub struct SchedulerSettings {
    /// How long leadership outlives a leader that stops renewing it.
    pub lease: Duration,
    /// How often the leader looks for due firings (and renews its lease).
    pub tick: Duration,
    /// How far back a new leader looks for missed firings.
    pub catch_up: Duration,
    pub max_attempts: i32,
}

pub struct Scheduler {
    id: String,
    store: Arc<dyn Store>,
    schedules: Vec<Schedule>,
    settings: SchedulerSettings,
}

impl Scheduler {
    pub fn new(
        store: Arc<dyn Store>,
        schedules: Vec<Schedule>,
        settings: SchedulerSettings,
    ) -> Self {
        let id = crate::holder_id("scheduler");
        Self {
            id,
            store,
            schedules,
            settings,
        }
    }

    /// Runs until `shutdown` completes; resigns leadership on the way out.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let lease = chrono::Duration::from_std(self.settings.lease)
            .unwrap_or(chrono::Duration::seconds(15));
        let catch_up = chrono::Duration::from_std(self.settings.catch_up)
            .unwrap_or(chrono::Duration::minutes(5));
        let mut leading: Option<(Box<dyn Leadership>, DateTime<Utc>)> = None;
        tracing::info!(scheduler = %self.id, schedules = self.schedules.len(), "scheduler started");
        loop {
            leading = match leading.take() {
                None => match self.store.try_lead(LEADERSHIP, &self.id, lease).await {
                    Ok(Some(leadership)) => {
                        tracing::info!(scheduler = %self.id, "leading the schedules");
                        Some((leadership, now() - catch_up))
                    }
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not ask for leadership");
                        None
                    }
                },
                Some((mut leadership, checked_until)) => match leadership.still_leading().await {
                    Ok(true) => Some((leadership, checked_until)),
                    Ok(false) => {
                        tracing::warn!(scheduler = %self.id, "lost leadership");
                        None
                    }
                    // Keep leading through a passing error; the lease (or lock) decides.
                    Err(e) => {
                        tracing::warn!(error = %e, "could not renew leadership");
                        Some((leadership, checked_until))
                    }
                },
            };
            if let Some((_, checked_until)) = leading.as_mut() {
                *checked_until = self.enqueue_due(*checked_until).await;
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(self.settings.tick) => {}
            }
        }
        if let Some((leadership, _)) = leading {
            leadership.resign().await;
        }
        tracing::info!(scheduler = %self.id, "scheduler stopped");
    }

    /// Enqueues every firing after `checked_until` up to now; returns how far it
    /// got (not past a firing that could not be enqueued, so it is tried again).
    async fn enqueue_due(&self, checked_until: DateTime<Utc>) -> DateTime<Utc> {
        let until = now();
        let mut reached = until;
        for schedule in &self.schedules {
            let firings = schedule.firings(checked_until, until);
            if let (MAX_FIRINGS_PER_TICK, Some(last)) = (firings.len(), firings.last()) {
                // More are due than one tick enqueues: continue from here next tick.
                reached = reached.min(*last);
            }
            let Some(first) = firings.first().copied() else {
                continue;
            };
            let jobs = firings
                .iter()
                .map(|fire_at| NewJob {
                    dedupe_key: Some(format!(
                        "schedule:{}:{}",
                        schedule.name,
                        fire_at.to_rfc3339()
                    )),
                    max_attempts: self.settings.max_attempts,
                    ..schedule.job.clone()
                })
                .collect();
            // All of a schedule's due firings in one transaction: after a
            // long stop they are many, and none is stored unless all are.
            match self.store.enqueue_many(jobs).await {
                Ok(stored) if stored.is_empty() => {}
                Ok(stored) => {
                    tracing::debug!(schedule = %schedule.name, enqueued = stored.len(), "enqueued")
                }
                Err(e) => {
                    tracing::warn!(schedule = %schedule.name, error = %e, "could not enqueue its firings; will retry");
                    reached = reached.min(first - chrono::Duration::microseconds(1));
                }
            }
        }
        reached
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firings_are_every_match_in_the_window_oldest_first() {
        let hourly =
            Schedule::new("m", "17 * * * *", &steward_domain::jobs::MaintenanceArgs {}).unwrap();
        let after = DateTime::parse_from_rfc3339("2026-11-22T06:00:00Z")
            .unwrap()
            .to_utc();
        let until = DateTime::parse_from_rfc3339("2026-11-22T09:17:00Z")
            .unwrap()
            .to_utc();
        let firings: Vec<String> = hourly
            .firings(after, until)
            .iter()
            .map(|t| t.to_rfc3339())
            .collect();
        assert_eq!(
            firings,
            [
                "2026-11-22T06:17:00+00:00",
                "2026-11-22T07:17:00+00:00",
                "2026-11-22T08:17:00+00:00",
                "2026-11-22T09:17:00+00:00"
            ]
        );
        assert!(
            hourly.firings(until, until).is_empty(),
            "the window's start is excluded"
        );
        let every_second = Schedule::new(
            "s",
            "* * * * * *",
            &steward_domain::jobs::MaintenanceArgs {},
        )
        .unwrap();
        assert_eq!(
            every_second
                .firings(after, after + chrono::Duration::hours(2))
                .len(),
            MAX_FIRINGS_PER_TICK
        );
    }

    #[test]
    fn bad_patterns_are_refused_with_the_schedule_named() {
        let err = Schedule::new(
            "maintenance",
            "every hour",
            &steward_domain::jobs::MaintenanceArgs {},
        )
        .unwrap_err();
        assert!(
            err.contains("maintenance") && err.contains("every hour"),
            "{err}"
        );
        assert!(
            Schedule::new("m", "61 * * * *", &steward_domain::jobs::MaintenanceArgs {}).is_err()
        );
    }
}

//! Background work: the [`Worker`] claims jobs from the store's queue and runs
//! the [`JobHandler`] registered for each kind, keeping their leases alive,
//! retrying with backoff, and giving jobs back when it stops.

mod backoff;
mod maintenance;
mod scheduler;
mod worker;

pub use backoff::retry_delay;
pub use maintenance::Maintenance;
pub use scheduler::{Schedule, Scheduler, SchedulerSettings};
pub use worker::{JobError, JobHandler, Worker, WorkerSettings};

/// A name for this process among its role's others, for leases and logs:
/// the host (a pod's name under Kubernetes), the process id and a random
/// suffix, so that a restarted process is never taken for its predecessor.
pub fn holder_id(role: &str) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| role.into());
    format!(
        "{host}-{}-{}",
        std::process::id(),
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    )
}

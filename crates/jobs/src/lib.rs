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

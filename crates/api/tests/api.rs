//! Black-box tests: Steward on port 0, spoken to over HTTP. They run on SQLite,
//! or on PostgreSQL when STEWARD_TEST_POSTGRES_URL is set.

#[path = "api/auth.rs"]
mod auth;
#[path = "api/bad_input.rs"]
mod bad_input;
#[path = "api/console.rs"]
mod console;
#[path = "api/idempotency.rs"]
mod idempotency;
#[path = "api/insights.rs"]
mod insights;
#[path = "api/management.rs"]
mod management;
#[path = "api/ops.rs"]
mod ops;
#[path = "api/patterns.rs"]
mod patterns;
#[path = "api/people.rs"]
mod people;
#[path = "api/skills.rs"]
mod skills;
#[path = "api/sso.rs"]
mod sso;
#[path = "api/tenancy.rs"]
mod tenancy;
#[path = "api/tools.rs"]
mod tools;
#[path = "api/webchat.rs"]
mod webchat;
#[path = "api/webhook_limits.rs"]
mod webhook_limits;

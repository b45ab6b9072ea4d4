//! Not a test: what this run of the tests skipped, in `cargo test`'s own
//! output. A test whose service is not configured passes by skipping (it
//! says `skipped: backend not configured` in output `cargo test` hides), so
//! without this summary a short run looks like a whole one.

use std::path::Path;

/// Suites that run only when a service is configured: what they cover, and
/// how to enable them.
const SUITES: &[(&str, &str, &str)] = &[
    (
        "STEWARD_TEST_POSTGRES_URL",
        "every suite's PostgreSQL half",
        "STEWARD_TEST_POSTGRES_URL=$(scripts/postgres16)",
    ),
    (
        "STEWARD_TEST_IMAP",
        "the email channel against real IMAP and SMTP servers",
        "eval \"$(sudo scripts/mail-servers)\"",
    ),
    (
        "STEWARD_TEST_REDIS_URL",
        "rate limits shared through Redis",
        "STEWARD_TEST_REDIS_URL=redis://127.0.0.1:6379",
    ),
    (
        "STEWARD_TEST_S3_ENDPOINT",
        "the S3 blob store and backups to S3",
        "eval \"$(scripts/s3-server)\"",
    ),
    (
        "STEWARD_EMBEDDINGS_URL",
        "retrieval quality with a real embedding model",
        "eval \"$(scripts/embedder)\"",
    ),
    (
        "STEWARD_TEST_OIDC_ISSUER",
        "single sign-on against a real OpenID provider",
        "eval \"$(scripts/oidc-provider)\"",
    ),
    (
        "STEWARD_TEST_MCP_SHOP",
        "tools against MCP servers others wrote",
        "eval \"$(scripts/mcp-servers)\"",
    ),
];

fn main() {
    // cargo nextest asks each test binary for its tests: this one has none.
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let mut skipped: Vec<(String, String)> = Vec::new();
    for (variable, what, how) in SUITES {
        if std::env::var(variable).is_ok_and(|v| !v.is_empty()) {
            continue;
        }
        skipped.push((what.to_string(), format!("{variable} is not set: {how}")));
    }
    if !(Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists()) {
        skipped.push((
            "the console in a real browser".into(),
            "no /usr/bin/chromium and /usr/bin/chromedriver: apt-get install chromium chromium-driver".into(),
        ));
    }
    if !["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .any(|path| Path::new(path).exists())
    {
        skipped.push((
            "the scaled-out tiers behind a load balancer".into(),
            "no nginx: apt-get install nginx-light".into(),
        ));
    }
    if !is_root() {
        skipped.push((
            "a backup onto a full disk".into(),
            "mounting its small tmpfs needs root".into(),
        ));
    }
    if skipped.is_empty() {
        println!("\nskipped: no suite; every service the tests use is configured\n");
        return;
    }
    // One line each, so that a script can read them (`.ci/run` does).
    println!();
    for (what, enable) in &skipped {
        println!("skipped: {what}, which passed without running ({enable})");
    }
    println!();
}

/// Whether this process runs as root (its real user id is 0).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().next())
            == Some("0")
    })
}

//! Webhook rate limits shared by API replicas through a real Redis
//! (STEWARD_TEST_REDIS_URL; CI sets it).

use steward_api::ratelimit::WebhookLimiter;
use steward_domain::ChannelId;

#[tokio::test]
async fn replicas_share_one_budget_per_channel_through_redis() {
    let Ok(url) = std::env::var("STEWARD_TEST_REDIS_URL") else {
        eprintln!("skipped: backend not configured (STEWARD_TEST_REDIS_URL)");
        return;
    };
    // Two API replicas: one request per second on average, three at once.
    let a = WebhookLimiter::new(1, 3, Some(&url)).unwrap();
    let b = WebhookLimiter::new(1, 3, Some(&url)).unwrap();
    let channel = ChannelId::new();
    assert!(a.check(channel).await.is_ok());
    assert!(b.check(channel).await.is_ok());
    assert!(a.check(channel).await.is_ok());
    let wait = b
        .check(channel)
        .await
        .expect_err("the fourth request in a burst of three");
    assert!(wait.as_millis() > 0 && wait.as_secs() <= 1, "{wait:?}");
    // Another channel has its own budget.
    assert!(b.check(ChannelId::new()).await.is_ok());
}

#[tokio::test]
async fn an_unreachable_redis_lets_webhooks_through() {
    // Port 1 refuses connections: losing webhooks would be worse than a burst.
    let limiter = WebhookLimiter::new(1, 1, Some("redis://127.0.0.1:1/")).unwrap();
    let channel = ChannelId::new();
    for _ in 0..3 {
        assert!(limiter.check(channel).await.is_ok());
    }
}

#[tokio::test]
async fn without_redis_each_process_limits_on_its_own() {
    let limiter = WebhookLimiter::new(1, 2, None).unwrap();
    let channel = ChannelId::new();
    assert!(limiter.check(channel).await.is_ok());
    assert!(limiter.check(channel).await.is_ok());
    assert!(limiter.check(channel).await.is_err());
    assert!(WebhookLimiter::new(0, 1, None).is_err());
    assert!(WebhookLimiter::new(1, 1, Some("not a url")).is_err());
}

//! Webhook rate limits per channel: in this process, or shared by every API
//! replica through Redis when `redis.url` is set. Both are GCRA (a token
//! bucket without a timer): `per_second` on average, `burst` at once.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use redis::aio::ConnectionManager;
use steward_domain::ChannelId;
use tokio::sync::OnceCell;

pub enum WebhookLimiter {
    Local(DefaultKeyedRateLimiter<ChannelId>),
    Redis(RedisLimiter),
}

pub struct RedisLimiter {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    script: redis::Script,
    interval_micros: u64,
    burst: u32,
}

/// GCRA on one key holding the "theoretical arrival time" in microseconds of
/// the Redis server's clock, so replicas need not agree on time. Returns 0 when
/// the request may pass, else the microseconds to wait.
const GCRA: &str = r"
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now_us)
if tat < now_us then tat = now_us end
local new_tat = tat + interval
local allowed_at = new_tat - interval * burst
if allowed_at > now_us then
  return allowed_at - now_us
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now_us) / 1000) + 1)
return 0
";

impl WebhookLimiter {
    pub fn new(per_second: u32, burst: u32, redis_url: Option<&str>) -> Result<Self, String> {
        let rate = NonZeroU32::new(per_second).ok_or("webhook rate must be above 0")?;
        let burst_n = NonZeroU32::new(burst).ok_or("webhook burst must be above 0")?;
        match redis_url {
            None => Ok(Self::Local(RateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst_n),
            ))),
            Some(url) => Ok(Self::Redis(RedisLimiter {
                client: redis::Client::open(url).map_err(|e| format!("redis.url: {e}"))?,
                connection: OnceCell::new(),
                script: redis::Script::new(GCRA),
                interval_micros: 1_000_000 / u64::from(rate.get()),
                burst,
            })),
        }
    }

    /// Ok, or how long the caller should wait. If Redis cannot be reached the
    /// request passes: losing a webhook is worse than admitting a burst.
    pub async fn check(&self, channel: ChannelId) -> Result<(), Duration> {
        match self {
            Self::Local(limiter) => limiter
                .check_key(&channel)
                .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now())),
            Self::Redis(redis) => match redis.check(channel).await {
                Ok(0) => Ok(()),
                Ok(wait_micros) => Err(Duration::from_micros(wait_micros)),
                Err(e) => {
                    tracing::warn!(error = %e, "webhook rate limit: Redis unavailable, request let through");
                    metrics::counter!("steward_rate_limit_errors_total").increment(1);
                    Ok(())
                }
            },
        }
    }
}

impl RedisLimiter {
    async fn check(&self, channel: ChannelId) -> redis::RedisResult<u64> {
        let connection = self
            .connection
            .get_or_try_init(|| async {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(1)))
                    .set_response_timeout(Some(Duration::from_secs(1)))
                    .set_number_of_retries(1);
                self.client.get_connection_manager_with_config(config).await
            })
            .await?;
        let mut connection = connection.clone();
        self.script
            .key(format!("steward:ratelimit:webhook:{channel}"))
            .arg(self.interval_micros)
            .arg(self.burst)
            .invoke_async(&mut connection)
            .await
    }
}

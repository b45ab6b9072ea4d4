//! How long to wait before retrying a failed attempt.

use std::time::Duration;

/// Never wait longer than this between attempts.
const MAX_DELAY: Duration = Duration::from_secs(3600);

/// Exponential backoff with jitter: `base × 2^(attempt-1)`, capped at an hour,
/// then scaled by a random factor in [0.5, 1.0] so that jobs failing together
/// do not retry together.
pub fn retry_delay(base: Duration, attempt: i32) -> Duration {
    let exponent = attempt.saturating_sub(1).clamp(0, 30) as u32;
    let full = base.saturating_mul(1 << exponent).min(MAX_DELAY);
    full.mul_f64(0.5 + rand::random::<f64>() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_with_jitter_and_stop_growing_at_an_hour() {
        let base = Duration::from_secs(2);
        for attempt in 1..=5 {
            let full = base * (1 << (attempt - 1));
            for _ in 0..50 {
                let delay = retry_delay(base, attempt);
                assert!(
                    delay >= full / 2 && delay <= full,
                    "attempt {attempt}: {delay:?}"
                );
            }
        }
        for attempt in [20, 31, 1000, i32::MAX] {
            assert!(retry_delay(base, attempt) <= MAX_DELAY);
        }
        assert!(retry_delay(base, 0) <= base && retry_delay(base, -3) <= base);
    }
}

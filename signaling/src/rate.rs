//! Token bucket for per-connection message rate. Time is an argument, so it is testable.

use std::time::Instant;

#[derive(Debug, Clone)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    pub fn new(per_second: f64, burst: f64, now: Instant) -> Self {
        Self {
            per_second,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_a_burst_then_the_steady_rate() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(10.0, 5.0, t0);
        assert_eq!((0..8).filter(|_| limiter.allow(t0)).count(), 5);
        // 1 s later: 10 tokens accrue but the bucket holds 5.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..8).filter(|_| limiter.allow(t1)).count(), 5);
        // 100 ms later: one token.
        let t2 = t1 + Duration::from_millis(100);
        assert!(limiter.allow(t2));
        assert!(!limiter.allow(t2));
    }
}

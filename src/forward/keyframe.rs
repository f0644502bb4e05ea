//! Keyframe request throttle, one per published video stream: requests from every subscriber
//! are collapsed into at most one PLI per interval, so a weak subscriber's stream of PLIs never
//! makes the publisher's encoder spew keyframes at everyone.

use std::time::{Duration, Instant};

/// Minimum gap between keyframe requests sent to one publisher stream.
pub const DEFAULT_KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send a PLI now.
    Send,
    /// Collapsed into one already sent; it is sent later if no keyframe arrives meanwhile.
    Suppressed,
}

#[derive(Debug, Clone)]
pub struct KeyframeThrottle {
    interval: Duration,
    last_sent: Option<Instant>,
    /// A request arrived while throttled and no keyframe has answered it yet.
    pending: bool,
}

impl KeyframeThrottle {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last_sent: None,
            pending: false,
        }
    }

    pub fn on_request(&mut self, now: Instant) -> Decision {
        match self.last_sent {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.pending = true;
                Decision::Suppressed
            }
            _ => {
                self.last_sent = Some(now);
                self.pending = false;
                Decision::Send
            }
        }
    }

    /// A keyframe arrived: it answers every request made so far.
    pub fn on_keyframe(&mut self) {
        self.pending = false;
    }

    /// Whether a suppressed request is now due.
    pub fn poll(&mut self, now: Instant) -> bool {
        if self.pending && self.poll_timeout().is_some_and(|t| now >= t) {
            self.last_sent = Some(now);
            self.pending = false;
            return true;
        }
        false
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.pending {
            return None;
        }
        self.last_sent.map(|t| t + self.interval)
    }
}

impl Default for KeyframeThrottle {
    fn default() -> Self {
        Self::new(DEFAULT_KEYFRAME_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn collapses_a_storm_into_one_request_per_interval() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(ms(500));
        // 3 subscribers ask every 50 ms for 2 s: 120 requests.
        let mut sent = 0;
        for i in 0..40u64 {
            let now = t0 + ms(i * 50);
            for _ in 0..3 {
                if k.on_request(now) == Decision::Send {
                    sent += 1;
                }
            }
            if k.poll(now) {
                sent += 1;
            }
        }
        assert!((4..=5).contains(&sent), "sent {sent}");
    }

    #[test]
    fn a_suppressed_request_is_sent_when_no_keyframe_came() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(ms(500));
        assert_eq!(k.on_request(t0), Decision::Send);
        assert_eq!(k.on_request(t0 + ms(100)), Decision::Suppressed);
        assert_eq!(k.poll_timeout(), Some(t0 + ms(500)));
        assert!(!k.poll(t0 + ms(499)));
        assert!(k.poll(t0 + ms(500)));
        assert!(!k.poll(t0 + ms(1500)), "only once");
    }

    #[test]
    fn a_keyframe_answers_pending_requests() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(ms(500));
        k.on_request(t0);
        k.on_request(t0 + ms(10));
        k.on_keyframe();
        assert_eq!(k.poll_timeout(), None);
        assert!(!k.poll(t0 + ms(600)));
        assert_eq!(k.on_request(t0 + ms(600)), Decision::Send);
    }
}

//! Keyframe requests to one published video track: requests from every subscriber are
//! collapsed into at most one PLI per layer per interval, so a weak subscriber's stream of PLIs
//! never makes the publisher's encoder spew keyframes at everyone; and requests for different
//! layers of the track are spaced out, because the browser drops those that come too close.

use std::time::{Duration, Instant};

/// Minimum gap between keyframe requests sent for one layer.
pub const DEFAULT_KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);

/// Minimum gap between keyframe requests sent for any two layers of one track. Chromium drops
/// a request that comes within 300 ms of the last one it acted on for the same track, whichever
/// layer each was for (libwebrtc's `EncoderRtcpFeedback`, one clock for all of a track's
/// SSRCs), and answers per layer: the restart after an outage asked for `f` and `q` at once,
/// only `f` came, and `q`'s keyframe came 2.5 s later in each of 4 runs. Margin for the request
/// to arrive later than the one before it.
pub const TRACK_GAP: Duration = Duration::from_millis(350);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send a PLI now.
    Send,
    /// Collapsed into one already sent, or held back for the track gap; sent later (`poll`)
    /// if no keyframe of that layer arrives meanwhile.
    Suppressed,
}

#[derive(Debug, Clone, Copy, Default)]
struct LayerRequests {
    last_sent: Option<Instant>,
    /// A request arrived while held back and no keyframe has answered it yet.
    pending: bool,
}

#[derive(Debug, Clone)]
pub struct KeyframeThrottle {
    interval: Duration,
    gap: Duration,
    layers: [LayerRequests; 3],
    /// The last request sent for any layer.
    last_sent: Option<Instant>,
}

impl KeyframeThrottle {
    pub fn new(interval: Duration, gap: Duration) -> Self {
        Self {
            interval,
            gap,
            layers: [LayerRequests::default(); 3],
            last_sent: None,
        }
    }

    /// When a request for `spatial` may go out.
    fn allowed_at(&self, spatial: usize) -> Option<Instant> {
        let layer = self.layers[spatial].last_sent.map(|t| t + self.interval);
        let track = self.last_sent.map(|t| t + self.gap);
        layer.max(track)
    }

    fn send(&mut self, spatial: usize, now: Instant) {
        self.layers[spatial] = LayerRequests {
            last_sent: Some(now),
            pending: false,
        };
        self.last_sent = Some(now);
    }

    pub fn on_request(&mut self, spatial: u8, now: Instant) -> Decision {
        let s = usize::from(spatial.min(2));
        if self.allowed_at(s).is_some_and(|t| now < t) {
            self.layers[s].pending = true;
            return Decision::Suppressed;
        }
        self.send(s, now);
        Decision::Send
    }

    /// A keyframe of `spatial` arrived: it answers every request for that layer made so far.
    pub fn on_keyframe(&mut self, spatial: u8) {
        self.layers[usize::from(spatial.min(2))].pending = false;
    }

    /// The publisher's path was dead (an outage, a moved address): requests sent on it never
    /// arrived, so the next one goes out at once instead of waiting out the interval (4 s
    /// outage: a PLI sent 1 s before the link returned held back the restart's request).
    pub fn path_restarted(&mut self) {
        for l in &mut self.layers {
            l.last_sent = None;
        }
        self.last_sent = None;
    }

    /// Drops held-back requests (the publisher cannot be reached now).
    pub fn cancel(&mut self) {
        for l in &mut self.layers {
            l.pending = false;
        }
    }

    /// A held-back request now due, lowest layer first (the smallest keyframe, the quickest
    /// picture); one per call, as each sent request holds the others back by the gap.
    pub fn poll(&mut self, now: Instant) -> Option<u8> {
        let s = (0..3)
            .find(|&s| self.layers[s].pending && self.allowed_at(s).is_none_or(|t| now >= t))?;
        self.send(s, now);
        // `s` < 3, from the range above.
        Some(s as u8)
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        (0..3)
            .filter(|&s| self.layers[s].pending)
            .filter_map(|s| self.allowed_at(s))
            .min()
    }
}

impl Default for KeyframeThrottle {
    fn default() -> Self {
        Self::new(DEFAULT_KEYFRAME_INTERVAL, TRACK_GAP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn throttle() -> KeyframeThrottle {
        KeyframeThrottle::new(ms(500), ms(350))
    }

    #[test]
    fn collapses_a_storm_into_one_request_per_interval() {
        let t0 = Instant::now();
        let mut k = throttle();
        // 3 subscribers ask for one layer every 50 ms for 2 s: 120 requests.
        let mut sent = 0;
        for i in 0..40u64 {
            let now = t0 + ms(i * 50);
            for _ in 0..3 {
                if k.on_request(1, now) == Decision::Send {
                    sent += 1;
                }
            }
            while k.poll(now).is_some() {
                sent += 1;
            }
        }
        assert!((4..=5).contains(&sent), "sent {sent}");
    }

    #[test]
    fn a_suppressed_request_is_sent_when_no_keyframe_came() {
        let t0 = Instant::now();
        let mut k = throttle();
        assert_eq!(k.on_request(0, t0), Decision::Send);
        assert_eq!(k.on_request(0, t0 + ms(100)), Decision::Suppressed);
        assert_eq!(k.poll_timeout(), Some(t0 + ms(500)));
        assert_eq!(k.poll(t0 + ms(499)), None);
        assert_eq!(k.poll(t0 + ms(500)), Some(0));
        assert_eq!(k.poll(t0 + ms(1500)), None, "only once");
    }

    #[test]
    fn requests_for_different_layers_are_spaced_by_the_gap() {
        let t0 = Instant::now();
        let mut k = throttle();
        // (ms, layer asked for or None for a poll, expected: Some(sent layer) / None)
        let steps: &[(u64, Option<u8>, Option<u8>)] = &[
            (0, Some(0), Some(0)),
            // f right after q: the browser would drop it.
            (0, Some(2), None),
            (10, Some(1), None),
            (349, None, None),
            // Due at the gap, lowest first, then the next one a gap later.
            (350, None, Some(1)),
            (350, None, None),
            (699, None, None),
            (700, None, Some(2)),
            (2000, None, None),
            // Long after: the first request goes out at once.
            (2000, Some(2), Some(2)),
        ];
        for &(at, ask, want) in steps {
            let now = t0 + ms(at);
            let got = match ask {
                Some(l) => (k.on_request(l, now) == Decision::Send).then_some(l),
                None => k.poll(now),
            };
            assert_eq!(got, want, "at {at} ms, asked {ask:?}");
        }
    }

    #[test]
    fn after_a_path_restart_the_next_request_goes_out_at_once() {
        let t0 = Instant::now();
        let mut k = throttle();
        assert_eq!(k.on_request(2, t0), Decision::Send);
        assert_eq!(k.on_request(2, t0 + ms(100)), Decision::Suppressed);
        k.path_restarted();
        assert_eq!(k.on_request(2, t0 + ms(150)), Decision::Send);
        k.on_request(1, t0 + ms(160));
        k.cancel();
        assert_eq!(k.poll_timeout(), None, "cancelled");
        assert_eq!(
            k.poll_timeout(),
            None,
            "the pending request went out with it"
        );
        assert_eq!(
            k.on_request(0, t0 + ms(150)),
            Decision::Suppressed,
            "gap after it"
        );
        assert_eq!(k.poll_timeout(), Some(t0 + ms(500)));
    }

    #[test]
    fn a_keyframe_answers_pending_requests_of_its_layer() {
        let t0 = Instant::now();
        let mut k = throttle();
        k.on_request(0, t0);
        k.on_request(0, t0 + ms(10));
        k.on_request(1, t0 + ms(10));
        k.on_keyframe(0);
        assert_eq!(k.poll_timeout(), Some(t0 + ms(350)), "h still waits");
        assert_eq!(k.poll(t0 + ms(600)), Some(1));
        assert_eq!(k.poll(t0 + ms(600)), None);
        assert_eq!(k.on_request(0, t0 + ms(1000)), Decision::Send);
    }
}

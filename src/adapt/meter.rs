//! Bitrate of one incoming layer over a sliding window, from packet sizes and arrival times.
//! Pure: time is an argument; a fixed ring of buckets, no allocation per packet.

use std::time::{Duration, Instant};

const BUCKETS: usize = 10;
const BUCKET: Duration = Duration::from_millis(100);

/// Bits per second over the last second.
#[derive(Debug, Clone)]
pub struct RateMeter {
    bytes: [u64; BUCKETS],
    /// Start of the newest bucket.
    head: Option<Instant>,
    index: usize,
    /// When the first byte was counted: a meter younger than the window under-reports.
    started: Option<Instant>,
    last_packet: Option<Instant>,
}

impl Default for RateMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl RateMeter {
    pub fn new() -> Self {
        Self {
            bytes: [0; BUCKETS],
            head: None,
            index: 0,
            started: None,
            last_packet: None,
        }
    }

    pub fn add(&mut self, now: Instant, bytes: usize) {
        // After a silence longer than the window (dynacast stopped the layer, or the encoder
        // dropped it), start over: a window spanning the gap under-reports the layer while its
        // encoder ramps back up, and a layer that looks cheap gets picked and then fails.
        let resumed = self
            .last_packet
            .is_some_and(|t| now.saturating_duration_since(t) > BUCKET * BUCKETS as u32);
        if resumed {
            self.bytes = [0; BUCKETS];
            self.head = None;
            self.index = 0;
            self.started = None;
        }
        self.advance(now);
        self.bytes[self.index] += bytes as u64;
        self.started.get_or_insert(now);
        self.last_packet = Some(now);
    }

    fn advance(&mut self, now: Instant) {
        let Some(head) = self.head else {
            self.head = Some(now);
            return;
        };
        let steps = (now.saturating_duration_since(head).as_millis() / BUCKET.as_millis()) as usize;
        if steps == 0 {
            return;
        }
        for _ in 0..steps.min(BUCKETS) {
            self.index = (self.index + 1) % BUCKETS;
            self.bytes[self.index] = 0;
        }
        self.head = Some(head + BUCKET * steps as u32);
    }

    /// Bits per second over the window, or `None` until a full window has been seen.
    pub fn bps(&mut self, now: Instant) -> Option<u64> {
        self.advance(now);
        let started = self.started?;
        if now.saturating_duration_since(started) < BUCKET * BUCKETS as u32 {
            return None;
        }
        let total: u64 = self.bytes.iter().sum();
        Some(total * 8 * 1000 / (BUCKET.as_millis() as u64 * BUCKETS as u64))
    }

    /// How long this layer has been sending without a break (since the first packet, or since
    /// it resumed after a silence longer than the window).
    pub fn age(&self, now: Instant) -> Option<Duration> {
        self.started.map(|t| now.saturating_duration_since(t))
    }

    /// Whether packets arrived within `window`: a layer the publisher stopped sending is not
    /// available to subscribers.
    pub fn active(&self, now: Instant, window: Duration) -> bool {
        self.last_packet
            .is_some_and(|t| now.saturating_duration_since(t) <= window)
    }
}

/// What a layer costs, for allocation: the peak of recent measurements, decaying towards
/// the current one with `COST_HALF_LIFE`. An encoder's rate swings with the scene and ramps
/// after a restart; the dips must not make a layer look cheap enough to step up to (it then
/// fails, and the subscriber oscillates), while a lasting drop is believed within seconds.
///
/// Once the layer has settled (sent for `SETTLED` without a break), a rise counts only once it
/// has lasted `RISE_CONFIRM`, at the lowest rate seen meanwhile: a keyframe sits in the
/// meter's one-second window for one second. Believed at once, the keyframe that a
/// subscriber's own step up asked for raised the cost of the layer it had just reached by up
/// to half (local step test: 720p from 446 to 688 kbit/s within 0.8 s), the step up looked
/// like a failure, and the peak hold kept it that way for seconds. Before that the encoder is
/// still ramping up (at the start, after dynacast resumed the layer), and a rise is believed at
/// once: held back, the ramp made 720p look half its price and a subscriber on a link still
/// being measured stepped up to it and straight back down.
#[derive(Debug, Clone, Copy, Default)]
pub struct LayerCost {
    held: Option<(u64, Instant)>,
    /// A rise above `held` under way: since when, and its lowest measurement so far.
    rise: Option<(Instant, u64)>,
}

pub const COST_HALF_LIFE: Duration = Duration::from_secs(6);
/// Longer than the meter's window, so that one keyframe never confirms a rise.
pub const RISE_CONFIRM: Duration = Duration::from_millis(1500);
/// An encoder ramps up over the first seconds of a layer (Chromium: 5-10 s to its target).
pub const SETTLED: Duration = Duration::from_secs(10);

impl LayerCost {
    /// `settled`: the layer has sent for `SETTLED` without a break (`RateMeter::age`).
    pub fn observe(&mut self, now: Instant, measured_bps: u64, settled: bool) -> u64 {
        let cost = match self.held {
            None => measured_bps,
            Some((held, _)) if measured_bps > held && !settled => measured_bps,
            Some((held, _)) if measured_bps > held => {
                let (since, low) = self.rise.get_or_insert((now, measured_bps));
                *low = (*low).min(measured_bps);
                if now.saturating_duration_since(*since) < RISE_CONFIRM {
                    // Not yet believed; `held` keeps its time, as no decay is due while the
                    // measurement is above it.
                    return held;
                }
                *low
            }
            Some((held, at)) => {
                let age = now.saturating_duration_since(at).as_secs_f64();
                let keep = 0.5f64.powf(age / COST_HALF_LIFE.as_secs_f64());
                // Decays from the time of the last observation, so the rate of decay does
                // not depend on how often the allocator looks.
                measured_bps + ((held - measured_bps) as f64 * keep) as u64
            }
        };
        self.rise = None;
        self.held = Some((cost, now));
        cost
    }

    /// The last cost, while the layer is not measured (stopped by dynacast).
    pub fn last(&self) -> Option<u64> {
        self.held.map(|(c, _)| c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_steady_rate() {
        let t0 = Instant::now();
        let mut m = RateMeter::new();
        // 1200-byte packets every 10 ms = 960 kbps.
        for i in 0..300u64 {
            m.add(t0 + Duration::from_millis(i * 10), 1200);
        }
        let now = t0 + Duration::from_millis(2995);
        let bps = m.bps(now).unwrap();
        assert!((900_000..=1_000_000).contains(&bps), "{bps}");
        assert!(m.active(now, Duration::from_millis(100)));
    }

    #[test]
    fn young_meters_report_nothing_and_silence_decays() {
        let t0 = Instant::now();
        let mut m = RateMeter::new();
        m.add(t0, 1000);
        assert_eq!(m.bps(t0 + Duration::from_millis(500)), None);
        let later = t0 + Duration::from_secs(5);
        assert_eq!(m.bps(later), Some(0));
        assert!(!m.active(later, Duration::from_secs(1)));
    }

    #[test]
    fn a_layer_resumed_after_a_gap_is_measured_afresh() {
        let t0 = Instant::now();
        let mut m = RateMeter::new();
        for i in 0..200u64 {
            m.add(t0 + Duration::from_millis(i * 10), 1000); // 800 kbps for 2 s
        }
        // Stopped for 10 s, then back: the old window must not dilute the new rate.
        let back = t0 + Duration::from_secs(12);
        m.add(back, 1000);
        assert_eq!(m.bps(back), None);
        for i in 1..150u64 {
            m.add(back + Duration::from_millis(i * 10), 1000);
        }
        let bps = m.bps(back + Duration::from_millis(1495)).unwrap();
        assert!((700_000..=900_000).contains(&bps), "{bps}");
    }

    #[test]
    fn cost_holds_peaks_and_follows_lasting_drops() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut c = LayerCost::default();
        assert_eq!(c.last(), None);
        let table: &[(u64, u64, std::ops::RangeInclusive<u64>)] = &[
            (0, 400_000, 400_000..=400_000),
            // A dip (encoder ramp, still scene) barely moves the cost.
            (200, 100_000, 390_000..=400_000),
            (400, 100_000, 380_000..=395_000),
            // A keyframe in the window for a second: not believed.
            (600, 700_000, 380_000..=395_000),
            (1_100, 650_000, 380_000..=395_000),
            (1_500, 600_000, 380_000..=395_000),
            (1_700, 300_000, 370_000..=395_000),
            // A rise that lasts is believed after RISE_CONFIRM, at its lowest.
            (2_000, 560_000, 370_000..=395_000),
            (2_500, 500_000, 370_000..=395_000),
            (3_600, 520_000, 500_000..=500_000),
            // A lasting drop: after one half-life, half the gap is gone.
            (9_600, 100_000, 295_000..=305_000),
            (33_600, 100_000, 100_000..=115_000),
        ];
        for (ms, measured, expected) in table {
            let cost = c.observe(at(*ms), *measured, true);
            assert!(expected.contains(&cost), "at {ms} ms: {cost}");
        }
    }

    #[test]
    fn an_unsettled_layer_is_believed_at_once_when_it_rises() {
        // An encoder ramping up after its start: every rise counts at once, dips are held.
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut c = LayerCost::default();
        assert_eq!(c.observe(at(0), 300_000, false), 300_000);
        assert_eq!(c.observe(at(500), 500_000, false), 500_000);
        assert!((480_000..=500_000).contains(&c.observe(at(700), 350_000, false)));
        assert_eq!(c.observe(at(1_000), 700_000, false), 700_000);
        // Settled, the same jump waits.
        assert_eq!(c.observe(at(1_200), 700_000, true), 700_000);
        assert!(c.observe(at(1_400), 1_000_000, true) < 710_000);
    }

    #[test]
    fn a_meter_knows_how_long_its_layer_has_sent_without_a_break() {
        let t0 = Instant::now();
        let mut m = RateMeter::new();
        assert_eq!(m.age(t0), None);
        for i in 0..50u64 {
            m.add(t0 + Duration::from_millis(i * 100), 1000);
        }
        assert_eq!(
            m.age(t0 + Duration::from_secs(5)),
            Some(Duration::from_secs(5))
        );
        // A silence longer than the window: a new start.
        let back = t0 + Duration::from_secs(9);
        m.add(back, 1000);
        assert_eq!(
            m.age(back + Duration::from_secs(1)),
            Some(Duration::from_secs(1))
        );
    }
}

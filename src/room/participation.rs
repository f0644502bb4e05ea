//! What a participant received during the consult, summed up for the consult summary: median
//! receive bitrate, share of video time on the lowest layer or paused, reported loss. Pure:
//! the room samples it about once a second with the time passed in.

use std::time::Instant;

/// What one sample saw of one video subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoState {
    Lowest,
    Higher,
    Paused,
}

#[derive(Debug, Default)]
pub struct ParticipationLog {
    last: Option<(Instant, u64)>,
    /// Receive bitrate per interval, kbit/s (u32: an hour is 14 KiB).
    kbps: Vec<u32>,
    video_samples: u64,
    lowest_samples: u64,
    paused_samples: u64,
    loss_sum: f64,
    loss_samples: u64,
}

/// Longest kept history (8 hours at one sample a second): a forgotten tab cannot grow memory.
const MAX_SAMPLES: usize = 8 * 3600;

impl ParticipationLog {
    /// `rx_bytes` is the running total of bytes forwarded to this participant; `loss` the
    /// fraction lost it reported (0..=1), when known.
    pub fn sample(
        &mut self,
        now: Instant,
        rx_bytes: u64,
        video: impl IntoIterator<Item = VideoState>,
        loss: Option<f32>,
    ) {
        if let Some((then, bytes)) = self.last {
            let secs = now.saturating_duration_since(then).as_secs_f64();
            if secs >= 0.2 && self.kbps.len() < MAX_SAMPLES {
                let kbps = rx_bytes.saturating_sub(bytes) as f64 * 8.0 / secs / 1000.0;
                self.kbps.push(kbps.round() as u32);
            }
        }
        self.last = Some((now, rx_bytes));
        for v in video {
            self.video_samples += 1;
            match v {
                VideoState::Lowest => self.lowest_samples += 1,
                VideoState::Paused => self.paused_samples += 1,
                VideoState::Higher => {}
            }
        }
        if let Some(l) = loss {
            self.loss_sum += f64::from(l.clamp(0.0, 1.0));
            self.loss_samples += 1;
        }
    }

    pub fn median_receive_bps(&self) -> Option<u64> {
        if self.kbps.is_empty() {
            return None;
        }
        let mut sorted = self.kbps.clone();
        sorted.sort_unstable();
        Some(u64::from(sorted[sorted.len() / 2]) * 1000)
    }

    pub fn low_layer_share(&self) -> f64 {
        share(self.lowest_samples, self.video_samples)
    }

    pub fn paused_share(&self) -> f64 {
        share(self.paused_samples, self.video_samples)
    }

    pub fn loss_percent(&self) -> f64 {
        if self.loss_samples == 0 {
            0.0
        } else {
            100.0 * self.loss_sum / self.loss_samples as f64
        }
    }
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sums_up_a_simulated_consult() {
        let t0 = Instant::now();
        let mut log = ParticipationLog::default();
        // 10 s: 4 s at 400 kbit/s on the top layer, 3 s at 150 on the lowest, 3 s paused
        // with audio only (40 kbit/s); loss 2 % while paused.
        let mut bytes = 0u64;
        log.sample(t0, bytes, [], None);
        for s in 1..=10u64 {
            let (kbps, state, loss) = match s {
                1..=4 => (400, VideoState::Higher, 0.0),
                5..=7 => (150, VideoState::Lowest, 0.0),
                _ => (40, VideoState::Paused, 0.02),
            };
            bytes += kbps * 1000 / 8;
            log.sample(t0 + Duration::from_secs(s), bytes, [state], Some(loss));
        }
        assert_eq!(log.median_receive_bps(), Some(150_000));
        assert!((log.low_layer_share() - 0.3).abs() < 1e-9);
        assert!((log.paused_share() - 0.3).abs() < 1e-9);
        assert!((log.loss_percent() - 0.6).abs() < 1e-6);
    }

    #[test]
    fn empty_log_reports_nothing_rather_than_dividing_by_zero() {
        let log = ParticipationLog::default();
        assert_eq!(log.median_receive_bps(), None);
        assert_eq!(log.low_layer_share(), 0.0);
        assert_eq!(log.paused_share(), 0.0);
        assert_eq!(log.loss_percent(), 0.0);
    }
}

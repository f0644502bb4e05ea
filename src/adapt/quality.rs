//! A participant's connection quality for the UI, from what the server measures: packet loss
//! both ways, round-trip time, and the bandwidth estimate towards them. Pure.

use std::time::Duration;

use signaling::Quality;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinkStats {
    /// Fraction lost of what we send them (from their receiver reports), 0..1.
    pub egress_loss: Option<f32>,
    /// Fraction lost of what they send us, 0..1.
    pub ingress_loss: Option<f32>,
    pub rtt: Option<Duration>,
    pub estimate_bps: Option<u64>,
}

/// Below this estimate not even the lowest video layer plus audio fits.
pub const POOR_ESTIMATE_BPS: u64 = 200_000;
pub const FAIR_ESTIMATE_BPS: u64 = 600_000;

pub fn quality(s: &LinkStats) -> Quality {
    let loss = s
        .egress_loss
        .unwrap_or(0.0)
        .max(s.ingress_loss.unwrap_or(0.0));
    let rtt = s.rtt.unwrap_or_default();
    let estimate = s.estimate_bps.unwrap_or(u64::MAX);
    if loss > 0.10 || rtt > Duration::from_millis(700) || estimate < POOR_ESTIMATE_BPS {
        Quality::Poor
    } else if loss > 0.03 || rtt > Duration::from_millis(300) || estimate < FAIR_ESTIMATE_BPS {
        Quality::Fair
    } else {
        Quality::Good
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let ms = Duration::from_millis;
        let cases: &[(LinkStats, Quality)] = &[
            (LinkStats::default(), Quality::Good),
            (
                LinkStats {
                    egress_loss: Some(0.01),
                    rtt: Some(ms(80)),
                    estimate_bps: Some(2_000_000),
                    ..Default::default()
                },
                Quality::Good,
            ),
            (
                LinkStats {
                    egress_loss: Some(0.04),
                    ..Default::default()
                },
                Quality::Fair,
            ),
            (
                LinkStats {
                    ingress_loss: Some(0.15),
                    ..Default::default()
                },
                Quality::Poor,
            ),
            (
                LinkStats {
                    rtt: Some(ms(400)),
                    ..Default::default()
                },
                Quality::Fair,
            ),
            (
                LinkStats {
                    rtt: Some(ms(900)),
                    ..Default::default()
                },
                Quality::Poor,
            ),
            (
                LinkStats {
                    estimate_bps: Some(300_000),
                    ..Default::default()
                },
                Quality::Fair,
            ),
            (
                LinkStats {
                    estimate_bps: Some(150_000),
                    ..Default::default()
                },
                Quality::Poor,
            ),
        ];
        for (stats, want) in cases {
            assert_eq!(quality(stats), *want, "{stats:?}");
        }
    }
}

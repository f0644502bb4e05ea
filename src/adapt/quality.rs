//! A participant's connection quality for the UI, from what the server measures: packet loss
//! both ways, round-trip time, and whether their link limits the video they receive. Pure.
//!
//! The bandwidth estimate alone says little: it only grows as far as something is sent, so a
//! participant receiving audio only would look "poor" on a perfect link. What counts is whether
//! the allocator had to give them less than they would take.

use std::time::Duration;

use signaling::Quality;

/// How much the link limits the video a participant receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Limit {
    #[default]
    None,
    /// Some video is below the layer the subscriber would take (for a while, not a ramp-up).
    Reduced,
    /// Some video is paused: not even the lowest layer fits.
    Paused,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinkStats {
    /// Fraction lost of what we send them (from their receiver reports), 0..1.
    pub egress_loss: Option<f32>,
    /// Fraction lost of what they send us, 0..1.
    pub ingress_loss: Option<f32>,
    pub rtt: Option<Duration>,
    pub limit: Limit,
}

pub fn quality(s: &LinkStats) -> Quality {
    let loss = s
        .egress_loss
        .unwrap_or(0.0)
        .max(s.ingress_loss.unwrap_or(0.0));
    let rtt = s.rtt.unwrap_or_default();
    if loss > 0.10 || rtt > Duration::from_millis(700) || s.limit == Limit::Paused {
        Quality::Poor
    } else if loss > 0.03 || rtt > Duration::from_millis(300) || s.limit == Limit::Reduced {
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
                    limit: Limit::Reduced,
                    ..Default::default()
                },
                Quality::Fair,
            ),
            (
                LinkStats {
                    limit: Limit::Paused,
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

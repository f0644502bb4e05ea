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
    /// Fraction lost of what we send them, 0..1 (see `egress_loss`).
    pub egress_loss: Option<f32>,
    /// Fraction lost of what they send us, 0..1.
    pub ingress_loss: Option<f32>,
    pub rtt: Option<Duration>,
    pub limit: Limit,
}

/// The loss on the link towards a subscriber: what its transport-wide feedback (TWCC) reports
/// lost of the packets we sent it in the last second, when it sends TWCC; otherwise the worst
/// of its receiver reports. Receiver reports count RTP sequence gaps, and a forwarded stream
/// carries its publisher's uplink losses as gaps: after a patient's 4 s outage the clinic's
/// and the specialist's reports said 83-97 % lost, which cut their whole budget and marked
/// their links poor although nothing was lost on them. TWCC numbers are ours, per packet sent,
/// so only this link's losses count.
pub fn egress_loss(
    twcc: Option<f32>,
    receiver_reports: impl IntoIterator<Item = Option<f32>>,
) -> Option<f32> {
    twcc.or_else(|| receiver_reports.into_iter().flatten().reduce(f32::max))
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
    fn egress_loss_is_this_links_own() {
        // (TWCC loss, receiver reports) -> loss used
        type Case = (Option<f32>, &'static [Option<f32>], Option<f32>);
        let cases: &[Case] = &[
            // Upstream gaps in the reports (a publisher's outage) do not count when TWCC says.
            (Some(0.0), &[Some(0.97), Some(0.01)], Some(0.0)),
            (Some(0.04), &[Some(0.5)], Some(0.04)),
            // No TWCC feedback: the worst receiver report.
            (None, &[Some(0.02), None, Some(0.07)], Some(0.07)),
            (None, &[None, None], None),
            (None, &[], None),
        ];
        for (twcc, reports, want) in cases {
            assert_eq!(
                egress_loss(*twcc, reports.iter().copied()),
                *want,
                "{twcc:?} {reports:?}"
            );
        }
    }

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

//! `--rejoin`: what one bot's outages cost. When its signaling socket closes (its node died),
//! the bot drops its peer connection and joins afresh; [`Recovery`] keeps, per outage, when
//! the last packet before it arrived, when the loss was seen, when the bot was `joined` again,
//! when the first packet after it arrived and when every peer was heard again. Pure: every
//! time is passed in, so the accounting is tested without sockets.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One outage of one bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    /// When the bot saw its signaling socket go.
    pub lost_at: Instant,
    /// The last media packet received before that (None: none had arrived yet).
    pub last_before: Option<Instant>,
    /// `joined` again (after any redirects).
    pub joined_at: Option<Instant>,
    /// The first media packet after the rejoin.
    pub first_media: Option<Instant>,
    /// Media from every other participant of the room again.
    pub all_peers: Option<Instant>,
    heard: Vec<u32>,
}

impl Outage {
    /// The gap in received media: last packet before the loss to the first after the rejoin
    /// (from the loss itself when nothing had arrived before it).
    pub fn media_gap(&self) -> Option<Duration> {
        let from = self.last_before.unwrap_or(self.lost_at);
        Some(self.first_media?.saturating_duration_since(from))
    }

    /// Loss seen to `joined` again.
    pub fn rejoin_time(&self) -> Option<Duration> {
        Some(self.joined_at?.saturating_duration_since(self.lost_at))
    }

    /// Recovered: every peer heard again.
    pub fn recovered(&self) -> bool {
        self.all_peers.is_some()
    }
}

/// One bot's outages; `peers` is how many others it should hear from.
#[derive(Debug, Clone)]
pub struct Recovery {
    peers: usize,
    last_media: Option<Instant>,
    pub outages: Vec<Outage>,
}

impl Recovery {
    pub fn new(peers: usize) -> Self {
        Recovery {
            peers,
            last_media: None,
            outages: Vec::new(),
        }
    }

    /// True while the latest outage has not seen its rejoin yet (joins after it are rejoins,
    /// not first joins, for the counters).
    pub fn rejoining(&self) -> bool {
        self.outages.last().is_some_and(|o| o.joined_at.is_none())
    }

    /// A media packet from `sender` (None: unstamped) received at `at`.
    pub fn on_media(&mut self, at: Instant, sender: Option<u32>) {
        self.last_media = Some(self.last_media.map_or(at, |l| l.max(at)));
        let peers = self.peers;
        let Some(o) = self.outages.last_mut() else {
            return;
        };
        // Only packets on the new peer connection count; the old one is dropped at the loss,
        // so this guards against nothing but a reordered call.
        if o.all_peers.is_some() || o.joined_at.is_none() {
            return;
        }
        o.first_media.get_or_insert(at);
        if let Some(s) = sender {
            if !o.heard.contains(&s) {
                o.heard.push(s);
            }
        }
        if o.heard.len() >= peers {
            o.all_peers = Some(at);
        }
    }

    /// The signaling socket went at `at`. A loss while still rejoining (nothing received
    /// since) extends the same outage: the gap runs from the same last packet.
    pub fn on_lost(&mut self, at: Instant) {
        if let Some(o) = self.outages.last_mut() {
            if o.first_media.is_none() {
                o.joined_at = None;
                return;
            }
        }
        self.outages.push(Outage {
            lost_at: at,
            last_before: self.last_media,
            joined_at: None,
            first_media: None,
            all_peers: None,
            heard: Vec::new(),
        });
    }

    /// `joined` again at `at`.
    pub fn on_joined(&mut self, at: Instant) {
        if let Some(o) = self.outages.last_mut() {
            if o.joined_at.is_none() {
                o.joined_at = Some(at);
            }
        }
    }

    pub fn max_gap(&self) -> Option<Duration> {
        self.outages.iter().filter_map(Outage::media_gap).max()
    }

    pub fn max_rejoin(&self) -> Option<Duration> {
        self.outages.iter().filter_map(Outage::rejoin_time).max()
    }

    /// Outages after which not every peer was heard again.
    pub fn unrecovered(&self) -> usize {
        self.outages.iter().filter(|o| !o.recovered()).count()
    }
}

static ANCHOR: OnceLock<(Instant, SystemTime)> = OnceLock::new();

/// Wall-clock milliseconds since the Unix epoch of a monotonic instant, so a script can set
/// the bots' outages against the moment it killed a node (`date +%s%3N`).
pub fn unix_ms(at: Instant) -> f64 {
    let (i0, s0) = *ANCHOR.get_or_init(|| (Instant::now(), SystemTime::now()));
    let base = s0
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1e3;
    if at >= i0 {
        base + (at - i0).as_secs_f64() * 1e3
    } else {
        base - (i0 - at).as_secs_f64() * 1e3
    }
}

/// Median of a list (sorted here); None when empty.
pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn one_outage_gap_and_rejoin_time() {
        let t0 = Instant::now();
        let mut r = Recovery::new(2);
        r.on_media(ms(t0, 100), Some(1));
        r.on_media(ms(t0, 980), Some(2));
        assert!(!r.rejoining());
        r.on_lost(ms(t0, 1000));
        assert!(r.rejoining());
        r.on_joined(ms(t0, 2500));
        assert!(!r.rejoining());
        r.on_media(ms(t0, 3100), Some(2));
        assert!(!r.outages[0].recovered());
        r.on_media(ms(t0, 3300), Some(2));
        r.on_media(ms(t0, 3400), Some(1));
        let o = &r.outages[0];
        assert_eq!(o.media_gap(), Some(Duration::from_millis(3100 - 980)));
        assert_eq!(o.rejoin_time(), Some(Duration::from_millis(1500)));
        assert_eq!(o.all_peers, Some(ms(t0, 3400)));
        assert_eq!(r.unrecovered(), 0);
        // Later packets change nothing.
        r.on_media(ms(t0, 9000), Some(1));
        assert_eq!(r.max_gap(), Some(Duration::from_millis(2120)));
    }

    #[test]
    fn a_second_loss_before_media_is_the_same_outage() {
        let t0 = Instant::now();
        let mut r = Recovery::new(1);
        r.on_media(ms(t0, 500), Some(7));
        r.on_lost(ms(t0, 600));
        r.on_joined(ms(t0, 900));
        // The node it rejoined on died too, before any media.
        r.on_lost(ms(t0, 1000));
        assert!(r.rejoining());
        r.on_joined(ms(t0, 4000));
        r.on_media(ms(t0, 4200), Some(7));
        assert_eq!(r.outages.len(), 1);
        assert_eq!(r.max_gap(), Some(Duration::from_millis(3700)));
        assert_eq!(r.max_rejoin(), Some(Duration::from_millis(3400)));
        assert_eq!(r.unrecovered(), 0);
    }

    #[test]
    fn two_outages_keep_the_longest() {
        let t0 = Instant::now();
        let mut r = Recovery::new(1);
        r.on_media(ms(t0, 0), Some(1));
        r.on_lost(ms(t0, 10));
        r.on_joined(ms(t0, 200));
        r.on_media(ms(t0, 300), Some(1));
        r.on_media(ms(t0, 4990), Some(1));
        r.on_lost(ms(t0, 5000));
        r.on_joined(ms(t0, 5100));
        r.on_media(ms(t0, 5150), Some(1));
        assert_eq!(r.outages.len(), 2);
        assert_eq!(r.max_gap(), Some(Duration::from_millis(300)));
        assert_eq!(r.max_rejoin(), Some(Duration::from_millis(190)));
    }

    #[test]
    fn unrecovered_and_no_media_before() {
        let t0 = Instant::now();
        let mut r = Recovery::new(2);
        r.on_lost(ms(t0, 1000));
        assert_eq!(r.outages[0].media_gap(), None);
        r.on_joined(ms(t0, 1500));
        r.on_media(ms(t0, 1800), Some(3));
        // Nothing before the loss: the gap counts from the loss.
        assert_eq!(r.max_gap(), Some(Duration::from_millis(800)));
        // Only one of two peers came back.
        assert_eq!(r.unrecovered(), 1);
        // Unstamped packets count as media but name no peer.
        r.on_media(ms(t0, 1900), None);
        assert_eq!(r.unrecovered(), 1);
    }

    #[test]
    fn unix_ms_follows_the_monotonic_clock() {
        let t0 = Instant::now();
        let a = unix_ms(t0);
        let b = unix_ms(t0 + Duration::from_millis(1500));
        assert!((b - a - 1500.0).abs() < 0.01);
        assert!(a > 1.7e12);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}

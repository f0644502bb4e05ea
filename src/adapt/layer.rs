//! Simulcast layers and the ladder of steps a subscriber can take of one track.

/// Spatial layers by rid, lowest first: the client publishes `q` (320x180), `h` (640x360) and
/// `f` (1280x720).
pub const RIDS: [&str; 3] = ["q", "h", "f"];

/// Cumulative share of a spatial layer's bitrate carried by temporal layers 0..=n, as
/// libwebrtc's VP8 encoder splits it (used until per-temporal-layer rates are measured).
const TEMPORAL_SHARE_3: [f64; 3] = [0.4, 0.6, 1.0];
const TEMPORAL_SHARE_2: [f64; 2] = [0.6, 1.0];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Layer {
    pub spatial: u8,
    /// Highest temporal layer forwarded (frame rate step); 2 is the full frame rate when the
    /// codec carries three temporal layers.
    pub temporal: u8,
}

impl Layer {
    pub const fn new(spatial: u8, temporal: u8) -> Self {
        Self { spatial, temporal }
    }

    pub fn rid(self) -> &'static str {
        RIDS[self.spatial.min(2) as usize]
    }
}

/// Index of a rid in `RIDS`.
pub fn spatial_of_rid(rid: &str) -> Option<u8> {
    RIDS.iter().position(|r| *r == rid).map(|i| i as u8)
}

/// The layers a track offers now with their bitrates, cheapest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ladder {
    steps: Vec<(Layer, u64)>,
}

impl Ladder {
    /// From measured spatial layer rates (`None`: not sent) and the number of temporal layers.
    pub fn from_spatial_rates(rates: [Option<u64>; 3], temporal_layers: u8) -> Self {
        let shares: &[f64] = match temporal_layers {
            0 | 1 => &[1.0],
            2 => &TEMPORAL_SHARE_2,
            _ => &TEMPORAL_SHARE_3,
        };
        let mut steps = Vec::new();
        let lowest = rates.iter().position(Option::is_some);
        for (s, rate) in rates.iter().enumerate() {
            let Some(rate) = rate else { continue };
            for (t, share) in shares.iter().enumerate() {
                // A quarter frame rate is a step only on the lowest layer (better a slow
                // picture than none); above it, more pixels at a slideshow rate help nobody.
                if t == 0 && shares.len() == 3 && Some(s) != lowest {
                    continue;
                }
                steps.push((Layer::new(s as u8, t as u8), (*rate as f64 * share) as u64));
            }
        }
        // Monotonic in spatial first, so a step up never lowers the resolution.
        steps.sort_by_key(|(l, _)| *l);
        let mut floor = 0;
        for (_, r) in &mut steps {
            *r = (*r).max(floor);
            floor = *r;
        }
        Self { steps }
    }

    pub fn steps(&self) -> impl Iterator<Item = (Layer, u64)> + '_ {
        self.steps.iter().copied()
    }

    pub fn rate(&self, layer: Layer) -> Option<u64> {
        self.steps
            .iter()
            .find(|(l, _)| *l == layer)
            .map(|(_, r)| *r)
    }

    pub fn position(&self, layer: Layer) -> Option<usize> {
        self.steps.iter().position(|(l, _)| *l == layer)
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_orders_by_resolution_then_frame_rate() {
        let l = Ladder::from_spatial_rates([Some(150_000), None, Some(1_200_000)], 3);
        let steps: Vec<_> = l.steps().collect();
        assert_eq!(
            steps,
            vec![
                (Layer::new(0, 0), 60_000),
                (Layer::new(0, 1), 90_000),
                (Layer::new(0, 2), 150_000),
                (Layer::new(2, 1), 720_000),
                (Layer::new(2, 2), 1_200_000),
            ]
        );
        assert_eq!(l.rate(Layer::new(1, 1)), None);
        assert_eq!(
            l.rate(Layer::new(2, 0)),
            None,
            "no quarter frame rate above the lowest"
        );
        assert_eq!(l.position(Layer::new(2, 1)), Some(3));
    }

    #[test]
    fn rids() {
        assert_eq!(spatial_of_rid("h"), Some(1));
        assert_eq!(spatial_of_rid("x"), None);
        assert_eq!(Layer::new(2, 0).rid(), "f");
    }
}

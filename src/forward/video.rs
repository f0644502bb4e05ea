//! The video forwarder of one subscription: which incoming packets go out, and with which
//! sequence number, timestamp and VP8 picture ids. Pure.
//!
//! A spatial switch happens only on a keyframe of the target layer. Going up, the current layer
//! keeps flowing until then; when nothing flows yet, a lower layer's keyframe starts the picture
//! meanwhile. Going down, it stops at once: a step down means the subscriber's
//! link is full, and every packet more of the big layer delays the keyframe that fixes it.
//! Temporal layers above the target are dropped without leaving gaps in sequence numbers or
//! picture ids. A layer that stops arriving while a lower one flows gives way to the lower
//! one at its next keyframe (see `LAYER_SILENT`).

use std::time::{Duration, Instant};

use super::rewrite::{InPacket, Rewriter};
use crate::adapt::layer::Layer;

/// One incoming video packet, as far as forwarding is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoPacket {
    pub spatial: u8,
    pub temporal: Option<u8>,
    /// Starts a keyframe.
    pub keyframe: bool,
    pub seq: u64,
    pub ts: u32,
    pub arrival: Instant,
    /// VP8 picture id (15-bit space) and TL0PICIDX, when the descriptor has them.
    pub picture_id: Option<u16>,
    pub tl0_pic_idx: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Forward {
        seq: u64,
        ts: u32,
        picture_id: Option<u16>,
        tl0_pic_idx: Option<u8>,
        /// This packet switched the subscriber to a new spatial layer.
        switched: bool,
    },
    Drop,
    /// Dropped; the target layer needs a keyframe from the publisher to start.
    DropNeedKeyframe {
        spatial: u8,
    },
}

const PICTURE_ID_MOD: u16 = 1 << 15;

/// The layer being forwarded sent nothing for this long while a lower one kept arriving: its
/// encoder dropped it, and the lower layer takes over at its next keyframe (asked for at once)
/// instead of when the room's ladder drops the layer, seconds later. Chromium does this after
/// an outage: its estimate collapsed, it answered the restart's keyframe request on `f`, then
/// stopped `f` (4 s outage, local: the clinic froze on that one keyframe for 3 s while `q` and
/// `h` flowed). Several frames even at the lowest temporal layer's 5 fps.
pub const LAYER_SILENT: Duration = Duration::from_millis(500);

/// A lower layer takes over only after arriving without a break for this long: when a stall of
/// the publisher's uplink ends, every layer comes back in one burst, and the first packets of a
/// lower layer would otherwise find the current layer silent and ask for a needless keyframe.
const TAKE_OVER_RUN: Duration = Duration::from_millis(250);
/// A break in a layer's packets longer than this ends its run (a 5 fps layer sends every 200 ms).
const RUN_BREAK: Duration = Duration::from_millis(250);

/// Keeps VP8 picture ids and TL0PICIDX continuous across switches and dropped frames.
#[derive(Debug, Clone, Default)]
struct Vp8Munger {
    picture_offset: u16,
    tl0_offset: u8,
    last_picture: Option<u16>,
    last_tl0: Option<u8>,
    /// The newest incoming picture id dropped, so a frame's packets count once.
    last_dropped: Option<u16>,
}

impl Vp8Munger {
    fn switch(&mut self, picture: Option<u16>, tl0: Option<u8>) {
        if let (Some(p), Some(last)) = (picture, self.last_picture) {
            self.picture_offset = (last + 1).wrapping_sub(p) % PICTURE_ID_MOD;
        }
        if let (Some(t), Some(last)) = (tl0, self.last_tl0) {
            self.tl0_offset = last.wrapping_add(1).wrapping_sub(t);
        }
        self.last_dropped = None;
    }

    fn forward(&mut self, picture: Option<u16>, tl0: Option<u8>) -> (Option<u16>, Option<u8>) {
        let p = picture.map(|p| p.wrapping_add(self.picture_offset) % PICTURE_ID_MOD);
        let t = tl0.map(|t| t.wrapping_add(self.tl0_offset));
        if p.is_some() {
            self.last_picture = p;
        }
        if t.is_some() {
            self.last_tl0 = t;
        }
        (p, t)
    }

    /// A whole frame (all its packets share the picture id) is not forwarded: later picture
    /// ids move down by one so the decoder sees no missing frame.
    fn drop_frame(&mut self, picture: Option<u16>) {
        let Some(p) = picture else { return };
        if self.last_dropped != Some(p) {
            self.last_dropped = Some(p);
            self.picture_offset = self.picture_offset.wrapping_sub(1) % PICTURE_ID_MOD;
        }
    }
}

#[derive(Debug, Clone)]
pub struct VideoForwarder {
    /// `None`: paused.
    target: Option<Layer>,
    /// The spatial layer being forwarded now.
    current: Option<u8>,
    rewriter: Rewriter,
    vp8: Vp8Munger,
    /// When a packet of each spatial layer last arrived.
    heard: [Option<Instant>; 3],
    /// Since when each spatial layer has arrived without a break (`RUN_BREAK`).
    runs: [Option<Instant>; 3],
}

impl VideoForwarder {
    pub fn new(first_seq: u16) -> Self {
        Self {
            target: None,
            current: None,
            rewriter: Rewriter::new(90_000, first_seq),
            vp8: Vp8Munger::default(),
            heard: [None; 3],
            runs: [None; 3],
        }
    }

    pub fn set_target(&mut self, target: Option<Layer>) {
        self.target = target;
        if target.is_none() {
            self.current = None;
        }
    }

    /// Stops forwarding until the next keyframe of the target layer or one below it (the
    /// subscriber's queue overflowed, the media path moved); numbering continues without a gap.
    pub fn restart(&mut self) {
        self.current = None;
    }

    pub fn target(&self) -> Option<Layer> {
        self.target
    }

    pub fn current(&self) -> Option<u8> {
        self.current
    }

    /// Whether a keyframe of the target layer is awaited.
    pub fn switch_pending(&self) -> Option<u8> {
        let target = self.target?.spatial;
        (self.current != Some(target)).then_some(target)
    }

    pub fn on_packet(&mut self, p: VideoPacket) -> Verdict {
        let Some(target) = self.target else {
            return Verdict::Drop;
        };
        let input = InPacket {
            seq: p.seq,
            ts: p.ts,
            arrival: p.arrival,
        };
        let spatial = usize::from(p.spatial.min(2));
        if self.heard[spatial].is_none_or(|t| p.arrival.saturating_duration_since(t) > RUN_BREAK) {
            self.runs[spatial] = Some(p.arrival);
        }
        self.heard[spatial] = Some(p.arrival);
        if let Some(verdict) = self.fall_back(p, input, target.spatial) {
            return verdict;
        }
        if self.current != Some(target.spatial) && p.spatial == target.spatial {
            if !p.keyframe {
                // The current layer (if any) keeps flowing meanwhile.
                return Verdict::DropNeedKeyframe {
                    spatial: target.spatial,
                };
            }
            return self.switch_to(p, input);
        }
        if self.current.is_none() && p.keyframe && p.spatial < target.spatial {
            // Nothing flows (a start, a restart after an outage or a moved path): a lower layer's
            // keyframe starts the picture now, and the switch up waits for the target's as
            // usual. After a network change the publisher's encoder often sends only its lower
            // layers for seconds while its own estimate climbs (address-change test: 720p
            // stopped for 3.1 s while 180p and 360p kept coming, and the subscribers waited).
            return self.switch_to(p, input);
        }
        if Some(p.spatial) != self.current {
            return Verdict::Drop;
        }
        if target.spatial < p.spatial {
            return Verdict::DropNeedKeyframe {
                spatial: target.spatial,
            };
        }
        // The current layer: the target's temporal cap applies even before a pending switch.
        if p.temporal.is_some_and(|t| t > target.temporal) && !p.keyframe {
            self.rewriter.skip(p.seq);
            self.vp8.drop_frame(p.picture_id);
            return Verdict::Drop;
        }
        let Some(out) = self.rewriter.rewrite(input) else {
            return Verdict::Drop;
        };
        let (picture_id, tl0_pic_idx) = self.vp8.forward(p.picture_id, p.tl0_pic_idx);
        Verdict::Forward {
            seq: out.seq,
            ts: out.ts,
            picture_id,
            tl0_pic_idx,
            switched: false,
        }
    }

    /// `p` is of a layer below the current one, which went silent (`LAYER_SILENT`): the
    /// highest such layer still arriving, up to the target, takes over at its keyframe.
    /// `None`: not that case.
    fn fall_back(&mut self, p: VideoPacket, input: InPacket, target: u8) -> Option<Verdict> {
        let current = self.current?;
        if p.spatial >= current || p.spatial > target {
            return None;
        }
        let silent = |heard: Option<Instant>| {
            heard.is_none_or(|t| p.arrival.saturating_duration_since(t) >= LAYER_SILENT)
        };
        let running = self.runs[usize::from(p.spatial)]
            .is_some_and(|t| p.arrival.saturating_duration_since(t) >= TAKE_OVER_RUN);
        if !silent(self.heard[usize::from(current)]) || !running {
            return None;
        }
        // Another layer between this one and the current is still arriving: that one takes
        // over (its keyframe usually comes in the same burst as this one's).
        if (p.spatial + 1..current.min(target + 1)).any(|s| !silent(self.heard[usize::from(s)])) {
            return Some(Verdict::Drop);
        }
        Some(if p.keyframe {
            self.switch_to(p, input)
        } else {
            Verdict::DropNeedKeyframe { spatial: p.spatial }
        })
    }

    /// Starts forwarding `p`'s layer from this keyframe.
    fn switch_to(&mut self, p: VideoPacket, input: InPacket) -> Verdict {
        let out = self.rewriter.switch_to(input);
        self.current = Some(p.spatial);
        self.vp8.switch(p.picture_id, p.tl0_pic_idx);
        let (picture_id, tl0_pic_idx) = self.vp8.forward(p.picture_id, p.tl0_pic_idx);
        Verdict::Forward {
            seq: out.seq,
            ts: out.ts,
            picture_id,
            tl0_pic_idx,
            switched: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A synthetic simulcast publisher: three layers with unrelated seq, ts and picture ids;
    /// one packet per frame, 3 temporal layers (pattern 0,2,1,2), keyframes on request.
    struct Source {
        t0: Instant,
        frame: u64,
        seq: [u64; 3],
        ts: [u32; 3],
        pic: [u16; 3],
        tl0: [u8; 3],
    }

    impl Source {
        fn new() -> Self {
            Self {
                t0: Instant::now(),
                frame: 0,
                seq: [100, 40_000, 65_500],
                ts: [1_000, 2_000_000_000, u32::MAX - 5_000],
                pic: [10, 20_000, 32_760],
                tl0: [0, 100, 250],
            }
        }

        /// The next frame's packet on every layer; `key` makes them keyframes.
        fn frame(&mut self, key: bool) -> [VideoPacket; 3] {
            let tid = [0u8, 2, 1, 2][(self.frame % 4) as usize];
            let tid = if key { 0 } else { tid };
            let arrival = self.t0 + Duration::from_millis(33 * self.frame);
            self.frame += 1;
            std::array::from_fn(|s| {
                if tid == 0 {
                    self.tl0[s] = self.tl0[s].wrapping_add(1);
                }
                self.seq[s] += 1;
                self.ts[s] = self.ts[s].wrapping_add(3_000);
                self.pic[s] = (self.pic[s] + 1) % PICTURE_ID_MOD;
                VideoPacket {
                    spatial: s as u8,
                    temporal: Some(tid),
                    keyframe: key,
                    seq: self.seq[s],
                    ts: self.ts[s],
                    arrival,
                    picture_id: Some(self.pic[s]),
                    tl0_pic_idx: Some(self.tl0[s]),
                }
            })
        }
    }

    #[derive(Default)]
    struct Seen {
        out: Vec<(u64, u32, u16, u8, u8)>, // seq, ts, picture id, tl0, spatial
        keyframe_requests: usize,
    }

    fn feed(f: &mut VideoForwarder, frame: [VideoPacket; 3], seen: &mut Seen) {
        for p in frame {
            match f.on_packet(p) {
                Verdict::Forward {
                    seq,
                    ts,
                    picture_id,
                    tl0_pic_idx,
                    ..
                } => seen.out.push((
                    seq,
                    ts,
                    picture_id.unwrap(),
                    tl0_pic_idx.unwrap(),
                    p.spatial,
                )),
                Verdict::DropNeedKeyframe { .. } => seen.keyframe_requests += 1,
                Verdict::Drop => {}
            }
        }
    }

    fn assert_continuous(seen: &Seen) {
        for w in seen.out.windows(2) {
            let (a, b) = (w[0], w[1]);
            assert_eq!(b.0, a.0 + 1, "seq gap: {a:?} -> {b:?}");
            assert!(
                b.1.wrapping_sub(a.1) > 0 && b.1.wrapping_sub(a.1) < 900_000,
                "ts: {a:?} -> {b:?}"
            );
            assert_eq!(
                b.2,
                (a.2 + 1) % PICTURE_ID_MOD,
                "picture id gap: {a:?} -> {b:?}"
            );
            assert!(
                b.3 == a.3 || b.3 == a.3.wrapping_add(1),
                "tl0 jump: {a:?} -> {b:?}"
            );
        }
    }

    #[test]
    fn starts_on_a_keyframe_and_switches_only_on_keyframes() {
        let mut src = Source::new();
        let mut f = VideoForwarder::new(1000);
        let mut seen = Seen::default();
        f.set_target(Some(Layer::new(2, 2)));
        for _ in 0..5 {
            feed(&mut f, src.frame(false), &mut seen);
        }
        assert!(seen.out.is_empty(), "nothing before a keyframe");
        assert_eq!(seen.keyframe_requests, 5);
        // The keyframe comes on every layer, q first: q's starts the picture, f's takes over
        // within the same frame, h's is not sent.
        feed(&mut f, src.frame(true), &mut seen);
        assert_eq!(seen.out.iter().map(|o| o.4).collect::<Vec<_>>(), [0, 2]);
        for _ in 0..10 {
            feed(&mut f, src.frame(false), &mut seen);
        }
        assert_eq!(seen.out.len(), 12);
        assert!(seen.out[1..].iter().all(|o| o.4 == 2));

        // Down to q: f stops at once (the link is full), q starts at its keyframe.
        f.set_target(Some(Layer::new(0, 2)));
        assert_eq!(f.switch_pending(), Some(0));
        let before = seen.out.len();
        for _ in 0..4 {
            feed(&mut f, src.frame(false), &mut seen);
        }
        assert_eq!(
            seen.out.len(),
            before,
            "nothing while waiting for q's keyframe"
        );
        feed(&mut f, src.frame(true), &mut seen);
        assert_eq!(seen.out.last().unwrap().4, 0, "q from its keyframe on");
        for _ in 0..10 {
            feed(&mut f, src.frame(false), &mut seen);
        }
        // And up to h: q keeps flowing until h's keyframe.
        f.set_target(Some(Layer::new(1, 2)));
        feed(&mut f, src.frame(false), &mut seen);
        assert_eq!(seen.out.last().unwrap().4, 0, "still q while waiting");
        feed(&mut f, src.frame(true), &mut seen);
        for _ in 0..5 {
            feed(&mut f, src.frame(false), &mut seen);
        }
        assert_eq!(seen.out.last().unwrap().4, 1);
        assert_eq!(f.switch_pending(), None);
        assert_continuous(&seen);
    }

    #[test]
    fn a_restart_resumes_on_the_next_keyframe_without_gaps() {
        let mut src = Source::new();
        let mut f = VideoForwarder::new(1000);
        let mut seen = Seen::default();
        f.set_target(Some(Layer::new(1, 2)));
        feed(&mut f, src.frame(true), &mut seen);
        feed(&mut f, src.frame(false), &mut seen);
        // q's keyframe, h's keyframe, h's delta.
        assert_eq!(seen.out.len(), 3);
        f.restart();
        for _ in 0..5 {
            feed(&mut f, src.frame(false), &mut seen);
        }
        assert_eq!(seen.out.len(), 3);
        assert!(seen.keyframe_requests > 0);
        feed(&mut f, src.frame(true), &mut seen);
        assert_eq!(seen.out.len(), 5);
        assert_continuous(&seen);
    }

    #[test]
    fn after_a_restart_a_lower_layer_bridges_until_the_target_returns() {
        // After a network change the publisher sends only q and h for a while (its encoder
        // waits for its own estimate to carry f).
        let mut src = Source::new();
        let mut f = VideoForwarder::new(1000);
        let mut seen = Seen::default();
        f.set_target(Some(Layer::new(2, 2)));
        feed(&mut f, src.frame(true), &mut seen);
        feed(&mut f, src.frame(false), &mut seen);
        let before = seen.out.len();
        f.restart();
        let without_f = |frame: [VideoPacket; 3]| [frame[0], frame[1]];
        for _ in 0..3 {
            for p in without_f(src.frame(false)) {
                assert_eq!(f.on_packet(p), Verdict::Drop, "deltas wait for a keyframe");
            }
        }
        for p in without_f(src.frame(true)) {
            f.on_packet(p);
        }
        assert_eq!(f.current(), Some(0), "q's keyframe restarted the picture");
        assert_eq!(f.switch_pending(), Some(2), "f is still wanted");
        for _ in 0..4 {
            feed(&mut f, src.frame(false), &mut seen);
        }
        assert_eq!(seen.out.len(), before + 4, "q flows, f's deltas wait");
        assert!(seen.out[before..].iter().all(|o| o.4 == 0));
        feed(&mut f, src.frame(true), &mut seen);
        assert_eq!(f.current(), Some(2), "back on f at its keyframe");
        assert_eq!(seen.out.last().unwrap().4, 2);

        // With a layer flowing, a lower keyframe switches nothing.
        f.set_target(Some(Layer::new(2, 2)));
        let q_key = src.frame(true)[0];
        assert_eq!(f.on_packet(q_key), Verdict::Drop);
        assert_eq!(f.current(), Some(2));
    }

    #[test]
    fn a_layer_that_stops_gives_way_to_a_lower_one_at_its_keyframe() {
        // After an outage Chromium answered the keyframe request on f, then stopped f while q
        // and h kept coming.
        let mut src = Source::new();
        let mut f = VideoForwarder::new(1000);
        let mut seen = Seen::default();
        f.set_target(Some(Layer::new(2, 2)));
        feed(&mut f, src.frame(true), &mut seen);
        feed(&mut f, src.frame(false), &mut seen);
        assert_eq!(f.current(), Some(2));
        let without_f = |frame: [VideoPacket; 3]| [frame[0], frame[1]];
        // 33 ms a frame: f silent for 495 ms may still come back.
        for _ in 0..15 {
            for p in without_f(src.frame(false)) {
                assert_eq!(f.on_packet(p), Verdict::Drop, "f may still come back");
            }
        }
        // From 500 ms: h's deltas ask for h's keyframe; q, below h, waits.
        let [q, h] = without_f(src.frame(false));
        assert_eq!(f.on_packet(q), Verdict::Drop);
        assert_eq!(f.on_packet(h), Verdict::DropNeedKeyframe { spatial: 1 });
        assert_eq!(f.current(), Some(2), "no switch on a delta");
        let before = seen.out.len();
        let [q, h] = without_f(src.frame(true));
        assert_eq!(
            f.on_packet(q),
            Verdict::Drop,
            "h is alive: q does not take over"
        );
        assert!(matches!(
            f.on_packet(h),
            Verdict::Forward { switched: true, .. }
        ));
        assert_eq!(f.current(), Some(1), "h took over at its keyframe");
        assert_eq!(f.switch_pending(), Some(2), "f is still the target");
        for _ in 0..4 {
            for p in without_f(src.frame(false)) {
                if let Verdict::Forward { seq, .. } = f.on_packet(p) {
                    seen.out.push((seq, 0, 0, 0, p.spatial));
                }
            }
        }
        assert_eq!(seen.out.len(), before + 4, "h flows");
        // f comes back: the switch up waits for its keyframe as usual.
        feed(&mut f, src.frame(true), &mut seen);
        assert_eq!(f.current(), Some(2));

        // A stall of the whole uplink: every layer comes back in one burst, f's packets a
        // moment after q's and h's. Nothing asks for a lower keyframe.
        src.frame += 20; // 660 ms without packets
        let [q, h, f_] = src.frame(false);
        assert_eq!(f.on_packet(q), Verdict::Drop, "q's run just began");
        assert_eq!(f.on_packet(h), Verdict::Drop, "h's run just began");
        assert!(matches!(f.on_packet(f_), Verdict::Forward { .. }));

        // A layer that keeps flowing is never left for a lower keyframe.
        for _ in 0..30 {
            feed(&mut f, src.frame(false), &mut seen);
        }
        let q_key = src.frame(true)[0];
        assert_eq!(f.on_packet(q_key), Verdict::Drop);
        assert_eq!(f.current(), Some(2));
    }

    #[test]
    fn dropping_temporal_layers_leaves_no_gaps() {
        let mut src = Source::new();
        let mut f = VideoForwarder::new(1000);
        let mut seen = Seen::default();
        f.set_target(Some(Layer::new(1, 0)));
        feed(&mut f, src.frame(true), &mut seen);
        for _ in 0..40 {
            feed(&mut f, src.frame(false), &mut seen);
        }
        // The keyframe (q's, then h's), then only T0: one in four frames of the 0,2,1,2 pattern.
        assert_eq!(seen.out.len(), 12);
        f.set_target(Some(Layer::new(1, 1)));
        for _ in 0..8 {
            feed(&mut f, src.frame(false), &mut seen);
        }
        assert_eq!(seen.out.len(), 16, "T0 and T1: half the frames");
        assert_continuous(&seen);
    }

    #[test]
    fn pause_and_resume_waits_for_a_keyframe() {
        let mut src = Source::new();
        let mut f = VideoForwarder::new(1000);
        let mut seen = Seen::default();
        f.set_target(Some(Layer::new(0, 2)));
        feed(&mut f, src.frame(true), &mut seen);
        feed(&mut f, src.frame(false), &mut seen);
        f.set_target(None);
        for _ in 0..30 {
            feed(&mut f, src.frame(false), &mut seen);
        }
        assert_eq!(seen.out.len(), 2, "paused");
        f.set_target(Some(Layer::new(0, 2)));
        feed(&mut f, src.frame(false), &mut seen);
        assert_eq!(seen.out.len(), 2, "resumes only on a keyframe");
        feed(&mut f, src.frame(true), &mut seen);
        assert_eq!(seen.out.len(), 3);
        assert_continuous(&seen);
        // The timestamp jump after the pause follows wall time (31 frames of 33 ms).
        let gap = seen.out[2].1.wrapping_sub(seen.out[1].1);
        assert!((80_000..100_000).contains(&gap), "{gap}");
    }
}

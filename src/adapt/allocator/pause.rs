//! When a shortfall pauses video: the lowest layer is kept until the link itself shows it
//! cannot carry it beside audio. Pausing is the last resort (users see black).

use std::time::{Duration, Instant};

use super::{Input, UP_QUEUE_MAX};

/// Pausing video is the last resort (users see black): only after the lowest layer has not
/// fitted for this long, and the link shows it (`link_fails`). Until then the lowest layer is
/// kept.
pub const PAUSE_DELAY: Duration = Duration::from_secs(2);
/// Mean loss over a shortfall above this says the link cannot carry audio and the lowest
/// layer (`link_fails`). Not `LOSS_TOLERATED`: rural 3G's 3 % random loss, counted over the
/// 2-3 s of a dip in GCC's estimate at about 70 packets a second, comes out above 5 % often
/// enough to pause video on a link that carries it (weak-link test: paused with 1.5 % loss in
/// the last second, no far shortfall, delivered 149 kbit/s against 133 needed); GCC itself
/// reads 2-10 % as neither rise nor fall. A link really too narrow drops far more (the starved
/// test: 9-23 %) and builds a queue.
pub const PAUSE_LOSS: f32 = 0.10;
/// An estimate far short of the lowest layer pauses video by itself, with no loss or queue to
/// confirm it, only after this long. GCC's estimate on rural 3G dips to 60-116 kbit/s now and
/// then (in the traces its delay trend flags overuse every second or two on that link's
/// jitter, and its loss control turns to decreasing on 3-5 % loss), below audio and the
/// lowest layer; in the weak-link test such a pause came after 2 s of shortfall, GCC was back
/// at 218 kbit/s under 7 s after the shortfall began, and the pause with its resume cost 4.9 s
/// of black. Keeping the layer costs a few thin frames; a link really too narrow shows loss or
/// a queue and pauses after `PAUSE_DELAY`.
pub const FAR_SHORT_DELAY: Duration = Duration::from_secs(8);

/// Why a link cannot carry the lowest layer beside audio (`link_fails`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LinkFailure {
    /// Mean loss over the shortfall above `PAUSE_LOSS`.
    Loss(f32),
    /// A standing queue above `UP_QUEUE_MAX`.
    Queue(Duration),
    /// The estimate is far short of the lowest layer and nothing delivered contradicts it.
    FarShort,
}

/// After a step down to the lowest layer, loss reported for this long still describes the
/// higher layer's collapse (the report covers the last second or so, the lower layer starts
/// on its next keyframe and the pacer drains its queue first), not whether the lowest layer
/// fits. Step test, 2 Mbit/s -> 250 kbit/s under 720p: the decisions in the second after the
/// step read 16-56 % loss (8 runs), the later ones on 180p 0 %; counted in the shortfall's
/// mean, that burst paused video for ~9 s in 1 of 3 step-benchmark runs on a link that
/// carried the lowest layer.
pub const LOSS_SETTLE: Duration = Duration::from_secs(1);

/// A shortfall under way: since when, and the loss reported over it. A pause reads the link
/// over the whole shortfall, not one second's sample: on rural 3G's 3 % random loss the
/// per-second figure runs from 0 to 7.5 % (weak-link test), so one sample above
/// `LOSS_TOLERATED` at the end of a 2 s dip in GCC's estimate would pause a link that carries.
#[derive(Debug, Clone, Copy)]
pub(super) struct Shortfall {
    pub(super) since: Instant,
    /// Loss reported before this is not counted (`restart_loss`).
    loss_from: Instant,
    loss_sum: f64,
    samples: u32,
}

impl Shortfall {
    pub(super) fn new(since: Instant) -> Self {
        Self {
            since,
            loss_from: since,
            loss_sum: 0.0,
            samples: 0,
        }
    }

    pub(super) fn observe(&mut self, now: Instant, loss: f32) {
        if now >= self.loss_from {
            self.loss_sum += f64::from(loss);
            self.samples += 1;
        }
    }

    /// The target just stepped down to the lowest layer: from here the loss counts for
    /// whether that layer fits, once `LOSS_SETTLE` has passed. The shortfall's clock keeps
    /// running.
    pub(super) fn restart_loss(&mut self, now: Instant) {
        self.loss_from = now + LOSS_SETTLE;
        self.loss_sum = 0.0;
        self.samples = 0;
    }

    /// Zero until a sample is counted.
    pub(super) fn mean_loss(&self) -> f32 {
        (self.loss_sum / f64::from(self.samples.max(1))) as f32
    }
}

/// Whether pausing `v` is warranted beyond GCC's estimate being short of its lowest layer:
/// the link shows it cannot carry what we send (loss beyond what FEC and NACK absorb, or a
/// standing queue), or the estimate is far short of the lowest layer.
///
/// On a lossy rural link GCC's loss-based control can sink well below the link for seconds
/// while the link still carries audio and the lowest layer: weak-link test, 300 kbit/s with 3 %
/// loss, GCC at 120 kbit/s with 78 of audio, 1.8 % loss and no standing queue, and the video
/// paused (a freeze of 6 s with the resume) in 1 of 4 runs. A link that really is too narrow
/// for what we send shows loss or a queue within a second, and then video pauses.
/// An estimate far short counts only while nothing contradicts it: a link that delivered
/// audio and the lowest layer over the last interval (`Input::delivered_bps`) with tolerable
/// loss and no standing queue carries them, whatever GCC says (the same test: GCC at 60 kbit/s,
/// audio at 80, the lowest layer arriving with 2.6 % loss, and the video paused for good).
/// Loss is the mean over the shortfall (`Shortfall`, `PAUSE_LOSS`); a far shortfall alone
/// must last `FAR_SHORT_DELAY`. `plain` is the estimate less audio, `lowest_bps` what the
/// lowest layer costs.
pub(super) fn link_fails<K>(
    input: &Input<K>,
    short: &Shortfall,
    now: Instant,
    plain: u64,
    lowest_bps: u64,
) -> Option<LinkFailure> {
    let carries = input
        .delivered_bps
        .is_some_and(|d| d >= input.audio_bps + lowest_bps);
    let loss = short.mean_loss();
    let waited = now.saturating_duration_since(short.since);
    if loss > PAUSE_LOSS {
        Some(LinkFailure::Loss(loss))
    } else if input.queue_delay > UP_QUEUE_MAX {
        Some(LinkFailure::Queue(input.queue_delay))
    } else if plain < lowest_bps / 2 && !carries && waited >= FAR_SHORT_DELAY {
        Some(LinkFailure::FarShort)
    } else {
        None
    }
}

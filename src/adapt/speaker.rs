//! Who is speaking, from the RFC 6464 audio levels publishers put on their audio packets.
//! Pure: levels and time come in as arguments. The active speaker's video gets allocation
//! priority over other cameras (after shared images).
//!
//! Levels are smoothed per participant; the active speaker changes only when someone else has
//! been clearly louder for `SWITCH_AFTER`, so a cough or a "yes" does not flip priorities.

use std::time::{Duration, Instant};

/// Quieter than this (dBov) is not speech.
pub const SPEECH_DBOV: f32 = -50.0;
/// How much louder (dB) a new speaker must be than the current one.
pub const SWITCH_MARGIN_DB: f32 = 6.0;
/// How long a new speaker must lead before taking over.
pub const SWITCH_AFTER: Duration = Duration::from_millis(1500);
/// Time constant of the level smoothing.
const SMOOTHING: Duration = Duration::from_millis(300);

#[derive(Debug, Clone)]
struct Level<K> {
    key: K,
    dbov: f32,
    at: Instant,
}

#[derive(Debug, Clone)]
pub struct SpeakerDetector<K> {
    levels: Vec<Level<K>>,
    active: Option<K>,
    challenger: Option<(K, Instant)>,
}

impl<K: Clone + PartialEq> Default for SpeakerDetector<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + PartialEq> SpeakerDetector<K> {
    pub fn new() -> Self {
        Self {
            levels: Vec::new(),
            active: None,
            challenger: None,
        }
    }

    /// One audio packet's level: 0 is the loudest, -127 silence (str0m's `audio_level`).
    pub fn on_level(&mut self, key: &K, now: Instant, level: i8) {
        let dbov = f32::from(level.clamp(-127, 0));
        match self.levels.iter_mut().find(|l| &l.key == key) {
            Some(l) => {
                let dt = now.saturating_duration_since(l.at).as_secs_f32();
                let alpha = (dt / SMOOTHING.as_secs_f32()).min(1.0);
                l.dbov += (dbov - l.dbov) * alpha;
                l.at = now;
            }
            None => self.levels.push(Level {
                key: key.clone(),
                dbov,
                at: now,
            }),
        }
    }

    pub fn remove(&mut self, key: &K) {
        self.levels.retain(|l| &l.key != key);
        if self.active.as_ref() == Some(key) {
            self.active = None;
        }
    }

    /// The active speaker now, if anyone speaks.
    pub fn update(&mut self, now: Instant) -> Option<K> {
        // A participant whose packets stopped (muted, DTX silence) counts as silent.
        let level_of = |l: &Level<K>| {
            if now.saturating_duration_since(l.at) > Duration::from_millis(500) {
                -127.0
            } else {
                l.dbov
            }
        };
        let loudest = self
            .levels
            .iter()
            .filter(|l| level_of(l) > SPEECH_DBOV)
            .max_by(|a, b| level_of(a).total_cmp(&level_of(b)));
        let Some(loudest) = loudest else {
            self.challenger = None;
            return self.active.clone();
        };
        let current = self
            .active
            .as_ref()
            .and_then(|a| self.levels.iter().find(|l| &l.key == a))
            .map(level_of);
        let leads = match current {
            None => true,
            Some(c) => level_of(loudest) > c + SWITCH_MARGIN_DB || c <= SPEECH_DBOV,
        };
        if self.active.as_ref() == Some(&loudest.key) || !leads {
            self.challenger = None;
        } else if self.active.is_none() || current.is_none_or(|c| c <= SPEECH_DBOV) {
            // Nobody else is speaking: no contest.
            self.challenger = None;
            self.active = Some(loudest.key.clone());
        } else {
            match &self.challenger {
                Some((k, since)) if *k == loudest.key => {
                    if now.saturating_duration_since(*since) >= SWITCH_AFTER {
                        self.active = Some(loudest.key.clone());
                        self.challenger = None;
                    }
                }
                _ => self.challenger = Some((loudest.key.clone(), now)),
            }
        }
        self.active.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds 20 ms packets for `ms` with each participant's level, returns the speaker after.
    fn talk(
        d: &mut SpeakerDetector<u8>,
        t: &mut Instant,
        ms: u64,
        levels: &[(u8, i8)],
    ) -> Option<u8> {
        for _ in 0..ms / 20 {
            *t += Duration::from_millis(20);
            for (k, level) in levels {
                d.on_level(k, *t, *level);
            }
            d.update(*t);
        }
        d.update(*t)
    }

    #[test]
    fn follows_the_speaker_with_hysteresis() {
        let mut d = SpeakerDetector::new();
        let mut t = Instant::now();
        assert_eq!(
            talk(&mut d, &mut t, 500, &[(1, -90), (2, -90)]),
            None,
            "silence"
        );
        assert_eq!(talk(&mut d, &mut t, 500, &[(1, -25), (2, -80)]), Some(1));
        // A short interjection does not take over.
        assert_eq!(talk(&mut d, &mut t, 800, &[(1, -35), (2, -20)]), Some(1));
        // A sustained one does.
        assert_eq!(talk(&mut d, &mut t, 2000, &[(1, -60), (2, -20)]), Some(2));
        // Everyone quiet: the last speaker stays.
        assert_eq!(talk(&mut d, &mut t, 2000, &[(1, -100), (2, -100)]), Some(2));
        // Speaker 2 stops sending (muted); 1 talks softly: 1 takes over at once.
        assert_eq!(talk(&mut d, &mut t, 2000, &[(1, -40)]), Some(1));
        d.remove(&1);
        assert_eq!(d.update(t), None);
    }
}

//! Pure parts of `linkem`, the userspace link emulator: the per-direction link model
//! ([`link::Link`]), the profile format and its schedule ([`profile`]), a small seedable PRNG
//! ([`rng`]), per-second counters ([`stats`]) and the command line ([`cli`]).
//!
//! Nothing here does IO or reads the clock: time is always passed in, so everything is tested
//! with simulated time. The namespace/TUN shell lives in `src/bin/linkem/`.

pub mod cli;
pub mod link;
pub mod nat;
pub mod profile;
pub mod rng;
pub mod stats;

pub use link::{Link, Verdict};
pub use nat::{Nat, NatConfig, NatDrop};
pub use profile::{Burst, Dir, LinkParams, Profile, ProfileError, Timeline, TimelineCursor};
pub use rng::{RngLike, SplitMix64};

//! Bandwidth adaptation: measuring layers and deciding, per subscriber, what fits its link.
//! Pure: no IO, time is an argument.

pub mod allocator;
pub mod delivered;
pub mod layer;
pub mod meter;
pub mod prober;
pub mod quality;
pub mod queue;
pub mod shaping;
pub mod speaker;
pub mod stall;

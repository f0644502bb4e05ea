//! Pure forwarding logic: what to send a subscriber and with which sequence number and
//! timestamp. No sockets, no clocks: time is an argument.

pub mod budget;
pub mod codec;
pub mod keyframe;
pub mod red;
pub mod rewrite;
pub mod video;

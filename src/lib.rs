//! The consult SFU: receives each participant's audio and video over WebRTC (str0m, one UDP
//! port) and forwards RTP to the other participants of the consult without decoding.
//!
//! Pure logic (`config`, `demux`, `forward`) has no IO; `room` owns the `Rtc`s of one consult
//! in one task; `udp`, `http`, `server` are the thin IO shell.

pub mod adapt;
pub mod config;
pub mod demux;
pub mod forward;
pub mod http;
pub mod ids;
pub mod metrics;
pub mod registry;
pub mod room;
pub mod server;
pub mod udp;

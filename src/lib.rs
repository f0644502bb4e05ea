//! The consult SFU: receives each participant's audio and video over WebRTC (str0m, one UDP
//! port) and forwards RTP to the other participants of the consult without decoding.
//!
//! Pure logic (`config`, `demux`, `forward`) has no IO; `room` owns the `Rtc`s of one consult
//! in one task; `consult` keeps consults, invites and the audit trail in SQLite on a thread of
//! its own; `api` is the operator API; `udp`, `http`, `server` are the thin IO shell.

pub mod adapt;
pub mod admission;
pub mod api;
pub mod cluster;
pub mod config;
pub mod consult;
pub mod demux;
pub mod drain;
pub mod forward;
pub mod http;
pub mod ids;
pub mod metrics;
pub mod registry;
pub mod resume;
pub mod room;
pub mod server;
pub mod tcp;
pub mod tls;
pub mod turn;
pub mod udp;
pub mod web_security;

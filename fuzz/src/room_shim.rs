//! Compiles `src/room/channel.rs` in place, so the data-channel parsers (`parse_text`,
//! `parse_header`, `chunk_count`, `chunk_len`) are fuzzed as they are, without a copy. They are
//! `pub` but in the private module `room::channel`; until the server crate re-exports them
//! (`pub use channel::{chunk_count, chunk_len, parse_header, parse_text, ClientText};` in
//! `src/room/mod.rs`), this module stands in for `room`: it provides exactly what the file's
//! `use super::...` lines and its `impl Room` block need. Once the re-export exists, delete this
//! file and use `consult_sfu::room::...` in `checks.rs`.
//!
//! If `channel.rs` starts using another `Room` field or method, this stops compiling: add the
//! field here (nothing in it runs; only the parsers are called).

#![allow(dead_code, unused_imports, clippy::all)]

use crate::ids::ParticipantId;

pub use consult_sfu::room::permission;

#[path = "../../src/room/channel.rs"]
pub mod channel;

pub struct Participant {
    pub id: ParticipantId,
    pub role: signaling::Role,
    pub name: String,
    pub channel: Option<str0m::channel::ChannelId>,
    pub rtc: str0m::Rtc,
}

pub struct Room {
    participants: Vec<Participant>,
    transfers: Vec<channel::Transfer>,
    next_relay_id: u32,
    relay_buf: Vec<u8>,
}

impl Room {
    fn index(&self, id: ParticipantId) -> Option<usize> {
        self.participants.iter().position(|p| p.id == id)
    }

    fn drive(&mut self, _i: usize) {}
}

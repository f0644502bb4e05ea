//! Shared code of the fuzz targets: the properties each one checks (`checks`) and the stand-in
//! that compiles the data-channel parsers in place (`room`, see `room_shim.rs`).

pub mod checks;

/// `src/room/channel.rs` names `crate::ids::ParticipantId`.
mod ids {
    pub use consult_sfu::ids::*;
}

#[path = "room_shim.rs"]
mod room;

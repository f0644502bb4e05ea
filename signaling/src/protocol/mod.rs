//! Protocol v1 messages and their parsing. Pure: no sockets, no tasks.
//!
//! Every message is one JSON object with `"v": 1` and a `"type"` tag. See `PROTOCOL.md`.

use serde::{Deserialize, Serialize};

// Private submodules, re-exported below: every public path stays `signaling::protocol::X`, so
// the split is invisible to the SFU, the bots and the fuzz checks.
mod client;
mod error;
mod parse;
mod server;

pub use client::ClientMessage;
pub use error::{ErrorCode, ProtocolError};
pub use parse::{parse_client_message, validate_room};
pub use server::{
    encode_server_message, encode_server_message_with_ice, IceServer, ParticipantInfo, PauseReason,
    Quality, ServerMessage,
};

/// The only protocol version this server speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest accepted client message. An SDP offer with three simulcast layers from Chromium is
/// about 8 KiB; 64 KiB leaves room for many candidates while bounding memory per connection.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// Longest invite token, in bytes (a JWT with a 64-character name is about 400).
pub const MAX_INVITE_BYTES: usize = 2048;

/// Longest room name, in bytes (room names are ASCII).
pub const MAX_ROOM_CHARS: usize = 64;

/// Who a participant is in a consult. Decides who may open a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The doctor at the central hospital.
    Specialist,
    /// The clinic operator (often with an on-site health worker).
    Clinic,
    /// The patient, at the clinic or at home.
    Patient,
    /// A trainee watching for tele-education: receives only, never publishes or chats.
    Observer,
}

impl Role {
    /// A patient waits for the clinic or the specialist to open the consult (open join only;
    /// with invites the consult exists once the operator created it).
    pub fn may_open_room(self) -> bool {
        matches!(self, Role::Specialist | Role::Clinic)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Specialist => "specialist",
            Role::Clinic => "clinic",
            Role::Patient => "patient",
            Role::Observer => "observer",
        }
    }
}

/// Where a published track comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackSource {
    Microphone,
    Camera,
    /// A shared screen or window (content hint `detail`): high resolution, low frame rate.
    Screen,
}

/// Why the server closes a participant's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// Not admitted from the lobby.
    Denied,
    /// Removed by the clinic operator.
    Removed,
    /// The consult was ended (by the operator, in the consult or through the API).
    ConsultEnded,
    /// The server is restarting (an upgrade): join again with the same invite in a moment.
    ServerRestart,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    Audio,
    Video,
}

/// One simulcast encoding the client should publish (lowest first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoLayerConfig {
    pub rid: String,
    pub scale_resolution_down_by: f64,
    pub max_bitrate: u64,
    pub max_framerate: f64,
}

#[cfg(test)]
mod tests;

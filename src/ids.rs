//! Newtype ids: one name per concept, and no mixing a room name with a participant id.

use std::fmt;

/// A consult, named by its join link.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomId(pub String);

/// A participant: unique for the life of the process (`p1`, `p2`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantId(pub u64);

/// A published track, unique within its publisher: the publisher's transceiver mid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrackId {
    pub publisher: ParticipantId,
    pub mid: str0m::media::Mid,
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

impl fmt::Display for TrackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-m{}", self.publisher, self.mid)
    }
}

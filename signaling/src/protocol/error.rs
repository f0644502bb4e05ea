//! Error codes and parse failures. Apart because the codes are a stable contract that clients
//! switch on and metrics label by: changing one is a protocol change, never a refactor.

use serde::{Deserialize, Serialize};

use super::{ServerMessage, MAX_MESSAGE_BYTES};

/// Error codes: stable strings clients can switch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, or not a JSON object.
    BadJson,
    /// The `v` field is missing or not 1.
    UnsupportedVersion,
    /// The `type` field is missing or names no message.
    UnknownType,
    /// A field is missing, has the wrong type, or an invalid value.
    InvalidMessage,
    /// Larger than `MAX_MESSAGE_BYTES`.
    TooLarge,
    /// The message is valid but not allowed now (e.g. `offer` before `join`).
    WrongState,
    /// The room has not been opened by a clinic operator or specialist yet.
    UnknownRoom,
    /// The room already has the maximum number of participants.
    RoomFull,
    /// The SDP could not be parsed or negotiated.
    BadSdp,
    /// The ICE candidate could not be parsed.
    BadCandidate,
    /// Too many messages in a short time.
    RateLimited,
    /// The invite is missing, forged, expired or withdrawn.
    Unauthorized,
    /// Your role may not do this.
    Forbidden,
    ConsultEnded,
    /// The server is restarting and takes no joins now; retry in a few seconds.
    ServerRestarting,
    /// No such participant (admit, deny, remove, mute).
    UnknownParticipant,
    /// The server failed; the message was not applied.
    Internal,
    /// No `join` within the join timeout after the socket opened; the socket closes next.
    JoinTimeout,
    /// The server or your address has too many connections (HTTP 503 before the upgrade),
    /// or a join was refused because the node is at its participant cap or saturated (an
    /// `error` with `retry_after_ms`).
    ServerBusy,
    /// The resume token is invalid or expired, or the participant is gone: join afresh.
    ResumeFailed,
    /// Never sent as an `error`: a join answered with `redirect` (metrics only).
    Redirected,
}

impl ErrorCode {
    /// The wire name, e.g. `"bad_json"`, also used as a metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::WrongState => "wrong_state",
            ErrorCode::UnknownRoom => "unknown_room",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::BadSdp => "bad_sdp",
            ErrorCode::BadCandidate => "bad_candidate",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::ConsultEnded => "consult_ended",
            ErrorCode::ServerRestarting => "server_restarting",
            ErrorCode::UnknownParticipant => "unknown_participant",
            ErrorCode::Internal => "internal",
            ErrorCode::JoinTimeout => "join_timeout",
            ErrorCode::ServerBusy => "server_busy",
            ErrorCode::ResumeFailed => "resume_failed",
            ErrorCode::Redirected => "redirected",
        }
    }
}

/// Why a text frame is not a valid client message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("message of {0} bytes is larger than the limit of {MAX_MESSAGE_BYTES} bytes")]
    TooLarge(usize),
    #[error("not a JSON object: {0}")]
    BadJson(String),
    #[error("missing or unsupported protocol version {0:?}; this server speaks v=1")]
    UnsupportedVersion(Option<String>),
    #[error("unknown message type {0:?}")]
    UnknownType(Option<String>),
    #[error("invalid {kind} message: {reason}")]
    Invalid { kind: String, reason: String },
}

impl ProtocolError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtocolError::TooLarge(_) => ErrorCode::TooLarge,
            ProtocolError::BadJson(_) => ErrorCode::BadJson,
            ProtocolError::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            ProtocolError::UnknownType(_) => ErrorCode::UnknownType,
            ProtocolError::Invalid { .. } => ErrorCode::InvalidMessage,
        }
    }

    pub fn to_message(&self) -> ServerMessage {
        ServerMessage::error(self.code(), self.to_string())
    }
}

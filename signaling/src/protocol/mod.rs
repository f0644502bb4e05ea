//! Protocol v1 messages and their parsing. Pure: no sockets, no tasks.
//!
//! Every message is one JSON object with `"v": 1` and a `"type"` tag. See `PROTOCOL.md`.

use serde::{Deserialize, Serialize};

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

/// Messages a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Either `invite` (the signed token of an invite link) or, only on servers run with open
    /// join for load tests, `room`, `name` and `role`.
    Join {
        #[serde(default)]
        invite: Option<String>,
        #[serde(default)]
        room: Option<String>,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        role: Option<Role>,
        /// The `resume_token` of an earlier `joined`: come back as the same participant, with
        /// its publications and subscriptions, after the socket dropped. Give the invite (or
        /// the open-join fields) too: if the resume fails (`resume_failed`), join afresh.
        #[serde(default)]
        resume: Option<String>,
    },
    /// Ask for an ICE restart (media stalled, or the network changed): the server answers with
    /// an `offer` carrying new ICE credentials.
    IceRestart,
    /// The client's one offer, right after `joined`: its published tracks. `screen_mid` names
    /// a send-only video transceiver kept for screen sharing (started later with `share`).
    Offer {
        sdp: String,
        #[serde(default)]
        screen_mid: Option<String>,
    },
    /// The client's answer to a server offer.
    Answer {
        sdp: String,
    },
    /// A trickled ICE candidate; an empty `candidate` means end of candidates.
    Candidate {
        candidate: String,
        #[serde(default)]
        sdp_mid: Option<String>,
        #[serde(default)]
        sdp_m_line_index: Option<u32>,
    },
    Mute {
        kind: TrackKind,
        muted: bool,
    },
    /// The subscriber's own limits: data saver keeps every video at the lowest layer.
    SetPreference {
        data_saver: bool,
        /// The highest layer wanted (`q`, `h` or `f`), e.g. for a small tile or a phone.
        #[serde(default)]
        max_layer: Option<String>,
    },
    /// Screen share on the `screen_mid` transceiver started or stopped.
    Share {
        active: bool,
    },
    /// Let a participant in from the lobby (clinic, specialist).
    Admit {
        participant_id: String,
    },
    /// Turn a participant in the lobby away (clinic, specialist).
    Deny {
        participant_id: String,
    },
    /// Remove a participant from the consult (clinic).
    Remove {
        participant_id: String,
    },
    /// Mute a participant's microphone (clinic); they may unmute themselves.
    MuteParticipant {
        participant_id: String,
    },
    /// End the consult for everyone (clinic).
    EndConsult,
    Leave,
}

impl ClientMessage {
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientMessage::Join { .. } => "join",
            ClientMessage::Offer { .. } => "offer",
            ClientMessage::Answer { .. } => "answer",
            ClientMessage::Candidate { .. } => "candidate",
            ClientMessage::Mute { .. } => "mute",
            ClientMessage::SetPreference { .. } => "set_preference",
            ClientMessage::Share { .. } => "share",
            ClientMessage::Admit { .. } => "admit",
            ClientMessage::Deny { .. } => "deny",
            ClientMessage::Remove { .. } => "remove",
            ClientMessage::MuteParticipant { .. } => "mute_participant",
            ClientMessage::EndConsult => "end_consult",
            ClientMessage::Leave => "leave",
            ClientMessage::IceRestart => "ice_restart",
        }
    }
}

/// A participant as other participants see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    pub participant_id: String,
    pub name: String,
    pub role: Role,
    pub audio_muted: bool,
    pub video_muted: bool,
}

/// One simulcast encoding the client should publish (lowest first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoLayerConfig {
    pub rid: String,
    pub scale_resolution_down_by: f64,
    pub max_bitrate: u64,
    pub max_framerate: f64,
}

/// Server-side connection quality of a participant, from loss, RTT and the bandwidth estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    Good,
    Fair,
    Poor,
}

/// Why a subscription gets no video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    /// The subscriber's link cannot carry even the lowest layer; it comes back by itself.
    Bandwidth,
    /// The publisher sends no layer now.
    Unavailable,
}

/// Messages the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Joined {
        participant_id: String,
        room: String,
        /// The consult's title (empty for open-join rooms).
        title: String,
        /// Yourself, as the others see you (name and role come from the invite).
        you: ParticipantInfo,
        participants: Vec<ParticipantInfo>,
        /// Simulcast encodings to publish camera video with.
        video_layers: Vec<VideoLayerConfig>,
        /// Give this in `join.resume` to come back as the same participant after the socket
        /// dropped (valid for the reconnect grace period, on this server only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume_token: Option<String>,
        /// This `joined` answers a resume: the peer connection and its media go on as they
        /// were; `participants` is the current list.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        resumed: bool,
    },
    Answer {
        sdp: String,
    },
    Offer {
        sdp: String,
    },
    /// You wait in the lobby until the clinic or the specialist admits you (then `joined`)
    /// or turns you away (then `closed`).
    Lobby {
        participant_id: String,
        room: String,
        title: String,
        name: String,
        role: Role,
    },
    /// Who waits in the lobby now; sent to those who may admit.
    LobbyChanged {
        waiting: Vec<ParticipantInfo>,
    },
    /// The server ends this session; the socket closes next.
    Closed {
        reason: CloseReason,
    },
    ParticipantJoined {
        participant: ParticipantInfo,
    },
    ParticipantLeft {
        participant_id: String,
    },
    /// A fresh `resume_token` replacing the one from `joined` (tokens are short-lived).
    ResumeToken {
        resume_token: String,
    },
    /// A participant's connection dropped and it may come back (its place is kept for the
    /// reconnect grace period), or it is back (`reconnecting: false`).
    ParticipantReconnecting {
        participant_id: String,
        reconnecting: bool,
    },
    /// A remote track is now offered to this client on transceiver `mid`.
    TrackPublished {
        participant_id: String,
        track_id: String,
        kind: TrackKind,
        source: TrackSource,
        mid: String,
    },
    TrackUnpublished {
        participant_id: String,
        track_id: String,
        mid: String,
    },
    MuteChanged {
        participant_id: String,
        kind: TrackKind,
        muted: bool,
        /// Who muted this participant, when it was not themselves (the clinic operator).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// What this client now receives on a video subscription: `layer` is a rid, or null with
    /// `paused` saying why.
    LayerChanged {
        participant_id: String,
        track_id: String,
        mid: String,
        layer: Option<String>,
        /// Highest temporal layer forwarded (frame-rate step), when `layer` is set.
        temporal: Option<u8>,
        paused: Option<PauseReason>,
    },
    /// Dynacast: send only these simulcast encodings of your track `mid` (your own mid); the
    /// others nobody receives now.
    PublishLayers {
        mid: String,
        active: Vec<String>,
    },
    /// The participant who speaks now (their video is favoured when bandwidth is short).
    ActiveSpeaker {
        participant_id: String,
    },
    /// Connection quality of a participant (also of yourself), and for yourself the estimate.
    ConnectionQuality {
        participant_id: String,
        quality: Quality,
        #[serde(skip_serializing_if = "Option::is_none")]
        estimate_bps: Option<u64>,
    },
    /// In a cluster, answering `join`: the consult runs on another node. Open `url` and send
    /// the same `join` there; the server closes this socket next.
    Redirect {
        url: String,
    },
    Error {
        code: ErrorCode,
        message: String,
        /// With `server_busy` on a refused join: how long to wait before joining again.
        /// Optional and additive: clients that do not know it ignore it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
}

impl ServerMessage {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMessage::Error {
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// `server_busy` for a join refused under load, with the retry hint.
    pub fn busy(message: impl Into<String>, retry_after: std::time::Duration) -> Self {
        ServerMessage::Error {
            code: ErrorCode::ServerBusy,
            message: message.into(),
            retry_after_ms: Some(u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

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

const KNOWN_TYPES: &[&str] = &[
    "join",
    "offer",
    "answer",
    "candidate",
    "mute",
    "set_preference",
    "share",
    "admit",
    "deny",
    "remove",
    "mute_participant",
    "end_consult",
    "leave",
    "ice_restart",
];

/// Parses and validates one text frame from a client.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, ProtocolError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(ProtocolError::TooLarge(text.len()));
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ProtocolError::BadJson(e.to_string()))?;
    let serde_json::Value::Object(mut object) = value else {
        return Err(ProtocolError::BadJson("expected a JSON object".into()));
    };
    match object.remove("v") {
        Some(serde_json::Value::Number(n)) if n.as_u64() == Some(PROTOCOL_VERSION as u64) => {}
        other => {
            return Err(ProtocolError::UnsupportedVersion(
                other.map(|v| v.to_string()),
            ))
        }
    }
    let kind = match object.get("type") {
        Some(serde_json::Value::String(s)) if KNOWN_TYPES.contains(&s.as_str()) => s.clone(),
        Some(serde_json::Value::String(s)) => {
            return Err(ProtocolError::UnknownType(Some(s.clone())))
        }
        _ => return Err(ProtocolError::UnknownType(None)),
    };
    let message: ClientMessage = serde_json::from_value(serde_json::Value::Object(object))
        .map_err(|e| ProtocolError::Invalid {
            kind: kind.clone(),
            reason: e.to_string(),
        })?;
    validate(&message).map_err(|reason| ProtocolError::Invalid { kind, reason })?;
    Ok(message)
}

fn validate(message: &ClientMessage) -> Result<(), String> {
    match message {
        ClientMessage::Join {
            resume: Some(token),
            ..
        } if token.is_empty() || token.len() > MAX_INVITE_BYTES => {
            Err(format!("resume must be 1 to {MAX_INVITE_BYTES} bytes"))
        }
        ClientMessage::Join {
            invite: Some(invite),
            room: None,
            name: None,
            role: None,
            ..
        } => {
            if invite.is_empty() || invite.len() > MAX_INVITE_BYTES {
                return Err(format!("invite must be 1 to {MAX_INVITE_BYTES} bytes"));
            }
            Ok(())
        }
        ClientMessage::Join {
            invite: Some(_), ..
        } => Err("give either invite, or room, name and role; not both".into()),
        ClientMessage::Join {
            invite: None,
            room: Some(room),
            name: Some(name),
            role: Some(_),
            ..
        } => {
            validate_room(room)?;
            let name = name.trim();
            if name.is_empty() {
                return Err("name must not be empty".into());
            }
            if name.chars().count() > MAX_NAME_CHARS {
                return Err(format!("name is longer than {MAX_NAME_CHARS} characters"));
            }
            if name.chars().any(char::is_control) {
                return Err("name must not contain control characters".into());
            }
            Ok(())
        }
        ClientMessage::Join { .. } => {
            Err("missing invite (open the invite link you were given)".into())
        }
        ClientMessage::Offer { sdp, .. } | ClientMessage::Answer { sdp } => {
            if sdp.trim().is_empty() {
                Err("sdp must not be empty".into())
            } else {
                Ok(())
            }
        }
        ClientMessage::SetPreference {
            max_layer: Some(layer),
            ..
        } if !["q", "h", "f"].contains(&layer.as_str()) => {
            Err(format!("max_layer must be q, h or f, not {layer:?}"))
        }
        ClientMessage::Admit { participant_id }
        | ClientMessage::Deny { participant_id }
        | ClientMessage::Remove { participant_id }
        | ClientMessage::MuteParticipant { participant_id }
            if participant_id.is_empty() || participant_id.len() > 32 =>
        {
            Err("participant_id must be 1 to 32 characters".into())
        }
        ClientMessage::Candidate { .. }
        | ClientMessage::Mute { .. }
        | ClientMessage::SetPreference { .. }
        | ClientMessage::Share { .. }
        | ClientMessage::Admit { .. }
        | ClientMessage::Deny { .. }
        | ClientMessage::Remove { .. }
        | ClientMessage::MuteParticipant { .. }
        | ClientMessage::EndConsult
        | ClientMessage::IceRestart
        | ClientMessage::Leave => Ok(()),
    }
}

/// Room names appear in links: lowercase ASCII letters, digits and `-`, 1 to 64 long.
pub fn validate_room(room: &str) -> Result<(), String> {
    if room.is_empty() || room.len() > MAX_ROOM_CHARS {
        return Err(format!(
            "room must be 1 to {MAX_ROOM_CHARS} characters long"
        ));
    }
    if !room
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("room may contain only a-z, 0-9 and '-'".into());
    }
    Ok(())
}

/// Serializes a server message with the version field.
pub fn encode_server_message(message: &ServerMessage) -> String {
    encode_server_message_with_ice(message, &[])
}

/// One entry of `joined`'s optional `ice_servers`: what the browser passes to
/// `RTCPeerConnection` as is (`RTCIceServer`). TURN entries carry short-lived credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// Like [`encode_server_message`], adding `ice_servers` to a `joined` message when there are
/// any. Added at encoding, per connection, since the credentials are per participant and
/// made when sent; an optional field, so older clients ignore it.
pub fn encode_server_message_with_ice(
    message: &ServerMessage,
    ice_servers: &[IceServer],
) -> String {
    let mut value = serde_json::to_value(message)
        .expect("invariant: ServerMessage has only string keys and finite values");
    if let serde_json::Value::Object(map) = &mut value {
        map.insert("v".into(), PROTOCOL_VERSION.into());
        if matches!(message, ServerMessage::Joined { .. }) && !ice_servers.is_empty() {
            map.insert(
                "ice_servers".into(),
                serde_json::to_value(ice_servers)
                    .expect("invariant: IceServer has only string keys and strings"),
            );
        }
    }
    value.to_string()
}

#[cfg(test)]
mod tests;

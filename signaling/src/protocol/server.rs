//! What the server sends, and how it goes on the wire. The encoders live with the types
//! because only they add the `v` field and the per-connection `ice_servers`, which the message
//! types deliberately do not carry.

use serde::{Deserialize, Serialize};

use super::{
    CloseReason, ErrorCode, Role, TrackKind, TrackSource, VideoLayerConfig, PROTOCOL_VERSION,
};

/// A participant as other participants see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    pub participant_id: String,
    pub name: String,
    pub role: Role,
    pub audio_muted: bool,
    pub video_muted: bool,
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

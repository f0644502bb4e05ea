//! Consult signaling: the versioned JSON protocol (v1) and the WebSocket endpoint that
//! speaks it. The protocol is documented in `PROTOCOL.md`.

pub mod limits;
pub mod protocol;
pub mod rate;
pub mod service;

pub use limits::{ConnectionCounter, LimitError, Limits};
pub use protocol::{
    encode_server_message, encode_server_message_with_ice, parse_client_message, ClientMessage,
    CloseReason, ErrorCode, IceServer, ParticipantInfo, PauseReason, ProtocolError, Quality, Role,
    ServerMessage, TrackKind, TrackSource, VideoLayerConfig, PROTOCOL_VERSION,
};
pub use service::{
    ws_handler, ClientIp, Endpoint, JoinError, JoinRequest, ParticipantLink, RoomService,
};

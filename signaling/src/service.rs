//! The WebSocket endpoint: one task pair per connection, a thin shell around the protocol.
//!
//! The connection only knows the protocol's states (before and after `join`); rooms,
//! negotiation and media belong to the [`RoomService`] the SFU provides.

use std::future::Future;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use crate::protocol::{
    encode_server_message, parse_client_message, ClientMessage, ErrorCode, Role, ServerMessage,
    MAX_MESSAGE_BYTES,
};
use crate::rate::RateLimiter;

/// Queue of messages to one client. Bounded: a client that stops reading is disconnected
/// rather than growing server memory.
pub const OUTBOX_CAPACITY: usize = 256;

/// A validated join request.
#[derive(Debug, Clone)]
pub enum JoinRequest {
    /// The signed token from an invite link: it names the consult, the name and the role.
    Invite { token: String },
    /// By room name, without an invite: only on servers run with open join (load tests).
    Open {
        room: String,
        name: String,
        role: Role,
    },
}

/// Why a join was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("the consult {0:?} has not been started yet")]
    UnknownRoom(String),
    #[error("the consult is full ({0} participants)")]
    RoomFull(usize),
    #[error("the server is shutting down")]
    Unavailable,
    #[error("{0}")]
    Unauthorized(String),
    #[error("this consult has ended")]
    ConsultEnded,
}

impl JoinError {
    pub fn code(&self) -> ErrorCode {
        match self {
            JoinError::UnknownRoom(_) => ErrorCode::UnknownRoom,
            JoinError::RoomFull(_) => ErrorCode::RoomFull,
            JoinError::Unavailable => ErrorCode::Internal,
            JoinError::Unauthorized(_) => ErrorCode::Unauthorized,
            JoinError::ConsultEnded => ErrorCode::ConsultEnded,
        }
    }
}

/// One joined participant, as the connection sees it. Dropping it means the participant left.
pub trait ParticipantLink: Send + 'static {
    /// Hands a message (anything but `join`) to the room. Problems the room finds later come
    /// back through the outbox as `error` messages.
    fn send(&mut self, message: ClientMessage) -> Result<(), Box<ServerMessage>>;

    /// Resolves when the room has dropped this participant (media failed, server shutdown).
    fn closed(&mut self) -> impl Future<Output = ()> + Send;
}

/// What the SFU provides to the signaling endpoint.
pub trait RoomService: Clone + Send + Sync + 'static {
    type Link: ParticipantLink;

    /// Admits a participant. On success the room sends `joined` through `outbox` first.
    fn join(
        &self,
        request: JoinRequest,
        outbox: mpsc::Sender<ServerMessage>,
    ) -> impl Future<Output = Result<Self::Link, JoinError>> + Send;

    /// Counts a rejected client message (for metrics).
    fn on_client_error(&self, _code: ErrorCode) {}
}

/// Axum handler for `GET /ws`.
pub async fn ws_handler<S: RoomService>(
    ws: WebSocketUpgrade,
    State(service): State<S>,
) -> Response {
    // Frames above the protocol limit still arrive whole (up to 4x), so the client gets a
    // `too_large` error instead of a dropped connection.
    ws.max_message_size(4 * MAX_MESSAGE_BYTES)
        .max_frame_size(4 * MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| serve_connection(socket, service))
}

/// Drives one WebSocket connection until the client leaves or disconnects.
pub async fn serve_connection<S: RoomService>(socket: WebSocket, service: S) {
    let (mut sink, mut stream) = socket.split();
    let (outbox, mut outbox_rx) = mpsc::channel::<ServerMessage>(OUTBOX_CAPACITY);

    let writer = tokio::spawn(async move {
        while let Some(message) = outbox_rx.recv().await {
            let text = encode_server_message(&message);
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });

    let mut link: Option<S::Link> = None;
    let mut limiter = RateLimiter::new(50.0, 200.0, Instant::now());
    let reply = |message: ServerMessage| {
        // A full outbox means the client is not reading; it is dropped below by the writer.
        let _ = outbox.try_send(message);
    };

    loop {
        let frame = match link.as_mut() {
            Some(joined) => tokio::select! {
                frame = stream.next() => frame,
                () = joined.closed() => break,
            },
            None => stream.next().await,
        };
        let Some(frame) = frame else { break };
        let text = match frame {
            Ok(Message::Text(text)) => text,
            Ok(Message::Binary(_)) => {
                service.on_client_error(ErrorCode::InvalidMessage);
                reply(ServerMessage::error(
                    ErrorCode::InvalidMessage,
                    "binary frames are not part of the protocol; send JSON text",
                ));
                continue;
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
        };
        if !limiter.allow(Instant::now()) {
            service.on_client_error(ErrorCode::RateLimited);
            reply(ServerMessage::error(
                ErrorCode::RateLimited,
                "too many messages; slow down",
            ));
            continue;
        }
        let message = match parse_client_message(text.as_str()) {
            Ok(message) => message,
            Err(err) => {
                service.on_client_error(err.code());
                reply(err.to_message());
                continue;
            }
        };
        match (&mut link, message) {
            (
                None,
                ClientMessage::Join {
                    invite,
                    room,
                    name,
                    role,
                },
            ) => {
                // parse_client_message guarantees either an invite or all three fields.
                let request = match (invite, room, name, role) {
                    (Some(token), ..) => JoinRequest::Invite { token },
                    (None, Some(room), Some(name), Some(role)) => JoinRequest::Open {
                        room,
                        name: name.trim().to_string(),
                        role,
                    },
                    _ => {
                        reply(ServerMessage::error(
                            ErrorCode::InvalidMessage,
                            "join needs an invite",
                        ));
                        continue;
                    }
                };
                match service.join(request, outbox.clone()).await {
                    Ok(joined) => link = Some(joined),
                    Err(err) => {
                        service.on_client_error(err.code());
                        reply(ServerMessage::error(err.code(), err.to_string()));
                    }
                }
            }
            (None, other) => {
                service.on_client_error(ErrorCode::WrongState);
                reply(ServerMessage::error(
                    ErrorCode::WrongState,
                    format!("{:?} is not allowed before join", other.type_name()),
                ));
            }
            (Some(_), ClientMessage::Join { .. }) => {
                service.on_client_error(ErrorCode::WrongState);
                reply(ServerMessage::error(
                    ErrorCode::WrongState,
                    "already joined; open a new connection to join another consult",
                ));
            }
            (Some(_), ClientMessage::Leave) => break,
            (Some(joined), other) => {
                if let Err(err) = joined.send(other) {
                    if let ServerMessage::Error { code, .. } = &*err {
                        service.on_client_error(*code);
                    }
                    reply(*err);
                }
            }
        }
    }

    // Leaving: the room sees the link dropped and tells the others.
    drop(link);
    drop(outbox);
    // The writer ends once the room drops its outbox sender; don't wait on a stuck client.
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
}

//! The WebSocket endpoint: one task pair per connection, a thin shell around the protocol.
//!
//! The connection only knows the protocol's states (before and after `join`); rooms,
//! negotiation and media belong to the [`RoomService`] the SFU provides.

use std::future::Future;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};

use crate::limits::{self, ConnectionCounter, ConnectionGuard, Limits};
use crate::protocol::{
    encode_server_message_with_ice, parse_client_message, ClientMessage, ErrorCode, IceServer,
    Role, ServerMessage, MAX_MESSAGE_BYTES,
};
use crate::rate::RateLimiter;

/// How long a refused client is asked to wait (`Retry-After`, seconds).
pub const RETRY_AFTER_SECS: u64 = 5;

/// How long a closing connection waits for its last messages to be written; then the socket
/// is dropped, so a client that stopped reading cannot keep it open.
const WRITER_GRACE: Duration = Duration::from_secs(2);

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
    /// Back as the participant a `resume_token` names, after the socket dropped.
    Resume { token: String },
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
    #[error("the server is restarting; join again in a few seconds")]
    Restarting,
    /// Admission control: the node is at its participant cap or saturated.
    #[error("the server is busy; join again in {} s", retry_after.as_secs_f32().ceil())]
    Busy { retry_after: Duration },
    #[error("cannot resume ({0}); join again")]
    ResumeFailed(String),
    /// In a cluster: the consult runs on another node; the client joins there (`redirect`).
    #[error("this consult runs on another node: {url}")]
    Redirect { url: String },
}

impl JoinError {
    pub fn code(&self) -> ErrorCode {
        match self {
            JoinError::UnknownRoom(_) => ErrorCode::UnknownRoom,
            JoinError::RoomFull(_) => ErrorCode::RoomFull,
            JoinError::Unavailable => ErrorCode::Internal,
            JoinError::Unauthorized(_) => ErrorCode::Unauthorized,
            JoinError::ConsultEnded => ErrorCode::ConsultEnded,
            JoinError::Restarting => ErrorCode::ServerRestarting,
            JoinError::Busy { .. } => ErrorCode::ServerBusy,
            JoinError::ResumeFailed(_) => ErrorCode::ResumeFailed,
            // Not an error the client made; counted with the other refusals by the caller.
            JoinError::Redirect { .. } => ErrorCode::Redirected,
        }
    }

    /// The `error` the client gets; `server_busy` carries the retry hint.
    pub fn to_message(&self) -> ServerMessage {
        match self {
            JoinError::Busy { retry_after } => ServerMessage::busy(self.to_string(), *retry_after),
            JoinError::Redirect { url } => ServerMessage::Redirect { url: url.clone() },
            other => ServerMessage::error(other.code(), other.to_string()),
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

    /// The client said `leave`. Dropping a link without it means the connection was lost:
    /// the participant may resume.
    fn leave(&mut self);
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

    /// ICE servers (with credentials for this participant) added to its `joined`.
    fn ice_servers(&self, _participant_id: &str) -> Vec<IceServer> {
        Vec::new()
    }
}

/// The TCP peer's address, from the HTTP layer (a request extension). Connections are
/// counted per client address (see [`limits::client_address`]); the endpoint refuses requests
/// without it (HTTP 500 from the extractor), since counting them nowhere would bypass the
/// per-address limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// The state of `GET /ws`: the rooms, and the connection limits with their counts.
#[derive(Debug, Clone)]
pub struct Endpoint<S> {
    service: S,
    connections: ConnectionCounter,
    join_timeout: Duration,
}

impl<S: RoomService> Endpoint<S> {
    pub fn new(service: S, limits: &Limits) -> Self {
        Endpoint {
            service,
            connections: ConnectionCounter::new(
                limits.max_connections,
                limits.max_connections_per_ip,
            ),
            join_timeout: limits.join_timeout,
        }
    }

    /// Open WebSocket connections (for metrics and tests).
    pub fn connections(&self) -> &ConnectionCounter {
        &self.connections
    }
}

/// Axum handler for `GET /ws`. Over a connection limit it answers HTTP 503 with
/// `{"error":{"code":"server_busy","message":...}}` and `Retry-After`, before upgrading: a
/// refused client costs no WebSocket and no task.
pub async fn ws_handler<S: RoomService>(
    ws: WebSocketUpgrade,
    State(endpoint): State<Endpoint<S>>,
    Extension(ClientIp(peer)): Extension<ClientIp>,
    headers: HeaderMap,
) -> Response {
    let forwarded_for = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    let client = limits::client_address(peer, forwarded_for);
    let guard = match endpoint.connections.try_acquire(client) {
        Ok(guard) => guard,
        Err(err) => {
            endpoint.service.on_client_error(ErrorCode::ServerBusy);
            tracing::debug!(%peer, ?client, "WebSocket refused: {err}");
            return busy_response(&err.to_string());
        }
    };
    let Endpoint {
        service,
        join_timeout,
        ..
    } = endpoint;
    // Frames above the protocol limit still arrive whole (up to 4x), so the client gets a
    // `too_large` error instead of a dropped connection.
    ws.max_message_size(4 * MAX_MESSAGE_BYTES)
        .max_frame_size(4 * MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| serve_connection(socket, service, join_timeout, guard))
}

/// HTTP 503 with the API's error shape (`docs/API.md`), so scripts and proxies see why.
fn busy_response(message: &str) -> Response {
    let body = serde_json::json!({
        "error": { "code": ErrorCode::ServerBusy.as_str(), "message": message }
    });
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, RETRY_AFTER_SECS.to_string())],
        Json(body),
    )
        .into_response()
}

/// Drives one WebSocket connection until the client leaves or disconnects, or has not joined
/// within `join_timeout`. `guard` counts the connection until its socket is gone.
pub async fn serve_connection<S: RoomService>(
    socket: WebSocket,
    service: S,
    join_timeout: Duration,
    guard: ConnectionGuard,
) {
    let join_deadline = tokio::time::Instant::now() + join_timeout;
    let (mut sink, mut stream) = socket.split();
    let (outbox, mut outbox_rx) = mpsc::channel::<ServerMessage>(OUTBOX_CAPACITY);
    // Sent (or dropped) before the outbox closes, so the close frame follows the last message.
    let (close_tx, close_rx) = oneshot::channel::<CloseFrame>();

    let ice_service = service.clone();
    let mut writer = tokio::spawn(async move {
        while let Some(message) = outbox_rx.recv().await {
            // Credentials are made as `joined` leaves, so they are fresh also for a patient
            // admitted from the lobby long after connecting.
            let ice = match &message {
                ServerMessage::Joined { participant_id, .. } => {
                    ice_service.ice_servers(participant_id)
                }
                _ => Vec::new(),
            };
            let text = encode_server_message_with_ice(&message, &ice);
            if sink.send(Message::Text(text.into())).await.is_err() {
                return;
            }
        }
        // A plain close would say 1005 (no code) to the browser: say 1000 (normal) instead.
        let frame = close_rx.await.unwrap_or(CloseFrame {
            code: close_code::NORMAL,
            reason: "".into(),
        });
        let _ = sink.send(Message::Close(Some(frame))).await;
        let _ = sink.close().await;
    });
    let mut close_frame: Option<CloseFrame> = None;

    let mut link: Option<S::Link> = None;
    let mut limiter = RateLimiter::new(50.0, 200.0, Instant::now());
    // Whether the client was told about the frames being dropped now.
    let mut rate_limited = false;
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
            None => tokio::select! {
                frame = stream.next() => frame,
                () = tokio::time::sleep_until(join_deadline) => {
                    service.on_client_error(ErrorCode::JoinTimeout);
                    reply(ServerMessage::error(
                        ErrorCode::JoinTimeout,
                        format!(
                            "no join within {} s; connect again and join",
                            join_timeout.as_secs_f32()
                        ),
                    ));
                    // 1008 (policy violation): the client broke the protocol's first rule.
                    close_frame = Some(CloseFrame {
                        code: close_code::POLICY,
                        reason: "join timeout".into(),
                    });
                    break;
                }
            },
        };
        let frame = match frame {
            Some(Ok(frame)) => frame,
            // A read error (a frame over 4x the limit, a protocol violation, a reset) ends the
            // connection: the stream cannot be trusted to resynchronise. 1008 is the generic
            // "policy violation" (the error does not say which; after a reset nobody reads it).
            Some(Err(_)) => {
                close_frame = Some(CloseFrame {
                    code: close_code::POLICY,
                    reason: "unreadable frame".into(),
                });
                break;
            }
            None => break,
        };
        if matches!(frame, Message::Close(_)) {
            break;
        }
        // Every other frame counts, pings and binary too: each costs the server a reply.
        if !limiter.allow(Instant::now()) {
            service.on_client_error(ErrorCode::RateLimited);
            // One error per stretch of dropped frames, so a flood is not answered by a flood.
            if !rate_limited {
                rate_limited = true;
                reply(ServerMessage::error(
                    ErrorCode::RateLimited,
                    "too many messages; slow down (this and further messages were dropped)",
                ));
            }
            continue;
        }
        rate_limited = false;
        let text = match frame {
            Message::Text(text) => text,
            Message::Binary(_) => {
                service.on_client_error(ErrorCode::InvalidMessage);
                reply(ServerMessage::error(
                    ErrorCode::InvalidMessage,
                    "binary frames are not part of the protocol; send JSON text",
                ));
                continue;
            }
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => continue,
        };
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
                    resume,
                },
            ) => {
                // parse_client_message guarantees either an invite or all three fields.
                let request = match (resume, invite, room, name, role) {
                    (Some(token), ..) => JoinRequest::Resume { token },
                    (None, Some(token), ..) => JoinRequest::Invite { token },
                    (None, None, Some(room), Some(name), Some(role)) => JoinRequest::Open {
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
                    Err(err @ JoinError::Redirect { .. }) => {
                        // Nothing more happens on this socket: the client goes to the node
                        // named, and a normal close after the message says so.
                        reply(err.to_message());
                        break;
                    }
                    Err(err) => {
                        service.on_client_error(err.code());
                        reply(err.to_message());
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
            (Some(joined), ClientMessage::Leave) => {
                joined.leave();
                break;
            }
            (Some(joined), other) => {
                if let ClientMessage::Offer { sdp, .. } = &other {
                    // Refused here, before the room parses it or makes a transceiver per m-line.
                    if let Err(why) = limits::check_offer(sdp) {
                        service.on_client_error(ErrorCode::BadSdp);
                        reply(ServerMessage::error(ErrorCode::BadSdp, why));
                        continue;
                    }
                }
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
    match close_frame {
        Some(frame) => {
            let _ = close_tx.send(frame);
        }
        // The writer then ends with a normal close.
        None => drop(close_tx),
    }
    drop(outbox);
    // The writer ends once the room drops its outbox sender. A client that stopped reading
    // blocks it on a full socket buffer: then it is stopped, which drops the socket.
    if tokio::time::timeout(WRITER_GRACE, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    drop(guard);
}

//! The rooms of this process, and the signaling endpoint's way into them. The lock here is
//! taken on join and when a room closes, never on the media path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use signaling::{
    ClientMessage, ErrorCode, JoinError, JoinRequest, ParticipantLink, RoomService, ServerMessage,
};
use tokio::sync::{mpsc, oneshot};

use crate::cluster::{Cluster, Placement};
use crate::consult::{Consults, InviteError};
use crate::ids::{ParticipantId, RoomId};
use crate::room::{self, Admission, MediaPlane, RoomCommand, RoomHandle};

#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    plane: Arc<MediaPlane>,
    consults: Consults,
    /// Join by room name without an invite (load tests and media tests only).
    open_join: bool,
    /// Set at shutdown: joins are refused while rooms tell their participants to come back.
    restarting: AtomicBool,
    /// A graceful drain: no new consults, running ones go on (`crate::drain`).
    drain: Arc<crate::drain::Drain>,
    /// The ICE servers (TURN with per-participant credentials) every `joined` carries.
    ice: crate::turn::IceConfig,
    /// Admission control: refuses joins with `server_busy` at the node's cap or saturation.
    admission_gate: Arc<crate::admission::monitor::Gate>,
    /// In a cluster: where each consult runs (None: every consult runs here).
    cluster: Option<Arc<Cluster>>,
    rooms: Mutex<HashMap<RoomId, RoomHandle>>,
    next_participant: AtomicU64,
    /// Signaling connections that joined (a resume starts a new one for the same participant).
    next_session: AtomicU64,
}

impl Registry {
    pub fn new(
        plane: Arc<MediaPlane>,
        consults: Consults,
        open_join: bool,
        drain: Arc<crate::drain::Drain>,
        ice: crate::turn::IceConfig,
        admission_gate: Arc<crate::admission::monitor::Gate>,
        cluster: Option<Arc<Cluster>>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                plane,
                consults,
                open_join,
                restarting: AtomicBool::new(false),
                drain,
                ice,
                admission_gate,
                cluster,
                rooms: Mutex::new(HashMap::new()),
                next_participant: AtomicU64::new(1),
                next_session: AtomicU64::new(1),
            }),
        }
    }

    pub fn room_count(&self) -> usize {
        self.lock().len()
    }

    /// The rooms running here (the cluster heartbeat keeps their directory entries alive).
    pub fn room_ids(&self) -> Vec<String> {
        self.lock().keys().map(|r| r.0.clone()).collect()
    }

    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.inner.cluster.as_ref()
    }

    /// In a cluster, whether `room` runs here; else the `redirect` to its node. With
    /// `place`, a consult no live node holds is placed (atomically, see `cluster`).
    async fn route(&self, room: &str, place: bool) -> Result<(), JoinError> {
        let Some(cluster) = &self.inner.cluster else {
            return Ok(());
        };
        let placed = if place {
            cluster.place(room).await.map(Some)
        } else {
            cluster.lookup(room).await
        };
        match placed {
            Ok(None | Some(Placement::Here)) => Ok(()),
            Ok(Some(Placement::Elsewhere { node, url })) => {
                tracing::debug!(room, node, "consult runs on another node: redirect");
                self.inner.plane.metrics.cluster_redirects.inc();
                Err(JoinError::Redirect { url })
            }
            Err(e) if self.lock().contains_key(&RoomId(room.to_string())) => {
                // The consult runs here: its participants (a resume, a late joiner) go on
                // while the directory is away.
                tracing::debug!(room, "directory unreachable; the consult runs here: {e}");
                Ok(())
            }
            Err(e) => {
                // Without the directory a consult could start on two nodes at once: refuse,
                // and the client comes back by itself.
                tracing::warn!(room, "cannot place the consult: {e}");
                self.inner.plane.metrics.join_refused("directory");
                Err(JoinError::Busy {
                    retry_after: std::time::Duration::from_secs(3),
                })
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RoomId, RoomHandle>> {
        // A panic while holding this lock leaves the map itself consistent (single inserts
        // and removes), so a poisoned lock is still usable.
        self.inner.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A snapshot of every room, for `/status`.
    pub async fn snapshot(&self) -> Vec<room::snapshot::RoomSnapshot> {
        let handles: Vec<RoomHandle> = self.lock().values().cloned().collect();
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            let (reply, replied) = oneshot::channel();
            if h.commands.send(RoomCommand::Snapshot { reply }).is_err() {
                continue;
            }
            // A room busy for a second is left out rather than stalling the endpoint.
            if let Ok(Ok(s)) =
                tokio::time::timeout(std::time::Duration::from_secs(1), replied).await
            {
                out.push(s);
            }
        }
        out.sort_by(|a, b| a.room.cmp(&b.room));
        out
    }

    /// Ends a consult's room now (the consult was ended through the API): everyone in it is
    /// told and disconnected. A consult with nobody in it has no room; nothing to do.
    pub fn end_consult(&self, consult_id: &str) {
        let handle = self.lock().get(&RoomId(consult_id.to_string())).cloned();
        if let Some(h) = handle {
            let _ = h.commands.send(RoomCommand::End);
        }
    }

    /// In a cluster, the consult was placed on another node while this one was out of the
    /// directory: its participants are told to rejoin (as for a restart) and are sent there.
    pub fn hand_over(&self, room: &str) {
        let handle = self.lock().get(&RoomId(room.to_string())).cloned();
        if let Some(h) = handle {
            self.inner.plane.metrics.cluster_handovers.inc();
            let _ = h.commands.send(RoomCommand::Restart);
        }
    }

    /// Shutdown for a restart: refuse joins from now on and have every room tell its
    /// participants to rejoin shortly; their clients close their sockets, and rooms close as
    /// they empty (`room_count` reaches 0).
    pub fn restart(&self) {
        self.inner.restarting.store(true, Ordering::SeqCst);
        for h in self.lock().values() {
            let _ = h.commands.send(RoomCommand::Restart);
        }
    }

    /// Shutdown has begun (`restart` was called): joins are refused, so the node is not
    /// ready for new consults (`/readyz`).
    pub fn is_restarting(&self) -> bool {
        self.inner.restarting.load(Ordering::SeqCst)
    }

    /// A drain was requested: new consults are refused, so the node is not ready.
    pub fn is_draining(&self) -> bool {
        self.inner.drain.is_requested()
    }

    pub fn drain(&self) -> &crate::drain::Drain {
        &self.inner.drain
    }

    /// Closes every room (shutdown): rooms end when their command channel closes.
    pub fn close_all(&self) {
        self.lock().clear();
    }
}

/// The link from one signaling connection to its participant in a room.
pub struct RoomLink {
    participant: ParticipantId,
    /// This connection, as opposed to earlier or later ones of a participant that resumed.
    session: u64,
    commands: mpsc::UnboundedSender<RoomCommand>,
    kicked: oneshot::Receiver<()>,
    left: bool,
}

impl ParticipantLink for RoomLink {
    fn send(&mut self, message: ClientMessage) -> Result<(), Box<ServerMessage>> {
        self.commands
            .send(RoomCommand::Signal {
                participant: self.participant,
                message,
            })
            .map_err(|_| {
                Box::new(ServerMessage::error(
                    ErrorCode::Internal,
                    "the consult has ended",
                ))
            })
    }

    async fn closed(&mut self) {
        // Resolves when the room drops the participant (its sender is dropped, never sent).
        let _ = (&mut self.kicked).await;
    }

    fn leave(&mut self) {
        self.left = true;
        let _ = self.commands.send(RoomCommand::Leave {
            participant: self.participant,
        });
    }
}

impl Drop for RoomLink {
    fn drop(&mut self) {
        if !self.left {
            // No `leave`: the connection was lost, and the participant may resume.
            let _ = self.commands.send(RoomCommand::Disconnected {
                participant: self.participant,
                session: self.session,
            });
        }
    }
}

impl RoomService for Registry {
    type Link = RoomLink;

    async fn join(
        &self,
        request: JoinRequest,
        outbox: mpsc::Sender<ServerMessage>,
    ) -> Result<RoomLink, JoinError> {
        if self.inner.restarting.load(Ordering::SeqCst) {
            return Err(JoinError::Restarting);
        }
        if let JoinRequest::Resume { token } = request {
            // Not subject to admission control: the participant is already counted.
            return self.resume(&token, outbox).await;
        }
        let admission = self.admission(request).await?;
        // Held until the room has answered: counts against the cap while on its way in.
        let _admitted = self.inner.admission_gate.check()?;
        // After admission control, so a consult is not placed on a node that refuses it.
        self.route(&admission.room.0, true).await?;
        let participant =
            ParticipantId(self.inner.next_participant.fetch_add(1, Ordering::Relaxed));
        let session = self.next_session();
        let (kick, kicked) = oneshot::channel();
        let (reply, replied) = oneshot::channel();
        let room_id = admission.room.clone();
        let commands = {
            let mut rooms = self.lock();
            let handle = match rooms.get(&room_id) {
                Some(h) if !h.commands.is_closed() => {
                    if h.invited != admission.token_id.is_some() {
                        // An open-join name that collides with a consult id, or the reverse.
                        return Err(JoinError::Unauthorized(
                            "this consult needs an invite link".into(),
                        ));
                    }
                    h.clone()
                }
                _ => {
                    // Draining: this would start a consult here; the client retries and
                    // reaches a node that is ready (this one has left the load balancer).
                    if self.inner.drain.is_requested() {
                        return Err(JoinError::Restarting);
                    }
                    if admission.token_id.is_none() && !admission.role.may_open_room() {
                        return Err(JoinError::UnknownRoom(room_id.0));
                    }
                    let consults = admission
                        .token_id
                        .is_some()
                        .then(|| self.inner.consults.clone());
                    let handle = room::spawn(
                        room_id.clone(),
                        self.inner.plane.clone(),
                        consults,
                        self.close_hook(room_id.clone()),
                    );
                    rooms.insert(room_id.clone(), handle.clone());
                    handle
                }
            };
            // Sent under the lock, so a room closing at this moment sees it (see close_hook).
            handle
                .commands
                .send(RoomCommand::Join {
                    participant,
                    session,
                    admission,
                    outbox,
                    kick,
                    reply,
                })
                .map_err(|_| JoinError::Unavailable)?;
            handle.commands
        };
        match replied.await {
            Ok(Ok(())) => Ok(RoomLink {
                participant,
                session,
                commands,
                kicked,
                left: false,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(JoinError::Unavailable),
        }
    }

    fn on_client_error(&self, code: ErrorCode) {
        self.inner.plane.metrics.signaling_error(code.as_str());
    }

    fn ice_servers(&self, participant_id: &str) -> Vec<signaling::IceServer> {
        self.inner
            .ice
            .for_participant(participant_id, std::time::SystemTime::now())
    }
}

impl Registry {
    fn next_session(&self) -> u64 {
        self.inner.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// Back as the participant the token names, if its room still holds it.
    async fn resume(
        &self,
        token: &str,
        outbox: mpsc::Sender<ServerMessage>,
    ) -> Result<RoomLink, JoinError> {
        let claim = self
            .inner
            .plane
            .resume_keys
            .verify(token, std::time::SystemTime::now())
            .map_err(|e| JoinError::ResumeFailed(e.to_string()))?;
        // A token from another node (every node checks them with the cluster's shared key):
        // back to that node while it lives; if it died, the resume fails here and the client
        // joins afresh, which places the consult again.
        self.route(&claim.room, false).await?;
        self.inner
            .plane
            .resume_keys
            .check_ours(&claim)
            .map_err(|e| JoinError::ResumeFailed(e.to_string()))?;
        let participant = ParticipantId(claim.participant);
        let commands = self
            .lock()
            .get(&RoomId(claim.room))
            .filter(|h| !h.commands.is_closed())
            .map(|h| h.commands.clone())
            .ok_or_else(|| JoinError::ResumeFailed("the consult is no longer here".into()))?;
        let session = self.next_session();
        let (kick, kicked) = oneshot::channel();
        let (reply, replied) = oneshot::channel();
        commands
            .send(RoomCommand::Resume {
                participant,
                session,
                outbox,
                kick,
                reply,
            })
            .map_err(|_| JoinError::ResumeFailed("the consult is no longer here".into()))?;
        match replied.await {
            Ok(Ok(())) => Ok(RoomLink {
                participant,
                session,
                commands,
                kicked,
                left: false,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(JoinError::ResumeFailed(
                "the consult is no longer here".into(),
            )),
        }
    }

    /// Who may join where, from the invite (or, with open join, from the request itself).
    async fn admission(&self, request: JoinRequest) -> Result<Admission, JoinError> {
        match request {
            JoinRequest::Invite { token } => {
                let invite =
                    self.inner
                        .consults
                        .verify_invite(&token)
                        .await
                        .map_err(|e| match e {
                            InviteError::Ended => JoinError::ConsultEnded,
                            InviteError::Store(_) => {
                                tracing::error!("invite check failed: {e}");
                                JoinError::Unavailable
                            }
                            other => JoinError::Unauthorized(other.to_string()),
                        })?;
                Ok(Admission {
                    room: RoomId(invite.consult_id),
                    name: invite.name,
                    role: invite.role,
                    lobby: invite.lobby,
                    title: invite.title,
                    token_id: Some(invite.token_id),
                })
            }
            JoinRequest::Resume { .. } => Err(JoinError::ResumeFailed(
                "a resume is not an admission".into(),
            )),
            JoinRequest::Open { room, name, role } => {
                if !self.inner.open_join {
                    return Err(JoinError::Unauthorized(
                        "this server admits only by invite link; ask the clinic for yours".into(),
                    ));
                }
                Ok(Admission {
                    room: RoomId(room),
                    name,
                    role,
                    lobby: false,
                    title: String::new(),
                    token_id: None,
                })
            }
        }
    }

    /// The room asks to close when empty; it may only if no join is queued, checked under the
    /// same lock joins are sent under.
    fn close_hook(&self, room_id: RoomId) -> room::CloseHook {
        let registry = Arc::downgrade(&self.inner);
        Box::new(move |commands| {
            let Some(inner) = registry.upgrade() else {
                return true;
            };
            let mut rooms = inner.rooms.lock().unwrap_or_else(|e| e.into_inner());
            if !commands.is_empty() {
                return false;
            }
            rooms.remove(&room_id);
            if let (Some(cluster), Ok(rt)) =
                (inner.cluster.clone(), tokio::runtime::Handle::try_current())
            {
                // The next join may place this consult anywhere; if this is lost, the
                // directory entry just expires (ROOM_TTL).
                let room = room_id.0.clone();
                rt.spawn(async move {
                    if let Err(e) = cluster.release(&room).await {
                        tracing::debug!(room, "releasing the consult in the directory: {e}");
                    }
                });
            }
            true
        })
    }
}

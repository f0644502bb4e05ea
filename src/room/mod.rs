//! A room (one consult) is one task that owns all its participants' `Rtc`s. Nothing in it is
//! shared with other rooms: the only shared things are the UDP socket (sends need no lock) and
//! the atomic metrics.

mod adapt;
mod channel;
mod consult;
mod media;
mod negotiation;
pub mod participant;
pub mod participation;
mod path;
pub mod permission;
pub mod publication;
mod pump;
mod resume;
mod signal;
pub mod snapshot;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use signaling::{ClientMessage, ErrorCode, JoinError, Role, ServerMessage, VideoLayerConfig};
use str0m::bwe::Bitrate;
use str0m::media::{KeyframeRequest, MediaKind, Mid};
use str0m::rtp::RtpPacket;
use str0m::{Candidate, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, info_span, Instrument};

use crate::consult::Consults;
use crate::forward::codec::VideoCodec;
use crate::ids::{ParticipantId, RoomId};
use crate::metrics::Metrics;
use crate::udp::{Datagram, DemuxCommand, Route, DATAGRAM_QUEUE};
use participant::Participant;

/// What every room needs from the process.
pub struct MediaPlane {
    pub socket: Arc<UdpSocket>,
    /// The address in our ICE candidate.
    pub candidate_addr: SocketAddr,
    /// The address of our passive ICE-TCP candidate, when ICE-TCP is on.
    pub tcp_candidate_addr: Option<SocketAddr>,
    pub demux: mpsc::UnboundedSender<DemuxCommand>,
    pub max_participants: usize,
    pub metrics: Arc<Metrics>,
    pub video_layers: Vec<VideoLayerConfig>,
    pub initial_estimate_bps: u64,
    /// How long a participant whose signaling or media dropped keeps its place.
    pub reconnect_grace: Duration,
    pub resume_keys: crate::resume::ResumeKeys,
}

/// Who joins, as the invite (or an open-join request) says.
#[derive(Debug, Clone)]
pub struct Admission {
    pub room: RoomId,
    pub name: String,
    pub role: Role,
    /// Wait in the lobby until admitted.
    pub lobby: bool,
    pub title: String,
    /// The invite's token id; `None` for open join.
    pub token_id: Option<String>,
}

pub enum RoomCommand {
    Join {
        participant: ParticipantId,
        session: u64,
        admission: Admission,
        outbox: mpsc::Sender<ServerMessage>,
        kick: oneshot::Sender<()>,
        reply: oneshot::Sender<Result<(), JoinError>>,
    },
    /// A participant whose connection dropped comes back on a new one (`join.resume`).
    Resume {
        participant: ParticipantId,
        session: u64,
        outbox: mpsc::Sender<ServerMessage>,
        kick: oneshot::Sender<()>,
        reply: oneshot::Sender<Result<(), JoinError>>,
    },
    /// The signaling connection `session` dropped without a `leave`.
    Disconnected {
        participant: ParticipantId,
        session: u64,
    },
    Signal {
        participant: ParticipantId,
        message: ClientMessage,
    },
    Leave {
        participant: ParticipantId,
    },
    Snapshot {
        reply: oneshot::Sender<snapshot::RoomSnapshot>,
    },
    /// The consult was ended through the API.
    End,
    /// The server is restarting: everyone is told to rejoin and let go.
    Restart,
}

/// The registry's view of a running room.
#[derive(Debug, Clone)]
pub struct RoomHandle {
    pub commands: mpsc::UnboundedSender<RoomCommand>,
    /// A consult joined by invite (not an open-join room).
    pub invited: bool,
}

/// Called by the room when it has no participants left; returns false if a command arrived
/// meanwhile and the room must go on.
pub type CloseHook = Box<dyn Fn(&mut mpsc::UnboundedReceiver<RoomCommand>) -> bool + Send>;

/// Work found while polling one `Rtc` that concerns other participants.
// Not boxed: the queue's storage is reused, so a packet costs no allocation here.
#[allow(clippy::large_enum_variant)]
enum Work {
    Rtp(ParticipantId, RtpPacket),
    KeyframeRequest(ParticipantId, KeyframeRequest),
    MediaAdded(ParticipantId, Mid, MediaKind),
    /// Chat or an image chunk on a participant's data channel.
    ChannelData(ParticipantId, str0m::channel::ChannelData),
    /// A participant's channel buffer drained: held-back image acks may go out.
    ChannelDrained,
    /// A participant's media moved to another address (a rebound NAT, an ICE restart onto a
    /// new network): what was sent in between is lost, so video restarts from keyframes.
    PathMoved(ParticipantId),
    /// A participant's media came back after a gap (its link dropped for a moment): the same
    /// restart from keyframes, asked at once rather than when each browser notices.
    MediaResumed(ParticipantId),
}

pub struct Room {
    id: RoomId,
    plane: Arc<MediaPlane>,
    participants: Vec<Participant>,
    datagram_tx: mpsc::Sender<Datagram>,
    work: VecDeque<Work>,
    next_adapt: Instant,
    next_quality: Instant,
    /// This room's share of the paused-subscriptions gauge.
    paused_subscriptions: usize,
    speakers: crate::adapt::speaker::SpeakerDetector<ParticipantId>,
    active_speaker: Option<ParticipantId>,
    /// Who waits in the lobby, in order of arrival.
    waiting: Vec<consult::Waiting>,
    title: String,
    /// The consult store, for rooms joined by invite (audit, participation, revocation).
    consults: Option<Consults>,
    next_sample: Instant,
    /// Set once the consult ended: the room closes when everyone is gone.
    ended: bool,
    /// The server is restarting: those leaving now leave for that reason.
    restarting: bool,
    transfers: Vec<channel::Transfer>,
    next_relay_id: u32,
    relay_buf: Vec<u8>,
}

/// Starts a room task.
pub fn spawn(
    id: RoomId,
    plane: Arc<MediaPlane>,
    consults: Option<Consults>,
    on_empty: CloseHook,
) -> RoomHandle {
    let invited = consults.is_some();
    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    let (datagram_tx, datagram_rx) = mpsc::channel(DATAGRAM_QUEUE);
    let span = info_span!("room", room = %id.0);
    let room = Room {
        id,
        plane,
        participants: Vec::new(),
        datagram_tx,
        work: VecDeque::new(),
        next_adapt: Instant::now(),
        next_quality: Instant::now(),
        paused_subscriptions: 0,
        speakers: Default::default(),
        active_speaker: None,
        waiting: Vec::new(),
        title: String::new(),
        consults,
        next_sample: Instant::now(),
        ended: false,
        restarting: false,
        transfers: Vec::new(),
        next_relay_id: 0,
        relay_buf: Vec::with_capacity(channel::CHUNK + channel::HEADER),
    };
    room.plane.metrics.rooms.inc();
    tokio::spawn(
        room.run(commands_rx, datagram_rx, on_empty)
            .instrument(span),
    );
    RoomHandle {
        commands: commands_tx,
        invited,
    }
}

impl Room {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<RoomCommand>,
        mut datagrams: mpsc::Receiver<Datagram>,
        on_empty: CloseHook,
    ) {
        info!("room opened");
        let mut had_participants = false;
        loop {
            // Closing needs an empty command queue (checked under the registry lock, so no
            // join can slip in); with commands still queued, handle them and ask again.
            let empty = self.participants.is_empty() && self.waiting.is_empty();
            if empty && had_participants && on_empty(&mut commands) {
                break;
            }
            let deadline = self.next_timeout();
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(command) => {
                        self.handle_command(command);
                        had_participants |=
                            !self.participants.is_empty() || !self.waiting.is_empty();
                    }
                    None => break,
                },
                Some(datagram) = datagrams.recv() => {
                    self.handle_datagram(datagram);
                    // Drain what is queued before the timers: less select overhead under load.
                    for _ in 0..64 {
                        match datagrams.try_recv() {
                            Ok(d) => self.handle_datagram(d),
                            Err(_) => break,
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => self.handle_timeouts(),
            }
            self.reap();
        }
        let now = SystemTime::now();
        for p in std::mem::take(&mut self.participants) {
            self.record_participation(&p, now);
            self.forget(&p);
        }
        self.plane
            .metrics
            .paused_subscriptions
            .sub(self.paused_subscriptions as i64);
        self.plane.metrics.rooms.dec();
        info!("room closed");
    }

    fn next_timeout(&self) -> Instant {
        let idle = Instant::now() + Duration::from_secs(1);
        let throttles = self
            .participants
            .iter()
            .flat_map(|p| p.publications.iter())
            .filter_map(|p| p.keyframes.poll_timeout());
        self.participants
            .iter()
            .map(|p| p.next_timeout)
            .chain(throttles)
            .chain([self.next_adapt, self.next_quality, self.next_sample])
            .min()
            .unwrap_or(idle)
            .min(idle)
    }

    fn index(&self, id: ParticipantId) -> Option<usize> {
        self.participants.iter().position(|p| p.id == id)
    }

    fn handle_command(&mut self, command: RoomCommand) {
        match command {
            RoomCommand::Join {
                participant,
                session,
                admission,
                outbox,
                kick,
                reply,
            } => {
                let result = self.arrive(participant, session, admission, outbox, kick);
                let _ = reply.send(result);
            }
            RoomCommand::Resume {
                participant,
                session,
                outbox,
                kick,
                reply,
            } => {
                let result = self.resume(participant, session, outbox, kick);
                let _ = reply.send(result);
                self.process_work();
                self.negotiate_all();
            }
            RoomCommand::Disconnected {
                participant,
                session,
            } => match self.index(participant) {
                Some(i) if self.participants[i].session == session => {
                    let p = &mut self.participants[i];
                    info!(participant = %p.id, "signaling lost: keeping the place");
                    p.signal_lost_at.get_or_insert_with(Instant::now);
                    self.announce_reconnecting();
                }
                Some(_) => {} // an older connection of a participant that resumed
                None => self.leave_lobby(participant),
            },
            RoomCommand::Signal {
                participant,
                message,
            } => {
                let Some(i) = self.index(participant) else {
                    if let Some(w) = self.waiting.iter().find(|w| w.id == participant) {
                        w.send(ServerMessage::error(
                            ErrorCode::WrongState,
                            "you are waiting in the lobby; you can send this once admitted",
                        ));
                    }
                    return;
                };
                if let Err((code, text)) = self.handle_signal(i, message) {
                    self.plane.metrics.signaling_error(code.as_str());
                    self.participants[i].send(ServerMessage::error(code, text));
                }
                self.process_work();
                self.negotiate_all();
            }
            RoomCommand::Leave { participant } => {
                if let Some(i) = self.index(participant) {
                    self.remove(i, "left");
                } else {
                    self.leave_lobby(participant);
                }
            }
            RoomCommand::End => self.end_consult(None),
            RoomCommand::Restart => self.restart(),
            RoomCommand::Snapshot { reply } => {
                let _ = reply.send(self.snapshot(Instant::now()));
            }
        }
    }

    /// Admits a participant into the call: their `Rtc`, `joined`, and the others told.
    fn join(
        &mut self,
        id: ParticipantId,
        session: u64,
        admission: Admission,
        outbox: mpsc::Sender<ServerMessage>,
        kick: oneshot::Sender<()>,
    ) -> Result<(), JoinError> {
        if self.participants.len() >= self.plane.max_participants {
            return Err(JoinError::RoomFull(self.plane.max_participants));
        }
        let now = Instant::now();
        let (rtc, ufrag) = self.new_rtc(id, VideoCodec::Vp8, now);
        let participant = Participant {
            id,
            name: admission.name,
            role: admission.role,
            token_id: admission.token_id,
            joined_at: SystemTime::now(),
            rx_bytes: 0,
            log: Default::default(),
            screen_mid: None,
            sharing: false,
            channel: None,
            tcp: Vec::new(),
            audio_muted: false,
            video_muted: false,
            outbox,
            _kick: kick,
            session,
            signal_lost_at: None,
            reconnecting: false,
            heard_at: None,
            silent: false,
            resume_refresh_at: now + crate::resume::REFRESH,
            ice_restart_wanted: false,
            ice_restart_offered: false,
            offer_sdp: None,
            rtc,
            ufrag,
            old_ufrags: Vec::new(),
            offered: false,
            pending_offer: None,
            publications: Vec::new(),
            subscriptions: Vec::new(),
            next_timeout: now,
            ice_lost_at: None,
            send_path: Default::default(),
            allocator: Default::default(),
            prober: Default::default(),
            stall: Default::default(),
            estimate_bps: None,
            raw_estimate_bps: None,
            link_measured: false,
            relearned_at: None,
            congestion_cap: None,
            bwe_setting: Default::default(),
            probe_quiet_until: None,
            data_saver: false,
            max_spatial: 2,
            rtt: None,
            rtt_floor: Default::default(),
            last_media_at: None,
            video_restarted_at: None,
            twcc_loss: None,
            delivered: Default::default(),
            quality: None,
            limit: Default::default(),
            limited_since: None,
        };
        participant.send(ServerMessage::Joined {
            participant_id: id.to_string(),
            room: self.id.0.clone(),
            title: self.title.clone(),
            you: participant.info(),
            participants: self.participants.iter().map(Participant::info).collect(),
            video_layers: self.plane.video_layers.clone(),
            resume_token: Some(
                self.plane
                    .resume_keys
                    .issue(&self.id.0, id.0, SystemTime::now()),
            ),
            resumed: false,
        });
        let info = participant.info();
        for other in &self.participants {
            other.send(ServerMessage::ParticipantJoined {
                participant: info.clone(),
            });
        }
        info!(participant = %id, role = ?participant.role, "joined");
        let (name, role) = (participant.name.clone(), participant.role);
        self.participants.push(participant);
        self.plane.metrics.participants.inc();
        self.audit(crate::consult::AuditAction::Joined, &name, Some(role), None);
        if permission::may(role, permission::Action::Admit) {
            self.send_lobby_to(self.participants.len() - 1);
        }
        Ok(())
    }

    /// A participant's `Rtc`, registered for its ICE ufrag. str0m answers with its own codec
    /// order, so the client's preferred video codec goes first.
    pub(super) fn new_rtc(
        &self,
        id: ParticipantId,
        first: VideoCodec,
        now: Instant,
    ) -> (Rtc, String) {
        let builder = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            // In-band FEC is in str0m's Opus defaults; RED where the browser offers it.
            .enable_opus(true, true);
        let builder = match first {
            VideoCodec::H264 => builder.enable_h264(true).enable_vp8(true),
            _ => builder.enable_vp8(true).enable_h264(true),
        };
        let mut rtc = builder
            .enable_bwe(Some(Bitrate::bps(self.plane.initial_estimate_bps)))
            .set_stats_interval(Some(Duration::from_secs(1)))
            .set_sctp_max_buffered_amount(channel::SCTP_BUFFER)
            .build(now);
        let candidate = Candidate::host(self.plane.candidate_addr, "udp")
            .expect("invariant: the candidate address is a bound UDP socket address");
        rtc.add_local_candidate(candidate);
        if let Some(addr) = self.plane.tcp_candidate_addr {
            // Passive: the client connects to us; its own candidates are active (port 9).
            let tcp = Candidate::builder()
                .tcp()
                .host(addr)
                .tcptype(str0m::net::TcpType::Passive)
                .build()
                .expect("invariant: a bound TCP address makes a host candidate");
            rtc.add_local_candidate(tcp);
        }
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        let route = Route {
            participant: id,
            inbox: self.datagram_tx.clone(),
        };
        let _ = self.plane.demux.send(DemuxCommand::Register {
            ufrag: ufrag.clone(),
            route,
        });
        (rtc, ufrag)
    }

    /// Drops participants whose media died or who stopped reading signaling.
    fn reap(&mut self) {
        self.reap_lobby();
        let now = Instant::now();
        let mut i = 0;
        while i < self.participants.len() {
            let p = &mut self.participants[i];
            if p.outbox.is_closed() {
                // The writer is gone (normally `Disconnected` said so first).
                p.signal_lost_at.get_or_insert(now);
            }
            let expects_traffic = !p.publications.is_empty() || !p.subscriptions.is_empty();
            p.silent = resume::is_silent(p.heard_at, expects_traffic, now);
            let grace_over = p
                .lost_since()
                .is_some_and(|t| now.saturating_duration_since(t) > self.plane.reconnect_grace);
            let reason = if !p.rtc.is_alive() {
                Some("media connection closed")
            } else if grace_over && p.signal_lost_at.is_some() {
                Some("connection lost")
            } else if grace_over {
                Some("media connection lost")
            } else {
                None
            };
            match reason {
                Some(reason) => self.remove(i, reason),
                None => i += 1,
            }
        }
        self.announce_reconnecting();
        self.refresh_resume_tokens(now);
    }

    fn remove(&mut self, i: usize, reason: &str) {
        // Told to rejoin, clients close their media and socket in some order: either way they
        // leave because of the restart.
        let reason = if self.restarting {
            "server restarting"
        } else {
            reason
        };
        let mut p = self.participants.remove(i);
        info!(participant = %p.id, reason, "removed");
        self.record_participation(&p, SystemTime::now());
        if reason != "removed" && reason != "consult ended" {
            self.audit_detail(
                crate::consult::AuditAction::Left,
                &p.name,
                Some(p.role),
                None,
                (reason != "left").then(|| reason.to_string()),
            );
        }
        if !matches!(
            reason,
            "left" | "removed" | "consult ended" | "server restarting"
        ) {
            p.send(ServerMessage::error(
                ErrorCode::Internal,
                format!("you were disconnected: {reason}"),
            ));
        }
        p.rtc.disconnect();
        self.forget(&p);
        self.speakers.remove(&p.id);
        self.channel_participant_left(p.id);
        self.unpublish_all(p.id);
        let id = p.id.to_string();
        for other in &self.participants {
            other.send(ServerMessage::ParticipantLeft {
                participant_id: id.clone(),
            });
        }
        self.negotiate_all();
        // Dropping `p` drops its kick sender: the connection closes.
    }

    fn forget(&self, p: &Participant) {
        for ufrag in std::iter::once(&p.ufrag).chain(&p.old_ufrags) {
            let _ = self.plane.demux.send(DemuxCommand::Unregister {
                ufrag: ufrag.clone(),
            });
        }
        self.plane.metrics.participants.dec();
        self.plane.metrics.tracks.sub(p.publications.len() as i64);
    }
}

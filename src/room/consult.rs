//! The consult around the call: the lobby, what the operator may do to others (admit, deny,
//! mute, remove, end), screen sharing, and what goes to the audit trail and the summary.
//! Permission checks happen here, on the server, before anything changes.

use std::time::{Duration, Instant, SystemTime};

use signaling::{
    CloseReason, ErrorCode, JoinError, ParticipantInfo, Role, ServerMessage, TrackSource,
};
use str0m::media::MediaKind;
use tokio::sync::{mpsc, oneshot};
use tracing::info;

use super::participant::{Participant, Subscription};
use super::participation::VideoState;
use super::permission::{self, Action};
use super::{Admission, Room};
use crate::adapt::allocator::Target;
use crate::consult::{AuditAction, AuditEvent, ParticipationRecord};
use crate::ids::ParticipantId;

type SignalError = (ErrorCode, String);

/// How often what each participant receives is sampled for the summary.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Most people waiting in one lobby: a leaked link cannot fill server memory.
const MAX_WAITING: usize = 16;

/// Someone in the lobby: connected to signaling, no `Rtc` yet.
pub struct Waiting {
    pub id: ParticipantId,
    pub session: u64,
    pub admission: Admission,
    pub outbox: mpsc::Sender<ServerMessage>,
    pub kick: oneshot::Sender<()>,
}

impl Waiting {
    pub fn send(&self, message: ServerMessage) -> bool {
        self.outbox.try_send(message).is_ok()
    }

    fn info(&self) -> ParticipantInfo {
        ParticipantInfo {
            participant_id: self.id.to_string(),
            name: self.admission.name.clone(),
            role: self.admission.role,
            audio_muted: false,
            video_muted: false,
        }
    }
}

impl Room {
    /// A verified participant arrives: into the lobby, or straight into the call.
    pub(super) fn arrive(
        &mut self,
        id: ParticipantId,
        session: u64,
        admission: Admission,
        outbox: mpsc::Sender<ServerMessage>,
        kick: oneshot::Sender<()>,
    ) -> Result<(), JoinError> {
        if self.ended {
            return Err(JoinError::ConsultEnded);
        }
        if self.title.is_empty() {
            self.title = admission.title.clone();
        }
        if !admission.lobby {
            return self.join(id, session, admission, outbox, kick);
        }
        if self.waiting.len() >= MAX_WAITING {
            return Err(JoinError::RoomFull(MAX_WAITING));
        }
        let w = Waiting {
            id,
            session,
            admission,
            outbox,
            kick,
        };
        w.send(ServerMessage::Lobby {
            participant_id: id.to_string(),
            room: self.id.0.clone(),
            title: self.title.clone(),
            name: w.admission.name.clone(),
            role: w.admission.role,
        });
        info!(participant = %id, "waiting in the lobby");
        self.audit(
            AuditAction::Waiting,
            &w.admission.name,
            Some(w.admission.role),
            None,
        );
        self.waiting.push(w);
        self.lobby_changed();
        Ok(())
    }

    pub(super) fn admit(&mut self, i: usize, target: &str) -> Result<(), SignalError> {
        self.check(
            i,
            Action::Admit,
            "only the clinic operator or the specialist may admit",
        )?;
        let w = self.take_waiting(target)?;
        let actor = (self.participants[i].name.clone(), self.participants[i].role);
        self.audit(
            AuditAction::Admitted,
            &actor.0,
            Some(actor.1),
            Some(w.admission.name.clone()),
        );
        info!(participant = %w.id, by = %self.participants[i].id, "admitted");
        let admission = Admission {
            lobby: false,
            ..w.admission
        };
        if let Err(e) = self.join(w.id, w.session, admission, w.outbox.clone(), w.kick) {
            let _ = w
                .outbox
                .try_send(ServerMessage::error(e.code(), e.to_string()));
        }
        self.lobby_changed();
        Ok(())
    }

    pub(super) fn deny(&mut self, i: usize, target: &str) -> Result<(), SignalError> {
        self.check(
            i,
            Action::Admit,
            "only the clinic operator or the specialist may deny",
        )?;
        let w = self.take_waiting(target)?;
        let actor = (self.participants[i].name.clone(), self.participants[i].role);
        self.audit(
            AuditAction::Denied,
            &actor.0,
            Some(actor.1),
            Some(w.admission.name.clone()),
        );
        w.send(ServerMessage::Closed {
            reason: CloseReason::Denied,
        });
        self.lobby_changed();
        // Dropping `w` drops its kick sender: the connection closes after `closed`.
        Ok(())
    }

    /// Someone in the lobby gave up waiting (closed the page).
    pub(super) fn leave_lobby(&mut self, id: ParticipantId) {
        if let Some(k) = self.waiting.iter().position(|w| w.id == id) {
            let w = self.waiting.remove(k);
            self.audit_detail(
                AuditAction::Left,
                &w.admission.name,
                Some(w.admission.role),
                None,
                Some("left the lobby".into()),
            );
            self.lobby_changed();
        }
    }

    /// Drops lobby entries whose connection closed.
    pub(super) fn reap_lobby(&mut self) {
        let gone: Vec<ParticipantId> = self
            .waiting
            .iter()
            .filter(|w| w.outbox.is_closed())
            .map(|w| w.id)
            .collect();
        for id in gone {
            self.leave_lobby(id);
        }
    }

    pub(super) fn remove_by(&mut self, i: usize, target: &str) -> Result<(), SignalError> {
        self.check(
            i,
            Action::Remove,
            "only the clinic operator may remove a participant",
        )?;
        let actor = (self.participants[i].name.clone(), self.participants[i].role);
        if let Some(j) = self.find(target) {
            if j == i {
                return Err((
                    ErrorCode::InvalidMessage,
                    "you cannot remove yourself; leave instead".into(),
                ));
            }
            let p = &self.participants[j];
            p.send(ServerMessage::Closed {
                reason: CloseReason::Removed,
            });
            let subject = p.name.clone();
            if let (Some(c), Some(t)) = (&self.consults, &p.token_id) {
                c.revoke(t);
            }
            self.audit(AuditAction::Removed, &actor.0, Some(actor.1), Some(subject));
            self.remove(j, "removed");
            return Ok(());
        }
        let w = self.take_waiting(target)?;
        w.send(ServerMessage::Closed {
            reason: CloseReason::Removed,
        });
        if let (Some(c), Some(t)) = (&self.consults, &w.admission.token_id) {
            c.revoke(t);
        }
        self.audit(
            AuditAction::Removed,
            &actor.0,
            Some(actor.1),
            Some(w.admission.name.clone()),
        );
        self.lobby_changed();
        Ok(())
    }

    pub(super) fn mute_by(&mut self, i: usize, target: &str) -> Result<(), SignalError> {
        self.check(
            i,
            Action::MuteOthers,
            "only the clinic operator may mute others",
        )?;
        let j = self.find(target).ok_or_else(|| unknown(target))?;
        let by = self.participants[i].id.to_string();
        let actor = (self.participants[i].name.clone(), self.participants[i].role);
        // The server stops forwarding the microphone at once; the client also disables it.
        self.participants[j].audio_muted = true;
        let id = self.participants[j].id.to_string();
        let subject = self.participants[j].name.clone();
        for p in &self.participants {
            p.send(ServerMessage::MuteChanged {
                participant_id: id.clone(),
                kind: signaling::TrackKind::Audio,
                muted: true,
                by: Some(by.clone()),
            });
        }
        self.audit(AuditAction::Muted, &actor.0, Some(actor.1), Some(subject));
        Ok(())
    }

    /// Ends the consult for everyone. `by` is the operator in the call; `None` when it was
    /// ended through the API (which wrote the audit row itself).
    pub(super) fn end_consult(&mut self, by: Option<ParticipantId>) {
        if self.ended {
            return;
        }
        self.ended = true;
        if let (Some(c), Some(i)) = (&self.consults, by.and_then(|b| self.index(b))) {
            let p = &self.participants[i];
            c.end(&self.id.0, &p.name, p.role);
        }
        info!("consult ended");
        for w in std::mem::take(&mut self.waiting) {
            w.send(ServerMessage::Closed {
                reason: CloseReason::ConsultEnded,
            });
        }
        while !self.participants.is_empty() {
            self.participants[0].send(ServerMessage::Closed {
                reason: CloseReason::ConsultEnded,
            });
            self.remove(0, "consult ended");
        }
    }

    /// The server restarts: everyone (lobby included) is told to come back with the same
    /// invite. They stay until their client closes its socket, so the message surely arrived
    /// (a connection dropped at once could lose it); the server stops waiting after a grace.
    pub(super) fn restart(&mut self) {
        info!("server restarting: asking everyone to rejoin");
        self.restarting = true;
        let bye = ServerMessage::Closed {
            reason: CloseReason::ServerRestart,
        };
        for w in &self.waiting {
            w.send(bye.clone());
        }
        for p in &self.participants {
            p.send(bye.clone());
        }
    }

    /// Screen share on the transceiver the client named in its offer.
    pub(super) fn share(&mut self, i: usize, active: bool) -> Result<(), SignalError> {
        self.check(i, Action::ShareScreen, "your role may not share a screen")?;
        let p = &mut self.participants[i];
        let Some(mid) = p.screen_mid else {
            return Err((
                ErrorCode::WrongState,
                "no screen transceiver: name it as screen_mid in your offer".into(),
            ));
        };
        let Some(publication) = p.publications.iter().find(|x| x.track.mid == mid) else {
            return Err((
                ErrorCode::WrongState,
                "the screen transceiver is not in your offer".into(),
            ));
        };
        if p.sharing == active {
            return Ok(());
        }
        p.sharing = active;
        let track = publication.track.clone();
        info!(track = %track, active, "screen share");
        if active {
            for (j, s) in self.participants.iter_mut().enumerate() {
                if j != i && !s.subscriptions.iter().any(|x| x.track == track) {
                    s.subscriptions.push(Subscription::new(
                        track.clone(),
                        MediaKind::Video,
                        TrackSource::Screen,
                    ));
                }
            }
        } else {
            self.unpublish(&track);
        }
        Ok(())
    }

    pub(super) fn audit(
        &self,
        action: AuditAction,
        actor: &str,
        actor_role: Option<Role>,
        subject: Option<String>,
    ) {
        self.audit_detail(action, actor, actor_role, subject, None);
    }

    pub(super) fn audit_detail(
        &self,
        action: AuditAction,
        actor: &str,
        actor_role: Option<Role>,
        subject: Option<String>,
        detail: Option<String>,
    ) {
        if let Some(c) = &self.consults {
            c.audit(AuditEvent {
                consult_id: self.id.0.clone(),
                at: SystemTime::now(),
                action,
                actor: actor.to_string(),
                actor_role,
                subject,
                detail,
            });
        }
    }

    pub(super) fn record_participation(&self, p: &Participant, left_at: SystemTime) {
        if let Some(c) = &self.consults {
            c.record_participation(ParticipationRecord {
                consult_id: self.id.0.clone(),
                name: p.name.clone(),
                role: p.role,
                joined_at: p.joined_at,
                left_at,
                median_receive_bps: p.log.median_receive_bps(),
                low_layer_share: p.log.low_layer_share(),
                paused_share: p.log.paused_share(),
                loss_percent: p.log.loss_percent(),
            });
        }
    }

    pub(super) fn sample_participation(&mut self, now: Instant) {
        for p in &mut self.participants {
            let video = p
                .subscriptions
                .iter()
                .filter(|s| s.kind == MediaKind::Video && s.open_mid().is_some())
                .filter_map(|s| match s.reported {
                    Some(Target::Layer(l)) if l.spatial == 0 => Some(VideoState::Lowest),
                    Some(Target::Layer(_)) => Some(VideoState::Higher),
                    Some(Target::PausedForBandwidth) => Some(VideoState::Paused),
                    Some(Target::Unavailable) | None => None,
                });
            let loss = p.link_stats().egress_loss;
            p.log.sample(now, p.rx_bytes, video, loss);
        }
    }

    /// Tells everyone who may admit who waits now.
    pub(super) fn lobby_changed(&self) {
        let waiting: Vec<ParticipantInfo> = self.waiting.iter().map(Waiting::info).collect();
        for p in &self.participants {
            if permission::may(p.role, Action::Admit) {
                p.send(ServerMessage::LobbyChanged {
                    waiting: waiting.clone(),
                });
            }
        }
    }

    /// The lobby as it is, for someone who may admit and just joined.
    pub(super) fn send_lobby_to(&self, i: usize) {
        let waiting = self.waiting.iter().map(Waiting::info).collect();
        self.participants[i].send(ServerMessage::LobbyChanged { waiting });
    }

    fn check(&self, i: usize, action: Action, why: &str) -> Result<(), SignalError> {
        if permission::may(self.participants[i].role, action) {
            Ok(())
        } else {
            Err((ErrorCode::Forbidden, why.to_string()))
        }
    }

    fn find(&self, id: &str) -> Option<usize> {
        self.participants
            .iter()
            .position(|p| p.id.to_string() == id)
    }

    fn take_waiting(&mut self, id: &str) -> Result<Waiting, SignalError> {
        let k = self
            .waiting
            .iter()
            .position(|w| w.id.to_string() == id)
            .ok_or_else(|| unknown(id))?;
        Ok(self.waiting.remove(k))
    }
}

fn unknown(id: &str) -> SignalError {
    (
        ErrorCode::UnknownParticipant,
        format!("no participant {id:?} in this consult"),
    )
}

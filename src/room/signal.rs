//! What a participant's client messages do in its room (offers, answers, candidates, mute,
//! preferences, moderation, ...): one dispatch that checks the sender may, then calls the
//! room's logic. Errors go back to that client as a typed `ErrorCode` and a reason.

use signaling::{ClientMessage, ErrorCode, ServerMessage};
use str0m::media::Mid;
use str0m::Candidate;

use super::{permission, Room};

impl Room {
    pub(super) fn handle_signal(
        &mut self,
        i: usize,
        message: ClientMessage,
    ) -> Result<(), (ErrorCode, String)> {
        match message {
            ClientMessage::Offer { sdp, screen_mid } => {
                if let Some(mid) = screen_mid {
                    if !permission::may(self.participants[i].role, permission::Action::ShareScreen)
                    {
                        return Err((
                            ErrorCode::Forbidden,
                            "your role may not share a screen".into(),
                        ));
                    }
                    self.participants[i].screen_mid = Some(Mid::from(mid.as_str()));
                }
                self.accept_offer(i, &sdp)?;
                self.drive(i);
                self.subscribe_to_existing(i);
                Ok(())
            }
            ClientMessage::Answer { sdp } => {
                self.accept_answer(i, &sdp)?;
                self.drive(i);
                Ok(())
            }
            ClientMessage::Candidate { candidate, .. } => {
                let candidate = candidate.trim();
                let candidate = candidate.strip_prefix("a=").unwrap_or(candidate);
                if candidate.is_empty() {
                    return Ok(()); // end of candidates
                }
                let parsed = Candidate::from_sdp_string(candidate).map_err(|e| {
                    (
                        ErrorCode::BadCandidate,
                        format!("cannot parse candidate: {e}"),
                    )
                })?;
                self.participants[i].rtc.add_remote_candidate(parsed);
                self.drive(i);
                Ok(())
            }
            ClientMessage::Mute { kind, muted } => {
                let p = &mut self.participants[i];
                match kind {
                    signaling::TrackKind::Audio => p.audio_muted = muted,
                    signaling::TrackKind::Video => p.video_muted = muted,
                }
                let id = p.id.to_string();
                for other in &self.participants {
                    other.send(ServerMessage::MuteChanged {
                        participant_id: id.clone(),
                        kind,
                        muted,
                        by: None,
                    });
                }
                Ok(())
            }
            ClientMessage::Share { active } => self.share(i, active),
            ClientMessage::Admit { participant_id } => self.admit(i, &participant_id),
            ClientMessage::Deny { participant_id } => self.deny(i, &participant_id),
            ClientMessage::Remove { participant_id } => self.remove_by(i, &participant_id),
            ClientMessage::MuteParticipant { participant_id } => self.mute_by(i, &participant_id),
            ClientMessage::EndConsult => {
                if !permission::may(self.participants[i].role, permission::Action::EndConsult) {
                    return Err((
                        ErrorCode::Forbidden,
                        "only the clinic operator may end the consult".into(),
                    ));
                }
                let by = self.participants[i].id;
                self.end_consult(Some(by));
                Ok(())
            }
            ClientMessage::SetPreference {
                data_saver,
                max_layer,
            } => {
                let p = &mut self.participants[i];
                p.data_saver = data_saver;
                p.max_spatial = max_layer
                    .as_deref()
                    .and_then(crate::adapt::layer::spatial_of_rid)
                    .unwrap_or(2);
                Ok(())
            }
            ClientMessage::IceRestart => {
                let p = &mut self.participants[i];
                if !p.offered {
                    return Err((
                        ErrorCode::WrongState,
                        "send your offer first; ICE restarts come after".into(),
                    ));
                }
                // Done with the next offer (negotiate_all runs after every signal), or after
                // the answer to an offer still outstanding.
                p.ice_restart_wanted = true;
                Ok(())
            }
            ClientMessage::Join { .. } | ClientMessage::Leave => {
                // The connection handles these; they never reach a room.
                Err((ErrorCode::WrongState, "not expected here".into()))
            }
        }
    }
}

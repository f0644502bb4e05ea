//! What a client may send. Kept apart from parsing so the message shapes, which are the wire
//! contract mirrored in `PROTOCOL.md`, read without the validation rules around them.

use serde::{Deserialize, Serialize};

use super::{Role, TrackKind};

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

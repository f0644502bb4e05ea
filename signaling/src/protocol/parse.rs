//! Turning one client text frame into a [`ClientMessage`]. The checks serde cannot express
//! (size, version, known type, lengths, room names) live here so every frame passes the same
//! gate before any state sees it; `validate_room` is public because the fuzz checks reuse it.

use super::{
    ClientMessage, ProtocolError, MAX_INVITE_BYTES, MAX_MESSAGE_BYTES, MAX_NAME_CHARS,
    MAX_ROOM_CHARS, PROTOCOL_VERSION,
};

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

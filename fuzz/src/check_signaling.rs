//! What a client sends: a WebSocket text frame (`signaling_message`), the invite token it joins
//! with (`invite_token`, with the fixed secret, clock and signed tokens the seeds are made of),
//! and a data-channel message (`data_channel`). Together because they are the client-facing
//! parsers of signaling and chat, each checked for the validation rules the rest of the server
//! relies on.

use std::sync::OnceLock;

use consult_sfu::consult::token::{self, Claims, TokenError};
use signaling::protocol::{
    validate_room, MAX_INVITE_BYTES, MAX_MESSAGE_BYTES, MAX_NAME_CHARS, PROTOCOL_VERSION,
};
use signaling::{parse_client_message, ClientMessage, ProtocolError, Role};

use crate::room::channel;

// ---------------------------------------------------------------------------------------------
// Signaling: one WebSocket text frame from a client.

pub fn signaling_message(data: &[u8]) {
    // WebSocket text frames are UTF-8 (RFC 6455); the socket layer rejects others before us.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let message = match parse_client_message(text) {
        Ok(m) => m,
        Err(e) => {
            // Every rejection becomes an error message for the client without panicking.
            let _ = e.to_message();
            if text.len() > MAX_MESSAGE_BYTES {
                assert_eq!(e, ProtocolError::TooLarge(text.len()));
            }
            return;
        }
    };
    assert!(text.len() <= MAX_MESSAGE_BYTES);
    // What validation promises the rest of the server.
    match &message {
        ClientMessage::Join {
            invite: Some(invite),
            room,
            name,
            role,
            resume,
        } => {
            assert!(room.is_none() && name.is_none() && role.is_none());
            assert!(resume
                .as_ref()
                .is_none_or(|r| !r.is_empty() && r.len() <= MAX_INVITE_BYTES));
            assert!(!invite.is_empty() && invite.len() <= MAX_INVITE_BYTES);
        }
        ClientMessage::Join {
            invite: None,
            room,
            name,
            role,
            ..
        } => {
            let (room, name) = (room.as_deref().unwrap(), name.as_deref().unwrap());
            assert!(validate_room(room).is_ok() && role.is_some());
            let name = name.trim();
            assert!(!name.is_empty() && name.chars().count() <= MAX_NAME_CHARS);
            assert!(!name.chars().any(char::is_control));
        }
        ClientMessage::Offer { sdp, .. } | ClientMessage::Answer { sdp } => {
            assert!(!sdp.trim().is_empty())
        }
        ClientMessage::SetPreference {
            max_layer: Some(layer),
            ..
        } => assert!(["q", "h", "f"].contains(&layer.as_str())),
        ClientMessage::Admit { participant_id }
        | ClientMessage::Deny { participant_id }
        | ClientMessage::Remove { participant_id }
        | ClientMessage::MuteParticipant { participant_id } => {
            assert!((1..=32).contains(&participant_id.len()))
        }
        _ => {}
    }
    // Round trip: the message as the server understood it, written back in wire form, parses
    // to the same message (nothing was half-read or defaulted differently).
    let mut value = serde_json::to_value(&message).expect("client messages serialize");
    let object = value.as_object_mut().expect("an object");
    assert_eq!(object["type"], message.type_name());
    object.insert("v".into(), PROTOCOL_VERSION.into());
    let wire = value.to_string();
    if wire.len() <= MAX_MESSAGE_BYTES {
        assert_eq!(parse_client_message(&wire), Ok(message), "{wire}");
    }
}

// ---------------------------------------------------------------------------------------------
// Invite tokens.

/// The secret and clock the token target verifies with.
pub const TOKEN_SECRET: &[u8] = b"fuzz-secret-fuzz-secret-fuzz-sec";
pub const TOKEN_NOW: i64 = 1_780_000_000;

/// Claims of the tokens the seeds hold: valid, lobby with a Vietnamese name, expired.
pub fn token_claims() -> Vec<Claims> {
    let base = Claims {
        cid: "c-7f3a9b2e1d".into(),
        name: "Bác sĩ Lan".into(),
        role: Role::Specialist,
        lobby: false,
        iat: TOKEN_NOW - 60,
        exp: TOKEN_NOW + 3600,
        jti: "00112233445566778899aabbccddeeff".into(),
    };
    let patient = Claims {
        name: "Chị Hoa".into(),
        role: Role::Patient,
        lobby: true,
        ..base.clone()
    };
    let expired = Claims {
        role: Role::Observer,
        exp: TOKEN_NOW,
        ..base.clone()
    };
    vec![base, patient, expired]
}

/// Every token that may verify (or fail only as expired): those signed from `token_claims`.
pub fn signed_tokens() -> &'static [String] {
    static TOKENS: OnceLock<Vec<String>> = OnceLock::new();
    TOKENS.get_or_init(|| {
        token_claims()
            .iter()
            .map(|c| token::sign(c, TOKEN_SECRET))
            .collect()
    })
}

pub fn invite_token(data: &[u8]) {
    // The input as a token: it arrives in a JSON string, so it is UTF-8.
    if let Ok(text) = std::str::from_utf8(data) {
        match token::verify(text, TOKEN_SECRET, TOKEN_NOW) {
            Ok(claims) => {
                // Without the secret no input verifies, however it was mutated: an accepted
                // token is byte for byte one the server signed.
                assert!(
                    signed_tokens().iter().any(|t| t == text),
                    "accepted a token it never signed: {text:?}"
                );
                assert!(claims.exp > TOKEN_NOW);
                assert_eq!(token::sign(&claims, TOKEN_SECRET), text);
            }
            Err(TokenError::Expired) => {
                // Expiry is checked only after the signature held.
                assert!(signed_tokens().iter().any(|t| t == text), "{text:?}");
            }
            Err(_) => {}
        }
    }
    // The input as claims: whatever the operator API may put in a token signs and verifies
    // back to the same claims.
    if let Ok(claims) = serde_json::from_slice::<Claims>(data) {
        let signed = token::sign(&claims, TOKEN_SECRET);
        let want = if signed.len() > token::MAX_TOKEN_BYTES {
            Err(TokenError::Malformed)
        } else if claims.exp <= TOKEN_NOW {
            Err(TokenError::Expired)
        } else {
            Ok(claims)
        };
        assert_eq!(token::verify(&signed, TOKEN_SECRET, TOKEN_NOW), want);
        assert_eq!(
            token::verify(&signed, b"another secret of 32 bytes......", TOKEN_NOW).ok(),
            None
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Data channel: chat and image-share text messages, image chunk headers.

pub fn data_channel(data: &[u8]) {
    match channel::parse_text(data) {
        Ok(channel::ClientText::Chat { text }) => {
            assert!((1..=channel::MAX_CHAT_CHARS).contains(&text.trim().chars().count()));
        }
        Ok(channel::ClientText::ImageStart {
            file, mime, size, ..
        }) => {
            assert!((1..=channel::MAX_IMAGE_BYTES).contains(&size));
            assert!(mime.starts_with("image/") || mime == "application/dicom");
            assert!(!file.is_empty() && !file.chars().any(char::is_control));
            // The chunks the room will expect cover the image exactly.
            let chunks = channel::chunk_count(size);
            assert!(chunks >= 1);
            let last = channel::chunk_len(size, chunks - 1);
            assert!((1..=channel::CHUNK).contains(&last));
            assert_eq!(
                channel::chunk_len(size, 0),
                channel::CHUNK.min(size as usize)
            );
            assert_eq!(
                (chunks as u64 - 1) * channel::CHUNK as u64 + last as u64,
                size
            );
        }
        Ok(channel::ClientText::ImageAbort { .. }) => {}
        Err((code, message)) => {
            assert!(code == "invalid" || code == "too_large", "{code}");
            assert!(!message.is_empty());
        }
    }
    match channel::parse_header(data) {
        Some((id, index)) => {
            assert!(data.len() >= channel::HEADER);
            assert_eq!(id.to_be_bytes(), data[0..4]);
            assert_eq!(index.to_be_bytes(), data[4..8]);
        }
        None => assert!(data.len() < channel::HEADER),
    }
}

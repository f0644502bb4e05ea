//! Invite tokens: JWT (RFC 7519) signed with HMAC-SHA256. Pure: the secret and the current
//! time are arguments.
//!
//! Only `HS256` is accepted, whatever the header says: a token naming another algorithm
//! (`none` above all) is a forgery attempt, not a format to support.

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use signaling::Role;

/// Longest token accepted for verification; real ones are about 400 bytes.
pub const MAX_TOKEN_BYTES: usize = signaling::protocol::MAX_INVITE_BYTES;

/// The signed content of an invite link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Consult id.
    pub cid: String,
    pub name: String,
    pub role: Role,
    /// Waits in the lobby until admitted.
    pub lobby: bool,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Expires at, unix seconds.
    pub exp: i64,
    /// Token id, to revoke one invite.
    pub jti: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a well-formed token")]
    Malformed,
    #[error("unsupported signature algorithm")]
    UnsupportedAlgorithm,
    #[error("bad signature")]
    BadSignature,
    #[error("expired")]
    Expired,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// `{"alg":"HS256","typ":"JWT"}`, the only header this server writes.
const HEADER_JSON: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

pub fn sign(claims: &Claims, secret: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(HEADER_JSON);
    let payload = URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(claims).expect("invariant: claims (strings, ints, bools) serialize"),
    );
    let signing_input = format!("{header}.{payload}");
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// Checks structure, algorithm, signature (constant time) and expiry, in that order: nothing
/// of the payload is trusted before the signature holds.
pub fn verify(token: &str, secret: &[u8], now_unix: i64) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(sig_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header_json = decode(header_b64)?;
    let header: Header = serde_json::from_slice(&header_json).map_err(|_| TokenError::Malformed)?;
    if header.alg != "HS256" {
        return Err(TokenError::UnsupportedAlgorithm);
    }
    let signature = decode(sig_b64)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
    hmac::verify(&key, signing_input.as_bytes(), &signature)
        .map_err(|_| TokenError::BadSignature)?;
    let claims: Claims =
        serde_json::from_slice(&decode(payload_b64)?).map_err(|_| TokenError::Malformed)?;
    if claims.exp <= now_unix {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

fn decode(part: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: i64 = 1_780_000_000;

    fn claims() -> Claims {
        Claims {
            cid: "c-abc123def4".into(),
            name: "Bác sĩ Lan".into(),
            role: Role::Specialist,
            lobby: false,
            iat: NOW - 60,
            exp: NOW + 3600,
            jti: "00112233445566778899aabbccddeeff".into(),
        }
    }

    /// Replaces one part (0 header, 1 payload, 2 signature) of a token.
    fn with_part(token: &str, index: usize, part: &str) -> String {
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[index] = part;
        parts.join(".")
    }

    #[test]
    fn header_is_the_standard_one() {
        let token = sign(&claims(), SECRET);
        let header = URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap();
        assert_eq!(header, br#"{"alg":"HS256","typ":"JWT"}"#);
        assert!(!token.contains('='), "no padding");
    }

    #[test]
    fn verification_table() {
        let good = sign(&claims(), SECRET);
        let mut forged_claims = claims();
        forged_claims.role = Role::Clinic;
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged_claims).unwrap());
        let alg_none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let alg_hs512_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS512","typ":"JWT"}"#);
        let mut expired = claims();
        expired.exp = NOW;
        let sig = good.split('.').nth(2).unwrap();
        let mut flipped_sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        flipped_sig[0] ^= 1;

        type Case<'a> = (&'a str, String, &'a [u8], Result<Claims, TokenError>);
        let cases: Vec<Case> = vec![
            ("valid", good.clone(), SECRET, Ok(claims())),
            (
                "payload swapped, old signature",
                with_part(&good, 1, &forged_payload),
                SECRET,
                Err(TokenError::BadSignature),
            ),
            (
                "one signature bit flipped",
                with_part(&good, 2, &URL_SAFE_NO_PAD.encode(&flipped_sig)),
                SECRET,
                Err(TokenError::BadSignature),
            ),
            (
                "other secret",
                good.clone(),
                b"another secret, also 32 bytes ok",
                Err(TokenError::BadSignature),
            ),
            (
                "signed with other secret",
                sign(&claims(), b"another secret, also 32 bytes ok"),
                SECRET,
                Err(TokenError::BadSignature),
            ),
            (
                "expired (exp == now)",
                sign(&expired, SECRET),
                SECRET,
                Err(TokenError::Expired),
            ),
            (
                "alg none, empty signature",
                format!("{alg_none_header}.{forged_payload}."),
                SECRET,
                Err(TokenError::UnsupportedAlgorithm),
            ),
            (
                "alg HS512",
                with_part(&good, 0, &alg_hs512_header),
                SECRET,
                Err(TokenError::UnsupportedAlgorithm),
            ),
            (
                "garbage",
                "not a token".into(),
                SECRET,
                Err(TokenError::Malformed),
            ),
            ("empty", String::new(), SECRET, Err(TokenError::Malformed)),
            (
                "truncated to two parts",
                good.rsplit_once('.').unwrap().0.to_string(),
                SECRET,
                Err(TokenError::Malformed),
            ),
            (
                "truncated signature",
                good[..good.len() - 3].to_string(),
                SECRET,
                Err(TokenError::BadSignature),
            ),
            (
                "four parts",
                format!("{good}.x"),
                SECRET,
                Err(TokenError::Malformed),
            ),
            (
                "padding in a part",
                with_part(&good, 2, &format!("{sig}=")),
                SECRET,
                Err(TokenError::Malformed),
            ),
            (
                "header not JSON",
                with_part(&good, 0, &URL_SAFE_NO_PAD.encode("HS256")),
                SECRET,
                Err(TokenError::Malformed),
            ),
            (
                "too long",
                format!("{good}{}", "A".repeat(MAX_TOKEN_BYTES)),
                SECRET,
                Err(TokenError::Malformed),
            ),
        ];
        for (what, token, secret, want) in cases {
            assert_eq!(verify(&token, secret, NOW), want, "{what}");
        }
    }

    #[test]
    fn a_signed_but_malformed_payload_is_malformed() {
        let header = URL_SAFE_NO_PAD.encode(HEADER_JSON);
        let payload = URL_SAFE_NO_PAD.encode(r#"{"cid":"c-1"}"#);
        let input = format!("{header}.{payload}");
        let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET);
        let tag = hmac::sign(&key, input.as_bytes());
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
        assert_eq!(verify(&token, SECRET, NOW), Err(TokenError::Malformed));
    }
}

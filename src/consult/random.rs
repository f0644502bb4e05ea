//! Random ids and secrets, from the system generator (aws-lc's).

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

/// Random bytes. The system generator fails only if the OS has no entropy source at all, in
/// which case no secret this server could make would be safe either.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .expect("invariant: the OS random generator is available");
    out
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `c-` and 10 characters of `[a-z0-9]` (about 51 bits): a valid room name, unguessable
/// enough that ids need not be secret (the invite token is what grants entry).
pub fn consult_id() -> String {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut id = String::from("c-");
    while id.len() < 12 {
        for b in bytes::<16>() {
            // 252 = 7 * 36: rejecting the top 4 values keeps every character equally likely.
            if b < 252 && id.len() < 12 {
                id.push(ALPHABET[usize::from(b % 36)] as char);
            }
        }
    }
    id
}

/// A token id (`jti`): 128 bits in hex.
pub fn token_id() -> String {
    hex(&bytes::<16>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consult_ids_are_room_names() {
        for _ in 0..200 {
            let id = consult_id();
            assert_eq!(id.len(), 12);
            assert!(id.starts_with("c-"));
            assert!(id[2..]
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        }
        assert_ne!(consult_id(), consult_id());
        assert_eq!(token_id().len(), 32);
    }
}

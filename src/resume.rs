//! Resume tokens: what lets a client whose socket dropped come back as the same participant.
//!
//! `base64url(expiry:instance:participant:room) . base64url(HMAC-SHA256)`. On a single node
//! the key is made at start; in a cluster it is derived from the invite secret every node
//! shares, so any node can read a token and send it on to the consult's node. Either way a
//! token resumes only on the process that issued it (`instance`, random per process):
//! participant ids count from 1 in every process, so the same id on another node or after a
//! restart is somebody else. The room stays the source of truth: a valid token only resumes a
//! participant the room still holds. Pure: the time is an argument.

use std::time::{Duration, SystemTime};

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// How long a token is good for. The room sends a fresh one well before that
/// (`REFRESH`), so a token in a client's hands is always recent.
pub const LIFETIME: Duration = Duration::from_secs(10 * 60);
/// How often a connected participant gets a fresh token.
pub const REFRESH: Duration = Duration::from_secs(4 * 60);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    #[error("not a resume token")]
    Malformed,
    #[error("the resume token's signature does not match")]
    BadSignature,
    #[error("the resume token has expired")]
    Expired,
    #[error("the resume key could not be made")]
    Key,
    #[error("the resume token was issued by another server process")]
    OtherProcess,
}

/// Who a valid token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeClaim {
    pub room: String,
    pub participant: u64,
    /// The process that issued it (`ResumeKeys::check_ours`).
    pub instance: u64,
}

pub struct ResumeKeys {
    key: hmac::Key,
    instance: u64,
}

impl std::fmt::Debug for ResumeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResumeKeys(..)")
    }
}

impl ResumeKeys {
    /// A fresh random key for this process.
    pub fn random() -> Result<Self, ResumeError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).map_err(|_| ResumeError::Key)?;
        Ok(Self {
            key,
            instance: random_instance(&rng)?,
        })
    }

    /// A key shared with other nodes (`secret`), and this process's own instance.
    pub fn shared(secret: &[u8]) -> Result<Self, ResumeError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        Ok(Self::with_instance(secret, random_instance(&rng)?))
    }

    /// A fixed key and instance (tests).
    pub fn with_instance(secret: &[u8], instance: u64) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            instance,
        }
    }

    /// A fixed key (tests).
    pub fn from_secret(secret: &[u8]) -> Self {
        Self::with_instance(secret, 1)
    }

    /// A verified claim this process issued (else its participant id means someone else here).
    pub fn check_ours(&self, claim: &ResumeClaim) -> Result<(), ResumeError> {
        if claim.instance == self.instance {
            Ok(())
        } else {
            Err(ResumeError::OtherProcess)
        }
    }

    pub fn issue(&self, room: &str, participant: u64, now: SystemTime) -> String {
        let expiry = unix(now).saturating_add(LIFETIME.as_secs());
        let payload = format!("{expiry}:{:x}:{participant}:{room}", self.instance);
        let tag = hmac::sign(&self.key, payload.as_bytes());
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }

    pub fn verify(&self, token: &str, now: SystemTime) -> Result<ResumeClaim, ResumeError> {
        let (payload, tag) = token.split_once('.').ok_or(ResumeError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| ResumeError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| ResumeError::Malformed)?;
        hmac::verify(&self.key, &payload, &tag).map_err(|_| ResumeError::BadSignature)?;
        // Signed by us, so well-formed unless the format changed under a running process.
        let payload = String::from_utf8(payload).map_err(|_| ResumeError::Malformed)?;
        let mut parts = payload.splitn(4, ':');
        let (Some(expiry), Some(instance), Some(participant), Some(room)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ResumeError::Malformed);
        };
        let expiry: u64 = expiry.parse().map_err(|_| ResumeError::Malformed)?;
        let instance = u64::from_str_radix(instance, 16).map_err(|_| ResumeError::Malformed)?;
        let participant = participant.parse().map_err(|_| ResumeError::Malformed)?;
        if unix(now) >= expiry {
            return Err(ResumeError::Expired);
        }
        Ok(ResumeClaim {
            room: room.to_string(),
            participant,
            instance,
        })
    }
}

fn random_instance(rng: &aws_lc_rs::rand::SystemRandom) -> Result<u64, ResumeError> {
    use aws_lc_rs::rand::SecureRandom;
    let mut b = [0u8; 8];
    rng.fill(&mut b).map_err(|_| ResumeError::Key)?;
    Ok(u64::from_le_bytes(b))
}

fn unix(t: SystemTime) -> u64 {
    // A clock before 1970 is not a real case; it would only make tokens expire early.
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let keys = ResumeKeys::from_secret(b"test key for resume tokens 32 by");
        let other = ResumeKeys::from_secret(b"another key, another process....");
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let good = keys.issue("kham-benh:7", 42, t0);
        let claim = ResumeClaim {
            room: "kham-benh:7".into(),
            participant: 42,
            instance: 1,
        };
        let (payload, tag) = good.split_once('.').unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode(format!(
            "{}:1:43:kham-benh:7",
            1_800_000_000 + LIFETIME.as_secs()
        ));
        let cases: Vec<(&str, String, SystemTime, Result<ResumeClaim, ResumeError>)> = vec![
            ("valid", good.clone(), t0, Ok(claim.clone())),
            (
                "valid until just before expiry",
                good.clone(),
                t0 + LIFETIME - Duration::from_secs(1),
                Ok(claim),
            ),
            (
                "expired",
                good.clone(),
                t0 + LIFETIME,
                Err(ResumeError::Expired),
            ),
            (
                "another participant's id in the payload",
                format!("{forged_payload}.{tag}"),
                t0,
                Err(ResumeError::BadSignature),
            ),
            (
                "tag cut short",
                format!("{payload}.{}", &tag[..12]),
                t0,
                Err(ResumeError::BadSignature),
            ),
            (
                "no dot",
                payload.to_string(),
                t0,
                Err(ResumeError::Malformed),
            ),
            (
                "not base64",
                "%%%.%%%".into(),
                t0,
                Err(ResumeError::Malformed),
            ),
            ("empty", String::new(), t0, Err(ResumeError::Malformed)),
        ];
        for (name, token, now, want) in cases {
            assert_eq!(keys.verify(&token, now), want, "{name}");
        }
        assert_eq!(
            other.verify(&good, t0),
            Err(ResumeError::BadSignature),
            "a token from another process"
        );
    }

    #[test]
    fn a_shared_key_reads_other_nodes_tokens_but_resumes_only_its_own() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let node_a = ResumeKeys::with_instance(b"the cluster's shared resume key.", 7);
        let node_b = ResumeKeys::with_instance(b"the cluster's shared resume key.", 8);
        let token = node_a.issue("c-1", 3, t0);
        let claim = node_b.verify(&token, t0).unwrap();
        assert_eq!((claim.room.as_str(), claim.participant), ("c-1", 3));
        assert_eq!(node_b.check_ours(&claim), Err(ResumeError::OtherProcess));
        assert_eq!(node_a.check_ours(&claim), Ok(()));
    }

    #[test]
    fn random_keys_differ() {
        let t0 = SystemTime::now();
        let a = ResumeKeys::random().unwrap();
        let b = ResumeKeys::random().unwrap();
        let token = a.issue("r", 1, t0);
        assert!(a.verify(&token, t0).is_ok());
        assert_eq!(b.verify(&token, t0), Err(ResumeError::BadSignature));
    }
}

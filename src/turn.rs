//! The ICE servers each participant gets in `joined`: the configured TURN servers with
//! credentials made for that participant (the TURN REST API scheme coturn checks with
//! `use-auth-secret`: username `expiry_unix:participant_id`, credential
//! base64(HMAC-SHA1(secret, username))), and the plain ICE servers as configured.
//! Pure: the time is an argument.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use signaling::IceServer;

use crate::config::TurnConfig;

/// What the server hands out, from the config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IceConfig {
    pub turn: TurnConfig,
    /// Given as they are (`stun:` URLs).
    pub plain: Vec<String>,
}

impl IceConfig {
    pub fn from_config(config: &crate::config::Config) -> Self {
        IceConfig {
            turn: config.turn.clone(),
            plain: config.ice_servers.clone(),
        }
    }

    /// The list for `participant`, with credentials valid from `now` for the configured
    /// lifetime. Without a secret, no TURN server is listed (coturn would refuse it).
    pub fn for_participant(&self, participant: &str, now: SystemTime) -> Vec<IceServer> {
        let mut out = Vec::new();
        if let (Some(secret), false) = (&self.turn.secret, self.turn.urls.is_empty()) {
            let (username, credential) = credentials(
                secret.expose().as_bytes(),
                participant,
                now,
                self.turn.credential_ttl,
            );
            out.push(IceServer {
                urls: self.turn.urls.clone(),
                username: Some(username),
                credential: Some(credential),
            });
        }
        if !self.plain.is_empty() {
            out.push(IceServer {
                urls: self.plain.clone(),
                username: None,
                credential: None,
            });
        }
        out
    }
}

/// (username, credential) for `participant`, expiring `ttl` after `now`.
pub fn credentials(
    secret: &[u8],
    participant: &str,
    now: SystemTime,
    ttl: Duration,
) -> (String, String) {
    // A clock before 1970 is not a real case; it would give credentials already expired.
    let now_unix = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let username = format!("{}:{participant}", now_unix.saturating_add(ttl.as_secs()));
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = aws_lc_rs::hmac::sign(&key, username.as_bytes());
    let credential = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
    (username, credential)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn at(unix: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(unix)
    }

    #[test]
    fn credentials_match_an_independent_hmac() {
        // Computed once with openssl, not with this code:
        //   printf '%s' '1700000000:p7' | openssl dgst -sha1 -hmac 'north-clinic-turn-secret' -binary | base64
        let cases = [
            (
                1_699_999_400,
                600,
                "p7",
                "1700000000:p7",
                "xmmg6LBfGUDXFKHM3UkIsyWwYbY=",
            ),
            (
                1_764_086_400,
                43_200,
                "p12",
                "1764129600:p12",
                "YVP6lC/dlsU2AZfnBsfvalhUXwM=",
            ),
        ];
        for (now, ttl, participant, user, cred) in cases {
            let got = credentials(
                b"north-clinic-turn-secret",
                participant,
                at(now),
                Duration::from_secs(ttl),
            );
            assert_eq!(got, (user.to_string(), cred.to_string()), "{participant}");
        }
    }

    #[test]
    fn turn_servers_only_with_a_secret_and_plain_ones_as_configured() {
        let turn = TurnConfig {
            secret: Some(Secret::new("north-clinic-turn-secret")),
            urls: vec![
                "turn:turn.example:3478?transport=udp".into(),
                "turns:turn.example:443?transport=tcp".into(),
            ],
            credential_ttl: Duration::from_secs(600),
        };
        let stun = vec!["stun:stun.example:3478".to_string()];
        let config = IceConfig {
            turn: turn.clone(),
            plain: stun.clone(),
        };
        let list = config.for_participant("p7", at(1_699_999_400));
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].urls, turn.urls);
        assert_eq!(list[0].username.as_deref(), Some("1700000000:p7"));
        assert_eq!(
            list[0].credential.as_deref(),
            Some("xmmg6LBfGUDXFKHM3UkIsyWwYbY=")
        );
        assert_eq!(
            (list[1].urls.clone(), list[1].username.clone()),
            (stun.clone(), None)
        );

        let no_secret = IceConfig {
            turn: TurnConfig {
                secret: None,
                ..turn.clone()
            },
            plain: Vec::new(),
        };
        assert!(no_secret.for_participant("p7", at(0)).is_empty());
        assert!(IceConfig::default().for_participant("p7", at(0)).is_empty());
    }
}

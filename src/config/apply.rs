//! Setting one option on the `Config`. The file, the environment and the command line all
//! come down to (source, key, value) text, so each key is parsed and checked here once, in
//! one `match`, and a bad value is reported with the source it came from.

use std::path::PathBuf;
use std::time::Duration;

use super::{Config, ConfigError, Secret, MIN_SECRET_CHARS, MIN_TURN_SECRET_CHARS};

/// Sets `key` to `value` as given by `source_name` (`file PATH`, `env CONSULT_...` or
/// `--flag`): the source decides whether secrets are accepted and unknown keys refused.
pub(super) fn apply_pair(
    config: &mut Config,
    source_name: String,
    key: String,
    value: String,
) -> Result<(), ConfigError> {
    let bad = |expected| ConfigError::Value {
        source_name: source_name.clone(),
        key: key.clone(),
        value: value.clone(),
        expected,
    };
    match key.as_str() {
        "http_addr" => config.http_addr = value.parse().map_err(|_| bad("socket address"))?,
        "udp_addr" => config.udp_addr = value.parse().map_err(|_| bad("socket address"))?,
        "ice_tcp_addr" if value == "off" || value.is_empty() => config.ice_tcp_addr = None,
        "ice_tcp_addr" => {
            config.ice_tcp_addr = Some(value.parse().map_err(|_| bad("socket address or off"))?)
        }
        "public_ip" => config.public_ip = Some(value.parse().map_err(|_| bad("IP address"))?),
        "web_root" => config.web_root = PathBuf::from(value),
        "log" => config.log = value,
        "max_participants" => config.max_participants = value.parse().map_err(|_| bad("number"))?,
        "initial_estimate_bps" => {
            config.initial_estimate_bps = value.parse().map_err(|_| bad("number"))?
        }
        // Zero would refuse every consult: a typo, not a setting.
        "max_connections" => {
            config.max_connections =
                parse_positive(&value).ok_or_else(|| bad("number of 1 or more"))?
        }
        "max_connections_per_ip" => {
            config.max_connections_per_ip =
                parse_positive(&value).ok_or_else(|| bad("number of 1 or more"))?
        }
        "allowed_origins" => {
            let origins: Vec<String> = value
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_string())
                .filter(|o| !o.is_empty())
                .collect();
            if origins.iter().any(|o| {
                !(o.starts_with("https://") || o.starts_with("http://"))
                    || o.matches('/').count() != 2
            }) {
                return Err(bad("comma-separated origins like https://portal.example"));
            }
            config.allowed_origins = origins;
        }
        "tls_cert" | "tls_key" if value.trim().is_empty() => return Err(bad("file path")),
        "tls_cert" => config.tls_cert = Some(PathBuf::from(value)),
        "tls_key" => config.tls_key = Some(PathBuf::from(value)),
        "turn_secret" if source_name.starts_with("--") => {
            return Err(ConfigError::Invalid {
                field: source_name,
                message: "not accepted on the command line, where other users see it \
                          (ps); use CONSULT_TURN_SECRET or the config file"
                    .into(),
            })
        }
        "turn_secret" => {
            let chars = value.chars().count();
            if chars < MIN_TURN_SECRET_CHARS {
                return Err(ConfigError::Invalid {
                    field: format!("{source_name}: turn_secret"),
                    message: format!(
                        "must be at least {MIN_TURN_SECRET_CHARS} characters, got {chars}"
                    ),
                });
            }
            config.turn.secret = Some(Secret(value));
        }
        "turn_urls" => {
            config.turn.urls = parse_urls(&value, &["turn:", "turns:"])
                .ok_or_else(|| bad("comma-separated turn: or turns: URLs"))?
        }
        "ice_servers" => {
            config.ice_servers = parse_urls(&value, &["stun:", "stuns:", "turn:", "turns:"])
                .ok_or_else(|| bad("comma-separated stun: (or turn:) URLs"))?
        }
        // Below a minute a credential could expire before ICE even completes.
        "turn_credential_ttl" => {
            config.turn.credential_ttl = Duration::from_secs(
                value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|&n: &u64| (60..=7 * 86400).contains(&n))
                    .ok_or_else(|| bad("number of seconds, 60 to 604800"))?,
            )
        }
        "redis_url" if value.trim().is_empty() || value == "off" => config.cluster.redis_url = None,
        "redis_url" => {
            // Never echo the value: it may carry the Redis password.
            let url: crate::cluster::RedisUrl =
                value
                    .trim()
                    .parse()
                    .map_err(|why: String| ConfigError::Invalid {
                        field: format!("{source_name}: redis_url"),
                        message: format!("{why} (expected redis://[:password@]host[:port][/db])"),
                    })?;
            if url.password.is_some() && source_name.starts_with("--") {
                return Err(ConfigError::Invalid {
                    field: source_name,
                    message: "a URL with a password is not accepted on the command line, \
                              where other users see it (ps); use CONSULT_REDIS_URL or the \
                              config file"
                        .into(),
                });
            }
            config.cluster.redis_url = Some(url);
        }
        "node_id" => {
            let id = value.trim();
            let ok = (1..=64).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !ok {
                return Err(bad("1 to 64 letters, digits, '-', '_' or '.'"));
            }
            config.cluster.node_id = Some(id.to_string());
        }
        "advertise_url" => {
            let url = value.trim().trim_end_matches('/');
            let ok = (url.starts_with("http://") || url.starts_with("https://"))
                && !url.contains(char::is_whitespace);
            if !ok {
                return Err(bad("http:// or https:// URL of this node"));
            }
            config.cluster.advertise_url = Some(url.to_string());
        }
        "reconnect_grace" => {
            config.reconnect_grace = Duration::from_secs(
                value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n: &u64| (1..=600).contains(n))
                    .ok_or_else(|| bad("number of seconds, 1 to 600"))?,
            )
        }
        "drain_timeout" => {
            config.drain_timeout = Duration::from_secs(
                value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|&n: &u64| n <= 86400)
                    .ok_or_else(|| bad("number of seconds, 0 to 86400"))?,
            )
        }
        "max_node_participants" => {
            config.max_node_participants =
                parse_off_or(&value, |n: &usize| (1..=1_000_000).contains(n))
                    .ok_or_else(|| bad("number of participants (1 or more) or off"))?
        }
        // Under 5 ms the timer's own 1 ms resolution and scheduling noise would refuse
        // joins on a healthy node.
        "admission_max_lag_ms" => {
            config.admission_max_lag = parse_off_or(&value, |n: &u64| (5..=60_000).contains(n))
                .map(|o| o.map(Duration::from_millis))
                .ok_or_else(|| bad("number of milliseconds, 5 to 60000, or off"))?
        }
        "admission_max_cpu" => {
            config.admission_max_cpu = parse_off_or(&value, |f: &f64| (0.05..=1.0).contains(f))
                .ok_or_else(|| bad("fraction of all cores, 0.05 to 1, or off"))?
        }
        "db_path" if value.trim().is_empty() => return Err(bad("file path")),
        "db_path" => config.consults.db_path = PathBuf::from(value),
        "database_url" if value.trim().is_empty() || value.trim() == "off" => {
            config.consults.database_url = None
        }
        "database_url" => {
            // Never echo the value: it may carry the database password.
            let url = crate::consult::DatabaseUrl::parse(&value).map_err(|message| {
                ConfigError::Invalid {
                    field: format!("{source_name}: database_url"),
                    message,
                }
            })?;
            if url.has_password() && source_name.starts_with("--") {
                return Err(ConfigError::Invalid {
                    field: source_name,
                    message: "a URL with a password is not accepted on the command line, \
                              where other users see it (ps); use CONSULT_DATABASE_URL or \
                              the config file"
                        .into(),
                });
            }
            config.consults.database_url = Some(url);
        }
        "token_secret" if source_name.starts_with("--") => {
            return Err(ConfigError::Invalid {
                field: source_name,
                message: "not accepted on the command line, where other users see it \
                          (ps); use CONSULT_TOKEN_SECRET or the config file"
                    .into(),
            })
        }
        "token_secret" => {
            let chars = value.chars().count();
            if chars < MIN_SECRET_CHARS {
                // Never echo the value: it is a secret, even a bad one.
                return Err(ConfigError::Invalid {
                    field: format!("{source_name}: token_secret"),
                    message: format!("must be at least {MIN_SECRET_CHARS} characters, got {chars}"),
                });
            }
            config.consults.token_secret = Some(Secret(value));
        }
        "public_url" => {
            config.consults.public_url =
                Some(parse_public_url(&value).ok_or_else(|| {
                    bad("URL (http:// or https://, a host, no query or fragment)")
                })?)
        }
        "allow_open_join" => {
            config.consults.allow_open_join =
                parse_bool(&value).ok_or_else(|| bad("boolean (1/0, true/false)"))?
        }
        _ if source_name.starts_with("env") => {} // other CONSULT_* variables are not ours
        _ => return Err(ConfigError::UnknownOption(format!("--{key}"))),
    }
    Ok(())
}

/// Comma-separated URLs, each starting with one of `schemes`, without spaces or quotes (they
/// go into JSON for the browser's `RTCPeerConnection`, which rejects a malformed one).
fn parse_urls(s: &str, schemes: &[&str]) -> Option<Vec<String>> {
    let urls: Vec<String> = s
        .split(',')
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .collect();
    urls.iter()
        .all(|u| {
            schemes
                .iter()
                .any(|p| u.len() > p.len() && u.starts_with(p))
                && u.chars().all(|c| c.is_ascii_graphic() && c != '"')
        })
        .then_some(urls)
}

/// `off` (None), or a value that `valid` accepts; anything else is an error (the outer None).
fn parse_off_or<T: std::str::FromStr>(s: &str, valid: impl Fn(&T) -> bool) -> Option<Option<T>> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("off") {
        return Some(None);
    }
    s.parse().ok().filter(|v| valid(v)).map(Some)
}

fn parse_positive(s: &str) -> Option<usize> {
    s.trim().parse().ok().filter(|&n| n > 0)
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

/// `http(s)://host[:port][/path]`, returned without a trailing slash (links append `/?...`).
fn parse_public_url(s: &str) -> Option<String> {
    let s = s.trim().trim_end_matches('/');
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))?;
    let host = rest.split('/').next().unwrap_or_default();
    let ok = !host.is_empty() && !s.contains(['?', '#']) && s.chars().all(|c| c.is_ascii_graphic());
    ok.then(|| s.to_string())
}

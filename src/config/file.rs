//! The TOML config file: its shape, and turning it into the same (source, key, value) pairs
//! the environment and command line give, so every key is checked once (in `apply`) whatever
//! its source. Operators and video layers have no env or flag form: they come back beside
//! the pairs.

use std::path::PathBuf;

use serde::Deserialize;
use signaling::VideoLayerConfig;

use super::{ConfigError, OperatorConfig, Secret, MAX_CLINIC_CHARS, MIN_OPERATOR_KEY_CHARS};

/// The config file's shape; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    http_addr: Option<String>,
    udp_addr: Option<String>,
    ice_tcp_addr: Option<String>,
    public_ip: Option<String>,
    web_root: Option<PathBuf>,
    log: Option<String>,
    max_participants: Option<usize>,
    video_layers: Option<Vec<VideoLayerConfig>>,
    initial_estimate_bps: Option<u64>,
    consults: Option<FileConsults>,
    operators: Option<Vec<FileOperator>>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    allowed_origins: Option<Vec<String>>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    turn_secret: Option<String>,
    turn_urls: Option<Vec<String>>,
    turn_credential_ttl: Option<u64>,
    ice_servers: Option<Vec<String>>,
    drain_timeout: Option<u64>,
    max_node_participants: Option<NumberOrOff>,
    admission_max_lag_ms: Option<NumberOrOff>,
    admission_max_cpu: Option<NumberOrOff>,
    reconnect_grace: Option<u64>,
    redis_url: Option<String>,
    node_id: Option<String>,
    advertise_url: Option<String>,
}

/// A number, or the word `off`, in the config file.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum NumberOrOff {
    Int(i64),
    Float(f64),
    Text(String),
}

impl NumberOrOff {
    fn into_text(self) -> String {
        match self {
            NumberOrOff::Int(n) => n.to_string(),
            NumberOrOff::Float(f) => f.to_string(),
            NumberOrOff::Text(s) => s,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConsults {
    db_path: Option<PathBuf>,
    database_url: Option<String>,
    token_secret: Option<String>,
    public_url: Option<String>,
    allow_open_join: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOperator {
    clinic: String,
    key: String,
}

/// What a config file sets.
pub(super) struct FileSettings {
    /// (source, key, value), applied before the env and command line ones.
    pub(super) pairs: Vec<(String, String, String)>,
    /// `[[operators]]`, already checked.
    pub(super) operators: Option<Vec<OperatorConfig>>,
    /// Checked by `load` once everything else is, so its errors come last.
    pub(super) video_layers: Option<Vec<VideoLayerConfig>>,
}

/// Parses the text of the config file at `path` (named in errors and pair sources).
pub(super) fn parse(path: &str, text: &str) -> Result<FileSettings, ConfigError> {
    let file: FileConfig =
        toml::from_str(text).map_err(|e| ConfigError::File(format!("{path}: {e}")))?;
    let src = format!("file {path}");
    let mut file_pairs = Vec::new();
    let mut push = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            file_pairs.push((src.clone(), k.to_string(), v));
        }
    };
    push("http_addr", file.http_addr);
    push("udp_addr", file.udp_addr);
    push("ice_tcp_addr", file.ice_tcp_addr);
    push("public_ip", file.public_ip);
    push("web_root", file.web_root.map(|p| p.display().to_string()));
    push("log", file.log);
    push(
        "max_participants",
        file.max_participants.map(|n| n.to_string()),
    );
    push(
        "initial_estimate_bps",
        file.initial_estimate_bps.map(|n| n.to_string()),
    );
    push(
        "max_connections",
        file.max_connections.map(|n| n.to_string()),
    );
    push(
        "max_connections_per_ip",
        file.max_connections_per_ip.map(|n| n.to_string()),
    );
    push("allowed_origins", file.allowed_origins.map(|o| o.join(",")));
    push("tls_cert", file.tls_cert.map(|p| p.display().to_string()));
    push("tls_key", file.tls_key.map(|p| p.display().to_string()));
    push("turn_secret", file.turn_secret);
    push("turn_urls", file.turn_urls.map(|u| u.join(",")));
    push(
        "turn_credential_ttl",
        file.turn_credential_ttl.map(|n| n.to_string()),
    );
    push("ice_servers", file.ice_servers.map(|u| u.join(",")));
    push("drain_timeout", file.drain_timeout.map(|n| n.to_string()));
    push(
        "max_node_participants",
        file.max_node_participants.map(NumberOrOff::into_text),
    );
    push(
        "admission_max_lag_ms",
        file.admission_max_lag_ms.map(NumberOrOff::into_text),
    );
    push(
        "admission_max_cpu",
        file.admission_max_cpu.map(NumberOrOff::into_text),
    );
    push(
        "reconnect_grace",
        file.reconnect_grace.map(|n| n.to_string()),
    );
    push("redis_url", file.redis_url);
    push("node_id", file.node_id);
    push("advertise_url", file.advertise_url);
    if let Some(c) = file.consults {
        push("db_path", c.db_path.map(|p| p.display().to_string()));
        push("database_url", c.database_url);
        push("token_secret", c.token_secret);
        push("public_url", c.public_url);
        push("allow_open_join", c.allow_open_join.map(|b| b.to_string()));
    }
    let operators = match file.operators {
        Some(operators) => Some(validate_operators(operators, path)?),
        None => None,
    };
    Ok(FileSettings {
        pairs: file_pairs,
        operators,
        video_layers: file.video_layers,
    })
}

fn validate_operators(
    operators: Vec<FileOperator>,
    path: &str,
) -> Result<Vec<OperatorConfig>, ConfigError> {
    let mut out: Vec<OperatorConfig> = Vec::with_capacity(operators.len());
    for (i, op) in operators.into_iter().enumerate() {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            field: format!("file {path}: operators[{i}].{key}"),
            message,
        };
        let clinic = op.clinic.trim().to_string();
        let clinic_chars = clinic.chars().count();
        if clinic_chars == 0
            || clinic_chars > MAX_CLINIC_CHARS
            || clinic.chars().any(char::is_control)
        {
            return Err(invalid(
                "clinic",
                format!("must be 1 to {MAX_CLINIC_CHARS} characters without control characters"),
            ));
        }
        if op.key.chars().count() < MIN_OPERATOR_KEY_CHARS
            || !op.key.chars().all(|c| c.is_ascii_graphic())
        {
            // The key goes in an HTTP header: printable ASCII, no spaces.
            return Err(invalid(
                "key",
                format!("must be at least {MIN_OPERATOR_KEY_CHARS} printable ASCII characters without spaces"),
            ));
        }
        if let Some(j) = out.iter().position(|o| o.clinic == clinic) {
            return Err(invalid(
                "clinic",
                format!("{clinic:?} is also operators[{j}]; one entry per clinic"),
            ));
        }
        if let Some(j) = out.iter().position(|o| o.key.expose() == op.key) {
            return Err(invalid(
                "key",
                format!("the same key as operators[{j}]; each clinic needs its own"),
            ));
        }
        out.push(OperatorConfig {
            clinic,
            key: Secret(op.key),
        });
    }
    Ok(out)
}

//! Server configuration: defaults, then a TOML file, then environment, then command line.
//! Pure: the caller passes the file text, the environment and the arguments.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use signaling::VideoLayerConfig;

mod apply;
mod file;
mod help;

pub use help::HELP;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// HTTP: web client, `/ws`, `/metrics`, `/healthz`.
    pub http_addr: SocketAddr,
    /// The one UDP port every peer's media uses.
    pub udp_addr: SocketAddr,
    /// ICE-TCP (passive) listen address for clients whose UDP is blocked; `None`: off.
    pub ice_tcp_addr: Option<SocketAddr>,
    /// The address put in ICE candidates; defaults to the UDP bind address, or 127.0.0.1 when
    /// that is unspecified (0.0.0.0).
    pub public_ip: Option<IpAddr>,
    /// Folder with the web client's files.
    pub web_root: PathBuf,
    /// `tracing` filter, e.g. `info` or `consult_sfu=debug,str0m=info`.
    pub log: String,
    /// Participants per room.
    pub max_participants: usize,
    /// Simulcast encodings clients publish, lowest first (rids q, h, f).
    pub video_layers: Vec<VideoLayerConfig>,
    /// Bandwidth estimate a new subscriber starts from, before any feedback.
    pub initial_estimate_bps: u64,
    /// The consult store and invite links (`[consults]` in the file).
    pub consults: ConsultsConfig,
    /// Clinic operators who may use the API (`[[operators]]`, file only). None configured: a
    /// local dev operator is made at start.
    pub operators: Vec<OperatorConfig>,
    /// WebSocket connections at once, in total; more get HTTP 503 `server_busy`.
    pub max_connections: usize,
    /// WebSocket connections at once from one client address (an IPv6 /64); more get 503.
    pub max_connections_per_ip: usize,
    /// Pages besides the server's own that may open `/ws` (e.g. a hospital portal embedding
    /// the join flow): `scheme://host[:port]`, exact.
    pub allowed_origins: Vec<String>,
    /// PEM certificate chain for HTTPS/WSS on `http_addr`; with `tls_key`. None: plain HTTP.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// TURN servers handed to browsers with short-lived credentials.
    pub turn: TurnConfig,
    /// ICE servers handed to browsers as they are (`stun:` URLs, or TURN without credentials).
    pub ice_servers: Vec<String>,
    /// After a drain request, how long running consults may go on before the process exits.
    pub drain_timeout: Duration,
    /// Admission control (`crate::admission`): participants on this node (all consults) at
    /// which new joins get `server_busy`. None: no cap.
    pub max_node_participants: Option<usize>,
    /// Admission control: event-loop lag (median of the last 11 ticks) over which the node
    /// counts as saturated. None: not measured for admission.
    pub admission_max_lag: Option<Duration>,
    /// Admission control: process CPU as a fraction of all cores over which the node counts
    /// as saturated. None: not measured for admission.
    pub admission_max_cpu: Option<f64>,
    /// How long a participant whose connection dropped keeps its place in the consult.
    pub reconnect_grace: Duration,
    /// Several nodes sharing a Redis directory (`crate::cluster`); off without `redis_url`.
    pub cluster: ClusterConfig,
}

/// A node of a cluster: where the shared directory is and how other nodes' clients reach us.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterConfig {
    /// None: a single node (no directory, every consult runs here).
    pub redis_url: Option<crate::cluster::RedisUrl>,
    /// Unique per node; None: the host name and the HTTP port.
    pub node_id: Option<String>,
    /// The base URL browsers and bots reach this node at (`https://n1.consult.example.vn`);
    /// None: `public_url`.
    pub advertise_url: Option<String>,
}

/// coturn with `use-auth-secret`: the server derives each participant's credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnConfig {
    /// coturn's `static-auth-secret`. None: no TURN servers are handed out.
    pub secret: Option<Secret>,
    /// `turn:host:3478?transport=udp`, `turn:host:3478?transport=tcp`, `turns:host:443?transport=tcp`.
    pub urls: Vec<String>,
    /// How long handed-out credentials stay valid; coturn refuses refreshes after it, so it
    /// must outlast the longest consult.
    pub credential_ttl: Duration,
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig {
            secret: None,
            urls: Vec::new(),
            credential_ttl: Duration::from_secs(DEFAULT_TURN_CREDENTIAL_TTL_SECS),
        }
    }
}

/// 12 h: longer than any consult, short enough that a leaked credential soon stops working.
pub const DEFAULT_TURN_CREDENTIAL_TTL_SECS: u64 = 12 * 3600;
/// 1 h: a consult that started just before an upgrade may finish.
pub const DEFAULT_DRAIN_TIMEOUT_SECS: u64 = 3600;
pub const DEFAULT_RECONNECT_GRACE_SECS: u64 = 30;
/// Shortest accepted TURN secret.
pub const MIN_TURN_SECRET_CHARS: usize = 16;
/// A median tick 50 ms late means every worker is busy for that long: media is already
/// queueing, while a loaded but healthy node stays at 1-2 ms (the timer's resolution).
pub const DEFAULT_ADMISSION_MAX_LAG_MS: u64 = 50;
/// 80 % of the cores, the same point as the `ConsultNodeNearSaturation` alert.
pub const DEFAULT_ADMISSION_MAX_CPU: f64 = 0.8;

#[derive(Debug, Clone, PartialEq)]
pub struct ConsultsConfig {
    /// SQLite file; its folder is created at start.
    pub db_path: PathBuf,
    /// PostgreSQL shared by several nodes, used instead of `db_path`. None: SQLite.
    pub database_url: Option<crate::consult::DatabaseUrl>,
    /// HMAC key of invite tokens. None: generated once and kept in the database.
    pub token_secret: Option<Secret>,
    /// Base of the links handed out (`https://consult.example.vn`); None: from the HTTP
    /// address (see `Config::public_url`).
    pub public_url: Option<String>,
    /// Join by room name without an invite. Only for the media load tests: anyone who can
    /// reach the server can then enter any consult.
    pub allow_open_join: bool,
}

impl Default for ConsultsConfig {
    fn default() -> Self {
        ConsultsConfig {
            db_path: PathBuf::from("data/consults.sqlite"),
            database_url: None,
            token_secret: None,
            public_url: None,
            allow_open_join: false,
        }
    }
}

/// One clinic's API access.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorConfig {
    /// Shown to participants and in the audit trail; the consults belong to it.
    pub clinic: String,
    pub key: Secret,
}

/// A string kept out of `Debug` output (and so out of logs and error messages).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Shortest accepted `token_secret` (32 characters: 256 bits if random).
pub const MIN_SECRET_CHARS: usize = 32;
/// Shortest accepted operator key.
pub const MIN_OPERATOR_KEY_CHARS: usize = 16;
/// Longest clinic name (it is also the clinic's display name in the consult).
pub const MAX_CLINIC_CHARS: usize = signaling::protocol::MAX_NAME_CHARS;

/// Defaults tuned for rural links: 320x180 at ~150 kbps, 640x360 at ~400 kbps, 1280x720 at
/// ~1.2 Mbps (from a 1280x720 camera).
pub fn default_video_layers() -> Vec<VideoLayerConfig> {
    let layer = |rid: &str, scale: f64, kbps: u64, fps: f64| VideoLayerConfig {
        rid: rid.into(),
        scale_resolution_down_by: scale,
        max_bitrate: kbps * 1000,
        max_framerate: fps,
    };
    vec![
        layer("q", 4.0, 150, 15.0),
        layer("h", 2.0, 400, 30.0),
        layer("f", 1.0, 1200, 30.0),
    ]
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080),
            udp_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000),
            ice_tcp_addr: None,
            public_ip: None,
            web_root: PathBuf::from("web-client"),
            log: "info".into(),
            max_participants: 8,
            video_layers: default_video_layers(),
            initial_estimate_bps: 600_000,
            consults: ConsultsConfig::default(),
            operators: Vec::new(),
            max_connections: signaling::limits::DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: signaling::limits::DEFAULT_MAX_CONNECTIONS_PER_IP,
            allowed_origins: Vec::new(),
            tls_cert: None,
            tls_key: None,
            turn: TurnConfig::default(),
            ice_servers: Vec::new(),
            drain_timeout: Duration::from_secs(DEFAULT_DRAIN_TIMEOUT_SECS),
            max_node_participants: None,
            admission_max_lag: Some(Duration::from_millis(DEFAULT_ADMISSION_MAX_LAG_MS)),
            admission_max_cpu: Some(DEFAULT_ADMISSION_MAX_CPU),
            reconnect_grace: Duration::from_secs(DEFAULT_RECONNECT_GRACE_SECS),
            cluster: ClusterConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("config file: {0}")]
    File(String),
    #[error("{source_name}: {key} = {value:?} is not a valid {expected}")]
    Value {
        source_name: String,
        key: String,
        value: String,
        expected: &'static str,
    },
    #[error("unknown option {0:?} (try --help)")]
    UnknownOption(String),
    #[error("option {0} needs a value")]
    MissingValue(String),
    #[error("max_participants must be 2 to 8, got {0}")]
    MaxParticipants(usize),
    #[error("video_layers: {0}")]
    VideoLayers(String),
    /// A value that must not be echoed (a secret), or a rule across fields.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

/// What the command line asked for.
#[derive(Debug, PartialEq)]
pub enum Command {
    Run(Box<Config>),
    /// `--check-config`: the config as a start would use it, to print and not to run.
    CheckConfig(Box<Config>),
    Help,
}

/// Builds the config. `read_file` loads the `--config`/`CONSULT_CONFIG` file.
pub fn load(
    args: &[String],
    env: &[(String, String)],
    read_file: impl Fn(&str) -> Result<String, String>,
) -> Result<Command, ConfigError> {
    let mut pairs: Vec<(String, String, String)> = Vec::new(); // (source, key, value)
    let mut config_file = env
        .iter()
        .find(|(k, _)| k == "CONSULT_CONFIG")
        .map(|(_, v)| v.clone());

    for (k, v) in env {
        if let Some(name) = k.strip_prefix("CONSULT_") {
            if name != "CONFIG" {
                pairs.push((format!("env {k}"), name.to_ascii_lowercase(), v.clone()));
            }
        }
    }
    let mut check_only = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--help" || arg == "-h" {
            return Ok(Command::Help);
        }
        // A flag without a value: everything else is parsed exactly as for a start.
        if arg == "--check-config" {
            check_only = true;
            continue;
        }
        let Some(name) = arg.strip_prefix("--") else {
            return Err(ConfigError::UnknownOption(arg.clone()));
        };
        let (name, value) = match name.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => {
                let v = it
                    .next()
                    .ok_or_else(|| ConfigError::MissingValue(arg.clone()))?;
                (name.to_string(), v.clone())
            }
        };
        if name == "config" {
            config_file = Some(value);
        } else {
            pairs.push((format!("--{name}"), name.replace('-', "_"), value));
        }
    }

    let mut config = Config::default();
    let mut file_layers: Option<Vec<VideoLayerConfig>> = None;
    if let Some(path) = config_file {
        let text = read_file(&path).map_err(|e| ConfigError::File(format!("{path}: {e}")))?;
        let from_file = file::parse(&path, &text)?;
        if let Some(operators) = from_file.operators {
            config.operators = operators;
        }
        file_layers = from_file.video_layers;
        // File first, so env and command line override it.
        pairs.splice(0..0, from_file.pairs);
    }

    for (source_name, key, value) in pairs {
        apply::apply_pair(&mut config, source_name, key, value)?;
    }
    if !(2..=8).contains(&config.max_participants) {
        return Err(ConfigError::MaxParticipants(config.max_participants));
    }
    if let Some(layers) = file_layers {
        validate_layers(&layers)?;
        config.video_layers = layers;
    }
    Ok(if check_only {
        Command::CheckConfig(Box::new(config))
    } else {
        Command::Run(Box::new(config))
    })
}

fn validate_layers(layers: &[VideoLayerConfig]) -> Result<(), ConfigError> {
    let err = |m: String| Err(ConfigError::VideoLayers(m));
    if layers.is_empty() || layers.len() > 3 {
        return err(format!("1 to 3 layers, got {}", layers.len()));
    }
    let rids: Vec<&str> = layers.iter().map(|l| l.rid.as_str()).collect();
    if rids != crate::adapt::layer::RIDS[..layers.len()] {
        return err(format!(
            "rids must be {:?} in that order, got {rids:?}",
            &crate::adapt::layer::RIDS[..layers.len()]
        ));
    }
    for l in layers {
        let scale = l.scale_resolution_down_by;
        if !scale.is_finite()
            || scale < 1.0
            || l.max_bitrate < 30_000
            || !l.max_framerate.is_finite()
            || l.max_framerate <= 0.0
        {
            return err(format!(
                "layer {:?}: scale >= 1, max_bitrate >= 30000, max_framerate > 0",
                l.rid
            ));
        }
    }
    if layers
        .windows(2)
        .any(|w| w[1].max_bitrate <= w[0].max_bitrate)
    {
        return err("max_bitrate must grow from layer to layer".into());
    }
    Ok(())
}

impl Config {
    /// Base of the links handed out: the configured one, else from the HTTP address the
    /// server is bound to (`localhost` for a loopback or unspecified address, which is right
    /// only for a browser on this machine).
    pub fn public_url(&self, http_bound: SocketAddr) -> String {
        if let Some(url) = &self.consults.public_url {
            return url.clone();
        }
        let ip = http_bound.ip();
        let scheme = if self.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        if ip.is_loopback() || ip.is_unspecified() {
            format!("{scheme}://localhost:{}", http_bound.port())
        } else {
            format!("{scheme}://{http_bound}")
        }
    }

    /// The address browsers are told to send media to.
    pub fn candidate_ip(&self, bound: SocketAddr) -> IpAddr {
        self.public_ip.unwrap_or(if bound.ip().is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            bound.ip()
        })
    }
}

mod report;

#[cfg(test)]
mod tests;

//! Server configuration: defaults, then a TOML file, then environment, then command line.
//! Pure: the caller passes the file text, the environment and the arguments.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use signaling::VideoLayerConfig;

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

pub const HELP: &str = "\
consult-sfu: telehealth consult SFU

Options (each also as env CONSULT_<NAME>, e.g. CONSULT_HTTP_ADDR; the command line wins):
  --config FILE           TOML file with the same keys (http_addr, udp_addr, ...)
  --check-config          load and validate the config (file, env, command line) like a
                          start would, print the effective settings (secrets redacted), exit:
                          0 valid, 2 invalid
  --http-addr ADDR        HTTP listen address        [127.0.0.1:8080]
  --udp-addr ADDR         media UDP listen address   [127.0.0.1:40000]
  --ice-tcp-addr ADDR     ICE-TCP listen address for clients without UDP, or off  [off]
  --public-ip IP          address given to browsers in ICE candidates
  --web-root DIR          web client folder          [web-client]
  --log FILTER            log filter                 [info]
  --max-participants N    per room, 2 to 8           [8]
  --db-path FILE          consult database (SQLite)  [data/consults.sqlite]
  --database-url URL      PostgreSQL shared by several nodes, instead of --db-path:
                          postgres://user@/db?host=/run/postgresql (no TLS: a unix
                          socket or loopback; with a password: env or file only)  [off]
  --public-url URL        base of invite links       [http://<http-addr>]
  --allow-open-join 1     join by room name without an invite: media load tests ONLY
  --max-connections N     WebSocket connections at once    [2000]
  --max-connections-per-ip N
                          ... from one client address      [50]
                          (behind a local proxy: its X-Forwarded-For; IPv6: a /64)
  --allowed-origins LIST  other pages that may open /ws, e.g. https://portal.example
                          (comma-separated; the server's own pages always may)  [none]
  --initial-estimate-bps N
                          bandwidth a new subscriber starts from   [600000]
  --tls-cert FILE         PEM certificate chain: HTTPS and WSS on http-addr (with
                          --tls-key; renewed files are picked up without a restart)  [off]
  --tls-key FILE          PEM private key of --tls-cert
  --turn-urls LIST        TURN servers given to browsers with credentials from
                          turn_secret, e.g. turns:turn.example:443?transport=tcp  [none]
  --turn-credential-ttl SECONDS
                          how long those credentials are valid     [43200]
  --ice-servers LIST      other ICE servers given to browsers as they are (stun:...)  [none]
  --drain-timeout SECONDS after POST /api/v1/admin/drain (or SIGUSR1): how long running
                          consults may go on before the process exits   [3600]
  --max-node-participants N
                          admission control: participants on this node at which new
                          joins get server_busy, or off           [off]
  --admission-max-lag-ms MS
                          ... when the event loop's tick runs this late (median), or off  [50]
  --admission-max-cpu FRACTION
                          ... when the process uses this share of all cores, or off  [0.8]
  --reconnect-grace SECONDS
                          how long a participant whose connection dropped keeps its
                          place (others see it reconnecting)   [30]
  --redis-url URL         several nodes: the shared Redis directory,
                          redis://[:password@]host[:port][/db]      [off: one node]
  --node-id NAME          this node's id in the directory   [host name and HTTP port]
  --advertise-url URL     how clients reach this node (http(s)://host[:port])  [public_url]
Env or file only:
  CONSULT_TOKEN_SECRET    invite signing key, 32+ characters [generated, kept in the database]
  CONSULT_TURN_SECRET     coturn's static-auth-secret (use-auth-secret), 16+ characters
File only:
  operators               [[operators]] tables (docs/API.md), one per clinic:
                          clinic = \"...\", key = \"...\" (16+ characters)
  video_layers            simulcast layers q, h, f (rid, scale_resolution_down_by,
                          max_bitrate, max_framerate)          [320x180, 640x360, 1280x720]
";

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
        let file: FileConfig =
            toml::from_str(&text).map_err(|e| ConfigError::File(format!("{path}: {e}")))?;
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
        if let Some(operators) = file.operators {
            config.operators = validate_operators(operators, &path)?;
        }
        file_layers = file.video_layers;
        // File first, so env and command line override it.
        pairs.splice(0..0, file_pairs);
    }

    for (source_name, key, value) in pairs {
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
            "max_participants" => {
                config.max_participants = value.parse().map_err(|_| bad("number"))?
            }
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
            "redis_url" if value.trim().is_empty() || value == "off" => {
                config.cluster.redis_url = None
            }
            "redis_url" => {
                // Never echo the value: it may carry the Redis password.
                let url: crate::cluster::RedisUrl =
                    value
                        .trim()
                        .parse()
                        .map_err(|why: String| ConfigError::Invalid {
                            field: format!("{source_name}: redis_url"),
                            message: format!(
                                "{why} (expected redis://[:password@]host[:port][/db])"
                            ),
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
                        message: format!(
                            "must be at least {MIN_SECRET_CHARS} characters, got {chars}"
                        ),
                    });
                }
                config.consults.token_secret = Some(Secret(value));
            }
            "public_url" => {
                config.consults.public_url = Some(parse_public_url(&value).ok_or_else(|| {
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

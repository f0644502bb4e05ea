//! The deployment files against the server itself: `deploy/README.md`'s option table against
//! the option parser (so the one documented place cannot drift), `/readyz`, and the metric
//! names the alert rules and the Grafana dashboard use against a running server's `/metrics`.
//! `scripts/check-deploy.sh` checks the rest (promtool, compose and Kubernetes files).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use consult_sfu::config::{self, Command, Config, ConfigError, ConsultsConfig};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

mod common;

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// One row of the option table.
#[derive(Debug)]
struct Row {
    /// `consults.db_path`; None for the config file itself.
    key: Option<String>,
    env: Option<String>,
    flag: Option<String>,
    default: String,
}

/// A cell: None for `—`; the text without its code span when the cell is one.
fn cell(s: &str) -> Option<String> {
    let s = s.trim();
    (s != "—").then(|| s.trim_matches('`').to_string())
}

fn readme_rows() -> Vec<Row> {
    let readme = repo_file("deploy/README.md");
    let mut lines = readme
        .lines()
        .skip_while(|l| !l.starts_with("| Option | TOML key | Env var | CLI flag | Default |"));
    lines.next().expect("deploy/README.md has the option table");
    lines.next(); // | --- | ...
    lines
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.trim().trim_matches('|').split('|').collect();
            assert_eq!(cells.len(), 6, "six columns: {l}");
            Row {
                key: cell(cells[1]),
                env: cell(cells[2]),
                flag: cell(cells[3]),
                default: cells[4].trim().to_string(),
            }
        })
        .collect()
}

fn load(args: &[&str], env: &[(&str, &str)], file: &str) -> Result<Config, ConfigError> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match config::load(&args, &env, |_| Ok(file.to_string()))? {
        Command::Run(c) => Ok(*c),
        other => panic!("not a run: {other:?}"),
    }
}

/// Every key the config file accepts, as serde lists them when refusing an unknown one.
fn file_keys() -> BTreeSet<String> {
    let expected = |file: &str| -> Vec<String> {
        let err = load(&["--config", "c.toml"], &[], file)
            .unwrap_err()
            .to_string();
        let list = err
            .split_once("expected")
            .unwrap_or_else(|| panic!("serde lists the keys: {err}"))
            .1;
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(String::from)
            .collect()
    };
    let mut keys: BTreeSet<String> = expected("zz_not_an_option = 1").into_iter().collect();
    assert!(keys.remove("consults"), "{keys:?}");
    for k in expected("[consults]\nzz_not_an_option = 1") {
        keys.insert(format!("consults.{k}"));
    }
    keys
}

/// A valid value other than the default, for each option: (command line or env, TOML file).
fn sample(key: &str) -> (&'static str, &'static str) {
    match key {
        "http_addr" => ("127.0.0.1:9", "http_addr = \"127.0.0.1:9\""),
        "udp_addr" => ("127.0.0.1:9", "udp_addr = \"127.0.0.1:9\""),
        "ice_tcp_addr" => ("127.0.0.1:9", "ice_tcp_addr = \"127.0.0.1:9\""),
        "public_ip" => ("192.0.2.1", "public_ip = \"192.0.2.1\""),
        "web_root" => ("/srv/web", "web_root = \"/srv/web\""),
        "log" => ("debug", "log = \"debug\""),
        "max_participants" => ("3", "max_participants = 3"),
        "initial_estimate_bps" => ("123456", "initial_estimate_bps = 123456"),
        "max_connections" => ("7", "max_connections = 7"),
        "max_connections_per_ip" => ("3", "max_connections_per_ip = 3"),
        "allowed_origins" => (
            "https://portal.example",
            "allowed_origins = [\"https://portal.example\"]",
        ),
        "video_layers" => (
            "x",
            "video_layers = [{rid = \"q\", scale_resolution_down_by = 2.0, max_bitrate = 100000, max_framerate = 10.0}]",
        ),
        "tls_cert" => ("/etc/ssl/c.pem", "tls_cert = \"/etc/ssl/c.pem\""),
        "tls_key" => ("/etc/ssl/k.pem", "tls_key = \"/etc/ssl/k.pem\""),
        "turn_secret" => ("0123456789abcdef", "turn_secret = \"0123456789abcdef\""),
        "turn_urls" => (
            "turns:turn.example:443?transport=tcp",
            "turn_urls = [\"turns:turn.example:443?transport=tcp\"]",
        ),
        "turn_credential_ttl" => ("600", "turn_credential_ttl = 600"),
        "ice_servers" => (
            "stun:stun.example:3478",
            "ice_servers = [\"stun:stun.example:3478\"]",
        ),
        "drain_timeout" => ("60", "drain_timeout = 60"),
        "max_node_participants" => ("120", "max_node_participants = 120"),
        "admission_max_lag_ms" => ("200", "admission_max_lag_ms = 200"),
        "admission_max_cpu" => ("0.5", "admission_max_cpu = 0.5"),
        "reconnect_grace" => ("45", "reconnect_grace = 45"),
        "redis_url" => (
            "redis://10.0.0.5:6379",
            "redis_url = \"redis://10.0.0.5:6379\"",
        ),
        "node_id" => ("n7", "node_id = \"n7\""),
        "advertise_url" => (
            "https://n7.consult.example",
            "advertise_url = \"https://n7.consult.example\"",
        ),
        "consults.db_path" => ("/srv/c.sqlite", "[consults]\ndb_path = \"/srv/c.sqlite\""),
        "consults.database_url" => (
            "postgres://consult@/consult?host=/run/postgresql",
            "[consults]\ndatabase_url = \"postgres://consult@/consult?host=/run/postgresql\"",
        ),
        "consults.token_secret" => (
            "0123456789abcdef0123456789abcdef",
            "[consults]\ntoken_secret = \"0123456789abcdef0123456789abcdef\"",
        ),
        "consults.public_url" => (
            "https://a.example",
            "[consults]\npublic_url = \"https://a.example\"",
        ),
        "consults.allow_open_join" => ("1", "[consults]\nallow_open_join = true"),
        "operators" => (
            "x",
            "[[operators]]\nclinic = \"A\"\nkey = \"aaaaaaaaaaaaaaaa\"",
        ),
        other => panic!("option {other:?} is new: give it a sample value in tests/deploy.rs"),
    }
}

#[test]
fn readme_option_table_matches_the_option_parser() {
    let rows = readme_rows();
    let defaults: Vec<(String, String)> = Config::default().summary();
    let default = Config::default();

    let documented: BTreeSet<String> = rows.iter().filter_map(|r| r.key.clone()).collect();
    assert_eq!(
        documented,
        file_keys(),
        "deploy/README.md's TOML keys vs the keys the config file accepts"
    );

    for row in &rows {
        let Some(key) = &row.key else {
            // The config file itself: by env and flag, not a key.
            assert_eq!(row.env.as_deref(), Some("CONSULT_CONFIG"));
            assert_eq!(row.flag.as_deref(), Some("--config"));
            let c = load(&[], &[("CONSULT_CONFIG", "x.toml")], "log = \"debug\"").unwrap();
            assert_eq!(c.log, "debug");
            let c = load(&["--config", "x.toml"], &[], "log = \"debug\"").unwrap();
            assert_eq!(c.log, "debug");
            continue;
        };
        let leaf = key.rsplit('.').next().unwrap();
        let (value, toml) = sample(key);

        let from_file = load(&["--config", "c.toml"], &[], toml)
            .unwrap_or_else(|e| panic!("{key} in a file: {e}"));
        assert_ne!(from_file, default, "{key} in a file is read");

        let env_name = format!("CONSULT_{}", leaf.to_ascii_uppercase());
        let from_env = load(&[], &[(&env_name, value)], "");
        match &row.env {
            Some(env) => {
                assert_eq!(env, &env_name, "{key}'s env var");
                assert_ne!(from_env.unwrap(), default, "{env} is read");
            }
            None => assert_eq!(from_env, Ok(default.clone()), "{env_name} is not an option"),
        }

        let flag_name = format!("--{}", leaf.replace('_', "-"));
        let from_flag = load(&[&flag_name, value], &[], "");
        match &row.flag {
            Some(flag) => {
                assert_eq!(flag, &flag_name, "{key}'s flag");
                assert!(config::HELP.contains(flag.as_str()), "--help lists {flag}");
                assert_ne!(from_flag.unwrap(), default, "{flag} is read");
            }
            None => assert!(from_flag.is_err(), "{flag_name} is refused: {from_flag:?}"),
        }

        // A default in one code span must be what the server starts with; a described one
        // ("unset: ...") must be an option that is unset by default.
        let (_, actual) = defaults
            .iter()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("--check-config's summary shows {key}"));
        let d = &row.default;
        if d.starts_with('`') && d.ends_with('`') && d.matches('`').count() == 2 {
            assert_eq!(&d[1..d.len() - 1], actual, "{key}'s default");
        } else {
            assert!(
                actual.starts_with('(') || key == "video_layers",
                "{key}: the README describes its default as {d:?} but it is {actual:?}"
            );
        }
    }

    // And every flag --help lists is in the table (or is one of the two without a value).
    let readme = repo_file("deploy/README.md");
    let flags: BTreeSet<&str> = rows.iter().filter_map(|r| r.flag.as_deref()).collect();
    for word in config::HELP.split(|c: char| c.is_whitespace() || c == ',') {
        if let Some(name) = word.strip_prefix("--") {
            let flag = format!(
                "--{}",
                name.trim_end_matches(|c: char| !c.is_alphanumeric())
            );
            if flag == "--check-config" || flag == "--help" {
                assert!(
                    readme.contains(&format!("`{flag}`")),
                    "README explains {flag}"
                );
            } else {
                assert!(
                    flags.contains(flag.as_str()),
                    "{flag} from --help is in the table"
                );
            }
        }
    }
}

#[test]
fn the_example_configs_pass_check_config() {
    for path in ["deploy/consult-sfu.toml", "deploy/compose/consult-sfu.toml"] {
        let text = repo_file(path);
        let args = [
            "--config".to_string(),
            path.to_string(),
            "--check-config".into(),
        ];
        match config::load(&args, &[], |_| Ok(text.clone())) {
            Ok(Command::CheckConfig(_)) => {}
            other => panic!("{path}: {other:?}"),
        }
    }
}

fn temp_dir(name: &str) -> PathBuf {
    common::temp_dir(&format!("deploy-{name}"))
}

/// `GET path` over HTTP/1.0: (status, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// Metric names a Prometheus file uses (also in comments: those must be real names too).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices(['c', 'p']) {
        let rest = &text[i..];
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        if rest.starts_with("consult_") || rest.starts_with("process_") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
    out
}

/// Used by alerts and panels, but not exported yet: see "Not implemented yet" in
/// deploy/README.md. Remove a name from here once the server exports it.
const PENDING_METRICS: &[&str] = &[];

#[tokio::test]
async fn readyz_and_every_metric_the_alerts_and_dashboard_use() {
    let dir = temp_dir("metrics");
    let config = Config {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        udp_addr: "127.0.0.1:0".parse().unwrap(),
        consults: ConsultsConfig {
            db_path: dir.join("consults.sqlite"),
            ..ConsultsConfig::default()
        },
        ..Config::default()
    };
    let server = common::serve(&config).await;
    let http = server.http;

    assert_eq!(get(http, "/readyz").await.unwrap(), (200, "ready\n".into()));
    assert_eq!(get(http, "/healthz").await.unwrap(), (200, "ok\n".into()));

    // A labelled series exists once counted: one rejected message makes
    // consult_signaling_errors_total appear, as on any server in use.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/ws"))
        .await
        .unwrap();
    ws.send(Message::Text("not json".into())).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("an error reply")
        .unwrap()
        .unwrap();
    assert!(reply.to_string().contains("bad_json"), "{reply}");

    let (status, text) = get(http, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    let exported: BTreeSet<String> = text
        .lines()
        .filter_map(|l| match l.strip_prefix("# TYPE ") {
            Some(t) => t.split(' ').next(),
            None if l.starts_with('#') => None,
            None => l.split(['{', ' ']).next(),
        })
        .map(String::from)
        .collect();
    for file in [
        "deploy/prometheus/alerts.yml",
        "deploy/prometheus/alerts.test.yml",
        "deploy/grafana/dashboards/consult.json",
    ] {
        let used = metric_names(&repo_file(file));
        assert!(!used.is_empty(), "{file} uses metrics");
        for name in used {
            if PENDING_METRICS.contains(&name.as_str()) {
                assert!(
                    !exported.contains(&name),
                    "{name} is exported now: remove it from PENDING_METRICS"
                );
            } else {
                assert!(
                    exported.contains(&name),
                    "{file}: {name} is not in /metrics"
                );
            }
        }
    }

    drop(ws);
    server.stop().await;
    // Stopped: not ready (the port is closed, or 503 on a late request).
    if let Ok((status, _)) = get(http, "/readyz").await {
        assert_ne!(status, 200);
    }
    let _ = std::fs::remove_dir_all(dir);
}

//! Configuration loading: defaults, precedence, consult settings and limits; the settings of
//! the services around the SFU are in `services`.

mod services;

use super::*;

pub(super) fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

pub(super) fn run(
    a: &str,
    env: &[(&str, &str)],
    file: Option<&str>,
) -> Result<Config, ConfigError> {
    let env: Vec<_> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let file = file.map(String::from);
    match load(&args(a), &env, |_| file.clone().ok_or("missing".into()))? {
        Command::Run(c) => Ok(*c),
        Command::CheckConfig(_) | Command::Help => panic!("not a run: {a}"),
    }
}

#[test]
fn ice_tcp_is_off_unless_given_and_accepts_off() {
    assert_eq!(run("", &[], None).unwrap().ice_tcp_addr, None);
    let c = run("--ice-tcp-addr 0.0.0.0:443", &[], None).unwrap();
    assert_eq!(c.ice_tcp_addr, Some("0.0.0.0:443".parse().unwrap()));
    let c = run("", &[("CONSULT_ICE_TCP_ADDR", "off")], None).unwrap();
    assert_eq!(c.ice_tcp_addr, None);
    let c = run(
        "--config x.toml",
        &[],
        Some("ice_tcp_addr = \"127.0.0.1:4443\""),
    )
    .unwrap();
    assert_eq!(c.ice_tcp_addr, Some("127.0.0.1:4443".parse().unwrap()));
    let err = run("--ice-tcp-addr tcp-please", &[], None).unwrap_err();
    assert!(err.to_string().contains("ice_tcp_addr"), "{err}");
}

#[test]
fn defaults_are_localhost() {
    let c = run("", &[], None).unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.candidate_ip(c.udp_addr).to_string(), "127.0.0.1");
}

#[test]
fn command_line_beats_env_beats_file() {
    let file = "http_addr = \"0.0.0.0:9000\"\nudp_addr = \"0.0.0.0:5000\"\nlog = \"debug\"";
    let c = run(
        "--config x.toml --udp-addr=127.0.0.1:6000",
        &[
            ("CONSULT_HTTP_ADDR", "127.0.0.1:9100"),
            ("CONSULT_UDP_ADDR", "127.0.0.1:5500"),
        ],
        Some(file),
    )
    .unwrap();
    assert_eq!(c.http_addr.to_string(), "127.0.0.1:9100");
    assert_eq!(c.udp_addr.to_string(), "127.0.0.1:6000");
    assert_eq!(c.log, "debug");
}

#[test]
fn public_ip_overrides_the_candidate() {
    let c = run(
        "--udp-addr 0.0.0.0:40000 --public-ip 203.0.113.7",
        &[],
        None,
    )
    .unwrap();
    assert_eq!(c.candidate_ip(c.udp_addr).to_string(), "203.0.113.7");
    let c = run("--udp-addr 0.0.0.0:40000", &[], None).unwrap();
    assert_eq!(c.candidate_ip(c.udp_addr).to_string(), "127.0.0.1");
}

#[test]
fn bad_input_is_a_clear_error() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<&'a str>, &'a str);
    let cases: &[Case] = &[
        (
            "--http-addr nonsense",
            &[],
            None,
            "not a valid socket address",
        ),
        ("--public-ip 1.2.3", &[], None, "not a valid IP address"),
        ("--bogus 1", &[], None, "unknown option"),
        ("--log", &[], None, "needs a value"),
        ("stray", &[], None, "unknown option"),
        ("--max-participants 20", &[], None, "2 to 8"),
        (
            "",
            &[("CONSULT_UDP_ADDR", "x")],
            None,
            "env CONSULT_UDP_ADDR",
        ),
        ("--config c.toml", &[], Some("port = 1"), "unknown field"),
        ("--config c.toml", &[], Some("http_addr = ["), "c.toml"),
        ("--config c.toml", &[], None, "missing"),
        (
            "--config c.toml",
            &[],
            Some("video_layers = [{rid=\"h\", scale_resolution_down_by=1.0, max_bitrate=100000, max_framerate=30.0}]"),
            "rids must be",
        ),
        (
            "--config c.toml",
            &[],
            Some("video_layers = [{rid=\"q\", scale_resolution_down_by=4.0, max_bitrate=300000, max_framerate=15.0},{rid=\"h\", scale_resolution_down_by=2.0, max_bitrate=200000, max_framerate=30.0}]"),
            "must grow",
        ),
    ];
    for (a, env, file, want) in cases {
        let err = run(a, env, *file).unwrap_err().to_string();
        assert!(err.contains(want), "{a}: {err:?} should mention {want:?}");
    }
}

#[test]
fn video_layers_from_the_file() {
    let file = "video_layers = [{rid=\"q\", scale_resolution_down_by=4.0, max_bitrate=100000, max_framerate=10.0},{rid=\"h\", scale_resolution_down_by=2.0, max_bitrate=300000, max_framerate=20.0}]";
    let c = run("--config c.toml", &[], Some(file)).unwrap();
    assert_eq!(c.video_layers.len(), 2);
    assert_eq!(c.video_layers[1].max_bitrate, 300_000);
}

#[test]
fn consult_settings_from_file_env_and_command_line() {
    let file = r#"
[consults]
db_path = "/var/lib/consult/db.sqlite"
public_url = "https://consult.example.vn/"
token_secret = "0123456789abcdef0123456789abcdef"

[[operators]]
clinic = "Tram y te Xa A"
key = "key-of-clinic-a-0001"

[[operators]]
clinic = " Tram y te Xa B "
key = "key-of-clinic-b-0002"
"#;
    let c = run("--config c.toml", &[], Some(file)).unwrap();
    assert_eq!(
        c.consults.db_path,
        PathBuf::from("/var/lib/consult/db.sqlite")
    );
    assert_eq!(
        c.consults.public_url.as_deref(),
        Some("https://consult.example.vn")
    );
    assert_eq!(
        c.consults.token_secret.as_ref().map(Secret::expose),
        Some("0123456789abcdef0123456789abcdef")
    );
    assert!(!c.consults.allow_open_join);
    assert_eq!(c.operators.len(), 2);
    assert_eq!(c.operators[1].clinic, "Tram y te Xa B");
    assert_eq!(c.operators[1].key.expose(), "key-of-clinic-b-0002");
    assert!(
        !format!("{c:?}").contains("key-of-clinic"),
        "keys stay out of Debug"
    );

    let c = run(
        "--config c.toml --db-path /tmp/x.sqlite",
        &[
            ("CONSULT_ALLOW_OPEN_JOIN", "1"),
            ("CONSULT_PUBLIC_URL", "http://10.0.0.2:8080"),
            ("CONSULT_DB_PATH", "/ignored.sqlite"),
        ],
        Some(file),
    )
    .unwrap();
    assert!(c.consults.allow_open_join);
    assert_eq!(c.consults.db_path, PathBuf::from("/tmp/x.sqlite"));
    assert_eq!(
        c.consults.public_url.as_deref(),
        Some("http://10.0.0.2:8080")
    );
}

#[test]
fn consult_defaults() {
    let c = run("", &[], None).unwrap();
    assert_eq!(c.consults.db_path, PathBuf::from("data/consults.sqlite"));
    assert_eq!(c.consults.token_secret, None);
    assert!(!c.consults.allow_open_join);
    assert!(c.operators.is_empty());
    let cases = [
        ("127.0.0.1:8080", "http://localhost:8080"),
        ("0.0.0.0:80", "http://localhost:80"),
        ("[::1]:9000", "http://localhost:9000"),
        ("10.1.2.3:8080", "http://10.1.2.3:8080"),
    ];
    for (bound, want) in cases {
        assert_eq!(c.public_url(bound.parse().unwrap()), want);
    }
    let c = run("--public-url https://a.example/consult/", &[], None).unwrap();
    assert_eq!(
        c.public_url("127.0.0.1:1".parse().unwrap()),
        "https://a.example/consult"
    );
}

#[test]
fn bad_consult_settings_name_the_field() {
    let op = |clinic: &str, key: &str| {
        format!("[[operators]]\nclinic = \"{clinic}\"\nkey = \"{key}\"\n")
    };
    let key_a = "aaaaaaaaaaaaaaaa";
    let key_b = "bbbbbbbbbbbbbbbb";
    let dup_key = op("A", key_a) + &op("B", key_a);
    let dup_clinic = op("A", key_a) + &op("A", key_b);
    let short_key = op("A", "short");
    let spaced_key = op("A", "has spaces in the key");
    let empty_clinic = op("  ", key_a);
    let long_clinic = op(&"x".repeat(65), key_a);
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<&'a str>, &'a str);
    let cases: &[Case] = &[
        (
            "",
            &[("CONSULT_TOKEN_SECRET", "too-short")],
            None,
            "env CONSULT_TOKEN_SECRET: token_secret: must be at least 32",
        ),
        (
            "",
            &[("CONSULT_ALLOW_OPEN_JOIN", "maybe")],
            None,
            "allow_open_join",
        ),
        ("--public-url ftp://x", &[], None, "public_url"),
        (
            "--token-secret 0123456789abcdef0123456789abcdef",
            &[],
            None,
            "--token-secret: not accepted on the command line",
        ),
        ("--public-url http://", &[], None, "public_url"),
        ("--public-url http://a/?x=1", &[], None, "public_url"),
        ("--db-path=", &[], None, "db_path"),
        (
            "--config c.toml",
            &[],
            Some("[consults]\ndb = \"x\""),
            "unknown field",
        ),
        (
            "--config c.toml",
            &[],
            Some("[[operators]]\nclinic = \"A\""),
            "missing field `key`",
        ),
        (
            "--config c.toml",
            &[],
            Some(&dup_key),
            "operators[1].key: the same key as operators[0]",
        ),
        (
            "--config c.toml",
            &[],
            Some(&dup_clinic),
            "operators[1].clinic: \"A\" is also operators[0]",
        ),
        (
            "--config c.toml",
            &[],
            Some(&short_key),
            "operators[0].key: must be at least 16",
        ),
        (
            "--config c.toml",
            &[],
            Some(&spaced_key),
            "operators[0].key",
        ),
        (
            "--config c.toml",
            &[],
            Some(&empty_clinic),
            "operators[0].clinic",
        ),
        (
            "--config c.toml",
            &[],
            Some(&long_clinic),
            "operators[0].clinic: must be 1 to 64",
        ),
    ];
    for (a, env, file, want) in cases {
        let err = run(a, env, *file).unwrap_err().to_string();
        assert!(
            err.contains(want),
            "{a} {env:?}: {err:?} should mention {want:?}"
        );
        assert!(!err.contains("too-short"), "secrets are not echoed: {err}");
    }
}

#[test]
fn connection_limits_from_file_env_and_command_line() {
    type Case<'a> = (
        &'a str,
        &'a [(&'a str, &'a str)],
        Option<&'a str>,
        (usize, usize),
    );
    let cases: &[Case] = &[
        ("", &[], None, (2000, 50)),
        (
            "--config c.toml",
            &[],
            Some("max_connections = 300\nmax_connections_per_ip = 20"),
            (300, 20),
        ),
        (
            "--config c.toml --max-connections-per-ip 5",
            &[("CONSULT_MAX_CONNECTIONS", "100")],
            Some("max_connections = 300\nmax_connections_per_ip = 20"),
            (100, 5),
        ),
        (
            "--max-connections=10",
            &[("CONSULT_MAX_CONNECTIONS_PER_IP", " 3 ")],
            None,
            (10, 3),
        ),
    ];
    for (a, env, file, want) in cases {
        let c = run(a, env, *file).unwrap();
        assert_eq!(
            (c.max_connections, c.max_connections_per_ip),
            *want,
            "{a} {env:?} {file:?}"
        );
    }
    type Bad<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<&'a str>, &'a str);
    let bad: &[Bad] = &[
        (
            "--max-connections 0",
            &[],
            None,
            "--max-connections: max_connections = \"0\" is not a valid number of 1 or more",
        ),
        (
            "--max-connections-per-ip many",
            &[],
            None,
            "max_connections_per_ip = \"many\"",
        ),
        (
            "",
            &[("CONSULT_MAX_CONNECTIONS", "-1")],
            None,
            "env CONSULT_MAX_CONNECTIONS",
        ),
        (
            "--config c.toml",
            &[],
            Some("max_connections = -5"),
            "c.toml",
        ),
        (
            "--config c.toml",
            &[],
            Some("max_connections_per_ip = 0"),
            "file c.toml: max_connections_per_ip",
        ),
    ];
    for (a, env, file, want) in bad {
        let err = run(a, env, *file).unwrap_err().to_string();
        assert!(
            err.contains(want),
            "{a} {env:?}: {err:?} should mention {want:?}"
        );
    }
}

#[test]
fn check_config_validates_like_a_start() {
    let file = r#"
http_addr = "0.0.0.0:8080"
udp_addr = "0.0.0.0:40000"
[consults]
token_secret = "0123456789abcdef0123456789abcdef"
public_url = "https://consult.example.vn"
[[operators]]
clinic = "Tram y te Xa A"
key = "key-of-clinic-a-0001"
"#;
    let env = [("CONSULT_LOG".to_string(), "debug".to_string())];
    let read = |_: &str| Ok(file.to_string());
    let a = args("--config c.toml --check-config --max-participants 4");
    let Ok(Command::CheckConfig(checked)) = load(&a, &env, read) else {
        panic!("--check-config is a check");
    };
    // The same settings a start with the same input would run with.
    let a = args("--config c.toml --max-participants 4");
    assert_eq!(load(&a, &env, read), Ok(Command::Run(checked.clone())));
    assert_eq!(
        (checked.max_participants, checked.log.as_str()),
        (4, "debug")
    );

    let summary = checked.summary();
    let text = format!("{summary:?}");
    for secret in ["0123456789abcdef", "key-of-clinic-a"] {
        assert!(
            !text.contains(secret),
            "secrets stay out of the summary: {text}"
        );
    }
    let get = |k: &str| &summary.iter().find(|(key, _)| key == k).unwrap().1;
    assert_eq!(get("consults.token_secret"), "(redacted, 32 characters)");
    assert_eq!(get("operators"), "\"Tram y te Xa A\" key (redacted)");
    assert_eq!(get("http_addr"), "0.0.0.0:8080");
    let warnings = checked.warnings().join("\n");
    assert!(warnings.contains("public_ip unset"), "{warnings}");
    assert!(!warnings.contains("public_url"), "{warnings}");

    // An invalid config is the same error with or without --check-config.
    let bad = args("--check-config --max-participants 9");
    assert_eq!(load(&bad, &[], read), Err(ConfigError::MaxParticipants(9)));
    let bad = args("--config c.toml --check-config");
    let err = load(&bad, &[], |_| Ok("max_participants = \"x\"".into()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("c.toml") && err.contains("max_participants"),
        "{err}"
    );
}

#[test]
fn summary_names_every_file_key() {
    // Each summary line is a key the file accepts (the README's table is checked
    // against both in tests/deploy.rs).
    let c = Config::default();
    let keys: Vec<String> = c.summary().into_iter().map(|(k, _)| k).collect();
    for key in &keys {
        let (table, leaf) = match key.split_once('.') {
            Some((t, l)) => (Some(t), l),
            None => (None, key.as_str()),
        };
        // An unknown key fails; a known key with a wrong type fails differently.
        let text = match table {
            Some(t) => format!("[{t}]\n{leaf} = {{}}"),
            None => format!("{leaf} = {{}}"),
        };
        let err = run("--config c.toml", &[], Some(&text))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("unknown field"), "{key}: {err}");
    }
    assert!(c.warnings().iter().any(|w| w.contains("no [[operators]]")));
}

#[test]
fn help() {
    assert_eq!(
        load(&args("--help"), &[], |_| Err(String::new())),
        Ok(Command::Help)
    );
}

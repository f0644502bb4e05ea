use super::*;

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn run(a: &str, env: &[(&str, &str)], file: Option<&str>) -> Result<Config, ConfigError> {
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

#[test]
fn tls_turn_and_drain_settings() {
    let file = r#"
tls_cert = "/etc/consult/tls/fullchain.pem"
tls_key = "/etc/consult/tls/privkey.pem"
turn_secret = "0123456789abcdef0123"
turn_urls = ["turn:turn.example:3478?transport=udp", "turns:turn.example:443?transport=tcp"]
turn_credential_ttl = 7200
ice_servers = ["stun:stun.example:3478"]
drain_timeout = 900
"#;
    let c = run("--config x.toml", &[], Some(file)).unwrap();
    assert_eq!(
        c.tls_cert.as_deref(),
        Some(std::path::Path::new("/etc/consult/tls/fullchain.pem"))
    );
    assert_eq!(
        c.turn.secret.as_ref().unwrap().expose(),
        "0123456789abcdef0123"
    );
    assert_eq!(c.turn.urls.len(), 2);
    assert_eq!(c.turn.credential_ttl, Duration::from_secs(7200));
    assert_eq!(c.ice_servers, vec!["stun:stun.example:3478".to_string()]);
    assert_eq!(c.drain_timeout, Duration::from_secs(900));
    // With TLS, the default public URL is https.
    assert_eq!(
        c.public_url("127.0.0.1:8443".parse().unwrap()),
        "https://localhost:8443"
    );
    // The secret never shows in the summary.
    let summary = format!("{:?}", c.summary());
    assert!(!summary.contains("0123456789abcdef0123"), "{summary}");
    assert!(c.warnings().iter().all(|w| !w.contains("turn_")));

    // Env and command line, comma-separated lists.
    let c = run(
        "--turn-urls turns:t.example:443?transport=tcp --drain-timeout 0",
        &[
            ("CONSULT_TURN_SECRET", "0123456789abcdef"),
            ("CONSULT_ICE_SERVERS", "stun:a.example, stun:b.example:3478"),
        ],
        None,
    )
    .unwrap();
    assert_eq!(
        c.turn.urls,
        vec!["turns:t.example:443?transport=tcp".to_string()]
    );
    assert_eq!(c.ice_servers.len(), 2);
    assert_eq!(c.drain_timeout, Duration::ZERO);

    // Only one of secret and URLs: a warning, not an error.
    let c = run("--turn-urls turn:t.example", &[], None).unwrap();
    assert!(c
        .warnings()
        .iter()
        .any(|w| w.contains("turn_secret and turn_urls")));
}

#[test]
fn bad_tls_turn_and_drain_settings_name_the_field() {
    // (command line, env, what the error says)
    type Env<'a> = &'a [(&'a str, &'a str)];
    let cases: &[(&str, Env, &str)] = &[
        ("--turn-urls http://t.example", &[], "turn_urls"),
        ("--turn-urls turn:", &[], "turn_urls"),
        ("--ice-servers stun:a\"b", &[], "ice_servers"),
        ("--turn-credential-ttl 30", &[], "turn_credential_ttl"),
        ("--turn-credential-ttl soon", &[], "turn_credential_ttl"),
        ("--drain-timeout -1", &[], "drain_timeout"),
        ("--drain-timeout 100000", &[], "drain_timeout"),
        ("--turn-secret 0123456789abcdef", &[], "command line"),
        ("", &[("CONSULT_TURN_SECRET", "short")], "at least 16"),
        ("--tls-cert ", &[], "needs a value"),
    ];
    for (cli, env, want) in cases {
        let err = run(cli, env, None).unwrap_err().to_string();
        assert!(err.contains(want), "{cli} {env:?}: {err}");
        assert!(
            !err.contains("\"short\""),
            "a secret is never echoed: {err}"
        );
    }
    let err = run("", &[("CONSULT_TLS_KEY", " ")], None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("tls_key"), "{err}");
}

#[test]
fn admission_settings() {
    let d = Config::default();
    assert_eq!(d.max_node_participants, None);
    assert_eq!(d.admission_max_lag, Some(Duration::from_millis(50)));
    assert_eq!(d.admission_max_cpu, Some(0.8));
    // (command line, env, file, expected cap, lag ms, cpu)
    type Case<'a> = (
        &'a str,
        &'a [(&'a str, &'a str)],
        Option<&'a str>,
        Option<usize>,
        Option<u64>,
        Option<f64>,
    );
    let cases: &[Case] = &[
        ("--max-node-participants 120", &[], None, Some(120), Some(50), Some(0.8)),
        ("--admission-max-lag-ms off --admission-max-cpu off", &[], None, None, None, None),
        ("", &[("CONSULT_ADMISSION_MAX_LAG_MS", "200")], None, None, Some(200), Some(0.8)),
        (
            "--config c.toml",
            &[],
            Some("max_node_participants = 60\nadmission_max_lag_ms = \"off\"\nadmission_max_cpu = 0.5"),
            Some(60),
            None,
            Some(0.5),
        ),
        (
            "--config c.toml --max-node-participants off",
            &[("CONSULT_ADMISSION_MAX_CPU", "1")],
            Some("max_node_participants = 60"),
            None,
            Some(50),
            Some(1.0),
        ),
    ];
    for (cli, env, file, cap, lag, cpu) in cases {
        let c = run(cli, env, *file).unwrap_or_else(|e| panic!("{cli}: {e}"));
        assert_eq!(c.max_node_participants, *cap, "{cli}");
        assert_eq!(c.admission_max_lag, lag.map(Duration::from_millis), "{cli}");
        assert_eq!(c.admission_max_cpu, *cpu, "{cli}");
    }
    for (cli, want) in [
        ("--max-node-participants 0", "max_node_participants"),
        ("--max-node-participants lots", "max_node_participants"),
        ("--admission-max-lag-ms 1", "admission_max_lag_ms"),
        ("--admission-max-lag-ms -5", "admission_max_lag_ms"),
        ("--admission-max-cpu 1.5", "admission_max_cpu"),
        ("--admission-max-cpu 0", "admission_max_cpu"),
        ("--admission-max-cpu NaN", "admission_max_cpu"),
    ] {
        let err = run(cli, &[], None).unwrap_err().to_string();
        assert!(err.contains(want), "{cli}: {err}");
    }
}

#[test]
fn database_url_from_file_env_and_command_line_with_the_password_hidden() {
    let c = run("", &[], None).unwrap();
    assert_eq!(c.consults.database_url, None, "SQLite by default");

    let socket = "postgres://consult@/consult?host=/run/postgresql";
    let c = run(&format!("--database-url {socket}"), &[], None).unwrap();
    let url = c.consults.database_url.as_ref().unwrap();
    assert_eq!(url.expose(), socket);
    assert!(url.is_local());
    assert!(c.warnings().iter().all(|w| !w.contains("database_url")));

    let with_password = "postgres://consult:pg-pass-0001@10.0.0.7:5432/consult";
    for c in [
        run("", &[("CONSULT_DATABASE_URL", with_password)], None).unwrap(),
        run(
            "--config c.toml",
            &[],
            Some(&format!("[consults]\ndatabase_url = \"{with_password}\"")),
        )
        .unwrap(),
    ] {
        let url = c.consults.database_url.as_ref().unwrap();
        assert_eq!(url.expose(), with_password);
        let summary = format!("{:?}", c.summary());
        let debug = format!("{c:?}");
        for shown in [&summary, &debug, &url.to_string()] {
            assert!(!shown.contains("pg-pass-0001"), "{shown}");
        }
        let get = c
            .summary()
            .into_iter()
            .find(|(k, _)| k == "consults.database_url");
        assert_eq!(
            get.unwrap().1,
            "postgres://consult:(redacted)@10.0.0.7:5432/consult"
        );
        let warnings = c.warnings().join("\n");
        assert!(
            warnings.contains("database_url names a server on another machine"),
            "{warnings}"
        );
    }
    // Empty or `off` in the environment: back to SQLite.
    let c = run(
        &format!("--database-url {socket}"),
        &[("CONSULT_DATABASE_URL", "off")],
        None,
    )
    .unwrap();
    assert!(c.consults.database_url.is_some(), "the command line wins");
    let c = run("", &[("CONSULT_DATABASE_URL", "")], None).unwrap();
    assert_eq!(c.consults.database_url, None);
}

#[test]
fn bad_database_url_is_a_clear_error_without_the_password() {
    let cases = [
        (
            "mysql://u:pg-pass-0001@localhost/db",
            "must be a postgres:// URL",
        ),
        ("postgres://u:pg-pass-0001@/db", "names no server"),
        (
            "postgres://u:pg-pass-0001@localhost:port/db",
            "invalid connection string",
        ),
        (
            "postgres://u:pg-pass-0001@localhost/db?sslmode=require",
            "without TLS",
        ),
    ];
    for (url, want) in cases {
        let err = run("", &[("CONSULT_DATABASE_URL", url)], None)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("env CONSULT_DATABASE_URL: database_url: ") && err.contains(want),
            "{url}: {err}"
        );
        assert!(!err.contains("pg-pass-0001"), "{err}");
    }
    // Other users see the command line (ps): no password there.
    let err = run(
        "--database-url postgres://u:pg-pass-0001@127.0.0.1/db",
        &[],
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("--database-url: a URL with a password is not accepted on the command line"),
        "{err}"
    );
    assert!(!err.contains("pg-pass-0001"), "{err}");
}

#[test]
fn cluster_options_and_a_bad_redis_url_without_the_password() {
    let c = run(
        "--redis-url redis://10.0.0.5:7000/2 --node-id n-2 --advertise-url https://n2.consult.vn/",
        &[],
        None,
    )
    .unwrap();
    let url = c.cluster.redis_url.as_ref().unwrap();
    assert_eq!((url.host.as_str(), url.port, url.db), ("10.0.0.5", 7000, 2));
    assert_eq!(c.cluster.node_id.as_deref(), Some("n-2"));
    assert_eq!(
        c.cluster.advertise_url.as_deref(),
        Some("https://n2.consult.vn")
    );

    for (url, want) in [
        ("http://:rd-pass-0001@h", "must start with redis://"),
        (
            "redis://:rd-pass-0001@h:port",
            "port \"port\" is not a number",
        ),
    ] {
        let err = run("", &[("CONSULT_REDIS_URL", url)], None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("redis_url") && err.contains(want),
            "{url}: {err}"
        );
        assert!(!err.contains("rd-pass-0001"), "{err}");
    }
    let err = run("--redis-url redis://:rd-pass-0001@h", &[], None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not accepted on the command line"), "{err}");
    assert!(!err.contains("rd-pass-0001"), "{err}");
    let with_password = run(
        "",
        &[("CONSULT_REDIS_URL", "redis://:rd-pass-0001@h")],
        None,
    )
    .unwrap();
    let shown = format!("{:?}", with_password.summary());
    assert!(
        !shown.contains("rd-pass-0001") && shown.contains("redis://:***@h:6379/0"),
        "{shown}"
    );
    for bad in ["n 1", "", "n/1", &"n".repeat(65)] {
        assert!(
            run("", &[("CONSULT_NODE_ID", bad)], None).is_err(),
            "{bad:?}"
        );
    }
    assert!(run("--advertise-url ftp://x", &[], None).is_err());
}

//! Settings of what surrounds the SFU: TLS, TURN, drain, admission, the database and the
//! cluster directory; bad values name the field and never print a password.

use super::*;

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

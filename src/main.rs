use anyhow::Context;
use consult_sfu::config::{self, Command};
use consult_sfu::server::{Listeners, ServeOptions, Server};

/// Exit status of a config that does not load or validate (`--check-config` and a start
/// alike), distinct from a runtime failure (1) so systemd need not restart a bad config.
const EXIT_BAD_CONFIG: i32 = 2;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env: Vec<(String, String)> = std::env::vars().collect();
    let loaded = config::load(&args, &env, |p| {
        std::fs::read_to_string(p).map_err(|e| e.to_string())
    });
    let config = match loaded.and_then(check_log_filter).and_then(check_tls) {
        Err(e) => {
            eprintln!("consult-sfu: invalid configuration: {e}");
            std::process::exit(EXIT_BAD_CONFIG);
        }
        Ok(Command::Help) => {
            print!("{}", config::HELP);
            return Ok(());
        }
        Ok(Command::CheckConfig(c)) => {
            print_check(&c);
            return Ok(());
        }
        Ok(Command::Run(c)) => c,
    };
    // Logs go to stderr: stdout carries the ready line scripts wait for.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&config.log)
                .expect("invariant: check_log_filter accepted this filter"),
        )
        .init();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listeners = Listeners::bind(&config).await?;
        let options = ServeOptions::from_config(&config, &listeners);
        let (http, udp) = (listeners.http_addr(), listeners.udp_addr());
        let public_url = options.store.public_url.clone();
        let server = Server::start(listeners, options)
            .await
            .context("starting the server")?;
        #[cfg(unix)]
        tokio::spawn(drain_on_sigusr1(server.drain_handle()));
        // Scripts and tests wait for this line.
        println!("CONSULT_READY http={http} udp={udp}");
        match server.dev_operator_link() {
            Some(link) => {
                println!("No operator configured: the local clinic's operator page is");
                println!("  {link}");
            }
            None => println!("Operator page: {public_url}/operator.html"),
        }
        server.serve(shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// The log filter is parsed by `tracing_subscriber`, not by `config`: checked here so a bad
/// one is a config error (exit 2) for `--check-config` and a start alike.
fn check_log_filter(command: Command) -> Result<Command, config::ConfigError> {
    let log = match &command {
        Command::Run(c) | Command::CheckConfig(c) => &c.log,
        Command::Help => return Ok(command),
    };
    match tracing_subscriber::EnvFilter::try_new(log) {
        Ok(_) => Ok(command),
        Err(e) => Err(config::ConfigError::Value {
            source_name: format!("log filter ({e})"),
            key: "log".into(),
            value: log.clone(),
            expected: "tracing filter (e.g. info or consult_sfu=debug,str0m=info)",
        }),
    }
}

/// The TLS files are read and checked here (a missing, unreadable or broken certificate, a
/// key that does not match it), so `--check-config` reports them and a start with them is a
/// config error (exit 2) before any port is bound.
fn check_tls(command: Command) -> Result<Command, config::ConfigError> {
    let c = match &command {
        Command::Run(c) | Command::CheckConfig(c) => c,
        Command::Help => return Ok(command),
    };
    let invalid = |e: consult_sfu::tls::TlsError| config::ConfigError::Invalid {
        field: "tls".into(),
        message: e.to_string(),
    };
    if let Some(files) =
        consult_sfu::tls::files(c.tls_cert.as_deref(), c.tls_key.as_deref()).map_err(invalid)?
    {
        consult_sfu::tls::load(&files, &rustls::crypto::aws_lc_rs::default_provider())
            .map_err(invalid)?;
    }
    Ok(command)
}

/// `--check-config`: what a start would use, on stdout (secrets redacted), and what looks
/// unintended on stderr. Binds nothing and opens no database, so it is safe beside a
/// running server (e.g. in `ExecStartPre` or before a `systemctl restart`).
fn print_check(config: &config::Config) {
    println!("configuration OK; effective settings:");
    for (key, value) in config.summary() {
        println!("  {key} = {value}");
    }
    let mut warnings = config.warnings();
    if !config.web_root.join("index.html").is_file() {
        warnings.push(format!(
            "web_root {}: no index.html there; browsers would get 404",
            config.web_root.display()
        ));
    }
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

/// SIGUSR1 starts a graceful drain (like `POST /api/v1/admin/drain`), for hosts without
/// an operator key at hand (`systemctl kill -s USR1 consult-sfu`).
#[cfg(unix)]
async fn drain_on_sigusr1(drain: std::sync::Arc<consult_sfu::drain::Drain>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut usr1 = match signal(SignalKind::user_defined1()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("no SIGUSR1 drain: {e}");
            return;
        }
    };
    while usr1.recv().await.is_some() {
        if drain.request() {
            tracing::info!("drain requested (SIGUSR1)");
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("invariant: installing a SIGTERM handler succeeds in a fresh runtime");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

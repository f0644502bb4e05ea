use anyhow::Context;
use consult_sfu::config::{self, Command};
use consult_sfu::server::{Listeners, ServeOptions, Server};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env: Vec<(String, String)> = std::env::vars().collect();
    let config = match config::load(&args, &env, |p| {
        std::fs::read_to_string(p).map_err(|e| e.to_string())
    })? {
        Command::Help => {
            print!("{}", config::HELP);
            return Ok(());
        }
        Command::Run(c) => c,
    };
    // Logs go to stderr: stdout carries the ready line scripts wait for.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&config.log)
                .with_context(|| format!("log filter {:?}", config.log))?,
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

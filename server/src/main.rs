//! The `tandem-server` binary: flags, logging, signals.

use clap::Parser;
use tandem_server::config::Cmd;
use tandem_server::Config;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = Config::parse();
    match config.command {
        Some(Cmd::Migrate) => {
            tandem_server::open_store(&config, None).await?;
        }
        Some(Cmd::Token(ref args)) => {
            let Some(secret) = config.auth_secret.as_deref() else {
                anyhow::bail!("`token` signs with --auth-secret (or TANDEM_AUTH_SECRET): none set");
            };
            let keys = tandem_server::auth::Keys::from_secret(secret.as_bytes());
            println!(
                "{}",
                keys.mint(&args.doc, args.mode, args.name.clone(), args.ttl)
            );
        }
        None => tandem_server::run(config, shutdown_signal()).await?,
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

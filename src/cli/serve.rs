//! `bth-gateway serve`: run the gateway from a working directory.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

use crate::config::{Config, Overrides};

/// Flags of `serve` (they override the config file and the environment).
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Working directory written by `init`.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Config file (default: DIR/bth-gateway.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Listen address (default 127.0.0.1:7443).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Database URL (default sqlite:data/gateway.db).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Log filter (default info).
    #[arg(long)]
    pub log: Option<String>,
}

/// Loads the configuration, opens the database, binds, serves until SIGINT/SIGTERM, drains.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let flags = Overrides { listen: args.listen, database_url: args.database_url, log: args.log };
    crate::cli::require_gateway(&args.dir, args.config.as_deref(), &flags, |k| std::env::var(k).ok())?;
    let config = Config::load(&args.dir, args.config.as_deref(), |k| std::env::var(k).ok(), &flags)?;
    crate::telemetry::init(&config.log);
    let tls = crate::server::read_tls(&config)?;
    let gw = crate::server::gateway(&config).await?;
    let listener =
        tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    if let Some(files) = crate::server::connections::raise_open_file_limit() {
        tracing::info!(files, "open-file limit");
    }
    crate::server::run(listener, gw, &tls, &crate::server::Settings::from(&config), crate::server::termination()).await
}

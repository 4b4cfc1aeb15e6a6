//! `bth-gateway witness init|serve|key`: an independent C2SP tlog-witness (see
//! [`crate::witness`] and docs/witness.md).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};

use crate::witness::{LogConfig, Witness, WitnessConfig, CONFIG_FILE};

/// Witness subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum WitnessCommand {
    /// Create a witness directory: an Ed25519 cosigning key (0600), a development CA and HTTPS
    /// certificate, and `witness.toml` following the logs given. Refuses to overwrite anything.
    Init {
        /// The directory to create or fill.
        dir: PathBuf,
        /// The witness's key name, a schema-less URL such as `witness.example/w1`.
        #[arg(long)]
        name: String,
        /// A log to follow: its verifier key (`bth-gateway audit key`). Repeat for several.
        #[arg(long = "log")]
        logs: Vec<String>,
    },
    /// Serve `POST /add-checkpoint` over HTTPS until SIGINT/SIGTERM.
    Serve {
        /// The witness directory written by `witness init`.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Listen address (overrides `listen` of witness.toml).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Log filter (default info).
        #[arg(long, default_value = "info")]
        log: String,
    },
    /// Print the witness's verifier key (`<name>+<hex id>+<base64(0x04 ‖ key)>`), what the
    /// gateway's `[[witness.witnesses]]` and `audit verify --witness` need.
    Key {
        /// The witness directory.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

/// Runs a witness subcommand.
///
/// # Errors
/// A bad directory, configuration, key or certificate, naming it.
pub async fn run(command: WitnessCommand) -> anyhow::Result<()> {
    match command {
        WitnessCommand::Init { dir, name, logs } => {
            let key = init(&dir, &name, &logs)?;
            println!("witness created in {}", dir.display());
            println!("verifier key: {key}");
            println!("its CA (for the gateway's [[witness.witnesses]] ca): {}", dir.join("certs/ca.pem").display());
            Ok(())
        }
        WitnessCommand::Key { dir } => {
            println!("{}", WitnessConfig::load(&dir)?.cosigner()?.verifier_key());
            Ok(())
        }
        WitnessCommand::Serve { dir, listen, log } => {
            let mut config = WitnessConfig::load(&dir)?;
            if let Some(l) = listen {
                config.listen = l;
            }
            crate::telemetry::init(&log);
            let (witness, tls) = open(&config).await?;
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("binding {}", config.listen))?;
            crate::witness::serve(listener, Arc::new(witness), tls, crate::server::termination()).await
        }
    }
}

/// Opens the witness a configuration describes and its TLS configuration.
///
/// # Errors
/// A bad key, log key, certificate or database.
pub async fn open(config: &WitnessConfig) -> anyhow::Result<(Witness, Arc<rustls::ServerConfig>)> {
    let read = |p: &Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    let tls = crate::witness::tls_config(&read(&config.tls_cert)?, &read(&config.tls_key)?)?;
    let logs = config.log_keys()?;
    if logs.is_empty() {
        tracing::warn!("no [[logs]] in witness.toml: every checkpoint will be refused (404)");
    }
    let witness = Witness::open(config.cosigner()?, logs, &config.database).await?;
    Ok((witness, tls))
}

/// Creates the witness directory; returns the verifier key.
///
/// # Errors
/// An existing configuration or key, a bad name or log key.
pub fn init(dir: &Path, name: &str, logs: &[String]) -> anyhow::Result<String> {
    if dir.join(CONFIG_FILE).exists() {
        bail!("{} exists; refusing to overwrite it", dir.join(CONFIG_FILE).display());
    }
    let mut config = WitnessConfig::new(name);
    config.logs = logs.iter().map(|k| LogConfig { key: k.trim().to_owned(), origin: None }).collect();
    config.log_keys().map_err(|e| anyhow::anyhow!("--log: {e}"))?;
    let seed = crate::translog::note::generate_seed();
    let key = crate::translog::cosignature::Cosigner::from_seed(name, &seed)
        .map_err(|e| anyhow::anyhow!("--name: {e}"))?
        .verifier_key();
    for sub in ["secrets", "certs", "data"] {
        std::fs::create_dir_all(dir.join(sub)).with_context(|| format!("creating {}", dir.join(sub).display()))?;
    }
    crate::pki::write_new(&dir.join(&config.key_file), hex::encode(seed).as_bytes(), 0o600)?;
    let ca = crate::pki::new_ca_named("bth-gateway witness development CA", crate::pki::Validity::from_today(3650))?;
    crate::pki::write_pair(&dir.join("certs"), "ca", &ca)?;
    let server = crate::pki::issue(&ca, name, crate::pki::LeafKind::Server)?;
    crate::pki::write_pair(&dir.join("certs"), "server", &server)?;
    let mut text = format!(
        "# bth-gateway witness (C2SP tlog-witness). Relative paths are resolved against this directory.\n\
         # The cosigner's key name (also in its verifier key: `bth-gateway witness key`).\n\
         name = {name:?}\n\
         # HTTPS only; there is no plaintext listener.\n\
         listen = \"{}\"\n\
         key_file = \"secrets/witness.key\"\n\
         database = \"data/witness.db\"\n\
         tls_cert = \"certs/server.pem\"\n\
         tls_key = \"certs/server.key\"\n\n\
         # The logs it cosigns: each log's verifier key (`bth-gateway audit key`); `origin` defaults\n\
         # to the key's name. A checkpoint of any other origin is refused with 404.\n",
        config.listen
    );
    for log in &config.logs {
        text.push_str(&format!("[[logs]]\nkey = {:?}\n", log.key));
    }
    anyhow::ensure!(
        toml::from_str::<WitnessConfig>(&text).is_ok_and(|c| c.name == config.name && c.logs == config.logs),
        "--name and --log must be plain text"
    );
    crate::pki::write_new(&dir.join(CONFIG_FILE), text.as_bytes(), 0o644)?;
    Ok(key)
}

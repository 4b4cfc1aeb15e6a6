//! The command line: one function per subcommand; `main` only parses and dispatches.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::config::{Config, Overrides, CONFIG_FILE};

pub mod assess;
pub mod audit;
pub mod backup;
pub mod certs;
pub mod demo;
pub mod init;
pub mod participants;
pub mod sdc;
pub mod serve;
pub mod witness;

/// bth-gateway: the data-sharing gateway for government statistical data.
#[derive(Debug, Parser)]
#[command(name = "bth-gateway", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a working directory: development PKI, gateway secret, config file, database with
    /// the `admin` participant. Refuses to overwrite anything.
    Init {
        /// The directory to create or fill.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Run the gateway from a working directory.
    Serve(serve::ServeArgs),
    /// Development certificates.
    Certs {
        /// What to do.
        #[command(subcommand)]
        command: certs::CertsCommand,
    },
    /// Manage participants directly on the database (bootstrap; no server needed).
    Participants {
        /// What to do.
        #[command(subcommand)]
        command: participants::ParticipantsCommand,
    },
    /// Evaluate the rules on a JSON transfer description and print the decision.
    Assess {
        /// The transfer description (docs/assess.md).
        file: PathBuf,
    },
    /// Apply statistical disclosure control to a JSON table description and print every cell
    /// with its status (docs/tables.md).
    Sdc {
        /// The table description: dimensions, records, rules, released cells.
        file: PathBuf,
    },
    /// Copy the embedded database to DEST while the gateway runs or not, and verify the
    /// transfer log in the copy before reporting success (PostgreSQL: use pg_dump).
    Backup {
        /// Where the copy goes; must not exist.
        dest: PathBuf,
        /// Working directory written by `init`.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// The verifiable transfer log: print its verifier key, verify it offline.
    Audit {
        /// What to do.
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// An independent C2SP tlog-witness: its own key and state, `POST /add-checkpoint` over
    /// HTTPS (docs/witness.md).
    Witness {
        /// What to do.
        #[command(subcommand)]
        command: witness::WitnessCommand,
    },
    /// Run the whole story against a real gateway on loopback: publish, grant, masked pull, an
    /// export held until an officer records a security assessment, an offline-verified receipt.
    Demo {
        /// A new working directory for the demo (default: a fresh temporary one, kept).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Runs a parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Init { dir } => init::run(&dir).await.map(|()| 0),
        Command::Serve(args) => serve::run(args).await.map(|()| 0),
        Command::Certs { command } => certs::run(command).map(|()| 0),
        Command::Participants { command } => participants::run(command).await.map(|()| 0),
        Command::Assess { file } => Ok(assess::run(&file)),
        Command::Sdc { file } => Ok(sdc::run(&file)),
        Command::Audit { command } => audit::run(command).await,
        Command::Witness { command } => witness::run(command).await.map(|()| 0),
        Command::Backup { dest, dir } => backup::run(&dir, &dest).await,
        Command::Demo { dir } => {
            let dir = match dir {
                Some(d) => d,
                None => tempfile_dir()?,
            };
            demo::run(&dir).await.map(|()| 0)
        }
    }
}

/// Refuses to go on unless `dir` holds a gateway, so that a command run in the wrong directory
/// says so instead of creating a stray database there.
///
/// A directory holds a gateway when it has the `bth-gateway.toml` that `init` writes. A config
/// file named explicitly (`serve --config FILE`) or a PostgreSQL database named explicitly
/// (`--database-url` in `flags`, or `BTH_DATABASE_URL` in `env`) also counts: the operator has
/// said where the gateway's state is, and nothing is created in `dir`. An explicit SQLite URL
/// does not count: the secrets and certificates it needs still live in `dir`.
///
/// Creates nothing. Every subcommand that needs a working directory calls it before loading the
/// configuration.
///
/// # Errors
/// `no gateway in DIR (no bth-gateway.toml): run `bth-gateway init DIR` first`.
pub fn require_gateway(
    dir: &Path,
    config_file: Option<&Path>,
    flags: &Overrides,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<()> {
    if config_file.is_some() || dir.join(CONFIG_FILE).is_file() {
        return Ok(());
    }
    let url = flags.database_url.clone().or_else(|| env("BTH_DATABASE_URL"));
    if url.is_some_and(|u| u.starts_with("postgres:") || u.starts_with("postgresql:")) {
        return Ok(());
    }
    let shown = dir.display();
    anyhow::bail!("no gateway in {shown} (no {CONFIG_FILE}): run `bth-gateway init {shown}` first")
}

/// The configuration of the working directory `dir` (its file, then `BTH_*`), after
/// [`require_gateway`].
///
/// # Errors
/// Those of [`require_gateway`] and [`Config::load`].
pub fn load_config(dir: &Path) -> anyhow::Result<Config> {
    let env = |k: &str| std::env::var(k).ok();
    let flags = Overrides::default();
    require_gateway(dir, None, &flags, env)?;
    Config::load(dir, None, env, &flags)
}

/// A new directory under the system's temporary directory, kept after the demo.
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let mut suffix = [0u8; 4];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut suffix)
        .map_err(|_| anyhow::anyhow!("system randomness unavailable"))?;
    Ok(std::env::temp_dir().join(format!("bth-gateway-demo-{}", hex::encode(suffix))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_without_a_config_file_is_no_gateway_unless_postgres_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let none = |_: &str| None;
        let err = require_gateway(dir.path(), None, &Overrides::default(), none).unwrap_err().to_string();
        assert!(err.starts_with(&format!("no gateway in {}", dir.path().display())), "{err}");
        assert!(err.contains(&format!("`bth-gateway init {}`", dir.path().display())), "{err}");

        let pg = |k: &str| (k == "BTH_DATABASE_URL").then(|| "postgres://gw@db/gateway".to_owned());
        require_gateway(dir.path(), None, &Overrides::default(), pg).unwrap();
        let flag = Overrides { database_url: Some("postgresql://gw@db/gateway".into()), ..Default::default() };
        require_gateway(dir.path(), None, &flag, none).unwrap();
        let sqlite = Overrides { database_url: Some("sqlite:x.db".into()), ..Default::default() };
        assert!(require_gateway(dir.path(), None, &sqlite, none).is_err());
        require_gateway(dir.path(), Some(Path::new("/etc/bth-gateway.toml")), &Overrides::default(), none).unwrap();

        std::fs::write(dir.path().join(CONFIG_FILE), "").unwrap();
        require_gateway(dir.path(), None, &Overrides::default(), none).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "nothing else created");
    }
}

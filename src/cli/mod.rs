//! The command line: one function per subcommand; `main` only parses and dispatches.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub mod assess;
pub mod audit;
pub mod certs;
pub mod demo;
pub mod init;
pub mod participants;
pub mod serve;

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
        /// The transfer description (spec/assess-input.md).
        file: PathBuf,
    },
    /// The verifiable transfer log: print its verifier key, verify it offline.
    Audit {
        /// What to do.
        #[command(subcommand)]
        command: audit::AuditCommand,
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
        Command::Audit { command } => audit::run(command).await,
        Command::Demo { dir } => {
            let dir = match dir {
                Some(d) => d,
                None => tempfile_dir()?,
            };
            demo::run(&dir).await.map(|()| 0)
        }
    }
}

/// A new directory under the system's temporary directory, kept after the demo.
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let mut suffix = [0u8; 4];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut suffix)
        .map_err(|_| anyhow::anyhow!("system randomness unavailable"))?;
    Ok(std::env::temp_dir().join(format!("bth-gateway-demo-{}", hex::encode(suffix))))
}

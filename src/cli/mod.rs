//! The command line: one function per subcommand; `main` only parses and dispatches.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub mod assess;
pub mod audit;
pub mod certs;
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
    }
}

//! `bth-gateway certs issue ID`: a client certificate for a participant, from the development CA.

use std::path::PathBuf;

use crate::domain::ids::ParticipantId;
use crate::pki::{self, LeafKind};

/// Certificate subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CertsCommand {
    /// Issue a client certificate whose common name is participant ID.
    Issue {
        /// The participant id.
        id: String,
        /// Working directory written by `init`.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Where to write ID.pem and ID.key (default DIR/certs/clients).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Runs a certificate subcommand.
pub fn run(command: CertsCommand) -> anyhow::Result<()> {
    match command {
        CertsCommand::Issue { id, dir, out } => {
            let id = ParticipantId::parse(&id)?;
            // The development CA lives beside the config file `init` writes, whatever the database.
            super::require_gateway(&dir, None, &Default::default(), |_| None)?;
            let certs = dir.join("certs");
            let ca = pki::read_ca(&certs)?;
            let out = out.unwrap_or_else(|| certs.join("clients"));
            std::fs::create_dir_all(&out)?;
            let (cert, key) = pki::write_pair(&out, id.as_str(), &pki::issue(&ca, id.as_str(), LeafKind::Client)?)?;
            println!("certificate: {}", cert.display());
            println!("key (0600):  {}", key.display());
            println!("CA:          {}", certs.join("ca.pem").display());
            println!("register the participant before it calls: bth-gateway participants add {id} ...");
            Ok(())
        }
    }
}

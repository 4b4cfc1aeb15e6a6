//! `bth-gateway participants add|list|suspend`: the registry on the database directly.

use std::path::PathBuf;

use crate::domain::classification::Level;
use crate::domain::ids::ParticipantId;
use crate::domain::participant::{Participant, ParticipantKind, ParticipantStatus, RecipientType, Region, Role};
use crate::service::participants;

/// Participant subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ParticipantsCommand {
    /// Register a participant.
    Add {
        /// Its id (the common name of its certificate).
        id: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// STATE_ORGAN, CIIO or OTHER.
        #[arg(long)]
        kind: ParticipantKind,
        /// GOV_DEPT, STATISTICS_AGENCY, ENTERPRISE, RESEARCH, INTL_ORG, INDIVIDUAL, FOREIGN_JUDICIAL_OR_LE.
        #[arg(long)]
        recipient_type: RecipientType,
        /// Region: CN-TJ, CN-BJ, HK, SG, ...
        #[arg(long)]
        region: Region,
        /// In the Tianjin free-trade zone.
        #[arg(long)]
        ftz: bool,
        /// Comma-separated roles: publisher, consumer, officer, auditor, admin.
        #[arg(long, value_delimiter = ',', required = true)]
        roles: Vec<Role>,
        /// Highest level received unmasked: G1..G4, I, C.
        #[arg(long, default_value = "G2")]
        clearance: Level,
        /// Working directory written by `init`.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// List participants.
    List {
        /// Working directory written by `init`.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Suspend a participant (refused from its next call).
    Suspend {
        /// Its id.
        id: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
        /// Working directory written by `init`.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

async fn gateway(dir: &std::path::Path) -> anyhow::Result<crate::service::Gateway> {
    crate::server::gateway(&super::load_config(dir)?).await
}

/// Runs a participant subcommand.
pub async fn run(command: ParticipantsCommand) -> anyhow::Result<()> {
    match command {
        ParticipantsCommand::Add { id, name, kind, recipient_type, region, ftz, roles, clearance, dir } => {
            let gw = gateway(&dir).await?;
            let p = Participant {
                id: ParticipantId::parse(&id)?,
                display_name: name,
                kind,
                recipient_type,
                region,
                in_tianjin_ftz: ftz,
                roles: roles.into_iter().collect(),
                clearance,
                status: ParticipantStatus::Active,
            };
            let p = participants::register_as(&gw, "local:participants-add", p).await?;
            println!("registered {}", p.id);
        }
        ParticipantsCommand::List { dir } => {
            let gw = gateway(&dir).await?;
            for p in gw.store.participants().await? {
                let roles: Vec<_> = p.roles.iter().map(|r| r.as_str()).collect();
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    p.id,
                    p.kind,
                    p.recipient_type,
                    p.region,
                    roles.join(","),
                    p.clearance,
                    p.status,
                    p.display_name
                );
            }
        }
        ParticipantsCommand::Suspend { id, reason, dir } => {
            let gw = gateway(&dir).await?;
            let id = ParticipantId::parse(&id)?;
            participants::suspend_as(&gw, "local:participants-suspend", &id, &reason).await?;
            println!("suspended {id}");
        }
    }
    Ok(())
}

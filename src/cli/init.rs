//! `bth-gateway init [DIR]`: a working directory the gateway runs from with no further set-up.

use std::path::Path;

use anyhow::{bail, Context};

use crate::config::{Config, Overrides, CONFIG_FILE, TEMPLATE};
use crate::domain::classification::Level;
use crate::domain::ids::ParticipantId;
use crate::domain::participant::{Participant, ParticipantKind, ParticipantStatus, RecipientType, Region, Role};
use crate::pki::{self, LeafKind};

/// The participant id of the admin certificate `init` issues.
pub const ADMIN_ID: &str = "admin";

/// Creates `dir` with `certs/` (CA, server and admin certificates), `secrets/gateway.secret`,
/// `bth-gateway.toml` and the database holding the `admin` participant. Keys and secrets are
/// 0600. Refuses to run when any of these exists.
pub async fn run(dir: &Path) -> anyhow::Result<()> {
    let certs = dir.join("certs");
    let secrets = dir.join("secrets");
    let data = dir.join("data");
    for p in [dir.join(CONFIG_FILE), certs.join("ca.pem"), secrets.join("gateway.secret"), data.join("gateway.db")] {
        if p.exists() {
            bail!("{} exists; refusing to overwrite an initialised directory", p.display());
        }
    }
    std::fs::create_dir_all(&certs).with_context(|| format!("creating {}", certs.display()))?;
    std::fs::create_dir_all(&data)?;
    std::fs::create_dir_all(&secrets)?;
    set_mode(&secrets, 0o700)?;

    let ca = pki::new_ca()?;
    pki::write_pair(&certs, "ca", &ca)?;
    pki::write_pair(&certs, "server", &pki::issue(&ca, "bth-gateway server", LeafKind::Server)?)?;
    pki::write_pair(&certs, "admin", &pki::issue(&ca, ADMIN_ID, LeafKind::Client)?)?;
    std::fs::create_dir_all(certs.join("clients"))?;
    std::fs::write(
        certs.join("README"),
        "Development PKI written by `bth-gateway init`: for development and tests only.\n\
         A deployment uses certificates from its own CA. Never commit the *.key files.\n",
    )?;

    let mut secret = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
        .map_err(|_| anyhow::anyhow!("system randomness unavailable"))?;
    pki::write_new(&secrets.join("gateway.secret"), format!("{}\n", hex::encode(secret)).as_bytes(), 0o600)?;
    let seed = crate::translog::note::generate_seed();
    pki::write_new(&secrets.join("log-signing.key"), format!("{}\n", hex::encode(seed)).as_bytes(), 0o600)?;
    pki::write_new(&dir.join(CONFIG_FILE), TEMPLATE.as_bytes(), 0o644)?;

    let config = Config::load(dir, None, |k| std::env::var(k).ok(), &Overrides::default())?;
    let gw = crate::server::gateway(&config).await?;
    let admin = Participant {
        id: ParticipantId::parse(ADMIN_ID)?,
        display_name: "Gateway administrator".into(),
        kind: ParticipantKind::StateOrgan,
        recipient_type: RecipientType::GovDept,
        region: Region::parse("CN-TJ")?,
        in_tianjin_ftz: false,
        roles: [Role::Admin].into_iter().collect(),
        clearance: Level::G1,
        status: ParticipantStatus::Active,
    };
    crate::service::participants::register_as(&gw, "local:init", admin).await?;
    println!("initialised {}", dir.display());
    println!("  config:      {}", dir.join(CONFIG_FILE).display());
    println!("  CA:          {}", certs.join("ca.pem").display());
    println!("  admin cert:  {} / admin.key", certs.join("admin.pem").display());
    println!("  database:    {}", config.database_url);
    println!("  log key:     {}", gw.log.verifier_key());
    println!("run it with:   bth-gateway serve --dir {}", dir.display());
    Ok(())
}

fn set_mode(p: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).with_context(|| format!("chmod {}", p.display()))
}

//! `bth-gateway backup DEST`: a consistent copy of the embedded database, its transfer log
//! verified in the copy before success is reported.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};

use super::load_config;
use crate::store::sqlite::SqliteStore;

/// Copies the working directory's SQLite database to `dest` (which must not exist) while the
/// gateway runs or not — one consistent snapshot, WAL included (`VACUUM INTO`) — readable by its
/// owner only, then verifies the whole transfer log in the copy. Returns the exit code: 0 when
/// the copy verified, 1 when it did not (the copy is removed).
///
/// # Errors
/// A PostgreSQL database (back it up with `pg_dump`), an existing `dest`, a database that cannot
/// be read or a copy that cannot be written.
pub async fn run(dir: &Path, dest: &Path) -> anyhow::Result<i32> {
    let config = load_config(dir)?;
    if !config.database_url.starts_with("sqlite:") {
        bail!(
            "the database is PostgreSQL: back it up with pg_dump (e.g. `pg_dump --format=custom --file=gateway.dump DBNAME`); \
             after a restore, check it with `bth-gateway audit verify --dir DIR` (the config naming the restored database)"
        );
    }
    if dest.exists() {
        bail!("{} exists: a backup never overwrites", dest.display());
    }
    let dest = absolute(dest)?;
    let store = SqliteStore::open_read_only(&config.database_url)
        .await
        .with_context(|| format!("opening {}", config.database_url))?;
    store.backup_into(&dest).await.with_context(|| format!("writing {}", dest.display()))?;
    store.close().await;
    restrict(&dest)?;
    let copy = SqliteStore::open_read_only(&format!("sqlite:{}", dest.display())).await?;
    let verified = super::audit::verify_store(Arc::new(copy.clone()), config.log_signer()?.verifier()).await;
    copy.close().await;
    match verified? {
        Ok(report) => {
            let size = report.latest.as_ref().map_or(0, |(c, _)| c.size);
            println!(
                "ok: {} written; its log verified: {} leaves, {} signed checkpoints, latest tree size {size}",
                dest.display(),
                report.leaves,
                report.checkpoints
            );
            Ok(0)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&dest);
            eprintln!("backup FAILED: the copy's log does not verify ({e}); nothing was kept");
            Ok(1)
        }
    }
}

/// `path` made absolute against the current directory (SQLite resolves it once, here).
fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir()?.join(path) })
}

/// Makes `path` readable and writable by its owner only: a backup holds everything the gateway
/// holds.
fn restrict(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))
}

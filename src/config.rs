//! Configuration: the working directory's `bth-gateway.toml`, then `BTH_*` environment
//! variables, then command-line flags (each overriding the one before).
//!
//! # Defaults
//!
//! | setting | default | environment |
//! |---|---|---|
//! | `listen` | `127.0.0.1:7443` (loopback only) | `BTH_LISTEN` |
//! | `database_url` | `sqlite:data/gateway.db` | `BTH_DATABASE_URL` |
//! | `database_pool` | `16` (PostgreSQL connections per process) | `BTH_DATABASE_POOL` |
//! | `tls_cert` | `certs/server.pem` | `BTH_TLS_CERT` |
//! | `tls_key` | `certs/server.key` | `BTH_TLS_KEY` |
//! | `client_ca` | `certs/ca.pem` | `BTH_CLIENT_CA` |
//! | `secret_file` | `secrets/gateway.secret` | `BTH_SECRET_FILE` |
//! | `log_key_file` | `secrets/log-signing.key` | `BTH_LOG_KEY_FILE` |
//! | `log_origin` | `bth-gateway.tianjin/transfer-log/v1` | `BTH_LOG_ORIGIN` |
//! | `max_message_bytes` | `4194304` (4 MiB) | `BTH_MAX_MESSAGE_BYTES` |
//! | `cache_mib` | `512` | `BTH_CACHE_MIB` |
//! | `prepare_extracts` | `true` | `BTH_PREPARE_EXTRACTS` |
//! | `max_pulls_per_participant` | `4` (pulls streaming at once per participant) | `BTH_MAX_PULLS_PER_PARTICIPANT` |
//! | `chunk_kib` | `256` (a stored chunk, one delivered batch, is planned from the schema to about this size, at most 8 192 rows) | `BTH_CHUNK_KIB` |
//! | `stale_upload_secs` | `3600` (staged uploads older than this are purged) | `BTH_STALE_UPLOAD_SECS` |
//! | `maintenance_secs` | `60` (how often uploads are purged and cut transfers reconciled) | `BTH_MAINTENANCE_SECS` |
//! | `log` | `info` | `BTH_LOG` |
//! | `[network]` | see [`NetworkConfig`] | — |
//! | `[policy]` | the values of docs/rules.md (see [`crate::policy::PolicyConfig`]) | — |
//! | `[witness]` | no witnesses (see [`crate::log::witnesses::WitnessSettings`], docs/witness.md) | — |
//!
//! Relative paths (and the path of a relative `sqlite:` URL) are resolved against the working
//! directory (`--dir`, default `.`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// The configuration file's name inside the working directory.
pub const CONFIG_FILE: &str = "bth-gateway.toml";

/// The gateway's settings. See the module documentation for defaults.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the TLS gRPC listener binds.
    pub listen: SocketAddr,
    /// `sqlite:PATH` (embedded default).
    pub database_url: String,
    /// Connections to PostgreSQL per gateway process (SQLite keeps its own small pool).
    pub database_pool: u32,
    /// Server certificate chain, PEM.
    pub tls_cert: PathBuf,
    /// Server private key, PEM.
    pub tls_key: PathBuf,
    /// CA that client certificates must chain to, PEM.
    pub client_ca: PathBuf,
    /// 32 random bytes (hex) from which the gateway derives its keys (masks, counting).
    pub secret_file: PathBuf,
    /// The transfer log's Ed25519 signing seed (64 hex digits, 0600).
    pub log_key_file: PathBuf,
    /// The log's origin line and signing key name (no spaces, no `+`).
    pub log_origin: String,
    /// Largest gRPC message accepted; larger ones get `RESOURCE_EXHAUSTED`.
    pub max_message_bytes: usize,
    /// MiB of memory for verified chunks of recently pulled versions and prepared extracts.
    pub cache_mib: usize,
    /// Prepare each consumer's masked extract when its grant is approved or a version published.
    pub prepare_extracts: bool,
    /// Pulls one participant may have streaming at once; one more is `RESOURCE_EXHAUSTED`.
    pub max_pulls_per_participant: usize,
    /// KiB of one stored chunk (one delivered batch), planned from the dataset's schema; a slow
    /// pull holds a few chunks. Changing it changes how later versions are cut (a publish retried
    /// across the change is a different version's content).
    pub chunk_kib: usize,
    /// Staged uploads (of publishes that never finished) older than this are purged.
    pub stale_upload_secs: u64,
    /// How often stale uploads are purged and transfers cut by a crash get their completion.
    pub maintenance_secs: u64,
    /// `tracing` filter, e.g. `info` or `bth_gateway=debug`.
    pub log: String,
    /// `[network]`: what clients may hold of the listener.
    pub network: NetworkConfig,
    /// `[policy]`: thresholds, windows and validity periods of the rules (docs/rules.md), the spec's
    /// values by default.
    pub policy: crate::policy::PolicyConfig,
    /// `[witness]`: C2SP tlog-witnesses fed with the log's checkpoints and the policy over their
    /// cosignatures (docs/witness.md). None by default.
    pub witness: crate::log::witnesses::WitnessSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7443)),
            database_url: "sqlite:data/gateway.db".into(),
            database_pool: crate::store::postgres::DEFAULT_POOL,
            tls_cert: "certs/server.pem".into(),
            tls_key: "certs/server.key".into(),
            client_ca: "certs/ca.pem".into(),
            secret_file: "secrets/gateway.secret".into(),
            log_key_file: "secrets/log-signing.key".into(),
            log_origin: "bth-gateway.tianjin/transfer-log/v1".into(),
            max_message_bytes: 4 * 1024 * 1024,
            cache_mib: 512,
            prepare_extracts: true,
            max_pulls_per_participant: 4,
            chunk_kib: 256,
            stale_upload_secs: 3600,
            maintenance_secs: 60,
            log: "info".into(),
            network: NetworkConfig::default(),
            policy: crate::policy::PolicyConfig::default(),
            witness: crate::log::witnesses::WitnessSettings::default(),
        }
    }
}

/// `[network]`: what one client can hold of the listener. Every value is a cap: past it, the
/// gateway refuses or closes rather than waits.
///
/// # Defaults
///
/// | setting | default |
/// |---|---|
/// | `handshake_timeout_secs` | `10`: a socket that has not completed its TLS handshake by then is closed |
/// | `max_pending_handshakes` | `256`: sockets in their handshake at once; a new one evicts the oldest |
/// | `max_connections` | `1024`: authenticated connections at once (more are closed after the handshake) |
/// | `max_connections_per_participant` | `16`: per client certificate subject (more get `RESOURCE_EXHAUSTED`) |
/// | `max_streams_per_connection` | `64`: concurrent calls on one HTTP/2 connection |
/// | `keepalive_interval_secs` | `30`: HTTP/2 PING to a quiet client after this long |
/// | `keepalive_timeout_secs` | `20`: a PING unanswered this long closes the connection |
/// | `idle_timeout_secs` | `300`: a connection with no call in flight this long is closed |
///
/// At start the process's open-file soft limit is raised to its hard limit; keep
/// `max_connections + max_pending_handshakes` well below it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Seconds a socket has to complete its TLS handshake.
    pub handshake_timeout_secs: u64,
    /// Sockets in their handshake at once.
    pub max_pending_handshakes: usize,
    /// Authenticated connections at once.
    pub max_connections: usize,
    /// Authenticated connections per certificate subject.
    pub max_connections_per_participant: usize,
    /// Concurrent streams per connection.
    pub max_streams_per_connection: u32,
    /// Seconds of quiet before an HTTP/2 keep-alive PING.
    pub keepalive_interval_secs: u64,
    /// Seconds a PING may stay unanswered.
    pub keepalive_timeout_secs: u64,
    /// Seconds without a call in flight before a connection is closed.
    pub idle_timeout_secs: u64,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            handshake_timeout_secs: 10,
            max_pending_handshakes: 256,
            max_connections: 1024,
            max_connections_per_participant: 16,
            max_streams_per_connection: 64,
            keepalive_interval_secs: 30,
            keepalive_timeout_secs: 20,
            idle_timeout_secs: 300,
        }
    }
}

/// Settings given as flags; `None` leaves the file or environment value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--database-url`.
    pub database_url: Option<String>,
    /// `--log`.
    pub log: Option<String>,
}

impl Config {
    /// Loads the layers in order — the defaults, `dir/bth-gateway.toml` (or `file`), `BTH_*`
    /// from `env`, then `flags` — and resolves relative paths against `dir`.
    ///
    /// Every top-level setting that is not a section (`[network]`, `[policy]`) can be set from
    /// the environment as `BTH_` and its name in upper case, read as the setting's type.
    ///
    /// # Errors
    /// An unreadable or malformed file (naming the key), a malformed environment value (naming
    /// the variable), a missing file when `file` was given explicitly.
    pub fn load(
        dir: &Path,
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        flags: &Overrides,
    ) -> anyhow::Result<Config> {
        let path = file.map_or_else(|| dir.join(CONFIG_FILE), Path::to_path_buf);
        let mut layers: toml::Table = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).with_context(|| format!("in {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && file.is_none() => toml::Table::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        for (key, value) in environment(env)? {
            layers.insert(key, value);
        }
        let mut config: Config = layers.try_into().with_context(|| format!("in {}", path.display()))?;
        if let Some(l) = flags.listen {
            config.listen = l;
        }
        if let Some(u) = &flags.database_url {
            config.database_url = u.clone();
        }
        if let Some(l) = &flags.log {
            config.log = l.clone();
        }
        config.resolve(dir);
        Ok(config)
    }

    fn resolve(&mut self, dir: &Path) {
        for w in &mut self.witness.witnesses {
            if w.ca.is_relative() {
                w.ca = dir.join(&w.ca);
            }
        }
        for p in
            [&mut self.tls_cert, &mut self.tls_key, &mut self.client_ca, &mut self.secret_file, &mut self.log_key_file]
        {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
        if let Some(rest) = self.database_url.strip_prefix("sqlite:") {
            let rest = rest.trim_start_matches("//");
            let (path, query) = rest.split_once('?').map_or((rest, None), |(p, q)| (p, Some(q)));
            if !path.is_empty() && !path.starts_with(':') && Path::new(path).is_relative() {
                let abs = dir.join(path);
                self.database_url = match query {
                    Some(q) => format!("sqlite:{}?{q}", abs.display()),
                    None => format!("sqlite:{}", abs.display()),
                };
            }
        }
    }

    /// The use cases' limits this configuration sets.
    pub fn limits(&self) -> crate::service::Limits {
        crate::service::Limits {
            cache_bytes: self.cache_mib.saturating_mul(1 << 20),
            prepare_extracts: self.prepare_extracts,
            max_pulls_per_participant: self.max_pulls_per_participant.max(1),
            chunk_bytes: self.chunk_kib.max(1).saturating_mul(1024),
            ..crate::service::Limits::default()
        }
    }

    /// Reads the gateway secret (64 hex digits).
    ///
    /// # Errors
    /// A missing or malformed file, or one readable by others than its owner.
    pub fn read_secret(&self) -> anyhow::Result<[u8; 32]> {
        read_secret_file(&self.secret_file)
    }

    /// The transfer log's signer.
    ///
    /// # Errors
    /// As [`Config::read_secret`], or an origin that is not a valid key name.
    pub fn log_signer(&self) -> anyhow::Result<crate::translog::note::Signer> {
        let seed = read_secret_file(&self.log_key_file)?;
        crate::translog::note::Signer::from_seed(&self.log_origin, &seed)
            .map_err(|e| anyhow::anyhow!("log_origin: {e}"))
    }
}

/// The settings `BTH_*` variables in `env` set: for each top-level setting that is not a section,
/// `BTH_<NAME>` read as the type of the setting's default, each checked on its own so that an
/// error names the variable.
fn environment(env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Vec<(String, toml::Value)>> {
    let defaults = toml::Table::try_from(Config::default()).context("the default configuration")?;
    let mut set = Vec::new();
    for (key, default) in defaults {
        let var = format!("BTH_{}", key.to_uppercase());
        let Some(text) = env(&var) else { continue };
        let value = match default {
            toml::Value::String(_) => toml::Value::String(text),
            toml::Value::Integer(_) => {
                toml::Value::Integer(text.trim().parse().map_err(|e| anyhow::anyhow!("{var}: {e}"))?)
            }
            toml::Value::Boolean(_) => {
                toml::Value::Boolean(text.trim().parse().map_err(|e| anyhow::anyhow!("{var}: {e}"))?)
            }
            // Sections and lists are set in the file only.
            _ => continue,
        };
        let alone = toml::Table::from_iter([(key.clone(), value.clone())]);
        Config::deserialize(alone).map_err(|e| anyhow::anyhow!("{var}: {}", e.message()))?;
        set.push((key, value));
    }
    Ok(set)
}

/// Reads 32 secret bytes written as 64 hex digits in a file only its owner may read.
pub(crate) fn read_secret_file(path: &Path) -> anyhow::Result<[u8; 32]> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!("{} must be readable by its owner only (chmod 600)", path.display());
    }
    let text = std::fs::read_to_string(path)?;
    let bytes = hex::decode(text.trim()).with_context(|| format!("{} is not hex", path.display()))?;
    bytes.try_into().map_err(|_| anyhow::anyhow!("{} must hold 32 bytes (64 hex digits)", path.display()))
}

/// The commented configuration file `init` writes.
pub const TEMPLATE: &str = r#"# bth-gateway configuration.
#
# Precedence: this file, then BTH_* environment variables (BTH_LISTEN, BTH_DATABASE_URL, ...),
# then `bth-gateway serve` flags. Relative paths are resolved against this file's directory.

# Address of the TLS gRPC listener (mutual TLS; there is no plaintext listener).
# Default: loopback only. Use 0.0.0.0:7443 to accept other hosts.
listen = "127.0.0.1:7443"

# Database. Default: the embedded SQLite file below (created and migrated on first start).
database_url = "sqlite:data/gateway.db"

# Connections to PostgreSQL per gateway process (ignored for SQLite). Default: 16. Keep the sum
# over all replicas below the server's max_connections.
database_pool = 16

# Server certificate and key, and the CA that client certificates must chain to.
tls_cert = "certs/server.pem"
tls_key = "certs/server.key"
client_ca = "certs/ca.pem"

# The gateway secret (0600): keys for HASH masks and person counting derive from it.
secret_file = "secrets/gateway.secret"

# The transfer log's Ed25519 signing seed (0600) and its name, which is also the origin line of
# every checkpoint. `bth-gateway audit key` prints the verifier key auditors need.
log_key_file = "secrets/log-signing.key"
log_origin = "bth-gateway.tianjin/transfer-log/v1"

# Largest gRPC message accepted, in bytes; larger ones get RESOURCE_EXHAUSTED. Default 4 MiB.
max_message_bytes = 4194304

# Memory, in MiB, for verified chunks of recently pulled versions and for prepared extracts (what
# one consumer receives of a version, already masked). An entry larger than half of it is never
# kept. Default: 512.
cache_mib = 512

# Prepare each consumer's masked extract in the background when its grant is approved or a new
# version is published, so that its pull sends chunks already masked. Nothing is sent or counted
# while preparing. Default: true.
prepare_extracts = true

# Pulls one participant may have streaming at once; one more answers RESOURCE_EXHAUSTED.
# Default: 4.
max_pulls_per_participant = 4

# Size, in KiB, of a stored chunk (one delivered batch, at most 8 192 rows), planned from the
# dataset's schema: a pull to a slow recipient holds about three chunks in memory. Default: 256.
chunk_kib = 256

# Staged uploads of publishes that never finished (a crash, a cut stream) older than this many
# seconds are purged; every `maintenance_secs` the gateway also gives transfers cut by a crash
# their completion record (INTERRUPTED). Defaults: 3600 and 60.
stale_upload_secs = 3600
maintenance_secs = 60

# Log filter (tracing EnvFilter syntax). Default: info.
log = "info"

# What clients may hold of the listener. Past each cap the gateway refuses or closes.
[network]
handshake_timeout_secs = 10         # a socket must complete its TLS handshake within this
max_pending_handshakes = 256        # sockets in their handshake at once; a new one evicts the oldest
max_connections = 1024              # authenticated connections at once
max_connections_per_participant = 16  # per client certificate; more get RESOURCE_EXHAUSTED
max_streams_per_connection = 64     # concurrent calls on one HTTP/2 connection
keepalive_interval_secs = 30        # HTTP/2 PING after this much quiet ...
keepalive_timeout_secs = 20         # ... and close when it is not answered in time
idle_timeout_secs = 300             # close a connection with no call in flight this long

# Thresholds, windows and validity periods of the export rules (docs/rules.md §3). The defaults are
# the spec's; change them only when the law changes.
[policy]
scc_nonsensitive = 100000                       # C2 from this many non-sensitive persons
security_assessment_nonsensitive = 1000000      # A4
security_assessment_sensitive = 10000           # A3
cn2022_security_assessment_nonsensitive = 100000
cn2022_security_assessment_sensitive = 10000
cn2024_window_years_back = 0                    # counting window: since 1 January of this year
cn2022_window_years_back = 1                    # ... of the previous year
security_assessment_years = 3                   # CAC_SA without expiry, issued on/after the cutoff
security_assessment_years_before_cutoff = 2
security_assessment_cutoff = "2024-03-22"
# Maker-checker: approvals of these types apply only once a second officer has confirmed them
# (Oversight.ConfirmApproval), e.g. ["CAC_SA", "COMPETENT_AUTHORITY"]. Default: none.
confirmed_approvals = []

# C2SP tlog-witnesses fed with every checkpoint (docs/witness.md). Without witnesses the gateway
# behaves as without this section. With them, pulls and tables answer UNAVAILABLE (fail_closed)
# or only log a warning (warn) once the oldest checkpoint not cosigned by `quorum` witnesses
# (0: all) has waited more than max_unwitnessed_secs.
[witness]
quorum = 0
max_unwitnessed_secs = 300
mode = "fail_closed"
retry_secs = 10
timeout_secs = 10
# [[witness.witnesses]]
# url = "https://witness.example:7480"
# key = "witness.example/w1+<hex id>+<base64 key>"   # `bth-gateway witness key`
# ca = "certs/witness-ca.pem"                        # the CA of the witness's HTTPS certificate
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_is_the_defaults() {
        let parsed: Config = toml::from_str(TEMPLATE).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn environment_overrides_file_and_flags_override_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), "listen = \"127.0.0.1:1\"\nlog = \"warn\"\n").unwrap();
        let env = |k: &str| match k {
            "BTH_LISTEN" => Some("127.0.0.1:2".to_owned()),
            "BTH_LOG" => Some("debug".to_owned()),
            _ => None,
        };
        let flags = Overrides { log: Some("trace".into()), ..Default::default() };
        let c = Config::load(dir.path(), None, env, &flags).unwrap();
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.log, "trace");
        assert_eq!(c.tls_cert, dir.path().join("certs/server.pem"));
        assert_eq!(c.database_url, format!("sqlite:{}", dir.path().join("data/gateway.db").display()));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), "lisen = \"x\"\n").unwrap();
        let err = Config::load(dir.path(), None, |_| None, &Overrides::default()).unwrap_err();
        assert!(format!("{err:#}").contains("lisen"), "{err:#}");
        std::fs::remove_file(dir.path().join(CONFIG_FILE)).unwrap();
        let err = Config::load(dir.path(), None, |k| (k == "BTH_LISTEN").then(|| "nope".into()), &Overrides::default())
            .unwrap_err();
        assert!(err.to_string().contains("BTH_LISTEN"), "{err}");
        let err =
            Config::load(dir.path(), None, |k| (k == "BTH_CACHE_MIB").then(|| "-1".into()), &Overrides::default())
                .unwrap_err();
        assert!(err.to_string().contains("BTH_CACHE_MIB"), "{err}");
    }

    #[test]
    fn every_top_level_setting_reads_its_environment_variable() {
        let dir = tempfile::tempdir().unwrap();
        let env = |k: &str| match k {
            "BTH_DATABASE_POOL" => Some("3".to_owned()),
            "BTH_PREPARE_EXTRACTS" => Some("false".to_owned()),
            "BTH_LOG_ORIGIN" => Some("example.org/log".to_owned()),
            "BTH_MAINTENANCE_SECS" => Some("7".to_owned()),
            "BTH_NETWORK" => Some("ignored: a section".to_owned()),
            _ => None,
        };
        let c = Config::load(dir.path(), None, env, &Overrides::default()).unwrap();
        assert_eq!((c.database_pool, c.prepare_extracts, c.maintenance_secs), (3, false, 7));
        assert_eq!(c.log_origin, "example.org/log");
        assert_eq!(c.network, NetworkConfig::default());
    }
}

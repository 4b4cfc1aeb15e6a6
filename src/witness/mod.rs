//! `bth-gateway witness`: an independent C2SP tlog-witness. It holds its own Ed25519 cosigning
//! key and its own SQLite state (the latest checkpoint it cosigned per log), and answers
//! `POST /add-checkpoint` over HTTPS only.
//!
//! The checks are [`crate::translog::witness::check`]; here the origin is looked up (404), the
//! state read, and the new checkpoint recorded with compare-and-swap — committed before the
//! cosignature is made and sent. Of two requests racing from the same old size, exactly one
//! wins; the other gets 409 with the winner's size.
//!
//! # Configuration (`witness.toml` in the witness's directory)
//!
//! | setting | default |
//! |---|---|
//! | `name` | required: the cosigner's key name, e.g. `witness.example/w1` |
//! | `listen` | `127.0.0.1:7480` |
//! | `key_file` | `secrets/witness.key` (64 hex digits, 0600) |
//! | `database` | `data/witness.db` |
//! | `tls_cert`, `tls_key` | `certs/server.pem`, `certs/server.key` |
//! | `[[logs]]` | none: every checkpoint is 404 until a log's `key` (its verifier key) is listed; `origin` defaults to the key's name |

pub mod client;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use tokio_util::sync::CancellationToken;

use crate::translog::cosignature::Cosigner;
use crate::translog::note::{Checkpoint, Verifier};
use crate::translog::witness::{check, parse_add_checkpoint, Latest, Refusal, SIZE_CONTENT_TYPE};

/// The witness's configuration file inside its directory.
pub const CONFIG_FILE: &str = "witness.toml";
/// The one path of the submission API.
pub const ADD_CHECKPOINT: &str = "/add-checkpoint";
/// Largest request body accepted (63 proof lines and a note with many signatures fit easily).
const MAX_BODY: usize = 64 * 1024;
/// A client has this long to complete its TLS handshake and send its request head.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A log the witness follows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// The log's verifier key (`<name>+<hex id>+<base64(0x01 ‖ key)>`).
    pub key: String,
    /// The checkpoints' origin line; default: the key's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// The witness's settings. See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// The cosigner's key name.
    pub name: String,
    /// Address of the HTTPS listener.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The Ed25519 seed (64 hex digits, readable by its owner only).
    #[serde(default = "default_key_file")]
    pub key_file: PathBuf,
    /// The SQLite file of the witness's state.
    #[serde(default = "default_database")]
    pub database: PathBuf,
    /// Server certificate chain, PEM.
    #[serde(default = "default_tls_cert")]
    pub tls_cert: PathBuf,
    /// Server private key, PEM.
    #[serde(default = "default_tls_key")]
    pub tls_key: PathBuf,
    /// The logs whose checkpoints it cosigns.
    #[serde(default)]
    pub logs: Vec<LogConfig>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7480))
}
fn default_key_file() -> PathBuf {
    "secrets/witness.key".into()
}
fn default_database() -> PathBuf {
    "data/witness.db".into()
}
fn default_tls_cert() -> PathBuf {
    "certs/server.pem".into()
}
fn default_tls_key() -> PathBuf {
    "certs/server.key".into()
}

impl WitnessConfig {
    /// A configuration with the defaults and `name`.
    pub fn new(name: &str) -> WitnessConfig {
        WitnessConfig {
            name: name.to_owned(),
            listen: default_listen(),
            key_file: default_key_file(),
            database: default_database(),
            tls_cert: default_tls_cert(),
            tls_key: default_tls_key(),
            logs: Vec::new(),
        }
    }

    /// Reads `dir/witness.toml` and resolves relative paths against `dir`.
    ///
    /// # Errors
    /// A missing or malformed file, naming the key.
    pub fn load(dir: &Path) -> anyhow::Result<WitnessConfig> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} (create it with `bth-gateway witness init`)", path.display()))?;
        let mut config: WitnessConfig = toml::from_str(&text).with_context(|| format!("in {}", path.display()))?;
        for p in [&mut config.key_file, &mut config.database, &mut config.tls_cert, &mut config.tls_key] {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
        Ok(config)
    }

    /// The cosigner of `name` with the key of `key_file`.
    ///
    /// # Errors
    /// A missing, malformed or group/world-readable key file; an invalid name.
    pub fn cosigner(&self) -> anyhow::Result<Cosigner> {
        let seed = crate::config::read_secret_file(&self.key_file)?;
        Cosigner::from_seed(&self.name, &seed).map_err(|e| anyhow::anyhow!("name: {e}"))
    }

    /// The logs by origin, each with its keys.
    ///
    /// # Errors
    /// A key that does not parse, naming its position in `logs`.
    pub fn log_keys(&self) -> anyhow::Result<HashMap<String, Vec<Verifier>>> {
        let mut logs: HashMap<String, Vec<Verifier>> = HashMap::new();
        for (i, log) in self.logs.iter().enumerate() {
            let key = Verifier::new(log.key.trim()).map_err(|e| anyhow::anyhow!("logs[{i}].key: {e}"))?;
            let origin = log.origin.clone().unwrap_or_else(|| key.name().to_owned());
            if origin.is_empty() || origin.chars().any(char::is_control) {
                bail!("logs[{i}].origin must be non-empty without control characters");
            }
            logs.entry(origin).or_default().push(key);
        }
        Ok(logs)
    }
}

/// The witness: its key, the logs it follows, its state.
pub struct Witness {
    cosigner: Cosigner,
    logs: HashMap<String, Vec<Verifier>>,
    db: SqlitePool,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness").field("cosigner", &self.cosigner).field("logs", &self.logs.len()).finish()
    }
}

/// Why `add-checkpoint` gets no cosignature.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    /// A refusal of the protocol, with its status.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The state could not be read or written (500; nothing was cosigned).
    #[error("the witness's state: {0}")]
    State(#[from] sqlx::Error),
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log_state (
    origin     TEXT PRIMARY KEY NOT NULL,
    size       INTEGER NOT NULL CHECK (size >= 0),
    root       BLOB NOT NULL CHECK (length(root) = 32),
    note       TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS evidence (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    origin      TEXT NOT NULL,
    status      INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    request     TEXT NOT NULL,
    received_at INTEGER NOT NULL
) STRICT;
";

fn now_secs() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0)
}

impl Witness {
    /// Opens (creating it the first time) the state database at `database`.
    ///
    /// # Errors
    /// The database cannot be opened or its schema created.
    pub async fn open(
        cosigner: Cosigner,
        logs: HashMap<String, Vec<Verifier>>,
        database: &Path,
    ) -> anyhow::Result<Witness> {
        if let Some(parent) = database.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(database)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // The answer promises the state is on disk.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let db = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .with_context(|| format!("opening {}", database.display()))?;
        sqlx::raw_sql(SCHEMA).execute(&db).await.context("creating the witness's tables")?;
        Ok(Witness { cosigner, logs, db })
    }

    /// The witness's verifier key (`<name>+<hex id>+<base64(0x04 ‖ key)>`).
    pub fn verifier_key(&self) -> String {
        self.cosigner.verifier_key()
    }

    /// The latest checkpoint cosigned for `origin` (`None`: never).
    ///
    /// # Errors
    /// The state cannot be read.
    pub async fn latest(&self, origin: &str) -> Result<Option<Latest>, sqlx::Error> {
        let row = sqlx::query("SELECT size, root FROM log_state WHERE origin = $1")
            .bind(origin)
            .fetch_optional(&self.db)
            .await?;
        row.map(|r| {
            let size: i64 = r.try_get(0)?;
            let root: Vec<u8> = r.try_get(1)?;
            let root = root.try_into().map_err(|_| sqlx::Error::Decode("root is not 32 bytes".into()))?;
            Ok(Latest { size: size as u64, root })
        })
        .transpose()
    }

    /// Records `checkpoint` if the state of `origin` is still `seen`: whether it was.
    async fn compare_and_swap(
        &self,
        origin: &str,
        seen: Option<&Latest>,
        checkpoint: &Checkpoint,
        note: &str,
    ) -> Result<bool, sqlx::Error> {
        let size = i64::try_from(checkpoint.size).map_err(|_| sqlx::Error::Decode("size above 2^63".into()))?;
        let now = now_secs() as i64;
        let done = match seen {
            None => {
                sqlx::query(
                    "INSERT INTO log_state (origin, size, root, note, updated_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (origin) DO NOTHING",
                )
                .bind(origin)
                .bind(size)
                .bind(&checkpoint.root[..])
                .bind(note)
                .bind(now)
                .execute(&self.db)
                .await?
            }
            Some(seen) => {
                sqlx::query(
                    "UPDATE log_state SET size = $1, root = $2, note = $3, updated_at = $4 \
                     WHERE origin = $5 AND size = $6 AND root = $7",
                )
                .bind(size)
                .bind(&checkpoint.root[..])
                .bind(note)
                .bind(now)
                .bind(origin)
                .bind(seen.size as i64)
                .bind(&seen.root[..])
                .execute(&self.db)
                .await?
            }
        };
        Ok(done.rows_affected() == 1)
    }

    async fn keep_evidence(&self, origin: &str, refusal: &Refusal, request: &str) {
        tracing::warn!(origin, status = refusal.status(), reason = %refusal, "checkpoint refused: possible log misbehaviour");
        let stored = sqlx::query(
            "INSERT INTO evidence (origin, status, reason, request, received_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(origin)
        .bind(i64::from(refusal.status()))
        .bind(refusal.to_string())
        .bind(request)
        .bind(now_secs() as i64)
        .execute(&self.db)
        .await;
        if let Err(e) = stored {
            tracing::error!(error = %e, "cannot keep the refused checkpoint as evidence");
        }
    }

    /// The `add-checkpoint` operation on a request body: the cosignature line(s) to answer
    /// with, after the new checkpoint is recorded.
    ///
    /// # Errors
    /// [`AddError::Refused`] with the spec's status; [`AddError::State`] when the state cannot
    /// be read or written.
    pub async fn add_checkpoint(&self, body: &str) -> Result<String, AddError> {
        let request = parse_add_checkpoint(body)?;
        let origin = request.origin();
        let keys = self.logs.get(&origin).ok_or_else(|| Refusal::UnknownLog(origin.clone()))?;
        let seen = self.latest(&origin).await?;
        let checkpoint = match check(&request, keys, &seen.unwrap_or_else(Latest::none)) {
            Ok(c) => c,
            Err(refusal) => {
                // A signed checkpoint that contradicts what was cosigned is evidence: keep it.
                let contradicts = matches!(refusal, Refusal::InvalidProof(_))
                    || (matches!(refusal, Refusal::Conflict(_)) && request.old == seen.map_or(0, |s| s.size));
                if contradicts {
                    self.keep_evidence(&origin, &refusal, body).await;
                }
                return Err(refusal.into());
            }
        };
        if i64::try_from(checkpoint.size).is_err() {
            return Err(Refusal::BadRequest("tree size must be below 2^63".into()).into());
        }
        if !self.compare_and_swap(&origin, seen.as_ref(), &checkpoint, &request.note).await? {
            // Another request moved the state since it was read: answer with the new size.
            let now = self.latest(&origin).await?.unwrap_or_else(Latest::none);
            return Err(Refusal::Conflict(now.size).into());
        }
        let body = request.body();
        self.cosigner
            .cosign(body, now_secs())
            .map_err(|e| AddError::Refused(Refusal::BadRequest(format!("checkpoint: {e}"))))
    }

    /// Answers one HTTP request.
    pub async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        if request.uri().path() != ADD_CHECKPOINT {
            return text(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "not found: the witness serves POST /add-checkpoint\n",
            );
        }
        if request.method() != Method::POST {
            let mut r =
                text(StatusCode::METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", "add-checkpoint takes POST\n");
            r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("POST"));
            return r;
        }
        let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return text(StatusCode::PAYLOAD_TOO_LARGE, "text/plain; charset=utf-8", "request body over 64 KiB\n")
            }
            Err(_) => return text(StatusCode::BAD_REQUEST, "text/plain; charset=utf-8", "request body cut short\n"),
        };
        let Ok(body) = std::str::from_utf8(&body) else {
            return text(StatusCode::BAD_REQUEST, "text/plain; charset=utf-8", "bad request: the body is not UTF-8\n");
        };
        match self.add_checkpoint(body).await {
            Ok(lines) => text(StatusCode::OK, "text/plain; charset=utf-8", &lines),
            Err(AddError::Refused(r)) => {
                let status = StatusCode::from_u16(r.status()).expect("a valid status");
                let kind =
                    if matches!(r, Refusal::Conflict(_)) { SIZE_CONTENT_TYPE } else { "text/plain; charset=utf-8" };
                text(status, kind, &r.body())
            }
            Err(AddError::State(e)) => {
                tracing::error!(error = %e, "witness state unavailable; nothing cosigned");
                text(StatusCode::INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8", "internal error\n")
            }
        }
    }
}

fn text(status: StatusCode, content_type: &'static str, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    r
}

/// The witness's TLS configuration: server authentication only (the protocol authenticates
/// requests by the checkpoint's signature), HTTP/1.1.
///
/// # Errors
/// PEM that does not parse, or a key rustls does not accept.
pub fn tls_config(cert: &str, key: &str) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("the server certificate (tls_cert) does not parse")?;
    anyhow::ensure!(!chain.is_empty(), "the server certificate file (tls_cert) holds no certificate");
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).context("the server key (tls_key) does not parse")?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the server certificate and key (tls_cert, tls_key)")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves HTTPS on `listener` until `shutdown` resolves, then lets requests in flight finish.
///
/// # Errors
/// Never after the listener is bound (connection errors are logged and dropped).
pub async fn serve(
    listener: tokio::net::TcpListener,
    witness: Arc<Witness>,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let stop = CancellationToken::new();
    let mut connections = tokio::task::JoinSet::new();
    tracing::info!(local = %listener.local_addr()?, key = %witness.verifier_key(), "witness serving HTTPS");
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (acceptor, witness, stop) = (acceptor.clone(), witness.clone(), stop.clone());
        while connections.try_join_next().is_some() {}
        connections.spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let service = hyper::service::service_fn(move |request| {
                let witness = witness.clone();
                async move { Ok::<_, Infallible>(witness.handle(request).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => if let Err(e) = r { tracing::debug!(%peer, error = %e, "connection ended") },
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    stop.cancel();
    while connections.join_next().await.is_some() {}
    Ok(())
}

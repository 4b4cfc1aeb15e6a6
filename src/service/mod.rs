//! Use cases: each public function identifies nothing and parses nothing — it receives a
//! [`Caller`] and domain values, enforces the rules, and stores state with its record.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ring::hmac;

use crate::domain::participant::{Participant, ParticipantStatus, Role};
use crate::log::proofs::ProofError;
use crate::log::sequencer::{LogError, TransferLog};
use crate::policy::PolicyConfig;
use crate::store::cache::ChunkCache;
use crate::store::{Store, StoreError};

pub mod assessment;
pub mod audit;
pub mod catalog;
pub mod exchange;
pub mod extract;
pub(crate) mod facts;
pub mod maintenance;
pub mod monitoring;
pub mod oversight;
pub mod participants;
pub mod publishing;
pub mod reports;
pub mod review;
pub mod sharing;
pub mod tables;

/// The one error of the use-case layer. Messages are for clients: they never carry SQL, paths
/// or record values. The exhaustive mapping to gRPC codes lives in `grpc::status`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// Bad input; `field` names it.
    #[error("{field}: {message}")]
    InvalidArgument {
        /// The request field at fault (dotted path).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// No identity, or an unknown one.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller may not do this (role, ownership, grant, suspension).
    #[error("{0}")]
    PermissionDenied(String),
    /// A transfer the rules block (`DENY`); names the rules that fired.
    #[error("transfer blocked by rules {}: {message}", rules.join(", "))]
    Blocked {
        /// Rules that fired.
        rules: Vec<String>,
        /// Why.
        message: String,
    },
    /// A transfer the rules hold until an approval exists; names the rules that fired and the
    /// hold in the officers' queue.
    #[error("transfer held by rules {}: requires {mechanism}: {message} (hold {hold})", rules.join(", "))]
    Held {
        /// The review-queue item.
        hold: String,
        /// Rules that fired.
        rules: Vec<String>,
        /// The mechanism an approval must satisfy.
        mechanism: String,
        /// Why.
        message: String,
    },
    /// No such thing (`0` names it).
    #[error("{0} not found")]
    NotFound(String),
    /// It exists already (`0` names it).
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The state does not allow it (e.g. deciding a grant twice).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A limit was exceeded.
    #[error("{0}")]
    ResourceExhausted(String),
    /// Storage (and so the record of the operation) cannot be written: nothing was done.
    #[error("the gateway cannot record this operation now; nothing was done, retry later")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The log's checkpoints are not witnessed as the policy requires: no data leaves
    /// (docs/witness.md). Says why.
    #[error("{0}")]
    Unwitnessed(String),
    /// Stored content fails its digest.
    #[error("stored content of {0} fails its digest")]
    DataLoss(String),
    /// A bug or an unexpected failure; details only in the server's log.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ServiceError {
    /// An `InvalidArgument` naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl ToString) -> ServiceError {
        ServiceError::InvalidArgument { field: field.into(), message: message.to_string() }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AlreadyExists(what) => ServiceError::AlreadyExists(what),
            StoreError::Conflict(what) => ServiceError::FailedPrecondition(format!("{what}; read it again and retry")),
            StoreError::Unavailable(_) => ServiceError::Unavailable(Box::new(e)),
            StoreError::Corrupt(what) => ServiceError::DataLoss(what),
            StoreError::Other(_) => ServiceError::Internal(e.into()),
        }
    }
}

impl From<LogError> for ServiceError {
    fn from(e: LogError) -> Self {
        ServiceError::Unavailable(Box::new(e))
    }
}

impl From<ProofError> for ServiceError {
    fn from(e: ProofError) -> Self {
        match e {
            ProofError::LeafBeyondTree { size, .. } => {
                ServiceError::invalid("leaf_index", format!("must be below the tree size {size}"))
            }
            ProofError::OldBeyondNew { new_size, .. } => {
                ServiceError::invalid("old_size", format!("exceeds new_size {new_size}"))
            }
            ProofError::Missing(node) => ServiceError::DataLoss(format!("the transfer log's tree ({node})")),
            ProofError::Store(e) => e.into(),
            ProofError::NotIntegrated { .. } => {
                ServiceError::Unavailable("the record was not integrated into the log in time".into())
            }
            e @ ProofError::NotStored { .. } => ServiceError::Internal(e.into()),
        }
    }
}

/// Time source; tests inject a fixed or advancing clock.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Limits on what one request may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Rows in one published batch.
    pub max_batch_rows: u32,
    /// Rows in one stored chunk (= one delivered batch), at most.
    pub chunk_rows: u32,
    /// Bytes of one stored chunk, about: a chunk closes at `chunk_rows` rows or when its rows,
    /// at the densest batch of the upload so far, would exceed this. What a slow recipient's pull
    /// holds in memory is a few chunks, so this bounds it.
    pub chunk_bytes: usize,
    /// Rows in one version.
    pub max_version_rows: u64,
    /// Bytes of verified chunks and prepared extracts kept in memory ([`ChunkCache`]).
    pub cache_bytes: usize,
    /// Prepare masked extracts when a grant is approved or a version published
    /// ([`extract`]).
    pub prepare_extracts: bool,
    /// Pulls one participant may have streaming at once.
    pub max_pulls_per_participant: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_batch_rows: 65_536,
            chunk_rows: 8_192,
            chunk_bytes: 256 << 10,
            max_version_rows: 100_000_000,
            cache_bytes: 512 << 20,
            prepare_extracts: true,
            max_pulls_per_participant: 4,
        }
    }
}

/// Everything the use cases share: the store, the secrets, the clock, the rules' settings.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// Persistent state.
    pub store: Arc<dyn Store>,
    /// Derives per-recipient `HASH` mask keys; never leaves the gateway.
    mask_key: hmac::Key,
    /// Keys the person hashes of the export ledger; never leaves the gateway.
    counting_key: hmac::Key,
    /// Keys the HMAC of a table's primary-rule parameters in its decision record.
    parameters_key: hmac::Key,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Request limits.
    pub limits: Limits,
    /// Thresholds, windows and validity periods of the rules.
    pub policy: PolicyConfig,
    /// The verifiable transfer log.
    pub log: TransferLog,
    /// The witnesses fed with the log's checkpoints and the policy over them (`None`: none
    /// configured).
    pub witnesses: Option<Arc<crate::log::witnesses::Witnesses>>,
    /// Verified chunks of recently pulled versions and prepared extracts.
    pub chunk_cache: Arc<ChunkCache>,
    /// One extract is prepared at a time.
    preparing: Arc<tokio::sync::Semaphore>,
    /// Pulls streaming per participant ([`Limits::max_pulls_per_participant`]).
    pub(crate) pulls: Arc<exchange::PullSlots>,
    /// Refused pull attempts not yet recorded ([`maintenance`]).
    pub(crate) refusals: Arc<maintenance::Refusals>,
    /// Uploads in progress here (maintenance never purges them).
    pub(crate) uploads: Arc<publishing::LiveUploads>,
    /// The logged record of [`Gateway::policy`], once a decision needed it ([`facts::policy`]).
    pub(crate) policy_fact: Arc<tokio::sync::OnceCell<crate::domain::record::bodies::FactCited>>,
}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Gateway {
    /// Assembles the use-case context. `secret` is the gateway's 32-byte secret from `init`.
    pub fn new(
        store: Arc<dyn Store>,
        secret: &[u8],
        clock: Arc<dyn Clock>,
        limits: Limits,
        policy: PolicyConfig,
        log: TransferLog,
    ) -> Gateway {
        let root = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let mask_key = hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&root, b"bth-gateway mask HASH v1").as_ref());
        let counting_key =
            hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&root, b"bth-gateway person counting v1").as_ref());
        let parameters_key =
            hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&root, b"bth-gateway sdc parameters v1").as_ref());
        Gateway {
            store,
            mask_key,
            counting_key,
            parameters_key,
            clock,
            chunk_cache: Arc::new(ChunkCache::new(limits.cache_bytes)),
            preparing: Arc::new(tokio::sync::Semaphore::new(1)),
            pulls: Arc::default(),
            refusals: Arc::default(),
            uploads: Arc::default(),
            policy_fact: Arc::default(),
            limits,
            policy,
            log,
            witnesses: None,
        }
    }

    /// This gateway with its witnesses: pulls and tables stop when their policy says so.
    pub fn with_witnesses(mut self, witnesses: Option<Arc<crate::log::witnesses::Witnesses>>) -> Gateway {
        self.witnesses = witnesses;
        self
    }

    /// Whether data may leave under the witnesses' policy (always, without witnesses).
    ///
    /// # Errors
    /// [`ServiceError::Unwitnessed`] with the policy's reason.
    pub async fn witnessed(&self) -> Result<(), ServiceError> {
        match &self.witnesses {
            Some(w) => w.check().await.map_err(ServiceError::Unwitnessed),
            None => Ok(()),
        }
    }

    /// Logs the export policy this gateway applies (`policy.applied`) unless the same policy is
    /// logged already; every decision cites it. Done at start, and by the first decision otherwise.
    ///
    /// # Errors
    /// When the log cannot be written.
    pub async fn log_policy(&self) -> Result<(), ServiceError> {
        facts::policy(self).await.map(drop)
    }

    /// The key of the export ledger's person hashes.
    pub fn counting_key(&self) -> hmac::Key {
        self.counting_key.clone()
    }

    /// The key of the parameters' HMAC in table decision records.
    pub fn parameters_key(&self) -> hmac::Key {
        self.parameters_key.clone()
    }

    /// The `HASH` mask key of one recipient: stable for it, unlinkable across recipients.
    pub fn recipient_hash_key(&self, recipient: &str) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&self.mask_key, recipient.as_bytes()).as_ref())
    }
}

/// Checks caller-supplied free text: not blank when `required`, then
/// [`crate::domain::check_free_text`].
pub(crate) fn check_text(field: &str, text: &str, required: bool, max: usize) -> Result<(), ServiceError> {
    if required && text.trim().is_empty() {
        return Err(ServiceError::invalid(field, "is required"));
    }
    crate::domain::check_free_text(text, max).map_err(|e| ServiceError::invalid(field, e))
}

/// An authenticated caller: the participant its verified certificate names, looked up on this
/// call (so a suspension takes effect on the next call).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The participant.
    pub participant: Participant,
    /// Lower-case hex SHA-256 of its certificate (recorded in the log).
    pub cert_sha256: String,
}

impl Caller {
    /// Requires `role`.
    pub fn require(&self, role: Role) -> Result<(), ServiceError> {
        if self.participant.has_role(role) {
            Ok(())
        } else {
            Err(ServiceError::PermissionDenied(format!("participant {} lacks the role {role}", self.participant.id)))
        }
    }

    /// Whether the participant itself called (with its certificate), rather than the gateway on
    /// its behalf (a standing report's run): only its own attempts count among refused attempts.
    pub fn called_itself(&self) -> bool {
        !self.cert_sha256.is_empty()
    }

    /// The participant id as recorded in the log.
    pub fn actor(&self) -> String {
        self.participant.id.to_string()
    }
}

/// Resolves the participant a certificate names.
///
/// # Errors
/// `Unauthenticated` for an unknown participant; `PermissionDenied` for a suspended one.
pub async fn identify(gw: &Gateway, participant_id: &str, cert_sha256: String) -> Result<Caller, ServiceError> {
    let unknown = || {
        ServiceError::Unauthenticated(format!(
            "no participant is registered for certificate subject `{participant_id}`"
        ))
    };
    let id = crate::domain::ids::ParticipantId::parse(participant_id).map_err(|_| unknown())?;
    let participant = gw.store.participant(&id).await?.ok_or_else(unknown)?;
    if participant.status == ParticipantStatus::Suspended {
        return Err(ServiceError::PermissionDenied(format!("participant {id} is suspended")));
    }
    Ok(Caller { participant, cert_sha256 })
}

/// A random identifier: `prefix`, then 32 lower-case hex digits.
pub fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).expect("system randomness");
    format!("{prefix}{}", hex::encode(bytes))
}

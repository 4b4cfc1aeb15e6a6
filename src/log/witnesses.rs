//! The witness feeder: the gateway's latest signed checkpoint submitted to every configured
//! C2SP tlog-witness (`add-checkpoint` with a consistency proof from the size the witness holds),
//! each cosignature appended to the checkpoint's stored note, and the policy deciding whether
//! pulls may go on: a checkpoint cosigned by `quorum` witnesses no older than
//! `max_unwitnessed_secs` behind the log.
//!
//! Persistence: per witness the size it holds and the largest it cosigned (`witness_feed`);
//! whatever the log signed above that is the pending work, retried every `retry_secs` and after
//! every integration, across restarts of the witness or the gateway. A 409 teaches the feeder
//! the witness's size (resync); a witness holding more than the log has is reported loudly
//! (the log was truncated or forked) and never cosigns again until the log catches up
//! consistently.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::log::sequencer::TransferLog;
use crate::store::Store;
use crate::translog::cosignature::{accept_cosignature, CosignatureVerifier};
use crate::translog::note::parse_decimal;
use crate::translog::witness::{format_add_checkpoint, SIZE_CONTENT_TYPE};
use crate::witness::client::WitnessClient;

/// One witness of `[[witness.witnesses]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessEndpoint {
    /// Its submission prefix, `https://host:port[/prefix]`.
    pub url: String,
    /// Its verifier key (`bth-gateway witness key`, signature type 0x04).
    pub key: String,
    /// The CA certificate (PEM) its HTTPS certificate chains to.
    pub ca: PathBuf,
}

/// What happens when the log is not witnessed in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WitnessMode {
    /// Pulls and tables are refused (`UNAVAILABLE`) until the witnesses catch up.
    #[default]
    FailClosed,
    /// They go on; the gateway logs a warning.
    Warn,
}

/// `[witness]`: the witnesses and the policy. With no witnesses the gateway behaves as without.
///
/// # Defaults
/// No witnesses; `quorum = 0` (all of them); `max_unwitnessed_secs = 300`; `mode =
/// "fail_closed"`; `retry_secs = 10`; `timeout_secs = 10`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WitnessSettings {
    /// The witnesses fed.
    pub witnesses: Vec<WitnessEndpoint>,
    /// How many must have cosigned (`k` of n); 0: all of them.
    pub quorum: usize,
    /// How long the oldest checkpoint not covered by a quorum's cosignatures may wait.
    pub max_unwitnessed_secs: u64,
    /// `fail_closed` or `warn`.
    pub mode: WitnessMode,
    /// Seconds between retries of a witness that did not cosign.
    pub retry_secs: u64,
    /// Seconds a witness has to answer.
    pub timeout_secs: u64,
}

impl Default for WitnessSettings {
    fn default() -> Self {
        WitnessSettings {
            witnesses: Vec::new(),
            quorum: 0,
            max_unwitnessed_secs: 300,
            mode: WitnessMode::FailClosed,
            retry_secs: 10,
            timeout_secs: 10,
        }
    }
}

/// One fed witness.
struct Fed {
    key: CosignatureVerifier,
    client: WitnessClient,
}

/// The running feeders and the policy over what they achieved.
pub struct Witnesses {
    store: Arc<dyn Store>,
    quorum: usize,
    max_age: chrono::Duration,
    mode: WitnessMode,
    /// Per witness (in configuration order), the largest size it cosigned.
    cosigned: Arc<Mutex<Vec<u64>>>,
}

impl std::fmt::Debug for Witnesses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witnesses").field("quorum", &self.quorum).field("mode", &self.mode).finish_non_exhaustive()
    }
}

impl Witnesses {
    /// Checks the settings and starts one feeder per witness; `None` without witnesses.
    ///
    /// # Errors
    /// A bad key, URL or CA file, or a quorum above the number of witnesses, naming the setting.
    pub async fn start(
        settings: &WitnessSettings,
        store: Arc<dyn Store>,
        log: &TransferLog,
    ) -> anyhow::Result<Option<Arc<Witnesses>>> {
        if settings.witnesses.is_empty() {
            return Ok(None);
        }
        let n = settings.witnesses.len();
        let quorum = if settings.quorum == 0 { n } else { settings.quorum };
        anyhow::ensure!(quorum <= n, "witness.quorum: {quorum} is more than the {n} witnesses configured");
        anyhow::ensure!(settings.retry_secs > 0, "witness.retry_secs must be at least 1");
        let timeout = Duration::from_secs(settings.timeout_secs.max(1));
        let mut fed = Vec::with_capacity(n);
        let mut cosigned = Vec::with_capacity(n);
        for (i, w) in settings.witnesses.iter().enumerate() {
            let key = CosignatureVerifier::new(w.key.trim())
                .map_err(|e| anyhow::anyhow!("witness.witnesses[{i}].key: {e}"))?;
            let ca = std::fs::read_to_string(&w.ca)
                .with_context(|| format!("witness.witnesses[{i}].ca: reading {}", w.ca.display()))?;
            let client = WitnessClient::new(&w.url, &ca, timeout)
                .map_err(|e| anyhow::anyhow!("witness.witnesses[{i}].url: {e:#}"))?;
            let stored = store.witness_feed(key.name()).await?;
            cosigned.push(stored.map_or(0, |(_, c)| c));
            fed.push(Fed { key, client });
        }
        let witnesses = Arc::new(Witnesses {
            store: store.clone(),
            quorum,
            max_age: chrono::Duration::seconds(settings.max_unwitnessed_secs.min(i64::MAX as u64) as i64),
            mode: settings.mode,
            cosigned: Arc::new(Mutex::new(cosigned)),
        });
        for (i, f) in fed.into_iter().enumerate() {
            let retry = Duration::from_secs(settings.retry_secs);
            tokio::spawn(feed(i, f, store.clone(), log.integrated(), witnesses.cosigned.clone(), retry));
        }
        Ok(Some(witnesses))
    }

    /// The largest tree size cosigned by a quorum (0 when none).
    pub fn witnessed_size(&self) -> u64 {
        let mut sizes = self.cosigned.lock().unwrap_or_else(|p| p.into_inner()).clone();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        sizes.get(self.quorum - 1).copied().unwrap_or(0)
    }

    /// Whether data may leave: `Err` naming how long the log has gone unwitnessed when the
    /// oldest checkpoint above the quorum's is older than `max_unwitnessed_secs` (in `warn`
    /// mode only logged). A store that cannot be read fails closed.
    ///
    /// # Errors
    /// The reason pulls are stopped.
    pub async fn check(&self) -> Result<(), String> {
        let witnessed = self.witnessed_size();
        let first = match self.store.checkpoints(witnessed, 1).await {
            Ok(c) => c.into_iter().next(),
            Err(e) => return Err(format!("the witnessed state cannot be read: {e}")),
        };
        let Some(first) = first else { return Ok(()) };
        let age = Utc::now() - first.at;
        if age <= self.max_age {
            return Ok(());
        }
        let why = format!(
            "the transfer log is not witnessed: checkpoint {} has waited {} s for {} witness cosignatures \
             (max_unwitnessed_secs {}); the largest witnessed tree size is {witnessed}",
            first.size,
            age.num_seconds(),
            self.quorum,
            self.max_age.num_seconds()
        );
        match self.mode {
            WitnessMode::FailClosed => Err(why),
            WitnessMode::Warn => {
                tracing::warn!("{why}");
                Ok(())
            }
        }
    }
}

/// The outcome of one submission.
enum Step {
    /// Cosigned (or nothing to do): wait for the next checkpoint.
    Done,
    /// Try again at once (the witness told its size).
    Again,
    /// Try again after the retry period.
    Later,
}

/// Feeds one witness forever: after every integration and every `retry` period.
async fn feed(
    i: usize,
    fed: Fed,
    store: Arc<dyn Store>,
    mut integrated: tokio::sync::watch::Receiver<u64>,
    cosigned: Arc<Mutex<Vec<u64>>>,
    retry: Duration,
) {
    let name = fed.key.name().to_owned();
    let mut step = Step::Again;
    loop {
        match step {
            Step::Again => {}
            Step::Done => {
                tokio::select! {
                    changed = integrated.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep(retry) => {}
                }
            }
            Step::Later => tokio::time::sleep(retry).await,
        }
        step = match submit(&fed, store.as_ref()).await {
            Ok((step, Some(size))) => {
                let mut c = cosigned.lock().unwrap_or_else(|p| p.into_inner());
                c[i] = c[i].max(size);
                step
            }
            Ok((step, None)) => step,
            Err(e) => {
                tracing::warn!(witness = %name, error = %format!("{e:#}"), "witness feeding failed; will retry");
                Step::Later
            }
        };
    }
}

/// Submits the latest checkpoint once: the step after, and the size cosigned if it was.
async fn submit(fed: &Fed, store: &dyn Store) -> anyhow::Result<(Step, Option<u64>)> {
    let name = fed.key.name();
    let Some(latest) = store.checkpoint(None).await? else { return Ok((Step::Done, None)) };
    let (old, cosigned) = store.witness_feed(name).await?.unwrap_or((0, 0));
    if cosigned >= latest.size && old == latest.size {
        return Ok((Step::Done, None));
    }
    if old > latest.size {
        tracing::error!(
            witness = name,
            witness_size = old,
            log_size = latest.size,
            "the witness holds a larger tree of this log than the log itself: the log was truncated or forked"
        );
        return Ok((Step::Later, None));
    }
    let proof = if old == 0 || old == latest.size {
        Vec::new()
    } else {
        crate::log::proofs::consistency(store, old, latest.size)
            .await
            .with_context(|| format!("the consistency proof {old} -> {}", latest.size))?
            .proof
    };
    let answer = fed.client.add_checkpoint(&format_add_checkpoint(old, &proof, &latest.note)).await?;
    match answer.status {
        200 => {
            let (line, time) = accept_cosignature(&latest.note, &answer.body, &fed.key)
                .map_err(|e| anyhow::anyhow!("the witness answered 200 without a valid cosignature: {e}"))?;
            store.add_cosignature(latest.size, &line).await?;
            store.set_witness_feed(name, latest.size, Some(latest.size)).await?;
            tracing::debug!(witness = name, size = latest.size, time, "checkpoint cosigned");
            Ok((Step::Done, Some(latest.size)))
        }
        409 => {
            let size = (answer.content_type.as_deref() == Some(SIZE_CONTENT_TYPE))
                .then(|| answer.body.strip_suffix('\n').and_then(parse_decimal))
                .flatten()
                .with_context(|| format!("409 without a {SIZE_CONTENT_TYPE} size: {:?}", answer.body))?;
            if size == old {
                // Same size, another root: the witness saw a different tree of this size.
                tracing::error!(
                    witness = name,
                    size,
                    "the witness holds another tree of this size: the log was forked"
                );
                return Ok((Step::Later, None));
            }
            tracing::info!(witness = name, from = old, to = size, "witness resync");
            store.set_witness_feed(name, size, None).await?;
            Ok((if size > latest.size { Step::Later } else { Step::Again }, None))
        }
        status => {
            anyhow::bail!("the witness answered {status}: {}", answer.body.trim_end());
        }
    }
}

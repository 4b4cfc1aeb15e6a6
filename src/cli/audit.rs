//! `bth-gateway audit key|verify|replay`: the log's verifier key, offline verification of the
//! whole log, and its replay (docs/replay.md), from a database file or from a running gateway
//! (with an auditor's certificate).
//!
//! The checks live in [`crate::translog::verify`] and [`crate::replay`]; this module only reads
//! and prints.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use super::load_config;
use crate::config::Config;
use crate::pb::{self, audit_client::AuditClient};
use crate::store::Store;
use crate::translog::cosignature::CosignatureVerifier;
use crate::translog::merkle::Hash;
use crate::translog::note::{NoteError, Verifier};
use crate::translog::verify::{LeafItem, LogVerifier, Report};

/// Leaves and checkpoints read per round trip.
const PAGE: u32 = 1000;

/// Audit subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Print the log's verifier key (`<name>+<hex key id>+<base64 key>`) for auditors and recipients.
    Key {
        /// Working directory written by `init`.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Verify the whole log: every leaf re-hashed from its canonical JSON, every checkpoint's root
    /// and signature, and consistency with a checkpoint saved earlier. Exits 1 naming the leaf
    /// index or checkpoint at the first mismatch.
    Verify(VerifyArgs),
    /// Replay the log: rebuild the state from its records alone and run every transfer decision
    /// through the rules again; with a database, also compare its rows with the rebuilt state.
    /// Exits 1 naming the leaf of the first divergence.
    Replay(ReplayArgs),
}

/// Where to read the log from, and how much to print.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Where the log is.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Divergences printed after the first.
    #[arg(long, default_value_t = 9)]
    pub more: usize,
}

/// Where to read the log from: a database, or a running gateway.
#[derive(Debug, clap::Args)]
pub struct SourceArgs {
    /// A gateway database file, read directly (the gateway may be running or not).
    #[arg(long, conflicts_with = "server")]
    pub db: Option<PathBuf>,
    /// A working directory written by `init`: its config names the database (unless --db or
    /// --server is given) and, for `verify`, the log key (unless --verifier-key is given).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// A running gateway, e.g. `https://gateway.example:8443`, read with an auditor's or officer's
    /// certificate.
    #[arg(long, requires_all = ["ca", "cert", "key"])]
    pub server: Option<String>,
    /// CA certificate (PEM) the gateway's server certificate chains to.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) of an auditor or officer.
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long)]
    pub key: Option<PathBuf>,
}

/// Where to read the log from, and what to trust.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Where the log is.
    #[command(flatten)]
    pub source: SourceArgs,
    /// The log's verifier key (`bth-gateway audit key`); default: derived from --dir's config.
    #[arg(long)]
    pub verifier_key: Option<String>,
    /// A signed checkpoint saved earlier (--save): the log must be consistent with it.
    #[arg(long)]
    pub trusted: Option<PathBuf>,
    /// Write the latest verified checkpoint (signed note) here, for the next --trusted.
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// A witness's verifier key (`bth-gateway witness key`, signature type 0x04); repeat for
    /// several. The log must carry a checkpoint cosigned by --quorum of them, every cosignature
    /// line under one of these keys must verify, and a --trusted checkpoint must be cosigned too.
    #[arg(long = "witness")]
    pub witnesses: Vec<String>,
    /// How many of the --witness keys must cosign (default: all of them).
    #[arg(long, requires = "witnesses")]
    pub quorum: Option<usize>,
}

/// The witnesses an auditor trusts and what their cosignatures on the log showed.
struct Witnessing {
    keys: Vec<CosignatureVerifier>,
    quorum: usize,
    /// The largest checkpoint cosigned by a quorum: its size and its cosigners' names.
    best: Option<(u64, Vec<String>)>,
}

impl Witnessing {
    fn new(args: &VerifyArgs) -> anyhow::Result<Option<Witnessing>> {
        if args.witnesses.is_empty() {
            return Ok(None);
        }
        let keys = args
            .witnesses
            .iter()
            .enumerate()
            .map(|(i, k)| CosignatureVerifier::new(k.trim()).map_err(|e| anyhow::anyhow!("--witness #{}: {e}", i + 1)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let quorum = args.quorum.unwrap_or(keys.len());
        if quorum == 0 || quorum > keys.len() {
            bail!("--quorum must be between 1 and the number of --witness keys ({})", keys.len());
        }
        Ok(Some(Witnessing { keys, quorum, best: None }))
    }

    /// Checks the cosignatures of one verified checkpoint note: every line under a trusted key
    /// must verify; a quorum makes it the best witnessed checkpoint so far.
    fn note(&mut self, size: u64, note: &str) -> Result<usize, String> {
        let mut names = Vec::new();
        for key in &self.keys {
            match key.verify(note) {
                Ok(_) => names.push(key.name().to_owned()),
                Err(NoteError::NoMatchingSignature) => {}
                Err(e) => return Err(format!("checkpoint of tree size {size}: cosignature of {}: {e}", key.name())),
            }
        }
        if names.len() >= self.quorum {
            self.best = Some((size, names.clone()));
        }
        Ok(names.len())
    }
}

/// Runs an audit subcommand; returns the exit code (1: the log does not verify).
pub async fn run(command: AuditCommand) -> anyhow::Result<i32> {
    match command {
        AuditCommand::Key { dir } => {
            println!("{}", load_config(&dir)?.log_signer()?.verifier_key());
            Ok(0)
        }
        AuditCommand::Verify(args) => verify(args).await,
        AuditCommand::Replay(args) => replay(args).await,
    }
}

/// Where the log is read from.
enum Source {
    Store(Arc<dyn Store>),
    Remote(AuditClient<Channel>),
}

impl Source {
    async fn open(args: &SourceArgs, config: Option<&Config>) -> anyhow::Result<Source> {
        if let Some(server) = &args.server {
            let read = |p: &Option<PathBuf>| -> anyhow::Result<String> {
                let p = p.as_ref().expect("clap requires --ca, --cert and --key with --server");
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
            };
            let tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read(&args.ca)?))
                .identity(Identity::from_pem(read(&args.cert)?, read(&args.key)?));
            let channel = Channel::from_shared(server.clone())
                .context("--server must be a URL such as https://host:port")?
                .tls_config(tls)?
                .connect()
                .await
                .with_context(|| format!("connecting to {server}"))?;
            return Ok(Source::Remote(AuditClient::new(channel).max_decoding_message_size(64 << 20)));
        }
        let url = match (&args.db, config) {
            (Some(path), _) => {
                if !path.is_file() {
                    bail!("{} is not a database file", path.display());
                }
                format!("sqlite:{}", path.display())
            }
            (None, Some(config)) => config.database_url.clone(),
            (None, None) => bail!("say where the log is: --db PATH, --dir DIR or --server URL"),
        };
        Ok(Source::Store(crate::store::open_read_only(&url).await?))
    }

    /// Up to a page of checkpoints with sizes above `after`, ascending: (size, root, note).
    async fn checkpoints(&mut self, after: u64) -> anyhow::Result<Vec<(u64, Hash, String)>> {
        match self {
            Source::Store(store) => {
                Ok(store.checkpoints(after, PAGE).await?.into_iter().map(|c| (c.size, c.root, c.note)).collect())
            }
            Source::Remote(client) => client
                .list_checkpoints(pb::ListCheckpointsRequest { after_size: after, page_size: PAGE })
                .await
                .context("ListCheckpoints")?
                .into_inner()
                .checkpoints
                .into_iter()
                .map(|c| Ok((c.tree_size, hash(&c.root_hash, "checkpoint root")?, c.note)))
                .collect(),
        }
    }

    /// A page of leaves from `from` (below `to` when the source can bound it), with the tree's
    /// leaf hashes.
    async fn leaves(&mut self, from: u64, to: u64) -> anyhow::Result<Vec<LeafItem>> {
        match self {
            Source::Store(store) => {
                let limit = (to.saturating_sub(from)).clamp(1, u64::from(PAGE)) as u32;
                let records = store.leaves(from, limit).await?;
                let coordinates: Vec<(u8, u64)> = records.iter().filter_map(|r| r.leaf_index).map(|i| (0, i)).collect();
                let nodes = store.tree_nodes(&coordinates).await?;
                Ok(records
                    .into_iter()
                    .filter_map(|r| {
                        let index = r.leaf_index?;
                        Some((index, r.json, nodes.get(&(0, index)).copied()))
                    })
                    .collect())
            }
            Source::Remote(client) => {
                if from >= to {
                    return Ok(Vec::new());
                }
                let page = client
                    .get_entries(pb::GetEntriesRequest { start: from, end: to, page_size: PAGE })
                    .await
                    .context("GetEntries")?
                    .into_inner();
                page.entries
                    .into_iter()
                    .map(|e| Ok((e.index, e.json, Some(hash(&e.leaf_hash, "leaf hash")?))))
                    .collect()
            }
        }
    }

    /// Compares the nodes the verifier completed since the last call with the stored tree's (a
    /// database only).
    async fn check_nodes(
        &mut self,
        v: &mut LogVerifier,
    ) -> anyhow::Result<Result<(), crate::translog::verify::VerifyError>> {
        let Source::Store(store) = self else { return Ok(Ok(())) };
        let computed = v.take_nodes();
        for part in computed.chunks(PAGE as usize) {
            let coordinates: Vec<(u8, u64)> = part.iter().map(|(l, i, _)| (*l, *i)).collect();
            let stored = store.tree_nodes(&coordinates).await?;
            for (level, index, hash) in part {
                if let Err(e) =
                    crate::translog::verify::check_tree_node(*level, *index, hash, stored.get(&(*level, *index)))
                {
                    return Ok(Err(e));
                }
            }
        }
        Ok(Ok(()))
    }

    /// The size of the latest signed tree a gateway serves; `None` for a database, whose leaves
    /// are read until there are no more.
    async fn latest_size(&mut self) -> anyhow::Result<Option<u64>> {
        match self {
            Source::Store(_) => Ok(None),
            Source::Remote(client) => Ok(Some(
                client
                    .get_checkpoint(pb::GetCheckpointRequest {
                        tree_size: 0,
                        r#match: pb::CheckpointMatch::Exact.into(),
                    })
                    .await
                    .context("GetCheckpoint")?
                    .into_inner()
                    .tree_size,
            )),
        }
    }

    async fn consistency(&mut self, old: u64, new: u64) -> anyhow::Result<Vec<Hash>> {
        match self {
            Source::Store(store) => {
                let consistency = crate::log::proofs::consistency(store.as_ref(), old, new)
                    .await
                    .with_context(|| format!("computing the consistency proof {old} -> {new}"))?;
                Ok(consistency.proof)
            }
            Source::Remote(client) => client
                .get_consistency_proof(pb::GetConsistencyProofRequest { old_size: old, new_size: new })
                .await
                .context("GetConsistencyProof")?
                .into_inner()
                .hashes
                .iter()
                .map(|h| hash(h, "consistency proof hash"))
                .collect(),
        }
    }
}

fn hash(bytes: &[u8], what: &str) -> anyhow::Result<Hash> {
    bytes.try_into().map_err(|_| anyhow::anyhow!("the gateway sent a {what} that is not 32 bytes"))
}

/// Verifies the log stored in `store` (every leaf, node and checkpoint) against `verifier`: the
/// report, or the first failure.
///
/// # Errors
/// The store cannot be read.
pub async fn verify_store(
    store: Arc<dyn Store>,
    verifier: Verifier,
) -> anyhow::Result<Result<Report, crate::translog::verify::VerifyError>> {
    Ok(match check(&mut Source::Store(store), verifier, None, None).await? {
        Outcome::Verified(report) => Ok(report),
        Outcome::Failed(e) => Err(e),
        Outcome::Unwitnessed(_) => unreachable!("no witnesses asked for"),
    })
}

/// The outcome of reading and checking the log.
enum Outcome {
    Verified(Report),
    Failed(crate::translog::verify::VerifyError),
    /// The log verified, its cosignatures did not.
    Unwitnessed(String),
}

async fn check(
    source: &mut Source,
    verifier: Verifier,
    trusted: Option<&str>,
    mut witnessing: Option<&mut Witnessing>,
) -> anyhow::Result<Outcome> {
    macro_rules! check {
        ($e:expr) => {
            match $e {
                Ok(v) => v,
                Err(e) => return Ok(Outcome::Failed(e)),
            }
        };
    }
    let mut v = LogVerifier::new(verifier);
    if matches!(source, Source::Store(_)) {
        // On the database, every stored node (what proofs are served from) is checked too; a
        // gateway does not serve them, and clients check the proofs it serves.
        v.collect_nodes();
    }
    if let Some(note) = trusted {
        let c = check!(v.trust(note));
        if let Some(w) = witnessing.as_deref_mut() {
            match w.note(c.size, note) {
                Ok(n) if n >= w.quorum => {}
                Ok(n) => {
                    return Ok(Outcome::Unwitnessed(format!(
                        "the trusted checkpoint (tree size {}) is cosigned by {n} of the witnesses, {} required",
                        c.size, w.quorum
                    )))
                }
                Err(e) => return Ok(Outcome::Unwitnessed(format!("the trusted {e}"))),
            }
            w.best = None;
        }
    }
    let mut after = 0;
    let mut node_failure = None;
    loop {
        let checkpoints = source.checkpoints(after).await?;
        if checkpoints.is_empty() {
            break;
        }
        for (size, root, note) in checkpoints {
            while v.size() < size {
                let page = source.leaves(v.size(), size).await?;
                if page.is_empty() {
                    break;
                }
                for (index, json, tree_hash) in page {
                    check!(v.leaf(index, &json, tree_hash.as_ref()));
                }
                if let Err(e) = source.check_nodes(&mut v).await? {
                    node_failure.get_or_insert(e);
                }
            }
            // A stored node that differs from its leaves is reported once the checkpoint
            // covering it verified: when the leaves themselves were forged, the signed root
            // names the real culprit.
            check!(v.checkpoint(size, &root, &note));
            if let Some(e) = node_failure.take() {
                return Ok(Outcome::Failed(e));
            }
            if let Some(w) = witnessing.as_deref_mut() {
                if let Err(e) = w.note(size, &note) {
                    return Ok(Outcome::Unwitnessed(e));
                }
            }
            after = size;
        }
    }
    // Leaves beyond the latest checkpoint (a database can hold them; a gateway serves none).
    if matches!(source, Source::Store(_)) {
        for (index, json, tree_hash) in source.leaves(v.size(), v.size() + 1).await? {
            check!(v.leaf(index, &json, tree_hash.as_ref()));
        }
        if let Err(e) = source.check_nodes(&mut v).await? {
            node_failure.get_or_insert(e);
        }
    }
    if let Some(e) = node_failure {
        return Ok(Outcome::Failed(e));
    }
    let proof = match v.needs_consistency() {
        Some((old, new)) => Some(source.consistency(old, new).await?),
        None => None,
    };
    Ok(match v.finish(proof.as_deref()) {
        Ok(report) => Outcome::Verified(report),
        Err(e) => Outcome::Failed(e),
    })
}

async fn verify(args: VerifyArgs) -> anyhow::Result<i32> {
    let config = args.source.dir.as_deref().map(load_config).transpose()?;
    let vkey = match (&args.verifier_key, &config) {
        (Some(k), _) => k.clone(),
        (None, Some(c)) => c.log_signer()?.verifier_key(),
        (None, None) => bail!("--verifier-key is required without --dir (print it with `bth-gateway audit key`)"),
    };
    let verifier = Verifier::new(vkey.trim()).map_err(|e| anyhow::anyhow!("--verifier-key: {e}"))?;
    let trusted = args
        .trusted
        .as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())))
        .transpose()?;
    let mut witnessing = Witnessing::new(&args)?;
    let mut source = Source::open(&args.source, config.as_ref()).await?;
    let report = match check(&mut source, verifier, trusted.as_deref(), witnessing.as_mut()).await? {
        Outcome::Verified(report) => report,
        Outcome::Failed(e) => {
            eprintln!("verification FAILED: {e}");
            return Ok(1);
        }
        Outcome::Unwitnessed(e) => {
            eprintln!("witness verification FAILED: {e}");
            return Ok(1);
        }
    };
    if let Some(w) = &witnessing {
        match &w.best {
            Some((size, names)) => {
                let latest = report.latest.as_ref().map_or(0, |(c, _)| c.size);
                println!(
                    "ok: checkpoint of tree size {size} cosigned by {} of {} witnesses ({}); {} leaves after it not yet witnessed",
                    names.len(),
                    w.keys.len(),
                    names.join(", "),
                    latest.saturating_sub(*size)
                );
            }
            None => {
                eprintln!(
                    "witness verification FAILED: no checkpoint of the log is cosigned by {} of the {} witnesses",
                    w.quorum,
                    w.keys.len()
                );
                return Ok(1);
            }
        }
    }
    match &report.latest {
        Some((c, note)) => {
            println!(
                "ok: {} leaves and {} signed checkpoints verified; latest checkpoint: tree size {}, origin {}",
                report.leaves, report.checkpoints, c.size, c.origin
            );
            if let Some(t) = &report.trusted {
                println!("ok: consistent with the trusted checkpoint of tree size {}", t.size);
            }
            if let Some(path) = &args.save {
                std::fs::write(path, note).with_context(|| format!("writing {}", path.display()))?;
                println!("saved the latest checkpoint to {}", path.display());
            }
        }
        None => {
            println!("ok: the log is empty");
            if args.save.is_some() {
                println!("nothing to save: no checkpoint yet");
            }
        }
    }
    Ok(0)
}

/// Replays the log from `args`' source (and compares a database's rows); 1 on any divergence.
async fn replay(args: ReplayArgs) -> anyhow::Result<i32> {
    let config = args.source.dir.as_deref().map(load_config).transpose()?;
    let mut source = Source::open(&args.source, config.as_ref()).await?;
    let end = source.latest_size().await?.unwrap_or(u64::MAX);
    let mut replay = crate::replay::Replay::new();
    let mut next = 0;
    while next < end {
        let page = source.leaves(next, end).await?;
        let Some((last, _, _)) = page.last() else { break };
        let last = *last;
        for (index, json, _) in &page {
            replay.feed(*index, json);
        }
        next = last + 1;
    }
    let report = replay.finish();
    let findings = match &source {
        Source::Store(store) => Some(crate::replay::compare_store(replay.state(), store.as_ref()).await?),
        Source::Remote(_) => None,
    };
    let mut lines = report.divergences.iter().map(|d| format!("replay: {d}"));
    let mut failed = false;
    if let Some(first) = lines.next() {
        eprintln!("{first}");
        for line in lines.by_ref().take(args.more) {
            eprintln!("{line}");
        }
        let rest = lines.count();
        if rest > 0 {
            eprintln!("replay: … and {rest} more divergences");
        }
        failed = true;
    }
    for f in findings.iter().flatten() {
        let leaf = f.leaf.map_or_else(|| "no record".to_owned(), |l| format!("latest record at leaf {l}"));
        eprintln!("replay: database {} {} ({leaf}): {}", f.table, f.id, f.what);
        failed = true;
    }
    if failed {
        eprintln!(
            "replay FAILED: {} divergences in the log ({} decisions), {} database rows differing from it",
            report.divergences.len(),
            report.decisions,
            findings.as_ref().map_or(0, Vec::len)
        );
        return Ok(1);
    }
    let state = replay.state();
    println!(
        "replay: ok, {} decisions replayed over {next} leaves; {} participants, {} datasets, {} grants, {} approvals{}",
        report.decisions,
        state.participants.len(),
        state.datasets.len(),
        state.grants.len(),
        state.approvals.len(),
        if findings.is_some() { "; the database's rows match the log" } else { "" }
    );
    Ok(0)
}

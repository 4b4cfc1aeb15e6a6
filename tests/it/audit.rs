//! The verifiable transfer log from the outside: receipts checked with an independent
//! implementation, the Audit service's proofs and roles, ListTransfers, `audit verify` against
//! tampered databases, and fail-closed pulls.

use bth_gateway::domain::classification::Level;
use bth_gateway::domain::participant::{ParticipantKind, RecipientType, Role};
use bth_gateway::pb::{self, audit_client::AuditClient};
use bth_gateway::pki::{self, LeafKind};
use chrono::Duration;
use tonic::transport::Channel;
use tonic::Code;

use crate::harness::*;

/// An independent implementation of what a recipient needs to check a receipt by hand: C2SP
/// signed notes with Ed25519 (ring directly) and RFC 6962 / RFC 9162 inclusion verification.
/// Deliberately shares no code with `bth_gateway::translog`.
mod independent {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use ring::{digest, signature};

    pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        for p in parts {
            ctx.update(p);
        }
        ctx.finish().as_ref().try_into().unwrap()
    }

    pub fn leaf_hash(leaf: &[u8]) -> [u8; 32] {
        sha256(&[&[0x00], leaf])
    }

    fn node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
        sha256(&[&[0x01], left, right])
    }

    /// A checkpoint whose signature verified.
    #[derive(Debug, PartialEq, Eq)]
    pub struct Checkpoint {
        pub origin: String,
        pub size: u64,
        pub root: [u8; 32],
    }

    /// Verifies a signed note with a verifier key `<name>+<hex key id>+<base64(0x01 ‖ key)>` and
    /// parses its checkpoint body. Panics on any failure.
    pub fn open_checkpoint(vkey: &str, note: &str) -> Checkpoint {
        let mut parts = vkey.splitn(3, '+');
        let (name, id_hex, key) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        let key = STANDARD.decode(key).unwrap();
        assert_eq!(key[0], 0x01, "Ed25519");
        let public = &key[1..];
        assert_eq!(public.len(), 32);
        let id = &sha256(&[name.as_bytes(), b"\n", &[0x01], public])[..4];
        assert_eq!(hex::encode(id), id_hex, "the key id is derived from name and key");

        let split = note.rfind("\n\n").expect("a blank line before the signatures");
        let (body, signatures) = (&note[..=split], &note[split + 2..]);
        let mut verified = false;
        for line in signatures.lines() {
            let rest = line.strip_prefix("\u{2014} ").expect("signature lines start with an em dash");
            let (signer, blob) = rest.split_once(' ').unwrap();
            let blob = STANDARD.decode(blob).unwrap();
            if signer == name && &blob[..4] == id {
                signature::UnparsedPublicKey::new(&signature::ED25519, public)
                    .verify(body.as_bytes(), &blob[4..])
                    .expect("the signature verifies over the body");
                verified = true;
            }
        }
        assert!(verified, "no signature by {name}");
        let lines: Vec<&str> = body.lines().collect();
        Checkpoint {
            origin: lines[0].to_owned(),
            size: lines[1].parse().unwrap(),
            root: STANDARD.decode(lines[2]).unwrap().try_into().unwrap(),
        }
    }

    /// RFC 9162 §2.1.3.2.
    pub fn inclusion_holds(leaf: [u8; 32], index: u64, size: u64, proof: &[[u8; 32]], root: [u8; 32]) -> bool {
        if index >= size {
            return false;
        }
        let (mut f, mut s, mut r) = (index, size - 1, leaf);
        for p in proof {
            if s == 0 {
                return false;
            }
            if f & 1 == 1 || f == s {
                r = node(p, &r);
                if f & 1 == 0 {
                    while f & 1 == 0 && f != 0 {
                        f >>= 1;
                        s >>= 1;
                    }
                }
            } else {
                r = node(&r, p);
            }
            f >>= 1;
            s >>= 1;
        }
        s == 0 && r == root
    }

    /// A `c2sp.org/tlog-proof@v1` receipt: index, proof, signed note.
    pub fn parse_receipt(text: &str) -> (u64, Vec<[u8; 32]>, String) {
        let (head, note) = text.split_once("\n\n").unwrap();
        let mut lines = head.lines();
        assert_eq!(lines.next(), Some("c2sp.org/tlog-proof@v1"));
        let index = lines.next().unwrap().strip_prefix("index ").unwrap().parse().unwrap();
        let proof = lines.map(|l| STANDARD.decode(l).unwrap().try_into().unwrap()).collect();
        (index, proof, note.to_owned())
    }
}

/// Audit clients of participant `id`, with a fresh certificate from the gateway's CA.
async fn audit_client(t: &TestGateway, id: &str) -> AuditClient<Channel> {
    AuditClient::new(t.channel(id).await)
}

async fn auditor(t: &TestGateway) -> AuditClient<Channel> {
    t.register("auditor", ParticipantKind::StateOrgan, RecipientType::GovDept, "CN-TJ", &[Role::Auditor], Level::G1)
        .await;
    audit_client(t, "auditor").await
}

/// `tj-stats` publishes `survey` (10 rows); returns its clients.
async fn published(t: &TestGateway) -> Client {
    let mut owner = t.publisher("tj-stats").await;
    owner.catalog.register_dataset(survey("survey")).await.unwrap();
    publish(&mut owner, "survey", "v1", vec![survey_rows(10, 0)]).await.unwrap();
    owner
}

/// A consumer `id` granted `enterprise` and `district` of `survey`.
async fn granted_consumer(t: &TestGateway, owner: &mut Client, id: &str) -> Client {
    let mut c = t.consumer(id, Level::G2).await;
    granted(owner, &mut c, "survey", &["enterprise", "district"], pb::Approve::default()).await;
    c
}

fn hashes(v: &[Vec<u8>]) -> Vec<[u8; 32]> {
    v.iter().map(|h| h.as_slice().try_into().unwrap()).collect()
}

fn entry_req(start: u64, end: u64) -> pb::GetEntriesRequest {
    pb::GetEntriesRequest { start, end, page_size: 0 }
}

#[tokio::test]
async fn a_pull_receipt_verifies_offline_with_an_independent_note_and_merkle_implementation() {
    let t = TestGateway::start().await;
    let mut owner = published(&t).await;
    let mut consumer = granted_consumer(&t, &mut owner, "tj-commerce").await;
    let p = pull(&mut consumer, pull_req("survey")).await.unwrap();
    let vkey = t.gw.log.verifier_key().to_owned();

    // The decision's receipt: index, audit path, signed checkpoint.
    let (index, proof, note) = independent::parse_receipt(&p.header.decision_receipt);
    assert_eq!(index, p.header.decision_index);
    let checkpoint = independent::open_checkpoint(&vkey, &note);
    assert_eq!(checkpoint.origin, LOG_ORIGIN);
    assert!(checkpoint.size > index);

    // The leaf itself, as the consumer may read it (its own transfer).
    let mut audit = audit_client(&t, "tj-commerce").await;
    let entries = audit.get_entries(entry_req(index, index + 1)).await.unwrap().into_inner().entries;
    assert_eq!(entries.len(), 1);
    let leaf = &entries[0];
    assert_eq!(leaf.r#type, "transfer.decision");
    let record: serde_json::Value = serde_json::from_str(&leaf.json).unwrap();
    assert_eq!(record["type"], "transfer.decision");
    let leaf_hash = independent::leaf_hash(leaf.json.as_bytes());
    assert_eq!(leaf.leaf_hash, leaf_hash.to_vec());
    assert!(independent::inclusion_holds(leaf_hash, index, checkpoint.size, &proof, checkpoint.root));

    // A different leaf, index or root does not verify.
    assert!(!independent::inclusion_holds(
        independent::leaf_hash(b"{}"),
        index,
        checkpoint.size,
        &proof,
        checkpoint.root
    ));
    assert!(!independent::inclusion_holds(leaf_hash, index + 1, checkpoint.size, &proof, checkpoint.root));
    let mut wrong_root = checkpoint.root;
    wrong_root[0] ^= 1;
    assert!(!independent::inclusion_holds(leaf_hash, index, checkpoint.size, &proof, wrong_root));

    // The completion's receipt too.
    let (cindex, cproof, cnote) = independent::parse_receipt(&p.trailer.completion_receipt);
    let cp = independent::open_checkpoint(&vkey, &cnote);
    let centry = audit.get_entries(entry_req(cindex, cindex + 1)).await.unwrap().into_inner().entries.remove(0);
    assert_eq!(centry.r#type, "transfer.completed");
    assert!(independent::inclusion_holds(
        independent::leaf_hash(centry.json.as_bytes()),
        cindex,
        cp.size,
        &cproof,
        cp.root
    ));
}

#[tokio::test]
async fn inclusion_and_consistency_proofs_verify_against_the_signed_checkpoints() {
    let t = TestGateway::start().await;
    let mut owner = published(&t).await;
    let mut consumer = granted_consumer(&t, &mut owner, "tj-commerce").await;
    let first = pull(&mut consumer, pull_req("survey")).await.unwrap();
    let (_, _, old_note) = independent::parse_receipt(&first.trailer.completion_receipt);
    let vkey = t.gw.log.verifier_key().to_owned();
    let old = independent::open_checkpoint(&vkey, &old_note);
    for _ in 0..3 {
        pull(&mut consumer, pull_req("survey")).await.unwrap();
    }
    let mut audit = auditor(&t).await;
    // Records of registrations are integrated within a second; wait for a stable latest size.
    pull(&mut consumer, pull_req("survey")).await.unwrap();
    let latest = audit.get_checkpoint(pb::GetCheckpointRequest::default()).await.unwrap().into_inner();
    let cp = independent::open_checkpoint(&vkey, &latest.note);
    assert_eq!((cp.size, cp.root.to_vec()), (latest.tree_size, latest.root_hash.clone()));

    // Every leaf's inclusion proof in the latest tree, against the signed root.
    let entries = audit.get_entries(entry_req(0, cp.size)).await.unwrap().into_inner();
    assert_eq!(entries.entries.len() as u64, cp.size);
    for e in &entries.entries {
        let proof = audit
            .get_inclusion_proof(pb::GetInclusionProofRequest { leaf_index: e.index, tree_size: 0 })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(proof.tree_size, cp.size);
        assert_eq!(proof.checkpoint.as_ref().unwrap().note, latest.note);
        let leaf = independent::leaf_hash(e.json.as_bytes());
        assert_eq!(proof.leaf_hash, leaf.to_vec());
        assert!(
            independent::inclusion_holds(leaf, e.index, cp.size, &hashes(&proof.hashes), cp.root),
            "leaf {}",
            e.index
        );
    }

    // In an older checkpoint's tree, with that checkpoint.
    let proof = audit
        .get_inclusion_proof(pb::GetInclusionProofRequest { leaf_index: 0, tree_size: old.size })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(independent::open_checkpoint(&vkey, &proof.checkpoint.unwrap().note), old);
    let leaf0 = independent::leaf_hash(entries.entries[0].json.as_bytes());
    assert!(independent::inclusion_holds(leaf0, 0, old.size, &hashes(&proof.hashes), old.root));

    // Consistency from the old checkpoint to the latest, checked with the library verifier.
    let c = audit
        .get_consistency_proof(pb::GetConsistencyProofRequest { old_size: old.size, new_size: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(c.new_size, cp.size);
    let proof = hashes(&c.hashes);
    bth_gateway::translog::merkle::verify_consistency(old.size, cp.size, &old.root, &cp.root, &proof).unwrap();
    let mut forged = old.root;
    forged[3] ^= 0x40;
    assert!(bth_gateway::translog::merkle::verify_consistency(old.size, cp.size, &forged, &cp.root, &proof).is_err());

    // Walking every checkpoint with FIRST_AT_LEAST reaches the latest.
    let mut size = 1;
    let mut walked = 0;
    loop {
        let c = audit
            .get_checkpoint(pb::GetCheckpointRequest {
                tree_size: size,
                r#match: pb::CheckpointMatch::FirstAtLeast as i32,
            })
            .await
            .unwrap()
            .into_inner();
        independent::open_checkpoint(&vkey, &c.note);
        walked += 1;
        if c.tree_size == cp.size {
            break;
        }
        size = c.tree_size + 1;
    }
    assert!(walked >= 5, "one checkpoint per integrated batch: {walked}");
}

#[tokio::test]
async fn a_consumer_cannot_read_another_consumers_transfer_records_but_an_auditor_and_the_exporter_can() {
    let t = TestGateway::start().await;
    let mut owner = published(&t).await;
    let mut alice = granted_consumer(&t, &mut owner, "tj-commerce").await;
    granted_consumer(&t, &mut owner, "tj-customs").await;
    let p = pull(&mut alice, pull_req("survey")).await.unwrap();
    let index = p.header.decision_index;

    let mut bob = audit_client(&t, "tj-customs").await;
    let err = bob.get_entries(entry_req(index, index + 1)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let err =
        bob.get_inclusion_proof(pb::GetInclusionProofRequest { leaf_index: index, tree_size: 0 }).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // Nor records about no transfer (a participant registration).
    let err = bob.get_entries(entry_req(0, 1)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // Nor a range that includes a foreign record.
    let err = bob.get_entries(entry_req(0, 0)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // Bob sees no transfer in ListTransfers; checkpoints and consistency proofs are public.
    let mine = bob.list_transfers(pb::ListTransfersRequest::default()).await.unwrap().into_inner();
    assert!(mine.transfers.is_empty());
    let latest = bob.get_checkpoint(pb::GetCheckpointRequest::default()).await.unwrap().into_inner();
    bob.get_consistency_proof(pb::GetConsistencyProofRequest { old_size: 1, new_size: latest.tree_size })
        .await
        .unwrap();

    // Alice reads her own records; so does the exporter; the auditor reads everything.
    let mut alice_audit = audit_client(&t, "tj-commerce").await;
    alice_audit.get_inclusion_proof(pb::GetInclusionProofRequest { leaf_index: index, tree_size: 0 }).await.unwrap();
    let theirs = alice_audit.list_transfers(pb::ListTransfersRequest::default()).await.unwrap().into_inner();
    assert_eq!(theirs.transfers.len(), 2, "decision and completion");
    let mut exporter = audit_client(&t, "tj-stats").await;
    exporter.get_entries(entry_req(index, index + 1)).await.unwrap();
    let mut auditor = auditor(&t).await;
    let all = auditor.get_entries(entry_req(0, latest.tree_size)).await.unwrap().into_inner();
    assert_eq!(all.entries.len() as u64, latest.tree_size);
    // The gateway logs the export policy it starts with before anything else.
    assert_eq!(all.entries[0].r#type, "policy.applied");
    assert_eq!(all.entries[1].r#type, "participant.registered");
}

#[tokio::test]
async fn list_transfers_filters_by_every_facet_and_time_and_pages_newest_first() {
    let t = TestGateway::start().await;
    let mut owner = published(&t).await;
    let mut alice = granted_consumer(&t, &mut owner, "tj-commerce").await;
    let mut hk = t
        .register("hk-univ", ParticipantKind::Other, RecipientType::Research, "HK", &[Role::Consumer], Level::G3)
        .await;
    granted(&mut owner, &mut hk, "survey", &["enterprise", "contact"], pb::Approve::default()).await;
    let start = t.clock.now_plus(Duration::zero());
    for _ in 0..3 {
        pull(&mut alice, pull_req("survey")).await.unwrap();
        t.clock.advance(Duration::minutes(1));
    }
    let middle = t.clock.now_plus(Duration::zero());
    let held = pull(&mut hk, pull_req("survey")).await.unwrap_err();
    assert_eq!(held.code(), Code::FailedPrecondition);
    t.clock.advance(Duration::minutes(1));
    pull(&mut alice, pull_req("survey")).await.unwrap();

    let audit = auditor(&t).await;
    let list = |req: pb::ListTransfersRequest| {
        let mut audit = audit.clone();
        async move { audit.list_transfers(req).await.unwrap().into_inner() }
    };
    let all = list(pb::ListTransfersRequest::default()).await;
    // 4 passed pulls (decision + completion) and one held decision.
    assert_eq!(all.transfers.len(), 9);
    assert!(all.next_page_token.is_empty());
    let times: Vec<i64> = all.transfers.iter().map(|r| r.at.unwrap().seconds).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
    let indexes: Vec<u64> = all.transfers.iter().map(|r| r.leaf_index).collect();
    assert!(indexes.windows(2).all(|w| w[0] > w[1]), "same order as the log here: {indexes:?}");
    for r in &all.transfers {
        let json: serde_json::Value = serde_json::from_str(&r.json).unwrap();
        assert_eq!(json["type"], r.r#type);
    }

    let exports =
        list(pb::ListTransfersRequest { direction: pb::TransferDirection::Export as i32, ..Default::default() }).await;
    assert_eq!(exports.transfers.len(), 1);
    let e = &exports.transfers[0];
    assert_eq!((e.recipient.as_str(), e.region.as_str(), e.action.as_str()), ("hk-univ", "HK", "HOLD"));
    assert!(e.export);
    assert_eq!(list(pb::ListTransfersRequest { region: "HK".into(), ..Default::default() }).await.transfers.len(), 1);
    assert_eq!(
        list(pb::ListTransfersRequest { action: "HOLD".into(), ..Default::default() }).await.transfers,
        exports.transfers
    );
    assert_eq!(
        list(pb::ListTransfersRequest { mechanism: e.mechanism.clone(), ..Default::default() }).await.transfers,
        exports.transfers
    );
    let domestic = list(pb::ListTransfersRequest {
        direction: pb::TransferDirection::Domestic as i32,
        recipient: "tj-commerce".into(),
        r#type: "transfer.completed".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(domestic.transfers.len(), 4);
    assert!(domestic.transfers.iter().all(|r| r.action == "COMPLETED" && !r.export));
    assert_eq!(
        list(pb::ListTransfersRequest {
            dataset_id: "survey".into(),
            exporter: "tj-stats".into(),
            ..Default::default()
        })
        .await
        .transfers
        .len(),
        9
    );
    assert!(list(pb::ListTransfersRequest { dataset_id: "other".into(), ..Default::default() })
        .await
        .transfers
        .is_empty());
    // Time range: [start, middle) holds the first three pulls.
    let early = list(pb::ListTransfersRequest { from: Some(start), to: Some(middle), ..Default::default() }).await;
    assert_eq!(early.transfers.len(), 6);
    let late = list(pb::ListTransfersRequest { from: Some(middle), ..Default::default() }).await;
    assert_eq!(late.transfers.len(), 3);

    // Paging: pages of 2 walk the same list without gaps or repeats.
    let mut walked = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(pb::ListTransfersRequest { page_size: 2, page_token: token, ..Default::default() }).await;
        assert!(page.transfers.len() <= 2);
        walked.extend(page.transfers);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(walked, all.transfers);
}

#[tokio::test]
async fn checkpoints_are_listed_ascending_in_pages_to_any_participant() {
    let t = TestGateway::start().await;
    let mut owner = published(&t).await;
    let mut alice = granted_consumer(&t, &mut owner, "tj-commerce").await;
    for _ in 0..3 {
        pull(&mut alice, pull_req("survey")).await.unwrap();
    }
    // A consumer, not an auditor: checkpoints reveal only hashes.
    let mut audit = audit_client(&t, "tj-commerce").await;
    let verifier = bth_gateway::translog::note::Verifier::new(t.gw.log.verifier_key()).unwrap();
    let (mut after, mut all) = (0, Vec::new());
    loop {
        let page = audit
            .list_checkpoints(pb::ListCheckpointsRequest { after_size: after, page_size: 2 })
            .await
            .unwrap()
            .into_inner()
            .checkpoints;
        for c in &page {
            let signed = verifier.verify_note(&c.note).unwrap();
            assert_eq!((signed.size, signed.root.to_vec()), (c.tree_size, c.root_hash.clone()));
            assert!(c.tree_size > after, "ascending, above after_size");
            after = c.tree_size;
        }
        all.extend(page.iter().map(|c| c.tree_size));
        if page.len() < 2 {
            break;
        }
    }
    assert!(all.len() >= 3, "{all:?}");
    let latest = audit.get_checkpoint(pb::GetCheckpointRequest::default()).await.unwrap().into_inner();
    assert_eq!(all.last(), Some(&latest.tree_size));
}

#[tokio::test]
async fn out_of_range_sizes_indexes_and_pages_are_invalid_arguments_naming_the_field() {
    use tonic_types::StatusExt;
    let t = TestGateway::start().await;
    let mut owner = published(&t).await;
    let mut alice = granted_consumer(&t, &mut owner, "tj-commerce").await;
    pull(&mut alice, pull_req("survey")).await.unwrap();
    let mut audit = auditor(&t).await;
    let size = audit.get_checkpoint(pb::GetCheckpointRequest::default()).await.unwrap().into_inner().tree_size;
    let field = |e: tonic::Status| {
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        e.get_details_bad_request().unwrap().field_violations[0].field.clone()
    };
    let incl = |leaf_index, tree_size| pb::GetInclusionProofRequest { leaf_index, tree_size };
    assert_eq!(field(audit.get_inclusion_proof(incl(size, 0)).await.unwrap_err()), "leaf_index");
    assert_eq!(field(audit.get_inclusion_proof(incl(0, size + 1)).await.unwrap_err()), "tree_size");
    assert_eq!(field(audit.get_inclusion_proof(incl(3, 3)).await.unwrap_err()), "leaf_index");
    let cons = |old_size, new_size| pb::GetConsistencyProofRequest { old_size, new_size };
    assert_eq!(field(audit.get_consistency_proof(cons(3, 2)).await.unwrap_err()), "old_size");
    assert_eq!(field(audit.get_consistency_proof(cons(1, size + 1)).await.unwrap_err()), "new_size");
    assert_eq!(field(audit.get_consistency_proof(cons(size + 1, 0)).await.unwrap_err()), "old_size");
    assert_eq!(
        field(audit.get_entries(pb::GetEntriesRequest { start: 0, end: 0, page_size: 1001 }).await.unwrap_err()),
        "page_size"
    );
    assert_eq!(
        field(audit.list_checkpoints(pb::ListCheckpointsRequest { after_size: 0, page_size: 1001 }).await.unwrap_err()),
        "page_size"
    );
    assert_eq!(field(audit.get_entries(entry_req(0, size + 1)).await.unwrap_err()), "end");
    assert_eq!(field(audit.get_entries(entry_req(5, 2)).await.unwrap_err()), "start");
    assert_eq!(
        field(
            audit.list_transfers(pb::ListTransfersRequest { page_size: 501, ..Default::default() }).await.unwrap_err()
        ),
        "page_size"
    );
    assert_eq!(
        field(
            audit
                .list_transfers(pb::ListTransfersRequest { page_token: "garbage".into(), ..Default::default() })
                .await
                .unwrap_err()
        ),
        "page_token"
    );
    // Paging entries: next_start walks to the end.
    let page = audit.get_entries(pb::GetEntriesRequest { start: 0, end: 0, page_size: 2 }).await.unwrap().into_inner();
    assert_eq!(page.entries.len(), 2);
    assert_eq!(page.next_start, Some(2));
    let last = audit.get_entries(entry_req(size - 1, 0)).await.unwrap().into_inner();
    assert_eq!((last.entries.len(), last.next_start), (1, None));
    let err = audit.get_checkpoint(pb::GetCheckpointRequest { tree_size: size + 100, r#match: 0 }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

// ---- `bth-gateway audit verify` and fail-closed ----

fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_bth-gateway"))
}

/// Runs SQL statements on a database file (as an attacker with file access would).
async fn sql(url: &str, statements: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
    sqlx::raw_sql(statements).execute(&mut conn).await.unwrap();
}

/// A gateway with some history (registrations, a dataset, grants, pulls), all integrated.
async fn with_history() -> TestGateway {
    let t = TestGateway::start().await;
    let mut owner = published(&t).await;
    let mut alice = granted_consumer(&t, &mut owner, "tj-commerce").await;
    for _ in 0..3 {
        pull(&mut alice, pull_req("survey")).await.unwrap();
    }
    t
}

/// A consistent standalone copy of the gateway's database at `path`.
async fn snapshot(t: &TestGateway, path: &std::path::Path) -> String {
    sql(&t.db_url, &format!("VACUUM INTO '{}'", path.display())).await;
    format!("sqlite:{}", path.display())
}

/// `audit verify --db PATH --verifier-key KEY` plus `extra`: (success, stdout, stderr).
fn verify_db(t: &TestGateway, db: &std::path::Path, extra: &[&std::ffi::OsStr]) -> (bool, String, String) {
    let out = bin()
        .args(["audit", "verify", "--db"])
        .arg(db)
        .args(["--verifier-key", t.gw.log.verifier_key()])
        .args(extra)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// Verifies a copy of `t`'s database after `statements` ran on it (as an attacker with the file
/// would): asserts that verification fails and returns what it printed on stderr.
async fn verify_fails_after(t: &TestGateway, statements: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("copy.db");
    let url = snapshot(t, &db).await;
    sql(&url, statements).await;
    let (ok, stdout, stderr) = verify_db(t, &db, &[]);
    assert!(!ok, "verification passed after: {statements}\n{stdout}");
    stderr
}

const DROP_APPEND_ONLY_TRIGGERS: &str = "DROP TRIGGER records_are_append_only_update;
     DROP TRIGGER records_are_append_only_delete;
     DROP TRIGGER records_leaf_index_is_set_once;";

#[tokio::test]
async fn audit_verify_reads_the_database_its_configuration_names_on_either_backend() {
    let t = with_history().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bth-gateway.toml"), format!("database_url = \"{}\"\n", t.db_url)).unwrap();
    let verify = || {
        let out = bin()
            .args(["audit", "verify", "--dir"])
            .arg(dir.path())
            .args(["--verifier-key", t.gw.log.verifier_key()])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, stdout, stderr) = verify();
    assert!(ok && stdout.starts_with("ok: "), "{stdout}{stderr}");
    // Read-only: the check wrote nothing (the gateway is idle).
    let records = t.count("SELECT COUNT(*) FROM records").await;
    // An interior node proofs are served from, altered in place.
    t.execute(
        "UPDATE tree_nodes SET hash = zeroblob(32) WHERE level = 1 AND idx = 0;",
        "UPDATE tree_nodes SET hash = decode(repeat('00', 32), 'hex') WHERE level = 1 AND idx = 0;",
    )
    .await;
    let (ok, stdout, stderr) = verify();
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("tree node at level 1, index 0: the stored hash differs"), "{stderr}");
    assert_eq!(t.count("SELECT COUNT(*) FROM records").await, records);
}

#[tokio::test]
async fn audit_verify_accepts_an_untouched_database() {
    let t = with_history().await;
    let Some(_) = t.sqlite_url("audit_verify_accepts_an_untouched_database") else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("copy.db");
    snapshot(&t, &db).await;
    let (ok, stdout, stderr) = verify_db(&t, &db, &[]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.starts_with("ok: "), "{stdout}");
    // A key of another log refuses every checkpoint.
    let other = bth_gateway::translog::note::Signer::from_seed(LOG_ORIGIN, &[2u8; 32]).unwrap().verifier_key();
    let out = bin().args(["audit", "verify", "--db"]).arg(&db).args(["--verifier-key", &other]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("checkpoint "), "{out:?}");
}

#[tokio::test]
async fn audit_verify_names_the_leaf_when_one_byte_of_a_stored_leaf_changes() {
    let t = with_history().await;
    let Some(_) = t.sqlite_url("audit_verify_names_the_leaf_when_one_byte_of_a_stored_leaf_changes") else { return };
    let stderr = verify_fails_after(
        &t,
        &format!(
            "{DROP_APPEND_ONLY_TRIGGERS}
             UPDATE records SET json = replace(json, '\"schema\":1', '\"schema\":2') WHERE leaf_index = 5;"
        ),
    )
    .await;
    assert!(stderr.contains("leaf 5:"), "{stderr}");
}

#[tokio::test]
async fn audit_verify_names_the_tree_node_when_an_interior_node_is_altered_or_missing() {
    let t = with_history().await;
    let Some(_) = t.sqlite_url("audit_verify_names_the_tree_node_when_an_interior_node_is_altered_or_missing") else {
        return;
    };
    // Leaves and checkpoints untouched: only what inclusion proofs are served from.
    for (statements, named) in [
        (
            "UPDATE tree_nodes SET hash = zeroblob(32) WHERE level = 2 AND idx = 1;",
            "level 2, index 1: the stored hash differs",
        ),
        ("DELETE FROM tree_nodes WHERE level = 1 AND idx = 2;", "level 1, index 2: not stored"),
        ("DELETE FROM tree_nodes WHERE level = 0 AND idx = 3;", "level 0, index 3: not stored"),
    ] {
        let stderr = verify_fails_after(&t, statements).await;
        assert!(stderr.contains(&format!("tree node at {named}")), "{statements}: {stderr}");
    }
}

#[tokio::test]
async fn audit_verify_names_the_leaf_when_a_record_is_deleted() {
    let t = with_history().await;
    let Some(_) = t.sqlite_url("audit_verify_names_the_leaf_when_a_record_is_deleted") else { return };
    let stderr =
        verify_fails_after(&t, &format!("{DROP_APPEND_ONLY_TRIGGERS} DELETE FROM records WHERE leaf_index = 4;")).await;
    assert!(stderr.contains("leaf 4 is missing"), "{stderr}");
}

#[tokio::test]
async fn audit_verify_names_the_leaf_when_two_records_json_are_swapped() {
    let t = with_history().await;
    let Some(_) = t.sqlite_url("audit_verify_names_the_leaf_when_two_records_json_are_swapped") else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("copy.db");
    let url = snapshot(&t, &db).await;
    sql(
        &url,
        &format!(
            "{DROP_APPEND_ONLY_TRIGGERS}
             UPDATE records SET json = CASE leaf_index
                 WHEN 2 THEN (SELECT json FROM records WHERE leaf_index = 6)
                 ELSE (SELECT json FROM records WHERE leaf_index = 2) END
             WHERE leaf_index IN (2, 6);"
        ),
    )
    .await;
    assert!(t.count("SELECT COUNT(*) FROM records WHERE leaf_index IS NOT NULL").await > 6);
    let (ok, stdout, stderr) = verify_db(&t, &db, &[]);
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("leaf 2:"), "{stderr}");
}

#[tokio::test]
async fn audit_verify_names_the_checkpoint_when_leaves_and_tree_are_rewritten_together() {
    let t = with_history().await;
    let Some(_) = t.sqlite_url("audit_verify_names_the_checkpoint_when_leaves_and_tree_are_rewritten_together") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("copy.db");
    let url = snapshot(&t, &db).await;
    // A careful attacker also rewrites the stored leaf hash; the signed roots still catch it.
    let json: String = {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query_scalar("SELECT json FROM records WHERE leaf_index = 3").fetch_one(&mut conn).await.unwrap()
    };
    let forged = json.replacen("\"schema\":1", "\"schema\":3", 1);
    let hash = hex::encode(bth_gateway::translog::merkle::leaf_hash(forged.as_bytes()));
    sql(
        &url,
        &format!(
            "{DROP_APPEND_ONLY_TRIGGERS}
             UPDATE records SET json = '{}' WHERE leaf_index = 3;
             UPDATE tree_nodes SET hash = X'{hash}' WHERE level = 0 AND idx = 3;",
            forged.replace('\'', "''")
        ),
    )
    .await;
    // The interior nodes above it now differ from their children, but the signed root names the
    // real culprit: the leaves.
    let (ok, _, stderr) = verify_db(&t, &db, &[]);
    assert!(!ok);
    assert!(stderr.contains("checkpoint ") && stderr.contains("differs from the signed root"), "{stderr}");
    // Recomputing every stored interior node from the forged leaves changes nothing.
    {
        use bth_gateway::translog::merkle;
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let rows: Vec<(i64, i64, Vec<u8>)> =
            sqlx::query_as("SELECT level, idx, hash FROM tree_nodes ORDER BY level, idx")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        let mut nodes: std::collections::HashMap<(i64, i64), [u8; 32]> =
            rows.iter().map(|(l, i, h)| ((*l, *i), h.as_slice().try_into().unwrap())).collect();
        for (level, idx, _) in rows.iter().filter(|(l, _, _)| *l > 0) {
            let hash = merkle::node_hash(&nodes[&(level - 1, 2 * idx)], &nodes[&(level - 1, 2 * idx + 1)]);
            nodes.insert((*level, *idx), hash);
            sqlx::query("UPDATE tree_nodes SET hash = ? WHERE level = ? AND idx = ?")
                .bind(hash.to_vec())
                .bind(level)
                .bind(idx)
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
    let (ok, _, stderr) = verify_db(&t, &db, &[]);
    assert!(!ok);
    assert!(stderr.contains("checkpoint ") && stderr.contains("differs from the signed root"), "{stderr}");
}

#[tokio::test]
async fn a_saved_checkpoint_is_trusted_by_the_next_verification_and_a_rewritten_or_truncated_log_fails_it() {
    let t = with_history().await;
    let Some(_) = t
        .sqlite_url("a_saved_checkpoint_is_trusted_by_the_next_verification_and_a_rewritten_or_truncated_log_fails_it")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (first, second, saved1, saved2) = (
        dir.path().join("first.db"),
        dir.path().join("second.db"),
        dir.path().join("checkpoint-1.txt"),
        dir.path().join("checkpoint-2.txt"),
    );
    snapshot(&t, &first).await;
    let (ok, stdout, stderr) = verify_db(&t, &first, &["--save".as_ref(), saved1.as_os_str()]);
    assert!(ok, "{stdout}{stderr}");
    let note1 = std::fs::read_to_string(&saved1).unwrap();
    let size1: u64 = note1.lines().nth(1).unwrap().parse().unwrap();

    // The log grows; the new state is consistent with the saved checkpoint.
    let mut alice = t.client("tj-commerce").await;
    pull(&mut alice, pull_req("survey")).await.unwrap();
    pull(&mut alice, pull_req("survey")).await.unwrap();
    snapshot(&t, &second).await;
    let (ok, stdout, stderr) =
        verify_db(&t, &second, &["--trusted".as_ref(), saved1.as_os_str(), "--save".as_ref(), saved2.as_os_str()]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains(&format!("consistent with the trusted checkpoint of tree size {size1}")), "{stdout}");
    let size2: u64 = std::fs::read_to_string(&saved2).unwrap().lines().nth(1).unwrap().parse().unwrap();
    assert!(size2 > size1);

    // The older copy is shorter than the newer saved checkpoint: truncated.
    let (ok, _, stderr) = verify_db(&t, &first, &["--trusted".as_ref(), saved2.as_os_str()]);
    assert!(!ok);
    assert!(stderr.contains(&format!("trusted checkpoint {size2}")), "{stderr}");

    // Another log signed with the same key (a rewritten history) is not consistent with it.
    let other = with_history().await;
    let mut bob = granted_consumer(&other, &mut other.client("tj-stats").await, "tj-customs").await;
    for _ in 0..4 {
        pull(&mut bob, pull_req("survey")).await.unwrap();
    }
    let forked = dir.path().join("forked.db");
    snapshot(&other, &forked).await;
    let (ok, _, stderr) = verify_db(&other, &forked, &[]);
    assert!(ok, "on its own the other log verifies: {stderr}");
    let (ok, _, stderr) = verify_db(&other, &forked, &["--trusted".as_ref(), saved1.as_os_str()]);
    assert!(!ok);
    assert!(stderr.contains(&format!("trusted checkpoint {size1}")), "{stderr}");
}

#[tokio::test]
async fn audit_verify_reads_a_running_gateway_with_an_auditors_certificate() {
    let t = with_history().await;
    t.register("auditor", ParticipantKind::StateOrgan, RecipientType::GovDept, "CN-TJ", &[Role::Auditor], Level::G1)
        .await;
    let mut alice = t.client("tj-commerce").await;
    pull(&mut alice, pull_req("survey")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let leaf = pki::issue(&t.ca, "auditor", LeafKind::Client).unwrap();
    let (ca, cert, key, saved) = (
        dir.path().join("ca.pem"),
        dir.path().join("auditor.pem"),
        dir.path().join("auditor.key"),
        dir.path().join("checkpoint.txt"),
    );
    std::fs::write(&ca, &t.ca.cert).unwrap();
    std::fs::write(&cert, &leaf.cert).unwrap();
    std::fs::write(&key, &leaf.key).unwrap();
    // The command runs on a blocking thread: this test's runtime also serves the gateway.
    let remote = |extra: &[&std::ffi::OsStr]| {
        let mut cmd = bin();
        cmd.args(["audit", "verify", "--server", &format!("https://localhost:{}", t.addr.port())])
            .arg("--ca")
            .arg(&ca)
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .args(["--verifier-key", t.gw.log.verifier_key()])
            .args(extra);
        async move {
            let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).to_string(),
                String::from_utf8_lossy(&out.stderr).to_string(),
            )
        }
    };
    let (ok, stdout, stderr) = remote(&["--save".as_ref(), saved.as_os_str()]).await;
    assert!(ok, "{stdout}{stderr}");
    pull(&mut alice, pull_req("survey")).await.unwrap();
    let (ok, stdout, stderr) = remote(&["--trusted".as_ref(), saved.as_os_str()]).await;
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("consistent with the trusted checkpoint"), "{stdout}");

    // A consumer's certificate cannot read the whole log.
    let consumer = pki::issue(&t.ca, "tj-commerce", LeafKind::Client).unwrap();
    std::fs::write(&cert, &consumer.cert).unwrap();
    std::fs::write(&key, &consumer.key).unwrap();
    let (ok, _, stderr) = remote(&[]).await;
    assert!(!ok);
    assert!(stderr.contains("PermissionDenied") || stderr.contains("permission"), "{stderr}");
}

#[tokio::test]
async fn audit_key_prints_the_working_directorys_verifier_key_and_verify_uses_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin().arg("init").arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = bin().args(["audit", "key", "--dir"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let key = String::from_utf8(out.stdout).unwrap();
    let verifier = bth_gateway::translog::note::Verifier::new(key.trim()).unwrap();
    assert_eq!(verifier.name(), "bth-gateway.tianjin/transfer-log/v1");
    let out = bin().args(["audit", "verify", "--dir"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test]
async fn a_pull_is_unavailable_and_sends_nothing_when_the_log_cannot_be_written() {
    let t = TestGateway::start().await;
    let mut owner = published(&t).await;
    let mut alice = granted_consumer(&t, &mut owner, "tj-commerce").await;
    pull(&mut alice, pull_req("survey")).await.unwrap();
    let records = t.count("SELECT COUNT(*) FROM records").await;
    let checkpoints = t.count("SELECT COUNT(*) FROM checkpoints").await;
    t.execute(
        "CREATE TRIGGER records_unwritable BEFORE INSERT ON records BEGIN SELECT RAISE(ABORT, 'disk says no'); END;",
        "CREATE FUNCTION disk_says_no() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk says no'; END $$;
         CREATE TRIGGER records_unwritable BEFORE INSERT ON records FOR EACH ROW EXECUTE FUNCTION disk_says_no();",
    )
    .await;

    let mut received = 0;
    let status = match alice.exchange.pull(pull_req("survey")).await {
        Err(status) => status,
        Ok(response) => {
            let mut stream = response.into_inner();
            loop {
                match stream.message().await {
                    Ok(Some(_)) => received += 1,
                    Ok(None) => panic!("the pull completed without a log"),
                    Err(status) => break status,
                }
            }
        }
    };
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(received, 0, "not even a header is sent");
    assert_eq!(t.count("SELECT COUNT(*) FROM records").await, records);
    assert_eq!(t.count("SELECT COUNT(*) FROM checkpoints").await, checkpoints);

    // Once the log is writable again, pulls proceed and the log still verifies.
    t.execute("DROP TRIGGER records_unwritable;", "DROP TRIGGER records_unwritable ON records;").await;
    let p = pull(&mut alice, pull_req("survey")).await.unwrap();
    assert_eq!(p.trailer.rows, 10);
    let Some(_) = t.sqlite_url("the log still verifies offline") else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("copy.db");
    snapshot(&t, &db).await;
    let (ok, stdout, stderr) = verify_db(&t, &db, &[]);
    assert!(ok, "{stdout}{stderr}");
}

#[tokio::test]
async fn list_transfers_refuses_an_unknown_action_or_mechanism_naming_the_field() {
    use tonic_types::StatusExt;
    let t = TestGateway::start().await;
    let mut audit = auditor(&t).await;
    let field = |e: tonic::Status| {
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        e.get_details_bad_request().unwrap().field_violations[0].field.clone()
    };
    let bogus = pb::ListTransfersRequest { action: "BOGUS".into(), ..Default::default() };
    assert_eq!(field(audit.list_transfers(bogus).await.unwrap_err()), "action");
    // An approval type is not a mechanism (the filter once answered nothing for it).
    let cac = pb::ListTransfersRequest { mechanism: "CAC_SA".into(), ..Default::default() };
    assert_eq!(field(audit.list_transfers(cac).await.unwrap_err()), "mechanism");
    for action in ["PASS", "REVOKED", "INTERRUPTED", "DENIED"] {
        audit.list_transfers(pb::ListTransfersRequest { action: action.into(), ..Default::default() }).await.unwrap();
    }
    let held = pb::ListTransfersRequest { mechanism: "REQUIRES_SECURITY_ASSESSMENT".into(), ..Default::default() };
    audit.list_transfers(held).await.unwrap();
}

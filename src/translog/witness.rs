//! The C2SP tlog-witness `add-checkpoint` protocol, pure: the request body's format and the
//! checks a witness makes, in the spec's order, with the HTTP status of each refusal.
//!
//! What is left to the caller (`crate::witness`): finding the log's keys by origin (404 when
//! unknown), reading the witness's latest size and root for it, and recording the new
//! checkpoint with compare-and-swap **before** answering with the cosignature.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::translog::merkle::{empty_root, verify_consistency, Hash, ProofError};
use crate::translog::note::{decode_hash, parse_checkpoint_unverified, parse_decimal, Checkpoint, Verifier};

/// At most this many consistency proof lines (the spec's bound).
pub const MAX_PROOF_LINES: usize = 63;
/// `Content-Type` of a 409 answer: the witness's latest size.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// A parsed `add-checkpoint` request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size of the checkpoint the client believes the witness holds.
    pub old: u64,
    /// Consistency proof from `old` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, verbatim.
    pub note: String,
}

/// Why a witness refuses an `add-checkpoint` request, with the status the spec gives it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 400: the body does not follow the format, or `old` exceeds the checkpoint's size.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 404: the witness knows no log of this origin.
    #[error("unknown log origin {0:?}")]
    UnknownLog(String),
    /// 403: no signature of a key the witness trusts for the origin verifies.
    #[error("no signature by a trusted key of the log verifies")]
    Forbidden,
    /// 409: `old` is not the witness's latest size, or the same size with another root. Carries
    /// the witness's latest size (the answer's body).
    #[error("the witness's latest checkpoint of this log has size {0}")]
    Conflict(u64),
    /// 422: the consistency proof does not verify.
    #[error("the consistency proof does not verify: {0}")]
    InvalidProof(ProofError),
}

impl Refusal {
    /// The HTTP status code of the refusal.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::BadRequest(_) => 400,
            Refusal::Forbidden => 403,
            Refusal::UnknownLog(_) => 404,
            Refusal::Conflict(_) => 409,
            Refusal::InvalidProof(_) => 422,
        }
    }

    /// The answer's body: the latest size and a newline for 409 (`text/x.tlog.size`), the
    /// reason otherwise.
    pub fn body(&self) -> String {
        match self {
            Refusal::Conflict(size) => format!("{size}\n"),
            other => format!("{other}\n"),
        }
    }
}

fn bad(why: &str) -> Refusal {
    Refusal::BadRequest(why.to_owned())
}

/// The body of an `add-checkpoint` request: `old <size>`, one base64 hash per line, an empty
/// line, then the signed checkpoint note.
pub fn format_add_checkpoint(old: u64, proof: &[Hash], note: &str) -> String {
    let mut out = format!("old {old}\n");
    for h in proof {
        out.push_str(&B64.encode(h));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(note);
    out
}

/// Parses an `add-checkpoint` request body.
///
/// # Errors
/// [`Refusal::BadRequest`] naming the first violation: the `old` line (decimal without leading
/// zeros), a proof line that is not base64 of 32 bytes, more than 63 of them, no empty line, a
/// note that is not a checkpoint.
pub fn parse_add_checkpoint(body: &str) -> Result<AddCheckpoint, Refusal> {
    let (first, mut rest) = body.split_once('\n').ok_or_else(|| bad("missing the old size line"))?;
    let old = first
        .strip_prefix("old ")
        .and_then(parse_decimal)
        .ok_or_else(|| bad("the first line must be 'old <decimal size without leading zeros>'"))?;
    let mut proof = Vec::new();
    loop {
        let (line, tail) = rest.split_once('\n').ok_or_else(|| bad("missing the empty line before the checkpoint"))?;
        rest = tail;
        if line.is_empty() {
            break;
        }
        if proof.len() == MAX_PROOF_LINES {
            return Err(bad("more than 63 consistency proof lines"));
        }
        proof.push(decode_hash(line).ok_or_else(|| bad("a consistency proof line is not base64 of 32 bytes"))?);
    }
    // The checkpoint must be a signed note (a body, an empty line, signature lines).
    if !rest.contains("\n\n") {
        return Err(bad("the checkpoint is not a signed note"));
    }
    parse_checkpoint_unverified(rest).map_err(|e| Refusal::BadRequest(format!("checkpoint: {e}")))?;
    Ok(AddCheckpoint { old, proof, note: rest.to_owned() })
}

impl AddCheckpoint {
    /// The checkpoint's origin (to find the log's keys and the witness's state), unverified.
    pub fn origin(&self) -> String {
        parse_checkpoint_unverified(&self.note).map(|c| c.origin).unwrap_or_default()
    }

    /// The note's body (what a cosignature signs, extension lines included).
    pub fn body(&self) -> &str {
        // `parse_add_checkpoint` made sure the note has its empty line.
        self.note.rfind("\n\n").map_or(&self.note[..], |i| &self.note[..=i])
    }
}

/// What the witness recorded of a log: the latest checkpoint it cosigned (size 0 and the empty
/// tree's root when it never cosigned one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latest {
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
}

impl Latest {
    /// The state of a log never cosigned.
    pub fn none() -> Latest {
        Latest { size: 0, root: empty_root() }
    }
}

/// The checks of `add-checkpoint` after the origin was found: the log's signature by one of
/// `keys` (403), `old` not above the checkpoint's size (400), `old` equal to the witness's
/// latest size (409 with it), the consistency proof from the latest checkpoint (422), and at
/// equal sizes equal roots (409). On success, the checkpoint the witness must record (with
/// compare-and-swap against `latest`) before it cosigns.
///
/// # Errors
/// The [`Refusal`] of the first check that fails.
pub fn check(request: &AddCheckpoint, keys: &[Verifier], latest: &Latest) -> Result<Checkpoint, Refusal> {
    let checkpoint = keys.iter().find_map(|k| k.verify_note(&request.note).ok()).ok_or(Refusal::Forbidden)?;
    if request.old > checkpoint.size {
        return Err(Refusal::BadRequest(format!(
            "old size {} exceeds the checkpoint's size {}",
            request.old, checkpoint.size
        )));
    }
    if request.old != latest.size {
        return Err(Refusal::Conflict(latest.size));
    }
    if request.old == checkpoint.size {
        if !request.proof.is_empty() {
            return Err(Refusal::InvalidProof(ProofError::WrongProofLength { got: request.proof.len(), expected: 0 }));
        }
        if checkpoint.root != latest.root {
            return Err(Refusal::Conflict(latest.size));
        }
        return Ok(checkpoint);
    }
    verify_consistency(latest.size, checkpoint.size, &latest.root, &checkpoint.root, &request.proof)
        .map_err(Refusal::InvalidProof)?;
    Ok(checkpoint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translog::merkle::{consistency_proof, MemoryTree};
    use crate::translog::note::Signer;

    const ORIGIN: &str = "log.example/v1";

    fn signer() -> Signer {
        Signer::from_seed(ORIGIN, &[5u8; 32]).unwrap()
    }

    fn tree(n: u64, salt: &str) -> MemoryTree {
        let mut t = MemoryTree::new();
        for i in 0..n {
            t.push(format!("{salt}{i}").as_bytes());
        }
        t
    }

    fn note_of(t: &MemoryTree) -> String {
        signer().sign_checkpoint(&Checkpoint { origin: ORIGIN.into(), size: t.size(), root: t.root() })
    }

    fn request(old: u64, t: &MemoryTree) -> AddCheckpoint {
        let proof = if old == 0 || old == t.size() { Vec::new() } else { consistency_proof(old, t.size(), t).unwrap() };
        parse_add_checkpoint(&format_add_checkpoint(old, &proof, &note_of(t))).unwrap()
    }

    fn latest(t: &MemoryTree) -> Latest {
        Latest { size: t.size(), root: t.root() }
    }

    #[test]
    fn the_spec_example_body_parses() {
        let note = note_of(&tree(3, "a"));
        let body = format!(
            "old 20852014\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\njrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n\n{note}"
        );
        let r = parse_add_checkpoint(&body).unwrap();
        assert_eq!((r.old, r.proof.len(), r.note.as_str()), (20852014, 2, note.as_str()));
        assert_eq!(r.origin(), ORIGIN);
        assert_eq!(format_add_checkpoint(r.old, &r.proof, &r.note), body);
    }

    #[test]
    fn malformed_bodies_are_400() {
        let note = note_of(&tree(3, "a"));
        let h = B64.encode([1u8; 32]);
        let bad = [
            String::new(),
            format!("old 01\n\n{note}"),
            format!("old -1\n\n{note}"),
            format!("old\n\n{note}"),
            format!("new 1\n\n{note}"),
            format!("old 1\nAAAA\n\n{note}"),
            format!("old 1\n{h}\n{note}"),
            format!("old 1\n{}\n{note}", format!("{h}\n").repeat(64)),
            "old 1\n\nlog.example/v1\n3\n".to_owned(),
            format!("old 1\n\n{}", note.replacen("\n3\n", "\nthree\n", 1)),
            format!("old 1\n\n{}", note.trim_end()),
        ];
        for b in &bad {
            let r = parse_add_checkpoint(b);
            assert!(matches!(r, Err(Refusal::BadRequest(_))), "{b:?}: {r:?}");
            assert_eq!(r.unwrap_err().status(), 400);
        }
        // 63 proof lines are allowed.
        assert!(parse_add_checkpoint(&format!("old 1\n{}\n{note}", format!("{h}\n").repeat(63))).is_ok());
    }

    #[test]
    fn a_fresh_log_is_cosigned_from_zero_then_extended_with_a_proof() {
        let keys = [signer().verifier()];
        let t5 = tree(5, "a");
        let cp = check(&request(0, &t5), &keys, &Latest::none()).unwrap();
        assert_eq!((cp.size, cp.root), (5, t5.root()));
        let t9 = tree(9, "a");
        assert_eq!(check(&request(5, &t9), &keys, &latest(&t5)).unwrap().size, 9);
        // The same checkpoint again is cosigned again (no proof).
        assert_eq!(check(&request(9, &t9), &keys, &latest(&t9)).unwrap().size, 9);
        // An empty log can be cosigned too.
        assert_eq!(check(&request(0, &tree(0, "a")), &keys, &Latest::none()).unwrap().size, 0);
    }

    #[test]
    fn every_refusal_has_the_spec_status() {
        let keys = [signer().verifier()];
        let (t5, t9) = (tree(5, "a"), tree(9, "a"));
        // 403: signed by a key the witness does not trust for the origin.
        let other = Signer::from_seed(ORIGIN, &[6u8; 32]).unwrap();
        let forged = other.sign_checkpoint(&Checkpoint { origin: ORIGIN.into(), size: 9, root: t9.root() });
        let r = AddCheckpoint { old: 0, proof: vec![], note: forged };
        assert_eq!(check(&r, &keys, &Latest::none()).unwrap_err().status(), 403);
        assert_eq!(check(&request(0, &t9), &[], &Latest::none()).unwrap_err(), Refusal::Forbidden);
        // 400: old above the checkpoint's size.
        let mut r = request(0, &t5);
        r.old = 6;
        assert_eq!(check(&r, &keys, &Latest::none()).unwrap_err().status(), 400);
        // 409: old is not the witness's size, the body is its size.
        let e = check(&request(0, &t9), &keys, &latest(&t5)).unwrap_err();
        assert_eq!((e.status(), e.body()), (409, "5\n".to_owned()));
        let e = check(&request(5, &t9), &keys, &Latest::none()).unwrap_err();
        assert_eq!(e, Refusal::Conflict(0));
        // 422: a proof that does not verify (altered, truncated, or for another tree).
        let mut r = request(5, &t9);
        r.proof[0][0] ^= 1;
        assert_eq!(check(&r, &keys, &latest(&t5)).unwrap_err().status(), 422);
        let mut r = request(5, &t9);
        r.proof.pop();
        assert_eq!(check(&r, &keys, &latest(&t5)).unwrap_err().status(), 422);
        let mut r = request(0, &t9);
        r.proof = vec![[0u8; 32]];
        assert_eq!(check(&r, &keys, &Latest::none()).unwrap_err().status(), 422);
        // Same size, other root: 409; same size with a proof: 422.
        let fork5 = tree(5, "b");
        assert_eq!(check(&request(5, &fork5), &keys, &latest(&t5)).unwrap_err(), Refusal::Conflict(5));
        let mut r = request(5, &t5);
        r.proof = vec![[0u8; 32]];
        assert_eq!(check(&r, &keys, &latest(&t5)).unwrap_err().status(), 422);
    }

    #[test]
    fn forks_and_truncations_are_refused() {
        let keys = [signer().verifier()];
        let honest = tree(8, "a");
        // A fork from leaf 0: its proof, computed honestly from the forked tree, cannot lead from
        // the root the witness holds.
        let fork = tree(8, "b");
        let e = check(&request(5, &fork), &keys, &latest(&tree(5, "a"))).unwrap_err();
        assert!(matches!(e, Refusal::InvalidProof(_)), "{e:?}");
        // A fork after the witnessed prefix: leaves 0..5 shared, then different.
        let mut split = tree(5, "a");
        for i in 5..8 {
            split.push(format!("x{i}").as_bytes());
        }
        assert!(check(&request(5, &split), &keys, &latest(&tree(5, "a"))).is_ok(), "consistent with what was seen");
        assert!(matches!(check(&request(8, &split), &keys, &latest(&honest)), Err(Refusal::Conflict(8))));
        // A truncation: the log shrank below what the witness cosigned.
        let e = check(&request(5, &tree(5, "a")), &keys, &latest(&honest)).unwrap_err();
        assert_eq!(e, Refusal::Conflict(8));
        let mut r = request(5, &tree(5, "a"));
        r.old = 8;
        assert_eq!(check(&r, &keys, &latest(&honest)).unwrap_err().status(), 400);
    }
}

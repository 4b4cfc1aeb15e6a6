//! C2SP tlog-cosignature/v1 (Ed25519): a witness's timestamped signature over a checkpoint,
//! carried as one more signature line of the checkpoint's signed note.
//!
//! The signed message is `cosignature/v1\ntime <unix seconds>\n` followed by the whole
//! checkpoint body; the signature line's blob is `key ID ‖ u64 big-endian timestamp ‖ Ed25519
//! signature`, and the key ID is computed with signature type `0x04`. A verifier key is
//! `<name>+<8 hex key ID>+<base64(0x04 ‖ public key)>`.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::signature::{self, Ed25519KeyPair, KeyPair};

use crate::translog::note::{
    check_body, key_id_with, parse_verifier_key, split_note, valid_key_name, Checkpoint, NoteError, SigLine, SIG_PREFIX,
};

/// Signature type of an Ed25519 tlog-cosignature/v1 key (in its key ID and verifier key).
pub const ALG_COSIGNATURE_V1: u8 = 0x04;
/// The domain-separation header line of the signed message.
const HEADER: &str = "cosignature/v1\n";
/// Key ID, timestamp and Ed25519 signature.
const BLOB_LEN: usize = 4 + 8 + 64;

/// The message a cosignature signs: header, `time <secs>`, then the checkpoint body verbatim.
pub fn signed_message(body: &str, time: u64) -> String {
    format!("{HEADER}time {time}\n{body}")
}

/// An Ed25519 cosigner (a witness's key): a key name and the key pair of a 32-byte seed.
///
/// `Debug` shows the name and key ID only, never the secret.
pub struct Cosigner {
    name: String,
    key_pair: Ed25519KeyPair,
    key_id: u32,
}

impl fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cosigner")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl Cosigner {
    /// A cosigner named `name` (a schema-less URL such as `witness.example/w1`) with the Ed25519
    /// key of `seed`.
    ///
    /// # Errors
    /// [`NoteError::InvalidKeyName`] for an empty name or one with whitespace or `+`;
    /// [`NoteError::InvalidSeed`] if ring rejects the seed.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Cosigner, NoteError> {
        if !valid_key_name(name) {
            return Err(NoteError::InvalidKeyName(name.to_owned()));
        }
        let key_pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| NoteError::InvalidSeed)?;
        let key_id = key_id_with(name, ALG_COSIGNATURE_V1, key_pair.public_key().as_ref());
        Ok(Cosigner { name: name.to_owned(), key_pair, key_id })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID (signature type 0x04).
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    fn public_key(&self) -> [u8; 32] {
        let mut pk = [0u8; 32];
        pk.copy_from_slice(self.key_pair.public_key().as_ref());
        pk
    }

    /// `<name>+<8 hex key ID>+<base64(0x04 ‖ public key)>`.
    pub fn verifier_key(&self) -> String {
        self.verifier().verifier_key()
    }

    /// The verifier of this cosigner's signatures.
    pub fn verifier(&self) -> CosignatureVerifier {
        CosignatureVerifier { name: self.name.clone(), key_id: self.key_id, public_key: self.public_key() }
    }

    /// The cosignature line (`— <name> <base64(key ID ‖ time ‖ signature)>\n`) over the
    /// checkpoint note body `body` at `time` (POSIX seconds).
    ///
    /// # Errors
    /// [`NoteError::MalformedNote`] for a body that is not a note body (empty, no final newline,
    /// an empty line, a control character); [`NoteError::MalformedCheckpoint`] for a time at or
    /// above 2^63.
    pub fn cosign(&self, body: &str, time: u64) -> Result<String, NoteError> {
        check_body(body)?;
        if time > i64::MAX as u64 {
            return Err(NoteError::MalformedCheckpoint("cosignature time must be below 2^63"));
        }
        let sig = self.key_pair.sign(signed_message(body, time).as_bytes());
        let mut blob = Vec::with_capacity(BLOB_LEN);
        blob.extend_from_slice(&self.key_id.to_be_bytes());
        blob.extend_from_slice(&time.to_be_bytes());
        blob.extend_from_slice(sig.as_ref());
        Ok(format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(blob)))
    }
}

/// The verifier of one cosigner's tlog-cosignature/v1 signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignatureVerifier {
    name: String,
    key_id: u32,
    public_key: [u8; 32],
}

impl CosignatureVerifier {
    /// Parses `<name>+<8 hex key ID>+<base64(0x04 ‖ 32-byte Ed25519 key)>`.
    ///
    /// # Errors
    /// [`NoteError::MalformedVerifierKey`] naming what is wrong (shape, hex, base64, a signature
    /// type other than 0x04 — a log's 0x01 key is not a witness key —, length, a key ID that
    /// does not match); [`NoteError::InvalidKeyName`] for a bad name.
    pub fn new(vkey: &str) -> Result<CosignatureVerifier, NoteError> {
        let (name, key_id, public_key) =
            parse_verifier_key(vkey, ALG_COSIGNATURE_V1, "not a cosignature/v1 key (signature type must be 0x04)")?;
        Ok(CosignatureVerifier { name, key_id, public_key })
    }

    /// The cosigner's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The verifier key string.
    pub fn verifier_key(&self) -> String {
        let mut key = Vec::with_capacity(33);
        key.push(ALG_COSIGNATURE_V1);
        key.extend_from_slice(&self.public_key);
        format!("{}+{:08x}+{}", self.name, self.key_id, B64.encode(key))
    }

    fn matches(&self, line: &SigLine<'_>) -> bool {
        line.name == self.name && line.key_id == self.key_id
    }

    fn check(&self, body: &str, line: &SigLine<'_>) -> Result<u64, NoteError> {
        // `SigLine::sig` is the blob after the key ID: timestamp and signature.
        if line.sig.len() != BLOB_LEN - 4 {
            return Err(NoteError::InvalidSignature);
        }
        let time = u64::from_be_bytes(line.sig[..8].try_into().expect("8 bytes"));
        if time > i64::MAX as u64 {
            return Err(NoteError::InvalidSignature);
        }
        signature::UnparsedPublicKey::new(&signature::ED25519, &self.public_key)
            .verify(signed_message(body, time).as_bytes(), &line.sig[8..])
            .map_err(|_| NoteError::InvalidSignature)?;
        Ok(time)
    }

    /// Verifies this cosigner's signature on a signed checkpoint note: the checkpoint and the
    /// cosignature's time. Other signature lines (the log's, other witnesses') are ignored, so
    /// check the log's own signature with [`crate::translog::note::Verifier`].
    ///
    /// # Errors
    /// [`NoteError::MalformedNote`] / [`NoteError::MalformedCheckpoint`] on bad syntax;
    /// [`NoteError::NoMatchingSignature`] if no line has this name and key ID;
    /// [`NoteError::InvalidSignature`] if that line does not verify.
    pub fn verify(&self, note: &str) -> Result<(Checkpoint, u64), NoteError> {
        let (body, sigs) = split_note(note)?;
        let line = sigs.iter().find(|s| self.matches(s)).ok_or(NoteError::NoMatchingSignature)?;
        let time = self.check(body, line)?;
        Ok((Checkpoint::from_body(body)?, time))
    }
}

impl FromStr for CosignatureVerifier {
    type Err = NoteError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CosignatureVerifier::new(s)
    }
}

/// The signature lines of `response` (a tlog-witness `add-checkpoint` 200 body) made by
/// `witness` over `note`'s body and valid: each line verbatim with its time. Lines of unknown
/// keys are ignored, as the spec requires.
///
/// # Errors
/// [`NoteError::MalformedNote`] when the response is not signature lines or `note` is not a
/// note; [`NoteError::NoMatchingSignature`] when no line is the witness's;
/// [`NoteError::InvalidSignature`] when its line does not verify.
pub fn accept_cosignature(
    note: &str,
    response: &str,
    witness: &CosignatureVerifier,
) -> Result<(String, u64), NoteError> {
    let (body, _) = split_note(note)?;
    let joined = format!("{body}\n{response}");
    let (_, lines) = split_note(&joined)?;
    // `split_note` parses the signature block line by line: the texts and the parsed lines pair up.
    let (text, line) = response
        .split_inclusive('\n')
        .zip(&lines)
        .find(|(_, l)| witness.matches(l))
        .ok_or(NoteError::NoMatchingSignature)?;
    let time = witness.check(body, line)?;
    Ok((text.to_owned(), time))
}

/// `note` with `line` (one signature line) added, replacing an earlier line of the same key name
/// and key ID (a newer cosignature from the same witness).
///
/// # Errors
/// [`NoteError::MalformedNote`] when `note` is not a signed note or `line` not one signature line.
pub fn with_signature(note: &str, line: &str) -> Result<String, NoteError> {
    let (body, sigs) = split_note(note)?;
    let probe = format!("{body}\n{line}");
    let (_, new) = split_note(&probe)?;
    let [new] = new.as_slice() else { return Err(NoteError::MalformedNote("expected one signature line")) };
    let mut out = format!("{body}\n");
    let kept = note[body.len() + 1..].split_inclusive('\n').zip(&sigs);
    for (text, sig) in kept {
        if !(sig.name == new.name && sig.key_id == new.key_id) {
            out.push_str(text);
        }
    }
    out.push_str(line);
    Ok(out)
}

/// The witnesses among `witnesses` whose cosignature on `note` verifies, with its time, in the
/// order of `witnesses`. A note whose syntax is wrong has none.
pub fn cosigners(note: &str, witnesses: &[CosignatureVerifier]) -> Vec<(usize, u64)> {
    witnesses.iter().enumerate().filter_map(|(i, w)| w.verify(note).ok().map(|(_, time)| (i, time))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translog::note::{Signer, Verifier};

    fn log() -> Signer {
        Signer::from_seed("log.example/v1", &[1u8; 32]).unwrap()
    }

    fn witness(n: u8) -> Cosigner {
        Cosigner::from_seed(&format!("witness.example/w{n}"), &[n; 32]).unwrap()
    }

    fn note() -> (Checkpoint, String) {
        let cp = Checkpoint { origin: "log.example/v1".into(), size: 5, root: [7u8; 32] };
        let note = log().sign_checkpoint(&cp);
        (cp, note)
    }

    #[test]
    fn a_cosignature_signs_the_spec_message_with_a_0x04_key_id() {
        let w = witness(1);
        let (cp, note) = note();
        let line = w.cosign(&cp.body(), 1_679_315_147).unwrap();
        let blob = B64.decode(line.trim_end().rsplit(' ').next().unwrap()).unwrap();
        assert_eq!(blob.len(), 76);
        assert_eq!(blob[..4], w.key_id().to_be_bytes());
        assert_eq!(u64::from_be_bytes(blob[4..12].try_into().unwrap()), 1_679_315_147);
        // The signature is Ed25519 over the spec's message, checked independently of `verify`.
        let message = format!("cosignature/v1\ntime 1679315147\n{}", cp.body());
        let pk = B64.decode(w.verifier_key().rsplit('+').next().unwrap()).unwrap();
        assert_eq!(pk[0], 0x04);
        signature::UnparsedPublicKey::new(&signature::ED25519, &pk[1..])
            .verify(message.as_bytes(), &blob[12..])
            .unwrap();
        // The key ID is SHA-256(name ‖ \n ‖ 0x04 ‖ key)[:4], not the note key ID (0x01).
        assert_eq!(w.key_id(), key_id_with(w.name(), 0x04, &pk[1..]));
        assert_ne!(w.key_id(), key_id_with(w.name(), 0x01, &pk[1..]));

        let cosigned = with_signature(&note, &line).unwrap();
        assert_eq!(w.verifier().verify(&cosigned).unwrap(), (cp.clone(), 1_679_315_147));
        // The log's signature still verifies on the cosigned note.
        assert_eq!(log().verifier().verify_note(&cosigned).unwrap(), cp);
        assert!(format!("{w:?}").contains(&format!("{:08x}", w.key_id())));
    }

    #[test]
    fn verifier_keys_round_trip_and_refuse_other_types() {
        let w = witness(2);
        let v: CosignatureVerifier = w.verifier_key().parse().unwrap();
        assert_eq!(v, w.verifier());
        assert_eq!(v.name(), "witness.example/w2");
        // A log (note) key is not a witness key, and vice versa.
        let err = CosignatureVerifier::new(&log().verifier_key()).unwrap_err();
        assert!(err.to_string().contains("0x04"), "{err}");
        assert!(Verifier::new(&w.verifier_key()).is_err());
        let key = w.verifier_key();
        let bad_id = format!("witness.example/w2+00000000+{}", key.rsplit('+').next().unwrap());
        assert!(matches!(CosignatureVerifier::new(&bad_id), Err(NoteError::MalformedVerifierKey(_))));
        assert!(matches!(CosignatureVerifier::new("x+1"), Err(NoteError::MalformedVerifierKey(_))));
        assert!(matches!(CosignatureVerifier::new("a b+00000000+AA=="), Err(NoteError::InvalidKeyName(_))));
    }

    #[test]
    fn tampering_with_the_body_time_or_key_fails() {
        let w = witness(3);
        let (cp, note) = note();
        let line = w.cosign(&cp.body(), 100).unwrap();
        let cosigned = with_signature(&note, &line).unwrap();
        let v = w.verifier();
        // Another size in the body.
        let other = cosigned.replacen("\n5\n", "\n6\n", 1);
        assert_eq!(v.verify(&other), Err(NoteError::InvalidSignature));
        // Another time in the blob.
        let mut blob = B64.decode(line.trim_end().rsplit(' ').next().unwrap()).unwrap();
        blob[11] ^= 1;
        let forged = format!("{SIG_PREFIX}{} {}\n", w.name(), B64.encode(&blob));
        assert_eq!(v.verify(&with_signature(&note, &forged).unwrap()), Err(NoteError::InvalidSignature));
        // A signature by the log key is not a cosignature.
        assert_eq!(v.verify(&note), Err(NoteError::NoMatchingSignature));
        // Another witness's key.
        assert_eq!(witness(4).verifier().verify(&cosigned), Err(NoteError::NoMatchingSignature));
        // A note-style (0x01) signature line under the witness's name and key ID is refused.
        let short = format!("{SIG_PREFIX}{} {}\n", w.name(), B64.encode([&blob[..4], &blob[12..]].concat()));
        assert_eq!(v.verify(&with_signature(&note, &short).unwrap()), Err(NoteError::InvalidSignature));
        assert!(w.cosign(&cp.body(), 1 << 63).is_err());
        assert!(w.cosign("not a body", 1).is_err());
    }

    #[test]
    fn responses_are_accepted_only_with_the_witness_line_and_lines_are_replaced_not_piled_up() {
        let (w1, w2) = (witness(1), witness(2));
        let (cp, note) = note();
        let l1 = w1.cosign(&cp.body(), 10).unwrap();
        let l2 = w2.cosign(&cp.body(), 11).unwrap();
        let response = format!("{l2}{l1}");
        assert_eq!(accept_cosignature(&note, &response, &w1.verifier()).unwrap(), (l1.clone(), 10));
        assert_eq!(accept_cosignature(&note, &l2, &w1.verifier()), Err(NoteError::NoMatchingSignature));
        assert!(matches!(accept_cosignature(&note, "not a line\n", &w1.verifier()), Err(NoteError::MalformedNote(_))));
        // A line over another checkpoint does not verify on this one.
        let other = Checkpoint { size: 6, ..cp.clone() };
        let stale = w1.cosign(&other.body(), 12).unwrap();
        assert_eq!(accept_cosignature(&note, &stale, &w1.verifier()), Err(NoteError::InvalidSignature));

        let both = with_signature(&with_signature(&note, &l1).unwrap(), &l2).unwrap();
        let newer = w1.cosign(&cp.body(), 20).unwrap();
        let replaced = with_signature(&both, &newer).unwrap();
        assert_eq!(replaced.matches(w1.name()).count(), 1, "{replaced}");
        let ws = [w1.verifier(), w2.verifier(), witness(3).verifier()];
        assert_eq!(cosigners(&replaced, &ws), vec![(0, 20), (1, 11)]);
        assert_eq!(cosigners(&note, &ws), vec![]);
        assert!(with_signature(&note, &format!("{l1}{l2}")).is_err());
    }
}

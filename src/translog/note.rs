//! C2SP signed-note / tlog-checkpoint signing and verification with Ed25519, plus tlog-proof receipts.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, Ed25519KeyPair, KeyPair};

use crate::translog::merkle::{verify_inclusion, Hash, ProofError};

/// Algorithm byte for Ed25519 keys in signed-note verifier keys and key IDs.
const ALG_ED25519: u8 = 0x01;
/// Prefix of every signature line: U+2014 EM DASH and a space.
pub(crate) const SIG_PREFIX: &str = "\u{2014} ";
/// First line of a C2SP tlog-proof.
pub const RECEIPT_HEADER: &str = "c2sp.org/tlog-proof@v1";
/// Upper bound on signature lines accepted in one note (as in Go's `note.Open`).
const MAX_SIGNATURES: usize = 100;
/// Upper bound on proof hashes in a receipt: a tree of at most 2^64 leaves has depth 64.
const MAX_PROOF_HASHES: usize = 64;

/// Errors of signed-note, checkpoint and receipt handling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// Returned when a key name is empty, contains whitespace or contains `+`.
    #[error("invalid key name {0:?}: must be non-empty, without whitespace or '+'")]
    InvalidKeyName(String),
    /// Returned when ring rejects the Ed25519 seed (not expected for 32-byte seeds).
    #[error("invalid Ed25519 seed")]
    InvalidSeed,
    /// Returned when a verifier key string is not `<name>+<8 hex>+<base64(0x01 ‖ key)>`,
    /// is not Ed25519, or its key ID does not match the name and key.
    #[error("malformed verifier key: {0}")]
    MalformedVerifierKey(&'static str),
    /// Returned when the note text is not a well-formed signed note (control characters,
    /// missing blank line / signature block, bad signature line, too many signatures).
    #[error("malformed note: {0}")]
    MalformedNote(&'static str),
    /// Returned when no signature line carries this verifier's key name and key ID.
    #[error("no signature by the expected key")]
    NoMatchingSignature,
    /// Returned when the signature line for this verifier's key does not verify over the body.
    #[error("signature verification failed")]
    InvalidSignature,
    /// Returned when the note body is not a valid tlog-checkpoint (origin, size, root lines).
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(&'static str),
    /// Returned when a receipt is not a well-formed `c2sp.org/tlog-proof@v1` text.
    #[error("malformed receipt: {0}")]
    MalformedReceipt(&'static str),
    /// Returned by [`verify_receipt`] when the inclusion proof does not verify.
    #[error("inclusion proof: {0}")]
    InclusionProof(#[from] ProofError),
}

pub(crate) fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(|c: char| c.is_whitespace() || c == '+')
}

fn compute_key_id(name: &str, public_key: &[u8]) -> u32 {
    key_id_with(name, ALG_ED25519, public_key)
}

/// `SHA-256(name ‖ 0x0A ‖ alg ‖ public key)[:4]`, big-endian: the key ID of a signed-note key of
/// signature type `alg` (0x01 note signatures, 0x04 tlog-cosignature/v1).
pub(crate) fn key_id_with(name: &str, alg: u8, public_key: &[u8]) -> u32 {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(b"\n");
    ctx.update(&[alg]);
    ctx.update(public_key);
    let d = ctx.finish();
    let b = d.as_ref();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Parses a signed-note verifier key `<name>+<8 hex key ID>+<base64(alg ‖ 32-byte Ed25519 key)>`
/// of signature type `alg` into its name, key ID and public key; `wrong_alg` is the message for
/// a key of another type.
///
/// # Errors
/// [`NoteError::MalformedVerifierKey`] if the shape, hex, base64, signature type or length is
/// wrong, or the key ID does not match the name and key; [`NoteError::InvalidKeyName`] for a
/// bad name.
pub(crate) fn parse_verifier_key(
    vkey: &str,
    alg: u8,
    wrong_alg: &'static str,
) -> Result<(String, u32, [u8; 32]), NoteError> {
    // The base64 key may itself contain '+', so split off only name and ID.
    let mut parts = vkey.splitn(3, '+');
    let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::MalformedVerifierKey("expected name+keyid+key"));
    };
    if !valid_key_name(name) {
        return Err(NoteError::InvalidKeyName(name.to_owned()));
    }
    if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NoteError::MalformedVerifierKey("key ID must be 8 hex digits"));
    }
    let key_id =
        u32::from_str_radix(id_hex, 16).map_err(|_| NoteError::MalformedVerifierKey("key ID must be 8 hex digits"))?;
    let key = B64.decode(key_b64).map_err(|_| NoteError::MalformedVerifierKey("key is not valid base64"))?;
    if key.first() != Some(&alg) {
        return Err(NoteError::MalformedVerifierKey(wrong_alg));
    }
    let public_key: [u8; 32] =
        key[1..].try_into().map_err(|_| NoteError::MalformedVerifierKey("Ed25519 key must be 32 bytes"))?;
    if key_id_with(name, alg, &public_key) != key_id {
        return Err(NoteError::MalformedVerifierKey("key ID does not match key"));
    }
    Ok((name.to_owned(), key_id, public_key))
}

/// Parses an ASCII decimal without sign or leading zeros (except `"0"` itself).
pub(crate) fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

pub(crate) fn decode_hash(s: &str) -> Option<Hash> {
    B64.decode(s).ok()?.try_into().ok()
}

/// Returns 32 fresh random bytes from the OS CSPRNG, suitable as an Ed25519 seed for [`Signer::from_seed`].
///
/// # Panics
/// If the operating system's random number generator fails (ring `SystemRandom`).
pub fn generate_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    SystemRandom::new().fill(&mut seed).expect("OS random number generator failed");
    seed
}

/// An Ed25519 note signer: a key name plus the key pair derived from a 32-byte seed.
///
/// Invariant: the key name is valid (non-empty, no whitespace, no `+`).
/// `Debug` shows only the name and key ID, never the secret.
pub struct Signer {
    name: String,
    key_pair: Ed25519KeyPair,
    key_id: u32,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Builds a signer from a key name and a 32-byte Ed25519 seed (RFC 8032 private key).
    ///
    /// # Errors
    /// [`NoteError::InvalidKeyName`] if `name` is empty or contains whitespace or `+`;
    /// [`NoteError::InvalidSeed`] if ring rejects the seed.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Signer, NoteError> {
        if !valid_key_name(name) {
            return Err(NoteError::InvalidKeyName(name.to_owned()));
        }
        let key_pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| NoteError::InvalidSeed)?;
        let key_id = compute_key_id(name, key_pair.public_key().as_ref());
        Ok(Signer { name: name.to_owned(), key_pair, key_id })
    }

    /// The key name given at construction.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key ID: first 4 bytes of `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)`, big-endian.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        let mut pk = [0u8; 32];
        pk.copy_from_slice(self.key_pair.public_key().as_ref());
        pk
    }

    /// Verifier key string `<name>+<8 lowercase hex key ID>+<base64(0x01 ‖ public key)>`.
    pub fn verifier_key(&self) -> String {
        let mut key = Vec::with_capacity(33);
        key.push(ALG_ED25519);
        key.extend_from_slice(self.key_pair.public_key().as_ref());
        format!("{}+{:08x}+{}", self.name, self.key_id, B64.encode(key))
    }

    /// A [`Verifier`] for this signer's key.
    pub fn verifier(&self) -> Verifier {
        Verifier { name: self.name.clone(), key_id: self.key_id, public_key: self.public_key() }
    }

    fn signature_line(&self, body: &str) -> String {
        let sig = self.key_pair.sign(body.as_bytes());
        let mut blob = Vec::with_capacity(4 + 64);
        blob.extend_from_slice(&self.key_id.to_be_bytes());
        blob.extend_from_slice(sig.as_ref());
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(blob))
    }

    /// Signs an arbitrary note body, returning `body ‖ "\n" ‖ signature line`.
    ///
    /// # Errors
    /// [`NoteError::MalformedNote`] if `body` is empty, does not end with `\n`,
    /// contains an empty line, or contains ASCII control characters other than `\n`.
    pub fn sign_note(&self, body: &str) -> Result<String, NoteError> {
        check_body(body)?;
        Ok(format!("{body}\n{}", self.signature_line(body)))
    }

    /// Signs `checkpoint.body()` and returns the signed note text:
    /// body, a blank line, then `— <name> <base64(key ID ‖ signature)>\n`.
    ///
    /// Precondition: `checkpoint.validate()` succeeds (non-empty origin without
    /// control characters); otherwise the note will not parse on verification.
    pub fn sign_checkpoint(&self, checkpoint: &Checkpoint) -> String {
        let body = checkpoint.body();
        debug_assert!(checkpoint.validate().is_ok(), "invalid checkpoint origin");
        format!("{body}\n{}", self.signature_line(&body))
    }
}

pub(crate) fn check_body(body: &str) -> Result<(), NoteError> {
    if body.is_empty() || !body.ends_with('\n') {
        return Err(NoteError::MalformedNote("body must be non-empty and end with a newline"));
    }
    if body.starts_with('\n') || body.contains("\n\n") {
        return Err(NoteError::MalformedNote("body must not contain empty lines"));
    }
    if body.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::MalformedNote("control character in note"));
    }
    Ok(())
}

/// A tlog-checkpoint: the log's origin line, tree size and RFC 6962 root hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Checkpoint {
    /// Log identity; must be non-empty and contain no control characters (incl. newline).
    pub origin: String,
    /// Number of leaves in the tree.
    pub size: u64,
    /// Root hash of the first `size` leaves.
    pub root: Hash,
}

impl Checkpoint {
    /// The note body `"<origin>\n<size>\n<base64(root)>\n"` that gets signed.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root))
    }

    /// Checks that the origin is non-empty and free of control characters.
    ///
    /// # Errors
    /// [`NoteError::MalformedCheckpoint`] otherwise.
    pub fn validate(&self) -> Result<(), NoteError> {
        if self.origin.is_empty() || self.origin.chars().any(char::is_control) {
            return Err(NoteError::MalformedCheckpoint("origin must be non-empty without control characters"));
        }
        Ok(())
    }

    /// Parses a checkpoint body: origin line, decimal size (no leading zeros),
    /// base64 32-byte root, then optional non-empty extension lines (ignored).
    /// The body must end with `\n`.
    ///
    /// # Errors
    /// [`NoteError::MalformedCheckpoint`] describing the first violation.
    pub fn from_body(body: &str) -> Result<Checkpoint, NoteError> {
        let Some(body) = body.strip_suffix('\n') else {
            return Err(NoteError::MalformedCheckpoint("body must end with a newline"));
        };
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        let size = lines.next().ok_or(NoteError::MalformedCheckpoint("missing size line"))?;
        let root = lines.next().ok_or(NoteError::MalformedCheckpoint("missing root hash line"))?;
        let size = parse_decimal(size)
            .ok_or(NoteError::MalformedCheckpoint("size must be a decimal without leading zeros"))?;
        let root = decode_hash(root).ok_or(NoteError::MalformedCheckpoint("root must be base64 of 32 bytes"))?;
        if lines.any(str::is_empty) {
            return Err(NoteError::MalformedCheckpoint("empty extension line"));
        }
        let checkpoint = Checkpoint { origin: origin.to_owned(), size, root };
        checkpoint.validate()?;
        Ok(checkpoint)
    }
}

/// A parsed signature line: key name, key ID and the signature bytes after the ID.
pub(crate) struct SigLine<'a> {
    pub(crate) name: &'a str,
    pub(crate) key_id: u32,
    pub(crate) sig: Vec<u8>,
}

/// Splits a signed note into its body (ending in `\n`) and parsed signature lines.
pub(crate) fn split_note(text: &str) -> Result<(&str, Vec<SigLine<'_>>), NoteError> {
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::MalformedNote("control character in note"));
    }
    let split = text.rfind("\n\n").ok_or(NoteError::MalformedNote("missing blank line before signatures"))?;
    let (body, sigs) = (&text[..=split], &text[split + 2..]);
    let Some(sigs) = sigs.strip_suffix('\n') else {
        return Err(NoteError::MalformedNote("signature block must be non-empty and end with a newline"));
    };
    let mut out = Vec::new();
    for line in sigs.split('\n') {
        if out.len() == MAX_SIGNATURES {
            return Err(NoteError::MalformedNote("too many signatures"));
        }
        let rest = line
            .strip_prefix(SIG_PREFIX)
            .ok_or(NoteError::MalformedNote("signature line must start with an em dash"))?;
        let (name, b64) = rest.split_once(' ').ok_or(NoteError::MalformedNote("signature line lacks a space"))?;
        if !valid_key_name(name) {
            return Err(NoteError::MalformedNote("invalid key name in signature line"));
        }
        let blob = B64.decode(b64).map_err(|_| NoteError::MalformedNote("signature is not valid base64"))?;
        if blob.len() < 5 {
            return Err(NoteError::MalformedNote("signature too short"));
        }
        out.push(SigLine {
            name,
            key_id: u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]),
            sig: blob[4..].to_vec(),
        });
    }
    Ok((body, out))
}

/// Parses a checkpoint WITHOUT verifying any signature.
///
/// Accepts a signed note (the signature block is syntax-checked, not verified)
/// or a bare checkpoint body (text without a blank line). Use only for display or
/// to pick a verifier; never trust the result.
///
/// # Errors
/// [`NoteError::MalformedNote`] / [`NoteError::MalformedCheckpoint`] on bad syntax.
pub fn parse_checkpoint_unverified(text: &str) -> Result<Checkpoint, NoteError> {
    if text.contains("\n\n") {
        let (body, _) = split_note(text)?;
        Checkpoint::from_body(body)
    } else {
        Checkpoint::from_body(text)
    }
}

/// An Ed25519 signed-note verifier: key name, key ID and public key.
///
/// Invariant: `key_id` is the key ID computed from `name` and the public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    key_id: u32,
    public_key: [u8; 32],
}

impl Verifier {
    /// Parses a verifier key `<name>+<8 hex key ID>+<base64(0x01 ‖ 32-byte public key)>`.
    ///
    /// # Errors
    /// [`NoteError::MalformedVerifierKey`] if the shape, hex, base64 or algorithm byte is
    /// wrong, or the key ID does not match the name and key; [`NoteError::InvalidKeyName`]
    /// for a bad name.
    pub fn new(vkey: &str) -> Result<Verifier, NoteError> {
        let (name, key_id, public_key) = parse_verifier_key(vkey, ALG_ED25519, "unsupported key algorithm")?;
        Ok(Verifier { name, key_id, public_key })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID (see [`Signer::key_id`]).
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Verifies a signed note and returns its body (ending in `\n`).
    ///
    /// Signature lines by other keys are syntax-checked and ignored.
    ///
    /// # Errors
    /// [`NoteError::MalformedNote`] if the note is malformed;
    /// [`NoteError::NoMatchingSignature`] if no line has this key's name and ID;
    /// [`NoteError::InvalidSignature`] if that line's signature does not verify.
    pub fn verify_note_body<'a>(&self, text: &'a str) -> Result<&'a str, NoteError> {
        let (body, sigs) = split_note(text)?;
        let line = sigs
            .iter()
            .find(|s| s.name == self.name && s.key_id == self.key_id)
            .ok_or(NoteError::NoMatchingSignature)?;
        signature::UnparsedPublicKey::new(&signature::ED25519, &self.public_key)
            .verify(body.as_bytes(), &line.sig)
            .map_err(|_| NoteError::InvalidSignature)?;
        Ok(body)
    }

    /// Verifies a signed checkpoint note and parses its body.
    ///
    /// The origin is NOT compared with anything: callers must check
    /// `checkpoint.origin` against the log they expect.
    ///
    /// # Errors
    /// Those of [`Verifier::verify_note_body`], then [`NoteError::MalformedCheckpoint`].
    pub fn verify_note(&self, text: &str) -> Result<Checkpoint, NoteError> {
        Checkpoint::from_body(self.verify_note_body(text)?)
    }
}

impl FromStr for Verifier {
    type Err = NoteError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Verifier::new(s)
    }
}

/// Formats a C2SP `tlog-proof@v1` receipt (without an `extra` line).
///
/// Layout: `c2sp.org/tlog-proof@v1`, `index <index>`, one base64 hash per line
/// (leaf sibling first, as returned by `merkle::inclusion_proof`), an empty line,
/// then `signed_checkpoint_note` verbatim. Precondition: the note is a signed
/// checkpoint note as produced by [`Signer::sign_checkpoint`].
pub fn format_receipt(index: u64, proof: &[Hash], signed_checkpoint_note: &str) -> String {
    let mut out = format!("{RECEIPT_HEADER}\nindex {index}\n");
    for h in proof {
        out.push_str(&B64.encode(h));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(signed_checkpoint_note);
    out
}

/// Parses a C2SP `tlog-proof@v1` receipt into (index, inclusion proof, signed note text).
///
/// An optional `extra <base64>` line is accepted and discarded (it is unauthenticated).
/// Nothing is verified here; see [`verify_receipt`].
///
/// # Errors
/// [`NoteError::MalformedReceipt`] on a wrong header, bad or leading-zero index,
/// a proof line that is not base64 of 32 bytes, more than 64 proof hashes, or a
/// missing empty line / empty note.
pub fn parse_receipt(text: &str) -> Result<(u64, Vec<Hash>, String), NoteError> {
    let mut rest = text
        .strip_prefix(RECEIPT_HEADER)
        .and_then(|r| r.strip_prefix('\n'))
        .ok_or(NoteError::MalformedReceipt("missing c2sp.org/tlog-proof@v1 header"))?;
    let next_line = |rest: &mut &str| -> Option<String> {
        let (line, tail) = rest.split_once('\n')?;
        *rest = tail;
        Some(line.to_owned())
    };
    let mut line = next_line(&mut rest).ok_or(NoteError::MalformedReceipt("truncated"))?;
    if let Some(extra) = line.strip_prefix("extra ") {
        B64.decode(extra).map_err(|_| NoteError::MalformedReceipt("extra data is not valid base64"))?;
        line = next_line(&mut rest).ok_or(NoteError::MalformedReceipt("truncated"))?;
    }
    let index = line
        .strip_prefix("index ")
        .and_then(parse_decimal)
        .ok_or(NoteError::MalformedReceipt("expected 'index <decimal without leading zeros>'"))?;
    let mut proof = Vec::new();
    loop {
        let line = next_line(&mut rest).ok_or(NoteError::MalformedReceipt("missing empty line before checkpoint"))?;
        if line.is_empty() {
            break;
        }
        if proof.len() == MAX_PROOF_HASHES {
            return Err(NoteError::MalformedReceipt("too many proof hashes"));
        }
        proof.push(decode_hash(&line).ok_or(NoteError::MalformedReceipt("proof line is not base64 of 32 bytes"))?);
    }
    if rest.is_empty() {
        return Err(NoteError::MalformedReceipt("missing checkpoint"));
    }
    Ok((index, proof, rest.to_owned()))
}

/// Verifies a receipt end to end: parses it, verifies the checkpoint note with
/// `verifier`, then verifies inclusion of `leaf_hash` (a `merkle::leaf_hash`) at the
/// receipt's index against the checkpoint's size and root. Returns the checkpoint
/// and the index. The checkpoint origin is not checked (compare it yourself).
///
/// # Errors
/// Those of [`parse_receipt`] and [`Verifier::verify_note`], or
/// [`NoteError::InclusionProof`] if the proof does not verify.
pub fn verify_receipt(verifier: &Verifier, receipt: &str, leaf_hash: &Hash) -> Result<(Checkpoint, u64), NoteError> {
    let (index, proof, note) = parse_receipt(receipt)?;
    let checkpoint = verifier.verify_note(&note)?;
    verify_inclusion(leaf_hash, index, checkpoint.size, &proof, &checkpoint.root)?;
    Ok((checkpoint, index))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translog::merkle::{inclusion_proof, leaf_hash, MemoryTree};

    const NAME: &str = "gateway.example/audit/v1";
    const VKEY: &str = "gateway.example/audit/v1+53ba0d29+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4";
    const NOTE: &str = "gateway.example/audit/v1\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\n\u{2014} gateway.example/audit/v1 U7oNKUbH0wW/rR8LwHYYOeetp9JC6eGyQbu7oZvvtVw/4inPVzfYmnciOTj5O9xzVsriNkTMc5sJ8CTqEfwbOQY/EQI=\n";

    const LEAVES: [&str; 8] =
        ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];

    fn test_seed() -> [u8; 32] {
        std::array::from_fn(|i| i as u8)
    }

    fn rfc_tree() -> MemoryTree {
        let mut t = MemoryTree::new();
        for l in LEAVES {
            t.push(&hex::decode(l).unwrap());
        }
        t
    }

    fn signer() -> Signer {
        Signer::from_seed(NAME, &test_seed()).unwrap()
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint { origin: NAME.to_owned(), size: 8, root: rfc_tree().root() }
    }

    #[test]
    fn known_vector_byte_for_byte() {
        let s = signer();
        assert_eq!(s.key_id(), 0x53ba0d29);
        assert_eq!(s.verifier_key(), VKEY);
        assert_eq!(s.sign_checkpoint(&checkpoint()), NOTE);
        let v = Verifier::new(VKEY).unwrap();
        assert_eq!(v, s.verifier());
        assert_eq!(v.verify_note(NOTE).unwrap(), checkpoint());
        assert_eq!(parse_checkpoint_unverified(NOTE).unwrap(), checkpoint());
        assert_eq!(parse_checkpoint_unverified(&checkpoint().body()).unwrap(), checkpoint());
        assert!(format!("{s:?}").contains("53ba0d29"));
    }

    #[test]
    fn tampering_fails() {
        let v = Verifier::new(VKEY).unwrap();
        let tampered = [
            NOTE.replace("\n8\n", "\n9\n"),
            NOTE.replace("XcnaeacG", "XcnaeacH"),
            NOTE.replace("gateway.example/audit/v1\n8", "gateway.example/audit/v2\n8"),
            NOTE.replace("U7oNKUbH0wW", "U7oNKUbH0wX"),
        ];
        for t in &tampered {
            assert_eq!(v.verify_note(t), Err(NoteError::InvalidSignature), "{t}");
        }
        // Extension line added to the body.
        let ext = NOTE.replacen("=\n\n", "=\nextra\n\n", 1);
        assert_eq!(v.verify_note(&ext), Err(NoteError::InvalidSignature));
        // Key ID altered: no longer matches this verifier.
        assert_eq!(v.verify_note(&NOTE.replace("U7oNKUbH", "U7oNKEbH")), Err(NoteError::NoMatchingSignature));
    }

    #[test]
    fn wrong_key_fails() {
        let other = Signer::from_seed(NAME, &[7u8; 32]).unwrap();
        let v_other = other.verifier();
        assert_eq!(v_other.verify_note(NOTE), Err(NoteError::NoMatchingSignature));
        let other_name = Signer::from_seed("other.example/log", &test_seed()).unwrap();
        assert_eq!(other_name.verifier().verify_note(NOTE), Err(NoteError::NoMatchingSignature));
        // Same name and forged key ID but different key: signature must fail.
        let forged = Verifier { name: NAME.to_owned(), key_id: 0x53ba0d29, public_key: other.public_key() };
        assert_eq!(forged.verify_note(NOTE), Err(NoteError::InvalidSignature));
    }

    #[test]
    fn multiple_signatures_and_extensions() {
        let s = signer();
        let other = Signer::from_seed("witness.example", &[9u8; 32]).unwrap();
        let body = "gateway.example/audit/v1\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\next1\n";
        let note = s.sign_note(body).unwrap();
        let cosigned = format!("{note}{}", other.signature_line(body));
        assert_eq!(s.verifier().verify_note(&cosigned).unwrap(), checkpoint());
        assert_eq!(other.verifier().verify_note(&cosigned).unwrap(), checkpoint());
        // Other signer first.
        let reordered = format!("{body}\n{}{}", other.signature_line(body), s.signature_line(body));
        assert_eq!(s.verifier().verify_note(&reordered).unwrap(), checkpoint());
    }

    #[test]
    fn malformed_notes() {
        let v = Verifier::new(VKEY).unwrap();
        let bad = [
            NOTE.trim_end_matches('\n').to_owned(),
            NOTE.replace("\n\n", "\n"),
            NOTE.replace('\u{2014}', "-"),
            NOTE.replace("\n8\n", "\n8\r\n"),
            format!("{NOTE}\u{2014} x\n"),
            format!("{NOTE}\u{2014} x AAAA\n"),
            format!("{NOTE}\u{2014} x !!!!!!!!\n"),
            format!("{NOTE}{}", "\u{2014} x AAAAAAAA\n".repeat(MAX_SIGNATURES)),
        ];
        for b in &bad {
            assert!(matches!(v.verify_note(b), Err(NoteError::MalformedNote(_))), "{b:?}: {:?}", v.verify_note(b));
        }
    }

    #[test]
    fn checkpoint_body_parsing() {
        let root = B64.encode([0u8; 32]);
        let ok = |b: &str| Checkpoint::from_body(b).is_ok();
        assert!(ok(&format!("o\n0\n{root}\n")));
        assert!(ok(&format!("o\n18446744073709551615\n{root}\next\nmore\n")));
        assert!(!ok(&format!("o\n18446744073709551616\n{root}\n")));
        assert!(!ok(&format!("o\n08\n{root}\n")));
        assert!(!ok(&format!("o\n+8\n{root}\n")));
        assert!(!ok(&format!("o\n-8\n{root}\n")));
        assert!(!ok(&format!("o\n8\n{root}")));
        assert!(!ok(&format!("\n8\n{root}\n")));
        assert!(!ok("o\n8\nAAAA\n"));
        assert!(!ok(&format!("o\n8\n{}\n", root.trim_end_matches('='))));
        assert!(!ok("o\n8\n"));
        assert!(!ok(&format!("o\n8\n{root}\n\n")));
    }

    #[test]
    fn key_names_and_verifier_keys() {
        for bad in ["", "a b", "a+b", "a\tb", "a\u{3000}b"] {
            assert_eq!(Signer::from_seed(bad, &test_seed()).unwrap_err(), NoteError::InvalidKeyName(bad.to_owned()));
        }
        let bad_keys = [
            "gateway.example/audit/v1+53ba0d28+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4",
            "gateway.example/audit/v1+53ba0d2+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4",
            "gateway.example/audit/v1+53ba0d29+AgOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4",
            "gateway.example/audit/v1+53ba0d29+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVT",
            "gateway.example/audit/v1+53ba0d29",
            "gateway.example/audit/v1+53ba0d29+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4+x",
            "gateway.example/audit/v2+53ba0d29+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4",
        ];
        for k in bad_keys {
            assert!(matches!(Verifier::new(k), Err(NoteError::MalformedVerifierKey(_))), "{k}");
        }
        assert!(VKEY.parse::<Verifier>().is_ok());
        let s = Signer::from_seed("log.example", &generate_seed()).unwrap();
        let v: Verifier = s.verifier_key().parse().unwrap();
        assert_eq!(v.key_id(), s.key_id());
        assert_eq!(v.name(), "log.example");
        assert_ne!(generate_seed(), generate_seed());
    }

    #[test]
    fn sign_note_rejects_bad_bodies() {
        let s = signer();
        for b in ["", "no newline", "a\n\nb\n", "\na\n", "a\u{7}\n"] {
            assert!(matches!(s.sign_note(b), Err(NoteError::MalformedNote(_))), "{b:?}");
        }
    }

    #[test]
    fn receipt_roundtrip_and_end_to_end() {
        let tree = rfc_tree();
        let s = signer();
        let v = Verifier::new(VKEY).unwrap();
        let note = s.sign_checkpoint(&checkpoint());
        for index in 0..8u64 {
            let proof = inclusion_proof(index, 8, &tree).unwrap();
            let receipt = format_receipt(index, &proof, &note);
            assert!(receipt.starts_with("c2sp.org/tlog-proof@v1\nindex "));
            let (i, p, n) = parse_receipt(&receipt).unwrap();
            assert_eq!((i, &p, n.as_str()), (index, &proof, note.as_str()));
            let cp = v.verify_note(&n).unwrap();
            let leaf = leaf_hash(&hex::decode(LEAVES[index as usize]).unwrap());
            verify_inclusion(&leaf, i, cp.size, &p, &cp.root).unwrap();
            assert_eq!(verify_receipt(&v, &receipt, &leaf).unwrap(), (cp, index));
            let wrong = leaf_hash(b"not in the log");
            assert_eq!(verify_receipt(&v, &receipt, &wrong), Err(NoteError::InclusionProof(ProofError::RootMismatch)));
        }
        // Exact layout of one receipt.
        let proof = inclusion_proof(5, 8, &tree).unwrap();
        let receipt = format_receipt(5, &proof, NOTE);
        let expected = format!(
            "c2sp.org/tlog-proof@v1\nindex 5\n{}\n{}\n{}\n\n{NOTE}",
            B64.encode(proof[0]),
            B64.encode(proof[1]),
            B64.encode(proof[2])
        );
        assert_eq!(receipt, expected);
        // Optional extra line is accepted.
        let with_extra = receipt.replacen("\nindex", "\nextra aGVsbG8=\nindex", 1);
        assert_eq!(parse_receipt(&with_extra).unwrap().0, 5);
        // Receipt with a tampered index fails end to end.
        let leaf5 = leaf_hash(&hex::decode(LEAVES[5]).unwrap());
        let bad_index = receipt.replace("index 5", "index 4");
        assert!(verify_receipt(&v, &bad_index, &leaf5).is_err());
    }

    #[test]
    fn malformed_receipts() {
        let good = format_receipt(0, &[[1u8; 32]], NOTE);
        let bad = [
            good.replace("tlog-proof@v1", "tlog-proof@v2"),
            good.replace("index 0", "index 00"),
            good.replace("index 0", "index -1"),
            good.replace("index 0", "idx 0"),
            good.replace(&B64.encode([1u8; 32]), "AAAA"),
            good.replacen("\n\n", "\n", 1),
            format_receipt(0, &[], ""),
            format_receipt(0, &[[0u8; 32]; 65], NOTE),
            "c2sp.org/tlog-proof@v1\n".to_owned(),
        ];
        for b in &bad {
            assert!(matches!(parse_receipt(b), Err(NoteError::MalformedReceipt(_))), "{b:?}: {:?}", parse_receipt(b));
        }
    }
}

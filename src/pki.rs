//! The development PKI: a CA, a server certificate, client certificates per participant.
//!
//! For development and tests only: a deployment uses its own CA. Certificates are ECDSA P-256;
//! the CA and every leaf have distinct subject names (BoringSSL-based clients such as grpcio
//! refuse a leaf whose subject equals its issuer's), and the server certificate names
//! `localhost`, `127.0.0.1` and `::1`.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The CA's common name.
pub const CA_NAME: &str = "bth-gateway development CA";

/// A PEM certificate and its PEM private key.
#[derive(Clone)]
pub struct Pem {
    /// Certificate, PEM.
    pub cert: String,
    /// PKCS#8 private key, PEM.
    pub key: String,
}

impl std::fmt::Debug for Pem {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pem { .. }")
    }
}

/// When a certificate is valid: from `not_before` through `not_after`, both at 00:00 UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// First day of validity.
    pub not_before: chrono::NaiveDate,
    /// Last day (its midnight, UTC): the certificate has expired from then on.
    pub not_after: chrono::NaiveDate,
}

impl Validity {
    /// From yesterday (clock skew) through `days` from today.
    pub fn from_today(days: u64) -> Validity {
        let today = chrono::Utc::now().date_naive();
        Validity { not_before: today - chrono::Days::new(1), not_after: today + chrono::Days::new(days) }
    }

    fn apply(&self, params: &mut CertificateParams) {
        use chrono::Datelike;
        let ymd = |d: chrono::NaiveDate| rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8);
        params.not_before = ymd(self.not_before);
        params.not_after = ymd(self.not_after);
    }
}

fn serial(params: &mut CertificateParams) {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).expect("system randomness");
    bytes[0] &= 0x7f; // positive
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&bytes));
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "bth-gateway");
    dn.push(DnType::CommonName, cn);
    dn
}

/// Creates a self-signed CA named [`CA_NAME`], valid for ten years.
pub fn new_ca() -> anyhow::Result<Pem> {
    new_ca_named(CA_NAME, Validity::from_today(3650))
}

/// Creates a self-signed CA (ECDSA P-256, path length 0) with common name `common_name`.
pub fn new_ca_named(common_name: &str, validity: Validity) -> anyhow::Result<Pem> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity.apply(&mut params);
    serial(&mut params);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(Pem { cert: cert.pem(), key: key.serialize_pem() })
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafKind {
    /// The gateway's TLS server certificate (`localhost`, `127.0.0.1`, `::1`).
    Server,
    /// A participant's client certificate; its common name is the participant id.
    Client,
}

/// The profile of a leaf certificate: what [`issue_leaf`] puts in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafProfile {
    /// Subject common name: the participant id of a client certificate.
    pub common_name: String,
    /// Subject alternative names (DNS names or IP addresses).
    pub sans: Vec<String>,
    /// Extended key usages; empty leaves the extension out (which rustls reads as "any usage").
    pub usages: Vec<ExtendedKeyUsagePurpose>,
    /// When it is valid.
    pub validity: Validity,
}

impl LeafProfile {
    /// The development profile of `kind`: a server certificate names `localhost`, `127.0.0.1`
    /// and `::1` and is for serverAuth; a client certificate names no SAN and is for clientAuth.
    pub fn new(common_name: &str, kind: LeafKind, validity: Validity) -> LeafProfile {
        let (sans, usage) = match kind {
            LeafKind::Server => (
                vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()],
                ExtendedKeyUsagePurpose::ServerAuth,
            ),
            LeafKind::Client => (Vec::new(), ExtendedKeyUsagePurpose::ClientAuth),
        };
        LeafProfile { common_name: common_name.to_owned(), sans, usages: vec![usage], validity }
    }
}

/// Issues a leaf certificate valid for two years, signed by `ca`.
pub fn issue(ca: &Pem, common_name: &str, kind: LeafKind) -> anyhow::Result<Pem> {
    issue_leaf(ca, &LeafProfile::new(common_name, kind, Validity::from_today(730)))
}

/// Issues a leaf certificate of `profile` (a fresh ECDSA P-256 key, digitalSignature key usage,
/// not a CA), signed by `ca`.
///
/// # Errors
/// A CA whose certificate or key does not parse, or a SAN rcgen refuses.
pub fn issue_leaf(ca: &Pem, profile: &LeafProfile) -> anyhow::Result<Pem> {
    let mut params = CertificateParams::new(profile.sans.clone())?;
    params.distinguished_name = name(&profile.common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = profile.usages.clone();
    profile.validity.apply(&mut params);
    serial(&mut params);
    let ca_key = KeyPair::from_pem(&ca.key).context("the CA key does not parse")?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key).context("the CA certificate does not parse")?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Pem { cert: cert.pem(), key: key.serialize_pem() })
}

/// Writes `contents` to a new file with `mode`; refuses to overwrite.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents)?;
    f.sync_all()?;
    Ok(())
}

/// Writes a certificate (0644) and its key (0600) as `<dir>/<stem>.pem` and `<dir>/<stem>.key`.
pub fn write_pair(dir: &Path, stem: &str, pem: &Pem) -> anyhow::Result<(PathBuf, PathBuf)> {
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}.key"));
    for p in [&cert, &key] {
        if p.exists() {
            bail!("{} exists; refusing to overwrite it", p.display());
        }
    }
    write_new(&key, pem.key.as_bytes(), 0o600)?;
    write_new(&cert, pem.cert.as_bytes(), 0o644)?;
    Ok((cert, key))
}

/// Reads the CA of a certificates directory.
pub fn read_ca(certs: &Path) -> anyhow::Result<Pem> {
    let read =
        |f: &str| fs::read_to_string(certs.join(f)).with_context(|| format!("reading {}", certs.join(f).display()));
    Ok(Pem { cert: read("ca.pem")?, key: read("ca.key")? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::{FromDer, X509Certificate};

    fn der(pem: &str) -> Vec<u8> {
        rustls_pemfile_like(pem)
    }

    /// Decodes the first PEM block (base64 between the armour lines).
    fn rustls_pemfile_like(pem: &str) -> Vec<u8> {
        use base64::Engine;
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD.decode(body).unwrap()
    }

    #[test]
    fn leaves_have_subjects_distinct_from_their_issuer_and_the_server_names_localhost() {
        let ca = new_ca().unwrap();
        let server = issue(&ca, "bth-gateway server", LeafKind::Server).unwrap();
        let client = issue(&ca, "tj-stats", LeafKind::Client).unwrap();
        let ca_der = der(&ca.cert);
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
        for leaf in [&server, &client] {
            let d = der(&leaf.cert);
            let (_, cert) = X509Certificate::from_der(&d).unwrap();
            assert_ne!(cert.subject(), ca_cert.subject());
            assert_eq!(cert.issuer(), ca_cert.subject());
            assert!(cert.verify_signature(Some(ca_cert.public_key())).is_ok());
        }
        let d = der(&server.cert);
        let (_, cert) = X509Certificate::from_der(&d).unwrap();
        let sans = format!("{:?}", cert.subject_alternative_name().unwrap().unwrap().value.general_names);
        assert!(sans.contains("DNSName(\"localhost\")") && sans.contains("IPAddress([127, 0, 0, 1])"), "{sans}");
    }

    #[test]
    fn a_profile_sets_its_dates_and_an_empty_usage_list_leaves_the_extension_out() {
        let ca = new_ca().unwrap();
        let day = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap();
        let validity = Validity { not_before: day(2019, 1, 1), not_after: day(2020, 1, 1) };
        let profile = LeafProfile { usages: Vec::new(), ..LeafProfile::new("tj-stats", LeafKind::Client, validity) };
        let d = der(&issue_leaf(&ca, &profile).unwrap().cert);
        let (_, cert) = X509Certificate::from_der(&d).unwrap();
        assert_eq!(cert.validity().not_before.timestamp(), 1_546_300_800);
        assert_eq!(cert.validity().not_after.timestamp(), 1_577_836_800);
        assert!(cert.extended_key_usage().unwrap().is_none());
        let d = der(&issue(&ca, "tj-stats", LeafKind::Client).unwrap().cert);
        let (_, cert) = X509Certificate::from_der(&d).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
    }

    #[test]
    fn keys_are_written_0600_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca().unwrap();
        let (_, key) = write_pair(dir.path(), "ca", &ca).unwrap();
        assert_eq!(fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(write_pair(dir.path(), "ca", &ca).is_err());
    }
}

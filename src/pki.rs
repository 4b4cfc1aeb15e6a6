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

/// Sets the validity to yesterday (clock skew) through `days` from today.
fn validity(params: &mut CertificateParams, days: i64) {
    use chrono::Datelike;
    let ymd = |d: chrono::NaiveDate| rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8);
    let today = chrono::Utc::now().date_naive();
    params.not_before = ymd(today - chrono::Days::new(1));
    params.not_after = ymd(today + chrono::Days::new(days as u64));
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

/// Creates a self-signed CA valid for ten years.
pub fn new_ca() -> anyhow::Result<Pem> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = name(CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut params, 3650);
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

/// Issues a leaf certificate valid for two years, signed by `ca`.
pub fn issue(ca: &Pem, common_name: &str, kind: LeafKind) -> anyhow::Result<Pem> {
    let sans = match kind {
        LeafKind::Server => vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()],
        LeafKind::Client => Vec::new(),
    };
    let mut params = CertificateParams::new(sans)?;
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![match kind {
        LeafKind::Server => ExtendedKeyUsagePurpose::ServerAuth,
        LeafKind::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    validity(&mut params, 730);
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
    fn keys_are_written_0600_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca().unwrap();
        let (_, key) = write_pair(dir.path(), "ca", &ca).unwrap();
        assert_eq!(fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(write_pair(dir.path(), "ca", &ca).is_err());
    }
}

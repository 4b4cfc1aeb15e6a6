//! The committed TLS fixtures of `certs/test/` against a real gateway: the client-certificate
//! profile of `certs/README.md`, enforced at the handshake or by the identity layer.
//!
//! Regenerate the fixtures (all of them, new keys) with
//! `cargo test --test it regenerate_test_certs -- --ignored`.
//!
//! These gateways always run on SQLite: the tests are about TLS, not storage.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bth_gateway::domain::classification::Level;
use bth_gateway::domain::ids::ParticipantId;
use bth_gateway::domain::participant::{Participant, ParticipantKind, ParticipantStatus, RecipientType, Region, Role};
use bth_gateway::log::sequencer::{LogSettings, TransferLog};
use bth_gateway::pb::{self, catalog_client::CatalogClient};
use bth_gateway::pki::{self, LeafKind, LeafProfile, Pem, Validity};
use bth_gateway::policy::PolicyConfig;
use bth_gateway::server::{self, TlsPem};
use bth_gateway::service::{participants, Gateway, Limits, SystemClock};
use bth_gateway::store::sqlite::SqliteStore;
use bth_gateway::translog::note::Signer;
use chrono::NaiveDate;
use rcgen::ExtendedKeyUsagePurpose;
use tokio::sync::oneshot;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::Code;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The participant id of every fixture client but `client-unregistered`.
const PARTICIPANT: &str = "tj-stats";

/// The common name of `client-unregistered`: a participant no gateway registers.
const STRANGER: &str = "stranger";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/test")
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("a calendar date")
}

/// The validity of the fixtures meant to be valid: regenerate them before it ends.
fn valid() -> Validity {
    Validity { not_before: day(2025, 1, 1), not_after: day(2036, 1, 1) }
}

/// A client certificate of the development profile for `cn`, with `validity`.
fn client(cn: &str, validity: Validity) -> LeafProfile {
    LeafProfile::new(cn, LeafKind::Client, validity)
}

/// Writes every fixture of `certs/test/` (see `certs/README.md` for what each one is).
fn write_fixtures(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if matches!(path.extension().and_then(|e| e.to_str()), Some("pem" | "key")) {
            std::fs::remove_file(&path)?;
        }
    }
    let write = |stem: &str, pem: &Pem, with_key: bool| -> anyhow::Result<()> {
        std::fs::write(dir.join(format!("{stem}.pem")), &pem.cert)?;
        if with_key {
            std::fs::write(dir.join(format!("{stem}.key")), &pem.key)?;
        }
        Ok(())
    };
    let ca = pki::new_ca_named("bth-gateway test CA", valid())?;
    let other_ca = pki::new_ca_named("bth-gateway other test CA", valid())?;
    write("ca", &ca, true)?;
    write("other-ca", &other_ca, false)?;
    write(
        "server",
        &pki::issue_leaf(&ca, &LeafProfile::new("bth-gateway test server", LeafKind::Server, valid()))?,
        true,
    )?;
    let leaves: [(&str, &Pem, LeafProfile); 7] = [
        ("client-tj-stats", &ca, client(PARTICIPANT, valid())),
        ("client-other-ca", &other_ca, client(PARTICIPANT, valid())),
        (
            "client-expired",
            &ca,
            client(PARTICIPANT, Validity { not_before: day(2019, 1, 1), not_after: day(2020, 1, 1) }),
        ),
        (
            "client-not-yet-valid",
            &ca,
            client(PARTICIPANT, Validity { not_before: day(2100, 1, 1), not_after: day(2101, 1, 1) }),
        ),
        (
            "client-server-auth-only",
            &ca,
            LeafProfile { usages: vec![ExtendedKeyUsagePurpose::ServerAuth], ..client(PARTICIPANT, valid()) },
        ),
        ("client-no-eku", &ca, LeafProfile { usages: Vec::new(), ..client(PARTICIPANT, valid()) }),
        ("client-unregistered", &ca, client(STRANGER, valid())),
    ];
    for (stem, issuer, profile) in leaves {
        write(stem, &pki::issue_leaf(issuer, &profile)?, true)?;
    }
    Ok(())
}

/// The one documented command that regenerates `certs/test/`.
#[test]
#[ignore = "writes certs/test/: run it to regenerate the committed fixtures"]
fn regenerate_test_certs() {
    write_fixtures(&fixtures()).unwrap();
    println!("wrote {}", fixtures().display());
}

fn read(name: &str) -> String {
    let path = fixtures().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{}: {e} (regenerate with `cargo test --test it regenerate_test_certs -- --ignored`)", path.display())
    })
}

/// A gateway serving the committed server certificate and trusting only the committed test CA;
/// stopped when dropped.
struct FixtureGateway {
    addr: SocketAddr,
    gw: Gateway,
    stop: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for FixtureGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The only call of `server::run` in this file: adapt it when `run` changes.
async fn serve(
    listener: tokio::net::TcpListener,
    gw: Gateway,
    tls: TlsPem,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    server::run(
        listener,
        gw,
        &tls,
        &server::Settings { max_message_bytes: 1024 * 1024, ..Default::default() },
        shutdown,
    )
    .await
}

impl FixtureGateway {
    /// Starts a gateway with the `certs/test/` CA and server certificate, and registers
    /// `tj-stats` (never `stranger`).
    async fn start() -> FixtureGateway {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("gateway.db").display());
        let store = Arc::new(SqliteStore::open(&url).await.unwrap());
        let origin = "test.example/log";
        let signer = Signer::from_seed(origin, &[1u8; 32]).unwrap();
        let log = TransferLog::start(store.clone(), signer, LogSettings::new(origin)).await.unwrap();
        let gw =
            Gateway::new(store, &[7u8; 32], Arc::new(SystemClock), Limits::default(), PolicyConfig::default(), log);
        let tls = TlsPem { cert: read("server.pem"), key: read("server.key"), client_ca: read("ca.pem") };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(serve(listener, gw.clone(), tls, async {
            let _ = stopped.await;
        }));
        let participant = Participant {
            id: ParticipantId::parse(PARTICIPANT).unwrap(),
            display_name: "Tianjin Statistics Bureau (test)".into(),
            kind: ParticipantKind::StateOrgan,
            recipient_type: RecipientType::StatisticsAgency,
            region: Region::parse("CN-TJ").unwrap(),
            in_tianjin_ftz: false,
            roles: [Role::Consumer].into_iter().collect(),
            clearance: Level::G2,
            status: ParticipantStatus::Active,
        };
        participants::register_as(&gw, "test", participant).await.unwrap();
        FixtureGateway { addr, gw, stop: Some(stop), _dir: dir }
    }

    /// Calls `ListDatasets` with the fixture client `stem` (`certs/test/<stem>.pem` and `.key`),
    /// trusting the committed CA for the server.
    async fn call_as(&self, stem: &str) -> Result<(), String> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read("ca.pem")))
            .domain_name("localhost")
            .identity(Identity::from_pem(read(&format!("{stem}.pem")), read(&format!("{stem}.key"))));
        let channel = Channel::from_shared(format!("https://{}", self.addr)).unwrap().tls_config(tls).unwrap();
        // TLS 1.3: the client finishes its handshake first, so a refusal may only arrive with
        // the first call's answer.
        let channel = channel.connect().await.map_err(|e| format!("{e:?}"))?;
        match CatalogClient::new(channel).list_datasets(pb::ListDatasetsRequest::default()).await {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::Unauthenticated => Err(format!("UNAUTHENTICATED: {status:?}")),
            Err(status) => Err(format!("{status:?}")),
        }
    }

    /// Asserts the handshake with client `stem` fails with the TLS alert `alert`.
    async fn assert_refused_at_the_handshake(&self, stem: &str, alert: &str) {
        let err = self.call_as(stem).await.expect_err("the handshake must fail");
        assert!(
            err.contains(&format!("received fatal alert: {alert}")) && !err.starts_with("UNAUTHENTICATED"),
            "{stem}: expected the server's {alert} alert, got {err}"
        );
    }
}

#[tokio::test]
async fn the_valid_fixture_client_is_served_once_registered() {
    let g = FixtureGateway::start().await;
    g.call_as("client-tj-stats").await.unwrap();
    let seen = g.gw.store.participants().await.unwrap();
    assert!(seen.iter().any(|p| p.id.as_str() == PARTICIPANT));
}

#[tokio::test]
async fn a_client_of_another_ca_is_refused_at_the_handshake() {
    let g = FixtureGateway::start().await;
    g.assert_refused_at_the_handshake("client-other-ca", "UnknownCA").await;
}

#[tokio::test]
async fn an_expired_client_certificate_is_refused_at_the_handshake() {
    let g = FixtureGateway::start().await;
    g.assert_refused_at_the_handshake("client-expired", "CertificateExpired").await;
}

#[tokio::test]
async fn a_client_certificate_not_yet_valid_is_refused_at_the_handshake() {
    let g = FixtureGateway::start().await;
    g.assert_refused_at_the_handshake("client-not-yet-valid", "CertificateExpired").await;
}

/// rustls (webpki) requires clientAuth whenever the extended key usage extension is present.
#[tokio::test]
async fn a_server_auth_only_client_certificate_is_refused_at_the_handshake() {
    let g = FixtureGateway::start().await;
    g.assert_refused_at_the_handshake("client-server-auth-only", "UnsupportedCertificate").await;
}

/// rustls accepts a certificate without the extended key usage extension (RFC 5280: any
/// usage); the profile requires clientAuth, so the identity layer must refuse it.
#[tokio::test]
async fn a_client_certificate_without_the_client_auth_usage_is_unauthenticated() {
    let g = FixtureGateway::start().await;
    let err = g.call_as("client-no-eku").await.expect_err("must be refused");
    assert!(err.starts_with("UNAUTHENTICATED"), "{err}");
}

#[tokio::test]
async fn an_unregistered_common_name_is_unauthenticated() {
    let g = FixtureGateway::start().await;
    let err = g.call_as("client-unregistered").await.expect_err("must be refused");
    assert!(err.starts_with("UNAUTHENTICATED"), "{err}");
}

/// A parsed fixture certificate.
fn with_cert<T>(name: &str, f: impl FnOnce(&X509Certificate<'_>) -> T) -> T {
    let pem = read(name);
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    let (_, cert) = X509Certificate::from_der(&block.contents).unwrap();
    f(&cert)
}

#[test]
fn the_committed_fixtures_have_the_documented_profile_and_a_year_left() {
    let now = chrono::Utc::now().timestamp();
    let in_a_year = now + 365 * 86_400;
    let cn = |c: &X509Certificate<'_>| c.subject().iter_common_name().next().unwrap().as_str().unwrap().to_owned();
    let issuer = with_cert("ca.pem", |c| c.subject().to_string());
    for name in ["ca.pem", "other-ca.pem", "server.pem", "client-tj-stats.pem", "client-unregistered.pem"] {
        let not_after = with_cert(name, |c| c.validity().not_after.timestamp());
        assert!(
            not_after > in_a_year,
            "{name} expires within a year: regenerate with `cargo test --test it regenerate_test_certs -- --ignored`"
        );
    }
    with_cert("server.pem", |c| {
        let sans = format!("{:?}", c.subject_alternative_name().unwrap().unwrap().value.general_names);
        assert!(sans.contains("DNSName(\"localhost\")") && sans.contains("IPAddress([127, 0, 0, 1])"), "{sans}");
        assert!(c.extended_key_usage().unwrap().unwrap().value.server_auth);
    });
    for (name, want_cn, client_auth) in [
        ("client-tj-stats.pem", PARTICIPANT, Some(true)),
        ("client-expired.pem", PARTICIPANT, Some(true)),
        ("client-not-yet-valid.pem", PARTICIPANT, Some(true)),
        ("client-server-auth-only.pem", PARTICIPANT, Some(false)),
        ("client-no-eku.pem", PARTICIPANT, None),
        ("client-unregistered.pem", STRANGER, Some(true)),
    ] {
        with_cert(name, |c| {
            assert_eq!(cn(c), want_cn, "{name}");
            assert_eq!(c.issuer().to_string(), issuer, "{name}");
            let eku = c.extended_key_usage().unwrap().map(|e| e.value.client_auth);
            assert_eq!(eku, client_auth, "{name}");
        });
    }
    with_cert("client-other-ca.pem", |c| assert_ne!(c.issuer().to_string(), issuer));
    assert!(with_cert("client-expired.pem", |c| c.validity().not_after.timestamp()) < now);
    assert!(with_cert("client-not-yet-valid.pem", |c| c.validity().not_before.timestamp()) > now);
}

//! Backups that work: `bth-gateway backup DEST` while the gateway runs, and a database file that
//! is whole on its own after a clean stop (issue 12: copying `gateway.db` after a stop gave an
//! empty database with no error).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bth_gateway::pb;

use crate::harness::serve_channel;

fn bin(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bth-gateway"));
    c.env("BTH_LOG", "warn").env("NO_COLOR", "1").env_remove("BTH_DATABASE_URL").current_dir(dir);
    c
}

fn run(dir: &Path, args: &[&str]) -> std::process::Output {
    bin(dir).args(args).output().unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The leaves `audit verify` reports for the database file `db` (verifier key from `dir`).
fn verified_leaves(dir: &Path, db: &Path) -> u64 {
    let key = String::from_utf8(run(dir, &["audit", "key", "--dir", "."]).stdout).unwrap();
    let out = run(dir, &["audit", "verify", "--db", db.to_str().unwrap(), "--verifier-key", key.trim()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    text.split("ok: ").nth(1).and_then(|s| s.split(' ').next()).and_then(|n| n.parse().ok()).expect("a leaf count")
}

#[tokio::test]
async fn a_backup_taken_while_serving_verifies_and_the_database_file_is_whole_after_a_clean_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    assert!(run(dir, &["init", "."]).status.success());
    // `init` writes the admin's certificate beside the CA; the harness reads clients' from clients/.
    std::fs::create_dir_all(dir.join("certs/clients")).unwrap();
    for ext in ["pem", "key"] {
        std::fs::copy(dir.join(format!("certs/admin.{ext}")), dir.join(format!("certs/clients/admin.{ext}"))).unwrap();
    }
    let port = free_port();
    let mut server = bin(dir)
        .args(["serve", "--dir", ".", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let channel = serve_channel(dir, port, "admin").await;
    let mut admin = pb::admin_client::AdminClient::new(channel.clone());
    let mut p = pb::Participant {
        id: "tj-stats".into(),
        display_name: "Tianjin statistics".into(),
        kind: pb::ParticipantKind::StateOrgan.into(),
        recipient_type: pb::RecipientType::GovDept.into(),
        region: "CN-TJ".into(),
        roles: vec!["publisher".into()],
        clearance: pb::Level::G4.into(),
        ..Default::default()
    };
    admin.register_participant(pb::RegisterParticipantRequest { participant: Some(p.clone()) }).await.unwrap();
    p.id = "tj-health".into();
    admin.register_participant(pb::RegisterParticipantRequest { participant: Some(p) }).await.unwrap();

    // The registrations' records are integrated by the sequencer after they are committed.
    let live = dir.join("data/gateway.db");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while verified_leaves(dir, &live) < 3 {
        assert!(std::time::Instant::now() < deadline, "the registrations were not integrated");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // While serving: a copy that verifies, private, and never over an existing file.
    let copy = dir.join("backup.db");
    let out = run(dir, &["backup", copy.to_str().unwrap(), "--dir", "."]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("verified"), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777, 0o600);
    let leaves = verified_leaves(dir, &copy);
    assert!(leaves >= 3, "init's admin and two registrations: {leaves}");
    let again = run(dir, &["backup", copy.to_str().unwrap(), "--dir", "."]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwrites"));

    // A clean stop leaves the database file whole: copied alone, it is the whole log.
    nix_term(&server);
    let status = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(s) = server.try_wait().unwrap() {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("serve stops on SIGTERM");
    assert!(status.success());
    let db = live;
    let wal = dir.join("data/gateway.db-wal");
    assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0, "the WAL is checkpointed on stop");
    let alone = dir.join("alone.db");
    std::fs::copy(&db, &alone).unwrap();
    assert_eq!(verified_leaves(dir, &alone), leaves);
}

/// SIGTERM, as an operator's `kill` or systemd would send it.
fn nix_term(child: &std::process::Child) {
    let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(ok.success());
}

#[test]
fn a_backup_of_a_postgresql_gateway_says_to_use_pg_dump() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("bth-gateway.toml"), "database_url = \"postgres://gw@localhost/gateway\"\n").unwrap();
    let out = run(dir, &["backup", "copy.db", "--dir", "."]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pg_dump") && err.contains("audit verify"), "{err}");
    assert!(!dir.join("copy.db").exists());
}

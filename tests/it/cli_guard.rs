//! Commands run where there is no gateway say so, exit non-zero and create nothing.

use std::path::Path;
use std::process::Command;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bth-gateway"));
    // A database named in the caller's environment would count as a gateway.
    c.env_remove("BTH_DATABASE_URL");
    c
}

/// Runs `args` (with `--dir DIR` appended) on an empty `DIR`; asserts the refusal names the
/// directory and `init`, and that `DIR` is still empty.
fn assert_no_gateway(args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let out = bin().args(args).arg("--dir").arg(dir.path()).output().unwrap();
    assert_refused(dir.path(), args, &out);
}

fn assert_refused(dir: &Path, args: &[&str], out: &std::process::Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded: {stderr}");
    let want = format!("no gateway in {d} (no bth-gateway.toml): run `bth-gateway init {d}` first", d = dir.display());
    assert!(stderr.contains(&want), "{args:?}: {stderr}");
    let left: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "{args:?} created {left:?}");
}

#[test]
fn participants_list_without_a_gateway_says_so_and_creates_no_database() {
    assert_no_gateway(&["participants", "list"]);
}

#[test]
fn participants_add_and_suspend_without_a_gateway_say_so() {
    assert_no_gateway(&[
        "participants",
        "add",
        "tj-stats",
        "--name",
        "Tianjin Statistics Bureau",
        "--kind",
        "STATE_ORGAN",
        "--recipient-type",
        "STATISTICS_AGENCY",
        "--region",
        "CN-TJ",
        "--roles",
        "consumer",
    ]);
    assert_no_gateway(&["participants", "suspend", "tj-stats"]);
}

#[test]
fn certs_issue_without_a_gateway_says_so_and_writes_no_certificate() {
    assert_no_gateway(&["certs", "issue", "tj-stats"]);
}

#[test]
fn audit_key_and_verify_without_a_gateway_say_so() {
    assert_no_gateway(&["audit", "key"]);
    assert_no_gateway(&["audit", "verify"]);
}

#[test]
fn serve_without_a_gateway_says_so() {
    assert_no_gateway(&["serve", "--listen", "127.0.0.1:0"]);
}

#[test]
fn a_missing_directory_is_not_created() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("nowhere");
    let out = bin().args(["participants", "list", "--dir"]).arg(&dir).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no gateway in"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.exists());
}

#[test]
fn the_default_directory_is_the_current_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin().args(["participants", "list"]).current_dir(dir.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no gateway in . (no bth-gateway.toml): run `bth-gateway init .` first"), "{stderr}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

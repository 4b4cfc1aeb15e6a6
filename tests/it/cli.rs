//! The command line, run as a user would: the built `bth-gateway` binary.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bth-gateway"))
}

#[test]
fn assess_prints_the_decision_of_every_spec_case() {
    let dir = tempfile::tempdir().unwrap();
    let cases = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cases/spec");
    let mut n = 0;
    for entry in std::fs::read_dir(cases).unwrap() {
        let case: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        let input = dir.path().join("input.json");
        std::fs::write(&input, case["input"].to_string()).unwrap();
        let out = bin().arg("assess").arg(&input).output().unwrap();
        assert!(out.status.success(), "{}: {}", case["name"], String::from_utf8_lossy(&out.stderr));
        let decision: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for (key, want) in case["expect"].as_object().unwrap() {
            assert_eq!(&decision[key], want, "{}: {key}", case["name"]);
        }
        n += 1;
    }
    assert!(n >= 12);
}

#[test]
fn assess_exits_2_with_one_line_naming_the_key_on_malformed_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.json");
    for (text, key) in [
        (
            r#"{"at":"2025-06-01T10:00:00+08:00","exporter":{"id":"a","kind":"STATE_ORGAN"},"recipient":{"id":"b","type":"RESEARCH","region":"HK"},"fields":[{"name":"x","level":"G9"}]}"#,
            "level",
        ),
        (
            r#"{"exporter":{"id":"a","kind":"STATE_ORGAN"},"recipient":{"id":"b","type":"RESEARCH","region":"HK"},"fields":[]}"#,
            "at",
        ),
        (
            r#"{"at":"2025-06-01T10:00:00+08:00","exporter":{"id":"a","kind":"STATE_ORGAN"},"recipient":{"id":"b","type":"RESEARCH","region":"HK"},"fields":[],"colour":"red"}"#,
            "colour",
        ),
    ] {
        std::fs::write(&input, text).unwrap();
        let out = bin().arg("assess").arg(&input).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(key), "{key}: {err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn init_writes_a_working_directory_with_private_secrets_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let gw = dir.path().join("gw");
    let out = bin().arg("init").arg(&gw).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for secret in
        ["certs/ca.key", "certs/server.key", "certs/admin.key", "secrets/gateway.secret", "secrets/log-signing.key"]
    {
        let mode = std::fs::metadata(gw.join(secret)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{secret}");
    }
    assert!(gw.join("bth-gateway.toml").exists());
    let again = bin().arg("init").arg(&gw).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));

    let issue = bin().args(["certs", "issue", "tj-stats", "--dir"]).arg(&gw).output().unwrap();
    assert!(issue.status.success(), "{}", String::from_utf8_lossy(&issue.stderr));
    let key = gw.join("certs/clients/tj-stats.key");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);

    let add = bin()
        .args(["participants", "add", "tj-stats", "--name", "Tianjin Statistics Bureau", "--kind", "STATE_ORGAN"])
        .args(["--recipient-type", "STATISTICS_AGENCY", "--region", "CN-TJ", "--roles", "publisher,consumer", "--dir"])
        .arg(&gw)
        .output()
        .unwrap();
    assert!(add.status.success(), "{}", String::from_utf8_lossy(&add.stderr));
    let bad = bin()
        .args(["participants", "add", "x", "--name", "X", "--kind", "STATE_ORGAN"])
        .args(["--recipient-type", "GOV_DEPT", "--region", "Tianjin", "--roles", "consumer", "--dir"])
        .arg(&gw)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("region"));
    let suspend =
        bin().args(["participants", "suspend", "tj-stats", "--reason", "test", "--dir"]).arg(&gw).output().unwrap();
    assert!(suspend.status.success());
    let list = bin().args(["participants", "list", "--dir"]).arg(&gw).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.lines().any(|l| l.starts_with("tj-stats\t") && l.contains("SUSPENDED")), "{list}");
    assert!(list.lines().any(|l| l.starts_with("admin\t")), "{list}");
}

#[test]
fn demo_runs_the_whole_story_against_a_real_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin().args(["demo", "--dir"]).arg(dir.path().join("demo")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("receipt verifies offline"), "{stdout}");
    assert!(stdout.contains("FailedPrecondition X5"), "{stdout}");
    assert!(stdout.contains("9. hk-univ retries: 1500 rows delivered"), "{stdout}");
}

#[test]
fn assess_takes_a_case_file_as_it_is_and_exits_1_naming_each_key_that_differs_from_expect() {
    let cases = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cases/spec");
    for entry in std::fs::read_dir(cases).unwrap() {
        let path = entry.unwrap().path();
        let out = bin().arg("assess").arg(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    }
    let dir = tempfile::tempdir().unwrap();
    let first = std::fs::read_dir(cases).unwrap().next().unwrap().unwrap().path();
    let mut case: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(first).unwrap()).unwrap();
    case["expect"]["mechanism"] = "NOT_A_MECHANISM".into();
    let wrong = dir.path().join("wrong.json");
    std::fs::write(&wrong, case.to_string()).unwrap();
    let out = bin().arg("assess").arg(&wrong).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mechanism: expected \"NOT_A_MECHANISM\""), "{err}");
    assert!(!out.stdout.is_empty(), "the decision is printed all the same");
}

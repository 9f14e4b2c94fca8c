//! Known answers: the rig passes a good device and fails a bad one for the right
//! reasons. Every device profile declares the requirements it must fail
//! (`expected_failures`); running the scenario library against it must
//!
//! * reach a verdict on every scenario (a healthy virtual lab gives no
//!   `inconclusive`),
//! * fail no requirement the profile does not declare — the rig never blames a
//!   device for a defect it does not have,
//! * for `reference` fail nothing and for `safe-kid-one` fail exactly its RAPEX
//!   findings' requirements.
//!
//! Declared failures the library does not catch yet are printed (the scenario
//! library is still growing); they are not hidden.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn expected(profile: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(fixtures().join("devices").join(format!("{profile}.yaml")))
        .unwrap();
    let v: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    v["expected_failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect()
}

fn check(profile: &str) {
    let out = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixtures().join("rigs/virtual.yaml")).unwrap();
    let rig = fixtures()
        .join("rigs")
        .join(format!(".test-ka-{profile}-{}.yaml", std::process::id()));
    std::fs::write(
        &rig,
        text.replacen("name: virtual-lab", &format!("name: ka-{profile}"), 1),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_redrig"))
        .args([
            "run",
            "-q",
            "--rig",
            rig.to_str().unwrap(),
            "--dut",
            profile,
            "--out",
            out.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&rig);
    let results: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.path().join("results.json")).unwrap_or_else(|e| {
            panic!(
                "{profile}: no results.json ({e}): {}",
                String::from_utf8_lossy(&o.stderr)
            )
        }),
    )
    .unwrap();
    let inconclusive: Vec<String> = results["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            matches!(
                s["verdict"].as_str(),
                Some("inconclusive") | Some("not-run")
            )
        })
        .map(|s| format!("{}: {}", s["name"], s["message"]))
        .collect();
    assert!(
        inconclusive.is_empty(),
        "{profile}: the rig reached no verdict on {inconclusive:#?}"
    );
    let failed: BTreeSet<String> = results["failed_requirements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let expected = expected(profile);
    let wrongly_blamed: Vec<_> = failed.difference(&expected).collect();
    let failures: Vec<String> = results["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["verdict"].as_str() == Some("fail"))
        .map(|s| format!("{}: {}", s["name"], s["message"]))
        .collect();
    assert!(
        wrongly_blamed.is_empty(),
        "{profile}: failed requirements it does not declare: {wrongly_blamed:?}\nfailed scenarios: {failures:#?}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let not_caught: Vec<_> = expected.difference(&failed).collect();
    if !not_caught.is_empty() {
        println!("{profile}: declared but not caught by the library yet: {not_caught:?}");
    }
    let code = o.status.code();
    assert_eq!(
        code,
        Some(if failed.is_empty() { 0 } else { 1 }),
        "{profile}: exit code"
    );
    match profile {
        "reference" => assert!(failed.is_empty()),
        "safe-kid-one" => assert_eq!(failed, expected, "safe-kid-one fails exactly its findings"),
        _ => {}
    }
}

macro_rules! profiles {
    ($($name:ident => $file:literal),* $(,)?) => {
        $( #[test] fn $name() { check($file); } )*
        const LISTED: &[&str] = &[$($file),*];
    };
}

profiles! {
    reference => "reference",
    safe_kid_one => "safe-kid-one",
    callerid_spoof_trusted => "callerid-spoof-trusted",
    cleartext_transport => "cleartext-transport",
    console_shell_open => "console-shell-open",
    covert_monitor => "covert-monitor",
    cross_account_read => "cross-account-read",
    debug_port_open => "debug-port-open",
    downgrade_accepted => "downgrade-accepted",
    forged_frames_accepted => "forged-frames-accepted",
    geofence_alert_late => "geofence-alert-late",
    geofence_unauthenticated => "geofence-unauthenticated",
    media_over_http => "media-over-http",
    no_data_deletion => "no-data-deletion",
    no_rate_limit => "no-rate-limit",
    pairing_by_user_id => "pairing-by-user-id",
    phonebook_exfiltration => "phonebook-exfiltration",
    remote_call_unrestricted => "remote-call-unrestricted",
    replay_accepted => "replay-accepted",
    role_escalation => "role-escalation",
    sequential_ids_idor => "sequential-ids-idor",
    server_redirect => "server-redirect",
    sms_backdoor => "sms-backdoor",
    sms_default_password => "sms-default-password",
    sms_monitor_hidden => "sms-monitor-hidden",
    sos_works_once => "sos-works-once",
    tls_not_validated => "tls-not-validated",
    token_not_validated => "token-not-validated",
    unauthenticated_api => "unauthenticated-api",
    unsigned_update_accepted => "unsigned-update-accepted",
    weak_password_policy => "weak-password-policy",
    whitelist_not_enforced => "whitelist-not-enforced",
}

#[test]
fn every_profile_is_checked() {
    let mut on_disk: Vec<String> = std::fs::read_dir(fixtures().join("devices"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".yaml")
                .map(String::from)
        })
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = LISTED.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

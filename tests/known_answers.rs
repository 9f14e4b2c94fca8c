//! Known answers: the rig passes a good device and fails a bad one for the right
//! reasons. Every device profile in `fixtures/devices/` declares the requirements it
//! must fail (`expected_failures`); running the whole scenario library against it must
//!
//! * reach a verdict on every scenario (a healthy virtual lab gives no
//!   `inconclusive`),
//! * fail exactly the requirements the profile declares: none it does not declare
//!   (the rig never blames a device for a defect it does not have) and every one it
//!   does (the library catches each seeded defect) — so `reference` fails nothing,
//!   each single-defect variant fails exactly its own requirements and
//!   `safe-kid-one` exactly its RAPEX findings' requirements,
//! * exit with 0 when nothing failed and 1 otherwise.
//!
//! Every profile on disk is checked, in one test: the runs mostly wait on device time,
//! so they go several at a time (`REDRIG_KA_JOBS`, default 4), and the test reports
//! every profile that went wrong, not only the first. `REDRIG_KA_PROFILES=a,b` checks
//! only the named profiles (for working on one defect).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn strings(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn expected(profile: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(fixtures().join("devices").join(format!("{profile}.yaml")))
        .unwrap();
    let v: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    assert!(
        v["expected_failures"].is_array(),
        "{profile}: no expected_failures list"
    );
    strings(&v["expected_failures"])
}

/// Run the library against `profile`; `Err` says everything that is wrong.
fn check(profile: &str) -> Result<(), String> {
    let out = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixtures().join("rigs/virtual.yaml")).unwrap();
    // Each run has a rig of its own name, so the rig lock lets them run side by side.
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
    let stderr = String::from_utf8_lossy(&o.stderr);
    let results: serde_json::Value = match std::fs::read(out.path().join("results.json")) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("results.json: {e}"))?,
        Err(e) => return Err(format!("no results.json ({e}): {stderr}")),
    };
    let scenarios = results["scenarios"].as_array().cloned().unwrap_or_default();
    let listed = |verdicts: &[&str]| -> Vec<String> {
        scenarios
            .iter()
            .filter(|s| verdicts.contains(&s["verdict"].as_str().unwrap_or("")))
            .map(|s| format!("{}: {}", s["name"], s["message"]))
            .collect()
    };
    let mut problems = Vec::new();
    let inconclusive = listed(&["inconclusive", "not-run"]);
    if !inconclusive.is_empty() {
        problems.push(format!("no verdict on {inconclusive:#?}"));
    }
    let failed = strings(&results["failed_requirements"]);
    let expected = expected(profile);
    let wrongly_blamed: Vec<_> = failed.difference(&expected).collect();
    if !wrongly_blamed.is_empty() {
        problems.push(format!(
            "failed requirements it does not declare: {wrongly_blamed:?}"
        ));
    }
    let not_caught: Vec<_> = expected.difference(&failed).collect();
    if !not_caught.is_empty() {
        problems.push(format!(
            "declares failures the library did not find: {not_caught:?}"
        ));
    }
    let want = if failed.is_empty() { 0 } else { 1 };
    if o.status.code() != Some(want) {
        problems.push(format!("exit code {:?}, expected {want}", o.status.code()));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        problems.push(format!("failed scenarios: {:#?}", listed(&["fail"])));
        Err(problems.join("\n"))
    }
}

fn profiles_on_disk() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(fixtures().join("devices"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".yaml")
                .map(String::from)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn every_profile_fails_exactly_its_declared_requirements() {
    let mut profiles = profiles_on_disk();
    assert!(
        profiles.iter().any(|p| p == "reference") && profiles.iter().any(|p| p == "safe-kid-one"),
        "the reference and safe-kid-one profiles must exist"
    );
    if let Ok(only) = std::env::var("REDRIG_KA_PROFILES") {
        let only: Vec<&str> = only.split(',').map(str::trim).collect();
        profiles.retain(|p| only.contains(&p.as_str()));
        assert!(!profiles.is_empty(), "REDRIG_KA_PROFILES names no profile");
    }
    let jobs: usize = std::env::var("REDRIG_KA_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .filter(|j| *j > 0)
        .unwrap_or(4);
    let queue = Arc::new(Mutex::new(profiles.clone()));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..jobs.min(profiles.len()))
        .map(|_| {
            let (queue, outcomes) = (queue.clone(), outcomes.clone());
            std::thread::spawn(move || loop {
                let Some(p) = queue.lock().unwrap().pop() else {
                    return;
                };
                let r = check(&p);
                eprintln!(
                    "known answers: {p}: {}",
                    if r.is_ok() { "ok" } else { "WRONG" }
                );
                outcomes.lock().unwrap().push((p, r));
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let mut outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    outcomes.sort();
    assert_eq!(outcomes.len(), profiles.len(), "every profile was run");
    let wrong: Vec<String> = outcomes
        .iter()
        .filter_map(|(p, r)| r.as_ref().err().map(|e| format!("== {p}\n{e}")))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} profiles did not give their known answers:\n{}",
        wrong.len(),
        outcomes.len(),
        wrong.join("\n")
    );
}

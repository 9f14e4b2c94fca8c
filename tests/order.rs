//! `redrig run --shuffle SEED` on the virtual lab: three quick scenarios from three
//! features, run in two seeded orders against the reference watch. Every verdict must
//! be `pass` in both runs, each run must follow its seed's feature order, the two
//! recorded orders must differ, and the seed must be in the run log.

use std::path::{Path, PathBuf};
use std::process::Command;

use redrig::features::{parse_tags, FeatureIndex};
use redrig::runner::order::feature_key;

/// Quick scenarios (well under a second of wall time each on the reference watch),
/// one each from authentication, firmware and the whitelist.
const TAGS: &str = "@req:EN18031-1:AUM-3 or @req:EN18031-1:SSM-2 or @req:SAFETY:WL-1";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The selected feature files in the order `seed` runs them.
fn predicted_files(files: &[String], seed: u64) -> Vec<String> {
    let mut f = files.to_vec();
    f.sort_by_key(|f| feature_key(seed, f));
    f
}

/// Runs the selection with `--shuffle seed`; returns the recorded (file, line,
/// verdict) in run order and the run log.
fn run(seed: u64) -> (Vec<(String, u64, String)>, String) {
    let out = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("fixtures/rigs/virtual.yaml")).unwrap();
    let name = format!("order-{seed}-{}", std::process::id());
    let rig: PathBuf = root()
        .join("fixtures/rigs")
        .join(format!(".test-{name}.yaml"));
    std::fs::write(
        &rig,
        text.replacen("name: virtual-lab", &format!("name: {name}"), 1),
    )
    .unwrap();
    let seed_arg = seed.to_string();
    let o = Command::new(env!("CARGO_BIN_EXE_redrig"))
        .args(["run", "-q", "--rig"])
        .arg(&rig)
        .args(["--dut", "reference", "--tags", TAGS, "--shuffle", &seed_arg])
        .arg("--out")
        .arg(out.path())
        .env_remove("REDRIG_FEATURES")
        .env_remove("REDRIG_FIXTURES")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&rig);
    let results: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.path().join("results.json")).unwrap_or_else(|e| {
            panic!(
                "seed {seed}: no results.json ({e}), exit {:?}: {}",
                o.status.code(),
                String::from_utf8_lossy(&o.stderr)
            )
        }),
    )
    .unwrap();
    let recorded = results["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["file"].as_str().unwrap_or_default().to_string(),
                s["line"].as_u64().unwrap_or_default(),
                format!("{} ({})", s["verdict"], s["message"]),
            )
        })
        .collect();
    let log = std::fs::read_to_string(out.path().join("run.log")).unwrap_or_default();
    assert_eq!(o.status.code(), Some(0), "seed {seed}: {recorded:?}");
    (recorded, log)
}

/// Consecutive duplicates removed: the order features ran in.
fn file_sequence(recorded: &[(String, u64, String)]) -> Vec<String> {
    let mut v: Vec<String> = recorded.iter().map(|r| r.0.clone()).collect();
    v.dedup();
    v
}

#[test]
fn two_seeds_run_the_selection_in_two_orders_and_all_pass() {
    let index = FeatureIndex::scan(root().join("features")).unwrap();
    let selected = index.filter(&parse_tags(TAGS).unwrap());
    let mut files: Vec<String> = selected.iter().map(|s| s.file.clone()).collect();
    files.sort();
    files.dedup();
    assert!(
        files.len() >= 3,
        "the selection must span three features: {files:?}"
    );

    // Two seeds whose feature orders differ (found, not assumed).
    let seed_a = 1;
    let order_a = predicted_files(&files, seed_a);
    let seed_b = (2..1000)
        .find(|&s| predicted_files(&files, s) != order_a)
        .expect("some seed reorders three features");
    let order_b = predicted_files(&files, seed_b);

    let (ran_a, log_a) = run(seed_a);
    let (ran_b, log_b) = run(seed_b);
    for (seed, ran) in [(seed_a, &ran_a), (seed_b, &ran_b)] {
        assert_eq!(ran.len(), selected.len(), "seed {seed}: {ran:?}");
        for (file, line, verdict) in ran {
            assert!(
                verdict.starts_with("\"pass\""),
                "seed {seed}: {file}:{line} ended {verdict}"
            );
        }
    }
    assert_eq!(file_sequence(&ran_a), order_a, "seed {seed_a}");
    assert_eq!(file_sequence(&ran_b), order_b, "seed {seed_b}");
    let key = |r: &(String, u64, String)| (r.0.clone(), r.1);
    let (a, b): (Vec<_>, Vec<_>) = (
        ran_a.iter().map(key).collect(),
        ran_b.iter().map(key).collect(),
    );
    assert_ne!(a, b, "both seeds ran the same order");
    let (mut sa, mut sb) = (a.clone(), b.clone());
    sa.sort();
    sb.sort();
    assert_eq!(sa, sb, "the two runs ran different scenarios");
    assert!(log_a.contains(&format!("seed {seed_a} ")), "{log_a}");
    assert!(log_b.contains(&format!("seed {seed_b} ")), "{log_b}");
}

//! The evidence bundle through the real binary: `redrig keygen` and `redrig verify` on
//! hand-made run directories sealed with `redrig::bundle::seal`, tampered with in the
//! ways an auditor must catch, and cross-checked with OpenSSL when it is installed.

use redrig::bundle::{self, SealInfo};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn redrig() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_redrig"));
    c.env_remove("REDRIG_LAB_PUBKEY");
    c.env_remove("REDRIG_SIGN_KEY");
    c
}

fn info() -> SealInfo {
    SealInfo {
        redrig_version: env!("CARGO_PKG_VERSION").into(),
        commit: bundle::commit().into(),
        started: "2026-11-22T09:48:14Z".into(),
        finished: "2026-11-22T09:50:41Z".into(),
        rig: serde_json::json!({"file": "fixtures/rigs/virtual.yaml", "kind": "virtual"}),
        device: serde_json::json!({"profile": "reference"}),
        firmware: serde_json::json!({"image": "reference.bin", "sha256": null}),
        config: serde_json::json!({"tags": null, "shuffle": null}),
    }
}

/// A run directory like a real one, small: results, junit, logs in a subdirectory, a
/// binary flow dump.
fn run_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    fs::write(
        p.join("results.json"),
        br#"{"verdict":"pass","scenarios":3}"#,
    )
    .unwrap();
    fs::write(
        p.join("junit.xml"),
        b"<testsuites><testsuite name=\"sos\" tests=\"1\"/></testsuites>\n",
    )
    .unwrap();
    fs::write(p.join("run.log"), b"seed 42\nall scenarios done\n").unwrap();
    fs::create_dir_all(p.join("logs/console")).unwrap();
    fs::write(
        p.join("logs/console/console-watch.log"),
        b"00:00.001 boot\n00:00.120 gnss fix\n00:01.500 sos pressed\n",
    )
    .unwrap();
    fs::write(p.join("logs/gateway.log"), b"flow 1 up 443\n").unwrap();
    let binary: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    fs::write(p.join("flow-1-up.bin"), binary).unwrap();
    fs::write(p.join("empty.txt"), b"").unwrap();
    d
}

struct Keys {
    _dir: tempfile::TempDir,
    private: PathBuf,
    public: PathBuf,
    fingerprint: String,
}

/// A key pair made by `redrig keygen --out`.
fn keygen() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lab-key.pem");
    let o = redrig()
        .args(["keygen", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{stdout}{}", text(&o));
    let public = dir.path().join("lab-key.pub.pem");
    assert!(stdout.contains(out.to_str().unwrap()), "{stdout}");
    assert!(stdout.contains(public.to_str().unwrap()), "{stdout}");
    assert!(stdout.contains("outside every run directory"), "{stdout}");
    let fingerprint = bundle::fingerprint(&bundle::load_public_key(&public).unwrap());
    assert!(stdout.contains(&fingerprint), "{stdout}");
    Keys {
        _dir: dir,
        private: out,
        public,
        fingerprint,
    }
}

fn seal(run: &Path, keys: Option<&Keys>) {
    let key = keys.map(|k| bundle::load_signing_key(&k.private, run).unwrap());
    bundle::seal(run, &info(), key.as_ref()).unwrap();
}

fn verify(run: &Path, key: Option<&Path>) -> Output {
    let mut c = redrig();
    c.arg("verify").arg(run);
    if let Some(k) = key {
        c.arg("--key").arg(k);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The paths on lines starting with `tag `.
fn tagged(o: &Output, tag: &str) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix(tag).and_then(|r| r.strip_prefix(' ')))
        .map(|r| r.split(" (").next().unwrap_or(r).to_string())
        .collect()
}

fn last_line(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_string()
}

#[test]
fn an_intact_signed_run_verifies_with_the_lab_key() {
    let keys = keygen();
    let run = run_dir();
    seal(run.path(), Some(&keys));
    let o = verify(run.path(), Some(&keys.public));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let last = last_line(&o);
    assert!(last.starts_with("OK"), "{}", text(&o));
    assert!(last.contains(&keys.fingerprint), "{}", text(&o));
    assert!(text(&o).contains("7 of 7 listed match"), "{}", text(&o));
    for tag in ["CHANGED", "MISSING", "ADDED"] {
        assert!(tagged(&o, tag).is_empty(), "{}", text(&o));
    }
    // The key may also come from the environment.
    let o = redrig()
        .arg("verify")
        .arg(run.path())
        .env("REDRIG_LAB_PUBKEY", &keys.public)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("signed by the lab key"), "{}", text(&o));
}

#[test]
fn a_flipped_byte_names_exactly_that_file() {
    let keys = keygen();
    let run = run_dir();
    seal(run.path(), Some(&keys));
    let log = run.path().join("logs/console/console-watch.log");
    let mut bytes = fs::read(&log).unwrap();
    let before = bundle::fingerprint(&bundle::load_public_key(&keys.public).unwrap());
    bytes[20] ^= 0x01;
    fs::write(&log, &bytes).unwrap();
    let o = verify(run.path(), Some(&keys.public));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(
        tagged(&o, "CHANGED"),
        ["logs/console/console-watch.log"],
        "{}",
        text(&o)
    );
    assert!(tagged(&o, "MISSING").is_empty() && tagged(&o, "ADDED").is_empty());
    let out = text(&o);
    let line = out.lines().find(|l| l.starts_with("CHANGED")).unwrap();
    // Same size, different hash: both shown.
    let size = bytes.len();
    assert_eq!(line.matches(&format!("size {size}")).count(), 2, "{line}");
    assert!(
        line.contains("expected sha256") && line.contains("found sha256"),
        "{line}"
    );
    // The signature itself still holds: the manifest was not touched.
    assert!(
        out.contains(&format!("signed by the lab key {before}")),
        "{out}"
    );
    assert!(last_line(&o).starts_with("FAILED"), "{out}");
}

#[test]
fn a_deleted_file_is_missing_and_a_new_one_added() {
    let keys = keygen();
    let run = run_dir();
    seal(run.path(), Some(&keys));
    fs::remove_file(run.path().join("junit.xml")).unwrap();
    let o = verify(run.path(), Some(&keys.public));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(tagged(&o, "MISSING"), ["junit.xml"], "{}", text(&o));
    assert!(tagged(&o, "CHANGED").is_empty() && tagged(&o, "ADDED").is_empty());

    let run = run_dir();
    seal(run.path(), Some(&keys));
    fs::write(run.path().join("logs/extra.log"), b"added later\n").unwrap();
    let o = verify(run.path(), Some(&keys.public));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(tagged(&o, "ADDED"), ["logs/extra.log"], "{}", text(&o));
    assert!(tagged(&o, "CHANGED").is_empty() && tagged(&o, "MISSING").is_empty());
}

#[test]
fn another_labs_key_does_not_verify() {
    let ours = keygen();
    let theirs = keygen();
    let run = run_dir();
    seal(run.path(), Some(&ours));
    let o = verify(run.path(), Some(&theirs.public));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("signed by another key"), "{out}");
    assert!(
        out.contains(&ours.fingerprint) && out.contains(&theirs.fingerprint),
        "{out}"
    );
    assert!(tagged(&o, "CHANGED").is_empty(), "{out}");
}

#[test]
fn an_attacker_who_reseals_with_their_own_key_is_named() {
    let lab = keygen();
    let attacker = keygen();
    let run = run_dir();
    seal(run.path(), Some(&lab));
    fs::write(
        run.path().join("results.json"),
        br#"{"verdict":"pass","scenarios":9}"#,
    )
    .unwrap();
    seal(run.path(), Some(&attacker));
    let o = verify(run.path(), Some(&lab.public));
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    // The files match the forged manifest; only the signer gives it away.
    assert!(tagged(&o, "CHANGED").is_empty(), "{out}");
    assert!(
        out.contains(&format!(
            "signed by another key {}, NOT the lab key {}",
            attacker.fingerprint, lab.fingerprint
        )),
        "{out}"
    );
    // Without the lab key the signature is valid but only reported by fingerprint,
    // and the bundle does not count as verified.
    let o = verify(run.path(), None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("UNVERIFIED signer"), "{}", text(&o));
    assert!(text(&o).contains(&attacker.fingerprint), "{}", text(&o));
    assert!(
        text(&o).contains("not checked against the lab key"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_hand_edited_manifest_keeps_an_invalid_signature() {
    let keys = keygen();
    let run = run_dir();
    seal(run.path(), Some(&keys));
    // Change the file and fix up its hash in the manifest, keeping the old signature.
    let log = run.path().join("run.log");
    let old = fs::read(&log).unwrap();
    let new = b"seed 42\nall scenarios done?\n";
    fs::write(&log, new).unwrap();
    let sha = |b: &[u8]| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b))
    };
    let manifest = run.path().join(bundle::MANIFEST);
    let edited = fs::read_to_string(&manifest)
        .unwrap()
        .replace(&sha(&old), &sha(new))
        .replace(
            &format!("\"size\": {}", old.len()),
            &format!("\"size\": {}", new.len()),
        );
    fs::write(&manifest, edited).unwrap();
    let o = verify(run.path(), Some(&keys.public));
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(tagged(&o, "CHANGED").is_empty(), "{out}");
    assert!(out.contains("signature: INVALID"), "{out}");
}

#[test]
fn an_unsigned_manifest_is_not_ok_but_still_compared() {
    let keys = keygen();
    let run = run_dir();
    seal(run.path(), None);
    let o = verify(run.path(), Some(&keys.public));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("NOT SIGNED"), "{}", text(&o));
    fs::remove_file(run.path().join("empty.txt")).unwrap();
    let o = verify(run.path(), None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(tagged(&o, "MISSING"), ["empty.txt"], "{}", text(&o));
    assert!(text(&o).contains("NOT SIGNED"), "{}", text(&o));
}

#[test]
fn usage_errors_exit_3() {
    let keys = keygen();
    let run = run_dir();
    // Never sealed.
    let o = verify(run.path(), Some(&keys.public));
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("manifest.json"), "{}", text(&o));
    seal(run.path(), Some(&keys));
    // A key file that is missing or not a key.
    let o = verify(run.path(), Some(&keys.public.with_file_name("absent.pem")));
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let o = verify(run.path(), Some(&run.path().join("run.log")));
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    // A manifest that is not JSON: the evidence does not verify, naming the file.
    fs::write(run.path().join(bundle::MANIFEST), b"{\"schema\": ").unwrap();
    let o = verify(run.path(), Some(&keys.public));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("manifest.json"), "{}", text(&o));
}

#[test]
fn keys_stay_private_and_outside_the_run() {
    let keys = keygen();
    let mode = fs::metadata(&keys.private).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // keygen refuses to overwrite, and leaves the key alone.
    let before = fs::read(&keys.private).unwrap();
    let o = redrig()
        .args(["keygen", "--out"])
        .arg(&keys.private)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("already exists"), "{}", text(&o));
    assert_eq!(before, fs::read(&keys.private).unwrap());
    // The default location follows XDG_CONFIG_HOME.
    let config = tempfile::tempdir().unwrap();
    let o = redrig()
        .arg("keygen")
        .env("XDG_CONFIG_HOME", config.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let default = config.path().join("redrig/lab-key.pem");
    assert_eq!(
        fs::metadata(&default).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(config.path().join("redrig/lab-key.pub.pem").is_file());
    // A key inside the run directory is refused.
    let run = run_dir();
    let inside = run.path().join("lab-key.pem");
    fs::copy(&keys.private, &inside).unwrap();
    let err = bundle::load_signing_key(&inside, run.path()).unwrap_err();
    assert!(
        matches!(err, bundle::BundleError::KeyInsideRunDir { .. }),
        "{err}"
    );
    assert!(bundle::load_signing_key(&keys.private, run.path()).is_ok());
}

/// OpenSSL on PATH, or `None` after saying the test is skipped; with
/// `REDRIG_REQUIRE_CROSSCHECKS` set a missing OpenSSL fails the test.
fn openssl() -> Option<&'static str> {
    let found = Command::new("openssl")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if found {
        return Some("openssl");
    }
    if std::env::var_os("REDRIG_REQUIRE_CROSSCHECKS").is_some() {
        panic!("openssl not installed, and REDRIG_REQUIRE_CROSSCHECKS is set");
    }
    println!("SKIPPED: openssl not installed");
    None
}

fn run_openssl(args: &[&std::ffi::OsStr]) -> Output {
    let o = Command::new("openssl").args(args).output().unwrap();
    assert!(o.status.success(), "openssl {args:?}: {}", text(&o));
    o
}

#[test]
fn openssl_reads_our_keys_and_checks_our_signatures() {
    let Some(_) = openssl() else { return };
    let keys = keygen();
    // The public key OpenSSL derives from the private file is the one keygen wrote.
    let derived = run_openssl(&[
        "pkey".as_ref(),
        "-in".as_ref(),
        keys.private.as_os_str(),
        "-pubout".as_ref(),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&derived.stdout),
        fs::read_to_string(&keys.public).unwrap()
    );
    // OpenSSL accepts the signature of a sealed manifest, and only of that manifest.
    let run = run_dir();
    seal(run.path(), Some(&keys));
    let sig_hex = fs::read_to_string(run.path().join(bundle::SIGNATURE)).unwrap();
    let raw = hex::decode(sig_hex.trim()).unwrap();
    assert_eq!(raw.len(), 64);
    let scratch = tempfile::tempdir().unwrap();
    let sig = scratch.path().join("manifest.sig.bin");
    fs::write(&sig, raw).unwrap();
    let check = |manifest: &Path| {
        Command::new("openssl")
            .args(["pkeyutl", "-verify", "-pubin", "-inkey"])
            .arg(&keys.public)
            .arg("-rawin")
            .arg("-in")
            .arg(manifest)
            .arg("-sigfile")
            .arg(&sig)
            .output()
            .unwrap()
    };
    let manifest = run.path().join(bundle::MANIFEST);
    let o = check(&manifest);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("Signature Verified Successfully"),
        "{}",
        text(&o)
    );
    let altered = scratch.path().join("altered.json");
    let mut bytes = fs::read(&manifest).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x20;
    fs::write(&altered, bytes).unwrap();
    assert!(!check(&altered).status.success());
    // The fingerprint is the SHA-256 of the raw public key, the DER's last 32 bytes.
    let der = run_openssl(&[
        "pkey".as_ref(),
        "-pubin".as_ref(),
        "-in".as_ref(),
        keys.public.as_os_str(),
        "-outform".as_ref(),
        "DER".as_ref(),
    ])
    .stdout;
    let raw_key = &der[der.len() - 32..];
    use sha2::Digest;
    assert_eq!(
        keys.fingerprint,
        format!("SHA256:{}", hex::encode(sha2::Sha256::digest(raw_key)))
    );
}

#[test]
fn a_key_made_by_openssl_signs_and_verifies() {
    let Some(_) = openssl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("ossl.pem");
    let public = dir.path().join("ossl.pub.pem");
    run_openssl(&[
        "genpkey".as_ref(),
        "-algorithm".as_ref(),
        "ed25519".as_ref(),
        "-out".as_ref(),
        private.as_os_str(),
    ]);
    run_openssl(&[
        "pkey".as_ref(),
        "-in".as_ref(),
        private.as_os_str(),
        "-pubout".as_ref(),
        "-out".as_ref(),
        public.as_os_str(),
    ]);
    fs::set_permissions(&private, fs::Permissions::from_mode(0o600)).unwrap();
    let run = run_dir();
    let key = bundle::load_signing_key(&private, run.path()).unwrap();
    bundle::seal(run.path(), &info(), Some(&key)).unwrap();
    let o = verify(run.path(), Some(&public));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

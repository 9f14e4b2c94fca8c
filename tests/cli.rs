//! The command line as CI pipelines use it: exit codes, reports, the rig lock,
//! interruption and rig errors. Every test runs the real binary on the virtual lab.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn redrig() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_redrig"));
    // The default rig is the virtual lab unless REDRIG_RIG names another.
    c.env_remove("REDRIG_RIG");
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c.env_remove("CUCUMBER_FILTER_TAGS");
    c
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// A finished `redrig run -q` on a private copy of the virtual rig.
struct PrivateRun {
    code: Option<i32>,
    stderr: String,
    results: serde_json::Value,
    out: tempfile::TempDir,
}

/// Run the scenarios on a private rig (see [`private_rig`]) with extra arguments.
fn run_private(name: &str, edit: impl Fn(String) -> String, args: &[&str]) -> PrivateRun {
    let out = tempfile::tempdir().unwrap();
    let rig = private_rig(name, edit);
    let _c = Cleanup(vec![rig.clone()]);
    let mut all = vec![
        "run",
        "-q",
        "--rig",
        rig.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let o = run(&all);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let results = std::fs::read(out.path().join("results.json"))
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap_or_else(|e| panic!("no results.json ({e}); stderr: {stderr}"));
    PrivateRun {
        code: o.status.code(),
        stderr,
        results,
        out,
    }
}

/// A rig configuration like the default virtual one, with its own name (so tests
/// running in parallel do not contend for the same rig lock) and lock directory.
fn private_rig(name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(fixtures().join("rigs/virtual.yaml")).unwrap();
    let text = text.replacen("name: virtual-lab", &format!("name: {name}"), 1);
    let text = edit(text);
    let path = fixtures()
        .join("rigs")
        .join(format!(".test-{name}-{}.yaml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

struct Cleanup(Vec<PathBuf>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn results(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("results.json")).expect("results.json written");
    serde_json::from_str(&text).unwrap()
}

fn run(args: &[&str]) -> Output {
    redrig().args(args).output().unwrap()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Processes and lab directories a rig with this pid left behind (lab runtime
/// directories are named `<rig pid>-…` under `redrig::lab::labs_root()`).
fn lab_leftovers(rig_pid: u32) -> Vec<String> {
    let prefix = format!("{rig_pid}-");
    let root = redrig::lab::labs_root();
    let mut left: Vec<String> = std::fs::read_dir(&root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path().display().to_string())
        .collect();
    let needle = root.join(&prefix).display().to_string();
    for p in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cmd) = std::fs::read(p.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains("lab-process") && cmd.contains(&needle) {
                left.push(format!(
                    "process {}: {cmd}",
                    p.file_name().to_string_lossy()
                ));
            }
        }
    }
    left
}

/// Wait until the run log has a line containing `needle`; on time-out, show the log.
fn wait_for_log(path: &Path, needle: &str, timeout: Duration) {
    let start = Instant::now();
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.contains(needle) {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "no `{needle}` in {}:\n{log}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `redrig run --tags @safety` on `rig` in the background, output discarded.
fn spawn_run(rig: &Path, out: &Path) -> Child {
    redrig()
        .args([
            "run",
            "--rig",
            rig.to_str().unwrap(),
            "--tags",
            "@safety",
            "--out",
            out.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn wait_exit(child: &mut Child, timeout: Duration) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        assert!(start.elapsed() < timeout, "process did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_reference_watch_passes_the_rapex_findings() {
    let run = run_private("t-ref", |t| t, &["--tags", "@rapex"]);
    let r = &run.results;
    assert_eq!(
        run.code,
        Some(0),
        "stderr: {}\nresults: {}",
        run.stderr,
        r["scenarios"]
    );
    assert_eq!(r["verdict"], "pass");
    assert_eq!(r["counts"]["pass"], 6);
    for sc in r["scenarios"].as_array().unwrap() {
        let (start, end) = (sc["device_start_ms"].as_u64(), sc["device_end_ms"].as_u64());
        assert!(
            start.is_some() && end >= start,
            "device times of {}",
            sc["name"]
        );
    }
    let out = run.out.path();
    assert!(out.join("junit.xml").exists() && out.join("cucumber.json").exists());
    // The test accounts' passwords are used, but written nowhere in the evidence.
    let mut files = 0;
    for entry in std::fs::read_dir(out).unwrap().flatten() {
        let bytes = std::fs::read(entry.path()).unwrap();
        files += 1;
        for secret in ["Correct-Horse-7", "Battery-Staple-9"] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} in {}",
                entry.path().display()
            );
        }
    }
    assert!(
        files > 10,
        "the run directory holds the evidence ({files} files)"
    );
}

#[test]
fn safe_kid_one_fails_and_names_its_requirements() {
    let run = run_private(
        "t-skid",
        |t| t,
        &["--dut", "safe-kid-one", "--tags", "@rapex"],
    );
    assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
    let failed: Vec<&str> = run.results["failed_requirements"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for req in ["EN18031-1:SCM-3", "EN18031-1:AUM-1", "EN18031-1:ACM-2"] {
        assert!(failed.contains(&req), "{req} not in {failed:?}");
    }
    // JUnit carries the requirement ids.
    let junit = std::fs::read_to_string(run.out.path().join("junit.xml")).unwrap();
    assert!(junit.contains("<property name=\"requirement\" value=\"EN18031-1:SCM-3\"/>"));
    assert!(junit.contains("<failure"));
}

#[test]
fn configuration_errors_exit_3_with_a_position() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "rig:\n  name: x\n  kind: virtual\n  colour: red\n").unwrap();
    let o = run(&["run", "--rig", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.yaml:4:"), "{err}");
    let o = run(&["check", "--rig", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    let o = run(&["run", "--tags", "@req:nothing-matches-this"]);
    assert_eq!(o.status.code(), Some(3));
    let o = run(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(3));
}

#[test]
fn check_accepts_the_shipped_rigs() {
    let o = run(&["check"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(&[
        "check",
        "--rig",
        fixtures().join("rigs/pi-bench.yaml").to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn list_and_requirements_show_the_traceability() {
    let o = run(&["list"]);
    assert_eq!(o.status.code(), Some(0));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("EN18031-1:SCM-3"), "{text}");
    let o = run(&["requirements"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("NMM-1"),
        "not-bench-testable requirements are listed too"
    );
}

#[test]
fn a_lab_that_cannot_start_is_inconclusive_not_a_device_fail() {
    let broken = |t: String| t.replace("watch_command: null", "watch_command: [\"/bin/false\"]");
    let run = run_private("t-broken", broken, &["--tags", "@rapex"]);
    assert_eq!(run.code, Some(2), "stderr: {}", run.stderr);
    let r = &run.results;
    assert_eq!(r["verdict"], "inconclusive");
    assert_eq!(r["counts"]["fail"], 0);
    assert_eq!(r["counts"]["inconclusive"], 6);
    assert!(r["failed_requirements"].as_array().unwrap().is_empty());
}

#[test]
fn a_second_run_on_the_same_rig_is_refused_and_an_interrupted_run_still_reports() {
    let out1 = tempfile::tempdir().unwrap();
    let out2 = tempfile::tempdir().unwrap();
    let rig = private_rig("t-lock", |t| t);
    let _c = Cleanup(vec![rig.clone()]);
    let mut first = spawn_run(&rig, out1.path());
    // The first run holds the lock once it has written its run log.
    wait_for("the first run to start", Duration::from_secs(60), || {
        out1.path().join("run.log").exists()
    });
    let o = run(&[
        "run",
        "--rig",
        rig.to_str().unwrap(),
        "--out",
        out2.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("in use"), "{err}");
    assert!(
        err.contains(&first.id().to_string()),
        "the message names the holder: {err}"
    );

    // Interrupt the first run mid-scenario.
    wait_for_log(
        &out1.path().join("run.log"),
        "scenario started",
        Duration::from_secs(120),
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let first_pid = first.id();
    let code = wait_exit(&mut first, Duration::from_secs(60));
    assert_eq!(code, 2, "an interrupted run is inconclusive");
    // Nothing of its lab is left: no simulator process, no runtime directory.
    assert_eq!(lab_leftovers(first_pid), Vec::<String>::new());
    let r = results(out1.path());
    assert_eq!(r["interrupted"], true);
    let verdicts: Vec<&str> = r["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["verdict"].as_str().unwrap())
        .collect();
    assert!(verdicts.iter().all(|v| *v != "fail"), "{verdicts:?}");
    assert!(
        verdicts.contains(&"not-run") || verdicts.contains(&"inconclusive"),
        "{verdicts:?}"
    );
    assert!(out1.path().join("junit.xml").exists());

    // A killed run leaves no lock behind: the rig is free again.
    let mut killed = spawn_run(&rig, out2.path());
    wait_for("the run to start", Duration::from_secs(60), || {
        out2.path().join("run.log").exists()
    });
    killed.kill().unwrap();
    killed.wait().unwrap();
    let out3 = tempfile::tempdir().unwrap();
    let o = run(&[
        "run",
        "--rig",
        rig.to_str().unwrap(),
        "--tags",
        "@req:EN303645:5.6-4",
        "--out",
        out3.path().to_str().unwrap(),
        "-q",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("in use"),
        "stale lock after a killed run: {err}"
    );
    assert_eq!(o.status.code(), Some(0), "{err}");
}

#[test]
fn a_feature_the_device_does_not_declare_is_not_applicable_with_its_reason() {
    let tags = "@req:EN18031-2:UNM-1 or @req:EN18031-1:GEC-2";
    let run = run_private("t-na", |t| t, &["--tags", tags]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let r = &run.results;
    let scenarios = r["scenarios"].as_array().unwrap();
    let na: Vec<_> = scenarios
        .iter()
        .filter(|s| s["verdict"] == "not-applicable")
        .collect();
    assert_eq!(na.len(), 1, "{scenarios:?}");
    assert!(na[0]["message"]
        .as_str()
        .unwrap()
        .contains("does not list the feature `monitor`"));
    let unm = r["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["id"] == "EN18031-2:UNM-1")
        .unwrap();
    assert_eq!(unm["verdict"], "not-applicable");
    let undeclared = scenarios
        .iter()
        .find(|s| {
            s["name"]
                .as_str()
                .unwrap()
                .contains("does not declare cannot be triggered")
        })
        .unwrap();
    assert_eq!(undeclared["verdict"], "pass", "{undeclared}");
}

#[test]
fn lab_up_prints_every_wire_takes_commands_and_leaves_nothing_behind() {
    use std::io::Write;
    let mut child = redrig()
        .args(["lab", "up", "--dut", "sms-default-password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    // Collect the shell's output on a thread; the test waits for what it needs.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut out = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Poke it once the watch is on the network (a busy machine boots it slowly).
    while !out.contains("modem: registered") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => out.push_str(&(line + "\n")),
            Err(_) => panic!("the watch never registered:\n{out}"),
        }
    }
    writeln!(stdin, "sms +4915100000666 pw,123456,ts#").unwrap();
    while !out.contains("SmsFromWatch") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => out.push_str(&(line + "\n")),
            Err(_) => panic!("the poked watch did not answer the SMS:\n{out}"),
        }
    }
    // The data path by hand: an impairment, and the flows so far.
    writeln!(stdin, "net latency 300").unwrap();
    writeln!(stdin, "net flows").unwrap();
    while !(out.contains("latency 300 ms") && out.contains("watch.kidcloud.example:6443")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => out.push_str(&(line + "\n")),
            Err(_) => panic!("`net` did not answer:\n{out}"),
        }
    }
    writeln!(stdin, "quit").unwrap();
    drop(stdin);
    let code = wait_exit(&mut child, Duration::from_secs(30));
    reader.join().unwrap();
    out.extend(rx.try_iter().map(|l| l + "\n"));
    assert_eq!(code, 0, "{out}");
    for wire in [
        "console",
        "gnss",
        "modem",
        "gpio",
        "flash drive",
        "debug port",
        "cloud",
    ] {
        assert!(
            out.contains(&format!("  {wire}")),
            "`{wire}` missing from:\n{out}"
        );
    }
    assert!(out.contains("/watch/console.tty"), "{out}");
    assert!(
        out.contains("SmsFromWatch"),
        "the poked watch answered:\n{out}"
    );
    assert_eq!(lab_leftovers(pid), Vec::<String>::new());
}

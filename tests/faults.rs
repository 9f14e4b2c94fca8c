//! Fault injection: real runs of the binary on the virtual lab, disturbed mid-scenario
//! from outside, as a bench engineer (or a broken bench) would disturb them: a serial
//! adapter unplugged and plugged in again (the watch simulator's SIGUSR1 toggles its
//! console line, SIGUSR2 its modem line — the cellular side), the watch process killed,
//! the backend frozen (SIGSTOP) and thawed, the rig itself sent SIGTERM.
//!
//! Each time: the run ends by itself with its reports; the scenario that was running
//! is inconclusive, never a device fail (the reference watch is faultless); where the
//! instrument comes back, the next scenario recovers the device through the strategy
//! and passes; the evidence is sealed and intact; no simulator process and no lab
//! runtime directory is left behind.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The SOS scenarios: each starts from a freshly booted, connected watch.
const TAGS: &str = "@req:SAFETY:SOS-1 or @req:SAFETY:SOS-2";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// A private copy of the virtual rig (own name, so parallel tests do not share a
/// rig lock), removed on drop.
struct PrivateRig(PathBuf);
impl PrivateRig {
    fn new(name: &str) -> PrivateRig {
        let text = std::fs::read_to_string(fixtures().join("rigs/virtual.yaml")).unwrap();
        let text = text.replacen("name: virtual-lab", &format!("name: {name}"), 1);
        let path = fixtures()
            .join("rigs")
            .join(format!(".test-{name}-{}.yaml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        PrivateRig(path)
    }
}
impl Drop for PrivateRig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn spawn_run(rig: &Path, out: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_redrig"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("REDRIG_RIG")
        .env_remove("CUCUMBER_FILTER_TAGS")
        .args(["run", "-q", "--rig"])
        .arg(rig)
        .args(["--tags", TAGS, "--out"])
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run_log(out: &Path) -> String {
    std::fs::read_to_string(out.join("run.log")).unwrap_or_default()
}

/// Journal events of `kind` (with `field` = `value` when given) in `events.jsonl`.
fn journal_count(out: &Path, kind: &str, field: Option<(&str, serde_json::Value)>) -> usize {
    std::fs::read_to_string(out.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["kind"] == kind)
        .filter(|e| field.as_ref().is_none_or(|(k, v)| e[*k] == *v))
        .count()
}

/// Wait until the `n`th scenario has started and then the journal shows `after`
/// more events of `kind` (`power` with `on: true`: its bring-up switched the supply
/// on; `press`: a button was pressed); returns the scenario's `file:line`.
fn wait_in_scenario(
    out: &Path,
    n: usize,
    kind: &str,
    field: Option<(&str, serde_json::Value)>,
    after: usize,
) -> String {
    let mut started = String::new();
    wait_for(
        &format!("scenario {n} to start"),
        Duration::from_secs(180),
        || {
            let log = run_log(out);
            match log
                .lines()
                .filter(|l| l.contains("scenario started: "))
                .nth(n - 1)
            {
                Some(line) => {
                    started = line
                        .split("scenario started: ")
                        .nth(1)
                        .and_then(|r| r.split(' ').next())
                        .unwrap_or_default()
                        .to_string();
                    true
                }
                None => false,
            }
        },
    );
    let base = journal_count(out, kind, field.clone());
    wait_for(
        &format!("{after} `{kind}` event(s) in scenario {n}"),
        Duration::from_secs(180),
        || journal_count(out, kind, field.clone()) >= base + after,
    );
    started
}

/// Mid-scenario: the `n`th scenario has switched the watch on.
fn wait_mid_scenario(out: &Path, n: usize) -> String {
    wait_in_scenario(
        out,
        n,
        "power",
        Some(("on", serde_json::Value::Bool(true))),
        1,
    )
}

/// The simulator process of this rig (`watch` or `cloud`), found as a bench engineer
/// would find it: by its command line, which names the lab directory of the rig.
fn simulator_pid(rig_pid: u32, kind: &str) -> Option<i32> {
    let needle = redrig::lab::labs_root()
        .join(format!("{rig_pid}-"))
        .display()
        .to_string();
    for p in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(cmd) = std::fs::read(p.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(&format!("lab-process {kind}")) && cmd.contains(&needle) {
            return p.file_name().to_string_lossy().parse().ok();
        }
    }
    None
}

/// Processes and lab directories a rig with this pid left behind.
fn leftovers(rig_pid: u32) -> Vec<String> {
    let prefix = format!("{rig_pid}-");
    let root = redrig::lab::labs_root();
    let mut left: Vec<String> = std::fs::read_dir(&root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path().display().to_string())
        .collect();
    for kind in ["watch", "cloud"] {
        if let Some(pid) = simulator_pid(rig_pid, kind) {
            left.push(format!("{kind} simulator, pid {pid}"));
        }
    }
    left
}

fn wait_exit(child: &mut Child, timeout: Duration) -> (i32, String) {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            return (s.code().unwrap_or(-1), err);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("the run did not end within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Scenario {
    at: String,
    verdict: String,
    message: String,
}

fn scenarios(out: &Path) -> Vec<Scenario> {
    let text = std::fs::read_to_string(out.join("results.json")).expect("results.json");
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    r["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Scenario {
            at: format!("{}:{}", s["file"].as_str().unwrap(), s["line"]),
            verdict: s["verdict"].as_str().unwrap().to_string(),
            message: s["message"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

/// The evidence is complete and sealed: reports written, and the manifest matches
/// every file (exit 1 only for the missing lab key, nothing changed, missing or added).
fn assert_evidence_complete(out: &Path) {
    for f in [
        "results.json",
        "junit.xml",
        "report.html",
        "run.log",
        "manifest.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let o = Command::new(env!("CARGO_BIN_EXE_redrig"))
        .arg("verify")
        .arg(out)
        .env_remove("REDRIG_LAB_PUBKEY")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    for bad in ["CHANGED", "MISSING", "ADDED"] {
        assert!(!text.contains(bad), "evidence not intact:\n{text}");
    }
    assert!(
        run_log(out).contains("run finished: exit code"),
        "the run log has its last line"
    );
}

/// One disturbance of scenario 1 and what must follow.
fn disturbed_run(
    name: &str,
    disturb: impl FnOnce(u32, &Path),
) -> (i32, Vec<Scenario>, String, tempfile::TempDir) {
    let rig = PrivateRig::new(name);
    let out = tempfile::tempdir().unwrap();
    let mut child = spawn_run(&rig.0, out.path());
    let pid = child.id();
    let hit = wait_mid_scenario(out.path(), 1);
    disturb(pid, out.path());
    let (code, stderr) = wait_exit(&mut child, Duration::from_secs(600));
    assert_eq!(leftovers(pid), Vec::<String>::new(), "left behind");
    // The rig is free again (its lock file stays by design; the lock is released).
    redrig::lock::acquire(&redrig::lock::default_lock_dir(), name)
        .unwrap_or_else(|e| panic!("the rig's lock is still held after the run: {e}"));
    let s = scenarios(out.path());
    assert!(
        s.iter().all(|s| s.verdict != "fail"),
        "a rig fault became a device fail: {:?}",
        s.iter()
            .map(|s| format!("{} {} {}", s.at, s.verdict, s.message))
            .collect::<Vec<_>>()
    );
    assert_evidence_complete(out.path());
    eprintln!("{name}: exit {code}, hit {hit}\n{}\n{stderr}", table(&s));
    (code, s, hit, out)
}

/// The disturbed scenario is inconclusive (a rig error), and a later one passed:
/// the strategy recovered the device after `what`.
fn assert_hit_inconclusive_then_recovered(s: &[Scenario], hit: &str, what: &str) {
    let first = verdict_of(s, hit);
    assert_eq!(first.verdict, "inconclusive", "{}", table(s));
    assert!(first.message.starts_with("RIG ERROR"), "{}", first.message);
    assert!(
        s.iter()
            .filter(|x| x.at != hit)
            .any(|x| x.verdict == "pass"),
        "no scenario after the {what} passed:\n{}",
        table(s)
    );
}

fn verdict_of<'a>(s: &'a [Scenario], at: &str) -> &'a Scenario {
    s.iter()
        .find(|s| s.at == at)
        .unwrap_or_else(|| panic!("no result for {at}"))
}

fn signal(pid: i32, sig: Signal) {
    kill(Pid::from_raw(pid), sig).unwrap();
}

fn table(s: &[Scenario]) -> String {
    s.iter()
        .map(|s| format!("{} {} {}", s.at, s.verdict, s.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Unplug a line of the watch (toggle signal), wait until the rig has journalled
/// the loss of its instrument `seen`, plug it in again.
fn unplug_and_replug(rig_pid: u32, out: &Path, sig: Signal, seen: &str) {
    let watch = simulator_pid(rig_pid, "watch").expect("the watch simulator runs");
    let lost = || {
        journal_count(
            out,
            "instrument",
            Some(("instrument", serde_json::Value::from(seen))),
        )
    };
    let before = lost();
    signal(watch, sig);
    wait_for(
        &format!("the rig to notice the {seen} line gone"),
        Duration::from_secs(60),
        || lost() > before,
    );
    signal(watch, sig);
}

#[test]
fn an_unplugged_console_makes_the_scenario_inconclusive_and_the_next_one_recovers() {
    let (code, s, hit, _out) = disturbed_run("t-fault-console", |pid, out| {
        unplug_and_replug(pid, out, Signal::SIGUSR1, "console")
    });
    assert_hit_inconclusive_then_recovered(&s, &hit, "replug");
    assert_eq!(code, 2, "a run with an inconclusive scenario exits 2");
}

/// A line lost and back in the middle of a scenario whose steps do not notice (the
/// console is not read after the boot): what the scenario observed cannot be
/// trusted, so its pass becomes inconclusive, naming the instrument.
#[test]
fn a_line_lost_and_back_mid_scenario_makes_a_pass_inconclusive() {
    let rig = PrivateRig::new("t-fault-mid");
    let out = tempfile::tempdir().unwrap();
    let mut child = spawn_run(&rig.0, out.path());
    let pid = child.id();
    // Scenario 1 (the SOS press): after the press.
    let hit = wait_in_scenario(out.path(), 1, "press", None, 1);
    unplug_and_replug(pid, out.path(), Signal::SIGUSR1, "console");
    let (code, _) = wait_exit(&mut child, Duration::from_secs(600));
    assert_eq!(leftovers(pid), Vec::<String>::new(), "left behind");
    let s = scenarios(out.path());
    eprintln!("t-fault-mid: exit {code}, hit {hit}\n{}", table(&s));
    assert!(s.iter().all(|x| x.verdict != "fail"), "{}", table(&s));
    // The loss lands in the scenario pressed in, or (on a slow machine, if that
    // one ended first) in the next: either way one scenario says so, by name.
    let tainted: Vec<&Scenario> = s
        .iter()
        .filter(|x| x.message.contains("lost during the scenario (console"))
        .collect();
    assert_eq!(tainted.len(), 1, "{}", table(&s));
    assert_eq!(tainted[0].verdict, "inconclusive");
    assert!(
        s.iter().any(|x| x.verdict == "pass"),
        "the other scenarios pass:\n{}",
        table(&s)
    );
    let events = std::fs::read_to_string(out.path().join("events.jsonl")).unwrap();
    assert!(events.contains(r#""state":"lost""#) && events.contains(r#""state":"back""#));
    assert_evidence_complete(out.path());
}

#[test]
fn a_dropped_cell_makes_the_scenario_inconclusive_and_the_next_one_recovers() {
    let (code, s, hit, out) = disturbed_run("t-fault-cell", |pid, out| {
        unplug_and_replug(pid, out, Signal::SIGUSR2, "modem")
    });
    assert_hit_inconclusive_then_recovered(&s, &hit, "cell came back");
    let modem = std::fs::read_to_string(out.path().join("modem.log")).unwrap();
    assert!(modem.contains("# line closed"), "the loss is on record");
    assert!(modem.contains("# line open again"), "and the return");
    assert_eq!(code, 2);
}

#[test]
fn a_frozen_backend_is_inconclusive_not_a_device_fail() {
    let (_code, s, hit, _out) = disturbed_run("t-fault-backend", |pid, _| {
        let cloud = simulator_pid(pid, "cloud").expect("the cloud simulator runs");
        // Longer than the rig's wall-time limit on one backend request (30 s), so a
        // request is bound to hit it.
        signal(cloud, Signal::SIGSTOP);
        std::thread::sleep(Duration::from_secs(35));
        signal(cloud, Signal::SIGCONT);
    });
    let first = verdict_of(&s, &hit);
    assert!(
        first.verdict == "inconclusive" || first.verdict == "pass",
        "{}",
        table(&s)
    );
    assert!(
        s.iter().any(|x| x.verdict == "inconclusive"),
        "a backend frozen for 35 s went unnoticed:\n{}",
        table(&s)
    );
    assert!(
        s.iter()
            .filter(|x| x.at != hit)
            .any(|x| x.verdict == "pass"),
        "no scenario after the backend thawed passed:\n{}",
        table(&s)
    );
}

#[test]
fn a_killed_watch_process_is_started_again_and_the_next_scenario_passes() {
    let (code, s, hit, out) = disturbed_run("t-fault-watch", |pid, _| {
        let watch = simulator_pid(pid, "watch").expect("the watch simulator runs");
        signal(watch, Signal::SIGKILL);
    });
    assert_hit_inconclusive_then_recovered(&s, &hit, "restart");
    assert_eq!(code, 2);
    // The restart is on record.
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("results.json")).unwrap())
            .unwrap();
    let transitions = r.to_string();
    assert!(
        transitions.contains("the watch simulator had died: started again"),
        "the restart is not in the run's transitions"
    );
}

#[test]
fn sigterm_mid_scenario_ends_the_run_with_complete_evidence() {
    let (code, s, hit, out) = disturbed_run("t-fault-term", |pid, _| {
        signal(pid as i32, Signal::SIGTERM);
    });
    assert_eq!(code, 2, "an interrupted run is inconclusive");
    let first = verdict_of(&s, &hit);
    assert_eq!(first.verdict, "inconclusive", "{}", table(&s));
    assert!(
        s.iter()
            .filter(|x| x.at != hit)
            .all(|x| x.verdict == "not-run"),
        "{}",
        table(&s)
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("results.json")).unwrap())
            .unwrap();
    assert_eq!(r["interrupted"], true);
}

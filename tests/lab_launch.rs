//! Starting and stopping a lab, with stand-in simulators written as shell scripts:
//! the rig must treat any program that honours `docs/virtual-hardware.md` §1 the same.

use redrig::clock::Clock;
use redrig::error::RigError;
use redrig::lab::{labs_root, Lab, LabSpec};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// Marker files are written under a temporary name and renamed, so that the test
// never reads a half-written one.

/// A watch stand-in: records its arguments and pid, starts a background helper in
/// its process group, creates its "wires" and publishes them, then sleeps.
const GOOD_WATCH: &str = r#"
marker="$1"; shift
echo "$@" > "$marker/watch.args.tmp"; mv "$marker/watch.args.tmp" "$marker/watch.args"
while [ $# -gt 0 ]; do case "$1" in --state-dir) D="$2"; shift 2;; *) shift;; esac; done
echo "stand-in watch up" >&2
sleep 1000 &
echo $! > "$marker/watch.helper.pid.tmp"; mv "$marker/watch.helper.pid.tmp" "$marker/watch.helper.pid"
echo $$ > "$marker/watch.pid.tmp"; mv "$marker/watch.pid.tmp" "$marker/watch.pid"
: > "$D/console"; : > "$D/gnss"; : > "$D/modem"; : > "$D/gpio.sock"; : > "$D/debug.sock"; mkdir "$D/drive"
printf '{"kind":"watch","version":1,"console":"%s/console","gnss":"%s/gnss","modem":"%s/modem","gpio":"%s/gpio.sock","flash_drive":"%s/drive","debug":"debug.sock"}' \
  "$D" "$D" "$D" "$D" "$D" > "$D/wires.json.tmp"
mv "$D/wires.json.tmp" "$D/wires.json"
exec sleep 1000
"#;

const GOOD_CLOUD: &str = r#"
marker="$1"; shift
while [ $# -gt 0 ]; do case "$1" in --state-dir) D="$2"; shift 2;; *) shift;; esac; done
echo $$ > "$marker/cloud.pid.tmp"; mv "$marker/cloud.pid.tmp" "$marker/cloud.pid"
printf '{"kind":"cloud","version":1,"device":"127.0.0.1:40123","api":"127.0.0.1:40124"}' > "$D/wires.json.tmp"
mv "$D/wires.json.tmp" "$D/wires.json"
exec sleep 1000
"#;

const DIES_EARLY: &str = r#"
marker="$1"; shift
while [ $# -gt 0 ]; do case "$1" in --state-dir) D="$2"; shift 2;; *) shift;; esac; done
echo "$D" > "$marker/watch.dir.tmp"; mv "$marker/watch.dir.tmp" "$marker/watch.dir"
echo "boom: the profile cannot be read" >&2
exit 3
"#;

const NEVER_READY: &str = r#"
marker="$1"; shift
while [ $# -gt 0 ]; do case "$1" in --state-dir) D="$2"; shift 2;; *) shift;; esac; done
echo "$D" > "$marker/watch.dir.tmp"; mv "$marker/watch.dir.tmp" "$marker/watch.dir"
echo $$ > "$marker/silent.pid.tmp"; mv "$marker/silent.pid.tmp" "$marker/silent.pid"
echo "starting, slowly" >&2
exec sleep 1000
"#;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("evidence")).unwrap();
        std::fs::write(dir.path().join("profile.yaml"), "device: {}\n").unwrap();
        Fixture { dir }
    }

    fn script(&self, name: &str, body: &str) -> Vec<String> {
        let p = self.dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        vec![
            "/bin/sh".into(),
            p.to_string_lossy().into_owned(),
            self.dir.path().to_string_lossy().into_owned(),
        ]
    }

    fn spec(&self, watch: &str, cloud: &str) -> LabSpec {
        LabSpec {
            watch_cmd: self.script("watch.sh", watch),
            cloud_cmd: self.script("cloud.sh", cloud),
            profile: self.dir.path().join("profile.yaml"),
            clock: Clock::start(20.0),
            evidence_dir: self.evidence(),
            start_timeout: Duration::from_secs(20),
            netns: None,
        }
    }

    fn evidence(&self) -> PathBuf {
        self.dir.path().join("evidence")
    }

    /// The runtime dir of the lab, from the state dir the watch stand-in recorded.
    fn runtime_dir(&self) -> PathBuf {
        let d = std::fs::read_to_string(self.dir.path().join("watch.dir")).unwrap();
        Path::new(d.trim()).parent().unwrap().to_path_buf()
    }

    /// The pid a stand-in recorded, if it got that far before it was stopped.
    fn pid_if_written(&self, name: &str) -> Option<u32> {
        std::fs::read_to_string(self.dir.path().join(name))
            .ok()
            .map(|s| s.trim().parse().unwrap())
    }

    fn pid(&self, name: &str) -> u32 {
        std::fs::read_to_string(self.dir.path().join(name))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

fn alive(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie would still have one, so check
    // its state too.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s[s.rfind(')').unwrap() + 1..].trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

#[test]
fn starts_resolves_wires_and_stops_without_leftovers() {
    let fx = Fixture::new();
    let spec = fx.spec(GOOD_WATCH, GOOD_CLOUD);
    let clock_arg = spec.clock.to_arg();
    let mut lab = Lab::start(spec).unwrap();
    let run_dir = lab.runtime_dir().to_path_buf();
    assert!(run_dir.starts_with(labs_root()));
    let state = run_dir.join("watch");

    let w = lab.wires();
    assert_eq!(w.console, state.join("console"));
    assert_eq!(w.flash_drive, state.join("drive"));
    // A relative path in the manifest is relative to the state dir.
    assert_eq!(w.debug, state.join("debug.sock"));
    assert_eq!(w.cloud_device, "127.0.0.1:40123".parse().unwrap());
    assert_eq!(
        lab.resolve("lab:console").as_deref(),
        Some(state.join("console").to_str().unwrap())
    );
    assert_eq!(
        lab.resolve("lab:cloud.api").as_deref(),
        Some("127.0.0.1:40124")
    );
    assert_eq!(lab.resolve("lab:nope"), None);
    assert_eq!(lab.resolve("/dev/ttyUSB0"), None);

    // The contract's arguments were appended.
    let args = std::fs::read_to_string(fx.dir.path().join("watch.args")).unwrap();
    let profile = fx.dir.path().join("profile.yaml");
    assert_eq!(
        args.trim(),
        format!(
            "--profile {} --state-dir {} --clock {clock_arg}",
            profile.display(),
            state.display()
        )
    );

    let watch = fx.pid("watch.pid");
    let helper = fx.pid("watch.helper.pid");
    let cloud = fx.pid("cloud.pid");
    assert_eq!(lab.pids(), vec![watch, cloud]);
    assert!(alive(watch) && alive(helper) && alive(cloud));
    assert!(lab.is_alive());
    lab.check().unwrap();

    lab.stop().unwrap();
    assert!(!alive(watch), "watch still running");
    assert!(!alive(helper), "a process of the watch's group survived");
    assert!(!alive(cloud), "cloud still running");
    assert!(!run_dir.exists(), "runtime dir left behind");
    // Idempotent.
    lab.stop().unwrap();
    assert!(
        std::fs::read_to_string(fx.evidence().join("lab-watch.stderr"))
            .unwrap()
            .contains("stand-in watch up")
    );
}

#[test]
fn dropping_a_lab_stops_it_too() {
    let fx = Fixture::new();
    let lab = Lab::start(fx.spec(GOOD_WATCH, GOOD_CLOUD)).unwrap();
    let run_dir = lab.runtime_dir().to_path_buf();
    let pids = lab.pids();
    drop(lab);
    assert!(pids.iter().all(|&p| !alive(p)));
    assert!(!alive(fx.pid("watch.helper.pid")));
    assert!(!run_dir.exists());
}

#[test]
fn a_simulator_that_exits_early_is_a_lab_error_with_its_stderr() {
    let fx = Fixture::new();
    let err = Lab::start(fx.spec(DIES_EARLY, GOOD_CLOUD)).unwrap_err();
    let RigError::Lab(msg) = err else {
        panic!("expected RigError::Lab, got {err:?}")
    };
    assert!(
        msg.contains("watch simulator exited (exit status 3)"),
        "{msg}"
    );
    assert!(msg.contains("boom: the profile cannot be read"), "{msg}");
    // Nothing was left behind: the other simulator (if it got as far as running)
    // and the runtime directory are gone.
    if let Some(cloud) = fx.pid_if_written("cloud.pid") {
        assert!(!alive(cloud));
    }
    assert!(!fx.runtime_dir().exists());
    assert!(fx.runtime_dir().starts_with(labs_root()));
    let evidence = std::fs::read_to_string(fx.evidence().join("lab-watch.stderr")).unwrap();
    assert!(evidence.contains("boom"));
}

#[test]
fn a_simulator_that_never_publishes_its_wires_times_out() {
    let fx = Fixture::new();
    let mut spec = fx.spec(NEVER_READY, GOOD_CLOUD);
    spec.start_timeout = Duration::from_secs(2);
    let began = Instant::now();
    let err = Lab::start(spec).unwrap_err();
    // Generous bound: the point is that start gives up by itself.
    assert!(began.elapsed() < Duration::from_secs(30));
    let RigError::Lab(msg) = err else {
        panic!("expected RigError::Lab, got {err:?}")
    };
    assert!(msg.contains("the watch simulator did not write"), "{msg}");
    assert!(msg.contains("starting, slowly"), "{msg}");
    assert!(!msg.contains("cloud simulator did not"), "{msg}");
    assert!(!alive(fx.pid("silent.pid")));
    if let Some(cloud) = fx.pid_if_written("cloud.pid") {
        assert!(!alive(cloud));
    }
    assert!(!fx.runtime_dir().exists());
}

#[test]
fn two_labs_at_once_do_not_collide() {
    let fx1 = Fixture::new();
    let fx2 = Fixture::new();
    let mut a = Lab::start(fx1.spec(GOOD_WATCH, GOOD_CLOUD)).unwrap();
    let mut b = Lab::start(fx2.spec(GOOD_WATCH, GOOD_CLOUD)).unwrap();
    assert_ne!(a.runtime_dir(), b.runtime_dir());
    assert_ne!(a.wires().console, b.wires().console);
    assert!(a.is_alive() && b.is_alive());
    a.stop().unwrap();
    // Stopping one leaves the other running.
    assert!(b.is_alive());
    assert!(b.runtime_dir().exists());
    b.stop().unwrap();
}

#[test]
fn a_dead_simulator_is_noticed() {
    let fx = Fixture::new();
    let mut lab = Lab::start(fx.spec(GOOD_WATCH, GOOD_CLOUD)).unwrap();
    let watch = fx.pid("watch.pid");
    // SAFETY: signalling a process this test started.
    unsafe { libc::kill(watch as i32, libc::SIGKILL) };
    // Wait (bounded by the test harness) for the kernel to deliver it.
    while lab.is_alive() {
        std::thread::yield_now();
    }
    let exit = lab.exited().unwrap();
    assert_eq!(exit.process, redrig::lab::LabProcessKind::Watch);
    assert_eq!(exit.status, "killed by signal 9");
    assert!(matches!(lab.check(), Err(RigError::Lab(_))));
    lab.stop().unwrap();
}

#[test]
fn stale_lab_dirs_of_dead_rigs_are_swept() {
    let root = labs_root();
    std::fs::create_dir_all(&root).unwrap();
    // pid 4194304 is above the kernel's pid limit: never alive.
    let stale = root.join("4194304-12345-0");
    std::fs::create_dir_all(stale.join("watch")).unwrap();
    std::fs::write(stale.join("watch/gpio.sock"), b"").unwrap();
    let fx = Fixture::new();
    let mut lab = Lab::start(fx.spec(GOOD_WATCH, GOOD_CLOUD)).unwrap();
    assert!(!stale.exists());
    lab.stop().unwrap();
}

#[test]
fn a_lab_outlives_the_thread_that_started_it() {
    // The death signal follows the thread that forked; the lab must not die when a
    // short-lived thread (like a `spawn_blocking` worker) that started it ends.
    let fx = Fixture::new();
    let spec = fx.spec(GOOD_WATCH, GOOD_CLOUD);
    let mut lab = std::thread::spawn(move || Lab::start(spec).unwrap())
        .join()
        .unwrap();
    let watch = fx.pid("watch.pid");
    // A death signal wrongly tied to that thread is sent as it exits, possibly just
    // after join returns: give it a moment to land before looking.
    for _ in 0..1000 {
        std::thread::yield_now();
    }
    assert!(alive(watch));
    assert!(lab.is_alive());
    lab.stop().unwrap();
    assert!(!alive(watch));
}

//! Starting and stopping the virtual lab (`docs/virtual-hardware.md` §1).
//!
//! A lab is two simulator processes, the **watch** and the **cloud**, each started as
//! `CMD… --profile FILE --state-dir DIR --clock CLOCK` with its own empty state
//! directory. The rig only learns their wires from the `wires.json` each one writes;
//! anything that honours the contract (the built-in `redrig lab-process watch|cloud`,
//! or another simulator named in the rig file) is started and watched the same way.
//!
//! Where things live:
//!
//! - runtime directory `$XDG_RUNTIME_DIR/redrig/labs/<pid>-<starttime>-<n>/` (else
//!   `/tmp/redrig-<uid>/labs/…`), mode 0700, with `watch/` and `cloud/` state dirs;
//!   the rig's pid and process start time in the name make several labs of one rig
//!   and labs of several rigs on one machine distinct, and let a later rig recognise
//!   the leftovers of a crashed one (swept on start);
//! - each simulator's stderr (and stdout, which it must not use) is appended to the
//!   evidence files `lab-watch.stderr` / `lab-cloud.stderr`.
//!
//! Process hygiene: every simulator runs in its own process group and gets
//! `PR_SET_PDEATHSIG(SIGKILL)`. The death signal follows the *thread* that forked, so
//! the processes are spawned from a keeper thread that lives exactly as long as the
//! [`Lab`] (spawning from a short-lived `spawn_blocking` thread would kill the lab
//! when that thread retires). [`Lab::stop`] sends SIGTERM to each group, waits
//! (bounded), sends SIGKILL, kills what is left of the group while the leader is
//! still unreaped (so its group id cannot have been reused), reaps, and removes the
//! runtime directory. `Drop` does the same, best effort.
//!
//! Everything here blocks (process waits, file polling): call it from a blocking
//! context (`tokio::task::spawn_blocking`) when on an async runtime.

use crate::clock::Clock;
use crate::config::LabWire;
use crate::error::{RigError, RigResult};
use serde::Serialize;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a simulator may take to write its `wires.json` by default (wall time).
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a simulator has to exit after SIGTERM before SIGKILL (the contract asks
/// for one second).
const TERM_GRACE: Duration = Duration::from_secs(2);
/// How long to wait for a SIGKILLed process to go.
const KILL_GRACE: Duration = Duration::from_secs(3);
/// Polling period for manifests and exits.
const POLL: Duration = Duration::from_millis(10);
/// Bytes of a simulator's stderr quoted in errors.
const STDERR_TAIL: u64 = 2048;
/// Largest `wires.json` read.
const MAX_MANIFEST: u64 = 64 * 1024;

/// What to start.
#[derive(Debug, Clone)]
pub struct LabSpec {
    /// argv of the watch simulator (the contract's arguments are appended).
    pub watch_cmd: Vec<String>,
    /// argv of the cloud simulator.
    pub cloud_cmd: Vec<String>,
    /// The device profile handed to both (`--profile`).
    pub profile: PathBuf,
    /// The shared device clock (`--clock`).
    pub clock: Clock,
    /// Where `lab-watch.stderr` and `lab-cloud.stderr` go.
    pub evidence_dir: PathBuf,
    /// How long each simulator may take to write `wires.json` (wall time).
    pub start_timeout: Duration,
    /// Start the watch simulator inside this network namespace (the cloud stays in
    /// the rig's).
    pub netns: Option<std::sync::Arc<crate::netns::NetNs>>,
}

impl LabSpec {
    /// The built-in simulators: `[exe, "lab-process", "watch"|"cloud"]`. `exe` is
    /// the redrig binary (in integration tests `env!("CARGO_BIN_EXE_redrig")`, since
    /// `current_exe()` is the test binary there).
    pub fn builtin(exe: &Path, profile: &Path, clock: Clock, evidence_dir: &Path) -> LabSpec {
        let cmd = |kind: &str| {
            vec![
                exe.to_string_lossy().into_owned(),
                "lab-process".into(),
                kind.into(),
            ]
        };
        LabSpec {
            watch_cmd: cmd("watch"),
            cloud_cmd: cmd("cloud"),
            profile: profile.to_path_buf(),
            clock,
            evidence_dir: evidence_dir.to_path_buf(),
            start_timeout: DEFAULT_START_TIMEOUT,
            netns: None,
        }
    }
}

/// The lab's wires, from the two manifests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Wires {
    pub console: PathBuf,
    pub gnss: PathBuf,
    pub modem: PathBuf,
    pub gpio: PathBuf,
    pub flash_drive: PathBuf,
    pub debug: PathBuf,
    pub cloud_device: SocketAddr,
    pub cloud_api: SocketAddr,
}

impl Wires {
    /// The path or `HOST:PORT` of a wire.
    pub fn get(&self, wire: LabWire) -> String {
        let p = |p: &PathBuf| p.to_string_lossy().into_owned();
        match wire {
            LabWire::Console => p(&self.console),
            LabWire::Gnss => p(&self.gnss),
            LabWire::Modem => p(&self.modem),
            LabWire::Gpio => p(&self.gpio),
            LabWire::FlashDrive => p(&self.flash_drive),
            LabWire::Debug => p(&self.debug),
            LabWire::CloudDevice => self.cloud_device.to_string(),
            LabWire::CloudApi => self.cloud_api.to_string(),
        }
    }
}

/// Which simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LabProcessKind {
    Watch,
    Cloud,
}

impl LabProcessKind {
    pub fn name(self) -> &'static str {
        match self {
            LabProcessKind::Watch => "watch",
            LabProcessKind::Cloud => "cloud",
        }
    }
}

/// A simulator that is gone, with what it said last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabExit {
    pub process: LabProcessKind,
    /// `exit status 3`, `killed by signal 9`.
    pub status: String,
    pub stderr_tail: String,
}

struct Proc {
    kind: LabProcessKind,
    child: Child,
    state_dir: PathBuf,
    stderr_path: PathBuf,
    reaped: bool,
    /// The command and the contract's arguments, to start it again.
    argv: Vec<String>,
    extra: Vec<String>,
}

/// A simulator for the keeper thread to start, and where to send the child.
struct SpawnJob {
    kind: LabProcessKind,
    argv: Vec<String>,
    extra: Vec<String>,
    stderr: PathBuf,
    reply: mpsc::Sender<std::io::Result<Child>>,
}

/// A running virtual lab. Stop it with [`Lab::stop`] (dropping it also stops it).
pub struct Lab {
    dir: PathBuf,
    wires: Wires,
    procs: std::sync::Mutex<Vec<Proc>>,
    /// Simulators are spawned by the keeper thread (whose life the death signal of
    /// the simulators is tied to); dropping this sender ends it.
    spawner: std::sync::Mutex<Option<mpsc::Sender<SpawnJob>>>,
    keeper: Option<std::thread::JoinHandle<()>>,
    /// Watch simulators started again after they died ([`Lab::restart_watch_begin`]).
    restarts: AtomicU64,
    /// The watch's pid and state directory, for the watchdog.
    watched: std::sync::Arc<std::sync::Mutex<Option<(u32, PathBuf)>>>,
    /// Removes a dead watch's serial-line links at once (see [`watchdog`]).
    watchdog: Option<(
        std::sync::Arc<std::sync::atomic::AtomicBool>,
        std::thread::JoinHandle<()>,
    )>,
    stopped: bool,
}

/// While the lab runs: as soon as the watch simulator is seen dead (every 100 ms),
/// remove the serial-line links (`*.tty`) in its state directory. A dead watch's
/// `/dev/pts/N` numbers are free for any other process to get; the rig's lines try
/// to open their paths again every 200 ms, and must not reach someone else's
/// terminal through a link left behind.
fn watchdog(
    watched: std::sync::Arc<std::sync::Mutex<Option<(u32, PathBuf)>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        let w = watched.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some((pid, dir)) = w else {
            continue;
        };
        if exit_status_nowait(pid).is_none() {
            continue;
        }
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let is_link = e.file_type().map(|t| t.is_symlink()).unwrap_or(false);
            if is_link && e.path().extension().is_some_and(|x| x == "tty") {
                let _ = std::fs::remove_file(e.path());
            }
        }
        // Once per death: the next restart names the new watch.
        let mut slot = watched.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().map(|(p, _)| *p) == Some(pid) {
            *slot = None;
        }
    }
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("dir", &self.dir)
            .field("wires", &self.wires)
            .finish_non_exhaustive()
    }
}

static LAB_SEQ: AtomicU64 = AtomicU64::new(0);

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// `$XDG_RUNTIME_DIR/redrig/labs`, else `/tmp/redrig-<uid>/labs`.
pub fn labs_root() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("redrig").join("labs"),
        _ => PathBuf::from(format!("/tmp/redrig-{}", euid())).join("labs"),
    }
}

/// Start time of a process in clock ticks since boot (`/proc/PID/stat` field 22),
/// or `None` if there is no such process.
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: fields after it
    // start after the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts with field 3 (state); field 22 is the 20th of these.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Create `dir` (and missing parents) with mode 0700, and check that the directory
/// is ours and not a symlink (it may be under world-writable `/tmp`).
fn private_dir(dir: &Path) -> RigResult<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| RigError::Lab(format!("cannot create {}: {e}", dir.display())))?;
    let md = std::fs::symlink_metadata(dir)
        .map_err(|e| RigError::Lab(format!("{}: {e}", dir.display())))?;
    if !md.is_dir() || md.uid() != euid() || md.mode() & 0o077 != 0 {
        return Err(RigError::Lab(format!(
            "{} is not a private directory of this user (owner uid {}, mode {:o}): remove it or set XDG_RUNTIME_DIR",
            dir.display(),
            md.uid(),
            md.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Remove lab directories whose owning rig process is gone (a crashed rig's
/// leftovers: its simulators died with it through the death signal).
fn sweep_stale(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let mut parts = name.splitn(3, '-');
        let (Some(pid), Some(start), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
            continue;
        };
        if process_start_time(pid) == Some(start) {
            continue; // the owner is alive (possibly this process)
        }
        // Only directories; a concurrent sweeper may have removed it already.
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn read_tail(path: &Path) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(STDERR_TAIL)));
    let mut buf = Vec::new();
    let _ = f.take(STDERR_TAIL).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).trim().to_string()
}

/// Whether a process has exited, without reaping it (so its pid, which is also its
/// process group id, stays reserved).
fn exit_status_nowait(pid: u32) -> Option<String> {
    // SAFETY: waitid only writes into the zeroed siginfo we own.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        if r != 0 {
            // ECHILD: already reaped (or not ours): gone.
            return Some("gone".into());
        }
        if info.si_pid() == 0 {
            return None;
        }
        let status = info.si_status();
        Some(match info.si_code {
            libc::CLD_EXITED => format!("exit status {status}"),
            _ => format!("killed by signal {status}"),
        })
    }
}

fn signal_group(pgid: u32, sig: libc::c_int) {
    // SAFETY: kill has no memory effects; a negative pid addresses the group.
    unsafe {
        libc::kill(-(pgid as libc::pid_t), sig);
    }
}

fn wait_exit(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if exit_status_nowait(pid).is_some() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

fn spawn_one(
    kind: LabProcessKind,
    argv: &[String],
    extra: &[String],
    stderr: &Path,
    netns: Option<&crate::netns::NetNs>,
) -> std::io::Result<Child> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(stderr)?;
    let out2 = out.try_clone()?;
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(out2)
        .stderr(out);
    cmd.process_group(0);
    if let Some(ns) = netns {
        ns.enter_on_spawn(&mut cmd);
    }
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (prctl, getppid; setns in the namespace
    // hook registered above) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // The rig died between fork and prctl: do not outlive it.
            if libc::getppid() != parent {
                return Err(std::io::Error::other(
                    "rig exited while starting the simulator",
                ));
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("{} simulator `{}`: {e}", kind.name(), argv[0]),
        )
    })
}

fn parse_path(v: &serde_json::Value, key: &str, state_dir: &Path) -> Result<PathBuf, String> {
    let s = v
        .get(key)
        .and_then(|x| x.as_str())
        .ok_or_else(|| format!("`{key}` missing or not a string"))?;
    if s.is_empty() {
        return Err(format!("`{key}` is empty"));
    }
    let p = PathBuf::from(s);
    Ok(if p.is_relative() {
        state_dir.join(p)
    } else {
        p
    })
}

fn parse_addr(v: &serde_json::Value, key: &str) -> Result<SocketAddr, String> {
    let s = v
        .get(key)
        .and_then(|x| x.as_str())
        .ok_or_else(|| format!("`{key}` missing or not a string"))?;
    s.parse()
        .map_err(|e| format!("`{key}` = `{s}` is not IP:PORT: {e}"))
}

fn check_header(v: &serde_json::Value, kind: LabProcessKind) -> Result<(), String> {
    let k = v.get("kind").and_then(|x| x.as_str());
    if k != Some(kind.name()) {
        return Err(format!("`kind` is {k:?}, expected \"{}\"", kind.name()));
    }
    let ver = v.get("version").and_then(|x| x.as_u64());
    if ver != Some(1) {
        return Err(format!("`version` is {ver:?}, expected 1"));
    }
    Ok(())
}

/// Read a manifest if it is there. `Ok(None)`: not written yet.
fn read_manifest(state_dir: &Path) -> Result<Option<serde_json::Value>, String> {
    let path = state_dir.join("wires.json");
    let f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut buf = Vec::new();
    f.take(MAX_MANIFEST + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if buf.len() as u64 > MAX_MANIFEST {
        return Err(format!(
            "{} is larger than {MAX_MANIFEST} bytes",
            path.display()
        ));
    }
    serde_json::from_slice(&buf)
        .map(Some)
        .map_err(|e| format!("{}: not JSON: {e}", path.display()))
}

impl Lab {
    /// Start both simulators and wait (bounded, wall time) for their wires.
    pub fn start(spec: LabSpec) -> RigResult<Lab> {
        for (what, argv) in [("watch", &spec.watch_cmd), ("cloud", &spec.cloud_cmd)] {
            if argv.is_empty() || argv[0].is_empty() {
                return Err(RigError::Config(format!(
                    "the {what} simulator command is empty"
                )));
            }
        }
        std::fs::create_dir_all(&spec.evidence_dir).map_err(|e| {
            RigError::Lab(format!(
                "evidence directory {}: {e}",
                spec.evidence_dir.display()
            ))
        })?;
        let profile = std::path::absolute(&spec.profile)
            .map_err(|e| RigError::Lab(format!("profile {}: {e}", spec.profile.display())))?;

        let root = labs_root();
        private_dir(&root)?;
        sweep_stale(&root);
        let me = std::process::id();
        let start = process_start_time(me).unwrap_or(0);
        let dir = loop {
            let n = LAB_SEQ.fetch_add(1, Ordering::Relaxed);
            let d = root.join(format!("{me}-{start}-{n}"));
            match std::fs::DirBuilder::new().mode(0o700).create(&d) {
                Ok(()) => break d,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(RigError::Lab(format!("cannot create {}: {e}", d.display()))),
            }
        };

        let mut lab = Lab {
            dir: dir.clone(),
            wires: Wires {
                console: PathBuf::new(),
                gnss: PathBuf::new(),
                modem: PathBuf::new(),
                gpio: PathBuf::new(),
                flash_drive: PathBuf::new(),
                debug: PathBuf::new(),
                cloud_device: SocketAddr::from(([0, 0, 0, 0], 0)),
                cloud_api: SocketAddr::from(([0, 0, 0, 0], 0)),
            },
            procs: std::sync::Mutex::new(Vec::new()),
            spawner: std::sync::Mutex::new(None),
            keeper: None,
            restarts: AtomicU64::new(0),
            watched: std::sync::Arc::new(std::sync::Mutex::new(None)),
            watchdog: None,
            stopped: false,
        };
        // From here on, an error return drops `lab`, which stops what was started
        // and removes the directory.
        let mut jobs = Vec::new();
        for (kind, argv) in [
            (LabProcessKind::Watch, &spec.watch_cmd),
            (LabProcessKind::Cloud, &spec.cloud_cmd),
        ] {
            let state_dir = dir.join(kind.name());
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&state_dir)
                .map_err(|e| {
                    RigError::Lab(format!("cannot create {}: {e}", state_dir.display()))
                })?;
            let extra = vec![
                "--profile".to_string(),
                profile.to_string_lossy().into_owned(),
                "--state-dir".to_string(),
                state_dir.to_string_lossy().into_owned(),
                "--clock".to_string(),
                spec.clock.to_arg(),
            ];
            let stderr_path = spec
                .evidence_dir
                .join(format!("lab-{}.stderr", kind.name()));
            jobs.push((kind, argv.clone(), extra, state_dir, stderr_path));
        }

        let (job_tx, job_rx) = mpsc::channel::<SpawnJob>();
        let netns = spec.netns.clone();
        let keeper = std::thread::Builder::new()
            .name("redrig-lab-keeper".into())
            .spawn(move || {
                // Live as long as the lab: the simulators' death signal is tied to
                // this thread. It ends when the lab drops its sender.
                for job in job_rx {
                    let ns = match job.kind {
                        LabProcessKind::Watch => netns.as_deref(),
                        _ => None,
                    };
                    let r = spawn_one(job.kind, &job.argv, &job.extra, &job.stderr, ns);
                    let _ = job.reply.send(r);
                }
            })
            .map_err(|e| RigError::Lab(format!("cannot start the lab keeper thread: {e}")))?;
        lab.keeper = Some(keeper);
        *lab.spawner.get_mut().unwrap_or_else(|p| p.into_inner()) = Some(job_tx);
        for (kind, argv, extra, state_dir, stderr_path) in jobs {
            match lab.spawn(kind, &argv, &extra, &stderr_path) {
                Ok(child) => lab
                    .procs
                    .get_mut()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Proc {
                        kind,
                        child,
                        state_dir,
                        stderr_path,
                        reaped: false,
                        argv,
                        extra,
                    }),
                Err(e) => return Err(e),
            }
        }

        if let Some(w) = lab
            .procs
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|p| p.kind == LabProcessKind::Watch)
        {
            *lab.watched.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((w.child.id(), w.state_dir.clone()));
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (w2, s2) = (lab.watched.clone(), stop.clone());
        let dog = std::thread::Builder::new()
            .name("redrig-lab-watchdog".into())
            .spawn(move || watchdog(w2, s2))
            .map_err(|e| RigError::Lab(format!("cannot start the lab watchdog thread: {e}")))?;
        lab.watchdog = Some((stop, dog));

        // Wait for both manifests.
        let deadline = Instant::now() + spec.start_timeout;
        let mut manifests: [Option<serde_json::Value>; 2] = [None, None];
        let procs = lab.procs.get_mut().unwrap_or_else(|p| p.into_inner());
        loop {
            for (i, p) in procs.iter().enumerate() {
                if manifests[i].is_none() {
                    match read_manifest(&p.state_dir) {
                        Ok(m) => manifests[i] = m,
                        Err(e) => {
                            return Err(RigError::Lab(format!(
                                "the {} simulator wrote an unreadable manifest: {e}",
                                p.kind.name()
                            )))
                        }
                    }
                }
                if manifests[i].is_none() {
                    if let Some(status) = exit_status_nowait(p.child.id()) {
                        return Err(RigError::Lab(format!(
                            "the {} simulator exited ({status}) before its wires were ready; its stderr ends with:\n{}",
                            p.kind.name(),
                            read_tail(&p.stderr_path)
                        )));
                    }
                }
            }
            if manifests.iter().all(Option::is_some) {
                break;
            }
            if Instant::now() >= deadline {
                let late: Vec<&Proc> = procs
                    .iter()
                    .zip(&manifests)
                    .filter(|(_, m)| m.is_none())
                    .map(|(p, _)| p)
                    .collect();
                let detail = late
                    .iter()
                    .map(|p| {
                        format!(
                            "the {} simulator did not write {} within {:?}; its stderr ends with:\n{}",
                            p.kind.name(),
                            p.state_dir.join("wires.json").display(),
                            spec.start_timeout,
                            read_tail(&p.stderr_path)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                return Err(RigError::Lab(detail));
            }
            std::thread::sleep(POLL);
        }

        let watch = manifests[0].take().unwrap_or_default();
        let cloud = manifests[1].take().unwrap_or_default();
        let wdir = procs[0].state_dir.clone();
        let parsed = (|| -> Result<Wires, String> {
            check_header(&watch, LabProcessKind::Watch)
                .map_err(|e| format!("watch manifest: {e}"))?;
            check_header(&cloud, LabProcessKind::Cloud)
                .map_err(|e| format!("cloud manifest: {e}"))?;
            let wp =
                |k: &str| parse_path(&watch, k, &wdir).map_err(|e| format!("watch manifest: {e}"));
            Ok(Wires {
                console: wp("console")?,
                gnss: wp("gnss")?,
                modem: wp("modem")?,
                gpio: wp("gpio")?,
                flash_drive: wp("flash_drive")?,
                debug: wp("debug")?,
                cloud_device: parse_addr(&cloud, "device")
                    .map_err(|e| format!("cloud manifest: {e}"))?,
                cloud_api: parse_addr(&cloud, "api").map_err(|e| format!("cloud manifest: {e}"))?,
            })
        })();
        lab.wires = parsed.map_err(RigError::Lab)?;
        Ok(lab)
    }

    /// The wires.
    pub fn wires(&self) -> &Wires {
        &self.wires
    }

    /// Resolve a `lab:NAME` reference to its path or `HOST:PORT`.
    pub fn resolve(&self, reference: &str) -> Option<String> {
        let name = reference.strip_prefix("lab:")?;
        LabWire::from_name(name).map(|w| self.wires.get(w))
    }

    /// The lab's private runtime directory (removed on stop).
    pub fn runtime_dir(&self) -> &Path {
        &self.dir
    }

    /// Process ids of the simulators (each also its process group id).
    pub fn pids(&self) -> Vec<u32> {
        self.procs_now().iter().map(|p| p.child.id()).collect()
    }

    fn procs_now(&self) -> std::sync::MutexGuard<'_, Vec<Proc>> {
        self.procs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start a simulator on the keeper thread.
    fn spawn(
        &self,
        kind: LabProcessKind,
        argv: &[String],
        extra: &[String],
        stderr: &Path,
    ) -> RigResult<Child> {
        let (reply, answer) = mpsc::channel();
        let job = SpawnJob {
            kind,
            argv: argv.to_vec(),
            extra: extra.to_vec(),
            stderr: stderr.to_path_buf(),
            reply,
        };
        let sent = match &*self.spawner.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(tx) => tx.send(job).is_ok(),
            None => false,
        };
        if !sent {
            return Err(RigError::Lab("the lab keeper thread is not running".into()));
        }
        match answer.recv() {
            Ok(Ok(child)) => Ok(child),
            Ok(Err(e)) => Err(RigError::Lab(format!(
                "cannot start the {} simulator: {e}",
                kind.name()
            ))),
            Err(_) => Err(RigError::Lab(
                "the lab keeper thread ended unexpectedly".into(),
            )),
        }
    }

    /// How many times a dead watch simulator was started again.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::SeqCst)
    }

    /// Start the watch simulator again if it died (the bench's equivalent of
    /// re-seating a device that fell off the rig): reap it, empty its state
    /// directory and start the same command with the same arguments; then poll
    /// [`Lab::restart_watch_ready`]. The new watch must publish the same wires (the
    /// built-in one publishes links in its state directory, so it does); the
    /// instruments then open them again by themselves. Its flash is empty or
    /// factory-fresh: the strategy re-flashes. `Ok(false)` when the watch is running.
    /// A dead cloud is not restarted (its addresses are ephemeral and the gateway
    /// routes to them): that stays an error. Quick: it does not wait for the wires.
    pub fn restart_watch_begin(&self) -> RigResult<bool> {
        if self.stopped {
            return Err(RigError::Lab("the lab is stopped".into()));
        }
        let mut procs = self.procs_now();
        let Some(i) = procs.iter().position(|p| p.kind == LabProcessKind::Watch) else {
            return Ok(false);
        };
        if let Some(p) = procs.iter().find(|p| p.kind == LabProcessKind::Cloud) {
            if p.reaped || exit_status_nowait(p.child.id()).is_some() {
                return Err(RigError::Lab(
                    "the cloud simulator is gone and cannot be restarted within a run".into(),
                ));
            }
        }
        let p = &mut procs[i];
        if !p.reaped && exit_status_nowait(p.child.id()).is_none() {
            return Ok(false);
        }
        *self.watched.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if !p.reaped {
            // Clear out the rest of its group while the leader is unreaped, then reap.
            signal_group(p.child.id(), libc::SIGKILL);
            let _ = p.child.wait();
            p.reaped = true;
        }
        let _ = std::fs::remove_dir_all(&p.state_dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&p.state_dir)
            .map_err(|e| RigError::Lab(format!("cannot create {}: {e}", p.state_dir.display())))?;
        let (argv, extra, stderr) = (p.argv.clone(), p.extra.clone(), p.stderr_path.clone());
        let child = self.spawn(LabProcessKind::Watch, &argv, &extra, &stderr)?;
        let p = &mut procs[i];
        *self.watched.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((child.id(), p.state_dir.clone()));
        p.child = child;
        p.reaped = false;
        self.restarts.fetch_add(1, Ordering::SeqCst);
        Ok(true)
    }

    /// Whether a watch restarted by [`Lab::restart_watch_begin`] has published its
    /// wires: `Ok(true)` ready with the same wires as before, `Ok(false)` not yet,
    /// `Err` when it exited again, wrote an unreadable manifest or other wires.
    pub fn restart_watch_ready(&self) -> RigResult<bool> {
        let procs = self.procs_now();
        let Some(p) = procs.iter().find(|p| p.kind == LabProcessKind::Watch) else {
            return Ok(true);
        };
        let manifest = match read_manifest(&p.state_dir) {
            Ok(Some(m)) => m,
            Ok(None) => {
                if let Some(status) = exit_status_nowait(p.child.id()) {
                    return Err(RigError::Lab(format!(
                        "the restarted watch simulator exited ({status}) before its wires were ready; its stderr ends with:\n{}",
                        read_tail(&p.stderr_path)
                    )));
                }
                return Ok(false);
            }
            Err(e) => {
                return Err(RigError::Lab(format!(
                    "the restarted watch simulator wrote an unreadable manifest: {e}"
                )))
            }
        };
        let wdir = p.state_dir.clone();
        let same = check_header(&manifest, LabProcessKind::Watch).is_ok()
            && [
                ("console", &self.wires.console),
                ("gnss", &self.wires.gnss),
                ("modem", &self.wires.modem),
                ("gpio", &self.wires.gpio),
                ("flash_drive", &self.wires.flash_drive),
                ("debug", &self.wires.debug),
            ]
            .iter()
            .all(|(k, old)| parse_path(&manifest, k, &wdir).ok().as_ref() == Some(*old));
        if !same {
            return Err(RigError::Lab(
                "the restarted watch simulator publishes other wires than before; the rig's instruments cannot reach it"
                    .into(),
            ));
        }
        Ok(true)
    }

    /// Whether both simulators are still running.
    pub fn is_alive(&self) -> bool {
        !self.stopped && self.exited().is_none()
    }

    /// The first simulator found gone, if any, with the end of its stderr.
    pub fn exited(&self) -> Option<LabExit> {
        for p in self.procs_now().iter() {
            if p.reaped {
                return Some(LabExit {
                    process: p.kind,
                    status: "stopped".into(),
                    stderr_tail: String::new(),
                });
            }
            if let Some(status) = exit_status_nowait(p.child.id()) {
                return Some(LabExit {
                    process: p.kind,
                    status,
                    stderr_tail: read_tail(&p.stderr_path),
                });
            }
        }
        None
    }

    /// `Err(RigError::Lab)` if a simulator died (a rig failure: the verdict is
    /// inconclusive, not a device fault).
    pub fn check(&self) -> RigResult<()> {
        match self.exited() {
            None => Ok(()),
            Some(x) => Err(RigError::Lab(format!(
                "the {} simulator is gone ({}); its stderr ends with:\n{}",
                x.process.name(),
                x.status,
                x.stderr_tail
            ))),
        }
    }

    /// Stop both simulators (SIGTERM, bounded wait, SIGKILL), reap them and remove
    /// the runtime directory. Idempotent.
    pub fn stop(&mut self) -> RigResult<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let mut problems = Vec::new();
        let procs = self.procs.get_mut().unwrap_or_else(|p| p.into_inner());
        let live: Vec<u32> = procs
            .iter()
            .filter(|p| !p.reaped)
            .map(|p| p.child.id())
            .collect();
        for &pid in &live {
            signal_group(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + TERM_GRACE;
        for &pid in &live {
            let left = deadline.saturating_duration_since(Instant::now());
            if !wait_exit(pid, left) {
                signal_group(pid, libc::SIGKILL);
            }
        }
        for p in procs.iter_mut().filter(|p| !p.reaped) {
            let pid = p.child.id();
            if !wait_exit(pid, KILL_GRACE) {
                problems.push(format!(
                    "the {} simulator (pid {pid}) did not die after SIGKILL",
                    p.kind.name()
                ));
                continue;
            }
            // The leader is a zombie: its group id is still reserved; clear out
            // whatever else is in the group, then reap.
            signal_group(pid, libc::SIGKILL);
            if let Err(e) = p.child.wait() {
                problems.push(format!("reaping the {} simulator: {e}", p.kind.name()));
            }
            p.reaped = true;
        }
        if let Some((stop, dog)) = self.watchdog.take() {
            stop.store(true, Ordering::SeqCst);
            let _ = dog.join();
        }
        *self.spawner.get_mut().unwrap_or_else(|p| p.into_inner()) = None;
        if let Some(handle) = self.keeper.take() {
            let _ = handle.join();
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                problems.push(format!("removing {}: {e}", self.dir.display()));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(RigError::Lab(problems.join("; ")))
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_of_this_process_is_readable_and_stable() {
        let a = process_start_time(std::process::id()).unwrap();
        assert_eq!(process_start_time(std::process::id()), Some(a));
        assert_eq!(process_start_time(u32::MAX), None);
    }

    #[test]
    fn manifest_fields_are_checked() {
        let v: serde_json::Value =
            serde_json::json!({"kind":"cloud","version":1,"device":"127.0.0.1:1","api":"nope"});
        assert!(check_header(&v, LabProcessKind::Cloud).is_ok());
        assert!(check_header(&v, LabProcessKind::Watch).is_err());
        assert_eq!(
            parse_addr(&v, "device").unwrap(),
            "127.0.0.1:1".parse().unwrap()
        );
        assert!(parse_addr(&v, "api").is_err());
        let w = serde_json::json!({"console":"rel/pty"});
        assert_eq!(
            parse_path(&w, "console", Path::new("/s")).unwrap(),
            PathBuf::from("/s/rel/pty")
        );
        assert!(parse_path(&w, "gnss", Path::new("/s")).is_err());
    }

    #[test]
    fn sweep_removes_dirs_of_dead_owners_only() {
        let root = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let mine = root
            .path()
            .join(format!("{me}-{}-0", process_start_time(me).unwrap()));
        // A pid that is alive but with another start time is a reused pid: stale.
        let reused = root.path().join(format!("{me}-1-0"));
        let dead = root.path().join(format!("{}-5-1", u32::MAX - 1));
        let other = root.path().join("not-a-lab");
        for d in [&mine, &reused, &dead, &other] {
            std::fs::create_dir(d).unwrap();
        }
        sweep_stale(root.path());
        assert!(mine.exists());
        assert!(other.exists());
        assert!(!reused.exists());
        assert!(!dead.exists());
    }
}

//! Emission interval jitter of the simulated GNSS receiver at 10 Hz, side by side with
//! gpsd's `gpsfake` replaying the same sentences.
//!
//! **rig**: `SerialGnss` feeds a pseudo-terminal at 115200 baud, 10 Hz, `GP` talker, a
//! still position, on a device clock at scale 1 (device time = wall time). A reader
//! thread on the master side stamps (`CLOCK_MONOTONIC`, read when `read` returns) the
//! arrival of the first byte of every epoch: the `$` of its RMC line, the first
//! sentence of an epoch. With `pace_bytes` the driver writes the RMC line when its last
//! character would have left a UART, a fixed offset from the epoch (the RMC of a still
//! position has a constant length), so the intervals between RMC arrivals measure the
//! emission jitter. The reader keeps every byte it read.
//!
//! **gpsfake**: the bytes the rig emitted, cut into epochs at each RMC line, are
//! written to a `gpsfake` log with the header `# Delay-Cookie: @ 0.1` and `@` between
//! epochs. With that header gpsfake writes one epoch per `write` to its
//! pseudo-terminal and then sleeps 0.1 s (without it, gpsfake paces per sentence,
//! `-c` seconds each, so an epoch of 4 to 8 sentences would take 4 to 8 cycles). It
//! runs `gpsfake -1 -q -s 115200 -P PORT -m STAND_IN LOG`: `-m` names a program to run
//! the daemon under, and the stand-in is this executable, which does not start gpsd:
//! it answers gpsfake's control socket (`+/dev/pts/N` → `OK`), opens the
//! pseudo-terminal's slave and stamps the `$` of each RMC line as the rig's reader
//! does, writing the `CLOCK_MONOTONIC` nanoseconds to a file. So both columns are
//! stamped at the same point: the reader of a pseudo-terminal, as the watch reads its
//! GNSS line.
//!
//! **gpsfake + gpsd**: `gpsfake -1 -q -n -s 115200 -P PORT LOG` with the real gpsd; a
//! client connects to gpsd on loopback, sends `?WATCH={"enable":true,"nmea":true}` and
//! stamps the `$` of each `$GPRMC` line gpsd passes through. This is what a gpsd
//! client sees: gpsfake's pacing plus gpsd's reading, parsing and relaying over TCP.
//! The first epochs go by before the client is connected; the log holds
//! [`MARGIN`] more epochs than are measured for that.
//!
//! For each column: the deviation of each interval between RMC arrivals from the
//! nearest whole number of 100 ms periods (an epoch missing on the wire is counted
//! apart, not as jitter): median, p99, max of its absolute value, the mean signed
//! deviation, the drift over the run (last arrival − first − n × 100 ms) and the p99
//! of the deviation from the column's own mean interval (jitter without the steady
//! drift); the ratios of gpsfake's figures to the rig's. Target for the rig: p99 <
//! 2 ms, reported, not enforced.
//!
//! `GNSS_JITTER_EPOCHS` sets the number of intervals measured in each column (default
//! 600 = 60 s each). Arguments (`cargo bench` passes `--bench`) are ignored. Without
//! `gpsfake` or `gpsd` the gpsfake columns are printed as skipped, with the reason. The
//! figures are also written as JSON to `<target dir>/bench-gnss-jitter.json`.
//! gpsd's shared-memory segments (its export segment and the NTP ones) that did not
//! exist before the run are removed after it.

mod support;
use redrig::clock::Clock;
use redrig::drivers::gnss::{GnssOptions, SerialGnss};
use redrig::drivers::Gnss;
use redrig::gnss::scene::GnssChange;
use redrig::wire::nmea::Talker;
use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::{percentile, write_figures};

const RATE_HZ: u32 = 10;
const BAUD: u32 = 115_200;
const PERIOD_MS: f64 = 1000.0 / RATE_HZ as f64;
/// Epochs left out at the start (the position was just set; threads settling).
const WARM_UP: usize = 5;
/// Epochs captured beyond those measured, for the gpsd column's late start.
const MARGIN: usize = 50;
const TARGET_P99_MS: f64 = 2.0;
const RMC: &[u8] = b"$GPRMC";
/// The environment variable that turns this executable into gpsfake's stand-in
/// daemon; its value is the file the stamps go to.
const STAND_IN_ENV: &str = "REDRIG_BENCH_GPSFAKE_STAND_IN";
/// Wall seconds after which the stand-in exits whatever happens.
const STAND_IN_LIFE_ENV: &str = "REDRIG_BENCH_GPSFAKE_STAND_IN_SECS";
const INSTALL_HINT: &str = "Debian: apt-get install gpsd gpsd-clients";

/// `CLOCK_MONOTONIC` in nanoseconds (the clock `Instant` uses, shared by every process
/// on the machine).
fn mono_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|ts| ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64)
        .unwrap_or(0)
}

/// Read `src` until `want` RMC line starts have been seen (or the source ends or
/// fails), calling `on_rmc` with the `CLOCK_MONOTONIC` time at which the read that
/// brought each RMC's `$` returned, and `on_bytes` with everything read. Returns the
/// number of RMC lines seen.
fn read_rmc(
    src: &mut impl Read,
    want: usize,
    mut on_rmc: impl FnMut(u64),
    mut on_bytes: impl FnMut(&[u8]),
) -> usize {
    let mut seen = 0;
    let mut buf = [0u8; 4096];
    let mut at_line_start = true;
    // The start of the current line (up to 6 bytes) and when its first byte arrived.
    let mut head: Option<(u64, Vec<u8>)> = None;
    while seen < want {
        let n = match src.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let now = mono_ns();
        on_bytes(&buf[..n]);
        for &b in &buf[..n] {
            if at_line_start && b == b'$' {
                head = Some((now, Vec::with_capacity(RMC.len())));
            }
            at_line_start = b == b'\n';
            if let Some((t, h)) = &mut head {
                h.push(b);
                if h.len() == RMC.len() {
                    if h.as_slice() == RMC {
                        seen += 1;
                        on_rmc(*t);
                    }
                    head = None;
                }
            }
        }
    }
    seen
}

/// The epochs in `bytes`: each from the start of an RMC line to the next one (the
/// bytes before the first RMC and the last, maybe incomplete, epoch are left out).
fn split_epochs(bytes: &[u8]) -> Vec<&[u8]> {
    let starts: Vec<usize> = (0..bytes.len())
        .filter(|&i| bytes[i..].starts_with(RMC) && (i == 0 || bytes[i - 1] == b'\n'))
        .collect();
    starts.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
}

/// One column's figures, in milliseconds.
#[derive(Debug, Clone)]
struct Figures {
    intervals: usize,
    missing: u64,
    median: f64,
    p99: f64,
    max: f64,
    mean_signed: f64,
    drift: f64,
    p99_about_mean: f64,
}

/// Figures from arrival stamps (ns), the first [`WARM_UP`] left out.
fn figures(stamps_ns: &[u64]) -> Option<Figures> {
    let s: Vec<f64> = stamps_ns
        .iter()
        .skip(WARM_UP)
        .map(|&t| t as f64 / 1e6)
        .collect();
    if s.len() < 3 {
        return None;
    }
    // Deviation of each interval from the nearest whole number of periods.
    let mut missing = 0u64;
    let mut periods = 0u64;
    let mut signed = Vec::with_capacity(s.len() - 1);
    let mut per_period = Vec::with_capacity(s.len() - 1);
    for w in s.windows(2) {
        let ms = w[1] - w[0];
        let k = (ms / PERIOD_MS).round().max(1.0);
        missing += k as u64 - 1;
        periods += k as u64;
        signed.push(ms - k * PERIOD_MS);
        per_period.push(ms / k);
    }
    let mut abs: Vec<f64> = signed.iter().map(|d| d.abs()).collect();
    abs.sort_by(f64::total_cmp);
    let mean_interval = per_period.iter().sum::<f64>() / per_period.len() as f64;
    let mut about_mean: Vec<f64> = per_period
        .iter()
        .map(|d| (d - mean_interval).abs())
        .collect();
    about_mean.sort_by(f64::total_cmp);
    Some(Figures {
        intervals: signed.len(),
        missing,
        median: percentile(&abs, 50.0),
        p99: percentile(&abs, 99.0),
        max: abs[abs.len() - 1],
        mean_signed: signed.iter().sum::<f64>() / signed.len() as f64,
        drift: s[s.len() - 1] - s[0] - periods as f64 * PERIOD_MS,
        p99_about_mean: percentile(&about_mean, 99.0),
    })
}

/// The rig's column: stamps of the first `want` RMC lines, every byte read until
/// `keep` RMC lines have been seen, and the driver's skipped and stalled epochs.
fn rig_column(want: usize, keep: usize) -> (Vec<u64>, Vec<u8>, u64, u64) {
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let path = nix::unistd::ttyname(pty.slave.as_fd())
        .expect("ttyname")
        .to_string_lossy()
        .into_owned();
    let dir = tempfile::tempdir().expect("temporary evidence directory");
    let clock = Clock::start(1.0);
    let options = GnssOptions {
        rate_hz: RATE_HZ,
        talker: Talker::Gp,
        zda: true,
        baud: BAUD,
        pace_bytes: true,
        ..GnssOptions::default()
    };
    let gnss = SerialGnss::open(&path, BAUD, clock, options, dir.path()).expect("open GNSS");
    drop(pty.slave); // the driver holds the slave now
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(gnss.apply(GnssChange::Still {
        lat: 52.520008,
        lon: 13.404954,
        alt_m: 40.0,
    }))
    .expect("still position");

    let (tx, rx) = mpsc::channel();
    let master: OwnedFd = pty.master;
    std::thread::spawn(move || {
        let mut src = std::fs::File::from(master);
        let mut stamps = Vec::with_capacity(keep);
        let mut bytes = Vec::new();
        read_rmc(
            &mut src,
            keep,
            |t| stamps.push(t),
            |b| bytes.extend_from_slice(b),
        );
        let _ = tx.send((stamps, bytes));
    });
    let budget =
        Duration::from_secs_f64(keep as f64 * PERIOD_MS / 1000.0) + Duration::from_secs(30);
    let (mut stamps, bytes) = rx
        .recv_timeout(budget)
        .expect("the GNSS line went quiet: no RMC for too long");
    let skipped = gnss.skipped_epochs();
    let stalled = gnss.stalled_epochs();
    drop(gnss);
    assert!(
        stamps.len() >= want,
        "the line closed after {} of {want} RMC sentences",
        stamps.len()
    );
    stamps.truncate(want);
    (stamps, bytes, skipped, stalled)
}

/// Whether `prog` runs (`prog -V` exits 0).
fn runs(prog: &str) -> bool {
    Command::new(prog)
        .arg("-V")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Why the gpsfake columns cannot run, if they cannot.
fn gpsfake_missing() -> Option<String> {
    if !runs("gpsfake") {
        return Some(format!("gpsfake not installed ({INSTALL_HINT})"));
    }
    // gpsfake looks for gpsd on PATH and in /usr/sbin, and refuses to start without it.
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("gpsd").is_file()))
        .unwrap_or(false);
    if !on_path && !Path::new("/usr/sbin/gpsd").is_file() {
        return Some(format!("gpsd not installed ({INSTALL_HINT})"));
    }
    None
}

/// A gpsfake process group (gpsfake and the daemon or stand-in it started): killed
/// when dropped.
struct GpsFake {
    child: Child,
}

impl GpsFake {
    fn start(args: &[&str], tmp: &Path, env: &[(&str, String)]) -> Result<GpsFake, String> {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new("gpsfake");
        cmd.args(args)
            // gpsfake puts its control socket in $TMPDIR: inside the temporary directory.
            .env("TMPDIR", tmp)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(tmp.join("gpsfake.stderr"))
                    .map_or_else(|_| Stdio::null(), Stdio::from),
            )
            .process_group(0);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start gpsfake: {e}"))?;
        Ok(GpsFake { child })
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The end of gpsfake's standard error, to explain a failure.
    fn stderr_tail(tmp: &Path) -> String {
        let text = std::fs::read_to_string(tmp.join("gpsfake.stderr")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(3)..].join(" | ")
    }
}

impl Drop for GpsFake {
    fn drop(&mut self) {
        use nix::sys::signal::{killpg, Signal};
        let Ok(pid) = i32::try_from(self.child.id()) else {
            return;
        };
        let group = nix::unistd::Pid::from_raw(pid);
        // gpsfake stops its daemon on SIGTERM; anything left is killed.
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && self.alive() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Write the gpsfake log: one chunk per epoch, 0.1 s after each.
fn write_log(path: &Path, epochs: &[&[u8]]) -> Result<(), String> {
    if epochs.iter().any(|e| e.contains(&b'@')) {
        return Err("an epoch contains the log's delimiter `@`".into());
    }
    let mut text = b"# Delay-Cookie: @ 0.1\n".to_vec();
    text.extend_from_slice(&epochs.join(&b'@'));
    std::fs::write(path, text).map_err(|e| format!("cannot write the gpsfake log: {e}"))
}

/// gpsfake into the stand-in daemon: stamps at the reader of gpsfake's
/// pseudo-terminal.
fn gpsfake_pty_column(log: &Path, tmp: &Path, want: usize) -> Result<Vec<u64>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("this executable: {e}"))?;
    let exe = exe.to_string_lossy().into_owned();
    if exe.chars().any(char::is_whitespace) {
        // gpsfake splits the monitor command on white space.
        return Err(format!("the bench's path has white space in it: {exe}"));
    }
    let stamps = tmp.join("stand-in-stamps.txt");
    let budget =
        Duration::from_secs_f64(want as f64 * PERIOD_MS / 1000.0 * 1.5) + Duration::from_secs(30);
    let port = free_port()?.to_string();
    let log_s = log.to_string_lossy().into_owned();
    let speed = BAUD.to_string();
    let mut fake = GpsFake::start(
        &["-1", "-q", "-s", &speed, "-P", &port, "-m", &exe, &log_s],
        tmp,
        &[
            (STAND_IN_ENV, stamps.to_string_lossy().into_owned()),
            (STAND_IN_LIFE_ENV, budget.as_secs().to_string()),
        ],
    )?;
    let deadline = Instant::now() + budget;
    let read = |p: &Path| -> Vec<u64> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    loop {
        let got = read(&stamps);
        if got.len() >= want {
            drop(fake);
            return Ok(got[..want].to_vec());
        }
        if !fake.alive() || Instant::now() > deadline {
            drop(fake);
            let got = read(&stamps);
            return if got.len() > WARM_UP + 2 {
                Ok(got)
            } else {
                Err(format!(
                    "gpsfake delivered {} RMC sentences to the stand-in ({})",
                    got.len(),
                    GpsFake::stderr_tail(tmp)
                ))
            };
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// gpsd's shared-memory keys: its export segment (per port, as gpsfake sets
/// `GPSD_SHM_KEY`) and the NTP segments `NTP0`…`NTP7`.
fn gpsd_shm_keys(port: u16) -> Vec<i32> {
    let mut keys = vec![0x4770_0000 + i32::from(port)];
    keys.extend((0..8).map(|i| 0x4e54_5030 + i));
    keys
}

fn shm_exists(key: i32) -> bool {
    // SAFETY: shmget with size 0 and no IPC_CREAT only looks the key up.
    unsafe { libc::shmget(key, 0, 0) >= 0 }
}

/// Remove the segments among `keys` that exist now but did not before.
fn remove_new_shm(keys: &[i32], before: &[bool]) {
    for (&key, &existed) in keys.iter().zip(before) {
        if existed {
            continue;
        }
        // SAFETY: as above; IPC_RMID on an id just looked up, no buffer read.
        unsafe {
            let id = libc::shmget(key, 0, 0);
            if id >= 0 {
                libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
            }
        }
    }
}

/// gpsfake into the real gpsd: stamps at a gpsd client watching NMEA.
fn gpsfake_gpsd_column(log: &Path, tmp: &Path, want: usize) -> Result<Vec<u64>, String> {
    let port = free_port()?;
    let keys = gpsd_shm_keys(port);
    let before: Vec<bool> = keys.iter().map(|&k| shm_exists(k)).collect();
    let result = (|| {
        let log_s = log.to_string_lossy().into_owned();
        let speed = BAUD.to_string();
        let port_s = port.to_string();
        let mut fake = GpsFake::start(
            &["-1", "-q", "-n", "-s", &speed, "-P", &port_s, &log_s],
            tmp,
            &[],
        )?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut stream = loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                break s;
            }
            if !fake.alive() || Instant::now() > deadline {
                return Err(format!(
                    "gpsd did not listen on port {port} ({})",
                    GpsFake::stderr_tail(tmp)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = stream.set_nodelay(true);
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| format!("gpsd connection: {e}"))?;
        stream
            .write_all(b"?WATCH={\"enable\":true,\"nmea\":true}\n")
            .map_err(|e| format!("gpsd connection: {e}"))?;
        let mut stamps = Vec::with_capacity(want);
        read_rmc(&mut stream, want, |t| stamps.push(t), |_| {});
        drop(stream);
        drop(fake);
        if stamps.len() > WARM_UP + 2 {
            Ok(stamps)
        } else {
            Err(format!(
                "gpsd passed {} RMC sentences on ({})",
                stamps.len(),
                GpsFake::stderr_tail(tmp)
            ))
        }
    })();
    remove_new_shm(&keys, &before);
    result
}

/// gpsfake's stand-in daemon (this executable run by gpsfake's `-m`): answer the
/// control socket, read the pseudo-terminal gpsfake adds, write the time of each RMC
/// line's arrival (ns, `CLOCK_MONOTONIC`) to `stamps`, one a line.
fn stand_in(stamps: &str) -> i32 {
    use std::os::unix::net::UnixListener;
    let life = std::env::var(STAND_IN_LIFE_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600u64);
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(life));
        std::process::exit(0);
    });
    // gpsfake runs `STAND_IN /usr/sbin/gpsd -b -N -S PORT -F CONTROL_SOCKET …`.
    let args: Vec<String> = std::env::args().collect();
    let Some(control) = args.windows(2).find(|w| w[0] == "-F").map(|w| w[1].clone()) else {
        eprintln!("stand-in: no -F CONTROL_SOCKET among {args:?}");
        return 2;
    };
    let listener = match UnixListener::bind(&control) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("stand-in: {control}: {e}");
            return 2;
        }
    };
    let Ok((conn, _)) = listener.accept() else {
        return 2;
    };
    // One command: `+/dev/pts/N\r\n\0`.
    let mut cmd = Vec::new();
    let mut reader = std::io::BufReader::new(&conn);
    if reader.read_until(b'\n', &mut cmd).is_err() {
        return 2;
    }
    let cmd = String::from_utf8_lossy(&cmd);
    let Some(path) = cmd.trim().strip_prefix('+') else {
        eprintln!("stand-in: unexpected control command {cmd:?}");
        return 2;
    };
    let mut tty = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("stand-in: {path}: {e}");
            return 2;
        }
    };
    // Opened before gpsfake feeds anything: it waits for this answer.
    let _ = (&conn).write_all(b"OK\n");
    drop(reader);
    drop(conn);
    let Ok(mut out) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(stamps)
    else {
        return 2;
    };
    read_rmc(
        &mut tty,
        usize::MAX,
        |t| {
            let _ = out.write_all(format!("{t}\n").as_bytes());
        },
        |_| {},
    );
    0
}

fn main() {
    if let Ok(stamps) = std::env::var(STAND_IN_ENV) {
        std::process::exit(stand_in(&stamps));
    }
    let epochs: usize = match std::env::var("GNSS_JITTER_EPOCHS") {
        Ok(v) => v
            .trim()
            .parse()
            .ok()
            .filter(|&n| n >= 1)
            .unwrap_or_else(|| panic!("GNSS_JITTER_EPOCHS={v:?}: expected a count ≥ 1")),
        Err(_) => 600,
    };
    let want = WARM_UP + epochs + 1;
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());

    // 1. The rig, capturing what it emitted.
    let missing_tool = gpsfake_missing();
    let keep = if missing_tool.is_some() {
        want
    } else {
        want + MARGIN
    };
    let (rig_stamps, emitted, skipped, stalled) = rig_column(want, keep);
    let rig = figures(&rig_stamps).expect("enough rig intervals");

    // 2. gpsfake replaying the same epochs.
    let tmp = tempfile::tempdir().expect("temporary directory");
    let log: PathBuf = tmp.path().join("rig-epochs.log");
    let epoch_list = split_epochs(&emitted);
    let prepared = match missing_tool {
        Some(why) => Err(why),
        None => write_log(&log, &epoch_list).map(|()| epoch_list.len()),
    };
    let (pty_col, gpsd_col) = match &prepared {
        Ok(_) => (
            gpsfake_pty_column(&log, tmp.path(), want),
            gpsfake_gpsd_column(&log, tmp.path(), want),
        ),
        Err(why) => (Err(why.clone()), Err(why.clone())),
    };
    let fig_or = |r: &Result<Vec<u64>, String>| -> Result<Figures, String> {
        r.as_ref()
            .map_err(Clone::clone)
            .and_then(|s| figures(s).ok_or_else(|| "too few RMC sentences to measure".to_string()))
    };
    let pty_fig = fig_or(&pty_col);
    let gpsd_fig = fig_or(&gpsd_col);

    // 3. The table.
    let met = rig.p99 < TARGET_P99_MS;
    println!(
        "GNSS emission jitter: {RATE_HZ} Hz, {BAUD} baud, pseudo-terminal; load average (1 min) {load} at start"
    );
    if let Ok(n) = &prepared {
        println!("  gpsfake replays the rig's {n} captured epochs (one write per epoch, 0.1 s sleep after each)");
    }
    let cols: [(&str, Result<&Figures, &String>); 3] = [
        ("rig", Ok(&rig)),
        ("gpsfake", pty_fig.as_ref()),
        ("gpsfake+gpsd", gpsd_fig.as_ref()),
    ];
    let mut head = format!("  {:<32}", "");
    for (name, _) in &cols {
        head.push_str(&format!(" {name:>13}"));
    }
    println!("{head}");
    let row = |label: &str, f: &dyn Fn(&Figures) -> String| {
        let mut line = format!("  {label:<32}");
        for (_, c) in &cols {
            match c {
                Ok(fig) => line.push_str(&format!(" {:>13}", f(fig))),
                Err(_) => line.push_str(&format!(" {:>13}", "skipped")),
            }
        }
        println!("{line}");
    };
    row("intervals measured", &|f| f.intervals.to_string());
    row("epochs missing on the wire", &|f| f.missing.to_string());
    row("median |jitter| (ms)", &|f| format!("{:.3}", f.median));
    row("p99 |jitter| (ms)", &|f| format!("{:.3}", f.p99));
    row("max |jitter| (ms)", &|f| format!("{:.3}", f.max));
    row("mean signed deviation (ms)", &|f| {
        format!("{:.4}", f.mean_signed)
    });
    row("drift over the run (ms)", &|f| format!("{:.1}", f.drift));
    row("p99 |interval - mean| (ms)", &|f| {
        format!("{:.3}", f.p99_about_mean)
    });
    println!("  ratio to rig");
    row("  median |jitter|", &|f| {
        format!("{:.1}x", f.median / rig.median)
    });
    row("  p99 |jitter|", &|f| format!("{:.1}x", f.p99 / rig.p99));
    row("  max |jitter|", &|f| format!("{:.1}x", f.max / rig.max));
    println!("  rig: skipped epochs (driver) {skipped}, stalled epochs (driver) {stalled}");
    println!(
        "  rig target p99 < {TARGET_P99_MS} ms: {}",
        if met { "met" } else { "MISSED" }
    );
    for (name, c) in &cols {
        if let Err(why) = c {
            println!("  {name}: skipped — {why}");
        }
    }

    let fig_json = |f: &Figures| {
        serde_json::json!({
            "intervals": f.intervals,
            "missing_on_wire": f.missing,
            "median_abs_jitter_ms": f.median,
            "p99_abs_jitter_ms": f.p99,
            "max_abs_jitter_ms": f.max,
            "mean_signed_deviation_ms": f.mean_signed,
            "drift_ms": f.drift,
            "p99_abs_deviation_from_mean_interval_ms": f.p99_about_mean,
        })
    };
    let col_json = |c: &Result<Figures, String>, stamped: &str| match c {
        Ok(f) => {
            let mut v = fig_json(f);
            v["stamped"] = stamped.into();
            v["ratio_to_rig"] = serde_json::json!({
                "median": f.median / rig.median,
                "p99": f.p99 / rig.p99,
                "max": f.max / rig.max,
            });
            v
        }
        Err(why) => serde_json::json!({ "skipped": why }),
    };
    let mut rig_json = fig_json(&rig);
    rig_json["stamped"] = "reader of the rig's pseudo-terminal (master side)".into();
    rig_json["skipped_epochs"] = skipped.into();
    rig_json["stalled_epochs"] = stalled.into();
    let report = serde_json::json!({
        "rate_hz": RATE_HZ,
        "baud": BAUD,
        "clock_scale": 1.0,
        "load_1min_at_start": load,
        "warm_up_epochs": WARM_UP,
        "replayed_epochs": prepared.as_ref().ok(),
        "rig": rig_json,
        "gpsfake": col_json(&pty_fig, "reader of gpsfake's pseudo-terminal (slave side), a stand-in for gpsd"),
        "gpsfake_gpsd": col_json(&gpsd_fig, "gpsd client on loopback TCP, NMEA passed through by gpsd"),
        // Compatibility with the figures the rig-only bench wrote.
        "intervals": rig.intervals,
        "skipped_epochs": skipped,
        "stalled_epochs": stalled,
        "missing_on_wire": rig.missing,
        "median_abs_jitter_ms": rig.median,
        "p99_abs_jitter_ms": rig.p99,
        "max_abs_jitter_ms": rig.max,
        "mean_signed_deviation_ms": rig.mean_signed,
        "target_p99_ms": TARGET_P99_MS,
        "target_met": met,
    });
    write_figures("bench-gnss-jitter.json", &report);
    if let Err(e) = tmp.close() {
        eprintln!("cannot remove the temporary directory: {e}");
    }
}

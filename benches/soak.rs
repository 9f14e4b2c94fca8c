//! Memory of the rig over hours of device time: does it stay flat?
//!
//! The rig is assembled on the virtual lab as a run does it (`Rig::assemble` with
//! `fixtures/rigs/virtual.yaml` and the reference watch), on a device clock at a high
//! scale (`SOAK_SCALE`, default 100: six device hours in about four wall minutes; the
//! rig file's step and boot time limits are multiplied by `SOAK_SCALE` / the file's
//! scale (20), so that they allow as much wall time as at the file's own scale). The strategy brings the
//! watch to *connected*; then, for `SOAK_DEVICE_HOURS` (default 6) of device time,
//! the bench keeps every part of the rig busy as scenarios do:
//!
//! - GNSS: the routes of `fixtures/routes/` one after the other, round and round (the
//!   simulator feeds 1 Hz epochs; `gnss.nmea`, the fed-epoch log, the journal);
//! - the parent's app, every device minute: `GET /api/watches`, the watch's details,
//!   its locations (handed to the journal as the steps do) and its alarms, and a
//!   stranger's refused read of the locations (the parent API through the backend
//!   driver);
//! - the parent's settings through the backend at the start: the parent and the
//!   second parent as centre, SOS and whitelist numbers, and `UPLOAD,10` (a position
//!   report every 10 device seconds: the device flow through the gateway, its flow
//!   files and packet capture); then `CR` (report now) every 20 device minutes;
//! - the SOS button held 4 s every 30 device minutes (GPIO, indicators, the alarm, the
//!   watch calling the parent, hung up after a device minute: the modem line and its
//!   event log), an SMS from the parent every hour, and a call from the parent to
//!   the watch every hour, hung up after a device minute;
//! - `Rig::check` every device minute: a failed instrument or lab process ends the
//!   soak early, and the report says so.
//!
//! Every `SOAK_SAMPLE_MINUTES` (default 10) device minutes the bench records this
//! process's `VmRSS` (`/proc/self/status`: the rig, its drivers, gateway and journal
//! all live in it; the watch and cloud simulators are processes of their own, whose
//! `VmRSS` is recorded apart), the size of the evidence directory, and the number of
//! records each in-memory event log holds and has been given (GNSS sentences and fed
//! epochs, console lines, cell events, indicator events, gateway flow events; and
//! the gateway's flow summaries). `VmHWM` (the peak) is read at the end. Reported:
//! RSS after bring-up, at each device hour, the peak, the slope by least squares over
//! the second half (KiB per device hour) and over the whole soak, and the growth over
//! the second half; the soak is called flat when the second half's slope is below
//! 100 KiB per device hour — reported, not enforced. To tell which structure grows,
//! the bench estimates what the event logs' ring buffers took over the second half:
//! slots written × `size_of` of a record (their heap text not counted). With
//! `SOAK_TRIM=1` the allocator's free memory is handed back (`malloc_trim`) before
//! each sample, so that the samples show memory in use rather than memory the
//! allocator keeps after a transient peak. Each sample also has glibc's own count
//! (`mallinfo2`) of the bytes handed out and not given back (*heap in use*: what the
//! rig's structures hold, allocated whether or not every page of it has been
//! touched yet) and of the free bytes it keeps in its arenas (*free*).
//!
//! The rig is shut down at the end (`Rig::shutdown`) and the simulators are checked
//! to be gone. The evidence is written to a temporary directory that is removed at
//! the end, or kept with `SOAK_KEEP=1` (its path is printed). Arguments (`cargo bench`
//! passes `--bench`) are ignored. The figures are also written as JSON to
//! `<target dir>/bench-soak.json`.

// Not every shared helper is used here.
#[allow(dead_code)]
mod support;
use redrig::clock::Clock;
use redrig::config::{load_rig, LoadedRig};
use redrig::drivers::{Button, EventLog, Mark};
use redrig::gnss::scene::GnssChange;
use redrig::rig::Rig;
use redrig::strategy::{DeviceState, Strategy};
use serde::Serialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use support::write_figures;

/// Least-squares slope over the second half (KiB per device hour) below which the
/// soak is called flat: under 2.4 MiB a device day.
const FLAT_SLOPE_KIB_PER_H: f64 = 100.0;
/// The watch's position report interval set at the start (device seconds).
const UPLOAD_S: u32 = 10;
/// Device seconds between activities (first one at the offset).
const CHECK_EVERY_S: f64 = 60.0;
const API_EVERY_S: f64 = 60.0;
const LOCATE_EVERY_S: (f64, f64) = (1200.0, 600.0);
const SOS_EVERY_S: (f64, f64) = (1800.0, 300.0);
const SMS_EVERY_S: (f64, f64) = (3600.0, 900.0);
const CALL_EVERY_S: (f64, f64) = (3600.0, 2700.0);
/// How long a call is left up before the rig hangs up (device seconds).
const HANG_UP_AFTER_S: f64 = 60.0;
const SOS_HOLD_S: f64 = 4.0;
/// Problems kept for the report (the rest are counted).
const MAX_PROBLEMS: usize = 20;

fn env_f64(name: &str, default: f64, min: f64, max: f64) -> f64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x >= min && *x <= max)
            .unwrap_or_else(|| panic!("{name}={v:?}: expected a number from {min} to {max}")),
        Err(_) => default,
    }
}

/// A `kB` field of a `/proc/<pid>/status` file.
fn status_kib(pid: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// What glibc's allocator has handed out and not had back, in KiB.
fn heap_in_use_kib() -> u64 {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    let m = unsafe { libc::mallinfo2() };
    (m.uordblks as u64 + m.hblkhd as u64) / 1024
}

/// Free memory glibc's allocator keeps in its arenas, in KiB.
fn heap_free_kib() -> u64 {
    // SAFETY: as above.
    let m = unsafe { libc::mallinfo2() };
    m.fordblks as u64 / 1024
}

/// Total size of the files under `dir` (symbolic links not followed).
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    total
}

/// The files under `dir` (one level) by size, largest first.
fn largest_files(dir: &Path, n: usize) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let m = e.path().symlink_metadata().ok()?;
                    m.is_file()
                        .then(|| (e.file_name().to_string_lossy().into_owned(), m.len()))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort_by_key(|f| std::cmp::Reverse(f.1));
    files.truncate(n);
    files
}

/// One event log's counts, read without copying its records.
#[derive(Debug, Clone, Copy, Serialize)]
struct LogCount {
    log: &'static str,
    /// Records in memory now.
    held: u64,
    /// Records ever pushed.
    pushed: u64,
    /// Bytes a record takes in the log's ring buffer (`size_of`), without the text
    /// some own on the heap (GNSS sentences, console lines, event texts).
    record_bytes: usize,
}

impl LogCount {
    fn of<T: Clone>(log: &'static str, l: &EventLog<T>) -> LogCount {
        let pushed = l.mark().0;
        LogCount {
            log,
            held: pushed.saturating_sub(l.evicted_since(Mark(0))),
            pushed,
            record_bytes: std::mem::size_of::<redrig::drivers::eventlog::Record<T>>(),
        }
    }

    /// Slots of the log's ring buffer (a `VecDeque`) written so far. Until the log
    /// first evicts, every record pushed is held. Once it evicts, it holds its
    /// capacity, the deque's buffer has grown by doubling to the next power of two
    /// above it, and pushing at the back and popping at the front walks the whole
    /// buffer: slots written = records pushed, up to the buffer's size.
    fn slots_written(&self) -> u64 {
        if self.pushed == self.held {
            self.held
        } else {
            self.pushed.min((self.held + 1).next_power_of_two())
        }
    }
}

/// The event logs of the rig.
fn logs_of(rig: &Rig) -> Vec<LogCount> {
    vec![
        LogCount::of("GNSS sentences", rig.gnss.log()),
        LogCount::of("GNSS fed epochs", rig.gnss.fed()),
        LogCount::of("console lines", rig.console.log()),
        LogCount::of("cell events", rig.cellular.log()),
        LogCount::of("indicator events", rig.indicators.log()),
        LogCount::of("flow events", rig.gateway.flows()),
    ]
}

#[derive(Debug, Clone, Serialize)]
struct Sample {
    device_h: f64,
    wall_s: f64,
    rss_kib: u64,
    /// Bytes the allocator has handed out and not had back (glibc `mallinfo2`:
    /// `uordblks + hblkhd`, all arenas), in KiB: memory in use, without what the
    /// allocator keeps free.
    heap_in_use_kib: u64,
    /// Free memory the allocator keeps in its arenas (`fordblks`), in KiB.
    heap_free_kib: u64,
    evidence_bytes: u64,
    watch_rss_kib: Option<u64>,
    cloud_rss_kib: Option<u64>,
    /// New backend positions handed to the journal so far.
    backend_positions: u64,
    logs: Vec<LogCount>,
    flow_summaries: u64,
}

/// What the bench did during the soak.
#[derive(Debug, Default, Serialize)]
struct Activity {
    routes_started: u64,
    /// Rounds of the parent's reads done, and due (fewer done: the loop could not
    /// keep up at this scale).
    read_rounds: u64,
    read_rounds_due: u64,
    api_reads: u64,
    api_refused_as_expected: u64,
    commands: u64,
    sos_presses: u64,
    sms: u64,
    calls: u64,
    hang_ups: u64,
    problems: u64,
    first_problems: Vec<String>,
    /// Why the soak ended before its time, if it did.
    ended_early: Option<String>,
}

impl Activity {
    fn problem(&mut self, what: String) {
        self.problems += 1;
        if self.first_problems.len() < MAX_PROBLEMS {
            self.first_problems.push(what);
        }
    }
}

/// The simulators' process ids by kind (`watch`, `cloud`), from their command lines.
fn lab_pids(rig: &Rig) -> Vec<(String, u32)> {
    rig.lab()
        .map(|l| l.pids())
        .unwrap_or_default()
        .into_iter()
        .map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<String> = cmd
                .split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let kind = args
                .iter()
                .position(|a| a == "lab-process")
                .and_then(|i| args.get(i + 1).cloned())
                .unwrap_or_else(|| "simulator".into());
            (kind, pid)
        })
        .collect()
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// The parent's app and a stranger, as the steps reach the backend.
struct Api {
    parent: String,
    stranger: Option<String>,
    watch_id: String,
    /// Newest position time handed to the journal.
    newest_position: i64,
    positions: u64,
}

impl Api {
    async fn login(rig: &Rig, email: &str, password: &str) -> Result<String, String> {
        let body = json!({ "email": email, "password": password });
        let r = rig
            .backend
            .request("POST", "/api/login", None, Some(&body))
            .await
            .map_err(|e| e.to_string())?;
        r.body["token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("login of {email}: HTTP {} {}", r.status, r.body))
    }

    async fn open(rig: &Rig, loaded: &LoadedRig, strategy: &mut Strategy) -> Result<Api, String> {
        let parent = strategy
            .parent_token(rig, loaded)
            .await
            .map_err(|e| e.to_string())?;
        let r = rig
            .backend
            .request("GET", "/api/watches", Some(&parent), None)
            .await
            .map_err(|e| e.to_string())?;
        let imei = &loaded.device.device.imei;
        let watch_id = r
            .body
            .as_array()
            .and_then(|ws| ws.iter().find(|w| w["imei"].as_str() == Some(imei)))
            .and_then(|w| match &w["id"] {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .ok_or_else(|| format!("the parent's watches do not list {imei}: {}", r.body))?;
        let acct = &loaded.device.device.backend.accounts.stranger;
        let stranger = match redrig::config::resolve_secret(&acct.password) {
            Ok(pw) => Api::login(rig, &acct.email, &pw).await.ok(),
            Err(_) => None,
        };
        Ok(Api {
            parent,
            stranger,
            watch_id,
            newest_position: i64::MIN,
            positions: 0,
        })
    }

    async fn get(&self, rig: &Rig, path: &str, token: &str) -> Result<(u16, Value), String> {
        rig.backend
            .request("GET", path, Some(token), None)
            .await
            .map(|r| (r.status, r.body))
            .map_err(|e| format!("GET {path}: {e}"))
    }

    /// The parent's reads; the locations go to the journal as `locations_since` does.
    async fn reads(&mut self, rig: &Rig, act: &mut Activity) {
        let id = self.watch_id.clone();
        let paths = [
            "/api/watches".to_string(),
            format!("/api/watches/{id}"),
            format!("/api/watches/{id}/locations"),
            format!("/api/watches/{id}/alarms"),
        ];
        for path in &paths {
            match self.get(rig, path, &self.parent.clone()).await {
                Ok((200, body)) => {
                    act.api_reads += 1;
                    if path.ends_with("/locations") {
                        if let Some(all) = body.as_array() {
                            rig.journal.backend_positions(all);
                            let newest = all.iter().filter_map(|r| r["t"].as_i64()).max();
                            let fresh = all
                                .iter()
                                .filter(|r| {
                                    r["t"].as_i64().is_some_and(|t| t > self.newest_position)
                                })
                                .count();
                            self.positions += fresh as u64;
                            if let Some(n) = newest {
                                self.newest_position = self.newest_position.max(n);
                            }
                        }
                    }
                }
                Ok((status, body)) => act.problem(format!("GET {path}: HTTP {status} {body}")),
                Err(e) => act.problem(e),
            }
        }
        if let Some(stranger) = self.stranger.clone() {
            let path = format!("/api/watches/{id}/locations");
            match self.get(rig, &path, &stranger).await {
                Ok((400..=404, _)) => act.api_refused_as_expected += 1,
                Ok((status, _)) => act.problem(format!("a stranger's GET {path}: HTTP {status}")),
                Err(e) => act.problem(e),
            }
        }
    }

    /// The parent's usual setup, as the steps make it: centre number, SOS numbers
    /// and whitelist (the parent and the second parent).
    async fn set_numbers(&self, rig: &Rig, act: &mut Activity, loaded: &LoadedRig) {
        let n = &loaded.device.device.numbers;
        let (p, q) = (&n.parent, &n.second_parent);
        let body = json!({ "center": p, "sos": [p, q], "whitelist": [p, q] });
        let path = format!("/api/watches/{}/numbers", self.watch_id);
        match rig
            .backend
            .request("PUT", &path, Some(&self.parent), Some(&body))
            .await
        {
            Ok(r) if (200..300).contains(&r.status) => act.commands += 1,
            Ok(r) => act.problem(format!("PUT {path}: HTTP {} {}", r.status, r.body)),
            Err(e) => act.problem(format!("PUT {path}: {e}")),
        }
    }

    async fn command(&self, rig: &Rig, act: &mut Activity, command: &str, args: &[&str]) {
        let path = format!("/api/watches/{}/commands", self.watch_id);
        let body = json!({ "command": command, "args": args });
        match rig
            .backend
            .request("POST", &path, Some(&self.parent), Some(&body))
            .await
        {
            Ok(r) if (200..300).contains(&r.status) => act.commands += 1,
            Ok(r) => act.problem(format!("command {command}: HTTP {} {}", r.status, r.body)),
            Err(e) => act.problem(format!("command {command}: {e}")),
        }
    }
}

/// A periodic activity in device milliseconds.
struct Every {
    next: u64,
    period: u64,
}

impl Every {
    fn new(start: u64, (period_s, offset_s): (f64, f64)) -> Every {
        Every {
            next: start + (offset_s * 1000.0) as u64,
            period: ((period_s * 1000.0) as u64).max(1),
        }
    }

    /// Whether it is due at `now`; if so the next time is set.
    fn due(&mut self, now: u64) -> bool {
        if now < self.next {
            return false;
        }
        while self.next <= now {
            self.next += self.period;
        }
        true
    }
}

struct SoakSpec {
    device_ms: u64,
    sample_ms: u64,
}

/// Keep the rig busy for the soak's device time, sampling as it goes.
async fn soak(
    rig: &Rig,
    loaded: &LoadedRig,
    strategy: &mut Strategy,
    spec: &SoakSpec,
    evidence: &Path,
    pids: &[(String, u32)],
    trim: bool,
) -> (Vec<Sample>, Activity) {
    let clock = rig.clock;
    let mut act = Activity::default();
    let mut samples = Vec::new();
    let wall0 = Instant::now();
    let start = clock.now();
    let end = start + spec.device_ms;
    let rss_of = |kind: &str| {
        pids.iter()
            .find(|(k, _)| k == kind)
            .and_then(|(_, pid)| status_kib(&pid.to_string(), "VmRSS"))
    };
    let mut api = match Api::open(rig, loaded, strategy).await {
        Ok(a) => Some(a),
        Err(e) => {
            act.problem(format!("the parent's app cannot reach the watch: {e}"));
            None
        }
    };
    let sample = |now: u64, api: &Option<Api>| Sample {
        device_h: (now - start) as f64 / 3_600_000.0,
        wall_s: wall0.elapsed().as_secs_f64(),
        rss_kib: {
            if trim {
                // SAFETY: malloc_trim only hands free pages of the allocator back.
                unsafe {
                    libc::malloc_trim(0);
                }
            }
            status_kib("self", "VmRSS").unwrap_or(0)
        },
        evidence_bytes: dir_bytes(evidence),
        heap_in_use_kib: heap_in_use_kib(),
        heap_free_kib: heap_free_kib(),
        watch_rss_kib: rss_of("watch"),
        cloud_rss_kib: rss_of("cloud"),
        backend_positions: api.as_ref().map_or(0, |a| a.positions),
        logs: logs_of(rig),
        flow_summaries: rig.gateway.summaries().len() as u64,
    };
    samples.push(sample(start, &api));
    if let Some(a) = &api {
        a.set_numbers(rig, &mut act, loaded).await;
        a.command(rig, &mut act, "UPLOAD", &[&UPLOAD_S.to_string()])
            .await;
    }

    let routes: Vec<_> = loaded
        .routes
        .route_names()
        .into_iter()
        .filter_map(|n| loaded.routes.route(n).cloned())
        .filter(|r| r.duration_s().is_finite() && r.duration_s() > 0.0)
        .collect();
    let parent_number = loaded.device.device.numbers.parent.clone();
    let mut route_end = start;
    let mut next_route = 0usize;
    let mut sampling = Every {
        next: start + spec.sample_ms,
        period: spec.sample_ms.max(1),
    };
    let mut check = Every::new(start, (CHECK_EVERY_S, CHECK_EVERY_S));
    let mut reads = Every::new(start, (API_EVERY_S, API_EVERY_S / 2.0));
    let mut locate = Every::new(start, LOCATE_EVERY_S);
    let mut sos = Every::new(start, SOS_EVERY_S);
    let mut sms = Every::new(start, SMS_EVERY_S);
    let mut call = Every::new(start, CALL_EVERY_S);
    let mut hang_up_at: Option<u64> = None;
    let mut sms_count = 0u64;

    loop {
        let now = clock.now();
        if now >= end {
            break;
        }
        if sampling.due(now) {
            samples.push(sample(now, &api));
        }
        if check.due(now) {
            if let Err(e) = rig.check() {
                act.ended_early = Some(format!(
                    "the rig failed after {:.2} device hours: {e}",
                    (now - start) as f64 / 3_600_000.0
                ));
                break;
            }
        }
        if now >= route_end && !routes.is_empty() {
            let r = &routes[next_route % routes.len()];
            next_route += 1;
            match rig.gnss.apply(GnssChange::Route(Arc::new(r.clone()))).await {
                Ok(()) => {
                    act.routes_started += 1;
                    route_end = now + (r.duration_s() * 1000.0) as u64;
                }
                Err(e) => {
                    act.problem(format!("route {}: {e}", r.name));
                    route_end = now + 60_000;
                }
            }
        }
        if let Some(a) = api.as_mut() {
            if reads.due(now) {
                act.read_rounds += 1;
                a.reads(rig, &mut act).await;
            }
            if locate.due(now) {
                a.command(rig, &mut act, "CR", &[]).await;
            }
        }
        if sos.due(now) {
            match rig.buttons.press(Button::Sos, SOS_HOLD_S).await {
                Ok(()) => act.sos_presses += 1,
                Err(e) => act.problem(format!("SOS press: {e}")),
            }
            hang_up_at = Some(clock.now() + (HANG_UP_AFTER_S * 1000.0) as u64);
        }
        if sms.due(now) {
            sms_count += 1;
            let text = format!("Dinner at seven ({sms_count})");
            match rig.cellular.send_sms(&parent_number, &text).await {
                Ok(()) => act.sms += 1,
                Err(e) => act.problem(format!("SMS: {e}")),
            }
        }
        if call.due(now) {
            match rig.cellular.call_watch(&parent_number).await {
                Ok(()) => act.calls += 1,
                Err(e) => act.problem(format!("call to the watch: {e}")),
            }
            hang_up_at = Some(clock.now() + (HANG_UP_AFTER_S * 1000.0) as u64);
        }
        if hang_up_at.is_some_and(|t| clock.now() >= t) {
            hang_up_at = None;
            match rig.cellular.hang_up().await {
                Ok(()) => act.hang_ups += 1,
                Err(e) => act.problem(format!("hang up: {e}")),
            }
        }
        // Sleep until the next thing is due (at most ten device seconds).
        let now = clock.now();
        let next = [
            sampling.next,
            check.next,
            reads.next,
            locate.next,
            sos.next,
            sms.next,
            call.next,
            route_end,
            hang_up_at.unwrap_or(u64::MAX),
            end,
        ]
        .into_iter()
        .min()
        .unwrap_or(end);
        let wait_s = (next.saturating_sub(now) as f64 / 1000.0).min(10.0);
        if wait_s > 0.0 {
            clock.sleep(wait_s).await;
        }
    }
    let stop = clock.now().min(end);
    let (offset, period) = (
        (API_EVERY_S / 2.0 * 1000.0) as u64,
        (API_EVERY_S * 1000.0) as u64,
    );
    let elapsed = stop.saturating_sub(start);
    if api.is_some() && elapsed >= offset {
        act.read_rounds_due = (elapsed - offset) / period + 1;
    }
    samples.push(sample(stop, &api));
    (samples, act)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn main() {
    let hours = env_f64("SOAK_DEVICE_HOURS", 6.0, 0.01, 1000.0);
    let scale = env_f64("SOAK_SCALE", 100.0, 1.0, 1000.0);
    let sample_min = env_f64("SOAK_SAMPLE_MINUTES", 10.0, 0.1, 600.0);
    let keep = std::env::var("SOAK_KEEP").is_ok_and(|v| v.trim() == "1");
    let trim = std::env::var("SOAK_TRIM").is_ok_and(|v| v.trim() == "1");

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let rig_file = root.join("fixtures/rigs/virtual.yaml");
    let mut loaded =
        load_rig(&rig_file, None).unwrap_or_else(|e| panic!("{}: {e}", rig_file.display()));
    let k = (scale / loaded.rig.time.scale).max(1.0);
    loaded.rig.time.scale = scale;
    loaded.rig.time.step_timeout *= k;
    loaded.rig.time.boot_timeout *= k;

    let evidence = tempfile::Builder::new()
        .prefix("redrig-soak-")
        .tempdir()
        .expect("temporary evidence directory");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    let rss_before = status_kib("self", "VmRSS").unwrap_or(0);
    println!(
        "Soak: {hours} device hours of the reference watch on the virtual lab, clock scale {scale}, \
         a sample every {sample_min} device minutes; load average (1 min) {load} at start"
    );
    if trim {
        println!(
            "  SOAK_TRIM=1: free allocator memory is handed back (malloc_trim) before each sample"
        );
    }

    let wall0 = Instant::now();
    let clock = Clock::start(scale);
    let rig = rt
        .block_on(Rig::assemble(
            &loaded,
            Path::new(env!("CARGO_BIN_EXE_redrig")),
            clock,
            evidence.path(),
        ))
        .unwrap_or_else(|e| panic!("the rig could not be assembled: {e}"));
    let pids = lab_pids(&rig);
    let mut strategy = Strategy::new();
    let up = rt.block_on(strategy.bring_to(&rig, &loaded, DeviceState::Connected, true));
    let bring_up_s = wall0.elapsed().as_secs_f64();

    let (samples, act) = match &up {
        Ok(()) => {
            let spec = SoakSpec {
                device_ms: (hours * 3_600_000.0) as u64,
                sample_ms: (sample_min * 60_000.0) as u64,
            };
            rt.block_on(soak(
                &rig,
                &loaded,
                &mut strategy,
                &spec,
                evidence.path(),
                &pids,
                trim,
            ))
        }
        Err(e) => (
            Vec::new(),
            Activity {
                ended_early: Some(format!("bring-up failed: {e}")),
                ..Activity::default()
            },
        ),
    };
    let soak_wall_s = wall0.elapsed().as_secs_f64() - bring_up_s;
    let hwm = status_kib("self", "VmHWM").unwrap_or(0);
    let evidence_total = dir_bytes(evidence.path());
    let top_files = largest_files(evidence.path(), 6);

    // Shut down and check that the simulators are gone.
    let shutdown = rt.block_on(rig.shutdown());
    std::thread::sleep(std::time::Duration::from_millis(200));
    let survivors: Vec<u32> = pids
        .iter()
        .map(|(_, p)| *p)
        .filter(|p| Path::new(&format!("/proc/{p}")).exists())
        .collect();
    drop(rt);
    let kept = if keep {
        Some(evidence.keep())
    } else {
        if let Err(e) = evidence.close() {
            eprintln!("cannot remove the evidence directory: {e}");
        }
        None
    };

    // Figures.
    if let Some(why) = &act.ended_early {
        println!("  SOAK ENDED EARLY: {why}");
    }
    if samples.is_empty() {
        println!("  no samples");
        std::process::exit(1);
    }
    let first = &samples[0];
    let last = &samples[samples.len() - 1];
    let span_h = last.device_h;
    let half = span_h / 2.0;
    let mid = samples
        .iter()
        .min_by(|a, b| {
            (a.device_h - half)
                .abs()
                .total_cmp(&(b.device_h - half).abs())
        })
        .unwrap_or(first);
    let pts = |from_h: f64, of: fn(&Sample) -> u64| -> Vec<(f64, f64)> {
        samples
            .iter()
            .filter(|s| s.device_h >= from_h)
            .map(|s| (s.device_h, of(s) as f64))
            .collect()
    };
    let slope_second = slope(&pts(half, |s| s.rss_kib));
    let slope_all = slope(&pts(0.0, |s| s.rss_kib));
    let heap_slope_second = slope(&pts(half, |s| s.heap_in_use_kib));
    let growth_second = last.rss_kib as f64 - mid.rss_kib as f64;
    let heap_growth_second = last.heap_in_use_kib as f64 - mid.heap_in_use_kib as f64;
    let peak_sampled = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let flat = slope_second.is_some_and(|s| s < FLAT_SLOPE_KIB_PER_H);

    println!(
        "  bring-up {bring_up_s:.1} s wall; soak {:.2} device hours in {soak_wall_s:.0} s wall",
        span_h
    );
    println!(
        "  VmRSS before assembling the rig: {:.1} MiB",
        mib(rss_before)
    );
    println!(
        "  {:>7} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8} {:>8} {:>8} {:>7} {:>7} {:>8} {:>8}",
        "dev h",
        "RSS MiB",
        "Δ KiB",
        "heap MiB",
        "free MiB",
        "evid. MiB",
        "gnss fed",
        "nmea",
        "console",
        "cell",
        "flows",
        "watch MiB",
        "cloud MiB"
    );
    let mut shown = Vec::new();
    for h in 0..=(span_h.floor() as u64) {
        if let Some(s) = samples.iter().min_by(|a, b| {
            (a.device_h - h as f64)
                .abs()
                .total_cmp(&(b.device_h - h as f64).abs())
        }) {
            shown.push(s.clone());
        }
    }
    if shown.last().is_none_or(|s| s.device_h < last.device_h) {
        shown.push(last.clone());
    }
    for s in &shown {
        println!(
            "  {:>7.2} {:>9.1} {:>+9} {:>9.1} {:>9.1} {:>10.1} {:>8} {:>8} {:>8} {:>7} {:>7} {:>8.1} {:>8.1}",
            s.device_h,
            mib(s.rss_kib),
            s.rss_kib as i64 - first.rss_kib as i64,
            mib(s.heap_in_use_kib),
            mib(s.heap_free_kib),
            s.evidence_bytes as f64 / 1048576.0,
            s.logs[1].held,
            s.logs[0].held,
            s.logs[2].held,
            s.logs[3].held,
            s.logs[5].held,
            mib(s.watch_rss_kib.unwrap_or(0)),
            mib(s.cloud_rss_kib.unwrap_or(0)),
        );
    }
    println!(
        "  RSS after bring-up {:.1} MiB; at the end {:.1} MiB; peak sampled {:.1} MiB; VmHWM {:.1} MiB",
        mib(first.rss_kib),
        mib(last.rss_kib),
        mib(peak_sampled),
        mib(hwm)
    );
    let fmt_slope = |s: Option<f64>| s.map_or("n/a".to_string(), |v| format!("{v:+.0}"));
    println!(
        "  slope (KiB per device hour): second half {}, whole soak {}; heap in use, second half {}",
        fmt_slope(slope_second),
        fmt_slope(slope_all),
        fmt_slope(heap_slope_second)
    );
    println!(
        "  growth over the second half ({:.2} → {:.2} h): {:+.0} KiB — {} (flat: slope below {FLAT_SLOPE_KIB_PER_H:.0} KiB per device hour)",
        mid.device_h,
        last.device_h,
        growth_second,
        if flat { "flat" } else { "GROWING" }
    );
    println!(
        "  event logs: records held in memory after bring-up → middle → end; ring-buffer \
         slots written over the second half × bytes each (without heap text):"
    );
    let mut attributed = 0.0;
    for ((a, b), c) in first.logs.iter().zip(&mid.logs).zip(&last.logs) {
        let kib = c.slots_written().saturating_sub(b.slots_written()) as f64
            * c.record_bytes as f64
            / 1024.0;
        attributed += kib;
        let state = if c.pushed > c.held {
            format!(
                "full at {}; buffer of {} slots, {:.0} KiB",
                c.held,
                (c.held + 1).next_power_of_two(),
                (c.held + 1).next_power_of_two() as f64 * c.record_bytes as f64 / 1024.0
            )
        } else {
            "not full".to_string()
        };
        println!(
            "    {:<17} {:>6} → {:>6} → {:>6}  {:>3} B: {kib:>+6.0} KiB  ({state})",
            c.log, a.held, b.held, c.held, c.record_bytes
        );
    }
    println!(
        "    together {attributed:+.0} KiB; over the second half the RSS grew {growth_second:+.0} KiB, the heap in use {heap_growth_second:+.0} KiB"
    );
    println!(
        "  gateway flow summaries: {} → {} → {}",
        first.flow_summaries, mid.flow_summaries, last.flow_summaries
    );
    println!(
        "  backend positions handed to the journal: {}",
        last.backend_positions
    );
    println!(
        "  activity: {} routes, {} API reads in {} of {} rounds due (+{} refused stranger reads), {} commands, {} SOS presses, {} SMS, {} calls, {} hang-ups; {} problems",
        act.routes_started,
        act.api_reads,
        act.read_rounds,
        act.read_rounds_due,
        act.api_refused_as_expected,
        act.commands,
        act.sos_presses,
        act.sms,
        act.calls,
        act.hang_ups,
        act.problems
    );
    for p in &act.first_problems {
        println!("    problem: {p}");
    }
    println!(
        "  evidence: {:.1} MiB in total; largest: {}",
        evidence_total as f64 / 1048576.0,
        top_files
            .iter()
            .map(|(n, b)| format!("{n} {:.1} MiB", *b as f64 / 1048576.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    match &shutdown {
        Ok(()) => println!("  rig shut down"),
        Err(e) => println!("  rig shutdown: {e}"),
    }
    if !survivors.is_empty() {
        println!("  SIMULATORS STILL RUNNING after shutdown: {survivors:?}");
    }
    if let Some(dir) = &kept {
        println!("  evidence kept in {}", dir.display());
    }

    let report = json!({
        "device_hours_asked": hours,
        "device_hours_soaked": span_h,
        "clock_scale": scale,
        "sample_minutes": sample_min,
        "load_1min_at_start": load,
        "bring_up_wall_s": bring_up_s,
        "soak_wall_s": soak_wall_s,
        "rss_before_rig_kib": rss_before,
        "rss_after_bring_up_kib": first.rss_kib,
        "rss_end_kib": last.rss_kib,
        "rss_peak_sampled_kib": peak_sampled,
        "vm_hwm_kib": hwm,
        "slope_second_half_kib_per_device_hour": slope_second,
        "slope_whole_kib_per_device_hour": slope_all,
        "growth_second_half_kib": growth_second,
        "heap_in_use_growth_second_half_kib": heap_growth_second,
        "heap_in_use_slope_second_half_kib_per_device_hour": heap_slope_second,
        "flat_slope_bound_kib_per_device_hour": FLAT_SLOPE_KIB_PER_H,
        "malloc_trim_before_samples": trim,
        "flat": flat,
        "evidence_bytes": evidence_total,
        "largest_evidence_files": top_files,
        "second_half_kib_in_event_log_buffers": attributed,
        "activity": act,
        "shutdown_error": shutdown.as_ref().err().map(|e| e.to_string()),
        "simulators_left_running": survivors,
        "samples": samples,
    });
    write_figures("bench-soak.json", &report);
}

//! Simulated GNSS receiver output on a serial line (`docs/virtual-hardware.md` §4,
//! `docs/gnss.md`).
//!
//! A dedicated thread plays a receiver. Navigation epochs fall on whole multiples of
//! `1 / rate_hz` of UTC (…:00.0, :00.1, … at 10 Hz), as a receiver's do. For each
//! epoch the [`Scene`] says where the receiver is and what it sees; the sky model
//! ([`Sky`]) gives the satellites in view, their C/N0 and the DOPs; with at least four
//! tracked satellites and an open sky the epoch carries a fix, otherwise the no-fix
//! forms (status `V`, quality 0, empty fields). Sentences come in receiver order
//! (RMC, VTG, GGA, GSA, GSV…, ZDA); at 5 and 10 Hz GSA and GSV are written once per
//! second, as receivers do to fit their UART.
//!
//! Timing: with `pace_bytes` (pseudo-terminals, which deliver instantly) each
//! sentence is written when its last character would have left a UART at the
//! configured baud rate, so the device sees the epoch trickle in as from a real
//! module; on a real UART the kernel does that pacing and sentences are written as
//! soon as the epoch starts. Epoch `k` is due at a time computed from the start, so
//! pacing does not drift; epochs that could not be written on time (a stalled line)
//! are skipped, not sent in a burst, as a receiver's UART would not queue them either.
//!
//! A replay ([`Recording`]) takes over the line with the recorded bursts at their
//! original spacing, then hands it back to the scene.
//!
//! Every sentence written goes to the [`EventLog`] and to `gnss.nmea`
//! (`<device ms> <sentence>`, written before the sentence goes out; bytes outside
//! printable ASCII escaped as `\xHH`; `#` comments for replays and undelivered epochs);
//! what each epoch fed goes to [`Gnss::fed`]. Bytes the device sends back on the
//! line (receiver configuration commands) are kept in `gnss-rx.raw`, created when
//! the first one arrives.

use super::serial::{lock, LineStatus, ReadEvent, SerialLine, SerialWriter};
use super::{EventLog, FedEpoch, Gnss, Position};
use crate::clock::{Clock, DeviceMs};
use crate::error::{RigError, RigResult};
use crate::gnss::replay::Recording;
use crate::gnss::scene::{GnssChange, Scene};
use crate::gnss::sky::{self, Sky};
use crate::wire::nmea::{self, Epoch, Fix, System, Talker};
use async_trait::async_trait;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Sentences kept in memory (the evidence file has them all).
const LOG_CAPACITY: usize = 20_000;
/// Fed epochs kept in memory: over an hour of device time at 1 Hz.
const FED_CAPACITY: usize = 40_000;
/// How long one sentence's write may take before the epoch is given up (wall time).
const WRITE_DEADLINE: Duration = Duration::from_secs(2);
/// Metres per second in a knot.
const KNOT_MPS: f64 = 1852.0 / 3600.0;

/// How the simulated receiver talks.
#[derive(Debug, Clone)]
pub struct GnssOptions {
    /// Epochs per device second: 1, 5 or 10 (any divisor of 1000 up to 20 works).
    pub rate_hz: u32,
    /// `Gp` (GPS only) or `Gn` (GPS + GLONASS + Galileo).
    pub talker: Talker,
    /// Append ZDA to each epoch.
    pub zda: bool,
    /// Line rate used for pacing characters.
    pub baud: u32,
    /// Emulate UART character timing (for pseudo-terminals).
    pub pace_bytes: bool,
    /// Elevation mask, degrees.
    pub mask_deg: f64,
}

impl Default for GnssOptions {
    fn default() -> Self {
        GnssOptions {
            rate_hz: 1,
            talker: Talker::Gp,
            zda: true,
            baud: 9600,
            pace_bytes: true,
            mask_deg: 5.0,
        }
    }
}

impl GnssOptions {
    fn systems(&self) -> Vec<System> {
        match self.talker {
            Talker::Gn => System::ALL.to_vec(),
            t => vec![t.system().unwrap_or(System::Gps)],
        }
    }

    /// Device milliseconds one character takes on the line (8N1).
    fn char_ms(&self) -> f64 {
        if self.pace_bytes && self.baud > 0 {
            10_000.0 / self.baud as f64
        } else {
            0.0
        }
    }
}

enum Feed {
    Scene,
    Replay {
        recording: Arc<Recording>,
        start: f64,
        next: usize,
    },
}

struct Shared {
    log: EventLog<String>,
    fed: EventLog<FedEpoch>,
    scene: Mutex<Scene>,
    feed: Mutex<Feed>,
    skipped: AtomicU64,
    stalled: AtomicU64,
}

/// GNSS input fed over a serial line.
pub struct SerialGnss {
    shared: Arc<Shared>,
    clock: Clock,
    line: SerialLine,
    /// Dropping it ends the pacing thread; a message wakes it (feed changed).
    wake: mpsc::Sender<()>,
}

impl SerialGnss {
    /// Open the GNSS line and start feeding no-fix epochs. Evidence goes to
    /// `<evidence_dir>/gnss.nmea`.
    pub fn open(
        path: &str,
        baud: u32,
        clock: Clock,
        options: GnssOptions,
        evidence_dir: &Path,
    ) -> RigResult<Arc<SerialGnss>> {
        if options.rate_hz == 0 || options.rate_hz > 20 || 1000 % options.rate_hz != 0 {
            return Err(RigError::Config(format!(
                "GNSS rate {} Hz: must divide 1000 and be at most 20",
                options.rate_hz
            )));
        }
        std::fs::create_dir_all(evidence_dir)?;
        let evidence = File::create(evidence_dir.join("gnss.nmea"))?;
        let line = SerialLine::open(path, baud)?;
        let shared = Arc::new(Shared {
            log: EventLog::new(clock, LOG_CAPACITY),
            fed: EventLog::new(clock, FED_CAPACITY),
            scene: Mutex::new(Scene::new()),
            feed: Mutex::new(Feed::Scene),
            skipped: AtomicU64::new(0),
            stalled: AtomicU64::new(0),
        });

        let mut rx_file = RxEvidence {
            path: evidence_dir.join("gnss-rx.raw"),
            file: None,
        };
        let status = line.status();
        line.start_reader(move |ev| {
            if let ReadEvent::Data(bytes) = ev {
                if let Err(e) = rx_file.append(bytes) {
                    status.fail(format!("evidence gnss-rx.raw: {e}"));
                }
            }
        })?;

        let (wake_tx, wake_rx) = mpsc::channel();
        let options = GnssOptions { baud, ..options };
        let pacer = Pacer {
            clock,
            sky: Sky::new(&options.systems()),
            options,
            shared: shared.clone(),
            writer: line.writer(),
            status: line.status(),
            evidence,
            wake: wake_rx,
        };
        std::thread::Builder::new()
            .name(format!("gnss {path}"))
            .spawn(move || pacer.run())
            .map_err(|e| RigError::instrument(path, format!("GNSS thread: {e}")))?;
        Ok(Arc::new(SerialGnss {
            shared,
            clock,
            line,
            wake: wake_tx,
        }))
    }

    /// The line's health.
    pub fn status(&self) -> LineStatus {
        self.line.status()
    }

    /// The position the receiver has now (true or spoofed), `None` without one.
    pub fn position(&self) -> Option<Position> {
        let t = self.clock.now();
        lock(&self.shared.scene)
            .observe(t, self.clock.utc_ms(t))
            .position
            .map(|s| Position {
                lat: s.lat,
                lon: s.lon,
                alt_m: s.alt_m,
            })
    }

    /// Whether a replay is running.
    pub fn replaying(&self) -> bool {
        matches!(*lock(&self.shared.feed), Feed::Replay { .. })
    }

    /// Epochs skipped because the previous one finished after they were due.
    pub fn skipped_epochs(&self) -> u64 {
        self.shared.skipped.load(Ordering::Relaxed)
    }

    /// Epochs not delivered because the device stopped reading the line.
    pub fn stalled_epochs(&self) -> u64 {
        self.shared.stalled.load(Ordering::Relaxed)
    }
}

fn check_change(change: &GnssChange) -> RigResult<()> {
    let bad = |what: String| Err(RigError::Config(what));
    match change {
        GnssChange::Still { lat, lon, alt_m } if !Fix::still(*lat, *lon, *alt_m).is_valid() => {
            return bad(format!(
                "position {lat}, {lon} (alt {alt_m} m) is not a valid coordinate"
            ));
        }
        GnssChange::Outage { secs: Some(s), .. } if !(s.is_finite() && *s >= 0.0) => {
            return bad(format!("outage of {s} s: expected a duration ≥ 0"));
        }
        GnssChange::Jump {
            distance_m,
            azimuth_deg,
        } if !(distance_m.is_finite()
            && *distance_m >= 0.0
            && *distance_m <= 20_000_000.0
            && azimuth_deg.is_finite()) =>
        {
            return bad(format!(
                "jump of {distance_m} m towards {azimuth_deg}°: expected 0..20000 km and a finite bearing"
            ));
        }
        _ => {}
    }
    Ok(())
}

#[async_trait]
impl Gnss for SerialGnss {
    async fn apply(&self, change: GnssChange) -> RigResult<()> {
        if let Some(e) = self.line.status().error() {
            return Err(e);
        }
        check_change(&change)?;
        if matches!(change, GnssChange::Reset) {
            let mut feed = lock(&self.shared.feed);
            if matches!(*feed, Feed::Replay { .. }) {
                *feed = Feed::Scene;
                let _ = self.wake.send(());
            }
        }
        let t = self.clock.now();
        lock(&self.shared.scene).apply(change, t, self.clock.utc_ms(t));
        Ok(())
    }

    async fn replay(&self, recording: Arc<Recording>) -> RigResult<()> {
        if let Some(e) = self.line.status().error() {
            return Err(e);
        }
        *lock(&self.shared.feed) = Feed::Replay {
            recording,
            start: self.clock.now_f64(),
            next: 0,
        };
        let _ = self.wake.send(());
        Ok(())
    }

    fn log(&self) -> &EventLog<String> {
        &self.shared.log
    }

    fn fed(&self) -> &EventLog<FedEpoch> {
        &self.shared.fed
    }
}

struct RxEvidence {
    path: PathBuf,
    file: Option<File>,
}

impl RxEvidence {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() {
            self.file = Some(File::create(&self.path)?);
        }
        match self.file.as_mut() {
            Some(f) => f.write_all(bytes),
            None => Ok(()),
        }
    }
}

/// One burst to write: lines (without terminators) and when the epoch starts.
struct Burst {
    at: f64,
    lines: Vec<Vec<u8>>,
    fed: Option<FedEpoch>,
}

struct Pacer {
    clock: Clock,
    sky: Sky,
    options: GnssOptions,
    shared: Arc<Shared>,
    writer: SerialWriter,
    status: LineStatus,
    evidence: File,
    wake: mpsc::Receiver<()>,
}

/// Why the pacer stopped waiting.
enum Woke {
    Due,
    Changed,
    Stop,
}

impl Pacer {
    fn period_ms(&self) -> u64 {
        1000 / u64::from(self.options.rate_hz)
    }

    /// The first epoch time (device ms) at or after `t` whose UTC is a whole
    /// multiple of the period.
    fn aligned_after(&self, t: f64) -> u64 {
        let period = self.period_ms() as i64;
        let t = t.ceil().max(0.0) as i64;
        let utc = self.clock.device_epoch_unix_ms + t;
        let next = utc + (period - utc.rem_euclid(period)) % period;
        (next - self.clock.device_epoch_unix_ms).max(0) as u64
    }

    fn wait_until(&self, t: f64) -> Woke {
        match self.wake.recv_timeout(self.clock.until(t)) {
            Err(RecvTimeoutError::Timeout) => Woke::Due,
            Ok(()) => Woke::Changed,
            Err(RecvTimeoutError::Disconnected) => Woke::Stop,
        }
    }

    fn run(mut self) {
        let mut next_epoch = self.aligned_after(self.clock.now_f64());
        // The feed the last burst came from: a replay (recording, index) or the scene.
        let mut was_replay = false;
        let mut was_lost = false;
        loop {
            // What is due next, and when. The content of a scene epoch is decided
            // when it is due, so a change applied in between is in it.
            let replay = match &*lock(&self.shared.feed) {
                Feed::Replay {
                    recording,
                    start,
                    next,
                } => Some((recording.clone(), *start, *next)),
                Feed::Scene => None,
            };
            let due = match &replay {
                Some((rec, start, i)) => match rec.epochs.get(*i) {
                    Some(e) => start + e.at_ms as f64,
                    None => {
                        *lock(&self.shared.feed) = Feed::Scene;
                        self.note(&format!("replay of {} ended", rec.name));
                        continue;
                    }
                },
                None => {
                    if was_replay {
                        // Back from a replay (ended or reset): the scene resumes now.
                        next_epoch = self.aligned_after(self.clock.now_f64());
                        was_replay = false;
                    }
                    next_epoch as f64
                }
            };
            match self.wait_until(due) {
                Woke::Stop => return,
                Woke::Changed => continue,
                Woke::Due => {}
            }
            // While the line is lost (port gone, waiting to be opened again) epochs
            // are not written; the pacing goes on, so feeding resumes on time.
            let lost = self.status.error().is_some();
            if lost != was_lost {
                let t = self.clock.now();
                let note = if lost {
                    "# line lost: epochs are not written until it is back"
                } else {
                    "# line back: epochs are written again"
                };
                if writeln!(self.evidence, "{t} {note}").is_err() {
                    self.status.fail("evidence gnss.nmea: write failed");
                    return;
                }
                was_lost = lost;
            }
            let burst = match &replay {
                Some((rec, start, i)) => {
                    was_replay = true;
                    let e = &rec.epochs[*i];
                    if *i == 0 {
                        self.note(&format!(
                            "replay of {}: {} lines in {} epochs over {:.1} s",
                            rec.name,
                            rec.lines(),
                            rec.epochs.len(),
                            rec.duration_ms() as f64 / 1000.0
                        ));
                    }
                    Burst {
                        at: start + e.at_ms as f64,
                        lines: e.lines.clone(),
                        fed: None,
                    }
                }
                None => self.scene_epoch(next_epoch),
            };
            if !lost {
                if let Err(e) = self.write_burst(&burst) {
                    self.status.fail(e);
                    return;
                }
            }
            match (&replay, &mut *lock(&self.shared.feed)) {
                // Advance the replay that was written, not one started meanwhile.
                (
                    Some((rec, _, i)),
                    Feed::Replay {
                        recording, next, ..
                    },
                ) if Arc::ptr_eq(rec, recording) && next == i => *next += 1,
                (None, _) => {
                    // Next epoch: the one after this unless we are already past it.
                    let now = self.clock.now_f64();
                    let following = next_epoch + self.period_ms();
                    let due = following.max(self.aligned_after(now));
                    let skipped = (due - following) / self.period_ms();
                    self.shared.skipped.fetch_add(skipped, Ordering::Relaxed);
                    next_epoch = due;
                }
                _ => {}
            }
        }
    }

    /// The sentences of the scene's epoch at device time `t`.
    fn scene_epoch(&self, t: DeviceMs) -> Burst {
        let true_utc = self.clock.utc_ms(t);
        let obs = lock(&self.shared.scene).observe(t, true_utc);
        let sats = match obs.position {
            Some(p) => self.sky.in_view(
                obs.true_utc_ms,
                p.lat,
                p.lon,
                p.alt_m,
                self.options.mask_deg,
                if obs.blocked {
                    60.0
                } else {
                    obs.attenuation_db
                },
            ),
            None => Vec::new(),
        };
        let fix = match (obs.position, sky::dop(&sats)) {
            (Some(p), Some(dop)) if !obs.blocked => Some(Fix {
                lat: p.lat,
                lon: p.lon,
                alt_m: p.alt_m,
                geoid_sep_m: 0.0,
                speed_knots: p.speed_mps / KNOT_MPS,
                course_deg: p.course_deg,
                pdop: dop.pdop,
                hdop: dop.hdop,
                vdop: dop.vdop,
            }),
            _ => None,
        };
        let satellites = sky::to_nmea(&sats);
        let epoch = Epoch {
            talker: self.options.talker,
            utc_ms: Some(obs.utc_ms),
            fix,
            satellites: &satellites,
            zda: self.options.zda,
            gsa_gsv: true_utc.rem_euclid(1000) < self.period_ms() as i64,
        };
        let pos = |lat, lon, alt_m| Position { lat, lon, alt_m };
        Burst {
            at: t as f64,
            lines: epoch
                .sentences()
                .into_iter()
                .map(String::into_bytes)
                .collect(),
            fed: Some(FedEpoch {
                utc_ms: obs.utc_ms,
                fix: fix.map(|f| pos(f.lat, f.lon, f.alt_m)),
                position: obs.position.map(|p| pos(p.lat, p.lon, p.alt_m)),
            }),
        }
    }

    fn note(&mut self, text: &str) {
        let t = self.clock.now();
        if let Err(e) = writeln!(self.evidence, "{t} # {text}") {
            self.status.fail(format!("evidence gnss.nmea: {e}"));
        }
    }

    /// Write one burst, each line when its last character would have left the UART.
    /// An error return is fatal to the feed (evidence or port).
    fn write_burst(&mut self, burst: &Burst) -> Result<(), String> {
        let char_ms = self.options.char_ms();
        let mut sent_chars = 0usize;
        for line in &burst.lines {
            let mut bytes = Vec::with_capacity(line.len() + 2);
            bytes.extend_from_slice(line);
            bytes.extend_from_slice(nmea::TERMINATOR.as_bytes());
            sent_chars += bytes.len();
            if char_ms > 0.0 {
                let ready = burst.at + sent_chars as f64 * char_ms;
                // A wake-up (feed changed) does not cut this epoch short: the run loop
                // looks at the feed again after it.
                loop {
                    match self.wait_until(ready) {
                        Woke::Stop => return Ok(()),
                        Woke::Changed => continue,
                        Woke::Due => break,
                    }
                }
            }
            let t = self.clock.now();
            // Evidence first: whatever reaches the line is on record even if the rig
            // stops in the middle of an epoch.
            let shown = if line
                .iter()
                .all(|b| (0x20..=0x7e).contains(b) && *b != b'\\')
            {
                String::from_utf8_lossy(line).into_owned()
            } else {
                super::serial::escape_bytes(line)
            };
            self.evidence
                .write_all(format!("{t} {shown}\n").as_bytes())
                .map_err(|e| format!("evidence gnss.nmea: {e}"))?;
            match self.writer.write_blocking(&bytes, WRITE_DEADLINE) {
                Ok(()) => {
                    self.shared.log.push_at(t, shown);
                }
                Err(e) if self.status.error().is_none() => {
                    // The device stopped reading; part of the epoch may have gone out.
                    self.shared.stalled.fetch_add(1, Ordering::Relaxed);
                    writeln!(
                        self.evidence,
                        "{t} # epoch not delivered (from the line above on): {e}"
                    )
                    .map_err(|e| format!("evidence gnss.nmea: {e}"))?;
                    break;
                }
                Err(e) => {
                    // The port went away: this epoch is not delivered; the line is
                    // lost until the reader opens it again.
                    writeln!(self.evidence, "{t} # line lost: {e}")
                        .map_err(|e| format!("evidence gnss.nmea: {e}"))?;
                    return Ok(());
                }
            }
        }
        if let Some(f) = burst.fed {
            self.shared.fed.push_at(burst.at as DeviceMs, f);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn character_time_follows_the_baud_rate() {
        let o = GnssOptions {
            baud: 9600,
            ..GnssOptions::default()
        };
        assert!((o.char_ms() - 1.041_666).abs() < 1e-3);
        let raw = GnssOptions {
            pace_bytes: false,
            ..o
        };
        assert_eq!(raw.char_ms(), 0.0);
    }

    #[test]
    fn multi_gnss_tracks_three_systems() {
        let o = GnssOptions {
            talker: Talker::Gn,
            ..GnssOptions::default()
        };
        assert_eq!(o.systems(), System::ALL.to_vec());
        assert_eq!(GnssOptions::default().systems(), vec![System::Gps]);
    }
}

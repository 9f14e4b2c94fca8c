//! Simulated GNSS input on a serial line (`docs/virtual-hardware.md` §4).
//!
//! A dedicated thread writes one receiver epoch (RMC, VTG, GGA, GSA, GSV…, ZDA) every
//! `1 / rate_hz` device seconds, for the position last set or as no-fix sentences.
//! Epoch `k` is due at `start + k / rate_hz` (computed from the start, so pacing
//! does not drift); epochs that could not be written on time (a stalled line) are
//! skipped, not sent in a burst, as a receiver's UART would not queue them either.
//!
//! Every sentence written goes to the [`EventLog`] and to `gnss.nmea`
//! (`<device ms> <sentence>`). Bytes the device sends back on the line (receiver
//! configuration commands) are kept in `gnss-rx.raw`, created when the first one
//! arrives.

use super::serial::{lock, LineStatus, ReadEvent, SerialLine, SerialWriter};
use super::{EventLog, Gnss, Position};
use crate::clock::Clock;
use crate::error::{RigError, RigResult};
use crate::wire::nmea::{self, Epoch, Fix, Satellite, Talker};
use async_trait::async_trait;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Sentences kept in memory (the evidence file has them all).
const LOG_CAPACITY: usize = 20_000;
/// How long one epoch's write may take before the epoch is given up (wall time).
const EPOCH_WRITE_DEADLINE: Duration = Duration::from_secs(2);

/// How the simulated receiver talks.
#[derive(Debug, Clone)]
pub struct GnssOptions {
    /// Epochs per device second (0 < rate ≤ 20).
    pub rate_hz: f64,
    pub talker: Talker,
    /// Append ZDA to each epoch.
    pub zda: bool,
    /// Satellites reported while there is a fix.
    pub satellites: Vec<Satellite>,
}

impl Default for GnssOptions {
    fn default() -> Self {
        GnssOptions {
            rate_hz: 1.0,
            talker: Talker::Gp,
            zda: true,
            satellites: nmea::default_constellation(),
        }
    }
}

struct Shared {
    log: EventLog<String>,
    position: Mutex<Option<Position>>,
    skipped: AtomicU64,
    stalled: AtomicU64,
}

/// GNSS input fed over a serial line.
pub struct SerialGnss {
    shared: Arc<Shared>,
    line: SerialLine,
    /// Dropping it ends the pacing thread.
    _stop: mpsc::Sender<()>,
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
        if !(options.rate_hz.is_finite() && options.rate_hz > 0.0 && options.rate_hz <= 20.0) {
            return Err(RigError::Config(format!(
                "GNSS rate {} Hz: must be in (0, 20]",
                options.rate_hz
            )));
        }
        std::fs::create_dir_all(evidence_dir)?;
        let evidence = File::create(evidence_dir.join("gnss.nmea"))?;
        let line = SerialLine::open(path, baud)?;
        let shared = Arc::new(Shared {
            log: EventLog::new(clock, LOG_CAPACITY),
            position: Mutex::new(None),
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

        let (stop_tx, stop_rx) = mpsc::channel();
        let pacer = Pacer {
            clock,
            options,
            shared: shared.clone(),
            writer: line.writer(),
            status: line.status(),
            evidence,
            stop: stop_rx,
        };
        std::thread::Builder::new()
            .name(format!("gnss {path}"))
            .spawn(move || pacer.run())
            .map_err(|e| RigError::instrument(path, format!("GNSS thread: {e}")))?;
        Ok(Arc::new(SerialGnss {
            shared,
            line,
            _stop: stop_tx,
        }))
    }

    /// The line's health.
    pub fn status(&self) -> LineStatus {
        self.line.status()
    }

    /// The position currently fed (`None`: no fix).
    pub fn position(&self) -> Option<Position> {
        *lock(&self.shared.position)
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

#[async_trait]
impl Gnss for SerialGnss {
    async fn set_position(&self, position: Option<Position>) -> RigResult<()> {
        if let Some(e) = self.line.status().error() {
            return Err(e);
        }
        if let Some(p) = position {
            if !Fix::still(p.lat, p.lon, p.alt_m).is_valid() {
                return Err(RigError::Config(format!(
                    "position {}, {} (alt {} m) is not a valid coordinate",
                    p.lat, p.lon, p.alt_m
                )));
            }
        }
        *lock(&self.shared.position) = position;
        Ok(())
    }

    fn log(&self) -> &EventLog<String> {
        &self.shared.log
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

struct Pacer {
    clock: Clock,
    options: GnssOptions,
    shared: Arc<Shared>,
    writer: SerialWriter,
    status: LineStatus,
    evidence: File,
    stop: mpsc::Receiver<()>,
}

impl Pacer {
    fn run(mut self) {
        let period_s = 1.0 / self.options.rate_hz;
        let start_dev = self.clock.now();
        let start = Instant::now();
        let mut k: u64 = 0;
        loop {
            let due = start + self.clock.wall(k as f64 * period_s);
            let wait = due.saturating_duration_since(Instant::now());
            match self.stop.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) => {}
                // Dropped (or, never sent, a message): stop.
                _ => return,
            }
            if self.status.error().is_some() {
                return;
            }
            if let Err(e) = self.epoch() {
                self.status.fail(e);
                return;
            }
            // Next epoch: k + 1 unless we are already past it; then the next one due.
            let elapsed_s = self.clock.now().saturating_sub(start_dev) as f64 / 1000.0;
            let current = (elapsed_s / period_s).floor() as u64;
            let next = (k + 1).max(current + 1);
            self.shared
                .skipped
                .fetch_add(next - k - 1, Ordering::Relaxed);
            k = next;
        }
    }

    /// Write one epoch. An error return is fatal to the feed (evidence or port).
    fn epoch(&mut self) -> Result<(), String> {
        let position = *lock(&self.shared.position);
        let t = self.clock.now();
        let epoch = Epoch {
            talker: self.options.talker,
            utc_ms: Some(self.clock.utc_ms(t)),
            fix: position.map(|p| Fix::still(p.lat, p.lon, p.alt_m)),
            satellites: &self.options.satellites,
            zda: self.options.zda,
        };
        let sentences = epoch.sentences();
        let mut bytes = Vec::with_capacity(sentences.len() * 80);
        for s in &sentences {
            bytes.extend_from_slice(s.as_bytes());
            bytes.extend_from_slice(nmea::TERMINATOR.as_bytes());
        }
        match self.writer.write_blocking(&bytes, EPOCH_WRITE_DEADLINE) {
            Ok(()) => {
                let mut text = String::with_capacity(bytes.len() + 16 * sentences.len());
                for s in sentences {
                    text.push_str(&format!("{t} {s}\n"));
                    self.shared.log.push_at(t, s);
                }
                self.evidence
                    .write_all(text.as_bytes())
                    .map_err(|e| format!("evidence gnss.nmea: {e}"))
            }
            Err(e) if self.status.error().is_none() => {
                // The device stopped reading; part of the epoch may have gone out.
                self.shared.stalled.fetch_add(1, Ordering::Relaxed);
                writeln!(self.evidence, "{t} # epoch not delivered: {e}")
                    .map_err(|e| format!("evidence gnss.nmea: {e}"))
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

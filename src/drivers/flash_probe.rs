//! Flashing and the debug-port check of a real watch through a USB debug probe
//! (probe-rs, through [`redrig_hardware::probe`]).
//!
//! Configured as `instruments.flasher` / `instruments.debug_port`
//! `{ backend: probe-rs, probe: "VID:PID[:SERIAL]", chip: nRF52840_xxAA }`. The probe
//! is opened for each attempt and closed after it, so the flasher and the debug port
//! can share one probe; attempts through any probe run one at a time in this process.
//! probe-rs is blocking: each attempt runs on a blocking thread, and the rig waits for
//! it at most a bounded wall time (a probe-rs call that hangs is left to finish on its
//! thread; later attempts wait for it and time out in turn).
//!
//! [`ProbeFlasher`]: the image (ELF, Intel HEX, or BIN placed at the start of the
//! chip's main flash) must be readable and fit the chip's flash, else a
//! [`RigError::Config`]. The
//! chip is attached without erase-all permission, so a protected chip answers with a
//! refusal, returned as [`FlashOutcome::Locked`] (the device's answer, but not its
//! bootloader's verdict on the image: nothing reached it); the rig never
//! mass-erases a chip to unlock it. Every other failure (no probe, no answer from the
//! target, a failed or mismatching write, a panic inside probe-rs) is a
//! [`RigError::Instrument`], an inconclusive verdict. A probe cannot tell which
//! firmware version it wrote: the `version` of [`FlashOutcome::Written`] says so, and the
//! SHA-256 is the image file's. When given the rig's power switch
//! ([`ProbeFlasher::with_power`]), the flasher switches the watch on for the attempt
//! (SWD needs a powered target) and off again afterwards, so it leaves the watch off.
//!
//! [`ProbeDebugPort`]: attaches without erase permission and reads from the start of
//! the chip's main flash (address 0 on an nRF52, 0x08000000 on an STM32). A chip that
//! answers and refuses is [`DebugAccess::Locked`]. A target that does not answer at all
//! is a [`RigError::Instrument`]: a debug port disabled for good cannot be told from an
//! unwired or unpowered one, so the rig does not claim it as locked. The debug port
//! does not switch the watch on.
//!
//! Each attempt is appended to the evidence file `flash.log` / `debug.log`: probe,
//! chip, image and its SHA-256, each phase with its time from the start of the
//! attempt, and the outcome.

use crate::clock::Clock;
use crate::drivers::{DebugAccess, DebugPort, FlashOutcome, Flasher, Power};
use crate::error::{RigError, RigResult};
use async_trait::async_trait;
use redrig_hardware::probe::{
    self as hw, ChipInfo, DebugOutcome, Image, Probe, ProbeError, ProbeSelector,
};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use redrig_hardware::probe::{
    FlashOptions, FlashPhase, FlashProgressEvent, FlashReport, ImageFormat, ImageOptions,
    PhaseReport, PhaseState,
};

const FLASHER: &str = "flasher";
const DEBUG_PORT: &str = "debug_port";
/// Default limit for one flash attempt, in device seconds.
pub const DEFAULT_FLASH_TIMEOUT_SECS: f64 = 300.0;
/// Default limit for one debug-port check, in device seconds.
pub const DEFAULT_DEBUG_TIMEOUT_SECS: f64 = 60.0;
/// An attempt is awaited at least this long in wall time, whatever the scale.
const MIN_WALL_WAIT: Duration = Duration::from_secs(10);
/// Wall time between switching the watch on and attaching.
const POWER_SETTLE: Duration = Duration::from_millis(300);
/// Largest debug-port read.
pub const MAX_PROBE: usize = hw::MAX_DEBUG_READ;
/// Version text of an image written by a probe.
pub const UNKNOWN_VERSION: &str = "unknown (written by probe; the probe cannot read the version)";

/// One probe session at a time in this process (a USB probe cannot be opened twice).
static SESSIONS: Mutex<()> = Mutex::new(());

/// How a driver obtains the probe for an attempt.
pub type Opener = Arc<dyn Fn(&ProbeSelector) -> Result<Probe, ProbeError> + Send + Sync>;

fn usb_opener() -> Opener {
    Arc::new(hw::open_probe)
}

/// The probe and chip of a `probe-rs` instrument, checked.
#[derive(Debug, Clone)]
pub struct ProbeTarget {
    pub selector: ProbeSelector,
    pub chip: ChipInfo,
}

impl ProbeTarget {
    /// Parse the selector and look the chip up; either failing is a
    /// [`RigError::Config`] naming `instrument` (with close chip names).
    pub fn resolve(instrument: &str, probe: &str, chip: &str) -> RigResult<ProbeTarget> {
        let selector = ProbeSelector::parse(probe)
            .map_err(|e| RigError::Config(format!("instruments.{instrument}.probe: {e}")))?;
        let chip = hw::lookup_chip(chip)
            .map_err(|e| RigError::Config(format!("instruments.{instrument}.chip: {e}")))?;
        Ok(ProbeTarget { selector, chip })
    }
}

/// Turn a probe error into the rig's error for `instrument`: configuration and image
/// faults are [`RigError::Config`], everything else [`RigError::Instrument`] (a locked
/// device included; callers that can report a refusal handle it first).
pub fn rig_error(instrument: &str, e: &ProbeError) -> RigError {
    if e.is_config() {
        RigError::Config(format!("instruments.{instrument}: {e}"))
    } else {
        RigError::instrument(instrument, e)
    }
}

/// The phases of an attempt as they happen, with times from its start, for the
/// evidence.
struct PhaseLog {
    started: Instant,
    lines: Vec<String>,
}

impl PhaseLog {
    fn new() -> Self {
        PhaseLog {
            started: Instant::now(),
            lines: Vec::new(),
        }
    }
    fn note(&mut self, what: impl AsRef<str>) {
        self.lines.push(format!(
            "  +{:.3}s {}\n",
            self.started.elapsed().as_secs_f64(),
            what.as_ref()
        ));
    }
    fn event(&mut self, e: &FlashProgressEvent) {
        let state = match e.state {
            PhaseState::Progress => return,
            PhaseState::Started => "started",
            PhaseState::Finished => "finished",
            PhaseState::Failed => "failed",
        };
        let bytes = match (e.state, e.total) {
            (_, None) if e.done == 0 => String::new(),
            (PhaseState::Started, Some(t)) => format!(" ({t} bytes to do)"),
            _ => format!(" ({} bytes)", e.done),
        };
        self.note(format!("{} {state}{bytes}", e.phase));
    }
}

fn append(evidence: &Path, file: &str, text: &str) {
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(evidence.join(file))
        .and_then(|mut f| f.write_all(text.as_bytes()));
}

fn describe_image(image: &Image, chip: &ChipInfo) -> String {
    let mut s = format!(
        "  image: {} ({} bytes), {} segment(s), {} bytes to write\n",
        image.format,
        image.file_len,
        image.segments.len(),
        image.data_len()
    );
    for (i, seg) in image.segments.iter().enumerate().take(32) {
        let r = seg.range();
        let region = chip
            .flash
            .iter()
            .find(|f| f.range.contains(&r.start))
            .map(|f| format!(" in flash {f}"))
            .unwrap_or_default();
        s.push_str(&format!(
            "  segment {i}: {:#010x}..{:#010x} ({} bytes){region}\n",
            r.start,
            r.end,
            r.end - r.start
        ));
    }
    s
}

/// Read the image, placing a BIN image at the start of the chip's main flash unless
/// `opts` gives a base address.
pub fn read_image(path: &Path, chip: &ChipInfo, opts: ImageOptions) -> Result<Image, ProbeError> {
    let opts = ImageOptions {
        bin_base: opts
            .bin_base
            .or_else(|| chip.main_flash().map(|r| r.range.start)),
        ..opts
    };
    Ok(hw::load_image(path, &opts)?)
}

/// One flash attempt, blocking, with its evidence in `log`.
fn flash_attempt(
    target: &ProbeTarget,
    opener: &Opener,
    image_path: &Path,
    image_opts: ImageOptions,
    opts: FlashOptions,
    log: &mut PhaseLog,
    on_progress: &mut dyn FnMut(FlashProgressEvent),
) -> Result<FlashReport, ProbeError> {
    let image = read_image(image_path, &target.chip, image_opts)?;
    log.lines.push(format!("  sha256={}\n", image.sha256));
    log.lines.push(describe_image(&image, &target.chip));
    hw::check_fits(&target.chip, &image)?;
    let _one_session = SESSIONS.lock().unwrap_or_else(|p| p.into_inner());
    log.note(format!("{} started", FlashPhase::Open));
    let probe =
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| opener(&target.selector))) {
            Ok(r) => r,
            Err(_) => Err(ProbeError::Library {
                step: "opening the probe".into(),
                detail: "panic".into(),
            }),
        };
    let probe = match probe {
        Ok(p) => p,
        Err(e) => {
            log.note(format!("{} failed", FlashPhase::Open));
            return Err(e);
        }
    };
    log.note(format!("{} finished", FlashPhase::Open));
    hw::flash(probe, &target.chip, &image, opts, &mut |e| {
        log.event(&e);
        on_progress(e);
    })
}

/// Flasher through a debug probe.
pub struct ProbeFlasher {
    target: ProbeTarget,
    clock: Clock,
    timeout_secs: f64,
    options: FlashOptions,
    evidence_dir: PathBuf,
    power: Option<Arc<dyn Power>>,
    opener: Opener,
    busy: tokio::sync::Mutex<()>,
}

impl ProbeFlasher {
    /// A flasher for the probe `probe` (`VID:PID[:SERIAL]`) and the probe-rs chip
    /// `chip`. Nothing is opened yet; a bad selector or unknown chip is a
    /// [`RigError::Config`].
    pub fn new(probe: &str, chip: &str, clock: Clock, evidence_dir: &Path) -> RigResult<Self> {
        Ok(ProbeFlasher {
            target: ProbeTarget::resolve(FLASHER, probe, chip)?,
            clock,
            timeout_secs: DEFAULT_FLASH_TIMEOUT_SECS,
            options: FlashOptions::default(),
            evidence_dir: evidence_dir.to_path_buf(),
            power: None,
            opener: usb_opener(),
            busy: tokio::sync::Mutex::new(()),
        })
    }

    /// Switch the watch on for each attempt and off after it.
    pub fn with_power(mut self, power: Arc<dyn Power>) -> Self {
        self.power = Some(power);
        self
    }

    /// Another limit for one attempt, in device seconds (at least 10 s of wall time
    /// are always allowed).
    pub fn with_timeout(mut self, secs: f64) -> Self {
        self.timeout_secs = secs;
        self
    }

    /// Other flash options (default: no full erase, verify, reset after).
    pub fn with_options(mut self, options: FlashOptions) -> Self {
        self.options = options;
        self
    }

    /// Open the probe another way (tests use probe-rs's fake probe).
    pub fn with_opener(mut self, opener: Opener) -> Self {
        self.opener = opener;
        self
    }

    /// The probe and chip.
    pub fn target(&self) -> &ProbeTarget {
        &self.target
    }

    fn outcome(r: Result<FlashReport, ProbeError>) -> RigResult<FlashOutcome> {
        match r {
            Ok(report) => Ok(FlashOutcome::Written {
                version: UNKNOWN_VERSION.into(),
                sha256: report.image_sha256,
            }),
            Err(e @ ProbeError::Locked { .. }) => Ok(FlashOutcome::Locked {
                detail: e.to_string(),
            }),
            Err(e) => Err(rig_error(FLASHER, &e)),
        }
    }

    async fn attempt(&self, image: &Path) -> RigResult<FlashOutcome> {
        let wait = self.clock.wall(self.timeout_secs).max(MIN_WALL_WAIT);
        let header = format!(
            "attempt at device {:.3}s: probe {} chip {} image {}\n",
            self.clock.now() as f64 / 1000.0,
            self.target.selector,
            self.target.chip.name,
            image.display()
        );
        let (target, opener, path, evidence, opts) = (
            self.target.clone(),
            self.opener.clone(),
            image.to_path_buf(),
            self.evidence_dir.clone(),
            self.options,
        );
        let task = tokio::task::spawn_blocking(move || {
            let mut log = PhaseLog::new();
            let r = flash_attempt(
                &target,
                &opener,
                &path,
                ImageOptions::default(),
                opts,
                &mut log,
                &mut |_| {},
            );
            let result = match &r {
                Ok(rep) => {
                    let phases: Vec<String> = rep
                        .phases
                        .iter()
                        .map(|p| {
                            format!(
                                "{} {:.3}s{}",
                                p.phase,
                                p.duration.as_secs_f64(),
                                if p.ok { "" } else { " (failed)" }
                            )
                        })
                        .collect();
                    format!(
                        "  outcome: written {} bytes in {:.3}s; verified={} reset={}{}; phases: {}\n",
                        rep.bytes,
                        rep.total.as_secs_f64(),
                        rep.verified,
                        rep.reset,
                        rep.reset_error
                            .as_deref()
                            .map(|e| format!(" (reset failed: {e})"))
                            .unwrap_or_default(),
                        phases.join(", ")
                    )
                }
                Err(e @ ProbeError::Locked { .. }) => format!("  outcome: refused: {e}\n"),
                Err(e) => format!("  outcome: error: {e}\n"),
            };
            let mut text = header;
            text.extend(log.lines.drain(..));
            text.push_str(&result);
            append(&evidence, "flash.log", &text);
            r
        });
        match tokio::time::timeout(wait, task).await {
            Ok(Ok(r)) => Self::outcome(r),
            Ok(Err(e)) => Err(RigError::instrument(FLASHER, format!("flashing task: {e}"))),
            Err(_) => {
                append(
                    &self.evidence_dir,
                    "flash.log",
                    &format!(
                        "attempt with {} ({}): no result within {wait:?}; the probe is left to finish on its thread\n",
                        image.display(),
                        self.target.selector
                    ),
                );
                Err(RigError::instrument(
                    FLASHER,
                    format!(
                        "flashing {} through probe {} did not finish within {wait:?}",
                        image.display(),
                        self.target.selector
                    ),
                ))
            }
        }
    }
}

#[async_trait]
impl Flasher for ProbeFlasher {
    async fn flash(&self, image: &Path) -> RigResult<FlashOutcome> {
        let _one_at_a_time = self.busy.lock().await;
        if let Some(power) = &self.power {
            power.set(true).await?;
            tokio::time::sleep(POWER_SETTLE).await;
        }
        let outcome = self.attempt(image).await;
        if let Some(power) = &self.power {
            let off = power.set(false).await;
            // A flash outcome is worth more than the power-off error; report the
            // latter only when there is nothing else to report.
            if let (Ok(_), Err(e)) = (&outcome, off) {
                return Err(e);
            }
        }
        outcome
    }
}

/// Debug-port check through a debug probe.
pub struct ProbeDebugPort {
    target: ProbeTarget,
    clock: Clock,
    timeout_secs: f64,
    evidence_dir: PathBuf,
    opener: Opener,
}

impl ProbeDebugPort {
    /// A debug port for the probe `probe` and the probe-rs chip `chip`. Nothing is
    /// opened yet; a bad selector or unknown chip is a [`RigError::Config`].
    pub fn new(probe: &str, chip: &str, clock: Clock, evidence_dir: &Path) -> RigResult<Self> {
        Ok(ProbeDebugPort {
            target: ProbeTarget::resolve(DEBUG_PORT, probe, chip)?,
            clock,
            timeout_secs: DEFAULT_DEBUG_TIMEOUT_SECS,
            evidence_dir: evidence_dir.to_path_buf(),
            opener: usb_opener(),
        })
    }

    /// Another limit for one check, in device seconds (at least 10 s of wall time).
    pub fn with_timeout(mut self, secs: f64) -> Self {
        self.timeout_secs = secs;
        self
    }

    /// Open the probe another way (tests use probe-rs's fake probe).
    pub fn with_opener(mut self, opener: Opener) -> Self {
        self.opener = opener;
        self
    }

    /// The probe and chip.
    pub fn target(&self) -> &ProbeTarget {
        &self.target
    }

    fn check(
        target: &ProbeTarget,
        opener: &Opener,
        len: usize,
    ) -> Result<DebugOutcome, ProbeError> {
        let _one_session = SESSIONS.lock().unwrap_or_else(|p| p.into_inner());
        let probe =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| opener(&target.selector)))
                .unwrap_or_else(|_| {
                    Err(ProbeError::Library {
                        step: "opening the probe".into(),
                        detail: "panic".into(),
                    })
                })?;
        hw::debug_access(probe, &target.chip, len)
    }
}

#[async_trait]
impl DebugPort for ProbeDebugPort {
    async fn probe(&self, len: usize) -> RigResult<DebugAccess> {
        if len > MAX_PROBE {
            return Err(RigError::Config(format!(
                "debug probe of {len} bytes: at most {MAX_PROBE}"
            )));
        }
        let wait = self.clock.wall(self.timeout_secs).max(MIN_WALL_WAIT);
        let mut text = format!(
            "check at device {:.3}s: probe {} chip {} read {len} bytes at {:#010x}\n",
            self.clock.now() as f64 / 1000.0,
            self.target.selector,
            self.target.chip.name,
            self.target
                .chip
                .main_flash()
                .map(|r| r.range.start)
                .unwrap_or(0)
        );
        let (target, opener, evidence) = (
            self.target.clone(),
            self.opener.clone(),
            self.evidence_dir.clone(),
        );
        let task = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let r = ProbeDebugPort::check(&target, &opener, len);
            let took = started.elapsed().as_secs_f64();
            text.push_str(&match &r {
                Ok(DebugOutcome::Locked { detail }) => {
                    format!("  +{took:.3}s outcome: locked: {detail}\n")
                }
                Ok(DebugOutcome::Open {
                    idcode,
                    address,
                    flash_read,
                }) => format!(
                    "  +{took:.3}s outcome: open, DPIDR {idcode}; read {} bytes at {address:#010x}, sha256 {}; first bytes {}\n",
                    flash_read.len(),
                    hex::encode(Sha256::digest(flash_read)),
                    hex::encode(&flash_read[..flash_read.len().min(64)])
                ),
                Err(e) => format!("  +{took:.3}s outcome: error: {e}\n"),
            });
            append(&evidence, "debug.log", &text);
            r
        });
        let r = match tokio::time::timeout(wait, task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                return Err(RigError::instrument(
                    DEBUG_PORT,
                    format!("debug-port task: {e}"),
                ))
            }
            Err(_) => {
                append(
                    &self.evidence_dir,
                    "debug.log",
                    &format!(
                        "check through {}: no result within {wait:?}; the probe is left to finish on its thread\n",
                        self.target.selector
                    ),
                );
                return Err(RigError::instrument(
                    DEBUG_PORT,
                    format!(
                        "the debug-port check through probe {} did not finish within {wait:?}",
                        self.target.selector
                    ),
                ));
            }
        };
        match r {
            Ok(DebugOutcome::Locked { detail }) | Err(ProbeError::Locked { detail, .. }) => {
                Ok(DebugAccess::Locked { detail })
            }
            Ok(DebugOutcome::Open {
                idcode, flash_read, ..
            }) => Ok(DebugAccess::Open { idcode, flash_read }),
            Err(e) => Err(rig_error(DEBUG_PORT, &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redrig_hardware::probe::testing;

    const CHIP: &str = "nRF52840_xxAA";
    /// A selector no machine has.
    const NOBODY: &str = "0000:0000:redrig-no-such-probe";

    fn fake(opener: fn() -> Probe) -> Opener {
        Arc::new(move |_: &ProbeSelector| Ok(opener()))
    }

    /// Records what the flasher asked of the power switch.
    #[derive(Default)]
    struct Switch(Mutex<Vec<bool>>);

    #[async_trait]
    impl Power for Switch {
        async fn set(&self, on: bool) -> RigResult<()> {
            self.0.lock().unwrap().push(on);
            Ok(())
        }
    }

    fn bin(dir: &Path, len: usize) -> PathBuf {
        let p = dir.join("fw.bin");
        std::fs::write(&p, vec![0x5a; len]).unwrap();
        p
    }

    #[test]
    fn bad_selectors_and_unknown_chips_are_configuration_errors() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::start(1.0);
        let Err(RigError::Config(msg)) = ProbeFlasher::new("13xx:1015", CHIP, clock, dir.path())
        else {
            panic!()
        };
        assert!(
            msg.starts_with("instruments.flasher.probe: invalid probe"),
            "{msg}"
        );
        let Err(RigError::Config(msg)) = ProbeDebugPort::new(NOBODY, "nrf52840", clock, dir.path())
        else {
            panic!()
        };
        assert!(
            msg.starts_with("instruments.debug_port.chip: unknown chip `nrf52840`")
                && msg.contains("did you mean nRF52840_xxAA"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn a_protected_chip_refuses_and_the_watch_is_powered_only_for_the_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let image = bin(dir.path(), 512);
        let switch = Arc::new(Switch::default());
        let f = ProbeFlasher::new(NOBODY, CHIP, Clock::start(1.0), dir.path())
            .unwrap()
            .with_power(switch.clone())
            .with_opener(fake(|| testing::fake_nrf52(0)));
        let out = f.flash(&image).await.unwrap();
        let FlashOutcome::Locked { detail: reason } = out else {
            panic!("{out:?}")
        };
        assert!(reason.contains("erase_all"), "{reason}");
        assert_eq!(*switch.0.lock().unwrap(), vec![true, false]);
        let log = std::fs::read_to_string(dir.path().join("flash.log")).unwrap();
        let sha = hex::encode(Sha256::digest(vec![0x5a; 512]));
        for want in [
            NOBODY,
            CHIP,
            &format!("sha256={sha}"),
            "segment 0: 0x00000000..0x00000200 (512 bytes) in flash",
            "attaching started",
            "attaching failed",
            "outcome: refused",
        ] {
            assert!(log.contains(want), "`{want}` missing from\n{log}");
        }
    }

    #[tokio::test]
    async fn failures_on_the_rig_side_are_instrument_errors() {
        let dir = tempfile::tempdir().unwrap();
        let image = bin(dir.path(), 512);
        let clock = Clock::start(1.0);
        // The fake attaches, then stops at the erase.
        let f = ProbeFlasher::new(NOBODY, CHIP, clock, dir.path())
            .unwrap()
            .with_opener(fake(|| testing::fake_nrf52(1)));
        match f.flash(&image).await {
            Err(RigError::Instrument { instrument, detail }) => {
                assert_eq!(instrument, "flasher");
                assert!(
                    detail.starts_with("erasing failed on nRF52840_xxAA"),
                    "{detail}"
                );
            }
            other => panic!("{other:?}"),
        }
        // probe-rs panics inside: still an instrument error.
        let f = ProbeFlasher::new(NOBODY, CHIP, clock, dir.path())
            .unwrap()
            .with_opener(fake(testing::fake_without_answers));
        match f.flash(&image).await {
            Err(RigError::Instrument { detail, .. }) => {
                assert!(
                    detail.starts_with("probe library failed while attaching"),
                    "{detail}"
                )
            }
            other => panic!("{other:?}"),
        }
        // Over USB: this machine has no such probe.
        let f = ProbeFlasher::new(NOBODY, CHIP, clock, dir.path()).unwrap();
        let e = f.flash(&image).await.unwrap_err();
        assert!(matches!(e, RigError::Instrument { .. }), "{e:?}");
        assert!(e.to_string().contains(NOBODY), "{e}");
        // A missing image file.
        let e = f.flash(&dir.path().join("none.hex")).await.unwrap_err();
        assert!(matches!(e, RigError::Config(_)), "{e:?}");
        let log = std::fs::read_to_string(dir.path().join("flash.log")).unwrap();
        assert_eq!(log.matches("attempt at device").count(), 4, "{log}");
        assert!(log.contains("outcome: error: erasing failed"), "{log}");
        assert!(log.contains("opening the probe failed"), "{log}");
    }

    #[tokio::test]
    async fn an_image_that_does_not_fit_is_a_configuration_error() {
        let dir = tempfile::tempdir().unwrap();
        // 1 MiB + 1 byte at 0: one byte too many for the nRF52840's flash.
        let image = bin(dir.path(), 0x10_0001);
        let f = ProbeFlasher::new(NOBODY, CHIP, Clock::start(1.0), dir.path())
            .unwrap()
            .with_opener(fake(testing::fake_without_answers));
        let e = f.flash(&image).await.unwrap_err();
        let RigError::Config(msg) = e else {
            panic!("{e:?}")
        };
        assert!(
            msg.contains("runs 1 byte past the end of flash region"),
            "{msg}"
        );
        let log = std::fs::read_to_string(dir.path().join("flash.log")).unwrap();
        assert!(!log.contains("opening the probe"), "{log}");
    }

    #[tokio::test]
    async fn the_debug_port_reports_locked_open_or_a_rig_fault() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::start(1.0);
        let port = |opener: fn() -> Probe| {
            ProbeDebugPort::new(NOBODY, CHIP, clock, dir.path())
                .unwrap()
                .with_opener(fake(opener))
        };
        let DebugAccess::Locked { detail } =
            port(|| testing::fake_nrf52(0)).probe(256).await.unwrap()
        else {
            panic!()
        };
        assert!(detail.contains("erase_all"), "{detail}");
        let DebugAccess::Open { idcode, flash_read } =
            port(|| testing::fake_nrf52(1)).probe(256).await.unwrap()
        else {
            panic!()
        };
        assert_eq!(flash_read, vec![0u8; 256]);
        assert!(idcode.starts_with("unavailable"), "{idcode}");
        let e = port(testing::fake_without_answers)
            .probe(256)
            .await
            .unwrap_err();
        assert!(
            matches!(e, RigError::Instrument { ref instrument, .. } if instrument == "debug_port"),
            "{e:?}"
        );
        let usb = ProbeDebugPort::new(NOBODY, CHIP, clock, dir.path()).unwrap();
        assert!(matches!(
            usb.probe(16).await,
            Err(RigError::Instrument { .. })
        ));
        assert!(matches!(
            usb.probe(MAX_PROBE + 1).await,
            Err(RigError::Config(_))
        ));
        let log = std::fs::read_to_string(dir.path().join("debug.log")).unwrap();
        assert_eq!(log.matches("check at device").count(), 4, "{log}");
        assert!(log.contains("outcome: locked"), "{log}");
        let zeros = hex::encode(Sha256::digest(vec![0u8; 256]));
        assert!(
            log.contains(&format!("read 256 bytes at 0x00000000, sha256 {zeros}")),
            "{log}"
        );
    }
}

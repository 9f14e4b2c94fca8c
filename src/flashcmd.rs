//! `redrig flash` and `redrig scan`, and the probe items of `redrig doctor`.
//!
//! `redrig flash` writes an image (ELF, Intel HEX or BIN) through the debug probe
//! and chip of the rig file's `instruments.flasher` (or `--probe`/`--chip`), with
//! [`redrig_hardware::probe`]: the image is checked against the chip's memory map
//! before the probe is touched, then erased, programmed, verified and the core
//! reset, each phase shown as it goes. A rig whose flasher is a bootloader drive gets
//! the image copied to the drive instead. The watch must be powered (`redrig power
//! on`): the tool does not switch the supply. When it writes through the rig file's
//! instruments it holds the rig's run lock (a bench a run holds is refused, exit 2);
//! `--check` touches nothing and takes no lock.
//!
//! Exit codes: 0 written (or, with `--check`, the image fits), 1 the device refused
//! (its debug port is locked, or its bootloader said no), 2 a rig fault (no probe,
//! no answer from the chip, a write that did not verify), 3 a configuration or image
//! error (unknown chip, unreadable image, an image that does not fit).

use crate::config::{FlasherConfig, LoadedRig};
use crate::verdict::exit;
use redrig_hardware::probe::{
    self as hw, FlashOptions, FlashPhase, FlashProgressEvent, ImageFormat, ImageOptions,
    PhaseState, ProbeError, ProbeSelector,
};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// What `redrig flash` was asked to do.
#[derive(Debug, Clone)]
pub struct FlashRequest {
    /// The image; `None`: the device profile's firmware image.
    pub image: Option<PathBuf>,
    pub rig: PathBuf,
    pub dut: Option<String>,
    /// Probe selector and chip instead of the rig file's.
    pub probe: Option<String>,
    pub chip: Option<String>,
    /// Load address of a BIN image (default: the start of the chip's flash).
    pub base: Option<u64>,
    pub erase_all: bool,
    pub verify: bool,
    pub reset: bool,
    /// Only check the image against the chip's memory map.
    pub check_only: bool,
}

enum Via {
    Probe { selector: String, chip: String },
    Drive(PathBuf),
}

/// `redrig flash`.
pub async fn flash(req: FlashRequest) -> i32 {
    // The rig file is read only when it is needed: for the probe and chip, or for
    // the profile's image.
    let need_rig = req.image.is_none() || req.probe.is_none() || req.chip.is_none();
    let loaded: Option<LoadedRig> = if need_rig {
        match crate::config::load_rig(&req.rig, req.dut.as_deref()) {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("{e}");
                return exit::USAGE;
            }
        }
    } else {
        None
    };
    let image = match (&req.image, &loaded) {
        (Some(i), _) => i.clone(),
        (None, Some(l)) => l.firmware_image(),
        (None, None) => unreachable!("the rig is loaded when no image is given"),
    };
    let via = match (&req.probe, &req.chip, &loaded) {
        (Some(p), Some(c), _) => Via::Probe {
            selector: p.clone(),
            chip: c.clone(),
        },
        (p, c, Some(l)) => match &l.rig.instruments.flasher {
            FlasherConfig::ProbeRs { probe, chip } => Via::Probe {
                selector: p.clone().unwrap_or_else(|| probe.clone()),
                chip: c.clone().unwrap_or_else(|| chip.clone()),
            },
            FlasherConfig::Drive { path } => match path {
                crate::config::PortRef::Real(d) if p.is_none() && c.is_none() => {
                    Via::Drive(PathBuf::from(d))
                }
                crate::config::PortRef::Real(_) => {
                    eprintln!("the rig's flasher is a bootloader drive: give both --probe and --chip to write through a probe");
                    return exit::USAGE;
                }
                crate::config::PortRef::Lab(_) => {
                    eprintln!(
                        "rig `{}` is virtual: its flash drive belongs to the lab; start it with `redrig lab up --rig {}` and use its `flash FILE` command, or give --probe and --chip",
                        l.rig.rig.name,
                        l.rig_path.display()
                    );
                    return exit::USAGE;
                }
            },
        },
        _ => unreachable!("the rig is loaded when --probe or --chip is missing"),
    };
    // Nobody flashes a watch under a running job: with a rig file, hold its lock
    // (a check of the image alone touches nothing and needs none).
    let _lock = match &loaded {
        Some(l) if !req.check_only => match crate::bench::lock_rig(l) {
            Ok(lock) => Some(lock),
            Err(c) => return c,
        },
        _ => None,
    };
    match via {
        Via::Drive(drive) => flash_drive(&drive, &image).await,
        Via::Probe { selector, chip } => flash_probe(&req, &selector, &chip, &image).await,
    }
}

async fn flash_drive(drive: &Path, image: &Path) -> i32 {
    use crate::drivers::{FlashOutcome, Flasher};
    let clock = crate::clock::Clock::start(1.0);
    let evidence = crate::bench::evidence_dir(None);
    let flasher = match crate::drivers::flash_drive::DriveFlasher::open(drive, clock, &evidence) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("flash: {e}");
            return exit::INCONCLUSIVE;
        }
    };
    eprintln!(
        "copying {} to the bootloader drive {} (evidence in {})",
        image.display(),
        drive.display(),
        evidence.display()
    );
    match flasher.flash(image).await {
        Ok(FlashOutcome::Written { version, sha256 }) => {
            println!("written: version {version}, sha256 {sha256}");
            exit::PASS
        }
        Ok(FlashOutcome::Refused { reason }) => {
            println!("the bootloader refused the image: {reason}");
            exit::DEVICE_FAIL
        }
        Ok(FlashOutcome::Locked { detail }) => {
            println!("the device refused debug access: {detail}");
            exit::DEVICE_FAIL
        }
        Err(e) => {
            eprintln!("flash: {e}");
            exit::INCONCLUSIVE
        }
    }
}

fn hex(a: u64) -> String {
    format!("{a:#010x}")
}

/// Exit code for a probe error: config 3, locked 1, rig fault 2.
fn code_of(e: &ProbeError) -> i32 {
    if e.is_config() {
        exit::USAGE
    } else if e.is_locked() {
        exit::DEVICE_FAIL
    } else {
        exit::INCONCLUSIVE
    }
}

async fn flash_probe(req: &FlashRequest, selector: &str, chip: &str, image: &Path) -> i32 {
    let chip_info = match hw::lookup_chip(chip) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("flash: {e}");
            return exit::USAGE;
        }
    };
    // A BIN image without --base goes to the start of the main flash.
    let opts = ImageOptions {
        format: None,
        bin_base: req.base,
    };
    let img = match crate::drivers::flash_probe::read_image(image, &chip_info, opts) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("flash: {}: {e}", image.display());
            return exit::USAGE;
        }
    };
    if img.format == ImageFormat::Bin && req.base.is_none() {
        if let Some(m) = chip_info.main_flash() {
            eprintln!("a BIN image without --base: placed at the start of {m}");
        }
    }
    println!(
        "image {} ({}, {} bytes in {} segment(s), sha256 {})",
        image.display(),
        img.format.name(),
        img.data_len(),
        img.segments.len(),
        img.sha256
    );
    match hw::check_fits(&chip_info, &img) {
        Ok(fit) => {
            for s in &fit.segments {
                let regions: Vec<String> = s.regions.iter().map(|r| r.to_string()).collect();
                println!(
                    "  segment {} {}..{} in {}",
                    s.index,
                    hex(s.range.start),
                    hex(s.range.end),
                    regions.join(" + ")
                );
            }
            println!("fits the flash of {}", chip_info.name);
        }
        Err(e) => {
            eprintln!("flash: the image does not fit {}: {e}", chip_info.name);
            return exit::USAGE;
        }
    }
    if req.check_only {
        return exit::PASS;
    }
    let sel = match ProbeSelector::parse(selector) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("flash: {e}");
            return exit::USAGE;
        }
    };
    let fopts = FlashOptions {
        erase_all: req.erase_all,
        verify: req.verify,
        reset_after: req.reset,
    };
    let tty = std::io::stderr().is_terminal();
    let result = tokio::task::spawn_blocking(move || {
        let mut bar = ProgressBar { tty, last: None };
        hw::flash_with_selector(&sel, &chip_info, &img, fopts, &mut |e| bar.show(&e))
    })
    .await;
    match result {
        Ok(Ok(report)) => {
            for p in &report.phases {
                println!(
                    "  {:<28} {:>8.2} s {:>9} bytes {}",
                    p.phase.to_string(),
                    p.duration.as_secs_f64(),
                    p.bytes,
                    if p.ok { "ok" } else { "FAILED" }
                );
            }
            if let Some(e) = &report.reset_error {
                println!("  reset failed (the image is written): {e}");
            }
            println!(
                "written: {} bytes to {} in {:.2} s; verified: {}; reset: {}",
                report.bytes,
                report.chip,
                report.total.as_secs_f64(),
                if report.verified { "yes" } else { "no" },
                if report.reset { "yes" } else { "no" }
            );
            exit::PASS
        }
        Ok(Err(e)) => {
            eprintln!("flash: {e}");
            code_of(&e)
        }
        Err(e) => {
            eprintln!("flash: the flashing task failed: {e}");
            exit::INCONCLUSIVE
        }
    }
}

/// Phases as lines; on a terminal, a bar redrawn in place.
struct ProgressBar {
    tty: bool,
    last: Option<(FlashPhase, u64)>,
}

impl ProgressBar {
    fn show(&mut self, e: &FlashProgressEvent) {
        match e.state {
            PhaseState::Started => eprintln!("{} …", e.phase),
            PhaseState::Progress if self.tty => {
                let pct = e.total.filter(|t| *t > 0).map(|t| e.done * 100 / t);
                // Redraw at most once per percent.
                let key = (e.phase, pct.unwrap_or(e.done / 4096));
                if self.last == Some(key) {
                    return;
                }
                self.last = Some(key);
                match pct {
                    Some(p) => {
                        let filled = (p.min(100) / 4) as usize;
                        eprint!(
                            "\r  [{}{}] {p:>3}% {} bytes",
                            "#".repeat(filled),
                            " ".repeat(25 - filled),
                            e.done
                        );
                    }
                    None => eprint!("\r  {} bytes", e.done),
                }
            }
            PhaseState::Progress => {}
            PhaseState::Finished => {
                if self.tty {
                    eprintln!();
                }
                eprintln!("{} done ({} bytes)", e.phase, e.done);
            }
            PhaseState::Failed => {
                if self.tty {
                    eprintln!();
                }
                eprintln!("{} FAILED", e.phase);
            }
        }
    }
}

/// `redrig scan`: the attached probes and serial adapters as a rig-file fragment.
pub async fn scan(json: bool) -> i32 {
    let map = tokio::task::spawn_blocking(|| {
        let probes = hw::list_probes()
            .into_iter()
            .map(|p| crate::hwmap::ProbeEntry {
                selector: p.selector,
                name: if p.accessible {
                    format!("{} ({})", p.identifier, p.kind)
                } else {
                    format!(
                        "{} ({}; this user may not open it: udev rules, rig-hardware/udev/)",
                        p.identifier, p.kind
                    )
                },
            })
            .collect();
        crate::hwmap::HardwareMap::scan(probes)
    })
    .await;
    match map {
        Ok(map) => {
            if json {
                println!("{}", crate::hwmap::render_json(&map));
            } else {
                print!("{}", crate::hwmap::render_yaml(&map));
            }
            exit::PASS
        }
        Err(e) => {
            eprintln!("scan failed: {e}");
            exit::INCONCLUSIVE
        }
    }
}

/// The probe items of `redrig doctor` for `instruments.<what>`: the chip is known,
/// the probe is attached and may be opened, and (for the flasher) the image fits.
/// `add(item, ok, detail)`: `Some(true)` OK, `Some(false)` FAIL, `None` a warning.
/// The target is not attached: the doctor does not halt or reset the watch.
pub fn doctor_probe(
    what: &str,
    probe: &str,
    chip: &str,
    image: Option<&Path>,
    add: &mut dyn FnMut(String, Option<bool>, String),
) {
    let chip_info = match hw::lookup_chip(chip) {
        Ok(c) => {
            let flash: Vec<String> = c.flash.iter().map(|r| r.to_string()).collect();
            add(
                format!("chip {what}"),
                Some(true),
                format!("{} known (flash {})", c.name, flash.join(", ")),
            );
            Some(c)
        }
        Err(e) => {
            add(format!("chip {what}"), Some(false), e.to_string());
            None
        }
    };
    match ProbeSelector::parse(probe) {
        Err(e) => add(format!("probe {what}"), Some(false), e.to_string()),
        Ok(sel) => {
            let listed = hw::list_probes();
            let matching: Vec<&hw::ProbeInfo> = listed.iter().filter(|p| sel.matches(p)).collect();
            match matching.as_slice() {
                [] => add(
                    format!("probe {what}"),
                    Some(false),
                    if listed.is_empty() {
                        format!("{probe} is not connected (no probe is)")
                    } else {
                        let all: Vec<&str> = listed.iter().map(|p| p.selector.as_str()).collect();
                        format!("{probe} is not connected (connected: {})", all.join(", "))
                    },
                ),
                [p] if !p.accessible => add(
                    format!("probe {what}"),
                    Some(false),
                    format!("{} is attached but this user may not open it: install rig-hardware/udev/99-redrig.rules or join the plugdev group", p.selector),
                ),
                [p] => add(
                    format!("probe {what}"),
                    Some(true),
                    format!("{} attached ({}, {})", p.selector, p.identifier, p.kind),
                ),
                many => {
                    let all: Vec<&str> = many.iter().map(|p| p.selector.as_str()).collect();
                    add(
                        format!("probe {what}"),
                        Some(false),
                        format!("{probe} matches {} probes ({}): add the serial number", many.len(), all.join(", ")),
                    )
                }
            }
        }
    }
    if let (Some(image), Some(chip_info)) = (image, chip_info) {
        let item = format!("image {what}");
        match crate::drivers::flash_probe::read_image(image, &chip_info, ImageOptions::default()) {
            Err(e) => add(item, Some(false), format!("{}: {e}", image.display())),
            Ok(img) => match hw::check_fits(&chip_info, &img) {
                Ok(fit) => add(
                    item,
                    Some(true),
                    format!(
                        "{} ({}, {} bytes) fits the flash of {}",
                        image.display(),
                        img.format.name(),
                        fit.bytes,
                        chip_info.name
                    ),
                ),
                Err(e) => add(item, Some(false), format!("{}: {e}", image.display())),
            },
        }
    }
}

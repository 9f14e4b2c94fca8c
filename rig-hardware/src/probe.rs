//! Flashing and debug-port access of a real watch through a debug probe, with the
//! probe-rs library.
//!
//! What is here:
//!
//! - [`ProbeSelector`]: the `VID:PID[:SERIAL]` string naming one USB debug probe, and
//!   [`list_probes`] for what is plugged in. Built without probe-rs's `cmsisdap_v1`
//!   feature (it needs hidapi and libudev): CMSIS-DAP v2, J-Link, ST-Link, FTDI and
//!   ESP USB-JTAG probes work, CMSIS-DAP v1 (HID-only) probes are not seen.
//! - [`lookup_chip`]: a probe-rs chip name (exactly, e.g. `nRF52840_xxAA`) to its
//!   family, cores, flash (NVM) and RAM regions. An unknown or partial name is a
//!   [`ChipError`] listing close names.
//! - [`load_image`] / [`parse_image`]: ELF, Intel HEX or raw BIN (with a base address)
//!   into address-tagged [`Segment`]s with the file's SHA-256. Broken or hostile files
//!   are errors, never panics; files over [`MAX_IMAGE_BYTES`] are refused unread.
//! - [`check_fits`]: every segment lies entirely in the chip's flash, checked against
//!   the chip's memory map here and by probe-rs's own flash loader.
//! - [`flash`]: write an image through an opened [`Probe`] (or [`flash_with_selector`]),
//!   with progress events and a report of the phases' durations.
//! - [`debug_access`]: whether the debug port lets a probe read flash.
//!
//! Every call into probe-rs runs under `catch_unwind`: a panic in the library (some of
//! its paths still contain `todo!()`) becomes [`ProbeError::Library`] and never takes the
//! rig down. probe-rs calls are blocking; callers in async code run them on a blocking
//! thread.
//!
//! Locked devices: the rig never unlocks a device. Sessions are opened *without*
//! probe-rs's erase-all permission, so a chip whose debug port is protected (nRF52
//! APPROTECT, for instance) answers "missing permission: erase_all" and is reported as
//! [`ProbeError::Locked`] (the device's answer) instead of being mass-erased.
//!
//! A target that does not answer at all is reported as [`ProbeError::NoTarget`], a rig
//! fault: a debug port disabled for good (STM32 RDP level 2, eFuse-disabled JTAG)
//! cannot be told from a cable that is not connected or a watch without power, so the
//! rig does not claim it as the device's answer.
//!
//! A FAULT answer from the target, at attach or later, also counts as the chip's
//! refusal ([`ProbeError::Locked`]); a timeout counts as silence only while attaching
//! and as a failed phase afterwards.
//!
//! Not implemented: RAM-loaded images (segments in RAM are refused by [`check_fits`]),
//! UF2 files, keeping the bytes of a partly written flash sector (they are left
//! erased), multi-drop SWD, JTAG scan-chain configuration, attaching under reset,
//! choosing among several flash algorithms, and big-endian targets for
//! [`debug_access`] (bytes are read as little-endian words).
//!
//! Tested without hardware only: with probe-rs's `FakeProbe` ([`testing`]), which
//! answers an nRF52's protection register and reads flash as zeros but cannot run a
//! flash algorithm (flashing on it stops at the start of the erase), and with
//! synthetic probe-rs errors. No physical probe has run this code in the project's
//! tests.

use probe_rs::architecture::arm::dp::{DpAccess, DpAddress, DPIDR};
use probe_rs::architecture::arm::{ArmError, DapError};
use probe_rs::config::{MemoryRegion, Registry};
use probe_rs::flashing::{
    DownloadOptions, FlashError, FlashProgress, ProgressEvent, ProgressOperation,
};
use probe_rs::probe::list::{Accessibility, Lister};
use probe_rs::probe::{DebugProbeError, DebugProbeSelector, ProbeCreationError};
use probe_rs::{MemoryInterface, Permissions, Session, Target};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Read;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use probe_rs::probe::Probe;

/// Largest image file read (64 MiB); larger files are refused before reading.
pub const MAX_IMAGE_BYTES: u64 = 64 * 1024 * 1024;
/// Most separate pieces (segments after merging touching Intel HEX records) an
/// image may have.
pub const MAX_SEGMENTS: usize = 65_536;
/// Largest read [`debug_access`] performs (16 MiB).
pub const MAX_DEBUG_READ: usize = 16 * 1024 * 1024;
/// Most chip names a [`ChipError`] suggests.
pub const MAX_SUGGESTIONS: usize = 10;

// ---------------------------------------------------------------------------------
// Panics in the library.

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic without a message".into()
    }
}

/// Run `f`, turning a panic into [`ProbeError::Library`] naming `step`.
fn guarded<T>(step: &str, f: impl FnOnce() -> Result<T, ProbeError>) -> Result<T, ProbeError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => Err(ProbeError::Library {
            step: step.to_string(),
            detail: panic_text(&*p),
        }),
    }
}

// ---------------------------------------------------------------------------------
// Probe selection.

/// One USB debug probe: `VID:PID[:SERIAL]`, VID and PID in hex (1–4 digits). The
/// serial may itself contain colons (ESP USB-JTAG probes use their MAC address).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProbeSelector {
    pub vid: u16,
    pub pid: u16,
    pub serial: Option<String>,
}

/// A probe selector that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid probe `{input}`: {reason} (expected VID:PID[:SERIAL] with hex VID and PID, e.g. 1366:1015:000683456789)")]
pub struct SelectorError {
    /// The text given (control characters replaced, at most 120 characters).
    pub input: String,
    pub reason: String,
}

/// Longest serial accepted.
const MAX_SERIAL: usize = 128;

fn shown(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

impl FromStr for ProbeSelector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| SelectorError {
            input: shown(s, 120),
            reason: reason.to_string(),
        };
        let s_trim = s.trim();
        let mut parts = s_trim.splitn(3, ':');
        let hex = |p: Option<&str>, what: &str| -> Result<u16, SelectorError> {
            let p = p.ok_or_else(|| err(&format!("no {what}")))?;
            if p.is_empty() || p.len() > 4 || !p.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(err(&format!(
                    "{what} `{}` is not 1-4 hex digits",
                    shown(p, 20)
                )));
            }
            u16::from_str_radix(p, 16).map_err(|e| err(&format!("{what}: {e}")))
        };
        let vid = hex(parts.next(), "VID")?;
        let pid = hex(parts.next(), "PID")?;
        let serial = match parts.next() {
            None => None,
            Some("") => return Err(err("the serial after the second colon is empty")),
            Some(sn) if sn.len() > MAX_SERIAL => {
                return Err(err(&format!(
                    "the serial is longer than {MAX_SERIAL} bytes"
                )))
            }
            Some(sn) if sn.chars().any(|c| c.is_control() || c.is_whitespace()) => {
                return Err(err("the serial contains spaces or control characters"))
            }
            Some(sn) => Some(sn.to_string()),
        };
        Ok(ProbeSelector { vid, pid, serial })
    }
}

impl fmt::Display for ProbeSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:04x}", self.vid, self.pid)?;
        if let Some(sn) = &self.serial {
            write!(f, ":{sn}")?;
        }
        Ok(())
    }
}

impl ProbeSelector {
    /// Parse `VID:PID[:SERIAL]`.
    pub fn parse(s: &str) -> Result<ProbeSelector, SelectorError> {
        s.parse()
    }

    fn to_probe_rs(&self) -> DebugProbeSelector {
        DebugProbeSelector {
            vendor_id: self.vid,
            product_id: self.pid,
            interface: None,
            serial_number: self.serial.clone(),
        }
    }

    /// Whether a listed probe is the one this selector names.
    pub fn matches(&self, probe: &ProbeInfo) -> bool {
        probe.vid == self.vid
            && probe.pid == self.pid
            && match &self.serial {
                None => true,
                Some(s) => probe.serial.as_deref() == Some(s.as_str()),
            }
    }
}

/// A debug probe seen on USB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeInfo {
    pub vid: u16,
    pub pid: u16,
    pub serial: Option<String>,
    /// The probe's product name as probe-rs reports it.
    pub identifier: String,
    /// The probe-rs driver that would open it (e.g. `J-Link`, `ST-Link`, `CMSIS-DAP`).
    pub kind: String,
    /// False when the USB device node exists but this user may not open it (udev rules).
    pub accessible: bool,
    /// The selector naming exactly this probe (`VID:PID[:SERIAL]`).
    pub selector: String,
}

/// The debug probes on USB. Empty, never a panic, when USB cannot be read (no
/// `/sys/bus/usb`, a container, a library failure).
pub fn list_probes() -> Vec<ProbeInfo> {
    let listed = guarded("listing probes", || {
        Ok(Lister::new()
            .list_all_with_access()
            .into_iter()
            .map(|item| {
                let info = item.info;
                let sel = ProbeSelector {
                    vid: info.vendor_id,
                    pid: info.product_id,
                    serial: info.serial_number.clone().filter(|s| !s.is_empty()),
                };
                ProbeInfo {
                    vid: info.vendor_id,
                    pid: info.product_id,
                    serial: info.serial_number.clone(),
                    identifier: info.identifier.clone(),
                    kind: info.probe_type(),
                    accessible: item.accessibility == Accessibility::Accessible,
                    selector: sel.to_string(),
                }
            })
            .collect::<Vec<_>>())
    });
    listed.unwrap_or_default()
}

/// Open the probe named by `selector`.
///
/// Errors: [`ProbeError::ProbeNotFound`] (with the probes that are connected) or
/// [`ProbeError::ProbeOpen`] (present but cannot be opened: permissions, in use).
pub fn open_probe(selector: &ProbeSelector) -> Result<Probe, ProbeError> {
    let sel = selector.to_probe_rs();
    let opened = guarded("opening the probe", || Ok(Lister::new().open(sel.clone())))?;
    match opened {
        Ok(p) => Ok(p),
        Err(DebugProbeError::ProbeCouldNotBeCreated(ProbeCreationError::NotFound)) => {
            Err(ProbeError::ProbeNotFound {
                selector: selector.to_string(),
                connected: list_probes().into_iter().map(|p| p.selector).collect(),
            })
        }
        Err(e) => {
            let listed = list_probes();
            let denied = listed.iter().any(|p| selector.matches(p) && !p.accessible);
            Err(ProbeError::ProbeOpen {
                selector: selector.to_string(),
                detail: if denied {
                    format!("{e} (permission denied on the USB device: install rig-hardware/udev/99-redrig.rules and add the user to the `plugdev` group)")
                } else {
                    error_chain(&e)
                },
            })
        }
    }
}

// ---------------------------------------------------------------------------------
// Chips.

/// A memory region of a chip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemRegion {
    /// The name in the target description (`FLASH`, `UICR`, `RAM`…), if any.
    pub name: Option<String>,
    pub range: Range<u64>,
    /// An alias of another region (the same cells at a second address).
    pub is_alias: bool,
}

impl MemRegion {
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.range.end.saturating_sub(self.range.start)
    }
    /// Whether the region has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for MemRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = &self.name {
            write!(f, "`{n}` ")?;
        }
        write!(f, "{:#010x}..{:#010x}", self.range.start, self.range.end)
    }
}

/// A core of a chip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChipCore {
    pub name: String,
    /// probe-rs's core type, e.g. `Armv7em` (Cortex-M4/M7), `Armv8m`, `Riscv`.
    pub kind: String,
}

/// What probe-rs knows of a chip.
#[derive(Clone)]
pub struct ChipInfo {
    /// The name as probe-rs spells it (e.g. `nRF52840_xxAA`).
    pub name: String,
    /// The chip family (e.g. `nRF52 Series`).
    pub family: String,
    pub cores: Vec<ChipCore>,
    /// Flash (NVM) regions, in the order of the target description.
    pub flash: Vec<MemRegion>,
    pub ram: Vec<MemRegion>,
    target: Target,
}

impl fmt::Debug for ChipInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChipInfo")
            .field("name", &self.name)
            .field("family", &self.family)
            .field("cores", &self.cores)
            .field("flash", &self.flash)
            .field("ram", &self.ram)
            .finish_non_exhaustive()
    }
}

impl ChipInfo {
    /// The region [`debug_access`] reads: the first flash region that is not an alias.
    pub fn main_flash(&self) -> Option<&MemRegion> {
        self.flash
            .iter()
            .find(|r| !r.is_alias)
            .or_else(|| self.flash.first())
    }
}

/// A chip name probe-rs does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChipError {
    #[error("unknown chip `{name}` (probe-rs chip names are exact, e.g. nRF52840_xxAA){}", suggestion_text(.suggestions))]
    Unknown {
        /// The name given (control characters replaced, at most 80 characters).
        name: String,
        /// The closest known names, best first (at most [`MAX_SUGGESTIONS`]).
        suggestions: Vec<String>,
    },
    /// The built-in target list could not be read (a library failure).
    #[error("the probe-rs chip list is unavailable: {0}")]
    Registry(String),
}

fn suggestion_text(s: &[String]) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", s.join(", "))
    }
}

fn registry() -> Result<&'static Registry, ChipError> {
    static REGISTRY: OnceLock<Result<Registry, String>> = OnceLock::new();
    REGISTRY
        .get_or_init(|| catch_unwind(Registry::from_builtin_families).map_err(|p| panic_text(&*p)))
        .as_ref()
        .map_err(|e| ChipError::Registry(e.clone()))
}

/// Every chip name probe-rs knows (variant names and their package names).
fn all_chip_names(reg: &Registry) -> Vec<&str> {
    reg.families()
        .iter()
        .flat_map(|f| f.variants.iter())
        .flat_map(|c| c.package_variants())
        .map(|s| s.as_str())
        .collect()
}

/// Whether two characters are often mistaken for each other when typing a part number.
fn confusable(a: char, b: char) -> bool {
    matches!(
        (a, b),
        ('o', '0') | ('0', 'o') | ('i', '1') | ('1', 'i') | ('l', '1') | ('1', 'l')
    )
}

/// Edit distance (in half steps) between `query` and the best prefix of `cand`, and
/// between `query` and all of `cand`. A lower-case `x` in `cand` is a wildcard (as in
/// probe-rs's names, e.g. `nRF52840_xxAA`); confusable characters cost half a step.
fn prefix_distance(query: &[char], cand: &str) -> (u32, u32) {
    let c: Vec<(char, bool)> = cand
        .chars()
        .map(|ch| (ch.to_ascii_lowercase(), ch == 'x'))
        .collect();
    let n = c.len();
    let mut prev: Vec<u32> = (0..=n as u32).map(|j| 2 * j).collect();
    let mut cur = vec![0u32; n + 1];
    for (i, &q) in query.iter().enumerate() {
        cur[0] = 2 * (i as u32 + 1);
        for j in 1..=n {
            let (ch, wild) = c[j - 1];
            let sub = if wild || ch == q {
                0
            } else if confusable(q, ch) {
                1
            } else {
                2
            };
            cur[j] = (prev[j - 1] + sub).min(prev[j] + 2).min(cur[j - 1] + 2);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    let best_prefix = prev.iter().copied().min().unwrap_or(0);
    (best_prefix, prev[n])
}

/// The known chip names closest to `name`, best first (at most `max`).
pub fn suggest_chips(name: &str, max: usize) -> Vec<String> {
    let Ok(reg) = registry() else {
        return Vec::new();
    };
    let query: Vec<char> = name
        .trim()
        .chars()
        .take(64)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if query.is_empty() {
        return Vec::new();
    }
    // Allow about one typo per four characters, at least one.
    let limit = 2 * (query.len() as u32 / 4).max(1);
    let mut scored: Vec<(u32, u32, &str)> = all_chip_names(reg)
        .into_iter()
        .filter_map(|cand| {
            let (p, full) = prefix_distance(&query, cand);
            (p <= limit).then_some((p, full, cand))
        })
        .collect();
    scored.sort();
    let mut out: Vec<String> = Vec::new();
    for (_, _, n) in scored {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(n)) {
            out.push(n.to_string());
        }
        if out.len() >= max {
            break;
        }
    }
    out
}

/// Look up a chip by its exact probe-rs name (case-insensitive; a lower-case `x` in
/// probe-rs's name matches any character, so `nRF52840_QIAA` finds `nRF52840_xxAA`).
/// A name that is only the start of a chip name is refused like an unknown one, with
/// the full names as suggestions.
pub fn lookup_chip(name: &str) -> Result<ChipInfo, ChipError> {
    let reg = registry()?;
    let unknown = || ChipError::Unknown {
        name: shown(name, 80),
        suggestions: suggest_chips(name, MAX_SUGGESTIONS),
    };
    let name = name.trim();
    if name.is_empty() || name.len() > 128 {
        return Err(unknown());
    }
    let found = catch_unwind(AssertUnwindSafe(|| reg.get_target_by_name(name)))
        .map_err(|p| ChipError::Registry(panic_text(&*p)))?;
    let target = match found {
        // probe-rs also accepts a unique prefix; the rig wants the whole name.
        Ok(t) if t.name.chars().count() == name.chars().count() => t,
        _ => return Err(unknown()),
    };
    let family = reg
        .families()
        .iter()
        .find(|f| {
            f.variants.iter().any(|c| {
                c.package_variants()
                    .any(|p| p.eq_ignore_ascii_case(&target.name))
            })
        })
        .map(|f| f.name.clone())
        .unwrap_or_default();
    let mut flash = Vec::new();
    let mut ram = Vec::new();
    for region in &target.memory_map {
        match region {
            MemoryRegion::Nvm(r) => flash.push(MemRegion {
                name: r.name.clone(),
                range: r.range.clone(),
                is_alias: r.is_alias,
            }),
            MemoryRegion::Ram(r) => ram.push(MemRegion {
                name: r.name.clone(),
                range: r.range.clone(),
                is_alias: r.is_alias,
            }),
            MemoryRegion::Generic(_) => {}
        }
    }
    Ok(ChipInfo {
        name: target.name.clone(),
        family,
        cores: target
            .cores
            .iter()
            .map(|c| ChipCore {
                name: c.name.clone(),
                kind: format!("{:?}", c.core_type),
            })
            .collect(),
        flash,
        ram,
        target,
    })
}

// ---------------------------------------------------------------------------------
// Images.

/// Firmware image file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    Elf,
    IntelHex,
    /// Raw bytes, placed at a base address given separately.
    Bin,
}

impl ImageFormat {
    /// `elf`, `hex` / `ihex` / `intelhex`, `bin` / `binary` (case-insensitive).
    pub fn parse(s: &str) -> Option<ImageFormat> {
        Some(match s.to_ascii_lowercase().as_str() {
            "elf" => ImageFormat::Elf,
            "hex" | "ihex" | "intelhex" => ImageFormat::IntelHex,
            "bin" | "binary" => ImageFormat::Bin,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Elf => "ELF",
            ImageFormat::IntelHex => "Intel HEX",
            ImageFormat::Bin => "BIN",
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How to read an image file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImageOptions {
    /// The format; `None` detects it from the ELF magic, the file name's extension
    /// (`.elf`/`.axf`/`.out`, `.hex`/`.ihex`/`.ihx`, `.bin`) or Intel HEX text.
    pub format: Option<ImageFormat>,
    /// Where a BIN image starts. Required for BIN; a file whose format cannot be told
    /// otherwise is taken as BIN when this is given.
    pub bin_base: Option<u64>,
}

/// Bytes to be written at an address.
#[derive(Clone, PartialEq, Eq)]
pub struct Segment {
    pub address: u64,
    pub data: Vec<u8>,
}

impl Segment {
    /// The addresses the segment covers (`address..address + len`).
    pub fn range(&self) -> Range<u64> {
        self.address..self.address.saturating_add(self.data.len() as u64)
    }
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Segment({:#010x}..{:#010x}, {} bytes)",
            self.address,
            self.range().end,
            self.data.len()
        )
    }
}

/// A firmware image, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub format: ImageFormat,
    /// Sorted by address, not overlapping. Contiguous Intel HEX records are merged.
    pub segments: Vec<Segment>,
    /// SHA-256 of the file's bytes, lower-case hex.
    pub sha256: String,
    /// Size of the file.
    pub file_len: u64,
}

impl Image {
    /// Bytes to be written (sum of the segments).
    pub fn data_len(&self) -> u64 {
        self.segments.iter().map(|s| s.data.len() as u64).sum()
    }
}

/// An image that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("image {path}: {detail}")]
    Io { path: String, detail: String },
    #[error("image is {len} bytes, more than the {max} bytes allowed")]
    TooLarge { len: u64, max: u64 },
    #[error("cannot tell the image format{}: name the file .elf, .hex or .bin, or give the format (and a base address for BIN)", .file.as_deref().map(|f| format!(" of {f}")).unwrap_or_default())]
    UnknownFormat { file: Option<String> },
    #[error("a BIN image needs a base address")]
    NoBinBase,
    #[error("not a usable ELF file: {0}")]
    Elf(String),
    #[error("Intel HEX line {line}: {detail}")]
    Hex { line: usize, detail: String },
    #[error("the image has no bytes to write")]
    Empty,
    #[error("image data overlaps: {:#010x}..{:#010x} and {:#010x}..{:#010x}", .first.start, .first.end, .second.start, .second.end)]
    Overlap {
        first: Range<u64>,
        second: Range<u64>,
    },
    #[error(
        "image data at {address:#x} ({len} bytes) runs past the end of the 64-bit address space"
    )]
    AddressOverflow { address: u64, len: u64 },
    #[error("the image is split into more than {max} separate pieces")]
    TooManySegments { max: usize },
    #[error("image parser failed: {0}")]
    Library(String),
}

/// Read and parse an image file (at most [`MAX_IMAGE_BYTES`]).
pub fn load_image(path: &Path, opts: &ImageOptions) -> Result<Image, ImageError> {
    let io = |e: std::io::Error| ImageError::Io {
        path: path.display().to_string(),
        detail: e.to_string(),
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    if len > MAX_IMAGE_BYTES {
        return Err(ImageError::TooLarge {
            len,
            max: MAX_IMAGE_BYTES,
        });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    f.take(MAX_IMAGE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    parse_image(&bytes, name.as_deref(), opts)
}

/// The format of `bytes`, from the ELF magic, `file_name`'s extension, or Intel HEX
/// text (a first record starting with `:` and only hex digits and line breaks).
pub fn detect_format(bytes: &[u8], file_name: Option<&str>) -> Option<ImageFormat> {
    if bytes.starts_with(b"\x7fELF") {
        return Some(ImageFormat::Elf);
    }
    let ext = file_name
        .and_then(|n| n.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("elf" | "axf" | "out") => return Some(ImageFormat::Elf),
        Some("hex" | "ihex" | "ihx") => return Some(ImageFormat::IntelHex),
        Some("bin") => return Some(ImageFormat::Bin),
        _ => {}
    }
    let text = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let first = text.iter().position(|b| !b.is_ascii_whitespace());
    if let Some(i) = first {
        if text[i] == b':'
            && text
                .iter()
                .all(|&b| b == b':' || b.is_ascii_hexdigit() || b.is_ascii_whitespace())
        {
            return Some(ImageFormat::IntelHex);
        }
    }
    None
}

/// Parse image bytes. `file_name` helps detect the format.
pub fn parse_image(
    bytes: &[u8],
    file_name: Option<&str>,
    opts: &ImageOptions,
) -> Result<Image, ImageError> {
    if bytes.len() as u64 > MAX_IMAGE_BYTES {
        return Err(ImageError::TooLarge {
            len: bytes.len() as u64,
            max: MAX_IMAGE_BYTES,
        });
    }
    let format = match opts.format.or_else(|| detect_format(bytes, file_name)) {
        Some(f) => f,
        None if opts.bin_base.is_some() => ImageFormat::Bin,
        None => {
            return Err(ImageError::UnknownFormat {
                file: file_name.map(|n| shown(n, 120)),
            })
        }
    };
    let parsed = catch_unwind(AssertUnwindSafe(|| match format {
        ImageFormat::Elf => parse_elf(bytes),
        ImageFormat::IntelHex => parse_hex(bytes),
        ImageFormat::Bin => {
            let base = opts.bin_base.ok_or(ImageError::NoBinBase)?;
            if bytes.is_empty() {
                return Err(ImageError::Empty);
            }
            base.checked_add(bytes.len() as u64)
                .ok_or(ImageError::AddressOverflow {
                    address: base,
                    len: bytes.len() as u64,
                })?;
            Ok(vec![Segment {
                address: base,
                data: bytes.to_vec(),
            }])
        }
    }))
    .map_err(|p| ImageError::Library(panic_text(&*p)))??;
    if parsed.iter().all(|s| s.data.is_empty()) {
        return Err(ImageError::Empty);
    }
    Ok(Image {
        format,
        segments: parsed,
        sha256: hex::encode(Sha256::digest(bytes)),
        file_len: bytes.len() as u64,
    })
}

/// Sort `chunks` by address, refuse overlaps, and (if `merge`) join touching chunks.
fn coalesce(mut chunks: Vec<Segment>, merge: bool) -> Result<Vec<Segment>, ImageError> {
    chunks.retain(|c| !c.data.is_empty());
    for c in &chunks {
        c.address
            .checked_add(c.data.len() as u64)
            .ok_or(ImageError::AddressOverflow {
                address: c.address,
                len: c.data.len() as u64,
            })?;
    }
    chunks.sort_by_key(|c| c.address);
    let mut out: Vec<Segment> = Vec::with_capacity(chunks.len());
    for c in chunks {
        if let Some(last) = out.last_mut() {
            let end = last.range().end;
            if c.address < end {
                return Err(ImageError::Overlap {
                    first: last.range(),
                    second: c.range(),
                });
            }
            if merge && c.address == end {
                last.data.extend_from_slice(&c.data);
                continue;
            }
        }
        out.push(c);
    }
    Ok(out)
}

fn parse_hex(bytes: &[u8]) -> Result<Vec<Segment>, ImageError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ImageError::Hex {
        line: 0,
        detail: format!("not text: {e}"),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut base: u64 = 0;
    let mut chunks: Vec<Segment> = Vec::new();
    let mut eof = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let record = ihex::Record::from_record_string(line).map_err(|e| ImageError::Hex {
            line: i + 1,
            detail: e.to_string(),
        })?;
        match record {
            ihex::Record::Data { offset, value } => {
                let address = base + u64::from(offset);
                match chunks.last_mut() {
                    // Consecutive records continue one chunk (the common case).
                    Some(last) if last.range().end == address => {
                        last.data.extend_from_slice(&value);
                        continue;
                    }
                    _ => {}
                }
                if chunks.len() >= MAX_SEGMENTS {
                    return Err(ImageError::TooManySegments { max: MAX_SEGMENTS });
                }
                chunks.push(Segment {
                    address,
                    data: value,
                });
            }
            ihex::Record::ExtendedSegmentAddress(a) => base = u64::from(a) * 16,
            ihex::Record::ExtendedLinearAddress(a) => base = u64::from(a) << 16,
            ihex::Record::StartSegmentAddress { .. } | ihex::Record::StartLinearAddress(_) => {}
            ihex::Record::EndOfFile => {
                eof = true;
                break;
            }
        }
    }
    if !eof {
        return Err(ImageError::Hex {
            line: text.lines().count(),
            detail: "no end-of-file record (:00000001FF): the file is truncated".into(),
        });
    }
    coalesce(chunks, true)
}

fn parse_elf(bytes: &[u8]) -> Result<Vec<Segment>, ImageError> {
    use object::elf::{FileHeader32, FileHeader64};
    use object::Endianness;
    let elf = |e: object::read::Error| ImageError::Elf(e.to_string());
    match object::FileKind::parse(bytes).map_err(elf)? {
        object::FileKind::Elf32 => elf_segments::<FileHeader32<Endianness>>(bytes),
        object::FileKind::Elf64 => elf_segments::<FileHeader64<Endianness>>(bytes),
        other => Err(ImageError::Elf(format!("a {other:?} file, not ELF"))),
    }
}

/// The `PT_LOAD` program headers with file data, placed at their physical address;
/// like probe-rs, a segment that holds no allocated section is skipped (e.g. one that
/// only maps the ELF headers). Without section headers every such segment is taken.
fn elf_segments<H: object::read::elf::FileHeader<Endian = object::Endianness>>(
    bytes: &[u8],
) -> Result<Vec<Segment>, ImageError> {
    use object::read::elf::{ProgramHeader, SectionHeader};
    let elf = |e: object::read::Error| ImageError::Elf(e.to_string());
    let header = H::parse(bytes).map_err(elf)?;
    let endian = header.endian().map_err(elf)?;
    let sections: Vec<Range<u64>> = header
        .sections(endian, bytes)
        .map_err(elf)?
        .iter()
        .filter(|s| {
            let flags: u64 = s.sh_flags(endian).into();
            flags & u64::from(object::elf::SHF_ALLOC) != 0
        })
        .filter_map(|s| s.file_range(endian))
        .filter(|(_, size)| *size > 0)
        .filter_map(|(off, size)| Some(off..off.checked_add(size)?))
        .collect();
    let any_sections = !header.sections(endian, bytes).map_err(elf)?.is_empty();
    let mut segs = Vec::new();
    let mut copied = 0u64;
    for ph in header.program_headers(endian, bytes).map_err(elf)? {
        if ph.p_type(endian) != object::elf::PT_LOAD {
            continue;
        }
        let (off, size) = ph.file_range(endian);
        if size == 0 {
            continue;
        }
        let end = off
            .checked_add(size)
            .ok_or_else(|| ImageError::Elf("a segment's file range overflows".into()))?;
        if any_sections && !sections.iter().any(|s| s.start >= off && s.end <= end) {
            continue;
        }
        let data = ph.data(endian, bytes).map_err(|()| {
            ImageError::Elf(format!(
                "segment data at file offset {off:#x} ({size} bytes) lies outside the file"
            ))
        })?;
        // Program headers may share file bytes: bound what is copied, not only the file.
        copied += data.len() as u64;
        if copied > MAX_IMAGE_BYTES {
            return Err(ImageError::TooLarge {
                len: copied,
                max: MAX_IMAGE_BYTES,
            });
        }
        if segs.len() >= MAX_SEGMENTS {
            return Err(ImageError::TooManySegments { max: MAX_SEGMENTS });
        }
        segs.push(Segment {
            address: ph.p_paddr(endian).into(),
            data: data.to_vec(),
        });
    }
    if segs.is_empty() {
        return Err(ImageError::Elf(
            "no loadable segment with data (PT_LOAD holding an allocated section)".into(),
        ));
    }
    coalesce(segs, false)
}

// ---------------------------------------------------------------------------------
// Fit.

/// Where a segment that does not fit lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Misfit {
    /// Starts in flash region `region` but runs `by` bytes past its end (and past any
    /// flash region adjoining it).
    Overflows { region: MemRegion, by: u64 },
    /// Starts in RAM: this rig writes flash only.
    InRam { region: MemRegion },
    /// Starts outside every flash and RAM region; `nearest` is the closest flash
    /// region, `distance` bytes away.
    Nowhere {
        nearest: Option<MemRegion>,
        distance: u64,
    },
}

/// One segment that does not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentMisfit {
    /// Index into [`Image::segments`].
    pub index: usize,
    pub range: Range<u64>,
    pub misfit: Misfit,
}

impl fmt::Display for SegmentMisfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "segment {} ({:#010x}..{:#010x}, {} bytes) ",
            self.index,
            self.range.start,
            self.range.end,
            self.range.end - self.range.start
        )?;
        match &self.misfit {
            Misfit::Overflows { region, by } => {
                write!(
                    f,
                    "runs {by} byte{} past the end of flash region {region}",
                    if *by == 1 { "" } else { "s" }
                )
            }
            Misfit::InRam { region } => write!(f, "lies in RAM region {region}, not in flash"),
            Misfit::Nowhere {
                nearest: Some(r),
                distance,
            } => write!(
                f,
                "lies outside the chip's memory; the nearest flash region is {r}, {distance} bytes away"
            ),
            Misfit::Nowhere { nearest: None, .. } => {
                write!(f, "lies outside the chip's memory (the chip has no flash region)")
            }
        }
    }
}

/// An image that cannot be written to a chip.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FitError {
    #[error("the image does not fit {chip}: {}", .misfits.iter().map(|m| m.to_string()).collect::<Vec<_>>().join("; "))]
    Misfits {
        chip: String,
        misfits: Vec<SegmentMisfit>,
    },
    #[error("the image has no bytes to write")]
    Empty,
    /// The checks here passed but probe-rs's flash loader refused the data.
    #[error("probe-rs's flash loader refuses the image for {chip}: {detail}")]
    Loader { chip: String, detail: String },
}

/// Where one segment goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFit {
    pub index: usize,
    pub range: Range<u64>,
    /// The flash regions it touches (one, or several adjoining ones).
    pub regions: Vec<MemRegion>,
}

/// How an image lies in a chip's flash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitReport {
    pub segments: Vec<SegmentFit>,
    /// Bytes to be written.
    pub bytes: u64,
}

fn region_at(regions: &[MemRegion], address: u64) -> Option<&MemRegion> {
    regions.iter().find(|r| r.range.contains(&address))
}

/// Check that every segment of `image` lies entirely in `chip`'s flash (adjoining
/// flash regions count as one), then let probe-rs's flash loader check the same data
/// against the chip's memory map (it also refuses overlapping data).
pub fn check_fits(chip: &ChipInfo, image: &Image) -> Result<FitReport, FitError> {
    let segs: Vec<(usize, &Segment)> = image
        .segments
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.data.is_empty())
        .collect();
    if segs.is_empty() {
        return Err(FitError::Empty);
    }
    let mut misfits = Vec::new();
    let mut fits = Vec::new();
    for &(index, seg) in &segs {
        let range = seg.range();
        let mut at = range.start;
        let mut touched: Vec<MemRegion> = Vec::new();
        while at < range.end {
            match region_at(&chip.flash, at) {
                Some(r) => {
                    touched.push(r.clone());
                    at = r.range.end;
                }
                None => break,
            }
        }
        if at >= range.end {
            fits.push(SegmentFit {
                index,
                range,
                regions: touched,
            });
            continue;
        }
        let misfit = if let Some(first) = touched.first() {
            Misfit::Overflows {
                region: touched.last().unwrap_or(first).clone(),
                by: range.end - at,
            }
        } else if let Some(r) = region_at(&chip.ram, range.start) {
            Misfit::InRam { region: r.clone() }
        } else {
            let nearest = chip
                .flash
                .iter()
                .map(|r| {
                    let d = if range.end <= r.range.start {
                        r.range.start - range.end
                    } else {
                        range.start.saturating_sub(r.range.end)
                    };
                    (d, r)
                })
                .min_by_key(|(d, _)| *d);
            Misfit::Nowhere {
                distance: nearest.map(|(d, _)| d).unwrap_or(0),
                nearest: nearest.map(|(_, r)| r.clone()),
            }
        };
        misfits.push(SegmentMisfit {
            index,
            range,
            misfit,
        });
    }
    if !misfits.is_empty() {
        return Err(FitError::Misfits {
            chip: chip.name.clone(),
            misfits,
        });
    }
    let loader_says = catch_unwind(AssertUnwindSafe(|| {
        let mut loader = chip.target.flash_loader();
        for &(_, seg) in &segs {
            loader.add_data(seg.address, &seg.data)?;
        }
        Ok::<(), FlashError>(())
    }));
    match loader_says {
        Ok(Ok(())) => Ok(FitReport {
            bytes: segs.iter().map(|(_, s)| s.data.len() as u64).sum(),
            segments: fits,
        }),
        Ok(Err(e)) => Err(FitError::Loader {
            chip: chip.name.clone(),
            detail: e.to_string(),
        }),
        Err(p) => Err(FitError::Loader {
            chip: chip.name.clone(),
            detail: format!("probe library failed: {}", panic_text(&*p)),
        }),
    }
}

// ---------------------------------------------------------------------------------
// Errors of a session.

/// Why a flash or debug-port attempt did not complete.
///
/// [`ProbeError::is_config`] errors are the configuration's or the image's fault;
/// [`ProbeError::Locked`] is the device's answer; everything else is a rig fault (an
/// inconclusive verdict, never a device failure).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Selector(#[from] SelectorError),
    #[error(transparent)]
    Chip(#[from] ChipError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    DoesNotFit(#[from] FitError),
    /// No probe matches the selector (rig fault: is it plugged in?).
    #[error("no debug probe {selector} is connected ({})", if .connected.is_empty() { "no probe is connected".to_string() } else { format!("connected: {}", .connected.join(", ")) })]
    ProbeNotFound {
        selector: String,
        connected: Vec<String>,
    },
    /// The probe is there but cannot be opened (rig fault: permissions, in use).
    #[error("debug probe {selector} cannot be opened: {detail}")]
    ProbeOpen { selector: String, detail: String },
    /// The probe works but the target does not answer (rig fault).
    #[error("the {chip} target does not answer through the probe ({detail}): check the SWD wiring, the watch's power and the chip name")]
    NoTarget { chip: String, detail: String },
    /// The chip answered but refuses debug access (the device's answer).
    #[error("the {chip} refuses debug access: {detail}")]
    Locked { chip: String, detail: String },
    /// Read-back after writing differs from the image.
    #[error("flash verification failed on {chip}: {detail}")]
    Verify { chip: String, detail: String },
    /// Any other failure of a phase (rig fault).
    #[error("{phase} failed on {chip}: {detail}")]
    Failed {
        chip: String,
        phase: FlashPhase,
        detail: String,
    },
    /// probe-rs panicked (rig fault).
    #[error("probe library failed while {step}: {detail}")]
    Library { step: String, detail: String },
}

impl ProbeError {
    /// The device refused access because it is locked.
    pub fn is_locked(&self) -> bool {
        matches!(self, ProbeError::Locked { .. })
    }
    /// The configuration or the image is at fault (bad selector, unknown chip, an
    /// image that cannot be read or does not fit).
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            ProbeError::Selector(_)
                | ProbeError::Chip(_)
                | ProbeError::Image(_)
                | ProbeError::DoesNotFit(_)
        )
    }
    /// The rig (probe, wiring, power, library) is at fault.
    pub fn is_rig_fault(&self) -> bool {
        !self.is_locked() && !self.is_config()
    }
}

/// An error with its sources, `a: b: c`, without repeating a source already in the
/// text.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    let mut n = 0;
    while let Some(src) = cur {
        let t = src.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = src.source();
        n += 1;
        if n > 16 {
            break;
        }
    }
    s
}

/// What an error in the chain says about the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Said {
    /// The chip refuses: protection, missing permission, a FAULT answer.
    Refused,
    /// Nothing answered.
    Silent,
    /// An operation timed out (at attach: nothing answered; later: the core did not
    /// do what was asked in time).
    Timeout,
    /// The probe itself failed (USB).
    ProbeGone,
}

fn said_arm(e: &ArmError) -> Option<Said> {
    match e {
        ArmError::MissingPermissions(_) => Some(Said::Refused),
        ArmError::NoTargetResponse { .. } => Some(Said::Silent),
        ArmError::Timeout => Some(Said::Timeout),
        ArmError::Dap(d) => said_dap(d),
        ArmError::Probe(p) => said_probe(p),
        _ => None,
    }
}

fn said_dap(e: &DapError) -> Option<Said> {
    match e {
        DapError::NoAcknowledge => Some(Said::Silent),
        DapError::FaultResponse => Some(Said::Refused),
        _ => None,
    }
}

fn said_probe(e: &DebugProbeError) -> Option<Said> {
    match e {
        DebugProbeError::TargetNotFound => Some(Said::Silent),
        DebugProbeError::Timeout => Some(Said::Timeout),
        DebugProbeError::Usb(_) => Some(Said::ProbeGone),
        _ => None,
    }
}

/// Walk the error and its sources for the first thing that says who is at fault.
fn said(e: &(dyn std::error::Error + 'static)) -> Option<Said> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut n = 0;
    while let Some(err) = cur {
        let s = if let Some(pe) = err.downcast_ref::<probe_rs::Error>() {
            match pe {
                probe_rs::Error::MissingPermissions(_) => Some(Said::Refused),
                probe_rs::Error::Timeout => Some(Said::Timeout),
                probe_rs::Error::Arm(a) => said_arm(a),
                probe_rs::Error::Probe(p) => said_probe(p),
                _ => None,
            }
        } else if let Some(a) = err.downcast_ref::<ArmError>() {
            said_arm(a)
        } else if let Some(d) = err.downcast_ref::<DapError>() {
            said_dap(d)
        } else if let Some(p) = err.downcast_ref::<DebugProbeError>() {
            said_probe(p)
        } else {
            None
        };
        if s.is_some() {
            return s;
        }
        cur = err.source();
        n += 1;
        if n > 16 {
            break;
        }
    }
    None
}

/// Classify an error of attaching (or of a later step, `phase`).
fn classify(
    chip: &str,
    phase: FlashPhase,
    e: &(dyn std::error::Error + 'static),
    selector: Option<&str>,
) -> ProbeError {
    let detail = error_chain(e);
    match said(e) {
        Some(Said::Refused) => ProbeError::Locked {
            chip: chip.to_string(),
            detail: match (phase, detail.contains("erase_all")) {
                (_, true) => format!("{detail} (the debug port is protected; unlocking it would mass-erase the chip, which the rig never does)"),
                (FlashPhase::Attach, false) => detail,
                (_, false) => format!("while {phase}, the chip answered with a refusal: {detail}"),
            },
        },
        Some(Said::Silent) => ProbeError::NoTarget {
            chip: chip.to_string(),
            detail,
        },
        Some(Said::Timeout) if phase == FlashPhase::Attach => ProbeError::NoTarget {
            chip: chip.to_string(),
            detail,
        },
        Some(Said::ProbeGone) => ProbeError::ProbeOpen {
            selector: selector.unwrap_or("(given probe)").to_string(),
            detail,
        },
        Some(Said::Timeout) | None => ProbeError::Failed {
            chip: chip.to_string(),
            phase,
            detail,
        },
    }
}

// ---------------------------------------------------------------------------------
// Flashing.

/// How to flash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlashOptions {
    /// Erase the whole flash first (probe-rs's chip erase where the flash algorithm
    /// supports it, otherwise sector by sector). This is not an unlock: a locked chip
    /// is never mass-erased.
    pub erase_all: bool,
    /// Read the written data back and compare.
    pub verify: bool,
    /// Reset the core after writing so the new image runs.
    pub reset_after: bool,
}

impl Default for FlashOptions {
    fn default() -> Self {
        FlashOptions {
            erase_all: false,
            verify: true,
            reset_after: true,
        }
    }
}

/// Steps of a flash attempt or debug-port check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlashPhase {
    /// Opening the probe.
    Open,
    /// Attaching to the chip through the debug port.
    Attach,
    /// Erasing flash.
    Erase,
    /// Reading back flash to keep bytes the image does not cover (reported when
    /// probe-rs does it; with this module's options unwritten bytes of an erased
    /// sector are left erased, so it does not normally happen).
    Fill,
    Program,
    Verify,
    Reset,
    /// Reading memory ([`debug_access`]).
    Read,
}

impl fmt::Display for FlashPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FlashPhase::Open => "opening the probe",
            FlashPhase::Attach => "attaching",
            FlashPhase::Erase => "erasing",
            FlashPhase::Fill => "reading back unwritten bytes",
            FlashPhase::Program => "programming",
            FlashPhase::Verify => "verifying",
            FlashPhase::Reset => "resetting",
            FlashPhase::Read => "reading memory",
        })
    }
}

/// Where a phase is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseState {
    Started,
    Progress,
    Finished,
    Failed,
}

/// A progress report, e.g. for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlashProgressEvent {
    pub phase: FlashPhase,
    pub state: PhaseState,
    /// Bytes done in this phase so far.
    pub done: u64,
    /// Bytes this phase will handle, when known (a chip erase has no byte count).
    pub total: Option<u64>,
}

/// How one phase went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseReport {
    pub phase: FlashPhase,
    pub duration: Duration,
    pub bytes: u64,
    pub ok: bool,
}

/// A completed flash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlashReport {
    pub chip: String,
    pub image_sha256: String,
    /// Bytes of image data written.
    pub bytes: u64,
    pub segments: usize,
    /// Phases in the order they started.
    pub phases: Vec<PhaseReport>,
    /// The data was read back and matched.
    pub verified: bool,
    /// The core was reset after writing.
    pub reset: bool,
    /// Why a requested reset failed (the image was written all the same).
    pub reset_error: Option<String>,
    /// Messages from the flash algorithm, at most 50.
    pub messages: Vec<String>,
    pub total: Duration,
}

impl FlashReport {
    /// The report for `phase`, if it ran.
    pub fn phase(&self, phase: FlashPhase) -> Option<&PhaseReport> {
        self.phases.iter().find(|p| p.phase == phase)
    }
}

/// Tracks phases from probe-rs's progress events.
struct Tracker<'p> {
    out: &'p mut dyn FnMut(FlashProgressEvent),
    phases: Vec<PhaseReport>,
    totals: Vec<(FlashPhase, Option<u64>)>,
    started: Vec<(FlashPhase, Instant)>,
    current: FlashPhase,
    messages: Vec<String>,
}

fn phase_of(op: ProgressOperation) -> FlashPhase {
    match op {
        ProgressOperation::Fill => FlashPhase::Fill,
        ProgressOperation::Erase => FlashPhase::Erase,
        ProgressOperation::Program => FlashPhase::Program,
        ProgressOperation::Verify => FlashPhase::Verify,
    }
}

impl<'p> Tracker<'p> {
    fn new(out: &'p mut dyn FnMut(FlashProgressEvent)) -> Self {
        Tracker {
            out,
            phases: Vec::new(),
            totals: Vec::new(),
            started: Vec::new(),
            current: FlashPhase::Open,
            messages: Vec::new(),
        }
    }

    fn report(&mut self, phase: FlashPhase) -> &mut PhaseReport {
        if let Some(i) = self.phases.iter().position(|p| p.phase == phase) {
            &mut self.phases[i]
        } else {
            self.phases.push(PhaseReport {
                phase,
                duration: Duration::ZERO,
                bytes: 0,
                ok: false,
            });
            let last = self.phases.len() - 1;
            &mut self.phases[last]
        }
    }

    fn total(&self, phase: FlashPhase) -> Option<u64> {
        self.totals
            .iter()
            .find(|(p, _)| *p == phase)
            .and_then(|(_, t)| *t)
    }

    fn emit(&mut self, phase: FlashPhase, state: PhaseState) {
        let done = self
            .phases
            .iter()
            .find(|p| p.phase == phase)
            .map(|p| p.bytes)
            .unwrap_or(0);
        let total = self.total(phase);
        (self.out)(FlashProgressEvent {
            phase,
            state,
            done,
            total,
        });
    }

    fn start(&mut self, phase: FlashPhase) {
        self.current = phase;
        self.report(phase);
        self.started.retain(|(p, _)| *p != phase);
        self.started.push((phase, Instant::now()));
        self.emit(phase, PhaseState::Started);
    }

    fn stop(&mut self, phase: FlashPhase, ok: bool) {
        let elapsed = self
            .started
            .iter()
            .position(|(p, _)| *p == phase)
            .map(|i| self.started.remove(i).1.elapsed())
            .unwrap_or_default();
        let r = self.report(phase);
        r.duration += elapsed;
        r.ok = ok;
        self.emit(
            phase,
            if ok {
                PhaseState::Finished
            } else {
                PhaseState::Failed
            },
        );
    }

    /// Close the phase that was running when an error came back.
    fn fail_current(&mut self) {
        let running: Vec<FlashPhase> = self.started.iter().map(|(p, _)| *p).collect();
        for p in running {
            self.stop(p, false);
        }
    }

    fn event(&mut self, ev: ProgressEvent) {
        match ev {
            ProgressEvent::AddProgressBar { operation, total } => {
                let phase = phase_of(operation);
                match self.totals.iter_mut().find(|(p, _)| *p == phase) {
                    Some((_, t)) => *t = t.zip(total).map(|(a, b)| a + b).or(*t).or(total),
                    None => self.totals.push((phase, total)),
                }
            }
            ProgressEvent::Started(op) => self.start(phase_of(op)),
            ProgressEvent::Progress {
                operation, size, ..
            } => {
                let phase = phase_of(operation);
                self.report(phase).bytes += size;
                self.emit(phase, PhaseState::Progress);
            }
            ProgressEvent::Finished(op) => self.stop(phase_of(op), true),
            ProgressEvent::Failed(op) => {
                let phase = phase_of(op);
                if self.started.iter().any(|(p, _)| *p == phase) {
                    self.stop(phase, false);
                }
            }
            ProgressEvent::DiagnosticMessage { message } => {
                if self.messages.len() < 50 {
                    self.messages.push(shown(&message, 500));
                }
            }
            ProgressEvent::FlashLayoutReady { .. } => {}
        }
    }
}

/// Drop a session, catching a panic in its shutdown.
fn close(session: Session) {
    let _ = catch_unwind(AssertUnwindSafe(move || drop(session)));
}

fn attach(probe: Probe, chip: &ChipInfo, selector: Option<&str>) -> Result<Session, ProbeError> {
    let target = chip.target.clone();
    // The target is given in full; an empty registry is enough.
    let attached = guarded("attaching", || {
        Ok(probe.attach_with_registry(target, Permissions::new(), &Registry::new()))
    })?;
    attached.map_err(|e| classify(&chip.name, FlashPhase::Attach, &e, selector))
}

/// Write `image` to `chip` through an opened `probe`.
///
/// The image is checked with [`check_fits`] first (nothing is attached when it does
/// not fit). Then: attach without erase-all permission (a locked chip is
/// [`ProbeError::Locked`], never unlocked), erase and program (and verify) with
/// probe-rs's flash algorithm for the chip, and reset if asked. `progress` sees every
/// phase start, advance and end.
pub fn flash(
    probe: Probe,
    chip: &ChipInfo,
    image: &Image,
    opts: FlashOptions,
    progress: &mut dyn FnMut(FlashProgressEvent),
) -> Result<FlashReport, ProbeError> {
    flash_inner(probe, chip, image, opts, progress, None)
}

/// [`flash`] with the probe opened by `selector`.
pub fn flash_with_selector(
    selector: &ProbeSelector,
    chip: &ChipInfo,
    image: &Image,
    opts: FlashOptions,
    progress: &mut dyn FnMut(FlashProgressEvent),
) -> Result<FlashReport, ProbeError> {
    check_fits(chip, image)?;
    let started = Instant::now();
    let probe = open_probe(selector)?;
    let mut report = flash_inner(
        probe,
        chip,
        image,
        opts,
        progress,
        Some(&selector.to_string()),
    )?;
    report.total = started.elapsed();
    Ok(report)
}

fn flash_inner(
    probe: Probe,
    chip: &ChipInfo,
    image: &Image,
    opts: FlashOptions,
    progress: &mut dyn FnMut(FlashProgressEvent),
    selector: Option<&str>,
) -> Result<FlashReport, ProbeError> {
    let fit = check_fits(chip, image)?;
    let started = Instant::now();
    let mut t = Tracker::new(progress);

    t.start(FlashPhase::Attach);
    let mut session = match attach(probe, chip, selector) {
        Ok(s) => s,
        Err(e) => {
            t.fail_current();
            return Err(e);
        }
    };
    t.stop(FlashPhase::Attach, true);

    let segs: Vec<&Segment> = image
        .segments
        .iter()
        .filter(|s| !s.data.is_empty())
        .collect();
    let staged = guarded("staging the image", || {
        let mut loader = chip.target.flash_loader();
        for s in &segs {
            loader.add_data(s.address, &s.data).map_err(|e| {
                ProbeError::DoesNotFit(FitError::Loader {
                    chip: chip.name.clone(),
                    detail: e.to_string(),
                })
            })?;
        }
        Ok(loader)
    });
    let loader = match staged {
        Ok(l) => l,
        Err(e) => {
            close(session);
            return Err(e);
        }
    };

    // Until probe-rs reports a phase, a failure belongs to the write as a whole.
    t.current = FlashPhase::Program;
    let committed = {
        let tr = &mut t;
        guarded("writing flash", || {
            let mut options = DownloadOptions::default();
            options.progress = FlashProgress::new(|ev| tr.event(ev));
            options.do_chip_erase = opts.erase_all;
            options.verify = opts.verify;
            Ok(loader.commit(&mut session, options))
        })
    };
    let phase_at_error = t.current;
    let committed = match committed {
        Ok(Ok(())) => Ok(()),
        Ok(Err(FlashError::Verify)) => Err(ProbeError::Verify {
            chip: chip.name.clone(),
            detail: "the flash read back differs from the image".into(),
        }),
        Ok(Err(e)) => Err(classify(&chip.name, phase_at_error, &e, selector)),
        Err(e) => Err(e),
    };
    if let Err(e) = committed {
        t.fail_current();
        close(session);
        return Err(e);
    }
    let verified = opts.verify
        && t.phases
            .iter()
            .any(|p| p.phase == FlashPhase::Verify && p.ok);

    let mut reset = false;
    let mut reset_error = None;
    if opts.reset_after {
        t.start(FlashPhase::Reset);
        let r = guarded("resetting", || {
            Ok(session.core(0).and_then(|mut core| core.reset()))
        });
        match r {
            Ok(Ok(())) => {
                reset = true;
                t.stop(FlashPhase::Reset, true);
            }
            Ok(Err(e)) => {
                reset_error = Some(error_chain(&e));
                t.stop(FlashPhase::Reset, false);
            }
            Err(e) => {
                reset_error = Some(e.to_string());
                t.stop(FlashPhase::Reset, false);
            }
        }
    }
    close(session);
    Ok(FlashReport {
        chip: chip.name.clone(),
        image_sha256: image.sha256.clone(),
        bytes: fit.bytes,
        segments: fit.segments.len(),
        phases: t.phases.clone(),
        verified,
        reset,
        reset_error,
        messages: std::mem::take(&mut t.messages),
        total: started.elapsed(),
    })
}

// ---------------------------------------------------------------------------------
// Debug-port check.

/// What a probe could do through the debug port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DebugOutcome {
    /// The chip answered but refused (missing erase-all permission for a protected
    /// chip, a FAULT answer, or a refused read after attaching).
    Locked { detail: String },
    /// The probe attached and read flash.
    Open {
        /// The debug port's DPIDR (e.g. `0x2ba01477`), or why it could not be read
        /// (non-ARM targets have none).
        idcode: String,
        /// Where the read started (the main flash region's start).
        address: u64,
        flash_read: Vec<u8>,
    },
}

/// Attach to `chip` through an opened `probe` without erase permission and read
/// `len` bytes (capped at the region's size and [`MAX_DEBUG_READ`]) from the start of
/// its main flash region.
///
/// A chip that answers and refuses is [`DebugOutcome::Locked`]. A chip that does not
/// answer at all is an error ([`ProbeError::NoTarget`], a rig fault): a debug port
/// disabled for good cannot be told from an unwired or unpowered one, so it is not
/// reported as locked.
pub fn debug_access(probe: Probe, chip: &ChipInfo, len: usize) -> Result<DebugOutcome, ProbeError> {
    debug_inner(probe, chip, len, None)
}

/// [`debug_access`] with the probe opened by `selector`.
pub fn debug_access_with_selector(
    selector: &ProbeSelector,
    chip: &ChipInfo,
    len: usize,
) -> Result<DebugOutcome, ProbeError> {
    let probe = open_probe(selector)?;
    debug_inner(probe, chip, len, Some(&selector.to_string()))
}

fn debug_inner(
    probe: Probe,
    chip: &ChipInfo,
    len: usize,
    selector: Option<&str>,
) -> Result<DebugOutcome, ProbeError> {
    let region = chip
        .main_flash()
        .cloned()
        .ok_or_else(|| ProbeError::Failed {
            chip: chip.name.clone(),
            phase: FlashPhase::Read,
            detail: "the chip has no flash region to read".into(),
        })?;
    let len = (len as u64).min(region.len()).min(MAX_DEBUG_READ as u64) as usize;
    let mut session = match attach(probe, chip, selector) {
        Ok(s) => s,
        Err(ProbeError::Locked { detail, .. }) => return Ok(DebugOutcome::Locked { detail }),
        Err(e) => return Err(e),
    };
    let address = region.range.start;
    let read = guarded("reading flash", || {
        let mut core = match session.core(0) {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let mut buf = vec![0u8; len];
        let words = if address % 4 == 0 { len / 4 * 4 } else { 0 };
        let mut at = 0usize;
        while at < words {
            let n = (words - at).min(4096);
            if let Err(e) = core.read_mem_32bit(address + at as u64, &mut buf[at..at + n]) {
                return Ok(Err(e));
            }
            at += n;
        }
        if at < len {
            if let Err(e) = core.read_8(address + at as u64, &mut buf[at..]) {
                return Ok(Err(e));
            }
        }
        Ok(Ok(buf))
    });
    let flash_read = match read {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            close(session);
            // The chip answered the attach: a refused read is its answer, unless
            // nothing answers any more or the probe failed.
            let detail = error_chain(&e);
            return match said(&e) {
                Some(Said::Silent | Said::Timeout) => Err(ProbeError::NoTarget {
                    chip: chip.name.clone(),
                    detail: format!("attached, then no answer while reading flash: {detail}"),
                }),
                Some(Said::ProbeGone) => Err(ProbeError::ProbeOpen {
                    selector: selector.unwrap_or("(given probe)").to_string(),
                    detail,
                }),
                Some(Said::Refused) => Ok(DebugOutcome::Locked {
                    detail: format!(
                        "attached, but reading {len} bytes at {address:#010x} was refused: {detail}"
                    ),
                }),
                // An error nobody recognised as a refusal is not evidence of a lock:
                // a rig fault (inconclusive), never a pass.
                None => Err(ProbeError::Failed {
                    chip: chip.name.clone(),
                    phase: FlashPhase::Read,
                    detail: format!(
                        "attached, then reading {len} bytes at {address:#010x} failed: {detail}"
                    ),
                }),
            };
        }
        Err(e) => {
            close(session);
            return Err(e);
        }
    };
    // The DPIDR is a detail for the evidence; failing to read it does not change
    // the outcome.
    let idcode = match guarded("reading the DPIDR", || {
        Ok(session.get_arm_interface().and_then(|iface| {
            let dp = iface.current_debug_port().unwrap_or(DpAddress::Default);
            iface.read_dp_register::<DPIDR>(dp)
        }))
    }) {
        Ok(Ok(id)) => format!("{:#010x}", u32::from(id)),
        Ok(Err(e)) => format!("unavailable ({e})"),
        Err(e) => format!("unavailable ({e})"),
    };
    close(session);
    Ok(DebugOutcome::Open {
        idcode,
        address,
        flash_read,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(events: Vec<ProgressEvent>) -> (Vec<FlashProgressEvent>, Vec<PhaseReport>) {
        let mut seen = Vec::new();
        let mut out = |e: FlashProgressEvent| seen.push(e);
        let mut t = Tracker::new(&mut out);
        for e in events {
            t.event(e);
        }
        let phases = t.phases.clone();
        drop(t);
        (seen, phases)
    }

    #[test]
    fn progress_events_map_to_phases_with_running_byte_counts() {
        use ProgressOperation as Op;
        let tick = Duration::from_millis(1);
        let (seen, phases) = collect(vec![
            ProgressEvent::FlashLayoutReady {
                flash_layout: vec![],
            },
            ProgressEvent::AddProgressBar {
                operation: Op::Erase,
                total: Some(4096),
            },
            ProgressEvent::AddProgressBar {
                operation: Op::Program,
                total: Some(6000),
            },
            // A second flash algorithm adds to the same phase.
            ProgressEvent::AddProgressBar {
                operation: Op::Program,
                total: Some(2000),
            },
            ProgressEvent::Started(Op::Erase),
            ProgressEvent::Progress {
                operation: Op::Erase,
                size: 4096,
                time: tick,
            },
            ProgressEvent::Finished(Op::Erase),
            ProgressEvent::Started(Op::Program),
            ProgressEvent::Progress {
                operation: Op::Program,
                size: 4096,
                time: tick,
            },
            ProgressEvent::Progress {
                operation: Op::Program,
                size: 1024,
                time: tick,
            },
            ProgressEvent::Failed(Op::Program),
            ProgressEvent::DiagnosticMessage {
                message: "algo says hi".into(),
            },
        ]);
        let brief: Vec<(FlashPhase, PhaseState, u64, Option<u64>)> = seen
            .iter()
            .map(|e| (e.phase, e.state, e.done, e.total))
            .collect();
        use FlashPhase::*;
        use PhaseState::*;
        assert_eq!(
            brief,
            vec![
                (Erase, Started, 0, Some(4096)),
                (Erase, Progress, 4096, Some(4096)),
                (Erase, Finished, 4096, Some(4096)),
                (Program, Started, 0, Some(8000)),
                (Program, Progress, 4096, Some(8000)),
                (Program, Progress, 5120, Some(8000)),
                (Program, Failed, 5120, Some(8000)),
            ]
        );
        assert_eq!(phases.len(), 2);
        assert!(phases[0].ok && phases[0].phase == Erase && phases[0].bytes == 4096);
        assert!(!phases[1].ok && phases[1].phase == Program && phases[1].bytes == 5120);
    }

    #[test]
    fn a_chip_erase_has_no_byte_total() {
        let (seen, _) = collect(vec![
            ProgressEvent::AddProgressBar {
                operation: ProgressOperation::Erase,
                total: None,
            },
            ProgressEvent::Started(ProgressOperation::Erase),
            ProgressEvent::Finished(ProgressOperation::Erase),
        ]);
        assert_eq!(seen.len(), 2);
        assert!(seen.iter().all(|e| e.total.is_none()));
    }

    fn class(e: &(dyn std::error::Error + 'static), phase: FlashPhase) -> ProbeError {
        classify("chip", phase, e, Some("1366:1015"))
    }

    #[test]
    fn errors_are_classified_by_who_is_at_fault() {
        let locked = probe_rs::Error::Arm(ArmError::MissingPermissions("erase_all".into()));
        let e = class(&locked, FlashPhase::Attach);
        assert!(e.is_locked(), "{e:?}");
        assert!(e.to_string().contains("never"), "{e}");

        let fault = probe_rs::Error::Arm(ArmError::Dap(DapError::FaultResponse));
        assert!(class(&fault, FlashPhase::Attach).is_locked());
        let e = class(&fault, FlashPhase::Program);
        assert!(e.is_locked(), "{e:?}");
        assert!(
            e.to_string()
                .contains("while programming, the chip answered with a refusal"),
            "{e}"
        );

        let silent = probe_rs::Error::Probe(DebugProbeError::TargetNotFound);
        let e = class(&silent, FlashPhase::Attach);
        assert!(matches!(e, ProbeError::NoTarget { .. }), "{e:?}");
        assert!(e.is_rig_fault());
        assert!(e.to_string().contains("check the SWD wiring"), "{e}");

        // A NACK deep inside a flash error: the target stopped answering.
        let nack = FlashError::Core(probe_rs::Error::Arm(ArmError::Dap(DapError::NoAcknowledge)));
        assert!(matches!(
            class(&nack, FlashPhase::Program),
            ProbeError::NoTarget { .. }
        ));

        // A timeout is silence at attach, a failed phase later.
        let timeout = FlashError::ResetAndHalt(probe_rs::Error::Timeout);
        assert!(matches!(
            class(&timeout, FlashPhase::Attach),
            ProbeError::NoTarget { .. }
        ));
        match class(&timeout, FlashPhase::Erase) {
            ProbeError::Failed { phase, detail, .. } => {
                assert_eq!(phase, FlashPhase::Erase);
                assert!(detail.contains("reset, and then halt"), "{detail}");
            }
            other => panic!("{other:?}"),
        }

        let usb = probe_rs::Error::Probe(DebugProbeError::Usb(std::io::Error::other("gone")));
        assert!(matches!(
            class(&usb, FlashPhase::Program),
            ProbeError::ProbeOpen { .. }
        ));

        let other = FlashError::ChipEraseNotSupported;
        let e = class(&other, FlashPhase::Erase);
        assert!(matches!(e, ProbeError::Failed { .. }) && e.is_rig_fault());
    }

    #[test]
    fn prefix_distance_counts_typos_and_wildcards() {
        let q = |s: &str| {
            s.chars()
                .map(|c| c.to_ascii_lowercase())
                .collect::<Vec<_>>()
        };
        // Exact prefix.
        assert_eq!(prefix_distance(&q("nrf52840"), "nRF52840_xxAA").0, 0);
        // `x` in the chip name matches anything.
        assert_eq!(
            prefix_distance(&q("nrf52840_qiaa"), "nRF52840_xxAA"),
            (0, 0)
        );
        // O for 0 costs half a step, another digit a whole one.
        assert_eq!(prefix_distance(&q("stm32f4o7"), "STM32F407VGTx").0, 1);
        assert_eq!(prefix_distance(&q("stm32f4o7"), "STM32F417VGTx").0, 2);
        assert_eq!(prefix_distance(&q("abc"), "xxx").1, 0);
        assert_eq!(prefix_distance(&q("abc"), "xyz").1, 4);
        assert_eq!(prefix_distance(&q("abc"), "zzz").1, 6);
        assert_eq!(prefix_distance(&q(""), "zzz"), (0, 6));
    }

    #[test]
    fn coalescing_merges_touching_chunks_and_refuses_overlaps() {
        let seg = |a: u64, n: usize| Segment {
            address: a,
            data: vec![0xab; n],
        };
        let out = coalesce(vec![seg(16, 16), seg(0, 16), seg(64, 4)], true).unwrap();
        assert_eq!(
            out.iter().map(|s| s.range()).collect::<Vec<_>>(),
            vec![0..32, 64..68]
        );
        let kept = coalesce(vec![seg(16, 16), seg(0, 16)], false).unwrap();
        assert_eq!(kept.len(), 2);
        assert_eq!(
            coalesce(vec![seg(0, 16), seg(8, 16)], true),
            Err(ImageError::Overlap {
                first: 0..16,
                second: 8..24
            })
        );
        assert!(matches!(
            coalesce(vec![seg(u64::MAX - 2, 8)], true),
            Err(ImageError::AddressOverflow { .. })
        ));
    }
}

/// Stand-ins for tests without hardware, built on probe-rs's `FakeProbe`.
pub mod testing {
    use super::Probe;
    use probe_rs::architecture::arm::FullyQualifiedApAddress;
    use probe_rs::integration::{FakeProbe, Operation};

    /// A fake probe with a mocked Cortex-M core behind which an nRF52 answers its
    /// APPROTECTSTATUS register (CTRL-AP register 0x0C) with `approtect_status`:
    /// 0 means protected. With protection the attach is refused (missing erase-all
    /// permission); without it the attach succeeds, flash reads as zeros, and
    /// flashing stops at the start of the erase (the fake core never reports the
    /// halt after a reset, so probe-rs times out).
    pub fn fake_nrf52(approtect_status: u32) -> Probe {
        let fake = FakeProbe::with_mocked_core();
        fake.expect_operation(Operation::ReadRawApRegister {
            ap: FullyQualifiedApAddress::v1_with_default_dp(1),
            address: 0x0C,
            result: approtect_status,
        });
        fake.into_probe()
    }

    /// A bare fake probe with no answers queued: probe-rs panics while attaching.
    pub fn fake_without_answers() -> Probe {
        FakeProbe::new().into_probe()
    }
}

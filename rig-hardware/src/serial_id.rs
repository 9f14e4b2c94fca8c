//! Serial adapters found by stable identity, from sysfs, without libudev.
//!
//! `/dev/ttyUSBn` and `/dev/ttyACMn` are numbered in the order adapters were plugged
//! in, so a bench names each adapter by something that does not move:
//!
//! - its USB identity, `usb:VID:PID:SERIAL[:IFACE]` (VID/PID in hex, IFACE the USB
//!   interface number in decimal, for multi-port adapters such as FT2232, FT4232 or
//!   CP2105), or its serial number alone, `usb:SERIAL`;
//! - the physical USB port it is plugged into, `usb-path:1-1.3[:IFACE]` (the kernel's
//!   bus-port.port… name), for adapters without a unique serial number (cheap CH340
//!   boards have none): such an adapter must stay in the same port;
//! - a `/dev/serial/by-id/…` or `/dev/serial/by-path/…` link made by udev, or an
//!   on-board UART's fixed name (`/dev/ttyAMA0`, Raspberry Pi OS's `/dev/serial0`).
//!
//! [`scan`] reads `<sys>/class/tty/*` and the `/dev/serial/by-id`, `by-path` links
//! itself. What it does and does not do:
//!
//! - Only tty entries with a `device` link are considered (virtual consoles,
//!   `console`, `ptmx` and pseudo-terminals have none); serial-core ports whose
//!   `type` is 0 (no UART behind them, as the 8250 driver's unused `ttyS1..31`) and
//!   entries without a node under the `/dev` root are left out.
//! - The USB device is the first ancestor of the tty's device directory that has
//!   `idVendor`/`idProduct` or a USB device name (`1-1.3`); the interface number is
//!   the nearest `bInterfaceNumber` below it. Nothing is opened but sysfs attribute
//!   files (regular files only, at most [`MAX_ATTR_BYTES`] bytes each: a larger one is
//!   treated as absent); entries that cannot be read are skipped, never a panic.
//! - A serial number usable in a selector is printable ASCII without `:`, `"` or `\`
//!   (at most 126 characters); any other is kept for display but not used as
//!   identity. Whether a serial number is *unique* is judged among the adapters
//!   scanned together: two adapters of one model reporting the same fixed serial
//!   (common with clones) are caught only when both are plugged in.
//! - No udev rules are read or written, and device nodes are not opened.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// The most bytes read from one sysfs attribute; a larger file is treated as absent.
pub const MAX_ATTR_BYTES: usize = 512;

/// The most tty entries or `/dev/serial` links looked at in one scan.
const MAX_ENTRIES: usize = 4096;

/// The most ancestors of a tty's device directory walked looking for its USB device.
const MAX_DEPTH: usize = 24;

/// The longest serial number a USB string descriptor can hold (126 UTF-16 units).
const MAX_SERIAL_CHARS: usize = 126;

/// What a serial adapter hangs off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AdapterKind {
    /// A USB device (ttyUSB, ttyACM).
    Usb,
    /// An on-board UART (platform, AMBA or PnP bus: `ttyAMA0`, `ttyS0`), named in the
    /// device tree or by ACPI.
    Platform,
    /// Anything else (a PCI serial card, …).
    Other,
}

impl AdapterKind {
    /// `usb`, `platform` or `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            AdapterKind::Usb => "usb",
            AdapterKind::Platform => "platform",
            AdapterKind::Other => "other",
        }
    }
}

/// One serial port and everything that identifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialAdapter {
    /// Device node, e.g. `/dev/ttyUSB0` (under the scanned `/dev` root).
    pub dev: PathBuf,
    /// What it hangs off.
    pub kind: AdapterKind,
    /// USB vendor id (`idVendor`).
    pub vid: Option<u16>,
    /// USB product id (`idProduct`).
    pub pid: Option<u16>,
    /// USB serial number string (trimmed; absent if the device has none, if it is not
    /// UTF-8 or contains control characters).
    pub serial: Option<String>,
    /// USB manufacturer string, for display (control characters replaced).
    pub manufacturer: Option<String>,
    /// USB product string, for display (control characters replaced).
    pub product: Option<String>,
    /// USB interface number (`bInterfaceNumber`).
    pub interface: Option<u8>,
    /// The USB device's bus-port path, e.g. `1-1.3`.
    pub usb_path: Option<String>,
    /// Kernel driver of the port (`ftdi_sio`, `cp210x`, `ch341`, `cdc_acm`, `uart-pl011`…).
    pub driver: Option<String>,
    /// For an on-board UART: its device-tree node (`serial@7e201000`) or, without one,
    /// its bus device name (`fe201000.serial`, `00:00`).
    pub platform_name: Option<String>,
    /// `/dev/serial/by-id/*` links to `dev`, sorted.
    pub by_id: Vec<PathBuf>,
    /// `/dev/serial/by-path/*` links to `dev`, sorted.
    pub by_path: Vec<PathBuf>,
    /// Other `/dev/serialN` links to `dev` (Raspberry Pi OS names its header UART
    /// `/dev/serial0`), sorted.
    pub aliases: Vec<PathBuf>,
    /// True when `usb:VID:PID:SERIAL[:IFACE]` names this adapter and no other among
    /// those scanned with it (set by [`scan`] or [`mark_unique_serials`]).
    pub serial_unique: bool,
}

impl SerialAdapter {
    /// An adapter at `dev` with nothing else known.
    pub fn new(dev: impl Into<PathBuf>, kind: AdapterKind) -> SerialAdapter {
        SerialAdapter {
            dev: dev.into(),
            kind,
            vid: None,
            pid: None,
            serial: None,
            manufacturer: None,
            product: None,
            interface: None,
            usb_path: None,
            driver: None,
            platform_name: None,
            by_id: Vec::new(),
            by_path: Vec::new(),
            aliases: Vec::new(),
            serial_unique: false,
        }
    }

    /// True for a USB adapter without a unique serial number: it can only be bound by
    /// the USB port it is plugged into, and must stay there.
    pub fn bound_by_position(&self) -> bool {
        self.kind == AdapterKind::Usb && !self.serial_unique
    }

    /// One line saying what this adapter is, for messages:
    /// `/dev/ttyUSB0: usb 0403:6010 serial "FT4ABC12" interface 1 at 1-1.3 (FTDI Dual RS232-HS)`.
    pub fn identity(&self) -> String {
        let mut s = format!("{}: {}", self.dev.display(), self.kind.as_str());
        match (self.vid, self.pid) {
            (Some(v), Some(p)) => s.push_str(&format!(" {v:04x}:{p:04x}")),
            (Some(v), None) => s.push_str(&format!(" {v:04x}:?")),
            (None, Some(p)) => s.push_str(&format!(" ?:{p:04x}")),
            (None, None) => {}
        }
        if self.kind == AdapterKind::Usb {
            match &self.serial {
                Some(ser) => s.push_str(&format!(" serial {ser:?}")),
                None => s.push_str(" without serial"),
            }
        }
        if let Some(i) = self.interface {
            s.push_str(&format!(" interface {i}"));
        }
        if let Some(p) = &self.usb_path {
            s.push_str(&format!(" at {p}"));
        }
        if let Some(n) = &self.platform_name {
            s.push_str(&format!(" ({n})"));
        }
        let names: Vec<&str> = [self.manufacturer.as_deref(), self.product.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        if !names.is_empty() {
            s.push_str(&format!(" ({})", names.join(" ")));
        }
        s
    }

    /// The `usb:VID:PID:SERIAL[:IFACE]` selector for this adapter, if it has a USB
    /// identity with a selector-safe serial (unique or not).
    pub fn usb_selector(&self) -> Option<UsbSelector> {
        let serial = self
            .serial
            .as_deref()
            .filter(|s| serial_is_selector_safe(s))?;
        Some(UsbSelector::Usb {
            vid: self.vid?,
            pid: self.pid?,
            serial: serial.to_string(),
            interface: self.interface,
        })
    }

    /// The `usb-path:PATH[:IFACE]` selector for this adapter, if it is on USB.
    pub fn path_selector(&self) -> Option<UsbSelector> {
        let path = self.usb_path.as_deref().filter(|p| usb_path_is_valid(p))?;
        Some(UsbSelector::Path {
            path: path.to_string(),
            interface: self.interface,
        })
    }
}

/// Which adapter a rig file means.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UsbSelector {
    /// `usb:VID:PID:SERIAL[:IFACE]`.
    Usb {
        /// Vendor id.
        vid: u16,
        /// Product id.
        pid: u16,
        /// Serial number, exactly (case-sensitive).
        serial: String,
        /// Interface number; `None` matches any.
        interface: Option<u8>,
    },
    /// `usb:SERIAL`: any adapter with this serial number.
    Serial(String),
    /// `usb-path:1-1.3[:IFACE]`: the adapter plugged into this USB port.
    Path {
        /// Bus-port path, e.g. `1-1.3`.
        path: String,
        /// Interface number; `None` matches any.
        interface: Option<u8>,
    },
}

const SELECTOR_FORMS: &str =
    "expected usb:VID:PID:SERIAL[:IFACE], usb:SERIAL or usb-path:BUS-PORT[.PORT…][:IFACE] (VID/PID 4 hex digits, IFACE decimal)";

impl UsbSelector {
    /// Parse a selector. The error says what was wrong and which forms are accepted.
    pub fn parse(s: &str) -> Result<UsbSelector, String> {
        let shown = shown(s);
        if let Some(rest) = s.strip_prefix("usb-path:") {
            let (path, iface) = match rest.split_once(':') {
                Some((p, i)) => (p, Some(i)),
                None => (rest, None),
            };
            if !usb_path_is_valid(path) {
                return Err(format!(
                    "{shown}: `{}` is not a USB port path such as 1-1.3 (bus number, `-`, port numbers separated by `.`); {SELECTOR_FORMS}",
                    self::shown(path)
                ));
            }
            let interface = match iface {
                Some(i) => Some(parse_iface(i).map_err(|e| format!("{shown}: {e}"))?),
                None => None,
            };
            return Ok(UsbSelector::Path {
                path: path.to_string(),
                interface,
            });
        }
        let Some(rest) = s.strip_prefix("usb:") else {
            return Err(format!("{shown}: not a USB selector; {SELECTOR_FORMS}"));
        };
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.as_slice() {
            [serial] => {
                check_serial(serial).map_err(|e| format!("{shown}: {e}; {SELECTOR_FORMS}"))?;
                Ok(UsbSelector::Serial(serial.to_string()))
            }
            [vid, pid, serial] | [vid, pid, serial, _] => {
                let vid = parse_hex16(vid, "VID").map_err(|e| format!("{shown}: {e}"))?;
                let pid = parse_hex16(pid, "PID").map_err(|e| format!("{shown}: {e}"))?;
                check_serial(serial).map_err(|e| format!("{shown}: {e}; {SELECTOR_FORMS}"))?;
                let interface = match parts.get(3) {
                    Some(i) => Some(parse_iface(i).map_err(|e| format!("{shown}: {e}"))?),
                    None => None,
                };
                Ok(UsbSelector::Usb {
                    vid,
                    pid,
                    serial: serial.to_string(),
                    interface,
                })
            }
            _ => Err(format!(
                "{shown}: {} `:`-separated fields after `usb:`; {SELECTOR_FORMS}",
                parts.len()
            )),
        }
    }

    /// True if `adapter` is one this selector names.
    pub fn matches(&self, adapter: &SerialAdapter) -> bool {
        match self {
            UsbSelector::Usb {
                vid,
                pid,
                serial,
                interface,
            } => {
                adapter.kind == AdapterKind::Usb
                    && adapter.vid == Some(*vid)
                    && adapter.pid == Some(*pid)
                    && adapter.serial.as_deref() == Some(serial.as_str())
                    && interface.is_none_or(|i| adapter.interface == Some(i))
            }
            UsbSelector::Serial(serial) => {
                adapter.kind == AdapterKind::Usb
                    && adapter.serial.as_deref() == Some(serial.as_str())
            }
            UsbSelector::Path { path, interface } => {
                adapter.kind == AdapterKind::Usb
                    && adapter.usb_path.as_deref() == Some(path.as_str())
                    && interface.is_none_or(|i| adapter.interface == Some(i))
            }
        }
    }
}

impl fmt::Display for UsbSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsbSelector::Usb {
                vid,
                pid,
                serial,
                interface,
            } => {
                write!(f, "usb:{vid:04x}:{pid:04x}:{serial}")?;
                if let Some(i) = interface {
                    write!(f, ":{i}")?;
                }
                Ok(())
            }
            UsbSelector::Serial(serial) => write!(f, "usb:{serial}"),
            UsbSelector::Path { path, interface } => {
                write!(f, "usb-path:{path}")?;
                if let Some(i) = interface {
                    write!(f, ":{i}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::str::FromStr for UsbSelector {
    type Err = String;
    fn from_str(s: &str) -> Result<UsbSelector, String> {
        UsbSelector::parse(s)
    }
}

/// True for strings written as selectors (`usb:…`, `usb-path:…`), which
/// [`UsbSelector::parse`] must accept; anything else in a port field is a path.
pub fn is_selector(s: &str) -> bool {
    s.starts_with("usb:") || s.starts_with("usb-path:")
}

/// Why a selector did not name exactly one adapter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No adapter matches.
    #[error("{}", not_found_text(selector, present))]
    NotFound {
        /// The selector, as written by [`UsbSelector`]'s `Display`.
        selector: String,
        /// [`SerialAdapter::identity`] of every adapter present.
        present: Vec<String>,
    },
    /// Several adapters match.
    #[error("{}", ambiguous_text(selector, matches, hint))]
    Ambiguous {
        /// The selector, as written by [`UsbSelector`]'s `Display`.
        selector: String,
        /// [`SerialAdapter::identity`] of every adapter it matches.
        matches: Vec<String>,
        /// How to narrow it down.
        hint: String,
    },
}

/// The most adapters listed in one error message.
const MAX_LISTED: usize = 16;

fn list(items: &[String]) -> String {
    let mut s = items
        .iter()
        .take(MAX_LISTED)
        .map(|i| format!("\n  {i}"))
        .collect::<String>();
    if items.len() > MAX_LISTED {
        s.push_str(&format!("\n  … and {} more", items.len() - MAX_LISTED));
    }
    s
}

fn not_found_text(selector: &str, present: &[String]) -> String {
    if present.is_empty() {
        format!(
            "no serial adapter matches {selector}: none is attached (is the adapter plugged in?)"
        )
    } else {
        format!(
            "no serial adapter matches {selector} (`redrig scan` lists them); attached:{}",
            list(present)
        )
    }
}

fn ambiguous_text(selector: &str, matches: &[String], hint: &str) -> String {
    format!(
        "{selector} matches {} serial adapters, {hint}:{}",
        matches.len(),
        list(matches)
    )
}

/// The device node of the one adapter `selector` names among `adapters`.
pub fn resolve(
    selector: &UsbSelector,
    adapters: &[SerialAdapter],
) -> Result<PathBuf, ResolveError> {
    let found: Vec<&SerialAdapter> = adapters.iter().filter(|a| selector.matches(a)).collect();
    match found.as_slice() {
        [one] => Ok(one.dev.clone()),
        [] => Err(ResolveError::NotFound {
            selector: selector.to_string(),
            present: adapters.iter().map(SerialAdapter::identity).collect(),
        }),
        many => {
            let devices: BTreeSet<Option<&str>> =
                many.iter().map(|a| a.usb_path.as_deref()).collect();
            let hint = if devices.len() == 1 && many.iter().all(|a| a.interface.is_some()) {
                "ports of one multi-port adapter: add the interface number (`:IFACE`)"
            } else if matches!(selector, UsbSelector::Serial(_)) {
                "name the VID:PID as well (usb:VID:PID:SERIAL), or, if they share the serial number, bind them by USB port (usb-path:…)"
            } else {
                "they share a serial number: bind them by USB port (usb-path:…) or a /dev/serial/by-path link"
            };
            Err(ResolveError::Ambiguous {
                selector: selector.to_string(),
                matches: many.iter().map(|a| a.identity()).collect(),
                hint: hint.to_string(),
            })
        }
    }
}

/// Set [`SerialAdapter::serial_unique`] on each adapter: its
/// `usb:VID:PID:SERIAL[:IFACE]` selector names it and no other in `adapters`.
pub fn mark_unique_serials(adapters: &mut [SerialAdapter]) {
    let unique: Vec<bool> = adapters
        .iter()
        .map(|a| {
            a.usb_selector()
                .is_some_and(|sel| resolve(&sel, adapters).is_ok_and(|dev| dev == a.dev))
        })
        .collect();
    for (a, u) in adapters.iter_mut().zip(unique) {
        a.serial_unique = u;
    }
}

/// The best stable name for an adapter, for a rig file's `port:` field:
///
/// 1. `usb:VID:PID:SERIAL[:IFACE]` when its serial number is unique
///    ([`SerialAdapter::serial_unique`]);
/// 2. else, on USB, `usb-path:PATH[:IFACE]` (bound to the USB port; resolved by the
///    rig itself, so it does not depend on udev's by-path naming), or its first
///    `/dev/serial/by-path` link if the USB path is unknown;
/// 3. for an on-board UART, its `/dev/serialN` alias or its device node (which does
///    not depend on plug order);
/// 4. otherwise a by-path link, or the device node unless it is order-dependent
///    ([`is_order_dependent`]); `None` if nothing stable is known.
pub fn stable_name(adapter: &SerialAdapter) -> Option<String> {
    if adapter.serial_unique {
        if let Some(sel) = adapter.usb_selector() {
            return Some(sel.to_string());
        }
    }
    let lossy = |p: &PathBuf| p.to_string_lossy().into_owned();
    match adapter.kind {
        AdapterKind::Usb => adapter
            .path_selector()
            .map(|s| s.to_string())
            .or_else(|| adapter.by_path.first().map(lossy)),
        AdapterKind::Platform => adapter
            .aliases
            .first()
            .map(lossy)
            .or_else(|| stable_dev(adapter))
            .or_else(|| adapter.by_path.first().map(lossy)),
        AdapterKind::Other => adapter
            .by_path
            .first()
            .map(lossy)
            .or_else(|| stable_dev(adapter)),
    }
}

fn stable_dev(adapter: &SerialAdapter) -> Option<String> {
    let d = adapter.dev.to_str()?;
    (!is_order_dependent(d)).then(|| d.to_string())
}

/// True for `/dev/ttyUSBn` and `/dev/ttyACMn`: names given in plug order.
pub fn is_order_dependent(path: &str) -> bool {
    ["/dev/ttyUSB", "/dev/ttyACM"].iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// [`scan`] of the running system: `scan("/sys", "/dev")`.
pub fn scan_system() -> Vec<SerialAdapter> {
    scan(Path::new("/sys"), Path::new("/dev"))
}

/// Every serial port under `<sys_root>/class/tty` that has a device and a node under
/// `dev_root`, with its USB identity and `/dev/serial` links; sorted by device node.
/// Unreadable or odd entries are skipped.
pub fn scan(sys_root: &Path, dev_root: &Path) -> Vec<SerialAdapter> {
    let Ok(sys_canon) = fs::canonicalize(sys_root) else {
        return Vec::new();
    };
    let Ok(dir) = fs::read_dir(sys_root.join("class").join("tty")) else {
        return Vec::new();
    };
    let links = DevLinks::read(dev_root);
    let mut out = Vec::new();
    for entry in dir.flatten().take(MAX_ENTRIES) {
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if let Some(a) = scan_one(&sys_canon, &entry.path(), &name, dev_root, &links) {
            out.push(a);
        }
    }
    out.sort_by(|a, b| a.dev.cmp(&b.dev));
    mark_unique_serials(&mut out);
    out
}

fn is_virtual_tty(name: &str) -> bool {
    if matches!(name, "tty" | "console" | "ptmx" | "ttyprintk") {
        return true;
    }
    name.strip_prefix("tty")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn scan_one(
    sys_canon: &Path,
    class_entry: &Path,
    name: &str,
    dev_root: &Path,
    links: &DevLinks,
) -> Option<SerialAdapter> {
    if is_virtual_tty(name) || name.contains('/') || name.starts_with('.') {
        return None;
    }
    let device = fs::canonicalize(class_entry.join("device")).ok()?;
    if !device.starts_with(sys_canon) || !device.is_dir() {
        return None;
    }
    let dev = dev_root.join(name);
    fs::symlink_metadata(&dev).ok()?;

    let mut a = SerialAdapter::new(dev, AdapterKind::Other);
    a.driver = link_name(&device.join("driver"));

    // Walk up from the port's device to its USB device (or the platform device).
    let mut usb_dev: Option<PathBuf> = None;
    let mut platform: Option<PathBuf> = None;
    let mut cur: Option<&Path> = Some(device.as_path());
    for _ in 0..MAX_DEPTH {
        let Some(d) = cur else { break };
        if d == sys_canon || !d.starts_with(sys_canon) {
            break;
        }
        let dname = d.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if a.interface.is_none() && dname.contains(':') {
            if let Some(i) = read_attr(&d.join("bInterfaceNumber")).and_then(|s| parse_hex_u8(&s)) {
                a.interface = Some(i);
            }
        }
        let has_ids = d.join("idVendor").is_file() || d.join("idProduct").is_file();
        if has_ids || usb_path_is_valid(dname) {
            usb_dev = Some(d.to_path_buf());
            break;
        }
        if platform.is_none() {
            let subsystem = link_name(&d.join("subsystem"));
            let on_board = matches!(subsystem.as_deref(), Some("platform" | "amba" | "pnp"));
            if on_board || d.join("of_node").exists() {
                platform = Some(d.to_path_buf());
            }
        }
        cur = d.parent();
    }

    if let Some(u) = usb_dev {
        a.kind = AdapterKind::Usb;
        a.vid = read_attr(&u.join("idVendor")).and_then(|s| parse_hex_attr(&s));
        a.pid = read_attr(&u.join("idProduct")).and_then(|s| parse_hex_attr(&s));
        a.serial = read_attr(&u.join("serial"))
            .filter(|s| !s.is_empty() && !s.chars().any(char::is_control));
        a.manufacturer = read_display_attr(&u.join("manufacturer"));
        a.product = read_display_attr(&u.join("product"));
        a.usb_path = u
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| usb_path_is_valid(n))
            .map(str::to_string);
    } else {
        // serial-core ports with no UART behind them (type 0 = PORT_UNKNOWN).
        if read_attr(&class_entry.join("type")).is_some_and(|t| t == "0") {
            return None;
        }
        if let Some(p) = platform {
            a.kind = AdapterKind::Platform;
            a.platform_name = fs::canonicalize(p.join("of_node"))
                .ok()
                .and_then(|n| n.file_name().and_then(|f| f.to_str()).map(display_text))
                .or_else(|| p.file_name().and_then(|f| f.to_str()).map(display_text));
        }
    }

    a.by_id = links.pointing_at(&links.by_id, &a.dev);
    a.by_path = links.pointing_at(&links.by_path, &a.dev);
    a.aliases = links.pointing_at(&links.aliases, &a.dev);
    Some(a)
}

/// `(link path, resolved target)` of the `/dev/serial` links and `/dev/serialN`
/// aliases.
struct DevLinks {
    by_id: Vec<(PathBuf, PathBuf)>,
    by_path: Vec<(PathBuf, PathBuf)>,
    aliases: Vec<(PathBuf, PathBuf)>,
}

impl DevLinks {
    fn read(dev_root: &Path) -> DevLinks {
        let serial = dev_root.join("serial");
        let aliases = fs::read_dir(dev_root)
            .map(|d| {
                d.flatten()
                    .take(MAX_ENTRIES * 4)
                    .filter(|e| {
                        e.file_name().to_str().is_some_and(|n| {
                            n.strip_prefix("serial").is_some_and(|k| {
                                !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit())
                            })
                        })
                    })
                    .filter_map(|e| link_target(&e.path()))
                    .collect()
            })
            .unwrap_or_default();
        DevLinks {
            by_id: read_links(&serial.join("by-id")),
            by_path: read_links(&serial.join("by-path")),
            aliases,
        }
    }

    fn pointing_at(&self, links: &[(PathBuf, PathBuf)], dev: &Path) -> Vec<PathBuf> {
        let want = normalize(dev);
        let want_canon = fs::canonicalize(dev).ok();
        let mut out: Vec<PathBuf> = links
            .iter()
            .filter(|(_, target)| {
                *target == want
                    || want_canon
                        .as_ref()
                        .is_some_and(|w| fs::canonicalize(target).is_ok_and(|t| t == *w))
            })
            .map(|(link, _)| link.clone())
            .collect();
        out.sort();
        out
    }
}

fn read_links(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    let Ok(d) = fs::read_dir(dir) else {
        return Vec::new();
    };
    d.flatten()
        .take(MAX_ENTRIES)
        .filter_map(|e| link_target(&e.path()))
        .collect()
}

/// `(link, where it points, lexically normalised)` for a symlink.
fn link_target(link: &Path) -> Option<(PathBuf, PathBuf)> {
    let target = fs::read_link(link).ok()?;
    let base = link.parent()?;
    Some((link.to_path_buf(), normalize(&base.join(target))))
}

/// Remove `.` and resolve `..` lexically (no file system access).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The last component of where a symlink points (`driver` → `ftdi_sio`).
fn link_name(link: &Path) -> Option<String> {
    let t = fs::read_link(link).ok()?;
    t.file_name().and_then(|n| n.to_str()).map(display_text)
}

/// At most [`MAX_ATTR_BYTES`] of a regular file; `None` if it is larger, not a
/// regular file or unreadable.
fn read_attr_bytes(path: &Path) -> Option<Vec<u8>> {
    if !fs::metadata(path).ok()?.is_file() {
        return None;
    }
    let f = fs::File::open(path).ok()?;
    let mut buf = Vec::with_capacity(64);
    f.take(MAX_ATTR_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .ok()?;
    (buf.len() <= MAX_ATTR_BYTES).then_some(buf)
}

/// A UTF-8 attribute, trimmed; `None` if not UTF-8.
fn read_attr(path: &Path) -> Option<String> {
    let b = read_attr_bytes(path)?;
    String::from_utf8(b).ok().map(|s| s.trim().to_string())
}

/// A display attribute: lossy UTF-8, control characters replaced, trimmed, non-empty.
fn read_display_attr(path: &Path) -> Option<String> {
    let b = read_attr_bytes(path)?;
    let s = display_text(String::from_utf8_lossy(&b).trim());
    (!s.is_empty()).then_some(s)
}

/// `s` with control characters and Unicode line/paragraph separators replaced by `?`.
fn display_text(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// `idVendor`/`idProduct`: exactly 4 hex digits.
fn parse_hex_attr(s: &str) -> Option<u16> {
    (s.len() == 4 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u16::from_str_radix(s, 16).ok())
        .flatten()
}

/// `bInterfaceNumber`: 1 or 2 hex digits.
fn parse_hex_u8(s: &str) -> Option<u8> {
    (!s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u8::from_str_radix(s, 16).ok())
        .flatten()
}

fn parse_hex16(s: &str, what: &str) -> Result<u16, String> {
    parse_hex_attr(s).ok_or_else(|| format!("{what} `{}` is not 4 hex digits", shown(s)))
}

fn parse_iface(s: &str) -> Result<u8, String> {
    if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "interface `{}` is not a decimal number 0..255",
            shown(s)
        ));
    }
    s.parse::<u8>()
        .map_err(|_| format!("interface `{}` is not a decimal number 0..255", shown(s)))
}

/// True for serial numbers a selector can carry: 1..=126 printable ASCII characters
/// other than `:`, `"` and `\`.
pub fn serial_is_selector_safe(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SERIAL_CHARS
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b':' | b'"' | b'\\'))
}

fn check_serial(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("empty serial number".into());
    }
    if !serial_is_selector_safe(s) {
        return Err(format!(
            "serial number `{}` must be 1..{MAX_SERIAL_CHARS} printable ASCII characters without spaces, `:`, `\"` or `\\`",
            shown(s)
        ));
    }
    Ok(())
}

/// A USB device's bus-port path: `BUS-PORT[.PORT…]`, numbers of at most 3 digits,
/// at most 7 ports (the USB tier limit).
fn usb_path_is_valid(p: &str) -> bool {
    let num = |s: &str| !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit());
    let Some((bus, ports)) = p.split_once('-') else {
        return false;
    };
    let ports: Vec<&str> = ports.split('.').collect();
    num(bus) && ports.len() <= 7 && ports.iter().all(|s| num(s))
}

/// `s` for an error message: control characters replaced, at most 80 characters.
fn shown(s: &str) -> String {
    let mut t: String = display_text(s).chars().take(80).collect();
    if s.chars().count() > 80 {
        t.push('…');
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fake `/sys` and `/dev` in a temporary directory.
    struct Fake {
        _tmp: tempfile::TempDir,
        sys: PathBuf,
        dev: PathBuf,
    }

    const PCI: &str =
        "devices/platform/scb/fd500000.pcie/pci0000:00/0000:00:00.0/0000:01:00.0/usb1/1-1";

    impl Fake {
        fn new() -> Fake {
            let tmp = tempfile::tempdir().unwrap();
            let sys = tmp.path().join("sys");
            let dev = tmp.path().join("dev");
            fs::create_dir_all(sys.join("class/tty")).unwrap();
            fs::create_dir_all(dev.join("serial/by-id")).unwrap();
            fs::create_dir_all(dev.join("serial/by-path")).unwrap();
            // The hub the adapters are plugged into has ids of its own: the walk
            // must stop below it.
            let hub = sys.join(PCI);
            fs::create_dir_all(&hub).unwrap();
            fs::write(hub.join("idVendor"), "2109\n").unwrap();
            fs::write(hub.join("idProduct"), "3431\n").unwrap();
            Fake {
                _tmp: tmp,
                sys,
                dev,
            }
        }

        fn write(&self, rel: &str, content: &[u8]) {
            let p = self.sys.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, content).unwrap();
        }

        /// A USB device at `PCI/<port>` with the given attributes (`None`: absent).
        fn usb_device(
            &self,
            port: &str,
            vid: &str,
            pid: &str,
            serial: Option<&[u8]>,
            mfr: &str,
            product: &str,
        ) -> String {
            let d = format!("{PCI}/{port}");
            self.write(&format!("{d}/idVendor"), format!("{vid}\n").as_bytes());
            self.write(&format!("{d}/idProduct"), format!("{pid}\n").as_bytes());
            if let Some(s) = serial {
                self.write(&format!("{d}/serial"), s);
            }
            self.write(&format!("{d}/manufacturer"), format!("{mfr}\n").as_bytes());
            self.write(&format!("{d}/product"), format!("{product}\n").as_bytes());
            d
        }

        /// A usb-serial port (`ttyUSBn`) on interface `iface` of the device at `d`,
        /// linked from class/tty the way the kernel does, with a /dev node.
        fn usb_serial_tty(&self, d: &str, port: &str, iface: u8, tty: &str, driver: &str) {
            let intf = format!("{d}/{port}:1.{iface}");
            self.write(
                &format!("{intf}/bInterfaceNumber"),
                format!("{iface:02x}\n").as_bytes(),
            );
            let portdir = format!("{intf}/{tty}");
            fs::create_dir_all(self.sys.join(&portdir).join("tty").join(tty)).unwrap();
            fs::create_dir_all(self.sys.join("bus/usb-serial/drivers").join(driver)).unwrap();
            symlink(
                self.sys.join("bus/usb-serial/drivers").join(driver),
                self.sys.join(&portdir).join("driver"),
            )
            .unwrap();
            symlink(
                format!("../../../{tty}"),
                self.sys.join(&portdir).join("tty").join(tty).join("device"),
            )
            .unwrap();
            symlink(
                format!("../../{portdir}/tty/{tty}"),
                self.sys.join("class/tty").join(tty),
            )
            .unwrap();
            fs::write(self.dev.join(tty), b"").unwrap();
        }

        /// A CDC ACM port: the tty's device is the interface itself.
        fn acm_tty(&self, d: &str, port: &str, iface: u8, tty: &str) {
            let intf = format!("{d}/{port}:1.{iface}");
            self.write(
                &format!("{intf}/bInterfaceNumber"),
                format!("{iface:02x}\n").as_bytes(),
            );
            fs::create_dir_all(self.sys.join(&intf).join("tty").join(tty)).unwrap();
            symlink(
                format!("../../../{port}:1.{iface}"),
                self.sys.join(&intf).join("tty").join(tty).join("device"),
            )
            .unwrap();
            symlink(
                format!("../../{intf}/tty/{tty}"),
                self.sys.join("class/tty").join(tty),
            )
            .unwrap();
            fs::write(self.dev.join(tty), b"").unwrap();
        }

        fn link(&self, kind: &str, name: &str, tty: &str) {
            symlink(
                format!("../../{tty}"),
                self.dev.join("serial").join(kind).join(name),
            )
            .unwrap();
        }

        fn scan(&self) -> Vec<SerialAdapter> {
            scan(&self.sys, &self.dev)
        }

        fn dev(&self, tty: &str) -> PathBuf {
            self.dev.join(tty)
        }
    }

    /// The bench of the tests: FT2232 (two ports, one serial), CP2102 with serial,
    /// two CH340 without serial, a CDC ACM device, the Pi's PL011 UART, an unused
    /// 8250 port, virtual consoles.
    fn bench() -> Fake {
        let f = Fake::new();
        let ftdi = f.usb_device(
            "1-1.3",
            "0403",
            "6010",
            Some(b"FT4ABC12\n"),
            "FTDI",
            "Dual RS232-HS",
        );
        f.usb_serial_tty(&ftdi, "1-1.3", 0, "ttyUSB2", "ftdi_sio");
        f.usb_serial_tty(&ftdi, "1-1.3", 1, "ttyUSB3", "ftdi_sio");
        f.link(
            "by-id",
            "usb-FTDI_Dual_RS232-HS_FT4ABC12-if00-port0",
            "ttyUSB2",
        );
        f.link(
            "by-id",
            "usb-FTDI_Dual_RS232-HS_FT4ABC12-if01-port0",
            "ttyUSB3",
        );
        f.link(
            "by-path",
            "platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.3:1.0-port0",
            "ttyUSB2",
        );
        f.link(
            "by-path",
            "platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.3:1.1-port0",
            "ttyUSB3",
        );

        let cp = f.usb_device(
            "1-1.1",
            "10c4",
            "ea60",
            Some(b"0001A2B3\n"),
            "Silicon Labs",
            "CP2102 USB to UART Bridge Controller",
        );
        f.usb_serial_tty(&cp, "1-1.1", 0, "ttyUSB0", "cp210x");
        f.link(
            "by-id",
            "usb-Silicon_Labs_CP2102_USB_to_UART_Bridge_Controller_0001A2B3-if00-port0",
            "ttyUSB0",
        );

        for (port, tty) in [("1-1.2", "ttyUSB1"), ("1-1.4", "ttyUSB4")] {
            let ch = f.usb_device(
                port,
                "1a86",
                "7523",
                None,
                "QinHeng Electronics",
                "USB Serial",
            );
            f.usb_serial_tty(&ch, port, 0, tty, "ch341-uart");
        }
        f.link(
            "by-path",
            "platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.2:1.0-port0",
            "ttyUSB1",
        );

        let acm = f.usb_device(
            "1-1.4.2",
            "2e8a",
            "000a",
            Some(b"E6614103E7"),
            "Raspberry Pi",
            "Pico",
        );
        f.acm_tty(&acm, "1-1.4.2", 0, "ttyACM0");

        // On-board PL011 UART, kernel ≥ 6.5 layout (serial-base port device).
        let uart = "devices/platform/soc/fe201000.serial";
        fs::create_dir_all(f.sys.join("firmware/devicetree/base/soc/serial@7e201000")).unwrap();
        fs::create_dir_all(f.sys.join("bus/platform")).unwrap();
        fs::create_dir_all(f.sys.join("bus/serial-base")).unwrap();
        fs::create_dir_all(
            f.sys
                .join(uart)
                .join("fe201000.serial:0/fe201000.serial:0.0/tty/ttyAMA0"),
        )
        .unwrap();
        symlink(
            "../../../../firmware/devicetree/base/soc/serial@7e201000",
            f.sys.join(uart).join("of_node"),
        )
        .unwrap();
        symlink(
            "../../../../bus/platform",
            f.sys.join(uart).join("subsystem"),
        )
        .unwrap();
        symlink(
            "../../../../../../bus/serial-base",
            f.sys
                .join(uart)
                .join("fe201000.serial:0/fe201000.serial:0.0/subsystem"),
        )
        .unwrap();
        symlink(
            "../../../fe201000.serial:0.0",
            f.sys
                .join(uart)
                .join("fe201000.serial:0/fe201000.serial:0.0/tty/ttyAMA0/device"),
        )
        .unwrap();
        symlink(
            format!("../../{uart}/fe201000.serial:0/fe201000.serial:0.0/tty/ttyAMA0"),
            f.sys.join("class/tty/ttyAMA0"),
        )
        .unwrap();
        f.write(
            &format!("{uart}/fe201000.serial:0/fe201000.serial:0.0/tty/ttyAMA0/type"),
            b"83\n",
        );
        fs::write(f.dev.join("ttyAMA0"), b"").unwrap();
        symlink("ttyAMA0", f.dev.join("serial0")).unwrap();

        // An 8250 port with no UART behind it: type 0.
        let s8250 = "devices/platform/serial8250";
        fs::create_dir_all(f.sys.join(s8250).join("tty/ttyS1")).unwrap();
        symlink(
            "../../../../../bus/platform",
            f.sys.join(s8250).join("subsystem"),
        )
        .unwrap();
        symlink(
            "../../../serial8250",
            f.sys.join(s8250).join("tty/ttyS1/device"),
        )
        .unwrap();
        f.write(&format!("{s8250}/tty/ttyS1/type"), b"0\n");
        symlink(
            format!("../../{s8250}/tty/ttyS1"),
            f.sys.join("class/tty/ttyS1"),
        )
        .unwrap();
        fs::write(f.dev.join("ttyS1"), b"").unwrap();

        // Virtual consoles and pseudo-terminal master: no device link (tty1 even has
        // one here, and must still be skipped by name).
        for v in ["tty", "tty0", "console", "ptmx"] {
            fs::create_dir_all(f.sys.join("devices/virtual/tty").join(v)).unwrap();
            symlink(
                format!("../../devices/virtual/tty/{v}"),
                f.sys.join("class/tty").join(v),
            )
            .unwrap();
            fs::write(f.dev.join(v), b"").unwrap();
        }
        fs::create_dir_all(f.sys.join("devices/virtual/tty/tty1")).unwrap();
        symlink(
            "../../../platform/serial8250",
            f.sys.join("devices/virtual/tty/tty1/device"),
        )
        .unwrap();
        symlink(
            "../../devices/virtual/tty/tty1",
            f.sys.join("class/tty/tty1"),
        )
        .unwrap();
        fs::write(f.dev.join("tty1"), b"").unwrap();
        f
    }

    fn by_dev<'a>(list: &'a [SerialAdapter], f: &Fake, tty: &str) -> &'a SerialAdapter {
        let d = f.dev(tty);
        list.iter()
            .find(|a| a.dev == d)
            .unwrap_or_else(|| panic!("{tty} not scanned: {list:#?}"))
    }

    fn sel(s: &str) -> UsbSelector {
        UsbSelector::parse(s).unwrap()
    }

    #[test]
    fn scan_reads_the_identities_of_every_adapter() {
        let f = bench();
        let list = f.scan();
        let names: Vec<String> = list
            .iter()
            .map(|a| a.dev.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["ttyACM0", "ttyAMA0", "ttyUSB0", "ttyUSB1", "ttyUSB2", "ttyUSB3", "ttyUSB4"]
        );

        let a = by_dev(&list, &f, "ttyUSB3");
        assert_eq!(a.kind, AdapterKind::Usb);
        assert_eq!((a.vid, a.pid), (Some(0x0403), Some(0x6010)));
        assert_eq!(a.serial.as_deref(), Some("FT4ABC12"));
        assert_eq!(a.manufacturer.as_deref(), Some("FTDI"));
        assert_eq!(a.product.as_deref(), Some("Dual RS232-HS"));
        assert_eq!(a.interface, Some(1));
        assert_eq!(a.usb_path.as_deref(), Some("1-1.3"));
        assert_eq!(a.driver.as_deref(), Some("ftdi_sio"));
        assert_eq!(
            a.by_id,
            [f.dev
                .join("serial/by-id/usb-FTDI_Dual_RS232-HS_FT4ABC12-if01-port0")]
        );
        assert_eq!(
            a.by_path,
            [f.dev.join(
                "serial/by-path/platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.3:1.1-port0"
            )]
        );
        assert!(a.serial_unique);
        assert_eq!(stable_name(a).as_deref(), Some("usb:0403:6010:FT4ABC12:1"));
        assert_eq!(
            stable_name(by_dev(&list, &f, "ttyUSB2")).as_deref(),
            Some("usb:0403:6010:FT4ABC12:0")
        );

        let cp = by_dev(&list, &f, "ttyUSB0");
        assert_eq!(
            (cp.vid, cp.pid, cp.interface),
            (Some(0x10c4), Some(0xea60), Some(0))
        );
        assert_eq!(cp.usb_path.as_deref(), Some("1-1.1"));
        assert_eq!(cp.by_id.len(), 1);
        assert!(cp.by_path.is_empty());
        assert_eq!(stable_name(cp).as_deref(), Some("usb:10c4:ea60:0001A2B3:0"));
        assert!(!cp.bound_by_position());

        for (tty, path) in [("ttyUSB1", "1-1.2"), ("ttyUSB4", "1-1.4")] {
            let ch = by_dev(&list, &f, tty);
            assert_eq!(ch.serial, None);
            assert!(!ch.serial_unique);
            assert!(ch.bound_by_position());
            assert_eq!(ch.driver.as_deref(), Some("ch341-uart"));
            assert_eq!(stable_name(ch), Some(format!("usb-path:{path}:0")));
        }
        assert_eq!(by_dev(&list, &f, "ttyUSB1").by_path.len(), 1);

        // CDC ACM behind a hub port: interface read from the device directory itself.
        let acm = by_dev(&list, &f, "ttyACM0");
        assert_eq!(acm.usb_path.as_deref(), Some("1-1.4.2"));
        assert_eq!(acm.interface, Some(0));
        assert_eq!(acm.driver, None);
        assert_eq!(
            stable_name(acm).as_deref(),
            Some("usb:2e8a:000a:E6614103E7:0")
        );

        let uart = by_dev(&list, &f, "ttyAMA0");
        assert_eq!(uart.kind, AdapterKind::Platform);
        assert_eq!(uart.platform_name.as_deref(), Some("serial@7e201000"));
        assert_eq!(
            (uart.vid, uart.serial.as_ref(), uart.usb_path.as_ref()),
            (None, None, None)
        );
        assert_eq!(uart.aliases, [f.dev.join("serial0")]);
        assert!(!uart.bound_by_position());
        assert_eq!(
            stable_name(uart),
            Some(f.dev.join("serial0").to_string_lossy().into_owned())
        );
    }

    #[test]
    fn selectors_resolve_to_one_adapter_whatever_the_plug_order() {
        let f = bench();
        let list = f.scan();
        let cases = [
            ("usb:0403:6010:FT4ABC12:0", "ttyUSB2"),
            ("usb:0403:6010:ft4abc12:1", ""), // serial numbers are case-sensitive
            ("usb:0403:6010:FT4ABC12:1", "ttyUSB3"),
            ("usb:10C4:EA60:0001A2B3", "ttyUSB0"),
            ("usb:0001A2B3", "ttyUSB0"),
            ("usb-path:1-1.2", "ttyUSB1"),
            ("usb-path:1-1.4:0", "ttyUSB4"),
            ("usb-path:1-1.4.2", "ttyACM0"),
            ("usb-path:1-1.3:1", "ttyUSB3"),
        ];
        for (s, tty) in cases {
            let r = resolve(&sel(s), &list);
            if tty.is_empty() {
                assert!(
                    matches!(r, Err(ResolveError::NotFound { .. })),
                    "{s}: {r:?}"
                );
            } else {
                assert_eq!(r, Ok(f.dev(tty)), "{s}");
            }
        }
        // Every stable name resolves back to its own adapter.
        for a in &list {
            let Some(name) = stable_name(a) else { continue };
            if is_selector(&name) {
                assert_eq!(resolve(&sel(&name), &list), Ok(a.dev.clone()), "{name}");
            }
        }
    }

    #[test]
    fn ambiguous_and_missing_selectors_say_what_is_there() {
        let f = bench();
        let list = f.scan();
        match resolve(&sel("usb:0403:6010:FT4ABC12"), &list) {
            Err(e @ ResolveError::Ambiguous { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("matches 2 serial adapters"), "{msg}");
                assert!(msg.contains("add the interface number"), "{msg}");
                assert!(msg.contains("interface 0 at 1-1.3"), "{msg}");
                assert!(msg.contains("interface 1 at 1-1.3"), "{msg}");
                assert!(msg.contains("ttyUSB2") && msg.contains("ttyUSB3"), "{msg}");
                assert!(!msg.contains("ttyUSB0"), "{msg}");
            }
            other => panic!("expected ambiguity, got {other:?}"),
        }
        match resolve(&sel("usb:0403:6001:A9XYZ"), &list) {
            Err(e @ ResolveError::NotFound { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.starts_with("no serial adapter matches usb:0403:6001:A9XYZ"),
                    "{msg}"
                );
                assert!(msg.contains("\"FT4ABC12\""), "{msg}");
                assert!(msg.contains("1a86:7523 without serial"), "{msg}");
            }
            other => panic!("expected not found, got {other:?}"),
        }
        let none = resolve(&sel("usb-path:2-1"), &[]).unwrap_err();
        assert!(none.to_string().contains("none is attached"), "{none}");
    }

    #[test]
    fn a_serial_number_shared_by_two_adapters_is_not_an_identity() {
        let f = Fake::new();
        for (port, tty) in [("1-1.1", "ttyUSB0"), ("1-1.2", "ttyUSB1")] {
            let d = f.usb_device(
                port,
                "0403",
                "6001",
                Some(b"A50285BI\n"),
                "FTDI",
                "FT232R USB UART",
            );
            f.usb_serial_tty(&d, port, 0, tty, "ftdi_sio");
        }
        let list = f.scan();
        assert_eq!(list.len(), 2);
        for a in &list {
            assert!(!a.serial_unique && a.bound_by_position(), "{a:?}");
            assert!(
                stable_name(a).unwrap().starts_with("usb-path:1-1."),
                "{a:?}"
            );
        }
        let e = resolve(&sel("usb:0403:6001:A50285BI:0"), &list).unwrap_err();
        assert!(matches!(e, ResolveError::Ambiguous { .. }), "{e:?}");
        assert!(e.to_string().contains("share a serial number"), "{e}");
        let e = resolve(&sel("usb:A50285BI"), &list).unwrap_err();
        assert!(e.to_string().contains("usb-path"), "{e}");
    }

    #[test]
    fn hostile_attributes_are_bounded_and_never_panic() {
        let f = Fake::new();
        // Huge serial, non-UTF-8 manufacturer, control characters in the product,
        // missing idProduct.
        let d = f.usb_device("1-1.1", "0403", "6001", None, "x", "x");
        f.write(&format!("{d}/serial"), &vec![b'A'; 1 << 20]);
        f.write(&format!("{d}/manufacturer"), b"FT\xffDI\n");
        f.write(&format!("{d}/product"), b"line\nbreak\x1b[31m\xe2\x80\xa8");
        fs::remove_file(f.sys.join(&d).join("idProduct")).unwrap();
        f.usb_serial_tty(&d, "1-1.1", 0, "ttyUSB0", "ftdi_sio");
        // Non-UTF-8 serial; odd idVendor; interface number not hex.
        let d2 = f.usb_device("1-1.2", "04031", "zzzz", Some(b"AB\xc3\x28CD"), "m", "p");
        f.usb_serial_tty(&d2, "1-1.2", 0, "ttyUSB1", "ftdi_sio");
        f.write(&format!("{d2}/1-1.2:1.0/bInterfaceNumber"), b"xyz\n");
        // Serial with a colon: kept for display, not an identity.
        let d3 = f.usb_device(
            "1-1.3",
            "067b",
            "2303",
            Some(b"AB:CD\n"),
            "Prolific",
            "PL2303",
        );
        f.usb_serial_tty(&d3, "1-1.3", 0, "ttyUSB2", "pl2303");
        // A FIFO as an attribute must not block the scan.
        let fifo = f.sys.join(&d3).join("product");
        fs::remove_file(&fifo).unwrap();
        nix_mkfifo(&fifo);
        // Dangling device link, link loop, no /dev node, a by-id link to nowhere.
        fs::create_dir_all(f.sys.join("class/tty/ttyUSB7")).unwrap();
        symlink(
            "../../../devices/nowhere",
            f.sys.join("class/tty/ttyUSB7/device"),
        )
        .unwrap();
        fs::create_dir_all(f.sys.join("class/tty/ttyUSB8")).unwrap();
        symlink("device", f.sys.join("class/tty/ttyUSB8/device")).unwrap();
        fs::write(f.dev.join("ttyUSB7"), b"").unwrap();
        fs::write(f.dev.join("ttyUSB8"), b"").unwrap();
        let d4 = f.usb_device("1-1.4", "1a86", "7523", None, "QinHeng", "USB Serial");
        f.usb_serial_tty(&d4, "1-1.4", 0, "ttyUSB9", "ch341-uart");
        fs::remove_file(f.dev.join("ttyUSB9")).unwrap();
        symlink("../../ttyUSB99", f.dev.join("serial/by-id/usb-gone")).unwrap();
        symlink(
            "../../../../../../../../../../../../../..",
            f.dev.join("serial/by-path/up"),
        )
        .unwrap();

        let list = f.scan();
        let names: Vec<_> = list.iter().map(|a| a.dev.clone()).collect();
        assert_eq!(
            names,
            [f.dev("ttyUSB0"), f.dev("ttyUSB1"), f.dev("ttyUSB2")]
        );

        let a = &list[0];
        assert_eq!(a.serial, None, "a 1 MiB serial is treated as absent");
        assert_eq!(a.manufacturer.as_deref(), Some("FT\u{fffd}DI"));
        let p = a.product.as_deref().unwrap();
        assert!(
            !p.chars().any(|c| c.is_control() || c == '\u{2028}'),
            "{p:?}"
        );
        assert!(p.starts_with("line?break?"), "{p:?}");
        assert_eq!((a.vid, a.pid), (Some(0x0403), None));
        assert_eq!(stable_name(a).as_deref(), Some("usb-path:1-1.1:0"));

        let b = &list[1];
        assert_eq!(
            (b.vid, b.pid, b.serial.as_ref(), b.interface),
            (None, None, None, None)
        );
        assert_eq!(b.kind, AdapterKind::Usb);
        assert_eq!(stable_name(b).as_deref(), Some("usb-path:1-1.2"));

        let c = &list[2];
        assert_eq!(c.serial.as_deref(), Some("AB:CD"));
        assert_eq!(c.product, None);
        assert!(!c.serial_unique && c.usb_selector().is_none());
        assert!(
            c.identity().contains("serial \"AB:CD\""),
            "{}",
            c.identity()
        );
        for a in &list {
            assert!(a.by_id.is_empty() && a.by_path.is_empty(), "{a:?}");
        }
    }

    fn nix_mkfifo(p: &Path) {
        let status = std::process::Command::new("mkfifo")
            .arg(p)
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[test]
    fn missing_roots_give_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(scan(&tmp.path().join("nosys"), &tmp.path().join("nodev")).is_empty());
        fs::create_dir_all(tmp.path().join("sys/class")).unwrap();
        fs::write(tmp.path().join("sys/class/tty"), b"not a directory").unwrap();
        assert!(scan(&tmp.path().join("sys"), tmp.path()).is_empty());
    }

    #[test]
    fn selector_syntax_and_round_trip() {
        for s in [
            "usb:0403:6010:FT4ABC12:1",
            "usb:0403:6010:FT4ABC12",
            "usb:10c4:ea60:0001:0",
            "usb:FT4ABC12",
            "usb-path:1-1.3",
            "usb-path:1-1.3.2:2",
            "usb-path:3-12",
        ] {
            let p = sel(s);
            assert_eq!(p.to_string(), s);
            assert_eq!(UsbSelector::parse(&p.to_string()), Ok(p.clone()));
            assert_eq!(s.parse::<UsbSelector>(), Ok(p));
        }
        assert_eq!(
            sel("usb:0403:6010:X:1"),
            UsbSelector::Usb {
                vid: 0x0403,
                pid: 0x6010,
                serial: "X".into(),
                interface: Some(1)
            }
        );
        assert_eq!(sel("usb:0A5C:21E8:Z").to_string(), "usb:0a5c:21e8:Z");
        assert_eq!(sel("usb-path:1-1:007").to_string(), "usb-path:1-1:7");

        let bad = [
            ("usb:", "empty serial"),
            ("usb:403:6010:X", "VID `403` is not 4 hex digits"),
            ("usb:0403:60g0:X", "PID `60g0`"),
            ("usb:0403:6010:X:256", "interface `256`"),
            ("usb:0403:6010:X:-1", "interface `-1`"),
            ("usb:0403:6010::1", "empty serial"),
            ("usb:0403:X", "2 `:`-separated fields"),
            ("usb:a:b:c:d:e", "5 `:`-separated fields"),
            ("usb:has space", "printable ASCII"),
            ("usb-path:1.3", "not a USB port path"),
            ("usb-path:1-1..3", "not a USB port path"),
            ("usb-path:1-1.3:x", "interface `x`"),
            ("usb-path:", "not a USB port path"),
            ("/dev/ttyUSB0", "not a USB selector"),
            ("serial:ABC", "not a USB selector"),
        ];
        for (s, want) in bad {
            let e = UsbSelector::parse(s).unwrap_err();
            assert!(e.contains(want), "{s}: {e}");
            assert!(e.starts_with(s), "{s}: {e}");
        }
        let long = format!("usb:{}", "A".repeat(127));
        assert!(UsbSelector::parse(&long).is_err());
        assert!(UsbSelector::parse(&long[..130]).is_ok());
        let e = UsbSelector::parse("usb:a\nb").unwrap_err();
        assert!(!e.contains('\n'), "{e:?}");
        assert!(
            is_selector("usb:X") && is_selector("usb-path:1-1") && !is_selector("/dev/ttyUSB0")
        );
    }

    #[test]
    fn order_dependent_names() {
        for p in ["/dev/ttyUSB0", "/dev/ttyUSB12", "/dev/ttyACM3"] {
            assert!(is_order_dependent(p), "{p}");
        }
        for p in [
            "/dev/ttyUSB",
            "/dev/ttyUSBx",
            "/dev/ttyUSB0 ",
            "/dev/ttyAMA0",
            "/dev/ttyS0",
            "/dev/serial0",
            "/dev/serial/by-id/usb-FTDI-if00-port0",
            "ttyUSB0",
            "usb:0403:6010:X",
        ] {
            assert!(!is_order_dependent(p), "{p}");
        }
    }

    #[test]
    fn stable_name_without_usb_identity() {
        let mut a = SerialAdapter::new("/dev/ttyUSB5", AdapterKind::Usb);
        assert_eq!(stable_name(&a), None);
        a.by_path = vec![PathBuf::from(
            "/dev/serial/by-path/pci-0000:00:14.0-usb-0:2:1.0-port0",
        )];
        assert_eq!(
            stable_name(&a).as_deref(),
            Some("/dev/serial/by-path/pci-0000:00:14.0-usb-0:2:1.0-port0")
        );
        // A serial that was not checked for uniqueness is not used.
        a.vid = Some(0x0403);
        a.pid = Some(0x6001);
        a.serial = Some("A1".into());
        a.usb_path = Some("1-2".into());
        assert_eq!(stable_name(&a).as_deref(), Some("usb-path:1-2"));
        mark_unique_serials(std::slice::from_mut(&mut a));
        assert_eq!(stable_name(&a).as_deref(), Some("usb:0403:6001:A1"));

        let pci = SerialAdapter::new("/dev/ttyS4", AdapterKind::Other);
        assert_eq!(stable_name(&pci).as_deref(), Some("/dev/ttyS4"));
        let acm = SerialAdapter::new("/dev/ttyACM0", AdapterKind::Other);
        assert_eq!(stable_name(&acm), None);
    }

    #[test]
    fn scan_of_this_machine_does_not_panic() {
        let list = scan_system();
        for a in &list {
            eprintln!("{}", a.identity());
            assert!(
                fs::symlink_metadata(&a.dev).is_ok(),
                "{} does not exist",
                a.dev.display()
            );
        }
    }
}

//! The rig file: what the bench is made of and how it is wired.
//!
//! Public types here are the *validated* configuration (what the rest of redrig
//! reads). Parsing goes through private `Raw*` mirrors of the YAML so that every
//! semantic mistake can be reported with its position (see the module doc of
//! [`crate::config`]).

use super::device::RawDeviceSpec;
use super::error::Diag;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------
// Validated types
// ---------------------------------------------------------------------------------

/// A whole rig file, validated.
#[derive(Debug, Clone, Serialize)]
pub struct RigConfig {
    /// `rig:` — name and kind of the bench.
    pub rig: RigSection,
    /// `time:` — device-time scale and default time limits.
    pub time: TimeConfig,
    /// `device_profile:` — the profile named in the rig file (name in
    /// `fixtures/devices/` or a path relative to the rig file), `None` when the rig
    /// file has an inline `device:` map instead. `--dut` overrides it; the profile
    /// actually used is [`crate::config::LoadedRig::device_path`].
    pub device_profile: Option<String>,
    /// `lab:` — the virtual lab's simulator commands; present exactly when
    /// `rig.kind` is `virtual`.
    pub lab: Option<LabConfig>,
    /// `instruments:` — one entry per instrument of the bench.
    pub instruments: Instruments,
    /// `network:` — how the rig reaches the device's backend.
    pub network: NetworkConfig,
    /// `health:` — self-tests `redrig doctor` runs where the bench is wired for
    /// them (physical rigs only; empty when absent).
    pub health: HealthConfig,
}

/// `health:` section: loopback wiring on a physical bench that `redrig doctor` uses
/// to prove the rig's own lines work before a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HealthConfig {
    /// Jumpers from a spare output line to a spare input line.
    pub gpio_loopback: Vec<GpioLoopback>,
    /// Spare serial adapters with TX jumpered to RX.
    pub serial_loopback: Vec<SerialLoopback>,
}

/// `{ out: 20, in: 21 }`: BCM `out` is wired to BCM `in`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GpioLoopback {
    /// The driven line.
    pub out: u8,
    /// The sensing line.
    #[serde(rename = "in")]
    pub input: u8,
}

/// `{ port: "usb:…", baud: 115200 }`: an adapter whose TX is jumpered to its RX.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SerialLoopback {
    /// Device path, by-id/by-path link or `usb:` selector.
    pub port: String,
    /// Line speed (default 115200).
    pub baud: u32,
}

impl RigConfig {
    /// True for `rig.kind: virtual`.
    pub fn is_virtual(&self) -> bool {
        self.rig.kind == RigKind::Virtual
    }

    /// The directory for the run lock: `rig.lock_dir` (relative paths are resolved
    /// against the rig file's directory while loading), else
    /// [`crate::lock::default_lock_dir`].
    pub fn lock_dir(&self) -> PathBuf {
        self.rig
            .lock_dir
            .clone()
            .unwrap_or_else(crate::lock::default_lock_dir)
    }
}

/// `rig:` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RigSection {
    /// Name of the bench, `[A-Za-z0-9][A-Za-z0-9._-]*`; names the run lock and the
    /// run directories.
    pub name: String,
    /// `virtual` (the built-in or an external simulator) or `physical` (a real watch).
    pub kind: RigKind,
    /// Directory of the run lock. Default `$XDG_RUNTIME_DIR/redrig`, else
    /// `/tmp/redrig-locks`. Relative to the rig file.
    #[serde(default)]
    pub lock_dir: Option<PathBuf>,
}

/// `rig.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RigKind {
    /// A simulated watch and cloud (the virtual lab); may use `lab:` wires.
    Virtual,
    /// A real watch on a real bench; `time.scale` must be 1 and no `lab:` wires.
    Physical,
}

/// `time:` section. All durations are in device seconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeConfig {
    /// Device seconds per wall second: `> 0` and `<= 1000`; exactly `1` on a
    /// physical rig.
    pub scale: f64,
    /// Default limit for a scenario step that waits for something (device seconds,
    /// `> 0`; default 120).
    #[serde(default = "default_step_timeout")]
    pub step_timeout: f64,
    /// Limit for the device to boot (device seconds, `> 0`; default 60).
    #[serde(default = "default_boot_timeout")]
    pub boot_timeout: f64,
}

fn default_step_timeout() -> f64 {
    120.0
}
fn default_boot_timeout() -> f64 {
    60.0
}

/// `lab:` section (virtual rigs only).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabConfig {
    /// argv of an external watch simulator (see `docs/virtual-hardware.md`);
    /// `null` = the built-in one. Must not be empty when given.
    #[serde(default)]
    pub watch_command: Option<Vec<String>>,
    /// argv of an external cloud simulator; `null` = the built-in one.
    #[serde(default)]
    pub cloud_command: Option<Vec<String>>,
    /// Whether the watch simulator runs in a network namespace of its own, where it
    /// can reach nothing but the cell gateway (needs root or CAP_SYS_ADMIN).
    #[serde(default)]
    pub isolate_network: Isolation,
}

/// `lab.isolate_network`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Isolate when this process may create network namespaces; otherwise the
    /// gateway works by address and the run log says the watch is not isolated.
    #[default]
    Auto,
    /// Isolate or refuse to start.
    Always,
    /// Never isolate.
    Never,
}

/// A wire of the virtual lab, written `lab:NAME` where a port, path or address is
/// expected (virtual rigs only). The names are the keys of the lab's `wires.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LabWire {
    /// `lab:console` — the watch's UART (pty).
    Console,
    /// `lab:gnss` — the GNSS receiver input (pty).
    Gnss,
    /// `lab:modem` — the cellular modem line (pty).
    Modem,
    /// `lab:gpio` — the GPIO socket (power, buttons, indicators).
    Gpio,
    /// `lab:flash_drive` — the bootloader's mass-storage directory.
    FlashDrive,
    /// `lab:debug` — the debug-port socket.
    Debug,
    /// `lab:cloud.device` — the cloud's device endpoint (TCP).
    CloudDevice,
    /// `lab:cloud.api` — the cloud's parent-app API (TCP).
    CloudApi,
}

impl LabWire {
    /// Every wire.
    pub const ALL: [LabWire; 8] = [
        LabWire::Console,
        LabWire::Gnss,
        LabWire::Modem,
        LabWire::Gpio,
        LabWire::FlashDrive,
        LabWire::Debug,
        LabWire::CloudDevice,
        LabWire::CloudApi,
    ];

    /// The name after `lab:`.
    pub fn name(self) -> &'static str {
        match self {
            LabWire::Console => "console",
            LabWire::Gnss => "gnss",
            LabWire::Modem => "modem",
            LabWire::Gpio => "gpio",
            LabWire::FlashDrive => "flash_drive",
            LabWire::Debug => "debug",
            LabWire::CloudDevice => "cloud.device",
            LabWire::CloudApi => "cloud.api",
        }
    }

    /// The wire called `name` (without `lab:`).
    pub fn from_name(name: &str) -> Option<LabWire> {
        LabWire::ALL.into_iter().find(|w| w.name() == name)
    }
}

/// Where an instrument connects: a virtual-lab wire or a real thing (a serial
/// device path, a directory, `HOST:PORT`). Written as one string in YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRef {
    /// `lab:NAME`.
    Lab(LabWire),
    /// Anything else, as written.
    Real(String),
}

impl PortRef {
    /// The string form (`lab:console`, `/dev/ttyUSB0`, …).
    pub fn as_string(&self) -> String {
        match self {
            PortRef::Lab(w) => format!("lab:{}", w.name()),
            PortRef::Real(s) => s.clone(),
        }
    }
}

impl Serialize for PortRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_string())
    }
}

/// One GPIO line of a Raspberry Pi (BCM numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GpioLine {
    /// BCM GPIO number, 0..=27, not 0/1 (ID EEPROM) nor 14/15 (UART0).
    pub pin: u8,
    /// True when the line is active at low level (default false).
    pub active_low: bool,
}

/// `instruments.power`: the watch's power supply switch.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "backend", rename_all = "kebab-case")]
pub enum PowerConfig {
    /// `{ backend: virtual }` — the lab's `power` GPIO line.
    Virtual,
    /// `{ backend: rppal, pin: 17, active_low: false }` — a relay on a Pi GPIO.
    Rppal(GpioLine),
}

/// `instruments.buttons`: actuators pressing the watch's buttons.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "backend", rename_all = "kebab-case")]
pub enum ButtonsConfig {
    /// `{ backend: virtual }` — the lab's button lines.
    Virtual,
    /// `{ backend: rppal, pins: { sos: { pin: 23, active_low: true }, … } }` —
    /// must include `sos` and `power`; names are the device's declared buttons.
    Rppal {
        /// Button name → GPIO line.
        pins: BTreeMap<String, GpioLine>,
    },
}

/// `instruments.indicators`: sensors watching LED, vibration motor, speaker, mic.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "backend", rename_all = "kebab-case")]
pub enum IndicatorsConfig {
    /// `{ backend: virtual }` — the lab's indicator lines.
    Virtual,
    /// `{ backend: rppal, pins: { led: { pin: 5 }, … } }` — names are the device's
    /// declared indicators.
    Rppal {
        /// Indicator name → GPIO line.
        pins: BTreeMap<String, GpioLine>,
    },
}

/// `instruments.console`: the watch's UART.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "backend", rename_all = "kebab-case")]
pub enum ConsoleConfig {
    /// `{ backend: serial, port: "lab:console" | /dev/serial/by-id/…, baud: 115200 }`.
    Serial {
        /// Serial device (`lab:console` on a virtual rig).
        port: PortRef,
        /// A standard baud rate; must equal the device profile's `console.baud`.
        baud: u32,
    },
}

/// `instruments.gnss`: the GNSS simulator feeding the watch's receiver.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "backend", rename_all = "kebab-case")]
pub enum GnssConfig {
    /// `{ backend: serial, port: "lab:gnss", baud: 9600, rate_hz: 1, talker: GP }` —
    /// NMEA written to the receiver's UART (or the lab's pty).
    Serial {
        /// Serial device (`lab:gnss` on a virtual rig).
        port: PortRef,
        /// A standard baud rate; it must carry the chosen rate's sentences.
        baud: u32,
        /// NMEA fix rate: 1, 5 or 10 (default 1).
        rate_hz: u32,
        /// `GP` (GPS-only receiver) or `GN` (multi-GNSS: GPS, GLONASS, Galileo).
        talker: String,
        /// Directory of routes and places (default `fixtures/routes`).
        routes: PathBuf,
        /// Directory of NMEA recordings for replay (default `fixtures/nmea/gpsd`).
        recordings: PathBuf,
    },
    /// `{ backend: sdr, command: [argv…] }` — RF-level simulation: the scene's motion is
    /// written as a gps-sdr-sim user-motion file and `command` (with `{motion}`
    /// replaced by its path and `{duration}` by its length in seconds) is (re)started
    /// at each change. See docs/gnss.md.
    Sdr {
        /// argv, non-empty.
        command: Vec<String>,
        /// Directory of routes and places (default `fixtures/routes`).
        routes: PathBuf,
        /// Geoid separation added to route altitudes (metres above mean sea level)
        /// to give the ellipsoid heights the signal simulator wants.
        geoid_sep: f64,
    },
}

impl GnssConfig {
    /// The routes directory.
    pub fn routes_dir(&self) -> &Path {
        match self {
            GnssConfig::Serial { routes, .. } | GnssConfig::Sdr { routes, .. } => routes,
        }
    }

    /// The recordings directory (`None`: this backend cannot replay NMEA).
    pub fn recordings_dir(&self) -> Option<&Path> {
        match self {
            GnssConfig::Serial { recordings, .. } => Some(recordings),
            GnssConfig::Sdr { .. } => None,
        }
    }
}

/// Bytes per second a simulated receiver writes at `rate_hz`: RMC, VTG, GGA and ZDA
/// every epoch (at most 72 characters each, CR LF included) and, once per second,
/// GSA and three GSV sentences per constellation (one for `GP`, three for `GN`).
pub fn gnss_bytes_per_second(rate_hz: u32, talker: &str) -> u32 {
    let systems = if talker == "GN" { 3 } else { 1 };
    rate_hz * 4 * 72 + systems * 4 * 72
}

/// The slowest standard baud rate that carries [`gnss_bytes_per_second`] (8N1: ten
/// bits per byte).
pub fn gnss_min_baud(rate_hz: u32, talker: &str) -> u32 {
    let bits = gnss_bytes_per_second(rate_hz, talker) * 10;
    STANDARD_BAUDS
        .iter()
        .copied()
        .find(|&b| b >= bits)
        .unwrap_or(921_600)
}

/// `instruments.cellular`: the cellular network the watch's modem sees.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "backend", rename_all = "kebab-case")]
pub enum CellularConfig {
    /// `{ backend: virtual-modem, port: "lab:modem", baud: 115200 }` — an AT line.
    VirtualModem {
        /// Serial device (`lab:modem` on a virtual rig).
        port: PortRef,
        /// A standard baud rate.
        baud: u32,
    },
    /// `{ backend: callbox, events: [argv…], hooks: { send_sms: [argv…], … },
    /// timeout_s: 10 }` — a callbox or SDR cell driven by an adapter's commands
    /// (`docs/cellular.md`, [`crate::drivers::callbox`]).
    Callbox {
        /// Action name (`registration`, `send_sms`, `call_watch`, `hang_up`,
        /// `call_answer`) → argv, run without a shell; `{placeholders}` per action.
        /// Actions without a hook fail when a step needs them (`check` warns).
        hooks: BTreeMap<String, Vec<String>>,
        /// argv of the command that prints the network's events, one JSON object per
        /// line (required: without it the rig cannot see what the watch does).
        events: Vec<String>,
        /// Wall seconds one hook may take (default 10, at most 600).
        timeout_s: f64,
    },
}

/// `instruments.flasher`: how firmware images reach the watch.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "backend", rename_all = "kebab-case")]
pub enum FlasherConfig {
    /// `{ backend: drive, path: "lab:flash_drive" | /media/… }` — the bootloader's
    /// mass-storage directory.
    Drive {
        /// Directory (`lab:flash_drive` on a virtual rig).
        path: PortRef,
    },
    /// `{ backend: probe-rs, probe: "VID:PID[:SERIAL]", chip: "nRF52840_xxAA" }` —
    /// a debug probe (`src/drivers/flash_probe.rs`).
    ProbeRs {
        /// Probe selector, `VID:PID[:SERIAL]` (hex VID/PID).
        probe: String,
        /// probe-rs chip name.
        chip: String,
    },
}

/// `instruments.debug_port`: the watch's debug port (SWD/JTAG or the lab's socket).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "backend", rename_all = "kebab-case")]
pub enum DebugPortConfig {
    /// `{ backend: virtual, path: "lab:debug" }` — the lab's debug socket.
    Virtual {
        /// Socket path (`lab:debug` on a virtual rig).
        path: PortRef,
    },
    /// `{ backend: probe-rs, probe: …, chip: … }` — the lock check through a debug
    /// probe (`src/drivers/flash_probe.rs`).
    ProbeRs {
        /// Probe selector, `VID:PID[:SERIAL]`.
        probe: String,
        /// probe-rs chip name.
        chip: String,
    },
}

/// `instruments:` section: every instrument is required.
#[derive(Debug, Clone, Serialize)]
pub struct Instruments {
    /// Power switch.
    pub power: PowerConfig,
    /// Button actuators.
    pub buttons: ButtonsConfig,
    /// Indicator sensors.
    pub indicators: IndicatorsConfig,
    /// Console UART.
    pub console: ConsoleConfig,
    /// GNSS simulator.
    pub gnss: GnssConfig,
    /// Cellular network.
    pub cellular: CellularConfig,
    /// Firmware flasher.
    pub flasher: FlasherConfig,
    /// Debug port.
    pub debug_port: DebugPortConfig,
}

/// `network.gateway`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gateway {
    /// `auto`: a random `127.X.Y.1` per run.
    Auto,
    /// An explicit IPv4 address `A.B.C.D`; the hosts get `A.B.C.n`. Loopback on any
    /// rig; on a physical rig also a private (RFC 1918) address, which the rig's host
    /// must treat as local (`ip route add local A.B.C.0/24 dev lo`) and the cell's
    /// packet core must route to, so that a real watch can reach the gateway.
    Fixed(Ipv4Addr),
}

impl Serialize for Gateway {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Gateway::Auto => s.serialize_str("auto"),
            Gateway::Fixed(ip) => s.serialize_str(&ip.to_string()),
        }
    }
}

/// `network:` section.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkConfig {
    /// `auto` (default), a loopback IPv4 address, or on a physical rig a private one.
    pub gateway: Gateway,
    /// Backend host name (as the device knows it) → where the rig reaches it:
    /// `lab:cloud.device` / `lab:cloud.api` on a virtual rig, `HOST:PORT` otherwise.
    /// Must contain the device profile's `backend.device_endpoint.host` and the host
    /// of `backend.api.base_url`.
    pub hosts: BTreeMap<String, PortRef>,
}

// ---------------------------------------------------------------------------------
// Raw (as written) types
// ---------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a rig file mapping")]
pub(crate) struct RawRigFile {
    rig: RigSection,
    time: TimeConfig,
    #[serde(default)]
    device_profile: Option<String>,
    #[serde(default)]
    pub(crate) device: Option<RawDeviceSpec>,
    #[serde(default)]
    lab: Option<LabConfig>,
    instruments: RawInstruments,
    network: RawNetwork,
    #[serde(default)]
    health: Option<RawHealth>,
}

#[derive(Deserialize, Default)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `gpio_loopback` and/or `serial_loopback`"
)]
struct RawHealth {
    #[serde(default)]
    gpio_loopback: Vec<RawGpioLoopback>,
    #[serde(default)]
    serial_loopback: Vec<RawSerialLoopback>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping like { out: 20, in: 21 }")]
struct RawGpioLoopback {
    out: u32,
    #[serde(rename = "in")]
    input: u32,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping like { port: \"usb:0403:6001:A10KXYZ1\", baud: 115200 }"
)]
struct RawSerialLoopback {
    port: String,
    #[serde(default)]
    baud: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of instruments")]
struct RawInstruments {
    power: RawInstrument,
    buttons: RawInstrument,
    indicators: RawInstrument,
    console: RawInstrument,
    gnss: RawInstrument,
    cellular: RawInstrument,
    flasher: RawInstrument,
    debug_port: RawInstrument,
}

/// The union of every backend's fields. Deliberately *not* `deny_unknown_fields`:
/// which fields are allowed depends on `backend`, so unknown fields are found with
/// the position index and reported per backend, all of them (see `check_fields`).
#[derive(Deserialize, Default)]
#[serde(default, expecting = "a mapping like { backend: NAME, … }")]
struct RawInstrument {
    backend: Option<String>,
    pin: Option<u32>,
    active_low: Option<bool>,
    pins: Option<BTreeMap<String, Option<RawPin>>>,
    port: Option<String>,
    baud: Option<u32>,
    rate_hz: Option<u32>,
    talker: Option<String>,
    routes: Option<PathBuf>,
    recordings: Option<PathBuf>,
    command: Option<Vec<String>>,
    geoid_sep: Option<f64>,
    hooks: Option<BTreeMap<String, Vec<String>>>,
    events: Option<Vec<String>>,
    timeout_s: Option<f64>,
    path: Option<String>,
    probe: Option<String>,
    chip: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping like { pin: 23, active_low: true }"
)]
struct RawPin {
    #[serde(default)]
    pin: Option<u32>,
    #[serde(default)]
    active_low: bool,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `gateway` and `hosts`"
)]
struct RawNetwork {
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    hosts: BTreeMap<String, String>,
}

// ---------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------

/// Standard serial baud rates accepted for every serial line.
pub const STANDARD_BAUDS: [u32; 11] = [
    1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600,
];

/// GPIO numbers a bench may not use: 0/1 (HAT ID EEPROM), 14/15 (UART0 TX/RX).
pub const RESERVED_PINS: [(u32, &str); 4] = [
    (0, "ID EEPROM SDA"),
    (1, "ID EEPROM SCL"),
    (14, "UART0 TX"),
    (15, "UART0 RX"),
];

/// Where the device profile comes from, as the rig file says.
pub(crate) enum DeviceSource {
    /// `device_profile: NAME-or-path`
    Profile(String),
    /// `device: { … }`
    Inline(Box<RawDeviceSpec>),
    /// Neither or both (already reported).
    Invalid,
}

/// Validate a parsed rig file. Returns the config (meaningful only when `d` got no
/// errors) and where the device profile comes from.
pub(crate) fn validate(
    mut raw: RawRigFile,
    d: &mut Diag,
    rig_dir: &Path,
) -> (RigConfig, DeviceSource) {
    let physical = raw.rig.kind == RigKind::Physical;

    // rig:
    let name_ok = {
        let mut c = raw.rig.name.chars();
        matches!(c.next(), Some(ch) if ch.is_ascii_alphanumeric())
            && c.all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch))
    };
    if !name_ok {
        d.err(
            &["rig", "name"],
            format!(
                "invalid rig name `{}`: expected letters, digits, `.`, `_`, `-` \
                 (starting with a letter or digit)",
                raw.rig.name
            ),
        );
    }
    if let Some(dir) = &raw.rig.lock_dir {
        if dir.as_os_str().is_empty() {
            d.err(
                &["rig", "lock_dir"],
                "lock_dir is empty: expected a directory or null",
            );
        } else if dir.is_relative() {
            raw.rig.lock_dir = Some(rig_dir.join(dir));
        }
    }

    // time:
    let t = &raw.time;
    if !(t.scale.is_finite() && t.scale > 0.0 && t.scale <= 1000.0) {
        d.err(
            &["time", "scale"],
            format!(
                "time.scale is {}: expected a number > 0 and <= 1000",
                t.scale
            ),
        );
    } else if physical && t.scale != 1.0 {
        d.err(
            &["time", "scale"],
            format!(
                "time.scale is {} on a physical rig: expected 1 (a real watch runs in real time)",
                t.scale
            ),
        );
    }
    for (key, v) in [
        ("step_timeout", t.step_timeout),
        ("boot_timeout", t.boot_timeout),
    ] {
        if !(v.is_finite() && v > 0.0) {
            d.err(
                &["time", key],
                format!("time.{key} is {v}: expected a number of device seconds > 0"),
            );
        }
    }

    // device_profile / device
    let source = match (raw.device_profile.clone(), raw.device.take()) {
        (Some(_), Some(_)) => {
            d.err_key(
                &["device"],
                "both `device_profile` and an inline `device` are given: expected exactly one",
            );
            DeviceSource::Invalid
        }
        (None, None) => {
            d.err(
                &[],
                "missing `device_profile` (a name in fixtures/devices/ or a path) \
                 or an inline `device:` map: expected exactly one",
            );
            DeviceSource::Invalid
        }
        (Some(p), None) if p.trim().is_empty() => {
            d.err(
                &["device_profile"],
                "device_profile is empty: expected a profile name or path",
            );
            DeviceSource::Invalid
        }
        (Some(p), None) => DeviceSource::Profile(p),
        (None, Some(dev)) => DeviceSource::Inline(Box::new(dev)),
    };

    // lab:
    match (&raw.lab, physical) {
        (Some(_), true) => d.err_key(
            &["lab"],
            "`lab:` is only for virtual rigs (rig.kind is physical): remove it",
        ),
        (None, false) => d.err(
            &[],
            "missing `lab:` section: required when rig.kind is virtual \
             (`lab: { watch_command: null, cloud_command: null }` for the built-in simulators)",
        ),
        _ => {}
    }
    if let Some(lab) = &raw.lab {
        for (key, cmd) in [
            ("watch_command", &lab.watch_command),
            ("cloud_command", &lab.cloud_command),
        ] {
            if let Some(argv) = cmd {
                if argv.is_empty() || argv[0].trim().is_empty() {
                    d.err(
                        &["lab", key],
                        format!("lab.{key} is empty: expected an argv list or null"),
                    );
                }
            }
        }
    }

    // instruments:
    let ctx = Ctx { physical };
    let ins = &raw.instruments;
    let instruments = Instruments {
        power: power(&ins.power, d, ctx),
        buttons: buttons(&ins.buttons, d, ctx),
        indicators: indicators(&ins.indicators, d, ctx),
        console: console(&ins.console, d, ctx),
        gnss: gnss(&ins.gnss, d, ctx, rig_dir),
        cellular: cellular(&ins.cellular, d, ctx),
        flasher: flasher(&ins.flasher, d, ctx),
        debug_port: debug_port(&ins.debug_port, d, ctx),
    };
    let health = health(raw.health.as_ref(), d, ctx);
    check_pin_conflicts(&instruments, &health, d);
    if physical {
        warn_order_dependent(&instruments, &health, d);
        check_loopback_ports(&instruments, &health, d);
    }

    // network:
    let gateway = match raw.network.gateway.as_deref() {
        None | Some("auto") => Gateway::Auto,
        Some(s) => match s.parse::<Ipv4Addr>() {
            Ok(ip) if ip.is_loopback() => Gateway::Fixed(ip),
            Ok(ip) if ip.is_private() && physical => {
                if matches!(ip.octets()[3], 0 | 255) {
                    d.err(
                        &["network", "gateway"],
                        format!("gateway `{s}` is a network or broadcast address: expected a host address like 10.45.0.1"),
                    );
                }
                Gateway::Fixed(ip)
            }
            Ok(ip) if ip.is_private() => {
                d.err(
                    &["network", "gateway"],
                    format!("gateway `{s}` is a private address, which is for a physical bench's cell: a virtual rig uses `auto` or a loopback address like 127.20.30.1"),
                );
                Gateway::Auto
            }
            _ => {
                d.err(
                    &["network", "gateway"],
                    format!("invalid gateway `{s}`: expected `auto`, a loopback IPv4 address like 127.20.30.1, or on a physical rig a private one like 10.45.0.1"),
                );
                Gateway::Auto
            }
        },
    };
    let mut hosts = BTreeMap::new();
    for (host, target) in &raw.network.hosts {
        let path = ["network", "hosts", host.as_str()];
        if !is_host_name(host) {
            d.err_key(
                &path,
                format!(
                    "invalid host name `{host}`: expected a DNS name like watch.kidcloud.example"
                ),
            );
        }
        let r = port_ref(
            target,
            &path,
            d,
            ctx,
            &[LabWire::CloudDevice, LabWire::CloudApi],
        );
        if let Some(PortRef::Real(s)) = &r {
            let ok = s
                .rsplit_once(':')
                .map(|(h, p)| !h.is_empty() && p.parse::<u16>().map(|p| p > 0).unwrap_or(false))
                .unwrap_or(false);
            if !ok {
                d.err(&path, format!("invalid address `{s}`: expected HOST:PORT (or `lab:cloud.device` / `lab:cloud.api` on a virtual rig)"));
            }
        }
        hosts.insert(host.clone(), r.unwrap_or(PortRef::Real(target.clone())));
    }
    if raw.network.hosts.is_empty() {
        d.err_key(&["network", "hosts"], "network.hosts is empty: expected the device's backend host names, e.g. `watch.kidcloud.example: \"lab:cloud.device\"`");
    }

    let cfg = RigConfig {
        rig: raw.rig,
        time: raw.time,
        device_profile: raw.device_profile,
        lab: raw.lab,
        instruments,
        network: NetworkConfig { gateway, hosts },
        health,
    };
    (cfg, source)
}

fn is_host_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[derive(Clone, Copy)]
struct Ctx {
    physical: bool,
}

/// Parse a port/path/address string, checking `lab:` references: known wire, the
/// expected wire(s) for this place, virtual rigs only.
fn port_ref(
    s: &str,
    path: &[&str],
    d: &mut Diag,
    ctx: Ctx,
    expected: &[LabWire],
) -> Option<PortRef> {
    let expected_s = expected
        .iter()
        .map(|w| format!("`lab:{}`", w.name()))
        .collect::<Vec<_>>()
        .join(" or ");
    if let Some(name) = s.strip_prefix("lab:") {
        let Some(wire) = LabWire::from_name(name) else {
            let all = LabWire::ALL
                .iter()
                .map(|w| w.name())
                .collect::<Vec<_>>()
                .join(", ");
            d.err(
                path,
                format!("unknown lab wire `{name}`: expected {expected_s} (lab wires: {all})"),
            );
            return None;
        };
        if ctx.physical {
            d.err(
                path,
                format!("`{s}` refers to the virtual lab, but rig.kind is physical: expected a real device path or address"),
            );
            return None;
        }
        if !expected.contains(&wire) {
            d.err(
                path,
                format!("wrong lab wire `{s}` here: expected {expected_s}"),
            );
            return None;
        }
        Some(PortRef::Lab(wire))
    } else if s.trim().is_empty() {
        d.err(
            path,
            format!("empty value: expected {expected_s} or a real device path/address"),
        );
        None
    } else {
        Some(PortRef::Real(s.to_string()))
    }
}

/// Report every field present in the file at `instruments.NAME` that the chosen
/// backend does not take. Returns the backend name when it is one of `backends`.
fn backend_of<'r>(
    raw: &'r RawInstrument,
    name: &str,
    d: &mut Diag,
    backends: &[(&'static str, &[&'static str])],
) -> Option<&'r str> {
    let path = ["instruments", name];
    let all = backends
        .iter()
        .map(|(b, _)| format!("`{b}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let Some(b) = raw.backend.as_deref() else {
        d.err_key(
            &path,
            format!("instruments.{name}: missing field `backend`, expected one of {all}"),
        );
        return None;
    };
    let Some((b, fields)) = backends.iter().find(|(n, _)| *n == b) else {
        d.err(
            &["instruments", name, "backend"],
            format!("unknown backend `{b}` for instruments.{name}: expected one of {all}"),
        );
        return None;
    };
    for key in d.index.keys(&path) {
        if key != "backend" && !fields.contains(&key.as_str()) {
            let exp = std::iter::once("backend")
                .chain(fields.iter().copied())
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ");
            d.err_key(
                &["instruments", name, key.as_str()],
                format!("instruments.{name}: unknown field `{key}` for backend `{b}`, expected one of {exp}"),
            );
        }
    }
    Some(b)
}

fn require<T: Clone>(
    v: &Option<T>,
    instr: &str,
    field: &str,
    backend: &str,
    d: &mut Diag,
) -> Option<T> {
    if v.is_none() {
        d.err_key(
            &["instruments", instr],
            format!(
                "instruments.{instr}: missing field `{field}` (required by backend `{backend}`)"
            ),
        );
    }
    v.clone()
}

fn baud(v: &Option<u32>, instr: &str, backend: &str, d: &mut Diag) -> u32 {
    let b = require(v, instr, "baud", backend, d).unwrap_or(115200);
    if v.is_some() && !STANDARD_BAUDS.contains(&b) {
        let list = STANDARD_BAUDS
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        d.err(
            &["instruments", instr, "baud"],
            format!("baud {b} is not a standard rate: expected one of {list}"),
        );
    }
    b
}

fn gpio_line(pin: Option<u32>, active_low: bool, path: &[&str], d: &mut Diag) -> GpioLine {
    let p = pin.unwrap_or(0);
    if p > 27 {
        d.err(
            path,
            format!("GPIO {p} does not exist on the Pi header: expected a BCM number 0..=27"),
        );
    } else if let Some((_, what)) = RESERVED_PINS.iter().find(|(r, _)| *r == p) {
        d.err(
            path,
            format!("GPIO {p} is reserved ({what}): expected a free BCM pin in 2..=27 other than 14 and 15"),
        );
    }
    GpioLine {
        pin: p.min(255) as u8,
        active_low,
    }
}

fn wrong_kind(name: &str, backend: &str, d: &mut Diag, ctx: Ctx) {
    if ctx.physical && backend == "virtual" {
        d.err(
            &["instruments", name, "backend"],
            format!("backend `virtual` for instruments.{name} needs the virtual lab, but rig.kind is physical: expected `rppal`"),
        );
    } else if !ctx.physical && backend == "rppal" {
        d.err(
            &["instruments", name, "backend"],
            format!("backend `rppal` for instruments.{name} drives real GPIO, but rig.kind is virtual: expected `virtual`"),
        );
    }
}

fn power(raw: &RawInstrument, d: &mut Diag, ctx: Ctx) -> PowerConfig {
    let name = "power";
    match backend_of(
        raw,
        name,
        d,
        &[("virtual", &[]), ("rppal", &["pin", "active_low"])],
    ) {
        Some("rppal") => {
            wrong_kind(name, "rppal", d, ctx);
            let pin = require(&raw.pin, name, "pin", "rppal", d);
            if pin.is_none() {
                return PowerConfig::Virtual;
            }
            PowerConfig::Rppal(gpio_line(
                pin,
                raw.active_low.unwrap_or(false),
                &["instruments", name, "pin"],
                d,
            ))
        }
        Some(b) => {
            wrong_kind(name, b, d, ctx);
            PowerConfig::Virtual
        }
        None => PowerConfig::Virtual,
    }
}

fn pin_map(raw: &RawInstrument, name: &str, d: &mut Diag) -> BTreeMap<String, GpioLine> {
    let mut out = BTreeMap::new();
    let Some(pins) = require(&raw.pins, name, "pins", "rppal", d) else {
        return out;
    };
    for (label, entry) in &pins {
        let path = ["instruments", name, "pins", label.as_str()];
        match entry {
            Some(RawPin { pin: Some(p), active_low }) => {
                let mut pin_path = path.to_vec();
                pin_path.push("pin");
                out.insert(label.clone(), gpio_line(Some(*p), *active_low, &pin_path, d));
            }
            _ => d.err_key(
                &path,
                format!("`{label}` in instruments.{name}.pins is mapped to no pin: expected `{{ pin: N, active_low: BOOL }}`"),
            ),
        }
    }
    out
}

fn buttons(raw: &RawInstrument, d: &mut Diag, ctx: Ctx) -> ButtonsConfig {
    let name = "buttons";
    match backend_of(raw, name, d, &[("virtual", &[]), ("rppal", &["pins"])]) {
        Some("rppal") => {
            wrong_kind(name, "rppal", d, ctx);
            let had_pins = raw.pins.is_some();
            let pins = pin_map(raw, name, d);
            if had_pins {
                let present: Vec<&String> = raw.pins.iter().flat_map(|m| m.keys()).collect();
                for required in ["sos", "power"] {
                    if !present.iter().any(|k| *k == required) {
                        d.err_key(
                            &["instruments", name, "pins"],
                            format!("instruments.buttons.pins has no `{required}` button: expected at least `sos` and `power`"),
                        );
                    }
                }
            }
            ButtonsConfig::Rppal { pins }
        }
        Some(b) => {
            wrong_kind(name, b, d, ctx);
            ButtonsConfig::Virtual
        }
        None => ButtonsConfig::Virtual,
    }
}

fn indicators(raw: &RawInstrument, d: &mut Diag, ctx: Ctx) -> IndicatorsConfig {
    let name = "indicators";
    match backend_of(raw, name, d, &[("virtual", &[]), ("rppal", &["pins"])]) {
        Some("rppal") => {
            wrong_kind(name, "rppal", d, ctx);
            IndicatorsConfig::Rppal {
                pins: pin_map(raw, name, d),
            }
        }
        Some(b) => {
            wrong_kind(name, b, d, ctx);
            IndicatorsConfig::Virtual
        }
        None => IndicatorsConfig::Virtual,
    }
}

fn serial_port(
    raw: &RawInstrument,
    name: &str,
    backend: &str,
    wire: LabWire,
    d: &mut Diag,
    ctx: Ctx,
) -> PortRef {
    match require(&raw.port, name, "port", backend, d) {
        Some(s) => {
            let r = port_ref(&s, &["instruments", name, "port"], d, ctx, &[wire]);
            if let Some(PortRef::Real(p)) = &r {
                if let Err(e) = check_usb_selector(p) {
                    d.err(&["instruments", name, "port"], e);
                }
            }
            r.unwrap_or(PortRef::Real(s))
        }
        None => PortRef::Lab(wire),
    }
}

fn console(raw: &RawInstrument, d: &mut Diag, ctx: Ctx) -> ConsoleConfig {
    let name = "console";
    if backend_of(raw, name, d, &[("serial", &["port", "baud"])]).is_none() {
        return ConsoleConfig::Serial {
            port: PortRef::Lab(LabWire::Console),
            baud: 115200,
        };
    }
    ConsoleConfig::Serial {
        port: serial_port(raw, name, "serial", LabWire::Console, d, ctx),
        baud: baud(&raw.baud, name, "serial", d),
    }
}

fn gnss(raw: &RawInstrument, d: &mut Diag, ctx: Ctx, rig_dir: &Path) -> GnssConfig {
    let name = "gnss";
    let dir = |v: &Option<PathBuf>, key: &str, default: &str, d: &mut Diag| -> PathBuf {
        let p = match v {
            None => return crate::config::fixtures_dir().join(default),
            Some(p) if p.is_relative() => rig_dir.join(p),
            Some(p) => p.clone(),
        };
        if !p.is_dir() {
            d.err(
                &["instruments", name, key],
                format!(
                    "{key} directory `{}` not found (looked for {}): expected a directory, relative to this file",
                    v.as_deref().unwrap_or(Path::new("")).display(),
                    p.display()
                ),
            );
        }
        p
    };
    match backend_of(
        raw,
        name,
        d,
        &[
            (
                "serial",
                &["port", "baud", "rate_hz", "talker", "routes", "recordings"],
            ),
            ("sdr", &["command", "routes", "geoid_sep"]),
        ],
    ) {
        Some("sdr") => {
            let command = raw.command.clone().unwrap_or_default();
            if command.is_empty() || command[0].trim().is_empty() {
                d.err_key(
                    &["instruments", name, "command"],
                    "instruments.gnss: backend `sdr` needs `command`, a non-empty argv list (use {motion} and {duration} for the motion file and its length)",
                );
            }
            let geoid_sep = raw.geoid_sep.unwrap_or(0.0);
            if !(geoid_sep.is_finite() && geoid_sep.abs() <= 120.0) {
                d.err(
                    &["instruments", name, "geoid_sep"],
                    format!("geoid_sep {geoid_sep} m: expected a number of metres within ±120"),
                );
            }
            GnssConfig::Sdr {
                command,
                routes: dir(&raw.routes, "routes", "routes", d),
                geoid_sep,
            }
        }
        Some(_) => {
            let rate_hz = raw.rate_hz.unwrap_or(1);
            let rate_ok = [1, 5, 10].contains(&rate_hz);
            if !rate_ok {
                d.err(
                    &["instruments", name, "rate_hz"],
                    format!("rate_hz {rate_hz} is not supported: expected 1, 5 or 10"),
                );
            }
            let talker = raw.talker.clone().unwrap_or_else(|| "GP".into());
            let talker_ok = talker == "GP" || talker == "GN";
            if !talker_ok {
                d.err(
                    &["instruments", name, "talker"],
                    format!("talker `{talker}` is not supported: expected `GP` (GPS only) or `GN` (GPS, GLONASS and Galileo)"),
                );
            }
            let baud = baud(&raw.baud, name, "serial", d);
            if rate_ok && raw.baud.is_some() {
                let need = gnss_min_baud(rate_hz, &talker);
                if baud < need {
                    d.err(
                        &["instruments", name, "baud"],
                        format!(
                            "baud {baud} cannot carry {rate_hz} Hz of {talker} sentences (about {} bytes/s): expected at least {need}, or a lower rate_hz",
                            gnss_bytes_per_second(rate_hz, &talker)
                        ),
                    );
                }
            }
            GnssConfig::Serial {
                port: serial_port(raw, name, "serial", LabWire::Gnss, d, ctx),
                baud,
                rate_hz,
                talker,
                routes: dir(&raw.routes, "routes", "routes", d),
                recordings: dir(&raw.recordings, "recordings", "nmea/gpsd", d),
            }
        }
        None => GnssConfig::Serial {
            port: PortRef::Lab(LabWire::Gnss),
            baud: 9600,
            rate_hz: 1,
            talker: "GP".into(),
            routes: crate::config::fixtures_dir().join("routes"),
            recordings: crate::config::fixtures_dir().join("nmea/gpsd"),
        },
    }
}

fn cellular(raw: &RawInstrument, d: &mut Diag, ctx: Ctx) -> CellularConfig {
    use crate::drivers::callbox::{
        action_names, argv_problems, CallboxAction, DEFAULT_TIMEOUT_S, EVENTS_PLACEHOLDERS,
        MAX_TIMEOUT_S,
    };
    let name = "cellular";
    match backend_of(
        raw,
        name,
        d,
        &[
            ("virtual-modem", &["port", "baud"]),
            ("callbox", &["events", "hooks", "timeout_s"]),
        ],
    ) {
        Some("callbox") => {
            let hooks = raw.hooks.clone().unwrap_or_default();
            // An argv's problems are reported at the argument (or the list) they are in.
            let report = |d: &mut Diag, path: &[&str], problems: Vec<(Option<usize>, String)>| {
                for (i, msg) in problems {
                    let i = i.map(|i| i.to_string());
                    let mut at = path.to_vec();
                    if let Some(i) = &i {
                        at.push(i);
                    }
                    d.err(&at, msg);
                }
            };
            for (action, argv) in &hooks {
                let path = ["instruments", name, "hooks", action.as_str()];
                match CallboxAction::from_name(action) {
                    None => d.err_key(
                        &path,
                        format!(
                            "instruments.cellular.hooks: unknown action `{action}`: expected one of {}",
                            action_names()
                        ),
                    ),
                    Some(a) => report(
                        d,
                        &path,
                        argv_problems(&format!("hook `{action}`"), argv, a.placeholders()),
                    ),
                }
            }
            let missing: Vec<&str> = CallboxAction::ALL
                .iter()
                .map(|a| a.name())
                .filter(|n| !hooks.contains_key(*n))
                .collect();
            if !missing.is_empty() {
                d.warn(
                    &["instruments", name, "hooks"],
                    format!(
                        "instruments.cellular: no hook for {}: scenarios that need these actions will be inconclusive",
                        missing.join(", ")
                    ),
                );
            }
            let events = match &raw.events {
                Some(argv) => {
                    report(
                        d,
                        &["instruments", name, "events"],
                        argv_problems("the events command", argv, EVENTS_PLACEHOLDERS),
                    );
                    argv.clone()
                }
                None => {
                    d.err_key(
                        &["instruments", name],
                        "instruments.cellular: missing field `events` (required by backend `callbox`): expected the argv of a command printing the network's events as JSON lines, so the rig sees what the watch does (docs/cellular.md)",
                    );
                    Vec::new()
                }
            };
            let timeout_s = raw.timeout_s.unwrap_or(DEFAULT_TIMEOUT_S);
            if !(timeout_s.is_finite() && timeout_s > 0.0 && timeout_s <= MAX_TIMEOUT_S) {
                d.err(
                    &["instruments", name, "timeout_s"],
                    format!(
                        "timeout_s {timeout_s}: expected wall seconds > 0 and <= {MAX_TIMEOUT_S}"
                    ),
                );
            }
            CellularConfig::Callbox {
                hooks,
                events,
                timeout_s,
            }
        }
        Some(_) => CellularConfig::VirtualModem {
            port: serial_port(raw, name, "virtual-modem", LabWire::Modem, d, ctx),
            baud: baud(&raw.baud, name, "virtual-modem", d),
        },
        None => CellularConfig::Callbox {
            hooks: BTreeMap::new(),
            events: Vec::new(),
            timeout_s: DEFAULT_TIMEOUT_S,
        },
    }
}

fn probe_rs(raw: &RawInstrument, name: &str, d: &mut Diag) -> (String, String) {
    let probe = require(&raw.probe, name, "probe", "probe-rs", d).unwrap_or_default();
    let chip = require(&raw.chip, name, "chip", "probe-rs", d).unwrap_or_default();
    if raw.probe.is_some() {
        if let Err(e) = redrig_hardware::probe::ProbeSelector::parse(&probe) {
            d.err(&["instruments", name, "probe"], e.to_string());
        }
    }
    if raw.chip.is_some() {
        if chip.trim().is_empty() {
            d.err(
                &["instruments", name, "chip"],
                "chip is empty: expected a probe-rs chip name like nRF52840_xxAA",
            );
        } else if let Err(e) = redrig_hardware::probe::lookup_chip(&chip) {
            d.err(&["instruments", name, "chip"], e.to_string());
        }
    }
    (probe, chip)
}

fn flasher(raw: &RawInstrument, d: &mut Diag, ctx: Ctx) -> FlasherConfig {
    let name = "flasher";
    match backend_of(
        raw,
        name,
        d,
        &[("drive", &["path"]), ("probe-rs", &["probe", "chip"])],
    ) {
        Some("probe-rs") => {
            let (probe, chip) = probe_rs(raw, name, d);
            FlasherConfig::ProbeRs { probe, chip }
        }
        None => FlasherConfig::Drive {
            path: PortRef::Lab(LabWire::FlashDrive),
        },
        Some(_) => {
            let path = match require(&raw.path, name, "path", "drive", d) {
                Some(s) => port_ref(
                    &s,
                    &["instruments", name, "path"],
                    d,
                    ctx,
                    &[LabWire::FlashDrive],
                )
                .unwrap_or(PortRef::Real(s)),
                None => PortRef::Lab(LabWire::FlashDrive),
            };
            FlasherConfig::Drive { path }
        }
    }
}

fn debug_port(raw: &RawInstrument, d: &mut Diag, ctx: Ctx) -> DebugPortConfig {
    let name = "debug_port";
    match backend_of(
        raw,
        name,
        d,
        &[("virtual", &["path"]), ("probe-rs", &["probe", "chip"])],
    ) {
        Some("probe-rs") => {
            let (probe, chip) = probe_rs(raw, name, d);
            DebugPortConfig::ProbeRs { probe, chip }
        }
        None => DebugPortConfig::Virtual {
            path: PortRef::Lab(LabWire::Debug),
        },
        Some(_) => {
            let path = match require(&raw.path, name, "path", "virtual", d) {
                Some(s) => port_ref(
                    &s,
                    &["instruments", name, "path"],
                    d,
                    ctx,
                    &[LabWire::Debug],
                )
                .unwrap_or(PortRef::Real(s)),
                None => PortRef::Lab(LabWire::Debug),
            };
            DebugPortConfig::Virtual { path }
        }
    }
}

/// A GPIO pin used twice across power/buttons/indicators: error at every later use,
/// naming the first use and its position.
fn check_pin_conflicts(ins: &Instruments, health: &HealthConfig, d: &mut Diag) {
    let mut uses: Vec<(Vec<String>, u8)> = Vec::new();
    for (i, l) in health.gpio_loopback.iter().enumerate() {
        for (key, pin) in [("out", l.out), ("in", l.input)] {
            uses.push((
                vec![
                    "health".into(),
                    "gpio_loopback".into(),
                    i.to_string(),
                    key.into(),
                ],
                pin,
            ));
        }
    }
    if let PowerConfig::Rppal(l) = &ins.power {
        uses.push((
            vec!["instruments".into(), "power".into(), "pin".into()],
            l.pin,
        ));
    }
    let maps = [
        (
            "buttons",
            match &ins.buttons {
                ButtonsConfig::Rppal { pins } => Some(pins),
                ButtonsConfig::Virtual => None,
            },
        ),
        (
            "indicators",
            match &ins.indicators {
                IndicatorsConfig::Rppal { pins } => Some(pins),
                IndicatorsConfig::Virtual => None,
            },
        ),
    ];
    for (instr, pins) in maps {
        for (label, line) in pins.into_iter().flatten() {
            uses.push((
                vec![
                    "instruments".into(),
                    instr.into(),
                    "pins".into(),
                    label.clone(),
                    "pin".into(),
                ],
                line.pin,
            ));
        }
    }
    // Document order, so the "second use" is the later one in the file.
    let pos = |p: &Vec<String>| {
        let v: Vec<&str> = p.iter().map(String::as_str).collect();
        let pos = d.index.value(&v);
        (pos.line, pos.column)
    };
    uses.sort_by_key(|(p, _)| pos(p));
    for i in 0..uses.len() {
        if let Some(first) = uses[..i].iter().find(|(_, pin)| *pin == uses[i].1) {
            let first_path: Vec<&str> = first.0.iter().map(String::as_str).collect();
            let this: Vec<&str> = uses[i].0.iter().map(String::as_str).collect();
            let msg = format!(
                "GPIO {} is used twice: already used by {} at {}; expected a distinct pin for each line",
                uses[i].1,
                first_path[..first_path.len() - 1].join("."),
                d.cite(&first_path),
            );
            d.err(&this, msg);
        }
    }
}

/// `health:` — loopback self-tests, physical rigs only.
fn health(raw: Option<&RawHealth>, d: &mut Diag, ctx: Ctx) -> HealthConfig {
    let Some(raw) = raw else {
        return HealthConfig::default();
    };
    if !ctx.physical && (!raw.gpio_loopback.is_empty() || !raw.serial_loopback.is_empty()) {
        d.err_key(
            &["health"],
            "`health:` loopbacks are wiring on a physical bench, but rig.kind is virtual: remove them",
        );
        return HealthConfig::default();
    }
    let mut out = HealthConfig::default();
    for (i, l) in raw.gpio_loopback.iter().enumerate() {
        let idx = i.to_string();
        let o = gpio_line(
            Some(l.out),
            false,
            &["health", "gpio_loopback", &idx, "out"],
            d,
        );
        let n = gpio_line(
            Some(l.input),
            false,
            &["health", "gpio_loopback", &idx, "in"],
            d,
        );
        if o.pin == n.pin {
            d.err(
                &["health", "gpio_loopback", &idx, "in"],
                format!("a loopback from GPIO {} to itself proves nothing: expected two distinct pins joined by a jumper", o.pin),
            );
        }
        out.gpio_loopback.push(GpioLoopback {
            out: o.pin,
            input: n.pin,
        });
    }
    for (i, l) in raw.serial_loopback.iter().enumerate() {
        let idx = i.to_string();
        if l.port.trim().is_empty() || l.port.starts_with("lab:") {
            d.err(
                &["health", "serial_loopback", &idx, "port"],
                format!("`{}` is not a real serial adapter: expected a device path, by-id/by-path link or a usb: selector", l.port),
            );
        } else if let Err(e) = check_usb_selector(&l.port) {
            d.err(&["health", "serial_loopback", &idx, "port"], e);
        }
        let b = l.baud.unwrap_or(115200);
        if !STANDARD_BAUDS.contains(&b) {
            d.err(
                &["health", "serial_loopback", &idx, "baud"],
                format!("baud {b} is not a standard rate"),
            );
        }
        out.serial_loopback.push(SerialLoopback {
            port: l.port.clone(),
            baud: b,
        });
    }
    out
}

/// A `usb:`/`usb-path:` port selector must parse; other strings are paths.
fn check_usb_selector(port: &str) -> Result<(), String> {
    if port.starts_with("usb:") || port.starts_with("usb-path:") {
        redrig_hardware::serial_id::UsbSelector::parse(port).map(|_| ())
    } else {
        Ok(())
    }
}

/// On a physical bench, `/dev/ttyUSBn` and `/dev/ttyACMn` depend on plug order:
/// warn and point at the stable ways to name an adapter.
fn warn_order_dependent(ins: &Instruments, health: &HealthConfig, d: &mut Diag) {
    let mut ports: Vec<(Vec<String>, String)> = Vec::new();
    let ConsoleConfig::Serial { port, .. } = &ins.console;
    ports.push((
        vec!["instruments".into(), "console".into(), "port".into()],
        port.as_string(),
    ));
    if let GnssConfig::Serial { port, .. } = &ins.gnss {
        ports.push((
            vec!["instruments".into(), "gnss".into(), "port".into()],
            port.as_string(),
        ));
    }
    if let CellularConfig::VirtualModem { port, .. } = &ins.cellular {
        ports.push((
            vec!["instruments".into(), "cellular".into(), "port".into()],
            port.as_string(),
        ));
    }
    for (i, l) in health.serial_loopback.iter().enumerate() {
        ports.push((
            vec![
                "health".into(),
                "serial_loopback".into(),
                i.to_string(),
                "port".into(),
            ],
            l.port.clone(),
        ));
    }
    for (path, port) in ports {
        if redrig_hardware::serial_id::is_order_dependent(&port) {
            let p: Vec<&str> = path.iter().map(String::as_str).collect();
            d.warn(
                &p,
                format!("`{port}` depends on the order adapters were plugged in: use a /dev/serial/by-id/ or by-path link, or a `usb:VID:PID:SERIAL` selector (`redrig scan` lists them)"),
            );
        }
    }
}

/// A serial loopback must be a spare adapter: the doctor writes test bytes into it,
/// which must never reach the watch's console, GNSS or modem line.
fn check_loopback_ports(ins: &Instruments, health: &HealthConfig, d: &mut Diag) {
    let mut lines: Vec<(&str, String)> = Vec::new();
    let ConsoleConfig::Serial { port, .. } = &ins.console;
    lines.push(("console", port.as_string()));
    if let GnssConfig::Serial { port, .. } = &ins.gnss {
        lines.push(("gnss", port.as_string()));
    }
    if let CellularConfig::VirtualModem { port, .. } = &ins.cellular {
        lines.push(("cellular", port.as_string()));
    }
    for (i, l) in health.serial_loopback.iter().enumerate() {
        if let Some((instr, _)) = lines.iter().find(|(_, p)| *p == l.port) {
            let idx = i.to_string();
            d.err(
                &["health", "serial_loopback", &idx, "port"],
                format!("`{}` is the port of instruments.{instr}: a loopback test would write into the watch; expected a spare adapter with TX joined to RX", l.port),
            );
        }
    }
}

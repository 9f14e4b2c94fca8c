//! Rig configuration: the rig file, the device profile, and their validation.
//!
//! *Configuration is validated before anything moves, with file:line errors.*
//! [`load_rig`] reads a rig file and the device profile it names (or `--dut`), and
//! returns either a [`LoadedRig`] or **all** the mistakes it found as
//! [`ConfigErrors`], each `path/file.yaml:LINE:COLUMN: message (what was expected)`.
//! A mistake in the YAML syntax or in a field's *type* (unknown field, `scale: fast`,
//! missing field) stops that file's parsing at the first one (that is how serde
//! works); every *semantic* mistake (pins, wires, IMEI, regex, files, …) is collected.
//!
//! ```no_run
//! # use std::path::Path;
//! match redrig::config::load_rig(Path::new("fixtures/rigs/virtual.yaml"), None) {
//!     Ok(loaded) => println!("{}", loaded.effective_redacted()),
//!     Err(errors) => eprintln!("{errors}"), // one `file:line:col: message` per line
//! }
//! ```
//!
//! # Rig file (`fixtures/rigs/*.yaml`)
//!
//! Every mapping rejects unknown fields. Durations are **device seconds** (f64).
//!
//! ```yaml
//! rig:
//!   name: virtual-lab            # [A-Za-z0-9._-]; names the run lock and run directories
//!   kind: virtual                # virtual | physical
//!   lock_dir: null               # default $XDG_RUNTIME_DIR/redrig, else /tmp/redrig-locks
//! time:
//!   scale: 20                    # device s per wall s; > 0, <= 1000; exactly 1 when physical
//!   step_timeout: 120            # default 120
//!   boot_timeout: 60             # default 60
//! device_profile: reference      # NAME (fixtures/devices/NAME.yaml) or a path relative to
//!                                # this file; or an inline `device:` map (exactly one)
//! lab:                           # required when virtual, forbidden when physical
//!   watch_command: null          # argv of an external simulator; null = built-in
//!   cloud_command: null
//! instruments:                   # all eight required; fields depend on `backend`
//!   power:      { backend: virtual }          # | { backend: rppal, pin: 17, active_low: false }
//!   buttons:    { backend: virtual }          # | { backend: rppal, pins: { sos: { pin: 23, active_low: true }, power: { pin: 24 } } }
//!   indicators: { backend: virtual }          # | { backend: rppal, pins: { led: { pin: 5 }, … } }
//!   console:    { backend: serial, port: "lab:console", baud: 115200 }
//!   gnss:       { backend: serial, port: "lab:gnss", baud: 9600, rate_hz: 1 }   # rate_hz 1|5|10, talker GP|GN,
//!               # routes: DIR, recordings: DIR (relative to this file); the baud must carry the rate
//!               # | { backend: sdr, command: [argv with {motion} {duration} {start_time}], geoid_sep: M }
//!   cellular:   { backend: virtual-modem, port: "lab:modem", baud: 115200 }    # | { backend: callbox, events: [argv…],
//!               # hooks: { registration|send_sms|call_watch|hang_up|call_answer: [argv with {placeholders}] }, timeout_s: 10 }
//!   flasher:    { backend: drive, path: "lab:flash_drive" }                   # | { backend: probe-rs, probe: "VID:PID[:SERIAL]", chip: … }
//!   debug_port: { backend: virtual, path: "lab:debug" }                        # | { backend: probe-rs, … }
//! network:
//!   gateway: auto                # or a loopback IPv4 address
//!   hosts:                       # device's backend host → lab:cloud.device | lab:cloud.api | HOST:PORT
//!     watch.kidcloud.example: "lab:cloud.device"
//!     api.kidcloud.example: "lab:cloud.api"
//! ```
//!
//! Rules checked beyond types:
//! - `lab:NAME` wires: `console`, `gnss`, `modem`, `gpio`, `flash_drive`, `debug`,
//!   `cloud.device`, `cloud.api`; each place takes its own wire (console →
//!   `lab:console`, …); only on virtual rigs.
//! - `virtual` GPIO backends only on virtual rigs, `rppal` only on physical ones.
//! - GPIO pins: BCM 0..=27; 0, 1 (ID EEPROM) and 14, 15 (UART0) are reserved; a pin
//!   is used at most once across power/buttons/indicators; buttons include `sos` and
//!   `power`; every mapped name has a pin and is a button/indicator the device
//!   declares.
//! - Serial bauds are standard rates; the console baud equals the profile's.
//! - `network.hosts` covers the profile's device endpoint host and API host.
//! - `probe-rs` backends: the probe selector parses and the chip is one probe-rs
//!   knows (an unknown name lists close ones).
//! - `usb:`/`usb-path:` serial selectors parse; on a physical rig, `/dev/ttyUSBn` and
//!   `/dev/ttyACMn` (plug-order names) are a warning.
//! - `health:` loopbacks: physical rigs only; pins checked like instrument pins.
//! - Physical serial ports/paths must exist — only in [`check_presence`], so that
//!   validation itself never depends on the hardware being plugged in.
//!
//! # Device profile (`fixtures/devices/NAME.yaml`)
//!
//! ```yaml
//! device:
//!   name: "…"                     # non-empty
//!   manufacturer: "…"
//!   model: "…"
//!   imei: "861234567890124"       # 15 digits, Luhn-valid
//!   device_id: "3456789012"       # 10 or 15 digits
//!   firmware: { image: ../images/x.img, version: "2.4.0" }   # image relative to this file, must exist
//!   # optional in firmware: previous: ../images/older.img (must exist);
//!   #   ota_test_images: { valid: NAME, unsigned: NAME, tampered: NAME, older: NAME }
//!   #   (image names on the vendor's update server, each optional)
//!   declaration:                  # the manufacturer's declaration (all keys required except tls)
//!     transport: tls              # tls | plain
//!     tls: { min_version: "1.2", mutual: true, pinned: true }   # required iff transport: tls
//!     debug_port: locked          # locked | open | absent
//!     console_shell: false
//!     sms_commands: []            # lower-case words
//!     sms_command_senders: paired # paired | any | none
//!     sms_command_format: "pw,{password},{counter},{command}#"   # optional; needs {password} and {command}
//!     protocol_commands: [UPLOAD, CR]   # UPPER-CASE words
//!     services: [ { host: watch.kidcloud.example, port: 6443, protocol: tls } ]  # tls|plain|https|http
//!     features: [sos, geofence]   # see `Feature`; absent = declared absent (e.g. `monitor`)
//!     buttons: [sos, power]       # must include sos and power
//!     indicators: [led, vibration, speaker, mic, screen]
//!   console: { boot_pattern: "firmware (?P<version>[0-9.]+) booted", baud: 115200 }  # regex must compile
//!   backend:
//!     device_endpoint: { host: watch.kidcloud.example, port: 6443, tls: true }
//!     api: { base_url: "https://api.kidcloud.example:8443", ca: null }   # ca relative, must exist if given
//!     accounts:                   # parent, stranger, optional second_parent
//!       parent:   { email: parent@example.org, password_env: REDRIG_PARENT_PASSWORD }
//!       stranger: { email: stranger@example.org, password: "…" }  # exactly one of password / password_env
//!     pairing_code: "…"           # optional (or pairing_code_env: NAME): the code on the box
//!     client_certificate: { cert: ../certs/device.pem, key: ../certs/device.key }  # optional, must exist
//!   numbers: { parent: "+4915100000001", second_parent: "+4915100000002", stranger: "+4915100000666" }  # E.164
//! expected_failures: []           # STANDARD:REQ ids this profile must fail (proof tests)
//! simulation: { … }               # the virtual lab's; accepted and ignored here
//! ```
//!
//! Errors in a profile point into the profile file. Secrets: [`resolve_secret`]
//! reads them; [`LoadedRig::effective_redacted`] never contains them.

mod device;
mod error;
mod position;
mod rig;

pub use device::*;
pub(crate) use error::{from_serde, Diag};
pub use error::{ConfigError, ConfigErrors};
pub use position::{NodePos, Pos, PosIndex};
pub use rig::*;

use std::path::{Path, PathBuf};

/// A validated rig file with its validated device profile.
#[derive(Debug, Clone)]
pub struct LoadedRig {
    /// The rig file's configuration.
    pub rig: RigConfig,
    /// The device profile in use (`--dut`, `device_profile:` or inline `device:`).
    pub device: DeviceProfile,
    /// The rig file, as given.
    pub rig_path: PathBuf,
    /// The device profile file (the rig file itself for an inline `device:`).
    pub device_path: PathBuf,
    /// Things that are allowed but will not work as one may expect (e.g. a serial
    /// port named by plug order, an unset `password_env` variable). Same format as
    /// errors.
    pub warnings: Vec<ConfigError>,
    /// Places and routes from the GNSS instrument's `routes` directory.
    pub routes: std::sync::Arc<crate::gnss::route::RouteLibrary>,
}

impl LoadedRig {
    /// The effective configuration (rig file with the device profile inlined, paths
    /// resolved) as JSON, with every secret replaced by `"<redacted>"`.
    pub fn effective_redacted(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "rig_file": self.rig_path,
            "device_file": self.device_path,
        });
        let obj = v.as_object_mut().expect("object");
        if let Ok(serde_json::Value::Object(rig)) = serde_json::to_value(&self.rig) {
            obj.extend(rig);
        }
        obj.insert(
            "device".into(),
            serde_json::to_value(&self.device.device).unwrap_or_default(),
        );
        obj.insert(
            "expected_failures".into(),
            serde_json::to_value(&self.device.expected_failures).unwrap_or_default(),
        );
        // Belt and braces: an inline secret copied anywhere else (a hook's argv, …)
        // is redacted too.
        let mut secrets: Vec<String> = Vec::new();
        let a = &self.device.device.backend.accounts;
        for acc in [Some(&a.parent), Some(&a.stranger), a.second_parent.as_ref()]
            .into_iter()
            .flatten()
        {
            if let Secret::Inline(s) = &acc.password {
                if !s.is_empty() {
                    secrets.push(s.clone());
                }
            }
        }
        scrub(&mut v, &secrets);
        v
    }

    /// [`LoadedRig::effective_redacted`] as YAML text.
    pub fn effective_redacted_yaml(&self) -> String {
        serde_yaml::to_string(&self.effective_redacted()).unwrap_or_default()
    }
}

fn scrub(v: &mut serde_json::Value, secrets: &[String]) {
    match v {
        serde_json::Value::String(s) => {
            for secret in secrets {
                if s.contains(secret.as_str()) {
                    *s = s.replace(secret.as_str(), REDACTED);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| scrub(x, secrets)),
        serde_json::Value::Object(o) => o.values_mut().for_each(|x| scrub(x, secrets)),
        _ => {}
    }
}

/// The value of a secret: inline, or read from its environment variable.
pub fn resolve_secret(s: &Secret) -> Result<String, String> {
    match s {
        Secret::Inline(v) => Ok(v.clone()),
        Secret::Env(var) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(v),
            Ok(_) => Err(format!(
                "environment variable `{var}` (a secret of the profile, `…_env`) is empty: expected its value"
            )),
            Err(std::env::VarError::NotPresent) => Err(format!(
                "environment variable `{var}` (a secret of the profile, `…_env`) is not set: export {var}=… before running"
            )),
            Err(std::env::VarError::NotUnicode(_)) => Err(format!(
                "environment variable `{var}` (a secret of the profile, `…_env`) is not valid UTF-8"
            )),
        },
    }
}

/// The repository's `fixtures/` directory: `$REDRIG_FIXTURES` if set, else the one
/// next to this crate's `Cargo.toml` at compile time.
pub fn fixtures_dir() -> PathBuf {
    match std::env::var_os("REDRIG_FIXTURES") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"),
    }
}

/// The device profiles directory, `<fixtures>/devices` (see [`fixtures_dir`]).
pub fn devices_dir() -> PathBuf {
    fixtures_dir().join("devices")
}

/// Names of the profiles in [`devices_dir`] (file stems of `*.yaml`), sorted.
pub fn available_profiles() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(devices_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            (p.extension().is_some_and(|x| x == "yaml") && p.is_file())
                .then(|| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .flatten()
        })
        .collect();
    names.sort();
    names
}

/// `NAME` or a path: a path if it contains `/` or ends in `.yaml`.
fn profile_path(spec: &str, base_dir: &Path) -> Result<PathBuf, String> {
    if spec.contains('/') || spec.ends_with(".yaml") {
        let p = base_dir.join(spec);
        if p.is_file() {
            Ok(p)
        } else {
            Err(format!("device profile file `{}` not found", p.display()))
        }
    } else {
        let p = devices_dir().join(format!("{spec}.yaml"));
        if p.is_file() {
            Ok(p)
        } else {
            let avail = available_profiles();
            Err(format!(
                "unknown device profile `{spec}` (no {}): expected one of: {}",
                error::display_path(&p),
                if avail.is_empty() {
                    "(none found)".to_string()
                } else {
                    avail.join(", ")
                }
            ))
        }
    }
}

fn duplicates(d: &mut Diag) {
    for (path, second, first) in d.index.duplicates().to_vec() {
        let key = path.last().cloned().unwrap_or_default();
        let first_loc = ConfigError::at(d.file, first, "").location();
        d.errors.push(ConfigError::at(
            d.file,
            second,
            format!("duplicate key `{key}` (first given at {first_loc}): expected each key once"),
        ));
    }
}

/// A typed-parse error, unless it is serde's "duplicate field" for a key already
/// reported (with both positions) by [`duplicates`].
fn push_serde(d: &mut Diag, text: &str, e: &serde_yaml::Error) {
    let err = from_serde(d.file, text, e);
    let already = d.index.duplicates().iter().any(|(path, _, _)| {
        path.last()
            .is_some_and(|k| err.message.contains(&format!("duplicate field `{k}`")))
    });
    if !already {
        d.errors.push(err);
    }
}

fn sort(errors: &mut [ConfigError]) {
    errors.sort_by_key(|e| (e.line, e.column));
}

fn too_deep() -> String {
    format!(
        "nested deeper than {} levels: expected a configuration file",
        position::MAX_INDEX_DEPTH
    )
}

/// A configuration file's text. Bytes that are not UTF-8 are an error at the line
/// and column of the first bad byte; a file that cannot be read is an error without a
/// position.
fn read_text(path: &Path, what: &str) -> Result<String, ConfigError> {
    let bytes = std::fs::read(path)
        .map_err(|e| ConfigError::whole(path, format!("cannot read {what}: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        // Characters, not bytes, before the bad byte on its line.
        let column = String::from_utf8_lossy(&good[line_start..]).chars().count() + 1;
        ConfigError::at(
            path,
            position::Pos { line, column },
            format!(
                "{what} is not valid UTF-8 (byte 0x{:02x}): expected UTF-8 text",
                e.as_bytes()[good.len()]
            ),
        )
    })
}

/// Load and validate a rig file and its device profile. `dut_override` (the
/// `--dut` option) replaces the rig file's `device_profile`: a name in
/// [`devices_dir`], or a path (relative to the current directory) if it contains
/// `/` or ends in `.yaml`. Returns every error found.
pub fn load_rig(path: &Path, dut_override: Option<&str>) -> Result<LoadedRig, ConfigErrors> {
    let rig_text = read_text(path, "rig file")?;
    let rig_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let rig_index = PosIndex::build(&rig_text);
    let mut rd = Diag::new(path, &rig_index);
    duplicates(&mut rd);

    if let Some(pos) = rig_index.too_deep() {
        rd.errors.push(ConfigError::at(path, pos, too_deep()));
        return finish(None, None, rd, path, path, Vec::new(), Vec::new());
    }
    let (rig, source) = match serde_yaml::from_str::<rig::RawRigFile>(&rig_text) {
        Ok(raw) => {
            let (cfg, src) = rig::validate(raw, &mut rd, &rig_dir);
            (Some(cfg), src)
        }
        Err(e) => {
            push_serde(&mut rd, &rig_text, &e);
            // Still find the profile, so its mistakes are reported in the same pass.
            let name = serde_yaml::from_str::<serde_yaml::Value>(&rig_text)
                .ok()
                .and_then(|v| {
                    v.get("device_profile")
                        .and_then(|p| p.as_str())
                        .map(String::from)
                });
            (
                None,
                name.map(rig::DeviceSource::Profile)
                    .unwrap_or(rig::DeviceSource::Invalid),
            )
        }
    };

    // Which device profile.
    let mut dev_errors = Vec::new();
    let mut dev_warnings = Vec::new();
    let file = match (dut_override, source) {
        (Some(dut), _) => profile_path(dut, Path::new(""))
            .map_err(|msg| dev_errors.push(ConfigError::whole(Path::new("--dut"), msg)))
            .ok(),
        (None, rig::DeviceSource::Profile(name)) => profile_path(&name, &rig_dir)
            .map_err(|msg| rd.err(&["device_profile"], msg))
            .ok(),
        (None, rig::DeviceSource::Inline(raw)) => {
            let spec = device::validate_spec(*raw, &mut rd, &rig_dir);
            let profile = DeviceProfile {
                device: spec,
                expected_failures: Vec::new(),
            };
            return finish(rig, Some(profile), rd, path, path, dev_errors, dev_warnings);
        }
        (None, rig::DeviceSource::Invalid) => None,
    };
    let Some(dp) = file else {
        return finish(rig, None, rd, path, path, dev_errors, dev_warnings);
    };
    let device = match read_text(&dp, "device profile") {
        Err(e) => {
            dev_errors.push(e);
            None
        }
        Ok(text) => {
            let idx = PosIndex::build(&text);
            let mut dd = Diag::new(&dp, &idx);
            duplicates(&mut dd);
            let dir = dp.parent().map(Path::to_path_buf).unwrap_or_default();
            let parsed = match idx.too_deep() {
                Some(pos) => Err(pos),
                None => Ok(serde_yaml::from_str::<device::RawDeviceFile>(&text)),
            };
            let out = match parsed {
                Err(pos) => {
                    dd.errors.push(ConfigError::at(&dp, pos, too_deep()));
                    None
                }
                Ok(Ok(raw)) => Some(device::validate_file(raw, &mut dd, &dir)),
                Ok(Err(e)) => {
                    push_serde(&mut dd, &text, &e);
                    None
                }
            };
            dev_errors.append(&mut dd.errors);
            dev_warnings.append(&mut dd.warnings);
            out
        }
    };
    finish(rig, device, rd, path, &dp, dev_errors, dev_warnings)
}

fn finish(
    rig: Option<RigConfig>,
    device: Option<DeviceProfile>,
    mut rd: Diag,
    rig_path: &Path,
    device_path: &Path,
    mut dev_errors: Vec<ConfigError>,
    mut dev_warnings: Vec<ConfigError>,
) -> Result<LoadedRig, ConfigErrors> {
    if let (Some(r), Some(dv)) = (&rig, &device) {
        cross_check(r, &dv.device, &mut rd);
    }
    let mut errors = std::mem::take(&mut rd.errors);
    let mut warnings = std::mem::take(&mut rd.warnings);
    sort(&mut errors);
    sort(&mut warnings);
    sort(&mut dev_errors);
    sort(&mut dev_warnings);
    // Command-line (`--dut`) errors first, then the rig file, then the profile.
    let (mut cli, mut dev_errors): (Vec<_>, Vec<_>) =
        dev_errors.into_iter().partition(|e| e.line == 0);
    cli.append(&mut errors);
    cli.append(&mut dev_errors);
    warnings.append(&mut dev_warnings);
    // Routes are scenario data the rig file points at: their errors come last.
    let routes = match &rig {
        Some(r) if r.instruments.gnss.routes_dir().is_dir() => {
            match crate::gnss::route::RouteLibrary::load_dir(r.instruments.gnss.routes_dir()) {
                Ok(lib) => Some(lib),
                Err(mut e) => {
                    cli.append(&mut e.0);
                    None
                }
            }
        }
        _ => None,
    };
    match (rig, device, routes) {
        (Some(rig), Some(device), Some(routes)) if cli.is_empty() => Ok(LoadedRig {
            rig,
            device,
            rig_path: rig_path.to_path_buf(),
            device_path: device_path.to_path_buf(),
            warnings,
            routes: std::sync::Arc::new(routes),
        }),
        _ => {
            if cli.is_empty() {
                cli.push(ConfigError::whole(rig_path, "configuration is incomplete"));
            }
            Err(ConfigErrors(cli))
        }
    }
}

/// Checks between the rig file and the device profile (errors point into the rig file).
fn cross_check(rig: &RigConfig, dev: &DeviceSpec, d: &mut Diag) {
    let ConsoleConfig::Serial { baud, .. } = &rig.instruments.console;
    if *baud != dev.console.baud {
        d.err(
            &["instruments", "console", "baud"],
            format!("console baud {baud} differs from the device profile's console.baud {}: expected {}", dev.console.baud, dev.console.baud),
        );
    }
    let mut needed = vec![(
        dev.backend.device_endpoint.host.clone(),
        "backend.device_endpoint.host",
        "lab:cloud.device",
    )];
    if let Some(h) = dev.backend.api.host() {
        needed.push((h.to_string(), "backend.api.base_url", "lab:cloud.api"));
    }
    for (host, what, wire) in needed {
        if !rig.network.hosts.contains_key(&host) {
            d.err_key(
                &["network", "hosts"],
                format!("network.hosts has no entry for `{host}` (the device profile's {what}): expected e.g. `{host}: \"{wire}\"`"),
            );
        }
    }
    let named = [
        (
            "buttons",
            "buttons",
            match &rig.instruments.buttons {
                ButtonsConfig::Rppal { pins } => Some(pins),
                ButtonsConfig::Virtual => None,
            },
            &dev.declaration.buttons,
        ),
        (
            "indicators",
            "indicators",
            match &rig.instruments.indicators {
                IndicatorsConfig::Rppal { pins } => Some(pins),
                IndicatorsConfig::Virtual => None,
            },
            &dev.declaration.indicators,
        ),
    ];
    for (instr, what, pins, declared) in named {
        for label in pins.into_iter().flat_map(|p| p.keys()) {
            if !declared.contains(label) {
                d.err_key(
                    &["instruments", instr, "pins", label.as_str()],
                    format!(
                        "`{label}` is mapped to nothing on the device: it declares {what} [{}]",
                        declared.join(", ")
                    ),
                );
            }
        }
    }
}

/// Hardware presence checks for `redrig check` (not part of validation): physical
/// serial ports and drive paths must exist, and rppal backends need a Raspberry Pi.
/// Errors point at the rig file.
pub fn check_presence(loaded: &LoadedRig) -> Vec<ConfigError> {
    let text = std::fs::read_to_string(&loaded.rig_path).unwrap_or_default();
    let idx = PosIndex::build(&text);
    let mut d = Diag::new(&loaded.rig_path, &idx);
    let ins = &loaded.rig.instruments;
    let mut paths: Vec<(&str, &str, &PortRef, &str)> = Vec::new();
    let ConsoleConfig::Serial { port, .. } = &ins.console;
    paths.push(("console", "port", port, "port"));
    if let GnssConfig::Serial { port, .. } = &ins.gnss {
        paths.push(("gnss", "port", port, "port"));
    }
    if let CellularConfig::VirtualModem { port, .. } = &ins.cellular {
        paths.push(("cellular", "port", port, "port"));
    }
    if let FlasherConfig::Drive { path } = &ins.flasher {
        paths.push(("flasher", "path", path, "path"));
    }
    if let DebugPortConfig::Virtual { path } = &ins.debug_port {
        paths.push(("debug_port", "path", path, "path"));
    }
    for (instr, key, r, what) in paths {
        if let PortRef::Real(p) = r {
            if crate::ports::is_selector(p) {
                if let Err(e) = crate::ports::resolve(p) {
                    d.err(
                        &["instruments", instr, key],
                        format!("{what} not present: {e}"),
                    );
                }
            } else if !Path::new(p).exists() {
                d.err(
                    &["instruments", instr, key],
                    format!(
                        "{what} not present: `{p}` does not exist (is the instrument plugged in?)"
                    ),
                );
            }
        }
    }
    let gpio_users = [
        ("power", matches!(ins.power, PowerConfig::Rppal(_))),
        (
            "buttons",
            matches!(ins.buttons, ButtonsConfig::Rppal { .. }),
        ),
        (
            "indicators",
            matches!(ins.indicators, IndicatorsConfig::Rppal { .. }),
        ),
    ];
    if let Some((first, _)) = gpio_users.iter().find(|(_, rppal)| *rppal) {
        if let Err(e) = redrig_hardware::PiGpio::open() {
            d.err(&["instruments", first, "backend"], format!("{e}"));
        }
    }
    let mut errors = d.errors;
    sort(&mut errors);
    errors
}

impl LoadedRig {
    /// The firmware image the device profile names (a full path).
    pub fn firmware_image(&self) -> PathBuf {
        self.device.device.firmware.image.clone()
    }

    /// The device's display name.
    pub fn device_name(&self) -> &str {
        &self.device.device.name
    }

    /// Where this rig's run lock lives.
    pub fn lock_dir(&self) -> PathBuf {
        self.rig.lock_dir()
    }

    /// Whether the rig is the virtual lab.
    pub fn is_virtual(&self) -> bool {
        self.rig.is_virtual()
    }
}

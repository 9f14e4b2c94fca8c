//! Device profiles (`fixtures/devices/*.yaml`): what the device under test is, what
//! its manufacturer declares, and how to reach its backend.

use super::error::Diag;
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------
// Validated types
// ---------------------------------------------------------------------------------

/// A device profile, validated. The file's `simulation:` section belongs to the
/// virtual lab and is not kept here.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceProfile {
    /// `device:` — identity, declaration, console, backend, numbers.
    pub device: DeviceSpec,
    /// `expected_failures:` — requirement ids (e.g. `EN18031-1:SCM-3`) this profile
    /// is known to fail; used only by the proof tests. Default `[]`.
    pub expected_failures: Vec<String>,
}

/// `device:` section.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceSpec {
    /// Human-readable name, e.g. "redrig reference watch (conformant)".
    pub name: String,
    /// Manufacturer, as on the declaration of conformity.
    pub manufacturer: String,
    /// Model designation.
    pub model: String,
    /// IMEI: 15 digits with a valid Luhn check digit.
    pub imei: String,
    /// Device id used by the watch protocol: 10 or 15 digits.
    pub device_id: String,
    /// The firmware image the device should run.
    pub firmware: Firmware,
    /// The manufacturer's declaration, checked against observations by scenarios.
    pub declaration: Declaration,
    /// Console UART settings.
    pub console: ConsoleSpec,
    /// The vendor backend the device talks to and the test accounts on it.
    pub backend: BackendSpec,
    /// Phone numbers (E.164) used by scenarios.
    pub numbers: Numbers,
}

/// `device.firmware`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Firmware {
    /// Image file, relative to the profile file (resolved to a full path when
    /// loaded); must exist.
    pub image: PathBuf,
    /// Version the image reports, e.g. "2.4.0".
    pub version: String,
    /// An older image the vendor signed, for downgrade (anti-rollback) tests;
    /// relative to the profile file, resolved when loaded. Without it those
    /// scenarios are not applicable.
    #[serde(default)]
    pub previous: Option<PathBuf>,
    /// Images on the vendor's update server for the over-the-air update scenarios
    /// (IXIT): names the backend's update command takes, not files of the rig.
    /// Without it, or without one of its entries, the scenarios that need that
    /// image are not applicable; so are those whose image carries a higher
    /// anti-rollback index than `image` (installing it could not be undone).
    #[serde(default)]
    pub ota_test_images: Option<OtaTestImages>,
}

/// `device.firmware.ota_test_images`: names of images on the vendor's update server
/// (e.g. `reference-2.5.0.img`), each optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtaTestImages {
    /// A newer image the vendor signed: the watch should install it.
    #[serde(default)]
    pub valid: Option<String>,
    /// A newer image without a signature: the watch should refuse it.
    #[serde(default)]
    pub unsigned: Option<String>,
    /// A signed image whose payload was changed after signing: the watch should
    /// refuse it.
    #[serde(default)]
    pub tampered: Option<String>,
    /// An older image the vendor signed (lower anti-rollback index): the watch
    /// should refuse it.
    #[serde(default)]
    pub older: Option<String>,
}

impl OtaTestImages {
    /// The image named for `kind` (`valid`, `unsigned`, `tampered` or `older`);
    /// `None` for an unknown kind or an entry not given.
    pub fn get(&self, kind: &str) -> Option<&str> {
        match kind {
            "valid" => self.valid.as_deref(),
            "unsigned" => self.unsigned.as_deref(),
            "tampered" => self.tampered.as_deref(),
            "older" => self.older.as_deref(),
            _ => None,
        }
    }

    /// `(kind, name)` of every entry given.
    pub fn entries(&self) -> Vec<(&'static str, &str)> {
        ["valid", "unsigned", "tampered", "older"]
            .into_iter()
            .filter_map(|k| self.get(k).map(|n| (k, n)))
            .collect()
    }
}

/// True if `name` can name a file on an update server: 1..=255 printable ASCII
/// characters without spaces or path separators, and not `.` or `..`.
pub fn is_image_name(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'\\')
}

/// `device.declaration`: what the manufacturer declares about the device.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declaration {
    /// How the device talks to its backend: `tls` or `plain`.
    pub transport: Transport,
    /// TLS details; required when `transport: tls`, forbidden with `plain`.
    #[serde(default)]
    pub tls: Option<TlsDeclaration>,
    /// State of the hardware debug port: `locked`, `open` or `absent`.
    pub debug_port: DebugPortState,
    /// True if the console offers a shell.
    pub console_shell: bool,
    /// SMS commands the device answers (lowercase words, e.g. `[ts, upload]`);
    /// `[]` = none.
    pub sms_commands: Vec<String>,
    /// Who may send SMS commands: `paired`, `any` or `none`.
    pub sms_command_senders: SmsSenders,
    /// How an SMS command is written, with the placeholders `{password}`,
    /// `{command}` (the command word and its comma-separated arguments) and, for a
    /// device that numbers its commands against replay, `{counter}` — e.g.
    /// `"pw,{password},{counter},{command}#"`. Without it the scenarios that send
    /// authenticated SMS commands are not applicable. Default: none.
    #[serde(default)]
    pub sms_command_format: Option<String>,
    /// Protocol commands the device accepts from its backend (upper case, e.g.
    /// `UPLOAD`, `CR`, `FACTORY`).
    pub protocol_commands: Vec<String>,
    /// Network services the device uses.
    pub services: Vec<ServiceDecl>,
    /// Features the device has. A feature not listed is declared absent (e.g. no
    /// `monitor` = the device declares it has no remote listening function).
    pub features: Vec<Feature>,
    /// Physical buttons (lowercase names, must include `sos` and `power`).
    pub buttons: Vec<String>,
    /// Indicators (lowercase names, e.g. `led`, `vibration`, `speaker`, `mic`,
    /// `screen`).
    pub indicators: Vec<String>,
}

impl Declaration {
    /// True if `feature` is declared.
    pub fn has(&self, feature: Feature) -> bool {
        self.features.contains(&feature)
    }
}

/// `declaration.transport` (and what a service uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TLS.
    Tls,
    /// Plain TCP, unencrypted.
    Plain,
}

/// `declaration.tls`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsDeclaration {
    /// Lowest TLS version accepted: "1.0", "1.1", "1.2" or "1.3" (quote it in YAML).
    pub min_version: String,
    /// True if the device authenticates with a client certificate.
    pub mutual: bool,
    /// True if the device pins its backend's certificate/key.
    pub pinned: bool,
}

/// `declaration.debug_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DebugPortState {
    /// Present but locked (readout protection).
    Locked,
    /// Present and open.
    Open,
    /// Not present.
    Absent,
}

/// `declaration.sms_command_senders`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsSenders {
    /// Only the paired (parent) numbers.
    Paired,
    /// Any number.
    Any,
    /// Nobody (SMS commands disabled).
    None,
}

/// One entry of `declaration.services`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDecl {
    /// Host name the device connects to.
    pub host: String,
    /// TCP port, 1..=65535.
    pub port: u16,
    /// `tls`, `plain`, `https` or `http`.
    pub protocol: ServiceProtocol,
}

/// `services[].protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceProtocol {
    /// TLS-protected TCP.
    Tls,
    /// Plain TCP.
    Plain,
    /// HTTP over TLS.
    Https,
    /// Plain HTTP.
    Http,
}

/// `declaration.features` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// SOS button/alarm.
    Sos,
    /// Geofence alerts.
    Geofence,
    /// Call whitelist.
    Whitelist,
    /// Parent can make the watch call a number.
    RemoteCall,
    /// Remote listening ("monitor"): the watch calls back silently.
    Monitor,
    /// Over-the-air firmware update.
    OtaUpdate,
    /// Remote factory reset.
    FactoryReset,
    /// Voice messages.
    VoiceMessage,
    /// Location reports.
    Location,
    /// Camera.
    Camera,
    /// Video calls.
    VideoCall,
    /// Step counter.
    StepCounter,
    /// Alarms/reminders.
    Alarm,
    /// School/class mode (silenced hours).
    ClassMode,
    /// "Find my watch" ring.
    FindWatch,
}

/// `device.console`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSpec {
    /// Regex matching the boot line; should have a named group `version`.
    pub boot_pattern: String,
    /// Console baud rate (a standard rate; must equal the rig's console baud).
    pub baud: u32,
}

/// `device.backend`.
#[derive(Debug, Clone, Serialize)]
pub struct BackendSpec {
    /// Where the device connects.
    pub device_endpoint: Endpoint,
    /// The parent-app API.
    pub api: ApiSpec,
    /// Test accounts.
    pub accounts: Accounts,
    /// The pairing code of the unit under test (printed on its box or shown by
    /// the app), with which a new account pairs the watch. Default: none — the
    /// scenarios that pair a second account are then not applicable.
    pub pairing_code: Option<Secret>,
    /// A client certificate and key of the unit under test on its device endpoint,
    /// supplied by the manufacturer for testing (mutual TLS). Used to load the
    /// backend as the watch would (resilience tests). Default: none.
    pub client_certificate: Option<ClientCertificate>,
}

/// `backend.client_certificate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertificate {
    /// Certificate chain (PEM), relative to the profile file; must exist.
    pub cert: PathBuf,
    /// Private key (PEM, PKCS#8 or SEC1), relative to the profile file; must exist.
    pub key: PathBuf,
}

/// `backend.device_endpoint`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Host name as the device knows it (must be in the rig's `network.hosts`).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// True if the endpoint speaks TLS.
    pub tls: bool,
}

/// `backend.api`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSpec {
    /// `http(s)://HOST[:PORT][/path]`; HOST must be in the rig's `network.hosts`.
    pub base_url: String,
    /// CA certificate (PEM) for the API, relative to the profile file; must exist
    /// when given. Default: none.
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

impl ApiSpec {
    /// The host part of `base_url`.
    pub fn host(&self) -> Option<&str> {
        url_host(&self.base_url)
    }
}

/// `backend.accounts`.
#[derive(Debug, Clone, Serialize)]
pub struct Accounts {
    /// The parent's account (paired with the watch).
    pub parent: Account,
    /// An unrelated user's account (must not see the watch).
    pub stranger: Account,
    /// Optional second parent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub second_parent: Option<Account>,
}

/// A backend test account. Exactly one of `password` / `password_env` in YAML.
#[derive(Debug, Clone)]
pub struct Account {
    /// Login e-mail.
    pub email: String,
    /// Password (use [`crate::config::resolve_secret`]). Never serialized.
    pub password: Secret,
}

impl Serialize for Account {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown<'a> {
            email: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            password: Option<&'static str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            password_env: Option<&'a str>,
        }
        let shown = match &self.password {
            Secret::Inline(_) => Shown {
                email: &self.email,
                password: Some(REDACTED),
                password_env: None,
            },
            Secret::Env(var) => Shown {
                email: &self.email,
                password: None,
                password_env: Some(var),
            },
        };
        shown.serialize(s)
    }
}

/// What redacted secrets are replaced with.
pub const REDACTED: &str = "<redacted>";

/// A secret: inline in the profile, or the name of an environment variable.
/// `Debug` and `Serialize` never show an inline value.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// `password: "…"`.
    Inline(String),
    /// `password_env: NAME`.
    Env(String),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Inline(_) => write!(f, "Secret::Inline({REDACTED})"),
            Secret::Env(v) => write!(f, "Secret::Env({v:?})"),
        }
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Secret::Inline(_) => s.serialize_str(REDACTED),
            Secret::Env(v) => s.serialize_str(&format!("{REDACTED} (from ${v})")),
        }
    }
}

/// `device.numbers`: E.164 phone numbers (`+` and 7..15 digits).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Numbers {
    /// The parent's phone (paired, whitelisted).
    pub parent: String,
    /// A second paired phone.
    pub second_parent: String,
    /// An unknown phone (not paired, not whitelisted).
    pub stranger: String,
}

// ---------------------------------------------------------------------------------
// Raw (as written) types
// ---------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a device profile mapping")]
pub(crate) struct RawDeviceFile {
    pub(crate) device: RawDeviceSpec,
    #[serde(default)]
    pub(crate) expected_failures: Vec<String>,
    /// Read only by the virtual lab: accepted, not looked at.
    #[serde(default)]
    #[allow(dead_code)]
    simulation: serde::de::IgnoredAny,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a device mapping")]
pub(crate) struct RawDeviceSpec {
    name: String,
    manufacturer: String,
    model: String,
    imei: String,
    device_id: String,
    firmware: Firmware,
    declaration: Declaration,
    console: ConsoleSpec,
    backend: RawBackendSpec,
    numbers: Numbers,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with device_endpoint, api, accounts (and optionally pairing_code or pairing_code_env, client_certificate)"
)]
struct RawBackendSpec {
    device_endpoint: Endpoint,
    api: ApiSpec,
    accounts: RawAccounts,
    #[serde(default)]
    pairing_code: Option<String>,
    #[serde(default)]
    pairing_code_env: Option<String>,
    #[serde(default)]
    client_certificate: Option<ClientCertificate>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with parent and stranger accounts"
)]
struct RawAccounts {
    parent: RawAccount,
    stranger: RawAccount,
    #[serde(default)]
    second_parent: Option<RawAccount>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping like { email: …, password_env: NAME }"
)]
struct RawAccount {
    email: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    password_env: Option<String>,
}

// ---------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------

/// True if `s` is 15 digits with a valid Luhn check digit.
pub fn imei_is_valid(s: &str) -> bool {
    s.len() == 15 && s.bytes().all(|b| b.is_ascii_digit()) && luhn_ok(s)
}

fn luhn_ok(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn is_e164(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(|d| {
        (7..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    })
}

fn url_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.parse::<u16>().is_ok() => h,
        Some(_) => return None,
        None => authority,
    };
    (!host.is_empty()).then_some(host)
}

fn is_word(s: &str, upper: bool) -> bool {
    let mut c = s.chars();
    let first_ok = match c.next() {
        Some(ch) if upper => ch.is_ascii_uppercase(),
        Some(ch) => ch.is_ascii_lowercase(),
        None => false,
    };
    first_ok
        && c.all(|ch| {
            ch.is_ascii_digit()
                || ch == '_'
                || if upper {
                    ch.is_ascii_uppercase()
                } else {
                    ch.is_ascii_lowercase()
                }
        })
}

/// Validate a parsed `device:` map. Paths in `d` are `["device", …]` both for a
/// profile file and for an inline `device:` in a rig file. Relative paths are
/// resolved against `base_dir` (the directory of the file the map is in).
pub(crate) fn validate_spec(raw: RawDeviceSpec, d: &mut Diag, base_dir: &Path) -> DeviceSpec {
    let dev = "device";
    for (key, v) in [
        ("name", &raw.name),
        ("manufacturer", &raw.manufacturer),
        ("model", &raw.model),
    ] {
        if v.trim().is_empty() {
            d.err(&[dev, key], format!("device.{key} is empty: expected text"));
        }
    }
    if !imei_is_valid(&raw.imei) {
        let why = if raw.imei.len() != 15 || !raw.imei.bytes().all(|b| b.is_ascii_digit()) {
            "not 15 digits"
        } else {
            "Luhn check digit is wrong"
        };
        d.err(
            &[dev, "imei"],
            format!(
                "invalid IMEI `{}` ({why}): expected 15 digits with a valid Luhn check digit",
                raw.imei
            ),
        );
    }
    if !((raw.device_id.len() == 10 || raw.device_id.len() == 15)
        && raw.device_id.bytes().all(|b| b.is_ascii_digit()))
    {
        d.err(
            &[dev, "device_id"],
            format!(
                "invalid device_id `{}`: expected 10 or 15 digits",
                raw.device_id
            ),
        );
    }

    // firmware
    let mut firmware = raw.firmware;
    let image = base_dir.join(&firmware.image);
    if firmware.image.as_os_str().is_empty() {
        d.err(
            &[dev, "firmware", "image"],
            "firmware.image is empty: expected an image file path",
        );
    } else if !image.is_file() {
        d.err(
            &[dev, "firmware", "image"],
            format!("firmware image `{}` not found (looked for {}): expected an existing file, relative to this file", firmware.image.display(), image.display()),
        );
    }
    firmware.image = image;
    if let Some(prev) = firmware.previous.take() {
        let full = base_dir.join(&prev);
        if !full.is_file() {
            d.err(
                &[dev, "firmware", "previous"],
                format!("previous firmware image `{}` not found (looked for {}): expected an existing file, relative to this file", prev.display(), full.display()),
            );
        }
        firmware.previous = Some(full);
    }
    if firmware.version.trim().is_empty() {
        d.err(
            &[dev, "firmware", "version"],
            "firmware.version is empty: expected a version like 2.4.0",
        );
    }
    if let Some(ota) = &firmware.ota_test_images {
        for (kind, name) in ota.entries() {
            if !is_image_name(name) {
                d.err(
                    &[dev, "firmware", "ota_test_images", kind],
                    format!("invalid image name `{name}`: expected the name of an image on the vendor's update server, like reference-2.5.0.img (no spaces or slashes)"),
                );
            }
        }
    }

    // declaration
    let decl = &raw.declaration;
    let dp = |k: &'static str| [dev, "declaration", k];
    match (decl.transport, &decl.tls) {
        (Transport::Tls, None) => d.err(&dp("transport"), "transport is tls but `tls:` is missing: expected `tls: { min_version: \"1.2\", mutual: BOOL, pinned: BOOL }`"),
        (Transport::Plain, Some(_)) => d.err_key(&dp("tls"), "`tls:` is given but transport is plain: remove it or set `transport: tls`"),
        (Transport::Tls, Some(t)) if !["1.0", "1.1", "1.2", "1.3"].contains(&t.min_version.as_str()) => d.err(
            &[dev, "declaration", "tls", "min_version"],
            format!("unknown TLS version `{}`: expected \"1.0\", \"1.1\", \"1.2\" or \"1.3\"", t.min_version),
        ),
        _ => {}
    }
    let lists: [(&str, &Vec<String>, bool); 4] = [
        ("sms_commands", &decl.sms_commands, false),
        ("protocol_commands", &decl.protocol_commands, true),
        ("buttons", &decl.buttons, false),
        ("indicators", &decl.indicators, false),
    ];
    for (key, list, upper) in lists {
        for (i, item) in list.iter().enumerate() {
            let i_s = i.to_string();
            if !is_word(item, upper) {
                let case = if upper { "UPPER_CASE" } else { "lower_case" };
                d.err(
                    &[dev, "declaration", key, &i_s],
                    format!("invalid {key} entry `{item}`: expected a {case} word"),
                );
            } else if list[..i].contains(item) {
                d.err(
                    &[dev, "declaration", key, &i_s],
                    format!("`{item}` is listed twice in {key}"),
                );
            }
        }
    }
    for required in ["sos", "power"] {
        if !decl.buttons.iter().any(|b| b == required) {
            d.err(
                &dp("buttons"),
                format!(
                    "declaration.buttons has no `{required}`: expected at least `sos` and `power`"
                ),
            );
        }
    }
    for (i, f) in decl.features.iter().enumerate() {
        if decl.features[..i].contains(f) {
            let i_s = i.to_string();
            d.err(
                &[dev, "declaration", "features", &i_s],
                format!("feature `{f:?}` is listed twice"),
            );
        }
    }
    for (i, svc) in decl.services.iter().enumerate() {
        let i_s = i.to_string();
        if svc.host.trim().is_empty() {
            d.err(
                &[dev, "declaration", "services", &i_s, "host"],
                "service host is empty: expected a host name",
            );
        }
        if svc.port == 0 {
            d.err(
                &[dev, "declaration", "services", &i_s, "port"],
                "service port 0: expected 1..=65535",
            );
        }
    }

    if let Some(f) = &decl.sms_command_format {
        for needed in ["{password}", "{command}"] {
            if !f.contains(needed) {
                d.err(
                    &dp("sms_command_format"),
                    format!("sms_command_format `{f}` has no {needed}: expected e.g. \"pw,{{password}},{{counter}},{{command}}#\""),
                );
            }
        }
        if decl.sms_commands.is_empty() {
            d.warn(
                &dp("sms_command_format"),
                "sms_command_format is given but sms_commands is empty: the device declares no SMS command",
            );
        }
    }

    // console
    if let Err(e) = regex::Regex::new(&raw.console.boot_pattern) {
        let first = e
            .to_string()
            .lines()
            .last()
            .unwrap_or("")
            .trim()
            .to_string();
        d.err(
            &[dev, "console", "boot_pattern"],
            format!("boot_pattern is not a valid regex ({first}): expected e.g. \"firmware (?P<version>[0-9.]+) booted\""),
        );
    } else if !raw.console.boot_pattern.contains("(?P<version>")
        && !raw.console.boot_pattern.contains("(?<version>")
    {
        d.warn(&[dev, "console", "boot_pattern"], "boot_pattern has no named group `version`: the booted version cannot be read from the console");
    }
    if !super::rig::STANDARD_BAUDS.contains(&raw.console.baud) {
        d.err(
            &[dev, "console", "baud"],
            format!("baud {} is not a standard rate", raw.console.baud),
        );
    }

    // backend
    let b = raw.backend;
    if b.device_endpoint.host.trim().is_empty() {
        d.err(
            &[dev, "backend", "device_endpoint", "host"],
            "host is empty: expected a host name",
        );
    }
    if b.device_endpoint.port == 0 {
        d.err(
            &[dev, "backend", "device_endpoint", "port"],
            "port 0: expected 1..=65535",
        );
    }
    let mut api = b.api;
    if url_host(&api.base_url).is_none() {
        d.err(
            &[dev, "backend", "api", "base_url"],
            format!(
                "invalid base_url `{}`: expected http(s)://HOST[:PORT][/path]",
                api.base_url
            ),
        );
    }
    if let Some(ca) = &api.ca {
        let full = base_dir.join(ca);
        if !full.is_file() {
            d.err(
                &[dev, "backend", "api", "ca"],
                format!("CA file `{}` not found (looked for {}): expected an existing PEM file relative to this file, or null", ca.display(), full.display()),
            );
        }
        api.ca = Some(full);
    }
    let account = |name: &'static str, a: RawAccount, d: &mut Diag| -> Account {
        let path = [dev, "backend", "accounts", name];
        if !a.email.contains('@') {
            d.err(
                &[dev, "backend", "accounts", name, "email"],
                format!("invalid e-mail `{}`: expected user@domain", a.email),
            );
        }
        let password = match (a.password, a.password_env) {
            (Some(_), Some(_)) => {
                d.err_key(
                    &[dev, "backend", "accounts", name, "password_env"],
                    format!("account `{name}` has both `password` and `password_env`: expected exactly one"),
                );
                Secret::Inline(String::new())
            }
            (None, None) => {
                d.err_key(&path, format!("account `{name}` has neither `password` nor `password_env`: expected exactly one"));
                Secret::Inline(String::new())
            }
            (Some(p), None) => Secret::Inline(p),
            (None, Some(var)) => {
                let ok = var
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !ok {
                    d.err(
                        &[dev, "backend", "accounts", name, "password_env"],
                        format!("invalid environment variable name `{var}`: expected [A-Za-z_][A-Za-z0-9_]*"),
                    );
                } else if std::env::var_os(&var).is_none() {
                    d.warn(
                        &[dev, "backend", "accounts", name, "password_env"],
                        format!("environment variable `{var}` is not set; runs that log in as `{name}` will fail"),
                    );
                }
                Secret::Env(var)
            }
        };
        Account {
            email: a.email,
            password,
        }
    };
    let pairing_code = match (b.pairing_code, b.pairing_code_env) {
        (Some(_), Some(_)) => {
            d.err_key(
                &[dev, "backend", "pairing_code_env"],
                "both `pairing_code` and `pairing_code_env` are given: expected at most one",
            );
            None
        }
        (Some(c), None) if c.trim().is_empty() => {
            d.err(
                &[dev, "backend", "pairing_code"],
                "pairing_code is empty: expected the code printed on the watch's box",
            );
            None
        }
        (Some(c), None) => Some(Secret::Inline(c)),
        (None, Some(var)) => Some(Secret::Env(var)),
        (None, None) => None,
    };
    let client_certificate = b.client_certificate.map(|c| {
        let full = ClientCertificate {
            cert: base_dir.join(&c.cert),
            key: base_dir.join(&c.key),
        };
        for (key, rel, path) in [("cert", &c.cert, &full.cert), ("key", &c.key, &full.key)] {
            if !path.is_file() {
                d.err(
                    &[dev, "backend", "client_certificate", key],
                    format!("`{}` not found (looked for {}): expected an existing PEM file relative to this file", rel.display(), path.display()),
                );
            }
        }
        full
    });
    let accounts = Accounts {
        parent: account("parent", b.accounts.parent, d),
        stranger: account("stranger", b.accounts.stranger, d),
        second_parent: b
            .accounts
            .second_parent
            .map(|a| account("second_parent", a, d)),
    };

    for (key, v) in [
        ("parent", &raw.numbers.parent),
        ("second_parent", &raw.numbers.second_parent),
        ("stranger", &raw.numbers.stranger),
    ] {
        if !is_e164(v) {
            d.err(
                &[dev, "numbers", key],
                format!("invalid phone number `{v}`: expected E.164 like +4915100000001"),
            );
        }
    }

    DeviceSpec {
        name: raw.name,
        manufacturer: raw.manufacturer,
        model: raw.model,
        imei: raw.imei,
        device_id: raw.device_id,
        firmware,
        declaration: raw.declaration,
        console: raw.console,
        backend: BackendSpec {
            device_endpoint: b.device_endpoint,
            api,
            accounts,
            pairing_code,
            client_certificate,
        },
        numbers: raw.numbers,
    }
}

/// Validate the top level of a profile file.
pub(crate) fn validate_file(raw: RawDeviceFile, d: &mut Diag, base_dir: &Path) -> DeviceProfile {
    for (i, id) in raw.expected_failures.iter().enumerate() {
        let ok = id.split_once(':').is_some_and(|(std, req)| {
            !std.is_empty()
                && !req.is_empty()
                && std.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && req
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        });
        if !ok {
            let i_s = i.to_string();
            d.err(&["expected_failures", &i_s], format!("invalid requirement id `{id}`: expected STANDARD:REQUIREMENT like EN18031-1:SCM-3"));
        }
    }
    DeviceProfile {
        device: validate_spec(raw.device, d, base_dir),
        expected_failures: raw.expected_failures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_and_helpers() {
        assert!(imei_is_valid("490154203237518"));
        assert!(!imei_is_valid("490154203237519"));
        assert!(!imei_is_valid("49015420323751"));
        assert!(is_e164("+4915100000001"));
        assert!(!is_e164("015100000001"));
        assert_eq!(
            url_host("https://api.kidcloud.example:8443/v1"),
            Some("api.kidcloud.example")
        );
        assert_eq!(url_host("ftp://x"), None);
    }
}

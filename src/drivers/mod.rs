//! Drivers: small traits the scenarios act through, each with a real and a virtual
//! implementation.
//!
//! Resources (a port path, a GPIO line, a probe serial) come from the rig
//! configuration; drivers bind to them; [`crate::strategy`] brings the device through
//! its states. Every driver records what it did and saw, with device-time stamps, into
//! an [`EventLog`] that steps assert on and the evidence writer saves.

use crate::error::RigResult;
use async_trait::async_trait;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub mod backend_http;
pub mod callbox;
pub mod console;
pub mod debug_virtual;
pub mod eventlog;
pub mod flash_drive;
pub mod flash_probe;
pub mod gnss;
pub mod gnss_sdr;
pub mod gpio_pi;
pub mod gpio_virtual;
pub mod modem;
pub mod serial;
pub use eventlog::{EventLog, Mark};

/// Buttons a watch can have (GPIO lines `btn_<name>` in the virtual lab).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Button {
    Sos,
    Power,
    Call1,
    Call2,
}

impl Button {
    pub fn name(self) -> &'static str {
        match self {
            Button::Sos => "sos",
            Button::Power => "power",
            Button::Call1 => "call1",
            Button::Call2 => "call2",
        }
    }
    pub fn parse(s: &str) -> Option<Button> {
        Some(match s.to_ascii_lowercase().as_str() {
            "sos" => Button::Sos,
            "power" => Button::Power,
            "call1" => Button::Call1,
            "call2" => Button::Call2,
            _ => return None,
        })
    }
}

/// Outputs of the watch the rig can sense.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum IndicatorEvent {
    /// A binary line changed: `led`, `vibration`, `speaker`, `mic`.
    Edge { line: String, level: bool },
    /// The text on the screen changed.
    Screen { text: String },
}

/// Supply to the watch.
#[async_trait]
pub trait Power: Send + Sync {
    async fn set(&self, on: bool) -> RigResult<()>;
}

/// The watch's buttons.
#[async_trait]
pub trait Buttons: Send + Sync {
    /// Press and hold for `hold_secs` device seconds, then release.
    async fn press(&self, button: Button, hold_secs: f64) -> RigResult<()>;
}

/// The watch's outputs, sensed with timestamps.
pub trait Indicators: Send + Sync {
    /// Every change seen since the driver started.
    fn log(&self) -> &EventLog<IndicatorEvent>;
}

/// A console line as received.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConsoleLine {
    pub text: String,
    /// The line was cut because it exceeded the line limit (the rest follows as
    /// further lines; nothing is dropped from the evidence file).
    pub cut: bool,
}

/// A serial console.
#[async_trait]
pub trait Console: Send + Sync {
    fn log(&self) -> &EventLog<ConsoleLine>;
    /// Write text to the console (a line ending is not added).
    async fn send(&self, text: &str) -> RigResult<()>;
}

/// A GNSS fix the rig feeds, or none.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Position {
    pub lat: f64,
    pub lon: f64,
    pub alt_m: f64,
}

/// What the GNSS simulator fed at one epoch (the truth a step compares the device's
/// reports with).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FedEpoch {
    /// UTC the receiver reported (Unix ms), shifted as the scene says.
    pub utc_ms: i64,
    /// The position reported, `None` when the epoch had no fix.
    pub fix: Option<Position>,
    /// The position the receiver believed it had even without a fix (true or spoofed).
    pub position: Option<Position>,
}

/// Simulated GNSS input to the device.
#[async_trait]
pub trait Gnss: Send + Sync {
    /// Change what the receiver experiences (position, route, outage, spoofing, time).
    async fn apply(&self, change: crate::gnss::scene::GnssChange) -> RigResult<()>;
    /// Feed a fix at this position (still), or no fix when `None`.
    async fn set_position(&self, position: Option<Position>) -> RigResult<()> {
        self.apply(match position {
            Some(p) => crate::gnss::scene::GnssChange::Still {
                lat: p.lat,
                lon: p.lon,
                alt_m: p.alt_m,
            },
            None => crate::gnss::scene::GnssChange::NoFix,
        })
        .await
    }
    /// Replay a recorded NMEA log with its original pacing; the scene resumes after it.
    async fn replay(&self, recording: Arc<crate::gnss::replay::Recording>) -> RigResult<()>;
    /// Every sentence written, with its device time.
    fn log(&self) -> &EventLog<String>;
    /// What was fed, one record per epoch (not during a replay).
    fn fed(&self) -> &EventLog<FedEpoch>;
}

/// Registration state the network gives the watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    NotSearching,
    Home,
    Searching,
    Denied,
    Roaming,
}

/// What the network does with a call the watch places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CallAnswer {
    Answer,
    Reject,
    Ring,
}

/// Everything that happened on the cellular side.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CellEvent {
    SmsToWatch {
        from: String,
        text: String,
    },
    SmsFromWatch {
        to: String,
        text: String,
    },
    /// The network rings the watch, presenting `caller_id`.
    CallToWatch {
        caller_id: String,
    },
    /// The watch answered the incoming call.
    WatchAnswered {
        caller_id: String,
    },
    /// The watch rejected or hung up a call.
    WatchHungUp,
    /// The watch dialled a number.
    WatchDialled {
        number: String,
    },
    /// The far end answered/rejected the watch's call.
    FarEnd {
        number: String,
        answer: CallAnswer,
    },
    /// The far end ended an active call.
    CallEnded,
    Registration {
        state: Registration,
    },
    /// The network activated the watch's packet-data connection (the virtual modem
    /// on a successful `AT+CGACT=1`; a callbox when its adapter reports it).
    DataAttached {
        apn: Option<String>,
    },
    /// The watch asked the network to resolve a name.
    DnsQuery {
        host: String,
        answer: Option<String>,
    },
    /// A raw AT command line from the watch (for evidence).
    AtCommand {
        line: String,
    },
}

/// The cellular network as seen by the watch.
#[async_trait]
pub trait Cellular: Send + Sync {
    async fn set_registration(&self, state: Registration) -> RigResult<()>;
    async fn send_sms(&self, from: &str, text: &str) -> RigResult<()>;
    /// Ring the watch presenting `caller_id`; returns when the call is set up (the
    /// watch's reaction is in the log).
    async fn call_watch(&self, caller_id: &str) -> RigResult<()>;
    /// End the network-side call (caller gives up / far end hangs up).
    async fn hang_up(&self) -> RigResult<()>;
    /// The rig cut the watch's supply. Where the rig plays the modem itself, the
    /// terminal side forgets what the watch was typing (a command or SMS text) and
    /// any call ends; a real modem resets by itself, so the default only hangs up.
    async fn power_lost(&self) -> RigResult<()> {
        self.hang_up().await
    }
    /// How the far end treats calls the watch places from now on.
    fn set_call_answer(&self, answer: CallAnswer);
    fn log(&self) -> &EventLog<CellEvent>;
    /// Whether the watch has asked for and been told registration (modem seen alive).
    fn registration(&self) -> Registration;
}

/// Outcome of a flashing attempt.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum FlashOutcome {
    Written {
        version: String,
        sha256: String,
    },
    /// The device's own update path (its bootloader) looked at the image and refused
    /// it.
    Refused {
        reason: String,
    },
    /// The debug port refused access, so no image reached the device's own checks
    /// (a locked production watch flashed through a probe).
    Locked {
        detail: String,
    },
}

/// Writes firmware images into the device.
#[async_trait]
pub trait Flasher: Send + Sync {
    async fn flash(&self, image: &Path) -> RigResult<FlashOutcome>;
}

/// What a debug probe could do with the device.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "access", rename_all = "lowercase")]
pub enum DebugAccess {
    Locked { detail: String },
    Open { idcode: String, flash_read: Vec<u8> },
}

/// A debug port (SWD).
#[async_trait]
pub trait DebugPort: Send + Sync {
    /// Try to attach and read `len` bytes from the start of the device's flash
    /// (address 0 on the virtual watch and nRF52; 0x08000000 on STM32).
    async fn probe(&self, len: usize) -> RigResult<DebugAccess>;
}

/// An HTTP answer from the device's cloud.
#[derive(Debug, Clone, Serialize)]
pub struct ApiResponse {
    pub status: u16,
    pub body: serde_json::Value,
}

/// The device's cloud, reached as a parent app or an attacker on the internet would.
#[async_trait]
pub trait Backend: Send + Sync {
    /// An API request. `token` is sent as `Authorization: Bearer`.
    async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> RigResult<ApiResponse>;
    /// Whether the API is HTTPS (and was verified against the pinned CA).
    fn api_is_tls(&self) -> bool;
    /// Open a raw connection to the device endpoint, as any internet host could
    /// (plain TCP or TLS without a client certificate, per the endpoint), send
    /// `bytes`, and return what came back within `wait` (wall time).
    async fn device_endpoint_exchange(&self, bytes: &[u8], wait: Duration) -> RigResult<Vec<u8>>;
}

/// The network's name service and data plane, as the cellular side needs it: the
/// virtual modem answers `AT+QIDNSGIP` with it and tells it when coverage changes.
pub trait NameService: Send + Sync {
    /// The gateway address a host name (or literal IPv4 address) resolves to for the
    /// watch, or `None` if the network refuses to resolve it.
    fn resolve(&self, host: &str) -> Option<std::net::Ipv4Addr>;
    /// Coverage up or down; when down, name resolution fails and open flows are reset.
    fn set_coverage(&self, up: bool);
}

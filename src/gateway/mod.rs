//! The rig's cell gateway: the watch's data path to the internet
//! (`docs/virtual-hardware.md` §5, "Data path").
//!
//! The watch resolves every destination through the network (`AT+QIDNSGIP`, answered
//! by the modem driver through [`NameService`]). The gateway answers each distinct
//! host name with its own loopback address `127.X.Y.n` (X, Y random per run, or the
//! configured `network.gateway`), so the local address a connection arrives on tells
//! which host the watch wanted. On each host address it listens on
//!
//! - every port the device profile names (device endpoint, API base URL, declared
//!   services: for any host, so an undeclared host on a known port is seen too),
//! - the sinkhole ports [`SINKHOLE_PORTS`] (a port that cannot be bound, e.g. a
//!   privileged one without the capability, is skipped and noted in `gateway.log`).
//!
//! A connection to a port the profile names *for that host* is relayed to the host's
//! upstream from `network.hosts` (the lab's cloud, or a real `HOST:PORT`); a host
//! configured with no profile port relays every port. Everything else is a
//! **sinkhole**: accepted, recorded, never answered, so undeclared destinations and
//! what the watch would have sent them are captured.
//!
//! Every flow is recorded: [`FlowEvent`]s in an [`EventLog`] (and `flows.jsonl`), a
//! [`FlowSummary`] (host, port, bytes each way, clear text or TLS with the
//! ClientHello's versions and SNI), watch-protocol frames decoded from clear-text
//! flows, and the raw bytes of each direction in `flow-<id>-up.bin` /
//! `flow-<id>-down.bin`. Raw bytes are written to the evidence file *before* they
//! are forwarded and nothing is dropped: the evidence channel is bounded and applies
//! back-pressure; a direction that reaches [`MAX_FLOW_BYTES`] is no longer read (the
//! sender stalls) rather than losing bytes. File writes happen on a dedicated
//! writer thread, never on the async workers.
//!
//! Coverage: [`NameService::set_coverage`]`(false)` makes resolution fail and resets
//! (TCP RST) every open flow; connections arriving while coverage is down are reset.
//!
//! Also here: the packet capture ([`pcap`], written on the writer thread), per-flow
//! impairments ([`impair`]: delay, loss, cuts), the interception modes of
//! [`intercept`] (a rogue server taking a host's name, a TLS man in the middle with a
//! forged certificate, chosen per host), UDP ([`udp`]), the personal-data scanner
//! ([`pii`]) and the TLS handshake sniffers ([`tlsinfo`]), which resume where they
//! stopped so a hello arriving in small pieces is examined once.

pub mod dns;
pub mod impair;
pub mod intercept;
pub mod pcap;
pub mod pii;
pub mod tlsinfo;
pub mod udp;
pub use intercept::{ForgedCert, Handshake, HostMode, Interception};
pub use tlsinfo::{sniff_client_hello, tls_version_name, ClientHello, Sniff};

use crate::clock::{Clock, DeviceMs};
use crate::config::{LoadedRig, PortRef};
use crate::drivers::{EventLog, NameService};
use crate::error::{RigError, RigResult};
use crate::lab::Lab;
use crate::wire::watchproto;
use bytes::Bytes;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tlsinfo::SNIFF_LIMIT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};

/// Ports every host address listens on besides the profile's.
pub const SINKHOLE_PORTS: [u16; 6] = [80, 443, 5093, 8080, 8443, 9000];
/// Raw bytes kept per flow and direction; past this the direction is not read.
pub const MAX_FLOW_BYTES: u64 = 256 * 1024 * 1024;
/// Open flows at once; further connections are reset (and recorded). Each open
/// clear-text flow may hold up to two frame buffers of 1 MiB, so this bounds the
/// gateway's memory too.
pub const MAX_OPEN_FLOWS: usize = 128;
/// Summaries kept in memory (all are in `flows.jsonl`).
const MAX_SUMMARIES: usize = 10_000;
/// Flow events kept in memory by the log.
const LOG_CAPACITY: usize = 20_000;
/// Wall time to connect to an upstream.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Read size.
const CHUNK: usize = 16 * 1024;
/// Bytes one direction of a flow may hold in its delay line (impairments).
const MAX_IN_FLIGHT: usize = 4 * 1024 * 1024;
/// The capture file in the evidence directory.
pub const PCAP_FILE: &str = "gateway.pcap";
/// Every flow's summary, written at shutdown.
pub const SUMMARY_FILE: &str = "flow-summaries.json";
/// Longest text of a frame in a [`FlowEvent::Frame`].
const FRAME_TEXT_MAX: usize = 4096;

/// Direction of bytes in a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dir {
    /// Watch → server.
    Up,
    /// Server → watch.
    Down,
}

impl Dir {
    fn name(self) -> &'static str {
        match self {
            Dir::Up => "up",
            Dir::Down => "down",
        }
    }
}

/// What the gateway saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum FlowEvent {
    /// The watch opened a connection to `host:port`; `upstream` is where it is
    /// relayed, `None` for a sinkhole.
    Opened {
        id: u64,
        host: String,
        port: u16,
        upstream: Option<String>,
    },
    /// The flow ended (either side closed, reset, coverage lost, rig shutdown).
    Closed {
        id: u64,
        bytes_up: u64,
        bytes_down: u64,
    },
    /// The first bytes from the watch told what the flow is (once per flow).
    Detected { id: u64, protocol: FlowProtocol },
    /// A watch-protocol frame in a clear-text flow, as text (non-printable bytes as
    /// `\xHH`, binary payloads summarised).
    Frame { id: u64, dir: Dir, frame: String },
    /// An intercepted flow (rogue server or man in the middle) ended: how the watch
    /// treated the forged certificate and what the attacker could read.
    Intercepted { id: u64, outcome: Interception },
}

/// What a TLS client offered in its ClientHello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsHello {
    /// Highest version offered (`0x0303` TLS 1.2, `0x0304` TLS 1.3); 0 when the
    /// hello could not be parsed.
    pub version: u16,
    /// Every version offered (`supported_versions` without GREASE, else the legacy
    /// version field).
    pub offered: Vec<u16>,
    /// Server name indication.
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    /// Why the hello could not be parsed, if it could not.
    pub error: Option<String>,
}

impl TlsHello {
    /// `TLS 1.2`, `TLS 1.3`, … of [`TlsHello::version`].
    pub fn version_name(&self) -> String {
        tls_version_name(self.version)
    }
}

/// What the first bytes of a flow say it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FlowProtocol {
    /// The watch has sent nothing yet.
    Undetermined,
    /// Not TLS.
    ClearText,
    /// A TLS ClientHello.
    Tls(TlsHello),
}

/// Personal data found in a clear-text flow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CleartextFinding {
    pub flow: u64,
    pub host: String,
    pub port: u16,
    pub dir: Dir,
    pub finding: pii::PiiFinding,
}

/// Transport of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    /// A UDP association (datagrams from one watch address and port).
    Udp,
}

/// Everything known about one flow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowSummary {
    pub id: u64,
    pub transport: Transport,
    pub host: String,
    pub port: u16,
    pub upstream: Option<String>,
    /// Device time of the connection.
    pub opened_t: DeviceMs,
    pub closed_t: Option<DeviceMs>,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub protocol: FlowProtocol,
    /// The ClientHello when `protocol` is TLS (the same data, for convenience).
    pub tls: Option<TlsHello>,
    /// What the server's first flight said (negotiated version and suite; the
    /// certificate when it travels in clear, TLS 1.2 and older).
    pub server_tls: Option<tlsinfo::ServerHelloInfo>,
    /// Why the server's first flight could not be read, if it could not.
    pub server_tls_error: Option<String>,
    /// Watch-protocol frames decoded (both directions).
    pub frames: u64,
    /// How it ended (`None` while open).
    pub end: Option<String>,
    /// A direction reached [`MAX_FLOW_BYTES`] and was no longer read.
    pub capped: bool,
    /// The flow met the rig's rogue server or man in the middle.
    pub intercept: Option<Interception>,
}

impl FlowSummary {
    fn set_protocol(&mut self, p: FlowProtocol) {
        self.tls = match &p {
            FlowProtocol::Tls(h) => Some(h.clone()),
            _ => None,
        };
        self.protocol = p;
    }

    /// True when the watch's first bytes were not a TLS handshake.
    pub fn is_cleartext(&self) -> bool {
        self.protocol == FlowProtocol::ClearText
    }
}

fn protocol_of(sniff: &Sniff) -> Option<FlowProtocol> {
    match sniff {
        Sniff::NeedMore => None,
        Sniff::NotTls => Some(FlowProtocol::ClearText),
        Sniff::Tls(Ok(h)) => Some(FlowProtocol::Tls(TlsHello {
            version: h.versions.iter().copied().max().unwrap_or(h.legacy_version),
            offered: h.versions.clone(),
            sni: h.sni.clone(),
            alpn: h.alpn.clone(),
            error: None,
        })),
        Sniff::Tls(Err(e)) => Some(FlowProtocol::Tls(TlsHello {
            version: 0,
            offered: vec![],
            sni: None,
            alpn: vec![],
            error: Some(e.clone()),
        })),
    }
}

// ---------------------------------------------------------------------------------
// Evidence writer
// ---------------------------------------------------------------------------------

enum WriterMsg {
    Append { file: String, bytes: Bytes },
    Close { file: String },
    Barrier(std::sync::mpsc::Sender<()>),
}

/// Appends to evidence files on a dedicated thread, in order, never dropping:
/// senders wait when the queue is full. Used by the gateway and the lab drivers so
/// that no file I/O runs on an async worker.
#[derive(Clone)]
pub struct EvidenceWriter {
    tx: mpsc::Sender<WriterMsg>,
    error: Arc<Mutex<Option<String>>>,
    dir: PathBuf,
}

const OPEN_FILES: usize = 64;

impl EvidenceWriter {
    /// A writer for files in `dir` (created if missing).
    pub fn start(dir: &Path) -> RigResult<EvidenceWriter> {
        std::fs::create_dir_all(dir)
            .map_err(|e| RigError::Other(format!("evidence dir {}: {e}", dir.display())))?;
        let (tx, mut rx) = mpsc::channel::<WriterMsg>(256);
        let error = Arc::new(Mutex::new(None));
        let err2 = error.clone();
        let base = dir.to_path_buf();
        // The thread ends when the last sender is dropped (it is not joined).
        std::thread::Builder::new()
            .name("redrig-evidence".into())
            .spawn(move || {
                let mut open: HashMap<String, std::fs::File> = HashMap::new();
                while let Some(msg) = rx.blocking_recv() {
                    match msg {
                        WriterMsg::Append { file, bytes } => {
                            if open.len() >= OPEN_FILES && !open.contains_key(&file) {
                                open.clear();
                            }
                            let f = match open.entry(file.clone()) {
                                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                                std::collections::hash_map::Entry::Vacant(v) => {
                                    match std::fs::OpenOptions::new()
                                        .create(true)
                                        .append(true)
                                        .open(base.join(&file))
                                    {
                                        Ok(f) => v.insert(f),
                                        Err(e) => {
                                            err2.lock()
                                                .unwrap()
                                                .get_or_insert(format!("{file}: {e}"));
                                            continue;
                                        }
                                    }
                                }
                            };
                            if let Err(e) = f.write_all(&bytes) {
                                err2.lock().unwrap().get_or_insert(format!("{file}: {e}"));
                            }
                        }
                        WriterMsg::Close { file } => {
                            open.remove(&file);
                        }
                        WriterMsg::Barrier(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            })
            .map_err(|e| RigError::Other(format!("cannot start the evidence writer: {e}")))?;
        Ok(EvidenceWriter {
            tx,
            error,
            dir: dir.to_path_buf(),
        })
    }

    /// The evidence directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Append bytes to `file` (waits while the queue is full).
    pub async fn append(&self, file: &str, bytes: impl Into<Bytes>) -> RigResult<()> {
        self.tx
            .send(WriterMsg::Append {
                file: file.to_string(),
                bytes: bytes.into(),
            })
            .await
            .map_err(|_| RigError::Other("the evidence writer has stopped".into()))
    }

    /// Append from a plain thread (not an async worker): waits while the queue is full.
    pub fn append_blocking(&self, file: &str, bytes: impl Into<Bytes>) -> RigResult<()> {
        self.tx
            .blocking_send(WriterMsg::Append {
                file: file.to_string(),
                bytes: bytes.into(),
            })
            .map_err(|_| RigError::Other("the evidence writer has stopped".into()))
    }

    /// Append from a context that must not wait: fails instead when the queue is full.
    pub fn try_append(&self, file: &str, bytes: impl Into<Bytes>) -> RigResult<()> {
        self.tx
            .try_send(WriterMsg::Append {
                file: file.to_string(),
                bytes: bytes.into(),
            })
            .map_err(|e| RigError::Other(format!("evidence writer: {e}")))
    }

    /// The file will not be written again for a while: close it.
    pub async fn close(&self, file: &str) {
        let _ = self
            .tx
            .send(WriterMsg::Close {
                file: file.to_string(),
            })
            .await;
    }

    /// Wait until everything sent before is written.
    pub async fn flush(&self) -> RigResult<()> {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        self.tx
            .send(WriterMsg::Barrier(done_tx))
            .await
            .map_err(|_| RigError::Other("the evidence writer has stopped".into()))?;
        tokio::task::spawn_blocking(move || done_rx.recv())
            .await
            .map_err(|e| RigError::Other(format!("evidence flush: {e}")))?
            .map_err(|_| RigError::Other("the evidence writer has stopped".into()))?;
        self.check()
    }

    /// [`EvidenceWriter::flush`] from synchronous code (never waits on a full
    /// queue inside the runtime: it retries instead).
    pub fn flush_blocking(&self) -> RigResult<()> {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let mut msg = WriterMsg::Barrier(done_tx);
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(mpsc::error::TrySendError::Full(m)) => {
                    msg = m;
                    std::thread::yield_now();
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    return Err(RigError::Other("the evidence writer has stopped".into()))
                }
            }
        }
        done_rx
            .recv()
            .map_err(|_| RigError::Other("the evidence writer has stopped".into()))?;
        self.check()
    }

    /// The first write error, if any.
    pub fn check(&self) -> RigResult<()> {
        match self.error.lock().unwrap().clone() {
            None => Ok(()),
            Some(e) => Err(RigError::Other(format!("evidence not written: {e}"))),
        }
    }
}

// ---------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------

/// One host the configuration knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoute {
    /// Host name as the watch asks for it (lower case).
    pub host: String,
    /// Ports relayed to `upstream` (those the profile names for this host); empty:
    /// every port of this host's address is relayed.
    pub relay_ports: BTreeSet<u16>,
    /// `HOST:PORT` to relay to; `None`: sinkhole.
    pub upstream: Option<String>,
}

/// What the gateway needs to start.
#[derive(Debug, Clone)]
pub struct GatewaySpec {
    /// The gateway address; `None` picks `127.X.Y.1` at random.
    pub gateway: Option<Ipv4Addr>,
    /// Configured hosts (given addresses first, in this order).
    pub hosts: Vec<HostRoute>,
    /// Every port the device profile names (listened on for every host).
    pub profile_ports: BTreeSet<u16>,
    /// Extra sinkhole ports (default [`SINKHOLE_PORTS`]).
    pub sinkhole_ports: Vec<u16>,
    pub clock: Clock,
    pub evidence_dir: PathBuf,
}

/// `scheme://host[:port]/path` of an API base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing `/` (may be empty).
    pub path: String,
}

impl BaseUrl {
    pub fn parse(url: &str) -> Result<BaseUrl, String> {
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("`{url}` is not an http:// or https:// URL"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("`{url}`: bad port `{p}`"))?,
            ),
            None => (authority, if https { 443 } else { 80 }),
        };
        if host.is_empty() {
            return Err(format!("`{url}` has no host"));
        }
        Ok(BaseUrl {
            https,
            host: host.to_ascii_lowercase(),
            port,
            path: path.trim_end_matches('/').to_string(),
        })
    }
}

impl GatewaySpec {
    /// The one place the gateway reads the configuration: hosts from
    /// `network.hosts` (with `lab:` references resolved through the running lab),
    /// ports from the device profile (device endpoint, API base URL, declared
    /// services).
    pub fn from_config(
        loaded: &LoadedRig,
        lab: Option<&Lab>,
        clock: Clock,
        evidence_dir: &Path,
    ) -> RigResult<GatewaySpec> {
        let dev = &loaded.device.device;
        let mut ports_by_host: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
        let ep = &dev.backend.device_endpoint;
        ports_by_host
            .entry(ep.host.to_ascii_lowercase())
            .or_default()
            .insert(ep.port);
        let api = BaseUrl::parse(&dev.backend.api.base_url).map_err(RigError::Config)?;
        ports_by_host
            .entry(api.host.clone())
            .or_default()
            .insert(api.port);
        for s in &dev.declaration.services {
            ports_by_host
                .entry(s.host.to_ascii_lowercase())
                .or_default()
                .insert(s.port);
        }
        let profile_ports: BTreeSet<u16> = ports_by_host.values().flatten().copied().collect();
        let mut hosts = Vec::new();
        for (host, target) in &loaded.rig.network.hosts {
            let upstream = match target {
                PortRef::Lab(w) => {
                    let lab = lab.ok_or_else(|| {
                        RigError::Config(format!(
                            "network.hosts.{host} is `lab:{}` but no lab is running",
                            w.name()
                        ))
                    })?;
                    lab.wires().get(*w)
                }
                PortRef::Real(s) => s.clone(),
            };
            let h = host.to_ascii_lowercase();
            hosts.push(HostRoute {
                relay_ports: ports_by_host.remove(&h).unwrap_or_default(),
                host: h,
                upstream: Some(upstream),
            });
        }
        // Profile hosts without an upstream are sinkholes from the start.
        for (host, _) in ports_by_host {
            hosts.push(HostRoute {
                host,
                relay_ports: BTreeSet::new(),
                upstream: None,
            });
        }
        let gateway = match loaded.rig.network.gateway {
            crate::config::Gateway::Auto => None,
            crate::config::Gateway::Fixed(ip) => Some(ip),
        };
        Ok(GatewaySpec {
            gateway,
            hosts,
            profile_ports,
            sinkhole_ports: SINKHOLE_PORTS.to_vec(),
            clock,
            evidence_dir: evidence_dir.to_path_buf(),
        })
    }
}

// ---------------------------------------------------------------------------------
// The gateway
// ---------------------------------------------------------------------------------

/// What happens to a connection.
#[derive(Debug, Clone)]
enum Route {
    Relay(String),
    Sinkhole,
    /// An attacker mode; the upstream the host would be relayed to, if any.
    Intercept(HostMode, Option<String>),
}

struct HostEntry {
    name: String,
    addr: Ipv4Addr,
    relay_ports: BTreeSet<u16>,
    upstream: Option<String>,
    /// Ports actually listened on.
    ports: BTreeSet<u16>,
    mode: HostMode,
}

impl HostEntry {
    fn route_for(&self, port: u16) -> Route {
        if self.mode != HostMode::Normal {
            let up = match &self.upstream {
                Some(u) if self.relay_ports.is_empty() || self.relay_ports.contains(&port) => {
                    Some(u.clone())
                }
                _ => None,
            };
            return Route::Intercept(self.mode, up);
        }
        match &self.upstream {
            Some(u) if self.relay_ports.is_empty() || self.relay_ports.contains(&port) => {
                Route::Relay(u.clone())
            }
            _ => Route::Sinkhole,
        }
    }
}

struct Hosts {
    by_name: HashMap<String, usize>,
    entries: Vec<HostEntry>,
}

struct Shared {
    clock: Clock,
    base: [u8; 3],
    gateway_addr: Ipv4Addr,
    log: EventLog<FlowEvent>,
    writer: EvidenceWriter,
    hosts: Mutex<Hosts>,
    /// Configured routes for names not bound yet.
    routes: HashMap<String, HostRoute>,
    listen_ports: BTreeSet<u16>,
    summaries: Mutex<VecDeque<Arc<Mutex<FlowSummary>>>>,
    summaries_evicted: AtomicU64,
    next_id: AtomicU64,
    open_flows: AtomicUsize,
    flows_done: Notify,
    coverage: AtomicBool,
    /// Bumped when every open flow must be reset.
    reset: watch::Sender<u64>,
    /// Set on shutdown: flows close.
    closing: watch::Sender<bool>,
    listeners: Mutex<Vec<tokio::task::AbortHandle>>,
    notes: Mutex<Vec<String>>,
    runtime: tokio::runtime::Handle,
    /// Impairments of the watch → server and server → watch directions.
    impair_up: impair::ImpairmentControl,
    impair_down: impair::ImpairmentControl,
    /// Synthetic TCP state of each open flow for the capture; held across the
    /// append so that records reach the file in time order.
    pcap: tokio::sync::Mutex<HashMap<u64, pcap::TcpCapture>>,
    /// Where the watch lives when it is isolated: every listener is bound inside.
    netns: Option<Arc<crate::netns::NetNs>>,
    /// The attacker's certificate maker, made on first use.
    forger: std::sync::OnceLock<Result<Arc<intercept::Forger>, String>>,
}

/// The cell gateway. See the module documentation.
pub struct Gateway {
    shared: Arc<Shared>,
    shut: AtomicBool,
}

fn random_u16() -> u16 {
    let mut b = [0u8; 2];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    u16::from_le_bytes(b) ^ (t as u16) ^ (std::process::id() as u16)
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        && !h.starts_with('.')
}

fn set_zero_linger(fd: std::os::fd::RawFd) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads `l` for its size; a bad fd only yields an error.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn bind_std(addr: Ipv4Addr, port: u16) -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(SocketAddrV4::new(addr, port))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

impl Shared {
    /// The attacker's certificate maker (its CA certificate goes to the evidence).
    fn forger(&self) -> RigResult<Arc<intercept::Forger>> {
        self.forger
            .get_or_init(|| {
                let f = intercept::Forger::new().map_err(|e| e.to_string())?;
                let _ = self
                    .writer
                    .try_append("attacker-ca.pem", f.ca_pem().as_bytes().to_vec());
                Ok(Arc::new(f))
            })
            .clone()
            .map_err(RigError::Other)
    }

    /// Raw bytes of one direction of the watch's side of a flow, to its evidence file
    /// (waits while the writer is busy: nothing is dropped).
    async fn evidence(&self, id: u64, dir: Dir, bytes: &Bytes) -> RigResult<()> {
        self.writer
            .append(&format!("flow-{id}-{}.bin", dir.name()), bytes.clone())
            .await
    }

    /// The same bytes as packets of the capture, stamped now.
    async fn capture(&self, id: u64, dir: Dir, bytes: &Bytes) {
        let mut caps = self.pcap.lock().await;
        let Some(c) = caps.get_mut(&id) else { return };
        let rec = c.data(dir == Dir::Up, bytes, std::time::SystemTime::now());
        let _ = self.writer.append(PCAP_FILE, rec).await;
    }

    /// A new connection in the capture (its handshake, stamped now).
    async fn capture_open(&self, id: u64, watch: SocketAddrV4, server: SocketAddrV4) {
        let mut caps = self.pcap.lock().await;
        let mut c = pcap::TcpCapture::new(watch, server, id);
        let rec = c.handshake(std::time::SystemTime::now());
        caps.insert(id, c);
        let _ = self.writer.append(PCAP_FILE, rec).await;
    }

    /// The end of a connection in the capture: a reset from the network's side, or
    /// FINs from both sides.
    async fn capture_close(&self, id: u64, reset: bool) {
        let mut caps = self.pcap.lock().await;
        let Some(mut c) = caps.remove(&id) else {
            return;
        };
        let now = std::time::SystemTime::now();
        let rec = if reset {
            c.reset(false, now)
        } else {
            let mut r = c.fin(true, now);
            r.extend(c.fin(false, now));
            r
        };
        let _ = self.writer.append(PCAP_FILE, rec).await;
    }

    fn impairment(&self, dir: Dir) -> &impair::ImpairmentControl {
        match dir {
            Dir::Up => &self.impair_up,
            Dir::Down => &self.impair_down,
        }
    }

    /// A nonblocking UDP socket, inside the watch's namespace when it is isolated.
    fn bind_udp(&self, addr: SocketAddrV4) -> std::io::Result<std::net::UdpSocket> {
        match &self.netns {
            Some(ns) => ns.bind_udp(addr),
            None => {
                let u = std::net::UdpSocket::bind(addr)?;
                u.set_nonblocking(true)?;
                Ok(u)
            }
        }
    }

    fn note(&self, text: String) {
        let line = format!("t={} {text}\n", self.clock.now());
        let _ = self.writer.try_append("gateway.log", line.into_bytes());
        let mut n = self.notes.lock().unwrap();
        if n.len() < 1000 {
            n.push(text);
        }
    }

    async fn record(&self, ev: FlowEvent) {
        let t = self.clock.now();
        let mark = self.log.push_at(t, ev.clone());
        let line = serde_json::json!({ "seq": mark.0, "t": t, "value": ev });
        let mut s = line.to_string();
        s.push('\n');
        let _ = self.writer.append("flows.jsonl", s.into_bytes()).await;
    }

    /// Bind a host's listeners. `required` ports must bind; others are skipped with
    /// a note. Returns the ports bound, or the first required failure.
    fn bind_host(
        self: &Arc<Self>,
        idx: usize,
        name: &str,
        addr: Ipv4Addr,
        required: &BTreeSet<u16>,
    ) -> std::io::Result<BTreeSet<u16>> {
        let mut all: BTreeSet<u16> = self.listen_ports.clone();
        all.extend(required);
        let mut bound = Vec::new();
        for &port in &all {
            let l = match &self.netns {
                Some(ns) => ns.bind_tcp(SocketAddrV4::new(addr, port)),
                None => bind_std(addr, port),
            };
            match l {
                Ok(l) => bound.push((port, l)),
                Err(e) if required.contains(&port) => return Err(e),
                Err(e) => self.note(format!("{name} ({addr}): port {port} not listened on: {e}")),
            }
        }
        let _guard = self.runtime.enter();
        // The same ports in UDP (relay or sinkhole); optional everywhere.
        for (port, _) in &bound {
            match self
                .bind_udp(SocketAddrV4::new(addr, *port))
                .and_then(tokio::net::UdpSocket::from_std)
            {
                Ok(u) => {
                    let me = self.clone();
                    let port = *port;
                    let task = self
                        .runtime
                        .spawn(async move { me.udp_loop(u, idx, port).await });
                    self.listeners.lock().unwrap().push(task.abort_handle());
                }
                Err(e) => self.note(format!("{name} ({addr}): udp port {port} not bound: {e}")),
            }
        }
        let mut ports = BTreeSet::new();
        for (port, l) in bound {
            match TcpListener::from_std(l) {
                Ok(l) => {
                    let me = self.clone();
                    let task = self
                        .runtime
                        .spawn(async move { me.accept_loop(l, idx, port).await });
                    self.listeners.lock().unwrap().push(task.abort_handle());
                    ports.insert(port);
                }
                Err(e) => self.note(format!("{name} ({addr}): port {port}: {e}")),
            }
        }
        Ok(ports)
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener, idx: usize, port: u16) {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let watch_addr = match peer {
                        std::net::SocketAddr::V4(a) => a,
                        std::net::SocketAddr::V6(_) => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                    };
                    let server_addr = match stream.local_addr() {
                        Ok(std::net::SocketAddr::V4(a)) => a,
                        _ => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port),
                    };
                    let (host, route) = {
                        let hosts = self.hosts.lock().unwrap();
                        let e = &hosts.entries[idx];
                        (e.name.clone(), e.route_for(port))
                    };
                    self.open_flows.fetch_add(1, Ordering::SeqCst);
                    let me = self.clone();
                    self.runtime.spawn(async move {
                        me.clone()
                            .flow(stream, (watch_addr, server_addr), host, port, route)
                            .await;
                        me.open_flows.fetch_sub(1, Ordering::SeqCst);
                        me.flows_done.notify_waiters();
                    });
                }
                Err(e) => {
                    // EMFILE and friends: note and keep going after a pause.
                    self.note(format!("accept on port {port}: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn new_summary(
        &self,
        id: u64,
        host: &str,
        port: u16,
        upstream: Option<String>,
    ) -> Arc<Mutex<FlowSummary>> {
        let s = Arc::new(Mutex::new(FlowSummary {
            id,
            transport: Transport::Tcp,
            host: host.to_string(),
            port,
            upstream,
            opened_t: self.clock.now(),
            closed_t: None,
            bytes_up: 0,
            bytes_down: 0,
            protocol: FlowProtocol::Undetermined,
            tls: None,
            server_tls: None,
            server_tls_error: None,
            frames: 0,
            end: None,
            capped: false,
            intercept: None,
        }));
        let mut all = self.summaries.lock().unwrap();
        all.push_back(s.clone());
        while all.len() > MAX_SUMMARIES {
            all.pop_front();
            self.summaries_evicted.fetch_add(1, Ordering::Relaxed);
        }
        s
    }

    async fn flow(
        self: Arc<Self>,
        watch_sock: TcpStream,
        addrs: (SocketAddrV4, SocketAddrV4),
        host: String,
        port: u16,
        route: Route,
    ) {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        self.capture_open(id, addrs.0, addrs.1).await;
        let upstream = match &route {
            Route::Relay(u) => Some(u.clone()),
            Route::Sinkhole => None,
            Route::Intercept(mode, _) => Some(format!("attacker: {}", mode.describe())),
        };
        let summary = self.new_summary(id, &host, port, upstream.clone());
        self.record(FlowEvent::Opened {
            id,
            host: host.clone(),
            port,
            upstream: upstream.clone(),
        })
        .await;
        let mut reset_rx = self.reset.subscribe();
        let mut closing_rx = self.closing.subscribe();
        let end = if !self.coverage.load(Ordering::SeqCst) {
            set_zero_linger(watch_sock.as_raw_fd());
            "reset: no coverage".to_string()
        } else if self.open_flows.load(Ordering::SeqCst) > MAX_OPEN_FLOWS {
            set_zero_linger(watch_sock.as_raw_fd());
            format!("reset: more than {MAX_OPEN_FLOWS} open flows")
        } else {
            match route {
                Route::Relay(up) => {
                    let connect = tokio::time::timeout(
                        UPSTREAM_CONNECT_TIMEOUT,
                        TcpStream::connect(up.clone()),
                    );
                    let connected = tokio::select! {
                        r = connect => Some(r),
                        _ = reset_rx.changed() => None,
                        _ = closing_rx.changed() => None,
                    };
                    match connected {
                        Some(Ok(Ok(server))) => {
                            let _ = server.set_nodelay(true);
                            self.relay(
                                id,
                                &summary,
                                watch_sock,
                                Some(server),
                                &mut reset_rx,
                                &mut closing_rx,
                            )
                            .await
                        }
                        Some(Ok(Err(e))) => {
                            set_zero_linger(watch_sock.as_raw_fd());
                            format!("reset: upstream {up} refused: {e}")
                        }
                        Some(Err(_)) => {
                            set_zero_linger(watch_sock.as_raw_fd());
                            format!("reset: upstream {up} did not answer within {UPSTREAM_CONNECT_TIMEOUT:?}")
                        }
                        None => {
                            set_zero_linger(watch_sock.as_raw_fd());
                            "reset: coverage lost or rig stopping".to_string()
                        }
                    }
                }
                Route::Sinkhole => {
                    self.relay(
                        id,
                        &summary,
                        watch_sock,
                        None,
                        &mut reset_rx,
                        &mut closing_rx,
                    )
                    .await
                }
                Route::Intercept(mode, up) => {
                    self.intercept(
                        id,
                        &summary,
                        watch_sock,
                        &host,
                        mode,
                        up,
                        &mut reset_rx,
                        &mut closing_rx,
                    )
                    .await
                }
            }
        };
        self.capture_close(id, end.starts_with("reset")).await;
        self.writer.close(&format!("flow-{id}-up.bin")).await;
        self.writer.close(&format!("flow-{id}-down.bin")).await;
        self.finish_flow(id, &summary, end).await;
    }

    /// Stamp a flow's end in its summary and record it.
    async fn finish_flow(&self, id: u64, summary: &Arc<Mutex<FlowSummary>>, end: String) {
        let (bytes_up, bytes_down) = {
            let mut s = summary.lock().unwrap();
            s.closed_t = Some(self.clock.now());
            s.end = Some(end);
            (s.bytes_up, s.bytes_down)
        };
        self.record(FlowEvent::Closed {
            id,
            bytes_up,
            bytes_down,
        })
        .await;
    }

    /// Relay (or, without a server, sink) until both directions end, a reset, or
    /// shutdown. Returns how it ended.
    async fn relay(
        &self,
        id: u64,
        summary: &Arc<Mutex<FlowSummary>>,
        mut watch_sock: TcpStream,
        mut server: Option<TcpStream>,
        reset_rx: &mut watch::Receiver<u64>,
        closing_rx: &mut watch::Receiver<bool>,
    ) -> String {
        let _ = watch_sock.set_nodelay(true);
        let watch_fd = watch_sock.as_raw_fd();
        let server_fd = server.as_ref().map(|s| s.as_raw_fd());
        // Create the evidence files even for a silent flow.
        let _ = self
            .writer
            .append(&format!("flow-{id}-up.bin"), Bytes::new())
            .await;
        let _ = self
            .writer
            .append(&format!("flow-{id}-down.bin"), Bytes::new())
            .await;
        let analysis = Mutex::new(Analysis::default());
        let outcome = {
            let (wr, ww) = watch_sock.split();
            match server.as_mut() {
                Some(s) => {
                    let (sr, sw) = s.split();
                    let up = self.pump(id, Dir::Up, wr, Some(sw), summary, &analysis);
                    let down = self.pump(id, Dir::Down, sr, Some(ww), summary, &analysis);
                    // Both directions until both end; an error on either ends the flow.
                    let both = async {
                        tokio::pin!(up);
                        tokio::pin!(down);
                        let (mut up_done, mut down_done) = (false, false);
                        while !(up_done && down_done) {
                            let end = tokio::select! {
                                r = &mut up, if !up_done => { up_done = true; r }
                                r = &mut down, if !down_done => { down_done = true; r }
                            };
                            if let DirEnd::Error(e) = end {
                                return Outcome::Error(e);
                            }
                        }
                        Outcome::Done
                    };
                    tokio::select! {
                        o = both => o,
                        _ = reset_rx.changed() => Outcome::Reset,
                        _ = closing_rx.changed() => Outcome::Shutdown,
                    }
                }
                None => {
                    // Sinkhole: read and record, never write (the write half stays
                    // open so the watch sees a connection that never answers).
                    let up = self.pump(
                        id,
                        Dir::Up,
                        wr,
                        None::<tokio::net::tcp::WriteHalf<'_>>,
                        summary,
                        &analysis,
                    );
                    let _write_half = ww;
                    tokio::select! {
                        o = up => match o { DirEnd::Error(e) => Outcome::Error(e), DirEnd::Eof => Outcome::Done },
                        _ = reset_rx.changed() => Outcome::Reset,
                        _ = closing_rx.changed() => Outcome::Shutdown,
                    }
                }
            }
        };
        // Anything still buffered in the decoders at the end.
        let (leftover, detected) = {
            let mut a = analysis.lock().unwrap();
            let frames = a.finish();
            (frames, a.newly_detected())
        };
        if let Some(protocol) = detected {
            summary.lock().unwrap().set_protocol(protocol.clone());
            self.record(FlowEvent::Detected { id, protocol }).await;
        }
        self.emit_frames(id, summary, leftover).await;
        match outcome {
            Outcome::Done => {
                if server.is_none() {
                    "closed by the watch (sinkhole)".into()
                } else {
                    "closed".into()
                }
            }
            Outcome::Error(e) => {
                set_zero_linger(watch_fd);
                if let Some(fd) = server_fd {
                    set_zero_linger(fd);
                }
                format!("reset: {e}")
            }
            Outcome::Reset => {
                set_zero_linger(watch_fd);
                if let Some(fd) = server_fd {
                    set_zero_linger(fd);
                }
                "reset by the network (coverage lost or flows cut)".into()
            }
            Outcome::Shutdown => "closed: rig shutting down".into(),
        }
    }

    async fn emit_frames(
        &self,
        id: u64,
        summary: &Arc<Mutex<FlowSummary>>,
        frames: Vec<(Dir, watchproto::Frame)>,
    ) {
        if frames.is_empty() {
            return;
        }
        summary.lock().unwrap().frames += frames.len() as u64;
        for (dir, f) in frames {
            self.record(FlowEvent::Frame {
                id,
                dir,
                frame: f.display(FRAME_TEXT_MAX),
            })
            .await;
        }
    }

    /// Copy one direction: read, record (evidence before forwarding), analyse, then
    /// forward through the direction's delay line (impairments). Without a
    /// destination the bytes are only recorded (sinkhole). Capture packets are
    /// stamped where the watch meets the network: when read from the watch (up) and
    /// when delivered to it (down).
    async fn pump<R, W>(
        &self,
        id: u64,
        dir: Dir,
        mut src: R,
        dst: Option<W>,
        summary: &Arc<Mutex<FlowSummary>>,
        analysis: &Mutex<Analysis>,
    ) -> DirEnd
    where
        R: tokio::io::AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Unpin,
    {
        let has_dst = dst.is_some();
        let (tx, rx) = match has_dst {
            true => {
                let seed = id.wrapping_mul(2).wrapping_add(dir as u64);
                let (tx, rx) = impair::delay_line(
                    self.clock,
                    self.impairment(dir).clone(),
                    true,
                    MAX_IN_FLIGHT,
                    seed,
                );
                (Some(tx), Some(rx))
            }
            false => (None, None),
        };
        let reader = async {
            let mut tx = tx;
            let mut buf = vec![0u8; CHUNK];
            let mut total: u64 = 0;
            loop {
                if total >= MAX_FLOW_BYTES {
                    summary.lock().unwrap().capped = true;
                    self.note(format!(
                        "flow {id}: {} direction reached {MAX_FLOW_BYTES} bytes; no longer read",
                        dir.name()
                    ));
                    // Keep the flow open without reading (the sender stalls) until the
                    // other direction, a reset or shutdown ends it.
                    std::future::pending::<()>().await;
                }
                let room = (MAX_FLOW_BYTES - total).min(CHUNK as u64) as usize;
                let n = match src.read(&mut buf[..room]).await {
                    Ok(0) => return DirEnd::Eof,
                    Ok(n) => n,
                    Err(e) => return DirEnd::Error(format!("{} read: {e}", dir.name())),
                };
                let chunk = Bytes::copy_from_slice(&buf[..n]);
                if let Err(e) = self.evidence(id, dir, &chunk).await {
                    return DirEnd::Error(e.to_string());
                }
                if dir == Dir::Up {
                    self.capture(id, dir, &chunk).await;
                }
                total += n as u64;
                let (frames, detected) = {
                    let mut s = summary.lock().unwrap();
                    match dir {
                        Dir::Up => s.bytes_up += n as u64,
                        Dir::Down => s.bytes_down += n as u64,
                    }
                    // A clear-text flow to an attacker: all of it is readable.
                    if let Some(i) = s.intercept.as_mut() {
                        match dir {
                            Dir::Up => i.plaintext_up += n as u64,
                            Dir::Down => i.plaintext_down += n as u64,
                        }
                    }
                    let mut a = analysis.lock().unwrap();
                    let frames = a.feed(dir, &chunk);
                    let detected = a.newly_detected();
                    if let Some(p) = &detected {
                        s.set_protocol(p.clone());
                    }
                    match a.server_hello() {
                        Some(Ok(info)) => s.server_tls = Some(info),
                        Some(Err(e)) => s.server_tls_error = Some(e),
                        None => {}
                    }
                    (frames, detected)
                };
                if let Some(protocol) = detected {
                    self.record(FlowEvent::Detected { id, protocol }).await;
                }
                self.emit_frames(id, summary, frames).await;
                if let Some(tx) = tx.as_mut() {
                    if tx.send(chunk).await.is_err() {
                        return DirEnd::Error(format!("{} write: closed", dir.name()));
                    }
                }
            }
        };
        let writer = async {
            let (Some(mut rx), Some(mut dst)) = (rx, dst) else {
                return std::future::pending::<DirEnd>().await;
            };
            while let Some(chunk) = rx.recv().await {
                if dir == Dir::Down {
                    self.capture(id, dir, &chunk).await;
                }
                if let Err(e) = dst.write_all(&chunk).await {
                    return DirEnd::Error(format!("{} write: {e}", dir.name()));
                }
            }
            let _ = dst.shutdown().await;
            DirEnd::Eof
        };
        tokio::pin!(reader);
        tokio::pin!(writer);
        let mut reader_done = false;
        loop {
            tokio::select! {
                r = &mut reader, if !reader_done => match r {
                    DirEnd::Error(e) => return DirEnd::Error(e),
                    // The delay line's sender is gone: the writer drains and ends.
                    DirEnd::Eof if !has_dst => return DirEnd::Eof,
                    DirEnd::Eof => reader_done = true,
                },
                w = &mut writer => return w,
            }
        }
    }
}

enum DirEnd {
    Eof,
    Error(String),
}

enum Outcome {
    Done,
    Error(String),
    Reset,
    Shutdown,
}

/// Protocol detection and frame decoding of one flow.
#[derive(Default)]
struct Analysis {
    /// The server's first bytes of a TLS flow, until its hello is read.
    server_sniff: tlsinfo::ServerHelloSniffer,
    /// The server's hello has been read (or given up on).
    server_done: bool,
    /// Read but not yet taken by [`Analysis::server_hello`].
    server_new: Option<Result<tlsinfo::ServerHelloInfo, String>>,
    /// The watch's first bytes, until the ClientHello sniffer's verdict.
    sniff: tlsinfo::ClientHelloSniffer,
    protocol: Option<FlowProtocol>,
    announced: bool,
    up: Option<watchproto::Decoder>,
    down: Option<watchproto::Decoder>,
}

impl Analysis {
    /// The protocol, the first time it is known.
    fn newly_detected(&mut self) -> Option<FlowProtocol> {
        if self.announced {
            return None;
        }
        let p = self.protocol.clone()?;
        self.announced = true;
        Some(p)
    }

    fn clear_text(&self) -> bool {
        !matches!(self.protocol, Some(FlowProtocol::Tls(_)))
    }

    /// The server's hello, the first time it is known.
    fn server_hello(&mut self) -> Option<Result<tlsinfo::ServerHelloInfo, String>> {
        self.server_new.take()
    }

    fn feed(&mut self, dir: Dir, data: &[u8]) -> Vec<(Dir, watchproto::Frame)> {
        if dir == Dir::Down
            && !self.server_done
            && matches!(self.protocol, Some(FlowProtocol::Tls(_)))
        {
            // Resumable like the ClientHello sniffer: each byte is parsed once.
            let verdict = match self.server_sniff.push(data) {
                tlsinfo::ServerSniff::NeedMore if self.server_sniff.kept() >= SNIFF_LIMIT => Some(
                    Err("the server's first flight is not complete in the first 64 KiB".into()),
                ),
                tlsinfo::ServerSniff::NeedMore => None,
                tlsinfo::ServerSniff::NotTls => {
                    Some(Err("the server did not answer with TLS records".into()))
                }
                tlsinfo::ServerSniff::Tls(r) => Some(r),
            };
            if let Some(v) = verdict {
                self.server_done = true;
                self.server_sniff = tlsinfo::ServerHelloSniffer::new();
                self.server_new = Some(v);
            }
            return vec![];
        }
        if dir == Dir::Up && self.protocol.is_none() {
            // Resumable: each byte is parsed once however the bytes are cut; a hello
            // still incomplete at the sniff limit is a TLS flow with an error.
            let s = self.sniff.push(data);
            self.protocol = protocol_of(&s);
            match &self.protocol {
                None => return vec![], // decide first, then decode what was sniffed
                Some(FlowProtocol::ClearText) => {
                    let all = self.sniff.take_held();
                    return self.decode(Dir::Up, &all);
                }
                Some(_) => {
                    self.sniff = tlsinfo::ClientHelloSniffer::new();
                    return vec![];
                }
            }
        }
        if !self.clear_text() || (dir == Dir::Up && self.protocol.is_none()) {
            return vec![];
        }
        self.decode(dir, data)
    }

    fn decode(&mut self, dir: Dir, data: &[u8]) -> Vec<(Dir, watchproto::Frame)> {
        let dec = match dir {
            Dir::Up => self.up.get_or_insert_with(watchproto::Decoder::new),
            Dir::Down => self.down.get_or_insert_with(watchproto::Decoder::new),
        };
        dec.push(data)
            .into_iter()
            .filter_map(|d| match d {
                watchproto::Decoded::Frame(f) => Some((dir, f)),
                watchproto::Decoded::Skipped { .. } => None,
            })
            .collect()
    }

    fn finish(&mut self) -> Vec<(Dir, watchproto::Frame)> {
        let mut out = Vec::new();
        if !self.sniff.held().is_empty() && self.protocol.is_none() {
            // Too short to be a ClientHello: clear text.
            if self.sniff.held()[0] != 0x16 {
                self.protocol = Some(FlowProtocol::ClearText);
                let all = self.sniff.take_held();
                out.extend(self.decode(Dir::Up, &all));
            } else {
                self.protocol = protocol_of(&Sniff::Tls(Err(
                    "the flow ended inside the ClientHello".into(),
                )));
            }
        }
        if !self.clear_text() {
            return out;
        }
        for (dir, dec) in [(Dir::Up, self.up.as_mut()), (Dir::Down, self.down.as_mut())] {
            if let Some(d) = dec {
                out.extend(d.finish().into_iter().filter_map(|x| match x {
                    watchproto::Decoded::Frame(f) => Some((dir, f)),
                    _ => None,
                }));
            }
        }
        out
    }
}

impl Gateway {
    /// Bind the gateway and the configured hosts' listeners. Must be called on a
    /// tokio runtime (its handle serves later resolutions too).
    pub async fn start(spec: GatewaySpec) -> RigResult<Arc<Gateway>> {
        Gateway::start_in(spec, None).await
    }

    /// [`Gateway::start`] with every listener (TCP, UDP, DNS) bound inside `netns`,
    /// the namespace the watch is isolated in; upstream connections still leave from
    /// the rig's own namespace.
    pub async fn start_in(
        spec: GatewaySpec,
        netns: Option<Arc<crate::netns::NetNs>>,
    ) -> RigResult<Arc<Gateway>> {
        let writer = EvidenceWriter::start(&spec.evidence_dir)?;
        let runtime = tokio::runtime::Handle::current();
        let mut listen_ports: BTreeSet<u16> = spec.profile_ports.clone();
        listen_ports.extend(spec.sinkhole_ports.iter().copied());
        let mut routes = HashMap::new();
        for h in &spec.hosts {
            routes.insert(h.host.to_ascii_lowercase(), h.clone());
        }
        let attempts = if spec.gateway.is_some() { 1 } else { 16 };
        let mut last_err = String::new();
        for _ in 0..attempts {
            let gw = spec.gateway.unwrap_or_else(|| {
                let r = random_u16().to_be_bytes();
                // 127.X.Y.1 with X in 2..=254 (127.0.x and 127.1.x are often used).
                Ipv4Addr::new(127, 2 + r[0] % 253, r[1].max(1), 1)
            });
            let o = gw.octets();
            if !(gw.is_loopback() || gw.is_private()) {
                return Err(RigError::Config(format!(
                    "gateway {gw} is neither a loopback nor a private address"
                )));
            }
            let (reset, _) = watch::channel(0u64);
            let (closing, _) = watch::channel(false);
            let shared = Arc::new(Shared {
                clock: spec.clock,
                base: [o[0], o[1], o[2]],
                gateway_addr: gw,
                log: EventLog::new(spec.clock, LOG_CAPACITY),
                writer: writer.clone(),
                hosts: Mutex::new(Hosts {
                    by_name: HashMap::new(),
                    entries: Vec::new(),
                }),
                routes: routes.clone(),
                listen_ports: listen_ports.clone(),
                summaries: Mutex::new(VecDeque::new()),
                summaries_evicted: AtomicU64::new(0),
                next_id: AtomicU64::new(1),
                open_flows: AtomicUsize::new(0),
                flows_done: Notify::new(),
                coverage: AtomicBool::new(true),
                reset,
                closing,
                listeners: Mutex::new(Vec::new()),
                notes: Mutex::new(Vec::new()),
                runtime: runtime.clone(),
                forger: std::sync::OnceLock::new(),
                impair_up: impair::ImpairmentControl::new(),
                impair_down: impair::ImpairmentControl::new(),
                pcap: tokio::sync::Mutex::new(HashMap::new()),
                netns: netns.clone(),
            });
            let gwy = Gateway {
                shared: shared.clone(),
                shut: AtomicBool::new(false),
            };
            let mut ok = true;
            for h in &spec.hosts {
                if let Err(e) = gwy.allocate(&h.host) {
                    last_err = e;
                    ok = false;
                    break;
                }
            }
            if ok {
                writer.append(PCAP_FILE, pcap::file_header()).await?;
                shared.note(format!("gateway {gw}"));
                if let Some(ns) = &netns {
                    shared.note(format!(
                        "listening inside the watch's network namespace net:[{}]",
                        ns.inode()
                    ));
                }
                let gwy = Arc::new(gwy);
                gwy.start_dns();
                return Ok(gwy);
            }
            // Drop releases the listeners; try another base.
            gwy.abort_listeners();
        }
        let hint = match spec.gateway {
            Some(gw) if !gw.is_loopback() => {
                let o = gw.octets();
                format!(
                    " (the rig's host must treat {}.{}.{}.0/24 as local: `ip route add local {}.{}.{}.0/24 dev lo`, see docs/network.md)",
                    o[0], o[1], o[2], o[0], o[1], o[2]
                )
            }
            _ => String::new(),
        };
        Err(RigError::Other(format!(
            "cell gateway: cannot bind the configured hosts' ports: {last_err}{hint}"
        )))
    }

    /// Allocate (or find) the address of a host and bind its listeners.
    fn allocate(&self, host: &str) -> Result<Ipv4Addr, String> {
        let sh = &self.shared;
        let name = host.trim().trim_end_matches('.').to_ascii_lowercase();
        let mut hosts = sh.hosts.lock().unwrap();
        if let Some(&i) = hosts.by_name.get(&name) {
            return Ok(hosts.entries[i].addr);
        }
        let used: BTreeSet<u8> = hosts.entries.iter().map(|e| e.addr.octets()[3]).collect();
        let gw_last = sh.gateway_addr.octets()[3];
        let Some(last) = (1..=254u8).find(|n| *n != gw_last && !used.contains(n)) else {
            return Err(format!(
                "no address left for `{name}` (at most 253 hosts per run)"
            ));
        };
        let addr = Ipv4Addr::new(sh.base[0], sh.base[1], sh.base[2], last);
        let route = sh.routes.get(&name).cloned();
        let (relay_ports, upstream) = match &route {
            Some(r) => (r.relay_ports.clone(), r.upstream.clone()),
            None => (BTreeSet::new(), None),
        };
        let required = if upstream.is_some() {
            relay_ports.clone()
        } else {
            BTreeSet::new()
        };
        let idx = hosts.entries.len();
        // Register before binding so that an accept can find the entry.
        hosts.entries.push(HostEntry {
            name: name.clone(),
            addr,
            relay_ports,
            upstream: upstream.clone(),
            ports: BTreeSet::new(),
            mode: HostMode::Normal,
        });
        hosts.by_name.insert(name.clone(), idx);
        drop(hosts);
        match sh.bind_host(idx, &name, addr, &required) {
            Ok(ports) if ports.is_empty() => {
                Err(format!("{name} ({addr}): no port could be listened on"))
            }
            Ok(ports) => {
                let relayed = sh.hosts.lock().unwrap().entries[idx].relay_ports.clone();
                let what = match &upstream {
                    Some(u) if relayed.is_empty() => format!("every port relayed to {u}"),
                    Some(u) => format!("ports {relayed:?} relayed to {u}, the others sinkholed"),
                    None => "sinkhole".into(),
                };
                sh.note(format!("{name} -> {addr}: listening on {ports:?}; {what}"));
                sh.hosts.lock().unwrap().entries[idx].ports = ports;
                Ok(addr)
            }
            Err(e) => Err(format!("{name} ({addr}): {e}")),
        }
    }

    fn abort_listeners(&self) {
        for h in self.shared.listeners.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    /// The DNS server on the gateway address (see [`udp`]); noted when the port
    /// cannot be bound.
    fn start_dns(self: &Arc<Self>) {
        let sh = &self.shared;
        let addr = SocketAddrV4::new(sh.gateway_addr, udp::DNS_PORT);
        let _guard = sh.runtime.enter();
        match sh.bind_udp(addr).and_then(tokio::net::UdpSocket::from_std) {
            Ok(sock) => {
                let me = sh.clone();
                let weak = Arc::downgrade(self);
                let task = sh
                    .runtime
                    .spawn(async move { me.dns_loop(sock, weak).await });
                sh.listeners.lock().unwrap().push(task.abort_handle());
                sh.note(format!("dns server on {addr}/udp"));
            }
            Err(e) => sh.note(format!("dns server on {addr}/udp not started: {e}")),
        }
    }

    /// Make the network play an attacker for `host` (all its ports), or stop
    /// ([`HostMode::Normal`]). Applies to connections opened from now on; call
    /// [`Gateway::reset_flows`] to make the watch reconnect.
    pub fn set_host_mode(&self, host: &str, mode: HostMode) -> RigResult<()> {
        let name = host.trim().trim_end_matches('.').to_ascii_lowercase();
        if !valid_host(&name) {
            return Err(RigError::Config(format!("invalid host name {host:?}")));
        }
        self.allocate(&name)
            .map_err(|e| RigError::instrument("gateway", e))?;
        if mode != HostMode::Normal {
            // Make the attacker's CA now: a failure is a rig error here, not later.
            self.shared.forger()?;
        }
        let mut hosts = self.shared.hosts.lock().unwrap();
        if let Some(&i) = hosts.by_name.get(&name) {
            hosts.entries[i].mode = mode;
        }
        drop(hosts);
        self.shared
            .note(format!("{name}: network mode {}", mode.describe()));
        Ok(())
    }

    /// The mode of `host` (normal for a host the gateway does not know yet).
    pub fn host_mode(&self, host: &str) -> HostMode {
        let h = self.shared.hosts.lock().unwrap();
        let name = host.trim().trim_end_matches('.').to_ascii_lowercase();
        h.by_name
            .get(&name)
            .map(|&i| h.entries[i].mode)
            .unwrap_or(HostMode::Normal)
    }

    /// Every host back to [`HostMode::Normal`].
    pub fn clear_host_modes(&self) {
        let mut h = self.shared.hosts.lock().unwrap();
        let changed = h.entries.iter().any(|e| e.mode != HostMode::Normal);
        for e in h.entries.iter_mut() {
            e.mode = HostMode::Normal;
        }
        drop(h);
        if changed {
            self.shared.note("every host back to normal".into());
        }
    }

    /// The impairment of one direction (for every relayed flow).
    pub fn impairment(&self, dir: Dir) -> impair::Impairment {
        self.shared.impairment(dir).get()
    }

    /// Impair one direction of every relayed flow from now on (see
    /// [`impair`]); refused when the figures are invalid. Intercepted flows and
    /// sinkholes are not impaired.
    pub fn set_impairment(&self, dir: Dir, imp: impair::Impairment) -> RigResult<()> {
        self.shared
            .impairment(dir)
            .set(imp)
            .map_err(|e| RigError::Config(format!("impairment {}: {e}", dir.name())))?;
        self.shared
            .note(format!("{} impairment: {}", dir.name(), imp.describe()));
        Ok(())
    }

    /// Nothing impaired in either direction.
    pub fn clear_impairments(&self) {
        for dir in [Dir::Up, Dir::Down] {
            if !self.shared.impairment(dir).get().is_none() {
                self.shared.impairment(dir).clear();
                self.shared
                    .note(format!("{} impairment cleared", dir.name()));
            }
        }
    }

    /// Cut every open flow (TCP reset towards the watch), as a cell handover or a
    /// network fault does; the watch has to reconnect.
    pub fn reset_flows(&self) {
        self.shared.reset.send_modify(|g| *g += 1);
        self.shared.note("every open flow reset".into());
    }

    /// The gateway's own address (`127.X.Y.1`).
    pub fn address(&self) -> Ipv4Addr {
        self.shared.gateway_addr
    }

    /// Every host the gateway has an address for: (name, address, ports listened on).
    pub fn hosts(&self) -> Vec<(String, Ipv4Addr, Vec<u16>)> {
        let h = self.shared.hosts.lock().unwrap();
        h.entries
            .iter()
            .map(|e| (e.name.clone(), e.addr, e.ports.iter().copied().collect()))
            .collect()
    }

    /// The address the gateway gave `host`, without allocating one.
    pub fn address_of(&self, host: &str) -> Option<Ipv4Addr> {
        let h = self.shared.hosts.lock().unwrap();
        let name = host.trim().trim_end_matches('.').to_ascii_lowercase();
        h.by_name.get(&name).map(|&i| h.entries[i].addr)
    }

    /// Every flow event.
    pub fn flows(&self) -> &EventLog<FlowEvent> {
        &self.shared.log
    }

    /// Summaries of the flows (the most recent `MAX_SUMMARIES`), in order.
    pub fn summaries(&self) -> Vec<FlowSummary> {
        self.shared
            .summaries
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.lock().unwrap().clone())
            .collect()
    }

    /// Things the gateway could not do (ports not bound, caps reached).
    pub fn notes(&self) -> Vec<String> {
        self.shared.notes.lock().unwrap().clone()
    }

    /// Coverage as set last.
    pub fn coverage(&self) -> bool {
        self.shared.coverage.load(Ordering::SeqCst)
    }

    /// Personal data in the clear-text flows opened at or after device time `since`,
    /// both directions (see [`pii`]): waits until pending evidence is written, then
    /// scans each flow's files on a blocking thread. At most `max` findings per flow
    /// and direction.
    pub async fn scan_cleartext(
        &self,
        needles: pii::PiiNeedles,
        since: DeviceMs,
        max: usize,
    ) -> RigResult<Vec<CleartextFinding>> {
        self.shared.writer.flush().await?;
        let d = self.shared.writer.dir().to_path_buf();
        let flows: Vec<FlowSummary> = self
            .summaries()
            .into_iter()
            .filter(|s| s.opened_t >= since && !matches!(s.protocol, FlowProtocol::Tls(_)))
            .collect();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for f in flows {
                for dir in [Dir::Up, Dir::Down] {
                    let path = d.join(format!("flow-{}-{}.bin", f.id, dir.name()));
                    let found = match pii::scan_file(&path, &needles, max) {
                        Ok(v) => v,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(RigError::Other(format!("{}: {e}", path.display()))),
                    };
                    out.extend(found.into_iter().map(|finding| CleartextFinding {
                        flow: f.id,
                        host: f.host.clone(),
                        port: f.port,
                        dir,
                        finding,
                    }));
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| RigError::Other(format!("clear-text scan: {e}")))?
    }

    /// Evidence problems so far (a rig failure, not a device verdict).
    pub fn check(&self) -> RigResult<()> {
        self.shared
            .writer
            .check()
            .map_err(|e| RigError::instrument("gateway", e))
    }

    /// Stop listening, close every flow (recording it), write out the evidence.
    /// Idempotent.
    pub async fn shutdown(&self) -> RigResult<()> {
        if self.shut.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.abort_listeners();
        self.shared.closing.send_replace(true);
        // Flows notice `closing` at once; wait for them to record their end.
        let wait = async {
            loop {
                let notified = self.shared.flows_done.notified();
                if self.shared.open_flows.load(Ordering::SeqCst) == 0 {
                    break;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .is_err()
        {
            self.shared
                .note("shutdown: flows still open after 5 s".into());
        }
        // Every flow's classification, for the reports (the events are in
        // flows.jsonl as they happened).
        let summaries = serde_json::json!({
            "flows": self.summaries(),
            "evicted": self.shared.summaries_evicted.load(Ordering::Relaxed),
        });
        let mut text = serde_json::to_string_pretty(&summaries)
            .map_err(|e| RigError::Other(format!("flow summaries: {e}")))?;
        text.push('\n');
        self.shared
            .writer
            .append(SUMMARY_FILE, text.into_bytes())
            .await?;
        self.shared.writer.flush().await
    }
}

impl NameService for Gateway {
    fn resolve(&self, host: &str) -> Option<Ipv4Addr> {
        if !self.coverage() || self.shut.load(Ordering::SeqCst) {
            return None;
        }
        let name = host.trim().trim_end_matches('.').to_ascii_lowercase();
        if !valid_host(&name) {
            self.shared.note(format!(
                "refused to resolve an invalid name {:?}",
                host.chars().take(64).collect::<String>()
            ));
            return None;
        }
        match self.allocate(&name) {
            Ok(a) => Some(a),
            Err(e) => {
                self.shared.note(format!("cannot resolve {name}: {e}"));
                None
            }
        }
    }

    fn set_coverage(&self, up: bool) {
        let was = self.shared.coverage.swap(up, Ordering::SeqCst);
        if was && !up {
            self.shared.reset.send_modify(|g| *g += 1);
        }
        if was != up {
            self.shared
                .note(format!("coverage {}", if up { "up" } else { "down" }));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.abort_listeners();
        self.shared.closing.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let u = BaseUrl::parse("https://api.kidcloud.example:8443/v1/").unwrap();
        assert_eq!(
            (u.https, u.host.as_str(), u.port, u.path.as_str()),
            (true, "api.kidcloud.example", 8443, "/v1")
        );
        let u = BaseUrl::parse("http://API.example").unwrap();
        assert_eq!(
            (u.https, u.host.as_str(), u.port, u.path.as_str()),
            (false, "api.example", 80, "")
        );
        assert_eq!(BaseUrl::parse("https://x.example").unwrap().port, 443);
        assert!(BaseUrl::parse("ftp://x").is_err());
        assert!(BaseUrl::parse("https://:80").is_err());
        assert!(BaseUrl::parse("https://x:port").is_err());
    }
}

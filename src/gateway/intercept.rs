//! Attacker roles the network can play for one host name.
//!
//! - **Rogue server** ([`HostMode::Rogue`]): the host's name points to the rig's
//!   attacker server. A TLS client gets a forged certificate; whatever the watch sends
//!   after a completed handshake (or in clear text) is recorded; nothing is relayed
//!   and nothing is answered.
//! - **Man in the middle** ([`HostMode::Mitm`]): the same forged certificate, but
//!   after a completed handshake the rig opens its own TLS connection to the real
//!   upstream (accepting whatever certificate it shows, presenting none) and relays
//!   the decrypted traffic both ways, reading all of it. Against a backend that
//!   requires client certificates the relay cannot be set up; the watch's side still
//!   is, so what the watch would have sent is recorded all the same. A clear-text
//!   connection is relayed as it is (the attacker reads it without any effort).
//!
//! Forged certificates ([`ForgedCert`]) are made at run time with rcgen for the name
//! the watch asks for (SNI, else the host name): `self-signed`, or issued by the
//! rig's own attacker CA (`untrusted-ca`), which no watch should trust. Keys never
//! leave memory; the attacker CA's certificate goes to the evidence
//! (`attacker-ca.pem`) so a reviewer can recognise it.
//!
//! Evidence: the raw bytes on the watch's side go to `flow-<id>-up.bin` /
//! `flow-<id>-down.bin` and the capture like any flow; the decrypted application data
//! to `flow-<id>-up.plain` / `flow-<id>-down.plain`; the outcome to the flow summary
//! ([`Interception`]) and a [`super::FlowEvent::Intercepted`] event.

use super::{Dir, FlowEvent, FlowSummary, Shared, CHUNK};
use crate::drivers::backend_http::AnyServer;
use crate::error::{RigError, RigResult};
use crate::wire::watchproto;
use bytes::Bytes;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Wall time allowed for the upstream TLS handshake of a man in the middle.
const UPSTREAM_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Plaintext bytes buffered towards the watch or the upstream before reading pauses.
const PLAIN_BACKLOG: usize = 1024 * 1024;

/// Which forged certificate the attacker shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForgedCert {
    /// A certificate for the requested name, signed by its own key.
    SelfSigned,
    /// A certificate for the requested name from the rig's attacker CA.
    UntrustedCa,
}

impl ForgedCert {
    pub fn name(self) -> &'static str {
        match self {
            ForgedCert::SelfSigned => "self-signed",
            ForgedCert::UntrustedCa => "untrusted-ca",
        }
    }

    pub fn parse(s: &str) -> Option<ForgedCert> {
        match s {
            "self-signed" => Some(ForgedCert::SelfSigned),
            "untrusted-ca" => Some(ForgedCert::UntrustedCa),
            _ => None,
        }
    }
}

/// What the network does with connections to one host name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum HostMode {
    /// As configured: relayed to the upstream or sinkholed.
    Normal,
    /// The name points to the rig's attacker server.
    Rogue { cert: ForgedCert },
    /// A man in the middle between the watch and the upstream.
    Mitm { cert: ForgedCert },
}

impl HostMode {
    pub fn describe(&self) -> String {
        match self {
            HostMode::Normal => "normal".into(),
            HostMode::Rogue { cert } => format!("rogue server ({} certificate)", cert.name()),
            HostMode::Mitm { cert } => format!("man in the middle ({} certificate)", cert.name()),
        }
    }
}

/// How the watch treated the attacker's certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Handshake {
    /// The watch has not finished (or not started) a handshake yet.
    Pending,
    /// The watch did not speak TLS: everything it sent is readable.
    NotTls,
    /// The watch completed the handshake with the forged certificate.
    Accepted {
        version: String,
        cipher_suite: String,
    },
    /// The watch refused it (alert or error) or gave up during the handshake.
    Refused { reason: String },
}

/// The outcome of one intercepted flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interception {
    /// `rogue` or `mitm`.
    pub role: String,
    pub certificate: ForgedCert,
    /// The name the forged certificate was made for.
    pub name: String,
    pub handshake: Handshake,
    /// Application bytes the attacker could read, watch → attacker.
    pub plaintext_up: u64,
    /// Application bytes the attacker sent or relayed to the watch.
    pub plaintext_down: u64,
    /// Man in the middle: what happened towards the real upstream.
    pub upstream: Option<String>,
}

impl Interception {
    /// True when the attacker read application data from the watch.
    pub fn exposed(&self) -> bool {
        self.plaintext_up > 0
    }
}

/// Most forged certificates kept by one [`Forger`]. The names come from the device
/// (its SNI), so the cache is bounded: when it is full it is emptied before the next
/// certificate is added, and a name asked for again gets a fresh certificate.
pub const FORGED_CACHE_MAX: usize = 64;

/// Makes forged certificates on demand (cached per kind and name, at most
/// [`FORGED_CACHE_MAX`] of them).
pub struct Forger {
    provider: Arc<rustls::crypto::CryptoProvider>,
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
    ca_pem: String,
    cache: Mutex<HashMap<(ForgedCert, String), Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for Forger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forger").finish_non_exhaustive()
    }
}

fn cert_err(e: impl std::fmt::Display) -> RigError {
    RigError::Other(format!("forged certificate: {e}"))
}

impl Forger {
    /// A new attacker CA (fresh key each run).
    pub fn new() -> RigResult<Forger> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "redrig attacker CA (untrusted)");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().map_err(cert_err)?;
        let cert = params.self_signed(&key).map_err(cert_err)?;
        Ok(Forger {
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            ca_pem: cert.pem(),
            ca: rcgen::Issuer::new(params, key),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The attacker CA's certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The forged certificate and key for `name`.
    pub fn certified_key(&self, kind: ForgedCert, name: &str) -> RigResult<Arc<CertifiedKey>> {
        let key = (kind, name.to_string());
        if let Some(k) = self.cache.lock().unwrap().get(&key) {
            return Ok(k.clone());
        }
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).map_err(cert_err)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let leaf_key = rcgen::KeyPair::generate().map_err(cert_err)?;
        let cert = match kind {
            ForgedCert::SelfSigned => params.self_signed(&leaf_key),
            ForgedCert::UntrustedCa => params.signed_by(&leaf_key, &self.ca),
        }
        .map_err(cert_err)?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let signing = self
            .provider
            .key_provider
            .load_private_key(der)
            .map_err(cert_err)?;
        let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
        let ck = Arc::new(CertifiedKey::new(chain, signing));
        let mut cache = self.cache.lock().unwrap();
        if cache.len() >= FORGED_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, ck.clone());
        Ok(ck)
    }

    /// Number of forged certificates cached now (at most [`FORGED_CACHE_MAX`]).
    pub fn cached(&self) -> usize {
        self.cache.lock().unwrap().len()
    }

    /// A TLS server configuration presenting a forged certificate for whatever name
    /// the client asks (`fallback` when it sends no SNI).
    pub fn server_config(
        self: &Arc<Self>,
        kind: ForgedCert,
        fallback: &str,
    ) -> RigResult<Arc<rustls::ServerConfig>> {
        // Make the fallback certificate now so that a failure is a rig error here.
        self.certified_key(kind, fallback)?;
        let resolver = ForgingResolver {
            forger: self.clone(),
            kind,
            fallback: fallback.to_string(),
        };
        let config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(cert_err)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        Ok(Arc::new(config))
    }

    /// A TLS client configuration for the man in the middle's upstream leg: accepts
    /// any server certificate, presents none.
    pub fn upstream_config(&self) -> RigResult<Arc<rustls::ClientConfig>> {
        let c = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(cert_err)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(self.provider.clone())))
            .with_no_client_auth();
        Ok(Arc::new(c))
    }
}

#[derive(Debug)]
struct ForgingResolver {
    forger: Arc<Forger>,
    kind: ForgedCert,
    fallback: String,
}

impl ResolvesServerCert for ForgingResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello
            .server_name()
            .filter(|n| super::valid_host(n))
            .unwrap_or(&self.fallback)
            .to_ascii_lowercase();
        self.forger
            .certified_key(self.kind, &name)
            .or_else(|_| self.forger.certified_key(self.kind, &self.fallback))
            .ok()
    }
}

/// Update the interception record of a flow.
fn upd(summary: &Arc<Mutex<FlowSummary>>, f: impl FnOnce(&mut Interception)) {
    if let Some(i) = summary.lock().unwrap().intercept.as_mut() {
        f(i)
    }
}

/// The upstream leg of a man in the middle.
type Upstream = tokio_rustls::client::TlsStream<TcpStream>;

impl Shared {
    /// Serve one intercepted connection until it ends; returns how it ended.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn intercept(
        &self,
        id: u64,
        summary: &Arc<Mutex<FlowSummary>>,
        mut watch_sock: TcpStream,
        host: &str,
        mode: HostMode,
        upstream: Option<String>,
        reset_rx: &mut watch::Receiver<u64>,
        closing_rx: &mut watch::Receiver<bool>,
    ) -> String {
        let (role, kind) = match mode {
            HostMode::Rogue { cert } => ("rogue", cert),
            HostMode::Mitm { cert } => ("mitm", cert),
            HostMode::Normal => unreachable!("intercept() is only called for an attacker mode"),
        };
        summary.lock().unwrap().intercept = Some(Interception {
            role: role.into(),
            certificate: kind,
            name: host.to_string(),
            handshake: Handshake::Pending,
            plaintext_up: 0,
            plaintext_down: 0,
            upstream: None,
        });
        // Peek at the first byte: TLS handshake record or clear text?
        let mut first = [0u8; 1];
        let peeked = tokio::select! {
            r = watch_sock.peek(&mut first) => r,
            _ = reset_rx.changed() => return self.end_intercept(id, summary, "reset by the network".into()).await,
            _ = closing_rx.changed() => return self.end_intercept(id, summary, "closed: rig shutting down".into()).await,
        };
        match peeked {
            Ok(0) => {
                return self
                    .end_intercept(id, summary, "closed by the watch before sending".into())
                    .await
            }
            Err(e) => return self.end_intercept(id, summary, format!("reset: {e}")).await,
            Ok(_) => {}
        }
        if first[0] != 0x16 {
            // Clear text: the rogue server reads it, the man in the middle relays it.
            upd(summary, |i| i.handshake = Handshake::NotTls);
            let server = match (mode, &upstream) {
                (HostMode::Mitm { .. }, Some(up)) => match TcpStream::connect(up.as_str()).await {
                    Ok(s) => {
                        upd(summary, |i| {
                            i.upstream = Some(format!("relayed in clear to {up}"))
                        });
                        Some(s)
                    }
                    Err(e) => {
                        upd(summary, |i| {
                            i.upstream = Some(format!("upstream {up} refused: {e}"))
                        });
                        None
                    }
                },
                _ => None,
            };
            // The relay counts the readable bytes as they pass.
            let end = self
                .relay(id, summary, watch_sock, server, reset_rx, closing_rx)
                .await;
            return self.end_intercept(id, summary, end).await;
        }
        let config = match self.forger().and_then(|f| f.server_config(kind, host)) {
            Ok(c) => c,
            Err(e) => {
                super::set_zero_linger(std::os::fd::AsRawFd::as_raw_fd(&watch_sock));
                return self
                    .end_intercept(id, summary, format!("reset: rig could not forge: {e}"))
                    .await;
            }
        };
        let end = self
            .tls_session(
                id,
                summary,
                &mut watch_sock,
                config,
                mode,
                upstream,
                host,
                reset_rx,
                closing_rx,
            )
            .await;
        self.end_intercept(id, summary, end).await
    }

    async fn end_intercept(
        &self,
        id: u64,
        summary: &Arc<Mutex<FlowSummary>>,
        end: String,
    ) -> String {
        let outcome = summary.lock().unwrap().intercept.clone();
        if let Some(outcome) = outcome {
            self.record(FlowEvent::Intercepted { id, outcome }).await;
        }
        end
    }

    /// The TLS server side towards the watch, driven by hand so that every raw byte
    /// is recorded before it is processed or sent.
    #[allow(clippy::too_many_arguments)]
    async fn tls_session(
        &self,
        id: u64,
        summary: &Arc<Mutex<FlowSummary>>,
        watch_sock: &mut TcpStream,
        config: Arc<rustls::ServerConfig>,
        mode: HostMode,
        upstream: Option<String>,
        host: &str,
        reset_rx: &mut watch::Receiver<u64>,
        closing_rx: &mut watch::Receiver<bool>,
    ) -> String {
        let mut conn = match rustls::ServerConnection::new(config) {
            Ok(c) => c,
            Err(e) => return format!("reset: TLS server: {e}"),
        };
        let _ = self
            .writer
            .append(&format!("flow-{id}-up.plain"), Bytes::new())
            .await;
        let mut raw = vec![0u8; CHUNK];
        let mut plain = vec![0u8; CHUNK];
        let mut ubuf = vec![0u8; CHUNK];
        let mut up_dec = watchproto::Decoder::new();
        let mut down_dec = watchproto::Decoder::new();
        let mut upstream_leg: Option<Upstream> = None;
        // Plaintext from the watch waiting for the upstream leg.
        let mut to_upstream: Vec<u8> = Vec::new();
        let mut accepted = false;
        // The ClientHello, for the flow's classification like any other flow.
        let mut hello = super::tlsinfo::ClientHelloSniffer::new();
        let mut classified = false;
        let mut watch_eof = false;
        loop {
            // 1. Send whatever TLS records rustls has for the watch.
            while conn.wants_write() {
                let mut out = Vec::new();
                if conn.write_tls(&mut out).is_err() {
                    break;
                }
                let out = Bytes::from(out);
                if let Err(e) = self.evidence(id, Dir::Down, &out).await {
                    return format!("reset: {e}");
                }
                self.capture(id, Dir::Down, &out).await;
                if let Err(e) = watch_sock.write_all(&out).await {
                    return format!("reset: down write: {e}");
                }
                summary.lock().unwrap().bytes_down += out.len() as u64;
            }
            if !accepted && !conn.is_handshaking() {
                accepted = true;
                let version = conn
                    .protocol_version()
                    .map(|v| super::tls_version_name(u16::from(v)))
                    .unwrap_or_default();
                let suite = conn
                    .negotiated_cipher_suite()
                    .map(|s| format!("{:?}", s.suite()))
                    .unwrap_or_default();
                upd(summary, |i| {
                    i.handshake = Handshake::Accepted {
                        version: version.clone(),
                        cipher_suite: suite.clone(),
                    }
                });
                self.note(format!(
                    "flow {id}: the watch accepted a forged certificate for {host}"
                ));
                if let (HostMode::Mitm { .. }, Some(up)) = (mode, &upstream) {
                    upstream_leg = self.open_upstream(up, host, summary).await;
                }
            }
            // 2. Plaintext from the watch.
            match self
                .drain_plaintext(
                    id,
                    summary,
                    &mut conn,
                    &mut plain,
                    &mut up_dec,
                    upstream_leg.is_some().then_some(&mut to_upstream),
                )
                .await
            {
                Ok(eof) => watch_eof |= eof,
                Err(e) => return format!("reset: TLS read: {e}"),
            }
            if let Some(u) = upstream_leg.as_mut() {
                if !to_upstream.is_empty() {
                    if let Err(e) = u.write_all(&to_upstream).await {
                        upd(summary, |i| {
                            i.upstream = Some(format!("upstream write failed: {e}"));
                        });
                        upstream_leg = None;
                    }
                    to_upstream.clear();
                }
            }
            if watch_eof {
                self.emit_decoded(id, summary, Dir::Up, up_dec.finish())
                    .await;
                return "closed by the watch".into();
            }
            // 3. Wait for the next bytes from the watch or the upstream.
            enum Next {
                Watch(std::io::Result<usize>),
                Upstream(std::io::Result<usize>),
                Reset,
                Closing,
            }
            let next = match upstream_leg.as_mut() {
                Some(u) => tokio::select! {
                    r = watch_sock.read(&mut raw) => Next::Watch(r),
                    r = u.read(&mut ubuf) => Next::Upstream(r),
                    _ = reset_rx.changed() => Next::Reset,
                    _ = closing_rx.changed() => Next::Closing,
                },
                None => tokio::select! {
                    r = watch_sock.read(&mut raw) => Next::Watch(r),
                    _ = reset_rx.changed() => Next::Reset,
                    _ = closing_rx.changed() => Next::Closing,
                },
            };
            match next {
                Next::Reset => {
                    super::set_zero_linger(std::os::fd::AsRawFd::as_raw_fd(&*watch_sock));
                    return "reset by the network".into();
                }
                Next::Closing => return "closed: rig shutting down".into(),
                Next::Watch(Err(e)) => return format!("reset: up read: {e}"),
                Next::Watch(Ok(0)) => {
                    if !accepted {
                        upd(summary, |i| {
                            if i.handshake == Handshake::Pending {
                                i.handshake = Handshake::Refused {
                                    reason: "the watch closed the connection during the handshake"
                                        .into(),
                                }
                            }
                        });
                    }
                    self.emit_decoded(id, summary, Dir::Up, up_dec.finish())
                        .await;
                    return "closed by the watch".into();
                }
                Next::Watch(Ok(n)) => {
                    let chunk = Bytes::copy_from_slice(&raw[..n]);
                    if let Err(e) = self.evidence(id, Dir::Up, &chunk).await {
                        return format!("reset: {e}");
                    }
                    self.capture(id, Dir::Up, &chunk).await;
                    summary.lock().unwrap().bytes_up += n as u64;
                    if !classified {
                        // Resumable: each byte is parsed once however the watch cuts
                        // its hello; still incomplete at the sniff limit is a verdict.
                        let sniff = hello.push(&chunk);
                        if let Some(p) = super::protocol_of(&sniff) {
                            classified = true;
                            hello = super::tlsinfo::ClientHelloSniffer::new();
                            summary.lock().unwrap().set_protocol(p.clone());
                            self.record(FlowEvent::Detected { id, protocol: p }).await;
                        }
                    }
                    let mut rd: &[u8] = &chunk;
                    while !rd.is_empty() {
                        if let Err(e) = conn.read_tls(&mut rd) {
                            return format!("reset: TLS input: {e}");
                        }
                        if let Err(e) = conn.process_new_packets() {
                            let reason = match &e {
                                rustls::Error::AlertReceived(a) => {
                                    format!("the watch sent the alert {a:?}")
                                }
                                other => format!("TLS error: {other}"),
                            };
                            if !accepted {
                                upd(summary, |i| {
                                    i.handshake = Handshake::Refused {
                                        reason: reason.clone(),
                                    }
                                });
                            }
                            // Send our alert, if any, then end.
                            let mut out = Vec::new();
                            let _ = conn.write_tls(&mut out);
                            if !out.is_empty() {
                                let out = Bytes::from(out);
                                let _ = self.evidence(id, Dir::Down, &out).await;
                                self.capture(id, Dir::Down, &out).await;
                                let _ = watch_sock.write_all(&out).await;
                            }
                            return format!("closed: {reason}");
                        }
                        // Drain plaintext so that rustls' buffer never fills.
                        match self
                            .drain_plaintext(
                                id,
                                summary,
                                &mut conn,
                                &mut plain,
                                &mut up_dec,
                                upstream_leg.is_some().then_some(&mut to_upstream),
                            )
                            .await
                        {
                            Ok(eof) => watch_eof |= eof,
                            Err(e) => return format!("reset: TLS read: {e}"),
                        }
                    }
                }
                Next::Upstream(Ok(0)) | Next::Upstream(Err(_)) => {
                    upd(summary, |i| {
                        if let Some(u) = i.upstream.as_mut() {
                            u.push_str("; upstream closed");
                        }
                    });
                    upstream_leg = None;
                    conn.send_close_notify();
                }
                Next::Upstream(Ok(n)) => {
                    let p = Bytes::copy_from_slice(&ubuf[..n]);
                    let _ = self
                        .writer
                        .append(&format!("flow-{id}-down.plain"), p.clone())
                        .await;
                    upd(summary, |i| i.plaintext_down += n as u64);
                    self.emit_decoded(id, summary, Dir::Down, down_dec.push(&p))
                        .await;
                    if let Err(e) = conn.writer().write_all(&p) {
                        return format!("reset: TLS write: {e}");
                    }
                }
            }
        }
    }

    /// Move the application data rustls has decrypted from the watch into the
    /// evidence, the frame decoder and (man in the middle) the upstream backlog.
    /// `Ok(true)` when the watch has closed its side cleanly.
    async fn drain_plaintext(
        &self,
        id: u64,
        summary: &Arc<Mutex<FlowSummary>>,
        conn: &mut rustls::ServerConnection,
        plain: &mut [u8],
        decoder: &mut watchproto::Decoder,
        mut backlog: Option<&mut Vec<u8>>,
    ) -> std::io::Result<bool> {
        loop {
            match conn.reader().read(plain) {
                Ok(0) => return Ok(true),
                Ok(n) => {
                    let chunk = Bytes::copy_from_slice(&plain[..n]);
                    let _ = self
                        .writer
                        .append(&format!("flow-{id}-up.plain"), chunk.clone())
                        .await;
                    upd(summary, |i| i.plaintext_up += n as u64);
                    self.emit_decoded(id, summary, Dir::Up, decoder.push(&chunk))
                        .await;
                    if let Some(b) = backlog.as_deref_mut() {
                        if b.len() < PLAIN_BACKLOG {
                            b.extend_from_slice(&chunk);
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }

    async fn open_upstream(
        &self,
        up: &str,
        host: &str,
        summary: &Arc<Mutex<FlowSummary>>,
    ) -> Option<Upstream> {
        let config = match self.forger().and_then(|f| f.upstream_config()) {
            Ok(c) => c,
            Err(e) => {
                upd(summary, |i| {
                    i.upstream = Some(format!("no upstream leg: {e}"))
                });
                return None;
            }
        };
        let name = match ServerName::try_from(host.to_string()) {
            Ok(n) => n,
            Err(e) => {
                upd(summary, |i| {
                    i.upstream = Some(format!("no upstream leg: {e}"))
                });
                return None;
            }
        };
        let attempt = async {
            let tcp = TcpStream::connect(up).await.map_err(|e| e.to_string())?;
            let _ = tcp.set_nodelay(true);
            let mut tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            // A backend that wants a client certificate refuses us only after the
            // handshake; make it show now by flushing and peeking briefly.
            tls.flush().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(tls)
        };
        match tokio::time::timeout(UPSTREAM_HANDSHAKE_TIMEOUT, attempt).await {
            Ok(Ok(tls)) => {
                upd(summary, |i| {
                    i.upstream = Some(format!("relayed over TLS to {up}"))
                });
                Some(tls)
            }
            Ok(Err(e)) => {
                upd(summary, |i| {
                    i.upstream = Some(format!("upstream {up} refused the attacker: {e}"))
                });
                None
            }
            Err(_) => {
                upd(summary, |i| {
                    i.upstream = Some(format!(
                        "upstream {up}: no TLS within {UPSTREAM_HANDSHAKE_TIMEOUT:?}"
                    ))
                });
                None
            }
        }
    }

    async fn emit_decoded(
        &self,
        id: u64,
        summary: &Arc<Mutex<FlowSummary>>,
        dir: Dir,
        decoded: Vec<watchproto::Decoded>,
    ) {
        let frames: Vec<(Dir, watchproto::Frame)> = decoded
            .into_iter()
            .filter_map(|d| match d {
                watchproto::Decoded::Frame(f) => Some((dir, f)),
                watchproto::Decoded::Skipped { .. } => None,
            })
            .collect();
        self.emit_frames(id, summary, frames).await;
    }
}

//! TLS handshake parsing for flow classification.
//!
//! - Client side: what a ClientHello offers (versions, SNI, ALPN):
//!   [`sniff_client_hello`], and [`ClientHelloSniffer`] for bytes that arrive in
//!   pieces (resumable: linear work however the client cuts its hello).
//! - Server side: the negotiated version and cipher suite from the ServerHello and,
//!   for TLS 1.2 and earlier, the leaf certificate from the clear-text Certificate
//!   message: [`sniff_server_hello`] and its resumable [`ServerHelloSniffer`],
//!   [`certificate_info`]; cipher suite names and a weak-suite rule:
//!   [`cipher_suite_name`], [`cipher_suite_is_weak`]; clear-text alerts:
//!   [`find_alert`], [`alert_name`].
//!
//! Parsing only: nothing here verifies a signature or a chain, and nothing decrypts.
//! Every parser takes untrusted bytes and returns an error rather than panicking.

use serde::Serialize;
use sha2::Digest as _;

/// Bytes of the first client data kept to find a ClientHello.
pub const SNIFF_LIMIT: usize = 64 * 1024;

/// What a ClientHello offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientHello {
    /// The `legacy_version` field.
    pub legacy_version: u16,
    /// Versions offered: `supported_versions` without GREASE, else `[legacy_version]`.
    pub versions: Vec<u16>,
    pub sni: Option<String>,
    pub alpn: Vec<String>,
}

/// Result of looking at the first bytes a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sniff {
    /// Not enough bytes to tell.
    NeedMore,
    /// Not a TLS handshake record.
    NotTls,
    /// A TLS handshake; the hello, or why it could not be parsed.
    Tls(Result<ClientHello, String>),
}

/// Name of a TLS protocol version.
pub fn tls_version_name(v: u16) -> String {
    match v {
        0x0300 => "SSL 3.0".into(),
        0x0301 => "TLS 1.0".into(),
        0x0302 => "TLS 1.1".into(),
        0x0303 => "TLS 1.2".into(),
        0x0304 => "TLS 1.3".into(),
        _ => format!("0x{v:04x}"),
    }
}

fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(b: &'a [u8]) -> Self {
        Cursor { b, pos: 0 }
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_be_bytes([s[0], s[1]]))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()? as usize;
        self.take(n)
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    fn vec24(&mut self) -> Option<&'a [u8]> {
        let b = self.take(3)?;
        let n = u32::from_be_bytes([0, b[0], b[1], b[2]]) as usize;
        self.take(n)
    }
    fn done(&self) -> bool {
        self.pos >= self.b.len()
    }
}

/// Look at the first bytes a client sent for a TLS ClientHello (possibly spread
/// over several records). Never panics, whatever the bytes.
///
/// This parses `data` from its start. A caller that receives the bytes in pieces
/// should feed them to a [`ClientHelloSniffer`] instead, which gives the same
/// verdicts without parsing any byte twice.
pub fn sniff_client_hello(data: &[u8]) -> Sniff {
    HelloWalk::default().sniff(data)
}

/// The cipher suites a ClientHello at the start of `data` offers, in the client's
/// order, GREASE values left out. `Ok(None)` when more bytes are needed; `Err` when
/// the bytes are not a TLS handshake or the hello cannot be parsed. Never panics,
/// whatever the bytes.
pub fn client_hello_cipher_suites(data: &[u8]) -> Result<Option<Vec<u16>>, String> {
    let body = match HelloWalk::default().advance(data) {
        HelloBody::NeedMore => return Ok(None),
        HelloBody::NotTls => return Err("not a TLS handshake".into()),
        HelloBody::Bad(e) => return Err(e),
        HelloBody::Body(b) => b,
    };
    let short = || "ClientHello is truncated".to_string();
    let mut c = Cursor::new(&body);
    c.u16().ok_or_else(short)?; // legacy version
    c.take(32).ok_or_else(short)?; // random
    c.vec8().ok_or_else(short)?; // session id
    let list = c.vec16().ok_or_else(short)?;
    if list.len() % 2 != 0 {
        return Err(format!("cipher suite list of {} bytes", list.len()));
    }
    Ok(Some(
        list.chunks_exact(2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]))
            .filter(|&v| !is_grease(v))
            .collect(),
    ))
}

/// The verdict a [`ClientHelloSniffer`] gives when [`SNIFF_LIMIT`] bytes have
/// arrived and the ClientHello is still not complete.
pub const HELLO_OVER_LIMIT: &str = "ClientHello not complete in the first 64 KiB";

/// The ClientHello sniffer of a flow whose first bytes arrive in pieces.
///
/// [`push`](Self::push) each piece as it arrives; the verdict is
/// [`Sniff::NeedMore`] until it is known, then the same verdict for good. It is the
/// verdict [`sniff_client_hello`] gives for everything pushed so far, except that
/// at most [`SNIFF_LIMIT`] bytes are kept (the rest of a push that crosses the limit
/// is not looked at) and that a hello still incomplete at the limit is
/// `Sniff::Tls(Err(`[`HELLO_OVER_LIMIT`]`))`.
///
/// The parse resumes where the previous push left it: a record header is read once,
/// a record's payload is copied into the reassembled handshake message once, when
/// the record is complete, and the hello is parsed once, when the handshake message
/// is complete. The work is linear in the bytes pushed however they are cut
/// ([`work`](Self::work) counts it). Memory: the kept bytes and the reassembled
/// handshake message, each at most [`SNIFF_LIMIT`] bytes.
#[derive(Debug, Default)]
pub struct ClientHelloSniffer {
    /// The bytes pushed so far, at most [`SNIFF_LIMIT`].
    held: Vec<u8>,
    walk: HelloWalk,
    verdict: Option<Sniff>,
    /// Bytes kept plus the walk's work.
    work: u64,
}

impl ClientHelloSniffer {
    pub fn new() -> ClientHelloSniffer {
        ClientHelloSniffer::default()
    }

    /// Add the next bytes the client sent; the verdict so far.
    pub fn push(&mut self, data: &[u8]) -> Sniff {
        if let Some(v) = &self.verdict {
            return v.clone();
        }
        let take = (SNIFF_LIMIT - self.held.len()).min(data.len());
        self.held.extend_from_slice(&data[..take]);
        self.work += take as u64;
        let before = self.walk.work;
        let mut v = self.walk.sniff(&self.held);
        self.work += self.walk.work - before;
        if v == Sniff::NeedMore && self.held.len() >= SNIFF_LIMIT {
            v = Sniff::Tls(Err(HELLO_OVER_LIMIT.into()));
        }
        if v != Sniff::NeedMore {
            // The reassembled message is not needed any more.
            self.walk = HelloWalk::default();
            self.verdict = Some(v.clone());
        }
        v
    }

    /// The verdict, once known.
    pub fn verdict(&self) -> Option<&Sniff> {
        self.verdict.as_ref()
    }

    /// The bytes pushed so far (at most [`SNIFF_LIMIT`]); empty after
    /// [`take_held`](Self::take_held).
    pub fn held(&self) -> &[u8] {
        &self.held
    }

    /// Take the bytes pushed so far, e.g. to decode a flow found to be clear text.
    /// Call it once the verdict is known: bytes pushed after it are not kept.
    pub fn take_held(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }

    /// The work done so far: bytes kept, record header bytes read, bytes copied
    /// into the reassembled handshake message and bytes of it parsed. A measure
    /// for checking that sniffing stays linear in the input, not a byte count of
    /// anything received.
    pub fn work(&self) -> u64 {
        self.work
    }
}

/// A ClientHello's handshake message body, reassembled from its records.
enum HelloBody {
    NeedMore,
    NotTls,
    Bad(String),
    Body(Vec<u8>),
}

/// The reassembly of a ClientHello from its records, resumable: each call to
/// [`advance`](Self::advance) continues where the previous one stopped, so it must
/// be given the previous call's bytes with more bytes appended (the
/// [`ClientHelloSniffer`] does that). A fresh walk over the whole data parses it
/// from its start ([`sniff_client_hello`]).
#[derive(Debug, Default)]
struct HelloWalk {
    /// Offset of the first record not yet taken into `hs`.
    rec: usize,
    /// The payload length of the record at `rec`, once its header has been read.
    rlen: Option<usize>,
    /// The payloads of the complete records taken so far.
    hs: Vec<u8>,
    /// Bytes read or copied (see [`ClientHelloSniffer::work`]).
    work: u64,
}

impl HelloWalk {
    fn sniff(&mut self, data: &[u8]) -> Sniff {
        match self.advance(data) {
            HelloBody::NeedMore => Sniff::NeedMore,
            HelloBody::NotTls => Sniff::NotTls,
            HelloBody::Bad(e) => Sniff::Tls(Err(e)),
            HelloBody::Body(b) => {
                self.work += b.len() as u64;
                Sniff::Tls(parse_hello_body(&b))
            }
        }
    }

    /// Walk the records of `data` from where the last call stopped. A verdict
    /// other than `NeedMore` is final: the walk is not to be advanced again.
    fn advance(&mut self, data: &[u8]) -> HelloBody {
        let (Some(&first), second) = (data.first(), data.get(1)) else {
            return HelloBody::NeedMore;
        };
        if first != 0x16 {
            return HelloBody::NotTls;
        }
        let Some(&second) = second else {
            return HelloBody::NeedMore;
        };
        if second != 0x03 {
            return HelloBody::NotTls;
        }
        loop {
            if self.hs.len() >= 4 {
                let hs = &self.hs;
                if hs[0] != 0x01 {
                    return HelloBody::Bad(format!(
                        "first handshake message is type {}, not a ClientHello",
                        hs[0]
                    ));
                }
                let len = u32::from_be_bytes([0, hs[1], hs[2], hs[3]]) as usize;
                if len > SNIFF_LIMIT {
                    return HelloBody::Bad(format!("ClientHello of {len} bytes"));
                }
                if hs.len() >= 4 + len {
                    let mut body = std::mem::take(&mut self.hs);
                    body.truncate(4 + len);
                    body.drain(..4);
                    self.work += len as u64;
                    return HelloBody::Body(body);
                }
            }
            let rlen = match self.rlen {
                Some(n) => n,
                None => {
                    let Some(hdr) = data.get(self.rec..self.rec + 5) else {
                        return HelloBody::NeedMore;
                    };
                    self.work += 5;
                    if hdr[0] != 0x16 {
                        return HelloBody::Bad(format!(
                            "record type {} before the ClientHello was complete",
                            hdr[0]
                        ));
                    }
                    let n = u16::from_be_bytes([hdr[3], hdr[4]]) as usize;
                    if n == 0 || n > MAX_RECORD {
                        return HelloBody::Bad(format!("handshake record of {n} bytes"));
                    }
                    self.rlen = Some(n);
                    n
                }
            };
            let Some(frag) = data.get(self.rec + 5..self.rec + 5 + rlen) else {
                return HelloBody::NeedMore;
            };
            self.hs.extend_from_slice(frag);
            self.work += rlen as u64;
            self.rec += 5 + rlen;
            self.rlen = None;
        }
    }
}

fn parse_hello_body(body: &[u8]) -> Result<ClientHello, String> {
    let short = || "ClientHello is truncated".to_string();
    let mut c = Cursor::new(body);
    let legacy_version = c.u16().ok_or_else(short)?;
    c.take(32).ok_or_else(short)?; // random
    c.vec8().ok_or_else(short)?; // session id
    c.vec16().ok_or_else(short)?; // cipher suites
    c.vec8().ok_or_else(short)?; // compression methods
    let mut hello = ClientHello {
        legacy_version,
        versions: vec![],
        sni: None,
        alpn: vec![],
    };
    if !c.done() {
        let exts = c.vec16().ok_or_else(short)?;
        let mut e = Cursor::new(exts);
        while !e.done() {
            let ty = e.u16().ok_or("extension header is truncated")?;
            let data = e.vec16().ok_or("extension is truncated")?;
            let mut d = Cursor::new(data);
            match ty {
                0 => {
                    // server_name: list of (type, name)
                    let list = d.vec16().ok_or("server_name is truncated")?;
                    let mut l = Cursor::new(list);
                    while !l.done() {
                        let kind = l.u8().ok_or("server_name entry is truncated")?;
                        let name = l.vec16().ok_or("server_name entry is truncated")?;
                        if kind == 0 && hello.sni.is_none() {
                            let shown: Vec<u8> = name.iter().copied().take(255).collect();
                            hello.sni = Some(String::from_utf8_lossy(&shown).into_owned());
                        }
                    }
                }
                16 => {
                    let list = d.vec16().ok_or("ALPN is truncated")?;
                    let mut l = Cursor::new(list);
                    while !l.done() && hello.alpn.len() < 16 {
                        let p = l.vec8().ok_or("ALPN entry is truncated")?;
                        hello.alpn.push(String::from_utf8_lossy(p).into_owned());
                    }
                }
                43 => {
                    let list = d.vec8().ok_or("supported_versions is truncated")?;
                    let mut l = Cursor::new(list);
                    while let Some(v) = l.u16() {
                        if !is_grease(v) {
                            hello.versions.push(v);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    if hello.versions.is_empty() {
        hello.versions.push(legacy_version);
    }
    Ok(hello)
}

// ---------------------------------------------------------------------------------
// Server side: ServerHello, Certificate, alerts
// ---------------------------------------------------------------------------------

/// What the server's first flight says about the connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerHelloInfo {
    /// Negotiated version: the `supported_versions` extension when present (TLS 1.3),
    /// else the ServerHello's legacy version field.
    pub version: u16,
    /// Negotiated cipher suite (IANA number; see [`cipher_suite_name`]).
    pub cipher_suite: u16,
    /// The leaf certificate. TLS 1.2 and earlier send the chain in clear text; TLS
    /// 1.3 encrypts it, and a resumed or anonymous TLS 1.2 session sends none: `None`.
    pub certificate: Option<CertInfo>,
    /// Number of certificates in the Certificate message (0 when none was seen).
    pub chain_len: usize,
    /// Why `certificate` is `None` although a Certificate message was sent (the leaf
    /// could not be parsed, or the message was longer than [`SNIFF_LIMIT`]).
    pub certificate_error: Option<String>,
}

impl ServerHelloInfo {
    /// `TLS 1.2`, `TLS 1.3`, … of [`ServerHelloInfo::version`].
    pub fn version_name(&self) -> String {
        tls_version_name(self.version)
    }

    /// IANA name of the negotiated suite, when known.
    pub fn cipher_suite_name(&self) -> Option<&'static str> {
        cipher_suite_name(self.cipher_suite)
    }

    /// The negotiated suite is weak by [`cipher_suite_is_weak`]'s rule.
    pub fn cipher_suite_is_weak(&self) -> bool {
        cipher_suite_is_weak(self.cipher_suite)
    }
}

/// Result of looking at the first bytes a server sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ServerSniff {
    /// Not enough bytes to tell.
    NeedMore,
    /// Not a TLS record stream.
    NotTls,
    /// A TLS server; what its hello said, or why it could not be parsed (including a
    /// server that answered with an alert instead of a ServerHello).
    Tls(Result<ServerHelloInfo, String>),
}

/// Largest record payload accepted (TLS allows 2^14 plaintext plus expansion).
const MAX_RECORD: usize = 16384 + 2048;

/// How a run of handshake records ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordsEnd {
    /// The data ended (at a record boundary or inside a record).
    Data,
    /// A record of another content type followed.
    Other(u8),
}

/// One handshake message located in the reassembled handshake bytes.
enum Msg<'a> {
    Complete(u8, &'a [u8]),
    /// Type and declared length of a message not complete yet.
    Partial(u8, usize),
    None,
}

fn message_at(hs: &[u8], pos: usize) -> Msg<'_> {
    let Some(h) = hs.get(pos..pos + 4) else {
        return Msg::None;
    };
    let len = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
    match hs.get(pos + 4..pos + 4 + len) {
        Some(body) => Msg::Complete(h[0], body),
        None => Msg::Partial(h[0], len),
    }
}

/// Look at the first bytes a server sent (the accumulated prefix, at most
/// [`SNIFF_LIMIT`] bytes) for its ServerHello and, below TLS 1.3, its clear-text
/// Certificate message. Handshake messages are reassembled across records, and
/// several messages in one record are handled. Never panics, whatever the bytes.
///
/// Returns [`ServerSniff::NeedMore`] until the ServerHello (and, for TLS 1.2 and
/// earlier, the message after it) is complete. When `data` already holds
/// [`SNIFF_LIMIT`] bytes and the Certificate message is still incomplete, the hello
/// is returned with `certificate_error` set. A TLS 1.3 HelloRetryRequest is reported
/// like a ServerHello (its version and suite are the ones the connection will use).
///
/// This parses `data` from its start. A caller that receives the bytes in pieces
/// should feed them to a [`ServerHelloSniffer`] instead, which gives the same
/// verdicts without parsing any byte twice.
pub fn sniff_server_hello(data: &[u8]) -> ServerSniff {
    ServerWalk::default().advance(data)
}

/// The sniffer of a server's first flight arriving in pieces.
///
/// [`push`](Self::push) each piece as it arrives; the verdict is
/// [`ServerSniff::NeedMore`] until it is known, then the same verdict for good. It
/// is the verdict [`sniff_server_hello`] gives for everything pushed so far, except
/// that at most [`SNIFF_LIMIT`] bytes are kept (the rest of a push that crosses the
/// limit is not looked at).
///
/// The parse resumes where the previous push left it: each record header is read
/// once and each handshake byte copied once into the reassembled messages; the
/// handshake messages are looked at again only when a message the verdict waits
/// for (the ServerHello, the message after it) is complete or the records end, and
/// skipped HelloRequest messages are not walked again. The work is linear in the
/// bytes pushed however they are cut ([`work`](Self::work) counts it). Memory: the
/// kept bytes and the reassembled handshake messages, each at most
/// [`SNIFF_LIMIT`] bytes.
#[derive(Debug, Default)]
pub struct ServerHelloSniffer {
    /// The bytes pushed so far, at most [`SNIFF_LIMIT`].
    held: Vec<u8>,
    walk: ServerWalk,
    verdict: Option<ServerSniff>,
    /// Bytes kept plus the walk's work.
    work: u64,
}

impl ServerHelloSniffer {
    pub fn new() -> ServerHelloSniffer {
        ServerHelloSniffer::default()
    }

    /// Add the next bytes the server sent; the verdict so far.
    pub fn push(&mut self, data: &[u8]) -> ServerSniff {
        if let Some(v) = &self.verdict {
            return v.clone();
        }
        let take = (SNIFF_LIMIT - self.held.len()).min(data.len());
        self.held.extend_from_slice(&data[..take]);
        self.work += take as u64;
        let before = self.walk.work;
        let v = self.walk.advance(&self.held);
        self.work += self.walk.work - before;
        if v != ServerSniff::NeedMore {
            self.walk = ServerWalk::default();
            self.held = Vec::new();
            self.verdict = Some(v.clone());
        }
        v
    }

    /// Bytes kept so far (at most [`SNIFF_LIMIT`]; none once the verdict is known).
    pub fn kept(&self) -> usize {
        self.held.len()
    }

    /// The work done so far: bytes kept, record header bytes read, bytes copied into
    /// the reassembled handshake messages, message header bytes read and message
    /// bytes parsed. A measure for checking that sniffing stays linear in the
    /// input, not a byte count of anything received.
    pub fn work(&self) -> u64 {
        self.work
    }
}

/// The reassembly and reading of a server's first flight, resumable like
/// [`HelloWalk`]: each call to [`advance`](Self::advance) must be given the
/// previous call's bytes with more bytes appended.
#[derive(Debug, Default)]
struct ServerWalk {
    /// Offset of the record whose payload is being taken into `hs`.
    rec: usize,
    /// The payload length of the record at `rec`, once its header has been read.
    rlen: Option<usize>,
    /// Bytes of that payload taken so far.
    taken: usize,
    /// The payloads of the handshake records so far (a partial record's bytes
    /// included).
    hs: Vec<u8>,
    /// How the run of handshake records ended, once it has: a record of another
    /// type, or an error.
    end: Option<Result<u8, String>>,
    /// Offset in `hs` of the first message that is not a skipped HelloRequest.
    msg: usize,
    /// `hs` length below which the handshake messages need not be looked at again
    /// while the records have not ended and the limit is not reached.
    need: usize,
    /// Bytes read or copied (see [`ServerHelloSniffer::work`]).
    work: u64,
}

impl ServerWalk {
    fn advance(&mut self, data: &[u8]) -> ServerSniff {
        let Some(&first) = data.first() else {
            return ServerSniff::NeedMore;
        };
        if first != 0x16 && first != 0x15 {
            return ServerSniff::NotTls;
        }
        let Some(&major) = data.get(1) else {
            return ServerSniff::NeedMore;
        };
        if major != 0x03 {
            return ServerSniff::NotTls;
        }
        if first == 0x15 {
            // Decided by the seventh byte at the latest: a walk over few bytes while
            // undecided, one walk over the records when decided.
            self.work += data.len() as u64;
            return match find_alert(data) {
                Some((level, desc)) => ServerSniff::Tls(Err(format!(
                    "server sent alert {} ({}) instead of a ServerHello",
                    alert_name(desc),
                    if level == 2 { "fatal" } else { "warning" }
                ))),
                None if data.len() < 7 => ServerSniff::NeedMore,
                None => ServerSniff::Tls(Err("malformed alert record".into())),
            };
        }
        let at_limit = data.len() >= SNIFF_LIMIT;
        self.take_records(data);
        let end = match &self.end {
            None => RecordsEnd::Data,
            Some(Ok(t)) => RecordsEnd::Other(*t),
            Some(Err(e)) => return ServerSniff::Tls(Err(e.clone())),
        };
        if end == RecordsEnd::Data && !at_limit && self.hs.len() < self.need {
            // Nothing the verdict waits for has arrived.
            return ServerSniff::NeedMore;
        }
        match self.decide(end, at_limit) {
            Ok(v) => v,
            Err(need) => {
                self.need = need;
                ServerSniff::NeedMore
            }
        }
    }

    /// Take the handshake record bytes of `data` not taken yet into `hs`.
    fn take_records(&mut self, data: &[u8]) {
        while self.end.is_none() {
            let rlen = match self.rlen {
                Some(n) => n,
                None => {
                    let Some(hdr) = data.get(self.rec..self.rec + 5) else {
                        return;
                    };
                    self.work += 5;
                    if hdr[1] != 0x03 {
                        self.end = Some(Err(format!(
                            "record with version 0x{:02x}{:02x} after the ServerHello",
                            hdr[1], hdr[2]
                        )));
                        return;
                    }
                    let n = u16::from_be_bytes([hdr[3], hdr[4]]) as usize;
                    if hdr[0] != 0x16 {
                        self.end = Some(Ok(hdr[0]));
                        return;
                    }
                    if n == 0 || n > MAX_RECORD {
                        self.end = Some(Err(format!("handshake record of {n} bytes")));
                        return;
                    }
                    self.rlen = Some(n);
                    self.taken = 0;
                    n
                }
            };
            let from = self.rec + 5 + self.taken;
            let avail = data.len().saturating_sub(from).min(rlen - self.taken);
            // A partial record: its bytes are usable already.
            self.hs.extend_from_slice(&data[from..from + avail]);
            self.work += avail as u64;
            self.taken += avail;
            if self.taken < rlen {
                return;
            }
            self.rec += 5 + rlen;
            self.rlen = None;
        }
    }

    /// The verdict from the handshake messages, or `Err(n)`: more bytes are needed,
    /// and nothing changes before `hs` holds `n` bytes (unless the records end or
    /// the limit is reached).
    fn decide(&mut self, end: RecordsEnd, at_limit: bool) -> Result<ServerSniff, usize> {
        let hs = &self.hs[..];
        let more_may_come = matches!(end, RecordsEnd::Data) && !at_limit;
        let interrupted = |what: &str, need: usize| -> Result<ServerSniff, usize> {
            match end {
                RecordsEnd::Data if !at_limit => Err(need),
                RecordsEnd::Data => Ok(ServerSniff::Tls(Err(format!(
                    "{what} is longer than the sniffed bytes"
                )))),
                RecordsEnd::Other(t) => Ok(ServerSniff::Tls(Err(format!(
                    "record type {t} before the {what} was complete"
                )))),
            }
        };
        // Skip HelloRequest messages (type 0, empty), then the ServerHello. The
        // skipped ones stay skipped: `hs` only grows.
        let (ty, body) = loop {
            self.work += 4;
            match message_at(hs, self.msg) {
                Msg::Complete(0, b) => self.msg += 4 + b.len(),
                Msg::Complete(t, b) => break (t, b),
                Msg::Partial(t, len) => {
                    if t != 2 {
                        break (t, &[][..]);
                    }
                    if len > SNIFF_LIMIT {
                        return Ok(ServerSniff::Tls(Err(format!("ServerHello of {len} bytes"))));
                    }
                    return interrupted("ServerHello", self.msg + 4 + len);
                }
                Msg::None => return interrupted("ServerHello", self.msg + 4),
            }
        };
        if ty != 2 {
            return Ok(ServerSniff::Tls(Err(format!(
                "first handshake message is type {ty}, not a ServerHello"
            ))));
        }
        self.work += body.len() as u64;
        let mut info = match parse_server_hello(body) {
            Ok(i) => i,
            Err(e) => return Ok(ServerSniff::Tls(Err(e))),
        };
        let pos = self.msg + 4 + body.len();
        if info.version >= 0x0304 {
            // Everything after the ServerHello is encrypted.
            return Ok(ServerSniff::Tls(Ok(info)));
        }
        self.work += 4;
        match message_at(hs, pos) {
            Msg::Complete(11, cert_msg) => {
                self.work += cert_msg.len() as u64;
                match parse_certificate_message(cert_msg) {
                    Ok(chain) => {
                        info.chain_len = chain.len();
                        match chain.first() {
                            Some(leaf) => match certificate_info(leaf) {
                                Ok(c) => info.certificate = Some(c),
                                Err(e) => info.certificate_error = Some(format!("leaf: {e}")),
                            },
                            None => info.certificate_error = Some("empty certificate list".into()),
                        }
                    }
                    Err(e) => info.certificate_error = Some(e),
                }
                Ok(ServerSniff::Tls(Ok(info)))
            }
            Msg::Complete(_, _) => Ok(ServerSniff::Tls(Ok(info))),
            Msg::Partial(11, len) => {
                if more_may_come && len <= SNIFF_LIMIT {
                    return Err(pos + 4 + len);
                }
                info.certificate_error = Some(match end {
                    RecordsEnd::Other(t) => {
                        format!("record type {t} before the Certificate message was complete")
                    }
                    RecordsEnd::Data => {
                        format!(
                            "Certificate message of {len} bytes is longer than the sniffed bytes"
                        )
                    }
                });
                Ok(ServerSniff::Tls(Ok(info)))
            }
            // A message header seen: it is not a Certificate, so there is none in clear.
            Msg::Partial(_, _) => Ok(ServerSniff::Tls(Ok(info))),
            Msg::None => {
                if more_may_come {
                    Err(pos + 4)
                } else {
                    // Another record type (ChangeCipherSpec of a resumed session), or
                    // the sniff limit reached right after the hello.
                    Ok(ServerSniff::Tls(Ok(info)))
                }
            }
        }
    }
}

fn parse_server_hello(body: &[u8]) -> Result<ServerHelloInfo, String> {
    let short = || "ServerHello is truncated".to_string();
    let mut c = Cursor::new(body);
    let legacy_version = c.u16().ok_or_else(short)?;
    c.take(32).ok_or_else(short)?; // random
    c.vec8().ok_or_else(short)?; // session id
    let cipher_suite = c.u16().ok_or_else(short)?;
    c.u8().ok_or_else(short)?; // compression method
    let mut version = legacy_version;
    if !c.done() {
        let exts = c.vec16().ok_or_else(short)?;
        let mut e = Cursor::new(exts);
        while !e.done() {
            let ty = e.u16().ok_or("extension header is truncated")?;
            let data = e.vec16().ok_or("extension is truncated")?;
            if ty == 43 {
                let mut d = Cursor::new(data);
                version = d.u16().ok_or("supported_versions is truncated")?;
            }
        }
    }
    Ok(ServerHelloInfo {
        version,
        cipher_suite,
        certificate: None,
        chain_len: 0,
        certificate_error: None,
    })
}

/// The DER certificates of a TLS 1.2 Certificate message body.
fn parse_certificate_message(body: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut c = Cursor::new(body);
    let list = c.vec24().ok_or("Certificate message is truncated")?;
    let mut l = Cursor::new(list);
    let mut chain = Vec::new();
    while !l.done() {
        chain.push(l.vec24().ok_or("certificate entry is truncated")?);
    }
    Ok(chain)
}

/// The first clear-text alert record in a stream of TLS records: `(level,
/// description)`. Records are walked from the start of `data`; the walk stops at
/// the first bytes that are not a record header (so `data` must start at a record
/// boundary). Encrypted alerts (a TLS 1.2 alert record longer than two bytes, or a
/// TLS 1.3 alert inside application-data records) are not visible and not returned.
pub fn find_alert(data: &[u8]) -> Option<(u8, u8)> {
    let mut pos = 0;
    while let Some(hdr) = data.get(pos..pos + 5) {
        if !(0x14..=0x18).contains(&hdr[0]) || hdr[1] != 0x03 {
            return None;
        }
        let rlen = u16::from_be_bytes([hdr[3], hdr[4]]) as usize;
        if rlen > MAX_RECORD {
            return None;
        }
        if hdr[0] == 0x15 && rlen == 2 {
            let a = data.get(pos + 5..pos + 7)?;
            return Some((a[0], a[1]));
        }
        pos += 5 + rlen;
    }
    None
}

/// Name of a TLS alert description (RFC 8446 §6 and the older ones from RFC 5246),
/// e.g. `handshake_failure`; `alert <n>` for an unknown number.
pub fn alert_name(desc: u8) -> String {
    let n = match desc {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        21 => "decryption_failed",
        22 => "record_overflow",
        30 => "decompression_failure",
        40 => "handshake_failure",
        41 => "no_certificate",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        60 => "export_restriction",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        90 => "user_canceled",
        100 => "no_renegotiation",
        109 => "missing_extension",
        110 => "unsupported_extension",
        111 => "certificate_unobtainable",
        112 => "unrecognized_name",
        113 => "bad_certificate_status_response",
        114 => "bad_certificate_hash_value",
        115 => "unknown_psk_identity",
        116 => "certificate_required",
        120 => "no_application_protocol",
        121 => "ech_required",
        _ => return format!("alert {desc}"),
    };
    n.to_string()
}

// ---------------------------------------------------------------------------------
// Cipher suites
// ---------------------------------------------------------------------------------

/// IANA cipher suites with their names: the TLS 1.3 suites, the ECDHE/DHE/RSA
/// AES-GCM, AES-CBC and ChaCha20 suites, and the old RC4, DES, 3DES, NULL, EXPORT
/// and anonymous ones. PSK, Camellia, ARIA, SEED and the DSS/static-DH suites are
/// not listed.
const CIPHER_SUITES: &[(u16, &str)] = &[
    (0x0000, "TLS_NULL_WITH_NULL_NULL"),
    (0x0001, "TLS_RSA_WITH_NULL_MD5"),
    (0x0002, "TLS_RSA_WITH_NULL_SHA"),
    (0x0003, "TLS_RSA_EXPORT_WITH_RC4_40_MD5"),
    (0x0004, "TLS_RSA_WITH_RC4_128_MD5"),
    (0x0005, "TLS_RSA_WITH_RC4_128_SHA"),
    (0x0006, "TLS_RSA_EXPORT_WITH_RC2_CBC_40_MD5"),
    (0x0007, "TLS_RSA_WITH_IDEA_CBC_SHA"),
    (0x0008, "TLS_RSA_EXPORT_WITH_DES40_CBC_SHA"),
    (0x0009, "TLS_RSA_WITH_DES_CBC_SHA"),
    (0x000a, "TLS_RSA_WITH_3DES_EDE_CBC_SHA"),
    (0x0014, "TLS_DHE_RSA_EXPORT_WITH_DES40_CBC_SHA"),
    (0x0015, "TLS_DHE_RSA_WITH_DES_CBC_SHA"),
    (0x0016, "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA"),
    (0x0017, "TLS_DH_anon_EXPORT_WITH_RC4_40_MD5"),
    (0x0018, "TLS_DH_anon_WITH_RC4_128_MD5"),
    (0x0019, "TLS_DH_anon_EXPORT_WITH_DES40_CBC_SHA"),
    (0x001a, "TLS_DH_anon_WITH_DES_CBC_SHA"),
    (0x001b, "TLS_DH_anon_WITH_3DES_EDE_CBC_SHA"),
    (0x002f, "TLS_RSA_WITH_AES_128_CBC_SHA"),
    (0x0033, "TLS_DHE_RSA_WITH_AES_128_CBC_SHA"),
    (0x0034, "TLS_DH_anon_WITH_AES_128_CBC_SHA"),
    (0x0035, "TLS_RSA_WITH_AES_256_CBC_SHA"),
    (0x0039, "TLS_DHE_RSA_WITH_AES_256_CBC_SHA"),
    (0x003a, "TLS_DH_anon_WITH_AES_256_CBC_SHA"),
    (0x003b, "TLS_RSA_WITH_NULL_SHA256"),
    (0x003c, "TLS_RSA_WITH_AES_128_CBC_SHA256"),
    (0x003d, "TLS_RSA_WITH_AES_256_CBC_SHA256"),
    (0x0067, "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256"),
    (0x006b, "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256"),
    (0x006c, "TLS_DH_anon_WITH_AES_128_CBC_SHA256"),
    (0x006d, "TLS_DH_anon_WITH_AES_256_CBC_SHA256"),
    (0x009c, "TLS_RSA_WITH_AES_128_GCM_SHA256"),
    (0x009d, "TLS_RSA_WITH_AES_256_GCM_SHA384"),
    (0x009e, "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"),
    (0x009f, "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384"),
    (0x00a6, "TLS_DH_anon_WITH_AES_128_GCM_SHA256"),
    (0x00a7, "TLS_DH_anon_WITH_AES_256_GCM_SHA384"),
    (0x00ff, "TLS_EMPTY_RENEGOTIATION_INFO_SCSV"),
    (0x1301, "TLS_AES_128_GCM_SHA256"),
    (0x1302, "TLS_AES_256_GCM_SHA384"),
    (0x1303, "TLS_CHACHA20_POLY1305_SHA256"),
    (0x1304, "TLS_AES_128_CCM_SHA256"),
    (0x1305, "TLS_AES_128_CCM_8_SHA256"),
    (0x5600, "TLS_FALLBACK_SCSV"),
    (0xc006, "TLS_ECDHE_ECDSA_WITH_NULL_SHA"),
    (0xc007, "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA"),
    (0xc008, "TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA"),
    (0xc009, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"),
    (0xc00a, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"),
    (0xc010, "TLS_ECDHE_RSA_WITH_NULL_SHA"),
    (0xc011, "TLS_ECDHE_RSA_WITH_RC4_128_SHA"),
    (0xc012, "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA"),
    (0xc013, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"),
    (0xc014, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"),
    (0xc015, "TLS_ECDH_anon_WITH_NULL_SHA"),
    (0xc016, "TLS_ECDH_anon_WITH_RC4_128_SHA"),
    (0xc017, "TLS_ECDH_anon_WITH_3DES_EDE_CBC_SHA"),
    (0xc018, "TLS_ECDH_anon_WITH_AES_128_CBC_SHA"),
    (0xc019, "TLS_ECDH_anon_WITH_AES_256_CBC_SHA"),
    (0xc023, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"),
    (0xc024, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384"),
    (0xc027, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"),
    (0xc028, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384"),
    (0xc02b, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
    (0xc02c, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
    (0xc02f, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    (0xc030, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
    (0xcca8, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
    (0xcca9, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
    (0xccaa, "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
];

/// IANA name of a cipher suite from the table above (`None` for suites not in it).
pub fn cipher_suite_name(id: u16) -> Option<&'static str> {
    CIPHER_SUITES
        .binary_search_by_key(&id, |&(i, _)| i)
        .ok()
        .map(|i| CIPHER_SUITES[i].1)
}

/// True for a suite this rig counts as weak. The rule, applied to the IANA name:
/// no encryption (`NULL`), `EXPORT` grade, RC4, RC2, IDEA, single DES or 3DES,
/// anonymous key exchange (`anon`: no server authentication), an MD5 MAC, or static
/// RSA key exchange with CBC and a SHA-1 MAC (`TLS_RSA_WITH_*_CBC_SHA`: no forward
/// secrecy and the Lucky-13/padding-oracle-prone construction). Static-RSA GCM and
/// CBC-SHA256 suites and ECDHE/DHE CBC-SHA suites are not counted as weak. The
/// signalling values (`*_SCSV`) and suites not in [`cipher_suite_name`]'s table
/// return false.
pub fn cipher_suite_is_weak(id: u16) -> bool {
    let Some(n) = cipher_suite_name(id) else {
        return false;
    };
    if n.ends_with("_SCSV") {
        return false;
    }
    ["NULL", "EXPORT", "RC4", "RC2", "IDEA", "DES", "anon", "MD5"]
        .iter()
        .any(|w| n.contains(w))
        || (n.starts_with("TLS_RSA_WITH_") && n.ends_with("_CBC_SHA"))
}

// ---------------------------------------------------------------------------------
// X.509 leaf certificate (a small DER walk)
// ---------------------------------------------------------------------------------

/// What the rig reports about a server certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    /// Subject common name (the last CN attribute of the subject).
    pub subject_cn: Option<String>,
    /// Issuer common name (the last CN attribute of the issuer).
    pub issuer_cn: Option<String>,
    /// `dNSName` entries of the subjectAltName extension (at most 256).
    pub dns_names: Vec<String>,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
    /// Subject and issuer names are byte-identical (the signature is not checked).
    pub self_signed: bool,
    /// SHA-256 of the whole DER certificate, lower-case hex.
    pub sha256: String,
    /// `RSA 2048`, `EC P-256`, `EC P-384`, `EC P-521`, `Ed25519`, `Ed448`, `DSA`,
    /// `RSA-PSS 2048`, or `OID <dotted>` for anything else.
    pub key_algorithm: String,
}

/// One DER element: tag byte and contents.
struct Der<'a> {
    tag: u8,
    body: &'a [u8],
}

/// Read DER elements one after another from a byte slice.
struct DerReader<'a> {
    b: &'a [u8],
}

impl<'a> DerReader<'a> {
    fn new(b: &'a [u8]) -> Self {
        DerReader { b }
    }
    fn is_empty(&self) -> bool {
        self.b.is_empty()
    }
    fn peek_tag(&self) -> Option<u8> {
        self.b.first().copied()
    }
    fn next(&mut self) -> Result<Der<'a>, String> {
        let b = self.b;
        let (&tag, rest) = b.split_first().ok_or("DER element missing")?;
        if tag & 0x1f == 0x1f {
            return Err("multi-byte DER tag".into());
        }
        let (&l0, rest) = rest.split_first().ok_or("DER length missing")?;
        let (len, rest) = if l0 < 0x80 {
            (l0 as usize, rest)
        } else {
            let n = (l0 & 0x7f) as usize;
            if n == 0 || n > 4 {
                return Err("unsupported DER length form".into());
            }
            let lb = rest.get(..n).ok_or("DER length truncated")?;
            let len = lb.iter().fold(0usize, |a, &x| (a << 8) | x as usize);
            (len, &rest[n..])
        };
        let body = rest.get(..len).ok_or("DER element truncated")?;
        self.b = &rest[len..];
        Ok(Der { tag, body })
    }
    /// The next element, which must have tag `tag`.
    fn expect(&mut self, tag: u8, what: &str) -> Result<&'a [u8], String> {
        let e = self.next().map_err(|e| format!("{what}: {e}"))?;
        if e.tag != tag {
            return Err(format!("{what}: tag 0x{:02x}, expected 0x{tag:02x}", e.tag));
        }
        Ok(e.body)
    }
}

/// Dotted form of an OBJECT IDENTIFIER's contents.
fn oid_string(b: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut v: u64 = 0;
    for &x in b {
        if v > (u64::MAX >> 8) {
            return "OID too long".into();
        }
        v = (v << 7) | (x & 0x7f) as u64;
        if x & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (v / 40).min(2);
                arcs.push(first);
                arcs.push(v - first * 40);
            } else {
                arcs.push(v);
            }
            v = 0;
        }
    }
    arcs.iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

/// A directory string (UTF8String, PrintableString, IA5String, TeletexString as
/// Latin-1, BMPString, UniversalString), lossily.
fn der_string(e: &Der) -> String {
    match e.tag {
        0x1e => {
            let units: Vec<u16> = e
                .body
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        0x1c => e
            .body
            .chunks(4)
            .map(|c| {
                let mut w = [0u8; 4];
                w[..c.len()].copy_from_slice(c);
                char::from_u32(u32::from_be_bytes(w)).unwrap_or('\u{fffd}')
            })
            .collect(),
        0x14 => e.body.iter().map(|&c| c as char).collect(),
        _ => String::from_utf8_lossy(e.body).into_owned(),
    }
}

/// The last commonName in a Name (SEQUENCE OF SET OF AttributeTypeAndValue).
fn common_name(name: &[u8]) -> Result<Option<String>, String> {
    let mut cn = None;
    let mut rdns = DerReader::new(name);
    while !rdns.is_empty() {
        let set = rdns.expect(0x31, "name RDN")?;
        let mut atvs = DerReader::new(set);
        while !atvs.is_empty() {
            let atv = atvs.expect(0x30, "name attribute")?;
            let mut a = DerReader::new(atv);
            let oid = a.expect(0x06, "attribute type")?;
            let value = a.next()?;
            if oid == [0x55, 0x04, 0x03] {
                cn = Some(der_string(&value));
            }
        }
    }
    Ok(cn)
}

/// Seconds since the epoch of a UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`).
fn der_time(e: &Der) -> Result<i64, String> {
    let s = std::str::from_utf8(e.body).map_err(|_| "time is not ASCII")?;
    let digits = s.strip_suffix('Z').ok_or("time is not in UTC")?;
    if !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!("malformed time {s:?}"));
    }
    let (year, rest) = match (e.tag, digits.len()) {
        (0x17, 12) => {
            let yy: i32 = digits[..2].parse().map_err(|_| "bad year")?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        (0x18, 14) => (digits[..4].parse().map_err(|_| "bad year")?, &digits[4..]),
        _ => return Err(format!("malformed time {s:?}")),
    };
    let n = |i: usize| -> u8 { rest[i..i + 2].parse().unwrap_or(255) };
    let month = time::Month::try_from(n(0)).map_err(|_| format!("bad month in {s:?}"))?;
    let t = time::Date::from_calendar_date(year, month, n(2))
        .and_then(|d| d.with_hms(n(4), n(6), n(8)))
        .map_err(|_| format!("bad date in {s:?}"))?;
    Ok(t.assume_utc().unix_timestamp())
}

/// Bit length of an unsigned big-endian INTEGER's contents.
fn integer_bits(b: &[u8]) -> usize {
    let b = match b.iter().position(|&x| x != 0) {
        Some(i) => &b[i..],
        None => return 0,
    };
    (b.len() - 1) * 8 + (8 - b[0].leading_zeros() as usize)
}

/// Describe a SubjectPublicKeyInfo.
fn key_algorithm(spki: &[u8]) -> Result<String, String> {
    let mut s = DerReader::new(spki);
    let alg = s.expect(0x30, "key algorithm")?;
    let key = s.expect(0x03, "public key")?;
    let mut a = DerReader::new(alg);
    let oid = oid_string(a.expect(0x06, "key algorithm OID")?);
    let params = if a.is_empty() { None } else { Some(a.next()?) };
    let rsa_bits = || -> Option<usize> {
        let mut k = DerReader::new(key.get(1..)?);
        let seq = k.expect(0x30, "").ok()?;
        let n = DerReader::new(seq).expect(0x02, "").ok()?;
        Some(integer_bits(n))
    };
    Ok(match oid.as_str() {
        "1.2.840.113549.1.1.1" => match rsa_bits() {
            Some(b) => format!("RSA {b}"),
            None => "RSA".into(),
        },
        "1.2.840.113549.1.1.10" => match rsa_bits() {
            Some(b) => format!("RSA-PSS {b}"),
            None => "RSA-PSS".into(),
        },
        "1.2.840.10045.2.1" => {
            let curve = match params {
                Some(Der { tag: 0x06, body }) => oid_string(body),
                _ => String::new(),
            };
            match curve.as_str() {
                "1.2.840.10045.3.1.7" => "EC P-256".into(),
                "1.3.132.0.34" => "EC P-384".into(),
                "1.3.132.0.35" => "EC P-521".into(),
                "1.3.132.0.10" => "EC secp256k1".into(),
                "" => "EC".into(),
                c => format!("EC {c}"),
            }
        }
        "1.3.101.112" => "Ed25519".into(),
        "1.3.101.113" => "Ed448".into(),
        "1.2.840.10040.4.1" => "DSA".into(),
        o => format!("OID {o}"),
    })
}

/// dNSName entries of a subjectAltName extension value.
fn san_dns_names(value: &[u8], out: &mut Vec<String>) -> Result<(), String> {
    let mut outer = DerReader::new(value);
    let names = outer.expect(0x30, "subjectAltName")?;
    let mut r = DerReader::new(names);
    while !r.is_empty() {
        let g = r.next()?;
        if g.tag == 0x82 && out.len() < 256 {
            out.push(String::from_utf8_lossy(g.body).into_owned());
        }
    }
    Ok(())
}

/// Parse the fields the rig reports from a DER X.509 certificate. Never panics,
/// whatever the bytes; the signature is not verified and extensions other than
/// subjectAltName are not read.
pub fn certificate_info(der: &[u8]) -> Result<CertInfo, String> {
    let mut top = DerReader::new(der);
    let cert = top.expect(0x30, "certificate")?;
    if !top.is_empty() {
        return Err("bytes after the certificate".into());
    }
    let mut c = DerReader::new(cert);
    let tbs = c.expect(0x30, "tbsCertificate")?;
    let mut t = DerReader::new(tbs);
    if t.peek_tag() == Some(0xa0) {
        t.next()?; // version
    }
    t.expect(0x02, "serial number")?;
    t.expect(0x30, "signature algorithm")?;
    let issuer = t.expect(0x30, "issuer")?;
    let validity = t.expect(0x30, "validity")?;
    let subject = t.expect(0x30, "subject")?;
    let spki = t.expect(0x30, "subjectPublicKeyInfo")?;
    let mut v = DerReader::new(validity);
    let not_before_unix = der_time(&v.next()?)?;
    let not_after_unix = der_time(&v.next()?)?;
    let mut dns_names = Vec::new();
    while !t.is_empty() {
        let e = t.next()?;
        if e.tag != 0xa3 {
            continue; // issuer/subject unique ids
        }
        let mut x = DerReader::new(e.body);
        let exts = x.expect(0x30, "extensions")?;
        let mut xs = DerReader::new(exts);
        while !xs.is_empty() {
            let ext = xs.expect(0x30, "extension")?;
            let mut f = DerReader::new(ext);
            let oid = f.expect(0x06, "extension id")?;
            if f.peek_tag() == Some(0x01) {
                f.next()?; // critical
            }
            let value = f.expect(0x04, "extension value")?;
            if oid == [0x55, 0x1d, 0x11] {
                san_dns_names(value, &mut dns_names)?;
            }
        }
    }
    Ok(CertInfo {
        subject_cn: common_name(subject)?,
        issuer_cn: common_name(issuer)?,
        dns_names,
        not_before_unix,
        not_after_unix,
        self_signed: subject == issuer,
        sha256: hex::encode(sha2::Sha256::digest(der)),
        key_algorithm: key_algorithm(spki)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(sni: Option<&str>, versions: &[u16]) -> Vec<u8> {
        let mut exts = Vec::new();
        if let Some(n) = sni {
            let mut e = Vec::new();
            e.extend_from_slice(&((n.len() + 3) as u16).to_be_bytes());
            e.push(0);
            e.extend_from_slice(&(n.len() as u16).to_be_bytes());
            e.extend_from_slice(n.as_bytes());
            exts.extend_from_slice(&0u16.to_be_bytes());
            exts.extend_from_slice(&(e.len() as u16).to_be_bytes());
            exts.extend(e);
        }
        if !versions.is_empty() {
            exts.extend_from_slice(&43u16.to_be_bytes());
            exts.extend_from_slice(&((versions.len() * 2 + 1) as u16).to_be_bytes());
            exts.push((versions.len() * 2) as u8);
            for v in versions {
                exts.extend_from_slice(&v.to_be_bytes());
            }
        }
        let mut body = vec![0x03, 0x03];
        body.extend([7u8; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 2, 0x13, 0x01]);
        body.extend_from_slice(&[1, 0]);
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend(exts);
        let mut hs = vec![1];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend(body);
        let mut rec = vec![0x16, 0x03, 0x01];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend(hs);
        rec
    }

    #[test]
    fn client_hello_versions_and_sni() {
        let h = hello(Some("watch.kidcloud.example"), &[0x0a0a, 0x0304, 0x0303]);
        let Sniff::Tls(Ok(ch)) = sniff_client_hello(&h) else {
            panic!()
        };
        assert_eq!(ch.sni.as_deref(), Some("watch.kidcloud.example"));
        assert_eq!(ch.versions, vec![0x0304, 0x0303]);
        // Without supported_versions the legacy version counts.
        let Sniff::Tls(Ok(ch)) = sniff_client_hello(&hello(None, &[])) else {
            panic!()
        };
        assert_eq!(ch.versions, vec![0x0303]);
        assert_eq!(ch.sni, None);
    }

    #[test]
    fn client_hello_split_over_reads_and_records() {
        let h = hello(Some("a.example"), &[0x0303]);
        for cut in 0..h.len() {
            assert_eq!(sniff_client_hello(&h[..cut]), Sniff::NeedMore, "cut {cut}");
        }
        // The same handshake message in two records.
        let hs = &h[5..];
        let (a, b) = hs.split_at(20);
        let mut two = Vec::new();
        for part in [a, b] {
            two.extend_from_slice(&[0x16, 0x03, 0x01]);
            two.extend_from_slice(&(part.len() as u16).to_be_bytes());
            two.extend_from_slice(part);
        }
        let Sniff::Tls(Ok(ch)) = sniff_client_hello(&two) else {
            panic!()
        };
        assert_eq!(ch.sni.as_deref(), Some("a.example"));
    }

    #[test]
    fn client_hello_sniffer_resumes_where_it_stopped() {
        let h = hello(Some("a.example"), &[0x0304, 0x0303]);
        // The same message in records of 1, 2 and 7 bytes.
        let hs = &h[5..];
        let mut variants = vec![h.clone()];
        for size in [1usize, 2, 7] {
            let mut v = Vec::new();
            for part in hs.chunks(size) {
                v.extend_from_slice(&[0x16, 0x03, 0x01]);
                v.extend_from_slice(&(part.len() as u16).to_be_bytes());
                v.extend_from_slice(part);
            }
            variants.push(v);
        }
        for data in &variants {
            let whole = sniff_client_hello(data);
            assert!(matches!(&whole, Sniff::Tls(Ok(c)) if c.sni.as_deref() == Some("a.example")));
            let mut one = ClientHelloSniffer::new();
            assert_eq!(one.push(data), whole);
            for read in [1usize, 2, 3, 5, 64] {
                let mut s = ClientHelloSniffer::new();
                let mut got = Sniff::NeedMore;
                for (i, c) in data.chunks(read).enumerate() {
                    assert_eq!(got, Sniff::NeedMore, "decided before the end");
                    got = s.push(c);
                    let upto = (i * read + c.len()).min(data.len());
                    if upto < data.len() {
                        assert_eq!(got, Sniff::NeedMore, "reads of {read}, at {upto}");
                    }
                }
                assert_eq!(got, whole, "reads of {read}");
                // Each record header read once, each byte copied and parsed once:
                // the same work however the bytes were cut.
                assert_eq!(s.work(), one.work(), "reads of {read}");
                assert_eq!(s.held(), &data[..]);
            }
        }
        // Clear text: the verdict from the first byte, the bytes kept for decoding.
        let mut c = ClientHelloSniffer::new();
        assert_eq!(c.push(b"["), Sniff::NotTls);
        assert_eq!(c.push(b"3G*"), Sniff::NotTls);
        assert_eq!(c.take_held(), b"[");
        // An error found in the second record, reached one byte at a time.
        let mut bad = h[..20].to_vec();
        bad[4] = 15; // the first record ends after 15 bytes
        bad.extend_from_slice(&[0x17, 0x03, 0x03, 0, 1, 0]);
        let mut s = ClientHelloSniffer::new();
        let mut got = Sniff::NeedMore;
        for b in &bad {
            got = s.push(std::slice::from_ref(b));
        }
        assert_eq!(got, sniff_client_hello(&bad));
        assert!(
            matches!(&got, Sniff::Tls(Err(e)) if e.contains("record type 23")),
            "{got:?}"
        );
    }

    #[test]
    fn sniffing_garbage_never_panics() {
        assert_eq!(
            sniff_client_hello(b"[3G*1234567890*0002*LK]"),
            Sniff::NotTls
        );
        assert_eq!(sniff_client_hello(b"GET / HTTP/1.1\r\n"), Sniff::NotTls);
        assert_eq!(sniff_client_hello(&[0x16, 0x01]), Sniff::NotTls);
        assert!(matches!(
            sniff_client_hello(&[0x16, 3, 1, 0, 4, 2, 0, 0, 0]),
            Sniff::Tls(Err(_))
        ));
        // Every truncation and a sweep of single-byte corruptions of a real hello.
        let h = hello(Some("x.example"), &[0x0304]);
        let mut seed = 12345u32;
        for i in 0..h.len() {
            for _ in 0..8 {
                seed = seed.wrapping_mul(1103515245).wrapping_add(12345);
                let mut c = h.clone();
                c[i] = (seed >> 16) as u8;
                let _ = sniff_client_hello(&c);
                let _ = sniff_client_hello(&c[..i]);
            }
        }
        // Lengths pointing past the end.
        let mut bad = h.clone();
        let n = bad.len();
        bad[n - 3] = 0xff;
        let _ = sniff_client_hello(&bad);
    }

    #[test]
    fn client_hello_cipher_suites_in_order_without_grease() {
        assert_eq!(
            client_hello_cipher_suites(&hello(None, &[0x0303])),
            Ok(Some(vec![0x1301]))
        );
        // The suite list of a hello rewritten: GREASE, a TLS 1.3 suite, RC4-MD5.
        let mut h = hello(Some("a.example"), &[0x0304]);
        let at = 5 + 4 + 2 + 32 + 1;
        assert_eq!(&h[at..at + 4], &[0, 2, 0x13, 0x01]);
        h.splice(at..at + 4, [0, 6, 0x3a, 0x3a, 0x13, 0x02, 0x00, 0x04]);
        // Record and handshake lengths grow by four.
        let rlen = u16::from_be_bytes([h[3], h[4]]) + 4;
        h[3..5].copy_from_slice(&rlen.to_be_bytes());
        let hlen = u32::from_be_bytes([0, h[6], h[7], h[8]]) + 4;
        h[6..9].copy_from_slice(&hlen.to_be_bytes()[1..]);
        assert_eq!(
            client_hello_cipher_suites(&h),
            Ok(Some(vec![0x1302, 0x0004]))
        );
        // The rest of the hello still parses the same.
        let Sniff::Tls(Ok(ch)) = sniff_client_hello(&h) else {
            panic!()
        };
        assert_eq!(ch.sni.as_deref(), Some("a.example"));
        // Incomplete, not TLS, odd-length list.
        assert_eq!(client_hello_cipher_suites(&h[..20]), Ok(None));
        assert!(client_hello_cipher_suites(b"[3G*1*0002*LK]").is_err());
        let mut odd = h.clone();
        odd[at + 1] = 5;
        assert!(client_hello_cipher_suites(&odd).is_err());
        for cut in 0..h.len() {
            let _ = client_hello_cipher_suites(&h[..cut]);
        }
    }

    // ---- server side -------------------------------------------------------------

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SignatureAlgorithm,
    };
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};
    use std::sync::Arc;

    /// A test-only RSA key (ring cannot generate RSA keys).
    const RSA_KEY_PEM: &str = concat!(
        "-----BEGIN PRIVATE KEY-----\n",
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCq30y9jhwJ6unl\n",
        "6i4jiq3MZHCVhJHlt7R6v7D7x71zC9ZL10ppN2pQTY/m7x/vH+3K4E3uCE5nPp9J\n",
        "WZ1A/y5ciDk66G+1R2omvMO532/PumjTBFqsSY1FFxswf87eFfZp5xknppRxegE8\n",
        "MPD6pxcR7hENIltkqFrahqPDPKgarACJYkEOgJY1lzM9sARXC+YNjl6TfSFpZY0b\n",
        "tuHZJf1HCrBAqguosXPyeUTV+fZiLI2SzoCBT4+l+7l+1sg34KReKbg6nuZO54YN\n",
        "F5Qd5yPNffhfL4o+c6rMzzjPLnmzgKqFOz9hHoL9e+QvBjV7W2IwPNypdaXyqMkc\n",
        "eBSgSLfJAgMBAAECggEABPGA3tsFpKPPMH+d5hlU/dzKBQlYzzSJXCO/kwksSe/F\n",
        "u1v3IyQfR0N3Lk8stVZPItdqacCDxCjjotOc4QyA4txuC24+DRiL0aMUZoQ4T+Is\n",
        "ti4iEWnvVFheyQBpk7M+9cFh0OvYz4+gCYXA8v9yg2pHxAGCc18LgdbzVeqjUmIr\n",
        "ZKAyZrQzpXjsnzdZLgvzsOseUGmdviA8AkptPBL5uZ7lY2RPFFsdd3MKt8O/o7/J\n",
        "HDU5fkZjpd9tzVK6x8V9zB9hJMUKKMz8pW0vu4h7tdIoy0E0fOx5B/G+tPv17R8I\n",
        "oTPK6VC7Z5Fts9jKCbF14qiROhZm+p5RDbgn9mdMgQKBgQDaz6ckxHB2NhHzVyAZ\n",
        "OPm4fL5sS5JmfPykuHD4TpgMLi4RgI2ILuPzjpWrNgmzZ1yRrn6p/+Zsi2rfAZtu\n",
        "tRV7OhkxuqbISVi0SuOUfOy89GNXMCzZGoR/vbvDlXgJJDReZx8OB/lvRcs0PveJ\n",
        "hMmC3p2typOydLkfvtEP5fzelQKBgQDH6dqRGJBZBWJmxIp2z5sf8jAvX7Cmb2Ij\n",
        "dMRbKU+W0pEkYehU8FMyRZNf/zNQAnODdDL71sKIEG3KuaZFuuz5ZUGAie+e2ndm\n",
        "fvw2nsnldO+cIcdRQgyb4VWHwoit+7mys6gPLF2wTS5a+Ob9uIcgpyoAEJ7WMId4\n",
        "Nppek4KLZQKBgFMsvAxt35IP26L0a28rCUHnqTrhPzVWLXMv6UF6HrICm+BrTWGG\n",
        "8X+To7EBSY64q6d0/RECBUUdefJrWforO48r9ofAu8VGnEFsdjXrhtIM0/ZAicu9\n",
        "GMC2Drm6B3byHDYGXPeocFir3yJtDQtpPnBQzv9REfO0CurWTgINGqJBAoGBAL+h\n",
        "tbg8mbIb7TWh1TEK1SKMYBApZAZG4wYl2kugkAB9nFAJ4lH5hWa9NwZgdWmOz/gE\n",
        "nRK3zQXs6bHYwEA7bQmsPFvg3Wei962ysEYTdGmV7FH4Nz33WGrcV8apfad5k4pv\n",
        "mPvihXSIp5Tg31v7VNzCIQqq4/dh0Zo0jUl3kT3ZAoGAQP4Hsv2cBnqGmBcV68Tw\n",
        "13VotS0tN1bBVNS6/kJBghdUB39aoidcOwgC8YgDGN9euyOquErQY0FaCjkC/arG\n",
        "Bl1X/RzK3DBQOwbKFmVT/EHVxY6MHEqGcKMCH6flNe16D0bxaBc50IVJxT2nnTzy\n",
        "skoYPe9wciUjGcrPwbau4A4=\n",
        "-----END PRIVATE KEY-----\n",
    );

    fn unix(y: i32, m: u8, d: u8) -> i64 {
        rcgen::date_time_ymd(y, m, d).unix_timestamp()
    }

    fn key_for(alg: &'static SignatureAlgorithm) -> KeyPair {
        if alg == &rcgen::PKCS_RSA_SHA256 {
            KeyPair::from_pem(RSA_KEY_PEM).unwrap()
        } else {
            KeyPair::generate_for(alg).unwrap()
        }
    }

    fn leaf_params(cn: &str, names: &[&str]) -> CertificateParams {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(DnType::OrganizationName, "Kid Cloud Ltd");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.not_before = rcgen::date_time_ymd(2025, 3, 4);
        p.not_after = rcgen::date_time_ymd(2027, 3, 4);
        p
    }

    /// A server identity: chain (leaf first), key, and the trust anchor.
    struct Pki {
        chain: Vec<CertificateDer<'static>>,
        key: Vec<u8>,
        root: CertificateDer<'static>,
    }

    fn self_signed_pki(alg: &'static SignatureAlgorithm, names: &[&str]) -> Pki {
        let key = key_for(alg);
        let cert = leaf_params(names[0], names).self_signed(&key).unwrap();
        Pki {
            chain: vec![cert.der().clone()],
            key: key.serialize_der(),
            root: cert.der().clone(),
        }
    }

    fn ca_signed_pki(alg: &'static SignatureAlgorithm, names: &[&str]) -> Pki {
        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name = rcgen::DistinguishedName::new();
        ca.distinguished_name
            .push(DnType::CommonName, "Kid Cloud Root CA");
        ca.not_before = rcgen::date_time_ymd(1999, 12, 31);
        ca.not_after = rcgen::date_time_ymd(2060, 1, 1);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = key_for(alg);
        let leaf = leaf_params(names[0], names)
            .signed_by(&key, &issuer)
            .unwrap();
        Pki {
            chain: vec![leaf.der().clone(), ca_cert.der().clone()],
            key: key.serialize_der(),
            root: ca_cert.der().clone(),
        }
    }

    /// What rustls negotiated, and every byte the server sent.
    struct Handshake {
        server_bytes: Vec<u8>,
        version: u16,
        suite: rustls::CipherSuite,
    }

    /// Run a rustls client against a rustls server over in-memory buffers.
    fn handshake(
        pki: &Pki,
        versions: &[&'static rustls::SupportedProtocolVersion],
        client_suites: Option<Vec<rustls::SupportedCipherSuite>>,
        max_fragment: Option<usize>,
    ) -> Handshake {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server_cfg = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                pki.chain.clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.key.clone())),
            )
            .unwrap();
        server_cfg.max_fragment_size = max_fragment;
        let mut client_provider = rustls::crypto::ring::default_provider();
        if let Some(s) = client_suites {
            client_provider.cipher_suites = s;
        }
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.root.clone()).unwrap();
        let client_cfg = ClientConfig::builder_with_provider(Arc::new(client_provider))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut server = ServerConnection::new(Arc::new(server_cfg)).unwrap();
        let name = ServerName::try_from("watch.kidcloud.example").unwrap();
        let mut client = ClientConnection::new(Arc::new(client_cfg), name).unwrap();
        let mut server_bytes = Vec::new();
        for _ in 0..20 {
            let mut up = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut up).unwrap();
            }
            let mut rd = &up[..];
            while !rd.is_empty() {
                server.read_tls(&mut rd).unwrap();
            }
            server.process_new_packets().unwrap();
            let mut down = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut down).unwrap();
            }
            server_bytes.extend_from_slice(&down);
            let mut rd = &down[..];
            while !rd.is_empty() {
                client.read_tls(&mut rd).unwrap();
            }
            client.process_new_packets().unwrap();
            if !client.is_handshaking() && !server.is_handshaking() && !client.wants_write() {
                break;
            }
        }
        assert!(!server.is_handshaking(), "handshake did not complete");
        Handshake {
            server_bytes,
            version: u16::from(server.protocol_version().unwrap()),
            suite: server.negotiated_cipher_suite().unwrap().suite(),
        }
    }

    /// The same handshake messages, re-cut into records of `size` bytes each.
    fn rerecord(server_bytes: &[u8], size: usize) -> Vec<u8> {
        let mut hs = Vec::new();
        let mut pos = 0;
        while let Some(h) = server_bytes.get(pos..pos + 5) {
            let len = u16::from_be_bytes([h[3], h[4]]) as usize;
            if h[0] != 0x16 {
                break;
            }
            hs.extend_from_slice(&server_bytes[pos + 5..pos + 5 + len]);
            pos += 5 + len;
        }
        let mut out = Vec::new();
        for part in hs.chunks(size) {
            out.extend_from_slice(&[0x16, 0x03, 0x03]);
            out.extend_from_slice(&(part.len() as u16).to_be_bytes());
            out.extend_from_slice(part);
        }
        out.extend_from_slice(&server_bytes[pos..]);
        out
    }

    fn sniffed(bytes: &[u8]) -> ServerHelloInfo {
        match sniff_server_hello(bytes) {
            ServerSniff::Tls(Ok(i)) => i,
            other => panic!("{other:?}"),
        }
    }

    /// Every prefix is `NeedMore` until the answer is known, and the answer never
    /// changes after that.
    fn assert_prefixes_consistent(bytes: &[u8], full: &ServerSniff) {
        let mut decided = false;
        for cut in 0..=bytes.len() {
            let r = sniff_server_hello(&bytes[..cut]);
            if decided {
                assert_eq!(&r, full, "cut {cut}");
            } else if r != ServerSniff::NeedMore {
                assert_eq!(&r, full, "cut {cut}");
                decided = true;
            }
        }
        assert!(decided);
    }

    fn rustls_name(s: rustls::CipherSuite) -> String {
        format!("{s:?}").replace("TLS13_", "TLS_")
    }

    #[test]
    fn tls12_server_hello_and_certificate_from_a_real_handshake() {
        let names = ["watch.kidcloud.example", "api.kidcloud.example"];
        let pki = ca_signed_pki(&rcgen::PKCS_ECDSA_P256_SHA256, &names);
        let h = handshake(&pki, &[&rustls::version::TLS12], None, None);
        assert_eq!(h.version, 0x0303);
        let info = sniffed(&h.server_bytes);
        assert_eq!(info.version, 0x0303);
        assert_eq!(info.version_name(), "TLS 1.2");
        assert_eq!(info.cipher_suite, u16::from(h.suite));
        assert_eq!(
            info.cipher_suite_name().map(str::to_string),
            Some(rustls_name(h.suite))
        );
        assert_eq!(info.chain_len, 2);
        let cert = info.certificate.clone().expect("leaf certificate");
        assert_eq!(cert.subject_cn.as_deref(), Some("watch.kidcloud.example"));
        assert_eq!(cert.issuer_cn.as_deref(), Some("Kid Cloud Root CA"));
        assert_eq!(cert.dns_names, names);
        assert!(!cert.self_signed);
        assert_eq!(cert.key_algorithm, "EC P-256");
        assert_eq!(cert.not_before_unix, unix(2025, 3, 4));
        assert_eq!(cert.not_after_unix, unix(2027, 3, 4));
        assert_eq!(
            cert.sha256,
            hex::encode(sha2::Sha256::digest(&pki.chain[0]))
        );
        assert_eq!(info.certificate_error, None);

        let full = ServerSniff::Tls(Ok(info.clone()));
        assert_prefixes_consistent(&h.server_bytes, &full);
        // The handshake messages re-cut into tiny records, into one record, and as
        // rustls cuts them with a small maximum fragment size.
        for size in [1, 7, 100, 16384] {
            let r = rerecord(&h.server_bytes, size);
            assert_eq!(sniff_server_hello(&r), full, "records of {size}");
        }
        let one = rerecord(&h.server_bytes, 16384);
        assert_eq!(one[0], 0x16);
        let one_len = u16::from_be_bytes([one[3], one[4]]) as usize;
        assert!(one_len > 600, "all handshake messages in one record");
        assert_prefixes_consistent(&one, &full);
        let frag = handshake(&pki, &[&rustls::version::TLS12], None, Some(64));
        let mut records = 0;
        let mut pos = 0;
        while let Some(hdr) = frag.server_bytes.get(pos..pos + 5) {
            records += 1;
            pos += 5 + u16::from_be_bytes([hdr[3], hdr[4]]) as usize;
        }
        assert!(records > 10, "{records} records");
        let finfo = sniffed(&frag.server_bytes);
        assert_eq!(
            finfo.certificate.map(|c| c.sha256),
            Some(cert.sha256.clone())
        );
        assert_eq!(finfo.chain_len, 2);
    }

    /// Push `data` in reads of `read` bytes; the verdict and the sniffer's work.
    /// Each verdict on the way must be the one of [`sniff_server_hello`] on what
    /// was pushed so far.
    fn server_sniff_in_reads(data: &[u8], read: usize) -> (ServerSniff, u64) {
        let mut s = ServerHelloSniffer::new();
        let mut got = ServerSniff::NeedMore;
        let mut pushed = 0;
        for c in data.chunks(read) {
            pushed += c.len();
            let before = got.clone();
            got = s.push(c);
            if before == ServerSniff::NeedMore {
                assert_eq!(got, sniff_server_hello(&data[..pushed]), "at {pushed}");
            } else {
                assert_eq!(got, before, "the verdict changed at {pushed}");
            }
        }
        (got, s.work())
    }

    #[test]
    fn server_hello_sniffer_resumes_where_it_stopped() {
        let pki = ca_signed_pki(&rcgen::PKCS_ECDSA_P256_SHA256, &["watch.kidcloud.example"]);
        let tls12 = handshake(&pki, &[&rustls::version::TLS12], None, None).server_bytes;
        let tls13 = handshake(&pki, &[&rustls::version::TLS13], None, None).server_bytes;
        // HelloRequests before the ServerHello, one per record.
        let mut requests = Vec::new();
        for _ in 0..50 {
            requests.extend_from_slice(&[0x16, 0x03, 0x03, 0, 4, 0, 0, 0, 0]);
        }
        requests.extend_from_slice(&tls12);
        for flight in [&tls12, &tls13, &requests] {
            for size in [1usize, 7, 100, 16384] {
                let data = rerecord(flight, size);
                let full = sniff_server_hello(&data);
                assert!(matches!(full, ServerSniff::Tls(Ok(_))), "{full:?}");
                let (_, whole_work) = server_sniff_in_reads(&data, data.len());
                for read in [1usize, 2, 3, 64, 1000] {
                    let (got, work) = server_sniff_in_reads(&data, read);
                    assert_eq!(got, full, "records of {size}, reads of {read}");
                    // Linear: record headers and handshake bytes once; the
                    // ServerHello parsed again only when the next message completes.
                    assert!(
                        work <= 3 * whole_work + 64,
                        "records of {size}, reads of {read}: work {work}, at once {whole_work}"
                    );
                }
            }
        }
        // Not TLS, an alert, a bad record after the hello: decided like the whole.
        for data in [
            b"HTTP/1.1 200 OK\r\n".to_vec(),
            vec![0x15, 0x03, 0x03, 0, 2, 2, 40],
            {
                // The ServerHello alone in a record, then a record of version 2.0.
                let m = 4 + u32::from_be_bytes([0, tls12[6], tls12[7], tls12[8]]) as usize;
                let mut d = vec![0x16, 0x03, 0x03];
                d.extend_from_slice(&(m as u16).to_be_bytes());
                d.extend_from_slice(&tls12[5..5 + m]);
                d.extend_from_slice(&[0x16, 0x02, 0x00, 0, 1, 0]);
                d
            },
        ] {
            for read in [1usize, 5, 100] {
                let (got, _) = server_sniff_in_reads(&data, read);
                assert_ne!(got, ServerSniff::NeedMore, "{data:?}");
            }
        }
    }

    #[test]
    fn cipher_suites_of_a_real_client_hello() {
        let provider = rustls::crypto::ring::default_provider();
        let want: Vec<u16> = provider
            .cipher_suites
            .iter()
            .map(|s| u16::from(s.suite()))
            .collect();
        let cfg = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = ServerName::try_from("watch.kidcloud.example").unwrap();
        let mut client = ClientConnection::new(Arc::new(cfg), name).unwrap();
        let mut hello = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut hello).unwrap();
        }
        let got = client_hello_cipher_suites(&hello).unwrap().unwrap();
        // rustls adds the renegotiation signalling value after its suites.
        let got: Vec<u16> = got.into_iter().filter(|&s| s != 0x00ff).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn every_rustls_suite_is_named_and_reported() {
        let ec = self_signed_pki(&rcgen::PKCS_ECDSA_P256_SHA256, &["watch.kidcloud.example"]);
        let rsa = self_signed_pki(&rcgen::PKCS_RSA_SHA256, &["watch.kidcloud.example"]);
        for suite in rustls::crypto::ring::ALL_CIPHER_SUITES {
            let tls13 = suite.tls13().is_some();
            let versions: &[&'static rustls::SupportedProtocolVersion] = if tls13 {
                &[&rustls::version::TLS13]
            } else {
                &[&rustls::version::TLS12]
            };
            let name = rustls_name(suite.suite());
            let pkis: Vec<&Pki> = if tls13 {
                vec![&ec, &rsa]
            } else if name.contains("ECDSA") {
                vec![&ec]
            } else {
                vec![&rsa]
            };
            for pki in pkis {
                let h = handshake(pki, versions, Some(vec![*suite]), None);
                let info = sniffed(&h.server_bytes);
                assert_eq!(info.cipher_suite, u16::from(suite.suite()), "{name}");
                assert_eq!(info.cipher_suite_name(), Some(name.as_str()));
                assert!(!cipher_suite_is_weak(info.cipher_suite), "{name}");
                assert_eq!(info.version, h.version);
                if tls13 {
                    assert_eq!((info.certificate.clone(), info.chain_len), (None, 0));
                } else {
                    let c = info.certificate.clone().unwrap();
                    assert!(c.self_signed);
                    assert_eq!(c.subject_cn, c.issuer_cn);
                    let want = if std::ptr::eq(pki, &rsa) {
                        "RSA 2048"
                    } else {
                        "EC P-256"
                    };
                    assert_eq!(c.key_algorithm, want);
                }
            }
        }
    }

    #[test]
    fn tls13_server_hello_has_no_clear_certificate() {
        let pki = self_signed_pki(&rcgen::PKCS_ED25519, &["watch.kidcloud.example"]);
        let h = handshake(&pki, &[&rustls::version::TLS13], None, None);
        assert_eq!(h.version, 0x0304);
        let info = sniffed(&h.server_bytes);
        assert_eq!(info.version, 0x0304);
        assert_eq!(info.cipher_suite, u16::from(h.suite));
        assert_eq!(info.certificate, None);
        assert_eq!(info.chain_len, 0);
        let full = ServerSniff::Tls(Ok(info));
        assert_prefixes_consistent(&h.server_bytes, &full);
        // The legacy version field says TLS 1.2; only the extension says 1.3.
        assert_eq!(&h.server_bytes[9..11], &[0x03, 0x03]);
        for size in [1, 5, 64] {
            assert_eq!(sniff_server_hello(&rerecord(&h.server_bytes, size)), full);
        }
        // Both versions allowed: rustls picks 1.3.
        let both = handshake(
            &pki,
            &[&rustls::version::TLS13, &rustls::version::TLS12],
            None,
            None,
        );
        assert_eq!(sniffed(&both.server_bytes).version, 0x0304);
    }

    #[test]
    fn certificate_fields() {
        let names = ["a.kidcloud.example", "b.kidcloud.example", "*.c.example"];
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut p = leaf_params("Watch Backend", &names);
        p.not_before = rcgen::date_time_ymd(1999, 1, 2); // UTCTime 19xx
        p.not_after = rcgen::date_time_ymd(2061, 5, 6); // GeneralizedTime
        let cert = p.self_signed(&key).unwrap();
        let c = certificate_info(cert.der()).unwrap();
        assert_eq!(c.subject_cn.as_deref(), Some("Watch Backend"));
        assert_eq!(c.issuer_cn.as_deref(), Some("Watch Backend"));
        assert_eq!(c.dns_names, names);
        assert!(c.self_signed);
        assert_eq!(c.key_algorithm, "Ed25519");
        assert_eq!(c.not_before_unix, unix(1999, 1, 2));
        assert_eq!(c.not_after_unix, unix(2061, 5, 6));
        assert_eq!(c.sha256.len(), 64);
        for (alg, want) in [
            (&rcgen::PKCS_ECDSA_P384_SHA384, "EC P-384"),
            (&rcgen::PKCS_RSA_SHA256, "RSA 2048"),
        ] {
            let k = key_for(alg);
            let cert = leaf_params("x", &["x.example"]).self_signed(&k).unwrap();
            assert_eq!(certificate_info(cert.der()).unwrap().key_algorithm, want);
        }
        // No CN, no SAN.
        let mut bare = CertificateParams::new(Vec::<String>::new()).unwrap();
        bare.distinguished_name = rcgen::DistinguishedName::new();
        bare.distinguished_name
            .push(DnType::OrganizationName, "Nobody");
        let c = certificate_info(bare.self_signed(&key).unwrap().der()).unwrap();
        assert_eq!((c.subject_cn, c.dns_names.len()), (None, 0));
        // Trailing bytes and truncations are errors.
        let mut der = cert.der().to_vec();
        der.push(0);
        assert!(certificate_info(&der).is_err());
        der.pop();
        for cut in 0..der.len() {
            assert!(certificate_info(&der[..cut]).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn cipher_suite_table_matches_iana_names() {
        let mut prev = None;
        let mut compared = 0;
        for &(id, name) in CIPHER_SUITES {
            assert!(prev < Some(id), "table not sorted at 0x{id:04x}");
            prev = Some(id);
            assert_eq!(cipher_suite_name(id), Some(name));
            // rustls carries the IANA registry's names; compare where it knows the id.
            let r = rustls_name(rustls::CipherSuite::from(id));
            if !r.starts_with("CipherSuite(") {
                assert_eq!(r, name, "0x{id:04x}");
                compared += 1;
            }
        }
        assert!(compared >= 20, "{compared}");
        assert_eq!(
            cipher_suite_name(0xc02f),
            Some("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
        );
        assert_eq!(cipher_suite_name(0xfefe), None);
        let weak = [
            0x0000, 0x0002, 0x0003, 0x0005, 0x000a, 0x0018, 0x002f, 0x0035, 0xc011, 0xc012, 0xc018,
        ];
        for id in weak {
            assert!(cipher_suite_is_weak(id), "0x{id:04x}");
        }
        let strong = [
            0x1301, 0x1302, 0x1303, 0xc02b, 0xc030, 0xcca8, 0xc013, 0x009c, 0x003c, 0x00ff,
        ];
        for id in strong {
            assert!(!cipher_suite_is_weak(id), "0x{id:04x}");
        }
        assert!(!cipher_suite_is_weak(0xfefe));
    }

    #[test]
    fn alerts() {
        // A TLS 1.2-only server refuses a TLS 1.3-only client with a clear alert.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let pki = self_signed_pki(&rcgen::PKCS_ECDSA_P256_SHA256, &["watch.kidcloud.example"]);
        let server_cfg = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                pki.chain.clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.key.clone())),
            )
            .unwrap();
        let client_cfg = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let mut server = ServerConnection::new(Arc::new(server_cfg)).unwrap();
        let name = ServerName::try_from("watch.kidcloud.example").unwrap();
        let mut client = ClientConnection::new(Arc::new(client_cfg), name).unwrap();
        let mut up = Vec::new();
        client.write_tls(&mut up).unwrap();
        server.read_tls(&mut &up[..]).unwrap();
        assert!(server.process_new_packets().is_err());
        let mut down = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut down).unwrap();
        }
        let (level, desc) = find_alert(&down).expect("alert");
        assert_eq!(level, 2);
        assert_eq!(alert_name(desc), "protocol_version");
        let ServerSniff::Tls(Err(e)) = sniff_server_hello(&down) else {
            panic!()
        };
        assert!(e.contains("protocol_version"), "{e}");
        for cut in 0..down.len() {
            assert_eq!(sniff_server_hello(&down[..cut]), ServerSniff::NeedMore);
        }
        // After a handshake: no clear alert in a normal TLS 1.2 flight.
        let h = handshake(&pki, &[&rustls::version::TLS12], None, None);
        assert_eq!(find_alert(&h.server_bytes), None);
        let mut with_alert = h.server_bytes.clone();
        with_alert.extend_from_slice(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00]);
        assert_eq!(find_alert(&with_alert), Some((1, 0)));
        assert_eq!(find_alert(b"HTTP/1.1 200 OK\r\n"), None);
        // Names agree with rustls's (CamelCase) enum.
        let mut named = 0;
        for d in 0..=255u8 {
            let n = alert_name(d);
            let r = rustls::AlertDescription::from(d);
            // rustls spells 121 out (`EncryptedClientHelloRequired`); IANA: ech_required.
            if n.starts_with("alert ")
                || format!("{r:?}").starts_with("AlertDescription(")
                || d == 121
            {
                continue;
            }
            // Same words, ignoring case and underscores (rustls writes `UnknownCA`)
            // and spelling (rustls writes `UnrecognisedName`).
            let plain = n.replace('_', "");
            assert!(
                format!("{r:?}")
                    .replace("ognised", "ognized")
                    .eq_ignore_ascii_case(&plain),
                "{d}: {r:?} vs {n}"
            );
            named += 1;
        }
        assert!(named >= 30, "{named}");
    }

    #[test]
    fn server_sniff_of_garbage_never_panics() {
        assert_eq!(sniff_server_hello(b""), ServerSniff::NeedMore);
        assert_eq!(
            sniff_server_hello(b"[3G*1234567890*0002*LK]"),
            ServerSniff::NotTls
        );
        assert_eq!(sniff_server_hello(b"HTTP/1.1 200 OK"), ServerSniff::NotTls);
        assert_eq!(sniff_server_hello(&[0x16]), ServerSniff::NeedMore);
        assert_eq!(sniff_server_hello(&[0x16, 0x02]), ServerSniff::NotTls);
        // A ClientHello is not a ServerHello.
        assert!(matches!(
            sniff_server_hello(&hello(Some("a.example"), &[0x0304])),
            ServerSniff::Tls(Err(_))
        ));
        let mut seed = 0x2545_f491_u32;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for _ in 0..3000 {
            let len = (rnd() % 300) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
            if b.len() > 2 && rnd() % 2 == 0 {
                b[0] = 0x16;
                b[1] = 0x03;
            }
            let _ = sniff_server_hello(&b);
            let _ = find_alert(&b);
            let _ = certificate_info(&b);
        }
        let pki = ca_signed_pki(&rcgen::PKCS_ECDSA_P256_SHA256, &["watch.kidcloud.example"]);
        let h = handshake(&pki, &[&rustls::version::TLS12], None, None);
        for i in 0..h.server_bytes.len().min(1500) {
            let mut c = h.server_bytes.clone();
            c[i] ^= (rnd() as u8) | 1;
            let _ = sniff_server_hello(&c);
            let _ = find_alert(&c);
        }
        let der = pki.chain[0].to_vec();
        for i in 0..der.len() {
            for _ in 0..4 {
                let mut c = der.clone();
                c[i] = rnd() as u8;
                let _ = certificate_info(&c);
            }
        }
    }
}

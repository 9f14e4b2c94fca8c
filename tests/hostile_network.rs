//! Hostile input from the device under test and its cloud: property tests of the
//! parsers on the network side and of the rig configuration loader.
//!
//! - TLS records (`gateway::tlsinfo`): arbitrary bytes, every truncation of a real
//!   ClientHello and ServerHello made by rustls in this process, and mutations of
//!   them (length fields set to 0xFFFF, byte flips, re-cut records).
//! - The personal-data scanner (`gateway::pii`): adversarial token streams in
//!   arbitrary chunks; the forged-certificate cache of `gateway::intercept`, which
//!   grows with the names a device asks for.
//! - The backend HTTP driver (`drivers::backend_http`) against small hostile TCP
//!   servers on 127.0.0.1: endless and 100 MB bodies, a huge header, garbage status
//!   line, silence, a close mid-response, invalid and deeply nested JSON.
//! - The configuration loader (`config::load_rig`): mutations of the shipped rig
//!   files and device profile written to a temporary directory, deep nesting, huge
//!   scalars, an alias bomb, non-UTF-8 bytes. Every error must name its file and a
//!   line.
//!
//! Cases per property: `REDRIG_FUZZ_CASES` (default 256), so that CI stays within a
//! few seconds per property on a debug build and a longer fuzz can be run locally:
//!
//! ```text
//! REDRIG_FUZZ_CASES=20000 cargo test -p redrig --test hostile_network --release
//! ```
//!
//! Failure persistence is off: nothing is written into the source tree. A failing
//! case is printed (shrunk) in the test output instead.

use proptest::prelude::*;
use proptest::sample::Index;
use redrig::config::{self, ConfigError, ConfigErrors};
use redrig::drivers::backend_http::{HttpBackend, HttpBackendConfig, MAX_BODY, MAX_EXCHANGE};
use redrig::drivers::Backend;
use redrig::gateway::pii::{PiiFinding, PiiNeedles, PiiScanner};
use redrig::gateway::tlsinfo::{
    client_hello_cipher_suites, find_alert, sniff_client_hello, sniff_server_hello, ServerSniff,
    Sniff,
};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------------------------
// Configuration of the property runs
// ---------------------------------------------------------------------------------

/// Cases per property: `REDRIG_FUZZ_CASES`, default 256.
fn cases() -> u32 {
    std::env::var("REDRIG_FUZZ_CASES")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|&n: &u32| n > 0)
        .unwrap_or(256)
}

/// `cases() / divisor` cases (at least 1), no persistence.
fn fuzz(divisor: u32) -> ProptestConfig {
    ProptestConfig {
        cases: (cases() / divisor).max(1),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------
// TLS: real hellos from rustls
// ---------------------------------------------------------------------------------

const SNI: &str = "watch.kidcloud.example";

struct RealTls {
    /// The client's first flight: one record with the ClientHello.
    client_hello: Vec<u8>,
    /// The suites rustls offered, in order.
    offered: Vec<u16>,
    /// The server's first flight of a TLS 1.2 handshake (ServerHello, Certificate, …).
    server_flight: Vec<u8>,
    /// Negotiated version and suite.
    version: u16,
    suite: u16,
}

fn real_tls() -> &'static RealTls {
    static REAL: OnceLock<RealTls> = OnceLock::new();
    REAL.get_or_init(|| {
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let offered: Vec<u16> = provider
            .cipher_suites
            .iter()
            .map(|s| u16::from(s.suite()))
            .collect();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![SNI.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let server_cfg = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let client_cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut client =
            rustls::ClientConnection::new(Arc::new(client_cfg), ServerName::try_from(SNI).unwrap())
                .unwrap();
        let mut server = rustls::ServerConnection::new(Arc::new(server_cfg)).unwrap();
        let mut client_hello = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut client_hello).unwrap();
        }
        let mut rd = &client_hello[..];
        while !rd.is_empty() {
            server.read_tls(&mut rd).unwrap();
        }
        server.process_new_packets().unwrap();
        let mut server_flight = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut server_flight).unwrap();
        }
        let version = u16::from(server.protocol_version().unwrap());
        let suite = u16::from(server.negotiated_cipher_suite().unwrap().suite());
        RealTls {
            client_hello,
            offered,
            server_flight,
            version,
            suite,
        }
    })
}

/// The handshake payload of `records`, re-cut into records of the given sizes
/// (cycled).
fn recut(records: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut hs = Vec::new();
    let mut pos = 0;
    while let Some(h) = records.get(pos..pos + 5) {
        let len = u16::from_be_bytes([h[3], h[4]]) as usize;
        hs.extend_from_slice(&records[pos + 5..pos + 5 + len]);
        pos += 5 + len;
    }
    let mut out = Vec::new();
    let mut rest = &hs[..];
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        out.extend_from_slice(&[0x16, 0x03, 0x03]);
        out.extend_from_slice(&(n as u16).to_be_bytes());
        out.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        i += 1;
    }
    out
}

/// Run every TLS parser over `data` and check that what they return is bounded by
/// the input (no value made up beyond the record).
fn all_tls_parsers(data: &[u8]) {
    match sniff_client_hello(data) {
        Sniff::Tls(Ok(h)) => {
            if let Some(sni) = &h.sni {
                assert!(sni.chars().count() <= 255, "SNI of {} chars", sni.len());
            }
            assert!(h.alpn.len() <= 16);
            assert!(h.versions.len() <= data.len() / 2 + 1);
            let alpn_bytes: usize = h.alpn.iter().map(|a| a.len()).sum();
            // Lossy UTF-8 turns one byte into at most 3.
            assert!(alpn_bytes <= 3 * data.len());
        }
        Sniff::Tls(Err(e)) => assert!(!e.is_empty()),
        Sniff::NeedMore | Sniff::NotTls => {}
    }
    if let Ok(Some(suites)) = client_hello_cipher_suites(data) {
        assert!(suites.len() <= data.len() / 2);
    }
    if let ServerSniff::Tls(Ok(info)) = sniff_server_hello(data) {
        if let Some(c) = &info.certificate {
            assert!(c.dns_names.iter().map(|n| n.len()).sum::<usize>() <= 3 * data.len());
        }
        assert!(info.chain_len <= data.len() / 3);
    }
    if let Some((level, desc)) = find_alert(data) {
        let alert = [0x15, 0x03];
        let found = data
            .windows(7)
            .any(|w| w[..2] == alert && w[3..5] == [0, 2] && w[5] == level && w[6] == desc);
        assert!(found, "alert ({level}, {desc}) not in the bytes");
    }
}

#[test]
fn real_client_hello_parses_with_sni_and_suites() {
    let t = real_tls();
    match sniff_client_hello(&t.client_hello) {
        Sniff::Tls(Ok(h)) => {
            assert_eq!(h.sni.as_deref(), Some(SNI));
            assert!(h.versions.contains(&0x0303), "{:?}", h.versions);
        }
        other => panic!("{other:?}"),
    }
    let suites = client_hello_cipher_suites(&t.client_hello)
        .unwrap()
        .unwrap();
    // rustls offers the TLS 1.2 suites here (plus the renegotiation signal 0x00ff).
    let suites: Vec<u16> = suites.into_iter().filter(|&s| s != 0x00ff).collect();
    let want: Vec<u16> = t
        .offered
        .iter()
        .copied()
        .filter(|s| suites.contains(s))
        .collect();
    assert!(!suites.is_empty());
    assert_eq!(suites, want, "suites in rustls' order");
    assert!(suites.iter().all(|s| t.offered.contains(s)));
}

#[test]
fn every_truncation_of_a_real_client_hello_needs_more() {
    let hello = &real_tls().client_hello;
    for cut in 0..hello.len() {
        let part = &hello[..cut];
        assert_eq!(sniff_client_hello(part), Sniff::NeedMore, "cut {cut}");
        assert_eq!(client_hello_cipher_suites(part), Ok(None), "cut {cut}");
    }
}

#[test]
fn every_truncation_of_a_real_server_flight_is_need_more_or_the_answer() {
    let t = real_tls();
    let full = sniff_server_hello(&t.server_flight);
    let info = match &full {
        ServerSniff::Tls(Ok(i)) => i.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(info.version, t.version);
    assert_eq!(info.cipher_suite, t.suite);
    let cert = info.certificate.expect("leaf certificate in clear text");
    assert_eq!(cert.dns_names, vec![SNI.to_string()]);
    let mut decided_at = None;
    for cut in 0..=t.server_flight.len() {
        let r = sniff_server_hello(&t.server_flight[..cut]);
        if r == ServerSniff::NeedMore {
            assert!(decided_at.is_none(), "NeedMore at {cut} after an answer");
        } else {
            assert_eq!(r, full, "cut {cut}");
            decided_at.get_or_insert(cut);
        }
    }
    assert!(decided_at.is_some());
}

#[test]
fn every_length_field_set_to_ffff_never_panics() {
    let t = real_tls();
    for base in [&t.client_hello, &t.server_flight] {
        for i in 0..base.len().saturating_sub(1) {
            let mut m = base.clone();
            m[i] = 0xff;
            m[i + 1] = 0xff;
            all_tls_parsers(&m);
            // And the 24-bit handshake lengths.
            if i + 2 < m.len() {
                m[i + 2] = 0xff;
                all_tls_parsers(&m);
            }
            // A record that claims more than it has.
            all_tls_parsers(&m[..m.len() / 2]);
        }
    }
}

proptest! {
    #![proptest_config(fuzz(1))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        all_tls_parsers(&data);
    }

    #[test]
    fn arbitrary_records_never_panic(
        records in proptest::collection::vec(
            (prop_oneof![Just(0x16u8), Just(0x15), Just(0x14), Just(0x17), any::<u8>()],
             prop_oneof![Just(0x03u8), any::<u8>()],
             proptest::collection::vec(any::<u8>(), 0..300),
             any::<Option<u16>>()),
            0..8)
    ) {
        // Records with plausible headers, some with a lying length.
        let mut data = Vec::new();
        for (ty, major, body, lie) in &records {
            data.extend_from_slice(&[*ty, *major, 0x03]);
            let len = lie.unwrap_or(body.len() as u16);
            data.extend_from_slice(&len.to_be_bytes());
            data.extend_from_slice(body);
        }
        all_tls_parsers(&data);
    }

    #[test]
    fn mutated_real_hellos_never_panic(
        server in any::<bool>(),
        edits in proptest::collection::vec((any::<Index>(), any::<u8>(), 0u8..4), 1..8),
        cut in any::<Index>(),
    ) {
        let t = real_tls();
        let mut m = if server { t.server_flight.clone() } else { t.client_hello.clone() };
        for (at, v, how) in &edits {
            let i = at.index(m.len());
            match how {
                0 => m[i] = *v,
                1 => m[i] ^= 1 << (v % 8),
                2 => {
                    m[i] = 0xff;
                    if let Some(b) = m.get_mut(i + 1) {
                        *b = 0xff;
                    }
                }
                _ => {
                    m[i] = 0;
                    if let Some(b) = m.get_mut(i + 1) {
                        *b = 0;
                    }
                }
            }
        }
        all_tls_parsers(&m);
        all_tls_parsers(&m[..cut.index(m.len() + 1)]);
    }

    #[test]
    fn real_hellos_recut_into_any_records_parse_the_same(
        sizes in proptest::collection::vec(1usize..400, 1..6)
    ) {
        let t = real_tls();
        let c = recut(&t.client_hello, &sizes);
        prop_assert_eq!(sniff_client_hello(&c), sniff_client_hello(&t.client_hello));
        prop_assert_eq!(
            client_hello_cipher_suites(&c),
            client_hello_cipher_suites(&t.client_hello)
        );
        let s = recut(&t.server_flight, &sizes);
        prop_assert_eq!(sniff_server_hello(&s), sniff_server_hello(&t.server_flight));
        // Cut anywhere: not yet known, or the same answer.
        let full = sniff_server_hello(&s);
        for cut in (0..s.len()).step_by(37) {
            let r = sniff_server_hello(&s[..cut]);
            prop_assert!(r == ServerSniff::NeedMore || r == full, "cut {}: {:?}", cut, r);
        }
    }
}

// ---------------------------------------------------------------------------------
// Personal-data scanner
// ---------------------------------------------------------------------------------

fn needles() -> PiiNeedles {
    PiiNeedles {
        positions: vec![(52.520008, 13.404954), (-33.8688, 151.2093)],
        phone_numbers: vec!["+4915112345678".into(), "+12025550123".into()],
        imeis: vec!["861234567890127".into()],
        other: vec![
            ("name".into(), b"Mia Schmidt".to_vec()),
            ("a".into(), b"aa".to_vec()),
            ("aaaa".into(), b"aaaa".to_vec()),
        ],
    }
}

/// Pieces that come close to what the scanner looks for.
fn pii_token() -> impl Strategy<Value = Vec<u8>> {
    let fixed: Vec<&'static [u8]> = vec![
        b"52.520008",
        b"13.404954",
        b"52.5201",
        b"-33.8688",
        b"151.2093",
        b",",
        b",N,",
        b",S,",
        b",E,",
        b",W,",
        b"\"lat\":",
        b"\"lon\":",
        b"lat=",
        b"&lng=",
        b"<lat>",
        b"</lat><lon>",
        b"5231.2005,N,01324.2972,E",
        b"+4915112345678",
        b"004915112345678",
        b"015112345678",
        b"2025550123",
        b"861234567890127",
        b"8612345678901270",
        b"*TK,",
        b"*JXTK,",
        b"]",
        b"[",
        b"#!AMR\n",
        b"#!AMR-WB\n",
        b"RIFF\x00\x00\x00\x00WAVE",
        b"WAVE",
        b"OggS\x00",
        b"ID3\x03",
        b"Mia Schmidt",
        b"Mia Schmid",
        b"aaa",
        b".",
        b"-",
        b" ",
        b"\n",
        b"9999999999999999999999999999999999",
        b"0.000",
        b"1e308",
    ];
    prop_oneof![
        3 => proptest::sample::select(fixed).prop_map(|b| b.to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..12),
        1 => proptest::collection::vec(b'0'..=b'9', 1..30),
    ]
}

/// Scan `data` cut into chunks of the given sizes (cycled): the findings, the bytes
/// the scanner says it read, and how many distinct (kind, value) it counted.
fn scan_chunked(data: &[u8], chunks: &[usize]) -> (Vec<PiiFinding>, u64, usize) {
    let mut s = PiiScanner::new(needles());
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = chunks[i % chunks.len()].clamp(1, rest.len());
        out.extend(s.feed(&rest[..n]));
        rest = &rest[n..];
        i += 1;
    }
    let scanned = s.bytes_scanned();
    out.extend(s.finish());
    (out, scanned, s.counts().len())
}

fn key(f: &PiiFinding) -> (u64, String, String) {
    (f.offset, format!("{:?}", f.kind), f.detail.clone())
}

proptest! {
    #![proptest_config(fuzz(2))]

    #[test]
    fn pii_scanner_adversarial_streams(
        tokens in proptest::collection::vec(pii_token(), 0..300),
        chunks in proptest::collection::vec(1usize..64, 1..8),
    ) {
        let data: Vec<u8> = tokens.concat();
        let (whole, scanned_whole, distinct) = scan_chunked(&data, &[usize::MAX]);
        let (split, scanned_split, _) = scan_chunked(&data, &chunks);
        prop_assert_eq!(scanned_whole, data.len() as u64);
        prop_assert_eq!(scanned_split, data.len() as u64);
        let mut a: Vec<_> = whole.iter().map(key).collect();
        let mut b: Vec<_> = split.iter().map(key).collect();
        a.sort();
        b.sort();
        prop_assert_eq!(a, b, "findings depend on how the stream was cut");
        for f in &whole {
            prop_assert!(f.offset < data.len() as u64);
            prop_assert!(f.excerpt.chars().count() <= 80);
        }
        // One finding per (kind, value): at most one per needle and per audio format
        // (AMR, AMR-WB, WAV, Ogg, MP3, and the TK and JXTK voice frames).
        prop_assert_eq!(whole.len(), distinct);
        let n = needles();
        let most = n.positions.len() + n.phone_numbers.len() + n.imeis.len() + n.other.len() + 7;
        prop_assert!(distinct <= most, "{} distinct findings", distinct);
    }

    #[test]
    fn pii_scanner_arbitrary_bytes(
        data in proptest::collection::vec(any::<u8>(), 0..4096),
        chunk in 1usize..700,
    ) {
        let (found, scanned, _) = scan_chunked(&data, &[chunk]);
        prop_assert_eq!(scanned, data.len() as u64);
        prop_assert!(found.iter().all(|f| f.offset < data.len() as u64));
    }
}

/// Several megabytes of near-misses (unterminated numbers, endless digit runs,
/// a voice frame that never ends, needles repeated): the scanner's counters show it
/// read each byte once, and what it keeps is one count per (kind, value).
#[test]
fn pii_scanner_large_adversarial_stream_is_counted_once() {
    let mut s = PiiScanner::new(needles());
    let patterns: [&[u8]; 5] = [
        b"52.520008,13.404954;",
        b"1234567890123456789012345678901234567890",
        b"*TK,",
        b"aaaaaaaaaaaaaaaaaaaa",
        b"+4915112345678 ",
    ];
    let mut total = 0u64;
    let mut found = Vec::new();
    for round in 0..2000 {
        let p = patterns[round % patterns.len()];
        let chunk: Vec<u8> = p.iter().copied().cycle().take(1000 + round % 7).collect();
        total += chunk.len() as u64;
        found.extend(s.feed(&chunk));
        assert_eq!(s.bytes_scanned(), total);
    }
    found.extend(s.finish());
    let counts = s.counts();
    assert!(counts.len() <= 12, "{} distinct counts", counts.len());
    assert!(found.len() <= counts.len());
    // Every needle occurrence was counted (not only the first).
    let pos = counts
        .iter()
        .find(|c| c.value.starts_with("52.52"))
        .expect("position counted");
    assert!(pos.count > 1000, "{}", pos.count);
}

// ---------------------------------------------------------------------------------
// Forged certificates: one per name the device asks for, kept in a bounded cache
// ---------------------------------------------------------------------------------

#[test]
fn forged_certificate_cache_is_bounded() {
    use redrig::gateway::intercept::{ForgedCert, Forger, FORGED_CACHE_MAX};
    let f = Forger::new().unwrap();
    let first = f
        .certified_key(ForgedCert::SelfSigned, "watch.kidcloud.example")
        .unwrap();
    let again = f
        .certified_key(ForgedCert::SelfSigned, "watch.kidcloud.example")
        .unwrap();
    assert!(Arc::ptr_eq(&first, &again), "cached");
    for i in 0..FORGED_CACHE_MAX + 10 {
        f.certified_key(ForgedCert::UntrustedCa, &format!("h{i}.example"))
            .unwrap();
        assert!(f.cached() <= FORGED_CACHE_MAX, "{} cached", f.cached());
    }
    assert!(f.cached() >= 1);
}

// ---------------------------------------------------------------------------------
// Backend HTTP driver against hostile servers
// ---------------------------------------------------------------------------------

/// What a hostile server does once it has read the request head.
#[derive(Clone, Copy, Debug)]
enum Hostile {
    EndlessChunkedBody,
    Body100Mb,
    HugeHeader,
    ManyHeaders,
    GarbageStatus,
    Silent,
    CloseMidHeaders,
    CloseMidBody,
    InvalidJson,
    DeepJson,
    EndlessDeviceAnswer,
}

/// Serve one connection the hostile way; returns the bytes it managed to write.
async fn hostile_conn(mut s: TcpStream, how: Hostile) -> u64 {
    // Read the request head (bounded).
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    if !matches!(how, Hostile::EndlessDeviceAnswer) {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return 0,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    }
    let mut written = 0u64;
    macro_rules! send {
        ($b:expr) => {
            // `match` keeps a temporary (a formatted head) alive while it is written.
            match $b {
                b => {
                    let b: &[u8] = b;
                    if s.write_all(b).await.is_err() {
                        return written;
                    }
                    written += b.len() as u64;
                }
            }
        };
    }
    let block = vec![b'x'; 64 * 1024];
    match how {
        Hostile::EndlessChunkedBody => {
            send!(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
            loop {
                send!(format!("{:x}\r\n", block.len()).as_bytes());
                send!(&block);
                send!(b"\r\n");
            }
        }
        Hostile::Body100Mb => {
            send!(b"HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\n\r\n");
            for _ in 0..(100 * 1024 * 1024 / block.len()) {
                send!(&block);
            }
        }
        Hostile::HugeHeader => {
            send!(b"HTTP/1.1 200 OK\r\nX-Huge: ");
            for _ in 0..(64 * 1024 * 1024 / block.len()) {
                send!(&block);
            }
        }
        Hostile::ManyHeaders => {
            send!(b"HTTP/1.1 200 OK\r\n");
            for i in 0..1_000_000u32 {
                send!(format!("X-{i}: y\r\n").as_bytes());
            }
        }
        Hostile::GarbageStatus => {
            send!(b"\x00\xffSMTP ready \x1b[31m\r\n\r\nHTTP/1.1 200 OK\r\n\r\n");
        }
        Hostile::Silent => {
            // Say nothing; wait (bounded) for the client to give up and close.
            let _ = tokio::time::timeout(Duration::from_secs(30), async {
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            })
            .await;
        }
        Hostile::CloseMidHeaders => {
            send!(b"HTTP/1.1 200 OK\r\nContent-Le");
        }
        Hostile::CloseMidBody => {
            send!(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{\"token\": \"ab");
        }
        Hostile::InvalidJson => {
            let body = b"{\"token\": [1, 2,, \xff\xfe }";
            send!(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
            send!(body);
        }
        Hostile::DeepJson => {
            let depth = 200_000;
            let mut body = vec![b'['; depth];
            body.extend(std::iter::repeat_n(b']', depth));
            send!(format!(
                "HTTP/1.1 201 Created\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes());
            send!(&body);
        }
        Hostile::EndlessDeviceAnswer => loop {
            send!(&block);
        },
    }
    let _ = s.shutdown().await;
    written
}

/// A hostile server on 127.0.0.1 for one connection; the join handle yields the
/// bytes it wrote.
async fn hostile_server(how: Hostile) -> (String, tokio::task::JoinHandle<u64>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let h = tokio::spawn(async move {
        match l.accept().await {
            Ok((s, _)) => hostile_conn(s, how).await,
            Err(_) => 0,
        }
    });
    (addr, h)
}

fn backend(addr: &str, timeout: Duration) -> HttpBackend {
    HttpBackend::new(HttpBackendConfig {
        base_url: "http://api.kidcloud.example:8080".into(),
        api_addr: addr.to_string(),
        ca: None,
        device_host: "watch.kidcloud.example".into(),
        device_addr: addr.to_string(),
        device_tls: false,
        timeout,
    })
    .unwrap()
}

/// One API request against a hostile server: the driver's answer and what the server
/// managed to write.
async fn against(
    how: Hostile,
    timeout: Duration,
) -> (Result<redrig::drivers::ApiResponse, String>, u64) {
    let (addr, server) = hostile_server(how).await;
    let b = backend(&addr, timeout);
    let body = serde_json::json!({"email": "parent@example.org"});
    let r = b
        .request("POST", "/v1/login", None, Some(&body))
        .await
        .map_err(|e| e.to_string());
    drop(b);
    // The driver has dropped the connection: the server's next write fails.
    let written = tokio::time::timeout(Duration::from_secs(60), server)
        .await
        .map(|r| r.unwrap_or(0))
        .unwrap_or(u64::MAX);
    (r, written)
}

const LONG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn backend_endless_body_is_cut_at_the_body_limit() {
    let (r, written) = against(Hostile::EndlessChunkedBody, LONG).await;
    let e = r.expect_err("an endless body is an error");
    assert!(e.contains("limit"), "{e}");
    assert!(
        !e.contains("no complete answer"),
        "stopped by the limit, not the time-out: {e}"
    );
    assert!(written >= MAX_BODY as u64, "{written}");
    assert!(
        written < 64 * 1024 * 1024,
        "the driver kept reading: {written} bytes"
    );
}

#[tokio::test]
async fn backend_100_mb_body_is_refused_without_reading_it() {
    let (r, written) = against(Hostile::Body100Mb, LONG).await;
    let e = r.expect_err("a 100 MB body is over the limit");
    assert!(e.contains("limit"), "{e}");
    assert!(
        written < 64 * 1024 * 1024,
        "the driver kept reading: {written} bytes"
    );
}

#[tokio::test]
async fn backend_huge_header_is_an_error() {
    let (r, written) = against(Hostile::HugeHeader, LONG).await;
    let e = r.expect_err("a huge header is an error");
    assert!(e.contains("HTTP"), "{e}");
    assert!(written < 64 * 1024 * 1024, "{written}");
}

#[tokio::test]
async fn backend_endless_headers_are_an_error() {
    let (r, written) = against(Hostile::ManyHeaders, LONG).await;
    let e = r.expect_err("endless headers are an error");
    assert!(e.contains("HTTP"), "{e}");
    assert!(written < 64 * 1024 * 1024, "{written}");
}

#[tokio::test]
async fn backend_garbage_status_line_is_an_error() {
    let (r, _) = against(Hostile::GarbageStatus, LONG).await;
    let e = r.expect_err("garbage is not a response");
    assert!(e.contains("HTTP"), "{e}");
}

#[tokio::test]
async fn backend_silent_server_hits_the_drivers_time_out() {
    let (r, _) = against(Hostile::Silent, Duration::from_millis(300)).await;
    let e = r.expect_err("silence is an error");
    assert!(e.contains("no complete answer within"), "{e}");
}

#[tokio::test]
async fn backend_close_mid_response_is_an_error() {
    for how in [Hostile::CloseMidHeaders, Hostile::CloseMidBody] {
        let (r, _) = against(how, LONG).await;
        let e = r.expect_err("a cut response is an error");
        assert!(
            e.contains("HTTP") || e.contains("response body"),
            "{how:?}: {e}"
        );
        assert!(!e.contains("no complete answer"), "{how:?}: {e}");
    }
}

#[tokio::test]
async fn backend_invalid_and_deep_json_are_kept_as_bounded_text() {
    let (r, _) = against(Hostile::InvalidJson, LONG).await;
    let resp = r.expect("invalid JSON is still an answer");
    assert_eq!(resp.status, 200);
    match resp.body {
        serde_json::Value::String(s) => assert!(s.contains("token"), "{s}"),
        other => panic!("{other:?}"),
    }
    let (r, _) = against(Hostile::DeepJson, LONG).await;
    let resp = r.expect("deep JSON is still an answer");
    assert_eq!(resp.status, 201);
    match resp.body {
        serde_json::Value::String(s) => assert!(s.len() <= MAX_BODY, "{}", s.len()),
        other => panic!("deep JSON parsed: {}", other.to_string().len()),
    }
}

#[tokio::test]
async fn device_endpoint_endless_answer_is_bounded() {
    let (addr, server) = hostile_server(Hostile::EndlessDeviceAnswer).await;
    let b = backend(&addr, LONG);
    let out = b
        .device_endpoint_exchange(b"[3G*0000000000*0002*LK]", Duration::from_secs(30))
        .await
        .expect("the answer, cut");
    assert_eq!(out.len(), MAX_EXCHANGE);
    drop(b);
    let written = tokio::time::timeout(LONG, server).await.unwrap().unwrap();
    assert!(written < 64 * 1024 * 1024, "{written}");
}

// ---------------------------------------------------------------------------------
// Configuration loader
// ---------------------------------------------------------------------------------

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(fixtures().join(rel)).unwrap()
}

/// The reference profile with its relative paths made absolute, so that it can be
/// loaded from anywhere.
fn reference_profile() -> String {
    let f = fixtures();
    let text = read("devices/reference.yaml")
        .replace("../images/", &format!("{}/images/", f.display()))
        .replace("../certs/", &format!("{}/certs/", f.display()));
    assert!(!text.contains("../"), "reference profile changed shape");
    text
}

/// Load `rig` (and, if given, `profile`, referenced from the rig by absolute path)
/// from a fresh temporary directory. Checks that an error names one of the two files
/// and a line.
fn load(rig: &[u8], profile: Option<&[u8]>) -> Result<(), ConfigErrors> {
    let dir = tempfile::tempdir().unwrap();
    let rig_path = dir.path().join("rig.yaml");
    let prof_path = dir.path().join("profile.yaml");
    let rig = replace_bytes(rig, PROFILE, prof_path.to_str().unwrap().as_bytes());
    std::fs::write(&rig_path, rig).unwrap();
    if let Some(p) = profile {
        std::fs::write(&prof_path, p).unwrap();
    }
    let r = config::load_rig(&rig_path, None);
    if let Err(errors) = &r {
        assert!(!errors.is_empty());
        for e in errors.iter() {
            assert_located(e, &[&rig_path, &prof_path]);
        }
    }
    r.map(|_| ())
}

fn assert_located(e: &ConfigError, files: &[&Path]) {
    assert!(
        files.iter().any(|f| e.file == *f),
        "error names another file: {e}"
    );
    assert!(e.line >= 1 && e.column >= 1, "error without a line: {e}");
    let shown = e.to_string();
    assert!(
        shown.contains(&format!("{}:{}:", e.file.display(), e.line))
            || shown.contains(&format!("profile.yaml:{}:", e.line))
            || shown.contains(&format!("rig.yaml:{}:", e.line)),
        "not file:line: {shown}"
    );
}

/// Stands in a rig file for the absolute path of the profile next to it.
const PROFILE: &[u8] = b"@PROFILE@";

fn replace_bytes(text: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.windows(from.len()).position(|w| w == from) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(to);
        rest = &rest[i + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// The virtual rig file with its `device_profile` pointing at the profile that
/// [`load`] writes next to it.
fn rig_with_profile() -> String {
    let rig = read("rigs/virtual.yaml");
    assert!(rig.contains("device_profile: reference"));
    rig.replace(
        "device_profile: reference",
        &format!("device_profile: {}", String::from_utf8_lossy(PROFILE)),
    )
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipByte(Index, u8),
    DeleteLine(Index),
    DuplicateLine(Index),
    SwapLines(Index, Index),
    Truncate(Index),
    ReplaceValue(Index, String),
    InsertBytes(Index, Vec<u8>),
}

fn hostile_value() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(vec![
            "-1",
            "0",
            "1e309",
            "-1e309",
            ".nan",
            ".inf",
            "18446744073709551616",
            "-9223372036854775809",
            "~",
            "null",
            "[]",
            "{}",
            "[[[[]]]]",
            "\"\\u0000\"",
            "\"\"",
            "!!binary AAAA",
            "*nowhere",
            "&x 1",
            "!custom 3",
            "? a : b",
            "|",
            ">-",
            "'",
            "\"",
            "{a: 1, a: 2}",
            "lab:nothing",
            "lab:",
            "usb:",
            "0x7fffffff",
            "\"\u{202e}evil\"",
            "\t",
            "- - - x",
        ])
        .prop_map(String::from),
        "[ -~]{0,40}",
        (1usize..200_000).prop_map(|n| "y".repeat(n)),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::FlipByte(i, b)),
        any::<Index>().prop_map(Mutation::DeleteLine),
        any::<Index>().prop_map(Mutation::DuplicateLine),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), hostile_value()).prop_map(|(i, v)| Mutation::ReplaceValue(i, v)),
        (any::<Index>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Mutation::InsertBytes(i, b)),
    ]
}

fn apply(text: &[u8], muts: &[Mutation]) -> Vec<u8> {
    let mut t = text.to_vec();
    for m in muts {
        let mut lines: Vec<Vec<u8>> = t.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
        match m {
            Mutation::FlipByte(i, b) => {
                if !t.is_empty() {
                    let at = i.index(t.len());
                    t[at] ^= b | 1;
                }
                continue;
            }
            Mutation::Truncate(i) => {
                t.truncate(i.index(t.len() + 1));
                continue;
            }
            Mutation::InsertBytes(i, b) => {
                let at = i.index(t.len() + 1);
                t.splice(at..at, b.iter().copied());
                continue;
            }
            Mutation::DeleteLine(i) => {
                let at = i.index(lines.len());
                lines.remove(at);
            }
            Mutation::DuplicateLine(i) => {
                let at = i.index(lines.len());
                let l = lines[at].clone();
                lines.insert(at, l);
            }
            Mutation::SwapLines(a, b) => {
                let (a, b) = (a.index(lines.len()), b.index(lines.len()));
                lines.swap(a, b);
            }
            Mutation::ReplaceValue(i, v) => {
                let with_value: Vec<usize> = (0..lines.len())
                    .filter(|&k| lines[k].windows(2).any(|w| w == b": "))
                    .collect();
                if with_value.is_empty() {
                    continue;
                }
                let k = with_value[i.index(with_value.len())];
                let l = &lines[k];
                let colon = l.windows(2).position(|w| w == b": ").unwrap_or(0);
                let mut nl = l[..colon + 2].to_vec();
                nl.extend_from_slice(v.as_bytes());
                lines[k] = nl;
            }
        }
        t = lines.join(&b'\n');
    }
    t
}

#[test]
fn shipped_configurations_load_from_a_temporary_directory() {
    // The seeds of the mutations are valid as they are.
    load(read("rigs/virtual.yaml").as_bytes(), None).unwrap_or_else(|e| panic!("{e}"));
    load(read("rigs/pi-bench.yaml").as_bytes(), None).unwrap_or_else(|e| panic!("{e}"));
    load(
        rig_with_profile().as_bytes(),
        Some(reference_profile().as_bytes()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

proptest! {
    #![proptest_config(fuzz(4))]

    #[test]
    fn mutated_rig_files_never_panic_and_errors_are_located(
        physical in any::<bool>(),
        muts in proptest::collection::vec(mutation(), 1..5),
    ) {
        let seed = if physical { read("rigs/pi-bench.yaml") } else { read("rigs/virtual.yaml") };
        let m = apply(seed.as_bytes(), &muts);
        let _ = load(&m, None);
    }

    #[test]
    fn mutated_device_profiles_never_panic_and_errors_are_located(
        muts in proptest::collection::vec(mutation(), 1..5),
    ) {
        let rig = rig_with_profile();
        let m = apply(reference_profile().as_bytes(), &muts);
        let _ = load(rig.as_bytes(), Some(&m));
    }
}

#[test]
fn non_utf8_rig_file_error_names_the_line() {
    let mut rig = read("rigs/virtual.yaml").into_bytes();
    // Line 5 (`  kind: virtual`) gets an invalid byte.
    let line5: usize = rig
        .split(|&b| b == b'\n')
        .take(4)
        .map(|l| l.len() + 1)
        .sum();
    rig.insert(line5 + 3, 0xff);
    let errors = load(&rig, None).expect_err("not UTF-8");
    assert_eq!(errors.0[0].line, 5, "{errors}");
    assert!(errors.to_string().contains("UTF-8"), "{errors}");
}

#[test]
fn non_utf8_device_profile_error_names_the_file_and_line() {
    let rig = rig_with_profile();
    let mut prof = reference_profile().into_bytes();
    prof.extend_from_slice(b"# \xc3\x28 broken\n");
    let lines = prof.iter().filter(|&&b| b == b'\n').count();
    let errors = load(rig.as_bytes(), Some(&prof)).expect_err("not UTF-8");
    let e = errors
        .iter()
        .find(|e| e.file.ends_with("profile.yaml"))
        .unwrap_or_else(|| panic!("{errors}"));
    assert_eq!(e.line, lines, "{errors}");
}

#[test]
fn deeply_nested_yaml_is_refused_with_a_line() {
    let base = read("rigs/virtual.yaml");
    let depth = 200_000;
    let shapes = [
        // Block sequences, one per `- `.
        format!("{base}extra:\n  {}x\n", "- ".repeat(depth)),
        // Flow collections.
        format!("{base}extra: {}\n", "[".repeat(depth)),
        format!("{base}extra: {}\n", "{a: ".repeat(depth)),
        // Block mappings, one more indentation per line.
        {
            let mut s = base.clone();
            s.push_str("extra:\n");
            for i in 0..5000 {
                s.push_str(&" ".repeat(i + 1));
                s.push_str("k:\n");
            }
            s
        },
    ];
    let first_extra_line = base.lines().count() + 1;
    for text in shapes {
        let errors = load(text.as_bytes(), None).expect_err("deep nesting is refused");
        let e = errors
            .iter()
            .find(|e| e.message.contains("nested deeper than"))
            .unwrap_or_else(|| panic!("{errors}"));
        assert!(e.line >= first_extra_line, "{e}");
    }
}

#[test]
fn huge_scalars_are_errors_with_a_line() {
    let base = read("rigs/virtual.yaml");
    let huge = "n".repeat(8 * 1024 * 1024);
    let text = base.replace("name: virtual-lab", &format!("name: \"{huge}!\""));
    let errors = load(text.as_bytes(), None).expect_err("a name with `!` is invalid");
    assert!(errors.iter().any(|e| e.line == 3), "{}", errors.0[0].line);
    // A huge number.
    let text = base.replace("scale: 20", &format!("scale: 1{}", "0".repeat(100_000)));
    load(text.as_bytes(), None).expect_err("scale out of range");
}

/// Anchors and aliases nested 10 deep, 9 wide: 9^10 strings when expanded.
#[test]
fn yaml_alias_bomb_is_refused() {
    let mut bomb = String::from("anchors:\n  a0: &a0 [");
    bomb.push_str(&["\"lol\""; 9].join(", "));
    bomb.push_str("]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 9].join(", ");
        bomb.push_str(&format!("  a{i}: &a{i} [{refs}]\n"));
    }
    bomb.push_str("bomb: *a9\n");
    // The typed parse stops at the unknown key; the loader then reads the file as
    // an untyped YAML value to find its device profile, which is where the aliases
    // would be expanded.
    let text = format!("{bomb}{}", read("rigs/virtual.yaml"));
    let errors = load(text.as_bytes(), None).expect_err("alias bomb");
    assert!(
        errors
            .iter()
            .any(|e| e.line == 1 && e.message.contains("anchors")),
        "{errors}"
    );
}

// ---------------------------------------------------------------------------------
// TLS: the resumable ClientHello sniffer (work counted, not timed)
// ---------------------------------------------------------------------------------

use redrig::gateway::tlsinfo::{
    ClientHelloSniffer, ServerHelloSniffer, HELLO_OVER_LIMIT, SNIFF_LIMIT,
};

/// A ClientHello of exactly `hs_len` handshake bytes (type, length and body; at
/// least 64), offering TLS 1.3 and 1.2 for [`SNI`] and filled with a padding
/// extension, cut into handshake records of `record` payload bytes (the last one
/// shorter). `declared` overrides the handshake length field (a hello that claims
/// more than it sends).
fn padded_hello(hs_len: usize, record: usize, declared: Option<u32>) -> Vec<u8> {
    let mut exts = Vec::new();
    exts.extend_from_slice(&0u16.to_be_bytes());
    exts.extend_from_slice(&((SNI.len() + 5) as u16).to_be_bytes());
    exts.extend_from_slice(&((SNI.len() + 3) as u16).to_be_bytes());
    exts.push(0);
    exts.extend_from_slice(&(SNI.len() as u16).to_be_bytes());
    exts.extend_from_slice(SNI.as_bytes());
    exts.extend_from_slice(&[0, 43, 0, 5, 4, 0x03, 0x04, 0x03, 0x03]);
    // Fixed part: version, random, session id, suites, compression, extensions
    // length; then the extensions so far and the padding extension's header.
    let fixed = 4 + 2 + 32 + 1 + 4 + 2 + 2 + exts.len() + 4;
    assert!(hs_len >= fixed, "hello of {hs_len} bytes is too short");
    let pad = hs_len - fixed;
    exts.extend_from_slice(&21u16.to_be_bytes());
    exts.extend_from_slice(&(pad as u16).to_be_bytes());
    exts.resize(exts.len() + pad, 0);
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0x5a; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let len = declared.unwrap_or(body.len() as u32);
    let mut hs = vec![1];
    hs.extend_from_slice(&len.to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    assert_eq!(hs.len(), hs_len);
    let mut out = Vec::new();
    for part in hs.chunks(record) {
        out.extend_from_slice(&[0x16, 0x03, 0x01]);
        out.extend_from_slice(&(part.len() as u16).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// The largest handshake that fits in `wire` bytes when cut into records of
/// `record` payload bytes.
fn hs_fitting(wire: usize, record: usize) -> usize {
    let mut p = wire;
    while p + 5 * p.div_ceil(record) > wire {
        p -= 1;
    }
    p
}

/// What the sniffer must answer for everything in `data` pushed at once:
/// [`sniff_client_hello`] of the first [`SNIFF_LIMIT`] bytes, and a hello still
/// incomplete there is over the limit.
fn sniff_reference(data: &[u8]) -> Sniff {
    let kept = &data[..data.len().min(SNIFF_LIMIT)];
    match sniff_client_hello(kept) {
        Sniff::NeedMore if kept.len() >= SNIFF_LIMIT => Sniff::Tls(Err(HELLO_OVER_LIMIT.into())),
        v => v,
    }
}

/// Push `data` in pieces of `chunk` bytes. Returns the last verdict, the range of
/// the input in the piece with which the verdict was first known, and the
/// sniffer's work.
fn sniff_in_chunks(data: &[u8], chunk: usize) -> (Sniff, Option<(usize, usize)>, u64) {
    let mut s = ClientHelloSniffer::new();
    let mut v = Sniff::NeedMore;
    let mut decided = None;
    let mut pushed = 0;
    for piece in data.chunks(chunk.max(1)) {
        v = s.push(piece);
        assert!(s.held().len() <= SNIFF_LIMIT);
        if v != Sniff::NeedMore && decided.is_none() {
            decided = Some((pushed, pushed + piece.len()));
        }
        pushed += piece.len();
    }
    (v, decided, s.work())
}

/// Work per byte allowed to the ClientHello and ServerHello sniffers. Each byte is
/// kept once, copied into the reassembled handshake once and parsed about once (a
/// ServerHello a few times), and a record header is read once: at most about 4 per
/// byte (measured: 2.3 to 4 for 64 KiB). Re-parsing the whole buffer on each push
/// makes it grow with the input: about n/2 per byte for n bytes pushed one at a
/// time (24,000 to 42,000 per byte at 64 KiB).
const SNIFF_WORK_PER_BYTE: u64 = 8;

/// A 64 KiB ClientHello arriving one byte at a time (a device can cut its hello
/// anywhere): the sniffer's work stays linear, in large records, in one-byte
/// records, for a hello that never completes before the limit, and for one that
/// claims a length it never sends.
#[test]
fn client_hello_sniffer_work_is_linear_one_byte_at_a_time() {
    let hs16 = hs_fitting(SNIFF_LIMIT, 16384);
    let hs1 = hs_fitting(SNIFF_LIMIT, 1);
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "64 KiB hello in 16 KiB records",
            padded_hello(hs16, 16384, None),
            true,
        ),
        (
            "hello in one-byte records",
            padded_hello(hs1, 1, None),
            true,
        ),
        (
            "hello one byte longer than the limit",
            padded_hello(hs16 + 1, 16384, None),
            false,
        ),
        (
            "hello claiming 64 KiB, then silence",
            padded_hello(hs16, 16384, Some(SNIFF_LIMIT as u32)),
            false,
        ),
    ];
    for (name, data, completes) in &cases {
        let n = data.len();
        assert!(n >= SNIFF_LIMIT - 16, "{name}: {n} bytes");
        let want = sniff_reference(data);
        if *completes {
            assert!(n <= SNIFF_LIMIT, "{name}");
            match &want {
                Sniff::Tls(Ok(h)) => {
                    assert_eq!(h.sni.as_deref(), Some(SNI), "{name}");
                    assert_eq!(h.versions, vec![0x0304, 0x0303], "{name}");
                }
                other => panic!("{name}: {other:?}"),
            }
        } else {
            assert_eq!(want, Sniff::Tls(Err(HELLO_OVER_LIMIT.into())), "{name}");
        }
        for chunk in [1usize, 7, 1500, n] {
            let (got, decided, work) = sniff_in_chunks(data, chunk);
            assert_eq!(got, want, "{name}, pieces of {chunk}");
            // Decided by the piece with the byte that completes the hello (or
            // reaches the limit).
            let last = n.min(SNIFF_LIMIT);
            assert!(
                decided.is_some_and(|(from, to)| from < last && last <= to),
                "{name}, pieces of {chunk}: decided in {decided:?}, not with byte {last}"
            );
            let limit = SNIFF_WORK_PER_BYTE * n as u64;
            if chunk == 1 {
                eprintln!("{name}: {n} bytes one at a time, work {work}");
            }
            assert!(
                work <= limit,
                "{name}, pieces of {chunk}: work {work} for {n} bytes (at most {limit})"
            );
        }
    }
}

/// The sniffer's contract: clear text and TLS decided by the first bytes, the same
/// verdict for good once known, at most [`SNIFF_LIMIT`] bytes kept.
#[test]
fn client_hello_sniffer_verdicts_are_final_and_bounded() {
    let mut s = ClientHelloSniffer::new();
    assert_eq!(s.push(b""), Sniff::NeedMore);
    assert_eq!(s.push(&[0x16]), Sniff::NeedMore);
    assert_eq!(s.push(&[0x03]), Sniff::NeedMore);
    assert_eq!(s.verdict(), None);
    let mut c = ClientHelloSniffer::new();
    assert_eq!(c.push(b"[3G*1234567890*0002*LK]"), Sniff::NotTls);
    assert_eq!(c.push(&real_tls().client_hello), Sniff::NotTls);
    assert_eq!(c.take_held(), b"[3G*1234567890*0002*LK]");
    // A hello followed by application data in the same read.
    let mut data = real_tls().client_hello.clone();
    data.extend_from_slice(&[0x17, 0x03, 0x03, 0, 1, 0]);
    let mut t = ClientHelloSniffer::new();
    let v = t.push(&data);
    assert!(matches!(v, Sniff::Tls(Ok(_))), "{v:?}");
    assert_eq!(t.push(b"more"), v);
    assert_eq!(t.verdict(), Some(&v));
    // One huge read: the limit, with the rest of the read not kept.
    let hs16 = hs_fitting(SNIFF_LIMIT, 16384);
    let mut big = padded_hello(hs16 + 1, 16384, None);
    big.extend_from_slice(&[0u8; 1000]);
    let mut b = ClientHelloSniffer::new();
    assert_eq!(b.push(&big), Sniff::Tls(Err(HELLO_OVER_LIMIT.into())));
    assert_eq!(b.held().len(), SNIFF_LIMIT);
}

/// Split points, sorted and deduplicated, inside `0..=len`.
fn sniff_cuts(len: usize, raw: &[usize]) -> Vec<usize> {
    let mut v: Vec<usize> = raw.iter().map(|r| r % (len + 1)).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Push `data` cut at `cuts` (empty pieces included); the last verdict, the bytes
/// pushed when it was first known, and the work.
fn sniff_pieces(data: &[u8], cuts: &[usize]) -> (Sniff, Option<usize>, u64) {
    let mut s = ClientHelloSniffer::new();
    let mut v = Sniff::NeedMore;
    let mut decided = None;
    let mut prev = 0;
    for &c in cuts.iter().chain([data.len()].iter()) {
        v = s.push(&data[prev..c]);
        if v != Sniff::NeedMore && decided.is_none() {
            decided = Some(c);
        }
        prev = c;
    }
    (v, decided, s.work())
}

/// Valid hellos: the real one from rustls re-cut into records of any sizes, and
/// padded ones of any length up to the limit in records of any size.
fn valid_hello() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(1usize..400, 1..6)
            .prop_map(|sizes| recut(&real_tls().client_hello, &sizes)),
        (1usize..=16384, 0usize..=4096).prop_map(|(record, extra)| {
            padded_hello(
                (100 + extra).min(hs_fitting(SNIFF_LIMIT, record)),
                record,
                None,
            )
        }),
        (prop_oneof![Just(16384usize), Just(1000), 1usize..64])
            .prop_map(|record| { padded_hello(hs_fitting(SNIFF_LIMIT, record), record, None) }),
    ]
}

/// Bytes a hostile device may send first: records with plausible or lying headers,
/// mutated real hellos, arbitrary bytes.
fn hostile_first_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..600),
        proptest::collection::vec(
            (
                prop_oneof![Just(0x16u8), Just(0x17), any::<u8>()],
                prop_oneof![Just(0x03u8), any::<u8>()],
                proptest::collection::vec(any::<u8>(), 0..300),
                any::<Option<u16>>(),
            ),
            0..8
        )
        .prop_map(|records| {
            let mut data = Vec::new();
            for (ty, major, body, lie) in &records {
                data.extend_from_slice(&[*ty, *major, 0x01]);
                data.extend_from_slice(&lie.unwrap_or(body.len() as u16).to_be_bytes());
                data.extend_from_slice(body);
            }
            data
        }),
        (
            valid_hello(),
            proptest::collection::vec((any::<Index>(), any::<u8>()), 1..6),
            any::<Index>()
        )
            .prop_map(|(mut h, edits, cut)| {
                for (at, v) in &edits {
                    let i = at.index(h.len());
                    h[i] = *v;
                }
                h.truncate(cut.index(h.len() + 1).max(1));
                h
            }),
    ]
}

proptest! {
    #![proptest_config(fuzz(4))]

    /// Any split of a valid hello gives the verdict of the whole hello at once,
    /// known exactly when its last byte arrives; bytes after it change nothing.
    #[test]
    fn client_hello_sniffer_any_split_gives_the_whole_verdict(
        hello in valid_hello(),
        raw_cuts in proptest::collection::vec(any::<usize>(), 0..24),
        trailer in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let whole = sniff_client_hello(&hello);
        prop_assert!(matches!(&whole, Sniff::Tls(Ok(h)) if h.sni.as_deref() == Some(SNI)),
            "{:?}", whole);
        let cuts = sniff_cuts(hello.len(), &raw_cuts);
        let (v, decided, work) = sniff_pieces(&hello, &cuts);
        prop_assert_eq!(&v, &whole);
        prop_assert_eq!(decided, Some(hello.len()));
        // Nothing is looked at twice: the work does not depend on the cuts.
        let (_, _, work_whole) = sniff_pieces(&hello, &[]);
        prop_assert_eq!(work, work_whole);
        prop_assert!(work <= SNIFF_WORK_PER_BYTE * hello.len() as u64);
        let mut more = hello.clone();
        more.extend_from_slice(&trailer);
        let (v, _, _) = sniff_pieces(&more, &sniff_cuts(more.len(), &raw_cuts));
        prop_assert_eq!(&v, &whole);
    }

    /// On hostile first bytes, any split gives what [`sniff_client_hello`] says of
    /// everything at once (with the limit rule), never panics, and stays linear.
    #[test]
    fn client_hello_sniffer_on_hostile_bytes_matches_the_whole_parse(
        data in hostile_first_bytes(),
        raw_cuts in proptest::collection::vec(any::<usize>(), 0..24),
    ) {
        let want = sniff_reference(&data);
        let cuts = sniff_cuts(data.len(), &raw_cuts);
        let (v, decided, work) = sniff_pieces(&data, &cuts);
        prop_assert_eq!(&v, &want);
        // Decided with the piece that holds the first prefix the whole parse
        // decides on (a verdict on a prefix holds for every longer one, so the
        // first such prefix is found by bisection).
        let kept = data.len().min(SNIFF_LIMIT);
        let first = if sniff_client_hello(&data[..kept]) == Sniff::NeedMore {
            (kept >= SNIFF_LIMIT).then_some(kept)
        } else {
            let (mut lo, mut hi) = (0, kept);
            while lo < hi {
                let mid = (lo + hi) / 2;
                if sniff_client_hello(&data[..mid]) == Sniff::NeedMore {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            Some(lo)
        };
        let piece_end = first.map(|k| {
            cuts.iter().copied().chain([data.len()]).find(|&c| c >= k).unwrap_or(data.len())
        });
        prop_assert_eq!(decided, piece_end);
        prop_assert!(work <= SNIFF_WORK_PER_BYTE * data.len() as u64 + 16);
    }
}

/// The handshake messages of `records` (their payloads concatenated).
fn handshake_payload(records: &[u8]) -> Vec<u8> {
    let mut hs = Vec::new();
    let mut pos = 0;
    while let Some(h) = records.get(pos..pos + 5) {
        let len = u16::from_be_bytes([h[3], h[4]]) as usize;
        if h[0] == 0x16 {
            hs.extend_from_slice(&records[pos + 5..pos + 5 + len]);
        }
        pos += 5 + len;
    }
    hs
}

/// A handshake message of type `ty` around `body`, its length field `declared`
/// when given.
fn hs_message(ty: u8, body: &[u8], declared: Option<u32>) -> Vec<u8> {
    let mut m = vec![ty];
    m.extend_from_slice(&declared.unwrap_or(body.len() as u32).to_be_bytes()[1..]);
    m.extend_from_slice(body);
    m
}

/// Handshake bytes cut into records of `record` payload bytes.
fn in_records(hs: &[u8], record: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for part in hs.chunks(record) {
        out.extend_from_slice(&[0x16, 0x03, 0x03]);
        out.extend_from_slice(&(part.len() as u16).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// A server's first flight of about 64 KiB: `requests` HelloRequests, the real TLS
/// 1.2 ServerHello and a Certificate message with the real leaf followed by a
/// filler entry, `cert_len` bytes in all (at least 100 more than the leaf), or
/// declaring `declared` bytes.
fn big_server_flight(requests: usize, cert_len: usize, declared: Option<u32>) -> Vec<u8> {
    let hs = handshake_payload(&real_tls().server_flight);
    let sh_len = 4 + u32::from_be_bytes([0, hs[1], hs[2], hs[3]]) as usize;
    let (sh, rest) = hs.split_at(sh_len);
    assert_eq!((sh[0], rest[0]), (2, 11), "ServerHello then Certificate");
    // Certificate body: list length (3), first entry length (3), the leaf.
    let leaf_len = u32::from_be_bytes([0, rest[7], rest[8], rest[9]]) as usize;
    let leaf = &rest[10..10 + leaf_len];
    let filler_len = cert_len - 4 - 3 - 3 - leaf_len - 3;
    let mut list = Vec::new();
    list.extend_from_slice(&(leaf_len as u32).to_be_bytes()[1..]);
    list.extend_from_slice(leaf);
    list.extend_from_slice(&(filler_len as u32).to_be_bytes()[1..]);
    list.resize(list.len() + filler_len, 0x30);
    let mut body = (list.len() as u32).to_be_bytes()[1..].to_vec();
    body.extend_from_slice(&list);
    let mut msgs = Vec::new();
    for _ in 0..requests {
        msgs.extend_from_slice(&hs_message(0, &[], None));
    }
    msgs.extend_from_slice(sh);
    msgs.extend_from_slice(&hs_message(11, &body, declared));
    assert_eq!(msgs.len(), 4 * requests + sh_len + cert_len);
    msgs
}

/// A server's first flight of 64 KiB arriving one byte at a time (the cloud, or
/// whatever answers in its place, is not trusted either): the ServerHello
/// sniffer's work stays linear, in large records, in small records, with many
/// HelloRequests before the ServerHello, and for a Certificate message that never
/// completes before the limit.
#[test]
fn server_hello_sniffer_work_is_linear_one_byte_at_a_time() {
    let sh_len = {
        let hs = handshake_payload(&real_tls().server_flight);
        4 + u32::from_be_bytes([0, hs[1], hs[2], hs[3]]) as usize
    };
    // The largest Certificate message that fits in 64 KiB with the ServerHello.
    let fit = |record: usize| hs_fitting(SNIFF_LIMIT, record) - sh_len;
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "64 KiB flight in 16 KiB records",
            in_records(&big_server_flight(0, fit(16384), None), 16384),
            true,
        ),
        (
            "flight in 3-byte records",
            in_records(&big_server_flight(0, fit(3), None), 3),
            true,
        ),
        (
            "3000 HelloRequests, one per record, then the flight",
            {
                let mut d = [0x16, 0x03, 0x03, 0, 4, 0, 0, 0, 0].repeat(3000);
                let cert = hs_fitting(SNIFF_LIMIT - d.len(), 16384) - sh_len;
                d.extend_from_slice(&in_records(&big_server_flight(0, cert, None), 16384));
                d
            },
            true,
        ),
        (
            "Certificate message claiming 64 KiB",
            in_records(
                &big_server_flight(0, fit(16384), Some(SNIFF_LIMIT as u32)),
                16384,
            ),
            false,
        ),
    ];
    for (name, data, completes) in &cases {
        let n = data.len();
        assert!(
            (SNIFF_LIMIT - 64..=SNIFF_LIMIT).contains(&n),
            "{name}: {n} bytes"
        );
        let want = sniff_server_hello(data);
        match &want {
            ServerSniff::Tls(Ok(info)) if *completes => {
                let cert = info.certificate.as_ref();
                assert_eq!(
                    cert.map(|c| c.dns_names.clone()),
                    Some(vec![SNI.into()]),
                    "{name}"
                );
                assert_eq!(info.chain_len, 2, "{name}");
                assert_eq!(info.certificate_error, None, "{name}");
            }
            ServerSniff::Tls(Ok(info)) => {
                assert_eq!(info.certificate, None, "{name}");
                let e = info.certificate_error.as_deref().unwrap_or_default();
                assert!(e.contains("longer than the sniffed bytes"), "{name}: {e}");
            }
            other => panic!("{name}: {other:?}"),
        }
        for chunk in [1usize, 7, 1500, n] {
            let mut s = ServerHelloSniffer::new();
            let mut got = ServerSniff::NeedMore;
            let mut pushed = 0;
            for piece in data.chunks(chunk) {
                got = s.push(piece);
                pushed += piece.len();
                if pushed < n {
                    assert_eq!(got, ServerSniff::NeedMore, "{name}: decided at {pushed}");
                }
            }
            assert_eq!(got, want, "{name}, pieces of {chunk}");
            let work = s.work();
            if chunk == 1 {
                eprintln!("{name}: {n} bytes one at a time, work {work}");
            }
            let limit = SNIFF_WORK_PER_BYTE * n as u64;
            assert!(
                work <= limit,
                "{name}, pieces of {chunk}: work {work} for {n} bytes (at most {limit})"
            );
        }
    }
}

#[path = "support/gateway.rs"]
#[allow(dead_code)]
mod gw;

/// The gateway's two sniffing paths (a relayed flow, and the rogue server's TLS
/// session) against a watch that writes a 64 KiB ClientHello in small pieces: the
/// flow is classified with the hello's name, and a hello longer than the limit is
/// a TLS flow with the limit's error (relayed flow; the rogue server's TLS stack
/// may refuse such a hello before the limit is reached).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_classifies_a_64_kib_hello_written_in_small_pieces() {
    use redrig::clock::Clock;
    use redrig::drivers::{Mark, NameService};
    use redrig::gateway::{FlowEvent, FlowProtocol, ForgedCert, HostMode};
    let hs16 = hs_fitting(SNIFF_LIMIT, 16384);
    let complete = padded_hello(hs16, 16384, None);
    let over = padded_hello(hs16 + 1, 16384, None);
    let cases = [
        (HostMode::Normal, &complete, None),
        (HostMode::Normal, &over, Some(HELLO_OVER_LIMIT)),
        (
            HostMode::Rogue {
                cert: ForgedCert::SelfSigned,
            },
            &complete,
            None,
        ),
    ];
    for (mode, hello, error) in cases {
        let dir = tempfile::tempdir().unwrap();
        let gate =
            gw::start_gateway(Some(gw::tcp_echo().await), Clock::start(1000.0), dir.path()).await;
        gate.set_host_mode(gw::HOST, mode).unwrap();
        let addr = gate.resolve(gw::HOST).unwrap();
        let mut s = TcpStream::connect((addr, gw::PORT)).await.unwrap();
        s.set_nodelay(true).unwrap();
        let writer = {
            let hello = hello.clone();
            tokio::spawn(async move {
                for piece in hello.chunks(997) {
                    if s.write_all(piece).await.is_err() {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                s
            })
        };
        let det = gate
            .flows()
            .wait_for(Mark(0), 20_000.0, |e| {
                matches!(e, FlowEvent::Detected { .. })
            })
            .await
            .unwrap_or_else(|| panic!("{mode:?}: no protocol detected"));
        let FlowEvent::Detected { protocol, .. } = det.value else {
            unreachable!()
        };
        let FlowProtocol::Tls(h) = protocol else {
            panic!("{mode:?}: {protocol:?}")
        };
        assert_eq!(h.error.as_deref(), error, "{mode:?}");
        if error.is_none() {
            assert_eq!(h.sni.as_deref(), Some(SNI), "{mode:?}");
            assert_eq!(h.version, 0x0304, "{mode:?}");
        }
        drop(writer.await);
        gate.shutdown().await.unwrap();
    }
}

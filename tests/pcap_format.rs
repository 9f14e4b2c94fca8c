//! The gateway's pcap encoder (`redrig::gateway::pcap`) read back by parsers that are
//! not the rig's own.
//!
//! One capture holds several interleaved flows: an HTTP exchange closed by both FINs,
//! a 100 KB upload in uneven chunks whose sequence numbers cross 2^32 (server FIN
//! first), a flow reset by the watch, a refused connection, a DNS query and a UDP
//! datagram too long for IPv4 (cut). It is written to a file and
//!
//! - read with `pcap-parser` (global header, record lengths, timestamps) and every
//!   frame decoded with `etherparse`: link type and MACs, IPv4 fields and header
//!   checksum, TCP/UDP checksums, IP ids counting per side, sequence and
//!   acknowledgement numbers consistent throughout, each direction reassembled by
//!   sequence number equal to the bytes written, and each flow's SYN/FIN/RST sequence;
//! - read with tshark when it is installed (checksum validation on; no malformed
//!   packet, no bad checksum, no sequence-analysis complaint; `follow,tcp,raw` and
//!   `follow,udp,raw` give back the bytes written). Without tshark that test says
//!   SKIPPED on stderr, or fails when `REDRIG_REQUIRE_CROSSCHECKS=1`.
//!
//! Set `REDRIG_PCAP_COPY=FILE` to keep a copy of the capture (to open it in Wireshark).

use etherparse::{EtherType, LinkSlice, NetSlice, SlicedPacket, TcpOptionElement, TransportSlice};
use pcap_parser::{LegacyPcapSlice, Linktype, PcapBlockOwned};
use redrig::gateway::pcap::{
    file_header, udp_record, TcpCapture, GATEWAY_MAC, MAX_UDP_PAYLOAD, MSS, SNAPLEN, WATCH_MAC,
    WINDOW,
};
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const WATCH_IP: Ipv4Addr = Ipv4Addr::new(10, 64, 0, 2);

fn watch(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(WATCH_IP, port)
}

/// Deterministic, position-dependent bytes (xorshift64*), so that a misplaced
/// segment shows.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// Timestamps 250 µs apart, one per call, from a fixed instant.
struct Ticks {
    t: SystemTime,
    all: Vec<SystemTime>,
}

impl Ticks {
    fn next(&mut self) -> SystemTime {
        self.t += Duration::from_micros(250);
        self.all.push(self.t);
        self.t
    }
}

/// One TCP flow as written.
struct TcpFlow {
    client: SocketAddrV4,
    server: SocketAddrV4,
    up: Vec<u8>,
    down: Vec<u8>,
    /// SYN/FIN/RST packets in order, `c:` or `s:` for the sender.
    controls: Vec<&'static str>,
}

/// One UDP datagram as written (payload as it must read back: cut to fit).
struct Datagram {
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: Vec<u8>,
}

struct Capture {
    bytes: Vec<u8>,
    tcp: Vec<TcpFlow>,
    udp: Vec<Datagram>,
    ticks: Vec<SystemTime>,
}

/// Appends what one call returned and records the payload written.
fn send(
    out: &mut Vec<u8>,
    cap: &mut TcpCapture,
    flow: &mut TcpFlow,
    from_client: bool,
    payload: &[u8],
    t: SystemTime,
) {
    out.extend(cap.data(from_client, payload, t));
    if from_client {
        flow.up.extend_from_slice(payload);
    } else {
        flow.down.extend_from_slice(payload);
    }
}

fn build() -> Capture {
    let mut ticks = Ticks {
        t: UNIX_EPOCH + Duration::new(1_750_000_000, 999_000_000),
        all: Vec::new(),
    };
    let mut out = file_header();

    // Flow 0: HTTP, closed by the client's then the server's FIN.
    let mut http = TcpFlow {
        client: watch(40001),
        server: SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 10), 80),
        up: Vec::new(),
        down: Vec::new(),
        controls: vec!["c:SYN", "s:SYN+ACK", "c:FIN+ACK", "s:FIN+ACK"],
    };
    let mut http_cap = TcpCapture::new(http.client, http.server, 0x5eed);
    // Flow 1: a 100 KB upload (binary) whose sequence numbers cross 2^32 both ways;
    // the server closes first.
    let mut bulk = TcpFlow {
        client: watch(40002),
        server: SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 5), 47_001),
        up: Vec::new(),
        down: Vec::new(),
        controls: vec!["c:SYN", "s:SYN+ACK", "s:FIN+ACK", "c:FIN+ACK"],
    };
    let mut bulk_cap =
        TcpCapture::with_isns(bulk.client, bulk.server, u32::MAX - 40_000, u32::MAX - 20);
    // Flow 2: reset by the watch after an exchange.
    let mut rst = TcpFlow {
        client: watch(40003),
        server: SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 9), 47_002),
        up: Vec::new(),
        down: Vec::new(),
        controls: vec!["c:SYN", "s:SYN+ACK", "c:RST+ACK"],
    };
    let mut rst_cap = TcpCapture::new(rst.client, rst.server, 7);
    // Flow 3: refused.
    let refused = TcpFlow {
        client: watch(40004),
        server: SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 9), 47_003),
        up: Vec::new(),
        down: Vec::new(),
        controls: vec!["c:SYN", "s:RST+ACK"],
    };
    let mut refused_cap = TcpCapture::new(refused.client, refused.server, 8);

    out.extend(http_cap.handshake(ticks.next()));
    out.extend(bulk_cap.handshake(ticks.next()));
    let body = pattern(1, 100_000);
    let get = b"GET /time HTTP/1.1\r\nHost: time.example.org\r\n\r\n";
    for (i, chunk) in body.chunks(7_001).enumerate() {
        send(
            &mut out,
            &mut bulk_cap,
            &mut bulk,
            true,
            chunk,
            ticks.next(),
        );
        if i == 3 {
            // The HTTP flow, interleaved.
            send(&mut out, &mut http_cap, &mut http, true, get, ticks.next());
            let text = pattern(2, 2_000)
                .iter()
                .map(|b| b'a' + b % 26)
                .collect::<Vec<u8>>();
            let mut response =
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2000\r\n\r\n"
                    .to_vec();
            response.extend_from_slice(&text);
            send(
                &mut out,
                &mut http_cap,
                &mut http,
                false,
                &response,
                ticks.next(),
            );
            out.extend(http_cap.fin(true, ticks.next()));
        }
        if i == 7 {
            send(
                &mut out,
                &mut bulk_cap,
                &mut bulk,
                false,
                b"\x00\x01progress",
                ticks.next(),
            );
        }
    }
    out.extend(http_cap.fin(false, ticks.next()));
    assert!(http_cap.is_closed());
    // One call larger than the window: acknowledged within it.
    send(
        &mut out,
        &mut bulk_cap,
        &mut bulk,
        false,
        &pattern(3, 70_000),
        ticks.next(),
    );
    out.extend(bulk_cap.fin(false, ticks.next()));
    out.extend(bulk_cap.fin(true, ticks.next()));
    assert!(bulk_cap.is_closed());

    out.extend(rst_cap.handshake(ticks.next()));
    send(
        &mut out,
        &mut rst_cap,
        &mut rst,
        true,
        &pattern(4, 333),
        ticks.next(),
    );
    send(
        &mut out,
        &mut rst_cap,
        &mut rst,
        false,
        &pattern(5, 1_461),
        ticks.next(),
    );
    out.extend(rst_cap.reset(true, ticks.next()));
    assert!(rst_cap
        .data(false, b"after the reset", ticks.next())
        .is_empty());

    out.extend(refused_cap.refused(ticks.next()));

    // A DNS query for example.org, type A.
    let dns_server = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 53), 53);
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    query.extend_from_slice(b"\x07example\x03org\x00\x00\x01\x00\x01");
    out.extend(udp_record(
        watch(53_000),
        dns_server,
        true,
        &query,
        ticks.next(),
    ));
    // A datagram from the peer too long for IPv4: cut to fit.
    let peer = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 77), 47_004);
    let long = pattern(6, MAX_UDP_PAYLOAD + 1_000);
    out.extend(udp_record(watch(53_001), peer, false, &long, ticks.next()));

    Capture {
        bytes: out,
        tcp: vec![http, bulk, rst, refused],
        udp: vec![
            Datagram {
                src: watch(53_000),
                dst: dns_server,
                payload: query,
            },
            Datagram {
                src: peer,
                dst: watch(53_001),
                payload: long[..MAX_UDP_PAYLOAD].to_vec(),
            },
        ],
        ticks: ticks.all,
    }
}

/// Writes the capture to a temporary file (and to `REDRIG_PCAP_COPY` if set).
fn write(cap: &Capture, dir: &Path) -> std::path::PathBuf {
    let path = dir.join("gateway.pcap");
    std::fs::write(&path, &cap.bytes).unwrap();
    if let Some(copy) = std::env::var_os("REDRIG_PCAP_COPY") {
        std::fs::write(copy, &cap.bytes).unwrap();
    }
    path
}

/// What the decoder tracks for one direction of a TCP flow.
#[derive(Default)]
struct DirState {
    isn: Option<u32>,
    /// Sequence space used so far, relative to the ISN (SYN and FIN count one).
    sent_end: u32,
    /// The other side's last acknowledgement of this direction, relative.
    acked: u32,
    last_ip_id: Option<u16>,
    /// Payload by relative sequence number.
    segments: BTreeMap<u32, Vec<u8>>,
}

fn flags_name(tcp: &etherparse::TcpSlice) -> String {
    let mut names = Vec::new();
    for (set, name) in [
        (tcp.syn(), "SYN"),
        (tcp.fin(), "FIN"),
        (tcp.rst(), "RST"),
        (tcp.ack(), "ACK"),
    ] {
        if set {
            names.push(name);
        }
    }
    names.join("+")
}

/// Concatenates segments keyed by relative sequence number, starting right after
/// the SYN; panics on a gap or an overlap.
fn reassemble(segments: &BTreeMap<u32, Vec<u8>>, what: &str) -> Vec<u8> {
    let mut next = 1u32;
    let mut out = Vec::new();
    for (&rel, payload) in segments {
        assert_eq!(rel, next, "{what}: segment at {rel}, expected {next}");
        out.extend_from_slice(payload);
        next = next.wrapping_add(payload.len() as u32);
    }
    out
}

#[test]
fn pcap_parser_and_etherparse_read_back_every_flow() {
    let cap = build();
    let dir = tempfile::tempdir().unwrap();
    let path = write(&cap, dir.path());
    let file = std::fs::read(&path).unwrap();

    let mut slice = LegacyPcapSlice::from_slice(&file).expect("pcap header");
    let h = &slice.header;
    assert_eq!(h.magic_number, 0xa1b2_3c4d);
    assert!(h.is_nanosecond_precision() && !h.is_bigendian());
    assert_eq!((h.version_major, h.version_minor), (2, 4));
    assert_eq!(h.snaplen, SNAPLEN);
    assert_eq!(h.network, Linktype::ETHERNET);

    let mut times = Vec::new();
    let mut tcp_dirs: HashMap<(SocketAddrV4, SocketAddrV4), DirState> = HashMap::new();
    let mut controls: HashMap<(SocketAddrV4, SocketAddrV4), Vec<String>> = HashMap::new();
    let mut udp = Vec::new();
    let mut frames = 0usize;
    let mut largest = 0usize;
    for block in slice.by_ref() {
        let PcapBlockOwned::Legacy(rec) = block.expect("record") else {
            panic!("not a legacy record");
        };
        frames += 1;
        assert_eq!(rec.caplen, rec.origlen, "record {frames}: cut");
        assert!(rec.caplen <= SNAPLEN);
        assert_eq!(rec.data.len(), rec.caplen as usize);
        largest = largest.max(rec.data.len());
        assert!(rec.ts_usec < 1_000_000_000, "nanoseconds field");
        times.push(UNIX_EPOCH + Duration::new(rec.ts_sec.into(), rec.ts_usec));

        let p = SlicedPacket::from_ethernet(rec.data)
            .unwrap_or_else(|e| panic!("record {frames}: etherparse: {e}"));
        let Some(LinkSlice::Ethernet2(eth)) = &p.link else {
            panic!("record {frames}: no Ethernet II header")
        };
        assert_eq!(eth.ether_type(), EtherType::IPV4);
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!("record {frames}: not IPv4")
        };
        let iph = ip.header();
        assert_eq!(
            usize::from(iph.total_len()) + 14,
            rec.data.len(),
            "IP length"
        );
        assert!(iph.dont_fragment() && !iph.more_fragments());
        assert_eq!(iph.ttl(), 64);
        assert_eq!(
            iph.header_checksum(),
            iph.to_header().calc_header_checksum(),
            "record {frames}: IPv4 checksum"
        );
        let (src_ip, dst_ip) = (iph.source_addr(), iph.destination_addr());
        let from_watch = src_ip == WATCH_IP;
        assert!(from_watch || dst_ip == WATCH_IP);
        let (src_mac, dst_mac) = if from_watch {
            (WATCH_MAC, GATEWAY_MAC)
        } else {
            (GATEWAY_MAC, WATCH_MAC)
        };
        assert_eq!((eth.source(), eth.destination()), (src_mac, dst_mac));

        match &p.transport {
            Some(TransportSlice::Tcp(tcp)) => {
                assert_eq!(
                    tcp.checksum(),
                    tcp.calc_checksum_ipv4(iph.source(), iph.destination())
                        .unwrap(),
                    "record {frames}: TCP checksum"
                );
                assert_eq!(tcp.window_size(), WINDOW);
                assert!(tcp.payload().len() <= MSS);
                let src = SocketAddrV4::new(src_ip, tcp.source_port());
                let dst = SocketAddrV4::new(dst_ip, tcp.destination_port());
                if tcp.syn() {
                    let mss: Vec<_> = tcp
                        .options_iterator()
                        .filter_map(|o| match o {
                            Ok(TcpOptionElement::MaximumSegmentSize(m)) => Some(m),
                            _ => None,
                        })
                        .collect();
                    assert_eq!(mss, [1460], "record {frames}: MSS option");
                }
                let name = flags_name(tcp);
                if tcp.syn() || tcp.fin() || tcp.rst() {
                    let (client, server) = if from_watch { (src, dst) } else { (dst, src) };
                    let tag = if from_watch { "c:" } else { "s:" };
                    controls
                        .entry((client, server))
                        .or_default()
                        .push(format!("{tag}{name}"));
                }

                // Sequence numbers: this side's next, relative to its SYN.
                let me = tcp_dirs.entry((src, dst)).or_default();
                if let Some(prev) = me.last_ip_id {
                    assert_eq!(iph.identification(), prev.wrapping_add(1), "IP id");
                }
                me.last_ip_id = Some(iph.identification());
                if tcp.syn() {
                    assert!(me.isn.is_none(), "second SYN");
                    me.isn = Some(tcp.sequence_number());
                }
                if let Some(isn) = me.isn {
                    let rel = tcp.sequence_number().wrapping_sub(isn);
                    assert_eq!(rel, me.sent_end, "record {frames}: sequence number");
                    if !tcp.payload().is_empty() {
                        me.segments.insert(rel, tcp.payload().to_vec());
                    }
                    let used =
                        tcp.payload().len() as u32 + u32::from(tcp.syn()) + u32::from(tcp.fin());
                    me.sent_end = rel.wrapping_add(used);
                    assert!(
                        me.sent_end - me.acked <= u32::from(WINDOW),
                        "record {frames}: more than a window unacknowledged"
                    );
                } else {
                    assert!(
                        tcp.rst(),
                        "record {frames}: a segment before this side's SYN"
                    );
                }
                // Acknowledgements: everything the other side has sent so far.
                assert_eq!(
                    tcp.ack(),
                    !(tcp.syn() && from_watch),
                    "record {frames}: ACK"
                );
                if tcp.ack() {
                    let peer = tcp_dirs.entry((dst, src)).or_default();
                    let isn = peer.isn.expect("ACK of a side that sent no SYN");
                    let rel = tcp.acknowledgment_number().wrapping_sub(isn);
                    assert_eq!(rel, peer.sent_end, "record {frames}: acknowledgement");
                    peer.acked = rel;
                }
            }
            Some(TransportSlice::Udp(u)) => {
                assert_eq!(
                    u.checksum(),
                    u.to_header()
                        .calc_checksum_ipv4(&iph.to_header(), u.payload())
                        .unwrap(),
                    "record {frames}: UDP checksum"
                );
                assert_eq!(usize::from(u.length()), 8 + u.payload().len());
                udp.push((
                    SocketAddrV4::new(src_ip, u.source_port()),
                    SocketAddrV4::new(dst_ip, u.destination_port()),
                    u.payload().to_vec(),
                ));
            }
            other => panic!("record {frames}: unexpected transport {other:?}"),
        }
    }
    assert!(slice.next().is_none());

    // Timestamps: the calls' own, in order, to the nanosecond.
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "timestamps go back");
    assert_eq!(times.first(), cap.ticks.first());
    assert!(times.iter().all(|t| cap.ticks.contains(t)));
    // The cut datagram is the largest record, and within the snaplen.
    assert_eq!(largest, 14 + 65_535);

    for flow in &cap.tcp {
        let key = (flow.client, flow.server);
        assert_eq!(
            controls.get(&key).cloned().unwrap_or_default(),
            flow.controls,
            "flags of {key:?}"
        );
        let up = &tcp_dirs[&(flow.client, flow.server)];
        assert_eq!(
            reassemble(&up.segments, "up"),
            flow.up,
            "upstream of {key:?}"
        );
        if let Some(down) = tcp_dirs.get(&(flow.server, flow.client)) {
            assert_eq!(
                reassemble(&down.segments, "down"),
                flow.down,
                "downstream of {key:?}"
            );
        }
    }
    // The bulk flow's sequence numbers did cross 2^32 in both directions.
    let bulk = &cap.tcp[1];
    for key in [(bulk.client, bulk.server), (bulk.server, bulk.client)] {
        let d = &tcp_dirs[&key];
        let isn = d.isn.unwrap();
        assert!(
            isn.checked_add(d.sent_end).is_none(),
            "{key:?} did not wrap"
        );
    }
    let expected_udp: Vec<_> = cap
        .udp
        .iter()
        .map(|d| (d.src, d.dst, d.payload.clone()))
        .collect();
    assert_eq!(udp, expected_udp);
}

// ---------------------------------------------------------------------------------
// tshark

fn tshark(args: &[&str], file: &Path) -> String {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(args)
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("tshark output is UTF-8")
}

/// The two directions of `-z follow,PROTO,raw,N`: lines of hex, the second endpoint's
/// indented by a tab. Returns (bytes from the first endpoint, bytes from the second).
fn follow_raw(text: &str) -> (Vec<u8>, Vec<u8>) {
    let mut first = Vec::new();
    let mut second = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("====") {
            inside = false;
            continue;
        }
        if line.starts_with("Node 1:") {
            inside = true;
            continue;
        }
        if !inside || line.trim().is_empty() {
            continue;
        }
        let (target, hex_text) = match line.strip_prefix('\t') {
            Some(rest) => (&mut second, rest),
            None => (&mut first, line),
        };
        target.extend(hex::decode(hex_text.trim()).unwrap_or_else(|e| panic!("{line:?}: {e}")));
    }
    (first, second)
}

#[test]
fn tshark_reads_the_capture_without_complaint() {
    if Command::new("tshark").arg("--version").output().is_err() {
        assert!(
            std::env::var("REDRIG_REQUIRE_CROSSCHECKS").as_deref() != Ok("1"),
            "tshark cross-check required (REDRIG_REQUIRE_CROSSCHECKS=1) but tshark is not installed"
        );
        // Straight to stderr, not through the test harness's capture: a skip must be seen.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: tshark cross-check (tshark not installed; the CI installs it)"
        );
        return;
    }
    let cap = build();
    let dir = tempfile::tempdir().unwrap();
    let path = write(&cap, dir.path());
    let records = {
        let mut s = LegacyPcapSlice::from_slice(&cap.bytes).unwrap();
        s.by_ref().count()
    };

    // Every frame with checksum validation on: statuses and expert messages.
    let checks = [
        "-o",
        "ip.check_checksum:TRUE",
        "-o",
        "tcp.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
    ];
    let mut args = checks.to_vec();
    args.extend([
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=;",
        "-e",
        "frame.number",
        "-e",
        "ip.checksum.status",
        "-e",
        "tcp.checksum.status",
        "-e",
        "udp.checksum.status",
        "-e",
        "_ws.malformed",
        "-e",
        "_ws.expert.severity",
        "-e",
        "_ws.expert.message",
    ]);
    let fields = tshark(&args, &path);
    let lines: Vec<&str> = fields.lines().collect();
    assert_eq!(lines.len(), records, "tshark frame count");
    // Expert information at warning level or above is a complaint, except the resets
    // (the reset flow and the refused connection), which tshark announces as warnings.
    const WARN: u32 = 0x0060_0000;
    let mut resets = 0;
    for line in &lines {
        let cols: Vec<&str> = line.split('|').collect();
        assert_eq!(cols.len(), 7, "{line}");
        assert_eq!(cols[1], "1", "IP checksum not good: {line}"); // 1 = Good
        assert!(
            cols[2].is_empty() || cols[2] == "1",
            "TCP checksum not good: {line}"
        );
        assert!(
            cols[3].is_empty() || cols[3] == "1",
            "UDP checksum not good: {line}"
        );
        assert!(cols[4].is_empty(), "malformed: {line}");
        let severities = cols[5].split(';').filter(|m| !m.is_empty());
        let messages: Vec<&str> = cols[6].split(';').filter(|m| !m.is_empty()).collect();
        assert_eq!(severities.clone().count(), messages.len(), "{line}");
        for (severity, message) in severities.zip(messages) {
            let severity: u32 = severity.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
            if message == "Connection reset (RST)" {
                resets += 1;
            } else {
                assert!(severity < WARN, "tshark complains: {line}");
            }
        }
    }
    assert_eq!(resets, 2, "tshark's reset count");
    // The same by display filter: nothing malformed, no bad checksum, no TCP analysis
    // flag (retransmission, lost segment, duplicate ACK, window full...), no error.
    let mut args = checks.to_vec();
    args.extend([
        "-Y",
        "_ws.malformed or ip.checksum.status == 0 or tcp.checksum.status == 0 \
         or udp.checksum.status == 0 or tcp.analysis.flags \
         or _ws.expert.severity >= 0x00800000",
    ]);
    let bad = tshark(&args, &path);
    assert!(bad.trim().is_empty(), "tshark flags:\n{bad}");

    // Conversations: one per TCP flow.
    let conv = tshark(&["-q", "-z", "conv,tcp"], &path);
    assert_eq!(
        conv.lines().filter(|l| l.contains("<->")).count(),
        cap.tcp.len(),
        "{conv}"
    );
    for flow in &cap.tcp {
        let a = flow.client.to_string();
        let b = flow.server.to_string();
        assert!(
            conv.lines().any(|l| l.contains(&a) && l.contains(&b)),
            "conversation {a} <-> {b} missing:\n{conv}"
        );
    }

    // Follow each TCP stream and each UDP datagram's stream: the bytes written.
    for (i, flow) in cap.tcp.iter().enumerate() {
        let text = tshark(&["-q", "-z", &format!("follow,tcp,raw,{i}")], &path);
        let node0 = text
            .lines()
            .find(|l| l.starts_with("Node 0:"))
            .unwrap_or_else(|| panic!("follow output:\n{text}"));
        assert!(node0.ends_with(&flow.client.to_string()), "{node0}");
        let (up, down) = follow_raw(&text);
        assert_eq!(up, flow.up, "tshark's upstream of stream {i}");
        assert_eq!(down, flow.down, "tshark's downstream of stream {i}");
    }
    for (i, d) in cap.udp.iter().enumerate() {
        let text = tshark(&["-q", "-z", &format!("follow,udp,raw,{i}")], &path);
        let (first, second) = follow_raw(&text);
        let node0 = text.lines().find(|l| l.starts_with("Node 0:")).unwrap();
        let from_node0 = if node0.ends_with(&d.src.to_string()) {
            first
        } else {
            assert!(first.is_empty());
            second
        };
        assert_eq!(from_node0, d.payload, "tshark's UDP stream {i}");
    }
}

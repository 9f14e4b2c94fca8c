//! The gateway's capture and data-path services against real sockets: the pcap
//! agrees with the raw flow evidence (independent parsers, and tshark where
//! installed), UDP is relayed and captured, the DNS server answers from the host
//! table, and injected latency is what was set.

#[path = "support/gateway.rs"]
mod gw;
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use gw::{start_gateway, tcp_echo, HOST, PORT};
use pcap_parser::{LegacyPcapSlice, PcapBlockOwned};
use redrig::clock::Clock;
use redrig::drivers::NameService;
use redrig::gateway::impair::Impairment;
use redrig::gateway::{Dir, FlowEvent, Gateway, Transport, PCAP_FILE};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

async fn udp_echo() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, peer)) = s.recv_from(&mut buf).await {
            let _ = s.send_to(&buf[..n], peer).await;
        }
    });
    addr
}

fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Skip visibly unless the CI demands the cross-check.
fn skip(what: &str) {
    assert!(
        std::env::var("REDRIG_REQUIRE_CROSSCHECKS").as_deref() != Ok("1"),
        "{what} required (REDRIG_REQUIRE_CROSSCHECKS=1) but not available"
    );
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {what}");
}

/// Every packet of a capture: (src, dst, TCP seq or None for UDP, flags, payload).
struct Packet {
    src: SocketAddrV4,
    dst: SocketAddrV4,
    seq: Option<u32>,
    syn: bool,
    payload: Vec<u8>,
}

fn packets(file: &[u8]) -> Vec<Packet> {
    let mut slice = LegacyPcapSlice::from_slice(file).expect("pcap header");
    let mut out = Vec::new();
    for block in slice.by_ref() {
        let PcapBlockOwned::Legacy(rec) = block.expect("record") else {
            panic!("not a legacy record")
        };
        let p = SlicedPacket::from_ethernet(rec.data).expect("ethernet frame");
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not IPv4")
        };
        let iph = ip.header();
        assert_eq!(
            iph.header_checksum(),
            iph.to_header().calc_header_checksum()
        );
        match &p.transport {
            Some(TransportSlice::Tcp(t)) => {
                assert_eq!(
                    t.checksum(),
                    t.calc_checksum_ipv4(iph.source(), iph.destination())
                        .unwrap()
                );
                out.push(Packet {
                    src: SocketAddrV4::new(iph.source_addr(), t.source_port()),
                    dst: SocketAddrV4::new(iph.destination_addr(), t.destination_port()),
                    seq: Some(t.sequence_number()),
                    syn: t.syn(),
                    payload: t.payload().to_vec(),
                });
            }
            Some(TransportSlice::Udp(u)) => out.push(Packet {
                src: SocketAddrV4::new(iph.source_addr(), u.source_port()),
                dst: SocketAddrV4::new(iph.destination_addr(), u.destination_port()),
                seq: None,
                syn: false,
                payload: u.payload().to_vec(),
            }),
            other => panic!("unexpected transport {other:?}"),
        }
    }
    out
}

/// Reassemble the TCP payload sent by `src` (by sequence number).
fn stream_from(pkts: &[Packet], src: SocketAddrV4) -> Vec<u8> {
    let mut by_seq: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut isn = None;
    for p in pkts.iter().filter(|p| p.src == src && p.seq.is_some()) {
        if p.syn {
            isn = p.seq;
        }
        if !p.payload.is_empty() {
            let off = p
                .seq
                .unwrap()
                .wrapping_sub(isn.expect("SYN first").wrapping_add(1));
            by_seq.insert(off, p.payload.clone());
        }
    }
    let mut out = Vec::new();
    for (off, data) in by_seq {
        assert_eq!(off as usize, out.len(), "contiguous");
        out.extend(data);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_capture_holds_exactly_the_bytes_of_the_flow_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(Some(tcp_echo().await), Clock::start(1000.0), dir.path()).await;
    let addr = gw.resolve(HOST).unwrap();
    let mut s = TcpStream::connect((addr, PORT)).await.unwrap();
    let watch = match s.local_addr().unwrap() {
        SocketAddr::V4(a) => a,
        _ => unreachable!(),
    };
    let data = pattern(100_000);
    let (mut r, mut w) = s.split();
    let send = async {
        for c in data.chunks(7_000) {
            w.write_all(c).await.unwrap();
        }
        w.shutdown().await.unwrap();
    };
    let mut back = Vec::new();
    let recv = r.read_to_end(&mut back);
    let (_, n) = tokio::join!(send, recv);
    n.unwrap();
    assert_eq!(back, data);
    drop(s);
    gw.flows()
        .wait_for(redrig::drivers::Mark(0), 20_000.0, |e| {
            matches!(e, FlowEvent::Closed { .. })
        })
        .await
        .unwrap();
    gw.shutdown().await.unwrap();

    let file = std::fs::read(dir.path().join(PCAP_FILE)).unwrap();
    let pkts = packets(&file);
    let server = SocketAddrV4::new(addr, PORT);
    let up = stream_from(&pkts, watch);
    let down = stream_from(&pkts, server);
    assert_eq!(up, std::fs::read(dir.path().join("flow-1-up.bin")).unwrap());
    assert_eq!(
        down,
        std::fs::read(dir.path().join("flow-1-down.bin")).unwrap()
    );
    assert_eq!(up, data);
    assert_eq!(down, data);

    // tshark, an independent reader, follows the same stream.
    if Command::new("tshark").arg("--version").output().is_err() {
        skip(
            "tshark cross-check of the gateway capture (tshark not installed; the CI installs it)",
        );
        return;
    }
    let out = Command::new("tshark")
        .arg("-r")
        .arg(dir.path().join(PCAP_FILE))
        .args(["-q", "-z", "follow,tcp,raw,0"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (mut first, mut second) = (Vec::new(), Vec::new());
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("====") {
            inside = false;
        } else if line.starts_with("Node 1:") {
            inside = true;
        } else if inside && !line.trim().is_empty() {
            match line.strip_prefix('\t') {
                Some(rest) => second.extend(hex::decode(rest.trim()).unwrap()),
                None => first.extend(hex::decode(line.trim()).unwrap()),
            }
        }
    }
    assert_eq!(first, data, "tshark: watch to server");
    assert_eq!(second, data, "tshark: server to watch");
    let expert = Command::new("tshark")
        .arg("-r")
        .arg(dir.path().join(PCAP_FILE))
        .args(["-o", "tcp.check_checksum:TRUE", "-Y", "_ws.malformed || tcp.checksum.status == 0 || tcp.analysis.lost_segment || tcp.analysis.ack_lost_segment"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&expert.stdout).trim().is_empty(),
        "tshark complains: {}",
        String::from_utf8_lossy(&expert.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_is_relayed_recorded_and_captured() {
    let dir = tempfile::tempdir().unwrap();
    // At 20x the association's idle time-out (120 device s) is 6 wall seconds: far
    // longer than a busy machine takes between the last datagram and the coverage
    // loss below, so the end is the network's reset, not idleness.
    let gw = start_gateway(Some(udp_echo().await), Clock::start(20.0), dir.path()).await;
    let addr = gw.resolve(HOST).unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect((addr, PORT)).await.unwrap();
    let mut buf = [0u8; 64];
    for msg in [&b"ping one"[..], b"ping two"] {
        sock.send(msg).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(10), sock.recv(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert_eq!(&buf[..n], msg);
    }
    let s = gw
        .summaries()
        .into_iter()
        .find(|s| s.transport == Transport::Udp)
        .expect("a UDP association");
    assert_eq!((s.host.as_str(), s.port), (HOST, PORT));
    assert_eq!((s.bytes_up, s.bytes_down), (16, 16));
    // Coverage lost: the association ends and says so.
    gw.set_coverage(false);
    gw.flows()
        .wait_for(redrig::drivers::Mark(0), 600.0, {
            let sid = s.id;
            move |e| matches!(e, FlowEvent::Closed { id, .. } if *id == sid)
        })
        .await
        .expect("the association's end is recorded");
    let ended = gw.summaries().into_iter().find(|x| x.id == s.id).unwrap();
    assert_eq!(ended.end.as_deref(), Some("reset by the network"));
    gw.shutdown().await.unwrap();
    let up = std::fs::read(dir.path().join(format!("flow-{}-up.bin", s.id))).unwrap();
    assert_eq!(up, b"\x00\x08ping one\x00\x08ping two");
    let file = std::fs::read(dir.path().join(PCAP_FILE)).unwrap();
    let udp: Vec<_> = packets(&file)
        .into_iter()
        .filter(|p| p.seq.is_none() && p.src.port() != 53 && p.dst.port() != 53)
        .collect();
    assert_eq!(udp.len(), 4);
    assert!(udp.iter().all(|p| p.payload.starts_with(b"ping")));
    assert_eq!(udp[0].dst, SocketAddrV4::new(addr, PORT));
    assert_eq!(udp[1].src, SocketAddrV4::new(addr, PORT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dns_server_answers_from_the_host_table() {
    use simple_dns::{rdata::RData, Name, Packet as Dns, Question, CLASS, QCLASS, QTYPE, TYPE};
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(Some(tcp_echo().await), Clock::start(1000.0), dir.path()).await;
    if gw
        .notes()
        .iter()
        .any(|n| n.contains("dns server") && n.contains("not started"))
    {
        skip("DNS server test (port 53 needs privilege)");
        return;
    }
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect((gw.address(), 53)).await.unwrap();
    let ask = |id: u16, name: &'static str| {
        let mut q = Dns::new_query(id);
        q.questions.push(Question::new(
            Name::new_unchecked(name),
            QTYPE::TYPE(TYPE::A),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        q.build_bytes_vec().unwrap()
    };
    let a_of = |bytes: &[u8]| -> (u16, Option<Ipv4Addr>) {
        let p = Dns::parse(bytes).unwrap();
        let a = p.answers.iter().find_map(|r| match &r.rdata {
            RData::A(a) => Some(Ipv4Addr::from(a.address)),
            _ => None,
        });
        (p.id(), a)
    };
    let (id, a) = a_of(&query(&sock, ask(7, "watch.kidcloud.example")).await);
    assert_eq!(id, 7);
    assert_eq!(a, gw.address_of(HOST));
    // A name nobody configured gets an address of its own (a sinkhole).
    let (_, b) = a_of(&query(&sock, ask(8, "phonebook.example.net")).await);
    assert_eq!(b, gw.address_of("phonebook.example.net"));
    assert_ne!(b, a);
    // Without coverage: SERVFAIL.
    gw.set_coverage(false);
    let answer = query(&sock, ask(9, "watch.kidcloud.example")).await;
    let p = Dns::parse(&answer).unwrap();
    assert_eq!(p.rcode(), simple_dns::RCODE::ServerFailure);
    gw.shutdown().await.unwrap();
}

async fn query(sock: &UdpSocket, bytes: Vec<u8>) -> Vec<u8> {
    let mut buf = vec![0u8; 1500];
    sock.send(&bytes).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(10), sock.recv(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    buf[..n].to_vec()
}

/// Median round trip of small messages over one connection through the gateway.
async fn median_rtt(gw: &Gateway, rounds: usize) -> Duration {
    let addr = gw.resolve(HOST).unwrap();
    let mut s = TcpStream::connect((addr, PORT)).await.unwrap();
    s.set_nodelay(true).unwrap();
    let mut rtts = Vec::new();
    let mut buf = [0u8; 32];
    for i in 0..rounds {
        let msg = format!("ping {i:04}");
        let t = Instant::now();
        s.write_all(msg.as_bytes()).await.unwrap();
        s.read_exact(&mut buf[..msg.len()]).await.unwrap();
        rtts.push(t.elapsed());
    }
    rtts.sort();
    rtts[rtts.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_latency_is_within_ten_percent_of_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    // Device time at wall speed, so the setting is wall milliseconds too.
    let gw = start_gateway(Some(tcp_echo().await), Clock::start(1.0), dir.path()).await;
    let base = median_rtt(&gw, 10).await;
    let each_way = 150.0;
    for dir in [Dir::Up, Dir::Down] {
        gw.set_impairment(
            dir,
            Impairment {
                latency_ms: each_way,
                ..Impairment::default()
            },
        )
        .unwrap();
    }
    let impaired = median_rtt(&gw, 15).await;
    let added = impaired.saturating_sub(base).as_secs_f64() * 1000.0;
    let want = 2.0 * each_way;
    assert!(
        (added - want).abs() <= 0.1 * want,
        "added round-trip latency {added:.1} ms, set {want} ms (base {base:?})"
    );
    // Cleared: back to the base.
    gw.clear_impairments();
    assert!(gw.impairment(Dir::Up).is_none() && gw.impairment(Dir::Down).is_none());
    let after = median_rtt(&gw, 10).await;
    assert!(after.as_secs_f64() * 1000.0 < want / 2.0, "{after:?}");
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_in_clear_text_flows_is_found_with_where_it_was() {
    use redrig::gateway::pii::{PiiKind, PiiNeedles};
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::start(1000.0);
    let gw = start_gateway(Some(tcp_echo().await), clock, dir.path()).await;
    let addr = gw.resolve(HOST).unwrap();
    let mut s = TcpStream::connect((addr, PORT)).await.unwrap();
    // A position report as the watch protocol carries it, and a settings frame.
    let frames: &[u8] = b"[3G*8612345678*0057*UD,220414,134652,A,52.520100,N,13.404900,E,0.00,0.0,0.0,6,100,90,0,0,00000000]\
[3G*8612345678*0027*SOS,+4915100000001,+4915100000002]";
    s.write_all(frames).await.unwrap();
    let mut back = vec![0u8; frames.len()];
    s.read_exact(&mut back).await.unwrap();
    drop(s);
    gw.flows()
        .wait_for(redrig::drivers::Mark(0), 20_000.0, |e| {
            matches!(e, FlowEvent::Closed { .. })
        })
        .await
        .unwrap();
    let needles = |lat: f64| PiiNeedles {
        positions: vec![(lat, 13.404954)],
        phone_numbers: vec!["+4915100000001".into()],
        imeis: vec!["861234567890127".into()],
        other: vec![],
    };
    let found = gw.scan_cleartext(needles(52.520008), 0, 20).await.unwrap();
    let kinds = |dir: Dir| -> BTreeSet<String> {
        found
            .iter()
            .filter(|f| f.dir == dir)
            .map(|f| format!("{:?}", f.finding.kind))
            .collect()
    };
    // The echo sends everything back: found in both directions, never the IMEI
    // (these frames do not carry it).
    for dir in [Dir::Up, Dir::Down] {
        assert_eq!(
            kinds(dir),
            BTreeSet::from(["PhoneNumber".to_string(), "Position".to_string()]),
            "{found:#?}"
        );
    }
    let pos = found
        .iter()
        .find(|f| f.finding.kind == PiiKind::Position)
        .unwrap();
    assert_eq!((pos.flow, pos.host.as_str(), pos.port), (1, HOST, PORT));
    assert!(pos.finding.excerpt.contains("52.520100"), "{pos:?}");
    // 5 km away from what was fed: not the wearer's position.
    let far = gw.scan_cleartext(needles(52.565), 0, 20).await.unwrap();
    // Flows opened before `since` are not this scan's business.
    let later = gw
        .scan_cleartext(needles(52.520008), clock.now() + 1, 20)
        .await
        .unwrap();
    assert!(later.is_empty(), "{later:#?}");
    assert!(
        far.iter().all(|f| f.finding.kind != PiiKind::Position),
        "{far:#?}"
    );
    gw.shutdown().await.unwrap();
}

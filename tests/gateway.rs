//! The cell gateway against real sockets: relaying, sinkholes, TLS detection,
//! clear-text search, coverage loss and watch-protocol frames.

#[path = "support/gateway.rs"]
mod gw;
use gw::{start_gateway, tcp_echo, HOST, PORT};
use redrig::clock::Clock;
use redrig::drivers::NameService;
use redrig::gateway::{Dir, FlowEvent, FlowProtocol, Gateway, SINKHOLE_PORTS};
use std::net::Ipv4Addr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous device-time limit for waits (the clock runs 1000x).
const WAIT: f64 = 20_000.0;

fn id_of(ev: &FlowEvent) -> u64 {
    match ev {
        FlowEvent::Opened { id, .. }
        | FlowEvent::Closed { id, .. }
        | FlowEvent::Detected { id, .. }
        | FlowEvent::Frame { id, .. }
        | FlowEvent::Intercepted { id, .. } => *id,
    }
}

async fn closed(gw: &Gateway, id: u64) -> (u64, u64) {
    let r = gw
        .flows()
        .wait_for(
            redrig::drivers::Mark(0),
            WAIT,
            move |e| matches!(e, FlowEvent::Closed { id: i, .. } if *i == id),
        )
        .await
        .expect("flow closed");
    match r.value {
        FlowEvent::Closed {
            bytes_up,
            bytes_down,
            ..
        } => (bytes_up, bytes_down),
        _ => unreachable!(),
    }
}

/// Where `needle` occurs in the clear-text flows (the gateway's personal-data scan
/// with a needle of our own).
async fn found(gw: &Gateway, needle: &[u8]) -> Vec<redrig::gateway::CleartextFinding> {
    let needles = redrig::gateway::pii::PiiNeedles {
        other: vec![("needle".into(), needle.to_vec())],
        ..Default::default()
    };
    gw.scan_cleartext(needles, 0, 10).await.unwrap()
}

/// A sinkhole port this machine let the gateway bind for `addr`.
fn sink_port(gw: &Gateway, addr: Ipv4Addr) -> u16 {
    let (_, _, ports) = gw.hosts().into_iter().find(|(_, a, _)| *a == addr).unwrap();
    *ports
        .iter()
        .find(|p| SINKHOLE_PORTS.contains(p))
        .expect("some sinkhole port bound")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_to_the_upstream_and_records_the_flow() {
    let ev = tempfile::tempdir().unwrap();
    let gw = start_gateway(Some(tcp_echo().await), Clock::start(1000.0), ev.path()).await;
    let addr = gw.resolve(HOST).unwrap();
    assert_eq!(addr.octets()[0], 127);
    assert_ne!(addr, gw.address());
    // Same name, same address; case and a trailing dot do not matter.
    assert_eq!(gw.resolve("Watch.KidCloud.example."), Some(addr));

    let mark = gw.flows().mark();
    let mut s = TcpStream::connect((addr, PORT)).await.unwrap();
    s.write_all(b"hello, cloud").await.unwrap();
    let mut back = [0u8; 12];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"hello, cloud");
    drop(s);

    let opened = gw
        .flows()
        .wait_for(mark, WAIT, |e| matches!(e, FlowEvent::Opened { .. }))
        .await
        .unwrap();
    let FlowEvent::Opened {
        id,
        host,
        port,
        upstream,
    } = opened.value
    else {
        unreachable!()
    };
    assert_eq!((host.as_str(), port), (HOST, PORT));
    assert!(upstream.unwrap().starts_with("127.0.0.1:"));
    assert_eq!(closed(&gw, id).await, (12, 12));

    let sum = gw.summaries().into_iter().find(|f| f.id == id).unwrap();
    assert_eq!((sum.bytes_up, sum.bytes_down), (12, 12));
    assert_eq!(sum.protocol, FlowProtocol::ClearText);
    assert!(sum.is_cleartext() && sum.tls.is_none());
    assert!(sum.end.is_some());
    gw.shutdown().await.unwrap();
    assert_eq!(
        std::fs::read(ev.path().join(format!("flow-{id}-up.bin"))).unwrap(),
        b"hello, cloud"
    );
    assert_eq!(
        std::fs::read(ev.path().join(format!("flow-{id}-down.bin"))).unwrap(),
        b"hello, cloud"
    );
    let jsonl = std::fs::read_to_string(ev.path().join("flows.jsonl")).unwrap();
    assert!(
        jsonl
            .lines()
            .any(|l| l.contains("\"opened\"") && l.contains(HOST)),
        "{jsonl}"
    );
    assert!(
        jsonl
            .lines()
            .any(|l| l.contains("\"closed\"") && l.contains("\"bytes_up\":12")),
        "{jsonl}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_host_gets_its_own_address_and_undeclared_hosts_are_sinkholed() {
    let ev = tempfile::tempdir().unwrap();
    let gw = start_gateway(Some(tcp_echo().await), Clock::start(1000.0), ev.path()).await;
    let a = gw.resolve(HOST).unwrap();
    let b = gw.resolve("tracker.analytics.example").unwrap();
    let c = gw.resolve("203.0.113.7").unwrap(); // a literal address is a name too
    assert!(a != b && b != c && a != c);
    assert_eq!(gw.resolve("bad name with spaces"), None);

    // The undeclared host on the device port: accepted, recorded, never answered.
    let mark = gw.flows().mark();
    let mut s = TcpStream::connect((b, PORT)).await.unwrap();
    s.write_all(b"[3G*1234567890*0002*LK]").await.unwrap();
    let frame = gw
        .flows()
        .wait_for(mark, WAIT, |e| matches!(e, FlowEvent::Frame { .. }))
        .await
        .unwrap();
    let opened = gw
        .flows()
        .since(mark)
        .into_iter()
        .find(|r| matches!(r.value, FlowEvent::Opened { .. }))
        .unwrap();
    let FlowEvent::Opened { host, upstream, .. } = &opened.value else {
        unreachable!()
    };
    assert_eq!(host, "tracker.analytics.example");
    assert_eq!(upstream, &None);
    assert_eq!(id_of(&frame.value), id_of(&opened.value));
    s.shutdown().await.unwrap();
    // The sinkhole never sends a byte: the watch sees only the end of the stream
    // once the gateway closes after the watch's FIN.
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    assert_eq!(closed(&gw, id_of(&opened.value)).await, (23, 0));

    // A host on the device host's address but another port is a sinkhole too.
    let p = sink_port(&gw, a);
    let mark = gw.flows().mark();
    let s = TcpStream::connect((a, p)).await.unwrap();
    let opened = gw
        .flows()
        .wait_for(mark, WAIT, |e| matches!(e, FlowEvent::Opened { .. }))
        .await
        .unwrap();
    let FlowEvent::Opened {
        host,
        port,
        upstream,
        ..
    } = opened.value
    else {
        unreachable!()
    };
    assert_eq!((host.as_str(), port, upstream), (HOST, p, None));
    drop(s);
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_hello_is_detected_with_sni_on_a_sinkhole() {
    let ev = tempfile::tempdir().unwrap();
    let gw = start_gateway(None, Clock::start(1000.0), ev.path()).await;
    let addr = gw.resolve("push.vendor.example").unwrap();
    let port = sink_port(&gw, addr);
    let mark = gw.flows().mark();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect((addr, port)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("push.vendor.example").unwrap();
    // The sinkhole never answers: the handshake stays pending.
    let handshake = tokio::spawn(async move { connector.connect(name, tcp).await.map(|_| ()) });

    let det = gw
        .flows()
        .wait_for(mark, WAIT, |e| matches!(e, FlowEvent::Detected { .. }))
        .await
        .unwrap();
    let FlowEvent::Detected { id, protocol } = det.value else {
        unreachable!()
    };
    let FlowProtocol::Tls(hello) = protocol else {
        panic!("{protocol:?}")
    };
    assert_eq!(hello.sni.as_deref(), Some("push.vendor.example"));
    assert_eq!(hello.version, 0x0304);
    assert_eq!(hello.version_name(), "TLS 1.3");
    assert!(hello.offered.contains(&0x0303));
    assert_eq!(hello.error, None);
    assert!(!handshake.is_finished());
    // TLS bytes are not clear text: a string inside the ClientHello is not found.
    assert!(found(&gw, b"push.vendor.example").await.is_empty());
    let sum = gw.summaries().into_iter().find(|s| s.id == id).unwrap();
    assert_eq!(sum.tls, Some(hello));
    assert!(!sum.is_cleartext());
    assert!(sum.bytes_up > 0);
    assert_eq!(sum.bytes_down, 0);
    handshake.abort();
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_text_search_finds_what_the_watch_sent() {
    let ev = tempfile::tempdir().unwrap();
    let gw = start_gateway(Some(tcp_echo().await), Clock::start(1000.0), ev.path()).await;
    assert!(found(&gw, b"hunter2").await.is_empty());
    let addr = gw.resolve("leaky.example").unwrap();
    let mark = gw.flows().mark();
    let mut s = TcpStream::connect((addr, sink_port(&gw, addr)))
        .await
        .unwrap();
    // Big enough to cross the search's chunk boundary.
    let mut body = vec![b'x'; 100_000];
    body.extend_from_slice(b"password=hunter2");
    s.write_all(&body).await.unwrap();
    drop(s);
    let opened = gw
        .flows()
        .wait_for(mark, WAIT, |e| matches!(e, FlowEvent::Opened { .. }))
        .await
        .unwrap();
    closed(&gw, id_of(&opened.value)).await;
    let hits = found(&gw, b"password=hunter2").await;
    assert_eq!(hits.len(), 1, "{hits:#?}");
    assert_eq!(hits[0].host, "leaky.example");
    assert_eq!(hits[0].dir, Dir::Up);
    assert_eq!(hits[0].finding.offset, 100_000);
    assert!(found(&gw, b"password=hunter3").await.is_empty());
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coverage_loss_resets_flows_and_fails_resolution() {
    let ev = tempfile::tempdir().unwrap();
    let gw = start_gateway(Some(tcp_echo().await), Clock::start(1000.0), ev.path()).await;
    let addr = gw.resolve(HOST).unwrap();
    let mark = gw.flows().mark();
    let mut s = TcpStream::connect((addr, PORT)).await.unwrap();
    s.write_all(b"ping").await.unwrap();
    let mut b = [0u8; 4];
    s.read_exact(&mut b).await.unwrap();
    let opened = gw
        .flows()
        .wait_for(mark, WAIT, |e| matches!(e, FlowEvent::Opened { .. }))
        .await
        .unwrap();

    gw.set_coverage(false);
    assert_eq!(gw.resolve(HOST), None);
    assert_eq!(gw.resolve("new.example"), None);
    let err = s.read(&mut b).await.expect_err("the flow must be reset");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    let id = id_of(&opened.value);
    assert_eq!(closed(&gw, id).await, (4, 4));
    let sum = gw.summaries().into_iter().find(|f| f.id == id).unwrap();
    assert!(sum.end.unwrap().contains("coverage"));

    // A connection made while there is no coverage is reset too (and recorded).
    let mark = gw.flows().mark();
    if let Ok(mut s2) = TcpStream::connect((addr, PORT)).await {
        let _ = s2.write_all(b"x").await;
        assert!(matches!(s2.read(&mut b).await, Err(_) | Ok(0)));
    }
    gw.flows()
        .wait_for(mark, WAIT, |e| matches!(e, FlowEvent::Closed { .. }))
        .await
        .unwrap();

    gw.set_coverage(true);
    assert_eq!(gw.resolve(HOST), Some(addr));
    let mut s3 = TcpStream::connect((addr, PORT)).await.unwrap();
    s3.write_all(b"back").await.unwrap();
    s3.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"back");
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_protocol_frames_are_decoded_from_a_plain_flow_both_ways() {
    let ev = tempfile::tempdir().unwrap();
    let gw = start_gateway(Some(tcp_echo().await), Clock::start(1000.0), ev.path()).await;
    let addr = gw.resolve(HOST).unwrap();
    let mark = gw.flows().mark();
    let mut s = TcpStream::connect((addr, PORT)).await.unwrap();
    // One frame split over two writes, then two frames in one write.
    s.write_all(b"[3G*1234567890*000A*LK,0,0").await.unwrap();
    s.flush().await.unwrap();
    let mut got = vec![0u8; 26];
    s.read_exact(&mut got).await.unwrap();
    let second = b",53][SG*1234567890*0004*CALL][3G*1234567890*0002*TKQ]";
    s.write_all(second).await.unwrap();
    let mut rest = vec![0u8; second.len()];
    s.read_exact(&mut rest).await.unwrap();
    drop(s);
    let opened = gw
        .flows()
        .wait_for(mark, WAIT, |e| matches!(e, FlowEvent::Opened { .. }))
        .await
        .unwrap();
    closed(&gw, id_of(&opened.value)).await;
    let frames: Vec<(Dir, String)> = gw
        .flows()
        .since(mark)
        .into_iter()
        .filter_map(|r| match r.value {
            FlowEvent::Frame { dir, frame, .. } => Some((dir, frame)),
            _ => None,
        })
        .collect();
    let up: Vec<&str> = frames
        .iter()
        .filter(|(d, _)| *d == Dir::Up)
        .map(|(_, f)| f.as_str())
        .collect();
    let down: Vec<&str> = frames
        .iter()
        .filter(|(d, _)| *d == Dir::Down)
        .map(|(_, f)| f.as_str())
        .collect();
    let expect = [
        "[3G*1234567890*000A*LK,0,0,53]",
        "[SG*1234567890*0004*CALL]",
        "[3G*1234567890*0002*TKQ]",
    ];
    assert_eq!(up, expect);
    assert_eq!(down, expect);
    let sum = gw
        .summaries()
        .into_iter()
        .find(|f| f.id == id_of(&opened.value))
        .unwrap();
    assert_eq!(sum.frames, 6);
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_upstream_resets_the_watch_and_is_recorded() {
    let ev = tempfile::tempdir().unwrap();
    // A port nobody listens on: bind, learn the port, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = start_gateway(Some(dead), Clock::start(1000.0), ev.path()).await;
    let addr = gw.resolve(HOST).unwrap();
    let mark = gw.flows().mark();
    // The gateway resets the connection at once; on loopback the reset may even
    // beat the end of connect().
    if let Ok(mut s) = TcpStream::connect((addr, PORT)).await {
        let mut b = [0u8; 1];
        assert!(matches!(s.read(&mut b).await, Err(_) | Ok(0)));
    }
    let opened = gw
        .flows()
        .wait_for(mark, WAIT, |e| matches!(e, FlowEvent::Opened { .. }))
        .await
        .unwrap();
    let id = id_of(&opened.value);
    closed(&gw, id).await;
    let sum = gw.summaries().into_iter().find(|f| f.id == id).unwrap();
    assert!(sum.end.unwrap().contains("refused"));
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_byte_of_a_large_flow_is_recorded() {
    let ev = tempfile::tempdir().unwrap();
    let gw = start_gateway(Some(tcp_echo().await), Clock::start(1000.0), ev.path()).await;
    let addr = gw.resolve(HOST).unwrap();
    let mark = gw.flows().mark();
    let s = TcpStream::connect((addr, PORT)).await.unwrap();
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let (mut r, mut w) = s.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    r.read_to_end(&mut back).await.unwrap();
    writer.await.unwrap();
    assert_eq!(back, data);
    let opened = gw
        .flows()
        .wait_for(mark, WAIT, |e| matches!(e, FlowEvent::Opened { .. }))
        .await
        .unwrap();
    let id = id_of(&opened.value);
    assert_eq!(closed(&gw, id).await, (3_000_000, 3_000_000));
    gw.shutdown().await.unwrap();
    assert_eq!(
        std::fs::read(ev.path().join(format!("flow-{id}-up.bin"))).unwrap(),
        data
    );
    assert_eq!(
        std::fs::read(ev.path().join(format!("flow-{id}-down.bin"))).unwrap(),
        data
    );
}

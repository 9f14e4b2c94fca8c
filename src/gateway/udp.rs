//! UDP on the gateway: a relay for datagrams to the ports a host is relayed on, a
//! sinkhole for the others, and a DNS server on the gateway's own address.
//!
//! Each host address gets a UDP socket on every port its TCP listeners use. A
//! datagram from the watch opens (or continues) an *association* — the UDP
//! counterpart of a flow, keyed by the watch's address and port — with its own flow
//! id, summary (`transport: udp`), events and capture records. A relayed association
//! has an upstream socket connected to the host's upstream; replies come back from
//! the host's address and port, as the watch expects. Both directions go through the
//! impairment delay lines as datagrams (loss drops them, jitter may reorder). An
//! association ends after [`UDP_IDLE_MS`] device milliseconds without a datagram,
//! when coverage is lost, or at shutdown. Datagrams are evidence in
//! `flow-<id>-up.bin` / `flow-<id>-down.bin`, each preceded by its length as two
//! bytes big-endian (datagram boundaries are kept), and in the capture.
//!
//! DNS: a standard DNS server (UDP) on the gateway address, port [`DNS_PORT`],
//! answers A queries from the same host table as `AT+QIDNSGIP` (allocating an
//! address for a new name), NOERROR without answers for other types of a valid
//! name, SERVFAIL without coverage, FORMERR for what it cannot parse. Binding port
//! 53 needs privilege; without it the server is not started and `gateway.log` says
//! so.

use super::{
    dns, impair, pcap, valid_host, Dir, FlowEvent, FlowProtocol, FlowSummary, Route, Shared,
    PCAP_FILE,
};
use crate::drivers::NameService;
use bytes::Bytes;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;

/// An association ends after this long without a datagram (device ms).
pub const UDP_IDLE_MS: u64 = 120_000;
/// Associations open at once on one socket; datagrams that would open more are
/// dropped and noted.
pub const MAX_ASSOCIATIONS: usize = 128;
/// The DNS server's port on the gateway address.
pub const DNS_PORT: u16 = 53;
/// Largest datagram read.
const MAX_DATAGRAM: usize = 65_535;
/// Bytes of datagrams queued per direction and association (impairments).
const UDP_IN_FLIGHT: usize = 1024 * 1024;
/// TTL of DNS answers (seconds).
const DNS_TTL: u32 = 60;

struct Association {
    tx_up: impair::DelayTx,
    last_seen: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::AbortHandle,
}

fn v4(a: SocketAddr) -> SocketAddrV4 {
    match a {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
    }
}

fn framed(d: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(d.len() + 2);
    v.extend_from_slice(&(d.len().min(u16::MAX as usize) as u16).to_be_bytes());
    v.extend_from_slice(d);
    Bytes::from(v)
}

impl Shared {
    /// Serve one UDP port of one host address.
    pub(super) async fn udp_loop(self: Arc<Self>, sock: UdpSocket, idx: usize, port: u16) {
        let sock = Arc::new(sock);
        let local = sock
            .local_addr()
            .map(v4)
            .unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
        let mut assocs: HashMap<SocketAddrV4, Association> = HashMap::new();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut reset_rx = self.reset.subscribe();
        let mut closing_rx = self.closing.subscribe();
        loop {
            let got = tokio::select! {
                r = sock.recv_from(&mut buf) => r,
                // Each association sees the reset or the closing itself and records
                // its end; here they are only forgotten.
                _ = reset_rx.changed() => {
                    assocs.clear();
                    continue;
                }
                _ = closing_rx.changed() => return,
            };
            let (n, peer) = match got {
                Ok(x) => x,
                Err(e) => {
                    self.note(format!("udp {local}: {e}"));
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let peer = v4(peer);
            let datagram = Bytes::copy_from_slice(&buf[..n]);
            if !self.coverage.load(Ordering::SeqCst) {
                continue; // no network: the datagram is lost
            }
            let now = self.clock.now();
            // An idle association ends by itself (and records it); forget it here.
            assocs.retain(|_, a| {
                !a.task.is_finished()
                    && now.saturating_sub(a.last_seen.load(Ordering::Relaxed)) < UDP_IDLE_MS
            });
            if !assocs.contains_key(&peer) {
                if assocs.len() >= MAX_ASSOCIATIONS {
                    self.note(format!(
                        "udp {local}: more than {MAX_ASSOCIATIONS} associations; datagram from {peer} dropped"
                    ));
                    continue;
                }
                let (host, route) = {
                    let hosts = self.hosts.lock().unwrap();
                    let e = &hosts.entries[idx];
                    (e.name.clone(), e.route_for(port))
                };
                let upstream = match route {
                    Route::Relay(u) => Some(u),
                    _ => None,
                };
                let a = self
                    .clone()
                    .open_association(sock.clone(), local, peer, host, port, upstream)
                    .await;
                assocs.insert(peer, a);
            }
            let a = assocs.get_mut(&peer).expect("inserted above");
            a.last_seen.store(now, Ordering::Relaxed);
            if a.tx_up.send(datagram).await.is_err() {
                assocs.remove(&peer);
            }
        }
    }

    async fn open_association(
        self: Arc<Self>,
        sock: Arc<UdpSocket>,
        local: SocketAddrV4,
        peer: SocketAddrV4,
        host: String,
        port: u16,
        upstream: Option<String>,
    ) -> Association {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let summary = self.new_summary(id, &host, port, upstream.clone());
        {
            let mut s = summary.lock().unwrap();
            s.transport = super::Transport::Udp;
            s.protocol = FlowProtocol::ClearText;
        }
        self.record(FlowEvent::Opened {
            id,
            host: host.clone(),
            port,
            upstream: upstream.clone(),
        })
        .await;
        let seed = id.wrapping_mul(2);
        let (tx_up, rx_up) = impair::delay_line(
            self.clock,
            self.impairment(Dir::Up).clone(),
            false,
            UDP_IN_FLIGHT,
            seed,
        );
        let last_seen = Arc::new(std::sync::atomic::AtomicU64::new(self.clock.now()));
        let me = self.clone();
        let seen = last_seen.clone();
        let task = self.runtime.spawn(async move {
            me.association(id, summary, sock, local, peer, upstream, rx_up, seen)
                .await;
        });
        Association {
            tx_up,
            last_seen,
            task: task.abort_handle(),
        }
    }

    /// One association's life: datagrams up (already in the delay line) to the
    /// upstream, replies down to the watch, until idle or cut.
    #[allow(clippy::too_many_arguments)]
    async fn association(
        self: Arc<Self>,
        id: u64,
        summary: Arc<Mutex<FlowSummary>>,
        sock: Arc<UdpSocket>,
        local: SocketAddrV4,
        peer: SocketAddrV4,
        upstream: Option<String>,
        mut rx_up: impair::DelayRx,
        last_seen: Arc<std::sync::atomic::AtomicU64>,
    ) {
        let up_sock = match &upstream {
            Some(u) => match UdpSocket::bind("127.0.0.1:0").await {
                Ok(s) => match s.connect(u.as_str()).await {
                    Ok(()) => Some(s),
                    Err(e) => {
                        self.note(format!("udp flow {id}: upstream {u}: {e}"));
                        None
                    }
                },
                Err(e) => {
                    self.note(format!("udp flow {id}: {e}"));
                    None
                }
            },
            None => None,
        };
        let (mut tx_down, mut rx_down) = impair::delay_line(
            self.clock,
            self.impairment(Dir::Down).clone(),
            false,
            UDP_IN_FLIGHT,
            id.wrapping_mul(2).wrapping_add(1),
        );
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut reset_rx = self.reset.subscribe();
        let mut closing_rx = self.closing.subscribe();
        let idle = self.clock.wall(UDP_IDLE_MS as f64 / 1000.0);
        let end = loop {
            let since = self
                .clock
                .now()
                .saturating_sub(last_seen.load(Ordering::Relaxed));
            if since >= UDP_IDLE_MS {
                break "idle".to_string();
            }
            let from_upstream = async {
                match &up_sock {
                    Some(s) => s.recv(&mut buf).await.map(|n| buf[..n].to_vec()),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                d = rx_up.recv() => {
                    let Some(d) = d else { break "closed".into() };
                    self.udp_datagram(id, &summary, peer, local, &d).await;
                    if let Some(s) = &up_sock {
                        let _ = s.send(&d).await;
                    }
                }
                r = from_upstream => match r {
                    Ok(d) => {
                        let _ = self.writer.append(&format!("flow-{id}-down.bin"), framed(&d)).await;
                        summary.lock().unwrap().bytes_down += d.len() as u64;
                        let _ = tx_down.send(Bytes::from(d)).await;
                    }
                    Err(e) => break format!("upstream: {e}"),
                },
                d = rx_down.recv() => {
                    if let Some(d) = d {
                        self.capture_udp(peer, local, false, &d).await;
                        let _ = sock.send_to(&d, SocketAddr::V4(peer)).await;
                    }
                }
                _ = tokio::time::sleep(idle) => {}
                _ = reset_rx.changed() => break "reset by the network".into(),
                _ = closing_rx.changed() => break "closed: rig shutting down".into(),
            }
        };
        self.finish_flow(id, &summary, end).await;
    }

    /// A datagram from the watch (`src`) to `dst`: evidence, count, capture.
    async fn udp_datagram(
        &self,
        id: u64,
        summary: &Arc<Mutex<FlowSummary>>,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        d: &[u8],
    ) {
        let _ = self
            .writer
            .append(&format!("flow-{id}-up.bin"), framed(d))
            .await;
        summary.lock().unwrap().bytes_up += d.len() as u64;
        self.capture_udp(src, dst, true, d).await;
    }

    /// A datagram between the watch and `peer` in the capture, stamped now.
    async fn capture_udp(
        &self,
        watch: SocketAddrV4,
        peer: SocketAddrV4,
        from_watch: bool,
        d: &[u8],
    ) {
        let _guard = self.pcap.lock().await;
        let rec = pcap::udp_record(watch, peer, from_watch, d, std::time::SystemTime::now());
        let _ = self.writer.append(PCAP_FILE, rec).await;
    }

    /// The DNS server on the gateway address.
    pub(super) async fn dns_loop(self: Arc<Self>, sock: UdpSocket, gw: Weak<super::Gateway>) {
        let mut buf = vec![0u8; 4096];
        let local = sock
            .local_addr()
            .map(v4)
            .unwrap_or(SocketAddrV4::new(self.gateway_addr, DNS_PORT));
        let mut closing_rx = self.closing.subscribe();
        loop {
            let (n, peer) = tokio::select! {
                r = sock.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(_) => continue,
                },
                _ = closing_rx.changed() => return,
            };
            let req = &buf[..n];
            let peer4 = v4(peer);
            self.capture_udp(peer4, local, true, req).await;
            let answer = match dns::parse_query(req) {
                Err(e) => {
                    self.note(format!("dns: bad request from {peer}: {e}"));
                    match dns::answer_bad_request(req) {
                        Some(a) => a,
                        None => continue, // a response or a fragment: never answer
                    }
                }
                Ok(q) if !self.coverage.load(Ordering::SeqCst) => {
                    dns::answer_error(q.id, dns::RCODE_SERVFAIL, req)
                }
                Ok(q) if q.name.is_empty() || !valid_host(&q.name) => {
                    dns::answer_error(q.id, dns::RCODE_REFUSED, req)
                }
                Ok(q)
                    if q.qclass == dns::CLASS_IN
                        && (q.qtype == dns::TYPE_A || q.qtype == dns::TYPE_ANY) =>
                {
                    match gw.upgrade().and_then(|g| g.resolve(&q.name)) {
                        Some(a) => dns::answer_a(&q, a, DNS_TTL, req),
                        None => dns::answer_error(q.id, dns::RCODE_REFUSED, req),
                    }
                }
                // Another type of a name the network knows (or will know): no data.
                Ok(q) => dns::answer_empty(&q, req),
            };
            self.capture_udp(peer4, local, false, &answer).await;
            let _ = sock.send_to(&answer, peer).await;
        }
    }
}

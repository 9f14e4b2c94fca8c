//! A classic pcap encoder for the gateway's flows.
//!
//! The gateway relays the watch's connections in user space, so it sees byte streams,
//! not packets. This module synthesises the packets those streams would have produced
//! on an Ethernet link and encodes them as classic pcap records (`gateway.pcap`) that
//! Wireshark, tshark and other pcap readers open:
//!
//! - [`file_header`]: the 24-byte global header (nanosecond timestamps, snaplen
//!   [`SNAPLEN`], link type Ethernet).
//! - [`TcpCapture`]: one TCP connection, from handshake through data (segmented to
//!   [`MSS`] bytes and acknowledged) to a FIN close or a reset (or a refused
//!   connection attempt), with sequence and acknowledgement numbers that are
//!   consistent throughout (wrapping at 2^32).
//! - [`udp_record`]: one UDP datagram.
//!
//! Every packet is Ethernet II + IPv4 (20-byte header, DF set, TTL 64, header
//! checksum) + TCP (window 65535, checksum over the pseudo-header; the SYN and SYN-ACK
//! carry an MSS option of 1460) or UDP (checksum over the pseudo-header). The link
//! addresses are fixed locally administered MACs: [`WATCH_MAC`] for the watch's side
//! (the cell network) and [`GATEWAY_MAC`] for the gateway's side; a packet from the
//! watch goes from `WATCH_MAC` to `GATEWAY_MAC`, a packet to it the other way round.
//!
//! Records are written little-endian and carry the whole frame: a record's captured
//! length always equals its original length, and no record exceeds [`SNAPLEN`] (the
//! largest is a maximal UDP datagram, 65,549 bytes with its Ethernet header).
//!
//! What is synthesised and what is not: packets are what a loss-free exchange would
//! show (no retransmissions, no window scaling, SACK or TCP timestamps, no IP
//! fragmentation); the timing is the caller's (every packet of one call carries the
//! call's timestamp); IPv6 is not supported. Each function returns the bytes to
//! append to the file; nothing here does I/O. The work and memory of a call are linear
//! in its payload.

use std::net::SocketAddrV4;
use std::time::{SystemTime, UNIX_EPOCH};

/// Snapshot length written in the global header; no record is longer.
pub const SNAPLEN: u32 = 262_144;
/// Link type in the global header: `LINKTYPE_ETHERNET`.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Magic number of a classic pcap file with nanosecond-resolution timestamps.
pub const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// Largest TCP payload of one synthesised segment (and the MSS the SYNs announce).
pub const MSS: usize = 1460;
/// Largest UDP payload an IPv4 datagram can carry (65535 - 20 - 8); [`udp_record`]
/// cuts longer payloads to this.
pub const MAX_UDP_PAYLOAD: usize = 65_507;
/// Window every TCP segment advertises (no window scaling).
pub const WINDOW: u16 = 65_535;
/// A receiver acknowledges after at most this many segments, so a sender never has
/// more than [`WINDOW`] bytes unacknowledged (32 × 1460 = 46,720).
pub const ACK_EVERY_SEGMENTS: usize = 32;
/// Link address of the watch's side (the cell network): locally administered, unicast.
pub const WATCH_MAC: [u8; 6] = [0x02, 0x72, 0x64, 0x00, 0x00, 0x01];
/// Link address of the gateway's side: locally administered, unicast.
pub const GATEWAY_MAC: [u8; 6] = [0x02, 0x72, 0x64, 0x00, 0x00, 0x02];
/// Time to live of every IPv4 packet.
pub const TTL: u8 = 64;

const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const TCP_LEN: usize = 20;
const UDP_LEN: usize = 8;
const RECORD_HEADER_LEN: usize = 16;
/// Record length of a TCP packet without payload: record header, Ethernet, IPv4, TCP.
const BARE_TCP_RECORD: usize = RECORD_HEADER_LEN + ETH_LEN + IPV4_LEN + TCP_LEN;
/// Upper bound of a handshake's records (the SYNs carry 4 bytes of options).
const HANDSHAKE_RECORDS: usize = 3 * BARE_TCP_RECORD + 8;
const ETHERTYPE_IPV4: u16 = 0x0800;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
/// MSS option: kind 2, length 4, value 1460.
const MSS_OPTION: [u8; 4] = [2, 4, (MSS >> 8) as u8, (MSS & 0xff) as u8];

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// The 24-byte classic pcap global header: nanosecond-resolution magic
/// ([`MAGIC_NANOS`]), version 2.4, time zone and accuracy 0, snaplen [`SNAPLEN`],
/// link type [`LINKTYPE_ETHERNET`]. Little-endian, like every record this module
/// writes.
pub fn file_header() -> Vec<u8> {
    let mut h = Vec::with_capacity(24);
    h.extend_from_slice(&MAGIC_NANOS.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&4u16.to_le_bytes());
    h.extend_from_slice(&0i32.to_le_bytes()); // thiszone
    h.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    h.extend_from_slice(&SNAPLEN.to_le_bytes());
    h.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    h
}

/// A record timestamp: seconds and nanoseconds since the Unix epoch. A time before
/// the epoch is clamped to 0; one past the 32-bit seconds field (year 2106) is clamped
/// to its largest value.
fn timestamp(ts: SystemTime) -> (u32, u32) {
    match ts.duration_since(UNIX_EPOCH) {
        Ok(d) => match u32::try_from(d.as_secs()) {
            Ok(s) => (s, d.subsec_nanos()),
            Err(_) => (u32::MAX, 999_999_999),
        },
        Err(_) => (0, 0),
    }
}

/// Ones' complement sum of `data` as big-endian 16-bit words (an odd last byte is
/// padded with zero), added to `acc`. Not folded.
fn sum_words(mut acc: u64, data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a sum to 16 bits and complements it: the Internet checksum (RFC 1071).
fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Internet checksum of `data` (an IPv4 header with its checksum field zero).
fn internet_checksum(data: &[u8]) -> u16 {
    fold(sum_words(0, data))
}

/// TCP or UDP checksum of `segment` (header with checksum field zero, then payload)
/// over the IPv4 pseudo-header. The caller keeps `segment` under 65,536 bytes.
fn transport_checksum(src: [u8; 4], dst: [u8; 4], proto: u8, segment: &[u8]) -> u16 {
    let mut acc = sum_words(0, &src);
    acc = sum_words(acc, &dst);
    acc += u64::from(proto);
    acc += segment.len() as u64;
    fold(sum_words(acc, segment))
}

/// Appends the pcap record header and the Ethernet and IPv4 headers of a packet whose
/// IP payload is `ip_payload_len` bytes, with the IPv4 checksum filled in. Returns
/// the offset of the IP payload in `out`. `ip_payload_len` is at most 65,515.
#[allow(clippy::too_many_arguments)]
fn begin_packet(
    out: &mut Vec<u8>,
    ts: SystemTime,
    from_watch: bool,
    src: [u8; 4],
    dst: [u8; 4],
    ip_id: u16,
    proto: u8,
    ip_payload_len: usize,
) -> usize {
    let ip_total = IPV4_LEN + ip_payload_len;
    let frame_len = (ETH_LEN + ip_total) as u32;
    let (sec, nsec) = timestamp(ts);
    out.extend_from_slice(&sec.to_le_bytes());
    out.extend_from_slice(&nsec.to_le_bytes());
    out.extend_from_slice(&frame_len.to_le_bytes()); // captured
    out.extend_from_slice(&frame_len.to_le_bytes()); // original: the same, always

    let (src_mac, dst_mac) = if from_watch {
        (WATCH_MAC, GATEWAY_MAC)
    } else {
        (GATEWAY_MAC, WATCH_MAC)
    };
    out.extend_from_slice(&dst_mac);
    out.extend_from_slice(&src_mac);
    out.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());

    let ip_start = out.len();
    out.push(0x45); // version 4, 5 words
    out.push(0); // DSCP / ECN
    out.extend_from_slice(&(ip_total as u16).to_be_bytes());
    out.extend_from_slice(&ip_id.to_be_bytes());
    out.extend_from_slice(&0x4000u16.to_be_bytes()); // DF, offset 0
    out.push(TTL);
    out.push(proto);
    out.extend_from_slice(&[0, 0]); // checksum, below
    out.extend_from_slice(&src);
    out.extend_from_slice(&dst);
    let sum = internet_checksum(&out[ip_start..ip_start + IPV4_LEN]);
    out[ip_start + 10..ip_start + 12].copy_from_slice(&sum.to_be_bytes());
    out.len()
}

/// One UDP datagram as a pcap record. `watch` is the watch's address and port,
/// `peer` the other end's; `from_watch` says which of them sent it.
///
/// A payload longer than [`MAX_UDP_PAYLOAD`] cannot be one IPv4 datagram: only its
/// first `MAX_UDP_PAYLOAD` bytes are recorded, and the record is a complete,
/// consistent datagram of that length (its captured and original lengths are equal,
/// its IP and UDP lengths and checksum describe the bytes present). The record does
/// not say that bytes were cut; a caller that must note it compares the payload's
/// length with `MAX_UDP_PAYLOAD`. The IP id is 0 (the datagram is never fragmented).
pub fn udp_record(
    watch: SocketAddrV4,
    peer: SocketAddrV4,
    from_watch: bool,
    payload: &[u8],
    ts: SystemTime,
) -> Vec<u8> {
    let payload = &payload[..payload.len().min(MAX_UDP_PAYLOAD)];
    let (src, dst) = if from_watch {
        (watch, peer)
    } else {
        (peer, watch)
    };
    let udp_len = UDP_LEN + payload.len();
    let mut out = Vec::with_capacity(RECORD_HEADER_LEN + ETH_LEN + IPV4_LEN + udp_len);
    let start = begin_packet(
        &mut out,
        ts,
        from_watch,
        src.ip().octets(),
        dst.ip().octets(),
        0,
        PROTO_UDP,
        udp_len,
    );
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out.extend_from_slice(&(udp_len as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
    let mut sum = transport_checksum(
        src.ip().octets(),
        dst.ip().octets(),
        PROTO_UDP,
        &out[start..],
    );
    if sum == 0 {
        sum = 0xffff; // 0 means "no checksum" in UDP
    }
    out[start + 6..start + 8].copy_from_slice(&sum.to_be_bytes());
    out
}

/// SplitMix64: spreads a seed into well-mixed values (not for secrecy).
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One side of a TCP connection.
#[derive(Clone, Debug)]
struct Side {
    addr: SocketAddrV4,
    /// Sequence number of the next byte (or SYN/FIN) this side sends.
    next_seq: u32,
    /// IP id of this side's next packet.
    ip_id: u16,
    /// This side has sent its FIN.
    fin_sent: bool,
}

/// Where a connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No packet yet.
    New,
    /// Handshake done; zero, one or both sides may have sent their FIN.
    Open,
    /// Both FINs sent and acknowledged, or a reset, or a refused connection: nothing
    /// more is recorded.
    Closed,
}

/// One TCP connection's synthetic packets. `client` is the watch's address and port,
/// `server` the address and port it connected to.
///
/// The methods are called in the order things happened and each returns the pcap
/// records to append. The connection's state is tracked so that the packets stay
/// consistent:
///
/// - [`data`](Self::data), [`fin`](Self::fin) and [`reset`](Self::reset) on a
///   connection with no handshake yet record the handshake first (with the same
///   timestamp); a second [`handshake`](Self::handshake) records nothing.
/// - After a side's FIN that side sends no more data: bytes it is given are not
///   recorded but counted ([`unrecorded_bytes`](Self::unrecorded_bytes)); a second FIN
///   from the same side records nothing. The other side may go on sending (a
///   half-close).
/// - Once both FINs are sent, or after a reset, the connection is closed and every
///   call records nothing (data given then is counted as unrecorded).
#[derive(Clone, Debug)]
pub struct TcpCapture {
    client: Side,
    server: Side,
    state: State,
    unrecorded: u64,
}

impl TcpCapture {
    /// A connection whose initial sequence numbers and first IP ids are derived from
    /// `isn_seed` (the same seed gives the same packets; different seeds, unrelated
    /// numbers).
    pub fn new(client: SocketAddrV4, server: SocketAddrV4, isn_seed: u64) -> TcpCapture {
        let mut state = isn_seed;
        let isns = splitmix64(&mut state);
        let ids = splitmix64(&mut state);
        let mut c = TcpCapture::with_isns(client, server, isns as u32, (isns >> 32) as u32);
        c.client.ip_id = ids as u16;
        c.server.ip_id = (ids >> 16) as u16;
        c
    }

    /// A connection with the given initial sequence numbers (the SYN's and the
    /// SYN-ACK's); IP ids start at 1 on both sides.
    pub fn with_isns(
        client: SocketAddrV4,
        server: SocketAddrV4,
        client_isn: u32,
        server_isn: u32,
    ) -> TcpCapture {
        TcpCapture {
            client: Side {
                addr: client,
                next_seq: client_isn,
                ip_id: 1,
                fin_sent: false,
            },
            server: Side {
                addr: server,
                next_seq: server_isn,
                ip_id: 1,
                fin_sent: false,
            },
            state: State::New,
            unrecorded: 0,
        }
    }

    /// Whether the connection is closed (both FINs, a reset, or refused): further
    /// calls record nothing.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Payload bytes given to [`data`](Self::data) that were not recorded because
    /// their sender had already sent its FIN or the connection was closed.
    pub fn unrecorded_bytes(&self) -> u64 {
        self.unrecorded
    }

    /// The sequence number each side will use next: `(client, server)`. After the
    /// handshake, each is also what the other side acknowledges.
    pub fn next_seqs(&self) -> (u32, u32) {
        (self.client.next_seq, self.server.next_seq)
    }

    /// Appends one segment from the client (`from_client`) or the server, advancing
    /// the sender's IP id (the caller advances sequence numbers). A SYN carries the
    /// MSS option.
    fn segment(
        &mut self,
        out: &mut Vec<u8>,
        from_client: bool,
        flags: u8,
        ack: u32,
        payload: &[u8],
        ts: SystemTime,
    ) {
        let options: &[u8] = if flags & SYN != 0 { &MSS_OPTION } else { &[] };
        let (from, to) = if from_client {
            (&mut self.client, &self.server)
        } else {
            (&mut self.server, &self.client)
        };
        let header_len = TCP_LEN + options.len();
        let src = from.addr.ip().octets();
        let dst = to.addr.ip().octets();
        let start = begin_packet(
            out,
            ts,
            from_client,
            src,
            dst,
            from.ip_id,
            PROTO_TCP,
            header_len + payload.len(),
        );
        from.ip_id = from.ip_id.wrapping_add(1);
        out.extend_from_slice(&from.addr.port().to_be_bytes());
        out.extend_from_slice(&to.addr.port().to_be_bytes());
        out.extend_from_slice(&from.next_seq.to_be_bytes());
        out.extend_from_slice(&ack.to_be_bytes());
        out.push(((header_len / 4) as u8) << 4);
        out.push(flags);
        out.extend_from_slice(&WINDOW.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        out.extend_from_slice(options);
        out.extend_from_slice(payload);
        let sum = transport_checksum(src, dst, PROTO_TCP, &out[start..]);
        out[start + 16..start + 18].copy_from_slice(&sum.to_be_bytes());
    }

    /// A pure ACK from one side acknowledging everything the other has sent.
    fn pure_ack(&mut self, out: &mut Vec<u8>, from_client: bool, ts: SystemTime) {
        let ack = self.peer(from_client).next_seq;
        self.segment(out, from_client, ACK, ack, &[], ts);
    }

    fn peer(&self, from_client: bool) -> &Side {
        if from_client {
            &self.server
        } else {
            &self.client
        }
    }

    fn side_mut(&mut self, from_client: bool) -> &mut Side {
        if from_client {
            &mut self.client
        } else {
            &mut self.server
        }
    }

    fn handshake_into(&mut self, out: &mut Vec<u8>, ts: SystemTime) {
        if self.state != State::New {
            return;
        }
        self.segment(out, true, SYN, 0, &[], ts);
        self.client.next_seq = self.client.next_seq.wrapping_add(1);
        let ack = self.client.next_seq;
        self.segment(out, false, SYN | ACK, ack, &[], ts);
        self.server.next_seq = self.server.next_seq.wrapping_add(1);
        self.pure_ack(out, true, ts);
        self.state = State::Open;
    }

    /// The three-way handshake: SYN from the client (MSS option 1460), SYN-ACK from the
    /// server (MSS option 1460), ACK from the client. Records nothing if the
    /// handshake was already recorded.
    pub fn handshake(&mut self, ts: SystemTime) -> Vec<u8> {
        let mut out = Vec::with_capacity(HANDSHAKE_RECORDS);
        self.handshake_into(&mut out, ts);
        out
    }

    /// A connection attempt the server refused: the client's SYN and the server's
    /// RST-ACK (sequence 0, acknowledging the SYN). Only on a new connection (records
    /// nothing otherwise); the connection is closed afterwards.
    pub fn refused(&mut self, ts: SystemTime) -> Vec<u8> {
        let mut out = Vec::new();
        if self.state != State::New {
            return out;
        }
        self.segment(&mut out, true, SYN, 0, &[], ts);
        self.client.next_seq = self.client.next_seq.wrapping_add(1);
        let ack = self.client.next_seq;
        self.server.next_seq = 0;
        self.segment(&mut out, false, RST | ACK, ack, &[], ts);
        self.state = State::Closed;
        out
    }

    /// `payload` sent by the client (`from_client`) or the server: segments of at
    /// most [`MSS`] bytes (ACK set, PSH on the last), then one ACK from the receiver.
    /// A long payload also gets an ACK from the receiver after every
    /// [`ACK_EVERY_SEGMENTS`] segments, so the sender stays within the window. An
    /// empty payload records nothing (beyond a pending handshake). See the type's
    /// documentation for data after a FIN.
    pub fn data(&mut self, from_client: bool, payload: &[u8], ts: SystemTime) -> Vec<u8> {
        if self.state == State::Closed || self.side_mut(from_client).fin_sent {
            self.unrecorded = self.unrecorded.saturating_add(payload.len() as u64);
            return Vec::new();
        }
        if payload.is_empty() {
            return Vec::new();
        }
        let segments = payload.len().div_ceil(MSS);
        let acks = segments.div_ceil(ACK_EVERY_SEGMENTS);
        let mut out = Vec::with_capacity(
            HANDSHAKE_RECORDS + payload.len() + (segments + acks) * BARE_TCP_RECORD,
        );
        self.handshake_into(&mut out, ts);
        for (i, chunk) in payload.chunks(MSS).enumerate() {
            let last = i + 1 == segments;
            let flags = if last { ACK | PSH } else { ACK };
            let ack = self.peer(from_client).next_seq;
            self.segment(&mut out, from_client, flags, ack, chunk, ts);
            let side = self.side_mut(from_client);
            side.next_seq = side.next_seq.wrapping_add(chunk.len() as u32);
            if last || (i + 1).is_multiple_of(ACK_EVERY_SEGMENTS) {
                self.pure_ack(&mut out, !from_client, ts);
            }
        }
        out
    }

    /// The FIN of one side (FIN-ACK), then the other side's ACK of it. The other side's
    /// FIN comes with its own call; when both sides have sent theirs the connection is
    /// closed cleanly. Records nothing if this side already sent its FIN or the
    /// connection is closed.
    pub fn fin(&mut self, from_client: bool, ts: SystemTime) -> Vec<u8> {
        let mut out = Vec::with_capacity(HANDSHAKE_RECORDS + 2 * BARE_TCP_RECORD);
        if self.state == State::Closed || self.side_mut(from_client).fin_sent {
            return out;
        }
        self.handshake_into(&mut out, ts);
        let ack = self.peer(from_client).next_seq;
        self.segment(&mut out, from_client, FIN | ACK, ack, &[], ts);
        let side = self.side_mut(from_client);
        side.next_seq = side.next_seq.wrapping_add(1);
        side.fin_sent = true;
        self.pure_ack(&mut out, !from_client, ts);
        if self.client.fin_sent && self.server.fin_sent {
            self.state = State::Closed;
        }
        out
    }

    /// A reset from one side: RST-ACK with that side's next sequence number,
    /// acknowledging everything the other side sent. The connection is closed
    /// afterwards. Records nothing if it already was.
    pub fn reset(&mut self, from_client: bool, ts: SystemTime) -> Vec<u8> {
        let mut out = Vec::with_capacity(HANDSHAKE_RECORDS + BARE_TCP_RECORD);
        if self.state == State::Closed {
            return out;
        }
        self.handshake_into(&mut out, ts);
        let ack = self.peer(from_client).next_seq;
        self.segment(&mut out, from_client, RST | ACK, ack, &[], ts);
        self.state = State::Closed;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    /// A packet of a record stream, decoded just enough for these tests.
    #[derive(Debug)]
    struct Pkt {
        incl: usize,
        orig: usize,
        sec: u32,
        nsec: u32,
        frame: Vec<u8>,
    }

    impl Pkt {
        fn ip(&self) -> &[u8] {
            &self.frame[ETH_LEN..]
        }
        fn l4(&self) -> &[u8] {
            &self.frame[ETH_LEN + IPV4_LEN..]
        }
        fn seq(&self) -> u32 {
            u32::from_be_bytes(self.l4()[4..8].try_into().unwrap())
        }
        fn ack(&self) -> u32 {
            u32::from_be_bytes(self.l4()[8..12].try_into().unwrap())
        }
        fn flags(&self) -> u8 {
            self.l4()[13]
        }
        fn tcp_payload(&self) -> &[u8] {
            let off = usize::from(self.l4()[12] >> 4) * 4;
            &self.l4()[off..]
        }
        fn src_port(&self) -> u16 {
            u16::from_be_bytes([self.l4()[0], self.l4()[1]])
        }
        fn ip_id(&self) -> u16 {
            u16::from_be_bytes([self.ip()[4], self.ip()[5]])
        }
    }

    fn records(mut b: &[u8]) -> Vec<Pkt> {
        let mut v = Vec::new();
        while !b.is_empty() {
            let word = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
            let (sec, nsec, incl, orig) = (word(0), word(4), word(8) as usize, word(12) as usize);
            v.push(Pkt {
                incl,
                orig,
                sec,
                nsec,
                frame: b[16..16 + incl].to_vec(),
            });
            b = &b[16 + incl..];
        }
        v
    }

    fn addrs() -> (SocketAddrV4, SocketAddrV4) {
        (
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 40000),
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 443),
        )
    }

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789)
    }

    /// Sum of the 16-bit words of a header or segment including its checksum field:
    /// 0xffff when the checksum is right.
    fn verifies(acc: u64, data: &[u8]) -> bool {
        fold(sum_words(acc, data)) == 0
    }

    #[test]
    fn ipv4_checksum_known_value() {
        // 4500 0073 0000 4000 4011 0000 c0a8 0001 c0a8 00c7: the words add up to
        // 0x2479c, folded 0x479e, complemented 0xb861.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(internet_checksum(&h), 0xb861);
    }

    #[test]
    fn tcp_checksum_known_value() {
        // Pseudo-header 10.0.0.1 -> 10.0.0.2, protocol 6, length 20; a bare SYN from
        // port 1 to 2, seq 0, window 0xffff: 0a00+0001+0a00+0002+0006+0014
        // +0001+0002+5002+ffff = 0x16421, folded 0x6422, complemented 0x9bdd.
        let seg = [
            0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
        ];
        assert_eq!(
            transport_checksum([10, 0, 0, 1], [10, 0, 0, 2], PROTO_TCP, &seg),
            0x9bdd
        );
        // An odd length pads with a zero byte: one more byte 0xab adds 0xab00.
        let mut odd = seg.to_vec();
        odd.push(0xab);
        // 0x16421 - 0x14 + 0x15 + 0xab00 = 0x20f22 -> 0x0f24 -> 0xf0db
        assert_eq!(
            transport_checksum([10, 0, 0, 1], [10, 0, 0, 2], PROTO_TCP, &odd),
            0xf0db
        );
    }

    #[test]
    fn file_header_fields() {
        let h = file_header();
        assert_eq!(
            h,
            [0x4d, 0x3c, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 1, 0, 0, 0]
        );
    }

    #[test]
    fn handshake_numbers_and_checksums() {
        let (c, s) = addrs();
        let mut tcp = TcpCapture::with_isns(c, s, 1000, 5000);
        let p = records(&tcp.handshake(t0()));
        assert_eq!(p.len(), 3);
        assert_eq!((p[0].flags(), p[0].seq(), p[0].ack()), (SYN, 1000, 0));
        assert_eq!(
            (p[1].flags(), p[1].seq(), p[1].ack()),
            (SYN | ACK, 5000, 1001)
        );
        assert_eq!((p[2].flags(), p[2].seq(), p[2].ack()), (ACK, 1001, 5001));
        assert_eq!(&p[0].l4()[20..24], &[2, 4, 0x05, 0xb4]);
        for x in &p {
            assert_eq!(x.incl, x.orig);
            assert_eq!((x.sec, x.nsec), (1_700_000_000, 123_456_789));
            assert!(verifies(0, &x.ip()[..IPV4_LEN]), "IPv4 checksum");
            let mut acc = sum_words(0, &x.ip()[12..20]);
            acc += u64::from(PROTO_TCP) + x.l4().len() as u64;
            assert!(verifies(acc, x.l4()), "TCP checksum");
        }
        assert_eq!(&p[0].frame[..6], &GATEWAY_MAC);
        assert_eq!(&p[0].frame[6..12], &WATCH_MAC);
        assert_eq!(&p[1].frame[..6], &WATCH_MAC);
        // IP ids count per side.
        assert_eq!(p[2].ip_id(), p[0].ip_id().wrapping_add(1));
        assert!(tcp.handshake(t0()).is_empty());
    }

    #[test]
    fn segmentation_sizes_and_acks() {
        let (c, s) = addrs();
        let mut tcp = TcpCapture::with_isns(c, s, 0, 0);
        tcp.handshake(t0());
        let payload: Vec<u8> = (0..2 * MSS + 1).map(|i| i as u8).collect();
        let p = records(&tcp.data(true, &payload, t0()));
        let sizes: Vec<usize> = p.iter().map(|x| x.tcp_payload().len()).collect();
        assert_eq!(sizes, [MSS, MSS, 1, 0]);
        let flags: Vec<u8> = p.iter().map(|x| x.flags()).collect();
        assert_eq!(flags, [ACK, ACK, ACK | PSH, ACK]);
        assert_eq!(p[3].src_port(), 443, "the receiver acknowledges");
        assert_eq!(p[3].ack(), 1 + payload.len() as u32);
        let joined: Vec<u8> = p.iter().flat_map(|x| x.tcp_payload().to_vec()).collect();
        assert_eq!(joined, payload);
        assert!(p.iter().all(|x| x.incl <= 14 + 20 + 20 + MSS));

        // Exactly one full segment: no empty trailing segment.
        let p = records(&tcp.data(false, &[7; MSS], t0()));
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].flags(), ACK | PSH);

        // A long payload is acknowledged every ACK_EVERY_SEGMENTS segments.
        let big = vec![1u8; MSS * (2 * ACK_EVERY_SEGMENTS + 3)];
        let p = records(&tcp.data(true, &big, t0()));
        let acks: Vec<usize> = p
            .iter()
            .enumerate()
            .filter(|(_, x)| x.src_port() == 443)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            acks,
            [
                ACK_EVERY_SEGMENTS,
                2 * ACK_EVERY_SEGMENTS + 1,
                2 * ACK_EVERY_SEGMENTS + 5
            ]
        );
        assert!(tcp.data(true, &[], t0()).is_empty());
    }

    #[test]
    fn sequence_numbers_wrap() {
        let (c, s) = addrs();
        let mut tcp = TcpCapture::with_isns(c, s, u32::MAX - 1000, u32::MAX);
        let p = records(&tcp.handshake(t0()));
        assert_eq!(p[1].seq(), u32::MAX);
        assert_eq!(p[2].ack(), 0, "the SYN-ACK's sequence number wraps");
        let payload = vec![0x55u8; 3000];
        let p = records(&tcp.data(true, &payload, t0()));
        let seqs: Vec<u32> = p
            .iter()
            .filter(|x| x.src_port() == 40000)
            .map(|x| x.seq())
            .collect();
        // 2^32 - 1000 + 1460 wraps to 460; the last segment has 3000 - 2920 = 80 bytes.
        assert_eq!(seqs, [u32::MAX - 999, 460, 1920]);
        assert_eq!(p.last().unwrap().ack(), 2000);
        let p = records(&tcp.fin(true, t0()));
        assert_eq!((p[0].seq(), p[1].ack()), (2000, 2001));
    }

    #[test]
    fn clean_close_and_state() {
        let (c, s) = addrs();
        let mut tcp = TcpCapture::with_isns(c, s, 10, 20);
        tcp.handshake(t0());
        let p = records(&tcp.fin(true, t0()));
        assert_eq!((p[0].flags(), p[1].flags()), (FIN | ACK, ACK));
        assert_eq!((p[0].seq(), p[1].ack()), (11, 12));
        assert!(
            tcp.fin(true, t0()).is_empty(),
            "a second FIN from the same side"
        );
        assert!(tcp.data(true, b"late", t0()).is_empty());
        assert_eq!(tcp.unrecorded_bytes(), 4);
        // Half-close: the server still sends.
        let p = records(&tcp.data(false, b"reply", t0()));
        assert_eq!((p[0].seq(), p[0].ack()), (21, 12));
        assert!(!tcp.is_closed());
        let p = records(&tcp.fin(false, t0()));
        assert_eq!(
            (p[0].seq(), p[0].ack(), p[1].seq(), p[1].ack()),
            (26, 12, 12, 27)
        );
        assert!(tcp.is_closed());
        assert!(tcp.reset(false, t0()).is_empty());
    }

    #[test]
    fn implicit_handshake_reset_and_refused() {
        let (c, s) = addrs();
        let mut tcp = TcpCapture::with_isns(c, s, 100, 200);
        let p = records(&tcp.data(true, b"hi", t0()));
        let flags: Vec<u8> = p.iter().map(|x| x.flags()).collect();
        assert_eq!(flags, [SYN, SYN | ACK, ACK, ACK | PSH, ACK]);
        let p = records(&tcp.reset(false, t0()));
        assert_eq!(p.len(), 1);
        assert_eq!(
            (p[0].flags(), p[0].seq(), p[0].ack()),
            (RST | ACK, 201, 103)
        );
        assert!(tcp.is_closed());
        assert!(tcp.data(false, b"x", t0()).is_empty());
        assert!(tcp.fin(true, t0()).is_empty());

        let mut tcp = TcpCapture::with_isns(c, s, 100, 200);
        let p = records(&tcp.refused(t0()));
        assert_eq!((p[1].flags(), p[1].seq(), p[1].ack()), (RST | ACK, 0, 101));
        assert!(tcp.is_closed());
    }

    #[test]
    fn seeds_derive_isns() {
        let (c, s) = addrs();
        let a = TcpCapture::new(c, s, 1).next_seqs();
        assert_eq!(a, TcpCapture::new(c, s, 1).next_seqs());
        assert_ne!(a, TcpCapture::new(c, s, 2).next_seqs());
        assert_ne!(a.0, a.1);
    }

    #[test]
    fn udp_cut_and_checksum() {
        let (c, s) = addrs();
        let big = vec![0xa5u8; MAX_UDP_PAYLOAD + 100];
        let p = records(&udp_record(c, s, true, &big, t0()));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].incl, p[0].orig);
        assert_eq!(p[0].incl, ETH_LEN + 65_535);
        assert!(p[0].incl <= SNAPLEN as usize);
        assert_eq!(u16::from_be_bytes([p[0].ip()[2], p[0].ip()[3]]), 65_535);
        assert_eq!(
            u16::from_be_bytes([p[0].l4()[4], p[0].l4()[5]]) as usize,
            UDP_LEN + MAX_UDP_PAYLOAD
        );
        let mut acc = sum_words(0, &p[0].ip()[12..20]);
        acc += u64::from(PROTO_UDP) + p[0].l4().len() as u64;
        assert!(verifies(acc, p[0].l4()));
        // From the peer: addresses and MACs swap.
        let p = records(&udp_record(c, s, false, b"odd", t0()));
        assert_eq!(&p[0].ip()[12..16], &[10, 0, 0, 2]);
        assert_eq!(&p[0].frame[..6], &WATCH_MAC);
        assert_eq!(p[0].incl, ETH_LEN + IPV4_LEN + UDP_LEN + 3);
    }

    #[test]
    fn timestamps_clamp() {
        assert_eq!(timestamp(UNIX_EPOCH - Duration::from_secs(5)), (0, 0));
        assert_eq!(timestamp(UNIX_EPOCH + Duration::new(7, 9)), (7, 9));
        assert_eq!(
            timestamp(UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) + 1)),
            (u32::MAX, 999_999_999)
        );
    }
}

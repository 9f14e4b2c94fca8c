//! A small DNS (RFC 1035) message codec, for answering the watch's standard DNS
//! queries over UDP from the gateway's host table (a real rig whose cell's data
//! network names the rig as DNS server); the virtual lab resolves with
//! `AT+QIDNSGIP` instead and does not need it.
//!
//! Implemented: parsing one query ([`parse_query`]) and building the answers the
//! gateway gives — one A record ([`answer_a`]), NOERROR without records
//! ([`answer_empty`]), and error responses ([`answer_error`],
//! [`answer_bad_request`]). Every response copies the question bytes of the request
//! as they were sent (so a client that mixes the case of its name, as DNS 0x20
//! resolvers do, gets its own spelling back), has RA set and RD copied, and AA
//! clear: to the watch the rig looks like an ordinary recursive resolver.
//!
//! Not implemented: TCP framing (the two-byte length prefix; the functions work on
//! the message itself, so a TCP server would only add that), EDNS (an OPT record in
//! the request is accepted and skipped, the response carries none; every response
//! here is far below 512 bytes), SOA records in negative answers (so resolvers do
//! not cache them), record types other than A, zone transfers, updates and
//! notifies (opcodes other than QUERY get NOTIMP from [`answer_bad_request`]).
//!
//! Input is untrusted: parsing never panics, allocates at most one name (253
//! bytes), never follows compression pointers (they are refused in the question,
//! where a query has nothing to point back to, and only stepped over in the
//! additional section), and rejects names with a label over 63 bytes, a name over
//! 253 characters, or characters other than letters, digits, `-` and `_`.

use std::net::Ipv4Addr;

/// Record type A (an IPv4 address).
pub const TYPE_A: u16 = 1;
/// Record type AAAA (an IPv6 address).
pub const TYPE_AAAA: u16 = 28;
/// Query type ANY (`*`).
pub const TYPE_ANY: u16 = 255;
/// Class IN (the Internet).
pub const CLASS_IN: u16 = 1;
/// Response code: the query could not be interpreted.
pub const RCODE_FORMERR: u8 = 1;
/// Response code: the server failed (the gateway's answer while coverage is down).
pub const RCODE_SERVFAIL: u8 = 2;
/// Response code: the name does not exist.
pub const RCODE_NXDOMAIN: u8 = 3;
/// Response code: the kind of query is not implemented.
pub const RCODE_NOTIMP: u8 = 4;
/// Response code: refused for policy reasons.
pub const RCODE_REFUSED: u8 = 5;
/// Longest name in text form, without the trailing dot (255 bytes on the wire).
pub const MAX_NAME_LEN: usize = 253;
/// Longest label.
pub const MAX_LABEL_LEN: usize = 63;

const HEADER_LEN: usize = 12;
/// Longest name on the wire, length bytes and root label included.
const MAX_WIRE_NAME: usize = 255;
/// The header flag bits used here.
const FLAG_QR: u16 = 0x8000;
const FLAG_RD: u16 = 0x0100;
const FLAG_RA: u16 = 0x0080;
/// A compression pointer to offset 12, where the (only) question's name starts.
const POINTER_TO_QUESTION: [u8; 2] = [0xC0, 0x0C];

/// One standard query, as parsed from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The message id, to be echoed.
    pub id: u16,
    /// The name asked for, ASCII lower case, without the trailing dot; empty for
    /// the root.
    pub name: String,
    /// The query type ([`TYPE_A`], [`TYPE_AAAA`], ...).
    pub qtype: u16,
    /// The query class (normally [`CLASS_IN`]).
    pub qclass: u16,
    /// The RD bit of the query.
    pub recursion_desired: bool,
}

struct Header {
    id: u16,
    flags: u16,
    qdcount: u16,
    ancount: u16,
    nscount: u16,
    arcount: u16,
}

fn be16(packet: &[u8], at: usize) -> Option<u16> {
    let b = packet.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn header(packet: &[u8]) -> Option<Header> {
    Some(Header {
        id: be16(packet, 0)?,
        flags: be16(packet, 2)?,
        qdcount: be16(packet, 4)?,
        ancount: be16(packet, 6)?,
        nscount: be16(packet, 8)?,
        arcount: be16(packet, 10)?,
    })
}

fn opcode(flags: u16) -> u8 {
    ((flags >> 11) & 0x0F) as u8
}

/// The question starting at offset 12: its name, type, class, and where it ends.
struct Question {
    name: String,
    qtype: u16,
    qclass: u16,
    end: usize,
}

fn parse_question(packet: &[u8]) -> Result<Question, String> {
    let mut pos = HEADER_LEN;
    let mut name = String::new();
    let mut wire_len = 0usize;
    loop {
        let len = *packet.get(pos).ok_or("truncated question name")? as usize;
        match len & 0xC0 {
            0x00 => {}
            0xC0 => return Err("compression pointer in the question".into()),
            _ => return Err(format!("reserved label type {:#04x}", len & 0xC0)),
        }
        wire_len += 1 + len;
        if wire_len > MAX_WIRE_NAME {
            return Err("name longer than 255 bytes".into());
        }
        if len == 0 {
            pos += 1;
            break;
        }
        let label = packet
            .get(pos + 1..pos + 1 + len)
            .ok_or("truncated question label")?;
        if let Some(&bad) = label
            .iter()
            .find(|&&b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            return Err(format!("byte {bad:#04x} in a name label"));
        }
        if !name.is_empty() {
            name.push('.');
        }
        name.extend(label.iter().map(|b| b.to_ascii_lowercase() as char));
        pos += 1 + len;
    }
    // Each label is at most 63 bytes by the 0xC0 check; the wire limit of 255
    // leaves at most 253 characters of text.
    debug_assert!(name.len() <= MAX_NAME_LEN);
    let qtype = be16(packet, pos).ok_or("truncated question type")?;
    let qclass = be16(packet, pos + 2).ok_or("truncated question class")?;
    Ok(Question {
        name,
        qtype,
        qclass,
        end: pos + 4,
    })
}

/// Step over one resource record at `pos` (name, fixed fields, data) without
/// interpreting it; a compression pointer ends the name and is not followed.
fn skip_record(packet: &[u8], mut pos: usize) -> Result<usize, String> {
    let mut wire_len = 0usize;
    loop {
        let len = *packet.get(pos).ok_or("truncated record name")? as usize;
        match len & 0xC0 {
            0x00 => {}
            0xC0 => {
                packet.get(pos + 1).ok_or("truncated compression pointer")?;
                pos += 2;
                break;
            }
            _ => return Err(format!("reserved label type {:#04x}", len & 0xC0)),
        }
        wire_len += 1 + len;
        if wire_len > MAX_WIRE_NAME {
            return Err("record name longer than 255 bytes".into());
        }
        pos += 1 + len;
        if len == 0 {
            break;
        }
    }
    // type, class, TTL, RDLENGTH, then RDLENGTH bytes.
    let rdlength = be16(packet, pos + 8).ok_or("truncated record")? as usize;
    let end = pos + 10 + rdlength;
    if end > packet.len() {
        return Err("truncated record data".into());
    }
    Ok(end)
}

/// Parse a standard query (opcode QUERY, QR clear) with exactly one question, no
/// answer or authority records, and any number of well-formed additional records
/// (an EDNS OPT record, typically; they are skipped). Bytes after the last record
/// are an error. See the module documentation for what names are accepted.
pub fn parse_query(packet: &[u8]) -> Result<Query, String> {
    let h = header(packet).ok_or("shorter than a DNS header")?;
    if h.flags & FLAG_QR != 0 {
        return Err("a response, not a query".into());
    }
    if opcode(h.flags) != 0 {
        return Err(format!(
            "opcode {} is not a standard query",
            opcode(h.flags)
        ));
    }
    if h.qdcount != 1 {
        return Err(format!("{} questions (one is supported)", h.qdcount));
    }
    if h.ancount != 0 || h.nscount != 0 {
        return Err("answer or authority records in a query".into());
    }
    let q = parse_question(packet)?;
    let mut pos = q.end;
    // Each record takes at least 11 bytes, so this ends quickly on short input.
    for _ in 0..h.arcount {
        pos = skip_record(packet, pos)?;
    }
    if pos != packet.len() {
        return Err(format!(
            "{} bytes after the last record",
            packet.len() - pos
        ));
    }
    Ok(Query {
        id: h.id,
        name: q.name,
        qtype: q.qtype,
        qclass: q.qclass,
        recursion_desired: h.flags & FLAG_RD != 0,
    })
}

/// A response header: QR and RA set, RD as given, AA clear.
fn response_header(out: &mut Vec<u8>, id: u16, op: u8, rd: bool, rcode: u8, qd: u16, an: u16) {
    let mut flags = FLAG_QR | FLAG_RA | (u16::from(op & 0x0F) << 11) | u16::from(rcode & 0x0F);
    if rd {
        flags |= FLAG_RD;
    }
    for v in [id, flags, qd, an, 0, 0] {
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// The request's question bytes (offset 12 up to the end of QCLASS), if the
/// request has exactly one parseable question.
fn request_question(request: &[u8]) -> Option<(&[u8], Question)> {
    let h = header(request)?;
    if h.qdcount != 1 {
        return None;
    }
    let q = parse_question(request).ok()?;
    Some((request.get(HEADER_LEN..q.end)?, q))
}

/// The question for a response to `q`: the request's own bytes when they are the
/// same question, otherwise encoded from `q` (labels cut to 63 bytes, empty
/// labels dropped, the name cut short at 255 bytes on the wire).
fn question_for(q: &Query, request: &[u8]) -> Vec<u8> {
    if let Some((bytes, rq)) = request_question(request) {
        if rq.name == q.name && rq.qtype == q.qtype && rq.qclass == q.qclass {
            return bytes.to_vec();
        }
    }
    let mut out = Vec::with_capacity(q.name.len() + 6);
    for label in q.name.split('.').filter(|l| !l.is_empty()) {
        let b = &label.as_bytes()[..label.len().min(MAX_LABEL_LEN)];
        if out.len() + 1 + b.len() + 1 > MAX_WIRE_NAME {
            break;
        }
        out.push(b.len() as u8);
        out.extend_from_slice(b);
    }
    out.push(0);
    out.extend_from_slice(&q.qtype.to_be_bytes());
    out.extend_from_slice(&q.qclass.to_be_bytes());
    out
}

/// A NOERROR response to `q` with one A record for the question's name (written
/// as a compression pointer to it) in class IN. `request` is the message `q` was
/// parsed from; its question bytes are echoed. Which query types deserve an A
/// record (A and ANY, in class IN) is the caller's decision.
pub fn answer_a(q: &Query, addr: Ipv4Addr, ttl: u32, request: &[u8]) -> Vec<u8> {
    let question = question_for(q, request);
    let mut out = Vec::with_capacity(HEADER_LEN + question.len() + 16);
    response_header(&mut out, q.id, 0, q.recursion_desired, 0, 1, 1);
    out.extend_from_slice(&question);
    out.extend_from_slice(&POINTER_TO_QUESTION);
    out.extend_from_slice(&TYPE_A.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&4u16.to_be_bytes());
    out.extend_from_slice(&addr.octets());
    out
}

/// A NOERROR response to `q` with no records: the name exists but has no record
/// of the type asked for (AAAA for a name that has only an A record, say).
pub fn answer_empty(q: &Query, request: &[u8]) -> Vec<u8> {
    let question = question_for(q, request);
    let mut out = Vec::with_capacity(HEADER_LEN + question.len());
    response_header(&mut out, q.id, 0, q.recursion_desired, 0, 1, 0);
    out.extend_from_slice(&question);
    out
}

/// An error response with `rcode` ([`RCODE_SERVFAIL`] while coverage is down,
/// [`RCODE_NXDOMAIN`], [`RCODE_FORMERR`], [`RCODE_REFUSED`], ...; only its low four
/// bits fit). The request's question is copied when it has exactly one parseable
/// question, otherwise the response has none; its opcode and RD bit are copied
/// when it is long enough to have them.
pub fn answer_error(id: u16, rcode: u8, request: &[u8]) -> Vec<u8> {
    let flags = be16(request, 2).unwrap_or(0);
    let question = request_question(request).map(|(bytes, _)| bytes);
    let mut out = Vec::with_capacity(HEADER_LEN + question.map_or(0, <[u8]>::len));
    let qd = u16::from(question.is_some());
    response_header(
        &mut out,
        id,
        opcode(flags),
        flags & FLAG_RD != 0,
        rcode,
        qd,
        0,
    );
    if let Some(q) = question {
        out.extend_from_slice(q);
    }
    out
}

/// The response to a message that [`parse_query`] rejected: `None` when it must
/// not be answered at all (shorter than a header, or itself a response — answering
/// those invites loops), NOTIMP for an opcode other than QUERY, FORMERR otherwise.
pub fn answer_bad_request(packet: &[u8]) -> Option<Vec<u8>> {
    let h = header(packet)?;
    if h.flags & FLAG_QR != 0 {
        return None;
    }
    let rcode = if opcode(h.flags) != 0 {
        RCODE_NOTIMP
    } else {
        RCODE_FORMERR
    };
    Some(answer_error(h.id, rcode, packet))
}

#[cfg(test)]
mod tests {
    use super::*;
    use simple_dns::rdata::RData;
    use simple_dns::{
        Name, Packet, PacketFlag, Question as SdQuestion, CLASS, QCLASS, QTYPE, RCODE, TYPE,
    };

    /// A query encoded by the independent implementation.
    fn sd_query(id: u16, name: &str, qtype: TYPE, rd: bool, edns: bool) -> Vec<u8> {
        let mut p = Packet::new_query(id);
        if rd {
            p.set_flags(PacketFlag::RECURSION_DESIRED);
        } else {
            p.remove_flags(PacketFlag::RECURSION_DESIRED);
        }
        p.questions.push(SdQuestion::new(
            Name::new_unchecked(name),
            QTYPE::TYPE(qtype),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        if edns {
            *p.opt_mut() = Some(simple_dns::rdata::OPT {
                opt_codes: Vec::new(),
                udp_packet_size: 1232,
                version: 0,
            });
        }
        p.build_bytes_vec().unwrap()
    }

    /// A query written byte by byte, as RFC 1035 §4.1 lays it out.
    fn hand_query(id: u16, labels: &[&[u8]], qtype: u16) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&id.to_be_bytes());
        v.extend_from_slice(&[0x01, 0x00]); // RD
        v.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        for l in labels {
            v.push(l.len() as u8);
            v.extend_from_slice(l);
        }
        v.push(0);
        v.extend_from_slice(&qtype.to_be_bytes());
        v.extend_from_slice(&CLASS_IN.to_be_bytes());
        v
    }

    #[test]
    fn queries_encoded_elsewhere_parse() {
        for (id, name, ty, rd, edns) in [
            (0x1234, "api.watch-cloud.example", TYPE::A, true, false),
            (0, "API.Watch-Cloud.EXAMPLE", TYPE::AAAA, false, true),
            (0xFFFF, "_sip._udp.example", TYPE::SRV, true, true),
            (7, "x", TYPE::TXT, true, false),
        ] {
            let wire = sd_query(id, name, ty, rd, edns);
            let q = parse_query(&wire).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(q.id, id);
            assert_eq!(q.name, name.to_ascii_lowercase());
            assert_eq!(q.qtype, u16::from(ty));
            assert_eq!(q.qclass, CLASS_IN);
            assert_eq!(q.recursion_desired, rd);
        }
        let q = parse_query(&hand_query(9, &[], TYPE_A)).unwrap();
        assert_eq!(q.name, "", "the root");
    }

    #[test]
    fn a_answer_decodes_independently() {
        let wire = sd_query(0xBEEF, "Api.Watch-Cloud.Example", TYPE::A, true, true);
        let q = parse_query(&wire).unwrap();
        let addr = Ipv4Addr::new(127, 31, 7, 2);
        let resp = answer_a(&q, addr, 60, &wire);
        let p = Packet::parse(&resp).expect("answer decodes");
        assert_eq!(p.id(), 0xBEEF);
        assert!(p.has_flags(PacketFlag::RESPONSE | PacketFlag::RECURSION_DESIRED));
        assert!(p.has_flags(PacketFlag::RECURSION_AVAILABLE));
        assert!(!p.has_flags(PacketFlag::AUTHORITATIVE_ANSWER));
        assert_eq!(p.rcode(), RCODE::NoError);
        assert_eq!(p.questions.len(), 1);
        // The question comes back as the client spelled it.
        assert_eq!(p.questions[0].qname.to_string(), "Api.Watch-Cloud.Example");
        assert_eq!(p.questions[0].qtype, QTYPE::TYPE(TYPE::A));
        assert_eq!(p.answers.len(), 1);
        let rr = &p.answers[0];
        assert_eq!(rr.name.to_string(), "Api.Watch-Cloud.Example");
        assert_eq!(rr.class, CLASS::IN);
        assert_eq!(rr.ttl, 60);
        match &rr.rdata {
            RData::A(a) => assert_eq!(Ipv4Addr::from(a.address), addr),
            other => panic!("not an A record: {other:?}"),
        }
        // The answer's name is a pointer to the question's.
        let question_end = wire.len() - 11; // the OPT record is 11 bytes
        assert_eq!(resp[question_end..question_end + 2], POINTER_TO_QUESTION);
        assert!(p.opt().is_none() && p.additional_records.is_empty());
    }

    #[test]
    fn empty_and_error_answers_decode_independently() {
        let wire = sd_query(42, "only-v4.example", TYPE::AAAA, true, false);
        let q = parse_query(&wire).unwrap();
        let resp = answer_empty(&q, &wire);
        let p = Packet::parse(&resp).unwrap();
        assert_eq!((p.id(), p.rcode()), (42, RCODE::NoError));
        assert_eq!(p.questions.len(), 1);
        assert_eq!(p.questions[0].qname.to_string(), "only-v4.example");
        assert_eq!(p.questions[0].qtype, QTYPE::TYPE(TYPE::AAAA));
        assert!(p.answers.is_empty());

        for (rcode, want) in [
            (RCODE_FORMERR, RCODE::FormatError),
            (RCODE_SERVFAIL, RCODE::ServerFailure),
            (RCODE_NXDOMAIN, RCODE::NameError),
            (RCODE_NOTIMP, RCODE::NotImplemented),
            (RCODE_REFUSED, RCODE::Refused),
        ] {
            let resp = answer_error(q.id, rcode, &wire);
            let p = Packet::parse(&resp).unwrap();
            assert_eq!((p.id(), p.rcode()), (42, want));
            assert!(p.has_flags(PacketFlag::RESPONSE | PacketFlag::RECURSION_DESIRED));
            assert_eq!(p.questions.len(), 1, "the question is copied");
            assert_eq!(p.questions[0].qname.to_string(), "only-v4.example");
            assert!(p.answers.is_empty());
        }
        // An unparseable request: the id is kept, no question is invented.
        let mut junk = vec![0x12, 0x34, 0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        junk.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1]);
        let resp = answer_error(0x1234, RCODE_FORMERR, &junk);
        let p = Packet::parse(&resp).unwrap();
        assert_eq!((p.id(), p.rcode()), (0x1234, RCODE::FormatError));
        assert!(p.questions.is_empty());
        assert!(!p.has_flags(PacketFlag::RECURSION_DESIRED));
        let resp = answer_error(7, RCODE_SERVFAIL, &[]);
        let p = Packet::parse(&resp).unwrap();
        assert_eq!(
            (p.id(), p.rcode(), p.questions.len()),
            (7, RCODE::ServerFailure, 0)
        );
    }

    #[test]
    fn question_is_rebuilt_when_the_request_does_not_match() {
        let q = Query {
            id: 5,
            name: "a.example".into(),
            qtype: TYPE_A,
            qclass: CLASS_IN,
            recursion_desired: false,
        };
        let other = hand_query(5, &[b"b", b"example"], TYPE_A);
        for request in [&other[..], &[][..]] {
            let resp = answer_a(&q, Ipv4Addr::new(127, 0, 0, 9), 1, request);
            let p = Packet::parse(&resp).unwrap();
            assert_eq!(p.questions[0].qname.to_string(), "a.example");
            assert_eq!(p.answers[0].name.to_string(), "a.example");
        }
        // A Query with a name nobody could have sent still gives a response.
        let odd = Query {
            name: format!("{}..{}", "x".repeat(300), "y.".repeat(200)),
            ..q
        };
        let resp = answer_empty(&odd, &[]);
        let p = Packet::parse(&resp).unwrap();
        assert!(p.questions[0].qname.to_string().len() <= MAX_NAME_LEN);
    }

    #[test]
    fn bad_requests_get_the_right_answer_or_none() {
        let good = hand_query(77, &[b"watch", b"example"], TYPE_A);
        // A response is never answered, nor is a runt.
        let mut response = good.clone();
        response[2] |= 0x80;
        assert!(parse_query(&response).is_err());
        assert!(answer_bad_request(&response).is_none());
        assert!(answer_bad_request(&good[..11]).is_none());
        // STATUS (opcode 2): NOTIMP, question copied.
        let mut status = good.clone();
        status[2] = (2 << 3) | 1;
        assert!(parse_query(&status).is_err());
        let resp = answer_bad_request(&status).unwrap();
        let p = Packet::parse(&resp).unwrap();
        assert_eq!(
            (p.id(), p.rcode(), p.questions.len()),
            (77, RCODE::NotImplemented, 1)
        );
        // Two questions: FORMERR, nothing copied.
        let mut two = good.clone();
        two[5] = 2;
        two.extend_from_slice(&good[12..]);
        assert!(parse_query(&two).is_err());
        let resp = answer_bad_request(&two).unwrap();
        let p = Packet::parse(&resp).unwrap();
        assert_eq!(
            (p.id(), p.rcode(), p.questions.len()),
            (77, RCODE::FormatError, 0)
        );
        // No question, an answer record in a query, trailing bytes.
        let mut none = good[..12].to_vec();
        none[5] = 0;
        assert!(parse_query(&none).is_err());
        let mut with_answer = good.clone();
        with_answer[7] = 1;
        assert!(parse_query(&with_answer).is_err());
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(parse_query(&trailing).is_err());
        // Characters that would not survive as text.
        for label in [&b"a.b"[..], b"a b", b"caf\xc3\xa9", b"a\0"] {
            assert!(parse_query(&hand_query(1, &[label, b"example"], TYPE_A)).is_err());
        }
        // Not a query parse_query accepted: the reply is FORMERR with the question.
        let resp = answer_bad_request(&trailing).unwrap();
        let p = Packet::parse(&resp).unwrap();
        assert_eq!((p.rcode(), p.questions.len()), (RCODE::FormatError, 1));
    }

    #[test]
    fn name_limits() {
        let l63 = [b'a'; 63];
        let l61 = [b'b'; 61];
        // 63+63+63+61 characters and three dots: 253, the longest name.
        let longest = hand_query(1, &[&l63, &l63, &l63, &l61], TYPE_A);
        let q = parse_query(&longest).unwrap();
        assert_eq!(q.name.len(), MAX_NAME_LEN);
        Packet::parse(&answer_a(&q, Ipv4Addr::LOCALHOST, 0, &longest)).unwrap();
        // One more character: 254, and 256 bytes on the wire.
        let l62 = [b'b'; 62];
        assert!(parse_query(&hand_query(1, &[&l63, &l63, &l63, &l62], TYPE_A)).is_err());
        // A 64-byte label has a reserved label type in its length byte.
        let l64 = [b'c'; 64];
        assert!(parse_query(&hand_query(1, &[&l64], TYPE_A)).is_err());
        // Many short labels past 255 bytes.
        let many: Vec<&[u8]> = vec![b"a"; 128];
        assert!(parse_query(&hand_query(1, &many, TYPE_A)).is_err());
    }

    #[test]
    fn compression_pointers_and_loops_are_refused() {
        let header = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        let cases: [&[u8]; 4] = [
            // The question's name points at itself.
            &[0xC0, 0x0C, 0, 1, 0, 1],
            // A label, then a pointer back to the start of the name.
            &[1, b'a', 0xC0, 0x0C, 0, 1, 0, 1],
            // Into the header.
            &[0xC0, 0x00, 0, 1, 0, 1],
            // Forward, to a pointer pointing back.
            &[0xC0, 0x0E, 0xC0, 0x0C, 0, 1, 0, 1],
        ];
        for tail in cases {
            let mut p = header.to_vec();
            p.extend_from_slice(tail);
            assert!(parse_query(&p).is_err(), "{tail:?}");
            let r = answer_bad_request(&p).unwrap();
            assert_eq!(r[3] & 0x0F, RCODE_FORMERR);
        }
        // A pointer loop in an additional record is stepped over, not followed;
        // the record is well-formed otherwise, so the query is accepted.
        let mut p = hand_query(3, &[b"a"], TYPE_A);
        p[11] = 1;
        let loop_at = p.len() as u16 | 0xC000;
        p.extend_from_slice(&loop_at.to_be_bytes());
        p.extend_from_slice(&[0, 41, 4, 0xD0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(parse_query(&p).unwrap().name, "a");
    }

    #[test]
    fn every_truncation_is_an_error() {
        for wire in [
            sd_query(0x0102, "device.watch-cloud.example", TYPE::A, true, false),
            sd_query(0x0304, "device.watch-cloud.example", TYPE::AAAA, true, true),
        ] {
            assert!(parse_query(&wire).is_ok());
            for cut in 0..wire.len() {
                let part = &wire[..cut];
                assert!(
                    parse_query(part).is_err(),
                    "accepted {cut} of {} bytes",
                    wire.len()
                );
                // And answering it cannot go wrong either.
                if let Some(r) = answer_bad_request(part) {
                    Packet::parse(&r).expect("error response decodes");
                }
            }
        }
    }

    /// xorshift64*: reproducible pseudo-random bytes without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Whatever comes in: no panic, and every response built decodes.
    fn exercise(packet: &[u8]) -> bool {
        match parse_query(packet) {
            Ok(q) => {
                assert!(q.name.len() <= MAX_NAME_LEN);
                let a = answer_a(&q, Ipv4Addr::new(127, 1, 2, 3), 30, packet);
                let e = answer_empty(&q, packet);
                let x = answer_error(q.id, RCODE_NXDOMAIN, packet);
                // The independent decoder refuses unknown types and classes;
                // where it takes the query, it must take the answers.
                if Packet::parse(packet).is_ok() {
                    for r in [&a, &e, &x] {
                        let p = Packet::parse(r).expect("response decodes");
                        assert_eq!(p.id(), q.id);
                        assert_eq!(p.questions.len(), 1);
                        assert_eq!(
                            p.questions[0].qname.to_string().to_ascii_lowercase(),
                            q.name
                        );
                    }
                }
                true
            }
            Err(_) => {
                if let Some(r) = answer_bad_request(packet) {
                    assert!(r.len() >= HEADER_LEN && r.len() <= HEADER_LEN + 259);
                    assert_eq!(r[0..2], packet[0..2]);
                }
                false
            }
        }
    }

    #[test]
    fn random_bytes_and_mutations_never_panic() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            let len = rng.below(300);
            let packet: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            exercise(&packet);
        }
        // Mutations of valid queries reach far deeper than random bytes.
        let seeds = [
            sd_query(1, "api.watch-cloud.example", TYPE::A, true, true),
            sd_query(2, "a.b.c.d.e", TYPE::AAAA, false, false),
        ];
        let mut accepted = 0;
        for i in 0..40_000 {
            let mut p = seeds[i % seeds.len()].clone();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(p.len());
                match rng.below(4) {
                    0 => p[at] = rng.next() as u8,
                    1 => p[at] ^= 1 << rng.below(8),
                    2 => {
                        p.remove(at);
                    }
                    _ => p.insert(at, rng.next() as u8),
                }
                if p.is_empty() {
                    break;
                }
            }
            if exercise(&p) {
                accepted += 1;
            }
        }
        // Some mutations (of the id, the type, a letter) leave a valid query.
        assert!(accepted > 0);
    }
}

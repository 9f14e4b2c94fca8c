//! The watch protocol codec (`docs/watch-protocol.md`): `[VV*DEVICEID*LLLL*CONTENT]`
//! frames (and `[ZJ*DEVICEID*IDX*LLLL*CONTENT]`) as the rig reads them from a byte
//! stream and writes them.
//!
//! The bytes come from a device under test, so the [`Decoder`] assumes nothing:
//!
//! - the length field is parsed but never trusted; a frame ends at a `]` that is
//!   followed by the end of the data read so far or by the start of a new frame
//!   (`[`, two characters, `*`), so brackets inside a text field (a Wi-Fi name) stay
//!   in the content. A `]` followed by `[` and fewer than three more bytes waits for
//!   the next read; it ends the frame when the stream ends there
//!   ([`Decoder::finish`]: the `[` and the bytes after it are reported as a
//!   truncated frame start, or a bad header if they cannot start one) and when the
//!   bytes held would otherwise exceed the frame bound (were it content, the frame
//!   would be too long whatever follows);
//! - a frame may be split over reads and several frames may arrive in one read;
//! - garbage before a frame, an invalid header or an over-long frame is skipped and
//!   reported as [`Decoded::Skipped`] with the number of bytes dropped from the
//!   decoder (the raw bytes are the caller's evidence, the decoder only reads them);
//! - a frame is at most [`MAX_FRAME`] bytes (1 MiB) and the decoder never holds more
//!   than that between calls, whatever arrives; scanning and the buffer moves are
//!   linear in the input ([`Decoder::work`] counts them).
//!
//! Voice and photo payloads (`TK`, `TKQ`, `JXTK`, `img`) are binary with the escapes
//! `0x7D`→`7D 01`, `[`→`7D 02`, `]`→`7D 03`, `,`→`7D 04`, `*`→`7D 05`; [`escape`] and
//! [`unescape`] convert, [`Frame::fields`] splits and unescapes.

use std::fmt::Write as _;

/// Largest frame the rig accepts, from `[` to `]` inclusive.
pub const MAX_FRAME: usize = 1024 * 1024;

/// Longest header: `[` VV `*` 20-digit id `*` IDX `*` LLLL `*`.
const MAX_HEADER: usize = 1 + 2 + 1 + MAX_ID_DIGITS + 1 + 4 + 1 + 4 + 1;

/// Device ids are 10 or 15 digits by the spec, but field devices send others
/// (9 digits are in the captured corpus): any 1..=20 decimal digits are accepted.
const MAX_ID_DIGITS: usize = 20;

/// Commands whose payload is binary and escaped.
pub const BINARY_COMMANDS: [&str; 4] = ["TK", "TKQ", "JXTK", "img"];

/// One decoded frame. `content` is exactly the bytes between the header and the
/// closing `]`, still escaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Two characters, e.g. `3G`, `SG`, `CS`, `ZJ`.
    pub vendor: String,
    /// The device id digits.
    pub device_id: String,
    /// `ZJ` frames: the 4-hex-digit message index.
    pub index: Option<u16>,
    /// The length field as written (never used to find the end).
    pub declared_len: u16,
    /// The content, as on the wire.
    pub content: Vec<u8>,
}

impl Frame {
    /// Whether the length field agrees with the content (real watches often get it
    /// wrong; this is informational).
    pub fn length_matches(&self) -> bool {
        self.content.len() == self.declared_len as usize
    }

    /// The command word: the content up to the first `,` (lossy UTF-8).
    pub fn command(&self) -> String {
        let end = self
            .content
            .iter()
            .position(|&b| b == b',')
            .unwrap_or(self.content.len());
        String::from_utf8_lossy(&self.content[..end]).into_owned()
    }

    /// True for voice/photo commands whose payload is escaped binary.
    pub fn is_binary(&self) -> bool {
        let c = self.command();
        BINARY_COMMANDS.contains(&c.as_str())
    }

    /// The comma-separated fields of the content, the command word first; for binary
    /// commands every field is unescaped.
    pub fn fields(&self) -> Vec<Vec<u8>> {
        let binary = self.is_binary();
        self.content
            .split(|&b| b == b',')
            .map(|f| if binary { unescape(f) } else { f.to_vec() })
            .collect()
    }

    /// The frame as bytes (the length field keeps the value received, written in
    /// upper-case hex).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.content.len() + MAX_HEADER + 1);
        out.push(b'[');
        out.extend_from_slice(self.vendor.as_bytes());
        out.push(b'*');
        out.extend_from_slice(self.device_id.as_bytes());
        out.push(b'*');
        if let Some(idx) = self.index {
            out.extend_from_slice(format!("{idx:04X}*").as_bytes());
        }
        out.extend_from_slice(format!("{:04X}*", self.declared_len).as_bytes());
        out.extend_from_slice(&self.content);
        out.push(b']');
        out
    }

    /// A printable rendering for logs: the frame with non-printable bytes as `\xHH`,
    /// binary payloads summarised by size, cut after `max_chars` characters.
    pub fn display(&self, max_chars: usize) -> String {
        let mut s = String::new();
        let _ = write!(s, "[{}*{}*", self.vendor, self.device_id);
        if let Some(idx) = self.index {
            let _ = write!(s, "{idx:04X}*");
        }
        let _ = write!(s, "{:04X}*", self.declared_len);
        if self.is_binary() {
            // Text fields up to the first one that is not printable, then a summary.
            let mut shown = 0usize;
            for (i, f) in self.content.split(|&b| b == b',').enumerate() {
                let printable = f.iter().all(|&b| (0x20..0x7f).contains(&b));
                if !printable {
                    let rest = self.content.len().saturating_sub(shown);
                    let _ = write!(s, "{}<{rest} bytes binary>", if i > 0 { "," } else { "" });
                    break;
                }
                if i > 0 {
                    s.push(',');
                }
                s.push_str(&String::from_utf8_lossy(f));
                shown += f.len() + 1;
            }
        } else {
            for &b in &self.content {
                if (0x20..0x7f).contains(&b) {
                    s.push(b as char);
                } else {
                    let _ = write!(s, "\\x{b:02x}");
                }
            }
        }
        s.push(']');
        if s.chars().count() > max_chars {
            let total = s.chars().count();
            let mut cut: String = s.chars().take(max_chars).collect();
            let _ = write!(cut, "…({} more chars)", total - max_chars);
            return cut;
        }
        s
    }
}

/// Why bytes were dropped from the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Bytes before the next `[`.
    Garbage,
    /// A `[` whose header is not `VV*ID*LLLL*` (e.g. a length field that is not four
    /// hex digits).
    BadHeader,
    /// A frame longer than [`MAX_FRAME`].
    TooLong,
    /// The stream ended inside a frame, or inside a header that was valid so far.
    Truncated,
}

/// One result of decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Frame(Frame),
    Skipped { bytes: usize, reason: SkipReason },
}

enum Header {
    /// A valid header of this many bytes.
    Ok {
        len: usize,
        vendor: [u8; 2],
        id: (usize, usize),
        index: Option<u16>,
        declared: u16,
    },
    /// Valid so far but the data ends inside it.
    Incomplete,
    Invalid,
}

fn hex4(b: &[u8]) -> Option<u16> {
    if b.len() != 4 || !b.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u16::from_str_radix(std::str::from_utf8(b).ok()?, 16).ok()
}

/// Parse a header at the start of `buf` (which starts with `[`).
fn parse_header(buf: &[u8]) -> Header {
    // `[` VV `*`
    let n = buf.len();
    if buf
        .iter()
        .skip(1)
        .take(2)
        .any(|b| !b.is_ascii_alphanumeric())
    {
        return Header::Invalid;
    }
    if n <= 3 {
        return Header::Incomplete;
    }
    if buf[3] != b'*' {
        return Header::Invalid;
    }
    let vendor = [buf[1], buf[2]];
    // digits `*`
    let id_start = 4;
    let mut i = id_start;
    loop {
        if i >= n {
            return Header::Incomplete;
        }
        match buf[i] {
            b'0'..=b'9' if i - id_start < MAX_ID_DIGITS => i += 1,
            b'*' if i > id_start => break,
            _ => return Header::Invalid,
        }
    }
    let id = (id_start, i);
    let f1 = i + 1;
    // LLLL `*` (or IDX `*` LLLL `*` for ZJ)
    if n < f1 + 5 {
        // Check what is there so far.
        let have = &buf[f1..];
        let ok =
            have.iter().take(4).all(u8::is_ascii_hexdigit) && (have.len() < 5 || have[4] == b'*');
        return if ok {
            Header::Incomplete
        } else {
            Header::Invalid
        };
    }
    let Some(first) = hex4(&buf[f1..f1 + 4]) else {
        return Header::Invalid;
    };
    if buf[f1 + 4] != b'*' {
        return Header::Invalid;
    }
    if &vendor == b"ZJ" {
        let f2 = f1 + 5;
        let have = &buf[f2..n.min(f2 + 5)];
        let prefix_ok =
            have.iter().take(4).all(u8::is_ascii_hexdigit) && (have.len() < 5 || have[4] == b'*');
        if prefix_ok && have.len() < 5 {
            return Header::Incomplete;
        }
        if prefix_ok {
            if let Some(len) = hex4(&have[..4]) {
                return Header::Ok {
                    len: f2 + 5,
                    vendor,
                    id,
                    index: Some(first),
                    declared: len,
                };
            }
        }
        // A ZJ frame without an index.
    }
    Header::Ok {
        len: f1 + 5,
        vendor,
        id,
        index: None,
        declared: first,
    }
}

/// What follows a `]`: the end of a frame, content, or not known yet.
enum After {
    End,
    Content,
    NeedMore,
}

fn after_bracket(follow: &[u8], finishing: bool) -> After {
    if follow.is_empty() {
        return After::End;
    }
    if follow[0] != b'[' {
        return After::Content;
    }
    if follow.len() >= 4 {
        return if follow[3] == b'*' {
            After::End
        } else {
            After::Content
        };
    }
    if finishing {
        // The stream ended: nothing more can make it a frame start; the `]` closes.
        After::End
    } else {
        After::NeedMore
    }
}

/// Stream decoder. Feed reads with [`Decoder::push`], call [`Decoder::finish`] when
/// the stream ends.
///
/// Bytes are consumed by advancing an offset into the buffer; the consumed prefix is
/// discarded in one move once it is at least as long as what is still held, so every
/// received byte is moved at most once on average whatever the input (dropping the
/// front of the buffer at every skipped `[` would make each dropped byte cost a move
/// of the whole held frame). Between calls [`Decoder::buffered`] is at most the
/// frame bound; the buffer's allocation is at most twice that plus one 64 KiB slice.
pub struct Decoder {
    buf: Vec<u8>,
    /// `buf[..start]` has been consumed and is discarded lazily.
    start: usize,
    /// No `]` before this index of the held data (`buf[start..]`) ends a frame (it
    /// is followed by content).
    scan: usize,
    max_frame: usize,
    /// Bytes examined by the searches plus bytes moved by compaction.
    work: u64,
}

/// Largest slice of a read appended to the buffer before decoding it.
pub const PUSH_SLICE: usize = 64 * 1024;

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::with_max_frame(MAX_FRAME)
    }

    /// A decoder with a different frame size bound (tests).
    pub fn with_max_frame(max_frame: usize) -> Decoder {
        Decoder {
            buf: Vec::new(),
            start: 0,
            scan: 0,
            max_frame: max_frame.max(MAX_HEADER + 1),
            work: 0,
        }
    }

    /// Bytes held waiting for the rest of a frame. After every [`push`](Self::push)
    /// this is at most the frame bound ([`MAX_FRAME`] or the `with_max_frame` value,
    /// which is raised to at least the longest header plus one).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The work done so far: bytes examined while looking for delimiters and
    /// headers plus bytes moved inside the buffer. A measure for checking that
    /// decoding stays linear in the input, not a byte count of anything received.
    pub fn work(&self) -> u64 {
        self.work
    }

    /// Decode what `data` completes.
    pub fn push(&mut self, data: &[u8]) -> Vec<Decoded> {
        let mut out = Vec::new();
        // Feed in slices so that the buffer never exceeds the bound by more than one
        // slice, however big `data` is.
        for chunk in data.chunks(PUSH_SLICE) {
            self.compact();
            self.buf.extend_from_slice(chunk);
            self.run(false, &mut out);
        }
        out
    }

    /// The stream ended: decode what can be decoded and report the rest. Every
    /// byte pushed and not yet returned in a frame is returned in a
    /// [`Decoded::Skipped`]; nothing is held afterwards. A held `]` followed by `[`
    /// and at most two more bytes closes its frame, and those last bytes are
    /// skipped as [`SkipReason::Truncated`] (or [`SkipReason::BadHeader`] when they
    /// cannot start a header, e.g. `[]`).
    pub fn finish(&mut self) -> Vec<Decoded> {
        let mut out = Vec::new();
        self.run(true, &mut out);
        let held = self.buffered();
        if held > 0 {
            let reason = if self.held()[0] == b'[' {
                SkipReason::Truncated
            } else {
                SkipReason::Garbage
            };
            out.push(Decoded::Skipped {
                bytes: held,
                reason,
            });
        }
        self.buf.clear();
        self.start = 0;
        self.scan = 0;
        out
    }

    /// The bytes held (not yet consumed).
    fn held(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Discard the consumed prefix once it is at least as long as the held data.
    fn compact(&mut self) {
        if self.start == 0 {
            return;
        }
        let held = self.buf.len() - self.start;
        if self.start >= held {
            self.work += held as u64;
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    fn drop_front(&mut self, n: usize) {
        let n = n.min(self.buffered());
        self.start += n;
        self.scan = self.scan.saturating_sub(n);
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Drop bytes up to the next `[` at index >= `from` of the held data (all if
    /// none).
    fn resync(&mut self, from: usize, reason: SkipReason, out: &mut Vec<Decoded>) {
        let held = self.held();
        let next = held
            .get(from..)
            .and_then(|r| r.iter().position(|&b| b == b'['))
            .map(|p| p + from);
        let n = next.unwrap_or(held.len());
        self.work += (n.saturating_sub(from) + 1) as u64;
        if n > 0 {
            out.push(Decoded::Skipped { bytes: n, reason });
            self.drop_front(n);
        }
    }

    fn run(&mut self, finishing: bool, out: &mut Vec<Decoded>) {
        loop {
            if self.buffered() == 0 {
                self.scan = 0;
                return;
            }
            if self.held()[0] != b'[' {
                self.resync(0, SkipReason::Garbage, out);
                continue;
            }
            self.work += self.buffered().min(MAX_HEADER) as u64;
            let (hlen, vendor, id, index, declared) = match parse_header(self.held()) {
                Header::Ok {
                    len,
                    vendor,
                    id,
                    index,
                    declared,
                } => (len, vendor, id, index, declared),
                Header::Incomplete if !finishing => return,
                Header::Incomplete => {
                    // The stream ended inside a header that was valid so far (a
                    // header has no `[`, so this drops all that is held).
                    self.resync(1, SkipReason::Truncated, out);
                    continue;
                }
                Header::Invalid => {
                    self.resync(1, SkipReason::BadHeader, out);
                    continue;
                }
            };
            // Find the closing bracket.
            let held = &self.buf[self.start..];
            let mut i = self.scan.max(hlen);
            let mut end = None;
            let mut waiting = false;
            let mut examined = 0usize;
            loop {
                let Some(p) = held[i..].iter().position(|&b| b == b']') else {
                    examined += held.len() - i;
                    break;
                };
                examined += p + 1;
                let at = i + p;
                match after_bracket(&held[at + 1..], finishing) {
                    After::End => {
                        end = Some(at);
                        break;
                    }
                    After::Content => i = at + 1,
                    After::NeedMore => {
                        i = at;
                        waiting = true;
                        break;
                    }
                }
            }
            self.work += examined as u64;
            if waiting && held.len() > self.max_frame && i < self.max_frame {
                // Waiting at a `]` followed by `[` and at most two more bytes, with
                // more held than the bound: were that `]` content, the frame would
                // be longer than the bound whatever follows and be dropped. It ends
                // the frame, as it would had the read ended right after it, so that
                // whether a frame up to the bound is kept does not depend on how the
                // bytes were cut.
                end = Some(i);
            }
            if !waiting && end.is_none() {
                i = held.len();
            }
            self.scan = i;
            match end {
                Some(at) if at < self.max_frame => {
                    let frame = Frame {
                        vendor: String::from_utf8_lossy(&vendor).into_owned(),
                        device_id: String::from_utf8_lossy(&held[id.0..id.1]).into_owned(),
                        index,
                        declared_len: declared,
                        content: held[hlen..at].to_vec(),
                    };
                    self.drop_front(at + 1);
                    // `scan` referred to this frame's bytes.
                    self.scan = 0;
                    out.push(Decoded::Frame(frame));
                }
                Some(at) => {
                    // Complete but over the bound. Every `]` before `at` is followed
                    // by content, so a frame starting at the next `[` is searched
                    // from `at` on, not from its header again.
                    self.scan = at;
                    self.resync(1, SkipReason::TooLong, out);
                }
                None if self.buffered() > self.max_frame => {
                    // Still open and already over the bound: no `]` before `scan`
                    // ends a frame, whatever `[` starts it, so `scan` stays valid.
                    self.resync(1, SkipReason::TooLong, out);
                }
                None => return,
            }
        }
    }
}

/// Escape binary payload bytes for `TK`/`JXTK`/`img` frames.
pub fn escape(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload.len() / 8);
    for &b in payload {
        match b {
            0x7d => out.extend_from_slice(&[0x7d, 0x01]),
            b'[' => out.extend_from_slice(&[0x7d, 0x02]),
            b']' => out.extend_from_slice(&[0x7d, 0x03]),
            b',' => out.extend_from_slice(&[0x7d, 0x04]),
            b'*' => out.extend_from_slice(&[0x7d, 0x05]),
            _ => out.push(b),
        }
    }
    out
}

/// Undo [`escape`]. An escape byte followed by anything other than 01..05 (or by
/// nothing) is kept as it is.
pub fn unescape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        if b == 0x7d {
            let mapped = match data.get(i + 1) {
                Some(0x01) => Some(0x7d),
                Some(0x02) => Some(b'['),
                Some(0x03) => Some(b']'),
                Some(0x04) => Some(b','),
                Some(0x05) => Some(b'*'),
                _ => None,
            };
            if let Some(m) = mapped {
                out.push(m);
                i += 2;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    out
}

/// A frame `[VV*ID*LLLL*CONTENT]` with the correct length field (lower-case hex, as
/// field servers write it). The field has four hex digits: content longer than
/// 0xFFFF bytes is written with `ffff` (receivers find the end by the `]`).
pub fn encode(vendor: &str, id: &str, content: &[u8]) -> Vec<u8> {
    encode_frame(vendor, id, None, content)
}

/// A `ZJ`-style frame with a message index: `[VV*ID*IDX*LLLL*CONTENT]`.
pub fn encode_indexed(vendor: &str, id: &str, index: u16, content: &[u8]) -> Vec<u8> {
    encode_frame(vendor, id, Some(index), content)
}

fn encode_frame(vendor: &str, id: &str, index: Option<u16>, content: &[u8]) -> Vec<u8> {
    let len = u16::try_from(content.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(content.len() + MAX_HEADER + 1);
    out.push(b'[');
    out.extend_from_slice(vendor.as_bytes());
    out.push(b'*');
    out.extend_from_slice(id.as_bytes());
    out.push(b'*');
    if let Some(idx) = index {
        out.extend_from_slice(format!("{idx:04x}*").as_bytes());
    }
    out.extend_from_slice(format!("{len:04x}*").as_bytes());
    out.extend_from_slice(content);
    out.push(b']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn corpus(name: &str) -> String {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/corpus/watch-protocol")
            .join(name);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn lines(name: &str) -> Vec<String> {
        corpus(name)
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(str::to_string)
            .collect()
    }

    fn frames(items: Vec<Decoded>) -> Vec<Frame> {
        items
            .into_iter()
            .map(|d| match d {
                Decoded::Frame(f) => f,
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    fn decode_all(data: &[u8]) -> Vec<Decoded> {
        let mut d = Decoder::new();
        let mut out = d.push(data);
        out.extend(d.finish());
        out
    }

    fn decode_chunked(data: &[u8], chunk: usize) -> Vec<Decoded> {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        for c in data.chunks(chunk) {
            out.extend(d.push(c));
        }
        out.extend(d.finish());
        out
    }

    /// The header fields of a corpus line, parsed independently of the decoder.
    fn expected(line: &str) -> (String, String, Option<u16>, u16, Vec<u8>) {
        let inner = &line[1..line.len() - 1];
        let parts: Vec<&str> = inner.splitn(5, '*').collect();
        let zj = parts[0] == "ZJ"
            && parts.len() == 5
            && parts[3].len() == 4
            && parts[3].chars().all(|c| c.is_ascii_hexdigit());
        if zj {
            (
                parts[0].into(),
                parts[1].into(),
                Some(u16::from_str_radix(parts[2], 16).unwrap()),
                u16::from_str_radix(parts[3], 16).unwrap(),
                parts[4].as_bytes().to_vec(),
            )
        } else {
            let parts: Vec<&str> = inner.splitn(4, '*').collect();
            (
                parts[0].into(),
                parts[1].into(),
                None,
                u16::from_str_radix(parts[2], 16).unwrap(),
                parts[3].as_bytes().to_vec(),
            )
        }
    }

    #[test]
    fn every_decoder_corpus_frame_decodes_whole() {
        let ls = lines("traccar-decoder-frames.txt");
        assert!(ls.len() > 40, "corpus has {} frames", ls.len());
        let mut zj = 0;
        let mut wrong_len = 0;
        for line in &ls {
            let f = frames(decode_all(line.as_bytes()));
            assert_eq!(f.len(), 1, "{line}");
            let (vendor, id, index, declared, content) = expected(line);
            assert_eq!(f[0].vendor, vendor, "{line}");
            assert_eq!(f[0].device_id, id, "{line}");
            assert_eq!(f[0].index, index, "{line}");
            assert_eq!(f[0].declared_len, declared, "{line}");
            assert_eq!(f[0].content, content, "{line}");
            zj += index.is_some() as usize;
            wrong_len += !f[0].length_matches() as usize;
        }
        assert!(zj >= 5, "ZJ frames with index: {zj}");
        // The corpus holds real frames with wrong length fields; they still decode.
        assert!(wrong_len > 0);
    }

    #[test]
    fn the_whole_decoder_corpus_as_one_stream_in_any_chunking() {
        let ls = lines("traccar-decoder-frames.txt");
        // Garbage in front must be skipped without losing sync.
        let mut stream = b"\r\ngarbage]]*".to_vec();
        for l in &ls {
            stream.extend_from_slice(l.as_bytes());
        }
        let whole = only_frames(decode_all(&stream));
        assert_eq!(whole.len(), ls.len());
        for (f, l) in whole.iter().zip(&ls) {
            assert_eq!(f.content, expected(l).4);
        }
        for chunk in [1usize, 2, 3, 5, 17, 64, 1000] {
            assert_eq!(
                only_frames(decode_chunked(&stream, chunk)),
                whole,
                "chunk size {chunk}"
            );
        }
    }

    #[test]
    fn garbage_between_reads_is_skipped_and_counted() {
        let mut d = Decoder::new();
        let mut out = d.push(b"[3G*1234567890*0002*LK]");
        out.extend(d.push(b"\x00\xffnoise"));
        out.extend(d.push(b"[SG*1234567890*0002*LK]"));
        assert_eq!(only_frames(out.clone()).len(), 2);
        assert!(out.contains(&Decoded::Skipped {
            bytes: 7,
            reason: SkipReason::Garbage
        }));
        // Bytes after a `]` that do not start a frame belong to the frame (spec).
        let f = only_frames(decode_all(
            b"[3G*1234567890*0002*LK]zz[SG*1234567890*0002*LK]",
        ));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].content, b"LK]zz[SG*1234567890*0002*LK");
    }

    fn only_frames(items: Vec<Decoded>) -> Vec<Frame> {
        items
            .into_iter()
            .filter_map(|d| {
                if let Decoded::Frame(f) = d {
                    Some(f)
                } else {
                    None
                }
            })
            .collect()
    }

    fn hex_lines() -> Vec<Vec<u8>> {
        lines("traccar-binary-frames.hex")
            .iter()
            .map(|l| hex::decode(l.trim()).unwrap())
            .collect()
    }

    #[test]
    fn four_concatenated_frames_in_one_read() {
        let data = &hex_lines()[0];
        let f = frames(decode_all(data));
        let cmds: Vec<String> = f.iter().map(Frame::command).collect();
        assert_eq!(cmds, ["LK", "UD", "TKQ", "LK"]);
        assert!(f
            .iter()
            .all(|f| f.vendor == "3G" && f.device_id == "9705141740"));
        assert_eq!(f[0].content, b"LK,0,0,53");
        assert!(f.iter().all(Frame::length_matches));
    }

    #[test]
    fn brackets_inside_a_wifi_name_stay_in_the_content() {
        let data = &hex_lines()[1];
        let f = frames(decode_all(data));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].device_id, "880900242"); // 9 digits: tolerated
        let content = String::from_utf8(f[0].content.clone()).unwrap();
        assert!(
            content.contains(",[LG_Wall-Mount A/C]e725,66:a1:ed:e1:e7:25,-82,15.0"),
            "{content}"
        );
        assert!(content.ends_with("15.0"));
        // Also when the bytes arrive split anywhere except right after the inner `]`
        // (there the spec makes the frame end at the end of the data read so far).
        let inner = data.windows(5).position(|w| w == b"A/C]e").unwrap() + 4;
        for split in (1..data.len()).step_by(13).filter(|&s| s != inner) {
            let mut d = Decoder::new();
            let mut out = d.push(&data[..split]);
            out.extend(d.push(&data[split..]));
            let g = frames(out);
            assert_eq!(g, f, "split at {split}");
        }
    }

    #[test]
    fn zj_frames_and_single_frames_from_the_hex_corpus() {
        let h = hex_lines();
        let one = |i: usize| frames(decode_all(&h[i]));
        assert_eq!(one(2)[0].content, b"LK,0,0,100");
        assert_eq!(one(2)[0].device_id, "352661090143150");
        assert_eq!(one(3)[0].command(), "rcapture");
        let zj = one(5);
        assert_eq!(zj[0].vendor, "ZJ");
        assert_eq!(zj[0].index, Some(0x34));
        assert_eq!(zj[0].declared_len, 9);
        assert_eq!(zj[0].content, b"LK,0,0,19");
    }

    #[test]
    fn jxtk_voice_chunks_are_six_frames_with_escaped_binary() {
        let data = &hex_lines()[6];
        let f = frames(decode_all(data));
        assert_eq!(f.len(), 6);
        let mut voice = Vec::new();
        for (i, fr) in f.iter().enumerate() {
            assert_eq!(fr.vendor, "ZJ");
            assert_eq!(fr.device_id, "789468050042692");
            assert_eq!(fr.command(), "JXTK");
            assert!(fr.is_binary());
            let fields = fr.fields();
            assert_eq!(fields.len(), 6, "JXTK,flag,name,part,total,payload");
            assert_eq!(fields[3], (i + 1).to_string().as_bytes());
            assert_eq!(fields[4], b"6");
            // The escaped payload held no raw delimiter; unescaped it may.
            let raw_payload = fr.content.rsplit(|&b| b == b',').next().unwrap();
            assert!(!raw_payload.iter().any(|b| b"[]*,".contains(b)));
            assert_eq!(escape(&fields[5]), raw_payload);
            voice.extend_from_slice(&fields[5]);
        }
        assert!(voice.starts_with(b"#!AMR\n"));
        // The payload contains bytes that must be escaped on the wire.
        assert!(voice.iter().any(|b| b"[]*,}".contains(b)));
        // Any chunking gives the same six frames.
        for chunk in [1, 7, 100, 4096] {
            assert_eq!(frames(decode_chunked(data, chunk)), f, "chunk {chunk}");
        }
    }

    #[test]
    fn kidtracker_frames_split_and_back_to_back() {
        let ls = lines("kidtracker-frames.txt");
        let f = frames(decode_all(ls[2].as_bytes()));
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].content, b"LK,865649,0,61");
        assert_eq!(f[1].content, b"LK");
        // The truncated frame split across reads.
        let mut d = Decoder::new();
        assert!(d.push(b"[3G*1234567890*000E*LK,8").is_empty());
        let g = frames(d.push(b"65649,0,61]"));
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].content, b"LK,865649,0,61");
        assert!(g[0].length_matches());
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn encoder_reproduces_the_server_corpus() {
        let ls = lines("traccar-encoder-frames.txt");
        assert!(ls.len() >= 10);
        for line in ls {
            // In the corpus the TK line has a Java `\n`: a newline byte on the wire.
            let wire = line.replace("\\n", "\n");
            let (vendor, id, _, declared, content) = expected(&wire);
            let enc = encode(&vendor, &id, &content);
            assert_eq!(String::from_utf8(enc.clone()).unwrap(), wire);
            assert_eq!(declared as usize, content.len());
            let back = frames(decode_all(&enc));
            assert_eq!(back[0].content, content);
        }
    }

    #[test]
    fn encode_decode_round_trip_with_binary_payload() {
        let payload: Vec<u8> = (0..=255u8).chain([0x7d, b'[', b']', b',', b'*']).collect();
        let mut content = b"TK,".to_vec();
        content.extend(escape(&payload));
        let enc = encode("3G", "1234567890", &content);
        let f = frames(decode_all(&enc));
        assert_eq!(f.len(), 1);
        assert!(f[0].length_matches());
        assert_eq!(f[0].fields()[1], payload);
        let zj = encode_indexed("ZJ", "123456789012345", 0x2a, b"LK");
        assert_eq!(zj, b"[ZJ*123456789012345*002a*0002*LK]");
        assert_eq!(frames(decode_all(&zj))[0].index, Some(0x2a));
    }

    #[test]
    fn bad_length_field_is_malformed_and_decoding_resyncs() {
        let data = b"[3G*1234567890*00X2*LK][3G*1234567890*0002*LK]";
        let out = decode_all(data);
        assert_eq!(
            out[0],
            Decoded::Skipped {
                bytes: 23,
                reason: SkipReason::BadHeader
            }
        );
        assert_eq!(frames(out[1..].to_vec())[0].content, b"LK");
        // A wrong (but well-formed) length is accepted.
        let f = frames(decode_all(b"[3G*1234567890*00FF*LK,1]"));
        assert_eq!(f[0].content, b"LK,1");
        assert!(!f[0].length_matches());
    }

    #[test]
    fn over_long_frames_are_dropped_with_bounded_memory() {
        let mut d = Decoder::new();
        let mut skipped = 0usize;
        let mut got = Vec::new();
        d.push(b"[3G*1234567890*0002*");
        let filler = vec![b'A'; 64 * 1024];
        for _ in 0..40 {
            for item in d.push(&filler) {
                match item {
                    Decoded::Skipped { bytes, .. } => skipped += bytes,
                    Decoded::Frame(f) => got.push(f),
                }
            }
            assert!(d.buffered() <= MAX_FRAME + 64 * 1024, "{}", d.buffered());
        }
        // Everything pushed so far was dropped: the frame header and the filler.
        assert_eq!(skipped, 20 + 40 * 64 * 1024);
        assert!(got.is_empty());
        got.extend(only_frames(d.push(b"][3G*1234567890*0002*LK]")));
        got.extend(only_frames(d.finish()));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].content, b"LK");
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn adversarial_input_of_many_headers_is_linear_and_bounded() {
        // Headers and brackets followed by content everywhere: no frame ends.
        let unit = b"[3G*1*0000*]x";
        let data: Vec<u8> = unit.iter().copied().cycle().take(3 * MAX_FRAME).collect();
        let mut d = Decoder::new();
        let mut n = 0;
        for c in data.chunks(8192) {
            n += d.push(c).len();
            assert!(d.buffered() <= MAX_FRAME + 8192);
        }
        let _ = n;
        let end = d.finish();
        assert!(!end.is_empty());
    }

    #[test]
    fn truncated_stream_is_reported() {
        let mut d = Decoder::new();
        assert!(d.push(b"[3G*1234567890*0004*LK,1").is_empty());
        assert_eq!(
            d.finish(),
            vec![Decoded::Skipped {
                bytes: 24,
                reason: SkipReason::Truncated
            }]
        );
    }

    #[test]
    fn bracket_then_partial_next_frame_waits_for_more() {
        let mut d = Decoder::new();
        // `]` followed by `[3` might be the next frame start or content.
        assert!(d.push(b"[3G*1234567890*0002*LK][3").is_empty());
        let out = frames(d.push(b"G*1234567890*0002*LK]"));
        assert_eq!(out.len(), 2);
        // ... and `]x` is content.
        let f = frames(decode_all(b"[3G*1234567890*0004*A]x,B]"));
        assert_eq!(f[0].content, b"A]x,B");
    }

    /// Every byte is in a decoded frame or a skip, in order (the frame's wire form
    /// has the input's length; hex fields may differ in case).
    fn accounted(input: &[u8], items: &[Decoded]) -> bool {
        let mut pos = 0usize;
        for item in items {
            match item {
                Decoded::Frame(f) => {
                    let bytes = f.to_bytes();
                    let Some(wire) = input.get(pos..pos + bytes.len()) else {
                        return false;
                    };
                    if !wire.eq_ignore_ascii_case(&bytes) {
                        return false;
                    }
                    pos += bytes.len();
                }
                Decoded::Skipped { bytes, .. } => pos += bytes,
            }
        }
        pos == input.len()
    }

    /// The stream ends with `][` and at most two more bytes: the `]` closes the
    /// frame (the `[` cannot start a frame any more), the rest is skipped (a header
    /// cut short by the end of the stream as truncated), every byte is accounted
    /// for, and the result does not depend on how the bytes were cut, also when
    /// the frame is as long as the bound.
    #[test]
    fn stream_ending_in_bracket_bracket_and_two_bytes_at_most() {
        let frame = b"[3G*1234567890*0002*LK]".to_vec();
        let tails: [&[u8]; 9] = [
            b"[", b"[3", b"[3G", b"[[", b"[]", b"[*", b"[]]", b"[[[", b"[\xff",
        ];
        for tail in tails {
            let mut input = frame.clone();
            input.extend_from_slice(tail);
            let whole = decode_all(&input);
            assert!(accounted(&input, &whole), "{tail:?}: {whole:?}");
            let f = only_frames(whole.clone());
            assert_eq!(f.len(), 1, "{tail:?}: {whole:?}");
            assert_eq!(f[0].content, b"LK");
            let skipped: usize = whole[1..]
                .iter()
                .map(|d| match d {
                    Decoded::Skipped { bytes, .. } => *bytes,
                    Decoded::Frame(f) => panic!("{tail:?}: a second frame {f:?}"),
                })
                .sum();
            assert_eq!(skipped, tail.len(), "{tail:?}");
            if tail.len() < 2 || tail[1].is_ascii_alphanumeric() {
                // A frame start that is valid so far, cut short by the stream's end.
                assert_eq!(
                    whole[1..],
                    [Decoded::Skipped {
                        bytes: tail.len(),
                        reason: SkipReason::Truncated
                    }],
                    "{tail:?}"
                );
            }
            for chunk in 1..input.len() {
                // The same frame and every byte accounted for (how skipped bytes are
                // grouped may depend on the reads).
                let split = decode_chunked(&input, chunk);
                assert!(
                    accounted(&input, &split),
                    "{tail:?}, reads of {chunk}: {split:?}"
                );
                assert_eq!(only_frames(split), f, "{tail:?}, reads of {chunk}");
            }
        }
        // Only the tail, after garbage: nothing decoded, everything accounted for.
        for input in [&b"]["[..], b"][3", b"]x[3G"] {
            for chunk in 1..=input.len() {
                let out = decode_chunked(input, chunk);
                assert!(accounted(input, &out), "{input:?}: {out:?}");
                assert!(only_frames(out).is_empty());
            }
        }
        // A frame up to the bound, then `[` and up to two bytes in the same read:
        // the frame is kept (it was dropped as too long when the held bytes went
        // over the bound while waiting to see whether its `]` ended it).
        for max in [64usize, 100] {
            for extra in 0..3 {
                let f = encode("3G", "1234567890", &vec![b'a'; max - 21 - extra]);
                assert_eq!(f.len(), max - extra);
                for tail in [&b"["[..], b"[3", b"[3G"] {
                    let mut input = f.clone();
                    input.extend_from_slice(tail);
                    for chunk in [1usize, 2, 7, input.len()] {
                        let mut d = Decoder::with_max_frame(max);
                        let mut out = Vec::new();
                        for c in input.chunks(chunk) {
                            out.extend(d.push(c));
                            assert!(d.buffered() <= max);
                        }
                        out.extend(d.finish());
                        assert!(accounted(&input, &out), "{out:?}");
                        assert_eq!(
                            only_frames(out.clone()).len(),
                            1,
                            "bound {max}, frame of {}, {tail:?}, reads of {chunk}: {out:?}",
                            f.len()
                        );
                    }
                }
            }
        }
        // One byte over the bound is still too long.
        let f = encode("3G", "1234567890", &[b'a'; 44]);
        assert_eq!(f.len(), 65);
        let mut d = Decoder::with_max_frame(64);
        let mut out = d.push(&[&f[..], b"[3"].concat());
        out.extend(d.finish());
        assert!(only_frames(out.clone()).is_empty(), "{out:?}");
    }

    #[test]
    fn display_is_printable_and_bounded() {
        let f = frames(decode_all(&hex_lines()[6]))[0].clone();
        let s = f.display(200);
        assert!(s.starts_with("[ZJ*789468050042692*0034*0439*JXTK,0,watch_7_20220526093954,1,6,<"));
        assert!(s.contains("bytes binary>"));
        let long = Frame {
            content: vec![b'x'; 1000],
            ..f
        };
        assert!(long.display(50).contains("more chars"));
    }
}

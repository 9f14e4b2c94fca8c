//! Property tests of the parsers that read what a device under test (or its
//! receiver, modem line and callbox adapter) writes: the watch-protocol decoder, the
//! NMEA replay parser and sentence parser, the virtual modem's AT command reader,
//! the callbox adapter's events lines and the console line splitter.
//!
//! The device is untrusted, so every parser must survive arbitrary bytes without a
//! panic, keep its memory bounded whatever arrives, account for every byte, give the
//! same result however the bytes are split into reads, and do work linear in the
//! input (checked through counts, never through timing).
//!
//! Run time is bounded for CI: each property runs `REDRIG_FUZZ_CASES` cases
//! (default 256). A longer fuzz run on a workstation:
//!
//! ```text
//! REDRIG_FUZZ_CASES=20000 cargo test --release -p redrig --test hostile_serial
//! ```
//!
//! Failure persistence is off (nothing is written into the source tree); a failing
//! case is printed, shrunk, by proptest.

mod support;

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use redrig::drivers::callbox::{self, parse_event, MAX_EVENT_LINE};
use redrig::drivers::console::{LineSplitter, MAX_LINE as CONSOLE_MAX_LINE};
use redrig::drivers::modem::{Effects, ModemCore, MAX_COMMAND};
use redrig::drivers::{CellEvent, NameService};
use redrig::gnss::replay::{self, Recording, MAX_GAP_MS};
use redrig::wire::nmea;
use redrig::wire::watchproto::{
    encode, encode_indexed, escape, unescape, Decoded, Decoder, Frame, MAX_FRAME, PUSH_SLICE,
};
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Cases per property: `REDRIG_FUZZ_CASES`, default 256.
fn cases() -> u32 {
    std::env::var("REDRIG_FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n: &u32| n > 0)
        .unwrap_or(256)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------
// Seeds and mutations
// ---------------------------------------------------------------------------------

/// A mutation of a seed input.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Duplicate(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (
            any::<usize>(),
            prop::collection::vec(
                prop_oneof![
                    Just(b'['),
                    Just(b']'),
                    Just(b'*'),
                    Just(b','),
                    Just(b'$'),
                    Just(b'\r'),
                    Just(b'\n'),
                    Just(0x7d),
                    any::<u8>()
                ],
                1..8
            )
        )
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(mut data: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let len = data.len();
        let at = |i: usize| if len == 0 { 0 } else { i % (len + 1) };
        match m {
            Mutation::Flip(i, b) if len > 0 => data[i % len] = *b,
            Mutation::Flip(..) => {}
            Mutation::Insert(i, v) => {
                let p = at(*i);
                data.splice(p..p, v.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let p = at(*i);
                let e = (p + n).min(len);
                data.drain(p..e);
            }
            Mutation::Duplicate(i, n) => {
                let p = at(*i);
                let e = (p + n).min(len);
                let piece = data[p..e].to_vec();
                data.splice(e..e, piece);
            }
            Mutation::Truncate(i) => data.truncate(at(*i)),
        }
    }
    data
}

/// Split points (sorted, deduplicated, inside `0..=len`) from arbitrary numbers.
fn cuts(len: usize, raw: &[usize]) -> Vec<usize> {
    let mut v: Vec<usize> = raw.iter().map(|r| r % (len + 1)).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// `data` split at `cuts` (empty pieces included, as reads of zero bytes).
fn pieces<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut prev = 0;
    for &c in cuts {
        out.push(&data[prev..c]);
        prev = c;
    }
    out.push(&data[prev..]);
    out
}

// ---------------------------------------------------------------------------------
// 1. Watch-protocol frames
// ---------------------------------------------------------------------------------

/// Real frames: the decoder corpus next to the workspace (when present), the
/// kid-tracker frames and frames encoded here.
fn watch_seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    let corpus = manifest_dir().join("../shared/corpus/watch-protocol");
    for name in [
        "traccar-decoder-frames.txt",
        "kidtracker-frames.txt",
        "traccar-encoder-frames.txt",
    ] {
        if let Ok(text) = std::fs::read_to_string(corpus.join(name)) {
            seeds.extend(
                text.lines()
                    .filter(|l| l.starts_with('['))
                    .map(|l| l.as_bytes().to_vec()),
            );
        }
    }
    if let Ok(text) = std::fs::read_to_string(corpus.join("traccar-binary-frames.hex")) {
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let l = l.trim();
            if l.len() % 2 == 0 && !l.is_empty() {
                let bytes: Option<Vec<u8>> = (0..l.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(l.get(i..i + 2)?, 16).ok())
                    .collect();
                seeds.extend(bytes);
            }
        }
    }
    // Always present, whatever the corpus holds.
    seeds.push(encode("3G", "1234567890", b"LK,0,0,53"));
    seeds.push(encode("SG", "880900242", b"UD,[LG_Wall-Mount A/C]e725,-82"));
    seeds.push(encode_indexed("ZJ", "789468050042692", 0x34, b"LK,0,0,19"));
    let mut tk = b"TK,".to_vec();
    tk.extend(escape(&(0..=255u8).collect::<Vec<u8>>()));
    seeds.push(encode("3G", "1234567890", &tk));
    seeds
}

/// Inputs for the decoder: arbitrary bytes, frame-ish token soup, and mutated
/// concatenations of real frames.
fn watch_input() -> impl Strategy<Value = Vec<u8>> {
    let seeds = watch_seeds();
    let token = prop_oneof![
        Just(b"[".to_vec()),
        Just(b"]".to_vec()),
        Just(b"*".to_vec()),
        Just(b"[3G*".to_vec()),
        Just(b"[ZJ*".to_vec()),
        Just(b"1234567890*".to_vec()),
        Just(b"0002*".to_vec()),
        Just(b"00FF*".to_vec()),
        Just(b"LK".to_vec()),
        Just(b"]x".to_vec()),
        Just(b"][3".to_vec()),
        prop::collection::vec(any::<u8>(), 0..8),
    ];
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..2048),
        prop::collection::vec(token, 0..64).prop_map(|v| v.concat()),
        (
            prop::collection::vec(prop::sample::select(seeds), 1..6),
            prop::collection::vec(mutation(), 0..6),
        )
            .prop_map(|(frames, muts)| apply(frames.concat(), &muts)),
    ]
}

fn decode_pieces(d: &mut Decoder, parts: &[&[u8]], bound: usize) -> Vec<Decoded> {
    let mut out = Vec::new();
    for p in parts {
        out.extend(d.push(p));
        assert!(
            d.buffered() <= bound,
            "buffered {} > bound {bound}",
            d.buffered()
        );
    }
    out.extend(d.finish());
    assert_eq!(d.buffered(), 0, "finish leaves nothing held");
    out
}

fn frames_of(items: &[Decoded]) -> Vec<Frame> {
    items
        .iter()
        .filter_map(|d| match d {
            Decoded::Frame(f) => Some(f.clone()),
            Decoded::Skipped { .. } => None,
        })
        .collect()
}

/// The decoded items partition the input: in order, each frame is the input bytes
/// at its place (hex fields compared without case: `to_bytes` writes upper case),
/// its content exactly, and each skip covers the bytes it says.
fn assert_partition(input: &[u8], items: &[Decoded]) {
    let mut pos = 0usize;
    for item in items {
        match item {
            Decoded::Frame(f) => {
                let bytes = f.to_bytes();
                let end = pos + bytes.len();
                assert!(end <= input.len(), "frame past the input end");
                let wire = &input[pos..end];
                assert!(
                    wire.eq_ignore_ascii_case(&bytes),
                    "frame {f:?} is not the input at {pos}"
                );
                assert_eq!(
                    &wire[wire.len() - 1 - f.content.len()..wire.len() - 1],
                    &f.content[..]
                );
                assert_eq!(wire.first(), Some(&b'['));
                assert_eq!(wire.last(), Some(&b']'));
                pos = end;
            }
            Decoded::Skipped { bytes, .. } => {
                assert!(*bytes > 0, "empty skip");
                pos += bytes;
            }
        }
    }
    assert_eq!(
        pos,
        input.len(),
        "every byte is a frame byte or a skipped byte"
    );
}

/// Whether a frame with this content would end at one of its inner `]`s (the
/// documented rule): a `]` followed by `[`, two characters and `*`, or, at the end of
/// the stream, by `[` and fewer than three more bytes (the start of a next frame cut
/// short by the end of the stream: the decoder closes the frame there).
fn ends_early(content: &[u8]) -> bool {
    let n = content.len();
    (0..n).any(|p| {
        content[p] == b']'
            && content.get(p + 1) == Some(&b'[')
            && (content.get(p + 4) == Some(&b'*') || p + 4 > n)
    })
}

/// Frame content: arbitrary bytes, and short bracket-rich content.
fn text_content() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..400),
        prop::collection::vec(
            prop::sample::select(vec![b'[', b']', b'*', b'x', b'3']),
            0..12
        ),
    ]
    .prop_filter("content that ends the frame early", |c| !ends_early(c))
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary and mutated input never panics, every byte is accounted for, a
    /// small frame bound holds after every read, and no frame exceeds it.
    #[test]
    fn watch_decoder_survives_and_accounts_for_every_byte(
        input in watch_input(),
        raw_cuts in prop::collection::vec(any::<usize>(), 0..12),
        max in prop::sample::select(vec![64usize, 100, 256, 4096, MAX_FRAME]),
    ) {
        let mut d = Decoder::with_max_frame(max);
        let parts = pieces(&input, &cuts(input.len(), &raw_cuts));
        let items = decode_pieces(&mut d, &parts, max);
        assert_partition(&input, &items);
        for f in frames_of(&items) {
            prop_assert!(f.to_bytes().len() <= max);
            // Accessors never panic on decoded hostile content.
            let _ = (f.command(), f.fields(), f.display(80), f.length_matches());
        }
    }

    /// Any chunking gives the same frames as one read, except that a read ending
    /// right after a `]` ends the frame there (the documented rule), so no piece
    /// ends with a `]` here.
    #[test]
    fn watch_decoder_frames_do_not_depend_on_chunking(
        input in watch_input(),
        raw_cuts in prop::collection::vec(any::<usize>(), 1..16),
    ) {
        let whole = {
            let mut d = Decoder::new();
            decode_pieces(&mut d, &[&input], MAX_FRAME)
        };
        let cs: Vec<usize> = cuts(input.len(), &raw_cuts)
            .into_iter()
            .filter(|&c| c == 0 || input[c - 1] != b']')
            .collect();
        let mut d = Decoder::new();
        let split = decode_pieces(&mut d, &pieces(&input, &cs), MAX_FRAME);
        prop_assert_eq!(frames_of(&split), frames_of(&whole));
        assert_partition(&input, &split);
    }

    /// encode → decode gives back vendor, id, index and content, for a stream of
    /// frames split anywhere (escaped binary content holds no delimiter, so every
    /// split point is allowed), and the length field is right up to 0xFFFF.
    #[test]
    fn watch_encode_decode_round_trips(
        frames in prop::collection::vec(
            (
                "[0-9A-Za-z]{2}",
                "[0-9]{1,20}",
                prop::option::of(any::<u16>()),
                prop::sample::select(vec!["TK", "JXTK", "img", "UD", "LK"]),
                prop::collection::vec(any::<u8>(), 0..600),
            ),
            1..6,
        ),
        raw_cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for (vendor, id, index, cmd, payload) in &frames {
            // Only `ZJ` frames carry an index; a non-indexed `ZJ` frame whose
            // content starts like an index is ambiguous by the protocol.
            let (vendor, index) = match index {
                Some(i) => ("ZJ".to_string(), Some(*i)),
                None if vendor.eq_ignore_ascii_case("ZJ") => ("3G".to_string(), None),
                None => (vendor.clone(), None),
            };
            let mut content = format!("{cmd},").into_bytes();
            content.extend(escape(payload));
            stream.extend(match index {
                Some(i) => encode_indexed(&vendor, id, i, &content),
                None => encode(&vendor, id, &content),
            });
            expected.push((vendor, id.clone(), index, content, payload.clone()));
        }
        let mut d = Decoder::new();
        let items = decode_pieces(&mut d, &pieces(&stream, &cuts(stream.len(), &raw_cuts)), MAX_FRAME);
        let got = frames_of(&items);
        prop_assert_eq!(got.len(), items.len(), "no skipped bytes: {:?}", items);
        prop_assert_eq!(got.len(), expected.len());
        for (f, (vendor, id, index, content, payload)) in got.iter().zip(&expected) {
            prop_assert_eq!(&f.vendor, vendor);
            prop_assert_eq!(&f.device_id, id);
            prop_assert_eq!(f.index, *index);
            prop_assert_eq!(&f.content, content);
            prop_assert!(f.length_matches());
            if f.is_binary() {
                prop_assert_eq!(&f.fields()[1], payload);
            }
        }
    }

    /// Text content without a `]` that ends the frame early round-trips too.
    #[test]
    fn watch_text_content_round_trips(id in "[0-9]{1,20}", content in text_content()) {
        let enc = encode("3G", &id, &content);
        let mut d = Decoder::new();
        let items = decode_pieces(&mut d, &[&enc], MAX_FRAME);
        let f = frames_of(&items);
        prop_assert_eq!(f.len(), 1);
        prop_assert_eq!(&f[0].content, &content);
        prop_assert_eq!(&f[0].device_id, &id);
    }

    /// unescape(escape(x)) == x; escaped bytes hold no delimiter; unescape of
    /// arbitrary bytes never panics and never grows the data.
    #[test]
    fn watch_escape_round_trips(x in prop::collection::vec(any::<u8>(), 0..2048),
                                y in prop::collection::vec(prop_oneof![Just(0x7du8), 0u8..8, any::<u8>()], 0..512)) {
        let e = escape(&x);
        prop_assert!(!e.iter().any(|b| b"[]*,".contains(b)));
        prop_assert_eq!(unescape(&e), x);
        prop_assert!(unescape(&y).len() <= y.len());
    }

    /// An open frame followed by anything without `]` (or with `]` followed by
    /// content) is dropped as it grows: the bound holds after every read.
    #[test]
    fn watch_open_frame_is_bounded(
        max in 64usize..2048,
        fill in prop::collection::vec(prop_oneof![Just(b'['), Just(b'x'), Just(b'*'), Just(b'3'), Just(b'G')], 1..64),
        repeat in 1usize..200,
        chunk in 1usize..3000,
    ) {
        let mut d = Decoder::with_max_frame(max);
        let mut data = b"[3G*1234567890*0002*".to_vec();
        for _ in 0..repeat {
            data.extend_from_slice(&fill);
            data.extend_from_slice(b"]x");
        }
        let parts: Vec<&[u8]> = data.chunks(chunk).collect();
        let items = decode_pieces(&mut d, &parts, max);
        assert_partition(&data, &items);
    }
}

/// `[` followed by megabytes without `]`, streamed in reads of several sizes: the
/// decoder holds at most [`MAX_FRAME`] bytes after every read, drops everything, and
/// decodes the next frame.
#[test]
fn watch_megabytes_without_a_closing_bracket_stay_bounded() {
    for read in [1000usize, 4096, PUSH_SLICE, 3 * PUSH_SLICE + 7] {
        let mut d = Decoder::new();
        let mut skipped = 0usize;
        let mut frames = 0usize;
        let mut count = |items: Vec<Decoded>| {
            for it in items {
                match it {
                    Decoded::Skipped { bytes, .. } => skipped += bytes,
                    Decoded::Frame(_) => frames += 1,
                }
            }
        };
        count(d.push(b"[3G*1234567890*0002*"));
        // Not all the same byte: `[` and `*` every so often exercise the resync.
        let filler: Vec<u8> = (0..read)
            .map(|i| match i % 97 {
                0 => b'[',
                50 => b'*',
                _ => b'A' + (i % 26) as u8,
            })
            .collect();
        let total = 20 + 3 * MAX_FRAME / read * read + read;
        let mut sent = 20;
        while sent < total {
            count(d.push(&filler));
            sent += filler.len();
            assert!(d.buffered() <= MAX_FRAME, "read {read}: {}", d.buffered());
        }
        count(d.push(b"[3G*1234567890*0002*LK]"));
        count(d.finish());
        assert_eq!(frames, 1, "read {read}");
        // Everything before the last frame was dropped (it is 23 bytes).
        assert_eq!(skipped, sent, "read {read}");
        assert_eq!(d.buffered(), 0);
    }
}

// ---------------------------------------------------------------------------------
// 5. No quadratic matching (watch protocol): work counted, not timed
// ---------------------------------------------------------------------------------

/// Work per input byte of `pattern` repeated to `n` bytes (after `prefix`), pushed
/// `chunk` bytes at a time into a decoder with frame bound `max`.
fn work_per_byte(prefix: &[u8], pattern: &[u8], n: usize, chunk: usize, max: usize) -> f64 {
    let mut data = prefix.to_vec();
    data.extend(pattern.iter().copied().cycle().take(n));
    let mut d = Decoder::with_max_frame(max);
    for c in data.chunks(chunk) {
        let _ = d.push(c);
        assert!(d.buffered() <= max);
    }
    let _ = d.finish();
    d.work() as f64 / data.len() as f64
}

/// Inputs that made the decoder move or rescan its whole buffer for each few bytes
/// received: a held open frame with a `[` every other byte (each skipped `[` moved
/// the held megabyte), `]`-content everywhere, many back-to-back frames, and an
/// over-long frame full of valid headers (each rescanned up to the same `]`).
#[test]
fn watch_decoder_work_is_linear_in_the_input() {
    let header = b"[3G*1*0000*";
    let many_headers: Vec<u8> = header.repeat(400);
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("resync storm", header.to_vec(), b"x[".to_vec()),
        ("brackets in content", Vec::new(), b"[3G*1*0000*]x".to_vec()),
        ("back-to-back frames", Vec::new(), encode("3G", "1", b"LK")),
        (
            "bracket then partial frame start",
            header.to_vec(),
            b"][3".to_vec(),
        ),
        ("headers then a bracket", Vec::new(), {
            let mut v = many_headers.clone();
            v.push(b']');
            v
        }),
        ("garbage", Vec::new(), b"\x00\xffnoise".to_vec()),
    ];
    // A small bound makes a per-byte cost proportional to the bound visible, and
    // 1 KiB of input already goes past it.
    let max = 512;
    for (name, prefix, pattern) in &cases {
        for chunk in [1usize, 7, 1500, PUSH_SLICE] {
            let small = work_per_byte(prefix, pattern, 1024, chunk, max);
            let large = work_per_byte(prefix, pattern, 64 * 1024, chunk, max);
            // Linear: the work per byte does not grow with the input (a rescan of
            // the held bytes per read or per skipped `[` would make it grow with
            // the input or with the bound, here up to thousands per byte).
            assert!(
                large <= 2.0 * small + 8.0,
                "{name}, reads of {chunk}: {small:.1} work/byte at 1 KiB, {large:.1} at 64 KiB"
            );
            assert!(
                large <= 80.0,
                "{name}, reads of {chunk}: {large:.1} work/byte"
            );
        }
    }
    // The same at the real bound, past it (one slice per read).
    for (name, prefix, pattern) in &cases {
        let w = work_per_byte(
            prefix,
            pattern,
            2 * MAX_FRAME + 12_345,
            PUSH_SLICE,
            MAX_FRAME,
        );
        assert!(w <= 80.0, "{name} at MAX_FRAME: {w:.1} work/byte");
    }
}

// ---------------------------------------------------------------------------------
// 2. NMEA read by the rig: recorded receiver logs and sentences
// ---------------------------------------------------------------------------------

fn gpsd_logs() -> Vec<(String, Vec<u8>)> {
    let dir = manifest_dir().join("fixtures/nmea/gpsd");
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    entries.sort();
    for p in entries {
        let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        out.push((p.display().to_string(), bytes));
    }
    assert!(out.len() >= 10, "gpsd logs in {}", dir.display());
    out
}

/// Valid sentences (checksum right) from the real logs.
fn gpsd_sentences() -> Vec<String> {
    let mut out = Vec::new();
    for (_, bytes) in gpsd_logs() {
        for line in String::from_utf8_lossy(&bytes).lines() {
            let line = line.trim_end_matches('\r');
            if nmea::parse_unbounded(line).is_ok() {
                out.push(line.to_string());
            }
        }
    }
    assert!(out.len() > 100);
    out
}

/// What `Recording::parse` must make of `bytes`, from its documented rules: lines
/// split at LF, trailing CRs removed, empty and `#` lines skipped, cut at the limit.
fn expected_lines(bytes: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let mut lines = Vec::new();
    let mut cut = 0;
    for raw in bytes.split(|&b| b == b'\n') {
        let mut end = raw.len();
        while end > 0 && raw[end - 1] == b'\r' {
            end -= 1;
        }
        let l = &raw[..end];
        if l.is_empty() || l[0] == b'#' {
            continue;
        }
        if l.len() > replay::MAX_LINE {
            cut += 1;
            lines.push(l[..replay::MAX_LINE].to_vec());
        } else {
            lines.push(l.to_vec());
        }
    }
    (lines, cut)
}

fn check_recording(bytes: &[u8]) -> Result<(), TestCaseError> {
    let rec = Recording::parse("fuzz", bytes);
    let (want, cut) = expected_lines(bytes);
    let got: Vec<Vec<u8>> = rec.epochs.iter().flat_map(|e| e.lines.clone()).collect();
    prop_assert_eq!(&got, &want);
    prop_assert_eq!(rec.cut_lines, cut);
    prop_assert!(rec.epochs.iter().all(|e| !e.lines.is_empty()));
    prop_assert!(got.iter().all(|l| l.len() <= replay::MAX_LINE));
    for w in rec.epochs.windows(2) {
        let gap = w[1].at_ms.checked_sub(w[0].at_ms);
        prop_assert!(
            gap.is_some_and(|g| g > 0 && g <= MAX_GAP_MS),
            "epoch spacing {:?}",
            gap
        );
    }
    // Only lines with a right checksum set the pace.
    for e in rec.epochs.iter().skip(1) {
        let first = &e.lines[0];
        prop_assert!(replay::time_of_day_ms(first).is_some());
        let text = std::str::from_utf8(first).unwrap_or("");
        prop_assert!(nmea::parse_unbounded(text).is_ok());
    }
    Ok(())
}

/// A GGA sentence without a fix at time of day `hms`, checksum right.
fn gga(hms: &str) -> Vec<u8> {
    nmea::frame(&format!("GPGGA,{hms},,,,,0,00,99.99,,,,,,")).into_bytes()
}

fn nmea_input() -> impl Strategy<Value = Vec<u8>> {
    let logs: Vec<Vec<u8>> = gpsd_logs().into_iter().map(|(_, b)| b).collect();
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..4096),
        prop::collection::vec(
            prop_oneof![
                // Times around midnight, a leap second, and a sentence without its
                // checksum digits.
                Just(gga("235959.50")),
                Just(gga("235960.50")),
                Just(gga("000000")),
                Just(gga("000001.25")),
                Just(gga("120000")),
                Just(b"$GPRMC,000000.5,V,,,,,,,,,,N*".to_vec()),
                Just(b"\r\n".to_vec()),
                Just(b"\n".to_vec()),
                Just(b"#".to_vec()),
                Just(b"*".to_vec()),
                prop::collection::vec(any::<u8>(), 0..12),
            ],
            0..40
        )
        .prop_map(|v| v.concat()),
        (
            prop::sample::select(logs),
            any::<prop::sample::Index>(),
            0usize..6000,
            prop::collection::vec(mutation(), 0..12),
        )
            .prop_map(|(log, start, len, muts)| {
                // A window of a real log, mutated.
                let s = start.index(log.len().max(1));
                let e = (s + len).min(log.len());
                apply(log[s.min(e)..e].to_vec(), &muts)
            }),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes and mutated windows of real receiver logs never panic, every
    /// line is kept (cut at the limit and counted), and pacing stays plausible.
    #[test]
    fn nmea_replay_survives_hostile_logs(bytes in nmea_input()) {
        check_recording(&bytes)?;
    }

    /// Any one-byte change inside a real sentence is caught by its checksum: the
    /// sentence parser refuses it and the replay does not take time from it.
    #[test]
    fn nmea_checksum_errors_are_reported_not_trusted(
        line in prop::sample::select(gpsd_sentences()),
        at in any::<prop::sample::Index>(),
        to in any::<u8>(),
    ) {
        let mut bytes = line.clone().into_bytes();
        let star = bytes.iter().rposition(|&b| b == b'*').unwrap_or(0);
        prop_assume!(star > 1);
        // Between `$` and `*`.
        let i = 1 + at.index(star - 1);
        prop_assume!(bytes[i] != to && to != b'*' && to != b'\r' && to != b'\n');
        bytes[i] = to;
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let r = nmea::parse_unbounded(text);
            let is_checksum_error = matches!(
                r,
                Err(nmea::NmeaError::BadChecksum { .. }) | Err(nmea::NmeaError::NotAscii)
            );
            prop_assert!(is_checksum_error, "{:?} accepted: {:?}", text, r);
        }
        prop_assert_eq!(replay::time_of_day_ms(&bytes), None);
    }

    /// The checksum field is exactly two hexadecimal digits: any other two bytes
    /// there are refused even when they would read as the right number.
    #[test]
    fn nmea_checksum_field_must_be_two_hex_digits(
        line in prop::sample::select(gpsd_sentences()),
        a in prop_oneof![Just(b'+'), Just(b'-'), Just(b' '), any::<u8>()],
        b in prop_oneof![Just(b'0'), any::<u8>()],
    ) {
        let star = line.rfind('*').unwrap_or(0);
        let payload = &line[1..star];
        let sum = nmea::checksum(payload);
        // Also try the right value written with a sign or a leading blank.
        for field in [[a, b], [b'+', format!("{:X}", sum & 0xf).as_bytes()[0]]] {
            let mut bytes = line.as_bytes()[..=star].to_vec();
            bytes.extend_from_slice(&field);
            let Ok(text) = std::str::from_utf8(&bytes) else { continue };
            let hex_ok = field.iter().all(u8::is_ascii_hexdigit)
                && u8::from_str_radix(&text[star + 1..], 16) == Ok(sum);
            prop_assert_eq!(nmea::parse_unbounded(text).is_ok(), hex_ok, "{:?}", text);
            if !hex_ok {
                prop_assert_eq!(replay::time_of_day_ms(&bytes), None);
            }
        }
    }

    /// The 82-character limit of the sentence parser refuses longer input with a
    /// message (never a panic), whatever the bytes.
    #[test]
    fn nmea_parse_refuses_overlong_and_never_panics(s in ".{0,300}", pad in 0usize..200) {
        let _ = nmea::parse(&s);
        let _ = nmea::parse_unbounded(&s);
        let long = format!("$GPGGA,{}*00", "1".repeat(80 + pad));
        prop_assert!(matches!(nmea::parse(&long), Err(nmea::NmeaError::TooLong(_))));
        prop_assert!(!nmea::parse(&long).unwrap_err().to_string().is_empty());
    }
}

/// A leap second before midnight (23:59:60.5, a time the parser accepts) followed by
/// 00:00:00: the step back over midnight is not negative (it underflowed), the
/// recording paces it as an implausible gap.
#[test]
fn nmea_replay_leap_second_before_midnight_does_not_underflow() {
    let mut bytes = gga("235960.50");
    bytes.extend_from_slice(b"\r\n");
    bytes.extend(gga("000000"));
    bytes.extend_from_slice(b"\r\n");
    bytes.extend(gga("000001"));
    let rec = Recording::parse("leap", &bytes);
    let at: Vec<u64> = rec.epochs.iter().map(|e| e.at_ms).collect();
    assert_eq!(
        at,
        vec![0, replay::DEFAULT_GAP_MS, replay::DEFAULT_GAP_MS + 1000]
    );
    assert_eq!(rec.irregular_gaps, 1);
}

/// A checksum field written with a sign (`*+5`) reads as a number but is not two
/// hexadecimal digits: refused.
#[test]
fn nmea_signed_checksum_field_is_refused() {
    // A payload whose checksum is below 16, so `+H` can spell its value.
    let alnum = || (b'0'..=b'z').filter(u8::is_ascii_alphanumeric);
    let payload = alnum()
        .flat_map(|a| alnum().map(move |b| (a as char, b as char)))
        .map(|(a, b)| format!("GPTXT,01,01,02,{a}{b}"))
        .find(|p| nmea::checksum(p) < 16)
        .expect("a small checksum");
    let sum = nmea::checksum(&payload);
    let good = format!("${payload}*{sum:02X}");
    assert!(nmea::parse_unbounded(&good).is_ok());
    for field in [format!("+{sum:X}"), format!("+{sum:x}")] {
        let bad = format!("${payload}*{field}");
        assert!(
            matches!(
                nmea::parse_unbounded(&bad),
                Err(nmea::NmeaError::NoChecksum)
            ),
            "{bad} accepted"
        );
        assert_eq!(replay::time_of_day_ms(bad.as_bytes()), None, "{bad}");
    }
}

/// A recording of one line of megabytes without a line end: kept as one line cut at
/// the limit, and counted.
#[test]
fn nmea_replay_cuts_a_megabyte_line_without_line_end() {
    let mut bytes = b"$GPGGA,120000.00,,,,,0,00,99.99,,,,,,*".to_vec();
    bytes.extend(std::iter::repeat_n(b'7', 4 * 1024 * 1024));
    let rec = Recording::parse("long", &bytes);
    assert_eq!(rec.lines(), 1);
    assert_eq!(rec.cut_lines, 1);
    assert_eq!(rec.epochs[0].lines[0].len(), replay::MAX_LINE);
}

// ---------------------------------------------------------------------------------
// 3. AT commands to the virtual modem, callbox adapter events
// ---------------------------------------------------------------------------------

struct Ns;

impl NameService for Ns {
    fn resolve(&self, host: &str) -> Option<Ipv4Addr> {
        (host == "watch.kidcloud.example").then_some(Ipv4Addr::new(127, 0, 0, 1))
    }
    fn set_coverage(&self, _up: bool) {}
}

/// The modem's held state, measured through its `Debug` form (which prints every
/// buffer it holds): a bound on its memory whatever the watch sent.
fn modem_state_size(m: &ModemCore) -> usize {
    format!("{m:?}").len()
}

/// Largest `Debug` form of a modem's state: an escaped command line or SMS buffer
/// (at most 1 KiB, each byte at most 4 characters as a `Vec<u8>` element with its
/// separator, e.g. `255, `) and the fixed fields.
const MODEM_STATE_BOUND: usize = 1024 * 6 + 4096;

fn at_input() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"AT".to_vec()),
        Just(b"at".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(vec![0x1a]),
        Just(vec![0x1b]),
        Just(b"+CMGS=\"+491701234567\"".to_vec()),
        Just(b"+CMGS=\"".to_vec()),
        Just(b"D+491701234567;".to_vec()),
        Just(b"D".to_vec()),
        Just(b"+CREG=2".to_vec()),
        Just(b"+CEREG?".to_vec()),
        Just(b"+QIDNSGIP=1,\"watch.kidcloud.example\"".to_vec()),
        Just(b"+CGACT=1,1".to_vec()),
        Just(b"A".to_vec()),
        Just(b"H".to_vec()),
        Just(b"+CLCC".to_vec()),
        Just("é€\u{fffd}".as_bytes().to_vec()),
        "[ -~]{0,12}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..16),
    ];
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..2048),
        prop::collection::vec(token, 0..80).prop_map(|v| v.concat()),
    ]
}

fn feed(m: &mut ModemCore, bytes: &[u8], now: u64) -> Effects {
    let mut fx = Effects::default();
    m.feed(bytes, now, &Ns, &mut fx);
    fx
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes and AT-command soup, in any chunking and with timers run in
    /// between: no panic, every command event is bounded, the held state is
    /// bounded, and after ESC and CR the modem answers `AT` with `OK`.
    #[test]
    fn modem_survives_hostile_at_input(
        input in at_input(),
        raw_cuts in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let mut m = ModemCore::new();
        let mut now = 0u64;
        for part in pieces(&input, &cuts(input.len(), &raw_cuts)) {
            let fx = feed(&mut m, part, now);
            for ev in &fx.events {
                if let CellEvent::AtCommand { line } = ev {
                    // The line as kept plus the count of bytes not kept.
                    prop_assert!(line.len() <= 3 * MAX_COMMAND + 40, "{}", line.len());
                }
            }
            prop_assert!(modem_state_size(&m) <= MODEM_STATE_BOUND);
            now += 1_500;
            let mut fx = Effects::default();
            m.tick(now, &mut fx);
        }
        let fx = feed(&mut m, b"\x1b\rAT\r", now);
        let out = fx.out.concat();
        prop_assert!(out.ends_with(b"\r\nOK\r\n"), "{:?}", String::from_utf8_lossy(&out));
    }
}

/// A megabyte command line without CR, binary garbage and a megabyte SMS text
/// without Ctrl-Z: the state stays bounded, the overlong line is refused with
/// `ERROR`, the overlong text with `+CMS ERROR: 305`.
#[test]
fn modem_overlong_lines_and_half_sms_stay_bounded() {
    let mut m = ModemCore::new();
    let chunk: Vec<u8> = (0..64 * 1024).map(|i| b'A' + (i % 26) as u8).collect();
    let _ = feed(&mut m, b"AT+CSQ", 0);
    for _ in 0..16 {
        let fx = feed(&mut m, &chunk, 0);
        assert!(fx.out.is_empty() && fx.events.is_empty());
        assert!(modem_state_size(&m) <= MODEM_STATE_BOUND);
    }
    let fx = feed(&mut m, b"\r", 0);
    assert_eq!(fx.out.concat(), b"\r\nERROR\r\n");
    match &fx.events[..] {
        [CellEvent::AtCommand { line }] => {
            assert!(line.ends_with(&format!("(+{} bytes)", 6 + 16 * chunk.len() - MAX_COMMAND)));
        }
        other => panic!("{other:?}"),
    }
    // Binary garbage: no CR/LF/Ctrl-Z/ESC, so one line that is not a command.
    let garbage: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .filter(|b| !matches!(b, b'\r' | b'\n' | 0x1a | 0x1b))
        .collect();
    let _ = feed(&mut m, &garbage, 0);
    assert!(modem_state_size(&m) <= MODEM_STATE_BOUND);
    let _ = feed(&mut m, b"\x1b", 0);
    // Half an SMS: a megabyte of text, some of it CRs, then Ctrl-Z.
    let fx = feed(&mut m, b"AT+CMGS=\"+491701234567\"\r", 0);
    assert_eq!(fx.out.concat(), b"\r\n> ");
    for i in 0..16 {
        let mut c = chunk.clone();
        c[i * 100] = b'\r';
        let _ = feed(&mut m, &c, 0);
        assert!(modem_state_size(&m) <= MODEM_STATE_BOUND);
    }
    let fx = feed(&mut m, &[0x1a], 0);
    assert_eq!(fx.out.concat(), b"\r\n+CMS ERROR: 305\r\n");
    assert!(fx.events.is_empty());
    let fx = feed(&mut m, b"AT\r", 0);
    assert_eq!(fx.out.concat(), b"\r\nOK\r\n");
}

/// The callbox events splitter's lines, from its documented rules: split at LF,
/// each line cut at `max` with the excess counted, a trailing CR of an uncut line
/// removed, an unterminated last line handed over at the end.
fn expected_event_lines(input: &[u8], max: usize) -> Vec<(Vec<u8>, u64)> {
    let mut out = Vec::new();
    let mut parts: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    let last = parts.pop().unwrap_or_default();
    let mut one = |l: &[u8]| {
        let kept = &l[..l.len().min(max)];
        let dropped = (l.len() - kept.len()) as u64;
        let kept = if dropped == 0 {
            kept.strip_suffix(b"\r").unwrap_or(kept)
        } else {
            kept
        };
        out.push((kept.to_vec(), dropped));
    };
    for p in parts {
        one(p);
    }
    if !last.is_empty() {
        one(last);
    }
    out
}

proptest! {
    #![proptest_config(config())]

    /// Events lines: any bytes in any chunking give the lines of the documented
    /// rule, each at most the limit, with the excess counted.
    #[test]
    fn callbox_event_lines_are_bounded_and_chunking_free(
        input in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..3000),
            prop::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'{'), any::<u8>()], 0..3000),
        ],
        max in 1usize..300,
        raw_cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut s = callbox::LineSplitter::new(max);
        let mut got = Vec::new();
        for p in pieces(&input, &cuts(input.len(), &raw_cuts)) {
            s.feed(p, &mut |l: &[u8], d: u64| got.push((l.to_vec(), d)));
        }
        s.finish(&mut |l: &[u8], d: u64| got.push((l.to_vec(), d)));
        prop_assert!(got.iter().all(|(l, _)| l.len() <= max));
        prop_assert_eq!(got, expected_event_lines(&input, max));
    }

    /// `parse_event` never panics on arbitrary text or mutated valid events, and
    /// what it accepts is one of the documented events.
    #[test]
    fn callbox_parse_event_survives_hostile_lines(
        line in prop_oneof![
            ".{0,200}",
            (prop::sample::select(vec![
                r#"{"event":"sms_from_watch","to":"+49170","text":"hi"}"#,
                r#"{"event":"registration","state":"home"}"#,
                r#"{"event":"far_end","number":"+49","answer":"ring"}"#,
                r#"{"event":"dns_query","host":"a.example","answer":null}"#,
                r#"{"event":"data_attached"}"#,
            ]), prop::collection::vec(mutation(), 0..4))
                .prop_map(|(s, m)| String::from_utf8_lossy(&apply(s.as_bytes().to_vec(), &m)).into_owned()),
        ],
    ) {
        if let Ok(ev) = parse_event(&line) {
            let rig_side = matches!(
                ev,
                CellEvent::AtCommand { .. } | CellEvent::SmsToWatch { .. } | CellEvent::CallToWatch { .. }
            );
            prop_assert!(!rig_side, "{:?}", ev);
        }
    }
}

/// Deeply nested JSON (a stack overflow in a recursive parser) and a line of the
/// full length are refused with a message.
#[test]
fn callbox_deep_nesting_and_long_lines_are_refused() {
    for open in ["[", "{\"event\":", "{\"a\":["] {
        let line = open.repeat(MAX_EVENT_LINE / open.len());
        let err = parse_event(&line).unwrap_err();
        assert!(!err.is_empty());
    }
    // A megabyte without a line end is one cut line, never buffered whole.
    let mut s = callbox::LineSplitter::new(MAX_EVENT_LINE);
    let chunk = vec![b'x'; 16 * 1024];
    let mut got = Vec::new();
    for _ in 0..64 {
        s.feed(&chunk, &mut |l: &[u8], d: u64| got.push((l.len(), d)));
    }
    assert!(got.is_empty());
    s.feed(b"\n{}\n", &mut |l: &[u8], d: u64| got.push((l.len(), d)));
    assert_eq!(
        got,
        vec![
            (MAX_EVENT_LINE, (64 * chunk.len() - MAX_EVENT_LINE) as u64),
            (2, 0)
        ]
    );
}

// ---------------------------------------------------------------------------------
// 4. Console lines
// ---------------------------------------------------------------------------------

/// Lines of the console by its documented rule, written independently of the
/// splitter: a line ends at CR LF, CR or LF; a line of `L` bytes is records of
/// `MAX_LINE` bytes and a rest, all flagged cut when `L >= MAX_LINE` (the splitter
/// hands a record over as soon as it is full, before it can know whether the line
/// goes on), with no empty record after a full one; an unterminated last line is
/// handed over on flush when it has bytes.
fn expected_console_records(input: &[u8], max: usize) -> Vec<(Vec<u8>, bool)> {
    let mut lines: Vec<(&[u8], bool)> = Vec::new(); // (line, terminated)
    let mut start = 0;
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'\r' | b'\n' => {
                lines.push((&input[start..i], true));
                if input[i] == b'\r' && input.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    lines.push((&input[start..], false));
    let mut out = Vec::new();
    for (line, terminated) in lines {
        let cut = line.len() >= max;
        let mut pieces: Vec<&[u8]> = line.chunks(max).collect();
        if pieces.is_empty() && terminated {
            pieces.push(&[]);
        }
        out.extend(pieces.into_iter().map(|p| (p.to_vec(), cut)));
    }
    out
}

/// Input that goes over the limit and puts line ends everywhere, including
/// between CR and LF across reads.
fn console_input() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            Just(b"\r".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r\n".to_vec()),
            (1usize..3 * CONSOLE_MAX_LINE, any::<u8>()).prop_map(|(n, b)| vec![
                if b == b'\r' || b == b'\n' {
                    b'.'
                } else {
                    b
                };
                n
            ]),
            Just(vec![b'y'; CONSOLE_MAX_LINE]),
            Just(vec![b'z'; CONSOLE_MAX_LINE - 1]),
            prop::collection::vec(any::<u8>(), 0..64),
        ],
        0..12,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(config())]

    /// Every byte comes out exactly once: the records are the input without its
    /// line ends, in order, in any chunking; `pending()` stays below the limit.
    #[test]
    fn console_splitter_keeps_every_byte_once(
        input in console_input(),
        raw_cuts in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        let mut s = LineSplitter::new();
        let mut got: Vec<(Vec<u8>, bool)> = Vec::new();
        for p in pieces(&input, &cuts(input.len(), &raw_cuts)) {
            s.push(p, &mut |l: &[u8], cut: bool| got.push((l.to_vec(), cut)));
            prop_assert!(s.pending() < CONSOLE_MAX_LINE);
        }
        s.flush(&mut |l: &[u8], cut: bool| got.push((l.to_vec(), cut)));
        prop_assert_eq!(s.pending(), 0);
        prop_assert!(got.iter().all(|(l, _)| l.len() <= CONSOLE_MAX_LINE));
        let out_bytes: Vec<u8> = got.iter().flat_map(|(l, _)| l.iter().copied()).collect();
        let in_bytes: Vec<u8> = input.iter().copied().filter(|b| *b != b'\r' && *b != b'\n').collect();
        prop_assert_eq!(out_bytes.len(), in_bytes.len());
        prop_assert!(out_bytes == in_bytes, "bytes differ");
        let want = expected_console_records(&input, CONSOLE_MAX_LINE);
        prop_assert_eq!(got.len(), want.len());
        prop_assert!(got == want, "records differ from the documented rule");
    }
}

/// A 100 MB line without a newline, streamed from a generator in reads of varying
/// size (never allocated whole): cut into full records, all flagged cut, with at
/// most one record's worth pending, and every byte out once.
#[test]
fn console_100_mb_line_is_cut_never_buffered_whole() {
    const TOTAL: usize = 100 * 1024 * 1024;
    let mut s = LineSplitter::new();
    let mut records = 0usize;
    let mut out_bytes = 0usize;
    let mut all_cut = true;
    let mut all_full = true;
    let mut checksum = 0u64;
    let mut emit = |l: &[u8], cut: bool| {
        records += 1;
        out_bytes += l.len();
        all_cut &= cut;
        all_full &= l.len() == CONSOLE_MAX_LINE;
        checksum = l
            .iter()
            .fold(checksum, |c, &b| c.wrapping_mul(31).wrapping_add(b as u64));
    };
    let mut buf = vec![0u8; 70_001];
    let mut sent = 0usize;
    let mut want = 0u64;
    let mut n = 0usize;
    while sent < TOTAL {
        // Reads of 1 .. 70 001 bytes.
        let len = (1 + (n * 7919) % buf.len()).min(TOTAL - sent);
        for (k, b) in buf[..len].iter_mut().enumerate() {
            *b = b'a' + ((sent + k) % 23) as u8;
            want = want.wrapping_mul(31).wrapping_add(*b as u64);
        }
        s.push(&buf[..len], &mut emit);
        assert!(s.pending() < CONSOLE_MAX_LINE);
        sent += len;
        n += 1;
    }
    s.flush(&mut emit);
    let rest = TOTAL % CONSOLE_MAX_LINE;
    assert_eq!(records, TOTAL / CONSOLE_MAX_LINE + usize::from(rest > 0));
    assert_eq!(out_bytes, TOTAL);
    assert!(all_cut);
    assert!(all_full || rest > 0);
    assert_eq!(checksum, want, "the bytes out are the bytes in, in order");
}

/// The console driver on a pseudo-terminal flooded with 4 MiB of every byte value,
/// short lines, long lines and line ends: `console-<name>.raw` holds exactly the
/// bytes written, `console-<name>.log` one line per record of the documented rule,
/// and the records kept in memory are the last ones of that rule, cut flags
/// included. (The wait for the driver is bounded; nothing is timed.)
#[test]
fn console_pty_flood_every_byte_is_in_the_evidence() {
    use redrig::clock::Clock;
    use redrig::drivers::console::SerialConsole;
    use redrig::drivers::Console;
    use std::time::{Duration, Instant};

    const WALL: Duration = Duration::from_secs(60);
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut dev = support::PtyDevice::new(WALL);
    let console = SerialConsole::open("flood", &dev.path, 115_200, Clock::start(50.0), dir.path())
        .expect("console on the pty");
    dev.release_slave();
    let mark = console.log().mark();

    // A generator (xorshift) of segments: binary garbage, a long line, line ends.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut sent = Vec::with_capacity(4 * 1024 * 1024 + 64 * 1024);
    while sent.len() < 4 * 1024 * 1024 {
        let r = next();
        match r % 4 {
            0 => sent.extend((0..(r >> 8) % 9000).map(|_| next() as u8)),
            1 => sent.extend(std::iter::repeat_n(b'q', ((r >> 8) % 20_000) as usize)),
            2 => {
                sent.extend_from_slice([&b"\r\n"[..], b"\r", b"\n", b"\n\r"][(r >> 8) as usize % 4])
            }
            _ => sent.extend_from_slice(b"a short line\r\n"),
        }
    }
    sent.extend_from_slice(b"\r\nflood end\r\n");
    for piece in sent.chunks(4093) {
        dev.write(piece);
    }

    let raw_path = dir.path().join("console-flood.raw");
    let log_path = dir.path().join("console-flood.log");
    let expected = expected_console_records(&sent, CONSOLE_MAX_LINE);
    let deadline = Instant::now() + WALL;
    let log_lines = || {
        std::fs::read(&log_path)
            .map(|b| b.iter().filter(|&&c| c == b'\n').count())
            .unwrap_or(0)
    };
    while std::fs::metadata(&raw_path).map_or(0, |m| m.len() as usize) < sent.len()
        || log_lines() < expected.len()
    {
        assert!(
            Instant::now() < deadline,
            "evidence incomplete: raw {:?} of {} bytes, log {} of {} lines",
            std::fs::metadata(&raw_path).map(|m| m.len()),
            sent.len(),
            log_lines(),
            expected.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let raw = std::fs::read(&raw_path).expect("raw evidence");
    assert_eq!(raw.len(), sent.len());
    assert!(raw == sent, "raw evidence differs from the bytes written");
    assert_eq!(log_lines(), expected.len());

    let kept = console.log().since(mark);
    assert!(!kept.is_empty() && kept.len() <= expected.len());
    let tail = &expected[expected.len() - kept.len()..];
    for (r, (bytes, cut)) in kept.iter().zip(tail) {
        assert_eq!(r.value.text, String::from_utf8_lossy(bytes));
        assert_eq!(r.value.cut, *cut);
    }
    assert_eq!(
        kept.last().map(|r| r.value.text.as_str()),
        Some("flood end")
    );
}

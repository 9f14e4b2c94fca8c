//! Personal data in clear text: a streaming scanner for what the watch must not send
//! unencrypted.
//!
//! [`PiiScanner`] is fed a byte stream in chunks of any size and reports
//! [`PiiFinding`]s. Besides what it builds from the needles, it keeps a fixed amount
//! of state (a 512-byte window of recent bytes, the last two numbers seen, and one
//! entry per distinct finding), does a bounded amount of work per byte (a
//! multi-pattern automaton step, a tokenizer step, and for each pair of adjacent
//! numbers a comparison with every needle position), and finds hits that span chunk
//! boundaries. Digit runs longer than 24 digits are skipped, not stored.
//!
//! What it looks for:
//!
//! - **Positions** near a needle position: a pair of numbers within
//!   [`POSITION_RADIUS_M`] (haversine distance) of one of [`PiiNeedles::positions`].
//!   Forms recognised: decimal degrees `52.520008,13.404954` (also `;` or blanks
//!   between, either order, so GeoJSON's `[lon,lat]` is found);
//!   `52.520008,N,13.404954,E` as in the watch protocol's `UD`/`AL` frames (empty
//!   hemisphere fields allowed; `S`/`W` or a minus sign make a coordinate negative);
//!   keyed `"lat":52.52,"lon":13.40`, `lat=52.52&lng=13.40`, `<lat>…</lat><lon>`
//!   (a key ending in `lat`/`latitude` directly before one number and one ending in
//!   `lon`/`lng`/`long`/`longitude` directly before the next, in either order); and
//!   NMEA `ddmm.mmmm,N,dddmm.mmmm,E`. Unkeyed decimal forms need at least 3
//!   decimals on both numbers, keyed ones 2, NMEA minutes 1; the text between the
//!   two numbers must be at most 32 bytes. A hit is attributed to the nearest needle
//!   position, and its distance is given in the finding's detail. Not recognised:
//!   degrees-minutes-seconds text, coordinates with other fields between them,
//!   integer micro-degrees, binary encodings.
//! - **Phone numbers** of [`PiiNeedles::phone_numbers`], as a digit run with no digit
//!   immediately before or after it. A number given in E.164 (`+4915112345678` or
//!   `004915112345678`) is matched as `4915112345678` (after `+` or not),
//!   `004915112345678` and the national form: the country code dropped and a `0`
//!   added (`015112345678`), except `+1` (the 10 national digits), `+7` (`8`
//!   prefix) and `+39` (no prefix added). A number given without `+`/`00` is matched
//!   as its digits only. Numbers written with blanks or dashes inside are not found;
//!   needles with fewer than 6 digits are ignored.
//! - **IMEIs** of [`PiiNeedles::imeis`]: their digits as a digit run not inside a
//!   longer run. IMEIs not given as needles are not looked for.
//! - **Audio**: AMR (`#!AMR\n`), AMR-WB (`#!AMR-WB\n`), WAV (`RIFF` + 4 bytes +
//!   `WAVE`), Ogg (`OggS` + version 0), MP3 only by its ID3v2 tag (`ID3` + version
//!   2–4; bare MPEG frame syncs are not looked for), and the watch protocol's voice
//!   messages: a `TK` or `JXTK` frame (`*TK,` / `*JXTK,`) with more than 16 bytes of
//!   content (the short `TK,1` acknowledgement is not counted).
//! - **Other** needles: any byte string up to 256 bytes, found wherever it occurs.
//!
//! One finding is reported per (kind, value) and stream: per needle for positions,
//! phone numbers, IMEIs and other needles, per format for audio. Later hits are
//! counted ([`PiiScanner::counts`]). A finding is returned once 40 bytes after the hit
//! have been seen (for its excerpt), or by [`PiiScanner::finish`].

use aho_corasick::automaton::{Automaton, StateID};
use aho_corasick::dfa::DFA;
use aho_corasick::nfa::contiguous::NFA;
use aho_corasick::{Anchored, MatchKind};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// A position counts when it is at most this far from a needle position (metres).
pub const POSITION_RADIUS_M: f64 = 500.0;
/// Longest "other" needle looked for; longer ones are ignored.
pub const MAX_OTHER_NEEDLE: usize = 256;
/// Longest excerpt, in characters.
const EXCERPT_MAX: usize = 80;
/// Bytes after a hit waited for before it is reported (for the excerpt).
const CONTEXT_AFTER: u64 = 40;
/// Recent bytes kept for excerpts and look-behind.
const RING: usize = 512;
/// Digits kept of a digit run; longer runs are only counted.
const MAX_DIGITS: usize = 24;
/// Bytes kept from the end of the text between two numbers (keys).
const SEP_TAIL: usize = 32;
/// Bytes kept from the start of the text after a number (hemisphere letters).
const SEP_HEAD: usize = 8;
/// Content bytes after `TK,` that make a frame a voice message.
const VOICE_MIN: u32 = 16;
/// Total pattern bytes up to which the byte patterns are matched with a DFA.
const DFA_MAX_PATTERN_BYTES: usize = 4096;
/// Shortest phone or IMEI digit string looked for.
const MIN_DIGITS: usize = 6;
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// What to look for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PiiNeedles {
    /// Positions (latitude, longitude in degrees) fed to the watch or otherwise known.
    pub positions: Vec<(f64, f64)>,
    /// Phone numbers, preferably E.164 (`+4915112345678`).
    pub phone_numbers: Vec<String>,
    pub imeis: Vec<String>,
    /// Any other byte strings, each with a label used as the finding's kind.
    pub other: Vec<(String, Vec<u8>)>,
}

/// What kind of personal data a finding is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    Position,
    PhoneNumber,
    Imei,
    Audio,
    Other(String),
}

/// Personal data found in a stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PiiFinding {
    pub kind: PiiKind,
    /// Offset of the first byte of the hit in the stream.
    pub offset: u64,
    /// The bytes around the hit (at most 80 characters; bytes outside printable
    /// ASCII shown as `.`).
    pub excerpt: String,
    /// What was matched, e.g. `52.520008,13.404954 is 3 m from fed position
    /// 52.52,13.405`.
    pub detail: String,
}

/// How often one (kind, value) was hit in the stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PiiCount {
    pub kind: PiiKind,
    /// The needle or format: `52.52,13.405`, `+4915112345678`, `AMR`, a label.
    pub value: String,
    pub count: u64,
    pub first_offset: u64,
}

/// A digit run: the first [`MAX_DIGITS`] digits and the full length.
#[derive(Clone, Copy)]
struct Digits {
    buf: [u8; MAX_DIGITS],
    len: usize,
    start: u64,
}

impl Digits {
    fn new(start: u64) -> Self {
        Digits {
            buf: [0; MAX_DIGITS],
            len: 0,
            start,
        }
    }
    fn push(&mut self, b: u8) {
        if self.len < MAX_DIGITS {
            self.buf[self.len] = b;
        }
        self.len = self.len.saturating_add(1);
    }
    /// The digits, unless the run was longer than [`MAX_DIGITS`].
    fn get(&self) -> Option<&[u8]> {
        (self.len <= MAX_DIGITS).then(|| &self.buf[..self.len])
    }
}

/// The text between two numbers: its first [`SEP_HEAD`] and last [`SEP_TAIL`] bytes.
#[derive(Clone, Copy)]
struct Sep {
    head: [u8; SEP_HEAD],
    tail: [u8; SEP_TAIL],
    len: usize,
}

impl Sep {
    fn new() -> Self {
        Sep {
            head: [0; SEP_HEAD],
            tail: [0; SEP_TAIL],
            len: 0,
        }
    }
    fn push(&mut self, b: u8) {
        if self.len < SEP_HEAD {
            self.head[self.len] = b;
        }
        self.tail[self.len % SEP_TAIL] = b;
        self.len = self.len.saturating_add(1);
    }
    fn last(&self) -> Option<u8> {
        self.len.checked_sub(1).map(|i| self.tail[i % SEP_TAIL])
    }
    fn pop(&mut self) {
        self.len = self.len.saturating_sub(1);
    }
    fn head(&self) -> &[u8] {
        &self.head[..self.len.min(SEP_HEAD)]
    }
    /// The last bytes, in order, and whether that is the whole separator.
    fn tail(&self) -> (Vec<u8>, bool) {
        let n = self.len.min(SEP_TAIL);
        let v = (self.len - n..self.len)
            .map(|i| self.tail[i % SEP_TAIL])
            .collect();
        (v, self.len <= SEP_TAIL)
    }
}

/// A number token: `[+-]digits[.digits]`.
#[derive(Clone, Copy)]
struct Num {
    /// Offset of the sign, or of the first digit.
    start: u64,
    /// Offset after the last digit.
    end: u64,
    sign: Option<u8>,
    int: Digits,
    frac: Option<Digits>,
    /// The text before this number (after the previous number).
    before: Sep,
}

impl Num {
    /// Absolute value and number of decimals, for a number with at most 5 integer
    /// digits and a fraction.
    fn value(&self) -> Option<(f64, usize)> {
        let int = self.int.get().filter(|d| d.len() <= 5)?;
        let frac = self.frac.as_ref()?.get()?;
        let i = int.iter().fold(0u32, |a, &c| a * 10 + (c - b'0') as u32);
        let mut f = 0.0;
        let mut scale = 0.1;
        for &c in frac.iter().take(15) {
            f += (c - b'0') as f64 * scale;
            scale /= 10.0;
        }
        Some((i as f64 + f, frac.len()))
    }
    fn negative(&self) -> bool {
        self.sign == Some(b'-')
    }
}

#[derive(Clone, Copy, PartialEq)]
enum TokState {
    Sep,
    Int,
    Dot,
    Frac,
}

#[derive(Clone, Copy)]
enum DigitTarget {
    Phone(usize),
    Imei(usize),
}

#[derive(Clone, Copy)]
enum Pattern {
    Audio(&'static str, &'static str),
    Wave,
    Voice(&'static str),
    Other(usize),
}

struct Pending {
    kind: PiiKind,
    start: u64,
    end: u64,
    detail: String,
}

struct VoicePending {
    start: u64,
    name: &'static str,
    count: u32,
}

/// Streaming scanner; see the module documentation for what it finds.
pub struct PiiScanner {
    positions: Vec<(f64, f64)>,
    phones: Vec<String>,
    imeis: Vec<String>,
    other_labels: Vec<String>,
    digit_map: HashMap<Vec<u8>, Vec<(DigitTarget, &'static str)>>,
    patterns: Vec<Pattern>,
    ac: Option<Box<dyn Automaton + Send + Sync>>,
    // Stream state.
    ended: bool,
    pos: u64,
    ring: Box<[u8; RING]>,
    ac_start: Option<StateID>,
    ac_state: Option<StateID>,
    st: TokState,
    sep: Sep,
    cur: Option<Num>,
    prev: Option<Num>,
    pair: Option<(Num, Num)>,
    voice: Option<VoicePending>,
    pending: Vec<Pending>,
    next_ready: u64,
    seen: HashMap<(PiiKind, String), usize>,
    counts: Vec<PiiCount>,
    out: Vec<PiiFinding>,
}

/// Length of the E.164 country code at the start of `intl` (ITU zones: `1` and
/// `7` are one digit, the two-digit codes are listed, everything else is three).
fn country_code_len(intl: &[u8]) -> usize {
    const TWO: &[u8] = &[
        20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49, 51, 52, 53, 54, 55,
        56, 57, 58, 60, 61, 62, 63, 64, 65, 66, 81, 82, 84, 86, 90, 91, 92, 93, 94, 95, 98,
    ];
    match intl {
        [b'1' | b'7', ..] => 1,
        [a, b, ..] if TWO.contains(&((a - b'0') * 10 + (b - b'0'))) => 2,
        _ => 3,
    }
}

/// The digit strings a phone number may be written as, with a name for each form.
fn phone_forms(number: &str) -> Vec<(Vec<u8>, &'static str)> {
    let t = number.trim();
    let digits: Vec<u8> = t.bytes().filter(u8::is_ascii_digit).collect();
    let intl: Option<&[u8]> = if t.starts_with('+') {
        Some(&digits)
    } else {
        digits.strip_prefix(b"00")
    };
    let mut forms = Vec::new();
    match intl {
        Some(intl) if intl.len() > 3 => {
            let cc = country_code_len(intl);
            let nsn = &intl[cc..];
            forms.push((intl.to_vec(), "international"));
            forms.push(([b"00", intl].concat(), "international with 00"));
            let national = match &intl[..cc] {
                b"1" | b"39" => nsn.to_vec(),
                b"7" => [b"8", nsn].concat(),
                _ => [b"0", nsn].concat(),
            };
            if national != intl {
                forms.push((national, "national"));
            }
        }
        _ => forms.push((digits, "as given")),
    }
    forms.retain(|(d, _)| d.len() >= MIN_DIGITS);
    forms
}

fn haversine_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1) = (a.0.to_radians(), a.1.to_radians());
    let (la2, lo2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// The key name directly before a number in `sep`'s tail: the trailing run of
/// letters and `_` after dropping blanks, quotes, `:`, `=` and `>`; lower case.
fn trailing_key(sep: &Sep) -> String {
    let (t, _) = sep.tail();
    let mut end = t.len();
    while end > 0 && b" \t\"':=>".contains(&t[end - 1]) {
        end -= 1;
    }
    let mut start = end;
    while start > 0 && (t[start - 1].is_ascii_alphabetic() || t[start - 1] == b'_') {
        start -= 1;
    }
    String::from_utf8_lossy(&t[start..end]).to_ascii_lowercase()
}

fn is_lat_key(k: &str) -> bool {
    k.ends_with("lat") || k.ends_with("latitude")
}

fn is_lon_key(k: &str) -> bool {
    ["lon", "lng", "long", "longitude"]
        .iter()
        .any(|s| k.ends_with(s))
}

/// Lower-cased bytes without blanks.
fn squeeze(b: &[u8]) -> Vec<u8> {
    b.iter()
        .filter(|c| !c.is_ascii_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// A coordinate pair read from two numbers, before the needle check.
#[derive(Clone, Copy)]
struct Candidate {
    lat: f64,
    lon: f64,
    form: &'static str,
}

impl PiiScanner {
    pub fn new(needles: PiiNeedles) -> Self {
        let mut digit_map: HashMap<Vec<u8>, Vec<(DigitTarget, &'static str)>> = HashMap::new();
        for (i, p) in needles.phone_numbers.iter().enumerate() {
            for (d, form) in phone_forms(p) {
                digit_map
                    .entry(d)
                    .or_default()
                    .push((DigitTarget::Phone(i), form));
            }
        }
        for (i, m) in needles.imeis.iter().enumerate() {
            let d: Vec<u8> = m.bytes().filter(u8::is_ascii_digit).collect();
            if d.len() >= MIN_DIGITS {
                digit_map
                    .entry(d)
                    .or_default()
                    .push((DigitTarget::Imei(i), "IMEI"));
            }
        }
        let mut pats: Vec<Vec<u8>> = Vec::new();
        let mut patterns = Vec::new();
        let fixed: [(&[u8], Pattern); 9] = [
            (
                b"#!AMR\n",
                Pattern::Audio("AMR", "AMR audio (#!AMR header)"),
            ),
            (
                b"#!AMR-WB\n",
                Pattern::Audio("AMR-WB", "AMR-WB audio (#!AMR-WB header)"),
            ),
            (
                b"OggS\x00",
                Pattern::Audio("Ogg", "Ogg container (OggS page header)"),
            ),
            (b"ID3\x02", Pattern::Audio("MP3", "MP3 audio (ID3v2 tag)")),
            (b"ID3\x03", Pattern::Audio("MP3", "MP3 audio (ID3v2 tag)")),
            (b"ID3\x04", Pattern::Audio("MP3", "MP3 audio (ID3v2 tag)")),
            (b"WAVE", Pattern::Wave),
            (b"*TK,", Pattern::Voice("watch voice message (TK)")),
            (b"*JXTK,", Pattern::Voice("watch voice message (JXTK)")),
        ];
        for (p, kind) in fixed {
            pats.push(p.to_vec());
            patterns.push(kind);
        }
        let mut other_labels = Vec::new();
        for (label, bytes) in &needles.other {
            if !bytes.is_empty() && bytes.len() <= MAX_OTHER_NEEDLE {
                pats.push(bytes.clone());
                patterns.push(Pattern::Other(other_labels.len()));
                other_labels.push(label.clone());
            }
        }
        // A DFA is fastest, but takes a transition table per state: used while the
        // patterns are short in total; otherwise a contiguous NFA, whose memory is
        // linear in the needles' total length.
        let total: usize = pats.iter().map(Vec::len).sum();
        let ac: Option<Box<dyn Automaton + Send + Sync>> = if total <= DFA_MAX_PATTERN_BYTES {
            DFA::builder()
                .match_kind(MatchKind::Standard)
                .build(&pats)
                .ok()
                .map(|a| Box::new(a) as Box<dyn Automaton + Send + Sync>)
        } else {
            NFA::builder()
                .match_kind(MatchKind::Standard)
                .build(&pats)
                .ok()
                .map(|a| Box::new(a) as Box<dyn Automaton + Send + Sync>)
        };
        let ac_start = ac.as_ref().and_then(|d| d.start_state(Anchored::No).ok());
        PiiScanner {
            positions: needles.positions,
            phones: needles.phone_numbers,
            imeis: needles.imeis,
            other_labels,
            digit_map,
            patterns,
            ac,
            ended: false,
            pos: 0,
            ring: Box::new([0; RING]),
            ac_start,
            ac_state: ac_start,
            st: TokState::Sep,
            sep: Sep::new(),
            cur: None,
            prev: None,
            pair: None,
            voice: None,
            pending: Vec::new(),
            next_ready: u64::MAX,
            seen: HashMap::new(),
            counts: Vec::new(),
            out: Vec::new(),
        }
    }

    fn reset_stream(&mut self) {
        self.ended = false;
        self.pos = 0;
        self.ac_state = self.ac_start;
        self.st = TokState::Sep;
        self.sep = Sep::new();
        self.cur = None;
        self.prev = None;
        self.pair = None;
        self.voice = None;
        self.pending.clear();
        self.next_ready = u64::MAX;
        self.seen.clear();
        self.counts.clear();
    }

    /// Scan the next bytes of the stream; returns the findings that became ready.
    /// After [`PiiScanner::finish`], the next call starts a new stream (offsets
    /// from 0, counts cleared).
    pub fn feed(&mut self, data: &[u8]) -> Vec<PiiFinding> {
        if self.ended {
            self.reset_stream();
        }
        for &b in data {
            self.step(b);
        }
        std::mem::take(&mut self.out)
    }

    /// End of the stream: report what is still waiting for context.
    pub fn finish(&mut self) -> Vec<PiiFinding> {
        if !self.ended {
            match self.st {
                TokState::Int | TokState::Frac => self.end_number(self.pos),
                TokState::Dot => self.end_number(self.pos - 1),
                TokState::Sep => {}
            }
            self.st = TokState::Sep;
            if let Some((a, b)) = self.pair.take() {
                let after = self.sep;
                self.eval_pair(&a, &b, &after);
            }
            self.voice = None;
            self.pending.sort_by_key(|p| p.start);
            for p in std::mem::take(&mut self.pending) {
                self.emit(p);
            }
            self.next_ready = u64::MAX;
            self.ended = true;
        }
        std::mem::take(&mut self.out)
    }

    /// Bytes of the current stream scanned so far.
    pub fn bytes_scanned(&self) -> u64 {
        self.pos
    }

    /// Every (kind, value) hit in the current stream, with how often.
    pub fn counts(&self) -> Vec<PiiCount> {
        self.counts.clone()
    }

    fn step(&mut self, b: u8) {
        let at = self.pos;
        self.ring[(at % RING as u64) as usize] = b;
        self.pos += 1;
        // Voice message content after a TK/JXTK marker.
        if let Some(v) = &mut self.voice {
            if b == b']' {
                self.voice = None;
            } else {
                v.count += 1;
                if v.count > VOICE_MIN {
                    let (start, name) = (v.start, v.name);
                    self.voice = None;
                    self.hit(
                        PiiKind::Audio,
                        name.to_string(),
                        start,
                        self.pos,
                        format!("{name} in clear text"),
                    );
                }
            }
        }
        if let (Some(ac), Some(sid)) = (&self.ac, self.ac_state) {
            let sid = ac.next_state(Anchored::No, sid, b);
            self.ac_state = Some(sid);
            if ac.is_match(sid) {
                let hits: Vec<(usize, u64)> = (0..ac.match_len(sid))
                    .map(|i| {
                        let pid = ac.match_pattern(sid, i);
                        (pid.as_usize(), ac.pattern_len(pid) as u64)
                    })
                    .collect();
                for (pid, len) in hits {
                    if let Some(&p) = self.patterns.get(pid) {
                        self.pattern_hit(p, self.pos - len, self.pos);
                    }
                }
            }
        }
        self.tokenize(b, at);
        if self.pos >= self.next_ready {
            self.emit_ready();
        }
    }

    fn ring_byte(&self, at: u64) -> Option<u8> {
        (at < self.pos && self.pos - at <= RING as u64)
            .then(|| self.ring[(at % RING as u64) as usize])
    }

    fn pattern_hit(&mut self, p: Pattern, start: u64, end: u64) {
        match p {
            Pattern::Audio(name, detail) => {
                self.hit(PiiKind::Audio, name.into(), start, end, detail.into())
            }
            Pattern::Wave => {
                let riff = start.checked_sub(8).and_then(|s| {
                    (0..4)
                        .map(|i| self.ring_byte(s + i))
                        .collect::<Option<Vec<u8>>>()
                });
                if riff.as_deref() == Some(b"RIFF") {
                    self.hit(
                        PiiKind::Audio,
                        "WAV".into(),
                        start - 8,
                        end,
                        "WAV audio (RIFF/WAVE header)".into(),
                    );
                }
            }
            Pattern::Voice(name) => {
                self.voice = Some(VoicePending {
                    start: start + 1,
                    name,
                    count: 0,
                })
            }
            Pattern::Other(i) => {
                let label = self.other_labels.get(i).cloned().unwrap_or_default();
                let detail = format!("needle {label:?} ({} bytes)", end - start);
                self.hit(PiiKind::Other(label.clone()), label, start, end, detail);
            }
        }
    }

    fn tokenize(&mut self, b: u8, at: u64) {
        let digit = b.is_ascii_digit();
        match self.st {
            TokState::Sep => {
                if digit {
                    self.start_number(b, at);
                } else {
                    self.sep_byte(b);
                }
            }
            TokState::Int => {
                if digit {
                    if let Some(c) = &mut self.cur {
                        c.int.push(b);
                    }
                } else if b == b'.' {
                    self.st = TokState::Dot;
                } else {
                    self.end_number(at);
                    self.sep_byte(b);
                }
            }
            TokState::Dot => {
                if digit {
                    if let Some(c) = &mut self.cur {
                        let mut f = Digits::new(at);
                        f.push(b);
                        c.frac = Some(f);
                    }
                    self.st = TokState::Frac;
                } else {
                    self.end_number(at - 1);
                    self.sep_byte(b'.');
                    self.sep_byte(b);
                }
            }
            TokState::Frac => {
                if digit {
                    if let Some(f) = self.cur.as_mut().and_then(|c| c.frac.as_mut()) {
                        f.push(b);
                    }
                } else {
                    self.end_number(at);
                    self.sep_byte(b);
                }
            }
        }
    }

    fn sep_byte(&mut self, b: u8) {
        self.sep.push(b);
        if self.sep.len >= SEP_HEAD {
            if let Some((a, n)) = self.pair.take() {
                let after = self.sep;
                self.eval_pair(&a, &n, &after);
            }
        }
    }

    fn start_number(&mut self, b: u8, at: u64) {
        if let Some((a, n)) = self.pair.take() {
            let after = self.sep;
            self.eval_pair(&a, &n, &after);
        }
        // A sign directly before the digits, itself not after a letter or digit.
        let sign = match self.sep.last() {
            Some(s @ (b'+' | b'-')) => {
                let before = at.checked_sub(2).and_then(|i| self.ring_byte(i));
                (!before.is_some_and(|c| c.is_ascii_alphanumeric())).then_some(s)
            }
            _ => None,
        };
        if sign.is_some() {
            self.sep.pop();
        }
        let mut int = Digits::new(at);
        int.push(b);
        self.cur = Some(Num {
            start: if sign.is_some() { at - 1 } else { at },
            end: at,
            sign,
            int,
            frac: None,
            before: self.sep,
        });
        self.sep = Sep::new();
        self.st = TokState::Int;
    }

    fn end_number(&mut self, end: u64) {
        self.st = TokState::Sep;
        let Some(mut n) = self.cur.take() else {
            return;
        };
        n.end = end;
        let start = if n.sign == Some(b'+') {
            n.start
        } else {
            n.int.start
        };
        self.digit_run(&n.int, start);
        if let Some(f) = n.frac {
            self.digit_run(&f, f.start);
        }
        if let Some(p) = self.prev.replace(n) {
            self.pair = Some((p, n));
        }
    }

    fn digit_run(&mut self, d: &Digits, start: u64) {
        let Some(ds) = d.get().filter(|x| x.len() >= MIN_DIGITS) else {
            return;
        };
        let Some(targets) = self.digit_map.get(ds) else {
            return;
        };
        let end = d.start + d.len as u64;
        let shown = String::from_utf8_lossy(ds).into_owned();
        for (t, form) in targets.clone() {
            match t {
                DigitTarget::Phone(i) => {
                    let n = self.phones.get(i).cloned().unwrap_or_default();
                    let detail = format!("phone number {n} written as {shown} ({form})");
                    self.hit(PiiKind::PhoneNumber, n, start, end, detail);
                }
                DigitTarget::Imei(i) => {
                    let n = self.imeis.get(i).cloned().unwrap_or_default();
                    self.hit(PiiKind::Imei, n, start, end, format!("IMEI {shown}"));
                }
            }
        }
    }

    /// Coordinate pairs two adjacent numbers may form.
    fn candidates(a: &Num, b: &Num, after: &Sep) -> Vec<Candidate> {
        let mut out = Vec::new();
        let (Some((av, adec)), Some((bv, bdec))) = (a.value(), b.value()) else {
            return out;
        };
        let (mid_tail, mid_whole) = b.before.tail();
        let mid = squeeze(&mid_tail);
        let after_s = squeeze(after.head());
        let signed = |v: f64, neg: bool| if neg { -v } else { v };
        // Hemisphere letters and plain separators (only when `mid` is all there is).
        let lat_hemi: Option<Option<u8>> = if !mid_whole {
            None
        } else {
            match mid.as_slice() {
                b",n," => Some(Some(b'n')),
                b",s," => Some(Some(b's')),
                b",," => Some(None),
                _ => None,
            }
        };
        let lon_hemi = match after_s.as_slice() {
            [b',', h @ (b'e' | b'w'), rest @ ..]
                if !rest.first().is_some_and(u8::is_ascii_alphabetic) =>
            {
                Some(*h)
            }
            _ => None,
        };
        if let Some(lh) = lat_hemi {
            let lat_neg = a.negative() || lh == Some(b's');
            let lon_neg = b.negative() || lon_hemi == Some(b'w');
            let (ai, bi) = (a.int.len, b.int.len);
            if lh.is_some() && lon_hemi.is_some() && ai == 4 && bi == 5 && adec >= 1 && bdec >= 1 {
                let lat_min = av % 100.0;
                let lon_min = bv % 100.0;
                if lat_min < 60.0 && lon_min < 60.0 {
                    let lat = (av / 100.0).floor() + lat_min / 60.0;
                    let lon = (bv / 100.0).floor() + lon_min / 60.0;
                    out.push(Candidate {
                        lat: signed(lat, lat_neg),
                        lon: signed(lon, lon_neg),
                        form: " (NMEA)",
                    });
                }
            } else if adec >= 3 && bdec >= 3 {
                out.push(Candidate {
                    lat: signed(av, lat_neg),
                    lon: signed(bv, lon_neg),
                    form: "",
                });
            }
        } else if mid_whole && (mid == b"," || mid == b";" || (mid.is_empty() && b.before.len > 0))
        {
            if adec >= 3 && bdec >= 3 {
                let (x, y) = (signed(av, a.negative()), signed(bv, b.negative()));
                out.push(Candidate {
                    lat: x,
                    lon: y,
                    form: "",
                });
                out.push(Candidate {
                    lat: y,
                    lon: x,
                    form: " (longitude first)",
                });
            }
        } else if mid_whole && adec >= 2 && bdec >= 2 {
            let (ka, kb) = (trailing_key(&a.before), trailing_key(&b.before));
            let (x, y) = (signed(av, a.negative()), signed(bv, b.negative()));
            if is_lat_key(&ka) && is_lon_key(&kb) {
                out.push(Candidate {
                    lat: x,
                    lon: y,
                    form: " (keyed)",
                });
            } else if is_lon_key(&ka) && is_lat_key(&kb) {
                out.push(Candidate {
                    lat: y,
                    lon: x,
                    form: " (keyed)",
                });
            }
        }
        out.retain(|c| c.lat.abs() <= 90.0 && c.lon.abs() <= 180.0);
        out
    }

    fn eval_pair(&mut self, a: &Num, b: &Num, after: &Sep) {
        if self.positions.is_empty() {
            return;
        }
        // No point is closer than its latitude difference along a meridian.
        let max_dlat = (POSITION_RADIUS_M / EARTH_RADIUS_M).to_degrees();
        let mut best: Option<(f64, usize, Candidate)> = None;
        for c in Self::candidates(a, b, after) {
            for (i, &n) in self.positions.iter().enumerate() {
                if (c.lat - n.0).abs() > max_dlat {
                    continue;
                }
                let d = haversine_m((c.lat, c.lon), n);
                if d <= POSITION_RADIUS_M && best.as_ref().is_none_or(|(bd, _, _)| d < *bd) {
                    best = Some((d, i, c));
                }
            }
        }
        let Some((d, i, c)) = best else {
            return;
        };
        let (nlat, nlon) = self.positions[i];
        let value = format!("{nlat},{nlon}");
        let detail = format!(
            "{:.6},{:.6} is {:.0} m from fed position {value}{}",
            c.lat, c.lon, d, c.form
        );
        self.hit(PiiKind::Position, value, a.start, b.end, detail);
    }

    fn hit(&mut self, kind: PiiKind, value: String, start: u64, end: u64, detail: String) {
        let key = (kind.clone(), value.clone());
        if let Some(&i) = self.seen.get(&key) {
            if let Some(c) = self.counts.get_mut(i) {
                c.count += 1;
            }
            return;
        }
        self.seen.insert(key, self.counts.len());
        self.counts.push(PiiCount {
            kind: kind.clone(),
            value,
            count: 1,
            first_offset: start,
        });
        let ready = end + CONTEXT_AFTER;
        self.next_ready = self.next_ready.min(ready);
        self.pending.push(Pending {
            kind,
            start,
            end,
            detail,
        });
    }

    fn emit_ready(&mut self) {
        let pos = self.pos;
        let (ready, wait): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.end + CONTEXT_AFTER <= pos);
        self.pending = wait;
        self.next_ready = self
            .pending
            .iter()
            .map(|p| p.end + CONTEXT_AFTER)
            .min()
            .unwrap_or(u64::MAX);
        let mut ready = ready;
        ready.sort_by_key(|p| p.start);
        for p in ready {
            self.emit(p);
        }
    }

    fn emit(&mut self, p: Pending) {
        let oldest = self.pos.saturating_sub(RING as u64);
        let start = p.start.max(oldest);
        let end = p.end.min(self.pos).max(start);
        let max = EXCERPT_MAX as u64;
        let (s, e) = if end - start >= max {
            (start, start + max)
        } else {
            let room = max - (end - start);
            let s = start.saturating_sub(room / 2).max(oldest);
            let e = (end + room - (start - s)).min(self.pos);
            (s, e)
        };
        let excerpt = (s..e)
            .map(|i| match self.ring_byte(i) {
                Some(c @ 0x20..=0x7e) => c as char,
                _ => '.',
            })
            .collect();
        self.out.push(PiiFinding {
            kind: p.kind,
            offset: p.start,
            excerpt,
            detail: p.detail,
        });
    }
}

/// Scan a file (e.g. a flow's recorded bytes) as one stream; stops reading once
/// `max_findings` findings have been collected.
pub fn scan_file(
    path: &Path,
    needles: &PiiNeedles,
    max_findings: usize,
) -> std::io::Result<Vec<PiiFinding>> {
    let mut f = std::fs::File::open(path)?;
    let mut scanner = PiiScanner::new(needles.clone());
    let mut found = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while found.len() < max_findings {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        found.extend(scanner.feed(&buf[..n]));
    }
    found.extend(scanner.finish());
    found.truncate(max_findings);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn corpus(rel: &str) -> Option<Vec<u8>> {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/corpus")
            .join(rel);
        match std::fs::read(&p) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("SKIPPED: corpus file {} not readable ({e})", p.display());
                None
            }
        }
    }

    fn scan(needles: &PiiNeedles, data: &[u8], chunk: usize) -> Vec<PiiFinding> {
        let mut s = PiiScanner::new(needles.clone());
        let mut out = Vec::new();
        for c in data.chunks(chunk.max(1)) {
            out.extend(s.feed(c));
        }
        out.extend(s.finish());
        out
    }

    fn of_kind(f: &[PiiFinding], kind: &PiiKind) -> Vec<PiiFinding> {
        f.iter().filter(|x| &x.kind == kind).cloned().collect()
    }

    fn positions(p: &[(f64, f64)]) -> PiiNeedles {
        PiiNeedles {
            positions: p.to_vec(),
            ..Default::default()
        }
    }

    /// Metres north, as degrees of latitude.
    fn north(m: f64) -> f64 {
        m / 111_195.0
    }

    /// A position frame from the corpus: the frame, the latitude text and the
    /// coordinates the frame states.
    struct PosFrame {
        line: String,
        lat_text: String,
        lat: f64,
        lon: f64,
    }

    /// `UD*`/`AL*`/`WT` frames with a non-zero position of at least 3 decimals, read
    /// field by field as docs/watch-protocol.md describes them.
    fn position_frames(text: &str) -> Vec<PosFrame> {
        let mut out = Vec::new();
        for line in text.lines().filter(|l| l.starts_with('[')) {
            let Some(content) = line.trim_end_matches(']').rsplit('*').next() else {
                continue;
            };
            let f: Vec<&str> = content.split(',').collect();
            if f.len() < 8 || !(f[0].starts_with("UD") || f[0].starts_with("AL") || f[0] == "WT") {
                continue;
            }
            let (lat_s, lon_s) = (f[4].trim(), f[6].trim());
            let decimals = |s: &str| s.split('.').nth(1).map_or(0, str::len);
            let (Ok(mut lat), Ok(mut lon)) = (lat_s.parse::<f64>(), lon_s.parse::<f64>()) else {
                continue;
            };
            if lat == 0.0 || lon == 0.0 || decimals(lat_s) < 3 || decimals(lon_s) < 3 {
                continue;
            }
            if f[5] == "S" {
                lat = -lat.abs();
            }
            if f[7] == "W" {
                lon = -lon.abs();
            }
            out.push(PosFrame {
                line: line.to_string(),
                lat_text: lat_s.to_string(),
                lat,
                lon,
            });
        }
        out
    }

    #[test]
    fn corpus_position_frames_found_near_and_not_5km_away() {
        let Some(raw) = corpus("watch-protocol/traccar-decoder-frames.txt") else {
            return;
        };
        let text = String::from_utf8_lossy(&raw).into_owned();
        let frames = position_frames(&text);
        assert!(frames.len() >= 20, "{} position frames", frames.len());
        for fr in &frames {
            let data = fr.line.as_bytes();
            let f = scan(&positions(&[(fr.lat, fr.lon)]), data, 4096);
            let pos = of_kind(&f, &PiiKind::Position);
            assert_eq!(pos.len(), 1, "{}: {f:?}", fr.line);
            let off = pos[0].offset as usize;
            assert!(
                fr.line[off..].starts_with(&fr.lat_text)
                    || fr.line[off + 1..].starts_with(&fr.lat_text),
                "{} at {off}",
                fr.line
            );
            assert!(pos[0].detail.contains(" 0 m from"), "{}", pos[0].detail);
            assert!(pos[0].excerpt.len() <= 80);
            assert!(pos[0].excerpt.contains(&fr.lat_text), "{}", pos[0].excerpt);
            // 5 km north, and 5 km east: nothing.
            let far = [
                (fr.lat + north(5000.0), fr.lon),
                (fr.lat, fr.lon + north(5000.0) / fr.lat.to_radians().cos()),
            ];
            for n in far {
                let f = scan(&positions(&[n]), data, 4096);
                assert!(
                    of_kind(&f, &PiiKind::Position).is_empty(),
                    "{}: {f:?}",
                    fr.line
                );
            }
            // 300 m away still counts.
            let f = scan(&positions(&[(fr.lat + north(300.0), fr.lon)]), data, 4096);
            let pos = of_kind(&f, &PiiKind::Position);
            assert_eq!(pos.len(), 1, "{}", fr.line);
            assert!(pos[0].detail.contains(" 300 m from"), "{}", pos[0].detail);
        }
        // The whole file as one stream in chunks of any size: every needle found
        // once, counted once per frame stating it.
        let needles = positions(&frames.iter().map(|f| (f.lat, f.lon)).collect::<Vec<_>>());
        let whole = scan(&needles, &raw, raw.len());
        for chunk in [1, 3, 64, 1000] {
            assert_eq!(scan(&needles, &raw, chunk), whole, "chunk {chunk}");
        }
        let mut s = PiiScanner::new(needles.clone());
        s.feed(&raw);
        s.finish();
        for fr in &frames {
            let value = format!("{},{}", fr.lat, fr.lon);
            let c = s
                .counts()
                .into_iter()
                .find(|c| c.value == value)
                .expect("counted");
            let same = frames
                .iter()
                .filter(|g| (g.lat, g.lon) == (fr.lat, fr.lon))
                .count();
            assert_eq!(c.count as usize, same, "{value}");
            assert!(
                raw[c.first_offset as usize..].starts_with(fr.lat_text.as_bytes())
                    || raw[c.first_offset as usize + 1..].starts_with(fr.lat_text.as_bytes())
            );
        }
        let distinct: std::collections::HashSet<String> = frames
            .iter()
            .map(|f| format!("{},{}", f.lat, f.lon))
            .collect();
        assert_eq!(whole.len(), distinct.len());
    }

    #[test]
    fn corpus_nmea_and_gpsd_json_positions() {
        let (Some(log), Some(chk)) = (
            corpus("nmea-gpsd/bu353s4.log"),
            corpus("nmea-gpsd/bu353s4.log.chk"),
        ) else {
            return;
        };
        let text = String::from_utf8_lossy(&chk);
        let tpv: serde_json::Value = text
            .lines()
            .filter(|l| l.contains("\"TPV\""))
            .find_map(|l| serde_json::from_str(l).ok())
            .expect("a TPV report");
        let (lat, lon) = (tpv["lat"].as_f64().unwrap(), tpv["lon"].as_f64().unwrap());
        assert!(lat < 0.0, "the log is from the southern hemisphere");
        let near = positions(&[(lat, lon)]);
        let f = of_kind(&scan(&near, &log, 97), &PiiKind::Position);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].detail.contains("(NMEA)"), "{}", f[0].detail);
        assert!(log[f[0].offset as usize..].starts_with(b"3747."));
        // gpsd's JSON reports only (the .chk file also repeats the NMEA input).
        let json: Vec<u8> = text
            .lines()
            .filter(|l| l.starts_with('{'))
            .flat_map(|l| l.bytes().chain(std::iter::once(b'\n')))
            .collect();
        let f = of_kind(&scan(&near, &json, 97), &PiiKind::Position);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].detail.contains("(keyed)"), "{}", f[0].detail);
        assert!(json[f[0].offset as usize..].starts_with(b"-37.78"));
        let far = positions(&[(lat + north(5000.0), lon)]);
        assert!(of_kind(&scan(&far, &log, 97), &PiiKind::Position).is_empty());
        assert!(of_kind(&scan(&far, &chk, 97), &PiiKind::Position).is_empty());
    }

    #[test]
    fn position_forms() {
        let berlin = (52.520008, 13.404954);
        let needles = positions(&[berlin, (-33.86, 151.21)]);
        let cases: &[(&str, &str)] = &[
            ("pos=52.520008,13.404954;", "52.520008"),
            (
                "[3G*1*0040*UD,220526,101010,A,52.520008,N,13.404954,E,0,0]",
                "52.520008",
            ),
            ("{\"lat\":52.52,\"lon\":13.40,\"acc\":12}", "52.52"),
            ("{\"longitude\": 13.4049, \"latitude\": 52.5200}", "13.4049"),
            ("GET /loc?lat=52.5201&lng=13.4050 HTTP/1.1", "52.5201"),
            ("<lat>52.52001</lat><lon>13.40497</lon>", "52.52001"),
            (
                "{\"type\":\"Point\",\"coordinates\":[13.404954,52.520008]}",
                "13.404954",
            ),
            (
                "$GPGGA,120000.00,5231.2005,N,01324.2972,E,1,08,1.0,34.0,M,,M,,*47",
                "5231.2005",
            ),
            ("sydney -33.861,151.209 ok", "-33.861"),
            ("52.520008 13.404954", "52.520008"),
        ];
        for (text, at) in cases {
            let f = of_kind(&scan(&needles, text.as_bytes(), 5), &PiiKind::Position);
            assert_eq!(f.len(), 1, "{text}: {f:?}");
            assert_eq!(&text[f[0].offset as usize..][..at.len()], *at, "{text}");
        }
        let misses: &[&str] = &[
            "52.52,13.40",                    // unkeyed, 2 decimals
            "52.520008,N,13.404954,E,",       // fine, but see below: replaced needle
            "52.520008|13.404954",            // unknown separator
            "5231.2005,01324.2972",           // NMEA without hemispheres
            "version 52.520008, build 99.13", // second number far off
            "152.520008,13.404954",           // not a latitude in either order
        ];
        let only_far = positions(&[(52.52 + north(2000.0), 13.404954)]);
        for (i, text) in misses.iter().enumerate() {
            let n = if i == 1 { &only_far } else { &needles };
            let f = of_kind(&scan(n, text.as_bytes(), 3), &PiiKind::Position);
            assert!(f.is_empty(), "{text}: {f:?}");
        }
        // Southern/western hemisphere letters.
        let rio = positions(&[(-22.906847, -43.172896)]);
        for text in ["22.906847,S,43.172896,W", "-22.906847,N,-43.172896,E"] {
            assert_eq!(scan(&rio, text.as_bytes(), 1).len(), 1, "{text}");
        }
        assert!(scan(&rio, b"22.906847,N,43.172896,W", 1).is_empty());
    }

    #[test]
    fn corpus_imeis_and_sos_numbers() {
        let Some(dec) = corpus("watch-protocol/traccar-decoder-frames.txt") else {
            return;
        };
        let text = String::from_utf8_lossy(&dec).into_owned();
        // 15-digit device ids are IMEIs.
        let mut ids: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with('['))
            .filter_map(|l| l.split('*').nth(1))
            .filter(|id| id.len() == 15)
            .map(str::to_string)
            .collect();
        ids.sort();
        ids.dedup();
        assert!(ids.len() >= 4, "{ids:?}");
        let needles = PiiNeedles {
            imeis: ids.clone(),
            ..Default::default()
        };
        let f = scan(&needles, &dec, 333);
        assert_eq!(of_kind(&f, &PiiKind::Imei).len(), ids.len(), "{f:?}");
        let mut s = PiiScanner::new(needles);
        s.feed(&dec);
        s.finish();
        for id in &ids {
            let c = s.counts().into_iter().find(|c| &c.value == id).unwrap();
            assert_eq!(
                c.count as usize,
                text.matches(&format!("*{id}*")).count(),
                "{id}"
            );
            assert!(dec[c.first_offset as usize..].starts_with(id.as_bytes()));
        }
        // A shorter needle that only occurs inside those runs is not found.
        let inner = PiiNeedles {
            imeis: vec![ids[0][1..].to_string(), ids[0][..14].to_string()],
            ..Default::default()
        };
        assert!(scan(&inner, &dec, 333).is_empty());

        let Some(enc) = corpus("watch-protocol/traccar-encoder-frames.txt") else {
            return;
        };
        let needles = PiiNeedles {
            phone_numbers: vec!["123456789".into(), "12345678".into()],
            ..Default::default()
        };
        let f = of_kind(&scan(&needles, &enc, 7), &PiiKind::PhoneNumber);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(enc[f[0].offset as usize - 5..].starts_with(b"SOS1,123456789]"));
    }

    #[test]
    fn phone_number_forms() {
        let needles = PiiNeedles {
            phone_numbers: vec![
                "+49 151 12345678".into(),
                "+4930123456".into(),
                "+12025550123".into(),
                "+79161234567".into(),
                "+390612345678".into(),
            ],
            ..Default::default()
        };
        let cases: &[(&str, &str)] = &[
            (
                "[3G*8800000015*001a*CENTER,+4915112345678]",
                "+4915112345678",
            ),
            (
                "[3G*8800000015*001b*CENTER,004915112345678]",
                "004915112345678",
            ),
            ("[3G*8800000015*0016*SOS1,015112345678]", "015112345678"),
            ("pw,123456,center,4915112345678#", "4915112345678"),
            ("[CS*1234567890*0020*SOS,,030123456,]", "030123456"),
            ("tel:2025550123", "2025550123"),
            ("call 89161234567", "89161234567"),
            ("WHITELIST1,0612345678", "0612345678"),
            ("4930123456.5", "4930123456"),
        ];
        for (text, at) in cases {
            let f = scan(&needles, text.as_bytes(), 4);
            assert_eq!(f.len(), 1, "{text}: {f:?}");
            assert_eq!(f[0].kind, PiiKind::PhoneNumber);
            assert_eq!(&text[f[0].offset as usize..][..at.len()], *at);
        }
        // Three SOS numbers in one frame: three findings.
        let sos = "[3G*8800000015*0030*SOS,+4915112345678,030123456,+12025550123]";
        assert_eq!(scan(&needles, sos.as_bytes(), 1).len(), 3);
        for text in [
            "+491511234567",   // shorter
            "+49151123456789", // longer
            "0151123456780",
            "x5015112345678",
            "+493012345678",
        ] {
            let f = scan(&needles, text.as_bytes(), 1);
            assert!(f.is_empty(), "{text}: {f:?}");
        }
    }

    #[test]
    fn digit_run_false_positives() {
        let needles = PiiNeedles {
            imeis: vec!["260522123456789".into(), "202605221234567".into()],
            phone_numbers: vec!["+4915100000001".into()],
            ..Default::default()
        };
        for text in [
            "ts=20260522123456789;",
            "{\"t\":20260522123456789}",
            "+49151000000012",
            "004915100000001234",
            "9015100000001",
        ] {
            let f = scan(&needles, text.as_bytes(), 2);
            assert!(f.is_empty(), "{text}: {f:?}");
        }
        assert_eq!(scan(&needles, b"ts=260522123456789;", 2).len(), 1);
        assert_eq!(scan(&needles, b"+4915100000001,", 2).len(), 1);
    }

    #[test]
    fn audio_and_voice_messages() {
        let Some(hex) = corpus("watch-protocol/traccar-binary-frames.hex") else {
            return;
        };
        let text = String::from_utf8_lossy(&hex).into_owned();
        let stream: Vec<u8> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .flat_map(|l| hex::decode(l.trim()).expect("hex"))
            .collect();
        let f = of_kind(&scan(&PiiNeedles::default(), &stream, 100), &PiiKind::Audio);
        let details: Vec<&str> = f.iter().map(|x| x.detail.as_str()).collect();
        assert!(details.iter().any(|d| d.contains("#!AMR")), "{details:?}");
        assert!(details.iter().any(|d| d.contains("JXTK")), "{details:?}");
        let amr = f.iter().find(|x| x.detail.contains("#!AMR")).unwrap();
        assert!(stream[amr.offset as usize..].starts_with(b"#!AMR\n"));

        let mut blob = Vec::new();
        blob.extend_from_slice(b"RIFF\x24\x08\x00\x00WAVEfmt \x10\x00\x00\x00");
        blob.extend_from_slice(b"xxOggS\x00\x02yy");
        blob.extend_from_slice(b"ID3\x04\x00\x00zz#!AMR-WB\n\x00\x01");
        blob.extend_from_slice(b"[3G*1234567890*0004*TK,1]");
        let f = scan(&PiiNeedles::default(), &blob, 3);
        let mut names: Vec<String> = f.iter().map(|x| x.detail.clone()).collect();
        names.sort();
        assert_eq!(names.len(), 4, "{names:?}");
        assert!(names.iter().any(|n| n.starts_with("WAV")));
        assert!(names.iter().any(|n| n.starts_with("Ogg")));
        assert!(names.iter().any(|n| n.starts_with("MP3")));
        assert!(names.iter().any(|n| n.starts_with("AMR-WB")));
        // No WAVE without RIFF, no TK acknowledgement, no bare "ID3" text.
        let f = scan(
            &PiiNeedles::default(),
            b"WAVE ID3 tag [CS*1*0004*TK,1] TKQ",
            1,
        );
        assert!(f.is_empty(), "{f:?}");
        let mut tk = b"[3G*1234567890*0100*TK,".to_vec();
        tk.extend((0..40u8).map(|i| i.wrapping_mul(37)));
        tk.push(b']');
        let f = scan(&PiiNeedles::default(), &tk, 1);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(tk[f[0].offset as usize..].starts_with(b"TK,"));
    }

    #[test]
    fn other_needles_overlapping_and_across_chunks() {
        let needles = PiiNeedles {
            other: vec![
                ("child name".into(), b"Emma Schmidt".to_vec()),
                ("surname".into(), b"Schmidt".to_vec()),
                ("empty".into(), vec![]),
            ],
            ..Default::default()
        };
        let data = b"name=Emma Schmidt&x=1 ... Schmidt again";
        let whole = scan(&needles, data, data.len());
        assert_eq!(whole.len(), 2, "{whole:?}");
        assert_eq!(whole[0].kind, PiiKind::Other("child name".into()));
        assert_eq!(whole[0].offset, 5);
        assert_eq!(whole[1].kind, PiiKind::Other("surname".into()));
        assert_eq!(whole[1].offset, 10);
        let mut s = PiiScanner::new(needles.clone());
        s.feed(data);
        s.finish();
        let c = s.counts();
        assert_eq!(c.iter().find(|c| c.value == "surname").unwrap().count, 2);
        // Many long needles (matched by the NFA instead of the DFA).
        let many: Vec<(String, Vec<u8>)> = (0..40)
            .map(|i| {
                let v: Vec<u8> = (0..200)
                    .map(|j| b'a' + ((i * 7 + j * 13) % 26) as u8)
                    .collect();
                (format!("n{i}"), v)
            })
            .collect();
        let mut data = b"xx".to_vec();
        data.extend_from_slice(&many[17].1);
        data.extend_from_slice(b"yy");
        data.extend_from_slice(&many[3].1[..199]);
        let needles = PiiNeedles {
            other: many.clone(),
            ..Default::default()
        };
        let f = scan(&needles, &data, 9);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(
            (f[0].kind.clone(), f[0].offset),
            (PiiKind::Other("n17".into()), 2)
        );
        fn send<T: Send>(_: &T) {}
        send(&PiiScanner::new(needles));
    }

    #[test]
    fn split_anywhere_gives_the_same_findings() {
        let needles = PiiNeedles {
            positions: vec![(52.520008, 13.404954)],
            phone_numbers: vec!["+4915112345678".into()],
            imeis: vec!["358839237678820".into()],
            other: vec![("pw".into(), b"hunter2".to_vec())],
        };
        let data = b"[3G*358839237678820*00AB*UD,220526,101010,A,52.520011,N,13.404950,E,0,0]\
            [3G*358839237678820*0018*CENTER,004915112345678]pw=hunter2 \
            {\"lat\":52.5201,\"lng\":13.4049}#!AMR\n\x00\xff\x10$GPGGA,1,5231.2005,N,01324.2972,E";
        let whole = scan(&needles, data, data.len());
        assert_eq!(whole.len(), 5, "{whole:#?}");
        for f in &whole {
            assert!(f.excerpt.chars().count() <= 80);
            assert!(
                f.excerpt.chars().all(|c| (' '..='~').contains(&c)),
                "{}",
                f.excerpt
            );
        }
        for cut in 0..=data.len() {
            let mut s = PiiScanner::new(needles.clone());
            let mut got = s.feed(&data[..cut]);
            got.extend(s.feed(&data[cut..]));
            got.extend(s.finish());
            got.sort_by_key(|f| f.offset);
            let mut want = whole.clone();
            want.sort_by_key(|f| f.offset);
            assert_eq!(got, want, "cut {cut}");
        }
        // After finish, the next feed is a new stream.
        let mut s = PiiScanner::new(needles.clone());
        s.feed(data);
        s.finish();
        let again = [s.feed(data), s.finish()].concat();
        assert_eq!(again.len(), whole.len());
        assert_eq!(s.bytes_scanned(), data.len() as u64);
    }

    #[test]
    fn large_noise_streams_in_bounded_memory() {
        let needles = PiiNeedles {
            positions: vec![(52.520008, 13.404954)],
            phone_numbers: vec!["+4915112345678".into()],
            imeis: vec!["358839237678820".into()],
            other: vec![("pw".into(), b"hunter2".to_vec())],
        };
        let mut s = PiiScanner::new(needles.clone());
        let mut seed = 0x9e37_79b9_u32;
        let alphabet = b"0123456789012345678901234567890123456789.,,;:-+ NSEWlat\"";
        let mut chunk = vec![0u8; 64 * 1024];
        let mut found = Vec::new();
        let total = 20 * 1024 * 1024;
        let mut fed = 0usize;
        while fed < total {
            for b in chunk.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                *b = alphabet[(seed % alphabet.len() as u32) as usize];
            }
            found.extend(s.feed(&chunk));
            fed += chunk.len();
        }
        let marker = b" +4915112345678 ";
        found.extend(s.feed(marker));
        found.extend(s.finish());
        let phone = of_kind(&found, &PiiKind::PhoneNumber);
        assert!(
            phone.iter().any(|f| f.offset == fed as u64 + 1),
            "the number after the noise is found: {phone:?}"
        );
        assert!(s.counts().len() <= 4);
        // One 20 MB digit run: nothing, and the digits after it still match.
        let mut s = PiiScanner::new(needles);
        let digits = vec![b'7'; 1 << 20];
        for _ in 0..20 {
            assert!(s.feed(&digits).is_empty());
        }
        let tail = [s.feed(b",358839237678820,"), s.finish()].concat();
        assert_eq!(tail.len(), 1, "{tail:?}");
        assert_eq!(tail[0].offset, (20u64 << 20) + 1);
    }

    #[test]
    fn garbage_never_panics() {
        let needles = PiiNeedles {
            positions: vec![(0.0, 0.0), (90.0, 180.0), (-90.0, -180.0)],
            phone_numbers: vec![
                "+1".into(),
                "".into(),
                "+".into(),
                "00".into(),
                "+4915112345678".into(),
            ],
            imeis: vec!["".into(), "12".into()],
            other: vec![
                ("big".into(), vec![b'a'; 10_000]),
                ("x".into(), b"x".to_vec()),
            ],
        };
        let mut seed = 7u32;
        let mut s = PiiScanner::new(needles.clone());
        for round in 0..2000 {
            let len = (seed % 200) as usize;
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    if seed.is_multiple_of(3) {
                        b"0.,-+NSEW9"[(seed % 10) as usize]
                    } else {
                        seed as u8
                    }
                })
                .collect();
            for f in s.feed(&data) {
                assert!(f.excerpt.chars().count() <= 80);
            }
            if round % 100 == 0 {
                s.finish();
            }
        }
        s.finish();
        assert!(scan(&needles, b"0.000,0.000", 1).len() == 1);
    }

    #[test]
    fn scan_file_reads_a_recorded_flow() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("flow-1-up.bin");
        let mut data = vec![b'.'; 70 * 1024];
        data.extend_from_slice(b"[3G*8800000015*0020*CENTER,+4915112345678]");
        data.extend(vec![b'-'; 1000]);
        data.extend_from_slice(b"[3G*8800000015*0020*UD,1,2,A,52.520008,N,13.404954,E]");
        std::fs::write(&p, &data).unwrap();
        let needles = PiiNeedles {
            positions: vec![(52.520008, 13.404954)],
            phone_numbers: vec!["+4915112345678".into()],
            ..Default::default()
        };
        let f = scan_file(&p, &needles, 10).unwrap();
        assert_eq!(f, scan(&needles, &data, 999));
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].offset as usize, 70 * 1024 + 27);
        assert_eq!(scan_file(&p, &needles, 1).unwrap().len(), 1);
        assert!(scan_file(&dir.path().join("none"), &needles, 1).is_err());
    }
}

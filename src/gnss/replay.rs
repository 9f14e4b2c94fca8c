//! Recorded NMEA logs replayed with their original pacing.
//!
//! A recording is a text file of sentences as a receiver wrote them (for example the
//! real receiver logs in `fixtures/nmea/gpsd/`). Lines starting with `#` are comments
//! (the gpsd test-log header); every other non-empty line is fed verbatim — including
//! proprietary sentences and garbage, since a device must cope with whatever its
//! receiver writes — with a CR LF terminator.
//!
//! Pacing: receivers write one burst of sentences per navigation epoch. A sentence
//! carrying a UTC time of day (RMC, GGA, GNS, GLL, ZDA, GBS, GST) whose time differs
//! from the current epoch's starts a new epoch, due at the first epoch's time plus the
//! difference of the two times of day. Sentences before the first time-bearing one
//! belong to epoch 0. Time of day wrapping at midnight counts forward; a gap over
//! [`MAX_GAP_MS`] or a time going backwards (a log spliced from several sessions) is
//! replaced by [`DEFAULT_GAP_MS`] and counted in [`Recording::irregular_gaps`].

use std::path::Path;

/// Longest silence kept from a recording, milliseconds.
pub const MAX_GAP_MS: u64 = 10_000;
/// Spacing used instead of an implausible gap, milliseconds.
pub const DEFAULT_GAP_MS: u64 = 1_000;
/// Longest line fed (longer lines in a recording are cut, and counted).
pub const MAX_LINE: usize = 4_096;

/// One burst of sentences.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayEpoch {
    /// Offset from the start of the replay, milliseconds.
    pub at_ms: u64,
    /// Lines without terminators, as recorded.
    pub lines: Vec<Vec<u8>>,
}

/// A parsed recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    /// File name (for evidence).
    pub name: String,
    pub epochs: Vec<ReplayEpoch>,
    /// Gaps replaced because they were implausible.
    pub irregular_gaps: usize,
    /// Lines cut at [`MAX_LINE`].
    pub cut_lines: usize,
}

impl Recording {
    pub fn load(path: &Path) -> std::io::Result<Recording> {
        let bytes = std::fs::read(path)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Recording::parse(&name, &bytes))
    }

    /// Parse a recording from bytes. Never fails: anything that is not a comment is
    /// a line to feed.
    pub fn parse(name: &str, bytes: &[u8]) -> Recording {
        let mut epochs: Vec<ReplayEpoch> = Vec::new();
        let mut current = ReplayEpoch {
            at_ms: 0,
            lines: Vec::new(),
        };
        let mut current_tod: Option<u64> = None;
        let mut irregular_gaps = 0;
        let mut cut_lines = 0;
        for raw in bytes.split(|&b| b == b'\n') {
            let mut line = raw;
            while let Some((&last, rest)) = line.split_last() {
                if last == b'\r' {
                    line = rest;
                } else {
                    break;
                }
            }
            if line.is_empty() || line[0] == b'#' {
                continue;
            }
            let line = if line.len() > MAX_LINE {
                cut_lines += 1;
                &line[..MAX_LINE]
            } else {
                line
            };
            if let Some(tod) = time_of_day_ms(line) {
                match current_tod {
                    None => current_tod = Some(tod),
                    Some(prev) if prev != tod => {
                        let step = if tod > prev {
                            tod - prev
                        } else {
                            // Midnight wrap (23:59:59 → 00:00:00) or a backwards jump.
                            // After a leap second (23:59:60.x, past 86 400 000 ms) the
                            // difference can be zero or negative: implausible too.
                            (tod + 86_400_000).saturating_sub(prev)
                        };
                        let step = if step == 0 || step > MAX_GAP_MS {
                            irregular_gaps += 1;
                            DEFAULT_GAP_MS
                        } else {
                            step
                        };
                        let at_ms = current.at_ms + step;
                        epochs.push(std::mem::replace(
                            &mut current,
                            ReplayEpoch {
                                at_ms,
                                lines: Vec::new(),
                            },
                        ));
                        current_tod = Some(tod);
                    }
                    Some(_) => {}
                }
            }
            current.lines.push(line.to_vec());
        }
        if !current.lines.is_empty() {
            epochs.push(current);
        }
        epochs.retain(|e| !e.lines.is_empty());
        Recording {
            name: name.to_string(),
            epochs,
            irregular_gaps,
            cut_lines,
        }
    }

    /// Time of the last epoch, milliseconds from the start.
    pub fn duration_ms(&self) -> u64 {
        self.epochs.last().map_or(0, |e| e.at_ms)
    }

    pub fn lines(&self) -> usize {
        self.epochs.iter().map(|e| e.lines.len()).sum()
    }
}

/// The time of day (ms since midnight) of a time-bearing sentence, if its checksum is
/// right and its time field reads; `None` otherwise.
pub fn time_of_day_ms(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line).ok()?;
    let s = crate::wire::nmea::parse_unbounded(text).ok()?;
    let idx = match s.kind.as_str() {
        "RMC" | "GGA" | "GNS" | "ZDA" | "GBS" | "GST" => 0,
        "GLL" => 4,
        _ => return None,
    };
    parse_tod(s.fields.get(idx)?)
}

fn parse_tod(f: &str) -> Option<u64> {
    if f.len() < 6 || !f.is_char_boundary(6) {
        return None;
    }
    let (hms, frac) = f.split_at(6);
    if !hms.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |i: usize| hms[i..i + 2].parse::<u64>().ok();
    let (h, m, s) = (n(0)?, n(2)?, n(4)?);
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    let ms = match frac.strip_prefix('.') {
        Some(d) if !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()) => {
            let d = &d[..d.len().min(3)];
            d.parse::<u64>().ok()? * 10u64.pow(3 - d.len() as u32)
        }
        Some(_) => return None,
        None if frac.is_empty() => 0,
        None => return None,
    };
    Some(((h * 60 + m) * 60 + s) * 1000 + ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::nmea::frame;

    fn log(lines: &[&str]) -> Vec<u8> {
        lines.join("\r\n").into_bytes()
    }

    #[test]
    fn epochs_follow_the_time_field_and_keep_every_line() {
        let a = frame("GPRMC,120000.00,A,5231.2005,N,01324.2972,E,0.0,,211126,,,A");
        let b = frame("GPGSA,A,3,01,02,03,04,,,,,,,,,1.0,1.0,1.0");
        let c = frame("GPGGA,120000.20,5231.2005,N,01324.2972,E,1,04,1.0,40.0,M,0.0,M,,");
        let d = frame("GPRMC,120000.20,A,5231.2005,N,01324.2972,E,0.0,,211126,,,A");
        let rec = Recording::parse("x", &log(&["# header", &b, &a, "garbage line", &c, &d, ""]));
        assert_eq!(rec.epochs.len(), 2);
        assert_eq!(rec.epochs[0].at_ms, 0);
        assert_eq!(rec.epochs[0].lines.len(), 3);
        assert_eq!(rec.epochs[1].at_ms, 200);
        assert_eq!(rec.epochs[1].lines.len(), 2);
        assert_eq!(rec.lines(), 5);
        assert_eq!(rec.epochs[0].lines[2], b"garbage line");
    }

    #[test]
    fn midnight_wraps_forward_and_implausible_gaps_are_replaced() {
        let t = |hms: &str| frame(&format!("GPGGA,{hms},,,,,0,00,99.99,,,,,,"));
        let rec = Recording::parse(
            "x",
            &log(&[&t("235959"), &t("000000"), &t("000001.5"), &t("120000")]),
        );
        let at: Vec<u64> = rec.epochs.iter().map(|e| e.at_ms).collect();
        assert_eq!(at, vec![0, 1_000, 2_500, 3_500]);
        assert_eq!(rec.irregular_gaps, 1);
    }

    #[test]
    fn bad_checksums_do_not_pace_and_long_lines_are_cut() {
        let long = vec![b'$'; MAX_LINE * 3];
        let mut bytes = b"$GPGGA,120000,,,,,0,00,,,,,,,*00\n".to_vec();
        bytes.extend_from_slice(&long);
        let rec = Recording::parse("x", &bytes);
        assert_eq!(rec.epochs.len(), 1);
        assert_eq!(rec.cut_lines, 1);
        assert_eq!(rec.epochs[0].lines[1].len(), MAX_LINE);
        assert_eq!(parse_tod("12345"), None);
        assert_eq!(parse_tod("1234567"), None);
        assert_eq!(parse_tod("250000"), None);
        assert_eq!(parse_tod("123456.7"), Some(45_296_700));
    }

    #[test]
    fn every_gpsd_recording_parses_with_plausible_pacing() {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/nmea/gpsd");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "log") {
                let rec = Recording::load(&p).unwrap();
                assert!(rec.lines() > 0, "{}", p.display());
                // Receivers write at 1–10 Hz: no epoch spacing outside 50 ms..10 s.
                for w in rec.epochs.windows(2) {
                    let d = w[1].at_ms - w[0].at_ms;
                    assert!((50..=MAX_GAP_MS).contains(&d), "{}: {d} ms", p.display());
                }
                n += 1;
            }
        }
        assert!(n >= 10, "only {n} recordings in {}", dir.display());
    }
}

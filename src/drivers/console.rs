//! A device console on a serial line (`docs/virtual-hardware.md` §3).
//!
//! Every byte received is appended, unchanged, to `console-<name>.raw`. The byte
//! stream is split into records at CR, LF or CR LF; a line longer than
//! [`MAX_LINE`] bytes is cut into several records, all marked `cut`. Records go to
//! the [`EventLog`] (text decoded lossily) and to `console-<name>.log`, one line per
//! record: `<device ms> <utc iso8601> <text>`, with control characters in the text
//! written as `\xHH` so the file stays one line per record.

use super::serial::{escape_bytes, LineStatus, ReadEvent, SerialLine, SerialWriter};
use super::{Console, ConsoleLine, EventLog, Mark};
use crate::clock::{Clock, DeviceMs};
use crate::drivers::eventlog::Record;
use crate::error::{RigError, RigResult};
use async_trait::async_trait;
use regex::Regex;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// Longest record; longer lines are cut.
pub const MAX_LINE: usize = 4096;
/// Records kept in memory (the evidence files have them all).
const LOG_CAPACITY: usize = 4_096;

/// Splits a byte stream into lines at CR, LF or CR LF, cutting at [`MAX_LINE`].
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
    after_cr: bool,
    /// The current line has already been cut at least once.
    continuing: bool,
}

impl LineSplitter {
    pub fn new() -> LineSplitter {
        LineSplitter::default()
    }

    /// Feed bytes; `emit(bytes, cut)` is called for every completed record.
    pub fn push(&mut self, bytes: &[u8], emit: &mut impl FnMut(&[u8], bool)) {
        for &b in bytes {
            if self.after_cr && b == b'\n' {
                self.after_cr = false;
                continue;
            }
            self.after_cr = b == b'\r';
            if b == b'\r' || b == b'\n' {
                self.end_line(emit);
                continue;
            }
            self.buf.push(b);
            if self.buf.len() >= MAX_LINE {
                emit(&self.buf, true);
                self.buf.clear();
                self.continuing = true;
            }
        }
    }

    /// Emit a pending unterminated line, if any (the port closed).
    pub fn flush(&mut self, emit: &mut impl FnMut(&[u8], bool)) {
        if !self.buf.is_empty() {
            emit(&self.buf, self.continuing);
            self.buf.clear();
        }
        self.continuing = false;
    }

    /// Bytes of the line being received.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    fn end_line(&mut self, emit: &mut impl FnMut(&[u8], bool)) {
        if self.buf.is_empty() && self.continuing {
            // The terminator right after a cut: the line is complete, no empty record.
            self.continuing = false;
            return;
        }
        emit(&self.buf, self.continuing);
        self.buf.clear();
        self.continuing = false;
    }
}

/// UTC Unix milliseconds as `YYYY-MM-DDThh:mm:ss.mmmZ`.
pub fn iso8601_utc(unix_ms: i64) -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(unix_ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| format!("unix-ms:{unix_ms}"))
}

/// Text for the `.log` file: lossy UTF-8 with control characters escaped.
fn log_text(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        if (c.is_control() && c != '\t') || c == '\\' {
            if c == '\\' {
                s.push_str("\\\\");
            } else if (c as u32) < 0x100 {
                s.push_str(&escape_bytes(&[c as u32 as u8]));
            } else {
                s.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
        } else {
            s.push(c);
        }
    }
    s
}

/// Writes the evidence files and the event log from the reader thread.
struct Recorder {
    clock: Clock,
    log: Arc<EventLog<ConsoleLine>>,
    raw: File,
    /// Buffered: one write per chunk read, not several per line.
    lines: std::io::BufWriter<File>,
    splitter: LineSplitter,
    /// Lines of the chunk being read, made visible once they are on disk.
    pending: Vec<(DeviceMs, ConsoleLine)>,
    status: LineStatus,
    name: String,
    evidence_ok: bool,
}

impl Recorder {
    fn on_event(&mut self, ev: ReadEvent<'_>) {
        match ev {
            ReadEvent::Data(bytes) => {
                let r = self.raw.write_all(bytes);
                self.check(r, "raw");
                let mut splitter = std::mem::take(&mut self.splitter);
                splitter.push(bytes, &mut |line, cut| self.record(line, cut));
                self.splitter = splitter;
                self.publish();
            }
            ReadEvent::Closed(_) => {
                let mut splitter = std::mem::take(&mut self.splitter);
                splitter.flush(&mut |line, cut| self.record(line, cut));
                self.splitter = splitter;
                let r = self.raw.flush();
                self.check(r, "flush");
                self.publish();
            }
            // The raw file stays the exact byte record: losses and returns of the
            // port are in the run's fault record, not in the device's output.
            ReadEvent::Reopened => {}
        }
    }

    fn record(&mut self, bytes: &[u8], cut: bool) {
        let t: DeviceMs = self.clock.now();
        let text = String::from_utf8_lossy(bytes).into_owned();
        let r = writeln!(
            self.lines,
            "{} {} {}",
            t,
            iso8601_utc(self.clock.utc_ms(t)),
            log_text(&text)
        );
        self.check(r, "log");
        self.pending.push((t, ConsoleLine { text, cut }));
    }

    /// Write the chunk's lines to the line record in one go, then hand them to the
    /// event log: a line a step sees is already in the evidence.
    fn publish(&mut self) {
        let r = self.lines.flush();
        self.check(r, "log");
        for (t, line) in self.pending.drain(..) {
            self.log.push_at(t, line);
        }
    }

    fn check(&mut self, r: std::io::Result<()>, what: &str) {
        if let Err(e) = r {
            if self.evidence_ok {
                self.evidence_ok = false;
                self.status
                    .fail(format!("evidence console-{}.{what}: {e}", self.name));
            }
        }
    }
}

/// A console on a serial line.
pub struct SerialConsole {
    name: String,
    line: SerialLine,
    writer: SerialWriter,
    log: Arc<EventLog<ConsoleLine>>,
}

impl SerialConsole {
    /// Open the console `name` on `path`; evidence goes to
    /// `<evidence_dir>/console-<name>.raw` and `.log` (created or truncated).
    pub fn open(
        name: &str,
        path: &str,
        baud: u32,
        clock: Clock,
        evidence_dir: &Path,
    ) -> RigResult<Arc<SerialConsole>> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(RigError::Config(format!(
                "console name `{name}`: use [A-Za-z0-9._-]"
            )));
        }
        std::fs::create_dir_all(evidence_dir)?;
        let raw = File::create(evidence_dir.join(format!("console-{name}.raw")))?;
        let lines = File::create(evidence_dir.join(format!("console-{name}.log")))?;
        let line = SerialLine::open(path, baud)?;
        let log = Arc::new(EventLog::new(clock, LOG_CAPACITY));
        let mut rec = Recorder {
            clock,
            log: log.clone(),
            raw,
            lines: std::io::BufWriter::with_capacity(64 * 1024, lines),
            pending: Vec::new(),
            splitter: LineSplitter::new(),
            status: line.status(),
            name: name.to_string(),
            evidence_ok: true,
        };
        line.start_reader(move |ev| rec.on_event(ev))?;
        Ok(Arc::new(SerialConsole {
            name: name.to_string(),
            writer: line.writer(),
            line,
            log,
        }))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The line's health (failed when the port is gone).
    pub fn status(&self) -> LineStatus {
        self.line.status()
    }

    /// The first record at or after `mark` whose text matches `re`, within
    /// `timeout_secs` of device time.
    pub async fn wait_line(
        &self,
        mark: Mark,
        re: &Regex,
        timeout_secs: f64,
    ) -> Option<Record<ConsoleLine>> {
        let re = re.clone();
        self.log
            .wait_for(mark, timeout_secs, move |l| re.is_match(&l.text))
            .await
    }

    /// As [`wait_line`](Self::wait_line), but a port that goes away (or evidence
    /// that cannot be written) is an error instead of a silent time-out. Lines
    /// received before the port went away still match.
    pub async fn expect_line(
        &self,
        mark: Mark,
        re: &Regex,
        timeout_secs: f64,
    ) -> RigResult<Option<Record<ConsoleLine>>> {
        let status = self.line.status();
        tokio::select! {
            r = self.wait_line(mark, re, timeout_secs) => Ok(r),
            e = status.failed() => {
                match self.log.since(mark).into_iter().find(|r| re.is_match(&r.value.text)) {
                    Some(r) => Ok(Some(r)),
                    None => Err(e),
                }
            }
        }
    }
}

#[async_trait]
impl Console for SerialConsole {
    fn log(&self) -> &EventLog<ConsoleLine> {
        &self.log
    }

    async fn send(&self, text: &str) -> RigResult<()> {
        self.writer.write(text.as_bytes().to_vec()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<(Vec<u8>, bool)> {
        let mut s = LineSplitter::new();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, &mut |l, cut| out.push((l.to_vec(), cut)));
        }
        out
    }

    fn texts(v: &[(Vec<u8>, bool)]) -> Vec<String> {
        v.iter()
            .map(|(l, _)| String::from_utf8_lossy(l).into_owned())
            .collect()
    }

    #[test]
    fn cr_lf_and_crlf_each_end_one_line_even_across_chunks() {
        let v = split(&[b"a\r\nb\rc\nd\r", b"\ne\r\r\nf"]);
        assert_eq!(texts(&v), ["a", "b", "c", "d", "e", ""]);
        assert!(v.iter().all(|(_, cut)| !cut));
    }

    #[test]
    fn long_lines_are_cut_and_every_byte_is_kept() {
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let mut input = long.clone();
        input.extend_from_slice(b"\r\nnext\r\n");
        let v = split(&[&input]);
        assert_eq!(v.len(), 4);
        assert_eq!(v[0].0.len(), MAX_LINE);
        assert_eq!(v[1].0.len(), MAX_LINE);
        assert_eq!(v[2].0.len(), 10);
        assert!(v[..3].iter().all(|(_, cut)| *cut));
        assert_eq!(v[3], (b"next".to_vec(), false));
        let rejoined: Vec<u8> = v[..3].iter().flat_map(|(l, _)| l.clone()).collect();
        assert_eq!(rejoined, long);
    }

    #[test]
    fn a_line_of_exactly_the_limit_gives_no_empty_record() {
        let mut input = vec![b'y'; MAX_LINE];
        input.extend_from_slice(b"\r\nz\n");
        let v = split(&[&input]);
        assert_eq!(v.len(), 2);
        assert!(v[0].1);
        assert_eq!(v[1], (b"z".to_vec(), false));
    }

    #[test]
    fn flush_emits_the_unterminated_tail() {
        let mut s = LineSplitter::new();
        let mut out = Vec::new();
        s.push(b"done\r\nhalf", &mut |l, c| out.push((l.to_vec(), c)));
        assert_eq!(s.pending(), 4);
        s.flush(&mut |l, c| out.push((l.to_vec(), c)));
        assert_eq!(texts(&out), ["done", "half"]);
    }

    #[test]
    fn log_text_escapes_controls_and_keeps_unicode() {
        assert_eq!(
            log_text("a\u{1b}[0m\u{0}b\\ é\t"),
            "a\\x1b[0m\\x00b\\\\ é\t"
        );
        assert_eq!(log_text("\u{fffd}"), "\u{fffd}");
    }

    #[test]
    fn iso_time_has_milliseconds() {
        assert_eq!(iso8601_utc(1_401_092_051_987), "2014-05-26T08:14:11.987Z");
        assert_eq!(iso8601_utc(0), "1970-01-01T00:00:00.000Z");
    }
}

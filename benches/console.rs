//! Console capture with pattern matching, side by side in one run with a plain reader
//! of the pseudo-terminal and with Python's `pexpect`, all on the same byte stream.
//!
//! A deterministic generator (fixed seed) makes a device console stream: timestamped
//! status lines of 55 to 225 bytes (76 on average), CR LF, and after every `K`-th one a
//! marker line `@@ MARK 000001`, `@@ MARK 000002`, …; once the stream has reached its
//! size, the end marker `@@ END <number of markers>`. Status lines never contain `@`.
//! For each column a fresh pseudo-terminal pair is opened (the slave set raw with
//! `cfmakeraw`), the consumer is started on the slave, and then a writer thread writes
//! the stream to the master in 64 KiB blocks as fast as the pseudo-terminal accepts
//! it. The time measured runs from just before the first write to the moment the
//! consumer has matched the end marker, having counted every marker:
//!
//! 1. **raw**: a thread `read()`s the slave in a loop (64 KiB buffer), counts the bytes
//!    and finds `\n@@ MARK ` / `\n@@ END ` with Aho-Corasick across read boundaries.
//!    The ceiling: nothing is stored, no line is split.
//! 2. **rig**: the rig's own console driver, `SerialConsole::open` on the slave path
//!    (its reader thread, line splitter, `console-bench.raw` and `console-bench.log`
//!    evidence files in a temporary directory, the in-memory event log), matched with
//!    its own pattern API: `expect_line(mark, ^@@ (MARK|END) (\d+)$)` in a loop on a
//!    current-thread Tokio runtime, each call starting after the previous match
//!    (`Mark(seq + 1)`), until the end marker. The driver offers no call that counts
//!    matches, so this is one wait per marker, as a test step would do it. A wait's
//!    pattern is tried on every line as the reader appends it, so a waiter that runs
//!    late misses nothing; a missing marker would be reported as an error. After the
//!    run the raw evidence
//!    file must hold exactly the bytes written (length and SHA-256 compared with the
//!    generated stream) and the line file and the event log one record per line
//!    written; if not, the bench fails.
//! 3. **pexpect**: `python3 benches/console_pexpect.py` opens the slave path, wraps it
//!    in `pexpect.fdpexpect.fdspawn` (bytes mode, `maxread` 4096 = the rig's read size,
//!    no `searchwindowsize` unless `CONSOLE_BENCH_PEXPECT_WINDOW` is set) and calls
//!    `expect(@@ (MARK|END) (\d+)\r\n)` until the end marker. The end of the run is
//!    when its result line reaches the bench. Without `python3` or the `pexpect` module
//!    the column is skipped with the reason (`pip install pexpect` enables it).
//!
//! The three columns run one after the other, and that in several rounds, so that the
//! load of a shared machine falls on all of them alike; the table gives each column's
//! median, lowest and highest throughput over the rounds, the ratios of the medians
//! and the ratios within each round. Every column must find every marker, in order,
//! in every round; a column that does not is reported as an error instead of a
//! figure, and the bench exits with a failure status. Throughput is in MB/s (10⁶
//! bytes per second); the median is the nearest-rank one. The stream is generated in
//! memory before the first column, so the writer does nothing but `write()`.
//!
//! Memory: how far the bench process's peak resident size (`VmHWM`, reset before each
//! column through `/proc/self/clear_refs`) rose above its size at the column's start,
//! which for raw and rig is what the consumer added (for pexpect only the writer runs
//! in the bench); and for pexpect the Python process's own peak (its `VmHWM`).
//!
//! `CONSOLE_BENCH_MIB` sets the stream size (default 64 MiB), `CONSOLE_BENCH_ROUNDS`
//! the rounds (default 3), `CONSOLE_BENCH_MARKER_EVERY` the status lines between
//! markers (default 1000), `CONSOLE_BENCH_PEXPECT_WINDOW` a `searchwindowsize` for
//! pexpect (default none, pexpect's default), and `CONSOLE_BENCH_COLUMNS` the columns
//! to run (default `raw,rig,pexpect`; one column alone is for profiling it, the others
//! are then printed as skipped). Arguments (`cargo bench` passes `--bench`) are
//! ignored. The figures are also written as JSON to `<target dir>/bench-console.json`.

mod support;
use aho_corasick::AhoCorasick;
use redrig::clock::Clock;
use redrig::drivers::console::SerialConsole;
use redrig::drivers::{Console, Mark};
use regex::Regex;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use support::{percentile, write_figures};

const SEED: u64 = 0x7265_6472_6967_c0de;
/// Bytes handed to one `write()` on the master.
const BLOCK: usize = 64 * 1024;
/// Longest wait for one column (wall time; the rig's wait is device time at scale 1).
const COLUMN_TIMEOUT: Duration = Duration::from_secs(900);
/// The marker pattern on one line, for the rig (matched against a record's text).
const RIG_PATTERN: &str = r"^@@ (MARK|END) (\d+)$";
/// The marker pattern on the byte stream, for pexpect (Python `re` syntax).
const PEXPECT_PATTERN: &str = r"@@ (MARK|END) (\d+)\r\n";
/// pexpect's read size: the rig's reader reads 4096 bytes at a time too.
const PEXPECT_MAXREAD: usize = 4096;
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/console_pexpect.py");

// ---------------------------------------------------------------------------------
// The stream

/// The console stream: deterministic for a given size and marker spacing.
struct Stream {
    rng: u64,
    target: u64,
    every: u64,
    /// Device uptime printed in the status lines, in milliseconds.
    uptime_ms: u64,
    status_lines: u64,
    markers: u64,
    bytes: u64,
    ended: bool,
}

impl Stream {
    fn new(target: u64, every: u64) -> Stream {
        Stream {
            rng: SEED,
            target,
            every,
            uptime_ms: 1_042,
            status_lines: 0,
            markers: 0,
            bytes: 0,
            ended: false,
        }
    }

    /// xorshift64*: cheap, deterministic.
    fn next(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Append whole lines to `out` until it holds at least `min` bytes or the stream
    /// has ended. False once the end marker has been written.
    fn fill(&mut self, out: &mut Vec<u8>, min: usize) -> bool {
        while out.len() < min {
            if self.ended {
                return false;
            }
            let start = out.len();
            if self.bytes >= self.target {
                let _ = write!(out, "@@ END {:06}\r\n", self.markers);
                self.ended = true;
            } else {
                self.status_line(out);
                self.status_lines += 1;
                if self.status_lines.is_multiple_of(self.every) {
                    self.markers += 1;
                    let _ = write!(out, "@@ MARK {:06}\r\n", self.markers);
                }
            }
            self.bytes += (out.len() - start) as u64;
        }
        !self.ended
    }

    /// Lines written so far (status lines, markers, the end marker).
    fn lines(&self) -> u64 {
        self.status_lines + self.markers + u64::from(self.ended)
    }

    fn status_line(&mut self, out: &mut Vec<u8>) {
        self.uptime_ms += 1 + self.below(40);
        let (s, ms) = (self.uptime_ms / 1000, self.uptime_ms % 1000);
        let _ = write!(out, "[{s:>6}.{ms:03}] ");
        let r = self.next();
        let a = (r >> 8) & 0xffff;
        let b = (r >> 24) & 0xff;
        let c = (r >> 32) & 0xffff_ffff;
        let _ = match r % 8 {
            0 => write!(
                out,
                "I/wifi: scan done, {} aps, best rssi -{} dBm ch {}",
                a % 24,
                40 + b % 50,
                1 + c % 13
            ),
            1 => write!(
                out,
                "D/gnss: fix 3d sats {} hdop {}.{} snr {} {} {}",
                4 + a % 12,
                b % 4,
                c % 10,
                20 + b % 25,
                18 + a % 27,
                15 + c % 30
            ),
            2 => write!(
                out,
                "I/batt: {} mV {}% charging={} temp {}.{}C",
                3400 + a % 800,
                b % 101,
                c % 2,
                20 + b % 20,
                c % 10
            ),
            3 => write!(
                out,
                "W/lte: rsrp -{} rsrq -{} sinr {} cell 0x{:06x} tac {} earfcn {}",
                70 + a % 50,
                3 + b % 17,
                c % 30,
                c & 0xff_ffff,
                a,
                c % 65_536
            ),
            4 => {
                // A hex dump of varying length: the long lines of the stream.
                let n = 4 + (a % 56) as usize;
                let _ = write!(
                    out,
                    "D/ble: adv {:02x}:{:02x}:{:02x} len {n} data",
                    b,
                    a & 0xff,
                    c & 0xff
                );
                for _ in 0..n {
                    let byte = self.below(256);
                    let _ = write!(out, " {byte:02x}");
                }
                Ok(())
            }
            5 => write!(
                out,
                "I/app: heartbeat seq {} uptime {}s free heap {} B",
                self.status_lines,
                s,
                20_000 + c % 60_000
            ),
            6 => write!(
                out,
                "E/sensor: i2c nack addr 0x{:02x} reg 0x{:02x} retry {}/3",
                b & 0x7f,
                a & 0xff,
                1 + c % 3
            ),
            _ => write!(
                out,
                "D/sched: task {} ran {} us, stack high water {} words",
                ["ui", "net", "gnss", "sensors", "power", "audio"][(a % 6) as usize],
                c % 20_000,
                64 + b
            ),
        };
        out.extend_from_slice(b"\r\n");
    }
}

/// The whole stream, generated once before the columns run (so the writer does no
/// work but `write()`), and what it holds.
struct StreamFacts {
    data: Arc<Vec<u8>>,
    bytes: u64,
    lines: u64,
    markers: u64,
    sha256: [u8; 32],
}

fn generate(target: u64, every: u64) -> StreamFacts {
    let mut s = Stream::new(target, every);
    let mut data = Vec::with_capacity(target as usize + 4096);
    while s.fill(&mut data, usize::MAX) {}
    let sha256 = Sha256::digest(&data).into();
    StreamFacts {
        bytes: data.len() as u64,
        lines: s.lines(),
        markers: s.markers,
        sha256,
        data: Arc::new(data),
    }
}

// ---------------------------------------------------------------------------------
// The writer and the pseudo-terminal

struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
    path: String,
}

fn open_pty() -> Result<Pty, String> {
    let pty = nix::pty::openpty(None, None).map_err(|e| format!("openpty: {e}"))?;
    let mut t =
        nix::sys::termios::tcgetattr(pty.slave.as_fd()).map_err(|e| format!("tcgetattr: {e}"))?;
    nix::sys::termios::cfmakeraw(&mut t);
    nix::sys::termios::tcsetattr(pty.slave.as_fd(), nix::sys::termios::SetArg::TCSANOW, &t)
        .map_err(|e| format!("tcsetattr: {e}"))?;
    let path = nix::unistd::ttyname(pty.slave.as_fd())
        .map_err(|e| format!("ttyname: {e}"))?
        .to_string_lossy()
        .into_owned();
    Ok(Pty {
        master: pty.master,
        slave: pty.slave,
        path,
    })
}

/// What the writer reports once everything is written: when it started, how many
/// bytes went out, and the master (kept open until the consumer is done: closing it
/// would hang up the slave).
struct Written {
    t0: Instant,
    bytes: u64,
    master: File,
    error: Option<String>,
}

fn start_writer(master: OwnedFd, stream: Arc<Vec<u8>>) -> mpsc::Receiver<Written> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut master = File::from(master);
        let t0 = Instant::now();
        let mut bytes = 0u64;
        let mut error = None;
        for block in stream.chunks(BLOCK) {
            if let Err(e) = master.write_all(block) {
                error = Some(format!("write to the master: {e}"));
                break;
            }
            bytes += block.len() as u64;
        }
        let _ = tx.send(Written {
            t0,
            bytes,
            master,
            error,
        });
    });
    rx
}

// ---------------------------------------------------------------------------------
// Columns

/// The outcome of one consumer.
struct Found {
    /// When the consumer matched the end marker.
    end: Instant,
    markers: u64,
    /// The number carried by the end marker.
    end_number: u64,
    /// Every marker's number followed the previous one.
    sequence_ok: bool,
    /// What the consumer can tell about markers it missed (empty if nothing).
    note: String,
}

struct Figures {
    secs: f64,
    mb_s: f64,
    markers: u64,
    memory: Memory,
    /// Column-specific facts for the JSON (and notes for the table).
    extra: serde_json::Value,
}

enum Column {
    Done(Figures),
    Skipped(String),
    Failed(String),
}

/// Peak resident memory during one column, in KiB.
#[derive(Clone, Copy, Default)]
struct Memory {
    /// The bench process's peak (`VmHWM`, reset at the column's start): the
    /// pre-generated stream, the writer and, for raw and rig, the consumer.
    bench_peak: Option<u64>,
    /// How far that peak rose above the resident size at the column's start.
    bench_growth: Option<u64>,
    /// The Python process's peak (pexpect only).
    python_peak: Option<u64>,
}

fn status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Reset the process's peak resident size (`VmHWM`) if the kernel allows it; the
/// resident size now, if it did.
fn rss_start() -> Option<u64> {
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    status_kib("VmRSS:")
}

fn rss_end(start: Option<u64>) -> Memory {
    let peak = start.and_then(|_| status_kib("VmHWM:"));
    Memory {
        bench_peak: peak,
        bench_growth: peak.zip(start).map(|(p, s)| p.saturating_sub(s)),
        python_peak: None,
    }
}

/// Check what a consumer found against the stream, then time it against the writer.
fn judge(
    found: Result<Found, String>,
    written: &mpsc::Receiver<Written>,
    facts: &StreamFacts,
    memory: Memory,
    extra: serde_json::Value,
) -> Column {
    let found = match found {
        Ok(f) => f,
        Err(e) => return Column::Failed(e),
    };
    let w = match written.recv_timeout(Duration::from_secs(30)) {
        Ok(w) => w,
        Err(_) => return Column::Failed("the writer did not finish".into()),
    };
    if let Some(e) = w.error {
        return Column::Failed(e);
    }
    if w.bytes != facts.bytes {
        return Column::Failed(format!("wrote {} of {} bytes", w.bytes, facts.bytes));
    }
    if found.markers != facts.markers || found.end_number != facts.markers || !found.sequence_ok {
        return Column::Failed(format!(
            "found {} of {} markers (end marker says {}, in sequence: {}){}",
            found.markers, facts.markers, found.end_number, found.sequence_ok, found.note
        ));
    }
    drop(w.master);
    let secs = (found.end - w.t0).as_secs_f64();
    Column::Done(Figures {
        secs,
        mb_s: facts.bytes as f64 / 1e6 / secs,
        markers: found.markers,
        memory,
        extra,
    })
}

/// Read the slave until every byte arrived; count markers across read boundaries.
fn raw_reader(slave: OwnedFd, total: u64) -> Result<Found, String> {
    let ac = AhoCorasick::new(["\n@@ MARK ", "\n@@ END "]).map_err(|e| e.to_string())?;
    let keep = ac.max_pattern_len() - 1;
    let mut window: Vec<u8> = Vec::with_capacity(BLOCK + keep);
    let (mut bytes, mut markers, mut ends) = (0u64, 0u64, 0u64);
    while bytes < total {
        let carry = window.len();
        window.resize(carry + BLOCK, 0);
        let n = match nix::unistd::read(slave.as_fd(), &mut window[carry..]) {
            Ok(0) => return Err(format!("end of file after {bytes} bytes")),
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => return Err(format!("read after {bytes} bytes: {e}")),
        };
        window.truncate(carry + n);
        bytes += n as u64;
        // Matches ending in the bytes just read (the earlier ones were counted).
        for m in ac.find_iter(&window[..]) {
            if m.end() > carry {
                match m.pattern().as_usize() {
                    0 => markers += 1,
                    _ => ends += 1,
                }
            }
        }
        let drop_to = window.len().saturating_sub(keep);
        window.drain(..drop_to);
    }
    let end = Instant::now();
    if ends != 1 {
        return Err(format!("saw the end marker {ends} times"));
    }
    Ok(Found {
        end,
        markers,
        // The raw reader does not parse numbers; the count stands for it.
        end_number: markers,
        sequence_ok: true,
        note: String::new(),
    })
}

fn run_raw(facts: &StreamFacts) -> Column {
    let pty = match open_pty() {
        Ok(p) => p,
        Err(e) => return Column::Failed(e),
    };
    let rss = rss_start();
    let (tx, rx) = mpsc::channel();
    let slave = pty.slave;
    let total = facts.bytes;
    std::thread::spawn(move || {
        let _ = tx.send(raw_reader(slave, total));
    });
    let written = start_writer(pty.master, facts.data.clone());
    let found = rx
        .recv_timeout(COLUMN_TIMEOUT)
        .unwrap_or_else(|_| Err("timed out".into()));
    let memory = rss_end(rss);
    judge(found, &written, facts, memory, serde_json::json!({}))
}

/// Length, SHA-256 and line count of an evidence file.
fn file_facts(path: &std::path::Path) -> std::io::Result<(u64, [u8; 32], u64)> {
    let mut f = File::open(path)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let (mut len, mut newlines) = (0u64, 0u64);
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        len += n as u64;
        newlines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        hash.update(&buf[..n]);
    }
    Ok((len, hash.finalize().into(), newlines))
}

fn run_rig(facts: &StreamFacts) -> Column {
    let pty = match open_pty() {
        Ok(p) => p,
        Err(e) => return Column::Failed(e),
    };
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return Column::Failed(format!("temporary evidence directory: {e}")),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return Column::Failed(format!("runtime: {e}")),
    };
    let re = Regex::new(RIG_PATTERN).expect("the marker pattern is valid");
    let rss = rss_start();
    let console =
        match SerialConsole::open("bench", &pty.path, 115_200, Clock::start(1.0), dir.path()) {
            Ok(c) => c,
            Err(e) => return Column::Failed(format!("open the console: {e}")),
        };
    drop(pty.slave); // the driver has its own descriptor
    let start = console.log().mark();
    let written = start_writer(pty.master, facts.data.clone());
    let found = rt.block_on(async {
        let (mut mark, mut markers, mut sequence_ok) = (start, 0u64, true);
        // Where the numbering first jumped, and records that had left the event log's
        // memory before a wait started at them (a lower bound on what it never saw).
        let (mut first_gap, mut unseen): (Option<(u64, Option<u64>, u64)>, u64) = (None, 0);
        loop {
            unseen += console.log().evicted_since(mark);
            let r = match console
                .expect_line(mark, &re, COLUMN_TIMEOUT.as_secs_f64())
                .await
            {
                Ok(Some(r)) => r,
                Ok(None) => return Err(format!("timed out after {markers} markers")),
                Err(e) => return Err(format!("after {markers} markers: {e}")),
            };
            mark = Mark(r.seq + 1);
            let (kind, number) = match re.captures(&r.value.text) {
                Some(c) => (
                    c.get(1).map(|m| m.as_str()).unwrap_or(""),
                    c.get(2).and_then(|m| m.as_str().parse::<u64>().ok()),
                ),
                None => ("", None),
            };
            if kind == "END" {
                let end = Instant::now();
                let note = match first_gap {
                    None => String::new(),
                    Some((want, got, seq)) => format!(
                        "; match {want} was marker {} (record {seq}); {unseen} records had \
                         left the event log's memory before a wait started at them (records \
                         that leave it during a wait are not visible from here)",
                        got.map(|n| n.to_string()).unwrap_or_else(|| "?".into())
                    ),
                };
                return Ok(Found {
                    end,
                    markers,
                    end_number: number.unwrap_or(u64::MAX),
                    sequence_ok,
                    note,
                });
            }
            markers += 1;
            if number != Some(markers) && first_gap.is_none() {
                first_gap = Some((markers, number, r.seq));
            }
            sequence_ok &= number == Some(markers);
        }
    });
    let memory = rss_end(rss);
    let records = console.log().mark().0 - start.0;
    drop(console);

    // The evidence: every byte written, and one record per line.
    let raw_path = dir.path().join("console-bench.raw");
    let log_path = dir.path().join("console-bench.log");
    let evidence =
        file_facts(&raw_path).and_then(|raw| file_facts(&log_path).map(|log| (raw, log)));
    let col = match evidence {
        // A consumer that did not get to the end says why first.
        _ if found.is_err() => judge(found, &written, facts, memory, serde_json::Value::Null),
        Err(e) => Column::Failed(format!("cannot read the evidence files: {e}")),
        Ok(((raw_len, raw_sha, _), (log_len, _, log_lines))) => {
            let extra = serde_json::json!({
                "raw_evidence_bytes": raw_len,
                "raw_evidence_sha256_equal": raw_sha == facts.sha256,
                "line_evidence_bytes": log_len,
                "line_evidence_records": log_lines,
                "event_log_records": records,
            });
            if raw_len != facts.bytes || raw_sha != facts.sha256 {
                Column::Failed(format!(
                    "EVIDENCE LOST: console-bench.raw holds {raw_len} bytes of the {} written{}",
                    facts.bytes,
                    if raw_len == facts.bytes {
                        " but they differ from the stream"
                    } else {
                        ""
                    }
                ))
            } else if log_lines != facts.lines || records != facts.lines {
                Column::Failed(format!(
                    "EVIDENCE LOST: {} lines written, {log_lines} records in console-bench.log, \
                     {records} in the event log",
                    facts.lines
                ))
            } else {
                judge(found, &written, facts, memory, extra)
            }
        }
    };
    drop(rt);
    if let Err(e) = dir.close() {
        eprintln!("cannot remove the temporary evidence directory: {e}");
    }
    col
}

/// Lines of the child's standard output, each with the instant it arrived.
fn line_reader(out: std::process::ChildStdout) -> mpsc::Receiver<(Instant, String)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send((Instant::now(), line)).is_err() {
                return;
            }
        }
    });
    rx
}

fn run_pexpect(facts: &StreamFacts, window: usize) -> Column {
    let pty = match open_pty() {
        Ok(p) => p,
        Err(e) => return Column::Failed(e),
    };
    let spawned = Command::new("python3")
        .arg(SCRIPT)
        .args(["--path", &pty.path, "--pattern", PEXPECT_PATTERN])
        .args(["--timeout", &COLUMN_TIMEOUT.as_secs().to_string()])
        .args(["--maxread", &PEXPECT_MAXREAD.to_string()])
        .args(["--window", &window.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Column::Skipped("python3 not found on the PATH".into())
        }
        Err(e) => return Column::Skipped(format!("cannot run python3: {e}")),
    };
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return Column::Failed("no standard output from python3".into());
    };
    let lines = line_reader(stdout);
    let stderr_of = |child: &mut std::process::Child| {
        let _ = child.kill();
        let _ = child.wait();
        let mut s = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s.lines().last().unwrap_or("").to_string()
    };
    let parse = |line: &str| serde_json::from_str::<serde_json::Value>(line).unwrap_or_default();

    // Ready (or skip): only then does the writer start.
    let ready = match lines.recv_timeout(Duration::from_secs(60)) {
        Ok((_, l)) => parse(&l),
        Err(_) => {
            let why = stderr_of(&mut child);
            return Column::Failed(format!("the pexpect script did not start: {why}"));
        }
    };
    if let Some(skip) = ready.get("skip").and_then(|s| s.as_str()) {
        let _ = child.wait();
        return Column::Skipped(skip.to_string());
    }
    if ready.get("ready") != Some(&serde_json::Value::Bool(true)) {
        let _ = stderr_of(&mut child);
        return Column::Failed(format!("the pexpect script said {ready}"));
    }
    let version = ready
        .get("pexpect")
        .and_then(|v| v.as_str())
        .unwrap_or("?")
        .to_string();
    drop(pty.slave); // the script has its own descriptor
    let rss = rss_start();
    let written = start_writer(pty.master, facts.data.clone());
    let found = match lines.recv_timeout(COLUMN_TIMEOUT) {
        Err(_) => Err(format!("no result: {}", stderr_of(&mut child))),
        Ok((at, l)) => {
            let v = parse(&l);
            let n = |k: &str| v.get(k).and_then(|x| x.as_u64());
            match (n("markers"), n("end")) {
                (Some(markers), Some(end_number)) => Ok((
                    Found {
                        end: at,
                        markers,
                        end_number,
                        sequence_ok: v.get("sequence_ok") == Some(&serde_json::Value::Bool(true)),
                        note: String::new(),
                    },
                    v,
                )),
                _ => Err(format!("the pexpect script said {l}")),
            }
        }
    };
    let _ = child.wait();
    let mut memory = rss_end(rss);
    match found {
        Err(e) => judge(Err(e), &written, facts, memory, serde_json::Value::Null),
        Ok((f, v)) => {
            let extra = serde_json::json!({
                "pexpect_version": version,
                "maxread": PEXPECT_MAXREAD,
                "searchwindowsize": if window == 0 { None } else { Some(window) },
                "script_elapsed_s": v.get("elapsed_s"),
            });
            memory.python_peak = v.get("maxrss_kib").and_then(|x| x.as_u64());
            judge(Ok(f), &written, facts, memory, extra)
        }
    }
}

// ---------------------------------------------------------------------------------

fn env_count(name: &str, default: usize, max: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .ok()
            .filter(|&n| n <= max)
            .unwrap_or_else(|| panic!("{name}={v:?}: expected a count from 0 to {max}")),
        Err(_) => default,
    }
}

fn first_line(path: &str, prefix: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with(prefix))
            .map(|l| l.split(':').nth(1).unwrap_or(l).trim().to_string())
    })
}

/// One column over all rounds: its figures, or why it was skipped or failed (a
/// column stops at its first failure).
enum Outcome {
    Done(Vec<Figures>),
    Skipped(String),
    Failed(String),
}

impl Outcome {
    fn add(&mut self, round: usize, c: Column) {
        match c {
            Column::Done(f) => {
                if let Outcome::Done(v) = self {
                    v.push(f);
                }
            }
            Column::Skipped(why) => *self = Outcome::Skipped(why),
            Column::Failed(e) => *self = Outcome::Failed(format!("round {round}: {e}")),
        }
    }

    fn rounds(&self) -> &[Figures] {
        match self {
            Outcome::Done(v) => v,
            _ => &[],
        }
    }

    /// Median, lowest and highest throughput (MB/s) and the median time (s).
    fn summary(&self) -> Option<(f64, f64, f64, f64)> {
        let v = self.rounds();
        if v.is_empty() {
            return None;
        }
        let mut mb: Vec<f64> = v.iter().map(|f| f.mb_s).collect();
        mb.sort_by(f64::total_cmp);
        let mut secs: Vec<f64> = v.iter().map(|f| f.secs).collect();
        secs.sort_by(f64::total_cmp);
        Some((
            percentile(&mb, 50.0),
            mb[0],
            mb[mb.len() - 1],
            percentile(&secs, 50.0),
        ))
    }

    /// The highest of a memory figure over the rounds.
    fn peak(&self, of: impl Fn(&Memory) -> Option<u64>) -> Option<u64> {
        self.rounds().iter().filter_map(|f| of(&f.memory)).max()
    }
}

fn main() {
    let mib = env_count("CONSOLE_BENCH_MIB", 64, 4096).max(1);
    let rounds = env_count("CONSOLE_BENCH_ROUNDS", 3, 1000).max(1);
    let every = env_count("CONSOLE_BENCH_MARKER_EVERY", 1000, 1_000_000).max(1) as u64;
    let window = env_count("CONSOLE_BENCH_PEXPECT_WINDOW", 0, 1 << 30);
    let target = mib as u64 * 1024 * 1024;
    let columns =
        std::env::var("CONSOLE_BENCH_COLUMNS").unwrap_or_else(|_| "raw,rig,pexpect".into());
    if let Some(bad) = columns
        .split(',')
        .map(str::trim)
        .find(|c| !["raw", "rig", "pexpect"].contains(c))
    {
        panic!("CONSOLE_BENCH_COLUMNS={columns:?}: unknown column {bad:?} (raw, rig, pexpect)");
    }
    let start = |name: &str| {
        if columns.split(',').any(|c| c.trim() == name) {
            Outcome::Done(Vec::new())
        } else {
            Outcome::Skipped("not in CONSOLE_BENCH_COLUMNS".into())
        }
    };

    let cpu = first_line("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());

    let facts = generate(target, every);
    println!(
        "Console capture with pattern matching over a pseudo-terminal: {mib} MiB ({:.1} MB), \
         {} lines, {} markers (one every {every} status lines), {rounds} rounds of raw, rig, \
         pexpect",
        facts.bytes as f64 / 1e6,
        facts.lines,
        facts.markers
    );
    println!("  machine: {cpu}, {cores} cores, load average (1 min) {load} at start");

    let (mut raw, mut rig, mut pexpect) = (start("raw"), start("rig"), start("pexpect"));
    for round in 1..=rounds {
        if matches!(raw, Outcome::Done(_)) {
            raw.add(round, run_raw(&facts));
        }
        if matches!(rig, Outcome::Done(_)) {
            rig.add(round, run_rig(&facts));
        }
        if matches!(pexpect, Outcome::Done(_)) {
            pexpect.add(round, run_pexpect(&facts, window));
        }
    }

    let cols = [("raw", &raw), ("rig", &rig), ("pexpect", &pexpect)];
    let mut head = format!("  {:<28}", "");
    for (name, _) in &cols {
        head.push_str(&format!(" {name:>13}"));
    }
    println!("{head}");
    let row = |label: &str, f: &dyn Fn(&Outcome) -> String| {
        let mut line = format!("  {label:<28}");
        for (_, c) in &cols {
            let cell = match c {
                Outcome::Done(_) => f(c),
                Outcome::Skipped(_) => "skipped".into(),
                Outcome::Failed(_) => "ERROR".into(),
            };
            line.push_str(&format!(" {cell:>13}"));
        }
        println!("{line}");
    };
    let sum = |c: &Outcome| {
        c.summary()
            .unwrap_or((f64::NAN, f64::NAN, f64::NAN, f64::NAN))
    };
    row("throughput, median (MB/s)", &|c| format!("{:.1}", sum(c).0));
    row("throughput, min-max (MB/s)", &|c| {
        format!("{:.1}-{:.1}", sum(c).1, sum(c).2)
    });
    row("time, median (s)", &|c| format!("{:.2}", sum(c).3));
    row("markers found, every round", &|_| {
        format!("{}/{}", facts.markers, facts.markers)
    });
    let mib_of = |k: Option<u64>| {
        k.map(|k| format!("{:.1}", k as f64 / 1024.0))
            .unwrap_or_else(|| "-".into())
    };
    row("bench peak RSS rise (MiB)", &|c| {
        mib_of(c.peak(|m| m.bench_growth))
    });
    row("python peak RSS (MiB)", &|c| {
        mib_of(c.peak(|m| m.python_peak))
    });
    let median = |c: &Outcome| c.summary().map(|s| s.0);
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
    let rig_raw = ratio(median(&rig), median(&raw));
    let rig_pexpect = ratio(median(&rig), median(&pexpect));
    let per_round = |other: &Outcome| -> Vec<f64> {
        rig.rounds()
            .iter()
            .zip(other.rounds())
            .map(|(r, o)| r.mb_s / o.mb_s)
            .collect()
    };
    let (rounds_raw, rounds_pexpect) = (per_round(&raw), per_round(&pexpect));
    let show = |r: Option<f64>| r.map(|r| format!("{r:.2}x")).unwrap_or_else(|| "-".into());
    let list = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "  throughput ratio of medians: rig/raw {}, rig/pexpect {}",
        show(rig_raw),
        show(rig_pexpect)
    );
    println!(
        "  the same ratios round by round: rig/raw [{}], rig/pexpect [{}]",
        list(&rounds_raw),
        list(&rounds_pexpect)
    );
    println!(
        "  (bench peak RSS rise: the highest rise over the rounds of the bench's peak resident \
         size above its size at the column's start, which holds the pre-generated stream; for \
         pexpect only the writer runs in the bench)"
    );
    if let Some(f) = rig.rounds().last() {
        println!(
            "  rig evidence, every round: console-bench.raw {} bytes = every byte written \
             (SHA-256 equal), console-bench.log {} records = lines written",
            f.extra["raw_evidence_bytes"], f.extra["line_evidence_records"]
        );
    }
    let mut failed = false;
    for (name, c) in &cols {
        match c {
            Outcome::Skipped(why) => println!("  {name}: skipped: {why}"),
            Outcome::Failed(why) => {
                failed = true;
                println!("  {name}: ERROR: {why}");
            }
            Outcome::Done(_) => {}
        }
    }

    let json = |c: &Outcome| match c {
        Outcome::Done(v) => {
            let (median, min, max, secs) = sum(c);
            serde_json::json!({
                "throughput_mb_s_median": median,
                "throughput_mb_s_min": min,
                "throughput_mb_s_max": max,
                "seconds_median": secs,
                "rounds": v.iter().map(|f| serde_json::json!({
                    "seconds": f.secs,
                    "throughput_mb_s": f.mb_s,
                    "markers_found": f.markers,
                    "bench_peak_rss_kib": f.memory.bench_peak,
                    "bench_peak_rss_rise_kib": f.memory.bench_growth,
                    "python_peak_rss_kib": f.memory.python_peak,
                    "details": f.extra,
                })).collect::<Vec<_>>(),
            })
        }
        Outcome::Skipped(why) => serde_json::json!({ "skipped": why }),
        Outcome::Failed(why) => serde_json::json!({ "error": why }),
    };
    let report = serde_json::json!({
        "stream": {
            "mib": mib,
            "bytes": facts.bytes,
            "lines": facts.lines,
            "markers": facts.markers,
            "marker_every": every,
            "seed": format!("{SEED:#x}"),
            "sha256": hex::encode(facts.sha256),
        },
        "rounds": rounds,
        "patterns": { "rig": RIG_PATTERN, "pexpect": PEXPECT_PATTERN },
        "machine": { "cpu": cpu, "cores": cores, "load_1min_at_start": load },
        "raw": json(&raw),
        "rig": json(&rig),
        "pexpect": json(&pexpect),
        "ratio_rig_raw_of_medians": rig_raw,
        "ratio_rig_pexpect_of_medians": rig_pexpect,
        "ratio_rig_raw_by_round": rounds_raw,
        "ratio_rig_pexpect_by_round": rounds_pexpect,
    });
    write_figures("bench-console.json", &report);
    if failed {
        eprintln!("console bench FAILED: a column did not see every marker or lost evidence");
        std::process::exit(1);
    }
}

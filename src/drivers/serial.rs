//! A serial line: a real UART or USB adapter, or the slave side of a pseudo-terminal
//! in the virtual lab, opened the same way (`serialport`'s `TTYPort`, raw 8N1).
//!
//! One dedicated thread reads the line and hands every chunk to a callback as it
//! arrives; [`SerialWriter`] handles (cloneable) write with an overall deadline.
//! Nothing here blocks an async runtime worker: reading runs on its own thread,
//! and [`SerialWriter::write`] moves the blocking write to `spawn_blocking`.
//!
//! When the port goes away (EIO or hang-up: adapter unplugged, simulator gone) the
//! reader first drains whatever the kernel still buffers, delivers it, then reports
//! [`ReadEvent::Closed`] and marks the line *lost*; while it is lost, writes and
//! waiters get a [`RigError::Instrument`]. The reader then tries to open the same path
//! again every [`REOPEN_PERIOD`] (a USB adapter plugged in again under its stable
//! `/dev/serial/by-id/…` link, a simulator's line plugged in again or a restarted
//! simulator's link); when it succeeds it reports [`ReadEvent::Reopened`] and the line
//! is usable again. Every loss is counted ([`LineStatus::losses`]): a scenario during
//! which a line was lost cannot have a trustworthy verdict, however it ended. A path
//! that names a kernel device directly (`/dev/ttyUSB0`) may come back under another
//! name after a replug: a port configured by a `usb:` selector is resolved anew on
//! every attempt, one named by a kernel node is not. While the line is lost the rig
//! holds no descriptor of the old port (so the kernel can give the adapter its old
//! number back).

use crate::error::{RigError, RigResult};
use serialport::TTYPort;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Per-`read()` timeout of the reader thread: how soon it notices it should stop.
const READ_SLICE: Duration = Duration::from_millis(50);
/// Size of one read.
const READ_CHUNK: usize = 4096;
/// Upper bound on what is drained from the kernel after a hang-up.
const DRAIN_LIMIT: usize = 1 << 20;
/// How often a lost line is opened again (wall time).
pub const REOPEN_PERIOD: Duration = Duration::from_millis(200);
/// Default overall deadline of one write (wall time).
pub const DEFAULT_WRITE_DEADLINE: Duration = Duration::from_secs(5);

/// Lock a mutex, recovering the data if another thread panicked while holding it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the reader thread hands to its callback.
#[derive(Debug)]
pub enum ReadEvent<'a> {
    /// Bytes as received, in order.
    Data(&'a [u8]),
    /// The port is gone; nothing follows until [`ReadEvent::Reopened`].
    Closed(&'a RigError),
    /// The port was opened again after a [`ReadEvent::Closed`].
    Reopened,
}

/// Health of a line, shared by its reader, writers and whoever waits on it.
#[derive(Clone)]
pub struct LineStatus {
    inner: Arc<StatusInner>,
}

struct StatusInner {
    instrument: String,
    /// A failure for good (evidence that cannot be written, a reader that panicked).
    failure: Mutex<Option<String>>,
    /// The port is gone for now; the reader is trying to open it again.
    lost: Mutex<Option<String>>,
    losses: std::sync::atomic::AtomicU64,
    failed: watch::Sender<bool>,
}

impl LineStatus {
    fn new(instrument: &str) -> LineStatus {
        let (failed, _) = watch::channel(false);
        LineStatus {
            inner: Arc::new(StatusInner {
                instrument: instrument.to_string(),
                failure: Mutex::new(None),
                lost: Mutex::new(None),
                losses: std::sync::atomic::AtomicU64::new(0),
                failed,
            }),
        }
    }

    /// Name used in errors (the port path).
    pub fn instrument(&self) -> &str {
        &self.inner.instrument
    }

    /// Mark the line failed (the first failure is kept).
    pub fn fail(&self, detail: impl std::fmt::Display) {
        {
            let mut f = lock(&self.inner.failure);
            if f.is_none() {
                *f = Some(detail.to_string());
            }
        }
        self.inner.failed.send_replace(true);
    }

    /// Mark the line lost (the port went away; it may come back). Counted once per
    /// loss, however often it is reported.
    pub fn lose(&self, detail: impl std::fmt::Display) {
        {
            let mut lost = lock(&self.inner.lost);
            if lost.is_none() {
                self.inner.losses.fetch_add(1, Ordering::SeqCst);
            }
            *lost = Some(detail.to_string());
        }
        self.inner.failed.send_replace(true);
    }

    /// Whether the line is lost now (not failed for good).
    pub fn is_lost(&self) -> bool {
        lock(&self.inner.lost).is_some()
    }

    /// Wait until the line is lost (`true`) or back (`false`).
    pub async fn wait_lost(&self, lost: bool) {
        let mut rx = self.inner.failed.subscribe();
        while self.is_lost() != lost {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// The port is back: clear the loss (not a failure for good).
    pub fn restore(&self) {
        *lock(&self.inner.lost) = None;
        if lock(&self.inner.failure).is_none() {
            self.inner.failed.send_replace(false);
        }
    }

    /// How many times the port went away since the line was opened.
    pub fn losses(&self) -> u64 {
        self.inner.losses.load(Ordering::SeqCst)
    }

    /// The failure, if the line has failed or is lost now.
    pub fn error(&self) -> Option<RigError> {
        let d = lock(&self.inner.failure)
            .clone()
            .or_else(|| lock(&self.inner.lost).clone());
        d.map(|d| RigError::instrument(&self.inner.instrument, d))
    }

    /// Wait until the line fails or is lost.
    pub async fn failed(&self) -> RigError {
        let mut rx = self.inner.failed.subscribe();
        loop {
            if let Some(e) = self.error() {
                return e;
            }
            if rx.changed().await.is_err() {
                // The sender lives in `self`; this cannot happen while we hold it.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The writing side of a line. Clones share the port and serialise writes.
#[derive(Clone)]
pub struct SerialWriter {
    /// `None` while the line is lost.
    port: Arc<Mutex<Option<TTYPort>>>,
    status: LineStatus,
}

impl SerialWriter {
    /// Write every byte or fail; blocks the calling thread for at most `deadline`.
    /// A peer that stops reading makes this return an instrument error after the
    /// deadline (with the count of bytes that went out) without failing the line;
    /// a port that is gone fails the line.
    pub fn write_blocking(&self, bytes: &[u8], deadline: Duration) -> RigResult<()> {
        if let Some(e) = self.status.error() {
            return Err(e);
        }
        let end = Instant::now() + deadline;
        let mut guard = lock(&self.port);
        let Some(port) = guard.as_mut() else {
            return Err(RigError::instrument(
                self.status.instrument(),
                "the port is gone (waiting for it to come back)",
            ));
        };
        let mut done = 0;
        while done < bytes.len() {
            match port.write(&bytes[done..]) {
                // A port that is gone is noticed (and reopened) by the reader; the
                // writer only reports.
                Ok(0) => {
                    return Err(RigError::instrument(
                        self.status.instrument(),
                        "write returned 0 bytes",
                    ));
                }
                Ok(n) => done += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::TimedOut | ErrorKind::WouldBlock | ErrorKind::Interrupted
                    ) =>
                {
                    if Instant::now() >= end {
                        return Err(RigError::instrument(
                            self.status.instrument(),
                            format!(
                                "write stalled: {done} of {} bytes accepted within {deadline:?}",
                                bytes.len()
                            ),
                        ));
                    }
                    // The peer is not reading: do not spin while it catches up.
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => {
                    return Err(RigError::instrument(
                        self.status.instrument(),
                        format!("write failed: {e}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Write from async code (the blocking write runs on `spawn_blocking`).
    pub async fn write(&self, bytes: Vec<u8>) -> RigResult<()> {
        let w = self.clone();
        tokio::task::spawn_blocking(move || w.write_blocking(&bytes, DEFAULT_WRITE_DEADLINE))
            .await
            .map_err(|e| RigError::Other(format!("serial write task: {e}")))?
    }

    pub fn status(&self) -> &LineStatus {
        &self.status
    }
}

/// An open serial line. Dropping it stops the reader thread (within one read slice).
pub struct SerialLine {
    path: String,
    baud: u32,
    status: LineStatus,
    writer: SerialWriter,
    reader: Mutex<Option<TTYPort>>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl SerialLine {
    /// Open `path` at `baud`, 8N1, raw, no flow control, exclusive (a second opener
    /// gets EBUSY, as another program holding a bench adapter would).
    pub fn open(path: &str, baud: u32) -> RigResult<SerialLine> {
        let (port, reader) = open_port(path, baud)?;
        let status = LineStatus::new(path);
        Ok(SerialLine {
            path: path.to_string(),
            baud,
            writer: SerialWriter {
                port: Arc::new(Mutex::new(Some(port))),
                status: status.clone(),
            },
            status,
            reader: Mutex::new(Some(reader)),
            stop: Arc::new(AtomicBool::new(false)),
            thread: Mutex::new(None),
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn writer(&self) -> SerialWriter {
        self.writer.clone()
    }

    pub fn status(&self) -> LineStatus {
        self.status.clone()
    }

    /// Start the reader thread; `on_event` runs on it for every chunk received, once
    /// each time the port goes away and once each time it is opened again. Call once.
    pub fn start_reader<F>(&self, on_event: F) -> RigResult<()>
    where
        F: FnMut(ReadEvent<'_>) + Send + 'static,
    {
        let port = lock(&self.reader)
            .take()
            .ok_or_else(|| RigError::Other(format!("{}: reader already started", self.path)))?;
        let stop = self.stop.clone();
        let status = self.status.clone();
        let name = format!("serial {}", self.path);
        let reopen = Reopen {
            path: self.path.clone(),
            baud: self.baud,
            writer_port: self.writer.port.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || reader_thread(port, stop, status, reopen, on_event))
            .map_err(|e| RigError::instrument(&self.path, format!("reader thread: {e}")))?;
        *lock(&self.thread) = Some(handle);
        Ok(())
    }

    /// Stop the reader and wait for its thread (blocking: one read slice or one
    /// reopen period, plus the callback in progress, which may wait for a write in
    /// progress on the same line, at most its deadline). Not for async code; dropping also stops it.
    pub fn close(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = lock(&self.thread).take() {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

impl Drop for SerialLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Open `path` at `baud`, 8N1, raw, non-blocking; the port and a clone for reading.
fn open_port(path: &str, baud: u32) -> RigResult<(TTYPort, TTYPort)> {
    let port = serialport::new(path, baud)
        .data_bits(serialport::DataBits::Eight)
        .parity(serialport::Parity::None)
        .stop_bits(serialport::StopBits::One)
        .flow_control(serialport::FlowControl::None)
        .timeout(READ_SLICE)
        .open_native()
        .map_err(|e| RigError::instrument(path, format!("open at {baud} baud: {e}")))?;
    // Non-blocking descriptor: `write` returns what fits instead of blocking past
    // the deadline when the peer stops reading (reads are preceded by a poll).
    // SAFETY: the descriptor belongs to `port`, which outlives this borrow.
    let fd = unsafe { BorrowedFd::borrow_raw(port.as_raw_fd()) };
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .map_err(|e| RigError::instrument(path, format!("set non-blocking: {e}")))?;
    let reader = port
        .try_clone_native()
        .map_err(|e| RigError::instrument(path, format!("clone: {e}")))?;
    Ok((port, reader))
}

/// What the reader needs to open a lost port again.
struct Reopen {
    path: String,
    baud: u32,
    writer_port: Arc<Mutex<Option<TTYPort>>>,
}

fn reader_thread<F>(
    port: TTYPort,
    stop: Arc<AtomicBool>,
    status: LineStatus,
    reopen: Reopen,
    mut on_event: F,
) where
    F: FnMut(ReadEvent<'_>),
{
    let run = std::panic::AssertUnwindSafe(|| {
        let mut buf = vec![0u8; READ_CHUNK];
        let mut port = port;
        loop {
            let failure = loop {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                match port.read(&mut buf) {
                    Ok(0) => break "end of file (port closed)".to_string(),
                    Ok(n) => on_event(ReadEvent::Data(&buf[..n])),
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::TimedOut | ErrorKind::WouldBlock | ErrorKind::Interrupted
                        ) => {}
                    Err(e) => break format!("read failed: {e}"),
                }
            };
            // Deliver what the kernel still holds: a device that prints its last words
            // and dies leaves them readable after the hang-up.
            drain(&port, &mut buf, &mut on_event);
            let err = RigError::instrument(status.instrument(), &failure);
            // The consumer records what it still holds (a last line without its end)
            // before anyone waiting on the line hears that it is lost.
            on_event(ReadEvent::Closed(&err));
            status.lose(&failure);
            // Hold nothing of the old port while it is gone.
            drop(port);
            *lock(&reopen.writer_port) = None;
            // Open it again (a selector resolved anew) until it is back or the line
            // is closed.
            port = loop {
                std::thread::sleep(REOPEN_PERIOD);
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(node) = crate::ports::reresolve(&reopen.path) else {
                    continue;
                };
                if let Ok((w, r)) = open_port(&node, reopen.baud) {
                    *lock(&reopen.writer_port) = Some(w);
                    break r;
                }
            };
            status.restore();
            on_event(ReadEvent::Reopened);
        }
    });
    if std::panic::catch_unwind(run).is_err() {
        status.fail("reader thread panicked");
    }
}

fn drain<F: FnMut(ReadEvent<'_>)>(port: &TTYPort, buf: &mut [u8], on_event: &mut F) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    // SAFETY: the descriptor belongs to `port`, borrowed for this function only.
    let fd = unsafe { BorrowedFd::borrow_raw(port.as_raw_fd()) };
    let mut total = 0;
    while total < DRAIN_LIMIT {
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(1)
                if fds[0]
                    .revents()
                    .is_some_and(|r| r.contains(PollFlags::POLLIN)) => {}
            _ => return,
        }
        match nix::unistd::read(fd, buf) {
            Ok(n) if n > 0 => {
                total += n;
                on_event(ReadEvent::Data(&buf[..n]));
            }
            _ => return,
        }
    }
}

/// Bytes as readable ASCII: printable characters as they are, `\\`, `\r`, `\n`,
/// `\t`, and `\xHH` for everything else. Reversible; one output line per input.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => s.push_str("\\\\"),
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_is_printable_and_complete() {
        let all: Vec<u8> = (0..=255).collect();
        let e = escape_bytes(&all);
        assert!(e.bytes().all(|b| (0x20..=0x7e).contains(&b)));
        assert_eq!(escape_bytes(b"AT\r\n\x1a\\"), "AT\\r\\n\\x1a\\\\");
    }

    #[test]
    fn opening_a_missing_port_is_an_instrument_error() {
        match SerialLine::open("/dev/redrig-no-such-port", 115_200) {
            Err(RigError::Instrument { instrument, .. }) => {
                assert_eq!(instrument, "/dev/redrig-no-such-port")
            }
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("opened a missing port"),
        }
    }
}

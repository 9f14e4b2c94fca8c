//! Test support shared by the integration tests that drive serial instruments.
//!
//! [`PtyDevice`] is the device side of a pseudo-terminal: the driver under test opens
//! the slave (as it would a UART), and a thread collects everything it writes on the
//! master side, optionally relaying it to another descriptor.

// Each test crate uses a different part of this module.
#![allow(dead_code)]

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The device side of a pseudo-terminal.
pub struct PtyDevice {
    pub path: String,
    /// Kept open for the life of the device (the reader thread has a clone).
    master: Option<Arc<OwnedFd>>,
    /// Held until the driver has opened the slave, so the master never sees a hang-up.
    slave: Option<OwnedFd>,
    rx: Arc<(Mutex<Vec<u8>>, Condvar)>,
    cursor: usize,
    stop: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// Bytes that did not fit into the relay target (it was not being read).
    relay_dropped: Arc<AtomicU64>,
    /// How long waits may take (wall time) before the test fails.
    wall: Duration,
}

impl PtyDevice {
    pub fn new(wall: Duration) -> PtyDevice {
        PtyDevice::relaying_to(None, wall)
    }

    /// A pty whose received bytes are also written to `relay` (a non-blocking
    /// descriptor; what does not fit is dropped and counted, never waited for).
    pub fn relaying_to(relay: Option<Arc<OwnedFd>>, wall: Duration) -> PtyDevice {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let path = nix::unistd::ttyname(pty.slave.as_fd())
            .expect("ttyname")
            .to_string_lossy()
            .into_owned();
        let master = Arc::new(pty.master);
        let rx = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let relay_dropped = Arc::new(AtomicU64::new(0));
        let (m, r, s, dropped) = (
            master.clone(),
            rx.clone(),
            stop.clone(),
            relay_dropped.clone(),
        );
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while !s.load(Ordering::SeqCst) {
                let mut fds = [PollFd::new(m.as_fd(), PollFlags::POLLIN)];
                if poll(&mut fds, PollTimeout::from(20u8)).unwrap_or(0) == 0 {
                    continue;
                }
                let revents = fds[0].revents().unwrap_or(PollFlags::empty());
                if !revents.contains(PollFlags::POLLIN) {
                    // No slave open at the moment: back off instead of spinning.
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                match nix::unistd::read(m.as_fd(), &mut buf) {
                    Ok(n) if n > 0 => {
                        if let Some(out) = &relay {
                            let mut done = 0;
                            while done < n {
                                match nix::unistd::write(out.as_fd(), &buf[done..n]) {
                                    Ok(k) if k > 0 => done += k,
                                    _ => break,
                                }
                            }
                            dropped.fetch_add((n - done) as u64, Ordering::Relaxed);
                        }
                        r.0.lock().unwrap().extend_from_slice(&buf[..n]);
                        r.1.notify_all();
                    }
                    _ => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        PtyDevice {
            path,
            master: Some(master),
            slave: Some(pty.slave),
            rx,
            cursor: 0,
            stop,
            reader: Some(reader),
            relay_dropped,
            wall,
        }
    }

    /// The driver has opened the slave: the device keeps only the master, as the
    /// virtual lab's watch does.
    pub fn release_slave(&mut self) {
        self.slave = None;
    }

    /// Send bytes to the driver.
    pub fn write(&self, bytes: &[u8]) {
        let m = self.master.as_ref().expect("master open");
        let mut done = 0;
        while done < bytes.len() {
            done += nix::unistd::write(m.as_fd(), &bytes[done..]).expect("write to master");
        }
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<u8> {
        self.rx.0.lock().unwrap().clone()
    }

    /// Bytes the relay target could not take.
    pub fn relay_dropped(&self) -> u64 {
        self.relay_dropped.load(Ordering::Relaxed)
    }

    /// Wait until what has been received satisfies `cond`; returns all of it.
    pub fn wait_for(&self, what: &str, mut cond: impl FnMut(&[u8]) -> bool) -> Vec<u8> {
        let deadline = Instant::now() + self.wall;
        let (lock, cv) = &*self.rx;
        let mut buf = lock.lock().unwrap();
        loop {
            if cond(&buf) {
                return buf.clone();
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "timed out waiting for {what}; last bytes: {:?}",
                String::from_utf8_lossy(&buf[buf.len().saturating_sub(300)..])
            );
            buf = cv.wait_timeout(buf, deadline - now).unwrap().0;
        }
    }

    /// Wait until at least `n` bytes have been received in total.
    pub fn wait_len(&self, n: usize) -> Vec<u8> {
        self.wait_for(&format!("{n} bytes"), |b| b.len() >= n)
    }

    /// Wait until `needle` arrives after the cursor; return everything up to and
    /// including it and move the cursor past it.
    pub fn expect(&mut self, needle: &str) -> String {
        let from = self.cursor;
        let buf = self.wait_for(&format!("{needle:?}"), |b| {
            find(&b[from.min(b.len())..], needle.as_bytes()).is_some()
        });
        let i = find(&buf[from..], needle.as_bytes()).expect("found above");
        let end = from + i + needle.len();
        self.cursor = end;
        String::from_utf8_lossy(&buf[from..end]).into_owned()
    }

    /// The device disappears: the master side is closed.
    pub fn close_master(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.reader.take() {
            h.join().unwrap();
        }
        let m = self.master.take().unwrap();
        drop(Arc::try_unwrap(m).expect("sole owner of the master"));
    }
}

impl Drop for PtyDevice {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
    }
}

/// Where `needle` first occurs in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

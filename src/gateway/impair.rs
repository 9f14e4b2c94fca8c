//! Network impairments in user space: latency, jitter, loss, a bandwidth cap and a
//! full outage, per direction of a relayed connection.
//!
//! The kernel of a test machine often has no `netem`, so the gateway shapes the bytes
//! it relays itself. Every figure is in **device time** (the rig's [`Clock`]): a
//! latency of 500 ms is 500 device milliseconds, which is 25 wall milliseconds on a
//! virtual lab running at scale 20. Conversions go through [`Clock::wall`].
//!
//! # The timing model ([`Shaper`])
//!
//! The unit is a *chunk*: whatever one read on the relay returned (the gateway reads
//! at most 16 KiB at a time). For a chunk of `len` bytes arriving at wall instant `a`:
//!
//! 1. **Bandwidth** (serialization). The link sends one chunk at a time. It starts on
//!    this chunk at `s = max(a, link_free)` and has sent it at
//!    `sent = s + len × 8 / bandwidth_bps`; `link_free` becomes `sent`. Without a cap,
//!    `sent = a`.
//! 2. **Loss.** On a *datagram* line a chunk is dropped with probability `loss` (a
//!    dropped chunk has still used the link: it was sent and lost on the way). On a
//!    *reliable* line (TCP) nothing is ever dropped; a loss is what TCP makes of it, a
//!    retransmission: the chunk is late by one retransmission timeout
//!    `RTO = max(200 ms, 2 × latency)` device time, and the retransmission is lost
//!    again with probability `loss`, at most [`MAX_RETRANSMISSIONS`] times. The RTO
//!    does not back off exponentially, and the model does not slow the sender down
//!    (no congestion window): it delays bytes, it does not simulate TCP.
//! 3. **Latency and jitter.** The chunk is delivered `latency + u` after `sent`, `u`
//!    uniform in `[-jitter, +jitter]`, the sum never below zero.
//! 4. **Order.** On a reliable line a chunk is never delivered before the previous
//!    one (`delivery ≥ previous delivery`), so jitter and retransmissions delay a
//!    stream but never reorder it — a late chunk holds back the ones behind it, as
//!    head-of-line blocking does in TCP. Datagrams may be reordered by jitter.
//!
//! The random draws come from a seeded generator (splitmix64), so a given seed and
//! sequence of arrivals give the same deliveries every time. With no impairment set
//! the shaper makes no draws and delivers at arrival (reliable: no earlier than the
//! previous chunk).
//!
//! # Outage and changes
//!
//! An [`ImpairmentControl`] is the changeable setting of one direction (shared by
//! every flow that direction belongs to). A change applies to the chunks arriving
//! from then on: chunks already queued keep the delivery time computed on their
//! arrival. An outage applies at once: while it is on, the delay line delivers
//! nothing (chunks keep arriving and queue until the memory bound stops the sender);
//! when it ends, everything already due is released at once, in order.
//!
//! # The delay line ([`delay_line`])
//!
//! Placed between reading a chunk (and recording it as evidence) and writing it to the
//! other side: [`DelayTx::send`] stamps the chunk's arrival, asks the shaper when it
//! is due and queues it; [`DelayRx::recv`] returns each chunk at its delivery time.
//! Memory is bounded: `send` waits while `max_bytes_in_flight` bytes (each chunk
//! counted with [`ENTRY_OVERHEAD`] bytes more) are queued, which stalls the reader and
//! so, through TCP flow control, the sender. With no impairment set a chunk is
//! returned as soon as it is queued, without any timer.
//!
//! Not implemented: per-flow settings (one setting per direction for all flows),
//! duplication and corruption, and a link that keeps a queue of its own apart from
//! the memory bound (a bandwidth cap makes chunks wait in the delay line's queue).

use crate::clock::Clock;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// Largest latency and jitter accepted, device milliseconds (ten minutes).
pub const MAX_DELAY_MS: f64 = 600_000.0;
/// Retransmissions of one chunk on a reliable line, at most.
pub const MAX_RETRANSMISSIONS: u32 = 6;
/// Smallest retransmission timeout, device milliseconds.
pub const MIN_RTO_MS: f64 = 200.0;
/// Bytes each queued chunk is counted for besides its payload (so that many tiny
/// chunks cannot exceed the memory bound).
pub const ENTRY_OVERHEAD: usize = 64;
/// Longest wall time a single delivery is put off (guards the instant arithmetic).
const MAX_WALL_SECS: f64 = 1e9;

/// The impairment of one direction. All times are device milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Impairment {
    /// One-way delay added to every chunk.
    pub latency_ms: f64,
    /// The delay varies uniformly within `latency ± jitter` (never below zero).
    pub jitter_ms: f64,
    /// Probability in `0..=1` that a chunk is lost (a datagram is dropped; a stream
    /// chunk is retransmitted, i.e. late).
    pub loss: f64,
    /// Link rate in bits per device second; `None`: no cap.
    pub bandwidth_bps: Option<u64>,
    /// Nothing gets through while set; queued bytes are released when it ends.
    pub outage: bool,
}

impl Impairment {
    /// Check the figures: latency and jitter finite, in `0..=`[`MAX_DELAY_MS`]; loss
    /// in `0..=1`; a bandwidth cap above zero.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [("latency", self.latency_ms), ("jitter", self.jitter_ms)] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("{name} {v} ms: expected a number ≥ 0"));
            }
            if v > MAX_DELAY_MS {
                return Err(format!("{name} {v} ms: at most {MAX_DELAY_MS} ms"));
            }
        }
        if !(0.0..=1.0).contains(&self.loss) {
            return Err(format!(
                "loss {}: expected a probability between 0 and 1",
                self.loss
            ));
        }
        if self.bandwidth_bps == Some(0) {
            return Err("bandwidth 0 bit/s: use an outage to stop all traffic".into());
        }
        Ok(())
    }

    /// True when nothing is impaired (no delay, no loss, no cap, no outage).
    pub fn is_none(&self) -> bool {
        !self.outage && self.shapes_nothing()
    }

    /// True when the timing model leaves chunks alone (the outage aside).
    fn shapes_nothing(&self) -> bool {
        self.latency_ms == 0.0
            && self.jitter_ms == 0.0
            && self.loss == 0.0
            && self.bandwidth_bps.is_none()
    }

    /// The figures as a person reads them: `latency 500 ms ± 50 ms, loss 1 %,
    /// 64 kbit/s`; `outage` first when set; `none` when nothing is impaired.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.outage {
            parts.push("outage".to_string());
        }
        if self.latency_ms != 0.0 || self.jitter_ms != 0.0 {
            let mut s = format!("latency {} ms", number(self.latency_ms));
            if self.jitter_ms != 0.0 {
                s.push_str(&format!(" ± {} ms", number(self.jitter_ms)));
            }
            parts.push(s);
        }
        if self.loss != 0.0 {
            parts.push(format!("loss {} %", number(self.loss * 100.0)));
        }
        if let Some(bps) = self.bandwidth_bps {
            parts.push(rate(bps));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }

    /// The figures forced into their valid ranges (the fields are public, so the
    /// shaper must not trust them): not-a-number and negative values become 0,
    /// delays are capped at [`MAX_DELAY_MS`], a zero cap becomes 1 bit/s.
    fn sanitized(&self) -> Impairment {
        let delay = |v: f64| {
            if v.is_nan() || v <= 0.0 {
                0.0
            } else {
                v.min(MAX_DELAY_MS)
            }
        };
        Impairment {
            latency_ms: delay(self.latency_ms),
            jitter_ms: delay(self.jitter_ms),
            loss: if self.loss.is_nan() {
                0.0
            } else {
                self.loss.clamp(0.0, 1.0)
            },
            bandwidth_bps: self.bandwidth_bps.map(|b| b.max(1)),
            outage: self.outage,
        }
    }
}

/// `1`, `0.5`, `12.25`: at most three decimals, no trailing zeros.
fn number(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.to_string()
    }
}

fn rate(bps: u64) -> String {
    let b = bps as f64;
    if bps >= 1_000_000 {
        format!("{} Mbit/s", number(b / 1e6))
    } else if bps >= 1_000 {
        format!("{} kbit/s", number(b / 1e3))
    } else {
        format!("{bps} bit/s")
    }
}

// ---------------------------------------------------------------------------------
// The shared setting
// ---------------------------------------------------------------------------------

/// The changeable impairment of one direction. Clones share the setting; every
/// delay line built from it follows its changes.
#[derive(Debug, Clone)]
pub struct ImpairmentControl {
    tx: watch::Sender<Impairment>,
}

impl Default for ImpairmentControl {
    fn default() -> Self {
        ImpairmentControl::new()
    }
}

impl ImpairmentControl {
    /// A setting with nothing impaired.
    pub fn new() -> ImpairmentControl {
        ImpairmentControl {
            tx: watch::channel(Impairment::default()).0,
        }
    }

    /// A setting starting at `imp` (which must be valid).
    pub fn with(imp: Impairment) -> Result<ImpairmentControl, String> {
        let c = ImpairmentControl::new();
        c.set(imp)?;
        Ok(c)
    }

    /// Change the setting (refused, and nothing changed, when `imp` is invalid).
    pub fn set(&self, imp: Impairment) -> Result<(), String> {
        imp.validate()?;
        self.tx.send_replace(imp);
        Ok(())
    }

    /// Start or end an outage, keeping the other figures.
    pub fn set_outage(&self, on: bool) {
        self.tx.send_if_modified(|i| {
            let changed = i.outage != on;
            i.outage = on;
            changed
        });
    }

    /// Back to nothing impaired.
    pub fn clear(&self) {
        self.tx.send_replace(Impairment::default());
    }

    /// The current setting.
    pub fn get(&self) -> Impairment {
        *self.tx.borrow()
    }

    fn subscribe(&self) -> watch::Receiver<Impairment> {
        self.tx.subscribe()
    }
}

// ---------------------------------------------------------------------------------
// The timing model
// ---------------------------------------------------------------------------------

/// What becomes of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Delivered at this wall instant.
    At(Instant),
    /// Lost (datagrams only).
    Drop,
}

/// splitmix64: small, fast, and good enough for timing draws.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// The timing model of one direction (see the module documentation). Pure and
/// deterministic for a given seed and sequence of calls.
#[derive(Debug, Clone)]
pub struct Shaper {
    rng: SplitMix64,
    /// When the link has sent the last chunk (bandwidth cap).
    link_free: Option<Instant>,
    /// Delivery time of the last chunk on a reliable line.
    last: Option<Instant>,
}

/// Wall duration of `device_ms` device milliseconds, never panicking: out-of-range
/// values (a zero or non-finite clock scale) are capped.
fn wall(clock: &Clock, device_ms: f64) -> Duration {
    let secs = device_ms / 1000.0;
    if secs.is_nan() || secs <= 0.0 {
        return Duration::ZERO;
    }
    let w = secs / clock.scale;
    if w.is_finite() && (0.0..MAX_WALL_SECS).contains(&w) {
        clock.wall(secs)
    } else if w.is_nan() || w < 0.0 {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(MAX_WALL_SECS)
    }
}

fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(Duration::from_secs_f64(MAX_WALL_SECS)))
        .unwrap_or(t)
}

impl Shaper {
    pub fn new(seed: u64) -> Shaper {
        Shaper {
            rng: SplitMix64(seed),
            link_free: None,
            last: None,
        }
    }

    /// When a chunk of `len` bytes that arrived at `arrived` is delivered under
    /// `imp` (its `outage` flag is not the shaper's business: the delay line holds
    /// chunks during an outage). `reliable`: a stream (never dropped, kept in
    /// order); otherwise a datagram.
    pub fn schedule(
        &mut self,
        imp: &Impairment,
        clock: &Clock,
        arrived: Instant,
        len: usize,
        reliable: bool,
    ) -> Delivery {
        let imp = imp.sanitized();
        let floor = match (reliable, self.last) {
            (true, Some(last)) => last.max(arrived),
            _ => arrived,
        };
        if imp.shapes_nothing() {
            if reliable {
                self.last = Some(floor);
            }
            return Delivery::At(floor);
        }
        let sent = match imp.bandwidth_bps {
            Some(bps) => {
                let start = self.link_free.map_or(arrived, |f| f.max(arrived));
                let ms = len as f64 * 8.0 * 1000.0 / bps as f64;
                let done = later(start, wall(clock, ms));
                self.link_free = Some(done);
                done
            }
            None => arrived,
        };
        let mut late_ms = 0.0;
        if imp.loss > 0.0 {
            if reliable {
                let rto = MIN_RTO_MS.max(2.0 * imp.latency_ms);
                let mut n = 0;
                while n < MAX_RETRANSMISSIONS && self.rng.unit() < imp.loss {
                    n += 1;
                }
                late_ms = f64::from(n) * rto;
            } else if self.rng.unit() < imp.loss {
                return Delivery::Drop;
            }
        }
        let jitter = if imp.jitter_ms > 0.0 {
            (self.rng.unit() * 2.0 - 1.0) * imp.jitter_ms
        } else {
            0.0
        };
        let delay_ms = (imp.latency_ms + jitter).max(0.0) + late_ms;
        let at = later(sent, wall(clock, delay_ms));
        if reliable {
            let at = at.max(floor);
            self.last = Some(at);
            Delivery::At(at)
        } else {
            Delivery::At(at)
        }
    }
}

// ---------------------------------------------------------------------------------
// The delay line
// ---------------------------------------------------------------------------------

/// The other end of a delay line is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the delay line's receiving end is gone")
    }
}

impl std::error::Error for Closed {}

struct Entry {
    at: Instant,
    data: Bytes,
}

fn cost(len: usize) -> usize {
    len.saturating_add(ENTRY_OVERHEAD)
}

#[derive(Default)]
struct Line {
    /// In delivery order (stable for equal times).
    queue: VecDeque<Entry>,
    /// Accounted bytes queued (payload plus [`ENTRY_OVERHEAD`] each).
    queued: usize,
    tx_closed: bool,
    rx_closed: bool,
}

#[derive(Default)]
struct LineShared {
    line: Mutex<Line>,
    /// Something was queued or the sender left (one waiter: the receiver).
    to_rx: Notify,
    /// Room was made or the receiver left (one waiter: the sender).
    to_tx: Notify,
}

impl LineShared {
    fn lock(&self) -> MutexGuard<'_, Line> {
        self.line.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sending end of a delay line.
pub struct DelayTx {
    shared: Arc<LineShared>,
    control: ImpairmentControl,
    shaper: Shaper,
    clock: Clock,
    reliable: bool,
    max_bytes: usize,
    dropped: u64,
}

/// The receiving end of a delay line.
pub struct DelayRx {
    shared: Arc<LineShared>,
    imp: watch::Receiver<Impairment>,
    /// Keeps the setting's sender alive, so `imp.changed()` never fails.
    _control: ImpairmentControl,
}

/// A delay line for one direction following `control` (see the module
/// documentation). `reliable`: a stream (TCP); otherwise datagrams, which may be
/// dropped and reordered. At most `max_bytes_in_flight` bytes (at least one chunk)
/// are queued. `seed` seeds the shaper's random draws.
pub fn delay_line(
    clock: Clock,
    control: ImpairmentControl,
    reliable: bool,
    max_bytes_in_flight: usize,
    seed: u64,
) -> (DelayTx, DelayRx) {
    let shared = Arc::new(LineShared::default());
    let rx = DelayRx {
        shared: shared.clone(),
        imp: control.subscribe(),
        _control: control.clone(),
    };
    let tx = DelayTx {
        shared,
        control,
        shaper: Shaper::new(seed),
        clock,
        reliable,
        max_bytes: max_bytes_in_flight,
        dropped: 0,
    };
    (tx, rx)
}

impl DelayTx {
    /// Queue a chunk: its arrival is the moment the line accepts it, which is now
    /// unless the line is full, in which case this waits for room (back-pressure).
    /// An empty chunk is ignored. Fails only when the receiving end is gone. If the
    /// future is dropped while waiting for room, the chunk was not queued.
    pub async fn send(&mut self, chunk: Bytes) -> Result<(), Closed> {
        let need = cost(chunk.len());
        loop {
            {
                let mut line = self.shared.lock();
                if line.rx_closed {
                    return Err(Closed);
                }
                if chunk.is_empty() {
                    return Ok(());
                }
                if line.queued == 0 || line.queued.saturating_add(need) <= self.max_bytes {
                    let imp = self.control.get();
                    let arrived = Instant::now();
                    match self.shaper.schedule(
                        &imp,
                        &self.clock,
                        arrived,
                        chunk.len(),
                        self.reliable,
                    ) {
                        Delivery::Drop => {
                            self.dropped += 1;
                            return Ok(());
                        }
                        Delivery::At(at) => {
                            // Insert after every entry due no later (the queue stays
                            // sorted; a stream's deliveries only grow, so this is
                            // the back).
                            let pos = line
                                .queue
                                .iter()
                                .rposition(|e| e.at <= at)
                                .map_or(0, |i| i + 1);
                            line.queue.insert(pos, Entry { at, data: chunk });
                            line.queued += need;
                        }
                    }
                    drop(line);
                    self.shared.to_rx.notify_one();
                    return Ok(());
                }
            }
            self.shared.to_tx.notified().await;
        }
    }

    /// Chunks dropped so far (datagram lines only).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes queued now, as counted against the bound (payload plus
    /// [`ENTRY_OVERHEAD`] per chunk).
    pub fn queued_bytes(&self) -> usize {
        self.shared.lock().queued
    }
}

impl Drop for DelayTx {
    fn drop(&mut self) {
        self.shared.lock().tx_closed = true;
        self.shared.to_rx.notify_one();
    }
}

impl DelayRx {
    /// The next chunk, at its delivery time; nothing while an outage is on; `None`
    /// once the sending end is gone and everything queued was returned. Cancel
    /// safe: a chunk leaves the queue only when it is returned.
    pub async fn recv(&mut self) -> Option<Bytes> {
        loop {
            let outage = self.imp.borrow_and_update().outage;
            let head = {
                let mut line = self.shared.lock();
                match line.queue.front() {
                    None if line.tx_closed => return None,
                    None => None,
                    Some(e) if !outage && e.at <= Instant::now() => {
                        let e = line.queue.pop_front()?;
                        line.queued = line.queued.saturating_sub(cost(e.data.len()));
                        drop(line);
                        self.shared.to_tx.notify_one();
                        return Some(e.data);
                    }
                    Some(e) => Some(e.at),
                }
            };
            // `notify_one` leaves a permit when nobody waits, so a chunk queued
            // between the check above and this wait is not missed.
            let queued = self.shared.to_rx.notified();
            match (outage, head) {
                (true, _) => {
                    tokio::select! {
                        _ = self.imp.changed() => {}
                        _ = queued => {}
                    }
                }
                (false, None) => {
                    tokio::select! {
                        _ = queued => {}
                        _ = self.imp.changed() => {}
                    }
                }
                (false, Some(at)) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        // A datagram due earlier, or an outage starting.
                        _ = queued => {}
                        _ = self.imp.changed() => {}
                    }
                }
            }
        }
    }

    /// Bytes queued now, as counted against the bound.
    pub fn queued_bytes(&self) -> usize {
        self.shared.lock().queued
    }
}

impl Drop for DelayRx {
    fn drop(&mut self) {
        {
            let mut line = self.shared.lock();
            line.rx_closed = true;
            line.queue.clear();
            line.queued = 0;
        }
        self.shared.to_tx.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn clock(scale: f64) -> Clock {
        Clock {
            scale,
            epoch_mono_ns: 0,
            device_epoch_unix_ms: 0,
        }
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn at(d: Delivery) -> Instant {
        match d {
            Delivery::At(t) => t,
            Delivery::Drop => panic!("dropped"),
        }
    }

    fn latency(l: f64) -> Impairment {
        Impairment {
            latency_ms: l,
            ..Impairment::default()
        }
    }

    /// `t` is within the tokio timer's 1 ms resolution after `expected`.
    fn near(t: Instant, expected: Instant) -> bool {
        t >= expected && t <= expected + ms(1)
    }

    #[test]
    fn validates_and_describes() {
        let imp = Impairment {
            latency_ms: 500.0,
            jitter_ms: 50.0,
            loss: 0.01,
            bandwidth_bps: Some(64_000),
            outage: false,
        };
        assert_eq!(imp.validate(), Ok(()));
        assert_eq!(
            imp.describe(),
            "latency 500 ms ± 50 ms, loss 1 %, 64 kbit/s"
        );
        assert!(!imp.is_none());
        assert!(Impairment::default().is_none());
        assert_eq!(Impairment::default().describe(), "none");
        let out = Impairment {
            outage: true,
            ..Impairment::default()
        };
        assert!(!out.is_none());
        assert_eq!(out.describe(), "outage");
        let odd = Impairment {
            latency_ms: 12.5,
            loss: 0.005,
            bandwidth_bps: Some(1_500_000),
            ..Impairment::default()
        };
        assert_eq!(odd.describe(), "latency 12.5 ms, loss 0.5 %, 1.5 Mbit/s");
        for bad in [
            latency(-1.0),
            latency(f64::NAN),
            latency(f64::INFINITY),
            latency(MAX_DELAY_MS + 1.0),
            Impairment {
                jitter_ms: -5.0,
                ..Impairment::default()
            },
            Impairment {
                loss: 1.5,
                ..Impairment::default()
            },
            Impairment {
                loss: f64::NAN,
                ..Impairment::default()
            },
            Impairment {
                bandwidth_bps: Some(0),
                ..Impairment::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?} accepted");
            // A control refuses it and keeps its setting.
            let c = ImpairmentControl::with(latency(10.0)).unwrap();
            assert!(c.set(bad).is_err());
            assert_eq!(c.get(), latency(10.0));
        }
        let yaml: Impairment = serde_json::from_str(r#"{"latency_ms": 300, "loss": 0.1}"#).unwrap();
        assert_eq!(yaml.latency_ms, 300.0);
        assert_eq!(yaml.loss, 0.1);
        assert!(serde_json::from_str::<Impairment>(r#"{"latencyms": 3}"#).is_err());
    }

    #[test]
    fn hostile_figures_do_not_panic_the_shaper() {
        let t0 = Instant::now();
        let mut s = Shaper::new(1);
        for imp in [
            latency(f64::INFINITY),
            latency(f64::NAN),
            Impairment {
                jitter_ms: f64::INFINITY,
                loss: f64::NAN,
                bandwidth_bps: Some(0),
                ..Impairment::default()
            },
            Impairment {
                loss: -3.0,
                bandwidth_bps: Some(1),
                ..Impairment::default()
            },
        ] {
            for c in [clock(1.0), clock(0.0), clock(f64::NAN), clock(1e-300)] {
                let _ = s.schedule(&imp, &c, t0, usize::MAX, true);
                let _ = s.schedule(&imp, &c, t0, 16384, false);
            }
        }
    }

    #[test]
    fn latency_is_device_time() {
        let t0 = Instant::now();
        let mut s = Shaper::new(1);
        assert_eq!(
            at(s.schedule(&latency(500.0), &clock(1.0), t0, 100, true)),
            t0 + ms(500)
        );
        let mut s = Shaper::new(1);
        // A lab running 10x: 500 device ms are 50 wall ms.
        assert_eq!(
            at(s.schedule(&latency(500.0), &clock(10.0), t0, 100, false)),
            t0 + ms(50)
        );
        // No impairment: delivered on arrival.
        assert_eq!(
            at(s.schedule(&Impairment::default(), &clock(1.0), t0, 100, false)),
            t0
        );
    }

    #[test]
    fn jitter_stays_in_bounds_and_keeps_a_stream_in_order() {
        let c = clock(1.0);
        let imp = Impairment {
            latency_ms: 100.0,
            jitter_ms: 80.0,
            ..Impairment::default()
        };
        let t0 = Instant::now();
        let arrivals: Vec<Instant> = (0..2000).map(|i| t0 + ms(i)).collect();

        // Datagrams: every delay within 100 ± 80 ms, spread across the band, and
        // jitter reorders some.
        let mut s = Shaper::new(42);
        let dg: Vec<Instant> = arrivals
            .iter()
            .map(|&a| at(s.schedule(&imp, &c, a, 100, false)))
            .collect();
        let delays: Vec<Duration> = dg.iter().zip(&arrivals).map(|(d, a)| *d - *a).collect();
        assert!(delays.iter().all(|d| *d >= ms(20) && *d <= ms(180)));
        assert!(delays.iter().min().unwrap() < &ms(25));
        assert!(delays.iter().max().unwrap() > &ms(175));
        assert!(dg.windows(2).any(|w| w[1] < w[0]), "jitter never reordered");

        // A stream: never before arrival + 20 ms, never reordered, and late only
        // when held behind an earlier chunk.
        let mut s = Shaper::new(42);
        let mut prev: Option<Instant> = None;
        for &a in &arrivals {
            let d = at(s.schedule(&imp, &c, a, 100, true));
            assert!(d >= a + ms(20));
            match prev {
                Some(p) => {
                    assert!(d >= p);
                    assert!(d <= (a + ms(180)).max(p));
                }
                None => assert!(d <= a + ms(180)),
            }
            prev = Some(d);
        }

        // Jitter larger than the latency: never delivered before arrival.
        let wide = Impairment {
            latency_ms: 10.0,
            jitter_ms: 50.0,
            ..Impairment::default()
        };
        let mut s = Shaper::new(7);
        for &a in &arrivals {
            let d = at(s.schedule(&wide, &c, a, 100, false));
            assert!(d >= a && d <= a + ms(60));
        }
    }

    #[test]
    fn datagram_loss_matches_the_probability_and_is_deterministic() {
        let c = clock(1.0);
        let imp = Impairment {
            loss: 0.1,
            ..Impairment::default()
        };
        let t0 = Instant::now();
        let run = |seed: u64| -> Vec<bool> {
            let mut s = Shaper::new(seed);
            (0..20_000)
                .map(|_| s.schedule(&imp, &c, t0, 100, false) == Delivery::Drop)
                .collect()
        };
        let a = run(9);
        let lost = a.iter().filter(|d| **d).count() as f64 / a.len() as f64;
        // σ = sqrt(0.1 · 0.9 / 20000) ≈ 0.0021; allow 5σ.
        assert!((lost - 0.1).abs() < 0.011, "lost {lost}");
        assert_eq!(a, run(9));
        assert_ne!(a, run(10));
        // Certain loss and no loss.
        let mut s = Shaper::new(1);
        let all = Impairment {
            loss: 1.0,
            ..Impairment::default()
        };
        assert!((0..100).all(|_| s.schedule(&all, &c, t0, 1, false) == Delivery::Drop));
    }

    #[test]
    fn stream_loss_is_retransmission_delay_never_loss() {
        let c = clock(1.0);
        for (lat, rto) in [(50u64, 200u64), (300, 600)] {
            let imp = Impairment {
                latency_ms: lat as f64,
                loss: 0.3,
                ..Impairment::default()
            };
            let mut s = Shaper::new(5);
            let t0 = Instant::now();
            let mut late = 0;
            let n = 5000;
            for i in 0..n {
                // Arrivals far apart, so ordering never holds a chunk back.
                let a = t0 + Duration::from_secs(100 * i);
                let d = at(s.schedule(&imp, &c, a, 100, true)) - a;
                let extra = d - ms(lat);
                assert_eq!(extra.as_nanos() % ms(rto).as_nanos(), 0, "{extra:?}");
                assert!(extra <= ms(rto) * MAX_RETRANSMISSIONS);
                if extra > Duration::ZERO {
                    late += 1;
                }
            }
            let frac = late as f64 / n as f64;
            assert!((frac - 0.3).abs() < 0.035, "late {frac}");
        }
        // Loss 1: capped retransmissions, still delivered.
        let mut s = Shaper::new(5);
        let t0 = Instant::now();
        let all = Impairment {
            loss: 1.0,
            ..Impairment::default()
        };
        assert_eq!(
            at(s.schedule(&all, &c, t0, 1, true)),
            t0 + ms(200) * MAX_RETRANSMISSIONS
        );
    }

    #[test]
    fn bandwidth_serializes_chunks() {
        let c = clock(1.0);
        let imp = Impairment {
            bandwidth_bps: Some(64_000),
            latency_ms: 20.0,
            ..Impairment::default()
        };
        let mut s = Shaper::new(1);
        let t0 = Instant::now();
        // 10 chunks of 800 bytes at once: 100 ms each on the link, then 20 ms latency.
        for i in 1..=10u64 {
            assert_eq!(
                at(s.schedule(&imp, &c, t0, 800, true)),
                t0 + ms(100 * i + 20)
            );
        }
        // An idle link starts afresh.
        let later = t0 + Duration::from_secs(5);
        assert_eq!(at(s.schedule(&imp, &c, later, 800, true)), later + ms(120));
    }

    #[tokio::test(start_paused = true)]
    async fn no_impairment_passes_through_without_waiting() {
        let (mut tx, mut rx) = delay_line(clock(1.0), ImpairmentControl::new(), true, 1 << 20, 1);
        for i in 0..100u8 {
            tx.send(Bytes::from(vec![i; 1000])).await.unwrap();
            // Ready at once: no timer, no task switch.
            let got = rx.recv().now_or_never().expect("ready").expect("chunk");
            assert_eq!(got, Bytes::from(vec![i; 1000]));
        }
        assert!(rx.recv().now_or_never().is_none());
        drop(tx);
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn latency_on_the_delay_line() {
        // 500 device ms on a lab running at scale 2: 250 wall ms.
        let control = ImpairmentControl::with(latency(500.0)).unwrap();
        let (mut tx, mut rx) = delay_line(clock(2.0), control, true, 1 << 20, 1);
        let t0 = Instant::now();
        tx.send(Bytes::from_static(b"ping")).await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), Bytes::from_static(b"ping"));
        assert!(near(Instant::now(), t0 + ms(250)), "{:?}", t0.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn bandwidth_on_the_delay_line() {
        let control = ImpairmentControl::with(Impairment {
            bandwidth_bps: Some(80_000),
            ..Impairment::default()
        })
        .unwrap();
        let (mut tx, mut rx) = delay_line(clock(1.0), control, true, 1 << 20, 1);
        let t0 = Instant::now();
        // 10 000 bytes at 80 kbit/s: one second, 100 ms per 1000-byte chunk.
        for i in 0..10u8 {
            tx.send(Bytes::from(vec![i; 1000])).await.unwrap();
        }
        for i in 0..10u8 {
            assert_eq!(rx.recv().await.unwrap()[0], i);
            assert!(near(Instant::now(), t0 + ms(100 * (u64::from(i) + 1))));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn stream_loss_delays_but_delivers_everything_in_order() {
        let control = ImpairmentControl::with(Impairment {
            latency_ms: 50.0,
            jitter_ms: 20.0,
            loss: 0.3,
            ..Impairment::default()
        })
        .unwrap();
        let (mut tx, mut rx) = delay_line(clock(1.0), control, true, 1 << 20, 3);
        let t0 = Instant::now();
        // Chunk i arrives at t0 + 10 i ms.
        let sender = tokio::spawn(async move {
            for i in 0..200u32 {
                tx.send(Bytes::from(i.to_be_bytes().to_vec()))
                    .await
                    .unwrap();
                tokio::time::sleep(ms(10)).await;
            }
            tx.dropped()
        });
        let mut got = Vec::new();
        let mut most_late = Duration::ZERO;
        while let Some(c) = rx.recv().await {
            let i = u32::from_be_bytes(c[..].try_into().unwrap());
            let delay = Instant::now() - (t0 + ms(10 * u64::from(i)));
            // Never earlier than latency - jitter.
            assert!(delay >= ms(30), "chunk {i} after {delay:?}");
            most_late = most_late.max(delay);
            got.push(i);
        }
        assert_eq!(got, (0..200).collect::<Vec<_>>());
        assert_eq!(sender.await.unwrap(), 0);
        // Some chunk waited for a retransmission (an RTO of 200 ms).
        assert!(most_late >= ms(30 + 200), "{most_late:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn datagram_line_drops() {
        let control = ImpairmentControl::with(Impairment {
            loss: 0.5,
            ..Impairment::default()
        })
        .unwrap();
        let (mut tx, mut rx) = delay_line(clock(1.0), control, false, 1 << 20, 3);
        for i in 0..1000u32 {
            tx.send(Bytes::from(i.to_be_bytes().to_vec()))
                .await
                .unwrap();
        }
        let dropped = tx.dropped();
        drop(tx);
        let mut n = 0;
        while rx.recv().await.is_some() {
            n += 1;
        }
        assert_eq!(n + dropped, 1000);
        assert!((400..600).contains(&dropped), "dropped {dropped}");
    }

    #[tokio::test(start_paused = true)]
    async fn outage_holds_then_releases_everything_in_order() {
        let control = ImpairmentControl::new();
        let (mut tx, mut rx) = delay_line(clock(1.0), control.clone(), true, 1 << 20, 1);
        control.set_outage(true);
        for i in 0..5u8 {
            tx.send(Bytes::from(vec![i])).await.unwrap();
        }
        assert!(tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .is_err());
        let t = Instant::now();
        control.set_outage(false);
        for i in 0..5u8 {
            assert_eq!(rx.recv().await.unwrap()[..], [i]);
        }
        assert_eq!(Instant::now(), t, "released at once");

        // An outage starting while a chunk waits for its delivery time.
        control.set(latency(500.0)).unwrap();
        let t0 = Instant::now();
        tx.send(Bytes::from_static(b"late")).await.unwrap();
        let c2 = control.clone();
        tokio::spawn(async move {
            tokio::time::sleep(ms(100)).await;
            c2.set_outage(true);
            tokio::time::sleep(ms(900)).await;
            c2.set_outage(false);
        });
        assert_eq!(rx.recv().await.unwrap(), Bytes::from_static(b"late"));
        assert!(near(Instant::now(), t0 + ms(1000)), "{:?}", t0.elapsed());
        // The other figures survived the outage.
        assert_eq!(control.get(), latency(500.0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_applies_to_bytes_arriving_after_it() {
        let control = ImpairmentControl::new();
        let (mut tx, mut rx) = delay_line(clock(1.0), control.clone(), true, 1 << 20, 1);
        let t0 = Instant::now();
        tx.send(Bytes::from_static(b"a")).await.unwrap();
        control.set(latency(300.0)).unwrap();
        tx.send(Bytes::from_static(b"b")).await.unwrap();
        // Removing the latency does not let `c` overtake `b`.
        control.clear();
        tx.send(Bytes::from_static(b"c")).await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), Bytes::from_static(b"a"));
        assert_eq!(Instant::now(), t0);
        assert_eq!(rx.recv().await.unwrap(), Bytes::from_static(b"b"));
        assert!(near(Instant::now(), t0 + ms(300)));
        assert_eq!(rx.recv().await.unwrap(), Bytes::from_static(b"c"));
        assert!(near(Instant::now(), t0 + ms(300)));
        // And `d`, after the change, passes through.
        tx.send(Bytes::from_static(b"d")).await.unwrap();
        assert!(rx.recv().now_or_never().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn back_pressure_bounds_memory() {
        const MAX: usize = 8 * 1024;
        let control = ImpairmentControl::with(latency(1000.0)).unwrap();
        let (mut tx, mut rx) = delay_line(clock(1.0), control, true, MAX, 1);
        let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let s2 = sent.clone();
        let (peak_tx, peak_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut peak = 0;
            for i in 0..50u8 {
                tx.send(Bytes::from(vec![i; 1024])).await.unwrap();
                peak = peak.max(tx.queued_bytes());
                s2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            let _ = peak_tx.send(peak);
        });
        tokio::time::sleep(ms(500)).await;
        let stalled_at = sent.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(stalled_at, MAX / cost(1024), "sender not held back");
        assert!(rx.queued_bytes() <= MAX);
        for i in 0..50u8 {
            assert_eq!(rx.recv().await.unwrap(), Bytes::from(vec![i; 1024]));
            assert!(rx.queued_bytes() <= MAX);
        }
        assert!(peak_rx.await.unwrap() <= MAX);
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_recv_loses_nothing() {
        let control = ImpairmentControl::with(latency(500.0)).unwrap();
        let (mut tx, mut rx) = delay_line(clock(1.0), control, true, 1 << 20, 1);
        let t0 = Instant::now();
        tx.send(Bytes::from_static(b"kept")).await.unwrap();
        assert!(tokio::time::timeout(ms(100), rx.recv()).await.is_err());
        assert_eq!(rx.recv().await.unwrap(), Bytes::from_static(b"kept"));
        assert!(near(Instant::now(), t0 + ms(500)));
    }

    #[tokio::test(start_paused = true)]
    async fn closing_either_end() {
        let control = ImpairmentControl::with(latency(100.0)).unwrap();
        let (mut tx, mut rx) = delay_line(clock(1.0), control.clone(), true, 1 << 20, 1);
        tx.send(Bytes::from_static(b"x")).await.unwrap();
        drop(tx);
        // What was queued is still delivered, then the end.
        assert_eq!(rx.recv().await.unwrap(), Bytes::from_static(b"x"));
        assert_eq!(rx.recv().await, None);

        let (mut tx, rx) = delay_line(clock(1.0), control.clone(), true, 100, 1);
        tx.send(Bytes::from(vec![0; 1000])).await.unwrap();
        // Full: the sender waits, and learns the receiver is gone.
        let waiting = tokio::spawn(async move { tx.send(Bytes::from(vec![1; 1000])).await });
        tokio::time::sleep(ms(10)).await;
        drop(rx);
        assert_eq!(waiting.await.unwrap(), Err(Closed));

        // An outage does not keep `recv` from ending when nothing is queued.
        control.set_outage(true);
        let (tx, mut rx) = delay_line(clock(1.0), control, true, 100, 1);
        drop(tx);
        assert_eq!(rx.recv().await, None);
    }
}

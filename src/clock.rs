//! Device time, shared with the devices under test (`docs/virtual-hardware.md` §2).
//!
//! Scenario durations are written in device time ("within 30 seconds"). On a physical
//! rig the scale is 1; in the virtual lab the simulated watch runs `scale` times faster
//! than the wall clock, so an hour of watch behaviour does not take an hour of CI.

use std::time::Duration;

/// Device clock: `scale` device seconds per wall second from `epoch_mono_ns`
/// (a `CLOCK_MONOTONIC` reading), device time zero being UTC `device_epoch_unix_ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clock {
    pub scale: f64,
    pub epoch_mono_ns: u64,
    pub device_epoch_unix_ms: i64,
}

/// A point in device time, milliseconds since the device epoch.
pub type DeviceMs = u64;

fn monotonic_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always available on Linux");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

impl Clock {
    /// Start a clock now, with device time zero at the current UTC time.
    pub fn start(scale: f64) -> Clock {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Clock {
            scale,
            epoch_mono_ns: monotonic_ns(),
            device_epoch_unix_ms: unix_ms,
        }
    }

    /// Device time now.
    pub fn now(&self) -> DeviceMs {
        let elapsed = monotonic_ns().saturating_sub(self.epoch_mono_ns) as f64;
        (elapsed * self.scale / 1e6) as DeviceMs
    }

    /// Wall time that `device_secs` device seconds take.
    pub fn wall(&self, device_secs: f64) -> Duration {
        Duration::from_secs_f64((device_secs / self.scale).max(0.0))
    }

    /// Wall time from now until device time `t_ms` (fractional milliseconds); zero
    /// when it has passed.
    pub fn until(&self, t_ms: f64) -> Duration {
        let target = self.epoch_mono_ns as f64 + t_ms * 1e6 / self.scale;
        let now = monotonic_ns() as f64;
        Duration::from_nanos((target - now).max(0.0) as u64)
    }

    /// Device time now with sub-millisecond resolution.
    pub fn now_f64(&self) -> f64 {
        monotonic_ns().saturating_sub(self.epoch_mono_ns) as f64 * self.scale / 1e6
    }

    /// UTC Unix milliseconds of a device time.
    pub fn utc_ms(&self, t: DeviceMs) -> i64 {
        self.device_epoch_unix_ms + t as i64
    }

    /// The `--clock` argument handed to simulators.
    pub fn to_arg(&self) -> String {
        format!(
            "{}@{}@{}",
            self.scale, self.epoch_mono_ns, self.device_epoch_unix_ms
        )
    }

    /// Sleep for `device_secs` of device time (counted in [`time_waited`]).
    pub async fn sleep(&self, device_secs: f64) {
        let _w = Waiting::begin();
        tokio::time::sleep(self.wall(device_secs)).await
    }

    /// A deadline `device_secs` of device time from now.
    pub fn deadline(&self, device_secs: f64) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.wall(device_secs)
    }
}

/// Wall time during which at least one task of this process was waiting on device
/// time: a [`Clock::sleep`] or a wait for a device event
/// ([`crate::drivers::EventLog::wait_for`]). Overlapping waits count once, so the rest
/// of a run's wall time is the rig's own work (assembly, flashing, HTTP exchanges,
/// reports) — the *rig overhead* that `cargo bench --bench suite` reports.
static WAITS: std::sync::Mutex<WaitState> = std::sync::Mutex::new(WaitState {
    depth: 0,
    since: None,
    total: Duration::ZERO,
});

struct WaitState {
    depth: u64,
    since: Option<std::time::Instant>,
    total: Duration,
}

/// Counts the wall time it is alive in [`time_waited`] (nested and overlapping
/// waits once).
pub struct Waiting(());

impl Waiting {
    pub fn begin() -> Waiting {
        let mut w = WAITS.lock().unwrap_or_else(|p| p.into_inner());
        if w.depth == 0 {
            w.since = Some(std::time::Instant::now());
        }
        w.depth += 1;
        Waiting(())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut w = WAITS.lock().unwrap_or_else(|p| p.into_inner());
        w.depth = w.depth.saturating_sub(1);
        if w.depth == 0 {
            if let Some(t) = w.since.take() {
                w.total += t.elapsed();
            }
        }
    }
}

/// Wall time this process has spent waiting on device time so far (see [`Waiting`]).
pub fn time_waited() -> Duration {
    let w = WAITS.lock().unwrap_or_else(|p| p.into_inner());
    w.total + w.since.map(|t| t.elapsed()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_waits_count_once() {
        let before = time_waited();
        {
            let _a = Waiting::begin();
            let _b = Waiting::begin();
            std::thread::sleep(Duration::from_millis(30));
        }
        let waited = time_waited() - before;
        // Other tests of this binary may wait at the same time, which only adds.
        assert!(waited >= Duration::from_millis(30), "{waited:?}");
        let t = std::time::Instant::now();
        let before = time_waited();
        {
            let _a = Waiting::begin();
            let _b = Waiting::begin();
            std::thread::sleep(Duration::from_millis(20));
        }
        let waited = time_waited() - before;
        // Never more than the wall time that passed, though two guards were alive.
        assert!(waited <= t.elapsed(), "{waited:?} > {:?}", t.elapsed());
    }

    #[test]
    fn wall_time_shrinks_with_scale() {
        let c = Clock {
            scale: 20.0,
            epoch_mono_ns: 0,
            device_epoch_unix_ms: 0,
        };
        assert_eq!(c.wall(30.0), Duration::from_millis(1500));
        assert_eq!(c.to_arg(), "20@0@0");
    }
}

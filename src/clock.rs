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

    /// Sleep for `device_secs` of device time.
    pub async fn sleep(&self, device_secs: f64) {
        tokio::time::sleep(self.wall(device_secs)).await
    }

    /// A deadline `device_secs` of device time from now.
    pub fn deadline(&self, device_secs: f64) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.wall(device_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

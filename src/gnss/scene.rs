//! What the simulated receiver is experiencing: where it is (still or moving along a
//! route), whether it can see the sky, whether its position is spoofed, and what time
//! its satellites tell it.
//!
//! A [`Scene`] is plain data changed by [`GnssChange`]s from steps; the GNSS backends
//! ask it for an [`Observation`] at each epoch. Scene changes take effect at the device
//! time they are applied, so "the watch walks the school run" starts the route *now*.

use super::geo;
use super::route::{Route, Sample};
use crate::clock::DeviceMs;
use std::sync::Arc;

/// GPS week-number rollover period: 1024 weeks, in milliseconds.
pub const WEEK_ROLLOVER_MS: i64 = 1024 * 7 * 86_400_000;

/// How the receiver loses the sky.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutageKind {
    /// Indoors / under a roof: satellites still listed in view, none tracked.
    Indoors,
    /// Jamming: every satellite's C/N0 falls by [`JAMMING_DB`] over two seconds.
    Jamming,
}

/// C/N0 drop applied by jamming, dB.
pub const JAMMING_DB: f64 = 40.0;
/// How long jamming takes to reach its full strength, device milliseconds.
const JAMMING_RAMP_MS: f64 = 2_000.0;

/// A change a step asks for.
#[derive(Debug, Clone)]
pub enum GnssChange {
    /// Stand still at a point (clears spoofing and outages).
    Still { lat: f64, lon: f64, alt_m: f64 },
    /// Start following a route now (clears spoofing and outages).
    Route(Arc<Route>),
    /// Antenna disconnected / receiver without any position: no fix until told otherwise.
    NoFix,
    /// Lose the sky for `secs` device seconds (`None`: until the next change).
    Outage { kind: OutageKind, secs: Option<f64> },
    /// From now on, report positions displaced from the true one (spoofing).
    Jump { distance_m: f64, azimuth_deg: f64 },
    /// Satellite time: `Some(utc_ms)` = the receiver's UTC is this *now* and runs on
    /// from there; `None` = true time again.
    SetTime(Option<i64>),
    /// Report dates 1024 weeks early, like a receiver past its week-number rollover.
    WeekRollover(bool),
    /// Back to a fresh receiver: no position, true time, no outage or spoofing (and,
    /// in the drivers, no replay).
    Reset,
}

#[derive(Debug, Clone)]
enum Motion {
    Still(Sample),
    Route { route: Arc<Route>, start: DeviceMs },
}

#[derive(Debug, Clone, Copy)]
struct Outage {
    kind: OutageKind,
    from: DeviceMs,
    until: Option<DeviceMs>,
}

/// What the receiver sees at one epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// UTC the receiver reports (true time, shifted or rolled over as the scene says).
    pub utc_ms: i64,
    /// True UTC (satellite geometry is computed at this time).
    pub true_utc_ms: i64,
    /// Where the receiver believes it is, if it has any position (spoofing applied).
    pub position: Option<Sample>,
    /// Signal attenuation, dB (0 in open sky).
    pub attenuation_db: f64,
    /// An outage blocks the fix regardless of attenuation (indoors).
    pub blocked: bool,
}

/// The receiver's situation, changed by [`GnssChange`]s.
#[derive(Debug, Clone, Default)]
pub struct Scene {
    motion: Option<Motion>,
    outage: Option<Outage>,
    jump: Option<(f64, f64)>,
    /// Receiver UTC minus true UTC.
    time_offset_ms: i64,
    week_rollover: bool,
}

impl Scene {
    /// A receiver with no position yet.
    pub fn new() -> Scene {
        Scene::default()
    }

    /// Apply a change at device time `now` (`true_utc_ms` = the true UTC at `now`).
    pub fn apply(&mut self, change: GnssChange, now: DeviceMs, true_utc_ms: i64) {
        match change {
            GnssChange::Still { lat, lon, alt_m } => {
                self.motion = Some(Motion::Still(Sample {
                    lat,
                    lon,
                    alt_m,
                    speed_mps: 0.0,
                    course_deg: None,
                }));
                self.outage = None;
                self.jump = None;
            }
            GnssChange::Route(route) => {
                self.motion = Some(Motion::Route { route, start: now });
                self.outage = None;
                self.jump = None;
            }
            GnssChange::NoFix => {
                self.motion = None;
                self.outage = None;
                self.jump = None;
            }
            GnssChange::Outage { kind, secs } => {
                self.outage = Some(Outage {
                    kind,
                    from: now,
                    until: secs.map(|s| now + (s.max(0.0) * 1000.0) as DeviceMs),
                });
            }
            GnssChange::Jump {
                distance_m,
                azimuth_deg,
            } => {
                // Jumps add up: a second jump moves on from the first.
                self.jump = Some(match self.jump {
                    None => (distance_m, azimuth_deg),
                    Some(_) => {
                        let here = self.true_position(now).map(|p| self.displaced(p));
                        match (here, self.true_position(now)) {
                            (Some(from), Some(truth)) => {
                                let (lat, lon, _) =
                                    geo::direct(from.lat, from.lon, azimuth_deg, distance_m);
                                let inv = geo::inverse(truth.lat, truth.lon, lat, lon);
                                (inv.distance_m, inv.azimuth1_deg)
                            }
                            _ => (distance_m, azimuth_deg),
                        }
                    }
                });
            }
            GnssChange::SetTime(t) => {
                self.time_offset_ms = t.map_or(0, |t| t - true_utc_ms);
            }
            GnssChange::WeekRollover(on) => self.week_rollover = on,
            GnssChange::Reset => *self = Scene::new(),
        }
    }

    /// The true position at `t` (no spoofing), if the receiver has one.
    pub fn true_position(&self, t: DeviceMs) -> Option<Sample> {
        match self.motion.as_ref()? {
            Motion::Still(s) => Some(*s),
            Motion::Route { route, start } => {
                Some(route.sample(t.saturating_sub(*start) as f64 / 1000.0))
            }
        }
    }

    fn displaced(&self, p: Sample) -> Sample {
        match self.jump {
            Some((d, az)) => {
                let (lat, lon, _) = geo::direct(p.lat, p.lon, az, d);
                Sample { lat, lon, ..p }
            }
            None => p,
        }
    }

    /// Whether a route is being followed and has not reached its end at `t`.
    pub fn moving(&self, t: DeviceMs) -> bool {
        match &self.motion {
            Some(Motion::Route { route, start }) => {
                (t.saturating_sub(*start) as f64) < route.duration_s() * 1000.0
            }
            _ => false,
        }
    }

    /// What the receiver sees at device time `t`, true UTC `true_utc_ms`.
    pub fn observe(&self, t: DeviceMs, true_utc_ms: i64) -> Observation {
        let mut utc_ms = true_utc_ms + self.time_offset_ms;
        if self.week_rollover {
            utc_ms -= WEEK_ROLLOVER_MS;
        }
        let active = self
            .outage
            .filter(|o| t >= o.from && o.until.is_none_or(|u| t < u));
        let (attenuation_db, blocked) = match active {
            None => (0.0, false),
            Some(Outage {
                kind: OutageKind::Indoors,
                ..
            }) => (0.0, true),
            Some(Outage {
                kind: OutageKind::Jamming,
                from,
                ..
            }) => {
                let ramp = ((t - from) as f64 / JAMMING_RAMP_MS).min(1.0);
                (JAMMING_DB * ramp, false)
            }
        };
        Observation {
            utc_ms,
            true_utc_ms,
            position: self.true_position(t).map(|p| self.displaced(p)),
            attenuation_db,
            blocked,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UTC0: i64 = 1_795_000_000_000;

    #[test]
    fn still_position_is_reported_until_changed() {
        let mut s = Scene::new();
        assert_eq!(s.observe(0, UTC0).position, None);
        s.apply(
            GnssChange::Still {
                lat: 52.5,
                lon: 13.4,
                alt_m: 40.0,
            },
            0,
            UTC0,
        );
        let o = s.observe(5_000, UTC0 + 5_000);
        let p = o.position.unwrap();
        assert_eq!((p.lat, p.lon, p.alt_m), (52.5, 13.4, 40.0));
        assert_eq!(o.utc_ms, UTC0 + 5_000);
        s.apply(GnssChange::NoFix, 6_000, UTC0 + 6_000);
        assert_eq!(s.observe(7_000, UTC0 + 7_000).position, None);
    }

    #[test]
    fn outage_lasts_its_duration_and_jamming_ramps() {
        let mut s = Scene::new();
        s.apply(
            GnssChange::Still {
                lat: 1.0,
                lon: 2.0,
                alt_m: 0.0,
            },
            0,
            UTC0,
        );
        s.apply(
            GnssChange::Outage {
                kind: OutageKind::Indoors,
                secs: Some(10.0),
            },
            1_000,
            UTC0,
        );
        assert!(!s.observe(999, UTC0).blocked);
        assert!(s.observe(1_000, UTC0).blocked);
        assert!(s.observe(10_999, UTC0).blocked);
        assert!(!s.observe(11_000, UTC0).blocked);
        s.apply(
            GnssChange::Outage {
                kind: OutageKind::Jamming,
                secs: None,
            },
            20_000,
            UTC0,
        );
        assert_eq!(s.observe(21_000, UTC0).attenuation_db, JAMMING_DB / 2.0);
        assert_eq!(s.observe(90_000, UTC0).attenuation_db, JAMMING_DB);
    }

    #[test]
    fn jumps_displace_along_the_geodesic_and_accumulate() {
        let mut s = Scene::new();
        s.apply(
            GnssChange::Still {
                lat: 52.52,
                lon: 13.405,
                alt_m: 40.0,
            },
            0,
            UTC0,
        );
        s.apply(
            GnssChange::Jump {
                distance_m: 1_000.0,
                azimuth_deg: 90.0,
            },
            0,
            UTC0,
        );
        let p = s.observe(1, UTC0).position.unwrap();
        assert!((geo::distance_m(52.52, 13.405, p.lat, p.lon) - 1_000.0).abs() < 0.01);
        s.apply(
            GnssChange::Jump {
                distance_m: 1_000.0,
                azimuth_deg: 90.0,
            },
            1,
            UTC0,
        );
        let q = s.observe(2, UTC0).position.unwrap();
        assert!((geo::distance_m(52.52, 13.405, q.lat, q.lon) - 2_000.0).abs() < 1.0);
        // A new position clears the spoofing.
        s.apply(
            GnssChange::Still {
                lat: 52.52,
                lon: 13.405,
                alt_m: 40.0,
            },
            3,
            UTC0,
        );
        assert_eq!(s.observe(4, UTC0).position.unwrap().lon, 13.405);
    }

    #[test]
    fn time_shift_runs_on_and_week_rollover_goes_back_1024_weeks() {
        let mut s = Scene::new();
        let midnight = 1_795_046_400_000; // 2026-11-18T00:00:00Z
        s.apply(GnssChange::SetTime(Some(midnight - 10_000)), 0, UTC0);
        assert_eq!(s.observe(0, UTC0).utc_ms, midnight - 10_000);
        assert_eq!(s.observe(15_000, UTC0 + 15_000).utc_ms, midnight + 5_000);
        s.apply(GnssChange::WeekRollover(true), 0, UTC0);
        assert_eq!(
            s.observe(0, UTC0).utc_ms,
            midnight - 10_000 - WEEK_ROLLOVER_MS
        );
        s.apply(GnssChange::SetTime(None), 0, UTC0);
        s.apply(GnssChange::WeekRollover(false), 0, UTC0);
        assert_eq!(s.observe(0, UTC0).utc_ms, UTC0);
    }

    #[test]
    fn route_starts_when_applied_and_stops_at_its_end() {
        let route = Route::from_waypoints(
            "t",
            &[
                (52.52, 13.405, 40.0, 1.0, 0.0),
                (52.52, 13.406, 40.0, 1.0, 0.0),
            ],
        )
        .unwrap();
        let dur = route.duration_s();
        let mut s = Scene::new();
        s.apply(GnssChange::Route(Arc::new(route)), 10_000, UTC0);
        let start = s.observe(10_000, UTC0).position.unwrap();
        assert!((start.lon - 13.405).abs() < 1e-9);
        assert!(s.moving(10_001));
        let end_t = 10_000 + (dur * 1000.0) as u64 + 1;
        assert!(!s.moving(end_t));
        let end = s.observe(end_t + 5_000, UTC0).position.unwrap();
        assert!((end.lon - 13.406).abs() < 1e-9);
        assert_eq!(end.speed_mps, 0.0);
    }
}

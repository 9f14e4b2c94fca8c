//! Plausible satellite geometry: which satellites a receiver at a given place and
//! time would see, where (elevation, azimuth), how strong (C/N0), and the
//! resulting dilution of precision. Used to write GSV/GSA/DOP values that change
//! consistently with time and position instead of a fixed list.
//!
//! No ephemeris: each system is a nominal constellation of circular orbits whose
//! argument of latitude advances uniformly from a reference epoch
//! (2020-01-01T00:00Z); inertial positions are turned into ECEF by the Earth's
//! rotation since that epoch (GMST at the epoch plus ω_E·t), then into local
//! azimuth/elevation on the WGS-84 ellipsoid.
//!
//! - GPS: the 24-slot nominal constellation, 6 planes (ascending nodes 60° apart),
//!   55° inclination, 26 559.7 km, half a sidereal day; 4 slots per plane at the
//!   uneven nominal spacing; 24 of the PRNs 1–32 assigned to slots.
//! - GLONASS: 3 planes 120° apart, 64.8°, 25 510 km, 40 544 s, 8 slots per plane
//!   45° apart with 15° between planes; NMEA numbers 65–88 (slot + 64).
//! - Galileo: Walker 24/3/1, 56°, 29 600 km (period from Kepler's third law, about
//!   14 h 05 min); 24 of the PRNs 1–36, written with the `GA` talker.
//!
//! C/N0 depends on elevation (about 30 dB-Hz at the mask, 48 dB-Hz at zenith), on
//! an attenuation the caller sets (indoors, jamming), and on a small deterministic
//! per-satellite and per-second variation. Below [`TRACKING_THRESHOLD_DB`] a
//! satellite is in view but not tracked (empty SNR in GSV, not used in GSA/DOP).

use std::f64::consts::{FRAC_PI_2, TAU};

use crate::wire::nmea::Satellite;
pub use crate::wire::nmea::System;

/// Weakest signal a receiver tracks, dB-Hz.
pub const TRACKING_THRESHOLD_DB: f64 = 20.0;

/// Reference epoch of the constellations: 2020-01-01T00:00:00Z, Unix ms.
const REFERENCE_EPOCH_MS: i64 = 1_577_836_800_000;
/// Greenwich mean sidereal time at the reference epoch, degrees
/// (280.46061837° + 360.98564736629° × 7304.5 days since J2000, reduced).
const GMST_AT_EPOCH_DEG: f64 = 100.121_805_435_5;
/// Earth rotation rate (WGS-84), rad/s.
const EARTH_RATE: f64 = 7.292_115_146_7e-5;
/// Earth's gravitational parameter (WGS-84), m³/s².
const GM: f64 = 3.986_004_418e14;

/// C/N0 of a satellite at the elevation mask and at zenith, before variation and
/// attenuation, dB-Hz.
const CN0_AT_MASK: f64 = 30.0;
const CN0_AT_ZENITH: f64 = 48.0;
/// Half-width of the constant per-satellite offset and of the per-second jitter, dB.
const CN0_SAT_SPREAD: f64 = 1.5;
const CN0_JITTER: f64 = 0.75;

/// GPS nominal slots, plane by plane (A–F, ascending nodes 60° apart): argument of
/// latitude at the reference epoch (degrees) and PRN.
const GPS_SLOTS: [[(f64, u8); 4]; 6] = [
    [(268.126, 24), (161.786, 31), (11.676, 8), (41.806, 7)],
    [(80.956, 16), (173.336, 25), (309.976, 28), (204.376, 12)],
    [(111.876, 29), (11.796, 27), (339.666, 19), (241.556, 17)],
    [(135.226, 2), (265.446, 1), (35.156, 21), (167.356, 4)],
    [(197.046, 3), (302.596, 10), (66.066, 5), (333.686, 18)],
    [(238.886, 32), (345.226, 26), (105.206, 11), (135.346, 13)],
];
/// Right ascension of GPS plane A's ascending node at the reference epoch, degrees.
const GPS_RAAN_A_DEG: f64 = 272.847;

/// Galileo PRNs, plane by plane, in slot order.
const GALILEO_PRNS: [[u8; 8]; 3] = [
    [1, 2, 3, 4, 5, 7, 8, 9],
    [10, 11, 12, 13, 14, 15, 18, 19],
    [21, 24, 25, 26, 27, 30, 31, 33],
];

/// A satellite as seen from the receiver.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SatView {
    pub system: System,
    /// NMEA number (GLONASS 65–88).
    pub prn: u8,
    pub elevation_deg: f64,
    /// Degrees clockwise from true north, [0, 360).
    pub azimuth_deg: f64,
    /// Carrier-to-noise density, dB-Hz.
    pub cn0_db: f64,
}

impl SatView {
    /// Whether the receiver tracks it (C/N0 at least [`TRACKING_THRESHOLD_DB`]).
    pub fn tracked(&self) -> bool {
        self.cn0_db >= TRACKING_THRESHOLD_DB
    }
}

/// One satellite's nominal circular orbit.
#[derive(Debug, Clone, Copy)]
struct Orbit {
    system: System,
    prn: u8,
    /// Right ascension of the ascending node, rad.
    raan: f64,
    inclination: f64,
    radius_m: f64,
    period_s: f64,
    /// Argument of latitude at the reference epoch, rad.
    u0: f64,
}

impl Orbit {
    /// Earth-centred inertial position `dt_s` seconds after the reference epoch.
    fn eci(&self, dt_s: f64) -> [f64; 3] {
        let u = self.u0 + TAU * (dt_s.rem_euclid(self.period_s) / self.period_s);
        let (su, cu) = u.sin_cos();
        let (si, ci) = self.inclination.sin_cos();
        let (so, co) = self.raan.sin_cos();
        let r = self.radius_m;
        [
            r * (co * cu - so * ci * su),
            r * (so * cu + co * ci * su),
            r * si * su,
        ]
    }
}

/// A set of nominal constellations.
#[derive(Debug, Clone)]
pub struct Sky {
    orbits: Vec<Orbit>,
}

impl Sky {
    /// The constellations of `systems` (duplicates ignored; empty gives an empty sky).
    pub fn new(systems: &[System]) -> Sky {
        let mut orbits = Vec::new();
        for system in System::ALL {
            if !systems.contains(&system) {
                continue;
            }
            match system {
                System::Gps => gps(&mut orbits),
                System::Glonass => glonass(&mut orbits),
                System::Galileo => galileo(&mut orbits),
            }
        }
        orbits.sort_by_key(|o| (o.system, o.prn));
        Sky { orbits }
    }

    /// Satellites at or above `mask_deg` seen from (`lat`, `lon` in degrees, `alt_m`
    /// above the WGS-84 ellipsoid) at `unix_ms`; sorted by system then PRN.
    ///
    /// C/N0 rises from about 30 dB-Hz at the mask to about 48 dB-Hz at zenith, less
    /// `attenuation_db`, with a deterministic variation of at most ±2.25 dB (a fixed
    /// offset per satellite and a jitter per satellite and UTC second). Satellites
    /// below [`TRACKING_THRESHOLD_DB`] are included but not tracked.
    ///
    /// Invalid coordinates (not finite, |lat| > 90) or a non-finite mask give an
    /// empty list; a NaN attenuation counts as none.
    pub fn in_view(
        &self,
        unix_ms: i64,
        lat: f64,
        lon: f64,
        alt_m: f64,
        mask_deg: f64,
        attenuation_db: f64,
    ) -> Vec<SatView> {
        if !(lat.is_finite()
            && lon.is_finite()
            && alt_m.is_finite()
            && mask_deg.is_finite()
            && lat.abs() <= 90.0)
        {
            return Vec::new();
        }
        let attenuation = if attenuation_db.is_nan() {
            0.0
        } else {
            attenuation_db
        };
        let dt_s = (i128::from(unix_ms) - i128::from(REFERENCE_EPOCH_MS)) as f64 / 1000.0;
        let second = unix_ms.div_euclid(1000);
        let sidereal_day = TAU / EARTH_RATE;
        let theta =
            GMST_AT_EPOCH_DEG.to_radians() + TAU * (dt_s.rem_euclid(sidereal_day) / sidereal_day);
        let (st, ct) = theta.sin_cos();

        let (lat_r, lon_r) = (lat.to_radians(), lon.to_radians());
        let (x0, y0, z0) = map_3d::geodetic2ecef(lat_r, lon_r, alt_m, map_3d::Ellipsoid::WGS84);

        // C/N0 shape: a quarter sine from the mask (or the horizon, if the mask is
        // below it) to zenith.
        let floor = mask_deg.clamp(0.0, 89.0);
        self.orbits
            .iter()
            .filter_map(|o| {
                let [xi, yi, zi] = o.eci(dt_s);
                // Inertial to Earth-fixed: rotate by -θ about z.
                let (x, y, z) = (xi * ct + yi * st, -xi * st + yi * ct, zi);
                let (e, n, u) = map_3d::uvw2enu(x - x0, y - y0, z - z0, lat_r, lon_r);
                let (az, el, _range) = map_3d::enu2aer(e, n, u);
                let (az_deg, el_deg) = (az.to_degrees().rem_euclid(360.0), el.to_degrees());
                if el_deg < mask_deg {
                    return None;
                }
                let x = ((el_deg - floor) / (90.0 - floor)).clamp(0.0, 1.0);
                let base = CN0_AT_MASK + (CN0_AT_ZENITH - CN0_AT_MASK) * (x * FRAC_PI_2).sin();
                let id = ((o.system as u64) << 8) | u64::from(o.prn);
                let offset = CN0_SAT_SPREAD * unit(mix(id));
                let jitter = CN0_JITTER * unit(mix(id ^ mix(second as u64)));
                Some(SatView {
                    system: o.system,
                    prn: o.prn,
                    elevation_deg: el_deg,
                    azimuth_deg: az_deg,
                    cn0_db: base + offset + jitter - attenuation,
                })
            })
            .collect()
    }
}

fn gps(out: &mut Vec<Orbit>) {
    // Half a sidereal day: the ground track repeats every sidereal day.
    let period_s = TAU / EARTH_RATE / 2.0;
    for (plane, slots) in GPS_SLOTS.iter().enumerate() {
        let raan = (GPS_RAAN_A_DEG + 60.0 * plane as f64).to_radians();
        for &(u0_deg, prn) in slots {
            out.push(Orbit {
                system: System::Gps,
                prn,
                raan,
                inclination: 55f64.to_radians(),
                radius_m: 26_559_700.0,
                period_s,
                u0: u0_deg.to_radians(),
            });
        }
    }
}

fn glonass(out: &mut Vec<Orbit>) {
    for plane in 0..3u8 {
        for k in 0..8u8 {
            let slot = plane * 8 + k + 1;
            // Satellites follow each other 45° apart in slot order; planes are
            // shifted by 15°.
            let u0_deg = 15.0 * f64::from(plane) - 45.0 * f64::from(k);
            out.push(Orbit {
                system: System::Glonass,
                prn: 64 + slot,
                raan: (120.0 * f64::from(plane)).to_radians(),
                inclination: 64.8f64.to_radians(),
                radius_m: 25_510_000.0,
                period_s: 40_544.0,
                u0: u0_deg.to_radians(),
            });
        }
    }
}

fn galileo(out: &mut Vec<Orbit>) {
    let radius_m: f64 = 29_600_000.0;
    let period_s = TAU * (radius_m.powi(3) / GM).sqrt();
    for (plane, prns) in GALILEO_PRNS.iter().enumerate() {
        for (k, &prn) in prns.iter().enumerate() {
            // Walker 24/3/1: 45° between slots, 15° between planes.
            let u0_deg = 45.0 * k as f64 + 15.0 * plane as f64 + 7.0;
            out.push(Orbit {
                system: System::Galileo,
                prn,
                raan: (40.0 + 120.0 * plane as f64).to_radians(),
                inclination: 56f64.to_radians(),
                radius_m,
                period_s,
                u0: u0_deg.to_radians(),
            });
        }
    }
}

/// SplitMix64 finaliser: a well-mixed 64-bit hash of `x`.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A hash mapped to [-1, 1).
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

/// Dilution of precision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dop {
    pub pdop: f64,
    pub hdop: f64,
    pub vdop: f64,
}

/// DOP of the tracked satellites (C/N0 ≥ [`TRACKING_THRESHOLD_DB`]), from their
/// line-of-sight unit vectors in east/north/up: rows `[e n u 1]` of G,
/// Q = (GᵀG)⁻¹, HDOP = √(Qee + Qnn), VDOP = √Quu, PDOP = √(Qee + Qnn + Quu).
/// `None` with fewer than four tracked satellites or a singular geometry.
/// All systems share one clock term (as if inter-system biases were known).
pub fn dop(sats: &[SatView]) -> Option<Dop> {
    let mut normal = [[0.0f64; 4]; 4];
    let mut count = 0;
    for s in sats.iter().filter(|s| s.tracked()) {
        let (el, az) = (s.elevation_deg.to_radians(), s.azimuth_deg.to_radians());
        let row = [el.cos() * az.sin(), el.cos() * az.cos(), el.sin(), 1.0];
        for (i, ri) in row.iter().enumerate() {
            for (j, rj) in row.iter().enumerate() {
                normal[i][j] += ri * rj;
            }
        }
        count += 1;
    }
    if count < 4 {
        return None;
    }
    let q = invert4(normal)?;
    let (qe, qn, qu) = (q[0][0], q[1][1], q[2][2]);
    let dop = Dop {
        pdop: (qe + qn + qu).sqrt(),
        hdop: (qe + qn).sqrt(),
        vdop: qu.sqrt(),
    };
    (dop.pdop.is_finite() && dop.hdop.is_finite() && dop.vdop.is_finite()).then_some(dop)
}

/// Inverse of a 4×4 matrix by Gauss-Jordan elimination with partial pivoting;
/// `None` when (numerically) singular.
fn invert4(mut a: [[f64; 4]; 4]) -> Option<[[f64; 4]; 4]> {
    const EPS: f64 = 1e-9;
    let mut inv = [[0.0f64; 4]; 4];
    for (i, row) in inv.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    for col in 0..4 {
        let mut pivot = col;
        for r in col + 1..4 {
            if a[r][col].abs() > a[pivot][col].abs() {
                pivot = r;
            }
        }
        let p = a[pivot][col];
        if p.is_nan() || p.abs() <= EPS {
            return None;
        }
        a.swap(col, pivot);
        inv.swap(col, pivot);
        for j in 0..4 {
            a[col][j] /= p;
            inv[col][j] /= p;
        }
        for r in 0..4 {
            if r == col {
                continue;
            }
            let f = a[r][col];
            if f != 0.0 {
                for j in 0..4 {
                    a[r][j] -= f * a[col][j];
                    inv[r][j] -= f * inv[col][j];
                }
            }
        }
    }
    Some(inv)
}

/// For NMEA: elevation and azimuth rounded to whole degrees (elevation within
/// 0–90, azimuth 0–359), C/N0 rounded (at most 99), `None` (empty field) when not
/// tracked.
pub fn to_nmea(sats: &[SatView]) -> Vec<Satellite> {
    sats.iter()
        .map(|s| Satellite {
            system: s.system,
            prn: s.prn,
            // `as` saturates (NaN gives 0): no panic on any value.
            elevation_deg: s.elevation_deg.round().clamp(0.0, 90.0) as u8,
            azimuth_deg: s.azimuth_deg.round().rem_euclid(360.0) as u16 % 360,
            snr_db: s.tracked().then(|| s.cn0_db.round().clamp(0.0, 99.0) as u8),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-03-20T00:00:00Z.
    const T0: i64 = 1_710_892_800_000;
    const HOUR_MS: i64 = 3_600_000;

    const PLACES: [(&str, f64, f64, f64); 6] = [
        ("Berlin", 52.52, 13.405, 34.0),
        ("equator", 0.0, -78.5, 2_800.0),
        ("70N", 70.0, 25.0, 10.0),
        ("Sydney", -33.87, 151.21, 20.0),
        ("Cape Horn", -55.98, -67.27, 0.0),
        ("Honolulu", 21.3, -157.85, 5.0),
    ];

    #[test]
    fn gps_alone_gives_a_usable_sky_everywhere_all_day() {
        let sky = Sky::new(&[System::Gps]);
        for (name, lat, lon, alt) in PLACES {
            let (mut min_n, mut max_n, mut max_pdop) = (usize::MAX, 0, 0.0f64);
            for step in 0..(24 * 12) {
                let t = T0 + step * 5 * 60_000;
                let v = sky.in_view(t, lat, lon, alt, 5.0, 0.0);
                let n = v.len();
                let tracked = v.iter().filter(|s| s.tracked()).count();
                assert!((5..=14).contains(&n), "{name} at {t}: {n} in view");
                assert!(tracked >= 4, "{name} at {t}: {tracked} tracked");
                let d = dop(&v).unwrap_or_else(|| panic!("{name} at {t}: no DOP"));
                assert!(d.pdop >= 1.0 && d.pdop <= 6.0, "{name} at {t}: {d:?}");
                assert!(d.hdop < d.pdop && d.vdop < d.pdop);
                assert!(v.iter().all(|s| s.system == System::Gps
                    && (1..=32).contains(&s.prn)
                    && s.elevation_deg >= 5.0
                    && (0.0..360.0).contains(&s.azimuth_deg)));
                assert!(v.windows(2).all(|w| w[0].prn < w[1].prn));
                min_n = min_n.min(n);
                max_n = max_n.max(n);
                max_pdop = max_pdop.max(d.pdop);
            }
            eprintln!("{name}: {min_n}..{max_n} in view, PDOP ≤ {max_pdop:.2}");
        }
    }

    #[test]
    fn more_systems_give_more_satellites_and_better_dop() {
        let gps = Sky::new(&[System::Gps]);
        let gr = Sky::new(&[System::Gps, System::Glonass]);
        let all = Sky::new(&[System::Galileo, System::Gps, System::Glonass, System::Gps]);
        for (name, lat, lon, alt) in PLACES {
            for step in 0..24 {
                let t = T0 + step * HOUR_MS + 17_000;
                let a = gps.in_view(t, lat, lon, alt, 5.0, 0.0);
                let b = gr.in_view(t, lat, lon, alt, 5.0, 0.0);
                let c = all.in_view(t, lat, lon, alt, 5.0, 0.0);
                assert!(b.len() > a.len(), "{name} {t}");
                assert!(c.len() > b.len(), "{name} {t}");
                // The GPS part is the same sky.
                assert_eq!(&b[..a.len()], &a[..]);
                for s in &b[a.len()..] {
                    assert_eq!(s.system, System::Glonass);
                    assert!((65..=88).contains(&s.prn), "{s:?}");
                }
                for s in c.iter().filter(|s| s.system == System::Galileo) {
                    assert!((1..=36).contains(&s.prn), "{s:?}");
                }
                let sorted = c
                    .windows(2)
                    .all(|w| (w[0].system, w[0].prn) < (w[1].system, w[1].prn));
                assert!(sorted, "{c:?}");
                let (da, dc) = (dop(&a).unwrap(), dop(&c).unwrap());
                assert!(dc.pdop <= da.pdop + 1e-9, "{name} {t}: {da:?} {dc:?}");
            }
        }
    }

    #[test]
    fn constellations_have_their_nominal_size() {
        let all = Sky::new(&System::ALL);
        let count = |sys| all.orbits.iter().filter(|o| o.system == sys).count();
        assert_eq!(count(System::Gps), 24);
        assert_eq!(count(System::Glonass), 24);
        assert_eq!(count(System::Galileo), 24);
        let glo: Vec<u8> = all
            .orbits
            .iter()
            .filter(|o| o.system == System::Glonass)
            .map(|o| o.prn)
            .collect();
        assert_eq!(glo, (65..=88).collect::<Vec<u8>>());
        assert!(Sky::new(&[])
            .in_view(T0, 0.0, 0.0, 0.0, 5.0, 0.0)
            .is_empty());
        // Everywhere on Earth sees about 40 % of a MEO constellation at 0° mask.
        let n = all.in_view(T0, 48.0, 2.0, 0.0, 0.0, 0.0).len();
        assert!((20..=40).contains(&n), "{n}");
    }

    #[test]
    fn satellites_move_slowly_but_visibly() {
        let sky = Sky::new(&[System::Gps, System::Glonass, System::Galileo]);
        let (lat, lon, alt) = (52.52, 13.405, 34.0);
        let now = sky.in_view(T0, lat, lon, alt, -90.0, 0.0);
        let later = sky.in_view(T0 + 10_000, lat, lon, alt, -90.0, 0.0);
        let hour = sky.in_view(T0 + HOUR_MS, lat, lon, alt, -90.0, 0.0);
        assert_eq!(now.len(), 72);
        assert_eq!(later.len(), 72);
        // Angle between two look directions, degrees.
        let apart = |a: &SatView, b: &SatView| {
            let v = |s: &SatView| {
                let (el, az) = (s.elevation_deg.to_radians(), s.azimuth_deg.to_radians());
                [el.cos() * az.sin(), el.cos() * az.cos(), el.sin()]
            };
            let (p, q) = (v(a), v(b));
            let dot = p[0] * q[0] + p[1] * q[1] + p[2] * q[2];
            dot.clamp(-1.0, 1.0).acos().to_degrees()
        };
        let mut el_changed = 0;
        for ((a, b), c) in now.iter().zip(&later).zip(&hour) {
            assert_eq!((a.system, a.prn), (b.system, b.prn));
            let d_el = (a.elevation_deg - b.elevation_deg).abs();
            assert!(d_el < 1.0, "{a:?} → {b:?}");
            assert!(apart(a, b) < 1.0, "{a:?} → {b:?}");
            assert!(apart(a, b) > 0.01, "{a:?} did not move");
            // Over an hour every satellite moves across the sky (MEO: ~30°/h as
            // seen from the Earth's centre); its elevation changes unless it is
            // just passing its highest or lowest point.
            assert!(apart(a, c) > 5.0, "{a:?} → {c:?}");
            if (a.elevation_deg - c.elevation_deg).abs() > 2.0 {
                el_changed += 1;
            }
        }
        assert!(el_changed >= 60, "{el_changed} of 72");
    }

    #[test]
    fn gps_ground_track_repeats_every_sidereal_day() {
        let sky = Sky::new(&[System::Gps]);
        let sidereal_day_ms = (TAU / EARTH_RATE * 1000.0).round() as i64;
        let a = sky.in_view(T0, -33.87, 151.21, 20.0, 5.0, 0.0);
        let b = sky.in_view(T0 + sidereal_day_ms, -33.87, 151.21, 20.0, 5.0, 0.0);
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.prn, y.prn);
            assert!((x.elevation_deg - y.elevation_deg).abs() < 0.01);
        }
    }

    #[test]
    fn cn0_follows_elevation_and_attenuation() {
        let sky = Sky::new(&System::ALL);
        for (name, lat, lon, alt) in PLACES {
            for step in 0..24 {
                let t = T0 + step * HOUR_MS;
                let v = sky.in_view(t, lat, lon, alt, 5.0, 0.0);
                for s in &v {
                    let spread = CN0_SAT_SPREAD + CN0_JITTER;
                    assert!(s.cn0_db >= CN0_AT_MASK - spread && s.cn0_db <= CN0_AT_ZENITH + spread);
                    assert!(s.tracked());
                }
                let mean = |lo: f64, hi: f64| {
                    let sel: Vec<f64> = v
                        .iter()
                        .filter(|s| s.elevation_deg >= lo && s.elevation_deg < hi)
                        .map(|s| s.cn0_db)
                        .collect();
                    (!sel.is_empty()).then(|| sel.iter().sum::<f64>() / sel.len() as f64)
                };
                if let (Some(l), Some(h)) = (mean(5.0, 15.0), mean(60.0, 91.0)) {
                    assert!(h > l + 8.0, "{name}: {l} vs {h}");
                }
                let weak = sky.in_view(t, lat, lon, alt, 5.0, 30.0);
                assert_eq!(weak.len(), v.len(), "attenuated satellites stay in view");
                let tracked = weak.iter().filter(|s| s.tracked()).count();
                assert!(tracked < 4, "{name}: {tracked} tracked at -30 dB");
                assert_eq!(dop(&weak), None);
                for (a, b) in v.iter().zip(&weak) {
                    assert!((a.cn0_db - b.cn0_db - 30.0).abs() < 1e-9);
                }
            }
        }
    }

    #[test]
    fn same_inputs_give_the_same_sky() {
        let a = Sky::new(&System::ALL).in_view(T0 + 1234, 47.0, 8.0, 400.0, 10.0, 5.0);
        let b = Sky::new(&System::ALL).in_view(T0 + 1234, 47.0, 8.0, 400.0, 10.0, 5.0);
        assert_eq!(a, b);
        assert!(!a.is_empty());
        // The per-second jitter changes C/N0 a little from one second to the next,
        // but not within a second.
        let c = Sky::new(&System::ALL).in_view(T0 + 1999, 47.0, 8.0, 400.0, 10.0, 5.0);
        let d = Sky::new(&System::ALL).in_view(T0 + 2000, 47.0, 8.0, 400.0, 10.0, 5.0);
        assert!(a
            .iter()
            .zip(&c)
            .all(|(x, y)| (x.cn0_db - y.cn0_db).abs() < 0.1));
        assert!(c
            .iter()
            .zip(&d)
            .any(|(x, y)| (x.cn0_db - y.cn0_db).abs() > 0.1));
        assert!(c
            .iter()
            .zip(&d)
            .all(|(x, y)| (x.cn0_db - y.cn0_db).abs() < 2.0 * CN0_JITTER + 0.1));
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        let sky = Sky::new(&System::ALL);
        for t in [i64::MIN, -1, 0, i64::MAX] {
            for (lat, lon) in [
                (0.0, 0.0),
                (90.0, 0.0),
                (-90.0, 720.0),
                (f64::NAN, 0.0),
                (91.0, 0.0),
            ] {
                for mask in [-100.0, 0.0, 89.9, 90.0, 100.0, f64::NAN] {
                    for att in [0.0, f64::NAN, f64::INFINITY, -1e300] {
                        let v = sky.in_view(t, lat, lon, 0.0, mask, att);
                        let _ = dop(&v);
                        for s in to_nmea(&v) {
                            assert!(s.elevation_deg <= 90 && s.azimuth_deg < 360);
                        }
                    }
                }
            }
        }
        assert!(sky.in_view(T0, f64::NAN, 0.0, 0.0, 5.0, 0.0).is_empty());
        assert!(sky.in_view(T0, 91.0, 0.0, 0.0, 5.0, 0.0).is_empty());
        let weird = SatView {
            system: System::Gps,
            prn: 1,
            elevation_deg: f64::NAN,
            azimuth_deg: f64::INFINITY,
            cn0_db: 45.0,
        };
        assert_eq!(dop(&[weird; 6]), None);
        let n = to_nmea(&[weird]);
        assert_eq!(n[0].snr_db, Some(45));
    }

    #[test]
    fn dop_of_known_geometry() {
        let sat = |el: f64, az: f64| SatView {
            system: System::Gps,
            prn: 1,
            elevation_deg: el,
            azimuth_deg: az,
            cn0_db: 40.0,
        };
        // Zenith plus three at the horizon 120° apart, against the closed form.
        let v = [
            sat(90.0, 0.0),
            sat(0.0, 0.0),
            sat(0.0, 120.0),
            sat(0.0, 240.0),
        ];
        let d = dop(&v).unwrap();
        // GᵀG = diag(1.5, 1.5, 1, 4) with off-diagonal Σu = 1 between u and clock:
        // Quu = 4 / (4·1 − 1·1) = 4/3, Qee = Qnn = 1/1.5.
        assert!((d.hdop - (2.0f64 / 1.5).sqrt()).abs() < 1e-9, "{d:?}");
        assert!((d.vdop - (4.0f64 / 3.0).sqrt()).abs() < 1e-9, "{d:?}");
        assert!(
            (d.pdop - (2.0 / 1.5 + 4.0 / 3.0f64).sqrt()).abs() < 1e-9,
            "{d:?}"
        );
        // Three satellites, or four in a plane-degenerate geometry: no DOP.
        assert_eq!(dop(&v[..3]), None);
        assert_eq!(dop(&[sat(30.0, 10.0); 5]), None);
        // Untracked ones do not count.
        let mut weak = v;
        weak[0].cn0_db = 19.9;
        assert_eq!(dop(&weak), None);
    }

    #[test]
    fn nmea_conversion_rounds_and_marks_untracked() {
        let v = [
            SatView {
                system: System::Glonass,
                prn: 70,
                elevation_deg: 44.5,
                azimuth_deg: 359.6,
                cn0_db: 38.4,
            },
            SatView {
                system: System::Gps,
                prn: 3,
                elevation_deg: 5.2,
                azimuth_deg: 12.4,
                cn0_db: 19.99,
            },
        ];
        let n = to_nmea(&v);
        assert_eq!(n[0].system, System::Glonass);
        assert_eq!(
            (n[0].prn, n[0].elevation_deg, n[0].azimuth_deg),
            (70, 45, 0)
        );
        assert_eq!(n[0].snr_db, Some(38));
        assert_eq!(
            (n[1].elevation_deg, n[1].azimuth_deg, n[1].snr_db),
            (5, 12, None)
        );
    }
}

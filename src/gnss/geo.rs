//! WGS-84 geometry: geodesics (through geographiclib-rs) and coordinate frames
//! (through map_3d).
//!
//! Angles are in degrees everywhere in this module (map_3d works in radians; the
//! conversion happens here). Heights are metres above the WGS-84 ellipsoid.
//!
//! None of these functions panic: non-finite input, or a latitude outside
//! [-90, 90], gives NaN results instead of a wrong number.

use geographiclib_rs::{DirectGeodesic, Geodesic, InverseGeodesic};
use map_3d::Ellipsoid;

/// The solution of the inverse geodesic problem between two points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Inverse {
    /// Length of the geodesic, metres.
    pub distance_m: f64,
    /// Azimuth at the first point, degrees clockwise from north, in [-180, 180].
    pub azimuth1_deg: f64,
    /// Forward azimuth at the second point, degrees clockwise from north, in
    /// [-180, 180].
    pub azimuth2_deg: f64,
}

/// Whether a latitude/longitude pair can be handed to the geodesic solver.
fn usable(lat: f64, lon: f64) -> bool {
    lat.is_finite() && lon.is_finite() && lat.abs() <= 90.0
}

/// Geodesic between two points on WGS-84 (`geographiclib_rs::Geodesic::wgs84()`,
/// `InverseGeodesic`). NaN fields when a point is not usable (non-finite, or
/// |lat| > 90).
pub fn inverse(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> Inverse {
    if !usable(lat1, lon1) || !usable(lat2, lon2) {
        return Inverse {
            distance_m: f64::NAN,
            azimuth1_deg: f64::NAN,
            azimuth2_deg: f64::NAN,
        };
    }
    let (s12, azi1, azi2, _a12): (f64, f64, f64, f64) =
        Geodesic::wgs84().inverse(lat1, lon1, lat2, lon2);
    Inverse {
        distance_m: s12,
        azimuth1_deg: azi1,
        azimuth2_deg: azi2,
    }
}

/// Shortcut: `inverse(..).distance_m`.
pub fn distance_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    inverse(lat1, lon1, lat2, lon2).distance_m
}

/// Point reached from (`lat`, `lon`) along `azimuth_deg` (degrees clockwise from
/// north) after `distance_m` metres on the WGS-84 geodesic (`DirectGeodesic`).
/// Returns (lat, lon, azimuth at arrival); the longitude is in [-180, 180] and the
/// azimuth in [-180, 180].
pub fn direct(lat: f64, lon: f64, azimuth_deg: f64, distance_m: f64) -> (f64, f64, f64) {
    if !usable(lat, lon) || !azimuth_deg.is_finite() || !distance_m.is_finite() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    Geodesic::wgs84().direct(lat, lon, azimuth_deg, distance_m)
}

/// Geodetic (degrees, height above the ellipsoid in metres) to ECEF metres, via
/// map_3d (`Ellipsoid::WGS84`).
pub fn to_ecef(lat: f64, lon: f64, h_m: f64) -> [f64; 3] {
    let (x, y, z) =
        map_3d::geodetic2ecef(lat.to_radians(), lon.to_radians(), h_m, Ellipsoid::WGS84);
    [x, y, z]
}

/// ECEF metres to geodetic (latitude and longitude in degrees, height above the
/// ellipsoid in metres), via map_3d. The centre of the Earth gives NaN.
///
/// map_3d's closed form is exact to the nanometre near the surface but drifts with
/// height (about 1 cm at 1000 km, tens of metres at GNSS orbit height), so its
/// latitude and height are polished with a few Newton steps, each checked against
/// map_3d's own forward conversion in the local east-north-up frame. The longitude
/// (`atan2(y, x)`) needs none.
pub fn from_ecef(xyz: [f64; 3]) -> (f64, f64, f64) {
    let wgs = Ellipsoid::WGS84;
    let (mut lat, lon, mut h) = map_3d::ecef2geodetic(xyz[0], xyz[1], xyz[2], wgs);
    let (_, _, _, e2) = wgs.parameters();
    for _ in 0..4 {
        if !(lat.is_finite() && lon.is_finite() && h.is_finite()) {
            break;
        }
        let (x, y, z) = map_3d::geodetic2ecef(lat, lon, h, wgs);
        let (_east, north, up) = map_3d::uvw2enu(xyz[0] - x, xyz[1] - y, xyz[2] - z, lat, lon);
        if north.abs() < 1e-7 && up.abs() < 1e-7 {
            break;
        }
        // Radius of curvature in the meridian.
        let n = map_3d::get_radius_normal(lat, wgs);
        let m = n * (1.0 - e2) / (1.0 - e2 * lat.sin() * lat.sin());
        if m + h < 1.0 {
            // Deep inside the Earth: no meaningful refinement.
            break;
        }
        lat = (lat + north / (m + h))
            .clamp(-std::f64::consts::FRAC_PI_2, std::f64::consts::FRAC_PI_2);
        h += up;
    }
    (lat.to_degrees(), lon.to_degrees(), h)
}

/// Azimuth (degrees, [0, 360)), elevation (degrees, [-90, 90]) and range (metres)
/// of the ECEF point `target` seen from the geodetic observer (`lat`, `lon`, `h_m`
/// above the ellipsoid), through map_3d's `ecef2aer` (local east-north-up frame).
pub fn look_angles(lat: f64, lon: f64, h_m: f64, target: [f64; 3]) -> (f64, f64, f64) {
    let (az, el, range) = map_3d::ecef2aer(
        target[0],
        target[1],
        target[2],
        lat.to_radians(),
        lon.to_radians(),
        h_m,
        Ellipsoid::WGS84,
    );
    (normalize_deg(az.to_degrees()), el.to_degrees(), range)
}

/// Normalise an angle to [0, 360) degrees (NaN stays NaN).
pub fn normalize_deg(a: f64) -> f64 {
    let r = a.rem_euclid(360.0);
    // rem_euclid of a tiny negative number rounds to 360 itself.
    if r >= 360.0 {
        0.0
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn corpus_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/gps-sdr-sim")
    }

    fn norm(v: [f64; 3]) -> f64 {
        (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
    }

    fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
        [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
    }

    #[test]
    fn published_geodesic_distances() {
        // One degree of latitude at the equator on WGS-84.
        let d = distance_m(0.0, 0.0, 1.0, 0.0);
        assert!((d - 110_574.389).abs() < 1e-3, "{d}");
        // GeographicLib's documented example: Wellington, NZ to Salamanca, Spain.
        let inv = inverse(-41.32, 174.81, 40.96, -5.50);
        assert!(
            (inv.distance_m - 19_959_679.267).abs() < 1e-3,
            "{}",
            inv.distance_m
        );
        // ... and its direct example: 20000 km south-west of Perth, Australia.
        let (lat, lon, _) = direct(-32.06, 115.74, 225.0, 20_000e3);
        assert!((lat - 32.11195529).abs() < 5e-9, "{lat}");
        assert!((lon - -63.95925278).abs() < 5e-9, "{lon}");
        // Due north along a meridian has azimuth 0 at both ends.
        let n = inverse(52.0, 13.0, 53.0, 13.0);
        assert!(n.azimuth1_deg.abs() < 1e-9 && n.azimuth2_deg.abs() < 1e-9);
    }

    #[test]
    fn direct_inverts_inverse_to_a_millimetre() {
        let cases = [
            (52.520008, 13.404954, 52.526508, 13.419054),
            (-41.32, 174.81, 40.96, -5.50),
            (10.0, 179.9, -10.0, -179.9),
            (89.9, 0.0, 89.9, 180.0),
            (-33.0, -70.0, -33.000001, -70.000001),
        ];
        for (lat1, lon1, lat2, lon2) in cases {
            let inv = inverse(lat1, lon1, lat2, lon2);
            let (lat, lon, azi) = direct(lat1, lon1, inv.azimuth1_deg, inv.distance_m);
            let miss = distance_m(lat, lon, lat2, lon2);
            assert!(
                miss < 1e-3,
                "{lat1},{lon1} -> {lat2},{lon2}: missed by {miss} m"
            );
            let dazi = normalize_deg(azi - inv.azimuth2_deg);
            assert!(dazi.min(360.0 - dazi) < 1e-6, "{azi} vs {inv:?}");
        }
    }

    #[test]
    fn ecef_round_trip_to_a_millimetre() {
        for (lat, lon, h) in [
            (52.520008, 13.404954, 40.0),
            (0.0, 0.0, 0.0),
            (-89.999, 179.999, 8848.0),
            (90.0, 0.0, -100.0),
            (35.274015965, 137.014864092, 99.999),
            (-12.5, -77.0, 20_200_000.0),
        ] {
            let xyz = to_ecef(lat, lon, h);
            let back = from_ecef(xyz);
            let err = norm(sub(to_ecef(back.0, back.1, back.2), xyz));
            assert!(err < 1e-3, "{lat},{lon},{h}: {err} m");
            assert!((back.2 - h).abs() < 1e-3, "{lat},{lon},{h}: h {}", back.2);
        }
        // Equator, prime meridian: x is the semi-major axis.
        let x = to_ecef(0.0, 0.0, 0.0);
        assert!((x[0] - 6_378_137.0).abs() < 1e-6 && x[1].abs() < 1e-6 && x[2].abs() < 1e-6);
        // The centre of the Earth has no geodetic position, and that is no panic.
        assert!(from_ecef([0.0, 0.0, 0.0]).0.is_nan());
    }

    #[test]
    fn look_angles_of_points_overhead_and_to_the_east() {
        let (lat, lon, h) = (52.52, 13.40, 40.0);
        let up = to_ecef(lat, lon, h + 20_000_000.0);
        let (_, el, range) = look_angles(lat, lon, h, up);
        assert!((el - 90.0).abs() < 1e-6, "{el}");
        assert!((range - 20_000_000.0).abs() < 1e-3, "{range}");
        // A point a little east, at the same height, is at azimuth ~90 and just
        // below the horizon (the Earth curves away).
        let (la2, lo2, _) = direct(lat, lon, 90.0, 1000.0);
        let (az, el, range) = look_angles(lat, lon, h, to_ecef(la2, lo2, h));
        assert!((az - 90.0).abs() < 0.01, "{az}");
        assert!(el < 0.0 && el > -0.01, "{el}");
        assert!((range - 1000.0).abs() < 0.01, "{range}");
        // North-west: azimuth in [0, 360).
        let (la3, lo3, _) = direct(lat, lon, -45.0, 1000.0);
        let (az, _, _) = look_angles(lat, lon, h, to_ecef(la3, lo3, h));
        assert!((az - 315.0).abs() < 0.01, "{az}");
    }

    #[test]
    fn normalize_deg_range() {
        assert_eq!(normalize_deg(0.0), 0.0);
        assert_eq!(normalize_deg(360.0), 0.0);
        assert_eq!(normalize_deg(-90.0), 270.0);
        assert_eq!(normalize_deg(725.0), 5.0);
        assert_eq!(normalize_deg(-1e-20), 0.0);
        assert!(normalize_deg(f64::NAN).is_nan());
        assert!(normalize_deg(f64::INFINITY).is_nan());
    }

    #[test]
    fn bad_input_gives_nan_not_a_panic() {
        assert!(distance_m(f64::NAN, 0.0, 1.0, 1.0).is_nan());
        assert!(distance_m(91.0, 0.0, 1.0, 1.0).is_nan());
        assert!(direct(0.0, 0.0, f64::INFINITY, 1.0).0.is_nan());
        assert!(direct(0.0, 0.0, 0.0, f64::NAN).0.is_nan());
        let _ = to_ecef(f64::NAN, 0.0, 0.0);
        let _ = from_ecef([f64::NAN, f64::INFINITY, 0.0]);
        let _ = look_angles(f64::NAN, 0.0, 0.0, [1.0, 2.0, 3.0]);
    }

    /// gps-sdr-sim's circle_llh.csv and circle.csv are the same motion; our
    /// geodetic-to-ECEF conversion must reproduce one from the other.
    #[test]
    fn agrees_with_gps_sdr_sim_circle() {
        let dir = corpus_dir();
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .unwrap_or_else(|e| panic!("{}: {e}", dir.join(f).display()))
        };
        let (llh, ecef) = (read("circle_llh.csv"), read("circle.csv"));
        let parse = |line: &str| -> Vec<f64> {
            line.split(',')
                .map(|f| f.trim().parse::<f64>().expect("number"))
                .collect()
        };
        let llh: Vec<Vec<f64>> = llh
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(parse)
            .collect();
        let ecef: Vec<Vec<f64>> = ecef
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(parse)
            .collect();
        assert_eq!(llh.len(), 3000);
        assert_eq!(llh.len(), ecef.len());
        let mut worst = 0.0f64;
        for (a, b) in llh.iter().zip(&ecef) {
            assert_eq!(a[0], b[0], "time columns differ");
            let xyz = to_ecef(a[1], a[2], a[3]);
            let err = norm(sub(xyz, [b[1], b[2], b[3]]));
            worst = worst.max(err);
            assert!(err < 0.05, "t={}: {err} m", a[0]);
            // And back.
            let (lat, lon, h) = from_ecef([b[1], b[2], b[3]]);
            // (The two files are rounded to a millimetre and to 1e-9 degree.)
            assert!((lat - a[1]).abs() < 1e-7 && (lon - a[2]).abs() < 1e-7);
            assert!((h - a[3]).abs() < 0.01, "t={}: h {h} vs {}", a[0], a[3]);
        }
        assert!(worst < 0.05, "{worst}");
    }
}

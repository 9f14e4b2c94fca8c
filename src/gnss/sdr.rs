//! The same motion for RF-level GNSS signal simulators.
//!
//! gps-sdr-sim (github.com/osqzss/gps-sdr-sim) takes the receiver's motion at 10 Hz
//! in one of three forms, all written here in the number formats of its own sample
//! files:
//!
//! | option | [`MotionFormat`] | line |
//! |---|---|---|
//! | `-u` | [`MotionFormat::EcefCsv`] | `  0.1,-3813477.599, 3554276.226, 3662785.918` (t, ECEF x y z in m) |
//! | `-x` | [`MotionFormat::LlhCsv`] | `  0.1, 35.274023485, 137.014864053,      99.999` (t, lat, lon in deg, height in m) |
//! | `-g` | [`MotionFormat::NmeaGga`] | `$GPGGA,000000.10,4852.46626694,N,00217.58140440,E,1,05,2.87,+0.00,M,-21.3213,M,,*5F` |
//!
//! Heights: routes carry altitudes above mean sea level; the simulator wants
//! heights above the WGS-84 ellipsoid, so [`write_motion`] adds the geoid separation
//! (ellipsoid minus MSL) it is given. In GGA the two stay separate fields (altitude,
//! separation) and gps-sdr-sim adds them itself.
//!
//! gps-sdr-sim reads at most [`GPS_SDR_SIM_MAX_SAMPLES`] samples unless rebuilt.

use super::geo;
use super::route::{Route, Sample};
use crate::wire::nmea;

/// Most user-motion samples gps-sdr-sim reads by default (its `USER_MOTION_SIZE`):
/// 300 s at 10 Hz. Longer motion files are cut there (or gps-sdr-sim must be rebuilt
/// with a larger `USER_MOTION_SIZE`), so callers of [`write_motion`] should check
/// `samples.len()` against it.
pub const GPS_SDR_SIM_MAX_SAMPLES: usize = 3000;

/// Sample rate gps-sdr-sim assumes for user motion, Hz.
pub const GPS_SDR_SIM_RATE_HZ: f64 = 10.0;

/// Most samples [`samples`] produces (about 27.8 hours at 10 Hz), so that a typo in a
/// duration cannot exhaust memory.
pub const MAX_EXPORT_SAMPLES: usize = 1_000_000;

/// A user-motion file format of gps-sdr-sim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MotionFormat {
    /// `-u`: CSV `t,x,y,z`, ECEF metres.
    EcefCsv,
    /// `-x`: CSV `t,lat,lon,h`, degrees and metres above the ellipsoid.
    LlhCsv,
    /// `-g`: NMEA GGA sentences, altitude above MSL plus geoid separation.
    NmeaGga,
}

/// Samples of `route` at `rate_hz` (10 for gps-sdr-sim), at `t = k / rate_hz` for
/// every `k` with `t < duration_s`, as (t_s, Sample); at least one sample when the
/// rate is usable. `duration_s` that is negative, NaN or infinite means the route's
/// own duration. At most [`MAX_EXPORT_SAMPLES`]; none when `rate_hz` is not a finite
/// number > 0.
pub fn samples(route: &Route, rate_hz: f64, duration_s: f64) -> Vec<(f64, Sample)> {
    if !(rate_hz.is_finite() && rate_hz > 0.0) {
        return Vec::new();
    }
    let duration = if duration_s.is_finite() && duration_s >= 0.0 {
        duration_s
    } else {
        route.duration_s()
    };
    // Count of grid points strictly before the end, tolerant of rounding
    // (300 s at 10 Hz is 3000 samples, 0.0 .. 299.9).
    let exact = duration * rate_hz;
    let mut n = if exact.is_finite() {
        (exact - 1e-9).ceil().max(1.0)
    } else {
        1.0
    };
    if n > MAX_EXPORT_SAMPLES as f64 {
        n = MAX_EXPORT_SAMPLES as f64;
    }
    let n = n as usize;
    (0..n)
        .map(|k| {
            let t = k as f64 / rate_hz;
            (t, route.sample(t))
        })
        .collect()
}

/// Decimals for the time column: 1 as gps-sdr-sim writes when every time is a
/// multiple of 0.1 s, else 3.
fn time_decimals(samples: &[(f64, Sample)]) -> usize {
    let tenths = samples.iter().all(|(t, _)| {
        let x = t * 10.0;
        (x - x.round()).abs() < 1e-6
    });
    if tenths {
        1
    } else {
        3
    }
}

/// `(d)ddmm.mmmmmmmm` and hemisphere, with carries done in integers (eight
/// decimals of minutes, as gps-sdr-sim's NMEA sample).
fn nmea_angle(value: f64, deg_digits: usize, pos: char, neg: char) -> (String, char) {
    const SCALE: u64 = 100_000_000;
    let hemi = if value < 0.0 { neg } else { pos };
    let total = (value.abs() * 60.0 * SCALE as f64).round() as u64;
    let deg = total / (60 * SCALE);
    let rem = total % (60 * SCALE);
    let (min, frac) = (rem / SCALE, rem % SCALE);
    (format!("{deg:0deg_digits$}{min:02}.{frac:08}"), hemi)
}

/// `hhmmss.ss` of `seconds` since midnight (wrapping at 24 h).
fn nmea_time(seconds: f64) -> String {
    let cs = if seconds.is_finite() {
        ((seconds * 100.0).round() as i64).rem_euclid(8_640_000)
    } else {
        0
    };
    let (h, m, s, c) = (cs / 360_000, cs / 6000 % 60, cs / 100 % 60, cs % 100);
    format!("{h:02}{m:02}{s:02}.{c:02}")
}

/// Write `samples` in `format`. `geoid_sep_m` (WGS-84 ellipsoid minus mean sea
/// level, metres) is added to the routes' MSL altitudes for the CSV formats and
/// written as GGA's separation field; `start_utc_s` (seconds since midnight) is the
/// GGA time of `t = 0`. One line per sample, `\n`-terminated, in gps-sdr-sim's
/// number formats. Samples with non-finite coordinates are skipped.
pub fn write_motion(
    samples: &[(f64, Sample)],
    format: MotionFormat,
    geoid_sep_m: f64,
    start_utc_s: f64,
) -> String {
    let sep = if geoid_sep_m.is_finite() {
        geoid_sep_m
    } else {
        0.0
    };
    let start = if start_utc_s.is_finite() {
        start_utc_s
    } else {
        0.0
    };
    let td = time_decimals(samples);
    let mut out = String::with_capacity(samples.len() * 90);
    for (t, s) in samples {
        if !(t.is_finite() && s.lat.is_finite() && s.lon.is_finite() && s.alt_m.is_finite()) {
            continue;
        }
        let h = s.alt_m + sep;
        let line = match format {
            MotionFormat::EcefCsv => {
                let [x, y, z] = geo::to_ecef(s.lat, s.lon, h);
                format!("{t:5.td$},{x:12.3},{y:12.3},{z:12.3}")
            }
            MotionFormat::LlhCsv => {
                format!("{t:5.td$},{:13.9},{:14.9},{h:12.3}", s.lat, s.lon)
            }
            MotionFormat::NmeaGga => {
                let (la, ns) = nmea_angle(s.lat, 2, 'N', 'S');
                let (lo, ew) = nmea_angle(s.lon, 3, 'E', 'W');
                nmea::sentence(
                    nmea::Talker::Gp,
                    "GGA",
                    [
                        nmea_time(start + t),
                        la,
                        ns.to_string(),
                        lo,
                        ew.to_string(),
                        "1".to_string(),
                        "08".to_string(),
                        "0.90".to_string(),
                        format!("{:+.2}", s.alt_m),
                        "M".to_string(),
                        format!("{sep:.4}"),
                        "M".to_string(),
                        String::new(),
                        String::new(),
                    ],
                )
            }
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn number(field: &str, what: &str, line_no: usize) -> Result<f64, String> {
    let f = field.trim();
    match f.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!(
            "line {line_no}: {what} `{f}` is not a finite number"
        )),
    }
}

/// `hhmmss[.sss]` to seconds since midnight.
fn parse_nmea_time(s: &str) -> Option<f64> {
    if s.len() < 6 || !s.is_char_boundary(2) || !s.is_char_boundary(4) || !s.is_char_boundary(6) {
        return None;
    }
    let h: u32 = s[0..2].parse().ok()?;
    let m: u32 = s[2..4].parse().ok()?;
    let sec: f64 = s[4..].parse().ok()?;
    if h > 23 || m > 59 || !(0.0..61.0).contains(&sec) {
        return None;
    }
    Some(f64::from(h) * 3600.0 + f64::from(m) * 60.0 + sec)
}

/// Parse a motion file back (for tests and for `redrig gnss --check`): returns
/// `(t_s, lat, lon, h_ellipsoid)` per sample. Blank lines are skipped. For
/// [`MotionFormat::NmeaGga`], sentences other than GGA are skipped, checksums are
/// verified, `h` is altitude plus geoid separation (as gps-sdr-sim computes it), and
/// `t_s` counts from the first GGA's time (across midnight too). Errors name the
/// line (1-based).
pub fn read_motion(text: &str, format: MotionFormat) -> Result<Vec<(f64, f64, f64, f64)>, String> {
    let mut out = Vec::new();
    let mut first_time: Option<f64> = None;
    let mut day_offset = 0.0;
    let mut last_time: Option<f64> = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        match format {
            MotionFormat::EcefCsv | MotionFormat::LlhCsv => {
                let fields: Vec<&str> = line.split(',').collect();
                if fields.len() != 4 {
                    return Err(format!(
                        "line {n}: {} field(s): expected 4 (t,{})",
                        fields.len(),
                        if format == MotionFormat::EcefCsv {
                            "x,y,z"
                        } else {
                            "lat,lon,h"
                        }
                    ));
                }
                let t = number(fields[0], "time", n)?;
                if format == MotionFormat::EcefCsv {
                    let x = number(fields[1], "x", n)?;
                    let y = number(fields[2], "y", n)?;
                    let z = number(fields[3], "z", n)?;
                    let (lat, lon, h) = geo::from_ecef([x, y, z]);
                    if !(lat.is_finite() && lon.is_finite() && h.is_finite()) {
                        return Err(format!(
                            "line {n}: ECEF ({x}, {y}, {z}) has no geodetic position"
                        ));
                    }
                    out.push((t, lat, lon, h));
                } else {
                    let lat = number(fields[1], "latitude", n)?;
                    let lon = number(fields[2], "longitude", n)?;
                    let h = number(fields[3], "height", n)?;
                    if lat.abs() > 90.0 || lon.abs() > 180.0 {
                        return Err(format!(
                            "line {n}: position {lat}, {lon} out of range: expected \
                             -90..=90, -180..=180"
                        ));
                    }
                    out.push((t, lat, lon, h));
                }
            }
            MotionFormat::NmeaGga => {
                if !line.starts_with(['$', '!']) {
                    return Err(format!("line {n}: not an NMEA sentence: `{line}`"));
                }
                let s = nmea::parse_unbounded(line).map_err(|e| format!("line {n}: {e}"))?;
                if s.kind != "GGA" {
                    continue;
                }
                let time = parse_nmea_time(s.field(0)).ok_or_else(|| {
                    format!("line {n}: GGA time `{}` is not hhmmss.ss", s.field(0))
                })?;
                let (lat, lon) = s
                    .position()
                    .ok_or_else(|| format!("line {n}: GGA without a valid position"))?;
                let alt = number(s.field(8), "GGA altitude", n)?;
                let sep = if s.field(10).is_empty() {
                    0.0
                } else {
                    number(s.field(10), "GGA geoid separation", n)?
                };
                if let Some(prev) = last_time {
                    if time + day_offset < prev {
                        // Past midnight.
                        day_offset += 86_400.0;
                    }
                }
                let abs = time + day_offset;
                last_time = Some(abs);
                let t0 = *first_time.get_or_insert(abs);
                out.push((abs - t0, lat, lon, alt + sep));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn corpus(name: &str) -> Option<String> {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/gps-sdr-sim")
            .join(name);
        match std::fs::read_to_string(&p) {
            Ok(t) => Some(t),
            Err(e) => panic!("{}: {e}", p.display()),
        }
    }

    fn norm3(a: [f64; 3], b: [f64; 3]) -> f64 {
        ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
    }

    #[test]
    fn reads_the_gps_sdr_sim_samples() {
        let (Some(ecef), Some(llh), Some(gga)) = (
            corpus("circle.csv"),
            corpus("circle_llh.csv"),
            corpus("triumphv3.txt"),
        ) else {
            return;
        };
        let e = read_motion(&ecef, MotionFormat::EcefCsv).unwrap();
        let l = read_motion(&llh, MotionFormat::LlhCsv).unwrap();
        assert_eq!(e.len(), GPS_SDR_SIM_MAX_SAMPLES);
        assert_eq!(l.len(), e.len());
        for (a, b) in l.iter().zip(&e) {
            assert_eq!(a.0, b.0);
            let pa = geo::to_ecef(a.1, a.2, a.3);
            let pb = geo::to_ecef(b.1, b.2, b.3);
            assert!(norm3(pa, pb) < 0.05, "t={}: {} m", a.0, norm3(pa, pb));
        }
        assert!((l[0].1 - 35.274015965).abs() < 1e-12 && (l[0].3 - 99.999).abs() < 1e-12);
        assert!((l.last().unwrap().0 - 299.9).abs() < 1e-12);

        let g = read_motion(&gga, MotionFormat::NmeaGga).unwrap();
        assert_eq!(g.len(), 1561);
        let (t, lat, lon, h) = g[0];
        assert_eq!(t, 0.0);
        assert!((lat - (48.0 + 52.46626694 / 60.0)).abs() < 1e-12);
        assert!((lon - (2.0 + 17.58140440 / 60.0)).abs() < 1e-12);
        assert!((h - -21.3213).abs() < 1e-9);
        assert!((g[1].0 - 0.1).abs() < 1e-9);
        assert!((g.last().unwrap().0 - 156.0).abs() < 1e-9);
        // 10 Hz throughout.
        for w in g.windows(2) {
            assert!((w[1].0 - w[0].0 - 0.1).abs() < 1e-6);
        }
    }

    #[test]
    fn our_lines_look_like_gps_sdr_sim_s() {
        let route = Route::stay("x", 35.274015965, 137.014864092, 99.999, 1.0);
        let s = samples(&route, 10.0, -1.0);
        assert_eq!(s.len(), 10);
        let llh = write_motion(&s[..1], MotionFormat::LlhCsv, 0.0, 0.0);
        assert_eq!(llh, "  0.0, 35.274015965, 137.014864092,      99.999\n");
        let ecef = write_motion(&s[1..2], MotionFormat::EcefCsv, 0.0, 0.0);
        // circle.csv's first line is this point within millimetres.
        let f: Vec<f64> = ecef
            .trim()
            .split(',')
            .map(|x| x.trim().parse().unwrap())
            .collect();
        assert_eq!(ecef.find(','), Some(5));
        assert_eq!(ecef.len(), 5 + 3 * 13 + 1);
        assert!(norm3([f[1], f[2], f[3]], [-3813477.954, 3554276.552, 3662785.237]) < 0.05);
        let p = Route::stay(
            "p",
            48.0 + 52.46626694 / 60.0,
            2.0 + 17.58140440 / 60.0,
            0.0,
            1.0,
        );
        let gga = write_motion(
            &samples(&p, 10.0, 0.2)[1..],
            MotionFormat::NmeaGga,
            -21.3213,
            0.0,
        );
        assert_eq!(
            gga,
            format!(
                "{}\n",
                nmea::sentence(
                    nmea::Talker::Gp,
                    "GGA",
                    "000000.10,4852.46626694,N,00217.58140440,E,1,08,0.90,+0.00,M,-21.3213,M,,"
                        .split(',')
                )
            )
        );
    }

    #[test]
    fn samples_follow_the_grid() {
        let route = Route::from_waypoints(
            "r",
            &[
                (52.52, 13.405, 40.0, 0.0, 0.0),
                (52.52, 13.445, 40.0, 10.0, 0.0),
            ],
        )
        .unwrap();
        let d = route.duration_s();
        let s = samples(&route, 10.0, 300.0);
        assert_eq!(s.len(), GPS_SDR_SIM_MAX_SAMPLES);
        assert!((s[2999].0 - 299.9).abs() < 1e-9);
        let all = samples(&route, 10.0, f64::NAN);
        assert_eq!(all.len(), (d * 10.0).ceil() as usize);
        assert!(all.last().unwrap().0 < d);
        assert!(samples(&route, 0.0, 10.0).is_empty());
        assert!(samples(&route, f64::NAN, 10.0).is_empty());
        assert_eq!(samples(&route, 10.0, 0.0).len(), 1);
        assert_eq!(samples(&route, 1e9, 1e9).len(), MAX_EXPORT_SAMPLES);
        // Times not on tenths get three decimals.
        let odd = samples(&route, 3.0, 1.0);
        let text = write_motion(&odd, MotionFormat::LlhCsv, 0.0, 0.0);
        assert!(text.lines().nth(1).unwrap().starts_with("0.333,"), "{text}");
    }

    /// Written and read back, every format gives the route's positions to 0.1 m.
    #[test]
    fn round_trip_in_every_format() {
        let route = Route::from_waypoints(
            "r",
            &[
                (52.520008, 13.404954, 40.0, 0.0, 2.0),
                (52.5215, 13.4090, 44.5, 1.4, 3.0),
                (-0.00001, -0.00002, -12.25, 4000.0, 0.0),
                (-33.8568, 151.2153, 8848.86, 4000.0, 0.0),
            ],
        )
        .unwrap();
        let sep = 39.87;
        let rate = 10.0;
        let smp: Vec<(f64, Sample)> = samples(&route, rate, f64::NAN)
            .into_iter()
            .step_by(97)
            .collect();
        assert!(smp.len() > 50);
        // Start late in the day, so the NMEA times cross midnight.
        let start = 86_400.0 - 1_000.0;
        for format in [
            MotionFormat::EcefCsv,
            MotionFormat::LlhCsv,
            MotionFormat::NmeaGga,
        ] {
            let text = write_motion(&smp, format, sep, start);
            let back = read_motion(&text, format).unwrap();
            assert_eq!(back.len(), smp.len(), "{format:?}");
            for ((t, s), (t2, lat, lon, h)) in smp.iter().zip(&back) {
                assert!((t - t2).abs() < 0.006, "{format:?}: t {t} vs {t2}");
                let truth = route.sample(*t);
                let horiz = geo::distance_m(truth.lat, truth.lon, *lat, *lon);
                let vert = (truth.alt_m + sep - h).abs();
                assert!(
                    horiz < 0.1 && vert < 0.1,
                    "{format:?} t={t}: {horiz} m, {vert} m"
                );
                assert_eq!(truth, *s);
            }
        }
    }

    #[test]
    fn bad_files_are_errors_not_panics() {
        for (text, format, piece) in [
            ("0.0,1,2\n", MotionFormat::EcefCsv, "line 1: 3 field(s)"),
            ("0.0,1,2,x\n", MotionFormat::LlhCsv, "line 1: height `x`"),
            ("\n0.0,95,2,3\n", MotionFormat::LlhCsv, "line 2: position"),
            ("0.0,0,0,0\n", MotionFormat::EcefCsv, "no geodetic position"),
            (
                "0.0,nan,0,0\n",
                MotionFormat::EcefCsv,
                "not a finite number",
            ),
            ("hello\n", MotionFormat::NmeaGga, "not an NMEA sentence"),
            (
                "$GPGGA,000000.00,4852.4,N,00217.5,E,1,05,2.87,+0.00,M,-21.3213,M,,*00\n",
                MotionFormat::NmeaGga,
                "checksum",
            ),
        ] {
            let e = read_motion(text, format).unwrap_err();
            assert!(e.contains(piece), "{e}");
        }
        let bad_time = nmea::frame("GPGGA,99,4852.4,N,00217.5,E,1,05,2.87,+0.00,M,0,M,,");
        assert!(read_motion(&bad_time, MotionFormat::NmeaGga)
            .unwrap_err()
            .contains("time"));
        let no_pos = nmea::frame("GPGGA,000000.00,,,,,0,00,99.99,,,,,,");
        assert!(read_motion(&no_pos, MotionFormat::NmeaGga)
            .unwrap_err()
            .contains("position"));
        let multibyte = nmea::frame("GPGGA,00é000.00,4852.4,N,00217.5,E,1,05,2.87,+0.00,M,0,M,,");
        assert!(read_motion(&multibyte, MotionFormat::NmeaGga).is_err());
        // Other sentences are skipped.
        let rmc = nmea::frame("GPRMC,000000.00,V,,,,,,,010100,,,N");
        assert!(read_motion(&rmc, MotionFormat::NmeaGga).unwrap().is_empty());
        // Non-finite samples are not written.
        let s = Sample {
            lat: f64::NAN,
            lon: 0.0,
            alt_m: 0.0,
            speed_mps: 0.0,
            course_deg: None,
        };
        assert_eq!(
            write_motion(&[(0.0, s)], MotionFormat::NmeaGga, 0.0, 0.0),
            ""
        );
    }
}

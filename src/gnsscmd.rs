//! `redrig gnss`: the GNSS simulator by hand — feed a place, a route or a recording to
//! a receiver input line while wiring up a bench, or export a route as user motion for
//! an RF signal simulator.

use crate::clock::Clock;
use crate::drivers::gnss::{GnssOptions, SerialGnss};
use crate::drivers::Gnss;
use crate::gnss::replay::Recording;
use crate::gnss::route::{Route, RouteLibrary};
use crate::gnss::scene::GnssChange;
use crate::gnss::sdr::{self, MotionFormat, GPS_SDR_SIM_MAX_SAMPLES, GPS_SDR_SIM_RATE_HZ};
use crate::verdict::exit;
use crate::wire::nmea::Talker;
use std::path::PathBuf;
use std::sync::Arc;

/// What to feed or export.
#[derive(Debug, Clone)]
pub enum Source {
    Place(String),
    Route { name: String, kmh: Option<f64> },
    Replay(PathBuf),
}

/// Where it goes.
#[derive(Debug, Clone)]
pub enum Sink {
    /// NMEA on a serial line.
    Port {
        port: String,
        baud: u32,
        rate_hz: u32,
        talker: String,
        /// Seconds to feed a place (routes and replays end by themselves).
        seconds: Option<f64>,
        evidence: PathBuf,
    },
    /// A gps-sdr-sim user-motion file.
    Export {
        file: PathBuf,
        format: String,
        geoid_sep: f64,
        seconds: Option<f64>,
    },
}

fn fail(msg: impl std::fmt::Display) -> i32 {
    eprintln!("redrig gnss: {msg}");
    exit::USAGE
}

fn load_route(lib: &RouteLibrary, name: &str, kmh: Option<f64>) -> Result<Route, String> {
    let r = lib.route(name).ok_or_else(|| {
        format!(
            "no route `{name}`; known routes: {}",
            lib.route_names().join(", ")
        )
    })?;
    match kmh {
        Some(v) if !(v.is_finite() && v > 0.0 && v <= 1000.0) => {
            Err(format!("speed {v} km/h: expected 0 < speed ≤ 1000"))
        }
        Some(v) => Ok(r.with_speed(v / 3.6)),
        None => Ok(r.clone()),
    }
}

/// Run the command; returns the exit code.
pub async fn gnss(routes: PathBuf, source: Source, sink: Sink) -> i32 {
    let lib = match RouteLibrary::load_dir(&routes) {
        Ok(l) => l,
        Err(errors) => {
            for e in errors.iter() {
                eprintln!("{e}");
            }
            return exit::USAGE;
        }
    };
    // The motion as a route (a place is a route that stays there).
    let route = match &source {
        Source::Place(name) => match lib.place(name) {
            Some(p) => Route::stay(name, p.lat, p.lon, p.alt_m, 3600.0),
            None => {
                return fail(format!(
                    "no place `{name}`; known places: {}",
                    lib.place_names().join(", ")
                ))
            }
        },
        Source::Route { name, kmh } => match load_route(&lib, name, *kmh) {
            Ok(r) => r,
            Err(e) => return fail(e),
        },
        Source::Replay(_) => Route::stay("none", 0.0, 0.0, 0.0, 0.0),
    };
    match sink {
        Sink::Export {
            file,
            format,
            geoid_sep,
            seconds,
        } => {
            if matches!(source, Source::Replay(_)) {
                return fail("a recording cannot be exported as motion; use --route or --place");
            }
            let format = match format.as_str() {
                "ecef" => MotionFormat::EcefCsv,
                "llh" => MotionFormat::LlhCsv,
                "gga" => MotionFormat::NmeaGga,
                f => return fail(format!("format `{f}`: expected ecef, llh or gga")),
            };
            let duration = seconds.unwrap_or(route.duration_s());
            let samples = sdr::samples(&route, GPS_SDR_SIM_RATE_HZ, duration);
            if samples.len() > GPS_SDR_SIM_MAX_SAMPLES {
                eprintln!(
                    "note: {} samples; gps-sdr-sim reads only the first {GPS_SDR_SIM_MAX_SAMPLES} ({} s) unless rebuilt with a larger USER_MOTION_SIZE",
                    samples.len(),
                    GPS_SDR_SIM_MAX_SAMPLES / 10
                );
            }
            let text = sdr::write_motion(&samples, format, geoid_sep, 0.0);
            if let Err(e) = std::fs::write(&file, text) {
                return fail(format!("{}: {e}", file.display()));
            }
            println!(
                "{}: {} samples at 10 Hz ({:.1} s, {:.0} m)",
                file.display(),
                samples.len(),
                samples.len() as f64 / 10.0,
                route.length_m()
            );
            exit::PASS
        }
        Sink::Port {
            port,
            baud,
            rate_hz,
            talker,
            seconds,
            evidence,
        } => {
            let talker = match Talker::parse(&talker) {
                Some(t @ (Talker::Gp | Talker::Gn)) => t,
                _ => return fail(format!("talker `{talker}`: expected GP or GN")),
            };
            if ![1, 5, 10].contains(&rate_hz) {
                return fail(format!("rate {rate_hz} Hz: expected 1, 5 or 10"));
            }
            let need = crate::config::gnss_min_baud(rate_hz, talker.as_str());
            if baud < need {
                return fail(format!(
                    "baud {baud} cannot carry {rate_hz} Hz of {} sentences: use at least {need}",
                    talker.as_str()
                ));
            }
            let clock = Clock::start(1.0);
            let options = GnssOptions {
                rate_hz,
                talker,
                // A real UART paces itself; a pseudo-terminal given here is paced too.
                pace_bytes: port.starts_with("/dev/pts/"),
                ..GnssOptions::default()
            };
            let (p, ev) = (port.clone(), evidence.clone());
            let gnss = match tokio::task::spawn_blocking(move || {
                // `usb:`/`usb-path:` selectors name the adapter by identity.
                let p = crate::ports::resolve(&p)?;
                SerialGnss::open(&p, baud, clock, options, &ev)
            })
            .await
            {
                Ok(Ok(g)) => g,
                Ok(Err(e)) => {
                    eprintln!("redrig gnss: {e}");
                    return exit::INCONCLUSIVE;
                }
                Err(e) => {
                    eprintln!("redrig gnss: {e}");
                    return exit::INCONCLUSIVE;
                }
            };
            let run_for = match &source {
                Source::Replay(path) => {
                    let rec = match Recording::load(path) {
                        Ok(r) => r,
                        Err(e) => return fail(format!("{}: {e}", path.display())),
                    };
                    let d = rec.duration_ms() as f64 / 1000.0 + 1.0;
                    if let Err(e) = gnss.replay(Arc::new(rec)).await {
                        eprintln!("redrig gnss: {e}");
                        return exit::INCONCLUSIVE;
                    }
                    d
                }
                Source::Place(_) => {
                    let s = route.start();
                    if let Err(e) = gnss
                        .apply(GnssChange::Still {
                            lat: s.lat,
                            lon: s.lon,
                            alt_m: s.alt_m,
                        })
                        .await
                    {
                        eprintln!("redrig gnss: {e}");
                        return exit::INCONCLUSIVE;
                    }
                    seconds.unwrap_or(f64::INFINITY)
                }
                Source::Route { .. } => {
                    let d = route.duration_s();
                    if let Err(e) = gnss.apply(GnssChange::Route(Arc::new(route))).await {
                        eprintln!("redrig gnss: {e}");
                        return exit::INCONCLUSIVE;
                    }
                    seconds.unwrap_or(d + 1.0)
                }
            };
            println!(
                "feeding {port} at {baud} baud, {rate_hz} Hz ({}); sentences in {}; Ctrl-C stops",
                if run_for.is_finite() {
                    format!("{run_for:.0} s")
                } else {
                    "until stopped".into()
                },
                evidence.join("gnss.nmea").display()
            );
            let sleep = async {
                if run_for.is_finite() {
                    clock.sleep(run_for).await
                } else {
                    std::future::pending::<()>().await
                }
            };
            tokio::select! {
                _ = sleep => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            let code = match gnss.status().error() {
                Some(e) => {
                    eprintln!("redrig gnss: {e}");
                    exit::INCONCLUSIVE
                }
                None => exit::PASS,
            };
            println!(
                "{} sentences written, {} epochs skipped, {} not delivered",
                gnss.log().since(crate::drivers::eventlog::Mark(0)).len()
                    + gnss.log().evicted_since(crate::drivers::eventlog::Mark(0)) as usize,
                gnss.skipped_epochs(),
                gnss.stalled_epochs()
            );
            code
        }
    }
}

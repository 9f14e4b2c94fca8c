//! GNSS acceptance tests: what `SerialGnss` writes on a pseudo-terminal, read back by
//! parsers that are not the rig's own.
//!
//! - A route round trip through the `nmea` crate: every sentence parses, positions are
//!   within a metre of the route at the sentence's UTC, epochs are whole periods apart,
//!   in receiver order, and agree with `Gnss::fed`.
//! - Fix / no-fix states through outages (indoors, jamming).
//! - The gpsd regression corpus replayed byte for byte into the virtual watch's NMEA
//!   consumer, whose fixes are compared with gpsd's decoded output (`*.log.chk`).
//! - A live cross-check against gpsd itself (skipped when gpsd is not installed).
//! - Timing contracts of scene changes and replays: a change shows from the next
//!   epoch, a replay started mid-epoch keeps its first epoch, a reset during a replay
//!   resumes the scene now. (The route and outage tests allow the first epoch after a
//!   change to show the old scene, so that they check everything else regardless.)
//!
//! The test holds the master side of each pseudo-terminal and plays the device; the
//! driver opens the slave path as it would a bench adapter. No assertion is on wall
//! time: waits are bounded, and epochs the driver skips under load are allowed for
//! only as far as the driver reports them (`skipped_epochs`).

mod support;

use nmea::sentences::rmc::RmcStatusOfFix;
use nmea::sentences::{FixType, GgaData, RmcData, ZdaData};
use nmea::ParseResult;
use redrig::clock::{Clock, DeviceMs};
use redrig::drivers::gnss::{GnssOptions, SerialGnss};
use redrig::drivers::{FedEpoch, Gnss, Mark};
use redrig::gnss::geo;
use redrig::gnss::replay::Recording;
use redrig::gnss::route::{Route, RouteLibrary};
use redrig::gnss::scene::{GnssChange, OutageKind};
use redrig::wire::nmea::Talker;
use redrig_virtual_lab::watch::nmea as watch;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{find, PtyDevice};

/// Device seconds to wait for an event the driver produces every epoch.
const WAIT: f64 = 120.0;
/// Wall time to wait for bytes or files the driver writes.
const WALL: Duration = Duration::from_secs(20);
/// Metres per second in a knot.
const KNOT_MPS: f64 = 1852.0 / 3600.0;
/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn route(name: &str, speed_mps: f64) -> Route {
    let lib = RouteLibrary::load_dir(&fixtures().join("routes")).unwrap_or_else(|e| panic!("{e}"));
    lib.route(name)
        .unwrap_or_else(|| panic!("route {name} missing"))
        .with_speed(speed_mps)
}

/// Sleep (wall time) until device time `t` has passed.
fn sleep_until_device(clock: &Clock, t: DeviceMs) {
    while clock.now() < t {
        std::thread::sleep(clock.until(t as f64) + Duration::from_millis(1));
    }
}

// ---------------------------------------------------------------------------------
// Pseudo-terminal: the device side

/// Whether `bytes` end with a complete line (CR LF) starting with `prefix`.
fn last_line_starts(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes
        .strip_suffix(b"\r\n")
        .and_then(|b| b.rsplit(|&c| c == b'\n').next())
        .is_some_and(|l| l.starts_with(prefix))
}

// ---------------------------------------------------------------------------------
// What went over the wire, through the `nmea` crate

/// One sentence as the device received it, accepted by the `nmea` crate.
struct WireSentence {
    line: String,
    /// Address: talker and sentence type, e.g. `GNRMC`.
    address: String,
    parsed: ParseResult,
}

/// Every complete line of `bytes` (CR LF terminated), each of which the `nmea` crate
/// must accept (framing, checksum, fields). Panics on the first it refuses.
fn wire_sentences(bytes: &[u8]) -> Vec<WireSentence> {
    let text = std::str::from_utf8(bytes).expect("NMEA output is ASCII");
    let mut out = Vec::new();
    for piece in text.split_inclusive('\n') {
        let Some(line) = piece.strip_suffix("\r\n") else {
            assert!(!piece.ends_with('\n'), "line without CR LF: {piece:?}");
            continue; // the incomplete tail
        };
        let parsed = nmea::parse_str(line)
            .unwrap_or_else(|e| panic!("the nmea crate refuses {line:?}: {e}"));
        let address = line
            .get(1..6)
            .unwrap_or_else(|| panic!("short sentence {line:?}"))
            .to_string();
        out.push(WireSentence {
            line: line.to_string(),
            address,
            parsed,
        });
    }
    out
}

/// Milliseconds since midnight of a time as the `nmea` crate gives it (its `Display`
/// form `HH:MM:SS[.fraction]`), rounded to the millisecond.
fn tod_ms(t: &impl std::fmt::Display) -> i64 {
    let s = t.to_string();
    let (hms, frac) = s.split_once('.').unwrap_or((&s, ""));
    let parts: Vec<i64> = hms.split(':').map(|p| p.parse().unwrap()).collect();
    assert_eq!(parts.len(), 3, "time {s}");
    let digits: String = frac.chars().chain("000000000".chars()).take(9).collect();
    let nanos: i64 = digits.parse().unwrap();
    ((parts[0] * 60 + parts[1]) * 60 + parts[2]) * 1000 + (nanos + 500_000) / 1_000_000
}

/// Unix milliseconds of midnight of a date in `YYYY-MM-DD` form.
fn date_ms(y: i32, m: u8, d: u8) -> i64 {
    let month = time::Month::try_from(m).unwrap();
    time::Date::from_calendar_date(y, month, d)
        .unwrap()
        .midnight()
        .assume_utc()
        .unix_timestamp()
        * 1000
}

fn ymd(t: &impl std::fmt::Display) -> (i32, u8, u8) {
    let s = t.to_string();
    let p: Vec<&str> = s.split('-').collect();
    assert_eq!(p.len(), 3, "date {s}");
    (
        p[0].parse().unwrap(),
        p[1].parse().unwrap(),
        p[2].parse().unwrap(),
    )
}

/// ISO-8601 (RFC 3339) UTC as gpsd writes it, to Unix milliseconds.
fn iso_ms(s: &str) -> i64 {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("time {s:?}: {e}"));
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// One epoch on the wire: RMC first, GGA third, ZDA last (checked by [`wire_epochs`]).
struct WireEpoch {
    sentences: Vec<WireSentence>,
    /// UTC from the RMC date and time, Unix ms.
    utc_ms: i64,
}

impl WireEpoch {
    fn rmc(&self) -> &RmcData {
        match &self.sentences[0].parsed {
            ParseResult::RMC(r) => r,
            other => panic!("expected RMC, got {other:?}"),
        }
    }

    fn gga(&self) -> &GgaData {
        match &self.sentences[2].parsed {
            ParseResult::GGA(g) => g,
            other => panic!("expected GGA, got {other:?}"),
        }
    }

    fn zda(&self) -> &ZdaData {
        match &self.sentences[self.sentences.len() - 1].parsed {
            ParseResult::ZDA(z) => z,
            other => panic!("expected ZDA, got {other:?}"),
        }
    }

    fn rmc_pos(&self) -> Option<(f64, f64)> {
        self.rmc().lat.zip(self.rmc().lon)
    }

    fn gga_pos(&self) -> Option<(f64, f64)> {
        self.gga().latitude.zip(self.gga().longitude)
    }

    fn has_fix(&self) -> bool {
        self.rmc().status_of_fix != RmcStatusOfFix::Invalid
    }

    fn lines(&self) -> String {
        self.sentences
            .iter()
            .map(|s| s.line.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Split the sentences into epochs (each starts with RMC) and check each one: receiver
/// order `RMC VTG GGA [GSA… GSV…] ZDA` under the expected talkers, GSA/GSV only in the
/// first epoch of each second, GSV sets numbered, one UTC time in RMC, GGA and ZDA, the
/// same date in RMC and ZDA. Sentences before the first RMC and an incomplete last
/// epoch are left out.
fn wire_epochs(sentences: Vec<WireSentence>, talker: Talker, rate_hz: u32) -> Vec<WireEpoch> {
    let period = 1000 / i64::from(rate_hz);
    let mut groups: Vec<Vec<WireSentence>> = Vec::new();
    for s in sentences {
        if s.address.ends_with("RMC") {
            groups.push(Vec::new());
        }
        if let Some(g) = groups.last_mut() {
            g.push(s);
        }
    }
    if groups
        .last()
        .is_some_and(|g| !g.last().is_some_and(|s| s.address.ends_with("ZDA")))
    {
        groups.pop();
    }
    let t = talker.as_str();
    groups
        .into_iter()
        .map(|g| {
            let text = g
                .iter()
                .map(|s| s.line.as_str())
                .collect::<Vec<_>>()
                .join("\n");
            let addr: Vec<&str> = g.iter().map(|s| s.address.as_str()).collect();
            assert!(
                addr.len() >= 4
                    && addr[0] == format!("{t}RMC")
                    && addr[1] == format!("{t}VTG")
                    && addr[2] == format!("{t}GGA")
                    && addr[addr.len() - 1] == format!("{t}ZDA"),
                "epoch not in receiver order RMC VTG GGA … ZDA:\n{text}"
            );
            let middle = &addr[3..addr.len() - 1];
            let gsa = middle.iter().take_while(|a| a.ends_with("GSA")).count();
            let gsa_talker = if talker == Talker::Gn { "GN" } else { t };
            assert!(
                middle[..gsa].iter().all(|a| a.starts_with(gsa_talker)),
                "GSA under the wrong talker:\n{text}"
            );
            let gsv = &middle[gsa..];
            let order = ["GP", "GL", "GA"];
            let rank = |a: &str| order.iter().position(|o| a.starts_with(o));
            assert!(
                gsv.iter().all(|a| a.ends_with("GSV")
                    && rank(a).is_some()
                    && (talker == Talker::Gn || a.starts_with(t))),
                "after GSA only GSV of the receiver's systems:\n{text}"
            );
            assert!(
                gsv.windows(2).all(|w| rank(w[0]) <= rank(w[1])),
                "GSV not in system order:\n{text}"
            );
            assert!(gsa > 0 || gsv.is_empty(), "GSV without GSA:\n{text}");
            // GSV sets numbered 1..n per talker.
            let mut sets: BTreeMap<&str, Vec<(u16, u16)>> = BTreeMap::new();
            for s in &g {
                if let ParseResult::GSV(v) = &s.parsed {
                    sets.entry(&s.address[..2])
                        .or_default()
                        .push((v.sentence_num, v.number_of_sentences));
                }
            }
            for (tk, nums) in &sets {
                let n = nums.len() as u16;
                assert!(
                    nums.iter()
                        .enumerate()
                        .all(|(i, &(k, total))| k == i as u16 + 1 && total == n),
                    "{tk}GSV set numbered {nums:?}:\n{text}"
                );
            }
            let mut e = WireEpoch {
                sentences: g,
                utc_ms: 0,
            };
            let time = e.rmc().fix_time.map(|x| tod_ms(&x)).expect("RMC time");
            let (y, m, d) = ymd(&e.rmc().fix_date.expect("RMC date"));
            e.utc_ms = date_ms(y, m, d) + time;
            assert_eq!(
                e.gga().fix_time.map(|x| tod_ms(&x)),
                Some(time),
                "GGA time:\n{text}"
            );
            let zda = e.zda();
            assert_eq!(
                zda.utc_time.map(|x| tod_ms(&x)),
                Some(time),
                "ZDA time:\n{text}"
            );
            assert_eq!(
                (
                    zda.year.map(i32::from),
                    zda.month,
                    zda.day,
                    zda.local_zone_hours,
                    zda.local_zone_minutes
                ),
                (Some(y), Some(m), Some(d), Some(0), Some(0)),
                "ZDA date:\n{text}"
            );
            assert_eq!(
                gsa > 0,
                e.utc_ms.rem_euclid(1000) < period,
                "GSA/GSV are written in the first epoch of each second only:\n{text}"
            );
            e
        })
        .collect()
}

/// Checks shared by every scene test: UTC on the period grid and from the device
/// clock, consecutive epochs one period apart except where the driver reports skipped
/// epochs, and `fed()` agreeing epoch by epoch (same UTC, fix or not, position within
/// the NMEA rounding). Returns the fed record of each wire epoch.
fn check_against_fed(
    epochs: &[WireEpoch],
    fed: &[redrig::drivers::eventlog::Record<FedEpoch>],
    clock: &Clock,
    rate_hz: u32,
    skipped: u64,
) -> Vec<FedEpoch> {
    let period = 1000 / i64::from(rate_hz);
    assert!(
        epochs.len() >= 3,
        "only {} epochs on the wire",
        epochs.len()
    );
    let mut missing = 0;
    for w in epochs.windows(2) {
        let step = w[1].utc_ms - w[0].utc_ms;
        assert!(
            step > 0 && step % period == 0,
            "UTC steps by {step} ms at {} Hz:\n{}\n--\n{}",
            rate_hz,
            w[0].lines(),
            w[1].lines()
        );
        missing += (step / period - 1) as u64;
    }
    assert!(
        missing <= skipped,
        "{missing} epochs missing on the wire, the driver reports {skipped} skipped"
    );
    if skipped == 0 {
        assert_eq!(missing, 0);
    }
    let by_utc: HashMap<i64, (DeviceMs, FedEpoch)> = fed
        .iter()
        .map(|r| (r.value.utc_ms, (r.t, r.value)))
        .collect();
    let first = epochs[0].utc_ms;
    let last = epochs[epochs.len() - 1].utc_ms;
    let fed_in_range = fed
        .iter()
        .filter(|r| (first..=last).contains(&r.value.utc_ms))
        .count();
    assert_eq!(
        fed_in_range,
        epochs.len(),
        "fed() records and epochs on the wire differ in number between the first and last epoch read"
    );
    epochs
        .iter()
        .map(|e| {
            assert_eq!(
                e.utc_ms.rem_euclid(period),
                0,
                "off the grid:\n{}",
                e.lines()
            );
            let (t, f) = *by_utc
                .get(&e.utc_ms)
                .unwrap_or_else(|| panic!("no fed() record for epoch\n{}", e.lines()));
            // True time (no time shift in these scenes): the epoch's device time on
            // the device clock, date included.
            assert_eq!(clock.utc_ms(t), e.utc_ms, "UTC of\n{}", e.lines());
            assert_eq!(f.fix.is_some(), e.has_fix(), "fed() vs\n{}", e.lines());
            match f.fix {
                Some(p) => {
                    for (what, pos) in [("RMC", e.rmc_pos()), ("GGA", e.gga_pos())] {
                        let (lat, lon) = pos
                            .unwrap_or_else(|| panic!("{what} without position:\n{}", e.lines()));
                        let d = geo::distance_m(p.lat, p.lon, lat, lon);
                        assert!(d < 0.05, "{what} {d:.3} m from fed():\n{}", e.lines());
                    }
                    assert!(
                        e.gga().fix_type.is_some_and(FixType::is_valid),
                        "GGA quality with a fix:\n{}",
                        e.lines()
                    );
                }
                None => assert_no_fix(e),
            }
            f
        })
        .collect()
}

/// The no-fix forms as the `nmea` crate reads them: RMC status V, GGA quality 0, no
/// position in either.
fn assert_no_fix(e: &WireEpoch) {
    assert!(
        !e.has_fix()
            && e.rmc_pos().is_none()
            && e.rmc().lat.is_none()
            && e.rmc().lon.is_none()
            && e.gga().fix_type == Some(FixType::Invalid)
            && e.gga().latitude.is_none()
            && e.gga().longitude.is_none(),
        "expected the no-fix forms:\n{}",
        e.lines()
    );
}

/// Device time of an epoch (no time shift in these scenes).
fn epoch_t(clock: &Clock, e: &WireEpoch) -> i64 {
    e.utc_ms - clock.device_epoch_unix_ms
}

// ---------------------------------------------------------------------------------
// 1. Route round trip

/// Walk `leaves-school-zone` at 15 m/s and read it back through the `nmea` crate.
fn route_round_trip(talker: Talker, rate_hz: u32, baud: u32) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let route = route("leaves-school-zone", 15.0);
    let clock = Clock::start(20.0);
    let mut pty = PtyDevice::new(WALL);
    let options = GnssOptions {
        rate_hz,
        talker,
        zda: true,
        baud,
        ..GnssOptions::default()
    };
    let gnss = SerialGnss::open(&pty.path, baud, clock, options, dir.path()).unwrap();
    pty.release_slave();
    let period = 1000 / i64::from(rate_hz);

    // A few no-fix epochs first, then the route starts.
    let first = rt
        .block_on(gnss.fed().wait_for(Mark(0), WAIT, |_| true))
        .expect("a first epoch");
    sleep_until_device(&clock, first.t + 2 * period as u64);
    let t0 = clock.now();
    rt.block_on(gnss.apply(GnssChange::Route(Arc::new(route.clone()))))
        .unwrap();
    let t1 = clock.now();
    sleep_until_device(&clock, t1 + (route.duration_s() * 1000.0) as u64 + 1500);
    let bytes = pty.received();
    let skipped = gnss.skipped_epochs();
    let fed = gnss.fed().since(Mark(0));
    drop(gnss);

    let epochs = wire_epochs(wire_sentences(&bytes), talker, rate_hz);
    let fed = check_against_fed(&epochs, &fed, &clock, rate_hz, skipped);

    // The route starts at a device millisecond in [t0, t1] (inside `apply`): take the
    // one that fits the positions best; every fix must then be within 1 m.
    let fixes: Vec<(&WireEpoch, i64)> = epochs
        .iter()
        .filter(|e| e.has_fix())
        .map(|e| (e, epoch_t(&clock, e)))
        .collect();
    let worst = |start: u64| -> f64 {
        fixes
            .iter()
            .map(|(e, t)| {
                let s = route.sample((t - start as i64) as f64 / 1000.0);
                let (la, lo) = e.rmc_pos().unwrap();
                let (ga, go) = e.gga_pos().unwrap();
                geo::distance_m(s.lat, s.lon, la, lo).max(geo::distance_m(s.lat, s.lon, ga, go))
            })
            .fold(0.0, f64::max)
    };
    let (start, worst_m) = (t0..=t1)
        .map(|s| (s, worst(s)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    let route_utc = clock.utc_ms(start);
    for (e, _) in &fixes {
        let secs = (e.utc_ms - route_utc) as f64 / 1000.0;
        let s = route.sample(secs);
        for (what, (lat, lon)) in [("RMC", e.rmc_pos().unwrap()), ("GGA", e.gga_pos().unwrap())] {
            let d = geo::distance_m(s.lat, s.lon, lat, lon);
            assert!(
                d < 1.0,
                "{what} {d:.3} m from the route at {secs:.1} s (route applied at device ms {start}):\n{}",
                e.lines()
            );
        }
        let knots = e.rmc().speed_over_ground.expect("RMC speed") as f64;
        assert!(
            (knots - s.speed_mps / KNOT_MPS).abs() < 0.01,
            "RMC speed {knots} kn, route {} m/s:\n{}",
            s.speed_mps,
            e.lines()
        );
        match (s.course_deg, e.rmc().true_course) {
            (Some(c), Some(got)) => {
                let diff = (got as f64 - c).rem_euclid(360.0);
                assert!(
                    diff.min(360.0 - diff) < 0.01,
                    "course {got} vs {c}:\n{}",
                    e.lines()
                );
            }
            (None, None) => {}
            (c, got) => panic!("course {got:?}, route {c:?}:\n{}", e.lines()),
        }
    }
    // No position before the route; a fix in every epoch once it runs. The epoch right
    // after `apply` may still show the old scene: see
    // `scene_changes_take_effect_at_the_next_epoch`.
    for (e, f) in epochs.iter().zip(&fed) {
        let t = epoch_t(&clock, e);
        if t < t0 as i64 {
            assert!(
                f.position.is_none(),
                "a position before the route:\n{}",
                e.lines()
            );
            assert_no_fix(e);
        } else if t >= (t1 as i64) + period {
            assert!(e.has_fix(), "no fix while on the route:\n{}", e.lines());
        }
    }
    let expected = (route.duration_s() * f64::from(rate_hz)) as usize;
    assert!(
        fixes.len() + skipped as usize + 2 >= expected,
        "{} fix epochs (+{skipped} skipped) for a route of {} epochs",
        fixes.len(),
        expected
    );
    println!(
        "{} {} Hz {baud} baud: {} epochs, {} with a fix, {skipped} skipped; route applied at \
         device ms {start} (within [{t0}, {t1}]); worst position error {:.3} m",
        talker.as_str(),
        rate_hz,
        epochs.len(),
        fixes.len(),
        worst_m
    );
}

#[test]
fn route_round_trip_gn_10hz_through_the_nmea_crate() {
    route_round_trip(Talker::Gn, 10, 115_200);
}

#[test]
fn route_round_trip_gp_1hz_through_the_nmea_crate() {
    route_round_trip(Talker::Gp, 1, 9600);
}

// ---------------------------------------------------------------------------------
// 2. Fix / no fix

#[test]
fn outages_give_no_fix_forms_and_the_fix_returns() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::start(10.0);
    let mut pty = PtyDevice::new(WALL);
    let (rate_hz, period) = (10u32, 100i64);
    let options = GnssOptions {
        rate_hz,
        talker: Talker::Gp,
        zda: true,
        baud: 115_200,
        ..GnssOptions::default()
    };
    let gnss = SerialGnss::open(&pty.path, 115_200, clock, options, dir.path()).unwrap();
    pty.release_slave();
    rt.block_on(gnss.apply(GnssChange::Still {
        lat: 52.520008,
        lon: 13.404954,
        alt_m: 40.0,
    }))
    .unwrap();
    let fix = rt
        .block_on(
            gnss.fed()
                .wait_for(Mark(0), WAIT, |f: &FedEpoch| f.fix.is_some()),
        )
        .expect("a fix");
    sleep_until_device(&clock, fix.t + 1000);

    let outage = |kind: OutageKind, secs: f64| {
        let a = clock.now();
        rt.block_on(gnss.apply(GnssChange::Outage {
            kind,
            secs: Some(secs),
        }))
        .unwrap();
        let b = clock.now();
        sleep_until_device(&clock, b + (secs * 1000.0) as u64 + 1500);
        (a as i64, b as i64, (secs * 1000.0) as i64)
    };
    let indoors = outage(OutageKind::Indoors, 3.0);
    let jamming = outage(OutageKind::Jamming, 6.0);

    let bytes = pty.received();
    let skipped = gnss.skipped_epochs();
    let fed = gnss.fed().since(Mark(0));
    drop(gnss);
    let epochs = wire_epochs(wire_sentences(&bytes), Talker::Gp, rate_hz);
    let fed = check_against_fed(&epochs, &fed, &clock, rate_hz, skipped);

    // Per window: epochs that must have no fix, and epochs that must have one. Jamming
    // ramps up over 2 s (C/N0 −40 dB at full strength, so nothing is tracked once
    // it is reached); during the ramp either may happen. The epoch right after
    // `apply` may still show the old scene (see
    // `scene_changes_take_effect_at_the_next_epoch`), hence the one-period allowance.
    let (ia, ib, ilen) = indoors;
    let (ja, jb, jlen) = jamming;
    let mut counts = [0usize; 4];
    let first_fix_t = fix.t as i64;
    for (e, f) in epochs.iter().zip(&fed) {
        let t = epoch_t(&clock, e);
        if t < first_fix_t {
            continue;
        }
        let (must_fix, must_not) = if t < ia {
            (true, false)
        } else if t < ib + period {
            (false, false)
        } else if t < ia + ilen {
            (false, true)
        } else if t < ib + ilen {
            (false, false)
        } else if t < ja {
            (true, false)
        } else if t < jb + 2000 + period {
            (false, false)
        } else if t < ja + jlen {
            (false, true)
        } else if t < jb + jlen {
            (false, false)
        } else {
            (true, false)
        };
        if must_not {
            assert_no_fix(e);
            assert!(
                f.position.is_some(),
                "fed(): the receiver still knows where it is during an outage"
            );
            counts[if t < ja { 0 } else { 2 }] += 1;
        }
        if must_fix {
            assert!(e.has_fix(), "no fix outside the outages:\n{}", e.lines());
            if t >= ia + ilen && t < ja {
                counts[1] += 1;
            }
            if t >= jb + jlen {
                counts[3] += 1;
            }
        }
        if !e.has_fix() {
            // No-fix epochs only inside the outage windows.
            assert!(
                (ia..ib + ilen).contains(&t) || (ja..jb + jlen).contains(&t),
                "no fix outside the outages (t {t}):\n{}",
                e.lines()
            );
        }
    }
    println!(
        "indoors: {} no-fix epochs, then {} with a fix; jamming: {} no-fix epochs at full \
         strength, then {} with a fix ({skipped} skipped)",
        counts[0], counts[1], counts[2], counts[3]
    );
    assert!(counts[0] >= 10, "indoors: {} no-fix epochs", counts[0]);
    assert!(counts[1] >= 5, "indoors: fix did not return");
    assert!(counts[2] >= 10, "jamming: {} no-fix epochs", counts[2]);
    assert!(counts[3] >= 5, "jamming: fix did not return");
}

/// `docs` of `scene.rs`: "Scene changes take effect at the device time they are
/// applied". The first epoch due after `apply` returns must show the new scene.
#[test]
fn scene_changes_take_effect_at_the_next_epoch() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::start(10.0);
    let mut pty = PtyDevice::new(WALL);
    let options = GnssOptions {
        baud: 115_200,
        ..GnssOptions::default()
    };
    let gnss = SerialGnss::open(&pty.path, 115_200, clock, options, dir.path()).unwrap();
    pty.release_slave();
    rt.block_on(gnss.apply(GnssChange::Still {
        lat: 52.520008,
        lon: 13.404954,
        alt_m: 40.0,
    }))
    .unwrap();
    let fed = gnss.fed();
    rt.block_on(fed.wait_for(Mark(0), WAIT, |f: &FedEpoch| f.fix.is_some()))
        .expect("a fix");
    // Between two epochs (1 device second apart): 400 ms after one, well before the
    // next is due. (Applied right after an epoch, the change can win a race with the
    // driver preparing the next one and hide the lateness.)
    let mut tries = 0;
    let (applied, next) = loop {
        let m = fed.mark();
        let last = rt
            .block_on(fed.wait_for(m, WAIT, |_| true))
            .expect("an epoch");
        sleep_until_device(&clock, last.t + 400);
        let m = fed.mark();
        rt.block_on(gnss.set_position(None)).unwrap();
        let t1 = clock.now();
        let next = rt
            .block_on(fed.wait_for(m, WAIT, |_| true))
            .expect("the next epoch");
        if next.t > t1 {
            break (t1, next);
        }
        // The apply straddled an epoch (a loaded machine): try again from a fix.
        tries += 1;
        assert!(tries < 5, "could not apply a change between two epochs");
        rt.block_on(gnss.apply(GnssChange::Still {
            lat: 52.520008,
            lon: 13.404954,
            alt_m: 40.0,
        }))
        .unwrap();
        rt.block_on(fed.wait_for(fed.mark(), WAIT, |f: &FedEpoch| f.fix.is_some()))
            .expect("a fix again");
    };
    assert_eq!(
        next.value.fix, None,
        "position removed at device ms {applied}, but the epoch due at {} still carries a fix \
         (the pacer builds an epoch's sentences before waiting for it, and `apply` does not \
         wake it, so changes take effect one epoch late)",
        next.t
    );
    assert_eq!(next.value.position, None);
}

// ---------------------------------------------------------------------------------
// 3. gpsd corpus replayed into the watch's consumer

/// A gpsd TPV report with a time and a position.
#[derive(Debug, Clone)]
struct Tpv {
    tod_ms: i64,
    lat: f64,
    lon: f64,
    time: String,
}

/// TPVs with mode ≥ 2, a time, a latitude and a longitude, from a `.chk` file (JSON
/// lines interleaved with the input sentences).
fn chk_tpvs(path: &Path) -> Vec<Tpv> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["class"] == "TPV" && v["mode"].as_i64().is_some_and(|m| m >= 2))
        .filter_map(|v| {
            let time = v["time"].as_str()?.to_string();
            Some(Tpv {
                tod_ms: iso_ms(&time).rem_euclid(DAY_MS),
                lat: v["lat"].as_f64()?,
                lon: v["lon"].as_f64()?,
                time,
            })
        })
        .collect()
}

struct Replayed {
    name: String,
    lines: usize,
    duration_ms: u64,
    tpvs: Vec<Tpv>,
    /// TPVs with a watch fix at the same time of day within 0.5 m.
    matched: usize,
    unmatched: Vec<String>,
    watch_fixes: usize,
    /// Watch fixes at a time of day for which gpsd reports no fix (informational:
    /// e.g. GGA quality 8, simulation, which the watch takes as a fix and gpsd not).
    watch_only: usize,
}

/// Replay one recording to the watch's consumer and compare with gpsd's output.
fn replay_log(log: &Path) -> Replayed {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let rec = Recording::load(log).unwrap();
    let name = rec.name.clone();
    // Every non-comment line of the file is in the recording, in order.
    let raw = std::fs::read(log).unwrap();
    let file_lines: Vec<&[u8]> = raw
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty() && l[0] != b'#')
        .collect();
    let rec_lines: Vec<&[u8]> = rec
        .epochs
        .iter()
        .flat_map(|e| e.lines.iter().map(Vec::as_slice))
        .collect();
    assert_eq!(rec.cut_lines, 0, "{name}: lines cut");
    assert_eq!(
        rec_lines, file_lines,
        "{name}: recording differs from the file"
    );
    let mut expected = Vec::new();
    for l in &rec_lines {
        expected.extend_from_slice(l);
        expected.extend_from_slice(b"\r\n");
    }

    let clock = Clock::start(50.0);
    let mut pty = PtyDevice::new(WALL);
    let options = GnssOptions {
        baud: 115_200,
        ..GnssOptions::default()
    };
    let gnss = SerialGnss::open(&pty.path, 115_200, clock, options, dir.path()).unwrap();
    pty.release_slave();
    // Start the replay between two scene epochs: right after one's last sentence
    // (ZDA). A replay started while a scene epoch is being written loses its first
    // epoch (see `replay_started_during_a_scene_epoch_keeps_every_line`).
    pty.wait_for("a scene epoch", |b| last_line_starts(b, b"$GPZDA"));
    std::thread::sleep(Duration::from_millis(5));
    let before = pty.received().len();
    rt.block_on(gnss.replay(Arc::new(rec.clone()))).unwrap();
    let evidence = dir.path().join("gnss.nmea");
    let ended = format!("# replay of {name} ended");
    let deadline = Instant::now() + clock.wall(rec.duration_ms() as f64 / 1000.0 + 5.0) + WALL;
    while !std::fs::read_to_string(&evidence).is_ok_and(|s| s.contains(&ended)) {
        assert!(Instant::now() < deadline, "{name}: replay never ended");
        std::thread::sleep(Duration::from_millis(10));
    }
    let bytes = pty.wait_for("the whole replay", |b| {
        b.len() >= before + expected.len() && find(&b[before..], &expected).is_some()
    });
    drop(gnss);
    // Byte for byte, contiguous, right after the scene epoch it followed.
    let at = before + find(&bytes[before..], &expected).unwrap();
    assert!(
        bytes[..at].ends_with(b"\r\n"),
        "{name}: replay does not start at a line boundary"
    );

    // The watch's consumer over everything the device received.
    let mut asm = watch::LineAssembler::default();
    let mut receiver = watch::Receiver::default();
    let mut fixes: Vec<(i64, f64, f64)> = Vec::new();
    let mut t = 0u64;
    asm.push(&bytes, |line| {
        t += 10;
        if let Some(s) = watch::parse(line) {
            if let watch::Change::Fix(f) = receiver.feed(s, t) {
                let utc = f.utc_ms.expect("the scene's RMC gave the watch a date");
                fixes.push((utc.rem_euclid(DAY_MS), f.lat, f.lon));
            }
        }
    });

    let tpvs = chk_tpvs(&log.with_extension("log.chk"));
    let mut matched = 0;
    let mut unmatched = Vec::new();
    for tpv in &tpvs {
        let nearest = fixes
            .iter()
            .filter(|f| f.0 == tpv.tod_ms)
            .map(|f| geo::distance_m(tpv.lat, tpv.lon, f.1, f.2))
            .fold(f64::INFINITY, f64::min);
        if nearest < 0.5 {
            matched += 1;
        } else {
            unmatched.push(format!(
                "{} {:.9},{:.9}: {}",
                tpv.time,
                tpv.lat,
                tpv.lon,
                if nearest.is_finite() {
                    format!("nearest watch fix at that time {nearest:.2} m away")
                } else {
                    "no watch fix at that time".to_string()
                }
            ));
        }
    }
    let watch_only = fixes
        .iter()
        .filter(|f| !tpvs.iter().any(|t| t.tod_ms == f.0))
        .count();
    Replayed {
        watch_only,
        name,
        lines: rec_lines.len(),
        duration_ms: rec.duration_ms(),
        tpvs,
        matched,
        unmatched,
        watch_fixes: fixes.len(),
    }
}

#[test]
fn gpsd_corpus_replays_byte_for_byte_and_the_watch_agrees_with_gpsd() {
    let dir = fixtures().join("nmea/gpsd");
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .filter(|p| p.with_extension("log.chk").exists())
        .collect();
    logs.sort();
    assert!(logs.len() >= 10, "only {} logs with .chk", logs.len());

    let results: Vec<Replayed> = logs.iter().map(|l| replay_log(l)).collect();
    println!(
        "{:<24} {:>5} {:>7} {:>5} {:>7} {:>11} {:>10}",
        "log", "lines", "secs", "TPVs", "matched", "watch fixes", "watch-only"
    );
    for r in &results {
        println!(
            "{:<24} {:>5} {:>7.1} {:>5} {:>7} {:>11} {:>10}",
            r.name,
            r.lines,
            r.duration_ms as f64 / 1000.0,
            r.tpvs.len(),
            r.matched,
            r.watch_fixes,
            r.watch_only
        );
        for u in r.unmatched.iter().take(3) {
            println!("    unmatched: {u}");
        }
        if r.unmatched.len() > 3 {
            println!("    … and {} more unmatched", r.unmatched.len() - 3);
        }
    }
    let mut failures = Vec::new();
    for r in &results {
        if r.name == "nmea-fuzzy-cases.log" {
            // Deliberately odd input: Trimble RTK output with 8-decimal minutes, every
            // GGA and RMC 85–91 characters before CR LF, over NMEA 0183's 82 with CR
            // LF. gpsd accepts sentences up to its own larger limit and reports them;
            // the watch drops lines over 82 characters (docs/virtual-hardware.md §4),
            // so here the right outcome is no watch fix at all, not a match.
            let log = std::fs::read_to_string(dir.join(&r.name)).unwrap();
            assert!(log
                .lines()
                .filter(|l| l.contains("RMC,") || l.contains("GGA,"))
                .all(|l| l.len() > watch::MAX_LINE));
            if r.watch_fixes != 0 {
                failures.push(format!(
                    "{}: the watch took {} fixes from over-long sentences",
                    r.name, r.watch_fixes
                ));
            }
            continue;
        }
        if r.tpvs.is_empty() {
            continue;
        }
        // "Most": at least three quarters of gpsd's reports, and never none.
        if r.matched == 0 || r.matched * 4 < r.tpvs.len() * 3 {
            failures.push(format!(
                "{}: {} of {} gpsd TPVs matched by a watch fix",
                r.name,
                r.matched,
                r.tpvs.len()
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A replay started while a scene epoch is still being written (here: right after
/// its RMC, at 9600 baud and scale 1 the rest follows over ~150 ms) must still feed
/// every line of the recording.
#[test]
fn replay_started_during_a_scene_epoch_keeps_every_line() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::start(1.0);
    let mut pty = PtyDevice::new(WALL);
    let gnss =
        SerialGnss::open(&pty.path, 9600, clock, GnssOptions::default(), dir.path()).unwrap();
    pty.release_slave();
    let lines = [
        "$GPRMC,120000.00,A,5231.2005,N,01324.2972,E,0.0,,211126,,,A*7C",
        "$GPGGA,120000.00,5231.2005,N,01324.2972,E,1,04,1.0,40.0,M,0.0,M,,*69",
        "$GPRMC,120000.50,A,5231.2005,N,01324.2972,E,0.0,,211126,,,A*79",
    ];
    let fixed: Vec<String> = lines
        .iter()
        .map(|l| {
            let body = &l[1..l.find('*').unwrap()];
            redrig::wire::nmea::frame(body)
        })
        .collect();
    let rec = Recording::parse("three.log", fixed.join("\r\n").as_bytes());
    assert_eq!(rec.epochs.len(), 2);
    // The first line of a scene epoch has arrived; the rest is still to come.
    let before = pty
        .wait_for("an RMC", |b| last_line_starts(b, b"$GPRMC"))
        .len();
    rt.block_on(gnss.replay(Arc::new(rec))).unwrap();
    let mut expected = Vec::new();
    for l in &fixed {
        expected.extend_from_slice(l.as_bytes());
        expected.extend_from_slice(b"\r\n");
    }
    let evidence = dir.path().join("gnss.nmea");
    let deadline = Instant::now() + WALL;
    while !std::fs::read_to_string(&evidence).is_ok_and(|s| s.contains("replay of three.log ended"))
    {
        assert!(Instant::now() < deadline, "replay never ended");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    let got = pty.received();
    let missing: Vec<&String> = fixed
        .iter()
        .filter(|l| find(&got[before..], l.as_bytes()).is_none())
        .collect();
    assert!(
        find(&got[before..], &expected).is_some(),
        "the replay's lines did not all reach the device (missing: {missing:?}); after the \
         replay started:\n{}",
        String::from_utf8_lossy(&got[before..])
    );
}

/// `Reset` during a replay hands the line back to the scene at the current epoch:
/// the next epoch fed is due after the reset (not one from before the replay), and
/// the replay's duration is not counted as skipped epochs.
#[test]
fn reset_during_a_replay_resumes_the_scene_now() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::start(10.0);
    let mut pty = PtyDevice::new(WALL);
    let options = GnssOptions {
        baud: 115_200,
        ..GnssOptions::default()
    };
    let gnss = SerialGnss::open(&pty.path, 115_200, clock, options, dir.path()).unwrap();
    pty.release_slave();
    rt.block_on(gnss.apply(GnssChange::Still {
        lat: 52.520008,
        lon: 13.404954,
        alt_m: 40.0,
    }))
    .unwrap();
    rt.block_on(
        gnss.fed()
            .wait_for(Mark(0), WAIT, |f: &FedEpoch| f.fix.is_some()),
    )
    .expect("a fix");
    // 30 one-second epochs of a recorded receiver.
    let lines: Vec<String> = (0..30)
        .map(|s| {
            redrig::wire::nmea::frame(&format!(
                "GPRMC,1200{s:02}.00,A,5231.2005,N,01324.2972,E,0.0,,211126,,,A"
            ))
        })
        .collect();
    let rec = Recording::parse("thirty.log", lines.join("\r\n").as_bytes());
    assert_eq!(rec.duration_ms(), 29_000);
    pty.wait_for("a scene epoch", |b| last_line_starts(b, b"$GPZDA"));
    std::thread::sleep(Duration::from_millis(5));
    rt.block_on(gnss.replay(Arc::new(rec))).unwrap();
    let replay_start = clock.now();
    sleep_until_device(&clock, replay_start + 8_000);
    assert!(gnss.replaying());
    let skipped = gnss.skipped_epochs();
    let mark = gnss.fed().mark();
    let t0 = clock.now();
    rt.block_on(gnss.apply(GnssChange::Reset)).unwrap();
    assert!(!gnss.replaying());
    let first = rt
        .block_on(gnss.fed().wait_for(mark, WAIT, |_| true))
        .expect("scene epochs after the reset");
    sleep_until_device(&clock, first.t + 3_000);
    let added = gnss.skipped_epochs() - skipped;
    let mut problems = Vec::new();
    if first.t < t0 {
        problems.push(format!(
            "reset at device ms {t0}, but the first epoch fed afterwards is stamped {} (UTC \
             {}): the scene epoch that was pending when the replay began at {replay_start}",
            first.t, first.value.utc_ms
        ));
    }
    if added >= 3 {
        problems.push(format!(
            "the reset added {added} skipped epochs (the replay's duration counted as skipped)"
        ));
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

// ---------------------------------------------------------------------------------
// 4. gpsd cross-check

/// gpsd on `PATH` or in the usual sbin directories.
fn find_gpsd() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("gpsd"))
        .find(|p| p.is_file())
}

/// A running gpsd, killed and reaped when dropped (also when the test fails).
struct Gpsd {
    child: std::process::Child,
}

impl Drop for Gpsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn gpsd_reads_the_route_within_a_metre() {
    let Some(gpsd) = find_gpsd() else {
        assert!(
            std::env::var("REDRIG_REQUIRE_CROSSCHECKS").as_deref() != Ok("1"),
            "gpsd cross-check required (REDRIG_REQUIRE_CROSSCHECKS=1) but gpsd is not installed"
        );
        // Straight to stderr, not through the test harness's capture: a skip must be seen.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: gpsd cross-check (gpsd not installed; .ci/run installs it)"
        );
        return;
    };
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let route = route("leaves-school-zone", 25.0);
    // gpsd works in real time.
    let clock = Clock::start(1.0);

    // The driver writes to pty A's slave; everything read from A's master is copied
    // to B's master; gpsd reads B's slave. B is raw, and world-readable: gpsd started
    // as root opens its device before dropping privileges (it needs neither -G, which
    // only makes it listen on all addresses, nor anything else), but would reopen it
    // as `nobody` after a hang-up.
    let b = nix::pty::openpty(None, None).expect("openpty");
    let b_path = nix::unistd::ttyname(b.slave.as_fd())
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut tio = nix::sys::termios::tcgetattr(b.slave.as_fd()).unwrap();
    nix::sys::termios::cfmakeraw(&mut tio);
    nix::sys::termios::tcsetattr(b.slave.as_fd(), nix::sys::termios::SetArg::TCSANOW, &tio)
        .unwrap();
    nix::sys::stat::fchmod(
        b.slave.as_fd(),
        nix::sys::stat::Mode::from_bits_truncate(0o666),
    )
    .unwrap();
    nix::fcntl::fcntl(
        b.master.as_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    let b_master = Arc::new(b.master);
    let _b_slave = b.slave; // kept open so the master never sees a hang-up
    let mut a = PtyDevice::relaying_to(Some(b_master.clone()), WALL);
    let options = GnssOptions::default(); // GP, 1 Hz, 9600
    let gnss = SerialGnss::open(&a.path, 9600, clock, options, dir.path()).unwrap();
    a.release_slave();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log_path = dir.path().join("gpsd.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut daemon = Gpsd {
        child: std::process::Command::new(&gpsd)
            .args(["-N", "-n", "-b", "-S", &port.to_string(), &b_path])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", gpsd.display())),
    };
    let gpsd_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut conn = loop {
        if let Ok(c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            break c;
        }
        if let Ok(Some(status)) = daemon.child.try_wait() {
            panic!("gpsd exited ({status}):\n{}", gpsd_log());
        }
        assert!(
            Instant::now() < deadline,
            "gpsd does not listen on {port}:\n{}",
            gpsd_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    conn.write_all(b"?WATCH={\"enable\":true,\"json\":true};\n")
        .unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();

    let t0 = clock.now();
    rt.block_on(gnss.apply(GnssChange::Route(Arc::new(route.clone()))))
        .unwrap();
    let t1 = clock.now();

    let mut text = Vec::new();
    let until = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        match conn.read(&mut buf) {
            Ok(0) => panic!("gpsd closed the connection:\n{}", gpsd_log()),
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("reading gpsd: {e}"),
        }
    }
    drop(daemon);
    drop(gnss);

    let text = String::from_utf8_lossy(&text);
    let reports: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let tpvs: Vec<(i64, f64, f64)> = reports
        .iter()
        .filter(|v| v["class"] == "TPV")
        .filter_map(|v| {
            Some((
                v["mode"].as_i64()?,
                v["lat"].as_f64()?,
                v["lon"].as_f64()?,
                iso_ms(v["time"].as_str()?),
            ))
        })
        .filter(|t| t.0 >= 2)
        .map(|(_, lat, lon, ms)| (ms, lat, lon))
        .collect();
    assert!(
        tpvs.len() >= 10,
        "{} TPVs with a fix from gpsd (relay dropped {} bytes); reports:\n{text}\ngpsd:\n{}",
        tpvs.len(),
        a.relay_dropped(),
        gpsd_log()
    );
    // The route started at a device millisecond in [t0, t1].
    let err = |start: u64, ms: i64, lat: f64, lon: f64| {
        let s = route.sample((ms - clock.utc_ms(start)) as f64 / 1000.0);
        geo::distance_m(s.lat, s.lon, lat, lon)
    };
    let (start, worst) = (t0..=t1)
        .map(|s| {
            let w = tpvs
                .iter()
                .map(|&(ms, lat, lon)| err(s, ms, lat, lon))
                .fold(0.0, f64::max);
            (s, w)
        })
        .min_by(|x, y| x.1.total_cmp(&y.1))
        .unwrap();
    for &(ms, lat, lon) in &tpvs {
        let d = err(start, ms, lat, lon);
        assert!(
            d < 1.0,
            "gpsd TPV at {ms} ({:.1} s into the route) {lat},{lon} is {d:.3} m from the route",
            (ms - clock.utc_ms(start)) as f64 / 1000.0
        );
        assert_eq!(ms.rem_euclid(1000), 0, "1 Hz epochs fall on whole seconds");
    }
    println!(
        "gpsd: {} TPVs with a fix, worst {worst:.3} m from the route",
        tpvs.len()
    );
}

//! Where the watch is: named places, routes, loss of fix, spoofing, time of the
//! satellites, replayed recordings — and what the backend made of it.
//!
//! Places and routes come from the rig's routes directory (`fixtures/routes/` by
//! default); recordings from its recordings directory. The truth a step compares the
//! backend with is what the GNSS driver actually fed, epoch by epoch
//! ([`crate::drivers::Gnss::fed`]), not what a step meant to feed.

use super::common::*;
use crate::drivers::{FedEpoch, Position};
use crate::gnss::geo;
use crate::gnss::replay::Recording;
use crate::gnss::route::Route;
use crate::gnss::scene::{GnssChange, OutageKind};
use crate::runner::world::{device_fail, rig_fail, RigWorld, StepFail, StepResult};
use cucumber::{given, then, when};
use serde_json::json;
use std::sync::Arc;

/// Scratch keys.
const ROUTE_STARTED: &str = "gnss.route_started";
const ROUTE_END: &str = "gnss.route_end";
const ZONE: &str = "gnss.zone";
const OUTAGE_END: &str = "gnss.outage_end";
/// A fix older than this when it reaches the backend is not "current" (device ms).
const STALE_MS: i64 = 15_000;

fn place(world: &RigWorld, name: &str) -> Result<Position, StepFail> {
    let lib = &world.ctx.loaded.routes;
    match lib.place(name) {
        Some(p) => Ok(Position {
            lat: p.lat,
            lon: p.lon,
            alt_m: p.alt_m,
        }),
        None => rig_fail(format!(
            "no place `{name}` in the routes directory; known places: {}",
            lib.place_names().join(", ")
        )),
    }
}

fn route(world: &RigWorld, name: &str) -> Result<Route, StepFail> {
    let lib = &world.ctx.loaded.routes;
    match lib.route(name) {
        Some(r) => Ok(r.clone()),
        None => rig_fail(format!(
            "no route `{name}` in the routes directory; known routes: {}",
            lib.route_names().join(", ")
        )),
    }
}

async fn apply(world: &mut RigWorld, change: GnssChange) -> StepResult {
    world.rig().gnss.apply(change).await?;
    world.action_at = Some(world.now());
    Ok(())
}

#[given(expr = "the watch is at {string}")]
#[when(expr = "the watch moves to {string}")]
async fn at_place(world: &mut RigWorld, name: String) -> StepResult {
    let p = place(world, &name)?;
    apply(
        world,
        GnssChange::Still {
            lat: p.lat,
            lon: p.lon,
            alt_m: p.alt_m,
        },
    )
    .await?;
    world.position = Some(p);
    Ok(())
}

async fn follow(world: &mut RigWorld, r: Route) -> StepResult {
    let end = r.end();
    let duration = r.duration_s();
    world.note(format!(
        "route `{}`: {:.0} m in {:.0} s",
        r.name,
        r.length_m(),
        duration
    ));
    apply(world, GnssChange::Route(Arc::new(r))).await?;
    let now = world.now();
    world.scratch.insert(ROUTE_STARTED.into(), now.to_string());
    world.scratch.insert(
        ROUTE_END.into(),
        (now + (duration * 1000.0) as u64).to_string(),
    );
    world.position = Some(Position {
        lat: end.lat,
        lon: end.lon,
        alt_m: end.alt_m,
    });
    Ok(())
}

#[when(expr = "the watch follows the route {string}")]
async fn follows(world: &mut RigWorld, name: String) -> StepResult {
    let r = route(world, &name)?;
    follow(world, r).await
}

#[when(expr = "the watch follows the route {string} at {float} km\\/h")]
async fn follows_at(world: &mut RigWorld, name: String, kmh: f64) -> StepResult {
    if !(kmh.is_finite() && kmh > 0.0 && kmh <= 1000.0) {
        return rig_fail(format!("speed {kmh} km/h: expected 0 < speed ≤ 1000"));
    }
    let r = route(world, &name)?.with_speed(kmh / 3.6);
    follow(world, r).await
}

#[when("the watch has reached the end of the route")]
async fn route_finished(world: &mut RigWorld) -> StepResult {
    let Some(end) = world
        .scratch
        .get(ROUTE_END)
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return rig_fail("no route was started before this step");
    };
    let now = world.now();
    if end > now {
        world.clock().sleep((end - now) as f64 / 1000.0 + 1.0).await;
    }
    Ok(())
}

#[when(expr = "the watch is indoors without GNSS reception for {int} seconds")]
async fn indoors(world: &mut RigWorld, secs: u32) -> StepResult {
    note_outage(world, secs);
    apply(
        world,
        GnssChange::Outage {
            kind: OutageKind::Indoors,
            secs: Some(secs as f64),
        },
    )
    .await
}

#[when(expr = "the GNSS signal is jammed for {int} seconds")]
async fn jammed(world: &mut RigWorld, secs: u32) -> StepResult {
    note_outage(world, secs);
    apply(
        world,
        GnssChange::Outage {
            kind: OutageKind::Jamming,
            secs: Some(secs as f64),
        },
    )
    .await
}

fn note_outage(world: &mut RigWorld, secs: u32) {
    let end = world.now() + secs as u64 * 1000;
    world.scratch.insert(OUTAGE_END.into(), end.to_string());
}

fn bearing(word: &str) -> Option<f64> {
    Some(match word {
        "north" => 0.0,
        "north-east" => 45.0,
        "east" => 90.0,
        "south-east" => 135.0,
        "south" => 180.0,
        "south-west" => 225.0,
        "west" => 270.0,
        "north-west" => 315.0,
        _ => return None,
    })
}

/// Re-read where the receiver now believes it is (after a jump).
fn follow_fed_position(world: &mut RigWorld, before: Position, d: f64, az: f64) {
    let (lat, lon, _) = geo::direct(before.lat, before.lon, az, d);
    world.position = Some(Position { lat, lon, ..before });
}

#[when(expr = "the GNSS position jumps {int} metres to the {word}")]
async fn jump(world: &mut RigWorld, metres: u32, direction: String) -> StepResult {
    let Some(az) = bearing(&direction) else {
        return rig_fail(format!(
            "direction `{direction}`: expected north, north-east, east, … or north-west"
        ));
    };
    let before = world.position.unwrap_or(crate::strategy::HOME);
    apply(
        world,
        GnssChange::Jump {
            distance_m: metres as f64,
            azimuth_deg: az,
        },
    )
    .await?;
    follow_fed_position(world, before, metres as f64, az);
    Ok(())
}

#[when(expr = "the GNSS position jumps to {string}")]
async fn jump_to(world: &mut RigWorld, name: String) -> StepResult {
    let target = place(world, &name)?;
    let before = world.position.unwrap_or(crate::strategy::HOME);
    let inv = geo::inverse(before.lat, before.lon, target.lat, target.lon);
    apply(
        world,
        GnssChange::Jump {
            distance_m: inv.distance_m,
            azimuth_deg: inv.azimuth1_deg,
        },
    )
    .await?;
    follow_fed_position(world, before, inv.distance_m, inv.azimuth1_deg);
    Ok(())
}

#[given(expr = "the GNSS time is {int} seconds before midnight UTC")]
#[when(expr = "the GNSS time is set to {int} seconds before midnight UTC")]
async fn before_midnight(world: &mut RigWorld, secs: u32) -> StepResult {
    let utc = world.clock().utc_ms(world.now());
    let next_midnight = (utc.div_euclid(86_400_000) + 1) * 86_400_000;
    apply(
        world,
        GnssChange::SetTime(Some(next_midnight - secs as i64 * 1000)),
    )
    .await
}

#[given("the GNSS receiver has rolled over its week number")]
#[when("the GNSS receiver rolls over its week number")]
async fn week_rollover(world: &mut RigWorld) -> StepResult {
    apply(world, GnssChange::WeekRollover(true)).await
}

/// The last valid position in a recording (RMC status A or GGA quality > 0).
fn last_fix(rec: &Recording) -> Option<Position> {
    let mut last = None;
    for line in rec.epochs.iter().flat_map(|e| &e.lines) {
        let Ok(text) = std::str::from_utf8(line) else {
            continue;
        };
        let Ok(s) = crate::wire::nmea::parse(text) else {
            continue;
        };
        if s.has_fix() == Some(true) {
            if let Some((lat, lon)) = s.position() {
                last = Some(Position {
                    lat,
                    lon,
                    alt_m: 0.0,
                });
            }
        }
    }
    last
}

#[when(expr = "the GNSS receiver replays the recording {string}")]
async fn replay(world: &mut RigWorld, name: String) -> StepResult {
    let Some(dir) = world.ctx.loaded.rig.instruments.gnss.recordings_dir() else {
        return rig_fail("this rig's GNSS backend cannot replay NMEA recordings");
    };
    if name.contains('/') || name.starts_with('.') {
        return rig_fail(format!(
            "recording `{name}`: expected a file name in {}",
            dir.display()
        ));
    }
    let path = dir.join(&name);
    let rec = match Recording::load(&path) {
        Ok(r) => r,
        Err(e) => return rig_fail(format!("recording {}: {e}", path.display())),
    };
    let Some(fix) = last_fix(&rec) else {
        return rig_fail(format!("recording {} has no valid fix", path.display()));
    };
    world.note(format!(
        "replaying {}: {} lines in {} epochs over {:.1} s",
        rec.name,
        rec.lines(),
        rec.epochs.len(),
        rec.duration_ms() as f64 / 1000.0
    ));
    let end = world.now() + rec.duration_ms();
    world.rig().gnss.replay(Arc::new(rec)).await?;
    world.action_at = Some(world.now());
    world.scratch.insert(ROUTE_END.into(), end.to_string());
    world.position = Some(fix);
    Ok(())
}

// ------------------------------------------------------------------ parent settings

#[given(expr = "the parent sets the watch to report its position every {int} seconds")]
async fn report_every(world: &mut RigWorld, secs: u32) -> StepResult {
    send_command(world, "the parent", "UPLOAD", &[secs.to_string()]).await?;
    world
        .scratch
        .insert("report_interval_s".into(), secs.to_string());
    let r = world.last_response.clone();
    if let Some(r) = r.filter(|r| !(200..300).contains(&r.status)) {
        return device_fail(format!(
            "the backend refused the parent's reporting interval: HTTP {} {}",
            r.status, r.body
        ));
    }
    // Applied when the watch reports at the new pace: wait for a report.
    let since = world.now();
    let deadline = world.clock().deadline(secs as f64 + 15.0);
    loop {
        if !locations_since(world, since).await?.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return device_fail(format!(
                "no position report within {} s of setting a {secs} s interval",
                secs + 15
            ));
        }
        world.clock().sleep(0.5).await;
    }
}

#[given(expr = "the parent sets a safe zone of {int} metres around {string}")]
async fn safe_zone(world: &mut RigWorld, radius: u32, name: String) -> StepResult {
    let p = place(world, &name)?;
    let id = watch_id(world).await?;
    let body = json!([{ "name": name, "lat": p.lat, "lon": p.lon, "radius_m": radius }]);
    let r = api(
        world,
        Actor::Parent,
        "PUT",
        &format!("/api/watches/{id}/geofences"),
        Some(body),
    )
    .await?;
    if !(200..300).contains(&r.status) {
        return device_fail(format!(
            "the backend refused the parent's safe zone: HTTP {} {}",
            r.status, r.body
        ));
    }
    world
        .scratch
        .insert(ZONE.into(), format!("{},{},{radius}", p.lat, p.lon));
    wait_settings_synced(world).await
}

#[when(expr = "the watch sends its next position report within {int} seconds")]
async fn next_report(world: &mut RigWorld, secs: u32) -> StepResult {
    let since = world.now();
    report_since(world, since, secs).await
}

// ------------------------------------------------------------------ outcomes

/// The fed epoch nearest to UTC `utc_ms` (within one second).
fn fed_at(fed: &[crate::drivers::eventlog::Record<FedEpoch>], utc_ms: i64) -> Option<&FedEpoch> {
    fed.iter()
        .map(|r| &r.value)
        .min_by_key(|f| (f.utc_ms - utc_ms).abs())
        .filter(|f| (f.utc_ms - utc_ms).abs() <= 1000)
}

#[then(
    expr = "the backend received at least {int} positions during the route, each within {int} metres of where the watch was"
)]
async fn positions_on_route(world: &mut RigWorld, n: u32, metres: u32) -> StepResult {
    let Some(start) = world
        .scratch
        .get(ROUTE_STARTED)
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return rig_fail("no route was started before this step");
    };
    // Reports take a moment to arrive.
    world.clock().sleep(5.0).await;
    let epoch = world.clock().device_epoch_unix_ms;
    let gnss = world.rig().gnss.clone();
    let fed = gnss.fed().since(gnss.fed().mark_since(start));
    let mut checked = 0u32;
    let mut worst = 0.0f64;
    for loc in locations_since(world, start).await? {
        if loc["valid"].as_bool() != Some(true) {
            continue;
        }
        let (Some(lat), Some(lon), Some(t)) =
            (loc["lat"].as_f64(), loc["lon"].as_f64(), loc["t"].as_i64())
        else {
            continue;
        };
        let Some(truth) = fed_at(&fed, epoch + t).and_then(|f| f.fix) else {
            return device_fail(format!(
                "the backend shows a valid position at {lat:.6},{lon:.6} stamped at a time the rig fed no fix (device time {t} ms)"
            ));
        };
        let d = geo::distance_m(lat, lon, truth.lat, truth.lon);
        worst = worst.max(d);
        checked += 1;
        if d > metres as f64 {
            world.measure("route position error", d, "m", Some(metres as f64));
            return device_fail(format!(
                "the backend shows the watch {d:.0} m from where it was at that time (limit {metres} m)"
            ));
        }
    }
    world.measure(
        "route positions received",
        checked as f64,
        "positions",
        None,
    );
    if checked > 0 {
        world.measure(
            "route position error (worst)",
            worst,
            "m",
            Some(metres as f64),
        );
    }
    ensure_device(checked >= n, || {
        format!("the backend received {checked} valid positions during the route, expected at least {n}")
    })
}

#[then(
    expr = "no position the backend receives in the next {int} seconds is marked as a current fix"
)]
async fn no_stale_fix(world: &mut RigWorld, secs: u32) -> StepResult {
    let since = world.action_at.unwrap_or(world.started);
    world.clock().sleep(secs as f64).await;
    let epoch_ms = world.clock().device_epoch_unix_ms;
    let gnss = world.rig().gnss.clone();
    let fed = gnss
        .fed()
        .since(gnss.fed().mark_since(since.saturating_sub(2_000)));
    let mut seen = 0;
    for loc in locations_since(world, since).await? {
        seen += 1;
        if loc["valid"].as_bool() != Some(true) {
            continue;
        }
        let (Some(t), Some(received)) = (loc["t"].as_i64(), loc["received_t"].as_i64()) else {
            continue;
        };
        // A current fix must be one the rig fed at the time it is stamped with, and
        // must not be an old fix sent again as if new.
        let fed_fix = fed_at(&fed, epoch_ms + t).is_some_and(|f| f.fix.is_some());
        if t >= since as i64 && !fed_fix {
            return device_fail(format!(
                "the backend received a position marked as a current fix, stamped at a time the watch had no fix: {loc}"
            ));
        }
        if received - t > STALE_MS {
            return device_fail(format!(
                "the backend received a fix {} s old marked as current: {loc}",
                (received - t) / 1000
            ));
        }
    }
    world.measure(
        "positions reported without a fix",
        seen as f64,
        "positions",
        None,
    );
    Ok(())
}

#[then(
    expr = "the backend receives a current position within {int} seconds after reception returns"
)]
async fn fix_returns(world: &mut RigWorld, secs: u32) -> StepResult {
    let Some(back) = world
        .scratch
        .get(OUTAGE_END)
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return rig_fail("no reception outage was started before this step");
    };
    let now = world.now();
    if back > now {
        world.clock().sleep((back - now) as f64 / 1000.0).await;
    }
    let deadline = world.clock().deadline(secs as f64);
    loop {
        let locs = locations_since(world, back).await?;
        if let Some(l) = locs.iter().find(|l| l["valid"].as_bool() == Some(true)) {
            let latency = record_time(l).unwrap_or(back).saturating_sub(back) as f64 / 1000.0;
            world.measure(
                "current position after reception returned",
                latency,
                "s",
                Some(secs as f64),
            );
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return device_fail(format!(
                "no current position within {secs} s after GNSS reception returned"
            ));
        }
        world.clock().sleep(0.5).await;
    }
}

#[then(
    expr = "the positions the backend receives in the next {int} seconds carry the GNSS date and time within {int} seconds"
)]
async fn stamped_with_gnss_time(world: &mut RigWorld, secs: u32, tolerance: u32) -> StepResult {
    let since = world.now();
    world.clock().sleep(secs as f64).await;
    let epoch = world.clock().device_epoch_unix_ms;
    let gnss = world.rig().gnss.clone();
    let fed = gnss
        .fed()
        .since(gnss.fed().mark_since(since.saturating_sub(STALE_MS as u64)));
    let mut checked = 0;
    let mut worst = 0.0f64;
    for loc in locations_since(world, since).await? {
        let (Some(t), Some(received)) = (loc["t"].as_i64(), loc["received_t"].as_u64()) else {
            continue;
        };
        let stamp = epoch + t;
        // The stamp must be the UTC of an epoch fed shortly before the report arrived.
        let off = fed
            .iter()
            .filter(|r| r.t <= received && received - r.t <= STALE_MS as u64)
            .map(|r| (stamp - r.value.utc_ms) as f64 / 1000.0)
            .min_by(|a, b| a.abs().total_cmp(&b.abs()));
        let Some(off) = off else {
            continue;
        };
        worst = worst.max(off.abs());
        checked += 1;
        if off.abs() > tolerance as f64 {
            let fed_utc = stamp - (off * 1000.0) as i64;
            world.measure("report time error", off.abs(), "s", Some(tolerance as f64));
            return device_fail(format!(
                "a report is stamped {} while the GNSS time was {} ({off:+.0} s)",
                fmt_utc(stamp),
                fmt_utc(fed_utc)
            ));
        }
    }
    if checked > 0 {
        world.measure(
            "report time error (worst)",
            worst,
            "s",
            Some(tolerance as f64),
        );
    }
    ensure_device(checked > 0, || {
        format!("the backend received no position in {secs} s")
    })
}

fn fmt_utc(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms"))
}

#[then(
    expr = "the parent receives a geofence alert within {int} seconds of the watch leaving the safe zone"
)]
async fn geofence_alert(world: &mut RigWorld, secs: u32) -> StepResult {
    let Some((lat, lon, radius)) = world.scratch.get(ZONE).and_then(|z| {
        let v: Vec<f64> = z.split(',').filter_map(|x| x.parse().ok()).collect();
        (v.len() == 3).then(|| (v[0], v[1], v[2]))
    }) else {
        return rig_fail("no safe zone was set before this step");
    };
    let since = world.action_at.unwrap_or(world.started);
    let gnss = world.rig().gnss.clone();
    let mark = gnss.fed().mark_since(since);
    // When did the fed fix first lie outside the zone?
    let route_secs = world
        .scratch
        .get(ROUTE_END)
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(0.0, |e| e.saturating_sub(world.now()) as f64 / 1000.0);
    let left = gnss
        .fed()
        .wait_for(mark, route_secs + 5.0, move |f| {
            f.fix
                .is_some_and(|p| geo::distance_m(p.lat, p.lon, lat, lon) > radius)
        })
        .await;
    let Some(left) = left else {
        return rig_fail("the route did not take the watch out of the safe zone");
    };
    let deadline = world.clock().deadline(secs as f64);
    loop {
        let alarms = alarms_since(world, left.t).await?;
        if let Some(al) = alarms
            .iter()
            .find(|a| a["kind"].as_str() == Some("fence_leave"))
        {
            let at = record_time(al).unwrap_or(left.t);
            let latency = at.saturating_sub(left.t) as f64 / 1000.0;
            let ok = world.measure("geofence alert latency", latency, "s", Some(secs as f64));
            return ensure_device(ok, || {
                format!("the geofence alert arrived {latency:.1} s after the watch left the zone (limit {secs} s)")
            });
        }
        if tokio::time::Instant::now() >= deadline {
            // No alert at all: recorded as an infinite latency (`null` in results.json).
            world.measure(
                "geofence alert latency",
                f64::INFINITY,
                "s",
                Some(secs as f64),
            );
            return device_fail(format!(
                "no geofence alert within {secs} s of the watch leaving the safe zone"
            ));
        }
        world.clock().sleep(0.5).await;
    }
}

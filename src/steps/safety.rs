//! The safety features parents rely on: SOS, and noticing a listening call.

use super::common::*;
use crate::drivers::{Button, CallAnswer, CellEvent, IndicatorEvent};
use crate::runner::world::{device_fail, RigWorld, StepResult};
use cucumber::{given, then, when};
use serde_json::Value;

#[when(expr = "the wearer holds the SOS button for {int} seconds")]
async fn hold_sos(world: &mut RigWorld, secs: u32) -> StepResult {
    world.action_at = Some(world.now());
    world.rig().buttons.press(Button::Sos, secs as f64).await?;
    Ok(())
}

#[when(
    expr = "the wearer holds the SOS button for {int} seconds, {int} times, {int} seconds apart"
)]
async fn hold_sos_repeatedly(
    world: &mut RigWorld,
    secs: u32,
    times: u32,
    apart: u32,
) -> StepResult {
    world.action_at = Some(world.now());
    for i in 0..times {
        if i > 0 {
            world.clock().sleep(apart as f64).await;
        }
        world.rig().buttons.press(Button::Sos, secs as f64).await?;
    }
    world
        .scratch
        .insert("sos_presses".into(), times.to_string());
    Ok(())
}

#[given("nobody answers the watch's calls")]
async fn nobody_answers(world: &mut RigWorld) -> StepResult {
    world.rig().cellular.set_call_answer(CallAnswer::Reject);
    Ok(())
}

async fn sos_alarms(
    world: &mut RigWorld,
    since: u64,
) -> Result<Vec<Value>, crate::runner::world::StepFail> {
    let mut alarms = alarms_since(world, since).await?;
    alarms.retain(|al| al["kind"].as_str() == Some("sos"));
    Ok(alarms)
}

#[then(expr = "the backend receives an SOS alarm with the watch's position within {int} seconds")]
async fn sos_alarm_received(world: &mut RigWorld, secs: u32) -> StepResult {
    let since = world.action_at.unwrap_or(world.started);
    let pos = world.position.unwrap_or(crate::strategy::HOME);
    let deadline = world.clock().deadline(secs as f64);
    loop {
        let alarms = sos_alarms(world, since).await?;
        if let Some(al) = alarms.first() {
            let latency = (record_time(al).unwrap_or(since).saturating_sub(since)) as f64 / 1000.0;
            let ok_latency = world.measure("SOS alarm latency", latency, "s", Some(secs as f64));
            let d = match (al["lat"].as_f64(), al["lon"].as_f64()) {
                (Some(lat), Some(lon)) => distance_m(lat, lon, pos.lat, pos.lon),
                _ => f64::INFINITY,
            };
            let ok_pos = world.measure("SOS alarm position error", d, "m", Some(100.0));
            ensure_device(ok_latency, || {
                format!("SOS alarm reached the backend after {latency:.1} s (limit {secs} s)")
            })?;
            return ensure_device(ok_pos, || {
                format!("the SOS alarm's position is {d:.0} m from the watch's (limit 100 m)")
            });
        }
        if tokio::time::Instant::now() >= deadline {
            world.measure("SOS alarm latency", f64::INFINITY, "s", Some(secs as f64));
            return device_fail(format!(
                "no SOS alarm reached the backend within {secs} s of the press"
            ));
        }
        world.clock().sleep(0.5).await;
    }
}

#[then(expr = "the backend receives {int} SOS alarms within {int} seconds")]
async fn n_sos_alarms(world: &mut RigWorld, n: u32, secs: u32) -> StepResult {
    let since = world.action_at.unwrap_or(world.started);
    let deadline = world.clock().deadline(secs as f64);
    loop {
        let count = sos_alarms(world, since).await?.len();
        if count >= n as usize {
            world.measure("SOS alarms received", count as f64, "alarms", None);
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            world.measure("SOS alarms received", count as f64, "alarms", None);
            return device_fail(format!(
                "{count} of {n} SOS presses produced an alarm at the backend"
            ));
        }
        world.clock().sleep(1.0).await;
    }
}

fn dialled_after(world: &RigWorld, since: u64, who: &str) -> Option<u64> {
    let log = world.rig().cellular.log();
    log.since(log.mark_since(since))
        .into_iter()
        .find(|r| matches!(&r.value, CellEvent::WatchDialled { number } if number == who))
        .map(|r| r.t)
}

#[then(regex = r"^the watch calls (the parent|the second parent) within (\d+) seconds$")]
async fn watch_calls(world: &mut RigWorld, role: String, secs: u32) -> StepResult {
    let n = number(world, &role)?;
    let since = world.action_at.unwrap_or(world.started);
    match dialled_within(world, &n, secs).await {
        Some(r) => {
            world.measure(
                &format!("time to call {role}"),
                (r.t.saturating_sub(since)) as f64 / 1000.0,
                "s",
                Some(secs as f64),
            );
            Ok(())
        }
        None => device_fail(format!(
            "the watch did not call {role} ({n}) within {secs} s"
        )),
    }
}

#[then(expr = "the watch calls the second parent after the parent")]
async fn calls_in_turn(world: &mut RigWorld) -> StepResult {
    let since = world.action_at.unwrap_or(world.started);
    let parent = number(world, "parent")?;
    let second = number(world, "second parent")?;
    let (Some(a), Some(b)) = (
        dialled_after(world, since, &parent),
        dialled_after(world, since, &second),
    ) else {
        return device_fail("the watch did not call both SOS numbers");
    };
    ensure_device(b > a, || {
        "the watch called the second SOS number before the first".into()
    })
}

#[when("the parent asks the backend for a listening call to the parent's number")]
async fn monitor_request(world: &mut RigWorld) -> StepResult {
    let parent = number(world, "parent")?;
    send_command(world, "the parent", "MONITOR", &[parent]).await
}

/// A listening call the wearer cannot notice is covert surveillance of a child.
#[then(expr = "any call the watch opens to the parent within {int} seconds is shown to the wearer")]
async fn monitor_is_noticeable(world: &mut RigWorld, secs: u32) -> StepResult {
    let parent = number(world, "parent")?;
    let Some(call) = dialled_within(world, &parent, secs).await else {
        world.note(format!(
            "the watch opened no call to the parent within {secs} s"
        ));
        return Ok(());
    };
    // Give the watch ten device seconds to show the call in any way.
    world.clock().sleep(10.0).await;
    let ind = world.rig().indicators.log();
    let window_start = call.t.saturating_sub(2000);
    let shown: Vec<String> = ind
        .since(ind.mark_since(window_start))
        .into_iter()
        .filter(|r| r.t <= call.t + 10_000)
        .filter_map(|r| match r.value {
            IndicatorEvent::Edge { line, level: true } if line != "mic" => Some(line),
            IndicatorEvent::Screen { text } if !idle_screen(&text) => {
                Some(format!("screen \"{text}\""))
            }
            _ => None,
        })
        .collect();
    if shown.is_empty() {
        device_fail("the watch opened a call to the parent with no light, vibration, sound or screen text: covert listening")
    } else {
        world.note(format!(
            "the wearer was shown the call: {}",
            shown.join(", ")
        ));
        Ok(())
    }
}

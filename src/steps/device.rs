//! Bringing the device into a state, and what the parent sets up through the app.

use super::common::*;
use crate::drivers::Position;
use crate::runner::world::{device_fail, RigWorld, StepFail, StepResult};
use crate::strategy::DeviceState;
use cucumber::{given, then, when};
use serde_json::json;

#[given("the watch is connected to its backend")]
async fn connected(world: &mut RigWorld) -> StepResult {
    ensure(world, DeviceState::Connected, true).await
}

#[given("the watch is booted")]
async fn booted(world: &mut RigWorld) -> StepResult {
    ensure(world, DeviceState::Booted, true).await
}

#[given("the watch is powered off")]
async fn powered_off(world: &mut RigWorld) -> StepResult {
    ensure(world, DeviceState::Off, true).await
}

#[given("the parent is signed in to the app")]
async fn parent_signed_in(world: &mut RigWorld) -> StepResult {
    token_for(world, Actor::Parent).await?;
    watch_id(world).await?;
    Ok(())
}

#[given("the stranger is signed in to the app with an account of their own")]
async fn stranger_signed_in(world: &mut RigWorld) -> StepResult {
    token_for(world, Actor::Stranger).await?;
    Ok(())
}

/// The parent's usual setup: centre number, SOS numbers and whitelist through the app.
#[given("the parent has set up the watch with the parent and the second parent as SOS numbers")]
async fn parent_setup(world: &mut RigWorld) -> StepResult {
    let id = watch_id(world).await?;
    let parent = number(world, "parent")?;
    let second = number(world, "second parent")?;
    let body = json!({ "center": parent, "sos": [parent, second], "whitelist": [parent, second] });
    let r = api(
        world,
        Actor::Parent,
        "PUT",
        &format!("/api/watches/{id}/numbers"),
        Some(body),
    )
    .await?;
    if !(200..300).contains(&r.status) {
        return device_fail(format!(
            "the backend refused the parent's own settings: HTTP {} {}",
            r.status, r.body
        ));
    }
    wait_settings_synced(world).await
}

#[given(expr = "the watch is at latitude {float} longitude {float}")]
#[when(expr = "the watch moves to latitude {float} longitude {float}")]
async fn watch_at(world: &mut RigWorld, lat: f64, lon: f64) -> StepResult {
    let p = Position {
        lat,
        lon,
        alt_m: 40.0,
    };
    world.rig().gnss.set_position(Some(p)).await?;
    world.position = Some(p);
    world.action_at = Some(world.now());
    Ok(())
}

#[when("the watch loses its GNSS fix")]
async fn fix_lost(world: &mut RigWorld) -> StepResult {
    world.rig().gnss.set_position(None).await?;
    world.action_at = Some(world.now());
    Ok(())
}

#[then(
    expr = "the backend shows the watch within {int} metres of that position within {int} seconds"
)]
async fn backend_position(world: &mut RigWorld, metres: u32, secs: u32) -> StepResult {
    let p = world.position.unwrap_or(crate::strategy::HOME);
    let since = world.action_at.unwrap_or(world.started);
    let deadline = world.clock().deadline(secs as f64);
    let mut best: Option<f64> = None;
    loop {
        for loc in locations_since(world, since).await? {
            if let (Some(lat), Some(lon)) = (loc["lat"].as_f64(), loc["lon"].as_f64()) {
                let d = distance_m(lat, lon, p.lat, p.lon);
                best = Some(best.map_or(d, |b: f64| b.min(d)));
                if d <= metres as f64 {
                    let latency = (record_time(&loc).unwrap_or(since) - since) as f64 / 1000.0;
                    world.measure("position error", d, "m", Some(metres as f64));
                    world.measure("position report latency", latency, "s", Some(secs as f64));
                    return Ok(());
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return match best {
                Some(d) => device_fail(format!(
                    "the nearest position the backend received is {d:.0} m from the position fed (limit {metres} m)"
                )),
                None => device_fail(format!("the backend received no position within {secs} s")),
            };
        }
        world.clock().sleep(1.0).await;
    }
}

fn declares(world: &RigWorld, feature: &str) -> Result<bool, StepFail> {
    let f: crate::config::Feature =
        serde_json::from_value(serde_json::Value::String(feature.to_string())).map_err(|_| {
            StepFail::Rig(format!(
                "`{feature}` is not a feature a device profile can declare"
            ))
        })?;
    Ok(world.ctx.loaded.device.device.declaration.has(f))
}

/// Scenarios about a feature apply only to devices that declare it.
#[given(expr = "the device declares the feature {string}")]
async fn declares_feature(world: &mut RigWorld, feature: String) -> StepResult {
    if declares(world, &feature)? {
        Ok(())
    } else {
        Err(StepFail::NotApplicable(format!(
            "the manufacturer's declaration does not list the feature `{feature}`"
        )))
    }
}

/// The counterpart: checks that an undeclared feature is really absent.
#[given(expr = "the device does not declare the feature {string}")]
async fn lacks_feature(world: &mut RigWorld, feature: String) -> StepResult {
    if declares(world, &feature)? {
        Err(StepFail::NotApplicable(format!(
            "the manufacturer's declaration lists the feature `{feature}`"
        )))
    } else {
        Ok(())
    }
}

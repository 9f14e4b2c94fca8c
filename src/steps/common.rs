//! Helpers shared by the steps.

use crate::drivers::ApiResponse;
use crate::runner::world::{device_fail, rig_fail, RigWorld, StepFail};
use crate::strategy::DeviceState;
use serde_json::Value;

/// Who acts in a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Parent,
    Stranger,
    Unauthenticated,
}

impl Actor {
    pub fn parse(s: &str) -> Result<Actor, StepFail> {
        match s.trim() {
            "the parent" | "parent" => Ok(Actor::Parent),
            "the stranger" | "a stranger" | "stranger" => Ok(Actor::Stranger),
            "an unauthenticated client" | "anyone" | "an anonymous client" => {
                Ok(Actor::Unauthenticated)
            }
            other => rig_fail(format!(
                "unknown actor `{other}` (the parent | the stranger | an unauthenticated client)"
            )),
        }
    }
}

/// A phone number by role, from the device profile's test numbers.
pub fn number(world: &RigWorld, who: &str) -> Result<String, StepFail> {
    let n = &world.ctx.loaded.device.device.numbers;
    let who = who
        .trim()
        .trim_start_matches("the ")
        .trim_end_matches("'s number")
        .trim_end_matches("'s");
    Ok(match who {
        "parent" => n.parent.clone(),
        "second parent" => n.second_parent.clone(),
        "stranger" | "a stranger" => n.stranger.clone(),
        other => {
            return rig_fail(format!(
                "no test number for `{other}` (parent | second parent | stranger)"
            ))
        }
    })
}

/// Bring the device to a state through the strategy.
pub async fn ensure(world: &mut RigWorld, state: DeviceState, fresh: bool) -> Result<(), StepFail> {
    let ctx = world.ctx.clone();
    let mut strategy = ctx.strategy.lock().await;
    strategy
        .bring_to(&ctx.rig, &ctx.loaded, state, fresh)
        .await?;
    Ok(())
}

/// The token an actor presents, logging in the test account once per scenario.
pub async fn token_for(world: &mut RigWorld, actor: Actor) -> Result<Option<String>, StepFail> {
    match actor {
        Actor::Unauthenticated => Ok(None),
        Actor::Parent => {
            let ctx = world.ctx.clone();
            let t = ctx
                .strategy
                .lock()
                .await
                .parent_token(&ctx.rig, &ctx.loaded)
                .await?;
            world.tokens.insert("parent".into(), t.clone());
            Ok(Some(t))
        }
        Actor::Stranger => {
            if let Some(t) = world.tokens.get("stranger") {
                return Ok(Some(t.clone()));
            }
            let acct = &world.ctx.loaded.device.device.backend.accounts.stranger;
            let password = crate::config::resolve_secret(&acct.password).map_err(StepFail::Rig)?;
            let body = serde_json::json!({ "email": acct.email, "password": password });
            let r = world
                .rig()
                .backend
                .request("POST", "/api/login", None, Some(&body))
                .await?;
            let Some(t) = r.body.get("token").and_then(Value::as_str) else {
                return rig_fail(format!(
                    "the stranger test account cannot log in (HTTP {}): {}",
                    r.status, r.body
                ));
            };
            world.tokens.insert("stranger".into(), t.to_string());
            Ok(Some(t.to_string()))
        }
    }
}

/// The watch's id in the backend, as its parent sees it.
pub async fn watch_id(world: &mut RigWorld) -> Result<String, StepFail> {
    if let Some(id) = &world.watch_id {
        return Ok(id.clone());
    }
    let token = token_for(world, Actor::Parent).await?;
    let r = world
        .rig()
        .backend
        .request("GET", "/api/watches", token.as_deref(), None)
        .await?;
    let imei = world.ctx.loaded.device.device.imei.clone();
    let id = r
        .body
        .as_array()
        .and_then(|ws| {
            ws.iter()
                .find(|w| w["imei"].as_str() == Some(imei.as_str()))
        })
        .and_then(|w| match &w["id"] {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
    match id {
        Some(id) => {
            world.watch_id = Some(id.clone());
            Ok(id)
        }
        None => rig_fail(format!(
            "the parent's account does not list the watch with IMEI {imei} (HTTP {}): {}",
            r.status, r.body
        )),
    }
}

/// An API request as an actor; the answer is kept for later `Then` steps.
pub async fn api(
    world: &mut RigWorld,
    actor: Actor,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<ApiResponse, StepFail> {
    let token = token_for(world, actor).await?;
    let r = world
        .rig()
        .backend
        .request(method, path, token.as_deref(), body.as_ref())
        .await?;
    world.note(format!("{actor:?} {method} {path} → HTTP {}", r.status));
    world.last_response = Some(r.clone());
    Ok(r)
}

/// A parent-app command to the watch, sent by `who`; the answer is kept and the
/// moment noted as the action latencies are measured from.
pub async fn send_command(
    world: &mut RigWorld,
    who: &str,
    command: &str,
    args: &[String],
) -> Result<(), StepFail> {
    let actor = Actor::parse(who)?;
    let id = watch_id(world).await?;
    world.action_at = Some(world.now());
    let body = serde_json::json!({ "command": command, "args": args });
    api(
        world,
        actor,
        "POST",
        &format!("/api/watches/{id}/commands"),
        Some(body),
    )
    .await?;
    Ok(())
}

/// `GET /api/watches/{id}{suffix}` as the parent; anything but 200 is a rig problem
/// (the parent must be able to read their own watch), described as `what`.
async fn parent_get(world: &mut RigWorld, suffix: &str, what: &str) -> Result<Value, StepFail> {
    let id = watch_id(world).await?;
    let r = api(
        world,
        Actor::Parent,
        "GET",
        &format!("/api/watches/{id}{suffix}"),
        None,
    )
    .await?;
    if r.status != 200 {
        return rig_fail(format!(
            "the parent cannot read the watch's {what}: HTTP {} {}",
            r.status, r.body
        ));
    }
    Ok(r.body)
}

/// The watch's details as its parent sees them (`GET /api/watches/{id}`).
pub async fn watch_details(world: &mut RigWorld) -> Result<Value, StepFail> {
    parent_get(world, "", "details").await
}

/// The watch's locations the backend shows its parent, reported at or after `since`.
pub async fn locations_since(world: &mut RigWorld, since: u64) -> Result<Vec<Value>, StepFail> {
    let body = parent_get(world, "/locations", "locations").await?;
    if let Some(all) = body.as_array() {
        world.rig().journal.backend_positions(all);
    }
    Ok(body
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|l| record_time(l).is_some_and(|t| t >= since))
                .cloned()
                .collect()
        })
        .unwrap_or_default())
}

/// The first call the watch dials to `number` since the scenario's last action,
/// waiting up to `secs` device seconds.
pub async fn dialled_within(
    world: &RigWorld,
    number: &str,
    secs: u32,
) -> Option<crate::drivers::eventlog::Record<crate::drivers::CellEvent>> {
    let since = world.action_at.unwrap_or(world.started);
    let log = world.rig().cellular.log();
    let number = number.to_string();
    log.wait_for(
        log.mark_since(since),
        secs as f64,
        move |e| matches!(e, crate::drivers::CellEvent::WatchDialled { number: n } if *n == number),
    )
    .await
}

/// Whether a screen text is what an idle watch shows anyway (nothing, or the time of
/// day), as opposed to a notification.
pub fn idle_screen(text: &str) -> bool {
    let t = text.trim();
    t.is_empty()
        || t == "--:--"
        || (t.len() <= 5
            && t.split_once(':').is_some_and(|(h, m)| {
                !h.is_empty()
                    && h.len() <= 2
                    && m.len() == 2
                    && (h.to_owned() + m).bytes().all(|b| b.is_ascii_digit())
            }))
}

/// Whether an API answer refuses the request.
pub fn refused(r: &ApiResponse) -> bool {
    matches!(r.status, 400 | 401 | 403 | 404 | 405 | 409 | 429)
}

/// Distance in metres along the WGS-84 geodesic.
pub fn distance_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    crate::gnss::geo::distance_m(lat1, lon1, lat2, lon2)
}

/// Device time a backend record carries (`received_t`, else `t`).
pub fn record_time(v: &Value) -> Option<u64> {
    v["received_t"].as_u64().or_else(|| v["t"].as_u64())
}

/// A pair `A,B` an earlier step left in the scenario's scratch values.
pub fn scratch_pair<T: std::str::FromStr>(world: &RigWorld, key: &str) -> Option<(T, T)> {
    let (a, b) = world.scratch.get(key)?.split_once(',')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Fail with the device if `ok` is false.
pub fn ensure_device(ok: bool, msg: impl FnOnce() -> String) -> Result<(), StepFail> {
    if ok {
        Ok(())
    } else {
        device_fail(msg())
    }
}

/// Wait until the backend reports that the watch acknowledged the parent's settings.
pub async fn wait_settings_synced(world: &mut RigWorld) -> Result<(), StepFail> {
    let id = watch_id(world).await?;
    // The backend forwards the settings to the watch over its (possibly encrypted)
    // link, which the rig cannot look into; it waits until the backend reports that
    // the watch acknowledged them, as the parent's app shows it.
    let timeout = world.ctx.loaded.rig.time.step_timeout;
    let deadline = world.clock().deadline(timeout);
    loop {
        let r = api(
            world,
            Actor::Parent,
            "GET",
            &format!("/api/watches/{id}"),
            None,
        )
        .await?;
        match r.body["settings_synced"].as_bool() {
            Some(true) => break,
            Some(false) if tokio::time::Instant::now() >= deadline => {
                return device_fail(format!(
                    "the watch did not acknowledge the parent's settings within {timeout} s"
                ))
            }
            Some(false) => world.clock().sleep(0.5).await,
            None => {
                world.note(
                    "the backend does not report whether the watch has its settings; allowing 10 s",
                );
                world.clock().sleep(10.0).await;
                break;
            }
        }
    }
    Ok(())
}

/// The watch's alarms the backend shows its parent, received at or after `since`.
pub async fn alarms_since(world: &mut RigWorld, since: u64) -> Result<Vec<Value>, StepFail> {
    let id = watch_id(world).await?;
    let r = api(
        world,
        Actor::Parent,
        "GET",
        &format!("/api/watches/{id}/alarms"),
        None,
    )
    .await?;
    if r.status != 200 {
        return rig_fail(format!(
            "the parent cannot read the watch's alarms: HTTP {} {}",
            r.status, r.body
        ));
    }
    Ok(r.body
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|al| record_time(al).is_some_and(|t| t >= since))
                .cloned()
                .collect()
        })
        .unwrap_or_default())
}

/// Wait up to `secs` device seconds for a position report received at or after `since`.
pub async fn report_since(world: &mut RigWorld, since: u64, secs: u32) -> Result<(), StepFail> {
    let deadline = world.clock().deadline(secs as f64);
    loop {
        if !locations_since(world, since).await?.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return device_fail(format!("the watch reported no position within {secs} s"));
        }
        world.clock().sleep(0.25).await;
    }
}

/// The host the watch's frames go to (the profile's device endpoint).
pub(crate) fn backend_host(world: &RigWorld) -> String {
    world
        .ctx
        .loaded
        .device
        .device
        .backend
        .device_endpoint
        .host
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_on_the_screen_is_not_a_notification() {
        for idle in ["", "  ", "--:--", "07:05", "7:05", "23:59"] {
            assert!(idle_screen(idle), "{idle:?}");
        }
        for notice in [
            "Call from +49151",
            "SOS sent",
            "In call +4915",
            "12:3",
            "ab:cd",
            "12:345",
        ] {
            assert!(!idle_screen(notice), "{notice:?}");
        }
    }

    #[test]
    fn distance_of_a_known_pair() {
        // Two points 261 m apart north-south and 103 m east-west: about 280 m.
        let d = distance_m(52.516275, 13.377704, 52.518620, 13.376187);
        assert!((d - 280.0).abs() < 30.0, "{d}");
        assert!(distance_m(1.0, 2.0, 1.0, 2.0) < 1e-6);
    }
}

//! The network between the watch and the world: coverage, a degraded data path, and
//! attackers on the path (a rogue server taking the backend's name, a man in the
//! middle with a forged certificate).
//!
//! What the steps judge comes from the gateway's capture and the parent's API only.
//! The strategy puts the network back to normal (coverage, no impairment, no
//! attacker) before every power-on, so no scenario inherits another's network.

use super::common::*;
use crate::drivers::Registration;
use crate::gateway::impair::Impairment;
use crate::gateway::{Dir, FlowEvent, ForgedCert, HostMode};
use crate::runner::world::{device_fail, rig_fail, RigWorld, StepResult};
use cucumber::{given, then, when};

// ---------------------------------------------------------------------------------
// Coverage
// ---------------------------------------------------------------------------------

#[when(expr = "the watch loses cellular coverage for {int} minutes")]
async fn coverage_gap(world: &mut RigWorld, minutes: u32) -> StepResult {
    let rig = world.rig();
    let start = world.now();
    rig.cellular
        .set_registration(Registration::Searching)
        .await?;
    world.clock().sleep(minutes as f64 * 60.0).await;
    rig.cellular.set_registration(Registration::Home).await?;
    let end = world.now();
    world
        .scratch
        .insert("coverage_gap".into(), format!("{start},{end}"));
    world.action_at = Some(end);
    world.measure("coverage gap", (end - start) as f64 / 1000.0, "s", None);
    Ok(())
}

#[then(expr = "the positions taken while out of coverage reach the backend within {int} seconds")]
async fn backfilled(world: &mut RigWorld, secs: u32) -> StepResult {
    let Some((start, end)) = scratch_pair::<u64>(world, "coverage_gap") else {
        return rig_fail("no coverage gap was made before this step");
    };
    let interval_s: Option<u64> = world
        .scratch
        .get("report_interval_s")
        .and_then(|s| s.parse().ok());
    // Every interval inside the gap should have produced a fix; allow one at each edge.
    let expected = interval_s
        .map(|i| ((end - start) / 1000 / i.max(1)).saturating_sub(2).max(1))
        .unwrap_or(1);
    let deadline = world.clock().deadline(secs as f64);
    let mut last_count;
    loop {
        // Fixes taken during the gap that the backend received after it.
        let records = locations_since(world, end).await?;
        let in_gap: Vec<_> = records
            .iter()
            .filter(|l| {
                l["t"]
                    .as_i64()
                    .is_some_and(|t| t >= start as i64 && t < end as i64)
            })
            .collect();
        last_count = in_gap.len();
        if last_count as u64 >= expected {
            let delay = in_gap
                .iter()
                .filter_map(|l| l["received_t"].as_u64())
                .max()
                .map(|r| r.saturating_sub(end) as f64 / 1000.0)
                .unwrap_or(0.0);
            world.measure(
                "positions from the gap delivered",
                last_count as f64,
                "positions",
                None,
            );
            world.measure(
                "backfill complete after coverage returned",
                delay,
                "s",
                Some(secs as f64),
            );
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        world.clock().sleep(0.5).await;
    }
    world.measure(
        "positions from the gap delivered",
        last_count as f64,
        "positions",
        None,
    );
    device_fail(format!(
        "{last_count} of at least {expected} positions fixed during the {} s without coverage reached the backend within {secs} s after it returned",
        (end - start) / 1000
    ))
}

// ---------------------------------------------------------------------------------
// A degraded data path
// ---------------------------------------------------------------------------------

fn set_both(world: &RigWorld, f: impl Fn(&mut Impairment)) -> StepResult {
    let gw = &world.rig().gateway;
    for dir in [Dir::Up, Dir::Down] {
        let mut imp = gw.impairment(dir);
        f(&mut imp);
        gw.set_impairment(dir, imp)?;
    }
    Ok(())
}

#[given(expr = "the network adds {int} ms of latency in each direction")]
async fn latency(world: &mut RigWorld, ms: u32) -> StepResult {
    set_both(world, |i| i.latency_ms = ms as f64)
}

#[given(expr = "the network loses {int} % of packets in each direction")]
async fn loss(world: &mut RigWorld, percent: u32) -> StepResult {
    if percent > 100 {
        return rig_fail(format!("a loss of {percent} % is not a probability"));
    }
    set_both(world, |i| i.loss = percent as f64 / 100.0)
}

#[given(expr = "the network carries at most {int} kbit\\/s in each direction")]
async fn bandwidth(world: &mut RigWorld, kbps: u32) -> StepResult {
    if kbps == 0 {
        return rig_fail("a bandwidth of 0 kbit/s is an outage: say so");
    }
    set_both(world, |i| i.bandwidth_bps = Some(kbps as u64 * 1000))
}

// ---------------------------------------------------------------------------------
// Attackers on the path
// ---------------------------------------------------------------------------------

fn attack(world: &mut RigWorld, mode: HostMode) -> StepResult {
    let host = backend_host(world);
    world.rig().gateway.set_host_mode(&host, mode)?;
    world
        .scratch
        .insert("attack_since".into(), world.now().to_string());
    Ok(())
}

#[given(
    regex = r"^an attacker intercepts the watch's backend connection with a (self-signed certificate|certificate from an untrusted authority)$"
)]
async fn mitm(world: &mut RigWorld, which: String) -> StepResult {
    let cert = if which.starts_with("self-signed") {
        ForgedCert::SelfSigned
    } else {
        ForgedCert::UntrustedCa
    };
    attack(world, HostMode::Mitm { cert })
}

#[given("an attacker's server has taken the backend's name")]
async fn rogue(world: &mut RigWorld) -> StepResult {
    attack(
        world,
        HostMode::Rogue {
            cert: ForgedCert::SelfSigned,
        },
    )
}

#[when("the network cuts the watch's connections")]
async fn cut(world: &mut RigWorld) -> StepResult {
    world.rig().gateway.reset_flows();
    world.action_at = Some(world.now());
    Ok(())
}

#[then(expr = "the watch sends the attacker no application data within {int} seconds")]
async fn nothing_to_attacker(world: &mut RigWorld, secs: u32) -> StepResult {
    let since: u64 = world
        .scratch
        .get("attack_since")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| crate::runner::world::StepFail::Rig("no attacker was set up".into()))?;
    let host = backend_host(world);
    let gw = world.rig().gateway.clone();
    let mark = gw.flows().mark_since(since);
    let deadline = world.clock().deadline(secs as f64);
    // The verdict needs the watch to have met the attacker at least once.
    loop {
        let attempts: Vec<_> = gw
            .summaries()
            .into_iter()
            .filter(|s| s.opened_t >= since && s.host == host && s.intercept.is_some())
            .collect();
        let exposed: Vec<String> = attempts
            .iter()
            .filter_map(|s| {
                let i = s.intercept.as_ref()?;
                i.exposed().then(|| {
                    let how = match &i.handshake {
                        crate::gateway::Handshake::NotTls => "in clear text".to_string(),
                        crate::gateway::Handshake::Accepted { version, .. } => format!(
                            "over {version} after accepting a forged {} certificate for {}",
                            i.certificate.name(),
                            i.name
                        ),
                        other => format!("{other:?}"),
                    };
                    format!(
                        "flow {} to {}:{}: {} bytes {how}",
                        s.id, s.host, s.port, i.plaintext_up
                    )
                })
            })
            .collect();
        let read: u64 = attempts
            .iter()
            .filter_map(|s| s.intercept.as_ref().map(|i| i.plaintext_up))
            .sum();
        if !exposed.is_empty() {
            world.measure(
                "application bytes the attacker read",
                read as f64,
                "B",
                Some(0.0),
            );
            let frames: Vec<String> = gw
                .flows()
                .since(mark)
                .into_iter()
                .filter_map(|r| match r.value {
                    FlowEvent::Frame {
                        id,
                        dir: Dir::Up,
                        frame,
                    } if attempts.iter().any(|s| s.id == id) => Some(frame),
                    _ => None,
                })
                .take(3)
                .collect();
            return device_fail(format!(
                "the watch sent the attacker its data: {}{}",
                exposed.join("; "),
                if frames.is_empty() {
                    String::new()
                } else {
                    format!(" — first frames: {}", frames.join(" "))
                }
            ));
        }
        if tokio::time::Instant::now() >= deadline {
            world.measure(
                "connection attempts to the attacker",
                attempts.len() as f64,
                "connections",
                None,
            );
            if attempts.is_empty() {
                return rig_fail(format!(
                    "the watch did not connect to {host} within {secs} s, so the attacker was never tested"
                ));
            }
            world.measure("application bytes the attacker read", 0.0, "B", Some(0.0));
            return Ok(());
        }
        world.clock().sleep(0.5).await;
    }
}

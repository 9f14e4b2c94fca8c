//! The backend and the data path: who may read and change what, and what travels in
//! clear text.

use super::common::*;
use crate::runner::world::{device_fail, rig_fail, RigWorld, StepResult};
use cucumber::{then, when};
use serde_json::json;

#[when(
    regex = r"^(the parent|the stranger|an unauthenticated client) requests the watch's (location history|details|alarms)$"
)]
async fn read_watch(world: &mut RigWorld, who: String, what: String) -> StepResult {
    let actor = Actor::parse(&who)?;
    let id = watch_id(world).await?;
    let path = match what.as_str() {
        "location history" => format!("/api/watches/{id}/locations"),
        "alarms" => format!("/api/watches/{id}/alarms"),
        _ => format!("/api/watches/{id}"),
    };
    api(world, actor, "GET", &path, None).await?;
    Ok(())
}

#[when(
    regex = r"^(the parent|the stranger|an unauthenticated client) changes the watch's SOS numbers to the stranger's$"
)]
async fn change_numbers(world: &mut RigWorld, who: String) -> StepResult {
    let actor = Actor::parse(&who)?;
    let id = watch_id(world).await?;
    let stranger = number(world, "stranger")?;
    let body = json!({ "center": stranger, "sos": [stranger], "whitelist": [stranger] });
    api(
        world,
        actor,
        "PUT",
        &format!("/api/watches/{id}/numbers"),
        Some(body),
    )
    .await?;
    Ok(())
}

#[when(
    regex = r"^(the parent|the stranger|an unauthenticated client) asks the backend to make the watch call the stranger$"
)]
async fn command_call(world: &mut RigWorld, who: String) -> StepResult {
    let stranger = number(world, "stranger")?;
    send_command(world, &who, "CALL", &[stranger]).await
}

#[when(
    regex = r"^(the parent|the stranger|an unauthenticated client) asks the backend to locate the watch now$"
)]
async fn command_locate(world: &mut RigWorld, who: String) -> StepResult {
    send_command(world, &who, "CR", &[]).await
}

#[then("the backend refuses the request")]
async fn backend_refuses(world: &mut RigWorld) -> StepResult {
    let Some(r) = world.last_response.clone() else {
        return rig_fail("no request was made before this step");
    };
    if refused(&r) {
        return Ok(());
    }
    let shown = r.body.to_string();
    let shown: String = shown.chars().take(300).collect();
    device_fail(format!(
        "the backend answered HTTP {} and served: {shown}",
        r.status
    ))
}

#[then("the watch's SOS numbers are unchanged")]
async fn numbers_unchanged(world: &mut RigWorld) -> StepResult {
    let stranger = number(world, "stranger")?;
    let numbers = watch_details(world).await?["numbers"].to_string();
    ensure_device(!numbers.contains(&stranger), || {
        format!("the stranger's number is now among the watch's numbers: {numbers}")
    })
}

#[when(expr = "the watch has reported its position to the backend within {int} seconds")]
async fn has_reported(world: &mut RigWorld, secs: u32) -> StepResult {
    let since = world.started;
    report_since(world, since, secs).await
}

/// What counts as the wearer's personal data: every position the rig fed the watch
/// in this run (and the one it feeds now), the family's phone numbers, the IMEI.
fn personal_data(world: &RigWorld) -> crate::gateway::pii::PiiNeedles {
    let dev = &world.ctx.loaded.device.device;
    let mut positions: Vec<(f64, f64)> = Vec::new();
    let mut push = |lat: f64, lon: f64| {
        // Positions closer than ~100 m to one already listed add nothing.
        if !positions
            .iter()
            .any(|&(a, b)| (a - lat).abs() < 0.001 && (b - lon).abs() < 0.001)
            && positions.len() < 500
        {
            positions.push((lat, lon));
        }
    };
    let home = crate::strategy::HOME;
    push(home.lat, home.lon);
    if let Some(p) = world.position {
        push(p.lat, p.lon);
    }
    for r in world.rig().gnss.fed().since(crate::drivers::Mark(0)) {
        if let Some(p) = r.value.position {
            push(p.lat, p.lon);
        }
    }
    crate::gateway::pii::PiiNeedles {
        positions,
        phone_numbers: vec![
            dev.numbers.parent.clone(),
            dev.numbers.second_parent.clone(),
        ],
        imeis: vec![dev.imei.clone()],
        other: vec![],
    }
}

#[then("no captured traffic contains the watch's position, phone numbers or IMEI in clear text")]
async fn no_cleartext_personal_data(world: &mut RigWorld) -> StepResult {
    // This scenario's traffic only: earlier scenarios' flows are theirs.
    let since = world.started;
    let flows: Vec<_> = world
        .rig()
        .gateway
        .summaries()
        .into_iter()
        .filter(|f| f.opened_t >= since)
        .collect();
    world.measure("flows captured", flows.len() as f64, "flows", None);
    if flows.is_empty() {
        return rig_fail("the gateway captured no traffic in this scenario; nothing to judge");
    }
    let found = world
        .rig()
        .gateway
        .scan_cleartext(personal_data(world), since, 20)
        .await?;
    world.measure(
        "personal data found in clear text",
        found.len() as f64,
        "findings",
        Some(0.0),
    );
    ensure_device(found.is_empty(), || {
        let shown: Vec<String> = found
            .iter()
            .take(5)
            .map(|f| {
                format!(
                    "{:?} in flow {} to {}:{} ({}, offset {}): {} [{}]",
                    f.finding.kind,
                    f.flow,
                    f.host,
                    f.port,
                    if f.dir == crate::gateway::Dir::Up {
                        "from the watch"
                    } else {
                        "to the watch"
                    },
                    f.finding.offset,
                    f.finding.detail,
                    f.finding.excerpt
                )
            })
            .collect();
        format!(
            "clear-text personal data in the captured traffic ({} findings): {}",
            found.len(),
            shown.join("; ")
        )
    })
}

#[then("every connection the watch made to its backend used TLS 1.2 or newer")]
async fn all_tls(world: &mut RigWorld) -> StepResult {
    let host = crate::steps::common::backend_host(world);
    // This scenario's connections on which the watch sent something (a connection
    // cut before its first byte was neither TLS nor clear text).
    let since = world.started;
    let flows: Vec<_> = world
        .rig()
        .gateway
        .summaries()
        .into_iter()
        .filter(|f| {
            f.host == host
                && f.opened_t >= since
                && f.protocol != crate::gateway::FlowProtocol::Undetermined
        })
        .collect();
    if flows.is_empty() {
        return rig_fail(format!("no connection to {host} was captured"));
    }
    // The version the server chose when its hello was seen, else the best offered.
    let version = |f: &crate::gateway::FlowSummary| {
        f.server_tls
            .as_ref()
            .map(|s| s.version)
            .or(f.tls.as_ref().map(|t| t.version))
    };
    let bad: Vec<String> = flows
        .iter()
        .filter(|f| f.tls.is_none() || version(f).is_none_or(|v| v < 0x0303))
        .map(|f| match &f.tls {
            None => format!("flow {} to {}:{} in clear text", f.id, f.host, f.port),
            Some(_) => format!(
                "flow {} to {}:{} uses {}",
                f.id,
                f.host,
                f.port,
                crate::gateway::tls_version_name(version(f).unwrap_or(0))
            ),
        })
        .collect();
    world.measure(
        "connections to the backend",
        flows.len() as f64,
        "flows",
        None,
    );
    ensure_device(bad.is_empty(), || bad.join("; "))
}

#[when(
    expr = "an attacker on the internet sends the backend a position report for the watch at latitude {float} longitude {float}"
)]
async fn forged_position(world: &mut RigWorld, lat: f64, lon: f64) -> StepResult {
    let dev = &world.ctx.loaded.device.device;
    let utc_ns = world.clock().utc_ms(world.now()) as i128 * 1_000_000;
    let utc = time::OffsetDateTime::from_unix_timestamp_nanos(utc_ns)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let content = format!(
        "UD,{:02}{:02}{:02},{:02}{:02}{:02},A,{:.6},{},{:.6},{},0.00,0,0,8,100,90,0,0,00000000",
        utc.day(),
        utc.month() as u8,
        utc.year() % 100,
        utc.hour(),
        utc.minute(),
        utc.second(),
        lat.abs(),
        if lat >= 0.0 { 'N' } else { 'S' },
        lon.abs(),
        if lon >= 0.0 { 'E' } else { 'W' },
    );
    let frame = crate::wire::watchproto::encode("3G", &dev.device_id, content.as_bytes());
    world
        .scratch
        .insert("forged".into(), format!("{lat},{lon}"));
    world.action_at = Some(world.now());
    match world
        .rig()
        .backend
        .device_endpoint_exchange(&frame, world.clock().wall(5.0))
        .await
    {
        Ok(answer) => world.note(format!(
            "the device endpoint took the forged frame and answered {} bytes",
            answer.len()
        )),
        // The server refusing the attacker's connection is the behaviour wanted.
        Err(e) if e.to_string().contains("TLS handshake failed") => {
            world.note(format!("the device endpoint refused the attacker: {e}"))
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

#[then(expr = "the parent does not see the forged position within {int} seconds")]
async fn forged_not_seen(world: &mut RigWorld, secs: u32) -> StepResult {
    let Some((lat, lon)) = scratch_pair::<f64>(world, "forged") else {
        return rig_fail("no forged position was sent before this step");
    };
    world.clock().sleep(secs as f64).await;
    let seen = locations_since(world, 0).await?.iter().any(|l| {
        match (l["lat"].as_f64(), l["lon"].as_f64()) {
            (Some(a), Some(o)) => distance_m(a, o, lat, lon) < 200.0,
            _ => false,
        }
    });
    ensure_device(!seen, || {
        format!("the parent's map shows the watch at the forged position {lat:.5},{lon:.5}")
    })
}

#[when("the stranger lists the watches on their own account")]
async fn stranger_lists(world: &mut RigWorld) -> StepResult {
    api(world, Actor::Stranger, "GET", "/api/watches", None).await?;
    Ok(())
}

#[then("the list does not include the watch")]
async fn list_excludes_watch(world: &mut RigWorld) -> StepResult {
    let Some(r) = world.last_response.clone() else {
        return rig_fail("no request was made before this step");
    };
    let imei = world.ctx.loaded.device.device.imei.clone();
    let listed = r
        .body
        .as_array()
        .is_some_and(|a| a.iter().any(|w| w["imei"].as_str() == Some(imei.as_str())));
    ensure_device(!listed, || {
        format!("another family's account lists the watch (IMEI {imei})")
    })
}

#[when("a client presenting a made-up token requests the watch's location history")]
async fn made_up_token(world: &mut RigWorld) -> StepResult {
    let id = watch_id(world).await?;
    // 64 hex digits of the same shape as a real token, from nothing the backend issued.
    let token: String = format!("{:016x}", world.now() ^ 0x5eed_f00d_dead_beef)
        .repeat(4)
        .chars()
        .take(64)
        .collect();
    let r = world
        .rig()
        .backend
        .request(
            "GET",
            &format!("/api/watches/{id}/locations"),
            Some(&token),
            None,
        )
        .await?;
    world.note(format!("made-up token → HTTP {}", r.status));
    world.last_response = Some(r);
    Ok(())
}

#[when(expr = "someone registers an account with the password {string}")]
async fn register_with(world: &mut RigWorld, password: String) -> StepResult {
    // A fresh address each time, so the answer is about the password only.
    let email = format!("weak-{}@example.org", world.now());
    let body = json!({ "email": email, "password": password });
    let r = world
        .rig()
        .backend
        .request("POST", "/api/register", None, Some(&body))
        .await?;
    world.note(format!(
        "registering {email} with a {}-character password → HTTP {}",
        password.len(),
        r.status
    ));
    world.last_response = Some(r);
    Ok(())
}

#[when(expr = "the wearer holds the {string} button for {int} seconds to record a voice message")]
async fn record_voice(world: &mut RigWorld, button: String, secs: u32) -> StepResult {
    let declared = &world.ctx.loaded.device.device.declaration;
    if !declared.has(crate::config::Feature::VoiceMessage) {
        return Err(crate::runner::world::StepFail::NotApplicable(
            "the device declares no voice messages".into(),
        ));
    }
    let b = match button.as_str() {
        "call1" => crate::drivers::Button::Call1,
        "call2" => crate::drivers::Button::Call2,
        "power" => crate::drivers::Button::Power,
        "sos" => crate::drivers::Button::Sos,
        other => return rig_fail(format!("no button `{other}` (sos | power | call1 | call2)")),
    };
    if !declared.buttons.iter().any(|d| d == b.name()) {
        return rig_fail(format!("the device declares no `{button}` button"));
    }
    world.action_at = Some(world.now());
    world.rig().buttons.press(b, secs as f64).await?;
    Ok(())
}

#[then(expr = "the watch sends nothing in clear text within {int} seconds")]
async fn nothing_in_clear(world: &mut RigWorld, secs: u32) -> StepResult {
    world.clock().sleep(secs as f64).await;
    // Every connection of this scenario on which the watch sent something, including
    // the one to its backend opened when it booted.
    let since = world.started;
    let clear: Vec<String> = world
        .rig()
        .gateway
        .summaries()
        .into_iter()
        .filter(|f| f.opened_t >= since && f.is_cleartext() && f.bytes_up > 0)
        .map(|f| {
            format!(
                "flow {} to {}:{} ({} bytes from the watch in clear text)",
                f.id, f.host, f.port, f.bytes_up
            )
        })
        .collect();
    world.measure(
        "connections carrying clear text",
        clear.len() as f64,
        "flows",
        Some(0.0),
    );
    ensure_device(clear.is_empty(), || clear.join("; "))
}

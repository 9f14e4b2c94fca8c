//! SMS commands as the parents send them, replayed SMS, commands the manufacturer
//! does not declare, a moved server, factory resets and malformed input.
//!
//! An authenticated SMS command is written in the format the manufacturer declares
//! (`declaration.sms_command_format`, e.g. `pw,{password},{counter},{command}#`). The
//! rig sets the password itself through the parent app (the `PW` backend command, as a
//! parent does), so no device secret has to be handed to the rig. Counters are the
//! current Unix time in milliseconds, strictly increasing within a run, so they are
//! above anything a parent's phone used before.

use super::common::*;
use crate::drivers::CellEvent;
use crate::gateway::FlowEvent;
use crate::runner::world::{device_fail, rig_fail, RigWorld, StepFail, StepResult};
use crate::strategy::DeviceState;
use cucumber::{gherkin::Step, given, then, when};

const PASSWORD: &str = "sms_password";
const PREVIOUS_PASSWORD: &str = "sms_password_previous";
const LAST_COUNTER: &str = "sms_counter";

/// The declared format, or not applicable.
fn command_format(world: &RigWorld) -> Result<String, StepFail> {
    let decl = &world.ctx.loaded.device.device.declaration;
    match &decl.sms_command_format {
        Some(f) if !decl.sms_commands.is_empty() => Ok(f.clone()),
        _ => Err(StepFail::NotApplicable(
            "the device declares no SMS commands (or no SMS command format)".into(),
        )),
    }
}

#[given(expr = "the device does not declare the SMS command {string}")]
async fn lacks_sms_command(world: &mut RigWorld, word: String) -> StepResult {
    let decl = &world.ctx.loaded.device.device.declaration;
    if decl
        .sms_commands
        .iter()
        .any(|c| c.eq_ignore_ascii_case(&word))
    {
        return Err(StepFail::NotApplicable(format!(
            "the manufacturer declares the SMS command `{word}`"
        )));
    }
    command_format(world)?;
    Ok(())
}

/// Twelve letters and digits from the kernel's generator.
fn random_password() -> Result<String, StepFail> {
    use std::io::Read;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut b = [0u8; 12];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| StepFail::from(crate::error::RigError::Other(format!("/dev/urandom: {e}"))))?;
    Ok(b.iter()
        .map(|x| char::from(ALPHABET[usize::from(*x) % ALPHABET.len()]))
        .collect())
}

/// Replace `{parent}`, `{second parent}` and `{stranger}` by the test numbers.
pub fn expand_numbers(world: &RigWorld, text: &str) -> Result<String, StepFail> {
    let mut out = text.to_string();
    for who in ["second parent", "parent", "stranger"] {
        let key = format!("{{{who}}}");
        if out.contains(&key) {
            out = out.replace(&key, &number(world, who)?);
        }
    }
    Ok(out)
}

async fn set_password(world: &mut RigWorld) -> StepResult {
    command_format(world)?;
    let pw = random_password()?;
    send_command(world, "the parent", "PW", std::slice::from_ref(&pw)).await?;
    let status = world.last_response.as_ref().map(|r| r.status).unwrap_or(0);
    if status != 202 && status != 200 {
        return rig_fail(format!(
            "the backend did not pass the parent's new SMS password on to the watch (HTTP {status})"
        ));
    }
    // The command reaches the watch over its open connection within moments; the
    // next SMS takes longer than that through the modem line.
    world.clock().sleep(2.0).await;
    if let Some(old) = world.scratch.insert(PASSWORD.into(), pw) {
        world.scratch.insert(PREVIOUS_PASSWORD.into(), old);
    }
    world.note("the parent set a new SMS command password through the app");
    Ok(())
}

#[given("the parent has set a new SMS command password through the app")]
async fn given_password(world: &mut RigWorld) -> StepResult {
    ensure(world, DeviceState::Connected, false).await?;
    set_password(world).await
}

#[when("the parent sets another SMS command password through the app")]
async fn when_password(world: &mut RigWorld) -> StepResult {
    set_password(world).await
}

/// The SMS text of an authenticated command.
fn authenticated(world: &mut RigWorld, command: &str, previous: bool) -> Result<String, StepFail> {
    let format = command_format(world)?;
    let key = if previous {
        PREVIOUS_PASSWORD
    } else {
        PASSWORD
    };
    let Some(password) = world.scratch.get(key).cloned() else {
        return rig_fail(format!(
            "no {} SMS password was set before this step",
            if previous { "previous" } else { "current" }
        ));
    };
    let last: u64 = world
        .scratch
        .get(LAST_COUNTER)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let counter = now.max(last + 1);
    world
        .scratch
        .insert(LAST_COUNTER.into(), counter.to_string());
    let command = expand_numbers(world, command)?;
    Ok(format
        .replace("{password}", &password)
        .replace("{counter}", &counter.to_string())
        .replace("{command}", &command))
}

async fn text_from_parent(world: &mut RigWorld, text: String) -> StepResult {
    let from = number(world, "parent")?;
    world.action_at = Some(world.now());
    world.scratch.insert("last_sms_from".into(), from.clone());
    world.scratch.insert("last_sms_text".into(), text.clone());
    world.rig().cellular.send_sms(&from, &text).await?;
    Ok(())
}

#[when(expr = "the parent texts the SMS command {string}")]
async fn parent_command(world: &mut RigWorld, command: String) -> StepResult {
    let text = authenticated(world, &command, false)?;
    text_from_parent(world, text).await
}

#[when(expr = "the parent texts the SMS command {string} with the previous password")]
async fn parent_command_previous(world: &mut RigWorld, command: String) -> StepResult {
    let text = authenticated(world, &command, true)?;
    text_from_parent(world, text).await
}

#[when("the network delivers the last SMS to the watch again")]
async fn replay_sms(world: &mut RigWorld) -> StepResult {
    let (Some(from), Some(text)) = (
        world.scratch.get("last_sms_from").cloned(),
        world.scratch.get("last_sms_text").cloned(),
    ) else {
        return rig_fail("no SMS was sent before this step");
    };
    // Whoever records an SMS on its way can deliver it again, word for word; on the
    // rig's network the rig does exactly that.
    world.note(format!("replaying the SMS from {from} unchanged"));
    world.action_at = Some(world.now());
    world.rig().cellular.send_sms(&from, &text).await?;
    Ok(())
}

/// The first SMS the watch sends to `to` since the last action, within `secs`.
async fn reply_to(world: &RigWorld, to: &str, secs: u32) -> Option<(f64, String)> {
    let since = world.action_at.unwrap_or(world.started);
    let log = world.rig().cellular.log();
    let to = to.to_string();
    let r = log
        .wait_for(
            log.mark_since(since),
            secs as f64,
            move |e| matches!(e, CellEvent::SmsFromWatch { to: t, .. } if *t == to),
        )
        .await?;
    let CellEvent::SmsFromWatch { text, .. } = r.value else {
        return None;
    };
    Some((r.t.saturating_sub(since) as f64 / 1000.0, text))
}

#[then(expr = "the watch answers the parent by SMS within {int} seconds")]
async fn answers_parent(world: &mut RigWorld, secs: u32) -> StepResult {
    let parent = number(world, "parent")?;
    match reply_to(world, &parent, secs).await {
        Some((after, text)) => {
            world.measure("SMS command answered after", after, "s", Some(secs as f64));
            world.note(format!("the watch answered: \"{text}\""));
            Ok(())
        }
        None => device_fail(format!(
            "the watch did not answer the parent's SMS command, written in the declared format with the current password, within {secs} s"
        )),
    }
}

/// The same wait as a precondition: without an answer to a valid command nothing
/// later in the scenario can be judged, so its absence is inconclusive.
#[when(expr = "the watch has answered the parent by SMS within {int} seconds")]
async fn has_answered_parent(world: &mut RigWorld, secs: u32) -> StepResult {
    let parent = number(world, "parent")?;
    match reply_to(world, &parent, secs).await {
        Some((_, text)) => {
            world.note(format!("the watch answered: \"{text}\""));
            Ok(())
        }
        None => rig_fail(format!(
            "the watch did not answer a valid SMS command from the parent within {secs} s, so what follows cannot be judged (is `sms_command_format` right?)"
        )),
    }
}

#[then(expr = "the watch opens no connection to {string} within {int} seconds")]
async fn no_connection_to(world: &mut RigWorld, host: String, secs: u32) -> StepResult {
    let since = world.action_at.unwrap_or(world.started);
    let flows = world.rig().gateway.flows();
    match flows
        .wait_for(flows.mark_since(since), secs as f64, {
            let host = host.clone();
            move |e| matches!(e, FlowEvent::Opened { host: h, .. } if h.eq_ignore_ascii_case(&host))
        })
        .await
    {
        Some(r) => {
            let FlowEvent::Opened { port, .. } = r.value else {
                return rig_fail("unexpected flow event");
            };
            device_fail(format!(
                "the watch connected to {host}:{port} {:.1} s later: it follows a server address it was told to use",
                r.t.saturating_sub(since) as f64 / 1000.0
            ))
        }
        None => Ok(()),
    }
}

/// Undo a moved server: the parent points the watch back to its declared backend
/// and the rig waits (bounded) until it connects there.
fn restore_server(world: &mut RigWorld) {
    let Ok(format) = command_format(world) else {
        return;
    };
    let password = world.scratch.get(PASSWORD).cloned();
    let parent = number(world, "parent").ok();
    world.on_scenario_end("point the watch back to its declared backend", move |ctx| async move {
        let ep = &ctx.loaded.device.device.backend.device_endpoint;
        let mark = ctx.rig.gateway.flows().mark_since(ctx.clock.now());
        let already_home = || {
            ctx.rig
                .gateway
                .flows()
                .since(mark)
                .iter()
                .any(|r| matches!(&r.value, FlowEvent::Opened { host, .. } if host.eq_ignore_ascii_case(&ep.host)))
        };
        if let (Some(pw), Some(parent)) = (password, parent) {
            let counter = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0)
                + 1000;
            let text = format
                .replace("{password}", &pw)
                .replace("{counter}", &counter.to_string())
                .replace("{command}", &format!("ip,{},{}", ep.host, ep.port));
            ctx.rig.cellular.send_sms(&parent, &text).await?;
        }
        let deadline = ctx.clock.deadline(60.0);
        while !already_home() && tokio::time::Instant::now() < deadline {
            ctx.clock.sleep(1.0).await;
        }
        Ok(())
    });
}

#[when(expr = "the parent texts the SMS command to use the server {string} port {int}")]
async fn sms_move_server(world: &mut RigWorld, host: String, port: u16) -> StepResult {
    let text = authenticated(world, &format!("ip,{host},{port}"), false)?;
    restore_server(world);
    text_from_parent(world, text).await
}

#[when(expr = "the parent asks the backend to move the watch to the server {string} port {int}")]
async fn backend_move_server(world: &mut RigWorld, host: String, port: u16) -> StepResult {
    if !world.scratch.contains_key(PASSWORD) && command_format(world).is_ok() {
        // The undo goes by SMS: it needs a password the rig knows.
        set_password(world).await?;
    }
    restore_server(world);
    send_command(world, "the parent", "IP", &[host, port.to_string()]).await
}

// ------------------------------------------------------------------ factory reset

#[when("the parent resets the watch to factory settings through the app")]
async fn factory_reset(world: &mut RigWorld) -> StepResult {
    let device = &world.ctx.loaded.device.device;
    if !device
        .declaration
        .protocol_commands
        .iter()
        .any(|c| c == "FACTORY")
    {
        return Err(StepFail::NotApplicable(
            "the device declares no FACTORY command".into(),
        ));
    }
    let pattern = regex::Regex::new(&device.console.boot_pattern)
        .map_err(|e| StepFail::from(crate::error::RigError::Config(e.to_string())))?;
    let boot_timeout = world.ctx.loaded.rig.time.boot_timeout;
    let step_timeout = world.ctx.loaded.rig.time.step_timeout;
    let host = device.backend.device_endpoint.host.clone();
    let mark = world.rig().console.log().mark();
    send_command(world, "the parent", "FACTORY", &[]).await?;
    let status = world.last_response.as_ref().map(|r| r.status).unwrap_or(0);
    if status != 202 && status != 200 {
        return rig_fail(format!(
            "the backend did not pass the factory reset on to the watch (HTTP {status})"
        ));
    }
    let since = world.action_at.unwrap_or(world.started);
    let Some(line) = world
        .rig()
        .console
        .log()
        .wait_for(mark, boot_timeout, {
            let pattern = pattern.clone();
            move |l| pattern.is_match(&l.text)
        })
        .await
    else {
        return device_fail(format!(
            "the watch did not restart within {boot_timeout} s of the factory reset it acknowledged"
        ));
    };
    world.note(format!("after the factory reset: {}", line.value.text));
    // Back on its backend: a new connection after the restart, then online again.
    let flows = world.rig().gateway.flows();
    if flows
        .wait_for(flows.mark_since(line.t), step_timeout, {
            let host = host.clone();
            move |e| matches!(e, FlowEvent::Opened { host: h, .. } if *h == host)
        })
        .await
        .is_none()
    {
        return rig_fail(format!(
            "the watch did not connect to {host} within {step_timeout} s after the factory reset"
        ));
    }
    let ctx = world.ctx.clone();
    ctx.strategy
        .lock()
        .await
        .wait_online(&ctx.rig, &ctx.loaded, step_timeout)
        .await?;
    world.measure(
        "factory reset until back online",
        world.now().saturating_sub(since) as f64 / 1000.0,
        "s",
        None,
    );
    // What the watch had been told before the reset is gone; a later step that needs
    // it sets it again.
    world.scratch.remove(PASSWORD);
    world.scratch.remove(PREVIOUS_PASSWORD);
    world.action_at = Some(world.now());
    Ok(())
}

#[then(expr = "the watch calls neither the parent nor the second parent within {int} seconds")]
async fn calls_no_parent(world: &mut RigWorld, secs: u32) -> StepResult {
    let parents = [number(world, "parent")?, number(world, "second parent")?];
    let since = world.action_at.unwrap_or(world.started);
    let log = world.rig().cellular.log();
    let dialled = log
        .wait_for(log.mark_since(since), secs as f64, {
            let parents = parents.clone();
            move |e| matches!(e, CellEvent::WatchDialled { number } if parents.contains(number))
        })
        .await;
    let _ = world.rig().cellular.hang_up().await;
    match dialled.map(|r| r.value) {
        Some(CellEvent::WatchDialled { number }) => device_fail(format!(
            "after the factory reset the watch still called {number}: the parents' numbers were not erased"
        )),
        _ => Ok(()),
    }
}

// ------------------------------------------------------------------ malformed input

#[when("a stranger texts each of these messages to the watch:")]
async fn stranger_texts_each(world: &mut RigWorld, step: &Step) -> StepResult {
    texts_each(world, step, "stranger", false).await
}

#[when("the parent texts each of these SMS commands:")]
async fn parent_texts_each(world: &mut RigWorld, step: &Step) -> StepResult {
    texts_each(world, step, "parent", true).await
}

async fn texts_each(
    world: &mut RigWorld,
    step: &Step,
    who: &str,
    authenticate: bool,
) -> StepResult {
    let Some(table) = step.table.as_ref() else {
        return rig_fail("this step needs a table of messages, one per row");
    };
    let from = number(world, who)?;
    let first = world.now();
    for row in &table.rows {
        let Some(cell) = row.first() else { continue };
        let text = unescape(&expand_numbers(world, cell)?);
        let text = if authenticate {
            authenticated(world, &text, false)?
        } else {
            text
        };
        world.rig().cellular.send_sms(&from, &text).await?;
        // One message at a time, as a phone sends them.
        world.clock().sleep(1.0).await;
    }
    world.action_at = Some(first);
    Ok(())
}

/// Table cells write `{N*c}` for N copies of the character `c` (N up to 1000). SMS
/// text on the rig's network is printable ASCII, at most 160 characters.
fn unescape(cell: &str) -> String {
    let mut out = String::new();
    let mut rest = cell;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let repeat = rest[1..].split_once('}').and_then(|(inner, after)| {
            let (n, c) = inner.split_once('*')?;
            let n = n.parse::<usize>().ok().filter(|n| *n <= 1000)?;
            let mut chars = c.chars();
            let c = chars.next().filter(|_| chars.next().is_none())?;
            Some((c.to_string().repeat(n), after))
        });
        match repeat {
            Some((text, after)) => {
                out.push_str(&text);
                rest = after;
            }
            None => {
                out.push('{');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[then("the watch has not restarted since the scenario began")]
async fn not_restarted(world: &mut RigWorld) -> StepResult {
    let pattern = regex::Regex::new(&world.ctx.loaded.device.device.console.boot_pattern)
        .map_err(|e| StepFail::from(crate::error::RigError::Config(e.to_string())))?;
    let since = world.started;
    let powered_on = world.ctx.strategy.lock().await.powered_on_at();
    let log = world.rig().console.log();
    // The first boot after the rig switched the supply on is the scenario's own.
    let boots: Vec<_> = log
        .since(log.mark_since(powered_on))
        .into_iter()
        .filter(|l| pattern.is_match(&l.value.text))
        .collect();
    match boots.get(1) {
        Some(l) => device_fail(format!(
            "the watch restarted by itself {:.1} s into the scenario: \"{}\"",
            l.t.saturating_sub(since) as f64 / 1000.0,
            l.value.text
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::unescape;

    #[test]
    fn table_cells_unescape() {
        assert_eq!(unescape("{3*A}x"), "AAAx");
        assert_eq!(unescape("{pw}"), "{pw}");
        assert_eq!(unescape("{5000*A}").len(), 8, "bounded: left as written");
    }
}

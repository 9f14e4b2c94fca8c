//! The cellular side: calls and SMS to the watch, and what it does with them.

use super::common::*;
use crate::drivers::CellEvent;
use crate::runner::world::{device_fail, RigWorld, StepResult};
use cucumber::{then, when};

#[when(regex = r"^(the parent|the second parent|a stranger) calls the watch$")]
async fn call_watch(world: &mut RigWorld, who: String) -> StepResult {
    let n = number(world, &who)?;
    world.action_at = Some(world.now());
    world.rig().cellular.call_watch(&n).await?;
    Ok(())
}

#[when("a caller presenting the parent's number calls the watch")]
async fn spoofed_call(world: &mut RigWorld) -> StepResult {
    // On the rig's network the presented caller id is whatever the rig says: this is
    // exactly what a caller-id spoofing service does on a real network.
    let n = number(world, "parent")?;
    world.action_at = Some(world.now());
    world.note(format!(
        "caller id {n} presented by a caller who is not the parent"
    ));
    world.rig().cellular.call_watch(&n).await?;
    Ok(())
}

#[then(expr = "the watch does not answer the call within {int} seconds")]
async fn not_answered(world: &mut RigWorld, secs: u32) -> StepResult {
    let since = world.action_at.unwrap_or(world.started);
    let log = world.rig().cellular.log();
    let answered = log
        .wait_for(log.mark_since(since), secs as f64, |e| {
            matches!(e, CellEvent::WatchAnswered { .. })
        })
        .await;
    let _ = world.rig().cellular.hang_up().await;
    match answered {
        Some(r) => {
            let after = (r.t.saturating_sub(since)) as f64 / 1000.0;
            device_fail(format!("the watch answered the call by itself after {after:.1} s, with nobody pressing a key"))
        }
        None => Ok(()),
    }
}

#[when(regex = r#"^(the parent|the second parent|a stranger) texts "(.*)" to the watch$"#)]
async fn sms_to_watch(world: &mut RigWorld, who: String, text: String) -> StepResult {
    let n = number(world, &who)?;
    // `{parent}`, `{second parent}`, `{stranger}` stand for the test numbers.
    let text = super::sms::expand_numbers(world, &text)?;
    world.action_at = Some(world.now());
    world.scratch.insert("last_sms_text".into(), text.clone());
    world.rig().cellular.send_sms(&n, &text).await?;
    Ok(())
}

#[then(expr = "the watch sends no SMS within {int} seconds")]
async fn no_sms(world: &mut RigWorld, secs: u32) -> StepResult {
    let since = world.action_at.unwrap_or(world.started);
    let log = world.rig().cellular.log();
    match log
        .wait_for(log.mark_since(since), secs as f64, |e| {
            matches!(e, CellEvent::SmsFromWatch { .. })
        })
        .await
    {
        Some(r) => {
            let CellEvent::SmsFromWatch { to, text } = r.value else {
                unreachable!()
            };
            device_fail(format!("the watch answered by SMS to {to}: \"{text}\""))
        }
        None => Ok(()),
    }
}

#[then(expr = "the watch places no call to the stranger within {int} seconds")]
async fn no_call_to_stranger(world: &mut RigWorld, secs: u32) -> StepResult {
    let stranger = number(world, "stranger")?;
    let since = world.action_at.unwrap_or(world.started);
    match dialled_within(world, &stranger, secs).await {
        Some(r) => device_fail(format!(
            "the watch called the stranger's number {stranger} {:.1} s later",
            (r.t.saturating_sub(since)) as f64 / 1000.0
        )),
        None => Ok(()),
    }
}

/// Indicator activity that shows a call or message to the wearer, since `since`.
fn shown_to_wearer(world: &RigWorld, since: u64, until: u64, needle: Option<&str>) -> Vec<String> {
    let log = world.rig().indicators.log();
    log.since(log.mark_since(since))
        .into_iter()
        .filter(|r| r.t <= until)
        .filter_map(|r| match r.value {
            crate::drivers::IndicatorEvent::Edge { line, level: true }
                if needle.is_none() && line != "mic" =>
            {
                Some(line)
            }
            crate::drivers::IndicatorEvent::Screen { text }
                if !idle_screen(&text) && needle.is_none_or(|n| text.contains(n)) =>
            {
                Some(format!("screen \"{text}\""))
            }
            _ => None,
        })
        .collect()
}

#[then(expr = "the watch rejects the call without ringing within {int} seconds")]
async fn rejects_without_ringing(world: &mut RigWorld, secs: u32) -> StepResult {
    let since = world.action_at.unwrap_or(world.started);
    let log = world.rig().cellular.log();
    let outcome = log
        .wait_for(log.mark_since(since), secs as f64, |e| {
            matches!(e, CellEvent::WatchHungUp | CellEvent::WatchAnswered { .. })
        })
        .await;
    let _ = world.rig().cellular.hang_up().await;
    let until = outcome.as_ref().map(|r| r.t).unwrap_or_else(|| world.now());
    let shown = shown_to_wearer(world, since, until, None);
    match outcome.map(|r| r.value) {
        Some(CellEvent::WatchHungUp) if shown.is_empty() => {
            world.measure(
                "time to reject",
                (until.saturating_sub(since)) as f64 / 1000.0,
                "s",
                Some(secs as f64),
            );
            Ok(())
        }
        Some(CellEvent::WatchHungUp) => device_fail(format!(
            "the call was rejected only after ringing for the wearer: {}",
            shown.join(", ")
        )),
        Some(_) => {
            device_fail("the watch answered a call from a number that is not on its whitelist")
        }
        None => {
            device_fail(format!(
            "the watch let a call from a number that is not on its whitelist ring for {secs} s{}",
            if shown.is_empty() { String::new() } else { format!(" ({})", shown.join(", ")) }
        ))
        }
    }
}

#[then(expr = "the watch shows no message from the stranger within {int} seconds")]
async fn no_message_shown(world: &mut RigWorld, secs: u32) -> StepResult {
    let since = world.action_at.unwrap_or(world.started);
    world.clock().sleep(secs as f64).await;
    let stranger = number(world, "stranger")?;
    let mut shown = shown_to_wearer(world, since, world.now(), Some(&stranger));
    if let Some(text) = world.scratch.get("last_sms_text") {
        let head: String = text.chars().take(12).collect();
        shown.extend(shown_to_wearer(world, since, world.now(), Some(&head)));
    }
    ensure_device(shown.is_empty(), || {
        format!(
            "the watch showed a message from a number that is not on its whitelist: {}",
            shown.join(", ")
        )
    })
}

#[then(expr = "the watch opens no call to the parent within {int} seconds")]
async fn no_call_to_parent(world: &mut RigWorld, secs: u32) -> StepResult {
    let parent = number(world, "parent")?;
    match dialled_within(world, &parent, secs).await {
        Some(_) => {
            device_fail("the watch opened a call for a function its manufacturer does not declare")
        }
        None => Ok(()),
    }
}

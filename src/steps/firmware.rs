//! Firmware integrity and the debug interfaces.

use super::common::*;
use crate::drivers::{DebugAccess, FlashOutcome};
use crate::runner::world::{device_fail, rig_fail, RigWorld, StepFail, StepResult};
use crate::strategy::DeviceState;
use cucumber::{then, when};

/// Flip one byte of an image's payload (after the header's blank line), keeping the
/// header and any signature line as they are.
pub fn tamper(image: &[u8]) -> Option<Vec<u8>> {
    let header_end = image.windows(2).position(|w| w == b"\n\n")? + 2;
    let at = header_end + 16;
    if at >= image.len() {
        return None;
    }
    let mut out = image.to_vec();
    out[at] ^= 0x5a;
    Some(out)
}

#[when("the rig flashes a copy of the firmware image with one payload byte changed")]
async fn flash_tampered(world: &mut RigWorld) -> StepResult {
    let image = world.ctx.loaded.firmware_image();
    let bytes =
        std::fs::read(&image).map_err(|e| StepFail::Rig(format!("{}: {e}", image.display())))?;
    let Some(bad) = tamper(&bytes) else {
        return rig_fail(format!("{} is too short to tamper with", image.display()));
    };
    let path = world.ctx.evidence_dir.join("tampered-firmware.img");
    std::fs::write(&path, &bad).map_err(|e| StepFail::Rig(e.to_string()))?;
    ensure(world, DeviceState::Off, true).await?;
    // Whatever happens next, the following scenario re-flashes the configured image.
    world.ctx.strategy.lock().await.forget_flash();
    let outcome = world.rig().flasher.flash(&path).await?;
    world.note(format!("flashing the tampered image: {outcome:?}"));
    world.scratch.insert(
        "flash_outcome".into(),
        serde_json::to_string(&outcome).unwrap_or_default(),
    );
    Ok(())
}

/// After a flash attempt: `None` if the bootloader refused the image; otherwise power
/// on and return the boot line and its `version` group, if the watch booted within
/// `secs`.
type Booted = Option<(String, Option<String>)>;

async fn boot_after_flash(world: &mut RigWorld, secs: u32) -> Result<Option<Booted>, StepFail> {
    let outcome: Option<FlashOutcome> = world
        .scratch
        .get("flash_outcome")
        .and_then(|s| serde_json::from_str(s).ok());
    if let Some(FlashOutcome::Refused { reason }) = outcome {
        world.note(format!("the bootloader refused the image: {reason}"));
        return Ok(None);
    }
    let pattern = regex::Regex::new(&world.ctx.loaded.device.device.console.boot_pattern)
        .map_err(|e| StepFail::Rig(e.to_string()))?;
    let log = world.rig().console.log();
    let mark = log.mark();
    world.rig().power.set(true).await?;
    let booted = log
        .wait_for(mark, secs as f64, |l| pattern.is_match(&l.text))
        .await;
    world.rig().power.set(false).await?;
    Ok(Some(booted.map(|line| {
        let version = pattern
            .captures(&line.value.text)
            .and_then(|c| c.name("version"))
            .map(|m| m.as_str().to_string());
        (line.value.text, version)
    })))
}

#[then(expr = "the watch does not run the tampered image within {int} seconds of power-on")]
async fn tampered_not_run(world: &mut RigWorld, secs: u32) -> StepResult {
    match boot_after_flash(world, secs).await? {
        Some(Some((line, _))) => {
            device_fail(format!("the watch booted the tampered image: \"{line}\""))
        }
        _ => Ok(()),
    }
}

/// The `version:` line of an image header, if it has one.
fn image_version(bytes: &[u8]) -> Option<String> {
    let header_end = bytes.windows(2).position(|w| w == b"\n\n")?;
    String::from_utf8_lossy(&bytes[..header_end])
        .lines()
        .find_map(|l| l.strip_prefix("version:").map(|v| v.trim().to_string()))
}

#[when("the rig flashes the vendor's previous firmware image")]
async fn flash_previous(world: &mut RigWorld) -> StepResult {
    let Some(previous) = world.ctx.loaded.device.device.firmware.previous.clone() else {
        return Err(StepFail::NotApplicable(
            "the device profile names no previous firmware image (firmware.previous)".into(),
        ));
    };
    let bytes = std::fs::read(&previous)
        .map_err(|e| StepFail::Rig(format!("{}: {e}", previous.display())))?;
    let version = image_version(&bytes).unwrap_or_default();
    world
        .scratch
        .insert("previous_version".into(), version.clone());
    ensure(world, DeviceState::Off, true).await?;
    world.ctx.strategy.lock().await.forget_flash();
    let outcome = world.rig().flasher.flash(&previous).await?;
    world.note(format!(
        "flashing the previous image (version {version}): {outcome:?}"
    ));
    world.scratch.insert(
        "flash_outcome".into(),
        serde_json::to_string(&outcome).unwrap_or_default(),
    );
    Ok(())
}

#[then(expr = "the watch does not run the previous image within {int} seconds of power-on")]
async fn previous_not_run(world: &mut RigWorld, secs: u32) -> StepResult {
    let previous = world
        .scratch
        .get("previous_version")
        .cloned()
        .unwrap_or_default();
    match boot_after_flash(world, secs).await? {
        Some(Some((line, version)))
            if version.is_none() || version.as_deref() == Some(previous.as_str()) =>
        {
            device_fail(format!(
                "the watch went back to firmware {previous}: \"{line}\""
            ))
        }
        _ => Ok(()),
    }
}

#[then("a debug probe cannot read the watch's flash")]
async fn debug_locked(world: &mut RigWorld) -> StepResult {
    match world.rig().debug.probe(256).await? {
        DebugAccess::Locked { detail } => {
            world.note(format!("debug port refused: {detail}"));
            Ok(())
        }
        DebugAccess::Open { idcode, flash_read } => device_fail(format!(
            "a probe attached (IDCODE {idcode}) and read {} bytes of flash",
            flash_read.len()
        )),
    }
}

#[when(expr = "the rig types {string} on the console")]
async fn type_on_console(world: &mut RigWorld, text: String) -> StepResult {
    world.action_at = Some(world.now());
    world.scratch.insert(
        "console_mark".into(),
        world.rig().console.log().mark().0.to_string(),
    );
    world.rig().console.send(&format!("{text}\r\n")).await?;
    Ok(())
}

#[then(expr = "the console offers no shell within {int} seconds")]
async fn no_shell(world: &mut RigWorld, secs: u32) -> StepResult {
    let mark = crate::drivers::Mark(
        world
            .scratch
            .get("console_mark")
            .and_then(|m| m.parse().ok())
            .unwrap_or(0),
    );
    let prompt = regex::Regex::new(r"(?i)(^|\s)(sh|shell|root|#|\$)\s*[>#$]\s*$|commands:")
        .expect("valid regex");
    match world
        .rig()
        .console
        .log()
        .wait_for(mark, secs as f64, |l| prompt.is_match(&l.text))
        .await
    {
        Some(line) => device_fail(format!(
            "the console answered with a shell: \"{}\"",
            line.value.text
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::tamper;

    #[test]
    fn tampering_changes_exactly_one_payload_byte() {
        let img = b"RRFW1\nversion: 1\n\n0123456789abcdefXYZ\nSIG ed25519 00\n".to_vec();
        let t = tamper(&img).unwrap();
        let diff: Vec<usize> = (0..img.len()).filter(|&i| img[i] != t[i]).collect();
        assert_eq!(diff.len(), 1);
        assert!(diff[0] > img.windows(2).position(|w| w == b"\n\n").unwrap());
        assert!(tamper(b"RRFW1\n\nshort").is_none());
    }
}

//! Firmware integrity, updates over the network, hard-coded secrets in the image and
//! the debug interfaces.

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
    match outcome {
        Some(FlashOutcome::Refused { reason }) => {
            world.note(format!("the bootloader refused the image: {reason}"));
            return Ok(None);
        }
        // A locked debug port keeps every image out, good or bad: the device's own
        // check of the image was never reached, so this scenario cannot decide.
        Some(FlashOutcome::Locked { detail }) => {
            return Err(StepFail::Rig(format!(
                "the debug port is locked, so the image never reached the device's own checks ({detail}); test this through the device's bootloader or update path"
            )))
        }
        _ => {}
    }
    let pattern = regex::Regex::new(&world.ctx.loaded.device.device.console.boot_pattern)
        .map_err(|e| StepFail::Rig(e.to_string()))?;
    let log = world.rig().console.log();
    let mark = log.mark();
    world.rig().power.set(true).await?;
    let matcher = pattern.clone();
    let booted = log
        .wait_for(mark, secs as f64, move |l| matcher.is_match(&l.text))
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
    let mark = console_mark(world);
    let prompt = regex::Regex::new(r"(?i)(^|\s)(sh|shell|root|#|\$)\s*[>#$]\s*$|commands:")
        .expect("valid regex");
    match world
        .rig()
        .console
        .log()
        .wait_for(mark, secs as f64, move |l| prompt.is_match(&l.text))
        .await
    {
        Some(line) => device_fail(format!(
            "the console answered with a shell: \"{}\"",
            line.value.text
        )),
        None => Ok(()),
    }
}

/// The `rollback:` index of an image header, if it has one.
fn image_rollback(bytes: &[u8]) -> Option<u64> {
    let header_end = bytes.windows(2).position(|w| w == b"\n\n")?;
    String::from_utf8_lossy(&bytes[..header_end])
        .lines()
        .find_map(|l| {
            l.strip_prefix("rollback:")
                .and_then(|v| v.trim().parse().ok())
        })
}

// ---------------------------------------------------------------------------------
// Hard-coded secrets in the image
// ---------------------------------------------------------------------------------

#[when("the rig searches the device's firmware image for hard-coded secrets")]
async fn scan_image(world: &mut RigWorld) -> StepResult {
    let image = world.ctx.loaded.firmware_image();
    let scan = crate::firmware_scan::scan_file(&image)
        .map_err(|e| StepFail::Rig(format!("{}: {e}", image.display())))?;
    world.note(format!(
        "scanned {} ({} bytes, {} printable strings): {} finding(s)",
        image.display(),
        scan.bytes,
        scan.strings,
        scan.findings.len() as u64 + scan.dropped
    ));
    let mut lines: Vec<String> = scan.findings.iter().map(|f| f.to_string()).collect();
    if scan.dropped > 0 {
        lines.push(format!("and {} more", scan.dropped));
    }
    world.measure(
        "hard-coded secrets in the firmware image",
        (scan.findings.len() as u64 + scan.dropped) as f64,
        "findings",
        Some(0.0),
    );
    world.scratch.insert(
        "secret_findings".into(),
        serde_json::to_string(&lines).unwrap_or_default(),
    );
    Ok(())
}

#[then("the image holds no private key and no password, key, secret, token or PIN with a literal value")]
async fn no_secrets(world: &mut RigWorld) -> StepResult {
    let Some(found) = world.scratch.get("secret_findings") else {
        return rig_fail("the firmware image was not searched in this scenario");
    };
    let found: Vec<String> = serde_json::from_str(found).unwrap_or_default();
    ensure_device(found.is_empty(), || {
        format!(
            "the firmware image holds hard-coded secrets: {}",
            found.join("; ")
        )
    })
}

// ---------------------------------------------------------------------------------
// Updates over the network
// ---------------------------------------------------------------------------------

/// `name` with every byte outside `A-Z a-z 0-9 - . _ ~` percent-encoded.
fn url_segment(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Version and anti-rollback index of an image on the vendor's update server, read
/// from its header as the server hands it out (`GET /fw/<name>`, no authentication).
async fn server_image_header(
    world: &mut RigWorld,
    name: &str,
) -> Result<(Option<String>, Option<u64>), StepFail> {
    let path = format!("/fw/{}", url_segment(name));
    let r = world
        .rig()
        .backend
        .request("GET", &path, None, None)
        .await?;
    if r.status != 200 {
        return rig_fail(format!(
            "the vendor's update server does not serve `{name}` (GET {path}: HTTP {})",
            r.status
        ));
    }
    let text = match &r.body {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Ok((
        image_version(text.as_bytes()),
        image_rollback(text.as_bytes()),
    ))
}

#[when(expr = "the backend pushes the vendor's {word} update image to the watch")]
async fn push_update(world: &mut RigWorld, kind: String) -> StepResult {
    let device = world.ctx.loaded.device.device.clone();
    if !device.declaration.has(crate::config::Feature::OtaUpdate) {
        return Err(StepFail::NotApplicable(
            "the device does not declare over-the-air updates (feature ota_update)".into(),
        ));
    }
    let Some(name) = device
        .firmware
        .ota_test_images
        .as_ref()
        .and_then(|o| o.get(&kind))
        .map(str::to_string)
    else {
        return Err(StepFail::NotApplicable(format!(
            "the device profile names no {kind} update image (firmware.ota_test_images.{kind})"
        )));
    };
    let (version, rollback) = server_image_header(world, &name).await?;
    let Some(version) = version else {
        return rig_fail(format!(
            "the {kind} update image `{name}` has no `version:` header line"
        ));
    };
    // Installing an image with a higher anti-rollback index cannot be undone on a
    // device that enforces anti-rollback: its configured image could not be flashed
    // again for the rest of the run, and every later scenario would run on other
    // firmware.
    let configured = world.ctx.loaded.firmware_image();
    let configured_rollback = std::fs::read(&configured)
        .ok()
        .and_then(|b| image_rollback(&b));
    if let (Some(pushed), Some(own)) = (rollback, configured_rollback) {
        if pushed > own {
            return Err(StepFail::NotApplicable(format!(
                "the {kind} update image `{name}` has anti-rollback index {pushed}, above the \
                 configured image's {own}: once installed, the configured image could not be \
                 flashed again for the rest of the run; this needs an update image with \
                 anti-rollback index {own} (IXIT)"
            )));
        }
    }
    ensure(world, DeviceState::Connected, false).await?;
    // Whatever the watch does with the update, the next scenario re-flashes the
    // configured image.
    world.ctx.strategy.lock().await.forget_flash();
    world.scratch.insert(
        "console_mark".into(),
        world.rig().console.log().mark().0.to_string(),
    );
    world
        .scratch
        .insert("pushed_version".into(), version.clone());
    world.scratch.insert("pushed_kind".into(), kind.clone());
    world.note(format!(
        "pushing the {kind} update `{name}` (version {version}, anti-rollback index {})",
        rollback.map_or("unknown".to_string(), |r| r.to_string())
    ));
    send_command(world, "the parent", "UPGRADE", std::slice::from_ref(&name)).await?;
    let r = world.last_response.clone();
    match r {
        Some(r) if (200..300).contains(&r.status) => Ok(()),
        Some(r) => rig_fail(format!(
            "the backend did not push the update `{name}`: HTTP {} {}",
            r.status, r.body
        )),
        None => rig_fail("the backend gave no answer to the update command"),
    }
}

/// The backend's `firmware` field for the watch, as its parent sees it.
async fn backend_firmware(world: &mut RigWorld) -> Result<Option<String>, StepFail> {
    Ok(watch_details(world).await?["firmware"]
        .as_str()
        .map(str::to_string))
}

/// The boot pattern, and whether it has a `version` group.
fn boot_pattern(world: &RigWorld) -> Result<(regex::Regex, bool), StepFail> {
    let pattern = regex::Regex::new(&world.ctx.loaded.device.device.console.boot_pattern)
        .map_err(|e| StepFail::Rig(e.to_string()))?;
    let has_version = pattern.capture_names().any(|n| n == Some("version"));
    Ok((pattern, has_version))
}

/// Wait up to `secs` for the watch to show it runs `version`: a boot line (after the
/// push) with that version, or the backend reporting it. Returns the evidence.
async fn runs_version(
    world: &mut RigWorld,
    version: &str,
    secs: u32,
) -> Result<Option<String>, StepFail> {
    let (pattern, has_version) = boot_pattern(world)?;
    let mark = console_mark(world);
    let deadline = world.clock().deadline(secs as f64);
    loop {
        if has_version {
            let line = world
                .rig()
                .console
                .log()
                .wait_for(mark, 5.0, {
                    let (pattern, version) = (pattern.clone(), version.to_string());
                    move |l| {
                        pattern
                            .captures(&l.text)
                            .and_then(|c| c.name("version"))
                            .is_some_and(|v| v.as_str() == version)
                    }
                })
                .await;
            if let Some(line) = line {
                let since = world.action_at.unwrap_or(world.started);
                world.measure(
                    "time from the update command to the new version's boot line",
                    line.t.saturating_sub(since) as f64 / 1000.0,
                    "s",
                    Some(secs as f64),
                );
                return Ok(Some(format!("console: \"{}\"", line.value.text)));
            }
        } else {
            world.clock().sleep(5.0).await;
        }
        if backend_firmware(world).await?.as_deref() == Some(version) {
            return Ok(Some(format!("the backend reports firmware {version}")));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
    }
}

#[then(expr = "the watch runs the update's version within {int} seconds")]
async fn update_runs(world: &mut RigWorld, secs: u32) -> StepResult {
    let Some(version) = world.scratch.get("pushed_version").cloned() else {
        return rig_fail("no update was pushed in this scenario");
    };
    match runs_version(world, &version, secs).await? {
        Some(evidence) => {
            world.note(format!("the watch runs {version}: {evidence}"));
            let reported = backend_firmware(world).await?;
            world.note(format!(
                "the backend reports firmware {}",
                reported.as_deref().unwrap_or("(none)")
            ));
            Ok(())
        }
        None => {
            let reported = backend_firmware(world).await?;
            device_fail(format!(
                "the watch did not run the update {version} within {secs} s of the update \
                 command (no boot line with version {version}; the backend reports firmware {})",
                reported.as_deref().unwrap_or("(none)")
            ))
        }
    }
}

#[then(expr = "the watch does not run the pushed image within {int} seconds")]
async fn pushed_not_run(world: &mut RigWorld, secs: u32) -> StepResult {
    let Some(version) = world.scratch.get("pushed_version").cloned() else {
        return rig_fail("no update was pushed in this scenario");
    };
    let kind = world
        .scratch
        .get("pushed_kind")
        .cloned()
        .unwrap_or_default();
    let running = world.ctx.loaded.device.device.firmware.version.clone();
    if version == running {
        return rig_fail(format!(
            "the {kind} update has the version the watch already runs ({version}): the rig \
             cannot tell whether it was installed"
        ));
    }
    match runs_version(world, &version, secs).await? {
        Some(evidence) => device_fail(format!(
            "the watch installed the {kind} update and runs {version}: {evidence}"
        )),
        None => {
            world.note(format!(
                "no sign of version {version} within {secs} s of the update command"
            ));
            Ok(())
        }
    }
}

/// The console mark a step saved under `console_mark` (the start of the log if none).
fn console_mark(world: &RigWorld) -> crate::drivers::Mark {
    crate::drivers::Mark(
        world
            .scratch
            .get("console_mark")
            .and_then(|m| m.parse().ok())
            .unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::{image_rollback, image_version, tamper, url_segment};
    use std::path::Path;

    #[test]
    fn image_headers_are_read_and_names_encoded() {
        let img = b"RRFW1\nversion: 2.5.0\nrollback: 6\npayload-size: 3\n\nabc";
        assert_eq!(image_version(img).as_deref(), Some("2.5.0"));
        assert_eq!(image_rollback(img), Some(6));
        // Only the header counts, and a header without the lines has none.
        assert_eq!(image_rollback(b"RRFW1\n\nrollback: 9\n"), None);
        assert_eq!(image_rollback(b"no header at all"), None);
        assert_eq!(image_rollback(b"RRFW1\nrollback: x\n\n"), None);
        assert_eq!(url_segment("reference-2.5.0.img"), "reference-2.5.0.img");
        assert_eq!(url_segment("a b/c?d"), "a%20b%2Fc%3Fd");
    }

    #[test]
    fn every_profile_names_update_images_of_each_kind() {
        // The OTA test images of the profiles: valid and older are signed by the
        // vendor and differ in version from the factory image; unsigned has no `SIG`
        // line; tampered is signed but differs from the valid image in its payload.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let rig = root.join("rigs/virtual.yaml");
        let mut profiles: Vec<String> = std::fs::read_dir(root.join("devices"))
            .unwrap()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".yaml")
                    .map(String::from)
            })
            .collect();
        profiles.sort();
        assert!(profiles.len() > 1);
        for profile in &profiles {
            let loaded = crate::config::load_rig(&rig, Some(profile)).unwrap();
            let fw = &loaded.device.device.firmware;
            let ota = fw.ota_test_images.as_ref().unwrap();
            let read = |kind: &str| {
                std::fs::read(root.join("images").join(ota.get(kind).unwrap())).unwrap()
            };
            let own = std::fs::read(&fw.image).unwrap();
            let (valid, unsigned, tampered, older) = (
                read("valid"),
                read("unsigned"),
                read("tampered"),
                read("older"),
            );
            let signed = |b: &[u8]| String::from_utf8_lossy(b).contains("\nSIG ed25519 ");
            assert!(
                signed(&valid) && signed(&tampered) && signed(&older),
                "{profile}"
            );
            assert!(!signed(&unsigned), "{profile}");
            assert_ne!(image_version(&valid), image_version(&own), "{profile}");
            assert!(image_rollback(&older) < image_rollback(&own), "{profile}");
            assert_eq!(valid.len(), tampered.len(), "{profile}");
            assert_ne!(valid, tampered, "{profile}");
            assert!(ota.get("bogus").is_none());
        }
        assert!(crate::config::is_image_name("reference-2.5.0.img"));
        for bad in ["", ".", "..", "../x.img", "a b.img", "dir\\x.img"] {
            assert!(!crate::config::is_image_name(bad), "{bad:?}");
        }
    }

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

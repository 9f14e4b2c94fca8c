//! The strategy: brings the device through its states
//! off → flashed → booted → GNSS fix → registered → connected to its backend,
//! using nothing but the drivers, and brings it back to a known state between
//! scenarios (power-cycle, re-flash when a scenario left other firmware in it).

use crate::clock::Clock;
use crate::config::LoadedRig;
use crate::drivers::{CallAnswer, CellEvent, FlashOutcome, Position, Registration};
use crate::error::{RigError, RigResult};
use crate::gateway::FlowEvent;
use crate::rig::Rig;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Where the device is, as far as the rig has established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceState {
    Unknown,
    Off,
    Flashed,
    Booted,
    GnssFix,
    Registered,
    Connected,
}

/// Where a fresh device is put: a fixed, documented home position
/// (Alexanderplatz, Berlin, on the WGS-84 ellipsoid).
pub const HOME: Position = Position {
    lat: 52.520008,
    lon: 13.404954,
    alt_m: 40.0,
};

/// Wait (bounded) until nothing has arrived on the modem line for two device
/// seconds.
async fn quiesce_modem_line(rig: &Rig) {
    for _ in 0..10 {
        let mark = rig.cellular.log().mark();
        rig.clock.sleep(2.0).await;
        if rig.cellular.log().since(mark).is_empty() {
            return;
        }
    }
}

/// One transition, for the run log and the evidence.
#[derive(Debug, Clone, Serialize)]
pub struct Transition {
    pub t: u64,
    pub to: DeviceState,
    pub detail: String,
}

pub struct Strategy {
    state: DeviceState,
    /// Device time at which the rig last switched the supply on: everything the
    /// device did since belongs to the current boot.
    powered_on_at: u64,
    flashed_sha: Option<String>,
    parent_token: Option<String>,
    /// The last recovery after an instrument fault: the fault count when it began
    /// and when the instruments were back.
    last_recovery: Option<(u64, u64)>,
    pub transitions: Vec<Transition>,
}

/// How long a bring-up waits for a lost instrument to come back (wall time).
pub const RECOVERY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Default for Strategy {
    fn default() -> Self {
        Strategy::new()
    }
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &std::path::Path) -> RigResult<String> {
    let bytes = std::fs::read(path)
        .map_err(|e| RigError::Config(format!("firmware image {}: {e}", path.display())))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

impl Strategy {
    pub fn new() -> Strategy {
        Strategy {
            state: DeviceState::Unknown,
            powered_on_at: 0,
            flashed_sha: None,
            parent_token: None,
            last_recovery: None,
            transitions: Vec::new(),
        }
    }

    /// Device time at which the rig last switched the supply on.
    pub fn powered_on_at(&self) -> u64 {
        self.powered_on_at
    }

    /// The last recovery after an instrument fault: the rig's fault count
    /// ([`Rig::fault_count`]) when it began and when the instruments were back.
    pub fn last_recovery(&self) -> Option<(u64, u64)> {
        self.last_recovery
    }

    /// A scenario flashed other firmware: the next bring-up must re-flash.
    pub fn forget_flash(&mut self) {
        self.flashed_sha = None;
        self.state = DeviceState::Unknown;
    }

    fn enter(&mut self, clock: &Clock, to: DeviceState, detail: impl Into<String>) {
        self.state = to;
        self.transitions.push(Transition {
            t: clock.now(),
            to,
            detail: detail.into(),
        });
    }

    /// Bring the device to `target`. With `fresh`, start from power-off (scenario
    /// independence: every scenario starts from a freshly booted device).
    pub async fn bring_to(
        &mut self,
        rig: &Rig,
        loaded: &LoadedRig,
        target: DeviceState,
        fresh: bool,
    ) -> RigResult<()> {
        let clock = rig.clock;
        let time = &loaded.rig.time;
        let device = &loaded.device.device;
        // After an instrument fault (a line lost and back, a faulty instrument) the
        // device's state is not known: wait (bounded) for the instruments, then start
        // again from power-off and re-flash.
        let faults = rig.fault_count();
        let faults_seen = self.last_recovery.map_or(0, |(_, done)| done);
        if faults != faults_seen || rig.check().is_err() {
            let since = std::time::Instant::now();
            // A watch simulator that died is started again (the lab's equivalent of
            // re-seating a device); its wires come back under the same names.
            // Spawning is quick; the wait for its wires is polled here, so an
            // interrupt of the run is not held up.
            if let Some(lab) = rig.lab() {
                if lab.exited().is_some() && lab.restart_watch_begin()? {
                    while !lab.restart_watch_ready()? {
                        if since.elapsed() >= crate::lab::DEFAULT_START_TIMEOUT {
                            return Err(RigError::Lab(format!(
                                "the restarted watch simulator did not write its wires within {:?}",
                                crate::lab::DEFAULT_START_TIMEOUT
                            )));
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    self.enter(
                        &clock,
                        DeviceState::Unknown,
                        "the watch simulator had died: started again",
                    );
                }
            }
            let waited = std::time::Instant::now();
            while let Err(e) = rig.check() {
                if waited.elapsed() >= RECOVERY_WAIT {
                    return Err(e);
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            self.last_recovery = Some((faults, rig.fault_count()));
            self.flashed_sha = None;
            self.parent_token = None;
            self.enter(
                &clock,
                DeviceState::Unknown,
                format!(
                    "recovering after an instrument fault (waited {:.1} s for the instruments)",
                    since.elapsed().as_secs_f64()
                ),
            );
        }
        if fresh || self.state == DeviceState::Unknown || target < self.state {
            rig.power.set(false).await?;
            // A watch without power drops out of any call, as it would on a real
            // network; the next scenario starts with the line idle. Commands the
            // watch wrote just before losing power may still be on their way through
            // the modem line, so the rig waits for the line to fall quiet first.
            quiesce_modem_line(rig).await;
            rig.cellular.power_lost().await?;
            self.enter(&clock, DeviceState::Off, "power off");
        }
        if target == DeviceState::Off {
            return Ok(());
        }
        if self.state < DeviceState::Flashed {
            let image = loaded.firmware_image();
            let sha = sha256_file(&image)?;
            if self.flashed_sha.as_deref() != Some(sha.as_str()) {
                match rig.flasher.flash(&image).await? {
                    FlashOutcome::Written { version, .. } => {
                        self.flashed_sha = Some(sha.clone());
                        self.enter(
                            &clock,
                            DeviceState::Flashed,
                            format!(
                                "flashed {} (version {version}, sha256 {sha})",
                                image.display()
                            ),
                        );
                    }
                    FlashOutcome::Refused { reason } => {
                        return Err(RigError::Other(format!(
                            "the device refused its configured firmware image {}: {reason}",
                            image.display()
                        )))
                    }
                    FlashOutcome::Locked { detail } => {
                        return Err(RigError::instrument(
                            "flasher",
                            format!(
                                "the debug port is locked, so the rig cannot write the configured image {} ({detail}); flash it before locking the device, or flash through its bootloader",
                                image.display()
                            ),
                        ))
                    }
                }
            } else {
                self.enter(
                    &clock,
                    DeviceState::Flashed,
                    format!("image already in flash (sha256 {sha})"),
                );
            }
        }
        if target == DeviceState::Flashed {
            return Ok(());
        }
        if self.state < DeviceState::Booted {
            // The world the watch wakes up in: home position with a fix (true time, no
            // outage, spoofing or replay left from before), home network, a clean
            // data path.
            rig.gnss
                .apply(crate::gnss::scene::GnssChange::Reset)
                .await?;
            rig.gnss.set_position(Some(HOME)).await?;
            rig.cellular.set_call_answer(CallAnswer::Answer);
            rig.cellular.set_registration(Registration::Home).await?;
            // A clean data path: no attacker, no impairment.
            rig.gateway.clear_host_modes();
            rig.gateway.clear_impairments();
            // Anything still set up on the network side belongs to the previous boot.
            rig.cellular.hang_up().await?;
            let pattern = regex::Regex::new(&device.console.boot_pattern)
                .map_err(|e| RigError::Config(format!("boot_pattern: {e}")))?;
            let mark = rig.console.log().mark();
            self.powered_on_at = clock.now();
            rig.power.set(true).await?;
            let line = rig
                .console
                .log()
                .wait_for(mark, time.boot_timeout, {
                    let pattern = pattern.clone();
                    move |l| pattern.is_match(&l.text)
                })
                .await
                .ok_or_else(|| {
                    RigError::Timeout(format!(
                        "no console line matching the boot pattern `{}` within {} s after power-on",
                        device.console.boot_pattern, time.boot_timeout
                    ))
                })?;
            self.enter(
                &clock,
                DeviceState::Booted,
                format!("booted: {}", line.value.text),
            );
        }
        if target == DeviceState::Booted {
            return Ok(());
        }
        if self.state < DeviceState::GnssFix {
            // The rig knows what it feeds: a fix is established once a fix has been
            // fed for two device seconds.
            let fed = rig.gnss.fed();
            let mark = fed.mark();
            let first = fed
                .wait_for(mark, time.step_timeout, |f| f.fix.is_some())
                .await
                .ok_or_else(|| RigError::Timeout("the GNSS feed gave no fix".into()))?;
            let t0 = first.t;
            fed.wait_for(mark, time.step_timeout, move |_| clock.now() >= t0 + 2000)
                .await
                .ok_or_else(|| RigError::Timeout("the GNSS feed stalled".into()))?;
            self.enter(
                &clock,
                DeviceState::GnssFix,
                format!("fix fed at {:.6},{:.6}", HOME.lat, HOME.lon),
            );
        }
        if target == DeviceState::GnssFix {
            return Ok(());
        }
        let boot_mark = self.powered_on_at;
        if self.state < DeviceState::Registered {
            let mark = rig.cellular.log().mark_since(boot_mark);
            rig.cellular
                .log()
                .wait_for(mark, time.step_timeout, |e| {
                    matches!(e, CellEvent::DataAttached { .. })
                })
                .await
                .ok_or_else(|| {
                    RigError::Timeout(format!(
                        "the watch did not attach to the cell's packet data (no data attach) within {} s",
                        time.step_timeout
                    ))
                })?;
            self.enter(
                &clock,
                DeviceState::Registered,
                "attached to the cell (data context active)",
            );
        }
        if target == DeviceState::Registered {
            return Ok(());
        }
        if self.state < DeviceState::Connected {
            let host = device.backend.device_endpoint.host.clone();
            let mark = rig.gateway.flows().mark_since(boot_mark);
            rig.gateway
                .flows()
                .wait_for(mark, time.step_timeout, {
                    let host = host.clone();
                    move |e| matches!(e, FlowEvent::Opened { host: h, .. } if *h == host)
                })
                .await
                .ok_or_else(|| {
                    RigError::Timeout(format!(
                        "the watch opened no connection to {host} within {} s",
                        time.step_timeout
                    ))
                })?;
            self.wait_online(rig, loaded, time.step_timeout).await?;
            self.enter(&clock, DeviceState::Connected, format!("online at {host}"));
        }
        Ok(())
    }

    /// The parent's token, logging in once per run.
    pub async fn parent_token(&mut self, rig: &Rig, loaded: &LoadedRig) -> RigResult<String> {
        if let Some(t) = &self.parent_token {
            return Ok(t.clone());
        }
        let acct = &loaded.device.device.backend.accounts.parent;
        let password = crate::config::resolve_secret(&acct.password).map_err(RigError::Config)?;
        let body = serde_json::json!({ "email": acct.email, "password": password });
        let r = rig
            .backend
            .request("POST", "/api/login", None, Some(&body))
            .await?;
        let token = r
            .body
            .get("token")
            .and_then(|t| t.as_str())
            .map(String::from)
            .ok_or_else(|| {
                RigError::Other(format!(
                    "the parent test account cannot log in (HTTP {}): {}",
                    r.status, r.body
                ))
            })?;
        self.parent_token = Some(token.clone());
        Ok(token)
    }

    /// Wait until the backend reports the watch online to its parent.
    pub async fn wait_online(
        &mut self,
        rig: &Rig,
        loaded: &LoadedRig,
        timeout: f64,
    ) -> RigResult<()> {
        let deadline = rig.clock.deadline(timeout);
        let imei = loaded.device.device.imei.clone();
        loop {
            let token = self.parent_token(rig, loaded).await?;
            let r = rig
                .backend
                .request("GET", "/api/watches", Some(&token), None)
                .await?;
            let online = r.body.as_array().is_some_and(|ws| {
                ws.iter().any(|w| {
                    w["imei"].as_str() == Some(imei.as_str()) && w["online"].as_bool() == Some(true)
                })
            });
            if online {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RigError::Timeout(format!(
                    "the backend did not report watch {imei} online within {timeout} s"
                )));
            }
            rig.clock.sleep(1.0).await;
        }
    }
}

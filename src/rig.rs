//! The assembled rig: every instrument opened per the rig file, behind the driver
//! traits the steps use.
//!
//! [`Rig::assemble`] starts the virtual lab when `rig.kind` is `virtual`, resolves
//! `lab:` references to the lab's wires, starts the cell gateway and opens each
//! instrument with its configured backend. The code path is the same for the lab
//! and a physical bench: only the wire names differ.
//!
//! The `probe-rs` flasher and debug port ([`crate::drivers::flash_probe`]) open
//! their probe for each attempt; a bad probe selector or chip name is refused before
//! anything starts, and the flasher switches the watch on through the rig's power
//! switch for each attempt (and off after it). The `callbox` cellular backend runs
//! the lab's adapter commands ([`crate::drivers::callbox`]).
//!
//! [`Rig::shutdown`] powers the device off, closes the gateway (recording every
//! open flow's end), closes the instruments and stops the lab. Dropping a rig does
//! the same best effort (without the power-off): every driver and the lab stop on
//! drop.

use crate::clock::Clock;
use crate::config::{
    ButtonsConfig, CellularConfig, ConsoleConfig, DebugPortConfig, FlasherConfig, GnssConfig,
    IndicatorsConfig, LoadedRig, PortRef, PowerConfig,
};
use crate::drivers::backend_http::HttpBackend;
use crate::drivers::callbox::{CallboxCellular, CallboxSpec};
use crate::drivers::console::SerialConsole;
use crate::drivers::debug_virtual::VirtualDebugPort;
use crate::drivers::flash_drive::DriveFlasher;
use crate::drivers::flash_probe::{ProbeDebugPort, ProbeFlasher, ProbeTarget};
use crate::drivers::gnss::{GnssOptions, SerialGnss};
use crate::drivers::gpio_pi::{PiGpioDriver, PiPinMap};
use crate::drivers::gpio_virtual::VirtualGpio;
use crate::drivers::modem::VirtualModem;
use crate::drivers::{
    Backend, Buttons, Cellular, Console, DebugPort, Flasher, Gnss, Indicators, NameService, Power,
};
use crate::error::{RigError, RigResult};
use crate::gateway::{Gateway, GatewaySpec};
use crate::journal::{JournalledButtons, JournalledPower};
use crate::lab::{Lab, LabSpec};
use crate::wire::nmea::Talker;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Wall time allowed for switching the device off at shutdown.
const POWER_OFF_TIMEOUT: Duration = Duration::from_secs(5);

/// Concrete handles kept for health checks and an orderly shutdown.
struct Parts {
    virtual_gpio: Option<Arc<VirtualGpio>>,
    pi_gpio: Option<Arc<PiGpioDriver>>,
    console: Option<Arc<SerialConsole>>,
    gnss: Option<Arc<SerialGnss>>,
    modem: Option<Arc<VirtualModem>>,
}

enum GpioDriver {
    Virtual(Arc<VirtualGpio>),
    Pi(Arc<PiGpioDriver>),
}

/// Every instrument of the bench.
pub struct Rig {
    pub clock: Clock,
    pub power: Arc<dyn Power>,
    pub buttons: Arc<dyn Buttons>,
    pub indicators: Arc<dyn Indicators>,
    pub console: Arc<dyn Console>,
    pub gnss: Arc<dyn Gnss>,
    pub cellular: Arc<dyn Cellular>,
    pub flasher: Arc<dyn Flasher>,
    pub debug: Arc<dyn DebugPort>,
    pub backend: Arc<dyn Backend>,
    pub gateway: Arc<Gateway>,
    /// `events.jsonl`: what the rig did and saw, instrument-independent.
    pub journal: Arc<crate::journal::Journal>,
    lab: Option<Lab>,
    parts: Parts,
    /// Tasks journalling each serial line's losses and returns.
    monitors: Monitors,
}

/// Aborted when dropped.
struct Monitors(Vec<tokio::task::AbortHandle>);

impl Drop for Monitors {
    fn drop(&mut self) {
        for m in &self.0 {
            m.abort();
        }
    }
}

/// Journal every loss and return of a serial line (`"kind": "instrument"`).
fn monitor_line(
    name: &str,
    status: crate::drivers::serial::LineStatus,
    journal: Arc<crate::journal::Journal>,
    clock: Clock,
) -> tokio::task::AbortHandle {
    let name = name.to_string();
    tokio::spawn(async move {
        loop {
            status.wait_lost(true).await;
            let detail = status.error().map(|e| e.to_string()).unwrap_or_default();
            journal.record(
                clock.now(),
                "instrument",
                serde_json::json!({ "instrument": name, "state": "lost", "detail": detail }),
            );
            status.wait_lost(false).await;
            journal.record(
                clock.now(),
                "instrument",
                serde_json::json!({ "instrument": name, "state": "back" }),
            );
        }
    })
    .abort_handle()
}

/// Refuse, before anything is started, a `probe-rs` instrument whose probe selector
/// does not parse or whose chip probe-rs does not know.
fn check_probe_targets(loaded: &LoadedRig) -> RigResult<()> {
    let ins = &loaded.rig.instruments;
    if let FlasherConfig::ProbeRs { probe, chip } = &ins.flasher {
        ProbeTarget::resolve("flasher", probe, chip)?;
    }
    if let DebugPortConfig::ProbeRs { probe, chip } = &ins.debug_port {
        ProbeTarget::resolve("debug_port", probe, chip)?;
    }
    Ok(())
}

/// The network namespace the watch simulator runs in, per `lab.isolate_network`
/// (virtual rigs only). The decision is written to `isolation.txt` in the evidence.
fn isolation(
    setting: Option<crate::config::Isolation>,
    evidence_dir: &Path,
) -> RigResult<Option<Arc<crate::netns::NetNs>>> {
    use crate::config::Isolation;
    let Some(setting) = setting else {
        return Ok(None);
    };
    let (ns, text) = match setting {
        Isolation::Never => (
            None,
            "not isolated: lab.isolate_network is `never`".to_string(),
        ),
        Isolation::Auto | Isolation::Always => {
            match crate::netns::NetNs::available().and_then(|()| {
                crate::netns::NetNs::create().map_err(|e| format!("cannot create one: {e}"))
            }) {
                Ok(ns) => {
                    let text = format!(
                        "isolated: the watch runs in network namespace net:[{}], where only the cell gateway listens",
                        ns.inode()
                    );
                    (Some(Arc::new(ns)), text)
                }
                Err(e) if setting == Isolation::Always => {
                    return Err(RigError::Lab(format!(
                    "lab.isolate_network is `always` but no network namespace for the watch: {e}"
                )))
                }
                Err(e) => (
                    None,
                    format!("not isolated (the gateway still works by address): {e}"),
                ),
            }
        }
    };
    std::fs::write(evidence_dir.join("isolation.txt"), format!("{text}\n"))
        .map_err(|e| RigError::Other(format!("isolation.txt: {e}")))?;
    Ok(ns)
}

/// Run blocking work (opening serial ports, starting processes) off the async
/// workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> RigResult<T> + Send + 'static,
) -> RigResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RigError::Other(format!("rig assembly task: {e}")))?
}

impl Rig {
    /// Start the lab (virtual rigs), the gateway and every instrument.
    ///
    /// `redrig_exe` is the binary whose `lab-process` subcommand runs the built-in
    /// simulators (`std::env::current_exe()` normally; `CARGO_BIN_EXE_redrig` in
    /// integration tests).
    pub async fn assemble(
        loaded: &LoadedRig,
        redrig_exe: &Path,
        clock: Clock,
        evidence_dir: &Path,
    ) -> RigResult<Rig> {
        check_probe_targets(loaded)?;
        std::fs::create_dir_all(evidence_dir).map_err(|e| {
            RigError::Other(format!(
                "evidence directory {}: {e}",
                evidence_dir.display()
            ))
        })?;
        let cfg = &loaded.rig;
        let ev = evidence_dir.to_path_buf();
        let journal = crate::journal::Journal::open(evidence_dir, clock);

        // 1. The lab, the watch isolated in a network namespace of its own if asked
        //    and possible.
        let netns = isolation(cfg.lab.as_ref().map(|l| l.isolate_network), evidence_dir)?;
        let lab = if cfg.is_virtual() {
            let mut spec = LabSpec::builtin(redrig_exe, &loaded.device_path, clock, evidence_dir);
            spec.netns = netns.clone();
            if let Some(lab_cfg) = &cfg.lab {
                if let Some(c) = &lab_cfg.watch_command {
                    spec.watch_cmd = c.clone();
                }
                if let Some(c) = &lab_cfg.cloud_command {
                    spec.cloud_cmd = c.clone();
                }
            }
            Some(blocking(move || Lab::start(spec)).await?)
        } else {
            None
        };
        let resolve = |p: &PortRef| -> RigResult<String> {
            match p {
                PortRef::Real(s) => crate::ports::resolve(s),
                PortRef::Lab(w) => lab.as_ref().map(|l| l.wires().get(*w)).ok_or_else(|| {
                    RigError::Config(format!("`lab:{}` is used but no lab is running", w.name()))
                }),
            }
        };

        // 2. GPIO: power, buttons, indicators (before the network side, so that a
        //    bench without its GPIO says so first).
        let ins = &cfg.instruments;
        let any_virtual = matches!(ins.power, PowerConfig::Virtual)
            || matches!(ins.buttons, ButtonsConfig::Virtual)
            || matches!(ins.indicators, IndicatorsConfig::Virtual);
        let virtual_gpio = if any_virtual {
            let path = lab
                .as_ref()
                .map(|l| l.wires().gpio.clone())
                .ok_or_else(|| {
                    RigError::Config("virtual GPIO backends need the virtual lab".into())
                })?;
            Some(VirtualGpio::open(&path, clock, evidence_dir).await?)
        } else {
            None
        };
        let mut pins = PiPinMap::default();
        if let PowerConfig::Rppal(l) = &ins.power {
            pins.power = Some(*l);
        }
        if let ButtonsConfig::Rppal { pins: p } = &ins.buttons {
            pins.buttons = p.clone();
        }
        if let IndicatorsConfig::Rppal { pins: p } = &ins.indicators {
            pins.indicators = p.clone();
        }
        let pi_gpio =
            if pins.power.is_some() || !pins.buttons.is_empty() || !pins.indicators.is_empty() {
                let e = ev.clone();
                Some(blocking(move || PiGpioDriver::open(&pins, clock, &e)).await?)
            } else {
                None
            };
        // Each of the three uses the driver of its own backend.
        let gpio_for = |is_virtual: bool| -> Option<GpioDriver> {
            if is_virtual {
                virtual_gpio.clone().map(GpioDriver::Virtual)
            } else {
                pi_gpio.clone().map(GpioDriver::Pi)
            }
        };
        let unopened =
            |what: &str| RigError::Config(format!("instruments.{what} could not be opened"));
        let power: Arc<dyn Power> = match gpio_for(matches!(ins.power, PowerConfig::Virtual)) {
            Some(GpioDriver::Virtual(v)) => v,
            Some(GpioDriver::Pi(p)) => p,
            None => return Err(unopened("power")),
        };
        let buttons: Arc<dyn Buttons> =
            match gpio_for(matches!(ins.buttons, ButtonsConfig::Virtual)) {
                Some(GpioDriver::Virtual(v)) => v,
                Some(GpioDriver::Pi(p)) => p,
                None => return Err(unopened("buttons")),
            };
        let indicators: Arc<dyn Indicators> =
            match gpio_for(matches!(ins.indicators, IndicatorsConfig::Virtual)) {
                Some(GpioDriver::Virtual(v)) => v,
                Some(GpioDriver::Pi(p)) => p,
                None => return Err(unopened("indicators")),
            };
        let power = JournalledPower::wrap(power, journal.clone());
        let buttons = JournalledButtons::wrap(buttons, journal.clone());
        journal.follow_indicators(indicators.log());

        // 3. The cell gateway (the modem's name service).
        let gateway = Gateway::start_in(
            GatewaySpec::from_config(loaded, lab.as_ref(), clock, evidence_dir)?,
            netns,
        )
        .await?;

        // 4. Serial lines.
        let ConsoleConfig::Serial { port, baud } = &ins.console;
        let (path, baud) = (resolve(port)?, *baud);
        let e = ev.clone();
        let console =
            blocking(move || SerialConsole::open("watch", &path, baud, clock, &e)).await?;

        let (gnss, gnss_part): (Arc<dyn Gnss>, _) = match &ins.gnss {
            GnssConfig::Serial {
                port,
                baud,
                rate_hz,
                talker,
                ..
            } => {
                let options = GnssOptions {
                    rate_hz: *rate_hz,
                    talker: Talker::parse(talker).unwrap_or(Talker::Gp),
                    // A pseudo-terminal delivers at once: pace characters as a UART would.
                    pace_bytes: matches!(port, PortRef::Lab(_)),
                    ..GnssOptions::default()
                };
                let (path, baud) = (resolve(port)?, *baud);
                let e = ev.clone();
                let g = blocking(move || SerialGnss::open(&path, baud, clock, options, &e)).await?;
                (g.clone() as Arc<dyn Gnss>, Some(g))
            }
            GnssConfig::Sdr {
                command, geoid_sep, ..
            } => {
                let g = crate::drivers::gnss_sdr::SdrGnss::open(
                    command.clone(),
                    *geoid_sep,
                    clock,
                    &ev,
                )?;
                (g as Arc<dyn Gnss>, None)
            }
        };

        let (cellular, modem): (Arc<dyn Cellular>, _) = match &ins.cellular {
            CellularConfig::VirtualModem { port, baud } => {
                let (path, baud) = (resolve(port)?, *baud);
                let ns: Arc<dyn NameService> = gateway.clone();
                let e = ev.clone();
                let m = blocking(move || VirtualModem::open(&path, baud, clock, ns, &e)).await?;
                (m.clone(), Some(m))
            }
            CellularConfig::Callbox { .. } => {
                let spec = CallboxSpec::from_config(&ins.cellular).ok_or_else(|| {
                    RigError::Config("instruments.cellular: not a callbox".into())
                })?;
                let ns: Arc<dyn NameService> = gateway.clone();
                let e = ev.clone();
                let c = blocking(move || CallboxCellular::open(spec, clock, Some(ns), &e)).await?;
                (c, None)
            }
        };

        // 5. Flashing, debug port, backend.
        let flasher: Arc<dyn Flasher> = match &ins.flasher {
            FlasherConfig::Drive { path } => {
                DriveFlasher::open(&PathBuf::from(resolve(path)?), clock, evidence_dir)?
            }
            FlasherConfig::ProbeRs { probe, chip } => Arc::new(
                ProbeFlasher::new(probe, chip, clock, evidence_dir)?.with_power(power.clone()),
            ),
        };
        let debug: Arc<dyn DebugPort> = match &ins.debug_port {
            DebugPortConfig::Virtual { path } => {
                VirtualDebugPort::open(&PathBuf::from(resolve(path)?), evidence_dir)?
            }
            DebugPortConfig::ProbeRs { probe, chip } => {
                Arc::new(ProbeDebugPort::new(probe, chip, clock, evidence_dir)?)
            }
        };
        let backend: Arc<dyn Backend> = HttpBackend::from_config(loaded, lab.as_ref())?;
        journal.follow_gnss(gnss.fed());
        journal.follow_cellular(cellular.log());

        Ok(Rig {
            clock,
            power,
            buttons,
            indicators,
            console: console.clone(),
            gnss,
            cellular,
            flasher,
            debug,
            backend,
            gateway,
            monitors: Monitors(
                [
                    ("console", Some(console.status())),
                    ("gnss", gnss_part.as_ref().map(|g| g.status())),
                    ("modem", modem.as_ref().map(|m| m.status())),
                ]
                .into_iter()
                .filter_map(|(n, s)| Some(monitor_line(n, s?, journal.clone(), clock)))
                .collect(),
            ),
            journal,
            lab,
            parts: Parts {
                virtual_gpio,
                pi_gpio,
                console: Some(console),
                gnss: gnss_part,
                modem,
            },
        })
    }

    /// The virtual lab, on a virtual rig.
    pub fn lab(&self) -> Option<&Lab> {
        self.lab.as_ref()
    }

    /// How many instrument faults the rig has seen since it was assembled: serial
    /// lines and GPIO connections lost (each counted once, even when they came back),
    /// and watch simulators started again after they died.
    /// A scenario during which this grew, or at whose end [`Rig::check`] fails, has
    /// no trustworthy verdict.
    pub fn fault_count(&self) -> u64 {
        self.fault_counts().iter().map(|(_, n)| n).sum()
    }

    /// [`Rig::fault_count`] by instrument (`console`, `gnss`, `modem`, `gpio`,
    /// `watch simulator restarts`).
    pub fn fault_counts(&self) -> Vec<(&'static str, u64)> {
        let mut v = Vec::new();
        for (name, status) in [
            ("console", self.parts.console.as_ref().map(|c| c.status())),
            ("gnss", self.parts.gnss.as_ref().map(|g| g.status())),
            ("modem", self.parts.modem.as_ref().map(|m| m.status())),
        ] {
            if let Some(s) = status {
                v.push((name, s.losses()));
            }
        }
        if let Some(g) = &self.parts.virtual_gpio {
            v.push(("gpio", g.losses()));
        }
        if let Some(l) = &self.lab {
            v.push(("watch simulator restarts", l.restarts()));
        }
        v
    }

    /// `Err` when an instrument, the gateway's evidence or a lab process failed
    /// (a rig failure: the verdict is inconclusive).
    pub fn check(&self) -> RigResult<()> {
        if let Some(lab) = &self.lab {
            lab.check()?;
        }
        self.gateway.check()?;
        if let Some(g) = &self.parts.virtual_gpio {
            g.check()?;
        }
        if let Some(g) = &self.parts.pi_gpio {
            g.check()?;
        }
        for status in [
            self.parts.console.as_ref().map(|c| c.status()),
            self.parts.gnss.as_ref().map(|g| g.status()),
            self.parts.modem.as_ref().map(|m| m.status()),
        ]
        .into_iter()
        .flatten()
        {
            if let Some(e) = status.error() {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Power the device off, close the gateway and every instrument, stop the lab.
    /// Every step is attempted; the first problem is returned.
    pub async fn shutdown(self) -> RigResult<()> {
        let Rig {
            power,
            buttons,
            indicators,
            console,
            gnss,
            cellular,
            flasher,
            debug,
            backend,
            gateway,
            journal,
            mut lab,
            parts,
            monitors,
            ..
        } = self;
        drop(monitors);
        let mut first: Option<RigError> = None;
        let mut keep = |r: RigResult<()>| {
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        };
        // Only if the lab (when there is one) is still there to be told.
        if lab.as_ref().is_none_or(|l| l.is_alive()) {
            match tokio::time::timeout(POWER_OFF_TIMEOUT, power.set(false)).await {
                Ok(r) => keep(r),
                Err(_) => keep(Err(RigError::Timeout(
                    "switching the device off at shutdown".into(),
                ))),
            }
        }
        keep(gateway.shutdown().await);
        if let Some(g) = &parts.virtual_gpio {
            keep(g.close().await);
        }
        if let Some(g) = parts.pi_gpio.clone() {
            let _ = tokio::task::spawn_blocking(move || g.close()).await;
        }
        // Serial drivers stop feeding and close their lines when dropped.
        drop((
            power, buttons, indicators, console, gnss, cellular, flasher, debug, backend, parts,
        ));
        if let Some(mut l) = lab.take() {
            match tokio::task::spawn_blocking(move || l.stop()).await {
                Ok(r) => keep(r),
                Err(e) => keep(Err(RigError::Lab(format!("stopping the lab: {e}")))),
            }
        }
        drop(gateway);
        // Instruments still closing may push a last event: it is not journalled.
        journal.close();
        match first {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn a_rig_can_be_shared_between_tasks() {
        assert_send_sync::<Rig>();
        assert_send_sync::<Lab>();
        assert_send_sync::<Gateway>();
    }
}

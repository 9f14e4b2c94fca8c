//! Power, buttons and indicators of a physical bench on a Raspberry Pi's GPIO
//! (through [`redrig_hardware::PiGpio`], rppal), with the pin map of the rig file
//! (`instruments.power|buttons|indicators` with `backend: rppal`).
//!
//! - power: one output line driving the supply relay;
//! - buttons: one output line per button driving an actuator (press = active, hold
//!   in device time, inactive; the release happens even if the caller gives up);
//! - indicators: one input line per sensor (LED photodiode, vibration, speaker and
//!   mic detectors), watched for edges by a thread per line; edges become
//!   [`IndicatorEvent::Edge`] stamped with the device time of the edge. The screen
//!   cannot be sensed this way: no `Screen` events on a physical bench.
//!
//! Every action and edge is appended to the evidence file `gpio.log` (through the
//! evidence writer thread). On a machine
//! that is not a Raspberry Pi, opening fails with
//! `RigError::Instrument("gpio", "GPIO unavailable: …not a Raspberry Pi…")`.

use crate::clock::{Clock, DeviceMs};
use crate::config::GpioLine;
use crate::drivers::{Button, Buttons, EventLog, IndicatorEvent, Indicators, Power};
use crate::error::{RigError, RigResult};
use crate::gateway::EvidenceWriter;
use async_trait::async_trait;
use redrig_hardware::{OutputLine, PiGpio};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const INSTRUMENT: &str = "gpio";
const LOG_CAPACITY: usize = 10_000;
/// How often an indicator thread checks whether it should stop.
const EDGE_WAIT: Duration = Duration::from_millis(200);

/// The pin map of a physical bench.
#[derive(Debug, Clone, Default)]
pub struct PiPinMap {
    /// The supply relay.
    pub power: Option<GpioLine>,
    /// Button name (`sos`, `power`, `call1`, `call2`) → actuator line.
    pub buttons: BTreeMap<String, GpioLine>,
    /// Indicator name (`led`, `vibration`, `speaker`, `mic`) → sensor line.
    pub indicators: BTreeMap<String, GpioLine>,
}

struct Inner {
    clock: Clock,
    power: Option<Mutex<OutputLine>>,
    buttons: BTreeMap<String, Mutex<OutputLine>>,
    log: EventLog<IndicatorEvent>,
    evidence: EvidenceWriter,
    stop: AtomicBool,
    broken: Mutex<Option<String>>,
}

impl Inner {
    fn line(&self, text: &str) -> Vec<u8> {
        format!("t={} {text}\n", self.clock.now()).into_bytes()
    }

    /// Append to `gpio.log` from a thread outside the runtime (waits if the
    /// writer's queue is full).
    fn evidence_blocking(&self, text: &str) {
        let _ = self.evidence.append_blocking("gpio.log", self.line(text));
    }

    /// Drive every button line inactive, now (also from `Drop`, so it must not
    /// block).
    fn release_buttons(&self) {
        for (name, line) in &self.buttons {
            let mut l = match line.lock() {
                Ok(l) => l,
                Err(poisoned) => poisoned.into_inner(),
            };
            if l.is_active() {
                l.set(false);
                let pin = l.pin();
                drop(l);
                // May run on a runtime thread (drop): never wait for the writer.
                let _ = self.evidence.try_append(
                    "gpio.log",
                    self.line(&format!(
                        "button {name} (GPIO {pin}) -> inactive (released at close)"
                    )),
                );
            }
        }
    }

    async fn drive(&self, what: &str, line: &Mutex<OutputLine>, active: bool) {
        let pin = {
            let mut l = line.lock().unwrap();
            // A button is not pressed once the driver is closing: the release at
            // close (which takes the same lock after `stop` is set) must be final.
            if active && self.stop.load(Ordering::SeqCst) && what.starts_with("button ") {
                return;
            }
            l.set(active);
            l.pin()
        };
        let text = format!(
            "{what} (GPIO {pin}) -> {}",
            if active { "active" } else { "inactive" }
        );
        let _ = self.evidence.append("gpio.log", self.line(&text)).await;
    }
}

/// GPIO instruments of a physical bench. See the module documentation.
pub struct PiGpioDriver {
    inner: Arc<Inner>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

/// Device time at which `at` happened.
fn device_time_of(clock: &Clock, at: Instant) -> DeviceMs {
    let ago = at.elapsed().as_secs_f64() * clock.scale * 1000.0;
    clock.now().saturating_sub(ago as DeviceMs)
}

impl PiGpioDriver {
    /// Take the lines of `pins`. On a machine without Pi GPIO this is a clear
    /// instrument error.
    pub fn open(
        pins: &PiPinMap,
        clock: Clock,
        evidence_dir: &Path,
    ) -> RigResult<Arc<PiGpioDriver>> {
        let gpio = PiGpio::open().map_err(|e| RigError::instrument(INSTRUMENT, e))?;
        let pin_err = |what: &str, e: redrig_hardware::HardwareError| {
            RigError::instrument(INSTRUMENT, format!("{what}: {e}"))
        };
        let power = match &pins.power {
            Some(l) => Some(Mutex::new(
                gpio.output(l.pin, l.active_low)
                    .map_err(|e| pin_err("power", e))?,
            )),
            None => None,
        };
        let mut buttons = BTreeMap::new();
        for (name, l) in &pins.buttons {
            let out = gpio
                .output(l.pin, l.active_low)
                .map_err(|e| pin_err(&format!("button {name}"), e))?;
            buttons.insert(name.clone(), Mutex::new(out));
        }
        let mut inputs = Vec::new();
        for (name, l) in &pins.indicators {
            let input = gpio
                .input(l.pin, l.active_low)
                .map_err(|e| pin_err(&format!("indicator {name}"), e))?;
            inputs.push((name.clone(), input));
        }
        let evidence = EvidenceWriter::start(evidence_dir)?;
        let inner = Arc::new(Inner {
            clock,
            power,
            buttons,
            log: EventLog::new(clock, LOG_CAPACITY),
            evidence,
            stop: AtomicBool::new(false),
            broken: Mutex::new(None),
        });
        let mut threads = Vec::new();
        for (name, mut input) in inputs {
            let inner2 = inner.clone();
            let initial = format!(
                "indicator {name} (GPIO {}) initially {}",
                input.pin(),
                input.is_active() as u8
            );
            let t = std::thread::Builder::new()
                .name(format!("redrig-gpio-{name}"))
                .spawn(move || {
                    inner2.evidence_blocking(&initial);
                    while !inner2.stop.load(Ordering::SeqCst) {
                        match input.wait_edge(EDGE_WAIT) {
                            Ok(Some(edge)) => {
                                let t = device_time_of(&inner2.clock, edge.at);
                                inner2.evidence_blocking(&format!(
                                    "indicator {name} edge {}",
                                    edge.active as u8
                                ));
                                inner2.log.push_at(
                                    t,
                                    IndicatorEvent::Edge {
                                        line: name.clone(),
                                        level: edge.active,
                                    },
                                );
                            }
                            Ok(None) => {}
                            Err(e) => {
                                let msg = format!("indicator {name}: {e}");
                                inner2.evidence_blocking(&msg);
                                inner2.broken.lock().unwrap().get_or_insert(msg);
                                return;
                            }
                        }
                    }
                })
                .map_err(|e| {
                    RigError::instrument(
                        INSTRUMENT,
                        format!("cannot start the indicator thread: {e}"),
                    )
                })?;
            threads.push(t);
        }
        Ok(Arc::new(PiGpioDriver {
            inner,
            threads: Mutex::new(threads),
        }))
    }

    /// `Err` once an indicator line failed.
    pub fn check(&self) -> RigResult<()> {
        match self.inner.broken.lock().unwrap().clone() {
            None => Ok(()),
            Some(b) => Err(RigError::instrument(INSTRUMENT, b)),
        }
    }

    /// Release every button (a press cut short by the end of a run must not leave
    /// a button held), stop watching the indicators. The supply stays as it is.
    pub fn close(&self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.inner.release_buttons();
        for t in self.threads.lock().unwrap().drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for PiGpioDriver {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.inner.release_buttons();
    }
}

#[async_trait]
impl Power for PiGpioDriver {
    async fn set(&self, on: bool) -> RigResult<()> {
        let Some(line) = &self.inner.power else {
            return Err(RigError::Config(
                "instruments.power has no rppal pin".into(),
            ));
        };
        self.inner.drive("power", line, on).await;
        Ok(())
    }
}

#[async_trait]
impl Buttons for PiGpioDriver {
    async fn press(&self, button: Button, hold_secs: f64) -> RigResult<()> {
        if !self.inner.buttons.contains_key(button.name()) {
            return Err(RigError::Config(format!(
                "button `{}` has no pin in instruments.buttons.pins",
                button.name()
            )));
        }
        let inner = self.inner.clone();
        // On its own task: the button is released even if the caller gives up.
        tokio::spawn(async move {
            let what = format!("button {}", button.name());
            let line = &inner.buttons[button.name()];
            inner.drive(&what, line, true).await;
            inner.clock.sleep(hold_secs).await;
            inner.drive(&what, line, false).await;
        })
        .await
        .map_err(|e| RigError::instrument(INSTRUMENT, format!("button press task: {e}")))
    }
}

impl Indicators for PiGpioDriver {
    fn log(&self) -> &EventLog<IndicatorEvent> {
        &self.inner.log
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_pi() -> bool {
        std::fs::read_to_string("/proc/device-tree/model").is_ok_and(|m| m.contains("Raspberry Pi"))
    }

    #[test]
    fn opening_on_a_machine_without_pi_gpio_is_a_clear_instrument_error() {
        if is_pi() {
            eprintln!("running on a Raspberry Pi: skipping the non-Pi check");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let pins = PiPinMap {
            power: Some(GpioLine {
                pin: 17,
                active_low: false,
            }),
            ..Default::default()
        };
        let err = PiGpioDriver::open(&pins, Clock::start(1.0), dir.path())
            .err()
            .expect("no GPIO here");
        let RigError::Instrument { instrument, detail } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(instrument, "gpio");
        assert!(
            detail.starts_with("GPIO unavailable: this machine is not a Raspberry Pi"),
            "{detail}"
        );
    }

    #[test]
    fn edge_times_are_converted_to_device_time() {
        let c0 = Clock::start(20.0);
        // A clock started 10 s ago, so that earlier instants are after its epoch.
        let clock = Clock {
            epoch_mono_ns: c0.epoch_mono_ns.saturating_sub(10_000_000_000),
            ..c0
        };
        let now = clock.now();
        let t = device_time_of(&clock, Instant::now());
        assert!(t >= now);
        let earlier = device_time_of(&clock, Instant::now() - Duration::from_millis(100));
        assert!(
            earlier + 1900 <= clock.now(),
            "100 ms of wall time are 2 device seconds at scale 20"
        );
    }
}

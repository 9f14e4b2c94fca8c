//! Low-level access to a physical redrig bench: Raspberry Pi GPIO through rppal.
//!
//! Small and honest: [`PiGpio::open`] either gives access to the Pi's GPIO or says
//! plainly why not ([`HardwareError::NotAPi`] on any other machine — it never
//! panics). Lines are addressed by BCM number; `active_low` is handled here, so
//! callers think in *active / inactive* (relay closed, button pressed, LED lit).
//!
//! ```no_run
//! use redrig_hardware::PiGpio;
//! use std::time::Duration;
//! let gpio = PiGpio::open()?;
//! let mut power = gpio.output(17, false)?;
//! power.set(true);
//! let mut led = gpio.input(5, false)?;
//! if let Some(edge) = led.wait_edge(Duration::from_millis(500))? {
//!     println!("LED {} at {:?}", if edge.active { "on" } else { "off" }, edge.at);
//! }
//! # Ok::<(), redrig_hardware::HardwareError>(())
//! ```

pub mod serial_id;

pub mod probe;

use rppal::gpio::{Gpio, InputPin, Level, OutputPin, Trigger};
use std::time::{Duration, Instant};

/// Why the hardware could not be used.
#[derive(Debug, thiserror::Error)]
pub enum HardwareError {
    /// This machine has no Raspberry Pi GPIO (unknown model, no `/dev/gpiomem`, no
    /// `/dev/gpiochipN`).
    #[error("GPIO unavailable: this machine is not a Raspberry Pi (rppal: {detail})")]
    NotAPi {
        /// rppal's own words.
        detail: String,
    },
    /// The GPIO device exists but may not be opened by this user.
    #[error("GPIO permission denied: {detail} (add the user to the `gpio` group)")]
    PermissionDenied {
        /// rppal's own words.
        detail: String,
    },
    /// A line is already taken (by this process) or does not exist.
    #[error("GPIO {pin}: {detail}")]
    Pin {
        /// BCM number.
        pin: u8,
        /// rppal's own words.
        detail: String,
    },
    /// Any other GPIO failure.
    #[error("GPIO error: {0}")]
    Other(String),
}

fn classify_open(e: rppal::gpio::Error) -> HardwareError {
    use rppal::gpio::Error as E;
    match e {
        E::PermissionDenied(p) => HardwareError::PermissionDenied {
            detail: format!("Permission denied: {p}"),
        },
        // Unknown model, or a machine without /dev/gpiomem or /dev/gpiochipN.
        E::UnknownModel | E::Io(_) => HardwareError::NotAPi {
            detail: e.to_string(),
        },
        other => HardwareError::Other(other.to_string()),
    }
}

fn pin_error(pin: u8, e: rppal::gpio::Error) -> HardwareError {
    HardwareError::Pin {
        pin,
        detail: e.to_string(),
    }
}

/// The Pi's GPIO controller.
#[derive(Debug, Clone)]
pub struct PiGpio {
    gpio: Gpio,
}

impl PiGpio {
    /// Open the GPIO controller. On a machine that is not a Raspberry Pi this returns
    /// [`HardwareError::NotAPi`].
    pub fn open() -> Result<PiGpio, HardwareError> {
        // rppal does not panic on unknown hardware, but a panic here must never take
        // the rig down: turn one into an error too.
        match std::panic::catch_unwind(Gpio::new) {
            Ok(Ok(gpio)) => Ok(PiGpio { gpio }),
            Ok(Err(e)) => Err(classify_open(e)),
            Err(_) => Err(HardwareError::NotAPi {
                detail: "rppal panicked while probing the hardware".into(),
            }),
        }
    }

    /// Take `pin` (BCM) as an output, initially *inactive*.
    pub fn output(&self, pin: u8, active_low: bool) -> Result<OutputLine, HardwareError> {
        let p = self.gpio.get(pin).map_err(|e| pin_error(pin, e))?;
        let mut out = if active_low {
            p.into_output_high()
        } else {
            p.into_output_low()
        };
        // Leave the line inactive, not floating-as-left, when the rig lets go.
        out.set_reset_on_drop(false);
        let mut line = OutputLine {
            pin: out,
            active_low,
            active: false,
        };
        line.set(false);
        Ok(line)
    }

    /// Take `pin` (BCM) as an output *without changing its level*: the level the
    /// line has now is read first and driven again. For one-off commands
    /// (`redrig power on` on a watch that is already on must not cut its supply
    /// for an instant, as [`output`](Self::output) would by starting inactive).
    pub fn output_as_is(&self, pin: u8, active_low: bool) -> Result<OutputLine, HardwareError> {
        let p = self.gpio.get(pin).map_err(|e| pin_error(pin, e))?;
        let high = p.read() == Level::High;
        let mut out = if high {
            p.into_output_high()
        } else {
            p.into_output_low()
        };
        out.set_reset_on_drop(false);
        Ok(OutputLine {
            pin: out,
            active_low,
            active: high != active_low,
        })
    }

    /// Take `pin` (BCM) as an input watching both edges (pull-up when active low,
    /// pull-down otherwise).
    pub fn input(&self, pin: u8, active_low: bool) -> Result<InputLine, HardwareError> {
        let p = self.gpio.get(pin).map_err(|e| pin_error(pin, e))?;
        let mut input = if active_low {
            p.into_input_pullup()
        } else {
            p.into_input_pulldown()
        };
        input
            .set_interrupt(Trigger::Both, None)
            .map_err(|e| pin_error(pin, e))?;
        Ok(InputLine {
            pin: input,
            active_low,
        })
    }
}

/// An output line (relay, button actuator).
#[derive(Debug)]
pub struct OutputLine {
    pin: OutputPin,
    active_low: bool,
    active: bool,
}

impl OutputLine {
    /// Drive the line active (`true`) or inactive (`false`), honouring `active_low`.
    pub fn set(&mut self, active: bool) {
        let high = active != self.active_low;
        self.pin.write(if high { Level::High } else { Level::Low });
        self.active = active;
    }

    /// The state last set.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// BCM number.
    pub fn pin(&self) -> u8 {
        self.pin.pin()
    }
}

/// One edge seen on an input line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// True if the line became active (honouring `active_low`).
    pub active: bool,
    /// When the rig saw it (`Instant` taken as the event was returned).
    pub at: Instant,
    /// The kernel's timestamp (time since boot), for ordering edges finely.
    pub kernel_timestamp: Duration,
}

/// An input line (LED, vibration, speaker/mic detector) with edge events.
#[derive(Debug)]
pub struct InputLine {
    pin: InputPin,
    active_low: bool,
}

impl InputLine {
    /// Current level: true if active.
    pub fn is_active(&self) -> bool {
        (self.pin.read() == Level::High) != self.active_low
    }

    /// Wait up to `timeout` for the next edge; `Ok(None)` on timeout. Edges that
    /// happened since the last call are returned first (not lost).
    pub fn wait_edge(&mut self, timeout: Duration) -> Result<Option<Edge>, HardwareError> {
        let pin = self.pin.pin();
        let ev = self
            .pin
            .poll_interrupt(false, Some(timeout))
            .map_err(|e| pin_error(pin, e))?;
        let at = Instant::now();
        Ok(ev.map(|ev| Edge {
            active: matches!(ev.trigger, Trigger::RisingEdge) != self.active_low,
            at,
            kernel_timestamp: ev.timestamp,
        }))
    }

    /// Edges that already happened, without waiting.
    pub fn poll_edges(&mut self) -> Result<Vec<Edge>, HardwareError> {
        let mut out = Vec::new();
        while let Some(e) = self.wait_edge(Duration::ZERO)? {
            out.push(e);
        }
        Ok(out)
    }

    /// BCM number.
    pub fn pin(&self) -> u8 {
        self.pin.pin()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_pi() -> bool {
        std::fs::read_to_string("/proc/device-tree/model").is_ok_and(|m| m.contains("Raspberry Pi"))
    }

    #[test]
    fn open_on_a_non_pi_machine_says_so_without_panicking() {
        if is_pi() {
            eprintln!("running on a Raspberry Pi: skipping the non-Pi check");
            return;
        }
        match PiGpio::open() {
            Err(e @ HardwareError::NotAPi { .. }) => {
                let msg = e.to_string();
                eprintln!("{msg}");
                assert!(
                    msg.starts_with(
                        "GPIO unavailable: this machine is not a Raspberry Pi (rppal: "
                    ),
                    "{msg}"
                );
            }
            Err(other) => panic!("expected NotAPi, got {other:?}"),
            Ok(_) => panic!("PiGpio::open() succeeded on a machine that is not a Raspberry Pi"),
        }
    }
}

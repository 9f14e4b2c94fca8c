//! The bench engineer's manual tools, for wiring up a new device: `redrig power`,
//! `redrig press` and `redrig console` (`redrig flash` is in [`crate::flashcmd`],
//! `redrig gnss` in [`crate::gnsscmd`]).
//!
//! They act on the instruments of a *physical* rig file, one line at a time: a
//! press takes only the button's line, `power` only the supply relay's, so a press
//! never glitches the supply. On a virtual rig the same actions are commands of the
//! `redrig lab up` shell, which owns the lab; these tools say so instead of starting
//! a lab of their own.
//!
//! While one of them acts on a rig file's instruments it holds the rig's run lock:
//! a bench that a run holds is refused (exit 2), and a run cannot start under it.
//!
//! Every action is printed with its time on the rig's monotonic clock (ms since the
//! command started) and, with `--evidence DIR`, appended to `DIR/bench.log`. Nothing
//! prompts or needs a terminal. SIGINT/SIGTERM/SIGHUP during a press releases the button
//! before exiting; a button is never left held.
//!
//! Exit codes as for `redrig run`: 0 done, 2 the instrument could not be used (no
//! GPIO on this machine, port missing), 3 usage or configuration error.

use crate::config::{ButtonsConfig, ConsoleConfig, LoadedRig, PortRef, PowerConfig};
use crate::verdict::exit;
use redrig_hardware::{OutputLine, PiGpio};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What `redrig power` does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PowerAction {
    On,
    Off,
    /// Off, wait this long, on.
    Cycle {
        off: Duration,
    },
}

impl PowerAction {
    /// `on`, `off` or `cycle` (with `off_ms` for the cycle).
    pub fn parse(word: &str, off_ms: u64) -> Option<PowerAction> {
        Some(match word {
            "on" => PowerAction::On,
            "off" => PowerAction::Off,
            "cycle" => PowerAction::Cycle {
                off: Duration::from_millis(off_ms),
            },
            _ => return None,
        })
    }
}

/// Timestamped action log: stdout, and `bench.log` in the evidence directory.
struct ActionLog {
    start: Instant,
    file: Option<std::fs::File>,
}

impl ActionLog {
    fn new(evidence: Option<&Path>) -> Result<ActionLog, String> {
        let file = match evidence {
            None => None,
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("evidence directory {}: {e}", dir.display()))?;
                let path = dir.join("bench.log");
                Some(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .map_err(|e| format!("{}: {e}", path.display()))?,
                )
            }
        };
        Ok(ActionLog {
            start: Instant::now(),
            file,
        })
    }

    fn line(&mut self, text: &str) {
        let ms = self.start.elapsed().as_secs_f64() * 1000.0;
        let utc = crate::drivers::console::iso8601_utc(
            time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000,
        );
        let line = format!("t={ms:.1}ms {utc} {text}");
        // Never panic on a closed stdout (`| head`): a press must still be released.
        let _ = writeln!(std::io::stdout(), "{line}");
        if let Some(f) = &mut self.file {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// Load the rig file; a configuration error is printed (exit 3).
fn load(rig_file: &Path) -> Result<LoadedRig, i32> {
    match crate::config::load_rig(rig_file, None) {
        Ok(l) => {
            for w in &l.warnings {
                eprintln!("warning: {w}");
            }
            Ok(l)
        }
        Err(e) => {
            eprintln!("{e}");
            Err(exit::USAGE)
        }
    }
}

fn virtual_hint(loaded: &LoadedRig, what: &str) -> i32 {
    eprintln!(
        "rig `{}` is virtual: the lab owns its {what}; start it with `redrig lab up --rig {}` and use its shell (`help` lists the commands)",
        loaded.rig.rig.name,
        loaded.rig_path.display()
    );
    exit::USAGE
}

/// Take the rig's run lock for a manual action: a bench a run (or another tool)
/// holds is refused (exit 2), so nobody drives the watch under a running job.
pub fn lock_rig(loaded: &LoadedRig) -> Result<crate::lock::RigLock, i32> {
    crate::lock::acquire(&loaded.lock_dir(), &loaded.rig.rig.name).map_err(|e| {
        eprintln!("{e}");
        exit::INCONCLUSIVE
    })
}

/// What a GPIO tool needs, in order: the run lock (a held bench is refused before
/// anything moves), the action log, the Pi's GPIO.
fn prepare(
    loaded: &LoadedRig,
    evidence: Option<&Path>,
) -> Result<(crate::lock::RigLock, ActionLog, PiGpio), i32> {
    let lock = lock_rig(loaded)?;
    let log = ActionLog::new(evidence).map_err(|e| {
        eprintln!("{e}");
        exit::USAGE
    })?;
    let gpio = PiGpio::open().map_err(|e| {
        eprintln!("gpio: {e}");
        exit::INCONCLUSIVE
    })?;
    Ok((lock, log, gpio))
}

/// `redrig power on|off|cycle`.
pub async fn power(rig_file: &Path, action: PowerAction, evidence: Option<&Path>) -> i32 {
    let loaded = match load(rig_file) {
        Ok(l) => l,
        Err(c) => return c,
    };
    let line = match &loaded.rig.instruments.power {
        PowerConfig::Rppal(l) => *l,
        PowerConfig::Virtual => return virtual_hint(&loaded, "power supply"),
    };
    let (_lock, mut log, gpio) = match prepare(&loaded, evidence) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let mut out = match gpio.output_as_is(line.pin, line.active_low) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("power: {e}");
            return exit::INCONCLUSIVE;
        }
    };
    let was = if out.is_active() { "on" } else { "off" };
    log.line(&format!("power (GPIO {}) was {was}", line.pin));
    let set = |out: &mut OutputLine, on: bool, log: &mut ActionLog| {
        out.set(on);
        log.line(&format!(
            "power (GPIO {}) -> {}",
            line.pin,
            if on { "on" } else { "off" }
        ));
    };
    match action {
        PowerAction::On => set(&mut out, true, &mut log),
        PowerAction::Off => set(&mut out, false, &mut log),
        PowerAction::Cycle { off } => {
            set(&mut out, false, &mut log);
            tokio::select! {
                _ = tokio::time::sleep(off) => set(&mut out, true, &mut log),
                _ = crate::runner::shutdown_signal() => {
                    log.line("interrupted during the cycle: power left off");
                    return exit::INCONCLUSIVE;
                }
            }
        }
    }
    exit::PASS
}

/// How `redrig press` presses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Press {
    /// How long the button is held.
    pub hold: Duration,
    /// Press twice, with `gap` released in between.
    pub double: bool,
    pub gap: Duration,
}

/// `redrig press BUTTON`.
pub async fn press(rig_file: &Path, button: &str, how: Press, evidence: Option<&Path>) -> i32 {
    let loaded = match load(rig_file) {
        Ok(l) => l,
        Err(c) => return c,
    };
    let pins = match &loaded.rig.instruments.buttons {
        ButtonsConfig::Rppal { pins } => pins,
        ButtonsConfig::Virtual => return virtual_hint(&loaded, "buttons"),
    };
    let Some(line) = pins.get(button) else {
        let known: Vec<&str> = pins.keys().map(String::as_str).collect();
        eprintln!(
            "no button `{button}` in instruments.buttons.pins of {}: expected one of {}",
            loaded.rig_path.display(),
            known.join(", ")
        );
        return exit::USAGE;
    };
    let (_lock, mut log, gpio) = match prepare(&loaded, evidence) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let mut out = match gpio.output(line.pin, line.active_low) {
        Ok(o) => Released(o),
        Err(e) => {
            eprintln!("button {button}: {e}");
            return exit::INCONCLUSIVE;
        }
    };
    let presses = if how.double { 2 } else { 1 };
    for i in 0..presses {
        if i > 0 {
            tokio::select! {
                _ = tokio::time::sleep(how.gap) => {}
                _ = crate::runner::shutdown_signal() => {
                    log.line("interrupted between presses");
                    return exit::INCONCLUSIVE;
                }
            }
        }
        out.0.set(true);
        log.line(&format!("button {button} (GPIO {}) pressed", line.pin));
        let interrupted = tokio::select! {
            _ = tokio::time::sleep(how.hold) => false,
            _ = crate::runner::shutdown_signal() => true,
        };
        out.0.set(false);
        log.line(&format!("button {button} (GPIO {}) released", line.pin));
        if interrupted {
            log.line("interrupted: button released early");
            return exit::INCONCLUSIVE;
        }
    }
    exit::PASS
}

/// A button line that is driven inactive however the press ends (an error, a
/// panic): a button is never left held.
struct Released(OutputLine);

impl Drop for Released {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// Where `redrig console` reads.
#[derive(Debug)]
pub struct ConsoleTarget {
    /// The port as given: a device path, link or `usb:` selector.
    pub port: String,
    pub baud: u32,
    /// The rig's run lock, held while the console is open (a console taken from a
    /// rig file; a bare `--port` takes none).
    pub lock: Option<crate::lock::RigLock>,
}

impl ConsoleTarget {
    /// The rig file's console, or an error message (exit 3) for a virtual rig.
    pub fn from_rig(rig_file: &Path) -> Result<ConsoleTarget, i32> {
        let loaded = load(rig_file)?;
        let ConsoleConfig::Serial { port, baud } = &loaded.rig.instruments.console;
        match port {
            PortRef::Real(p) => Ok(ConsoleTarget {
                port: p.clone(),
                baud: *baud,
                lock: Some(lock_rig(&loaded)?),
            }),
            PortRef::Lab(_) => Err(virtual_hint(&loaded, "console")),
        }
    }
}

/// `redrig console`: print the console's lines as they arrive (each with its time),
/// send `send` lines first and then every line read from standard input (when it
/// ends, reading goes on), until `seconds` or SIGINT/SIGTERM/SIGHUP. Evidence (raw bytes
/// and lines) goes to `evidence` as `console-watch.raw`/`.log`.
pub async fn console(
    target: &ConsoleTarget,
    seconds: Option<f64>,
    send: &[String],
    evidence: &Path,
) -> i32 {
    let path = match crate::ports::resolve(&target.port) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("console: {e}");
            return exit::INCONCLUSIVE;
        }
    };
    if path != target.port {
        eprintln!("console: {} is {path}", target.port);
    }
    let clock = crate::clock::Clock::start(1.0);
    let (p, b, ev) = (path.clone(), target.baud, evidence.to_path_buf());
    let opened = tokio::task::spawn_blocking(move || {
        crate::drivers::console::SerialConsole::open("watch", &p, b, clock, &ev)
    })
    .await;
    let console = match opened {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            eprintln!("console: {e}");
            return exit::INCONCLUSIVE;
        }
        Err(e) => {
            eprintln!("console: {e}");
            return exit::INCONCLUSIVE;
        }
    };
    use crate::drivers::Console;
    eprintln!(
        "console {path} at {} baud; evidence in {}; Ctrl-C ends",
        target.baud,
        evidence.display()
    );
    for s in send {
        if let Err(e) = console.send(&format!("{s}\r\n")).await {
            eprintln!("console: {e}");
            return exit::INCONCLUSIVE;
        }
    }
    let deadline = match seconds.map(Duration::try_from_secs_f64) {
        None => None,
        Some(Ok(d)) => tokio::time::Instant::now().checked_add(d),
        Some(Err(_)) => {
            eprintln!("--seconds: expected a number of seconds >= 0");
            return exit::USAGE;
        }
    };
    let mut stdin =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(tokio::io::stdin()));
    let mut stdin_open = true;
    // Everything since the line was opened, the answer to `--send` included.
    let mut mark = crate::drivers::Mark(0);
    let status = console.status();
    // Print every record from `mark` on and move `mark` past the last one printed
    // (records that arrive meanwhile are printed next time, none is skipped).
    let show = |mark: &mut crate::drivers::Mark| {
        for r in console.log().since(*mark) {
            let _ = writeln!(
                std::io::stdout(),
                "[{:>9}] {}{}",
                r.t,
                crate::drivers::serial::escape_bytes(r.value.text.as_bytes()),
                if r.value.cut { " [cut]" } else { "" }
            );
            *mark = crate::drivers::Mark(r.seq + 1);
        }
    };
    let code = loop {
        show(&mut mark);
        let until_deadline = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = console.log().wait_for(mark, 3600.0, |_| true) => {}
            _ = until_deadline => break exit::PASS,
            _ = crate::runner::shutdown_signal() => break exit::PASS,
            e = status.failed() => {
                eprintln!("console: {e}");
                break exit::INCONCLUSIVE;
            }
            l = stdin.next_line(), if stdin_open => match l {
                Ok(Some(text)) => {
                    if let Err(e) = console.send(&format!("{text}\r\n")).await {
                        eprintln!("console: {e}");
                        break exit::INCONCLUSIVE;
                    }
                }
                _ => stdin_open = false,
            },
        }
    };
    // What arrived before the end is shown too.
    show(&mut mark);
    code
}

/// The evidence directory of a manual tool: as given, else `bench/<UTC time>/`
/// under the current directory.
pub fn evidence_dir(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| {
        let now = time::OffsetDateTime::now_utc();
        PathBuf::from("bench").join(format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        ))
    })
}

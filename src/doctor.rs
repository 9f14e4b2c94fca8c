//! `redrig doctor`: the rig's health check before a run.
//!
//! One item per thing a run depends on, each `OK`, `WARN`, `FAIL` or `SKIP` with
//! the reason, in the order a bench engineer would check them: the configuration,
//! the run lock, then per instrument. On a physical rig: GPIO reachable and every
//! configured line claimable, the `health:` loopbacks (a jumper from a spare output
//! to a spare input; a spare adapter with TX joined to RX), each serial port
//! resolved from its stable identity and openable, each debug probe attached and
//! its chip known, the firmware image inside the chip's flash, the callbox
//! adapter's and the signal generator's programs present, the gateway's subnet local
//! to this host, the backend reachable. On
//! a virtual rig: the lab starts, every wire opens and the simulated cloud answers.
//!
//! The doctor never powers the watch or presses a button: the supply line is taken
//! without changing its level and button lines are left released. It needs no
//! terminal. Exit codes: 0 healthy (warnings allowed), 2 not healthy (the rig
//! should not take jobs: an infrastructure problem, not a device verdict), 3 the
//! configuration is invalid.

use crate::config::{
    ButtonsConfig, CellularConfig, ConsoleConfig, DebugPortConfig, FlasherConfig, GnssConfig,
    IndicatorsConfig, LoadedRig, PortRef, PowerConfig,
};
use crate::verdict::exit;
use serde::Serialize;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Outcome of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    Skip,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

/// One checked item.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// What was checked, e.g. `gpio`, `serial console`, `probe flasher`.
    pub item: String,
    pub status: Status,
    /// Why: what was found, or what is wrong and what to do.
    pub detail: String,
}

/// The whole check.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub rig: String,
    pub rig_file: PathBuf,
    pub kind: String,
    /// No item failed.
    pub healthy: bool,
    pub items: Vec<Item>,
}

impl Report {
    /// The exit code: 0 healthy, 2 not.
    pub fn exit_code(&self) -> i32 {
        if self.healthy {
            exit::PASS
        } else {
            exit::INCONCLUSIVE
        }
    }

    /// One line per item and a verdict line.
    pub fn render(&self) -> String {
        let width = self.items.iter().map(|i| i.item.len()).max().unwrap_or(0);
        let mut out = format!(
            "redrig doctor: rig `{}` ({}) from {}\n",
            self.rig,
            self.kind,
            self.rig_file.display()
        );
        // Continuation lines of a detail (a list of adapters) line up under it.
        let indent = format!("\n{}", " ".repeat(2 + 4 + 2 + width + 2));
        for i in &self.items {
            let detail = i.detail.trim_end().replace('\n', &indent);
            out.push_str(&format!(
                "  {:<4}  {:<width$}  {detail}\n",
                i.status.word(),
                i.item,
            ));
        }
        let failed = self
            .items
            .iter()
            .filter(|i| i.status == Status::Fail)
            .count();
        out.push_str(&if self.healthy {
            "healthy: the rig can take a run\n".to_string()
        } else {
            format!("NOT HEALTHY: {failed} item(s) failed; fix them before a run (runs on this rig would be inconclusive)\n")
        });
        out
    }
}

struct Items(Vec<Item>);

impl Items {
    fn add(&mut self, item: impl Into<String>, status: Status, detail: impl Into<String>) {
        self.0.push(Item {
            item: item.into(),
            status,
            detail: detail.into(),
        });
    }
}

/// `redrig doctor`: check, print (text or JSON), return the exit code.
pub async fn doctor(rig_file: &Path, dut: Option<&str>, json: bool, redrig_exe: &Path) -> i32 {
    let loaded = match crate::config::load_rig(rig_file, dut) {
        Ok(l) => l,
        Err(e) => {
            if json {
                let v = serde_json::json!({
                    "rig_file": rig_file,
                    "healthy": false,
                    "configuration_errors": e.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
                });
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            }
            eprintln!("{e}");
            return exit::USAGE;
        }
    };
    let report = check(&loaded, redrig_exe).await;
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(t) => println!("{t}"),
            Err(e) => {
                eprintln!("cannot write the report as JSON: {e}");
                return exit::USAGE;
            }
        }
    } else {
        print!("{}", report.render());
    }
    report.exit_code()
}

/// Check a loaded rig.
pub async fn check(loaded: &LoadedRig, redrig_exe: &Path) -> Report {
    let mut items = Items(Vec::new());
    let cfg = &loaded.rig;
    items.add(
        "configuration",
        Status::Ok,
        format!(
            "{} is valid (device `{}` from {})",
            loaded.rig_path.display(),
            loaded.device_name(),
            loaded.device_path.display()
        ),
    );
    for w in &loaded.warnings {
        items.add("configuration", Status::Warn, w.to_string());
    }
    // The lock is held for the whole check: the doctor claims GPIO lines and opens
    // ports, which must never happen under a running job. A busy rig is reported
    // and its instruments are left alone.
    let _lock = match crate::lock::acquire(&loaded.lock_dir(), &cfg.rig.name) {
        Ok(lock) => {
            items.add(
                "run lock",
                Status::Ok,
                format!("free ({}); held during the check", lock.path().display()),
            );
            lock
        }
        Err(e) => {
            items.add("run lock", Status::Fail, e.to_string());
            items.add(
                "instruments",
                Status::Skip,
                "not touched: another process holds the rig",
            );
            return report(loaded, items);
        }
    };
    if cfg.is_virtual() {
        virtual_lab(loaded, redrig_exe, &mut items).await;
    } else {
        let l = loaded.clone();
        match tokio::task::spawn_blocking(move || {
            let mut items = Items(Vec::new());
            physical(&l, &mut items);
            items.0
        })
        .await
        {
            Ok(mut more) => items.0.append(&mut more),
            Err(e) => items.add("doctor", Status::Fail, format!("check task failed: {e}")),
        }
        gateway_subnet(loaded, &mut items);
        backend_reachable(loaded, &mut items).await;
    }
    report(loaded, items)
}

fn report(loaded: &LoadedRig, items: Items) -> Report {
    let cfg = &loaded.rig;
    let healthy = !items.0.iter().any(|i| i.status == Status::Fail);
    Report {
        rig: cfg.rig.name.clone(),
        rig_file: loaded.rig_path.clone(),
        kind: if cfg.is_virtual() {
            "virtual".into()
        } else {
            "physical".into()
        },
        healthy,
        items: items.0,
    }
}

/// A scratch evidence directory for the doctor's own instruments, removed after.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> std::io::Result<Scratch> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("redrig-doctor-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn virtual_lab(loaded: &LoadedRig, redrig_exe: &Path, items: &mut Items) {
    let scratch = match Scratch::new() {
        Ok(s) => s,
        Err(e) => {
            items.add(
                "virtual lab",
                Status::Fail,
                format!("no scratch directory: {e}"),
            );
            return;
        }
    };
    let clock = crate::clock::Clock::start(loaded.rig.time.scale);
    let started = Instant::now();
    let rig = tokio::select! {
        r = crate::rig::Rig::assemble(loaded, redrig_exe, clock, &scratch.0) => r,
        _ = crate::runner::shutdown_signal() => {
            items.add("virtual lab", Status::Fail, "interrupted while starting");
            return;
        }
    };
    let rig = match rig {
        Ok(r) => r,
        Err(e) => {
            items.add("virtual lab", Status::Fail, format!("did not start: {e}"));
            return;
        }
    };
    let wires = rig
        .lab()
        .map(|l| {
            let w = l.wires();
            format!(
                "console {}, gnss {}, modem {}, gpio {}, cloud {} / {}",
                w.console.display(),
                w.gnss.display(),
                w.modem.display(),
                w.gpio.display(),
                w.cloud_device,
                w.cloud_api
            )
        })
        .unwrap_or_default();
    items.add(
        "virtual lab",
        Status::Ok,
        format!(
            "started in {:.1} s; wires: {wires}",
            started.elapsed().as_secs_f64()
        ),
    );
    match rig.check() {
        Ok(()) => items.add(
            "instruments",
            Status::Ok,
            "power, buttons, indicators, console, GNSS line, modem line, flasher and debug port open; gateway up",
        ),
        Err(e) => items.add("instruments", Status::Fail, e.to_string()),
    }
    // The simulated cloud answers the parent API (any HTTP status is an answer).
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        rig.backend.request("GET", "/api/watch", None, None),
    )
    .await;
    match answer {
        Ok(Ok(r)) => items.add(
            "backend",
            Status::Ok,
            format!("the simulated cloud answers (HTTP {})", r.status),
        ),
        Ok(Err(e)) => items.add("backend", Status::Fail, e.to_string()),
        Err(_) => items.add("backend", Status::Fail, "no answer within 10 s"),
    }
    if let Err(e) = rig.shutdown().await {
        items.add("virtual lab", Status::Fail, format!("shutdown: {e}"));
    }
}

fn physical(loaded: &LoadedRig, items: &mut Items) {
    gpio(loaded, items);
    serial(loaded, items);
    probes(loaded, items);
    programs(loaded, items);
}

fn gpio(loaded: &LoadedRig, items: &mut Items) {
    let ins = &loaded.rig.instruments;
    let health = &loaded.rig.health;
    let mut outputs = Vec::new();
    let mut inputs = Vec::new();
    let mut power = None;
    if let PowerConfig::Rppal(l) = &ins.power {
        power = Some(*l);
    }
    if let ButtonsConfig::Rppal { pins } = &ins.buttons {
        for (name, l) in pins {
            outputs.push((format!("button {name}"), *l));
        }
    }
    if let IndicatorsConfig::Rppal { pins } = &ins.indicators {
        for (name, l) in pins {
            inputs.push((format!("indicator {name}"), *l));
        }
    }
    if power.is_none() && outputs.is_empty() && inputs.is_empty() && health.gpio_loopback.is_empty()
    {
        items.add("gpio", Status::Skip, "no GPIO line configured");
        return;
    }
    let gpio = match redrig_hardware::PiGpio::open() {
        Ok(g) => {
            items.add("gpio", Status::Ok, "Raspberry Pi GPIO reachable");
            g
        }
        Err(e) => {
            items.add("gpio", Status::Fail, e.to_string());
            return;
        }
    };
    if let Some(l) = power {
        match gpio.output_as_is(l.pin, l.active_low) {
            Ok(o) => items.add(
                "gpio power",
                Status::Ok,
                format!(
                    "GPIO {} claimed; supply is {} (left as it was)",
                    l.pin,
                    if o.is_active() { "on" } else { "off" }
                ),
            ),
            Err(e) => items.add("gpio power", Status::Fail, e.to_string()),
        }
    }
    // Keep the lines until the end, so a pin claimed twice shows up.
    let mut held_out = Vec::new();
    let mut held_in = Vec::new();
    for (what, l) in outputs {
        match gpio.output(l.pin, l.active_low) {
            Ok(o) => {
                items.add(
                    format!("gpio {what}"),
                    Status::Ok,
                    format!("GPIO {} claimed, released", l.pin),
                );
                held_out.push(o);
            }
            Err(e) => items.add(format!("gpio {what}"), Status::Fail, e.to_string()),
        }
    }
    for (what, l) in inputs {
        match gpio.input(l.pin, l.active_low) {
            Ok(i) => {
                items.add(
                    format!("gpio {what}"),
                    Status::Ok,
                    format!(
                        "GPIO {} claimed, now {}",
                        l.pin,
                        if i.is_active() { "active" } else { "inactive" }
                    ),
                );
                held_in.push(i);
            }
            Err(e) => items.add(format!("gpio {what}"), Status::Fail, e.to_string()),
        }
    }
    for lb in &health.gpio_loopback {
        let what = format!("gpio loopback {}->{}", lb.out, lb.input);
        let lines = gpio
            .output(lb.out, false)
            .and_then(|o| gpio.input(lb.input, false).map(|i| (o, i)));
        let (mut o, i) = match lines {
            Ok(x) => x,
            Err(e) => {
                items.add(what, Status::Fail, e.to_string());
                continue;
            }
        };
        let mut seen = Vec::new();
        for level in [true, false, true, false] {
            o.set(level);
            std::thread::sleep(Duration::from_millis(5));
            seen.push((level, i.is_active()));
        }
        if seen.iter().all(|(a, b)| a == b) {
            items.add(
                what,
                Status::Ok,
                "the input followed the output high and low twice",
            );
        } else {
            let got: Vec<String> = seen
                .iter()
                .map(|(a, b)| format!("set {} read {}", *a as u8, *b as u8))
                .collect();
            items.add(
                what,
                Status::Fail,
                format!(
                    "the input did not follow ({}): check the jumper",
                    got.join(", ")
                ),
            );
        }
    }
}

fn serial(loaded: &LoadedRig, items: &mut Items) {
    let ins = &loaded.rig.instruments;
    let mut ports: Vec<(&str, &PortRef, u32)> = Vec::new();
    let ConsoleConfig::Serial { port, baud } = &ins.console;
    ports.push(("console", port, *baud));
    if let GnssConfig::Serial { port, baud, .. } = &ins.gnss {
        ports.push(("gnss", port, *baud));
    }
    if let CellularConfig::VirtualModem { port, baud } = &ins.cellular {
        ports.push(("modem", port, *baud));
    }
    for (what, port, baud) in ports {
        let item = format!("serial {what}");
        let PortRef::Real(p) = port else {
            items.add(item, Status::Skip, "a lab wire");
            continue;
        };
        match open_port(p, baud) {
            Ok((path, _)) => items.add(
                item,
                Status::Ok,
                if path == *p {
                    format!("{p} opened at {baud} baud")
                } else {
                    format!("{p} is {path}; opened at {baud} baud")
                },
            ),
            Err(e) => items.add(item, Status::Fail, e),
        }
    }
    for lb in &loaded.rig.health.serial_loopback {
        let item = format!("serial loopback {}", lb.port);
        match serial_loopback(&lb.port, lb.baud) {
            Ok(detail) => items.add(item, Status::Ok, detail),
            Err(e) => items.add(item, Status::Fail, e),
        }
    }
}

/// Resolve and open a port exclusively, as a run would.
fn open_port(port: &str, baud: u32) -> Result<(String, serialport::TTYPort), String> {
    let path = crate::ports::resolve(port).map_err(|e| e.to_string())?;
    // serialport opens the line exclusively, as a run does.
    let p = serialport::new(&path, baud)
        .timeout(Duration::from_millis(50))
        .open_native()
        .map_err(|e| format!("{path}: cannot open at {baud} baud: {e} (plugged in? in the dialout group? used by another program?)"))?;
    Ok((path, p))
}

/// Write a pattern and read it back within a second.
fn serial_loopback(port: &str, baud: u32) -> Result<String, String> {
    let (path, mut p) = open_port(port, baud)?;
    let _ = serialport::SerialPort::clear(&p, serialport::ClearBuffer::All);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(7);
    let pattern: Vec<u8> = (0..64u32)
        .map(|i| (nanos.wrapping_mul(i + 1).rotate_left(i) & 0xff) as u8)
        .collect();
    p.write_all(&pattern)
        .map_err(|e| format!("{path}: write: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < pattern.len() && Instant::now() < deadline {
        match p.read(&mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => return Err(format!("{path}: read: {e}")),
        }
    }
    if got == pattern {
        Ok(format!("{path}: 64 bytes came back at {baud} baud"))
    } else if got.is_empty() {
        Err(format!(
            "{path}: nothing came back within 1 s: check the TX-RX jumper"
        ))
    } else {
        Err(format!(
            "{path}: {} of 64 bytes came back, not the ones sent: check the wiring and the baud rate",
            got.len()
        ))
    }
}

fn probes(loaded: &LoadedRig, items: &mut Items) {
    let ins = &loaded.rig.instruments;
    match &ins.flasher {
        FlasherConfig::Drive { path } => {
            let p = path.as_string();
            if Path::new(&p).is_dir() {
                items.add(
                    "flasher",
                    Status::Ok,
                    format!("bootloader drive {p} present"),
                );
            } else {
                items.add(
                    "flasher",
                    Status::Warn,
                    format!("bootloader drive {p} not present now (it appears when the watch is in bootloader mode)"),
                );
            }
        }
        FlasherConfig::ProbeRs { probe, chip } => probe_item(
            "flasher",
            probe,
            chip,
            Some(&loaded.firmware_image()),
            items,
        ),
    }
    match &ins.debug_port {
        DebugPortConfig::Virtual { .. } => {}
        DebugPortConfig::ProbeRs { probe, chip } => {
            probe_item("debug_port", probe, chip, None, items)
        }
    }
}

fn probe_item(what: &str, probe: &str, chip: &str, image: Option<&Path>, items: &mut Items) {
    crate::flashcmd::doctor_probe(what, probe, chip, image, &mut |item, ok, detail| {
        items.add(
            item,
            match ok {
                Some(true) => Status::Ok,
                Some(false) => Status::Fail,
                None => Status::Warn,
            },
            detail,
        )
    });
}

/// Programs the rig runs: the callbox adapter, the GNSS signal generator.
fn programs(loaded: &LoadedRig, items: &mut Items) {
    let ins = &loaded.rig.instruments;
    let mut argv0s: Vec<(String, String)> = Vec::new();
    if let CellularConfig::Callbox { hooks, events, .. } = &ins.cellular {
        if let Some(p) = events.first() {
            argv0s.push(("callbox events".into(), p.clone()));
        }
        for (name, argv) in hooks {
            if let Some(p) = argv.first() {
                argv0s.push((format!("callbox {name}"), p.clone()));
            }
        }
    }
    if let GnssConfig::Sdr { command, .. } = &ins.gnss {
        if let Some(p) = command.first() {
            argv0s.push(("gnss signal generator".into(), p.clone()));
        }
    }
    // One line per distinct program.
    let mut seen = std::collections::BTreeMap::<String, Vec<String>>::new();
    for (what, prog) in argv0s {
        seen.entry(prog).or_default().push(what);
    }
    for (prog, users) in seen {
        let item = format!("program {prog}");
        match find_program(&prog) {
            Some(p) => items.add(
                item,
                Status::Ok,
                format!("{} (for {})", p.display(), users.join(", ")),
            ),
            None => items.add(
                item,
                Status::Fail,
                format!(
                    "not found or not executable (needed for {})",
                    users.join(", ")
                ),
            ),
        }
    }
}

/// `prog` itself when it has a slash, else the first match on `PATH`; only
/// executable regular files count.
pub fn find_program(prog: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let ok = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if prog.contains('/') {
        let p = PathBuf::from(prog);
        return ok(&p).then_some(p);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(prog))
            .find(|p| ok(p))
    })
}

/// A fixed gateway address must be bindable, with the rest of its /24: on a bench's
/// private subnet that needs the subnet routed as local on this host.
fn gateway_subnet(loaded: &LoadedRig, items: &mut Items) {
    let crate::config::Gateway::Fixed(gw) = loaded.rig.network.gateway else {
        items.add(
            "gateway",
            Status::Ok,
            "`auto`: a loopback /24 is picked per run",
        );
        return;
    };
    let o = gw.octets();
    // The gateway's own address and one a host would get.
    let probe = std::net::Ipv4Addr::new(o[0], o[1], o[2], if o[3] == 2 { 3 } else { 2 });
    let bind = |ip: std::net::Ipv4Addr| std::net::TcpListener::bind((ip, 0)).map(drop);
    match bind(gw).and_then(|()| bind(probe)) {
        Ok(()) => items.add(
            "gateway",
            Status::Ok,
            format!("{}.{}.{}.0/24 is local: the gateway can listen on {gw} and its hosts' addresses", o[0], o[1], o[2]),
        ),
        Err(e) if gw.is_loopback() => items.add("gateway", Status::Fail, format!("{gw}: {e}")),
        Err(e) => items.add(
            "gateway",
            Status::Fail,
            format!(
                "cannot listen on {}.{}.{}.0/24 ({e}): run `ip route add local {}.{}.{}.0/24 dev lo` (rig-hardware/docs/host-setup.md)",
                o[0], o[1], o[2], o[0], o[1], o[2]
            ),
        ),
    }
}

/// The backend addresses of `network.hosts` accept a TCP connection.
async fn backend_reachable(loaded: &LoadedRig, items: &mut Items) {
    for (host, target) in &loaded.rig.network.hosts {
        let PortRef::Real(addr) = target else {
            continue;
        };
        let item = format!("backend {host}");
        let r = tokio::time::timeout(
            Duration::from_secs(3),
            tokio::net::TcpStream::connect(addr.as_str()),
        )
        .await;
        match r {
            Ok(Ok(_)) => items.add(item, Status::Ok, format!("{addr} accepts connections")),
            Ok(Err(e)) => items.add(item, Status::Fail, format!("{addr}: {e}")),
            Err(_) => items.add(item, Status::Fail, format!("{addr}: no answer within 3 s")),
        }
    }
}

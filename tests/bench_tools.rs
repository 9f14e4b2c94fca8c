//! The bench engineer's commands without bench hardware: `redrig doctor`, `scan`,
//! `press`, `power`, `console` and `flash`. Each runs the real binary with standard
//! input closed and no terminal, as a CI runner does.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn redrig() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_redrig"));
    // The default rig is the virtual lab unless REDRIG_RIG names another.
    c.env_remove("REDRIG_RIG");
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c.stdin(Stdio::null());
    c
}

fn run(args: &[&str]) -> Output {
    redrig().args(args).output().expect("redrig runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn is_pi() -> bool {
    std::fs::read_to_string("/proc/device-tree/model").is_ok_and(|m| m.contains("Raspberry Pi"))
}

/// The virtual rig under its own name, with its lock in `lock_dir`.
fn private_virtual_rig(dir: &Path, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(fixtures().join("rigs/virtual.yaml")).unwrap();
    let text = text
        .replacen("name: virtual-lab", &format!("name: {name}"), 1)
        .replacen(
            "lock_dir: null",
            &format!("lock_dir: {}", dir.join("locks").display()),
            1,
        );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// The example Pi bench with its lock in `dir` and the profile by absolute path.
fn private_pi_bench(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(fixtures().join("rigs/pi-bench.yaml")).unwrap();
    let text = text
        .replacen(
            "device_profile: reference",
            &format!(
                "device_profile: {}",
                fixtures().join("devices/reference.yaml").display()
            ),
            1,
        )
        .replacen(
            "  kind: physical\n",
            &format!(
                "  kind: physical\n  lock_dir: {}\n",
                dir.join("locks").display()
            ),
            1,
        );
    let path = dir.join("pi-bench.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn item<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["item"] == name)
        .unwrap_or_else(|| panic!("no item `{name}` in {report:#}"))
}

#[test]
fn doctor_starts_the_virtual_lab_checks_every_wire_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let rig = private_virtual_rig(dir.path(), "doctor-virtual");
    let child = redrig()
        .args(["doctor", "--json", "--rig", rig.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&o.stdout), text(&o.stderr)));
    assert_eq!(o.status.code(), Some(0), "{report:#}");
    assert_eq!(report["healthy"], true);
    assert_eq!(report["kind"], "virtual");
    for name in [
        "configuration",
        "run lock",
        "virtual lab",
        "instruments",
        "backend",
    ] {
        assert_eq!(item(&report, name)["status"], "ok", "{report:#}");
    }
    assert!(item(&report, "virtual lab")["detail"]
        .as_str()
        .unwrap()
        .contains("/watch/console.tty"));
    // The doctor's scratch evidence is gone, and the lock is free again.
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("redrig-doctor-{pid}-"))
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let lock = redrig::lock::acquire(&dir.path().join("locks"), "doctor-virtual");
    assert!(lock.is_ok(), "{lock:?}");
}

#[test]
fn doctor_reports_a_rig_that_another_run_holds() {
    let dir = tempfile::tempdir().unwrap();
    let rig = private_virtual_rig(dir.path(), "doctor-busy");
    let _held = redrig::lock::acquire(&dir.path().join("locks"), "doctor-busy").unwrap();
    let o = run(&["doctor", "--rig", rig.to_str().unwrap()]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(2), "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("run lock"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.trim_start().starts_with("FAIL"), "{line}");
    assert!(line.contains("is in use by pid"), "{line}");
    assert!(out.contains("NOT HEALTHY"), "{out}");
    // The held rig's instruments are left alone: no lab is started.
    let skipped = out
        .lines()
        .find(|l| l.contains("instruments"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(skipped.trim_start().starts_with("SKIP"), "{skipped}");
    assert!(!out.contains("virtual lab"), "{out}");
}

#[test]
fn doctor_on_a_physical_bench_without_its_hardware_names_each_missing_part() {
    let dir = tempfile::tempdir().unwrap();
    let rig = private_pi_bench(dir.path());
    let o = run(&["doctor", "--json", "--rig", rig.to_str().unwrap()]);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&o.stdout), text(&o.stderr)));
    assert_eq!(o.status.code(), Some(2), "{report:#}");
    assert_eq!(report["healthy"], false);
    assert_eq!(report["kind"], "physical");
    assert_eq!(item(&report, "configuration")["status"], "ok");
    assert_eq!(item(&report, "run lock")["status"], "ok");
    if !is_pi() {
        let gpio = item(&report, "gpio");
        assert_eq!(gpio["status"], "fail");
        assert!(
            gpio["detail"]
                .as_str()
                .unwrap()
                .starts_with("GPIO unavailable: this machine is not a Raspberry Pi"),
            "{gpio}"
        );
    }
    let gnss = item(&report, "serial gnss");
    assert_eq!(gnss["status"], "fail");
    assert!(
        gnss["detail"]
            .as_str()
            .unwrap()
            .contains("no serial adapter matches usb:0403:6011:FT4QX7B2:1"),
        "{gnss}"
    );
    let console = item(&report, "serial console");
    assert_eq!(console["status"], "fail");
    assert!(
        console["detail"]
            .as_str()
            .unwrap()
            .contains("usb-FTDI_FT232R_USB_UART_A10KXYZ1"),
        "{console}"
    );
    assert_eq!(
        item(&report, "serial loopback usb:0403:6011:FT4QX7B2:3")["status"],
        "fail"
    );
    // The chip is known to probe-rs and the profile's image fits its flash; the
    // probe itself is not attached here.
    assert_eq!(item(&report, "chip flasher")["status"], "ok");
    assert_eq!(item(&report, "image flasher")["status"], "ok");
    let probe = item(&report, "probe flasher");
    assert_eq!(probe["status"], "fail");
    assert!(
        probe["detail"]
            .as_str()
            .unwrap()
            .contains("1366:1015:000683456789 is not connected"),
        "{probe}"
    );
    // The gateway's subnet must be local to this host; it normally is not here.
    let gw = item(&report, "gateway");
    if std::net::TcpListener::bind("10.45.0.2:0").is_ok() {
        assert_eq!(gw["status"], "ok", "{gw}");
    } else {
        assert_eq!(gw["status"], "fail");
        assert!(
            gw["detail"]
                .as_str()
                .unwrap()
                .contains("`ip route add local 10.45.0.0/24 dev lo`"),
            "{gw}"
        );
    }
    let cbx = item(&report, "program /opt/callbox/bin/cbx");
    assert_eq!(cbx["status"], "fail");
    assert!(cbx["detail"].as_str().unwrap().contains("callbox send_sms"));
}

#[test]
fn doctor_refuses_an_invalid_configuration_with_its_position() {
    let rig = fixtures().join("rigs/bad/pin-twice.yaml");
    let o = run(&["doctor", "--rig", rig.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        text(&o.stderr).contains("pin-twice.yaml:16:"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn press_and_power_say_plainly_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let bench = private_pi_bench(dir.path());
    let bench = bench.to_str().unwrap();
    if !is_pi() {
        for args in [
            vec!["press", "sos", "--rig", bench],
            vec!["press", "call1", "--double", "--rig", bench],
            vec!["power", "cycle", "--rig", bench],
        ] {
            let o = run(&args);
            assert_eq!(o.status.code(), Some(2), "{args:?}");
            assert!(
                text(&o.stderr)
                    .contains("gpio: GPIO unavailable: this machine is not a Raspberry Pi"),
                "{args:?}: {}",
                text(&o.stderr)
            );
        }
    }
    // A bench a run holds is refused before any line is touched.
    {
        let _held = redrig::lock::acquire(&dir.path().join("locks"), "pi-bench-1").unwrap();
        for args in [
            vec!["press", "sos", "--rig", bench],
            vec!["power", "off", "--rig", bench],
            vec!["flash", "--rig", bench],
        ] {
            let o = run(&args);
            assert_eq!(o.status.code(), Some(2), "{args:?}");
            assert!(
                text(&o.stderr).contains("rig 'pi-bench-1' is in use by pid"),
                "{args:?}: {}",
                text(&o.stderr)
            );
        }
        // Checking an image touches nothing: no lock needed.
        let o = run(&["flash", "--check", "--rig", bench]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    }
    let o = run(&["press", "selfdestruct", "--rig", bench]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        text(&o.stderr).contains("expected one of call1, call2, power, sos"),
        "{}",
        text(&o.stderr)
    );
    // REDRIG_RIG is the default --rig: the bench's, not the virtual lab's.
    let o = redrig()
        .env("REDRIG_RIG", bench)
        .args(["press", "selfdestruct"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(
        text(&o.stderr).contains("no button `selfdestruct` in instruments.buttons.pins"),
        "{}",
        text(&o.stderr)
    );
    // On the virtual rig the lab owns the buttons, the supply and the console.
    for args in [
        vec!["press", "sos"],
        vec!["power", "on"],
        vec!["console", "--seconds", "1"],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(3), "{args:?}");
        assert!(
            text(&o.stderr).contains("redrig lab up"),
            "{args:?}: {}",
            text(&o.stderr)
        );
    }
}

/// A pseudo-terminal standing in for a USB-serial adapter: the test holds the
/// master side, `redrig console` opens the slave by path.
struct Pty {
    master: std::fs::File,
    _slave: std::os::fd::OwnedFd,
    path: String,
}

fn pty() -> Pty {
    let p = nix::pty::openpty(None, None).unwrap();
    let path = nix::unistd::ttyname(&p.slave)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    // Non-blocking master so the test can poll it.
    nix::fcntl::fcntl(
        &p.master,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    Pty {
        master: std::fs::File::from(p.master),
        _slave: p.slave,
        path,
    }
}

#[test]
fn console_shows_and_records_what_the_device_prints_and_sends_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut pty = pty();
    let evidence = dir.path().join("ev");
    let mut child = redrig()
        .args([
            "console",
            "--port",
            &pty.path,
            "--baud",
            "115200",
            "--seconds",
            "600",
            "--send",
            "version",
            "--evidence",
            evidence.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The rig sends `version` once it has the line in raw mode.
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !got.windows(9).any(|w| w == b"version\r\n") && Instant::now() < deadline {
        let mut buf = [0u8; 256];
        match pty.master.read(&mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    assert!(
        got.windows(9).any(|w| w == b"version\r\n"),
        "the console did not send the line: {got:?}"
    );
    pty.master
        .write_all(b"RW-1 firmware 2.4.0\r\nbell\x07 and tab\r\n")
        .unwrap();
    // Once both lines are on its output, end the session as Ctrl-C would.
    let mut stdout = child.stdout.take().unwrap();
    let shown = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = shown.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !text(&shown.lock().unwrap()).contains("and tab") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    reader.join().unwrap();
    let out = text(&shown.lock().unwrap());
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    assert!(out.contains("] RW-1 firmware 2.4.0"), "{out}");
    assert!(out.contains("bell\\x07 and tab"), "{out}");
    let log = std::fs::read_to_string(evidence.join("console-watch.log")).unwrap();
    assert!(log.contains("RW-1 firmware 2.4.0"), "{log}");
    let raw = std::fs::read(evidence.join("console-watch.raw")).unwrap();
    assert_eq!(raw, b"RW-1 firmware 2.4.0\r\nbell\x07 and tab\r\n");
}

#[test]
fn console_on_a_port_that_is_not_there_is_a_rig_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&[
        "console",
        "--port",
        "usb:0403:6001:NOSUCHADAPTER",
        "--seconds",
        "1",
        "--evidence",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("no serial adapter matches usb:0403:6001:NOSUCHADAPTER"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn scan_writes_a_fragment_that_parses() {
    let o = run(&["scan"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let yaml = text(&o.stdout);
    let v: serde_yaml::Value =
        serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("{e}:\n{yaml}"));
    assert!(v.get("instruments").is_some(), "{yaml}");
    let o = run(&["scan", "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(j.is_object(), "{j}");
}

/// An Intel HEX line for `data` at `addr` (16-bit offset), with its checksum.
fn hex_record(kind: u8, addr: u16, data: &[u8]) -> String {
    let mut bytes = vec![data.len() as u8, (addr >> 8) as u8, addr as u8, kind];
    bytes.extend_from_slice(data);
    let sum = bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    bytes.push(sum.wrapping_neg());
    format!(
        ":{}\n",
        bytes.iter().map(|b| format!("{b:02X}")).collect::<String>()
    )
}

#[test]
fn flash_checks_images_against_the_chip_before_touching_a_probe() {
    let dir = tempfile::tempdir().unwrap();
    // 32 bytes from 0x000FFFF0: the last 16 bytes of the nRF52840's 1 MiB flash
    // and 16 beyond it.
    let over = dir.path().join("over.hex");
    let over_text = [
        hex_record(4, 0, &[0x00, 0x0F]),
        hex_record(0, 0xFFF0, &[0xAA; 16]),
        hex_record(4, 0, &[0x00, 0x10]),
        hex_record(0, 0x0000, &[0xBB; 16]),
        ":00000001FF\n".to_string(),
    ]
    .concat();
    std::fs::write(&over, over_text).unwrap();
    let fits = dir.path().join("fits.hex");
    std::fs::write(&fits, hex_record(0, 0x1000, &[0x11; 16]) + ":00000001FF\n").unwrap();
    let base = [
        "flash",
        "--check",
        "--chip",
        "nRF52840_xxAA",
        "--probe",
        "1366:1015",
    ];
    let o = run(&[&base[..], &[fits.to_str().unwrap()]].concat());
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    assert!(out.contains("Intel HEX, 16 bytes"), "{out}");
    assert!(out.contains("fits the flash of nRF52840_xxAA"), "{out}");

    let o = run(&[&base[..], &[over.to_str().unwrap()]].concat());
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stdout));
    assert!(
        text(&o.stderr).contains("does not fit nRF52840_xxAA"),
        "{}",
        text(&o.stderr)
    );

    let o = run(&[
        "flash",
        "--check",
        "--chip",
        "nrf52840",
        "--probe",
        "1366:1015",
        fits.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        text(&o.stderr).contains("did you mean nRF52840_xxAA"),
        "{}",
        text(&o.stderr)
    );

    // Without --check the probe is needed, and there is none here: a rig fault.
    let o = run(&[
        "flash",
        "--chip",
        "nRF52840_xxAA",
        "--probe",
        "1366:1015:000683456789",
        fits.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("1366:1015:000683456789"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn a_run_on_a_physical_bench_without_pi_gpio_is_inconclusive_not_a_device_fail() {
    if is_pi() {
        eprintln!("running on a Raspberry Pi: skipping the non-Pi check");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rig = private_pi_bench(dir.path());
    let out = dir.path().join("run");
    let o = run(&[
        "run",
        "-q",
        "--rig",
        rig.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--tags",
        "@safety",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    let scenarios = results["scenarios"].as_array().unwrap();
    assert!(!scenarios.is_empty());
    for s in scenarios {
        assert_eq!(s["verdict"], "inconclusive", "{s:#}");
        let msg = s["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("GPIO unavailable: this machine is not a Raspberry Pi"),
            "{msg}"
        );
    }
}

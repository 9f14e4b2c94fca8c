//! Rig configuration and run lock: behaviour tests.
//!
//! Broken configurations live in `fixtures/rigs/bad/`; every test names the exact
//! `file:line:col` it expects, so moving an error by one column fails the test.

use redrig::config::{self, ConfigError, Secret};
use redrig::lock::{self, LockError};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn rig(name: &str) -> PathBuf {
    fixtures().join("rigs").join(name)
}

fn errors_of(rig_file: &Path, dut: Option<&str>) -> Vec<ConfigError> {
    match config::load_rig(rig_file, dut) {
        Ok(_) => panic!("{} loaded without errors", rig_file.display()),
        Err(e) => {
            // Display: one `file:line:col: message` per error.
            let shown = e.to_string();
            assert_eq!(shown.lines().count(), e.0.len(), "{shown}");
            e.0
        }
    }
}

/// Assert that `errors` has one at `file_suffix:line:col` whose message contains
/// every one of `parts`.
fn expect(errors: &[ConfigError], file_suffix: &str, line: usize, col: usize, parts: &[&str]) {
    let found = errors.iter().any(|e| {
        e.file.to_string_lossy().ends_with(file_suffix)
            && e.line == line
            && e.column == col
            && parts.iter().all(|p| e.message.contains(p))
            && e.to_string()
                .contains(&format!("{file_suffix}:{line}:{col}: "))
    });
    let all: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert!(
        found,
        "no error at {file_suffix}:{line}:{col} containing {parts:?}; got:\n{}",
        all.join("\n")
    );
}

/// A copy of the reference profile in a temporary directory, with its own image
/// file, edited by `edit`.
fn temp_profile(edit: impl Fn(String) -> String) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixtures().join("devices/reference.yaml")).unwrap();
    let certs = fixtures().join("certs");
    let text = text
        .replace("../images/reference-2.4.0.img", "fw.img")
        .replace("../images/reference-2.3.0.img", "fw-old.img")
        .replace("../certs/", &format!("{}/", certs.to_str().unwrap()));
    assert!(
        text.contains("image: fw.img"),
        "reference profile changed shape"
    );
    std::fs::write(dir.path().join("fw.img"), b"RRFW1\n").unwrap();
    std::fs::write(dir.path().join("fw-old.img"), b"RRFW1\n").unwrap();
    let path = dir.path().join("profile.yaml");
    std::fs::write(&path, edit(text)).unwrap();
    (dir, path)
}

// ---------------------------------------------------------------------------------
// Shipped configurations
// ---------------------------------------------------------------------------------

#[test]
fn shipped_virtual_rig_with_reference_profile_validates_clean() {
    let loaded = config::load_rig(&rig("virtual.yaml"), None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.rig.rig.name, "virtual-lab");
    assert!(loaded.rig.is_virtual());
    assert_eq!(loaded.device.device.model, "RW-1");
    assert!(loaded.device_path.ends_with("devices/reference.yaml"));
    assert!(loaded.device.device.firmware.image.is_file());
    let ca = loaded.device.device.backend.api.ca.as_ref().expect("ca");
    assert!(
        ca.ends_with("certs/ca.pem") && ca.is_file(),
        "{}",
        ca.display()
    );
    let ca = loaded.device.device.backend.api.ca.as_ref().expect("ca");
    assert!(
        ca.ends_with("certs/ca.pem") && ca.is_file(),
        "{}",
        ca.display()
    );
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(
        loaded.rig.network.hosts["watch.kidcloud.example"],
        config::PortRef::Lab(config::LabWire::CloudDevice)
    );
}

#[test]
fn shipped_pi_bench_validates_without_presence_check_and_fails_presence_here() {
    let loaded = config::load_rig(&rig("pi-bench.yaml"), None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.rig.rig.kind, config::RigKind::Physical);
    match &loaded.rig.instruments.buttons {
        config::ButtonsConfig::Rppal { pins } => {
            assert_eq!(
                pins["sos"],
                config::GpioLine {
                    pin: 23,
                    active_low: true
                }
            )
        }
        other => panic!("{other:?}"),
    }
    // probe-rs flashing is implemented: the bench validates without warnings.
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    match &loaded.rig.instruments.flasher {
        config::FlasherConfig::ProbeRs { probe, chip } => {
            assert_eq!(probe, "1366:1015:000683456789");
            assert_eq!(chip, "nRF52840_xxAA");
        }
        other => panic!("{other:?}"),
    }
    // This machine has neither the USB-serial adapters nor a Pi.
    let presence = config::check_presence(&loaded);
    expect(
        &presence,
        "pi-bench.yaml",
        28,
        38,
        &["port not present", "usb-FTDI"],
    );
    expect(&presence, "pi-bench.yaml", 29, 38, &["port not present"]);
}

#[test]
fn a_missing_previous_image_is_reported_at_its_position() {
    let (_dir, profile) = temp_profile(|t| t.replace("fw-old.img", "gone.img"));
    let err = config::load_rig(&rig("virtual.yaml"), Some(profile.to_str().unwrap()))
        .expect_err("a missing previous image is an error")
        .to_string();
    assert!(err.contains("profile.yaml:9:"), "{err}");
    assert!(
        err.contains("previous firmware image `gone.img` not found"),
        "{err}"
    );
}

#[test]
fn dut_override_uses_named_or_path_profile() {
    let (_dir, profile) = temp_profile(|t| t.replace("RW-1", "RW-1-temp"));
    let loaded = config::load_rig(&rig("virtual.yaml"), Some(profile.to_str().unwrap()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.device.device.model, "RW-1-temp");
    assert_eq!(loaded.device_path, profile);
}

// ---------------------------------------------------------------------------------
// Typed errors (first one per file)
// ---------------------------------------------------------------------------------

#[test]
fn unknown_field_typo_is_reported_with_expected_fields() {
    let errs = errors_of(&rig("bad/unknown-field.yaml"), None);
    expect(
        &errs,
        "bad/unknown-field.yaml",
        21,
        5,
        &[
            "unknown field `baudrate`",
            "expected one of `backend`, `port`, `baud`",
        ],
    );
    expect(
        &errs,
        "bad/unknown-field.yaml",
        18,
        3,
        &["missing field `baud`"],
    );
}

#[test]
fn unknown_section_is_reported_by_the_parser() {
    let errs = errors_of(&rig("bad/unknown-section.yaml"), None);
    expect(
        &errs,
        "bad/unknown-section.yaml",
        6,
        1,
        &["unknown field `tiem`", "`time`"],
    );
}

#[test]
fn wrong_type_is_reported_at_the_value() {
    let errs = errors_of(&rig("bad/wrong-type.yaml"), None);
    expect(
        &errs,
        "bad/wrong-type.yaml",
        7,
        10,
        &[
            "time.scale",
            "invalid type: string \"fast\"",
            "expected f64",
        ],
    );
}

// ---------------------------------------------------------------------------------
// Semantic errors in the rig file
// ---------------------------------------------------------------------------------

#[test]
fn gpio_pin_used_twice_names_both_positions() {
    let errs = errors_of(&rig("bad/pin-twice.yaml"), None);
    expect(
        &errs,
        "bad/pin-twice.yaml",
        16,
        21,
        &[
            "GPIO 17 is used twice",
            "instruments.power",
            "pin-twice.yaml:11:33",
        ],
    );
}

#[test]
fn reserved_pin_is_refused() {
    let errs = errors_of(&rig("bad/reserved-pin.yaml"), None);
    expect(
        &errs,
        "bad/reserved-pin.yaml",
        15,
        21,
        &["GPIO 14 is reserved", "UART0 TX"],
    );
}

#[test]
fn buttons_without_sos_are_refused() {
    let errs = errors_of(&rig("bad/missing-sos.yaml"), None);
    expect(
        &errs,
        "bad/missing-sos.yaml",
        14,
        5,
        &["no `sos` button", "expected at least `sos` and `power`"],
    );
}

#[test]
fn unknown_lab_wire_lists_the_wires() {
    let errs = errors_of(&rig("bad/unknown-wire.yaml"), None);
    expect(
        &errs,
        "bad/unknown-wire.yaml",
        18,
        40,
        &[
            "unknown lab wire `consol`",
            "expected `lab:console`",
            "flash_drive",
        ],
    );
}

#[test]
fn lab_reference_on_a_physical_rig_is_refused() {
    let errs = errors_of(&rig("bad/lab-on-physical.yaml"), None);
    expect(
        &errs,
        "bad/lab-on-physical.yaml",
        26,
        38,
        &["`lab:console` refers to the virtual lab", "physical"],
    );
}

#[test]
fn all_semantic_errors_of_a_file_are_reported() {
    let errs = errors_of(&rig("bad/many-errors.yaml"), None);
    let f = "bad/many-errors.yaml";
    expect(&errs, f, 3, 9, &["invalid rig name `virtual lab`"]);
    expect(&errs, f, 6, 10, &["time.scale is 5000", "<= 1000"]);
    expect(&errs, f, 7, 17, &["time.step_timeout is -1"]);
    expect(&errs, f, 10, 18, &["lab.watch_command is empty"]);
    expect(
        &errs,
        f,
        12,
        26,
        &["backend `rppal`", "rig.kind is virtual"],
    );
    expect(&errs, f, 15, 40, &["unknown lab wire `consol`"]);
    expect(
        &errs,
        f,
        16,
        40,
        &["wrong lab wire `lab:modem`", "expected `lab:gnss`"],
    );
    expect(&errs, f, 16, 59, &["baud 12345 is not a standard rate"]);
    expect(&errs, f, 16, 75, &["rate_hz 3", "1, 5 or 10"]);
    expect(
        &errs,
        f,
        18,
        26,
        &["unknown backend `usb-stick`", "`drive`, `probe-rs`"],
    );
    expect(
        &errs,
        f,
        21,
        12,
        &[
            "gateway `10.0.0.1` is a private address",
            "a virtual rig uses `auto` or a loopback",
        ],
    );
    expect(&errs, f, 22, 3, &["no entry for `api.kidcloud.example`"]);
    // Reported in file order.
    let rig_errs: Vec<_> = errs.iter().filter(|e| e.file.ends_with(f)).collect();
    assert!(rig_errs
        .windows(2)
        .all(|w| (w[0].line, w[0].column) <= (w[1].line, w[1].column)));
}

// ---------------------------------------------------------------------------------
// Device profiles (errors point into the profile file)
// ---------------------------------------------------------------------------------

fn dut(name: &str) -> String {
    rig(name).to_string_lossy().into_owned()
}

#[test]
fn bad_imei_checksum_points_into_the_profile() {
    let errs = errors_of(&rig("virtual.yaml"), Some(&dut("bad/device-bad-imei.yaml")));
    expect(
        &errs,
        "bad/device-bad-imei.yaml",
        6,
        9,
        &["invalid IMEI `861234567890123`", "Luhn"],
    );
}

#[test]
fn regex_that_does_not_compile_is_refused() {
    let errs = errors_of(
        &rig("virtual.yaml"),
        Some(&dut("bad/device-bad-regex.yaml")),
    );
    expect(
        &errs,
        "bad/device-bad-regex.yaml",
        21,
        28,
        &["boot_pattern is not a valid regex", "unclosed"],
    );
}

#[test]
fn missing_firmware_image_is_refused() {
    let errs = errors_of(
        &rig("virtual.yaml"),
        Some(&dut("bad/device-missing-image.yaml")),
    );
    expect(
        &errs,
        "bad/device-missing-image.yaml",
        8,
        22,
        &["firmware image `../../images/no-such-image-9.9.9.img` not found"],
    );
}

#[test]
fn password_and_password_env_together_are_refused() {
    let errs = errors_of(
        &rig("virtual.yaml"),
        Some(&dut("bad/device-both-passwords.yaml")),
    );
    expect(
        &errs,
        "bad/device-both-passwords.yaml",
        26,
        75,
        &["both `password` and `password_env`", "exactly one"],
    );
}

#[test]
fn unknown_dut_name_lists_available_profiles() {
    let errs = errors_of(&rig("virtual.yaml"), Some("no-such-watch"));
    let e = errs
        .iter()
        .find(|e| e.message.contains("no-such-watch"))
        .expect("dut error");
    assert_eq!(e.file, Path::new("--dut"));
    assert!(
        e.message.contains("unknown device profile `no-such-watch`"),
        "{e}"
    );
    assert!(
        e.message.contains("expected one of: ") && e.message.contains("reference"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------

#[test]
fn effective_configuration_contains_no_password() {
    let (_dir, profile) = temp_profile(|t| t);
    let text = std::fs::read_to_string(&profile).unwrap();
    for pw in ["Correct-Horse-7", "Battery-Staple-9"] {
        assert!(
            text.contains(pw),
            "the test profile must have inline password {pw}"
        );
    }
    let loaded = config::load_rig(&rig("virtual.yaml"), Some(profile.to_str().unwrap()))
        .unwrap_or_else(|e| panic!("{e}"));
    let json = loaded.effective_redacted().to_string();
    let yaml = loaded.effective_redacted_yaml();
    let debug = format!("{loaded:?}");
    for shown in [&json, &yaml, &debug] {
        assert!(
            !shown.contains("Correct-Horse-7") && !shown.contains("Battery-Staple-9"),
            "{shown}"
        );
    }
    assert!(json.contains("<redacted>"));
    assert!(json.contains("parent@example.org") && json.contains("virtual-lab"));
    // The secret itself is still usable.
    assert_eq!(
        config::resolve_secret(&loaded.device.device.backend.accounts.parent.password).unwrap(),
        "Correct-Horse-7"
    );
}

#[test]
fn password_env_resolves_and_a_missing_variable_is_a_clear_error() {
    let var = "REDRIG_CONFIG_TEST_PARENT_PW";
    let (_dir, profile) = temp_profile(|t| {
        t.replace(
            r#"password: "Correct-Horse-7""#,
            &format!("password_env: {var}"),
        )
    });
    std::env::set_var(var, "from-the-environment-42");
    let loaded = config::load_rig(&rig("virtual.yaml"), Some(profile.to_str().unwrap()))
        .unwrap_or_else(|e| panic!("{e}"));
    let parent = &loaded.device.device.backend.accounts.parent.password;
    assert_eq!(parent, &Secret::Env(var.to_string()));
    assert_eq!(
        config::resolve_secret(parent).unwrap(),
        "from-the-environment-42"
    );
    let shown = loaded.effective_redacted().to_string();
    assert!(
        !shown.contains("from-the-environment-42") && shown.contains(var),
        "{shown}"
    );

    let missing = Secret::Env("REDRIG_CONFIG_TEST_SURELY_UNSET".into());
    let err = config::resolve_secret(&missing).unwrap_err();
    assert!(
        err.contains("REDRIG_CONFIG_TEST_SURELY_UNSET") && err.contains("not set"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------
// Run lock
// ---------------------------------------------------------------------------------

#[test]
fn second_acquire_in_the_same_process_is_refused_and_names_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let held = lock::acquire(dir.path(), "virtual-lab").unwrap();
    // A new open file description: flock refuses it even in the same process.
    match lock::acquire(dir.path(), "virtual-lab") {
        Err(e @ LockError::Busy { .. }) => {
            let msg = e.to_string();
            let me = format!(
                "rig 'virtual-lab' is in use by pid {} (",
                std::process::id()
            );
            assert!(msg.starts_with(&me), "{msg}");
            assert!(msg.contains(") since 20"), "{msg}");
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    // Another rig is independent.
    let other = lock::acquire(dir.path(), "pi-bench-1").unwrap();
    drop(other);
    drop(held);
    lock::acquire(dir.path(), "virtual-lab").expect("free again after drop");
}

/// Not a test on its own: the child process of
/// `lock_held_by_a_killed_process_is_free_afterwards`.
#[test]
#[ignore]
fn lock_holder_helper() {
    let Some(dir) = std::env::var_os("REDRIG_LOCK_HELPER_DIR") else {
        return;
    };
    let _lock = lock::acquire(Path::new(&dir), "virtual-lab").unwrap();
    // On a line of its own: libtest has already printed "test lock_holder_helper ... ".
    println!("\nLOCKED {}", std::process::id());
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    // Hold the lock until stdin closes (or the parent kills us).
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

#[test]
fn lock_held_by_a_killed_process_is_free_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "lock_holder_helper",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("REDRIG_LOCK_HELPER_DIR", dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Wait for the child's "LOCKED" line, at most 60 s (a channel with a timeout,
    // not a sleep): a reader thread forwards the child's stdout lines.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut locked = None;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with("LOCKED ") => {
                locked = Some(line);
                break;
            }
            Ok(_) => continue,
            Err(_) => break, // timed out, or the child's stdout closed
        }
    }
    if locked.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_eq!(
        locked,
        Some(format!("LOCKED {}", child.id())),
        "helper did not take the lock"
    );

    match lock::acquire(dir.path(), "virtual-lab") {
        Err(e @ LockError::Busy { .. }) => {
            assert!(
                e.to_string()
                    .contains(&format!("in use by pid {} (", child.id())),
                "{e}"
            )
        }
        other => panic!("expected Busy while the child holds it, got {other:?}"),
    }
    child.kill().unwrap(); // SIGKILL: no destructor runs in the child
    child.wait().unwrap();
    let lock = lock::acquire(dir.path(), "virtual-lab")
        .expect("the kernel released the dead holder's lock");
    assert!(lock.path().ends_with("virtual-lab.lock"));
}

#[test]
fn gnss_rate_baud_talker_and_routes_are_checked() {
    let errs = errors_of(&rig("bad/gnss-settings.yaml"), None);
    let f = "bad/gnss-settings.yaml";
    let line = 19;
    let text = std::fs::read_to_string(rig(f)).unwrap();
    let gnss = text.lines().nth(line - 1).unwrap();
    let col = |key: &str| gnss.find(&format!("{key}:")).unwrap() + key.len() + 3;
    expect(
        &errs,
        f,
        line,
        col("baud"),
        &["cannot carry 10 Hz", "at least 38400"],
    );
    expect(&errs, f, line, col("talker"), &["talker `GL`", "GP", "GN"]);
    expect(
        &errs,
        f,
        line,
        col("routes"),
        &["routes directory `no-such-dir` not found"],
    );
}

#[test]
fn mistakes_in_route_files_are_reported_at_their_positions() {
    let errs = errors_of(&rig("bad/gnss-bad-routes.yaml"), None);
    let f = "gnss-routes/places.yaml";
    expect(&errs, f, 3, 16, &["latitude 95", "-90..=90"]);
    expect(&errs, f, 9, 16, &["nowhere"]);
}

#[test]
fn health_loopbacks_are_checked_like_instrument_lines() {
    let errs = errors_of(&rig("bad/health.yaml"), None);
    let f = "bad/health.yaml";
    expect(&errs, f, 58, 22, &["GPIO 20 to itself"]);
    expect(
        &errs,
        f,
        59,
        14,
        &["GPIO 23 is used twice", "instruments.buttons.pins.sos"],
    );
    expect(&errs, f, 59, 22, &["GPIO 15 is reserved"]);
    expect(&errs, f, 61, 15, &["usb:0403:zz:X"]);
    expect(
        &errs,
        f,
        62,
        15,
        &["lab:console", "not a real serial adapter"],
    );
    expect(
        &errs,
        f,
        63,
        15,
        &["/dev/ttyUSB0", "port of instruments.console"],
    );
}

#[test]
fn a_port_named_by_plug_order_is_a_warning_on_a_physical_rig() {
    let text = std::fs::read_to_string(rig("pi-bench.yaml")).unwrap();
    let text = text.replace(
        "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10KXYZ1-if00-port0",
        "/dev/ttyUSB0",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.yaml");
    std::fs::write(
        &path,
        text.replace(
            "device_profile: reference",
            &format!(
                "device_profile: {}",
                fixtures().join("devices/reference.yaml").display()
            ),
        ),
    )
    .unwrap();
    let loaded = config::load_rig(&path, None).unwrap_or_else(|e| panic!("{e}"));
    expect(
        &loaded.warnings,
        "bench.yaml",
        28,
        38,
        &["/dev/ttyUSB0", "plugged in", "usb:VID:PID:SERIAL"],
    );
    // The shipped bench names every adapter by a stable identity: no such warning.
    let shipped = config::load_rig(&rig("pi-bench.yaml"), None).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !shipped
            .warnings
            .iter()
            .any(|w| w.message.contains("plugged in")),
        "{:?}",
        shipped.warnings
    );
    match &shipped.rig.instruments.gnss {
        config::GnssConfig::Serial { port, .. } => {
            assert_eq!(port.as_string(), "usb:0403:6011:FT4QX7B2:1")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        shipped.rig.health.gpio_loopback,
        vec![config::GpioLoopback { out: 20, input: 21 }]
    );
}

#[test]
fn an_unknown_chip_or_a_bad_probe_selector_is_refused_at_its_position() {
    let text = std::fs::read_to_string(rig("pi-bench.yaml")).unwrap();
    let text = text
        .replacen("chip: nRF52840_xxAA }", "chip: nrf52840 }", 1)
        .replacen(
            "probe: \"1366:1015:000683456789\", chip: nRF52840_xxAA",
            "probe: \"J-Link\", chip: nRF52840_xxAA",
            1,
        )
        .replace(
            "device_profile: reference",
            &format!(
                "device_profile: {}",
                fixtures().join("devices/reference.yaml").display()
            ),
        );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.yaml");
    std::fs::write(&path, text).unwrap();
    let errs = errors_of(&path, None);
    expect(&errs, "bench.yaml", 36, 75, &["nrf52840", "nRF52840_xxAA"]);
    expect(&errs, "bench.yaml", 37, 43, &["J-Link"]);
}

#[test]
fn a_private_gateway_is_for_physical_benches_only() {
    let text = std::fs::read_to_string(rig("pi-bench.yaml")).unwrap();
    let text = text.replace(
        "device_profile: reference",
        &format!(
            "device_profile: {}",
            fixtures().join("devices/reference.yaml").display()
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    // The shipped bench uses 10.45.0.1.
    let shipped = config::load_rig(&rig("pi-bench.yaml"), None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        shipped.rig.network.gateway,
        config::Gateway::Fixed(std::net::Ipv4Addr::new(10, 45, 0, 1))
    );
    // A broadcast address is not a gateway.
    let path = dir.path().join("bench.yaml");
    std::fs::write(
        &path,
        text.replace("gateway: 10.45.0.1", "gateway: 10.45.0.255"),
    )
    .unwrap();
    let errs = errors_of(&path, None);
    let line = text
        .lines()
        .position(|l| l.contains("gateway: 10.45.0.1"))
        .unwrap()
        + 1;
    expect(&errs, "bench.yaml", line, 12, &["10.45.0.255", "broadcast"]);
    // A virtual rig keeps to loopback.
    let v = std::fs::read_to_string(rig("virtual.yaml")).unwrap();
    let vpath = dir.path().join("virtual.yaml");
    std::fs::write(&vpath, v.replace("gateway: auto", "gateway: 10.45.0.1")).unwrap();
    let errs = errors_of(&vpath, None);
    assert!(
        errs.iter().any(|e| e
            .message
            .contains("a virtual rig uses `auto` or a loopback")),
        "{errs:?}"
    );
    // A public address is refused on any rig.
    std::fs::write(
        &path,
        text.replace("gateway: 10.45.0.1", "gateway: 8.8.8.8"),
    )
    .unwrap();
    let errs = errors_of(&path, None);
    expect(
        &errs,
        "bench.yaml",
        line,
        12,
        &["invalid gateway `8.8.8.8`"],
    );
}

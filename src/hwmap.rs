//! The hardware map `redrig scan` prints: the serial adapters and debug probes
//! attached to this machine, as a commented YAML fragment a bench engineer pastes
//! into a physical rig file ([`render_yaml`]), or as JSON ([`render_json`]).
//!
//! Serial adapters come from [`redrig_hardware::serial_id`] (sysfs, no libudev) and
//! are named by [`serial_id::stable_name`]: `usb:VID:PID:SERIAL[:IFACE]` when the
//! serial number is unique, else the USB port (`usb-path:…`), which binds the adapter
//! to the port it is plugged into (the fragment says so). Probes are listed by the
//! caller as `VID:PID[:SERIAL]` selectors; this module does not enumerate them.
//!
//! The fragment only proposes: every instrument line is commented out, each serial
//! adapter is proposed as `console:` (the header shows the `gnss:` and `cellular:`
//! forms) and each probe as `flasher:` with a `CHIP` placeholder. Which adapter is
//! wired to which line of the watch cannot be known from the host side. Output is
//! sorted by USB port and interface (not by `/dev` number), so it does not change
//! with plug order.

use redrig_hardware::serial_id::{self, AdapterKind, SerialAdapter};
use serde_json::{json, Value};
use std::cmp::Ordering;

/// A debug probe as the rig file's `probe:` field names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProbeEntry {
    /// `VID:PID[:SERIAL]` (hex VID/PID).
    pub selector: String,
    /// What the probe calls itself (`J-Link`, `CMSIS-DAP`, …).
    pub name: String,
}

/// What is attached to this machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HardwareMap {
    /// Serial adapters, sorted (see [`HardwareMap::new`]).
    pub serial: Vec<SerialAdapter>,
    /// Debug probes, sorted by selector.
    pub probes: Vec<ProbeEntry>,
}

impl HardwareMap {
    /// A map of these adapters and probes, sorted: USB adapters by USB port path
    /// (numerically) and interface, then on-board UARTs, then others, each by device
    /// node; probes by selector then name.
    pub fn new(mut serial: Vec<SerialAdapter>, mut probes: Vec<ProbeEntry>) -> HardwareMap {
        serial.sort_by(adapter_order);
        probes.sort();
        HardwareMap { serial, probes }
    }

    /// The serial adapters of this machine ([`serial_id::scan_system`]) and the
    /// probes the caller found.
    pub fn scan(probes: Vec<ProbeEntry>) -> HardwareMap {
        HardwareMap::new(serial_id::scan_system(), probes)
    }
}

fn kind_rank(k: AdapterKind) -> u8 {
    match k {
        AdapterKind::Usb => 0,
        AdapterKind::Platform => 1,
        AdapterKind::Other => 2,
    }
}

/// `1-1.10` → [1, 1, 10]; anything unparsable sorts last.
fn usb_path_key(p: Option<&str>) -> Vec<u32> {
    match p {
        Some(p) => p
            .split(['-', '.'])
            .map(|n| n.parse().unwrap_or(u32::MAX))
            .collect(),
        None => vec![u32::MAX],
    }
}

fn adapter_order(a: &SerialAdapter, b: &SerialAdapter) -> Ordering {
    kind_rank(a.kind)
        .cmp(&kind_rank(b.kind))
        .then_with(|| usb_path_key(a.usb_path.as_deref()).cmp(&usb_path_key(b.usb_path.as_deref())))
        .then_with(|| a.interface.cmp(&b.interface))
        .then_with(|| a.dev.cmp(&b.dev))
}

fn sorted(map: &HardwareMap) -> (Vec<&SerialAdapter>, Vec<&ProbeEntry>) {
    let mut serial: Vec<&SerialAdapter> = map.serial.iter().collect();
    serial.sort_by(|a, b| adapter_order(a, b));
    let mut probes: Vec<&ProbeEntry> = map.probes.iter().collect();
    probes.sort();
    (serial, probes)
}

/// The most characters of one value shown in a comment.
const MAX_SHOWN: usize = 200;

/// `s` safe inside a YAML comment: no line breaks or other control characters (also
/// none of the separators YAML 1.1 treats as line breaks), at most [`MAX_SHOWN`]
/// characters.
fn comment_text(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(MAX_SHOWN)
        .map(|c| {
            if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') {
                '?'
            } else {
                c
            }
        })
        .collect();
    if s.chars().count() > MAX_SHOWN {
        out.push('…');
    }
    out
}

/// `s` as a YAML double-quoted scalar (on one line).
fn yaml_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The rig file `port:` for an adapter: its stable name, else its device node.
fn port_for(a: &SerialAdapter) -> (String, bool) {
    match serial_id::stable_name(a) {
        Some(n) => (n, true),
        None => (a.dev.to_string_lossy().into_owned(), false),
    }
}

fn describe(a: &SerialAdapter) -> String {
    let mut parts: Vec<String> = Vec::new();
    let names: Vec<&str> = [a.manufacturer.as_deref(), a.product.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    if !names.is_empty() {
        parts.push(names.join(" "));
    }
    match a.kind {
        AdapterKind::Usb => {
            let hex = |v: Option<u16>| v.map_or("????".to_string(), |v| format!("{v:04x}"));
            parts.push(format!("usb {}:{}", hex(a.vid), hex(a.pid)));
            parts.push(match &a.serial {
                Some(s) => format!("serial {s}"),
                None => "no serial number".into(),
            });
            if let Some(i) = a.interface {
                parts.push(format!("interface {i}"));
            }
            if let Some(p) = &a.usb_path {
                parts.push(format!("USB port {p}"));
            }
        }
        AdapterKind::Platform => {
            let mut s = "on-board UART".to_string();
            if let Some(n) = &a.platform_name {
                s.push_str(&format!(" {n}"));
            }
            parts.push(s);
        }
        AdapterKind::Other => parts.push("serial port".into()),
    }
    if let Some(d) = &a.driver {
        parts.push(format!("driver {d}"));
    }
    format!("{}: {}", a.dev.display(), parts.join(", "))
}

/// The map as a YAML fragment for a physical rig file: an `instruments:` mapping
/// whose candidate lines are all commented out, each with comments naming the
/// hardware. It parses as YAML as it stands, and each candidate line, uncommented,
/// is a valid instrument entry (with `CHIP` to replace for probes).
pub fn render_yaml(map: &HardwareMap) -> String {
    let (serial, probes) = sorted(map);
    let mut y = String::new();
    y.push_str("# Hardware attached to this machine (redrig scan).\n");
    y.push_str("# Uncomment the lines you need under `instruments:` of a physical rig file.\n");
    y.push_str("# Every serial adapter is proposed as the console; for the GNSS or modem line\n");
    y.push_str("# write the same port as\n");
    y.push_str("#   gnss:     { backend: serial, port: PORT, baud: 9600, rate_hz: 1 }\n");
    y.push_str("#   cellular: { backend: virtual-modem, port: PORT, baud: 115200 }\n");
    y.push_str("instruments:\n");
    if serial.is_empty() {
        y.push_str("  # no serial adapters found\n");
    }
    for (i, a) in serial.iter().enumerate() {
        if i > 0 {
            y.push_str("  #\n");
        }
        y.push_str(&format!("  # {}\n", comment_text(&describe(a))));
        for link in a.by_id.iter().chain(&a.aliases) {
            let what = if a.by_id.contains(link) {
                "by-id"
            } else {
                "alias"
            };
            y.push_str(&format!(
                "  #   {what}: {}\n",
                comment_text(&link.to_string_lossy())
            ));
        }
        let (port, stable) = port_for(a);
        if !stable {
            y.push_str(&format!(
                "  #   WARNING: no stable name known: {} depends on the order adapters were plugged in\n",
                comment_text(&a.dev.to_string_lossy())
            ));
        } else if a.bound_by_position() {
            let place = match &a.usb_path {
                Some(p) => format!("USB port {p}"),
                None => "the same USB port".into(),
            };
            y.push_str(&format!(
                "  #   WARNING: no unique USB serial number: bound by position; keep it plugged into {}\n",
                comment_text(&place)
            ));
        }
        y.push_str(&format!(
            "  # console: {{ backend: serial, port: {}, baud: 115200 }}\n",
            yaml_quoted(&port)
        ));
    }
    y.push_str("  #\n");
    if probes.is_empty() {
        y.push_str("  # no debug probes found\n");
    } else {
        y.push_str("  # Debug probes (debug_port takes the same fields; replace CHIP with the probe-rs chip name):\n");
    }
    for p in probes {
        y.push_str(&format!(
            "  # probe {}: {}\n",
            comment_text(&p.selector),
            comment_text(&p.name)
        ));
        if p.selector.split(':').count() < 3 {
            y.push_str(
                "  #   WARNING: no serial number: only one probe of this model may be attached\n",
            );
        }
        y.push_str(&format!(
            "  # flasher: {{ backend: probe-rs, probe: {}, chip: CHIP }}\n",
            yaml_quoted(&p.selector)
        ));
    }
    y
}

/// The map as one JSON document:
/// `{ "serial": [ { "dev", "kind", "vid", "pid" (4 hex digits or null), "serial",
/// "manufacturer", "product", "interface", "usb_path", "driver", "platform_name",
/// "by_id", "by_path", "aliases", "serial_unique", "bound_by_position",
/// "stable_name" } ], "probes": [ { "selector", "name" } ] }`, sorted as
/// [`render_yaml`].
pub fn render_json(map: &HardwareMap) -> String {
    let (serial, probes) = sorted(map);
    let paths = |v: &[std::path::PathBuf]| -> Vec<String> {
        v.iter().map(|p| p.to_string_lossy().into_owned()).collect()
    };
    let hex = |v: Option<u16>| v.map(|v| format!("{v:04x}"));
    let serial: Vec<Value> = serial
        .iter()
        .map(|a| {
            json!({
                "dev": a.dev.to_string_lossy(),
                "kind": a.kind.as_str(),
                "vid": hex(a.vid),
                "pid": hex(a.pid),
                "serial": a.serial,
                "manufacturer": a.manufacturer,
                "product": a.product,
                "interface": a.interface,
                "usb_path": a.usb_path,
                "driver": a.driver,
                "platform_name": a.platform_name,
                "by_id": paths(&a.by_id),
                "by_path": paths(&a.by_path),
                "aliases": paths(&a.aliases),
                "serial_unique": a.serial_unique,
                "bound_by_position": a.bound_by_position(),
                "stable_name": serial_id::stable_name(a),
            })
        })
        .collect();
    let probes: Vec<Value> = probes
        .iter()
        .map(|p| json!({ "selector": p.selector, "name": p.name }))
        .collect();
    let doc = json!({ "serial": serial, "probes": probes });
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use redrig_hardware::serial_id::{mark_unique_serials, resolve, UsbSelector};
    use serde_yaml::Value as Y;
    use std::path::PathBuf;

    fn usb(
        dev: &str,
        vid: u16,
        pid: u16,
        serial: Option<&str>,
        iface: u8,
        path: &str,
    ) -> SerialAdapter {
        let mut a = SerialAdapter::new(dev, AdapterKind::Usb);
        a.vid = Some(vid);
        a.pid = Some(pid);
        a.serial = serial.map(str::to_string);
        a.interface = Some(iface);
        a.usb_path = Some(path.to_string());
        a
    }

    /// FT2232 (two ports), CP2102, two CH340 without serial, the Pi's UART, and an
    /// adapter with nothing stable; listed in a scrambled order.
    fn bench() -> Vec<SerialAdapter> {
        let mut ft0 = usb("/dev/ttyUSB3", 0x0403, 0x6010, Some("FT4ABC12"), 0, "1-1.3");
        ft0.manufacturer = Some("FTDI".into());
        ft0.product = Some("Dual RS232-HS".into());
        ft0.driver = Some("ftdi_sio".into());
        ft0.by_id = vec![PathBuf::from(
            "/dev/serial/by-id/usb-FTDI_Dual_RS232-HS_FT4ABC12-if00-port0",
        )];
        let mut ft1 = ft0.clone();
        ft1.dev = "/dev/ttyUSB4".into();
        ft1.interface = Some(1);
        ft1.by_id = vec![PathBuf::from(
            "/dev/serial/by-id/usb-FTDI_Dual_RS232-HS_FT4ABC12-if01-port0",
        )];
        let mut cp = usb(
            "/dev/ttyUSB0",
            0x10c4,
            0xea60,
            Some("0001A2B3"),
            0,
            "1-1.10",
        );
        cp.product = Some("CP2102 USB to UART Bridge Controller".into());
        let mut ch_a = usb("/dev/ttyUSB2", 0x1a86, 0x7523, None, 0, "1-1.2");
        ch_a.manufacturer = Some("QinHeng\nElectronics".into());
        let ch_b = usb("/dev/ttyUSB1", 0x1a86, 0x7523, None, 0, "1-1.4");
        let mut uart = SerialAdapter::new("/dev/ttyAMA0", AdapterKind::Platform);
        uart.platform_name = Some("serial@7e201000".into());
        uart.aliases = vec![PathBuf::from("/dev/serial0")];
        let lost = SerialAdapter::new("/dev/ttyACM0", AdapterKind::Other);
        let mut all = vec![ch_b, lost, ft1, uart, cp, ft0, ch_a];
        mark_unique_serials(&mut all);
        all
    }

    fn probes() -> Vec<ProbeEntry> {
        vec![
            ProbeEntry {
                selector: "1366:1015:000683456789".into(),
                name: "J-Link".into(),
            },
            ProbeEntry {
                selector: "0483:3748".into(),
                name: "STLink V2".into(),
            },
        ]
    }

    fn lines_with<'a>(y: &'a str, key: &str) -> Vec<&'a str> {
        y.lines()
            .filter(|l| l.trim_start().starts_with(key))
            .collect()
    }

    /// A commented candidate line, uncommented, under `instruments:`.
    fn uncomment(line: &str) -> Y {
        let entry = line.trim_start().strip_prefix("# ").unwrap();
        let doc = format!("instruments:\n  {entry}\n");
        let v: Y = serde_yaml::from_str(&doc).unwrap_or_else(|e| panic!("{doc}: {e}"));
        v["instruments"].clone()
    }

    #[test]
    fn yaml_parses_and_proposes_one_line_per_adapter_and_probe() {
        let map = HardwareMap::new(bench(), probes());
        let y = render_yaml(&map);
        eprintln!("{y}");
        let v: Y = serde_yaml::from_str(&y).unwrap();
        let m = v.as_mapping().unwrap();
        assert_eq!(m.len(), 1);
        assert!(
            v["instruments"].is_null(),
            "every instrument is commented out"
        );

        let consoles = lines_with(&y, "# console:");
        let ports: Vec<String> = consoles
            .iter()
            .map(|l| {
                let e = uncomment(l);
                assert_eq!(e["console"]["backend"].as_str(), Some("serial"));
                assert_eq!(e["console"]["baud"].as_u64(), Some(115200));
                e["console"]["port"].as_str().unwrap().to_string()
            })
            .collect();
        // Sorted by USB port numerically (1-1.10 after 1-1.4), interface, then the
        // on-board UART, then the rest.
        assert_eq!(
            ports,
            [
                "usb-path:1-1.2:0",
                "usb:0403:6010:FT4ABC12:0",
                "usb:0403:6010:FT4ABC12:1",
                "usb-path:1-1.4:0",
                "usb:10c4:ea60:0001A2B3:0",
                "/dev/serial0",
                "/dev/ttyACM0",
            ]
        );
        // Each proposed selector names its own adapter.
        let adapters = bench();
        for p in ports.iter().filter(|p| p.starts_with("usb")) {
            let sel = UsbSelector::parse(p).unwrap();
            assert!(resolve(&sel, &adapters).is_ok(), "{p}");
        }

        let flashers = lines_with(&y, "# flasher:");
        assert_eq!(flashers.len(), 2);
        let probe_fields: Vec<(String, String)> = flashers
            .iter()
            .map(|l| {
                let e = uncomment(l);
                assert_eq!(e["flasher"]["backend"].as_str(), Some("probe-rs"));
                (
                    e["flasher"]["probe"].as_str().unwrap().to_string(),
                    e["flasher"]["chip"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            probe_fields,
            [
                ("0483:3748".to_string(), "CHIP".to_string()),
                ("1366:1015:000683456789".into(), "CHIP".into())
            ]
        );
        assert!(
            y.contains("# probe 1366:1015:000683456789: J-Link\n"),
            "{y}"
        );
    }

    #[test]
    fn yaml_comments_name_the_hardware_and_warn_where_needed() {
        let y = render_yaml(&HardwareMap::new(bench(), probes()));
        assert!(
            y.contains("# /dev/ttyUSB4: FTDI Dual RS232-HS, usb 0403:6010, serial FT4ABC12, interface 1, USB port 1-1.3, driver ftdi_sio\n"),
            "{y}"
        );
        assert!(
            y.contains("#   by-id: /dev/serial/by-id/usb-FTDI_Dual_RS232-HS_FT4ABC12-if01-port0\n"),
            "{y}"
        );
        assert!(
            y.contains("# /dev/ttyAMA0: on-board UART serial@7e201000\n"),
            "{y}"
        );
        assert!(y.contains("#   alias: /dev/serial0\n"), "{y}");
        // The manufacturer's newline does not break out of the comment.
        assert!(
            y.contains("QinHeng?Electronics, usb 1a86:7523, no serial number"),
            "{y}"
        );
        let warn_pos = lines_with(&y, "#   WARNING: no unique USB serial number");
        assert_eq!(warn_pos.len(), 2, "{y}");
        assert!(
            warn_pos[0].ends_with("keep it plugged into USB port 1-1.2"),
            "{y}"
        );
        assert_eq!(
            lines_with(&y, "#   WARNING: no stable name known: /dev/ttyACM0").len(),
            1,
            "{y}"
        );
        assert_eq!(
            lines_with(&y, "#   WARNING: no serial number: only one probe").len(),
            1,
            "{y}"
        );
        // Adapters with a unique serial carry no warning.
        let ftdi_block: Vec<&str> = y
            .lines()
            .skip_while(|l| !l.contains("/dev/ttyUSB3:"))
            .take_while(|l| !l.contains("# console:"))
            .collect();
        assert!(
            !ftdi_block.is_empty() && ftdi_block.iter().all(|l| !l.contains("WARNING")),
            "{y}"
        );
    }

    #[test]
    fn output_does_not_depend_on_the_order_adapters_were_found() {
        let a = HardwareMap::new(bench(), probes());
        let mut rev = bench();
        rev.reverse();
        let mut p = probes();
        p.reverse();
        let b = HardwareMap {
            serial: rev,
            probes: p,
        };
        assert_eq!(render_yaml(&a), render_yaml(&b));
        assert_eq!(render_json(&a), render_json(&b));
        assert_eq!(a, HardwareMap::new(b.serial.clone(), b.probes.clone()));
    }

    #[test]
    fn hostile_names_cannot_escape_comments_or_quotes() {
        let mut a = usb("/dev/ttyUSB0", 0x0403, 0x6001, None, 0, "1-1");
        a.product = Some("x\r\ninstruments: {evil: 1}\u{2028}y".into());
        a.by_path = vec![];
        a.usb_path = None;
        a.by_path = vec![PathBuf::from("/dev/serial/by-path/a\"b\\c\nd: e")];
        let p = ProbeEntry {
            selector: "1366:1015:\"\n x: 1".into(),
            name: "n\n- list".into(),
        };
        let y = render_yaml(&HardwareMap::new(vec![a], vec![p]));
        let v: Y = serde_yaml::from_str(&y).unwrap_or_else(|e| panic!("{y}: {e}"));
        assert!(v["instruments"].is_null(), "{y}");
        let c = lines_with(&y, "# console:");
        assert_eq!(c.len(), 1);
        assert_eq!(
            uncomment(c[0])["console"]["port"].as_str(),
            Some("/dev/serial/by-path/a\"b\\c\nd: e")
        );
        let f = lines_with(&y, "# flasher:");
        assert_eq!(
            uncomment(f[0])["flasher"]["probe"].as_str(),
            Some("1366:1015:\"\n x: 1")
        );
        let long = "Z".repeat(10_000);
        let mut big = usb("/dev/ttyUSB1", 1, 2, None, 0, "1-2");
        big.product = Some(long);
        let y = render_yaml(&HardwareMap::new(vec![big], vec![]));
        assert!(y.lines().all(|l| l.chars().count() < 400), "{y}");
        assert!(y.contains("# no debug probes found"));
    }

    #[test]
    fn empty_map() {
        let m = HardwareMap::default();
        let y = render_yaml(&m);
        let v: Y = serde_yaml::from_str(&y).unwrap();
        assert!(v["instruments"].is_null());
        assert!(y.contains("# no serial adapters found") && y.contains("# no debug probes found"));
        let j: Value = serde_json::from_str(&render_json(&m)).unwrap();
        assert_eq!(j, json!({ "serial": [], "probes": [] }));
    }

    #[test]
    fn json_carries_identities_and_stable_names() {
        let j: Value =
            serde_json::from_str(&render_json(&HardwareMap::new(bench(), probes()))).unwrap();
        let serial = j["serial"].as_array().unwrap();
        assert_eq!(serial.len(), 7);
        let ft = &serial[1];
        assert_eq!(ft["dev"], "/dev/ttyUSB3");
        assert_eq!(ft["kind"], "usb");
        assert_eq!(
            (ft["vid"].as_str(), ft["pid"].as_str()),
            (Some("0403"), Some("6010"))
        );
        assert_eq!(ft["interface"], 0);
        assert_eq!(ft["serial_unique"], true);
        assert_eq!(ft["bound_by_position"], false);
        assert_eq!(ft["stable_name"], "usb:0403:6010:FT4ABC12:0");
        assert_eq!(
            ft["by_id"][0],
            "/dev/serial/by-id/usb-FTDI_Dual_RS232-HS_FT4ABC12-if00-port0"
        );
        let ch = &serial[0];
        assert_eq!(ch["serial"], Value::Null);
        assert_eq!(ch["bound_by_position"], true);
        assert_eq!(ch["stable_name"], "usb-path:1-1.2:0");
        assert_eq!(serial[5]["kind"], "platform");
        assert_eq!(serial[5]["vid"], Value::Null);
        assert_eq!(serial[6]["stable_name"], Value::Null);
        assert_eq!(
            j["probes"][0],
            json!({ "selector": "0483:3748", "name": "STLink V2" })
        );
    }

    #[test]
    fn map_of_this_machine_renders() {
        let m = HardwareMap::scan(Vec::new());
        let y = render_yaml(&m);
        let _: Y = serde_yaml::from_str(&y).unwrap();
        let j: Value = serde_json::from_str(&render_json(&m)).unwrap();
        assert_eq!(j["serial"].as_array().map(Vec::len), Some(m.serial.len()));
    }
}

//! The serial-line drivers against pseudo-terminals: the test holds the master side
//! and plays the device; the driver opens the slave path as it would a bench adapter.
//!
//! The device clock runs 50 times faster than the wall clock; every wait is bounded
//! (device-time waits of `WAIT` device seconds, about 12 wall seconds).

mod support;

use redrig::clock::Clock;
use redrig::drivers::console::{iso8601_utc, SerialConsole, MAX_LINE};
use redrig::drivers::gnss::{GnssOptions, SerialGnss};
use redrig::drivers::modem::VirtualModem;
use redrig::drivers::{
    CallAnswer, CellEvent, Cellular, Console, Gnss, NameService, Position, Registration,
};
use redrig::error::RigError;
use redrig::wire::nmea;
use regex::Regex;
use std::net::Ipv4Addr;
use support::PtyDevice;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SCALE: f64 = 50.0;
/// Device seconds to wait for anything (12 s of wall time at `SCALE`).
const WAIT: f64 = 600.0;
/// Wall time to wait for bytes on the device side.
const WALL: Duration = Duration::from_secs(12);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Wait (bounded) until `cond` holds; for files written by driver threads.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WALL;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------
// Console

#[test]
fn console_splits_lines_stamps_them_and_writes_evidence() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::start(SCALE);
    let mut dev = PtyDevice::new(WALL);
    let console = SerialConsole::open("main", &dev.path, 115_200, clock, dir.path()).unwrap();
    dev.release_slave();

    let mark = console.log().mark();
    let before = clock.now();
    dev.write(b"ROM boot v1.3 (reset cause: power-on)\r\nfirmware 2.4.0 booted imei 861234567890123\nLF only\rCR only\r\n\r\nafter blank\r\n");
    let booted = rt
        .block_on(console.wait_line(mark, &Regex::new(r"^firmware (\S+) booted").unwrap(), WAIT))
        .expect("boot line");
    assert_eq!(
        booted.value.text,
        "firmware 2.4.0 booted imei 861234567890123"
    );
    let last = rt
        .block_on(console.wait_line(mark, &Regex::new("^after blank$").unwrap(), WAIT))
        .expect("last line");
    let after = clock.now();

    let records = console.log().since(mark);
    let texts: Vec<&str> = records.iter().map(|r| r.value.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "ROM boot v1.3 (reset cause: power-on)",
            "firmware 2.4.0 booted imei 861234567890123",
            "LF only",
            "CR only",
            "",
            "after blank"
        ]
    );
    assert!(records.iter().all(|r| !r.value.cut));
    assert!(records.windows(2).all(|w| w[0].t <= w[1].t));
    assert!(
        records.iter().all(|r| r.t >= before && r.t <= after),
        "stamps outside the exchange"
    );
    assert_eq!(last.seq, records.last().unwrap().seq);

    // .log: `<device ms> <utc iso8601> <text>`, one line per record, same stamps.
    let log = std::fs::read_to_string(dir.path().join("console-main.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), records.len());
    for (line, rec) in lines.iter().zip(&records) {
        let want = format!(
            "{} {} {}",
            rec.t,
            iso8601_utc(clock.utc_ms(rec.t)),
            rec.value.text
        );
        assert_eq!(line.trim_end(), want.trim_end());
    }
    let raw = std::fs::read(dir.path().join("console-main.raw")).unwrap();
    assert!(raw.starts_with(b"ROM boot v1.3"));

    // Rig to device.
    rt.block_on(console.send("help\r")).unwrap();
    dev.expect("help\r");
}

#[test]
fn console_cuts_a_100k_line_and_keeps_every_byte_of_garbage() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::start(SCALE);
    let mut dev = PtyDevice::new(WALL);
    let console = SerialConsole::open("dbg", &dev.path, 115_200, clock, dir.path()).unwrap();
    dev.release_slave();

    let mark = console.log().mark();
    let long: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let garbage: Vec<u8> = (0..=255u8).rev().chain(0..=255u8).collect();
    let mut sent = long.clone();
    sent.extend_from_slice(b"\r\n");
    sent.extend_from_slice(&garbage);
    sent.extend_from_slice(b"\xc3\x28 still alive\r\n");
    dev.write(&sent);

    let alive = rt
        .block_on(console.wait_line(mark, &Regex::new("still alive$").unwrap(), WAIT))
        .expect("console survived the garbage");
    assert!(
        alive.value.text.contains('\u{fffd}'),
        "invalid UTF-8 is shown lossily"
    );

    let records = console.log().since(mark);
    let full = 100_000 / MAX_LINE;
    for r in &records[..full] {
        assert_eq!(r.value.text.len(), MAX_LINE);
        assert!(r.value.cut);
    }
    let tail = &records[full];
    assert_eq!(tail.value.text.len(), 100_000 - full * MAX_LINE);
    assert!(tail.value.cut);
    let rejoined: String = records[..=full]
        .iter()
        .map(|r| r.value.text.as_str())
        .collect();
    assert_eq!(rejoined.as_bytes(), &long[..]);
    assert!(!records[full + 1].value.cut);

    // Raw evidence: exactly the bytes sent (written before the records are logged).
    let raw = std::fs::read(dir.path().join("console-dbg.raw")).unwrap();
    assert_eq!(raw.len(), sent.len());
    assert_eq!(raw, sent);
    let log = std::fs::read_to_string(dir.path().join("console-dbg.log")).unwrap();
    assert_eq!(log.lines().count(), records.len());
}

#[test]
fn console_port_gone_is_an_instrument_error_and_the_last_words_are_kept() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::start(SCALE);
    let mut dev = PtyDevice::new(WALL);
    let console = SerialConsole::open("gone", &dev.path, 115_200, clock, dir.path()).unwrap();
    dev.release_slave();

    let mark = console.log().mark();
    dev.write(b"halting\r\nlast words");
    let raw_path = dir.path().join("console-gone.raw");
    wait_until("raw evidence", || {
        std::fs::read(&raw_path)
            .map(|b| b.ends_with(b"last words"))
            .unwrap_or(false)
    });
    dev.close_master();

    let last = rt
        .block_on(console.expect_line(mark, &Regex::new("^last words$").unwrap(), WAIT))
        .expect("not an error: the line arrived before the port went away")
        .expect("unterminated tail flushed as a record");
    assert!(!last.value.cut);
    let mark2 = console.log().mark();
    match rt.block_on(console.expect_line(mark2, &Regex::new("never").unwrap(), WAIT)) {
        Err(RigError::Instrument { instrument, .. }) => assert_eq!(instrument, dev.path),
        other => panic!("expected an instrument error, got {other:?}"),
    }
    assert!(matches!(
        rt.block_on(console.send("x")),
        Err(RigError::Instrument { .. })
    ));
}

// ---------------------------------------------------------------------------------
// GNSS

fn sentences(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8(bytes.to_vec()).expect("NMEA is ASCII");
    text.split_inclusive("\r\n")
        .filter(|l| l.ends_with("\r\n"))
        .map(|l| l.trim_end().to_string())
        .collect()
}

#[test]
fn gnss_feeds_fix_and_no_fix_at_the_configured_rate_in_device_time() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::start(SCALE);
    let mut dev = PtyDevice::new(WALL);
    let gnss =
        SerialGnss::open(&dev.path, 9600, clock, GnssOptions::default(), dir.path()).unwrap();
    dev.release_slave();
    let log = gnss.log();

    // Invalid positions are refused.
    let bad = Position {
        lat: 91.0,
        lon: 0.0,
        alt_m: 0.0,
    };
    assert!(matches!(
        rt.block_on(gnss.set_position(Some(bad))),
        Err(RigError::Config(_))
    ));

    let (lat, lon) = (52.520008, 13.404954);
    rt.block_on(gnss.set_position(Some(Position {
        lat,
        lon,
        alt_m: 34.0,
    })))
    .unwrap();
    let mark = log.mark();
    let first_fix = rt
        .block_on(log.wait_for(mark, WAIT, |s| s.starts_with("$GPRMC") && s.contains(",A,")))
        .expect("an RMC with a fix");

    // Rate: count RMC sentences over 30 device seconds (epochs skipped under load are
    // counted by the driver and allowed for).
    let skipped0 = gnss.skipped_epochs();
    let t0 = first_fix.t;
    let window = 30_000;
    let end = rt
        .block_on(async {
            loop {
                let m = log.mark();
                let newest = log.since(mark).last().map(|r| r.t).unwrap_or(0);
                if newest >= t0 + window {
                    return Some(newest);
                }
                log.wait_for(m, WAIT, |_| true).await?;
            }
        })
        .expect("30 device seconds of sentences");
    assert!(end >= t0 + window);
    let records = log.since(mark);
    let rmc = records
        .iter()
        .filter(|r| r.value.starts_with("$GPRMC") && r.t >= t0 && r.t < t0 + window)
        .count() as u64;
    let skipped = gnss.skipped_epochs() - skipped0;
    // Never faster than the rate; slower only by epochs the driver reports skipped.
    assert!(rmc <= 31, "{rmc} RMC in 30 device seconds at 1 Hz");
    if skipped == 0 {
        assert!(rmc >= 29, "{rmc} RMC in 30 device seconds at 1 Hz");
    } else {
        assert!(
            rmc + skipped >= 29,
            "{rmc} RMC (+{skipped} skipped) in 30 device seconds"
        );
    }

    // The sentences as the device received them: valid, in receiver order, position
    // to a micro-degree, UTC from the device clock.
    let wire = sentences(&dev.received());
    let with_fix: Vec<nmea::Sentence> = wire
        .iter()
        .map(|l| nmea::parse(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .skip_while(|s| !(s.kind == "RMC" && s.field(1) == "A"))
        .take_while({
            let mut seen_zda = false;
            move |s| !std::mem::replace(&mut seen_zda, s.kind == "ZDA")
        })
        .collect();
    // Receiver order; the number of GSV sentences follows the satellites in view.
    let kinds: Vec<&str> = with_fix.iter().map(|s| s.kind.as_str()).collect();
    let gsv = kinds.iter().filter(|k| **k == "GSV").count();
    assert!((1..=4).contains(&gsv), "{kinds:?}");
    let mut expected = vec!["RMC", "VTG", "GGA", "GSA"];
    expected.extend(std::iter::repeat_n("GSV", gsv));
    expected.push("ZDA");
    assert_eq!(kinds, expected);
    for s in [&with_fix[0], &with_fix[2]] {
        let (la, lo) = s.position().unwrap();
        assert!((la - lat).abs() < 1e-6 && (lo - lon).abs() < 1e-6, "{s:?}");
        assert_eq!(s.has_fix(), Some(true));
    }
    // The epoch's UTC is a whole second of the device clock, at or just before the
    // moment the RMC went out (it leaves after its characters' time on the line).
    let sent_utc = clock.utc_ms(first_fix.t);
    let epoch_utc = sent_utc - sent_utc.rem_euclid(1000);
    let utc = nmea::UtcTime::from_unix_ms(epoch_utc).unwrap();
    let logged = nmea::parse(&first_fix.value).unwrap();
    assert_eq!(logged.field(0), utc.nmea_time());
    assert_eq!(logged.field(8), utc.nmea_date());

    // No fix.
    rt.block_on(gnss.set_position(None)).unwrap();
    let mark = log.mark();
    rt.block_on(log.wait_for(mark, WAIT, |s| s.starts_with("$GPRMC") && s.contains(",V,")))
        .expect("a no-fix RMC");
    let gga = rt
        .block_on(log.wait_for(mark, WAIT, |s| {
            s.starts_with("$GPGGA") && s.contains(",,,,,0,")
        }))
        .expect("a no-fix GGA");
    let gga = nmea::parse(&gga.value).unwrap();
    assert_eq!(gga.field(5), "0");
    assert_eq!(gga.position(), None);
    let n = dev.received().len() + 1;
    let wire = sentences(&dev.wait_len(n));
    assert!(wire
        .iter()
        .any(|l| l.starts_with("$GPRMC") && nmea::parse(l).unwrap().field(1) == "V"));

    // Evidence: `<device ms> <sentence>` for every sentence logged so far.
    let evidence = std::fs::read_to_string(dir.path().join("gnss.nmea")).unwrap();
    let mut count = 0;
    for line in evidence.lines() {
        let (t, s) = line.split_once(' ').unwrap();
        t.parse::<u64>().unwrap();
        if s.starts_with('#') {
            continue;
        }
        nmea::parse(s).unwrap();
        count += 1;
    }
    assert!(count >= records.len());
}

// ---------------------------------------------------------------------------------
// Modem

#[derive(Default)]
struct FakeNs {
    coverage: Mutex<Vec<bool>>,
}

impl NameService for FakeNs {
    fn resolve(&self, host: &str) -> Option<Ipv4Addr> {
        (host == "watch.kidcloud.example").then_some(Ipv4Addr::new(127, 83, 17, 1))
    }
    fn set_coverage(&self, up: bool) {
        self.coverage.lock().unwrap().push(up);
    }
}

/// Reverse of the transcript escaping.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            match b[i + 1] {
                b'r' => out.push(b'\r'),
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'\\' => out.push(b'\\'),
                b'x' => {
                    out.push(u8::from_str_radix(&s[i + 2..i + 4], 16).unwrap());
                    i += 2;
                }
                other => panic!("bad escape {}", other as char),
            }
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn modem_plays_the_network_for_a_scripted_watch() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::start(SCALE);
    let ns = Arc::new(FakeNs::default());
    let mut dev = PtyDevice::new(WALL);
    let modem = VirtualModem::open(&dev.path, 115_200, clock, ns.clone(), dir.path()).unwrap();
    dev.release_slave();
    let log = modem.log();
    assert_eq!(*ns.coverage.lock().unwrap(), [true]);
    let mut sent: Vec<u8> = Vec::new();
    let mut say = |dev: &PtyDevice, bytes: &[u8]| {
        sent.extend_from_slice(bytes);
        dev.write(bytes);
    };

    // Start-up.
    say(&dev, b"AT\r");
    dev.expect("\r\nOK\r\n");
    say(&dev, b"AT+CPIN?\r");
    assert_eq!(dev.expect("OK\r\n"), "\r\n+CPIN: READY\r\n\r\nOK\r\n");
    say(&dev, b"AT+CREG?\r\n");
    assert_eq!(dev.expect("OK\r\n"), "\r\n+CREG: 0,1\r\n\r\nOK\r\n");
    say(&dev, b"AT+CREG=1\r");
    dev.expect("\r\nOK\r\n");
    say(&dev, b"AT+CSQ\r");
    assert_eq!(dev.expect("OK\r\n"), "\r\n+CSQ: 24,99\r\n\r\nOK\r\n");
    say(&dev, b"AT+CGSN\r");
    assert_eq!(dev.expect("\r\n+CME ERROR: 4\r\n"), "\r\n+CME ERROR: 4\r\n");
    assert_eq!(modem.registration(), Registration::Home);

    // Garbage, then an unknown command: nothing for the garbage, ERROR for the command.
    let mark = log.mark();
    say(&dev, b"\xff\xfe\x00\x01\x1b\r\n");
    say(&dev, b"AT+FOO=1\r");
    assert_eq!(dev.expect("\r\nERROR\r\n"), "\r\nERROR\r\n");
    rt.block_on(log.wait_for(mark, WAIT, |e| {
        *e == CellEvent::AtCommand {
            line: "AT+FOO=1".into(),
        }
    }))
    .expect("unknown command logged");

    // SMS from the watch.
    let mark = log.mark();
    say(&dev, b"AT+CMGS=\"+491701234567\"\r");
    dev.expect("\r\n> ");
    say(&dev, b"I am at school\x1a");
    assert_eq!(dev.expect("OK\r\n"), "\r\n+CMGS: 1\r\n\r\nOK\r\n");
    rt.block_on(log.wait_for(mark, WAIT, |e| {
        *e == CellEvent::SmsFromWatch {
            to: "+491701234567".into(),
            text: "I am at school".into(),
        }
    }))
    .expect("SmsFromWatch");

    // SMS to the watch.
    rt.block_on(modem.send_sms("+4915112345678", "Come home"))
        .unwrap();
    let cmt = dev.expect("Come home\r\n");
    let re = Regex::new(
        r#"^\r\n\+CMT: "\+4915112345678",,"\d\d/\d\d/\d\d,\d\d:\d\d:\d\d\+00"\r\nCome home\r\n$"#,
    )
    .unwrap();
    assert!(re.is_match(&cmt), "{cmt:?}");

    // Incoming call: RING + CLIP every 3 device seconds until the watch answers.
    let mark = log.mark();
    rt.block_on(modem.call_watch("+4930555")).unwrap();
    dev.expect("\r\nRING\r\n\r\n+CLIP: \"+4930555\",145\r\n");
    dev.expect("\r\nRING\r\n\r\n+CLIP: \"+4930555\",145\r\n");
    say(&dev, b"ATA\r");
    dev.expect("\r\nOK\r\n");
    let events: Vec<CellEvent> = {
        rt.block_on(log.wait_for(mark, WAIT, |e| matches!(e, CellEvent::WatchAnswered { .. })))
            .expect("answered");
        log.since(mark).into_iter().map(|r| r.value).collect()
    };
    assert!(events.contains(&CellEvent::CallToWatch {
        caller_id: "+4930555".into()
    }));
    assert!(events.contains(&CellEvent::WatchAnswered {
        caller_id: "+4930555".into()
    }));
    rt.block_on(modem.hang_up()).unwrap();
    dev.expect("\r\nNO CARRIER\r\n");

    // Outgoing calls, per answer mode.
    for (mode, ending) in [
        (
            CallAnswer::Answer,
            "\r\n+CLCC: 1,0,0,0,0,\"+4930123456\",145\r\n",
        ),
        (CallAnswer::Reject, "\r\nBUSY\r\n"),
        (CallAnswer::Ring, "\r\nNO ANSWER\r\n"),
    ] {
        modem.set_call_answer(mode);
        let mark = log.mark();
        say(&dev, b"ATD+4930123456;\r");
        assert_eq!(
            dev.expect("145\r\n"),
            "\r\nOK\r\n\r\n+CLCC: 1,0,2,0,0,\"+4930123456\",145\r\n"
        );
        dev.expect("\r\n+CLCC: 1,0,3,0,0,\"+4930123456\",145\r\n");
        dev.expect(ending);
        rt.block_on(log.wait_for(mark, WAIT, move |e| {
            *e == CellEvent::FarEnd {
                number: "+4930123456".into(),
                answer: mode,
            }
        }))
        .expect("far end decision logged");
        assert!(log.since(mark).iter().any(|r| r.value
            == CellEvent::WatchDialled {
                number: "+4930123456".into()
            }));
        if mode == CallAnswer::Answer {
            say(&dev, b"ATH\r");
            dev.expect("\r\nOK\r\n");
            rt.block_on(log.wait_for(mark, WAIT, |e| *e == CellEvent::WatchHungUp))
                .expect("hang-up logged");
        }
    }

    // DNS through the network.
    let mark = log.mark();
    say(&dev, b"AT+CGACT=1,1\r");
    dev.expect("\r\nOK\r\n");
    say(&dev, b"AT+QIDNSGIP=1,\"watch.kidcloud.example\"\r");
    assert_eq!(
        dev.expect("\"127.83.17.1\"\r\n"),
        "\r\nOK\r\n\r\n+QIURC: \"dnsgip\",0,1,600\r\n\r\n+QIURC: \"dnsgip\",\"127.83.17.1\"\r\n"
    );
    say(&dev, b"AT+QIDNSGIP=1,\"elsewhere.example\"\r");
    assert_eq!(
        dev.expect("565\r\n"),
        "\r\nOK\r\n\r\n+QIURC: \"dnsgip\",565\r\n"
    );
    rt.block_on(log.wait_for(mark, WAIT, |e| {
        *e == CellEvent::DnsQuery {
            host: "elsewhere.example".into(),
            answer: None,
        }
    }))
    .expect("failed query logged");
    assert!(log.since(mark).iter().any(|r| r.value
        == CellEvent::DnsQuery {
            host: "watch.kidcloud.example".into(),
            answer: Some("127.83.17.1".into())
        }));
    // The accepted data attach is an event of its own.
    assert!(log
        .since(mark)
        .iter()
        .any(|r| r.value == CellEvent::DataAttached { apn: None }));

    // Coverage loss: URC, name service told, the network refuses service.
    rt.block_on(modem.set_registration(Registration::Searching))
        .unwrap();
    dev.expect("\r\n+CREG: 2\r\n");
    assert_eq!(*ns.coverage.lock().unwrap(), [true, false]);
    assert_eq!(modem.registration(), Registration::Searching);
    say(&dev, b"AT+QIDNSGIP=1,\"watch.kidcloud.example\"\r");
    assert_eq!(
        dev.expect("565\r\n"),
        "\r\nOK\r\n\r\n+QIURC: \"dnsgip\",565\r\n"
    );
    let refused = log.mark();
    say(&dev, b"AT+CGACT=1,1\r");
    assert_eq!(dev.expect("30\r\n"), "\r\n+CME ERROR: 30\r\n");
    assert!(!log
        .since(refused)
        .iter()
        .any(|r| matches!(r.value, CellEvent::DataAttached { .. })));
    say(&dev, b"AT+CMGS=\"+491701234567\"\r");
    assert_eq!(dev.expect("\r\nERROR\r\n"), "\r\nERROR\r\n");
    assert!(rt.block_on(modem.call_watch("+4930555")).is_err());
    rt.block_on(modem.set_registration(Registration::Home))
        .unwrap();
    dev.expect("\r\n+CREG: 1\r\n");
    assert_eq!(*ns.coverage.lock().unwrap(), [true, false, true]);
    say(&dev, b"AT\r");
    dev.expect("\r\nOK\r\n");

    // Transcript: every byte in both directions, in order.
    let received = dev.received();
    let transcript = std::fs::read_to_string(dir.path().join("modem.log")).unwrap();
    let (mut from_watch, mut to_watch) = (Vec::new(), Vec::new());
    let line_re = Regex::new(r"^(\d+) ([<>]) (.*)$").unwrap();
    for line in transcript.lines() {
        let c = line_re
            .captures(line)
            .unwrap_or_else(|| panic!("transcript line {line:?}"));
        let bytes = unescape(&c[3]);
        if &c[2] == "<" {
            from_watch.extend(bytes)
        } else {
            to_watch.extend(bytes)
        }
    }
    assert_eq!(from_watch, sent);
    assert_eq!(to_watch, received);
}

#[test]
fn ring_interval_is_three_device_seconds() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::start(SCALE);
    let mut dev = PtyDevice::new(WALL);
    let modem = VirtualModem::open(
        &dev.path,
        115_200,
        clock,
        Arc::new(FakeNs::default()),
        dir.path(),
    )
    .unwrap();
    dev.release_slave();
    rt.block_on(modem.call_watch("0301234")).unwrap();
    for _ in 0..3 {
        dev.expect("\r\nRING\r\n\r\n+CLIP: \"0301234\",129\r\n");
    }
    dev.write(b"ATH\r");
    dev.expect("\r\nOK\r\n");
    rt.block_on(modem.log().wait_for(redrig::drivers::Mark(0), WAIT, |e| {
        *e == CellEvent::WatchHungUp
    }))
    .expect("rejection logged");
    let transcript = std::fs::read_to_string(dir.path().join("modem.log")).unwrap();
    let rings: Vec<u64> = transcript
        .lines()
        .filter(|l| l.ends_with(" > \\r\\nRING\\r\\n"))
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(rings.len(), 3, "{transcript}");
    for w in rings.windows(2) {
        // Never early; late only by scheduling (loose bound, not a performance check).
        assert!(w[1] - w[0] >= 3_000 && w[1] - w[0] < 9_000, "{rings:?}");
    }
}

#[test]
fn modem_line_gone_is_an_instrument_error() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::start(SCALE);
    let mut dev = PtyDevice::new(WALL);
    let modem = VirtualModem::open(
        &dev.path,
        115_200,
        clock,
        Arc::new(FakeNs::default()),
        dir.path(),
    )
    .unwrap();
    dev.release_slave();
    dev.write(b"AT\r");
    dev.expect("\r\nOK\r\n");
    dev.close_master();
    let status = modem.status();
    let err = rt
        .block_on(async { tokio::time::timeout(WALL, status.failed()).await })
        .expect("failure noticed");
    assert!(matches!(err, RigError::Instrument { .. }));
    assert!(matches!(
        rt.block_on(modem.send_sms("+49", "hi")),
        Err(RigError::Instrument { .. })
    ));
}

/// A line unplugged and plugged in again (a USB adapter pulled and put back, reached
/// through the same stable link): the reader reports the loss, the line is lost while
/// the port is gone, and it is opened again by itself and carries data once more.
#[test]
fn a_line_unplugged_and_plugged_in_again_is_opened_again() {
    use redrig::drivers::serial::{ReadEvent, SerialLine};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("console.tty");
    let pty =
        rt.block_on(async { redrig_virtual_lab::pty::Pty::open_linked(link.clone()).unwrap() });
    let line = SerialLine::open(link.to_str().unwrap(), 115_200).unwrap();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s2 = seen.clone();
    line.start_reader(move |ev| {
        let e = match ev {
            ReadEvent::Data(b) => format!("data {}", String::from_utf8_lossy(b)),
            ReadEvent::Closed(_) => "closed".to_string(),
            ReadEvent::Reopened => "reopened".to_string(),
        };
        s2.lock().unwrap().push(e);
    })
    .unwrap();
    let wait = |what: &str| {
        let start = Instant::now();
        loop {
            if seen.lock().unwrap().iter().any(|e| e.contains(what)) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no `{what}` in {:?}",
                seen.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    assert_eq!(pty.write_lossy(b"before\r\n"), 8);
    wait("before");
    let status = line.status();
    assert!(status.error().is_none());
    pty.unplug();
    wait("closed");
    // The loss is marked right after the consumer has heard of it.
    let start = Instant::now();
    while status.error().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never marked lost"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!link.exists(), "the link goes with the unplugged line");
    assert!(
        line.writer()
            .write_blocking(b"x", Duration::from_millis(100))
            .is_err(),
        "no write reaches an unplugged line"
    );
    rt.block_on(async { pty.plug().unwrap() });
    wait("reopened");
    assert!(status.error().is_none(), "usable again");
    assert_eq!(status.losses(), 1);
    assert_eq!(pty.write_lossy(b"after\r\n"), 7);
    wait("after");
    line.writer()
        .write_blocking(b"to the device", Duration::from_secs(2))
        .unwrap();
    let mut got = Vec::new();
    rt.block_on(async {
        let mut buf = [0u8; 64];
        while got.len() < 13 {
            let n = tokio::time::timeout(Duration::from_secs(20), pty.read(&mut buf))
                .await
                .expect("the write reached the plugged-in line")
                .unwrap();
            got.extend_from_slice(&buf[..n]);
        }
    });
    assert_eq!(got, b"to the device");
    line.close();
}

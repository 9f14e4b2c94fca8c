//! Emission interval jitter of the simulated GNSS receiver at 10 Hz.
//!
//! `SerialGnss` feeds a pseudo-terminal at 115200 baud, 10 Hz, `GP` talker, a still
//! position, on a device clock at scale 1 (device time = wall time). A reader thread on
//! the master side stamps (`Instant`) the arrival of the first byte of every epoch: the
//! `$` of its RMC line. With `pace_bytes` the driver writes the RMC line when its last
//! character would have left a UART, a fixed offset from the epoch (the RMC of a still
//! position has a constant length), so the intervals between RMC arrivals measure the
//! emission jitter; their deviation from 100 ms is reported (median, p99, max of the
//! absolute value), with the epochs the driver skipped. Target: p99 < 2 ms, reported,
//! not enforced.
//!
//! `GNSS_JITTER_EPOCHS` sets the number of intervals measured (default 600 = 60 s).
//! Arguments (`cargo bench` passes `--bench`) are ignored. The figures are also
//! written as JSON to `<target dir>/bench-gnss-jitter.json`.

mod support;
use redrig::clock::Clock;
use redrig::drivers::gnss::{GnssOptions, SerialGnss};
use redrig::drivers::Gnss;
use redrig::gnss::scene::GnssChange;
use redrig::wire::nmea::Talker;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::{percentile, target_dir};

const RATE_HZ: u32 = 10;
const BAUD: u32 = 115_200;
const PERIOD_MS: f64 = 1000.0 / RATE_HZ as f64;
/// Epochs left out at the start (the position was just set; threads settling).
const WARM_UP: usize = 5;
const TARGET_P99_MS: f64 = 2.0;

/// Stamp the arrival of every RMC line start read from `master` until `want` stamps
/// are collected (or the line closes).
fn stamp_rmc(master: OwnedFd, want: usize) -> Vec<Instant> {
    const RMC: &[u8] = b"$GPRMC";
    let mut stamps = Vec::with_capacity(want);
    let mut buf = [0u8; 4096];
    let mut at_line_start = true;
    // The start of the current line (up to 6 bytes) and when its first byte arrived.
    let mut head: Option<(Instant, Vec<u8>)> = None;
    while stamps.len() < want {
        let n = match nix::unistd::read(master.as_fd(), &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let now = Instant::now();
        for &b in &buf[..n] {
            if at_line_start && b == b'$' {
                head = Some((now, Vec::with_capacity(RMC.len())));
            }
            at_line_start = b == b'\n';
            if let Some((t, h)) = &mut head {
                h.push(b);
                if h.len() == RMC.len() {
                    if h.as_slice() == RMC {
                        stamps.push(*t);
                    }
                    head = None;
                }
            }
        }
    }
    stamps
}

fn main() {
    let epochs: usize = match std::env::var("GNSS_JITTER_EPOCHS") {
        Ok(v) => v
            .trim()
            .parse()
            .ok()
            .filter(|&n| n >= 1)
            .unwrap_or_else(|| panic!("GNSS_JITTER_EPOCHS={v:?}: expected a count ≥ 1")),
        Err(_) => 600,
    };

    let pty = nix::pty::openpty(None, None).expect("openpty");
    let path = nix::unistd::ttyname(pty.slave.as_fd())
        .expect("ttyname")
        .to_string_lossy()
        .into_owned();
    let dir = tempfile::tempdir().expect("temporary evidence directory");
    let clock = Clock::start(1.0);
    let options = GnssOptions {
        rate_hz: RATE_HZ,
        talker: Talker::Gp,
        zda: true,
        baud: BAUD,
        pace_bytes: true,
        ..GnssOptions::default()
    };
    let gnss = SerialGnss::open(&path, BAUD, clock, options, dir.path()).expect("open GNSS");
    drop(pty.slave); // the driver holds the slave now
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(gnss.apply(GnssChange::Still {
        lat: 52.520008,
        lon: 13.404954,
        alt_m: 40.0,
    }))
    .expect("still position");

    let want = WARM_UP + epochs + 1;
    let (tx, rx) = mpsc::channel();
    let master = pty.master;
    std::thread::spawn(move || {
        let _ = tx.send(stamp_rmc(master, want));
    });
    let budget =
        Duration::from_secs_f64(want as f64 * PERIOD_MS / 1000.0) + Duration::from_secs(30);
    let stamps = rx
        .recv_timeout(budget)
        .expect("the GNSS line went quiet: no RMC for too long");
    let skipped = gnss.skipped_epochs();
    let stalled = gnss.stalled_epochs();
    drop(gnss);
    assert!(
        stamps.len() == want,
        "the line closed after {} of {want} RMC sentences",
        stamps.len()
    );

    // Deviation of each interval from the nearest whole number of periods (an epoch
    // missing on the wire makes a 200 ms interval: counted apart, not as jitter).
    let mut missing = 0u64;
    let mut signed: Vec<f64> = Vec::with_capacity(epochs);
    for w in stamps[WARM_UP..].windows(2) {
        let ms = (w[1] - w[0]).as_secs_f64() * 1000.0;
        let k = (ms / PERIOD_MS).round().max(1.0);
        missing += k as u64 - 1;
        signed.push(ms - k * PERIOD_MS);
    }
    let mut abs: Vec<f64> = signed.iter().map(|d| d.abs()).collect();
    abs.sort_by(f64::total_cmp);
    let median = percentile(&abs, 50.0);
    let p99 = percentile(&abs, 99.0);
    let max = abs[abs.len() - 1];
    let mean = signed.iter().sum::<f64>() / signed.len() as f64;
    let met = p99 < TARGET_P99_MS;

    println!("GNSS emission jitter: {RATE_HZ} Hz, {BAUD} baud, pseudo-terminal, clock scale 1");
    println!("  {:<28} {:>10}", "intervals measured", signed.len());
    println!("  {:<28} {:>10}", "skipped epochs (driver)", skipped);
    println!("  {:<28} {:>10}", "stalled epochs (driver)", stalled);
    println!("  {:<28} {:>10}", "epochs missing on the wire", missing);
    println!("  {:<28} {:>10.3} ms", "median |jitter|", median);
    println!("  {:<28} {:>10.3} ms", "p99 |jitter|", p99);
    println!("  {:<28} {:>10.3} ms", "max |jitter|", max);
    println!("  {:<28} {:>10.4} ms", "mean signed deviation", mean);
    println!(
        "  target p99 < {TARGET_P99_MS} ms: {}",
        if met { "met" } else { "MISSED" }
    );

    let report = serde_json::json!({
        "rate_hz": RATE_HZ,
        "baud": BAUD,
        "clock_scale": 1.0,
        "intervals": signed.len(),
        "skipped_epochs": skipped,
        "stalled_epochs": stalled,
        "missing_on_wire": missing,
        "median_abs_jitter_ms": median,
        "p99_abs_jitter_ms": p99,
        "max_abs_jitter_ms": max,
        "mean_signed_deviation_ms": mean,
        "target_p99_ms": TARGET_P99_MS,
        "target_met": met,
    });
    let out = target_dir().join("bench-gnss-jitter.json");
    match std::fs::write(
        &out,
        serde_json::to_string_pretty(&report).expect("JSON") + "\n",
    ) {
        Ok(()) => println!("  written to {}", out.display()),
        Err(e) => eprintln!("cannot write {}: {e}", out.display()),
    }
}

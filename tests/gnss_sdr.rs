//! The RF-level GNSS backend with a stand-in for the signal simulator: the command it
//! starts gets the scene's motion as a gps-sdr-sim user-motion file, is restarted at
//! every change, and is gone when the rig drops the instrument.

use redrig::clock::Clock;
use redrig::drivers::gnss_sdr::SdrGnss;
use redrig::drivers::Gnss;
use redrig::gnss::geo;
use redrig::gnss::route::RouteLibrary;
use redrig::gnss::scene::{GnssChange, OutageKind};
use redrig::gnss::sdr::{read_motion, MotionFormat};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn wait_for_file(p: &Path) -> String {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(t) = std::fs::read_to_string(p) {
            if t.ends_with('\n') {
                return t;
            }
        }
        assert!(Instant::now() < until, "{} never appeared", p.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn alive(pid: i32) -> bool {
    // Reaped children are gone; a zombie would still answer signal 0.
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
fn motion_files_follow_the_scene_and_the_transmitter_is_restarted_and_stopped() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("got");
    std::fs::create_dir(&out).unwrap();
    let script = format!(
        "n=$(ls {o} | grep -c args); cp {{motion}} {o}/motion-$n.csv; echo \"$$ {{duration}} {{start_time}}\" > {o}/args-$n.txt; exec sleep 600",
        o = out.display()
    );
    let clock = Clock::start(1.0);
    let gnss = SdrGnss::open(
        vec!["sh".into(), "-c".into(), script],
        47.5,
        clock,
        &dir.path().join("evidence"),
    )
    .unwrap();

    // A still position: 300 s of motion at 10 Hz, all at the place.
    rt.block_on(gnss.apply(GnssChange::Still {
        lat: 52.520008,
        lon: 13.404954,
        alt_m: 40.0,
    }))
    .unwrap();
    let args0 = wait_for_file(&out.join("args-0.txt"));
    let fields: Vec<&str> = args0.split_whitespace().collect();
    let pid0: i32 = fields[0].parse().unwrap();
    assert_eq!(fields[1], "300.0");
    assert!(
        fields[2].contains('/') && fields[2].contains(','),
        "{args0}"
    );
    let m0 = read_motion(
        &std::fs::read_to_string(out.join("motion-0.csv")).unwrap(),
        MotionFormat::EcefCsv,
    )
    .unwrap();
    assert_eq!(m0.len(), 3000);
    for (_, lat, lon, h) in &m0 {
        assert!(geo::distance_m(*lat, *lon, 52.520008, 13.404954) < 0.01);
        assert!(
            (h - 87.5).abs() < 0.01,
            "ellipsoid height = MSL + geoid separation"
        );
    }

    // A route: the old transmitter is stopped, the new motion follows the route.
    let lib = RouteLibrary::load_dir(&redrig::config::fixtures_dir().join("routes")).unwrap();
    let route = lib.route("leaves-school-zone").unwrap().with_speed(5.0);
    rt.block_on(gnss.apply(GnssChange::Route(Arc::new(route.clone()))))
        .unwrap();
    let args1 = wait_for_file(&out.join("args-1.txt"));
    let pid1: i32 = args1.split_whitespace().next().unwrap().parse().unwrap();
    assert!(!alive(pid0), "the previous transmitter was stopped");
    let m1 = read_motion(
        &std::fs::read_to_string(out.join("motion-1.csv")).unwrap(),
        MotionFormat::EcefCsv,
    )
    .unwrap();
    assert_eq!(m1.len(), 3000);
    for (t, lat, lon, _) in m1.iter().step_by(50) {
        let s = route.sample(*t);
        let d = geo::distance_m(*lat, *lon, s.lat, s.lon);
        assert!(d < 0.1, "t={t}: {d} m from the route");
    }

    // Indoors: transmission stops and nothing new starts.
    rt.block_on(gnss.apply(GnssChange::Outage {
        kind: OutageKind::Indoors,
        secs: None,
    }))
    .unwrap();
    assert!(!alive(pid1));
    assert!(!out.join("args-2.txt").exists());

    // What the backend cannot do is refused, not faked.
    assert!(rt
        .block_on(gnss.apply(GnssChange::WeekRollover(true)))
        .is_err());

    // Back in the open; dropping the instrument stops the transmitter.
    rt.block_on(gnss.apply(GnssChange::Still {
        lat: 52.52,
        lon: 13.40,
        alt_m: 0.0,
    }))
    .unwrap();
    let args2 = wait_for_file(&out.join("args-2.txt"));
    let pid2: i32 = args2.split_whitespace().next().unwrap().parse().unwrap();
    assert!(alive(pid2));
    drop(gnss);
    assert!(!alive(pid2), "no transmitter left behind");
    let log = std::fs::read_dir(dir.path().join("evidence"))
        .unwrap()
        .count();
    assert!(log >= 4, "motion files and the command's log are evidence");
}

#[test]
fn redrig_gnss_exports_and_feeds_a_line_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let exe = env!("CARGO_BIN_EXE_redrig");
    // Export: gps-sdr-sim -x format, read back on the route.
    let file = dir.path().join("motion.csv");
    let o = std::process::Command::new(exe)
        .args([
            "gnss",
            "--route",
            "school-run",
            "--speed",
            "20",
            "--format",
            "llh",
        ])
        .arg("--export")
        .arg(&file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = read_motion(
        &std::fs::read_to_string(&file).unwrap(),
        MotionFormat::LlhCsv,
    )
    .unwrap();
    let lib = RouteLibrary::load_dir(&redrig::config::fixtures_dir().join("routes")).unwrap();
    let route = lib.route("school-run").unwrap().with_speed(20.0 / 3.6);
    assert_eq!(m.len(), (route.duration_s() * 10.0).ceil() as usize);
    let (t, lat, lon, _) = m[m.len() / 2];
    let s = route.sample(t);
    assert!(geo::distance_m(lat, lon, s.lat, s.lon) < 0.1);

    // Feed: NMEA on a pseudo-terminal for two seconds at 10 Hz.
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&pty.slave)
    ))
    .unwrap();
    let reader = {
        let master = std::fs::File::from(pty.master);
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = Vec::new();
            let mut m = master;
            let mut chunk = [0u8; 4096];
            while let Ok(n) = m.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf
        })
    };
    let o = std::process::Command::new(exe)
        .args(["gnss", "--place", "park", "--rate", "10", "--baud", "38400"])
        .args(["--seconds", "2", "--port"])
        .arg(&slave)
        .arg("--evidence")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    drop(pty.slave);
    let bytes = reader.join().unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let rmc: Vec<&str> = text.lines().filter(|l| l.starts_with("$GPRMC")).collect();
    assert!(
        rmc.len() >= 15,
        "{} RMC sentences in 2 s at 10 Hz",
        rmc.len()
    );
    let park = lib.place("park").unwrap();
    let fix = redrig::wire::nmea::parse(rmc[rmc.len() - 1]).unwrap();
    let (lat, lon) = fix.position().unwrap();
    assert!(geo::distance_m(lat, lon, park.lat, park.lon) < 0.5);
    let evidence = std::fs::read_to_string(dir.path().join("gnss.nmea")).unwrap();
    assert!(evidence.lines().filter(|l| l.contains("GPRMC")).count() >= rmc.len());
}

#[test]
fn the_strategy_home_is_the_place_called_home() {
    let lib = RouteLibrary::load_dir(&redrig::config::fixtures_dir().join("routes")).unwrap();
    let home = lib.place("home").unwrap();
    let h = redrig::strategy::HOME;
    assert_eq!((home.lat, home.lon, home.alt_m), (h.lat, h.lon, h.alt_m));
}

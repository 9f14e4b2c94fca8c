//! `redrig lab up`: a virtual lab started by hand, with the rig's network side playing
//! the cell, and a line-oriented shell on standard input to poke it. Without a
//! terminal (or at end of input) it simply runs until SIGINT/SIGTERM.

use crate::clock::Clock;
use crate::config::LoadedRig;
use crate::drivers::{Button, CallAnswer, IndicatorEvent, Position, Registration};
use crate::rig::Rig;
use crate::verdict::exit;
use std::path::Path;
use std::sync::Arc;
use tokio::io::AsyncBufReadExt;

const HELP: &str = "\
commands:
  power on|off                 supply to the watch
  press sos|power|call1|call2 [SECONDS]   press and hold a button (default 0.5 s)
  gnss LAT LON | gnss off      feed a fix at a position, or no fix
  gnss place NAME              feed a named place (fixtures/routes)
  gnss route NAME [KMH]        move the watch along a route
  sms FROM TEXT                an SMS to the watch from number FROM
  call FROM                    ring the watch presenting caller id FROM
  hangup                       end the network-side call
  answer|reject|ring           how the far end treats the watch's calls
  coverage home|roaming|searching|denied
  net latency MS | loss PERCENT | kbps N | outage on|off | clear
                               impair both directions of the data path (device time)
  net mitm self-signed|untrusted-ca HOST | net rogue HOST | net normal
                               an attacker on the path for HOST (every host: normal)
  net cut                      reset every open connection (the watch reconnects)
  net flows                    the flows so far, with TLS and interception outcome
  type TEXT                    send a line to the watch's console
  flash FILE                   write an image through the bootloader (power off first)
  wires                        print where every wire is
  quit";

/// `net …`: the data path by hand.
fn net(rig: &Rig, args: &[&str]) -> Result<(), String> {
    use crate::gateway::{Dir, ForgedCert, HostMode};
    let gw = &rig.gateway;
    let number = |what: &str| -> Result<f64, String> {
        args.get(1)
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or(format!("net {what} NUMBER"))
    };
    let both = |f: &dyn Fn(&mut crate::gateway::impair::Impairment)| -> Result<(), String> {
        for dir in [Dir::Up, Dir::Down] {
            let mut i = gw.impairment(dir);
            f(&mut i);
            gw.set_impairment(dir, i).map_err(|e| e.to_string())?;
        }
        println!("{}", gw.impairment(Dir::Up).describe());
        Ok(())
    };
    match args.first().copied() {
        Some("latency") => {
            let v = number("latency")?;
            both(&|i| i.latency_ms = v)
        }
        Some("loss") => {
            let v = number("loss")?;
            both(&|i| i.loss = v / 100.0)
        }
        Some("kbps") => {
            let v = number("kbps")?;
            both(&|i| i.bandwidth_bps = Some((v * 1000.0) as u64))
        }
        Some("outage") => {
            let on = args.get(1) == Some(&"on");
            both(&|i| i.outage = on)
        }
        Some("clear") => {
            gw.clear_impairments();
            Ok(())
        }
        Some(m @ ("mitm" | "rogue")) => {
            let (cert, host) = match (m, args.get(1), args.get(2)) {
                ("mitm", Some(c), Some(h)) => (ForgedCert::parse(c), *h),
                ("rogue", Some(h), None) => (Some(ForgedCert::SelfSigned), *h),
                _ => return Err("net mitm self-signed|untrusted-ca HOST | net rogue HOST".into()),
            };
            let cert = cert.ok_or("certificate: self-signed or untrusted-ca")?;
            let mode = if m == "mitm" {
                HostMode::Mitm { cert }
            } else {
                HostMode::Rogue { cert }
            };
            gw.set_host_mode(host, mode).map_err(|e| e.to_string())?;
            println!("{host}: {}", mode.describe());
            Ok(())
        }
        Some("normal") => {
            gw.clear_host_modes();
            Ok(())
        }
        Some("cut") => {
            gw.reset_flows();
            Ok(())
        }
        Some("flows") => {
            for f in gw.summaries() {
                let tls = match (&f.server_tls, &f.tls) {
                    (Some(s), _) => format!(
                        "{} {}",
                        s.version_name(),
                        s.cipher_suite_name().unwrap_or("?")
                    ),
                    (None, Some(t)) => format!("TLS offered {}", t.version_name()),
                    (None, None) => "clear text".into(),
                };
                let attack = f
                    .intercept
                    .as_ref()
                    .map(|i| {
                        format!(
                            " attacker {}: {:?}, read {} B",
                            i.role, i.handshake, i.plaintext_up
                        )
                    })
                    .unwrap_or_default();
                println!(
                    "#{} {:?} {}:{} up {} down {} {}{} {}",
                    f.id,
                    f.transport,
                    f.host,
                    f.port,
                    f.bytes_up,
                    f.bytes_down,
                    tls,
                    attack,
                    f.end.as_deref().unwrap_or("open")
                );
            }
            Ok(())
        }
        _ => {
            Err("net latency|loss|kbps|outage|clear|mitm|rogue|normal|cut|flows; type help".into())
        }
    }
}

/// Run the lab until quit / end of a terminal session / a signal.
pub async fn run(loaded: &LoadedRig, exe: &Path) -> i32 {
    if !loaded.is_virtual() {
        eprintln!("`lab up` needs a virtual rig (rig.kind: virtual)");
        return exit::USAGE;
    }
    let dir = match tempdir_for_lab() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cannot create an evidence directory: {e}");
            return exit::INCONCLUSIVE;
        }
    };
    let clock = Clock::start(loaded.rig.time.scale);
    let rig = match Rig::assemble(loaded, exe, clock, &dir).await {
        Ok(r) => Arc::new(r),
        Err(e) => {
            eprintln!("the lab did not start: {e}");
            return exit::INCONCLUSIVE;
        }
    };
    println!(
        "virtual lab up: device {} (time scale {})",
        loaded.device_name(),
        clock.scale
    );
    print_wires(&rig, &dir);
    println!("{HELP}");
    let _ = rig.gnss.set_position(Some(crate::strategy::HOME)).await;
    let _ = rig.cellular.set_registration(Registration::Home).await;

    // Echo what the watch does.
    let echo = {
        let rig = rig.clone();
        tokio::spawn(async move {
            let (mut c, mut i, mut n) = (
                rig.console.log().mark(),
                rig.indicators.log().mark(),
                rig.cellular.log().mark(),
            );
            loop {
                rig.clock.sleep(0.5 * rig.clock.scale.max(1.0)).await;
                for r in rig.console.log().since(c) {
                    println!("[{:>9}] console  {}", r.t, r.value.text);
                    c = crate::drivers::Mark(r.seq + 1);
                }
                for r in rig.indicators.log().since(i) {
                    match &r.value {
                        IndicatorEvent::Edge { line, level } => {
                            println!("[{:>9}] gpio     {line}={}", r.t, *level as u8)
                        }
                        IndicatorEvent::Screen { text } => println!("[{:>9}] screen   {text}", r.t),
                    }
                    i = crate::drivers::Mark(r.seq + 1);
                }
                for r in rig.cellular.log().since(n) {
                    if !matches!(r.value, crate::drivers::CellEvent::AtCommand { .. }) {
                        println!("[{:>9}] cell     {:?}", r.t, r.value);
                    }
                    n = crate::drivers::Mark(r.seq + 1);
                }
            }
        })
    };

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    loop {
        let line = tokio::select! {
            _ = crate::runner::shutdown_signal() => break,
            l = lines.next_line(), if stdin_open => l,
        };
        match line {
            Ok(Some(l)) => {
                if l.trim() == "quit" {
                    break;
                }
                if let Err(e) = command(&rig, &loaded.routes, l.trim()).await {
                    println!("error: {e}");
                }
            }
            _ => stdin_open = false,
        }
    }
    echo.abort();
    match Arc::try_unwrap(rig) {
        Ok(rig) => {
            let _ = rig.shutdown().await;
        }
        Err(rig) => drop(rig),
    }
    let _ = std::fs::remove_dir_all(&dir);
    exit::PASS
}

fn tempdir_for_lab() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("redrig-lab-up-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn print_wires(rig: &Rig, dir: &Path) {
    if let Some(w) = rig.lab().map(|l| l.wires()) {
        println!("wires (docs/virtual-hardware.md):");
        println!(
            "  console      {} (held by this shell; its lines are echoed here)",
            w.console.display()
        );
        println!("  gnss         {} (fed by this shell)", w.gnss.display());
        println!(
            "  modem        {} (this shell plays the network)",
            w.modem.display()
        );
        println!("  gpio         {}", w.gpio.display());
        println!("  flash drive  {}", w.flash_drive.display());
        println!("  debug port   {}", w.debug.display());
        println!(
            "  cloud        device {}  api {}",
            w.cloud_device, w.cloud_api
        );
    }
    println!("  evidence     {}", dir.display());
}

async fn command(
    rig: &Rig,
    routes: &crate::gnss::route::RouteLibrary,
    line: &str,
) -> Result<(), String> {
    let mut words = line.split_whitespace();
    let Some(cmd) = words.next() else {
        return Ok(());
    };
    let rest: Vec<&str> = words.collect();
    let e = |x: crate::error::RigError| x.to_string();
    match cmd {
        "help" => println!("{HELP}"),
        "power" => rig
            .power
            .set(rest.first() == Some(&"on"))
            .await
            .map_err(e)?,
        "press" => {
            let b = rest
                .first()
                .and_then(|b| Button::parse(b))
                .ok_or("press sos|power|call1|call2 [SECONDS]")?;
            let secs = rest.get(1).and_then(|s| s.parse().ok()).unwrap_or(0.5);
            rig.buttons.press(b, secs).await.map_err(e)?;
        }
        "gnss" => {
            if rest.first() == Some(&"off") {
                rig.gnss.set_position(None).await.map_err(e)?;
            } else if rest.first() == Some(&"place") {
                let name = rest.get(1).ok_or("gnss place NAME")?;
                let p = routes.place(name).ok_or_else(|| {
                    format!(
                        "no place `{name}`; known: {}",
                        routes.place_names().join(", ")
                    )
                })?;
                rig.gnss
                    .set_position(Some(Position {
                        lat: p.lat,
                        lon: p.lon,
                        alt_m: p.alt_m,
                    }))
                    .await
                    .map_err(e)?;
            } else if rest.first() == Some(&"route") {
                let name = rest.get(1).ok_or("gnss route NAME [KMH]")?;
                let r = routes.route(name).ok_or_else(|| {
                    format!(
                        "no route `{name}`; known: {}",
                        routes.route_names().join(", ")
                    )
                })?;
                let r = match rest.get(2).map(|s| s.parse::<f64>()) {
                    Some(Ok(kmh)) if kmh > 0.0 && kmh <= 1000.0 => r.with_speed(kmh / 3.6),
                    Some(_) => return Err("speed: expected km/h in (0, 1000]".into()),
                    None => r.clone(),
                };
                println!(
                    "route {name}: {:.0} m in {:.0} s",
                    r.length_m(),
                    r.duration_s()
                );
                rig.gnss
                    .apply(crate::gnss::scene::GnssChange::Route(std::sync::Arc::new(
                        r,
                    )))
                    .await
                    .map_err(e)?;
            } else {
                let lat = rest
                    .first()
                    .and_then(|s| s.parse().ok())
                    .ok_or("gnss LAT LON")?;
                let lon = rest
                    .get(1)
                    .and_then(|s| s.parse().ok())
                    .ok_or("gnss LAT LON")?;
                rig.gnss
                    .set_position(Some(Position {
                        lat,
                        lon,
                        alt_m: 40.0,
                    }))
                    .await
                    .map_err(e)?;
            }
        }
        "sms" => {
            let from = rest.first().ok_or("sms FROM TEXT")?;
            rig.cellular
                .send_sms(from, &rest[1..].join(" "))
                .await
                .map_err(e)?;
        }
        "call" => rig
            .cellular
            .call_watch(rest.first().ok_or("call FROM")?)
            .await
            .map_err(e)?,
        "hangup" => rig.cellular.hang_up().await.map_err(e)?,
        "answer" => rig.cellular.set_call_answer(CallAnswer::Answer),
        "reject" => rig.cellular.set_call_answer(CallAnswer::Reject),
        "ring" => rig.cellular.set_call_answer(CallAnswer::Ring),
        "coverage" => {
            let state = match rest.first().copied() {
                Some("home") => Registration::Home,
                Some("roaming") => Registration::Roaming,
                Some("searching") => Registration::Searching,
                Some("denied") => Registration::Denied,
                _ => return Err("coverage home|roaming|searching|denied".into()),
            };
            rig.cellular.set_registration(state).await.map_err(e)?;
        }
        "net" => net(rig, &rest)?,
        "type" => rig
            .console
            .send(&format!("{}\r\n", rest.join(" ")))
            .await
            .map_err(e)?,
        "flash" => {
            let f = rest.first().ok_or("flash FILE")?;
            println!("{:?}", rig.flasher.flash(Path::new(f)).await.map_err(e)?);
        }
        "wires" => print_wires(rig, Path::new("-")),
        other => return Err(format!("unknown command `{other}`; type help")),
    }
    Ok(())
}

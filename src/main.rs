//! `redrig` — the command line.
//!
//! Exit codes (CI pipelines depend on them):
//! 0 every scenario passed · 1 the device failed at least one requirement ·
//! 2 inconclusive: a rig/infrastructure error prevented a verdict ·
//! 3 usage or configuration error.

use clap::{Parser, Subcommand};
use redrig::verdict::exit;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "redrig",
    version,
    about = "Conformance test rig for children's smartwatches (RED, EN 18031, EN 303 645)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the scenarios against the device (default: the virtual lab and the
    /// conformant reference watch).
    Run {
        /// Rig configuration.
        #[arg(long, env = "REDRIG_RIG", default_value_os_t = default_rig())]
        rig: PathBuf,
        /// Device profile (a name in fixtures/devices/ or a path) instead of the rig's.
        #[arg(long)]
        dut: Option<String>,
        /// Tag expression, e.g. `@req:EN18031-1:SCM-3 and not @slow`.
        #[arg(long)]
        tags: Option<String>,
        /// Run directory (default: runs/<UTC time>-<device>/).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print only the final summary.
        #[arg(long, short)]
        quiet: bool,
        /// Run features and the scenarios in each in an order given by SEED; without
        /// SEED one is picked. The seed is printed and logged (run.log) so the order
        /// can be repeated. Without a SEED, put it after the feature paths.
        #[arg(long, value_name = "SEED", num_args = 0..=1)]
        shuffle: Option<Option<u64>>,
        /// Sign the run's evidence manifest with this Ed25519 lab key (PKCS#8 PEM,
        /// made by `redrig keygen`; it must lie outside the run directory).
        #[arg(long, env = "REDRIG_SIGN_KEY", value_name = "KEY")]
        sign_key: Option<PathBuf>,
        /// Feature files or directories (default: the whole library).
        features: Vec<PathBuf>,
    },
    /// Draw the HTML report of a run directory again from its files (results.json,
    /// events.jsonl, flows.jsonl, console logs). A run already has its report.html,
    /// which its manifest seals: give --out to write elsewhere.
    Report {
        run_dir: PathBuf,
        /// Where to write (default RUN_DIR/report.html, only if the run has none).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List the scenarios with their requirement tags.
    List {
        #[arg(long)]
        tags: Option<String>,
    },
    /// The requirement catalogue with the scenarios covering each requirement, the
    /// device profiles expecting its failure, and the coverage summary.
    Requirements {
        /// One JSON document instead of the table (shape in the README).
        #[arg(long)]
        json: bool,
    },
    /// Validate a rig configuration without touching hardware.
    Check {
        #[arg(long, env = "REDRIG_RIG", default_value_os_t = default_rig())]
        rig: PathBuf,
        #[arg(long)]
        dut: Option<String>,
        /// Also check that the configured serial ports exist.
        #[arg(long)]
        presence: bool,
    },
    /// Feed a place, a route or an NMEA recording to a GNSS receiver input line, or
    /// export a route as gps-sdr-sim user motion (see docs/gnss.md).
    #[command(group(clap::ArgGroup::new("what").required(true).args(["place", "route", "replay"])))]
    #[command(group(clap::ArgGroup::new("to").required(true).args(["port", "export"])))]
    Gnss {
        /// A named place from the routes directory.
        #[arg(long)]
        place: Option<String>,
        /// A route from the routes directory.
        #[arg(long)]
        route: Option<String>,
        /// Override the route's speeds (km/h).
        #[arg(long, requires = "route")]
        speed: Option<f64>,
        /// An NMEA recording to replay with its original pacing.
        #[arg(long)]
        replay: Option<PathBuf>,
        /// Routes and places directory.
        #[arg(long, default_value_os_t = redrig::config::fixtures_dir().join("routes"))]
        routes: PathBuf,
        /// Serial line of the receiver input (UART, USB adapter or pty).
        #[arg(long)]
        port: Option<String>,
        #[arg(long, default_value_t = 9600)]
        baud: u32,
        /// Epochs per second: 1, 5 or 10.
        #[arg(long, default_value_t = 1)]
        rate: u32,
        /// GP (GPS only) or GN (GPS, GLONASS, Galileo).
        #[arg(long, default_value = "GP")]
        talker: String,
        /// Feed (or export) this many seconds (default: the route's or recording's
        /// length; a place is fed until Ctrl-C).
        #[arg(long)]
        seconds: Option<f64>,
        /// Where the fed sentences are written (gnss.nmea).
        #[arg(long, default_value = ".")]
        evidence: PathBuf,
        /// Write gps-sdr-sim user motion to this file instead of feeding a line.
        #[arg(long)]
        export: Option<PathBuf>,
        /// Motion format: ecef (-u), llh (-x) or gga (-g).
        #[arg(long, default_value = "ecef")]
        format: String,
        /// Geoid separation (m) added to the routes' mean-sea-level altitudes.
        #[arg(long, default_value_t = 0.0)]
        geoid_sep: f64,
    },
    /// The rig's health check before a run: configuration, run lock, GPIO, serial
    /// ports, probes, loopback self-tests, the virtual lab. Exit 0 healthy, 2 not.
    Doctor {
        #[arg(long, env = "REDRIG_RIG", default_value_os_t = default_rig())]
        rig: PathBuf,
        #[arg(long)]
        dut: Option<String>,
        /// One JSON document instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// List attached debug probes and serial adapters with their stable identities,
    /// as a rig-file fragment.
    Scan {
        /// JSON instead of the YAML fragment.
        #[arg(long)]
        json: bool,
    },
    /// Write a firmware image (ELF, Intel HEX or BIN) through a debug probe, or only
    /// check that it fits the chip's flash.
    Flash {
        /// The image (default: the device profile's firmware image).
        image: Option<PathBuf>,
        /// Rig configuration (its instruments.flasher gives probe and chip).
        #[arg(long, env = "REDRIG_RIG", default_value_os_t = default_rig())]
        rig: PathBuf,
        #[arg(long)]
        dut: Option<String>,
        /// Probe selector VID:PID[:SERIAL] instead of the rig file's.
        #[arg(long)]
        probe: Option<String>,
        /// probe-rs chip name instead of the rig file's.
        #[arg(long)]
        chip: Option<String>,
        /// Load address of a BIN image.
        #[arg(long, value_parser = parse_address)]
        base: Option<u64>,
        /// Erase the whole chip first.
        #[arg(long)]
        erase_all: bool,
        /// Skip reading back what was written.
        #[arg(long)]
        no_verify: bool,
        /// Leave the core halted instead of resetting it.
        #[arg(long)]
        no_reset: bool,
        /// Only check the image against the chip's memory map; no probe needed.
        #[arg(long)]
        check: bool,
    },
    /// Press a button of a physical bench (hold, double press).
    Press {
        /// Button name as in instruments.buttons.pins (sos, power, call1, call2).
        button: String,
        #[arg(long, env = "REDRIG_RIG", default_value_os_t = default_rig())]
        rig: PathBuf,
        /// How long to hold it, in milliseconds.
        #[arg(long, default_value_t = 500)]
        ms: u64,
        /// Press twice.
        #[arg(long)]
        double: bool,
        /// Released time between the two presses of --double, in milliseconds.
        #[arg(long, default_value_t = 250)]
        gap_ms: u64,
        /// Append the timed actions to DIR/bench.log.
        #[arg(long)]
        evidence: Option<PathBuf>,
    },
    /// Switch the supply of a physical bench: on, off or cycle.
    Power {
        #[arg(value_parser = ["on", "off", "cycle"])]
        action: String,
        #[arg(long, env = "REDRIG_RIG", default_value_os_t = default_rig())]
        rig: PathBuf,
        /// Off time of a cycle, in milliseconds.
        #[arg(long, default_value_t = 2000)]
        off_ms: u64,
        /// Append the timed actions to DIR/bench.log.
        #[arg(long)]
        evidence: Option<PathBuf>,
    },
    /// Show a serial console with timestamps; lines on standard input are sent to
    /// it. Runs until Ctrl-C or --seconds.
    Console {
        /// Rig configuration (its instruments.console); --port takes precedence.
        #[arg(long, env = "REDRIG_RIG", default_value_os_t = default_rig())]
        rig: PathBuf,
        /// A port instead of the rig's: device path, by-id link or usb: selector.
        #[arg(long)]
        port: Option<String>,
        #[arg(long, default_value_t = 115200, requires = "port")]
        baud: u32,
        /// Stop after this many seconds.
        #[arg(long)]
        seconds: Option<f64>,
        /// Send this line first (repeatable).
        #[arg(long)]
        send: Vec<String>,
        /// Evidence directory (console-watch.raw/.log); default bench/<UTC time>/.
        #[arg(long)]
        evidence: Option<PathBuf>,
    },
    /// Make the lab's Ed25519 key pair for signing evidence manifests: the private key
    /// (PKCS#8 PEM, mode 0600) and the public key next to it (NAME.pub.pem).
    Keygen {
        /// Private key file [default: $XDG_CONFIG_HOME/redrig/lab-key.pem, else
        /// ~/.config/redrig/lab-key.pem].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace existing key files.
        #[arg(long)]
        force: bool,
    },
    /// Check a run directory against its signed manifest: every changed, missing and
    /// added file, and who signed. Exit 0 verified, 1 it does not verify, 3 no manifest
    /// or a bad key file. Without --key the signer is only reported by fingerprint.
    Verify {
        /// The run directory (holding manifest.json and manifest.sig).
        run_dir: PathBuf,
        /// The lab's public key (made by `redrig keygen`); the signature must be by it.
        #[arg(long, env = "REDRIG_LAB_PUBKEY", value_name = "PUBKEY")]
        key: Option<PathBuf>,
    },
    /// The virtual lab, by hand.
    Lab {
        #[command(subcommand)]
        command: LabCommand,
    },
    /// A simulator process of the virtual lab (started by the rig; see
    /// docs/virtual-hardware.md).
    #[command(hide = true)]
    LabProcess {
        kind: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
enum LabCommand {
    /// Start a virtual lab and print where every wire is; runs until Ctrl-C.
    Up {
        #[arg(long, env = "REDRIG_RIG", default_value_os_t = default_rig())]
        rig: PathBuf,
        #[arg(long)]
        dut: Option<String>,
    },
}

/// `0x1000`, `4096`.
fn parse_address(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("`{s}` is not an address: expected 0x08000000 or a decimal number"))
}

fn default_rig() -> PathBuf {
    redrig::config::fixtures_dir()
        .join("rigs")
        .join("virtual.yaml")
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => exit::USAGE,
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    if let Command::LabProcess { kind, args } = &cli.command {
        std::process::exit(redrig_virtual_lab::process_main(kind, args));
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            std::process::exit(exit::INCONCLUSIVE);
        }
    };
    let code = rt.block_on(dispatch(cli.command));
    // Do not wait for blocking reader threads of closed instruments.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    std::process::exit(code);
}

async fn dispatch(command: Command) -> i32 {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("redrig"));
    match command {
        Command::Run {
            rig,
            dut,
            tags,
            out,
            quiet,
            shuffle,
            sign_key,
            features,
        } => {
            let outcome = redrig::runner::run(redrig::runner::RunOptions {
                sign_key,
                rig,
                dut,
                tags,
                out,
                features,
                redrig_exe: exe,
                quiet,
                shuffle: shuffle.map(|s| s.unwrap_or_else(redrig::runner::order::random_seed)),
            })
            .await;
            outcome.exit_code
        }
        Command::Report { run_dir, out } => redrig::cli::report(&run_dir, out.as_deref()),
        Command::List { tags } => redrig::cli::list(tags.as_deref()),
        Command::Requirements { json } => redrig::cli::requirements(json),
        Command::Check { rig, dut, presence } => redrig::cli::check(&rig, dut.as_deref(), presence),
        Command::Gnss {
            place,
            route,
            speed,
            replay,
            routes,
            port,
            baud,
            rate,
            talker,
            seconds,
            evidence,
            export,
            format,
            geoid_sep,
        } => {
            use redrig::gnsscmd::{Sink, Source};
            let source = match (place, route, replay) {
                (Some(p), _, _) => Source::Place(p),
                (_, Some(r), _) => Source::Route {
                    name: r,
                    kmh: speed,
                },
                (_, _, Some(f)) => Source::Replay(f),
                _ => unreachable!("clap requires one source"),
            };
            let sink = match (export, port) {
                (Some(file), _) => Sink::Export {
                    file,
                    format,
                    geoid_sep,
                    seconds,
                },
                (None, Some(port)) => Sink::Port {
                    port,
                    baud,
                    rate_hz: rate,
                    talker,
                    seconds,
                    evidence,
                },
                _ => unreachable!("clap requires one sink"),
            };
            redrig::gnsscmd::gnss(routes, source, sink).await
        }
        Command::Doctor { rig, dut, json } => {
            redrig::doctor::doctor(&rig, dut.as_deref(), json, &exe).await
        }
        Command::Scan { json } => redrig::flashcmd::scan(json).await,
        Command::Flash {
            image,
            rig,
            dut,
            probe,
            chip,
            base,
            erase_all,
            no_verify,
            no_reset,
            check,
        } => {
            redrig::flashcmd::flash(redrig::flashcmd::FlashRequest {
                image,
                rig,
                dut,
                probe,
                chip,
                base,
                erase_all,
                verify: !no_verify,
                reset: !no_reset,
                check_only: check,
            })
            .await
        }
        Command::Press {
            button,
            rig,
            ms,
            double,
            gap_ms,
            evidence,
        } => {
            let how = redrig::bench::Press {
                hold: std::time::Duration::from_millis(ms),
                double,
                gap: std::time::Duration::from_millis(gap_ms),
            };
            redrig::bench::press(&rig, &button, how, evidence.as_deref()).await
        }
        Command::Power {
            action,
            rig,
            off_ms,
            evidence,
        } => match redrig::bench::PowerAction::parse(&action, off_ms) {
            Some(a) => redrig::bench::power(&rig, a, evidence.as_deref()).await,
            None => exit::USAGE,
        },
        Command::Console {
            rig,
            port,
            baud,
            seconds,
            send,
            evidence,
        } => {
            let target = match port {
                Some(port) => redrig::bench::ConsoleTarget {
                    port,
                    baud,
                    lock: None,
                },
                None => match redrig::bench::ConsoleTarget::from_rig(&rig) {
                    Ok(t) => t,
                    Err(code) => return code,
                },
            };
            let dir = redrig::bench::evidence_dir(evidence);
            redrig::bench::console(&target, seconds, &send, &dir).await
        }
        Command::Keygen { out, force } => redrig::bundle::keygen_command(out, force),
        Command::Verify { run_dir, key } => {
            redrig::bundle::verify_command(&run_dir, key.as_deref())
        }
        Command::Lab {
            command: LabCommand::Up { rig, dut },
        } => redrig::cli::lab_up(&rig, dut.as_deref(), &exe).await,
        Command::LabProcess { .. } => unreachable!("handled before the runtime starts"),
    }
}

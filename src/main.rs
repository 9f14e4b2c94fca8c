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
        #[arg(long, default_value_os_t = default_rig())]
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
        /// Feature files or directories (default: the whole library).
        features: Vec<PathBuf>,
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
        #[arg(long, default_value_os_t = default_rig())]
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
        #[arg(long, default_value_os_t = default_rig())]
        rig: PathBuf,
        #[arg(long)]
        dut: Option<String>,
    },
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
            features,
        } => {
            let outcome = redrig::runner::run(redrig::runner::RunOptions {
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
        Command::Lab {
            command: LabCommand::Up { rig, dut },
        } => redrig::cli::lab_up(&rig, dut.as_deref(), &exe).await,
        Command::LabProcess { .. } => unreachable!("handled before the runtime starts"),
    }
}

//! The scenario runner: cucumber embedded in the binary, options given
//! programmatically, one scenario at a time against one device.

pub mod order;
pub mod recorder;
pub mod world;

use crate::catalogue::Catalogue;
use crate::clock::Clock;
use crate::config;
use crate::evidence::{self, RunInfo};
use crate::features::FeatureIndex;
use crate::rig::Rig;
use crate::strategy::Strategy;
use crate::verdict::{self, exit, Verdict};
use cucumber::WriterExt as _;
use recorder::{Recorder, RecorderWriter, ScenarioRecord};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use world::{RigWorld, RunContext};

/// What `redrig run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub rig: PathBuf,
    pub dut: Option<String>,
    pub tags: Option<String>,
    pub out: Option<PathBuf>,
    /// Feature files or directories; empty = the whole library.
    pub features: Vec<PathBuf>,
    /// This executable (the built-in simulators are started from it).
    pub redrig_exe: PathBuf,
    pub quiet: bool,
    /// `--shuffle`: run features and scenarios in the order of this seed
    /// ([`order::SeededOrder`]); `None` = file order.
    pub shuffle: Option<u64>,
    /// `--sign-key`: the lab's Ed25519 key that signs `manifest.json`; `None` leaves
    /// the manifest unsigned.
    pub sign_key: Option<PathBuf>,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunOutcome {
    pub exit_code: i32,
    pub run_dir: Option<PathBuf>,
}

fn usage(msg: impl std::fmt::Display) -> RunOutcome {
    eprintln!("{msg}");
    RunOutcome {
        exit_code: exit::USAGE,
        run_dir: None,
    }
}

/// The scenario library's directory.
pub fn features_dir() -> PathBuf {
    Catalogue::default_path()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("features"))
}

/// Run the scenarios. Never panics on device input; every outcome is an exit code.
pub async fn run(opts: RunOptions) -> RunOutcome {
    let wall_start = std::time::Instant::now();
    let waited_before = crate::clock::time_waited();
    // 1. Everything is validated before anything moves.
    let loaded = match config::load_rig(&opts.rig, opts.dut.as_deref()) {
        Ok(l) => l,
        Err(e) => return usage(format!("configuration error:\n{e}")),
    };
    let catalogue = match Catalogue::load(Catalogue::default_path()) {
        Ok(c) => c,
        Err(e) => return usage(format!("requirement catalogue: {e}")),
    };
    let fdir = features_dir();
    let index = match FeatureIndex::scan(&fdir) {
        Ok(i) => i,
        Err(e) => return usage(format!("scenario library: {e}")),
    };
    let tag_filter = match opts
        .tags
        .as_deref()
        .map(crate::features::parse_tags)
        .transpose()
    {
        Ok(t) => t,
        Err(e) => return usage(format!("--tags: {e}")),
    };
    let inputs: Vec<PathBuf> = if opts.features.is_empty() {
        vec![fdir.clone()]
    } else {
        opts.features.clone()
    };
    for f in &inputs {
        if !f.exists() {
            return usage(format!("feature path {} does not exist", f.display()));
        }
    }
    let selected = index.select(&inputs, tag_filter.as_ref());
    if selected.is_empty() {
        return usage("no scenario matches the given features and --tags");
    }

    // 2. One rig, one run at a time.
    let _lock = match crate::lock::acquire(&loaded.lock_dir(), &loaded.rig.rig.name) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return RunOutcome {
                exit_code: exit::INCONCLUSIVE,
                run_dir: None,
            };
        }
    };

    // 3. The run directory and its first evidence.
    let started = time::OffsetDateTime::now_utc();
    let run_dir = opts
        .out
        .clone()
        .unwrap_or_else(|| evidence::default_run_dir(&started, &loaded));
    // The lab key is read before anything moves: a run that was asked to be signed
    // and cannot be is refused, not left unsigned.
    let sign_key = match opts
        .sign_key
        .as_deref()
        .map(|k| crate::bundle::load_signing_key(k, &run_dir))
        .transpose()
    {
        Ok(k) => k,
        Err(e) => return usage(format!("--sign-key: {e}")),
    };
    for w in sign_key.iter().flat_map(|k| k.warnings()) {
        eprintln!("warning: {w}");
    }
    // One run per directory: a record that mixed two runs' files would be sealed as one.
    if std::fs::read_dir(&run_dir).is_ok_and(|mut d| d.next().is_some()) {
        return usage(format!(
            "run directory {} is not empty: each run needs a directory of its own",
            run_dir.display()
        ));
    }
    if let Err(e) = std::fs::create_dir_all(&run_dir) {
        return usage(format!(
            "cannot create run directory {}: {e}",
            run_dir.display()
        ));
    }
    let log = Arc::new(evidence::RunLog::open(&run_dir));
    log.line(format!(
        "redrig {} run started; rig {} ({}); device profile {}",
        env!("CARGO_PKG_VERSION"),
        loaded.rig.rig.name,
        opts.rig.display(),
        loaded.device_path.display()
    ));
    if let Some(line) = order::describe(opts.shuffle) {
        if !opts.quiet {
            println!("{line}");
        }
        log.line(line);
    }
    if let Err(e) = evidence::write_effective_config(&run_dir, &loaded) {
        log.line(format!("cannot write the effective configuration: {e}"));
    }

    let clock = Clock::start(loaded.rig.time.scale);
    log.line(format!(
        "device clock {} (scale {})",
        clock.to_arg(),
        clock.scale
    ));
    let recorder = Arc::new(Recorder::default());
    let mut interrupted = false;

    // 4. Assemble the rig (start the virtual lab, open every instrument).
    let assembled = tokio::select! {
        r = Rig::assemble(&loaded, &opts.redrig_exe, clock, &run_dir) => Some(r),
        _ = shutdown_signal() => None,
    };
    let strategy_log;
    match assembled {
        None => {
            interrupted = true;
            log.line("interrupted while the rig was being assembled");
            strategy_log = Vec::new();
        }
        Some(Err(e)) => {
            log.line(format!("the rig could not be assembled: {e}"));
            eprintln!("rig error: {e}");
            for s in &selected {
                let mut r = ScenarioRecord::not_run(
                    &s.feature,
                    &s.file,
                    &s.name,
                    s.line,
                    s.tags.clone(),
                    "",
                );
                r.verdict = Verdict::Inconclusive;
                r.message = Some(format!(
                    "{}the rig could not be assembled: {e}",
                    world::StepFail::RIG_PREFIX
                ));
                recorder.push(r);
            }
            strategy_log = Vec::new();
        }
        Some(Ok(rig)) => {
            let rig = Arc::new(rig);
            let ctx = Arc::new(RunContext {
                loaded: loaded.clone(),
                rig: rig.clone(),
                clock,
                recorder: recorder.clone(),
                strategy: tokio::sync::Mutex::new(Strategy::new()),
                evidence_dir: run_dir.clone(),
            });
            world::install_context(Some(ctx.clone()));
            let quiet_hook = QuietPanics::install();
            let run_all = async {
                for input in &inputs {
                    let cli = cucumber::cli::Opts::<
                        cucumber::parser::basic::Cli,
                        cucumber::runner::basic::Cli,
                        cucumber::cli::Empty,
                        cucumber::cli::Empty,
                    > {
                        tags_filter: tag_filter.clone(),
                        ..Default::default()
                    };
                    let writer = RecorderWriter::new(recorder.clone(), &fdir, opts.quiet)
                        .with_log(log.clone())
                        .with_clock(clock)
                        .assert_normalized();
                    <RigWorld as cucumber::World>::cucumber::<PathBuf>()
                        .with_parser(order::SeededOrder::new(opts.shuffle, &fdir))
                        .max_concurrent_scenarios(1)
                        .after(|_, _, scenario, _, world| {
                            Box::pin(async move {
                                if let Some(w) = world {
                                    w.run_cleanups().await;
                                    if let Some(detail) = w.rig_fault().await {
                                        w.ctx.recorder.rig_fault(
                                            &scenario.name,
                                            scenario.position.line,
                                            detail,
                                        );
                                    }
                                }
                            })
                        })
                        .with_writer(writer)
                        .with_cli(cli)
                        .run(input.clone())
                        .await;
                }
            };
            tokio::select! {
                _ = run_all => {}
                _ = shutdown_signal() => {
                    interrupted = true;
                    log.line("interrupt received: stopping the running scenario");
                    recorder.abort_current("run interrupted (SIGINT/SIGTERM/SIGHUP)");
                }
            }
            drop(quiet_hook);
            world::install_context(None);
            strategy_log = ctx.strategy.lock().await.transitions.clone();
            drop(ctx);
            // Power the device down and stop the lab; every driver flushes its evidence.
            // A scenario's task being torn down may still hold the rig for a moment.
            let mut rig = rig;
            let mut waited = 0;
            loop {
                match Arc::try_unwrap(rig) {
                    Ok(r) => {
                        if let Err(e) = r.shutdown().await {
                            log.line(format!("rig shutdown: {e}"));
                        }
                        break;
                    }
                    Err(r) if waited < 50 => {
                        rig = r;
                        waited += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                    Err(r) => {
                        log.line(
                            "rig still referenced at shutdown; its instruments close when released",
                        );
                        r.journal.close();
                        break;
                    }
                }
            }
        }
    }

    // 5. Whatever did not run is said so.
    let recorded = recorder.scenarios();
    for s in &selected {
        if !recorded
            .iter()
            .any(|r| r.file == s.file && (r.line == s.line || r.name == s.name))
        {
            let why = if interrupted {
                "the run was interrupted before this scenario"
            } else {
                "not reached"
            };
            recorder.push(ScenarioRecord::not_run(
                &s.feature,
                &s.file,
                &s.name,
                s.line,
                s.tags.clone(),
                why,
            ));
        }
    }
    let scenarios = recorder.scenarios();
    let code = verdict::exit_code(scenarios.iter().map(|s| s.verdict));
    let info = RunInfo {
        loaded: &loaded,
        rig_file: &opts.rig,
        started,
        finished: time::OffsetDateTime::now_utc(),
        clock,
        interrupted,
        exit_code: code,
        tags: opts.tags.clone(),
        shuffle: opts.shuffle,
        transitions: strategy_log,
        wall: wall_start.elapsed(),
        waited: crate::clock::time_waited().saturating_sub(waited_before),
    };
    if let Err(e) = evidence::write_reports(&run_dir, &info, &scenarios, &catalogue) {
        log.line(format!("writing reports failed: {e}"));
        eprintln!("writing reports failed: {e}");
    }
    let report = run_dir.join(crate::report::REPORT_FILE);
    let signer = sign_key.as_ref().map(|k| k.fingerprint());
    let drawn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        crate::report::write(&run_dir, &report, signer.as_deref())
    }));
    match drawn {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            log.line(format!("writing the HTML report failed: {e}"));
            eprintln!("writing the HTML report failed: {e}");
        }
        Err(_) => {
            log.line("writing the HTML report failed: the report code panicked");
            eprintln!("writing the HTML report failed: the report code panicked");
        }
    }
    // The run log's last line, then the seal: nothing is written after it.
    log.line(format!("run finished: exit code {code}"));
    drop(log);
    let sealed = seal_settled(
        &run_dir,
        &evidence::seal_info(&info, &run_dir),
        sign_key.as_ref(),
    )
    .await;
    // A run asked to be signed whose evidence could not be sealed is no record: the
    // rig failed, whatever the device did.
    let code = if sealed.is_err() && sign_key.is_some() {
        eprintln!("the run was asked to be signed and its evidence is not sealed: inconclusive");
        exit::INCONCLUSIVE
    } else {
        code
    };
    if !opts.quiet {
        print!(
            "{}",
            evidence::summary_text(&info, &scenarios, &catalogue, &run_dir)
        );
        println!("report: {}", report.display());
    }
    match &sealed {
        Ok(s) => {
            if !opts.quiet {
                match &s.signed_by {
                    Some(f) => println!(
                        "manifest: {} files, {} bytes, signed by lab key {f}",
                        s.files, s.bytes
                    ),
                    None => println!(
                        "manifest: {} files, {} bytes, NOT signed (give --sign-key; make a key with `redrig keygen`)",
                        s.files, s.bytes
                    ),
                }
            }
        }
        Err(e) => eprintln!("sealing the evidence failed: {e}"),
    }
    RunOutcome {
        exit_code: code,
        run_dir: Some(run_dir),
    }
}

/// Seal the run directory, then check the seal at once: a file that changed or
/// appeared in between (a late writer of a closing instrument) means sealing again,
/// up to three times, a second apart. If the directory does not settle, the seal
/// fails rather than describe files that are no longer there as they are.
async fn seal_settled(
    run_dir: &Path,
    info: &crate::bundle::SealInfo,
    key: Option<&crate::bundle::LabKey>,
) -> Result<crate::bundle::Sealed, crate::bundle::BundleError> {
    let mut attempt = 0;
    loop {
        let sealed = crate::bundle::seal(run_dir, info, key)?;
        let report = crate::bundle::verify(run_dir, key.map(|k| k.verifying_key()).as_ref())?;
        if report.changed.is_empty() && report.missing.is_empty() && report.added.is_empty() {
            return Ok(sealed);
        }
        attempt += 1;
        if attempt >= 3 {
            let mut moving: Vec<String> = report.changed.iter().map(|c| c.path.clone()).collect();
            moving.extend(report.missing.iter().cloned());
            moving.extend(report.added.iter().cloned());
            return Err(crate::bundle::BundleError::Unsupported {
                path: run_dir.to_path_buf(),
                reason: format!("files still changing after sealing: {}", moving.join(", ")),
            });
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// Resolves on SIGINT, SIGTERM or SIGHUP (a CI runner cancelling the job, Ctrl-C, a
/// closed terminal or SSH session): each ends a run the same orderly way.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut streams = Vec::new();
    for kind in [
        SignalKind::terminate(),
        SignalKind::interrupt(),
        SignalKind::hangup(),
    ] {
        if let Ok(s) = signal(kind) {
            streams.push(s);
        }
    }
    if streams.is_empty() {
        return std::future::pending().await;
    }
    let waits = streams.iter_mut().map(|s| Box::pin(s.recv()));
    futures::future::select_all(waits).await;
}

type PanicHook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;

/// While a run is going, panics inside steps are results (inconclusive verdicts in the
/// report), not noise on the terminal.
struct QuietPanics {
    previous: Option<PanicHook>,
}

impl QuietPanics {
    fn install() -> QuietPanics {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        QuietPanics {
            previous: Some(previous),
        }
    }
}

impl Drop for QuietPanics {
    fn drop(&mut self) {
        if let Some(p) = self.previous.take() {
            std::panic::set_hook(p);
        }
    }
}

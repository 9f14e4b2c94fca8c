//! RF-level GNSS through an external signal simulator (`instruments.gnss.backend: sdr`,
//! `docs/gnss.md`).
//!
//! The watch's own receiver is fed real L1 signals from a software-defined radio in a
//! shielded box. The rig does not generate RF itself: at every scene change it writes
//! the scene's motion for the next [`WINDOW_S`] seconds as a gps-sdr-sim user-motion
//! file (`-u`, ECEF at 10 Hz) into the evidence directory and (re)starts the
//! configured command with these placeholders replaced:
//!
//! | placeholder | value |
//! |---|---|
//! | `{motion}` | path of the motion file |
//! | `{duration}` | its length in seconds |
//! | `{start_time}` | the scene's UTC at the first sample, `YYYY/MM/DD,hh:mm:ss` (gps-sdr-sim `-T`) |
//!
//! A typical command is `["sh", "-c", "gps-sdr-sim -e brdc.n -u {motion} -T {start_time} -b 8 -o - | hackrf_transfer -t - -f 1575420000 -s 2600000 -a 1 -x 0"]`.
//! The command runs in its own process group, killed (SIGTERM, then SIGKILL) at the
//! next change and when the rig shuts down; its output goes to `gnss-sdr.log`.
//!
//! What the RF path cannot do: an outage or jamming stops transmission (the motion
//! file ends where the sky goes away; no partial attenuation), and week-number
//! rollover and NMEA replay are refused — they are properties of the receiver's
//! output, which this backend does not write.
//!
//! Not exercised against a radio here: tests run the same code with a stand-in
//! command that records what it was given.

use super::{EventLog, FedEpoch, Gnss, Position};
use crate::clock::{Clock, DeviceMs};
use crate::error::{RigError, RigResult};
use crate::gnss::replay::Recording;
use crate::gnss::route::Sample;
use crate::gnss::scene::{GnssChange, Scene};
use crate::gnss::sdr::{self, MotionFormat, GPS_SDR_SIM_MAX_SAMPLES};
use async_trait::async_trait;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Seconds of motion written per change (gps-sdr-sim's default limit at 10 Hz).
pub const WINDOW_S: f64 = GPS_SDR_SIM_MAX_SAMPLES as f64 / 10.0;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct State {
    scene: Scene,
    child: Option<Child>,
    generation: u32,
    /// Device time until which the current motion file transmits.
    transmitting_until: DeviceMs,
}

struct Shared {
    clock: Clock,
    log: EventLog<String>,
    fed: EventLog<FedEpoch>,
    state: Mutex<State>,
}

/// GNSS through a signal simulator and an SDR.
pub struct SdrGnss {
    shared: Arc<Shared>,
    command: Vec<String>,
    geoid_sep: f64,
    dir: PathBuf,
    output: File,
    _stop: std::sync::mpsc::Sender<()>,
}

impl SdrGnss {
    pub fn open(
        command: Vec<String>,
        geoid_sep: f64,
        clock: Clock,
        evidence_dir: &Path,
    ) -> RigResult<Arc<SdrGnss>> {
        if command.is_empty() {
            return Err(RigError::Config("gnss sdr: empty command".into()));
        }
        std::fs::create_dir_all(evidence_dir)?;
        let output = File::create(evidence_dir.join("gnss-sdr.log"))?;
        let shared = Arc::new(Shared {
            clock,
            log: EventLog::new(clock, 10_000),
            fed: EventLog::new(clock, 40_000),
            state: Mutex::new(State {
                scene: Scene::new(),
                child: None,
                generation: 0,
                transmitting_until: 0,
            }),
        });
        // One record per device second of what is on the air.
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let s = shared.clone();
        std::thread::Builder::new()
            .name("gnss sdr".into())
            .spawn(move || loop {
                match stop_rx.recv_timeout(clock.wall(1.0)) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                let t = clock.now();
                let st = lock(&s.state);
                let obs = st.scene.observe(t, clock.utc_ms(t));
                let on_air = st.child.is_some() && t < st.transmitting_until;
                let pos = obs.position.map(|p| Position {
                    lat: p.lat,
                    lon: p.lon,
                    alt_m: p.alt_m,
                });
                drop(st);
                s.fed.push_at(
                    t,
                    FedEpoch {
                        utc_ms: obs.utc_ms,
                        fix: pos.filter(|_| on_air),
                        position: pos,
                    },
                );
            })
            .map_err(|e| RigError::instrument("gnss", format!("SDR thread: {e}")))?;
        Ok(Arc::new(SdrGnss {
            shared,
            command,
            geoid_sep,
            dir: evidence_dir.to_path_buf(),
            output,
            _stop: stop_tx,
        }))
    }

    /// Samples of the scene from `now` while the sky is open, at 10 Hz.
    fn motion(scene: &Scene, clock: &Clock, now: DeviceMs) -> Vec<(f64, Sample)> {
        let mut out = Vec::new();
        for k in 0..GPS_SDR_SIM_MAX_SAMPLES {
            let t = now + k as u64 * 100;
            let obs = scene.observe(t, clock.utc_ms(t));
            match obs.position {
                Some(p) if !obs.blocked && obs.attenuation_db < 10.0 => {
                    out.push((k as f64 / 10.0, p))
                }
                _ => break,
            }
        }
        out
    }

    /// Stop the transmitter and start one for the scene from device time `now`.
    fn restart(&self, st: &mut State, now: DeviceMs) -> RigResult<()> {
        if let Some(child) = st.child.take() {
            stop_child(child);
            self.shared.log.push("transmission stopped".into());
        }
        let clock = self.shared.clock;
        let samples = Self::motion(&st.scene, &clock, now);
        if samples.is_empty() {
            self.shared
                .log
                .push("no signal: nothing to transmit".into());
            return Ok(());
        }
        st.generation += 1;
        let path = self.dir.join(format!("gnss-motion-{}.csv", st.generation));
        let text = sdr::write_motion(&samples, MotionFormat::EcefCsv, self.geoid_sep, 0.0);
        std::fs::write(&path, text)?;
        let duration = samples.len() as f64 / 10.0;
        let utc = st.scene.observe(now, clock.utc_ms(now)).utc_ms;
        let start_time = time::OffsetDateTime::from_unix_timestamp(utc.div_euclid(1000))
            .map(|t| {
                format!(
                    "{:04}/{:02}/{:02},{:02}:{:02}:{:02}",
                    t.year(),
                    u8::from(t.month()),
                    t.day(),
                    t.hour(),
                    t.minute(),
                    t.second()
                )
            })
            .unwrap_or_default();
        let argv: Vec<String> = self
            .command
            .iter()
            .map(|a| {
                a.replace("{motion}", &path.to_string_lossy())
                    .replace("{duration}", &format!("{duration:.1}"))
                    .replace("{start_time}", &start_time)
            })
            .collect();
        let out = self.output.try_clone()?;
        let err = self.output.try_clone()?;
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| {
                RigError::instrument("gnss", format!("cannot start `{}`: {e}", argv[0]))
            })?;
        self.shared.log.push(format!(
            "transmitting {} ({} samples, {duration:.1} s) with pid {}: {}",
            path.display(),
            samples.len(),
            child.id(),
            argv.join(" ")
        ));
        st.child = Some(child);
        st.transmitting_until = now + (duration * 1000.0) as u64;
        Ok(())
    }
}

/// SIGTERM the child's process group, SIGKILL after a second, reap it.
fn stop_child(mut child: Child) {
    use nix::sys::signal::{killpg, Signal};
    use nix::unistd::Pid;
    let pgid = Pid::from_raw(child.id() as i32);
    let _ = killpg(pgid, Signal::SIGTERM);
    for _ in 0..20 {
        if let Ok(Some(_)) = child.try_wait() {
            let _ = killpg(pgid, Signal::SIGKILL);
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = killpg(pgid, Signal::SIGKILL);
    let _ = child.wait();
}

impl Drop for SdrGnss {
    fn drop(&mut self) {
        if let Some(child) = lock(&self.shared.state).child.take() {
            stop_child(child);
        }
    }
}

#[async_trait]
impl Gnss for SdrGnss {
    async fn apply(&self, change: GnssChange) -> RigResult<()> {
        if let GnssChange::WeekRollover(true) = change {
            return Err(RigError::Config(
                "the sdr GNSS backend cannot simulate a receiver's week-number rollover (it is in the receiver's output, not in the signal)".into(),
            ));
        }
        let mut st = lock(&self.shared.state);
        let t = self.shared.clock.now();
        st.scene.apply(change, t, self.shared.clock.utc_ms(t));
        self.restart(&mut st, t)
    }

    async fn replay(&self, _recording: Arc<Recording>) -> RigResult<()> {
        Err(RigError::Config(
            "the sdr GNSS backend cannot replay NMEA recordings (use a serial GNSS backend)".into(),
        ))
    }

    fn log(&self) -> &EventLog<String> {
        &self.shared.log
    }

    fn fed(&self) -> &EventLog<FedEpoch> {
        &self.shared.fed
    }
}

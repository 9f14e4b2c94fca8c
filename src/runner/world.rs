//! The cucumber world: what a scenario's steps share, and how steps fail.

use super::recorder::{Measurement, Recorder};
use crate::clock::{Clock, DeviceMs};
use crate::config::LoadedRig;
use crate::error::{RigError, RigResult};
use crate::rig::Rig;
use crate::strategy::Strategy;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// How a step fails. The prefix of its message is what the recorder classifies.
#[derive(Debug)]
pub enum StepFail {
    /// The device did not meet the requirement: a `fail` verdict.
    Device(String),
    /// The rig could not do its job: an `inconclusive` verdict.
    Rig(String),
    /// The device declares it lacks what the scenario needs: `not-applicable`.
    NotApplicable(String),
}

impl StepFail {
    pub const DEVICE_PREFIX: &'static str = "DEVICE FAIL: ";
    pub const RIG_PREFIX: &'static str = "RIG ERROR: ";
    pub const NA_PREFIX: &'static str = "NOT APPLICABLE: ";
}

impl std::fmt::Display for StepFail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepFail::Device(m) => write!(f, "{}{m}", Self::DEVICE_PREFIX),
            StepFail::Rig(m) => write!(f, "{}{m}", Self::RIG_PREFIX),
            StepFail::NotApplicable(m) => write!(f, "{}{m}", Self::NA_PREFIX),
        }
    }
}

impl From<RigError> for StepFail {
    fn from(e: RigError) -> Self {
        StepFail::Rig(e.to_string())
    }
}

pub type StepResult = Result<(), StepFail>;

/// A device failure.
pub fn device_fail<T>(msg: impl Into<String>) -> Result<T, StepFail> {
    Err(StepFail::Device(msg.into()))
}

/// A rig failure.
pub fn rig_fail<T>(msg: impl Into<String>) -> Result<T, StepFail> {
    Err(StepFail::Rig(msg.into()))
}

/// Everything a run shares across scenarios.
pub struct RunContext {
    pub loaded: LoadedRig,
    pub rig: Arc<Rig>,
    pub clock: Clock,
    pub recorder: Arc<Recorder>,
    pub strategy: tokio::sync::Mutex<Strategy>,
    pub evidence_dir: PathBuf,
}

static CONTEXT: RwLock<Option<Arc<RunContext>>> = RwLock::new(None);

/// Install the context the next scenarios' worlds are built from.
pub fn install_context(ctx: Option<Arc<RunContext>>) {
    *CONTEXT.write().unwrap() = ctx;
}

/// A scenario's world.
#[derive(cucumber::World)]
#[world(init = Self::create)]
pub struct RigWorld {
    pub ctx: Arc<RunContext>,
    /// Device time at which the scenario started.
    pub started: DeviceMs,
    /// API tokens by account role (`parent`, `stranger`).
    pub tokens: HashMap<String, String>,
    /// The watch's id in the backend, as the parent sees it.
    pub watch_id: Option<String>,
    /// The last API answer a step received.
    pub last_response: Option<crate::drivers::ApiResponse>,
    /// Device time of the last action a latency is measured from.
    pub action_at: Option<DeviceMs>,
    /// The position the rig feeds now.
    pub position: Option<crate::drivers::Position>,
    /// Free-form values steps hand to later steps.
    pub scratch: HashMap<String, String>,
    /// What the rig must undo when the scenario ends, passed or not (last first):
    /// a step that changes lasting device state registers how to put it back, so the
    /// next scenario starts from a known state even after a failure.
    pub cleanups: Vec<Cleanup>,
    /// The rig's fault counts by instrument when the scenario started
    /// ([`Rig::fault_counts`]).
    pub fault_counts_at_start: Vec<(&'static str, u64)>,
}

/// One undo action, run by the runner after the scenario (see [`RigWorld::cleanups`]).
pub struct Cleanup {
    /// What it does, for the run log.
    pub what: String,
    pub run: CleanupFn,
}

/// The body of a [`Cleanup`].
pub type CleanupFn = Box<
    dyn FnOnce(Arc<RunContext>) -> futures::future::BoxFuture<'static, RigResult<()>> + Send + Sync,
>;

impl RigWorld {
    /// Register an undo action for the end of the scenario.
    pub fn on_scenario_end<F, Fut>(&mut self, what: impl Into<String>, f: F)
    where
        F: FnOnce(Arc<RunContext>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = RigResult<()>> + Send + 'static,
    {
        self.cleanups.push(Cleanup {
            what: what.into(),
            run: Box::new(move |ctx| Box::pin(f(ctx))),
        });
    }

    /// Run the registered undo actions, last first; failures are logged (the next
    /// scenario's bring-up then finds out whether the device is usable).
    pub async fn run_cleanups(&mut self) {
        while let Some(c) = self.cleanups.pop() {
            let ctx = self.ctx.clone();
            match (c.run)(ctx).await {
                Ok(()) => self.note(format!("after the scenario: {}", c.what)),
                Err(e) => self.note(format!("after the scenario: {} failed: {e}", c.what)),
            }
        }
    }
}

impl std::fmt::Debug for RigWorld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RigWorld")
            .field("started", &self.started)
            .field("watch_id", &self.watch_id)
            .finish_non_exhaustive()
    }
}

impl RigWorld {
    fn create() -> Result<RigWorld, RigError> {
        let ctx = CONTEXT
            .read()
            .unwrap()
            .clone()
            .ok_or_else(|| RigError::Other("no run context installed".into()))?;
        let started = ctx.clock.now();
        let fault_counts_at_start = ctx.rig.fault_counts();
        Ok(RigWorld {
            ctx,
            started,
            tokens: HashMap::new(),
            watch_id: None,
            last_response: None,
            action_at: None,
            position: None,
            scratch: HashMap::new(),
            cleanups: Vec::new(),
            fault_counts_at_start,
        })
    }

    /// Why the scenario's verdict cannot be trusted, if the rig had an instrument
    /// fault while it ran (a line lost, even if it came back) or is faulty now.
    /// A recovery by the strategy that began with no fault newer than the scenario's
    /// start (it recovered from an earlier scenario's faults) excuses what it counted
    /// up to its end; one that began after a fault in this scenario excuses nothing.
    pub async fn rig_fault(&self) -> Option<String> {
        let rig = &self.ctx.rig;
        let now = rig.check().err();
        let counts = rig.fault_counts();
        let at_start: u64 = self.fault_counts_at_start.iter().map(|(_, n)| n).sum();
        let baseline = match self.ctx.strategy.lock().await.last_recovery() {
            Some((began, done)) if began <= at_start => at_start.max(done),
            _ => at_start,
        };
        let lost = counts
            .iter()
            .map(|(_, n)| n)
            .sum::<u64>()
            .saturating_sub(baseline);
        // Which instruments: those whose count grew since the scenario began.
        let which: Vec<String> = counts
            .into_iter()
            .filter_map(|(name, n)| {
                let before = self
                    .fault_counts_at_start
                    .iter()
                    .find(|(b, _)| *b == name)
                    .map_or(0, |(_, b)| *b);
                (n > before).then(|| format!("{name} ×{}", n - before))
            })
            .collect();
        match (lost, now) {
            (0, None) => None,
            (0, Some(e)) => Some(format!("an instrument is faulty: {e}")),
            (n, None) => Some(format!(
                "{n} instrument connection(s) lost during the scenario ({}), since restored",
                which.join(", ")
            )),
            (n, Some(e)) => Some(format!(
                "{n} instrument connection(s) lost during the scenario ({}): {e}",
                which.join(", ")
            )),
        }
    }

    pub fn rig(&self) -> &Rig {
        &self.ctx.rig
    }

    pub fn clock(&self) -> &Clock {
        &self.ctx.clock
    }

    pub fn now(&self) -> DeviceMs {
        self.ctx.clock.now()
    }

    /// Record a measurement; returns whether it is within its limit.
    pub fn measure(&self, name: &str, value: f64, unit: &str, max: Option<f64>) -> bool {
        let ok = max.is_none_or(|m| value <= m);
        self.ctx.recorder.measure(Measurement {
            name: name.to_string(),
            value,
            unit: unit.to_string(),
            limit: max.map(|m| format!("<= {m}")),
            outcome: if ok { "pass" } else { "fail" },
        });
        ok
    }

    pub fn note(&self, text: impl Into<String>) {
        self.ctx.recorder.note(text);
    }
}

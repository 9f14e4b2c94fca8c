//! Turns cucumber's event stream into scenario records with rig verdicts.
//!
//! cucumber only knows passed / failed / skipped. The rig needs more: a step reports
//! *how* it failed through the prefix of its error ([`super::world::StepFail`]), and
//! this writer maps that to `fail`, `inconclusive` or `not-applicable`. Anything that
//! is not an explicit device failure — a panic, an undefined step, a hook error — is a
//! rig problem and becomes `inconclusive`: the rig never blames the device for its own
//! faults.

use super::world::StepFail;
use crate::verdict::Verdict;
use cucumber::event::{self, Cucumber, Feature, Rule, Scenario, Step, StepError};
use cucumber::{gherkin, parser, Event};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// A measured value with its limit, OpenHTF-style.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    pub name: String,
    pub value: f64,
    pub unit: String,
    /// Human-readable limit, e.g. `<= 10`.
    pub limit: Option<String>,
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub keyword: String,
    pub text: String,
    pub line: usize,
    /// `passed`, `failed`, `skipped` or `not-run`.
    pub status: &'static str,
    pub wall_ms: u64,
    pub message: Option<String>,
    /// Device time (ms) when the step started and ended.
    pub device_start_ms: Option<u64>,
    pub device_end_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioRecord {
    pub feature: String,
    /// Feature file relative to the features directory.
    pub file: String,
    pub name: String,
    pub line: usize,
    pub tags: Vec<String>,
    pub requirements: Vec<String>,
    pub assessment: Vec<String>,
    pub verdict: Verdict,
    pub message: Option<String>,
    pub started: Option<String>,
    pub wall_ms: u64,
    /// Device time (ms) at the scenario's start and end.
    pub device_start_ms: Option<u64>,
    pub device_end_ms: Option<u64>,
    pub steps: Vec<StepRecord>,
    pub measurements: Vec<Measurement>,
    pub notes: Vec<String>,
}

impl ScenarioRecord {
    /// A scenario that never started.
    pub fn not_run(
        feature: &str,
        file: &str,
        name: &str,
        line: usize,
        tags: Vec<String>,
        why: &str,
    ) -> ScenarioRecord {
        let (requirements, assessment) = split_tags(&tags);
        ScenarioRecord {
            feature: feature.to_string(),
            file: file.to_string(),
            name: name.to_string(),
            line,
            tags,
            requirements,
            assessment,
            verdict: Verdict::NotRun,
            message: Some(why.to_string()),
            started: None,
            wall_ms: 0,
            device_start_ms: None,
            device_end_ms: None,
            steps: Vec::new(),
            measurements: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// Requirement ids (`req:` tags) and assessment kinds (`assess:` tags) of a tag list.
pub fn split_tags(tags: &[String]) -> (Vec<String>, Vec<String>) {
    let req = tags
        .iter()
        .filter_map(|t| t.strip_prefix("req:"))
        .map(String::from)
        .collect();
    let ass = tags
        .iter()
        .filter_map(|t| t.strip_prefix("assess:"))
        .map(String::from)
        .collect();
    (req, ass)
}

/// Shared between the writer, the steps and the report writers.
#[derive(Default)]
pub struct Recorder {
    inner: Mutex<State>,
}

#[derive(Default)]
struct State {
    scenarios: Vec<ScenarioRecord>,
    current: Option<usize>,
    current_started: Option<SystemTime>,
    step_started: Option<SystemTime>,
    step_device_start: Option<u64>,
    /// Rig faults reported for a scenario (name, line), applied when it finishes.
    rig_faults: Vec<(String, usize, String)>,
}

impl Recorder {
    /// Record a measurement in the running scenario.
    pub fn measure(&self, m: Measurement) {
        let mut s = self.inner.lock().unwrap();
        if let Some(i) = s.current {
            s.scenarios[i].measurements.push(m);
        }
    }

    /// Attach a note (e.g. a not-applicable reason, an observation) to the running
    /// scenario.
    pub fn note(&self, text: impl Into<String>) {
        let mut s = self.inner.lock().unwrap();
        if let Some(i) = s.current {
            s.scenarios[i].notes.push(text.into());
        }
    }

    /// Everything recorded so far.
    pub fn scenarios(&self) -> Vec<ScenarioRecord> {
        self.inner.lock().unwrap().scenarios.clone()
    }

    /// Close the run: a scenario still running becomes inconclusive with `why`.
    pub fn abort_current(&self, why: &str) {
        let mut s = self.inner.lock().unwrap();
        if let Some(i) = s.current.take() {
            let started = s.current_started.take();
            let r = &mut s.scenarios[i];
            r.verdict = Verdict::Inconclusive;
            r.message = Some(format!("RIG ERROR: {why}"));
            r.wall_ms = elapsed_ms(started);
        }
    }

    /// The rig had an instrument fault while the scenario (`name` at `line`) ran:
    /// when it finishes, a pass or a fail becomes inconclusive (the device's finding
    /// is kept as a note), since what the rig observed cannot be trusted.
    pub fn rig_fault(&self, name: &str, line: usize, detail: String) {
        self.inner
            .lock()
            .unwrap()
            .rig_faults
            .push((name.to_string(), line, detail));
    }

    /// Record a scenario that could not run at all (e.g. the lab did not start).
    pub fn push(&self, record: ScenarioRecord) {
        self.inner.lock().unwrap().scenarios.push(record);
    }

    fn begin(&self, record: ScenarioRecord, at: SystemTime) {
        let mut s = self.inner.lock().unwrap();
        s.scenarios.push(record);
        s.current = Some(s.scenarios.len() - 1);
        s.current_started = Some(at);
    }
}

fn elapsed_ms(since: Option<SystemTime>) -> u64 {
    since
        .and_then(|t| t.elapsed().ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn utc_string(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The rig had a fault while the scenario ran: a pass or a fail is not a verdict on
/// the device; it becomes inconclusive and the device's finding is kept as a note.
/// Other verdicts stay.
pub fn apply_rig_fault(r: &mut ScenarioRecord, detail: &str) {
    if matches!(r.verdict, Verdict::Pass | Verdict::Fail) {
        if let Some(m) = r.message.take() {
            r.notes
                .push(format!("finding not counted (the rig had a fault): {m}"));
        }
        r.verdict = Verdict::Inconclusive;
        r.message = Some(format!(
            "{}{detail}; the scenario's observations cannot be trusted",
            StepFail::RIG_PREFIX
        ));
    }
}

/// How a step failure message is classified.
pub fn classify(message: &str) -> Verdict {
    if message.starts_with(StepFail::DEVICE_PREFIX) {
        Verdict::Fail
    } else if message.starts_with(StepFail::NA_PREFIX) {
        Verdict::NotApplicable
    } else {
        Verdict::Inconclusive
    }
}

fn step_error_message(err: &StepError) -> String {
    match err {
        StepError::Panic(info) => info
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.downcast_ref::<&str>().map(|s| s.to_string()))
            .map(|m| {
                if classify(&m) == Verdict::Inconclusive && !m.starts_with(StepFail::RIG_PREFIX) {
                    format!("{}rig code panicked: {m}", StepFail::RIG_PREFIX)
                } else {
                    m
                }
            })
            .unwrap_or_else(|| format!("{}step panicked", StepFail::RIG_PREFIX)),
        other => format!("{}{other}", StepFail::RIG_PREFIX),
    }
}

/// Progress output: one line per scenario.
pub struct Progress {
    tty: bool,
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            quiet,
        }
    }

    fn started(&self, name: &str) {
        if self.tty && !self.quiet {
            let mut e = std::io::stderr();
            let _ = write!(e, "\r\x1b[2K  …    {name}");
            let _ = e.flush();
        }
    }

    fn finished(&self, r: &ScenarioRecord) {
        if self.quiet {
            return;
        }
        let secs = r.wall_ms as f64 / 1000.0;
        let label = r.verdict.as_str().to_uppercase();
        let loc = format!("{}:{}", r.file, r.line);
        let mut e = std::io::stderr();
        if self.tty {
            let colour = match r.verdict {
                Verdict::Pass => "32",
                Verdict::Fail => "31",
                Verdict::NotApplicable => "36",
                _ => "33",
            };
            let _ = writeln!(
                e,
                "\r\x1b[2K\x1b[{colour}m{label:<14}\x1b[0m {} ({secs:.1} s)  {loc}",
                r.name
            );
        } else {
            let _ = writeln!(e, "{label:<14} {} ({secs:.1} s)  {loc}", r.name);
        }
        if let (Some(msg), true) = (&r.message, r.verdict != Verdict::Pass) {
            let _ = writeln!(e, "               {msg}");
        }
    }
}

/// The cucumber writer feeding a [`Recorder`].
pub struct RecorderWriter {
    recorder: Arc<Recorder>,
    features_dir: PathBuf,
    progress: Progress,
    log: Option<Arc<crate::evidence::RunLog>>,
    clock: Option<crate::clock::Clock>,
}

impl RecorderWriter {
    pub fn new(recorder: Arc<Recorder>, features_dir: &Path, quiet: bool) -> Self {
        RecorderWriter {
            recorder,
            features_dir: features_dir.to_path_buf(),
            progress: Progress::new(quiet),
            log: None,
            clock: None,
        }
    }

    /// Stamp each scenario's start and end with the device clock.
    pub fn with_clock(mut self, clock: crate::clock::Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Also note every scenario's start and verdict in the run log.
    pub fn with_log(mut self, log: Arc<crate::evidence::RunLog>) -> Self {
        self.log = Some(log);
        self
    }

    fn log(&self, line: String) {
        if let Some(l) = &self.log {
            l.line(line);
        }
    }

    fn rel_file(&self, feature: &gherkin::Feature) -> String {
        feature
            .path
            .as_ref()
            .map(|p| {
                let p = p.strip_prefix(&self.features_dir).unwrap_or(p);
                p.display().to_string()
            })
            .unwrap_or_else(|| feature.name.clone())
    }

    fn on_scenario(
        &mut self,
        feature: &gherkin::Feature,
        rule: Option<&gherkin::Rule>,
        scenario: &gherkin::Scenario,
        ev: event::Scenario<super::world::RigWorld>,
        at: SystemTime,
    ) {
        match ev {
            Scenario::Started => {
                let mut tags: Vec<String> = feature.tags.clone();
                if let Some(r) = rule {
                    tags.extend(r.tags.iter().cloned());
                }
                tags.extend(scenario.tags.iter().cloned());
                tags.dedup();
                let (requirements, assessment) = split_tags(&tags);
                self.progress.started(&scenario.name);
                self.log(format!(
                    "scenario started: {}:{} {}",
                    self.rel_file(feature),
                    scenario.position.line,
                    scenario.name
                ));
                self.recorder.begin(
                    ScenarioRecord {
                        feature: feature.name.clone(),
                        file: self.rel_file(feature),
                        name: scenario.name.clone(),
                        line: scenario.position.line,
                        tags,
                        requirements,
                        assessment,
                        verdict: Verdict::Pass,
                        message: None,
                        started: Some(utc_string(at)),
                        wall_ms: 0,
                        device_start_ms: self.clock.map(|c| c.now()),
                        device_end_ms: None,
                        steps: Vec::new(),
                        measurements: Vec::new(),
                        notes: Vec::new(),
                    },
                    at,
                );
            }
            Scenario::Step(step, ev) | Scenario::Background(step, ev) => {
                self.on_step(&step, ev, at)
            }
            Scenario::Hook(kind, event::Hook::Failed(_, info)) => {
                let msg = info
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "hook failed".into());
                self.fail_current(format!("{}{kind:?} hook: {msg}", StepFail::RIG_PREFIX));
            }
            Scenario::Hook(..) | Scenario::Log(_) => {}
            Scenario::Finished => {
                let mut s = self.recorder.inner.lock().unwrap();
                if let Some(i) = s.current.take() {
                    let started = s.current_started.take();
                    let (name, line) = (s.scenarios[i].name.clone(), s.scenarios[i].line);
                    let faults: Vec<String> = {
                        let (mine, rest) = std::mem::take(&mut s.rig_faults)
                            .into_iter()
                            .partition(|(n, l, _)| *n == name && *l == line);
                        s.rig_faults = rest;
                        mine.into_iter().map(|(_, _, d)| d).collect()
                    };
                    let r = &mut s.scenarios[i];
                    if let Some(detail) = faults.first() {
                        apply_rig_fault(r, detail);
                    }
                    r.wall_ms = elapsed_ms(started);
                    r.device_end_ms = self.clock.map(|c| c.now());
                    self.progress.finished(r);
                    let line = format!(
                        "scenario finished: {}:{} {} — {}{}",
                        r.file,
                        r.line,
                        r.name,
                        r.verdict,
                        r.message
                            .as_deref()
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default()
                    );
                    drop(s);
                    self.log(line);
                }
            }
        }
    }

    fn on_step(&mut self, step: &gherkin::Step, ev: Step<super::world::RigWorld>, at: SystemTime) {
        let mut s = self.recorder.inner.lock().unwrap();
        let Some(i) = s.current else { return };
        let now = self.clock.map(|c| c.now());
        let base = StepRecord {
            keyword: step.keyword.trim().to_string(),
            text: step.value.clone(),
            line: step.position.line,
            status: "passed",
            wall_ms: 0,
            message: None,
            device_start_ms: s.step_device_start.take().or(now),
            device_end_ms: now,
        };
        match ev {
            Step::Started => {
                s.step_started = Some(at);
                s.step_device_start = now;
            }
            Step::Passed(..) => {
                let ms = elapsed_ms(s.step_started.take());
                s.scenarios[i].steps.push(StepRecord {
                    wall_ms: ms,
                    ..base
                });
            }
            Step::Skipped => {
                let ms = elapsed_ms(s.step_started.take());
                let msg = format!(
                    "{}step not implemented: {}",
                    StepFail::RIG_PREFIX,
                    step.value
                );
                s.scenarios[i].steps.push(StepRecord {
                    status: "skipped",
                    wall_ms: ms,
                    message: Some(msg.clone()),
                    ..base
                });
                drop(s);
                self.fail_current(msg);
            }
            Step::Failed(_, _, _, err) => {
                let ms = elapsed_ms(s.step_started.take());
                let msg = step_error_message(&err);
                s.scenarios[i].steps.push(StepRecord {
                    status: "failed",
                    wall_ms: ms,
                    message: Some(msg.clone()),
                    ..base
                });
                drop(s);
                self.fail_current(msg);
            }
        }
    }

    fn fail_current(&self, message: String) {
        let mut s = self.recorder.inner.lock().unwrap();
        if let Some(i) = s.current {
            let r = &mut s.scenarios[i];
            let verdict = classify(&message);
            if r.message.is_none() || verdict > r.verdict {
                r.message = Some(message);
            }
            if r.verdict == Verdict::Pass || verdict > r.verdict {
                r.verdict = verdict;
            }
        }
    }
}

impl cucumber::Writer<super::world::RigWorld> for RecorderWriter {
    type Cli = cucumber::cli::Empty;

    async fn handle_event(
        &mut self,
        event: parser::Result<Event<Cucumber<super::world::RigWorld>>>,
        _cli: &Self::Cli,
    ) {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                // A feature file that does not parse: the library is broken, which is a
                // rig problem, and it must be visible.
                self.recorder.push(ScenarioRecord::not_run(
                    "(parse error)",
                    "(parse error)",
                    &format!("feature file does not parse: {e}"),
                    0,
                    Vec::new(),
                    "feature file does not parse",
                ));
                let mut s = self.recorder.inner.lock().unwrap();
                if let Some(last) = s.scenarios.last_mut() {
                    last.verdict = Verdict::Inconclusive;
                }
                return;
            }
        };
        let at = event.at;
        match event.value {
            Cucumber::Feature(feature, Feature::Scenario(scenario, ev)) => {
                self.on_scenario(&feature, None, &scenario, ev.event, at)
            }
            Cucumber::Feature(feature, Feature::Rule(rule, Rule::Scenario(scenario, ev))) => {
                self.on_scenario(&feature, Some(&rule), &scenario, ev.event, at)
            }
            _ => {}
        }
    }
}

impl cucumber::writer::Normalized for RecorderWriter {}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(verdict: Verdict, message: Option<&str>) -> ScenarioRecord {
        let mut r = ScenarioRecord::not_run("f", "f.feature", "s", 3, Vec::new(), "");
        r.verdict = verdict;
        r.message = message.map(String::from);
        r.notes.clear();
        r
    }

    #[test]
    fn a_rig_fault_turns_a_pass_or_a_fail_into_inconclusive() {
        let mut pass = record(Verdict::Pass, None);
        apply_rig_fault(&mut pass, "1 instrument connection(s) lost");
        assert_eq!(pass.verdict, Verdict::Inconclusive);
        assert_eq!(
            classify(pass.message.as_deref().unwrap()),
            Verdict::Inconclusive
        );
        assert!(pass.message.unwrap().contains("connection(s) lost"));

        let mut fail = record(Verdict::Fail, Some("DEVICE FAIL: no alarm within 30 s"));
        apply_rig_fault(&mut fail, "the console line was lost");
        assert_eq!(fail.verdict, Verdict::Inconclusive);
        assert!(fail
            .message
            .as_deref()
            .unwrap()
            .starts_with(StepFail::RIG_PREFIX));
        assert!(
            fail.notes
                .iter()
                .any(|n| n.contains("DEVICE FAIL: no alarm")),
            "the device's finding is kept: {:?}",
            fail.notes
        );
    }

    #[test]
    fn a_rig_fault_leaves_other_verdicts_alone() {
        for v in [
            Verdict::NotApplicable,
            Verdict::Inconclusive,
            Verdict::NotRun,
        ] {
            let mut r = record(v, Some("NOT APPLICABLE: no geofence"));
            apply_rig_fault(&mut r, "lost");
            assert_eq!(r.verdict, v);
            assert_eq!(r.message.as_deref(), Some("NOT APPLICABLE: no geofence"));
        }
    }
}

//! Verdicts: per scenario, per requirement, per run — and the exit codes CI relies on.

use serde::{Deserialize, Serialize};

/// The verdict of one scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The device declares it lacks the feature; the reason is recorded.
    NotApplicable,
    /// The device met the requirement.
    Pass,
    /// The run ended (interrupt, earlier fatal rig error) before this scenario ran.
    NotRun,
    /// The rig could not reach a verdict: an instrument failed, the lab could not
    /// start, the rig timed out. Never a statement about the device.
    Inconclusive,
    /// The device did not meet the requirement.
    Fail,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::NotApplicable => "not-applicable",
            Verdict::Pass => "pass",
            Verdict::NotRun => "not-run",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Fail => "fail",
        }
    }

    /// The worse of two verdicts (`fail` > `inconclusive` > `not-run` > `pass` >
    /// `not-applicable`).
    pub fn worst(self, other: Verdict) -> Verdict {
        self.max(other)
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict of one requirement of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RequirementVerdict {
    Pass,
    Fail,
    Inconclusive,
    NotRun,
    NotApplicable,
    /// No scenario of this run covers the requirement (the catalogue says why, when a
    /// bench cannot test it).
    NotTested,
}

impl RequirementVerdict {
    /// Worst of the scenario verdicts covering a requirement; `NotTested` if none.
    pub fn from_scenarios(verdicts: impl IntoIterator<Item = Verdict>) -> RequirementVerdict {
        match verdicts.into_iter().reduce(Verdict::worst) {
            None => RequirementVerdict::NotTested,
            Some(Verdict::Pass) => RequirementVerdict::Pass,
            Some(Verdict::Fail) => RequirementVerdict::Fail,
            Some(Verdict::Inconclusive) => RequirementVerdict::Inconclusive,
            Some(Verdict::NotRun) => RequirementVerdict::NotRun,
            Some(Verdict::NotApplicable) => RequirementVerdict::NotApplicable,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RequirementVerdict::Pass => "pass",
            RequirementVerdict::Fail => "fail",
            RequirementVerdict::Inconclusive => "inconclusive",
            RequirementVerdict::NotRun => "not-run",
            RequirementVerdict::NotApplicable => "not-applicable",
            RequirementVerdict::NotTested => "not-tested",
        }
    }
}

/// Process exit codes (documented in the README; CI pipelines depend on them).
pub mod exit {
    /// Every scenario passed (or was not applicable).
    pub const PASS: i32 = 0;
    /// The device failed at least one requirement.
    pub const DEVICE_FAIL: i32 = 1;
    /// A rig or infrastructure error prevented a verdict (and no requirement failed).
    pub const INCONCLUSIVE: i32 = 2;
    /// Usage or configuration error; nothing was run.
    pub const USAGE: i32 = 3;
}

/// Exit code for a run with these scenario verdicts.
pub fn exit_code(verdicts: impl IntoIterator<Item = Verdict>) -> i32 {
    match verdicts
        .into_iter()
        .fold(Verdict::NotApplicable, Verdict::worst)
    {
        Verdict::Fail => exit::DEVICE_FAIL,
        Verdict::Inconclusive | Verdict::NotRun => exit::INCONCLUSIVE,
        Verdict::Pass | Verdict::NotApplicable => exit::PASS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_fail_outranks_a_rig_error() {
        assert_eq!(
            exit_code([Verdict::Pass, Verdict::Inconclusive, Verdict::Fail]),
            1
        );
        assert_eq!(exit_code([Verdict::Pass, Verdict::Inconclusive]), 2);
        assert_eq!(exit_code([Verdict::Pass, Verdict::NotRun]), 2);
        assert_eq!(exit_code([Verdict::Pass, Verdict::NotApplicable]), 0);
        assert_eq!(exit_code([]), 0);
    }

    #[test]
    fn requirement_takes_the_worst_scenario() {
        use RequirementVerdict as R;
        assert_eq!(R::from_scenarios([]), R::NotTested);
        assert_eq!(R::from_scenarios([Verdict::Pass, Verdict::Fail]), R::Fail);
        assert_eq!(
            R::from_scenarios([Verdict::Pass, Verdict::NotApplicable]),
            R::Pass
        );
        assert_eq!(
            R::from_scenarios([Verdict::NotApplicable]),
            R::NotApplicable
        );
        assert_eq!(
            R::from_scenarios([Verdict::Pass, Verdict::Inconclusive]),
            R::Inconclusive
        );
    }
}

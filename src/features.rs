//! An index of the scenario library: every scenario in the `.feature` files, with its
//! tags, the requirements it traces to (`@req:<id>`) and its assessment kinds
//! (`@assess:<kind>`).
//!
//! Tags are inherited as Cucumber does it: Feature, Rule, Scenario and Examples tags
//! all apply to a scenario. A Scenario Outline counts as one scenario per example row,
//! named after the outline with its placeholders filled in and the row's index, and
//! located at the row's line.
//!
//! [`FeatureIndex::check_against`] compares the library with the requirement
//! catalogue: a tag naming an unknown requirement and a scenario without any `@req:`
//! tag are errors; a bench-testable requirement that no scenario covers yet is a
//! warning (the library is still being written).
//!
//! [`RequirementsReport`] is what `redrig requirements` prints: per requirement its
//! scenarios and the device profiles that declare they fail it, counts, and the
//! coverage rules ([`CoverageRule`], checked by [`coverage_problems`]) it breaks.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use cucumber::gherkin::{self, tagexpr::TagOperation, GherkinEnv};
use cucumber::tag::Ext as _;
use thiserror::Error;

use serde::Serialize;

use crate::catalogue::{Bench, Catalogue, ProfileFailures, Requirement, ASSESSMENT_KINDS};

/// Tag prefix naming a requirement: `@req:EN18031-1:SCM-3`.
pub const REQ_TAG: &str = "req:";
/// Tag prefix naming an assessment kind: `@assess:functional-sufficiency`.
pub const ASSESS_TAG: &str = "assess:";

/// One runnable scenario (an outline contributes one per example row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioInfo {
    /// The `.feature` file, relative to the scanned directory (as displayed, `/`
    /// between components).
    pub file: String,
    /// The Feature's name.
    pub feature: String,
    /// The Rule's name, if the scenario is inside a Rule.
    pub rule: Option<String>,
    /// The scenario's name; for an outline row, placeholders are filled in and
    /// ` (example N)` is appended.
    pub name: String,
    /// 1-based line: the `Scenario:` line, or the example row's line.
    pub line: usize,
    /// All tags that apply, without `@`: Feature, Rule, Scenario, Examples, in that
    /// order, each once.
    pub tags: Vec<String>,
    /// Requirement ids from `@req:<id>` tags.
    pub req_ids: Vec<String>,
    /// Assessment kinds from `@assess:<kind>` tags.
    pub assess: Vec<String>,
    /// For an outline row: its 1-based index over all the outline's Examples rows.
    pub example: Option<usize>,
}

impl ScenarioInfo {
    /// `file:line`.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    /// True if the scenario carries `tag` (without `@`).
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// True if the tag expression holds for this scenario's tags.
    pub fn matches(&self, expr: &TagOperation) -> bool {
        expr.eval(self.tags.iter())
    }
}

#[derive(Debug, Error)]
pub enum FeatureError {
    #[error("{}: cannot read the scenario library: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {detail}", path.display())]
    Parse { path: PathBuf, detail: String },
}

/// All scenarios under a directory, ordered by file and line.
#[derive(Debug, Clone, Default)]
pub struct FeatureIndex {
    root: PathBuf,
    scenarios: Vec<ScenarioInfo>,
}

impl FeatureIndex {
    /// Parses every `*.feature` file under `dir`, recursively (hidden directories
    /// and files are skipped).
    pub fn scan(dir: impl AsRef<Path>) -> Result<FeatureIndex, FeatureError> {
        let root = dir.as_ref().to_path_buf();
        let mut files = Vec::new();
        collect_feature_files(&root, &mut files)?;
        files.sort();
        let mut scenarios = Vec::new();
        for path in files {
            let rel = path
                .strip_prefix(&root)
                .unwrap_or(&path)
                .display()
                .to_string();
            index_file(&path, &rel, &mut scenarios)?;
        }
        scenarios.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        Ok(FeatureIndex { root, scenarios })
    }

    /// The scanned directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn scenarios(&self) -> &[ScenarioInfo] {
        &self.scenarios
    }

    /// The scenarios for which `expr` holds.
    pub fn filter(&self, expr: &TagOperation) -> Vec<&ScenarioInfo> {
        self.scenarios.iter().filter(|s| s.matches(expr)).collect()
    }

    /// The scenarios in the given files or directories (paths as given on a command
    /// line; a directory selects everything under it) for which `filter` holds, if
    /// one is given.
    pub fn select(&self, inputs: &[PathBuf], filter: Option<&TagOperation>) -> Vec<&ScenarioInfo> {
        let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        let inputs: Vec<PathBuf> = inputs.iter().map(|p| canon(p)).collect();
        self.scenarios
            .iter()
            .filter(|s| {
                let file = canon(&self.root.join(&s.file));
                inputs.iter().any(|i| file.starts_with(i))
            })
            .filter(|s| filter.is_none_or(|f| s.matches(f)))
            .collect()
    }

    /// Every catalogue requirement, in catalogue order, with the scenarios tagged
    /// `@req:<its id>`.
    pub fn coverage(&self, catalogue: &Catalogue) -> Vec<(Requirement, Vec<&ScenarioInfo>)> {
        catalogue
            .iter()
            .map(|r| {
                let covering = self
                    .scenarios
                    .iter()
                    .filter(|s| s.req_ids.contains(&r.id))
                    .collect();
                (r.clone(), covering)
            })
            .collect()
    }

    /// Compares the library with the catalogue; returns `(errors, warnings)`.
    ///
    /// Errors must be fixed: a `@req:` tag naming a requirement the catalogue does not
    /// have, a scenario without any `@req:` tag, an unknown `@assess:` kind (each
    /// with `file:line`). Warnings are gaps and doubts: a `bench: yes` requirement no
    /// scenario covers yet, an assessment kind none of the scenario's requirements
    /// lists.
    pub fn check_against(&self, catalogue: &Catalogue) -> (Vec<String>, Vec<String>) {
        let (mut errors, mut warnings) = (Vec::new(), Vec::new());
        for s in &self.scenarios {
            let at = format!("{}: scenario \"{}\"", s.location(), s.name);
            if s.req_ids.is_empty() {
                errors.push(format!(
                    "{at} has no @{REQ_TAG}<id> tag; every scenario must trace to a requirement"
                ));
            }
            for id in &s.req_ids {
                if !catalogue.contains(id) {
                    errors.push(format!(
                        "{at} is tagged @{REQ_TAG}{id}, which is not in the catalogue {}",
                        catalogue.path().display()
                    ));
                }
            }
            for kind in &s.assess {
                if !ASSESSMENT_KINDS.contains(&kind.as_str()) {
                    errors.push(format!(
                        "{at} is tagged @{ASSESS_TAG}{kind}, which is not an assessment kind ({})",
                        ASSESSMENT_KINDS.join(", ")
                    ));
                    continue;
                }
                let known: Vec<&Requirement> = s
                    .req_ids
                    .iter()
                    .filter_map(|id| catalogue.get(id))
                    .collect();
                if !known.is_empty()
                    && !known
                        .iter()
                        .any(|r| r.assessment.iter().any(|k| kind_matches(k, kind)))
                {
                    warnings.push(format!(
                        "{at} is tagged @{ASSESS_TAG}{kind}, but none of its requirements ({}) lists that kind",
                        known.iter().map(|r| r.id.as_str()).collect::<Vec<_>>().join(", ")
                    ));
                }
            }
        }
        for (req, covering) in self.coverage(catalogue) {
            if req.bench == Bench::Yes && covering.is_empty() {
                warnings.push(format!(
                    "requirement {} ({}) is bench-testable but no scenario covers it",
                    req.id, req.title
                ));
            }
        }
        (errors, warnings)
    }
}

/// Parses a tag expression such as `@req:EN18031-1:SCM-3 and not @slow`.
pub fn parse_tags(expr: &str) -> Result<TagOperation, String> {
    if expr.trim().is_empty() {
        return Err("empty tag expression: write e.g. `@req:EN18031-1:SCM-3 and not @slow`".into());
    }
    expr.trim().parse::<TagOperation>().map_err(|e| {
        format!(
            "invalid tag expression `{expr}` at column {}: expected {}; tags start with `@`, \
             combine them with `and`, `or`, `not` and parentheses, \
             e.g. `@req:EN18031-1:SCM-3 and not @slow`",
            e.location.column, e.expected
        )
    })
}

/// One line per scenario: `file:line  name  [req ids] [assess kinds]`.
pub fn render_list(scenarios: &[&ScenarioInfo]) -> String {
    let width = scenarios
        .iter()
        .map(|s| s.location().len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for s in scenarios {
        let _ = writeln!(
            out,
            "{:<width$}  {}  [{}] [{}]",
            s.location(),
            s.name,
            s.req_ids.join(", "),
            s.assess.join(", ")
        );
    }
    out
}

/// A scenario as the requirement report names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScenarioRef {
    /// `file:line`, the file relative to the features directory.
    pub location: String,
    pub name: String,
}

/// One requirement of the report: the catalogue entry, the scenarios covering it and
/// the device profiles that declare they fail it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequirementEntry {
    pub id: String,
    pub title: String,
    pub standard: String,
    pub bench: Bench,
    /// Why a bench cannot (fully) decide it; `None` for `bench: yes`.
    pub reason: Option<String>,
    /// Scenarios tagged `@req:<id>`, by file and line.
    pub scenarios: Vec<ScenarioRef>,
    /// Names of the device profiles listing the id in `expected_failures`.
    pub profiles: Vec<String>,
    /// The catalogue's `no_scenario` text.
    pub no_scenario: Option<String>,
    /// The catalogue's `applies_when`.
    pub applies_when: Option<String>,
}

/// A coverage rule of the scenario library, the catalogue and the device profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CoverageRule {
    /// Every `bench: yes` requirement has at least one scenario.
    YesNeedsScenario,
    /// Every `bench: partly` requirement has a scenario or a `no_scenario` reason.
    PartlyNeedsScenarioOrReason,
    /// A `no_scenario` reason on a requirement that a scenario covers is stale.
    StaleNoScenario,
    /// Every id in a profile's `expected_failures` is in the catalogue.
    ExpectedFailureInCatalogue,
    /// Every id in a profile's `expected_failures` has a scenario tagged with it.
    ExpectedFailureHasScenario,
}

impl CoverageRule {
    /// All rules, in the order reports list them.
    pub const ALL: [CoverageRule; 5] = [
        CoverageRule::YesNeedsScenario,
        CoverageRule::PartlyNeedsScenarioOrReason,
        CoverageRule::StaleNoScenario,
        CoverageRule::ExpectedFailureInCatalogue,
        CoverageRule::ExpectedFailureHasScenario,
    ];

    /// The rule's name as in the JSON report, e.g. `yes-needs-scenario`.
    pub fn as_str(self) -> &'static str {
        match self {
            CoverageRule::YesNeedsScenario => "yes-needs-scenario",
            CoverageRule::PartlyNeedsScenarioOrReason => "partly-needs-scenario-or-reason",
            CoverageRule::StaleNoScenario => "stale-no-scenario",
            CoverageRule::ExpectedFailureInCatalogue => "expected-failure-in-catalogue",
            CoverageRule::ExpectedFailureHasScenario => "expected-failure-has-scenario",
        }
    }

    /// The rule in words.
    pub fn description(self) -> &'static str {
        match self {
            CoverageRule::YesNeedsScenario => {
                "every `bench: yes` requirement has at least one scenario"
            }
            CoverageRule::PartlyNeedsScenarioOrReason => {
                "every `bench: partly` requirement has a scenario or a `no_scenario` reason"
            }
            CoverageRule::StaleNoScenario => {
                "a requirement with a scenario has no `no_scenario` reason"
            }
            CoverageRule::ExpectedFailureInCatalogue => {
                "every id in a profile's `expected_failures` is in the catalogue"
            }
            CoverageRule::ExpectedFailureHasScenario => {
                "every id in a profile's `expected_failures` has a scenario tagged with it"
            }
        }
    }
}

impl std::fmt::Display for CoverageRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One requirement breaking one coverage rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoverageProblem {
    pub rule: CoverageRule,
    /// The requirement id (for the profile rules: the id as the profile writes it).
    pub requirement: String,
    pub detail: String,
}

impl std::fmt::Display for CoverageProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} [{}]: {}", self.requirement, self.rule, self.detail)
    }
}

/// Counts over the whole catalogue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CoverageSummary {
    pub requirements: usize,
    /// Requirements at least one scenario covers.
    pub covered: usize,
    /// `bench: no`.
    pub not_bench_testable: usize,
    /// `bench: yes` or `partly` without a scenario (the sum of the next two).
    pub bench_testable_without_scenario: usize,
    /// `bench: yes` without a scenario (each breaks a coverage rule).
    pub yes_without_scenario: usize,
    /// `bench: partly` without a scenario.
    pub partly_without_scenario: usize,
    /// Of `partly_without_scenario`, those whose `no_scenario` says why.
    pub partly_with_no_scenario_reason: usize,
    /// Coverage rules broken, see [`CoverageRule`].
    pub problems: usize,
}

/// What `redrig requirements` shows: every catalogue requirement in catalogue order
/// with its scenarios and the profiles expecting its failure, the counts, and the
/// coverage problems. Serialises to the documented `--json` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequirementsReport {
    pub requirements: Vec<RequirementEntry>,
    pub summary: CoverageSummary,
    pub problems: Vec<CoverageProblem>,
}

impl RequirementsReport {
    /// Builds the report from the catalogue, the scenario library and the device
    /// profiles' `expected_failures`.
    pub fn build(
        catalogue: &Catalogue,
        index: &FeatureIndex,
        profiles: &[ProfileFailures],
    ) -> RequirementsReport {
        let mut summary = CoverageSummary {
            requirements: catalogue.len(),
            ..Default::default()
        };
        let mut requirements = Vec::with_capacity(catalogue.len());
        for (req, covering) in index.coverage(catalogue) {
            let has_scenario = !covering.is_empty();
            if has_scenario {
                summary.covered += 1;
            }
            match req.bench {
                Bench::No => summary.not_bench_testable += 1,
                Bench::Yes if !has_scenario => summary.yes_without_scenario += 1,
                Bench::Partly if !has_scenario => {
                    summary.partly_without_scenario += 1;
                    if req.no_scenario.is_some() {
                        summary.partly_with_no_scenario_reason += 1;
                    }
                }
                _ => {}
            }
            let mut failing: Vec<String> = profiles
                .iter()
                .filter(|p| p.expected_failures.contains(&req.id))
                .map(|p| p.profile.clone())
                .collect();
            failing.sort();
            failing.dedup();
            requirements.push(RequirementEntry {
                scenarios: covering
                    .iter()
                    .map(|s| ScenarioRef {
                        location: s.location(),
                        name: s.name.clone(),
                    })
                    .collect(),
                profiles: failing,
                id: req.id,
                title: req.title,
                standard: req.standard,
                bench: req.bench,
                reason: req.reason,
                no_scenario: req.no_scenario,
                applies_when: req.applies_when,
            });
        }
        summary.bench_testable_without_scenario =
            summary.yes_without_scenario + summary.partly_without_scenario;
        let problems = coverage_problems(catalogue, index, profiles);
        summary.problems = problems.len();
        RequirementsReport {
            requirements,
            summary,
            problems,
        }
    }

    /// The report as JSON; the README's "`redrig requirements`" section documents the
    /// shape.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// Checks the coverage rules ([`CoverageRule`]) over the catalogue, the scenario
/// library and the profiles' `expected_failures`. Problems come in rule order, then
/// catalogue order (profile rules: profile order).
pub fn coverage_problems(
    catalogue: &Catalogue,
    index: &FeatureIndex,
    profiles: &[ProfileFailures],
) -> Vec<CoverageProblem> {
    let mut problems = Vec::new();
    let coverage = index.coverage(catalogue);
    for (req, covering) in &coverage {
        let problem = |rule, detail: String| CoverageProblem {
            rule,
            requirement: req.id.clone(),
            detail,
        };
        match (req.bench, covering.is_empty(), &req.no_scenario) {
            (Bench::Yes, true, _) => problems.push(problem(
                CoverageRule::YesNeedsScenario,
                format!(
                    "`bench: yes` but no scenario is tagged @{REQ_TAG}{} ({})",
                    req.id, req.title
                ),
            )),
            (Bench::Partly, true, None) => problems.push(problem(
                CoverageRule::PartlyNeedsScenarioOrReason,
                format!(
                    "`bench: partly`, no scenario is tagged @{REQ_TAG}{} and the catalogue has \
                     no `no_scenario` reason ({})",
                    req.id, req.title
                ),
            )),
            (_, false, Some(_)) => problems.push(problem(
                CoverageRule::StaleNoScenario,
                format!(
                    "has a `no_scenario` reason, but {} covers it: remove `no_scenario`",
                    covering
                        .iter()
                        .map(|s| s.location())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
            _ => {}
        }
    }
    let mut unknown = Vec::new();
    let mut uncovered = Vec::new();
    for p in profiles {
        for id in &p.expected_failures {
            if !catalogue.contains(id) {
                unknown.push(CoverageProblem {
                    rule: CoverageRule::ExpectedFailureInCatalogue,
                    requirement: id.clone(),
                    detail: format!(
                        "profile `{}` ({}) expects a failure of `{id}`, which is not in the \
                         catalogue {}",
                        p.profile,
                        p.path.display(),
                        catalogue.path().display()
                    ),
                });
            } else if !index.scenarios.iter().any(|s| s.req_ids.contains(id)) {
                uncovered.push(CoverageProblem {
                    rule: CoverageRule::ExpectedFailureHasScenario,
                    requirement: id.clone(),
                    detail: format!(
                        "profile `{}` expects a failure of it, but no scenario is tagged \
                         @{REQ_TAG}{id}",
                        p.profile
                    ),
                });
            }
        }
    }
    problems.extend(unknown);
    problems.extend(uncovered);
    problems.sort_by_key(|p| p.rule);
    problems
}

/// The report as text: a table with the scenarios covering each requirement, the
/// profiles expecting its failure, the reason for every `bench: partly/no` entry and
/// the `no_scenario` text; then the coverage problems, if any; last two count lines.
pub fn render_requirements(report: &RequirementsReport) -> String {
    let id_width = report
        .requirements
        .iter()
        .map(|r| r.id.len())
        .max()
        .unwrap_or(2)
        .max(2);
    let indent = id_width + 4;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<id_width$}  {:<6}  {:>9}  title",
        "id", "bench", "scenarios"
    );
    for req in &report.requirements {
        let _ = writeln!(
            out,
            "{:<id_width$}  {:<6}  {:>9}  {}",
            req.id,
            req.bench.as_str(),
            req.scenarios.len(),
            req.title
        );
        for s in &req.scenarios {
            let _ = writeln!(out, "{:indent$}scenario: {}  {}", "", s.location, s.name);
        }
        if !req.profiles.is_empty() {
            write_wrapped(&mut out, indent, "failed by: ", &req.profiles.join(", "));
        }
        if req.bench != Bench::Yes {
            let reason = req.reason.as_deref().unwrap_or("(no reason given)");
            write_wrapped(&mut out, indent, "reason: ", reason);
        }
        if let Some(why) = &req.no_scenario {
            write_wrapped(&mut out, indent, "no scenario: ", why);
        }
        if let Some(when) = &req.applies_when {
            let _ = writeln!(out, "{:indent$}applies when: {when}", "");
        }
    }
    if !report.problems.is_empty() {
        let _ = writeln!(out, "\ncoverage rules not met ({}):", report.problems.len());
        for rule in CoverageRule::ALL {
            let of_rule: Vec<&CoverageProblem> =
                report.problems.iter().filter(|p| p.rule == rule).collect();
            if of_rule.is_empty() {
                continue;
            }
            let _ = writeln!(out, "  {} ({}):", rule.description(), of_rule.len());
            for p in of_rule {
                write_wrapped(&mut out, 4, "", &format!("{}: {}", p.requirement, p.detail));
            }
        }
        out.push('\n');
    }
    let s = &report.summary;
    let _ = writeln!(
        out,
        "{} requirements, {} covered by scenarios, {} not bench-testable\n\
         {} bench-testable without a scenario: {} bench: yes, {} bench: partly \
         ({} of them say why in no_scenario)",
        s.requirements,
        s.covered,
        s.not_bench_testable,
        s.bench_testable_without_scenario,
        s.yes_without_scenario,
        s.partly_without_scenario,
        s.partly_with_no_scenario_reason
    );
    out
}

/// Lines of a rendered table are kept under this width where words allow.
const WRAP: usize = 100;

/// Writes `label` and `text` (whitespace normalised) at `indent`, wrapped at [`WRAP`]
/// columns with continuation lines aligned under the text.
fn write_wrapped(out: &mut String, indent: usize, label: &str, text: &str) {
    let start = indent + label.len();
    let mut line = format!("{:indent$}{label}", "");
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.len() + 1 + word.len() > WRAP {
            out.push_str(&line);
            out.push('\n');
            line = " ".repeat(start);
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(&line);
    out.push('\n');
}

/// True if a requirement listing assessment kind `listed` is assessed by a scenario
/// tagged `@assess:<tagged>`. TS 103 701's `functional` (EN 303 645) covers both
/// functional kinds of EN 18031, and the other way round.
fn kind_matches(listed: &str, tagged: &str) -> bool {
    listed == tagged
        || (listed == "functional" && tagged.starts_with("functional-"))
        || (tagged == "functional" && listed.starts_with("functional-"))
}

fn collect_feature_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), FeatureError> {
    let read_err = |source| FeatureError::Read {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let ty = entry.file_type().map_err(read_err)?;
        if ty.is_dir() {
            // Symlinked directories are not followed (no loops).
            collect_feature_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "feature") {
            let is_file = if ty.is_symlink() {
                path.is_file()
            } else {
                ty.is_file()
            };
            if is_file {
                out.push(path);
            }
        }
    }
    Ok(())
}

fn index_file(path: &Path, rel: &str, out: &mut Vec<ScenarioInfo>) -> Result<(), FeatureError> {
    let feature =
        gherkin::Feature::parse_path(path, GherkinEnv::default()).map_err(|e| match e {
            gherkin::ParseFileError::Reading { source, .. } => FeatureError::Read {
                path: path.to_path_buf(),
                source,
            },
            gherkin::ParseFileError::Parsing { error, source, .. } => FeatureError::Parse {
                path: path.to_path_buf(),
                detail: match error {
                    Some(env) => format!("not valid Gherkin: {source} ({env})"),
                    None => format!("not valid Gherkin: {source}"),
                },
            },
        })?;
    // The text again, to find the line of each Examples row (the parser keeps only
    // the table's position).
    let text = std::fs::read_to_string(path).map_err(|source| FeatureError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let lines: Vec<&str> = text.lines().collect();

    for scenario in &feature.scenarios {
        add_scenario(&feature, None, scenario, rel, &lines, out);
    }
    for rule in &feature.rules {
        for scenario in &rule.scenarios {
            add_scenario(&feature, Some(rule), scenario, rel, &lines, out);
        }
    }
    Ok(())
}

fn add_scenario(
    feature: &gherkin::Feature,
    rule: Option<&gherkin::Rule>,
    scenario: &gherkin::Scenario,
    rel: &str,
    lines: &[&str],
    out: &mut Vec<ScenarioInfo>,
) {
    let mut base_tags: Vec<&String> = feature.tags.iter().collect();
    if let Some(rule) = rule {
        base_tags.extend(&rule.tags);
    }
    base_tags.extend(&scenario.tags);
    let info = |name: String, line: usize, tags: Vec<&String>, example: Option<usize>| {
        let mut seen = BTreeSet::new();
        let tags: Vec<String> = tags
            .into_iter()
            .filter(|t| seen.insert(t.as_str()))
            .cloned()
            .collect();
        let with_prefix = |prefix: &str| -> Vec<String> {
            tags.iter()
                .filter_map(|t| t.strip_prefix(prefix))
                .map(str::to_string)
                .collect()
        };
        ScenarioInfo {
            file: rel.to_string(),
            feature: feature.name.clone(),
            rule: rule.map(|r| r.name.clone()),
            name,
            line,
            req_ids: with_prefix(REQ_TAG),
            assess: with_prefix(ASSESS_TAG),
            tags,
            example,
        }
    };

    if scenario.examples.is_empty() {
        out.push(info(
            scenario.name.clone(),
            scenario.position.line,
            base_tags,
            None,
        ));
        return;
    }
    let mut n = 0;
    for examples in &scenario.examples {
        let Some(table) = &examples.table else {
            continue;
        };
        let Some((header, rows)) = table.rows.split_first() else {
            continue;
        };
        let row_lines = table_row_lines(lines, examples.position.line, table.rows.len());
        let mut tags = base_tags.clone();
        tags.extend(&examples.tags);
        for (i, row) in rows.iter().enumerate() {
            n += 1;
            let mut name = scenario.name.clone();
            for (key, value) in header.iter().zip(row) {
                name = name.replace(&format!("<{key}>"), value);
            }
            // Fallback if the rows could not be found in the text: the Examples line
            // plus header plus index (right for a table without blank lines).
            let line = row_lines
                .get(i + 1)
                .copied()
                .unwrap_or(examples.position.line + 2 + i);
            out.push(info(
                format!("{name} (example {n})"),
                line,
                tags.clone(),
                Some(n),
            ));
        }
    }
}

/// The 1-based lines of the first `count` table rows (`|`-lines) after the
/// `Examples:` line, skipping blank lines, comments and description text.
fn table_row_lines(lines: &[&str], examples_line: usize, count: usize) -> Vec<usize> {
    let mut found = Vec::with_capacity(count);
    for (i, l) in lines.iter().enumerate().skip(examples_line) {
        if found.len() == count {
            break;
        }
        if l.trim_start().starts_with('|') {
            found.push(i + 1);
        } else if !found.is_empty() && !l.trim().is_empty() && !l.trim_start().starts_with('#') {
            break;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_tags_errors_are_clear() {
        let e = parse_tags("@a and and @b").unwrap_err();
        assert!(
            e.contains("invalid tag expression `@a and and @b`") && e.contains("column"),
            "{e}"
        );
        assert!(parse_tags("  ").unwrap_err().contains("empty"));
        assert!(
            parse_tags("req:X").is_err(),
            "a tag without @ must be rejected"
        );
    }

    #[test]
    fn parse_tags_keeps_colons_in_requirement_tags() {
        let op = parse_tags("@req:EN18031-1:SCM-3").unwrap();
        assert!(
            matches!(&op, TagOperation::Tag(t) if t == "req:EN18031-1:SCM-3"),
            "{op:?}"
        );
    }

    #[test]
    fn row_lines_skip_blank_and_comment_lines() {
        let text = "Feature: f\n  Scenario Outline: o\n    Given <x>\n    Examples:\n      | x |\n\n      # c\n      | 1 |\n      | 2 |\n  Scenario: next\n";
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(table_row_lines(&lines, 4, 3), vec![5, 8, 9]);
    }

    #[test]
    fn outline_name_fills_placeholders() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.feature"),
            "@req:SAFETY:SOS-2\nFeature: f\n  Scenario Outline: press SOS <n> times\n    Given <n>\n    Examples:\n      | n |\n      | 3 |\n      | 10 |\n",
        )
        .unwrap();
        let idx = FeatureIndex::scan(dir.path()).unwrap();
        let names: Vec<&str> = idx.scenarios().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "press SOS 3 times (example 1)",
                "press SOS 10 times (example 2)"
            ]
        );
        assert_eq!(idx.scenarios()[1].example, Some(2));
    }

    #[test]
    fn functional_covers_both_functional_kinds() {
        assert!(kind_matches("functional", "functional-sufficiency"));
        assert!(kind_matches("functional-completeness", "functional"));
        assert!(kind_matches("conceptual", "conceptual"));
        assert!(!kind_matches("conceptual", "functional"));
        assert!(!kind_matches(
            "functional-completeness",
            "functional-sufficiency"
        ));
    }

    #[test]
    fn long_reasons_wrap_under_the_label() {
        let mut out = String::new();
        let text = "word ".repeat(40);
        write_wrapped(&mut out, 4, "reason: ", &text);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.len() > 1, "{out}");
        assert!(lines[0].starts_with("    reason: word"), "{out}");
        assert!(
            lines[1].starts_with(&format!("{}word", " ".repeat(12))),
            "{out}"
        );
        assert!(lines.iter().all(|l| l.len() <= WRAP), "{out}");
        assert_eq!(out.split_whitespace().filter(|w| *w == "word").count(), 40);
    }

    #[test]
    fn render_list_has_location_name_reqs_and_kinds() {
        let s = ScenarioInfo {
            file: "sec/tls.feature".into(),
            feature: "f".into(),
            rule: None,
            name: "No clear text".into(),
            line: 12,
            tags: vec![],
            req_ids: vec!["EN18031-1:SCM-3".into(), "EN303645:5.5-1".into()],
            assess: vec!["functional-sufficiency".into()],
            example: None,
        };
        assert_eq!(
            render_list(&[&s]),
            "sec/tls.feature:12  No clear text  [EN18031-1:SCM-3, EN303645:5.5-1] [functional-sufficiency]\n"
        );
    }
}

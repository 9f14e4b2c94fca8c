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

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use cucumber::gherkin::{self, tagexpr::TagOperation, GherkinEnv};
use cucumber::tag::Ext as _;
use thiserror::Error;

use crate::catalogue::{Bench, Catalogue, Requirement, ASSESSMENT_KINDS};

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

/// The catalogue as a table with the scenarios covering each requirement, the reason
/// for every `bench: partly/no` entry, and a final count line.
pub fn render_requirements(catalogue: &Catalogue, index: &FeatureIndex) -> String {
    let coverage = index.coverage(catalogue);
    let id_width = catalogue
        .iter()
        .map(|r| r.id.len())
        .max()
        .unwrap_or(2)
        .max(2);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<id_width$}  {:<6}  {:>9}  title",
        "id", "bench", "scenarios"
    );
    let (mut covered, mut not_testable, mut uncovered_testable) = (0, 0, 0);
    for (req, scenarios) in &coverage {
        let _ = writeln!(
            out,
            "{:<id_width$}  {:<6}  {:>9}  {}",
            req.id,
            req.bench.as_str(),
            scenarios.len(),
            req.title
        );
        for s in scenarios {
            let _ = writeln!(
                out,
                "{:indent$}scenario: {}  {}",
                "",
                s.location(),
                s.name,
                indent = id_width + 4
            );
        }
        if req.bench != Bench::Yes {
            let reason = req.reason.as_deref().unwrap_or("(no reason given)");
            write_wrapped(&mut out, id_width + 4, "reason: ", reason);
        }
        if let Some(when) = &req.applies_when {
            let _ = writeln!(
                out,
                "{:indent$}applies when: {when}",
                "",
                indent = id_width + 4
            );
        }
        if !scenarios.is_empty() {
            covered += 1;
        }
        match req.bench {
            Bench::No => not_testable += 1,
            Bench::Yes if scenarios.is_empty() => uncovered_testable += 1,
            _ => {}
        }
    }
    let _ = writeln!(
        out,
        "{} requirements, {covered} covered by scenarios, {not_testable} not bench-testable, \
         {uncovered_testable} bench-testable without a scenario",
        coverage.len()
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

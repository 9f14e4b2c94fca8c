//! The requirement catalogue: every requirement a verdict can trace to.
//!
//! The catalogue is data (`features/catalogue.yaml`), not code, because its titles are
//! working titles written from public summaries of the standards and a lab holding the
//! standards' texts must be able to correct them. Each entry also says whether a bench
//! can decide the requirement (`bench: yes | partly | no`) and, when it cannot fully,
//! why not and what evidence is needed instead, so a report can list what the rig did
//! *not* test.
//!
//! A `bench: partly` requirement that no scenario covers carries `no_scenario`: what
//! the bench part would need and why it is not automated.
//!
//! [`Catalogue::load`] rejects unknown fields, duplicate ids, ids whose prefix is not a
//! known standard, a `standard` that does not match the id's prefix, unknown assessment
//! kinds, a missing `reason` where `bench` is not `yes`, and a `no_scenario` that is
//! blank or on a requirement that is not `bench: partly`. Every error names the file
//! and the requirement. Whether `no_scenario` is stale (a scenario covers the
//! requirement after all) needs the scenario library; see
//! [`crate::features::coverage_problems`].
//!
//! [`load_profile_failures`] reads the `expected_failures` of the device profiles, the
//! requirements each profile is known to fail.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Short names of the standards an id may start with (`<short>:<requirement>`), with
/// a text the `standard` field must contain once spaces are removed and case ignored.
pub const STANDARDS: &[(&str, &str)] = &[
    ("EN18031-1", "EN18031-1"),
    ("EN18031-2", "EN18031-2"),
    ("EN18031-3", "EN18031-3"),
    ("EN303645", "EN303645"),
    ("SAFETY", "SAFETY"),
];

/// Assessment kinds an entry may list: the three of EN 18031 and the two of
/// TS 103 701 (EN 303 645), which the safety checks use too.
pub const ASSESSMENT_KINDS: &[&str] = &[
    "conceptual",
    "functional-completeness",
    "functional-sufficiency",
    "functional",
];

/// Environment variable naming the features directory (holding `catalogue.yaml` and
/// the `.feature` files) instead of `<repo>/features`.
pub const FEATURES_ENV: &str = "REDRIG_FEATURES";

/// Can a bench decide the requirement?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bench {
    /// The rig can decide it on the device.
    Yes,
    /// The rig covers part of it; the rest needs documents or manual work.
    Partly,
    /// Not decidable on a bench (documentation, process, not applicable to a watch).
    No,
}

impl Bench {
    pub fn as_str(self) -> &'static str {
        match self {
            Bench::Yes => "yes",
            Bench::Partly => "partly",
            Bench::No => "no",
        }
    }
}

impl fmt::Display for Bench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One catalogue entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    /// `<standard short>:<requirement>`, e.g. `EN18031-1:SCM-3`, `SAFETY:SOS-1`.
    pub id: String,
    /// The document, e.g. `EN 18031-1:2024`.
    pub standard: String,
    /// Working title (the standards' own texts are not public).
    pub title: String,
    /// Mechanism or provision group.
    pub group: String,
    /// Assessment kinds, see [`ASSESSMENT_KINDS`].
    pub assessment: Vec<String>,
    pub bench: Bench,
    /// Why a bench cannot (fully) decide it and what evidence is needed instead;
    /// required unless `bench: yes`.
    #[serde(default)]
    pub reason: Option<String>,
    /// The condition under which the requirement applies, if it does not always.
    #[serde(default)]
    pub applies_when: Option<String>,
    /// Only for `bench: partly` requirements no scenario covers: what the bench part
    /// would need and why it is not automated.
    #[serde(default)]
    pub no_scenario: Option<String>,
}

impl Requirement {
    /// The standard's short name: the part of the id before the first `:`.
    pub fn standard_short(&self) -> &str {
        self.id.split_once(':').map(|(s, _)| s).unwrap_or(&self.id)
    }

    /// The requirement within its standard: the part of the id after the first `:`.
    pub fn local_id(&self) -> &str {
        self.id.split_once(':').map(|(_, r)| r).unwrap_or("")
    }
}

/// One thing wrong with one catalogue entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueProblem {
    /// 1-based position of the entry in `requirements:`.
    pub entry: usize,
    /// The entry's id, if it has a readable one.
    pub id: Option<String>,
    pub detail: String,
}

impl fmt::Display for CatalogueProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.id {
            Some(id) => write!(
                f,
                "requirement `{id}` (entry {}): {}",
                self.entry, self.detail
            ),
            None => write!(f, "entry {} (no id): {}", self.entry, self.detail),
        }
    }
}

#[derive(Debug, Error)]
pub enum CatalogueError {
    #[error("{}: cannot read the requirement catalogue: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not YAML, or not a mapping with a `requirements:` list.
    #[error("{}: {detail}", path.display())]
    Syntax { path: PathBuf, detail: String },
    /// Entries that are not valid requirements.
    #[error("{}: {}", path.display(), format_problems(problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<CatalogueProblem>,
    },
}

fn format_problems(problems: &[CatalogueProblem]) -> String {
    if problems.len() == 1 {
        return problems[0].to_string();
    }
    let mut s = format!("{} problems in the requirement catalogue:", problems.len());
    for p in problems {
        s.push_str("\n  ");
        s.push_str(&p.to_string());
    }
    s
}

/// The top level of the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    requirements: Vec<serde_yaml::Value>,
}

/// The loaded, validated catalogue, in file order.
#[derive(Debug, Clone)]
pub struct Catalogue {
    path: PathBuf,
    requirements: Vec<Requirement>,
    by_id: HashMap<String, usize>,
}

impl Catalogue {
    /// Reads and validates the catalogue at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Catalogue, CatalogueError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| CatalogueError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Catalogue::parse(&text, path)
    }

    /// Parses and validates catalogue text; `path` is used in messages and kept as
    /// [`Catalogue::path`].
    pub fn parse(text: &str, path: impl AsRef<Path>) -> Result<Catalogue, CatalogueError> {
        let path = path.as_ref().to_path_buf();
        let file: CatalogueFile =
            serde_yaml::from_str(text).map_err(|e| CatalogueError::Syntax {
                path: path.clone(),
                detail: format!("not a valid requirement catalogue: {e}"),
            })?;

        let mut problems = Vec::new();
        let mut requirements = Vec::new();
        // id -> entry number where it was first defined
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, value) in file.requirements.into_iter().enumerate() {
            let entry = i + 1;
            // The id as written, so even an entry that does not deserialize is named.
            let raw_id = value.get("id").and_then(|v| v.as_str()).map(str::to_string);
            let req: Requirement = match serde_yaml::from_value(value) {
                Ok(r) => r,
                Err(e) => {
                    problems.push(CatalogueProblem {
                        entry,
                        id: raw_id,
                        detail: e.to_string(),
                    });
                    continue;
                }
            };
            let mut problem = |detail: String| {
                problems.push(CatalogueProblem {
                    entry,
                    id: Some(req.id.clone()),
                    detail,
                })
            };
            validate(&req, &mut problem);
            if let Some(&first) = seen.get(&req.id) {
                problem(format!("duplicate id (first defined in entry {first})"));
                continue;
            }
            seen.insert(req.id.clone(), entry);
            requirements.push(req);
        }
        if !problems.is_empty() {
            return Err(CatalogueError::Invalid { path, problems });
        }
        let by_id = requirements
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone(), i))
            .collect();
        Ok(Catalogue {
            path,
            requirements,
            by_id,
        })
    }

    /// `$REDRIG_FEATURES/catalogue.yaml` if the variable is set and not empty, else
    /// `<repo>/features/catalogue.yaml`.
    pub fn default_path() -> PathBuf {
        features_dir().join("catalogue.yaml")
    }

    /// The file the catalogue was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, id: &str) -> Option<&Requirement> {
        self.by_id.get(id).map(|&i| &self.requirements[i])
    }

    pub fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// All requirements in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, Requirement> {
        self.requirements.iter()
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    pub fn len(&self) -> usize {
        self.requirements.len()
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

impl<'a> IntoIterator for &'a Catalogue {
    type Item = &'a Requirement;
    type IntoIter = std::slice::Iter<'a, Requirement>;
    fn into_iter(self) -> Self::IntoIter {
        self.requirements.iter()
    }
}

/// The features directory: `$REDRIG_FEATURES` if set and not empty, else
/// `<repo>/features`.
pub fn features_dir() -> PathBuf {
    match std::env::var_os(FEATURES_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("features"),
    }
}

/// Profile files larger than this are not read (profiles are a few kilobytes).
pub const MAX_PROFILE_BYTES: u64 = 1 << 20;

/// The requirements one device profile declares it must fail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProfileFailures {
    /// The profile's name: the file stem, e.g. `covert-monitor`.
    pub profile: String,
    /// The profile file.
    pub path: PathBuf,
    /// Its `expected_failures:` ids, as written.
    pub expected_failures: Vec<String>,
}

/// A device profile whose `expected_failures` cannot be read.
#[derive(Debug, Error)]
#[error("{}: {detail}", path.display())]
pub struct ProfileFailuresError {
    pub path: PathBuf,
    pub detail: String,
}

/// Reads `expected_failures:` of every `*.yaml` profile directly in `dir` (hidden
/// files skipped), sorted by profile name.
///
/// Only that key is looked at, so a profile that the full profile validation
/// (`crate::config`) would reject still contributes its list. A missing or null key
/// is an empty list; anything but a list of strings is an error naming the file, as
/// is a file over [`MAX_PROFILE_BYTES`]. Whether the ids are in the catalogue is
/// checked by [`crate::features::coverage_problems`].
pub fn load_profile_failures(dir: &Path) -> Result<Vec<ProfileFailures>, ProfileFailuresError> {
    let err = |path: &Path, detail: String| ProfileFailuresError {
        path: path.to_path_buf(),
        detail,
    };
    let entries = std::fs::read_dir(dir)
        .map_err(|e| err(dir, format!("cannot read the device profiles: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| err(dir, format!("cannot read the device profiles: {e}")))?;
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && path.extension().is_some_and(|x| x == "yaml") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    let mut out = Vec::with_capacity(files.len());
    for path in files {
        let len = std::fs::metadata(&path)
            .map_err(|e| err(&path, format!("cannot read: {e}")))?
            .len();
        if len > MAX_PROFILE_BYTES {
            return Err(err(
                &path,
                format!("{len} bytes; a device profile is at most {MAX_PROFILE_BYTES}"),
            ));
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| err(&path, format!("cannot read: {e}")))?;
        let expected_failures = parse_expected_failures(&text).map_err(|d| err(&path, d))?;
        let profile = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push(ProfileFailures {
            profile,
            path,
            expected_failures,
        });
    }
    Ok(out)
}

/// `expected_failures:` of one profile's text.
fn parse_expected_failures(text: &str) -> Result<Vec<String>, String> {
    let doc: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    let list = match doc.get("expected_failures") {
        None | Some(serde_yaml::Value::Null) => return Ok(Vec::new()),
        Some(serde_yaml::Value::Sequence(list)) => list,
        Some(_) => return Err("expected_failures must be a list of requirement ids".into()),
    };
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_str().map(str::to_string).ok_or_else(|| {
                format!("expected_failures[{i}] must be a requirement id like EN18031-1:SCM-3")
            })
        })
        .collect()
}

/// Uppercase without whitespace, for comparing `standard` with the id prefix.
fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_uppercase)
        .collect()
}

fn validate(req: &Requirement, problem: &mut impl FnMut(String)) {
    match req.id.split_once(':') {
        None => problem("id must be `<standard>:<requirement>`, e.g. `EN18031-1:SCM-3`".into()),
        Some((prefix, local)) => {
            match STANDARDS.iter().find(|(short, _)| *short == prefix) {
                None => {
                    let known: Vec<&str> = STANDARDS.iter().map(|(s, _)| *s).collect();
                    problem(format!(
                        "unknown standard `{prefix}` in the id (known: {})",
                        known.join(", ")
                    ));
                }
                Some((_, needle)) => {
                    if !squash(&req.standard).contains(needle) {
                        problem(format!(
                            "standard `{}` does not match the id's prefix `{prefix}`",
                            req.standard
                        ));
                    }
                }
            }
            // Ids end up in tag expressions (`@req:<id>`), where whitespace, `@`,
            // parentheses and backslashes have a meaning.
            let ok = |c: char| c.is_ascii_alphanumeric() || "-._:".contains(c);
            if local.is_empty() || !local.chars().all(ok) {
                problem(format!(
                    "requirement part `{local}` of the id must be non-empty and use only \
                     letters, digits, `-`, `.`, `_` and `:`"
                ));
            }
        }
    }
    if req.title.trim().is_empty() {
        problem("title is empty".into());
    }
    if req.group.trim().is_empty() {
        problem("group is empty".into());
    }
    if req.assessment.is_empty() {
        problem(format!(
            "assessment is empty (kinds: {})",
            ASSESSMENT_KINDS.join(", ")
        ));
    }
    for kind in &req.assessment {
        if !ASSESSMENT_KINDS.contains(&kind.as_str()) {
            problem(format!(
                "unknown assessment kind `{kind}` (kinds: {})",
                ASSESSMENT_KINDS.join(", ")
            ));
        }
    }
    let has_reason = req.reason.as_deref().is_some_and(|r| !r.trim().is_empty());
    if req.bench != Bench::Yes && !has_reason {
        problem(format!(
            "bench is `{}` but no reason is given: say why a bench cannot (fully) test it \
             and what evidence is needed instead",
            req.bench
        ));
    }
    if let Some(text) = &req.no_scenario {
        if text.trim().is_empty() {
            problem(
                "no_scenario is empty (leave it out or null if a scenario covers the requirement)"
                    .into(),
            );
        } else if req.bench != Bench::Partly {
            problem(format!(
                "no_scenario is only for `bench: partly` requirements, this one is `{}` \
                 (a `yes` requirement needs a scenario; for `no`, `reason` says why)",
                req.bench
            ));
        }
    }
    if req
        .applies_when
        .as_deref()
        .is_some_and(|a| a.trim().is_empty())
    {
        problem(
            "applies_when is empty (leave it out or null if the requirement always applies)".into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, standard: &str, bench: &str, reason: &str) -> String {
        format!(
            "  - id: \"{id}\"\n    standard: \"{standard}\"\n    title: \"t\"\n    group: \"g\"\n    \
             assessment: [conceptual]\n    bench: {bench}\n    reason: {reason}\n"
        )
    }

    fn parse(entries: &[String]) -> Result<Catalogue, CatalogueError> {
        Catalogue::parse(&format!("requirements:\n{}", entries.concat()), "test.yaml")
    }

    #[test]
    fn bench_words_parse_as_strings_not_booleans() {
        let c = parse(&[
            entry("EN18031-1:SCM-3", "EN 18031-1:2024", "yes", "null"),
            entry("EN18031-1:SSM-1", "EN 18031-1:2024", "partly", "\"r\""),
            entry("EN18031-1:NMM-1", "EN 18031-1:2024", "no", "\"r\""),
        ])
        .unwrap();
        let benches: Vec<Bench> = c.iter().map(|r| r.bench).collect();
        assert_eq!(benches, [Bench::Yes, Bench::Partly, Bench::No]);
        assert_eq!(c.get("EN18031-1:SCM-3").unwrap().local_id(), "SCM-3");
        assert_eq!(
            c.get("EN18031-1:NMM-1").unwrap().standard_short(),
            "EN18031-1"
        );
        assert!(c.get("EN18031-1:SCM-4").is_none());
    }

    #[test]
    fn standard_must_match_prefix() {
        let e = parse(&[entry("EN18031-2:SCM-3", "EN 18031-1:2024", "yes", "null")]).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("`EN18031-2:SCM-3`") && msg.contains("does not match"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_field_names_the_entry() {
        let text = format!(
            "requirements:\n{}    titel: \"typo\"\n",
            entry("EN303645:5.1-1", "ETSI EN 303 645", "yes", "null")
        );
        let msg = Catalogue::parse(&text, "x.yaml").unwrap_err().to_string();
        assert!(
            msg.contains("x.yaml") && msg.contains("EN303645:5.1-1") && msg.contains("titel"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_assessment_kind_rejected() {
        let text = entry(
            "SAFETY:SOS-1",
            "redrig functional safety checks",
            "yes",
            "null",
        )
        .replace("[conceptual]", "[functional-sufficency]");
        let msg = parse(&[text]).unwrap_err().to_string();
        assert!(
            msg.contains("SAFETY:SOS-1") && msg.contains("functional-sufficency"),
            "{msg}"
        );
    }

    #[test]
    fn blank_reason_is_no_reason() {
        let msg = parse(&[entry(
            "EN18031-1:SSM-1",
            "EN 18031-1:2024",
            "partly",
            "\"  \"",
        )])
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("EN18031-1:SSM-1") && msg.contains("no reason"),
            "{msg}"
        );
    }

    #[test]
    fn id_with_space_rejected() {
        let msg = parse(&[entry("EN18031-1:SCM 3", "EN 18031-1:2024", "yes", "null")])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("EN18031-1:SCM 3"), "{msg}");
    }

    #[test]
    fn all_problems_reported_together() {
        let e = parse(&[
            entry("EN18031-1:SSM-1", "EN 18031-1:2024", "no", "null"),
            entry("FOO:X-1", "Foo", "yes", "null"),
        ])
        .unwrap_err();
        match e {
            CatalogueError::Invalid { problems, .. } => {
                assert_eq!(problems.len(), 2, "{problems:?}");
                assert_eq!(problems[0].entry, 1);
                assert_eq!(problems[1].id.as_deref(), Some("FOO:X-1"));
            }
            other => panic!("expected Invalid, got {other}"),
        }
    }

    #[test]
    fn no_scenario_only_on_partly_and_not_blank() {
        let with = |bench: &str, text: &str| {
            let reason = if bench == "yes" { "null" } else { "\"r\"" };
            format!(
                "{}    no_scenario: {text}\n",
                entry("EN18031-1:CCK-2", "EN 18031-1:2024", bench, reason)
            )
        };
        let c = parse(&[with("partly", "\"needs two units\"")]).unwrap();
        assert_eq!(
            c.get("EN18031-1:CCK-2").unwrap().no_scenario.as_deref(),
            Some("needs two units")
        );
        for bench in ["yes", "no"] {
            let msg = parse(&[with(bench, "\"x\"")]).unwrap_err().to_string();
            assert!(
                msg.contains("EN18031-1:CCK-2") && msg.contains("only for `bench: partly`"),
                "{msg}"
            );
        }
        let msg = parse(&[with("partly", "\" \"")]).unwrap_err().to_string();
        assert!(msg.contains("no_scenario is empty"), "{msg}");
    }

    #[test]
    fn expected_failures_read_leniently_and_checked_for_shape() {
        assert_eq!(
            parse_expected_failures("device: {}\nexpected_failures: [A:B-1, C:D-2]\n").unwrap(),
            ["A:B-1", "C:D-2"]
        );
        assert!(parse_expected_failures("device: {}\n").unwrap().is_empty());
        assert!(parse_expected_failures("expected_failures: null\n")
            .unwrap()
            .is_empty());
        let e = parse_expected_failures("expected_failures: [A:B-1, {x: 1}]\n").unwrap_err();
        assert!(e.contains("expected_failures[1]"), "{e}");
        assert!(parse_expected_failures("expected_failures: A:B-1\n").is_err());
        assert!(parse_expected_failures("[unclosed").is_err());
    }

    #[test]
    fn profile_failures_sorted_and_named_by_stem() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.yaml"), "expected_failures: [X:Y-1]\n").unwrap();
        std::fs::write(dir.path().join("a.yaml"), "expected_failures: []\n").unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), "expected_failures: [Z]\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "expected_failures: [Z]\n").unwrap();
        let p = load_profile_failures(dir.path()).unwrap();
        let names: Vec<&str> = p.iter().map(|p| p.profile.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(p[1].expected_failures, ["X:Y-1"]);
        std::fs::write(dir.path().join("c.yaml"), "expected_failures: 3\n").unwrap();
        let e = load_profile_failures(dir.path()).unwrap_err().to_string();
        assert!(e.contains("c.yaml") && e.contains("list"), "{e}");
    }

    #[test]
    fn missing_requirements_key_is_a_syntax_error() {
        let e = Catalogue::parse("requirement: []\n", "y.yaml").unwrap_err();
        assert!(matches!(e, CatalogueError::Syntax { .. }), "{e}");
        assert!(e.to_string().starts_with("y.yaml: "), "{e}");
    }
}

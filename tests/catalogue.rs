//! The shipped requirement catalogue and the scenario-library index.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use redrig::catalogue::{load_profile_failures, Bench, Catalogue, CatalogueError, ProfileFailures};
use redrig::features::{
    coverage_problems, parse_tags, render_requirements, CoverageRule, FeatureIndex,
    RequirementsReport,
};

fn shipped_path() -> std::path::PathBuf {
    // Not `Catalogue::default_path()`: the shipped file is tested even if
    // REDRIG_FEATURES points elsewhere.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("features/catalogue.yaml")
}

fn yaml_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn entry(id: &str, standard: &str, bench: &str, reason: &str) -> String {
    format!(
        "  - id: \"{id}\"\n    standard: \"{standard}\"\n    title: \"Some title\"\n    group: \"G\"\n    \
         assessment: [conceptual, functional-sufficiency]\n    bench: {bench}\n    reason: {reason}\n    \
         applies_when: null\n"
    )
}

fn load_err(entries: &[String]) -> (String, String) {
    let f = yaml_file(&format!("requirements:\n{}", entries.concat()));
    let err = Catalogue::load(f.path()).expect_err("catalogue must be rejected");
    assert!(matches!(err, CatalogueError::Invalid { .. }), "{err}");
    (err.to_string(), f.path().display().to_string())
}

#[test]
fn shipped_catalogue_loads_and_explains_every_gap() {
    let c = Catalogue::load(shipped_path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.len() >= 100, "only {} requirements", c.len());
    for r in c.iter() {
        if r.bench != Bench::Yes {
            let reason = r.reason.as_deref().unwrap_or("");
            assert!(
                reason.trim().len() >= 20,
                "{}: bench {} needs a real reason, got {reason:?}",
                r.id,
                r.bench
            );
        }
    }
    // The ones the brief names, with the classes it gives them.
    let expect = [
        ("EN18031-1:SCM-3", Bench::Yes),
        ("EN18031-1:AUM-1-1", Bench::Yes),
        ("EN18031-1:AUM-5-2", Bench::Yes),
        ("EN18031-1:AUM-4", Bench::Partly),
        ("EN18031-1:NMM-1", Bench::No),
        ("EN18031-1:TCM-1", Bench::No),
        ("EN18031-1:GEC-8", Bench::Yes),
        ("EN18031-2:DLM-1", Bench::Yes),
        ("EN18031-2:UNM-1", Bench::Partly),
        ("EN303645:5.6-4", Bench::Yes),
        ("EN303645:5.2-1", Bench::No),
        ("EN303645:6-3", Bench::No),
        ("SAFETY:SOS-2", Bench::Yes),
        ("SAFETY:MON-1", Bench::Yes),
    ];
    for (id, bench) in expect {
        let r = c.get(id).unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(r.bench, bench, "{id}");
    }
    // EN 18031-2 drops RLM, NMM and TCM; EN 18031-3 applies only with payment features.
    for id in ["EN18031-2:RLM-1", "EN18031-2:NMM-1", "EN18031-2:TCM-1"] {
        assert!(c.get(id).is_none(), "{id} must not exist");
    }
    let en3: Vec<_> = c
        .iter()
        .filter(|r| r.standard_short() == "EN18031-3")
        .collect();
    assert!(!en3.is_empty());
    for r in en3 {
        assert!(
            r.applies_when.as_deref().unwrap_or("").contains("payment"),
            "{}",
            r.id
        );
        assert_ne!(r.bench, Bench::Yes, "{}", r.id);
    }
}

#[test]
fn default_path_points_at_the_features_dir() {
    let p = Catalogue::default_path();
    assert!(p.ends_with("catalogue.yaml"), "{}", p.display());
    if std::env::var_os("REDRIG_FEATURES").is_none() {
        assert_eq!(p, shipped_path());
    }
}

#[test]
fn duplicate_id_rejected_with_id_named() {
    let (msg, file) = load_err(&[
        entry("EN18031-1:SCM-3", "EN 18031-1:2024", "yes", "null"),
        entry("EN18031-1:SCM-4", "EN 18031-1:2024", "yes", "null"),
        entry("EN18031-1:SCM-3", "EN 18031-1:2024", "yes", "null"),
    ]);
    assert!(msg.contains(&file), "{msg}");
    assert!(
        msg.contains("`EN18031-1:SCM-3`") && msg.contains("duplicate"),
        "{msg}"
    );
    assert!(msg.contains("entry 3") && msg.contains("entry 1"), "{msg}");
    assert!(!msg.contains("SCM-4"), "{msg}");
}

#[test]
fn missing_reason_rejected_with_id_named() {
    for bench in ["partly", "no"] {
        let (msg, file) = load_err(&[
            entry("EN18031-1:SCM-3", "EN 18031-1:2024", "yes", "null"),
            entry("EN18031-1:SSM-2", "EN 18031-1:2024", bench, "null"),
        ]);
        assert!(msg.contains(&file), "{msg}");
        assert!(
            msg.contains("`EN18031-1:SSM-2`") && msg.contains("no reason"),
            "{msg}"
        );
        assert!(!msg.contains("SCM-3"), "{msg}");
    }
    // A `yes` entry without a reason is fine.
    let f = yaml_file(&format!(
        "requirements:\n{}",
        entry(
            "SAFETY:WL-1",
            "redrig functional safety checks",
            "yes",
            "null"
        )
    ));
    Catalogue::load(f.path()).unwrap();
}

#[test]
fn unknown_standard_prefix_rejected_with_id_named() {
    let (msg, file) = load_err(&[entry("EN18031-4:ACM-1", "EN 18031-4:2024", "yes", "null")]);
    assert!(msg.contains(&file), "{msg}");
    assert!(
        msg.contains("`EN18031-4:ACM-1`") && msg.contains("unknown standard `EN18031-4`"),
        "{msg}"
    );
}

#[test]
fn unknown_field_rejected_with_id_named() {
    let text = format!(
        "requirements:\n{}    owner: \"lab\"\n",
        entry("EN303645:5.13-1", "ETSI EN 303 645 V2.1.1", "yes", "null")
    );
    let f = yaml_file(&text);
    let msg = Catalogue::load(f.path()).unwrap_err().to_string();
    assert!(
        msg.contains("EN303645:5.13-1") && msg.contains("owner"),
        "{msg}"
    );
}

#[test]
fn missing_file_is_a_read_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.yaml");
    let err = Catalogue::load(&path).unwrap_err();
    assert!(matches!(err, CatalogueError::Read { .. }));
    assert!(err.to_string().contains("nope.yaml"), "{err}");
}

// ------------------------------------------------------------------ feature index

const COMMS: &str = "\
@req:EN18031-1:SCM-3 @assess:functional-sufficiency
Feature: Secure communication

  Scenario: No position in clear text
    Given a paired watch
    Then the capture holds no position in clear text

  @slow
  Scenario: No audio in clear text
    Given a paired watch
    Then the capture holds no audio in clear text

  Rule: Replay
    @req:EN18031-1:SCM-4
    Scenario: Replayed command is refused
      Given a captured command frame
      Then the replay is refused
";

const SMS: &str = "\
@sms
Feature: SMS commands

  @req:EN18031-1:AUM-5-1 @assess:functional-sufficiency
  Scenario Outline: Default password <pw> is refused
    When the rig sends \"pw,<pw>,ts#\"
    Then there is no answer

    Examples:
      | pw     |
      | 123456 |

      # more passwords seen in the field
      | 523681 |

    @slow @req:EN303645:5.1-1
    Examples: rare
      | pw     |
      | 654321 |

  Scenario: Untraced check
    Given nothing

  @req:EN18031-1:XYZ-9
  Scenario: Typo in requirement
    Given nothing
";

fn library() -> (tempfile::TempDir, FeatureIndex) {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("comms.feature"), COMMS).unwrap();
    fs::create_dir(dir.path().join("auth")).unwrap();
    fs::write(dir.path().join("auth/sms.feature"), SMS).unwrap();
    fs::write(dir.path().join("auth/notes.txt"), "not a feature").unwrap();
    let idx = FeatureIndex::scan(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    (dir, idx)
}

fn small_catalogue() -> Catalogue {
    let text = format!(
        "requirements:\n{}",
        [
            entry("EN18031-1:SCM-3", "EN 18031-1:2024", "yes", "null"),
            entry("EN18031-1:SCM-4", "EN 18031-1:2024", "yes", "null"),
            entry("EN18031-1:AUM-5-1", "EN 18031-1:2024", "yes", "null"),
            entry("EN18031-1:RLM-1", "EN 18031-1:2024", "yes", "null"),
            entry(
                "EN18031-1:NMM-1",
                "EN 18031-1:2024",
                "no",
                "\"Network equipment only; not a watch.\""
            ),
            entry("EN303645:5.1-1", "ETSI EN 303 645", "yes", "null"),
        ]
        .concat()
    );
    Catalogue::parse(&text, "cat.yaml").unwrap()
}

fn names(v: &[&redrig::features::ScenarioInfo]) -> Vec<String> {
    v.iter().map(|s| s.name.clone()).collect()
}

#[test]
fn scan_inherits_tags_expands_outlines_and_keeps_lines() {
    let (_dir, idx) = library();
    let got: Vec<(String, usize, String)> = idx
        .scenarios()
        .iter()
        .map(|s| (s.file.clone(), s.line, s.name.clone()))
        .collect();
    let want = [
        (
            "auth/sms.feature",
            11,
            "Default password 123456 is refused (example 1)",
        ),
        (
            "auth/sms.feature",
            14,
            "Default password 523681 is refused (example 2)",
        ),
        (
            "auth/sms.feature",
            19,
            "Default password 654321 is refused (example 3)",
        ),
        ("auth/sms.feature", 21, "Untraced check"),
        ("auth/sms.feature", 25, "Typo in requirement"),
        ("comms.feature", 4, "No position in clear text"),
        ("comms.feature", 9, "No audio in clear text"),
        ("comms.feature", 15, "Replayed command is refused"),
    ];
    let want: Vec<(String, usize, String)> = want
        .iter()
        .map(|(f, l, n)| (f.to_string(), *l, n.to_string()))
        .collect();
    assert_eq!(got, want);

    let by_name = |n: &str| {
        idx.scenarios()
            .iter()
            .find(|s| s.name.starts_with(n))
            .unwrap()
    };
    // Feature tags reach every scenario; Rule/Scenario/Examples tags add to them.
    let replay = by_name("Replayed");
    assert_eq!(replay.rule.as_deref(), Some("Replay"));
    assert_eq!(replay.req_ids, ["EN18031-1:SCM-3", "EN18031-1:SCM-4"]);
    assert_eq!(replay.assess, ["functional-sufficiency"]);
    assert_eq!(replay.feature, "Secure communication");
    let audio = by_name("No audio");
    assert_eq!(
        audio.tags,
        [
            "req:EN18031-1:SCM-3",
            "assess:functional-sufficiency",
            "slow"
        ]
    );
    let rare = by_name("Default password 654321");
    assert_eq!(rare.req_ids, ["EN18031-1:AUM-5-1", "EN303645:5.1-1"]);
    assert!(rare.has_tag("slow") && rare.has_tag("sms"));
    assert_eq!(rare.example, Some(3));
    let first = by_name("Default password 123456");
    assert_eq!(first.req_ids, ["EN18031-1:AUM-5-1"]);
    assert!(!first.has_tag("slow"));
    let untraced = by_name("Untraced");
    assert_eq!(untraced.tags, ["sms"]);
    assert!(untraced.req_ids.is_empty() && untraced.assess.is_empty());
}

#[test]
fn tag_expressions_filter_with_and_or_not() {
    let (_dir, idx) = library();
    let f = |e: &str| names(&idx.filter(&parse_tags(e).unwrap()));

    assert_eq!(
        f("@req:EN18031-1:SCM-3 and not @slow"),
        ["No position in clear text", "Replayed command is refused"]
    );
    assert_eq!(
        f("@req:EN18031-1:SCM-4 or @req:EN303645:5.1-1"),
        [
            "Default password 654321 is refused (example 3)",
            "Replayed command is refused"
        ]
    );
    assert_eq!(
        f("@slow and @req:EN18031-1:SCM-3"),
        ["No audio in clear text"]
    );
    assert_eq!(
        f("not @assess:functional-sufficiency"),
        ["Untraced check", "Typo in requirement"]
    );
    assert_eq!(
        f("(@slow or @req:EN18031-1:SCM-4) and not @req:EN18031-1:AUM-5-1").len(),
        2
    );
    assert!(f("@nothing").is_empty());
    assert!(parse_tags("@slow and").is_err());
}

#[test]
fn select_by_path_and_tags() {
    let (dir, idx) = library();
    let all = idx.select(&[dir.path().to_path_buf()], None);
    assert_eq!(all.len(), idx.scenarios().len());
    let auth = idx.select(&[dir.path().join("auth")], None);
    assert_eq!(auth.len(), 5);
    assert!(auth.iter().all(|s| s.file == "auth/sms.feature"));
    let slow = parse_tags("@slow").unwrap();
    let comms_slow = idx.select(&[dir.path().join("comms.feature")], Some(&slow));
    assert_eq!(names(&comms_slow), ["No audio in clear text"]);
    assert!(idx.select(&[dir.path().join("other")], None).is_empty());
}

#[test]
fn check_reports_unknown_requirement_with_file_and_line() {
    let (_dir, idx) = library();
    let cat = small_catalogue();
    let (errors, warnings) = idx.check_against(&cat);
    let unknown: Vec<&String> = errors
        .iter()
        .filter(|e| e.contains("not in the catalogue"))
        .collect();
    assert_eq!(unknown.len(), 1, "{:#?}", errors);
    assert!(
        unknown[0].starts_with("auth/sms.feature:25: "),
        "{}",
        unknown[0]
    );
    assert!(
        unknown[0].contains("@req:EN18031-1:XYZ-9") && unknown[0].contains("cat.yaml"),
        "{}",
        unknown[0]
    );

    let untraced: Vec<&String> = errors
        .iter()
        .filter(|e| e.contains("has no @req:"))
        .collect();
    assert_eq!(untraced.len(), 1, "{:#?}", errors);
    assert!(
        untraced[0].starts_with("auth/sms.feature:21: "),
        "{}",
        untraced[0]
    );
    assert_eq!(errors.len(), 2, "{:#?}", errors);

    // Only RLM-1 is bench-testable and uncovered; NMM-1 (bench: no) is not a gap.
    assert_eq!(warnings.len(), 1, "{:#?}", warnings);
    assert!(warnings[0].contains("EN18031-1:RLM-1"), "{}", warnings[0]);
}

fn profile(name: &str, ids: &[&str]) -> ProfileFailures {
    ProfileFailures {
        profile: name.into(),
        path: format!("devices/{name}.yaml").into(),
        expected_failures: ids.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn coverage_and_requirements_table() {
    let (_dir, idx) = library();
    let cat = small_catalogue();
    let cov = idx.coverage(&cat);
    assert_eq!(cov.len(), cat.len());
    let count = |id: &str| cov.iter().find(|(r, _)| r.id == id).unwrap().1.len();
    assert_eq!(count("EN18031-1:SCM-3"), 3);
    assert_eq!(count("EN18031-1:AUM-5-1"), 3);
    assert_eq!(count("EN303645:5.1-1"), 1);
    assert_eq!(count("EN18031-1:RLM-1"), 0);

    let profiles = [
        profile("clear", &["EN18031-1:SCM-3"]),
        profile("both", &["EN18031-1:SCM-3", "EN18031-1:SCM-4"]),
    ];
    let report = RequirementsReport::build(&cat, &idx, &profiles);
    let table = render_requirements(&report);
    assert!(
        table.contains("Network equipment only; not a watch."),
        "{table}"
    );
    assert!(
        table.contains("comms.feature:15  Replayed command is refused"),
        "{table}"
    );
    // Profiles sorted by name, under the requirement they fail.
    let scm3 = table
        .lines()
        .position(|l| l.starts_with("EN18031-1:SCM-3 "))
        .unwrap();
    let scm4 = table
        .lines()
        .position(|l| l.starts_with("EN18031-1:SCM-4 "))
        .unwrap();
    let failed_by: Vec<(usize, &str)> = table
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("failed by: "))
        .map(|(i, l)| (i, l.trim()))
        .collect();
    assert_eq!(
        failed_by,
        [
            (scm3 + 4, "failed by: both, clear"),
            (scm4 + 2, "failed by: both")
        ],
        "{table}"
    );
    // RLM-1 is `yes` without a scenario: a coverage problem, listed and counted.
    assert!(table.contains("coverage rules not met (1):"), "{table}");
    assert!(
        table.contains("    EN18031-1:RLM-1: `bench: yes` but no scenario"),
        "{table}"
    );
    let last: Vec<&str> = table.lines().rev().take(2).collect();
    assert_eq!(
        last,
        [
            "1 bench-testable without a scenario: 1 bench: yes, 0 bench: partly \
             (0 of them say why in no_scenario)",
            "6 requirements, 4 covered by scenarios, 1 not bench-testable",
        ]
    );
}

/// A catalogue and library where each coverage rule is broken exactly by the
/// requirements whose title says so.
fn rules_fixture() -> (
    tempfile::TempDir,
    Catalogue,
    FeatureIndex,
    Vec<ProfileFailures>,
) {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("a.feature"),
        "Feature: a\n\n  @req:EN18031-1:SCM-3\n  Scenario: yes covered\n    Given x\n\n  \
         @req:EN18031-1:SSM-1\n  Scenario: partly covered\n    Given x\n\n  \
         @req:EN18031-1:CCK-3\n  Scenario: partly covered but stale reason\n    Given x\n",
    )
    .unwrap();
    let idx = FeatureIndex::scan(dir.path()).unwrap();
    let partly = |id: &str, no_scenario: Option<&str>| {
        let mut e = entry(id, "EN 18031-1:2024", "partly", "\"bench covers part\"");
        if let Some(t) = no_scenario {
            e.push_str(&format!("    no_scenario: \"{t}\"\n"));
        }
        e
    };
    let text = format!(
        "requirements:\n{}",
        [
            entry("EN18031-1:SCM-3", "EN 18031-1:2024", "yes", "null"),
            entry("EN18031-1:SCM-4", "EN 18031-1:2024", "yes", "null"),
            partly("EN18031-1:SSM-1", None),
            partly("EN18031-1:SSM-3", None),
            partly("EN18031-1:CCK-2", Some("needs two units")),
            partly("EN18031-1:CCK-3", Some("was true once")),
            entry(
                "EN18031-1:NMM-1",
                "EN 18031-1:2024",
                "no",
                "\"not a router\""
            ),
        ]
        .concat()
    );
    let cat = Catalogue::parse(&text, "cat.yaml").unwrap();
    let profiles = vec![
        profile("good", &["EN18031-1:SCM-3"]),
        profile("typo", &["EN18031-1:SCM-33"]),
        profile("uncaught", &["EN18031-1:CCK-2", "EN18031-1:SCM-3"]),
    ];
    (dir, cat, idx, profiles)
}

#[test]
fn coverage_rules_name_each_breaking_requirement() {
    let (_dir, cat, idx, profiles) = rules_fixture();
    let problems = coverage_problems(&cat, &idx, &profiles);
    let got: Vec<(CoverageRule, &str)> = problems
        .iter()
        .map(|p| (p.rule, p.requirement.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (CoverageRule::YesNeedsScenario, "EN18031-1:SCM-4"),
            (CoverageRule::PartlyNeedsScenarioOrReason, "EN18031-1:SSM-3"),
            (CoverageRule::StaleNoScenario, "EN18031-1:CCK-3"),
            (CoverageRule::ExpectedFailureInCatalogue, "EN18031-1:SCM-33"),
            (CoverageRule::ExpectedFailureHasScenario, "EN18031-1:CCK-2"),
        ]
    );
    let text = |rule| {
        problems
            .iter()
            .find(|p| p.rule == rule)
            .unwrap()
            .detail
            .clone()
    };
    assert!(text(CoverageRule::StaleNoScenario).contains("a.feature:12"));
    assert!(text(CoverageRule::ExpectedFailureInCatalogue).contains("`typo`"));
    assert!(text(CoverageRule::ExpectedFailureHasScenario).contains("`uncaught`"));

    let report = RequirementsReport::build(&cat, &idx, &profiles);
    let s = report.summary;
    assert_eq!(
        (
            s.requirements,
            s.covered,
            s.not_bench_testable,
            s.bench_testable_without_scenario,
            s.yes_without_scenario,
            s.partly_without_scenario,
            s.partly_with_no_scenario_reason,
            s.problems
        ),
        (7, 3, 1, 3, 1, 2, 1, 5)
    );
}

#[test]
fn requirements_json_has_the_documented_shape() {
    let (_dir, cat, idx, profiles) = rules_fixture();
    let v = RequirementsReport::build(&cat, &idx, &profiles).to_json();
    let reqs = v["requirements"].as_array().unwrap();
    assert_eq!(reqs.len(), cat.len());
    let scm3 = &reqs[0];
    assert_eq!(scm3["id"], "EN18031-1:SCM-3");
    assert_eq!(scm3["title"], "Some title");
    assert_eq!(scm3["standard"], "EN 18031-1:2024");
    assert_eq!(scm3["bench"], "yes");
    assert!(scm3["reason"].is_null() && scm3["no_scenario"].is_null());
    assert_eq!(
        scm3["scenarios"],
        serde_json::json!([{"location": "a.feature:4", "name": "yes covered"}])
    );
    assert_eq!(scm3["profiles"], serde_json::json!(["good", "uncaught"]));
    let cck2 = reqs.iter().find(|r| r["id"] == "EN18031-1:CCK-2").unwrap();
    assert_eq!(cck2["bench"], "partly");
    assert_eq!(cck2["no_scenario"], "needs two units");
    assert_eq!(cck2["scenarios"], serde_json::json!([]));
    assert_eq!(v["summary"]["bench_testable_without_scenario"], 3);
    assert_eq!(v["problems"][0]["rule"], "yes-needs-scenario");
    assert_eq!(v["problems"][0]["requirement"], "EN18031-1:SCM-4");
}

#[test]
fn requirements_command_prints_json() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_redrig"))
        .args(["requirements", "--json"])
        .env_remove("REDRIG_FEATURES")
        .env_remove("REDRIG_FIXTURES")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stderr)));
    let cat = Catalogue::load(shipped_path()).unwrap();
    let ids: Vec<&str> = v["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = cat.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, want);
    // The profile with the RAPEX findings is named under one of its requirements.
    let acm1 = v["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "EN18031-1:ACM-1")
        .unwrap();
    assert!(
        acm1["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "safe-kid-one"),
        "{acm1}"
    );
    assert_eq!(
        v["summary"]["requirements"].as_u64(),
        Some(cat.len() as u64)
    );
}

/// The coverage rules on the shipped catalogue, library and device profiles. Lists
/// every requirement that breaks a rule, grouped by rule.
#[test]
fn shipped_library_meets_the_coverage_rules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cat = Catalogue::load(shipped_path()).unwrap_or_else(|e| panic!("{e}"));
    let idx = FeatureIndex::scan(root.join("features")).unwrap_or_else(|e| panic!("{e}"));
    let profiles =
        load_profile_failures(&root.join("fixtures/devices")).unwrap_or_else(|e| panic!("{e}"));
    assert!(profiles.len() >= 2, "no device profiles found");
    let problems = coverage_problems(&cat, &idx, &profiles);
    if problems.is_empty() {
        return;
    }
    let mut msg = format!("{} coverage problems:\n", problems.len());
    for rule in CoverageRule::ALL {
        let ids: Vec<&str> = problems
            .iter()
            .filter(|p| p.rule == rule)
            .map(|p| p.requirement.as_str())
            .collect();
        if !ids.is_empty() {
            msg.push_str(&format!(
                "\n{} ({}; {}):\n  {}\n",
                rule.description(),
                rule,
                ids.len(),
                ids.join("\n  ")
            ));
        }
    }
    msg.push_str("\ndetails:\n");
    for p in &problems {
        msg.push_str(&format!("  {p}\n"));
    }
    panic!("{msg}");
}

#[test]
fn broken_feature_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("bad.feature"), "Feature: x\n  Scenario Outline: y\n    Given <a>\n    Examples:\n      | a | b |\n      | 1 |\n").unwrap();
    let err = FeatureIndex::scan(dir.path()).unwrap_err().to_string();
    assert!(err.contains("bad.feature"), "{err}");
}

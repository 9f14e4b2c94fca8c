//! Scenario order: `redrig run --shuffle [SEED]`.
//!
//! [`SeededOrder`] is a cucumber [`Parser`] wrapping the basic one. Without a seed it
//! passes the basic parser's features through unchanged (files sorted by path,
//! scenarios in file order). With a seed it reorders the features, the rules within
//! each feature and the scenarios within each feature and rule (Scenario Outline rows
//! count as scenarios, as cucumber expands them before running).
//!
//! The order is a sort by a keyed hash: each feature's key depends only on the seed
//! and its path relative to the features directory, each scenario's only on the seed,
//! that path, its name and its line. So the same seed on the same library gives the
//! same order on any machine and checkout location, and adding a feature file does not
//! reorder the others among themselves. The hash is defined here (FNV-1a, then a
//! SplitMix64 finaliser), not taken from a library whose algorithm might change.
//!
//! Cucumber runs scenarios outside any Rule before those inside Rules, whatever the
//! order of the parsed feature; the order within each group is shuffled. With several
//! feature paths on the command line, each path is run in turn (as without
//! `--shuffle`) and shuffled within itself.

use std::hash::{BuildHasher as _, Hasher as _};
use std::path::{Path, PathBuf};
use std::vec;

use cucumber::gherkin;
use cucumber::parser::{self, Parser};
use futures::stream;

/// A cucumber parser: the basic parser's features, in a seeded order if a seed is
/// given.
#[derive(Debug, Clone, Default)]
pub struct SeededOrder {
    seed: Option<u64>,
    root: PathBuf,
    basic: parser::Basic,
}

impl SeededOrder {
    /// `seed: None` keeps the basic parser's order. `root` is the features directory
    /// the keys take feature paths relative to.
    pub fn new(seed: Option<u64>, root: impl Into<PathBuf>) -> SeededOrder {
        SeededOrder {
            seed,
            root: root.into(),
            basic: parser::Basic::new(),
        }
    }
}

impl<I: AsRef<Path>> Parser<I> for SeededOrder {
    type Cli = parser::basic::Cli;
    type Output = stream::Iter<vec::IntoIter<parser::Result<gherkin::Feature>>>;

    fn parse(self, input: I, cli: Self::Cli) -> Self::Output {
        let features: Vec<_> = self.basic.parse(input, cli).into_inner().collect();
        match self.seed {
            None => stream::iter(features),
            Some(seed) => stream::iter(shuffle_features(features, seed, &self.root)),
        }
    }
}

/// Reorders parsed features and their scenarios by `seed`; parse errors stay first,
/// in their order. `root` is the directory feature paths are made relative to.
pub fn shuffle_features(
    features: Vec<parser::Result<gherkin::Feature>>,
    seed: u64,
    root: &Path,
) -> Vec<parser::Result<gherkin::Feature>> {
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let (mut out, mut ok) = (Vec::new(), Vec::new());
    for f in features {
        match f {
            Ok(f) => ok.push(f),
            Err(e) => out.push(Err(e)),
        }
    }
    let mut keyed: Vec<(u64, String, gherkin::Feature)> = ok
        .into_iter()
        .map(|mut f| {
            let rel = relative_path(&f, &root);
            let file = rel.as_str();
            sort_by_key_stable(&mut f.scenarios, |s| {
                scenario_key(seed, file, &s.name, s.position.line)
            });
            for rule in &mut f.rules {
                sort_by_key_stable(&mut rule.scenarios, |s| {
                    scenario_key(seed, file, &s.name, s.position.line)
                });
            }
            sort_by_key_stable(&mut f.rules, |r| {
                key(
                    seed,
                    &[
                        file.as_bytes(),
                        b"rule",
                        r.name.as_bytes(),
                        &r.position.line.to_le_bytes(),
                    ],
                )
            });
            (feature_key(seed, file), rel, f)
        })
        .collect();
    // Ties (practically never) fall back to the path.
    keyed.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    out.extend(keyed.into_iter().map(|(_, _, f)| Ok(f)));
    out
}

/// The sort key of a feature file (`file`: relative to the features directory, `/`
/// between components, as `redrig list` shows it). Features run in ascending key
/// order.
pub fn feature_key(seed: u64, file: &str) -> u64 {
    key(seed, &[b"feature", file.as_bytes()])
}

/// The sort key of a scenario of `file` with `name` at `line` (for an outline row,
/// the expanded name and the row's line).
pub fn scenario_key(seed: u64, file: &str, name: &str, line: usize) -> u64 {
    key(
        seed,
        &[
            b"scenario",
            file.as_bytes(),
            name.as_bytes(),
            &(line as u64).to_le_bytes(),
        ],
    )
}

/// A seed for `--shuffle` given without one: from the process's random hasher keys,
/// the time and the process id.
pub fn random_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    h.finish()
}

/// The line a run prints and logs about its order, if shuffled.
pub fn describe(seed: Option<u64>) -> Option<String> {
    seed.map(|s| format!("scenario order: shuffled with seed {s} (repeat it with --shuffle {s})"))
}

/// `path` relative to `root` with `/` separators; the file name if it is not under
/// `root`; empty if the feature has no path.
fn relative_path(feature: &gherkin::Feature, root: &Path) -> String {
    let Some(path) = &feature.path else {
        return String::new();
    };
    let rel = path
        .strip_prefix(root)
        .ok()
        .or_else(|| path.file_name().map(Path::new))
        .unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn sort_by_key_stable<T>(items: &mut [T], mut k: impl FnMut(&T) -> u64) {
    // `sort_by_cached_key` is stable: equal keys keep their file order.
    items.sort_by_cached_key(|t| k(t));
}

/// FNV-1a over length-prefixed fields, mixed with the seed and finalised with
/// SplitMix64.
fn key(seed: u64, fields: &[&[u8]]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for f in fields {
        eat(&(f.len() as u64).to_le_bytes());
        eat(f);
    }
    splitmix64(h ^ splitmix64(seed))
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three features of six scenarios each (one an outline of two rows, one file
    /// with a Rule).
    fn library() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (file, rule) in [
            ("a.feature", false),
            ("sub/b.feature", true),
            ("c.feature", false),
        ] {
            let mut text = format!("Feature: {file}\n");
            for i in 0..4 {
                text.push_str(&format!("  Scenario: {file} s{i}\n    Given step {i}\n"));
            }
            text.push_str(&format!(
                "  Scenario Outline: {file} o<n>\n    Given step <n>\n    Examples:\n      | n |\n      | 1 |\n      | 2 |\n"
            ));
            if rule {
                text.push_str("  Rule: r\n    Scenario: in rule 1\n      Given x\n    Scenario: in rule 2\n      Given y\n");
            }
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    /// (feature name, scenario names in run order) as the parser yields them.
    fn order(dir: &Path, seed: Option<u64>) -> Vec<(String, Vec<String>)> {
        SeededOrder::new(seed, dir)
            .parse(dir, parser::basic::Cli::default())
            .into_inner()
            .map(|f| {
                let f = f.unwrap_or_else(|e| panic!("{e}"));
                let names = f
                    .scenarios
                    .iter()
                    .chain(f.rules.iter().flat_map(|r| &r.scenarios))
                    .map(|s| format!("{}@{}", s.name, s.position.line))
                    .collect();
                (f.name.clone(), names)
            })
            .collect()
    }

    fn flat(o: &[(String, Vec<String>)]) -> Vec<String> {
        o.iter().flat_map(|(_, s)| s.clone()).collect()
    }

    #[test]
    fn same_seed_same_order_and_nothing_lost() {
        let dir = library();
        let plain = order(dir.path(), None);
        let features: Vec<&str> = plain.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(features, ["a.feature", "c.feature", "sub/b.feature"]);
        assert_eq!(flat(&plain).len(), 3 * 6 + 2);
        let mut sorted_plain = flat(&plain);
        sorted_plain.sort();

        let mut differs = 0;
        for seed in [0, 1, 42, 7_000_000_007, u64::MAX] {
            let a = order(dir.path(), Some(seed));
            assert_eq!(a, order(dir.path(), Some(seed)), "seed {seed}");
            let mut all = flat(&a);
            all.sort();
            assert_eq!(
                all, sorted_plain,
                "seed {seed} lost or duplicated scenarios"
            );
            // Scenarios stay within their feature.
            for (f, names) in &a {
                assert!(names
                    .iter()
                    .all(|n| n.starts_with(f.as_str()) || n.starts_with("in rule")));
            }
            if a != plain {
                differs += 1;
            }
        }
        // 20 scenarios in 3 features: the chance that a seed keeps file order is tiny.
        assert!(differs >= 4, "only {differs} of 5 seeds changed the order");
        assert_ne!(order(dir.path(), Some(1)), order(dir.path(), Some(2)));
    }

    #[test]
    fn feature_order_is_by_key_of_relative_path() {
        let dir = library();
        for seed in [3, 99] {
            let got: Vec<String> = order(dir.path(), Some(seed))
                .into_iter()
                .map(|(f, _)| f)
                .collect();
            let mut want = vec![
                "a.feature".to_string(),
                "c.feature".into(),
                "sub/b.feature".into(),
            ];
            want.sort_by_key(|f| feature_key(seed, f));
            assert_eq!(got, want, "seed {seed}");
        }
    }

    #[test]
    fn keys_depend_on_seed_and_fields() {
        assert_eq!(feature_key(5, "x.feature"), feature_key(5, "x.feature"));
        assert_ne!(feature_key(5, "x.feature"), feature_key(6, "x.feature"));
        assert_ne!(feature_key(5, "x.feature"), feature_key(5, "y.feature"));
        assert_ne!(scenario_key(5, "f", "n", 1), scenario_key(5, "f", "n", 2));
        // Field boundaries matter: ("ab","c") is not ("a","bc").
        assert_ne!(key(1, &[b"ab", b"c"]), key(1, &[b"a", b"bc"]));
    }

    #[test]
    fn describe_names_the_seed() {
        assert_eq!(describe(None), None);
        let line = describe(Some(1234)).unwrap();
        assert!(
            line.contains("seed 1234") && line.contains("--shuffle 1234"),
            "{line}"
        );
    }
}

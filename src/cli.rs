//! The smaller subcommands: `list`, `requirements`, `check`, `lab up`, `report`.

use crate::catalogue::Catalogue;
use crate::features::FeatureIndex;
use crate::verdict::exit;
use std::path::Path;

fn load_library() -> Result<(Catalogue, FeatureIndex), i32> {
    let catalogue = Catalogue::load(Catalogue::default_path()).map_err(|e| {
        eprintln!("requirement catalogue: {e}");
        exit::USAGE
    })?;
    let index = FeatureIndex::scan(crate::runner::features_dir()).map_err(|e| {
        eprintln!("scenario library: {e}");
        exit::USAGE
    })?;
    Ok((catalogue, index))
}

/// `redrig list`.
pub fn list(tags: Option<&str>) -> i32 {
    let (_, index) = match load_library() {
        Ok(l) => l,
        Err(c) => return c,
    };
    let filter = match tags.map(crate::features::parse_tags).transpose() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("--tags: {e}");
            return exit::USAGE;
        }
    };
    let scenarios: Vec<_> = match &filter {
        Some(f) => index.filter(f),
        None => index.scenarios().iter().collect(),
    };
    print!("{}", crate::features::render_list(&scenarios));
    exit::PASS
}

/// `redrig requirements [--json]`: the catalogue with each requirement's scenarios
/// and the device profiles (in `config::devices_dir()`) that expect its failure, the
/// coverage problems and a count line; with `json`, the same as one JSON document
/// ([`crate::features::RequirementsReport`]). Exits 3 if the catalogue, the library or
/// a profile cannot be read or a scenario's tags are wrong; broken coverage rules are
/// reported but do not change the exit code (the library is still being written;
/// `tests/catalogue.rs` enforces them).
pub fn requirements(json: bool) -> i32 {
    let (catalogue, index) = match load_library() {
        Ok(l) => l,
        Err(c) => return c,
    };
    let profiles = match crate::catalogue::load_profile_failures(&crate::config::devices_dir()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("device profiles: {e}");
            return exit::USAGE;
        }
    };
    let report = crate::features::RequirementsReport::build(&catalogue, &index, &profiles);
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("cannot write the report as JSON: {e}");
                return exit::USAGE;
            }
        }
    } else {
        print!("{}", crate::features::render_requirements(&report));
    }
    let (errors, _warnings) = index.check_against(&catalogue);
    for e in &errors {
        eprintln!("error: {e}");
    }
    if errors.is_empty() {
        exit::PASS
    } else {
        exit::USAGE
    }
}

/// `redrig check`.
pub fn check(rig: &Path, dut: Option<&str>, presence: bool) -> i32 {
    match crate::config::load_rig(rig, dut) {
        Err(e) => {
            eprintln!("{e}");
            exit::USAGE
        }
        Ok(loaded) => {
            let problems = if presence {
                crate::config::check_presence(&loaded)
            } else {
                Vec::new()
            };
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            if problems.is_empty() {
                println!(
                    "{}: OK (rig `{}`, device `{}` from {})",
                    rig.display(),
                    loaded.rig.rig.name,
                    loaded.device_name(),
                    loaded.device_path.display()
                );
                exit::PASS
            } else {
                for p in problems {
                    eprintln!("{p}");
                }
                exit::USAGE
            }
        }
    }
}

/// `redrig lab up`: start the virtual lab with the rig's network side, print the
/// wires, run until Ctrl-C.
pub async fn lab_up(rig_file: &Path, dut: Option<&str>, exe: &Path) -> i32 {
    let loaded = match crate::config::load_rig(rig_file, dut) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return exit::USAGE;
        }
    };
    crate::labshell::run(&loaded, exe).await
}

/// `redrig report RUN_DIR [--out FILE]`: draw the HTML report again from the run
/// directory's files. Without `--out` it writes `RUN_DIR/report.html`, and refuses if
/// that exists (the run's own report is sealed in its manifest; overwriting it would
/// make the bundle fail verification). Exit 0 written, 3 otherwise.
pub fn report(run_dir: &Path, out: Option<&Path>) -> i32 {
    let default = run_dir.join(crate::report::REPORT_FILE);
    let target = out.unwrap_or(&default);
    // Never write into a sealed run directory: it would no longer verify.
    let sealed_dir = target
        .parent()
        .map(|d| {
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            }
        })
        .is_some_and(|d| d.join(crate::bundle::MANIFEST).exists());
    if sealed_dir || (out.is_none() && default.exists()) {
        eprintln!(
            "{} is in a sealed run directory (or is the run's own report); give --out FILE outside it",
            target.display()
        );
        return exit::USAGE;
    }
    let signer = crate::report::manifest_signer(run_dir);
    match crate::report::write(run_dir, target, signer.as_deref()) {
        Ok(()) => {
            println!("report: {}", target.display());
            exit::PASS
        }
        Err(e) => {
            eprintln!("report: {e}");
            exit::USAGE
        }
    }
}

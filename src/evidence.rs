//! The run directory and its reports: `results.json`, `junit.xml`, `cucumber.json`,
//! `summary.txt`, the effective configuration and the run's own log. The drivers write
//! their raw evidence (console logs, modem transcript, NMEA fed, flows) into the same
//! directory.

use crate::catalogue::{Bench, Catalogue};
use crate::clock::Clock;
use crate::config::LoadedRig;
use crate::runner::recorder::ScenarioRecord;
use crate::strategy::Transition;
use crate::verdict::{RequirementVerdict, Verdict};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Schema identifier of `results.json` (documented in `docs/results-schema.md`).
pub const RESULTS_SCHEMA: &str = "redrig-results/1";

/// `runs/<UTC time>-<device>/`.
pub fn default_run_dir(started: &OffsetDateTime, loaded: &LoadedRig) -> PathBuf {
    let stamp = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        started.year(),
        started.month() as u8,
        started.day(),
        started.hour(),
        started.minute(),
        started.second()
    );
    let name = loaded
        .device_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| loaded.device_name().to_string());
    let device: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    PathBuf::from("runs").join(format!("{stamp}-{device}"))
}

/// The run's own log, `run.log`: one timestamped line per rig event.
pub struct RunLog {
    file: Mutex<Option<std::fs::File>>,
}

impl RunLog {
    pub fn open(dir: &Path) -> RunLog {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("run.log"))
            .ok();
        RunLog {
            file: Mutex::new(file),
        }
    }

    pub fn line(&self, text: impl AsRef<str>) {
        let now = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        if let Some(f) = self.file.lock().unwrap().as_mut() {
            let _ = writeln!(f, "{now} {}", text.as_ref());
        }
    }
}

/// A copy of the effective configuration, secrets redacted.
pub fn write_effective_config(dir: &Path, loaded: &LoadedRig) -> std::io::Result<()> {
    let v = loaded.effective_redacted();
    std::fs::write(
        dir.join("config.effective.json"),
        serde_json::to_vec_pretty(&v)?,
    )
}

/// SHA-256 of each image the strategy brought the device up with, in order, without
/// repeats: the image file's hash at the end of the run (`sha256`) names the file,
/// these name what the device received. Images a scenario flashes on purpose (a
/// tampered or older one) are in `flash.log`.
fn flashed_images(transitions: &[Transition]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in transitions {
        if t.to != crate::strategy::DeviceState::Flashed {
            continue;
        }
        let Some(sha) = t
            .detail
            .split("sha256 ")
            .nth(1)
            .map(|s| s.trim_end_matches(')').to_string())
        else {
            continue;
        };
        if out.last() != Some(&sha) {
            out.push(sha);
        }
    }
    out
}

/// What the manifest says about the run besides its files: the rig, the device's
/// identity (declared by its profile and, when the strategy saw it boot, as observed),
/// the firmware image, the effective configuration (secrets redacted), the times.
pub fn seal_info(info: &RunInfo, dir: &Path) -> crate::bundle::SealInfo {
    let loaded = info.loaded;
    let image = loaded.firmware_image();
    let observed: Vec<&str> = info
        .transitions
        .iter()
        .filter_map(|t| t.detail.strip_prefix("booted: "))
        .collect();
    crate::bundle::SealInfo {
        redrig_version: env!("CARGO_PKG_VERSION").to_string(),
        commit: crate::bundle::commit().to_string(),
        started: ts(&info.started),
        finished: ts(&info.finished),
        rig: json!({
            "name": loaded.rig.rig.name,
            "file": info.rig_file.display().to_string(),
            "time_scale": info.clock.scale,
            "device_clock": info.clock.to_arg(),
        }),
        device: json!({
            "profile": loaded.device_path.display().to_string(),
            "name": loaded.device_name(),
            "imei": loaded.device.device.imei,
            "observed_boot": observed.last(),
        }),
        firmware: json!({
            "image": image.display().to_string(),
            "size": std::fs::metadata(&image).ok().map(|m| m.len()),
            "sha256": crate::strategy::sha256_file(&image).ok(),
            "flashed_sha256": flashed_images(&info.transitions),
        }),
        config: std::fs::read(dir.join("config.effective.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| loaded.effective_redacted()),
    }
}

/// Facts about the run for the reports.
pub struct RunInfo<'a> {
    pub loaded: &'a LoadedRig,
    pub rig_file: &'a Path,
    pub started: OffsetDateTime,
    pub finished: OffsetDateTime,
    pub clock: Clock,
    pub interrupted: bool,
    pub exit_code: i32,
    pub tags: Option<String>,
    /// `--shuffle` seed, when the order was shuffled.
    pub shuffle: Option<u64>,
    pub transitions: Vec<Transition>,
    /// Wall time from the start of the run to its reports.
    pub wall: std::time::Duration,
    /// Of that, the wall time spent waiting on device time ([`crate::clock::time_waited`]).
    pub waited: std::time::Duration,
}

/// One requirement's line in the matrix.
pub struct RequirementRow {
    pub id: String,
    pub title: String,
    pub standard: String,
    pub bench: Bench,
    pub verdict: RequirementVerdict,
    pub scenarios: Vec<String>,
    pub reason: Option<String>,
}

/// Verdict per requirement: the worst of its scenarios; without a scenario,
/// `not tested` with the catalogue's reason. Requirements tagged by scenarios but
/// missing from the catalogue are listed too (so nothing is silently dropped).
pub fn requirement_matrix(
    scenarios: &[ScenarioRecord],
    catalogue: &Catalogue,
) -> Vec<RequirementRow> {
    let mut by_req: BTreeMap<&str, Vec<&ScenarioRecord>> = BTreeMap::new();
    for s in scenarios {
        for r in &s.requirements {
            by_req.entry(r.as_str()).or_default().push(s);
        }
    }
    let mut rows: Vec<RequirementRow> = catalogue
        .iter()
        .map(|req| {
            let covering = by_req.remove(req.id.as_str()).unwrap_or_default();
            let verdict = RequirementVerdict::from_scenarios(covering.iter().map(|s| s.verdict));
            let reason = match verdict {
                RequirementVerdict::NotTested => Some(match (&req.reason, &req.no_scenario) {
                    (Some(r), Some(n)) => format!("{r} Not automated: {n}"),
                    (Some(r), None) => r.clone(),
                    (None, Some(n)) => format!("Not automated: {n}"),
                    (None, None) => {
                        "no scenario in this run covers it (not selected, or not in the library)"
                            .into()
                    }
                }),
                _ => None,
            };
            RequirementRow {
                id: req.id.clone(),
                title: req.title.clone(),
                standard: req.standard.clone(),
                bench: req.bench,
                verdict,
                scenarios: covering.iter().map(|s| s.name.clone()).collect(),
                reason,
            }
        })
        .collect();
    for (id, covering) in by_req {
        rows.push(RequirementRow {
            id: id.to_string(),
            title: "(not in the catalogue)".into(),
            standard: String::new(),
            bench: Bench::Yes,
            verdict: RequirementVerdict::from_scenarios(covering.iter().map(|s| s.verdict)),
            scenarios: covering.iter().map(|s| s.name.clone()).collect(),
            reason: Some("scenario tag names a requirement the catalogue does not list".into()),
        });
    }
    rows
}

fn counts(scenarios: &[ScenarioRecord]) -> serde_json::Value {
    let n = |v: Verdict| scenarios.iter().filter(|s| s.verdict == v).count();
    json!({
        "total": scenarios.len(),
        "pass": n(Verdict::Pass),
        "fail": n(Verdict::Fail),
        "inconclusive": n(Verdict::Inconclusive),
        "not_applicable": n(Verdict::NotApplicable),
        "not_run": n(Verdict::NotRun),
    })
}

fn overall(code: i32) -> &'static str {
    match code {
        0 => "pass",
        1 => "fail",
        _ => "inconclusive",
    }
}

fn ts(t: &OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// `results.json`.
pub fn results_json(
    info: &RunInfo,
    scenarios: &[ScenarioRecord],
    catalogue: &Catalogue,
) -> serde_json::Value {
    let rows = requirement_matrix(scenarios, catalogue);
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| r.verdict == RequirementVerdict::Fail)
        .map(|r| r.id.as_str())
        .collect();
    let loaded = info.loaded;
    let image = loaded.firmware_image();
    json!({
        "schema": RESULTS_SCHEMA,
        "redrig_version": env!("CARGO_PKG_VERSION"),
        "redrig_commit": crate::bundle::commit(),
        "started": ts(&info.started),
        "finished": ts(&info.finished),
        "interrupted": info.interrupted,
        "verdict": overall(info.exit_code),
        "exit_code": info.exit_code,
        "tags": info.tags,
        "shuffle_seed": info.shuffle,
        "timing": {
            "wall_s": info.wall.as_secs_f64(),
            "device_waits_s": info.waited.as_secs_f64(),
            "rig_overhead_s": info.wall.saturating_sub(info.waited).as_secs_f64(),
        },
        "rig": {
            "name": loaded.rig.rig.name,
            "file": info.rig_file.display().to_string(),
            "time_scale": info.clock.scale,
            "device_clock": info.clock.to_arg(),
        },
        "device": {
            "profile": loaded.device_path.display().to_string(),
            "name": loaded.device_name(),
            "imei": loaded.device.device.imei,
            "firmware_image": image.display().to_string(),
            "firmware_sha256": crate::strategy::sha256_file(&image).ok(),
        },
        "counts": counts(scenarios),
        "failed_requirements": failed,
        "requirements": rows.iter().map(|r| json!({
            "id": r.id,
            "title": r.title,
            "standard": r.standard,
            "bench": r.bench,
            "verdict": r.verdict,
            "scenarios": r.scenarios,
            "reason": r.reason,
        })).collect::<Vec<_>>(),
        "scenarios": scenarios,
        "strategy": info.transitions,
    })
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' && c != '\r' => out.push_str(
                &format!("&#x{:X};", c as u32)
                    .replace("&#x", "\\x")
                    .replace(';', ""),
            ),
            c => out.push(c),
        }
    }
    out
}

/// `junit.xml`: one testsuite per feature file, one testcase per scenario, requirement
/// ids as properties. `fail` → `<failure>`, `inconclusive` → `<error>`, `not-run` and
/// `not-applicable` → `<skipped>` with the reason.
pub fn junit_xml(info: &RunInfo, scenarios: &[ScenarioRecord]) -> String {
    let mut by_file: BTreeMap<&str, Vec<&ScenarioRecord>> = BTreeMap::new();
    for s in scenarios {
        by_file.entry(s.file.as_str()).or_default().push(s);
    }
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let total_failures = scenarios
        .iter()
        .filter(|s| s.verdict == Verdict::Fail)
        .count();
    let total_errors = scenarios
        .iter()
        .filter(|s| s.verdict == Verdict::Inconclusive)
        .count();
    x.push_str(&format!(
        "<testsuites name=\"redrig\" tests=\"{}\" failures=\"{total_failures}\" errors=\"{total_errors}\" timestamp=\"{}\">\n",
        scenarios.len(),
        ts(&info.started)
    ));
    for (file, list) in by_file {
        let failures = list.iter().filter(|s| s.verdict == Verdict::Fail).count();
        let errors = list
            .iter()
            .filter(|s| s.verdict == Verdict::Inconclusive)
            .count();
        let skipped = list
            .iter()
            .filter(|s| matches!(s.verdict, Verdict::NotRun | Verdict::NotApplicable))
            .count();
        let secs: f64 = list.iter().map(|s| s.wall_ms as f64 / 1000.0).sum();
        x.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{secs:.3}\">\n",
            xml_escape(file),
            list.len()
        ));
        for s in list {
            x.push_str(&format!(
                "    <testcase name=\"{}\" classname=\"{}\" file=\"{}\" line=\"{}\" time=\"{:.3}\">\n",
                xml_escape(&s.name),
                xml_escape(&s.feature),
                xml_escape(&s.file),
                s.line,
                s.wall_ms as f64 / 1000.0
            ));
            x.push_str("      <properties>\n");
            for r in &s.requirements {
                x.push_str(&format!(
                    "        <property name=\"requirement\" value=\"{}\"/>\n",
                    xml_escape(r)
                ));
            }
            for a in &s.assessment {
                x.push_str(&format!(
                    "        <property name=\"assessment\" value=\"{}\"/>\n",
                    xml_escape(a)
                ));
            }
            x.push_str(&format!(
                "        <property name=\"verdict\" value=\"{}\"/>\n",
                s.verdict
            ));
            for m in &s.measurements {
                x.push_str(&format!(
                    "        <property name=\"measurement\" value=\"{}\"/>\n",
                    xml_escape(&format!(
                        "{} = {} {} (limit {}) {}",
                        m.name,
                        m.value,
                        m.unit,
                        m.limit.as_deref().unwrap_or("none"),
                        m.outcome
                    ))
                ));
            }
            x.push_str("      </properties>\n");
            let msg = xml_escape(s.message.as_deref().unwrap_or(""));
            match s.verdict {
                Verdict::Fail => x.push_str(&format!(
                    "      <failure message=\"{msg}\" type=\"device\"/>\n"
                )),
                Verdict::Inconclusive => {
                    x.push_str(&format!("      <error message=\"{msg}\" type=\"rig\"/>\n"))
                }
                Verdict::NotRun | Verdict::NotApplicable => x.push_str(&format!(
                    "      <skipped message=\"{}: {msg}\"/>\n",
                    s.verdict
                )),
                Verdict::Pass => {}
            }
            x.push_str("    </testcase>\n");
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

/// `cucumber.json` in the Cucumber JSON report format.
pub fn cucumber_json(scenarios: &[ScenarioRecord]) -> serde_json::Value {
    let mut by_file: BTreeMap<&str, Vec<&ScenarioRecord>> = BTreeMap::new();
    for s in scenarios {
        by_file.entry(s.file.as_str()).or_default().push(s);
    }
    let features: Vec<serde_json::Value> = by_file
        .into_iter()
        .map(|(file, list)| {
            let name = list.first().map(|s| s.feature.clone()).unwrap_or_default();
            json!({
                "uri": file,
                "id": slug(&name),
                "keyword": "Feature",
                "name": name,
                "line": 1,
                "elements": list.iter().map(|s| json!({
                    "id": format!("{};{}", slug(&name), slug(&s.name)),
                    "keyword": "Scenario",
                    "type": "scenario",
                    "name": s.name,
                    "line": s.line,
                    "tags": s.tags.iter().map(|t| json!({"name": format!("@{t}"), "line": s.line})).collect::<Vec<_>>(),
                    "steps": s.steps.iter().map(|st| {
                        let status = match st.status { "passed" => "passed", "failed" => "failed", "skipped" => "undefined", _ => "skipped" };
                        let mut result = json!({"status": status, "duration": st.wall_ms * 1_000_000});
                        if let Some(m) = &st.message { result["error_message"] = json!(m); }
                        json!({"keyword": format!("{} ", st.keyword), "name": st.text, "line": st.line, "result": result})
                    }).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::Value::Array(features)
}

fn slug(s: &str) -> String {
    s.to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// The plain-text summary printed at the end of a run (and saved as `summary.txt`).
pub fn summary_text(
    info: &RunInfo,
    scenarios: &[ScenarioRecord],
    catalogue: &Catalogue,
    run_dir: &Path,
) -> String {
    let rows = requirement_matrix(scenarios, catalogue);
    let c = counts(scenarios);
    let mut s = String::new();
    s.push_str(&format!(
        "\nredrig: device {} on rig {}: {}\n",
        info.loaded.device_name(),
        info.loaded.rig.rig.name,
        overall(info.exit_code).to_uppercase()
    ));
    s.push_str(&format!(
        "scenarios: {} pass, {} fail, {} inconclusive, {} not applicable, {} not run\n",
        c["pass"], c["fail"], c["inconclusive"], c["not_applicable"], c["not_run"]
    ));
    let by = |v: RequirementVerdict| rows.iter().filter(|r| r.verdict == v).count();
    s.push_str(&format!(
        "requirements: {} pass, {} fail, {} inconclusive, {} not tested (see results.json for why)\n",
        by(RequirementVerdict::Pass),
        by(RequirementVerdict::Fail),
        by(RequirementVerdict::Inconclusive) + by(RequirementVerdict::NotRun),
        by(RequirementVerdict::NotTested)
    ));
    for r in rows
        .iter()
        .filter(|r| r.verdict == RequirementVerdict::Fail)
    {
        s.push_str(&format!("  FAIL {}  {}\n", r.id, r.title));
    }
    if info.interrupted {
        s.push_str("the run was interrupted; unfinished scenarios are inconclusive or not run\n");
    }
    s.push_str(&format!("evidence: {}\n", run_dir.display()));
    s
}

/// Write every report into the run directory.
pub fn write_reports(
    dir: &Path,
    info: &RunInfo,
    scenarios: &[ScenarioRecord],
    catalogue: &Catalogue,
) -> std::io::Result<()> {
    let results = results_json(info, scenarios, catalogue);
    write_atomic(
        &dir.join("results.json"),
        &serde_json::to_vec_pretty(&results)?,
    )?;
    write_atomic(
        &dir.join("junit.xml"),
        junit_xml(info, scenarios).as_bytes(),
    )?;
    write_atomic(
        &dir.join("cucumber.json"),
        &serde_json::to_vec_pretty(&cucumber_json(scenarios))?,
    )?;
    write_atomic(
        &dir.join("summary.txt"),
        summary_text(info, scenarios, catalogue, dir).as_bytes(),
    )?;
    Ok(())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escaping_keeps_the_document_well_formed() {
        assert_eq!(xml_escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
        assert_eq!(xml_escape("x\u{1}y"), "x\\x1y");
    }
}

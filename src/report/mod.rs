//! The HTML report, `report.html`: one self-contained file per run, drawn only from
//! the run directory's files — `results.json` (the documented schema), the event
//! journal `events.jsonl`, the gateway's `flows.jsonl` and the console logs. So a
//! report can be drawn again from a run directory alone (`redrig report`), and it
//! shows nothing that is not in the evidence.
//!
//! The page has no scripts and loads nothing: styles are inline, plots are inline SVG
//! ([`plots`]), and a content security policy forbids every external resource.
//! Links to evidence files are relative, so they work where the run directory is
//! opened.

pub mod html;
pub mod plots;

use serde::Deserialize;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// File name of the report in the run directory.
pub const REPORT_FILE: &str = "report.html";

/// Longest line read from an evidence file; the rest of a longer line is skipped.
pub const MAX_LINE: usize = 64 * 1024;
/// Most lines read from one evidence file.
pub const MAX_LINES: usize = 5_000_000;

/// Why a report could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a redrig results file: {source}")]
    Results {
        path: PathBuf,
        source: serde_json::Error,
    },
}

// ---- results.json, as documented in docs/results-schema.md ----

/// `results.json`. Every field has a default, so a report can be drawn from an
/// interrupted run's partial results, and from files of a later schema version.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Results {
    pub schema: String,
    pub redrig_version: String,
    pub redrig_commit: Option<String>,
    pub started: String,
    pub finished: String,
    pub interrupted: bool,
    pub verdict: String,
    pub exit_code: i32,
    pub tags: Option<String>,
    pub shuffle_seed: Option<u64>,
    pub rig: RigInfo,
    pub device: DeviceInfo,
    pub counts: Counts,
    pub failed_requirements: Vec<String>,
    pub requirements: Vec<Requirement>,
    pub scenarios: Vec<Scenario>,
    pub strategy: Vec<Transition>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RigInfo {
    pub name: String,
    pub file: String,
    pub time_scale: f64,
    pub device_clock: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DeviceInfo {
    pub profile: String,
    pub name: String,
    pub imei: String,
    pub firmware_image: String,
    pub firmware_sha256: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Counts {
    pub total: u64,
    pub pass: u64,
    pub fail: u64,
    pub inconclusive: u64,
    pub not_applicable: u64,
    pub not_run: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Requirement {
    pub id: String,
    pub title: String,
    pub standard: String,
    pub bench: String,
    pub verdict: String,
    pub scenarios: Vec<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Scenario {
    pub feature: String,
    pub file: String,
    pub name: String,
    pub line: usize,
    pub tags: Vec<String>,
    pub requirements: Vec<String>,
    pub assessment: Vec<String>,
    pub verdict: String,
    pub message: Option<String>,
    pub started: Option<String>,
    pub wall_ms: u64,
    pub device_start_ms: Option<u64>,
    pub device_end_ms: Option<u64>,
    pub steps: Vec<Step>,
    pub measurements: Vec<Measurement>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Step {
    pub keyword: String,
    pub text: String,
    pub line: usize,
    pub status: String,
    pub wall_ms: u64,
    pub message: Option<String>,
    pub device_start_ms: Option<u64>,
    pub device_end_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Measurement {
    pub name: String,
    /// `null` in the file when the value was not finite (e.g. no alarm arrived).
    pub value: Option<f64>,
    pub unit: String,
    pub limit: Option<String>,
    pub outcome: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Transition {
    pub t: u64,
    pub to: String,
    pub detail: String,
}

impl Scenario {
    /// The device-time window the scenario ran in, if it ran.
    pub fn window(&self) -> Option<(u64, u64)> {
        let s = self.device_start_ms?;
        Some((s, self.device_end_ms.unwrap_or(u64::MAX).max(s)))
    }

    /// Device time at which the first failed step started, if stamped.
    pub fn failed_step_start(&self) -> Option<u64> {
        self.steps
            .iter()
            .find(|s| s.status == "failed" || s.status == "skipped")
            .and_then(|s| s.device_start_ms)
    }

    /// Device time of the first failed step's end, else the scenario's end.
    pub fn failure_time(&self) -> Option<u64> {
        self.steps
            .iter()
            .find(|s| s.status == "failed" || s.status == "skipped")
            .and_then(|s| s.device_end_ms)
            .or(self.device_end_ms)
    }
}

/// Read `results.json` of a run directory.
pub fn read_results(dir: &Path) -> Result<Results, ReportError> {
    let path = dir.join("results.json");
    let bytes = std::fs::read(&path).map_err(|source| ReportError::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| ReportError::Results { path, source })
}

// ---- line-oriented evidence files ----

/// Call `f` with each line of `path` (without its line ending), at most
/// [`MAX_LINES`] lines, each cut at [`MAX_LINE`] bytes (the second argument says it
/// was cut). A missing file has no lines. Memory stays bounded whatever the file
/// holds: a 100 MB line without a newline is read in pieces and skipped.
pub fn for_each_line(path: &Path, mut f: impl FnMut(&[u8], bool)) -> std::io::Result<()> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut r = std::io::BufReader::with_capacity(64 * 1024, file);
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    let mut count = 0usize;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            if !line.is_empty() || cut {
                f(&line, cut);
            }
            return Ok(());
        }
        let (used, end) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let piece = &buf[..if end { used - 1 } else { used }];
        let room = MAX_LINE.saturating_sub(line.len());
        if piece.len() > room {
            cut = true;
        }
        line.extend_from_slice(&piece[..piece.len().min(room)]);
        r.consume(used);
        if end {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            f(&line, cut);
            line.clear();
            cut = false;
            count += 1;
            if count >= MAX_LINES {
                return Ok(());
            }
        }
    }
}

/// Most journal events read for the page; the rest are counted as not read.
pub const MAX_JOURNAL_EVENTS: usize = 1_000_000;

/// One line of `events.jsonl` ([`crate::journal`]).
#[derive(Debug, Clone)]
pub struct JournalEvent {
    pub t: u64,
    pub kind: String,
    pub fields: serde_json::Value,
}

/// The event journal; unparseable lines are counted, not fatal.
pub fn read_journal(dir: &Path) -> std::io::Result<(Vec<JournalEvent>, usize)> {
    let mut out = Vec::new();
    let mut bad = 0;
    for_each_line(&dir.join(crate::journal::EVENTS_FILE), |line, cut| {
        if cut || out.len() >= MAX_JOURNAL_EVENTS {
            bad += 1;
            return;
        }
        match serde_json::from_slice::<serde_json::Value>(line) {
            Ok(v) => match (v["t"].as_u64(), v["kind"].as_str()) {
                (Some(t), Some(kind)) => out.push(JournalEvent {
                    t,
                    kind: kind.to_string(),
                    fields: v,
                }),
                _ => bad += 1,
            },
            Err(_) => bad += 1,
        }
    })?;
    Ok((out, bad))
}

/// One line of `flows.jsonl` (the gateway's flow events). A `frame` event keeps no
/// frame text here.
#[derive(Debug, Clone)]
pub struct FlowEvent {
    pub t: u64,
    pub value: serde_json::Value,
}

/// Most flow events kept for the page; beyond it events are counted only.
pub const MAX_FLOW_EVENTS: usize = 500_000;
/// Most flows whose clear-text frames are counted one by one.
const MAX_COUNTED_FLOWS: usize = 100_000;

/// The gateway's flow events as the page uses them.
#[derive(Debug, Default)]
pub struct Flows {
    pub events: Vec<FlowEvent>,
    /// Watch-protocol frames seen in clear text, per flow id.
    pub frames: std::collections::BTreeMap<u64, u64>,
    /// Events beyond [`MAX_FLOW_EVENTS`], not kept.
    pub not_kept: usize,
    /// Lines that were not flow events.
    pub bad: usize,
}

/// Read `flows.jsonl`; memory stays bounded whatever the device made the gateway
/// record (frame texts are dropped, events past [`MAX_FLOW_EVENTS`] only counted).
pub fn read_flows(dir: &Path) -> std::io::Result<Flows> {
    let mut f = Flows::default();
    for_each_line(&dir.join("flows.jsonl"), |line, cut| {
        if cut {
            f.bad += 1;
            return;
        }
        let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(line) else {
            f.bad += 1;
            return;
        };
        let Some(t) = v["t"].as_u64() else {
            f.bad += 1;
            return;
        };
        let mut value = v["value"].take();
        if value["event"] == "frame" {
            if let Some(obj) = value.as_object_mut() {
                obj.remove("frame");
            }
            if let Some(id) = value["id"].as_u64() {
                if f.frames.len() < MAX_COUNTED_FLOWS || f.frames.contains_key(&id) {
                    *f.frames.entry(id).or_default() += 1;
                }
            }
        }
        if f.events.len() < MAX_FLOW_EVENTS {
            f.events.push(FlowEvent { t, value });
        } else {
            f.not_kept += 1;
        }
    })?;
    Ok(f)
}

/// Console logs in the run directory (`console-<name>.log`), sorted by name.
pub fn console_logs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("console-") && n.ends_with(".log"))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A window of console lines: those stamped in `[from, to]` device ms, at most
/// `max` of them (the last ones before `to` win).
#[derive(Debug, Clone)]
pub struct ExcerptWindow {
    pub from: u64,
    pub to: u64,
    pub max: usize,
}

/// One pass over a console log (`<device ms> <UTC> <text>` lines) collecting each
/// window's lines. Returns, per window, the lines and how many were left out.
pub fn console_excerpts(
    path: &Path,
    windows: &[ExcerptWindow],
) -> std::io::Result<Vec<(Vec<String>, usize)>> {
    let mut out: Vec<(std::collections::VecDeque<String>, usize)> = windows
        .iter()
        .map(|_| (std::collections::VecDeque::new(), 0))
        .collect();
    for_each_line(path, |line, cut| {
        let text = String::from_utf8_lossy(line);
        let Some(t) = text.split(' ').next().and_then(|n| n.parse::<u64>().ok()) else {
            return;
        };
        for (w, (lines, dropped)) in windows.iter().zip(out.iter_mut()) {
            if t < w.from || t > w.to {
                continue;
            }
            let mut shown: String = text.chars().take(400).collect();
            if cut || shown.len() < text.len() {
                shown.push_str(" …[cut]");
            }
            lines.push_back(shown);
            if lines.len() > w.max {
                lines.pop_front();
                *dropped += 1;
            }
        }
    })?;
    Ok(out
        .into_iter()
        .map(|(l, d)| (l.into_iter().collect(), d))
        .collect())
}

/// Draw the report of a run directory. `signer` is the fingerprint of the lab key
/// that signs (or signed) its manifest, `None` when the manifest is not signed.
pub fn render(dir: &Path, signer: Option<&str>) -> Result<String, ReportError> {
    html::render(dir, signer)
}

/// The signer named by the run directory's `manifest.json`, if it has a signed one.
pub fn manifest_signer(dir: &Path) -> Option<String> {
    let bytes = std::fs::read(dir.join(crate::bundle::MANIFEST)).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["signature"]["fingerprint"].as_str().map(String::from)
}

/// Draw the report and write it to `out` (atomically).
pub fn write(dir: &Path, out: &Path, signer: Option<&str>) -> Result<(), ReportError> {
    let page = render(dir, signer)?;
    let tmp = out.with_extension("html.tmp");
    let io = |source| ReportError::Io {
        path: out.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, page.as_bytes()).map_err(io)?;
    std::fs::rename(&tmp, out).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn long_lines_are_cut_and_memory_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(b"short\r\n").unwrap();
        f.write_all(&vec![b'a'; 3 * MAX_LINE + 5]).unwrap();
        f.write_all(b"\nlast").unwrap();
        drop(f);
        let mut seen = Vec::new();
        for_each_line(&p, |l, cut| seen.push((l.len(), cut))).unwrap();
        assert_eq!(seen, vec![(5, false), (MAX_LINE, true), (4, false)]);
    }

    #[test]
    fn excerpts_keep_the_last_lines_of_each_window() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("console-watch.log");
        let mut text = String::new();
        for t in 0..100 {
            text.push_str(&format!("{} 2026-01-01T00:00:00Z line {t}\n", t * 10));
        }
        text.push_str("garbage without a stamp\n");
        std::fs::write(&p, text).unwrap();
        let w = [
            ExcerptWindow {
                from: 100,
                to: 200,
                max: 3,
            },
            ExcerptWindow {
                from: 985,
                to: 5000,
                max: 10,
            },
        ];
        let ex = console_excerpts(&p, &w).unwrap();
        assert_eq!(ex[0].0.len(), 3);
        assert!(ex[0].0[2].ends_with("line 20"), "{:?}", ex[0]);
        assert_eq!(ex[0].1, 8);
        assert_eq!(ex[1].0.len(), 1);
        assert!(ex[1].0[0].ends_with("line 99"));
    }

    #[test]
    fn results_of_the_documented_shape_parse_and_unknown_fields_are_ignored() {
        let v = serde_json::json!({
            "schema": "redrig-results/1",
            "verdict": "fail",
            "future_field": {"x": 1},
            "scenarios": [{"name": "a", "verdict": "fail", "device_start_ms": 10,
                "steps": [{"status": "passed", "device_end_ms": 20},
                          {"status": "failed", "device_end_ms": 30}],
                "measurements": [{"name": "SOS alarm latency", "value": null, "unit": "s"}]}]
        });
        let r: Results = serde_json::from_value(v).unwrap();
        assert_eq!(r.scenarios[0].failure_time(), Some(30));
        assert_eq!(r.scenarios[0].window(), Some((10, u64::MAX)));
        assert_eq!(r.scenarios[0].measurements[0].value, None);
    }
}

//! Rendering `report.html` from a run directory ([`super`] says what it reads).
//!
//! Everything that came from the device or the run (names, messages, notes, console
//! lines, SMS text) is HTML-escaped; plots are SVG drawn by [`super::plots`] from
//! numbers only.

use super::plots::{self, LatencySample, ReceivedPoint, Span, TimelineEvent, TrackPoint};
use super::{
    console_excerpts, console_logs, read_flows, read_journal, read_results, ExcerptWindow,
    FlowEvent, Flows, JournalEvent, ReportError, Results, Scenario,
};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Console lines shown around a failure: from this many device ms before the failed
/// step started (or before the failure, whichever is earlier)…
const EXCERPT_BEFORE_MS: u64 = 10_000;
/// …to this many after it, at most [`EXCERPT_LINES`] lines.
const EXCERPT_AFTER_MS: u64 = 2_000;
const EXCERPT_LINES: usize = 40;
/// Rows of an SMS/call or traffic table per scenario.
const MAX_ROWS: usize = 50;

/// Lanes of the run timeline, in order.
pub const LANES: [&str; 11] = [
    "device state",
    "power",
    "buttons",
    "indicators",
    "screen",
    "cell",
    "SMS",
    "calls",
    "connections",
    "frames",
    "GNSS fix",
];

/// HTML-escape text (also quotes, so it is safe in attributes).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A relative link to a file of the run directory (path-escaped and HTML-escaped).
fn file_link(name: &str) -> String {
    let href: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("<a href=\"{}\">{}</a>", esc(&href), esc(name))
}

fn badge(verdict: &str) -> String {
    let class = match verdict {
        "pass" => "pass",
        "fail" => "fail",
        "inconclusive" | "not-run" => "inc",
        "not-applicable" => "na",
        _ => "nt",
    };
    format!(
        "<span class=\"v {class}\">{}</span>",
        esc(&verdict.replace('-', " "))
    )
}

fn secs(ms: u64) -> String {
    format!("{:.1}", ms as f64 / 1000.0)
}

fn fmt_value(v: Option<f64>) -> String {
    match v {
        None => "none".into(),
        Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{x:.0}"),
        Some(x) => format!("{x:.3}"),
    }
}

/// The worst verdict of a set of requirement verdicts, for a standard's line.
fn standard_verdict(verdicts: &[&str]) -> &'static str {
    let rank = |v: &str| match v {
        "fail" => 5,
        "inconclusive" => 4,
        "not-run" => 3,
        "pass" => 2,
        "not-applicable" => 1,
        _ => 0,
    };
    match verdicts.iter().map(|v| rank(v)).max().unwrap_or(0) {
        5 => "fail",
        4 => "inconclusive",
        3 => "not-run",
        2 => "pass",
        1 => "not-applicable",
        _ => "not-tested",
    }
}

/// The page.
pub fn render(dir: &Path, signer: Option<&str>) -> Result<String, ReportError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ReportError::Io { path, source }
    };
    let results = read_results(dir)?;
    let (journal, bad_journal) = read_journal(dir).map_err(io(&dir.join("events.jsonl")))?;
    let flows = read_flows(dir).map_err(io(&dir.join("flows.jsonl")))?;
    let files = list_files(dir);

    let mut page = String::with_capacity(256 * 1024);
    head(&mut page, &results);
    summary(
        &mut page,
        &results,
        bad_journal + flows.bad + flows.not_kept,
        signer,
    );
    matrix(&mut page, &results);
    plots_section(&mut page, &results, &journal, &flows.events);
    scenarios(&mut page, dir, &results, &journal, &flows)?;
    evidence_list(&mut page, &files);
    page.push_str("</main></body></html>\n");
    Ok(page)
}

fn head(p: &mut String, r: &Results) {
    let title = format!(
        "redrig report: {} on {} — {}",
        r.device.name,
        r.rig.name,
        r.verdict.to_uppercase()
    );
    let _ = write!(
        p,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{}</style></head>\n<body><main>\n",
        esc(&title),
        CSS
    );
}

const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1b1b1b;background:#fff}\
main{max-width:1200px;margin:0 auto;padding:1em 1.5em 4em}\
h1{font-size:1.5em;margin:.3em 0}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}\
table{border-collapse:collapse;margin:.5em 0;width:100%}th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top;font-size:.9em}\
th{background:#f4f4f4}td:first-child code{white-space:nowrap}td.num{text-align:right;font-variant-numeric:tabular-nums}\
.v{display:inline-block;padding:0 .45em;border-radius:.3em;font-weight:600;font-size:.85em;white-space:nowrap}\
.pass{background:#d7f0dc;color:#14532d}.fail{background:#fbd5d5;color:#7f1d1d}.inc{background:#fde9c4;color:#713f12}\
.na{background:#dbeafe;color:#1e3a8a}.nt{background:#e5e5e5;color:#333}\
.big{font-size:1.6em;padding:.1em .6em}\
pre{background:#f7f7f7;border:1px solid #e3e3e3;padding:.5em;overflow-x:auto;font-size:.8em;line-height:1.3}\
details{border:1px solid #ddd;border-radius:.3em;margin:.6em 0;padding:.3em .8em}\
summary{cursor:pointer;font-weight:600}.muted{color:#666}.msg{font-weight:600}\
.plot svg{max-width:100%;height:auto}figure{margin:1em 0}figcaption{color:#555;font-size:.9em}\
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em}dl.kv dt{font-weight:600}dl.kv dd{margin:0;word-break:break-all}";

fn summary(p: &mut String, r: &Results, bad_lines: usize, signer: Option<&str>) {
    let _ = writeln!(
        p,
        "<h1>Conformance test report</h1>\n<p>{} <span class=\"muted\">exit code {}</span></p>",
        {
            let v = r.verdict.as_str();
            let class = match v {
                "pass" => "pass",
                "fail" => "fail",
                _ => "inc",
            };
            format!(
                "<span class=\"v big {class}\">{}</span>",
                esc(&v.to_uppercase())
            )
        },
        r.exit_code
    );
    let tested = r
        .requirements
        .iter()
        .filter(|q| q.verdict != "not-tested")
        .count();
    let _ = writeln!(
        p,
        "<p class=\"msg\">This run tested {tested} of the catalogue's {} requirements; the other {} were not tested and are not part of this verdict.</p>",
        r.requirements.len(),
        r.requirements.len() - tested
    );
    p.push_str("<dl class=\"kv\">");
    let mut kv = |k: &str, v: String| {
        let _ = write!(p, "<dt>{}</dt><dd>{}</dd>", esc(k), v);
    };
    kv("Device", esc(&r.device.name));
    kv("IMEI", esc(&r.device.imei));
    kv("Device profile", esc(&r.device.profile));
    kv("Firmware image", esc(&r.device.firmware_image));
    kv(
        "Firmware SHA-256",
        r.device
            .firmware_sha256
            .as_deref()
            .map(|h| format!("<code>{}</code>", esc(h)))
            .unwrap_or_else(|| "unknown (image not readable)".into()),
    );
    kv(
        "Rig",
        format!(
            "{} <span class=\"muted\">({})</span>",
            esc(&r.rig.name),
            esc(&r.rig.file)
        ),
    );
    kv(
        "Time",
        format!(
            "{} to {} (UTC); device time runs {}× wall time",
            esc(&r.started),
            esc(&r.finished),
            r.rig.time_scale
        ),
    );
    kv(
        "redrig",
        format!(
            "{}{}",
            esc(&r.redrig_version),
            r.redrig_commit
                .as_deref()
                .map(|c| format!(" (commit <code>{}</code>)", esc(c)))
                .unwrap_or_default()
        ),
    );
    if let Some(t) = &r.tags {
        kv("Selection", format!("<code>{}</code>", esc(t)));
    }
    if let Some(s) = r.shuffle_seed {
        kv("Order", format!("shuffled, seed {s}"));
    }
    kv(
        "Evidence",
        match signer {
            Some(fp) => format!(
                "this directory, sealed in {} and signed by lab key <code>{}</code> in {} (check with <code>redrig verify</code>)",
                file_link("manifest.json"),
                esc(fp),
                file_link("manifest.sig")
            ),
            None => format!(
                "this directory, sealed in {}; <b>not signed</b> (check with <code>redrig verify</code>)",
                file_link("manifest.json")
            ),
        },
    );
    p.push_str("</dl>\n");
    if r.interrupted {
        p.push_str("<p class=\"msg\">The run was interrupted: unfinished scenarios are inconclusive or not run.</p>\n");
    }
    if bad_lines > 0 {
        let _ = writeln!(
            p,
            "<p class=\"muted\">{bad_lines} evidence lines could not be read for this page (see the raw files).</p>"
        );
    }
    let c = &r.counts;
    let _ = writeln!(
        p,
        "<h2>Verdicts</h2>\n<p>{} scenarios: {} pass, {} fail, {} inconclusive, {} not applicable, {} not run.</p>",
        c.total, c.pass, c.fail, c.inconclusive, c.not_applicable, c.not_run
    );
    // Per standard.
    let mut by_std: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for q in &r.requirements {
        by_std
            .entry(q.standard.as_str())
            .or_default()
            .push(q.verdict.as_str());
    }
    p.push_str("<table><tr><th>Standard</th><th>Verdict</th><th>Pass</th><th>Fail</th><th>Inconclusive / not run</th><th>Not applicable</th><th>Not tested</th></tr>\n");
    for (std, vs) in &by_std {
        let n = |want: &[&str]| vs.iter().filter(|v| want.contains(v)).count();
        let _ = writeln!(
            p,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(if std.is_empty() { "(no standard)" } else { std }),
            {
                let untested = n(&["not-tested"]);
                let v = standard_verdict(vs);
                if untested > 0 && v != "not-tested" {
                    format!(
                        "{} <span class=\"muted\">on the {} of {} requirements tested</span>",
                        badge(v),
                        vs.len() - untested,
                        vs.len()
                    )
                } else {
                    badge(v)
                }
            },
            n(&["pass"]),
            n(&["fail"]),
            n(&["inconclusive", "not-run"]),
            n(&["not-applicable"]),
            n(&["not-tested"]),
        );
    }
    p.push_str("</table>\n<p class=\"muted\">A standard's verdict is the worst of its requirements that were tested. Requirements not tested are counted, never as a pass: see the matrix for why each was not tested.</p>\n");
}

/// Anchor of the scenario at index `i`.
fn anchor(i: usize) -> String {
    format!("s{i}")
}

fn matrix(p: &mut String, r: &Results) {
    p.push_str("<h2 id=\"matrix\">Requirement matrix</h2>\n<p>Every requirement of the catalogue, whether or not this run tested it.</p>\n<table><tr><th>Requirement</th><th>Title</th><th>Bench</th><th>Verdict</th><th>Scenarios and evidence</th></tr>\n");
    for q in &r.requirements {
        let mut cov = String::new();
        // Each scenario of this run tagged with the requirement (outline rows share a
        // name, so scenarios are matched by their tags, not by name).
        let mut linked = 0;
        for (i, s) in r.scenarios.iter().enumerate() {
            if !s.requirements.iter().any(|id| id == &q.id) {
                continue;
            }
            linked += 1;
            let _ = write!(
                cov,
                "<div>{} <a href=\"#{}\">{}</a> <span class=\"muted\">{}:{}</span></div>",
                badge(&s.verdict),
                anchor(i),
                esc(&s.name),
                esc(&s.file),
                s.line
            );
        }
        if linked == 0 {
            for name in &q.scenarios {
                let _ = write!(cov, "<div>{}</div>", esc(name));
            }
        }
        if let Some(why) = &q.reason {
            let _ = write!(cov, "<div class=\"muted\">{}</div>", esc(why));
        }
        let _ = writeln!(
            p,
            "<tr><td><code>{}</code></td><td>{}<div class=\"muted\">{}</div></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&q.id),
            esc(&q.title),
            esc(&q.standard),
            esc(&q.bench),
            badge(&q.verdict),
            cov
        );
    }
    p.push_str("</table>\n");
}

// ---- plots ----

fn t_s(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// Timeline events from the journal, the flows and the strategy, in device seconds.
pub fn timeline_events(
    r: &Results,
    journal: &[JournalEvent],
    flows: &[FlowEvent],
    end_ms: u64,
) -> Vec<TimelineEvent> {
    let mut ev = Vec::new();
    let mut push = |t: u64, end: Option<u64>, lane: &str, label: String| {
        ev.push(TimelineEvent {
            t_s: t_s(t),
            end_s: end.map(t_s),
            lane: lane.to_string(),
            label,
        })
    };
    for s in &r.strategy {
        push(s.t, None, "device state", format!("{}: {}", s.to, s.detail));
    }
    let mut power_on: Option<u64> = None;
    let mut gnss_fix: Option<u64> = None;
    for e in journal {
        let f = &e.fields;
        match e.kind.as_str() {
            "power" => {
                let on = f["on"].as_bool() == Some(true);
                match (on, power_on) {
                    (true, None) => power_on = Some(e.t),
                    (false, Some(t0)) => {
                        push(t0, Some(e.t), "power", "on".into());
                        power_on = None;
                    }
                    _ => {}
                }
            }
            "press" => {
                let hold = (f["hold_s"].as_f64().unwrap_or(0.0).clamp(0.0, 1e6) * 1000.0) as u64;
                push(
                    e.t,
                    Some(e.t.saturating_add(hold)),
                    "buttons",
                    format!("press {}", f["button"].as_str().unwrap_or("?")),
                );
            }
            "indicator" => {
                if let Some(text) = f["screen"].as_str() {
                    push(e.t, None, "screen", text.to_string());
                } else if f["level"].as_bool() == Some(true) {
                    push(
                        e.t,
                        None,
                        "indicators",
                        f["line"].as_str().unwrap_or("?").into(),
                    );
                }
            }
            "cell" => {
                let event = f["event"].as_str().unwrap_or("");
                let lane = match event {
                    "sms-to-watch" | "sms-from-watch" => "SMS",
                    "call-to-watch" | "watch-answered" | "watch-hung-up" | "watch-dialled"
                    | "far-end" | "call-ended" => "calls",
                    _ => "cell",
                };
                push(e.t, None, lane, event.to_string());
            }
            "gnss" => {
                let has = !f["fix"].is_null();
                match (has, gnss_fix) {
                    (true, None) => gnss_fix = Some(e.t),
                    (false, Some(t0)) => {
                        push(t0, Some(e.t), "GNSS fix", "fix".into());
                        gnss_fix = None;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if let Some(t0) = power_on {
        push(t0, Some(end_ms.max(t0)), "power", "on".into());
    }
    if let Some(t0) = gnss_fix {
        push(t0, Some(end_ms.max(t0)), "GNSS fix", "fix".into());
    }
    let mut opened: BTreeMap<u64, u64> = BTreeMap::new();
    for f in flows {
        let id = f.value["id"].as_u64().unwrap_or(u64::MAX);
        match f.value["event"].as_str() {
            Some("opened") if opened.len() < 100_000 => {
                opened.insert(id, f.t);
            }
            Some("closed") => {
                let t0 = opened.remove(&id).unwrap_or(f.t);
                push(t0, Some(f.t), "connections", format!("flow {id}"));
            }
            Some("frame") => push(f.t, None, "frames", format!("flow {id}")),
            _ => {}
        }
    }
    for (id, t0) in opened {
        push(
            t0,
            Some(end_ms.max(t0)),
            "connections",
            format!("flow {id}"),
        );
    }
    ev
}

fn figure(p: &mut String, caption: &str, plot: Result<plots::Plot, plots::PlotError>) {
    match plot {
        Ok(pl) => {
            let _ = writeln!(
                p,
                "<figure class=\"plot\">{}<figcaption>{}{}</figcaption></figure>",
                pl.svg,
                esc(caption),
                if pl.skipped > 0 {
                    format!(
                        " ({} items left out: not finite or outside the plotted range)",
                        pl.skipped
                    )
                } else {
                    String::new()
                }
            );
        }
        Err(e) => {
            let _ = writeln!(
                p,
                "<p class=\"muted\">{}: the plot could not be drawn ({}).</p>",
                esc(caption),
                esc(&e.to_string())
            );
        }
    }
}

/// Alarm latencies: measurements named `… latency` about alarms or alerts.
pub fn latency_samples(r: &Results) -> Vec<LatencySample> {
    let mut out = Vec::new();
    for s in &r.scenarios {
        for m in &s.measurements {
            let lname = m.name.to_ascii_lowercase();
            if !(lname.ends_with("latency") && (lname.contains("alarm") || lname.contains("alert")))
            {
                continue;
            }
            let limit_s = m
                .limit
                .as_deref()
                .and_then(|l| l.trim_start_matches("<=").trim().parse::<f64>().ok());
            out.push(LatencySample {
                kind: m.name.trim_end_matches("latency").trim().to_string(),
                value_s: m.value.unwrap_or(f64::INFINITY),
                limit_s,
                scenario: s.name.clone(),
            });
        }
    }
    out
}

/// The fed route and backend positions inside `[from, to]` device ms.
pub fn route_points(
    journal: &[JournalEvent],
    from: u64,
    to: u64,
) -> (Vec<TrackPoint>, Vec<ReceivedPoint>) {
    let mut fed = Vec::new();
    let mut got = Vec::new();
    for e in journal {
        match e.kind.as_str() {
            "gnss" if (from..=to).contains(&e.t) => {
                if let (Some(lat), Some(lon)) = (
                    e.fields["fix"]["lat"].as_f64(),
                    e.fields["fix"]["lon"].as_f64(),
                ) {
                    fed.push(TrackPoint {
                        t_s: t_s(e.t),
                        lat,
                        lon,
                    });
                }
            }
            "backend-position" => {
                let Some(pt) = e.fields["pos_t"].as_u64() else {
                    continue;
                };
                if !(from..=to).contains(&pt) {
                    continue;
                }
                got.push(ReceivedPoint {
                    t_s: t_s(pt),
                    lat: e.fields["lat"].as_f64().unwrap_or(f64::NAN),
                    lon: e.fields["lon"].as_f64().unwrap_or(f64::NAN),
                    valid: e.fields["valid"].as_bool() == Some(true),
                });
            }
            _ => {}
        }
    }
    (fed, got)
}

fn plots_section(p: &mut String, r: &Results, journal: &[JournalEvent], flows: &[FlowEvent]) {
    p.push_str("<h2 id=\"plots\">Plots</h2>\n");
    let end = r
        .scenarios
        .iter()
        .filter_map(|s| s.device_end_ms)
        .chain(journal.iter().map(|e| e.t))
        .chain(flows.iter().map(|f| f.t))
        .max()
        .unwrap_or(0);
    let events = timeline_events(r, journal, flows, end);
    let spans: Vec<Span> = r
        .scenarios
        .iter()
        .filter_map(|s| {
            let (a, b) = s.window()?;
            Some(Span {
                start_s: t_s(a),
                end_s: t_s(b.min(end.max(a))),
                label: s.name.clone(),
                verdict: s.verdict.clone(),
            })
        })
        .collect();
    figure(
        p,
        "Rig events over the run (device time; bands are scenarios, coloured by verdict)",
        plots::timeline_svg(0.0, t_s(end).max(1.0), &LANES, &events, &spans),
    );
    let lat = latency_samples(r);
    if lat.is_empty() {
        p.push_str("<p class=\"muted\">No alarm latency was measured in this run.</p>\n");
    } else {
        figure(
            p,
            "Alarm latency (device seconds from the wearer's action to the parent's alarm) against each limit",
            plots::latency_svg(&lat),
        );
    }
}

// ---- scenarios ----

fn scenarios(
    p: &mut String,
    dir: &Path,
    r: &Results,
    journal: &[JournalEvent],
    flows: &Flows,
) -> Result<(), ReportError> {
    p.push_str("<h2 id=\"scenarios\">Scenarios</h2>\n");
    // Console excerpts for every scenario that did not pass, in one pass per log.
    let mut wanted: Vec<(usize, ExcerptWindow)> = Vec::new();
    for (i, s) in r.scenarios.iter().enumerate() {
        if matches!(s.verdict.as_str(), "pass" | "not-applicable" | "not-run") {
            continue;
        }
        if let (Some((from, _)), Some(at)) = (s.window(), s.failure_time()) {
            let step = s.failed_step_start().unwrap_or(at).min(at);
            wanted.push((
                i,
                ExcerptWindow {
                    from: step.saturating_sub(EXCERPT_BEFORE_MS).max(from),
                    to: at.saturating_add(EXCERPT_AFTER_MS),
                    max: EXCERPT_LINES,
                },
            ));
        }
    }
    let windows: Vec<ExcerptWindow> = wanted.iter().map(|(_, w)| w.clone()).collect();
    let mut excerpts: BTreeMap<usize, Vec<(String, Vec<String>, usize)>> = BTreeMap::new();
    for log in console_logs(dir) {
        let name = log
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let got = console_excerpts(&log, &windows).map_err(|source| ReportError::Io {
            path: log.clone(),
            source,
        })?;
        for ((i, _), (lines, dropped)) in wanted.iter().zip(got) {
            excerpts
                .entry(*i)
                .or_default()
                .push((name.clone(), lines, dropped));
        }
    }

    for (i, s) in r.scenarios.iter().enumerate() {
        let open = !matches!(s.verdict.as_str(), "pass" | "not-applicable");
        let _ = writeln!(
            p,
            "<details id=\"{}\"{}><summary>{} {} <span class=\"muted\">{}:{} · {} s</span></summary>",
            anchor(i),
            if open { " open" } else { "" },
            badge(&s.verdict),
            esc(&s.name),
            esc(&s.file),
            s.line,
            secs(s.wall_ms)
        );
        if !s.requirements.is_empty() {
            let _ = writeln!(
                p,
                "<p>Requirements: {}</p>",
                s.requirements
                    .iter()
                    .map(|q| format!("<code>{}</code>", esc(q)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if let Some(m) = &s.message {
            let _ = writeln!(p, "<p class=\"msg\">{}</p>", esc(m));
        }
        if let Some((a, b)) = s.window() {
            let _ = writeln!(
                p,
                "<p class=\"muted\">Device time {} ms to {} ms: the evidence files are stamped in the same device milliseconds.</p>",
                a,
                if b == u64::MAX { "(unfinished)".to_string() } else { b.to_string() }
            );
        }
        steps_table(p, s);
        measurements_table(p, s);
        if !s.notes.is_empty() {
            p.push_str("<p>Observations:</p><ul>");
            for n in s.notes.iter().take(MAX_ROWS) {
                let _ = write!(p, "<li>{}</li>", esc(n));
            }
            if s.notes.len() > MAX_ROWS {
                let _ = write!(
                    p,
                    "<li class=\"muted\">… {} more in results.json</li>",
                    s.notes.len() - MAX_ROWS
                );
            }
            p.push_str("</ul>\n");
        }
        if let Some(ex) = excerpts.get(&i) {
            for (name, lines, dropped) in ex {
                if lines.is_empty() {
                    let _ = writeln!(
                        p,
                        "<p>Console around the failure ({}): no line in that time.</p>",
                        file_link(name)
                    );
                    continue;
                }
                let _ = writeln!(
                    p,
                    "<p>Console around the failure ({}{}):</p><pre>{}</pre>",
                    file_link(name),
                    if *dropped > 0 {
                        format!(
                            ", the last {} lines; {dropped} earlier lines in the file",
                            lines.len()
                        )
                    } else {
                        String::new()
                    },
                    esc(&lines.join("\n"))
                );
            }
        }
        if let Some((a, b)) = s.window() {
            cell_table(p, journal, a, b);
            traffic_table(p, flows, a, b);
            route_figure(p, s, journal, a, b);
        }
        p.push_str("</details>\n");
    }
    Ok(())
}

fn steps_table(p: &mut String, s: &Scenario) {
    if s.steps.is_empty() {
        return;
    }
    p.push_str("<table><tr><th>Step</th><th>Status</th><th>Wall s</th><th>Device ms</th></tr>\n");
    for st in &s.steps {
        let dev = match (st.device_start_ms, st.device_end_ms) {
            (Some(a), Some(b)) => format!("{a}–{b}"),
            _ => String::new(),
        };
        let _ = writeln!(
            p,
            "<tr><td><b>{}</b> {}{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&st.keyword),
            esc(&st.text),
            st.message
                .as_deref()
                .map(|m| format!("<div class=\"msg\">{}</div>", esc(m)))
                .unwrap_or_default(),
            esc(&st.status),
            secs(st.wall_ms),
            dev
        );
    }
    p.push_str("</table>\n");
}

fn measurements_table(p: &mut String, s: &Scenario) {
    if s.measurements.is_empty() {
        return;
    }
    p.push_str(
        "<table><tr><th>Measurement</th><th>Value</th><th>Limit</th><th>Outcome</th></tr>\n",
    );
    for m in &s.measurements {
        let _ = writeln!(
            p,
            "<tr><td>{}</td><td class=\"num\">{} {}</td><td>{}</td><td>{}</td></tr>",
            esc(&m.name),
            fmt_value(m.value),
            esc(&m.unit),
            esc(m.limit.as_deref().unwrap_or("—")),
            badge(&m.outcome)
        );
    }
    p.push_str("</table>\n");
}

fn cell_table(p: &mut String, journal: &[JournalEvent], a: u64, b: u64) {
    let rows: Vec<&JournalEvent> = journal
        .iter()
        .filter(|e| e.kind == "cell" && (a..=b).contains(&e.t))
        .filter(|e| {
            !matches!(
                e.fields["event"].as_str(),
                Some("dns") | Some("registration") | Some("data-attached")
            )
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    p.push_str("<p>SMS and calls (");
    p.push_str(&file_link("events.jsonl"));
    p.push_str("):</p><table><tr><th>Device ms</th><th>Event</th><th>Number</th><th>Text / answer</th></tr>\n");
    for e in rows.iter().take(MAX_ROWS) {
        let f = &e.fields;
        let number = f["from"]
            .as_str()
            .or(f["to"].as_str())
            .or(f["number"].as_str())
            .unwrap_or("");
        let text = f["text"]
            .as_str()
            .map(String::from)
            .or_else(|| f["answer"].as_str().map(String::from))
            .unwrap_or_default();
        let _ = writeln!(
            p,
            "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e.t,
            esc(f["event"].as_str().unwrap_or("")),
            esc(number),
            esc(&text)
        );
    }
    if rows.len() > MAX_ROWS {
        let _ = writeln!(
            p,
            "<tr><td colspan=\"4\" class=\"muted\">… {} more</td></tr>",
            rows.len() - MAX_ROWS
        );
    }
    p.push_str("</table>\n");
}

/// Per flow opened in the window: destination, protocol, bytes.
fn traffic_table(p: &mut String, flows: &Flows, a: u64, b: u64) {
    #[derive(Default)]
    struct Row {
        t: u64,
        dest: String,
        proto: String,
        up: Option<u64>,
        down: Option<u64>,
        frames: u64,
        note: String,
    }
    let mut rows: BTreeMap<u64, Row> = BTreeMap::new();
    let mut opened = 0usize;
    for f in &flows.events {
        let v = &f.value;
        let Some(id) = v["id"].as_u64() else { continue };
        let ev = v["event"].as_str().unwrap_or("");
        if ev == "opened" {
            if !(a..=b).contains(&f.t) {
                continue;
            }
            opened += 1;
            if rows.len() >= MAX_ROWS {
                continue;
            }
            rows.insert(
                id,
                Row {
                    t: f.t,
                    dest: format!(
                        "{}:{}",
                        v["host"].as_str().unwrap_or("?"),
                        v["port"]
                            .as_u64()
                            .map(|p| p.to_string())
                            .unwrap_or_default()
                    ),
                    proto: "not yet seen".into(),
                    ..Row::default()
                },
            );
            continue;
        }
        let Some(row) = rows.get_mut(&id) else {
            continue;
        };
        match ev {
            "detected" => {
                let pr = &v["protocol"];
                row.proto = match pr["kind"].as_str() {
                    Some("tls") => match pr["version"].as_u64() {
                        Some(0x0304) => "TLS 1.3".into(),
                        Some(0x0303) => "TLS 1.2".into(),
                        Some(0x0302) => "TLS 1.1 (weak)".into(),
                        Some(0x0301) => "TLS 1.0 (weak)".into(),
                        Some(x) => format!("TLS (version 0x{x:04x})"),
                        None => "TLS".into(),
                    },
                    Some(k) => format!("clear text ({k})"),
                    None => "unknown".into(),
                };
            }
            "closed" => {
                row.up = v["bytes_up"].as_u64();
                row.down = v["bytes_down"].as_u64();
            }
            "intercepted" => {
                let o = &v["outcome"];
                row.note = format!(
                    "{} with a {} certificate: {}",
                    o["role"].as_str().unwrap_or("interception"),
                    o["certificate"].as_str().unwrap_or("?"),
                    o["handshake"]["reason"]
                        .as_str()
                        .or(o["handshake"]["result"].as_str())
                        .unwrap_or("")
                );
            }
            _ => {}
        }
    }
    if rows.is_empty() {
        return;
    }
    p.push_str("<p>Traffic through the gateway (");
    p.push_str(&file_link("flows.jsonl"));
    p.push_str(", ");
    p.push_str(&file_link("gateway.pcap"));
    p.push_str("):</p><table><tr><th>Flow</th><th>Device ms</th><th>Destination</th><th>Protocol</th><th>Bytes up / down</th><th>Frames</th><th>Interception</th></tr>\n");
    for (id, r) in rows.iter_mut() {
        r.frames = flows.frames.get(id).copied().unwrap_or(0);
    }
    let n = opened;
    for (id, r) in rows.iter().take(MAX_ROWS) {
        let bytes = match (r.up, r.down) {
            (Some(u), Some(d)) => format!("{u} / {d}"),
            _ => "open at the end".into(),
        };
        let _ = writeln!(
            p,
            "<tr><td class=\"num\">{id}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            r.t,
            esc(&r.dest),
            esc(&r.proto),
            bytes,
            r.frames,
            esc(&r.note)
        );
    }
    if n > MAX_ROWS {
        let _ = writeln!(
            p,
            "<tr><td colspan=\"7\" class=\"muted\">… {} more flows</td></tr>",
            n - MAX_ROWS
        );
    }
    p.push_str("</table>\n");
}

fn route_figure(p: &mut String, s: &Scenario, journal: &[JournalEvent], a: u64, b: u64) {
    let (fed, got) = route_points(journal, a, b);
    if got.is_empty() {
        return;
    }
    figure(
        p,
        &format!(
            "GNSS route fed ({} epochs) versus the {} positions the backend received during “{}”",
            fed.len(),
            got.len(),
            s.name
        ),
        plots::route_svg(&s.name, &fed, &got),
    );
}

// ---- evidence files ----

fn list_files(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, prefix)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let name = format!("{prefix}{}", e.file_name().to_string_lossy());
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() && prefix.matches('/').count() < 8 {
                stack.push((e.path(), format!("{name}/")));
            } else if ft.is_file() {
                out.push((name, e.metadata().map(|m| m.len()).unwrap_or(0)));
            }
            if out.len() > 100_000 {
                break;
            }
        }
    }
    out.sort();
    out
}

fn evidence_list(p: &mut String, files: &[(String, u64)]) {
    p.push_str("<h2 id=\"evidence\">Evidence files</h2>\n<p>Every file of the run directory when this page was drawn. <code>manifest.json</code> lists each with its SHA-256; <code>redrig verify</code> checks them and the lab's signature.</p>\n");
    // Flow payload dumps are many; list them in one line.
    let is_dump = |n: &str| {
        n.strip_prefix("flow-").is_some_and(|rest| {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            digits > 0 && rest[digits..].starts_with('-')
        })
    };
    let (dumps, main): (Vec<_>, Vec<_>) = files.iter().partition(|(n, _)| is_dump(n));
    p.push_str("<table><tr><th>File</th><th>Bytes</th></tr>\n");
    for (n, size) in &main {
        let _ = writeln!(
            p,
            "<tr><td>{}</td><td class=\"num\">{size}</td></tr>",
            file_link(n)
        );
    }
    if !dumps.is_empty() {
        let total: u64 = dumps.iter().map(|(_, s)| s).sum();
        let _ = writeln!(
            p,
            "<tr><td>{} payload dumps <code>flow-N-up/down.bin</code> and <code>.plain</code></td><td class=\"num\">{total}</td></tr>",
            dumps.len()
        );
    }
    p.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_quotes_and_controls() {
        assert_eq!(
            esc("<script>a&\"b'</script>\u{7}"),
            "&lt;script&gt;a&amp;&quot;b&#39;&lt;/script&gt;\\x07"
        );
        assert_eq!(
            file_link("a b\"<.log"),
            "<a href=\"a%20b%22%3C.log\">a b&quot;&lt;.log</a>"
        );
    }

    #[test]
    fn a_standard_is_never_a_pass_on_untested_requirements_alone() {
        assert_eq!(
            standard_verdict(&["not-tested", "not-tested"]),
            "not-tested"
        );
        assert_eq!(standard_verdict(&["pass", "not-tested"]), "pass");
        assert_eq!(standard_verdict(&["pass", "inconclusive"]), "inconclusive");
        assert_eq!(standard_verdict(&["fail", "inconclusive"]), "fail");
        assert_eq!(standard_verdict(&[]), "not-tested");
    }
}

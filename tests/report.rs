//! The run's reports end to end: one real run on the virtual lab, signed with a lab
//! key made by `redrig keygen`, of a device with a seeded defect, then
//! - `report.html`: the requirement matrix lists every catalogue requirement with
//!   its verdict (also `not tested` with the reason), the failing scenario has its
//!   message, console excerpt and measurements, the plots are there, every relative
//!   link points at a file of the run directory;
//! - a real browser (headless Chromium) loads it without a console message (which
//!   also catches anything the content security policy blocked);
//! - the JUnit file carries the requirement ids as properties;
//! - `redrig verify` accepts the bundle with the lab's key, and names a tampered
//!   file;
//! - `redrig report` draws the page again from the files.
//!
//! Chromium is a CI cross-check: without it the browser part says SKIPPED, unless
//! `REDRIG_REQUIRE_CROSSCHECKS` is set (as `.ci/run` does), where it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn redrig() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_redrig"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(std::process::Stdio::null());
    c
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

struct Cleanup(Vec<PathBuf>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The virtual rig under its own name (its own run lock).
fn private_rig(name: &str, lock_dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(fixtures().join("rigs/virtual.yaml")).unwrap();
    let text = text
        .replacen("name: virtual-lab", &format!("name: {name}"), 1)
        .replacen(
            "lock_dir: null",
            &format!("lock_dir: {}", lock_dir.display()),
            1,
        );
    let path = fixtures()
        .join("rigs")
        .join(format!(".test-{name}-{}.yaml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|n| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(n))
                    .find(|p| p.is_file())
            })
        })
}

/// Every `href="…"` target of the page.
fn hrefs(page: &str) -> Vec<String> {
    page.split("href=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(String::from)
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_signed_run_has_a_complete_report_a_browser_loads_and_a_bundle_that_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let rig = private_rig("report-e2e", &tmp.path().join("locks"));
    let _cleanup = Cleanup(vec![rig.clone()]);

    // A lab key outside the run directory.
    let key = tmp.path().join("keys/lab-key.pem");
    let o = redrig()
        .args(["keygen", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let public = std::fs::read_dir(key.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p != &key)
        .expect("keygen wrote a public key file next to the private one");

    // A watch whose geofence alert comes too late: its scenario fails, the others
    // selected pass.
    let run_dir = tmp.path().join("run");
    let o = redrig()
        .arg("run")
        .arg("--rig")
        .arg(&rig)
        .args(["--dut", "geofence-alert-late", "--sign-key"])
        .arg(&key)
        .arg("--out")
        .arg(&run_dir)
        .args([
            "--tags",
            "@req:SAFETY:GEO-1 or @req:SAFETY:SOS-2 or @req:SAFETY:WL-2",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("report: "), "{out}");
    assert!(out.contains("signed by lab key SHA256:"), "{out}");
    let fingerprint = out
        .split("signed by lab key ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_string();

    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("results.json")).unwrap()).unwrap();
    let page = std::fs::read_to_string(run_dir.join("report.html")).expect("report.html");

    assert!(
        page.contains(&format!("signed by lab key <code>{fingerprint}</code>")),
        "the page names the signing key"
    );
    // Self-contained: no script, no external reference.
    assert!(!page.contains("<script"), "the page has a script");
    for h in hrefs(&page) {
        assert!(
            !h.contains("://") && !h.starts_with("//"),
            "external link {h}"
        );
        if let Some(anchor) = h.strip_prefix('#') {
            assert!(
                page.contains(&format!("id=\"{anchor}\"")),
                "link to a missing anchor #{anchor}"
            );
        } else {
            let f = run_dir.join(percent_decode(&h));
            assert!(f.is_file(), "link to a missing evidence file {h}");
        }
    }
    assert!(!page.contains("src=\"http"), "external source");

    // The matrix: every requirement of results.json, with its verdict.
    let matrix = page
        .split("id=\"matrix\"")
        .nth(1)
        .and_then(|s| s.split("id=\"plots\"").next())
        .expect("the matrix section");
    let reqs = results["requirements"].as_array().unwrap();
    assert!(reqs.len() > 50, "the whole catalogue is in results.json");
    for r in reqs {
        let id = r["id"].as_str().unwrap();
        assert!(
            matrix.contains(&format!("<tr><td><code>{id}</code>")),
            "{id} is missing from the matrix"
        );
    }
    let not_tested = reqs.iter().filter(|r| r["verdict"] == "not-tested").count();
    assert!(not_tested > 30, "most requirements are not tested here");
    assert_eq!(
        matrix
            .matches("<span class=\"v nt\">not tested</span>")
            .count(),
        not_tested,
        "each requirement not tested is shown as such"
    );
    // A reason for a requirement no bench can test is shown.
    let reason = reqs
        .iter()
        .find_map(|r| r["reason"].as_str())
        .expect("some requirement has a reason");
    let escaped = reason
        .replace('&', "&amp;")
        .replace('\'', "&#39;")
        .replace('"', "&quot;");
    assert!(page.contains(&escaped), "reason {reason:?} not shown");

    // The failing scenario: verdict, message, console excerpt, measurements.
    let scenarios = results["scenarios"].as_array().unwrap();
    let failed: Vec<&serde_json::Value> = scenarios
        .iter()
        .filter(|s| s["verdict"] == "fail")
        .collect();
    assert_eq!(failed.len(), 1, "{scenarios:#?}");
    let f = failed[0];
    assert!(f["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r == "SAFETY:GEO-1"));
    let (start, end) = (
        f["device_start_ms"].as_u64().unwrap(),
        f["device_end_ms"].as_u64().unwrap(),
    );
    let steps = f["steps"].as_array().unwrap();
    let failed_step = steps.iter().find(|s| s["status"] == "failed").unwrap();
    let at = failed_step["device_end_ms"].as_u64().unwrap();
    assert!(start <= at && at <= end, "step stamped inside its scenario");
    let i = scenarios.iter().position(|s| s == f).unwrap();
    let section = page
        .split(&format!("<details id=\"s{i}\""))
        .nth(1)
        .and_then(|s| s.split("</details>").next())
        .expect("the failing scenario's section");
    assert!(
        section.starts_with(" open"),
        "a failed scenario is shown open"
    );
    let msg = f["message"].as_str().unwrap();
    assert!(msg.starts_with("DEVICE FAIL:"), "{msg}");
    let excerpt = section
        .split("Console around the failure")
        .nth(1)
        .and_then(|s| s.split("<pre>").nth(1))
        .and_then(|s| s.split("</pre>").next())
        .unwrap_or_else(|| panic!("no console excerpt in {section}"));
    let first: u64 = excerpt
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("excerpt lines start with their device time");
    assert!(
        start <= first && first <= at + 2_000,
        "the excerpt ({first} ms) lies in the scenario, before the failure at {at} ms"
    );
    assert!(section.contains("geofence alert latency"), "{section}");

    // Plots: the timeline and the latency distribution.
    assert!(page.matches("<svg").count() >= 2, "plots are inline SVG");
    assert!(page.contains("Rig events over the run"));
    assert!(page.contains("Alarm latency"));

    // JUnit: requirement ids as properties.
    let junit = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
    assert!(
        junit.contains("name=\"requirement\" value=\"SAFETY:GEO-1\""),
        "{junit}"
    );
    assert!(run_dir.join("cucumber.json").is_file());
    assert!(std::fs::read_to_string(run_dir.join("summary.txt"))
        .unwrap()
        .contains("FAIL SAFETY:GEO-1"));

    // The journal the timeline is drawn from has the rig's actions.
    let journal = std::fs::read_to_string(run_dir.join("events.jsonl")).unwrap();
    for kind in [
        "\"kind\":\"power\"",
        "\"kind\":\"gnss\"",
        "\"kind\":\"cell\"",
    ] {
        assert!(journal.contains(kind), "events.jsonl lacks {kind}");
    }

    // A browser loads it without complaint.
    browser_check(&run_dir.join("report.html"), tmp.path());

    // The bundle verifies with the lab's key…
    let verify = |dir: &Path| {
        redrig()
            .arg("verify")
            .arg(dir)
            .arg("--key")
            .arg(&public)
            .output()
            .unwrap()
    };
    let o = verify(&run_dir);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["firmware"]["sha256"], results["device"]["firmware_sha256"],
        "the manifest names the firmware image's hash"
    );
    let listed: Vec<&str> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    for name in [
        "report.html",
        "results.json",
        "run.log",
        "events.jsonl",
        "console-watch.log",
    ] {
        assert!(listed.contains(&name), "{name} not in the manifest");
    }

    // …and names a console log changed by one byte.
    let console = run_dir.join("console-watch.log");
    let mut bytes = std::fs::read(&console).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    std::fs::write(&console, bytes).unwrap();
    let o = verify(&run_dir);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(said.contains("console-watch.log"), "{said}");

    // The page can be drawn again from the files, but not over the sealed one.
    let o = redrig().arg("report").arg(&run_dir).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let again = tmp.path().join("again.html");
    let o = redrig()
        .arg("report")
        .arg(&run_dir)
        .arg("--out")
        .arg(&again)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let again = std::fs::read_to_string(&again).unwrap();
    assert!(again.contains("<code>SAFETY:GEO-1</code>"));
}

/// Lines the browser logged to its console while loading `url`.
fn browser_console(chrome: &Path, url: &str, scratch: &Path, shot: &Path) -> Vec<String> {
    let o = Command::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,2000",
        ])
        .arg(format!(
            "--user-data-dir={}",
            scratch.join("chromium").display()
        ))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(url)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "chromium failed: {err}");
    err.lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(String::from)
        .collect()
}

fn browser_check(page: &Path, scratch: &Path) {
    let Some(chrome) = chromium() else {
        if std::env::var_os("REDRIG_REQUIRE_CROSSCHECKS").is_some() {
            panic!("chromium is required for the browser cross-check (REDRIG_REQUIRE_CROSSCHECKS)");
        }
        eprintln!("SKIPPED: chromium not installed; the report was not loaded in a browser");
        return;
    };
    // The check itself must be able to fail: the same page with an external image
    // (blocked by the page's security policy) is logged.
    let control = scratch.join("control.html");
    let text = std::fs::read_to_string(page).unwrap().replacen(
        "</main>",
        "<img src=\"http://example.invalid/x.png\" alt=\"\"></main>",
        1,
    );
    std::fs::write(&control, text).unwrap();
    let shot = scratch.join("control.png");
    let url = format!("file://{}", control.canonicalize().unwrap().display());
    assert!(
        !browser_console(&chrome, &url, scratch, &shot).is_empty(),
        "the browser check does not see a blocked external load"
    );

    let shot = scratch.join("report.png");
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let console = browser_console(&chrome, &url, scratch, &shot);
    assert!(
        console.is_empty(),
        "the page logged to the browser console:\n{}",
        console.join("\n")
    );
    let png = std::fs::read(&shot).expect("chromium wrote a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "screenshot is a PNG");
    assert!(
        png.len() > 20_000,
        "screenshot is not blank ({} bytes)",
        png.len()
    );

    // The DOM the browser built has the page's structure.
    let o = Command::new(&chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--dump-dom",
        ])
        .arg(format!(
            "--user-data-dir={}",
            scratch.join("chromium").display()
        ))
        .arg(&url)
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&o.stdout);
    assert!(dom.contains("id=\"matrix\""), "DOM lacks the matrix");
    assert!(dom.matches("<svg").count() >= 2, "DOM lacks the plots");
}

#[test]
fn a_run_directory_in_use_is_refused_before_anything_moves() {
    let tmp = tempfile::tempdir().unwrap();
    let rig = private_rig("report-out", &tmp.path().join("locks"));
    let _cleanup = Cleanup(vec![rig.clone()]);
    let out = tmp.path().join("old-run");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("results.json"), "{}").unwrap();
    let o = redrig()
        .arg("run")
        .arg("--rig")
        .arg(&rig)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("is not empty"), "{}", text(&o));
    let left: Vec<_> = std::fs::read_dir(&out).unwrap().flatten().collect();
    assert_eq!(
        left.len(),
        1,
        "nothing was written into the old run's directory"
    );
}

#[test]
fn a_report_is_never_drawn_into_a_sealed_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("results.json"), r#"{"schema":"redrig-results/1"}"#).unwrap();
    // Not sealed: the page can be drawn there, from a results file alone.
    let o = redrig().arg("report").arg(&dir).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let page = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(
        page.contains("<b>not signed</b>"),
        "unsealed runs are not called signed"
    );
    // Sealed: neither the default nor another name inside it.
    std::fs::remove_file(dir.join("report.html")).unwrap();
    std::fs::write(dir.join("manifest.json"), "{}").unwrap();
    for args in [
        vec![],
        vec![
            "--out".to_string(),
            dir.join("other.html").display().to_string(),
        ],
    ] {
        let o = redrig()
            .arg("report")
            .arg(&dir)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    }
    assert!(!dir.join("report.html").exists() && !dir.join("other.html").exists());
}

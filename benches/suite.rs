//! The whole default suite on the virtual lab: wall time, and the rig's overhead.
//!
//! Runs `redrig run` (this build's binary, release profile under `cargo bench`) on the
//! default virtual rig with no tag filter, in a temporary run directory, `SUITE_RUNS`
//! times (default 1), and reads the run's own accounting from `results.json`
//! (`timing`): the wall time from the start of the run to its reports, and of it the
//! wall time during which the rig was waiting on device time — a `Clock::sleep` the
//! scenario asks for ("after 30 seconds") or a wait for a device event with its
//! deadline (a console line, an indicator, a cell event). Overlapping waits count
//! once. The rest is the **rig overhead**: assembling the lab, flashing, bringing the
//! device up between the waits, HTTP exchanges with the backend, the gateway, the
//! reports and the seal.
//!
//! The device-time scale of the virtual rig compresses the waits (device seconds
//! pass `scale` times faster than wall seconds); it does not compress the overhead,
//! which is why the overhead is the figure that says how fast the rig is.
//!
//! The figures are printed and written to `<target>/bench-suite.json`. Arguments
//! (`cargo bench` passes `--bench`) are ignored. Nothing is asserted.

#[allow(dead_code)] // each bench uses part of it
mod support;
use std::process::Command;
use std::time::Instant;
use support::write_figures;

fn main() {
    let runs: usize = std::env::var("SUITE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let manifest = env!("CARGO_MANIFEST_DIR");
    let mut rows = Vec::new();
    for i in 0..runs {
        let out = tempfile::tempdir().expect("temporary directory");
        let t = Instant::now();
        let o = Command::new(env!("CARGO_BIN_EXE_redrig"))
            .current_dir(manifest)
            .env_remove("REDRIG_RIG")
            .env_remove("CUCUMBER_FILTER_TAGS")
            .env_remove("REDRIG_SIGN_KEY")
            .args(["run", "-q", "--out"])
            .arg(out.path())
            .output()
            .expect("redrig runs");
        let process_wall = t.elapsed().as_secs_f64();
        let results: serde_json::Value = match std::fs::read(out.path().join("results.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        {
            Some(r) => r,
            None => {
                eprintln!(
                    "run {i}: no results.json (exit {:?}): {}",
                    o.status.code(),
                    String::from_utf8_lossy(&o.stderr)
                );
                std::process::exit(1);
            }
        };
        let f = |k: &str| results["timing"][k].as_f64().unwrap_or(f64::NAN);
        let counts = &results["counts"];
        // Device time the scenarios took, first step to last (not the waits alone).
        let scenario_device_s: f64 = results["scenarios"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| {
                        Some(s["device_end_ms"].as_f64()? - s["device_start_ms"].as_f64()?)
                    })
                    .sum::<f64>()
                    / 1000.0
            })
            .unwrap_or(f64::NAN);
        let row = serde_json::json!({
            "exit_code": o.status.code(),
            "scenarios": results["scenarios"].as_array().map(|a| a.len()),
            "counts": counts,
            "time_scale": results["rig"]["time_scale"],
            "process_wall_s": process_wall,
            "scenario_device_s": scenario_device_s,
            "wall_s": f("wall_s"),
            "device_waits_s": f("device_waits_s"),
            "rig_overhead_s": f("rig_overhead_s"),
            "overhead_share": f("rig_overhead_s") / f("wall_s"),
        });
        println!(
            "run {i}: exit {:?}, {} scenarios {}, scale {}",
            o.status.code(),
            row["scenarios"],
            counts,
            row["time_scale"]
        );
        println!(
            "  the scenarios span {:.0} s of device time ({:.1} device hours)",
            scenario_device_s,
            scenario_device_s / 3600.0
        );
        println!(
            "  wall {:.1} s (process {:.1} s) = device waits {:.1} s + rig overhead {:.1} s ({:.0} % of the wall time)",
            f("wall_s"),
            process_wall,
            f("device_waits_s"),
            f("rig_overhead_s"),
            100.0 * f("rig_overhead_s") / f("wall_s")
        );
        rows.push(row);
    }
    write_figures("bench-suite.json", &serde_json::json!({ "runs": rows }));
}

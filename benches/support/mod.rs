//! What the benchmarks share: where to put their figures, and percentiles.

use std::path::PathBuf;

/// The target directory: the first ancestor of this executable holding Cargo's
/// `CACHEDIR.TAG` (`target/release/deps/<bench>` → `target`).
pub fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .find(|d| d.join("CACHEDIR.TAG").is_file())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Nearest-rank percentile of sorted values.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> T {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Write a bench's figures as pretty JSON to `<target dir>/<name>` and say where (or
/// why not).
pub fn write_figures(name: &str, figures: &serde_json::Value) {
    let out = target_dir().join(name);
    let text = serde_json::to_string_pretty(figures).unwrap_or_default() + "\n";
    match std::fs::write(&out, text) {
        Ok(()) => println!("  written to {}", out.display()),
        Err(e) => eprintln!("cannot write {}: {e}", out.display()),
    }
}

//! Build script of `redrig`: records the source commit as `REDRIG_COMMIT`, which every
//! evidence manifest carries (`redrig::bundle::commit()`).
//!
//! The value is `git rev-parse HEAD`, with `-dirty` appended when `git status` shows
//! changes to tracked files (untracked files are ignored), or `unknown` when git or the
//! repository is missing (a source tarball) or git fails for any reason. This script
//! never fails the build.
//!
//! It is rerun when `HEAD`, the branch ref it points to (or `packed-refs` and the ref's
//! directory when the ref is packed), or the index changes, and when the crate's own
//! sources (`src/`, `build.rs`, `Cargo.toml`, `Cargo.lock`) change: a build that
//! recompiles the crate therefore also refreshes the dirty flag, while a build with
//! nothing to recompile does not run git at all. Edits to tracked files that are not
//! compiled into the binary (features, fixtures, docs) show up in the flag the next
//! time one of those watched paths changes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| ".".into()));
    for own in ["build.rs", "Cargo.toml", "Cargo.lock", "src"] {
        let path = dir.join(own);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    let commit = match describe(&dir) {
        Some((commit, watch)) => {
            for path in watch {
                println!("cargo:rerun-if-changed={}", path.display());
            }
            commit
        }
        None => "unknown".to_string(),
    };
    println!("cargo:rustc-env=REDRIG_COMMIT={commit}");
}

/// The commit string and the git files whose change must rerun this script, or `None`
/// when there is no usable repository.
fn describe(dir: &Path) -> Option<(String, Vec<PathBuf>)> {
    // The package is the repository's root: without its own `.git` (a directory, or a
    // file for a worktree) it is a source tarball, perhaps unpacked inside some other
    // repository whose commit must not be reported.
    if !dir.join(".git").exists() {
        return None;
    }
    let head = git(dir, &["rev-parse", "--verify", "HEAD"])?;
    if head.len() < 40 || !head.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut watch = Vec::new();
    let git_path = |name: &str| -> Option<PathBuf> {
        let p = PathBuf::from(git(dir, &["rev-parse", "--git-path", name])?);
        Some(if p.is_absolute() { p } else { dir.join(p) })
    };
    if let Some(p) = git_path("HEAD") {
        watch.push(p);
    }
    if let Some(p) = git_path("index") {
        watch.push(p);
    }
    // HEAD names a branch unless detached; a commit moves that branch's ref.
    if let Some(reference) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        if let Some(p) = git_path(&reference) {
            if p.exists() {
                watch.push(p);
            } else {
                // A packed ref: a commit writes a loose ref into its directory.
                if let Some(packed) = git_path("packed-refs") {
                    watch.push(packed);
                }
                if let Some(parent) = p.parent() {
                    watch.push(parent.to_path_buf());
                }
            }
        }
    }
    // Watching a missing path would rerun the script on every build.
    watch.retain(|p| p.exists());
    // Tracked changes only; GIT_OPTIONAL_LOCKS=0 keeps `git status` from rewriting the
    // index, which would itself trigger the next rerun.
    let status = git(dir, &["status", "--porcelain", "--untracked-files=no"])?;
    let dirty = if status.trim().is_empty() {
        ""
    } else {
        "-dirty"
    };
    Some((format!("{head}{dirty}"), watch))
}

/// Run git in `dir`; its trimmed standard output on success, `None` on any failure.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_string())
}

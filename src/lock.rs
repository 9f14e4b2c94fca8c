//! The run lock: one rig, one run at a time.
//!
//! [`acquire`] takes an advisory `flock(2)` lock (through
//! [`std::fs::File::try_lock`]) on `LOCK_DIR/RIG_NAME.lock`. The kernel releases it
//! when the holder's file is closed — on [`RigLock`]'s drop, or when the process
//! dies however it dies — so there are no stale locks to clean up. flock locks
//! belong to an *open file description*: a second `open` of the same file in the
//! same process is refused like another process would be.
//!
//! After locking, the holder writes who it is (pid, command line, start time) into
//! the file; a refused [`acquire`] reads it back for [`LockError::Busy`]'s message.
//! The file is never deleted (deleting a flock'ed file races with the next locker).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Default lock directory: `$XDG_RUNTIME_DIR/redrig`, else `/tmp/redrig-locks`.
pub fn default_lock_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("redrig"),
        _ => PathBuf::from("/tmp/redrig-locks"),
    }
}

/// A held run lock. Dropping it releases the lock.
#[derive(Debug)]
pub struct RigLock {
    file: File,
    path: PathBuf,
    rig: String,
}

impl RigLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The locked rig's name.
    pub fn rig_name(&self) -> &str {
        &self.rig
    }
}

impl Drop for RigLock {
    fn drop(&mut self) {
        // Clear the holder's details so nobody reads them as current, then unlock
        // (closing the file would unlock as well).
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another run holds the rig.
    #[error("rig '{rig}' is in use by {holder} (lock file {})", path.display())]
    Busy {
        /// Rig name.
        rig: String,
        /// Who holds it, e.g. `pid 1234 (redrig run …) since 2026-05-01T10:00:00Z`.
        holder: String,
        /// The lock file.
        path: PathBuf,
    },
    /// The lock file could not be created, opened or written.
    #[error("cannot use lock file {}: {source}", path.display())]
    Io {
        /// The lock file (or its directory).
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The rig name cannot name a lock file.
    #[error("invalid rig name '{0}' for a lock: expected letters, digits, '.', '_', '-'")]
    BadName(String),
}

/// Take the run lock of `rig_name` in `lock_dir` (created if missing), without
/// waiting: a lock held elsewhere gives [`LockError::Busy`] naming the holder.
pub fn acquire(lock_dir: &Path, rig_name: &str) -> Result<RigLock, LockError> {
    let name_ok = !rig_name.is_empty()
        && !rig_name.starts_with('.')
        && rig_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !name_ok {
        return Err(LockError::BadName(rig_name.to_string()));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LockError::Io { path, source }
    };
    std::fs::create_dir_all(lock_dir).map_err(io(lock_dir))?;
    let path = lock_dir.join(format!("{rig_name}.lock"));
    // No truncation on open: the file holds the current holder's details.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io(&path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(LockError::Busy {
                rig: rig_name.to_string(),
                holder: describe_holder(&text),
                path,
            });
        }
        Err(TryLockError::Error(e)) => return Err(io(&path)(e)),
    }
    let info = serde_json::json!({
        "pid": std::process::id(),
        "command": command_line(),
        "since": now_rfc3339(),
    });
    let write = |file: &mut File| -> std::io::Result<()> {
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(format!("{info}\n").as_bytes())?;
        file.flush()
    };
    write(&mut file).map_err(io(&path))?;
    Ok(RigLock {
        file,
        path,
        rig: rig_name.to_string(),
    })
}

fn describe_holder(text: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text.trim()) else {
        return "another process (it has not written its details yet)".to_string();
    };
    let pid = v
        .get("pid")
        .and_then(|p| p.as_u64())
        .map(|p| p.to_string())
        .unwrap_or_else(|| "?".into());
    let cmd = v.get("command").and_then(|c| c.as_str()).unwrap_or("?");
    let since = v.get("since").and_then(|c| c.as_str()).unwrap_or("?");
    format!("pid {pid} ({cmd}) since {since}")
}

fn command_line() -> String {
    let mut args = std::env::args();
    let prog = args
        .next()
        .map(|a| {
            Path::new(&a)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or(a)
        })
        .unwrap_or_else(|| "?".into());
    std::iter::once(prog)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "?".into())
}

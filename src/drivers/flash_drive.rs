//! Flashing through a UF2-style bootloader drive (`docs/virtual-hardware.md` §7).
//!
//! The drive is a directory: the lab's `flash_drive`, or the mount point of a real
//! watch's bootloader drive. One attempt:
//!
//! 1. remove an old `RESULT.TXT`;
//! 2. copy the image under a temporary name (not ending in `.IMG`), `fsync` it, and
//!    rename it to `FIRMWARE.IMG` (the rename is the bootloader's "copy complete");
//! 3. wait, bounded, for the bootloader's `RESULT.TXT`: `OK <version> <sha256>` or
//!    `ERR <reason>`.
//!
//! A refusal (`ERR …`) is the device's answer ([`FlashOutcome::Refused`]), not a rig
//! failure; no answer in time, an unreadable answer or a drive that cannot be
//! written is a [`RigError::Instrument`]. Each attempt is appended to the evidence
//! file `flash.log` with the image's SHA-256. Blocking file work runs on a blocking
//! thread.

use crate::clock::Clock;
use crate::drivers::{FlashOutcome, Flasher};
use crate::error::{RigError, RigResult};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const INSTRUMENT: &str = "flasher";
/// Default limit for the bootloader's answer, in device seconds.
pub const DEFAULT_TIMEOUT_SECS: f64 = 120.0;
/// The answer is awaited at least this long in wall time, whatever the scale.
const MIN_WALL_WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);
/// Largest `RESULT.TXT` read.
const MAX_RESULT: u64 = 4096;

/// Parse the bootloader's `RESULT.TXT`.
pub fn parse_result(text: &str) -> Result<FlashOutcome, String> {
    let line = text.lines().next().unwrap_or("").trim();
    let mut parts = line.splitn(2, ' ');
    match parts.next() {
        Some("OK") => {
            let rest: Vec<&str> = parts.next().unwrap_or("").split_whitespace().collect();
            match rest.as_slice() {
                [version, sha] if sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()) => {
                    Ok(FlashOutcome::Written {
                        version: version.to_string(),
                        sha256: sha.to_ascii_lowercase(),
                    })
                }
                _ => Err(format!("`{}` is not `OK <version> <sha256>`", shown(line))),
            }
        }
        Some("ERR") => {
            let reason = parts.next().unwrap_or("").trim();
            Ok(FlashOutcome::Refused {
                reason: if reason.is_empty() {
                    "no reason given".into()
                } else {
                    reason.into()
                },
            })
        }
        _ => Err(format!("`{}` is neither `OK …` nor `ERR …`", shown(line))),
    }
}

fn shown(s: &str) -> String {
    s.chars()
        .take(200)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Flasher over a bootloader drive.
pub struct DriveFlasher {
    drive: PathBuf,
    clock: Clock,
    timeout_secs: f64,
    evidence_dir: PathBuf,
    busy: tokio::sync::Mutex<()>,
}

impl DriveFlasher {
    /// A flasher for the drive at `drive` (a directory that must exist).
    pub fn open(drive: &Path, clock: Clock, evidence_dir: &Path) -> RigResult<Arc<DriveFlasher>> {
        DriveFlasher::open_with_timeout(drive, clock, evidence_dir, DEFAULT_TIMEOUT_SECS)
    }

    /// The same with another limit for the bootloader's answer (device seconds; at
    /// least 10 s of wall time are always allowed).
    pub fn open_with_timeout(
        drive: &Path,
        clock: Clock,
        evidence_dir: &Path,
        timeout_secs: f64,
    ) -> RigResult<Arc<DriveFlasher>> {
        if !drive.is_dir() {
            return Err(RigError::instrument(
                INSTRUMENT,
                format!(
                    "bootloader drive {} is not a directory (is the watch in bootloader mode?)",
                    drive.display()
                ),
            ));
        }
        Ok(Arc::new(DriveFlasher {
            drive: drive.to_path_buf(),
            clock,
            timeout_secs,
            evidence_dir: evidence_dir.to_path_buf(),
            busy: tokio::sync::Mutex::new(()),
        }))
    }

    fn flash_blocking(
        drive: &Path,
        image: &Path,
        wait: Duration,
        evidence: &Path,
    ) -> RigResult<FlashOutcome> {
        let io = |what: &str, e: std::io::Error| {
            RigError::instrument(INSTRUMENT, format!("{what}: {e}"))
        };
        let result = drive.join("RESULT.TXT");
        match std::fs::remove_file(&result) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&format!("removing the old {}", result.display()), e)),
        }
        let mut src =
            std::fs::File::open(image).map_err(|e| io(&format!("image {}", image.display()), e))?;
        let tmp = drive.join(format!("redrig-upload-{}.tmp", std::process::id()));
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        {
            let mut dst = std::fs::File::create(&tmp)
                .map_err(|e| io(&format!("creating {}", tmp.display()), e))?;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = src.read(&mut buf).map_err(|e| io("reading the image", e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                size += n as u64;
                dst.write_all(&buf[..n])
                    .map_err(|e| io(&format!("writing {}", tmp.display()), e))?;
            }
            dst.sync_all()
                .map_err(|e| io(&format!("syncing {}", tmp.display()), e))?;
        }
        let sha = hex::encode(hasher.finalize());
        let target = drive.join("FIRMWARE.IMG");
        if let Err(e) = std::fs::rename(&tmp, &target) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(&format!("renaming to {}", target.display()), e));
        }
        let started = Instant::now();
        let text = loop {
            match std::fs::File::open(&result) {
                Ok(f) => {
                    let mut s = Vec::new();
                    f.take(MAX_RESULT)
                        .read_to_end(&mut s)
                        .map_err(|e| io("reading RESULT.TXT", e))?;
                    break String::from_utf8_lossy(&s).into_owned();
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("opening RESULT.TXT", e)),
            }
            if started.elapsed() >= wait {
                return Err(RigError::instrument(
                    INSTRUMENT,
                    format!(
                        "the bootloader wrote no RESULT.TXT within {wait:?} after {} ({size} bytes, sha256 {sha}) was copied",
                        image.display()
                    ),
                ));
            }
            std::thread::sleep(POLL);
        };
        let outcome = parse_result(&text)
            .map_err(|e| RigError::instrument(INSTRUMENT, format!("RESULT.TXT: {e}")));
        let line = format!(
            "image={} size={size} sha256={sha} result={:?}{}\n",
            image.display(),
            text.lines().next().unwrap_or("").trim(),
            match &outcome {
                Ok(FlashOutcome::Written { sha256, .. }) if *sha256 != sha =>
                    " (the drive reports another sha256)",
                _ => "",
            }
        );
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(evidence.join("flash.log"))
            .and_then(|mut f| f.write_all(line.as_bytes()));
        outcome
    }
}

#[async_trait]
impl Flasher for DriveFlasher {
    async fn flash(&self, image: &Path) -> RigResult<FlashOutcome> {
        let _one_at_a_time = self.busy.lock().await;
        let wait = self.clock.wall(self.timeout_secs).max(MIN_WALL_WAIT);
        let (drive, image, evidence) = (
            self.drive.clone(),
            image.to_path_buf(),
            self.evidence_dir.clone(),
        );
        tokio::task::spawn_blocking(move || {
            DriveFlasher::flash_blocking(&drive, &image, wait, &evidence)
        })
        .await
        .map_err(|e| RigError::instrument(INSTRUMENT, format!("flashing task: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_parse() {
        let sha = "ab".repeat(32);
        assert_eq!(
            parse_result(&format!("OK 2.4.0 {sha}\n")).unwrap(),
            FlashOutcome::Written {
                version: "2.4.0".into(),
                sha256: sha.clone()
            }
        );
        assert_eq!(
            parse_result("ERR signature invalid\n").unwrap(),
            FlashOutcome::Refused {
                reason: "signature invalid".into()
            }
        );
        assert_eq!(
            parse_result("ERR").unwrap(),
            FlashOutcome::Refused {
                reason: "no reason given".into()
            }
        );
        assert!(parse_result("OK 2.4.0").is_err());
        assert!(parse_result(&format!("OK 2.4.0 {}", "zz".repeat(32))).is_err());
        assert!(parse_result("").is_err());
        assert!(parse_result("\u{0}\u{1}garbage").is_err());
    }

    /// A bootloader stand-in on a thread: takes FIRMWARE.IMG, answers with `answer`.
    fn bootloader(
        drive: PathBuf,
        answer: impl Fn(&[u8]) -> String + Send + 'static,
    ) -> std::thread::JoinHandle<Vec<String>> {
        std::thread::spawn(move || {
            let img = drive.join("FIRMWARE.IMG");
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(bytes) = std::fs::read(&img) {
                    let names: Vec<String> = std::fs::read_dir(&drive)
                        .unwrap()
                        .map(|e| e.unwrap().file_name().to_string_lossy().into())
                        .collect();
                    std::fs::remove_file(&img).unwrap();
                    std::fs::write(drive.join("RESULT.TXT.tmp"), answer(&bytes)).unwrap();
                    std::fs::rename(drive.join("RESULT.TXT.tmp"), drive.join("RESULT.TXT"))
                        .unwrap();
                    return names;
                }
                std::thread::yield_now();
            }
            vec![]
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn flashes_through_the_drive_and_reads_the_answer() {
        let dir = tempfile::tempdir().unwrap();
        let drive = dir.path().join("drive");
        std::fs::create_dir(&drive).unwrap();
        // An old answer must not be taken for the new one.
        std::fs::write(drive.join("RESULT.TXT"), "ERR stale\n").unwrap();
        let image = dir.path().join("fw.img");
        std::fs::write(&image, b"RRFW1\nversion: 2.5.0\n").unwrap();
        let bl = bootloader(drive.clone(), |b| {
            format!("OK 2.5.0 {}\n", hex::encode(Sha256::digest(b)))
        });
        let f = DriveFlasher::open(&drive, Clock::start(20.0), dir.path()).unwrap();
        let out = f.flash(&image).await.unwrap();
        let names = bl.join().unwrap();
        assert_eq!(
            names,
            vec!["FIRMWARE.IMG".to_string()],
            "only the renamed image, no stale RESULT.TXT"
        );
        let FlashOutcome::Written { version, sha256 } = out else {
            panic!("{out:?}")
        };
        assert_eq!(version, "2.5.0");
        assert_eq!(
            sha256,
            hex::encode(Sha256::digest(b"RRFW1\nversion: 2.5.0\n"))
        );
        assert!(std::fs::read_to_string(dir.path().join("flash.log"))
            .unwrap()
            .contains(&sha256));

        let bl = bootloader(drive.clone(), |_| "ERR rollback refused\n".into());
        let out = f.flash(&image).await.unwrap();
        bl.join().unwrap();
        assert_eq!(
            out,
            FlashOutcome::Refused {
                reason: "rollback refused".into()
            }
        );
    }

    #[test]
    fn no_answer_is_a_bounded_instrument_error() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("fw.img");
        std::fs::write(&image, b"x").unwrap();
        let err =
            DriveFlasher::flash_blocking(dir.path(), &image, Duration::from_millis(50), dir.path())
                .unwrap_err();
        assert!(matches!(err, RigError::Instrument { .. }));
        assert!(err.to_string().contains("no RESULT.TXT"), "{err}");
        // The image was handed over under its final name, the temporary one is gone.
        assert!(dir.path().join("FIRMWARE.IMG").exists());
        assert_eq!(
            std::fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| e
                    .as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp"))
                .count(),
            0
        );
        assert!(
            DriveFlasher::open(&dir.path().join("missing"), Clock::start(1.0), dir.path()).is_err()
        );
        let err = DriveFlasher::flash_blocking(
            dir.path(),
            &dir.path().join("no-image"),
            Duration::ZERO,
            dir.path(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no-image"), "{err}");
    }
}

//! The virtual lab's debug port (`docs/virtual-hardware.md` §8): a Unix socket
//! modelling an SWD access port, text lines `ATTACH`, `READ <addr-hex> <len>`,
//! `DETACH`.
//!
//! [`DebugPort::probe`] attaches, reads flash from address 0 in 4 KiB requests and
//! detaches, on a fresh connection each time. `ERR locked` is the device's answer
//! ([`DebugAccess::Locked`]); a missing socket, a closed connection, no answer in
//! time or an answer outside the protocol is a [`RigError::Instrument`]. The whole
//! transcript goes to the evidence file `debug.log`.

use crate::drivers::gpio_virtual::{read_line_bounded, Line};
use crate::drivers::{DebugAccess, DebugPort};
use crate::error::{RigError, RigResult};
use crate::gateway::EvidenceWriter;
use async_trait::async_trait;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

const INSTRUMENT: &str = "debug_port";
/// Largest READ the protocol allows.
pub const READ_CHUNK: usize = 4096;
/// Largest probe read.
pub const MAX_PROBE: usize = 16 * 1024 * 1024;
/// Longest answer line (a 4 KiB DATA line is 8 KiB of hex).
const MAX_LINE: usize = 16 * 1024;
/// Wall time for one answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// The lab's debug socket.
pub struct VirtualDebugPort {
    path: PathBuf,
    evidence: EvidenceWriter,
}

struct Session<'a> {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    evidence: &'a EvidenceWriter,
}

impl Session<'_> {
    async fn ask(&mut self, request: &str) -> RigResult<String> {
        let _ = self
            .evidence
            .append("debug.log", format!("-> {request}\n"))
            .await;
        let exchange = async {
            self.writer
                .write_all(format!("{request}\n").as_bytes())
                .await
                .map_err(|e| format!("write: {e}"))?;
            match read_line_bounded(&mut self.reader, MAX_LINE).await {
                Ok(Line::Text(l)) => Ok(String::from_utf8_lossy(&l).into_owned()),
                Ok(Line::TooLong(n)) => Err(format!("answer to `{request}` is {n} bytes long")),
                Ok(Line::Eof) => Err(format!(
                    "the watch closed the debug socket after `{request}`"
                )),
                Err(e) => Err(format!("read: {e}")),
            }
        };
        let answer = match tokio::time::timeout(ANSWER_TIMEOUT, exchange).await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => return Err(RigError::instrument(INSTRUMENT, e)),
            Err(_) => {
                return Err(RigError::instrument(
                    INSTRUMENT,
                    format!("no answer to `{request}` within {ANSWER_TIMEOUT:?}"),
                ))
            }
        };
        let _ = self
            .evidence
            .append("debug.log", format!("<- {answer}\n"))
            .await;
        Ok(answer.trim().to_string())
    }
}

fn unexpected(request: &str, answer: &str) -> RigError {
    let shown: String = answer.chars().take(120).collect();
    RigError::instrument(
        INSTRUMENT,
        format!("unexpected answer to `{request}`: `{shown}`"),
    )
}

impl VirtualDebugPort {
    /// A debug port at the socket `path` (connected per probe).
    pub fn open(path: &Path, evidence_dir: &Path) -> RigResult<Arc<VirtualDebugPort>> {
        Ok(Arc::new(VirtualDebugPort {
            path: path.to_path_buf(),
            evidence: EvidenceWriter::start(evidence_dir)?,
        }))
    }

    async fn session(&self) -> RigResult<Session<'_>> {
        let s = UnixStream::connect(&self.path).await.map_err(|e| {
            RigError::instrument(
                INSTRUMENT,
                format!("cannot connect to {}: {e}", self.path.display()),
            )
        })?;
        let (r, w) = s.into_split();
        Ok(Session {
            reader: BufReader::new(r),
            writer: w,
            evidence: &self.evidence,
        })
    }
}

#[async_trait]
impl DebugPort for VirtualDebugPort {
    async fn probe(&self, len: usize) -> RigResult<DebugAccess> {
        if len > MAX_PROBE {
            return Err(RigError::Config(format!(
                "debug probe of {len} bytes: at most {MAX_PROBE}"
            )));
        }
        let mut s = self.session().await?;
        let attach = s.ask("ATTACH").await?;
        let idcode = if let Some(rest) = attach.strip_prefix("OK") {
            rest.trim()
                .strip_prefix("idcode=")
                .unwrap_or(rest.trim())
                .to_string()
        } else if attach.starts_with("ERR") {
            return Ok(DebugAccess::Locked { detail: attach });
        } else {
            return Err(unexpected("ATTACH", &attach));
        };
        let mut flash = Vec::with_capacity(len.min(1024 * 1024));
        while flash.len() < len {
            let n = (len - flash.len()).min(READ_CHUNK);
            let req = format!("READ {:08x} {n}", flash.len());
            let answer = s.ask(&req).await?;
            if let Some(hexdata) = answer.strip_prefix("DATA") {
                let bytes = hex::decode(hexdata.trim()).map_err(|_| unexpected(&req, &answer))?;
                if bytes.len() > n {
                    return Err(unexpected(&req, &answer));
                }
                let short = bytes.len() < n;
                flash.extend_from_slice(&bytes);
                if short || bytes.is_empty() {
                    break; // end of flash
                }
            } else if answer.starts_with("ERR") {
                let _ = s.ask("DETACH").await;
                return Ok(DebugAccess::Locked {
                    detail: format!("ATTACH answered `{attach}` but `{req}` answered `{answer}`"),
                });
            } else {
                return Err(unexpected(&req, &answer));
            }
        }
        let detach = s.ask("DETACH").await?;
        if !detach.starts_with("OK") {
            let _ = self
                .evidence
                .append("debug.log", format!("!! DETACH answered `{detach}`\n"))
                .await;
        }
        let _ = self.evidence.flush().await;
        Ok(DebugAccess::Open {
            idcode,
            flash_read: flash,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncBufReadExt;
    use tokio::net::UnixListener;

    /// A §8 debug socket with `flash` contents; `locked` answers ERR locked.
    fn fake_port(path: &Path, flash: Vec<u8>, locked: bool) {
        let l = UnixListener::bind(path).unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let flash = flash.clone();
                tokio::spawn(async move {
                    let (r, mut w) = s.into_split();
                    let mut lines = BufReader::new(r).lines();
                    let mut attached = false;
                    while let Ok(Some(line)) = lines.next_line().await {
                        let parts: Vec<&str> = line.split_whitespace().collect();
                        let answer = match parts.as_slice() {
                            ["ATTACH"] if locked => "ERR locked".to_string(),
                            ["ATTACH"] => {
                                attached = true;
                                "OK idcode=0x2ba01477".into()
                            }
                            ["READ", ..] if locked => "ERR locked".into(),
                            ["READ", _, _] if !attached => "ERR not attached".into(),
                            ["READ", a, n] => {
                                let a = usize::from_str_radix(a, 16).unwrap();
                                let n: usize = n.parse().unwrap();
                                let end = (a + n).min(flash.len());
                                format!("DATA {}", hex::encode(&flash[a.min(end)..end]))
                            }
                            ["DETACH"] | ["ERASE"] => "OK".into(),
                            _ => "ERR".into(),
                        };
                        w.write_all(format!("{answer}\n").as_bytes()).await.unwrap();
                    }
                });
            }
        });
    }

    #[tokio::test]
    async fn open_port_reads_flash_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("debug.sock");
        let flash: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        fake_port(&sock, flash.clone(), false);
        let port = VirtualDebugPort::open(&sock, dir.path()).unwrap();
        let DebugAccess::Open { idcode, flash_read } = port.probe(9000).await.unwrap() else {
            panic!()
        };
        assert_eq!(idcode, "0x2ba01477");
        assert_eq!(flash_read, flash[..9000]);
        // Asking for more than there is returns what there is.
        let DebugAccess::Open { flash_read, .. } = port.probe(20_000).await.unwrap() else {
            panic!()
        };
        assert_eq!(flash_read, flash);
        let log = std::fs::read_to_string(dir.path().join("debug.log")).unwrap();
        assert!(log.contains("-> READ 00001000 4096"), "{log}");
    }

    #[tokio::test]
    async fn locked_port_and_missing_socket() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("debug.sock");
        fake_port(&sock, vec![1, 2, 3], true);
        let port = VirtualDebugPort::open(&sock, dir.path()).unwrap();
        assert_eq!(
            port.probe(16).await.unwrap(),
            DebugAccess::Locked {
                detail: "ERR locked".into()
            }
        );
        let gone = VirtualDebugPort::open(&dir.path().join("none.sock"), dir.path()).unwrap();
        assert!(matches!(
            gone.probe(16).await,
            Err(RigError::Instrument { .. })
        ));
        assert!(matches!(
            port.probe(MAX_PROBE + 1).await,
            Err(RigError::Config(_))
        ));
    }
}

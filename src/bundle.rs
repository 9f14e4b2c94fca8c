//! The evidence bundle: `manifest.json` over every file of a run directory, signed with
//! the lab's Ed25519 key, and its verification.
//!
//! A test lab working under ISO/IEC 17025 keeps its records complete, traceable and
//! tamper-evident. [`seal`] lists every entry of a run directory with its SHA-256 in
//! [`MANIFEST`], together with what was tested and by which build of redrig, and signs
//! the exact bytes of that file with the lab's key into [`SIGNATURE`]. [`verify`] later
//! rehashes the directory and reports every changed, missing and added file and whether
//! the signature holds and was made by the lab's key.
//!
//! # Manifest
//! `manifest.json` is pretty-printed JSON with, in this order: `schema`
//! ([`MANIFEST_SCHEMA`]), `redrig_version`, `commit`, `started`, `finished`, `rig`,
//! `device`, `firmware`, `config` (from [`SealInfo`]), `files` and `signature`.
//! `files` is sorted by path (byte order of the UTF-8 text); paths are relative to the
//! run directory and `/`-separated. Each entry is one of
//! - `{path, size, sha256}` for a regular file (lowercase hex SHA-256);
//! - `{path, symlink}` for a symbolic link, with its target as written: links are never
//!   followed, neither while sealing nor while verifying, and verify compares targets;
//! - `{path, kind}` for anything else (`fifo`, `socket`, `char-device`,
//!   `block-device`), which is never opened.
//!
//! Directories themselves are not listed: an empty directory added or removed after
//! sealing is not noticed. `manifest.json` and `manifest.sig` at the top of the run
//! directory are not listed either (unless they are directories). The temporary files
//! of a seal (`.manifest.json.PID.N.tmp`) are created after the walk and renamed or
//! removed before it returns; one left by a crashed seal is listed like any file. File and link names must be UTF-8 to be sealed.
//! A run directory with more than [`MAX_ENTRIES`] entries or nested deeper than
//! [`MAX_DEPTH`] directories is refused rather than walked.
//!
//! `signature` is `{"algorithm": "ed25519", "public_key": HEX, "fingerprint": FP}`
//! naming the key that signed, or `null` for an unsigned manifest. The fingerprint is
//! `SHA256:` followed by the lowercase hex SHA-256 of the raw 32-byte public key; with
//! OpenSSL: `openssl pkey -pubin -in lab-key.pub.pem -outform DER | tail -c 32 |
//! sha256sum`.
//!
//! # Signature
//! `manifest.sig` holds the 64-byte Ed25519 signature (RFC 8032, pure Ed25519) of the
//! exact bytes of `manifest.json`, as 128 lowercase hex digits and a newline. Because
//! the manifest names its signer, the signature also covers which key made it. To
//! check it without redrig:
//!
//! ```text
//! xxd -r -p manifest.sig > manifest.sig.bin
//! openssl pkeyutl -verify -pubin -inkey lab-key.pub.pem -rawin \
//!     -in manifest.json -sigfile manifest.sig.bin
//! ```
//!
//! `manifest.json` and `manifest.sig` are each written atomically (a temporary file in
//! the run directory, then a rename), but not together: a seal interrupted between the
//! two renames leaves a pair that verifies as [`SignatureCheck::Invalid`], never as
//! valid.
//!
//! # Keys
//! [`keygen`] writes the private key as PKCS#8 PEM (mode 0600) and the public key as
//! SubjectPublicKeyInfo PEM; both are the formats of `openssl genpkey -algorithm
//! ed25519` and `openssl pkey -pubout`, and keys made by OpenSSL load here too.
//! Encrypted private keys are not supported.

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, KeypairBytes,
};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Name of the manifest at the top of a run directory.
pub const MANIFEST: &str = "manifest.json";
/// Name of the detached signature of [`MANIFEST`], next to it.
pub const SIGNATURE: &str = "manifest.sig";
/// Value of the manifest's `schema` field; [`verify`] refuses any other.
pub const MANIFEST_SCHEMA: &str = "redrig-manifest/1";
/// Most directory entries [`seal`] and [`verify`] walk before refusing a run directory.
pub const MAX_ENTRIES: usize = 1_000_000;
/// Deepest directory nesting [`seal`] and [`verify`] walk before refusing a run
/// directory.
pub const MAX_DEPTH: usize = 64;

/// Largest `manifest.json` that [`verify`] reads.
const MAX_MANIFEST_BYTES: u64 = 256 * 1024 * 1024;
/// Largest key file read.
const MAX_KEY_BYTES: u64 = 64 * 1024;
/// Largest `manifest.sig` read.
const MAX_SIG_BYTES: u64 = 4096;
/// Read buffer for hashing.
const HASH_BUFFER: usize = 64 * 1024;

/// Why sealing, verifying or handling a key failed.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// A key file is not the expected Ed25519 PEM key.
    #[error("{path}: {reason}")]
    KeyFormat {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The signing key lies inside the run directory it would sign.
    #[error(
        "{key}: the signing key lies inside the run directory {run_dir}; keep it outside \
         every run directory, or it would end up in the evidence it signs"
    )]
    KeyInsideRunDir {
        /// The key file (canonical path).
        key: PathBuf,
        /// The run directory (canonical path, as far as it exists).
        run_dir: PathBuf,
    },
    /// The run directory has no `manifest.json`.
    #[error("{0}: no manifest.json here: this run directory was never sealed")]
    NoManifest(PathBuf),
    /// `manifest.json` is not a redrig manifest.
    #[error("{path}: {reason}")]
    BadManifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The run directory exceeds [`MAX_ENTRIES`] or [`MAX_DEPTH`].
    #[error("{path}: {reason}")]
    TooLarge {
        /// The run directory or the directory where the limit was hit.
        path: PathBuf,
        /// Which limit.
        reason: String,
    },
    /// Something in the run directory cannot be recorded (a name that is not UTF-8) or
    /// the run directory is not a directory.
    #[error("{path}: {reason}")]
    Unsupported {
        /// The offending path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// [`keygen`] would overwrite an existing file.
    #[error("{0} already exists; not overwriting it (--force replaces it)")]
    Exists(PathBuf),
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The git commit redrig was built from: `git rev-parse HEAD`, with `-dirty` when
/// tracked files had changes at build time, or `unknown` when built outside a git
/// checkout (see `build.rs`).
pub fn commit() -> &'static str {
    env!("REDRIG_COMMIT")
}

/// `SHA256:` and the lowercase hex SHA-256 of the raw 32-byte Ed25519 public key.
pub fn fingerprint(key: &VerifyingKey) -> String {
    format!("SHA256:{}", hex::encode(Sha256::digest(key.as_bytes())))
}

// ---------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------

/// The lab's private key, loaded from a PKCS#8 PEM file.
pub struct LabKey {
    signing: SigningKey,
    path: PathBuf,
    warnings: Vec<String>,
}

impl LabKey {
    /// The 32-byte public key as lowercase hex, as the manifest's
    /// `signature.public_key`.
    pub fn public_hex(&self) -> String {
        hex::encode(self.signing.verifying_key().as_bytes())
    }

    /// The public key's fingerprint (see [`fingerprint`]).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.signing.verifying_key())
    }

    /// The public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The key file, canonicalised.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What [`load_signing_key`] found worth telling the operator without refusing the
    /// key (a key file accessible by group or others). It prints nothing itself: the
    /// caller shows these.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

impl fmt::Debug for LabKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LabKey")
            .field("path", &self.path)
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

/// Load the lab's private signing key (PKCS#8 PEM, unencrypted) for sealing `run_dir`.
///
/// Refuses a key file inside `run_dir`, comparing canonical paths; `run_dir` need not
/// exist yet (its nearest existing ancestor is canonicalised and the rest appended).
/// A key file accessible by group or others is accepted with a message in
/// [`LabKey::warnings`], which the caller is expected to show; nothing is printed here.
pub fn load_signing_key(path: &Path, run_dir: &Path) -> Result<LabKey, BundleError> {
    let canonical = fs::canonicalize(path).map_err(io_err(path))?;
    let run_canonical = canonicalize_nearest(run_dir).map_err(io_err(run_dir))?;
    if canonical.starts_with(&run_canonical) {
        return Err(BundleError::KeyInsideRunDir {
            key: canonical,
            run_dir: run_canonical,
        });
    }
    let bytes = read_bounded(path, MAX_KEY_BYTES, false).map_err(io_err(path))?;
    let meta = fs::metadata(&canonical).map_err(io_err(path))?;
    let mut warnings = Vec::new();
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        warnings.push(format!(
            "{}: the private key is accessible by group or others (mode {mode:04o}); \
             `chmod 600` it",
            path.display()
        ));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| key_format(path, "not a PEM file"))?;
    let signing = match SigningKey::from_pkcs8_pem(text) {
        Ok(k) => k,
        Err(e) => {
            let reason = if VerifyingKey::from_public_key_pem(text).is_ok() {
                "this is a public key; signing needs the private key (the file without \
                 .pub)"
                    .to_string()
            } else if text.contains("ENCRYPTED PRIVATE KEY") {
                "encrypted private keys are not supported".to_string()
            } else {
                format!("not an Ed25519 private key in PKCS#8 PEM ({e})")
            };
            return Err(key_format(path, &reason));
        }
    };
    Ok(LabKey {
        signing,
        path: canonical,
        warnings,
    })
}

/// Load a public key to check signatures against: the SubjectPublicKeyInfo PEM written
/// by [`keygen`] (or `openssl pkey -pubout`), or a private key PEM, whose public half is
/// taken.
pub fn load_public_key(path: &Path) -> Result<VerifyingKey, BundleError> {
    let bytes = read_bounded(path, MAX_KEY_BYTES, false).map_err(io_err(path))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| key_format(path, "not a PEM file"))?;
    if let Ok(key) = VerifyingKey::from_public_key_pem(text) {
        return Ok(key);
    }
    match SigningKey::from_pkcs8_pem(text) {
        Ok(k) => Ok(k.verifying_key()),
        Err(_) => Err(key_format(
            path,
            "not an Ed25519 public key (SubjectPublicKeyInfo PEM) nor a PKCS#8 private key",
        )),
    }
}

fn key_format(path: &Path, reason: &str) -> BundleError {
    BundleError::KeyFormat {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Where [`keygen`] writes the public key for private key file `private`: a final
/// `.pem` becomes `.pub.pem` (`lab-key.pem` → `lab-key.pub.pem`); any other name gets
/// `.pub.pem` appended (`lab` → `lab.pub.pem`).
pub fn public_key_path(private: &Path) -> PathBuf {
    let name = private
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let public = match name.strip_suffix(".pem") {
        Some(stem) if !stem.is_empty() => format!("{stem}.pub.pem"),
        _ => format!("{name}.pub.pem"),
    };
    private.with_file_name(public)
}

/// The default private key file: `$XDG_CONFIG_HOME/redrig/lab-key.pem` when
/// `XDG_CONFIG_HOME` is an absolute path, else `$HOME/.config/redrig/lab-key.pem`;
/// `None` when neither is set.
pub fn default_key_path() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(config.join("redrig").join("lab-key.pem"))
}

/// Generate a new Ed25519 key pair from the operating system's random number
/// generator. The private key is written to `out` as PKCS#8 PEM, created with mode
/// 0600; the public key as SubjectPublicKeyInfo PEM to [`public_key_path`]`(out)`.
/// The parent directory is created (mode 0700) when missing. Existing files are not
/// overwritten unless `force`, which removes them first so that the new private key
/// file is still created with mode 0600. Returns `(private, public)`.
pub fn keygen(out: &Path, force: bool) -> Result<(PathBuf, PathBuf), BundleError> {
    let public = public_key_path(out);
    for path in [out, public.as_path()] {
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => {
                return Err(BundleError::Unsupported {
                    path: path.to_path_buf(),
                    reason: "is a directory; give the key file's path".into(),
                })
            }
            Ok(_) if !force => return Err(BundleError::Exists(path.to_path_buf())),
            _ => {}
        }
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(io_err(parent))?;
    }
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| BundleError::Random(e.to_string()))?;
    let signing = SigningKey::from_bytes(&seed);
    seed.fill(0);
    std::hint::black_box(&seed);
    // PKCS#8 v1 (RFC 8410, no embedded public key): what OpenSSL writes and reads.
    let private_pem = KeypairBytes {
        secret_key: signing.to_bytes(),
        public_key: None,
    }
    .to_pkcs8_pem(LineEnding::LF)
    .map_err(|e| key_format(out, &format!("cannot encode the private key: {e}")))?;
    let public_pem = signing
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| key_format(&public, &format!("cannot encode the public key: {e}")))?;
    if force {
        for path in [out, public.as_path()] {
            match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(path)(e)),
                _ => {}
            }
        }
    }
    write_new(out, private_pem.as_bytes(), 0o600)?;
    if let Err(e) = write_new(&public, public_pem.as_bytes(), 0o644) {
        let _ = fs::remove_file(out);
        return Err(e);
    }
    Ok((out.to_path_buf(), public))
}

/// Create `path` (failing if it exists) with `mode` and write `bytes` durably.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), BundleError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => BundleError::Exists(path.to_path_buf()),
            _ => io_err(path)(e),
        })?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(io_err(path))
}

/// The canonical form of `path`, which need not exist: its nearest existing ancestor
/// is canonicalised and the remaining components are appended (`..` removes one).
fn canonicalize_nearest(path: &Path) -> io::Result<PathBuf> {
    let absolute = std::path::absolute(path)?;
    for ancestor in absolute.ancestors() {
        let Ok(mut base) = fs::canonicalize(ancestor) else {
            continue;
        };
        let rest = absolute.strip_prefix(ancestor).unwrap_or(Path::new(""));
        for component in rest.components() {
            match component {
                Component::Normal(name) => base.push(name),
                Component::ParentDir => {
                    base.pop();
                }
                _ => {}
            }
        }
        return Ok(base);
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "no ancestor of this path exists",
    ))
}

/// Open `path` for reading only if it is a regular file; with `no_follow` a symbolic
/// link is refused. Never blocks on a FIFO.
fn open_regular(path: &Path, no_follow: bool) -> io::Result<File> {
    let mut flags = libc::O_NONBLOCK;
    if no_follow {
        flags |= libc::O_NOFOLLOW;
    }
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(f)
}

/// A regular file's content, at most `limit` bytes.
fn read_bounded(path: &Path, limit: u64, no_follow: bool) -> io::Result<Vec<u8>> {
    let f = open_regular(path, no_follow)?;
    let mut bytes = Vec::new();
    f.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

// ---------------------------------------------------------------------------------
// Walking and hashing
// ---------------------------------------------------------------------------------

/// One entry of a run directory, as listed in the manifest or found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A regular file.
    File {
        /// Length in bytes.
        size: u64,
        /// Lowercase hex SHA-256 of the content.
        sha256: String,
    },
    /// A symbolic link (not followed).
    Symlink {
        /// The link's target, as written.
        target: String,
    },
    /// A FIFO, socket or device node (never opened).
    Other {
        /// `fifo`, `socket`, `char-device`, `block-device` or `unknown`.
        kind: String,
    },
    /// Found while verifying but not readable (or a link whose target is not UTF-8).
    Unreadable {
        /// Why.
        error: String,
    },
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::File { size, sha256 } => write!(f, "sha256 {sha256} size {size}"),
            Entry::Symlink { target } => write!(f, "symlink -> {target}"),
            Entry::Other { kind } => write!(f, "a {kind}"),
            Entry::Unreadable { error } => write!(f, "unreadable: {error}"),
        }
    }
}

#[derive(Clone, Copy)]
struct Limits {
    entries: usize,
    depth: usize,
}

const LIMITS: Limits = Limits {
    entries: MAX_ENTRIES,
    depth: MAX_DEPTH,
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Anything unreadable or unnameable is an error.
    Seal,
    /// Unreadable entries and names that are not UTF-8 are recorded and reported.
    Verify,
}

struct Walked {
    entries: BTreeMap<String, Entry>,
    /// (Verify only) entries whose names are not UTF-8, shown lossily: never listed.
    unnamed: Vec<String>,
    /// Total size of the regular files.
    bytes: u64,
}

fn walk(root: &Path, mode: Mode, limits: Limits) -> Result<Walked, BundleError> {
    let meta = fs::metadata(root).map_err(io_err(root))?;
    if !meta.is_dir() {
        return Err(BundleError::Unsupported {
            path: root.to_path_buf(),
            reason: "not a directory".into(),
        });
    }
    let mut walked = Walked {
        entries: BTreeMap::new(),
        unnamed: Vec::new(),
        bytes: 0,
    };
    let mut buffer = vec![0u8; HASH_BUFFER];
    let mut count = 0usize;
    // (directory on disk, its relative path with a trailing '/' or empty, depth)
    let mut stack: Vec<(PathBuf, String, usize)> = vec![(root.to_path_buf(), String::new(), 0)];
    while let Some((dir, prefix, depth)) = stack.pop() {
        let reader = fs::read_dir(&dir).map_err(io_err(&dir))?;
        for item in reader {
            let item = item.map_err(io_err(&dir))?;
            count += 1;
            if count > limits.entries {
                return Err(BundleError::TooLarge {
                    path: root.to_path_buf(),
                    reason: format!("more than {} entries; refusing to walk it", limits.entries),
                });
            }
            let disk = item.path();
            let name = item.file_name();
            let Some(name) = name.to_str() else {
                let shown = format!("{prefix}{}", name.to_string_lossy());
                match mode {
                    Mode::Seal => {
                        return Err(BundleError::Unsupported {
                            path: disk,
                            reason: "the name is not UTF-8 and cannot be recorded".into(),
                        })
                    }
                    Mode::Verify => {
                        walked.unnamed.push(shown);
                        continue;
                    }
                }
            };
            let file_type = item.file_type().map_err(io_err(&disk))?;
            // The bundle's own files; a directory of that name is walked like any other,
            // so that nothing can hide in it.
            if prefix.is_empty() && (name == MANIFEST || name == SIGNATURE) && !file_type.is_dir() {
                continue;
            }
            let rel = format!("{prefix}{name}");
            let entry = if file_type.is_dir() {
                if depth + 1 > limits.depth {
                    return Err(BundleError::TooLarge {
                        path: disk,
                        reason: format!(
                            "nested deeper than {} directories; refusing to walk it",
                            limits.depth
                        ),
                    });
                }
                stack.push((disk, format!("{rel}/"), depth + 1));
                continue;
            } else if file_type.is_symlink() {
                match fs::read_link(&disk) {
                    Ok(target) => match target.into_os_string().into_string() {
                        Ok(target) => Entry::Symlink { target },
                        Err(_) if mode == Mode::Seal => {
                            return Err(BundleError::Unsupported {
                                path: disk,
                                reason: "the link's target is not UTF-8 and cannot be recorded"
                                    .into(),
                            })
                        }
                        Err(_) => Entry::Unreadable {
                            error: "a symlink whose target is not UTF-8".into(),
                        },
                    },
                    Err(e) if mode == Mode::Seal => return Err(io_err(&disk)(e)),
                    Err(e) => Entry::Unreadable {
                        error: e.to_string(),
                    },
                }
            } else if file_type.is_file() {
                match hash_file(&disk, &mut buffer) {
                    Ok((size, sha256)) => {
                        walked.bytes += size;
                        Entry::File { size, sha256 }
                    }
                    Err(e) if mode == Mode::Seal => return Err(io_err(&disk)(e)),
                    Err(e) => Entry::Unreadable {
                        error: e.to_string(),
                    },
                }
            } else {
                let kind = if file_type.is_fifo() {
                    "fifo"
                } else if file_type.is_socket() {
                    "socket"
                } else if file_type.is_char_device() {
                    "char-device"
                } else if file_type.is_block_device() {
                    "block-device"
                } else {
                    "unknown"
                };
                Entry::Other { kind: kind.into() }
            };
            walked.entries.insert(rel, entry);
        }
    }
    Ok(walked)
}

/// Size and lowercase hex SHA-256 of a regular file, read through `buffer`; a symbolic
/// link or anything but a regular file is refused.
fn hash_file(path: &Path, buffer: &mut [u8]) -> io::Result<(u64, String)> {
    let mut f = open_regular(path, true)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        let n = match f.read(buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

// ---------------------------------------------------------------------------------
// Sealing
// ---------------------------------------------------------------------------------

/// What goes into the manifest besides the file list; the caller builds these JSON
/// values.
#[derive(Debug, Clone)]
pub struct SealInfo {
    /// redrig's version (`CARGO_PKG_VERSION`).
    pub redrig_version: String,
    /// The commit redrig was built from (usually [`commit`]).
    pub commit: String,
    /// When the run started (RFC 3339, UTC).
    pub started: String,
    /// When the run finished (RFC 3339, UTC).
    pub finished: String,
    /// The rig: its configuration file and identity.
    pub rig: serde_json::Value,
    /// The device under test.
    pub device: serde_json::Value,
    /// The firmware on the device.
    pub firmware: serde_json::Value,
    /// The run's configuration (tags, features, seed, ...).
    pub config: serde_json::Value,
}

/// The outcome of [`seal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Entries listed (regular files, symbolic links and others).
    pub files: usize,
    /// Total size of the regular files listed.
    pub bytes: u64,
    /// The signing key's fingerprint, `None` when unsigned.
    pub signed_by: Option<String>,
}

#[derive(Serialize)]
struct ManifestOut<'a> {
    schema: &'static str,
    redrig_version: &'a str,
    commit: &'a str,
    started: &'a str,
    finished: &'a str,
    rig: &'a serde_json::Value,
    device: &'a serde_json::Value,
    firmware: &'a serde_json::Value,
    config: &'a serde_json::Value,
    files: Vec<FileOut<'a>>,
    signature: Option<SignatureBlock>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum FileOut<'a> {
    File {
        path: &'a str,
        size: u64,
        sha256: &'a str,
    },
    Symlink {
        path: &'a str,
        symlink: &'a str,
    },
    Other {
        path: &'a str,
        kind: &'a str,
    },
}

#[derive(Serialize, Deserialize, Debug, Clone)]
struct SignatureBlock {
    algorithm: String,
    public_key: String,
    fingerprint: String,
}

/// Write `manifest.json` over every entry of `run_dir` (see the module documentation)
/// and, with a key, sign it into `manifest.sig`; without a key the manifest's
/// `signature` is `null` and an existing `manifest.sig` is removed.
///
/// A file that cannot be read, a name that is not UTF-8 and a directory over the walk
/// limits are errors naming the path; nothing is written then. A key file inside
/// `run_dir` is refused here too.
pub fn seal(run_dir: &Path, info: &SealInfo, key: Option<&LabKey>) -> Result<Sealed, BundleError> {
    seal_with(run_dir, info, key, LIMITS)
}

fn seal_with(
    run_dir: &Path,
    info: &SealInfo,
    key: Option<&LabKey>,
    limits: Limits,
) -> Result<Sealed, BundleError> {
    if let Some(key) = key {
        let run_canonical = canonicalize_nearest(run_dir).map_err(io_err(run_dir))?;
        if key.path.starts_with(&run_canonical) {
            return Err(BundleError::KeyInsideRunDir {
                key: key.path.clone(),
                run_dir: run_canonical,
            });
        }
    }
    let walked = walk(run_dir, Mode::Seal, limits)?;
    let files = walked
        .entries
        .iter()
        .filter_map(|(path, entry)| match entry {
            Entry::File { size, sha256 } => Some(FileOut::File {
                path,
                size: *size,
                sha256,
            }),
            Entry::Symlink { target } => Some(FileOut::Symlink {
                path,
                symlink: target,
            }),
            Entry::Other { kind } => Some(FileOut::Other { path, kind }),
            // Seal mode turns these into errors.
            Entry::Unreadable { .. } => None,
        })
        .collect();
    let manifest = ManifestOut {
        schema: MANIFEST_SCHEMA,
        redrig_version: &info.redrig_version,
        commit: &info.commit,
        started: &info.started,
        finished: &info.finished,
        rig: &info.rig,
        device: &info.device,
        firmware: &info.firmware,
        config: &info.config,
        files,
        signature: key.map(|k| SignatureBlock {
            algorithm: "ed25519".into(),
            public_key: k.public_hex(),
            fingerprint: k.fingerprint(),
        }),
    };
    let manifest_path = run_dir.join(MANIFEST);
    let mut bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| BundleError::BadManifest {
        path: manifest_path.clone(),
        reason: format!("cannot encode the manifest: {e}"),
    })?;
    bytes.push(b'\n');
    let signature_path = run_dir.join(SIGNATURE);
    let signature = key.map(|k| format!("{}\n", hex::encode(k.signing.sign(&bytes).to_bytes())));

    let manifest_tmp = write_temp(run_dir, MANIFEST, &bytes)?;
    let signature_tmp = match &signature {
        Some(text) => match write_temp(run_dir, SIGNATURE, text.as_bytes()) {
            Ok(p) => Some(p),
            Err(e) => {
                let _ = fs::remove_file(&manifest_tmp);
                return Err(e);
            }
        },
        None => None,
    };
    if let Err(e) = fs::rename(&manifest_tmp, &manifest_path) {
        let _ = fs::remove_file(&manifest_tmp);
        if let Some(t) = &signature_tmp {
            let _ = fs::remove_file(t);
        }
        return Err(io_err(&manifest_path)(e));
    }
    match signature_tmp {
        Some(tmp) => {
            if let Err(e) = fs::rename(&tmp, &signature_path) {
                let _ = fs::remove_file(&tmp);
                return Err(io_err(&signature_path)(e));
            }
        }
        None => match fs::remove_file(&signature_path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_err(&signature_path)(e))
            }
            _ => {}
        },
    }
    // Make the renames durable.
    File::open(run_dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(run_dir))?;
    Ok(Sealed {
        files: walked.entries.len(),
        bytes: walked.bytes,
        signed_by: key.map(LabKey::fingerprint),
    })
}

/// Write `bytes` durably to a new temporary file in `dir` named after `name`; it is
/// created after the walk, so it is never listed, and renamed or removed by the caller.
fn write_temp(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, BundleError> {
    let pid = std::process::id();
    for attempt in 0..100u32 {
        let path = dir.join(format!(".{name}.{pid}.{attempt}.tmp"));
        match write_new(&path, bytes, 0o644) {
            Err(BundleError::Exists(_)) => continue,
            Err(e) => {
                let _ = fs::remove_file(&path);
                return Err(e);
            }
            Ok(()) => return Ok(path),
        }
    }
    Err(BundleError::Exists(
        dir.join(format!(".{name}.{pid}.*.tmp")),
    ))
}

// ---------------------------------------------------------------------------------
// Verifying
// ---------------------------------------------------------------------------------

/// A listed entry that differs on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    /// Relative path.
    pub path: String,
    /// As listed in the manifest.
    pub expected: Entry,
    /// As found now.
    pub found: Entry,
}

/// What the signature check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureCheck {
    /// No `manifest.sig` and a `null` signature block: nothing protects the manifest.
    NotSigned,
    /// The signature does not hold: the manifest changed after signing, the signature
    /// is garbage or missing while the manifest names a signer, or the manifest's
    /// signer block is malformed.
    Invalid {
        /// What failed.
        reason: String,
    },
    /// Valid, and made by the lab key given to [`verify`].
    ValidLabKey {
        /// The signer's fingerprint.
        fingerprint: String,
    },
    /// Valid, but made by another key than the lab key given: someone re-sealed the
    /// run directory.
    ValidOtherKey {
        /// The signer's fingerprint.
        fingerprint: String,
        /// The lab key's fingerprint.
        lab_fingerprint: String,
    },
    /// Valid for the key the manifest names; no lab key was given, so who that is was
    /// not checked: compare the fingerprint with the lab's.
    ValidUnchecked {
        /// The signer's fingerprint.
        fingerprint: String,
    },
}

/// The outcome of [`verify`].
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// The run directory verified.
    pub run_dir: PathBuf,
    /// Entries listed in the manifest.
    pub listed: usize,
    /// Listed entries found unchanged.
    pub matched: usize,
    /// Listed entries found different, by path.
    pub changed: Vec<Changed>,
    /// Listed entries not found, by path.
    pub missing: Vec<String>,
    /// Entries found but not listed, by path (names that are not UTF-8 shown lossily).
    pub added: Vec<String>,
    /// The signature check.
    pub signature: SignatureCheck,
    /// `redrig_version` from the manifest.
    pub redrig_version: String,
    /// `commit` from the manifest.
    pub commit: String,
    /// `started` from the manifest.
    pub started: String,
    /// `finished` from the manifest.
    pub finished: String,
}

impl VerifyReport {
    /// True only when every listed entry matches, nothing is missing or added, and the
    /// signature is valid and made by the lab key ([`SignatureCheck::ValidLabKey`]).
    /// Without a lab key nothing is ok: a signature valid for the key the manifest
    /// names ([`SignatureCheck::ValidUnchecked`]) is reported with its fingerprint, but
    /// anyone can re-seal a directory with a key of their own. An unsigned manifest
    /// proves nothing against tampering.
    pub fn ok(&self) -> bool {
        self.changed.is_empty()
            && self.missing.is_empty()
            && self.added.is_empty()
            && matches!(self.signature, SignatureCheck::ValidLabKey { .. })
    }

    /// The report for people: one line per changed, missing and added entry, the file
    /// count, the signature, and a last line starting with `OK` or `FAILED`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "run directory: {}\nmanifest: redrig {} (commit {}), run {} to {}\n",
            self.run_dir.display(),
            self.redrig_version,
            self.commit,
            self.started,
            self.finished
        ));
        for c in &self.changed {
            out.push_str(&format!(
                "CHANGED {} (expected {}, found {})\n",
                c.path, c.expected, c.found
            ));
        }
        for m in &self.missing {
            out.push_str(&format!("MISSING {m}\n"));
        }
        for a in &self.added {
            out.push_str(&format!("ADDED {a}\n"));
        }
        out.push_str(&format!(
            "files: {} of {} listed match; {} changed, {} missing, {} added\n",
            self.matched,
            self.listed,
            self.changed.len(),
            self.missing.len(),
            self.added.len()
        ));
        let signature = match &self.signature {
            SignatureCheck::NotSigned => {
                "NOT SIGNED: an unsigned manifest does not show tampering".to_string()
            }
            SignatureCheck::Invalid { reason } => format!("INVALID: {reason}"),
            SignatureCheck::ValidLabKey { fingerprint } => {
                format!("valid, signed by the lab key {fingerprint}")
            }
            SignatureCheck::ValidOtherKey {
                fingerprint,
                lab_fingerprint,
            } => format!(
                "signed by another key {fingerprint}, NOT the lab key {lab_fingerprint}: \
                 the run directory was re-sealed by someone else"
            ),
            SignatureCheck::ValidUnchecked { fingerprint } => format!(
                "valid, signed by {fingerprint} (not checked against the lab key: none \
                 given; compare this fingerprint with the lab's, or pass --key)"
            ),
        };
        out.push_str(&format!("signature: {signature}\n"));
        if self.ok() {
            let by = match &self.signature {
                SignatureCheck::ValidLabKey { fingerprint } => {
                    format!("signed by the lab key {fingerprint}")
                }
                _ => String::new(),
            };
            out.push_str(&format!(
                "OK: {} entries exactly as sealed, {by}\n",
                self.matched
            ));
        } else {
            let mut why = Vec::new();
            if !(self.changed.is_empty() && self.missing.is_empty() && self.added.is_empty()) {
                why.push("the files differ from the manifest");
            }
            match self.signature {
                SignatureCheck::NotSigned => why.push("the manifest is not signed"),
                SignatureCheck::Invalid { .. } => why.push("the signature is invalid"),
                SignatureCheck::ValidOtherKey { .. } => why.push("signed by another key"),
                SignatureCheck::ValidUnchecked { .. } => {
                    why.push("UNVERIFIED signer: no lab key given (--key or $REDRIG_LAB_PUBKEY)")
                }
                SignatureCheck::ValidLabKey { .. } => {}
            }
            out.push_str(&format!(
                "FAILED: the evidence does not verify: {}\n",
                why.join("; ")
            ));
        }
        out
    }
}

#[derive(Deserialize)]
struct ManifestIn {
    schema: String,
    redrig_version: String,
    commit: String,
    started: String,
    finished: String,
    files: Vec<FileIn>,
    #[serde(default)]
    signature: Option<SignatureBlock>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIn {
    path: String,
    size: Option<u64>,
    sha256: Option<String>,
    symlink: Option<String>,
    kind: Option<String>,
}

/// Check `run_dir` against its manifest: rehash every entry, compare with the list,
/// and check the signature, against `lab_key` when given (see [`VerifyReport::ok`]).
///
/// Errors: no `manifest.json` ([`BundleError::NoManifest`]); a `manifest.json` that is
/// not a redrig manifest ([`BundleError::BadManifest`], naming the file); a run
/// directory over the walk limits or whose directories cannot be listed. Files that
/// cannot be read are reported as changed, not as errors.
pub fn verify(run_dir: &Path, lab_key: Option<&VerifyingKey>) -> Result<VerifyReport, BundleError> {
    verify_with(run_dir, lab_key, LIMITS)
}

fn verify_with(
    run_dir: &Path,
    lab_key: Option<&VerifyingKey>,
    limits: Limits,
) -> Result<VerifyReport, BundleError> {
    let manifest_path = run_dir.join(MANIFEST);
    match fs::symlink_metadata(&manifest_path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(BundleError::NoManifest(run_dir.to_path_buf()))
        }
        Err(e) => return Err(io_err(&manifest_path)(e)),
        Ok(_) => {}
    }
    let bad = |reason: String| BundleError::BadManifest {
        path: manifest_path.clone(),
        reason,
    };
    let bytes = read_bounded(&manifest_path, MAX_MANIFEST_BYTES, true)
        .map_err(|e| bad(format!("cannot read it: {e}")))?;
    let manifest: ManifestIn =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a redrig manifest: {e}")))?;
    if manifest.schema != MANIFEST_SCHEMA {
        return Err(bad(format!(
            "schema `{}`, expected `{MANIFEST_SCHEMA}`",
            manifest.schema
        )));
    }
    let mut expected = BTreeMap::new();
    for (index, file) in manifest.files.into_iter().enumerate() {
        let (path, entry) = listed_entry(file).map_err(|e| bad(format!("files[{index}]: {e}")))?;
        if expected.insert(path.clone(), entry).is_some() {
            return Err(bad(format!("files[{index}]: `{path}` is listed twice")));
        }
    }
    let walked = walk(run_dir, Mode::Verify, limits)?;
    let mut report = VerifyReport {
        run_dir: run_dir.to_path_buf(),
        listed: expected.len(),
        matched: 0,
        changed: Vec::new(),
        missing: Vec::new(),
        added: Vec::new(),
        signature: check_signature(run_dir, &bytes, manifest.signature.as_ref(), lab_key)?,
        redrig_version: manifest.redrig_version,
        commit: manifest.commit,
        started: manifest.started,
        finished: manifest.finished,
    };
    for (path, want) in &expected {
        match walked.entries.get(path) {
            None => report.missing.push(path.clone()),
            Some(found) if found == want => report.matched += 1,
            Some(found) => report.changed.push(Changed {
                path: path.clone(),
                expected: want.clone(),
                found: found.clone(),
            }),
        }
    }
    let mut added: BTreeSet<String> = walked
        .entries
        .keys()
        .filter(|p| !expected.contains_key(*p))
        .cloned()
        .collect();
    added.extend(walked.unnamed);
    report.added = added.into_iter().collect();
    Ok(report)
}

/// A manifest's file entry, checked: a clean relative path and exactly one shape.
fn listed_entry(file: FileIn) -> Result<(String, Entry), String> {
    let path = file.path;
    let clean = !path.is_empty()
        && !path.contains('\0')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if !clean {
        return Err(format!(
            "`{path}` is not a relative '/'-separated path inside the run directory"
        ));
    }
    if path == MANIFEST || path == SIGNATURE {
        return Err(format!("`{path}` cannot list itself"));
    }
    let entry = match (file.size, file.sha256, file.symlink, file.kind) {
        (Some(size), Some(sha256), None, None) => {
            let is_hex = sha256.len() == 64
                && sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !is_hex {
                return Err(format!("`{path}`: sha256 is not 64 lowercase hex digits"));
            }
            Entry::File { size, sha256 }
        }
        (None, None, Some(target), None) => Entry::Symlink { target },
        (None, None, None, Some(kind)) => Entry::Other { kind },
        _ => {
            return Err(format!(
                "`{path}`: expected size and sha256, or symlink, or kind"
            ))
        }
    };
    Ok((path, entry))
}

fn check_signature(
    run_dir: &Path,
    manifest: &[u8],
    block: Option<&SignatureBlock>,
    lab_key: Option<&VerifyingKey>,
) -> Result<SignatureCheck, BundleError> {
    let invalid = |reason: &str| {
        Ok(SignatureCheck::Invalid {
            reason: reason.to_string(),
        })
    };
    let signature_path = run_dir.join(SIGNATURE);
    let signature = match fs::symlink_metadata(&signature_path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(&signature_path)(e)),
        Ok(_) => Some(read_bounded(&signature_path, MAX_SIG_BYTES, true)),
    };
    let (block, signature) = match (block, signature) {
        (None, None) => return Ok(SignatureCheck::NotSigned),
        (None, Some(_)) => {
            return invalid("manifest.sig is present but the manifest names no signer")
        }
        (Some(_), None) => {
            return invalid("the manifest names a signer but manifest.sig is missing")
        }
        (Some(_), Some(Err(e))) => return invalid(&format!("manifest.sig: {e}")),
        (Some(b), Some(Ok(s))) => (b, s),
    };
    if block.algorithm != "ed25519" {
        return invalid(&format!("unknown algorithm `{}`", block.algorithm));
    }
    let key = match hex::decode(&block.public_key)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
    {
        Some(k) => k,
        None => return invalid("the manifest's public_key is not an Ed25519 key"),
    };
    let signer = fingerprint(&key);
    if block.fingerprint != signer {
        return invalid("the manifest's fingerprint does not belong to its public_key");
    }
    let sig = match std::str::from_utf8(&signature)
        .ok()
        .and_then(|t| hex::decode(t.trim()).ok())
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
    {
        Some(b) => Signature::from_bytes(&b),
        None => return invalid("manifest.sig is not 128 hex digits"),
    };
    if key.verify_strict(manifest, &sig).is_err() {
        return invalid(&format!(
            "the signature by {signer} does not match manifest.json: it was changed after \
             signing"
        ));
    }
    Ok(match lab_key {
        None => SignatureCheck::ValidUnchecked {
            fingerprint: signer,
        },
        Some(lab) if *lab == key => SignatureCheck::ValidLabKey {
            fingerprint: signer,
        },
        Some(lab) => SignatureCheck::ValidOtherKey {
            fingerprint: signer,
            lab_fingerprint: fingerprint(lab),
        },
    })
}

// ---------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------

/// `redrig keygen [--out PATH] [--force]`: make the lab key pair and say where it is.
/// Exit 0, or 3 on any error.
pub fn keygen_command(out: Option<PathBuf>, force: bool) -> i32 {
    use crate::verdict::exit;
    let Some(out) = out.or_else(default_key_path) else {
        eprintln!("keygen: neither XDG_CONFIG_HOME nor HOME is set: give --out PATH");
        return exit::USAGE;
    };
    match keygen(&out, force) {
        Ok((private, public)) => {
            let fp = load_public_key(&public)
                .map(|k| fingerprint(&k))
                .unwrap_or_else(|e| format!("(cannot read it back: {e})"));
            println!("private key: {}", private.display());
            println!("public key:  {}", public.display());
            println!("fingerprint: {fp}");
            println!(
                "Keep the private key secret and outside every run directory (redrig run \
                 --sign-key {}); give the public key to whoever verifies (redrig verify \
                 RUN_DIR --key {}).",
                private.display(),
                public.display()
            );
            exit::PASS
        }
        Err(e) => {
            eprintln!("keygen: {e}");
            exit::USAGE
        }
    }
}

/// `redrig verify RUN_DIR [--key PUBKEY]`: print the report. Exit 0 when it is ok, 1
/// when the evidence does not verify (including a malformed `manifest.json` and a run
/// directory over the walk limits), 3 when there is no `manifest.json`, the key file
/// is unreadable or not a key, or the run directory cannot be read.
pub fn verify_command(run_dir: &Path, key: Option<&Path>) -> i32 {
    use crate::verdict::exit;
    let lab_key = match key.map(load_public_key).transpose() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("verify: {e}");
            return exit::USAGE;
        }
    };
    match verify(run_dir, lab_key.as_ref()) {
        Ok(report) => {
            print!("{}", report.render());
            if report.ok() {
                exit::PASS
            } else {
                1
            }
        }
        Err(e @ (BundleError::BadManifest { .. } | BundleError::TooLarge { .. })) => {
            eprintln!("verify: {e}");
            println!("FAILED: the evidence does not verify: {e}");
            1
        }
        Err(e) => {
            eprintln!("verify: {e}");
            exit::USAGE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn info() -> SealInfo {
        SealInfo {
            redrig_version: "0.1.0".into(),
            commit: commit().into(),
            started: "2026-01-01T00:00:00Z".into(),
            finished: "2026-01-01T00:01:00Z".into(),
            rig: serde_json::json!({"name": "virtual"}),
            device: serde_json::json!({"profile": "reference"}),
            firmware: serde_json::json!(null),
            config: serde_json::json!({"tags": null}),
        }
    }

    fn run_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("results.json"), b"{}\n").unwrap();
        fs::create_dir(d.path().join("logs")).unwrap();
        fs::write(d.path().join("logs/run.log"), b"line one\nline two\n").unwrap();
        d
    }

    fn key_in(dir: &Path) -> (PathBuf, PathBuf) {
        keygen(&dir.join("lab-key.pem"), false).unwrap()
    }

    fn lab_key(run: &Path) -> (tempfile::TempDir, LabKey) {
        let k = tempfile::tempdir().unwrap();
        let (private, _) = key_in(k.path());
        let key = load_signing_key(&private, run).unwrap();
        (k, key)
    }

    #[test]
    fn records_links_and_fifos_without_following_or_opening_them() {
        let d = run_dir();
        symlink("/dev/zero", d.path().join("zero")).unwrap();
        symlink("logs", d.path().join("logs-link")).unwrap();
        nix::unistd::mkfifo(&d.path().join("pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let sealed = seal(d.path(), &info(), None).unwrap();
        assert_eq!(sealed.files, 5);
        let m: serde_json::Value =
            serde_json::from_slice(&fs::read(d.path().join(MANIFEST)).unwrap()).unwrap();
        let files = m["files"].as_array().unwrap();
        let paths: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
        assert_eq!(
            paths,
            ["logs-link", "logs/run.log", "pipe", "results.json", "zero"]
        );
        assert_eq!(files[0]["symlink"], "logs");
        assert_eq!(files[2]["kind"], "fifo");
        assert_eq!(files[4]["symlink"], "/dev/zero");
        assert_eq!(files[1]["size"], 18);
        assert_eq!(
            files[1]["sha256"].as_str().unwrap(),
            hex::encode(Sha256::digest(b"line one\nline two\n"))
        );
        // Retargeting a link is a change; verify must not follow it either.
        fs::remove_file(d.path().join("zero")).unwrap();
        symlink("/dev/null", d.path().join("zero")).unwrap();
        let report = verify(d.path(), None).unwrap();
        assert_eq!(report.changed.len(), 1);
        assert_eq!(report.changed[0].path, "zero");
        assert_eq!(
            report.changed[0].found,
            Entry::Symlink {
                target: "/dev/null".into()
            }
        );
    }

    #[test]
    fn a_file_replaced_by_a_link_to_identical_content_is_changed() {
        let d = run_dir();
        seal(d.path(), &info(), None).unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::copy(d.path().join("results.json"), outside.path().join("r")).unwrap();
        fs::remove_file(d.path().join("results.json")).unwrap();
        symlink(outside.path().join("r"), d.path().join("results.json")).unwrap();
        let report = verify(d.path(), None).unwrap();
        assert_eq!(report.changed.len(), 1);
        assert!(matches!(report.changed[0].found, Entry::Symlink { .. }));
    }

    #[test]
    fn sealing_is_deterministic_and_lists_no_temporary_file() {
        let d = run_dir();
        let (_k, key) = lab_key(d.path());
        seal(d.path(), &info(), Some(&key)).unwrap();
        let first = fs::read(d.path().join(MANIFEST)).unwrap();
        let first_sig = fs::read(d.path().join(SIGNATURE)).unwrap();
        seal(d.path(), &info(), Some(&key)).unwrap();
        assert_eq!(first, fs::read(d.path().join(MANIFEST)).unwrap());
        assert_eq!(first_sig, fs::read(d.path().join(SIGNATURE)).unwrap());
        let text = String::from_utf8(first).unwrap();
        assert!(!text.contains(".tmp"), "{text}");
        assert!(text.starts_with("{\n  \"schema\": \"redrig-manifest/1\",\n"));
        let names: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
        assert!(verify(d.path(), Some(&key.verifying_key())).unwrap().ok());
        // An unsigned reseal drops the old signature.
        seal(d.path(), &info(), None).unwrap();
        assert!(!d.path().join(SIGNATURE).exists());
        assert_eq!(
            verify(d.path(), None).unwrap().signature,
            SignatureCheck::NotSigned
        );
    }

    #[test]
    fn an_unreadable_file_fails_the_seal_naming_it() {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            eprintln!("SKIPPED: running as root, which reads mode-000 files");
            return;
        }
        let d = run_dir();
        let secret = d.path().join("logs/secret.log");
        fs::write(&secret, b"x").unwrap();
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
        let err = seal(d.path(), &info(), None).unwrap_err().to_string();
        assert!(err.contains("secret.log"), "{err}");
        assert!(!d.path().join(MANIFEST).exists());
    }

    #[test]
    fn names_that_are_not_utf8_fail_the_seal_and_show_as_added() {
        use std::os::unix::ffi::OsStrExt;
        let d = run_dir();
        seal(d.path(), &info(), None).unwrap();
        let odd = d
            .path()
            .join("logs")
            .join(std::ffi::OsStr::from_bytes(b"bad\xff.log"));
        fs::write(&odd, b"x").unwrap();
        let r = verify(d.path(), None).unwrap();
        assert_eq!(r.added, ["logs/bad\u{fffd}.log"]);
        let err = seal(d.path(), &info(), None).unwrap_err();
        assert!(matches!(err, BundleError::Unsupported { .. }), "{err}");
        assert!(err.to_string().contains("bad"), "{err}");
    }

    #[test]
    fn bad_manifests_are_errors_naming_the_file() {
        let d = run_dir();
        fs::write(d.path().join(MANIFEST), b"{ not json").unwrap();
        let err = verify(d.path(), None).unwrap_err();
        assert!(matches!(err, BundleError::BadManifest { .. }));
        assert!(err.to_string().contains("manifest.json"), "{err}");

        seal(d.path(), &info(), None).unwrap();
        let text = fs::read_to_string(d.path().join(MANIFEST)).unwrap();
        for (from, to) in [
            ("\"logs/run.log\"", "\"../logs/run.log\""),
            ("\"logs/run.log\"", "\"/etc/passwd\""),
            ("\"logs/run.log\"", "\"results.json\""),
            ("\"redrig-manifest/1\"", "\"redrig-manifest/2\""),
        ] {
            fs::write(d.path().join(MANIFEST), text.replace(from, to)).unwrap();
            let err = verify(d.path(), None).unwrap_err();
            assert!(
                matches!(err, BundleError::BadManifest { .. }),
                "{from} -> {to}: {err}"
            );
        }
        fs::remove_file(d.path().join(MANIFEST)).unwrap();
        assert!(matches!(
            verify(d.path(), None).unwrap_err(),
            BundleError::NoManifest(_)
        ));
    }

    #[test]
    fn nothing_hides_in_a_directory_named_like_the_signature() {
        let d = run_dir();
        seal(d.path(), &info(), None).unwrap();
        fs::create_dir(d.path().join(SIGNATURE)).unwrap();
        fs::write(d.path().join(SIGNATURE).join("hidden"), b"x").unwrap();
        let r = verify(d.path(), None).unwrap();
        assert_eq!(r.added, ["manifest.sig/hidden"]);
        assert!(matches!(r.signature, SignatureCheck::Invalid { .. }));
    }

    #[test]
    fn walk_limits_refuse_rather_than_hang() {
        let d = run_dir();
        let small = Limits {
            entries: 2,
            depth: 8,
        };
        assert!(matches!(
            seal_with(d.path(), &info(), None, small),
            Err(BundleError::TooLarge { .. })
        ));
        let mut deep = d.path().to_path_buf();
        for _ in 0..4 {
            deep.push("d");
        }
        fs::create_dir_all(&deep).unwrap();
        let shallow = Limits {
            entries: 100,
            depth: 3,
        };
        assert!(matches!(
            seal_with(d.path(), &info(), None, shallow),
            Err(BundleError::TooLarge { .. })
        ));
        seal_with(
            d.path(),
            &info(),
            None,
            Limits {
                entries: 100,
                depth: 4,
            },
        )
        .unwrap();
        assert!(matches!(
            verify_with(d.path(), None, shallow),
            Err(BundleError::TooLarge { .. })
        ));
    }

    #[test]
    fn signature_problems_are_invalid() {
        let d = run_dir();
        let (_k, key) = lab_key(d.path());
        seal(d.path(), &info(), Some(&key)).unwrap();
        let sig = fs::read_to_string(d.path().join(SIGNATURE)).unwrap();
        assert_eq!(sig.trim().len(), 128);
        // Garbage.
        fs::write(d.path().join(SIGNATURE), "zz\n").unwrap();
        let r = verify(d.path(), Some(&key.verifying_key())).unwrap();
        assert!(
            matches!(r.signature, SignatureCheck::Invalid { .. }),
            "{r:?}"
        );
        assert!(!r.ok());
        // A valid-looking signature of other bytes.
        let other = hex::encode(key.signing.sign(b"something else").to_bytes());
        fs::write(d.path().join(SIGNATURE), other).unwrap();
        let r = verify(d.path(), Some(&key.verifying_key())).unwrap();
        assert!(matches!(r.signature, SignatureCheck::Invalid { .. }));
        // Removed.
        fs::remove_file(d.path().join(SIGNATURE)).unwrap();
        let r = verify(d.path(), None).unwrap();
        assert!(matches!(r.signature, SignatureCheck::Invalid { .. }));
        // The original back: valid again; unchecked without a lab key.
        fs::write(d.path().join(SIGNATURE), &sig).unwrap();
        let r = verify(d.path(), None).unwrap();
        assert_eq!(
            r.signature,
            SignatureCheck::ValidUnchecked {
                fingerprint: key.fingerprint()
            }
        );
        assert!(!r.ok(), "a signer nobody checked is not a verified bundle");
        // A signature next to an unsigned manifest.
        seal(d.path(), &info(), None).unwrap();
        fs::write(d.path().join(SIGNATURE), &sig).unwrap();
        let r = verify(d.path(), None).unwrap();
        assert!(matches!(r.signature, SignatureCheck::Invalid { .. }));
    }

    #[test]
    fn the_key_must_lie_outside_the_run_directory_even_one_not_made_yet() {
        let base = tempfile::tempdir().unwrap();
        let runs = base.path().join("runs");
        fs::create_dir(&runs).unwrap();
        let (private, _) = keygen(&runs.join("lab-key.pem"), false).unwrap();
        // The run directory does not exist yet; the key is inside the would-be parent
        // only, so it is accepted for a subdirectory run...
        assert!(load_signing_key(&private, &runs.join("20260101T000000Z-ref")).is_ok());
        // ...but refused for the parent itself, however it is spelled.
        for run in [
            runs.clone(),
            runs.join("x/.."),
            runs.join("new/../../runs"),
            base.path().to_path_buf(),
        ] {
            let err = load_signing_key(&private, &run).unwrap_err();
            assert!(
                matches!(err, BundleError::KeyInsideRunDir { .. }),
                "{run:?}: {err}"
            );
        }
        // Through a symlink to the run directory.
        let alias = tempfile::tempdir().unwrap();
        symlink(&runs, alias.path().join("alias")).unwrap();
        assert!(matches!(
            load_signing_key(&private, &alias.path().join("alias")),
            Err(BundleError::KeyInsideRunDir { .. })
        ));
        // seal checks again.
        let outside = tempfile::tempdir().unwrap();
        let key = load_signing_key(&private, outside.path()).unwrap();
        assert!(matches!(
            seal(&runs, &info(), Some(&key)),
            Err(BundleError::KeyInsideRunDir { .. })
        ));
    }

    #[test]
    fn a_key_others_can_read_is_loaded_with_a_warning() {
        let k = tempfile::tempdir().unwrap();
        let run = tempfile::tempdir().unwrap();
        let (private, _) = key_in(k.path());
        assert!(load_signing_key(&private, run.path())
            .unwrap()
            .warnings()
            .is_empty());
        fs::set_permissions(&private, fs::Permissions::from_mode(0o644)).unwrap();
        let key = load_signing_key(&private, run.path()).unwrap();
        assert_eq!(key.warnings().len(), 1);
        assert!(key.warnings()[0].contains("0644"), "{:?}", key.warnings());
    }

    #[test]
    fn public_keys_load_from_either_file_and_garbage_is_a_key_error() {
        let k = tempfile::tempdir().unwrap();
        let (private, public) = key_in(k.path());
        assert_eq!(public, k.path().join("lab-key.pub.pem"));
        let a = load_public_key(&public).unwrap();
        let b = load_public_key(&private).unwrap();
        assert_eq!(a, b);
        let run = tempfile::tempdir().unwrap();
        let signing = load_signing_key(&private, run.path()).unwrap();
        assert_eq!(signing.verifying_key(), a);
        assert_eq!(signing.fingerprint(), fingerprint(&a));
        assert_eq!(
            signing.fingerprint(),
            format!("SHA256:{}", hex::encode(Sha256::digest(a.as_bytes())))
        );
        assert!(matches!(
            load_signing_key(&public, run.path()),
            Err(BundleError::KeyFormat { .. })
        ));
        let garbage = k.path().join("garbage.pem");
        fs::write(
            &garbage,
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        )
        .unwrap();
        assert!(matches!(
            load_public_key(&garbage),
            Err(BundleError::KeyFormat { .. })
        ));
        assert!(matches!(
            load_public_key(&k.path().join("absent.pem")),
            Err(BundleError::Io { .. })
        ));
    }

    #[test]
    fn keygen_names_and_refuses_to_overwrite() {
        assert_eq!(
            public_key_path(Path::new("/k/lab-key.pem")),
            Path::new("/k/lab-key.pub.pem")
        );
        assert_eq!(
            public_key_path(Path::new("/k/lab")),
            Path::new("/k/lab.pub.pem")
        );
        let k = tempfile::tempdir().unwrap();
        let out = k.path().join("nested/dir/lab-key.pem");
        let (private, public) = keygen(&out, false).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&private), 0o600);
        assert_eq!(mode(&k.path().join("nested")), 0o700);
        let before = fs::read(&private).unwrap();
        assert!(matches!(keygen(&out, false), Err(BundleError::Exists(_))));
        assert_eq!(before, fs::read(&private).unwrap());
        // Only the public file left over is also refused.
        fs::remove_file(&private).unwrap();
        assert!(matches!(keygen(&out, false), Err(BundleError::Exists(p)) if p == public));
        fs::set_permissions(&public, fs::Permissions::from_mode(0o666)).unwrap();
        keygen(&out, true).unwrap();
        assert_eq!(mode(&private), 0o600);
        assert_ne!(before, fs::read(&private).unwrap());
    }

    #[test]
    fn commit_is_set() {
        let c = commit();
        assert!(
            c == "unknown" || (c.len() >= 40 && c[..40].bytes().all(|b| b.is_ascii_hexdigit())),
            "{c}"
        );
    }
}

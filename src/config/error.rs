//! Configuration errors: every one of them carries `file:line:column`.

use super::position::{Pos, PosIndex};
use std::fmt;
use std::path::{Path, PathBuf};

/// One configuration mistake, at a place in a file.
///
/// `line`/`column` are 1-based; `0` means "no position" (the file could not be read,
/// or the mistake is on the command line, e.g. `--dut`), and then `Display` prints
/// only `file: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the mistake is in (as it was opened).
    pub file: PathBuf,
    /// Line, 1-based.
    pub line: usize,
    /// Column, 1-based.
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

impl ConfigError {
    /// An error at `pos` in `file`.
    pub fn at(file: &Path, pos: Pos, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
        }
    }

    /// An error without a position (unreadable file, command-line argument).
    pub fn whole(file: &Path, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            message: message.into(),
        }
    }

    /// `file:line:col` (or just `file`), with the file shown relative to the current
    /// directory when it is below it.
    pub fn location(&self) -> String {
        let file = display_path(&self.file);
        if self.line == 0 {
            file
        } else {
            format!("{}:{}:{}", file, self.line, self.column)
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location(), self.message)
    }
}

impl std::error::Error for ConfigError {}

/// All mistakes found in a configuration (rig file and device profile), in file
/// order. `Display` prints one `file:line:col: message` per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The errors, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }
    /// Number of errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// A path relative to the current directory if it lies below it.
pub(crate) fn display_path(p: &Path) -> String {
    if p.is_absolute() {
        if let Ok(cwd) = std::env::current_dir() {
            if let Ok(rel) = p.strip_prefix(&cwd) {
                return rel.display().to_string();
            }
        }
    }
    p.display().to_string()
}

/// Collects errors and warnings for one file, with positions from its index.
pub(crate) struct Diag<'a> {
    pub file: &'a Path,
    pub index: &'a PosIndex,
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigError>,
}

impl<'a> Diag<'a> {
    pub fn new(file: &'a Path, index: &'a PosIndex) -> Diag<'a> {
        Diag {
            file,
            index,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }
    /// Error at the value of `path`.
    pub fn err(&mut self, path: &[&str], msg: impl Into<String>) {
        let pos = self.index.value(path);
        self.errors.push(ConfigError::at(self.file, pos, msg));
    }
    /// Error at the key of `path`.
    pub fn err_key(&mut self, path: &[&str], msg: impl Into<String>) {
        let pos = self.index.key(path);
        self.errors.push(ConfigError::at(self.file, pos, msg));
    }
    /// Warning at the value of `path`.
    pub fn warn(&mut self, path: &[&str], msg: impl Into<String>) {
        let pos = self.index.value(path);
        self.warnings.push(ConfigError::at(self.file, pos, msg));
    }
    /// `file:line:col` of the value at `path`, for messages that cite another place.
    pub fn cite(&self, path: &[&str]) -> String {
        let pos = self.index.value(path);
        ConfigError::at(self.file, pos, "").location()
    }
}

/// Turn a yaml_serde error into a positioned error.
pub(crate) fn from_serde(file: &Path, text: &str, e: &serde_yaml::Error) -> ConfigError {
    let mut msg = e.to_string();
    let pos = match e.location() {
        Some(loc) => {
            // Display appends " at line L column C"; the position is ours to print.
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            if let Some(stripped) = msg.strip_suffix(&suffix) {
                msg = stripped.to_string();
            }
            Pos {
                line: loc.line(),
                column: loc.column(),
            }
        }
        None => {
            // e.g. "EOF while parsing a value": point at the end of the file.
            let lines = text.lines().count().max(1);
            Pos {
                line: lines,
                column: 1,
            }
        }
    };
    ConfigError::at(file, pos, msg)
}

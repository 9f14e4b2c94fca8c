//! Errors that stop the rig from reaching a verdict.
//!
//! A [`RigError`] is an *infrastructure* error: an instrument failed, a wire is gone,
//! the lab could not start, the rig timed out waiting for itself. It always leads to an
//! `inconclusive` verdict, never to a device FAIL. A device failure is reported by a
//! step with [`crate::runner::world::StepFail::Device`] results instead.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum RigError {
    /// An instrument (serial adapter, GPIO, probe, socket) failed or disappeared.
    #[error("instrument `{instrument}`: {detail}")]
    Instrument { instrument: String, detail: String },
    /// The virtual lab or another rig-side service could not start or died.
    #[error("lab: {0}")]
    Lab(String),
    /// The rig's own operation did not complete in time (not a device verdict).
    #[error("rig timed out: {0}")]
    Timeout(String),
    /// The run was interrupted (Ctrl-C / SIGTERM).
    #[error("run interrupted")]
    Interrupted,
    /// The configuration does not allow this operation.
    #[error("configuration: {0}")]
    Config(String),
    /// Anything else on the rig's side.
    #[error("{0}")]
    Other(String),
}

impl RigError {
    pub fn instrument(instrument: &str, detail: impl std::fmt::Display) -> RigError {
        RigError::Instrument {
            instrument: instrument.to_string(),
            detail: detail.to_string(),
        }
    }
}

impl From<std::io::Error> for RigError {
    fn from(e: std::io::Error) -> Self {
        RigError::Other(format!("I/O: {e}"))
    }
}

pub type RigResult<T> = Result<T, RigError>;

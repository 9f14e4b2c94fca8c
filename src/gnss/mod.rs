//! GNSS simulation: where the watch is (routes on the WGS-84 ellipsoid), what sky it
//! sees (a nominal satellite constellation), and what a receiver would write about it.
//!
//! - [`geo`]: geodesics and coordinate frames (WGS-84), through geographiclib-rs and map_3d.
//! - [`route`]: named places and routes as data (`fixtures/routes/`, YAML and GPX).
//! - [`sky`]: satellites in view and their geometry (elevation, azimuth, C/N0, DOP).
//! - [`sdr`]: the same motion as input files for RF-level signal simulators.

pub mod geo;
pub mod replay;
pub mod route;
pub mod scene;
pub mod sdr;
pub mod sky;

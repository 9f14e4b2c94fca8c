//! The step library: what a lab engineer writes in a scenario, acting only through
//! the rig's drivers and the device's declared interfaces from the rig configuration.
//!
//! Steps never look inside a simulator: whether the watch called someone comes from
//! the modem line, whether it notified its wearer from the GPIO outputs, what the
//! backend received from its API and the gateway's capture.

pub mod access;
pub mod cell;
mod common;
pub mod device;
pub mod firmware;
pub mod gnss;
pub mod network;
pub mod phone;
pub mod safety;
pub mod sms;
pub mod surface;

pub use common::*;

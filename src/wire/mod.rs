//! Formats spoken on the wires between the rig and the device.

pub mod nmea;
pub mod watchproto;

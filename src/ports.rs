//! Serial ports named by stable identity.
//!
//! A serial port in a rig file is a device path (`/dev/serial/by-id/…`,
//! `/dev/serial/by-path/…`, `/dev/ttyAMA0`, a pseudo-terminal) or a USB selector
//! (`usb:VID:PID:SERIAL[:IFACE]`, `usb:SERIAL`, `usb-path:1-1.3[:IFACE]`) that is
//! looked up in sysfs when the port is opened ([`redrig_hardware::serial_id`]), so
//! the rig binds the adapter it was configured with whatever order adapters were
//! plugged in. Paths are used as written (the kernel follows by-id links).

use crate::error::{RigError, RigResult};
use redrig_hardware::serial_id::{self, UsbSelector};

pub use serial_id::is_selector;

/// The device node for `port`: a selector resolved against the adapters attached
/// now, anything else as written. A selector that matches no adapter or several is
/// an instrument error naming the adapters seen.
pub fn resolve(port: &str) -> RigResult<String> {
    if !is_selector(port) {
        return Ok(port.to_string());
    }
    let selector = UsbSelector::parse(port).map_err(RigError::Config)?;
    let adapters = serial_id::scan_system();
    let node = serial_id::resolve(&selector, &adapters)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|e| RigError::instrument(port, e.to_string()))?;
    RESOLVED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(node.clone(), port.to_string());
    Ok(node)
}

/// Device nodes resolved from selectors, and the selector each came from.
static RESOLVED: std::sync::Mutex<std::collections::BTreeMap<String, String>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// The node to open again for a line that was opened at `node`: when `node` came
/// from a selector, the selector resolved anew (an adapter plugged in again may get
/// another `/dev/ttyUSBn`); otherwise `node` itself.
pub fn reresolve(node: &str) -> RigResult<String> {
    let selector = RESOLVED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(node)
        .cloned();
    match selector {
        Some(s) => resolve(&s),
        None => Ok(node.to_string()),
    }
}

//! redrig: a hardware-in-the-loop conformance test rig for children's smartwatches.
//!
//! Resources come from the rig configuration ([`config`]); drivers act on them
//! ([`drivers`]); the [`strategy`] brings the device through its states; the
//! [`runner`] executes the Gherkin scenario library ([`steps`]) and writes the
//! evidence ([`evidence`]).

pub mod bench;
pub mod bundle;
pub mod catalogue;
pub mod cli;
pub mod clock;
pub mod config;
pub mod doctor;
pub mod drivers;
pub mod error;
pub mod evidence;
pub mod features;
pub mod firmware_scan;
pub mod flashcmd;
pub mod gateway;
pub mod gnss;
pub mod gnsscmd;
pub mod hwmap;
pub mod journal;
pub mod lab;
pub mod labshell;
pub mod lock;
pub mod netns;
pub mod ports;
pub mod report;
pub mod rig;
pub mod runner;
pub mod steps;
pub mod strategy;
pub mod verdict;
pub mod wire;

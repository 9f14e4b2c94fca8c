//! The cellular network of a real bench (`instruments.cellular.backend: callbox`,
//! `docs/cellular.md`): a callbox (R&S CMW500, Anritsu MT8821C, Keysight UXM,
//! Amarisoft Callbox, …) or an SDR cell (srsRAN, Open5GS, OpenAirInterface with
//! programmable SIMs) in a shielded box, driven through external commands.
//!
//! The rig does not speak any instrument's remote-control protocol. A lab writes an
//! *adapter* (a script or program) and names it in the rig file:
//!
//! - **Action hooks**: one argv list per [`CallboxAction`]. Each action runs its argv
//!   directly (never through a shell), with `{placeholders}` replaced inside single
//!   arguments in one pass, so an SMS text with quotes, `;` or `$(…)` arrives as one
//!   verbatim argument and a value that itself contains `{from}` is not expanded
//!   again. A hook runs in its own process group, with stdin closed, for at most the
//!   configured time-out; its stdout, stderr and exit status go to `callbox.log`.
//!   A non-zero exit, a signal or a time-out is a rig error
//!   (`RigError::Instrument { instrument: "cellular", … }`: an inconclusive verdict,
//!   never a device failure). When the hook's main process exits, whatever it left
//!   running in its process group is killed.
//! - **Events**: one long-running command whose stdout carries one JSON object per
//!   line describing what the network saw the watch do ([`parse_event`] lists the
//!   objects). Each line becomes a [`CellEvent`] stamped with the device time of its
//!   receipt. Lines are capped at [`MAX_EVENT_LINE`] bytes (the rest of a longer line
//!   is dropped and counted, never buffered) and text fields at [`MAX_EVENT_FIELD`]
//!   bytes; lines that are not valid events are noted in `callbox.log` and skipped.
//!   If the command ends, the backend is unhealthy and every later action fails as a
//!   rig error. The command runs in its own process group, which is stopped
//!   (SIGTERM, then SIGKILL) and reaped when the driver is dropped.
//!
//! The rig's own side is logged as the virtual modem logs it: a successful
//! `registration` hook logs [`CellEvent::Registration`], `send_sms` logs
//! [`CellEvent::SmsToWatch`], `call_watch` logs [`CellEvent::CallToWatch`]. A
//! registration set by the rig is also passed to the name service (the rig's gateway)
//! as coverage up or down, as the virtual modem does.
//!
//! `set_call_answer` cannot return an error (the [`Cellular`] trait makes it
//! synchronous): it runs the `call_answer` hook at once, and a failure, or a mode
//! other than `answer` without a hook, is kept and returned by the next action and
//! by [`CallboxCellular::health`].
//!
//! Not implemented here: the watch's data path (the callbox's packet-data connection
//! has to be routed to the rig's gateway by the lab; see `docs/cellular.md`), and any
//! instrument-specific protocol. No callbox has been driven by this code yet: it is
//! tested against the stand-in adapter `fixtures/callbox/standin.sh`.

use super::modem::is_registered;
use super::serial::{escape_bytes, lock};
use super::{CallAnswer, CellEvent, Cellular, EventLog, NameService, Registration};
use crate::clock::Clock;
use crate::config::CellularConfig;
use crate::error::{RigError, RigResult};
use async_trait::async_trait;
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Default time-out of one hook, wall seconds.
pub const DEFAULT_TIMEOUT_S: f64 = 10.0;
/// Largest accepted `timeout_s`.
pub const MAX_TIMEOUT_S: f64 = 600.0;
/// Longest events line parsed (bytes, without the line end); the rest of a longer
/// line is dropped and counted.
pub const MAX_EVENT_LINE: usize = 64 * 1024;
/// Longest text field of an event kept in memory (bytes; longer ones are cut at a
/// character boundary and the cut is noted): with the 10 000 events kept in memory,
/// the log stays in the tens of megabytes whatever the network reports.
pub const MAX_EVENT_FIELD: usize = 4096;
/// Bytes of a hook's stdout and of its stderr kept for `callbox.log` (the rest is
/// read, counted and dropped).
pub const MAX_HOOK_OUTPUT: usize = 64 * 1024;
/// The evidence file, in the run's evidence directory.
pub const EVIDENCE_FILE: &str = "callbox.log";
/// Events kept in memory.
const LOG_CAPACITY: usize = 10_000;
/// Wall time a stopped process group gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(1);
/// Wall time allowed for a hook's output to close after its process group is gone.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);
/// Bytes of a cut or undecodable events line quoted in a note.
const PREVIEW: usize = 200;
/// Placeholder every hook and the events command may use: the run's evidence
/// directory (for the adapter's own logs or captures).
pub const EVIDENCE_PLACEHOLDER: &str = "evidence_dir";
/// Placeholders of the events command.
pub const EVENTS_PLACEHOLDERS: &[&str] = &[EVIDENCE_PLACEHOLDER];

/// An action the rig asks of the network, with its hook name in the rig file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CallboxAction {
    /// `registration`: what the network offers the watch; `{state}` is one of
    /// `home`, `roaming`, `searching`, `denied`, `not-searching`.
    Registration,
    /// `send_sms`: an SMS to the watch from `{from}` with body `{text}`.
    SendSms,
    /// `call_watch`: ring the watch presenting `{caller_id}`.
    CallWatch,
    /// `hang_up`: the network side ends the current call.
    HangUp,
    /// `call_answer`: how the far end treats calls the watch places from now on;
    /// `{mode}` is `answer`, `reject` or `ring` (rings, never answers).
    CallAnswer,
}

impl CallboxAction {
    /// Every action, in the order the documentation lists them.
    pub const ALL: [CallboxAction; 5] = [
        CallboxAction::Registration,
        CallboxAction::SendSms,
        CallboxAction::CallWatch,
        CallboxAction::HangUp,
        CallboxAction::CallAnswer,
    ];

    /// The hook's name in `instruments.cellular.hooks`.
    pub fn name(self) -> &'static str {
        match self {
            CallboxAction::Registration => "registration",
            CallboxAction::SendSms => "send_sms",
            CallboxAction::CallWatch => "call_watch",
            CallboxAction::HangUp => "hang_up",
            CallboxAction::CallAnswer => "call_answer",
        }
    }

    /// The action whose hook is called `name`.
    pub fn from_name(name: &str) -> Option<CallboxAction> {
        CallboxAction::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Placeholders this action's argv may use (without braces).
    pub fn placeholders(self) -> &'static [&'static str] {
        match self {
            CallboxAction::Registration => &["state", EVIDENCE_PLACEHOLDER],
            CallboxAction::SendSms => &["from", "text", EVIDENCE_PLACEHOLDER],
            CallboxAction::CallWatch => &["caller_id", EVIDENCE_PLACEHOLDER],
            CallboxAction::HangUp => &[EVIDENCE_PLACEHOLDER],
            CallboxAction::CallAnswer => &["mode", EVIDENCE_PLACEHOLDER],
        }
    }

    /// What the action does, for messages ("cannot … without a hook").
    fn purpose(self) -> &'static str {
        match self {
            CallboxAction::Registration => "change the registration the network offers",
            CallboxAction::SendSms => "send an SMS to the watch",
            CallboxAction::CallWatch => "ring the watch",
            CallboxAction::HangUp => "end a call from the network side",
            CallboxAction::CallAnswer => "choose how the far end treats the watch's calls",
        }
    }
}

/// Every hook name, for messages: `registration, send_sms, …`.
pub fn action_names() -> String {
    CallboxAction::ALL
        .iter()
        .map(|a| a.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `{state}` value of a registration state.
pub fn registration_name(r: Registration) -> &'static str {
    match r {
        Registration::Home => "home",
        Registration::Roaming => "roaming",
        Registration::Searching => "searching",
        Registration::Denied => "denied",
        Registration::NotSearching => "not-searching",
    }
}

/// The registration state named `s` (as [`registration_name`] writes it).
pub fn parse_registration(s: &str) -> Option<Registration> {
    [
        Registration::Home,
        Registration::Roaming,
        Registration::Searching,
        Registration::Denied,
        Registration::NotSearching,
    ]
    .into_iter()
    .find(|r| registration_name(*r) == s)
}

/// The `{mode}` value of a far-end behaviour.
pub fn call_answer_name(a: CallAnswer) -> &'static str {
    match a {
        CallAnswer::Answer => "answer",
        CallAnswer::Reject => "reject",
        CallAnswer::Ring => "ring",
    }
}

/// The far-end behaviour named `s`.
pub fn parse_call_answer(s: &str) -> Option<CallAnswer> {
    [CallAnswer::Answer, CallAnswer::Reject, CallAnswer::Ring]
        .into_iter()
        .find(|a| call_answer_name(*a) == s)
}

/// The name of a placeholder starting at `s[0] == '{'`, and its length with braces:
/// `{NAME}` where NAME is one or more ASCII letters, digits or `_`.
fn placeholder_at(s: &str) -> Option<(&str, usize)> {
    let body = s.strip_prefix('{')?;
    let end = body.find('}')?;
    let name = &body[..end];
    (!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .then_some((name, end + 2))
}

/// The placeholders written in `arg`, in order (names without braces). Any `{NAME}`
/// with NAME made of ASCII letters, digits and `_` is a placeholder; other braces
/// are literal text.
pub fn placeholders_in(arg: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(off) = arg[i..].find('{') {
        let at = i + off;
        match placeholder_at(&arg[at..]) {
            Some((name, len)) => {
                out.push(name);
                i = at + len;
            }
            None => i = at + 1,
        }
    }
    out
}

/// `arg` with every placeholder found in `values` replaced by its value, in one pass:
/// values are inserted verbatim and never scanned again. Placeholders without a
/// value are left as written.
pub fn substitute(arg: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut i = 0;
    while let Some(off) = arg[i..].find('{') {
        let at = i + off;
        out.push_str(&arg[i..at]);
        match placeholder_at(&arg[at..]) {
            Some((name, len)) => {
                match values.iter().find(|(k, _)| *k == name) {
                    Some((_, v)) => out.push_str(v),
                    None => out.push_str(&arg[at..at + len]),
                }
                i = at + len;
            }
            None => {
                out.push('{');
                i = at + 1;
            }
        }
    }
    out.push_str(&arg[i..]);
    out
}

/// What is wrong with one argv: `(index of the argument or None for the whole
/// list, message)`. `what` names it in messages (`hook \`send_sms\``); `allowed` are
/// the placeholders it may use. Checked: not empty, a program name that is not blank
/// and has no placeholder (a value must never choose the program), no unknown
/// placeholder.
pub fn argv_problems(
    what: &str,
    argv: &[String],
    allowed: &[&str],
) -> Vec<(Option<usize>, String)> {
    let mut out = Vec::new();
    let example = "[/opt/callbox/bin/cbx, sms, \"{from}\", \"{text}\"]";
    match argv.first() {
        None => {
            out.push((
                None,
                format!("{what} is empty: expected an argv list like {example}"),
            ));
            return out;
        }
        Some(p) if p.trim().is_empty() => out.push((
            Some(0),
            format!("{what}: the program (first element) is blank: expected a program path"),
        )),
        Some(p) if !placeholders_in(p).is_empty() => out.push((
            Some(0),
            format!("{what}: the program (first element) `{p}` contains a placeholder: expected a fixed program path (placeholders go into later arguments)"),
        )),
        Some(_) => {}
    }
    let expected = allowed
        .iter()
        .map(|p| format!("{{{p}}}"))
        .collect::<Vec<_>>()
        .join(", ");
    for (i, arg) in argv.iter().enumerate().skip(1) {
        for name in placeholders_in(arg) {
            if !allowed.contains(&name) {
                out.push((
                    Some(i),
                    format!("{what}: unknown placeholder `{{{name}}}`: expected one of {expected}"),
                ));
            }
        }
    }
    out
}

/// A callbox as configured: hooks per action, the events command, the time-out.
#[derive(Debug, Clone, PartialEq)]
pub struct CallboxSpec {
    /// Action → argv template.
    pub hooks: BTreeMap<CallboxAction, Vec<String>>,
    /// argv of the events command.
    pub events: Vec<String>,
    /// Wall time one hook may take.
    pub timeout: Duration,
}

impl CallboxSpec {
    /// The spec of a validated `CellularConfig::Callbox` (`None` for another backend).
    pub fn from_config(cfg: &CellularConfig) -> Option<CallboxSpec> {
        let CellularConfig::Callbox {
            hooks,
            events,
            timeout_s,
        } = cfg
        else {
            return None;
        };
        Some(CallboxSpec {
            hooks: hooks
                .iter()
                .filter_map(|(name, argv)| Some((CallboxAction::from_name(name)?, argv.clone())))
                .collect(),
            events: events.clone(),
            timeout: Duration::from_secs_f64(timeout_s.clamp(0.001, MAX_TIMEOUT_S)),
        })
    }

    /// Every problem of the spec, one message each (empty when it is usable).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (action, argv) in &self.hooks {
            let what = format!("hook `{}`", action.name());
            out.extend(
                argv_problems(&what, argv, action.placeholders())
                    .into_iter()
                    .map(|(_, m)| m),
            );
        }
        out.extend(
            argv_problems("the events command", &self.events, EVENTS_PLACEHOLDERS)
                .into_iter()
                .map(|(_, m)| m),
        );
        if self.timeout.is_zero() {
            out.push("the hook time-out is zero: expected a positive number of seconds".into());
        }
        out
    }
}

/// Counts of what the events command printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventStats {
    /// Lines received (including bad and cut ones; blank lines not counted).
    pub lines: u64,
    /// Lines that became a [`CellEvent`].
    pub events: u64,
    /// Lines skipped: not UTF-8, not JSON, not a known event, bad values.
    pub bad: u64,
    /// Lines longer than [`MAX_EVENT_LINE`]: cut and skipped.
    pub cut: u64,
}

/// One events line as JSON.
#[derive(Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum WireEvent {
    SmsFromWatch {
        to: String,
        text: String,
    },
    WatchDialled {
        number: String,
    },
    WatchAnswered {
        caller_id: String,
    },
    WatchHungUp {},
    Registration {
        state: String,
    },
    CallEnded {},
    FarEnd {
        number: String,
        answer: String,
    },
    DnsQuery {
        host: String,
        #[serde(default)]
        answer: Option<String>,
    },
    DataAttached {
        #[serde(default)]
        apn: Option<String>,
    },
}

/// Decode one events line (a JSON object) into the event it reports.
///
/// | line | event |
/// |---|---|
/// | `{"event":"sms_from_watch","to":"+49…","text":"…"}` | [`CellEvent::SmsFromWatch`] |
/// | `{"event":"watch_dialled","number":"+49…"}` | [`CellEvent::WatchDialled`] |
/// | `{"event":"watch_answered","caller_id":"+49…"}` | [`CellEvent::WatchAnswered`] |
/// | `{"event":"watch_hung_up"}` | [`CellEvent::WatchHungUp`] |
/// | `{"event":"registration","state":"home"}` | [`CellEvent::Registration`] (states as for the `registration` hook) |
/// | `{"event":"call_ended"}` | [`CellEvent::CallEnded`] |
/// | `{"event":"far_end","number":"+49…","answer":"answer"}` | [`CellEvent::FarEnd`] (`answer`, `reject`, `ring`) |
/// | `{"event":"dns_query","host":"…","answer":"1.2.3.4"}` | [`CellEvent::DnsQuery`] (`answer` may be null or absent) |
/// | `{"event":"data_attached","apn":"internet"}` | [`CellEvent::DataAttached`] (`apn` may be absent) |
///
/// Fields not listed are ignored. `data_attached` (the watch's packet-data
/// connection is up) is what the device strategy waits for before it expects the
/// watch on its backend, as the virtual modem reports it on `AT+CGACT=1`.
pub fn parse_event(line: &str) -> Result<CellEvent, String> {
    let wire: WireEvent = serde_json::from_str(line).map_err(|e| e.to_string())?;
    Ok(match wire {
        WireEvent::SmsFromWatch { to, text } => CellEvent::SmsFromWatch { to, text },
        WireEvent::WatchDialled { number } => CellEvent::WatchDialled { number },
        WireEvent::WatchAnswered { caller_id } => CellEvent::WatchAnswered { caller_id },
        WireEvent::WatchHungUp {} => CellEvent::WatchHungUp,
        WireEvent::Registration { state } => CellEvent::Registration {
            state: parse_registration(&state).ok_or_else(|| {
                format!("unknown registration state `{state}`: expected home, roaming, searching, denied or not-searching")
            })?,
        },
        WireEvent::CallEnded {} => CellEvent::CallEnded,
        WireEvent::FarEnd { number, answer } => CellEvent::FarEnd {
            number,
            answer: parse_call_answer(&answer).ok_or_else(|| {
                format!("unknown far-end answer `{answer}`: expected answer, reject or ring")
            })?,
        },
        WireEvent::DnsQuery { host, answer } => CellEvent::DnsQuery { host, answer },
        WireEvent::DataAttached { apn } => CellEvent::DataAttached { apn },
    })
}

/// Read `r` to its end as lines of at most [`MAX_EVENT_LINE`] bytes, handing each
/// line and the bytes cut from it to `on_line`.
fn read_lines(r: &mut impl Read, mut on_line: impl FnMut(&[u8], u64)) {
    let mut split = LineSplitter::new(MAX_EVENT_LINE);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => split.feed(&buf[..n], &mut on_line),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    split.finish(&mut on_line);
}

/// Cut `s` to at most `max` bytes at a character boundary; returns the bytes cut.
fn cut_field(s: &mut String, max: usize) -> usize {
    if s.len() <= max {
        return 0;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let cut = s.len() - end;
    s.truncate(end);
    cut
}

/// Cut every text field of `ev` to [`MAX_EVENT_FIELD`] bytes; returns the bytes cut.
fn bound_fields(ev: &mut CellEvent) -> usize {
    let fields: Vec<&mut String> = match ev {
        CellEvent::SmsToWatch { from, text } => vec![from, text],
        CellEvent::SmsFromWatch { to, text } => vec![to, text],
        CellEvent::CallToWatch { caller_id } | CellEvent::WatchAnswered { caller_id } => {
            vec![caller_id]
        }
        CellEvent::WatchDialled { number } | CellEvent::FarEnd { number, .. } => vec![number],
        CellEvent::DnsQuery { host, answer } => {
            let mut v = vec![host];
            v.extend(answer.as_mut());
            v
        }
        CellEvent::AtCommand { line } => vec![line],
        CellEvent::DataAttached { apn } => apn.as_mut().into_iter().collect(),
        CellEvent::WatchHungUp | CellEvent::CallEnded | CellEvent::Registration { .. } => {
            Vec::new()
        }
    };
    fields
        .into_iter()
        .map(|f| cut_field(f, MAX_EVENT_FIELD))
        .sum()
}

/// Splits a byte stream into lines of at most `max` bytes (without `\n` and a
/// trailing `\r`); the excess of a longer line is dropped and counted, so memory
/// stays bounded whatever the stream contains.
#[derive(Debug)]
pub struct LineSplitter {
    buf: Vec<u8>,
    max: usize,
    dropped: u64,
}

impl LineSplitter {
    pub fn new(max: usize) -> LineSplitter {
        LineSplitter {
            buf: Vec::new(),
            max: max.max(1),
            dropped: 0,
        }
    }

    /// Feed bytes; `line(kept, dropped)` is called for every completed line.
    pub fn feed(&mut self, mut data: &[u8], line: &mut impl FnMut(&[u8], u64)) {
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.keep(&data[..i]);
                    self.emit(line);
                    data = &data[i + 1..];
                }
                None => {
                    self.keep(data);
                    data = &[];
                }
            }
        }
    }

    /// The stream ended: hand over an unterminated last line, if any.
    pub fn finish(&mut self, line: &mut impl FnMut(&[u8], u64)) {
        if !self.buf.is_empty() || self.dropped > 0 {
            self.emit(line);
        }
    }

    fn keep(&mut self, part: &[u8]) {
        let room = self.max - self.buf.len();
        let n = room.min(part.len());
        self.buf.extend_from_slice(&part[..n]);
        self.dropped += (part.len() - n) as u64;
    }

    fn emit(&mut self, line: &mut impl FnMut(&[u8], u64)) {
        let mut kept: &[u8] = &self.buf;
        if self.dropped == 0 {
            if let Some(stripped) = kept.strip_suffix(b"\r") {
                kept = stripped;
            }
        }
        line(kept, self.dropped);
        self.buf.clear();
        self.dropped = 0;
    }
}

/// Whether `pid` (our child) has exited, without reaping it, so that its pid, which
/// is also its process group id, stays reserved: `Some(description)` once it has.
fn exited_nowait(pid: Pid) -> Option<String> {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    match waitid(Id::Pid(pid), flags) {
        Ok(WaitStatus::StillAlive) => None,
        Ok(WaitStatus::Exited(_, code)) => Some(format!("exit status {code}")),
        Ok(WaitStatus::Signaled(_, sig, _)) => Some(format!("killed by signal {sig}")),
        Ok(_) => None,
        Err(nix::errno::Errno::EINTR) => None,
        // ECHILD: already reaped.
        Err(_) => Some("gone".into()),
    }
}

/// Stop a child's process group: SIGTERM, up to [`TERM_GRACE`] for the leader to
/// exit, SIGKILL for the leader and anything else left in the group, then reap.
fn stop_group(child: &mut Child) {
    let pgid = Pid::from_raw(child.id() as i32);
    // The leader is not reaped before the last signal, so the group id cannot have
    // been reused by an unrelated process.
    let _ = killpg(pgid, Signal::SIGTERM);
    let until = Instant::now() + TERM_GRACE;
    while Instant::now() < until && exited_nowait(pgid).is_none() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = killpg(pgid, Signal::SIGKILL);
    let _ = child.wait();
}

/// Read everything from `r` on a thread, keeping at most [`MAX_HOOK_OUTPUT`] bytes;
/// the result (kept bytes, dropped count) arrives on the channel at end of stream.
fn capture(r: Option<impl Read + Send + 'static>) -> mpsc::Receiver<(Vec<u8>, u64)> {
    let (tx, rx) = mpsc::channel();
    let Some(mut r) = r else {
        let _ = tx.send((Vec::new(), 0));
        return rx;
    };
    let spawned = std::thread::Builder::new()
        .name("callbox hook output".into())
        .spawn(move || {
            let mut kept = Vec::new();
            let mut dropped = 0u64;
            let mut buf = [0u8; 8192];
            loop {
                match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let take = MAX_HOOK_OUTPUT.saturating_sub(kept.len()).min(n);
                        kept.extend_from_slice(&buf[..take]);
                        dropped += (n - take) as u64;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            let _ = tx.send((kept, dropped));
        });
    if spawned.is_err() {
        // The output is not read; the hook still runs (its pipe may fill up and
        // make it time out, which is reported).
        let (tx, rx) = mpsc::channel();
        let _ = tx.send((Vec::new(), 0));
        return rx;
    }
    rx
}

/// A JSON array of the arguments, for the evidence (exact and unambiguous).
fn argv_json(argv: &[String]) -> String {
    serde_json::to_string(argv).unwrap_or_else(|_| format!("{argv:?}"))
}

fn preview(bytes: &[u8]) -> String {
    let n = bytes.len().min(PREVIEW);
    let more = if bytes.len() > n { "…" } else { "" };
    format!("{}{more}", escape_bytes(&bytes[..n]))
}

struct Inner {
    clock: Clock,
    hooks: BTreeMap<CallboxAction, Vec<String>>,
    timeout: Duration,
    evidence_dir: String,
    log: EventLog<CellEvent>,
    evidence: Mutex<File>,
    registration: Mutex<Registration>,
    name_service: Option<Arc<dyn NameService>>,
    /// A lasting fault (the events command ended, evidence not writable).
    fault: Mutex<Option<String>>,
    /// A failure of `set_call_answer`, returned once by the next action.
    pending: Mutex<Option<String>>,
    /// Held while a hook runs: actions run one at a time, in order.
    actions: Mutex<()>,
    events_child: Mutex<Option<Child>>,
    stopping: AtomicBool,
    lines: AtomicU64,
    events: AtomicU64,
    bad: AtomicU64,
    cut: AtomicU64,
}

impl Inner {
    /// Append to `callbox.log`, each line stamped with device time `t`.
    fn write_at(&self, t: u64, text: &str) {
        let mut s = String::new();
        for line in text.lines() {
            s.push_str(&format!("{t} {line}\n"));
        }
        if let Err(e) = lock(&self.evidence).write_all(s.as_bytes()) {
            self.set_fault(format!("evidence {EVIDENCE_FILE}: {e}"));
        }
    }

    fn write(&self, text: &str) {
        self.write_at(self.clock.now(), text);
    }

    fn set_fault(&self, why: String) {
        let mut f = lock(&self.fault);
        if f.is_none() {
            *f = Some(why);
        }
    }

    /// A lasting fault or the events command gone.
    fn lasting_fault(&self) -> Option<String> {
        if let Some(f) = lock(&self.fault).clone() {
            return Some(f);
        }
        let pid = lock(&self.events_child)
            .as_ref()
            .map(|c| Pid::from_raw(c.id() as i32))?;
        let status = exited_nowait(pid)?;
        let why = format!(
            "the events command ended ({status}): the rig no longer sees the network's events"
        );
        self.write(&format!("note {why}"));
        self.set_fault(why.clone());
        Some(why)
    }

    /// Fail with the lasting fault or (once) a pending one.
    fn ready(&self) -> RigResult<()> {
        if let Some(f) = self.lasting_fault() {
            return Err(RigError::instrument("cellular", f));
        }
        if let Some(p) = lock(&self.pending).take() {
            return Err(RigError::instrument("cellular", p));
        }
        Ok(())
    }

    /// Run `action`'s hook with `values` substituted. Blocking.
    fn run_hook(&self, action: CallboxAction, values: &[(&str, &str)]) -> RigResult<()> {
        self.ready()?;
        let Some(template) = self.hooks.get(&action) else {
            return Err(RigError::Config(format!(
                "instruments.cellular: no `{name}` hook is configured, so the rig cannot {purpose}: add `hooks.{name}: [argv…]` to the rig file (docs/cellular.md)",
                name = action.name(),
                purpose = action.purpose(),
            )));
        };
        let mut all: Vec<(&str, &str)> = values.to_vec();
        all.push((EVIDENCE_PLACEHOLDER, &self.evidence_dir));
        let argv: Vec<String> = template.iter().map(|a| substitute(a, &all)).collect();
        let name = action.name();
        let _one_at_a_time = lock(&self.actions);
        self.write(&format!("run {name} {}", argv_json(&argv)));
        let started = Instant::now();
        let Some((program, args)) = argv.split_first() else {
            return Err(RigError::Config(format!("hook `{name}` is empty")));
        };
        let mut child = match Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                let why = format!("hook `{name}`: cannot start `{program}`: {e}");
                self.write(&format!("FAILED {name}: {why}"));
                return Err(RigError::instrument("cellular", why));
            }
        };
        let out = capture(child.stdout.take());
        let err = capture(child.stderr.take());
        let pid = Pid::from_raw(child.id() as i32);
        let mut timed_out = false;
        let mut pause = Duration::from_millis(2);
        while exited_nowait(pid).is_none() {
            if started.elapsed() >= self.timeout {
                timed_out = true;
                break;
            }
            std::thread::sleep(pause.min(self.timeout.saturating_sub(started.elapsed())));
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        if timed_out {
            stop_group(&mut child);
        } else {
            // Whatever the hook left running in its group goes too (the leader is
            // not reaped yet, so the group id is still ours).
            let _ = killpg(pid, Signal::SIGKILL);
        }
        let status = child.wait();
        let elapsed_ms = started.elapsed().as_millis();
        let mut stderr_tail = String::new();
        for (stream, rx) in [("out", out), ("err", err)] {
            match rx.recv_timeout(OUTPUT_GRACE) {
                Ok((bytes, dropped)) => {
                    let mut text = String::new();
                    for line in bytes.split(|&b| b == b'\n') {
                        let line = line.strip_suffix(b"\r").unwrap_or(line);
                        if !line.is_empty() {
                            text.push_str(&format!("{stream} {name} {}\n", escape_bytes(line)));
                            if stream == "err" {
                                stderr_tail = String::from_utf8_lossy(line).trim().to_string();
                            }
                        }
                    }
                    if dropped > 0 {
                        text.push_str(&format!(
                            "note {name}: std{stream} exceeded {MAX_HOOK_OUTPUT} bytes; {dropped} more bytes not kept\n"
                        ));
                    }
                    self.write(&text);
                }
                Err(_) => self.write(&format!(
                    "note {name}: std{stream} still open after the hook ended (a process outside its group holds it); not waited for"
                )),
            }
        }
        let tail = if stderr_tail.is_empty() {
            String::new()
        } else {
            let short: String = stderr_tail.chars().take(300).collect();
            format!(" (stderr: {short})")
        };
        let why = if timed_out {
            format!(
                "hook `{name}` did not finish within {:.1} s and was stopped{tail}",
                self.timeout.as_secs_f64()
            )
        } else {
            match status {
                Ok(s) if s.success() => {
                    self.write(&format!("done {name} exit status 0 after {elapsed_ms} ms"));
                    return Ok(());
                }
                Ok(s) => match s.code() {
                    Some(code) => format!("hook `{name}` failed with exit status {code}{tail}"),
                    None => format!("hook `{name}` was killed ({s}){tail}"),
                },
                Err(e) => format!("hook `{name}`: waiting for it failed: {e}"),
            }
        };
        self.write(&format!("FAILED {name} after {elapsed_ms} ms: {why}"));
        Err(RigError::instrument("cellular", why))
    }

    /// One line from the events command.
    fn on_event_line(&self, line: &[u8], dropped: u64) {
        let t = self.clock.now();
        if line.iter().all(u8::is_ascii_whitespace) && dropped == 0 {
            return;
        }
        self.lines.fetch_add(1, Ordering::Relaxed);
        if dropped > 0 {
            self.cut.fetch_add(1, Ordering::Relaxed);
            self.write_at(
                t,
                &format!(
                    "note events line longer than {MAX_EVENT_LINE} bytes cut: {dropped} bytes dropped, line skipped; it began: {}",
                    preview(line)
                ),
            );
            return;
        }
        let Ok(text) = std::str::from_utf8(line) else {
            self.bad.fetch_add(1, Ordering::Relaxed);
            self.write_at(
                t,
                &format!("note events line is not UTF-8, skipped: {}", preview(line)),
            );
            return;
        };
        self.write_at(t, &format!("event {}", escape_bytes(text.as_bytes())));
        match parse_event(text) {
            Ok(mut ev) => {
                let cut = bound_fields(&mut ev);
                if cut > 0 {
                    self.write_at(
                        t,
                        &format!("note a field longer than {MAX_EVENT_FIELD} bytes was cut ({cut} bytes dropped)"),
                    );
                }
                if let CellEvent::Registration { state } = ev {
                    *lock(&self.registration) = state;
                }
                self.events.fetch_add(1, Ordering::Relaxed);
                self.log.push_at(t, ev);
            }
            Err(why) => {
                self.bad.fetch_add(1, Ordering::Relaxed);
                self.write_at(t, &format!("note events line skipped: {why}"));
            }
        }
    }

    /// The events command's stdout ended.
    fn events_ended(&self) {
        if self.stopping.load(Ordering::SeqCst) {
            return;
        }
        let pid = lock(&self.events_child)
            .as_ref()
            .map(|c| Pid::from_raw(c.id() as i32));
        let mut status = None;
        if let Some(pid) = pid {
            let until = Instant::now() + TERM_GRACE;
            while status.is_none() && Instant::now() < until {
                status = exited_nowait(pid);
                if status.is_none() {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        let why = match status {
            Some(s) => format!(
                "the events command ended ({s}): the rig no longer sees the network's events"
            ),
            None => {
                "the events command closed its output: the rig no longer sees the network's events"
                    .into()
            }
        };
        if self.stopping.load(Ordering::SeqCst) {
            return;
        }
        self.write(&format!("note {why}"));
        self.set_fault(why);
    }
}

/// The cellular network through a callbox adapter.
pub struct CallboxCellular {
    inner: Arc<Inner>,
    readers: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl CallboxCellular {
    /// Check `spec`, create `<evidence_dir>/callbox.log` and start the events
    /// command. `name_service` (the rig's gateway) is told coverage up/down when
    /// the rig changes the registration.
    pub fn open(
        spec: CallboxSpec,
        clock: Clock,
        name_service: Option<Arc<dyn NameService>>,
        evidence_dir: &Path,
    ) -> RigResult<Arc<CallboxCellular>> {
        let problems = spec.problems();
        if !problems.is_empty() {
            return Err(RigError::Config(format!(
                "instruments.cellular: {}",
                problems.join("; ")
            )));
        }
        std::fs::create_dir_all(evidence_dir)?;
        let evidence = File::create(evidence_dir.join(EVIDENCE_FILE))?;
        let dir: PathBuf = evidence_dir.to_path_buf();
        let inner = Arc::new(Inner {
            clock,
            hooks: spec.hooks,
            timeout: spec.timeout,
            evidence_dir: dir.to_string_lossy().into_owned(),
            log: EventLog::new(clock, LOG_CAPACITY),
            evidence: Mutex::new(evidence),
            registration: Mutex::new(Registration::NotSearching),
            name_service,
            fault: Mutex::new(None),
            pending: Mutex::new(None),
            actions: Mutex::new(()),
            events_child: Mutex::new(None),
            stopping: AtomicBool::new(false),
            lines: AtomicU64::new(0),
            events: AtomicU64::new(0),
            bad: AtomicU64::new(0),
            cut: AtomicU64::new(0),
        });
        let missing: Vec<&str> = CallboxAction::ALL
            .iter()
            .filter(|a| !inner.hooks.contains_key(a))
            .map(|a| a.name())
            .collect();
        if !missing.is_empty() {
            inner.write(&format!("note no hook for: {}", missing.join(", ")));
        }
        let argv: Vec<String> = spec
            .events
            .iter()
            .map(|a| substitute(a, &[(EVIDENCE_PLACEHOLDER, &inner.evidence_dir)]))
            .collect();
        let Some((program, args)) = argv.split_first() else {
            return Err(RigError::Config(
                "instruments.cellular: the events command is empty".into(),
            ));
        };
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| {
                let why = format!("cannot start the events command `{program}`: {e}");
                inner.write(&format!("FAILED events: {why}"));
                RigError::instrument("cellular", why)
            })?;
        inner.write(&format!(
            "start events {} pid {}",
            argv_json(&argv),
            child.id()
        ));
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        *lock(&inner.events_child) = Some(child);
        let driver = Arc::new(CallboxCellular {
            inner: inner.clone(),
            readers: Mutex::new(Vec::new()),
        });
        // From here on, dropping `driver` stops the events command.
        let mut readers = Vec::new();
        if let Some(mut out) = stdout {
            let i = inner.clone();
            readers.push(
                std::thread::Builder::new()
                    .name("callbox events".into())
                    .spawn(move || {
                        read_lines(&mut out, |l, d| i.on_event_line(l, d));
                        i.events_ended();
                    })
                    .map_err(|e| RigError::instrument("cellular", format!("events thread: {e}")))?,
            );
        }
        if let Some(mut err) = stderr {
            let i = inner.clone();
            readers.push(
                std::thread::Builder::new()
                    .name("callbox events stderr".into())
                    .spawn(move || {
                        read_lines(&mut err, |l, d| {
                            let more = if d > 0 {
                                format!(" (+{d} bytes not kept)")
                            } else {
                                String::new()
                            };
                            i.write(&format!("events-err {}{more}", escape_bytes(l)));
                        });
                    })
                    .map_err(|e| {
                        RigError::instrument("cellular", format!("events stderr thread: {e}"))
                    })?,
            );
        }
        *lock(&driver.readers) = readers;
        Ok(driver)
    }

    /// `Err` when the backend cannot be trusted: the events command ended, the
    /// evidence file failed, or a `set_call_answer` failed and no action has
    /// reported it yet.
    pub fn health(&self) -> RigResult<()> {
        if let Some(f) = self.inner.lasting_fault() {
            return Err(RigError::instrument("cellular", f));
        }
        if let Some(p) = lock(&self.inner.pending).clone() {
            return Err(RigError::instrument("cellular", p));
        }
        Ok(())
    }

    /// What the events command has printed so far.
    pub fn stats(&self) -> EventStats {
        let i = &self.inner;
        EventStats {
            lines: i.lines.load(Ordering::Relaxed),
            events: i.events.load(Ordering::Relaxed),
            bad: i.bad.load(Ordering::Relaxed),
            cut: i.cut.load(Ordering::Relaxed),
        }
    }

    /// Process id of the events command (also its process group id), while it is
    /// the driver's.
    pub fn events_pid(&self) -> Option<u32> {
        lock(&self.inner.events_child).as_ref().map(|c| c.id())
    }

    /// Run a hook off the async workers.
    async fn action(
        &self,
        action: CallboxAction,
        values: Vec<(&'static str, String)>,
    ) -> RigResult<()> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let v: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
            inner.run_hook(action, &v)
        })
        .await
        .map_err(|e| RigError::Other(format!("callbox task: {e}")))?
    }
}

impl Drop for CallboxCellular {
    fn drop(&mut self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        if let Some(mut child) = lock(&self.inner.events_child).take() {
            stop_group(&mut child);
            self.inner.write("note events command stopped");
        }
        // The readers end once the group's pipes close; wait a little so that
        // `callbox.log` is complete, but never for a process outside the group.
        let readers = std::mem::take(&mut *lock(&self.readers));
        let until = Instant::now() + OUTPUT_GRACE;
        for r in readers {
            while !r.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
            if r.is_finished() {
                let _ = r.join();
            }
        }
    }
}

#[async_trait]
impl Cellular for CallboxCellular {
    async fn set_registration(&self, state: Registration) -> RigResult<()> {
        self.action(
            CallboxAction::Registration,
            vec![("state", registration_name(state).to_string())],
        )
        .await?;
        *lock(&self.inner.registration) = state;
        if let Some(ns) = &self.inner.name_service {
            ns.set_coverage(is_registered(state));
        }
        self.inner.log.push(CellEvent::Registration { state });
        Ok(())
    }

    async fn send_sms(&self, from: &str, text: &str) -> RigResult<()> {
        self.action(
            CallboxAction::SendSms,
            vec![("from", from.to_string()), ("text", text.to_string())],
        )
        .await?;
        self.inner.log.push(CellEvent::SmsToWatch {
            from: from.to_string(),
            text: text.to_string(),
        });
        Ok(())
    }

    async fn call_watch(&self, caller_id: &str) -> RigResult<()> {
        self.action(
            CallboxAction::CallWatch,
            vec![("caller_id", caller_id.to_string())],
        )
        .await?;
        self.inner.log.push(CellEvent::CallToWatch {
            caller_id: caller_id.to_string(),
        });
        Ok(())
    }

    async fn hang_up(&self) -> RigResult<()> {
        // The end of the call is reported by the network (`call_ended`).
        self.action(CallboxAction::HangUp, Vec::new()).await
    }

    /// Runs the `call_answer` hook before returning (blocking the calling thread for
    /// at most the time-out). A failure cannot be returned here: it is noted in
    /// `callbox.log` and returned by the next action and by `health`. Without a
    /// hook, `answer` is taken to be the callbox's own setting and only noted; other
    /// modes are such a failure.
    fn set_call_answer(&self, answer: CallAnswer) {
        let inner = self.inner.clone();
        let mode = call_answer_name(answer);
        let run = move || {
            if !inner.hooks.contains_key(&CallboxAction::CallAnswer) {
                if answer == CallAnswer::Answer {
                    inner.write("note no call_answer hook: the far end is taken to answer as the callbox is set up");
                    return;
                }
                let why = format!(
                    "instruments.cellular: no `call_answer` hook is configured, so the far end cannot be made to {mode} the watch's calls"
                );
                inner.write(&format!("FAILED call_answer: {why}"));
                *lock(&inner.pending) = Some(why);
                return;
            }
            if let Err(e) = inner.run_hook(CallboxAction::CallAnswer, &[("mode", mode)]) {
                let why = format!("setting the far end to `{mode}` failed: {e}");
                *lock(&inner.pending) = Some(why);
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(run)
            }
            _ => run(),
        }
    }

    fn log(&self) -> &EventLog<CellEvent> {
        &self.inner.log
    }

    /// The last registration state reported by the events command or set by the
    /// rig (`not-searching` until either happens).
    fn registration(&self) -> Registration {
        *lock(&self.inner.registration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_is_one_pass_and_verbatim() {
        let v = [
            ("from", "+49 {text}"),
            ("text", "a \"b\"; $(rm -rf /) {from}"),
        ];
        assert_eq!(
            substitute("{from}|{text}|{nope}|{not a placeholder}|{}", &v),
            "+49 {text}|a \"b\"; $(rm -rf /) {from}|{nope}|{not a placeholder}|{}"
        );
        assert_eq!(substitute("--to={from}", &v), "--to=+49 {text}");
        assert_eq!(substitute("ünïcode {text", &v), "ünïcode {text");
    }

    #[test]
    fn placeholders_are_found_and_checked() {
        assert_eq!(placeholders_in("x{a}{b_1}{ c }{}{"), vec!["a", "b_1"]);
        let argv: Vec<String> = ["{text}", "sms", "{from}", "{frm}", "{\"json\": 1}"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let p = argv_problems(
            "hook `send_sms`",
            &argv,
            CallboxAction::SendSms.placeholders(),
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].0, Some(0));
        assert!(p[0].1.contains("program"), "{p:?}");
        assert_eq!(p[1].0, Some(3));
        assert!(p[1].1.contains("`{frm}`"), "{p:?}");
        assert_eq!(argv_problems("x", &[], &[])[0].0, None);
    }

    #[test]
    fn names_round_trip() {
        for a in CallboxAction::ALL {
            assert_eq!(CallboxAction::from_name(a.name()), Some(a));
        }
        for r in [
            Registration::Home,
            Registration::Roaming,
            Registration::Searching,
            Registration::Denied,
            Registration::NotSearching,
        ] {
            assert_eq!(parse_registration(registration_name(r)), Some(r));
        }
        assert_eq!(parse_call_answer("ring"), Some(CallAnswer::Ring));
        assert_eq!(parse_call_answer("Ring"), None);
    }

    #[test]
    fn events_decode_and_bad_ones_are_refused() {
        assert_eq!(
            parse_event(r#"{"event":"sms_from_watch","to":"+491","text":"hi","extra":1}"#),
            Ok(CellEvent::SmsFromWatch {
                to: "+491".into(),
                text: "hi".into()
            })
        );
        assert_eq!(
            parse_event(r#"{"event":"watch_hung_up","cause":16}"#),
            Ok(CellEvent::WatchHungUp)
        );
        assert_eq!(
            parse_event(r#"{"event":"dns_query","host":"a.example"}"#),
            Ok(CellEvent::DnsQuery {
                host: "a.example".into(),
                answer: None
            })
        );
        assert!(matches!(
            parse_event(r#"{"event":"data_attached"}"#),
            Ok(CellEvent::DataAttached { apn: None })
        ));
        for bad in [
            "",
            "null",
            "[1]",
            "{}",
            r#"{"event":"teleport"}"#,
            r#"{"event":"registration","state":"orbit"}"#,
            r#"{"event":"far_end","number":"1","answer":"maybe"}"#,
            r#"{"event":"sms_from_watch","to":1,"text":"x"}"#,
            r#"{"event":"watch_dialled"}"#,
        ] {
            assert!(parse_event(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn event_fields_are_cut_at_a_character_boundary() {
        let mut ev = CellEvent::SmsFromWatch {
            to: "+491".into(),
            text: "ü".repeat(MAX_EVENT_FIELD),
        };
        assert_eq!(bound_fields(&mut ev), MAX_EVENT_FIELD);
        let CellEvent::SmsFromWatch { to, text } = ev else {
            unreachable!()
        };
        assert_eq!(to, "+491");
        assert_eq!(text.len(), MAX_EVENT_FIELD);
        assert!(text.chars().all(|c| c == 'ü'));
        let mut odd = "a".to_string() + &"ü".repeat(MAX_EVENT_FIELD);
        assert_eq!(cut_field(&mut odd, MAX_EVENT_FIELD), MAX_EVENT_FIELD + 2);
        assert_eq!(odd.len(), MAX_EVENT_FIELD - 1);
    }

    #[test]
    fn lines_are_bounded_and_excess_is_counted() {
        let mut s = LineSplitter::new(4);
        let mut got: Vec<(Vec<u8>, u64)> = Vec::new();
        let mut f = |l: &[u8], d: u64| got.push((l.to_vec(), d));
        s.feed(b"ab\r\ncdefgh", &mut f);
        s.feed(b"ij\nk", &mut f);
        s.finish(&mut f);
        assert_eq!(
            got,
            vec![
                (b"ab".to_vec(), 0),
                (b"cdef".to_vec(), 4),
                (b"k".to_vec(), 0)
            ]
        );
    }
}

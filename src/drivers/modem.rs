//! The rig as the watch's cellular modem and network (`docs/virtual-hardware.md` §5).
//!
//! The watch is the terminal on the modem line: it sends AT commands, the rig
//! answers as a modem attached to a network the rig controls. [`ModemCore`] is the
//! protocol as a pure state machine (bytes and API calls in, bytes, events and
//! coverage changes out, device time passed in); [`VirtualModem`] puts it on a
//! [`SerialLine`], runs its timers on a dedicated thread and keeps the evidence:
//! every byte in both directions goes to `modem.log` as
//! `<device ms> < text` (from the watch) or `<device ms> > text` (to the watch),
//! non-printable bytes escaped (see [`escape_bytes`]).
//!
//! Parsing rules: a command line ends at CR (LF is accepted too); characters before
//! the first `AT` on a line are noise and skipped; lines without `AT` are ignored;
//! a line longer than [`MAX_COMMAND`] is answered `ERROR` (the excess is not kept in
//! memory, only in the transcript). Echo is never on. Every command line is logged
//! as [`CellEvent::AtCommand`].

use super::serial::{escape_bytes, lock, LineStatus, ReadEvent, SerialLine, SerialWriter};
use super::{CallAnswer, CellEvent, Cellular, EventLog, NameService, Registration};
use crate::clock::{Clock, DeviceMs};
use crate::error::{RigError, RigResult};
use crate::wire::nmea::UtcTime;
use async_trait::async_trait;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Longest command line kept; longer ones are answered `ERROR`.
pub const MAX_COMMAND: usize = 512;
/// Longest SMS body accepted (3GPP GSM 7-bit, single part).
pub const MAX_SMS: usize = 160;
/// SMS body bytes kept while waiting for Ctrl-Z (the excess is counted, not kept).
const SMS_BUFFER: usize = 1024;
/// Interval between `RING`s of an incoming call (device ms).
pub const RING_INTERVAL_MS: DeviceMs = 3_000;
/// Outgoing call: dialling to alerting (device ms).
pub const ALERT_AFTER_MS: DeviceMs = 1_000;
/// Outgoing call: alerting to answer or reject (device ms).
pub const DECIDE_AFTER_MS: DeviceMs = 2_000;
/// Outgoing call to a far end that never answers: alerting to `NO ANSWER`.
pub const NO_ANSWER_AFTER_MS: DeviceMs = 60_000;
/// Longest phone number / caller id.
const MAX_NUMBER: usize = 32;
/// Events kept in memory.
const LOG_CAPACITY: usize = 10_000;
/// Wall-time deadline for one write to the watch.
const WRITE_DEADLINE: Duration = Duration::from_secs(5);

const CTRL_Z: u8 = 0x1a;
const ESC: u8 = 0x1b;

/// `<stat>` of `+CREG` / `+CEREG`.
pub fn creg_stat(r: Registration) -> u8 {
    match r {
        Registration::NotSearching => 0,
        Registration::Home => 1,
        Registration::Searching => 2,
        Registration::Denied => 3,
        Registration::Roaming => 5,
    }
}

pub fn is_registered(r: Registration) -> bool {
    matches!(r, Registration::Home | Registration::Roaming)
}

/// `<type>` of a number: 145 international (`+…`), 129 otherwise.
pub fn number_type(number: &str) -> u8 {
    if number.starts_with('+') {
        145
    } else {
        129
    }
}

/// What one step of the state machine produced.
#[derive(Debug, Default, PartialEq)]
pub struct Effects {
    /// Chunks to write to the watch, in order (one response or URC each).
    pub out: Vec<Vec<u8>>,
    pub events: Vec<CellEvent>,
    /// The network's coverage changed to this.
    pub coverage: Option<bool>,
}

impl Effects {
    fn line(&mut self, text: &str) {
        self.out.push(format!("\r\n{text}\r\n").into_bytes());
    }
    fn ok(&mut self) {
        self.line("OK");
    }
    fn error(&mut self) {
        self.line("ERROR");
    }
    fn cme(&mut self, n: u16) {
        self.line(&format!("+CME ERROR: {n}"));
    }
    fn cms(&mut self, n: u16) {
        self.line(&format!("+CMS ERROR: {n}"));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    /// Mobile-terminated, ringing the watch.
    Incoming,
    /// Mobile-originated, being set up.
    Dialling,
    /// Mobile-originated, far end ringing.
    Alerting,
    Active,
}

#[derive(Debug, Clone)]
struct Call {
    incoming: bool,
    number: String,
    state: CallState,
    /// Next timer of this call (device ms).
    due: Option<DeviceMs>,
    /// For outgoing calls: what the far end does (fixed when dialled).
    answer: CallAnswer,
}

impl Call {
    fn clcc(&self) -> String {
        let stat = match self.state {
            CallState::Active => 0,
            CallState::Dialling => 2,
            CallState::Alerting => 3,
            CallState::Incoming => 4,
        };
        format!(
            "+CLCC: 1,{},{stat},0,0,\"{}\",{}",
            u8::from(self.incoming),
            self.number,
            number_type(&self.number)
        )
    }
}

#[derive(Debug)]
enum Input {
    Command {
        line: Vec<u8>,
        excess: usize,
    },
    SmsText {
        to: String,
        text: Vec<u8>,
        excess: usize,
        after_cr: bool,
    },
}

/// The modem and network as a state machine.
#[derive(Debug)]
pub struct ModemCore {
    registration: Registration,
    creg_n: u8,
    cereg_n: u8,
    rssi: u8,
    operator: String,
    answer: CallAnswer,
    call: Option<Call>,
    pdp_active: bool,
    next_mr: u8,
    input: Input,
    commands: u64,
}

impl Default for ModemCore {
    fn default() -> Self {
        ModemCore::new()
    }
}

impl ModemCore {
    /// Registered at home, good signal, far end answers.
    pub fn new() -> ModemCore {
        ModemCore {
            registration: Registration::Home,
            creg_n: 0,
            cereg_n: 0,
            rssi: 24,
            operator: "REDRIG".into(),
            answer: CallAnswer::Answer,
            call: None,
            pdp_active: false,
            next_mr: 1,
            input: Input::Command {
                line: Vec::new(),
                excess: 0,
            },
            commands: 0,
        }
    }

    pub fn registration(&self) -> Registration {
        self.registration
    }

    /// AT command lines received so far.
    pub fn commands_seen(&self) -> u64 {
        self.commands
    }

    /// Whether a call (either direction, any state) exists.
    pub fn in_call(&self) -> bool {
        self.call.is_some()
    }

    pub fn set_call_answer(&mut self, answer: CallAnswer) {
        self.answer = answer;
    }

    /// Signal quality reported by `AT+CSQ` while registered (clamped to 0–31).
    pub fn set_signal(&mut self, rssi: u8) {
        self.rssi = rssi.min(31);
    }

    pub fn set_operator(&mut self, name: &str) {
        self.operator = name
            .chars()
            .filter(|c| *c != '"' && !c.is_control())
            .take(32)
            .collect();
    }

    /// The earliest pending timer.
    pub fn next_due(&self) -> Option<DeviceMs> {
        self.call.as_ref().and_then(|c| c.due)
    }

    /// Bytes from the watch.
    pub fn feed(&mut self, bytes: &[u8], now: DeviceMs, ns: &dyn NameService, fx: &mut Effects) {
        for &b in bytes {
            match &mut self.input {
                Input::Command { line, excess } => match b {
                    b'\r' | b'\n' => {
                        let (l, x) = (std::mem::take(line), std::mem::take(excess));
                        self.command_line(&l, x, now, ns, fx);
                    }
                    // Stray Ctrl-Z / ESC outside a message: discard the partial line.
                    CTRL_Z | ESC => {
                        line.clear();
                        *excess = 0;
                    }
                    _ if line.len() < MAX_COMMAND => line.push(b),
                    _ => *excess += 1,
                },
                Input::SmsText {
                    to,
                    text,
                    excess,
                    after_cr,
                } => {
                    let was_cr = std::mem::replace(after_cr, b == b'\r');
                    match b {
                        CTRL_Z => {
                            let (to, text, excess) =
                                (std::mem::take(to), std::mem::take(text), *excess);
                            self.input = Input::Command {
                                line: Vec::new(),
                                excess: 0,
                            };
                            self.sms_from_watch(to, &text, excess, fx);
                        }
                        ESC => {
                            self.input = Input::Command {
                                line: Vec::new(),
                                excess: 0,
                            };
                            fx.ok();
                        }
                        b'\n' if was_cr => {}
                        b'\r' => {
                            push_bounded(text, excess, b'\n');
                            fx.out.push(b"\r\n> ".to_vec());
                        }
                        _ => push_bounded(text, excess, b),
                    }
                }
            }
        }
    }

    fn command_line(
        &mut self,
        raw: &[u8],
        excess: usize,
        now: DeviceMs,
        ns: &dyn NameService,
        fx: &mut Effects,
    ) {
        let Some(start) = raw.windows(2).position(|w| w.eq_ignore_ascii_case(b"AT")) else {
            return; // noise or an empty line
        };
        self.commands += 1;
        let text = String::from_utf8_lossy(&raw[start..]).into_owned();
        let text = text.trim_end().to_string();
        if excess > 0 {
            fx.events.push(CellEvent::AtCommand {
                line: format!("{text}…(+{excess} bytes)"),
            });
            fx.error();
            return;
        }
        fx.events.push(CellEvent::AtCommand { line: text.clone() });
        self.dispatch(&text, now, ns, fx);
    }

    fn dispatch(&mut self, cmd: &str, now: DeviceMs, ns: &dyn NameService, fx: &mut Effects) {
        let rest = &cmd[2..];
        let up = rest.to_ascii_uppercase();
        let (name, arg) = match up.find(['=', '?']) {
            Some(i) => (&up[..i], &rest[i..]),
            None => (up.as_str(), ""),
        };
        match (name, arg) {
            ("", "") | ("E0", "") | ("E1", "") | ("E", "") => fx.ok(),
            ("+CMEE", a) if set_value(a).is_some_and(|n| n <= 2) => fx.ok(),
            ("+CPIN", "?") => {
                fx.line("+CPIN: READY");
                fx.ok();
            }
            ("+CGSN", "") | ("+GSN", "") => fx.cme(4),
            ("+CREG", a) | ("+CEREG", a) => {
                let eps = name == "+CEREG";
                let n = if eps {
                    &mut self.cereg_n
                } else {
                    &mut self.creg_n
                };
                if a == "?" {
                    let n = *n;
                    fx.line(&format!("{name}: {n},{}", creg_stat(self.registration)));
                    fx.ok();
                } else if let Some(v) = set_value(a).filter(|v| *v <= if eps { 5 } else { 2 }) {
                    *n = v as u8;
                    fx.ok();
                } else {
                    fx.error();
                }
            }
            ("+CSQ", "") => {
                let rssi = if is_registered(self.registration) {
                    self.rssi
                } else {
                    99
                };
                fx.line(&format!("+CSQ: {rssi},99"));
                fx.ok();
            }
            ("+COPS", "?") => {
                if is_registered(self.registration) {
                    fx.line(&format!("+COPS: 0,0,\"{}\",7", self.operator));
                } else {
                    fx.line("+COPS: 0");
                }
                fx.ok();
            }
            ("+CLIP", a) | ("+CLCC", a) if set_value(a).is_some_and(|n| n <= 1) => fx.ok(),
            ("+CMGF", a) if set_value(a) == Some(1) => fx.ok(),
            ("+CNMI", a) | ("+CGDCONT", a) if a.starts_with('=') => fx.ok(),
            ("+CLCC", "") => {
                if let Some(c) = &self.call {
                    fx.line(&c.clcc());
                }
                fx.ok();
            }
            ("+CGACT", "?") => {
                fx.line(&format!("+CGACT: 1,{}", u8::from(self.pdp_active)));
                fx.ok();
            }
            ("+CGACT", a) => match a.strip_prefix('=').map(|v| v.trim()) {
                Some("1,1") | Some("1") if is_registered(self.registration) => {
                    self.pdp_active = true;
                    fx.events.push(CellEvent::DataAttached { apn: None });
                    fx.ok();
                }
                Some("1,1") | Some("1") => fx.cme(30),
                Some("0,1") | Some("0") => {
                    self.pdp_active = false;
                    fx.ok();
                }
                _ => fx.error(),
            },
            ("+QIDNSGIP", a) => self.dns(a, ns, fx),
            ("+CMGS", a) => self.cmgs(a, fx),
            ("A", "") => self.answer_call(fx),
            ("H", "") | ("H0", "") | ("+CHUP", "") => self.watch_hangs_up(fx),
            _ if name.starts_with('D') && !name.starts_with("D>") => self.dial(&rest[1..], now, fx),
            _ => fx.error(),
        }
    }

    fn dns(&mut self, arg: &str, ns: &dyn NameService, fx: &mut Effects) {
        let parsed = arg.strip_prefix('=').and_then(|a| {
            let (ctx, host) = a.split_once(',')?;
            let ctx: u8 = ctx.trim().parse().ok()?;
            let host = quoted(host)?;
            ((1..=16).contains(&ctx) && !host.is_empty() && host.len() <= 255).then_some(host)
        });
        let Some(host) = parsed else {
            fx.error();
            return;
        };
        fx.ok();
        let answer = if is_registered(self.registration) {
            ns.resolve(host)
        } else {
            None
        };
        match answer {
            Some(ip) => {
                fx.line("+QIURC: \"dnsgip\",0,1,600");
                fx.line(&format!("+QIURC: \"dnsgip\",\"{ip}\""));
            }
            None => fx.line("+QIURC: \"dnsgip\",565"),
        }
        fx.events.push(CellEvent::DnsQuery {
            host: host.to_string(),
            answer: answer.map(|ip| ip.to_string()),
        });
    }

    fn cmgs(&mut self, arg: &str, fx: &mut Effects) {
        let to = arg.strip_prefix('=').and_then(|a| {
            // `="<da>"` optionally followed by `,<toda>`.
            let da = a.split(',').next()?;
            quoted(da).filter(|n| valid_number(n)).map(str::to_string)
        });
        match to {
            None => fx.error(),
            Some(_) if !is_registered(self.registration) => fx.error(),
            Some(to) => {
                fx.out.push(b"\r\n> ".to_vec());
                self.input = Input::SmsText {
                    to,
                    text: Vec::new(),
                    excess: 0,
                    after_cr: false,
                };
            }
        }
    }

    fn sms_from_watch(&mut self, to: String, text: &[u8], excess: usize, fx: &mut Effects) {
        if !is_registered(self.registration) {
            fx.cms(331); // no network service
            return;
        }
        let text = String::from_utf8_lossy(text).into_owned();
        if excess > 0 || text.chars().count() > MAX_SMS {
            fx.cms(305); // invalid text mode parameter
            return;
        }
        let mr = self.next_mr;
        self.next_mr = self.next_mr.wrapping_add(1);
        fx.line(&format!("+CMGS: {mr}"));
        fx.ok();
        fx.events.push(CellEvent::SmsFromWatch { to, text });
    }

    fn answer_call(&mut self, fx: &mut Effects) {
        match &mut self.call {
            Some(c) if c.state == CallState::Incoming => {
                c.state = CallState::Active;
                c.due = None;
                let caller_id = c.number.clone();
                fx.ok();
                fx.events.push(CellEvent::WatchAnswered { caller_id });
            }
            _ => fx.line("NO CARRIER"),
        }
    }

    fn watch_hangs_up(&mut self, fx: &mut Effects) {
        if self.call.take().is_some() {
            fx.events.push(CellEvent::WatchHungUp);
        }
        fx.ok();
    }

    fn dial(&mut self, arg: &str, now: DeviceMs, fx: &mut Effects) {
        // Tone / pulse prefixes of ITU V.250 dial strings carry no digits.
        let arg = arg.trim().trim_start_matches(['T', 't', 'P', 'p']);
        let Some(number) = arg.strip_suffix(';').map(str::trim) else {
            fx.error(); // data calls are not offered
            return;
        };
        if !valid_number(number) || self.call.is_some() {
            fx.error();
            return;
        }
        fx.events.push(CellEvent::WatchDialled {
            number: number.to_string(),
        });
        if !is_registered(self.registration) {
            fx.line("NO CARRIER");
            return;
        }
        let call = Call {
            incoming: false,
            number: number.to_string(),
            state: CallState::Dialling,
            due: Some(now + ALERT_AFTER_MS),
            answer: self.answer,
        };
        fx.ok();
        fx.line(&call.clcc());
        self.call = Some(call);
    }

    /// Run the timers due at `now`.
    pub fn tick(&mut self, now: DeviceMs, fx: &mut Effects) {
        let Some(call) = self.call.as_mut() else {
            return;
        };
        let Some(due) = call.due else { return };
        if due > now {
            return;
        }
        match (call.state, call.answer) {
            (CallState::Incoming, _) => {
                ring(fx, &call.number);
                call.due = Some(now + RING_INTERVAL_MS);
            }
            (CallState::Dialling, answer) => {
                call.state = CallState::Alerting;
                let wait = if answer == CallAnswer::Ring {
                    NO_ANSWER_AFTER_MS
                } else {
                    DECIDE_AFTER_MS
                };
                call.due = Some(now + wait);
                fx.line(&call.clcc());
            }
            (CallState::Alerting, CallAnswer::Answer) => {
                call.state = CallState::Active;
                call.due = None;
                fx.line(&call.clcc());
                let number = call.number.clone();
                fx.events.push(CellEvent::FarEnd {
                    number,
                    answer: CallAnswer::Answer,
                });
            }
            (CallState::Alerting, answer) => {
                let number = call.number.clone();
                self.call = None;
                fx.line(if answer == CallAnswer::Reject {
                    "BUSY"
                } else {
                    "NO ANSWER"
                });
                fx.events.push(CellEvent::FarEnd { number, answer });
            }
            (CallState::Active, _) => call.due = None,
        }
    }

    /// Change what the network offers; URCs go out per `AT+CREG` / `AT+CEREG`.
    pub fn set_registration(&mut self, state: Registration, fx: &mut Effects) {
        if state == self.registration {
            return;
        }
        let was = is_registered(self.registration);
        self.registration = state;
        let now_registered = is_registered(state);
        if was != now_registered {
            fx.coverage = Some(now_registered);
        }
        if !now_registered {
            self.pdp_active = false;
            if self.call.take().is_some() {
                fx.line("NO CARRIER");
                fx.events.push(CellEvent::CallEnded);
            }
        }
        if self.creg_n >= 1 {
            fx.line(&format!("+CREG: {}", creg_stat(state)));
        }
        if self.cereg_n >= 1 {
            fx.line(&format!("+CEREG: {}", creg_stat(state)));
        }
        fx.events.push(CellEvent::Registration { state });
    }

    /// Deliver an SMS to the watch (`+CMT`, text mode).
    pub fn send_sms(
        &mut self,
        from: &str,
        text: &str,
        utc_ms: i64,
        fx: &mut Effects,
    ) -> RigResult<()> {
        check_caller(from)?;
        if text.chars().count() > MAX_SMS
            || !text.chars().all(|c| c.is_ascii() && !c.is_ascii_control())
        {
            return Err(RigError::Config(format!(
                "SMS text must be at most {MAX_SMS} printable ASCII characters"
            )));
        }
        if !is_registered(self.registration) {
            return Err(RigError::Other(
                "cannot deliver an SMS: the watch is not registered".into(),
            ));
        }
        let ts = UtcTime::from_unix_ms(utc_ms)
            .map(|u| {
                format!(
                    "{:02}/{:02}/{:02},{:02}:{:02}:{:02}+00",
                    u.year.rem_euclid(100),
                    u.month,
                    u.day,
                    u.hour,
                    u.minute,
                    u.second
                )
            })
            .unwrap_or_default();
        fx.out
            .push(format!("\r\n+CMT: \"{from}\",,\"{ts}\"\r\n{text}\r\n").into_bytes());
        fx.events.push(CellEvent::SmsToWatch {
            from: from.to_string(),
            text: text.to_string(),
        });
        Ok(())
    }

    /// Ring the watch presenting `caller_id` (which may be anything a caller can
    /// present, spoofed numbers included).
    pub fn call_watch(
        &mut self,
        caller_id: &str,
        now: DeviceMs,
        fx: &mut Effects,
    ) -> RigResult<()> {
        check_caller(caller_id)?;
        if self.call.is_some() {
            return Err(RigError::Other("a call is already in progress".into()));
        }
        if !is_registered(self.registration) {
            return Err(RigError::Other(
                "cannot ring the watch: it is not registered".into(),
            ));
        }
        ring(fx, caller_id);
        self.call = Some(Call {
            incoming: true,
            number: caller_id.to_string(),
            state: CallState::Incoming,
            due: Some(now + RING_INTERVAL_MS),
            answer: CallAnswer::Answer,
        });
        fx.events.push(CellEvent::CallToWatch {
            caller_id: caller_id.to_string(),
        });
        Ok(())
    }

    /// The network side ends the call: the caller gives up or the far end hangs up.
    /// The watch (and with it the terminal side of its modem) lost power: a command
    /// line or an SMS it was typing is dropped, as a real modem forgets it when its
    /// supply goes, and any call ends. Without this, an SMS whose text the watch had
    /// not finished when the rig cut the supply would swallow the next boot's
    /// commands as message text.
    pub fn power_lost(&mut self, fx: &mut Effects) {
        self.input = Input::Command {
            line: Vec::new(),
            excess: 0,
        };
        self.pdp_active = false;
        self.hang_up(fx);
    }

    pub fn hang_up(&mut self, fx: &mut Effects) {
        if self.call.take().is_some() {
            fx.line("NO CARRIER");
            fx.events.push(CellEvent::CallEnded);
        }
    }
}

fn ring(fx: &mut Effects, caller: &str) {
    fx.line("RING");
    fx.line(&format!("+CLIP: \"{caller}\",{}", number_type(caller)));
}

fn push_bounded(buf: &mut Vec<u8>, excess: &mut usize, b: u8) {
    if buf.len() < SMS_BUFFER {
        buf.push(b);
    } else {
        *excess += 1;
    }
}

/// `=<n>` → n.
fn set_value(arg: &str) -> Option<u32> {
    arg.strip_prefix('=')?.trim().parse().ok()
}

/// `"text"` → text (no quote inside).
fn quoted(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('"')).then_some(inner)
}

fn valid_number(n: &str) -> bool {
    let digits = n.strip_prefix('+').unwrap_or(n);
    !digits.is_empty()
        && n.len() <= MAX_NUMBER
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
}

fn check_caller(id: &str) -> RigResult<()> {
    if id.len() > MAX_NUMBER
        || id
            .chars()
            .any(|c| c == '"' || c == ',' || !c.is_ascii() || c.is_ascii_control())
    {
        return Err(RigError::Config(format!(
            "caller id `{id}`: at most {MAX_NUMBER} printable ASCII characters, no `\"` or `,`"
        )));
    }
    Ok(())
}

/// Pieces of received bytes for the transcript: cut after LF, Ctrl-Z, ESC, or a CR
/// not followed by LF, so each command is its own transcript line.
fn transcript_pieces(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 0..bytes.len() {
        let b = bytes[i];
        let cut =
            matches!(b, b'\n' | CTRL_Z | ESC) || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n'));
        if cut {
            out.push(&bytes[start..=i]);
            start = i + 1;
        }
    }
    if start < bytes.len() {
        out.push(&bytes[start..]);
    }
    out
}

struct Inner {
    clock: Clock,
    core: Mutex<ModemCore>,
    /// Signalled when a timer may have changed or on stop.
    timer_cv: Condvar,
    stop: AtomicBool,
    log: EventLog<CellEvent>,
    writer: SerialWriter,
    status: LineStatus,
    transcript: Mutex<File>,
    name_service: Arc<dyn NameService>,
}

impl Inner {
    /// Run `f` on the core and carry out its effects, all under the core lock so
    /// that what the watch sees, the transcript and the log keep one order.
    fn step<R>(
        &self,
        f: impl FnOnce(&mut ModemCore, DeviceMs, &mut Effects) -> R,
    ) -> (R, RigResult<()>) {
        let mut core = lock(&self.core);
        let mut fx = Effects::default();
        let r = f(&mut core, self.clock.now(), &mut fx);
        let io = self.apply(fx);
        drop(core);
        self.timer_cv.notify_all();
        (r, io)
    }

    fn apply(&self, fx: Effects) -> RigResult<()> {
        if let Some(up) = fx.coverage {
            // Before the URC goes out: a watch reacting to it finds DNS already down.
            self.name_service.set_coverage(up);
        }
        let mut result = Ok(());
        if !fx.out.is_empty() {
            let t = self.clock.now();
            let mut text = String::new();
            for chunk in &fx.out {
                text.push_str(&format!("{t} > {}\n", escape_bytes(chunk)));
            }
            self.transcribe(&text);
            let bytes: Vec<u8> = fx.out.concat();
            if let Err(e) = self.writer.write_blocking(&bytes, WRITE_DEADLINE) {
                self.transcribe(&format!("{} # not delivered: {e}\n", self.clock.now()));
                result = Err(e);
            }
        }
        for ev in fx.events {
            self.log.push(ev);
        }
        result
    }

    fn transcribe(&self, text: &str) {
        if let Err(e) = lock(&self.transcript).write_all(text.as_bytes()) {
            self.status.fail(format!("evidence modem.log: {e}"));
        }
    }

    fn received(&self, bytes: &[u8]) {
        let t = self.clock.now();
        let mut text = String::new();
        for piece in transcript_pieces(bytes) {
            text.push_str(&format!("{t} < {}\n", escape_bytes(piece)));
        }
        let ns = self.name_service.clone();
        // Transcript of the input under the core lock too, so it precedes the answer.
        let _ = self.step(|core, now, fx| {
            self.transcribe(&text);
            core.feed(bytes, now, ns.as_ref(), fx);
        });
    }

    fn timer_thread(self: Arc<Self>) {
        let mut core = lock(&self.core);
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let now = self.clock.now();
            match core.next_due() {
                Some(due) if due <= now => {
                    let mut fx = Effects::default();
                    core.tick(now, &mut fx);
                    let _ = self.apply(fx);
                }
                Some(due) => {
                    let wait = self.clock.wall((due - now) as f64 / 1000.0);
                    core = self
                        .timer_cv
                        .wait_timeout(core, wait)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                None => {
                    core = self.timer_cv.wait(core).unwrap_or_else(|p| p.into_inner());
                }
            }
        }
    }
}

/// The rig as the watch's modem and cellular network.
pub struct VirtualModem {
    inner: Arc<Inner>,
    line: SerialLine,
}

impl VirtualModem {
    /// Open the modem line. The network starts registered at home with coverage
    /// (the name service is told so). Transcript in `<evidence_dir>/modem.log`.
    pub fn open(
        path: &str,
        baud: u32,
        clock: Clock,
        name_service: Arc<dyn NameService>,
        evidence_dir: &Path,
    ) -> RigResult<Arc<VirtualModem>> {
        std::fs::create_dir_all(evidence_dir)?;
        let transcript = File::create(evidence_dir.join("modem.log"))?;
        let line = SerialLine::open(path, baud)?;
        let core = ModemCore::new();
        name_service.set_coverage(is_registered(core.registration()));
        let inner = Arc::new(Inner {
            clock,
            core: Mutex::new(core),
            timer_cv: Condvar::new(),
            stop: AtomicBool::new(false),
            log: EventLog::new(clock, LOG_CAPACITY),
            writer: line.writer(),
            status: line.status(),
            transcript: Mutex::new(transcript),
            name_service,
        });
        let rx = inner.clone();
        line.start_reader(move |ev| match ev {
            ReadEvent::Data(bytes) => rx.received(bytes),
            ReadEvent::Closed(e) => {
                rx.transcribe(&format!("{} # line closed: {e}\n", rx.clock.now()))
            }
            ReadEvent::Reopened => {
                rx.transcribe(&format!("{} # line open again\n", rx.clock.now()))
            }
        })?;
        let timer = inner.clone();
        std::thread::Builder::new()
            .name(format!("modem timers {path}"))
            .spawn(move || timer.timer_thread())
            .map_err(|e| RigError::instrument(path, format!("timer thread: {e}")))?;
        Ok(Arc::new(VirtualModem { inner, line }))
    }

    /// The line's health.
    pub fn status(&self) -> LineStatus {
        self.line.status()
    }

    /// Signal quality for `AT+CSQ` while registered (0–31).
    pub fn set_signal(&self, rssi: u8) {
        lock(&self.inner.core).set_signal(rssi);
    }

    /// Operator name for `AT+COPS?`.
    pub fn set_operator(&self, name: &str) {
        lock(&self.inner.core).set_operator(name);
    }

    /// AT command lines received so far (the watch's modem driver is alive if > 0).
    pub fn commands_seen(&self) -> u64 {
        lock(&self.inner.core).commands_seen()
    }

    async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut ModemCore, DeviceMs, &mut Effects) -> RigResult<R> + Send + 'static,
    ) -> RigResult<R> {
        if let Some(e) = self.inner.status.error() {
            return Err(e);
        }
        let inner = self.inner.clone();
        let (r, io) = tokio::task::spawn_blocking(move || inner.step(f))
            .await
            .map_err(|e| RigError::Other(format!("modem task: {e}")))?;
        let r = r?;
        io?;
        Ok(r)
    }
}

impl Drop for VirtualModem {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.inner.timer_cv.notify_all();
    }
}

#[async_trait]
impl Cellular for VirtualModem {
    async fn set_registration(&self, state: Registration) -> RigResult<()> {
        self.run(move |core, _, fx| {
            core.set_registration(state, fx);
            Ok(())
        })
        .await
    }

    async fn send_sms(&self, from: &str, text: &str) -> RigResult<()> {
        let (from, text) = (from.to_string(), text.to_string());
        let clock = self.inner.clock;
        self.run(move |core, now, fx| core.send_sms(&from, &text, clock.utc_ms(now), fx))
            .await
    }

    async fn call_watch(&self, caller_id: &str) -> RigResult<()> {
        let caller = caller_id.to_string();
        self.run(move |core, now, fx| core.call_watch(&caller, now, fx))
            .await
    }

    async fn hang_up(&self) -> RigResult<()> {
        self.run(|core, _, fx| {
            core.hang_up(fx);
            Ok(())
        })
        .await
    }

    async fn power_lost(&self) -> RigResult<()> {
        self.run(|core, _, fx| {
            core.power_lost(fx);
            Ok(())
        })
        .await
    }

    fn set_call_answer(&self, answer: CallAnswer) {
        lock(&self.inner.core).set_call_answer(answer);
    }

    fn log(&self) -> &EventLog<CellEvent> {
        &self.inner.log
    }

    /// The registration state the network currently offers the watch.
    fn registration(&self) -> Registration {
        lock(&self.inner.core).registration()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[derive(Default)]
    struct FakeNs {
        coverage: Mutex<Vec<bool>>,
    }

    impl NameService for FakeNs {
        fn resolve(&self, host: &str) -> Option<Ipv4Addr> {
            (host == "watch.kidcloud.example").then_some(Ipv4Addr::new(127, 83, 17, 1))
        }
        fn set_coverage(&self, up: bool) {
            self.coverage.lock().unwrap().push(up);
        }
    }

    fn run(core: &mut ModemCore, input: &[u8], now: DeviceMs) -> (String, Vec<CellEvent>) {
        let mut fx = Effects::default();
        core.feed(input, now, &FakeNs::default(), &mut fx);
        (String::from_utf8(fx.out.concat()).unwrap(), fx.events)
    }

    fn tick(core: &mut ModemCore, now: DeviceMs) -> (String, Vec<CellEvent>) {
        let mut fx = Effects::default();
        core.tick(now, &mut fx);
        (String::from_utf8(fx.out.concat()).unwrap(), fx.events)
    }

    #[test]
    fn basic_commands_answer_per_the_table() {
        let mut m = ModemCore::new();
        let cases: &[(&str, &str)] = &[
            ("AT\r", "\r\nOK\r\n"),
            ("ATE1\r", "\r\nOK\r\n"),
            ("at+cpin?\r", "\r\n+CPIN: READY\r\n\r\nOK\r\n"),
            ("AT+CGSN\r", "\r\n+CME ERROR: 4\r\n"),
            ("AT+CREG?\r", "\r\n+CREG: 0,1\r\n\r\nOK\r\n"),
            ("AT+CREG=2\r", "\r\nOK\r\n"),
            ("AT+CREG?\r", "\r\n+CREG: 2,1\r\n\r\nOK\r\n"),
            ("AT+CEREG?\r", "\r\n+CEREG: 0,1\r\n\r\nOK\r\n"),
            ("AT+CSQ\r", "\r\n+CSQ: 24,99\r\n\r\nOK\r\n"),
            ("AT+COPS?\r", "\r\n+COPS: 0,0,\"REDRIG\",7\r\n\r\nOK\r\n"),
            ("AT+CNMI=2,2,0,0,0\r", "\r\nOK\r\n"),
            ("AT+CGDCONT=1,\"IP\",\"internet\"\r", "\r\nOK\r\n"),
            ("AT+CGACT=1,1\r", "\r\nOK\r\n"),
            ("AT+CLCC\r", "\r\nOK\r\n"),
            ("AT+XYZZY\r", "\r\nERROR\r\n"),
            (
                "ATD+4930123;\n",
                "\r\nOK\r\n\r\n+CLCC: 1,0,2,0,0,\"+4930123\",145\r\n",
            ),
        ];
        for (cmd, want) in cases {
            assert_eq!(run(&mut m, cmd.as_bytes(), 0).0, *want, "{cmd:?}");
        }
        assert_eq!(m.commands_seen(), cases.len() as u64);
    }

    #[test]
    fn noise_is_ignored_and_long_lines_are_refused() {
        let mut m = ModemCore::new();
        let (out, ev) = run(&mut m, b"\xff\x00garbage\r\n\r\n", 0);
        assert_eq!(out, "");
        assert!(ev.is_empty());
        let (out, _) = run(&mut m, b"\x00\xfeAT\r", 0);
        assert_eq!(out, "\r\nOK\r\n");
        let mut long = b"AT+".to_vec();
        long.extend(std::iter::repeat_n(b'X', 100_000));
        long.push(b'\r');
        let (out, ev) = run(&mut m, &long, 0);
        assert_eq!(out, "\r\nERROR\r\n");
        match &ev[..] {
            [CellEvent::AtCommand { line }] => {
                assert!(line.len() < MAX_COMMAND + 40);
                assert!(
                    line.ends_with(&format!("(+{} bytes)", 100_003 - MAX_COMMAND)),
                    "{line}"
                );
            }
            other => panic!("{other:?}"),
        }
        // The parser is back in sync afterwards.
        assert_eq!(run(&mut m, b"AT\r", 0).0, "\r\nOK\r\n");
    }

    #[test]
    fn sms_from_watch_with_ctrl_z_and_cancel_with_esc() {
        let mut m = ModemCore::new();
        let (out, _) = run(&mut m, b"AT+CMGS=\"+491701234567\"\r", 0);
        assert_eq!(out, "\r\n> ");
        let (out, ev) = run(&mut m, b"SOS at home\x1a", 0);
        assert_eq!(out, "\r\n+CMGS: 1\r\n\r\nOK\r\n");
        assert_eq!(
            ev,
            [CellEvent::SmsFromWatch {
                to: "+491701234567".into(),
                text: "SOS at home".into()
            }]
        );
        run(&mut m, b"AT+CMGS=\"+491701234567\"\r", 0);
        let (out, ev) = run(&mut m, b"never mind\x1b", 0);
        assert_eq!(out, "\r\nOK\r\n");
        assert!(ev.is_empty());
        run(&mut m, b"AT+CMGS=\"+49\"\r", 0);
        let (out, ev) = run(
            &mut m,
            &[b'x'; 161]
                .iter()
                .copied()
                .chain([CTRL_Z])
                .collect::<Vec<_>>(),
            0,
        );
        assert_eq!(out, "\r\n+CMS ERROR: 305\r\n");
        assert!(ev.is_empty());
        assert_eq!(run(&mut m, b"AT+CMGS=+49\r", 0).0, "\r\nERROR\r\n");
    }

    #[test]
    fn incoming_call_rings_until_answered() {
        let mut m = ModemCore::new();
        let mut fx = Effects::default();
        m.call_watch("+4930999", 1000, &mut fx).unwrap();
        let ring = "\r\nRING\r\n\r\n+CLIP: \"+4930999\",145\r\n";
        assert_eq!(String::from_utf8(fx.out.concat()).unwrap(), ring);
        assert!(m.call_watch("+1", 1000, &mut Effects::default()).is_err());
        assert_eq!(tick(&mut m, 3999).0, "");
        assert_eq!(tick(&mut m, 4000).0, ring);
        assert_eq!(
            run(&mut m, b"AT+CLCC\r", 4100).0,
            "\r\n+CLCC: 1,1,4,0,0,\"+4930999\",145\r\n\r\nOK\r\n"
        );
        let (out, ev) = run(&mut m, b"ATA\r", 4200);
        assert_eq!(out, "\r\nOK\r\n");
        assert_eq!(
            ev[1],
            CellEvent::WatchAnswered {
                caller_id: "+4930999".into()
            }
        );
        assert_eq!(m.next_due(), None);
        let mut fx = Effects::default();
        m.hang_up(&mut fx);
        assert_eq!(fx.out.concat(), b"\r\nNO CARRIER\r\n");
        assert_eq!(fx.events, [CellEvent::CallEnded]);
        assert_eq!(run(&mut m, b"ATA\r", 5000).0, "\r\nNO CARRIER\r\n");
    }

    #[test]
    fn outgoing_call_progress_per_answer_mode() {
        for (mode, last) in [
            (CallAnswer::Answer, "\r\n+CLCC: 1,0,0,0,0,\"112\",129\r\n"),
            (CallAnswer::Reject, "\r\nBUSY\r\n"),
            (CallAnswer::Ring, "\r\nNO ANSWER\r\n"),
        ] {
            let mut m = ModemCore::new();
            m.set_call_answer(mode);
            let (_, ev) = run(&mut m, b"ATD112;\r", 0);
            assert_eq!(
                ev[1],
                CellEvent::WatchDialled {
                    number: "112".into()
                }
            );
            assert_eq!(
                tick(&mut m, ALERT_AFTER_MS).0,
                "\r\n+CLCC: 1,0,3,0,0,\"112\",129\r\n"
            );
            let decide = if mode == CallAnswer::Ring {
                NO_ANSWER_AFTER_MS
            } else {
                DECIDE_AFTER_MS
            };
            assert_eq!(tick(&mut m, ALERT_AFTER_MS + decide - 1).0, "");
            let (out, ev) = tick(&mut m, ALERT_AFTER_MS + decide);
            assert_eq!(out, last);
            assert_eq!(
                ev,
                [CellEvent::FarEnd {
                    number: "112".into(),
                    answer: mode
                }]
            );
            assert_eq!(m.in_call(), mode == CallAnswer::Answer);
        }
    }

    #[test]
    fn coverage_loss_sends_urcs_drops_calls_and_fails_dns() {
        let mut m = ModemCore::new();
        run(&mut m, b"AT+CREG=1\rAT+CEREG=1\rATD+4930;\r", 0);
        let mut fx = Effects::default();
        m.set_registration(Registration::Searching, &mut fx);
        assert_eq!(fx.coverage, Some(false));
        assert_eq!(
            String::from_utf8(fx.out.concat()).unwrap(),
            "\r\nNO CARRIER\r\n\r\n+CREG: 2\r\n\r\n+CEREG: 2\r\n"
        );
        assert_eq!(
            run(&mut m, b"AT+CSQ\r", 0).0,
            "\r\n+CSQ: 99,99\r\n\r\nOK\r\n"
        );
        assert_eq!(
            run(&mut m, b"AT+COPS?\r", 0).0,
            "\r\n+COPS: 0\r\n\r\nOK\r\n"
        );
        assert_eq!(
            run(&mut m, b"AT+CGACT=1,1\r", 0).0,
            "\r\n+CME ERROR: 30\r\n"
        );
        let (out, ev) = run(&mut m, b"AT+QIDNSGIP=1,\"watch.kidcloud.example\"\r", 0);
        assert_eq!(out, "\r\nOK\r\n\r\n+QIURC: \"dnsgip\",565\r\n");
        assert_eq!(
            ev[1],
            CellEvent::DnsQuery {
                host: "watch.kidcloud.example".into(),
                answer: None
            }
        );
        let mut fx = Effects::default();
        m.set_registration(Registration::Roaming, &mut fx);
        assert_eq!(fx.coverage, Some(true));
        let (out, _) = run(&mut m, b"AT+QIDNSGIP=1,\"watch.kidcloud.example\"\r", 0);
        assert_eq!(
            out,
            "\r\nOK\r\n\r\n+QIURC: \"dnsgip\",0,1,600\r\n\r\n+QIURC: \"dnsgip\",\"127.83.17.1\"\r\n"
        );
    }

    #[test]
    fn network_input_is_validated() {
        let mut m = ModemCore::new();
        let mut fx = Effects::default();
        assert!(m.send_sms("+49\"", "x", 0, &mut fx).is_err());
        assert!(m.send_sms("+49", "line\r\nbreak", 0, &mut fx).is_err());
        assert!(m.send_sms("+49", &"y".repeat(161), 0, &mut fx).is_err());
        assert!(fx.out.is_empty());
        m.send_sms("+49170", "hi", 1_401_092_051_987, &mut fx)
            .unwrap();
        assert_eq!(
            fx.out.concat(),
            b"\r\n+CMT: \"+49170\",,\"14/05/26,08:14:11+00\"\r\nhi\r\n"
        );
    }

    #[test]
    fn a_power_loss_drops_an_unfinished_sms() {
        let mut m = ModemCore::new();
        let (out, _) = run(&mut m, b"AT+CMGS=\"+4915100000001\"\r", 0);
        assert!(out.ends_with("> "), "{out:?}");
        // The supply goes while the text is being typed; after the next boot the
        // watch's first command is a command again, not message text.
        let (_, events) = run(&mut m, b"monitor o", 0);
        assert!(events.is_empty());
        let mut fx = Effects::default();
        m.power_lost(&mut fx);
        let (out, events) = run(&mut m, b"AT\r", 0);
        assert_eq!(out, "\r\nOK\r\n");
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, CellEvent::SmsFromWatch { .. })),
            "{events:?}"
        );
        // Without the reset the same bytes would have gone into the message.
        let mut m = ModemCore::new();
        run(&mut m, b"AT+CMGS=\"+4915100000001\"\r", 0);
        let (out, _) = run(&mut m, b"AT\r", 0);
        assert!(!out.contains("OK"), "{out:?}");
    }

    #[test]
    fn transcript_pieces_keep_every_byte() {
        let input = b"AT\r\nAT+CMGS=\"1\"\rhello\x1a\xffAT\r";
        let pieces = transcript_pieces(input);
        assert_eq!(pieces.concat(), input.to_vec());
        assert_eq!(pieces[0], b"AT\r\n");
        assert_eq!(pieces[1], b"AT+CMGS=\"1\"\r");
        assert_eq!(pieces[2], b"hello\x1a");
    }
}

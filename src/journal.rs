//! The rig's event journal, `events.jsonl`: one JSON line per thing the rig did to
//! the device or saw it do, stamped with device time, whatever the instruments are.
//!
//! The drivers keep their own complete transcripts (`gpio.log`, `modem.log`,
//! `gnss.nmea`, `console-*.log`, `flows.jsonl`); their formats depend on the
//! instrument (a virtual GPIO socket, a Pi's lines, a modem or a callbox). The journal
//! is the instrument-independent index the HTML report's timeline and route plots are
//! drawn from:
//!
//! | `kind` | fields | from |
//! |---|---|---|
//! | `power` | `on`, `ok` (false: the instrument failed) | the power driver, wrapped |
//! | `press` | `button`, `hold_s`, `ok` | the buttons driver, wrapped |
//! | `indicator` | `line` + `level`, or `screen` | the indicators' event log |
//! | `cell` | the cell event (`event`: `sms-to-watch`, `watch-dialled`, `registration`…) | the cellular side's event log; raw AT lines are left to `modem.log` |
//! | `gnss` | `utc_ms`, `fix` (`lat`, `lon`, `alt_m`, or null) | what the GNSS simulator fed: at most one epoch per device second, plus every change between fix and no fix (`gnss.nmea` has every sentence) |
//! | `backend-position` | `pos_t` (the position's own device time), `received_t`, `lat`, `lon`, `valid` | positions the backend showed the parent, each once (up to 100 000 a run; then one `backend-positions-capped` line and no more) |
//!
//! Every line is `{"t": <device ms>, "kind": …, …}` and is written whole with one
//! `write` call, so an interrupted run leaves at most a missing last line. The writes
//! are small appends made where the event happens (a few a device second; the
//! backend's positions of one poll in one write); [`Journal::close`] ends the journal
//! before the run directory is sealed. Values the
//! device chose (screen text, SMS text, numbers) are cut at [`MAX_TEXT`] characters;
//! the full text stays in the driver's transcript.

use crate::clock::{Clock, DeviceMs};
use crate::drivers::{
    Button, Buttons, CellEvent, EventLog, FedEpoch, IndicatorEvent, Position, Power,
};
use crate::error::RigResult;
use async_trait::async_trait;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// File name in the run directory.
pub const EVENTS_FILE: &str = "events.jsonl";
/// Longest device-chosen text kept in a journal line.
pub const MAX_TEXT: usize = 200;
/// Backend positions remembered for de-duplication; beyond this, positions are
/// journalled again when the parent's view is read again (bounded memory).
const MAX_REMEMBERED: usize = 100_000;

/// A backend position as remembered for de-duplication: time, time received, the
/// bits of latitude and longitude, validity.
type PositionKey = (i64, i64, u64, u64, bool);

/// The journal of one run.
pub struct Journal {
    clock: Clock,
    file: Mutex<Option<std::fs::File>>,
    positions: Mutex<HashSet<PositionKey>>,
    gnss: Mutex<GnssThinning>,
}

#[derive(Default)]
struct GnssThinning {
    last_second: Option<u64>,
    last_had_fix: Option<bool>,
}

impl Journal {
    /// Open (append to) `events.jsonl` in `dir`. If the file cannot be opened the
    /// journal records nothing; the drivers' own transcripts are unaffected.
    pub fn open(dir: &Path, clock: Clock) -> Arc<Journal> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(EVENTS_FILE))
            .ok();
        Arc::new(Journal {
            clock,
            file: Mutex::new(file),
            positions: Mutex::new(HashSet::new()),
            gnss: Mutex::new(GnssThinning::default()),
        })
    }

    /// Device time now.
    pub fn now(&self) -> DeviceMs {
        self.clock.now()
    }

    /// Stop writing: later events are dropped (the run directory is being sealed).
    pub fn close(&self) {
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Append `{"t": t, "kind": kind, ...fields}`.
    pub fn record(&self, t: DeviceMs, kind: &str, fields: Value) {
        let mut text = Self::line(t, kind, fields);
        text.push('\n');
        self.write(text.as_bytes());
    }

    fn write(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Some(f) = self.file.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            let _ = f.write_all(bytes);
        }
    }

    fn line(t: DeviceMs, kind: &str, fields: Value) -> String {
        let mut line = json!({ "t": t, "kind": kind });
        if let (Some(obj), Value::Object(extra)) = (line.as_object_mut(), fields) {
            for (k, v) in extra {
                if k != "t" && k != "kind" {
                    obj.insert(k, v);
                }
            }
        }
        line.to_string()
    }

    /// Journal every indicator change.
    pub fn follow_indicators(self: &Arc<Self>, log: &EventLog<IndicatorEvent>) {
        let j = self.clone();
        log.set_sink(move |r| {
            let fields = match &r.value {
                IndicatorEvent::Edge { line, level } => {
                    json!({ "line": cut(line), "level": level })
                }
                IndicatorEvent::Screen { text } => json!({ "screen": cut(text) }),
            };
            j.record(r.t, "indicator", fields);
        });
    }

    /// Journal every cell event except raw AT lines.
    pub fn follow_cellular(self: &Arc<Self>, log: &EventLog<CellEvent>) {
        let j = self.clone();
        log.set_sink(move |r| {
            if let Some(fields) = cell_fields(&r.value) {
                j.record(r.t, "cell", fields);
            }
        });
    }

    /// Journal what the GNSS simulator feeds, thinned as the module documents.
    pub fn follow_gnss(self: &Arc<Self>, log: &EventLog<FedEpoch>) {
        let j = self.clone();
        log.set_sink(move |r| j.gnss_epoch(r.t, &r.value));
    }

    fn gnss_epoch(&self, t: DeviceMs, e: &FedEpoch) {
        let second = t / 1000;
        let has_fix = e.fix.is_some();
        {
            let mut g = self.gnss.lock().unwrap_or_else(|p| p.into_inner());
            let new_second = g.last_second != Some(second);
            let changed = g.last_had_fix != Some(has_fix);
            if !new_second && !changed {
                return;
            }
            g.last_second = Some(second);
            g.last_had_fix = Some(has_fix);
        }
        let fix = e
            .fix
            .map(|p: Position| json!({ "lat": p.lat, "lon": p.lon, "alt_m": p.alt_m }));
        self.record(t, "gnss", json!({ "utc_ms": e.utc_ms, "fix": fix }));
    }

    /// Journal positions the backend showed the parent (records of its location
    /// history, as JSON objects with `t`, `received_t`, `lat`, `lon`, `valid`), each
    /// once. Records without a numeric time are left out.
    pub fn backend_positions<'a>(&self, records: impl IntoIterator<Item = &'a Value>) {
        let now = self.clock.now();
        let mut batch = String::new();
        for r in records {
            let Some(t) = r["t"].as_i64() else { continue };
            let received = r["received_t"].as_i64().unwrap_or(-1);
            let lat = r["lat"].as_f64();
            let lon = r["lon"].as_f64();
            let valid = r["valid"].as_bool() == Some(true);
            let key = (
                t,
                received,
                lat.unwrap_or(f64::NAN).to_bits(),
                lon.unwrap_or(f64::NAN).to_bits(),
                valid,
            );
            {
                let mut seen = self.positions.lock().unwrap_or_else(|p| p.into_inner());
                if seen.len() >= MAX_REMEMBERED {
                    // Past the cap nothing more is journalled (said once); results.json
                    // and the backend keep the history.
                    if seen.len() == MAX_REMEMBERED {
                        seen.insert((i64::MIN, i64::MIN, 0, 0, false));
                        batch.push_str(&Self::line(
                            now,
                            "backend-positions-capped",
                            json!({ "remembered": MAX_REMEMBERED }),
                        ));
                        batch.push('\n');
                    }
                    break;
                }
                if !seen.insert(key) {
                    continue;
                }
            }
            batch.push_str(&Self::line(
                now,
                "backend-position",
                json!({
                    "pos_t": t,
                    "received_t": (received >= 0).then_some(received),
                    "lat": lat,
                    "lon": lon,
                    "valid": valid,
                }),
            ));
            batch.push('\n');
        }
        self.write(batch.as_bytes());
    }
}

/// At most [`MAX_TEXT`] characters of a device-chosen text.
fn cut(s: &str) -> String {
    if s.chars().count() <= MAX_TEXT {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX_TEXT).collect();
        out.push('…');
        out
    }
}

fn cell_fields(e: &CellEvent) -> Option<Value> {
    Some(match e {
        CellEvent::SmsToWatch { from, text } => {
            json!({ "event": "sms-to-watch", "from": cut(from), "text": cut(text) })
        }
        CellEvent::SmsFromWatch { to, text } => {
            json!({ "event": "sms-from-watch", "to": cut(to), "text": cut(text) })
        }
        CellEvent::CallToWatch { caller_id } => {
            json!({ "event": "call-to-watch", "number": cut(caller_id) })
        }
        CellEvent::WatchAnswered { caller_id } => {
            json!({ "event": "watch-answered", "number": cut(caller_id) })
        }
        CellEvent::WatchHungUp => json!({ "event": "watch-hung-up" }),
        CellEvent::WatchDialled { number } => {
            json!({ "event": "watch-dialled", "number": cut(number) })
        }
        CellEvent::FarEnd { number, answer } => {
            json!({ "event": "far-end", "number": cut(number), "answer": answer })
        }
        CellEvent::CallEnded => json!({ "event": "call-ended" }),
        CellEvent::Registration { state } => json!({ "event": "registration", "state": state }),
        CellEvent::DataAttached { apn } => {
            json!({ "event": "data-attached", "apn": apn.as_deref().map(cut) })
        }
        CellEvent::DnsQuery { host, answer } => {
            json!({ "event": "dns", "host": cut(host), "answer": answer })
        }
        CellEvent::AtCommand { .. } => return None,
    })
}

/// A power driver that journals every switch.
pub struct JournalledPower {
    inner: Arc<dyn Power>,
    journal: Arc<Journal>,
}

impl JournalledPower {
    pub fn wrap(inner: Arc<dyn Power>, journal: Arc<Journal>) -> Arc<dyn Power> {
        Arc::new(JournalledPower { inner, journal })
    }
}

#[async_trait]
impl Power for JournalledPower {
    async fn set(&self, on: bool) -> RigResult<()> {
        let t = self.journal.now();
        let r = self.inner.set(on).await;
        self.journal
            .record(t, "power", json!({ "on": on, "ok": r.is_ok() }));
        r
    }
}

/// A buttons driver that journals every press.
pub struct JournalledButtons {
    inner: Arc<dyn Buttons>,
    journal: Arc<Journal>,
}

impl JournalledButtons {
    pub fn wrap(inner: Arc<dyn Buttons>, journal: Arc<Journal>) -> Arc<dyn Buttons> {
        Arc::new(JournalledButtons { inner, journal })
    }
}

#[async_trait]
impl Buttons for JournalledButtons {
    async fn press(&self, button: Button, hold_secs: f64) -> RigResult<()> {
        let t = self.journal.now();
        let r = self.inner.press(button, hold_secs).await;
        self.journal.record(
            t,
            "press",
            json!({ "button": button.name(), "hold_s": hold_secs, "ok": r.is_ok() }),
        );
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::{CallAnswer, Registration};

    fn lines(dir: &Path) -> Vec<Value> {
        std::fs::read_to_string(dir.join(EVENTS_FILE))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn cell_events_are_journalled_without_at_lines_and_with_cut_text() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::start(1.0);
        let j = Journal::open(dir.path(), clock);
        let log: EventLog<CellEvent> = EventLog::new(clock, 10);
        j.follow_cellular(&log);
        log.push(CellEvent::SmsToWatch {
            from: "+4917".into(),
            text: "x".repeat(5000),
        });
        log.push(CellEvent::AtCommand {
            line: "AT+CSQ".into(),
        });
        log.push(CellEvent::FarEnd {
            number: "+4930".into(),
            answer: CallAnswer::Answer,
        });
        log.push(CellEvent::Registration {
            state: Registration::Denied,
        });
        let l = lines(dir.path());
        assert_eq!(l.len(), 3, "{l:?}");
        assert_eq!(l[0]["kind"], "cell");
        assert_eq!(l[0]["event"], "sms-to-watch");
        assert_eq!(l[0]["text"].as_str().unwrap().chars().count(), MAX_TEXT + 1);
        assert_eq!(l[1]["event"], "far-end");
        assert_eq!(l[1]["answer"], "answer");
        assert_eq!(l[2]["state"], "denied");
    }

    #[test]
    fn gnss_is_thinned_to_one_epoch_a_second_plus_fix_changes() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), Clock::start(1.0));
        let fix = Some(Position {
            lat: 52.5,
            lon: 13.4,
            alt_m: 30.0,
        });
        // 10 Hz for 2 s with a fix, except epochs 1200..1400 ms without one.
        for i in 0..20u64 {
            let t = 1000 + i * 100;
            let has = !(1200..1400).contains(&t);
            j.gnss_epoch(
                t,
                &FedEpoch {
                    utc_ms: t as i64,
                    fix: if has { fix } else { None },
                    position: fix,
                },
            );
        }
        let t: Vec<u64> = lines(dir.path())
            .iter()
            .map(|l| l["t"].as_u64().unwrap())
            .collect();
        assert_eq!(t, vec![1000, 1200, 1400, 2000]);
    }

    #[test]
    fn a_closed_journal_writes_nothing_more() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), Clock::start(1.0));
        j.record(1, "power", json!({"on": true}));
        j.close();
        j.record(2, "power", json!({"on": false}));
        assert_eq!(lines(dir.path()).len(), 1);
    }

    #[test]
    fn backend_positions_past_the_cap_are_not_journalled_again_and_again() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), Clock::start(1.0));
        let many: Vec<Value> = (0..MAX_REMEMBERED as i64 + 10)
            .map(|t| json!({"t": t, "lat": 1.0, "lon": 2.0, "valid": true}))
            .collect();
        j.backend_positions(many.iter());
        j.backend_positions(many.iter());
        let l = lines(dir.path());
        assert_eq!(l.len(), MAX_REMEMBERED + 1);
        assert_eq!(l[MAX_REMEMBERED]["kind"], "backend-positions-capped");
    }

    #[test]
    fn backend_positions_are_journalled_once() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), Clock::start(1.0));
        let a = json!({"t": 5, "received_t": 7, "lat": 1.0, "lon": 2.0, "valid": true});
        let b = json!({"t": 6, "lat": "bogus", "valid": false});
        let c = json!({"lat": 3.0});
        j.backend_positions([&a, &b, &c]);
        j.backend_positions([&a, &b]);
        let l = lines(dir.path());
        assert_eq!(l.len(), 2);
        assert_eq!(l[0]["pos_t"], 5);
        assert_eq!(l[0]["received_t"], 7);
        assert_eq!(l[1]["lat"], Value::Null);
        assert_eq!(l[1]["valid"], false);
    }
}

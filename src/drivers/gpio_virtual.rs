//! Power, buttons and indicators over the virtual lab's GPIO socket
//! (`docs/virtual-hardware.md` §6).
//!
//! Two connections to the Unix socket: one for requests (`set`/`get`, answered by
//! `id`), one subscribed for events. Events become [`IndicatorEvent`]s stamped with
//! the watch's own device time `t`. Every line sent and received is appended to the
//! evidence file `gpio.log` (through the evidence writer thread).
//!
//! The socket is the device's side: lines are bounded ([`MAX_LINE`]), unparseable
//! lines are logged and skipped, and a lost connection is a rig failure
//! ([`RigError::Instrument`]): requests fail at once, and [`VirtualGpio::check`]
//! reports a lost event connection (steps waiting on indicators cannot see that
//! themselves). A lost connection is connected again: the event connection every
//! [`RECONNECT_PERIOD`] until the socket answers (a restarted simulator in the same
//! state directory), the request connection at the next request. Every loss is
//! counted ([`VirtualGpio::losses`]); events the watch sent while no connection was
//! subscribed are not seen.

use crate::clock::{Clock, DeviceMs};
use crate::drivers::{Button, Buttons, EventLog, IndicatorEvent, Indicators, Power};
use crate::error::{RigError, RigResult};
use crate::gateway::EvidenceWriter;
use async_trait::async_trait;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

/// Longest line accepted from the socket.
pub const MAX_LINE: usize = 64 * 1024;
/// Longest screen text kept in an event.
const MAX_SCREEN_TEXT: usize = 4096;
/// Wall time the watch has to answer a request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Indicator events kept in memory.
const LOG_CAPACITY: usize = 10_000;
const INSTRUMENT: &str = "gpio";
/// How often a lost event connection is tried again (wall time).
pub const RECONNECT_PERIOD: Duration = Duration::from_millis(200);

/// One line read with a bound.
pub(crate) enum Line {
    Text(Vec<u8>),
    /// A line longer than the bound (its bytes were consumed and dropped).
    TooLong(usize),
    Eof,
}

/// Read up to LF, at most `max` bytes kept; longer lines are consumed and reported.
pub(crate) async fn read_line_bounded<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
) -> std::io::Result<Line> {
    let mut out = Vec::new();
    let mut dropped = 0usize;
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(if out.is_empty() && dropped == 0 {
                Line::Eof
            } else {
                Line::Text(out)
            });
        }
        let (chunk, found) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if dropped == 0 && out.len() + chunk.len() <= max {
            out.extend_from_slice(chunk);
        } else {
            dropped += out.len() + chunk.len();
            out.clear();
        }
        let used = found.unwrap_or(buf.len());
        r.consume(used);
        if found.is_some() {
            if dropped > 0 {
                return Ok(Line::TooLong(dropped));
            }
            if out.last() == Some(&b'\r') {
                out.pop();
            }
            return Ok(Line::Text(out));
        }
    }
}

struct ReqConn {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

struct Inner {
    clock: Clock,
    path: PathBuf,
    req: tokio::sync::Mutex<Option<ReqConn>>,
    next_id: AtomicU64,
    log: EventLog<IndicatorEvent>,
    /// Why the event connection is lost, while it is.
    broken: Mutex<Option<String>>,
    /// Connections lost since the driver was opened.
    losses: AtomicU64,
    /// Closed by the rig: nothing is connected again.
    closed: std::sync::atomic::AtomicBool,
    evidence: EvidenceWriter,
}

/// The virtual lab's GPIO lines. See the module documentation.
pub struct VirtualGpio {
    inner: Arc<Inner>,
    events: tokio::task::AbortHandle,
}

impl Inner {
    async fn evidence(&self, what: &str, line: &[u8]) {
        let mut s = format!("t={} {what} ", self.clock.now()).into_bytes();
        s.extend_from_slice(line);
        s.push(b'\n');
        let _ = self.evidence.append("gpio.log", s).await;
    }

    /// Send a request and wait for its answer.
    async fn request(&self, mut req: Value) -> RigResult<Value> {
        if let Some(b) = self.broken.lock().unwrap().clone() {
            return Err(RigError::instrument(INSTRUMENT, b));
        }
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        req["id"] = json!(id);
        let mut text = req.to_string().into_bytes();
        let mut guard = self.req.lock().await;
        if guard.is_none() {
            if self.closed.load(Ordering::SeqCst) {
                return Err(RigError::instrument(INSTRUMENT, "closed by the rig"));
            }
            let (reader, writer) = connect(&self.path).await?;
            self.evidence("-- connected again", b"").await;
            *guard = Some(ReqConn { reader, writer });
        }
        let Some(conn) = guard.as_mut() else {
            return Err(RigError::instrument(INSTRUMENT, "no connection"));
        };
        self.evidence("->", &text).await;
        text.push(b'\n');
        let exchange = async {
            conn.writer
                .write_all(&text)
                .await
                .map_err(|e| format!("GPIO socket write: {e}"))?;
            loop {
                match read_line_bounded(&mut conn.reader, MAX_LINE).await {
                    Ok(Line::Text(l)) => {
                        self.evidence("<-", &l).await;
                        let Ok(v) = serde_json::from_slice::<Value>(&l) else {
                            continue;
                        };
                        if v.get("id").and_then(Value::as_u64) == Some(id) {
                            return Ok(v);
                        }
                        // An answer to an earlier, timed-out request, or noise.
                    }
                    Ok(Line::TooLong(n)) => {
                        self.evidence("<- (dropped over-long line)", n.to_string().as_bytes())
                            .await
                    }
                    Ok(Line::Eof) => return Err("the watch closed the GPIO socket".to_string()),
                    Err(e) => return Err(format!("GPIO socket read: {e}")),
                }
            }
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                // The next request connects again. A socket that is gone is
                // counted once, by the event connection, which sees it too.
                *guard = None;
                Err(RigError::instrument(INSTRUMENT, e))
            }
            Err(_) => Err(RigError::instrument(
                INSTRUMENT,
                format!("no answer to request {id} within {REQUEST_TIMEOUT:?}"),
            )),
        }
    }

    async fn set(&self, line: &str, level: bool) -> RigResult<DeviceMs> {
        let v = self
            .request(json!({"op": "set", "line": line, "level": level as u8}))
            .await?;
        if v.get("ok").and_then(Value::as_bool) != Some(true) {
            let err = v
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no reason given");
            return Err(RigError::instrument(
                INSTRUMENT,
                format!("set {line}={}: refused: {err}", level as u8),
            ));
        }
        Ok(v.get("t")
            .and_then(Value::as_u64)
            .unwrap_or_else(|| self.clock.now()))
    }

    async fn press(&self, button: Button, hold_secs: f64) -> RigResult<()> {
        let line = format!("btn_{}", button.name());
        self.set(&line, true).await?;
        self.clock.sleep(hold_secs).await;
        self.set(&line, false).await?;
        Ok(())
    }

    /// Read events from the subscribed connection; when it ends, subscribe again
    /// every [`RECONNECT_PERIOD`] until the socket answers (or the task is aborted).
    async fn events(self: Arc<Self>, reader: BufReader<OwnedReadHalf>, writer: OwnedWriteHalf) {
        // The write half is kept open with the read half: the watch ends a
        // subscription whose writer is closed.
        let mut conn = (reader, writer);
        loop {
            let reason = loop {
                match read_line_bounded(&mut conn.0, MAX_LINE).await {
                    Ok(Line::Text(l)) => {
                        self.evidence("<=", &l).await;
                        if let Some((t, ev)) = parse_event(&l) {
                            let t = t.unwrap_or_else(|| self.clock.now());
                            self.log.push_at(t, ev);
                        }
                    }
                    Ok(Line::TooLong(n)) => {
                        self.evidence("<= (dropped over-long line)", n.to_string().as_bytes())
                            .await
                    }
                    Ok(Line::Eof) => {
                        break "the watch closed the GPIO event connection".to_string()
                    }
                    Err(e) => break format!("GPIO event connection: {e}"),
                }
            };
            self.losses.fetch_add(1, Ordering::SeqCst);
            *self.broken.lock().unwrap() = Some(reason.clone());
            self.evidence("!!", reason.as_bytes()).await;
            // The request connection went with it.
            *self.req.lock().await = None;
            loop {
                tokio::time::sleep(RECONNECT_PERIOD).await;
                if self.closed.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(c) = subscribe(&self).await {
                    conn = c;
                    break;
                }
            }
            self.evidence("-- subscribed again", b"").await;
            *self.broken.lock().unwrap() = None;
        }
    }
}

/// Connect to the socket, subscribe to events and wait for the confirmation.
async fn subscribe(inner: &Inner) -> RigResult<(BufReader<OwnedReadHalf>, OwnedWriteHalf)> {
    let (mut sreader, mut swriter) = connect(&inner.path).await?;
    let sub = json!({"id": 0, "op": "subscribe"}).to_string();
    inner.evidence("=>", sub.as_bytes()).await;
    let confirm = async {
        swriter
            .write_all(format!("{sub}\n").as_bytes())
            .await
            .map_err(|e| format!("subscribe: {e}"))?;
        loop {
            match read_line_bounded(&mut sreader, MAX_LINE).await {
                Ok(Line::Text(l)) => {
                    inner.evidence("<=", &l).await;
                    let Ok(v) = serde_json::from_slice::<Value>(&l) else {
                        continue;
                    };
                    if v.get("id").and_then(Value::as_u64) == Some(0) {
                        return if v.get("ok").and_then(Value::as_bool) == Some(true) {
                            Ok(())
                        } else {
                            Err(format!("subscribe refused: {v}"))
                        };
                    }
                }
                Ok(Line::TooLong(_)) => continue,
                Ok(Line::Eof) => {
                    return Err("the watch closed the GPIO socket while subscribing".to_string())
                }
                Err(e) => return Err(format!("subscribe: {e}")),
            }
        }
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, confirm).await {
        Ok(Ok(())) => Ok((sreader, swriter)),
        Ok(Err(e)) => Err(RigError::instrument(INSTRUMENT, e)),
        Err(_) => Err(RigError::instrument(
            INSTRUMENT,
            format!("no answer to subscribe within {REQUEST_TIMEOUT:?}"),
        )),
    }
}

/// An event line: its device time and the indicator event, if it is one.
pub(crate) fn parse_event(line: &[u8]) -> Option<(Option<DeviceMs>, IndicatorEvent)> {
    let v: Value = serde_json::from_slice(line).ok()?;
    let t = v.get("t").and_then(Value::as_u64);
    match v.get("event")?.as_str()? {
        "edge" => {
            let line = v.get("line")?.as_str()?;
            let level = match v.get("level")? {
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_u64()? != 0,
                _ => return None,
            };
            Some((
                t,
                IndicatorEvent::Edge {
                    line: line.chars().take(64).collect(),
                    level,
                },
            ))
        }
        "screen" => {
            let text = v.get("text")?.as_str()?;
            Some((
                t,
                IndicatorEvent::Screen {
                    text: text.chars().take(MAX_SCREEN_TEXT).collect(),
                },
            ))
        }
        _ => None,
    }
}

async fn connect(path: &Path) -> RigResult<(BufReader<OwnedReadHalf>, OwnedWriteHalf)> {
    let s = UnixStream::connect(path).await.map_err(|e| {
        RigError::instrument(
            INSTRUMENT,
            format!("cannot connect to {}: {e}", path.display()),
        )
    })?;
    let (r, w) = s.into_split();
    Ok((BufReader::new(r), w))
}

impl VirtualGpio {
    /// Connect to the GPIO socket at `path` and subscribe to events; returns once
    /// the subscription is confirmed (no event after that is missed).
    pub async fn open(
        path: &Path,
        clock: Clock,
        evidence_dir: &Path,
    ) -> RigResult<Arc<VirtualGpio>> {
        let evidence = EvidenceWriter::start(evidence_dir)?;
        let (reader, writer) = connect(path).await?;
        let inner = Arc::new(Inner {
            clock,
            path: path.to_path_buf(),
            req: tokio::sync::Mutex::new(Some(ReqConn { reader, writer })),
            next_id: AtomicU64::new(1),
            log: EventLog::new(clock, LOG_CAPACITY),
            broken: Mutex::new(None),
            losses: AtomicU64::new(0),
            closed: std::sync::atomic::AtomicBool::new(false),
            evidence,
        });
        // The event connection: subscribe and wait for the confirmation.
        let (sreader, swriter) = subscribe(&inner).await?;
        let events = tokio::spawn(inner.clone().events(sreader, swriter)).abort_handle();
        Ok(Arc::new(VirtualGpio { inner, events }))
    }

    /// How many times a connection to the socket was lost.
    pub fn losses(&self) -> u64 {
        self.inner.losses.load(Ordering::SeqCst)
    }

    /// `Err` while the event connection is lost.
    pub fn check(&self) -> RigResult<()> {
        match self.inner.broken.lock().unwrap().clone() {
            None => self
                .inner
                .evidence
                .check()
                .map_err(|e| RigError::instrument(INSTRUMENT, e)),
            Some(b) => Err(RigError::instrument(INSTRUMENT, b)),
        }
    }

    /// Read an output line's level (`led`, `vibration`, `speaker`, `mic`, `power`).
    pub async fn get_level(&self, line: &str) -> RigResult<bool> {
        let v = self
            .inner
            .request(json!({"op": "get", "line": line}))
            .await?;
        if v.get("ok").and_then(Value::as_bool) != Some(true) {
            let err = v
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no reason given");
            return Err(RigError::instrument(
                INSTRUMENT,
                format!("get {line}: refused: {err}"),
            ));
        }
        match v.get("level") {
            Some(Value::Number(n)) => Ok(n.as_u64() != Some(0)),
            Some(Value::Bool(b)) => Ok(*b),
            _ => Err(RigError::instrument(
                INSTRUMENT,
                format!("get {line}: answer without a level: {v}"),
            )),
        }
    }

    /// The text on the screen now.
    pub async fn screen(&self) -> RigResult<String> {
        let v = self
            .inner
            .request(json!({"op": "get", "line": "screen"}))
            .await?;
        match v.get("text").and_then(Value::as_str) {
            Some(t) if v.get("ok").and_then(Value::as_bool) == Some(true) => {
                Ok(t.chars().take(MAX_SCREEN_TEXT).collect())
            }
            _ => Err(RigError::instrument(
                INSTRUMENT,
                format!("get screen: unexpected answer {v}"),
            )),
        }
    }

    /// Close both connections and write out the evidence.
    pub async fn close(&self) -> RigResult<()> {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.events.abort();
        *self.inner.req.lock().await = None;
        self.inner
            .broken
            .lock()
            .unwrap()
            .get_or_insert_with(|| "closed by the rig".into());
        self.inner.evidence.flush().await
    }
}

impl Drop for VirtualGpio {
    fn drop(&mut self) {
        self.events.abort();
    }
}

#[async_trait]
impl Power for VirtualGpio {
    async fn set(&self, on: bool) -> RigResult<()> {
        self.inner.set("power", on).await.map(|_| ())
    }
}

#[async_trait]
impl Buttons for VirtualGpio {
    async fn press(&self, button: Button, hold_secs: f64) -> RigResult<()> {
        // On its own task: if the caller gives up mid-press, the button is still
        // released.
        let inner = self.inner.clone();
        tokio::spawn(async move { inner.press(button, hold_secs).await })
            .await
            .map_err(|e| RigError::instrument(INSTRUMENT, format!("button press task: {e}")))?
    }
}

impl Indicators for VirtualGpio {
    fn log(&self) -> &EventLog<IndicatorEvent> {
        &self.inner.log
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    #[tokio::test]
    async fn bounded_lines() {
        let data: &[u8] = b"short\r\nxxxxxxxxxxxxxxxxxxxx\nlast";
        let mut r = BufReader::with_capacity(4, data);
        assert!(
            matches!(read_line_bounded(&mut r, 10).await.unwrap(), Line::Text(t) if t == b"short")
        );
        assert!(matches!(
            read_line_bounded(&mut r, 10).await.unwrap(),
            Line::TooLong(20)
        ));
        assert!(
            matches!(read_line_bounded(&mut r, 10).await.unwrap(), Line::Text(t) if t == b"last")
        );
        assert!(matches!(
            read_line_bounded(&mut r, 10).await.unwrap(),
            Line::Eof
        ));
    }

    #[test]
    fn events_parse_defensively() {
        let (t, e) =
            parse_event(br#"{"event":"edge","line":"vibration","level":1,"t":123460}"#).unwrap();
        assert_eq!(
            (t, e),
            (
                Some(123460),
                IndicatorEvent::Edge {
                    line: "vibration".into(),
                    level: true
                }
            )
        );
        let (_, e) = parse_event(br#"{"event":"screen","text":"SOS sent","t":5}"#).unwrap();
        assert_eq!(
            e,
            IndicatorEvent::Screen {
                text: "SOS sent".into()
            }
        );
        assert!(parse_event(br#"{"event":"edge","line":"led"}"#).is_none());
        assert!(parse_event(b"not json").is_none());
        assert!(parse_event(br#"{"id":3,"ok":true}"#).is_none());
    }

    /// A minimal GPIO socket peer following §6: answers set/get/subscribe, sends
    /// an edge event after each set of `btn_sos`.
    async fn fake_watch(path: PathBuf) -> tokio::sync::mpsc::UnboundedReceiver<Value> {
        let l = UnixListener::bind(&path).unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let subs: Arc<tokio::sync::Mutex<Vec<OwnedWriteHalf>>> = Default::default();
        tokio::spawn(async move {
            let mut t = 1000u64;
            while let Ok((s, _)) = l.accept().await {
                let tx = tx.clone();
                let subs = subs.clone();
                t += 1;
                tokio::spawn(async move {
                    let (r, mut w) = s.into_split();
                    let mut r = BufReader::new(r);
                    let mut line = String::new();
                    while r.read_line(&mut line).await.unwrap_or(0) > 0 {
                        let v: Value = serde_json::from_str(line.trim()).unwrap();
                        line.clear();
                        let _ = tx.send(v.clone());
                        let id = v["id"].clone();
                        match v["op"].as_str().unwrap() {
                            "subscribe" => {
                                w.write_all(
                                    format!("{}\n", json!({"id":id,"ok":true,"t":t})).as_bytes(),
                                )
                                .await
                                .unwrap();
                                subs.lock().await.push(w);
                                return;
                            }
                            "set" if v["line"] == "btn_nope" => {
                                w.write_all(
                                    format!(
                                        "{}\n",
                                        json!({"id":id,"ok":false,"error":"no such line"})
                                    )
                                    .as_bytes(),
                                )
                                .await
                                .unwrap();
                            }
                            "set" => {
                                w.write_all(
                                    format!("{}\n", json!({"id":id,"ok":true,"t":t})).as_bytes(),
                                )
                                .await
                                .unwrap();
                                if v["line"] == "power" {
                                    let ev = json!({"event":"edge","line":"led","level":v["level"],"t":777});
                                    for s in subs.lock().await.iter_mut() {
                                        s.write_all(format!("{ev}\n").as_bytes()).await.unwrap();
                                    }
                                }
                            }
                            _ => {
                                w.write_all(
                                    format!("{}\n", json!({"id":id,"ok":true,"t":t,"level":1}))
                                        .as_bytes(),
                                )
                                .await
                                .unwrap();
                            }
                        }
                    }
                });
            }
        });
        rx
    }

    #[tokio::test]
    async fn power_press_and_events_over_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("gpio.sock");
        let mut seen = fake_watch(sock.clone()).await;
        let clock = Clock::start(1000.0);
        let gpio = VirtualGpio::open(&sock, clock, dir.path()).await.unwrap();
        assert_eq!(seen.recv().await.unwrap()["op"], "subscribe");

        let mark = gpio.log().mark();
        Power::set(&*gpio, true).await.unwrap();
        let set = seen.recv().await.unwrap();
        assert_eq!(
            (
                set["op"].as_str(),
                set["line"].as_str(),
                set["level"].as_u64()
            ),
            (Some("set"), Some("power"), Some(1))
        );
        // The event carries the watch's time stamp.
        let ev = gpio
            .log()
            .wait_for(mark, 60.0, |e| matches!(e, IndicatorEvent::Edge { .. }))
            .await
            .unwrap();
        assert_eq!(ev.t, 777);
        assert_eq!(
            ev.value,
            IndicatorEvent::Edge {
                line: "led".into(),
                level: true
            }
        );

        gpio.press(Button::Sos, 3.0).await.unwrap();
        let down = seen.recv().await.unwrap();
        let up = seen.recv().await.unwrap();
        assert_eq!(
            (down["line"].as_str(), down["level"].as_u64()),
            (Some("btn_sos"), Some(1))
        );
        assert_eq!(
            (up["line"].as_str(), up["level"].as_u64()),
            (Some("btn_sos"), Some(0))
        );
        assert!(gpio.get_level("led").await.unwrap());
        gpio.check().unwrap();
        gpio.close().await.unwrap();
        let log = std::fs::read_to_string(dir.path().join("gpio.log")).unwrap();
        assert!(log.contains(r#""line":"btn_sos""#), "{log}");
        assert!(log.contains(r#""event":"edge""#), "{log}");
    }

    #[tokio::test]
    async fn refusals_and_a_lost_socket_are_instrument_errors() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("gpio.sock");
        let _seen = fake_watch(sock.clone()).await;
        let gpio = VirtualGpio::open(&sock, Clock::start(1000.0), dir.path())
            .await
            .unwrap();
        let err = gpio.inner.set("btn_nope", true).await.unwrap_err();
        assert!(err.to_string().contains("no such line"), "{err}");
        gpio.close().await.unwrap();
        let err = Power::set(&*gpio, true).await.unwrap_err();
        assert!(matches!(err, RigError::Instrument { .. }), "{err:?}");
        assert!(gpio.check().is_err());
        // No socket at all.
        let err = VirtualGpio::open(&dir.path().join("none.sock"), Clock::start(1.0), dir.path())
            .await
            .err()
            .unwrap();
        assert!(matches!(err, RigError::Instrument { .. }));
    }
}

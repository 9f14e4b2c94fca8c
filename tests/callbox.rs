//! The callbox cellular backend against the stand-in adapter
//! `fixtures/callbox/standin.sh`: hooks get their arguments verbatim and without a
//! shell, failures and time-outs are rig errors, the events command's JSON lines
//! become cell events (and bad ones do no harm), nothing is left running, and the
//! rig file's `cellular` section is validated with positions.

use redrig::clock::Clock;
use redrig::config::{self, CellularConfig, ConfigError};
use redrig::drivers::callbox::{CallboxAction, CallboxCellular, CallboxSpec, EVIDENCE_FILE};
use redrig::drivers::{CallAnswer, CellEvent, Cellular, Mark, NameService, Registration};
use redrig::error::RigError;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn standin() -> String {
    root()
        .join("fixtures/callbox/standin.sh")
        .to_string_lossy()
        .into_owned()
}

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// A hook running the stand-in with `args`.
fn standin_hook(args: &[&str]) -> Vec<String> {
    let mut v = vec![standin()];
    v.extend(argv(args));
    v
}

/// What the stand-in recorded: one argument list per invocation.
fn records(path: &Path) -> Vec<Vec<String>> {
    let bytes = std::fs::read(path).unwrap_or_default();
    let mut fields = bytes.split(|&b| b == 0);
    let mut out = Vec::new();
    while let Some(count) = fields.next() {
        if count.is_empty() {
            break;
        }
        let n: usize = std::str::from_utf8(count).unwrap().parse().unwrap();
        let rec = (0..n)
            .map(|_| String::from_utf8(fields.next().unwrap().to_vec()).unwrap())
            .collect();
        out.push(rec);
    }
    out
}

fn alive(pid: i32) -> bool {
    // A reaped process is gone; a zombie would still have a /proc entry.
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_pids(path: &Path) -> Vec<i32> {
    let mut text = String::new();
    wait_until(&format!("{}", path.display()), || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        text.ends_with('\n')
    });
    text.split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

#[derive(Default)]
struct FakeNs {
    coverage: Mutex<Vec<bool>>,
}

impl NameService for FakeNs {
    fn resolve(&self, _host: &str) -> Option<std::net::Ipv4Addr> {
        None
    }
    fn set_coverage(&self, up: bool) {
        self.coverage.lock().unwrap().push(up);
    }
}

/// A temporary bench: evidence directory, the events inbox, the stand-in's files.
struct Bench {
    dir: tempfile::TempDir,
}

impl Bench {
    fn new() -> Bench {
        Bench {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn evidence(&self) -> PathBuf {
        self.dir.path().join("evidence")
    }
    fn inbox(&self) -> PathBuf {
        self.dir.path().join("inbox")
    }
    fn events_pidfile(&self) -> PathBuf {
        self.dir.path().join("events.pid")
    }
    fn actions(&self) -> PathBuf {
        self.evidence().join("actions")
    }
    fn evidence_log(&self) -> String {
        std::fs::read_to_string(self.evidence().join(EVIDENCE_FILE)).unwrap()
    }
    /// Events command of the stand-in, reading this bench's inbox.
    fn events(&self) -> Vec<String> {
        standin_hook(&[
            "events",
            self.inbox().to_str().unwrap(),
            self.events_pidfile().to_str().unwrap(),
        ])
    }
    /// Every hook recording into `{evidence_dir}/actions`.
    fn recording_hooks() -> BTreeMap<CallboxAction, Vec<String>> {
        let rec = |rest: &[&str]| {
            let mut a = vec!["record", "{evidence_dir}/actions"];
            a.extend_from_slice(rest);
            standin_hook(&a)
        };
        BTreeMap::from([
            (CallboxAction::Registration, rec(&["reg", "{state}"])),
            (
                CallboxAction::SendSms,
                rec(&["sms", "--from={from}", "{text}"]),
            ),
            (CallboxAction::CallWatch, rec(&["call", "{caller_id}"])),
            (CallboxAction::HangUp, rec(&["hang-up"])),
            (CallboxAction::CallAnswer, rec(&["answer-mode", "{mode}"])),
        ])
    }
    fn spec(&self, hooks: BTreeMap<CallboxAction, Vec<String>>, timeout: Duration) -> CallboxSpec {
        CallboxSpec {
            hooks,
            events: self.events(),
            timeout,
        }
    }
    fn open(&self, spec: CallboxSpec, ns: Option<Arc<dyn NameService>>) -> Arc<CallboxCellular> {
        CallboxCellular::open(spec, Clock::start(1.0), ns, &self.evidence()).unwrap()
    }
    /// Append raw bytes to the events inbox (the stand-in prints them).
    fn emit(&self, bytes: &[u8]) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.inbox())
            .unwrap();
        f.write_all(bytes).unwrap();
    }
}

fn instrument_error(e: RigError) -> String {
    match e {
        RigError::Instrument { instrument, detail } => {
            assert_eq!(instrument, "cellular");
            detail
        }
        other => panic!("expected an instrument error, got {other:?}"),
    }
}

/// Every event the backend logged so far.
fn events(cell: &dyn Cellular) -> Vec<CellEvent> {
    cell.log()
        .since(Mark(0))
        .into_iter()
        .map(|r| r.value)
        .collect()
}

async fn wait_event(
    cell: &dyn Cellular,
    pred: impl FnMut(&CellEvent) -> bool + Send + 'static,
) -> CellEvent {
    cell.log()
        .wait_for(Mark(0), 20.0, pred)
        .await
        .expect("the event arrived")
        .value
}

// ---------------------------------------------------------------------------------
// Actions
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_action_runs_its_argv_with_the_values_as_single_verbatim_arguments() {
    let b = Bench::new();
    let ns = Arc::new(FakeNs::default());
    let cell = b.open(
        b.spec(Bench::recording_hooks(), Duration::from_secs(10)),
        Some(ns.clone()),
    );
    let pwned = b.dir.path().join("pwned");
    let text = format!(
        "it's \"quoted\"; rm -rf {d} ; $(touch {p}) `touch {p}` | {{from}} {{text}} {{evidence_dir}} ünï\nline 2",
        d = b.dir.path().join("nothing").display(),
        p = pwned.display()
    );
    let from = "+49 151 00000001";

    cell.set_registration(Registration::Roaming).await.unwrap();
    cell.send_sms(from, &text).await.unwrap();
    cell.call_watch("+4915100000666").await.unwrap();
    cell.hang_up().await.unwrap();
    cell.set_call_answer(CallAnswer::Reject);
    cell.set_registration(Registration::NotSearching)
        .await
        .unwrap();

    assert_eq!(
        records(&b.actions()),
        vec![
            argv(&["reg", "roaming"]),
            argv(&["sms", &format!("--from={from}"), &text]),
            argv(&["call", "+4915100000666"]),
            argv(&["hang-up"]),
            argv(&["answer-mode", "reject"]),
            argv(&["reg", "not-searching"]),
        ]
    );
    assert!(!pwned.exists(), "the SMS text was run by a shell");

    // The rig's side is in the log, as the virtual modem logs it.
    let logged = events(cell.as_ref());
    assert_eq!(
        logged,
        vec![
            CellEvent::Registration {
                state: Registration::Roaming
            },
            CellEvent::SmsToWatch {
                from: from.into(),
                text: text.clone()
            },
            CellEvent::CallToWatch {
                caller_id: "+4915100000666".into()
            },
            CellEvent::Registration {
                state: Registration::NotSearching
            },
        ]
    );
    assert_eq!(cell.registration(), Registration::NotSearching);
    assert_eq!(*ns.coverage.lock().unwrap(), vec![true, false]);
    cell.health().unwrap();

    // The evidence has every run, its exact argv, output and status.
    let ev = b.evidence_log();
    for part in [
        "run send_sms [",
        &serde_json::to_string(&text).unwrap(),
        "out send_sms recorded 3 arguments",
        "done send_sms exit status 0",
        "run call_answer [",
        "start events [",
    ] {
        assert!(ev.contains(part), "{part:?} not in callbox.log:\n{ev}");
    }
    // Every line is stamped with device time.
    assert!(
        ev.lines()
            .all(|l| l.split(' ').next().unwrap().parse::<u64>().is_ok()),
        "{ev}"
    );
}

#[tokio::test]
async fn a_failing_hook_is_a_rig_error_with_its_output_in_the_evidence() {
    let b = Bench::new();
    let mut hooks = Bench::recording_hooks();
    hooks.insert(
        CallboxAction::SendSms,
        standin_hook(&["fail", "3", "no cell is configured"]),
    );
    let cell = b.open(b.spec(hooks, Duration::from_secs(10)), None);
    let detail = instrument_error(cell.send_sms("+491", "hello").await.unwrap_err());
    assert!(detail.contains("`send_sms`"), "{detail}");
    assert!(detail.contains("exit status 3"), "{detail}");
    assert!(detail.contains("no cell is configured"), "{detail}");
    // Nothing claims the SMS was sent.
    assert!(cell.log().since(Mark(0)).is_empty());
    let ev = b.evidence_log();
    assert!(ev.contains("err send_sms no cell is configured"), "{ev}");
    assert!(ev.contains("out send_sms partial"), "{ev}");
    assert!(ev.contains("FAILED send_sms"), "{ev}");
    // A failed hook does not poison the backend: the next action runs.
    cell.call_watch("+492").await.unwrap();
    assert_eq!(records(&b.actions()), vec![argv(&["call", "+492"])]);
}

#[tokio::test]
async fn a_hook_that_hangs_is_stopped_at_the_time_out_with_its_whole_group() {
    let b = Bench::new();
    let pidfile = b.dir.path().join("hang.pid");
    let mut hooks = Bench::recording_hooks();
    hooks.insert(
        CallboxAction::CallWatch,
        standin_hook(&["hang", pidfile.to_str().unwrap()]),
    );
    let cell = b.open(b.spec(hooks, Duration::from_millis(700)), None);
    let started = Instant::now();
    let detail = instrument_error(cell.call_watch("+491").await.unwrap_err());
    assert!(detail.contains("`call_watch`"), "{detail}");
    assert!(detail.contains("did not finish within 0.7 s"), "{detail}");
    assert!(started.elapsed() >= Duration::from_millis(700));
    let pids = read_pids(&pidfile);
    assert_eq!(pids.len(), 2, "the hook and its child");
    for p in pids {
        assert!(!alive(p), "process {p} of the hook survived its time-out");
    }
    assert!(cell.log().since(Mark(0)).is_empty());
    assert!(b.evidence_log().contains("FAILED call_watch"));
    cell.hang_up().await.unwrap();
}

#[tokio::test]
async fn an_action_without_a_hook_names_the_missing_hook() {
    let b = Bench::new();
    let mut hooks = Bench::recording_hooks();
    hooks.remove(&CallboxAction::HangUp);
    hooks.remove(&CallboxAction::CallAnswer);
    let cell = b.open(b.spec(hooks, Duration::from_secs(10)), None);
    let err = cell.hang_up().await.unwrap_err();
    let RigError::Config(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("no `hang_up` hook"), "{msg}");
    assert!(msg.contains("hooks.hang_up"), "{msg}");

    // `answer` without a hook is the callbox's own setting; another mode cannot be
    // set, and the next action says so (once).
    cell.set_call_answer(CallAnswer::Answer);
    cell.health().unwrap();
    cell.set_call_answer(CallAnswer::Ring);
    let health = instrument_error(cell.health().unwrap_err());
    assert!(health.contains("`call_answer`"), "{health}");
    let detail = instrument_error(cell.call_watch("+491").await.unwrap_err());
    assert!(detail.contains("`call_answer`"), "{detail}");
    assert!(detail.contains("ring"), "{detail}");
    cell.call_watch("+491").await.unwrap();
    assert_eq!(records(&b.actions()), vec![argv(&["call", "+491"])]);
}

#[test]
fn a_spec_with_a_bad_argv_is_refused_before_anything_starts() {
    let b = Bench::new();
    let mut hooks = Bench::recording_hooks();
    hooks.insert(CallboxAction::SendSms, argv(&["{text}", "sms"]));
    hooks.insert(CallboxAction::HangUp, Vec::new());
    let err = CallboxCellular::open(
        b.spec(hooks, Duration::from_secs(1)),
        Clock::start(1.0),
        None,
        &b.evidence(),
    )
    .err()
    .expect("refused");
    let RigError::Config(msg) = err else {
        panic!("{err:?}")
    };
    assert!(
        msg.contains("hook `send_sms`") && msg.contains("program"),
        "{msg}"
    );
    assert!(msg.contains("hook `hang_up` is empty"), "{msg}");
    assert!(
        !b.events_pidfile().exists(),
        "the events command was started"
    );
}

// ---------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn event_lines_become_cell_events_stamped_on_receipt() {
    let b = Bench::new();
    let cell = b.open(
        b.spec(Bench::recording_hooks(), Duration::from_secs(10)),
        None,
    );
    assert_eq!(cell.registration(), Registration::NotSearching);
    b.emit(
        concat!(
            r#"{"event":"registration","state":"home"}"#,
            "\n",
            r#"{"event":"sms_from_watch","to":"+4915100000001","text":"SOS \"help\" ünï"}"#,
            "\n",
            r#"{"event":"watch_dialled","number":"+4915100000001"}"#,
            "\n",
            r#"{"event":"far_end","number":"+4915100000001","answer":"reject"}"#,
            "\n",
            r#"{"event":"dns_query","host":"watch.kidcloud.example","answer":"10.0.0.1"}"#,
            "\n",
            r#"{"event":"data_attached","apn":"internet"}"#,
            "\n",
        )
        .as_bytes(),
    );
    let sms = wait_event(cell.as_ref(), |e| {
        matches!(e, CellEvent::SmsFromWatch { .. })
    })
    .await;
    assert_eq!(
        sms,
        CellEvent::SmsFromWatch {
            to: "+4915100000001".into(),
            text: "SOS \"help\" ünï".into()
        }
    );
    let attached = wait_event(cell.as_ref(), |e| {
        matches!(e, CellEvent::DataAttached { .. })
    })
    .await;
    assert_eq!(
        attached,
        CellEvent::DataAttached {
            apn: Some("internet".into())
        }
    );
    let all = events(cell.as_ref());
    assert_eq!(all.len(), 6, "{all:?}");
    assert_eq!(
        all[0],
        CellEvent::Registration {
            state: Registration::Home
        }
    );
    assert_eq!(
        all[2],
        CellEvent::WatchDialled {
            number: "+4915100000001".into()
        }
    );
    assert_eq!(
        all[3],
        CellEvent::FarEnd {
            number: "+4915100000001".into(),
            answer: CallAnswer::Reject
        }
    );
    assert_eq!(
        all[4],
        CellEvent::DnsQuery {
            host: "watch.kidcloud.example".into(),
            answer: Some("10.0.0.1".into())
        }
    );
    assert_eq!(cell.registration(), Registration::Home);

    // A later report changes what `registration()` says.
    b.emit(b"{\"event\":\"registration\",\"state\":\"denied\"}\n");
    wait_event(cell.as_ref(), |e| {
        *e == CellEvent::Registration {
            state: Registration::Denied,
        }
    })
    .await;
    assert_eq!(cell.registration(), Registration::Denied);
    let s = cell.stats();
    assert_eq!((s.lines, s.events, s.bad, s.cut), (7, 7, 0, 0));
    assert!(b
        .evidence_log()
        .contains(r#"event {"event":"watch_dialled","number":"+4915100000001"}"#));
}

#[tokio::test]
async fn garbage_and_an_overlong_event_line_are_noted_and_skipped() {
    let b = Bench::new();
    let cell = b.open(
        b.spec(Bench::recording_hooks(), Duration::from_secs(10)),
        None,
    );
    let mut junk = Vec::new();
    junk.extend_from_slice(b"not json at all\n");
    junk.extend_from_slice(b"{\"event\":\"teleport\",\"to\":\"mars\"}\n");
    junk.extend_from_slice(b"\xff\xfe{\"event\":\x00\n");
    junk.extend_from_slice(b"{\"event\":\"registration\",\"state\":\"orbit\"}\n");
    junk.extend_from_slice(b"{\"event\":\"sms_from_watch\",\"text\":\"");
    junk.extend(std::iter::repeat_n(b'x', 300 * 1024));
    junk.extend_from_slice(b"\"}\n");
    junk.extend_from_slice(b"\n   \n");
    // Within the line limit, but a text longer than the rig keeps in memory.
    junk.extend_from_slice(b"{\"event\":\"sms_from_watch\",\"to\":\"+491\",\"text\":\"");
    junk.extend(std::iter::repeat_n(b'y', 10_000));
    junk.extend_from_slice(b"\"}\n");
    junk.extend_from_slice(b"{\"event\":\"watch_dialled\",\"number\":\"+4930\"}\n");
    b.emit(&junk);
    let dialled = wait_event(cell.as_ref(), |e| {
        matches!(e, CellEvent::WatchDialled { .. })
    })
    .await;
    assert_eq!(
        dialled,
        CellEvent::WatchDialled {
            number: "+4930".into()
        }
    );
    // Nothing else became an event; the long text was cut to the field limit.
    let all = events(cell.as_ref());
    assert_eq!(
        all[0],
        CellEvent::SmsFromWatch {
            to: "+491".into(),
            text: "y".repeat(redrig::drivers::callbox::MAX_EVENT_FIELD)
        }
    );
    assert_eq!(all.len(), 2, "{:?}", all.len());
    let s = cell.stats();
    assert_eq!((s.bad, s.cut, s.events), (4, 1, 2), "{s:?}");
    let ev = b.evidence_log();
    assert!(ev.contains("note events line skipped"), "{ev}");
    assert!(ev.contains("teleport"), "{ev}");
    assert!(ev.contains("not UTF-8"), "{ev}");
    assert!(ev.contains("orbit"), "{ev}");
    assert!(ev.contains("was cut (5904 bytes dropped)"), "{ev}");
    assert!(
        ev.contains("longer than 65536 bytes cut"),
        "the over-long line is not noted"
    );
    // The over-long line is not copied into the evidence whole.
    assert!(ev.len() < 64 * 1024, "callbox.log is {} bytes", ev.len());
    cell.health().unwrap();
    cell.hang_up().await.unwrap();
}

#[tokio::test]
async fn when_the_events_command_ends_the_next_action_is_a_rig_error() {
    let b = Bench::new();
    let cell = b.open(
        b.spec(Bench::recording_hooks(), Duration::from_secs(10)),
        None,
    );
    cell.set_registration(Registration::Home).await.unwrap();
    b.emit(b"EXIT 0\n");
    wait_until("the backend to notice", || cell.health().is_err());
    let detail = instrument_error(cell.send_sms("+491", "hi").await.unwrap_err());
    assert!(detail.contains("events command ended"), "{detail}");
    assert!(detail.contains("exit status 0"), "{detail}");
    // It stays unhealthy, and the hook was not run.
    assert!(cell.call_watch("+491").await.is_err());
    assert_eq!(records(&b.actions()), vec![argv(&["reg", "home"])]);
    let ev = b.evidence_log();
    assert!(ev.contains("note the events command ended"), "{ev}");
    assert!(ev.contains("events-err stand-in events: exiting"), "{ev}");
}

#[test]
fn no_process_is_left_behind_after_drop() {
    let b = Bench::new();
    let cell = b.open(
        b.spec(Bench::recording_hooks(), Duration::from_secs(10)),
        None,
    );
    let pids = read_pids(&b.events_pidfile());
    let (pid, helper) = (pids[0], pids[1]);
    assert_eq!(cell.events_pid(), Some(pid as u32));
    assert!(alive(pid) && alive(helper));
    drop(cell);
    assert!(!alive(pid), "the events command survived the drop");
    // Its helper in the same process group was killed too (it would sleep for ten
    // minutes otherwise); once killed, it is reaped by whoever inherited it.
    wait_until("the events command's helper to be gone", || !alive(helper));
    assert!(std::fs::read_to_string(b.evidence().join(EVIDENCE_FILE))
        .unwrap()
        .contains("note events command stopped"));
}

#[test]
fn an_events_command_that_cannot_start_is_an_instrument_error() {
    let b = Bench::new();
    let mut spec = b.spec(Bench::recording_hooks(), Duration::from_secs(1));
    spec.events = argv(&["/nonexistent/callbox-adapter", "events"]);
    let err = CallboxCellular::open(spec, Clock::start(1.0), None, &b.evidence())
        .err()
        .expect("refused");
    let detail = instrument_error(err);
    assert!(detail.contains("/nonexistent/callbox-adapter"), "{detail}");
}

// ---------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------

fn pi_bench_text() -> String {
    std::fs::read_to_string(root().join("fixtures/rigs/pi-bench.yaml")).unwrap()
}

/// pi-bench.yaml with its `cellular:` section (from the key to `network:`)
/// replaced by `section`, written to a temporary file.
fn rig_with_cellular(section: &str) -> (tempfile::TempDir, PathBuf, String) {
    let text = pi_bench_text();
    let i = text
        .find("  cellular:\n")
        .expect("pi-bench has a cellular section");
    let j = text.find("network:").unwrap();
    let text = format!("{}{section}{}", &text[..i], &text[j..]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rig.yaml");
    std::fs::write(&path, &text).unwrap();
    (dir, path, text)
}

/// 1-based line and column of the first `needle` in `text`.
fn pos(text: &str, needle: &str) -> (usize, usize) {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not found"));
    let line_start = text[..at].rfind('\n').map(|i| i + 1).unwrap_or(0);
    (
        text[..at].matches('\n').count() + 1,
        text[line_start..at].chars().count() + 1,
    )
}

fn expect_at(list: &[ConfigError], (line, column): (usize, usize), parts: &[&str]) {
    let found = list.iter().any(|e| {
        e.line == line
            && e.column == column
            && parts.iter().all(|p| e.message.contains(p))
            && e.to_string()
                .contains(&format!("rig.yaml:{line}:{column}: "))
    });
    let all: Vec<String> = list.iter().map(|e| e.to_string()).collect();
    assert!(
        found,
        "nothing at {line}:{column} containing {parts:?}; got:\n{}",
        all.join("\n")
    );
}

#[test]
fn the_shipped_pi_bench_is_a_complete_callbox_example() {
    let loaded = config::load_rig(&root().join("fixtures/rigs/pi-bench.yaml"), None)
        .unwrap_or_else(|e| panic!("{e}"));
    let CellularConfig::Callbox {
        hooks,
        events,
        timeout_s,
    } = &loaded.rig.instruments.cellular
    else {
        panic!("{:?}", loaded.rig.instruments.cellular)
    };
    let names: Vec<&str> = hooks.keys().map(String::as_str).collect();
    let mut all: Vec<&str> = CallboxAction::ALL.iter().map(|a| a.name()).collect();
    all.sort();
    assert_eq!(names, all);
    assert!(!events.is_empty());
    assert_eq!(*timeout_s, 10.0);
    assert!(
        loaded
            .warnings
            .iter()
            .all(|w| !w.message.contains("cellular")),
        "{:?}",
        loaded.warnings
    );
    let spec = CallboxSpec::from_config(&loaded.rig.instruments.cellular).unwrap();
    assert!(spec.problems().is_empty(), "{:?}", spec.problems());
    assert_eq!(spec.hooks.len(), 5);
    assert_eq!(spec.timeout, Duration::from_secs(10));
}

#[test]
fn cellular_mistakes_are_reported_at_their_positions() {
    let (_d, path, text) = rig_with_cellular(
        r#"  cellular:
    backend: callbox
    events: [/opt/cbx, events, "{evidence_dir}/x", "{state}"]
    hooks:
      registration: ["{state}", reg]
      send_sms:     [/opt/cbx, sms, "{from}", "{txt}"]
      call_watch:   []
      hangup:       [/opt/cbx, hang-up]
    timeout_s: 0
"#,
    );
    let errs = config::load_rig(&path, None).expect_err("invalid").0;
    expect_at(
        &errs,
        pos(&text, "\"{state}\"]"),
        &[
            "events command",
            "unknown placeholder `{state}`",
            "{evidence_dir}",
        ],
    );
    expect_at(
        &errs,
        pos(&text, "\"{state}\", reg"),
        &["hook `registration`", "program", "placeholder"],
    );
    expect_at(
        &errs,
        pos(&text, "\"{txt}\""),
        &[
            "hook `send_sms`",
            "unknown placeholder `{txt}`",
            "{from}, {text}",
        ],
    );
    expect_at(&errs, pos(&text, "[]"), &["hook `call_watch` is empty"]);
    expect_at(
        &errs,
        pos(&text, "hangup:"),
        &["unknown action `hangup`", "hang_up"],
    );
    let (l, c) = pos(&text, "timeout_s: 0");
    expect_at(&errs, (l, c + "timeout_s: ".len()), &["timeout_s 0"]);
    assert_eq!(errs.len(), 6, "{errs:?}");
}

#[test]
fn missing_hooks_are_warnings_and_a_missing_events_command_is_an_error() {
    let (_d, path, text) = rig_with_cellular(
        r#"  cellular:
    backend: callbox
    events: [/opt/cbx, events]
    hooks:
      send_sms: [/opt/cbx, sms, "{from}", "{text}"]
"#,
    );
    let loaded = config::load_rig(&path, None).unwrap_or_else(|e| panic!("{e}"));
    expect_at(
        &loaded.warnings,
        pos(&text, "send_sms: [/opt"),
        &[
            "no hook for registration, call_watch, hang_up, call_answer",
            "inconclusive",
        ],
    );

    let (_d, path, text) = rig_with_cellular(
        r#"  cellular:
    backend: callbox
    hooks: { hang_up: [/opt/cbx, hang-up] }
"#,
    );
    let errs = config::load_rig(&path, None).expect_err("invalid").0;
    expect_at(
        &errs,
        pos(&text, "cellular:"),
        &["missing field `events`", "callbox"],
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
}

#[test]
fn redrig_check_accepts_the_pi_bench_and_refuses_a_bad_cellular_section() {
    let exe = env!("CARGO_BIN_EXE_redrig");
    let o = std::process::Command::new(exe)
        .args(["check", "--rig"])
        .arg(root().join("fixtures/rigs/pi-bench.yaml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("cellular"), "{stderr}");

    let (_d, path, text) = rig_with_cellular(
        "  cellular:\n    backend: callbox\n    events: [/opt/cbx, events]\n    hooks: { dial: [/opt/cbx, dial] }\n",
    );
    let o = std::process::Command::new(exe)
        .args(["check", "--rig"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    let (l, c) = pos(&text, "dial:");
    assert!(
        stderr.contains(&format!("rig.yaml:{l}:{c}: ")) && stderr.contains("unknown action `dial`"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------
// The assembled rig
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rig_assembles_with_a_callbox_and_stops_its_events_command() {
    let b = Bench::new();
    let q = |s: &str| serde_json::to_string(s).unwrap();
    let virt = std::fs::read_to_string(root().join("fixtures/rigs/virtual.yaml")).unwrap();
    let line = virt
        .lines()
        .find(|l| l.trim_start().starts_with("cellular:"))
        .unwrap();
    let section = format!(
        "  cellular:   {{ backend: callbox, timeout_s: 5, events: [{s}, events, {inbox}, {pid}], hooks: {{ send_sms: [{s}, record, \"{{evidence_dir}}/actions\", sms, \"{{from}}\", \"{{text}}\"] }} }}",
        s = q(&standin()),
        inbox = q(b.inbox().to_str().unwrap()),
        pid = q(b.events_pidfile().to_str().unwrap()),
    );
    let rig_path = b.dir.path().join("rig.yaml");
    std::fs::write(&rig_path, virt.replace(line, &section)).unwrap();
    let mut loaded = config::load_rig(&rig_path, None).unwrap_or_else(|e| panic!("{e}"));
    loaded.device.device.backend.api.ca = Some(root().join("fixtures/certs/ca.pem"));
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.message.contains("no hook for registration")),
        "{:?}",
        loaded.warnings
    );
    let rig = redrig::rig::Rig::assemble(
        &loaded,
        Path::new(env!("CARGO_BIN_EXE_redrig")),
        Clock::start(loaded.rig.time.scale),
        &b.evidence(),
    )
    .await
    .unwrap();
    let pid = read_pids(&b.events_pidfile())[0];
    rig.cellular
        .send_sms("+4915100000001", "where are you?")
        .await
        .unwrap();
    assert_eq!(
        records(&b.actions()),
        vec![argv(&["sms", "+4915100000001", "where are you?"])]
    );
    let err = rig.cellular.call_watch("+4915100000001").await.unwrap_err();
    assert!(err.to_string().contains("no `call_watch` hook"), "{err}");
    b.emit(b"{\"event\":\"watch_hung_up\"}\n");
    wait_event(rig.cellular.as_ref(), |e| *e == CellEvent::WatchHungUp).await;
    rig.shutdown().await.unwrap();
    assert!(!alive(pid), "the events command survived the shutdown");
    assert!(b.evidence().join(EVIDENCE_FILE).is_file());
}

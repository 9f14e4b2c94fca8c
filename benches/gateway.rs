//! The cell gateway's cost on the data path, side by side with a direct loopback
//! connection and with `socat` as a plain relay.
//!
//! Two upstreams run on plain threads: an echo server and a discarding sink. Each is
//! reached three ways: directly; through the real gateway (`Gateway::start` as
//! `tests/gateway.rs` builds it, one host per upstream, the watch-side address from
//! `NameService::resolve`); and through `socat TCP-LISTEN:…,fork TCP:…`. The gateway
//! writes every relayed byte to evidence files in a temporary directory before
//! forwarding it, and decodes clear-text frames: that is part of its cost and is
//! measured with it. No impairment is set.
//!
//! - **Latency**: 64-byte ping-pong over one connection, 5 000 round trips (after 200
//!   not measured): median, p99, max.
//! - **Throughput**: 256 MiB one way to the sink, from the first write until the sink
//!   has read the last byte: MB/s (10⁶ bytes per second).
//!
//! `GATEWAY_BENCH_ROUND_TRIPS` and `GATEWAY_BENCH_MIB` (at most 256, the gateway's
//! per-direction evidence cap) change the sizes. Arguments (`cargo bench` passes
//! `--bench`) are ignored. Without `socat` on the PATH its column is skipped. The
//! figures are also written as JSON to `<target dir>/bench-gateway.json`.

mod support;
use redrig::clock::Clock;
use redrig::drivers::NameService;
use redrig::gateway::{Gateway, GatewaySpec, HostRoute, SINKHOLE_PORTS};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::{percentile, write_figures};

const ECHO_HOST: &str = "echo.bench.example";
const SINK_HOST: &str = "sink.bench.example";
const DEVICE_PORT: u16 = 6443;
const MESSAGE: usize = 64;
const WARM_UP: usize = 200;
/// Longest wait for one transfer.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(600);

/// An echo server on a thread per connection.
fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind echo");
    let addr = l.local_addr().expect("echo address");
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let _ = s.set_nodelay(true);
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// A sink that reads everything; for each connection that reaches `want` bytes it
/// reports the instant it did.
fn sink_server(want: u64) -> (SocketAddr, mpsc::Receiver<Instant>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind sink");
    let addr = l.local_addr().expect("sink address");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 256 * 1024];
                let mut total = 0u64;
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            let before = total;
                            total += n as u64;
                            if before < want && total >= want {
                                let _ = tx.send(Instant::now());
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// Round-trip times of `n` 64-byte messages (after [`WARM_UP`] not measured).
fn ping_pong(addr: SocketAddr, n: usize) -> Vec<Duration> {
    let mut s = TcpStream::connect(addr).expect("connect for ping-pong");
    s.set_nodelay(true).expect("nodelay");
    let mut msg = [0u8; MESSAGE];
    let mut back = [0u8; MESSAGE];
    let mut out = Vec::with_capacity(n);
    for i in 0..WARM_UP + n {
        msg[0] = i as u8;
        let t = Instant::now();
        s.write_all(&msg).expect("ping");
        s.read_exact(&mut back).expect("pong");
        let rtt = t.elapsed();
        assert_eq!(back, msg, "the echo came back altered");
        if i >= WARM_UP {
            out.push(rtt);
        }
    }
    out
}

/// Send `bytes` one way to `addr`, whose sink reports on `done`; MB/s.
fn transfer(addr: SocketAddr, bytes: u64, done: &mpsc::Receiver<Instant>) -> f64 {
    let mut s = TcpStream::connect(addr).expect("connect for transfer");
    let block = vec![0xa5u8; 64 * 1024];
    let t0 = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        s.write_all(&block[..n]).expect("transfer write");
        left -= n as u64;
    }
    let end = done
        .recv_timeout(TRANSFER_TIMEOUT)
        .expect("the sink did not receive everything");
    let _ = s.shutdown(std::net::Shutdown::Write);
    bytes as f64 / 1e6 / (end - t0).as_secs_f64()
}

/// A `socat` relay: killed (with its forked children) when dropped.
struct Socat {
    child: Child,
    addr: SocketAddr,
}

impl Socat {
    fn start(upstream: SocketAddr) -> std::io::Result<Socat> {
        use std::os::unix::process::CommandExt;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("socat")
            .arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"))
            .arg(format!("TCP:{upstream}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        let socat = Socat {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(socat.addr).is_err() {
            if Instant::now() > deadline {
                return Err(std::io::Error::other("socat did not start listening"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(socat)
    }
}

impl Drop for Socat {
    fn drop(&mut self) {
        // The process group is socat's own (process_group(0)): it and the children
        // it forked per connection.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn socat_installed() -> bool {
    Command::new("socat")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn env_count(name: &str, default: usize, max: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .ok()
            .filter(|&n| n >= 1 && n <= max)
            .unwrap_or_else(|| panic!("{name}={v:?}: expected a count from 1 to {max}")),
        Err(_) => default,
    }
}

#[derive(Default)]
struct Figures {
    median_us: f64,
    p99_us: f64,
    max_us: f64,
    mb_s: f64,
}

fn measure(
    echo: SocketAddr,
    sink: SocketAddr,
    done: &mpsc::Receiver<Instant>,
    trips: usize,
    bytes: u64,
) -> Figures {
    let mut rtt = ping_pong(echo, trips);
    rtt.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    Figures {
        median_us: us(percentile(&rtt, 50.0)),
        p99_us: us(percentile(&rtt, 99.0)),
        max_us: us(rtt[rtt.len() - 1]),
        mb_s: transfer(sink, bytes, done),
    }
}

fn first_line(path: &str, prefix: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with(prefix))
            .map(|l| l.split(':').nth(1).unwrap_or(l).trim().to_string())
    })
}

fn main() {
    let trips = env_count("GATEWAY_BENCH_ROUND_TRIPS", 5_000, 10_000_000);
    let mib = env_count("GATEWAY_BENCH_MIB", 256, 256);
    let bytes = mib as u64 * 1024 * 1024;

    let echo = echo_server();
    let (sink, done) = sink_server(bytes);

    // The gateway, on its own runtime (the clients and upstreams are plain threads).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let evidence = tempfile::tempdir().expect("temporary evidence directory");
    let route = |host: &str, up: SocketAddr| HostRoute {
        host: host.into(),
        relay_ports: BTreeSet::from([DEVICE_PORT]),
        upstream: Some(up.to_string()),
    };
    let gw = rt
        .block_on(Gateway::start(GatewaySpec {
            gateway: None,
            hosts: vec![route(ECHO_HOST, echo), route(SINK_HOST, sink)],
            profile_ports: BTreeSet::from([DEVICE_PORT]),
            sinkhole_ports: SINKHOLE_PORTS.to_vec(),
            clock: Clock::start(1.0),
            evidence_dir: evidence.path().to_path_buf(),
        }))
        .expect("start the gateway");
    let gw_echo = SocketAddr::from((gw.resolve(ECHO_HOST).expect("resolve echo"), DEVICE_PORT));
    let gw_sink = SocketAddr::from((gw.resolve(SINK_HOST).expect("resolve sink"), DEVICE_PORT));

    let socat = if socat_installed() {
        match (Socat::start(echo), Socat::start(sink)) {
            (Ok(e), Ok(s)) => Some((e, s)),
            (e, s) => {
                let err = e
                    .err()
                    .or(s.err())
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                println!("socat: could not start ({err}) — column skipped");
                None
            }
        }
    } else {
        println!("socat: not installed — column skipped");
        None
    };

    let cpu = first_line("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    println!("Gateway relay cost over loopback: {trips} round trips of {MESSAGE} bytes, {mib} MiB one way");
    println!("  machine: {cpu}, {cores} cores, load average (1 min) {load} at start");

    let direct = measure(echo, sink, &done, trips, bytes);
    let gateway = measure(gw_echo, gw_sink, &done, trips, bytes);
    let via_socat = socat
        .as_ref()
        .map(|(e, s)| measure(e.addr, s.addr, &done, trips, bytes));

    if let Err(e) = rt.block_on(gw.shutdown()) {
        eprintln!("gateway shutdown: {e}");
    }
    // Evidence by kind: raw flow bytes, the packet capture, the rest (logs).
    let (mut flow_bytes, mut pcap_bytes, mut other_bytes) = (0u64, 0u64, 0u64);
    if let Ok(dir) = std::fs::read_dir(evidence.path()) {
        for e in dir.flatten() {
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("flow-") && name.ends_with(".bin") {
                flow_bytes += len;
            } else if name.ends_with(".pcap") {
                pcap_bytes += len;
            } else {
                other_bytes += len;
            }
        }
    }
    drop(socat);

    let cols: Vec<(&str, &Figures)> = std::iter::once(("direct", &direct))
        .chain(std::iter::once(("gateway", &gateway)))
        .chain(via_socat.as_ref().map(|f| ("socat", f)))
        .collect();
    let row = |label: &str, f: &dyn Fn(&Figures) -> String| {
        let mut line = format!("  {label:<24}");
        for (_, fig) in &cols {
            line.push_str(&format!(" {:>12}", f(fig)));
        }
        println!("{line}");
    };
    let mut head = format!("  {:<24}", "");
    for (name, _) in &cols {
        head.push_str(&format!(" {name:>12}"));
    }
    println!("{head}");
    row("rtt median (µs)", &|f| format!("{:.1}", f.median_us));
    row("rtt p99 (µs)", &|f| format!("{:.1}", f.p99_us));
    row("rtt max (µs)", &|f| format!("{:.1}", f.max_us));
    row("throughput (MB/s)", &|f| format!("{:.0}", f.mb_s));
    println!("  ratio to direct");
    row("  rtt median", &|f| {
        format!("{:.2}x", f.median_us / direct.median_us)
    });
    row("  rtt p99", &|f| {
        format!("{:.2}x", f.p99_us / direct.p99_us)
    });
    row("  throughput", &|f| format!("{:.2}x", f.mb_s / direct.mb_s));
    let in_mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "  the gateway wrote every relayed byte to evidence before forwarding it (part of its \
         cost): {:.1} MiB of flow files, {:.1} MiB of packet capture, {:.2} MiB of logs",
        in_mib(flow_bytes),
        in_mib(pcap_bytes),
        in_mib(other_bytes)
    );
    let fig = |f: &Figures| {
        serde_json::json!({
            "rtt_median_us": f.median_us,
            "rtt_p99_us": f.p99_us,
            "rtt_max_us": f.max_us,
            "throughput_mb_s": f.mb_s,
        })
    };
    let report = serde_json::json!({
        "round_trips": trips,
        "message_bytes": MESSAGE,
        "transfer_mib": mib,
        "machine": { "cpu": cpu, "cores": cores, "load_1min_at_start": load },
        "direct": fig(&direct),
        "gateway": fig(&gateway),
        "socat": via_socat.as_ref().map(fig),
        "gateway_evidence_bytes": {
            "flow_files": flow_bytes,
            "pcap": pcap_bytes,
            "other": other_bytes,
        },
    });
    write_figures("bench-gateway.json", &report);
    drop(gw);
    drop(rt);
    if let Err(e) = evidence.close() {
        eprintln!("cannot remove the temporary evidence directory: {e}");
    }
}

//! The watch's network namespace (`redrig::netns`): listeners the rig binds inside
//! are reachable from a child started inside; nothing of the rig's own namespace
//! is; the rig's threads stay where they were; nothing is left behind.
//!
//! These tests need CAP_SYS_ADMIN. Without it they print a visible `SKIPPED` line
//! and pass, unless `REDRIG_REQUIRE_NETNS=1` is set, which makes a missing
//! capability a failure.

use redrig::netns::NetNs;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether to run; prints the skip line (straight to stderr, not through the
/// harness's capture) or fails when the namespaces are required.
fn netns_or_skip() -> bool {
    match NetNs::available() {
        Ok(()) => true,
        Err(why) => {
            if std::env::var("REDRIG_REQUIRE_NETNS").as_deref() == Ok("1") {
                panic!("REDRIG_REQUIRE_NETNS=1 but network namespaces are unavailable: {why}");
            }
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: network namespaces need root ({why})"
            );
            false
        }
    }
}

/// The `N` of `net:[N]` for the calling thread.
fn thread_netns() -> String {
    std::fs::read_link("/proc/thread-self/ns/net")
        .expect("read /proc/thread-self/ns/net")
        .to_string_lossy()
        .into_owned()
}

fn bash(script: &str) -> Command {
    let mut c = Command::new("bash");
    c.arg("-c").arg(script);
    c
}

/// Accept on a nonblocking listener, giving up after a generous wall-time bound.
fn accept_within(l: &TcpListener, limit: Duration) -> TcpStream {
    let end = Instant::now() + limit;
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                return s;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    Instant::now() < end,
                    "no connection arrived within {limit:?}"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

fn wait_output(child: Child) -> (bool, String, String) {
    let out = child.wait_with_output().expect("wait for child");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A script that tries one TCP connection and says `connected` or `refused`.
fn try_connect(addr: Ipv4Addr, port: u16) -> String {
    format!(
        "if (echo probe >/dev/tcp/{addr}/{port}) 2>/dev/null; \
         then echo connected; else echo refused; fi"
    )
}

#[test]
fn child_inside_reaches_the_namespace_listener_and_nothing_else() {
    if !netns_or_skip() {
        return;
    }
    let before = thread_netns();
    let ns = NetNs::create().expect("create namespace");
    let addr = Ipv4Addr::new(127, 77, 0, 1);
    let inside = ns
        .bind_tcp(SocketAddrV4::new(addr, 0))
        .expect("bind inside");
    let port = inside.local_addr().unwrap().port();
    // A listener of the rig's own namespace, which the child must not reach.
    let host = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    host.set_nonblocking(true).unwrap();
    let host_port = host.local_addr().unwrap().port();

    // (a) The child inside connects to the gateway-style listener; the rig reads.
    let mut cmd = bash(&format!("exec 3<>/dev/tcp/{addr}/{port} && echo hi >&3"));
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    ns.enter_on_spawn(&mut cmd);
    let child = cmd.spawn().expect("spawn inside");
    let mut conn = accept_within(&inside, Duration::from_secs(30));
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut got = String::new();
    conn.read_to_string(&mut got).unwrap();
    assert_eq!(got, "hi\n");
    let (ok, _, err) = wait_output(child);
    assert!(ok, "child failed: {err}");

    // (b) Isolation: the same kind of child cannot reach the host's 127.0.0.1.
    let mut cmd = bash(&try_connect(Ipv4Addr::LOCALHOST, host_port));
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    ns.enter_on_spawn(&mut cmd);
    let (_, out, err) = wait_output(cmd.spawn().unwrap());
    assert_eq!(out.trim(), "refused", "stderr: {err}");
    assert!(
        matches!(host.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the host listener saw a connection from inside the namespace"
    );
    // Control: outside the namespace the very same script does connect, so the
    // refusal above is the namespace's doing.
    let mut cmd = bash(&try_connect(Ipv4Addr::LOCALHOST, host_port));
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let (_, out, _) = wait_output(cmd.spawn().unwrap());
    assert_eq!(out.trim(), "connected");
    drop(accept_within(&host, Duration::from_secs(30)));
    // And the namespace's listener is not in the rig's namespace.
    let e = TcpStream::connect((addr, port)).expect_err("listener leaked into host namespace");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);

    // The namespace has no interface but the loopback one.
    let mut cmd = bash("cat /proc/net/dev");
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    ns.enter_on_spawn(&mut cmd);
    let (ok, out, err) = wait_output(cmd.spawn().unwrap());
    assert!(ok, "{err}");
    let ifaces: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim()))
        .collect();
    assert_eq!(ifaces, ["lo"], "/proc/net/dev inside:\n{out}");

    // (c) The rig's thread never moved.
    assert_eq!(thread_netns(), before);
    assert_ne!(format!("net:[{}]", ns.inode()), before);
}

#[test]
fn udp_round_trip_through_the_namespace() {
    if !netns_or_skip() {
        return;
    }
    let before = thread_netns();
    let ns = NetNs::create().expect("create namespace");
    let addr = Ipv4Addr::new(127, 77, 0, 2);
    let sock = ns
        .bind_udp(SocketAddrV4::new(addr, 0))
        .expect("bind udp inside");
    sock.set_nonblocking(false).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let port = sock.local_addr().unwrap().port();
    // One read of a whole datagram (bash's `read` would take one byte of it).
    let mut cmd = bash(&format!(
        "exec 3<>/dev/udp/{addr}/{port} && echo ping >&3 && \
         echo \"got $(timeout 30 dd bs=512 count=1 status=none <&3)\""
    ));
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    ns.enter_on_spawn(&mut cmd);
    let child = cmd.spawn().expect("spawn inside");
    let mut buf = [0u8; 64];
    let (n, peer) = sock.recv_from(&mut buf).expect("datagram from the child");
    assert_eq!(&buf[..n], b"ping\n");
    sock.send_to(b"pong\n", peer).unwrap();
    let (ok, out, err) = wait_output(child);
    assert!(ok, "child failed: {err}");
    assert_eq!(out, "got pong\n");
    // Sent from the rig's namespace, the same datagram reaches nothing.
    let probe = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    probe.send_to(b"x", (addr, port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        sock.recv_from(&mut buf).is_err(),
        "a host datagram arrived inside"
    );
    assert_eq!(thread_netns(), before);
}

/// Every `/proc` entry (task namespaces and open descriptors of all processes)
/// that refers to `net:[inode]`.
fn references_to(inode: u64) -> Vec<String> {
    let target = format!("net:[{inode}]");
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for p in procs.flatten() {
        let name = p.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let mut links = Vec::new();
        if let Ok(tasks) = std::fs::read_dir(p.path().join("task")) {
            links.extend(tasks.flatten().map(|t| t.path().join("ns/net")));
        }
        if let Ok(fds) = std::fs::read_dir(p.path().join("fd")) {
            links.extend(fds.flatten().map(|f| f.path()));
        }
        for l in links {
            if std::fs::read_link(&l).is_ok_and(|t| t.to_string_lossy() == target) {
                found.push(l.display().to_string());
            }
        }
    }
    found
}

fn assert_not_mounted(inode: u64) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(&format!("net:[{inode}]")),
        "the namespace is mounted somewhere"
    );
    if let Ok(dir) = std::fs::read_dir("/var/run/netns") {
        for e in dir.flatten() {
            use std::os::unix::fs::MetadataExt as _;
            let ino = std::fs::metadata(e.path()).map(|m| m.ino()).unwrap_or(0);
            assert_ne!(ino, inode, "{} names the namespace", e.path().display());
        }
    }
}

#[test]
fn nothing_is_left_after_drop() {
    if !netns_or_skip() {
        return;
    }
    let before = thread_netns();
    let ns = NetNs::create().expect("create namespace");
    let inode = ns.inode();
    let addr = Ipv4Addr::new(127, 77, 0, 3);
    let listener = ns.bind_tcp(SocketAddrV4::new(addr, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    // The scan does find the namespace while the rig holds it.
    let held = references_to(inode);
    let me = format!("/proc/{}/fd/", std::process::id());
    assert!(
        held.iter().any(|l| l.starts_with(&me)),
        "the rig's descriptor is not seen: {held:?}"
    );
    assert_not_mounted(inode);

    // A child that connects each time it reads a line.
    let step = try_connect(addr, port);
    let mut cmd = bash(&format!(
        "read go || exit 1; {step}; read go || exit 1; {step}"
    ));
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    ns.enter_on_spawn(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    // The rig lets go of the namespace: the child and the listener keep it alive.
    drop(ns);
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdin.write_all(b"go\n").unwrap();
    drop(accept_within(&listener, Duration::from_secs(30)));
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "connected");
    assert!(
        !references_to(inode).is_empty(),
        "the child should still be inside the namespace"
    );
    // The rig closes its listener: the child now finds nothing listening.
    drop(listener);
    line.clear();
    stdin.write_all(b"go\n").unwrap();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "refused");
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success());

    // Nothing refers to the namespace any more: no process, no descriptor, no mount.
    let left = references_to(inode);
    assert!(
        left.is_empty(),
        "still referring to the namespace: {left:?}"
    );
    assert_not_mounted(inode);
    assert_eq!(thread_netns(), before);
}

#[test]
fn each_namespace_has_its_own_ports() {
    if !netns_or_skip() {
        return;
    }
    let a = NetNs::create().expect("create namespace");
    let b = NetNs::create().expect("create namespace");
    assert_ne!(a.inode(), b.inode());
    let first = a
        .bind_tcp(SocketAddrV4::new(Ipv4Addr::new(127, 77, 0, 4), 0))
        .unwrap();
    let taken = match first.local_addr().unwrap() {
        std::net::SocketAddr::V4(v4) => v4,
        other => panic!("not IPv4: {other}"),
    };
    // The same address and port again in the same namespace is in use ...
    let again = a.bind_tcp(taken).expect_err("bound twice in one namespace");
    assert_eq!(again.kind(), std::io::ErrorKind::AddrInUse);
    // ... and free in the other one.
    let second = b.bind_tcp(taken).expect("same port in another namespace");
    let inodes = [a.inode(), b.inode()];
    drop((first, second, a, b));
    for i in inodes {
        let left = references_to(i);
        assert!(left.is_empty(), "namespace {i} still referred to: {left:?}");
    }
}

/// A physical bench's gateway on a private subnet: with the subnet routed as local
/// on the rig's host (`ip route add local 10.45.0.0/24 dev lo`), a client that
/// resolved the backend to `10.45.0.n` reaches the backend through the gateway; without
/// the route, starting fails and says which route is missing.
#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_on_a_private_subnet_relays_once_the_subnet_is_local() {
    use redrig::gateway::{Gateway, GatewaySpec, HostRoute, SINKHOLE_PORTS};
    use std::collections::BTreeSet;
    use std::sync::Arc;
    if !netns_or_skip() {
        return;
    }
    if Command::new("ip").arg("-V").output().is_err() {
        if std::env::var("REDRIG_REQUIRE_CROSSCHECKS").as_deref() == Ok("1") {
            panic!("REDRIG_REQUIRE_CROSSCHECKS=1 but there is no `ip` command (iproute2)");
        }
        let _ = writeln!(std::io::stderr(), "SKIPPED: no `ip` command (iproute2)");
        return;
    }
    const HOST: &str = "watch.kidcloud.example";
    const PORT: u16 = 6443;
    // An echo upstream in the rig's own namespace.
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let evidence = tempfile::tempdir().unwrap();
    let spec = |gw: Ipv4Addr| GatewaySpec {
        gateway: Some(gw),
        hosts: vec![HostRoute {
            host: HOST.into(),
            relay_ports: BTreeSet::from([PORT]),
            upstream: Some(upstream.to_string()),
        }],
        profile_ports: BTreeSet::from([PORT]),
        sinkhole_ports: SINKHOLE_PORTS.to_vec(),
        clock: redrig::clock::Clock::start(1.0),
        evidence_dir: evidence.path().to_path_buf(),
    };

    // Without the local route the addresses cannot be bound.
    let bare = Arc::new(NetNs::create().unwrap());
    let err = Gateway::start_in(spec(Ipv4Addr::new(10, 46, 0, 1)), Some(bare))
        .await
        .err()
        .expect("10.46.0.0/24 is not local in a fresh namespace");
    assert!(
        err.to_string()
            .contains("`ip route add local 10.46.0.0/24 dev lo`"),
        "{err}"
    );

    let ns = Arc::new(NetNs::create().unwrap());
    let mut route = Command::new("ip");
    route.args(["route", "add", "local", "10.45.0.0/24", "dev", "lo"]);
    ns.enter_on_spawn(&mut route);
    let out = route.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gw = Gateway::start_in(spec(Ipv4Addr::new(10, 45, 0, 1)), Some(ns.clone()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = gw.address_of(HOST).expect("the host has an address");
    assert_eq!(&addr.octets()[..3], &[10, 45, 0], "{addr}");
    let mut client = bash(&format!(
        "exec 3<>/dev/tcp/{addr}/{PORT} && echo through-the-gateway >&3 && head -c 20 <&3"
    ));
    client.stdout(Stdio::piped()).stderr(Stdio::piped());
    ns.enter_on_spawn(&mut client);
    let child = client.spawn().unwrap();
    let (ok, stdout, stderr) = tokio::task::spawn_blocking(move || wait_output(child))
        .await
        .unwrap();
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "through-the-gateway\n");
    gw.shutdown().await.unwrap();
}

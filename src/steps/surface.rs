//! Resilience, cryptography and the attack surface the watch shows on its data path.
//!
//! - A heartbeat flood: the rig opens its own connection to the backend's device
//!   endpoint as the watch would (TLS with the client certificate the profile
//!   supplies for testing, plain TCP when the endpoint is not TLS) and writes `LK`
//!   frames in the watch's name at a bounded rate (at most 3000 a wall second) for
//!   the rest of the scenario, with a small receive buffer and small TCP segments,
//!   without ever reading the answers. It first writes several thousand frames,
//!   then lets the scenario go on. The flood stops at the end of the scenario. Not applicable when the endpoint speaks TLS and the
//!   profile supplies no client certificate (the rig does not try to get in without
//!   one: that is a different test).
//! - A power cut: the supply is switched off for some device seconds and on again;
//!   the watch must come back online (a new connection to its device endpoint and the
//!   backend reporting it online).
//! - Cryptography of the connections to the declared services: the negotiated
//!   version and cipher suite (from the server's hello the gateway saw) and the
//!   suites the watch's ClientHello offers (read from the captured bytes).
//! - The traffic baseline: every connection and name lookup of the watch since its
//!   last power-on against the services the manufacturer declares. Name lookups are
//!   those the watch made through the modem (`CellEvent::DnsQuery`); lookups sent as
//!   UDP datagrams count as UDP flows to their destination.

use super::common::*;
use crate::clock::DeviceMs;
use crate::drivers::CellEvent;
use crate::gateway::{FlowProtocol, FlowSummary, Transport};
use crate::runner::world::{device_fail, rig_fail, RigWorld, StepFail, StepResult};
use crate::strategy::DeviceState;
use cucumber::{given, then, when};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

// ---------------------------------------------------------------------------------
// Heartbeat flood
// ---------------------------------------------------------------------------------

/// Flood rate in frames per device second (the cloud of `docs/virtual-hardware.md`
/// §9 accepts 50 per device second on one connection).
const FLOOD_PER_DEVICE_SECOND: f64 = 200.0;
/// Ceiling in frames per wall second, whatever the device clock's speed.
const FLOOD_MAX_PER_WALL_SECOND: f64 = 3000.0;
/// Wall time between two batches of frames.
const FLOOD_TICK: Duration = Duration::from_millis(20);
/// Frames the flood writes before the scenario goes on…
const FLOOD_BUILD_UP_FRAMES: u64 = 6000;
/// …or device seconds, whichever comes first.
const FLOOD_BUILD_UP_MAX_SECS: f64 = 120.0;
/// Receive buffer of the flood's socket: a slow reader's.
const FLOOD_RECV_BUFFER: u32 = 2048;

/// Frames in one batch for a clock running `speed` device seconds per wall second.
fn flood_batch(speed: f64) -> usize {
    let per_wall = (FLOOD_PER_DEVICE_SECOND * speed.max(0.0)).min(FLOOD_MAX_PER_WALL_SECOND);
    ((per_wall * FLOOD_TICK.as_secs_f64()).round() as usize).max(1)
}

/// Largest TCP segment the flood's connection accepts (`TCP_MAXSEG`), in bytes.
const FLOOD_MSS: i32 = 536;

/// Set `TCP_MAXSEG` on a socket before it connects.
fn set_max_segment(socket: &tokio::net::TcpSocket, mss: i32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is the open socket `socket` owns for the whole call;
    // the option value is a live `c_int` whose size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MAXSEG,
            (&mss as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What the flood did, shared with its task.
#[derive(Default)]
struct FloodStats {
    frames: AtomicU64,
    ended: Mutex<Option<String>>,
}

fn tls_client(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<rustls::ClientConfig, StepFail> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| StepFail::Rig(format!("{}: {e}", p.display())))
    };
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let chain: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| StepFail::Rig(format!("{}: {e}", cert.display())))?;
    if chain.is_empty() {
        return rig_fail(format!("{}: no certificate in the file", cert.display()));
    }
    let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| StepFail::Rig(format!("{}: {e}", key.display())))?
        .ok_or_else(|| StepFail::Rig(format!("{}: no private key in the file", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // The server is not verified: the flood loads the backend, it does not judge
    // who the backend is.
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| StepFail::Rig(format!("TLS configuration: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(crate::drivers::backend_http::AnyServer(
            provider,
        )))
        .with_client_auth_cert(chain, key_der)
        .map_err(|e| StepFail::Rig(format!("client certificate {}: {e}", cert.display())))
}

/// Connect to the device endpoint as the watch would, with a small receive buffer.
async fn watch_like_connection(world: &RigWorld) -> Result<Box<dyn Io>, StepFail> {
    let dev = &world.ctx.loaded.device.device;
    let ep = &dev.backend.device_endpoint;
    let client = match (&dev.backend.client_certificate, ep.tls) {
        (_, false) => None,
        (Some(c), true) => Some(tls_client(&c.cert, &c.key)?),
        (None, true) => {
            return Err(StepFail::NotApplicable(
                "the device endpoint speaks TLS and the profile supplies no client certificate (device.backend.client_certificate) to connect as the watch".into(),
            ))
        }
    };
    let cfg = crate::drivers::backend_http::HttpBackendConfig::from_config(
        &world.ctx.loaded,
        world.rig().lab(),
    )?;
    let addr = tokio::net::lookup_host(&cfg.device_addr)
        .await
        .map_err(|e| StepFail::Rig(format!("device endpoint {}: {e}", cfg.device_addr)))?
        .next()
        .ok_or_else(|| StepFail::Rig(format!("device endpoint {}: no address", cfg.device_addr)))?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(|e| StepFail::Rig(format!("socket: {e}")))?;
    socket
        .set_recv_buffer_size(FLOOD_RECV_BUFFER)
        .map_err(|e| StepFail::Rig(format!("socket receive buffer: {e}")))?;
    // Small segments too: the server then sizes its send buffer for a slow link
    // (Linux derives the initial send buffer from the segment size), so the answers
    // the flood never reads pile up there quickly, as they would at a slow reader on
    // a slow link. Best effort: a system that refuses the option keeps its default.
    if let Err(e) = set_max_segment(&socket, FLOOD_MSS) {
        world.note(format!(
            "the flood's connection keeps its default segment size: {e}"
        ));
    }
    let tcp = tokio::time::timeout(Duration::from_secs(10), socket.connect(addr))
        .await
        .map_err(|_| StepFail::Rig(format!("device endpoint {addr}: no connection within 10 s")))?
        .map_err(|e| StepFail::Rig(format!("device endpoint {addr}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let Some(client) = client else {
        return Ok(Box::new(tcp));
    };
    let name = rustls::pki_types::ServerName::try_from(ep.host.clone())
        .map_err(|e| StepFail::Rig(format!("device endpoint host `{}`: {e}", ep.host)))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client));
    match tokio::time::timeout(Duration::from_secs(10), tls.connect(name, tcp)).await {
        Ok(Ok(s)) => Ok(Box::new(s)),
        Ok(Err(e)) => rig_fail(format!(
            "the device endpoint refused the TLS handshake with the profile's client certificate: {e}"
        )),
        Err(_) => rig_fail("no TLS handshake with the device endpoint within 10 s"),
    }
}

#[given("the backend is flooded with heartbeats in the watch's name by a client that never reads its answers")]
async fn heartbeat_flood(world: &mut RigWorld) -> StepResult {
    let dev = &world.ctx.loaded.device.device;
    let device_id = dev.device_id.clone();
    let mut stream = watch_like_connection(world).await?;
    let frame = crate::wire::watchproto::encode("3G", &device_id, b"LK");
    // One heartbeat answered first: the backend takes frames in the watch's name on
    // this connection, so the flood is a flood of the watch's own frames.
    stream
        .write_all(&frame)
        .await
        .map_err(|e| StepFail::Rig(format!("device endpoint: {e}")))?;
    let mut first = [0u8; 256];
    match tokio::time::timeout(world.clock().wall(10.0), stream.read(&mut first)).await {
        Ok(Ok(n)) if n > 0 => world.note(format!(
            "the backend answered the rig's heartbeat in the watch's name: {}",
            String::from_utf8_lossy(&first[..n.min(first.len())])
        )),
        Ok(Ok(_)) => return rig_fail("the device endpoint closed the rig's connection after one heartbeat in the watch's name"),
        Ok(Err(e)) => return rig_fail(format!("the device endpoint did not take a heartbeat in the watch's name: {e}")),
        Err(_) => return rig_fail("the device endpoint did not answer a heartbeat in the watch's name within 10 s"),
    }
    let speed = world.clock().wall(1.0).as_secs_f64();
    let speed = if speed > 0.0 { 1.0 / speed } else { 1.0 };
    let batch_frames = flood_batch(speed);
    let batch = frame.repeat(batch_frames);
    let stats = Arc::new(FloodStats::default());
    let task_stats = stats.clone();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(FLOOD_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ended = loop {
            tick.tick().await;
            // Never reads: the answers pile up on the backend's side.
            if let Err(e) = stream.write_all(&batch).await {
                break format!("the connection failed: {e}");
            }
            if let Err(e) = stream.flush().await {
                break format!("the connection failed: {e}");
            }
            task_stats
                .frames
                .fetch_add(batch_frames as u64, Ordering::Relaxed);
        };
        if let Ok(mut g) = task_stats.ended.lock() {
            *g = Some(ended);
        }
    });
    let abort = task.abort_handle();
    let wall_rate = batch_frames as f64 / FLOOD_TICK.as_secs_f64();
    world.note(format!(
        "flooding the device endpoint with `LK` frames for {device_id}: {batch_frames} frames every {} ms wall time ({:.0} per device second), never reading",
        FLOOD_TICK.as_millis(),
        wall_rate / speed
    ));
    let end_stats = stats.clone();
    world.on_scenario_end("stop the heartbeat flood", move |ctx| async move {
        abort.abort();
        let _ = task.await;
        let frames = end_stats.frames.load(Ordering::Relaxed);
        let ended = end_stats.ended.lock().ok().and_then(|g| g.clone());
        ctx.recorder.note(format!(
            "the heartbeat flood wrote {frames} frames{}",
            ended
                .map(|e| format!("; it ended early: {e}"))
                .unwrap_or_default()
        ));
        Ok(())
    });
    // Let the flood build up before the scenario goes on: until it has written
    // several thousand frames (a busy machine writes them more slowly in device
    // time), for at most a bounded device time.
    let deadline = world.clock().deadline(FLOOD_BUILD_UP_MAX_SECS);
    while stats.frames.load(Ordering::Relaxed) < FLOOD_BUILD_UP_FRAMES
        && tokio::time::Instant::now() < deadline
        && stats.ended.lock().ok().is_some_and(|g| g.is_none())
    {
        world.clock().sleep(1.0).await;
    }
    let frames = stats.frames.load(Ordering::Relaxed);
    world.measure(
        "heartbeat frames written before the wearer acts",
        frames as f64,
        "frames",
        None,
    );
    if let Some(e) = stats.ended.lock().ok().and_then(|g| g.clone()) {
        world.note(format!(
            "the flood connection ended before the wearer acted: {e}"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Power loss
// ---------------------------------------------------------------------------------

#[when(expr = "the watch's power supply is cut for {int} seconds and restored")]
async fn power_cut(world: &mut RigWorld, secs: u32) -> StepResult {
    world.rig().power.set(false).await?;
    // Should this step not get to switching the supply back on, the end of the
    // scenario does (the next scenario starts from a fresh power-on either way).
    let restored_flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = restored_flag.clone();
    world.on_scenario_end("switch the supply back on", move |ctx| async move {
        if flag.load(Ordering::SeqCst) {
            Ok(())
        } else {
            ctx.rig.power.set(true).await
        }
    });
    world.clock().sleep(secs as f64).await;
    let restored = world.now();
    world.rig().power.set(true).await?;
    restored_flag.store(true, Ordering::SeqCst);
    world
        .scratch
        .insert("power_restored".into(), restored.to_string());
    world.action_at = Some(restored);
    world.note(format!(
        "supply cut for {secs} s, restored at device time {restored} ms"
    ));
    Ok(())
}

#[then(expr = "the watch is back online at its backend within {int} seconds")]
async fn back_online(world: &mut RigWorld, secs: u32) -> StepResult {
    let Some(since) = world
        .scratch
        .get("power_restored")
        .and_then(|s| s.parse::<DeviceMs>().ok())
    else {
        return rig_fail("the supply was not cut and restored before this step");
    };
    let host = crate::steps::common::backend_host(world);
    let imei = world.ctx.loaded.device.device.imei.clone();
    let deadline = world.clock().deadline(secs as f64);
    let mut reconnected: Option<DeviceMs> = None;
    loop {
        if reconnected.is_none() {
            let flows = world.rig().gateway.flows();
            reconnected = flows
                .since(flows.mark_since(since))
                .into_iter()
                .find(|r| matches!(&r.value, crate::gateway::FlowEvent::Opened { host: h, .. } if *h == host))
                .map(|r| r.t);
        }
        if reconnected.is_some() {
            let r = api(world, Actor::Parent, "GET", "/api/watches", None).await?;
            let online = r.body.as_array().is_some_and(|ws| {
                ws.iter().any(|w| {
                    w["imei"].as_str() == Some(imei.as_str())
                        && w["online"].as_bool() == Some(true)
                        && w["last_seen"].as_u64().is_none_or(|t| t >= since)
                })
            });
            if online {
                let t = (world.now().saturating_sub(since)) as f64 / 1000.0;
                world.measure(
                    "time back online after power restore",
                    t,
                    "s",
                    Some(secs as f64),
                );
                return Ok(());
            }
        }
        if tokio::time::Instant::now() >= deadline {
            world.measure(
                "time back online after power restore",
                f64::INFINITY,
                "s",
                Some(secs as f64),
            );
            return device_fail(match reconnected {
                None => format!("the watch opened no connection to {host} within {secs} s of the supply being restored"),
                Some(_) => format!("the watch reconnected to {host} but the backend did not report it online within {secs} s of the supply being restored"),
            });
        }
        world.clock().sleep(1.0).await;
    }
}

// ---------------------------------------------------------------------------------
// Declared services
// ---------------------------------------------------------------------------------

/// The destinations the manufacturer declares: `declaration.services`, the device
/// endpoint and the API's host and port (lower-case host names).
fn declared_services(world: &RigWorld) -> Vec<(String, u16)> {
    let dev = &world.ctx.loaded.device.device;
    let mut out: Vec<(String, u16)> = dev
        .declaration
        .services
        .iter()
        .map(|s| (s.host.to_ascii_lowercase(), s.port))
        .collect();
    let ep = &dev.backend.device_endpoint;
    out.push((ep.host.to_ascii_lowercase(), ep.port));
    if let Ok(api) = crate::gateway::BaseUrl::parse(&dev.backend.api.base_url) {
        out.push((api.host.to_ascii_lowercase(), api.port));
    }
    out.sort();
    out.dedup();
    out
}

fn host_key(h: &str) -> String {
    h.trim().trim_end_matches('.').to_ascii_lowercase()
}

fn is_declared(declared: &[(String, u16)], host: &str, port: u16) -> bool {
    let h = host_key(host);
    declared.iter().any(|(d, p)| *d == h && *p == port)
}

/// The watch's flows opened at or after `since`.
fn flows_since(world: &RigWorld, since: DeviceMs) -> Vec<FlowSummary> {
    world
        .rig()
        .gateway
        .summaries()
        .into_iter()
        .filter(|f| f.opened_t >= since)
        .collect()
}

// ---------------------------------------------------------------------------------
// Cryptography
// ---------------------------------------------------------------------------------

/// A negotiated suite that is an AEAD with forward secrecy: the TLS 1.3 suites
/// (`0x1301`–`0x1305`, CCM ones included), or ECDHE with AES-GCM or
/// ChaCha20-Poly1305. DHE suites are not accepted.
pub fn forward_secret_aead(suite: u16) -> bool {
    if (0x1301..=0x1305).contains(&suite) {
        return true;
    }
    crate::gateway::tlsinfo::cipher_suite_name(suite).is_some_and(|n| {
        n.starts_with("TLS_ECDHE_") && (n.contains("_GCM_") || n.contains("_CHACHA20_POLY1305_"))
    })
}

/// A suite no client should offer: no encryption, export grade, anonymous key
/// exchange, RC4, single or triple DES, or an MD5 MAC.
pub fn forbidden_offer(suite: u16) -> bool {
    crate::gateway::tlsinfo::cipher_suite_name(suite).is_some_and(|n| {
        !n.ends_with("_SCSV")
            && ["NULL", "EXPORT", "anon", "RC4", "DES", "MD5"]
                .iter()
                .any(|w| n.contains(w))
    })
}

fn suite_name(suite: u16) -> String {
    crate::gateway::tlsinfo::cipher_suite_name(suite)
        .map(String::from)
        .unwrap_or_else(|| format!("0x{suite:04x}"))
}

/// The connections of this scenario to declared services on which the watch sent
/// something (a flow cut before its first byte was neither TLS nor clear text).
fn service_flows(world: &RigWorld) -> Vec<FlowSummary> {
    let declared = declared_services(world);
    flows_since(world, world.started)
        .into_iter()
        .filter(|f| {
            f.transport == Transport::Tcp
                && is_declared(&declared, &f.host, f.port)
                && f.protocol != FlowProtocol::Undetermined
        })
        .collect()
}

#[then("every connection the watch made to its declared services negotiated TLS 1.2 or newer with a forward-secret AEAD cipher suite")]
async fn negotiated_crypto(world: &mut RigWorld) -> StepResult {
    let flows = service_flows(world);
    if flows.is_empty() {
        return rig_fail(
            "no connection of the watch to a declared service was captured in this scenario",
        );
    }
    let mut bad = Vec::new();
    let mut judged = 0usize;
    let mut seen = Vec::new();
    for f in &flows {
        let Some(hello) = &f.tls else {
            bad.push(format!(
                "flow {} to {}:{} carries no TLS at all",
                f.id, f.host, f.port
            ));
            continue;
        };
        if let Some(e) = &hello.error {
            world.note(format!(
                "flow {} to {}:{}: the ClientHello could not be read ({e}); not judged",
                f.id, f.host, f.port
            ));
            continue;
        }
        // Without the server's hello the negotiated parameters are unknown (the
        // connection ended during the handshake): not the watch's to answer for.
        let Some(server) = &f.server_tls else {
            world.note(format!(
                "flow {} to {}:{}: no server hello seen{}; not judged",
                f.id,
                f.host,
                f.port,
                f.server_tls_error
                    .as_ref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ));
            continue;
        };
        judged += 1;
        let entry = format!(
            "flow {} to {}:{}: {} {}",
            f.id,
            f.host,
            f.port,
            server.version_name(),
            suite_name(server.cipher_suite)
        );
        if server.version < 0x0303 {
            bad.push(format!("{entry} (older than TLS 1.2)"));
        } else if !forward_secret_aead(server.cipher_suite) {
            bad.push(format!("{entry} (not an AEAD suite with forward secrecy)"));
        }
        seen.push(entry);
    }
    if !seen.is_empty() {
        world.note(format!("negotiated: {}", seen.join("; ")));
    }
    world.measure(
        "connections to declared services judged",
        judged as f64,
        "flows",
        None,
    );
    world.measure(
        "connections with weak or no cryptography",
        bad.len() as f64,
        "flows",
        Some(0.0),
    );
    if bad.is_empty() && judged == 0 {
        return rig_fail("no connection to a declared service showed its negotiated parameters");
    }
    ensure_device(bad.is_empty(), || bad.join("; "))
}

/// The captured bytes the watch sent on a flow, from the gateway's evidence, up to
/// `limit` bytes.
fn captured_up(world: &RigWorld, flow: u64, limit: u64) -> Result<Vec<u8>, StepFail> {
    use std::io::Read;
    let path = world.ctx.evidence_dir.join(format!("flow-{flow}-up.bin"));
    let file = std::fs::File::open(&path)
        .map_err(|e| StepFail::Rig(format!("{}: {e}", path.display())))?;
    let mut out = Vec::new();
    file.take(limit)
        .read_to_end(&mut out)
        .map_err(|e| StepFail::Rig(format!("{}: {e}", path.display())))?;
    Ok(out)
}

#[then("no connection the watch made to its declared services offered a weak cipher suite")]
async fn offered_suites(world: &mut RigWorld) -> StepResult {
    let flows: Vec<FlowSummary> = service_flows(world)
        .into_iter()
        .filter(|f| f.tls.as_ref().is_some_and(|h| h.error.is_none()))
        .collect();
    if flows.is_empty() {
        return rig_fail(
            "no TLS connection of the watch to a declared service was captured in this scenario",
        );
    }
    let mut bad = Vec::new();
    let mut offers: Vec<String> = Vec::new();
    for f in &flows {
        // The hello was parsed when the flow began; its bytes may still be on their
        // way to the evidence file.
        let mut suites = None;
        for _ in 0..10 {
            let bytes = captured_up(
                world,
                f.id,
                crate::gateway::tlsinfo::SNIFF_LIMIT as u64 + 4096,
            )
            .unwrap_or_default();
            match crate::gateway::tlsinfo::client_hello_cipher_suites(&bytes) {
                Ok(Some(s)) => {
                    suites = Some(s);
                    break;
                }
                Ok(None) => world.clock().sleep(0.5).await,
                Err(e) => {
                    return rig_fail(format!(
                        "flow {} to {}:{}: the captured ClientHello cannot be read: {e}",
                        f.id, f.host, f.port
                    ))
                }
            }
        }
        let Some(suites) = suites else {
            return rig_fail(format!(
                "flow {} to {}:{}: the captured bytes hold no complete ClientHello",
                f.id, f.host, f.port
            ));
        };
        let weak: Vec<String> = suites
            .iter()
            .copied()
            .filter(|&s| forbidden_offer(s))
            .map(suite_name)
            .collect();
        let offer: Vec<String> = suites.iter().copied().map(suite_name).collect();
        let offer = offer.join(", ");
        if !offers.contains(&offer) {
            offers.push(offer);
        }
        if !weak.is_empty() {
            bad.push(format!(
                "flow {} to {}:{} offers {}",
                f.id,
                f.host,
                f.port,
                weak.join(", ")
            ));
        }
    }
    world.note(format!("the watch offered: {}", offers.join(" | ")));
    world.measure(
        "connections offering weak suites",
        bad.len() as f64,
        "flows",
        Some(0.0),
    );
    ensure_device(bad.is_empty(), || bad.join("; "))
}

// ---------------------------------------------------------------------------------
// Traffic baseline
// ---------------------------------------------------------------------------------

#[when(expr = "the rig watches the watch's traffic for {int} seconds")]
async fn watch_traffic(world: &mut RigWorld, secs: u32) -> StepResult {
    world.clock().sleep(secs as f64).await;
    Ok(())
}

/// Device time of the watch's last power-on in this scenario: the rig's last
/// power-off at or after the scenario's start (nothing the watch did before it
/// belongs to this boot), else the scenario's start.
async fn this_boot(world: &RigWorld) -> DeviceMs {
    let ctx = world.ctx.clone();
    let strategy = ctx.strategy.lock().await;
    strategy
        .transitions
        .iter()
        .rev()
        .find(|t| t.to == DeviceState::Off)
        .map(|t| t.t)
        .filter(|&t| t >= world.started)
        .unwrap_or(world.started)
}

#[then("every connection and DNS lookup the watch made since power-on went to a service the manufacturer declares")]
async fn traffic_baseline(world: &mut RigWorld) -> StepResult {
    let since = this_boot(world).await;
    let declared = declared_services(world);
    let declared_hosts: Vec<&str> = declared.iter().map(|(h, _)| h.as_str()).collect();
    let flows = flows_since(world, since);
    let log = world.rig().cellular.log();
    let lookups: Vec<String> = log
        .since(log.mark_since(since))
        .into_iter()
        .filter_map(|r| match r.value {
            CellEvent::DnsQuery { host, .. } => Some(host),
            _ => None,
        })
        .collect();
    let mut undeclared: Vec<String> = Vec::new();
    let mut add = |what: String| {
        if !undeclared.contains(&what) && undeclared.len() < 50 {
            undeclared.push(what);
        }
    };
    for h in &lookups {
        if !declared_hosts.contains(&host_key(h).as_str()) {
            let shown: String = h.chars().take(100).collect();
            add(format!("name lookup of {shown}"));
        }
    }
    for f in &flows {
        if !is_declared(&declared, &f.host, f.port) {
            let shown: String = f.host.chars().take(100).collect();
            let kind = match f.transport {
                Transport::Tcp => "TCP",
                Transport::Udp => "UDP",
            };
            add(format!(
                "{kind} to {shown}:{} ({} bytes sent)",
                f.port, f.bytes_up
            ));
        }
    }
    world.measure(
        "connections since power-on",
        flows.len() as f64,
        "flows",
        None,
    );
    world.measure(
        "name lookups since power-on",
        lookups.len() as f64,
        "lookups",
        None,
    );
    world.measure(
        "undeclared destinations",
        undeclared.len() as f64,
        "destinations",
        Some(0.0),
    );
    if flows.is_empty() {
        return rig_fail(
            "the gateway captured no connection of the watch since power-on; nothing to judge",
        );
    }
    let shown: Vec<String> = declared.iter().map(|(h, p)| format!("{h}:{p}")).collect();
    world.note(format!("declared services: {}", shown.join(", ")));
    ensure_device(undeclared.is_empty(), || {
        format!(
            "the watch reached destinations its manufacturer does not declare: {}",
            undeclared.join("; ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_secret_aead_suites() {
        for ok in [
            0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc030, 0xcca8, 0xcca9,
        ] {
            assert!(forward_secret_aead(ok), "{ok:04x}");
        }
        // Static RSA GCM, ECDHE CBC, DHE GCM, RC4, unknown.
        for bad in [0x009c, 0xc013, 0xc027, 0x009e, 0x0005, 0x0000, 0xbeef] {
            assert!(!forward_secret_aead(bad), "{bad:04x}");
        }
    }

    #[test]
    fn forbidden_offers() {
        for bad in [
            0x0000, 0x0001, 0x0003, 0x0004, 0x0009, 0x000a, 0x0018, 0xc011, 0xc012, 0xc015, 0xc018,
        ] {
            assert!(forbidden_offer(bad), "{bad:04x}");
        }
        // Modern suites, CBC with SHA-1 (not on this list), signalling values, unknown.
        for ok in [
            0x1301, 0xc02f, 0xcca8, 0xc013, 0x002f, 0x00ff, 0x5600, 0xbeef,
        ] {
            assert!(!forbidden_offer(ok), "{ok:04x}");
        }
    }

    #[test]
    fn flood_rate_is_bounded() {
        // 20× clock: capped at the wall ceiling.
        let b = flood_batch(20.0);
        let per_wall = b as f64 / FLOOD_TICK.as_secs_f64();
        assert!(per_wall <= FLOOD_MAX_PER_WALL_SECOND, "{per_wall}");
        // Above the cloud's 50 frames per device second.
        assert!(per_wall / 20.0 > 50.0, "{per_wall}");
        // Real time: the device rate.
        let b = flood_batch(1.0);
        assert_eq!(b as f64 / FLOOD_TICK.as_secs_f64(), FLOOD_PER_DEVICE_SECOND);
        assert!(flood_batch(0.0) >= 1);
    }

    #[test]
    fn declared_match_ignores_case_and_trailing_dot() {
        let d = vec![("watch.kidcloud.example".to_string(), 6443)];
        assert!(is_declared(&d, "Watch.KidCloud.example.", 6443));
        assert!(!is_declared(&d, "watch.kidcloud.example", 80));
        assert!(!is_declared(&d, "evil.example", 6443));
    }
}
